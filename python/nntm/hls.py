"""High-level syntax: the units of an NNTM bitstream (docs/bitstream.md).

Every unit is byte-aligned and self-delimiting::

    nntm_unit() {
        unit_type            u(8)
        unit_payload_size    u(32)
        unit_payload()       unit_payload_size bytes
    }

Function and field names follow the syntax tables of docs/bitstream.md.
"""

from __future__ import annotations

import enum
import hashlib
import zlib
from dataclasses import dataclass, field

import numpy as np
from bitstring import BitStream, ReadError

from . import dtypes
from .core import TreeParams
from .errors import BitstreamError

MAGIC = b"NNTM"
FORMAT_VERSION_MAJOR = 1
FORMAT_VERSION_MINOR = 8
UNIT_HEADER_BYTES = 5
MAX_NDIM = 8
MAX_NAME_BYTES = 4096
MAX_DIM = (1 << 31) - 1
MAX_TENSORS = (1 << 24) - 1
MAX_ELEMENTS = (1 << 31) - 1   # per tensor (kernel tensors are addressed with int32)
MAX_UNIT_PAYLOAD = (1 << 32) - 1
PROFILE_MAIN = 0
# tool_flags bits (format 1.1); a stream with no bit set is a format 1.0 stream.
TOOL_CODING_TREE = 1 << 0       # tensor parameter sets carry a tree partition type
TOOL_SIGNAL_TYPES = 1 << 1      # the model parameter set lists input signal types
TOOL_DEP_QUANT = 1 << 2         # tensor parameter sets carry dep_quant_enabled_flag
TOOL_INTER_PRED = 1 << 3        # (format 1.2) tensor parameter sets carry pred_mode
PRED_SCALE_ONE = 4096           # pred_scale: the prediction is ref * pred_scale / 2^12
MAX_PRED_SCALE = 65535
REF_DTYPE_CODES = (0, 1, 2)     # a reference picture is float32, float16 or bfloat16
# ---- clustering-based quantization (format 1.2); bit 1 << 4 is reserved
TOOL_CLUSTER = 1 << 5           # tensors may use tensor_coding_mode CLUSTERED
TOOL_INTRA_PRED = 1 << 6        # (format 1.3) tree parameters carry intra_pred_enabled_flag
TOOL_PROB_WINDOW = 1 << 7       # (format 1.4) tensor parameter sets carry prob_window
MAX_PROB_WINDOW = 12            # prob_window 1..12: the counting estimator; 0: dual-rate
TOOL_DQ_8STATES = 1 << 8        # (format 1.4) TPSs with DQ carry dq_8_states_flag
TOOL_SUFFIX_CTX = 1 << 9        # (format 1.5) tensor parameter sets carry suffix_ctx_flag
TOOL_DQ_32STATES = 1 << 10      # (format 1.5) TPSs with DQ carry dq_32_states_flag
TOOL_ROW_PRED = 1 << 11         # (format 1.5) TPSs without a tree carry row_pred_enabled_flag
TOOL_INTEGRITY = 1 << 12        # (format 1.6) hash units carry tps_md5, end_of_stream stream_md5
TOOL_CONTAINER = 1 << 13        # (format 1.7) a container unit follows the model parameter set
TOOL_ENTRY_POINTS = 1 << 14     # (format 1.8) TPSs without a tree carry substream_rows
KNOWN_TOOL_FLAGS = (TOOL_CODING_TREE | TOOL_SIGNAL_TYPES | TOOL_DEP_QUANT | TOOL_INTER_PRED
                    | TOOL_CLUSTER | TOOL_INTRA_PRED | TOOL_PROB_WINDOW | TOOL_DQ_8STATES
                    | TOOL_SUFFIX_CTX | TOOL_DQ_32STATES | TOOL_ROW_PRED | TOOL_INTEGRITY
                    | TOOL_CONTAINER | TOOL_ENTRY_POINTS)
# the lowest format minor version that may carry each tool flag
TOOL_MIN_MINOR = {TOOL_CODING_TREE: 1, TOOL_SIGNAL_TYPES: 1, TOOL_DEP_QUANT: 1,
                  TOOL_INTER_PRED: 2, TOOL_CLUSTER: 2, TOOL_INTRA_PRED: 3, TOOL_PROB_WINDOW: 4,
                  TOOL_DQ_8STATES: 4, TOOL_SUFFIX_CTX: 5, TOOL_DQ_32STATES: 5,
                  TOOL_ROW_PRED: 5, TOOL_INTEGRITY: 6, TOOL_CONTAINER: 7,
                  TOOL_ENTRY_POINTS: 8}
# container_compression codes (format 1.7)
CONTAINER_STORED = 0            # container_data as is
CONTAINER_ZLIB = 1              # container_data is a zlib stream (RFC 1950)
MAX_CONTAINER_BYTES = (1 << 31) - 1  # container_data_size, after decompression
MAX_SIGNAL_TYPES = 255
MAX_TREE_TYPE = 3


class UnitType(enum.IntEnum):
    MODEL_PARAMETER_SET = 0
    TENSOR_PARAMETER_SET = 1
    TENSOR_DATA_UNIT = 2
    TENSOR_HASH_UNIT = 3
    END_OF_STREAM = 4
    CONTAINER_UNIT = 5          # [1.7] what rebuilds the source file (TOOL_CONTAINER)


