"""The ddddocr captcha models: a text-line recogniser and a character detector, both ONNX.

``ddddocr`` (PyPI, install ``--no-deps``) ships its networks inside the wheel:

* ``ddddocr/common.onnx`` (:class:`DdddOcrAdapter`, ``ddddocr``): a CRNN text recogniser,
  21 convolutions (SiLU-like gates), a bidirectional LSTM of 512 units and a linear
  classifier over 8210 characters (13.5 M float parameters, 62 % of them the classifier).
  Input: a grey text line of height 64 in [0, 1], ``(1, 1, 64, W)``; output: the logits
  ``(T, 1, 8210)`` of a CTC alignment (class 0 the blank).
* ``ddddocr/common_det.onnx`` (:class:`DdddOcrDetAdapter`, ``ddddocr_det``): a YOLOX-style
  detector of the characters of click captchas, 83 convolutions (5.0 M float parameters).
  Input: a 416x416 BGR image in [0, 255], ``(1, 3, 416, 416)``; output ``(1, 3549, 6)``: per
  anchor the box (grid offsets, log sizes), the objectness and the class probability.

Both are read through the ONNX path (:func:`nntm.onnxio.read_onnx`: the tensors and names
``EncoderApp -i model.onnx`` codes) and run in onnxruntime.

Inputs are rendered offline with Pillow's built-in scalable font (``ImageFont.load_default``
with a size, Pillow >= 10.1 with FreeType), nothing is downloaded: captcha-like images with
random letters and digits, colours, offsets, sizes, noise dots and strike lines, from fixed
seeds.  The recogniser reads 85 % of its 48 evaluation lines exactly right (the drawn text
is the ground truth; ``accuracy``), the detector finds the drawn characters: the inputs are
in the models' domain.  Evaluation and calibration images come from different seeds; no
text line is in both sets (a test checks it).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from nntm.ce.models.base import error_db, find_package_file
from nntm.ce.models.onnx_base import OnnxModelAdapter

__all__ = [
    "DdddOcrAdapter",
    "DdddOcrDetAdapter",
    "ctc_greedy",
    "render_detection_image",
    "render_text_line",
]

PACKAGE = "ddddocr"
LINE_WIDTH = 160
"""Width of the rendered text lines (height 64, the recogniser's)."""
ALPHABET = "abcdefghijkmnpqrstuvwxyzABDEFGHJKLMNQRTY23456789"
"""Characters drawn (no look-alikes such as l/1/I, o/0/O, which captchas avoid too)."""
DET_SIZE = 416
REC_EVAL, REC_CALIB = (0, 48), (1, 32)
"""(seed, count) of the recogniser's evaluation and calibration lines."""
DET_EVAL, DET_CALIB = (10, 16), (11, 16)
"""(seed, count) of the detector's evaluation and calibration images."""


def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _colour(rng: np.random.Generator, low: int, high: int) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in rng.integers(low, high, 3))
    return r, g, b


def _noise(draw: Any, rng: np.random.Generator, width: int, height: int, lines: int) -> None:
    for _ in range(int(rng.integers(20, 60))):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        draw.point((x, y), fill=_colour(rng, 0, 256))
    for _ in range(lines):
        points = [(int(rng.integers(0, width)), int(rng.integers(0, height))) for _ in range(2)]
        draw.line(points, fill=_colour(rng, 60, 200), width=1)


