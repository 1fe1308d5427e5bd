"""Thin wrapper over the C core: one call per kernel tensor, arrays zero-copy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
class KernelParams:
    """What the decoder needs for one kernel tensor (from its tensor parameter set)."""

    rows: int
    cols: int
    qp: int
    qp_density: int
    num_gt_flags: int

    def to_c(self) -> object:
        p = ffi.new("nntm_kernel_params *")
        p.rows, p.cols, p.qp = self.rows, self.cols, self.qp
        p.qp_density, p.num_gt_flags = self.qp_density, self.num_gt_flags
        return p


def qp_to_step(qp: int, qp_density: int) -> tuple[int, int]:
    """Step size of a QP as (mantissa, shift): step = mantissa * 2**shift."""
    m = ffi.new("int32_t *")
    s = ffi.new("int32_t *")
    _check(lib.nntm_qp_to_step(qp, qp_density, m, s), f"QP {qp}")
    return int(m[0]), int(s[0])


def step_size(qp: int, qp_density: int) -> float:
    m, s = qp_to_step(qp, qp_density)
    return float(np.ldexp(float(m), s))


def encode_kernel(
    weights: np.ndarray, params: KernelParams, rdoq: bool, lambda_scale: float, what: str
) -> tuple[bytes, np.ndarray]:
    """Quantize and code a 2-D float32 kernel tensor; returns (payload, levels)."""
    w = np.ascontiguousarray(weights, dtype=np.float32)
    if w.shape != (params.rows, params.cols):
        raise ValueError(f"{what}: shape {w.shape} != ({params.rows}, {params.cols})")
    levels = np.empty(w.shape, dtype=np.int32)
    ep = ffi.new("nntm_encoder_params *")
    ep.kernel = params.to_c()[0]
    ep.rdoq = 1 if rdoq else 0
    ep.lambda_scale = float(lambda_scale)
    buf = ffi.new("nntm_buffer *")
    rv = lib.nntm_encode_kernel(
        ep,
        ffi.cast("const float *", ffi.from_buffer(w)),
        ffi.cast("int32_t *", ffi.from_buffer(levels, require_writable=True)),
        buf,
    )
    try:
        _check(rv, what)
        payload = bytes(ffi.buffer(buf.data, buf.size)) if buf.size else b""
    finally:
        lib.nntm_buffer_free(buf)
    return payload, levels


def decode_kernel(payload: bytes, params: KernelParams, what: str) -> np.ndarray:
    """Parse a kernel tensor payload into its levels (rows x cols int32)."""
    levels = np.empty((params.rows, params.cols), dtype=np.int32)
    used = ffi.new("size_t *")
    rv = lib.nntm_decode_kernel(
        params.to_c(),
        ffi.from_buffer(payload),
        len(payload),
        ffi.cast("int32_t *", ffi.from_buffer(levels, require_writable=True)),
        used,
    )
    _check(rv, what)
    if used[0] != len(payload):
        raise CoreError(
            lib.NNTM_ERR_CORRUPT,
            f"{what}: {len(payload) - used[0]} byte(s) after the payload's end",
        )
    return levels


def reconstruct(levels: np.ndarray, params: KernelParams, dtype: np.dtype, what: str) -> np.ndarray:
    """Integer reconstruction, then the exact conversion to dtype (a float type)."""
    name = np.dtype(dtype).name
    if name not in DTYPE_CODES:
        raise ValueError(f"{what}: cannot reconstruct to dtype {name}")
    lv = np.ascontiguousarray(levels, dtype=np.int32)
    bits = np.empty(lv.shape, dtype=_BITS_DTYPE[name])
    rv = lib.nntm_reconstruct(
        params.to_c(),
        ffi.cast("const int32_t *", ffi.from_buffer(lv)),
        lv.size,
        DTYPE_CODES[name],
        ffi.from_buffer(bits, require_writable=True),
    )
    _check(rv, what)
    return bits.view(np.dtype(dtype))


def selftest_bins(
    bins: np.ndarray, ctx: np.ndarray, num_ctx: int
) -> tuple[float, float, np.ndarray]:
    """Code bins through the real coder and the estimator: (real bits, estimated bits, decoded)."""
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
        real,
        est,
        ffi.from_buffer(dec, require_writable=True),
    )
    _check(rv, "selftest")
    return float(real[0]), float(est[0]), dec
