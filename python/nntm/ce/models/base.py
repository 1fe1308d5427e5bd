"""The interface every CTC model adapter implements, and the helpers they share.

An adapter knows one model of the common test conditions: where its original
weights live (:meth:`ModelAdapter.load`), which real inputs it is measured on
(:meth:`ModelAdapter.evaluation_inputs`), how far a reconstructed copy of its
tensors is from the original on those inputs (:meth:`ModelAdapter.evaluate`),
and which other real inputs the encoder may learn from
(:meth:`ModelAdapter.calibration_inputs`, disjoint from the evaluation inputs)
to build importance maps (:meth:`ModelAdapter.input_channel_importance`,
:meth:`ModelAdapter.output_importance`; docs/calibration.md).

Conventions shared by all adapters:

- ``load()`` returns the original tensors under their state-dict names, in
  state-dict order, with their original dtypes (int64 buffers included).
- ``evaluate()`` accepts any float dtype (float16/32/64, ``ml_dtypes.bfloat16``)
  and casts to float32; integer buffers are used as they are.  The original
  model's outputs are computed once, on first use, and cached, so each call
  runs only the reconstructed model.
- Every metric is "higher is better" except the raw error keys (``acc_drop``,
  ``kl_mean``, ``prob_mae``); the primary metric is always higher-is-better and
  dB-like, fit for a BD-rate.
- Networks run in torch on 2 threads, in inference mode, on fixed inputs: the
  same tensors give the same metrics on every run.
"""

from __future__ import annotations

import abc
import importlib.util
import json
import math
import pathlib
import struct
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np

from nntm.calibrate import (
    IMPORTANCE_KINDS,
    SENSITIVITY_FORMS,
    ChannelEnergyHooks,
    OutputSensitivity,
    gaussian_probes,
    sign_probes,
    smoothed_frequencies,
    softmax_fisher_probes,
    to_torch_state_dict,
)
from nntm.errors import ModelIOError, NntmError

__all__ = [
    "CE_INSTALL_HINT",
    "IMPORTANCE_KINDS",
    "SENSITIVITY_FORMS",
    "ChannelEnergyHooks",
    "ModelAdapter",
    "OutputSensitivity",
    "as_float32",
    "check_tensors",
    "error_db",
    "find_package_file",
    "gaussian_probes",
    "missing_modules",
    "read_safetensors",
    "require_torch",
    "sign_probes",
    "smoothed_frequencies",
    "softmax_fisher_probes",
    "to_torch_state_dict",
]

CE_INSTALL_HINT = "bash scripts/install_ce.sh"
"""The one command that installs every CE dependency."""

TORCH_THREADS = 2
"""Threads torch uses for the evaluations (the CTC machine has 2 cores)."""



