"""Model files at scale: tensors mapped from disk one at a time, and written one at a time.

:func:`open_model` returns a model as an ordered mapping whose tensors are *not* read when
it is opened: a safetensors file (or a Hugging Face sharded checkpoint: its
``model.safetensors.index.json``, or the folder holding it) is opened by its header alone,
and each tensor is a read-only view of the file, mapped (``np.memmap``) when it is asked for
and unmapped when the caller drops it.  Memory then follows the tensors in use, not the
model.  Other formats are read whole (:func:`nntm.modelio.read_model`).

:class:`ModelWriter` writes a model tensor by tensor: a safetensors header is computed up
front from the names, dtypes and shapes, then each tensor is written at its offset as it
comes; an npz file takes its members in order.  The file is the same, byte for byte, as
:func:`nntm.modelio.write_model` writes from the whole model, and it appears whole or not at
all (a temporary file, renamed when :meth:`ModelWriter.close` is called).
"""

from __future__ import annotations

import json
import os
import secrets
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from . import modelio
from .errors import ModelIOError

__all__ = ["INDEX_NAME", "LazyModel", "ModelWriter", "TensorInfo", "input_problem",
           "open_model", "resolve_input"]

#: the index file of a Hugging Face sharded safetensors checkpoint
INDEX_NAME = "model.safetensors.index.json"


class TensorInfo:
    """Where a tensor lies in a file: its dtype, shape and byte range."""

    __slots__ = ("dtype", "nbytes", "offset", "path", "shape")

    def __init__(self, path: str, offset: int, nbytes: int, dtype: np.dtype[Any],
                 shape: tuple[int, ...]) -> None:
        self.path, self.offset, self.nbytes = path, offset, nbytes
        self.dtype, self.shape = dtype, shape

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


