"""nntm-dec, the C decoder (lib/tools/nntm_dec.c over lib/decoder/stream_reader.c).

Every stored conformance stream decodes to the MD5s of its .md5 file and to a safetensors
file byte-identical to DecoderApp's; changed streams are accepted or refused exactly as the
Python reader does.  Skipped when build/nntm-dec is not built (scripts/run_tests.sh builds it).
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
from pathlib import Path

import pytest
from nntm import codec, hls, memory
from nntm.apps import decoder
from nntm.modelio import read_model

ROOT = Path(__file__).resolve().parents[1]
NNTM_DEC = Path(os.environ.get("NNTM_DEC", ROOT / "build" / "nntm-dec"))
ALL_STREAMS = json.loads((ROOT / "conformance" / "suite.json").read_text())["streams"]
# nntm-dec reads formats 1.0 to 1.8 (a newer stream is refused cleanly)
C_MAX_VERSION = (1, 8)


def _version(entry: dict) -> tuple[int, ...]:
    return tuple(int(x) for x in str(entry["format_version"]).split("."))


SUITE = [e for e in ALL_STREAMS if _version(e) <= C_MAX_VERSION]
NEWER = [e for e in ALL_STREAMS if _version(e) > C_MAX_VERSION]
MD5_LINE = re.compile(r"\[MD5: ([0-9a-f]{32}) (OK|MISMATCH)")

pytestmark = pytest.mark.skipif(not NNTM_DEC.is_file(),
                                reason=f"{NNTM_DEC} not built (cmake --build build)")


def _run(bitstream: Path, out: Path | None = None, ref: Path | None = None,
         *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(NNTM_DEC), "-b", str(bitstream)]
    if out is not None:
        cmd += ["-o", str(out)]
    if ref is not None:
        cmd += ["--RefModel", str(ref)]
    return subprocess.run(cmd + list(extra), capture_output=True, text=True, timeout=120)


def _ref(entry: dict) -> Path | None:
    return ROOT / entry["ref_model"] if entry.get("ref_model") else None


def _expected_md5s(entry: dict) -> list[tuple[str, str]]:
    lines = (ROOT / entry["md5_file"]).read_text().splitlines()
    return [(line[:32], line[34:]) for line in lines if line.strip()]


@pytest.mark.parametrize("entry", SUITE, ids=[e["name"] for e in SUITE])
def test_conformance_stream(entry: dict, tmp_path: Path) -> None:
    bitstream = ROOT / entry["bitstream"]
    ref = _ref(entry)
    out_c = tmp_path / "c.safetensors"
    proc = _run(bitstream, out_c, ref)
    assert proc.returncode == 0, proc.stderr
    got = MD5_LINE.findall(proc.stdout)
    expected = _expected_md5s(entry)
    assert [h for h, _ in got] == [h for h, _ in expected]
    assert all(status == "OK" for _, status in got)
    lines = [line for line in proc.stdout.splitlines() if "[MD5:" in line]
    for line, (_, name) in zip(lines, expected, strict=True):
        assert line.startswith(name) or "\\x" in line
    out_py = tmp_path / "py.safetensors"
    argv = ["-b", str(bitstream), "-o", str(out_py)]
    if ref is not None:
        argv += ["--RefModel", str(ref)]
    assert decoder.main(argv) == 0
    assert out_c.read_bytes() == out_py.read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _python_accepts(data: bytes, ref_model: dict | None) -> bool:
    try:
        result = codec.decode_detailed(data, ref_model=ref_model, decoder="python")
    except Exception:  # noqa: BLE001 - any refusal of the reference reader
        return False
    return not codec.mismatch_message(result)


def _mutate(data: bytes, rng: random.Random) -> bytes:
    d = bytearray(data)
    kind = rng.randrange(5)
    if kind == 0:
        bit = rng.randrange(len(d) * 8)
        d[bit // 8] ^= 1 << (bit % 8)
    elif kind == 1:
        del d[rng.randrange(len(d)):]
    elif kind == 2:  # the high-level syntax sits near the start
        d[rng.randrange(min(len(d), 160))] = rng.randrange(256)
    elif kind == 3:
        i = rng.randrange(len(d))
        del d[i:i + rng.randrange(1, 5)]
    else:
        d += bytes([rng.choice((0, 1, 2, 3, 4, 5)), 0, 0, 0, 0])
    return bytes(d)


@pytest.mark.parametrize("entry", SUITE, ids=[e["name"] for e in SUITE])
def test_changed_streams_as_python(entry: dict, tmp_path: Path) -> None:
    """Accepted or refused exactly as codec.decode_detailed does (10 changes a stream)."""
    data = (ROOT / entry["bitstream"]).read_bytes()
    ref = _ref(entry)
    ref_model = read_model(str(ref)) if ref else None
    rng = random.Random(entry["name"])
    path = tmp_path / "m.bit"
    for _ in range(10):
        changed = _mutate(data, rng)
        path.write_bytes(changed)
        proc = _run(path, None, ref)
        assert proc.returncode in (0, 1), proc.stderr
        assert (proc.returncode == 0) == _python_accepts(changed, ref_model), proc.stderr


@pytest.mark.parametrize("entry", NEWER, ids=[e["name"] for e in NEWER])
def test_newer_streams_refused_cleanly(entry: dict, tmp_path: Path) -> None:
    out = tmp_path / "o.safetensors"
    proc = _run(ROOT / entry["bitstream"], out, _ref(entry))
    assert proc.returncode == 1
    assert re.search(r"unit_type|tool_flags|format version", proc.stderr), proc.stderr
    assert not list(tmp_path.iterdir())


def test_mismatch_leaves_no_output(tmp_path: Path) -> None:
    entry = next(e for e in SUITE if e["name"] == "LOSSLESS_A_1")
    data = bytearray((ROOT / entry["bitstream"]).read_bytes())
    data[-40] ^= 0x55  # inside the last tensor's data or hash: an MD5 mismatch
    bad = tmp_path / "bad.bit"
    bad.write_bytes(bytes(data))
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"old")
    proc = _run(bad, out)
    assert proc.returncode == 1
    assert "MISMATCH" in proc.stdout or "error" in proc.stderr
    assert out.read_bytes() == b"old"  # untouched: the new file was never renamed over it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.bit", "out.safetensors"]


def test_reference_model_needed(tmp_path: Path) -> None:
    entry = next(e for e in SUITE if e.get("ref_model"))
    proc = _run(ROOT / entry["bitstream"], tmp_path / "o.safetensors")
    assert proc.returncode == 1
    assert "reference model" in proc.stderr
    assert not list(tmp_path.iterdir())
    wrong = next(e for e in SUITE if e["name"] == "BASE_A_1")
    proc = _run(ROOT / entry["bitstream"], None, ROOT / wrong["source_model"])
    assert proc.returncode == 1


def test_refuses_newer_units_and_tools(tmp_path: Path) -> None:
    data = (ROOT / "bitstreams" / "INTEGRITY_A_1.bit").read_bytes()
    path = tmp_path / "x.bit"
    path.write_bytes(data + bytes([6, 0, 0, 0, 0]))  # a unit type no format has
    proc = _run(path)
    assert proc.returncode == 1 and "unknown unit_type 6" in proc.stderr
    flags = bytearray(data)
    flags[5 + 4 + 3 + 2] |= 0x40  # tool_flags bit 14: the big-endian u32 after magic, 3 bytes
    path.write_bytes(bytes(flags))
    proc = _run(path)
    assert proc.returncode == 1 and "tool_flags" in proc.stderr


def test_memory_budget(tmp_path: Path) -> None:
    bomb = ROOT / "tests" / "data" / "bombs" / "bomb_one_16k.bit"
    proc = _run(bomb)
    assert proc.returncode == 1 and "decompression bomb" in proc.stderr
    small = ROOT / "bitstreams" / "BASE_A_1.bit"
    data = small.read_bytes()
    units = hls.split_units(data)
    mps = hls.parse_model_parameter_set(units[0])
    need = memory.estimate(len(data), [hls.parse_tensor_parameter_set(u, mps) for u in units
                                       if u.unit_type == hls.UnitType.TENSOR_PARAMETER_SET])
    # the same estimate as nntm.memory, to the byte
    assert _run(small, None, None, "--MaxMemory", str(need - 1)).returncode == 1
    assert _run(small, None, None, "--MaxMemory", str(need)).returncode == 0


def test_missing_folders_made_and_removed(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "x.safetensors"
    assert _run(ROOT / "bitstreams" / "BASE_A_1.bit", out).returncode == 0
    assert out.is_file()
    data = bytearray((ROOT / "bitstreams" / "LOSSLESS_A_1.bit").read_bytes())
    data[-40] ^= 0x55
    bad = tmp_path / "bad.bit"
    bad.write_bytes(bytes(data))
    assert _run(bad, tmp_path / "c" / "d" / "x.safetensors").returncode == 1
    assert not (tmp_path / "c").exists()


def test_hostile_names_escaped_as_decoderapp(tmp_path: Path) -> None:
    import numpy as np
    from nntm.apps.common import escape_text
    from nntm.config import Config

    names = ["\x1b[2Jclear", "rtl\u202eexe", "line\nbreak", "tab\there", "sep\u2028x", "ok.w",
             "zw\u200bj", "del\x7f", "c1\x85", 'quote"back\\slash', "caf\u00e9.\u6743\u91cd",
             "nul\x00x", "bell\x07"]
    tensors = {n: np.full((3, 4), i, np.float32) for i, n in enumerate(names)}
    cfg = Config.from_files([str(ROOT / "cfg" / "encoder_default.cfg")])
    path = tmp_path / "names.bit"
    path.write_bytes(codec.encode(tensors, cfg))
    out = tmp_path / "names.safetensors"
    proc = _run(path, out)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "[MD5:" in line]
    assert len(lines) == len(names)
    for line, name in zip(lines, names, strict=True):
        assert line.startswith(escape_text(name) + " ")
    assert read_model(str(out)).keys() == tensors.keys()
    py_out = tmp_path / "py.safetensors"
    assert decoder.main(["-b", str(path), "-o", str(py_out)]) == 0
    assert out.read_bytes() == py_out.read_bytes()


def test_predicted_kernel_tiles(tmp_path: Path) -> None:
    """Prediction (reference model and earlier tensor) of tensors in the kernel-tile
    arrangement: the reference goes through the forward arrangement first."""
    import numpy as np
    from nntm.apps import encoder
    from nntm.modelio import write_model

    rng = np.random.default_rng(5)
    # one input channel: the encoder compares the tiled kernel with the reference in tensor
    # order when it chooses a prediction, which only agree for I == 1 (or 1 x 1 kernels)
    shape = (12, 1, 3, 3)
    ref = {"a.weight": rng.standard_normal(shape).astype(np.float32),
           "b.weight": rng.standard_normal((4, 4, 5, 5)).astype(np.float32)}
    new = {"a.weight": (ref["a.weight"] + 0.01 * rng.standard_normal(shape)).astype(np.float32),
           "b.weight": ref["b.weight"].copy()}
    new["c.weight"] = (new["a.weight"] * 0.9 + 0.005 * rng.standard_normal(shape)).astype(
        np.float32)
    write_model(str(tmp_path / "ref.safetensors"), ref, "safetensors")
    write_model(str(tmp_path / "new.safetensors"), new, "safetensors")
    bit = tmp_path / "upd.bit"
    assert encoder.main(["-c", str(ROOT / "cfg" / "encoder_default.cfg"), "-i",
                         str(tmp_path / "new.safetensors"), "-b", str(bit),
                         f"--RefModel={tmp_path / 'ref.safetensors'}", "--Arrangement=tiles",
                         "--InterPred=1", "--EarlierTensorPred=1", "--QP=-30"]) == 0
    data = bit.read_bytes()
    units = hls.split_units(data)
    mps = hls.parse_model_parameter_set(units[0])
    modes = {(int(t.pred_mode), t.arrangement) for t in
             (hls.parse_tensor_parameter_set(u, mps) for u in units
              if u.unit_type == hls.UnitType.TENSOR_PARAMETER_SET)}
    assert (1, 1) in modes and (2, 1) in modes  # both predictions, in kernel tiles
    out_c, out_py = tmp_path / "c.safetensors", tmp_path / "py.safetensors"
    proc = _run(bit, out_c, tmp_path / "ref.safetensors")
    assert proc.returncode == 0, proc.stderr
    assert decoder.main(["-b", str(bit), "-o", str(out_py),
                         f"--RefModel={tmp_path / 'ref.safetensors'}"]) == 0
    assert out_c.read_bytes() == out_py.read_bytes()
    wrong = dict(ref)
    wrong["a.weight"] = wrong["a.weight"] + 1
    write_model(str(tmp_path / "wrong.safetensors"), wrong, "safetensors")
    proc = _run(bit, None, tmp_path / "wrong.safetensors")
    assert proc.returncode == 1 and "wrong reference model" in proc.stderr


def _tiles_update_stream(ref: dict, new: dict) -> bytes:
    """A stream built unit by unit: 'a' predicted from the reference model and 'c' from
    the earlier tensor 'a', both in kernel tiles (a real permutation: I > 1)."""
    import numpy as np
    from nntm import core
    from nntm.arrange import Arrangement, from_kernel, to_kernel

    flags = hls.TOOL_INTER_PRED | hls.TOOL_INTEGRITY
    mps = hls.ModelParameterSet(num_tensors=2, tool_flags=flags, version_minor=6)
    units = [hls.model_parameter_set(mps)]
    tiles = Arrangement.KERNEL_TILES
    recon_a = None
    for tid, name in enumerate(("a", "c")):
        w = new[name]
        reference = ref["a"] if name == "a" else recon_a
        rows, cols = hls.rows_cols(w.shape, 1)
        tps = hls.TensorParameterSet(tid, name, w.dtype, w.shape, hls.CodingMode.QUANTIZED,
                                     layer_type=1, arrangement=1, rows=rows, cols=cols, qp=-32,
                                     qp_density=2, num_gt_flags=4)
        tps.pred_mode = hls.PredMode.REF_MODEL if name == "a" else hls.PredMode.EARLIER_TENSOR
        tps.ref_tensor_id = 0
        tps.ref_dtype = np.dtype(np.float32)
        tps.pred_scale = 4096 if name == "a" else 3700
        tps.ref_md5 = codec.tensor_md5(reference)
        res = core.encode_kernel(to_kernel(w, tiles), codec.kernel_params(tps), w.dtype, True,
                                 0.1, name, ref=core.Reference(to_kernel(reference, tiles),
                                                               tps.pred_scale))
        recon = from_kernel(res.recon.view(np.float32), w.shape, tiles)
        if name == "a":
            recon_a = recon
        tps_unit = hls.tensor_parameter_set(tps, flags)
        units += [tps_unit, hls.tensor_data_unit(tid, res.payload),
                  hls.tensor_hash_unit(tid, codec.tensor_md5(recon), hls.unit_md5(tps_unit))]
    body = b"".join(units)
    return body + hls.end_of_stream(hls.unit_md5(body))


def test_predicted_tiles_hand_built(tmp_path: Path) -> None:
    import numpy as np
    from nntm.modelio import write_model

    rng = np.random.default_rng(9)
    shape = (6, 5, 3, 2)
    ref = {"a": rng.standard_normal(shape).astype(np.float32)}
    new = {"a": (ref["a"] + 0.02 * rng.standard_normal(shape)).astype(np.float32)}
    new["c"] = (0.9 * new["a"] + 0.02 * rng.standard_normal(shape)).astype(np.float32)
    bit = tmp_path / "tiles.bit"
    bit.write_bytes(_tiles_update_stream(ref, new))
    write_model(str(tmp_path / "ref.safetensors"), ref, "safetensors")
    out_c, out_py = tmp_path / "c.safetensors", tmp_path / "py.safetensors"
    assert decoder.main(["-b", str(bit), "-o", str(out_py),
                         f"--RefModel={tmp_path / 'ref.safetensors'}"]) == 0
    proc = _run(bit, out_c, tmp_path / "ref.safetensors")
    assert proc.returncode == 0, proc.stderr
    assert out_c.read_bytes() == out_py.read_bytes()
    decoded = read_model(str(out_c))
    assert np.max(np.abs(decoded["c"] - new["c"])) < 0.01  # the prediction was used


def test_threads_do_not_change_the_output(tmp_path: Path) -> None:
    bit = ROOT / "bitstreams" / "PRED_B_1.bit"  # earlier-tensor prediction across workers
    outs = []
    for threads in ("1", "2", "5"):
        out = tmp_path / f"t{threads}.safetensors"
        proc = _run(bit, out, None, "--threads", threads)
        assert proc.returncode == 0, proc.stderr
        outs.append((proc.stdout, out.read_bytes()))
    assert outs[0] == outs[1] == outs[2]
    data = bytearray(bit.read_bytes())
    data[-60] ^= 0x08
    bad = tmp_path / "bad.bit"
    bad.write_bytes(bytes(data))
    results = {(p.returncode, p.stdout, p.stderr) for p in
               (_run(bad, None, None, "--threads", t) for t in ("1", "3"))}
    assert len(results) == 1 and next(iter(results))[0] == 1


def _with_container(cu: bytes | None, flags_set: bool = True) -> bytes:
    """ONNX_A_1 with its container unit replaced by cu (None: removed) and TOOL_CONTAINER
    set or cleared, the stream MD5 made right again (the tensor parameter sets keep theirs)."""
    data = (ROOT / "bitstreams" / "ONNX_A_1.bit").read_bytes()
    units = hls.split_units(data)
    raw = [data[u.offset:u.offset + hls.UNIT_HEADER_BYTES + len(u.payload)] for u in units]
    mps = bytearray(raw[0])
    if not flags_set:
        mps[hls.UNIT_HEADER_BYTES + 4 + 3 + 2] &= ~(hls.TOOL_CONTAINER >> 8) & 0xFF
    body = bytes(mps) + (cu if cu is not None else b"") + b"".join(raw[2:-1])
    return body + bytes([int(hls.UnitType.END_OF_STREAM), 0, 0, 0, 16]) + hls.unit_md5(body)


def test_container_as_python(tmp_path: Path) -> None:
    """The container unit [1.7]: checked (inflated) as DecoderApp checks it, its data kept."""
    import zlib

    data = (ROOT / "bitstreams" / "ONNX_A_1.bit").read_bytes()
    container = hls.parse_container_unit(hls.split_units(data)[1])
    body = container.data
    good = hls.container_unit(container)
    stored = hls.container_unit(container, hls.CONTAINER_STORED)

    def cu(fmt: int, comp: int, size: int, payload: bytes) -> bytes:
        head = bytes([fmt, comp]) + _ue_aligned(size)
        p = head + payload
        return bytes([int(hls.UnitType.CONTAINER_UNIT)]) + len(p).to_bytes(4, "big") + p

    z = zlib.compress(body, 9)
    cases = {
        "rebuilt": _with_container(good),
        "stored": _with_container(stored),
        "no unit": _with_container(None),
        "flag cleared": _with_container(good, flags_set=False),
        "no flag, no unit": _with_container(None, flags_set=False),
        "format 2": _with_container(cu(2, 1, len(body), z)),
        "compression 2": _with_container(cu(3, 2, len(body), z)),
        "size - 1": _with_container(cu(3, 1, len(body) - 1, z)),
        "size + 1": _with_container(cu(3, 1, len(body) + 1, z)),
        "trailing byte": _with_container(cu(3, 1, len(body), z + b"\0")),
        "cut": _with_container(cu(3, 1, len(body), z[:-1])),
        "adler": _with_container(cu(3, 1, len(body), z[:-1] + bytes([z[-1] ^ 1]))),
        "stored short": _with_container(cu(3, 0, len(body), body[:-1])),
        "empty zlib": _with_container(cu(3, 1, 0, zlib.compress(b""))),
        "empty stored": _with_container(cu(3, 0, 0, b"")),
    }
    accepted = set()
    for name, stream in cases.items():
        path = tmp_path / "c.bit"
        path.write_bytes(stream)
        proc = _run(path, None, None, "--Container", str(tmp_path / "c.bin"))
        assert proc.returncode in (0, 1), (name, proc.stderr)
        assert (proc.returncode == 0) == _python_accepts(stream, None), (name, proc.stderr)
        if proc.returncode == 0:
            accepted.add(name)
            kept = codec.decode_detailed(stream, decoder="python").container
            if kept is None:
                assert not (tmp_path / "c.bin").exists()
            else:
                assert (tmp_path / "c.bin").read_bytes() == kept.data
            (tmp_path / "c.bin").unlink(missing_ok=True)
    assert {"rebuilt", "stored", "empty zlib", "empty stored"} <= accepted
    assert "no unit" not in accepted and "adler" not in accepted
    # a container larger than the memory budget is refused before inflating, as in Python
    path = tmp_path / "c.bit"
    big = _with_container(cu(3, 1, 2**31 - 1, z))
    path.write_bytes(big)
    proc = _run(path, None, None, "--MaxMemory", "1G")
    assert proc.returncode == 1 and "a container of 2147483647 bytes" in proc.stderr
    with pytest.raises(memory.MemoryBudgetError):
        codec.decode_detailed(big, max_memory=1 << 30, decoder="python")
    with pytest.raises(memory.MemoryBudgetError):  # nntm.decode (C) checks it in Python first
        codec.decode_detailed(big, max_memory=1 << 30)


def _ue_aligned(value: int) -> bytes:
    """ue(v) of value then byte_alignment(), as bytes."""
    bits = bin(value + 1)[2:]
    s = "0" * (len(bits) - 1) + bits + "1"
    s += "0" * (-len(s) % 8)
    return int(s, 2).to_bytes(len(s) // 8, "big")


# ------------------------------------------------------------------ ConformanceApp --Decoder c


def test_conformance_app_through_the_c_decoder(capsys: pytest.CaptureFixture[str]) -> None:
    """Every stored stream, through nntm-dec alone, decodes to the MD5s of its .md5 file."""
    from nntm import conformance
    from nntm.apps import conformance as app

    suite_path = ROOT / "conformance" / "suite.json"
    assert app.main(["--suite", str(suite_path), "--Decoder", "c",
                     "--nntm-dec", str(NNTM_DEC)]) == 0
    out = capsys.readouterr().out
    assert f"{len(ALL_STREAMS)} of {len(ALL_STREAMS)} stream(s) passed" in out
    suite = conformance.load_suite(suite_path)
    for entry in suite.streams:
        r = conformance.check_stream_with_c_decoder(suite, entry, NNTM_DEC)
        assert r.ok, (entry.name, r.reason)
        assert r.tensors == entry.num_tensors and r.format_version == entry.format_version


def _suite_copy(tmp_path: Path) -> Path:
    import shutil

    for folder in ("conformance", "bitstreams"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path / "conformance" / "suite.json"


def test_conformance_app_c_decoder_fails_on_altered_suite(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib

    from nntm.apps import conformance as app

    suite = _suite_copy(tmp_path)
    argv = ["--suite", str(suite), "--Decoder", "c", "--nntm-dec", str(NNTM_DEC)]
    md5_file = tmp_path / "bitstreams" / "BASE_A_1.md5"
    lines = md5_file.read_text().splitlines(keepends=True)
    lines[2] = ("0" if lines[2][0] != "0" else "1") + lines[2][1:]
    md5_file.write_text("".join(lines))
    assert app.main(argv + ["BASE_A_1"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "BASE_A_1.md5 says" in out
    assert app.main(argv + ["QP_A_1"]) == 0
    # a changed payload with the manifest's sha256 made right: the hash units catch it in C
    bit = tmp_path / "bitstreams" / "GTX_A_1.bit"
    data = bytearray(bit.read_bytes())
    data[-60] ^= 0x10
    bit.write_bytes(bytes(data))
    doc = json.loads(suite.read_text())
    for s in doc["streams"]:
        if s["name"] == "GTX_A_1":
            s["bitstream_sha256"] = hashlib.sha256(data).hexdigest()
    suite.write_text(json.dumps(doc))
    capsys.readouterr()
    assert app.main(argv + ["GTX_A_1"]) == 1
    out = capsys.readouterr().out
    assert "GTX_A_1" in out and "FAIL" in out
    assert app.main(argv + ["--nntm-dec", str(tmp_path / "missing"), "QP_A_1"]) == 2


@pytest.mark.parametrize("overrides", [{}, {"DepQuant": 0}, {"DepQuant": 0, "ProbWindow": 0},
                                       {"RowPred": 1}])
def test_large_tensors_decode_to_the_encoders_reconstruction(
        tmp_path: Path, overrides: dict) -> None:
    """Tensors above 2^16 samples (decoded a band at a time without the tree, row
    prediction or a reference) give the encoder's reconstruction, which the encoder makes
    without the decoder; the smaller one goes the whole-tensor way."""
    import ml_dtypes
    import numpy as np
    from nntm.config import Config

    rng = np.random.default_rng(3)
    tensors = {"w": (rng.standard_normal((320, 257)) * 0.05).astype(np.float32),
               "e": (rng.standard_normal((700, 130)) * 0.02).astype(ml_dtypes.bfloat16),
               "s": (rng.standard_normal((64, 64)) * 0.05).astype(np.float32)}
    cfg = Config.from_files([str(ROOT / "cfg" / "encoder_default.cfg")],
                            {"QP": -30, **overrides})
    result = codec.encode_with_recon(tensors, cfg)
    bit = tmp_path / "big.bit"
    bit.write_bytes(result.data)
    out = tmp_path / "big.safetensors"
    proc = _run(bit, out)
    assert proc.returncode == 0, proc.stderr
    decoded = read_model(str(out))
    for name, recon in result.recon.items():
        assert decoded[name].dtype == recon.dtype
        assert decoded[name].tobytes() == recon.tobytes(), name
