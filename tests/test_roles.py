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


# ------------------------------------------------ recurrent layers (LSTM / GRU / RNN)

def _lstm_state_dict(prefix: str = "rnn.", proj: int = 3) -> dict[str, np.ndarray]:
    """The keys and shapes of torch.nn.LSTM(5, 4, num_layers=2, bidirectional=True,
    proj_size=3).state_dict() (checked against torch 2.13), in numpy."""
    rng = np.random.default_rng(9)
    gates, inputs = 4 * 4, 5
    out: dict[str, np.ndarray] = {}
    for layer in range(2):
        for sfx in ("", "_reverse"):
            width = inputs if layer == 0 else 2 * proj
            for key, shape in ((f"weight_ih_l{layer}", (gates, width)),
                               (f"weight_hh_l{layer}", (gates, proj)),
                               (f"bias_ih_l{layer}", (gates,)), (f"bias_hh_l{layer}", (gates,)),
                               (f"weight_hr_l{layer}", (proj, 4))):
                out[prefix + key + sfx] = rng.normal(0, 0.3, shape).astype(np.float32)
    return out


def _expected_rnn_role(name: str) -> Role:
    leaf = name.rsplit(".", 1)[-1]
    return {"weight_ih": Role.RNN_INPUT, "weight_hh": Role.RNN_RECURRENT,
            "weight_hr": Role.RNN_RECURRENT, "bias_ih": Role.BIAS,
            "bias_hh": Role.BIAS}[leaf.split("_l")[0]]


def test_lstm_state_dict_structure() -> None:
    tensors = _lstm_state_dict()
    tensors["fc.weight"] = np.ones((7, 6), np.float32)
    roles = derive_roles(tensors)
    for name in tensors:
        if name.startswith("rnn."):
            assert roles[name] == _expected_rnn_role(name), name
    assert roles["rnn.weight_hr_l1_reverse"] == Role.RNN_RECURRENT
    assert roles["fc.weight"] == Role.LINEAR
    # without the structure these were read from the shape: linear weights and 1-D tensors
    assert {derive_roles({k: v})[k] for k, v in tensors.items() if k.startswith("rnn.")} == {
        Role.LINEAR, Role.ONE_D}


def test_gru_state_dict_at_the_root() -> None:
    """A bare nn.GRU(6, 4).state_dict(): no module prefix."""
    rng = np.random.default_rng(2)
    tensors = {"weight_ih_l0": rng.normal(0, 0.3, (12, 6)).astype(np.float32),
               "weight_hh_l0": rng.normal(0, 0.3, (12, 4)).astype(np.float32),
               "bias_ih_l0": rng.normal(0, 0.1, 12).astype(np.float32),
               "bias_hh_l0": rng.normal(0, 0.1, 12).astype(np.float32)}
    assert derive_roles(tensors) == {"weight_ih_l0": Role.RNN_INPUT,
                                     "weight_hh_l0": Role.RNN_RECURRENT,
                                     "bias_ih_l0": Role.BIAS, "bias_hh_l0": Role.BIAS}


def test_recurrent_names_alone_give_no_rnn_role() -> None:
    rng = np.random.default_rng(3)
    lone = {"m.weight_hh_l0": rng.normal(0, 0.3, (16, 4)).astype(np.float32),
            "m.bias_hh_l0": rng.normal(0, 0.1, 16).astype(np.float32)}
    roles = derive_roles(lone)
    assert roles == {"m.weight_hh_l0": Role.LINEAR, "m.bias_hh_l0": Role.BIAS}
    # weight_ih_l0 in another module is not its sibling
    lone["other.weight_ih_l0"] = rng.normal(0, 0.3, (16, 5)).astype(np.float32)
    assert derive_roles(lone)["m.weight_hh_l0"] == Role.LINEAR
    # both keys, but shapes that no recurrent layer has (rows differ): not a recurrent layer
    odd = {"m.weight_ih_l0": np.ones((16, 5), np.float32),
           "m.weight_hh_l0": np.ones((12, 4), np.float32)}
    assert set(derive_roles(odd).values()) == {Role.LINEAR}
    # a layer of the module whose keys do not fit: only the fitting ones get the role
    sd = _lstm_state_dict()
    sd["rnn.bias_ih_l1"] = np.ones(5, np.float32)  # not 4 * hidden
    roles = derive_roles(sd)
    assert roles["rnn.bias_ih_l1"] == Role.ONE_D and roles["rnn.bias_hh_l1"] == Role.BIAS


def test_real_torch_lstm_state_dict() -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Module()
    net.rnn = torch.nn.LSTM(5, 4, num_layers=2, bidirectional=True, proj_size=3)
    net.gru = torch.nn.GRU(6, 4)
    net.cell = torch.nn.RNN(3, 2)
    tensors = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    assert {k: v.shape for k, v in tensors.items() if k.startswith("rnn.")} == {
        k: v.shape for k, v in _lstm_state_dict().items()}
    roles = derive_roles(tensors)
    assert all(roles[n] == _expected_rnn_role(n) for n in tensors), roles