class CodingMode(enum.IntEnum):
    """tensor_coding_mode: how a tensor's data unit is coded."""

    QUANTIZED = 0  # kernel tensor, CABAC payload
    LOSSLESS = 1   # raw little-endian bytes of the tensor
    CLUSTERED = 2  # codebooks in the parameter set, cluster_data() payload [1.2]


class PredMode(enum.IntEnum):
    """pred_mode: where a quantized tensor's prediction comes from (format 1.2)."""

    NONE = 0            # no prediction: the levels code the weights
    REF_MODEL = 1       # the tensor of the same name in the reference model
    EARLIER_TENSOR = 2  # the reconstruction of an earlier tensor of this stream


class SourceFormat(enum.IntEnum):
    UNKNOWN = 0
    SAFETENSORS = 1
    NPZ = 2
    ONNX = 3                    # [1.7] an ONNX ModelProto (container_format 3: its template)


# tensor_dtype codes: the NumPy dtype names, in code order (bfloat16 is ml_dtypes', loaded
# only when a tensor of it is met; DTYPES, the dtypes themselves, is built on first access)
DTYPE_NAMES: tuple[str, ...] = (
    "float32", "float16", "bfloat16", "float64", "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64", "bool",
)
FLOAT_DTYPES = {"float32", "float16", "bfloat16", "float64"}


def dtype_code(dtype: np.dtype) -> int:
    """The tensor_dtype code of a (native or little-endian) dtype."""
    dtype = np.dtype(dtype)
    name = dtype.name
    if name in DTYPE_NAMES and dtype.byteorder != ">" and dtypes.by_name(name) == dtype:
        return DTYPE_NAMES.index(name)
    raise ValueError(f"unsupported dtype {dtype}")


def dtype_of_code(code: int) -> np.dtype:
    """The dtype of a tensor_dtype code (IndexError for a code past the table)."""
    return dtypes.by_name(DTYPE_NAMES[code])


def __getattr__(name: str) -> object:
    if name == "DTYPES":  # imports ml_dtypes, so only on demand
        return [dtype_of_code(i) for i in range(len(DTYPE_NAMES))]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class ModelParameterSet:
    version_major: int = FORMAT_VERSION_MAJOR
    version_minor: int = FORMAT_VERSION_MINOR
    profile_idc: int = 0
    tool_flags: int = 0
    num_tensors: int = 0
    source_format: SourceFormat = SourceFormat.UNKNOWN
    signal_types: list[str] = field(default_factory=lambda: ["default"])


# ---------------------------------------------------------------- clustered tensors [1.2]
MAX_POINT_TYPE = 3          # scalar, kernel, filter, inchannel (nntm.cluster.PointType)
MAX_SUBSPACE_AXIS = 2       # none, output channels, input channels
MAX_SUBSPACES = 64
MAX_CODEBOOK_SIZE = 256
MAX_CODEBOOK_VALUE = (1 << 30) - 1
MAX_CLUSTER_QP_OFFSET = 64


@dataclass
class ClusterInfo:
    """The clustered-mode fields of a tensor parameter set (docs/bitstream.md 3.4.1)."""

    point_type: int = 0
    subspace_axis: int = 0
    num_subspaces: int = 1
    codebook_qp_offset: int = 8     # codebook step: QP - offset
    outliers_enabled: bool = False
    outlier_qp_offset: int = 4      # outlier step: QP - offset
    outlier_pos_mode: int = 0       # 0 flags, 1 runs
    residual_enabled: bool = False
    residual_qp_offset: int = 0     # residual step: QP + offset
    codebooks: list[np.ndarray] = field(default_factory=list)  # (K, D) int32 per subspace


def _write_cluster_info(w: _Writer, c: ClusterInfo) -> None:
    w.u(8, c.point_type)
    w.u(8, c.subspace_axis)
    w.ue(c.num_subspaces - 1)
    w.ue(c.codebook_qp_offset)
    w.u(1, int(c.outliers_enabled))
    if c.outliers_enabled:
        w.se(c.outlier_qp_offset)
        w.u(1, c.outlier_pos_mode)
    w.u(1, int(c.residual_enabled))
    if c.residual_enabled:
        w.se(c.residual_qp_offset)
    for book in c.codebooks:
        w.ue(book.shape[0] - 1)
        for v in book.reshape(-1).tolist():
            w.se(int(v))


