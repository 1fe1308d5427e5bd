"""The MTCNN face detector (PNet, RNet, ONet) from the ``facenet-pytorch`` package.

The three state dicts ``facenet_pytorch/data/{pnet,rnet,onet}.pt`` are loaded
into networks written here with facenet-pytorch's layer names (its own package
imports torchvision at import time, which fails beside the CPU torch wheel of
the CTC machine, so it is never imported).  Tensor names carry the prefix
``pnet.``, ``rnet.`` or ``onet.``.

Inputs: scikit-image's ``skimage/data/lfw_subset.npy``, 100 faces then 100
non-faces (25x25 grey, values 0..1), resized to each network's input size
(PNet 12x12, RNet 24x24, ONet 48x48), scaled to 0..255, repeated to 3 channels
and normalised as ``(x - 127.5) / 128``, as the detector does.  The images
with an even index (50 faces, 50 non-faces) are the evaluation inputs; those
with an odd index (the other 50 and 50) are the calibration inputs of the
importance maps (docs/calibration.md), so the two never share an image.

Metrics, on the face probability (the softmax's second output) of the
evaluation images: ``prob_mae``, the mean absolute change from the original
over the 100 images and the three networks (300 values); ``auc_pnet``,
``auc_rnet``, ``auc_onet``,
the ROC AUC of the reconstructed network's face probability on faces versus
non-faces; ``prob_db = -10 log10(prob_mae)`` (primary).  PNet is included,
at its native 12x12 (one output cell), so that every tensor of the model moves
the metric.
"""

from __future__ import annotations

import functools
import pathlib
from collections.abc import Mapping
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

__all__ = [
    "CALIBRATION_SPLIT",
    "EVALUATION_SPLIT",
    "INPUT_SIZES",
    "NETS",
    "MTCNNAdapter",
    "load_face_inputs",
    "roc_auc",
]

PACKAGE = "facenet_pytorch"
NETS: tuple[str, ...] = ("pnet", "rnet", "onet")
INPUT_SIZES: dict[str, int] = {"pnet": 12, "rnet": 24, "onet": 48}
N_FACES = 100
"""lfw_subset.npy holds this many faces first, then as many non-faces."""
EVALUATION_SPLIT = slice(0, None, 2)
"""Images of lfw_subset.npy that :meth:`MTCNNAdapter.evaluate` scores (even indices)."""
CALIBRATION_SPLIT = slice(1, None, 2)
"""Images of lfw_subset.npy the importance maps are measured on (odd indices)."""


def _lfw_path() -> pathlib.Path | None:
    return find_package_file("skimage", "data", "lfw_subset.npy")


def load_face_inputs(split: slice = slice(None)) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``({net: float32 (n, 3, s, s)}, labels)``: normalised inputs per network, 1 = face.

    ``split`` selects images of lfw_subset.npy (default all 200;
    :data:`EVALUATION_SPLIT`, :data:`CALIBRATION_SPLIT`).
    """
    import skimage.transform

    path = _lfw_path()
    if path is None:
        raise FileNotFoundError("skimage/data/lfw_subset.npy was not found")
    faces = np.load(path).astype(np.float64)  # (200, 25, 25) in 0..1
    labels = (np.arange(faces.shape[0]) < N_FACES).astype(np.int64)
    faces, labels = faces[split], labels[split]
    inputs: dict[str, np.ndarray] = {}
    for net, size in INPUT_SIZES.items():
        resized = np.stack(
            [
                skimage.transform.resize(face, (size, size), order=1, anti_aliasing=size < 25)
                for face in faces
            ]
        )
        pixels = np.clip(resized, 0.0, 1.0) * 255.0
        normalised = ((pixels - 127.5) / 128.0).astype(np.float32)
        inputs[net] = np.ascontiguousarray(np.repeat(normalised[:, None], 3, axis=1))
    return inputs, labels


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (ties count one half).

    The Mann-Whitney statistic with average ranks; NaN scores rank lowest.
    """
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    # average rank (1-based) of each run of equal scores
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    run_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat(run_rank, ends - starts)
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


