"""Importance maps of an ONNX model from the user's own inputs (docs/calibration.md).

    maps = nntm.calibrate_onnx.calibrate_onnx("model.onnx", {"input": x})   # x: (samples, ...)
    nntm.write_model("imp.safetensors", maps)          # for EncoderApp --ImportanceFile

The maps are keyed by the tensor names :mod:`nntm.onnxio` gives the graph's tensors (a
main-graph initializer keeps its ONNX name), so they fit ``EncoderApp -i model.onnx``.
Mapped layers: every main-graph ``Conv`` (1-D or 2-D), ``Gemm`` and ``MatMul`` whose weight
(input 1) is an initializer or a ``Constant``.

* ``kind="activation"`` runs in onnxruntime alone: each mapped node's input is made a graph
  output, and the map is its mean square per input channel (a vector for a weight laid out
  ``(out, in, ...)``, a full map otherwise).
* ``kind="sensitivity"`` (default) needs the output sensitivity, i.e. gradients, which
  onnxruntime does not give.  The graph is converted to torch with ``onnx2torch`` (an LSTM
  converter is added here; ``torchvision``, which onnx2torch imports for two detection ops,
  is stood in for when it cannot be imported), the conversion is checked against
  onnxruntime on the first batch (the same scored output within 1e-3 of its scale, else an
  error), and :func:`nntm.calibrate` measures the maps on the converted module: the same
  estimator, the same unit as for a PyTorch model.  The converted layers are matched to the
  ONNX tensors by their values, not by names.  docs/calibration.md compares these maps with
  the PyTorch path's on a model that exists in both forms.

Inputs: one array per graph input (every non-initializer input), samples on the first axis,
the same number of samples in each.  A graph whose batch axis is fixed (``1``) is fed one
sample at a time.  Names or shapes that do not match the graph, and NaN/Inf in an output,
are :class:`~nntm.errors.NntmError` s naming the input or output.
"""

from __future__ import annotations

import hashlib
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ModelIOError, NntmError

__all__ = [
    "ONNX_METRICS",
    "GraphInput",
    "OnnxLayer",
    "batches_for",
    "calibrate_onnx",
    "check_inputs",
    "graph_inputs",
    "mapped_layers",
    "read_inputs",
]

ONNX_METRICS: tuple[str, ...] = ("mse", "kl")
"""Output metrics of :func:`calibrate_onnx` (as :func:`nntm.calibrate`)."""

DEFAULT_BATCH = 8
"""Samples per run when the graph's batch axis is free."""

CONVERSION_TOLERANCE = 1e-3
"""Largest error of the torch conversion, relative to the output's largest magnitude."""

ORT_HINT = "pip install onnxruntime (or pip install 'nntm[onnx]')"
O2T_HINT = "pip install onnx2torch torch (sensitivity maps of an ONNX model need both)"

_ELEM_DTYPES = {1: np.float32, 10: np.float16, 11: np.float64, 6: np.int32, 7: np.int64,
                9: np.bool_, 2: np.uint8, 3: np.int8}


@dataclass(frozen=True)
class GraphInput:
    """A graph input: its name, declared dims (``None``: free) and numpy dtype."""

    name: str
    dims: tuple[int | None, ...] | None
    dtype: Any


@dataclass(frozen=True)
class OnnxLayer:
    """A mapped node: its op, the weight's tensor name and layout."""

    node: str
    op: str
    weight: str
    data: str            # the node's data input (input 0)
    shape: tuple[int, ...]
    in_axis: int         # axis of the weight that runs over the input channels
    groups: int = 1
    trans_a: bool = False


def _onnx() -> Any:
    from .onnxio import import_onnx

    return import_onnx("ONNX calibration")


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise NntmError(f"ONNX calibration needs onnxruntime, which is not installed: "
                        f"{ORT_HINT}") from exc
    return onnxruntime


