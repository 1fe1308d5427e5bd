"""What better probability estimation could save on the level bins (issue #8).

Encodes every quantized tensor of a CE model with a cfg at one QP (ROWS arrangement, no
coding tree), rebuilds the sequence of context-coded bins of ``level_coding`` from the levels
(docs/bitstream.md clauses 5.3-5.4) and prices each context's bin sequence under several
probability estimators (float models of the adaptive context variables):

- ``4+7``: the mean of rate-4 and rate-7 estimators (NNTM 1.0-1.3; checked against the
  real payload size, the row ``actual``);
- ``a+b``: the mean of rate-a and rate-b estimators;
- ``wN``: one estimator that starts as a running mean (step 1/(n+2)) and settles at rate N;
- ``f+wN``: the mean of a rate-4/5 estimator and ``wN``;
- ``best/ctx``: per context the best of a list, plus 3 bits per used context for the choice;
- ``ideal``: the empirical entropy of the levels given the ``sig_flag`` context (any
  binarization, static, side information not counted);
- ``static``: each context's empirical entropy (a lower bound for any adaptive estimator
  of a stationary source, side information not counted).

    python benchmarks/prob_est_bound.py --model mobilenetv2 --qp -32 \
        [--cfg cfg/encoder_anchor.cfg cfg/ce/tool_dq.cfg] [--set QP1DMode=offset QPOffset1D=0]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

import numpy as np
from scipy.signal import lfilter

NUM_SIG = 27
NUM_SIGN = 3
GT_CLASSES = 5
EGP_CTX = 12
# DQ state tables (lib/common/contexts.h): 4 states, and 8 [1.4]
NEXT = {1: ((0, 2), (2, 0), (1, 3), (3, 1)),
        2: ((0, 1), (4, 5), (1, 0), (5, 4), (7, 6), (3, 2), (6, 7), (2, 3))}


def dq_states(levels: np.ndarray, dq: int) -> np.ndarray:
    """The DQ state of each level in raster order (dq 0 off, 1 four states, 2 eight)."""
    flat = levels.ravel()
    if not dq:
        return np.zeros(flat.size, dtype=np.int8)
    table = NEXT[int(dq)]
    par = (flat & 1).tolist()
    out = bytearray(flat.size)
    s = 0
    for i, p in enumerate(par):
        out[i] = s
        s = table[s][p]
    return np.frombuffer(bytes(out), dtype=np.int8)


def neighbours(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The levels, their left and above neighbours (0 outside), each flattened."""
    k = levels.astype(np.int64)
    left = np.zeros_like(k)
    left[:, 1:] = k[:, :-1]
    above = np.zeros_like(k)
    above[1:, :] = k[:-1, :]
    return k.ravel(), left.ravel(), above.ravel()


