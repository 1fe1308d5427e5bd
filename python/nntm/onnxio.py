"""ONNX models in and out: every float tensor of the graph, and the rest of the file.

:func:`read_onnx` takes every float tensor (float32, float16, bfloat16, float64) out of an
ONNX ``ModelProto`` and returns them with a *template*: the model serialized with those
tensors' data removed, which :func:`write_onnx` fills again.  The template travels in the
bitstream's container unit (docs/bitstream.md, clause 3.8), so DecoderApp rebuilds the file
from the stream alone.

Tensors taken (the *slots*), in this walk order, in the main graph and, recursively, in every
subgraph (``If`` then/else, ``Loop``/``Scan`` bodies: any GRAPH or GRAPHS attribute) and in
the model's local functions:

1. ``graph.initializer``: each float TensorProto;
2. ``graph.sparse_initializer``: each float sparse tensor's ``values`` (its ``indices`` and
   ``dims`` stay in the template);
3. the nodes, attribute by attribute: ``Constant``'s ``value``, ``sparse_value`` (values),
   ``value_float`` (a 0-d float32 tensor) and ``value_floats`` (1-D float32); any other
   node's TENSOR / TENSORS / SPARSE_TENSOR(S) attributes of a float type; GRAPH / GRAPHS
   attributes are walked.

Names: a tensor of the main graph keeps its ONNX name (an initializer's name; a Constant
node's output name), so name-based cfg rules work as for a safetensors file; a tensor in a
subgraph is prefixed by the path to it, ``<node>/<attribute>/``, per level (``<node>`` is
the node's name, or ``<op_type>#<index in its graph>`` when it has none; GRAPHS and TENSORS
attributes add ``/<k>``), e.g. ``If_0/then_branch/w_then``; an attribute tensor of a node
other than Constant is ``<node>/<attribute>``; tensors of a local function are prefixed by
``<domain>:<function name>/``.  A name met twice gets ``#2``, ``#3``, ... in walk order.

Everything else stays in the template byte for byte: non-float tensors (int64 shapes of
``Reshape``, int32 indices, strings, booleans), scalar attributes, names, the opset imports,
metadata.  Float tensors are written back into the field they came from (``raw_data`` or the
typed field ``float_data`` / ``double_data`` / ``int32_data``): a file that ``onnx.save``
wrote, decoded with every tensor exact, is the original byte for byte.  External data is read
into memory (``onnx.load``) and written back inline.

:func:`graph_consumers` lists, for each tensor, the (op_type, input index) of the nodes that
read it, which :mod:`nntm.roles` turns into roles (BatchNorm statistics, structural inputs
carried exactly, ...).

The ``onnx`` package is optional (``pip install nntm[onnx]``); without it these functions
raise ModelIOError saying so.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import dtypes
from .errors import ModelIOError

__all__ = ["read_onnx", "write_onnx", "model_bytes", "strip_model", "template_names",
           "import_onnx", "graph_consumers"]

# TensorProto.DataType codes of the float types the codec quantizes
_FLOAT, _FLOAT16, _DOUBLE, _BFLOAT16 = 1, 10, 11, 16
_NP_NAME = {_FLOAT: "float32", _FLOAT16: "float16", _DOUBLE: "float64", _BFLOAT16: "bfloat16"}
_ONNX_CODE = {v: k for k, v in _NP_NAME.items()}
# AttributeProto.AttributeType codes
_A_FLOAT, _A_TENSOR, _A_GRAPH, _A_FLOATS, _A_TENSORS, _A_GRAPHS = 1, 4, 5, 6, 9, 10
_A_SPARSE_TENSOR, _A_SPARSE_TENSORS = 11, 12

# slot storage codes (onnx_container(), docs/bitstream.md clause 3.8)
RAW, TYPED, ATTR_FLOAT, ATTR_FLOATS = 0, 1, 2, 3

_TEMPLATE_MAGIC = b"NNTMONNX"


def import_onnx(what: str) -> Any:
    """The onnx module, or a ModelIOError saying how to install it."""
    try:
        import onnx  # noqa: PLC0415 - optional dependency
    except ImportError:
        raise ModelIOError(f"{what} needs the onnx package, which is not installed: "
                           "pip install 'nntm[onnx]' (or pip install onnx)") from None
    return onnx


@dataclass
class _Slot:
    """One float tensor of the model: where it is and how it is stored."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...] | None       # None: value_floats, whose length is its data's
    get: Callable[[], np.ndarray]       # the tensor, from the model as it stands
    put: Callable[[np.ndarray, int], None]  # write a tensor into the model (storage code)
    clear: Callable[[], None]           # remove its data (the template)
    storage: Callable[[], int]          # RAW, TYPED, ATTR_FLOAT or ATTR_FLOATS


