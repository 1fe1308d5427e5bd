"""Level-context variants priced with the counting estimator (issue #8, contexts).

Encodes a CE model's quantized tensors at one QP (cfg/encoder_anchor.cfg + tool_dq, 1-D
tensors at the QP, 4 greater-than flags, window 10), rebuilds the bins of level_coding and
prices each context's bin sequence with the window-10 counting estimator under context
assignments that add to the NNTM 1.4 contexts (base): the quantizer of the DQ state to the
greater-than flags (gtq), one SigCtx set per DQ state (sig4), a class of the mean |level|
of the column above (col) and of the last 16 levels of the row (row); and, without more
greater-than contexts, neighbourhood sums that mix in the row and column means (mix: the
mean of |L| + |A| and the row + column means; rc: the row + column means alone), with three
scale classes in the sig_flag contexts; and a forward-adaptive bound (rowfwd): each row's
mean |level| over the whole row put in one of four classes, as if sent with 2 bits per row
(counted), selecting the sig_flag and greater-than contexts.

    python benchmarks/ce4_ctx_variants.py minilm --qp=-32
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import prob_est_bound as pb  # noqa: E402

GT = 4
VARIANTS = ["base", "gtq", "sig4", "col", "row", "col+row", "col+row+gtq", "mix", "rc", "rowfwd"]


def _prev_means(lv: np.ndarray, win: int) -> tuple[np.ndarray, np.ndarray]:
    """Per level, the mean |level| of the column above it and of the last `win` levels of
    its row (NaN where there is none), flattened."""
    rows, cols = lv.shape
    mag = np.abs(lv.astype(np.int64))
    col_sum = np.cumsum(mag, axis=0) - mag
    r_idx = np.arange(rows)[:, None] * np.ones((1, cols), np.int64)
    row_sum = np.cumsum(mag, axis=1) - mag
    if cols > win:
        row_sum = row_sum - np.concatenate([np.zeros((rows, win), np.int64),
                                            row_sum[:, :-win]], axis=1)
    c_n = np.minimum(np.ones((rows, 1), np.int64) * np.arange(cols)[None, :], win)
    with np.errstate(invalid="ignore", divide="ignore"):
        col_m = np.where(r_idx > 0, col_sum / r_idx, np.nan)
        row_m = np.where(c_n > 0, row_sum / c_n, np.nan)
    return col_m.ravel(), row_m.ravel()


def _mean_class(mean: np.ndarray) -> np.ndarray:
    """Class of a mean |level|: 0 none seen, then 4 x mean < 2, < 6, < 16, else."""
    m4 = np.where(np.isnan(mean), -1.0, np.floor(4.0 * np.nan_to_num(mean)))
    return np.select([m4 < 0, m4 < 2, m4 < 6, m4 < 16], [0, 1, 2, 3], 4)


def variant_bins(lv: np.ndarray, state: np.ndarray, variant: str) -> tuple[list, int, int]:
    """The bins of one context variant (prob_est_bound.emit_bins): parts, bypass bins plus
    side information, n_sig."""
    rows, cols = lv.shape
    k, left, above = pb.neighbours(lv)
    st = state.astype(np.int64)
    a, b = np.minimum(np.abs(left), 64), np.minimum(np.abs(above), 64)
    s = a + b
    sig = np.minimum(a, 2) * 3 + np.minimum(b, 2) + 9 * np.maximum(0, st - 1)
    if "sig4" in variant:
        sig = np.minimum(a, 2) * 3 + np.minimum(b, 2) + 9 * st
    sign = np.where(left == 0, 0, np.where(left > 0, 1, 2))
    if variant in ("mix", "rc"):
        col_mean, row_mean = _prev_means(lv, 32)
        scale = np.nan_to_num(row_mean) + np.nan_to_num(col_mean)
        s = np.round(0.5 * (a + b) + 0.5 * scale if variant == "mix" else scale).astype(np.int64)
        sig_n = (np.minimum(a, 2) * 3 + np.minimum(b, 2)) * 3 + np.select(
            [scale < 0.5, scale < 1.5], [0, 1], 2)
        sig = sig_n + 27 * np.maximum(0, st - 1)
    gtc, egc = pb.neighbour_sum_classes(s)
    extra_sig = np.zeros_like(k)
    extra_gt = np.zeros_like(k)
    if "col" in variant or "row" in variant:
        col_mean, row_mean = _prev_means(lv, 16)
        for key, mean in (("col", col_mean), ("row", row_mean)):
            if key in variant:
                extra_sig = extra_sig * 5 + _mean_class(mean)
                extra_gt = extra_gt * 5 + _mean_class(mean)
    if "gtq" in variant:
        extra_gt = extra_gt * 2 + (st >= 2)
    side = 0
    if variant == "rowfwd":
        rmean = np.abs(lv.astype(np.float64)).mean(axis=1)
        edges = np.quantile(rmean, [0.25, 0.5, 0.75])
        extra_sig = extra_gt = np.repeat(np.searchsorted(edges, rmean), cols)
        side = 2 * rows
    parts, bypass, n_sig = pb.emit_bins(k, sig * 1000 + extra_sig, sign, gtc * 1000 + extra_gt,
                                        egc, GT)
    return parts, bypass + side, n_sig


def main(argv: list[str] | None = None) -> int:
    import nntm
    from nntm import core, hls
    from nntm.arrange import to_kernel
    from nntm.ce.models import get_adapter
    from nntm.codec import _choose_mode, tensor_qp
    from nntm.roles import derive_roles

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--qp", type=int, default=-32)
    args = ap.parse_args(argv)
    cfg = nntm.Config.from_files(["cfg/encoder_anchor.cfg", "cfg/ce/tool_dq.cfg"], overrides={
        "QP": args.qp, "QP1DMode": "offset", "QPOffset1D": 0, "ProbWindow": 10})
    total = dict.fromkeys(VARIANTS, 0.0)
    n = 0
    model = get_adapter(args.model).load()
    model_roles = derive_roles(model)
    for name, value in model.items():
        arr = np.asarray(value)
        if _choose_mode(name, arr, cfg) != hls.CodingMode.QUANTIZED:
            continue
        kern = to_kernel(arr.astype(np.float32))
        params = core.KernelParams(kern.shape[0], kern.shape[1],
                                   tensor_qp(cfg, arr.ndim, False, model_roles[name]), 2, GT,
                                   core.TreeParams(), 1, 10)
        res = core.encode_kernel(kern, params, arr.dtype, True, 0.1, name)
        state = pb.dq_states(res.levels, True)
        for v in VARIANTS:
            parts, bypass, n_sig = variant_bins(res.levels, state, v)
            c = float(bypass)
            for ctx, b in pb.per_context(parts).items():
                p0 = 12288 / 32768 if ctx < n_sig else 0.5
                c += pb.cost(b, pb.warm2(b, 10, p0) if len(b) < 3000 else pb.warm(b, 10, p0))
            total[v] += c
        n += arr.size
    for v in VARIANTS:
        print(f"{v:14s} {total[v] / n:.4f} bit/param {100 * (total[v] / total['base'] - 1):+.2f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
