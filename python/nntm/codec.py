"""Encoder and decoder drivers: a model in, a bitstream out, and back.

The Python side classifies and arranges tensors and writes the units; the C
core codes each kernel tensor in one call (``nntm.core``).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np

from . import cluster, core, hls, precision, predict, roles, rowref
from . import importance as imp
from .arrange import Arrangement, from_kernel, kernel_shape, to_kernel
from .classes import TREE_TYPES, Classifier, intra_problem, search_params
from .config import Config
from .errors import BitstreamError, ConfigError, CoreError, EncodeError, HashMismatchError
from .memory import DEFAULT_MAX_EXPANSION, check_budget, default_max_memory


@dataclass
class TensorStats:
    """What the encoder reports for one tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    layer_type: str
    mode: str          # "quantized", "lossless" or "clustered"
    qp: int | None
    bits: int          # bits of this tensor's units (parameter set, data, hash)
    num_params: int
    snr_db: float      # weight SNR; inf for an exact tensor
    seconds: float
    signal: str = "default"
    tree: str = "-"    # tree partition type, "-" for lossless tensors
    num_cus: int = 0
    pred: str = "-"    # prediction: "-", "ref" (reference model) or "t<id>" (earlier tensor)
    pred_rows: int = 0  # [1.5] rows predicted from an earlier row (row prediction)
    rows: int = 0       # kernel rows (0 for lossless tensors)
    role: str = ""      # nntm.roles label (from the model's structure and values)
    # why the tensor is not coded as asked ('' when it is): the encoder's fallbacks for a
    # tensor whose levels do not fit the coder's range at the requested QP
    note: str = ""
    # sum of the squared weights and of the squared errors (float tensors; 0 otherwise):
    # the model's pooled SNR without holding it
    signal_energy: float = 0.0
    noise_energy: float = 0.0
    # the same weighted by the tensor's importance map (its raw values, docs/importance.md;
    # 0 for a tensor without one, which the maps say nothing of): the maps' output estimate
    imp_signal_energy: float = 0.0
    imp_noise_energy: float = 0.0
    # GainCompensation's factor on the weights it coded (1: none, or not a quantized tensor)
    gain_scale: float = 1.0
    # bits of the coded data in the tensor data unit (its payload after the tensor_id):
    # what rate control extrapolates; the rest of ``bits`` is syntax of fixed size
    payload_bits: int = 0

    @property
    def bits_per_param(self) -> float:
        return self.bits / self.num_params if self.num_params else 0.0


@dataclass
class EncodeResult:
    data: bytes
    recon: dict[str, np.ndarray]
    stats: list[TensorStats]
    cus: dict[str, np.ndarray] = field(default_factory=dict)  # CU records per tensor


@dataclass
class TensorReport:
    """What the decoder reports for one tensor.

    ``md5`` is the MD5 of the decoded tensor's bytes; ``data_ok`` says whether it equals the
    hash unit's tensor_md5, ``params_ok`` whether the tensor's parameter set (name, dtype,
    shape, coding parameters) equals the hash unit's tps_md5 (None: the stream carries no
    tps_md5, format 1.5 and older or IntegrityHash 0).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    md5: str
    data_ok: bool
    seconds: float
    params_ok: bool | None = None

    @property
    def ok(self) -> bool:
        return self.data_ok and self.params_ok is not False


@dataclass
class DecodeResult:
    """A decoded stream: the tensors, a report per tensor, and the stream-level check.

    ``stream_ok`` says whether end_of_stream's stream_md5 equals the MD5 of every unit
    before it (None: the stream carries no stream_md5).
    """

    tensors: dict[str, np.ndarray]
    reports: list[TensorReport]
    source_format: hls.SourceFormat
    cus: dict[str, np.ndarray] = field(default_factory=dict)  # with trace=True
    stream_ok: bool | None = None
    version: tuple[int, int] = (hls.FORMAT_VERSION_MAJOR, hls.FORMAT_VERSION_MINOR)
    stream_md5: str = ""  # the MD5 of every unit before end_of_stream, as decoded
    container: hls.Container | None = None  # [1.7] what rebuilds the source file

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.reports) and self.stream_ok is not False

    @property
    def checks(self) -> list[str]:
        """The checks the stream carried, in words."""
        have = ["tensor data MD5"]
        if self.stream_ok is not None:
            have += ["tensor parameter set MD5", "stream MD5"]
        return have


def tensor_md5(array: np.ndarray) -> bytes:
    """MD5 of a tensor's bytes in C order, little-endian."""
    return hashlib.md5(_lossless_bytes(array)).digest()


def snr_db(original: np.ndarray, recon: np.ndarray) -> float:
    x = np.asarray(original, dtype=np.float64)
    e = x - np.asarray(recon, dtype=np.float64)
    noise = float(np.sum(e * e))
    signal = float(np.sum(x * x))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * np.log10(signal / noise)


def _lossless_bytes(array: np.ndarray) -> bytes:
    """A tensor's bytes in C order, little-endian."""
    return np.ascontiguousarray(_little_endian(np.asarray(array))).tobytes()


def _choose_mode(name: str, array: np.ndarray, cfg: Config,
                 notes: dict[str, str] | None = None, role: roles.Role | None = None,
                 lossless_roles: frozenset[roles.Role] | None = None) -> hls.CodingMode:
    """The coding mode of a tensor; a tensor coded exactly for want of a quantizer that
    fits it gets a line in ``notes``.  ``lossless_roles`` is LosslessRoles parsed (None:
    parsed here from ``cfg``)."""
    if array.dtype.name not in hls.FLOAT_DTYPES:
        return hls.CodingMode.LOSSLESS
    if array.size <= int(cfg["LosslessMaxElements"]) or array.size == 0:
        return hls.CodingMode.LOSSLESS
    if lossless_roles is None:
        lossless_roles = roles.parse_roles(str(cfg["LosslessRoles"]))[0]
    if role is not None and role in lossless_roles:
        return hls.CodingMode.LOSSLESS
    values = array.astype(np.float32) if array.dtype.name == "bfloat16" else array
    if not np.all(np.isfinite(values)):
        if cfg["NonFiniteWeights"] == "lossless":
            return hls.CodingMode.LOSSLESS
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array.astype(np.float64))))
        raise EncodeError(
            f"tensor '{name}': {bad} NaN or infinite weight(s); "
            "set NonFiniteWeights : lossless to carry it exactly")
    if array.dtype.name == "float64" and np.any(np.abs(array) > np.finfo(np.float32).max):
        if notes is not None:
            notes[name] = ("float64 weights beyond the float32 range, which the quantizer "
                           "works in: coded exactly (lossless)")
        return hls.CodingMode.LOSSLESS
    return hls.CodingMode.QUANTIZED


def _little_endian(a: np.ndarray) -> np.ndarray:
    """The array with a little-endian (or byte-order-free) dtype, values unchanged."""
    return a.astype(a.dtype.newbyteorder("<")) if a.dtype.byteorder == ">" else a


def dq_mode(tps: hls.TensorParameterSet) -> int:
    """The C core's dq_enabled of a tensor: 0 off, 1 four states, 2 eight [1.4], 3 thirty-two
    [1.5]."""
    if not tps.dq_enabled:
        return 0
    return {8: 2, 32: 3}.get(tps.dq_states, 1)


def kernel_params(tps: hls.TensorParameterSet) -> core.KernelParams:
    """What the C core needs to decode a QUANTIZED tensor, from its parameter set."""
    return core.KernelParams(tps.rows, tps.cols, tps.qp, tps.qp_density, tps.num_gt_flags,
                             tps.tree, dq_mode(tps), tps.prob_window, int(tps.suffix_ctx),
                             int(tps.row_pred), tps.substream_rows)


def tensor_qp(config: Config, ndim: int, predicted: bool = False,
              role: roles.Role | None = None, array: np.ndarray | None = None,
              rel_floor: float = 0.0) -> int:
    """QP of a tensor: QP, or for 1-D tensors QP + QPOffset1D or the fixed QP1D.

    QP1DMode "stats" takes QP1D only for BatchNorm statistics (``role`` in
    roles.STATS_ROLES: found from the model's structure and values, nntm.roles), whose
    relative precision the output needs (docs/ce/CE4_rate.md). A predicted 1-D tensor (an
    update's residual) takes QP + QPOffset1D whatever QP1DMode says when PredQP1DMode is
    "offset": the fixed fine QP1D is there for the intra coding of such statistics
    (docs/ce/CE3_prediction.md). QP1DMode "relative" takes the step from the tensor's own
    scale (``array``) and role (``rel_floor``: precision.model_floor): nntm.precision.
    """
    if ndim > 1:
        return int(config["QP"])
    mode = str(config["QP1DMode"])
    if mode == "relative" and array is not None and not (
            predicted and config["PredQP1DMode"] == "offset"):
        return precision.relative_qp(config, array, role, rel_floor)
    fixed = mode == "fixed" or (mode == "stats" and role in roles.STATS_ROLES)
    if fixed and not (predicted and config["PredQP1DMode"] == "offset"):
        return int(config["QP1D"])
    return int(config["QP"]) + int(config["QPOffset1D"])


