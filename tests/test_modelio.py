"""Tests of nntm.modelio: reading and writing model files."""

from __future__ import annotations

import io
import json
import math
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nntm import modelio
from nntm.errors import ModelIOError, NntmError
from nntm.modelio import SAFETENSORS_DTYPES, model_format, read_model, write_model

BF16 = np.dtype(ml_dtypes.bfloat16)
DTYPES = list(SAFETENSORS_DTYPES.values())
FORMATS = ("safetensors", "npz")

# tmp_path is reused across hypothesis examples; every example writes its own file names
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@st.composite
def arrays(draw: st.DrawFn, dtype: np.dtype[Any] | None = None) -> np.ndarray:
    """Any supported dtype, any bit pattern (NaN payloads too), shapes incl. 0-d and empty."""
    if dtype is None:
        dtype = draw(st.sampled_from(DTYPES))
    shape = tuple(draw(st.lists(st.integers(0, 5), max_size=4)))
    count = math.prod(shape)
    raw = draw(st.binary(min_size=count * dtype.itemsize, max_size=count * dtype.itemsize))
    if dtype == np.bool_:
        return (np.frombuffer(raw, np.uint8) & 1).astype(np.bool_).reshape(shape)
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=12)
models = st.dictionaries(names.filter(lambda n: n != "__metadata__"), arrays(), max_size=6)


def assert_same_model(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want)  # names and order
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        assert got[key].shape == want[key].shape, key
        assert got[key].tobytes() == want[key].tobytes(), key
        assert got[key].flags.c_contiguous and got[key].flags.writeable


def no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


# -- round trips ----------------------------------------------------------------------


@SETTINGS
@given(model=models, fmt=st.sampled_from(FORMATS))
def test_round_trip(tmp_path: Path, model: dict[str, np.ndarray], fmt: str) -> None:
    path = tmp_path / f"m.{fmt}"
    write_model(path, model)
    assert_same_model(read_model(path), model)
    # and a second round trip gives the very same bytes
    again = tmp_path / f"again.{fmt}"
    write_model(again, read_model(path))
    if fmt == "safetensors":
        assert again.read_bytes() == path.read_bytes()
    assert no_temp_files(tmp_path)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_dtype_0d_and_empty(tmp_path: Path, fmt: str, dtype: np.dtype[Any]) -> None:
    model = {
        "scalar": np.ones((), dtype=dtype),
        "empty": np.zeros((3, 0, 2), dtype=dtype),
        "odd": np.arange(3 * 5 * 7).astype(dtype).reshape(3, 5, 7),
        "fortran": np.asfortranarray(np.arange(6).astype(dtype).reshape(2, 3)),
    }
    path = tmp_path / f"m.{fmt}"
    write_model(path, model)
    got = read_model(path)
    assert list(got) == list(model)
    for key, arr in model.items():
        assert got[key].dtype == dtype
        assert got[key].shape == arr.shape
        assert got[key].tobytes() == arr.tobytes()  # C order


def test_bf16_values_survive(tmp_path: Path) -> None:
    values = np.array([1.5, -2.0, np.inf, 3.140625], dtype=BF16)
    for fmt in FORMATS:
        path = tmp_path / f"b.{fmt}"
        write_model(path, {"w": values})
        got = read_model(path)["w"]
        assert got.dtype == BF16
        assert got.view(np.uint16).tolist() == values.view(np.uint16).tolist()


def test_explicit_format_and_order(tmp_path: Path) -> None:
    model = {name: np.full((2,), i, np.int32) for i, name in enumerate("zyxabc")}
    path = tmp_path / "model.bin"
    write_model(path, model, fmt="npz")
    assert zipfile.is_zipfile(path)
    write_model(tmp_path / "m.safetensors", model)
    got = read_model(tmp_path / "m.safetensors")
    assert list(got) == list("zyxabc")
    header = _header(tmp_path / "m.safetensors")
    assert [v["data_offsets"][0] for v in header.values()] == [0, 8, 16, 24, 32, 40]


def test_byte_order_normalised(tmp_path: Path) -> None:
    big = np.arange(4, dtype=">i4")
    for fmt in FORMATS:
        write_model(tmp_path / f"m.{fmt}", {"big": big})
        got = read_model(tmp_path / f"m.{fmt}")["big"]
        assert got.dtype == np.dtype("<i4")
        assert got.tolist() == [0, 1, 2, 3]


def test_npz_names_that_clash_in_np_load(tmp_path: Path) -> None:
    model = {"a": np.zeros(1, np.uint8), "a.npy": np.ones(2, np.uint8), "": np.ones(3, np.int8)}
    write_model(tmp_path / "m.npz", model)
    assert_same_model(read_model(tmp_path / "m.npz"), model)


