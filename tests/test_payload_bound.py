"""Clause 7.1's bound on raster payloads holds for the streams the encoder makes.

An almost all-zero tensor costs about 0.0009 bit a level with the counting estimator
(ProbWindow, format 1.4), below the dual-rate estimator's 0.0031: the decoders' refusal
before allocation must use the estimator's own bound, or they refuse conforming streams."""

from __future__ import annotations

import subprocess
from pathlib import Path

import nntm
import numpy as np
import pytest
from nntm import codec, hls
from nntm.config import Config
from test_prob_window import stream_tensors

ROOT = Path(__file__).resolve().parents[1]
CFGS = ("encoder_default.cfg", "encoder_anchor.cfg", "encoder_weight_fidelity.cfg")
NNTM_DEC = ROOT / "build" / "nntm-dec"


def _sparse_model() -> dict[str, np.ndarray]:
    w = np.zeros((576, 576), np.float32)
    w[0, 0] = 0.5
    return {"w": w, "v": np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)}


def _config(name: str) -> Config:
    files = [ROOT / "cfg" / "encoder_anchor.cfg"] if name != "encoder_anchor.cfg" else []
    return Config.from_files([*files, ROOT / "cfg" / name])


@pytest.mark.parametrize("cfg", CFGS)
def test_sparse_tensor_round_trip(cfg: str, tmp_path: Path) -> None:
    model = _sparse_model()
    data = nntm.encode(model, _config(cfg))
    out = nntm.decode(data)
    assert set(out) == set(model)
    if NNTM_DEC.exists():
        (tmp_path / "s.bit").write_bytes(data)
        run = subprocess.run([str(NNTM_DEC), "-b", str(tmp_path / "s.bit"), "-o",
                              str(tmp_path / "s.safetensors")], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr


def test_counting_estimator_payload_below_the_dual_rate_bound() -> None:
    """The case the old bound refused: fewer bytes than 4096 levels a byte allow."""
    data = nntm.encode(_sparse_model(), _config("encoder_default.cfg"))
    tps, size = next((t, len(p)) for t, p in stream_tensors(data)[1] if t.name == "w")
    assert tps.prob_window > 0
    assert tps.num_elements > codec.MIN_ELEMENTS_PER_BYTE * (size + 8)
    assert tps.num_elements <= codec.max_raster_elements(tps, size)


def test_the_bound_still_refuses_a_bomb() -> None:
    tps = hls.TensorParameterSet(0, "w", np.dtype(np.float32), (1 << 20, 1 << 10),
                                 hls.CodingMode.QUANTIZED)
    tps.prob_window = 10
    assert tps.num_elements > codec.max_raster_elements(tps, 40)
    tps.prob_window = 0
    assert codec.max_raster_elements(tps, 40) == codec.MIN_ELEMENTS_PER_BYTE * 48
