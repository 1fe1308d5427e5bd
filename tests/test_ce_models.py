"""CE model adapters: the original scores perfectly, coarser weights score lower.

The model tests skip, with the reason, when a model's dependencies are not
installed (``bash scripts/install_ce.sh`` installs them).  Adapters and their
evaluations are cached at module scope so that each network runs only a few
times.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from nntm.ce.models import ADAPTERS, get_adapter
from nntm.ce.models.base import ModelAdapter, error_db, read_safetensors, smoothed_frequencies
from nntm.ce.models.minilm import load_calibration_sentences, load_sentences
from nntm.ce.models.mtcnn import roc_auc
from nntm.errors import ConfigError, ModelIOError

# models whose adapter tests are elsewhere (test_smollm2.py, test_ce_models_new.py)
OWN_TESTS = ("smollm2", "ddddocr", "ddddocr_det")
MODELS = tuple(m for m in ADAPTERS if m not in OWN_TESTS)
CONTINUOUS = ("minilm", "mobilenetv2", "mtcnn")  # primary metric is continuous, not a count

# -------------------------------------------------------------------------------------
# Module-scope caches
# -------------------------------------------------------------------------------------

_ADAPTERS: dict[str, ModelAdapter] = {}
_TENSORS: dict[str, dict[str, np.ndarray]] = {}
_RESULTS: dict[tuple[str, str], dict[str, float]] = {}


def adapter_or_skip(name: str) -> ModelAdapter:
    """The cached adapter of model ``name``; skips the test when it is not available."""
    if name != "digits":
        pytest.importorskip("torch", reason="torch is not installed (scripts/install_ce.sh)")
    if name not in _ADAPTERS:
        adapter = get_adapter(name)
        ok, why = adapter.available()
        if not ok:
            pytest.skip(f"{name}: {why}")
        _ADAPTERS[name] = adapter
    return _ADAPTERS[name]


def calibration_or_skip(name: str) -> ModelAdapter:
    """The adapter of model ``name``; skips when its calibration inputs cannot be read here."""
    if name == "digits":
        pytest.importorskip("sklearn", reason="digits calibration images need scikit-learn")
    adapter = adapter_or_skip(name)
    if name == "mobilenetv2":
        from nntm.ce.models.mobilenetv2 import calibration_image_paths

        missing = [label for label, path in calibration_image_paths().items() if path is None]
        if missing:
            pytest.skip(f"calibration photos not installed: {', '.join(missing)}")
    return adapter


def original(name: str) -> dict[str, np.ndarray]:
    adapter = adapter_or_skip(name)
    if name not in _TENSORS:
        _TENSORS[name] = adapter.load()
    return _TENSORS[name]


def grid_rounded(tensors: dict[str, np.ndarray], rms_factor: float) -> dict[str, np.ndarray]:
    """Every float tensor of rank >= 2 rounded to a grid of step ``rms_factor * rms(tensor)``."""
    out = {}
    for name, value in tensors.items():
        if value.dtype.kind == "f" and value.ndim >= 2:
            step = float(np.sqrt(np.mean(value.astype(np.float64) ** 2))) * rms_factor
            out[name] = (np.round(value / step) * step).astype(value.dtype)
        else:
            out[name] = value
    return out


def cast_floats(tensors: dict[str, np.ndarray], dtype: object) -> dict[str, np.ndarray]:
    return {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in tensors.items()}


VARIANTS: dict[str, Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]] = {
    "original": lambda t: t,
    "float16": lambda t: cast_floats(t, np.float16),
    "bfloat16": lambda t: cast_floats(t, ml_dtypes.bfloat16),
    "grid": lambda t: grid_rounded(t, 2.0),  # coarse: about 3 levels per rms
}
"""Reconstructions in order of decreasing fidelity."""


def result(name: str, variant: str) -> dict[str, float]:
    """Cached ``evaluate`` of model ``name`` on one of :data:`VARIANTS`."""
    key = (name, variant)
    if key not in _RESULTS:
        adapter = adapter_or_skip(name)
        _RESULTS[key] = adapter.evaluate(VARIANTS[variant](original(name)))
    return _RESULTS[key]


# -------------------------------------------------------------------------------------
# Without any model
# -------------------------------------------------------------------------------------


def test_registry() -> None:
    assert tuple(ADAPTERS)[:4] == MODELS
    assert {"ddddocr", "ddddocr_det"} <= set(ADAPTERS)  # the ONNX models
    for name, cls in ADAPTERS.items():
        adapter = get_adapter(name)
        assert isinstance(adapter, cls) and adapter.name == name
        assert adapter.primary_metric in adapter.metric_keys
        assert adapter.metric_keys[0] == adapter.primary_metric
        ok, why = adapter.available()
        assert isinstance(ok, bool) and isinstance(why, str)
        assert ok == (why == "")
        if not ok and name != "digits":
            assert "install" in why


def test_unknown_model() -> None:
    with pytest.raises(ConfigError, match="unknown CE model 'resnet'"):
        get_adapter("resnet")


def test_roc_auc() -> None:
    labels = np.array([1, 1, 1, 0, 0, 0])
    assert roc_auc(np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1]), labels) == 1.0
    assert roc_auc(np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9]), labels) == 0.0
    assert roc_auc(np.full(6, 0.5), labels) == 0.5
    rng = np.random.default_rng(7)
    scores = np.round(rng.random(60), 1)  # many ties
    labels = rng.random(60) < 0.4
    pos, neg = scores[labels], scores[~labels]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert roc_auc(scores, labels) == pytest.approx(pairs / (pos.size * neg.size), abs=1e-12)
    assert math.isnan(roc_auc(scores, np.ones(60, dtype=bool)))


def test_error_db() -> None:
    assert error_db(0.1) == pytest.approx(10.0)
    assert error_db(0.0) == pytest.approx(120.0)
    assert error_db(-1.0) == pytest.approx(120.0)


def test_read_safetensors(tmp_path: Path) -> None:
    tensors = {
        "b": np.arange(6, dtype=np.float32).reshape(2, 3),
        "a": np.arange(4, dtype=np.int64)[None],
        "c": np.array([1.5, -2.0], dtype=np.float16),
        "d": np.array([3.0], dtype=ml_dtypes.bfloat16),
    }
    codes = {"float32": "F32", "int64": "I64", "float16": "F16", "bfloat16": "BF16"}
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    blobs, offset = [], 0
    for name, value in tensors.items():
        blob = value.tobytes()
        header[name] = {
            "dtype": codes[value.dtype.name],
            "shape": list(value.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    got = read_safetensors(path)
    assert list(got) == list(tensors)  # data order
    for name, value in tensors.items():
        assert got[name].dtype == value.dtype
        np.testing.assert_array_equal(got[name], value)
    path.write_bytes(struct.pack("<Q", 10**6) + text)
    with pytest.raises(ModelIOError, match="header length"):
        read_safetensors(path)


def test_sentences() -> None:
    sentences = load_sentences()
    assert len(sentences) >= 64
    assert len(set(sentences)) == len(sentences)
    calibration = load_calibration_sentences()
    assert len(calibration) >= 150
    assert len(set(calibration)) == len(calibration)
    assert not set(calibration) & set(sentences)


def test_smoothed_frequencies() -> None:
    counts = np.array([5, 3, 1, 1, 0, 0, 0, 0, 0, 0], dtype=np.int64)
    eligible = np.ones(10, dtype=bool)
    eligible[-1] = False  # e.g. an [unusedN] token
    freq, alpha = smoothed_frequencies(counts, eligible)
    assert alpha > 0.0
    assert freq.sum() == pytest.approx(1.0)
    assert freq[-1] == 0.0  # ineligible and unseen
    # Good-Turing: the unseen eligible indices share the mass of the singletons, n1 / N
    assert freq[4:9].sum() == pytest.approx(2 / 10)
    assert np.all(freq[4:9] > 0.0) and freq[4] < freq[2]
    fixed, alpha = smoothed_frequencies(counts, alpha=1.0)
    assert alpha == 1.0
    np.testing.assert_allclose(fixed, (counts + 1.0) / 20.0)


# -------------------------------------------------------------------------------------
# Every model
# -------------------------------------------------------------------------------------

EXPECTED_TENSORS = {"digits": 8, "minilm": 104, "mobilenetv2": 314, "mtcnn": 50}


@pytest.mark.parametrize("name", MODELS)
def test_load(name: str) -> None:
    tensors = original(name)
    assert len(tensors) == EXPECTED_TENSORS[name]
    assert all(isinstance(v, np.ndarray) for v in tensors.values())
    assert all(v.dtype in (np.float32, np.int64) for v in tensors.values())
    again = adapter_or_skip(name).load()
    assert list(again) == list(tensors)
    again[next(iter(again))][...] = 0  # load() hands out copies
    assert adapter_or_skip(name).load().keys() == tensors.keys()
    assert np.any(adapter_or_skip(name).load()[next(iter(tensors))] != 0)


@pytest.mark.parametrize("name", MODELS)
def test_original_scores_perfectly(name: str) -> None:
    adapter = adapter_or_skip(name)
    metrics = result(name, "original")
    assert tuple(metrics) == adapter.metric_keys
    assert all(isinstance(v, float) for v in metrics.values())
    if name == "digits":
        assert metrics["acc_drop"] == 0.0 and metrics["accuracy"] > 90.0
    elif name == "minilm":
        assert metrics["cos_mean"] > 0.99999 and metrics["cos_min"] > 0.99999
        assert metrics["cos_db"] > 60.0
    elif name == "mobilenetv2":
        assert metrics["agree_top1"] == 100.0
        assert metrics["kl_mean"] < 1e-8 and metrics["kl_db"] > 80.0
    else:
        assert metrics["prob_mae"] < 1e-7 and metrics["prob_db"] > 70.0
        assert metrics["auc_rnet"] > 0.99 and metrics["auc_onet"] > 0.99


@pytest.mark.parametrize("name", MODELS)
def test_coarser_weights_score_lower(name: str) -> None:
    primary = adapter_or_skip(name).primary_metric
    variants = list(VARIANTS)
    if name == "mobilenetv2":  # one forward costs seconds: three levels are enough
        variants.remove("float16")
    scores = [result(name, variant)[primary] for variant in variants]
    assert scores == sorted(scores, reverse=True), scores  # never better when noisier
    if name in CONTINUOUS:
        assert all(a > b for a, b in zip(scores, scores[1:], strict=False)), scores
        assert scores[0] - scores[-1] > 20.0, scores
    else:
        assert scores[0] - scores[-1] > 5.0, scores  # accuracy points


@pytest.mark.parametrize("name", MODELS)
def test_float64_input(name: str) -> None:
    if name == "mobilenetv2":
        pytest.skip("covered by the cheaper models (one forward costs several seconds)")
    adapter = adapter_or_skip(name)
    metrics = adapter.evaluate(cast_floats(original(name), np.float64))
    assert metrics[adapter.primary_metric] == result(name, "original")[adapter.primary_metric]


@pytest.mark.parametrize("name", MODELS)
def test_mismatched_tensors(name: str) -> None:
    adapter = adapter_or_skip(name)
    tensors = dict(original(name))
    first = next(iter(tensors))
    del tensors[first]
    with pytest.raises(ModelIOError, match="missing"):
        adapter.evaluate(tensors)
    tensors[first] = np.zeros((3, 3), dtype=np.float32)
    with pytest.raises(ModelIOError, match="shape"):
        adapter.evaluate(tensors)


def _conv_linear_weights(tensors: dict[str, np.ndarray]) -> set[str]:
    return {
        k
        for k, v in tensors.items()
        if k.endswith("weight") and v.ndim in (2, 4) and "embeddings" not in k
    }


EMBEDDINGS = {
    "minilm": {
        "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight",
    }
}


@pytest.mark.parametrize("name", MODELS)
def test_input_channel_importance(name: str) -> None:
    adapter = calibration_or_skip(name)
    tensors = original(name)
    importance = adapter.input_channel_importance(tensors)
    assert importance
    embeddings = EMBEDDINGS.get(name, set())
    for key, energy in importance.items():
        weight = tensors[key]
        assert np.all(np.isfinite(energy)) and np.all(energy >= 0.0), key
        assert energy.max() > 0.0, key
        if key in embeddings:  # row frequencies, a map of the table's shape
            assert energy.shape == weight.shape and energy.dtype == np.float32, key
            np.testing.assert_allclose(energy.sum(axis=0, dtype=np.float64), 1.0, rtol=1e-5)
            continue
        assert key.endswith("weight") and weight.ndim in (2, 4)
        # MobileNetV2's depthwise kernels (C, 1, 3, 3) see C input channels
        is_depthwise = name == "mobilenetv2" and weight.ndim == 4 and weight.shape[1] == 1
        channels = weight.shape[0] if is_depthwise else weight.shape[1]
        assert energy.shape == (channels,), key
    assert set(importance) == _conv_linear_weights(tensors) | embeddings


SENSITIVITY_ARGS: dict[str, dict[str, int]] = {
    "digits": {"samples": 64, "probes": 2},
    "minilm": {"samples": 12, "probes": 1},
    "mobilenetv2": {"samples": 2, "probes": 1},
    "mtcnn": {"samples": 20},
}
"""Few calibration samples and probes: the maps' form is tested, not their precision."""

