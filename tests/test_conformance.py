"""The conformance suite (docs/conformance.md): every stored stream decodes to its MD5s,
re-encodes to the same bytes, and ConformanceApp catches an altered suite."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from nntm import codec, conformance, hls
from nntm.apps import conformance as app

ROOT = Path(__file__).resolve().parents[1]
SUITE_PATH = ROOT / "conformance" / "suite.json"
SUITE = conformance.load_suite(SUITE_PATH)
NAMES = [s.name for s in SUITE.streams]
ENTRIES = {s.name: s for s in SUITE.streams}


@pytest.mark.parametrize("name", NAMES)
def test_stream_decodes_to_its_md5s(name: str) -> None:
    result = conformance.check_stream(SUITE, ENTRIES[name])
    assert result.ok, result.reason
    assert result.tensors == ENTRIES[name].num_tensors
    assert result.format_version == ENTRIES[name].format_version


@pytest.mark.parametrize("name", NAMES)
def test_stream_reencodes_bit_exactly(name: str) -> None:
    entry = ENTRIES[name]
    if not entry.reencode:
        pytest.skip(f"{name} is retired (decode-only)")
    data = conformance.reencode(SUITE, entry)
    assert data == SUITE.file(entry.bitstream).read_bytes(), (
        f"{name}: the encoder no longer makes the stored stream from its source and cfg")


def test_manifest_is_complete_and_consistent() -> None:
    assert len(NAMES) >= 11
    on_disk = sorted(p.stem for p in (ROOT / "bitstreams").glob("*.bit"))
    assert on_disk == sorted(NAMES), "every stored bitstream is in the manifest and back"
    for e in SUITE.streams:
        assert conformance.NAME_RE.match(e.name)
        assert e.bitstream == f"bitstreams/{e.name}.bit"
        assert e.md5_file == f"bitstreams/{e.name}.md5"
        assert e.description == f"conformance/{e.name}.md"
        for rel in (e.bitstream, e.md5_file, e.description, e.cfg, e.source_model):
            assert SUITE.file(rel).is_file(), rel
        data = SUITE.file(e.bitstream).read_bytes()
        assert len(data) == e.bitstream_bytes
        assert hashlib.sha256(data).hexdigest() == e.bitstream_sha256
        assert e.features
        assert e.encoder_command[0] == "EncoderApp" and e.cfg in e.encoder_command
        assert e.source_model in e.encoder_command
        text = SUITE.file(e.description).read_text(encoding="utf-8")
        assert " ".join(e.encoder_command) in text and f"Format version: {e.format_version}" in text
        assert len(conformance.parse_md5_file(SUITE.file(e.md5_file))) == e.num_tensors


@pytest.mark.parametrize("name", NAMES)
def test_kernel_cases_match_the_hash_units(name: str) -> None:
    """The cases the C fuzzer and the sanitizer job decode are the stream's tensors."""
    data = SUITE.file(ENTRIES[name].bitstream).read_bytes()
    cases = conformance.kernel_cases(data)
    assert len(cases) == ENTRIES[name].num_tensors
    for case in cases:
        if case.coding_mode == hls.CodingMode.QUANTIZED:
            md5 = codec.tensor_md5(conformance.decode_kernel_case(case)[1]).hex()
        else:
            md5 = hashlib.md5(case.data).hexdigest()
        assert md5 == case.hash_md5, case.tensor


# ------------------------------------------------------------------ ConformanceApp


