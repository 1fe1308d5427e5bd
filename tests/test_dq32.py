"""Format 1.5: 32-state dependent quantization (TOOL_DQ_32STATES, docs/bitstream.md 5.5.4).

The table of clause 5.5.4 is Ungerboeck's rate-1/2 trellis code for four subsets with
parity-check polynomials (45, 10) octal, numbered so that states 0..15 use Q0; the spec
reading of tests/test_prob_window.py (which has the table) decodes the C payloads.
"""

from __future__ import annotations

import nntm
import numpy as np
import pytest
from nntm import codec, core, hls
from nntm.errors import ConfigError
from test_prob_window import (
    NEXT_STATE,
    ROOT,
    _check,
    _encode,
    small_tps,
    spec_decode_levels,
    stream_tensors,
)


def ungerboeck(h0: int, h1: int, nu: int) -> tuple[dict[int, tuple[int, int]], dict[int, int]]:
    """next[state] = (next on parity 0, next on parity 1) and the quantizer of each state
    of the systematic feedback encoder: registers p1..p_nu, quantizer p1, input = parity,
    p_j' = p_(j+1) ^ (h0_j & p1) ^ (h1_j & parity)."""
    nxt, quant = {}, {}
    for s in range(1 << nu):
        p = [0] + [(s >> (j - 1)) & 1 for j in range(1, nu + 1)] + [0]
        quant[s] = p[1]
        nxt[s] = tuple(
            sum((p[j + 1] ^ ((h0 >> j) & 1 & p[1]) ^ ((h1 >> j) & 1 & z)) << (j - 1)
                for j in range(1, nu + 1)) for z in (0, 1))
    return nxt, quant


def test_the_table_is_the_ungerboeck_code_renumbered() -> None:
    nxt, quant = ungerboeck(0o45, 0o10, 5)
    label = {s: (s >> 1) | ((s & 1) << 4) for s in range(32)}  # quantizer bit on top
    table = NEXT_STATE[3]
    for s in range(32):
        assert (label[s] >= 16) == bool(quant[s])
        assert table[label[s]] == tuple(label[t] for t in nxt[s])
    # and the 4-state machine is the (5, 2) code the same way
    nxt4, quant4 = ungerboeck(0o5, 0o2, 2)
    label4 = {s: (s >> 1) | ((s & 1) << 1) for s in range(4)}
    assert all(NEXT_STATE[1][label4[s]] == tuple(label4[t] for t in nxt4[s]) for s in range(4))


def test_32_states_beat_8_on_gaussian_weights() -> None:
    """At the same QP the 32-state trellis reaches a higher SNR at about the same size."""
    w = np.random.default_rng(2).normal(0, 0.05, (192, 256)).astype(np.float32)
    out = {}
    for dq in (2, 3):
        payload, _, recon = _encode(w, -28, 10, dq, 10, 1)
        err = w.astype(np.float64) - recon
        out[dq] = (len(payload), 10 * np.log10((w.astype(np.float64) ** 2).sum()
                                              / (err * err).sum()))
    assert out[3][1] > out[2][1] + 0.05
    assert out[3][0] < 1.003 * out[2][0]


def test_conformance_stream_reads_with_the_spec_decoder() -> None:
    _, tensors = stream_tensors((ROOT / "bitstreams" / "DQ32_A_1.bit").read_bytes())
    dq32 = [(t, p) for t, p in tensors if t.dq_enabled and t.dq_states == 32]
    raster = [(t, p) for t, p in dq32 if not t.tree.enabled]  # what the spec reading covers
    assert raster and len(raster) < len(dq32)
    for tps, payload in raster:
        params = codec.kernel_params(tps)
        levels = core.decode_kernel(payload, params, tps.dtype, "t").levels
        spec, _, _ = spec_decode_levels(payload, tps.rows, tps.cols, tps.num_gt_flags, 3,
                                        tps.prob_window, int(tps.suffix_ctx))
        assert np.array_equal(spec, levels)


def test_the_8_state_reading_of_a_32_state_payload_fails() -> None:
    rng = np.random.default_rng(8)
    w = rng.laplace(0, 0.05, (16, 48)).astype(np.float32)
    payload, levels, recon = _encode(w, -28, 4, 3, 10)
    _check(payload, levels, recon, -28, 4, 3, 10)
    try:
        spec, _, _ = spec_decode_levels(payload, 16, 48, 4, 2, 10)
    except AssertionError:
        return
    assert not np.array_equal(spec, levels)


def test_format_and_flags() -> None:
    rng = np.random.default_rng(12)
    model = {"fc.weight": rng.laplace(0, 0.05, (32, 48)).astype(np.float32)}
    data = nntm.encode(model, nntm.Config.from_files(overrides={"IntegrityHash": 0, "DepQuant": 1,
                                                                "DQStates": "32"}))
    mps, tensors = stream_tensors(data)
    assert mps.version_minor == 5 and mps.tool_flags & hls.TOOL_DQ_32STATES
    assert not mps.tool_flags & hls.TOOL_DQ_8STATES
    assert tensors[0][0].dq_states == 32 and codec.dq_mode(tensors[0][0]) == 3
    assert nntm.decode(data)["fc.weight"].shape == (32, 48)
    # without DQ the flag is absent and DQStates 32 changes nothing
    plain = nntm.encode(model, nntm.Config.from_files(overrides={"IntegrityHash": 0,
                                                                 "DQStates": "32"}))
    assert plain == nntm.encode(model, nntm.Config.from_files(overrides={"IntegrityHash": 0}))


def test_dq_32_states_flag_follows_dq_8_states_flag() -> None:
    """With both tool flags, a tensor with 8 states carries no dq_32_states_flag, one with
    4 or 32 states carries dq_8_states_flag 0 and then the flag."""
    flags = hls.TOOL_DEP_QUANT | hls.TOOL_DQ_8STATES | hls.TOOL_DQ_32STATES
    mps = hls.ModelParameterSet(num_tensors=1, tool_flags=flags)
    for states in (4, 8, 32):
        unit = hls.tensor_parameter_set(small_tps(dq_enabled=True, dq_states=states), flags)
        assert hls.parse_tensor_parameter_set(hls.split_units(unit)[0], mps).dq_states == states
    tps = small_tps(dq_enabled=True, dq_states=32)
    with pytest.raises(ValueError, match="TOOL_DQ_32STATES"):
        hls.tensor_parameter_set(tps, hls.TOOL_DEP_QUANT | hls.TOOL_DQ_8STATES)
    with pytest.raises(ConfigError):
        nntm.Config.from_files(overrides={"IntegrityHash": 0, "DQStates": "16"})


def test_the_c_core_refuses_an_unknown_dq_mode() -> None:
    w = np.zeros((4, 4), np.float32)
    with pytest.raises(nntm.NntmError):
        core.encode_kernel(w, core.KernelParams(4, 4, -20, 2, 4, core.TreeParams(), 4, 0),
                           np.dtype(np.float32), True, 0.1, "t")
