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

:func:`decode_layout` decodes a whole stream on ``workers`` tensors at once (a C stream
each) under one :class:`ThreadBudget`, so that at most ``threads`` threads decode at once
(a tensor with entry points [1.8] gets the threads the other tensors leave free); it is the
C path of both DecoderApp and :func:`nntm.decode` (:func:`decode_bytes`).
"""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import cast

import numpy as np

from . import codec, hls, memory, predict, streaming
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


class ThreadBudget:
    """At most ``threads`` threads decode at once in the C streams opened with this budget
    (``nntm_thread_budget``): a stream's tensor waits for a free slot, and a tensor with
    entry points takes more slots for its substreams only while they are free.  Keep it
    open while its streams decode; ``peak`` is the most threads that decoded at once."""

    def __init__(self, threads: int) -> None:
        self.threads = max(1, min(int(threads), MAX_THREADS))
        self._pp = ffi.new("nntm_thread_budget **")
        self._peak = 0
        rv = lib.nntm_thread_budget_create(self._pp, self.threads)
        if rv < 0:
            raise make_error(rv, "")

    @property
    def pointer(self) -> object:
        return self._pp[0]

    @property
    def peak(self) -> int:
        if self._pp[0] == ffi.NULL:
            return self._peak
        return int(lib.nntm_thread_budget_peak(self._pp[0]))

    def close(self) -> None:
        """Release the C budget (its streams closed first); ``peak`` stays readable."""
        if self._pp[0] != ffi.NULL:
            self._peak = self.peak
        lib.nntm_thread_budget_destroy(self._pp)

    def __enter__(self) -> ThreadBudget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CStream:
    """An open stream (use :func:`open_file` or :func:`open_memory`); close it, or use it
    as a context manager."""

    def __init__(self, data: bytes | memoryview | None, path: str | None,
                 max_memory: int | None, max_expansion: int, max_elements: int,
                 ref_model: RefModel | None, threads: int,
                 budget: ThreadBudget | None = None, stream_md5: bool = True) -> None:
        self._ref_model = ref_model
        self._budget = budget  # kept alive while the stream is open
        self._ref_error: NntmError | None = None  # what the last lookup raised
        self._refs: dict[str, np.ndarray] = {}  # kept alive while C may read them
        self._handle = ffi.new_handle(self)
        settings = ffi.new("nntm_stream_settings *")
        lib.nntm_stream_default_settings(settings)
        settings.max_memory = memory.default_max_memory() if max_memory is None else max_memory
        settings.max_expansion = max_expansion
        settings.max_elements = max_elements
        settings.threads = max(1, min(int(threads), MAX_THREADS))
        if budget is not None:
            settings.budget = budget.pointer
        settings.skip_stream_md5 = 0 if stream_md5 else 1  # check() then returns None
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
              ref_model: RefModel | None = None, threads: int = 1,
              budget: ThreadBudget | None = None, stream_md5: bool = True) -> CStream:
    """Open the stream in file ``path`` (mapped by C).  ``max_memory`` None: half of this
    machine's memory; 0: no limit.  ``threads``: the threads a tensor with entry points
    [1.8] decodes on, at most (with ``budget``: those of its slots that are free).  Raises
    the NntmError of the C reader's first problem.  ``stream_md5`` False: the stream MD5
    [1.6] is not computed (a worker's second stream object over a stream another checks)."""
    return CStream(None, path, max_memory, max_expansion, max_elements, ref_model, threads,
                   budget, stream_md5)


def open_memory(data: bytes | memoryview, max_memory: int | None = None,
                max_expansion: int = memory.DEFAULT_MAX_EXPANSION,
                max_elements: int = codec.DEFAULT_MAX_ELEMENTS,
                ref_model: RefModel | None = None,
                threads: int = 1, budget: ThreadBudget | None = None,
                stream_md5: bool = True) -> CStream:
    """:func:`open_file` for a stream in memory (bytes, or an mmap's memoryview), which
    must stay unchanged while the stream is open (the CStream keeps a reference)."""
    return CStream(data, None, max_memory, max_expansion, max_elements, ref_model, threads,
                   budget, stream_md5)


def cannot_decode(mps: hls.ModelParameterSet) -> str:
    """Why the C reader cannot decode a stream of this model parameter set ('' if it can):
    then the caller decodes it in Python."""
    version = (mps.version_major, mps.version_minor)
    if version > C_MAX_VERSION:
        return (f"format {version[0]}.{version[1]} is newer than the C reader's "
                f"{C_MAX_VERSION[0]}.{C_MAX_VERSION[1]}")
    if mps.tool_flags & hls.TOOL_CONTAINER and not HAVE_ZLIB:
        return "the stream has a container unit and the C extension was built without zlib"
    return ""


def decode_layout(source: str | bytes | memoryview, layout: streaming.Layout,
                  max_elements: int, ref_model: Mapping[str, np.ndarray] | None,
                  threads: int | None,
                  on_tensor: Callable[[str, np.ndarray], None] | None = None,
                  keep: bool = False, on_budget: Callable[[ThreadBudget], None] | None = None,
                  on_open: Callable[[], None] | None = None) -> codec.DecodeResult:
    """Decode a stream (a file's path, or its bytes) whose layout
    :func:`nntm.streaming.scan_layout` read (and whose limits and budget the caller checked
    with the Python path's messages) in C, tensor by tensor into numpy arrays.

    ``layout.workers`` tensors decode at once, a C stream each (a stream decodes one tensor
    at a time), all under one :class:`ThreadBudget` of ``threads`` (None or 0: every core):
    at most that many threads decode at once, however many tensors have entry points.  Each
    tensor goes to ``on_tensor`` in stream order; with ``keep`` the result holds them all.
    A REF_MODEL tensor's reference is looked up and checked by
    :func:`nntm.predict.find_reference` (the Python path's errors).  ``on_budget`` is given
    the budget once every tensor is decoded (its ``peak``); ``on_open`` is called once the
    C streams are open, before any tensor is decoded."""
    by_name = {t.name: (t, layout.tps_units[i].where) for i, t in layout.parsed.items()
               if t.coding_mode == hls.CodingMode.QUANTIZED
               and t.pred_mode == hls.PredMode.REF_MODEL}

    def reference(name: str) -> np.ndarray | None:
        """The reference tensor, checked (and refused with the messages) as Python does."""
        if name not in by_name:
            return None
        tps, where = by_name[name]
        return predict.find_reference(tps, ref_model, {}, where)

    total = streaming._workers(threads)
    budget = ThreadBudget(total)

    def open_stream(stream_md5: bool) -> CStream:
        ref = reference if by_name else None
        if isinstance(source, str):
            return open_file(source, max_memory=0, max_expansion=0, max_elements=max_elements,
                             ref_model=ref, threads=total, budget=budget,
                             stream_md5=stream_md5)
        return open_memory(source, max_memory=0, max_expansion=0, max_elements=max_elements,
                           ref_model=ref, threads=total, budget=budget, stream_md5=stream_md5)

    # tensors at once, as the Python path (1 when a tensor predicts from an earlier one)
    workers = min(layout.workers, max(1, layout.mps.num_tensors))
    streams: list[CStream] = []
    free: queue.SimpleQueue[CStream] = queue.SimpleQueue()

    def work(info: TensorInfo) -> tuple[np.ndarray, codec.TensorReport]:
        s = free.get()
        try:
            start = time.perf_counter()
            array = np.empty(info.shape, dtype=info.dtype)
            md5, ok = s.decode_into(info, array)
        finally:
            free.put(s)
        return array, codec.TensorReport(info.name, info.shape, info.dtype.name, md5.hex(),
                                         ok, time.perf_counter() - start, info.params_ok)

    reports: list[codec.TensorReport] = []
    tensors: dict[str, np.ndarray] = {}

    def emit(done: object) -> None:
        array, report = cast(tuple[np.ndarray, codec.TensorReport], done)
        reports.append(report)
        if keep:
            tensors[report.name] = array
        if on_tensor is not None:
            on_tensor(report.name, array)

    try:
        for k in range(workers):  # the first stream checks the stream MD5: hashed once
            streams.append(open_stream(k == 0))
            free.put(streams[-1])
        first = streams[0]
        if on_open is not None:
            on_open()
        # results in stream order, within the element window the memory budget counts
        with streaming._OrderedPool(workers, streaming.DECODE_WINDOW_ELEMENTS, emit) as pool:
            for info in first.tensors():
                pool.submit(info.num_elements, lambda info=info: work(info))
            pool.drain()
        stream_ok, stream_md5 = first.check()
        if on_budget is not None:
            on_budget(budget)
        return codec.DecodeResult(tensors, reports, first.source_format, {}, stream_ok,
                                  first.version, stream_md5, first.container())
    finally:
        for s in streams:
            s.close()
        budget.close()


def decode_bytes(data: bytes, max_elements: int, ref_model: Mapping[str, np.ndarray] | None,
                 max_memory: int | None, max_expansion: int, threads: int | None = 1
                 ) -> codec.DecodeResult | None:
    """:func:`nntm.codec.decode_detailed` by the C reader: the Python path's refusals first
    (the parameter sets, MaxTensorElements, the memory budget of a decode that keeps every
    tensor, the container unit), with its messages, then every tensor decoded and checked
    in C.  None when the C reader cannot take the stream (:func:`cannot_decode`)."""
    unlimited = 1 << 62  # the budget here is the whole-model one of decode_detailed
    layout = streaming.scan_layout(data, len(data), max_elements, unlimited, unlimited,
                                   threads, keep=True)
    memory.check_budget(len(data), list(layout.parsed.values()), max_memory, max_expansion)
    if cannot_decode(layout.mps):
        return None
    # the container unit's size limit and errors, as Python's
    streaming.parse_container(data, layout.refs, layout.mps, len(data), max_memory,
                              max_expansion)
    return decode_layout(data, layout, max_elements, ref_model, threads, keep=True)
