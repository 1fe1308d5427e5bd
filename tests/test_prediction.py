"""Model updates: tensors predicted from a reference model or an earlier tensor (format 1.2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nntm import codec, hls
from nntm.apps import decoder as decoder_app
from nntm.apps import encoder as encoder_app
from nntm.config import Config
from nntm.errors import BitstreamError, ReferenceModelError
from nntm.modelio import write_model


def _pair(seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    ref = {
        "a.weight": rng.normal(0, 0.05, (32, 48)).astype(np.float32),
        "a.bias": rng.normal(0, 0.01, (32,)).astype(np.float32),
        "b.weight": rng.normal(0, 0.05, (16, 8, 3, 3)).astype(np.float32),
        "steps": np.array([7], dtype=np.int64),
    }
    new = {k: v.copy() for k, v in ref.items()}
    new["a.weight"] += rng.normal(0, 0.002, (32, 48)).astype(np.float32)
    new["a.bias"] += rng.normal(0, 0.001, (32,)).astype(np.float32)
    new["b.weight"][:8] *= np.float32(0.99)      # half the filters change, half do not
    new["steps"][0] = 9
    return ref, new


def cfg(**changes: object) -> Config:
    """Defaults without the integrity hashes: the stream stays at prediction's format 1.2."""
    return Config.defaults().replace(**{"IntegrityHash": 0, **changes})


def _bits_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes() for k in a)


def test_update_round_trip_is_exact_and_much_smaller() -> None:
    ref, new = _pair()
    alone = codec.encode_with_recon(new, cfg(QP=-36))
    update = codec.encode_with_recon(new, cfg(QP=-36), ref_model=ref)
    # the 32-element bias saves fewer bits than its prediction fields cost; ints are lossless
    assert [s.pred for s in update.stats] == ["ref", "-", "ref", "-"]
    decoded = codec.decode(update.data, ref_model=ref)
    assert _bits_equal(decoded, update.recon)
    assert len(update.data) < 0.5 * len(alone.data)
    for name in ("a.weight", "b.weight"):  # same QP: about the same fidelity
        snr_u = codec.snr_db(new[name], update.recon[name])
        snr_a = codec.snr_db(new[name], alone.recon[name])
        assert snr_u > snr_a - 0.5
    mps = hls.parse_model_parameter_set(hls.split_units(update.data)[0])
    assert mps.version_minor == 2 and mps.tool_flags & hls.TOOL_INTER_PRED


def test_without_a_usable_reference_the_stream_stays_at_its_old_version() -> None:
    ref, new = _pair()
    plain = codec.encode(new, cfg(QP=-36))
    off = codec.encode_with_recon(new, cfg(QP=-36, InterPred=False), ref_model=ref).data
    other = codec.encode_with_recon(new, cfg(QP=-36), ref_model={"x": ref["a.weight"]}).data
    assert plain == off == other
    assert hls.parse_model_parameter_set(hls.split_units(plain)[0]).version_minor == 0


def test_missing_or_wrong_reference_is_an_error_naming_the_tensor() -> None:
    ref, new = _pair()
    data = codec.encode_with_recon(new, cfg(QP=-36), ref_model=ref).data
    with pytest.raises(ReferenceModelError, match="'a.weight' is predicted from a reference"):
        codec.decode(data)
    wrong = dict(ref, **{"a.weight": ref["a.weight"] + np.float32(1e-6)})
    with pytest.raises(ReferenceModelError, match="'a.weight'.*not the one.*MD5"):
        codec.decode(data, ref_model=wrong)
    lacking = {k: v for k, v in ref.items() if k != "b.weight"}
    with pytest.raises(ReferenceModelError, match="'b.weight': the reference model has no"):
        codec.decode(data, ref_model=lacking)
    reshaped = dict(ref, **{"a.weight": ref["a.weight"].reshape(48, 32)})
    with pytest.raises(ReferenceModelError, match="'a.weight'.*shape"):
        codec.decode(data, ref_model=reshaped)
    retyped = dict(ref, **{"a.weight": ref["a.weight"].astype(np.float16)})
    with pytest.raises(ReferenceModelError, match="'a.weight'.*float16"):
        codec.decode(data, ref_model=retyped)


