"""Thin wrapper over the C core: one call per kernel tensor, arrays zero-copy."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .dtypes import BF16_MAX
from .errors import CoreError

try:
    from ._nntm_c import ffi, lib
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "the NNTM C extension is not built: run `pip install .` in the repository"
    ) from exc

# C output formats, by numpy dtype name.
DTYPE_CODES: dict[str, int] = {
    "float32": lib.NNTM_DTYPE_FLOAT32,
    "float16": lib.NNTM_DTYPE_FLOAT16,
    "bfloat16": lib.NNTM_DTYPE_BFLOAT16,
    "float64": lib.NNTM_DTYPE_FLOAT64,
}
_BITS_DTYPE = {
    "float32": np.uint32,
    "float16": np.uint16,
    "bfloat16": np.uint16,
    "float64": np.uint64,
}


def _check(rv: int, what: str) -> None:
    """Turn a negative C return code into a CoreError naming what failed."""
    if rv < 0:
        text = ffi.string(lib.nntm_strerror(rv)).decode()
        raise CoreError(rv, f"{what}: {text} (code {rv})")


@dataclass(frozen=True)
class TreeParams:
    """Coding tree settings of a kernel tensor (tensor parameter set); off by default."""

    enabled: bool = False
    log2_ctu_size: int = 6
    log2_min_qt_size: int = 3
    max_mtt_depth: int = 2
    log2_min_cu_size: int = 1
    split_mask: int = 0
    skip_enabled: bool = False
    cu_qp_delta_enabled: bool = False
    intra_pred_enabled: bool = False

    def fill(self, t: object) -> None:
        for name in ("log2_ctu_size", "log2_min_qt_size", "max_mtt_depth",
                     "log2_min_cu_size", "split_mask"):
            setattr(t, name, int(getattr(self, name)))
        t.enabled = int(self.enabled)
        t.skip_enabled = int(self.skip_enabled)
        t.cu_qp_delta_enabled = int(self.cu_qp_delta_enabled)
        t.intra_pred_enabled = int(self.intra_pred_enabled)


@dataclass(frozen=True)
class SearchParams:
    """Encoder-only bounds of the coding-tree search (speed presets)."""

    max_depth: int = 4
    skip_no_split: bool = True
    qp_deltas: tuple[int, ...] = (0,)
    intra_copy_range: int = 4   # block vectors tried with intra prediction: |bv| <= this
    # [1.8] a raster tensor's substreams (without row prediction) are coded on up to this
    # many threads, taken from ``budget`` (a nntm.cstream.ThreadBudget shared by the threads
    # that code tensors at once) when one is given; the bytes do not depend on either
    threads: int = 1
    budget: object | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class KernelParams:
    """What the decoder needs for one kernel tensor (from its tensor parameter set)."""

    rows: int
    cols: int
    qp: int
    qp_density: int
    num_gt_flags: int
    tree: TreeParams = TreeParams()
    dq_enabled: int = 0   # 0 off, 1: four DQ states, 2: eight [1.4]
    prob_window: int = 0  # [1.4] 0: dual-rate context estimator; 1..12: counting estimator
    suffix_ctx: int = 0   # [1.5] 1: abs_remainder's first two suffix bins context coded
    row_pred: int = 0     # [1.5] 1: a row_pred_flag per row after the first (no tree)
    substream_rows: int = 0  # [1.8] entry points: rows per substream (no tree); 0: one

    def fill(self, p: object) -> None:
        p.rows, p.cols, p.qp = self.rows, self.cols, self.qp
        p.qp_density, p.num_gt_flags = self.qp_density, self.num_gt_flags
        self.tree.fill(p.tree)
        p.dq_enabled = int(self.dq_enabled)
        p.prob_window = int(self.prob_window)
        p.suffix_ctx = int(self.suffix_ctx)
        p.row_pred = int(self.row_pred)
        p.substream_rows = int(self.substream_rows)

    def to_c(self) -> object:
        p = ffi.new("nntm_kernel_params *")
        self.fill(p)
        return p


CU_RECORD = np.dtype([("x", "<i4"), ("y", "<i4"), ("w", "<i4"), ("h", "<i4"),
                      ("mode", "<i4"), ("qp", "<i4"), ("depth", "<i4"),
                      ("intra", "<i4"), ("bv_x", "<i4"), ("bv_y", "<i4")])
CU_SKIP = int(lib.NNTM_CU_SKIP)
#: CU_RECORD "intra" values (nntm.h NNTM_INTRA_*).
INTRA_NAMES = {int(lib.NNTM_INTRA_NONE): "none", int(lib.NNTM_INTRA_ROW): "row",
               int(lib.NNTM_INTRA_COL): "col", int(lib.NNTM_INTRA_COPY): "copy"}


def _take_trace(buf: object) -> np.ndarray:
    if not buf.size:
        return np.zeros(0, dtype=CU_RECORD)
    return np.frombuffer(bytes(ffi.buffer(buf.data, buf.size)), dtype=CU_RECORD).copy()


def qp_to_step(qp: int, qp_density: int) -> tuple[int, int]:
    """Step size of a QP as (mantissa, shift): step = mantissa * 2**shift."""
    m = ffi.new("int32_t *")
    s = ffi.new("int32_t *")
    _check(lib.nntm_qp_to_step(qp, qp_density, m, s), f"QP {qp}")
    return int(m[0]), int(s[0])


def step_size(qp: int, qp_density: int) -> float:
    m, s = qp_to_step(qp, qp_density)
    return float(np.ldexp(float(m), s))


def max_abs_value(dtype: np.dtype) -> float:
    """Largest finite value of a float dtype: reconstructions never exceed it."""
    dtype = np.dtype(dtype)
    return float(np.finfo(dtype).max) if dtype.name != "bfloat16" else BF16_MAX


PRED_SCALE_SHIFT = int(lib.NNTM_PRED_SCALE_SHIFT)
PRED_SCALE_ONE = int(lib.NNTM_PRED_SCALE_ONE)
MAX_PRED_SCALE = int(lib.NNTM_MAX_PRED_SCALE)
REF_DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class Reference:
    """A reference picture: each sample is predicted by ``samples * scale / 2**12``.

    ``samples`` is the reference kernel tensor (same rows x cols as the coded
    one, float32, float16 or bfloat16); the levels then code the residual.
    """

    samples: np.ndarray
    scale: int = PRED_SCALE_ONE


def _reference_c(ref: Reference | None, shape: tuple[int, int], what: str) -> tuple[object, object]:
    """The C nntm_reference of ``ref`` (or NULL), and the array it points into."""
    if ref is None:
        return ffi.NULL, None
    name = np.dtype(ref.samples.dtype).name
    if name not in REF_DTYPES:
        raise ValueError(f"{what}: a reference picture of dtype {name} (float32, float16 or "
                         "bfloat16 only)")
    if tuple(ref.samples.shape) != tuple(shape):
        raise ValueError(f"{what}: reference shape {ref.samples.shape} != {shape}")
    if not -MAX_PRED_SCALE <= int(ref.scale) <= MAX_PRED_SCALE:
        raise ValueError(f"{what}: prediction scale {ref.scale} outside +-{MAX_PRED_SCALE}")
    samples = np.ascontiguousarray(ref.samples).view(_BITS_DTYPE[name])
    if samples.dtype.byteorder == ">":
        samples = samples.astype(samples.dtype.newbyteorder("<"))
    c = ffi.new("nntm_reference *")
    c.samples = ffi.cast("const void *", ffi.from_buffer(samples))
    c.dtype = DTYPE_CODES[name]
    c.scale = int(ref.scale)
    return c, samples


@dataclass
class KernelResult:
    payload: bytes
    recon: np.ndarray
    levels: np.ndarray
    cus: np.ndarray  # CU_RECORD records, empty without the tree


def encode_kernel(
    weights: np.ndarray,
    params: KernelParams,
    dtype: np.dtype,
    rdoq: bool,
    lambda_scale: float,
    what: str,
    search: SearchParams = SearchParams(),
    importance: np.ndarray | None = None,
    ref: Reference | None = None,
    row_hint: np.ndarray | None = None,
) -> KernelResult:
    """Quantize and code a 2-D kernel tensor (float32 weights); one C call.

    ``importance`` (same shape, >= 0) weights each weight's squared error in
    every rate-distortion decision; with ``ref`` the levels code the residual
    from that reference picture; ``row_hint`` (one int32 per row, -1 or an earlier row
    but the one above) names a reference row that row prediction [1.5] also tries.
    """
    w = np.ascontiguousarray(weights, dtype=np.float32)
    if w.shape != (params.rows, params.cols):
        raise ValueError(f"{what}: shape {w.shape} != ({params.rows}, {params.cols})")
    imp = None
    if importance is not None:
        imp = np.ascontiguousarray(importance, dtype=np.float32)
        if imp.shape != w.shape:
            raise ValueError(f"{what}: importance shape {imp.shape} != {w.shape}")
    name = np.dtype(dtype).name
    if name not in DTYPE_CODES:
        raise ValueError(f"{what}: cannot reconstruct to dtype {name}")
    if len(search.qp_deltas) > 8:
        raise ValueError(f"{what}: at most 8 CU QP deltas to try")
    levels = np.empty(w.shape, dtype=np.int32)
    bits = np.empty(w.shape, dtype=_BITS_DTYPE[name])
    ep = ffi.new("nntm_encoder_params *")
    params.fill(ep.kernel)
    ep.rdoq = 1 if rdoq else 0
    ep.lambda_scale = float(lambda_scale)
    ep.max_abs_value = max_abs_value(np.dtype(dtype))
    ep.search.max_depth = int(search.max_depth)
    ep.search.skip_no_split = int(search.skip_no_split)
    ep.search.num_qp_deltas = len(search.qp_deltas)
    for i, d in enumerate(search.qp_deltas):
        ep.search.qp_deltas[i] = int(d)
    ep.search.intra_copy_range = int(search.intra_copy_range)
    ep.threads = max(1, min(int(search.threads), int(lib.NNTM_MAX_THREADS)))
    hint = None
    if row_hint is not None:
        hint = np.ascontiguousarray(row_hint, dtype=np.int32)
        if hint.shape != (params.rows,):
            raise ValueError(f"{what}: row_hint shape {hint.shape} != ({params.rows},)")
        ep.row_hint = ffi.cast("const int32_t *", ffi.from_buffer(hint))
    out = ffi.new("nntm_buffer *")
    trace = ffi.new("nntm_buffer *")
    cref, _keep = _reference_c(ref, w.shape, what)
    budget = search.budget
    rv = lib.nntm_encode_kernel_shared(
        ep,
        ffi.cast("const float *", ffi.from_buffer(w)),
        ffi.NULL if imp is None else ffi.cast("const float *", ffi.from_buffer(imp)),
        DTYPE_CODES[name],
        cref,
        ffi.from_buffer(bits, require_writable=True),
        ffi.cast("int32_t *", ffi.from_buffer(levels, require_writable=True)),
        out,
        trace,
        ffi.NULL if budget is None else budget.pointer,  # type: ignore[attr-defined]
    )
    try:
        _check(rv, what)
        payload = bytes(ffi.buffer(out.data, out.size)) if out.size else b""
        cus = _take_trace(trace)
    finally:
        lib.nntm_buffer_free(out)
        lib.nntm_buffer_free(trace)
    return KernelResult(payload, bits.view(np.dtype(dtype)), levels, cus)


def decode_scratch_bytes(params: KernelParams) -> int:
    """Bytes of scratch memory the C kernel decoder allocates for ``params`` (beyond the
    levels and reconstruction arrays that :func:`decode_kernel` allocates)."""
    return int(lib.nntm_decode_kernel_scratch(params.to_c()))


def decode_kernel(payload: bytes, params: KernelParams, dtype: np.dtype, what: str,
                  trace: bool = False, ref: Reference | None = None,
                  threads: int = 1, budget: object | None = None) -> KernelResult:
    """Parse a kernel tensor payload and reconstruct it (predicted from ``ref``); one C call.

    ``threads``: the substreams of a tensor with entry points [1.8] are parsed on up to this
    many threads (the result is the same for any count).  ``budget`` (a
    :class:`nntm.cstream.ThreadBudget` shared by the threads that call this at once): the
    call waits for one of its slots and takes substream threads only from its free slots."""
    name = np.dtype(dtype).name
    if name not in DTYPE_CODES:
        raise ValueError(f"{what}: cannot reconstruct to dtype {name}")
    levels = np.empty((params.rows, params.cols), dtype=np.int32)
    bits = np.empty((params.rows, params.cols), dtype=_BITS_DTYPE[name])
    tbuf = ffi.new("nntm_buffer *") if trace else ffi.NULL
    cref, _keep = _reference_c(ref, (params.rows, params.cols), what)
    rv = lib.nntm_decode_kernel_shared(
        params.to_c(),
        ffi.from_buffer(payload),
        len(payload),
        DTYPE_CODES[name],
        cref,
        ffi.from_buffer(bits, require_writable=True),
        ffi.cast("int32_t *", ffi.from_buffer(levels, require_writable=True)),
        tbuf,
        max(1, min(int(threads), int(lib.NNTM_MAX_THREADS))),
        ffi.NULL if budget is None else budget.pointer,  # type: ignore[attr-defined]
    )
    try:
        _check(rv, what)
        cus = _take_trace(tbuf) if trace else np.zeros(0, dtype=CU_RECORD)
    finally:
        if trace:
            lib.nntm_buffer_free(tbuf)
    return KernelResult(payload, bits.view(np.dtype(dtype)), levels, cus)


def reconstruct(levels: np.ndarray, params: KernelParams, dtype: np.dtype, what: str,
                ref: Reference | None = None) -> np.ndarray:
    """Integer reconstruction (plus the prediction from ``ref``), then one exact
    conversion to dtype (a float type)."""
    name = np.dtype(dtype).name
    if name not in DTYPE_CODES:
        raise ValueError(f"{what}: cannot reconstruct to dtype {name}")
    lv = np.ascontiguousarray(levels, dtype=np.int32)
    bits = np.empty(lv.shape, dtype=_BITS_DTYPE[name])
    cref, _keep = _reference_c(ref, lv.shape, what)
    rv = lib.nntm_reconstruct(
        params.to_c(),
        ffi.cast("const int32_t *", ffi.from_buffer(lv)),
        lv.size,
        DTYPE_CODES[name],
        cref,
        ffi.from_buffer(bits, require_writable=True),
    )
    _check(rv, what)
    return bits.view(np.dtype(dtype))


def selftest_bins(
    bins: np.ndarray, ctx: np.ndarray, num_ctx: int, window: int = 0
) -> tuple[float, float, np.ndarray]:
    """Code bins through the real coder and the estimator: (real bits, estimated bits, decoded).

    ``window`` is the contexts' prob_window (0: dual-rate estimator; 1..12: counting).
    """
    b = np.ascontiguousarray(bins, dtype=np.uint8)
    c = np.ascontiguousarray(ctx, dtype=np.uint8)
    dec = np.empty_like(b)
    real = ffi.new("double *")
    est = ffi.new("double *")
    rv = lib.nntm_selftest_bins(
        ffi.from_buffer(b),
        ffi.from_buffer(c),
        b.size,
        num_ctx,
        window,
        real,
        est,
        ffi.from_buffer(dec, require_writable=True),
    )
    _check(rv, "selftest")
    return float(real[0]), float(est[0]), dec


def intra_predict_levels(log2_ctu_size: int, rec: np.ndarray, region: tuple[int, int, int, int],
                         mode: int, bv: tuple[int, int] = (0, 0)) -> np.ndarray | None:
    """The decoder's intra prediction (docs/bitstream.md clause 10.3) of the CU region
    (x0, y0, x1, y1) from the reconstructed levels ``rec`` (rows x cols int32); None
    when the CU may not use the mode (clause 10.2)."""
    r = np.ascontiguousarray(rec, dtype=np.int32)
    x0, y0, x1, y1 = (int(v) for v in region)
    pred = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), dtype=np.int32)
    rv = lib.nntm_intra_predict_levels(
        int(log2_ctu_size), r.shape[0], r.shape[1], ffi.from_buffer("int32_t[]", r), x0, y0, x1,
        y1, int(mode), int(bv[0]), int(bv[1]),
        ffi.from_buffer("int32_t[]", pred, require_writable=True) if pred.size else ffi.NULL)
    if rv == lib.NNTM_ERR_ARG:
        return None
    _check(rv, "intra prediction")
    return pred
