"""LambdaGainFloor: the encoder codes a tensor again with a smaller lambda where the rate term
shrinks its reconstruction toward zero (gain <r,w>/<w,w> below 1 - floor)."""

from __future__ import annotations

import numpy as np
import pytest
from nntm import Config, codec, decode, encode_with_recon
from nntm.errors import ConfigError

ROOT_CFG = "cfg/encoder_default.cfg"


def _model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    # small weights against a coarse step: RDOQ zeroes many of them and rounds others down
    w = (rng.laplace(size=(64, 72)) * 0.01).astype(np.float32)
    b = (rng.standard_normal(64) * 0.01).astype(np.float32)
    return {"w": w, "b": b}


def _encode(floor: float, qp: int = -20) -> tuple[bytes, dict[str, np.ndarray]]:
    cfg = Config.from_files([ROOT_CFG], overrides={"QP": qp, "LambdaGainFloor": floor,
                                                   "GainCompensation": 0,
                                                   "IntegrityHash": 0})
    res = encode_with_recon(_model(), cfg)
    return bytes(res.data), dict(res.recon)


def test_reconstruction_gain() -> None:
    w = np.array([[1.0, -2.0], [3.0, 0.5]])
    assert codec.reconstruction_gain(w, w) == pytest.approx(1.0)
    assert codec.reconstruction_gain(w, 0.9 * w) == pytest.approx(0.9)
    assert codec.reconstruction_gain(np.zeros(4), np.ones(4)) == 1.0


def test_floor_lifts_the_gain_of_a_shrunk_tensor() -> None:
    model = _model()
    _, recon_off = _encode(0.0)
    gain_off = codec.reconstruction_gain(model["w"], recon_off["w"])
    assert gain_off < 0.99, "the case must shrink without the floor"
    data, recon_on = _encode(0.002)
    gain_on = codec.reconstruction_gain(model["w"], recon_on["w"])
    assert gain_on > gain_off
    assert gain_on >= 0.998 or gain_on == pytest.approx(
        codec.reconstruction_gain(model["w"], _encode_lambda0()["w"]))
    # encoder-only: the stream decodes to the encoder's reconstruction
    decoded = decode(data)
    np.testing.assert_array_equal(decoded["w"], recon_on["w"])
    # 1-D tensors keep their lambda (one row): the bias is coded as without the floor
    np.testing.assert_array_equal(recon_on["b"], recon_off["b"])


def _encode_lambda0() -> dict[str, np.ndarray]:
    cfg = Config.from_files([ROOT_CFG], overrides={"QP": -20, "LambdaScale": 0.0,
                                                   "GainCompensation": 0,
                                                   "IntegrityHash": 0})
    return dict(encode_with_recon(_model(), cfg).recon)


def test_floor_off_by_default_and_no_change_where_the_gain_is_kept() -> None:
    assert float(Config.from_files(())["LambdaGainFloor"]) == 0.0
    # a floor the tensor already meets changes no byte
    model = _model()
    off, recon = _encode(0.0, qp=-40)
    gain = codec.reconstruction_gain(model["w"], recon["w"])
    assert gain < 1.0
    on, _ = _encode(min(0.5, 2 * (1.0 - gain)), qp=-40)
    assert on == off


@pytest.mark.parametrize("bad", ["-0.1", "1.5", "x", "nan"])
def test_floor_range(bad: str) -> None:
    with pytest.raises(ConfigError, match="LambdaGainFloor"):
        Config.from_files((), {"LambdaGainFloor": bad})


def test_reconstruction_gain_of_a_sample() -> None:
    """With a basis (the whole tensor's energy, its elements over the sample's) the gain is
    the whole tensor's estimated from a sample: the sample's shrinkage scaled by the
    elements, over the whole energy, which holds the outliers the sample misses."""
    rng = np.random.default_rng(3)
    w = rng.laplace(0, 0.01, (256, 64))
    w[1::8, :4] = 0.5  # outliers in rows the sample (every 8th row from 0) misses
    step = 0.02
    r = np.where(np.abs(w) > step, np.round(w / step) * step, 0.0)  # a dead zone shrinks
    whole = codec.reconstruction_gain(w, r)
    sample, rec = w[::8], r[::8]
    own = codec.reconstruction_gain(sample, rec)
    energy = float((w * w).sum())
    est = codec.reconstruction_gain(sample, rec, (energy, w.size / sample.size))
    assert own < whole - 0.05, "the sample alone must see more shrinkage"
    assert abs(est - whole) < abs(own - whole) / 4
    # the whole tensor as its own sample: the plain gain
    assert codec.reconstruction_gain(w, r, (energy, 1.0)) == pytest.approx(whole)
    assert codec.reconstruction_gain(sample, rec, (0.0, 8.0)) == 1.0  # an all-zero tensor