def test_unchanged_filters_cost_almost_nothing_with_skip_cus() -> None:
    ref, new = _pair()
    tree = cfg(QP=-36, TreeType="qtmtt", CTUSize=16, MinQTSize=4, Preset="fast",
               PredScale=False)
    res = codec.encode_with_recon(new, tree, ref_model=ref)
    assert res.recon["b.weight"][8:].tobytes() == ref["b.weight"][8:].tobytes()
    cus = res.cus["b.weight"]
    assert np.any(cus["mode"] == 1)  # skip CUs
    assert _bits_equal(codec.decode(res.data, ref_model=ref), res.recon)


def test_prediction_from_an_earlier_tensor_of_the_same_model() -> None:
    rng = np.random.default_rng(5)
    base = rng.normal(0, 0.05, (24, 40)).astype(np.float32)
    model = {"l0": base, "l1": rng.normal(0, 0.05, (24, 40)).astype(np.float32),
             "l2": base * np.float32(0.5) + rng.normal(0, 1e-3, base.shape).astype(np.float32)}
    on = codec.encode_with_recon(model, cfg(QP=-32, EarlierTensorPred=True))
    off = codec.encode_with_recon(model, cfg(QP=-32))
    assert [s.pred for s in on.stats] == ["-", "-", "t0"]
    tps = [hls.parse_tensor_parameter_set(u, hls.parse_model_parameter_set(
        hls.split_units(on.data)[0])) for u in hls.split_units(on.data)
        if u.unit_type == hls.UnitType.TENSOR_PARAMETER_SET]
    assert abs(tps[2].pred_scale - 2048) <= 20  # fitted to the reconstruction of l0
    assert _bits_equal(codec.decode(on.data), on.recon)
    assert on.stats[2].bits < 0.5 * off.stats[2].bits


def _tps_unit(data: bytes, index: int) -> tuple[bytes, hls.Unit]:
    units = hls.split_units(data)
    tps_units = [u for u in units if u.unit_type == hls.UnitType.TENSOR_PARAMETER_SET]
    return data, tps_units[index]


def test_parameter_set_values_outside_their_range_are_rejected() -> None:
    ref, new = _pair()
    res = codec.encode_with_recon({"a.weight": new["a.weight"]}, cfg(QP=-36), ref_model=ref)
    mps = hls.parse_model_parameter_set(hls.split_units(res.data)[0])
    _, unit = _tps_unit(res.data, 0)
    tps = hls.parse_tensor_parameter_set(unit, mps)
    assert tps.pred_mode == hls.PredMode.REF_MODEL
    for change, message in (({"pred_mode": 2}, "ref_tensor_id|tensor 0 cannot"),
                            ({"pred_scale": 70000}, "pred_scale"),
                            ({"ref_dtype": np.dtype(np.float64)}, "ref_dtype")):
        bad = hls.TensorParameterSet(**{**tps.__dict__, **change})
        raw = hls.tensor_parameter_set(bad, mps.tool_flags)
        parsed = hls.split_units(raw)[0]
        with pytest.raises(BitstreamError, match=message):
            hls.parse_tensor_parameter_set(parsed, mps)


def test_prediction_flag_in_an_older_version_is_rejected() -> None:
    ref, new = _pair()
    data = bytearray(codec.encode_with_recon(new, cfg(QP=-36), ref_model=ref).data)
    # MPS payload: magic(4) major(1) minor(1) after the 5-byte unit header
    assert data[5 + 5] == 2
    data[5 + 5] = 1
    with pytest.raises(BitstreamError, match="need format 1.2"):
        codec.decode(bytes(data), ref_model=ref)


