"""QP1DMode relative (nntm.precision): the 1-D step follows the tensor's scale and role."""

from __future__ import annotations

import math

import numpy as np
import pytest
from nntm import codec, precision, roles
from nntm.config import Config
from nntm.core import step_size

RNG = np.random.default_rng(15)


def _cfg(**kw) -> Config:
    base = dict(QP=-32, QPDensity=2, QP1DMode="relative", QP1DRelStats=-40, QP1DRelOffset=0,
                QPOffset1D=-4, QP1D=-64, DepQuant=False, LosslessMaxElements=1)
    base.update(kw)
    return Config.defaults().replace(**base)


def _bn_model(scale: float, prefix: str = "bn", sep: str = ".") -> dict[str, np.ndarray]:
    """A conv + BatchNorm, every 1-D tensor of magnitude ``scale`` (variances positive)."""
    n = 64
    return {
        f"conv{sep}weight": (RNG.standard_normal((n, 8, 3, 3)) * 0.05).astype(np.float32),
        f"conv{sep}bias": (RNG.standard_normal(n) * scale).astype(np.float32),
        f"{prefix}{sep}weight": (1 + 0.2 * RNG.standard_normal(n)).astype(np.float32) * scale,
        f"{prefix}{sep}bias": (RNG.standard_normal(n) * scale).astype(np.float32),
        f"{prefix}{sep}running_mean": (RNG.standard_normal(n) * scale).astype(np.float32),
        f"{prefix}{sep}running_var": (np.exp(2 * RNG.standard_normal(n)) * scale
                                      ).astype(np.float32),
        f"{prefix}{sep}num_batches_tracked": np.array(100, dtype=np.int64),
    }


def test_scale_is_rms_of_nonzero_values():
    assert precision.tensor_scale(np.array([3.0, -4.0, 0.0, 0.0])) == pytest.approx(
        math.sqrt(12.5))
    assert precision.tensor_scale(np.zeros(5)) == 0.0


@pytest.mark.parametrize("k", [-12, -3, 0, 5, 13])
def test_qp_moves_with_the_scale(k):
    """Scaling a tensor by 2^k moves its QP by k * 2^QPDensity: the same relative step."""
    x = RNG.standard_normal(100).astype(np.float32)
    cfg = _cfg()
    for role in (roles.Role.BIAS, roles.Role.BN_VAR):
        assert (precision.relative_qp(cfg, x * 2.0 ** k, role)
                == precision.relative_qp(cfg, x, role) + 4 * k)


def test_step_is_within_half_a_qp_of_the_target():
    cfg = _cfg()
    for scale in (1e-6, 3e-3, 0.7, 42.0, 9e3):
        x = (RNG.standard_normal(50) * scale).astype(np.float32)
        qp = precision.relative_qp(cfg, x, roles.Role.BIAS)
        target = precision.tensor_scale(x) * 2.0 ** ((-32 + 0) / 4)
        # half a QP (1/8 of a doubling) plus the step table's own distance from 2^(QP/4)
        grid = abs(math.log2(step_size(qp, 2)) - qp / 4)
        assert abs(math.log2(step_size(qp, 2) / target)) <= 0.125 + grid + 1e-9


def test_stats_roles_ignore_qp_the_others_follow_it():
    x = np.abs(RNG.standard_normal(30)).astype(np.float32) + 0.1
    for qp in (-20, -40):
        cfg = _cfg(QP=qp)
        for role in roles.STATS_ROLES:
            assert precision.relative_qp(cfg, x, role) == precision.relative_qp(
                _cfg(QP=-28), x, role)  # q = QP1DRelStats (-40) down to QP -40
        assert (precision.relative_qp(cfg, x, roles.Role.NORM_SCALE)
                - precision.relative_qp(_cfg(QP=-44), x, roles.Role.NORM_SCALE)) == qp + 44
    # at finer QPs the statistics follow QP (QP + QP1DRelStatsOffset)
    assert (precision.relative_qp(_cfg(QP=-60), x, roles.Role.BN_VAR)
            == precision.relative_qp(_cfg(QP=-44), x, roles.Role.BN_VAR) - 16)
    assert (precision.relative_qp(_cfg(QP=-60, QP1DRelStatsOffset=-4), x, roles.Role.BN_VAR)
            == precision.relative_qp(_cfg(QP=-60), x, roles.Role.BN_VAR) - 4)
    assert (precision.relative_qp(_cfg(QP1DRelStats=-48), x, roles.Role.BN_VAR)
            == precision.relative_qp(_cfg(), x, roles.Role.BN_VAR) - 8)
    assert (precision.relative_qp(_cfg(QP1DRelOffset=6), x, roles.Role.BIAS)
            == precision.relative_qp(_cfg(), x, roles.Role.BIAS) + 6)