def _recurrent_onnx() -> tuple[dict[str, np.ndarray], dict[str, list[tuple[str, int]]]]:
    """An ONNX graph of an LSTM (every optional input, peepholes) and a GRU (no
    sequence_lens: an empty input name), the float tensors and graph consumers as the
    encoder reads them."""
    onnx = pytest.importorskip("onnx")
    from nntm.onnxio import graph_consumers, split_model
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    hid, width, batch, seq = 4, 3, 1, 2

    def init(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0, 0.3, shape).astype(np.float32), name)

    inits = [init("lstm_W", (1, 4 * hid, width)), init("lstm_R", (1, 4 * hid, hid)),
             init("lstm_B", (1, 8 * hid)), init("lstm_h0", (1, batch, hid)),
             init("lstm_c0", (1, batch, hid)), init("lstm_P", (1, 3 * hid)),
             numpy_helper.from_array(np.full(batch, seq, np.int32), "lstm_len"),
             init("gru_W", (1, 3 * hid, hid)), init("gru_R", (1, 3 * hid, hid)),
             init("gru_B", (1, 6 * hid)), init("gru_h0", (1, batch, hid))]
    nodes = [helper.make_node("LSTM", ["x", "lstm_W", "lstm_R", "lstm_B", "lstm_len",
                                       "lstm_h0", "lstm_c0", "lstm_P"], ["y", "yh"],
                              hidden_size=hid),
             helper.make_node("Identity", ["yh"], ["h"]),
             helper.make_node("GRU", ["h", "gru_W", "gru_R", "gru_B", "", "gru_h0"],
                              ["", "out"], hidden_size=hid)]
    graph = helper.make_graph(
        nodes, "rnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                     [seq, batch, width])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, batch, hid])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    tensors, template = split_model(model)
    return tensors, graph_consumers(template)


def test_lstm_and_gru_onnx_inputs() -> None:
    tensors, consumers = _recurrent_onnx()
    assert consumers["lstm_P"] == [("LSTM", 7)] and consumers["gru_h0"] == [("GRU", 5)]
    roles = derive_roles(tensors, consumers)
    assert roles == {
        "lstm_W": Role.RNN_INPUT, "lstm_R": Role.RNN_RECURRENT, "lstm_B": Role.BIAS,
        "lstm_h0": Role.RNN_STATE, "lstm_c0": Role.RNN_STATE, "lstm_P": Role.RNN_PEEPHOLE,
        "gru_W": Role.RNN_INPUT, "gru_R": Role.RNN_RECURRENT, "gru_B": Role.BIAS,
        "gru_h0": Role.RNN_STATE}
    assert "lstm_len" not in tensors  # an int32 input: it stays in the graph


def test_recurrent_onnx_index_rules() -> None:
    """sequence_lens (4) is structural; initial_c and P are LSTM-only inputs; the RNN op."""
    t = {"len": np.array([3, 3], np.int32), "c": np.ones((1, 1, 4), np.float32),
         "w": np.ones((1, 4, 3), np.float32), "r": np.ones((1, 4, 4), np.float32),
         "b": np.ones((1, 8), np.float32)}
    roles = derive_roles(t, {"len": [("LSTM", 4)], "c": [("GRU", 6)], "w": [("RNN", 1)],
                             "r": [("RNN", 2)], "b": [("RNN", 3)]})
    assert roles == {"len": Role.STRUCTURAL, "c": derive_roles({"c": t["c"]})["c"],
                     "w": Role.RNN_INPUT, "r": Role.RNN_RECURRENT, "b": Role.BIAS}
    assert roles["c"] != Role.RNN_STATE  # a GRU has no input 6


def test_recurrent_roles_steer_the_encoder() -> None:
    tensors, consumers = _recurrent_onnx()
    cfg = Config.defaults().replace(QP1DMode="stats", QP=-20, QP1D=-64)
    base = {s.name: s for s in codec.encode_with_recon(tensors, cfg, consumers=consumers).stats}
    assert base["lstm_R"].role == "rnn-recurrent" and base["lstm_P"].role == "rnn-peephole"
    assert {s.mode for s in base.values()} == {"quantized"}  # structural only: none lossless
    assert all(s.qp == -20 for s in base.values())  # not BatchNorm statistics
    assert parse_roles("rnn-input rnn-recurrent rnn-state rnn-peephole") == (frozenset(
        {Role.RNN_INPUT, Role.RNN_RECURRENT, Role.RNN_STATE, Role.RNN_PEEPHOLE}), [])
    res = codec.encode_with_recon(tensors, cfg.replace(LosslessRoles="structural rnn-state"),
                                  consumers=consumers)
    modes = {s.name: s.mode for s in res.stats}
    assert modes["lstm_h0"] == modes["lstm_c0"] == modes["gru_h0"] == "lossless"
    assert modes["lstm_R"] == "quantized"


def test_encoder_help_lists_every_role(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        encoder.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    roles_text = text.split("--LosslessRoles", 1)[1].split(" --", 1)[0]
    listed = roles_text.split("Roles:", 1)[1].split("[default", 1)[0].replace("- ", "-")
    assert [w.strip() for w in listed.split(",")] == [r.label for r in Role]