def test_npz_from_numpy(tmp_path: Path) -> None:
    model = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([True])}
    np.savez(tmp_path / "np.npz", **model)
    assert_same_model(read_model(tmp_path / "np.npz"), model)
    np.savez_compressed(tmp_path / "npc.npz", **model)
    assert_same_model(read_model(tmp_path / "npc.npz"), model)
    # numpy's own writer stores bfloat16 as '<V2': it comes back as bfloat16
    np.savez(tmp_path / "bf.npz", w=np.arange(3, dtype=BF16))
    assert read_model(tmp_path / "bf.npz")["w"].dtype == BF16


def test_npy(tmp_path: Path) -> None:
    np.save(tmp_path / "weights.npy", np.arange(5, dtype=np.int16))
    got = read_model(tmp_path / "weights.npy")
    assert list(got) == ["weights"]
    assert got["weights"].tolist() == [0, 1, 2, 3, 4]


def test_pytorch(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    state = {
        "w": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "h": torch.tensor([1.5, -2.0], dtype=torch.bfloat16),
        "n": torch.tensor(7, dtype=torch.int64),
    }
    torch.save(state, tmp_path / "m.pt")
    got = read_model(tmp_path / "m.pt")
    assert list(got) == ["w", "h", "n"]
    assert got["w"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert got["h"].dtype == BF16 and got["h"].astype(np.float32).tolist() == [1.5, -2.0]
    assert got["n"].shape == () and got["n"].dtype == np.int64
    torch.save({"w": state["w"], "step": 3}, tmp_path / "extra.pt")
    with pytest.raises(ModelIOError, match="'step' holds a int object, not a tensor"):
        read_model(tmp_path / "extra.pt")
    torch.save([state["w"]], tmp_path / "list.pth")
    with pytest.raises(ModelIOError, match="does not hold a state dict"):
        read_model(tmp_path / "list.pth")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ModelIOError, match="junk.pt"):
        read_model(tmp_path / "junk.pt")
    torch.save({"c": torch.zeros(2, dtype=torch.complex64)}, tmp_path / "c.pt")
    with pytest.raises(ModelIOError, match="unsupported dtype"):
        read_model(tmp_path / "c.pt")


def test_model_format() -> None:
    assert model_format("a/b.safetensors") == "safetensors"
    assert model_format("B.NPZ") == "npz"
    assert model_format("x.npy") == "npy"
    assert model_format("x.pt") == model_format("x.pth") == "pytorch"
    assert model_format("x.ONNX") == "onnx"  # read and written with the onnx extra
    with pytest.raises(ModelIOError, match=r"'x\.tflite'.*unknown extension"):
        model_format("x.tflite")


# -- compatibility with the safetensors package -----------------------------------------


@SETTINGS
@given(model=models)
def test_safetensors_package_reads_ours(tmp_path: Path, model: dict[str, np.ndarray]) -> None:
    safetensors = pytest.importorskip("safetensors")
    path = tmp_path / "ours.safetensors"
    write_model(path, model)
    # deserialize gives raw bytes for every dtype, bfloat16 included
    theirs = dict(safetensors.deserialize(path.read_bytes()))
    assert set(theirs) == set(model)
    code_of = {v: k for k, v in SAFETENSORS_DTYPES.items()}
    for key, arr in model.items():
        assert theirs[key]["dtype"] == code_of[arr.dtype]
        assert list(theirs[key]["shape"]) == list(arr.shape)
        assert bytes(theirs[key]["data"]) == arr.tobytes()
    # and the numpy front end loads the same values
    np_model = {k: v for k, v in model.items() if v.dtype != BF16}
    if np_model:
        write_model(path, np_model)
        from safetensors.numpy import load_file

        loaded = load_file(str(path))
        for key, arr in np_model.items():
            assert loaded[key].dtype == arr.dtype
            assert loaded[key].tobytes() == arr.tobytes()


@SETTINGS
@given(model=models)
def test_we_read_safetensors_package(tmp_path: Path, model: dict[str, np.ndarray]) -> None:
    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file

    model = {k: v for k, v in model.items() if v.dtype != BF16}
    path = tmp_path / "theirs.safetensors"
    save_file(model, str(path))
    got = read_model(path)
    assert set(got) == set(model)
    for key, arr in model.items():
        assert got[key].dtype == arr.dtype
        assert got[key].shape == arr.shape
        assert got[key].tobytes() == arr.tobytes()
    # written back in the order read (their layout order), the bytes are identical
    again = tmp_path / "again.safetensors"
    write_model(again, got)
    assert again.read_bytes() == path.read_bytes()


def test_we_read_safetensors_package_bf16(tmp_path: Path) -> None:
    safetensors = pytest.importorskip("safetensors")
    if not hasattr(safetensors, "TensorSpec"):
        pytest.skip("this safetensors version has no TensorSpec")
    arrays_ = {"h": np.array([1.0, -0.5, 3.0], dtype=BF16), "s": np.array(2.0, dtype=BF16)}
    specs = {
        k: safetensors.TensorSpec(
            dtype="bfloat16", shape=list(a.shape), data_ptr=a.ctypes.data, data_len=a.nbytes
        )
        for k, a in arrays_.items()
    }
    path = tmp_path / "bf.safetensors"
    path.write_bytes(bytes(safetensors.serialize(specs, metadata={"format": "np"})))
    got = read_model(path)
    for key, arr in arrays_.items():
        assert got[key].dtype == BF16
        assert got[key].shape == arr.shape
        assert got[key].tobytes() == arr.tobytes()


# -- corrupt and truncated files --------------------------------------------------------


def _header(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n])


