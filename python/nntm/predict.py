"""Inter prediction: choosing a tensor's reference picture, and finding it again.

A quantized tensor may be predicted from a *reference picture* (docs/bitstream.md,
"Prediction"): the tensor of the same name and shape in a reference model the
receiver already holds (``pred_mode`` REF_MODEL, the model-update case), or the
reconstruction of an earlier tensor of the same stream with the same shape
(EARLIER_TENSOR).  The prediction is ``ref * pred_scale / 2**12``; the levels
code the residual, and the C core forms prediction + residual exactly.

The stream carries the MD5 of each reference tensor, so a decoder given the
wrong reference model stops with an error naming the tensor instead of
producing garbage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from . import core, hls
from .errors import ReferenceModelError

__all__ = ["Candidate", "Choice", "choose", "find_reference", "usable"]


@dataclass(frozen=True)
class Candidate:
    """A possible reference picture of a tensor."""

    mode: hls.PredMode
    tensor_id: int          # EARLIER_TENSOR: the earlier tensor's id (else unused)
    array: np.ndarray       # the reference tensor, in the coded tensor's shape


@dataclass(frozen=True)
class Choice:
    candidate: Candidate
    scale: int              # pred_scale (4096 is 1.0)
    energy_ratio: float     # residual energy / weight energy with this prediction

    @property
    def label(self) -> str:
        if self.candidate.mode == hls.PredMode.REF_MODEL:
            return "ref"
        return f"t{self.candidate.tensor_id}"


def usable(array: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Whether ``array`` can be a reference picture of a tensor of ``shape``."""
    if tuple(array.shape) != tuple(shape) or array.dtype.name not in core.REF_DTYPES:
        return False
    return bool(np.all(np.isfinite(array.astype(np.float32))))


# A prediction costs its parameter set fields (pred_mode, dtype, scale, 16 MD5 bytes: about
# 150 bits); it is used only when the high-rate estimate of what it saves,
# n/2 * log2(weight energy / residual energy) bits, exceeds this.
MIN_SAVED_BITS = 256.0


def choose(weights: np.ndarray, candidates: list[Candidate], fit_scale: bool) -> Choice | None:
    """The candidate that leaves the least residual energy, if that saves bits.

    With ``fit_scale`` the prediction scale is the least-squares one, rounded to
    1/4096; else 1.  The encoder's rate follows the residual energy closely, so
    the smallest residual is the cheapest prediction at the same QP; it is taken
    when ``n/2 * log2(energy / residual)`` exceeds MIN_SAVED_BITS.
    """
    w = np.asarray(weights, dtype=np.float64).ravel()
    energy = float(w @ w)
    best: Choice | None = None
    for cand in candidates:
        r = np.asarray(cand.array, dtype=np.float64).ravel()
        rr = float(r @ r)
        if rr == 0.0:
            continue
        scale = hls.PRED_SCALE_ONE
        if fit_scale:
            fit = float(w @ r) / rr * hls.PRED_SCALE_ONE
            scale = int(np.clip(np.rint(fit), -hls.MAX_PRED_SCALE, hls.MAX_PRED_SCALE))
        e = w - r * (scale / hls.PRED_SCALE_ONE)
        residual = float(e @ e)
        if residual < energy and (best is None or residual < best.energy_ratio * energy):
            best = Choice(cand, scale, residual / energy if energy else 0.0)
    if best is None:
        return None
    saved = 0.5 * w.size * np.log2(1.0 / max(best.energy_ratio, 1e-30))
    return best if saved > MIN_SAVED_BITS else None


def find_reference(tps: hls.TensorParameterSet, ref_model: Mapping[str, np.ndarray] | None,
                   earlier: Mapping[int, np.ndarray], where: str) -> np.ndarray:
    """The reference picture a predicted tensor names, checked against its MD5.

    Raises ReferenceModelError naming the tensor when the reference is missing,
    has another shape or dtype, or differs from the one the stream was coded with.
    """
    what = f"{where}, tensor '{tps.name}'"
    if tps.pred_mode == hls.PredMode.REF_MODEL:
        if ref_model is None:
            raise ReferenceModelError(
                f"{what} is predicted from a reference model; give the model the stream was "
                "coded against (DecoderApp --RefModel old.safetensors)")
        if tps.name not in ref_model:
            raise ReferenceModelError(f"{what}: the reference model has no tensor of that name")
        ref = np.asarray(ref_model[tps.name])
        source = "the reference model's tensor"
    else:
        if tps.ref_tensor_id not in earlier:
            raise ReferenceModelError(
                f"{what}: predicted from tensor_id {tps.ref_tensor_id}, which is not decoded "
                "before it")
        ref = earlier[tps.ref_tensor_id]
        source = f"tensor_id {tps.ref_tensor_id}"
    if tuple(ref.shape) != tuple(tps.shape):
        raise ReferenceModelError(f"{what}: {source} has shape {tuple(ref.shape)}, the stream "
                                  f"needs {tuple(tps.shape)}")
    if ref.dtype != tps.ref_dtype:
        raise ReferenceModelError(f"{what}: {source} is {ref.dtype}, the stream was coded "
                                  f"against {tps.ref_dtype}")
    from .codec import tensor_md5

    md5 = tensor_md5(ref)
    if md5 != tps.ref_md5:
        raise ReferenceModelError(
            f"{what}: {source} is not the one the stream was coded against (MD5 {md5.hex()}, "
            f"expected {tps.ref_md5.hex()}): wrong reference model?")
    return ref