@functools.cache
def _net_classes() -> dict[str, Any]:
    """PNet, RNet and ONet module classes (built on first use so that torch loads lazily)."""
    torch = require_torch()
    nn = torch.nn

    class PNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
            self.prelu1 = nn.PReLU(10)
            self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
            self.prelu2 = nn.PReLU(16)
            self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
            self.prelu3 = nn.PReLU(32)
            self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
            self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

        def forward(self, x: Any) -> Any:
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.prelu2(self.conv2(x))
            x = self.prelu3(self.conv3(x))
            self.conv4_2(x)  # box regression: not scored, run so hooks see it
            return torch.softmax(self.conv4_1(x), dim=1)[:, 1].flatten(1).mean(dim=1)

    class RNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
            self.prelu1 = nn.PReLU(28)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
            self.prelu2 = nn.PReLU(48)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
            self.prelu3 = nn.PReLU(64)
            self.dense4 = nn.Linear(576, 128)
            self.prelu4 = nn.PReLU(128)
            self.dense5_1 = nn.Linear(128, 2)
            self.dense5_2 = nn.Linear(128, 4)

        def forward(self, x: Any) -> Any:
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.prelu3(self.conv3(x))
            x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)  # facenet-pytorch's flatten order
            x = self.prelu4(self.dense4(x))
            self.dense5_2(x)
            return torch.softmax(self.dense5_1(x), dim=1)[:, 1]

    class ONet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
            self.prelu1 = nn.PReLU(32)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
            self.prelu2 = nn.PReLU(64)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
            self.prelu3 = nn.PReLU(64)
            self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
            self.prelu4 = nn.PReLU(128)
            self.dense5 = nn.Linear(1152, 256)
            self.prelu5 = nn.PReLU(256)
            self.dense6_1 = nn.Linear(256, 2)
            self.dense6_2 = nn.Linear(256, 4)
            self.dense6_3 = nn.Linear(256, 10)

        def forward(self, x: Any) -> Any:
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.pool3(self.prelu3(self.conv3(x)))
            x = self.prelu4(self.conv4(x))
            x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)
            x = self.prelu5(self.dense5(x))
            self.dense6_2(x)
            self.dense6_3(x)
            return torch.softmax(self.dense6_1(x), dim=1)[:, 1]

    return {"pnet": PNet, "rnet": RNet, "onet": ONet}


