"""QP sweeps of one codec configuration on one CTC model.

A *codec* here is a named configuration that turns a model's tensors into
bytes and back: an NNTM cfg (one or more cfg files layered, run through
:func:`nntm.encode_with_recon` and :func:`nntm.decode`) or NNCodec
(:mod:`nntm.ce.nncodec_anchor`).  :func:`run_sweep` codes the model once per
QP and measures, on the *decoded* tensors:

- ``bytes`` of the whole stream and ``bits_per_param`` = 8 * bytes / number
  of float elements (integer buffers are coded but are not parameters);
- ``snr_db``: weight SNR pooled over all float tensors,
  ``10 log10(sum x^2 / sum (x - y)^2)``;
- ``snr_norm_db``: per-tensor-normalised SNR, each float tensor scaled to unit
  energy before pooling, ``-10 log10(mean_t(err_t / energy_t))``, leaving out
  numerically zero tensors (:data:`NEGLIGIBLE_RMS_RATIO`).  In BatchNorm
  models nearly all of the pooled energy sits in the running variances, so
  the pooled figure hides what happens to the weights; the normalised one
  gives every tensor the same say (docs/ctc.md);
- every metric of the model adapter's ``evaluate`` on the decoded tensors;
- encode, decode and evaluation wall time and the point's CPU time (the only
  non-deterministic numbers; kept apart from the results, :class:`PointTiming`).

A point is a pure function of its inputs (the model's tensors, the codec's
resolved configuration and build, the QP, the evaluation): :func:`measure_point`
returns its results as :class:`PointData` and its times as :class:`PointTiming`,
so that :mod:`nntm.ce.points` can cache the one and report the other.

For NNTM the decoded tensors must equal the encoder's reconstruction bit for
bit; a mismatch raises :class:`~nntm.errors.NntmError`.
"""

from __future__ import annotations

import abc
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nntm.errors import ConfigError, NntmError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from nntm.ce.models.base import ModelAdapter

__all__ = [
    "NEGLIGIBLE_RMS_RATIO",
    "NNCODEC",
    "Codec",
    "MEASURE_VERSION",
    "NntmCodec",
    "Point",
    "PointData",
    "PointTiming",
    "is_float_array",
    "make_codec",
    "measure_point",
    "run_sweep",
    "WeightSNR",
    "weight_snr",
]

NNCODEC = "nncodec"
"""The codec spec that selects NNCodec instead of an NNTM cfg."""

MEASURE_VERSION = "1"
"""Version of what :func:`measure_point` measures on a decoded model (rate, weight SNRs, the
decoder check).  Part of every cache key (:mod:`nntm.ce.points`): raise it when a change here
changes a number of a point, so that no cached point of the old rule is reused."""

Log = Callable[[str], None]


def _print_flush(line: str) -> None:
    print(line, flush=True)


# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------


def is_float_array(array: np.ndarray) -> bool:
    """True for float tensors (float16/32/64 and ml_dtypes floats such as bfloat16)."""
    dt = np.asarray(array).dtype
    return dt.kind == "f" or (dt.kind == "V" and "float" in dt.name)


def _as_f64(array: np.ndarray) -> np.ndarray:
    return np.asarray(array).astype(np.float64, copy=False)


NEGLIGIBLE_RMS_RATIO = 1e-4
"""Tensors whose RMS is below this fraction of the median tensor RMS are numerically zero
(MobileNetV2 has 34 BatchNorm means and biases of RMS 5e-8 .. 6e-7 against a median of 0.1;
MiniLM an all-zero pooler bias) and are left out of the normalised SNR: any lossy codec zeroes
them, and each would count as a whole tensor lost."""


@dataclass(frozen=True)
class WeightSNR:
    """Weight-domain fidelity of a decoded model."""

    pooled_db: float
    normalised_db: float
    num_params: int
    num_tensors: int
    num_excluded: int


