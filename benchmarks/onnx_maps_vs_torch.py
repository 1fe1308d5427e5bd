"""Torch maps against ONNX maps of one model that exists in both forms (docs/calibration.md).

The three MTCNN networks of the CE adapter (facenet-pytorch's weights) are exported to ONNX
with ``torch.onnx.export``; their output-sensitivity maps are measured on the same
calibration images twice: through the PyTorch path (the adapter's ``output_importance``,
i.e. ``nntm.calibrate``) and through the ONNX path (``nntm.calibrate_onnx.calibrate_onnx``
on the exported files).  Prints the time and peak memory of each, the correlation of the
maps per tensor and over all weights, and writes both as importance files named like the
adapter's tensors, for a CE with ``ImportanceFile`` set to each::

    PYTHONPATH=python python benchmarks/onnx_maps_vs_torch.py --out /tmp/mtcnn_maps
"""

from __future__ import annotations

import argparse
import pathlib
import resource
import time

import numpy as np


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def export_nets(out: pathlib.Path) -> dict[str, pathlib.Path]:
    """The adapter's PNet, RNet and ONet as ONNX files (batch axis free)."""
    import torch
    from nntm.ce.models import get_adapter

    adapter = get_adapter("mtcnn")
    nets = adapter._models(adapter.load())  # the adapter's own modules, original weights
    calibration = adapter.calibration_inputs()
    files = {}
    for net, module in nets.items():
        path = out / f"{net}.onnx"
        x = torch.from_numpy(calibration[net][:2])
        torch.onnx.export(module, (x,), str(path), input_names=["x"], output_names=["p"],
                          dynamic_axes={"x": {0: "n"}, "p": {0: "n"}}, opset_version=17,
                          dynamo=False)
        files[net] = path
    return files


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for the ONNX files and the maps")
    ap.add_argument("--batch-size", type=int, default=8, help="ONNX path: samples per pass")
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from nntm.calibrate_onnx import calibrate_onnx
    from nntm.ce.models import get_adapter
    from nntm.modelio import write_model

    adapter = get_adapter("mtcnn")
    tensors = adapter.load()
    start = time.perf_counter()
    torch_maps = adapter.output_importance(tensors)
    torch_s = time.perf_counter() - start
    torch_peak = _peak_mib()
    files = export_nets(out)
    calibration = adapter.calibration_inputs()
    onnx_maps: dict[str, np.ndarray] = {}
    start = time.perf_counter()
    for net, path in files.items():
        found = calibrate_onnx(path, {"x": calibration[net]}, kind="sensitivity", output="mse",
                               probes=1, seed=0, batch_size=args.batch_size)
        onnx_maps.update({f"{net}.{name}": value for name, value in found.items()})
    onnx_s = time.perf_counter() - start
    onnx_peak = _peak_mib()
    print(f"torch path: {len(torch_maps)} maps, {torch_s:.1f} s (peak memory so far "
          f"{torch_peak:.0f} MiB)")
    print(f"ONNX path : {len(onnx_maps)} maps, {onnx_s:.1f} s (peak memory so far "
          f"{onnx_peak:.0f} MiB)")
    common = [name for name in torch_maps if name in onnx_maps]
    only_torch = [name for name in torch_maps if name not in onnx_maps]
    print(f"maps in both: {len(common)}; torch only: {only_torch} (their torch maps: "
          f"{['zero' if not np.any(torch_maps[n]) else 'non-zero' for n in only_torch]})")
    print("| tensor | elements | correlation | log-correlation | sum ratio onnx/torch |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in common:
        a, b = torch_maps[name], onnx_maps[name]
        positive = (a > 0) & (b > 0)
        log_corr = _correlation(np.log(a[positive]), np.log(b[positive]))
        ratio = float(b.sum() / a.sum()) if a.sum() > 0 else float("nan")
        print(f"| {name} | {a.size} | {_correlation(a, b):.6f} | {log_corr:.6f} | "
              f"{ratio:.6f} |")
    every_a = np.concatenate([torch_maps[n].ravel() for n in common])
    every_b = np.concatenate([onnx_maps[n].ravel() for n in common])
    keep = (every_a > 0) & (every_b > 0)
    print(f"all weights: correlation {_correlation(every_a, every_b):.6f}, log-correlation "
          f"{_correlation(np.log(every_a[keep]), np.log(every_b[keep])):.6f}, max relative "
          f"difference {float(np.max(np.abs(every_b - every_a) / np.maximum(every_a, 1e-30))):.2e}")
    write_model(str(out / "mtcnn_torch_maps.safetensors"), torch_maps)
    write_model(str(out / "mtcnn_onnx_maps.safetensors"), onnx_maps)
    print(f"wrote {out}/mtcnn_torch_maps.safetensors and mtcnn_onnx_maps.safetensors")


if __name__ == "__main__":
    main()
