"""The same model under another naming: does the coding still keep it working?

Encodes a CTC model with a cfg that uses `QP1DMode stats` three ways at each QP:

    names      the model's own keys (x.running_var ...): the roles follow the key structure
    renamed    keys replaced by opaque export-style names (net/op_<m>.w_<k>, modules kept),
               coded with the role rule (nntm.roles finds the BatchNorm groups by values)
    name-rule  the renamed keys coded as the old name rule did (no tensor ends in
               running_var, so every 1-D tensor at QP + QPOffset1D: QP1DMode offset)

and evaluates each reconstruction with the model's own metric (under its own names).

    python benchmarks/roles_renamed.py --model mobilenetv2 --qps -28 -32 -36
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
from nntm import codec  # noqa: E402
from nntm.config import Config  # noqa: E402
from roles_table import renamed  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from nntm.ce.models import get_adapter

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mobilenetv2")
    ap.add_argument("--cfg", nargs="*", default=[str(ROOT / "cfg" / "encoder_anchor.cfg"),
                                                 str(ROOT / "cfg" / "encoder_weight_fidelity.cfg")])
    ap.add_argument("--qps", nargs="*", type=int, default=[-28, -32, -36])
    args = ap.parse_args(argv)
    adapter = get_adapter(args.model)
    adapter.ensure_available()
    tensors = {k: np.asarray(v) for k, v in adapter.load().items()}
    other = renamed(tensors)
    back = dict(zip(other, tensors, strict=True))
    n = sum(v.size for v in tensors.values() if v.dtype.kind == "f")
    print(f"{args.model}: {len(tensors)} tensors, {n} float parameters; cfg "
          f"{' + '.join(Path(c).name for c in args.cfg)}\n")
    print("| QP | variant | bits/param | metrics |")
    print("| ---: | --- | ---: | --- |")
    for qp in args.qps:
        base = Config.from_files(args.cfg).replace(QP=qp)
        runs = (("names", tensors, base, None), ("renamed", other, base, back),
                ("name-rule", other, base.replace(QP1DMode="offset"), back))
        for label, model, cfg, rename in runs:
            res = codec.encode_with_recon(model, cfg)
            recon = res.recon if rename is None else {rename[k]: v for k, v in res.recon.items()}
            metrics = adapter.evaluate(recon)
            shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
            print(f"| {qp} | {label} | {8 * len(res.data) / n:.3f} | {shown} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