def _read_cluster_info(r: _Reader, name: str, shape: tuple[int, ...]) -> ClusterInfo:
    from .cluster import geometry  # the point geometry lives with the tool

    c = ClusterInfo()
    c.point_type = r.u(8)
    if c.point_type > MAX_POINT_TYPE:
        raise r.fail(f"tensor '{name}': unknown point_type {c.point_type}")
    c.subspace_axis = r.u(8)
    if c.subspace_axis > MAX_SUBSPACE_AXIS:
        raise r.fail(f"tensor '{name}': unknown subspace_axis {c.subspace_axis}")
    c.num_subspaces = r.ue(MAX_SUBSPACES - 1, "num_subspaces_minus1") + 1
    c.codebook_qp_offset = r.ue(MAX_CLUSTER_QP_OFFSET, "codebook_qp_offset")
    c.outliers_enabled = bool(r.u(1))
    if c.outliers_enabled:
        c.outlier_qp_offset = r.se(-MAX_CLUSTER_QP_OFFSET, MAX_CLUSTER_QP_OFFSET,
                                   "outlier_qp_offset")
        c.outlier_pos_mode = r.u(1)
    c.residual_enabled = bool(r.u(1))
    if c.residual_enabled:
        c.residual_qp_offset = r.se(-MAX_CLUSTER_QP_OFFSET, MAX_CLUSTER_QP_OFFSET,
                                    "residual_qp_offset")
    try:
        _, point_dims, _ = geometry(shape, c.point_type, c.subspace_axis, c.num_subspaces)
    except ValueError as exc:
        raise r.fail(f"tensor '{name}': {exc}") from None
    for dims in point_dims:
        size = r.ue(MAX_CODEBOOK_SIZE - 1, "codebook_size_minus1") + 1
        if size * dims > (1 << 24):
            raise r.fail(f"tensor '{name}': codebook of {size}x{dims} values is too large")
        values = [r.se(-MAX_CODEBOOK_VALUE, MAX_CODEBOOK_VALUE, "codebook_value")
                  for _ in range(size * dims)]
        c.codebooks.append(np.array(values, dtype=np.int32).reshape(size, dims))
    return c


@dataclass
class TensorParameterSet:
    tensor_id: int
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    coding_mode: CodingMode
    layer_type: int = 0
    arrangement: int = 0
    rows: int = 0
    cols: int = 0
    qp: int = 0
    qp_density: int = 0
    num_gt_flags: int = 1
    tree_type: int = 0
    tree: TreeParams = field(default_factory=TreeParams)
    signal_type: int = 0
    dq_enabled: bool = False
    dq_states: int = 4           # [1.4] 4 or 8 states of dependent quantization; [1.5] 32
    prob_window: int = 0         # [1.4] 0: dual-rate context estimator; 1..12: counting
    suffix_ctx: bool = False     # [1.5] abs_remainder's first two suffix bins context coded
    row_pred: bool = False       # [1.5] rows may be predicted from the row above (no tree)
    substream_rows: int = 0      # [1.8] entry points: rows per substream; 0 one substream
    pred_mode: PredMode = PredMode.NONE
    ref_tensor_id: int = 0       # EARLIER_TENSOR: the tensor_id predicted from
    ref_dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float32))
    pred_scale: int = PRED_SCALE_ONE
    ref_md5: bytes = b""         # MD5 of the reference tensor (as tensor_md5 computes it)
    cluster: ClusterInfo | None = None  # CLUSTERED tensors only

    @property
    def num_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


# ---------------------------------------------------------------- writing