def weight_snr(original: Mapping[str, np.ndarray], decoded: Mapping[str, np.ndarray]) -> WeightSNR:
    """Pooled and per-tensor-normalised weight SNR over the float tensors.

    Pooled: ``10 log10(sum x^2 / sum (x - y)^2)`` over every float element.
    Normalised: each tensor scaled to unit energy, then pooled:
    ``-10 log10(mean_t(err_t / energy_t))`` over the float tensors whose RMS
    is at least :data:`NEGLIGIBLE_RMS_RATIO` times the median tensor RMS.
    An error of zero gives ``inf``.
    """
    signal = 0.0
    noise = 0.0
    n_params = 0
    per_tensor: list[tuple[float, float, float]] = []  # (rms, energy, error)
    for name, x in original.items():
        if not is_float_array(x):
            continue
        xa = _as_f64(x).ravel()
        diff = xa - _as_f64(decoded[name]).ravel()
        e = float(np.dot(xa, xa))
        d = float(np.dot(diff, diff))
        n_params += xa.size
        signal += e
        noise += d
        if xa.size:
            per_tensor.append((math.sqrt(e / xa.size), e, d))
    pooled = _db(signal, noise)
    floor = 0.0
    if per_tensor:
        floor = NEGLIGIBLE_RMS_RATIO * float(np.median([t[0] for t in per_tensor]))
    kept = [(e, d) for rms, e, d in per_tensor if rms > 0.0 and rms >= floor]
    rel_sum = sum(d / e for e, d in kept)
    norm = _db(float(len(kept)), rel_sum) if kept else math.nan
    return WeightSNR(pooled, norm, n_params, len(per_tensor), len(per_tensor) - len(kept))


def _db(signal: float, noise: float) -> float:
    if noise <= 0.0:
        return math.inf if signal > 0.0 else math.nan
    if signal <= 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


# ---------------------------------------------------------------------------
# Codecs
# ---------------------------------------------------------------------------


@dataclass
class Encoded:
    """What a codec's encoder gives back: the stream, and the reconstruction if known."""

    data: bytes
    recon: dict[str, np.ndarray] | None = None


class Codec(abc.ABC):
    """A named configuration that codes a model's tensors at a QP."""

    #: Short label used in tables, plots and progress lines.
    name: str
    #: What selected it (cfg file path(s) or "nncodec").
    spec: str
    #: Whether the decoded tensors must equal the encoder's reconstruction.
    checks_recon: bool = False

    def available(self) -> tuple[bool, str]:
        """``(True, "")`` if this codec can run here, else ``(False, why)``."""
        return True, ""

    def prepare(self, adapter: ModelAdapter, tensors: Mapping[str, np.ndarray]) -> None:
        """Work done once per model before its sweep, outside the timed encodes
        (e.g. measuring importance maps on calibration inputs).  None by default."""
        return None

    @abc.abstractmethod
    def encode(self, tensors: Mapping[str, np.ndarray], qp: int, model: str) -> Encoded:
        """Code ``tensors`` (of the CTC model called ``model``) at ``qp``."""

    @abc.abstractmethod
    def decode(self, data: bytes) -> dict[str, np.ndarray]:
        """Decode a stream made by :meth:`encode`."""

    def describe(self) -> str:
        return f"{self.name} ({self.spec})"

    def cache_identity(self, model: str, qp: int) -> dict[str, Any] | None:
        """Everything a point's result depends on besides the model and the evaluation.

        A JSON-able dict (the codec's resolved settings at ``qp`` for ``model``, its version
        or build), part of the point's cache key (:mod:`nntm.ce.points`); ``None`` (the
        default) means the codec's points are never cached.
        """
        return None