def load_model(model: Any) -> Any:
    """A ``ModelProto`` from a path, the bytes of a file, or a ``ModelProto``."""
    onnx = _onnx()
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, bytes | bytearray | memoryview):
        proto = onnx.ModelProto()
        try:
            proto.ParseFromString(bytes(model))
        except Exception as exc:
            raise ModelIOError(f"not an ONNX model: {exc}") from exc
        return proto
    try:
        return onnx.load(str(model))
    except Exception as exc:
        raise ModelIOError(f"{model}: not a readable ONNX model ({type(exc).__name__}: "
                           f"{exc})") from exc


def graph_inputs(model: Any) -> list[GraphInput]:
    """The graph's inputs that are not initializers, in graph order."""
    graph = load_model(model).graph
    initializers = {t.name for t in graph.initializer}
    found = []
    for value in graph.input:
        if value.name in initializers:
            continue
        tensor_type = value.type.tensor_type
        dims: tuple[int | None, ...] | None = None
        if tensor_type.HasField("shape"):
            dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                         for d in tensor_type.shape.dim)
        dtype = _ELEM_DTYPES.get(tensor_type.elem_type, np.float32)
        found.append(GraphInput(value.name, dims, dtype))
    return found


def check_inputs(model: Any, inputs: Mapping[str, np.ndarray]) -> int:
    """The number of samples of ``inputs``, after checking them against the graph's inputs:
    every graph input given, no other name, the samples on the first axis of each, the
    declared per-sample dims kept.  Raises :class:`ModelIOError` naming the input."""
    expected = graph_inputs(model)
    names = [g.name for g in expected]
    unknown = [name for name in inputs if name not in names]
    if unknown:
        raise ModelIOError(f"input {unknown[0]!r} is not an input of the graph (its inputs: "
                           f"{', '.join(names) or 'none'})")
    missing = [name for name in names if name not in inputs]
    if missing:
        raise ModelIOError(f"the graph needs input {missing[0]!r}, which the inputs lack")
    samples = None
    for spec in expected:
        array = np.asarray(inputs[spec.name])
        if array.ndim < 1:
            raise ModelIOError(f"input {spec.name!r} is a scalar: every input needs the "
                               "samples on its first axis")
        if spec.dims is not None:
            if array.ndim != len(spec.dims):
                raise ModelIOError(
                    f"input {spec.name!r} has shape {array.shape} ({array.ndim} axes), the "
                    f"graph's has {len(spec.dims)} axes {_dims_text(spec.dims)}")
            for axis, (got, want) in enumerate(zip(array.shape[1:], spec.dims[1:],
                                                   strict=True), start=1):
                if want is not None and got != want:
                    raise ModelIOError(
                        f"input {spec.name!r} has {got} on axis {axis} (shape {array.shape}), "
                        f"the graph needs {want} {_dims_text(spec.dims)}")
        if array.dtype.kind not in "fiub":
            raise ModelIOError(f"input {spec.name!r} has dtype {array.dtype}, not a number")
        if samples is None:
            samples = int(array.shape[0])
        elif int(array.shape[0]) != samples:
            raise ModelIOError(
                f"input {spec.name!r} has {array.shape[0]} samples, the first input {samples}: "
                "every input needs the same number of samples on its first axis")
    if not samples:
        raise ModelIOError("the inputs hold no sample")
    return samples


