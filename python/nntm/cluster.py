"""Clustering-based quantization (tensor coding mode CLUSTERED, format 1.2).

A tensor is rearranged into *points* (a single weight, a flattened kh x kw
kernel, a whole filter, or the kernels across one input channel), optionally
split into *subspaces* along its output or input channels, each with its own
codebook.  The C core (``nntm_encode_cluster`` / ``nntm_decode_cluster``, one
call per tensor) clusters the points, separates outliers and codes the
payload; the codebooks travel exactly (integers at the codebook step) in the
tensor parameter set.  The encoder codes a tensor this way only when it costs
less than scalar coding, by D + lambda * R with the scalar coder's lambda and
importance-weighted distortion; the codebook size is chosen the same way.

See docs/bitstream.md ("Clustered tensors") and docs/ce/CE2_clustering.md.
"""

from __future__ import annotations

import enum
import fnmatch
import math
from dataclasses import dataclass

import numpy as np

from . import hls
from .config import Config
from .core import _BITS_DTYPE, DTYPE_CODES, _check, ffi, lib, max_abs_value, step_size
from .errors import BitstreamError, ConfigError, CoreError, EncodeError


class PointType(enum.IntEnum):
    """point_type: what one point of the clustering is."""

    SCALAR = 0     # one weight (scalar codebook)
    KERNEL = 1     # the kh*kw weights of one kernel (conv tensors)
    FILTER = 2     # every weight of one output channel
    INCHANNEL = 3  # the kernels of every output channel across one input channel


POINT_NAMES = {"scalar": PointType.SCALAR, "kernel": PointType.KERNEL,
               "filter": PointType.FILTER, "inchannel": PointType.INCHANNEL}
AXIS_NAMES = {"none": 0, "out": 1, "in": 2}


@dataclass(frozen=True)
class Layout:
    """Where each point value comes from: ``tensor.reshape(-1)[perm]`` lists the
    subspaces one after another, each as num_points x dims (row-major)."""

    perm: np.ndarray
    num_points: tuple[int, ...]
    dims: tuple[int, ...]
    row_points: tuple[int, ...]  # points per row: the above neighbour of the index contexts


def point_type_applies(shape: tuple[int, ...], point_type: int) -> bool:
    """Whether a point type is allowed for a tensor shape (docs/bitstream.md)."""
    if len(shape) < 2 or 0 in shape:
        return False
    if point_type == PointType.KERNEL:
        return len(shape) >= 3 and int(np.prod(shape[2:])) > 1
    return point_type in (PointType.SCALAR, PointType.FILTER, PointType.INCHANNEL)


