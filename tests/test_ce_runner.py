"""The CE harness: measurements, NNCodec wrapper framing, CEApp end to end."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from nntm.ce import app, report
from nntm.ce.nncodec_anchor import (
    NNCodecAnchor,
    pack,
    restore_tensors,
    split_for_nncodec,
    unpack,
)
from nntm.ce.runner import Codec, Encoded, NntmCodec, Point, run_point, run_sweep, weight_snr
from nntm.errors import ConfigError, NntmError

ROOT = Path(__file__).resolve().parent.parent
QUICK_CFG = ROOT / "cfg" / "ce" / "quick.cfg"
CTC_CFG = ROOT / "cfg" / "ce" / "ctc.cfg"


def anchor_cfg() -> Path:
    for name in ("encoder_anchor.cfg", "encoder_default.cfg"):
        path = ROOT / "cfg" / name
        if path.is_file():
            return path
    raise AssertionError("no NNTM anchor cfg in cfg/")


# ---------------------------------------------------------------------------
# Fakes: a model adapter and a codec that need neither torch nor the C core
# ---------------------------------------------------------------------------


class FakeAdapter:
    name = "fake"
    primary_metric = "out_db"
    metric_keys = ("out_db", "mean")

    def __init__(self) -> None:
        rng = np.random.default_rng(7)
        self.tensors = {
            "conv.weight": rng.normal(size=(8, 4, 3, 3)).astype(np.float32),
            "conv.bias": (0.01 * rng.normal(size=8)).astype(np.float32),
            "bn.running_var": (1000.0 + rng.random(8)).astype(np.float32),
            "bn.num_batches_tracked": np.array(12, dtype=np.int64),
        }

    def available(self) -> tuple[bool, str]:
        return True, ""

    def load(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.tensors.items()}

    def evaluate(self, tensors: Mapping[str, np.ndarray]) -> dict[str, float]:
        w = tensors["conv.weight"].astype(np.float64)
        e = float(np.mean((w - self.tensors["conv.weight"]) ** 2))
        return {"out_db": -10 * math.log10(max(e, 1e-12)), "mean": float(w.mean())}


class RoundingCodec(Codec):
    """Rounds float tensors to a step 2^(QP/4); the 'stream' is the raw levels."""

    checks_recon = True

    def __init__(self, name: str = "round", corrupt: bool = False) -> None:
        self.name = name
        self.spec = name
        self.corrupt = corrupt
        self._streams: dict[bytes, dict[str, np.ndarray]] = {}

    def encode(self, tensors: Mapping[str, np.ndarray], qp: int, model: str) -> Encoded:
        step = 2.0 ** (qp / 4)
        recon = {
            k: (np.round(v / step) * step).astype(v.dtype) if v.dtype.kind == "f" else v.copy()
            for k, v in tensors.items()
        }
        data = b"".join(np.round(v / step).astype(np.int16).tobytes() for v in recon.values())
        data += qp.to_bytes(2, "little", signed=True)
        out = {k: v.copy() for k, v in recon.items()}
        if self.corrupt:
            out["conv.bias"] = out["conv.bias"] + np.float32(1e-3)
        self._streams[data] = out
        return Encoded(data, recon)

    def decode(self, data: bytes) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self._streams[data].items()}


# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------


def test_weight_snr_pooled_and_normalised() -> None:
    big = np.full(100, 10.0, dtype=np.float32)  # energy 10000
    small = np.ones(100, dtype=np.float32)  # energy 100
    orig = {"big": big, "small": small, "ids": np.arange(5)}
    # Error energy 1 on each tensor.
    dec = {"big": big + np.float32(0.1), "small": small - np.float32(0.1), "ids": np.arange(5)}
    w = weight_snr(orig, dec)
    assert w.num_params == 200  # integer buffers are not parameters
    assert w.pooled_db == pytest.approx(10 * math.log10(10100 / 2), abs=1e-4)
    # per tensor: relative errors 1e-4 and 1e-2 -> -10 log10(mean)
    assert w.normalised_db == pytest.approx(-10 * math.log10((1e-4 + 1e-2) / 2), abs=1e-4)
    assert (w.num_tensors, w.num_excluded) == (2, 0)
    w = weight_snr(orig, orig)
    assert w.pooled_db == math.inf and w.normalised_db == math.inf


def test_normalised_snr_leaves_out_numerically_zero_tensors() -> None:
    rng = np.random.default_rng(3)
    orig = {
        "w1": rng.normal(size=(32, 32)).astype(np.float32),
        "w2": rng.normal(size=(32, 32)).astype(np.float32),
        "bn.running_mean": np.full(16, 1e-7, dtype=np.float32),  # noise-level buffer
        "zero.bias": np.zeros(16, dtype=np.float32),
    }
    dec = {k: v.copy() for k, v in orig.items()}
    dec["w1"] = dec["w1"] * np.float32(1.01)  # relative error 1e-4 -> 40 dB
    dec["w2"] = dec["w2"] * np.float32(1.01)
    dec["bn.running_mean"][:] = 0.0  # zeroed, as any lossy codec does
    w = weight_snr(orig, dec)
    assert w.normalised_db == pytest.approx(40.0, abs=1e-3)
    assert (w.num_tensors, w.num_excluded) == (4, 2)


def test_run_sweep_measures_points() -> None:
    adapter = FakeAdapter()
    lines: list[str] = []
    pts = run_sweep(adapter, RoundingCodec(), [-8, -16, -24], role="anchor", log=lines.append)  # type: ignore[arg-type]
    assert [p.qp for p in pts] == [-8, -16, -24]
    assert len(lines) == 3 and "[fake]" in lines[0] and "bits/param" in lines[0]
    p = pts[0]
    assert p.num_params == 8 * 4 * 9 + 8 + 8
    assert p.bits == 8 * p.bytes and p.bits_per_param == pytest.approx(p.bits / p.num_params)
    # finer QP, more SNR; the BatchNorm variances dominate the pooled figure
    snrs = [q.snr_db for q in pts]
    norms = [q.snr_norm_db for q in pts]
    assert snrs == sorted(snrs) and norms == sorted(norms)
    assert all(s > n for s, n in zip(snrs, norms, strict=True))
    assert set(p.metrics) == {"out_db", "mean"} and p.primary == p.metrics["out_db"]
    assert p.enc_s >= 0 and p.dec_s >= 0


def test_decoder_mismatch_is_an_error() -> None:
    adapter = FakeAdapter()
    with pytest.raises(NntmError, match="mismatch"):
        run_point(adapter, RoundingCodec(corrupt=True), -16, adapter.load())  # type: ignore[arg-type]


def test_nntm_codec_point_without_network() -> None:
    pytest.importorskip("nntm._nntm_c")  # the built C core
    adapter = FakeAdapter()
    tensors = {k: v for k, v in adapter.load().items() if v.ndim > 0}
    codec = NntmCodec([anchor_cfg()])
    ok, why = codec.available()
    assert ok, why
    p = run_point(adapter, codec, -28, tensors)  # type: ignore[arg-type]
    assert p.bytes > 0 and math.isfinite(p.snr_db) and p.snr_db > 10


def test_nntm_recon_equals_decoded_for_0d_buffer() -> None:
    pytest.importorskip("nntm._nntm_c")
    adapter = FakeAdapter()  # has a 0-d int64 num_batches_tracked, like every BatchNorm
    run_point(adapter, NntmCodec([anchor_cfg()]), -28, adapter.load())  # type: ignore[arg-type]


def test_report_outputs(tmp_path: Path) -> None:
    adapter = FakeAdapter()
    qps = [-8, -12, -16, -20, -24]
    pts = run_sweep(adapter, RoundingCodec("a"), qps, role="anchor", log=None)  # type: ignore[arg-type]
    pts += run_sweep(adapter, RoundingCodec("b"), qps, role="test", log=None)  # type: ignore[arg-type]
    rows = report.bd_summary(pts, "a", ["b"])
    assert [r.model for r in rows] == ["fake", "overall"]
    # identical codecs: every BD-rate is zero
    assert rows[0].bd_snr is not None and rows[0].bd_snr.value == pytest.approx(0, abs=1e-9)
    assert rows[1].value("bd_snr_norm") == pytest.approx(0, abs=1e-9)
    md = report.markdown_report(pts, "a", ["b"], models=["fake"])
    assert "| fake |" in md and "### fake" in md and "+0.00 %" in md
    report.write_csv(tmp_path / "x.csv", pts)
    with open(tmp_path / "x.csv", newline="") as f:
        got = list(csv.DictReader(f))
    assert len(got) == 10 and got[0]["out_db"] and float(got[0]["bits_per_param"]) > 0


# ---------------------------------------------------------------------------
# NNCodec wrapper framing (no NNCodec needed)
# ---------------------------------------------------------------------------


def test_nncodec_side_header_round_trip() -> None:
    tensors = {
        "w": np.ones((3, 4), dtype=np.float32),
        "half": np.ones((2, 2), dtype=np.float16),
        "scalar": np.array(2.0, dtype=np.float32),
        "pos": np.arange(6, dtype=np.int64).reshape(1, 6),
        "huge": np.array([2**40], dtype=np.int64),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    params, info, raw = split_for_nncodec(tensors)
    assert set(params) == {"w", "half", "scalar", "pos"}
    assert all(v.dtype in (np.float32, np.int32) for v in params.values())
    fake_stream = b"NNR"
    data = pack(info, raw, fake_stream)
    info2, raw2, stream = unpack(data)
    assert stream == fake_stream
    decoded = {k: v.reshape(-1) if v.ndim == 0 else v for k, v in params.items()}
    out = restore_tensors(decoded, info2, raw2)
    assert list(out) == list(tensors)
    for k, v in tensors.items():
        assert out[k].dtype == v.dtype and out[k].shape == v.shape
        assert np.array_equal(out[k], v)
    # an all-float32 model costs one header byte
    params, info, raw = split_for_nncodec({"w": tensors["w"]})
    assert pack(info, raw, b"S") == b"\x00S"


def test_nncodec_round_trip_when_installed() -> None:
    codec = NNCodecAnchor()
    ok, why = codec.available()
    if not ok:
        pytest.skip(why)
    adapter = FakeAdapter()
    p = run_point(adapter, codec, -32, adapter.load())  # type: ignore[arg-type]
    assert p.bytes > 0 and p.snr_norm_db > 15
    again = codec.encode(adapter.load(), -32, "fake").data
    assert again == codec.encode(adapter.load(), -32, "fake").data


# ---------------------------------------------------------------------------
# CEApp
# ---------------------------------------------------------------------------


def test_cfg_files_parse() -> None:
    for path in (CTC_CFG, QUICK_CFG):
        cfg = app.parse_args(["-c", str(path)])
        assert app.split_models(str(cfg["Models"]))
        assert len(cfg["QPs"]) >= 4  # type: ignore[arg-type]
    ctc = app.parse_args(["-c", str(CTC_CFG)])
    assert app.split_models(str(ctc["Models"])) == ["digits", "minilm", "mobilenetv2", "mtcnn"]
    quick = app.parse_args(["-c", str(QUICK_CFG)])
    assert app.split_models(str(quick["Models"])) == ["digits"] and len(quick["QPs"]) == 4  # type: ignore[arg-type]


def test_lowercase_aliases_and_overrides() -> None:
    cfg = app.parse_args(["--anchor=nncodec", "--test", "x.cfg", "--models=a,b", "--qps=-20,-24"])
    assert cfg["Anchor"] == "nncodec" and cfg["Test"] == "x.cfg" and cfg["Models"] == "a,b"
    assert cfg["QPs"] == (-20, -24)
    assert app.parse_overrides("RDOQ=0; LambdaScale = 1.5", "TestOptions") == {
        "RDOQ": "0",
        "LambdaScale": "1.5",
    }
    with pytest.raises(ConfigError):
        app.parse_overrides("RDOQ", "TestOptions")
    assert app.parse_qp_offsets("mtcnn=-4, digits=2") == {"mtcnn": -4, "digits": 2}
    with pytest.raises(ConfigError):
        app.parse_qp_offsets("mtcnn=x")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--Models=nosuchmodel"], "unknown CE model"),
        (["--Anchor=cfg/does_not_exist.cfg"], "not found"),
        (["--Bogus=1"], "unknown key"),
        (["--QPs=abc"], "QPs"),
    ],
)
def test_errors_exit_non_zero(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    base = ["-c", str(QUICK_CFG), f"--Anchor={anchor_cfg()}", f"--ResultsDir={tmp_path}"]
    rc = app.main([*base, *argv])
    assert rc != 0
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert app.main(["--help"]) == 0
    assert "NNCodecQPs" in capsys.readouterr().out


def test_ceapp_end_to_end_digits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """CEApp on the digits model, quick cfg, two NNTM cfgs (the second layers RDOQ off)."""
    from nntm.ce.models import get_adapter

    ok, why = get_adapter("digits").available()
    if not ok:  # torch is an optional (CE extra) dependency
        pytest.skip(why)
    no_rdoq = tmp_path / "no_rdoq.cfg"
    no_rdoq.write_text("RDOQ : 0   # test: plain rounding\n")
    out_dir = tmp_path / "res"
    plots = report.matplotlib_available()
    argv = [
        "-c",
        str(QUICK_CFG),
        f"--Anchor={anchor_cfg()}",
        f"--Test={anchor_cfg()},{no_rdoq}",
        "--TestName=nordoq",
        f"--ResultsDir={out_dir}",
        "--Name=quick",
        f"--Plots={int(plots)}",
        f"--Cache={tmp_path / 'cache'}",
    ]
    assert app.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("[digits]") == 8
    assert "BD-rate of **nordoq** against **" in out and "| **overall** |" in out

    md = (out_dir / "quick.md").read_text()
    assert "## BD-rate" in md and "### digits" in md and "| digits |" in md
    with open(out_dir / "quick.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8
    assert {r["role"] for r in rows} == {"anchor", "test"}
    assert {r["config"] for r in rows} == {anchor_cfg().stem, "nordoq"}
    adapter = get_adapter("digits")
    for key in ("bits_per_param", "snr_db", "snr_norm_db", *adapter.metric_keys):
        assert all(math.isfinite(float(r[key])) for r in rows), key
    for role in ("anchor", "test"):
        sweep = sorted(
            (int(r["qp"]), float(r["bits_per_param"])) for r in rows if r["role"] == role
        )
        bpp = [b for _, b in sweep]
        assert bpp == sorted(bpp, reverse=True), "finer QP must cost more bits"
        assert 1.0 < min(bpp) and max(bpp) < 16.0
    assert (out_dir / "rd_digits.png").is_file() == plots
    if plots:
        assert (out_dir / "rd_digits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_point_row_has_every_column() -> None:
    p = Point(
        "m", "c", "anchor", -20, 100, 400, 20.0, 21.0, {"x": 1.0}, 0.5, 0.25, "x", cached=True
    )
    row = p.row()
    assert row["bits"] == 800 and row["bits_per_param"] == 2.0 and row["x"] == 1.0
    assert row["cached"] == 1 and row["enc_s"] == 0.5
    assert list(row)[: len(report.FIXED_COLUMNS)] == list(report.FIXED_COLUMNS)