def _np_dtype(code: int) -> np.dtype:
    return dtypes.by_name(_NP_NAME[code])


def _typed_count(t: Any) -> int:
    return len(t.float_data) + len(t.double_data) + len(t.int32_data)


def _tensor_slot(name: str, t: Any) -> _Slot | None:
    """The slot of a float TensorProto (None for other data types)."""
    if t.data_type not in _NP_NAME:
        return None
    dtype = _np_dtype(t.data_type)
    shape = tuple(int(d) for d in t.dims)

    def get() -> np.ndarray:
        if t.raw_data:
            arr = np.frombuffer(t.raw_data, dtype=dtype.newbyteorder("<"))
        elif t.data_type == _FLOAT:
            arr = np.array(t.float_data, dtype=np.float32)
        elif t.data_type == _DOUBLE:
            arr = np.array(t.double_data, dtype=np.float64)
        else:  # float16 / bfloat16: the bit patterns in int32_data
            arr = np.array(t.int32_data, dtype=np.uint16).view(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        if arr.size != count:
            raise ModelIOError(f"tensor '{name}': {arr.size} values for shape {shape}")
        return arr.astype(dtype).reshape(shape).copy(order="C")

    def storage() -> int:
        return RAW if t.raw_data or not _typed_count(t) else TYPED

    def clear() -> None:
        for f in ("raw_data", "float_data", "double_data", "int32_data"):
            t.ClearField(f)

    def put(arr: np.ndarray, kind: int) -> None:
        clear()
        a = np.asarray(arr, dtype=dtype).reshape(shape).copy(order="C")
        if kind == RAW:
            if a.size:
                t.raw_data = a.astype(dtype.newbyteorder("<")).tobytes()
        elif t.data_type == _FLOAT:
            t.float_data.extend(a.reshape(-1).tolist())
        elif t.data_type == _DOUBLE:
            t.double_data.extend(a.reshape(-1).tolist())
        else:
            t.int32_data.extend(a.reshape(-1).view(np.uint16).tolist())

    return _Slot(name, dtype, shape, get, put, clear, storage)


def _attr_float_slot(name: str, attr: Any, many: bool) -> _Slot:
    """value_float (a 0-d float32 tensor) or value_floats (1-D) of a Constant node."""
    def get() -> np.ndarray:
        return np.array(attr.floats if many else attr.f, dtype=np.float32)

    def put(arr: np.ndarray, kind: int) -> None:
        a = np.asarray(arr, dtype=np.float32).reshape(-1)
        if many:
            attr.ClearField("floats")
            attr.floats.extend(a.tolist())
        else:
            attr.f = float(a[0])

    def clear() -> None:
        attr.ClearField("floats" if many else "f")

    return _Slot(name, np.dtype(np.float32), None if many else (), get, put, clear,
                 lambda: ATTR_FLOATS if many else ATTR_FLOAT)


def _node_label(node: Any, index: int) -> str:
    return node.name if node.name else f"{node.op_type}#{index}"


def _walk_graph(graph: Any, prefix: str) -> Iterator[_Slot]:
    for t in graph.initializer:
        slot = _tensor_slot(prefix + t.name, t)
        if slot is not None:
            yield slot
    for sp in graph.sparse_initializer:
        slot = _tensor_slot(prefix + sp.values.name, sp.values)
        if slot is not None:
            yield slot
    yield from _walk_nodes(graph.node, prefix)


def _walk_nodes(nodes: Any, prefix: str) -> Iterator[_Slot]:
    for index, node in enumerate(nodes):
        label = prefix + _node_label(node, index)
        constant = node.op_type == "Constant" and node.domain in ("", "ai.onnx")
        out = prefix + node.output[0] if constant and node.output else label
        for attr in node.attribute:
            yield from _walk_attr(attr, label, out if constant else None)


def _walk_attr(attr: Any, label: str, constant_name: str | None) -> Iterator[_Slot]:
    base = f"{label}/{attr.name}"
    if attr.type == _A_TENSOR:
        slot = _tensor_slot(constant_name or base, attr.t)
        if slot is not None:
            yield slot
    elif attr.type == _A_SPARSE_TENSOR:
        slot = _tensor_slot(constant_name or base, attr.sparse_tensor.values)
        if slot is not None:
            yield slot
    elif attr.type == _A_TENSORS:
        for k, t in enumerate(attr.tensors):
            slot = _tensor_slot(f"{base}/{k}", t)
            if slot is not None:
                yield slot
    elif attr.type == _A_SPARSE_TENSORS:
        for k, sp in enumerate(attr.sparse_tensors):
            slot = _tensor_slot(f"{base}/{k}", sp.values)
            if slot is not None:
                yield slot
    elif constant_name is not None and attr.type == _A_FLOAT and attr.name == "value_float":
        yield _attr_float_slot(constant_name, attr, False)
    elif constant_name is not None and attr.type == _A_FLOATS and attr.name == "value_floats":
        yield _attr_float_slot(constant_name, attr, True)
    elif attr.type == _A_GRAPH:
        yield from _walk_graph(attr.g, base + "/")
    elif attr.type == _A_GRAPHS:
        for k, g in enumerate(attr.graphs):
            yield from _walk_graph(g, f"{base}/{k}/")


def _slots(model: Any) -> list[_Slot]:
    """Every slot of the model in walk order, names made unique."""
    out = list(_walk_graph(model.graph, ""))
    for func in model.functions:
        out.extend(_walk_nodes(func.node, f"{func.domain}:{func.name}/"))
    seen: dict[str, int] = {}
    names: set[str] = {s.name for s in out}
    for s in out:
        if s.name in seen:
            k = seen[s.name] + 1
            while f"{s.name}#{k}" in names:
                k += 1
            seen[s.name] = k
            s.name = f"{s.name}#{k}"
            names.add(s.name)
        else:
            seen[s.name] = 1
    return out


# ---------------------------------------------------------------- consumers


def graph_consumers(template: bytes) -> dict[str, list[tuple[str, int]]]:
    """For every slot of a template, the (op_type, input index) of each node that reads it,
    in its own graph or a nested one (an outer-scope name is resolved to the innermost slot
    of that name): what nntm.roles needs to give each tensor its role from the graph
    (BatchNorm statistics, structural inputs such as Resize scales, ...)."""
    onnx = import_onnx("an ONNX template")
    _storages, proto = _decode_template(template)
    model = onnx.ModelProto.FromString(proto)
    names = {s.name for s in _slots(model)}
    out: dict[str, list[tuple[str, int]]] = {}
    _consumers(model.graph, [""], names, out)
    return out


def _consumers(graph: Any, scopes: list[str], names: set[str],
               out: dict[str, list[tuple[str, int]]]) -> None:
    for index, node in enumerate(graph.node):
        for i, value in enumerate(node.input):
            found = next((p + value for p in reversed(scopes) if value and p + value in names),
                         None)
            if found is not None:
                out.setdefault(found, []).append((node.op_type, i))
        label = scopes[-1] + _node_label(node, index)
        for attr in node.attribute:
            if attr.type == _A_GRAPH:
                _consumers(attr.g, [*scopes, f"{label}/{attr.name}/"], names, out)
            elif attr.type == _A_GRAPHS:
                for k, g in enumerate(attr.graphs):
                    _consumers(g, [*scopes, f"{label}/{attr.name}/{k}/"], names, out)


# ---------------------------------------------------------------- the template

def _encode_template(storages: list[int], model_proto: bytes) -> bytes:
    """onnx_container(): magic, slot count, a storage byte per slot, the ModelProto."""
    head = _TEMPLATE_MAGIC + len(storages).to_bytes(4, "big") + bytes(storages)
    return head + model_proto


def _decode_template(template: bytes) -> tuple[list[int], bytes]:
    n0 = len(_TEMPLATE_MAGIC)
    if len(template) < n0 + 4 or template[:n0] != _TEMPLATE_MAGIC:
        raise ModelIOError("the ONNX template is not one NNTM wrote (bad magic)")
    count = int.from_bytes(template[n0:n0 + 4], "big")
    if len(template) < n0 + 4 + count:
        raise ModelIOError(f"the ONNX template announces {count} slots but is shorter")
    storages = list(template[n0 + 4:n0 + 4 + count])
    if any(s > ATTR_FLOATS for s in storages):
        raise ModelIOError("the ONNX template holds an unknown slot storage code")
    return storages, template[n0 + 4 + count:]


def _load(onnx: Any, path: str) -> Any:
    if not os.path.exists(path):
        raise ModelIOError(f"model file '{path}' does not exist")
    try:
        return onnx.load(path)
    except Exception as exc:  # protobuf DecodeError, OSError, external data errors
        raise ModelIOError(f"cannot read ONNX file '{path}': {exc}") from None


def read_onnx(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], bytes]:
    """Every float tensor of an ONNX file (name -> array, in walk order) and the template
    that :func:`write_onnx` fills again."""
    name = os.fspath(path)
    onnx = import_onnx(f"reading ONNX file '{name}'")
    return split_model(_load(onnx, name), name)