def _copy_suite(tmp_path: Path) -> Path:
    for folder in ("conformance", "bitstreams"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path / "conformance" / "suite.json"


def test_app_passes_on_the_suite(capsys: pytest.CaptureFixture[str]) -> None:
    assert app.main(["--suite", str(SUITE_PATH)]) == 0
    out = capsys.readouterr().out
    assert f"{len(NAMES)} of {len(NAMES)} stream(s) passed" in out
    assert all(f"{n} " in out for n in NAMES)


def test_app_fails_on_an_altered_md5_file(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    suite = _copy_suite(tmp_path)
    md5_file = tmp_path / "bitstreams" / "BASE_A_1.md5"
    lines = md5_file.read_text().splitlines(keepends=True)
    digit = "0" if lines[2][0] != "0" else "1"
    lines[2] = digit + lines[2][1:]
    md5_file.write_text("".join(lines))
    assert app.main(["--suite", str(suite)]) == 1
    out = capsys.readouterr().out
    assert "BASE_A_1" in out and "FAIL" in out and "1 failed" in out
    assert app.main(["--suite", str(suite), "QP_A_1"]) == 0


def test_app_fails_on_an_altered_bitstream(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    suite = _copy_suite(tmp_path)
    bit = tmp_path / "bitstreams" / "GTX_A_1.bit"
    data = bytearray(bit.read_bytes())
    data[-40] ^= 0x10                      # inside the last tensor's payload or hash
    bit.write_bytes(bytes(data))
    # even with the manifest's sha256 updated, the MD5s or the syntax catch it
    doc = json.loads(suite.read_text())
    for s in doc["streams"]:
        if s["name"] == "GTX_A_1":
            s["bitstream_sha256"] = hashlib.sha256(data).hexdigest()
    suite.write_text(json.dumps(doc))
    assert app.main(["--suite", str(suite), "GTX_A_1"]) == 1
    assert "GTX_A_1" in capsys.readouterr().out


def test_app_list_and_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert app.main(["--suite", str(SUITE_PATH), "--list"]) == 0
    assert "BASE_A_1" in capsys.readouterr().out
    assert app.main(["--suite", str(SUITE_PATH), "NO_SUCH_1"]) == 1
    assert "NO_SUCH_1" in capsys.readouterr().err
    assert app.main(["--suite", str(tmp_path / "missing.json")]) == 1
    assert app.main(["--bogus"]) == 2
    with pytest.raises(SystemExit) as exc:
        app._parser().parse_args(["--help"])
    assert exc.value.code == 0


def test_md5_file_format(tmp_path: Path) -> None:
    items = [("0" * 32, "a b  c"), ("f" * 32, "blöck")]
    p = tmp_path / "x.md5"
    p.write_text(conformance.format_md5_file(items), encoding="utf-8")
    assert conformance.parse_md5_file(p) == items
    p.write_text("xyz  name\n")
    with pytest.raises(conformance.SuiteError):
        conformance.parse_md5_file(p)


# ------------------------------------------------------------------ make_conformance


def test_generate_refuses_to_change_a_stored_stream(tmp_path: Path) -> None:
    """--generate keeps a stored stream whose MD5s would change, unless forced."""
    for folder in ("conformance", "bitstreams", "scripts"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    example = tmp_path / "python" / "nntm" / "example"
    example.mkdir(parents=True)
    shutil.copy(ROOT / "python/nntm/example/digits_cnn.safetensors", example)
    script = tmp_path / "scripts" / "make_conformance.py"
    cfg = tmp_path / "conformance" / "cfg" / "QP_D_2.cfg"
    bit = tmp_path / "bitstreams" / "QP_D_2.bit"
    before = bit.read_bytes()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(script), *args], capture_output=True,
                              text=True, cwd=tmp_path, check=False)

    same = run("--generate", "QP_D_2")
    assert same.returncode == 0, same.stderr
    assert bit.read_bytes() == before
    cfg.write_text(cfg.read_text().replace("QP                  : 127",
                                           "QP                  : 120"))
    refused = run("--generate", "QP_D_2")
    assert refused.returncode == 1 and "refused" in refused.stderr
    assert bit.read_bytes() == before
    assert run("--check-determinism", "QP_D_2").returncode == 1
    forced = run("--generate", "--force-new-version", "QP_D_2")
    assert forced.returncode == 0, forced.stderr
    assert bit.read_bytes() != before
    assert run("--check-determinism", "QP_D_2").returncode == 0
    assert codec.decode(bit.read_bytes())


# ------------------------------------------------------------------ fuzzing findings

CRASHERS = ROOT / "fuzz" / "crashers"

_DECODE_UNDER_LIMIT = """
import resource, sys
limit = int(sys.argv[2]) << 30
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import nntm
data = open(sys.argv[1], "rb").read()
try:
    nntm.decode(data)
except nntm.NntmError as exc:
    print("rejected:", exc)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS")
def test_crasher_tree_huge_tensor_is_rejected_cleanly() -> None:
    path = CRASHERS / "tree_huge_tensor.bit"
    proc = subprocess.run([sys.executable, "-c", _DECODE_UNDER_LIMIT, str(path), "4"],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr.strip().splitlines()[-1]