class NntmCodec(Codec):
    """NNTM with a stack of cfg files (later files win), QP set per point.

    If ``model_cfg_dir`` is given and ``<model_cfg_dir>/<model>.cfg`` exists,
    it is layered after the codec's cfg files (per-model facts and tensor
    rules, like an HM per-sequence cfg).  ``overrides`` are applied last,
    before the QP.
    """

    checks_recon = True

    def __init__(
        self,
        cfg_files: Sequence[str | os.PathLike[str]],
        name: str | None = None,
        model_cfg_dir: str | os.PathLike[str] | None = None,
        overrides: Mapping[str, object] | None = None,
    ) -> None:
        if not cfg_files:
            raise ConfigError("an NNTM codec needs at least one cfg file")
        self.cfg_files = [Path(f) for f in cfg_files]
        missing = [str(f) for f in self.cfg_files if not f.is_file()]
        if missing:
            raise ConfigError(f"cfg file(s) not found: {', '.join(missing)}")
        self.spec = ",".join(str(f) for f in self.cfg_files)
        self.name = name or "+".join(f.stem for f in self.cfg_files)
        self.model_cfg_dir = Path(model_cfg_dir) if model_cfg_dir else None
        self.overrides = dict(overrides or {})

    #: ImportanceFile values that ask the CE model adapter for maps measured on its
    #: calibration inputs: mean squared input activations, or output sensitivity
    CALIBRATION = "@calibration"
    SENSITIVITY = "@sensitivity"

    def prepare(self, adapter: ModelAdapter, tensors: Mapping[str, np.ndarray]) -> None:
        """Measure the adapter's importance maps once when the cfg asks for them."""
        cfg = self.config(0, adapter.name)
        consumers = getattr(adapter, "graph_consumers", None)  # ONNX models: roles from the graph
        if consumers is not None:
            self._consumers = getattr(self, "_consumers", {})
            self._consumers[adapter.name] = consumers()
        spec = str(cfg["ImportanceFile"]) if "ImportanceFile" in cfg else ""
        if not spec:
            return
        if spec == self.CALIBRATION:
            maps = adapter.input_channel_importance(tensors)
        elif spec == self.SENSITIVITY:
            maps = adapter.output_importance(tensors)
        else:
            from nntm.modelio import read_model

            maps = read_model(spec)
        self._importance = getattr(self, "_importance", {})
        self._importance[adapter.name] = {k: np.asarray(v) for k, v in maps.items()
                                          if k in tensors}

    def files_for(self, model: str) -> list[Path]:
        files = list(self.cfg_files)
        if self.model_cfg_dir is not None:
            per_model = self.model_cfg_dir / f"{model}.cfg"
            if per_model.is_file():
                files.append(per_model)
        return files

    def config(self, qp: int, model: str) -> Any:
        """The validated NNTM Config for one point."""
        import nntm

        config_cls = getattr(nntm, "Config", None)
        if config_cls is None:
            from nntm.config import Config as config_cls
        return config_cls.from_files(
            [str(f) for f in self.files_for(model)], overrides={**self.overrides, "QP": qp}
        )

    def cache_identity(self, model: str, qp: int) -> dict[str, Any] | None:
        """The resolved config (every key, so a changed default changes it), the SHA-256 of
        every file a value names (importance maps, a reference model), and the NNTM build
        (:func:`nntm.ce.identity.nntm_build_identity`).  Not the cfg file names: two cfgs
        that resolve to the same values share their points."""
        from nntm.ce.identity import config_identity, nntm_build_identity

        return {
            "kind": "nntm",
            **config_identity(self.config(qp, model)),
            "build": nntm_build_identity(),
        }

    def available(self) -> tuple[bool, str]:
        import nntm

        missing = [f for f in ("encode_with_recon", "decode") if not hasattr(nntm, f)]
        if missing:
            return False, f"the nntm package has no {', '.join(missing)} (codec API not built?)"
        return True, ""

    def encode(self, tensors: Mapping[str, np.ndarray], qp: int, model: str) -> Encoded:
        import nntm

        importance = getattr(self, "_importance", {}).get(model)
        consumers = getattr(self, "_consumers", {}).get(model)
        res = nntm.encode_with_recon(dict(tensors), self.config(qp, model), importance=importance,
                                     consumers=consumers)
        return Encoded(bytes(res.data), dict(res.recon))

    def decode(self, data: bytes) -> dict[str, np.ndarray]:
        import nntm

        return dict(nntm.decode(data))


