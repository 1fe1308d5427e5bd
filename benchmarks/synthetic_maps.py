"""Importance maps from synthetic inputs (nntm.synthetic) for CE models: the data-free proxy.

Each model's maps are measured exactly as its adapter measures its real maps (same network,
same output metric, nntm.calibrate / calibrate_onnx), only on synthetic inputs of the
calibration inputs' shapes: standard normal (normalised inputs) or uniform in the range the
model's input format states (``--ranges``; no data looked at).

    PYTHONPATH=python python benchmarks/synthetic_maps.py --out /tmp/syn mtcnn mobilenetv2
"""

from __future__ import annotations

import argparse
import pathlib
import time

import nntm
import numpy as np
from nntm import synthetic
from nntm.calibrate import calibrate
from nntm.ce.models import get_adapter

# The input format each model's documentation states (not measured from data).
RANGES = {"mtcnn": (-1.0, 1.0), "ddddocr_det": (0.0, 255.0), "ddddocr": (0.0, 255.0),
          "mobilenetv2": None, "digits": None}
SAMPLES = {"mtcnn": 100, "mobilenetv2": 32, "ddddocr_det": 4, "ddddocr": 8, "digits": 256}


def maps_for(name: str, samples: int | None, seed: int) -> dict[str, np.ndarray]:
    import torch

    adapter = get_adapter(name)
    adapter.ensure_available()
    tensors = adapter.load()
    count = samples or SAMPLES[name]
    value_range = RANGES.get(name)
    if name == "mtcnn":
        nets = adapter._models(tensors)
        generator = torch.Generator().manual_seed(0)
        shapes = {net: x.shape[1:] for net, x in adapter.calibration_inputs().items()}
        maps = {}
        for i, (net, module) in enumerate(nets.items()):
            x = synthetic.torch_inputs(shapes[net], count, seed=seed + i, value_range=value_range)
            found = calibrate(module, [x], probes=1, seed=generator)
            maps.update({f"{net}.{k}": v for k, v in found.items()})
        return maps
    if name == "mobilenetv2":
        net = adapter._model(tensors)
        x = synthetic.torch_inputs((3, 224, 224), count, seed=seed, value_range=value_range)
        x = x.contiguous(memory_format=torch.channels_last)
        return calibrate(net, [x[i : i + 8] for i in range(0, count, 8)], output="kl", probes=4)
    from nntm.calibrate_onnx import calibrate_onnx

    model = adapter.model_bytes(tensors)
    inputs = synthetic.onnx_inputs(model, count, seed=seed, value_range=value_range)
    return calibrate_onnx(model, inputs, kind="sensitivity", output=adapter.scored(), probes=2,
                          threads=2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--samples", type=int)
    ap.add_argument("--seed", type=int, default=synthetic.DEFAULT_SEED)
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.models:
        start = time.perf_counter()
        maps = maps_for(name, args.samples, args.seed)
        path = out / f"{name}_synthetic.safetensors"
        nntm.write_model(str(path), {k: np.asarray(v, dtype=np.float32) for k, v in maps.items()})
        (out / f"{name}_synthetic.cfg").write_text(f"ImportanceFile : {path}\n")
        print(f"{name}: {len(maps)} maps, {time.perf_counter() - start:.1f} s -> {path}",
              flush=True)


if __name__ == "__main__":
    main()
