"""The encoder never fails on a legal model (issue #15 item 4).

Where a tensor's levels would exceed the coder's range (|level| <= 2^30 - 1) at the
requested QP, the encoder codes the tensor at the finest QP that fits, or exactly when
that is no larger, says so in TensorStats.note, and EncoderApp prints one warning line
per such tensor.  One test per fallback path: plain raster, coding tree (with and without
CU QP deltas), dependent quantization, row prediction, predicted tensors, a 1-D tensor at
QP1D -64, lossless when cheaper, float64 beyond float32's range.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nntm import codec, core, hls
from nntm.apps import encoder as encoder_app
from nntm.config import Config
from nntm.errors import CoreError
from nntm.modelio import write_model

MAX_LEVEL = int(core.lib.NNTM_MAX_LEVEL)


def cfg(**changes: object) -> Config:
    return Config.defaults().replace(**{"LosslessMaxElements": 0, **changes})


def spiky(shape: tuple[int, ...] = (32, 32), spike: float = 2e6, seed: int = 1) -> np.ndarray:
    """Weights of about 1e3 with one spike that does not fit QP -64 (step 2^-16)."""
    rng = np.random.default_rng(seed)
    w = (rng.normal(size=shape) * 1e3).astype(np.float32)
    w.reshape(-1)[37] = spike
    return w


def _encode_one(w: np.ndarray, config: Config, **kw: object) -> tuple[codec.EncodeResult,
                                                                       codec.TensorStats]:
    result = codec.encode_with_recon({"w": w}, config, **kw)
    return result, result.stats[0]


def _check_within_step(w: np.ndarray, result: codec.EncodeResult, qp: int, density: int = 2,
                       **kw: object) -> None:
    """The stream decodes to the encoder's reconstruction, within one step of the weights."""
    decoded = codec.decode(result.data, **kw)["w"]
    assert decoded.tobytes() == result.recon["w"].tobytes()
    err = np.abs(decoded.astype(np.float64) - w.astype(np.float64))
    assert float(np.max(err)) <= core.step_size(qp, density)


def _fails_at(w: np.ndarray, config: Config, qp: int) -> bool:
    """Whether the tensor's levels overflow at ``qp`` (the encoder's own settings)."""
    try:
        codec.encode_with_recon({"w": w}, config.replace(QP=qp, QP1D=qp))
    except Exception:  # noqa: BLE001 - any failure counts
        return True
    stat = codec.encode_with_recon({"w": w}, config.replace(QP=qp, QP1D=qp)).stats[0]
    return bool(stat.note)


@pytest.mark.parametrize("tools", [
    {},
    {"TreeType": "qtmtt", "CTUSize": 8},
    {"TreeType": "qtmtt", "CTUSize": 8, "CUQPDelta": True},
    {"TreeType": "qtmtt", "CTUSize": 8, "CUQPDelta": True, "QPDeltaSearch": "-24 0 8"},
    {"DepQuant": True},
    {"DepQuant": True, "DQStates": "8"},
    {"TreeType": "qt", "CTUSize": 8, "DepQuant": True},
    {"TreeType": "qtmtt", "CTUSize": 8, "IntraPred": True},
    {"RowPred": 2},
], ids=["raster", "tree", "tree-cuqpdelta", "tree-wide-deltas", "dq", "dq8", "tree-dq",
        "tree-intra", "rowpred"])
def test_too_large_weights_are_coded_at_the_finest_qp_that_fits(tools: dict) -> None:
    w = spiky()
    config = cfg(QP=-64, **tools)
    result, stat = _encode_one(w, config)
    assert stat.mode == "quantized" and stat.qp is not None and stat.qp > -64
    assert f"QP -64: coded at QP {stat.qp}, the finest QP that fits" in stat.note
    _check_within_step(w, result, stat.qp)
    # one QP finer does not fit; the chosen one does, without a note
    assert _fails_at(w, config, stat.qp - 1)
    assert not _fails_at(w, config, stat.qp)


def test_the_core_itself_refuses_the_requested_qp() -> None:
    """The fallback covers a real error of the C coder, not a Python-side guess."""
    w = spiky()
    params = core.KernelParams(32, 32, -64, 2, 4)
    with pytest.raises(CoreError) as info:
        core.encode_kernel(w, params, np.dtype(np.float32), True, 0.1, "w")
    assert info.value.code == core.lib.NNTM_ERR_RANGE