def _dims_text(dims: Sequence[int | None]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def read_inputs(path: str) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` inputs file, by name."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: np.asarray(data[name]) for name in data.files}
    except Exception as exc:
        raise ModelIOError(f"--inputs '{path}': not a readable .npz file of arrays "
                           f"({type(exc).__name__}: {exc})") from exc


def batches_for(model: Any, inputs: Mapping[str, np.ndarray], batch_size: int | None = None,
                samples: int | None = None) -> list[dict[str, np.ndarray]]:
    """The checked inputs cut into batches (one sample each when the batch axis is fixed)."""
    total = check_inputs(model, inputs)
    if samples is not None:
        total = min(total, int(samples))
    specs = graph_inputs(model)
    fixed = [s.dims[0] for s in specs if s.dims and s.dims[0] is not None]
    size = int(fixed[0]) if fixed else int(batch_size or DEFAULT_BATCH)
    if fixed and batch_size and batch_size != size:
        raise ModelIOError(f"the graph's batch axis is fixed to {size}: batch size {batch_size} "
                           "cannot be used")
    out = []
    for start in range(0, total - size + 1 if fixed else total, size):
        stop = min(start + size, total)
        out.append({s.name: np.ascontiguousarray(np.asarray(inputs[s.name])[start:stop]
                                                 .astype(s.dtype, copy=False)) for s in specs})
    if not out:
        raise ModelIOError(f"fewer samples ({total}) than the graph's fixed batch ({size})")
    return out


# --------------------------------------------------------------------------------------
# Mapped layers
# --------------------------------------------------------------------------------------


def _attribute(node: Any, name: str, default: Any) -> Any:
    onnx = _onnx()
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def _float_values(graph: Any) -> dict[str, np.ndarray]:
    """Main-graph float initializers and float ``Constant`` outputs, by name."""
    onnx = _onnx()
    values: dict[str, np.ndarray] = {}
    for tensor in graph.initializer:
        array = onnx.numpy_helper.to_array(tensor)
        if array.dtype.kind == "f":
            values[tensor.name] = array
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    array = onnx.numpy_helper.to_array(attr.t)
                    if array.dtype.kind == "f":
                        values[node.output[0]] = array
    return values


def mapped_layers(model: Any) -> list[OnnxLayer]:
    """The main graph's Conv (1-D/2-D), Gemm and MatMul nodes with a constant 2-D+ weight."""
    graph = load_model(model).graph
    values = _float_values(graph)
    layers = []
    for index, node in enumerate(graph.node):
        if len(node.input) < 2 or node.input[1] not in values:
            continue
        shape = tuple(values[node.input[1]].shape)
        label = node.name or f"{node.op_type}#{index}"
        if node.op_type == "Conv" and len(shape) in (3, 4):
            layers.append(OnnxLayer(label, "Conv", node.input[1], node.input[0], shape, 1,
                                    groups=int(_attribute(node, "group", 1))))
        elif node.op_type == "Gemm" and len(shape) == 2:
            trans_b = bool(_attribute(node, "transB", 0))
            layers.append(OnnxLayer(label, "Gemm", node.input[1], node.input[0], shape,
                                    1 if trans_b else 0,
                                    trans_a=bool(_attribute(node, "transA", 0))))
        elif node.op_type == "MatMul" and len(shape) == 2:
            layers.append(OnnxLayer(label, "MatMul", node.input[1], node.input[0], shape, 0))
    seen: set[str] = set()
    unique = []
    for layer in layers:  # a weight read by several nodes: its first reader
        if layer.weight not in seen:
            seen.add(layer.weight)
            unique.append(layer)
    return unique


# --------------------------------------------------------------------------------------
# onnxruntime: outputs, input energy
# --------------------------------------------------------------------------------------


def _session(model: Any, extra_outputs: Sequence[str] = (), threads: int = 2) -> Any:
    ort = _ort()
    onnx = _onnx()
    proto = onnx.ModelProto()
    proto.CopyFrom(load_model(model))
    present = {o.name for o in proto.graph.output}
    for name in extra_outputs:
        if name not in present:
            proto.graph.output.append(onnx.ValueInfoProto(name=name))
            present.add(name)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(proto.SerializeToString(), options,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelIOError(f"onnxruntime cannot load the model: {type(exc).__name__}: "
                           f"{exc}") from exc


def _run(session: Any, index: int, batch: Mapping[str, np.ndarray],
         names: Sequence[str]) -> list[np.ndarray]:
    try:
        outputs = session.run(list(names), dict(batch))
    except Exception as exc:
        shapes = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in batch.items())
        raise NntmError(f"onnxruntime failed on calibration batch {index} ({shapes}): "
                        f"{type(exc).__name__}: {exc}") from exc
    return [np.asarray(o) for o in outputs]


def _check_finite(name: str, value: np.ndarray, index: int) -> None:
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
        bad = int(value.size - np.count_nonzero(np.isfinite(value)))
        raise NntmError(f"output {name!r} is not finite on calibration batch {index}: "
                        f"{bad} of {value.size} values are NaN or Inf")


def scored_output(model: Any, output_name: str | None) -> str:
    """The graph output the maps stand for (default: the first float output)."""
    graph = load_model(model).graph
    names = [o.name for o in graph.output]
    if output_name is not None:
        if output_name not in names:
            raise NntmError(f"output {output_name!r} is not an output of the graph (its "
                            f"outputs: {', '.join(names)})")
        return output_name
    for out in graph.output:
        if out.type.tensor_type.elem_type in (1, 10, 11, 0):
            return out.name
    raise NntmError("the graph has no float output to score")


def _channel_energy(layer: OnnxLayer, x: np.ndarray) -> tuple[np.ndarray, int]:
    x = x.astype(np.float64)
    if layer.op == "Conv":
        axes = (0, *range(2, x.ndim))
        return np.square(x).sum(axis=axes), x.size // x.shape[1]
    if layer.op == "Gemm" and layer.trans_a:
        x = x.T
    rows = x.reshape(-1, x.shape[-1])
    return np.square(rows).sum(axis=0), rows.shape[0]


def _activation_map(layer: OnnxLayer, energy: np.ndarray) -> np.ndarray:
    """The input-channel energy in the weight's layout: a vector for ``(out, in, ...)``."""
    if layer.op == "Conv" or layer.in_axis == 1:
        return energy
    view = [1] * len(layer.shape)
    view[layer.in_axis] = layer.shape[layer.in_axis]
    return np.ascontiguousarray(
        np.broadcast_to(energy.astype(np.float32).reshape(view), layer.shape))


def activation_maps(model: Any, batches: Sequence[Mapping[str, np.ndarray]],
                    output_name: str | None = None, threads: int = 2) -> dict[str, np.ndarray]:
    """Mean squared input per input channel of every mapped layer, through onnxruntime."""
    layers = mapped_layers(model)
    if not layers:
        raise NntmError("the graph has no Conv, Gemm or MatMul node with a constant weight")
    scored = scored_output(model, output_name)
    data = sorted({layer.data for layer in layers})
    session = _session(model, data, threads)
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for index, batch in enumerate(batches):
        values = dict(zip([scored, *data], _run(session, index, batch, [scored, *data]),
                          strict=True))
        _check_finite(scored, values[scored], index)
        for layer in layers:
            total, count = _channel_energy(layer, values[layer.data])
            sums[layer.weight] = sums.get(layer.weight, 0) + total
            counts[layer.weight] = counts.get(layer.weight, 0) + count
    if not sums:
        raise NntmError("no calibration batches")
    return {layer.weight: _activation_map(layer, sums[layer.weight] / max(counts[layer.weight], 1))
            for layer in layers}


# --------------------------------------------------------------------------------------
# Sensitivity: the graph converted to torch
# --------------------------------------------------------------------------------------


def _import_onnx2torch() -> Any:
    """onnx2torch, with a stand-in for torchvision when that cannot be imported (onnx2torch
    needs it for NonMaxSuppression and RoiAlign only, which raise here then).

    The stand-in is in ``sys.modules`` only while onnx2torch imports (its modules keep their
    own reference): left there, a module without a spec makes ``importlib.util.find_spec``
    raise for every later importer in the process, e.g. ``transformers`` (seen in a CE
    worker that calibrated an ONNX model and then loaded SmolLM2)."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise NntmError(f"sensitivity maps of an ONNX model need torch: {O2T_HINT}") from exc
    added: dict[str, types.ModuleType] = {}
    if "onnx2torch" not in sys.modules:
        try:
            import torchvision  # noqa: F401
        except Exception:  # missing, or broken beside a CPU torch wheel
            for key in [k for k in sys.modules if k.split(".")[0] == "torchvision"]:
                del sys.modules[key]
            stand_in = types.ModuleType("torchvision")
            ops = types.ModuleType("torchvision.ops")

            def unavailable(*_args: Any, **_kwargs: Any) -> Any:
                raise NntmError("this graph needs torchvision, which cannot be imported here")

            ops.nms = ops.roi_align = ops.batched_nms = unavailable  # type: ignore[attr-defined]
            stand_in.ops = ops  # type: ignore[attr-defined]
            added = {"torchvision": stand_in, "torchvision.ops": ops}
            sys.modules.update(added)
    try:
        import onnx2torch
    except ImportError as exc:
        raise NntmError(f"sensitivity maps of an ONNX model need onnx2torch: {O2T_HINT}") from exc
    finally:
        for name, mod in added.items():
            if sys.modules.get(name) is mod:
                del sys.modules[name]
    _register_lstm()
    return onnx2torch


_LSTM_DONE: list[bool] = []


def _register_lstm() -> None:
    """Add an ONNX LSTM converter to onnx2torch (it has none): a ``torch.nn.LSTM`` with the
    ONNX weights in torch's gate order (ONNX i, o, f, c; torch i, f, c, o)."""
    if _LSTM_DONE:
        return
    import torch
    from onnx2torch.node_converters.registry import add_converter
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult

    class OnnxLSTM(torch.nn.Module):
        def __init__(self, w: Any, r: Any, b: Any | None, layout: int) -> None:
            super().__init__()
            directions, four_h, width = w.shape
            hidden = four_h // 4
            self.hidden, self.directions, self.layout = hidden, directions, layout
            self.lstm = torch.nn.LSTM(width, hidden, bidirectional=directions == 2)
            order = torch.cat([torch.arange(k * hidden, (k + 1) * hidden) for k in (0, 2, 3, 1)])
            if b is None:
                b = torch.zeros(directions, 8 * hidden)
            with torch.no_grad():
                for d in range(directions):
                    suffix = "_reverse" if d else ""
                    getattr(self.lstm, f"weight_ih_l0{suffix}").copy_(w[d][order])
                    getattr(self.lstm, f"weight_hh_l0{suffix}").copy_(r[d][order])
                    getattr(self.lstm, f"bias_ih_l0{suffix}").copy_(b[d][:four_h][order])
                    getattr(self.lstm, f"bias_hh_l0{suffix}").copy_(b[d][four_h:][order])

        def forward(self, x: Any, h0: Any = None, c0: Any = None) -> Any:
            if self.layout:
                x = x.transpose(0, 1)
            state = None
            if h0 is not None or c0 is not None:
                zeros = torch.zeros(self.directions, x.shape[1], self.hidden, dtype=x.dtype)
                state = (zeros if h0 is None else h0, zeros if c0 is None else c0)
            y, (h, c) = self.lstm(x, state)
            y = y.reshape(y.shape[0], y.shape[1], self.directions, self.hidden).permute(0, 2, 1, 3)
            if self.layout:
                y, h, c = y.permute(2, 0, 1, 3), h.transpose(0, 1), c.transpose(0, 1)
            return y, h, c

    def convert(node: Any, graph: Any) -> Any:
        names = list(node.input_values) + [""] * (7 - len(node.input_values))
        attrs = node.attributes
        direction = attrs.get("direction", "forward")
        direction = direction.decode() if isinstance(direction, bytes) else direction
        if direction == "reverse" or names[4] or attrs.get("activations") or attrs.get("clip") \
                or attrs.get("input_forget", 0) or (len(names) > 7 and names[7]):
            raise NotImplementedError("LSTM: only forward/bidirectional, default activations, "
                                      "no sequence_lens, clip, input_forget or peepholes")

        def value(name: str) -> Any:
            return graph.initializers[name].to_torch() if name else None

        module = OnnxLSTM(value(names[1]), value(names[2]), value(names[3]),
                          int(attrs.get("layout", 0)))
        inputs = tuple(n for n in (names[0], names[5], names[6]) if n)
        if names[6] and not names[5]:
            raise NotImplementedError("LSTM: initial_c without initial_h")
        return OperationConverterResult(torch_module=module, onnx_mapping=OnnxMapping(
            inputs=inputs, outputs=node.output_values))

    for version in (7, 14):
        try:
            add_converter(operation_type="LSTM", version=version)(convert)
        except ValueError:  # already registered (a newer onnx2torch)
            pass
    _LSTM_DONE.append(True)


def _digest(array: Any) -> str:
    data = np.ascontiguousarray(np.asarray(array, dtype=np.float32))
    return hashlib.sha1(repr(data.shape).encode() + data.tobytes()).hexdigest()


def _torch_layers(module: Any, layers: Sequence[OnnxLayer],
                  values: Mapping[str, np.ndarray]) -> tuple[dict[str, str], dict[str, bool]]:
    """(converted module name -> ONNX weight name, ONNX weight name -> transposed), matched by
    the weights' values (a Linear's weight is the transpose of a Gemm/MatMul ``B``)."""
    from .calibrate import find_layers

    wanted: dict[str, tuple[str, bool]] = {}
    for layer in layers:
        w = values[layer.weight]
        wanted.setdefault(_digest(w), (layer.weight, False))
        if w.ndim == 2:
            wanted.setdefault(_digest(w.T), (layer.weight, True))
    state = module.state_dict()
    names: dict[str, str] = {}
    transposed: dict[str, bool] = {}
    for sub, weight in find_layers(module).items():
        hit = wanted.get(_digest(state[weight].detach().numpy()))
        if hit is not None and hit[0] not in transposed:
            names[sub] = hit[0]
            transposed[hit[0]] = hit[1]
    return names, transposed


def _convert(model: Any) -> Any:
    onnx2torch = _import_onnx2torch()
    try:
        return onnx2torch.convert(load_model(model)).eval()
    except Exception as exc:
        raise NntmError(f"the graph cannot be converted to torch for sensitivity maps "
                        f"({type(exc).__name__}: {exc}); activation maps (--kind activation) "
                        "need onnxruntime only") from exc


def _check_conversion(module: Any, model: Any, batch: Mapping[str, np.ndarray],
                      order: Sequence[str], scored: str, index: int, threads: int) -> None:
    import torch

    session = _session(model, (), threads)
    (reference,) = _run(session, 0, batch, [scored])
    with torch.inference_mode():
        out = module(*[torch.from_numpy(batch[name]) for name in order])
    got = out[index] if isinstance(out, tuple | list) else out
    got = got.detach().to(torch.float64).numpy()
    if got.shape != reference.shape:
        raise NntmError(f"the torch conversion gives output {scored!r} shape {got.shape}, "
                        f"onnxruntime {reference.shape}: no sensitivity maps")
    scale = max(float(np.max(np.abs(reference))), 1e-30)
    error = float(np.max(np.abs(got - reference))) / scale
    if not error <= CONVERSION_TOLERANCE:
        raise NntmError(f"the torch conversion differs from onnxruntime on output {scored!r} "
                        f"by {error:.2e} of its scale (tolerance {CONVERSION_TOLERANCE}): "
                        "no sensitivity maps")


def sensitivity_maps(model: Any, batches: Sequence[Mapping[str, np.ndarray]], output: Any,
                     output_name: str | None, threads: int = 2,
                     stats: dict[str, dict[str, float]] | None = None,
                     **options: Any) -> dict[str, np.ndarray]:
    """Output-sensitivity maps through the converted graph (:func:`nntm.calibrate`)."""
    import torch

    from .calibrate import calibrate

    proto = load_model(model)
    layers = mapped_layers(proto)
    if not layers:
        raise NntmError("the graph has no Conv, Gemm or MatMul node with a constant weight")
    scored = scored_output(proto, output_name)
    names = [o.name for o in proto.graph.output]
    position = names.index(scored)
    order = [g.name for g in graph_inputs(proto)]
    session = _session(proto, (), threads)
    for index, batch in enumerate(batches):  # NaN/Inf named by onnxruntime's output
        _check_finite(scored, _run(session, index, batch, [scored])[0], index)
    module = _convert(proto)
    _check_conversion(module, proto, batches[0], order, scored, position, threads)
    torch_names, transposed = _torch_layers(module, layers, _float_values(proto.graph))
    if not torch_names:
        raise NntmError("no layer of the converted graph matches a Conv/Gemm/MatMul weight")
    from .calibrate import find_layers

    weight_of = find_layers(module)
    chosen = {sub: weight_of[sub] for sub in torch_names}
    torch_batches = [tuple(torch.from_numpy(b[name]) for name in order) for b in batches]

    def select(out: Any) -> Any:
        return out[position] if isinstance(out, tuple | list) else out

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        maps = calibrate(module, torch_batches, kind="sensitivity", output=output,
                         select=select, layers=chosen, stats=stats, **options)
    finally:
        torch.set_num_threads(previous)
    result: dict[str, np.ndarray] = {}
    for sub, onnx_name in torch_names.items():
        value = maps[weight_of[sub]]
        if transposed[onnx_name]:
            value = np.ascontiguousarray(value.T)
        result[onnx_name] = value
    if stats is not None:
        for sub, onnx_name in torch_names.items():
            if weight_of[sub] in stats:
                stats[onnx_name] = stats.pop(weight_of[sub])
    return result


# --------------------------------------------------------------------------------------
# The public entry point
# --------------------------------------------------------------------------------------


def _onnxio_names(proto: Any) -> list[str]:
    """The tensor names EncoderApp gives the graph's float tensors, in its order."""
    from .onnxio import split_model

    onnx = _onnx()
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    return list(split_model(copy)[0])


def calibrate_onnx(
    model: Any,
    inputs: Mapping[str, np.ndarray],
    kind: str = "sensitivity",
    output: str | Callable[[Any], Any] = "mse",
    output_name: str | None = None,
    probes: int = 4,
    seed: int = 0,
    form: str = "factored",
    *,
    batch_size: int | None = None,
    samples: int | None = None,
    threads: int = 2,
    stats: dict[str, dict[str, float]] | None = None,
) -> dict[str, np.ndarray]:
    """Importance maps of an ONNX model's Conv/Gemm/MatMul weights, by EncoderApp's names.

    ``model``: a path, the file's bytes or a ``ModelProto``.  ``inputs``: one array per
    graph input, samples on the first axis (:func:`check_inputs`).  ``kind``:
    ``"activation"`` (onnxruntime only) or ``"sensitivity"`` (the converted graph,
    :func:`nntm.calibrate`'s estimator; ``output`` ``"mse"``/``"kl"`` or a callable,
    ``probes``, ``seed``, ``form`` as there).  ``output_name`` picks the scored graph
    output (default: the first float output).  ``samples`` uses only the first samples;
    ``batch_size`` samples per run (graphs with a free batch axis).
    """
    from .calibrate import IMPORTANCE_KINDS, SENSITIVITY_FORMS

    if kind not in IMPORTANCE_KINDS:
        raise NntmError(f"unknown importance kind {kind!r}: use {', '.join(IMPORTANCE_KINDS)}")
    if form not in SENSITIVITY_FORMS:
        raise NntmError(f"unknown sensitivity form {form!r}: use {', '.join(SENSITIVITY_FORMS)}")
    if isinstance(output, str) and output not in ONNX_METRICS:
        raise NntmError(f"unknown output metric {output!r}: use {', '.join(ONNX_METRICS)} "
                        "or a callable")
    proto = load_model(model)
    batches = batches_for(proto, inputs, batch_size, samples)
    if kind == "activation":
        maps = activation_maps(proto, batches, output_name, threads)
    else:
        maps = sensitivity_maps(proto, batches, output, output_name, threads, stats,
                                probes=probes, seed=seed, form=form)
    for name, value in maps.items():
        if not np.all(np.isfinite(value)):
            raise NntmError(f"the importance map of {name!r} is not finite")
    order = _onnxio_names(proto)
    rank = {name: i for i, name in enumerate(order)}
    return {name: maps[name] for name in sorted(maps, key=lambda n: rank.get(n, len(rank)))}
