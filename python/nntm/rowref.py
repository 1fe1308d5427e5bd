"""Reference rows for row prediction [1.5]: for each row of a kernel tensor, the earlier row
(other than the one above) closest to it, which the encoder tries besides the row above.

An exact nearest-earlier-row search in squared distance, in blocks of rows (one matrix
product each): O(rows^2 * cols).  Above MAX_WORK multiply-adds only the WINDOW rows before
each row are searched.
"""

from __future__ import annotations

import numpy as np

BLOCK = 1024
MAX_WORK = 4e11     # rows^2 * cols of a full search (MiniLM's word embedding: 3.6e11)
WINDOW = 4096       # rows searched before each row beyond that


def reference_hints(kernel: np.ndarray) -> np.ndarray:
    """int32 per row: the closest earlier row j <= r - 2 if it is closer to row r than the
    zero row (||k_r - k_j||^2 < ||k_r||^2), else -1."""
    k = np.ascontiguousarray(kernel, dtype=np.float32)
    rows = k.shape[0]
    hint = np.full(rows, -1, dtype=np.int32)
    if rows < 3 or k.shape[1] == 0:
        return hint
    window = rows if float(rows) * rows * k.shape[1] <= MAX_WORK else WINDOW
    sq = np.einsum("ij,ij->i", k, k, dtype=np.float64)
    for start in range(2, rows, BLOCK):
        stop = min(rows, start + BLOCK)
        lo = max(0, start - window)
        # distances of rows start..stop-1 to rows lo..stop-3
        cand = k[lo:stop - 2]
        dist = sq[start:stop, None] + sq[None, lo:stop - 2] - 2.0 * (k[start:stop] @ cand.T)
        for i, r in enumerate(range(start, stop)):
            first = max(lo, r - window)
            d = dist[i, first - lo:r - 1 - lo]
            if d.size == 0:
                continue
            j = int(np.argmin(d))
            if d[j] < sq[r]:
                hint[r] = first + j
    return hint