def test_first_fitting_qp_follows_the_step_formula() -> None:
    for density in (0, 2, 6):
        for max_abs in (1.0, 3e4, 2e6, 3e38):
            q = codec.first_fitting_qp(max_abs, -2000, density)
            if density == 6 and max_abs == 3e38:  # step 2^98 needs QP 6272 > 4096
                assert q is None
                continue
            assert q is not None
            assert max_abs / core.step_size(q, density) <= MAX_LEVEL
            assert max_abs / core.step_size(q - 1, density) > MAX_LEVEL
    assert codec.first_fitting_qp(1.0, -64, 2) == -64  # fits already: unchanged


def test_no_qp_of_the_syntax_fits_then_exactly() -> None:
    """At QPDensity 6 the coarsest step the syntax reaches (QP 4096) is 2^64: 3e38 does
    not fit at any QP, and the tensor is carried exactly."""
    w = np.array([[3e38, 1.0, -2.0, 0.5]], dtype=np.float32)
    result, stat = _encode_one(w, cfg(QP=-28, QPDensity=6))
    assert stat.mode == "lossless" and "every QP the syntax allows" in stat.note
    assert codec.decode(result.data)["w"].tobytes() == w.tobytes()


def test_1d_tensor_at_qp1d_minus_64_with_large_values() -> None:
    """The issue's case: a BatchNorm-variance-like 1-D tensor at QP1DMode fixed, QP1D -64.

    |level| <= 2^30 - 1 at step 2^-16 holds |w| < 16384: values up to 1e4 fit; a few
    variances up to 3e4 among small ones do not."""
    rng = np.random.default_rng(0)
    fits = (10 ** rng.uniform(-2, 4, 64)).astype(np.float32)
    config = cfg(QP1DMode="fixed", QP1D=-64)
    _, stat = _encode_one(fits, config)
    assert stat.qp == -64 and not stat.note
    var = np.concatenate([rng.uniform(0.01, 2.0, 200), [1.2e4, 3e4]]).astype(np.float32)
    result, stat = _encode_one(var, config)
    # 3e4 / (2^30 - 1) = 2.79e-5: QP -61 (step 7 * 2^-18 = 2.67e-5) is too fine, QP -60
    # (step 2^-15 = 3.05e-5) fits
    assert stat.mode == "quantized" and stat.qp == -60, stat.note
    assert "QP -64: coded at QP -60, the finest QP that fits" in stat.note
    _check_within_step(var, result, stat.qp)
    assert _fails_at(var, config, -61)


def test_exactly_when_that_is_no_larger() -> None:
    """Values of +-1e5 need ~30-bit levels at the fitting QP: float32 carried exactly is
    smaller, and exact."""
    rng = np.random.default_rng(0)
    v = rng.uniform(-1e5, 1e5, 64).astype(np.float32)
    config = cfg(QP1DMode="fixed", QP1D=-64)
    result, stat = _encode_one(v, config)
    assert stat.mode == "lossless" and stat.qp is None
    assert "coded exactly (lossless, no larger than QP " in stat.note
    assert codec.decode(result.data)["w"].tobytes() == v.tobytes()
    # the quantized coding at the finest fitting QP is indeed larger
    q = int(stat.note.split("no larger than QP ")[1].split(",")[0])
    assert q == codec.first_fitting_qp(float(np.max(np.abs(v))), -64, 2)
    _, at_q = _encode_one(v, config.replace(QP1D=q))
    assert at_q.mode == "quantized" and not at_q.note and at_q.bits > stat.bits


def test_quantized_when_that_is_smaller() -> None:
    """Values spread over seven decades (most levels small) code smaller than float32 at
    the fitting QP: quantized it is."""
    rng = np.random.default_rng(0)
    v = (10 ** rng.uniform(-2, 5, 64)).astype(np.float32)
    result, stat = _encode_one(v, cfg(QP1DMode="fixed", QP1D=-64))
    assert stat.mode == "quantized" and stat.qp is not None and stat.qp > -64
    exact, _ = _encode_one(v, cfg(QP1DMode="fixed", QP1D=-64, LosslessMaxElements=64))
    assert stat.bits < exact.stats[0].bits
    _check_within_step(v, result, stat.qp)