ZERO_SENSITIVITY = {
    "minilm": {"pooler.dense.weight"},  # not used by the sentence embedding
    "mtcnn": {  # box regression and landmarks: not in the face probability
        "pnet.conv4_2.weight",
        "rnet.dense5_2.weight",
        "onet.dense6_2.weight",
        "onet.dense6_3.weight",
    },
}


@pytest.mark.parametrize("name", MODELS)
def test_output_importance(name: str) -> None:
    pytest.importorskip("torch", reason="torch is not installed (scripts/install_ce.sh)")
    adapter = calibration_or_skip(name)
    tensors = original(name)
    maps = adapter.output_importance(tensors, **SENSITIVITY_ARGS[name])  # type: ignore[call-arg]
    assert set(maps) == _conv_linear_weights(tensors) | EMBEDDINGS.get(name, set())
    for key, value in maps.items():
        assert value.shape == tensors[key].shape and value.dtype == np.float32, key
        assert np.all(np.isfinite(value)) and np.all(value >= 0.0), key
    zero = ZERO_SENSITIVITY.get(name, set())
    means = {key: float(np.mean(value)) for key, value in maps.items()}
    reaching = [m for key, m in means.items() if key not in zero]
    assert min(reaching) > 0.0
    for key in zero:  # a layer that does not reach the output is ~0 relative to the others
        assert means[key] <= 1e-6 * float(np.median(reaching)), key
    if name == "minilm":
        word = maps["embeddings.word_embeddings.weight"]
        rows = word[:, 0]
        ids = adapter.calibration_inputs()["input_ids"][:12]  # type: ignore[index]
        seen = np.unique(ids[ids > 0])
        first, last = seen[0], seen[-1]  # one importance per row (frequency x sensitivity)
        np.testing.assert_allclose(word[first] * rows[last], word[last] * rows[first], rtol=1e-5)
        unseen = np.setdiff1d(np.arange(2000, 30522), seen)
        assert rows[unseen].min() > 0.0  # unseen tokens are not free
        assert rows[unseen].max() < rows[seen].min()  # but cheaper than any seen token


