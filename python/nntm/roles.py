"""Tensor roles, read from the model's structure and the tensors' values, not from names alone.

A coding decision that matches tensor names (``*running_var``) fails on the next model that
names its tensors otherwise: an ONNX export of a detection network calls its BatchNorm
variances ``batch_norm_0.w_2``.  :func:`derive_roles` gives every tensor a :class:`Role` from,
in order of trust:

1. **the graph** (ONNX): the operator that consumes the tensor and at which input, when the
   caller passes ``consumers`` (BatchNormalization inputs 1..4, Conv/Gemm/MatMul weights and
   biases, Gather data, and the structural inputs of Reshape, Resize, Pad, Clip, ... that a
   1e-7 change would break; the inputs of LSTM, GRU and RNN: ``W`` input weights, ``R``
   recurrent weights, ``B`` bias, ``sequence_lens``, ``initial_h``/``initial_c``, ``P``
   peepholes);
2. **the state-dict structure**: tensors that share a module prefix (``a.b.weight`` beside
   ``a.b.running_var``): a module with running statistics is a BatchNorm, its ``weight`` and
   ``bias`` are the normalisation's scale and shift; a 1-D tensor beside a weight of as many
   output channels is its bias; a module with ``weight_ih_l0`` and ``weight_hh_l0`` is an
   ``nn.LSTM``/``GRU``/``RNN``, and its ``weight_ih_l{n}``, ``weight_hh_l{n}``,
   ``weight_hr_l{n}`` (projection), ``bias_ih_l{n}`` and ``bias_hh_l{n}`` (``_reverse``: the
   backward direction) are its input weights, recurrent weights and biases when each layer's
   keys agree in shape (a lone ``weight_hh_l0`` is not a recurrent layer);
3. **the values**: three or more 1-D float tensors of one length in a module without a weight
   are a BatchNorm's scale, shift, mean and variance when one of them is a variance: all
   positive and spread over at least a decade, or all positive beside an integer counter
   (``num_batches_tracked``); integer scalars are counters;
4. **the shape**: conv / depthwise / pointwise / linear / embedding weights, 1-D, scalar (the
   layer type of :func:`nntm.arrange.classify`).

Roles steer the encoder only (which QP a 1-D tensor gets, what is carried exactly); they are
not signalled, so a decoder never needs them.
"""

from __future__ import annotations

import enum
import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from .arrange import LayerType, classify

__all__ = ["Role", "STATS_ROLES", "derive_roles", "parse_roles", "role_counts"]


class Role(enum.Enum):
    CONV = "conv"
    DEPTHWISE_CONV = "dw-conv"
    POINTWISE_CONV = "pw-conv"
    LINEAR = "linear"
    EMBEDDING = "embedding"
    BIAS = "bias"
    NORM_SCALE = "norm-scale"
    NORM_SHIFT = "norm-shift"
    BN_MEAN = "bn-mean"
    BN_VAR = "bn-var"
    BN_PARAM = "bn-param"      # a BatchNorm input found by its values; which one is unknown
    RNN_INPUT = "rnn-input"    # LSTM/GRU/RNN input weights: ONNX W, weight_ih_l{n}
    RNN_RECURRENT = "rnn-recurrent"  # recurrent weights: ONNX R, weight_hh_l{n}, weight_hr_l{n}
    RNN_STATE = "rnn-state"    # ONNX initial_h / initial_c stored in the model: coded as data
    RNN_PEEPHOLE = "rnn-peephole"  # ONNX LSTM P: peephole weights
    STRUCTURAL = "structural"  # shapes, scales, exponents, bounds: carried exactly
    COUNTER = "counter"        # integer scalars (num_batches_tracked)
    INTEGER = "integer"        # other integer or bool tensors (index buffers)
    ONE_D = "1-D"
    SCALAR = "scalar"
    OTHER = "other"

    @property
    def label(self) -> str:
        return self.value


#: the roles whose relative precision the network's output needs: QP1DMode stats codes them
#: at QP1D (docs/ce/CE4_rate.md: BatchNorm statistics)
STATS_ROLES = frozenset({Role.BN_MEAN, Role.BN_VAR, Role.BN_PARAM})

_BY_LAYER = {
    LayerType.CONV: Role.CONV, LayerType.DEPTHWISE_CONV: Role.DEPTHWISE_CONV,
    LayerType.POINTWISE_CONV: Role.POINTWISE_CONV, LayerType.LINEAR: Role.LINEAR,
    LayerType.EMBEDDING: Role.EMBEDDING, LayerType.ONE_D: Role.ONE_D,
    LayerType.SCALAR: Role.SCALAR, LayerType.OTHER: Role.OTHER,
}