def make_codec(
    spec: str,
    name: str | None = None,
    model_cfg_dir: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Codec:
    """A codec from a spec: ``"nncodec"`` or NNTM cfg file(s) separated by commas."""
    if spec.strip().lower() == NNCODEC:
        from nntm.ce.nncodec_anchor import NNCodecAnchor

        if overrides:
            raise ConfigError("cfg overrides apply to NNTM configurations only, not to nncodec")
        return NNCodecAnchor(name=name)
    files = [s.strip() for s in spec.split(",") if s.strip()]
    return NntmCodec(files, name=name, model_cfg_dir=model_cfg_dir, overrides=overrides)


# ---------------------------------------------------------------------------
# Points and sweeps
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PointData:
    """The results of one point: a pure function of its inputs (what the cache keeps)."""

    bytes: int
    num_params: int
    snr_db: float
    snr_norm_db: float
    metrics: dict[str, float]
    primary_metric: str

    def to_json(self) -> dict[str, Any]:
        return {
            "bytes": self.bytes,
            "num_params": self.num_params,
            "snr_db": self.snr_db,
            "snr_norm_db": self.snr_norm_db,
            "metrics": [[k, v] for k, v in self.metrics.items()],  # in the adapter's order
            "primary_metric": self.primary_metric,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> PointData:
        """The inverse of :meth:`to_json`; raises KeyError/TypeError/ValueError when malformed."""
        metrics = doc["metrics"]
        if not isinstance(metrics, list) or not all(
            isinstance(m, list) and len(m) == 2 for m in metrics
        ):
            raise TypeError("metrics is not a list of [name, value] pairs")
        return cls(
            bytes=int(doc["bytes"]),
            num_params=int(doc["num_params"]),
            snr_db=float(doc["snr_db"]),
            snr_norm_db=float(doc["snr_norm_db"]),
            metrics={str(k): float(v) for k, v in metrics},
            primary_metric=str(doc["primary_metric"]),
        )


@dataclass(frozen=True)
class PointTiming:
    """The times of one point, as measured when it was computed (they differ per run)."""

    enc_s: float = 0.0
    dec_s: float = 0.0
    eval_s: float = 0.0
    cpu_s: float = 0.0
    cached: bool = False

    def to_json(self) -> dict[str, float]:
        return {"enc_s": self.enc_s, "dec_s": self.dec_s, "eval_s": self.eval_s,
                "cpu_s": self.cpu_s}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], cached: bool = False) -> PointTiming:
        return cls(
            enc_s=float(doc.get("enc_s", 0.0)),
            dec_s=float(doc.get("dec_s", 0.0)),
            eval_s=float(doc.get("eval_s", 0.0)),
            cpu_s=float(doc.get("cpu_s", 0.0)),
            cached=cached,
        )


@dataclass
class Point:
    """One coded point of an RD curve.

    ``enc_s``, ``dec_s``, ``eval_s`` and ``cpu_s`` are the times of the run that computed
    it; ``cached`` says it came from the point cache (its times are then those of that
    earlier run).
    """

    model: str
    config: str
    role: str
    qp: int
    bytes: int
    num_params: int
    snr_db: float
    snr_norm_db: float
    metrics: dict[str, float] = field(default_factory=dict)
    enc_s: float = 0.0
    dec_s: float = 0.0
    primary_metric: str = ""
    eval_s: float = 0.0
    cpu_s: float = 0.0
    cached: bool = False

    @classmethod
    def build(
        cls, model: str, config: str, role: str, qp: int, data: PointData, timing: PointTiming
    ) -> Point:
        """A point of the CE from its labels, its results and its times."""
        return cls(
            model=model,
            config=config,
            role=role,
            qp=int(qp),
            bytes=data.bytes,
            num_params=data.num_params,
            snr_db=data.snr_db,
            snr_norm_db=data.snr_norm_db,
            metrics=dict(data.metrics),
            enc_s=timing.enc_s,
            dec_s=timing.dec_s,
            primary_metric=data.primary_metric,
            eval_s=timing.eval_s,
            cpu_s=timing.cpu_s,
            cached=timing.cached,
        )

    @property
    def bits(self) -> int:
        return 8 * self.bytes

    @property
    def bits_per_param(self) -> float:
        return self.bits / self.num_params if self.num_params else math.nan

    @property
    def primary(self) -> float:
        return self.metrics.get(self.primary_metric, math.nan)

    def row(self) -> dict[str, object]:
        """A flat dict (CSV row): fixed columns, then the metrics."""
        out: dict[str, object] = {
            "model": self.model,
            "config": self.config,
            "role": self.role,
            "qp": self.qp,
            "bytes": self.bytes,
            "bits": self.bits,
            "num_params": self.num_params,
            "bits_per_param": self.bits_per_param,
            "snr_db": self.snr_db,
            "snr_norm_db": self.snr_norm_db,
            "primary_metric": self.primary_metric,
            "enc_s": self.enc_s,
            "dec_s": self.dec_s,
            "eval_s": self.eval_s,
            "cpu_s": self.cpu_s,
            "cached": int(self.cached),
        }
        out.update(self.metrics)
        return out