def test_all_zero_tensor_takes_the_offset_qp():
    assert precision.relative_qp(_cfg(), np.zeros(8, np.float32), roles.Role.BIAS) == -36


def test_tensor_qp_hook_only_in_relative_mode():
    x = (RNG.standard_normal(20) * 1e3).astype(np.float32)
    assert codec.tensor_qp(_cfg(QP1DMode="stats"), 1, False, roles.Role.BN_VAR, x) == -64
    assert codec.tensor_qp(_cfg(QP1DMode="offset"), 1, False, roles.Role.BIAS, x) == -36
    assert codec.tensor_qp(_cfg(), 2, False, roles.Role.LINEAR, x) == -32
    rel = codec.tensor_qp(_cfg(), 1, False, roles.Role.BN_VAR, x)
    assert rel == precision.relative_qp(_cfg(), x, roles.Role.BN_VAR) and rel > -64
    # a predicted 1-D tensor (a residual) keeps QP + QPOffset1D under PredQP1DMode offset
    assert codec.tensor_qp(_cfg(PredQP1DMode="offset"), 1, True, roles.Role.BN_VAR, x) == -36


def _one_d_snrs(result: codec.EncodeResult) -> dict[str, float]:
    return {s.name: s.snr_db for s in result.stats if len(s.shape) == 1}


UNIT_MODEL = None


def _scaled(scale: float) -> dict[str, np.ndarray]:
    """One BatchNorm model with every 1-D tensor times ``scale`` (the same draw each time)."""
    global UNIT_MODEL
    if UNIT_MODEL is None:
        UNIT_MODEL = _bn_model(1.0)
    return {k: (v * np.float32(scale) if v.ndim == 1 else v) for k, v in UNIT_MODEL.items()}


@pytest.mark.parametrize("scale", [2.0 ** -14, 1.0, 2.0 ** 14])
def test_relative_snr_does_not_depend_on_the_value_range(scale):
    """Every 1-D tensor keeps its relative precision at any magnitude (1e-4 .. 1.6e4); the
    absolute offset rule loses the small ones and the fixed fine QP1D cannot reach the
    large ones."""
    model = _scaled(scale)
    rel = _one_d_snrs(codec.encode_with_recon(model, _cfg()))
    assert all(snr > 35.0 for snr in rel.values()), rel
    one = _one_d_snrs(codec.encode_with_recon(_scaled(1.0), _cfg()))
    assert max(abs(rel[k] - one[k]) for k in rel) < 0.5
    off = _one_d_snrs(codec.encode_with_recon(model, _cfg(QP1DMode="offset")))
    if scale < 1e-3:
        assert min(off.values()) < 10.0  # step 2^-9 against values of 1e-4: wiped out
    fixed = codec.encode_with_recon(model, _cfg(QP1DMode="fixed"))
    if scale > 1e3:
        assert any("out of the coder's range" in s.note for s in fixed.stats)


def test_same_qps_and_bits_under_any_naming():
    """Roles, not names: an export-style naming gets the same QPs and the same bytes."""
    model = _bn_model(1.0)
    other = {k.replace("conv.", "net/op_1.w_").replace("bn.", "net/op_2.w_")
             .replace("running_mean", "m").replace("running_var", "v"): v
             for k, v in model.items()}
    # keys of the second naming carry no running_var / running_mean: the BatchNorm is found
    # by its values, so its mean and variance get the
    # same QPs and bytes as under the state-dict names
    ra, rb = codec.encode_with_recon(model, _cfg()), codec.encode_with_recon(other, _cfg())
    a, b = {s.name: s for s in ra.stats}, {s.name: s for s in rb.stats}
    pairs = dict(zip(model, other, strict=True))
    for key in ("bn.running_mean", "bn.running_var", "conv.weight", "conv.bias"):
        assert a[key].qp == b[pairs[key]].qp, key  # bits differ only by the names' bytes
        np.testing.assert_array_equal(ra.recon[key], rb.recon[pairs[key]])
    stats_labels = {r.label for r in roles.STATS_ROLES}
    assert a["bn.running_var"].role == "bn-var" and b[pairs["bn.running_var"]].role in stats_labels