class LazyModel(Mapping[str, np.ndarray]):
    """An ordered model whose tensors are mapped from their files when asked for.

    ``model[name]`` maps the tensor's bytes (copy-on-write: the array is writable, the file
    is never changed) and returns a C-contiguous little-endian array; the mapping is
    released when the array is dropped.  :attr:`bytes_mapped` counts the bytes handed out
    (a test of what the caller touched).
    """

    def __init__(self, source: str, infos: dict[str, TensorInfo]) -> None:
        self.source = source
        self.infos = infos
        self.bytes_mapped = 0

    def __getitem__(self, name: str) -> np.ndarray:
        info = self.infos[name]
        self.bytes_mapped += info.nbytes
        if info.nbytes == 0 or not info.shape:  # empty and 0-d tensors: read (mmap refuses)
            with open(info.path, "rb") as f:
                f.seek(info.offset)
                raw = f.read(info.nbytes)
            return np.frombuffer(raw, dtype=info.dtype).reshape(info.shape).copy()
        try:
            return np.memmap(info.path, dtype=info.dtype, mode="c", offset=info.offset,
                             shape=info.shape)
        except (OSError, ValueError) as exc:
            raise ModelIOError(f"cannot map tensor '{name}' of '{info.path}': {exc}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.infos)

    def __len__(self) -> int:
        return len(self.infos)

    @property
    def nbytes(self) -> int:
        return sum(i.nbytes for i in self.infos.values())

    def largest_bytes(self) -> int:
        return max((i.nbytes for i in self.infos.values()), default=0)


def _safetensors_infos(path: str) -> dict[str, TensorInfo]:
    try:
        with open(path, "rb") as f:
            entries, start = modelio._safetensors_layout(path, f)
    except OSError as exc:
        raise ModelIOError(f"cannot read model file '{path}': {exc.strerror or exc}") from exc
    return {tname: TensorInfo(path, start + begin, end - begin, dtype, shape)
            for tname, (dtype, shape, begin, end) in entries}


def _index_infos(index: str) -> dict[str, TensorInfo]:
    """The tensors of a sharded checkpoint: shards in the order of their file names, tensors
    in data-offset order within each; every tensor of the weight map in the shard it names."""
    try:
        with open(index, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as exc:
        raise ModelIOError(f"cannot read index '{index}': {exc.strerror or exc}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelIOError(f"index '{index}' is not JSON ({exc})") from None
    weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(weight_map, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
        raise ModelIOError(f"index '{index}' has no weight_map of tensor name -> shard file")
    folder = os.path.dirname(os.path.abspath(index))
    out: dict[str, TensorInfo] = {}
    for shard in sorted(set(weight_map.values())):
        if os.path.basename(shard) != shard or not shard:
            raise ModelIOError(f"index '{index}': shard '{shard}' is not a file name in "
                               "the index's folder")
        path = os.path.join(folder, shard)
        if not os.path.isfile(path):
            raise ModelIOError(f"index '{index}': shard '{shard}' does not exist")
        for tname, info in _safetensors_infos(path).items():
            if weight_map.get(tname) != shard:
                raise ModelIOError(f"index '{index}': tensor '{tname}' of shard '{shard}' is "
                                   "not listed in the weight map under that shard")
            out[tname] = info
    missing = [t for t in weight_map if t not in out]
    if missing:
        raise ModelIOError(f"index '{index}': tensor(s) {', '.join(missing[:5])} are in the "
                           "weight map but not in their shard")
    return out


def resolve_input(path: str) -> str:
    """The file a model input names: a folder stands for its sharded index, or its one
    safetensors file (ModelIOError otherwise)."""
    if not os.path.isdir(path):
        return path
    index = os.path.join(path, INDEX_NAME)
    if os.path.isfile(index):
        return index
    found = sorted(p.name for p in Path(path).glob("*.safetensors") if p.is_file())
    if len(found) == 1:
        return os.path.join(path, found[0])
    if found:
        raise ModelIOError(f"model folder '{path}' holds {len(found)} safetensors files and "
                           f"no {INDEX_NAME}: name one file")
    raise ModelIOError(f"model file '{path}' is a directory (with no {INDEX_NAME} and no "
                       "safetensors file)")


def is_index(path: str) -> bool:
    return path.lower().endswith(".index.json")


def input_problem(key: str, path: str) -> str | None:
    """Why a model input named by option ``key`` cannot be read, or None: a file, or a folder
    with a sharded checkpoint's index or one safetensors file."""
    if os.path.isdir(path):
        try:
            resolve_input(path)
        except ModelIOError:
            return f"{key} '{path}' is a directory, not a file (nor a folder holding " \
                   f"{INDEX_NAME} or one .safetensors file)"
        return None
    if not os.path.isfile(path):
        return f"{key} '{path}' does not exist"
    return None


def model_source_format(path: str) -> str:
    """The format name of a model input (an index or folder of shards is 'safetensors')."""
    path = resolve_input(path)
    return "safetensors" if is_index(path) else modelio.model_format(path)


def open_model(path: str | os.PathLike[str]) -> Mapping[str, np.ndarray]:
    """A model input, its tensors mapped lazily (safetensors, a sharded checkpoint's index
    or its folder), or read whole (other formats)."""
    name = resolve_input(os.fspath(path))
    if is_index(name):
        return LazyModel(name, _index_infos(name))
    if modelio.model_format(name) == "safetensors":
        if not os.path.exists(name):
            raise ModelIOError(f"model file '{name}' does not exist")
        return LazyModel(name, _safetensors_infos(name))
    return modelio.read_model(name)


# -- writing tensor by tensor ---------------------------------------------------------


class ModelWriter:
    """A model file written tensor by tensor (safetensors or npz).

    ``layout`` lists every tensor's (name, dtype, shape) in the file's order; :meth:`write`
    takes each tensor (safetensors: in any order, each at its offset; npz: in layout order);
    :meth:`close` renames the finished file over ``path`` (:meth:`abort` removes it).
    """

    def __init__(self, path: str, layout: list[tuple[str, np.dtype[Any], tuple[int, ...]]],
                 fmt: str | None = None) -> None:
        self.path = path
        self.fmt = fmt or modelio.model_format(path)
        if self.fmt not in ("safetensors", "npz"):
            raise ModelIOError(f"cannot write model file '{path}' tensor by tensor as "
                               f"{self.fmt!r} (safetensors or npz)")
        self.layout = {name: (np.dtype(dt), tuple(shape)) for name, dt, shape in layout}
        self.order = [name for name, _, _ in layout]
        self.written: set[str] = set()
        target = Path(path)
        self.made = modelio._make_folders(target.parent)
        self.tmp = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as exc:
            modelio._remove_folders(self.made)
            raise ModelIOError(f"cannot write model file '{path}': {exc.strerror}") from exc
        self.file: IO[bytes] = os.fdopen(fd, "wb")
        self.zip: zipfile.ZipFile | None = None
        self.offsets: dict[str, int] = {}
        if self.fmt == "safetensors":
            self._safetensors_header()
        else:
            self.zip = zipfile.ZipFile(self.file, mode="w", compression=zipfile.ZIP_STORED,
                                       allowZip64=True)

    def _safetensors_header(self) -> None:
        head, self.offsets = modelio.safetensors_header(
            [(name, *self.layout[name]) for name in self.order])
        self.file.write(head)
        self.start = len(head)
        total = sum(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                    for dtype, shape in self.layout.values())
        self.file.truncate(self.start + total)

    def write(self, name: str, array: np.ndarray) -> None:
        if name not in self.layout or name in self.written:
            raise ModelIOError(f"model file '{self.path}': tensor '{name}' is not expected "
                               "(or written twice)")
        dtype, shape = self.layout[name]
        arr = modelio._check_tensors(self.path, {name: array}, self.fmt)[0][1]  # C order
        if arr.dtype != dtype or tuple(arr.shape) != shape:
            raise ModelIOError(f"model file '{self.path}', tensor '{name}': {arr.dtype} "
                               f"{list(arr.shape)}, announced {dtype} {list(shape)}")
        if self.zip is not None and self.order[len(self.written)] != name:
            raise ModelIOError(f"npz file '{self.path}': tensor '{name}' out of order")
        try:
            if self.zip is not None:
                with self.zip.open(name + ".npy", mode="w", force_zip64=True) as member:
                    np.lib.format.write_array(member, arr, allow_pickle=False)
            elif arr.nbytes:
                self.file.seek(self.start + self.offsets[name])
                self.file.write(arr.reshape(-1).view(np.uint8).data)
        except OSError as exc:
            raise ModelIOError(f"cannot write model file '{self.path}': "
                               f"{exc.strerror or exc}") from exc
        self.written.add(name)

    def close(self) -> None:
        missing = [n for n in self.order if n not in self.written]
        if missing:
            self.abort()
            raise ModelIOError(f"model file '{self.path}': tensor(s) {', '.join(missing[:5])} "
                               "never written")
        try:
            if self.zip is not None:
                self.zip.close()
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.abort()
            raise ModelIOError(f"cannot write model file '{self.path}': {exc.strerror}") from exc

    def abort(self) -> None:
        try:
            if self.zip is not None:
                self.zip.close()
        except (OSError, ValueError):
            pass
        try:
            self.file.close()
        except OSError:
            pass
        try:
            os.unlink(self.tmp)
        except OSError:
            pass
        modelio._remove_folders(self.made)
