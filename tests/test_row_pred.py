"""Format 1.5: row prediction (TOOL_ROW_PRED, docs/bitstream.md 5.5.5): each row after the
first of a raster-coded tensor with row_pred_enabled_flag carries a row_pred_flag; a flagged
row's reconstruction indices are its own plus those of the row above.

The decoder written from the text of the spec (tests/test_prob_window.py) must parse the C
encoder's payloads to the C decoder's levels and reconstruct its values.
"""

from __future__ import annotations

import nntm
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nntm import codec, core, hls
from nntm.errors import ConfigError
from test_prob_window import ROOT, _check, _encode, small_tps, spec_decode_levels, stream_tensors


def smooth_rows(rng: np.random.Generator, rows: int, cols: int, noise: float) -> np.ndarray:
    """Rows that continue the row above (a random walk down each column)."""
    w = rng.normal(0, 0.3, (1, cols)) + np.cumsum(rng.normal(0, noise, (rows, cols)), axis=0)
    return w.astype(np.float32)


@pytest.mark.parametrize("dq", [0, 1, 2, 3])
@pytest.mark.parametrize("window", [0, 10])
def test_spec_reading_decodes_row_pred_payloads(dq: int, window: int) -> None:
    rng = np.random.default_rng(50 + dq + 7 * window)
    w = smooth_rows(rng, 24, 40, 0.01)
    w[10:14] = rng.normal(0, 0.3, (4, 40))  # rows the encoder should not predict
    payload, levels, recon = _encode(w, -28, 4, dq, window, 1, 1)
    _check(payload, levels, recon, -28, 4, dq, window, 1, 1)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 12), st.integers(0, 2**31 - 1), st.integers(1, 15), st.integers(0, 3))
def test_spec_reading_matches_for_any_setting(window: int, seed: int, gt: int, dq: int) -> None:
    rng = np.random.default_rng(seed)
    rows, cols = int(rng.integers(1, 14)), int(rng.integers(1, 30))
    w = smooth_rows(rng, rows, cols, float(rng.choice([0.001, 0.05, 1.0])))
    suffix = int(rng.integers(0, 2))
    payload, levels, recon = _encode(w, -24, gt, dq, window, suffix, 1)
    _check(payload, levels, recon, -24, gt, dq, window, suffix, 1)


def test_prediction_saves_on_smooth_rows_and_is_not_used_on_random_ones() -> None:
    rng = np.random.default_rng(3)
    w = smooth_rows(rng, 64, 128, 0.01)
    off = _encode(w, -28, 10, 2, 10, 1, 0)[0]
    on = _encode(w, -28, 10, 2, 10, 1, 1)[0]
    assert len(on) < 0.7 * len(off)
    r = rng.normal(0, 0.1, (64, 128)).astype(np.float32)
    off = _encode(r, -28, 10, 2, 10, 1, 0)[0]
    on = _encode(r, -28, 10, 2, 10, 1, 1)[0]
    assert len(on) <= len(off) + 64 // 8 + 1  # at most the flags (one bin per row)


def test_a_reading_without_the_flags_fails() -> None:
    rng = np.random.default_rng(4)
    w = smooth_rows(rng, 16, 32, 0.01)
    payload, levels, _ = _encode(w, -28, 4, 0, 10, 0, 1)
    try:
        spec, _, _ = spec_decode_levels(payload, 16, 32, 4, 0, 10, 0, 0)
    except AssertionError:
        return
    assert not np.array_equal(spec, levels)


def test_decoder_trace_marks_the_predicted_rows() -> None:
    rng = np.random.default_rng(6)
    w = smooth_rows(rng, 12, 20, 0.005)
    params = core.KernelParams(12, 20, -28, 2, 4, core.TreeParams(), 0, 10, 0, 1)
    res = core.encode_kernel(w, params, np.dtype(np.float32), True, 0.1, "t")
    dec = core.decode_kernel(res.payload, params, np.dtype(np.float32), "t", trace=True)
    assert list(dec.cus["y"]) == list(range(1, 12))
    assert set(dec.cus["bv_y"]) == {-1} and set(dec.cus["h"]) == {1}