class ModelAdapter(abc.ABC):
    """One CTC model: its original tensors, its inputs and its fidelity metrics."""

    name: ClassVar[str]
    """Short name used on command lines and in CE tables ("minilm", ...)."""

    primary_metric: ClassVar[str]
    """Key of :meth:`evaluate`'s result used for BD-rate: higher is better, dB-like."""

    metric_keys: ClassVar[tuple[str, ...]]
    """Every key :meth:`evaluate` returns, in display order."""

    requires: ClassVar[tuple[str, ...]] = ()
    """Importable modules the adapter needs (checked without importing them)."""

    eval_version: ClassVar[str] = "1"
    """Version of what the adapter measures: evaluation inputs and metrics, calibration
    inputs and importance maps.  Part of every CE point's cache key (:mod:`nntm.ce.points`;
    the tensors are hashed themselves): raise it in the adapter whenever a change makes
    :meth:`evaluate` or the maps give other numbers for the same tensors."""

    def available(self) -> tuple[bool, str]:
        """``(True, "")`` when the model can be loaded and evaluated here, else ``(False, why)``.

        The reason names what is missing and the command that installs it.
        """
        missing = missing_modules(self.requires)
        if missing:
            return False, f"missing Python module(s) {', '.join(missing)}: {self.install_hint()}"
        for label, path in self.required_files().items():
            if path is None or not path.is_file():
                return False, f"missing {label}: {self.install_hint()}"
        return True, ""

    def install_hint(self) -> str:
        """The command that installs this adapter's dependencies."""
        return f"run `{CE_INSTALL_HINT}`"

    def required_files(self) -> dict[str, pathlib.Path | None]:
        """Data files the adapter needs, by a label for messages (``None``: not found)."""
        return {}

    def ensure_available(self) -> None:
        """Raise :class:`~nntm.errors.NntmError` with the reason when not :meth:`available`."""
        ok, why = self.available()
        if not ok:
            raise NntmError(f"model {self.name!r} is not available: {why}")

    @abc.abstractmethod
    def load(self) -> dict[str, np.ndarray]:
        """The original tensors: state-dict names and order, original dtypes."""

    @abc.abstractmethod
    def evaluate(self, tensors: Mapping[str, np.ndarray]) -> dict[str, float]:
        """Fidelity of the model built from ``tensors`` against the original.

        Returns one float per key of :attr:`metric_keys`.
        """

    @abc.abstractmethod
    def evaluation_inputs(self) -> object:
        """The inputs :meth:`evaluate` feeds the network (token batch, image batch, ...)."""

    @abc.abstractmethod
    def calibration_inputs(self) -> object:
        """Inputs for measuring importance maps, disjoint from :meth:`evaluation_inputs`.

        Same structure as :meth:`evaluation_inputs`; no evaluation input (sentence,
        photo, image) is among them, so that maps measured on them do not fit the
        encoder to the very inputs its fidelity is scored on.
        """

    def input_channel_importance(self, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Mean squared input activation per input channel of each conv/linear weight.

        Keys are weight tensor names (``"...weight"``); each value is a float64
        vector with one entry per input channel of the layer, measured on
        :meth:`calibration_inputs` through the model built from ``tensors``.
        For a grouped (depthwise) convolution the vector has the layer's
        ``groups * weight.shape[1]`` input channels.  Embedding tables (an
        embedding is a linear layer fed one-hot vectors) get a float32 map of
        the table's own shape: each row the smoothed frequency of its index.
        """
        raise NotImplementedError(f"{self.name}: input_channel_importance is not implemented")

    def output_importance(
        self, tensors: Mapping[str, np.ndarray], **options: Any
    ) -> dict[str, np.ndarray]:
        """Output-sensitivity importance of each conv/linear weight and embedding table.

        Float32 maps of each weight's own shape, measured on
        :meth:`calibration_inputs`: ``E[x_j^2] * s_i`` with ``s_i`` the mean
        squared derivative of a random projection of the network's output with
        respect to the layer's output channel ``i`` (Hutchinson probes), each
        layer scaled so that its map sums to the layer's estimated output error
        per unit weight error (see :class:`OutputSensitivity`): the maps of all
        layers are in one unit, fit for ``ImportanceQPScale``.  Options of every
        adapter: ``probes`` (per calibration sample), ``seed``, ``samples`` (use
        only the first calibration samples), ``form`` (:data:`SENSITIVITY_FORMS`).
        """
        raise NotImplementedError(f"{self.name}: output_importance is not implemented")

    def importance(
        self, tensors: Mapping[str, np.ndarray], kind: str, **options: Any
    ) -> dict[str, np.ndarray]:
        """The maps of one kind: ``"activation"`` (:meth:`input_channel_importance`)
        or ``"sensitivity"`` (:meth:`output_importance`, given ``options`` such as
        ``probes``, ``samples``, ``seed``)."""
        if kind == "activation":
            return self.input_channel_importance(tensors)
        if kind == "sensitivity":
            return self.output_importance(tensors, **options)
        raise NntmError(f"unknown importance kind {kind!r}: use activation or sensitivity")

    def reference_names(self) -> tuple[str, ...]:
        """Names of :meth:`load`'s tensors, in order (cached)."""
        cached: tuple[str, ...] | None = getattr(self, "_reference_names", None)
        if cached is None:
            cached = tuple(self.load())
            self._reference_names = cached
        return cached

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


# --------------------------------------------------------------------------------------
# Helpers without torch
# --------------------------------------------------------------------------------------


def missing_modules(modules: Iterable[str]) -> list[str]:
    """Those of ``modules`` that cannot be imported here (found without importing them)."""
    missing = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module)
    return missing


