"""Rate control (issue #18 item 4): TargetBitsPerParam / TargetSize find the QPs from a sampled
pre-encode, then the model is coded once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nntm import codec, ratecontrol
from nntm.apps import encoder
from nntm.config import Config
from nntm.errors import ConfigError
from nntm.modelio import write_model


def _model(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(24):
        scale = 0.02 * (1 + i % 5)
        out[f"layer{i}.weight"] = rng.laplace(0, scale, (96, 200)).astype(np.float32)
        out[f"layer{i}.bias"] = rng.normal(0, 0.01, 96).astype(np.float32)
    return out


@pytest.mark.parametrize("bpp", [2.0, 4.0, 6.0])
def test_target_bits_per_param_is_met(bpp: float) -> None:
    model = _model()
    cfg = Config.defaults().replace(TargetBitsPerParam=bpp)
    target = ratecontrol.target_bits(cfg, model)
    floats = sum(v.size for v in model.values())
    assert target == pytest.approx(bpp * floats)
    p = ratecontrol.plan(model, cfg, target)
    assert p.estimate_bits <= target and p.probes <= 12
    res = codec.encode_with_recon(model, cfg.replace(QP=p.qp), qp_offsets=p.offsets)
    achieved = 8 * len(res.data) / floats
    assert abs(achieved / bpp - 1) < 0.03, (achieved, bpp)
    qps = {s.qp for s in res.stats if len(s.shape) == 2}
    assert qps <= {p.qp, p.qp - 1}
    assert p.offsets and all(v == -1 for v in p.offsets.values())


def test_target_size_through_the_app(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.safetensors"
    write_model(path, _model(1))
    bit = tmp_path / "m.bit"
    assert encoder.main(["-i", str(path), "-b", str(bit), "--TargetSize=60K"]) == 0
    size = bit.stat().st_size
    assert abs(size / (60 * 1024) - 1) < 0.03, size
    out = capsys.readouterr().out
    assert "Rate control  : target" in out and "achieved" in out
    assert codec.decode(bit.read_bytes()).keys() == _model(1).keys()


def test_rate_control_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="give one of them"):
        ratecontrol.target_bits(Config.defaults().replace(TargetBitsPerParam=2.0,
                                                          TargetSize="1M"), _model())
    assert ratecontrol.target_bits(Config.defaults(), _model()) is None
    bit = str(tmp_path / "x.bit")
    assert encoder.main(["-b", bit, "--TargetSize=lots", "--TargetBitsPerParam=3"]) != 0
    err = capsys.readouterr().err
    assert "TargetSize: 'lots' is not a size" in err and "give one of them" in err
    imp = tmp_path / "imp.safetensors"
    write_model(imp, {"fc1.weight": np.ones((64, 512), np.float32)})
    assert encoder.main(["-b", bit, "--TargetBitsPerParam=3", f"--ImportanceFile={imp}"]) != 0
    assert "does not take ImportanceFile" in capsys.readouterr().err


def test_a_target_below_the_coarsest_qp_takes_the_coarsest() -> None:
    model = _model()
    cfg = Config.defaults()
    p = ratecontrol.plan(model, cfg, 8.0)  # 1 byte: impossible
    assert p.qp == ratecontrol.QP_MAX and not p.offsets and p.estimate_bits > 8.0


def test_progress_line_only_on_a_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """(issue #18 item 6) tqdm's line on stderr when it is a terminal; quiet otherwise."""
    bit = str(tmp_path / "x.bit")
    assert encoder.main(["-b", bit]) == 0
    quiet = capsys.readouterr()
    assert quiet.err == "" and "conv1.weight" in quiet.out
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert encoder.main(["-b", bit]) == 0
    shown = capsys.readouterr()
    assert "encoding" in shown.err and "/8 tensors" in shown.err
    lines = [ln for ln in shown.out.splitlines() if ln.startswith(("conv", "fc"))]
    assert len(lines) == 8  # the report is whole, on stdout