# ONNX: (op_type, input index) -> role; None index: every input but the first
_ONNX_INPUTS: dict[tuple[str, int | None], Role] = {
    ("BatchNormalization", 1): Role.NORM_SCALE, ("BatchNormalization", 2): Role.NORM_SHIFT,
    ("BatchNormalization", 3): Role.BN_MEAN, ("BatchNormalization", 4): Role.BN_VAR,
    ("InstanceNormalization", 1): Role.NORM_SCALE, ("InstanceNormalization", 2): Role.NORM_SHIFT,
    ("LayerNormalization", 1): Role.NORM_SCALE, ("LayerNormalization", 2): Role.NORM_SHIFT,
    ("GroupNormalization", 1): Role.NORM_SCALE, ("GroupNormalization", 2): Role.NORM_SHIFT,
    ("Conv", 2): Role.BIAS, ("ConvTranspose", 2): Role.BIAS, ("Gemm", 2): Role.BIAS,
    ("Gather", 0): Role.EMBEDDING,
    ("Reshape", 1): Role.STRUCTURAL, ("Expand", 1): Role.STRUCTURAL, ("Tile", 1): Role.STRUCTURAL,
    ("Resize", None): Role.STRUCTURAL, ("Upsample", 1): Role.STRUCTURAL,
    ("Pad", None): Role.STRUCTURAL, ("Clip", None): Role.STRUCTURAL, ("Pow", 1): Role.STRUCTURAL,
    ("Slice", None): Role.STRUCTURAL, ("TopK", 1): Role.STRUCTURAL,
    ("ConstantOfShape", 0): Role.STRUCTURAL, ("Range", None): Role.STRUCTURAL,
    ("Squeeze", 1): Role.STRUCTURAL, ("Unsqueeze", 1): Role.STRUCTURAL,
    # recurrent layers: X(0), W(1), R(2), B(3), sequence_lens(4), initial_h(5), initial_c(6,
    # LSTM), P(7, LSTM); B is [num_directions, 2*gates*hidden]: the input and recurrent biases
    **{(op, i): role for op in ("LSTM", "GRU", "RNN") for i, role in (
        (1, Role.RNN_INPUT), (2, Role.RNN_RECURRENT), (3, Role.BIAS), (4, Role.STRUCTURAL),
        (5, Role.RNN_STATE))},
    ("LSTM", 6): Role.RNN_STATE, ("LSTM", 7): Role.RNN_PEEPHOLE,
}
_STAT_LEAVES = {"running_mean": Role.BN_MEAN, "running_var": Role.BN_VAR,
                "num_batches_tracked": Role.COUNTER}
# the parameters of torch.nn.LSTM / GRU / RNN: kind, layer, direction
_RNN_KEY = re.compile(r"(weight_ih|weight_hh|weight_hr|bias_ih|bias_hh)_l(\d+)(_reverse)?")
_RNN_ROLES = {"weight_ih": Role.RNN_INPUT, "weight_hh": Role.RNN_RECURRENT,
              "weight_hr": Role.RNN_RECURRENT, "bias_ih": Role.BIAS, "bias_hh": Role.BIAS}


def parse_roles(text: str, key: str = "LosslessRoles") -> tuple[frozenset[Role], list[str]]:
    """The roles named in a space-separated cfg value, and the problems with it."""
    by_label = {r.label: r for r in Role}
    found, problems = set(), []
    for word in text.replace(",", " ").split():
        if word in by_label:
            found.add(by_label[word])
        else:
            problems.append(f"{key}: unknown role '{word}' (roles: {', '.join(by_label)})")
    return frozenset(found), problems


def _split(name: str) -> tuple[str, str]:
    """(module prefix, leaf) of a state-dict key or an ONNX graph path."""
    cut = max(name.rfind("."), name.rfind("/"))
    return (name[:cut], name[cut + 1:]) if cut >= 0 else ("", name)


def _is_float(a: np.ndarray) -> bool:
    return a.dtype.kind == "f" or a.dtype.name == "bfloat16"


def variance_like(a: np.ndarray) -> bool:
    """A 1-D float tensor whose values are all positive and spread over at least a decade."""
    if a.ndim != 1 or a.size < 2 or not _is_float(a):
        return False
    v = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(v)) or not np.all(v > 0):
        return False
    return math.log10(float(v.max()) / float(v.min())) >= 1.0


def _from_graph(consumers: Sequence[tuple[str, int]]) -> Role | None:
    for op, index in consumers:
        role = _ONNX_INPUTS.get((op, index))
        if role is None and index > 0:
            role = _ONNX_INPUTS.get((op, None))
        if role is not None:
            return role
    return None


