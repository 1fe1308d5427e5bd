"""Tests of the encoder and decoder drivers (nntm.codec), with hypothesis.

Round trips over shapes, dtypes and value ranges; rate and distortion against QP; RDOQ against
plain rounding; determinism; bad input; truncated, corrupted and unsupported bitstreams.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nntm import codec, core, hls
from nntm.config import Config
from nntm.errors import BitstreamError, EncodeError, HashMismatchError

BF16 = np.dtype(ml_dtypes.bfloat16)
FLOAT_DTYPES = [np.dtype(np.float32), np.dtype(np.float16), BF16, np.dtype(np.float64)]
INT_DTYPES = [np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64,
                                     np.uint8, np.uint16, np.uint32, np.uint64)]
ALL_DTYPES = FLOAT_DTYPES + INT_DTYPES + [np.dtype(np.bool_)]
VALUE_KINDS = ["zeros", "huge", "tiny", "mixed", "positive", "unit"]

HYPOTHESIS = settings(max_examples=60, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])


def cfg(**changes: object) -> Config:
    return Config.defaults().replace(**changes) if changes else Config.defaults()


def make_tensor(shape: tuple[int, ...], dtype: np.dtype, kind: str, seed: int) -> np.ndarray:
    """A tensor of the given shape and dtype; floats drawn according to kind."""
    rng = np.random.default_rng(seed)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        raw = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
        return raw if kind != "zeros" else np.zeros(shape, dtype)
    if kind == "zeros":
        x = np.zeros(shape)
    elif kind == "huge":
        x = rng.normal(0.0, 1e4, shape)
    elif kind == "tiny":
        x = rng.normal(0.0, 1e-7, shape)
    elif kind == "positive":
        x = rng.uniform(0.0, 3.0, shape)
    elif kind == "unit":
        x = rng.normal(0.0, 1.0, shape)
    else:  # mixed: several scales and both signs
        x = rng.normal(0.0, 1.0, shape) * 10.0 ** rng.integers(-6, 4, shape)
    x = np.clip(x, -6e4, 6e4)  # inside float16's range
    return np.asarray(x.astype(dtype))


@st.composite
def shapes(draw: st.DrawFn) -> tuple[int, ...]:
    ndim = draw(st.integers(0, 4))
    dims = draw(st.lists(st.integers(0, 9), min_size=ndim, max_size=ndim))
    if math.prod(dims) > 600:
        dims = [min(d, 3) for d in dims]
    return tuple(dims)


@st.composite
def models(draw: st.DrawFn) -> dict[str, np.ndarray]:
    count = draw(st.integers(1, 4))
    out: dict[str, np.ndarray] = {}
    for i in range(count):
        dtype = draw(st.sampled_from(ALL_DTYPES))
        kind = draw(st.sampled_from(VALUE_KINDS))
        seed = draw(st.integers(0, 2**32 - 1))
        name = draw(st.sampled_from(["layer{}.weight", "blk.{}/bias", "emb_{}", "µ{}"])).format(i)
        out[name] = make_tensor(draw(shapes()), dtype, kind, seed)
    return out


@st.composite
def configs(draw: st.DrawFn) -> Config:
    density = draw(st.sampled_from([0, 2, 6]))
    # steps between 2^-14 and 2^1 (1-D tensors and CU QP deltas included): no level overflow
    # for |w| < 6e4
    k = draw(st.integers(-12, -3))
    return cfg(
        QP=max(-128, min(127, k * (1 << density))),
        QPDensity=density,
        QPOffset1D=draw(st.sampled_from([-8, 0, 4] if density >= 2 else [0, 4])),
        RDOQ=draw(st.booleans()),
        LambdaScale=draw(st.sampled_from([0.0, 0.1, 1.0])),
        NumGtFlags=draw(st.sampled_from([1, 4, 15])),
        LosslessMaxElements=draw(st.sampled_from([0, 1, 5])),
        DepQuant=draw(st.booleans()),
        TreeType=draw(st.sampled_from(["none", "qt", "qtbt", "qtmtt"])),
        CTUSize=draw(st.sampled_from([8, 16, 64])),
        SkipCU=draw(st.booleans()),
        CUQPDelta=draw(st.booleans()),
        Preset=draw(st.sampled_from(["fast", "medium"])),
        Arrangement=draw(st.sampled_from(["rows", "tiles"])),
    )


def same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


# ------------------------------------------------------------------ round trips


@HYPOTHESIS
@given(model=models(), config=configs())
def test_round_trip_equals_encoder_reconstruction(
    model: dict[str, np.ndarray], config: Config
) -> None:
    result = codec.encode_with_recon(model, config)
    decoded = codec.decode(result.data)
    assert list(decoded) == list(model)  # names and order
    assert list(result.recon) == list(model)
    for name, x in model.items():
        d, r = decoded[name], result.recon[name]
        assert d.dtype == x.dtype and d.shape == x.shape, name
        assert r.dtype == x.dtype and r.size == x.size, name
        assert d.tobytes() == r.tobytes(), name  # bit-exact, NaN-safe
        if x.dtype.name not in hls.FLOAT_DTYPES or x.size <= int(config["LosslessMaxElements"]):
            assert d.tobytes() == x.tobytes(), name  # carried exactly
        else:
            assert np.all(np.isfinite(d.astype(np.float64))), name
    stats = {s.name: s for s in result.stats}
    assert list(stats) == list(model)
    assert sum(s.bits for s in result.stats) < 8 * len(result.data)  # plus MPS and EOS
    detailed = codec.decode_detailed(result.data)
    assert detailed.ok and [r.name for r in detailed.reports] == list(model)


@HYPOTHESIS
@given(shape=shapes(), dtype=st.sampled_from(FLOAT_DTYPES), kind=st.sampled_from(VALUE_KINDS),
       seed=st.integers(0, 2**32 - 1), qp=st.integers(-48, -12))
def test_plain_rounding_error_is_at_most_half_a_step(
    shape: tuple[int, ...], dtype: np.dtype, kind: str, seed: int, qp: int
) -> None:
    x = make_tensor(shape, dtype, kind, seed)
    config = cfg(QP=qp, QPOffset1D=0, RDOQ=False, LosslessMaxElements=0)
    result = codec.encode_with_recon({"t": x}, config)
    rec = result.recon["t"].astype(np.float64)
    x32 = x.astype(np.float32).astype(np.float64)  # the encoder quantizes float32 weights
    step = core.step_size(qp, 2)
    # half a step, plus the rounding of the reconstruction to the output dtype
    fraction_bits = {"float16": 10, "bfloat16": 7, "float32": 23, "float64": 52}[dtype.name]
    bound = step / 2 + np.abs(rec) * 2.0**-fraction_bits + 2.0**-130
    assert np.all(np.abs(rec - x32) <= bound)
    assert codec.decode(result.data)["t"].tobytes() == result.recon["t"].tobytes()


def test_round_trip_special_shapes_and_values() -> None:
    model = {
        "scalar": np.array(1.25, dtype=np.float32),
        "one": np.array([0.3], dtype=np.float16),
        "empty": np.zeros((3, 0, 2), dtype=np.float32),
        "empty0": np.zeros((0,), dtype=BF16),
        "odd": make_tensor((7, 3, 5), np.dtype(np.float32), "mixed", 1),
        "wide": make_tensor((1, 333), np.dtype(np.float64), "unit", 2),
        "bool": np.array([[True, False, True]]),
        "u64": np.array([0, 2**64 - 1, 12345], dtype=np.uint64),
        "i8": np.array([-128, 127, 0], dtype=np.int8),
    }
    result = codec.encode_with_recon(model, cfg())
    decoded = codec.decode(result.data)
    assert list(decoded) == list(model)
    for name, x in model.items():
        assert decoded[name].shape == x.shape and decoded[name].dtype == x.dtype, name
        assert decoded[name].tobytes() == result.recon[name].tobytes(), name
    for name in ("scalar", "one", "empty", "empty0", "bool", "u64", "i8"):
        assert same_bytes(decoded[name], model[name]), name
    modes = {s.name: s.mode for s in result.stats}
    assert modes["odd"] == modes["wide"] == "quantized"
    assert modes["scalar"] == modes["empty"] == modes["bool"] == "lossless"


def test_encoder_reconstruction_keeps_scalar_shape() -> None:
    """Regression: the lossless reconstruction of a 0-d tensor had shape (1,)."""
    model = {"s": np.array(3.5, dtype=np.float32), "i": np.array(7, dtype=np.int32)}
    result = codec.encode_with_recon(model, cfg())
    decoded = codec.decode(result.data)
    for name in model:
        assert decoded[name].shape == ()
        assert result.recon[name].shape == (), (name, result.recon[name].shape)


@pytest.mark.parametrize("tools", [
    {"RDOQ": False}, {"RDOQ": True}, {"DepQuant": True},
    {"TreeType": "qtmtt", "CUQPDelta": True},
], ids=["plain", "rdoq", "depquant", "tree-cuqp"])
@pytest.mark.parametrize("dtype, values, qp, density", [
    (np.dtype(np.float16), [65504.0, -65504.0, 60000.0, 1.0], 40, 2),  # step 1024
    (BF16, [3.38e38, -3.38e38, 1.0, 2.0], 127, 0),  # step 2^127
    (np.dtype(np.float32), [3.4e38, -3.4e38, 1.0, 2.0], 127, 0),
], ids=["float16", "bfloat16", "float32"])
def test_finite_weights_never_reconstruct_to_infinity(
    tools: dict[str, object], dtype: np.dtype, values: list[float], qp: int, density: int
) -> None:
    """Regression: the nearest level times the step could lie beyond the dtype's largest
    value, and the reconstruction became +-inf."""
    x = np.array([values], dtype=dtype)
    result = codec.encode_with_recon({"w": x}, cfg(QP=qp, QPDensity=density, **tools))
    rec = result.recon["w"]
    assert np.all(np.isfinite(rec.astype(np.float64))), rec
    assert codec.decode(result.data)["w"].tobytes() == rec.tobytes()


def test_big_endian_input_is_coded_like_little_endian() -> None:
    x = make_tensor((4, 6), np.dtype(np.float32), "unit", 3)
    little = codec.encode({"w": x, "i": np.arange(5, dtype="<i4")}, cfg())
    big = codec.encode({"w": x.astype(">f4"), "i": np.arange(5, dtype=">i4")}, cfg())
    assert big == little


def test_source_format_is_carried() -> None:
    data = codec.encode({"w": np.ones((2, 2), np.float32)}, cfg(), hls.SourceFormat.NPZ)
    assert codec.decode_detailed(data).source_format == hls.SourceFormat.NPZ


# ------------------------------------------------------------------ rate and distortion


@pytest.fixture(scope="module")
def gaussian_model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1234)
    return {
        "fc.weight": rng.normal(0.0, 0.05, (64, 96)).astype(np.float32),
        "conv.weight": rng.normal(0.0, 0.02, (32, 16, 3, 3)).astype(np.float32),
        "conv.bias": rng.normal(0.0, 0.1, (32,)).astype(np.float32),
    }


def squared_error(model: dict[str, np.ndarray], recon: dict[str, np.ndarray]) -> float:
    return sum(float(np.sum((model[k].astype(np.float64) - recon[k].astype(np.float64)) ** 2))
               for k in model)


@pytest.mark.parametrize("tools", [
    {"RDOQ": False}, {"RDOQ": True}, {"RDOQ": True, "LambdaScale": 0.1},
    {"DepQuant": True, "LambdaScale": 0.1}, {"TreeType": "qtmtt", "LambdaScale": 0.1},
], ids=["plain", "rdoq", "rdoq-0.1", "depquant", "tree"])
def test_rate_falls_and_error_grows_with_qp(gaussian_model: dict[str, np.ndarray],
                                            tools: dict[str, object]) -> None:
    qps = list(range(-44, -15, 4))
    bits, errors = [], []
    for qp in qps:
        result = codec.encode_with_recon(gaussian_model, cfg(QP=qp, **tools))
        bits.append(8 * len(result.data))
        errors.append(squared_error(gaussian_model, result.recon))
    assert all(a > b for a, b in zip(bits, bits[1:], strict=False)), bits
    assert all(a < b for a, b in zip(errors, errors[1:], strict=False)), errors
    # a doubling of the step (4 QPs) costs about one bit per weight at these rates
    params = sum(x.size for x in gaussian_model.values())
    assert 0.5 * params < bits[0] - bits[1] < 1.5 * params


def _payload_bits(data: bytes) -> int:
    return sum(8 * len(u.payload) for u in hls.split_units(data)
               if u.unit_type == hls.UnitType.TENSOR_DATA_UNIT)


@pytest.mark.parametrize("lambda_scale", [0.1, 1.0])
@pytest.mark.parametrize("qp", [-40, -32, -24])
def test_rdoq_lowers_the_rd_cost(gaussian_model: dict[str, np.ndarray], qp: int,
                                 lambda_scale: float) -> None:
    """RDOQ minimises D + lambda * R with lambda = LambdaScale * step^2: at the same QP its
    cost must be below plain rounding's, and it must spend fewer bits."""
    model = {"fc.weight": gaussian_model["fc.weight"]}
    lam = lambda_scale * core.step_size(qp, 2) ** 2
    cost = {}
    rate = {}
    for rdoq in (False, True):
        result = codec.encode_with_recon(model, cfg(QP=qp, RDOQ=rdoq, LambdaScale=lambda_scale))
        rate[rdoq] = _payload_bits(result.data)
        cost[rdoq] = squared_error(model, result.recon) + lam * rate[rdoq]
    assert cost[True] < cost[False], cost
    assert rate[True] < rate[False], rate


