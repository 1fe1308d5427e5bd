"""The encoder and decoder at scale: tensor by tensor, on every core, in bounded memory.

:func:`encode_file` writes the same stream as :func:`nntm.codec.encode_with_recon`, byte for
byte, to a file as each tensor's units are ready.  A first pass over the tensors
(:func:`nntm.codec.plan_model`) makes the model-level decisions (modes, classes, roles, tool
flags, the model parameter set) and keeps none of them; then tensors are coded on
``threads`` threads (the C core releases the GIL: cffi drops it around every call), each
looking its tensor up when it starts, and their units are written in model order.  A tensor
is coded from its own values and the plan only, so the bytes do not depend on the number of
threads.  At most ``ENCODE_MAX_IN_FLIGHT * threads`` tensors are in flight (being coded, or coded
and waiting for an earlier one to be written), and no more elements than
:data:`WINDOW_ELEMENTS` (or the largest tensor's) at once: memory follows the largest
tensors, not the model.

What still holds more than a tensor:

* ``EarlierTensorPred`` with a reference picture in the model (same-shape tensors):
  tensors are coded one after another and the reconstructions of the quantized ones are
  kept (as :func:`~nntm.codec.encode_with_recon` does);
* importance maps (``ImportanceFile``) are read whole, as is a ``RefModel`` in a format
  other than safetensors;
* an ONNX reconstruction (``-o x.onnx``) fills the graph with every tensor at the end.

:func:`decode_file` decodes a stream file the same way: the file is mapped, its parameter
sets parsed first (the memory budget), then each tensor decoded on a thread from its own
data unit, checked, and handed to ``on_tensor`` (a :class:`nntm.streamio.ModelWriter`) in
stream order; only tensors that a later tensor predicts from are kept.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

import numpy as np

from . import codec, hls, memory, predict
from .config import Config
from .errors import BitstreamError

if TYPE_CHECKING:
    from .cstream import ThreadBudget

__all__ = ["DECODE_WINDOW_ELEMENTS", "MAX_IN_FLIGHT", "WINDOW_ELEMENTS", "DecodeStream",
           "EncodeStream", "decode_file", "default_threads", "encode_file"]

#: elements of the tensors in flight (coded, or coded and waiting for an earlier one to be
#: written) at once; a single larger tensor is always admitted.  With MAX_IN_FLIGHT jobs a
#: thread (the decoder's; its memory budget counts them) a long tensor at the head does not
#: stall the other threads for a while.  The encoder admits ENCODE_MAX_IN_FLIGHT a thread: a
#: coded tensor waiting to be written holds its units only, and a model's many small tensors
#: are then coded beside one long tensor (MiniLM's word embedding takes 8.7 of its 13 s with
#: the weight-fidelity cfg; at 16 a thread the second thread stopped after 32 tensors).
WINDOW_ELEMENTS = 1 << 28
MAX_IN_FLIGHT = 16
ENCODE_MAX_IN_FLIGHT = 1024
#: the decoder's window: half the encoder's, since a decoded tensor waiting to be written
#: is held whole (a coded one: its units only)
DECODE_WINDOW_ELEMENTS = 1 << 27
_HASH_CHUNK = 1 << 24
_NO_RECON = np.zeros(0, dtype=np.float32)


def default_threads() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _workers(threads: int | None) -> int:
    return default_threads() if not threads else max(1, int(threads))


@dataclass
class EncodeStream:
    """What :func:`encode_file` reports: per-tensor stats in model order, CU records, the
    stream's size, and the reconstruction when it was asked to keep it."""

    stats: list[codec.TensorStats]
    cus: dict[str, np.ndarray]
    size: int
    recon: dict[str, np.ndarray] = field(default_factory=dict)


