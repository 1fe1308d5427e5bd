#!/usr/bin/env python3
"""Upper bound of intra prediction on trained weights (issue #6, "be honest").

    python benchmarks/intra_oracle.py [--models digits,minilm,mobilenetv2,mtcnn] [--cu 8]
                                      [--max-cus 400]

For CUs of cu x cu samples of each kernel tensor (ROWS arrangement) it measures how much
residual energy the intra predictors of issue #6 could remove at best, with an oracle that
picks the best predictor per CU for free (no side information, ORIGINAL neighbours instead
of quantized ones, least-squares gain for each predictor): every real codec does worse.

Predictors (each from samples coded before the CU in raster CU order):
  rowmean   each row of the CU predicted by the mean of the cu samples to its left
  colmean   each column predicted by the mean of the cu samples above it
  copy      block copy: the best earlier cu x cu block within +-W samples (sign and
            least-squares scale free), W = 2*cu

Prints, per model, the residual fraction E_best / E_none over the sampled CUs (each
tensor weighted equally), the rate that fraction would save at high rate (0.5 log2(1/f)
bits per weight), and the same oracle on a CONTROL: each tensor with its values randomly
permuted (no structure at all).  Whatever the oracle finds in the control is selection
bias (the best of many candidates with a free scale always explains some energy), so the
structure intra prediction could use is the difference between the two columns.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from nntm.arrange import Arrangement, to_kernel  # noqa: E402


def _ls_residual(block: np.ndarray, pred: np.ndarray) -> float:
    """Energy left after the best scaled prediction a * pred."""
    pp = float(np.sum(pred * pred))
    e = float(np.sum(block * block))
    if pp == 0.0:
        return e
    a = float(np.sum(block * pred)) / pp
    return float(np.sum((block - a * pred) ** 2))


def tensor_oracle(k: np.ndarray, cu: int, max_cus: int, rng: np.random.Generator
                  ) -> dict[str, float]:
    rows, cols = k.shape
    positions = [(y, x) for y in range(0, rows - cu + 1, cu) for x in range(0, cols - cu + 1, cu)
                 if y >= cu and x >= cu]
    if not positions:
        return {}
    if len(positions) > max_cus:
        idx = rng.choice(len(positions), max_cus, replace=False)
        positions = [positions[i] for i in sorted(idx)]
    acc = {"none": 0.0, "rowmean": 0.0, "colmean": 0.0, "copy": 0.0, "best": 0.0}
    win = 2 * cu
    for y, x in positions:
        b = k[y:y + cu, x:x + cu]
        e0 = float(np.sum(b * b))
        left = k[y:y + cu, x - cu:x].mean(axis=1, keepdims=True) * np.ones((1, cu))
        above = k[y - cu:y, x:x + cu].mean(axis=0, keepdims=True) * np.ones((cu, 1))
        er = _ls_residual(b, left)
        ec = _ls_residual(b, above)
        best_copy = e0
        for yy in range(max(0, y - win), y + 1):
            for xx in range(max(0, x - win), min(cols - cu, x + win) + 1):
                if yy + cu > y and xx + cu > x and yy >= y - cu + 1 and yy == y and xx >= x:
                    continue  # not coded yet (same CU row, at or right of the CU)
                if yy > y - cu and xx > x - cu:
                    continue  # overlaps the CU or samples after it
                best_copy = min(best_copy, _ls_residual(b, k[yy:yy + cu, xx:xx + cu]))
        acc["none"] += e0
        acc["rowmean"] += min(e0, er)
        acc["colmean"] += min(e0, ec)
        acc["copy"] += best_copy
        acc["best"] += min(e0, er, ec, best_copy)
    return acc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="digits,minilm,mobilenetv2,mtcnn")
    ap.add_argument("--cu", type=int, default=8)
    ap.add_argument("--max-cus", type=int, default=150, help="CUs sampled per tensor")
    args = ap.parse_args(argv)
    from nntm.ce.models import get_adapter

    rng = np.random.default_rng(0)
    print(f"CU {args.cu}x{args.cu}; residual energy fraction (oracle, no side info): lower is "
          "better, 1.000 = no gain")
    print(f"{'model':<12} {'tensors':>7} {'CUs':>7} {'rowmean':>8} {'colmean':>8} {'copy':>8} "
          f"{'best':>8} {'bits/w':>7} {'control best':>12} {'bits/w':>7}")
    for model in args.models.split(","):
        tensors = get_adapter(model).load()
        tot = {"none": 0.0, "rowmean": 0.0, "colmean": 0.0, "copy": 0.0, "best": 0.0}
        ctl = {"none": 0.0, "best": 0.0}
        n_t = n_cu = 0
        for v in tensors.values():
            a = np.asarray(v)
            if a.ndim < 2 or a.dtype.kind != "f" or a.size < 4 * args.cu * args.cu:
                continue
            k = to_kernel(a.astype(np.float64), Arrangement.ROWS)
            res = tensor_oracle(k, args.cu, args.max_cus, rng)
            if not res:
                continue
            # weight every tensor equally (normalise by its own energy)
            norm = res["none"] or 1.0
            for key in tot:
                tot[key] += res[key] / norm
            shuffled = rng.permutation(k.ravel()).reshape(k.shape)
            cres = tensor_oracle(shuffled, args.cu, args.max_cus, rng)
            for key in ctl:
                ctl[key] += cres[key] / (cres["none"] or 1.0)
            n_t += 1
            n_cu += min(args.max_cus, (k.shape[0] // args.cu) * (k.shape[1] // args.cu))
        if not n_t:
            continue
        f = {key: tot[key] / tot["none"] for key in tot}
        saved = 0.5 * np.log2(1.0 / f["best"])
        cf = ctl["best"] / ctl["none"]
        print(f"{model:<12} {n_t:>7} {n_cu:>7} {f['rowmean']:>8.3f} {f['colmean']:>8.3f} "
              f"{f['copy']:>8.3f} {f['best']:>8.3f} {saved:>7.3f} {cf:>12.3f} "
              f"{0.5 * np.log2(1.0 / cf):>7.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
