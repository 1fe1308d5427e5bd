"""nntm.cstream (the C stream reader through cffi) and DecoderApp --Decoder c|python.

- the constants cffi was given (nntm_stream_cffi.h) are the #defines of nntm_stream.h;
- every stored conformance stream decodes in C to the Python reader's tensors, byte for byte
  (dtype, shape, order, MD5s, stream MD5, container);
- negative C codes become the NntmError family with the C reader's text;
- DecoderApp writes the same files and prints the same report with either decoder, and falls
  back to python, saying why, when the C reader cannot take a stream.
"""

from __future__ import annotations

import json
import mmap
import random
import re
from collections.abc import Callable
from pathlib import Path

import nntm
import numpy as np
import pytest
from nntm import codec, cstream, hls, memory, streaming, streamio
from nntm.apps import decoder
from nntm.config import Config
from nntm.errors import (
    BitstreamError,
    CoreError,
    HashMismatchError,
    ModelIOError,
    NntmError,
    ReferenceModelError,
)

ROOT = Path(__file__).resolve().parents[1]
SUITE = json.loads((ROOT / "conformance" / "suite.json").read_text())["streams"]
STREAM_HEADER = ROOT / "lib" / "include" / "nntm" / "nntm_stream.h"
STREAM_CFFI = ROOT / "lib" / "include" / "nntm" / "nntm_stream_cffi.h"
_DEFINE = re.compile(r"^\s*#\s*define\s+(NNTM_[A-Z0-9_]+)\s+\(?(-?[0-9]+)\)?", re.M)


def _defines(path: Path) -> dict[str, int]:
    return {k: int(v) for k, v in _DEFINE.findall(path.read_text())}


def _ref(entry: dict) -> dict | None:
    return streamio.open_model(str(ROOT / entry["ref_model"])) if entry.get("ref_model") \
        else None


def test_cffi_stream_constants_equal_the_header() -> None:
    header, cffi = _defines(STREAM_HEADER), _defines(STREAM_CFFI)
    assert cffi, "no constants found in nntm_stream_cffi.h"
    for name, value in cffi.items():
        assert header.get(name) == value, name
    wanted = {k for k in header if k.startswith(("NNTM_STREAM_", "NNTM_CODING_", "NNTM_PRED_"))}
    assert wanted <= set(cffi), sorted(wanted - set(cffi))
    for name, value in cffi.items():
        assert getattr(cstream.lib, name) == value, name


@pytest.mark.parametrize("entry", SUITE, ids=[e["name"] for e in SUITE])
def test_c_tensors_equal_python_byte_for_byte(entry: dict) -> None:
    path = str(ROOT / entry["bitstream"])
    ref = _ref(entry)
    py = streaming.decode_file(path, keep=True, ref_model=ref).result
    with cstream.open_file(path, ref_model=ref) as s:
        assert s.num_tensors == len(py.reports) == entry["num_tensors"]
        assert s.version == py.version and s.source_format == py.source_format
        names = []
        for info, report in zip(s.tensors(), py.reports, strict=True):
            array, md5, ok = s.decode(info)
            expected = py.tensors[report.name]
            names.append(info.name)
            assert info.name == report.name and info.shape == report.shape
            assert array.dtype == expected.dtype and array.shape == expected.shape
            assert array.tobytes() == expected.tobytes(), info.name
            assert ok and md5.hex() == report.md5 == info.md5.hex()
            assert info.params_ok == report.params_ok
        assert names == list(py.tensors)
        assert s.check() == (py.stream_ok, py.stream_md5)
        container = s.container()
        if py.container is None:
            assert container is None
        elif cstream.HAVE_ZLIB:
            assert container == py.container


def test_open_memory_from_bytes_and_mmap_into_a_given_buffer() -> None:
    path = ROOT / "bitstreams" / "BASE_A_1.bit"
    data = path.read_bytes()
    expected = codec.decode(data)
    with cstream.open_memory(data) as s:
        info = s.info(0)
        out = np.full(info.shape, 7, dtype=info.dtype)
        address = out.__array_interface__["data"][0]
        md5, ok = s.decode_into(info, out)
        assert ok and out.__array_interface__["data"][0] == address  # filled in place
        assert out.tobytes() == expected[info.name].tobytes()
        with pytest.raises(ValueError):
            s.decode_into(info, np.empty(info.num_elements + 1, dtype=info.dtype))
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        with cstream.open_memory(m) as s:
            got = {i.name: s.decode(i)[0] for i in s.tensors()}
        m.close()  # the C view of the mapping was released on close
    assert {k: v.tobytes() for k, v in got.items()} == \
        {k: v.tobytes() for k, v in expected.items()}


