"""The newcomer's path (issue #19 item 6): the README quick start, its out/ folder, the apps
making a missing output folder, and scripts/run_tests.sh refusing the system's Python."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from nntm.apps import decoder, encoder
from nntm.errors import ModelIOError
from nntm.example import EXAMPLE_MODEL_PATH
from nntm.modelio import read_model, write_model

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CFG = ROOT / "cfg" / "encoder_default.cfg"
APPS: dict[str, Callable[[Sequence[str]], int]] = {"EncoderApp": encoder.main,
                                                  "DecoderApp": decoder.main}


def _quick_start_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", section, re.S)]


def _option(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


# ------------------------------------------------------------------ README quick start


def test_quick_start_is_a_venv_then_two_commands() -> None:
    blocks = _quick_start_blocks()
    assert len(blocks) == 3, blocks
    venv, run, tests = blocks
    assert "python3 -m venv .venv" in venv and ". .venv/bin/activate" in venv
    assert "\n" not in run and run.startswith("pip install . && ")
    assert tests == "bash scripts/run_tests.sh"


def test_quick_start_outputs_go_to_an_ignored_out_folder() -> None:
    run = _quick_start_blocks()[1]
    outputs = []
    for segment in run.split("&&")[1:]:
        argv = shlex.split(segment)
        assert argv[0] in APPS, argv
        outputs += [_option(argv, "-o")] + ([_option(argv, "-b")] if argv[0] == "EncoderApp"
                                            else [])
    assert len(outputs) == 3 and all(p.startswith("out/") for p in outputs), outputs
    patterns = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert "/out/" in patterns or "out/" in patterns
    if (ROOT / ".git").exists() and shutil.which("git"):
        for path in outputs:
            check = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", path])
            assert check.returncode == 0, f"{path} is not ignored by git"


def test_quick_start_apps_run_in_a_fresh_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quick start's EncoderApp and DecoderApp commands, as written, in a folder
    holding only cfg/: out/ does not exist before."""
    (tmp_path / "cfg").symlink_to(ROOT / "cfg", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    for segment in _quick_start_blocks()[1].split("&&")[1:]:
        argv = shlex.split(segment)
        assert APPS[argv[0]](argv[1:]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "Test accuracy" in out and "MD5s OK" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "digits.bit", "digits_dec.safetensors", "digits_rec.safetensors"]
    decoded = read_model(tmp_path / "out" / "digits_dec.safetensors")
    recon = read_model(tmp_path / "out" / "digits_rec.safetensors")
    assert list(decoded) == list(read_model(EXAMPLE_MODEL_PATH))
    for name, array in decoded.items():
        np.testing.assert_array_equal(array, recon[name])


# ------------------------------------------------------------------ output folders


def test_apps_make_missing_output_folders(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bit = tmp_path / "a" / "b" / "m.bit"
    recon = tmp_path / "c" / "recon.npz"
    dec = tmp_path / "d" / "e" / "dec.safetensors"
    argv = ["-c", str(DEFAULT_CFG), "-b", str(bit), "-o", str(recon), "--Verbose=0"]
    assert encoder.main(argv) == 0, capsys.readouterr().err
    assert decoder.main(["-b", str(bit), "-o", str(dec), "--Verbose=0"]) == 0
    assert bit.stat().st_size > 0
    for name, array in read_model(dec).items():
        np.testing.assert_array_equal(array, read_model(recon)[name])


def test_output_under_a_file_is_refused_before_any_work(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("x")
    bit = tmp_path / "file" / "sub" / "m.bit"
    argv = ["-c", str(DEFAULT_CFG), "-b", str(bit), "--Verbose=0"]
    assert encoder.main(argv) == 1
    captured = capsys.readouterr()
    assert "is not a folder" in captured.err and "file" in captured.err
    assert captured.out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_failed_decode_makes_no_output_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bit = tmp_path / "m.bit"
    assert encoder.main(["-c", str(DEFAULT_CFG), "-b", str(bit), "--Verbose=0"]) == 0
    data = bytearray(bit.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bit.write_bytes(bytes(data))
    assert decoder.main(["-b", str(bit), "-o", str(tmp_path / "new" / "d.safetensors")]) != 0
    assert not (tmp_path / "new").exists()


def test_failed_write_removes_the_folders_it_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    (tmp_path / "kept").mkdir()
    target = tmp_path / "kept" / "x" / "y" / "m.safetensors"
    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(ModelIOError, match="No space left"):
        write_model(target, {"a": np.zeros(3, np.float32)}, make_parents=True)
    assert list((tmp_path / "kept").iterdir()) == []
    monkeypatch.undo()
    write_model(target, {"a": np.ones(3, np.float32)}, make_parents=True)
    np.testing.assert_array_equal(read_model(target)["a"], np.ones(3, np.float32))


def test_write_model_alone_still_wants_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelIOError, match="no-such-dir"):
        write_model(tmp_path / "no-such-dir" / "m.npz", {"a": np.zeros(1)})
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ scripts/run_tests.sh


def _base_python() -> str:
    exe = getattr(sys, "_base_executable", "") or sys.executable
    return os.path.realpath(exe)


def _fake_bin(tmp_path: Path, python_body: str) -> Path:
    """A PATH folder whose python3 is the base (system) interpreter behind ``python_body``,
    and whose cmake and cc do nothing, so run_tests.sh never reaches apt-get."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("python3", python_body), ("cmake", "exit 0"), ("cc", "exit 0")):
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\n{body}\n")
        tool.chmod(0o755)
    return bin_dir


def _run_tests_sh(bin_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("VIRTUAL_ENV", "CONDA_PREFIX", "NNTM_SYSTEM_PYTHON", "PYTHONHOME")}
    clean["PATH"] = f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"
    clean.update(env)
    return subprocess.run(["bash", str(ROOT / "scripts" / "run_tests.sh"), *args],
                          capture_output=True, text=True, env=clean, timeout=60)


@pytest.fixture
def base_python() -> str:
    base = _base_python()
    prefix = subprocess.run([base, "-c", "import sys; print(sys.prefix)"], capture_output=True,
                            text=True, check=True).stdout.strip()
    if Path(prefix, "conda-meta").is_dir():
        pytest.skip("the base interpreter is a conda environment's, which run_tests.sh accepts")
    return base


def test_run_tests_refuses_the_system_python(tmp_path: Path, base_python: str) -> None:
    # a python3 that would say loudly if run_tests.sh went on to pip install into it
    bin_dir = _fake_bin(tmp_path, f'case "$*" in *pip*) echo PIP-RAN; exit 3;; esac\n'
                                  f'exec "{base_python}" "$@"')
    result = _run_tests_sh(bin_dir)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "not in a virtual environment" in result.stderr
    assert "python3 -m venv .venv" in result.stderr and "--system" in result.stderr
    assert "PIP-RAN" not in result.stdout and "==" not in result.stdout


@pytest.mark.parametrize("how", ["flag", "env"])
def test_run_tests_installs_into_the_system_python_when_asked(
    tmp_path: Path, base_python: str, how: str
) -> None:
    bin_dir = _fake_bin(tmp_path, f'case "$*" in *pip*) echo "PIP-RAN $*"; exit 3;; esac\n'
                                  f'exec "{base_python}" "$@"')
    if how == "flag":
        result = _run_tests_sh(bin_dir, "--system")
    else:
        result = _run_tests_sh(bin_dir, NNTM_SYSTEM_PYTHON="1")
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert "PIP-RAN -m pip install" in result.stdout and "--system" not in result.stdout
    assert "not in a virtual environment" not in result.stderr


def test_run_tests_accepts_a_virtual_environment(tmp_path: Path) -> None:
    """The python3 of a venv (this one, when the suite runs in one) passes the check."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("the suite is not running in a virtual environment")
    bin_dir = _fake_bin(tmp_path, f'case "$*" in *pip*) echo PIP-RAN; exit 3;; esac\n'
                                  f'exec "{sys.executable}" "$@"')
    result = _run_tests_sh(bin_dir)
    assert result.returncode == 3 and "PIP-RAN" in result.stdout, (result.stdout, result.stderr)
