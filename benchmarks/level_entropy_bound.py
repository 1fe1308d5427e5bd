"""How far the level coding is from static bounds of its levels (issue #8, fifth session).

Encodes a CE model's quantized tensors of two or more dimensions with
cfg/encoder_anchor.cfg + cfg/encoder_weight_fidelity.cfg at one QP (ROWS, 8-state DQ,
window 10, context-coded suffix), replays the DQ state machine over the levels in coding
order and prints, per parameter:

- the real payload bits;
- static conditional entropies of |level| (signs excluded: one bit per nonzero level) given
  the quantizer of the DQ state (q), and given q with neighbourhood classes: the NNTM
  greater-than classes of |left| + |above| (cur), 16 log-spaced classes of the same sum
  (fine), and 20 log-spaced classes of a five-neighbour sum: left, two left, above-left,
  above, above-right (wide5);
- for the largest tensor, row classes by the RMS of each row's levels (4, 8, 16 classes,
  with log2(classes) bits per row of side information).

Static entropies of millions of levels are bounds without the cost of learning; a context
model gets at most the difference between two of them.

    python benchmarks/level_entropy_bound.py minilm --qp=-28
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import prob_est_bound as pb  # noqa: E402

CFGS = ["cfg/encoder_anchor.cfg", "cfg/encoder_weight_fidelity.cfg"]


def cond_entropy(keys: np.ndarray, values: np.ndarray) -> float:
    """H(values | keys) in bits, summed over the samples (static, empirical)."""
    joint = keys.astype(np.int64) * 1_000_003 + values.astype(np.int64)
    _, c = np.unique(joint, return_counts=True)
    _, ck = np.unique(keys, return_counts=True)
    return float(-(c * np.log2(c)).sum() + (ck * np.log2(ck)).sum())


def quantizers(levels: np.ndarray) -> np.ndarray:
    """1 where the 8-state machine (coding order = raster) is in a Q1 state, else 0."""
    return (pb.dq_states(levels, 2) >= 4).astype(np.int64).reshape(levels.shape)


def log_class(v: np.ndarray, top: int) -> np.ndarray:
    return np.minimum(np.floor(np.log2(v + 1) * 2).astype(np.int64), top)


def main(argv: list[str] | None = None) -> int:
    import nntm
    from nntm import core, hls
    from nntm.arrange import to_kernel
    from nntm.ce.models import get_adapter
    from nntm.codec import _choose_mode, tensor_qp
    from nntm.roles import derive_roles

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--qp", type=int, default=-28)
    args = ap.parse_args(argv)
    cfg = nntm.Config.from_files(CFGS, overrides={"QP": args.qp})
    totals: dict[str, float] = {}
    bits = n = nonzero = 0
    largest = None
    model = get_adapter(args.model).load()
    model_roles = derive_roles(model)
    for name, value in model.items():
        arr = np.asarray(value)
        if arr.ndim < 2 or _choose_mode(name, arr, cfg) != hls.CodingMode.QUANTIZED:
            continue
        k = to_kernel(arr.astype(np.float32))
        qp = tensor_qp(cfg, arr.ndim, False, model_roles[name])
        p = core.KernelParams(k.shape[0], k.shape[1], qp,
                              int(cfg["QPDensity"]), int(cfg["NumGtFlags"]), core.TreeParams(),
                              2, int(cfg["ProbWindow"]), int(cfg["SuffixCtx"]))
        r = core.encode_kernel(k, p, np.dtype(np.float32), True, float(cfg["LambdaScale"]), name)
        lv = r.levels.astype(np.int64)
        q = quantizers(lv).ravel()
        a = np.abs(lv)
        left, up, left2, ul, ur = (np.zeros_like(a) for _ in range(5))
        left[:, 1:], left2[:, 2:] = a[:, :-1], a[:, :-2]
        up[1:, :], ul[1:, 1:], ur[1:, :-1] = a[:-1, :], a[:-1, :-1], a[:-1, 1:]
        s2 = (np.minimum(left, 64) + np.minimum(up, 64)).ravel()
        cur = np.select([s2 == 0, s2 <= 2, s2 <= 5, s2 <= 10], [0, 1, 2, 3], 4)
        wide = log_class((left + up + left2 + ul + ur).ravel(), 19)
        mag = a.ravel()
        for key, keys in (("q", q), ("q+cur", q * 5 + cur), ("q+fine", q * 16 + log_class(s2, 15)),
                          ("q+wide5", q * 20 + wide)):
            totals[key] = totals.get(key, 0.0) + cond_entropy(keys, mag)
        bits += 8 * len(r.payload)
        n += lv.size
        nonzero += int((lv != 0).sum())
        if largest is None or lv.size > largest[1].size:
            largest = (name, lv, q.reshape(lv.shape), 8 * len(r.payload))
    print(f"{args.model} QP {args.qp}: {n} parameters, real {bits / n:.4f} bit/param; "
          f"signs {nonzero / n:.4f}")
    for key, v in totals.items():
        print(f"  H(|level| | {key:<7}) + signs {(v + nonzero) / n:.4f} bit/param "
              f"(real {100 * (bits / (v + nonzero) - 1):+.2f} %)")
    name, lv, q, tbits = largest
    rows = lv.shape[0]
    nz = int((lv != 0).sum())
    base = cond_entropy(q.ravel(), np.abs(lv).ravel())
    print(f"{name} {lv.shape}: real {tbits / lv.size:.4f}, H(|level| | q) + signs "
          f"{(base + nz) / lv.size:.4f} bit/param")
    rms = np.sqrt((lv.astype(np.float64) ** 2).mean(axis=1))
    for ncls in (4, 8, 16):
        edges = np.quantile(rms, np.linspace(0, 1, ncls + 1)[1:-1])
        cls = np.repeat(np.digitize(rms, edges), lv.shape[1])
        h = cond_entropy(q.ravel() * ncls + cls, np.abs(lv).ravel())
        side = rows * np.log2(ncls)
        print(f"  {ncls:2d} row classes: {(h + nz + side) / lv.size:.4f} bit/param "
              f"(side {side / lv.size:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
