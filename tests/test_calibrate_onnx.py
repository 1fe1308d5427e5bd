"""ONNX calibration: nntm.calibrate_onnx and nntm-calibrate --model-file."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from nntm.apps import calibrate as app  # noqa: E402
from nntm.calibrate_onnx import (  # noqa: E402
    batches_for,
    calibrate_onnx,
    check_inputs,
    mapped_layers,
)
from nntm.errors import ModelIOError, NntmError  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

HAS_TORCH = all(importlib.util.find_spec(m) is not None for m in ("torch", "onnx2torch"))
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="needs torch and onnx2torch")


def _weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "conv_w": rng.standard_normal((4, 2, 3, 3)).astype(np.float32) * 0.5,
        "conv_b": rng.standard_normal(4).astype(np.float32) * 0.1,
        "fc_w": rng.standard_normal((3, 4 * 4 * 4)).astype(np.float32) * 0.2,  # transB=1
        "fc_b": rng.standard_normal(3).astype(np.float32) * 0.1,
        "head_w": rng.standard_normal((3, 5)).astype(np.float32),              # transB=0
    }


def small_model(batch: int | str = "n", nan: bool = False) -> bytes:
    """x (n, 2, 6, 6) -> Conv 3x3 -> Relu -> Flatten -> Gemm(transB=1) -> Tanh -> Gemm -> y."""
    w = _weights()
    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flat", axis=1),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["h"], name="fc", transB=1),
        helper.make_node("Tanh", ["h"], ["t"], name="tanh"),
        helper.make_node("Gemm", ["t", "head_w"], ["y0"], name="head"),
    ]
    if nan:  # log of a negative number: NaN on some outputs
        nodes.append(helper.make_node("Log", ["y0"], ["y"], name="log"))
    else:
        nodes.append(helper.make_node("Identity", ["y0"], ["y"], name="out"))
    graph = helper.make_graph(
        nodes, "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 2, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 5])],
        [numpy_helper.from_array(v, k) for k, v in w.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def _inputs(n: int = 12, seed: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal((n, 2, 6, 6)).astype(np.float32)}


def _forward(x: np.ndarray) -> dict[str, np.ndarray]:
    """The small model in numpy: the inputs of the three layers."""
    w = _weights()
    n = x.shape[0]
    conv = np.zeros((n, 4, 4, 4))
    for i in range(4):
        for j in range(4):
            patch = x[:, :, i : i + 3, j : j + 3]
            conv[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w["conv_w"]) + w["conv_b"]
    flat = np.maximum(conv, 0).reshape(n, -1)
    hidden = np.tanh(flat @ w["fc_w"].T + w["fc_b"])
    return {"conv_w": x, "fc_w": flat, "head_w": hidden}


def test_mapped_layers_and_layouts():
    layers = {layer.weight: layer for layer in mapped_layers(small_model())}
    assert set(layers) == {"conv_w", "fc_w", "head_w"}
    assert layers["conv_w"].op == "Conv" and layers["conv_w"].in_axis == 1
    assert layers["fc_w"].in_axis == 1      # transB=1: (out, in)
    assert layers["head_w"].in_axis == 0    # transB=0: (in, out)


def test_activation_maps_match_numpy():
    x = _inputs()["x"]
    maps = calibrate_onnx(small_model(), {"x": x}, kind="activation", batch_size=5)
    inputs = _forward(x.astype(np.float64))
    np.testing.assert_allclose(maps["conv_w"], np.mean(inputs["conv_w"] ** 2, axis=(0, 2, 3)),
                               rtol=1e-5)
    np.testing.assert_allclose(maps["fc_w"], np.mean(inputs["fc_w"] ** 2, axis=0), rtol=1e-4,
                               atol=1e-7)
    head = np.mean(inputs["head_w"] ** 2, axis=0)
    assert maps["head_w"].shape == (3, 5)  # (in, out) layout: a full map
    np.testing.assert_allclose(maps["head_w"], np.broadcast_to(head[:, None], (3, 5)),
                               rtol=1e-4)
    assert list(maps) == ["conv_w", "fc_w", "head_w"]  # EncoderApp's tensor order


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"x": np.zeros((2, 2, 6, 6), np.float32), "z": np.zeros((2, 1))}, "'z' is not an input"),
        ({}, "needs input 'x'"),
        ({"x": np.zeros((2, 2, 5, 6), np.float32)}, "has 5 on axis 2"),
        ({"x": np.zeros((2, 6, 6), np.float32)}, "3 axes"),
        ({"x": np.float32(1.0)}, "scalar"),
        ({"x": np.zeros((0, 2, 6, 6), np.float32)}, "no sample"),
    ],
)
def test_bad_inputs_name_the_input(inputs, message):
    with pytest.raises(ModelIOError, match=message):
        check_inputs(small_model(), inputs)


def test_fixed_batch_axis_feeds_one_sample_at_a_time():
    batches = batches_for(small_model(batch=1), _inputs(5))
    assert len(batches) == 5 and all(b["x"].shape == (1, 2, 6, 6) for b in batches)
    with pytest.raises(ModelIOError, match="fixed to 1"):
        batches_for(small_model(batch=1), _inputs(5), batch_size=4)
    free = batches_for(small_model(), _inputs(5), batch_size=2)
    assert [b["x"].shape[0] for b in free] == [2, 2, 1]


def test_nan_output_is_an_error_naming_the_output():
    with pytest.raises(NntmError, match="output 'y' is not finite on calibration batch 0"):
        calibrate_onnx(small_model(nan=True), _inputs(), kind="activation")


def test_unknown_output_name():
    with pytest.raises(NntmError, match="'z' is not an output"):
        calibrate_onnx(small_model(), _inputs(), kind="activation", output_name="z")


def _write(tmp_path: pathlib.Path, model: bytes, inputs: dict[str, np.ndarray]
           ) -> tuple[str, str]:
    path = tmp_path / "m.onnx"
    path.write_bytes(model)
    npz = tmp_path / "calib.npz"
    np.savez(npz, **inputs)
    return str(path), str(npz)


def test_cli_model_file_activation(tmp_path, capsys):
    model, npz = _write(tmp_path, small_model(), _inputs())
    out = tmp_path / "imp.safetensors"
    assert app.main(["--model-file", model, "--inputs", npz, "-o", str(out),
                     "--kind", "activation"]) == 0
    from nntm.modelio import read_model

    maps = read_model(str(out))
    assert set(maps) == {"conv_w", "fc_w", "head_w"}
    text = capsys.readouterr().out
    assert "activation maps of 3 tensors" in text
    assert "2 float tensor(s) without a map" in text and "conv_b" in text


@pytest.mark.parametrize(
    ("model", "inputs", "extra", "message"),
    [
        (small_model(), {"image": np.zeros((2, 2, 6, 6), np.float32)}, [], "'image' is not"),
        (small_model(), {"x": np.zeros((2, 2, 7, 6), np.float32)}, [], "has 7 on axis 2"),
        (small_model(nan=True), _inputs(), [], "not finite"),
        (small_model(), _inputs(), ["--output-name", "q"], "'q' is not an output"),
    ],
)
def test_cli_bad_inputs_write_nothing(tmp_path, capsys, model, inputs, extra, message):
    model_path, npz = _write(tmp_path, model, inputs)
    out = tmp_path / "imp.safetensors"
    code = app.main(["--model-file", model_path, "--inputs", npz, "-o", str(out),
                     "--kind", "activation", *extra])
    assert code != 0
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_cli_model_file_needs_npz_inputs(tmp_path, capsys):
    model, _ = _write(tmp_path, small_model(), _inputs())
    bad = tmp_path / "calib.pt"
    bad.write_bytes(b"x")
    code = app.main(["--model-file", model, "--inputs", str(bad), "-o",
                     str(tmp_path / "o.npz")])
    assert code != 0 and "takes an .npz" in capsys.readouterr().err
    code = app.main(["--model-file", model, "-o", str(tmp_path / "o.npz")])
    assert code != 0 and "needs --inputs" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# Sensitivity (torch + onnx2torch)
# ---------------------------------------------------------------------------------------


def _torch_twin():
    import torch

    w = _weights()

    class Twin(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 4, 3)
            self.fc = torch.nn.Linear(64, 3)
            self.head = torch.nn.Linear(3, 5, bias=False)

        def forward(self, x):
            h = torch.tanh(self.fc(torch.relu(self.conv(x)).flatten(1)))
            return self.head(h)

    twin = Twin()
    with torch.no_grad():
        twin.conv.weight.copy_(torch.from_numpy(w["conv_w"]))
        twin.conv.bias.copy_(torch.from_numpy(w["conv_b"]))
        twin.fc.weight.copy_(torch.from_numpy(w["fc_w"]))
        twin.fc.bias.copy_(torch.from_numpy(w["fc_b"]))
        twin.head.weight.copy_(torch.from_numpy(w["head_w"].T.copy()))
    return twin


@needs_torch
def test_sensitivity_matches_the_torch_path():
    import torch
    from nntm.calibrate import calibrate

    x = _inputs(16)["x"]
    onnx_maps = calibrate_onnx(small_model(), {"x": x}, probes=3, seed=5, batch_size=4)
    batches = [torch.from_numpy(x[i : i + 4]) for i in range(0, 16, 4)]
    torch_maps = calibrate(_torch_twin(), batches, probes=3, seed=5)
    assert set(onnx_maps) == {"conv_w", "fc_w", "head_w"}
    np.testing.assert_allclose(onnx_maps["conv_w"], torch_maps["conv.weight"], rtol=1e-4)
    np.testing.assert_allclose(onnx_maps["fc_w"], torch_maps["fc.weight"], rtol=1e-4)
    # B of a transB=0 Gemm is the transpose of the Linear weight: its map too
    assert onnx_maps["head_w"].shape == (3, 5)
    np.testing.assert_allclose(onnx_maps["head_w"], torch_maps["head.weight"].T, rtol=1e-4)


@needs_torch
def test_sensitivity_nan_output_is_an_error():
    with pytest.raises(NntmError, match="output 'y' is not finite"):
        calibrate_onnx(small_model(nan=True), _inputs(), probes=1)


def lstm_model(seed: int = 2) -> bytes:
    """x (T=5, B, 3) -> bidirectional LSTM (H=4) -> Reshape (T*B, 8) -> Gemm -> y."""
    rng = np.random.default_rng(seed)
    hidden, width = 4, 3
    inits = {
        "W": rng.standard_normal((2, 4 * hidden, width)).astype(np.float32) * 0.5,
        "R": rng.standard_normal((2, 4 * hidden, hidden)).astype(np.float32) * 0.5,
        "B": rng.standard_normal((2, 8 * hidden)).astype(np.float32) * 0.2,
        "fc_w": rng.standard_normal((6, 2 * hidden)).astype(np.float32),
        "shape": np.array([-1, 2 * hidden], dtype=np.int64),
        "perm_out": np.array([0], dtype=np.int64),
    }
    nodes = [
        helper.make_node("LSTM", ["x", "W", "R", "B"], ["Y", "Yh", "Yc"], name="lstm",
                         hidden_size=hidden, direction="bidirectional"),
        helper.make_node("Transpose", ["Y"], ["Yt"], name="tr", perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["Yt", "shape"], ["flat"], name="rs"),
        helper.make_node("Gemm", ["flat", "fc_w"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "lstm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 1, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 6])],
        [numpy_helper.from_array(v, k) for k, v in inits.items() if k != "perm_out"],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


@needs_torch
def test_lstm_graph_converts_and_is_checked_against_onnxruntime():
    # the graph's first axis is time, its batch fixed to 1: samples go on axis 0 of the
    # inputs file, so an input of shape (samples * 5, 1, 3) is cut into (5, 1, 3) feeds
    x = np.random.default_rng(3).standard_normal((4, 5, 1, 3)).astype(np.float32)
    maps = {}
    for sample in x:
        found = calibrate_onnx(lstm_model(), {"x": sample}, kind="sensitivity", probes=2,
                               batch_size=5)
        for name, value in found.items():
            maps[name] = maps.get(name, 0) + value
    assert set(maps) == {"fc_w"}  # the LSTM's weights get no map
    assert maps["fc_w"].shape == (6, 8) and np.all(maps["fc_w"] > 0)


@needs_torch
def test_cli_model_file_sensitivity_is_the_api(tmp_path, capsys):
    inputs = _inputs(8)
    model, npz = _write(tmp_path, small_model(), inputs)
    out = tmp_path / "imp.npz"
    assert app.main(["--model-file", model, "--inputs", npz, "-o", str(out), "--probes", "2",
                     "--seed", "3", "--batch-size", "4"]) == 0
    from nntm.modelio import read_model

    got = read_model(str(out))
    want = calibrate_onnx(small_model(), inputs, probes=2, seed=3, batch_size=4)
    assert list(got) == list(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    assert "sensitivity maps of 3 tensors" in capsys.readouterr().out


@needs_torch
def test_torchvision_stand_in_does_not_outlive_the_import() -> None:
    """A stand-in torchvision left in sys.modules makes find_spec raise for every later importer
    (transformers, in a CE worker that loads SmolLM2 after calibrating an ONNX model)."""
    import subprocess
    import sys

    code = (
        "import sys, types, importlib.util\n"
        # a broken torchvision, as beside a CPU torch wheel: the import raises
        "broken = types.ModuleType('torchvision'); broken.__spec__ = None\n"
        "class Finder:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torchvision': raise RuntimeError('broken torchvision')\n"
        "sys.meta_path.insert(0, Finder())\n"
        "from nntm.calibrate_onnx import _import_onnx2torch\n"
        "_import_onnx2torch()\n"
        "sys.meta_path.pop(0)\n"
        "mod = sys.modules.get('torchvision')\n"
        "assert mod is None or mod.__spec__ is not None, 'stand-in left in sys.modules'\n"
        "importlib.util.find_spec('torchvision')\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")