class _Writer:
    """The bits of a unit payload, most significant first: whole bytes in ``chunks``, the
    bits after them in the integer ``acc`` (``nbits`` of them, fewer than 64 after each
    call).  The same bits as bitstring's ``uint``/``ue``/``se`` codes, without building a
    bitstring object a syntax element (the parameter sets are written once a tensor, and
    once a probe by rate control)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.acc = 0
        self.nbits = 0
        self.total = 0  # bits written

    def _put(self, n: int, value: int) -> None:
        self.acc = (self.acc << n) | value
        self.nbits += n
        self.total += n
        if self.nbits >= 64:
            keep = self.nbits & 7
            whole = self.nbits - keep
            self.chunks.append((self.acc >> keep).to_bytes(whole // 8, "big"))
            self.acc &= (1 << keep) - 1
            self.nbits = keep

    def u(self, n: int, value: int) -> None:
        value = int(value)
        if not 0 <= value < (1 << n):
            raise ValueError(f"{value} does not fit in an unsigned {n}-bit field")
        self._put(n, value)

    def ue(self, value: int) -> None:
        value = int(value)
        if value < 0:
            raise ValueError(f"ue(v) of a negative value {value}")
        code = value + 1
        self._put(2 * code.bit_length() - 1, code)  # Floor(Log2(code)) zeros, then code

    def se(self, value: int) -> None:
        value = int(value)
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def byte_alignment(self) -> None:
        """A 1 then 0s up to the next byte boundary (always at least one bit)."""
        self._put(1, 1)
        pad = (-self.total) % 8
        if pad:
            self._put(pad, 0)

    def bytes(self, data: bytes) -> None:
        if self.nbits % 8 == 0:  # byte-aligned: the data as it is
            if self.nbits:
                self.chunks.append(self.acc.to_bytes(self.nbits // 8, "big"))
                self.acc = self.nbits = 0
            self.chunks.append(bytes(data))
            self.total += 8 * len(data)
        else:
            for byte in bytes(data):
                self._put(8, byte)

    def tobytes(self) -> bytes:
        if self.total % 8:
            raise AssertionError("unit payload not byte-aligned")
        return b"".join(self.chunks) + (self.acc.to_bytes(self.nbits // 8, "big")
                                         if self.nbits else b"")


def rows_cols(shape: tuple[int, ...], arrangement: int = 0) -> tuple[int, int]:
    """Kernel tensor size of an arrangement (see nntm.arrange); (-1, -1) if it cannot apply."""
    if arrangement == 1:  # kernel tiles: O x I x kh x kw -> (O*kh) x (I*kw)
        if len(shape) != 4:
            return -1, -1
        return shape[0] * shape[2], shape[1] * shape[3]
    count = 1
    for d in shape[1:]:
        count *= d
    if len(shape) <= 1:
        return 1, (shape[0] if shape else 1)
    return shape[0], count


# Largest codes the parameter sets may carry (see nntm.arrange).
MAX_LAYER_TYPE = 7
MAX_ARRANGEMENT = 1
# split_mask of each tree_partition_type: none, qt, qtbt (BT_H, BT_V), qtmtt (BT and TT)
TREE_SPLIT_MASK = (0, 0, (1 << 2) | (1 << 3), 0x3C)


def _unit(unit_type: UnitType, payload: bytes) -> bytes:
    if len(payload) > MAX_UNIT_PAYLOAD:
        raise ValueError(f"unit payload of {len(payload)} bytes exceeds 2^32 - 1")
    return bytes([int(unit_type)]) + len(payload).to_bytes(4, "big") + payload


def model_parameter_set(mps: ModelParameterSet) -> bytes:
    w = _Writer()
    w.bytes(MAGIC)
    w.u(8, mps.version_major)
    w.u(8, mps.version_minor)
    w.u(8, mps.profile_idc)
    w.u(32, mps.tool_flags)
    w.ue(mps.num_tensors)
    w.u(8, int(mps.source_format))
    if mps.tool_flags & TOOL_SIGNAL_TYPES:
        w.ue(len(mps.signal_types))
        for name in mps.signal_types:
            raw = name.encode("utf-8")
            w.ue(len(raw))
            w.bytes(raw)
    w.byte_alignment()
    return _unit(UnitType.MODEL_PARAMETER_SET, w.tobytes())


def tensor_parameter_set(tps: TensorParameterSet, tool_flags: int = 0) -> bytes:
    w = _Writer()
    w.ue(tps.tensor_id)
    name = tps.name.encode("utf-8")
    w.ue(len(name))
    w.bytes(name)
    w.u(8, dtype_code(tps.dtype))
    w.ue(len(tps.shape))
    for d in tps.shape:
        w.ue(d)
    w.u(8, int(tps.coding_mode))
    if tps.coding_mode == CodingMode.QUANTIZED:
        w.u(8, tps.layer_type)
        w.u(8, tps.arrangement)
        w.ue(tps.rows)
        w.ue(tps.cols)
        w.se(tps.qp)
        w.ue(tps.qp_density)
        w.ue(tps.num_gt_flags - 1)
        if tool_flags & TOOL_CODING_TREE:
            w.u(8, tps.tree_type)
            if tps.tree_type:
                t = tps.tree
                w.ue(t.log2_ctu_size)
                w.ue(t.log2_min_cu_size)
                w.ue(t.log2_min_qt_size - t.log2_min_cu_size)
                if tps.tree_type >= 2:
                    w.ue(t.max_mtt_depth)
                w.u(1, int(t.skip_enabled))
                w.u(1, int(t.cu_qp_delta_enabled))
                if tool_flags & TOOL_INTRA_PRED:
                    w.u(1, int(t.intra_pred_enabled))
            elif tps.tree.intra_pred_enabled:
                raise ValueError(f"tensor '{tps.name}': intra prediction needs the coding tree")
        if tool_flags & TOOL_SIGNAL_TYPES:
            w.ue(tps.signal_type)
        if tool_flags & TOOL_DEP_QUANT:
            w.u(1, int(tps.dq_enabled))
        if tps.dq_states not in (4, 8, 32):
            raise ValueError(f"tensor '{tps.name}': dq_states {tps.dq_states} is not 4, 8 or 32")
        if tool_flags & TOOL_DQ_8STATES and tps.dq_enabled:
            w.u(1, int(tps.dq_states == 8))
        elif tps.dq_states == 8:
            raise ValueError(f"tensor '{tps.name}': 8 DQ states need DQ and TOOL_DQ_8STATES")
        if tool_flags & TOOL_DQ_32STATES and tps.dq_enabled and tps.dq_states != 8:
            w.u(1, int(tps.dq_states == 32))
        elif tps.dq_states == 32:
            raise ValueError(f"tensor '{tps.name}': 32 DQ states need DQ and TOOL_DQ_32STATES")
        if tool_flags & TOOL_PROB_WINDOW:
            if not 0 <= tps.prob_window <= MAX_PROB_WINDOW:
                raise ValueError(f"tensor '{tps.name}': prob_window {tps.prob_window} not in "
                                 f"0..{MAX_PROB_WINDOW}")
            w.u(4, tps.prob_window)
        elif tps.prob_window:
            raise ValueError(f"tensor '{tps.name}': prob_window needs TOOL_PROB_WINDOW")
        if tool_flags & TOOL_SUFFIX_CTX:
            w.u(1, int(tps.suffix_ctx))
        elif tps.suffix_ctx:
            raise ValueError(f"tensor '{tps.name}': suffix_ctx_flag needs TOOL_SUFFIX_CTX")
        if tool_flags & TOOL_ROW_PRED and not tps.tree_type:
            w.u(1, int(tps.row_pred))
        elif tps.row_pred:
            raise ValueError(f"tensor '{tps.name}': row_pred_enabled_flag needs TOOL_ROW_PRED "
                             "and no coding tree")
        if tool_flags & TOOL_ENTRY_POINTS and not tps.tree_type:
            if not 0 <= tps.substream_rows <= tps.rows:
                raise ValueError(f"tensor '{tps.name}': substream_rows {tps.substream_rows} not "
                                 f"in 0..{tps.rows}")
            w.ue(tps.substream_rows)
        elif tps.substream_rows:
            raise ValueError(f"tensor '{tps.name}': substream_rows needs TOOL_ENTRY_POINTS "
                             "and no coding tree")
        if tool_flags & TOOL_INTER_PRED:
            w.u(8, int(tps.pred_mode))
            if tps.pred_mode == PredMode.EARLIER_TENSOR:
                w.ue(tps.ref_tensor_id)
            if tps.pred_mode != PredMode.NONE:
                w.u(8, dtype_code(tps.ref_dtype))
                w.se(tps.pred_scale - PRED_SCALE_ONE)
                if len(tps.ref_md5) != 16:
                    raise AssertionError("ref_md5 must be 16 bytes")
                w.bytes(tps.ref_md5)
    elif tps.coding_mode == CodingMode.CLUSTERED:
        if tps.cluster is None:
            raise ValueError(f"tensor '{tps.name}': CLUSTERED without cluster fields")
        w.u(8, tps.layer_type)
        w.se(tps.qp)
        w.ue(tps.qp_density)
        w.ue(tps.num_gt_flags - 1)
        if tool_flags & TOOL_SIGNAL_TYPES:
            w.ue(tps.signal_type)
        _write_cluster_info(w, tps.cluster)
    w.byte_alignment()
    return _unit(UnitType.TENSOR_PARAMETER_SET, w.tobytes())


def tensor_data_unit(tensor_id: int, payload: bytes) -> bytes:
    w = _Writer()
    w.ue(tensor_id)
    w.byte_alignment()
    w.bytes(payload)
    return _unit(UnitType.TENSOR_DATA_UNIT, w.tobytes())


def tensor_hash_unit(tensor_id: int, md5: bytes, tps_md5: bytes | None = None) -> bytes:
    """The hash unit of a tensor: the MD5 of its bytes and, with TOOL_INTEGRITY [1.6], the
    MD5 of its whole tensor_parameter_set unit (``tps_md5``)."""
    w = _Writer()
    w.ue(tensor_id)
    w.byte_alignment()
    w.bytes(md5)
    if tps_md5 is not None:
        w.bytes(tps_md5)
    return _unit(UnitType.TENSOR_HASH_UNIT, w.tobytes())


@dataclass(frozen=True)
class Container:
    """The source file's rest (format 1.7): ``data`` is what rebuilds a file of ``format``
    from the decoded tensors (for ONNX the template of nntm.onnxio)."""

    format: SourceFormat
    data: bytes


#: the container formats this decoder knows (container_format)
CONTAINER_FORMATS = (SourceFormat.ONNX,)


def container_unit(container: Container, compression: int = CONTAINER_ZLIB) -> bytes:
    """The container unit [1.7]: format, compression, size, then the (compressed) data.

    zlib at level 9: templates are protobuf text-like structure that deflate halves, zlib is
    in Python's standard library and in every C toolchain, and its decoder is small."""
    if container.format not in CONTAINER_FORMATS:
        raise ValueError(f"container_format {container.format} is not known")
    if len(container.data) > MAX_CONTAINER_BYTES:
        raise ValueError(f"container of {len(container.data)} bytes exceeds 2^31 - 1")
    w = _Writer()
    w.u(8, int(container.format))
    w.u(8, compression)
    w.ue(len(container.data))
    w.byte_alignment()
    if compression == CONTAINER_ZLIB:
        payload = zlib.compress(container.data, 9)
    elif compression == CONTAINER_STORED:
        payload = container.data
    else:
        raise ValueError(f"container_compression {compression} is not known")
    return _unit(UnitType.CONTAINER_UNIT, w.tobytes() + payload)


