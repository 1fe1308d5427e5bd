"""Precision of 1-D tensors by role and by the tensor's own scale (``QP1DMode relative``).

The absolute 1-D rules give every bias, norm scale or BatchNorm statistic the same step
(``QP + QPOffset1D``, or the fixed fine ``QP1D``) whatever its values: a bias of magnitude
1e-3 is wiped out at a step that is fine for a variance of 1e3, and a variance of 1e4 at
``QP1D -64`` needs levels beyond the coder's range.  ``relative`` chooses each 1-D tensor's
step from its own magnitude instead:

    step = scale(t) * 2 ** (q / 2**QPDensity)

where ``scale(t)`` is the root mean square of the tensor's values (of its non-zero values,
so padding zeros do not shrink it) and ``q`` depends on the tensor's role (nntm.roles, found
from the graph, the state-dict structure or the values, never from a name):

* BatchNorm statistics (roles bn-mean, bn-var, bn-param): ``q = min(QP1DRelStats, QP +
  QP1DRelStatsOffset)``: never coarser than QP1DRelStats whatever QP is (the relative twin of
  the fixed ``QP1D``: the network divides by the variance, so their relative precision must
  stay fine at every rate), and finer with QP at high rates;
* every other 1-D tensor (biases, norm scales and shifts, unknown 1-D): ``q = QP +
  QP1DRelOffset``, so their relative precision follows the rate like the weights'.

Two refinements, both data-free and name-free:

* a variance (role bn-var, or a BatchNorm input found by values, bn-param, whose values are
  all positive and spread over a decade: ``roles.variance_like``) is divided by, so each of
  its values needs the same *relative* precision: its scale is the ``QP1DRelVarQuantile``
  quantile of its values instead of the rms (0: the rms);
* a tensor's scale is at least ``QP1DRelFloor`` times the median scale of the model's 1-D
  float tensors: the statistics of dead channels (MobileNetV2 has BatchNorm means of rms 5e-8
  against a median of 0.1) are not coded to a precision no output can see (0: no floor).

The chosen QP is the nearest integer (the step formula's QP grid), so the step is within a
factor 2**(1 / 2**(QPDensity+1)) of the target.  A tensor whose values are all zero takes
``QP + QPOffset1D`` (nothing to scale by).  The QP is signalled per tensor as always: the
rule is an encoder decision only, with no change of the format, and every stream stays
decodable by any decoder.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from . import roles
from .config import Config

__all__ = ["QP_MIN", "QP_MAX", "floor_of_scales", "model_floor", "relative_qp", "role_scale",
           "scales_1d", "tensor_scale"]

#: the range of QPs the rule chooses from (the cfg's QP range)
QP_MIN, QP_MAX = -128, 127


def tensor_scale(array: np.ndarray) -> float:
    """Root mean square of the non-zero values of a tensor (0.0 when none is non-zero)."""
    v = np.asarray(array, dtype=np.float64).ravel()
    v = v[np.isfinite(v) & (v != 0)]
    if v.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(v * v)))


def _variance(array: np.ndarray, role: roles.Role | None) -> bool:
    return role == roles.Role.BN_VAR or (role == roles.Role.BN_PARAM
                                         and roles.variance_like(np.asarray(array)))


def role_scale(config: Config, array: np.ndarray, role: roles.Role | None) -> float:
    """The scale a 1-D tensor's step is relative to: its rms, or for a variance a low
    quantile of its values (QP1DRelVarQuantile)."""
    quantile = float(config["QP1DRelVarQuantile"])
    if quantile > 0.0 and _variance(array, role):
        v = np.asarray(array, dtype=np.float64).ravel()
        v = v[np.isfinite(v) & (v > 0)]
        if v.size:
            return float(np.quantile(v, quantile))
    return tensor_scale(array)


def scales_1d(config: Config, array: np.ndarray, role: roles.Role | None) -> list[float]:
    """``[scale]`` of a 1-D float tensor for :func:`model_floor` (``[]`` for any other)."""
    if np.ndim(array) != 1 or not (array.dtype.kind == "f" or array.dtype.name == "bfloat16"):
        return []
    scale = role_scale(config, array, role)
    return [scale] if scale > 0.0 and math.isfinite(scale) else []


def floor_of_scales(config: Config, scales: Sequence[float]) -> float:
    """QP1DRelFloor times the median of ``scales`` (0.0: no floor or no scales)."""
    factor = float(config["QP1DRelFloor"])
    if factor <= 0.0 or not scales:
        return 0.0
    return factor * float(np.median(scales))


def model_floor(config: Config, tensors: Mapping[str, np.ndarray],
                tensor_roles: Mapping[str, roles.Role]) -> float:
    """QP1DRelFloor times the median scale of the model's 1-D float tensors (0.0: none)."""
    scales = [x for n, a in tensors.items() for x in scales_1d(config, a, tensor_roles.get(n))]
    return floor_of_scales(config, scales)


def relative_q(config: Config, role: roles.Role | None) -> int:
    """The role's q: the tensor's QP where its scale is 1."""
    if role in roles.STATS_ROLES:
        return min(int(config["QP1DRelStats"]),
                   int(config["QP"]) + int(config["QP1DRelStatsOffset"]))
    return int(config["QP"]) + int(config["QP1DRelOffset"])


def relative_qp(config: Config, array: np.ndarray, role: roles.Role | None,
                floor: float = 0.0) -> int:
    """QP of a 1-D tensor under ``QP1DMode relative`` (see the module docstring); ``floor``
    is the model's :func:`model_floor`."""
    scale = role_scale(config, array, role)
    if scale > 0.0:
        scale = max(scale, floor)
    if scale <= 0.0 or not math.isfinite(scale):
        return int(config["QP"]) + int(config["QPOffset1D"])
    per_doubling = 1 << int(config["QPDensity"])
    qp = relative_q(config, role) + round(per_doubling * math.log2(scale))
    return max(QP_MIN, min(QP_MAX, qp))