def render_text_line(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A captcha-like text line: ``(float32 (1, 64, 160) in [0, 1], its text)``."""
    from PIL import Image, ImageDraw

    text = "".join(rng.choice(list(ALPHABET), size=int(rng.integers(4, 7))))
    image = Image.new("RGB", (LINE_WIDTH, 64), _colour(rng, 170, 256))
    draw = ImageDraw.Draw(image)
    _noise(draw, rng, LINE_WIDTH, 64, lines=int(rng.integers(0, 3)))
    font = _font(int(rng.integers(28, 40)))
    x, y = int(rng.integers(2, 16)), int(rng.integers(2, 14))
    draw.text((x, y), text, font=font, fill=_colour(rng, 0, 110))
    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    return grey[None], text


def render_detection_image(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A click-captcha-like image: ``(float32 (3, 416, 416) BGR in [0, 255], characters)``."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (DET_SIZE, DET_SIZE), _colour(rng, 110, 256))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 6))):  # soft background blobs
        x, y = int(rng.integers(0, DET_SIZE)), int(rng.integers(0, DET_SIZE))
        r = int(rng.integers(30, 120))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=_colour(rng, 100, 256))
    count = int(rng.integers(3, 7))
    for _ in range(count):
        font = _font(int(rng.integers(36, 64)))
        x, y = int(rng.integers(8, DET_SIZE - 60)), int(rng.integers(8, DET_SIZE - 70))
        draw.text((x, y), str(rng.choice(list(ALPHABET))), font=font, fill=_colour(rng, 0, 100))
    _noise(draw, rng, DET_SIZE, DET_SIZE, lines=int(rng.integers(0, 4)))
    bgr = np.asarray(image, dtype=np.float32)[:, :, ::-1].transpose(2, 0, 1)
    return np.ascontiguousarray(bgr), count


@functools.cache
def _charset() -> tuple[str, ...]:
    """The recogniser's characters (``CHARSET_BETA`` of ddddocr/charsets.py, read as data)."""
    path = find_package_file(PACKAGE, "charsets.py")
    if path is None:
        return ()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "CHARSET_BETA":
            return tuple(ast.literal_eval(node.value))
    return ()


def ctc_greedy(logits: np.ndarray) -> tuple[int, ...]:
    """Greedy CTC decoding of ``(T, C)`` logits: repeats merged, blanks (class 0) dropped."""
    best = np.argmax(logits, axis=-1)
    keep = np.r_[True, best[1:] != best[:-1]] & (best != 0)
    return tuple(int(v) for v in best[keep])


def _kl_rows(reference: np.ndarray, test: np.ndarray) -> np.ndarray:
    """KL(softmax(reference) || softmax(test)) of each row (float64)."""
    def log_softmax(z: np.ndarray) -> np.ndarray:
        z = z - np.max(z, axis=-1, keepdims=True)
        return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))

    lp, lq = log_softmax(reference), log_softmax(np.nan_to_num(test, nan=0.0, posinf=1e4,
                                                               neginf=-1e4))
    return np.sum(np.exp(lp) * (lp - lq), axis=-1)