def test_rdoq_with_zero_lambda_is_rounding_to_nearest(
    gaussian_model: dict[str, np.ndarray]
) -> None:
    w = gaussian_model["fc.weight"]
    step = core.step_size(-28, 2)
    frac = np.abs(w.astype(np.float64)) / step % 1.0
    assert not np.any(frac == 0.5)  # no exact ties, where the two may legitimately differ
    plain = codec.encode({"w": w}, cfg(QP=-28, RDOQ=False))
    rdoq0 = codec.encode({"w": w}, cfg(QP=-28, RDOQ=True, LambdaScale=0.0))
    assert rdoq0 == plain


# ------------------------------------------------------------------ determinism


def test_encoding_is_deterministic(gaussian_model: dict[str, np.ndarray]) -> None:
    model = dict(gaussian_model, flags=np.array([True, False]), ids=np.arange(9, dtype=np.int64))
    first = codec.encode(model, cfg())
    assert codec.encode(model, cfg()) == first
    # the same values in another memory layout give the same bytes
    relaid = {k: np.asfortranarray(v) for k, v in model.items()}
    relaid["fc.weight"] = np.ascontiguousarray(model["fc.weight"].T).T
    assert codec.encode(relaid, cfg()) == first
    # the inputs are not modified
    assert all(np.array_equal(model[k], gaussian_model[k]) for k in gaussian_model)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_raise_naming_the_tensor(dtype: np.dtype, bad: float) -> None:
    x = make_tensor((4, 5), dtype, "unit", 0)
    x[2, 3] = bad
    model = {"ok.weight": make_tensor((3, 3), dtype, "unit", 1), "bad.weight": x}
    with pytest.raises(EncodeError, match=r"bad\.weight") as info:
        codec.encode(model, cfg())
    assert "NaN" in str(info.value) or "inf" in str(info.value).lower()


