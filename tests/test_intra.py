"""Intra prediction of CU levels (format 1.3, docs/bitstream.md clause 10).

The C predictor and its legality rule are checked against a Python reading of the
spec text; encoded streams are checked for decodability, for predictions that read
only levels of earlier CUs (in the decoder's CU order), and for the gain on
structured weights that the tool exists for.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nntm import codec, core, hls
from nntm.apps import encoder as encoder_app
from nntm.config import Config, parse_app_args
from nntm.errors import BitstreamError, ConfigError
from nntm.options import ENCODER_OPTIONS

ROW, COL, COPY = 1, 2, 3


# ---------------------------------------------------------------- the spec in Python
def decoded_before(r: int, c: int, region: tuple[int, int, int, int], ctu: int) -> bool:
    """Clause 10.2: element (r, c) precedes the CU in decoding order."""
    x0, y0, x1, y1 = region
    xc, yc = x0 - x0 % ctu, y0 - y0 % ctu
    return (r < yc or (c < xc and r < yc + ctu) or (r < y0 and c < x1)
            or (r < y1 and c < x0))


def spec_predict(rec: np.ndarray, ctu: int, region: tuple[int, int, int, int], mode: int,
                 bv: tuple[int, int]) -> np.ndarray | None:
    """Clauses 10.2 and 10.3, element by element."""
    rows, cols = rec.shape
    x0, y0, x1, y1 = region
    w, h = x1 - x0, y1 - y0
    if mode == ROW:
        if x0 == 0:
            return None
        span = min(x0, w)
        return np.array([[(2 * int(rec[r, x0 - span:x0].sum()) + span) // (2 * span)] * w
                         for r in range(y0, y1)], dtype=np.int64)
    if mode == COL:
        if y0 == 0:
            return None
        span = min(y0, h)
        row = [(2 * int(rec[y0 - span:y0, c].sum()) + span) // (2 * span)
               for c in range(x0, x1)]
        return np.array([row] * h, dtype=np.int64)
    bx, by = bv
    if not (abs(bx) <= 32767 and abs(by) <= 32767 and x0 + bx >= 0 and y0 + by >= 0
            and x1 + bx <= cols and y1 + by <= rows):
        return None
    block = [(r, c) for r in range(y0 + by, y1 + by) for c in range(x0 + bx, x1 + bx)]
    if not all(decoded_before(r, c, region, ctu) for r, c in block):
        return None
    return rec[y0 + by:y1 + by, x0 + bx:x1 + bx].astype(np.int64)


@st.composite
def cases(draw: st.DrawFn) -> tuple:
    log2_ctu = draw(st.integers(1, 4))
    ctu = 1 << log2_ctu
    rows, cols = draw(st.integers(1, 3 * ctu)), draw(st.integers(1, 3 * ctu))
    big = draw(st.booleans())
    rec = np.array(draw(st.lists(st.integers(-(2**30) + 1 if big else -9, 2**30 - 1 if big else 9),
                                 min_size=rows * cols, max_size=rows * cols)),
                   dtype=np.int32).reshape(rows, cols)
    x0, y0 = draw(st.integers(0, cols - 1)), draw(st.integers(0, rows - 1))
    x1, y1 = draw(st.integers(x0 + 1, cols)), draw(st.integers(y0 + 1, rows))
    mode = draw(st.sampled_from((ROW, COL, COPY)))
    bv = (draw(st.integers(-2 * ctu, 2 * ctu)), draw(st.integers(-2 * ctu, 2 * ctu)))
    return log2_ctu, rec, (x0, y0, x1, y1), mode, bv


@settings(max_examples=400, deadline=None)
@given(cases())
def test_c_predictor_matches_the_spec(case: tuple) -> None:
    log2_ctu, rec, region, mode, bv = case
    want = spec_predict(rec.astype(np.int64), 1 << log2_ctu, region, mode, bv)
    got = core.intra_predict_levels(log2_ctu, rec, region, mode, bv)
    if want is None:
        assert got is None
    else:
        assert got is not None and np.array_equal(got.astype(np.int64), want)


def test_rounding_and_negative_means() -> None:
    rec = np.array([[-3, -2, 0, 0], [1, 2, 0, 0], [-1, -2, 0, 0]], dtype=np.int32)
    # row means of (-3,-2) = -2.5 -> -2 (half up), (1,2) = 1.5 -> 2, (-1,-2) = -1.5 -> -1
    got = core.intra_predict_levels(2, rec, (2, 0, 4, 3), ROW)
    assert got is not None and got[:, 0].tolist() == [-2, 2, -1]
    assert core.intra_predict_levels(2, rec, (0, 0, 2, 3), ROW) is None  # nothing left of it
    assert core.intra_predict_levels(2, rec, (2, 0, 4, 3), COPY, (0, 0)) is None


# ---------------------------------------------------------------- encoded streams
def structured(seed: int, rows: int = 48, cols: int = 80) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    tile = rng.laplace(0, 0.2, (8, 16))
    reps = (-(-rows // 8), -(-cols // 16))
    copy = np.tile(tile, reps)[:rows, :cols] + rng.normal(0, 0.004, (rows, cols))
    offs = np.repeat(rng.laplace(0, 0.3, (rows, 1)), cols, axis=1)
    return {"copy.weight": copy.astype(np.float32),
            "rows.weight": (offs + rng.normal(0, 0.004, (rows, cols))).astype(np.float32),
            "noise.weight": rng.normal(0, 0.1, (rows, cols)).astype(np.float32)}


def cfg(**changes: object) -> Config:
    base = dict(TreeType="qtmtt", CTUSize=16, MinQTSize=4, IntraPred=1, IntraCopyRange=16,
                Preset="medium", QP=-24, IntegrityHash=0)  # format 1.3, not 1.6
    base.update(changes)
    return Config.defaults().replace(**base)


def check_prediction_order(name: str, cus: np.ndarray, shape: tuple[int, int], ctu: int) -> int:
    """Every intra CU reads only elements of CUs earlier in the decoder's CU trace."""
    owner = np.full(shape, -1, dtype=np.int64)
    used = 0
    for i, cu in enumerate(cus):
        x, y, w, h = (int(cu[k]) for k in ("x", "y", "w", "h"))
        mode = int(cu["intra"])
        if mode == COPY:
            bx, by = int(cu["bv_x"]), int(cu["bv_y"])
            src = owner[y + by:y + by + h, x + bx:x + bx + w]
            assert src.shape == (h, w), name
        elif mode == ROW:
            src = owner[y:y + h, x - min(x, w):x]
        elif mode == COL:
            src = owner[y - min(y, h):y, x:x + w]
        else:
            src = np.full(1, -2)
        if mode:
            assert src.size and np.all(src >= 0) and np.all(src < i), (name, i)
            used += 1
        owner[y:y + h, x:x + w] = i
    return used


