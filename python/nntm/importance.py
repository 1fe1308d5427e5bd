"""Importance maps: output-aware weighting of the encoder's distortion.

An importance map says how much an error in each weight costs at the
network's output.  The encoder multiplies each weight's squared error by its
importance in every rate-distortion decision (rounding, trellis, CU modes,
partitioning) and, with ``ImportanceQPScale``, moves each tensor's QP by its
mean importance.  The decoder needs nothing: the maps are an encoder input.

File format (docs/importance.md): a .safetensors or .npz file whose entries
are named like the model's tensors; each entry is float (any float dtype,
values >= 0, finite) and is either

* a vector with one value per input channel (``shape[1]`` of a linear or conv
  weight; for a depthwise conv weight of shape (C, 1, kh, kw), C values), or
* an array of the tensor's own shape (one value per weight).

Tensors without an entry get importance 1 everywhere.  A natural choice is the
mean squared input activation of each input channel measured on calibration
data (``nntm-calibrate`` / the CE model adapters), which makes the weighted
error the expected squared error of the layer's output.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from .errors import EncodeError


def expand(name: str, shape: tuple[int, ...], value: np.ndarray) -> np.ndarray:
    """The per-weight importance of a tensor from its map entry (float64)."""
    v = np.asarray(value)
    if v.dtype.kind != "f" and v.dtype.name != "bfloat16":
        raise EncodeError(f"importance of '{name}': dtype {v.dtype} is not a float type")
    v = v.astype(np.float64)
    if not np.all(np.isfinite(v)) or np.any(v < 0):
        raise EncodeError(f"importance of '{name}': values must be finite and >= 0")
    if v.shape == shape:
        return v
    if v.ndim == 1 and len(shape) >= 2:
        if v.size == shape[1]:
            view = [1] * len(shape)
            view[1] = shape[1]
            return np.broadcast_to(v.reshape(view), shape).copy()
        if shape[1] == 1 and v.size == shape[0]:  # depthwise: one input channel per filter
            view = [1] * len(shape)
            view[0] = shape[0]
            return np.broadcast_to(v.reshape(view), shape).copy()
    raise EncodeError(f"importance of '{name}': shape {v.shape} fits neither the tensor's "
                      f"shape {shape} nor its input channels")


def map_problems(maps: Mapping[str, np.ndarray], tensors: Mapping[str, np.ndarray]) -> list[str]:
    """Why importance ``maps`` do not fit the model ``tensors``, one line per map (empty: they fit).

    Each problem names the map: a name the model does not have, a map whose shape fits
    neither the tensor's shape nor its input channels, a non-float or non-finite or
    negative map.  The same checks as :func:`expand`, all at once, before any coding.
    """
    problems = []
    for name, value in maps.items():
        if name not in tensors:
            problems.append(f"'{name}' is not a tensor of the model")
            continue
        try:
            expand(name, tuple(np.shape(tensors[name])), value)
        except EncodeError as exc:
            problems.append(str(exc))
    return problems


def qp_offsets(
    maps: Mapping[str, np.ndarray],
    scale: float,
    qp_density: int,
    max_offset: int = 0,
    max_step: float = 0.0,
    base_qp: int | None = None,
    rms: Mapping[str, float] | None = None,
) -> dict[str, int]:
    """Per-tensor QP offsets from the mean importance of each tensor.

    With MSE weighted by importance, the best step of a tensor scales as
    1/sqrt(importance): a tensor whose mean importance is 4x the geometric
    mean over all mapped tensors gets a step half as large, i.e. a QP offset
    of -2**qp_density (times ``scale``, 0 = off).  Offsets are clamped to
    ``max_offset`` QPs either way (0: four step doublings), after the cap below.

    ``max_step`` > 0 limits demotions (positive offsets) so that they do not
    make a tensor's step coarser than ``max_step * rms[name]`` (the RMS of its
    weights) at the base QP ``base_qp``, though never below the base QP
    itself: a rate-aware limit.  The 1/sqrt(importance) rule assumes
    the error is noise-like; once the step nears a tensor's weight spread,
    RDOQ zeroes most of it and the error becomes a shrinkage of the tensor
    that the maps underrate (docs/ce/CE4_rate.md, third session).  The cap
    binds only at low rates, where a heavily demoted tensor reaches it.
    """
    means = {k: float(np.mean(v)) for k, v in maps.items() if v.size}
    return qp_offsets_from_means(means, scale, qp_density, max_offset, max_step, base_qp, rms)


def qp_offsets_from_means(
    means: Mapping[str, float],
    scale: float,
    qp_density: int,
    max_offset: int = 0,
    max_step: float = 0.0,
    base_qp: int | None = None,
    rms: Mapping[str, float] | None = None,
) -> dict[str, int]:
    """:func:`qp_offsets` from each mapped tensor's mean importance (the maps need not be
    held: rate control computes the offsets at many base QPs from the means alone)."""
    means = {k: m for k, m in means.items() if m > 0}
    if not means or scale == 0.0:
        return {}
    ref = math.exp(sum(math.log(m) for m in means.values()) / len(means))
    per_doubling = 1 << qp_density
    limit = max_offset if max_offset > 0 else 4 * per_doubling
    out = {}
    for name, m in means.items():
        off = -round(scale * per_doubling * 0.5 * math.log2(m / ref))
        if max_step > 0.0 and base_qp is not None and rms is not None and rms.get(name, 0.0) > 0:
            # QP whose step is max_step * rms: step = 2 ** (QP / per_doubling)
            cap = math.floor(per_doubling * math.log2(max_step * rms[name]) + 1e-9) - base_qp
            off = min(off, max(cap, 0))  # limits demotions only: never below the base QP
        out[name] = max(-limit, min(limit, off))
    return out


def weight_rms(array: np.ndarray) -> float:
    """The RMS of a tensor's values (float64; 0 for an empty tensor)."""
    a = np.asarray(array, dtype=np.float64)
    return float(np.sqrt(np.mean(a * a))) if a.size else 0.0


def norm_constants(v: np.ndarray, floor: float = 0.0) -> tuple[float, float]:
    """The two means :func:`normalized` divides ``v`` by: its own, and (with ``floor``) that
    of the floored map (1.0 without a floor)."""
    m = float(np.mean(v)) if v.size else 0.0
    if m <= 0 or floor <= 0.0:
        return m, 1.0
    return m, float(np.mean(np.maximum(v / m, floor)))


def normalized(v: np.ndarray, floor: float = 0.0,
               constants: tuple[float, float] | None = None) -> np.ndarray:
    """A map scaled to mean 1 (all ones when it is all zeros).

    ``floor`` > 0 first raises every value to at least ``floor`` times the
    map's mean, then rescales to mean 1: no weight counts for less than about
    ``floor`` of the tensor's average weight (``ImportanceFloor``).
    ``constants`` (:func:`norm_constants` of a larger map) normalise ``v``, a part of that
    map, as the whole is: rate control's sampled rows weigh as in the whole tensor.
    """
    if constants is not None:
        m = constants[0]
    else:
        m = float(np.mean(v)) if v.size else 0.0
    if m <= 0:
        return np.ones_like(v)
    out = v / m
    if floor > 0.0:
        out = np.maximum(out, floor)
        out = out / (constants[1] if constants is not None else float(np.mean(out)))
    return out
