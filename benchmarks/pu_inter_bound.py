"""What a per-CU choice in inter prediction could gain on the update pairs (issue #6).

NNTM predicts a whole tensor from its reference picture with one least-squares scale; a skip
CU reconstructs the prediction.  This measures, on 16x16 blocks of every kernel tensor (ROWS
arrangement, tensors of two or more dimensions) of each update pair (nntm.ce.updates):
- how many blocks code less energy *without* the prediction (a per-CU "no prediction" mode);
- the high-rate saving of a per-block least-squares scale over the tensor's scale,
  sum 0.5 * n * log2(E_tensor_scale / E_block_scale) per weight, against the side information
  such a scale would cost (about 16 bits a block).

    python benchmarks/pu_inter_bound.py
"""

from __future__ import annotations

import numpy as np
from nntm.arrange import Arrangement, to_kernel
from nntm.ce import updates

BLOCK = 16
SIDE_BITS = 16


def pair_bound(ref: dict, new: dict) -> tuple[int, int, float, int]:
    """(blocks, blocks better without prediction, bits saved by per-block scales, weights)."""
    blocks = better = weights = 0
    saved = 0.0
    for name, value in new.items():
        v = np.asarray(value)
        if v.ndim < 2 or name not in ref:
            continue
        w = to_kernel(v.astype(np.float32), Arrangement.ROWS).astype(np.float64)
        p = to_kernel(np.asarray(ref[name]).astype(np.float32),
                      Arrangement.ROWS).astype(np.float64)
        s = float((w * p).sum() / max(float((p * p).sum()), 1e-30))
        weights += w.size
        for y in range(0, w.shape[0], BLOCK):
            for x in range(0, w.shape[1], BLOCK):
                a, b = w[y:y + BLOCK, x:x + BLOCK], p[y:y + BLOCK, x:x + BLOCK]
                e_tensor = float(((a - s * b) ** 2).sum())
                bb = float((b * b).sum())
                sb = float((a * b).sum()) / bb if bb > 0 else 0.0
                e_block = float(((a - sb * b) ** 2).sum())
                blocks += 1
                better += float((a * a).sum()) < e_tensor
                if e_tensor > 0 and e_block > 0:
                    saved += 0.5 * a.size * np.log2(e_tensor / e_block)
    return blocks, better, saved, weights


def main() -> None:
    print("| pair | 16x16 blocks | better without prediction | per-block scale: saving "
          "bit/weight (high rate) | side info bit/weight |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, pair in updates.UPDATE_PAIRS.items():
        blocks, better, saved, n = pair_bound(pair.reference(), pair.new())
        print(f"| {name} | {blocks} | {better} ({100 * better / blocks:.2f} %) | "
              f"{saved / n:.4f} | {SIDE_BITS * blocks / n:.4f} |", flush=True)


if __name__ == "__main__":
    main()