def end_of_stream(stream_md5: bytes | None = None) -> bytes:
    """The last unit; with TOOL_INTEGRITY [1.6] it carries the MD5 of every byte before it."""
    return _unit(UnitType.END_OF_STREAM, stream_md5 or b"")


def unit_md5(data: bytes) -> bytes:
    """tps_md5 / stream_md5: the MD5 of a run of whole units (headers included)."""
    return hashlib.md5(data).digest()


# ---------------------------------------------------------------- reading


@dataclass
class Unit:
    index: int
    unit_type: UnitType
    offset: int
    payload: bytes

    @property
    def where(self) -> str:
        return f"unit {self.index} ({self.unit_type.name.lower()} at byte {self.offset})"


def split_units(data: bytes) -> list[Unit]:
    """Cut a bitstream into its units, checking every header against the data."""
    units: list[Unit] = []
    pos = 0
    while pos < len(data):
        index = len(units)
        if len(data) - pos < UNIT_HEADER_BYTES:
            raise BitstreamError(f"unit {index} at byte {pos}: truncated unit header "
                                 f"({len(data) - pos} of {UNIT_HEADER_BYTES} bytes)")
        raw_type = data[pos]
        try:
            unit_type = UnitType(raw_type)
        except ValueError:
            raise BitstreamError(
                f"unit {index} at byte {pos}: unknown unit_type {raw_type}") from None
        size = int.from_bytes(data[pos + 1:pos + 5], "big")
        start = pos + UNIT_HEADER_BYTES
        if size > len(data) - start:
            raise BitstreamError(
                f"unit {index} ({unit_type.name.lower()} at byte {pos}): truncated, "
                f"payload size {size} but only {len(data) - start} bytes remain")
        units.append(Unit(index, unit_type, pos, data[start:start + size]))
        pos = start + size
    return units


