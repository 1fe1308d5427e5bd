"""Whole-stream decoding by the C library (lib/include/nntm/nntm_stream.h).

The C reader parses every unit and parameter set, checks the unit order, the memory budget
and every MD5; Python only gives it the stream and the buffers to fill::

    with cstream.open_file("model.bit") as s:
        for info in s.tensors():
            array = s.decode(info)          # a numpy array, filled in place by C

A tensor decodes straight into its numpy array's memory (``ffi.from_buffer``, no copy).
Negative C codes become the :class:`nntm.errors.NntmError` family, with the C reader's text
(which names the unit and the tensor).  A reference model (``ref_model``: a mapping, or a
function of a tensor name) is given to C through a callback (``extern "Python"``); an
NntmError the function raises is raised in place of C's NNTM_ERR_REFERENCE.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from . import codec, hls, memory
from .core import ffi, lib
from .errors import (
    BitstreamError,
    CoreError,
    HashMismatchError,
    ModelIOError,
    NntmError,
    ReferenceModelError,
)

#: a reference model: tensors by name, or a function that returns one (None: no such tensor)
RefModel = Mapping[str, np.ndarray] | Callable[[str], np.ndarray | None]

#: the largest format the C reader decodes (major, minor)
C_MAX_VERSION = (1, 8)
MAX_THREADS = 256
#: the extension inflates a container unit [1.7] (compiled with zlib)
HAVE_ZLIB = bool(lib.nntm_py_have_zlib())


class CStreamError(CoreError):
    """A C code the other classes do not cover (out of memory, bad argument, non-finite)."""


class CBitstreamError(BitstreamError):
    """A corrupt, truncated or unsupported stream, as the C reader found it."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def error_class(code: int) -> type[NntmError]:
    """The NntmError subclass of a negative C code."""
    if code == lib.NNTM_ERR_BUDGET:
        return memory.MemoryBudgetError
    if code == lib.NNTM_ERR_HASH:
        return HashMismatchError
    if code == lib.NNTM_ERR_REFERENCE:
        return ReferenceModelError
    if code == lib.NNTM_ERR_IO:
        return ModelIOError
    if code in (lib.NNTM_ERR_CORRUPT, lib.NNTM_ERR_TRUNCATED, lib.NNTM_ERR_RANGE,
                lib.NNTM_ERR_UNSUPPORTED):
        return CBitstreamError
    return CStreamError