@pytest.mark.parametrize("preset", ["fast", "medium", "slow"])
def test_streams_decode_and_predict_only_from_earlier_cus(preset: str) -> None:
    tensors = structured(5, 37, 53)  # no multiple of the CTU size: border CUs
    res = codec.encode_with_recon(tensors, cfg(Preset=preset, CUQPDelta=1))
    detailed = codec.decode_detailed(res.data, trace=True)
    used = 0
    for name, x in tensors.items():
        assert np.array_equal(detailed.tensors[name].view(np.uint32),
                              res.recon[name].view(np.uint32))
        used += check_prediction_order(name, detailed.cus[name], x.shape, 16)
    assert used > 0


def test_intra_pays_on_structured_weights_and_not_on_noise() -> None:
    tensors = structured(6)
    off = codec.encode_with_recon(tensors, cfg(IntraPred=0))
    on = codec.encode_with_recon(tensors, cfg())
    finer = codec.encode_with_recon(tensors, cfg(QP=-28))  # a step 2^-1 finer
    bits = {s.name: s.bits for s in off.stats}
    snr = {s.name: s.snr_db for s in off.stats}
    for name in ("copy.weight", "rows.weight"):
        # with intra prediction a finer step costs less than half the bits, at a better SNR
        stat = next(s for s in finer.stats if s.name == name)
        assert stat.bits < 0.5 * bits[name] and stat.snr_db > snr[name], name
    # noise: a prediction wins only where it happens to pay; the flags cost little
    on_bits = {s.name: s.bits for s in on.stats}
    assert on_bits["noise.weight"] <= bits["noise.weight"] * 1.02


def test_format_version_and_tool_flag_only_when_used() -> None:
    tensors = structured(7, 16, 32)
    on = codec.encode_with_recon(tensors, cfg())
    mps = hls.parse_model_parameter_set(hls.split_units(on.data)[0])
    assert mps.tool_flags & hls.TOOL_INTRA_PRED and mps.version_minor == 3
    off = codec.encode_with_recon(tensors, cfg(IntraPred=0))
    mps = hls.parse_model_parameter_set(hls.split_units(off.data)[0])
    assert not mps.tool_flags & hls.TOOL_INTRA_PRED and mps.version_minor == 1


