"""ONNX in and out (issue #15 item 1): nntm.onnxio, the format 1.7 container unit, the apps.

The model below has every kind of float tensor an ONNX file holds: initializers (raw and
typed storage, float16 and float64 too), a sparse initializer, Constant nodes (value,
value_float, value_floats, sparse_value), If and Loop subgraphs with constants inside, and
structural inputs (an int64 Reshape shape, float Resize scales) that must come back exact.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from nntm import codec, hls, roles
from nntm.apps import decoder as decoder_app
from nntm.apps import encoder as encoder_app
from nntm.config import Config
from nntm.errors import BitstreamError, ModelIOError
from nntm.memory import MemoryBudgetError
from nntm.modelio import read_model, read_model_container, write_model

onnx = pytest.importorskip("onnx")
from nntm import onnxio  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

X = np.random.default_rng(7).normal(size=(1, 3, 8, 8)).astype(np.float32)


def _init(name: str, arr: np.ndarray, raw: bool) -> TensorProto:
    if raw:
        return numpy_helper.from_array(arr, name)
    code = helper.np_dtype_to_tensor_dtype(arr.dtype)
    if arr.dtype == np.float16:
        return helper.make_tensor(name, code, arr.shape, arr.reshape(-1).view(np.uint16).tolist())
    return helper.make_tensor(name, code, arr.shape, arr.reshape(-1).tolist())


def build_model(raw: bool = True, seed: int = 0) -> onnx.ModelProto:
    """A small Conv + MatMul network with every kind of float tensor (see the module doc)."""
    rng = np.random.default_rng(seed)
    w = {
        "conv.weight": rng.normal(0, 0.2, (8, 3, 3, 3)).astype(np.float32),
        "conv.bias": rng.normal(0, 0.1, (8,)).astype(np.float32),
        "fc.weight": rng.normal(0, 0.1, (288, 10)).astype(np.float32),
        "half.bias": rng.normal(0, 0.1, (10,)).astype(np.float16),
        "double.scale": rng.uniform(0.5, 1.5, (10,)).astype(np.float64),
        "up_scales": np.array([1.0, 1.0, 2.0, 2.0], dtype=np.float32),
    }
    ints = [numpy_helper.from_array(np.array([1, -1], np.int64), "shape"),
            numpy_helper.from_array(np.array(2, np.int64), "trips"),
            numpy_helper.from_array(np.array(True), "keep_going")]
    idx = np.sort(rng.choice(100, 12, replace=False)).astype(np.int64)
    sparse_init = helper.make_sparse_tensor(
        numpy_helper.from_array(rng.normal(0, 0.3, 12).astype(np.float32), "sparse.weight"),
        numpy_helper.from_array(idx, "sparse.weight.idx"), [10, 10])
    sparse_const = helper.make_sparse_tensor(
        numpy_helper.from_array(rng.normal(0, 0.3, 5).astype(np.float32), "sv"),
        numpy_helper.from_array(np.array([3, 14, 15, 65, 92], np.int64), "sv_idx"), [10, 10])
    out_info = helper.make_tensor_value_info
    then_g = helper.make_graph(
        [helper.make_node("Constant", [], ["w_then"], value=numpy_helper.from_array(
            rng.normal(0, 1, (10,)).astype(np.float32), "w_then")),
         helper.make_node("Add", ["y4", "w_then"], ["then_out"])],
        "then", [], [out_info("then_out", TensorProto.FLOAT, [1, 10])])
    else_g = helper.make_graph(
        [helper.make_node("Constant", [], ["w_else"],
                          value_floats=rng.normal(0, 1, 10).astype(np.float32).tolist()),
         helper.make_node("Mul", ["y4", "w_else"], ["else_out"])],
        "else", [], [out_info("else_out", TensorProto.FLOAT, [1, 10])])
    body = helper.make_graph(
        [helper.make_node("Constant", [], ["step"], value=numpy_helper.from_array(
            rng.normal(0, 0.1, (1, 10)).astype(np.float32), "step")),
         helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["v_in", "step"], ["v_out"])],
        "body", [out_info("i", TensorProto.INT64, []), out_info("cond_in", TensorProto.BOOL, []),
                 out_info("v_in", TensorProto.FLOAT, [1, 10])],
        [out_info("cond_out", TensorProto.BOOL, []), out_info("v_out", TensorProto.FLOAT, [1, 10])])
    nodes = [
        helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Resize", ["r", "", "up_scales"], ["up"], name="up", mode="nearest"),
        helper.make_node("Reshape", ["r", "shape"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "fc.weight"], ["y"], name="fc"),
        helper.make_node("Constant", [], ["const.w"], value=numpy_helper.from_array(
            rng.normal(0, 1, (10,)).astype(np.float32), "const.w")),
        helper.make_node("Constant", [], ["const.s"], value_float=0.5),
        helper.make_node("Constant", [], ["const.sparse"], sparse_value=sparse_const),
        helper.make_node("Mul", ["y", "const.s"], ["y1"]),
        helper.make_node("Add", ["y1", "const.w"], ["y2"]),
        helper.make_node("Cast", ["half.bias"], ["hb"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["double.scale"], ["ds"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["y2", "hb"], ["y2b"]),
        helper.make_node("Mul", ["y2b", "ds"], ["y2c"]),
        helper.make_node("MatMul", ["y2c", "sparse.weight"], ["y3"]),
        helper.make_node("MatMul", ["y3", "const.sparse"], ["y4"]),
        helper.make_node("ReduceSum", ["y4"], ["s"], keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["cond"]),
        helper.make_node("If", ["cond"], ["branch"], name="If_0", then_branch=then_g,
                         else_branch=else_g),
        helper.make_node("Loop", ["trips", "keep_going", "branch"], ["out"], name="Loop_0",
                         body=body),
    ]
    inits = [_init(k, v, raw) for k, v in w.items()]
    inits.append(numpy_helper.from_array(np.array(0.0, np.float32), "zero"))
    graph = helper.make_graph(
        nodes, "g", [out_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [out_info("out", TensorProto.FLOAT, [1, 10]),
         out_info("up", TensorProto.FLOAT, [1, 8, 12, 12])],
        initializer=inits + ints, sparse_initializer=[sparse_init])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


EXPECTED_NAMES = [
    "conv.weight", "conv.bias", "fc.weight", "half.bias", "double.scale", "up_scales", "zero",
    "sparse.weight", "const.w", "const.s", "const.sparse", "If_0/else_branch/w_else",
    "If_0/then_branch/w_then", "Loop_0/body/step",
]


def run(model: bytes | str) -> list[np.ndarray]:
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(model if isinstance(model, bytes) else str(model),
                                providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": X})


def cfg(**changes: object) -> Config:
    return Config.defaults().replace(**changes)


@pytest.fixture()
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "m.onnx"
    onnx.save(build_model(), str(path))
    return path


# ------------------------------------------------------------------ onnxio


@pytest.mark.parametrize("raw", [True, False], ids=["raw_data", "typed"])
def test_every_float_tensor_is_read_with_a_stable_name(tmp_path: Path, raw: bool) -> None:
    model = build_model(raw)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    tensors, template = onnxio.read_onnx(path)
    assert list(tensors) == EXPECTED_NAMES
    assert onnxio.template_names(template) == EXPECTED_NAMES
    by_name = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for name in ("conv.weight", "half.bias", "double.scale", "up_scales", "zero"):
        assert tensors[name].dtype == by_name[name].dtype
        assert tensors[name].tobytes() == by_name[name].tobytes(), name
    sp = model.graph.sparse_initializer[0]
    assert tensors["sparse.weight"].tobytes() == numpy_helper.to_array(sp.values).tobytes()
    assert tensors["const.s"].shape == () and float(tensors["const.s"]) == 0.5
    assert tensors["If_0/else_branch/w_else"].shape == (10,)
    assert tensors["Loop_0/body/step"].shape == (1, 10)
    # no int64 / bool tensor is taken: they stay in the template
    assert all(t.dtype.kind == "f" for t in tensors.values())
    # the template is the file without the float data
    assert len(template) < len(path.read_bytes()) / 5


@pytest.mark.parametrize("raw", [True, False], ids=["raw_data", "typed"])
def test_unchanged_tensors_rebuild_the_file_byte_for_byte(tmp_path: Path, raw: bool) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(build_model(raw), str(path))
    tensors, template = onnxio.read_onnx(path)
    assert onnxio.model_bytes(tensors, template) == path.read_bytes()


def test_a_missing_or_misshapen_tensor_is_an_error(model_file: Path) -> None:
    tensors, template = onnxio.read_onnx(model_file)
    less = dict(tensors)
    del less["Loop_0/body/step"]
    with pytest.raises(ModelIOError, match="Loop_0/body/step"):
        onnxio.model_bytes(less, template)
    bad = dict(tensors, **{"conv.weight": np.zeros((8, 3, 3), np.float32)})
    with pytest.raises(ModelIOError, match="conv.weight"):
        onnxio.model_bytes(bad, template)


def test_duplicate_names_and_unnamed_nodes_get_stable_names() -> None:
    w = numpy_helper.from_array(np.ones(3, np.float32), "w")
    sub = helper.make_graph([helper.make_node("Constant", [], ["w"], value=w)], "s", [],
                            [helper.make_tensor_value_info("w", TensorProto.FLOAT, [3])])
    nodes = [helper.make_node("Constant", [], ["w2"], value=w),
             helper.make_node("If", ["c"], ["o"], then_branch=sub, else_branch=sub)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("c", TensorProto.BOOL,
                                                                         [])],
                              [helper.make_tensor_value_info("o", TensorProto.FLOAT, [3])],
                              initializer=[numpy_helper.from_array(np.zeros(2, np.float32),
                                                                   "w2")])
    model = helper.make_model(graph)
    tensors, template = onnxio.split_model(model)
    assert list(tensors) == ["w2", "w2#2", "If#1/else_branch/w", "If#1/then_branch/w"]


def test_consumers_give_the_roles(model_file: Path) -> None:
    tensors, template = onnxio.read_onnx(model_file)
    consumers = onnxio.graph_consumers(template)
    assert consumers["conv.weight"] == [("Conv", 1)]
    assert consumers["conv.bias"] == [("Conv", 2)]
    assert consumers["up_scales"] == [("Resize", 2)]
    assert consumers["const.w"] == [("Add", 1)]
    # a subgraph reads an outer tensor and its own
    assert consumers["If_0/then_branch/w_then"] == [("Add", 1)]
    assert consumers["Loop_0/body/step"] == [("Add", 1)]
    found = roles.derive_roles(tensors, consumers)
    assert found["up_scales"] == roles.Role.STRUCTURAL  # carried exactly by default
    assert found["conv.bias"] == roles.Role.BIAS


# ------------------------------------------------------------------ the stream


def test_stream_carries_the_graph_and_decodes_to_the_encoders_reconstruction(
        model_file: Path) -> None:
    tensors, template = read_model_container(model_file)
    assert template is not None
    container = hls.Container(hls.SourceFormat.ONNX, template)
    result = codec.encode_with_recon(tensors, cfg(), hls.SourceFormat.ONNX, container=container)
    mps = hls.parse_model_parameter_set(hls.split_units(result.data)[0])
    assert mps.tool_flags & hls.TOOL_CONTAINER and mps.version_minor == 7
    assert mps.source_format == hls.SourceFormat.ONNX
    units = hls.split_units(result.data)
    assert units[1].unit_type == hls.UnitType.CONTAINER_UNIT
    assert units[2].unit_type == hls.UnitType.TENSOR_PARAMETER_SET
    decoded = codec.decode_detailed(result.data)
    assert decoded.ok and decoded.container == container
    dec = onnxio.model_bytes(decoded.tensors, decoded.container.data)
    rec = onnxio.model_bytes(result.recon, template)
    assert dec == rec
    out_dec, out_rec = run(dec), run(rec)
    for a, b in zip(out_dec, out_rec, strict=True):
        assert a.tobytes() == b.tobytes()
    # and close to the original network's output
    out_orig = run(model_file.read_bytes())
    assert codec.snr_db(out_orig[0], out_dec[0]) > 20


def test_without_a_container_the_stream_is_as_before(model_file: Path) -> None:
    tensors, template = read_model_container(model_file)
    plain = codec.encode(tensors, cfg())
    assert hls.UnitType.CONTAINER_UNIT not in [u.unit_type for u in hls.split_units(plain)]
    mps = hls.parse_model_parameter_set(hls.split_units(plain)[0])
    assert mps.version_minor == 6 and not mps.tool_flags & hls.TOOL_CONTAINER
    assert codec.decode_detailed(plain).container is None


def _stream(model_file: Path, **changes: object) -> bytes:
    tensors, template = read_model_container(model_file)
    assert template is not None
    return codec.encode(tensors, cfg(**changes), hls.SourceFormat.ONNX,
                        container=hls.Container(hls.SourceFormat.ONNX, template))


def test_a_changed_container_byte_is_caught(model_file: Path) -> None:
    data = bytearray(_stream(model_file))
    unit = hls.split_units(bytes(data))[1]
    data[unit.offset + hls.UNIT_HEADER_BYTES + 30] ^= 0x10  # inside the zlib data
    try:
        result = codec.decode_detailed(bytes(data))
    except BitstreamError:
        return  # the zlib check found it
    assert result.stream_ok is False  # else the stream MD5 does


def test_container_unit_errors(model_file: Path) -> None:
    data = _stream(model_file, IntegrityHash=0)
    units = hls.split_units(data)
    mps_end = units[1].offset
    cont = data[units[1].offset:units[2].offset]
    # TOOL_CONTAINER without the unit
    with pytest.raises(BitstreamError, match="no container unit"):
        codec.decode_detailed(data[:mps_end] + data[units[2].offset:])
    # the unit in another place
    moved = data[:mps_end] + data[units[2].offset:units[3].offset] + cont + \
        data[units[3].offset:]
    with pytest.raises(BitstreamError, match="container"):
        codec.decode_detailed(moved)
    # two of them
    with pytest.raises(BitstreamError, match="unexpected container_unit"):
        codec.decode_detailed(data[:units[2].offset] + cont + data[units[2].offset:])
    # announced size above the decoder's budget: refused before inflating
    with pytest.raises(MemoryBudgetError, match="limit of 100"):
        hls.parse_container_unit(units[1], max_bytes=100)
    # a wrong announced size
    payload = units[1].payload
    bad = hls._unit(hls.UnitType.CONTAINER_UNIT, payload[:2] + b"\x01" + payload[3:])
    with pytest.raises(BitstreamError):
        codec.decode_detailed(data[:mps_end] + bad + data[units[2].offset:])
    # unknown format / compression
    for pos in (0, 1):
        raw = bytearray(payload)
        raw[pos] = 77
        bad = hls._unit(hls.UnitType.CONTAINER_UNIT, bytes(raw))
        with pytest.raises(BitstreamError, match="unknown container"):
            codec.decode_detailed(data[:mps_end] + bad + data[units[2].offset:])
    # a container in a stream without TOOL_CONTAINER
    plain = codec.encode(read_model(model_file), cfg(IntegrityHash=0))
    pu = hls.split_units(plain)
    with pytest.raises(BitstreamError, match="unexpected container_unit"):
        codec.decode_detailed(plain[:pu[1].offset] + cont + plain[pu[1].offset:])


def test_container_unit_round_trip_both_compressions() -> None:
    c = hls.Container(hls.SourceFormat.ONNX, bytes(range(256)) * 40)
    for comp in (hls.CONTAINER_STORED, hls.CONTAINER_ZLIB):
        raw = hls.container_unit(c, comp)
        assert hls.parse_container_unit(hls.split_units(raw)[0]) == c
    assert len(hls.container_unit(c)) < len(hls.container_unit(c, hls.CONTAINER_STORED)) / 5


# ------------------------------------------------------------------ the apps


def test_apps_code_an_onnx_model_and_rebuild_it(model_file: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    bit, rec, dec = tmp_path / "m.bit", tmp_path / "rec.onnx", tmp_path / "dec.onnx"
    assert encoder_app.main(["-i", str(model_file), "-b", str(bit), "-o", str(rec)]) == 0
    out = capsys.readouterr().out
    assert "If_0/then_branch/w_then" in out and "Loop_0/body/step" in out
    assert decoder_app.main(["-b", str(bit), "-o", str(dec)]) == 0
    assert "format 1.7" in capsys.readouterr().out
    assert dec.read_bytes() == rec.read_bytes()
    outs = run(str(dec))
    for a, b in zip(outs, run(str(rec)), strict=True):
        assert a.tobytes() == b.tobytes()
    assert outs[1].shape == (1, 8, 12, 12)  # the Resize scales came back exactly
    orig, back = onnx.load(str(model_file)), onnx.load(str(dec))
    # structural constants bit-exact: the int64 shape, the bool, the Resize scales
    for name in ("shape", "trips", "keep_going", "up_scales"):
        a = next(t for t in orig.graph.initializer if t.name == name)
        b = next(t for t in back.graph.initializer if t.name == name)
        assert a.SerializeToString() == b.SerializeToString(), name
    # the rest of the graph is identical
    assert onnxio.strip_model(dec.read_bytes()) == onnxio.strip_model(model_file.read_bytes())
    # every tensor kept its dtype and shape
    t_orig, t_back = onnxio.read_onnx(model_file)[0], onnxio.read_onnx(dec)[0]
    assert [(k, v.dtype, v.shape) for k, v in t_orig.items()] == \
        [(k, v.dtype, v.shape) for k, v in t_back.items()]
    # a safetensors file from the same stream still works
    st = tmp_path / "dec.safetensors"
    assert decoder_app.main(["-b", str(bit), "-o", str(st)]) == 0
    assert list(read_model(st)) == EXPECTED_NAMES


def test_exact_coding_rebuilds_the_original_file(model_file: Path, tmp_path: Path) -> None:
    bit, dec = tmp_path / "m.bit", tmp_path / "dec.onnx"
    assert encoder_app.main(["-i", str(model_file), "-b", str(bit), "--Verbose=0",
                             "--LosslessMaxElements=100000"]) == 0
    assert decoder_app.main(["-b", str(bit), "-o", str(dec), "--Verbose=0"]) == 0
    assert dec.read_bytes() == model_file.read_bytes()


def test_onnx_output_needs_an_onnx_source(model_file: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    st = tmp_path / "m.safetensors"
    write_model(st, read_model(model_file))
    bit = tmp_path / "m.bit"
    assert encoder_app.main(["-i", str(st), "-b", str(bit), "-o", str(tmp_path / "r.onnx")]) != 0
    assert "needs an .onnx input" in capsys.readouterr().err
    assert encoder_app.main(["-i", str(st), "-b", str(bit), "--Verbose=0"]) == 0
    assert decoder_app.main(["-b", str(bit), "-o", str(tmp_path / "d.onnx")]) != 0
    assert "carries no ONNX graph" in capsys.readouterr().err
    assert not (tmp_path / "d.onnx").exists()
    with pytest.raises(ModelIOError, match="graph is not known"):
        write_model(tmp_path / "x.onnx", read_model(st))


def test_a_clear_error_without_the_onnx_package(model_file: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ModelIOError, match=r"needs the onnx package.*pip install 'nntm\[onnx\]'"):
        read_model(model_file)
    assert encoder_app.main(["-i", str(model_file), "-b", str(tmp_path / "m.bit")]) != 0
    err = capsys.readouterr().err
    assert "needs the onnx package" in err and "Traceback" not in err


def test_a_broken_onnx_file_is_a_clean_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\xfe not a protobuf")
    with pytest.raises(ModelIOError, match="bad.onnx"):
        read_model(bad)


def test_local_functions_and_scan_bodies_are_walked() -> None:
    c = numpy_helper.from_array(np.arange(4, dtype=np.float32), "c")
    fn = helper.make_function("my.domain", "AddC", ["a"], ["b"],
                              [helper.make_node("Constant", [], ["k"], value=c),
                               helper.make_node("Add", ["a", "k"], ["b"])],
                              [helper.make_opsetid("", 17)])
    scan_body = helper.make_graph(
        [helper.make_node("Constant", [], ["s"], value_floats=[1.0, 2.0, 3.0, 4.0]),
         helper.make_node("Add", ["st", "s"], ["st2"]),
         helper.make_node("Identity", ["st2"], ["o"])],
        "scan_body",
        [helper.make_tensor_value_info("st", TensorProto.FLOAT, [4]),
         helper.make_tensor_value_info("e", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("st2", TensorProto.FLOAT, [4]),
         helper.make_tensor_value_info("o", TensorProto.FLOAT, [4])])
    nodes = [helper.make_node("AddC", ["x"], ["y"], domain="my.domain", name="f"),
             helper.make_node("Scan", ["y", "seq"], ["fin", "outs"], name="scan",
                              num_scan_inputs=1, body=scan_body)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4]),
                     helper.make_tensor_value_info("seq", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("fin", TensorProto.FLOAT, [4]),
         helper.make_tensor_value_info("outs", TensorProto.FLOAT, [2, 4])])
    model = helper.make_model(graph, functions=[fn], opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("my.domain", 1)])
    model.ir_version = 8
    original = model.SerializeToString()
    tensors, template = onnxio.split_model(onnx.ModelProto.FromString(original))
    assert list(tensors) == ["scan/body/s", "my.domain:AddC/k"]
    assert onnxio.model_bytes(tensors, template) == original
    x, seq = np.ones(4, np.float32), np.ones((2, 4), np.float32)
    ort = pytest.importorskip("onnxruntime")
    fin, _ = ort.InferenceSession(original, providers=["CPUExecutionProvider"]).run(
        None, {"x": x, "seq": seq})
    assert fin.tolist() == [1 + 0 + 2 * 1, 1 + 1 + 2 * 2, 1 + 2 + 2 * 3, 1 + 3 + 2 * 4]


def test_no_single_bit_flip_of_the_container_unit_passes() -> None:
    """Every flip of the header and first bytes of ONNX_A_1's container unit, and of bytes
    spread over the rest, is refused or fails a check (all 5032 flips of the unit were
    errors when measured: the zlib check or the syntax)."""
    root = Path(__file__).resolve().parents[1]
    data = (root / "bitstreams" / "ONNX_A_1.bit").read_bytes()
    unit = hls.split_units(data)[1]
    end = unit.offset + hls.UNIT_HEADER_BYTES + len(unit.payload)
    positions = [*range(unit.offset, unit.offset + 24), *range(unit.offset + 24, end, 17)]
    for pos in positions:
        for bit in range(8):
            flipped = bytearray(data)
            flipped[pos] ^= 1 << bit
            try:
                result = codec.decode_detailed(bytes(flipped))
            except BitstreamError:
                continue
            assert not result.ok, (pos, bit)


def _detector(path: Path) -> None:
    """Conv + BatchNormalization + Resize, named as an export names them: the variances
    (``batch_norm_0.w_2``) reach 3e4, beyond QP1D -64's range."""
    rng = np.random.default_rng(0)
    var = np.concatenate([10 ** rng.uniform(-2, 4, 14), [1.2e4, 3e4]]).astype(np.float32)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in [
        ("det/conv_0.w_0", rng.normal(size=(16, 3, 3, 3)) * 0.2),
        ("det/batch_norm_0.w_0", 1 + rng.normal(size=16) * 0.1),
        ("det/batch_norm_0.b_0", rng.normal(size=16) * 0.1),
        ("det/batch_norm_0.w_1", rng.normal(size=16) * 3),
        ("det/batch_norm_0.w_2", var),
        ("det/up.scales", np.array([1, 1, 2, 2]))]]
    bn_in = ["c", "det/batch_norm_0.w_0", "det/batch_norm_0.b_0", "det/batch_norm_0.w_1",
             "det/batch_norm_0.w_2"]
    nodes = [helper.make_node("Conv", ["x", "det/conv_0.w_0"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", bn_in, ["b"]),
             helper.make_node("Resize", ["b", "", "det/up.scales"], ["y"], mode="nearest")]
    graph = helper.make_graph(
        nodes, "det", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 16, 16])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_issue_case_batchnorm_variances_of_an_export_at_qp1d_minus_64(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Roles from the graph find the variances whatever their name (QP1DMode stats gives
    them QP1D -64), the range fallback codes the one that does not fit, the encoder goes on,
    and the decoded file runs."""
    src, bit, dec = tmp_path / "det.onnx", tmp_path / "det.bit", tmp_path / "dec.onnx"
    _detector(src)
    assert encoder_app.main(["-i", str(src), "-b", str(bit), "--QP1DMode=stats",
                             "--QP1D=-64", "-o", str(tmp_path / "rec.onnx")]) == 0
    captured = capsys.readouterr()
    rows = {ln.split()[0]: ln.split() for ln in captured.out.splitlines()
            if ln.startswith("det/")}
    assert rows["det/batch_norm_0.w_1"][2] == "bn-mean" and rows["det/batch_norm_0.w_1"][4] == "-64"
    assert rows["det/batch_norm_0.w_2"][2] == "bn-var"
    assert rows["det/up.scales"][2:4] == ["structural", "L"]
    warnings = [ln for ln in captured.err.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "'det/batch_norm_0.w_2'" in warnings[0]
    assert "at QP -64" in warnings[0]
    assert decoder_app.main(["-b", str(bit), "-o", str(dec), "--Verbose=0"]) == 0
    assert dec.read_bytes() == (tmp_path / "rec.onnx").read_bytes()
    out, ref = run(str(dec))[0], run(str(src))[0]
    assert out.shape == (1, 16, 16, 16)
    assert codec.snr_db(ref, out) > 35


def test_rate_control_counts_the_container_unit(model_file: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    bit = tmp_path / "m.bit"
    target = 3000
    assert encoder_app.main(["-i", str(model_file), "-b", str(bit),
                             f"--TargetSize={target}"]) == 0
    size = bit.stat().st_size
    assert size <= target  # the estimate includes the container unit's bytes
    unit = hls.split_units(bit.read_bytes())[1]
    assert unit.unit_type == hls.UnitType.CONTAINER_UNIT
    assert size > target - 2 * len(unit.payload)  # and is not far below
