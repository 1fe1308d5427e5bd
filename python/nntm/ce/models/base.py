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
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from nntm.errors import ModelIOError, NntmError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

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

IMPORTANCE_KINDS: tuple[str, ...] = ("activation", "sensitivity")
"""Kinds of importance map an adapter measures (:meth:`ModelAdapter.importance`)."""

SENSITIVITY_FORMS: tuple[str, ...] = ("factored", "layer", "diagonal", "marginal")
"""Forms of an output-sensitivity map (:meth:`OutputSensitivity.maps`)."""


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


# --------------------------------------------------------------------------------------
# Importance maps: smoothing of index frequencies, output sensitivity
# --------------------------------------------------------------------------------------


def smoothed_frequencies(
    counts: np.ndarray, eligible: np.ndarray | None = None, alpha: float | None = None
) -> tuple[np.ndarray, float]:
    """``((counts + alpha * eligible) / (N + alpha * E), alpha)``: additively smoothed frequencies.

    ``counts`` are how often each index (token, position, ...) occurred in the
    calibration data, ``N`` their sum; ``eligible`` marks the indices that can
    occur at all (default: every index; ``E`` is their number).  Ineligible
    indices keep frequency ``count / (N + alpha E)``, i.e. 0 when unseen.

    ``alpha=None`` chooses it by Good-Turing: the probability that the next
    index is one not seen in the calibration data is about ``n1 / N`` (``n1``
    indices seen exactly once, at least 1), and ``alpha`` is the value that gives
    the ``U`` eligible unseen indices together exactly that mass,
    ``alpha U / (N + alpha E) = n1 / N``.  Unseen indices are then not free,
    but each weighs well below an index seen once.
    """
    counts = np.asarray(counts, dtype=np.float64)
    mask = np.ones(counts.shape, dtype=bool) if eligible is None else np.asarray(eligible, bool)
    total = float(counts.sum())
    n_eligible = int(mask.sum())
    if alpha is None:
        unseen = int(np.sum(mask & (counts == 0)))
        missing = max(int(np.sum(counts == 1)), 1) / max(total, 1.0)
        denominator = unseen - missing * n_eligible
        alpha = missing * total / denominator if unseen and denominator > 0 else 0.0
    alpha = float(alpha)
    smoothed = (counts + alpha * mask) / max(total + alpha * n_eligible, 1e-300)
    return smoothed, alpha


