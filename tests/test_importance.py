"""Cross-tensor QP allocation from importance maps (nntm.importance.qp_offsets)."""

from __future__ import annotations

import math

import nntm
import numpy as np
import pytest
from nntm import importance as imp

CFG = "cfg/encoder_output_aware.cfg"


def _maps() -> dict[str, np.ndarray]:
    # mean importances 1 and 16: geometric mean 4
    return {"a": np.ones(8), "b": np.full(8, 16.0)}


def test_offsets_follow_the_square_root_rule() -> None:
    # step ~ 1/sqrt(importance): 4x the reference -> half the step -> -2**density QPs
    assert imp.qp_offsets(_maps(), 1.0, 2) == {"a": 4, "b": -4}
    assert imp.qp_offsets(_maps(), 0.5, 2) == {"a": 2, "b": -2}
    assert imp.qp_offsets(_maps(), 0.0, 2) == {}


def test_offsets_are_clamped() -> None:
    maps = {"a": np.ones(4), "b": np.full(4, 2.0**40)}
    assert imp.qp_offsets(maps, 1.0, 2) == {"a": 16, "b": -16}  # default: four doublings
    assert imp.qp_offsets(maps, 1.0, 2, max_offset=5) == {"a": 5, "b": -5}


def test_step_cap_binds_only_at_coarse_base_qps() -> None:
    rms = {"a": 0.05, "b": 0.05}
    # a's offset +4; its step may not exceed 0.25 * 0.05 = 0.0125, QP <= floor(4 log2 0.0125) = -26
    fine = imp.qp_offsets(_maps(), 1.0, 2, max_step=0.25, base_qp=-40, rms=rms)
    assert fine == {"a": 4, "b": -4}
    coarse = imp.qp_offsets(_maps(), 1.0, 2, max_step=0.25, base_qp=-28, rms=rms)
    assert coarse == {"a": 2, "b": -4}
    for base in range(-48, -10):
        off = imp.qp_offsets(_maps(), 1.0, 2, max_step=0.25, base_qp=base, rms=rms)
        # a demoted tensor keeps its step <= 0.25 * rms, or the base QP when that is coarser
        assert 2.0 ** ((base + off["a"]) / 4) <= 0.25 * 0.05 * (1 + 1e-12) or off["a"] == 0
        assert 0 <= off["a"] <= 4 and off["b"] == -4  # promotions are left alone
    # no cap without the RMS or the base QP
    assert imp.qp_offsets(_maps(), 1.0, 2, max_step=0.25, base_qp=-28) == {"a": 4, "b": -4}


def test_weight_rms() -> None:
    assert imp.weight_rms(np.array([3.0, -4.0], dtype=np.float32)) == pytest.approx(
        math.sqrt(12.5))
    assert imp.weight_rms(np.zeros((0, 3))) == 0.0


def _model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {"big": (0.05 * rng.standard_normal((64, 96))).astype(np.float32),
            "small": (0.05 * rng.standard_normal((32, 48))).astype(np.float32)}


def _qps(qp: int, **options: object) -> tuple[dict[str, int], bytes]:
    tensors = _model()
    maps = {"big": np.ones(96, np.float32), "small": np.full(48, 256.0, np.float32)}
    cfg = nntm.Config.from_files([CFG], overrides={"QP": qp, "ImportanceFile": "", **options})
    res = nntm.encode_with_recon(tensors, cfg, importance=maps)
    dec = nntm.decode(res.data)
    for name in tensors:
        assert dec[name].tobytes() == res.recon[name].tobytes()
    return {s.name: s.qp for s in res.stats}, res.data


def test_encoder_applies_the_cap_and_the_clamp() -> None:
    # scale 0.75: big +6, small -6 (map means 1 and 256, reference 16)
    qps, data = _qps(-36)
    assert qps == {"big": -30, "small": -42}
    assert _qps(-36, ImportanceMaxStep=0.0, ImportanceQPMaxOffset=0)[1] == data
    assert _qps(-36, ImportanceQPMaxOffset=3)[0] == {"big": -33, "small": -39}
    # cap 0.25 * rms(big) ~ 0.0125: QP <= -26 binds at base -30 (big would be -24), not at -36
    assert _qps(-36, ImportanceMaxStep=0.25)[1] == data
    capped, _ = _qps(-30, ImportanceMaxStep=0.25)
    rms = imp.weight_rms(_model()["big"])
    assert capped["big"] == math.floor(4 * math.log2(0.25 * rms) + 1e-9) == -26
    assert capped["small"] == -36
    # at base -24 the cap is below the base QP: big keeps the base QP, small its promotion
    assert _qps(-24, ImportanceMaxStep=0.25)[0] == {"big": -24, "small": -30}


def test_floor_raises_the_low_values_and_keeps_mean_one() -> None:
    v = np.array([0.0, 0.0, 1.0, 3.0])  # mean 1
    np.testing.assert_allclose(imp.normalized(v), v)
    f = imp.normalized(v, 0.5)  # [0.5, 0.5, 1, 3] / 1.25
    np.testing.assert_allclose(f, np.array([0.5, 0.5, 1.0, 3.0]) / 1.25)
    assert float(np.mean(f)) == pytest.approx(1.0)
    np.testing.assert_allclose(imp.normalized(np.zeros(3), 0.5), np.ones(3))
    np.testing.assert_allclose(imp.normalized(v * 7.0, 0.0), v)


def test_floor_keeps_weights_the_map_would_drop() -> None:
    rng = np.random.default_rng(2)
    tensors = {"w": (0.05 * rng.standard_normal((32, 64))).astype(np.float32)}
    imap = np.ones(64, np.float32)
    imap[:32] = 0.0  # half the input channels do not matter to the map
    out = {}
    for floor in (0.0, 0.3):
        cfg = nntm.Config.from_files([CFG], overrides={"QP": -28, "ImportanceFile": "",
                                                       "ImportanceFloor": floor})
        res = nntm.encode_with_recon(tensors, cfg, importance={"w": imap})
        assert nntm.decode(res.data)["w"].tobytes() == res.recon["w"].tobytes()
        out[floor] = res.recon["w"][:, :32]
    # weight 0: RDOQ zeroes (nearly) all of them; with the floor most are kept
    assert np.count_nonzero(out[0.0]) < 0.1 * out[0.0].size
    assert np.count_nonzero(out[0.3]) > 0.5 * out[0.3].size
