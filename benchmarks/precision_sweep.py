"""1-D precision rules at equal weight coding: QP1DMode stats against relative (and variants).

The multi-dimensional tensors are coded once per QP (their coding does not depend on the 1-D
rule); the 1-D and scalar tensors are coded once per rule, their reconstructions joined to the
weights' and the network evaluated with the model's own metric.  Bits are the whole stream's:
the weights' stream plus the 1-D tensors' units (each rule's), so the rate is exact up to the
few bytes of a second model parameter set.

    PYTHONPATH=python /work/venv/int/bin/python benchmarks/precision_sweep.py \\
        --model mobilenetv2 --qps -28 -32 -36 --rules stats "relative:-40:0" "relative:-36:4"

A rule is ``stats``, ``offset``, ``fixed`` or
``relative:<QP1DRelStats>:<QP1DRelOffset>[:<QP1DRelVarQuantile>[:<QP1DRelFloor>]]``; ``cfg``
takes the cfg files' own 1-D keys.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

import numpy as np  # noqa: E402
from nntm import codec  # noqa: E402
from nntm.config import Config  # noqa: E402

CFGS = [str(ROOT / "cfg" / "encoder_anchor.cfg"), str(ROOT / "cfg" / "encoder_weight_fidelity.cfg")]


def rule_config(base: Config, rule: str) -> Config:
    """The cfg of a rule label (see the module docstring)."""
    if rule.startswith("relative"):
        parts = rule.split(":") + ["0", "0"]
        return base.replace(QP1DMode="relative", QP1DRelStats=int(parts[1]),
                            QP1DRelOffset=int(parts[2]), QP1DRelVarQuantile=float(parts[3]),
                            QP1DRelFloor=float(parts[4]))
    return base if rule == "cfg" else base.replace(QP1DMode=rule)


def split(tensors: dict[str, np.ndarray]) -> tuple[dict, dict]:
    """(tensors of two or more dimensions, the others)."""
    big = {k: v for k, v in tensors.items() if v.ndim > 1}
    small = {k: v for k, v in tensors.items() if v.ndim <= 1}
    return big, small


def main(argv: list[str] | None = None) -> int:
    from nntm.ce.models import get_adapter
    from nntm.ce.runner import weight_snr

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mobilenetv2")
    ap.add_argument("--cfg", nargs="*", default=CFGS)
    ap.add_argument("--qps", nargs="*", type=int, default=[-28, -32, -36])
    ap.add_argument("--rules", nargs="*", default=["stats", "relative:-40:0"])
    ap.add_argument("--rename", action="store_true",
                    help="code the model under opaque export-style names (roles_table.renamed)")
    args = ap.parse_args(argv)
    adapter = get_adapter(args.model)
    adapter.ensure_available()
    tensors = {k: np.asarray(v) for k, v in adapter.load().items()}
    back = None
    if args.rename:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from roles_table import renamed
        other = renamed(tensors)
        back = dict(zip(other, tensors, strict=True))
        tensors = other
    n = sum(v.size for v in tensors.values() if v.dtype.kind == "f")
    big, small = split(tensors)
    print(f"{args.model}: {len(tensors)} tensors ({len(small)} of <= 1 dimension, "
          f"{sum(v.size for v in small.values())} values), {n} float parameters; cfg "
          f"{' + '.join(Path(c).name for c in args.cfg)}{'; renamed' if back else ''}\n")
    print("| QP | rule | bits/param | 1-D bits/param | nSNR dB | metrics |")
    print("| ---: | --- | ---: | ---: | ---: | --- |")
    for qp in args.qps:
        base = Config.from_files(args.cfg).replace(QP=qp)
        t0 = time.time()
        wres = codec.encode_with_recon(big, base)
        for rule in args.rules:
            sres = codec.encode_with_recon(small, rule_config(base, rule))
            recon = {**wres.recon, **sres.recon}
            recon = {k: recon[k] for k in tensors}
            snr = weight_snr(tensors, recon).normalised_db
            if back is not None:
                recon = {back[k]: v for k, v in recon.items()}
            metrics = adapter.evaluate(recon)
            bits = 8 * (len(wres.data) + len(sres.data))
            shown = ", ".join(f"{k} {v:.5g}" for k, v in metrics.items())
            print(f"| {qp} | {rule} | {bits / n:.4f} | {8 * len(sres.data) / n:.4f} | "
                  f"{snr:.2f} | {shown} |", flush=True)
        print(f"<!-- QP {qp}: {time.time() - t0:.0f} s -->", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
