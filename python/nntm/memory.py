"""The decoder's memory budget: a whole stream's needs, known from its parameter sets.

A few bytes of skipped coding units can announce gigabytes of zeros, and the per-tensor
element limit (``MaxTensorElements``) does not bound a stream of many such tensors.  Before
anything is allocated for a tensor, the decoder sums what the stream will need and refuses
it (:class:`MemoryBudgetError`) when

* the estimated peak memory exceeds ``MaxMemory`` (default: half of the machine's memory), or
* the tensors it decodes from its own bits (not predicted from a reference model) exceed
  ``MaxExpansion`` bytes per stream byte (a decompression bomb; real models stay below
  about 10^3).

The estimate is an upper bound of what the Python decoder holds at its peak: the stream
(twice: the bytes and the unit payloads), every decoded tensor (the model is returned
whole), and for the largest tensor its working set: the levels (int32), the raw samples,
the arranged copy, the bytes hashed, and the C decoder's own scratch
(:func:`nntm.core.decode_scratch_bytes`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from . import hls
from .errors import BitstreamError

__all__ = [
    "DEFAULT_MAX_EXPANSION",
    "MemoryBudgetError",
    "check_budget",
    "check_streaming_budget",
    "default_max_memory",
    "estimate",
    "format_bytes",
    "parse_size",
]

DEFAULT_MAX_EXPANSION = 1 << 20
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


class MemoryBudgetError(BitstreamError):
    """A stream whose decode would need more memory than the decoder may use."""


def physical_memory() -> int | None:
    """This machine's memory in bytes (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def default_max_memory() -> int:
    """Half of this machine's memory (8 GiB where it cannot be read)."""
    total = physical_memory()
    return total // 2 if total else 8 << 30


def parse_size(text: str, allow_auto: bool = True) -> int:
    """A byte count with an optional K/M/G/T suffix (powers of 1024), or with ``allow_auto``
    'auto': :func:`default_max_memory`."""
    if allow_auto and text.strip().lower() == "auto":
        return default_max_memory()
    m = _SIZE_RE.match(text)
    if not m:
        raise ValueError(f"'{text}' is not a size (bytes, or a number with K, M, G or T"
                         + (", or auto)" if allow_auto else ")"))
    value = int(float(m[1]) * _UNITS[m[2].upper()])
    if value <= 0:
        raise ValueError(f"'{text}' is not a positive size")
    return value


def format_bytes(n: float) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def _tensor_bytes(tps: hls.TensorParameterSet) -> int:
    return tps.num_elements * tps.dtype.itemsize


def _working_bytes(tps: hls.TensorParameterSet) -> int:
    """Memory a tensor's decode needs on top of the decoded tensor it leaves."""
    n, size = tps.num_elements, tps.dtype.itemsize
    if tps.coding_mode == hls.CodingMode.QUANTIZED:
        from . import core
        from .codec import kernel_params

        scratch = core.decode_scratch_bytes(kernel_params(tps))
        return n * (4 + 3 * size) + scratch  # levels, samples, hashed bytes, C scratch
    return n * (2 * size + 4)  # a copy while converting, the hashed bytes, cluster indices


def estimate(stream_bytes: int, tpss: Sequence[hls.TensorParameterSet]) -> int:
    """An upper bound of the peak memory of decoding the stream (bytes)."""
    held = sum(_tensor_bytes(t) for t in tpss)
    work = max((_working_bytes(t) for t in tpss), default=0)
    return 2 * stream_bytes + held + work


def check_budget(stream_bytes: int, tpss: Sequence[hls.TensorParameterSet],
                 max_memory: int | None, max_expansion: int) -> None:
    """Raise MemoryBudgetError if the stream needs more than the decoder may use."""
    _check_need(estimate(stream_bytes, tpss), len(tpss), max_memory)
    _check_expansion(stream_bytes, tpss, max_expansion)


def _check_need(need: int, num_tensors: int, max_memory: int | None) -> None:
    limit = default_max_memory() if max_memory is None else max_memory
    if need > limit:
        raise MemoryBudgetError(
            f"the stream's {num_tensors} tensors need about {format_bytes(need)} to decode, "
            f"more than the memory budget of {format_bytes(limit)} (MaxMemory, default half "
            "of this machine's memory): raise --MaxMemory if the stream is trusted")


def _check_expansion(stream_bytes: int, tpss: Sequence[hls.TensorParameterSet],
                     max_expansion: int) -> None:
    own = sum(_tensor_bytes(t) for t in tpss if t.pred_mode != hls.PredMode.REF_MODEL)
    if own > max_expansion * max(stream_bytes, 1):
        raise MemoryBudgetError(
            f"a stream of {stream_bytes} bytes announces {format_bytes(own)} of tensors, "
            f"{own / max(stream_bytes, 1):.3g} bytes a stream byte, more than MaxExpansion "
            f"{max_expansion} (a decompression bomb?): raise --MaxExpansion if the stream "
            "is trusted")


def estimate_streaming(tpss: Sequence[hls.TensorParameterSet], largest_unit: int, workers: int,
                       keep: bool, kept_ids: set[int], in_flight: int,
                       window_bytes: int | None = None) -> int:
    """An upper bound of the peak memory of decoding a mapped stream tensor by tensor
    (nntm.streaming): the decoded tensors and data-unit payloads in flight (at most
    ``in_flight`` tensors), the working sets of the ``workers`` largest, and the tensors kept
    (all with ``keep``, else those a later tensor predicts from)."""
    sizes = sorted((_tensor_bytes(t) for t in tpss), reverse=True)
    works = sorted((_working_bytes(t) for t in tpss), reverse=True)
    inflight = (sum(sizes[:in_flight]) + min(in_flight, len(tpss)) * largest_unit
                + sum(works[:workers]))
    if window_bytes is not None:  # the decoder's window of elements in flight bounds it too
        inflight = min(inflight, 2 * window_bytes + sum(works[:workers]))
    held = (sum(sizes) if keep else
            sum(_tensor_bytes(t) for t in tpss if t.tensor_id in kept_ids))
    return inflight + held


def check_streaming_budget(stream_bytes: int, tpss: Sequence[hls.TensorParameterSet],
                           largest_unit: int, workers: int, keep: bool, kept_ids: set[int],
                           max_memory: int | None, max_expansion: int,
                           in_flight: int | None = None,
                           window_bytes: int | None = None) -> None:
    """:func:`check_budget` for the streaming decoder (:func:`estimate_streaming`)."""
    need = estimate_streaming(tpss, largest_unit, workers, keep, kept_ids,
                              2 * workers if in_flight is None else in_flight, window_bytes)
    _check_need(need, len(tpss), max_memory)
    _check_expansion(stream_bytes, tpss, max_expansion)