def test_format_and_flags() -> None:
    rng = np.random.default_rng(12)
    model = {"pos.embed": smooth_rows(rng, 32, 48, 0.01),
             "conv.weight": rng.normal(0, 0.1, (8, 4, 3, 3)).astype(np.float32)}
    cfg = nntm.Config.from_files(overrides={"IntegrityHash": 0,
                                            "RowPred": 1, "ClassRules": "conv: tree=qtmtt"})
    data = nntm.encode(model, cfg)
    mps, tensors = stream_tensors(data)
    assert mps.version_minor == 5 and mps.tool_flags & hls.TOOL_ROW_PRED
    flags = {t.name: t.row_pred for t, _ in tensors}
    assert flags == {"pos.embed": True, "conv.weight": False}  # no row prediction in a tree
    out = nntm.decode(data)
    assert np.abs(out["pos.embed"] - model["pos.embed"]).max() < 0.01
    plain = nntm.encode(model, nntm.Config.from_files(overrides={"IntegrityHash": 0,
                                                                 "ClassRules": "conv: tree=qtmtt"}))
    assert not stream_tensors(plain)[0].tool_flags & hls.TOOL_ROW_PRED
    assert len(data) < len(plain)


def test_writer_refuses_the_flag_without_the_tool_or_with_a_tree() -> None:
    tps = small_tps(row_pred=True)
    with pytest.raises(ValueError, match="TOOL_ROW_PRED"):
        hls.tensor_parameter_set(tps, 0)
    tps.tree_type = 3
    with pytest.raises(ValueError, match="TOOL_ROW_PRED"):
        hls.tensor_parameter_set(tps, hls.TOOL_ROW_PRED | hls.TOOL_CODING_TREE)
    with pytest.raises(ConfigError):
        nntm.Config.from_files(overrides={"IntegrityHash": 0, "RowPred": 3})


def test_conformance_stream_reads_with_the_spec_decoder() -> None:
    _, tensors = stream_tensors((ROOT / "bitstreams" / "ROWPRED_A_1.bit").read_bytes())
    raster = [(t, p) for t, p in tensors if t.row_pred]
    assert raster
    for tps, payload in raster:
        params = codec.kernel_params(tps)
        dec = core.decode_kernel(payload, params, tps.dtype, "t")
        spec, _, _ = spec_decode_levels(payload, tps.rows, tps.cols, tps.num_gt_flags,
                                        params.dq_enabled, tps.prob_window, int(tps.suffix_ctx),
                                        1)
        assert np.array_equal(spec, dec.levels)


def test_reference_hints_are_the_closest_earlier_rows() -> None:
    """rowref.reference_hints against a brute-force search, also with the window."""
    from nntm import rowref

    rng = np.random.default_rng(5)
    k = rng.normal(0, 1, (70, 12)).astype(np.float32)
    k[40:60] = k[3:23] + 0.01 * rng.normal(0, 1, (20, 12)).astype(np.float32)
    for window in (None, 8):
        old = rowref.MAX_WORK, rowref.WINDOW
        if window:
            rowref.MAX_WORK, rowref.WINDOW = 0.0, window
        try:
            hint = rowref.reference_hints(k)
        finally:
            rowref.MAX_WORK, rowref.WINDOW = old
        for r in range(70):
            lo = 0 if window is None else max(0, r - window)
            d = ((k[lo:max(lo, r - 1)].astype(np.float64) - k[r]) ** 2).sum(axis=1)
            want = -1
            if r >= 2 and d.size and d.min() < (k[r].astype(np.float64) ** 2).sum():
                want = lo + int(np.argmin(d))
            assert hint[r] == want, (window, r)
    assert (rowref.reference_hints(k)[40:60] == np.arange(3, 23)).all()


@pytest.mark.parametrize("dq", [0, 2, 3])
def test_rows_predicted_from_far_rows(dq: int) -> None:
    """With reference hints, rows that repeat far earlier rows are predicted from them
    (trace block vectors below -1), the spec reading decodes the payload, and the tensor
    codes smaller than with the row above alone."""
    from nntm import rowref

    rng = np.random.default_rng(9 + dq)
    w = rng.normal(0, 0.1, (48, 40)).astype(np.float32)
    w[24:] = w[:24][::-1] + rng.normal(0, 0.002, (24, 40)).astype(np.float32)
    params = core.KernelParams(48, 40, -28, 2, 4, core.TreeParams(), dq, 10, 1, 1)
    plain = core.encode_kernel(w, params, np.dtype(np.float32), True, 0.1, "t")
    res = core.encode_kernel(w, params, np.dtype(np.float32), True, 0.1, "t",
                             row_hint=rowref.reference_hints(w))
    dec = core.decode_kernel(res.payload, params, np.dtype(np.float32), "t", trace=True)
    assert dec.recon.tobytes() == res.recon.tobytes()
    assert (dec.cus["bv_y"] < -1).sum() >= 20
    assert len(res.payload) < 0.7 * len(plain.payload)
    _check(res.payload, res.levels, res.recon, -28, 4, dq, 10, 1, 1)
