"""The bundled example model: a small CNN trained on scikit-learn's digits.

Wraps :mod:`nntm.example` (imported lazily), which runs the network in pure
numpy: evaluating needs neither torch nor any CE package.
Metrics: test accuracy in percent (primary) and its drop from the original,
on the stored held-out split (``nntm/example/digits_test.npz``).

Calibration inputs (importance maps, docs/calibration.md): the images of
scikit-learn's digits data set that are not in the held-out split (its
training part, about 1440 images; scikit-learn is needed for them, and
:meth:`DigitsAdapter.output_importance` needs torch).
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from nntm.calibrate import calibrate, to_torch_state_dict
from nntm.ce.models.base import (
    ModelAdapter,
    as_float32,
    check_tensors,
    require_torch,
)
from nntm.errors import NntmError

__all__ = ["DigitsAdapter", "load_calibration_images", "torch_module"]

PROBES = 4
"""Hutchinson probes per calibration image for :meth:`DigitsAdapter.output_importance`."""
CHUNK = 256
"""Calibration images per forward/backward pass."""


def _example() -> Any:
    import nntm.example as example

    return example


def load_calibration_images() -> np.ndarray:
    """scikit-learn's digits images that are not in the stored test split, uint8 (N, 8, 8).

    Images are compared by content, so that no test image (nor a copy of one)
    is among them; file order of scikit-learn's data set.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise NntmError(
            "digits: calibration images need scikit-learn (pip install scikit-learn)"
        ) from exc
    images = np.asarray(load_digits().images).astype(np.uint8)
    test_images, _labels = _example().load_test_split()
    test = {np.asarray(image, dtype=np.uint8).tobytes() for image in test_images}
    keep = [i for i, image in enumerate(images) if image.tobytes() not in test]
    return np.ascontiguousarray(images[keep])


def _torch_net() -> Any:
    """The digits CNN in torch with the state-dict names (for gradients)."""
    torch = require_torch()
    nn = torch.nn

    class DigitsCnn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
            self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
            self.fc1 = nn.Linear(512, 64)
            self.fc2 = nn.Linear(64, 10)

        def forward(self, x: Any) -> Any:
            x = torch.relu(self.conv1(x))
            x = torch.relu(self.conv2(x))
            x = torch.flatten(nn.functional.max_pool2d(x, 2), 1)
            return self.fc2(torch.relu(self.fc1(x)))

    return DigitsCnn().eval()


def torch_module() -> Any:
    """The bundled digits CNN with its original weights, as a ``torch.nn.Module``: a
    factory for ``nntm-calibrate --torch nntm.ce.models.digits:torch_module``."""
    return DigitsAdapter().torch_module()


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
    eval_version: ClassVar[str] = "1"  # raise when evaluate() or the maps change

    def __init__(self) -> None:
        self._tensors: dict[str, np.ndarray] | None = None
        self._reference_accuracy: float | None = None
        self._calibration: np.ndarray | None = None

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

    def evaluation_inputs(self) -> np.ndarray:
        """The held-out test images, uint8 (N, 8, 8) with values 0..16."""
        self.ensure_available()
        images, _labels = _example().load_test_split()
        return np.asarray(images)

    def calibration_inputs(self) -> np.ndarray:
        """The training images (:func:`load_calibration_images`), uint8 (N, 8, 8), 0..16."""
        if self._calibration is None:
            self.ensure_available()
            self._calibration = load_calibration_images()
        return self._calibration.copy()

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
        """Mean squared input per input channel of conv1, conv2, fc1 and fc2 (numpy).

        Measured on :meth:`calibration_inputs`.
        """
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

    def output_importance(
        self,
        tensors: Mapping[str, np.ndarray],
        probes: int = PROBES,
        seed: int = 0,
        samples: int | None = None,
        form: str = "factored",
    ) -> dict[str, np.ndarray]:
        """Output-sensitivity maps (float32, each weight's shape) of conv1, conv2, fc1, fc2.

        Needs torch.  The probes have the softmax's Fisher matrix as covariance
        (the KL divergence of the class distribution stands for the accuracy),
        ``probes`` per calibration image (``samples``: only the first images).
        Measured by the public :func:`nntm.calibrate` (``output="kl"``) on the
        torch copy of the network (:meth:`torch_module`).
        """
        net = self.torch_module(tensors)
        batches = self.calibration_batches(samples)
        stats: dict[str, dict[str, float]] = {}
        maps = calibrate(
            net, batches, output="kl", probes=probes, seed=seed, form=form, stats=stats
        )
        self.sensitivity_stats = stats
        return maps

    def torch_module(self, tensors: Mapping[str, np.ndarray] | None = None) -> Any:
        """The digits CNN as a ``torch.nn.Module`` (state-dict names of :meth:`load`)
        holding ``tensors`` (default: the original weights).  Needs torch."""
        torch = require_torch()
        reference = self.load() if self._tensors is None else self._tensors
        tensors = reference if tensors is None else tensors
        check_tensors(self.name, tensors, reference)
        net = _torch_net()
        with torch.no_grad():
            net.load_state_dict(to_torch_state_dict(tensors, reference), strict=True)
        return net

    def calibration_batches(self, samples: int | None = None) -> list[Any]:
        """The calibration images as float32 tensors (n, 1, 8, 8) scaled to 0..1, in
        batches of :data:`CHUNK` (``samples``: only the first images).  Needs torch."""
        torch = require_torch()
        images = self.calibration_inputs()[:samples].astype(np.float32) / np.float32(16.0)
        x = torch.from_numpy(images.reshape(-1, 1, 8, 8))
        return [x[start : start + CHUNK] for start in range(0, x.shape[0], CHUNK)]
