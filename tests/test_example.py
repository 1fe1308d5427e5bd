"""Tests of the bundled example model (nntm.example)."""

from __future__ import annotations

import numpy as np
import pytest
from nntm.example import (
    EXAMPLE_MODEL_PATH,
    TENSOR_NAMES,
    accuracy,
    forward,
    load_example_tensors,
    load_test_split,
)


@pytest.fixture(scope="module")
def tensors() -> dict[str, np.ndarray]:
    return load_example_tensors()


def test_files_and_tensor_order(tensors: dict[str, np.ndarray]) -> None:
    assert EXAMPLE_MODEL_PATH.is_file()
    assert tuple(tensors) == TENSOR_NAMES
    assert all(t.dtype == np.float32 for t in tensors.values())
    assert tensors["conv1.weight"].shape == (16, 1, 3, 3)
    assert tensors["conv2.weight"].shape == (32, 16, 3, 3)
    assert tensors["fc1.weight"].shape == (64, 512)
    assert tensors["fc2.weight"].shape == (10, 64)


def test_test_split() -> None:
    images, labels = load_test_split()
    assert images.dtype == np.uint8 and labels.dtype == np.uint8
    assert images.ndim == 3 and images.shape[1:] == (8, 8)
    assert labels.shape == (images.shape[0],)
    assert int(images.max()) <= 16
    assert set(np.unique(labels).tolist()) == set(range(10))


def test_float_accuracy(tensors: dict[str, np.ndarray]) -> None:
    images, _ = load_test_split()
    logits = forward(tensors, images)
    assert logits.shape == (images.shape[0], 10)
    assert logits.dtype == np.float32
    assert accuracy(tensors) >= 95.0


def test_zeroed_classifier_is_chance(tensors: dict[str, np.ndarray]) -> None:
    broken = dict(tensors)
    broken["fc2.weight"] = np.zeros_like(tensors["fc2.weight"])
    assert accuracy(broken) <= 30.0


def test_float16_and_bfloat16_tensors(tensors: dict[str, np.ndarray]) -> None:
    reference = accuracy(tensors)
    half = {k: v.astype(np.float16) for k, v in tensors.items()}
    assert abs(accuracy(half) - reference) <= 1.0
    double = {k: v.astype(np.float64) for k, v in tensors.items()}
    assert accuracy(double) == reference
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bf16 = {k: v.astype(ml_dtypes.bfloat16) for k, v in tensors.items()}
    assert abs(accuracy(bf16) - reference) <= 2.0


def test_accuracy_is_deterministic(tensors: dict[str, np.ndarray]) -> None:
    images, _ = load_test_split()
    assert accuracy(tensors) == accuracy(tensors)
    np.testing.assert_array_equal(forward(tensors, images), forward(tensors, images))


def test_numpy_forward_matches_torch(tensors: dict[str, np.ndarray]) -> None:
    torch = pytest.importorskip("torch")
    fn = torch.nn.functional
    images, _ = load_test_split()
    t = {k: torch.from_numpy(v.copy()) for k, v in tensors.items()}
    x = torch.from_numpy(images.astype(np.float32) / 16.0).unsqueeze(1)
    with torch.no_grad():
        x = torch.relu(fn.conv2d(x, t["conv1.weight"], t["conv1.bias"], padding=1))
        x = torch.relu(fn.conv2d(x, t["conv2.weight"], t["conv2.bias"], padding=1))
        x = torch.flatten(fn.max_pool2d(x, 2), 1)
        x = torch.relu(fn.linear(x, t["fc1.weight"], t["fc1.bias"]))
        expected = fn.linear(x, t["fc2.weight"], t["fc2.bias"]).numpy()
    np.testing.assert_allclose(forward(tensors, images), expected, rtol=0, atol=1e-4)