def _nan_patterns() -> dict[str, np.ndarray]:
    return {
        "f32": np.array([0x7FC01234, 0x7F800001, 0xFFC00000, 0x7F800000, 0xFF800000, 0x3F800000,
                         0x00000001], dtype=np.uint32).view(np.float32),
        "f16": np.array([0x7E01, 0x7C01, 0xFE00, 0x7C00, 0xFC00, 0x3C00], np.uint16)
        .view(np.float16),
        "bf16": np.array([0x7FC1, 0x7F81, 0xFFC0, 0x7F80, 0xFF80, 0x3F80], np.uint16).view(BF16),
        "f64": np.array([0x7FF8000000000ABC, 0x7FF0000000000001, 0xFFF8000000000000,
                         0x7FF0000000000000, 0x3FF0000000000000], np.uint64).view(np.float64),
    }


def test_non_finite_weights_lossless_keep_every_bit() -> None:
    model = {k: v.reshape(1, -1) for k, v in _nan_patterns().items()}
    model["plain"] = make_tensor((8, 8), np.dtype(np.float32), "unit", 5)
    result = codec.encode_with_recon(model, cfg(NonFiniteWeights="lossless"))
    decoded = codec.decode(result.data)
    for name, x in model.items():
        if name != "plain":
            assert decoded[name].tobytes() == x.tobytes(), name  # NaN payloads included
            assert result.recon[name].tobytes() == x.tobytes(), name
    modes = {s.name: s.mode for s in result.stats}
    assert modes["f32"] == "lossless" and modes["plain"] == "quantized"
    assert decoded["plain"].tobytes() == result.recon["plain"].tobytes()


