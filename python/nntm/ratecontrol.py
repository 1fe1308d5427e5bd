"""Rate control: the QPs that give a model a target size or SNR, found before it is coded once.

``EncoderApp --TargetBitsPerParam=4`` (or ``--TargetSize=2M``, or ``--TargetSNR=30``) asks for
a size or a fidelity instead of a QP. :func:`plan` / :func:`plan_snr` estimate the bits and the
weight SNR of the model at any QP from a *sample* of it, coded with the full configuration
(coding tree, DQ, row prediction ...); tensors of one dimension or no more than
``SAMPLE_ELEMENTS`` elements stay whole. Two estimates (:class:`_Estimator`):

* rough (``precise=False``): every step-th row of a tensor, at most ``SAMPLE_ELEMENTS``
  elements, and every other of those rows coded too: a tensor's payload is the sample's plus
  the growth from the half sample to the sample for the rest of its elements;
* precise: runs of ``RUN`` neighbouring rows (a row's contexts read the row above, row
  prediction earlier rows: far-apart rows predict each other worse), evenly spread, about
  ``SAMPLE_ELEMENTS`` elements and more (the square root of the size) above ``GROW_FROM`` x
  that, at least ``MIN_ROWS`` rows; the half and quarter samples (the first halves of the
  runs) give each tensor's rate once the contexts have adapted and a learning term K pooled
  over the tensors (:func:`_extrapolate`). The rough estimate overstated the bits of the big
  tensors at low rates (MiniLM at 2 bits/param: 1.921 coded), the precise one less (1.980).
  A tensor of at least 1 / ``WHOLE_SHARE`` of the model's elements (and at most
  ``WHOLE_MAX``) is coded whole by the precise estimate: no other tensor's error averages
  its sample's out (MobileNetV2's classifier, ddddocr's, MiniLM's word embedding).

A tensor's error energy sum (w - r)^2 scales with its elements; its signal energy sum w^2 is
the whole tensor's (a sample misses outliers); its parameter set and hash unit are counted as
they are.

A size target: a bisection on the global QP (rough estimate) brackets the target between two
neighbouring QPs ``q`` (finer) and ``q + 1``, moved a QP at a time until the precise estimate
brackets it too; then tensors move from ``q + 1`` to ``q``, the largest first,
while the estimate stays at or below the target, so the rate falls between the two QPs' rates
instead of on one of them. An SNR target (rough estimate only: it meets the targets; the
precise one's weighted noise came out lower): the bisection finds the coarsest QP ``q`` whose
estimate meets the target (``q + 1`` misses it); then, from ``q + 1``, tensors move to ``q``,
those that remove the most noise a bit first, until the estimate meets the target: the
coarsest allocation found that does; when the last move overshot it (a tensor holding much of
the noise), tensors still at ``q + 1`` go to ``q + 2``, those that save the most bits a unit
of noise first, while the estimate meets the target. The model is then coded once.

The SNR is the CE's pooled weight SNR, 10 log10(sum w^2 / sum (w - r)^2) over the float
tensors (:func:`nntm.codec.pooled_snr`); with importance maps each square is weighted by the
weight's importance (the raw map), over the tensors that have a map: the maps' estimate of the
SNR at the layers' outputs (a tensor without a map is not in it: the maps' values are in one
unit across layers, which a weight of 1 would not be; it still moves with the base QP).

With importance maps the sample is coded with the sampled maps (the RD decisions weight the
error as in the real encode) and each tensor's ``ImportanceQPScale`` offset is the one of the
whole model's maps at the probed QP: the search moves the base QP, the maps' allocation stays.
The estimate is the encoder's own: nothing is decoded or measured on the network. With a
reference model (``RefModel``, an update) each sampled tensor is predicted from the same rows
of its namesake there, as the whole tensor is from the whole reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from . import codec, hls
from . import importance as imp
from .config import Config
from .errors import ConfigError

__all__ = ["Plan", "SAMPLE_ELEMENTS", "TARGET_KEYS", "plan", "plan_snr", "problems",
           "target_bits", "target_snr"]

SAMPLE_ELEMENTS = 16384
#: runs of neighbouring rows a sampled tensor keeps
RUN = 4
#: the sample grows as the square root of a tensor's size above GROW_FROM x SAMPLE_ELEMENTS
GROW_FROM = 4
#: and keeps at least MIN_ROWS rows (a tensor of long rows: few of them, its estimate high)
MIN_ROWS = 64
#: the precise estimate codes whole a tensor of at least 1 / WHOLE_SHARE of the model's float
#: elements (and at most WHOLE_MAX): its sample's error is not averaged out by the other
#: tensors' (MobileNetV2's classifier, 37 % of the model, was estimated 2.6 % high at
#: 1.7 bits/param; the sample's runs of rows code at another rate than the whole tensor's rows)
WHOLE_SHARE = 8
WHOLE_MAX = 1 << 24
#: False: a sampled tensor's bits are its sample's scaled by its elements
EXTRAPOLATE = True
QP_MIN, QP_MAX = -128, 127
#: the rate-control keys; at most one may be set
TARGET_KEYS = ("TargetBitsPerParam", "TargetSize", "TargetSNR")


@dataclass
class Plan:
    qp: int                          # the global QP to code with
    offsets: dict[str, int]          # per-tensor QP offsets on it (-1: a step finer, +1 coarser)
    estimate_bits: float             # the estimated size of the stream
    target_bits: float | None        # the size asked (None: an SNR target)
    probes: int                      # QPs probed (a sampled encode each, two with halves)
    estimate_snr_db: float = math.nan  # the estimated SNR (weighted with maps)
    target_snr_db: float | None = None  # the SNR asked (None: a size target)
    weighted: bool = False           # the SNRs are importance-weighted


def _set_keys(config: Config) -> list[str]:
    return [key for key in TARGET_KEYS
            if (str(config[key]).strip() if key == "TargetSize" else float(config[key]))]


def _target_problems(config: Config) -> list[str]:
    from .memory import parse_size

    out = []
    size = str(config["TargetSize"]).strip()
    if size:
        try:
            parse_size(size, allow_auto=False)
        except ValueError as exc:
            out.append(f"TargetSize: {exc}")
    keys = _set_keys(config)
    if len(keys) > 1:
        out.append(f"{', '.join(keys[:-1])} and {keys[-1]} are all set: give one of them "
                   f"({', '.join(TARGET_KEYS)} are exclusive)")
    return out


def problems(config: Config) -> list[str]:
    """Problems of the rate-control keys: a TargetSize that is not a size, more than one
    target (EncoderApp reports them with the others)."""
    return _target_problems(config)


def _check(config: Config) -> None:
    found = _target_problems(config)
    if found:
        raise ConfigError("; ".join(found))


def target_bits(config: Config, tensors: Mapping[str, np.ndarray]) -> float | None:
    """The target size in bits asked by TargetBitsPerParam / TargetSize (None: no size
    target). Raises ConfigError when more than one target is set."""
    from .memory import parse_size

    _check(config)
    size = str(config["TargetSize"]).strip()
    if size:
        return 8.0 * parse_size(size, allow_auto=False)
    bpp = float(config["TargetBitsPerParam"])
    if bpp:
        return bpp * _float_elements(tensors)
    return None


def _float_elements(tensors: Mapping[str, np.ndarray]) -> int:
    """The elements of the model's float tensors (what bits/param counts)."""
    return sum(int(np.size(v)) for v in tensors.values()
               if np.asarray(v).dtype.name in hls.FLOAT_DTYPES)