@pytest.mark.parametrize("name", MODELS)
def test_calibration_disjoint_from_evaluation(name: str) -> None:
    adapter = calibration_or_skip(name)
    calibration = adapter.calibration_inputs()
    evaluation = adapter.evaluation_inputs()
    if name == "minilm":
        cal, ev = set(calibration["sentences"]), set(evaluation["sentences"])  # type: ignore[index]
        assert len(cal) >= 150 and len(ev) >= 64
        assert not cal & ev
        assert not {s.lower() for s in cal} & {s.lower() for s in ev}
        return
    if name == "mobilenetv2":
        from nntm.ce.models.mobilenetv2 import CALIBRATION_IMAGE_FILES, IMAGE_FILES

        cal_names = {file.rsplit("/", 1)[-1] for _package, file in CALIBRATION_IMAGE_FILES}
        assert not cal_names & set(IMAGE_FILES)
        assert "motorcycle_right.png" not in cal_names  # the stereo twin of an evaluation photo
        assert calibration.shape == (70, 3, 224, 224)  # type: ignore[attr-defined]
        assert calibration.dtype == np.float32  # type: ignore[attr-defined]
        cal_arrays, ev_arrays = [calibration], [evaluation]
    elif name == "mtcnn":
        cal_arrays = [calibration[net] for net in ("pnet", "rnet", "onet")]  # type: ignore[index]
        ev_arrays = [evaluation[net] for net in ("pnet", "rnet", "onet")]  # type: ignore[index]
        assert calibration["labels"].sum() == 50 and evaluation["labels"].sum() == 50  # type: ignore[index]
    else:
        cal_arrays, ev_arrays = [calibration], [evaluation]
        assert len(calibration) > 1000  # type: ignore[arg-type]
    for cal_batch, ev_batch in zip(cal_arrays, ev_arrays, strict=True):
        cal_set = {np.asarray(x).tobytes() for x in cal_batch}  # type: ignore[union-attr]
        ev_set = {np.asarray(x).tobytes() for x in ev_batch}  # type: ignore[union-attr]
        assert len(cal_set) > 1 and len(ev_set) > 1
        assert not cal_set & ev_set


