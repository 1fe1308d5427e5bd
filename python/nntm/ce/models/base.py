"""The interface every CTC model adapter implements, and the helpers they share.

An adapter knows one model of the common test conditions: where its original
weights live (:meth:`ModelAdapter.load`), which real inputs it is measured on
(:meth:`ModelAdapter.calibration_inputs`) and how far a reconstructed copy of
its tensors is from the original on those inputs (:meth:`ModelAdapter.evaluate`).

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
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from nntm.errors import ModelIOError, NntmError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

__all__ = [
    "CE_INSTALL_HINT",
    "ChannelEnergyHooks",
    "ModelAdapter",
    "as_float32",
    "check_tensors",
    "error_db",
    "find_package_file",
    "missing_modules",
    "read_safetensors",
    "require_torch",
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
    def calibration_inputs(self) -> object:
        """The inputs :meth:`evaluate` feeds the network (token batch, image batch, ...)."""

    def input_channel_importance(self, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Mean squared input activation per input channel of each conv/linear weight.

        Keys are weight tensor names (``"...weight"``); each value is a float64
        vector with one entry per input channel of the layer, measured on
        :meth:`calibration_inputs` through the model built from ``tensors``.
        For a grouped (depthwise) convolution the vector has the layer's
        ``groups * weight.shape[1]`` input channels.
        """
        raise NotImplementedError(f"{self.name}: input_channel_importance is not implemented")

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


def to_torch_state_dict(
    tensors: Mapping[str, np.ndarray], names: Iterable[str], prefix: str = ""
) -> dict[str, torch.Tensor]:
    """Torch state dict of ``prefix + name`` for each name: floats as float32, integers as they are.

    The keys of the result are the names without ``prefix``.
    """
    torch = require_torch()
    state: dict[str, torch.Tensor] = {}
    for name in names:
        array = np.asarray(tensors[prefix + name])
        if array.dtype.kind in "iub":
            state[name] = torch.from_numpy(np.ascontiguousarray(array))
        else:
            state[name] = torch.from_numpy(as_float32(array).copy())
    return state


class ChannelEnergyHooks:
    """Forward hooks that accumulate the mean squared input per input channel.

    Hooks every ``Conv2d`` and ``Linear`` of ``model`` whose qualified name is in
    ``weight_names`` (module name -> weight tensor name).  For a linear layer the
    last axis is the channel axis; a 3-D input ``(B, T, C)`` is restricted to the
    tokens where ``token_mask`` (``(B, T)`` bool, set before each forward) is true.
    Use as a context manager; :meth:`result` gives the means in float64.
    """

    def __init__(self, model: torch.nn.Module, weight_names: Mapping[str, str]) -> None:
        torch = require_torch()
        self._torch = torch
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}
        self._handles: list[Any] = []
        self.token_mask: torch.Tensor | None = None
        modules = dict(model.named_modules())
        for module_name, weight_name in weight_names.items():
            module = modules[module_name]
            if not isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
                raise TypeError(f"{module_name} is {type(module).__name__}, not Conv2d/Linear")
            self._handles.append(module.register_forward_hook(self._make_hook(weight_name)))

    def _make_hook(self, weight_name: str) -> Callable[..., None]:
        torch = self._torch

        def hook(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: Any) -> None:
            x = inputs[0].detach().to(torch.float32)
            if isinstance(module, torch.nn.Conv2d):  # (N, C, H, W), any memory layout
                total = x.square().sum(dim=(0, 2, 3), dtype=torch.float64)
                count = x.shape[0] * x.shape[2] * x.shape[3]
            else:
                mask = self.token_mask
                if mask is not None and x.dim() == 3 and tuple(x.shape[:2]) == tuple(mask.shape):
                    x = x[mask]
                x = x.reshape(-1, x.shape[-1])
                total, count = x.square().sum(dim=0, dtype=torch.float64), x.shape[0]
            if weight_name in self._sums:
                self._sums[weight_name] += total
                self._counts[weight_name] += count
            else:
                self._sums[weight_name] = total
                self._counts[weight_name] = count

        return hook

    def result(self) -> dict[str, np.ndarray]:
        """Mean squared input per channel, by weight tensor name."""
        return {
            name: (total / max(self._counts[name], 1)).numpy() for name, total in self._sums.items()
        }

    def close(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> ChannelEnergyHooks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
