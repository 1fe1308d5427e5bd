"""Synthetic cases for the coding tree (issue #4, docs/ce/CE1_coding_tree.md).

Three 256x512 tensors, each coded with and without the tree over a QP sweep;
the script prints bits/param and weight SNR per point and the BD-rate of the
tree against no tree (weight SNR, importance-weighted SNR where a map is used):

* pruned: structured pruning zeroed 50 % of the 16x16 blocks;
* scaled: blocks whose scale differs by up to 16x;
* importance: dense Gaussian weights, but an importance map that differs by
  16x between 32-column groups (what per-channel output sensitivity looks like).

    python benchmarks/tree_synthetic.py
"""

from __future__ import annotations

from pathlib import Path

import nntm
import numpy as np
from nntm.ce.bdrate import bd_rate

ROOT = Path(__file__).resolve().parents[1]
ANCHOR = ROOT / "cfg" / "encoder_anchor.cfg"
TREE = ROOT / "cfg" / "encoder_tree.cfg"
QPS = (-20, -24, -28, -32, -36)


def cases() -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    rng = np.random.default_rng(2026)
    base = rng.standard_normal((256, 512)).astype(np.float32) * 0.05
    blocks = rng.random((16, 32))
    pruned = base.copy()
    for i in range(16):
        for j in range(32):
            if blocks[i, j] < 0.5:
                pruned[16 * i:16 * i + 16, 16 * j:16 * j + 16] = 0
    scaled = base.copy()
    for i in range(16):
        for j in range(32):
            scaled[16 * i:16 * i + 16, 16 * j:16 * j + 16] *= 2.0 ** (4 * blocks[i, j] - 2)
    imp = np.repeat(np.where(rng.random(16) < 0.5, 16.0, 1.0), 32).astype(np.float32)
    return {"pruned": (pruned, None), "scaled": (scaled, None), "importance": (base, imp)}


def sweep(w: np.ndarray, imp: np.ndarray | None, files: list[Path]) -> list[tuple[float, float]]:
    pts = []
    weights = np.ones(w.shape[1]) if imp is None else imp
    for qp in QPS:
        cfg = nntm.Config.from_files([str(f) for f in files], overrides={"QP": qp})
        res = nntm.encode_with_recon({"w": w}, cfg,
                                     importance=None if imp is None else {"w": imp})
        err = (w.astype(np.float64) - res.recon["w"]) ** 2
        signal = float(np.sum(w.astype(np.float64) ** 2 * weights))
        noise = float(np.sum(err * weights))
        pts.append((8 * len(res.data) / w.size, 10 * np.log10(signal / noise)))
    return pts


def main() -> None:
    print(f"{'case':<11} {'cfg':<8} " + "  ".join(f"QP {q:>3}" + " " * 10 for q in QPS))
    for name, (w, imp) in cases().items():
        flat = sweep(w, imp, [ANCHOR])
        tree = sweep(w, imp, [ANCHOR, TREE])
        for label, pts in (("no-tree", flat), ("tree", tree)):
            cells = "  ".join(f"{b:5.3f} b {s:5.2f} dB" for b, s in pts)
            print(f"{name:<11} {label:<8} {cells}")
        bd = bd_rate([p[0] for p in flat], [p[1] for p in flat],
                     [p[0] for p in tree], [p[1] for p in tree])
        metric = "importance-weighted SNR" if imp is not None else "weight SNR"
        print(f"{name:<11} BD-rate tree vs no-tree on {metric}: {bd.value:+.2f} %\n")


if __name__ == "__main__":
    main()
