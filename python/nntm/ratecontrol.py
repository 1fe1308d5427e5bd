"""Rate control: the QPs that give a model a target size, found before it is coded once.

``EncoderApp --TargetBitsPerParam=4`` (or ``--TargetSize=2M``) asks for a size instead of a QP.
:func:`plan` estimates the bits of the model at any QP from a *sample* of it: every tensor of
two or more dimensions keeps an evenly spaced subset of its rows (at most ``SAMPLE_ELEMENTS``
elements), the other tensors stay whole, and the sample is coded with the full configuration
(coding tree, DQ, row prediction ...). Each tensor's payload bits scale with its elements; its
parameter set and hash unit are counted as they are. A bisection on the global QP brackets the
target between two neighbouring QPs ``q`` (finer) and ``q + 1``; then tensors move from
``q + 1`` to ``q``, the largest first, while the estimate stays at or below the target, so the
rate falls between the two QPs' rates instead of on one of them. The model is then coded once.

The estimate is the encoder's own: nothing is decoded or measured on the network. Rate control
is not combined with importance maps or a reference model (their per-tensor QP offsets and
predictions are not sampled yet): the encoder says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from . import codec, hls
from .config import Config
from .errors import ConfigError

__all__ = ["Plan", "SAMPLE_ELEMENTS", "plan", "target_bits"]

SAMPLE_ELEMENTS = 16384
QP_MIN, QP_MAX = -128, 127


@dataclass
class Plan:
    qp: int                          # the global QP to code with
    offsets: dict[str, int]          # per-tensor QP offsets on top of it (-1: one step finer)
    estimate_bits: float             # the estimated size of the stream
    target_bits: float
    probes: int                      # sampled encodes made


def target_bits(config: Config, tensors: Mapping[str, np.ndarray]) -> float | None:
    """The target size in bits asked by TargetBitsPerParam / TargetSize (None: no target)."""
    from .memory import parse_size

    bpp = float(config["TargetBitsPerParam"])
    size = str(config["TargetSize"]).strip()
    if bpp and size:
        raise ConfigError("TargetBitsPerParam and TargetSize: give one of them")
    if size:
        return 8.0 * parse_size(size, allow_auto=False)
    if bpp:
        floats = sum(int(np.size(v)) for v in tensors.values()
                     if np.asarray(v).dtype.name in hls.FLOAT_DTYPES)
        return bpp * floats
    return None


def _sample(tensors: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The sampled model and each tensor's scale (its elements / the sample's)."""
    sample, scale = {}, {}
    for name, value in tensors.items():
        a = np.asarray(value)
        if a.ndim >= 2 and a.size > SAMPLE_ELEMENTS and a.dtype.name in hls.FLOAT_DTYPES:
            step = min(a.shape[0], math.ceil(a.size / SAMPLE_ELEMENTS))
            part = np.ascontiguousarray(a[::step])
            sample[name], scale[name] = part, a.size / part.size
        else:
            sample[name], scale[name] = a, 1.0
    return sample, scale


def _tensor_bits(data: bytes) -> tuple[dict[int, int], dict[int, int]]:
    """(payload bits, other bits) per tensor_id of a stream."""
    payload: dict[int, int] = {}
    other: dict[int, int] = {}
    mps = None
    for unit in hls.split_units(data):
        size = 8 * (hls.UNIT_HEADER_BYTES + len(unit.payload))
        if unit.unit_type == hls.UnitType.MODEL_PARAMETER_SET:
            mps = hls.parse_model_parameter_set(unit)
        elif unit.unit_type == hls.UnitType.TENSOR_PARAMETER_SET and mps is not None:
            tid = hls.parse_tensor_parameter_set(unit, mps).tensor_id
            other[tid] = other.get(tid, 0) + size
        elif unit.unit_type == hls.UnitType.TENSOR_DATA_UNIT:
            tid, body = hls.parse_tensor_data_unit(unit)
            payload[tid] = 8 * len(body)
            other[tid] = other.get(tid, 0) + size - 8 * len(body)
        elif unit.unit_type == hls.UnitType.TENSOR_HASH_UNIT:
            tid = hls.parse_tensor_hash_unit(unit, mps)[0]
            other[tid] = other.get(tid, 0) + size
    return payload, other


class _Estimator:
    def __init__(self, tensors: Mapping[str, np.ndarray], config: Config,
                 consumers: Mapping[str, Sequence[tuple[str, int]]] | None = None,
                 container: hls.Container | None = None) -> None:
        self.names = list(tensors)
        self.sample, self.scale = _sample(tensors)
        self.config = config
        self.consumers, self.container = consumers, container  # an ONNX graph's [1.7]
        self.cache: dict[int, tuple[float, dict[str, float]]] = {}

    def __call__(self, qp: int) -> tuple[float, dict[str, float]]:
        """(estimated stream bits, estimated bits of each tensor) at global QP ``qp``."""
        if qp not in self.cache:
            data = codec.encode_with_recon(self.sample, self.config.replace(QP=qp),
                                           consumers=self.consumers,
                                           container=self.container).data
            payload, other = _tensor_bits(data)
            per = {name: other.get(i, 0) + payload.get(i, 0) * self.scale[name]
                   for i, name in enumerate(self.names)}
            fixed = 8 * len(data) - sum(other.values()) - sum(payload.values())  # MPS, EOS
            self.cache[qp] = (fixed + sum(per.values()), per)
        return self.cache[qp]


def plan(tensors: Mapping[str, np.ndarray], config: Config, target: float,
         consumers: Mapping[str, Sequence[tuple[str, int]]] | None = None,
         container: hls.Container | None = None) -> Plan:
    """The QP (and per-tensor offsets) whose estimated stream size is closest to ``target``
    bits from below, or the finest QP's estimate when even that is smaller.  ``consumers``
    and ``container`` are those the stream is coded with (an ONNX input): the roles they
    give and the container unit's bytes are in the estimate."""
    est = _Estimator(tensors, config, consumers, container)
    lo, hi = QP_MIN, QP_MAX  # est(lo) is the largest stream, est(hi) the smallest
    q = int(config["QP"])
    step = 4
    if est(q)[0] > target:  # too big: coarser
        while q < hi and est(min(q + step, hi))[0] > target:
            q, step = min(q + step, hi), step * 2
        lo, hi = q, min(q + step, hi)
    else:
        while q > lo and est(max(q - step, lo))[0] <= target:
            q, step = max(q - step, lo), step * 2
        lo, hi = max(q - step, lo), q
    while hi - lo > 1:  # est(lo) > target >= est(hi)
        mid = (lo + hi) // 2
        if est(mid)[0] > target:
            lo = mid
        else:
            hi = mid
    coarse_total, coarse = est(hi)
    if coarse_total > target:  # even the coarsest QP is too big: take it
        return Plan(hi, {}, coarse_total, target, len(est.cache))
    fine_total, fine = est(lo)
    if fine_total <= target:  # even the finest QP fits
        return Plan(lo, {}, fine_total, target, len(est.cache))
    gain = {n: fine[n] - coarse[n] for n in est.names
            if np.ndim(tensors[n]) >= 2 and fine[n] > coarse[n]}
    offsets: dict[str, int] = {}
    total = coarse_total
    for name in sorted(gain, key=lambda n: -gain[n]):  # the largest first
        if total + gain[name] <= target:
            offsets[name] = -1
            total += gain[name]
    return Plan(hi, offsets, total, target, len(est.cache))
