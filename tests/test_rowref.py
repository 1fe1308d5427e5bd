"""The row-reference search [1.5] (nntm.rowref): exact below EXACT_WORK, approximate above
(projected candidates re-ranked exactly in C by nntm_rowref_select)."""

from __future__ import annotations

import numpy as np
import pytest
from nntm import core, rowref
from nntm.core import ffi, lib
from nntm.errors import CoreError


def _brute(k: np.ndarray, window: int | None = None) -> np.ndarray:
    """The closest earlier row but the one above, in double, ties to the lower index; -1
    unless closer than the zero row."""
    k64 = k.astype(np.float64)
    hint = np.full(len(k), -1, dtype=np.int32)
    for r in range(2, len(k)):
        lo = 0 if window is None else max(0, r - window)
        if lo >= r - 1:
            continue
        d = ((k64[lo:r - 1] - k64[r]) ** 2).sum(axis=1)
        j = int(np.argmin(d))
        if d[j] < (k64[r] ** 2).sum():
            hint[r] = lo + j
    return hint


def _planted(rows: int, cols: int, seed: int) -> np.ndarray:
    """Random rows, a third of them near copies of random earlier rows."""
    rng = np.random.default_rng(seed)
    k = rng.normal(0, 1, (rows, cols)).astype(np.float32)
    for r in rng.choice(np.arange(10, rows), rows // 3, replace=False):
        src = int(rng.integers(0, r - 2))
        k[r] = k[src] + 0.05 * rng.normal(0, 1, cols).astype(np.float32)
    return k


def test_all_candidates_is_the_exact_search() -> None:
    """With as many candidates as rows the approximate search is the exact one."""
    k = _planted(300, 40, 1)
    assert np.array_equal(rowref.approximate_hints(k, dims=8, num_cand=300), _brute(k))


def test_ties_go_to_the_lower_row() -> None:
    """Rows repeated exactly: every copy points at the first one, at both stages."""
    rng = np.random.default_rng(2)
    k = rng.normal(0, 1, (200, 24)).astype(np.float32)
    k[50] = k[60] = k[90] = k[150] = k[7]
    for num_cand in (4, 200):
        hint = rowref.approximate_hints(k, dims=6, num_cand=num_cand)
        assert hint[50] == 7 and hint[60] == 7 and hint[90] == 7 and hint[150] == 7
    assert np.array_equal(rowref.approximate_hints(k, dims=6, num_cand=200), _brute(k))


def test_approximate_finds_planted_copies_and_is_deterministic() -> None:
    """Few candidates still find every near copy (they are far closer than other rows),
    every hint is an earlier row but the one above and nearer than the zero row, and the
    hints are the same on a second run."""
    k = _planted(3000, 96, 3)
    exact = _brute(k)
    hint = rowref.approximate_hints(k, dims=16, num_cand=8)
    assert np.array_equal(hint, rowref.approximate_hints(k, dims=16, num_cand=8))
    rows = np.nonzero(hint >= 0)[0]
    assert (hint[rows] <= rows - 2).all()
    k64 = k.astype(np.float64)
    d = ((k64[rows] - k64[hint[rows]]) ** 2).sum(axis=1)
    assert (d < (k64[rows] ** 2).sum(axis=1)).all()
    copies = np.nonzero(((k64[2:] - k64[exact[2:]]) ** 2).sum(axis=1)
                        < 0.1 * (k64[2:] ** 2).sum(axis=1))[0] + 2
    assert len(copies) > 800
    assert np.array_equal(hint[copies], exact[copies])


def test_approximate_window() -> None:
    """Beyond MAX_WORK only the WINDOW rows before each row are searched."""
    k = _planted(400, 32, 4)
    old = rowref.MAX_WORK, rowref.WINDOW
    rowref.MAX_WORK, rowref.WINDOW = 0.0, 50
    try:
        hint = rowref.approximate_hints(k, dims=8, num_cand=400)
    finally:
        rowref.MAX_WORK, rowref.WINDOW = old
    assert np.array_equal(hint, _brute(k, 50))


def test_reference_hints_choose_the_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small tensors take the exact search, large ones the approximate one."""
    k = _planted(200, 80, 5)
    calls: list[str] = []
    monkeypatch.setattr(rowref, "exact_hints", lambda a: calls.append("exact") or _brute(a))
    monkeypatch.setattr(rowref, "approximate_hints",
                        lambda a: calls.append("approx") or _brute(a))
    rowref.reference_hints(k)
    monkeypatch.setattr(rowref, "EXACT_WORK", 1e5)
    rowref.reference_hints(k)
    rowref.reference_hints(k[:, :rowref.PROJ_DIMS])  # too narrow to project: exact
    assert calls == ["exact", "approx", "exact"]


def test_approximate_hints_code_as_well_as_exact_ones() -> None:
    """On a tensor of near copies the approximate hints give the bytes of the exact ones."""
    k = _planted(600, 48, 6) * 0.05
    params = core.KernelParams(600, 48, -28, 2, 10, core.TreeParams(), 3, 10, 1, 1)
    sizes = [len(core.encode_kernel(k, params, np.dtype(np.float32), True, 0.1, "t",
                                    row_hint=h).payload)
             for h in (rowref.exact_hints(k), rowref.approximate_hints(k, 16, 16))]
    assert abs(sizes[1] - sizes[0]) <= 0.002 * sizes[0]


def test_select_checks_its_arguments() -> None:
    k = np.zeros((10, 4), dtype=np.float32)
    gram = np.zeros(100, dtype=np.float32)
    norm = np.zeros(10, dtype=np.float32)
    hint = np.zeros(10, dtype=np.int32)
    kc = ffi.cast("const float *", ffi.from_buffer(k))
    gc = ffi.cast("const float *", ffi.from_buffer(gram))
    nc = ffi.cast("const float *", ffi.from_buffer(norm))
    hc = ffi.cast("int32_t *", ffi.from_buffer(hint, require_writable=True))
    assert lib.nntm_rowref_select(kc, 10, 4, gc, nc, 2, 10, 0, 10, 4, hc) == 0
    for args in ((1, 10, 0, 10, 4), (2, 11, 0, 10, 4), (3, 10, 2, 10, 4), (2, 10, 0, 0, 4),
                 (2, 10, 0, 10, 0), (5, 5, 0, 10, 4)):
        rv = lib.nntm_rowref_select(kc, 10, 4, gc, nc, *args, hc)
        with pytest.raises(CoreError):
            core._check(rv, "select")
    assert lib.nntm_rowref_select(kc, 10, 4, ffi.NULL, nc, 2, 10, 0, 10, 4, hc) < 0
