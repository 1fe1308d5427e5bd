"""Rate control on the CTC models (issue #18 item 4): each target, what the encoder achieved.

    HF_HUB_OFFLINE=1 PYTHONPATH=python python benchmarks/rate_control.py \\
        --models minilm,mobilenetv2 --cfg cfg/encoder_default.cfg \\
        --targets bpp=2,bpp=4,bpp=6,size,snr=20,snr=30 --size minilm=10M,mobilenetv2=2M

Loads each model through its CE adapter (as benchmarks/default_sweep.py does), plans the QPs
with nntm.ratecontrol (the sampled pre-encode EncoderApp runs for --TargetBitsPerParam /
--TargetSize / --TargetSNR), codes the model once and prints a Markdown row per target: the
target, the achieved figure (bits/param from the stream's bytes; SNR pooled over the float
tensors, importance-weighted with --importance), the error, the QP chosen (and how many tensors
one QP finer), the planning and the encode time. ``--importance minilm=imp.safetensors`` codes
that model with its maps (use an output-aware cfg); ``--eval`` adds the adapter's metrics. An
ONNX model (``ddddocr``) is planned and coded with its graph's roles (EncoderApp -i x.onnx).
``--update 0.03`` codes each model as an update (RefModel) of a synthetic reference: the model
with Gaussian noise of 0.03 x each 2-D tensor's standard deviation added (seed 0), the version
a receiver would hold; pass ``--set PredLambdaScale=0.01`` as for updates.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

import numpy as np  # noqa: E402
from nntm import codec, ratecontrol  # noqa: E402
from nntm.config import Config  # noqa: E402
from nntm.memory import parse_size  # noqa: E402
from nntm.modelio import read_model  # noqa: E402


def _pairs(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split(",") if item)


def main(argv: list[str]) -> int:
    from nntm.ce.models import get_adapter

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="minilm,mobilenetv2")
    ap.add_argument("--cfg", default=str(ROOT / "cfg" / "encoder_default.cfg"))
    ap.add_argument("--targets", default="bpp=2,bpp=4,bpp=6,size,snr=20,snr=30")
    ap.add_argument("--size", default="minilm=10M,mobilenetv2=2M",
                    help="the size target of each model (model=size)")
    ap.add_argument("--importance", default="", help="model=maps file, ...")
    ap.add_argument("--set", default="", help="cfg overrides: Key=value,...")
    ap.add_argument("--eval", action="store_true", help="also the adapter's metrics")
    ap.add_argument("--threads", type=int, default=0,
                    help="threads of the plan and of the encode (0: every core)")
    ap.add_argument("--update", type=float, default=0.0,
                    help="code an update of the model plus this much noise (x each 2-D "
                    "tensor's std): RefModel rate control")
    args = ap.parse_args(argv)
    sizes, maps_files = _pairs(args.size), _pairs(args.importance)
    base = Config.from_files([args.cfg])
    overrides = _pairs(args.set)
    if overrides:
        base = base.replace(**{k: type(base[k])(v) for k, v in overrides.items()})
    print(f"cfg {args.cfg} {args.set}; SAMPLE_ELEMENTS {ratecontrol.SAMPLE_ELEMENTS}")
    print("| model | maps | target | achieved | error | estimated | QP (tensors at QP-1 / QP+1) | "
          "probes | plan s | encode s |" + (" metrics |" if args.eval else ""))
    print("| --- | --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |"
          + (" --- |" if args.eval else ""))
    for model in args.models.split(","):
        adapter = get_adapter(model)
        adapter.ensure_available()
        tensors = {k: np.asarray(v) for k, v in adapter.load().items()}
        floats = sum(v.size for v in tensors.values() if v.dtype.kind == "f")
        importance = read_model(maps_files[model]) if model in maps_files else None
        ref = None
        if args.update:
            rng = np.random.default_rng(0)
            ref = {k: (v + rng.normal(0, args.update * float(np.std(v)), v.shape)).astype(
                v.dtype) if v.dtype.kind == "f" and v.ndim >= 2 else v
                for k, v in tensors.items()}
        # an ONNX model (ddddocr): the roles its graph gives, as for EncoderApp -i model.onnx
        consumers = (adapter.graph_consumers() if hasattr(adapter, "graph_consumers")
                     else None)
        for target in args.targets.split(","):
            kind, _, value = target.partition("=")
            cfg = base
            start = time.perf_counter()
            if kind == "snr":
                goal = float(value)
                plan = ratecontrol.plan_snr(tensors, cfg, goal, consumers,
                                            importance=importance, ref_model=ref,
                                            threads=args.threads)
            else:
                if kind == "bpp":
                    bits = float(value) * floats
                else:
                    value = value or sizes[model]
                    bits = 8.0 * parse_size(value, allow_auto=False)
                plan = ratecontrol.plan(tensors, cfg, bits, consumers, importance=importance,
                                        ref_model=ref, threads=args.threads)
            planned = time.perf_counter()
            res = codec.encode_with_recon(tensors, cfg.replace(QP=plan.qp),
                                          importance=importance, qp_offsets=plan.offsets,
                                          consumers=consumers, ref_model=ref,
                                          threads=args.threads)
            done = time.perf_counter()
            bpp = 8 * len(res.data) / floats
            snr = codec.pooled_snr(res.stats, weighted=plan.weighted)
            if kind == "snr":
                shown = (f"snr {value} dB", f"{snr:.2f} dB ({bpp:.3f} b/p)",
                         f"{snr - goal:+.2f} dB ({100 * (snr / goal - 1):+.2f} %)",
                         f"{plan.estimate_snr_db:.2f} dB")
            elif kind == "bpp":
                shown = (f"{value} bits/param", f"{bpp:.3f} ({snr:.2f} dB)",
                         f"{100 * (bpp / float(value) - 1):+.2f} %",
                         f"{plan.estimate_bits / floats:.3f}")
            else:
                shown = (f"size {value} ({8 * parse_size(value, allow_auto=False) / floats:.3f}"
                         " b/p)", f"{len(res.data)} B ({snr:.2f} dB)",
                         f"{100 * (8 * len(res.data) / bits - 1):+.2f} %",
                         f"{plan.estimate_bits / 8:.0f} B")
            moved = list(plan.offsets.values())
            label = model + (" update" if ref is not None else "")
            row = (f"| {label} | {'yes' if importance is not None else 'no'} | {shown[0]} | "
                   f"{shown[1]} | {shown[2]} | {shown[3]} | "
                   f"{plan.qp} ({moved.count(-1)} / {moved.count(1)}) | "
                   f"{plan.probes} | {planned - start:.1f} | {done - planned:.1f} |")
            if args.eval:
                metrics = adapter.evaluate(res.recon)
                row += " " + ", ".join(f"{k} {v:.5g}" for k, v in metrics.items()) + " |"
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