@pytest.mark.parametrize("value", [
    np.zeros(3, dtype=np.complex64),
    np.array([1, "a", None], dtype=object),
    np.array(["ab", "c"]),
    np.zeros(2, dtype=np.longdouble) if np.dtype(np.longdouble).itemsize > 8
    else np.zeros(2, dtype="datetime64[s]"),
], ids=["complex64", "object", "str", "longdouble-or-datetime"])
def test_unsupported_dtype_raises_encode_error(value: np.ndarray) -> None:
    model = {"fine": np.ones(3, np.float32), "weird": value}
    with pytest.raises(EncodeError, match="weird"):
        codec.encode(model, cfg())


def test_other_bad_input_raises_encode_error() -> None:
    with pytest.raises(EncodeError):
        codec.encode({"": np.ones(3, np.float32)}, cfg())
    # float64 weights beyond float32's range and levels beyond 2^30 - 1 are no longer
    # errors: the encoder falls back (tests/test_fallback.py)


# ------------------------------------------------------------------ corrupt streams


STREAM_TOOLS = {
    "foundation": {},
    "foundation-1.5": {"IntegrityHash": False},  # tensor data MD5s only
    "tree-dq": {"TreeType": "qtmtt", "CTUSize": 8, "DepQuant": True, "CUQPDelta": True},
}