def _check_decoded(
    model: str,
    codec: Codec,
    qp: int,
    original: Mapping[str, np.ndarray],
    decoded: Mapping[str, np.ndarray],
    recon: Mapping[str, np.ndarray] | None,
) -> None:
    where = f"{model} / {codec.name} / QP {qp}"
    missing = [n for n in original if n not in decoded]
    extra = [n for n in decoded if n not in original]
    if missing or extra:
        raise NntmError(
            f"{where}: decoded tensor names differ from the original "
            f"(missing {missing[:5]}, unexpected {extra[:5]})"
        )
    for name, x in original.items():
        y = np.asarray(decoded[name])
        if y.shape != np.shape(x):
            raise NntmError(
                f"{where}: tensor {name!r} decoded with shape {y.shape}, expected {np.shape(x)}"
            )
    if recon is None or not codec.checks_recon:
        return
    for name in original:
        if name not in recon:
            raise NntmError(f"{where}: encoder reconstruction lacks tensor {name!r}")
        r = np.asarray(recon[name])
        y = np.asarray(decoded[name])
        if r.dtype != y.dtype or r.shape != y.shape or r.tobytes() != y.tobytes():
            raise NntmError(
                f"{where}: decoder output of tensor {name!r} differs from the encoder's "
                "reconstruction (encoder/decoder mismatch)"
            )


def _fmt(value: float, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def progress_line(p: Point) -> str:
    return (
        f"[{p.model}] {p.config:<16s} QP {p.qp:4d}  {p.bits_per_param:7.4f} bits/param  "
        f"SNR {_fmt(p.snr_db):>6s} dB  nSNR {_fmt(p.snr_norm_db):>6s} dB  "
        f"{p.primary_metric} {_fmt(p.primary, 4):>8s}  enc {p.enc_s:7.2f} s  dec {p.dec_s:6.2f} s"
        + ("  (cached)" if p.cached else "")
    )


def measure_point(
    adapter: ModelAdapter,
    codec: Codec,
    qp: int,
    tensors: Mapping[str, np.ndarray],
    evaluate: bool = True,
) -> tuple[PointData, PointTiming]:
    """Code one model at one QP, decode, check and measure it: (results, times)."""
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    enc = codec.encode(tensors, qp, adapter.name)
    t1 = time.perf_counter()
    decoded = codec.decode(enc.data)
    t2 = time.perf_counter()
    _check_decoded(adapter.name, codec, qp, tensors, decoded, enc.recon)
    w = weight_snr(tensors, decoded)
    metrics: dict[str, float] = {}
    if evaluate:
        metrics = {k: float(v) for k, v in adapter.evaluate(decoded).items()}
    t3 = time.perf_counter()
    data = PointData(
        bytes=len(enc.data),
        num_params=w.num_params,
        snr_db=w.pooled_db,
        snr_norm_db=w.normalised_db,
        metrics=metrics,
        primary_metric=adapter.primary_metric,
    )
    timing = PointTiming(t1 - t0, t2 - t1, t3 - t2, time.process_time() - cpu0)
    return data, timing


def run_point(
    adapter: ModelAdapter,
    codec: Codec,
    qp: int,
    tensors: Mapping[str, np.ndarray],
    role: str = "",
    evaluate: bool = True,
) -> Point:
    """Code one model at one QP and measure it on the decoded tensors."""
    data, timing = measure_point(adapter, codec, qp, tensors, evaluate=evaluate)
    return Point.build(adapter.name, codec.name, role, qp, data, timing)


def run_sweep(
    adapter: ModelAdapter,
    codec: Codec,
    qps: Sequence[int],
    tensors: Mapping[str, np.ndarray] | None = None,
    role: str = "",
    log: Log | None = _print_flush,
    evaluate: bool = True,
) -> list[Point]:
    """Code ``adapter``'s model at every QP of ``qps`` with ``codec``.

    ``tensors`` defaults to ``adapter.load()``.  A progress line per point
    goes to ``log`` (stdout, flushed, by default; ``None`` for silence).
    """
    if tensors is None:
        tensors = adapter.load()
    codec.prepare(adapter, tensors)
    points = []
    for qp in qps:
        p = run_point(adapter, codec, qp, tensors, role=role, evaluate=evaluate)
        if log is not None:
            log(progress_line(p))
        points.append(p)
    return points


def stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