def _check_tensor(tensor_id: int, name: object, array: np.ndarray) -> None:
    if not isinstance(name, str) or not name:
        raise EncodeError(f"tensor {tensor_id}: names must be non-empty strings")
    try:
        hls.dtype_code(array.dtype)
    except ValueError:
        raise EncodeError(f"tensor '{name}': unsupported dtype {array.dtype}") from None
    if array.size > hls.MAX_ELEMENTS or any(d > hls.MAX_DIM for d in array.shape):
        raise EncodeError(f"tensor '{name}': too large ({array.size} elements; "
                          f"at most {hls.MAX_ELEMENTS})")
    if array.ndim > hls.MAX_NDIM:
        raise EncodeError(f"tensor '{name}': {array.ndim} dimensions (at most {hls.MAX_NDIM})")
    if len(name.encode("utf-8")) > hls.MAX_NAME_BYTES:
        raise EncodeError(f"tensor '{name[:40]}...': name longer than {hls.MAX_NAME_BYTES} bytes")


def encode_with_recon(
    tensors: Mapping[str, np.ndarray],
    config: Config,
    source_format: hls.SourceFormat = hls.SourceFormat.UNKNOWN,
    progress: Callable[[TensorStats], None] | None = None,
    importance: Mapping[str, np.ndarray] | None = None,
    ref_model: Mapping[str, np.ndarray] | None = None,
    consumers: Mapping[str, Sequence[tuple[str, int]]] | None = None,
    qp_offsets: Mapping[str, int] | None = None,
    container: hls.Container | None = None,
    importance_norm: Mapping[str, tuple[float, float]] | None = None,
    gain_basis: Mapping[str, tuple[float, float]] | None = None,
    gain_scale: Mapping[str, float] | None = None,
    threads: int = 1,
) -> EncodeResult:
    """Encode a model; also return the encoder's reconstruction and per-tensor stats.

    ``container`` [1.7] is carried in a container unit after the model parameter set
    (TOOL_CONTAINER): for an ONNX model, the template that rebuilds the file
    (nntm.onnxio); a stream without one is what it was before format 1.7.

    ``progress`` is called with each tensor's stats as soon as it is coded.
    ``importance`` maps tensor names to importance maps (see nntm.importance):
    each weight's squared error is weighted by it in every RD decision.
    ``ref_model`` is the model the receiver already holds: with InterPred a
    tensor is predicted from its namesake there when that pays (nntm.predict).
    ``consumers`` (from a graph such as ONNX: name -> (op_type, input index) of each node
    that reads the tensor) lets nntm.roles take each tensor's role from the graph.
    ``qp_offsets`` are added to the QP of the tensors they name (rate control,
    nntm.ratecontrol); ``importance_norm`` normalises the maps it names with the given means
    (those of the whole tensor's map, of which rate control codes sampled rows);
    ``gain_basis`` gives the tensors it names the whole tensor's energy sum w^2 and its elements
    over theirs, from which GainCompensation and LambdaGainFloor estimate the whole tensor's
    gain (:func:`reconstruction_gain`; rate control's samples); ``gain_scale`` fixes the
    factor GainCompensation codes the tensors it names with (TensorStats.gain_scale of an
    earlier encode).  ``threads``: tensors coded at once, and the threads a large tensor's
    substreams may take from those the others leave free (0: every core); the bytes are the
    same for any number.

    The whole stream and reconstruction are held in memory: :func:`nntm.streaming.encode_file`
    writes the same bytes to a file tensor by tensor, on several threads.
    """
    plan = plan_model(tensors, config, source_format, importance, ref_model, consumers,
                      qp_offsets, container)
    plan.imp_norm = dict(importance_norm or {})
    plan.gain_basis = dict(gain_basis or {})
    plan.gain_scale = dict(gain_scale or {})
    units: list[bytes] = [plan.head()]
    recon: dict[str, np.ndarray] = {}
    stats: list[TensorStats] = []
    cus: dict[str, np.ndarray] = {}
    clustered_any = False
    with share_threads(plan, threads) as workers:
        for name, coded in zip(plan.names, _code_all(plan, tensors, recon, ref_model, workers),
                               strict=True):
            recon[name] = coded.recon
            if coded.cus is not None:
                cus[name] = coded.cus
            clustered_any |= coded.clustered
            units.append(coded.units)
            stats.append(coded.stat)
            if progress is not None:
                progress(coded.stat)
    if clustered_any:  # clustered tensors: TOOL_CLUSTER, format 1.2
        units[0] = plan.head(clustered=True)
    body = b"".join(units)
    stream_md5 = hls.unit_md5(body) if plan.tool_flags & hls.TOOL_INTEGRITY else None
    return EncodeResult(body + hls.end_of_stream(stream_md5), recon, stats, cus)


@contextmanager
def share_threads(plan: ModelPlan, threads: int | None) -> Iterator[int]:
    """``with share_threads(plan, threads) as workers``: the tensor workers to run (1 when a
    tensor needs the reconstruction of an earlier one), with ``plan.search`` set so that a
    tensor's substreams [1.8] take threads from one budget of ``threads`` (0: every core)
    that the workers share: at most that many code at once.  The plan's search is restored
    and the budget released on exit."""
    from .streaming import _workers
    n = _workers(threads)
    saved = plan.search
    if n == 1:
        yield 1
        return
    from .cstream import ThreadBudget
    with ThreadBudget(n) as budget:
        plan.search = replace(saved, threads=n, budget=budget)
        try:
            yield 1 if plan.needs_earlier_recon else n
        finally:
            plan.search = saved


def _code_all(plan: ModelPlan, tensors: Mapping[str, np.ndarray],
              recon: dict[str, np.ndarray], ref_model: Mapping[str, np.ndarray] | None,
              workers: int) -> Iterator[CodedTensor]:
    """Every tensor of ``plan`` coded, in model order as each is ready: one after the other
    (``recon`` takes each reconstruction as it comes, for the tensors that predict from an
    earlier one), or on ``workers`` threads, the largest tensors started first (so that a
    large last tensor does not run alone at the end)."""
    def one(tensor_id: int) -> CodedTensor:
        name = plan.names[tensor_id]
        return code_tensor(plan, tensor_id, _little_endian(np.asarray(tensors[name])), recon,
                           ref_model)

    if workers <= 1 or len(plan.names) <= 1:
        for i, name in enumerate(plan.names):
            coded = one(i)
            recon[name] = coded.recon
            yield coded
        return
    sizes = [math.prod(info.shape) for info in plan.infos]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nntm") as pool:
        jobs = {i: pool.submit(one, i)
                for i in sorted(range(len(plan.names)), key=lambda i: -sizes[i])}
        for i in range(len(plan.names)):
            yield jobs.pop(i).result()


@dataclass
class _Shape:
    """What the model-level decisions need of a tensor besides its name: shape and dtype."""

    shape: tuple[int, ...]
    dtype: np.dtype


