"""The ONNX CTC models (ddddocr recogniser and detector): adapters, inputs, metrics."""

from __future__ import annotations

import numpy as np
import pytest
from nntm.ce.models import ADAPTERS, get_adapter
from nntm.ce.models.ddddocr import (
    ctc_greedy,
    render_detection_image,
    render_text_line,
)

NAMES = ("ddddocr", "ddddocr_det")


_CACHE: dict[str, object] = {}


def _adapter(name: str):
    """One adapter per model for the whole module (its reference outputs are computed once)."""
    if name not in _CACHE:
        _CACHE[name] = get_adapter(name)
    adapter = _CACHE[name]
    ok, why = adapter.available()
    if not ok:
        pytest.skip(why)
    return adapter


def test_registered_with_install_hints():
    for name in NAMES:
        assert name in ADAPTERS
        adapter = get_adapter(name)
        assert "ddddocr" in adapter.install_hint()
        ok, why = adapter.available()
        assert ok or "ddddocr" in why or "onnx" in why or "PIL" in why


def test_ctc_greedy_merges_repeats_and_drops_blanks():
    logits = np.full((7, 4), -5.0)
    for t, k in enumerate([0, 2, 2, 0, 2, 3, 3]):
        logits[t, k] = 5.0
    assert ctc_greedy(logits) == (2, 2, 3)


def test_rendering_is_deterministic():
    pytest.importorskip("PIL")
    a, text_a = render_text_line(np.random.default_rng(4))
    b, text_b = render_text_line(np.random.default_rng(4))
    assert text_a == text_b and np.array_equal(a, b)
    assert a.shape == (1, 64, 160) and 0.0 <= a.min() and a.max() <= 1.0
    image, count = render_detection_image(np.random.default_rng(4))
    assert image.shape == (3, 416, 416) and image.max() <= 255.0 and count >= 3


def test_recogniser_inputs_are_disjoint_and_read():
    adapter = _adapter("ddddocr")
    evaluation, calibration = adapter.evaluation_texts(), adapter.calibration_texts()
    assert not set(evaluation) & set(calibration)
    assert adapter.evaluation_inputs()["input1"].shape == (48, 1, 64, 160)
    assert adapter.calibration_inputs()["input1"].shape == (32, 1, 64, 160)
    metrics = adapter.evaluate(adapter.load())
    assert metrics["agree"] == 100.0
    assert metrics["accuracy"] >= 70.0  # the rendered lines are in the model's domain


def _noisy(tensors: dict[str, np.ndarray], scale: float, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, value in tensors.items():
        if value.dtype.kind == "f" and value.ndim >= 2:
            value = value + (rng.standard_normal(value.shape) * scale * value.std()).astype(
                value.dtype)
        out[name] = value
    return out


@pytest.mark.parametrize("name", NAMES)
def test_metric_falls_with_the_weight_error(name):
    adapter = _adapter(name)
    tensors = adapter.load()
    same = adapter.evaluate(tensors)
    noisy = adapter.evaluate(_noisy(tensors, 3e-3))
    key = adapter.primary_metric
    assert same[key] == 120.0 > noisy[key] > 20.0
    assert list(noisy) == list(adapter.metric_keys)


def test_load_is_the_onnx_path():
    adapter = _adapter("ddddocr_det")
    from nntm.onnxio import read_onnx

    tensors, _ = read_onnx(str(adapter.model_path()))
    assert list(adapter.load()) == list(tensors)
    # the detector's Resize scales and empty roi: structural, found from the graph
    structural = adapter.structural_names()
    assert structural and all(tensors[n].size <= 4 for n in structural)
    # a structural tensor changed by a codec is put back for the evaluation
    changed = adapter.load()
    scales = next(n for n in structural if tensors[n].size == 4)
    changed[scales] = changed[scales] * np.float32(0.999999)
    assert np.array_equal(adapter.with_structure(changed)[scales], tensors[scales])


def test_model_bytes_refuses_other_tensors():
    adapter = _adapter("ddddocr")
    tensors = adapter.load()
    name = next(iter(tensors))
    tensors[name] = tensors[name][:1]
    from nntm.errors import ModelIOError

    with pytest.raises(ModelIOError, match="shape"):
        adapter.model_bytes(tensors)
