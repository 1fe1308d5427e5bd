"""Inter prediction in the C core: exact reconstruction of prediction + residual.

The reference says the value prediction + residual = ref * scale / 2^12 +
rindex * step is formed exactly and rounded once (docs/bitstream.md, "Prediction").
These tests check the C result against exact rational arithmetic, including the
cases where the two terms are 2^100 apart (the sticky-bit path), subnormal
references and results, and every output format.
"""

from __future__ import annotations

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nntm import core

FORMATS = {"float32": (23, 8), "float16": (10, 5), "bfloat16": (7, 8), "float64": (52, 11)}
DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16,
          "float64": np.float64}


def exact_bits(value: Fraction, mbits: int, ebits: int) -> int:
    """Round-to-nearest-even of an exact rational to an IEEE format's bit pattern."""
    if value == 0:
        return 0
    sign = (1 << (mbits + ebits)) if value < 0 else 0
    v = abs(value)
    bias = (1 << (ebits - 1)) - 1
    e = v.numerator.bit_length() - v.denominator.bit_length()
    if Fraction(2) ** e > v:
        e -= 1
    subnormal = e < 1 - bias
    lsb = (1 - bias if subnormal else e) - mbits
    q = v / Fraction(2) ** lsb
    qi = q.numerator // q.denominator
    rem = q - qi
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and qi & 1):
        qi += 1
    if subnormal:
        return sign | qi
    if qi >> (mbits + 1):
        qi >>= 1
        e += 1
    if e > bias:
        return sign | (((1 << ebits) - 1) << mbits)
    return sign | ((e + bias) << mbits) | (qi - (1 << mbits))


def value_of(sample: np.generic) -> Fraction:
    return Fraction(float(np.float64(sample)))


def check(ref: np.ndarray, scale: int, levels: np.ndarray, qp: int, density: int,
          out: str) -> None:
    params = core.KernelParams(ref.shape[0], ref.shape[1], qp, density, 4)
    got = core.reconstruct(levels, params, np.dtype(DTYPES[out]), "t",
                           core.Reference(ref, scale))
    m, s = core.qp_to_step(qp, density)
    step = Fraction(m) * Fraction(2) ** s
    bits = got.view({"float64": np.uint64, "float32": np.uint32}.get(out, np.uint16))
    for i in np.ndindex(ref.shape):
        exact = value_of(ref[i]) * scale / 4096 + int(levels[i]) * step
        want = exact_bits(exact, *FORMATS[out])
        assert int(bits[i]) == want, (i, ref[i], scale, int(levels[i]), qp, density, out)


@pytest.mark.parametrize("out", sorted(FORMATS))
def test_prediction_plus_residual_is_rounded_once(out: str) -> None:
    rng = np.random.default_rng(7)
    ref = (rng.normal(0, 0.05, (6, 7))).astype(np.float32)
    ref[0, 0] = 0.0
    ref[0, 1] = -0.0
    levels = rng.integers(-40, 40, ref.shape).astype(np.int32)
    check(ref, 4096, levels, -40, 2, out)
    check(ref, 4071, levels, -44, 3, out)
    check(ref, -9000, levels, -20, 0, out)


@settings(max_examples=60, deadline=None)
@given(
    ref_exp=st.integers(-149, 100),
    step_qp=st.integers(-700, 160),
    density=st.integers(0, 6),
    scale=st.integers(-65535, 65535),
    seed=st.integers(0, 2**31 - 1),
    ref_dtype=st.sampled_from(["float32", "float16", "bfloat16"]),
    out=st.sampled_from(sorted(FORMATS)),
)
def test_exact_sum_over_far_apart_exponents(ref_exp: int, step_qp: int, density: int,
                                            scale: int, seed: int, ref_dtype: str,
                                            out: str) -> None:
    rng = np.random.default_rng(seed)
    mags = np.ldexp(rng.uniform(0.5, 1.0, (3, 4)), ref_exp) * rng.choice([-1, 1], (3, 4))
    with np.errstate(over="ignore", under="ignore"):
        ref = mags.astype(DTYPES[ref_dtype])
    ref = np.where(np.isfinite(ref.astype(np.float64)), ref, ref.dtype.type(1.0))
    lv = rng.integers(-3, 4, (3, 4)).astype(np.int32)
    lv[0, 0] = int(rng.integers(-(2**30) + 1, 2**30))
    check(ref, scale, lv, step_qp, density, out)


