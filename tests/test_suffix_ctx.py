"""Format 1.5: context-coded suffix bins of abs_remainder (TOOL_SUFFIX_CTX, docs/bitstream.md
5.4.1): the two most significant bins of the Exp-Golomb suffix are coded with the contexts
EgsCtx[ Min( k, 12 ) - 1 ][ node ] of the prefix length k, the rest bypass.

The decoder written from the text of clauses 5.2 to 5.5.4 (tests/test_prob_window.py) must
parse the C encoder's payloads with the flag to the C decoder's levels and values.
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


@pytest.mark.parametrize("window", [0, 10])
@pytest.mark.parametrize("dq", [0, 1, 2, 3])
@pytest.mark.parametrize("gt", [1, 10])
def test_spec_reading_decodes_suffix_ctx_payloads(window: int, dq: int, gt: int) -> None:
    rng = np.random.default_rng(300 + window + 20 * dq + gt)
    # levels up to a few thousand: prefixes of 1 to 12 bins and more
    w = (rng.laplace(0, 1.0, (24, 40)) * rng.uniform(0.05, 3.0, (24, 1))).astype(np.float32)
    w[0, :4] = [0.02, 60.0, -600.0, 2500.0]
    payload, levels, recon = _encode(w, -24, gt, dq, window, 1)
    assert np.abs(levels).max() > (1 << 13)  # a prefix longer than 12 bins
    _check(payload, levels, recon, -24, gt, dq, window, 1)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 12), st.integers(0, 2**31 - 1), st.integers(1, 15), st.integers(0, 3))
def test_spec_reading_matches_for_any_setting(window: int, seed: int, gt: int, dq: int) -> None:
    rng = np.random.default_rng(seed)
    rows, cols = int(rng.integers(1, 12)), int(rng.integers(1, 30))
    scale = float(rng.choice([0.05, 3.0, 200.0]))
    w = rng.laplace(0, scale, (rows, cols)).astype(np.float32)
    payload, levels, recon = _encode(w, -24, gt, dq, window, 1)
    _check(payload, levels, recon, -24, gt, dq, window, 1)


def test_conformance_stream_a_reads_with_the_spec_decoder() -> None:
    """SUFFIX_A_1 (levels up to 2^30, every EgsCtx set, DQ with 8 states): the spec reading
    decodes each of its tensors to the C decoder's levels."""
    _, tensors = stream_tensors((ROOT / "bitstreams" / "SUFFIX_A_1.bit").read_bytes())
    assert {t.suffix_ctx for t, _ in tensors} == {True}
    largest = 0
    for tps, payload in tensors:
        params = codec.kernel_params(tps)
        levels = core.decode_kernel(payload, params, tps.dtype, "t").levels
        spec, _, _ = spec_decode_levels(payload, tps.rows, tps.cols, tps.num_gt_flags,
                                        codec.dq_mode(tps), tps.prob_window, 1)
        assert np.array_equal(spec, levels)
        largest = max(largest, int(np.abs(levels).max()))
    assert largest > 1 << 14  # remainders with prefixes beyond 12 bins


def test_the_flag_changes_the_payload_and_a_reading_without_it_fails() -> None:
    """The comparison can fail: the same weights give other bytes with the flag, and a
    reading that ignores the flag (all suffix bins bypass) does not get the levels back."""
    rng = np.random.default_rng(4)
    w = rng.laplace(0, 1.0, (16, 32)).astype(np.float32)
    off = _encode(w, -28, 2, 0, 10, 0)
    on = _encode(w, -28, 2, 0, 10, 1)
    assert off[0] != on[0]
    try:
        spec, _, _ = spec_decode_levels(on[0], 16, 32, 2, 0, 10, 0)
    except AssertionError:
        return
    assert not np.array_equal(spec, on[1])


def test_suffix_ctx_saves_bits_on_large_levels() -> None:
    """At a fine step (levels in the hundreds) the flag codes a Gaussian tensor smaller."""
    rng = np.random.default_rng(3)
    w = rng.normal(0, 0.05, (256, 256)).astype(np.float32)
    off = _encode(w, -40, 10, 2, 10, 0)[0]
    on = _encode(w, -40, 10, 2, 10, 1)[0]
    assert len(on) < 0.996 * len(off)


def test_format_1_5_only_when_used() -> None:
    rng = np.random.default_rng(5)
    model = {"fc.weight": rng.normal(0, 0.05, (16, 24)).astype(np.float32)}
    plain = nntm.encode(model, nntm.Config.from_files(overrides={"IntegrityHash": 0,
                                                                 "ProbWindow": 10}))
    mps, _ = stream_tensors(plain)
    assert mps.version_minor == 4 and not mps.tool_flags & hls.TOOL_SUFFIX_CTX
    data = nntm.encode(model, nntm.Config.from_files(overrides={"IntegrityHash": 0,
                                                                "SuffixCtx": 1, "QP": -40}))
    mps, tensors = stream_tensors(data)
    assert mps.version_minor == 5 and mps.tool_flags & hls.TOOL_SUFFIX_CTX
    assert all(t.suffix_ctx for t, _ in tensors)
    out = nntm.decode(data)["fc.weight"]
    assert np.abs(out - model["fc.weight"]).max() < 1e-3


def test_writer_refuses_the_flag_without_the_tool() -> None:
    tps = small_tps(suffix_ctx=True)
    with pytest.raises(ValueError, match="TOOL_SUFFIX_CTX"):
        hls.tensor_parameter_set(tps, 0)
    unit = hls.split_units(hls.tensor_parameter_set(tps, hls.TOOL_SUFFIX_CTX))[0]
    mps = hls.ModelParameterSet(num_tensors=1, tool_flags=hls.TOOL_SUFFIX_CTX)
    assert hls.parse_tensor_parameter_set(unit, mps).suffix_ctx


def test_cfg_rejects_a_bad_value() -> None:
    with pytest.raises(ConfigError):
        nntm.Config.from_files(overrides={"IntegrityHash": 0, "SuffixCtx": 2})