class OutputSensitivity:
    """Output-sensitivity importance maps of conv, linear and embedding weights.

    For a layer ``y = W x`` inside a network with output ``f``, an error
    ``dW`` changes the output of sample ``n`` by about ``J_n dW x_n``
    (``J_n = df_n/dy``, summed over the positions where the layer is applied).
    With errors independent from weight to weight, the expected squared
    output change is ``sum_ij dW_ij^2 G_ij`` with

        ``G_ij = E_n E_r (d (r . f_n) / d W_ij)^2``

    the diagonal of the output Gauss-Newton matrix (for the KL divergence of a
    softmax, of its Fisher), ``r`` a random probe with ``E[r r^T]`` the
    metric's matrix (identity for a squared error; Hutchinson's estimator).
    The map approximates ``G`` by the factored form

        ``importance_ij = c * E[x_j^2] * s_i``,  ``s_i = E_n E_r sum_p (d (r . f_n) / d y_pi)^2``,

    ``E[x_j^2]`` the mean squared input of channel ``j`` (for an embedding the
    frequency of row ``j``: its input is one-hot) and ``s_i`` the squared
    derivative with respect to output channel ``i``, summed over the positions
    ``p`` (tokens, pixels) of a sample and averaged over samples and probes.
    The factored form treats errors at different positions as adding
    incoherently; they do not (a weight shared by all positions adds the same
    error everywhere, a mean pooling averages them), so each layer's scale ``c``
    is fitted to an unbiased estimate of the whole ``sum_ij G_ij``, computed
    from the per-sample weight gradients (no cross-sample terms: each sample
    has its own probe and its own gradient).  Every map then sums to the
    expected squared output error per sample for unit weight error variance,
    so maps of different layers (and models) are in one unit, fit for
    ``ImportanceQPScale``.  ``form="diagonal"`` returns the per-sample estimate
    of ``G`` itself instead (unbiased, position coherence per weight, but
    noisier), ``form="marginal"`` its rank-one fit ``G_i. G_.j / G..`` (row and
    column sums: coherence per channel, little noise); embeddings stay factored.
    ``form="layer"`` drops the output-channel factor: ``c * E[x_j^2]``, the
    activation map's shape at the layer's output-sensitivity level.

    Use::

        with OutputSensitivity(net, {"fc1": "fc1.weight", ...}) as probe:
            for chunk in chunks:                      # batches of calibration samples
                probe.run(lambda: net(chunk), project, probes=4, generator=gen)
            maps = probe.maps()

    ``project(output, generator)`` returns the probes ``r`` (the output's shape,
    independent per sample).  During :meth:`run` no parameter needs a gradient:
    hooked layers' outputs are made to require one, and weight gradients are
    formed per sample from each layer's input and output gradient.
    """

    def __init__(
        self, model: torch.nn.Module, weight_names: Mapping[str, str], floor: float = 1e-3
    ) -> None:
        torch = require_torch()
        self._torch = torch
        self.model = model
        self.floor = float(floor)
        self.token_mask: torch.Tensor | None = None
        modules = dict(model.named_modules())
        kinds = (torch.nn.Conv2d, torch.nn.Linear, torch.nn.Embedding)
        self._modules: dict[str, Any] = {}
        for module_name, weight_name in weight_names.items():
            module = modules[module_name]
            if not isinstance(module, kinds):
                raise TypeError(
                    f"{module_name} is {type(module).__name__}, not Conv2d/Linear/Embedding"
                )
            self._modules[weight_name] = module
        self._input_sum: dict[str, torch.Tensor] = {}
        self._input_count: dict[str, float] = {}
        self._grad_sum: dict[str, torch.Tensor] = {}
        self._diag: dict[str, torch.Tensor] = {}
        self._trace: dict[str, list[float]] = {name: [] for name in self._modules}
        self._samples: list[int] = []  # samples per probe index (summed over chunks)
        self._probe = 0
        self._collect_inputs = False
        self._handles = [
            module.register_forward_hook(self._make_hook(name))
            for name, module in self._modules.items()
        ]
        self.stats: dict[str, dict[str, float]] = {}
        """Per weight, after :meth:`maps`: ``trace`` (per sample), ``trace_rel_se``
        (relative standard error over probes), ``coherence`` (the scale ``c``:
        1 when errors at different positions add incoherently, up to the number
        of positions when they add coherently) and ``mean`` (of the map)."""

    def _per_sample_sq(self, module: Any, x: Any, g: Any) -> Any:
        """``sum_n (dL_n/dW)^2`` of one layer (float64, the weight's shape), from its
        input ``x`` and output gradient ``g`` (samples on the first axis)."""
        torch = self._torch
        if isinstance(module, torch.nn.Conv2d):
            shape = tuple(module.weight.shape)
            total = torch.zeros(shape, dtype=torch.float64)
            pointwise = (
                shape[2:] == (1, 1)
                and module.groups == 1
                and module.stride == (1, 1)
                and module.padding in ((0, 0), "valid")
            )
            step = max(1, min(256, 4_000_000 // module.weight.numel()))
            for n in range(0, x.shape[0], step):
                xb, gb = x[n : n + step], g[n : n + step]
                batch = xb.shape[0]
                if pointwise:  # dL/dW of each sample: (out, L) @ (L, in)
                    grad = torch.bmm(gb.flatten(2), xb.flatten(2).transpose(1, 2))
                else:  # every sample its own group: one weight-gradient convolution
                    grad = torch.nn.grad.conv2d_weight(
                        xb.reshape(1, -1, *xb.shape[2:]),
                        (batch * shape[0], *shape[1:]),
                        gb.reshape(1, -1, *gb.shape[2:]),
                        stride=module.stride,
                        padding=module.padding,
                        dilation=module.dilation,
                        groups=batch * module.groups,
                    )
                total += grad.reshape(batch, *shape).square().sum(dim=0).to(torch.float64)
            return total
        if isinstance(module, torch.nn.Embedding):
            vocab, width = module.weight.shape
            keys = (torch.arange(x.shape[0])[:, None] * vocab + x).reshape(-1)
            unique, inverse = torch.unique(keys, return_inverse=True)
            sums = torch.zeros((unique.numel(), width), dtype=torch.float64)
            sums.index_add_(0, inverse, g.reshape(-1, width).to(torch.float64))
            total = torch.zeros((vocab, width), dtype=torch.float64)
            total.index_add_(0, unique % vocab, sums.square())
            return total
        if x.dim() == 2:  # one position per sample: (dL_n/dW)^2 = g_n^2 x_n^2
            return g.to(torch.float64).square().T @ x.to(torch.float64).square()
        g = g.reshape(g.shape[0], -1, g.shape[-1])
        x = x.reshape(x.shape[0], -1, x.shape[-1])
        total = torch.zeros((g.shape[-1], x.shape[-1]), dtype=torch.float64)
        step = max(1, 4_000_000 // module.weight.numel())
        for n in range(0, x.shape[0], step):
            grad = torch.bmm(g[n : n + step].transpose(1, 2), x[n : n + step])
            total += grad.square().sum(dim=0).to(torch.float64)
        return total

    def _make_hook(self, weight_name: str) -> Callable[..., Any]:
        torch = self._torch

        def add(store: dict[str, Any], value: Any) -> None:
            store[weight_name] = store[weight_name] + value if weight_name in store else value

        def grad_hook(module: Any, x: Any) -> Callable[[Any], None]:
            def hook(g: Any) -> None:
                g = g.detach()
                per_sample = self._per_sample_sq(module, x, g)
                add(self._diag, per_sample)
                self._trace[weight_name][self._probe] += float(per_sample.sum())
                g = g.to(torch.float64)
                if isinstance(module, torch.nn.Conv2d):
                    add(self._grad_sum, g.square().sum(dim=(0, 2, 3)))
                else:
                    add(self._grad_sum, g.reshape(-1, g.shape[-1]).square().sum(dim=0))

            return hook

        def hook(module: Any, inputs: tuple[Any, ...], output: Any) -> Any:
            x = inputs[0].detach()
            if self._collect_inputs:
                mask = self.token_mask
                if isinstance(module, torch.nn.Conv2d):
                    x64 = x.to(torch.float64)
                    add(self._input_sum, x64.square().sum(dim=(0, 2, 3)))
                    count = x.shape[0] * x.shape[2] * x.shape[3]
                elif isinstance(module, torch.nn.Embedding):
                    ids = x[mask] if mask is not None and x.shape == mask.shape else x
                    ids = ids.reshape(-1)
                    counts = torch.bincount(ids, minlength=module.num_embeddings)
                    add(self._input_sum, counts.to(torch.float64))
                    count = ids.numel()
                else:
                    rows = x
                    if mask is not None and x.dim() == 3 and x.shape[:2] == mask.shape:
                        rows = x[mask]
                    rows = rows.reshape(-1, x.shape[-1]).to(torch.float64)
                    add(self._input_sum, rows.square().sum(dim=0))
                    count = rows.shape[0]
                self._input_count[weight_name] = self._input_count.get(weight_name, 0) + count
            if not isinstance(output, torch.Tensor) or not torch.is_grad_enabled():
                return None
            if not output.requires_grad:
                output = output.detach().requires_grad_(True)
            output.register_hook(grad_hook(module, x))
            return output

        return hook

    def run(
        self,
        forward: Callable[[], torch.Tensor],
        project: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
        probes: int,
        generator: torch.Generator,
    ) -> None:
        """``probes`` forward/backward passes over one chunk of calibration samples.

        ``forward()`` runs the network on the chunk and returns its output
        (first axis: samples); the loss of a pass is ``sum(project(output) * output)``.
        """
        torch = self._torch
        params = list(self.model.parameters())
        saved = [p.requires_grad for p in params]
        try:
            for p in params:
                p.requires_grad_(False)
            for k in range(probes):
                if len(self._samples) <= k:
                    self._samples.append(0)
                    for trace in self._trace.values():
                        trace.append(0.0)
                self._probe = k
                self._collect_inputs = k == 0
                with torch.enable_grad():
                    out = forward()
                    self._collect_inputs = False
                    if out.requires_grad:
                        r = project(out.detach(), generator).to(out.dtype)
                        (out * r).sum().backward()
                self._samples[k] += int(out.shape[0])
        finally:
            self._collect_inputs = False
            for p, flag in zip(params, saved, strict=True):
                p.requires_grad_(flag)

    def maps(
        self,
        row_frequencies: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
        form: str = "factored",
    ) -> dict[str, np.ndarray]:
        """Float32 maps of each weight's shape, by weight name (zeros: no path to the output).

        ``row_frequencies[name](counts)`` turns an embedding's row counts into
        the smoothed row frequencies of the map (default
        :func:`smoothed_frequencies` with every row eligible); the layer's scale
        is fitted on the raw frequencies, so smoothing moves importance from
        seen rows to unseen ones without changing the layer's total.
        ``form``: ``"factored"`` (default), ``"layer"``, ``"diagonal"`` or
        ``"marginal"`` (see the class).
        """
        if form not in SENSITIVITY_FORMS:
            raise NntmError(
                f"unknown sensitivity form {form!r}: use {', '.join(SENSITIVITY_FORMS)}"
            )
        torch = self._torch
        total = max(float(sum(self._samples)), 1.0)
        result: dict[str, np.ndarray] = {}
        for name, module in self._modules.items():
            shape = tuple(module.weight.shape)
            per_probe = np.array(self._trace[name]) / np.maximum(np.array(self._samples), 1)
            trace = float(np.sum(self._trace[name]) / total)
            is_embedding = isinstance(module, torch.nn.Embedding)
            grad = self._grad_sum.get(name)
            s = np.zeros(shape[1] if is_embedding else shape[0])
            if grad is not None:
                s = grad.numpy() / total
            a_sum = self._input_sum.get(name)
            count = max(self._input_count.get(name, 0), 1)
            if form == "layer":  # no output-channel factor: s_i = 1
                s = np.ones_like(s) * (1.0 if float(np.sum(s)) > 0 else 0.0)
            if is_embedding:
                counts = np.zeros(shape[0]) if a_sum is None else a_sum.numpy()
                raw = counts / max(counts.sum(), 1.0)
                smooth = (row_frequencies or {}).get(name)
                final = smooth(counts) if smooth else smoothed_frequencies(counts)[0]
                fitted = float(raw.sum() * s.sum())
                factored = final[:, None] * s[None, :]
            else:
                a = np.zeros(shape[1]) if a_sum is None else a_sum.numpy() / count
                a = np.maximum(a, self.floor * float(np.mean(a)))
                s = np.maximum(s, self.floor * float(np.mean(s)))
                groups = getattr(module, "groups", 1)
                a_out = a.reshape(groups, shape[1])[np.arange(shape[0]) // (shape[0] // groups)]
                factored = s[:, None] * a_out
                factored = factored.reshape(shape[:2] + (1,) * (len(shape) - 2))
                factored = np.broadcast_to(factored, shape)
                fitted = float(factored.sum())
            scale = trace / fitted if fitted > 0.0 and trace > 0.0 else 0.0
            if form in ("diagonal", "marginal") and not is_embedding and name in self._diag:
                diag = self._diag[name].numpy() / total
                if form == "marginal":  # rank one: row sums x column sums / total
                    rows = diag.sum(axis=tuple(range(1, diag.ndim)))
                    columns = diag.sum(axis=0)
                    diag = np.multiply.outer(rows, columns) / max(float(diag.sum()), 1e-300)
                values = np.maximum(diag, self.floor * float(np.mean(diag)))
            else:
                values = factored * scale
            result[name] = np.ascontiguousarray(values, dtype=np.float32)
            spread = float("nan")
            if len(per_probe) > 1:
                spread = float(np.std(per_probe, ddof=1) / np.sqrt(len(per_probe)))
            self.stats[name] = {
                "trace": trace,
                "trace_rel_se": spread / trace if trace > 0 else float("nan"),
                "coherence": scale,
                "mean": float(np.mean(result[name])),
            }
        return result

    def close(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> OutputSensitivity:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def gaussian_probes(output: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Probes for a squared-error metric on ``output``: independent standard normal entries."""
    torch = require_torch()
    return torch.randn(output.shape, generator=generator, dtype=torch.float64)


def softmax_fisher_probes(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Probes for the KL divergence of a softmax over the last axis of ``logits``.

    ``r = sqrt(p) * u - p (sqrt(p) . u)`` with ``u`` standard normal has
    covariance ``diag(p) - p p^T``, the softmax's Fisher matrix in logit space,
    so ``E (r . dz)^2 = dz^T F dz``, twice the KL divergence of a small logit
    change ``dz``.
    """
    torch = require_torch()
    p = torch.softmax(logits.to(torch.float64), dim=-1)
    u = torch.randn(p.shape, generator=generator, dtype=torch.float64)
    root = p.sqrt()
    return root * u - p * (root * u).sum(dim=-1, keepdim=True)


def sign_probes(output: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Rademacher probes (+-1): exact for a scalar output per sample with chunks of one."""
    torch = require_torch()
    bits = torch.randint(0, 2, output.shape, generator=generator, dtype=torch.int64)
    return (2 * bits - 1).to(torch.float64)