def _craft(path: Path, header: Any, buffer: bytes, header_len: int | None = None) -> Path:
    raw = json.dumps(header).encode() if not isinstance(header, bytes) else header
    n = len(raw) if header_len is None else header_len
    path.write_bytes(n.to_bytes(8, "little") + raw + buffer)
    return path


def _sample_model() -> dict[str, np.ndarray]:
    return {
        "w": np.arange(12, dtype=np.float32).reshape(3, 4),
        "h": np.array([1.0, 2.0], dtype=BF16),
        "b": np.array(True),
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_truncation_is_an_error(tmp_path: Path, fmt: str) -> None:
    good = tmp_path / f"good.{fmt}"
    write_model(good, _sample_model())
    data = good.read_bytes()
    bad = tmp_path / f"bad.{fmt}"
    for cut in range(len(data)):
        bad.write_bytes(data[:cut])
        with pytest.raises(ModelIOError, match="bad"):
            read_model(bad)


@pytest.mark.parametrize(
    ("header", "buffer", "message"),
    [
        (b"not json", b"", "not JSON"),
        (b"[1, 2]", b"", "not a JSON object"),
        ({"w": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}}, b"x", "unknown dtype"),
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"1234", "outside"),
        ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"12345678", "needs 12"),
        ({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"1234", "bad shape"),
        ({"w": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, b"1234", "bad shape"),
        ({"w": {"dtype": "F32", "shape": [0, 2**70], "data_offsets": [0, 0]}}, b"", "bad shape"),
        ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, b"1234", "data_offsets"),
        ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}, b"1234", "data_offsets"),
        ({"w": {"dtype": "F32", "shape": [1]}}, b"1234", "lacks data_offsets"),
        ({"w": [1, 2]}, b"", "not an object"),
        (
            {
                "a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
                "b": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]},
            },
            b"123",
            "overlap",
        ),
        (
            {
                "a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
                "b": {"dtype": "U8", "shape": [1], "data_offsets": [2, 3]},
            },
            b"123",
            "gap",
        ),
        ({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}, b"12", "after the last"),
        (
            b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
            b'"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}',
            b"1",
            "appears twice",
        ),
        ({"__metadata__": {"x": 1}}, b"", "__metadata__"),
    ],
)
def test_corrupt_safetensors(tmp_path: Path, header: Any, buffer: bytes, message: str) -> None:
    path = _craft(tmp_path / "bad.safetensors", header, buffer)
    with pytest.raises(ModelIOError, match=message) as exc:
        read_model(path)
    assert str(path) in str(exc.value)


def test_huge_header_length(tmp_path: Path) -> None:
    path = _craft(tmp_path / "big.safetensors", {}, b"", header_len=1 << 40)
    with pytest.raises(ModelIOError, match="header length"):
        read_model(path)


def test_metadata_and_empty_file_are_fine(tmp_path: Path) -> None:
    path = _craft(
        tmp_path / "meta.safetensors",
        {
            "__metadata__": {"format": "pt"},
            "w": {"dtype": "I16", "shape": [2], "data_offsets": [0, 4]},
        },
        b"\x01\x00\x02\x00",
    )
    assert read_model(path)["w"].tolist() == [1, 2]
    write_model(tmp_path / "none.safetensors", {})
    assert read_model(tmp_path / "none.safetensors") == {}
    write_model(tmp_path / "none.npz", {})
    assert read_model(tmp_path / "none.npz") == {}


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), fmt=st.sampled_from(FORMATS))
def test_mutated_files_never_crash(tmp_path: Path, data: st.DataObject, fmt: str) -> None:
    good = io.BytesIO()
    path = tmp_path / f"good.{fmt}"
    write_model(path, _sample_model())
    good = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(good) - 1))
        good[pos] = data.draw(st.integers(0, 255))
    bad = tmp_path / f"mutated.{fmt}"
    bad.write_bytes(bytes(good))
    try:
        model = read_model(bad)
    except ModelIOError:
        return
    for arr in model.values():
        assert isinstance(arr, np.ndarray) and arr.dtype in DTYPES


