"""Tensor roles from structure and values (nntm.roles, issue #15 items 2 and 3).

The same network under two namings (PyTorch state-dict keys, and ONNX-export names such as
``batch_norm_0.w_2``) must get the same roles where they matter, and so the same QPs.
"""

from __future__ import annotations

import numpy as np
import pytest
from nntm import codec
from nntm.apps import encoder
from nntm.config import Config
from nntm.errors import ConfigError
from nntm.roles import Role, derive_roles, parse_roles, role_counts, variance_like


def _bn_net(onnx_names: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(4)
    c = 16
    conv = rng.normal(0, 0.2, (c, 3, 3, 3)).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, c).astype(np.float32)
    beta = rng.normal(0, 0.1, c).astype(np.float32)
    mean = rng.normal(0, 0.5, c).astype(np.float32)
    var = np.exp(rng.uniform(np.log(1e-3), np.log(10.0), c)).astype(np.float32)
    fc = rng.normal(0, 0.1, (10, c)).astype(np.float32)
    fcb = rng.normal(0, 0.1, 10).astype(np.float32)
    if onnx_names:
        return {"det/conv2d_0.w_0": conv, "det/batch_norm_0.w_0": gamma,
                "det/batch_norm_0.b_0": beta, "det/batch_norm_0.w_1": mean,
                "det/batch_norm_0.w_2": var, "det/fc_0.w_0": fc, "det/fc_0.b_0": fcb}
    return {"features.0.weight": conv, "features.1.weight": gamma, "features.1.bias": beta,
            "features.1.running_mean": mean, "features.1.running_var": var,
            "features.1.num_batches_tracked": np.array(7, dtype=np.int64),
            "classifier.weight": fc, "classifier.bias": fcb}


def test_state_dict_structure() -> None:
    roles = derive_roles(_bn_net(False))
    assert roles == {
        "features.0.weight": Role.CONV, "features.1.weight": Role.NORM_SCALE,
        "features.1.bias": Role.NORM_SHIFT, "features.1.running_mean": Role.BN_MEAN,
        "features.1.running_var": Role.BN_VAR, "features.1.num_batches_tracked": Role.COUNTER,
        "classifier.weight": Role.LINEAR, "classifier.bias": Role.BIAS}


def test_batchnorm_found_by_values_under_export_names() -> None:
    roles = derive_roles(_bn_net(True))
    assert roles["det/batch_norm_0.w_2"] == Role.BN_VAR  # positive, spread over decades
    assert {roles[f"det/batch_norm_0.{k}"] for k in ("w_0", "b_0", "w_1")} == {Role.BN_PARAM}
    assert roles["det/fc_0.b_0"] == Role.BIAS and roles["det/conv2d_0.w_0"] == Role.CONV
    assert variance_like(_bn_net(True)["det/batch_norm_0.w_2"])
    assert not variance_like(_bn_net(True)["det/batch_norm_0.w_1"])  # signed
    assert not variance_like(np.array([0.9, 1.0, 1.1], np.float32))  # not spread


def test_qp1d_stats_follows_the_roles_under_both_namings() -> None:
    cfg = Config.defaults().replace(QP1DMode="stats", QP1D=-64, QP=-20, QPOffset1D=-8)
    for onnx in (False, True):
        stats = {s.name: s for s in codec.encode_with_recon(_bn_net(onnx), cfg).stats}
        var = "det/batch_norm_0.w_2" if onnx else "features.1.running_var"
        mean = "det/batch_norm_0.w_1" if onnx else "features.1.running_mean"
        bias = "det/fc_0.b_0" if onnx else "classifier.bias"
        assert stats[var].qp == -64 and stats[mean].qp == -64, onnx  # the name rule gave -28
        assert stats[bias].qp == -28 and stats[var].role == "bn-var"


def test_graph_consumers_decide_first() -> None:
    tensors = {"a": np.ones(4, np.float32), "shape": np.array([2.0, 2.0], np.float32),
               "table": np.zeros((100, 8), np.float32), "v": np.ones(4, np.float32)}
    consumers = {"a": [("BatchNormalization", 3)], "shape": [("Resize", 2)],
                 "table": [("Gather", 0)], "v": [("Mul", 1)]}
    roles = derive_roles(tensors, consumers)
    assert roles == {"a": Role.BN_MEAN, "shape": Role.STRUCTURAL, "table": Role.EMBEDDING,
                     "v": Role.ONE_D}
    cfg = Config.defaults()
    res = codec.encode_with_recon(tensors, cfg, consumers=consumers)
    modes = {s.name: s.mode for s in res.stats}
    assert modes["shape"] == "lossless" and modes["v"] == "quantized"  # LosslessRoles default
    res = codec.encode_with_recon(tensors, cfg.replace(LosslessRoles=""), consumers=consumers)
    assert {s.name: s.mode for s in res.stats}["shape"] == "quantized"


def test_layer_norm_and_counts() -> None:
    tensors = {"ln.weight": np.ones(8, np.float32), "ln.bias": np.zeros(8, np.float32),
               "prelu.weight": np.full(8, 0.25, np.float32)}
    roles = derive_roles(tensors)
    assert roles == {"ln.weight": Role.NORM_SCALE, "ln.bias": Role.NORM_SHIFT,
                     "prelu.weight": Role.ONE_D}
    assert role_counts(roles, tensors) == {"1-D": (1, 8), "norm-scale": (1, 8),
                                           "norm-shift": (1, 8)}


def test_lossless_roles_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_roles("structural counter")[0] == {Role.STRUCTURAL, Role.COUNTER}
    assert "unknown role 'weights'" in parse_roles("weights")[1][0]
    with pytest.raises(ConfigError, match="unknown role"):
        codec.encode({"w": np.ones((4, 4), np.float32)},
                      Config.defaults().replace(LosslessRoles="bogus"))
    assert encoder.main(["-b", "/tmp/nntm_roles_x.bit", "--LosslessRoles=bogus"]) != 0
    assert "LosslessRoles: unknown role 'bogus'" in capsys.readouterr().err


def test_encoder_prints_the_role(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    assert encoder.main(["-b", str(tmp_path / "d.bit")]) == 0
    lines = capsys.readouterr().out.splitlines()
    head = next(ln for ln in lines if ln.startswith("tensor "))
    assert " role " in head
    assert any(ln.startswith("conv1.bias") and " bias " in ln for ln in lines)


def test_batchnorm_beside_a_counter_needs_no_spread() -> None:
    rng = np.random.default_rng(1)
    group = {f"net/op_3.w_{i}": rng.normal(0, 0.1, 8).astype(np.float32) for i in range(3)}
    group["net/op_3.w_3"] = rng.uniform(0.5, 1.5, 8).astype(np.float32)  # narrow variances
    roles = derive_roles(group)
    assert set(roles.values()) == {Role.ONE_D}  # no counter, no spread: undecided
    group["net/op_3.w_4"] = np.array(100, dtype=np.int64)
    roles = derive_roles(group)
    assert roles["net/op_3.w_3"] == Role.BN_VAR and roles["net/op_3.w_4"] == Role.COUNTER
    assert {roles[f"net/op_3.w_{i}"] for i in range(3)} == {Role.BN_PARAM}