def split_model(model: Any, what: str = "ONNX model") -> tuple[dict[str, np.ndarray], bytes]:
    """The tensors and the template of a ModelProto (the model is changed: its float
    tensors lose their data)."""
    slots = _slots(model)
    tensors: dict[str, np.ndarray] = {}
    storages = []
    for s in slots:
        try:
            tensors[s.name] = s.get()
        except ModelIOError as exc:
            raise ModelIOError(f"ONNX file '{what}', {exc}") from None
        storages.append(s.storage())
        s.clear()
    return tensors, _encode_template(storages, model.SerializeToString())


def template_names(template: bytes) -> list[str]:
    """The tensor names a template's slots take, in walk order."""
    onnx = import_onnx("an ONNX template")
    _storages, proto = _decode_template(template)
    return [s.name for s in _slots(onnx.ModelProto.FromString(proto))]


def model_bytes(tensors: Mapping[str, np.ndarray], template: bytes) -> bytes:
    """The ONNX file of a template filled with ``tensors`` (every slot's name must be
    there, with its shape)."""
    onnx = import_onnx("writing an ONNX file")
    storages, proto = _decode_template(template)
    try:
        model = onnx.ModelProto.FromString(proto)
    except Exception as exc:  # protobuf DecodeError
        raise ModelIOError(f"the ONNX template does not parse: {exc}") from None
    slots = _slots(model)
    if len(slots) != len(storages):
        raise ModelIOError(f"the ONNX template has {len(slots)} float tensors but records "
                           f"{len(storages)}")
    missing = [s.name for s in slots if s.name not in tensors]
    if missing:
        raise ModelIOError("the model lacks tensor(s) of the ONNX graph: "
                           + ", ".join(f"'{n}'" for n in missing[:8])
                           + (" ..." if len(missing) > 8 else ""))
    for s, kind in zip(slots, storages, strict=True):
        arr = np.asarray(tensors[s.name])
        if s.shape is not None and tuple(arr.shape) != s.shape:
            raise ModelIOError(f"tensor '{s.name}': shape {tuple(arr.shape)}, the graph has "
                               f"{s.shape}")
        if s.shape is None and arr.ndim != 1:
            raise ModelIOError(f"tensor '{s.name}' (value_floats): shape {tuple(arr.shape)} "
                               "is not 1-D")
        s.put(arr, kind)
    return model.SerializeToString()


def write_onnx(path: str | os.PathLike[str], tensors: Mapping[str, np.ndarray],
               template: bytes, make_parents: bool = False) -> None:
    """Write the ONNX file of a template filled with ``tensors`` (atomically)."""
    from .modelio import _atomic_write  # noqa: PLC0415 - modelio imports this module

    name = os.fspath(path)
    data = model_bytes(tensors, template)
    _atomic_write(name, lambda f: f.write(data), make_parents=make_parents)


def strip_model(data: bytes) -> bytes:
    """The template of a serialized ModelProto: for comparing two files' graphs without
    their float tensors' values."""
    onnx = import_onnx("an ONNX model")
    return split_model(onnx.ModelProto.FromString(data))[1]
