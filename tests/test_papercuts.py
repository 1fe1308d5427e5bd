"""Papercuts a new user hits (issue #21) and output-path safety of the apps (issue #19)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest
from nntm import hls
from nntm.apps import decoder, encoder
from nntm.config import Config
from nntm.errors import BitstreamError, ConfigError
from nntm.example import EXAMPLE_MODEL_PATH

ROOT = Path(__file__).resolve().parents[1]


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_spec_title_names_the_newest_format_version() -> None:
    first = (ROOT / "docs" / "bitstream.md").read_text(encoding="utf-8").splitlines()[0]
    m = re.search(r"format version (\d+)\.(\d+)", first)
    assert m, first
    assert (int(m[1]), int(m[2])) == (hls.FORMAT_VERSION_MAJOR, hls.FORMAT_VERSION_MINOR)


def test_key_twice_in_one_cfg_file_is_an_error(tmp_path: Path) -> None:
    cfg = tmp_path / "a.cfg"
    cfg.write_text("QP : -20\nRDOQ : 1\nQP : -24  # again\n")
    with pytest.raises(ConfigError) as info:
        Config.from_files([cfg])
    text = str(info.value)
    assert "twice" in text and "line 1" in text and "a.cfg:3" in text


def test_key_in_two_cfg_files_still_overrides(tmp_path: Path) -> None:
    a, b = tmp_path / "a.cfg", tmp_path / "b.cfg"
    a.write_text("QP : -20\n")
    b.write_text("QP : -24\n")
    assert Config.from_files([a, b])["QP"] == -24


def test_all_zero_stream_is_not_an_nntm_bitstream() -> None:
    from nntm import codec

    with pytest.raises(BitstreamError, match="not an NNTM bitstream"):
        codec.decode(bytes(14420))


def test_directory_as_input_says_directory(tmp_path: Path, capsys) -> None:
    assert decoder.main(["-b", str(tmp_path), "-o", str(tmp_path / "x.safetensors")]) != 0
    assert "is a directory" in capsys.readouterr().err
    assert encoder.main(["-i", str(tmp_path), "-b", str(tmp_path / "x.bit")]) != 0
    assert "is a directory" in capsys.readouterr().err


def test_unwritable_bitstream_names_the_bitstream(tmp_path: Path, capsys) -> None:
    if os.geteuid() == 0:
        # root may write anywhere: use a path whose parent is a file instead
        blocker = tmp_path / "file"
        blocker.write_bytes(b"")
        from nntm.apps.common import write_bitstream
        from nntm.errors import ModelIOError

        with pytest.raises(ModelIOError, match="cannot write bitstream file"):
            write_bitstream(str(blocker / "x.bit"), b"data")
        return
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    assert encoder.main(["-b", str(ro / "x.bit")]) != 0
    assert "cannot write bitstream file" in capsys.readouterr().err


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    path = tmp_path / "model.safetensors"
    path.write_bytes(Path(EXAMPLE_MODEL_PATH).read_bytes())
    return path


def test_encoder_refuses_bitstream_over_input(model: Path, capsys) -> None:
    before = _md5(model)
    assert encoder.main(["-i", str(model), "-b", str(model)]) != 0
    assert "same file as InputFile" in capsys.readouterr().err
    assert _md5(model) == before


def test_encoder_refuses_recon_over_input_through_a_link(model: Path, tmp_path: Path,
                                                         capsys) -> None:
    link = tmp_path / "link.safetensors"
    link.symlink_to(model)
    before = _md5(model)
    assert encoder.main(["-i", str(model), "-b", str(tmp_path / "m.bit"),
                         "-o", str(link)]) != 0
    assert "same file as InputFile" in capsys.readouterr().err
    assert _md5(model) == before
    assert not (tmp_path / "m.bit").exists()


def test_encoder_refuses_recon_equal_to_bitstream(model: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "same.safetensors"
    assert encoder.main(["-i", str(model), "-b", str(out), "-o", str(out)]) != 0
    assert "are the same file" in capsys.readouterr().err


def test_decoder_refuses_output_over_bitstream_and_bad_extension(model: Path, tmp_path: Path,
                                                                 capsys) -> None:
    bit = tmp_path / "m.bit"
    assert encoder.main(["-i", str(model), "-b", str(bit), "--Verbose=0"]) == 0
    before = _md5(bit)
    hard = tmp_path / "hard.safetensors"
    os.link(bit, hard)
    assert decoder.main(["-b", str(bit), "-o", str(hard)]) != 0
    assert "same file as BitstreamFile" in capsys.readouterr().err
    assert _md5(bit) == before
    for name in ("x.pt", "x.bin", "x"):
        assert decoder.main(["-b", str(bit), "-o", str(tmp_path / name)]) != 0
        assert "names no format" in capsys.readouterr().err
        assert not (tmp_path / name).exists()
    assert decoder.main(["-b", str(bit), "-o", str(tmp_path / "x.npz"),
                         "--OutputFormat=safetensors"]) != 0
    assert "does not match" in capsys.readouterr().err
    assert decoder.main(["-b", str(bit), "-o", str(tmp_path / "ok.safetensors"),
                         "--Verbose=0"]) == 0


def test_checkpoint_nested_under_a_common_key_is_unwrapped() -> None:
    import numpy as np
    from nntm.errors import ModelIOError
    from nntm.modelio import unwrap_checkpoint

    def is_tensor(v: object) -> bool:
        return isinstance(v, np.ndarray)

    sd = {"fc.weight": np.zeros((2, 2)), "fc.bias": np.zeros(2)}
    assert unwrap_checkpoint("f", sd, is_tensor) is sd
    assert unwrap_checkpoint("f", {"model": sd, "epoch": 3}, is_tensor) is sd
    assert unwrap_checkpoint("f", {"state_dict": sd, "optimizer": {"lr": 1}}, is_tensor) is sd
    with pytest.raises(ModelIOError, match="torch.save"):
        unwrap_checkpoint("f", {"weights": sd, "epoch": 3}, is_tensor)
    with pytest.raises(ModelIOError, match="several candidates"):
        unwrap_checkpoint("f", {"model": sd, "state_dict": sd}, is_tensor)


def test_pytorch_checkpoint_file_is_read(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from nntm.modelio import read_model

    path = tmp_path / "ckpt.pt"
    torch.save({"model": {"w": torch.ones(3, 2)}, "epoch": 1}, path)
    out = read_model(path)
    assert list(out) == ["w"] and out["w"].shape == (3, 2)


def test_refmodel_that_predicts_nothing_is_warned(model: Path, tmp_path: Path, capsys) -> None:
    import numpy as np
    from nntm.modelio import read_model, write_model

    renamed = {f"other.{k}": v for k, v in read_model(model).items()}
    ref = tmp_path / "ref.safetensors"
    write_model(ref, renamed)
    args = ["-i", str(model), "-b", str(tmp_path / "u.bit"), "--Verbose=0"]
    assert encoder.main([*args, "--RefModel", str(ref)]) == 0
    assert "predicts nothing" in capsys.readouterr().err
    write_model(ref, {k: np.asarray(v) for k, v in read_model(model).items()})
    assert encoder.main([*args, "--RefModel", str(ref)]) == 0
    assert "predicts nothing" not in capsys.readouterr().err


@pytest.mark.parametrize("script", ["install_ce.sh", "install_nncodec.sh"])
def test_installer_checks_import_the_installed_package(script: str) -> None:
    """The final checks once set PYTHONPATH=python and imported the unbuilt source tree."""
    text = (ROOT / "scripts" / script).read_text(encoding="utf-8")
    assert 'PYTHONPATH="python' not in text
    assert "(cd / && \"$PY\" -" in text


def test_bad_global_tree_key_is_one_problem_before_anything_is_printed(capsys) -> None:
    status = encoder.main(["-b", "x.bit", "--CTUSize=3", "--TreeType=qtmtt"])
    captured = capsys.readouterr()
    assert status != 0
    assert captured.out == ""  # nothing printed before the problems
    assert "CTUSize = 3 is not a power of two" in captured.err
    assert "class rules" not in captured.err and "CTU size must be" not in captured.err
    assert "MinQTSize" not in captured.err
    status = encoder.main(["-b", "x.bit", "--CTUSize=3", "--ClassRules=conv: ctu=5"])
    err = capsys.readouterr().err
    assert "2 configuration problems" in err and "ctu = 5" in err


_NO_BF16_RUN = """
import sys
import numpy as np
from nntm.apps import conformance, decoder, encoder, show  # noqa: F401
from nntm import codec, modelio
from nntm.config import Config
assert 'ml_dtypes' not in sys.modules, 'imported by the apps'
cfg = Config.from_files([sys.argv[1]])
model = {'w': np.linspace(-1, 1, 64, dtype=np.float32).reshape(8, 8)}
stream = codec.encode(model, cfg)
modelio.write_model(sys.argv[2], codec.decode(stream))
assert modelio.read_model(sys.argv[2])['w'].shape == (8, 8)
assert 'ml_dtypes' not in sys.modules, 'imported by a float32 encode/decode/write/read'
bf16 = {'w': model['w'].astype(modelio.SAFETENSORS_DTYPES['BF16'])}
assert 'ml_dtypes' in sys.modules
back = codec.decode(codec.encode(bf16, cfg))
assert back['w'].dtype.name == 'bfloat16'
print('ok')
"""


def test_ml_dtypes_is_imported_only_where_a_bfloat16_tensor_is_met(tmp_path: Path) -> None:
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-c", _NO_BF16_RUN, str(ROOT / "cfg" / "encoder_default.cfg"),
         str(tmp_path / "m.safetensors")],
        capture_output=True, text=True, check=False)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


def test_dtype_tables_agree_with_the_loaded_dtypes() -> None:
    from nntm import dtypes, modelio

    assert [d.name for d in hls.DTYPES] == list(hls.DTYPE_NAMES)
    for i, d in enumerate(hls.DTYPES):
        assert hls.dtype_code(d) == i and hls.dtype_of_code(i) == d
    assert dtypes.BF16_MAX == float(__import__("ml_dtypes").finfo(dtypes.bfloat16()).max)
    for code, d in modelio.SAFETENSORS_DTYPES.items():
        assert d.name == modelio.SAFETENSORS_DTYPE_NAMES[code]
    with pytest.raises(ValueError):
        hls.dtype_code(__import__("numpy").dtype(">f4"))


def test_show_and_calibrate_refuse_to_overwrite_their_input(tmp_path: Path, capsys) -> None:
    from nntm.apps import calibrate, show

    bit = tmp_path / "t.bit"
    bit.write_bytes((ROOT / "bitstreams" / "TREE_A_1.bit").read_bytes())
    before = _md5(bit)
    link = tmp_path / "link.png"
    link.symlink_to(bit)
    for out, why in ((bit, "names no picture format"), (link, "same file as -b"),
                     (tmp_path / "x.jpg", "names no picture format")):
        assert show.main(["-b", str(bit), "-t", "*", "-o", str(out)]) != 0
        assert why in capsys.readouterr().err
    assert _md5(bit) == before
    model = tmp_path / "m.safetensors"
    model.write_bytes(EXAMPLE_MODEL_PATH.read_bytes())
    assert calibrate.main(["--model", "minilm", "-i", str(model), "-o", str(model)]) != 0
    assert "same file as -i" in capsys.readouterr().err
    assert _md5(model) == hashlib.md5(EXAMPLE_MODEL_PATH.read_bytes()).hexdigest()