class _OrderedPool:
    """Jobs run on ``threads`` threads, their results handed to ``emit`` in submission
    order.  :meth:`submit` blocks (emitting finished results) while the window is full:
    at most ``max_in_flight`` jobs a thread and ``window_elements`` elements in flight (a
    single larger job is admitted alone).  One thread: each job runs as it is submitted."""

    def __init__(self, threads: int, window_elements: int,
                 emit: Callable[[object], None], max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self.threads, self.window, self.emit = threads, window_elements, emit
        self.max_in_flight = max_in_flight
        self.pending: deque[tuple[int, Future[object]]] = deque()
        self.inflight = 0
        self.pool = (ThreadPoolExecutor(max_workers=threads, thread_name_prefix="nntm")
                     if threads > 1 else None)

    def submit(self, elements: int, work: Callable[[], object]) -> None:
        if self.pool is None:
            self.emit(work())
            return
        while self.pending and (len(self.pending) >= self.max_in_flight * self.threads
                                or self.inflight + elements > self.window):
            self._drain_one()
        self.pending.append((elements, self.pool.submit(work)))
        self.inflight += elements

    def _drain_one(self) -> None:
        elements, fut = self.pending.popleft()
        result = fut.result()
        self.inflight -= elements
        self.emit(result)

    def drain(self) -> None:
        """Wait for every job submitted and emit the results."""
        while self.pending:
            self._drain_one()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> _OrderedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def encode_file(
    tensors: Mapping[str, np.ndarray],
    config: Config,
    out: IO[bytes],
    source_format: hls.SourceFormat = hls.SourceFormat.UNKNOWN,
    progress: Callable[[codec.TensorStats], None] | None = None,
    importance: Mapping[str, np.ndarray] | None = None,
    ref_model: Mapping[str, np.ndarray] | None = None,
    consumers: Mapping[str, Sequence[tuple[str, int]]] | None = None,
    qp_offsets: Mapping[str, int] | None = None,
    container: hls.Container | None = None,
    threads: int | None = None,
    on_recon: Callable[[str, np.ndarray], None] | None = None,
    keep_recon: bool = False,
    window_elements: int = WINDOW_ELEMENTS,
) -> EncodeStream:
    """Encode a model into ``out`` (a binary file open for reading and writing, at its
    start), tensor by tensor; the bytes equal :func:`nntm.codec.encode_with_recon`'s.

    ``threads``: tensors coded at once (None or 0: every core).  ``on_recon`` is called with
    each tensor's reconstruction in model order (write it, then it is dropped);
    ``keep_recon`` keeps them all in the result.  Other arguments as for
    :func:`~nntm.codec.encode_with_recon`.
    """
    plan = codec.plan_model(tensors, config, source_format, importance, ref_model, consumers,
                            qp_offsets, container)
    integrity = bool(plan.tool_flags & hls.TOOL_INTEGRITY)
    head = plan.head()
    out.write(head)
    md5 = hashlib.md5(head)
    size = len(head)
    sequential = plan.needs_earlier_recon
    earlier: dict[str, np.ndarray] = {}
    need_recon = sequential or keep_recon or on_recon is not None
    result = EncodeStream([], {}, 0)
    clustered = False

    def job(tensor_id: int) -> Callable[[], object]:
        name = plan.names[tensor_id]

        def work() -> codec.CodedTensor:
            array = codec._little_endian(np.asarray(tensors[name]))
            coded = codec.code_tensor(plan, tensor_id, array, earlier, ref_model)
            if not need_recon:  # a coded tensor waiting to be written holds its units only
                coded.recon = _NO_RECON
            return coded
        return work

    def emit(obj: object) -> None:
        nonlocal size, clustered
        coded = obj if isinstance(obj, codec.CodedTensor) else None
        assert coded is not None
        name = coded.stat.name
        out.write(coded.units)
        md5.update(coded.units)
        size += len(coded.units)
        clustered |= coded.clustered
        if coded.cus is not None:
            result.cus[name] = coded.cus
        if sequential:  # as encode_with_recon: a later tensor may predict from it
            earlier[name] = coded.recon
        if keep_recon:
            result.recon[name] = coded.recon
        if on_recon is not None:
            on_recon(name, coded.recon)
        result.stats.append(coded.stat)
        if progress is not None:
            progress(coded.stat)

    # the tensor workers, and a large tensor's substream threads [1.8], share `threads`
    with (codec.share_threads(plan, threads) as workers,
          _OrderedPool(workers, window_elements, emit, ENCODE_MAX_IN_FLIGHT) as pool):
        for i in range(len(plan.names)):
            pool.submit(int(np.prod(plan.infos[i].shape, dtype=np.int64)), job(i))
        pool.drain()
    if clustered:  # TOOL_CLUSTER, format 1.2: the model parameter set keeps its length
        new_head = plan.head(clustered=True)
        assert len(new_head) == len(head)
        out.seek(0)
        out.write(new_head)
        if integrity:
            md5 = _rehash(out, size)
        out.seek(size)
    eos = hls.end_of_stream(md5.digest() if integrity else None)
    out.write(eos)
    out.flush()
    result.size = size + len(eos)
    return result


def _rehash(f: IO[bytes], size: int) -> hashlib._Hash:
    """The MD5 of the first ``size`` bytes of ``f`` (read back in chunks)."""
    f.flush()
    f.seek(0)
    md5 = hashlib.md5()
    left = size
    while left:
        chunk = f.read(min(_HASH_CHUNK, left))
        if not chunk:
            raise OSError("the bitstream file ended while hashing it")
        md5.update(chunk)
        left -= len(chunk)
    return md5


def write_stream(path: str, encode: Callable[[IO[bytes]], object]) -> object:
    """Run ``encode`` on a new temporary file beside ``path`` (open for reading and writing)
    and rename it over ``path`` once complete; nothing is left behind on failure."""
    from .modelio import _atomic_write

    out: list[object] = []

    def writer(f: IO[bytes]) -> None:
        out.append(encode(f))
    _atomic_write(path, writer, what="bitstream file", make_parents=True, readable=True)
    return out[0]


# ---------------------------------------------------------------- decoding


@dataclass
class DecodeStream:
    """A stream decoded by :func:`decode_file`: reports and checks as
    :class:`nntm.codec.DecodeResult` (tensors only when kept)."""

    result: codec.DecodeResult
    size: int


@dataclass
class _UnitRef:
    index: int
    unit_type: hls.UnitType
    offset: int
    size: int

    @property
    def start(self) -> int:
        return self.offset + hls.UNIT_HEADER_BYTES


#: release the mapped stream in steps of at least this many bytes (a multiple of pages)
RELEASE_BYTES = 1 << 24


def _unit_refs(buf: mmap.mmap | bytes) -> list[_UnitRef]:
    """The units of a stream, headers checked, payloads not copied (as hls.split_units)."""
    refs: list[_UnitRef] = []
    pos, total = 0, len(buf)
    while pos < total:
        index = len(refs)
        if total - pos < hls.UNIT_HEADER_BYTES:
            raise BitstreamError(f"unit {index} at byte {pos}: truncated unit header "
                                 f"({total - pos} of {hls.UNIT_HEADER_BYTES} bytes)")
        raw_type = buf[pos]
        try:
            unit_type = hls.UnitType(raw_type)
        except ValueError:
            raise BitstreamError(
                f"unit {index} at byte {pos}: unknown unit_type {raw_type}") from None
        size = int.from_bytes(buf[pos + 1:pos + 5], "big")
        start = pos + hls.UNIT_HEADER_BYTES
        if size > total - start:
            raise BitstreamError(
                f"unit {index} ({unit_type.name.lower()} at byte {pos}): truncated, "
                f"payload size {size} but only {total - start} bytes remain")
        refs.append(_UnitRef(index, unit_type, pos, size))
        pos = start + size
    return refs


def _unit(buf: mmap.mmap | bytes, ref: _UnitRef) -> hls.Unit:
    return hls.Unit(ref.index, ref.unit_type, ref.offset,
                    bytes(buf[ref.start:ref.start + ref.size]))


def parse_container(buf: mmap.mmap | bytes, refs: Sequence[_UnitRef],
                    mps: hls.ModelParameterSet, size: int, max_memory: int | None,
                    max_expansion: int) -> hls.Container | None:
    """The container unit [1.7] of a stream whose units ``refs`` are (scan_layout's), checked
    against MaxMemory / MaxExpansion with the Python path's messages; None without the tool."""
    if not mps.tool_flags & hls.TOOL_CONTAINER:
        return None
    return codec._parse_container([_unit(buf, r) for r in refs[:2]], mps, size, max_memory,
                                  max_expansion)


def _data_unit(buf: mmap.mmap | bytes, ref: _UnitRef) -> tuple[int, bytes]:
    """(tensor_id, payload) of a data unit, copying only its payload."""
    head = hls.Unit(ref.index, ref.unit_type, ref.offset,
                    bytes(buf[ref.start:ref.start + min(ref.size, 16)]))
    tensor_id, rest = hls.parse_tensor_data_unit(head)
    skip = len(head.payload) - len(rest)
    return tensor_id, bytes(buf[ref.start + skip:ref.start + ref.size])


def _release(buf: mmap.mmap | bytes, released: int, end: int) -> int:
    """Give the pages of a mapped stream between ``released`` and ``end`` back to the system
    (every unit before ``end`` has been read and copied): the resident size stays the tensors
    in work, not the stream read so far.  Returns the new released offset."""
    advice = getattr(mmap, "MADV_DONTNEED", None)
    if not isinstance(buf, mmap.mmap) or advice is None:
        return released
    stop = end - end % mmap.PAGESIZE
    if stop - released >= RELEASE_BYTES:
        buf.madvise(advice, released, stop - released)
        return stop
    return released


def _tensor_bytes(tps: hls.TensorParameterSet) -> int:
    return tps.num_elements * tps.dtype.itemsize


def decode_file(
    path: str,
    on_tensor: Callable[[str, np.ndarray], None] | None = None,
    keep: bool = False,
    max_elements: int = codec.DEFAULT_MAX_ELEMENTS,
    ref_model: Mapping[str, np.ndarray] | None = None,
    max_memory: int | None = None,
    max_expansion: int = memory.DEFAULT_MAX_EXPANSION,
    threads: int | None = None,
    on_layout: Callable[[hls.ModelParameterSet, list[hls.TensorParameterSet]], None]
    | None = None,
    window_elements: int = DECODE_WINDOW_ELEMENTS,
) -> DecodeStream:
    """Decode the stream in file ``path`` tensor by tensor; check every hash.

    ``on_layout`` is called once with the model parameter set and every tensor parameter set
    (stream order) before any tensor is decoded; ``on_tensor`` with each tensor as it is
    decoded, in stream order (its report, in the result, says whether its hashes matched).
    With ``keep`` the result holds every tensor (else none).  Errors and limits as
    :func:`nntm.codec.decode_detailed`; the memory budget counts the tensors in flight, not
    the model.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            buf: mmap.mmap | bytes = b""
            return DecodeStream(_decode(buf, 0, on_tensor, keep, max_elements, ref_model,
                                        max_memory, max_expansion, threads, on_layout,
                                        window_elements), 0)
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        return DecodeStream(_decode(buf, size, on_tensor, keep, max_elements, ref_model,
                                    max_memory, max_expansion, threads, on_layout,
                                    window_elements), size)
    finally:
        if isinstance(buf, mmap.mmap):
            buf.close()


def _decode(buf: mmap.mmap | bytes, size: int,
            on_tensor: Callable[[str, np.ndarray], None] | None, keep: bool,
            max_elements: int, ref_model: Mapping[str, np.ndarray] | None,
            max_memory: int | None, max_expansion: int, threads: int | None,
            on_layout: Callable[[hls.ModelParameterSet, list[hls.TensorParameterSet]], None]
            | None,
            window_elements: int) -> codec.DecodeResult:
    layout = scan_layout(buf, size, max_elements, max_memory, max_expansion, threads, keep,
                         window_elements)
    refs, mps, tps_units, parsed = layout.refs, layout.mps, layout.tps_units, layout.parsed
    earlier_refs, workers = layout.earlier_refs, layout.workers
    if on_layout is not None:
        on_layout(mps, list(parsed.values()))
    md5 = hashlib.md5()
    first = 1
    container = parse_container(buf, refs, mps, size, max_memory, max_expansion)
    if container is not None:
        first = 2
    md5.update(buf[:refs[first].offset] if len(refs) > first else buf[:size])
    state = _DecodeState(mps, parsed, earlier_refs, keep, on_tensor, ref_model)
    state.threads = _workers(threads)
    if state.threads > 1:
        # the tensor workers and their substream threads share one budget of N threads:
        # at most N decode at once (not N workers of N substream threads each)
        from .cstream import ThreadBudget

        state.budget = ThreadBudget(state.threads)
    try:
        return _decode_units(buf, size, refs, first, mps, tps_units, workers, window_elements,
                             md5, state, container)
    finally:
        if state.budget is not None:
            state.budget.close()


def _decode_units(buf: mmap.mmap | bytes, size: int, refs: list[_UnitRef], first: int,
                  mps: hls.ModelParameterSet, tps_units: dict[int, hls.Unit], workers: int,
                  window_elements: int, md5: hashlib._Hash, state: _DecodeState,
                  container: hls.Container | None) -> codec.DecodeResult:
    ended = False
    released = 0  # the mapped stream's pages before this offset are given back
    with _OrderedPool(workers, window_elements, state.emit) as pool:
        for ref in refs[first:]:
            if ended:
                raise BitstreamError(f"unit {ref.index} ({ref.unit_type.name.lower()} at "
                                     f"byte {ref.offset}): unit after end_of_stream")
            if ref.unit_type == hls.UnitType.END_OF_STREAM:
                pool.drain()
                expected = hls.parse_end_of_stream(_unit(buf, ref), mps)
                if expected is not None:
                    digest = md5.digest()
                    state.stream_md5, state.stream_ok = digest.hex(), digest == expected
                ended = True
                continue
            state.unit(buf, ref, tps_units.get(ref.index), pool)
            md5.update(buf[ref.offset:ref.start + ref.size])
            released = _release(buf, released, ref.start + ref.size)
        if not ended:
            raise BitstreamError(
                f"truncated stream: no end_of_stream unit after {len(refs)} units")
        pool.drain()
    return state.finish(container)


class _DecodeState:
    """The unit-by-unit checks of :func:`nntm.codec.decode_detailed`, with each tensor's
    decode and hash check deferred to a job run on the thread pool."""

    def __init__(self, mps: hls.ModelParameterSet, parsed: dict[int, hls.TensorParameterSet],
                 earlier_refs: set[int], keep: bool,
                 on_tensor: Callable[[str, np.ndarray], None] | None,
                 ref_model: Mapping[str, np.ndarray] | None) -> None:
        self.mps, self.parsed, self.earlier_refs = mps, parsed, earlier_refs
        self.keep, self.on_tensor, self.ref_model = keep, on_tensor, ref_model
        self.integrity = bool(mps.tool_flags & hls.TOOL_INTEGRITY)
        self.pending: dict[int, hls.TensorParameterSet] = {}
        self.tps_md5s: dict[int, bytes] = {}
        self.submitted: set[int] = set()
        self.seen_ids: set[int] = set()
        self.seen_names: set[str] = set()
        self.by_id: dict[int, np.ndarray] = {}
        self.refs: dict[int, np.ndarray] = {}
        self.payloads: dict[int, tuple[bytes, str]] = {}
        self.tensors: dict[str, np.ndarray] = {}
        self.reports: list[codec.TensorReport] = []
        self.done = 0
        self.stream_ok: bool | None = None
        self.stream_md5 = ""
        self.threads = 1  # [1.8] threads that parse the substreams of one tensor
        self.budget: ThreadBudget | None = None  # shared by the workers when threads > 1

    def unit(self, buf: mmap.mmap | bytes, ref: _UnitRef, tps_unit: hls.Unit | None,
             pool: _OrderedPool) -> None:
        where = f"unit {ref.index} ({ref.unit_type.name.lower()} at byte {ref.offset})"
        if ref.unit_type == hls.UnitType.TENSOR_PARAMETER_SET:
            assert tps_unit is not None
            tps = self.parsed[ref.index]
            if tps.tensor_id >= self.mps.num_tensors:
                raise BitstreamError(f"{where}: tensor_id {tps.tensor_id} but the model "
                                     f"has {self.mps.num_tensors} tensors")
            if tps.tensor_id in self.seen_ids or tps.name in self.seen_names:
                raise BitstreamError(f"{where}: tensor_id {tps.tensor_id} "
                                     f"('{tps.name}') appears twice")
            self.seen_ids.add(tps.tensor_id)
            self.seen_names.add(tps.name)
            if tps.coding_mode == hls.CodingMode.QUANTIZED and tps.pred_mode:
                self.refs[tps.tensor_id] = predict.find_reference(tps, self.ref_model,
                                                                  self.by_id, where)
            self.pending[tps.tensor_id] = tps
            if self.integrity:
                self.tps_md5s[tps.tensor_id] = hls.unit_md5(
                    bytes(buf[ref.offset:ref.start + ref.size]))
        elif ref.unit_type == hls.UnitType.TENSOR_DATA_UNIT:
            tensor_id, payload = _data_unit(buf, ref)
            if tensor_id not in self.pending or tensor_id in self.submitted \
                    or tensor_id in self.payloads:
                raise BitstreamError(f"{where}: data for tensor_id {tensor_id} "
                                     "without a parameter set before it")
            self.payloads[tensor_id] = (payload, where)
        elif ref.unit_type == hls.UnitType.TENSOR_HASH_UNIT:
            tensor_id, md5, tps_md5 = hls.parse_tensor_hash_unit(_unit(buf, ref), self.mps)
            if tensor_id not in self.payloads or tensor_id not in self.pending:
                raise BitstreamError(f"{where}: hash for tensor_id {tensor_id} "
                                     "without a data unit before it, or a second one")
            tps = self.pending.pop(tensor_id)
            payload, data_where = self.payloads.pop(tensor_id)
            self.submitted.add(tensor_id)
            params_ok = None if tps_md5 is None else self.tps_md5s.pop(tensor_id) == tps_md5
            ref_array = self.refs.pop(tensor_id, None)
            pool.submit(tps.num_elements,
                        _decode_job(tps, payload, data_where, ref_array, md5, params_ok,
                                    self.threads, self.budget))
            if tensor_id in self.earlier_refs:  # a later tensor predicts from this one
                pool.drain()
        else:
            raise BitstreamError(f"{where}: unexpected {ref.unit_type.name.lower()}")

    def emit(self, obj: object) -> None:
        tps, array, report = obj  # type: ignore[misc]
        self.reports.append(report)
        if tps.tensor_id in self.earlier_refs:
            self.by_id[tps.tensor_id] = array
        if self.keep:
            self.tensors[tps.name] = array
        if self.on_tensor is not None:
            self.on_tensor(tps.name, array)

    def finish(self, container: hls.Container | None) -> codec.DecodeResult:
        if self.pending or self.payloads:
            names = ", ".join(f"'{t.name}'" for t in self.pending.values())
            raise BitstreamError(f"tensor(s) {names} have no data or hash unit")
        if len(self.reports) != self.mps.num_tensors:
            raise BitstreamError(f"model parameter set announces {self.mps.num_tensors} "
                                 f"tensors, stream holds {len(self.reports)}")
        return codec.DecodeResult(self.tensors, self.reports, self.mps.source_format, {},
                                  self.stream_ok, (self.mps.version_major,
                                                   self.mps.version_minor),
                                  self.stream_md5, container)


def _decode_job(tps: hls.TensorParameterSet, payload: bytes, where: str,
                ref: np.ndarray | None, md5: bytes, params_ok: bool | None, threads: int = 1,
                budget: ThreadBudget | None = None) -> Callable[[], object]:
    def work() -> tuple[hls.TensorParameterSet, np.ndarray, codec.TensorReport]:
        start = time.perf_counter()
        array = codec._decode_tensor(tps, payload, where, False, {}, ref, threads, budget)
        seconds = time.perf_counter() - start
        actual = codec.tensor_md5(array)
        report = codec.TensorReport(tps.name, tps.shape, tps.dtype.name, actual.hex(),
                                    actual == md5, seconds, params_ok)
        return tps, array, report
    return work


@dataclass
class Layout:
    """What :func:`scan_layout` read of a stream: its units (headers only), the model and
    tensor parameter sets, and the tensors a later one predicts from."""

    refs: list[_UnitRef]
    mps: hls.ModelParameterSet
    tps_units: dict[int, hls.Unit]
    parsed: dict[int, hls.TensorParameterSet]
    earlier_refs: set[int]
    workers: int


def scan_layout(buf: mmap.mmap | bytes, size: int, max_elements: int,
                max_memory: int | None, max_expansion: int, threads: int | None,
                keep: bool = False, window_elements: int = DECODE_WINDOW_ELEMENTS) -> Layout:
    """Read a stream's unit headers and parameter sets (no payload is copied) and refuse it,
    before anything is allocated for a tensor, when it announces a tensor over
    ``max_elements`` or its streaming decode would exceed the memory budget
    (:func:`nntm.memory.check_streaming_budget`; the checks and messages of
    :func:`decode_file`, which DecoderApp makes for either decoder)."""
    magic_at = hls.UNIT_HEADER_BYTES
    if (size >= magic_at + len(hls.MAGIC)
            and bytes(buf[magic_at:magic_at + len(hls.MAGIC)]) != hls.MAGIC):
        raise BitstreamError("not an NNTM bitstream: it does not begin with a model parameter "
                             "set carrying the magic 'NNTM'")
    refs = _unit_refs(buf)
    if not refs or refs[0].unit_type != hls.UnitType.MODEL_PARAMETER_SET:
        raise BitstreamError("unit 0: the stream does not start with a model parameter set")
    mps = hls.parse_model_parameter_set(_unit(buf, refs[0]))
    tps_units = {r.index: _unit(buf, r) for r in refs
                 if r.unit_type == hls.UnitType.TENSOR_PARAMETER_SET}
    parsed = {i: hls.parse_tensor_parameter_set(u, mps) for i, u in tps_units.items()}
    codec.check_element_limit(parsed, {i: u.where for i, u in tps_units.items()}, max_elements)
    _release(buf, 0, size)  # the header scan's faults read ahead over the whole stream
    workers = _workers(threads)
    earlier_refs = {t.ref_tensor_id for t in parsed.values()
                    if t.coding_mode == hls.CodingMode.QUANTIZED
                    and t.pred_mode == hls.PredMode.EARLIER_TENSOR}
    if earlier_refs:
        workers = 1  # a tensor waits for the one it predicts from
    largest_unit = max((r.size for r in refs if r.unit_type == hls.UnitType.TENSOR_DATA_UNIT),
                       default=0)
    largest = max((t.num_elements for t in parsed.values()), default=0)
    itemsize = max((t.dtype.itemsize for t in parsed.values()), default=1)
    memory.check_streaming_budget(size, list(parsed.values()), largest_unit, workers,
                                  keep, earlier_refs, max_memory, max_expansion,
                                  MAX_IN_FLIGHT * workers,
                                  max(window_elements, largest) * (itemsize + 1))
    return Layout(refs, mps, tps_units, parsed, earlier_refs, workers)
