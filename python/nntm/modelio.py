"""Model files: an ordered set of named tensors, read and written.

Formats, chosen by extension (case-insensitive):

``.safetensors``
    Hand-written reader and writer (no dependency on the ``safetensors``
    package): an 8-byte little-endian header length, a JSON header
    ``{name: {dtype, shape, data_offsets}, "__metadata__": {...}}`` and the
    byte buffer.  Tensors are returned in the order of their data offsets;
    the writer lays them out in the order of the mapping it is given.
``.npz``
    A zip of ``.npy`` members, in stored order, read member by member with
    numpy's ``.npy`` reader and ``allow_pickle=False`` (as ``np.load`` does,
    but by exact member name).  numpy has no bfloat16, so a bfloat16 tensor is stored as the
    2-byte void type that ``np.save`` writes for it (descr ``'<V2'``) and any
    2-byte void array is read back as bfloat16.
``.npy``
    One tensor, named after the file stem (read only).
``.pt`` / ``.pth``
    A PyTorch state dict of tensors, read with ``torch.load(weights_only=True)``
    when torch is importable (read only).
``.onnx``
    Every float tensor of an ONNX graph (initializers, sparse initializers, Constant
    nodes, subgraphs), named as :mod:`nntm.onnxio` says, when the optional ``onnx``
    package is installed (``pip install nntm[onnx]``; without it a clear error).  Writing
    needs the graph: :func:`read_model_container` returns it as a template, and
    ``write_model(..., template=...)`` fills it.

Every tensor comes back as a C-contiguous, writable, little-endian numpy array
of one of the supported dtypes (:data:`SAFETENSORS_DTYPES`); bfloat16 is
``ml_dtypes.bfloat16``.  0-d and empty tensors are fine.  Problems raise
:class:`~nntm.errors.ModelIOError` naming the file (and the tensor).  A
written file appears whole or not at all (temporary file, then rename).
"""

from __future__ import annotations

import json
import os
import secrets
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from . import dtypes
from .errors import ModelIOError

__all__ = [
    "FORMATS",
    "READ_FORMATS",
    "SAFETENSORS_DTYPE_NAMES",
    "WRITE_FORMATS",
    "model_format",
    "read_model",
    "read_model_container",
    "write_model",
]

#: safetensors dtype code -> NumPy dtype name (the arrays are little-endian).  The dtypes
#: themselves are SAFETENSORS_DTYPES, built on first access: bfloat16 is ml_dtypes', which is
#: imported only when a bfloat16 tensor is met.
SAFETENSORS_DTYPE_NAMES: dict[str, str] = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
}
_CODE_OF_NAME: dict[str, str] = {v: k for k, v in SAFETENSORS_DTYPE_NAMES.items()}


def _safetensors_dtype(code: str) -> np.dtype[Any]:
    """The little-endian dtype of a safetensors dtype code."""
    return dtypes.by_name(SAFETENSORS_DTYPE_NAMES[code]).newbyteorder("<")


def __getattr__(name: str) -> object:
    if name == "SAFETENSORS_DTYPES":  # imports ml_dtypes, so only on demand
        return {code: _safetensors_dtype(code) for code in SAFETENSORS_DTYPE_NAMES}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: extension -> format name
FORMATS: dict[str, str] = {
    ".safetensors": "safetensors",
    ".npz": "npz",
    ".npy": "npy",
    ".pt": "pytorch",
    ".pth": "pytorch",
    ".onnx": "onnx",
}
READ_FORMATS = ("safetensors", "npz", "npy", "pytorch", "onnx")
WRITE_FORMATS = ("safetensors", "npz", "onnx")  # onnx: with the template of the graph

_MAX_HEADER = 100_000_000  # the safetensors package's limit
_METADATA_KEY = "__metadata__"