class DdddOcrAdapter(OnnxModelAdapter):
    """ddddocr's text recogniser (ONNX, CRNN + CTC) on rendered captcha lines."""

    name: ClassVar[str] = "ddddocr"
    primary_metric: ClassVar[str] = "kl_db"
    metric_keys: ClassVar[tuple[str, ...]] = ("kl_db", "kl_mean", "agree", "accuracy")
    eval_version: ClassVar[str] = "1"
    requires: ClassVar[tuple[str, ...]] = ("onnx", "onnxruntime", "PIL")
    package: ClassVar[str] = PACKAGE
    model_file: ClassVar[tuple[str, ...]] = ("common.onnx",)
    calibration_output: ClassVar[str] = "kl"
    input_name: ClassVar[str] = "input1"
    output_name: ClassVar[str] = "387"

    def install_hint(self) -> str:
        return "pip install onnx onnxruntime pillow && pip install --no-deps ddddocr"

    @functools.cached_property
    def _eval_lines(self) -> tuple[np.ndarray, tuple[str, ...]]:
        return _lines(*REC_EVAL)

    @functools.cached_property
    def _calib_lines(self) -> tuple[np.ndarray, tuple[str, ...]]:
        images, texts = _lines(*REC_CALIB, avoid=set(self._eval_lines[1]))
        return images, texts

    def evaluation_inputs(self) -> dict[str, np.ndarray]:
        """``{"input1": (48, 1, 64, 160) float32}``: 48 rendered lines."""
        return {self.input_name: self._eval_lines[0].copy()}

    def evaluation_texts(self) -> tuple[str, ...]:
        return self._eval_lines[1]

    def calibration_inputs(self) -> dict[str, np.ndarray]:
        """``{"input1": (32, 1, 64, 160) float32}``: 32 other lines (other seed, other texts)."""
        return {self.input_name: self._calib_lines[0].copy()}

    def calibration_texts(self) -> tuple[str, ...]:
        return self._calib_lines[1]

    def logits(self, tensors: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """``(T, 8210)`` logits per evaluation line."""
        outs = self.outputs(tensors, self.evaluation_inputs(), self.output_name)
        return [out.reshape(out.shape[0], -1) for out in outs]

    def scored(self) -> Any:
        return "kl"

    def evaluate(self, tensors: Mapping[str, np.ndarray]) -> dict[str, float]:
        if self._reference is None:
            self._reference = self.logits(self.load())
        test = self.logits(tensors)
        kl = float(np.mean(np.concatenate([_kl_rows(r, t) for r, t in
                                           zip(self._reference, test, strict=True)])))
        kl = kl if np.isfinite(kl) else 1e6
        same = [ctc_greedy(r) == ctc_greedy(t) for r, t in zip(self._reference, test,
                                                               strict=True)]
        charset = _charset()
        read = ["".join(charset[i] for i in ctc_greedy(t) if i < len(charset)) for t in test]
        correct = [got == want for got, want in zip(read, self.evaluation_texts(), strict=True)]
        result = {"kl_db": error_db(kl), "kl_mean": kl, "agree": 100.0 * float(np.mean(same)),
                  "accuracy": 100.0 * float(np.mean(correct))}
        return {key: result[key] for key in self.metric_keys}


def _lines(seed: int, count: int, avoid: set[str] | None = None
           ) -> tuple[np.ndarray, tuple[str, ...]]:
    rng = np.random.default_rng(seed)
    images, texts = [], []
    while len(images) < count:
        image, text = render_text_line(rng)
        if avoid and text in avoid:
            continue
        images.append(image)
        texts.append(text)
    return OnnxModelAdapter.stack(images), tuple(texts)


def _det_images(seed: int, count: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return OnnxModelAdapter.stack([render_detection_image(rng)[0] for _ in range(count)])


def detections(out: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Indices of the anchors whose confidence (objectness x class) is at least ``threshold``."""
    return np.flatnonzero(out[:, 4] * out[:, 5] >= threshold)


class DdddOcrDetAdapter(OnnxModelAdapter):
    """ddddocr's character detector (ONNX, YOLOX-style) on rendered click captchas."""

    name: ClassVar[str] = "ddddocr_det"
    primary_metric: ClassVar[str] = "conf_db"
    metric_keys: ClassVar[tuple[str, ...]] = ("conf_db", "conf_mae", "box_mae", "det_agree")
    eval_version: ClassVar[str] = "1"
    requires: ClassVar[tuple[str, ...]] = ("onnx", "onnxruntime", "PIL")
    package: ClassVar[str] = PACKAGE
    model_file: ClassVar[tuple[str, ...]] = ("common_det.onnx",)
    input_name: ClassVar[str] = "images"
    output_name: ClassVar[str] = "output"

    def install_hint(self) -> str:
        return "pip install onnx onnxruntime pillow && pip install --no-deps ddddocr"

    @functools.cached_property
    def _eval_images(self) -> np.ndarray:
        return _det_images(*DET_EVAL)

    @functools.cached_property
    def _calib_images(self) -> np.ndarray:
        return _det_images(*DET_CALIB)

    def evaluation_inputs(self) -> dict[str, np.ndarray]:
        """``{"images": (16, 3, 416, 416) float32}``: 16 rendered captchas."""
        return {self.input_name: self._eval_images.copy()}

    def calibration_inputs(self) -> dict[str, np.ndarray]:
        """``{"images": (16, 3, 416, 416) float32}``: 16 others (another seed)."""
        return {self.input_name: self._calib_images.copy()}

    def scored(self) -> Any:
        """The confidence of each anchor (objectness x class probability): squared error."""
        return _confidence

    def raw_outputs(self, tensors: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """``(3549, 6)`` per evaluation image."""
        return [out[0] for out in self.outputs(tensors, self.evaluation_inputs(),
                                               self.output_name)]

    def evaluate(self, tensors: Mapping[str, np.ndarray]) -> dict[str, float]:
        if self._reference is None:
            self._reference = self.raw_outputs(self.load())
        test = self.raw_outputs(tensors)
        conf_err, box_err, agree = [], [], []
        for ref, out in zip(self._reference, test, strict=True):
            out = np.nan_to_num(out, nan=1e3)
            conf_err.append(np.abs(out[:, 4] * out[:, 5] - ref[:, 4] * ref[:, 5]))
            keep = detections(ref)
            if keep.size:
                box_err.append(np.abs(out[keep, :4] - ref[keep, :4]).ravel())
            a, b = set(detections(ref).tolist()), set(detections(out).tolist())
            agree.append(2.0 * len(a & b) / (len(a) + len(b)) if a or b else 1.0)
        conf_mae = float(np.mean(np.concatenate(conf_err)))
        result = {
            "conf_db": error_db(conf_mae),
            "conf_mae": conf_mae,
            "box_mae": float(np.mean(np.concatenate(box_err))) if box_err else 0.0,
            "det_agree": 100.0 * float(np.mean(agree)),
        }
        return {key: result[key] for key in self.metric_keys}


def _confidence(out: Any) -> Any:
    """Objectness x class probability of each anchor, ``(batch, anchors)``."""
    return out[..., 4] * out[..., 5]
