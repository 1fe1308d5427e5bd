"""Synthetic calibration inputs: importance maps when the user has no data.

``nntm-calibrate --synthetic N`` (docs/calibration.md, "When the user has no data") draws
``N`` inputs from the model's own description instead of reading an inputs file:

* a float input: independent values, standard normal (the statistics of a normalised
  input) or uniform in ``value_range`` (for example ``(0, 255)`` for raw 8-bit pixels);
* an integer input (token ids): uniform over ``[0, rows)``, where ``rows`` is the smallest
  first dimension of the tables the input indexes (ONNX: the initializers of the
  ``Gather`` nodes that read the input directly), or ``value_range`` if given;
* a bool input: fair coin flips.

The shapes are the graph's declared per-sample dims (ONNX) or ``shape`` (``--input-shape``);
a free dim that ``shape`` does not fill is an error naming the input.  Nothing here looks at
a tensor name.  Seeded: the same arguments give the same inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import ModelIOError

DEFAULT_SEED = 12345
"""Seed of the inputs (the probes have their own, ``--seed``)."""


def parse_shape(text: str) -> tuple[str | None, tuple[int, ...]]:
    """``"3,224,224"`` or ``"name=3,224,224"`` -> (name or None, per-sample dims)."""
    name, sep, dims = text.rpartition("=")
    try:
        shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
    except ValueError as exc:
        raise ModelIOError(f"--input-shape '{text}': use D1,D2,... or NAME=D1,D2,...") from exc
    if not shape or any(d < 1 for d in shape):
        raise ModelIOError(f"--input-shape '{text}': every dim must be at least 1")
    return (name if sep else None), shape


def parse_range(text: str) -> tuple[float, float]:
    """``"0,255"`` -> (0.0, 255.0), low < high."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise ModelIOError(f"--input-range '{text}': use LOW,HIGH") from exc
    if not np.isfinite(low) or not np.isfinite(high) or not low < high:
        raise ModelIOError(f"--input-range '{text}': need finite LOW < HIGH")
    return low, high


def draw(shape: Sequence[int], dtype: Any, rng: np.random.Generator,
         value_range: tuple[float, float] | None = None, rows: int | None = None) -> np.ndarray:
    """One synthetic array of ``shape`` (samples first) and numpy ``dtype``."""
    kind = np.dtype(dtype).kind
    if kind == "b":
        return rng.integers(0, 2, size=tuple(shape)).astype(np.bool_)
    if kind in "iu":
        if value_range is not None:
            low, high = int(np.ceil(value_range[0])), int(np.floor(value_range[1])) + 1
        elif rows is not None:
            low, high = 0, int(rows)
        else:
            raise ModelIOError("an integer input that indexes no table needs --input-range")
        return rng.integers(low, high, size=tuple(shape)).astype(dtype)
    if value_range is None:
        values = rng.standard_normal(tuple(shape))
    else:
        values = rng.uniform(value_range[0], value_range[1], size=tuple(shape))
    return values.astype(dtype)


def _table_rows(model: Any) -> dict[str, int]:
    """Graph input -> the smallest first dim of the initializer tables it indexes."""
    graph = model.graph
    dims = {t.name: tuple(t.dims) for t in graph.initializer}
    rows: dict[str, int] = {}
    for node in graph.node:
        if node.op_type == "Gather" and len(node.input) >= 2 and node.input[0] in dims:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            shape = dims[node.input[0]]
            if shape and axis == 0:
                index = node.input[1]
                rows[index] = min(rows.get(index, shape[0]), int(shape[0]))
    return rows


def onnx_inputs(model: Any, samples: int, *, seed: int = DEFAULT_SEED,
                shapes: Mapping[str | None, Sequence[int]] | None = None,
                value_range: tuple[float, float] | None = None) -> dict[str, np.ndarray]:
    """``samples`` synthetic inputs for every input of an ONNX graph (path, bytes or proto).

    ``shapes``: per-sample dims by input name (key ``None``: the only input, or every
    input); they fill the graph's free dims and must agree with its fixed ones.
    """
    from .calibrate_onnx import _dims_text, graph_inputs, load_model

    if samples < 1:
        raise ModelIOError(f"--synthetic needs at least 1 sample, not {samples}")
    proto = load_model(model)
    specs = graph_inputs(proto)
    shapes = dict(shapes or {})
    unknown = [n for n in shapes if n is not None and n not in {s.name for s in specs}]
    if unknown:
        raise ModelIOError(f"--input-shape: {unknown[0]!r} is not an input of the graph (its "
                           f"inputs: {', '.join(s.name for s in specs)})")
    rows = _table_rows(proto)
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        given = shapes.get(spec.name, shapes.get(None))
        declared = spec.dims[1:] if spec.dims is not None else None
        if given is not None:
            if declared is not None:
                if len(given) != len(declared) or any(
                        d is not None and d != g for d, g in zip(declared, given, strict=True)):
                    raise ModelIOError(
                        f"--input-shape {','.join(map(str, given))} does not fit input "
                        f"{spec.name!r}: the graph declares {_dims_text(spec.dims or ())}")
            dims = tuple(int(g) for g in given)
        elif declared is None or any(d is None for d in declared):
            raise ModelIOError(
                f"input {spec.name!r} has free dims {_dims_text(spec.dims or ())}: give its "
                f"per-sample shape with --input-shape {spec.name}=D1,D2,...")
        else:
            dims = tuple(int(d) for d in declared)  # type: ignore[arg-type]
        out[spec.name] = draw((samples, *dims), spec.dtype, rng, value_range,
                              rows.get(spec.name))
    return out


def torch_inputs(shape: Sequence[int], samples: int, *, seed: int = DEFAULT_SEED,
                 value_range: tuple[float, float] | None = None) -> Any:
    """A float32 torch tensor ``(samples, *shape)`` of synthetic values (``--torch``)."""
    from .calibrate import require_torch

    torch = require_torch()
    if samples < 1:
        raise ModelIOError(f"--synthetic needs at least 1 sample, not {samples}")
    rng = np.random.default_rng(seed)
    return torch.from_numpy(draw((samples, *shape), np.float32, rng, value_range))