def make_error(code: int, text: str) -> NntmError:
    """The exception for a negative C code; ``.code`` is the code."""
    message = text or ffi.string(lib.nntm_strerror(code)).decode()
    cls = error_class(code)
    exc = cls(code, message) if cls in (CStreamError, CBitstreamError) else cls(message)
    exc.code = code  # type: ignore[attr-defined]
    return exc


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a stream, as its parameter set and hash unit say."""

    index: int
    name: str
    tensor_id: int
    dtype: np.dtype
    shape: tuple[int, ...]
    num_elements: int
    byte_size: int
    coding_mode: int
    pred_mode: int
    params_ok: bool | None   # tps_md5 [1.6]: None when the stream carries none
    md5: bytes               # tensor_md5 of the hash unit


@ffi.def_extern()
def nntm_py_ref_lookup(cookie: object, name: object, name_size: int, out: object) -> int:
    """C's ref_lookup: fill ``out`` with the reference model's tensor, 0; else nonzero."""
    try:
        stream: CStream = ffi.from_handle(cookie)
        return stream._ref_lookup(bytes(ffi.buffer(name, name_size)).decode("utf-8"), out)
    except Exception:  # noqa: BLE001 - an exception must not cross into C
        return 1


class CStream:
    """An open stream (use :func:`open_file` or :func:`open_memory`); close it, or use it
    as a context manager."""

    def __init__(self, data: bytes | memoryview | None, path: str | None,
                 max_memory: int | None, max_expansion: int, max_elements: int,
                 ref_model: RefModel | None, threads: int) -> None:
        self._ref_model = ref_model
        self._ref_error: NntmError | None = None  # what the last lookup raised
        self._refs: dict[str, np.ndarray] = {}  # kept alive while C may read them
        self._handle = ffi.new_handle(self)
        settings = ffi.new("nntm_stream_settings *")
        lib.nntm_stream_default_settings(settings)
        settings.max_memory = memory.default_max_memory() if max_memory is None else max_memory
        settings.max_expansion = max_expansion
        settings.max_elements = max_elements
        settings.threads = max(1, min(int(threads), MAX_THREADS))
        if ref_model is not None:
            settings.ref_lookup = lib.nntm_py_ref_lookup
            settings.ref_cookie = self._handle
        self._pp = ffi.new("nntm_stream **")
        self._cbuf = None  # the exported buffer of data (released on close)
        if path is not None:
            rv = lib.nntm_stream_open_file(self._pp, os.fsencode(path), settings)
            self.size = os.path.getsize(path) if rv >= 0 else 0
        else:
            assert data is not None
            self.size = len(data)
            self._cbuf = ffi.from_buffer(data)
            rv = lib.nntm_stream_open_memory(self._pp, self._cbuf, len(data), settings)
        if rv < 0:
            exc = make_error(rv, self.error())
            self.close()
            raise exc
        self.num_tensors = int(lib.nntm_stream_num_tensors(self._s))
        version = int(lib.nntm_stream_version(self._s))
        self.version = (version >> 8, version & 255)
        self.tool_flags = int(lib.nntm_stream_tool_flags(self._s))
        self.source_format = hls.SourceFormat(int(lib.nntm_stream_source_format(self._s)))

    @property
    def _s(self) -> object:
        return self._pp[0]

    def error(self) -> str:
        """The C reader's text of the last failure ('' if none)."""
        if self._pp[0] == ffi.NULL:
            return ""
        return ffi.string(lib.nntm_stream_error(self._s)).decode("utf-8", "replace")

    def close(self) -> None:
        lib.nntm_stream_close(self._pp)
        self._refs.clear()
        if self._cbuf is not None:  # an mmap can be closed again
            ffi.release(self._cbuf)
            self._cbuf = None

    def __enter__(self) -> CStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _check(self, rv: int) -> None:
        if rv < 0:
            exc = make_error(rv, self.error())
            ref_error, self._ref_error = self._ref_error, None
            if rv == lib.NNTM_ERR_REFERENCE and ref_error is not None:
                raise ref_error from exc
            raise exc

    def info(self, index: int) -> TensorInfo:
        t = ffi.new("nntm_tensor_info *")
        self._check(lib.nntm_stream_tensor_info(self._s, index, t))
        return TensorInfo(
            index, bytes(ffi.buffer(t.name, t.name_size)).decode("utf-8"), int(t.tensor_id),
            hls.dtype_of_code(int(t.dtype)).newbyteorder("<"),
            tuple(int(t.shape[d]) for d in range(t.ndim)), int(t.num_elements),
            int(t.byte_size), int(t.coding_mode), int(t.pred_mode),
            None if t.params_ok < 0 else bool(t.params_ok), bytes(t.md5))

    def tensors(self) -> Iterator[TensorInfo]:
        for i in range(self.num_tensors):
            yield self.info(i)

    def decode_into(self, info: TensorInfo, out: np.ndarray) -> tuple[bytes, bool]:
        """Decode tensor ``info`` into ``out`` (C-contiguous, ``info.byte_size`` bytes);
        return the MD5 of the decoded bytes and whether it equals the hash unit's."""
        if not out.flags.c_contiguous or out.nbytes != info.byte_size:
            raise ValueError(f"tensor '{info.name}': the output buffer must be C-contiguous "
                             f"and {info.byte_size} bytes")
        md5 = ffi.new("uint8_t[16]")
        buf = ffi.from_buffer(out.reshape(-1).view(np.uint8), require_writable=True)
        rv = lib.nntm_stream_decode_tensor(self._s, info.index, buf, info.byte_size, md5)
        if rv == lib.NNTM_ERR_HASH:
            return bytes(md5), False
        self._check(rv)
        return bytes(md5), True

    def decode(self, info: TensorInfo) -> tuple[np.ndarray, bytes, bool]:
        """The decoded tensor (a new array), its MD5 and whether that equals the hash unit's."""
        array = np.empty(info.shape, dtype=info.dtype)
        md5, ok = self.decode_into(info, array)
        return array, md5, ok

    def check(self) -> tuple[bool | None, str]:
        """stream_md5 [1.6]: (None when not carried, else equal?) and the MD5 computed."""
        digest = ffi.new("uint8_t[16]")
        rv = lib.nntm_stream_check(self._s, digest)
        return (None if rv < 0 else bool(rv)), (bytes(digest).hex() if rv >= 0 else "")

    def container(self) -> hls.Container | None:
        """[1.7] The container unit (what rebuilds the source file), or None."""
        fmt = ffi.new("int32_t *")
        data = ffi.new("const uint8_t **")
        size = ffi.new("size_t *")
        if not lib.nntm_stream_container(self._s, fmt, data, size):
            return None
        return hls.Container(hls.SourceFormat(int(fmt[0])), bytes(ffi.buffer(data[0], size[0])))

    def _ref_lookup(self, name: str, out: object) -> int:
        ref = self._ref_model
        assert ref is not None
        if callable(ref):
            try:
                found = ref(name)
            except NntmError as exc:
                self._ref_error = exc
                return 1
            if found is None:
                return 1
        elif name in ref:
            found = ref[name]
        else:
            return 1
        array = np.ascontiguousarray(np.asarray(found))
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        try:
            code = hls.dtype_code(array.dtype)
        except ValueError:
            return 1
        if array.ndim > lib.NNTM_STREAM_MAX_NDIM:
            return 1
        self._refs[name] = array
        out.data = ffi.cast("const void *", ffi.from_buffer(array.reshape(-1).view(np.uint8)))
        out.byte_size = array.nbytes
        out.dtype = code
        out.ndim = array.ndim
        for d, n in enumerate(array.shape):
            out.shape[d] = n
        return 0


def open_file(path: str, max_memory: int | None = None,
              max_expansion: int = memory.DEFAULT_MAX_EXPANSION,
              max_elements: int = codec.DEFAULT_MAX_ELEMENTS,
              ref_model: RefModel | None = None, threads: int = 1) -> CStream:
    """Open the stream in file ``path`` (mapped by C).  ``max_memory`` None: half of this
    machine's memory; 0: no limit.  Raises the NntmError of the C reader's first problem."""
    return CStream(None, path, max_memory, max_expansion, max_elements, ref_model, threads)


def open_memory(data: bytes | memoryview, max_memory: int | None = None,
                max_expansion: int = memory.DEFAULT_MAX_EXPANSION,
                max_elements: int = codec.DEFAULT_MAX_ELEMENTS,
                ref_model: RefModel | None = None,
                threads: int = 1) -> CStream:
    """:func:`open_file` for a stream in memory (bytes, or an mmap's memoryview), which
    must stay unchanged while the stream is open (the CStream keeps a reference)."""
    return CStream(data, None, max_memory, max_expansion, max_elements, ref_model, threads)