class MTCNNAdapter(ModelAdapter):
    """MTCNN's three networks on LFW faces and non-faces; metric: face-probability change."""

    name: ClassVar[str] = "mtcnn"
    primary_metric: ClassVar[str] = "prob_db"
    metric_keys: ClassVar[tuple[str, ...]] = (
        "prob_db",
        "prob_mae",
        "auc_pnet",
        "auc_rnet",
        "auc_onet",
    )
    eval_version: ClassVar[str] = "1"  # raise when evaluate() or the maps change
    requires: ClassVar[tuple[str, ...]] = ("torch", "skimage")

    def __init__(self) -> None:
        self._tensors: dict[str, np.ndarray] | None = None
        self._inputs: tuple[dict[str, np.ndarray], np.ndarray] | None = None
        self._calibration: tuple[dict[str, np.ndarray], np.ndarray] | None = None
        self._nets: dict[str, Any] | None = None
        self._reference: dict[str, np.ndarray] | None = None

    def install_hint(self) -> str:
        return (
            "pip install torch==2.13.0 scikit-image && "
            "pip install --no-deps facenet-pytorch (or scripts/install_ce.sh)"
        )

    def required_files(self) -> dict[str, pathlib.Path | None]:
        files: dict[str, pathlib.Path | None] = {
            f"{PACKAGE}/data/{net}.pt": find_package_file(PACKAGE, "data", f"{net}.pt")
            for net in NETS
        }
        files["skimage/data/lfw_subset.npy"] = _lfw_path()
        return files

    def load(self) -> dict[str, np.ndarray]:
        """The three state dicts, names prefixed ``pnet.``, ``rnet.``, ``onet.`` (float32)."""
        if self._tensors is None:
            self.ensure_available()
            torch = require_torch()
            tensors: dict[str, np.ndarray] = {}
            for net in NETS:
                path = find_package_file(PACKAGE, "data", f"{net}.pt")
                state = torch.load(path, map_location="cpu", weights_only=True)
                for name, value in state.items():
                    tensors[f"{net}.{name}"] = value.numpy().copy()
            self._tensors = tensors
        return {name: array.copy() for name, array in self._tensors.items()}

    @staticmethod
    def _copy(pair: tuple[dict[str, np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
        inputs, labels = pair
        result = {net: array.copy() for net, array in inputs.items()}
        result["labels"] = labels.copy()
        return result

    def evaluation_inputs(self) -> dict[str, np.ndarray]:
        """Inputs per network and labels of the evaluation images (:data:`EVALUATION_SPLIT`).

        ``{"pnet": (100, 3, 12, 12), "rnet": (100, 3, 24, 24), "onet": (100, 3, 48, 48),
        "labels": (100,)}``: normalised float32 inputs; labels are 1 for the 50 faces,
        0 for the 50 non-faces.
        """
        if self._inputs is None:
            self.ensure_available()
            self._inputs = load_face_inputs(EVALUATION_SPLIT)
        return self._copy(self._inputs)

    def calibration_inputs(self) -> dict[str, np.ndarray]:
        """Like :meth:`evaluation_inputs`, for the other 100 images (:data:`CALIBRATION_SPLIT`)."""
        if self._calibration is None:
            self.ensure_available()
            self._calibration = load_face_inputs(CALIBRATION_SPLIT)
        return self._copy(self._calibration)

    def _models(self, tensors: Mapping[str, np.ndarray]) -> dict[str, Any]:
        if self._tensors is None:
            self.load()
        assert self._tensors is not None
        check_tensors(self.name, tensors, self._tensors)
        torch = require_torch()
        if self._nets is None:
            self._nets = {net: cls().eval() for net, cls in _net_classes().items()}
        for net, module in self._nets.items():
            prefix = f"{net}."
            names = [name[len(prefix) :] for name in self._tensors if name.startswith(prefix)]
            state = to_torch_state_dict(tensors, names, prefix=prefix)
            with torch.no_grad():
                module.load_state_dict(state, strict=True)
        return self._nets

    def face_probs(self, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Face probability (200,) float64 per network of the model ``tensors``."""
        torch = require_torch()
        nets = self._models(tensors)
        if self._inputs is None:
            self.evaluation_inputs()
        assert self._inputs is not None
        inputs = self._inputs[0]
        with torch.inference_mode():
            return {
                net: module(torch.from_numpy(inputs[net])).to(torch.float64).numpy()
                for net, module in nets.items()
            }

    def reference_face_probs(self) -> dict[str, np.ndarray]:
        """The original networks' face probabilities (computed once)."""
        if self._reference is None:
            self._reference = self.face_probs(self.load())
        return self._reference

    def evaluate(self, tensors: Mapping[str, np.ndarray]) -> dict[str, float]:
        reference = self.reference_face_probs()
        test = self.face_probs(tensors)
        assert self._inputs is not None
        labels = self._inputs[1]
        errors = np.concatenate([np.abs(test[net] - reference[net]) for net in NETS])
        prob_mae = float(np.mean(np.nan_to_num(errors, nan=1.0)))
        result = {"prob_db": error_db(prob_mae), "prob_mae": prob_mae}
        for net in NETS:
            result[f"auc_{net}"] = roc_auc(test[net], labels)
        return {key: result[key] for key in self.metric_keys}

    def input_channel_importance(self, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Mean squared input per input channel of every conv and dense weight of the three nets.

        Measured on :meth:`calibration_inputs`.  For a dense layer after the
        flatten, the channel is the flattened input feature (576 for
        ``rnet.dense4``, 1152 for ``onet.dense5``).
        """
        torch = require_torch()
        nets = self._models(tensors)
        calibration = self.calibration_inputs()
        result: dict[str, np.ndarray] = {}
        for net, module in nets.items():
            maps = calibrate(module, [torch.from_numpy(calibration[net])], kind="activation")
            result.update({f"{net}.{name}": value for name, value in maps.items()})
        assert self._tensors is not None
        return {name: result[name] for name in self._tensors if name in result}

    def output_importance(
        self,
        tensors: Mapping[str, np.ndarray],
        probes: int = 1,
        seed: int = 0,
        samples: int | None = None,
        form: str = "factored",
    ) -> dict[str, np.ndarray]:
        """Output-sensitivity maps (float32, each weight's shape) of every conv and dense weight.

        The output of each network is its face probability, one number per
        image, and the metric its change, so one +-1 probe per image gives the
        exact per-image derivatives (:func:`~nntm.ce.models.base.sign_probes`;
        more ``probes`` repeat the same numbers).
        The three networks are scored alike, so their maps share one unit.
        The box-regression and landmark heads (``conv4_2``, ``dense5_2``,
        ``dense6_2``, ``dense6_3``) do not reach the face probability: their
        maps are zero.  ``samples`` limits the measurement to the first
        calibration images.  See :class:`~nntm.ce.models.base.OutputSensitivity`.
        """
        torch = require_torch()
        nets = self._models(tensors)
        calibration = self.calibration_inputs()
        generator = torch.Generator().manual_seed(seed)  # one stream through the three nets
        maps: dict[str, np.ndarray] = {}
        self.sensitivity_stats: dict[str, dict[str, float]] = {}
        for net, module in nets.items():
            x = torch.from_numpy(calibration[net][:samples])
            stats: dict[str, dict[str, float]] = {}
            found = calibrate(module, [x], probes=probes, seed=generator, form=form, stats=stats)
            maps.update({f"{net}.{name}": value for name, value in found.items()})
            self.sensitivity_stats.update({f"{net}.{name}": s for name, s in stats.items()})
        assert self._tensors is not None
        return {name: maps[name] for name in self._tensors if name in maps}
