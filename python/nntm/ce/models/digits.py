"""The bundled example model: a small CNN trained on scikit-learn's digits.

Wraps :mod:`nntm.example` (imported lazily), which runs the network in pure
numpy: this adapter needs neither torch nor any CE package.
Metrics: test accuracy in percent (primary) and its drop from the original.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from nntm.ce.models.base import ModelAdapter, as_float32, check_tensors

__all__ = ["DigitsAdapter"]


def _example() -> Any:
    import nntm.example as example

    return example


def _conv3x3_relu(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """3x3 convolution, stride 1, zero padding 1, then ReLU; x is (N, C, H, W)."""
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))
    out = np.einsum("nchwij,ocij->nohw", cols, weight, optimize=True)
    out += bias[None, :, None, None]
    return np.maximum(out, 0.0)


class DigitsAdapter(ModelAdapter):
    """The digits CNN of :mod:`nntm.example`; metric: held-out accuracy."""

    name: ClassVar[str] = "digits"
    primary_metric: ClassVar[str] = "accuracy"
    metric_keys: ClassVar[tuple[str, ...]] = ("accuracy", "acc_drop")

    def __init__(self) -> None:
        self._tensors: dict[str, np.ndarray] | None = None
        self._reference_accuracy: float | None = None

    def available(self) -> tuple[bool, str]:
        try:
            example = _example()
            paths: list[pathlib.Path] = [example.EXAMPLE_MODEL_PATH, example.TEST_SPLIT_PATH]
        except (ImportError, AttributeError) as exc:
            return False, f"nntm.example is not usable: {exc}"
        for path in paths:
            if not pathlib.Path(path).is_file():
                return False, f"missing {path}: regenerate it with scripts/train_digits.py"
        return True, ""

    def load(self) -> dict[str, np.ndarray]:
        if self._tensors is None:
            self.ensure_available()
            self._tensors = dict(_example().load_example_tensors())
        return {name: array.copy() for name, array in self._tensors.items()}

    def calibration_inputs(self) -> np.ndarray:
        """The held-out test images, uint8 (N, 8, 8) with values 0..16."""
        self.ensure_available()
        images, _labels = _example().load_test_split()
        return np.asarray(images)

    def reference_accuracy(self) -> float:
        """Accuracy of the original model in percent (computed once)."""
        if self._reference_accuracy is None:
            self._reference_accuracy = float(_example().accuracy(self.load()))
        return self._reference_accuracy

    def _float_tensors(self, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        reference = self.load() if self._tensors is None else self._tensors
        check_tensors(self.name, tensors, reference)
        return {name: as_float32(tensors[name]) for name in reference}

    def evaluate(self, tensors: Mapping[str, np.ndarray]) -> dict[str, float]:
        reference = self.reference_accuracy()
        accuracy = float(_example().accuracy(self._float_tensors(tensors)))
        return {"accuracy": accuracy, "acc_drop": reference - accuracy}

    def input_channel_importance(self, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Mean squared input per input channel of conv1, conv2, fc1 and fc2 (numpy)."""
        t = self._float_tensors(tensors)
        x = self.calibration_inputs().astype(np.float32).reshape(-1, 1, 8, 8) / np.float32(16.0)
        result: dict[str, np.ndarray] = {}

        def conv_energy(a: np.ndarray) -> np.ndarray:
            return np.mean(a.astype(np.float64) ** 2, axis=(0, 2, 3))

        result["conv1.weight"] = conv_energy(x)
        x = _conv3x3_relu(x, t["conv1.weight"], t["conv1.bias"])
        result["conv2.weight"] = conv_energy(x)
        x = _conv3x3_relu(x, t["conv2.weight"], t["conv2.bias"])
        n, c, h, w = x.shape
        x = x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5)).reshape(n, -1)
        result["fc1.weight"] = np.mean(x.astype(np.float64) ** 2, axis=0)
        x = np.maximum(x @ t["fc1.weight"].T + t["fc1.bias"], 0.0)
        result["fc2.weight"] = np.mean(x.astype(np.float64) ** 2, axis=0)
        return result