@pytest.fixture(scope="module", params=sorted(STREAM_TOOLS))
def small_stream(request: pytest.FixtureRequest) -> tuple[dict[str, np.ndarray],
                                                          codec.EncodeResult]:
    rng = np.random.default_rng(7)
    model = {
        "w": rng.normal(0.0, 0.05, (10, 24)).astype(np.float32),
        "b": rng.normal(0.0, 0.1, (9,)).astype(np.float16),
        "ids": np.arange(6, dtype=np.int16),
        "s": np.array(3.5, dtype=np.float64),
    }
    return model, codec.encode_with_recon(model, cfg(**STREAM_TOOLS[request.param]))


def test_truncation_anywhere_raises_bitstream_error(
    small_stream: tuple[dict[str, np.ndarray], codec.EncodeResult]
) -> None:
    data = small_stream[1].data
    units = hls.split_units(data)
    boundaries = {u.offset for u in units}
    assert len(boundaries) == len(units) >= 14
    for cut in range(len(data)):  # every unit boundary and every point inside a unit
        with pytest.raises(BitstreamError):
            codec.decode(data[:cut])
        if cut in boundaries:
            with pytest.raises(BitstreamError):
                codec.decode_detailed(data[:cut])
    # a stray byte after the end is an error too
    with pytest.raises(BitstreamError):
        codec.decode(data + b"\x00")


def _decoded_equals(decoded: dict[str, np.ndarray], expected: dict[str, np.ndarray],
                    model: dict[str, np.ndarray]) -> bool:
    return list(decoded) == list(expected) and all(
        decoded[k].tobytes() == expected[k].tobytes() and decoded[k].dtype == model[k].dtype
        and decoded[k].shape == model[k].shape for k in decoded)


def test_flipped_data_unit_bytes_are_caught(
    small_stream: tuple[dict[str, np.ndarray], codec.EncodeResult]
) -> None:
    model, result = small_stream
    data = result.data
    names = list(model)
    quantized = {s.name for s in result.stats if s.mode == "quantized"}
    assert quantized == {"w", "b"}
    integrity = bool(hls.parse_model_parameter_set(hls.split_units(data)[0]).tool_flags
                     & hls.TOOL_INTEGRITY)
    data_units = [u for u in hls.split_units(data) if u.unit_type == hls.UnitType.TENSOR_DATA_UNIT]
    assert len(data_units) == len(names)
    mismatches = 0
    for tensor_index, unit in enumerate(data_units):
        name = names[tensor_index]
        start = unit.offset + hls.UNIT_HEADER_BYTES
        for i in range(len(unit.payload)):
            for mask in (0xFF, 0x01, 0x80):
                bad = bytearray(data)
                bad[start + i] ^= mask
                bad = bytes(bad)
                try:
                    decoded = codec.decode(bad)
                except HashMismatchError:
                    mismatches += 1
                    detailed = codec.decode_detailed(bad)  # reports instead of raising
                    assert not detailed.ok
                    status = {r.name: r.ok for r in detailed.reports}
                    if integrity:  # the stream MD5 sees every flip, the tensor's MD5 a change
                        assert detailed.stream_ok is False
                        unchanged = all(status.values()) and name in quantized
                        if unchanged and i >= len(unit.payload) - 4:
                            assert _decoded_equals(detailed.tensors, result.recon, model)
                            continue
                    assert status == {n: n != name for n in names}, (name, i, mask)
                    continue
                except BitstreamError:
                    with pytest.raises(BitstreamError):
                        codec.decode_detailed(bad)
                    continue
                # Accepted: only the last four bytes of an arithmetic-coded payload (the final
                # code value, any value inside the final interval) may change without changing
                # the tensor, and then the output must be exactly the encoder's.  A stream with
                # the integrity hashes accepts no flip at all.
                assert not integrity, (name, i, mask)
                assert name in quantized and i >= len(unit.payload) - 4, (name, i, mask)
                assert _decoded_equals(decoded, result.recon, model), (name, i, mask)
    assert mismatches > 0