def target_snr(config: Config) -> float | None:
    """The target SNR in dB asked by TargetSNR (None: none). Raises ConfigError when more
    than one target is set."""
    _check(config)
    snr = float(config["TargetSNR"])
    return snr if snr else None


def _sample_rows(value: np.ndarray, grow: bool = True,
                 model_elements: int = 0) -> tuple[np.ndarray, int] | None:
    """The sampled rows (indices along the first axis, ascending) of a tensor and the length
    of their runs, or None when it is kept whole (one dimension, not float, no more than
    ``SAMPLE_ELEMENTS`` elements; with ``grow``, at least 1 / ``WHOLE_SHARE`` of the
    ``model_elements`` and at most ``WHOLE_MAX`` elements).

    The tensor's rows are cut into runs of ``RUN`` neighbouring rows (a row is coded with the
    one above in its contexts, and row prediction refers to earlier rows: rows far apart
    predict each other worse) and about ``_sample_elements`` elements' worth of runs is kept,
    evenly spread over the tensor (``grow`` False: ``SAMPLE_ELEMENTS``)."""
    shape, size = np.shape(value), int(np.size(value))
    a = np.asarray(value)
    if len(shape) < 2 or size <= SAMPLE_ELEMENTS or a.dtype.name not in hls.FLOAT_DTYPES:
        return None
    if grow and WHOLE_SHARE * size >= model_elements > 0 and size <= WHOLE_MAX:
        return None
    rows = shape[0]
    cols = size // rows
    if not grow:  # every step-th row, single rows
        step = min(rows, math.ceil(size / SAMPLE_ELEMENTS))
        return np.arange(0, rows, step, dtype=np.int64), 1
    keep = min(rows, max(1, round(_sample_elements(size) / cols)))
    keep = max(keep, min(MIN_ROWS, rows // 4))  # (not in a tensor of a few rows)
    if keep >= rows:
        return None
    run = RUN if keep >= RUN and rows >= 2 * RUN else 1
    runs = rows // run
    take = max(1, keep // run)
    picked = ((np.arange(take) + 0.5) * runs / take).astype(np.int64)
    return (picked[:, None] * run + np.arange(run)[None, :]).reshape(-1), run


def _sample_elements(size: int) -> int:
    """The elements sampled of a tensor of ``size``: ``SAMPLE_ELEMENTS``, growing as the
    square root of the size above ``GROW_FROM`` x that (a tensor's rows differ: a larger
    tensor needs more of them for the same error)."""
    if size <= GROW_FROM * SAMPLE_ELEMENTS:
        return SAMPLE_ELEMENTS
    return round(SAMPLE_ELEMENTS * math.sqrt(size / (GROW_FROM * SAMPLE_ELEMENTS)))


def _half(rows: np.ndarray, run: int) -> tuple[np.ndarray, int]:
    """The half sample of ``rows`` (runs of ``run`` rows) and its run: the first half of each
    run, so that its rows keep their neighbours; every other row when runs are single rows."""
    if run >= 2:
        return rows.reshape(-1, run)[:, :run // 2].reshape(-1), run // 2
    return rows[::2], 1


def _extrapolate(sizes: Mapping[int, tuple[int, int, int]], fitted: set[int],
                 payload: Mapping[int, float], half: Mapping[int, float],
                 quarter: Mapping[int, float]) -> tuple[dict[int, float], float]:
    """The payload bits of each sampled tensor ``i`` (``sizes[i]``: its elements, its
    sample's, its half sample's) from those of its sample, half sample and (the tensors
    ``fitted``) quarter sample; and the learning term K.

    B(n) = h n + K log2 n + c bits for the first n elements of a tensor: h its rate once the
    contexts have adapted, K their learning, taken as the same for every tensor (the same
    contexts), pooled from the second differences quarter -> half -> sample (each the first
    half of the next one's runs): d1 = h n / 2 + K, d2 = h n / 4 + K, summed over the
    tensors. A tensor's rate h is then its growth half -> sample less K, and the rest of it
    costs h a element plus K a doubling of the elements. The sample alone overstates the
    bits of a tensor by the learning; the growth half -> sample alone (K = 0) still does.
    A tensor that grew by nothing is not in the result (its sample's bits are scaled)."""
    d1 = sum(payload.get(i, 0) - half.get(i, 0) for i in fitted)
    d2 = sum(half.get(i, 0) - quarter.get(i, 0) for i in fitted)
    learn = max(0.0, 2 * d2 - d1) / len(fitted) if fitted else 0.0
    grown = {}
    for i, (whole, n_sample, n_half) in sizes.items():
        grow = payload.get(i, 0) - half.get(i, 0) - learn * math.log2(n_sample / n_half)
        if grow <= 0:  # no growth seen: the caller scales the sample's bits
            continue
        rate = grow / (n_sample - n_half)
        grown[i] = (payload.get(i, 0) + rate * (whole - n_sample)
                    + learn * math.log2(whole / n_sample))
    return grown, learn


def _tensor_bits(res: codec.EncodeResult) -> tuple[dict[int, int], dict[int, int]]:
    """(payload bits, other bits) per tensor_id of an encode: the coded data of each tensor
    data unit, and the rest of the tensor's units (from its stats; the stream is not
    parsed again)."""
    payload = {i: s.payload_bits for i, s in enumerate(res.stats)}
    other = {i: s.bits - s.payload_bits for i, s in enumerate(res.stats)}
    return payload, other


@dataclass
class _Point:
    """The estimate at one global QP."""

    total: float                     # stream bits
    bits: dict[str, float]           # each tensor's bits
    signal: dict[str, float]         # each float tensor's (weighted) energies: exact,
    noise: dict[str, float]          # and scaled from the sample


class _Estimator:
    def __init__(self, tensors: Mapping[str, np.ndarray], config: Config,
                 consumers: Mapping[str, Sequence[tuple[str, int]]] | None = None,
                 container: hls.Container | None = None,
                 importance: Mapping[str, np.ndarray] | None = None,
                 precise: bool = True, scale_qp: Mapping[str, int] | None = None,
                 ref_model: Mapping[str, np.ndarray] | None = None, threads: int = 0) -> None:
        """``precise`` False: the rough estimate (every step-th row, at most
        ``SAMPLE_ELEMENTS`` elements, a half sample, no quarter: K = 0), the bisection's and
        :func:`plan_snr`'s; True: runs of rows, growing samples and the learning fit.
        ``scale_qp``: the whole model's ScaleQPExponent offsets when another estimator of
        the same model has them (None: found here, one pass over the model). ``ref_model``:
        the reference model of an update; the sample, half and quarter of a tensor are
        predicted from the same rows of its namesake (of the same shape) there. ``threads``:
        the sampled tensors are coded on this many threads (0: every core; the estimate is
        the same for any number)."""
        self.names = list(tensors)
        self.threads = threads
        self.config = config
        self.consumers, self.container = consumers, container  # an ONNX graph's [1.7]
        self.sample, self.scale = {}, {}
        # the half and quarter samples (the first half / quarter of each run of sampled rows):
        # how the payload grows from one to the next says at which rate the rest of the
        # tensor is coded, once its contexts have adapted (_grow)
        self.half: dict[str, np.ndarray] = {}
        self.quarter: dict[str, np.ndarray] = {}
        self.sizes: dict[str, tuple[int, int, int]] = {}  # whole, sample, half elements
        # importance: the sampled rows of each map (RD weighting and weighted energies of
        # the sample), and the whole maps' means and weight RMS (their QP offsets, which
        # the sample encode does not derive itself: ImportanceQPScale 0 there)
        self.maps: dict[str, np.ndarray] | None = None
        self.half_maps: dict[str, np.ndarray] | None = None
        self.quarter_maps: dict[str, np.ndarray] | None = None
        # each float tensor's signal energy, exact (weighted: the mapped tensors'): it does not
        # depend on the QP, and a sample misses its outliers (MiniLM's weighted signal: 7.6
        # from the sample, 18.5 in fact)
        self.signal: dict[str, float] = {}
        self.means: dict[str, float] = {}
        self.norm: dict[str, tuple[float, float]] = {}  # the whole maps' normalisation
        self.rms: dict[str, float] = {}
        # GainCompensation: each sampled tensor's energy sum w^2 and its elements over the
        # sample's (codec.reconstruction_gain: the whole tensor's gain estimated from the
        # sample, not the sample's own, sets the compensation); the half and quarter samples
        # are coded with the factor the sample took (their growth is then the rate's alone)
        self.basis: dict[str, tuple[float, float]] = {}
        # RefModel: the sampled rows of each tensor's reference picture (sample, half, quarter)
        self.refs: dict[str, np.ndarray] | None = None
        self.half_refs: dict[str, np.ndarray] | None = None
        self.quarter_refs: dict[str, np.ndarray] | None = None
        if ref_model is not None:
            self.refs, self.half_refs, self.quarter_refs = {}, {}, {}
        importance = importance or {}
        if importance:
            self.maps, self.half_maps, self.quarter_maps = {}, {}, {}
        floor = float(config["ImportanceFloor"])
        model_elements = _float_elements(tensors)
        for name in self.names:
            a = np.asarray(tensors[name])
            full = None
            if name in importance:
                full = imp.expand(name, tuple(a.shape), importance[name])
                self.signal[name] = codec._energies(a, a, full)[0]
                if full.size:
                    self.means[name] = float(np.mean(full))
                    self.norm[name] = imp.norm_constants(full, floor)
            elif not importance:
                self.signal[name] = codec._energies(a, a)[0]
            found = _sample_rows(a, precise, model_elements)
            rows, run = found if found is not None else (None, 1)
            self.sample[name] = np.ascontiguousarray(a[rows]) if rows is not None else a
            self.scale[name] = a.size / max(self.sample[name].size, 1)
            if rows is not None:
                energy = (self.signal[name] if not importance
                          else codec._energies(a, a)[0])
                self.basis[name] = (energy, self.scale[name])
            ref = (np.asarray(ref_model[name])
                   if ref_model is not None and name in ref_model else None)
            if ref is not None and ref.shape != a.shape:
                ref = None  # not a reference picture of this tensor
            if ref is not None and self.refs is not None:
                self.refs[name] = np.ascontiguousarray(ref[rows]) if rows is not None else ref
            parts: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None,
                              dict[str, np.ndarray] | None, np.ndarray]] = []
            if EXTRAPOLATE and rows is not None and len(rows) >= (2 if precise else 4):
                half, half_run = _half(rows, run)
                parts.append((self.half, self.half_maps, self.half_refs, half))
                self.sizes[name] = (a.size, len(rows) * (a.size // a.shape[0]),
                                    len(half) * (a.size // a.shape[0]))
                if precise and len(half) >= 2:
                    parts.append((self.quarter, self.quarter_maps, self.quarter_refs,
                                  _half(half, half_run)[0]))
            for out, maps, refs, part in parts:
                out[name] = np.ascontiguousarray(a[part])
                if full is not None and maps is not None:
                    maps[name] = np.ascontiguousarray(full[part])
                if ref is not None and refs is not None:
                    refs[name] = np.ascontiguousarray(ref[part])
            if full is not None and self.maps is not None:
                self.maps[name] = np.ascontiguousarray(full[rows]) if rows is not None else full
            del full
        if self.maps is not None and float(config["ImportanceMaxStep"]) > 0:
            self.rms = {n: imp.weight_rms(tensors[n]) for n in self.maps}
        # ScaleQPExponent: the whole model's offsets (its median RMS), passed to every sampled
        # encode with the tool off there: a sample or a part of it has other RMS and median
        self.scale_qp: dict[str, int] = dict(scale_qp or {})
        if scale_qp is None and float(config["ScaleQPExponent"]) > 0.0:
            self.scale_qp = codec.plan_model(tensors, config, consumers=consumers).scale_qp
        self.cache: dict[int, _Point] = {}
        self.learn: list[float] = []  # the pooled learning term K of each probe

    def __call__(self, qp: int) -> _Point:
        """The estimate at global QP ``qp``."""
        if qp not in self.cache:
            cfg = self.config.replace(QP=qp)
            offsets = {}
            if self.maps is not None:
                offsets = codec.importance_qp(self.means, self.rms, cfg)
                cfg = cfg.replace(ImportanceQPScale=0.0)
            if self.scale_qp:
                offsets = {n: offsets.get(n, 0) + self.scale_qp.get(n, 0)
                           for n in set(offsets) | set(self.scale_qp)}
            cfg = cfg.replace(ScaleQPExponent=0.0)
            res = codec.encode_with_recon(self.sample, cfg, importance=self.maps,
                                          consumers=self.consumers, container=self.container,
                                          qp_offsets=offsets, importance_norm=self.norm,
                                          gain_basis=self.basis, ref_model=self.refs,
                                          threads=self.threads)
            payload, other = _tensor_bits(res)
            grown: dict[int, float] = {}
            if self.sizes:
                scales = {s.name: s.gain_scale for s in res.stats if s.name in self.half}
                half = self._part_bits(self.half, self.half_maps, self.half_refs, cfg,
                                       offsets, scales)
                quarter = (self._part_bits(self.quarter, self.quarter_maps, self.quarter_refs,
                                           cfg, offsets, scales) if self.quarter else {})
                grown = self._grow(payload, half, quarter)
            per = {name: other.get(i, 0) + grown.get(i, payload.get(i, 0) * self.scale[name])
                   for i, name in enumerate(self.names)}
            fixed = 8 * len(res.data) - sum(other.values()) - sum(payload.values())  # MPS, EOS
            weighted = self.maps is not None
            noise = {}
            for s in res.stats:
                if s.dtype in hls.FLOAT_DTYPES:
                    k = self.scale[s.name]
                    noise[s.name] = k * (s.imp_noise_energy if weighted else s.noise_energy)

            self.cache[qp] = _Point(fixed + sum(per.values()), per, self.signal, noise)
        return self.cache[qp]

    def _part_bits(self, part: Mapping[str, np.ndarray],
                   maps: Mapping[str, np.ndarray] | None,
                   refs: Mapping[str, np.ndarray] | None, cfg: Config,
                   offsets: Mapping[str, int],
                   gain_scale: Mapping[str, float]) -> dict[int, int]:
        """The payload bits of the sampled tensors' ``part`` (half or quarter samples), by
        their tensor_id in the model: coded alone (the tensors kept whole are in the sample
        already), with the roles the graph's consumers give, the same QP offsets and the
        GainCompensation factors ``gain_scale`` the sample took, predicted from the same rows
        of the reference model ``refs``."""
        by_id = _tensor_bits(codec.encode_with_recon(
            part, cfg, importance=maps, consumers=self.consumers,
            qp_offsets={n: v for n, v in offsets.items() if n in part},
            importance_norm=self.norm, gain_scale=gain_scale, ref_model=refs,
            threads=self.threads))[0]
        index = {n: i for i, n in enumerate(self.names)}
        return {index[n]: by_id.get(j, 0) for j, n in enumerate(part)}

    def _grow(self, payload: Mapping[int, int], half: Mapping[int, int],
              quarter: Mapping[int, int]) -> dict[int, float]:
        """Each sampled tensor's payload bits, from its sample's, half sample's and quarter
        sample's."""
        sizes = {i: self.sizes[n] for i, n in enumerate(self.names) if n in self.sizes}
        fitted = {i for i, n in enumerate(self.names) if n in self.quarter}
        grown, learn = _extrapolate(sizes, fitted, payload, half, quarter)
        self.learn.append(learn)
        return grown

    def snr(self, point: _Point, finer: _Point | None = None,
            moved: Sequence[str] = ()) -> float:
        """The pooled SNR of ``point`` with the tensors ``moved`` taken from ``finer``."""
        signal = sum(point.signal.values())
        noise = sum(point.noise.values())
        if finer is not None:
            noise += sum(finer.noise[n] - point.noise[n] for n in moved if n in point.noise)
        return codec.snr_from_energies(signal, noise)


def _bracket(fine_side: Callable[[int], bool], q: int) -> tuple[int, int]:
    """Neighbouring QPs (lo, lo + 1) with ``fine_side(lo)`` true and ``fine_side(lo + 1)``
    false, for a predicate true on the fine QPs and false on the coarse ones (a size target's
    "too big", an SNR target's "meets it"), searched from ``q``; (QP_MAX, QP_MAX) when it is
    true at every QP, (QP_MIN, QP_MIN) when at none."""
    lo, hi = QP_MIN, QP_MAX
    step = 4
    if fine_side(q):  # coarser
        while q < hi and fine_side(min(q + step, hi)):
            q, step = min(q + step, hi), step * 2
        lo, hi = q, min(q + step, hi)
    else:
        while q > lo and not fine_side(max(q - step, lo)):
            q, step = max(q - step, lo), step * 2
        lo, hi = max(q - step, lo), q
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fine_side(mid):
            lo = mid
        else:
            hi = mid
    return lo, hi


def _rebracket(fine_side: Callable[[int], bool], lohi: tuple[int, int]) -> tuple[int, int]:
    """The bracket (lo, lo + 1) of ``fine_side`` (as :func:`_bracket`'s) next to ``lohi``, one
    from a rougher estimate: moved a QP at a time while ``fine_side`` disagrees with it."""
    lo, hi = lohi
    if lo == hi:  # true at every QP or at none: as the rough estimate said
        return lo, hi
    while hi < QP_MAX and fine_side(hi):
        lo, hi = hi, hi + 1
    while lo > QP_MIN and not fine_side(lo):
        lo, hi = lo - 1, lo
    return lo, hi


def plan(tensors: Mapping[str, np.ndarray], config: Config, target: float,
         consumers: Mapping[str, Sequence[tuple[str, int]]] | None = None,
         container: hls.Container | None = None,
         importance: Mapping[str, np.ndarray] | None = None,
         ref_model: Mapping[str, np.ndarray] | None = None, threads: int = 0) -> Plan:
    """The QP (and per-tensor offsets) whose estimated stream size is closest to ``target``
    bits from below, or the coarsest QP's estimate when even that is larger.  ``consumers``,
    ``container`` and ``importance`` are those the stream is coded with (an ONNX input's
    graph, importance maps): the roles they give, the container unit's bytes and the maps'
    weighting and QP offsets are in the estimate; ``ref_model``: the reference model of an
    update (RefModel), which the sampled tensors are predicted from.  ``threads``: the
    sampled encodes' threads (0: every core); the plan is the same for any number."""
    rough = _Estimator(tensors, config, consumers, container, importance, precise=False,
                       ref_model=ref_model, threads=threads)
    est = _Estimator(tensors, config, consumers, container, importance,
                     scale_qp=rough.scale_qp, ref_model=ref_model, threads=threads)
    weighted = importance is not None and bool(importance)

    def done(qp: int, offsets: dict[str, int], total: float, snr: float) -> Plan:
        return Plan(qp, offsets, total, target, len(rough.cache) + len(est.cache), snr, None,
                    weighted)

    # the bisection on the rough estimate, then the precise one around where it ended
    lo, hi = _rebracket(lambda q: est(q).total > target,
                        _bracket(lambda q: rough(q).total > target, int(config["QP"])))
    coarse = est(hi)
    if coarse.total > target:  # even the coarsest QP is too big: take it
        return done(hi, {}, coarse.total, est.snr(coarse))
    fine = est(lo)
    if fine.total <= target:  # even the finest QP fits
        return done(lo, {}, fine.total, est.snr(fine))
    gain = {n: fine.bits[n] - coarse.bits[n] for n in est.names
            if np.ndim(tensors[n]) >= 2 and fine.bits[n] > coarse.bits[n]}
    offsets: dict[str, int] = {}
    total = coarse.total
    for name in sorted(gain, key=lambda n: -gain[n]):  # the largest first
        if total + gain[name] <= target:
            offsets[name] = -1
            total += gain[name]
    return done(hi, offsets, total, est.snr(coarse, fine, list(offsets)))


def plan_snr(tensors: Mapping[str, np.ndarray], config: Config, target_db: float,
             consumers: Mapping[str, Sequence[tuple[str, int]]] | None = None,
             container: hls.Container | None = None,
             importance: Mapping[str, np.ndarray] | None = None,
             ref_model: Mapping[str, np.ndarray] | None = None, threads: int = 0) -> Plan:
    """The coarsest QP (and per-tensor offsets) whose estimated pooled SNR meets
    ``target_db``: importance-weighted with ``importance`` maps. When even the finest QP
    misses it, the finest QP.  ``threads`` as for :func:`plan`."""
    # the rough estimate: its SNRs meet the targets (0.05 dB without maps, 0.2 with); the
    # precise one's weighted noise came out lower (30 dB weighted: 29.7 coded)
    est = _Estimator(tensors, config, consumers, container, importance, precise=False,
                     ref_model=ref_model, threads=threads)
    weighted = importance is not None and bool(importance)

    def done(qp: int, offsets: dict[str, int], point: _Point, snr: float,
             extra: float = 0.0) -> Plan:
        return Plan(qp, offsets, point.total + extra, None, len(est.cache), snr, target_db,
                    weighted)

    if weighted and not sum(est.signal.values()) > 0:  # before any sampled encode
        raise ConfigError("TargetSNR with ImportanceFile: the maps weigh every weight 0 (all-zero "
                          "maps, or maps of all-zero tensors): no weighted SNR to aim at")
    lo, hi = _bracket(lambda q: est.snr(est(q)) >= target_db, int(config["QP"]))
    # lo meets the target, hi (one coarser) misses it
    fine = est(lo)
    if est.snr(fine) < target_db:  # even the finest QP misses it
        return done(lo, {}, fine, est.snr(fine))
    coarse = est(hi)
    if est.snr(coarse) >= target_db:  # even the coarsest QP meets it
        return done(hi, {}, coarse, est.snr(coarse))
    # from the coarse QP, move the tensors that remove the most noise a bit one QP finer
    cost = {n: max(fine.bits[n] - coarse.bits[n], 0.0) for n in coarse.noise}
    cut = {n: coarse.noise[n] - fine.noise[n] for n in coarse.noise
           if np.ndim(tensors[n]) >= 2 and coarse.noise[n] > fine.noise[n]}
    signal = sum(coarse.signal.values())
    noise = sum(coarse.noise.values())
    offsets: dict[str, int] = {}
    extra = 0.0
    for name in sorted(cut, key=lambda n: -cut[n] / max(cost[n], 1e-9)):
        if codec.snr_from_energies(signal, noise) >= target_db:
            break
        offsets[name] = -1
        noise -= cut[name]
        extra += fine.bits[name] - coarse.bits[name]
    # the last move may overshoot (one large tensor): undo the costliest moves it made needless
    for name in sorted(offsets, key=lambda n: -(fine.bits[n] - coarse.bits[n])):
        if codec.snr_from_energies(signal, noise + cut[name]) >= target_db:
            del offsets[name]
            noise += cut[name]
            extra -= fine.bits[name] - coarse.bits[name]
    if codec.snr_from_energies(signal, noise) < target_db:  # the 1-D tensors' share: all finer
        return done(lo, {}, fine, est.snr(fine))
    # a tensor that holds much of the noise moves it by more than the margin left: the SNR
    # then lies well above the target (MiniLM at 20 dB: its word embedding, half the model,
    # moved finer gave 20.74 dB). Tensors still at the coarse QP go one QP coarser, those
    # that save the most bits a unit of noise first, while the estimate meets the target:
    # the SNR comes nearer to it and the stream is smaller
    if hi < QP_MAX and codec.snr_from_energies(signal, noise) > target_db:
        coarser = est(hi + 1)
        add = {n: coarser.noise[n] - coarse.noise[n] for n in coarse.noise
               if n not in offsets and np.ndim(tensors[n]) >= 2
               and coarser.noise[n] > coarse.noise[n]}
        save = {n: coarse.bits[n] - coarser.bits[n] for n in add}
        for name in sorted(add, key=lambda n: -save[n] / add[n]):
            if save[name] > 0 and codec.snr_from_energies(signal, noise + add[name]) >= target_db:
                offsets[name] = 1
                noise += add[name]
                extra -= save[name]
    return done(hi, offsets, coarse, codec.snr_from_energies(signal, noise), extra)
