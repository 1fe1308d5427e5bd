"""Output fidelity of one cfg on the CTC models at a few QPs (the default's operating point).

    python benchmarks/default_sweep.py -32,-36 minilm,mobilenetv2,mtcnn cfg/encoder_default.cfg

Prints a Markdown row per (model, QP): bits/param, the adapter's metrics, the time.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

import numpy as np  # noqa: E402
from nntm import codec  # noqa: E402
from nntm.config import Config  # noqa: E402


def main(argv: list[str]) -> int:
    from nntm.ce.models import get_adapter

    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    qps = [int(q) for q in argv[0].split(",")]
    for model in argv[1].split(","):
        adapter = get_adapter(model)
        adapter.ensure_available()
        tensors = {k: np.asarray(v) for k, v in adapter.load().items()}
        n = sum(v.size for v in tensors.values() if v.dtype.kind == "f")
        for qp in qps:
            cfg = Config.from_files([argv[2]]).replace(QP=qp)
            start = time.time()
            res = codec.encode_with_recon(tensors, cfg)
            metrics = adapter.evaluate(res.recon)
            shown = ", ".join(f"{k} {v:.5g}" for k, v in metrics.items())
            print(f"| {model} | {qp} | {8 * len(res.data) / n:.3f} | {shown} | "
                  f"{time.time() - start:.0f} s |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
