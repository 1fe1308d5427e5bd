"""Synthetic calibration inputs (nntm.synthetic) and nntm-calibrate --synthetic."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from nntm import synthetic  # noqa: E402
from nntm.apps import calibrate as app  # noqa: E402
from nntm.calibrate_onnx import calibrate_onnx  # noqa: E402
from nntm.errors import ModelIOError  # noqa: E402
from nntm.modelio import read_model  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from test_calibrate_onnx import small_model  # noqa: E402

HAS_TORCH = importlib.util.find_spec("torch") is not None


def token_model(rows: int = 7, free: bool = False) -> bytes:
    """ids (n, 5) int64 -> Gather(table rows x 4) -> ReduceMean -> MatMul -> y (n, 3)."""
    rng = np.random.default_rng(0)
    table = rng.standard_normal((rows, 4)).astype(np.float32)
    proj = rng.standard_normal((4, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["e"], name="embed"),
        helper.make_node("ReduceMean", ["e"], ["m"], name="mean", axes=[1], keepdims=0),
        helper.make_node("MatMul", ["m", "proj"], ["y"], name="proj"),
    ]
    graph = helper.make_graph(
        nodes, "tokens",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n", "t" if free else 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(proj, "proj")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def test_float_inputs_follow_the_graph_and_the_range():
    x = synthetic.onnx_inputs(small_model(), 50)["x"]
    assert x.shape == (50, 2, 6, 6) and x.dtype == np.float32
    assert abs(float(x.mean())) < 0.1 and 0.9 < float(x.std()) < 1.1     # standard normal
    again = synthetic.onnx_inputs(small_model(), 50)["x"]
    assert np.array_equal(x, again)                                       # seeded
    other = synthetic.onnx_inputs(small_model(), 50, seed=1)["x"]
    assert not np.array_equal(x, other)
    u = synthetic.onnx_inputs(small_model(), 50, value_range=(0.0, 255.0))["x"]
    assert u.min() >= 0.0 and u.max() <= 255.0 and 100 < float(u.mean()) < 155


def test_integer_inputs_stay_inside_the_table():
    ids = synthetic.onnx_inputs(token_model(rows=7), 400)["ids"]
    assert ids.dtype == np.int64 and ids.shape == (400, 5)
    assert ids.min() == 0 and ids.max() == 6                             # every row, no more
    ranged = synthetic.onnx_inputs(token_model(rows=7), 400, value_range=(2, 3))["ids"]
    assert set(np.unique(ranged)) == {2, 3}


def test_free_dims_need_a_shape():
    with pytest.raises(ModelIOError, match="free dims"):
        synthetic.onnx_inputs(token_model(free=True), 4)
    ids = synthetic.onnx_inputs(token_model(free=True), 4, shapes={"ids": (9,)})["ids"]
    assert ids.shape == (4, 9)
    with pytest.raises(ModelIOError, match="does not fit input 'x'"):
        synthetic.onnx_inputs(small_model(), 4, shapes={None: (2, 7, 6)})
    with pytest.raises(ModelIOError, match="'image' is not an input"):
        synthetic.onnx_inputs(small_model(), 4, shapes={"image": (2, 6, 6)})


@pytest.mark.parametrize(("text", "expected"), [("3,224,224", (None, (3, 224, 224))),
                                                 ("ids=12", ("ids", (12,)))])
def test_parse_shape(text, expected):
    assert synthetic.parse_shape(text) == expected


@pytest.mark.parametrize("text", ["3,a", "0,4", ""])
def test_parse_shape_rejects(text):
    with pytest.raises(ModelIOError):
        synthetic.parse_shape(text)


def test_parse_range():
    assert synthetic.parse_range("0,255") == (0.0, 255.0)
    for bad in ("5,1", "1", "a,b", "0,inf"):
        with pytest.raises(ModelIOError):
            synthetic.parse_range(bad)


def test_cli_synthetic_is_the_api_on_synthetic_inputs(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    path.write_bytes(small_model())
    out = tmp_path / "imp.safetensors"
    assert app.main(["--model-file", str(path), "--synthetic", "16", "--kind", "activation",
                     "--input-range", "0,1", "-o", str(out)]) == 0
    maps = read_model(str(out))
    inputs = synthetic.onnx_inputs(small_model(), 16, value_range=(0.0, 1.0))
    expected = calibrate_onnx(small_model(), inputs, kind="activation")
    assert set(maps) == set(expected) == {"conv_w", "fc_w", "head_w"}
    for name, value in expected.items():
        np.testing.assert_array_equal(maps[name], np.asarray(value, np.float32))
    assert "activation maps of 3 tensors" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--inputs", "calib.npz"], "replaces --inputs"),
        ([], "--synthetic must be at least 1"),
        (["--input-shape", "2,7,6"], "does not fit input 'x'"),
    ],
)
def test_cli_synthetic_bad_options_write_nothing(tmp_path, capsys, extra, message):
    path = tmp_path / "m.onnx"
    path.write_bytes(small_model())
    np.savez(tmp_path / "calib.npz", x=np.zeros((2, 2, 6, 6), np.float32))
    extra = [str(tmp_path / e) if e.endswith(".npz") else e for e in extra]
    count = "0" if not extra else "4"
    out = tmp_path / "imp.safetensors"
    code = app.main(["--model-file", str(path), "--synthetic", count, "--kind", "activation",
                     "-o", str(out), *extra])
    assert code != 0 and message in capsys.readouterr().err
    assert not out.exists()


def test_cli_shape_and_range_need_synthetic(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    path.write_bytes(small_model())
    np.savez(tmp_path / "calib.npz", x=np.zeros((2, 2, 6, 6), np.float32))
    code = app.main(["--model-file", str(path), "--inputs", str(tmp_path / "calib.npz"),
                     "--input-range", "0,1", "-o", str(tmp_path / "o.npz")])
    assert code != 0 and "apply to --synthetic only" in capsys.readouterr().err


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch")
def test_cli_torch_synthetic(tmp_path, capsys, monkeypatch):
    (tmp_path / "tiny_net.py").write_text(
        "import torch\n"
        "def build():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),\n"
        "                               torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 2))\n")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "imp.safetensors"
    code = app.main(["--torch", "tiny_net:build", "--synthetic", "8", "-o", str(out)])
    assert code != 0 and "needs --input-shape" in capsys.readouterr().err
    assert app.main(["--torch", "tiny_net:build", "--synthetic", "8", "--input-shape", "3,6,6",
                     "--probes", "2", "-o", str(out)]) == 0
    maps = read_model(str(out))
    assert set(maps) == {"0.weight", "3.weight"}
    assert maps["0.weight"].shape == (4, 3, 3, 3) and np.all(maps["0.weight"] > 0)
