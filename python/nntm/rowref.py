"""Reference rows for row prediction [1.5]: for each row of a kernel tensor, the earlier row
(other than the one above) closest to it, which the encoder tries besides the row above.

Two searches, both deterministic:

- exact, up to EXACT_WORK multiply-adds (rows^2 * cols): the nearest earlier row in squared
  distance, in blocks of rows (one matrix product each): O(rows^2 * cols);
- approximate beyond (MiniLM's word embedding, a vocabulary): the rows are projected on
  their PROJ_DIMS principal axes, the NUM_CAND closest earlier rows in that projection are
  measured again exactly in C (``nntm_rowref_select``) and the closest kept: O(rows^2 *
  PROJ_DIMS) in matrix products plus O(rows * NUM_CAND * cols).  Above MAX_WORK projected
  multiply-adds only the WINDOW rows before each row are searched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from . import core
from .core import ffi, lib

BLOCK = 1024
EXACT_WORK = 4e9    # rows^2 * cols of an exact search (MiniLM's 1536 x 384: 9e8)
PROJ_DIMS = 64      # principal axes of the approximate search's first stage
NUM_CAND = 64       # rows per row that it measures exactly
COV_ROWS = 8192     # rows sampled for the principal axes
MAX_WORK = 4e11     # rows^2 * dims of a full search
WINDOW = 4096       # rows searched before each row beyond that


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """The matrix products of the search on one BLAS thread, when threadpoolctl is installed:
    the search alternates products with C work, and an idle BLAS worker spins meanwhile
    (about a quarter of the weight-fidelity encoder's CPU time on MiniLM); the tensors are
    coded on several threads anyway (--Threads).  A single-threaded product computes each
    entry as the threaded one does: the same hints."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def reference_hints(kernel: np.ndarray) -> np.ndarray:
    """int32 per row: the closest earlier row j <= r - 2 if it is closer to row r than the
    zero row (||k_r - k_j||^2 < ||k_r||^2), else -1 (exact up to EXACT_WORK, else
    approximate: see the module text)."""
    k = np.ascontiguousarray(kernel, dtype=np.float32)
    rows, cols = k.shape
    if rows < 3 or cols == 0:
        return np.full(rows, -1, dtype=np.int32)
    with one_blas_thread():
        if float(rows) * rows * cols <= EXACT_WORK or cols <= PROJ_DIMS:
            return exact_hints(k)
        return approximate_hints(k)


def _window(rows: int, dims: int) -> int:
    return rows if float(rows) * rows * dims <= MAX_WORK else WINDOW


def exact_hints(k: np.ndarray) -> np.ndarray:
    """The exact search (float32 matrix products, float64 norms)."""
    rows = k.shape[0]
    hint = np.full(rows, -1, dtype=np.int32)
    window = _window(rows, k.shape[1])
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


def projection(k: np.ndarray, dims: int) -> np.ndarray:
    """float32 rows x dims: the rows less their mean on the dims principal axes of
    (at most) COV_ROWS evenly spaced rows (float64 covariance; eigenvectors signed so
    that their largest component is positive)."""
    mean = k.mean(axis=0, dtype=np.float64)
    step = max(1, k.shape[0] // COV_ROWS)
    sample = k[::step].astype(np.float64) - mean
    _, vec = np.linalg.eigh(sample.T @ sample)
    axes = vec[:, ::-1][:, :dims]
    flip = np.sign(axes[np.argmax(np.abs(axes), axis=0), np.arange(axes.shape[1])])
    return np.ascontiguousarray((k - mean.astype(np.float32)) @ (axes * flip).astype(np.float32))


def approximate_hints(k: np.ndarray, dims: int = PROJ_DIMS,
                      num_cand: int = NUM_CAND) -> np.ndarray:
    """The approximate search: candidates by projected distance, chosen exactly in C."""
    rows, cols = k.shape
    hint = np.full(rows, -1, dtype=np.int32)
    y = projection(k, dims)
    norm = np.ascontiguousarray(np.einsum("ij,ij->i", y, y), dtype=np.float32)
    norm_c = ffi.cast("const float *", ffi.from_buffer(norm))
    window = _window(rows, dims)
    k_c = ffi.cast("const float *", ffi.from_buffer(k))
    hint_c = ffi.cast("int32_t *", ffi.from_buffer(hint, require_writable=True))
    buf = np.empty(BLOCK * min(rows - 2, window + BLOCK), dtype=np.float32)  # reused
    for start in range(2, rows, BLOCK):
        stop = min(rows, start + BLOCK)
        lo = max(0, start - window)
        gram = buf[:(stop - start) * (stop - 2 - lo)].reshape(stop - start, stop - 2 - lo)
        np.matmul(y[start:stop], y[lo:stop - 2].T, out=gram)
        rv = lib.nntm_rowref_select(k_c, rows, cols,
                                    ffi.cast("const float *", ffi.from_buffer(gram)), norm_c,
                                    start, stop, lo, window, num_cand, hint_c)
        core._check(rv, "row reference search")
    return hint