def model_format(path: str | os.PathLike[str]) -> str:
    """The format of a model file by its extension: a name in :data:`READ_FORMATS`."""
    suffix = Path(path).suffix.lower()
    try:
        return FORMATS[suffix]
    except KeyError:
        known = ", ".join(FORMATS)
        raise ModelIOError(
            f"model file '{os.fspath(path)}': unknown extension {suffix or '(none)'!r}"
            f" (known: {known})"
        ) from None


# -- reading ------------------------------------------------------------------------


def read_model(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a model file into ``{name: array}``, keeping names, order, shapes, dtypes."""
    name = os.fspath(path)
    fmt = model_format(name)
    if not os.path.exists(name):
        raise ModelIOError(f"model file '{name}' does not exist")
    if os.path.isdir(name):
        raise ModelIOError(f"model file '{name}' is a directory")
    try:
        if fmt == "safetensors":
            return _read_safetensors(name)
        if fmt == "npz":
            return _read_npz(name)
        if fmt == "npy":
            return _read_npy(name)
        if fmt == "onnx":
            return read_model_container(name)[0]
        return _read_torch(name)
    except OSError as exc:
        raise ModelIOError(f"cannot read model file '{name}': {exc.strerror or exc}") from exc


def read_model_container(path: str | os.PathLike[str]
                         ) -> tuple[dict[str, np.ndarray], bytes | None]:
    """A model file's tensors and, for a format whose file holds more than its tensors
    (ONNX: the graph), the template that rebuilds the file from them (else None)."""
    name = os.fspath(path)
    if model_format(name) != "onnx":
        return read_model(name), None
    from .onnxio import read_onnx  # noqa: PLC0415 - needs the optional onnx package

    if os.path.isdir(name):
        raise ModelIOError(f"model file '{name}' is a directory")
    tensors, template = read_onnx(name)
    return {k: _normalize(name, k, v) for k, v in tensors.items()}, template


def _read_safetensors(name: str) -> dict[str, np.ndarray]:
    with open(name, "rb") as f:
        entries, buffer_start = _safetensors_layout(name, f)
        out: dict[str, np.ndarray] = {}
        for tname, (dtype, shape, begin, end) in entries:
            arr = _empty(name, tname, shape, dtype)
            nbytes = end - begin
            if nbytes:
                f.seek(buffer_start + begin)
                got = f.readinto(arr.reshape(-1).view(np.uint8).data)
                if got != nbytes:
                    raise ModelIOError(
                        f"safetensors file '{name}' is truncated in tensor '{tname}'"
                    )
            out[tname] = arr
        return out


def _empty(name: str, tname: str, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
    try:
        return np.empty(shape, dtype=dtype)
    except (ValueError, MemoryError) as exc:  # dims numpy cannot hold
        raise ModelIOError(
            f"safetensors file '{name}', tensor '{tname}': bad shape {list(shape)} ({exc})"
        ) from None


def _safetensors_layout(name: str, f: IO[bytes]) -> tuple[list[_Entry], int]:
    """The checked header entries of an open safetensors file (in data-offset order) and
    where its byte buffer starts; reads the header only."""
    file_size = os.fstat(f.fileno()).st_size
    head = f.read(8)
    if len(head) < 8:
        raise ModelIOError(
            f"safetensors file '{name}' is truncated: {len(head)} bytes, "
            "no 8-byte header length"
        )
    header_len = int.from_bytes(head, "little")
    if header_len > _MAX_HEADER:
        raise ModelIOError(
            f"safetensors file '{name}' is corrupt: header length {header_len} "
            f"exceeds the limit {_MAX_HEADER}"
        )
    if header_len > file_size - 8:
        raise ModelIOError(
            f"safetensors file '{name}' is truncated: header length {header_len} "
            f"but only {file_size - 8} bytes follow"
        )
    raw = f.read(header_len)
    if len(raw) != header_len:
        raise ModelIOError(f"safetensors file '{name}' is truncated in its header")
    entries = _parse_safetensors_header(name, raw)
    buffer_start = 8 + header_len
    buffer_len = file_size - buffer_start
    expected = 0
    for tname, (_dtype, _shape, begin, end) in entries:
        if begin != expected:
            what = "overlap" if begin < expected else "leave a gap"
            raise ModelIOError(
                f"safetensors file '{name}': data offsets of tensor '{tname}' "
                f"[{begin}, {end}] {what} (expected to start at {expected})"
            )
        if end > buffer_len:
            raise ModelIOError(
                f"safetensors file '{name}' is truncated: tensor '{tname}' ends at "
                f"byte {end} of a {buffer_len}-byte buffer (data offsets outside "
                "the buffer)"
            )
        expected = end
    if expected != buffer_len:
        raise ModelIOError(
            f"safetensors file '{name}' is corrupt: {buffer_len - expected} bytes "
            "after the last tensor"
        )
    return entries, buffer_start


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


class _DuplicateKey(Exception):
    pass


_Entry = tuple[str, tuple[np.dtype[Any], tuple[int, ...], int, int]]


def _parse_safetensors_header(name: str, raw: bytes) -> list[_Entry]:
    bad = f"safetensors file '{name}' has a corrupt header"
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        raise ModelIOError(f"{bad}: tensor '{exc.args[0]}' appears twice") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelIOError(f"{bad}: not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ModelIOError(f"{bad}: not a JSON object")
    meta = header.pop(_METADATA_KEY, None)
    if meta is not None and not (
        isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())
    ):
        raise ModelIOError(f"{bad}: {_METADATA_KEY} is not a map of strings")
    entries: list[tuple[int, int, int, _Entry]] = []
    for index, (tname, info) in enumerate(header.items()):
        where = f"safetensors file '{name}', tensor '{tname}'"
        if not isinstance(info, dict):
            raise ModelIOError(f"{where}: header entry is not an object")
        missing = {"dtype", "shape", "data_offsets"} - set(info)
        if missing:
            raise ModelIOError(f"{where}: header entry lacks {', '.join(sorted(missing))}")
        code = info["dtype"]
        if not isinstance(code, str) or code not in SAFETENSORS_DTYPE_NAMES:
            raise ModelIOError(
                f"{where}: unknown dtype {code!r} "
                f"(supported: {', '.join(SAFETENSORS_DTYPE_NAMES)})"
            )
        dtype = _safetensors_dtype(code)
        shape = info["shape"]
        if not isinstance(shape, list) or not all(_is_json_uint(d) for d in shape):
            raise ModelIOError(f"{where}: bad shape {shape!r}")
        offsets = info["data_offsets"]
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_json_uint(o) for o in offsets)
            or offsets[0] > offsets[1]
        ):
            raise ModelIOError(f"{where}: bad data_offsets {offsets!r}")
        begin, end = offsets
        count = 1
        for d in shape:
            count *= d
        if count * dtype.itemsize != end - begin:
            raise ModelIOError(
                f"{where}: shape {shape} of {code} needs {count * dtype.itemsize} bytes "
                f"but data_offsets [{begin}, {end}] hold {end - begin}"
            )
        entries.append((begin, end, index, (tname, (dtype, tuple(shape), begin, end))))
    entries.sort(key=lambda e: (e[0], e[1], e[2]))
    return [e[3] for e in entries]


def _is_json_uint(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _normalize(name: str, tname: str, arr: np.ndarray) -> np.ndarray:
    """A C-contiguous little-endian array of a supported dtype, or ModelIOError."""
    dtype = arr.dtype
    if dtype.kind == "V" and dtype.itemsize == 2 and dtype.fields is None:
        arr = arr.view(dtypes.bfloat16())  # how np.save stores bfloat16
        dtype = arr.dtype
    if dtype.byteorder == ">":
        arr = arr.astype(dtype.newbyteorder("<"))
        dtype = arr.dtype
    if dtype.name not in _CODE_OF_NAME or dtypes.by_name(dtype.name) != dtype:
        raise ModelIOError(
            f"model file '{name}', tensor '{tname}': unsupported dtype {dtype} "
            f"(supported: {', '.join(_dtype_names())})"
        )
    return np.require(arr, dtype=_canonical(dtype), requirements=["C", "W"])


def _canonical(dtype: np.dtype[Any]) -> np.dtype[Any]:
    return _safetensors_dtype(_CODE_OF_NAME[dtype.name])


def _dtype_names() -> list[str]:
    return list(SAFETENSORS_DTYPE_NAMES.values())


def _read_npz(name: str) -> dict[str, np.ndarray]:
    # Members are read with zipfile and np.lib.format, as np.load does, but
    # by exact member name: NpzFile's lookup confuses tensors "a" and "a.npy".
    try:
        zf = zipfile.ZipFile(name)
    except OSError:
        raise
    except Exception as exc:  # BadZipFile, EOFError, NotImplementedError, IndexError, ...
        raise ModelIOError(f"npz file '{name}' is truncated or corrupt ({exc})") from None
    out: dict[str, np.ndarray] = {}
    with zf:
        for info in zf.infolist():
            member = info.filename
            if member.endswith("/"):  # a directory entry (ZipInfo.is_dir fails on "")
                continue
            key = member[:-4] if member.endswith(".npy") else member
            if key in out:
                raise ModelIOError(f"npz file '{name}': tensor '{key}' appears twice")
            try:
                with zf.open(info) as f:
                    arr = np.lib.format.read_array(f, allow_pickle=False)
            except ValueError as exc:
                raise ModelIOError(
                    f"npz file '{name}', tensor '{key}' cannot be read without pickle "
                    f"or is corrupt ({exc})"
                ) from None
            except Exception as exc:  # zipfile, zlib, EOF and format errors
                raise ModelIOError(
                    f"npz file '{name}', tensor '{key}' is truncated or corrupt ({exc})"
                ) from None
            out[key] = _normalize(name, key, arr)
    return out


def _read_npy(name: str) -> dict[str, np.ndarray]:
    try:
        arr = np.load(name, allow_pickle=False)
    except (ValueError, EOFError) as exc:
        raise ModelIOError(f"npy file '{name}' is truncated or corrupt ({exc})") from None
    if not isinstance(arr, np.ndarray):
        if hasattr(arr, "close"):
            arr.close()
        raise ModelIOError(f"npy file '{name}' does not hold a single array")
    stem = Path(name).stem
    return {stem: _normalize(name, stem, arr)}


#: keys under which training scripts commonly nest the state dict of a checkpoint
CHECKPOINT_KEYS = ("state_dict", "model", "model_state_dict", "module", "net")


def unwrap_checkpoint(name: str, state: Mapping[Any, Any],
                      is_tensor: Callable[[object], bool]) -> Mapping[Any, Any]:
    """The state dict of a checkpoint: ``state`` itself when it maps names to tensors, else
    the one mapping of tensors found under a common key (``model``, ``state_dict``, ...)."""
    if all(is_tensor(v) for v in state.values()):
        return state
    found = [k for k in CHECKPOINT_KEYS if isinstance(state.get(k), Mapping)
             and state[k] and all(is_tensor(v) for v in state[k].values())]
    if len(found) == 1:
        return state[found[0]]
    if not found and any(is_tensor(v) for v in state.values()):
        return state  # a state dict with a stray entry: the caller names that entry
    keys = ", ".join(repr(k) for k in list(state)[:8])
    raise ModelIOError(
        f"PyTorch file '{name}' is a checkpoint, not a state dict of tensors (top-level keys: "
        f"{keys}); save its state dict alone, e.g. torch.save(ckpt['model'], 'model.pt')"
        + (f" (several candidates: {', '.join(found)})" if found else ""))


def _read_torch(name: str) -> dict[str, np.ndarray]:
    try:
        import torch  # noqa: PLC0415 - optional dependency
    except ImportError:
        raise ModelIOError(
            f"model file '{name}': reading .pt/.pth files needs torch, which is not installed"
        ) from None
    try:
        state = torch.load(name, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (pickle, zip, runtime)
        raise ModelIOError(f"cannot load PyTorch file '{name}': {exc}") from None
    if not isinstance(state, Mapping):
        raise ModelIOError(
            f"PyTorch file '{name}' does not hold a state dict (got {type(state).__name__})"
        )
    state = unwrap_checkpoint(name, state, lambda v: isinstance(v, torch.Tensor))
    out: dict[str, np.ndarray] = {}
    for key, tensor in state.items():
        if not isinstance(key, str):
            raise ModelIOError(f"PyTorch file '{name}': tensor name {key!r} is not a string")
        if not isinstance(tensor, torch.Tensor):
            raise ModelIOError(
                f"PyTorch file '{name}': '{key}' holds a {type(tensor).__name__} object, "
                "not a tensor"
            )
        t = tensor.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            arr = t.view(torch.int16).numpy().view(dtypes.bfloat16())
        else:
            try:
                arr = t.numpy()
            except (TypeError, RuntimeError) as exc:
                raise ModelIOError(
                    f"PyTorch file '{name}', tensor '{key}': unsupported dtype {t.dtype} ({exc})"
                ) from None
        out[key] = _normalize(name, key, arr.copy())
    return out


# -- writing ------------------------------------------------------------------------


def write_model(
    path: str | os.PathLike[str],
    tensors: Mapping[str, np.ndarray],
    fmt: str | None = None,
    make_parents: bool = False,
    template: bytes | None = None,
) -> None:
    """Write ``tensors`` to ``path`` as ``fmt`` ("safetensors", "npz" or "onnx"; None: by
    extension).  "onnx" needs the ``template`` of the graph (:func:`read_model_container`,
    or a decoded stream's container), whose every tensor ``tensors`` must hold.

    The order of ``tensors`` is kept.  The file is written to a temporary
    file in the same directory and renamed over ``path``, so a failure never
    leaves a half-written (or any new) file behind.  With ``make_parents`` a
    missing folder of ``path`` is created (and removed again if the write fails).
    """
    name = os.fspath(path)
    if fmt is None:
        fmt = model_format(name)
    if fmt not in WRITE_FORMATS:
        raise ModelIOError(
            f"cannot write model file '{name}' as {fmt!r} "
            f"(writable formats: {', '.join(WRITE_FORMATS)})"
        )
    if fmt == "onnx":
        if template is None:
            raise ModelIOError(
                f"cannot write model file '{name}' as ONNX: the graph is not known (an ONNX "
                "file is written from an ONNX source, whose stream carries the graph)")
        from .onnxio import write_onnx  # noqa: PLC0415 - needs the optional onnx package

        write_onnx(name, tensors, template, make_parents=make_parents)
        return
    arrays = _check_tensors(name, tensors, fmt)
    if fmt == "safetensors":
        _atomic_write(name, lambda f: _write_safetensors(f, arrays), make_parents=make_parents)
    else:
        _atomic_write(name, lambda f: _write_npz(f, arrays), make_parents=make_parents)


def _check_tensors(
    name: str, tensors: Mapping[str, np.ndarray], fmt: str
) -> list[tuple[str, np.ndarray]]:
    if not isinstance(tensors, Mapping):
        raise ModelIOError(
            f"model file '{name}': tensors must be a mapping of name to array, "
            f"not {type(tensors).__name__}"
        )
    out: list[tuple[str, np.ndarray]] = []
    for key, arr in tensors.items():
        if not isinstance(key, str):
            raise ModelIOError(f"model file '{name}': tensor name {key!r} is not a string")
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise ModelIOError(
                f"model file '{name}': tensor name {key!r} is not valid Unicode"
            ) from None
        if fmt == "npz" and "\0" in key:
            raise ModelIOError(
                f"model file '{name}': tensor name {key!r} holds a NUL character, "
                "which an npz member name cannot carry"
            )
        if fmt == "safetensors" and key == _METADATA_KEY:
            raise ModelIOError(f"model file '{name}': '{_METADATA_KEY}' is reserved in safetensors")
        if isinstance(arr, np.generic):
            arr = np.asarray(arr)
        if not isinstance(arr, np.ndarray):
            raise ModelIOError(
                f"model file '{name}', tensor '{key}': not a numpy array ({type(arr).__name__})"
            )
        dtype = arr.dtype
        if dtype.byteorder == ">":
            arr = arr.astype(dtype.newbyteorder("<"))
            dtype = arr.dtype
        if dtype.name not in _CODE_OF_NAME or dtypes.by_name(dtype.name) != dtype:
            raise ModelIOError(
                f"model file '{name}', tensor '{key}': unsupported dtype {dtype} "
                f"(supported: {', '.join(_dtype_names())})"
            )
        out.append((key, np.require(arr, dtype=_canonical(dtype), requirements=["C"])))
    return out


def _make_folders(directory: Path) -> list[Path]:
    """Create the missing folders of ``directory``, outermost first; returns those made."""
    missing: list[Path] = []
    d = directory
    while not d.exists() and d != d.parent:
        missing.append(d)
        d = d.parent
    made: list[Path] = []
    try:
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:
                if not folder.is_dir():
                    raise
                continue
            made.append(folder)
    except OSError:
        _remove_folders(made)
        raise
    return made


def _remove_folders(made: list[Path]) -> None:
    for folder in reversed(made):
        try:
            folder.rmdir()
        except OSError:
            pass


def _atomic_write(name: str, writer: Callable[[IO[bytes]], None],
                  what: str = "model file", make_parents: bool = False,
                  readable: bool = False) -> None:
    target = Path(name)
    directory = target.parent
    tmp = directory / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    made: list[Path] = []
    try:
        if make_parents:
            made = _make_folders(directory)
        # 0o666 through the umask, like a plain open(): not NamedTemporaryFile's 0o600
        access = os.O_RDWR if readable else os.O_WRONLY  # readable: the writer reads back
        fd = os.open(tmp, access | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        _remove_folders(made)
        raise ModelIOError(f"cannot write {what} '{name}': {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "w+b" if readable else "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        _remove_folders(made)
        if isinstance(exc, OSError):
            raise ModelIOError(f"cannot write {what} '{name}': {exc.strerror or exc}") from exc
        raise


def safetensors_header(layout: Sequence[tuple[str, np.dtype[Any], tuple[int, ...]]]
                       ) -> tuple[bytes, dict[str, int]]:
    """The head of a safetensors file holding tensors (name, dtype, shape) in this order:
    its 8-byte length, the JSON header padded to 8 bytes like the safetensors package, and
    each tensor's offset in the data buffer."""
    header: dict[str, Any] = {}
    offsets: dict[str, int] = {}
    offset = 0
    for key, dtype, shape in layout:
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        header[key] = {"dtype": _CODE_OF_NAME[dtype.name], "shape": list(shape),
                       "data_offsets": [offset, offset + nbytes]}
        offsets[key] = offset
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # pad like the safetensors package: 8-byte aligned buffer
    return len(raw).to_bytes(8, "little") + raw, offsets


def _write_safetensors(f: IO[bytes], arrays: list[tuple[str, np.ndarray]]) -> None:
    head, _ = safetensors_header([(key, arr.dtype, arr.shape) for key, arr in arrays])
    f.write(head)
    for _key, arr in arrays:
        if arr.nbytes:
            f.write(arr.reshape(-1).view(np.uint8).data)


def _write_npz(f: IO[bytes], arrays: list[tuple[str, np.ndarray]]) -> None:
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, arr in arrays:
            # bfloat16 is written as np.save writes it ('<V2') and read back as bfloat16
            with zf.open(key + ".npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)