def _bounds(total: int, parts: int) -> list[tuple[int, int]]:
    return [(s * total // parts, (s + 1) * total // parts) for s in range(parts)]


def _subspace_channels(shape: tuple[int, ...], point_type: int, axis: int,
                       num_subspaces: int) -> int:
    """The channels along the subspace axis; ValueError when the geometry does not apply."""
    if not point_type_applies(shape, point_type):
        raise ValueError(f"point_type {point_type} does not apply to shape {shape}")
    if axis == 0 and num_subspaces != 1:
        raise ValueError("several subspaces need a subspace axis")
    channels = shape[axis - 1] if axis else 1
    if not 1 <= num_subspaces <= min(channels, hls.MAX_SUBSPACES):
        raise ValueError(f"{num_subspaces} subspaces along an axis of {channels} channels")
    return channels


def geometry(shape: tuple[int, ...], point_type: int, axis: int,
             num_subspaces: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(num_points, dims, row_points) of each subspace, without building the permutation
    (cheap for any shape: the parameter set parser uses it before any size guard)."""
    shape = tuple(int(d) for d in shape)
    channels = _subspace_channels(shape, point_type, axis, num_subspaces)
    rest = 1
    for d in shape[2:]:
        rest *= d
    counts, dims, rows = [], [], []
    for lo, hi in _bounds(channels, num_subspaces):
        o = hi - lo if axis == 1 else shape[0]
        i = hi - lo if axis == 2 else shape[1]
        if point_type == PointType.SCALAR:
            n, d, row = o * i * rest, 1, i * rest
        elif point_type == PointType.KERNEL:
            n, d, row = o * i, rest, i
        elif point_type == PointType.FILTER:
            n, d, row = o, i * rest, 1
        else:
            n, d, row = i, o * rest, 1
        counts.append(n)
        dims.append(d)
        rows.append(max(1, row))
    return tuple(counts), tuple(dims), tuple(rows)


def layout(shape: tuple[int, ...], point_type: int, axis: int, num_subspaces: int) -> Layout:
    """The point geometry of a clustered tensor; ValueError when it does not apply.

    Subspace s holds the channels [s*C/S, (s+1)*C/S) (floor) along the axis
    (1: output channels, shape[0]; 2: input channels, shape[1]); inside it the
    points are, in C order: every weight (scalar), every kernel [o, i] (kernel),
    every output channel o (filter), every input channel i (inchannel).
    """
    shape = tuple(int(d) for d in shape)
    channels = _subspace_channels(shape, point_type, axis, num_subspaces)
    index = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    perms, counts, dims, rows = [], [], [], []
    for lo, hi in _bounds(channels, num_subspaces):
        part = index if axis == 0 else (index[lo:hi] if axis == 1 else index[:, lo:hi])
        row = 1
        if point_type == PointType.SCALAR:
            pts = part.reshape(-1, 1)
            row = int(np.prod(part.shape[1:]))
        elif point_type == PointType.KERNEL:
            pts = part.reshape(part.shape[0] * part.shape[1], -1)
            row = part.shape[1]
        elif point_type == PointType.FILTER:
            pts = part.reshape(part.shape[0], -1)
        else:
            pts = np.swapaxes(part, 0, 1).reshape(part.shape[1], -1)
        rows.append(max(1, row))
        perms.append(pts.reshape(-1))
        counts.append(pts.shape[0])
        dims.append(pts.shape[1])
    return Layout(np.concatenate(perms), tuple(counts), tuple(dims), tuple(rows))


# ------------------------------------------------------------------ settings


@dataclass(frozen=True)
class Settings:
    """The encoder's clustering settings for one tensor (from the cfg)."""

    mode: int                 # 0 off, 1 RD decision against scalar, 2 always
    point_type: PointType
    axis: int
    num_subspaces: int
    sizes: tuple[int, ...]
    codebook_qp_offset: int
    outliers: bool
    outlier_mode: int         # lib.NNTM_OUTLIER_SPREAD / FRACTION
    outlier_threshold: float
    outlier_qp_offset: int
    outlier_pos_mode: int
    residual: bool
    residual_qp_offset: int
    iterations: int
    min_elements: int


def _point_rules(text: str) -> list[tuple[str, PointType]]:
    rules = []
    for item in filter(None, (t.strip() for t in text.split(";"))):
        key, sep, value = item.partition("=")
        if not sep or value.strip() not in POINT_NAMES:
            raise ConfigError(f"ClusterPointRules: '{item}' is not glob=scalar|kernel|filter|"
                              "inchannel")
        rules.append((key.strip(), POINT_NAMES[value.strip()]))
    return rules


def settings(cfg: Config, name: str, layer_label: str, shape: tuple[int, ...]) -> Settings:
    """Clustering settings of a tensor: ClusterPointRules (name glob or layer
    label = point type, first match) over ClusterPoint; a point type that does
    not apply to the shape falls back to scalar, and the subspaces are at most
    the channels along their axis."""
    point = POINT_NAMES[str(cfg["ClusterPoint"])]
    for key, value in _point_rules(str(cfg["ClusterPointRules"])):
        if key == layer_label or fnmatch.fnmatchcase(name, key):
            point = value
            break
    if not point_type_applies(shape, point):
        point = PointType.SCALAR
    axis = AXIS_NAMES[str(cfg["ClusterSubspaceAxis"])]
    subspaces = int(cfg["ClusterSubspaces"]) if axis else 1
    if axis and len(shape) >= 2:
        subspaces = max(1, min(subspaces, shape[axis - 1]))
    return Settings(
        mode=int(cfg["Cluster"]), point_type=point, axis=axis, num_subspaces=subspaces,
        sizes=tuple(int(k) for k in cfg["ClusterSizes"]),
        codebook_qp_offset=int(cfg["ClusterCodebookQPOffset"]),
        outliers=bool(cfg["ClusterOutliers"]),
        outlier_mode=lib.NNTM_OUTLIER_SPREAD if cfg["OutlierMode"] == "spread"
        else lib.NNTM_OUTLIER_FRACTION,
        outlier_threshold=float(cfg["OutlierThreshold"]),
        outlier_qp_offset=int(cfg["OutlierQPOffset"]),
        outlier_pos_mode=1 if cfg["OutlierPositions"] == "runs" else 0,
        residual=bool(cfg["ClusterResidual"]),
        residual_qp_offset=int(cfg["ClusterResidualQPOffset"]),
        iterations=int(cfg["ClusterIterations"]),
        min_elements=int(cfg["ClusterMinElements"]),
    )


def check_settings(cfg: Config) -> None:
    """Report bad clustering cfg values up front (ConfigError)."""
    _point_rules(str(cfg["ClusterPointRules"]))
    if cfg["OutlierMode"] == "fraction" and float(cfg["OutlierThreshold"]) > 0.5:
        raise ConfigError("OutlierThreshold: a fraction (OutlierMode fraction) is at most 0.5")
    if cfg["ClusterSubspaceAxis"] == "none" and int(cfg["ClusterSubspaces"]) != 1:
        raise ConfigError("ClusterSubspaces > 1 needs ClusterSubspaceAxis out or in")


# ------------------------------------------------------------------ C calls


def _params(c: hls.ClusterInfo, qp: int, qp_density: int, num_gt_flags: int,
            geo: Layout, sizes: list[int]) -> object:
    p = ffi.new("nntm_cluster_params *")
    p.num_subspaces = len(geo.num_points)
    p.qp_density = qp_density
    p.codebook_qp = qp - c.codebook_qp_offset
    p.outlier_qp = qp - c.outlier_qp_offset
    p.residual_qp = qp + c.residual_qp_offset
    p.num_gt_flags = num_gt_flags
    p.outliers_enabled = int(c.outliers_enabled)
    p.outlier_pos_mode = c.outlier_pos_mode
    p.residual_enabled = int(c.residual_enabled)
    for s, (n, d) in enumerate(zip(geo.num_points, geo.dims, strict=True)):
        p.num_points[s], p.dims[s], p.codebook_size[s] = n, d, sizes[s]
        p.row_points[s] = geo.row_points[s]
    return p


@dataclass
class ClusterResult:
    info: hls.ClusterInfo
    payload: bytes
    recon: np.ndarray      # tensor shape, the tensor's dtype
    labels: np.ndarray     # per point: codebook index or -1 (outlier)


def encode_tensor(array: np.ndarray, importance: np.ndarray | None, st: Settings, qp: int,
                  qp_density: int, num_gt_flags: int, lambda_scale: float, size: int,
                  what: str) -> ClusterResult:
    """Cluster and code one tensor with codebooks of at most ``size`` entries; one C call."""
    shape = tuple(array.shape)
    geo = layout(shape, st.point_type, st.axis, st.num_subspaces)
    info = hls.ClusterInfo(int(st.point_type), st.axis, st.num_subspaces, st.codebook_qp_offset,
                           st.outliers, st.outlier_qp_offset, st.outlier_pos_mode, st.residual,
                           st.residual_qp_offset)
    name = array.dtype.name
    points = np.ascontiguousarray(array.astype(np.float32).reshape(-1)[geo.perm])
    imp = None
    if importance is not None:
        imp = np.ascontiguousarray(np.asarray(importance, np.float32).reshape(-1)[geo.perm])
    ep = ffi.new("nntm_cluster_encoder_params *")
    ep.cluster = _params(info, qp, qp_density, num_gt_flags, geo, [size] * len(geo.dims))[0]
    ep.qp = qp
    ep.lambda_scale = lambda_scale
    ep.outlier_mode = st.outlier_mode
    ep.outlier_threshold = st.outlier_threshold
    ep.max_iterations = st.iterations
    ep.max_abs_value = max_abs_value(array.dtype)
    nsub = len(geo.dims)
    sizes = np.zeros(nsub, dtype=np.int32)
    books = np.zeros(sum(size * d for d in geo.dims), dtype=np.int32)
    labels = np.zeros(sum(geo.num_points), dtype=np.int32)
    bits = np.empty(points.size, dtype=_BITS_DTYPE[name])
    out = ffi.new("nntm_buffer *")
    rv = lib.nntm_encode_cluster(
        ep, ffi.cast("const float *", ffi.from_buffer(points)),
        ffi.NULL if imp is None else ffi.cast("const float *", ffi.from_buffer(imp)),
        DTYPE_CODES[name], ffi.cast("int32_t *", ffi.from_buffer(sizes, require_writable=True)),
        ffi.cast("int32_t *", ffi.from_buffer(books, require_writable=True)),
        ffi.cast("int32_t *", ffi.from_buffer(labels, require_writable=True)),
        ffi.from_buffer(bits, require_writable=True), out)
    try:
        _check(rv, what)
        payload = bytes(ffi.buffer(out.data, out.size)) if out.size else b""
    finally:
        lib.nntm_buffer_free(out)
    pos = 0
    for k, d in zip(sizes.tolist(), geo.dims, strict=True):
        info.codebooks.append(books[pos:pos + k * d].reshape(k, d).copy())
        pos += k * d
    recon = np.empty(points.size, dtype=_BITS_DTYPE[name])
    recon[geo.perm] = bits
    return ClusterResult(info, payload, recon.view(array.dtype).reshape(shape), labels)


def decode_tensor(tps: hls.TensorParameterSet, payload: bytes, what: str) -> np.ndarray:
    """Parse and reconstruct a CLUSTERED tensor; one C call."""
    return decode_tensor_labels(tps, payload, what)[0]


def decode_tensor_labels(tps: hls.TensorParameterSet, payload: bytes,
                         what: str) -> tuple[np.ndarray, np.ndarray]:
    """A CLUSTERED tensor and the label of each point (codebook index, -1: outlier)."""
    c = tps.cluster
    assert c is not None
    geo = layout(tps.shape, c.point_type, c.subspace_axis, c.num_subspaces)
    name = tps.dtype.name
    if name not in DTYPE_CODES:
        raise BitstreamError(f"{what}: cannot reconstruct to dtype {name}")
    p = _params(c, tps.qp, tps.qp_density, tps.num_gt_flags, geo,
                [b.shape[0] for b in c.codebooks])
    books = np.ascontiguousarray(np.concatenate([b.reshape(-1) for b in c.codebooks])
                                 .astype(np.int32))
    total = sum(n * d for n, d in zip(geo.num_points, geo.dims, strict=True))
    bits = np.empty(total, dtype=_BITS_DTYPE[name])
    labels = np.empty(sum(geo.num_points), dtype=np.int32)
    rv = lib.nntm_decode_cluster(
        p, ffi.cast("const int32_t *", ffi.from_buffer(books)), ffi.from_buffer(payload),
        len(payload), DTYPE_CODES[name], ffi.from_buffer(bits, require_writable=True),
        ffi.cast("int32_t *", ffi.from_buffer(labels, require_writable=True)))
    try:
        _check(rv, what)
    except CoreError as exc:
        raise BitstreamError(str(exc)) from exc
    out = np.empty(total, dtype=_BITS_DTYPE[name])
    out[geo.perm] = bits
    return out.view(tps.dtype).reshape(tps.shape), labels


# ------------------------------------------------------------------ mode decision


def weighted_sse(original: np.ndarray, recon: np.ndarray, importance: np.ndarray | None) -> float:
    """The encoder's distortion: sum of importance * squared error, each term in float64
    and summed in a fixed order, so that the mode decision does not depend on the order
    in which a numpy build happens to add (pairwise, SIMD width)."""
    e = np.asarray(original, np.float64) - np.asarray(recon, np.float64)
    e *= e
    if importance is not None:
        e *= np.asarray(importance, np.float64).reshape(e.shape)
    flat = e.reshape(-1)
    pad = (-flat.size) % _SUM_COLUMNS
    if pad:
        flat = np.concatenate([flat, np.zeros(pad)])
    # rows added one after another (an element-wise loop: the same order on every machine)
    columns = np.add.reduce(flat.reshape(-1, _SUM_COLUMNS), axis=0)
    return math.fsum(columns.tolist())


_SUM_COLUMNS = 1024


@dataclass
class Decision:
    """What the RD mode decision found for one tensor."""

    clustered: ClusterResult | None  # None: scalar coding wins
    scalar_cost: float
    cluster_costs: dict[int, float]  # codebook size -> D + lambda * R


def choose(array: np.ndarray, importance: np.ndarray | None, st: Settings,
           tps: hls.TensorParameterSet, tool_flags: int, scalar_bits: int,
           scalar_recon: np.ndarray, lambda_scale: float, what: str) -> Decision:
    """Cluster coding against scalar coding by D + lambda * R (bits of the
    tensor's parameter set and data unit), lambda = LambdaScale * step(QP)^2."""
    lam = lambda_scale * step_size(tps.qp, tps.qp_density) ** 2
    d_scalar = weighted_sse(array, scalar_recon, importance)
    best: ClusterResult | None = None
    best_cost = d_scalar + lam * scalar_bits if st.mode == 1 else float("inf")
    scalar_cost = d_scalar + lam * scalar_bits
    costs: dict[int, float] = {}
    for size in st.sizes:
        try:
            res = encode_tensor(array, importance, st, tps.qp, tps.qp_density, tps.num_gt_flags,
                                lambda_scale, size, f"{what}, {size} clusters")
        except CoreError as exc:
            if exc.code == lib.NNTM_ERR_RANGE:
                continue  # weights too large for the codebook/outlier QP: keep scalar
            raise EncodeError(str(exc)) from exc
        ctps = cluster_tps(tps, res.info)
        bits = 8 * (len(hls.tensor_parameter_set(ctps, tool_flags))
                    + len(hls.tensor_data_unit(tps.tensor_id, res.payload)))
        cost = weighted_sse(array, res.recon, importance) + lam * bits
        costs[size] = cost
        if cost < best_cost:
            best, best_cost = res, cost
    return Decision(best, scalar_cost, costs)


def cluster_tps(tps: hls.TensorParameterSet, info: hls.ClusterInfo) -> hls.TensorParameterSet:
    """The parameter set of a tensor coded in CLUSTERED mode."""
    out = hls.TensorParameterSet(tps.tensor_id, tps.name, tps.dtype, tps.shape,
                                 hls.CodingMode.CLUSTERED)
    out.layer_type, out.qp, out.qp_density = tps.layer_type, tps.qp, tps.qp_density
    out.num_gt_flags, out.signal_type, out.cluster = tps.num_gt_flags, tps.signal_type, info
    return out


def eligible(array: np.ndarray, st: Settings) -> bool:
    """Whether the encoder tries clustering on a (quantized, float) tensor."""
    return (st.mode != 0 and array.size >= st.min_elements
            and point_type_applies(tuple(array.shape), st.point_type))