def test_a_12_decoder_rejects_the_stream() -> None:
    data = bytearray(codec.encode_with_recon(structured(8, 16, 32), cfg()).data)
    units = hls.split_units(bytes(data))
    at = units[0].offset + hls.UNIT_HEADER_BYTES + len(hls.MAGIC) + 1  # version_minor
    assert data[at] == 3
    data[at] = 2
    with pytest.raises(BitstreamError, match="need format 1.3"):
        codec.decode(bytes(data))


def test_with_inter_prediction_and_importance() -> None:
    new = structured(9, 32, 48)
    rng = np.random.default_rng(10)
    ref = {k: (v + rng.normal(0, 0.05, v.shape)).astype(np.float32) for k, v in new.items()}
    imp = {k: rng.uniform(0, 2, v.shape).astype(np.float32) for k, v in new.items()}
    res = codec.encode_with_recon(new, cfg(), importance=imp, ref_model=ref)
    mps = hls.parse_model_parameter_set(hls.split_units(res.data)[0])
    assert mps.tool_flags & hls.TOOL_INTER_PRED and mps.tool_flags & hls.TOOL_INTRA_PRED
    dec = codec.decode(res.data, ref_model=ref)
    for name in new:
        assert np.array_equal(dec[name].view(np.uint32), res.recon[name].view(np.uint32))


def kernel_encode(seed: int) -> tuple[core.KernelParams, core.KernelResult]:
    """A 32x48 tensor of repeated tiles coded with intra prediction by the C core (CTU 16)."""
    x = structured(seed, 32, 48)["copy.weight"]
    params = core.KernelParams(32, 48, -24, 2, 4, core.TreeParams(
        True, 4, 2, 2, 1, hls.TREE_SPLIT_MASK[3], True, False, True))
    return params, core.encode_kernel(x, params, np.dtype(np.float32), True, 0.1, "t",
                                      core.SearchParams(max_depth=3, intra_copy_range=16))


def test_levels_reported_are_the_reconstructed_levels() -> None:
    """The decoder's levels are prediction + residual: level * step is the reconstruction."""
    params, enc = kernel_encode(11)
    assert np.count_nonzero(enc.cus["intra"])
    dec = core.decode_kernel(enc.payload, params, np.dtype(np.float32), "t")
    assert np.array_equal(dec.levels, enc.levels)
    step = core.step_size(-24, 2)
    assert np.array_equal(dec.recon, (enc.levels * step).astype(np.float32))


def test_intra_with_dep_quant_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="IntraPred needs DepQuant 0"):
        codec.encode_with_recon(structured(12, 8, 8), cfg(DepQuant=1))
    # EncoderApp reports it with the other problems, before reading anything
    with pytest.raises(ConfigError) as info:
        parse_app_args(["--IntraPred=1", "--DepQuant=1", "--QP=x"], ENCODER_OPTIONS,
                       "EncoderApp", "", checks=encoder_app.validate)
    assert "IntraPred needs DepQuant 0" in str(info.value) and "QP" in str(info.value)
    params = core.KernelParams(8, 8, -20, 2, 4, core.TreeParams(
        True, 3, 2, 2, 1, hls.TREE_SPLIT_MASK[3], True, False, True), dq_enabled=True)
    with pytest.raises(Exception, match="argument"):
        core.encode_kernel(np.zeros((8, 8), np.float32), params, np.dtype(np.float32), True,
                           0.1, "t")


def test_corrupt_payloads_fail_cleanly() -> None:
    """Damaged intra payloads: an error or a different tensor, never a crash."""
    params, enc = kernel_encode(13)
    rng = np.random.default_rng(14)
    errors = 0
    for _ in range(200):
        bad = bytearray(enc.payload)
        bad[int(rng.integers(len(bad)))] ^= 1 << int(rng.integers(8))
        try:
            core.decode_kernel(bytes(bad), params, np.dtype(np.float32), "t")
        except Exception as exc:  # noqa: BLE001 - the C error, whatever its code
            assert "corrupt" in str(exc) or "truncated" in str(exc) or "range" in str(exc)
            errors += 1
    assert errors > 0