@dataclass
class ModelPlan:
    """The decisions an encode makes over the whole model before any tensor is coded: each
    tensor's mode, class and role, the tool flags and the model parameter set.  Made by
    :func:`plan_model` from one pass over the tensors that keeps none of them."""

    config: Config
    classifier: Classifier
    names: list[str]
    infos: list[_Shape]
    plans: list[tuple[hls.CodingMode, object]]
    roles: dict[str, roles.Role]
    notes: dict[str, str]
    imp_maps: dict[str, np.ndarray]
    imp_qp: dict[str, int]
    qp_offsets: Mapping[str, int]
    search: core.SearchParams
    tool_flags: int
    mps: hls.ModelParameterSet
    container: hls.Container | None
    has_ref_model: bool
    rel_floor: float = 0.0  # QP1DMode relative: precision.model_floor
    # ScaleQPExponent: each tensor's nonzero QP offset from its RMS (scale_qp)
    scale_qp: dict[str, int] = field(default_factory=dict)
    # rate control's sample: each map normalised as its whole tensor's (importance.normalized)
    imp_norm: dict[str, tuple[float, float]] = field(default_factory=dict)
    # rate control's sample: each tensor's whole energy and elements ratio (reconstruction_gain)
    gain_basis: dict[str, tuple[float, float]] = field(default_factory=dict)
    # and GainCompensation's factor of each tensor it names, fixed (_encode_fitting)
    gain_scale: dict[str, float] = field(default_factory=dict)

    def head(self, clustered: bool = False) -> bytes:
        """The model parameter set (and container unit): the units before the tensors.
        ``clustered``: with TOOL_CLUSTER (format 1.2), set once a tensor is clustered; the
        unit keeps its length."""
        mps = self.mps
        if clustered:
            mps = replace(mps, tool_flags=mps.tool_flags | hls.TOOL_CLUSTER,
                          version_minor=max(mps.version_minor, 2))
        out = hls.model_parameter_set(mps)
        if self.container is not None:
            out += hls.container_unit(self.container)
        return out

    @property
    def needs_earlier_recon(self) -> bool:
        """Whether a tensor's coding needs earlier tensors' reconstructions (EarlierTensorPred
        with a reference picture in the model): tensors are then coded one after another
        and the reconstructions of the quantized ones kept."""
        return bool(self.tool_flags & hls.TOOL_INTER_PRED) and bool(
            self.config["EarlierTensorPred"])


def importance_qp(means: Mapping[str, float], rms: Mapping[str, float],
                  config: Config) -> dict[str, int]:
    """Each mapped tensor's QP offset at the config's QP (``ImportanceQPScale`` and its
    limits, nntm.importance.qp_offsets) from its map's mean and its weights' RMS (``rms``
    is used only with ``ImportanceMaxStep``)."""
    max_step = float(config["ImportanceMaxStep"])
    return imp.qp_offsets_from_means(
        means, float(config["ImportanceQPScale"]), int(config["QPDensity"]),
        max_offset=int(config["ImportanceQPMaxOffset"]), max_step=max_step,
        base_qp=int(config["QP"]), rms=rms if max_step > 0 else None)


def chunked_rms(array: np.ndarray, chunk: int = 1 << 20) -> float:
    """The RMS of a tensor's values, summed in float64 a chunk at a time (no whole copy)."""
    flat = array.reshape(-1)
    if not flat.size:
        return 0.0
    total = 0.0
    for start in range(0, flat.size, chunk):
        part = flat[start:start + chunk].astype(np.float64)
        total += float(part @ part)
    return math.sqrt(total / flat.size)


def scale_qp(kernel_rms: Mapping[str, tuple[int, float]], config: Config) -> dict[str, int]:
    """ScaleQPExponent: each tensor's QP offset from its RMS (``kernel_rms``: name ->
    (elements, RMS)) against the element-weighted geometric mean RMS of them all, so that a
    tensor's step follows rms^e; tensors of RMS 0 keep offset 0."""
    exp = float(config["ScaleQPExponent"])
    live = {n: (size, rms) for n, (size, rms) in kernel_rms.items() if rms > 0.0}
    if exp <= 0.0 or not live:
        return {}
    total = sum(size for size, _ in live.values())
    finer = str(config["ScaleQPMode"]) == "finer"
    if finer:  # the element-weighted median of log2 RMS
        seen, ref = 0, 0.0
        for size, rms in sorted(live.values(), key=lambda v: v[1]):
            seen += size
            ref = math.log2(rms)
            if 2 * seen >= total:
                break
    else:
        ref = sum(size * math.log2(rms) for size, rms in live.values()) / total
    per = 1 << int(config["QPDensity"])
    limit = int(config["ScaleQPMaxOffset"])
    slack = float(config["ScaleQPSlack"])
    out = {}
    for name, (_size, rms) in live.items():
        if finer:
            offset = min(0, int(round(exp * per * (math.log2(rms) - ref + slack))))
        else:
            offset = int(round(exp * per * (math.log2(rms) - ref)))
        out[name] = max(-limit, min(limit, offset))
    return out


def plan_model(
    tensors: Mapping[str, np.ndarray],
    config: Config,
    source_format: hls.SourceFormat = hls.SourceFormat.UNKNOWN,
    importance: Mapping[str, np.ndarray] | None = None,
    ref_model: Mapping[str, np.ndarray] | None = None,
    consumers: Mapping[str, Sequence[tuple[str, int]]] | None = None,
    qp_offsets: Mapping[str, int] | None = None,
    container: hls.Container | None = None,
) -> ModelPlan:
    """The model-level decisions of an encode (see :class:`ModelPlan`); each tensor is
    looked up in ``tensors`` and dropped again, so a lazily mapped model stays unread but
    for the tensor in hand."""
    classifier = Classifier(config)
    unknown = sorted(set(importance or {}) - set(tensors))
    if unknown:
        raise EncodeError(f"importance given for tensor(s) not in the model: {', '.join(unknown)}")
    imp_maps = {name: imp.expand(name, tuple(np.shape(tensors[name])), value)
                for name, value in (importance or {}).items()}
    imp_qp = importance_qp(
        {n: float(np.mean(v)) for n, v in imp_maps.items() if v.size},
        {n: imp.weight_rms(tensors[n]) for n in imp_maps}
        if float(config["ImportanceMaxStep"]) > 0 else {}, config)
    search = search_params(config)
    cluster.check_settings(config)
    problem = intra_problem(config)
    if problem:
        raise ConfigError(problem)
    lossless_roles, bad_roles = roles.parse_roles(str(config["LosslessRoles"]))
    if bad_roles:
        raise ConfigError("; ".join(bad_roles))
    names = list(tensors)
    infos: list[_Shape] = []
    plans: list[tuple[hls.CodingMode, object]] = []
    notes: dict[str, str] = {}
    tool_flags = 0
    tensor_roles = roles.derive_roles(tensors, consumers)
    relative = config["QP1DMode"] == "relative"
    scales_1d: list[float] = []  # QP1DMode relative: the model's 1-D scales, for its floor
    kernel_rms: dict[str, tuple[int, float]] = {}  # ScaleQPExponent: elements, RMS
    scale_exp = float(config["ScaleQPExponent"])
    for tensor_id, name in enumerate(names):
        array = _little_endian(np.asarray(tensors[name]))
        if relative:
            scales_1d.extend(precision.scales_1d(config, array, tensor_roles[name]))
        _check_tensor(tensor_id, name, array)
        mode = _choose_mode(name, array, config, notes, tensor_roles[name], lossless_roles)
        if scale_exp > 0.0 and mode == hls.CodingMode.QUANTIZED and array.ndim > 1:
            kernel_rms[name] = (int(array.size), chunked_rms(array))
        cls = classifier.classify(name, tuple(array.shape))
        kr, kc = (kernel_shape(tuple(array.shape), cls.arrangement)
                  if mode == hls.CodingMode.QUANTIZED else (0, 0))
        tool_flags |= _tool_flags(mode, cls, config, kr, kc)
        plans.append((mode, cls))
        infos.append(_Shape(tuple(array.shape), array.dtype))
        del array
    if len(classifier.signals) > 1:
        tool_flags |= hls.TOOL_SIGNAL_TYPES
    if _may_predict(list(zip(names, infos, strict=True)), plans, config, ref_model):
        tool_flags |= hls.TOOL_INTER_PRED
    if config["IntegrityHash"]:
        tool_flags |= hls.TOOL_INTEGRITY
    if container is not None:
        tool_flags |= hls.TOOL_CONTAINER
    # the lowest format version that carries the stream: 1.0 without 1.1 tools
    minor = max((m for flag, m in hls.TOOL_MIN_MINOR.items() if tool_flags & flag), default=0)
    if any(mode == hls.CodingMode.QUANTIZED and cls.arrangement != Arrangement.ROWS
           for mode, cls in plans):
        minor = max(minor, 1)
    mps = hls.ModelParameterSet(num_tensors=len(names), source_format=source_format,
                                tool_flags=tool_flags, signal_types=list(classifier.signals),
                                version_minor=minor)
    return ModelPlan(config, classifier, names, infos, plans, tensor_roles, notes, imp_maps,
                     imp_qp, qp_offsets or {}, search, tool_flags, mps, container,
                     ref_model is not None,
                     precision.floor_of_scales(config, scales_1d) if relative else 0.0,
                     {n: off for n, off in scale_qp(kernel_rms, config).items() if off})


