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

* BatchNorm statistics (roles bn-mean, bn-var, bn-param): ``q = QP1DRelStats`` whatever QP is
  (the relative twin of the fixed ``QP1D``: the network divides by the variance, so their
  relative precision must stay fine at every rate);
* every other 1-D tensor (biases, norm scales and shifts, unknown 1-D): ``q = QP +
  QP1DRelOffset``, so their relative precision follows the rate like the weights'.

The chosen QP is the nearest integer (the step formula's QP grid), so the step is within a
factor 2**(1 / 2**(QPDensity+1)) of the target.  A tensor whose values are all zero takes
``QP + QPOffset1D`` (nothing to scale by).  The QP is signalled per tensor as always: the
rule is an encoder decision only, with no change of the format, and every stream stays
decodable by any decoder.
"""

from __future__ import annotations

import math

import numpy as np

from . import roles
from .config import Config

__all__ = ["QP_MIN", "QP_MAX", "relative_qp", "tensor_scale"]

#: the range of QPs the rule chooses from (the cfg's QP range)
QP_MIN, QP_MAX = -128, 127


def tensor_scale(array: np.ndarray) -> float:
    """Root mean square of the non-zero values of a tensor (0.0 when none is non-zero)."""
    v = np.asarray(array, dtype=np.float64).ravel()
    v = v[np.isfinite(v) & (v != 0)]
    if v.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(v * v)))


def relative_q(config: Config, role: roles.Role | None) -> int:
    """The role's q: the tensor's QP where its scale is 1."""
    if role in roles.STATS_ROLES:
        return int(config["QP1DRelStats"])
    return int(config["QP"]) + int(config["QP1DRelOffset"])


def relative_qp(config: Config, array: np.ndarray, role: roles.Role | None) -> int:
    """QP of a 1-D tensor under ``QP1DMode relative`` (see the module docstring)."""
    scale = tensor_scale(array)
    if scale <= 0.0 or not math.isfinite(scale):
        return int(config["QP"]) + int(config["QPOffset1D"])
    per_doubling = 1 << int(config["QPDensity"])
    qp = relative_q(config, role) + round(per_doubling * math.log2(scale))
    return max(QP_MIN, min(QP_MAX, qp))