def _recurrent(tensors: Mapping[str, np.ndarray], siblings: Mapping[str, str]
               ) -> dict[str, Role]:
    """The roles of a module's recurrent-layer parameters (``nn.LSTM``/``GRU``/``RNN``).

    Only in a module that has both ``weight_ih_l0`` and ``weight_hh_l0``, and for each layer
    and direction only when its keys fit together: ``weight_ih`` and ``weight_hh`` 2-D with
    as many rows (gates x hidden), the biases 1-D of that length, a projection
    ``weight_hr`` 2-D with as many rows as ``weight_hh`` has columns."""
    if not {"weight_ih_l0", "weight_hh_l0"} <= set(siblings):
        return {}
    layers: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for leaf, name in siblings.items():
        m = _RNN_KEY.fullmatch(leaf)
        if m:
            layers[(m.group(2), m.group(3) or "")][m.group(1)] = name
    found: dict[str, Role] = {}
    for keys in layers.values():
        if "weight_ih" not in keys or "weight_hh" not in keys:
            continue
        shape = {kind: np.shape(tensors[name]) for kind, name in keys.items()}
        ih, hh = shape["weight_ih"], shape["weight_hh"]
        if len(ih) != 2 or len(hh) != 2 or ih[0] != hh[0]:
            continue
        fits = {"weight_ih": True, "weight_hh": True, "bias_ih": shape.get("bias_ih") == ih[:1],
                "bias_hh": shape.get("bias_hh") == ih[:1],
                "weight_hr": len(shape.get("weight_hr", ())) == 2
                and shape["weight_hr"][0] == hh[1]}
        for kind, name in keys.items():
            if fits[kind] and _is_float(np.asarray(tensors[name])):
                found[name] = _RNN_ROLES[kind]
    return found


def derive_roles(tensors: Mapping[str, np.ndarray],
                 consumers: Mapping[str, Sequence[tuple[str, int]]] | None = None
                 ) -> dict[str, Role]:
    """The role of every tensor (see the module docstring for the order of the evidence).

    ``consumers`` maps a tensor name to the (op_type, input index) of each graph node that
    reads it (ONNX); without it, the state-dict structure and the values decide.
    """
    roles: dict[str, Role] = {}
    modules: dict[str, dict[str, str]] = defaultdict(dict)
    for name in tensors:
        prefix, leaf = _split(name)
        modules[prefix][leaf] = name
    recurrent = {n: r for siblings in modules.values() for n, r in _recurrent(
        tensors, siblings).items()}
    for name, value in tensors.items():
        a = np.asarray(value)
        if consumers and name in consumers:
            role = _from_graph(consumers[name])
            if role is not None:
                roles[name] = role
                continue
        if not _is_float(a):
            roles[name] = Role.COUNTER if a.size == 1 else Role.INTEGER
            continue
        prefix, leaf = _split(name)
        siblings = modules[prefix]
        if name in recurrent:
            roles[name] = recurrent[name]
        elif leaf in _STAT_LEAVES:
            roles[name] = _STAT_LEAVES[leaf]
        elif "running_var" in siblings and "running_mean" in siblings and leaf in (
                "weight", "bias"):
            roles[name] = Role.NORM_SCALE if leaf == "weight" else Role.NORM_SHIFT
        else:
            roles[name] = _BY_LAYER[classify(name, tuple(a.shape))]
    _one_d_by_structure(tensors, modules, roles, consumers or {})
    return roles


def _one_d_by_structure(tensors: Mapping[str, np.ndarray], modules: Mapping[str, dict[str, str]],
                        roles: dict[str, Role],
                        consumers: Mapping[str, Sequence[tuple[str, int]]]) -> None:
    """1-D float tensors the graph and the statistics keys left undecided: BatchNorm inputs by
    their values, biases and norm parameters by their module."""
    for siblings in modules.values():
        one_d = [n for n in siblings.values() if roles[n] == Role.ONE_D and n not in consumers]
        if not one_d:
            continue
        weights = [n for n in siblings.values() if np.ndim(tensors[n]) >= 2]
        counters = [n for n in siblings.values() if roles[n] == Role.COUNTER]
        for n in one_d:
            group = [m for m in one_d if np.shape(tensors[m]) == np.shape(tensors[n])]
            # scale, shift, mean and variance of one BatchNorm: no weight beside them, and a
            # variance (positive: spread over a decade, or any positive beside a counter)
            if len(group) < 3 or weights or roles[n] != Role.ONE_D:
                continue
            positive = [m for m in group if np.all(np.asarray(tensors[m], np.float64) > 0)]
            spread = [m for m in positive if variance_like(tensors[m])]
            if spread or (positive and counters):
                for m in group:
                    roles[m] = Role.BN_VAR if m in (spread or positive[-1:]) else Role.BN_PARAM
        for n in one_d:
            if roles[n] != Role.ONE_D:
                continue
            size = np.shape(tensors[n])[0]
            if any(np.shape(tensors[w])[0] == size for w in weights):
                roles[n] = Role.BIAS
            elif not weights and _split(n)[1] in ("weight", "bias") and (
                    {"weight", "bias"} <= set(siblings)):
                roles[n] = Role.NORM_SCALE if _split(n)[1] == "weight" else Role.NORM_SHIFT


def role_counts(roles: Mapping[str, Role], tensors: Mapping[str, np.ndarray]
                ) -> dict[str, tuple[int, int]]:
    """label -> (tensors, elements), for the role table of a model."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for name, role in roles.items():
        counts[role.label][0] += 1
        counts[role.label][1] += int(np.size(tensors[name]))
    return {k: (v[0], v[1]) for k, v in sorted(counts.items())}