def test_subnormal_reference_samples() -> None:
    ref = np.array([[1e-45, -3e-45, 1.1754942e-38, -1.1754942e-38]], dtype=np.float32)
    lv = np.array([[0, 1, -1, 5]], dtype=np.int32)
    for qp in (-600, -596, -560, -520):
        check(ref, 4096, lv, qp, 2, "float32")
        check(ref, 3, lv, qp, 0, "float64")


def test_prediction_from_nonfinite_reference_is_refused() -> None:
    ref = np.array([[1.0, np.inf]], dtype=np.float32)
    params = core.KernelParams(1, 2, -8, 2, 4)
    with pytest.raises(core.CoreError, match="NaN or infinite"):
        core.reconstruct(np.zeros((1, 2), np.int32), params, np.dtype(np.float32), "t",
                         core.Reference(ref))
    with pytest.raises(core.CoreError, match="NaN or infinite"):
        core.encode_kernel(np.zeros((1, 2), np.float32), params, np.dtype(np.float32), True,
                           0.1, "t", ref=core.Reference(ref))


def test_reference_arguments_are_checked() -> None:
    params = core.KernelParams(2, 2, -8, 2, 4)
    w = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match="dtype float64"):
        core.encode_kernel(w, params, np.dtype(np.float32), True, 0.1, "t",
                           ref=core.Reference(np.zeros((2, 2), np.float64)))
    with pytest.raises(ValueError, match="shape"):
        core.encode_kernel(w, params, np.dtype(np.float32), True, 0.1, "t",
                           ref=core.Reference(np.zeros((2, 3), np.float32)))
    with pytest.raises(ValueError, match="scale"):
        core.encode_kernel(w, params, np.dtype(np.float32), True, 0.1, "t",
                           ref=core.Reference(np.zeros((2, 2), np.float32), 70000))


@pytest.mark.parametrize("tree", [False, True])
@pytest.mark.parametrize("dq", [False, True])
def test_predicted_kernel_round_trip_and_gain(tree: bool, dq: bool) -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(0, 0.05, (48, 80)).astype(np.float32)
    new = ref * np.float32(0.997) + rng.normal(0, 0.001, ref.shape).astype(np.float32)
    new[:16, :32] = ref[:16, :32]  # an unchanged block
    tp = core.TreeParams(True, 4, 2, 2, 1, 0x3C, True, False) if tree else core.TreeParams()
    params = core.KernelParams(48, 80, -40, 2, 4, tp, dq)
    search = core.SearchParams(3, True, (0,))
    r = core.Reference(ref, round(0.997 * 4096))
    inter = core.encode_kernel(new, params, np.dtype(np.float32), True, 0.1, "t", search, ref=r)
    intra = core.encode_kernel(new, params, np.dtype(np.float32), True, 0.1, "t", search)
    dec = core.decode_kernel(inter.payload, params, np.dtype(np.float32), "t", ref=r)
    assert np.array_equal(dec.recon.view(np.uint32), inter.recon.view(np.uint32))
    assert np.array_equal(dec.levels, inter.levels)
    err_inter = float(np.sum((inter.recon.astype(np.float64) - new) ** 2))
    err_intra = float(np.sum((intra.recon.astype(np.float64) - new) ** 2))
    assert len(inter.payload) < 0.5 * len(intra.payload)
    assert err_inter < 1.5 * err_intra
    # without the reference the same payload decodes to something else
    other = core.decode_kernel(inter.payload, params, np.dtype(np.float32), "t")
    assert not np.array_equal(other.recon, inter.recon)


def test_a_tiny_residual_breaks_a_tie_of_the_prediction() -> None:
    # 1 + 2^-11 is a tie between two float16 values; a residual of +-2^-80 decides it
    ref = np.array([[1 + 2.0**-11, 1 + 2.0**-11, 1 + 3 * 2.0**-11]], dtype=np.float32)
    lv = np.array([[1, -1, -1]], dtype=np.int32)
    qp = -80 * 4  # step 2^-80 at QPDensity 2
    check(ref, 4096, lv, qp, 2, "float16")
    got = core.reconstruct(lv, core.KernelParams(1, 3, qp, 2, 4), np.dtype(np.float16), "t",
                           core.Reference(ref))
    assert got.tolist() == [[1 + 2.0**-10, 1.0, 1 + 2.0**-10]]
