"""Tests of the cffi wrapper of the C core (nntm.core).

- the constants cffi was given (nntm_cffi.h) are the #defines of the public header (nntm.h);
- the arithmetic coder round-trips bins and the bit estimator agrees with it;
- reconstruction is the exact round-to-nearest-even conversion of level * step to each float
  format (checked against numpy, ml_dtypes and an independent exact reference);
- QP -> step size is exact and monotone (docs/bitstream.md, 5.5.1).
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from nntm import core
from nntm.errors import CoreError

ROOT = Path(__file__).resolve().parents[1]
HEADER = ROOT / "lib" / "include" / "nntm" / "nntm.h"
CFFI_HEADER = ROOT / "lib" / "include" / "nntm" / "nntm_cffi.h"

BF16 = np.dtype(ml_dtypes.bfloat16)
# (fraction bits, exponent bits, numpy dtype, unsigned view) of each output format
FORMATS = {
    "float16": (10, 5, np.dtype(np.float16), np.uint16),
    "bfloat16": (7, 8, BF16, np.uint16),
    "float32": (23, 8, np.dtype(np.float32), np.uint32),
    "float64": (52, 11, np.dtype(np.float64), np.uint64),
}
MAX_LEVEL = (1 << 30) - 1


# ------------------------------------------------------------------ constants

_DEFINE = re.compile(r"^\s*#\s*define\s+(NNTM_[A-Z0-9_]+)\s+(.*?)\s*(?:/\*.*)?$", re.M)


def _defines(path: Path) -> dict[str, int]:
    """Numeric #defines NNTM_* of a header (include guards and non-numeric ones skipped)."""
    out: dict[str, int] = {}
    for name, raw in _DEFINE.findall(path.read_text()):
        text = raw.strip()
        while text.startswith("(") and text.endswith(")"):
            text = text[1:-1].strip()
        try:
            out[name] = int(text, 0)
        except ValueError:
            continue
    return out


def test_header_parser_sees_the_constants() -> None:
    h = _defines(HEADER)
    # the parser itself: parenthesised negatives, hex, plain
    assert h["NNTM_OK"] == 0
    assert h["NNTM_ERR_ARG"] == -2
    assert h["NNTM_MAX_LEVEL"] == MAX_LEVEL
    assert "NNTM_NNTM_H" not in h  # the include guard has no value


def test_cffi_constants_equal_the_header() -> None:
    header = _defines(HEADER)
    cffi = _defines(CFFI_HEADER)
    assert cffi, "no constants found in nntm_cffi.h"
    wrong = {k: (v, header.get(k)) for k, v in cffi.items() if header.get(k) != v}
    assert not wrong, f"nntm_cffi.h constants that differ from nntm.h (cffi, header): {wrong}"
    missing = sorted(set(header) - set(cffi))
    assert not missing, f"#defines of nntm.h missing from nntm_cffi.h: {missing}"


def test_compiled_extension_has_the_header_constants() -> None:
    """The built extension was compiled from the header as it is now."""
    for name, value in _defines(CFFI_HEADER).items():
        assert getattr(core.lib, name) == value, name


def test_strerror_names_every_error_code() -> None:
    codes = {k: v for k, v in _defines(HEADER).items() if k.startswith("NNTM_ERR_")}
    assert codes
    texts = {v: core.ffi.string(core.lib.nntm_strerror(v)).decode() for v in codes.values()}
    assert all(texts.values())
    assert len(set(texts.values())) == len(texts), texts  # one distinct message per code


# ------------------------------------------------------------------ bins


