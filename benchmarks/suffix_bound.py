"""What context-coding the Exp-Golomb suffix of abs_remainder could save (issue #8).

Encodes a CE model with cfg/encoder_anchor.cfg + cfg/encoder_weight_fidelity.cfg at one QP
(ROWS, 8-state DQ, window 10) and counts the bypass bins of the remainders' suffixes; then
prices, per prefix length k, the suffix's most significant bit and the whole suffix with
their static empirical distributions (a bound: no cost of learning, no side information).

    python benchmarks/suffix_bound.py minilm --qp=-32
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    import nntm
    from nntm import core, hls
    from nntm.arrange import to_kernel
    from nntm.ce.models import get_adapter
    from nntm.codec import _choose_mode, tensor_qp

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--qp", type=int, default=-32)
    args = ap.parse_args(argv)
    cfg = nntm.Config.from_files(["cfg/encoder_anchor.cfg", "cfg/encoder_weight_fidelity.cfg"],
                                 overrides={"QP": args.qp})
    gt = int(cfg["NumGtFlags"])
    bits = bypass = n = 0
    msb_gain = all_gain = 0.0
    for name, value in get_adapter(args.model).load().items():
        arr = np.asarray(value)
        if _choose_mode(name, arr, cfg) != hls.CodingMode.QUANTIZED:
            continue
        k = to_kernel(arr.astype(np.float32))
        p = core.KernelParams(k.shape[0], k.shape[1], tensor_qp(cfg, arr.ndim, False, name),
                              int(cfg["QPDensity"]), gt, core.TreeParams(), 2,
                              int(cfg["ProbWindow"]))
        r = core.encode_kernel(k, p, np.dtype(np.float32), True, float(cfg["LambdaScale"]), name)
        bits += 8 * len(r.payload)
        n += k.size
        mag = np.abs(r.levels.ravel().astype(np.int64))
        rem = mag[mag > gt] - gt - 1
        prefix = np.floor(np.log2(rem + 1)).astype(np.int64)
        bypass += int(prefix.sum())
        for j in range(1, int(prefix.max()) + 1 if prefix.size else 1):
            sel = prefix == j
            if not sel.any():
                continue
            suffix = rem[sel] + 1 - (1 << j)
            _, cnt = np.unique(suffix, return_counts=True)
            all_gain += sel.sum() * j + float((cnt * np.log2(cnt / cnt.sum())).sum())
            p1 = float((suffix >> (j - 1)).mean())
            h = 0.0 if p1 in (0.0, 1.0) else -(p1 * np.log2(p1) + (1 - p1) * np.log2(1 - p1))
            msb_gain += sel.sum() * (1.0 - h)
    print(f"{args.model} QP {args.qp}: {bits / n:.4f} bit/param, suffix bypass bins "
          f"{bypass / n:.4f} bit/param; static saving: the suffix MSB {100 * msb_gain / bits:.2f} %"
          f", the whole suffix {100 * all_gain / bits:.2f} % of the bits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
