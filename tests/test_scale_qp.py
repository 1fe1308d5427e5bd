"""ScaleQPExponent (a tensor's step follows its RMS^e) and GainCompensation (a tensor coded
again from w / g where the rate term shrinks it): encoder-only, each tensor's QP signalled."""

from __future__ import annotations

import math

import numpy as np
import pytest
from nntm import Config, codec, core, decode, encode_with_recon
from nntm.errors import ConfigError

ROOT_CFG = "cfg/encoder_default.cfg"


def _model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    return {
        "big": (rng.standard_normal((64, 64)) * 0.08).astype(np.float32),
        "small": (rng.standard_normal((32, 32)) * 0.005).astype(np.float32),  # 16x smaller
        "bias": (rng.standard_normal(64) * 0.01).astype(np.float32),
        "zero": np.zeros((8, 8), np.float32),
    }


def _encode(qp: int = -28, **opts: object) -> tuple[bytes, dict[str, np.ndarray], dict]:
    # the default cfg's floor and compensation off unless a test sets them
    base = {"GainCompensation": 0, "ScaleQPExponent": 0.0, "ScaleQPMode": "both",
            "ScaleQPSlack": 0.0}
    cfg = Config.from_files([ROOT_CFG], overrides={"QP": qp, "IntegrityHash": 0,
                                                   **base, **opts})
    res = encode_with_recon(_model(), cfg)
    return bytes(res.data), dict(res.recon), {s.name: s for s in res.stats}


def _snr(w: np.ndarray, r: np.ndarray) -> float:
    w = w.astype(np.float64)
    return 10 * math.log10(float((w * w).sum()) / float(((w - r) ** 2).sum()))


def test_scale_qp_offsets() -> None:
    cfg = Config.from_files((), {"ScaleQPExponent": 1.0, "QPDensity": 2})
    # element-weighted geometric mean of 1 (n=3) and 1/16 (n=1): 2^-1; log2 offsets +1, -3
    out = codec.scale_qp({"a": (3, 1.0), "b": (1, 1.0 / 16), "z": (5, 0.0)}, cfg)
    assert out == {"a": 4, "b": -12}
    half = Config.from_files((), {"ScaleQPExponent": 0.5, "QPDensity": 2})
    assert codec.scale_qp({"a": (3, 1.0), "b": (1, 1.0 / 16)}, half) == {"a": 2, "b": -6}
    capped = Config.from_files((), {"ScaleQPExponent": 1.0, "ScaleQPMaxOffset": 5})
    assert codec.scale_qp({"a": (3, 1.0), "b": (1, 1.0 / 16)}, capped) == {"a": 4, "b": -5}
    off = Config.from_files(())
    assert float(off["ScaleQPExponent"]) == 0.0
    assert codec.scale_qp({"a": (3, 1.0), "b": (1, 1.0 / 16)}, off) == {}


def test_finer_mode_moves_only_tensors_below_the_median() -> None:
    # elements 3 @ 1, 1 @ 1/16, 1 @ 1/2: the element-weighted median is 1
    rms = {"a": (3, 1.0), "b": (1, 1.0 / 16), "c": (1, 0.5)}
    finer = Config.from_files((), {"ScaleQPExponent": 1.0, "ScaleQPMode": "finer"})
    assert codec.scale_qp(rms, finer) == {"a": 0, "b": -16, "c": -4}
    # slack 1: a tensor moves only by how much it lies more than one doubling below
    slack = Config.from_files((), {"ScaleQPExponent": 1.0, "ScaleQPMode": "finer",
                                   "ScaleQPSlack": 1.0})
    assert codec.scale_qp(rms, slack) == {"a": 0, "b": -12, "c": 0}
    # the median, not the mean: a large tensor above it does not move anyone
    big = {"a": (3, 1.0), "b": (1, 1.0 / 16), "huge": (1, 64.0)}
    assert codec.scale_qp(big, finer) == {"a": 0, "b": -16, "huge": 0}


def test_chunked_rms() -> None:
    a = np.arange(-7, 50, dtype=np.float32).reshape(3, 19)
    assert codec.chunked_rms(a, chunk=5) == pytest.approx(
        float(np.sqrt(np.mean(a.astype(np.float64) ** 2))))
    assert codec.chunked_rms(np.zeros((0, 3), np.float32)) == 0.0


def test_exponent_one_evens_the_tensors_snr() -> None:
    model = _model()
    _, rec0, st0 = _encode()
    data, rec1, st1 = _encode(ScaleQPExponent=1.0)
    # the shipped default: a floor 2x below the median; the small tensor moves 12 QP finer
    _, _, st2 = _encode(ScaleQPExponent=1.0, ScaleQPMode="finer", ScaleQPSlack=1.0)
    assert st2["big"].qp == st0["big"].qp and st0["small"].qp - st2["small"].qp == 12
    gap0 = _snr(model["big"], rec0["big"]) - _snr(model["small"], rec0["small"])
    gap1 = _snr(model["big"], rec1["big"]) - _snr(model["small"], rec1["small"])
    assert gap0 > 18.0, "one step: the 16x smaller tensor has about 24 dB less SNR"
    assert abs(gap1) < 3.0
    # the small tensor is 16 QP (4 doublings) finer than the big one; 1-D and zero tensors
    # keep the QPs they had
    assert st1["big"].qp - st1["small"].qp == 16
    assert st1["bias"].qp == st0["bias"].qp and st1["zero"].qp == st0["zero"].qp
    # encoder-only: the stream decodes to the encoder's reconstruction
    decoded = decode(data)
    for name, rec in rec1.items():
        np.testing.assert_array_equal(decoded[name], rec)