def test_apps_code_and_decode_an_update(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    ref, new = _pair()
    write_model(str(tmp_path / "old.safetensors"), ref)
    write_model(str(tmp_path / "new.safetensors"), new)
    bit = str(tmp_path / "u.bit")
    assert encoder_app.main(["-i", str(tmp_path / "new.safetensors"), "-b", bit,
                             "--RefModel", str(tmp_path / "old.safetensors"),
                             "-o", str(tmp_path / "rec.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "Q>R" in out and "coded as an update" in out
    assert decoder_app.main(["-b", bit, "--RefModel", str(tmp_path / "old.safetensors"),
                             "-o", str(tmp_path / "dec.safetensors")]) == 0
    decoded = (tmp_path / "dec.safetensors").read_bytes()
    assert decoded == (tmp_path / "rec.safetensors").read_bytes()
    assert decoder_app.main(["-b", bit]) != 0
    err = capsys.readouterr().err
    assert "'a.weight' is predicted from a reference model" in err
    assert decoder_app.main(["-b", bit, "--RefModel", str(tmp_path / "none.safetensors")]) != 0
    assert "RefModel" in capsys.readouterr().err


def test_pred_lambda_scale_applies_to_predicted_tensors_only() -> None:
    ref, new = _pair()
    base = codec.encode_with_recon(new, cfg(QP=-36), ref_model=ref)
    same = codec.encode_with_recon(new, cfg(QP=-36, PredLambdaScale=0.1), ref_model=ref)
    small = codec.encode_with_recon(new, cfg(QP=-36, PredLambdaScale=0.005), ref_model=ref)
    assert same.data == base.data  # 0.1 is the default LambdaScale
    bits = {s.name: s.bits for s in base.stats}
    small_bits = {s.name: s.bits for s in small.stats}
    assert small_bits["a.weight"] > bits["a.weight"]  # more of the update is coded
    assert small_bits["a.bias"] == bits["a.bias"]     # not predicted: unchanged
    assert codec.snr_db(new["a.weight"], small.recon["a.weight"]) > codec.snr_db(
        new["a.weight"], base.recon["a.weight"])
    intra = codec.encode(new, cfg(QP=-36))
    assert codec.encode(new, cfg(QP=-36, PredLambdaScale=0.005)) == intra


def test_predicted_1d_tensors_take_the_offset_qp() -> None:
    """With QP1DMode fixed, a predicted 1-D tensor (a small residual) is coded at
    QP + QPOffset1D (PredQP1DMode offset) instead of the fine QP1D; unpredicted ones and
    PredQP1DMode same keep QP1D."""
    rng = np.random.default_rng(3)
    ref, new = _pair()
    ref["c.bias"] = rng.normal(0, 0.01, (40,)).astype(np.float32)
    new["c.bias"] = rng.normal(0, 0.01, (40,)).astype(np.float32)  # retrained: no prediction
    ref["d.bias"] = rng.normal(0, 0.01, (400,)).astype(np.float32)
    new["d.bias"] = (ref["d.bias"] + rng.normal(0, 1e-4, (400,))).astype(np.float32)
    fixed = dict(QP=-36, QP1DMode="fixed", QP1D=-80, QPOffset1D=-8)
    res = codec.encode_with_recon(new, cfg(**fixed), ref_model=ref)
    qp = {s.name: s.qp for s in res.stats}
    pred = {s.name: s.pred for s in res.stats}
    assert pred["d.bias"] == "ref" and qp["d.bias"] == -44
    assert pred["c.bias"] == "-" and qp["c.bias"] == -80
    same = codec.encode_with_recon(new, cfg(**fixed, PredQP1DMode="same"), ref_model=ref)
    assert {s.name: s.qp for s in same.stats}["d.bias"] == -80
    assert {s.name: s.bits for s in res.stats}["d.bias"] < {
        s.name: s.bits for s in same.stats}["d.bias"]
    assert _bits_equal(codec.decode(res.data, ref_model=ref), res.recon)