def substream_rows(rows: int, cols: int, elements: int) -> int:
    """substream_rows [1.8] of a raster kernel tensor for ``EntryPointElements``: about
    ``elements`` elements a substream, in whole rows (at least one); 0 (one substream) when
    the tensor has no more than ``elements`` elements or ``elements`` is 0."""
    if elements <= 0 or rows * cols <= elements or cols == 0:
        return 0
    per = max(1, (elements + cols // 2) // cols)
    return per if per < rows else 0


def _tool_flags(mode: hls.CodingMode, cls: object, config: Config, rows: int = 0,
                cols: int = 0) -> int:
    """The tool flags a tensor of ``mode`` and class ``cls`` (kernel ``rows`` x ``cols``)
    needs."""
    if mode != hls.CodingMode.QUANTIZED:
        return 0
    flags = 0
    if not cls.tree.enabled and substream_rows(rows, cols, int(config["EntryPointElements"])):
        flags |= hls.TOOL_ENTRY_POINTS
    if cls.tree.enabled:
        flags |= hls.TOOL_CODING_TREE
    if config["DepQuant"]:
        flags |= hls.TOOL_DEP_QUANT
        if int(config["DQStates"]) == 8:
            flags |= hls.TOOL_DQ_8STATES
        if int(config["DQStates"]) == 32:
            flags |= hls.TOOL_DQ_32STATES
    if cls.prob_window:
        flags |= hls.TOOL_PROB_WINDOW
    if config["SuffixCtx"]:
        flags |= hls.TOOL_SUFFIX_CTX
    if int(config["RowPred"]) and not cls.tree.enabled:
        flags |= hls.TOOL_ROW_PRED
    if cls.tree.intra_pred_enabled:
        flags |= hls.TOOL_INTRA_PRED
    return flags


@dataclass
class CodedTensor:
    """One tensor coded: its units (parameter set, data, hash), stats and reconstruction."""

    units: bytes
    stat: TensorStats
    recon: np.ndarray
    cus: np.ndarray | None    # the CU records of a quantized tensor (None otherwise)
    clustered: bool


def code_tensor(plan: ModelPlan, tensor_id: int, array: np.ndarray,
                recon: Mapping[str, np.ndarray],
                ref_model: Mapping[str, np.ndarray] | None) -> CodedTensor:
    """Code tensor ``tensor_id`` of the plan (``array``: its values).  ``recon`` holds the
    reconstructions of earlier tensors (needed only when ``plan.needs_earlier_recon``).
    Reads no other state: tensors may be coded in any order, on any thread."""
    config = plan.config
    name = plan.names[tensor_id]
    mode, cls = plan.plans[tensor_id]
    tool_flags = plan.tool_flags
    clustered = False
    cus_rec: np.ndarray | None = None
    start = time.perf_counter()
    tps = hls.TensorParameterSet(tensor_id, name, array.dtype, tuple(array.shape), mode)
    tps.signal_type = plan.classifier.signals.index(cls.signal)
    pred_rows = 0
    gain_scale = 1.0
    if mode == hls.CodingMode.QUANTIZED:
        rows, cols = kernel_shape(tuple(array.shape), cls.arrangement)
        kernel = to_kernel(array.astype(np.float32), cls.arrangement)
        choice = None
        if tool_flags & hls.TOOL_INTER_PRED:
            choice = predict.choose(
                kernel, _candidates(name, array, tensor_id,
                                    list(zip(plan.names, plan.infos, strict=True)),
                                    plan.plans, recon, config, ref_model),
                bool(config["PredScale"]))
        qp = (tensor_qp(config, array.ndim, choice is not None, plan.roles[name], array,
                        plan.rel_floor)
              + plan.imp_qp.get(name, 0) + plan.scale_qp.get(name, 0)
              + plan.qp_offsets.get(name, 0))
        tps.layer_type = int(cls.layer)
        tps.arrangement = int(cls.arrangement)
        tps.rows, tps.cols, tps.qp = rows, cols, qp
        tps.qp_density = int(config["QPDensity"])
        tps.num_gt_flags = int(config["NumGtFlags"])
        tps.tree_type = cls.tree_type if cls.tree.enabled else 0
        tps.tree = cls.tree
        tps.dq_enabled = bool(config["DepQuant"])
        tps.dq_states = int(config["DQStates"]) if tps.dq_enabled else 4
        tps.prob_window = cls.prob_window
        tps.suffix_ctx = bool(config["SuffixCtx"])
        tps.row_pred = bool(int(config["RowPred"])) and not cls.tree.enabled
        if tool_flags & hls.TOOL_ENTRY_POINTS and not cls.tree.enabled:
            tps.substream_rows = substream_rows(rows, cols, int(config["EntryPointElements"]))
        params = kernel_params(tps)
        row_hint = (rowref.reference_hints(kernel) if tps.row_pred
                    and int(config["RowPred"]) == 2 else None)
        ref = None
        if choice is not None:
            ref = core.Reference(to_kernel(choice.candidate.array, cls.arrangement),
                                 choice.scale)
        weight_map = None
        imp_floor = float(config["ImportanceFloor"])
        if name in plan.imp_maps:
            weight_map = to_kernel(imp.normalized(plan.imp_maps[name], imp_floor,
                                                  plan.imp_norm.get(name)),
                                   cls.arrangement)
        fit = _encode_fitting(kernel, params, array.dtype, config, plan.search, weight_map, ref,
                              row_hint, f"tensor '{name}'", plan.gain_basis.get(name),
                              plan.gain_scale.get(name))
        del kernel, weight_map, row_hint
        if fit.ref is None:
            choice = None
        if choice is not None:
            cand = choice.candidate
            tps.pred_mode = cand.mode
            tps.ref_tensor_id = cand.tensor_id
            tps.ref_dtype = cand.array.dtype
            tps.pred_scale = choice.scale
            tps.ref_md5 = tensor_md5(cand.array)
        note = fit.note(qp)
        exact = _exact_if_cheaper(tps, fit, array, tool_flags) if fit.fell_back else None
        if exact is not None:  # no QP fits, or the finest that does is no smaller
            tps, mode = exact, hls.CodingMode.LOSSLESS
            payload, rec = _lossless_bytes(array), np.array(array, copy=True, order="C")
            note = fit.note(qp, exact=True)
        else:
            assert fit.result is not None
            res, tps.qp = fit.result, fit.params.qp
            gain_scale = fit.gain_scale
            payload = res.payload
            rec = from_kernel(res.recon, tuple(array.shape), cls.arrangement)
            # the trace of a raster tensor holds its predicted rows [1.5], not coding units
            cus_rec = res.cus if cls.tree.enabled else res.cus[:0]
            pred_rows = 0 if cls.tree.enabled else len(res.cus)
        del fit
        # ---- clustering-based quantization: RD decision against scalar coding [1.2]
        cst = cluster.settings(config, name, cls.layer.label, tuple(array.shape))
        if mode == hls.CodingMode.QUANTIZED and cluster.eligible(array, cst):
            full_imp = (imp.normalized(plan.imp_maps[name], imp_floor, plan.imp_norm.get(name))
                        if name in plan.imp_maps else None)
            scalar_bits = 8 * (len(hls.tensor_parameter_set(tps, tool_flags))
                               + len(hls.tensor_data_unit(tensor_id, payload)))
            decision = cluster.choose(array, full_imp, cst, tps, tool_flags, scalar_bits, rec,
                                      float(config["LambdaScale"]), f"tensor '{name}'")
            if decision.clustered is not None:
                tps = cluster.cluster_tps(tps, decision.clustered.info)
                payload, rec = decision.clustered.payload, decision.clustered.recon
                mode, clustered = hls.CodingMode.CLUSTERED, True
                gain_scale = 1.0
                cus_rec = None
    else:
        payload = _lossless_bytes(array)
        rec = np.array(array, copy=True, order="C")  # keeps 0-d tensors 0-d
        note = plan.notes.get(name, "")
    tps_unit = hls.tensor_parameter_set(tps, tool_flags)
    tps_md5 = hls.unit_md5(tps_unit) if tool_flags & hls.TOOL_INTEGRITY else None
    tensor_units = b"".join([
        tps_unit,
        *_data_unit_parts(tensor_id, payload),
        hls.tensor_hash_unit(tensor_id, tensor_md5(rec), tps_md5),
    ])
    payload_bytes = len(payload)
    del payload
    quantized = mode != hls.CodingMode.LOSSLESS
    signal, noise = _energies(array, rec)
    imp_signal, imp_noise = (_energies(array, rec, plan.imp_maps[name])
                             if name in plan.imp_maps else (0.0, 0.0))
    stat = TensorStats(
        name=name,
        shape=tuple(array.shape),
        dtype=array.dtype.name,
        layer_type=cls.layer.label,
        role=plan.roles[name].label,
        mode=mode.name.lower(),
        qp=tps.qp if quantized else None,
        bits=8 * len(tensor_units),
        num_params=int(array.size),
        snr_db=snr_from_energies(signal, noise) if quantized else float("inf"),
        seconds=time.perf_counter() - start,
        signal=cls.signal,
        tree=[k for k, v in TREE_TYPES.items() if v == tps.tree_type][0]
        if mode == hls.CodingMode.QUANTIZED else "-",
        num_cus=len(cus_rec) if cus_rec is not None else 0,
        pred=_pred_label(tps) if mode == hls.CodingMode.QUANTIZED else "-",
        pred_rows=pred_rows if mode == hls.CodingMode.QUANTIZED else 0,
        rows=tps.rows if mode == hls.CodingMode.QUANTIZED else 0,
        note=note,
        signal_energy=signal,
        noise_energy=noise,
        imp_signal_energy=imp_signal,
        imp_noise_energy=imp_noise,
        gain_scale=gain_scale,
        payload_bits=8 * payload_bytes,
    )
    return CodedTensor(tensor_units, stat, rec, cus_rec, clustered)


def _data_unit_parts(tensor_id: int, payload: bytes) -> list[bytes]:
    """hls.tensor_data_unit(tensor_id, payload) in pieces (header, tensor_id, payload), so
    a large payload is copied once, when the pieces are joined."""
    empty = hls.tensor_data_unit(tensor_id, b"")
    body = len(empty) - hls.UNIT_HEADER_BYTES + len(payload)
    if body > hls.MAX_UNIT_PAYLOAD:
        raise ValueError(f"unit payload of {body} bytes exceeds 2^32 - 1")
    return [empty[:1], body.to_bytes(4, "big"), empty[hls.UNIT_HEADER_BYTES:], payload]


#: elements of a tensor whose energies are summed in one piece (larger ones: in blocks of
#: this many, to bound the float64 copies)
ENERGY_BLOCK = 1 << 22


def _energies(original: np.ndarray, recon: np.ndarray,
              weights: np.ndarray | None = None) -> tuple[float, float]:
    """sum(x^2) and sum((x - recon)^2) in float64, as :func:`snr_db` computes them (a tensor
    of more than ENERGY_BLOCK elements in blocks: the same up to rounding); with ``weights``
    (an importance map of the tensor's shape) sum(w x^2) and sum(w (x - recon)^2)."""
    if np.asarray(original).dtype.name not in hls.FLOAT_DTYPES:
        return 0.0, 0.0
    flat_x, flat_r = np.asarray(original).reshape(-1), np.asarray(recon).reshape(-1)
    flat_w = None if weights is None else np.asarray(weights).reshape(-1)
    signal = noise = 0.0
    for lo in range(0, max(flat_x.size, 1), ENERGY_BLOCK):
        # float64 weights near the range, non-finite ones carried exactly: no warnings
        with np.errstate(over="ignore", invalid="ignore"):
            x = np.asarray(flat_x[lo:lo + ENERGY_BLOCK], dtype=np.float64)
            e = x - np.asarray(flat_r[lo:lo + ENERGY_BLOCK], dtype=np.float64)
            if flat_w is None:
                signal += float(np.sum(x * x))
                noise += float(np.sum(e * e))
            else:
                w = np.asarray(flat_w[lo:lo + ENERGY_BLOCK], dtype=np.float64)
                signal += float(np.sum(w * x * x))
                noise += float(np.sum(w * e * e))
    return signal, noise


def pooled_snr(stats: Sequence[TensorStats], weighted: bool = False) -> float:
    """The model's weight SNR pooled over its float tensors, 10 log10(sum x^2 / sum (x - r)^2)
    (the CE's pooled wSNR, nntm.ce.runner.weight_snr), from each tensor's energies; with
    ``weighted`` each square times the weight's importance, over the tensors with a map (the
    maps' estimate of the error at the layers' outputs; the maps' values are in one unit across
    layers, an unmapped tensor's weight 1 would not be)."""
    signal = noise = 0.0
    for s in stats:
        if s.dtype in hls.FLOAT_DTYPES:
            signal += s.imp_signal_energy if weighted else s.signal_energy
            noise += s.imp_noise_energy if weighted else s.noise_energy
    return snr_from_energies(signal, noise)


def snr_from_energies(signal: float, noise: float) -> float:
    """10 log10(signal / noise); inf without noise, -inf without signal."""
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * np.log10(signal / noise)


# ------------------------------------------------------------------ range fallback
#
# A quantized level is at most NNTM_MAX_LEVEL (2^30 - 1) in magnitude: a weight larger than
# that many steps cannot be coded at the requested QP.  The encoder then codes the tensor
# at the finest QP whose levels fit (found from the largest |weight| and the step formula,
# then verified by encoding), or exactly when that is no larger, and says so in the
# tensor's TensorStats.note.  A predicted tensor whose residual does not fit at any
# nearby QP is coded without its prediction.

#: QPs tried above the first estimate before a fallback gives up on a candidate
FALLBACK_TRIES = 16
#: the largest QP a tensor parameter set carries (docs/bitstream.md, qp se(v) in +-4096)
MAX_QP = 4096


@dataclass
class _Fit:
    """A kernel tensor coded by :func:`_encode_fitting` (``result`` None: no QP fits)."""

    result: core.KernelResult | None
    gain_scale: float                # GainCompensation's factor on the kernel (1: none)
    params: core.KernelParams
    ref: core.Reference | None
    fell_back: bool = False
    dropped_ref: bool = False

    def note(self, requested: int, exact: bool = False) -> str:
        """The warning of a tensor not coded as asked ('' when it is)."""
        if not self.fell_back:
            return ""
        text = f"levels out of the coder's range at QP {requested}"
        if self.result is None:
            return text + " and at every QP the syntax allows: coded exactly (lossless)"
        if self.dropped_ref:
            text += " (also with its prediction: coded without it)"
        if exact and self.result is not None:
            return text + (f": coded exactly (lossless, no larger than QP {self.params.qp}, "
                           "the finest QP that fits)")
        return text + f": coded at QP {self.params.qp}, the finest QP that fits"


def _is_range(exc: CoreError) -> bool:
    return exc.code == core.lib.NNTM_ERR_RANGE


def first_fitting_qp(max_abs: float, qp: int, qp_density: int) -> int | None:
    """The finest QP at or above ``qp`` whose step puts ``max_abs`` within NNTM_MAX_LEVEL
    steps (the estimate the fallback starts from; the encoder then verifies it); None when
    no QP up to MAX_QP does."""
    limit = float(core.lib.NNTM_MAX_LEVEL)
    if not max_abs > 0.0:
        return qp
    per = 1 << qp_density
    # step(qp) is within a factor 2 of 2^(qp / per): start a doubling below the estimate
    est = int(np.floor(per * np.log2(max_abs / limit))) - per
    q = max(qp, est)
    while q <= MAX_QP:
        if max_abs / core.step_size(q, qp_density) <= limit:
            return q
        q += 1
    return None


def _target_max(kernel: np.ndarray, ref: core.Reference | None) -> float:
    """The largest |value| the levels code: the weights, or their residual from ``ref``."""
    if not kernel.size:
        return 0.0
    if ref is None:  # exact in the kernel's dtype: no copy
        return float(max(np.max(kernel), -np.min(kernel)))
    flat, samples = kernel.reshape(-1), ref.samples.reshape(-1)
    top = 0.0
    for lo in range(0, flat.size, ENERGY_BLOCK):  # float64 a block at a time
        pred = samples[lo:lo + ENERGY_BLOCK].astype(np.float64) * (ref.scale /
                                                                   core.PRED_SCALE_ONE)
        top = max(top, float(np.max(np.abs(flat[lo:lo + ENERGY_BLOCK].astype(np.float64)
                                           - pred))))
    return top


def _encode_fitting(kernel: np.ndarray, params: core.KernelParams, dtype: np.dtype,
                    config: Config, search: core.SearchParams, weight_map: np.ndarray | None,
                    ref: core.Reference | None, row_hint: np.ndarray | None,
                    what: str, basis: tuple[float, float] | None = None,
                    gain_scale: float | None = None) -> _Fit:
    """Code a kernel tensor at ``params.qp``, or where its levels do not fit the coder's
    range there, at the finest coarser QP where they do (first with the prediction
    ``ref``, then without it); a result of None when no QP the syntax allows fits.
    ``basis``: the gains are the whole tensor's estimated from this sample of it
    (:func:`reconstruction_gain`); ``gain_scale``: GainCompensation codes kernel x this
    instead of searching its own (rate control's half and quarter samples take the
    sample's)."""
    def attempt(p: core.KernelParams, r: core.Reference | None
                ) -> tuple[core.KernelResult, float]:
        lam = _lambda_scale(config, r is not None)
        passes = int(config["GainCompensation"])
        compensate = (passes and kernel.ndim >= 2 and kernel.shape[0] >= 2
                      and bool(config["RDOQ"]))
        scale = gain_scale if compensate and gain_scale is not None else 1.0
        target = kernel if scale == 1.0 else _scaled(kernel, scale)
        result = core.encode_kernel(target, p, dtype, bool(config["RDOQ"]), lam, what,
                                    search, weight_map, r, row_hint)
        if compensate and gain_scale is None:
            result, scale = _compensate_gain(kernel, result, passes, p, dtype, lam, what,
                                             search, weight_map, r, row_hint, basis)
        floor = float(config["LambdaGainFloor"])
        if floor <= 0.0 or kernel.shape[0] < 2 or not bool(config["RDOQ"]):  # 1-D: one row
            return result, scale
        for halving in range(GAIN_HALVINGS + 1):
            if lam <= 0.0 or reconstruction_gain(kernel, result.recon, basis) >= 1.0 - floor:
                break
            lam = lam / 2 if halving < GAIN_HALVINGS else 0.0
            result = core.encode_kernel(kernel, p, dtype, True, lam, what, search,
                                        weight_map, r, row_hint)
            scale = 1.0  # coded from the kernel itself again
        return result, scale

    try:
        return _Fit(*attempt(params, ref), params, ref)
    except CoreError as exc:
        if not _is_range(exc):
            raise EncodeError(str(exc)) from exc
    for r in (ref, None) if ref is not None else (None,):
        start = first_fitting_qp(_target_max(kernel, r), params.qp, params.qp_density)
        if start is None:
            continue
        if params.dq_enabled:  # DQ indices count half steps: try a doubling finer too
            start -= 1 << params.qp_density
        # with CU QP deltas the finest delta the search tries must fit too
        tries = FALLBACK_TRIES + max((abs(d) for d in search.qp_deltas), default=0)
        for q in range(max(start, params.qp + 1), min(start + tries, MAX_QP + 1)):
            p = replace(params, qp=q)
            try:
                return _Fit(*attempt(p, r), p, r, True, ref is not None and r is None)
            except CoreError as exc:
                # a range error, or a step past what the encoder computes with: coarser
                if not _is_range(exc) and exc.code != core.lib.NNTM_ERR_ARG:
                    raise EncodeError(str(exc)) from exc
    return _Fit(None, 1.0, params, None, True, ref is not None)


def _exact_if_cheaper(tps: hls.TensorParameterSet, fit: _Fit, array: np.ndarray,
                      tool_flags: int) -> hls.TensorParameterSet | None:
    """The LOSSLESS parameter set of a tensor that no QP fits, or whose exact coding takes
    no more bytes than its quantized coding ``fit``; None when the quantized one is
    smaller."""
    exact = hls.TensorParameterSet(tps.tensor_id, tps.name, array.dtype, tuple(array.shape),
                                   hls.CodingMode.LOSSLESS)
    exact.signal_type = tps.signal_type
    if fit.result is None:
        return exact
    coded = replace(tps, qp=fit.params.qp)
    quantized = (len(hls.tensor_parameter_set(coded, tool_flags))
                 + len(hls.tensor_data_unit(tps.tensor_id, fit.result.payload)))
    lossless = (len(hls.tensor_parameter_set(exact, tool_flags))
                + len(hls.tensor_data_unit(tps.tensor_id, _lossless_bytes(array))))
    return exact if lossless <= quantized else None


def _compensate_gain(kernel: np.ndarray, result: core.KernelResult, passes: int,
                     params: core.KernelParams, dtype: np.dtype, lam: float, what: str,
                     search: core.SearchParams, weight_map: np.ndarray | None,
                     ref: core.Reference | None, row_hint: np.ndarray | None,
                     basis: tuple[float, float] | None = None
                     ) -> tuple[core.KernelResult, float]:
    """GainCompensation: code ``kernel`` again from kernel / c, c the product of the gains
    seen so far, while the reconstruction's gain against the original stays below 1 (up to
    ``passes`` times); the result whose gain is nearest 1 is kept, with the factor 1 / c
    it coded the kernel with."""
    gain = reconstruction_gain(kernel, result.recon, basis)
    best, best_err, best_scale = result, abs(1.0 - gain), 1.0
    scale = 1.0
    for _ in range(passes):
        if not 0.0 < gain < 1.0:
            break
        scale /= gain
        target = _scaled(kernel, scale)
        try:
            trial = core.encode_kernel(target, params, dtype, True, lam, what, search,
                                       weight_map, ref, row_hint)
        except CoreError:
            break  # the scaled levels leave the coder's range: keep what fits
        gain = reconstruction_gain(kernel, trial.recon, basis)
        err = abs(1.0 - gain)
        if err < best_err:
            best, best_err, best_scale = trial, err, scale
    return best, best_scale


def _scaled(kernel: np.ndarray, scale: float) -> np.ndarray:
    """kernel x scale, computed in float64 (a block at a time), in the kernel's dtype."""
    out = np.empty_like(kernel)
    src, dst = kernel.reshape(-1), out.reshape(-1)
    for lo in range(0, src.size, ENERGY_BLOCK):
        dst[lo:lo + ENERGY_BLOCK] = src[lo:lo + ENERGY_BLOCK].astype(np.float64) * scale
    return out


#: LambdaGainFloor: times lambda is halved before the tensor is coded with none
GAIN_HALVINGS = 4


def reconstruction_gain(weights: np.ndarray, recon: np.ndarray,
                        basis: tuple[float, float] | None = None) -> float:
    """<r, w> / <w, w>: below 1 where quantization shrinks the tensor toward zero (1 for an
    all-zero tensor).

    ``basis`` (W, k): ``weights`` are a sample of a tensor (rate control's) whose energy
    <w, w> is W and whose elements are k times theirs, and the gain returned is the whole
    tensor's estimated from the sample, 1 - k <w, w - r> / W. The shrinkage <w, w - r> is
    the small weights' loss and scales with the elements; the energy is the whole tensor's,
    with the outliers a sample misses (they keep their value). The sample's own gain is
    lower, and its compensation larger, than the whole tensor's."""
    flat_w, flat_r = np.asarray(weights).reshape(-1), np.asarray(recon).reshape(-1)
    energy = cross = 0.0
    for lo in range(0, flat_w.size, ENERGY_BLOCK):  # float64 a block at a time
        w = flat_w[lo:lo + ENERGY_BLOCK].astype(np.float64)
        energy += float(w @ w)
        cross += float(flat_r[lo:lo + ENERGY_BLOCK].astype(np.float64) @ w)
    if not energy > 0.0:
        return 1.0
    if basis is None:
        return cross / energy
    whole, ratio = basis
    return 1.0 - ratio * (energy - cross) / whole if whole > 0.0 else 1.0


def _lambda_scale(config: Config, predicted: bool) -> float:
    """LambdaScale, or PredLambdaScale for a predicted tensor when that is set (> 0)."""
    if predicted and float(config["PredLambdaScale"]) > 0.0:
        return float(config["PredLambdaScale"])
    return float(config["LambdaScale"])


def _pred_label(tps: hls.TensorParameterSet) -> str:
    """TensorStats.pred of a QUANTIZED tensor: "-", "ref" or "t<id>"."""
    if tps.pred_mode == hls.PredMode.NONE:
        return "-"
    return "ref" if tps.pred_mode == hls.PredMode.REF_MODEL else f"t{tps.ref_tensor_id}"


def _may_predict(arrays: list[tuple[str, np.ndarray]], plans: list, config: Config,
                 ref_model: Mapping[str, np.ndarray] | None) -> bool:
    """Whether any quantized tensor has a reference picture to try (sets TOOL_INTER_PRED)."""
    shapes: set[tuple[int, ...]] = set()
    for (name, array), (mode, _cls) in zip(arrays, plans, strict=True):
        if mode != hls.CodingMode.QUANTIZED:
            continue
        if (config["InterPred"] and ref_model is not None and name in ref_model
                and predict.usable(np.asarray(ref_model[name]), tuple(array.shape))):
            return True
        if config["EarlierTensorPred"]:
            if tuple(array.shape) in shapes and array.dtype.name in core.REF_DTYPES:
                return True
            shapes.add(tuple(array.shape))
    return False


def _candidates(name: str, array: np.ndarray, tensor_id: int,
                arrays: list[tuple[str, np.ndarray]], plans: list, recon: dict[str, np.ndarray],
                config: Config, ref_model: Mapping[str, np.ndarray] | None,
                ) -> list[predict.Candidate]:
    """The reference pictures a tensor may predict from (in the order they are tried)."""
    shape = tuple(array.shape)
    out = []
    if config["InterPred"] and ref_model is not None and name in ref_model:
        ref = np.asarray(ref_model[name])
        if predict.usable(ref, shape):
            out.append(predict.Candidate(hls.PredMode.REF_MODEL, 0, _little_endian(ref)))
    if config["EarlierTensorPred"]:
        for tid in range(tensor_id):
            other, (mode, _cls) = arrays[tid][0], plans[tid]
            if mode == hls.CodingMode.QUANTIZED and predict.usable(recon[other], shape):
                out.append(predict.Candidate(hls.PredMode.EARLIER_TENSOR, tid, recon[other]))
    return out


def encode(tensors: Mapping[str, np.ndarray], config: Config,
           source_format: hls.SourceFormat = hls.SourceFormat.UNKNOWN,
           container: hls.Container | None = None) -> bytes:
    """Encode a model (name -> array, in order) into an NNTM bitstream."""
    return encode_with_recon(tensors, config, source_format, container=container).data


# Each level costs at least one sig_flag bin.  The dual-rate estimator's probability never
# passes 32697/32768 (at least 0.0031 bit a level: fewer than 2600 levels a payload byte);
# the counting estimator [1.4] reaches 32752/32768 (ProbOne 16..32752: at least 0.0007
# bit, fewer than 11 400 levels a byte).  docs/bitstream.md clause 7.1; checked before
# allocating.
MIN_ELEMENTS_PER_BYTE = 4096
MIN_ELEMENTS_PER_BYTE_COUNTING = 16384


def max_raster_elements(tps: hls.TensorParameterSet, payload_size: int) -> int:
    """The most levels a raster (no coding tree) payload of ``payload_size`` bytes holds."""
    per_byte = MIN_ELEMENTS_PER_BYTE_COUNTING if tps.prob_window else MIN_ELEMENTS_PER_BYTE
    return per_byte * (payload_size + 8)


def _decode_tensor(tps: hls.TensorParameterSet, payload: bytes, where: str, trace: bool,
                   traces: dict[str, np.ndarray], ref: np.ndarray | None = None,
                   threads: int = 1, budget: object | None = None) -> np.ndarray:
    what = f"{where}, tensor '{tps.name}'"
    if tps.coding_mode == hls.CodingMode.LOSSLESS:
        expected = tps.num_elements * tps.dtype.itemsize
        if len(payload) != expected:
            raise BitstreamError(f"{what}: lossless payload has {len(payload)} bytes, "
                                 f"expected {expected}")
        if tps.dtype == np.bool_ and any(b > 1 for b in set(payload)):
            raise BitstreamError(f"{what}: bool tensor with bytes other than 0 and 1")
        return np.frombuffer(payload, dtype=tps.dtype.newbyteorder("<")).astype(
            tps.dtype).reshape(tps.shape)
    if tps.coding_mode == hls.CodingMode.CLUSTERED:
        return cluster.decode_tensor(tps, payload, what)
    if not tps.tree.enabled and tps.num_elements > max_raster_elements(tps, len(payload)):
        raise BitstreamError(f"{what}: a payload of {len(payload)} bytes cannot hold "
                             f"{tps.num_elements} levels")
    params = kernel_params(tps)
    cref = None
    if ref is not None:
        cref = core.Reference(to_kernel(ref, Arrangement(tps.arrangement)), tps.pred_scale)
    try:
        res = core.decode_kernel(payload, params, tps.dtype, what, trace, cref, threads,
                                 budget)
    except CoreError as exc:
        raise BitstreamError(str(exc)) from exc
    except MemoryError:
        raise BitstreamError(f"{what}: cannot allocate {tps.num_elements} elements "
                             f"(shape {tps.shape})") from None
    if trace:
        traces[tps.name] = res.cus
    return from_kernel(res.recon, tps.shape, Arrangement(tps.arrangement))


# A decoded tensor may hold at most this many elements unless the caller
# raises the limit: like an image decoder's decompression-bomb guard, since a
# few bytes of skip CUs can announce a huge all-zero tensor.
DEFAULT_MAX_ELEMENTS = 1 << 28


def check_element_limit(parsed: Mapping[int, hls.TensorParameterSet], where: Mapping[int, str],
                        max_elements: int) -> None:
    """BitstreamError for the first tensor of more than ``max_elements`` elements (the
    decoder's capacity MaxTensorElements, checked at the parameter sets)."""
    for index, tps in parsed.items():
        if tps.num_elements > max_elements:
            raise BitstreamError(
                f"{where[index]}: tensor '{tps.name}' has {tps.num_elements} elements, "
                f"more than this decoder's limit of {max_elements} (raise MaxTensorElements "
                "if the stream is trusted)")


#: the decoders of :func:`decode` and :func:`decode_detailed`
DECODERS = ("c", "python")


def decode_detailed(data: bytes, trace: bool = False,
                    max_elements: int = DEFAULT_MAX_ELEMENTS,
                    ref_model: Mapping[str, np.ndarray] | None = None,
                    max_memory: int | None = None,
                    max_expansion: int = DEFAULT_MAX_EXPANSION,
                    decoder: str = "c", threads: int | None = 1) -> DecodeResult:
    """Decode a bitstream; check every hash; report each tensor (no exception on mismatch).

    With ``trace`` the result also holds each tree-coded tensor's CU records.
    A tensor of more than ``max_elements`` elements, and a stream whose decode
    would need more than ``max_memory`` bytes (None: :func:`default_max_memory`)
    or decodes to more than ``max_expansion`` bytes per stream byte, are refused
    (MemoryBudgetError) before anything is allocated for a tensor.  ``ref_model``
    is the reference model of a stream with predicted tensors (ReferenceModelError
    if it is missing or wrong).

    ``decoder`` "c" (the default): the C library's stream reader (``nntm.cstream``, the one
    nntm-dec and DecoderApp use) decodes and checks the tensors, after the refusals above
    are made here with the Python path's messages; ``threads`` (None or 0: every core) is
    how many threads decode at once.  A stream the C reader cannot take (a format newer
    than it reads, a container unit without zlib in the extension) and ``trace`` (the CU
    records come from the Python path) go to the Python reader.  "python": the Python
    reader (:func:`decode_detailed_python`), the independent spec-reading decoder, on one
    thread.  Both return the same tensors and reports and raise the same NntmError classes
    (the texts of errors found inside a stream's units may be worded otherwise).
    """
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, not {decoder!r}")
    if decoder == "c" and not trace:
        from . import cstream  # it imports this module

        result = cstream.decode_bytes(data, max_elements, ref_model, max_memory,
                                      max_expansion, threads)
        if result is not None:
            return result
    return decode_detailed_python(data, trace, max_elements, ref_model, max_memory,
                                  max_expansion)


def decode_detailed_python(data: bytes, trace: bool = False,
                           max_elements: int = DEFAULT_MAX_ELEMENTS,
                           ref_model: Mapping[str, np.ndarray] | None = None,
                           max_memory: int | None = None,
                           max_expansion: int = DEFAULT_MAX_EXPANSION) -> DecodeResult:
    """:func:`decode_detailed` by the Python reader (``hls``, with the C core for each
    kernel tensor's payload): the spec-reading decoder that ConformanceApp runs beside
    the C one."""
    if (len(data) >= hls.UNIT_HEADER_BYTES + len(hls.MAGIC)
            and data[hls.UNIT_HEADER_BYTES:hls.UNIT_HEADER_BYTES + len(hls.MAGIC)] != hls.MAGIC):
        raise BitstreamError("not an NNTM bitstream: it does not begin with a model parameter "
                             "set carrying the magic 'NNTM'")
    units = hls.split_units(data)
    if not units or units[0].unit_type != hls.UnitType.MODEL_PARAMETER_SET:
        raise BitstreamError("unit 0: the stream does not start with a model parameter set")
    mps = hls.parse_model_parameter_set(units[0])
    # every parameter set first: the memory a decode needs is known before anything is
    # allocated for a tensor (a stream refused here costs its own size and no more)
    parsed = {unit.index: hls.parse_tensor_parameter_set(unit, mps) for unit in units
              if unit.unit_type == hls.UnitType.TENSOR_PARAMETER_SET}
    check_element_limit(parsed, {i: units[i].where for i in parsed}, max_elements)
    check_budget(len(data), list(parsed.values()), max_memory, max_expansion)
    integrity = bool(mps.tool_flags & hls.TOOL_INTEGRITY)
    tensors: dict[str, np.ndarray] = {}
    reports: list[TensorReport] = []
    pending: dict[int, hls.TensorParameterSet] = {}
    tps_md5s: dict[int, bytes] = {}
    decoded: dict[int, tuple[np.ndarray, float]] = {}
    traces: dict[str, np.ndarray] = {}
    seen_ids: set[int] = set()
    seen_names: set[str] = set()
    by_id: dict[int, np.ndarray] = {}
    refs: dict[int, np.ndarray] = {}
    ended = False
    stream_ok: bool | None = None
    stream_md5 = ""
    container = _parse_container(units, mps, len(data), max_memory, max_expansion)
    for unit in units[1 + (container is not None):]:
        if ended:
            raise BitstreamError(f"{unit.where}: unit after end_of_stream")
        if unit.unit_type == hls.UnitType.TENSOR_PARAMETER_SET:
            tps = parsed[unit.index]
            if tps.tensor_id >= mps.num_tensors:
                raise BitstreamError(f"{unit.where}: tensor_id {tps.tensor_id} but the model "
                                     f"has {mps.num_tensors} tensors")
            if tps.tensor_id in seen_ids or tps.name in seen_names:
                raise BitstreamError(f"{unit.where}: tensor_id {tps.tensor_id} "
                                     f"('{tps.name}') appears twice")
            seen_ids.add(tps.tensor_id)
            seen_names.add(tps.name)
            if tps.coding_mode == hls.CodingMode.QUANTIZED and tps.pred_mode:
                refs[tps.tensor_id] = predict.find_reference(tps, ref_model, by_id, unit.where)
            pending[tps.tensor_id] = tps
            if integrity:
                tps_md5s[tps.tensor_id] = hls.unit_md5(_unit_bytes(data, unit))
        elif unit.unit_type == hls.UnitType.TENSOR_DATA_UNIT:
            tensor_id, payload = hls.parse_tensor_data_unit(unit)
            if tensor_id not in pending or tensor_id in decoded:
                raise BitstreamError(f"{unit.where}: data for tensor_id {tensor_id} "
                                     "without a parameter set before it")
            start = time.perf_counter()
            array = _decode_tensor(pending[tensor_id], payload, unit.where, trace, traces,
                                   refs.pop(tensor_id, None))
            decoded[tensor_id] = (array, time.perf_counter() - start)
        elif unit.unit_type == hls.UnitType.TENSOR_HASH_UNIT:
            tensor_id, md5, tps_md5 = hls.parse_tensor_hash_unit(unit, mps)
            if tensor_id not in decoded or tensor_id not in pending:
                raise BitstreamError(f"{unit.where}: hash for tensor_id {tensor_id} "
                                     "without a data unit before it, or a second one")
            tps = pending.pop(tensor_id)
            array, seconds = decoded.pop(tensor_id)
            actual = tensor_md5(array)
            tensors[tps.name] = array
            by_id[tensor_id] = array
            params_ok = None if tps_md5 is None else tps_md5s.pop(tensor_id) == tps_md5
            reports.append(TensorReport(tps.name, tps.shape, tps.dtype.name, actual.hex(),
                                        actual == md5, seconds, params_ok))
        elif unit.unit_type == hls.UnitType.END_OF_STREAM:
            expected = hls.parse_end_of_stream(unit, mps)
            if expected is not None:
                digest = hls.unit_md5(data[:unit.offset])
                stream_md5, stream_ok = digest.hex(), digest == expected
            ended = True
        else:
            raise BitstreamError(f"{unit.where}: unexpected {unit.unit_type.name.lower()}")
    if not ended:
        raise BitstreamError(f"truncated stream: no end_of_stream unit after {len(units)} units")
    if pending:
        names = ", ".join(f"'{t.name}'" for t in pending.values())
        raise BitstreamError(f"tensor(s) {names} have no data or hash unit")
    if len(reports) != mps.num_tensors:
        raise BitstreamError(f"model parameter set announces {mps.num_tensors} tensors, "
                             f"stream holds {len(reports)}")
    return DecodeResult(tensors, reports, mps.source_format, traces, stream_ok,
                        (mps.version_major, mps.version_minor), stream_md5, container)


def _parse_container(units: list[hls.Unit], mps: hls.ModelParameterSet, stream_bytes: int,
                     max_memory: int | None, max_expansion: int) -> hls.Container | None:
    """The container unit of a TOOL_CONTAINER stream [1.7]: exactly one, right after the
    model parameter set (None without the tool)."""
    if not mps.tool_flags & hls.TOOL_CONTAINER:
        return None
    if len(units) < 2 or units[1].unit_type != hls.UnitType.CONTAINER_UNIT:
        where = units[1].where if len(units) > 1 else "end of stream"
        raise BitstreamError(f"{where}: tool_flags has TOOL_CONTAINER but no container unit "
                             "follows the model parameter set")
    limit = min(hls.MAX_CONTAINER_BYTES, max_expansion * max(stream_bytes, 1),
                default_max_memory() if max_memory is None else max_memory)
    return hls.parse_container_unit(units[1], limit)


def _unit_bytes(data: bytes, unit: hls.Unit) -> bytes:
    """A unit's bytes in the stream, header included."""
    return data[unit.offset:unit.offset + hls.UNIT_HEADER_BYTES + len(unit.payload)]


def decode(data: bytes, max_elements: int = DEFAULT_MAX_ELEMENTS,
           ref_model: Mapping[str, np.ndarray] | None = None, max_memory: int | None = None,
           max_expansion: int = DEFAULT_MAX_EXPANSION, decoder: str = "c",
           threads: int | None = 1) -> dict[str, np.ndarray]:
    """Decode a bitstream; raise HashMismatchError if any tensor's MD5 differs.

    ``decoder`` "c" (the C stream reader, default) or "python" (the Python reader), and
    ``threads``, as in :func:`decode_detailed`."""
    result = decode_detailed(data, max_elements=max_elements, ref_model=ref_model,
                             max_memory=max_memory, max_expansion=max_expansion,
                             decoder=decoder, threads=threads)
    problem = mismatch_message(result)
    if problem:
        raise HashMismatchError(problem)
    return result.tensors


def decode_python(data: bytes, max_elements: int = DEFAULT_MAX_ELEMENTS,
                  ref_model: Mapping[str, np.ndarray] | None = None,
                  max_memory: int | None = None,
                  max_expansion: int = DEFAULT_MAX_EXPANSION) -> dict[str, np.ndarray]:
    """:func:`decode` by the Python reader (``decoder="python"``)."""
    return decode(data, max_elements, ref_model, max_memory, max_expansion, decoder="python")


def mismatch_message(result: DecodeResult) -> str:
    """What failed the checks of a decoded stream, in one sentence ('' when all passed)."""
    parts = []
    data = [r.name for r in result.reports if not r.data_ok]
    params = [r.name for r in result.reports if r.params_ok is False]
    if data:
        parts.append("MD5 mismatch in tensor(s) " + ", ".join(f"'{n}'" for n in data))
    if params:
        parts.append("parameter set MD5 mismatch in tensor(s) "
                     + ", ".join(f"'{n}'" for n in params))
    if result.stream_ok is False:
        parts.append("stream MD5 mismatch (a unit of the stream was changed)")
    return "; ".join(parts)