def test_gain_compensation_keeps_the_scale() -> None:
    model = _model()
    _, rec0, _ = _encode(qp=-16)
    g0 = codec.reconstruction_gain(model["big"], rec0["big"])
    assert g0 < 0.99, "the case must shrink without compensation"
    data, rec1, _ = _encode(qp=-16, GainCompensation=2)
    g1 = codec.reconstruction_gain(model["big"], rec1["big"])
    assert abs(1.0 - g1) < abs(1.0 - g0) / 3
    decoded = decode(data)
    np.testing.assert_array_equal(decoded["big"], rec1["big"])
    np.testing.assert_array_equal(rec1["bias"], rec0["bias"])  # 1-D: one row, as before


@pytest.mark.parametrize(("key", "bad"), [("ScaleQPExponent", "-0.1"),
                                          ("ScaleQPExponent", "1.5"),
                                          ("ScaleQPMaxOffset", "-1"),
                                          ("ScaleQPMode", "up"),
                                          ("ScaleQPSlack", "-1"),
                                          ("GainCompensation", "5")])
def test_ranges(key: str, bad: str) -> None:
    with pytest.raises(ConfigError, match=key):
        Config.from_files((), {key: bad})


def test_gain_scale_fixed_reproduces_the_search() -> None:
    """TensorStats.gain_scale is the factor GainCompensation coded a tensor with; passing it
    back (``gain_scale``, rate control's half and quarter samples) codes the same bytes
    without the search, and a factor of 1 codes what GainCompensation 0 codes."""
    model = _model()
    cfg = Config.from_files([ROOT_CFG], overrides={
        "QP": -16, "IntegrityHash": 0, "GainCompensation": 1, "ScaleQPExponent": 0.0})
    searched = encode_with_recon(model, cfg)
    stats = {s.name: s for s in searched.stats}
    assert stats["big"].gain_scale > 1.01, "the case must shrink and be compensated"
    assert stats["bias"].gain_scale == 1.0 and stats["zero"].gain_scale == 1.0  # 1-D, zero
    fixed = encode_with_recon(model, cfg, gain_scale={"big": stats["big"].gain_scale})
    assert fixed.data == searched.data
    plain = encode_with_recon(model, cfg.replace(GainCompensation=0))
    assert {s.name: s.gain_scale for s in plain.stats}["big"] == 1.0
    one = encode_with_recon(model, cfg, gain_scale={"big": 1.0})
    assert one.data != searched.data
    np.testing.assert_array_equal(one.recon["big"], plain.recon["big"])
    assert one.data == plain.data


def test_gain_scale_kept_when_the_gain_floor_keeps_the_compensated_result() -> None:
    """LambdaGainFloor re-codes a tensor from its own weights only while the gain stays below
    the floor: a compensated result above it keeps its factor in TensorStats.gain_scale,
    and passing that factor back codes the same bytes."""
    model = _model()
    cfg = Config.from_files([ROOT_CFG], overrides={
        "QP": -16, "IntegrityHash": 0, "GainCompensation": 1, "ScaleQPExponent": 0.0,
        "LambdaGainFloor": 0.5})
    res = encode_with_recon(model, cfg)
    scale = {s.name: s.gain_scale for s in res.stats}["big"]
    assert scale > 1.01
    assert encode_with_recon(model, cfg, gain_scale={"big": scale}).data == res.data


def test_gain_scaling_and_range_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """GainCompensation's gain, its scaled copy of the kernel and the largest |target| are
    computed a block of ENERGY_BLOCK elements at a time (no whole float64 copy of a large
    tensor): the scaled copy and the range are exact, the gain equal to rounding."""
    rng = np.random.default_rng(8)
    kernel = rng.normal(0, 0.05, (97, 61)).astype(np.float32)
    recon = (kernel * 0.97 + rng.normal(0, 0.001, kernel.shape)).astype(np.float32)
    ref = core.Reference(rng.normal(0, 0.05, kernel.shape).astype(np.float32), 3000)
    whole = (codec.reconstruction_gain(kernel, recon), codec._scaled(kernel, 1.0123),
             codec._target_max(kernel, None), codec._target_max(kernel, ref))
    w64 = kernel.astype(np.float64).ravel()
    assert whole[0] == pytest.approx(float(recon.astype(np.float64).ravel() @ w64)
                                     / float(w64 @ w64), rel=1e-12)
    assert np.array_equal(whole[1], (kernel.astype(np.float64) * 1.0123).astype(np.float32))
    assert whole[2] == float(np.max(np.abs(kernel.astype(np.float64))))
    exact_ref = np.max(np.abs(kernel.astype(np.float64)
                              - ref.samples.astype(np.float64) * (3000 / core.PRED_SCALE_ONE)))
    assert whole[3] == float(exact_ref)
    monkeypatch.setattr(codec, "ENERGY_BLOCK", 1000)  # 6 blocks of the 5917 elements
    blocked = (codec.reconstruction_gain(kernel, recon), codec._scaled(kernel, 1.0123),
               codec._target_max(kernel, None), codec._target_max(kernel, ref))
    assert blocked[0] == pytest.approx(whole[0], rel=1e-12) and blocked[0] != 1.0
    assert np.array_equal(blocked[1], whole[1]) and blocked[1].dtype == np.float32
    assert blocked[2:] == whole[2:]