def _random_bins(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    rng = np.random.default_rng(seed)
    p1 = np.array([0.002, 0.03, 0.15, 0.4, 0.5, 0.65, 0.9, 0.995])
    ctx = rng.integers(0, p1.size, n).astype(np.uint8)
    bins = (rng.random(n) < p1[ctx]).astype(np.uint8)
    return bins, ctx, p1, p1.size


@pytest.mark.parametrize("n", [0, 1, 2, 7, 100, 5000])
def test_selftest_bins_round_trip_short(n: int) -> None:
    bins, ctx, _, num_ctx = _random_bins(n, seed=n)
    real, est, decoded = core.selftest_bins(bins, ctx, num_ctx)
    np.testing.assert_array_equal(decoded, bins)
    assert real % 8 == 0 and real >= 32  # whole bytes; the flush writes the 4 bytes of low
    assert est >= 0


def test_selftest_bins_round_trip_and_estimate_long_run() -> None:
    bins, ctx, p1, num_ctx = _random_bins(300_000, seed=1)
    real, est, decoded = core.selftest_bins(bins, ctx, num_ctx)
    np.testing.assert_array_equal(decoded, bins)
    assert abs(est - real) <= 0.01 * real, (real, est)
    # an adaptive coder pays a little for learning; it must not be far off the ideal code length
    ideal = float(-np.sum(np.log2(np.where(bins == 1, p1[ctx], 1.0 - p1[ctx]))))
    assert ideal < real < 1.03 * ideal + 64, (ideal, real)


def test_selftest_bins_skewed_runs() -> None:
    """Long runs of one value drive the probabilities to their limits: still lossless."""
    rng = np.random.default_rng(2)
    bins = np.concatenate(
        [np.zeros(20_000), np.ones(20_000), (rng.random(20_000) < 0.5), np.zeros(5)]
    ).astype(np.uint8)
    ctx = np.zeros(bins.size, dtype=np.uint8)
    real, est, decoded = core.selftest_bins(bins, ctx, 1)
    np.testing.assert_array_equal(decoded, bins)
    assert real < 0.4 * bins.size  # the runs cost almost nothing


def test_selftest_bins_rejects_a_context_out_of_range() -> None:
    with pytest.raises(CoreError) as info:
        core.selftest_bins(np.ones(3, np.uint8), np.array([0, 1, 2], np.uint8), 2)
    assert info.value.code == core.lib.NNTM_ERR_ARG


# ------------------------------------------------------------------ QP -> step


def _exact_step(qp: int, density: int) -> Fraction:
    """docs/bitstream.md 5.5.1: (1 + frac/per) * 2^floor(qp/per)."""
    per = 1 << density
    whole, frac = divmod(qp, per)  # Python: floor division, frac in 0..per-1
    return (1 + Fraction(frac, per)) * Fraction(2) ** whole


def _step_of(qp: int, density: int) -> Fraction:
    m, s = core.qp_to_step(qp, density)
    return Fraction(m) * Fraction(2) ** s


@pytest.mark.parametrize("density", range(7))
def test_qp_to_step_exact_and_monotone(density: int) -> None:
    per = 1 << density
    qps = list(range(-300, 301)) + list(range(-4096, -4096 + 2 * per)) + list(
        range(4096 - 2 * per, 4097))
    qps = sorted(set(qps))
    steps = {}
    for qp in qps:
        m, s = core.qp_to_step(qp, density)
        assert per <= m < 2 * per, (qp, m)  # normalised mantissa
        steps[qp] = Fraction(m) * Fraction(2) ** s
        assert steps[qp] == _exact_step(qp, density), qp
    assert steps[0] == 1
    for qp in qps:
        if qp + 1 in steps:
            assert steps[qp + 1] > steps[qp], qp  # strictly increasing
        if qp + per in steps:
            assert steps[qp + per] == 2 * steps[qp], qp  # doubles every 2^density steps
    # step_size() is the same value as a double (all these are representable)
    for qp in range(-300, 301, 7):
        assert Fraction(core.step_size(qp, density)) == steps[qp]


def test_qp_to_step_known_answers() -> None:
    """The examples of docs/bitstream.md 5.5.1."""
    assert core.qp_to_step(0, 2) == (4, -2)
    assert _step_of(-4, 2) == Fraction(1, 2)
    assert core.qp_to_step(-1, 2) == (7, -3)
    assert core.qp_to_step(5, 2) == (5, -1)
    assert core.qp_to_step(-28, 2) == (4, -9)
    assert core.qp_to_step(7, 0) == (1, 7)
    assert _step_of(-1, 6) == Fraction(127, 128)


@pytest.mark.parametrize("qp, density", [(0, -1), (0, 7), (4097, 2), (-4097, 0)])
def test_qp_to_step_rejects_out_of_range(qp: int, density: int) -> None:
    with pytest.raises(CoreError) as info:
        core.qp_to_step(qp, density)
    assert info.value.code == core.lib.NNTM_ERR_ARG


# ------------------------------------------------------------------ reconstruction


def _ref_bits(v: int, e: int, mbits: int, ebits: int) -> int:
    """Bits of v * 2^e in a binary float format, RNE, gradual underflow, overflow to inf.

    An exact reference written from IEEE 754 with Fractions (not from the C code):
    +0 for v == 0; a nonzero value that rounds to zero keeps its sign.
    """
    if v == 0:
        return 0
    sign = (1 << (mbits + ebits)) if v < 0 else 0
    x = abs(Fraction(v)) * Fraction(2) ** e
    bias = (1 << (ebits - 1)) - 1
    emin = 1 - bias
    exp = abs(v).bit_length() - 1 + e  # floor(log2 x)
    quantum = max(exp, emin) - mbits  # exponent of the last significand bit
    n = round(x / Fraction(2) ** quantum)  # Fraction.__round__: ties to even
    if n >= 1 << (mbits + 1):  # rounding carried into the next binade (n is even)
        n //= 2
        quantum += 1
    if n == 0:
        return sign
    if n < 1 << mbits:  # subnormal
        return sign | n
    top = n.bit_length() - 1 + quantum
    if top > bias:
        return sign | (((1 << ebits) - 1) << mbits)
    return sign | ((top + bias) << mbits) | (n - (1 << mbits))


def _reference(levels: np.ndarray, qp: int, density: int, fmt: str) -> np.ndarray:
    mbits, ebits, _, utype = FORMATS[fmt]
    m, s = core.qp_to_step(qp, density)
    return np.array([_ref_bits(int(lv) * m, s, mbits, ebits) for lv in levels], dtype=utype)


def _reconstruct_bits(levels: np.ndarray, qp: int, density: int, fmt: str) -> np.ndarray:
    params = core.KernelParams(1, levels.size, qp, density, 4)
    out = core.reconstruct(levels.reshape(1, -1), params, FORMATS[fmt][2], "test")
    assert out.dtype == FORMATS[fmt][2]
    return out.reshape(-1).view(FORMATS[fmt][3])


def _levels(seed: int, n: int, max_abs: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mags = np.unique(np.round(np.exp(rng.uniform(0, np.log(max_abs), n))).astype(np.int64))
    signs = rng.choice([-1, 1], mags.size)
    fixed = [0, 1, -1, 2, -3, max_abs, -max_abs]
    return np.concatenate([fixed, mags * signs]).astype(np.int32)


def _numpy_reference(levels: np.ndarray, qp: int, density: int, dtype: np.dtype) -> np.ndarray:
    """numpy's conversion of the float64 product; level*mantissa < 2^37 and a normal float64
    product make the product exact, so this is one rounding."""
    step = core.step_size(qp, density)
    prod = levels.astype(np.float64) * step
    assert np.all(np.abs(prod[levels != 0]) >= np.finfo(np.float64).tiny)
    with np.errstate(over="ignore"):
        return prod.astype(dtype)


def test_reference_agrees_with_numpy() -> None:
    """The exact reference (used for bfloat16 and the extremes) is itself right where numpy is."""
    lv = _levels(0, 300, MAX_LEVEL)
    for fmt in ("float16", "float32", "float64"):
        mbits, ebits, dtype, utype = FORMATS[fmt]
        for qp in (-120, -60, -28, 0, 40, 300):
            ours = _reference(lv, qp, 2, fmt)
            np.testing.assert_array_equal(ours, _numpy_reference(lv, qp, 2, dtype).view(utype))


@pytest.mark.parametrize("fmt", ["float16", "float32", "float64"])
@pytest.mark.parametrize("density", [0, 2, 6])
def test_reconstruct_equals_numpy_conversion(fmt: str, density: int) -> None:
    _, _, dtype, utype = FORMATS[fmt]
    lv = _levels(density, 2000, MAX_LEVEL)
    per = 1 << density
    # steps from far below the smallest subnormal of float16 to beyond its largest value
    for qp in range(max(-4096, -70 * per), 30 * per, max(1, 7 * per // 4)):
        got = _reconstruct_bits(lv, qp, density, fmt)
        want = _numpy_reference(lv, qp, density, dtype).view(utype)
        np.testing.assert_array_equal(got, want, err_msg=f"{fmt} qp {qp} density {density}")


def _ml_dtypes_bf16_rounds_directly() -> bool:
    """float64 -> bfloat16 in ml_dtypes: one rounding, or two (via float32)?

    1 + 2^-8 + 2^-29 is just above the tie between bfloat16 1 and 1 + 2^-7; float32 rounds it
    to the tie 1 + 2^-8, which then rounds to even (1.0).
    """
    x = np.array([1 + 2.0**-8 + 2.0**-29], dtype=np.float64)
    return int(x.astype(BF16).view(np.uint16)[0]) == 0x3F81


@pytest.mark.parametrize("density", [0, 2, 6])
def test_reconstruct_bfloat16(density: int) -> None:
    lv = _levels(10 + density, 600, MAX_LEVEL)
    per = 1 << density
    direct = _ml_dtypes_bf16_rounds_directly()
    qps = [*range(-150 * per, -110 * per, 5 * per), *range(-40 * per, 40 * per, 4 * per + 1)]
    for qp in (q for q in qps if -4096 <= q <= 4096):
        got = _reconstruct_bits(lv, qp, density, "bfloat16")
        # always against the exact single-rounding reference
        np.testing.assert_array_equal(got, _reference(lv, qp, density, "bfloat16"),
                                      err_msg=f"qp {qp}")
        ml = _numpy_reference(lv, qp, density, BF16).view(np.uint16)
        if direct:
            np.testing.assert_array_equal(got, ml, err_msg=f"qp {qp}")
        else:
            # ml_dtypes goes through float32: it agrees where that step is exact
            m, _ = core.qp_to_step(qp, density)
            exact32 = np.abs(lv.astype(np.int64) * m) < (1 << 24)
            np.testing.assert_array_equal(got[exact32], ml[exact32], err_msg=f"qp {qp}")


def test_reconstruct_bfloat16_rounds_once() -> None:
    """The double-rounding trap: 1 + 2^-8 + 2^-29 must give bfloat16 1 + 2^-7 (0x3F81)."""
    lv = np.array([(1 << 29) + (1 << 21) + 1, -((1 << 29) + (1 << 21) + 1), (1 << 29) + (1 << 21)],
                  dtype=np.int32)
    got = _reconstruct_bits(lv, -29, 0, "bfloat16")  # step 2^-29
    assert got.tolist() == [0x3F81, 0xBF81, 0x3F80]  # the last is an exact tie: to even


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("density", [0, 3, 6])
def test_reconstruct_extremes_against_exact_reference(fmt: str, density: int) -> None:
    """QPs at the ends of the range: overflow to infinity, gradual underflow, signed zeros."""
    lv = _levels(20 + density, 200, MAX_LEVEL)
    per = 1 << density
    # shifts around the float64, float32 and float16 limits, and the ends of the QP range
    ks = (-1110, -1080, -1075, -1060, -1030, -180, -160, -150, -140, -40, -25, -15, 0, 10,
          15, 100, 127, 128, 990, 1000, 1023, 1024)
    qps = sorted({max(-4096, min(4096, k * per + j)) for k in ks for j in (0, per - 1)}
                 | {-4096, 4096})
    for qp in qps:
        got = _reconstruct_bits(lv, qp, density, fmt)
        np.testing.assert_array_equal(got, _reference(lv, qp, density, fmt),
                                      err_msg=f"{fmt} qp {qp}")


def test_reconstruct_zero_signs_and_infinities() -> None:
    lv = np.array([0, 1, -1, MAX_LEVEL, -MAX_LEVEL], dtype=np.int32)
    tiny = _reconstruct_bits(lv, -4096, 0, "float32")
    assert tiny.tolist() == [0, 0, 0x80000000, 0, 0x80000000]  # +0 for level 0, else signed 0
    huge = _reconstruct_bits(lv, 4096, 0, "float16")
    assert huge.tolist() == [0, 0x7C00, 0xFC00, 0x7C00, 0xFC00]  # never NaN


def test_reconstruct_known_answer() -> None:
    """docs/bitstream.md 5.5.2: float32, density 2, qp -28, level 64 -> 0x3F000000 (0.5)."""
    assert _reconstruct_bits(np.array([64], np.int32), -28, 2, "float32").tolist() == [0x3F000000]


def test_reconstruct_rejects_non_float_dtype_and_bad_params() -> None:
    params = core.KernelParams(1, 2, 0, 2, 4)
    with pytest.raises(ValueError):
        core.reconstruct(np.zeros((1, 2), np.int32), params, np.dtype(np.int16), "test")
    with pytest.raises(CoreError):
        core.reconstruct(np.zeros((1, 2), np.int32), core.KernelParams(1, 2, 0, 9, 4),
                         np.dtype(np.float32), "test")