class _Reader:
    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        self.bits = BitStream(unit.payload)

    def fail(self, what: str) -> BitstreamError:
        return BitstreamError(f"{self.unit.where}: {what}")

    def _read(self, fmt: str) -> int:
        try:
            return int(self.bits.read(fmt))
        except (ReadError, ValueError) as exc:
            raise self.fail(f"payload ends inside a syntax element ({fmt})") from exc

    def u(self, n: int) -> int:
        return self._read(f"uint{n}")

    def ue(self, limit: int, what: str) -> int:
        v = self._read("ue")
        if v > limit:
            raise self.fail(f"{what} = {v} exceeds its limit {limit}")
        return v

    def se(self, lo: int, hi: int, what: str) -> int:
        v = self._read("se")
        if not lo <= v <= hi:
            raise self.fail(f"{what} = {v} outside [{lo}, {hi}]")
        return v

    def bytes(self, n: int, what: str) -> bytes:
        if n * 8 > len(self.bits) - self.bits.pos:
            left = (len(self.bits) - self.bits.pos) // 8
            raise self.fail(f"{what}: needs {n} bytes, {left} left")
        return self.bits.read(f"bytes{n}") if n else b""

    def byte_alignment(self) -> None:
        if self.u(1) != 1:
            raise self.fail("byte_alignment(): alignment_bit_equal_to_one is 0")
        while self.bits.pos % 8:
            if self.u(1) != 0:
                raise self.fail("byte_alignment(): alignment_bit_equal_to_zero is 1")

    def rest(self) -> bytes:
        return self.unit.payload[self.bits.pos // 8:]

    def end(self) -> None:
        if self.bits.pos != len(self.bits):
            left = (len(self.bits) - self.bits.pos) // 8
            raise self.fail(f"{left} unexpected byte(s) at the end")


def parse_model_parameter_set(unit: Unit) -> ModelParameterSet:
    r = _Reader(unit)
    if r.bytes(4, "magic") != MAGIC:
        raise r.fail("not an NNTM bitstream (magic is not 'NNTM')")
    mps = ModelParameterSet()
    mps.version_major = r.u(8)
    mps.version_minor = r.u(8)
    if mps.version_major > FORMAT_VERSION_MAJOR:
        raise r.fail(
            f"format version {mps.version_major}.{mps.version_minor} is newer than this "
            f"decoder's {FORMAT_VERSION_MAJOR}.{FORMAT_VERSION_MINOR}: use a newer NNTM")
    if mps.version_major < FORMAT_VERSION_MAJOR:
        raise r.fail(f"format version {mps.version_major}.{mps.version_minor} is not supported")
    if mps.version_minor > FORMAT_VERSION_MINOR:
        raise r.fail(f"format version {mps.version_major}.{mps.version_minor} is newer than this "
                     f"decoder's {FORMAT_VERSION_MAJOR}.{FORMAT_VERSION_MINOR}: use a newer NNTM")
    mps.profile_idc = r.u(8)
    if mps.profile_idc != PROFILE_MAIN:
        raise r.fail(f"profile_idc {mps.profile_idc} is not supported (only {PROFILE_MAIN})")
    mps.tool_flags = r.u(32)
    unknown = mps.tool_flags & ~KNOWN_TOOL_FLAGS
    if unknown:
        raise r.fail(f"tool_flags 0x{mps.tool_flags:08x} use tools this decoder does not know "
                     f"(0x{unknown:08x})")
    need = max((m for flag, m in TOOL_MIN_MINOR.items() if mps.tool_flags & flag), default=0)
    if mps.version_minor < need:
        raise r.fail(f"tool_flags 0x{mps.tool_flags:08x} need format 1.{need}, the stream says "
                     f"{mps.version_major}.{mps.version_minor}")
    mps.num_tensors = r.ue(MAX_TENSORS, "num_tensors")
    raw = r.u(8)
    try:
        mps.source_format = SourceFormat(raw)
    except ValueError:
        raise r.fail(f"unknown source_format {raw}") from None
    if mps.tool_flags & TOOL_SIGNAL_TYPES:
        count = r.ue(MAX_SIGNAL_TYPES, "num_signal_types")
        if count == 0:
            raise r.fail("num_signal_types is 0")
        names = []
        for _ in range(count):
            size = r.ue(MAX_NAME_BYTES, "signal_type_name_length")
            try:
                names.append(r.bytes(size, "signal_type_name").decode("utf-8"))
            except UnicodeDecodeError:
                raise r.fail("signal_type_name is not UTF-8") from None
        if any(not n for n in names) or len(set(names)) != len(names):
            raise r.fail("signal type names must be non-empty and distinct")
        mps.signal_types = names
    r.byte_alignment()
    r.end()
    return mps


def parse_tensor_parameter_set(unit: Unit, mps: ModelParameterSet) -> TensorParameterSet:
    r = _Reader(unit)
    tensor_id = r.ue(MAX_TENSORS - 1, "tensor_id")
    name_len = r.ue(MAX_NAME_BYTES, "tensor_name_length")
    if name_len == 0:
        raise r.fail("empty tensor_name")
    try:
        name = r.bytes(name_len, "tensor_name").decode("utf-8")
    except UnicodeDecodeError:
        raise r.fail("tensor_name is not UTF-8") from None
    code = r.u(8)
    if code >= len(DTYPE_NAMES):
        raise r.fail(f"tensor '{name}': unknown tensor_dtype {code}")
    ndim = r.ue(MAX_NDIM, "tensor_ndim")
    shape = tuple(r.ue(MAX_DIM, "tensor_dim") for _ in range(ndim))
    count = 1
    for d in shape:
        count *= d
    if count > MAX_ELEMENTS:
        raise r.fail(f"tensor '{name}': {count} elements exceed the limit {MAX_ELEMENTS}")
    raw_mode = r.u(8)
    try:
        mode = CodingMode(raw_mode)
    except ValueError:
        raise r.fail(f"tensor '{name}': unknown tensor_coding_mode {raw_mode}") from None
    tps = TensorParameterSet(tensor_id, name, dtype_of_code(code), shape, mode)
    if mode == CodingMode.CLUSTERED:
        if not mps.tool_flags & TOOL_CLUSTER or mps.version_minor < 2:
            raise r.fail(f"tensor '{name}': tensor_coding_mode CLUSTERED needs TOOL_CLUSTER "
                         "(format 1.2)")
        if tps.dtype.name not in FLOAT_DTYPES:
            raise r.fail(f"tensor '{name}': clustered coding of non-float dtype {tps.dtype}")
        tps.layer_type = r.u(8)
        if tps.layer_type > MAX_LAYER_TYPE:
            raise r.fail(f"tensor '{name}': unknown layer_type {tps.layer_type}")
        tps.qp = r.se(-4096, 4096, "qp")
        tps.qp_density = r.ue(6, "qp_density")
        tps.num_gt_flags = r.ue(14, "num_gt_flags_minus1") + 1
        if mps.tool_flags & TOOL_SIGNAL_TYPES:
            tps.signal_type = r.ue(len(mps.signal_types) - 1, "input_signal_type")
        tps.cluster = _read_cluster_info(r, name, shape)
    if mode == CodingMode.QUANTIZED:
        if tps.dtype.name not in FLOAT_DTYPES:
            raise r.fail(f"tensor '{name}': quantized coding of non-float dtype {tps.dtype}")
        tps.layer_type = r.u(8)
        if tps.layer_type > MAX_LAYER_TYPE:
            raise r.fail(f"tensor '{name}': unknown layer_type {tps.layer_type}")
        tps.arrangement = r.u(8)
        if tps.arrangement > (MAX_ARRANGEMENT if mps.version_minor >= 1 else 0):
            raise r.fail(f"tensor '{name}': unknown arrangement_type {tps.arrangement}")
        tps.rows = r.ue(MAX_DIM, "kernel_rows")
        tps.cols = r.ue(MAX_DIM, "kernel_cols")
        tps.qp = r.se(-4096, 4096, "qp")
        tps.qp_density = r.ue(6, "qp_density")
        tps.num_gt_flags = r.ue(14, "num_gt_flags_minus1") + 1
        if mps.tool_flags & TOOL_CODING_TREE:
            tps.tree_type = r.u(8)
            if tps.tree_type > MAX_TREE_TYPE:
                raise r.fail(f"tensor '{name}': unknown tree_partition_type {tps.tree_type}")
            if tps.tree_type:
                ctu = r.ue(7, "log2_ctu_size")
                if ctu < 1:
                    raise r.fail(f"tensor '{name}': log2_ctu_size is 0")
                min_cu = r.ue(ctu, "log2_min_cu_size")
                min_qt = min_cu + r.ue(ctu - min_cu, "log2_min_qt_size_minus_log2_min_cu_size")
                mtt = r.ue(4, "max_mtt_depth") if tps.tree_type >= 2 else 0
                skip = bool(r.u(1))
                qpd = bool(r.u(1))
                intra = bool(r.u(1)) if mps.tool_flags & TOOL_INTRA_PRED else False
                tps.tree = TreeParams(True, ctu, min_qt, mtt, min_cu,
                                      TREE_SPLIT_MASK[tps.tree_type], skip, qpd, intra)
        if mps.tool_flags & TOOL_SIGNAL_TYPES:
            tps.signal_type = r.ue(len(mps.signal_types) - 1, "input_signal_type")
        if mps.tool_flags & TOOL_DEP_QUANT:
            tps.dq_enabled = bool(r.u(1))
        if mps.tool_flags & TOOL_DQ_8STATES and tps.dq_enabled:
            tps.dq_states = 8 if r.u(1) else 4
        if mps.tool_flags & TOOL_DQ_32STATES and tps.dq_enabled and tps.dq_states != 8:
            tps.dq_states = 32 if r.u(1) else 4
        if tps.dq_enabled and tps.tree.intra_pred_enabled:
            raise r.fail(f"tensor '{name}': intra_pred_enabled_flag and dep_quant_enabled_flag "
                         "are both set (intra prediction needs scalar quantization)")
        if mps.tool_flags & TOOL_PROB_WINDOW:
            tps.prob_window = r.u(4)
            if tps.prob_window > MAX_PROB_WINDOW:
                raise r.fail(f"tensor '{name}': prob_window {tps.prob_window} is reserved "
                             f"(0..{MAX_PROB_WINDOW})")
        if mps.tool_flags & TOOL_SUFFIX_CTX:
            tps.suffix_ctx = bool(r.u(1))
        if mps.tool_flags & TOOL_ROW_PRED and not tps.tree_type:
            tps.row_pred = bool(r.u(1))
        if mps.tool_flags & TOOL_ENTRY_POINTS and not tps.tree_type:
            tps.substream_rows = r.ue(tps.rows, "substream_rows")
        if mps.tool_flags & TOOL_INTER_PRED:
            _parse_prediction(r, tps)
        expected = rows_cols(shape, tps.arrangement)
        if (tps.rows, tps.cols) != expected:
            raise r.fail(f"tensor '{name}': kernel {tps.rows}x{tps.cols} is not the "
                         f"{expected[0]}x{expected[1]} arrangement of shape {shape}")
    r.byte_alignment()
    r.end()
    return tps


def _parse_prediction(r: _Reader, tps: TensorParameterSet) -> None:
    raw = r.u(8)
    try:
        tps.pred_mode = PredMode(raw)
    except ValueError:
        raise r.fail(f"tensor '{tps.name}': unknown pred_mode {raw}") from None
    if tps.pred_mode == PredMode.EARLIER_TENSOR:
        if tps.tensor_id == 0:
            raise r.fail(f"tensor '{tps.name}': tensor 0 cannot predict from an earlier tensor")
        tps.ref_tensor_id = r.ue(tps.tensor_id - 1, "ref_tensor_id")
    if tps.pred_mode != PredMode.NONE:
        code = r.u(8)
        if code not in REF_DTYPE_CODES:
            raise r.fail(f"tensor '{tps.name}': ref_dtype {code} is not float32, float16 or "
                         "bfloat16")
        tps.ref_dtype = dtype_of_code(code)
        tps.pred_scale = PRED_SCALE_ONE + r.se(-MAX_PRED_SCALE - PRED_SCALE_ONE,
                                               MAX_PRED_SCALE - PRED_SCALE_ONE,
                                               "pred_scale_minus4096")
        tps.ref_md5 = r.bytes(16, "ref_md5")


def parse_tensor_data_unit(unit: Unit) -> tuple[int, bytes]:
    r = _Reader(unit)
    tensor_id = r.ue(MAX_TENSORS - 1, "tensor_id")
    r.byte_alignment()
    return tensor_id, r.rest()


def parse_tensor_hash_unit(unit: Unit, mps: ModelParameterSet | None = None
                           ) -> tuple[int, bytes, bytes | None]:
    """(tensor_id, tensor_md5, tps_md5); tps_md5 is None unless the stream has TOOL_INTEGRITY."""
    r = _Reader(unit)
    tensor_id = r.ue(MAX_TENSORS - 1, "tensor_id")
    r.byte_alignment()
    md5 = r.bytes(16, "tensor_md5")
    tps_md5 = None
    if mps is not None and mps.tool_flags & TOOL_INTEGRITY:
        tps_md5 = r.bytes(16, "tps_md5")
    r.end()
    return tensor_id, md5, tps_md5


def parse_end_of_stream(unit: Unit, mps: ModelParameterSet) -> bytes | None:
    """stream_md5 of a TOOL_INTEGRITY stream, else None (and the payload must be empty)."""
    r = _Reader(unit)
    stream_md5 = r.bytes(16, "stream_md5") if mps.tool_flags & TOOL_INTEGRITY else None
    if r.bits.pos != len(r.bits):
        raise r.fail("end_of_stream with a payload" if stream_md5 is None
                     else f"{(len(r.bits) - r.bits.pos) // 8} unexpected byte(s) at the end")
    return stream_md5


def parse_container_unit(unit: Unit, max_bytes: int = MAX_CONTAINER_BYTES) -> Container:
    """A container unit [1.7]; refuses a container_data_size above ``max_bytes`` before
    decompressing anything, and data that does not inflate to exactly that size."""
    r = _Reader(unit)
    raw = r.u(8)
    if raw not in [int(f) for f in CONTAINER_FORMATS]:
        raise r.fail(f"unknown container_format {raw}")
    compression = r.u(8)
    if compression not in (CONTAINER_STORED, CONTAINER_ZLIB):
        raise r.fail(f"unknown container_compression {compression}")
    size = r.ue(MAX_CONTAINER_BYTES, "container_data_size")
    r.byte_alignment()
    if size > max_bytes:
        from .memory import MemoryBudgetError  # noqa: PLC0415 - memory imports hls

        raise MemoryBudgetError(f"{unit.where}: a container of {size} bytes, more than this "
                                f"decoder's limit of {max_bytes} (MaxExpansion / MaxMemory)")
    rest = r.rest()
    if compression == CONTAINER_STORED:
        data = rest
    else:
        d = zlib.decompressobj()
        try:
            data = d.decompress(rest, size + 1)
        except zlib.error as exc:
            raise r.fail(f"container_data does not inflate: {exc}") from None
        if not d.eof or d.unused_data or d.unconsumed_tail:
            raise r.fail("container_data is not one whole zlib stream of "
                         "container_data_size bytes")
    if len(data) != size:
        raise r.fail(f"container_data holds {len(data)} bytes, container_data_size says {size}")
    return Container(SourceFormat(raw), data)