def test_wrong_magic(small_stream: tuple[dict[str, np.ndarray], codec.EncodeResult]) -> None:
    data = bytearray(small_stream[1].data)
    data[hls.UNIT_HEADER_BYTES] ^= 0x20  # 'N' -> 'n'
    with pytest.raises(BitstreamError, match="magic"):
        codec.decode(bytes(data))


def test_newer_major_version(
    small_stream: tuple[dict[str, np.ndarray], codec.EncodeResult]
) -> None:
    data = bytearray(small_stream[1].data)
    pos = hls.UNIT_HEADER_BYTES + len(hls.MAGIC)  # version_major
    assert data[pos] == hls.FORMAT_VERSION_MAJOR
    data[pos] = hls.FORMAT_VERSION_MAJOR + 1
    with pytest.raises(BitstreamError, match="newer") as info:
        codec.decode(bytes(data))
    assert f"{hls.FORMAT_VERSION_MAJOR + 1}." in str(info.value)


def test_unknown_unit_type(small_stream: tuple[dict[str, np.ndarray], codec.EncodeResult]) -> None:
    data = small_stream[1].data
    units = hls.split_units(data)
    for unit_type in (6, 17, 255):  # 5 is the container unit [1.7] (tests/test_onnx.py)
        # an unknown unit inserted after the model parameter set
        cut = units[1].offset
        inserted = data[:cut] + bytes([unit_type]) + (3).to_bytes(4, "big") + b"abc" + data[cut:]
        with pytest.raises(BitstreamError, match=f"unknown unit_type {unit_type}"):
            codec.decode(inserted)
        # the type byte of an existing unit overwritten
        patched = bytearray(data)
        patched[units[-1].offset] = unit_type
        with pytest.raises(BitstreamError, match="unknown unit_type"):
            codec.decode(bytes(patched))


def test_empty_and_garbage_streams() -> None:
    for data in (b"", b"\x00", b"NNTM", bytes(64), b"\x04\x00\x00\x00\x00"):
        with pytest.raises(BitstreamError):
            codec.decode(data)


@pytest.mark.parametrize("mode, want", [
    ("offset", {"bn.running_var": -36, "bn.weight": -36, "fc.bias": -36, "fc.weight": -28}),
    ("fixed", {"bn.running_var": -80, "bn.weight": -80, "fc.bias": -80, "fc.weight": -28}),
    ("stats", {"bn.running_var": -80, "bn.weight": -36, "fc.bias": -36, "fc.weight": -28}),
])
def test_qp_of_1d_tensors_by_mode(mode: str, want: dict[str, int]) -> None:
    """QP1DMode: offset (QP + QPOffset1D), fixed (QP1D), stats (QP1D only for BatchNorm
    running statistics)."""
    rng = np.random.default_rng(4)
    tensors = {"fc.weight": rng.normal(0, 0.1, (8, 16)).astype(np.float32),
               "fc.bias": rng.normal(0, 0.1, (8,)).astype(np.float32),
               "bn.weight": rng.normal(1, 0.1, (8,)).astype(np.float32),
               "bn.running_var": rng.uniform(0.01, 2, (8,)).astype(np.float32)}
    res = codec.encode_with_recon(tensors, cfg(QP=-28, QPOffset1D=-8, QP1DMode=mode, QP1D=-80))
    assert {s.name: s.qp for s in res.stats} == want
    decoded = codec.decode(res.data)
    assert all(decoded[k].tobytes() == res.recon[k].tobytes() for k in tensors)
