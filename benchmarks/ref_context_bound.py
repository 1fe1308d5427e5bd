"""Upper bound of a level context on the co-located reference sample (issue #6).

For each update pair (nntm.ce.updates), the update residual new - ref of every tensor of
two or more dimensions is rounded at the step of a QP; the memoryless entropy of those
levels is compared with their entropy given the class of |ref| (five classes: quartiles
and the top decile of |ref| in the tensor).  The difference is what the best context
choice on the reference level could save in a context-adaptive coder, before the cost of
learning it; the level contexts of NNTM already use the left and above levels.

    python benchmarks/ref_context_bound.py [--pairs minilm-ft,...] [--qps -36,-44]
"""

from __future__ import annotations

import argparse

import numpy as np
from nntm import core
from nntm.ce import updates


def entropy_bits(x: np.ndarray) -> float:
    _, counts = np.unique(x, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum() * len(x))


def bound(ref: dict, new: dict, qp: int) -> tuple[float, float]:
    """(bits/weight without, with the |ref| class) over the tensors of >= 2 dimensions."""
    step = core.step_size(qp, 2)
    plain = cond = 0.0
    n = 0
    for name, value in new.items():
        v = np.asarray(value)
        if v.ndim < 2 or name not in ref:
            continue
        r = np.asarray(ref[name]).astype(np.float64)
        levels = np.round((v.astype(np.float64) - r) / step).astype(np.int64).ravel()
        mag = np.abs(r).ravel()
        cls = np.digitize(mag, np.quantile(mag, [0.25, 0.5, 0.75, 0.9]))
        plain += entropy_bits(levels)
        cond += sum(entropy_bits(levels[cls == c]) for c in range(5) if np.any(cls == c))
        n += levels.size
    return plain / n, cond / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default=",".join(updates.UPDATE_PAIRS))
    ap.add_argument("--qps", default="-36,-44")
    args = ap.parse_args()
    print("| pair | QP | H(level) bit/weight | H(level given |ref| class) | saving |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in args.pairs.split(","):
        pair = updates.UPDATE_PAIRS[name]
        ref, new = pair.reference(), pair.new()
        for qp in (int(q) for q in args.qps.split(",")):
            h, hc = bound(ref, new, qp)
            saving = f"{100 * (1 - hc / h):.2f} %" if h > 0 else "- (every level 0)"
            print(f"| {name} | {qp} | {h:.4f} | {hc:.4f} | {saving} |", flush=True)


if __name__ == "__main__":
    main()
