#!/usr/bin/env python3
"""CE2: per layer type, which tensors the RD decision codes CLUSTERED, and their bits and
squared error against the scalar anchor at the same QP (docs/ce/CE2_clustering.md).

    python3 scripts/ce2_breakdown.py MODEL.safetensors QP [QP ...]
"""

from __future__ import annotations

import sys
from collections import defaultdict

import nntm
import numpy as np
from nntm import codec


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    tensors = {k: v for k, v in nntm.read_model(argv[0]).items() if v.dtype.kind == "f"}
    for qp in (int(q) for q in argv[1:]):
        test = codec.encode_with_recon(tensors, nntm.Config.from_files(
            ["cfg/encoder_anchor.cfg", "cfg/ce/tool_cluster.cfg"], overrides={"QP": qp}))
        anchor = codec.encode_with_recon(tensors, nntm.Config.from_files(
            ["cfg/encoder_anchor.cfg"], overrides={"QP": qp}))
        base = {s.name: s for s in anchor.stats}
        agg: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0, 0, 0, 0.0, 0.0])
        for s in test.stats:
            g = agg[(s.layer_type, s.mode)]
            x = tensors[s.name].astype(np.float64)
            g[0] += 1
            g[1] += s.num_params
            g[2] += s.bits
            g[3] += base[s.name].bits
            g[4] += float(np.sum((x - test.recon[s.name]) ** 2))
            g[5] += float(np.sum((x - anchor.recon[s.name]) ** 2))
        print(f"QP {qp}")
        for (layer, mode), g in sorted(agg.items()):
            print(f"  {layer:10s} {mode:10s} tensors {int(g[0]):3d} params {int(g[1]):9d} "
                  f"bits/param test {g[2] / g[1]:.4f} anchor {g[3] / g[1]:.4f}  "
                  f"SSE test/anchor {g[4] / max(g[5], 1e-30):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
