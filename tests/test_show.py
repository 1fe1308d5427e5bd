"""nntm-show: pictures of tree-coded and raster-coded tensors, and its matplotlib dependency."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from nntm import codec, core, hls
from nntm.apps import encoder, show
from nntm.arrange import Arrangement, to_kernel
from nntm.config import Config
from nntm.example import EXAMPLE_MODEL_PATH
from nntm.modelio import read_model

ROOT = Path(__file__).resolve().parents[1]
CFG = ROOT / "cfg"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_start_stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README quick start's stream: the bundled example at the default cfg (no tree)."""
    bit = tmp_path_factory.mktemp("show") / "out" / "digits.bit"
    argv = ["-c", str(CFG / "encoder_default.cfg"), "-b", str(bit), "--Verbose=0"]
    assert encoder.main(argv) == 0
    return bit


@pytest.fixture(scope="module")
def level_stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example at the default cfg without dependent quantization: whole-step weights."""
    bit = tmp_path_factory.mktemp("show_levels") / "digits.bit"
    argv = ["-c", str(CFG / "encoder_default.cfg"), "--DepQuant=0", "-b", str(bit),
            "--Verbose=0"]
    assert encoder.main(argv) == 0
    return bit


def _parameter_sets(data: bytes) -> dict[str, hls.TensorParameterSet]:
    units = hls.split_units(data)
    mps = hls.parse_model_parameter_set(units[0])
    sets = (hls.parse_tensor_parameter_set(u, mps) for u in units
            if u.unit_type == hls.UnitType.TENSOR_PARAMETER_SET)
    return {t.name: t for t in sets}


def _no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import matplotlib` (and its submodules) fail, as if it were not installed."""
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


# ------------------------------------------------------------------ without matplotlib


def test_show_extra_holds_matplotlib() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "nntm[show]" in show.INSTALL_HINT
    assert any(dep.split(">")[0].split("=")[0].strip() == "matplotlib"
               for dep in project["optional-dependencies"]["show"])
    assert project["scripts"]["nntm-show"] == "nntm.apps.show:main"


def test_help_names_the_extra(capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    _no_matplotlib(monkeypatch)  # --help works without matplotlib
    with pytest.raises(SystemExit) as info:
        show.main(["--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert 'pip install "nntm[show]"' in out and "raster-coded" in out


def test_missing_matplotlib_is_one_clean_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    quick_start_stream: Path, tmp_path: Path
) -> None:
    _no_matplotlib(monkeypatch)
    png = tmp_path / "fc1.png"
    status = show.main(["-b", str(quick_start_stream), "-t", "fc1.weight", "-o", str(png)])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("nntm-show: error: matplotlib"), err
    assert 'pip install "nntm[show]"' in err and "Traceback" not in err
    assert not png.exists()


def test_raster_image_is_the_level_map(level_stream: Path) -> None:
    data = level_stream.read_bytes()
    decoded = codec.decode(data)
    tps = _parameter_sets(data)["fc1.weight"]
    assert tps.coding_mode == hls.CodingMode.QUANTIZED and tps.tree_type == 0
    kernel = to_kernel(decoded["fc1.weight"], Arrangement(tps.arrangement))
    image, label = show.raster_image(kernel, tps)
    assert label == "|level|"
    assert image.shape == kernel.shape
    np.testing.assert_array_equal(image, np.rint(image))
    step = core.step_size(tps.qp, tps.qp_density)
    np.testing.assert_allclose(image * step, kernel.astype(np.float64), rtol=0, atol=step * 1e-6)
    assert 0 < np.count_nonzero(image) < image.size
    assert np.abs(image).max() >= 2


def test_raster_image_of_other_tensors() -> None:
    weights = np.array([[0.1, 0.2], [0.3, 0.0]], dtype=np.float32)
    lossless = hls.TensorParameterSet(tensor_id=0, name="w", dtype=np.dtype(np.float32),
                                      shape=(2, 2), coding_mode=hls.CodingMode.LOSSLESS)
    image, label = show.raster_image(weights, lossless)
    assert label == "|weight|"
    np.testing.assert_array_equal(image, weights.astype(np.float64))
    quantized = hls.TensorParameterSet(tensor_id=0, name="w", dtype=np.dtype(np.float32),
                                       shape=(2, 2), coding_mode=hls.CodingMode.QUANTIZED,
                                       qp=-16, qp_density=2)  # step 1/16: 0.1 is no whole step
    image, label = show.raster_image(weights, quantized)
    assert label == "|weight| / step"
    np.testing.assert_allclose(image, weights.astype(np.float64) * 16.0)


# ------------------------------------------------------------------ drawing


def _draw(capsys: pytest.CaptureFixture[str], bit: Path, tensor: str, png: Path) -> str:
    pytest.importorskip("matplotlib")
    status = show.main(["-b", str(bit), "-t", tensor, "-o", str(png)])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert png.read_bytes()[:8] == PNG_MAGIC
    return out


@pytest.mark.parametrize("tensor", ["fc1.weight", "conv2.weight", "conv1.bias"])
def test_draws_raster_coded_tensor_of_quick_start_stream(
    capsys: pytest.CaptureFixture[str], quick_start_stream: Path, tmp_path: Path, tensor: str
) -> None:
    png = tmp_path / "pictures" / f"{tensor}.png"  # a missing folder is made
    out = _draw(capsys, quick_start_stream, tensor, png)
    # the default cfg uses dependent quantization: weights are not whole steps
    assert f"|weight| / step of '{tensor}'" in out


def test_unwritable_picture_is_a_clean_error(
    capsys: pytest.CaptureFixture[str], quick_start_stream: Path, tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    (tmp_path / "file").write_text("not a folder")
    png = tmp_path / "file" / "fc1.png"
    assert show.main(["-b", str(quick_start_stream), "-t", "fc1.weight", "-o", str(png)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("nntm-show: error: -o ") and "is not a folder" in err
    assert "Traceback" not in err


def test_draws_tree_coded_tensor_with_its_cus(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cfg = Config.from_files([CFG / "encoder_anchor.cfg", CFG / "encoder_tree.cfg"],
                            overrides={"Preset": "fast"})
    model = read_model(EXAMPLE_MODEL_PATH)
    bit = tmp_path / "tree.bit"
    bit.write_bytes(codec.encode({"fc1.weight": model["fc1.weight"]}, cfg))
    out = _draw(capsys, bit, "fc1.*", tmp_path / "fc1.png")
    n_cus = int(out.split("(")[1].split()[0])
    assert n_cus > 0 and "CUs of 'fc1.weight'" in out


def test_empty_tensor_is_a_clean_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    cfg = Config.from_files([CFG / "encoder_default.cfg"])
    bit = tmp_path / "empty.bit"
    bit.write_bytes(codec.encode({"e": np.zeros((0, 4), np.float32)}, cfg))
    assert show.main(["-b", str(bit), "-t", "e", "-o", str(tmp_path / "e.png")]) == 1
    assert "no elements" in capsys.readouterr().err
    assert not (tmp_path / "e.png").exists()