def find_package_file(package: str, *relative: str) -> pathlib.Path | None:
    """Path of a data file inside an installed package, without importing the package.

    (Some packages, such as facenet_pytorch, fail at import time here.)
    Returns ``None`` when the package or the file is not there.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = pathlib.Path(location).joinpath(*relative)
        if path.is_file():
            return path
    return None


def as_float32(array: np.ndarray) -> np.ndarray:
    """``array`` as contiguous float32 (from float16/32/64 or ml_dtypes.bfloat16)."""
    return np.ascontiguousarray(np.asarray(array).astype(np.float32, copy=False))


def error_db(error: float) -> float:
    """``-10 log10(max(error, 1e-12))``: an error in dB, higher is better (120 at most)."""
    return -10.0 * math.log10(max(float(error), 1e-12))


def check_tensors(
    model: str, tensors: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]
) -> None:
    """Raise :class:`ModelIOError` unless ``tensors`` has the names and shapes of ``reference``."""
    missing = [name for name in reference if name not in tensors]
    extra = [name for name in tensors if name not in reference]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if extra:
            parts.append(f"unexpected {extra[:5]}{' ...' if len(extra) > 5 else ''}")
        raise ModelIOError(f"{model}: tensors do not match the model: {'; '.join(parts)}")
    for name, ref in reference.items():
        shape = tuple(np.shape(tensors[name]))
        if shape != tuple(ref.shape):
            raise ModelIOError(
                f"{model}: tensor {name!r} has shape {shape}, the model needs {tuple(ref.shape)}"
            )


_SAFETENSORS_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}


def read_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
    """Read a safetensors file with numpy only, tensors in file (data offset) order.

    Format: u64 little-endian header length, a JSON header mapping each name to
    ``dtype``, ``shape`` and ``data_offsets`` (relative to the data section), the
    data.  BF16 is read through ml_dtypes when it appears.
    """
    raw = pathlib.Path(path).read_bytes()
    if len(raw) < 8:
        raise ModelIOError(f"{path}: too short for a safetensors file")
    (header_len,) = struct.unpack_from("<Q", raw, 0)
    if 8 + header_len > len(raw):
        raise ModelIOError(f"{path}: header length {header_len} exceeds the file")
    try:
        header = json.loads(raw[8 : 8 + header_len])
    except ValueError as exc:
        raise ModelIOError(f"{path}: bad safetensors header: {exc}") from exc
    data = memoryview(raw)[8 + header_len :]
    entries = sorted(
        ((k, v) for k, v in header.items() if k != "__metadata__"),
        key=lambda kv: kv[1]["data_offsets"][0],
    )
    tensors: dict[str, np.ndarray] = {}
    for name, info in entries:
        code = info["dtype"]
        if code == "BF16":
            import ml_dtypes

            dtype = np.dtype(ml_dtypes.bfloat16)
        elif code in _SAFETENSORS_DTYPES:
            dtype = np.dtype(_SAFETENSORS_DTYPES[code])
        else:
            raise ModelIOError(f"{path}: tensor {name!r} has unsupported dtype {code}")
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if end > len(data) or end - begin != dtype.itemsize * math.prod(shape):
            raise ModelIOError(f"{path}: tensor {name!r} has bad data offsets {begin}..{end}")
        array = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape)
        tensors[name] = array.astype(dtype.newbyteorder("="), copy=True)
    return tensors


# --------------------------------------------------------------------------------------
# Helpers with torch (imported lazily)
# --------------------------------------------------------------------------------------


def require_torch() -> Any:
    """Import torch, set it to :data:`TORCH_THREADS` threads, and return the module."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise NntmError(f"torch is not installed: run `{CE_INSTALL_HINT}`") from exc
    if torch.get_num_threads() != TORCH_THREADS:
        torch.set_num_threads(TORCH_THREADS)
    return torch