def neighbour_sum_classes(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """gtClass and egpClass of a neighbourhood sum s (clause 5.3.2)."""
    return np.select([s == 0, s <= 2, s <= 5, s <= 10], [0, 1, 2, 3], 4), (s > 10).astype(np.int64)


def emit_bins(k: np.ndarray, sig_id: np.ndarray, sign_id: np.ndarray, gt_id: np.ndarray,
              egp_class: np.ndarray, num_gt: int) -> tuple[list, int, int]:
    """The context-coded bins of level_coding for the flattened levels k, with the given
    per-level context ids (any non-negative integers): [(ctx id array, bin array, order key
    array)], the number of bypass bins, and n_sig (the ids below it are sig_flag contexts).
    Each syntax element's ids get a range of their own; greater-than flag i uses gt_id with
    its own range per i, the remainder prefix bin j EgpCtx[egp_class][min(j, 11)]."""
    pos = np.arange(k.size, dtype=np.int64) * 64
    mag = np.abs(k)
    n_sig = max(int(sig_id.max()) + 1 if sig_id.size else 0, NUM_SIG)
    out = [(sig_id, (k != 0).astype(np.int8), pos)]
    nz = mag > 0
    base = n_sig
    n_sign = max(int(sign_id.max()) + 1 if sign_id.size else 0, NUM_SIGN)
    out.append((base + sign_id[nz], (k[nz] < 0).astype(np.int8), pos[nz] + 1))
    base += n_sign
    n_gt = max(int(gt_id.max()) + 1 if gt_id.size else 0, GT_CLASSES)
    for i in range(num_gt):
        m = mag > i
        out.append((base + i * n_gt + gt_id[m], (mag[m] > i + 1).astype(np.int8),
                    pos[m] + 2 + i))
    base += num_gt * n_gt
    m = mag > num_gt
    rem = mag[m] - num_gt - 1
    kk = np.floor(np.log2(rem + 1)).astype(np.int64)  # prefix ones
    cls, p0 = egp_class[m], pos[m] + 2 + num_gt
    for j in range(int(kk.max()) + 1 if kk.size else 0):
        mm = kk >= j
        out.append((base + cls[mm] * EGP_CTX + min(j, EGP_CTX - 1), (kk[mm] > j).astype(np.int8),
                    p0[mm] + j))
    return out, int(kk.sum()), n_sig


def level_bins(levels: np.ndarray, num_gt: int, dq: bool) -> tuple[list, int]:
    """[(ctx id array, bin array, order key array)] of the context-coded bins of NNTM's
    level contexts (sig ids 0..26 first); bypass count."""
    k, left, above = neighbours(levels)
    state = dq_states(levels, dq).astype(np.int64)
    a, b = np.minimum(np.abs(left), 64), np.minimum(np.abs(above), 64)
    sig = np.minimum(a, 2) * 3 + np.minimum(b, 2) + 9 * np.maximum(0, state - 1)
    sign = np.where(left == 0, 0, np.where(left > 0, 1, 2))
    gtc, egc = neighbour_sum_classes(a + b)
    out, bypass, _ = emit_bins(k, sig, sign, gtc, egc, num_gt)
    return out, bypass


def per_context(parts: list) -> dict[int, np.ndarray]:
    ctx = np.concatenate([p[0] for p in parts])
    bins = np.concatenate([p[1] for p in parts])
    key = np.concatenate([p[2] for p in parts])
    order = np.lexsort((key, ctx))
    ctx, bins = ctx[order], bins[order]
    cuts = np.flatnonzero(np.diff(ctx)) + 1
    starts = np.concatenate([[0], cuts])
    return {int(ctx[s0]): bins[s0:e0].astype(np.float64)
            for s0, e0 in zip(starts, np.concatenate([cuts, [ctx.size]]), strict=True)}


def ewma(b: np.ndarray, rate: int, p0: float) -> np.ndarray:
    """Probability of 1 before each bin, exponential estimator of rate `rate`."""
    al = 2.0 ** -rate
    y = lfilter([al], [1.0, -(1.0 - al)], b, zi=[(1.0 - al) * p0])[0]
    return np.concatenate([[p0], y[:-1]])


def warm(b: np.ndarray, rate: int, p0: float) -> np.ndarray:
    """Running mean (step 1/(n+2)) until the step reaches 2^-rate, then rate `rate`."""
    t = min(b.size, (1 << rate) - 2)
    n = np.arange(t + 1, dtype=np.float64)
    cs = np.concatenate([[0.0], np.cumsum(b[:t])])
    head = (p0 + cs) / (n + 1.0)  # p before bins 0..t
    if t == b.size:
        return head[:-1]
    tail = ewma(b[t:], rate, head[-1])
    return np.concatenate([head[:-1], tail])


def warm2(b: np.ndarray, rate: int, p0: float) -> np.ndarray:
    """As warm(), with steps 2^-min(rate, floor(log2(n + 2))) (shift-only arithmetic)."""
    out = np.empty(b.size)
    p = p0
    t = min(b.size, (1 << rate) - 2)
    for n in range(t):
        out[n] = p
        sh = min(rate, (n + 2).bit_length() - 1)
        p += (b[n] - p) / (1 << sh)
    if t == b.size:
        return out
    out[t:] = ewma(b[t:], rate, p)
    return out


def cost(b: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1.0 / 32768, 1.0 - 1.0 / 32768)
    return float(-(b * np.log2(p) + (1 - b) * np.log2(1 - p)).sum())


def static(b: np.ndarray) -> float:
    n1 = b.sum()
    n = b.size
    h = 0.0
    for c in (n1, n - n1):
        if 0 < c < n:
            h -= c * np.log2(c / n)
    return float(h)


def init_p(ctx: int) -> float:
    return 12288 / 32768 if ctx < NUM_SIG else 0.5


ESTIMATORS = {
    "4+7": lambda b, p0: 0.5 * (ewma(b, 4, p0) + ewma(b, 7, p0)),
    "5+8": lambda b, p0: 0.5 * (ewma(b, 5, p0) + ewma(b, 8, p0)),
    "6+9": lambda b, p0: 0.5 * (ewma(b, 6, p0) + ewma(b, 9, p0)),
    "w7": lambda b, p0: warm(b, 7, p0),
    "w8": lambda b, p0: warm(b, 8, p0),
    "w10": lambda b, p0: warm(b, 10, p0),
    "s8": lambda b, p0: warm2(b, 8, p0),
    "s10": lambda b, p0: warm2(b, 10, p0),
    "4+w7": lambda b, p0: 0.5 * (ewma(b, 4, p0) + warm(b, 7, p0)),
    "5+w8": lambda b, p0: 0.5 * (ewma(b, 5, p0) + warm(b, 8, p0)),
    "5+w10": lambda b, p0: 0.5 * (ewma(b, 5, p0) + warm(b, 10, p0)),
    "6+w10": lambda b, p0: 0.5 * (ewma(b, 6, p0) + warm(b, 10, p0)),
}
BEST_OF = ["4+7", "5+8", "6+9", "w7", "5+w8", "6+w10", "w10"]


def main(argv: list[str] | None = None) -> int:
    import nntm
    from nntm import core, hls
    from nntm.arrange import to_kernel
    from nntm.ce.models import get_adapter
    from nntm.codec import _choose_mode, tensor_qp
    from nntm.roles import derive_roles

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--qp", type=int, required=True)
    ap.add_argument("--cfg", nargs="+", default=["cfg/encoder_anchor.cfg", "cfg/ce/tool_dq.cfg"])
    ap.add_argument("--set", nargs="*", default=[], help="Key=value overrides")
    ap.add_argument("--tensors", action="store_true", help="a line per tensor")
    args = ap.parse_args(argv)
    overrides: dict[str, object] = {"QP": args.qp}
    for kv in args.set:
        key, value = kv.split("=", 1)
        overrides[key] = int(value) if value.lstrip("-").isdigit() else value
    cfg = nntm.Config.from_files(args.cfg, overrides=overrides)
    tensors = get_adapter(args.model).load()
    model_roles = derive_roles(tensors)
    dq = bool(cfg["DepQuant"])
    num_gt = int(cfg["NumGtFlags"])
    totals: dict[str, float] = defaultdict(float)
    n_params = 0
    for name, value in tensors.items():
        arr = np.asarray(value)
        if _choose_mode(name, arr, cfg) != hls.CodingMode.QUANTIZED:
            continue
        kernel = to_kernel(arr.astype(np.float32))
        rows, cols = kernel.shape
        params = core.KernelParams(rows, cols, tensor_qp(cfg, arr.ndim, False, model_roles[name]),
                                   int(cfg["QPDensity"]), num_gt, core.TreeParams(), dq)
        res = core.encode_kernel(kernel, params, arr.dtype, bool(cfg["RDOQ"]),
                                 float(cfg["LambdaScale"]), name)
        parts, bypass = level_bins(res.levels, num_gt, dq)
        sig_ctx, lv = parts[0][0], res.levels.ravel().astype(np.int64)
        ideal = 0.0
        for cval in np.unique(sig_ctx):
            _, cnt = np.unique(lv[sig_ctx == cval], return_counts=True)
            pr = cnt / cnt.sum()
            ideal -= float((cnt * np.log2(pr)).sum())
        seqs = per_context(parts)
        row: dict[str, float] = {"actual": 8.0 * len(res.payload)}
        best = bypass + 3.0 * len(seqs)
        stat = float(bypass)
        for key in ESTIMATORS:
            row[key] = float(bypass)
        for ctx, b in seqs.items():
            p0 = init_p(ctx)
            c = {key: cost(b, f(b, p0)) for key, f in ESTIMATORS.items()}
            for key, v in c.items():
                row[key] += v
            best += min(c[k] for k in BEST_OF)
            stat += static(b)
        row["best/ctx"] = best
        row["static"] = stat
        row["ideal"] = ideal
        for key, v in row.items():
            totals[key] += v
        n_params += arr.size
        if args.tensors:
            print(f"{name:50s} {arr.size:9d} " + " ".join(
                f"{k} {100 * (v / row['4+7'] - 1):+.2f}" for k, v in row.items() if k != "4+7"),
                flush=True)
    ref = totals["4+7"]
    print(f"{args.model} QP {args.qp}: {n_params} params, "
          f"{ref / n_params:.4f} bit/param (4+7 model)")
    for key, v in totals.items():
        print(f"  {key:9s} {v / n_params:.4f} bit/param  {100 * (v / ref - 1):+.2f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