def _data_unit_payload_offset(data: bytes) -> int:
    unit = next(u for u in hls.split_units(data) if u.unit_type == hls.UnitType.TENSOR_DATA_UNIT)
    return unit.offset + hls.UNIT_HEADER_BYTES + len(unit.payload) // 2


def test_errors_map_to_the_nntm_error_family(tmp_path: Path) -> None:
    data = (ROOT / "bitstreams" / "BASE_A_1.bit").read_bytes()
    # truncated: a BitstreamError with the C code and text
    with pytest.raises(BitstreamError, match="truncat") as info:
        cstream.open_memory(data[:-7])
    assert info.value.code == cstream.lib.NNTM_ERR_TRUNCATED  # type: ignore[attr-defined]
    # not a stream at all
    with pytest.raises(BitstreamError) as info:
        cstream.open_memory(b"\x00" * 64)
    assert info.value.code in (cstream.lib.NNTM_ERR_CORRUPT,  # type: ignore[attr-defined]
                               cstream.lib.NNTM_ERR_UNSUPPORTED)
    # a changed payload byte: a hash mismatch (or a corrupt payload) reported, never silent
    bad = bytearray(data)
    bad[_data_unit_payload_offset(data)] ^= 0x5A
    with cstream.open_memory(bytes(bad)) as s:
        results = []
        for i in s.tensors():
            try:
                results.append(s.decode(i)[2])
            except BitstreamError as exc:
                assert str(exc) and exc.code in (  # type: ignore[attr-defined]
                    cstream.lib.NNTM_ERR_CORRUPT, cstream.lib.NNTM_ERR_RANGE)
                results.append(False)
        assert results.count(False) == 1
    # a decompression bomb: MemoryBudgetError before anything is allocated
    with pytest.raises(memory.MemoryBudgetError, match="decompression bomb"):
        cstream.open_file(str(ROOT / "tests" / "data" / "bombs" / "bomb_one_16k.bit"))
    # a missing file, a missing reference model
    with pytest.raises(ModelIOError):
        cstream.open_file(str(tmp_path / "none.bit"))
    with cstream.open_file(str(ROOT / "bitstreams" / "PRED_A_1.bit")) as s:
        with pytest.raises(ReferenceModelError, match="reference model"):
            for i in s.tensors():
                s.decode(i)
    assert issubclass(cstream.error_class(cstream.lib.NNTM_ERR_HASH), HashMismatchError)


def test_a_reference_function_error_is_raised_as_it_is() -> None:
    def refuse(name: str) -> np.ndarray | None:
        raise ReferenceModelError(f"no '{name}' here")

    with cstream.open_file(str(ROOT / "bitstreams" / "PRED_A_1.bit"), ref_model=refuse) as s:
        with pytest.raises(ReferenceModelError, match="no 'enc.weight' here"):
            for i in s.tensors():
                s.decode(i)


_SECONDS = re.compile(r"\d+\.\d{3} s")
_CODE = re.compile(r" \(code -\d+\)$", re.M)