# -------------------------------------------------------------------------------------
# Model by model
# -------------------------------------------------------------------------------------

# sentence-transformers 6.2 on the package's model: first 8 dimensions of the
# embeddings of sentences 0, 1 and -1 of sentences.txt
ST_EMBEDDINGS = {
    0: [-0.0147946, 0.046784, 0.0214493, 0.0599412, 0.0150062, -0.0085602, 0.0504371, -0.0518217],
    1: [0.1019033, 0.0273343, -0.0096364, 0.1105694, -0.05513, -0.0377636, 0.0437475, -0.006139],
    -1: [-0.1291977, 0.0351913, 0.0142357, 0.0336479, 0.0358177, 0.0287374, 0.1164571, -0.021013],
}


def test_minilm_keeps_position_ids() -> None:
    tensors = original("minilm")
    position_ids = tensors["embeddings.position_ids"]
    assert position_ids.dtype == np.int64 and position_ids.shape == (1, 512)
    np.testing.assert_array_equal(position_ids[0], np.arange(512))
    assert tensors["embeddings.word_embeddings.weight"].shape == (30522, 384)
    assert sum(v.size for v in tensors.values()) == 22_713_728


def test_minilm_matches_sentence_transformers() -> None:
    adapter = adapter_or_skip("minilm")
    embeddings = adapter.reference_embeddings()  # type: ignore[attr-defined]
    assert embeddings.shape == (len(load_sentences()), 384)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-6)
    for row, expected in ST_EMBEDDINGS.items():
        np.testing.assert_allclose(embeddings[row, :8], expected, atol=2e-6)
    similarity = embeddings @ embeddings.T
    assert similarity[1, 2] > similarity[1, 3] + 0.3  # cat / kitten vs cat / stock market
    assert similarity[3, 4] > similarity[3, 5] + 0.3  # two sentences on rate rises