def test_npz_problems(tmp_path: Path) -> None:
    np.savez(tmp_path / "obj.npz", o=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ModelIOError, match="pickle"):
        read_model(tmp_path / "obj.npz")
    np.savez(tmp_path / "c.npz", c=np.zeros(2, np.complex64))
    with pytest.raises(ModelIOError, match=r"tensor 'c'.*unsupported dtype complex64"):
        read_model(tmp_path / "c.npz")
    np.save(tmp_path / "plain.npy", np.zeros(2))
    (tmp_path / "plain.npz").write_bytes((tmp_path / "plain.npy").read_bytes())
    with pytest.raises(ModelIOError, match="plain.npz"):
        read_model(tmp_path / "plain.npz")
    buf = io.BytesIO()
    np.save(buf, np.zeros(1))
    with warnings.catch_warnings(), zipfile.ZipFile(tmp_path / "dup.npz", "w") as zf:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        zf.writestr("x.npy", buf.getvalue())
        zf.writestr("x.npy", buf.getvalue())
    with pytest.raises(ModelIOError, match="appears twice"):
        read_model(tmp_path / "dup.npz")


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(ModelIOError, match=r"missing\.safetensors' does not exist"):
        read_model(missing)
    with pytest.raises(ModelIOError, match="unknown extension"):
        read_model(tmp_path / "model.tflite")
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(ModelIOError, match="directory"):
        read_model(tmp_path / "d.npz")
    assert issubclass(ModelIOError, NntmError)


# -- writing: errors and atomicity -----------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_bad_input_writes_nothing(tmp_path: Path, fmt: str) -> None:
    target = tmp_path / f"out.{fmt}"
    cases: list[tuple[Any, str]] = [
        ({"a": np.zeros(2), 3: np.zeros(2)}, "not a string"),
        ({"a": np.zeros(2), "c": np.zeros(2, np.complex128)}, "unsupported dtype"),
        ({"a": np.zeros(2), "s": np.array(["x"])}, "unsupported dtype"),
        ({"a": [1.0, 2.0]}, "not a numpy array"),
        ([np.zeros(2)], "mapping"),
        ({"a\udc80": np.zeros(2)}, "not valid Unicode"),
    ]
    if fmt == "safetensors":
        cases.append(({"__metadata__": np.zeros(1)}, "reserved"))
    else:
        cases.append(({"a\0b": np.zeros(1)}, "NUL"))
    for tensors, message in cases:
        with pytest.raises(ModelIOError, match=message):
            write_model(target, tensors)
        assert not target.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_failed_write_leaves_old_file_and_no_temp(
    tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / f"out.{fmt}"
    target.write_bytes(b"old contents")
    calls = {"n": 0}
    real_write = np.lib.format.write_array
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    def failing_write_array(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk on fire")
        real_write(*args, **kwargs)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(ModelIOError, match="No space left"):
        write_model(target, _sample_model())
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    monkeypatch.setattr(os, "fsync", real_fsync)

    if fmt == "npz":
        monkeypatch.setattr(np.lib.format, "write_array", failing_write_array)
        with pytest.raises(RuntimeError, match="disk on fire"):
            write_model(target, _sample_model())
        assert target.read_bytes() == b"old contents"
        assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
        monkeypatch.setattr(np.lib.format, "write_array", real_write)

    write_model(target, _sample_model())
    assert_same_model(read_model(target), _sample_model())
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_write_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelIOError, match="no-such-dir"):
        write_model(tmp_path / "no-such-dir" / "m.safetensors", {"a": np.zeros(1)})
    with pytest.raises(ModelIOError, match="unknown extension"):
        write_model(tmp_path / "m.tflite", {"a": np.zeros(1)})
    with pytest.raises(ModelIOError, match="graph is not known"):  # ONNX needs its graph
        write_model(tmp_path / "m.onnx", {"a": np.zeros(1)})
    with pytest.raises(ModelIOError, match="writable formats"):
        write_model(tmp_path / "m.npy", {"a": np.zeros(1)})
    with pytest.raises(ModelIOError, match="writable formats"):
        write_model(tmp_path / "m.bin", {"a": np.zeros(1)}, fmt="pytorch")


def test_written_file_mode_follows_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_model(tmp_path / "m.npz", {"a": np.zeros(1)})
    finally:
        os.umask(old)
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o644


def test_module_all() -> None:
    for name in modelio.__all__:
        assert hasattr(modelio, name)