def test_stream_decodes_to_the_reconstruction():
    model = _bn_model(3e3)
    res = codec.encode_with_recon(model, _cfg())
    dec = codec.decode(res.data)
    for k, v in res.recon.items():
        np.testing.assert_array_equal(dec[k], v)
    # the variances reach QPs above zero (values of 3e3): signalled like any QP
    assert max(s.qp for s in res.stats if s.qp is not None) > 0


def test_large_1d_tensor_at_qp1d_minus_64_falls_back_and_relative_needs_no_fallback():
    """Issue #15 item 4: variances of 1 .. 1e4 with two of 2e4 and 3e4 (step 2^-16 holds
    |w| < 16384) at QP1D -64 do not fit the coder's level range: the encoder codes the tensor
    at the finest QP that fits (or exactly) and says so; QP1DMode relative chooses a QP that
    fits in the first place."""
    x = np.concatenate([np.linspace(1.0, 1e4, 254), [2e4, 3e4]]).astype(np.float32)
    model = {"w": (RNG.standard_normal((16, 16)) * 0.05).astype(np.float32), "v": x}
    fixed = codec.encode_with_recon(model, _cfg(QP1DMode="fixed", QP1D=-64))
    stat = {s.name: s for s in fixed.stats}["v"]
    assert "out of the coder's range at QP -64" in stat.note
    assert stat.qp is None or stat.qp > -64
    np.testing.assert_array_equal(codec.decode(fixed.data)["v"], fixed.recon["v"])
    rel = {s.name: s for s in codec.encode_with_recon(model, _cfg()).stats}["v"]
    assert rel.note == "" and rel.qp is not None and rel.snr_db > 40.0


def test_variance_scale_is_a_low_quantile():
    """A variance is divided by: its step follows its small values, not its rms."""
    var = np.geomspace(1e-2, 1e3, 100).astype(np.float32)
    cfg = _cfg(QP1DRelVarQuantile=0.1)
    assert precision.role_scale(cfg, var, roles.Role.BN_VAR) == pytest.approx(
        float(np.quantile(var.astype(np.float64), 0.1)))
    assert precision.role_scale(cfg, var, roles.Role.BN_PARAM) < 0.1  # variance-like values
    assert precision.role_scale(cfg, var, roles.Role.BIAS) == pytest.approx(
        precision.tensor_scale(var))
    assert precision.role_scale(_cfg(QP1DRelVarQuantile=0.0), var, roles.Role.BN_VAR) == (
        pytest.approx(precision.tensor_scale(var)))
    # the small variances keep their relative precision
    model = {"w": (RNG.standard_normal((8, 8)) * 0.05).astype(np.float32), "bn.running_var": var,
             "bn.running_mean": np.zeros(100, np.float32), "bn.weight": np.ones(100, np.float32),
             "bn.bias": np.zeros(100, np.float32)}
    worst = {}
    for q in (0.0, 0.1):
        rec = codec.encode_with_recon(model, _cfg(QP1DRelStats=-28, QP1DRelVarQuantile=q))
        worst[q] = float(np.max(np.abs(rec.recon["bn.running_var"] - var) / var))
    assert worst[0.1] < 0.01 < worst[0.0]


def test_floor_keeps_dead_channels_cheap():
    """Statistics of rms 1e-7 among tensors of rms ~1 are not coded to 60 dB: the floor
    (QP1DRelFloor x the median 1-D scale) gives them the step of a 1e-3 tensor."""
    model = _bn_model(1.0)
    model["dead.running_mean"] = (RNG.standard_normal(4096) * 1e-7).astype(np.float32)
    bits = {}
    for floor in (0.0, 1e-3):
        stats = {s.name: s for s in codec.encode_with_recon(model, _cfg(QP1DRelFloor=floor)).stats}
        bits[floor] = stats["dead.running_mean"].bits
    assert bits[1e-3] < bits[0.0] / 4
    tensors_roles = roles.derive_roles(model)
    assert precision.model_floor(_cfg(QP1DRelFloor=0.0), model, tensors_roles) == 0.0
    assert 1e-4 < precision.model_floor(_cfg(QP1DRelFloor=1e-3), model, tensors_roles) < 1e-2