def test_minilm_inputs() -> None:
    adapter = adapter_or_skip("minilm")
    for inputs in (adapter.evaluation_inputs(), adapter.calibration_inputs()):
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        assert ids.dtype == np.int64 and ids.shape == mask.shape
        assert ids.shape[0] == len(inputs["sentences"]) and ids.shape[1] <= 256
        assert np.all(ids[:, 0] == 101)  # [CLS]
        assert np.all(ids[mask == 0] == 0)  # [PAD]
    assert adapter.evaluation_inputs()["sentences"] == load_sentences()
    assert adapter.calibration_inputs()["sentences"] == load_calibration_sentences()


def test_mobilenetv2_inputs_and_classes() -> None:
    adapter = adapter_or_skip("mobilenetv2")
    crops = adapter.evaluation_inputs()
    assert crops.shape == (140, 3, 224, 224) and crops.dtype == np.float32
    tensors = original("mobilenetv2")
    assert tensors["features.0.1.num_batches_tracked"].dtype == np.int64
    assert tensors["classifier.1.weight"].shape == (1000, 1280)
    log_probs = adapter.reference_log_probs()  # type: ignore[attr-defined]
    top = log_probs.argmax(axis=1).reshape(14, 10)
    assert np.all((281 <= top[1]) & (top[1] <= 285))  # chelsea.png: a cat
    assert np.all(top[2] == 967)  # coffee.png: espresso
    assert 40 <= int((np.exp(log_probs).max(axis=1) >= 0.5).sum()) <= 120


def test_mtcnn_inputs() -> None:
    adapter = adapter_or_skip("mtcnn")
    for inputs in (adapter.evaluation_inputs(), adapter.calibration_inputs()):
        for net, size in (("pnet", 12), ("rnet", 24), ("onet", 48)):
            assert inputs[net].shape == (100, 3, size, size) and inputs[net].dtype == np.float32
            assert -1.0 <= inputs[net].min() and inputs[net].max() <= 1.0
        np.testing.assert_array_equal(inputs["labels"], np.repeat([1, 0], 50))
    names = list(original("mtcnn"))
    assert names[0] == "pnet.conv1.weight" and "rnet.dense4.weight" in names
    assert names[-1] == "onet.dense6_3.bias"