def _app(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rv = decoder.main(args)
    cap = capsys.readouterr()
    return rv, _SECONDS.sub("T s", cap.out), cap.err


@pytest.mark.parametrize("entry", SUITE, ids=[e["name"] for e in SUITE])
def test_decoder_app_same_output_with_either_decoder(entry: dict, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    ext = ".onnx" if "source_format onnx" in entry["features"] else ".safetensors"
    runs = {}
    python_reader = streaming.decode_file
    for which in ("c", "python"):
        def only_python(*args: object, _which: str = which, **kw: object) -> object:
            assert _which == "python", "--Decoder c used the Python reader"
            return python_reader(*args, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(streaming, "decode_file", only_python)
        out = tmp_path / f"{which}{ext}"
        args = ["-b", str(ROOT / entry["bitstream"]), "-o", str(out), "--Decoder", which]
        if entry.get("ref_model"):
            args += ["--RefModel", str(ROOT / entry["ref_model"])]
        rv, text, err = _app(args, capsys)
        assert rv == 0, err
        runs[which] = (text.replace(str(out), "OUT"), out.read_bytes(), err)
    assert runs["c"] == runs["python"]


def test_decoder_app_refusals_are_the_same(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    bomb = str(ROOT / "tests" / "data" / "bombs" / "bomb_one_16k.bit")
    data = (ROOT / "bitstreams" / "BASE_A_1.bit").read_bytes()
    bad = bytearray(data)
    bad[_data_unit_payload_offset(data)] ^= 0x5A
    (tmp_path / "bad.bit").write_bytes(bytes(bad))
    cases = [
        ["-b", bomb],
        ["-b", bomb, "--MaxExpansion=1099511627776", "--MaxMemory=1G"],
        ["-b", str(ROOT / "bitstreams" / "PRED_A_1.bit")],
        ["-b", str(ROOT / "bitstreams" / "BASE_A_1.bit"), "--MaxTensorElements=10"],
        ["-b", str(tmp_path / "bad.bit"), "-o", str(tmp_path / "x.safetensors")],
    ]
    for args in cases:
        c = _app(args + ["--Decoder", "c"], capsys)
        py = _app(args + ["--Decoder", "python"], capsys)
        assert c[0] == py[0] == 1, args
        # the same text, but for the "(code -3)" core.py appends to a per-kernel C error
        assert c == (py[0], py[1], _CODE.sub("", py[2])), args
    assert not (tmp_path / "x.safetensors").exists()


def test_decoder_app_falls_back_saying_why(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cstream, "HAVE_ZLIB", False)
    out = tmp_path / "m.onnx"
    rv, _, err = _app(["-b", str(ROOT / "bitstreams" / "ONNX_A_1.bit"), "-o", str(out)], capsys)
    assert rv == 0 and "--Decoder python" in err and "zlib" in err and out.is_file()
    rv, _, err = _app(["-b", str(ROOT / "bitstreams" / "BASE_A_1.bit")], capsys)
    assert rv == 0 and err == ""  # the C reader takes it: no note


def test_decoder_option_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        decoder.main(["--help"])
    text = capsys.readouterr().out
    assert "--Decoder" in text and "python" in text


def test_changed_streams_refused_alike(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    """10 random changes of every stored stream (test_cdec's): both decoders accept or refuse
    each alike, and name the same problem but for a few that the C reader words otherwise
    (when a stream is wrong in two places they may name different ones first)."""
    from test_cdec import _mutate

    path = tmp_path / "m.bit"
    differ, total = [], 0
    for entry in SUITE:
        data = (ROOT / entry["bitstream"]).read_bytes()
        rng = random.Random(entry["name"] + "x")
        for _ in range(10):
            path.write_bytes(_mutate(data, rng))
            args = ["-b", str(path), "--Verbose", "0"]
            if entry.get("ref_model"):
                args += ["--RefModel", str(ROOT / entry["ref_model"])]
            c = _app(args + ["--Decoder", "c"], capsys)
            py = _app(args + ["--Decoder", "python"], capsys)
            assert c[0] == py[0], (entry["name"], c, py)
            total += 1
            if c[2] != _CODE.sub("", py[2]):
                differ.append((c[2], py[2]))
    assert len(differ) <= total // 50, differ  # 2 of 390 when written


# ---------------------------------------------------------------- nntm.decode through C

_FAMILY = (memory.MemoryBudgetError, HashMismatchError, ReferenceModelError, ModelIOError,
           BitstreamError, CoreError, NntmError)


def _family(exc: BaseException) -> type[BaseException]:
    """The NntmError class a caller tells apart (CBitstreamError is a BitstreamError)."""
    return next((c for c in _FAMILY if isinstance(exc, c)), type(exc))


def _outcome(run: Callable[[], codec.DecodeResult]) -> object:
    """What a decode gave, comparably: every tensor and report (not its time) and the
    stream-level check, or the class of its error."""
    try:
        r = run()
    except NntmError as exc:
        return _family(exc)
    return ([(k, v.dtype.str, v.shape, v.tobytes()) for k, v in r.tensors.items()],
            [(x.name, x.shape, x.dtype, x.md5, x.data_ok, x.params_ok) for x in r.reports],
            r.source_format, r.stream_ok, r.version, r.stream_md5, r.container)


@pytest.mark.parametrize("entry", SUITE, ids=[e["name"] for e in SUITE])
def test_nntm_decode_is_the_c_reader_and_equals_the_python_reader(
        entry: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    data = (ROOT / entry["bitstream"]).read_bytes()
    ref = _ref(entry)
    py = _outcome(lambda: codec.decode_detailed(data, ref_model=ref, decoder="python"))
    assert isinstance(py, tuple), py
    python_reader = codec.decode_detailed_python

    def not_python(*args: object, **kw: object) -> codec.DecodeResult:
        raise AssertionError("decoder='c' used the Python reader")

    monkeypatch.setattr(codec, "decode_detailed_python", not_python)
    for threads in (1, 2):
        assert _outcome(lambda t=threads: nntm.decode_detailed(data, ref_model=ref,
                                                               threads=t)) == py
    tensors = nntm.decode(data, ref_model=ref)
    assert [(k, v.tobytes()) for k, v in tensors.items()] == [(k, b) for k, _, _, b in py[0]]
    monkeypatch.setattr(codec, "decode_detailed_python", python_reader)
    assert nntm.decode_python(data, ref_model=ref).keys() == tensors.keys()
    # the CU records come from the Python reader only
    assert codec.decode_detailed(data, ref_model=ref, trace=True).cus.keys() == \
        codec.decode_detailed(data, ref_model=ref, trace=True, decoder="python").cus.keys()


def test_nntm_decode_falls_back_to_python_and_checks_its_argument(
        monkeypatch: pytest.MonkeyPatch) -> None:
    data = (ROOT / "bitstreams" / "ONNX_A_1.bit").read_bytes()
    want = _outcome(lambda: codec.decode_detailed(data, decoder="python"))
    monkeypatch.setattr(cstream, "HAVE_ZLIB", False)
    called = []
    python_reader = codec.decode_detailed_python

    def spy(*args: object, **kw: object) -> codec.DecodeResult:
        called.append(1)
        return python_reader(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(codec, "decode_detailed_python", spy)
    assert _outcome(lambda: codec.decode_detailed(data)) == want and called
    with pytest.raises(ValueError, match="decoder"):
        nntm.decode(data, decoder="cpp")


def test_nntm_decode_refusals_are_the_same_class() -> None:
    bomb = (ROOT / "tests" / "data" / "bombs" / "bomb_one_16k.bit").read_bytes()
    data = (ROOT / "bitstreams" / "BASE_A_1.bit").read_bytes()
    bad = bytearray(data)
    bad[_data_unit_payload_offset(data)] ^= 0x5A
    cases: list[tuple[bytes, dict]] = [
        (bomb, {}), (bomb, {"max_expansion": 1 << 40, "max_memory": 1 << 30}),
        ((ROOT / "bitstreams" / "PRED_A_1.bit").read_bytes(), {}),
        (data, {"max_elements": 10}), (data, {"max_memory": 1000}), (data[:-7], {}),
        (b"", {}), (b"\x00" * 64, {}), (bytes(bad), {}),
    ]
    for stream, kw in cases:
        c = py = None
        for which in ("c", "python"):
            try:
                nntm.decode(stream, decoder=which, **kw)
                got: object = "decoded"
            except NntmError as exc:
                got = (_family(exc), str(exc) if _family(exc) is not BitstreamError else "")
            c, py = (got, py) if which == "c" else (c, got)
        assert c == py and c != "decoded", (kw, c, py)


def test_changed_streams_alike_through_nntm_decode() -> None:
    """10 random changes of every stored stream: nntm.decode (C) decodes to the Python
    reader's tensors and reports, or refuses with the same NntmError class."""
    from test_cdec import _mutate

    total = 0
    for entry in SUITE:
        data = (ROOT / entry["bitstream"]).read_bytes()
        ref = _ref(entry)
        rng = random.Random(entry["name"] + "d")
        for _ in range(10):
            changed = _mutate(data, rng)
            c = _outcome(lambda d=changed, r=ref: codec.decode_detailed(d, ref_model=r))
            py = _outcome(lambda d=changed, r=ref: codec.decode_detailed(d, ref_model=r,
                                                                        decoder="python"))
            assert c == py, (entry["name"], c if not isinstance(c, tuple) else "decoded",
                             py if not isinstance(py, tuple) else "decoded")
            total += 1
    assert total == 10 * len(SUITE)


# ------------------------------------------------------------------- the thread budget

def _entry_point_stream(tensors: int = 6) -> bytes:
    """Tensors of 16 substreams each [1.8]."""
    rng = np.random.default_rng(3)
    model = {f"l{i}.weight": np.cumsum(rng.normal(0, 0.01, (256, 384)), axis=0)
             .astype(np.float32) for i in range(tensors)}
    return nntm.encode(model, Config.defaults().replace(EntryPointElements=6144, QP=-30))


def test_threads_bounded_by_the_budget() -> None:
    """At most N threads decode at once with N tensors at once, each with substreams (the
    budget's peak counts the threads as they start and stop, apart from its slots: before
    the budget every tensor of N at once had N substream threads, up to N * N)."""
    data = _entry_point_stream()
    assert hls.parse_model_parameter_set(hls.split_units(data)[0]).tool_flags \
        & hls.TOOL_ENTRY_POINTS
    outputs, peaks = [], {}
    for threads in (1, 2, 3):
        layout = streaming.scan_layout(data, len(data), codec.DEFAULT_MAX_ELEMENTS, None,
                                       memory.DEFAULT_MAX_EXPANSION, threads, keep=True)
        assert layout.workers == threads
        got: list[cstream.ThreadBudget] = []
        result = cstream.decode_layout(data, layout, codec.DEFAULT_MAX_ELEMENTS, None, threads,
                                       keep=True, on_budget=got.append)
        outputs.append({k: v.tobytes() for k, v in result.tensors.items()})
        peaks[threads] = got[0].peak
    assert outputs[0] == outputs[1] == outputs[2]
    assert peaks[1] == 1 and 1 <= peaks[2] <= 2 and 1 <= peaks[3] <= 3, peaks


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_stream_md5_hashed_once_and_still_checked(threads: int,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """nntm.decode through C: of the worker streams only the first computes the stream MD5
    [1.6] (skip_stream_md5 on the others), and a stream whose only change is its stored
    stream MD5 is still found out with any number of threads."""
    data = (ROOT / "bitstreams" / "INTEGRITY_A_1.bit").read_bytes()  # 17 tensors, stream MD5
    opened: list[bool] = []
    real = cstream.CStream.__init__

    def recording(self: cstream.CStream, *args: object, **kwargs: object) -> None:
        opened.append(bool(args[8] if len(args) > 8 else kwargs.get("stream_md5", True)))
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cstream.CStream, "__init__", recording)
    good = codec.decode_detailed(data, threads=threads)
    assert good.stream_ok is True
    assert opened[0] and not any(opened[1:]) and len(opened) == min(threads, 17)
    bad = bytearray(data)
    bad[-1] ^= 0x01  # the last byte of end_of_stream's stream_md5: nothing else changes
    assert codec.decode_detailed(bytes(bad), threads=threads).stream_ok is False


def test_python_reader_shares_one_budget(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """DecoderApp --Decoder python (streaming.decode_file): its N tensor workers take their
    substream threads from one budget of N, so at most N threads decode at once (before,
    each worker had N substream threads of its own); the output is the same for any N."""
    data = _entry_point_stream()
    path = tmp_path / "ep.bit"
    path.write_bytes(data)
    made: list[cstream.ThreadBudget] = []

    class Recording(cstream.ThreadBudget):
        def __init__(self, threads: int) -> None:
            super().__init__(threads)
            made.append(self)

    monkeypatch.setattr(cstream, "ThreadBudget", Recording)
    outputs = []
    for threads in (1, 2, 3):
        result = streaming.decode_file(str(path), keep=True, threads=threads).result
        outputs.append({k: v.tobytes() for k, v in result.tensors.items()})
        if threads == 1:
            assert not made  # one thread: no budget needed
            continue
        assert len(made) == 1 and made[0].threads == threads
        assert 1 <= made[0].peak <= threads, (threads, made[0].peak)
        made.clear()
    assert outputs[0] == outputs[1] == outputs[2]


def test_a_lone_tensor_takes_the_free_threads() -> None:
    """One tensor at a time (a tensor predicts from an earlier one, or one tensor): its
    substreams run on the budget's other threads (the C library starts them as slots are
    free), the output the same."""
    data = _entry_point_stream(1)
    with cstream.ThreadBudget(3) as budget:
        streams = [cstream.open_memory(data, threads=3, budget=budget)]
        info = streams[0].info(0)
        array, md5, ok = streams[0].decode(info)
        streams[0].close()
        assert ok and 1 <= budget.peak <= 3
    assert array.tobytes() == nntm.decode(data, decoder="python")[info.name].tobytes()


@pytest.mark.skipif(not cstream.HAVE_ZLIB, reason="the extension was built without zlib")
def test_decoder_app_container_limit_is_the_same(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A container unit that inflates far beyond the stream (a 200 KB doc string, tiny
    tensors) is refused by MaxExpansion through --Decoder c as through --Decoder python: the
    C reader is opened without limits, so DecoderApp checks the container first."""
    onnx = pytest.importorskip("onnx")
    from nntm.apps import encoder
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.linspace(-1, 1, 16, dtype=np.float32).reshape(4, 4), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w],
        doc_string="a" * 200_000)
    src = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(src))
    bit = tmp_path / "m.bit"
    assert encoder.main(["-c", str(ROOT / "cfg" / "encoder_default.cfg"), "-i", str(src),
                         "-b", str(bit)]) == 0
    capsys.readouterr()
    args = ["-b", str(bit), "-o", str(tmp_path / "out.onnx"), "--MaxExpansion=100"]
    c = _app(args + ["--Decoder", "c"], capsys)
    py = _app(args + ["--Decoder", "python"], capsys)
    assert py[0] == 1 and "container" in py[2], py
    assert c == py
    assert not (tmp_path / "out.onnx").exists()