def test_float32_near_its_maximum_is_coded() -> None:
    w = np.array([[3e38, 1.0, -2.5e38, 7.0]], dtype=np.float32)
    result, stat = _encode_one(w, cfg(QP=-28))
    assert stat.note and "QP -28" in stat.note
    decoded = codec.decode(result.data)["w"]
    assert decoded.tobytes() == result.recon["w"].tobytes()
    assert np.all(np.isfinite(decoded))


def test_float64_beyond_the_float32_range_is_coded_exactly() -> None:
    w = np.array([[1e39, 1.0], [-3.0, 2e300]], dtype=np.float64)
    result, stat = _encode_one(w, cfg())
    assert stat.mode == "lossless" and "beyond the float32 range" in stat.note
    assert codec.decode(result.data)["w"].tobytes() == w.tobytes()


def test_predicted_tensor_keeps_its_prediction_at_a_coarser_qp() -> None:
    rng = np.random.default_rng(3)
    ref = (rng.normal(size=(32, 32)) * 3e5).astype(np.float32)
    new = ref + rng.normal(size=(32, 32)).astype(np.float32)
    new[5, 5] = ref[5, 5] + 2e6  # one residual too large for QP -64
    config = cfg(QP=-64, IntegrityHash=0)
    result = codec.encode_with_recon({"w": new}, config, ref_model={"w": ref})
    stat = result.stats[0]
    assert stat.pred == "ref" and stat.qp is not None and stat.qp > -64
    assert "the finest QP that fits" in stat.note and "without it" not in stat.note
    _check_within_step(new, result, stat.qp, ref_model={"w": ref})


def test_prediction_dropped_when_its_residual_fits_no_qp() -> None:
    """A residual beyond float's range (weight 3e38, prediction -3e38) fits no QP: the
    tensor is coded without its prediction."""
    kernel = np.array([[3e38, 1.0]], dtype=np.float32)
    ref = core.Reference(np.array([[-3e38, 1.0]], dtype=np.float32), core.PRED_SCALE_ONE)
    params = core.KernelParams(1, 2, -28, 2, 4)
    fit = codec._encode_fitting(kernel, params, np.dtype(np.float32), cfg(),
                                core.SearchParams(), None, ref, None, "w")
    assert fit.ref is None and fit.dropped_ref and fit.fell_back
    assert "without it" in fit.note(-28)
    assert np.all(np.isfinite(fit.result.recon))


def test_other_core_errors_are_not_hidden() -> None:
    """Only a range error falls back: a bad argument is still an error."""
    params = core.KernelParams(1, 2, 5000, 2, 4)  # QP outside the syntax
    with pytest.raises(codec.EncodeError):
        codec._encode_fitting(np.ones((1, 2), np.float32), params, np.dtype(np.float32),
                              cfg(), core.SearchParams(), None, None, None, "w")


@pytest.mark.parametrize("verbose", ["0", "1"])
def test_encoder_app_warns_once_per_tensor_and_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], verbose: str) -> None:
    rng = np.random.default_rng(0)
    model = {
        "conv.weight": spiky((8, 4, 3, 3)),
        "bn.w_2": np.concatenate([rng.uniform(0.01, 2.0, 62), [1.2e4, 3e4]]).astype(np.float32),
        "fc.weight": rng.normal(size=(16, 8)).astype(np.float32),
    }
    src = tmp_path / "m.safetensors"
    write_model(str(src), model)
    bit = tmp_path / "m.bit"
    rc = encoder_app.main(["-i", str(src), "-b", str(bit), "--QP=-64", "--QP1DMode=fixed",
                           "--QP1D=-64", f"--Verbose={verbose}"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    warnings = [ln for ln in captured.err.splitlines() if "warning" in ln]
    assert len(warnings) == 2
    assert warnings[0].startswith("EncoderApp: warning: tensor 'conv.weight': ")
    assert warnings[1].startswith("EncoderApp: warning: tensor 'bn.w_2': ")
    assert all("the finest QP that fits" in ln for ln in warnings)
    decoded = codec.decode(bit.read_bytes())
    assert list(decoded) == list(model)
    mps = hls.parse_model_parameter_set(hls.split_units(bit.read_bytes())[0])
    assert mps.num_tensors == 3
