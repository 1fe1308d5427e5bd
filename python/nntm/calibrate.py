"""Importance maps from a PyTorch module and the user's own data (docs/calibration.md).

    maps = nntm.calibrate(module, batches)             # dict[state-dict name, float32 map]
    nntm.write_model("imp.safetensors", maps)          # for EncoderApp --ImportanceFile

:func:`calibrate` finds the ``Conv1d``/``Conv2d``, ``Linear`` and ``Embedding`` layers of any
``torch.nn.Module`` itself (forward hooks), runs the module on the caller's
calibration batches and measures, per layer,

* ``kind="activation"``: the mean squared input of each input channel (for an
  embedding table the smoothed frequency of each row), or
* ``kind="sensitivity"`` (default): that input energy times the output
  sensitivity of each output channel, a Hutchinson-probe estimate of the
  diagonal of the output Gauss-Newton matrix, each layer scaled to its
  estimated output error (:class:`OutputSensitivity`), so that the maps of all
  layers are in one unit, fit for ``ImportanceQPScale``.

The output metric is the caller's: the squared error of the module's output
(``output="mse"``, default), the KL divergence of a softmax over its last axis
(``output="kl"``, a classifier's logits), or a callable that turns the output
into the tensor whose squared error counts.  The CE model adapters
(``nntm.ce.models``) measure their maps through this same function: they only
supply the network, the inputs and the metric.

torch is imported on first use only: ``import nntm`` does not need it.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from .errors import NntmError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

__all__ = [
    "IMPORTANCE_KINDS",
    "OUTPUT_METRICS",
    "SENSITIVITY_FORMS",
    "ChannelEnergyHooks",
    "OutputSensitivity",
    "calibrate",
    "conv_padding",
    "find_layers",
    "gaussian_probes",
    "require_torch",
    "sign_probes",
    "smoothed_frequencies",
    "softmax_fisher_probes",
    "to_torch_state_dict",
]

IMPORTANCE_KINDS: tuple[str, ...] = ("activation", "sensitivity")
"""Kinds of importance map :func:`calibrate` measures."""

SENSITIVITY_FORMS: tuple[str, ...] = ("factored", "layer", "diagonal", "marginal")
"""Forms of an output-sensitivity map (:meth:`OutputSensitivity.maps`)."""

OUTPUT_METRICS: tuple[str, ...] = ("mse", "kl")
"""Named output metrics of :func:`calibrate` (or pass a callable)."""

DEFAULT_PROBES = 4
"""Hutchinson probes per calibration sample (sensitivity kind)."""

TORCH_HINT = "pip install torch (on the CTC machine: pip install torch==2.13.0)"


def require_torch() -> Any:
    """Import torch and return it; a clear :class:`NntmError` when it is not installed."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise NntmError(f"calibration needs torch, which is not installed: {TORCH_HINT}") from exc
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
            value = np.ascontiguousarray(array.astype(np.float32, copy=False))
            state[name] = torch.from_numpy(value.copy())
    return state


def _layer_input(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """The input tensor of a hooked layer, passed by position or by keyword."""
    if args:
        return args[0]
    for value in kwargs.values():
        return value
    raise NntmError("a hooked layer was called without an input")


def _is_conv(module: Any) -> bool:
    """A ``Conv1d`` or ``Conv2d`` (the convolutions :func:`calibrate` maps)."""
    import torch

    return isinstance(module, torch.nn.Conv1d | torch.nn.Conv2d)


def conv_padding(module: Any) -> tuple[int, ...] | None:
    """The explicit (symmetric) zero padding of a ``Conv1d``/``Conv2d``, or ``None`` when it
    has none (``padding="same"`` with an even kernel, or a padding mode other than zeros)."""
    if getattr(module, "padding_mode", "zeros") != "zeros":
        return None
    padding = module.padding
    if padding == "valid":
        return (0,) * len(module.kernel_size)
    if padding == "same":
        total = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size, strict=True)]
        if any(t % 2 for t in total):
            return None
        return tuple(t // 2 for t in total)
    return tuple(int(p) for p in padding)


class _HookSet:
    """Forward hooks on a module's layers (``_handles``), removed by :meth:`close` or on
    leaving a ``with`` block."""

    _handles: list[Any]

    def close(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ChannelEnergyHooks(_HookSet):
    """Forward hooks that accumulate the mean squared input per input channel.

    Hooks every ``Conv1d``/``Conv2d`` and ``Linear`` of ``model`` whose qualified name is in
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
            if not (_is_conv(module) or isinstance(module, torch.nn.Linear)):
                raise TypeError(f"{module_name} is {type(module).__name__}, not Conv/Linear")
            self._handles.append(
                module.register_forward_hook(self._make_hook(weight_name), with_kwargs=True)
            )

    def _make_hook(self, weight_name: str) -> Callable[..., None]:
        torch = self._torch

        def hook(
            module: torch.nn.Module,
            inputs: tuple[torch.Tensor, ...],
            kwargs: dict[str, Any],
            output: Any,
        ) -> None:
            x = _layer_input(inputs, kwargs).detach().to(torch.float32)
            if _is_conv(module):  # (N, C, H, W) or (N, C, L), any memory layout
                total = x.square().sum(dim=(0, *range(2, x.dim())), dtype=torch.float64)
                count = x.numel() // x.shape[1]
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


class OutputSensitivity(_HookSet):
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
        kinds = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear, torch.nn.Embedding)
        self._modules: dict[str, Any] = {}
        for module_name, weight_name in weight_names.items():
            module = modules[module_name]
            if not isinstance(module, kinds):
                raise TypeError(
                    f"{module_name} is {type(module).__name__}, not Conv/Linear/Embedding"
                )
            if _is_conv(module) and conv_padding(module) is None:
                raise NntmError(
                    f"{module_name}: a convolution with padding {module.padding!r} and padding "
                    f"mode {module.padding_mode!r} is not supported (zero padding only)"
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
            module.register_forward_hook(self._make_hook(name), with_kwargs=True)
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
        if isinstance(module, torch.nn.Conv1d):  # as a Conv2d of height 1
            out, width, kernel = module.weight.shape
            padding = conv_padding(module)
            assert padding is not None  # checked in __init__
            total = self._conv_sq(
                x.unsqueeze(2),
                g.unsqueeze(2),
                (out, width, 1, kernel),
                (1, module.stride[0]),
                (0, padding[0]),
                (1, module.dilation[0]),
                module.groups,
            )
            return total.reshape(out, width, kernel)
        if isinstance(module, torch.nn.Conv2d):
            padding = conv_padding(module)
            assert padding is not None  # checked in __init__
            return self._conv_sq(
                x, g, tuple(module.weight.shape), module.stride, padding, module.dilation,
                module.groups,
            )
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

    def _conv_sq(
        self,
        x: Any,
        g: Any,
        shape: tuple[int, ...],
        stride: tuple[int, ...],
        padding: tuple[int, ...],
        dilation: tuple[int, ...],
        groups: int,
    ) -> Any:
        """``sum_n (dL_n/dW)^2`` of a 2-D convolution of weight ``shape``."""
        torch = self._torch
        total = torch.zeros(shape, dtype=torch.float64)
        pointwise = (
            shape[2:] == (1, 1) and groups == 1 and tuple(stride) == (1, 1) and padding == (0, 0)
        )
        step = max(1, min(256, 4_000_000 // math.prod(shape)))
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
                    stride=stride,
                    padding=padding,
                    dilation=dilation,
                    groups=batch * groups,
                )
            total += grad.reshape(batch, *shape).square().sum(dim=0).to(torch.float64)
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
                if _is_conv(module):
                    add(self._grad_sum, g.square().sum(dim=(0, *range(2, g.dim()))))
                else:
                    add(self._grad_sum, g.reshape(-1, g.shape[-1]).square().sum(dim=0))

            return hook

        def hook(module: Any, inputs: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
            x = _layer_input(inputs, kwargs).detach()
            if self._collect_inputs:
                mask = self.token_mask
                if _is_conv(module):
                    x64 = x.to(torch.float64)
                    add(self._input_sum, x64.square().sum(dim=(0, *range(2, x.dim()))))
                    count = x.numel() // x.shape[1]
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


# --------------------------------------------------------------------------------------
# The public entry point
# --------------------------------------------------------------------------------------


def find_layers(module: torch.nn.Module) -> dict[str, str]:
    """Module name -> state-dict weight name of every layer :func:`calibrate` maps.

    ``Conv1d``/``Conv2d`` (zero padding), ``Linear`` and ``Embedding`` modules whose weight is
    in the module's state dict under ``<module name>.weight``, in ``named_modules``
    order; a module shared by several parents is listed once.  Other layers
    (``Conv3d``, transposed convolutions, weights under parametrizations) get no
    map.
    """
    torch = require_torch()
    keys = set(module.state_dict().keys())
    found: dict[str, str] = {}
    for name, sub in module.named_modules():
        kinds = torch.nn.Conv1d | torch.nn.Conv2d | torch.nn.Linear | torch.nn.Embedding
        if not isinstance(sub, kinds):
            continue
        if _is_conv(sub) and conv_padding(sub) is None:
            continue
        weight = f"{name}.weight" if name else "weight"
        if weight in keys:
            found[name] = weight
    return found


def _call(module: torch.nn.Module, batch: Any) -> Any:
    """``module(batch)``, ``module(*batch)`` or ``module(**batch)``."""
    if isinstance(batch, Mapping):
        return module(**batch)
    if isinstance(batch, tuple | list):
        return module(*batch)
    return module(batch)


def describe_batch(batch: Any) -> str:
    """``"x: (32, 1, 8, 8) float32"`` etc.: the inputs of a batch, for messages."""

    def one(value: Any) -> str:
        shape = getattr(value, "shape", None)
        if shape is None:
            return type(value).__name__
        dtype = str(getattr(value, "dtype", "")).replace("torch.", "")
        return f"{tuple(shape)} {dtype}".strip()

    if isinstance(batch, Mapping):
        return ", ".join(f"{key}: {one(value)}" for key, value in batch.items())
    if isinstance(batch, tuple | list):
        return ", ".join(f"input {i}: {one(value)}" for i, value in enumerate(batch))
    return f"input: {one(batch)}"


def _metric(
    output: str | Callable[[Any], Any], select: Callable[[Any], Any] | None
) -> tuple[Callable[[Any], Any], Callable[[Any, Any], Any] | None]:
    """``(transform, probes)``: what of the module's output is scored, and its probes
    (``None``: by the scored tensor's shape, see :func:`calibrate`)."""
    pick = select or (lambda out: out)
    if callable(output):
        return (lambda out: output(pick(out))), None
    if output == "mse":
        return pick, None
    if output == "kl":
        return pick, softmax_fisher_probes
    raise NntmError(
        f"unknown output metric {output!r}: use {', '.join(OUTPUT_METRICS)} or a callable"
    )


def _squared_error_probes(output: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Exact +-1 probes for one value per sample, standard normal ones otherwise."""
    if output.dim() == 1 or (output.dim() == 2 and output.shape[1] == 1):
        return sign_probes(output, generator)
    return gaussian_probes(output, generator)


class _Forward:
    """Runs the module on one batch; errors name the batch and its inputs."""

    def __init__(
        self, module: torch.nn.Module, transform: Callable[[Any], Any], torch: Any
    ) -> None:
        self.module = module
        self.transform = transform
        self.torch = torch

    def __call__(self, index: int, batch: Any) -> Any:
        torch = self.torch
        try:
            out = self.transform(_call(self.module, batch))
        except NntmError:
            raise
        except Exception as exc:
            raise NntmError(
                f"the module failed on calibration batch {index} ({describe_batch(batch)}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(out, torch.Tensor) or not out.is_floating_point() or out.dim() < 1:
            kind = type(out).__name__
            if isinstance(out, torch.Tensor):
                kind = f"a {out.dtype} tensor of shape {tuple(out.shape)}"
            raise NntmError(
                f"the scored output on calibration batch {index} is {kind}, not a float tensor "
                "with the samples on its first axis: pass output= or select= to pick one"
            )
        finite = torch.isfinite(out.detach())
        if not bool(finite.all()):
            bad = int(finite.numel() - finite.sum())
            raise NntmError(
                f"the module's output is not finite on calibration batch {index} "
                f"({describe_batch(batch)}): {bad} of {out.numel()} values are NaN or Inf"
            )
        return out


def _generator(seed: int | torch.Generator, torch: Any) -> Any:
    if isinstance(seed, torch.Generator):
        return seed
    return torch.Generator().manual_seed(int(seed))


def _embedding_counts_hooks(
    module: torch.nn.Module, layers: Mapping[str, str], counts: dict[str, Any], mask: list[Any]
) -> list[Any]:
    """Forward hooks that add each embedding's index counts (masked by ``mask[0]``)."""
    torch = require_torch()
    modules = dict(module.named_modules())
    handles = []
    for module_name, weight_name in layers.items():
        layer = modules[module_name]
        if not isinstance(layer, torch.nn.Embedding):
            continue

        def hook(
            sub: Any,
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
            out: Any,
            name: str = weight_name,
        ) -> None:
            ids = _layer_input(args, kwargs).detach()
            token_mask = mask[0]
            if token_mask is not None and ids.shape == token_mask.shape:
                ids = ids[token_mask]
            found = torch.bincount(ids.reshape(-1), minlength=sub.num_embeddings).numpy()
            counts[name] = counts[name] + found if name in counts else found

        handles.append(layer.register_forward_hook(hook, with_kwargs=True))
    return handles


def _activation_maps(
    module: torch.nn.Module,
    batches: Iterable[Any],
    layers: Mapping[str, str],
    forward: _Forward,
    token_mask: Callable[[Any], Any] | None,
    row_frequencies: Mapping[str, Callable[[np.ndarray], np.ndarray]],
) -> dict[str, np.ndarray]:
    torch = require_torch()
    modules = dict(module.named_modules())
    dense = {
        name: weight
        for name, weight in layers.items()
        if not isinstance(modules[name], torch.nn.Embedding)
    }
    counts: dict[str, Any] = {}
    mask: list[Any] = [None]
    handles = _embedding_counts_hooks(module, layers, counts, mask)
    seen = 0
    try:
        with ChannelEnergyHooks(module, dense) as hooks, torch.inference_mode():
            for index, batch in enumerate(batches):
                mask[0] = hooks.token_mask = token_mask(batch) if token_mask else None
                forward(index, batch)
                seen += 1
            energy = hooks.result()
    finally:
        for handle in handles:
            handle.remove()
    if not seen:
        raise NntmError("no calibration batches")
    maps: dict[str, np.ndarray] = {}
    for name, weight in layers.items():
        layer = modules[name]
        if isinstance(layer, torch.nn.Embedding):
            vocab, width = layer.weight.shape
            found = counts.get(weight, np.zeros(vocab, dtype=np.int64))
            smooth = row_frequencies.get(weight)
            frequency = smooth(found) if smooth else smoothed_frequencies(found)[0]
            column = frequency.astype(np.float32)[:, None]
            maps[weight] = np.ascontiguousarray(np.broadcast_to(column, (vocab, width)))
        else:
            width = layer.in_channels if _is_conv(layer) else layer.in_features
            maps[weight] = energy.get(weight, np.zeros(width))
    return maps


def _sensitivity_maps(
    module: torch.nn.Module,
    batches: Iterable[Any],
    layers: Mapping[str, str],
    forward: _Forward,
    project: Callable[[Any, Any], Any],
    options: Mapping[str, Any],
) -> dict[str, np.ndarray]:
    torch = require_torch()
    generator = _generator(options["seed"], torch)
    token_mask = options["token_mask"]
    seen = 0
    with OutputSensitivity(module, layers, floor=options["floor"]) as probe:
        for index, batch in enumerate(batches):
            probe.token_mask = token_mask(batch) if token_mask else None
            probe.run(
                lambda index=index, batch=batch: forward(index, batch),
                project,
                options["probes"],
                generator,
            )
            seen += 1
        if not seen:
            raise NntmError("no calibration batches")
        maps = probe.maps(options["row_frequencies"], form=options["form"])
        if options["stats"] is not None:
            options["stats"].update(probe.stats)
    return maps


def calibrate(
    module: torch.nn.Module,
    batches: Iterable[Any],
    kind: str = "sensitivity",
    output: str | Callable[[Any], Any] = "mse",
    probes: int = DEFAULT_PROBES,
    seed: int | torch.Generator = 0,
    form: str = "factored",
    *,
    select: Callable[[Any], Any] | None = None,
    token_mask: Callable[[Any], Any] | None = None,
    row_frequencies: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    layers: Mapping[str, str] | None = None,
    floor: float = 1e-3,
    stats: dict[str, dict[str, float]] | None = None,
) -> dict[str, np.ndarray]:
    """Importance maps of ``module``'s conv, linear and embedding weights, by state-dict name.

    ``batches``: an iterable of calibration batches, each a tensor
    (``module(x)``), a tuple or list (``module(*x)``) or a dict
    (``module(**x)``), the samples on the first axis of the module's output.
    ``kind``: ``"sensitivity"`` (float32 maps of each weight's shape, in one
    unit across layers) or ``"activation"`` (float64 mean squared input per
    input channel; embedding tables float32 maps of the table's shape).

    ``output`` chooses the metric the maps stand for: ``"mse"`` (the squared
    error of the output; Gaussian probes, or exact +-1 probes when the output
    has one value per sample), ``"kl"`` (the KL divergence of a softmax over
    the output's last axis: probes with the softmax's Fisher matrix as
    covariance), or a callable ``f(output) -> tensor`` whose squared error
    counts.  ``select(output) -> tensor`` picks the scored tensor out of a
    structured output first.  ``probes`` per sample and ``seed`` (an int, or a
    ``torch.Generator`` to continue a stream) drive the Hutchinson estimate;
    ``form`` is one of :data:`SENSITIVITY_FORMS`.

    ``token_mask(batch) -> bool tensor (B, T)`` restricts the input energy of
    layers applied per token (``(B, T, C)`` inputs, embedding indices) to the
    real tokens of padded batches.  ``row_frequencies[weight](counts)`` smooths
    an embedding's row counts (default: Good-Turing additive smoothing over
    every row, :func:`smoothed_frequencies`).  ``layers`` (module name ->
    weight name) replaces :func:`find_layers`.  ``stats``, when given, is
    filled with per-weight statistics of the sensitivity estimate.

    The module runs in eval mode (restored afterwards) and its parameters'
    ``requires_grad`` flags are left as they were.  A layer that the batches
    never reach, or that has no path to the scored output, gets an all-zero map
    (the encoder reads it as "no information").  Errors: a module that fails on
    a batch, a non-finite output or map, an unknown ``kind``/``output``/``form``
    raise :class:`NntmError` naming the batch or the tensor.
    """
    torch = require_torch()
    if not isinstance(module, torch.nn.Module):
        raise NntmError(f"calibrate needs a torch.nn.Module, not {type(module).__name__}")
    if kind not in IMPORTANCE_KINDS:
        raise NntmError(f"unknown importance kind {kind!r}: use {', '.join(IMPORTANCE_KINDS)}")
    if form not in SENSITIVITY_FORMS:
        raise NntmError(f"unknown sensitivity form {form!r}: use {', '.join(SENSITIVITY_FORMS)}")
    if int(probes) < 1:
        raise NntmError(f"probes must be at least 1, not {probes}")
    transform, project = _metric(output, select)
    layers = dict(find_layers(module) if layers is None else layers)
    if not layers:
        raise NntmError(
            f"{type(module).__name__} has no Conv1d/Conv2d, Linear or Embedding layer to "
            "calibrate"
        )
    forward = _Forward(module, transform, torch)
    modes = {sub: sub.training for sub in module.modules()}
    module.eval()
    try:
        if kind == "activation":
            maps = _activation_maps(
                module, batches, layers, forward, token_mask, row_frequencies or {}
            )
        else:
            options = {
                "seed": seed,
                "token_mask": token_mask,
                "probes": int(probes),
                "floor": floor,
                "row_frequencies": row_frequencies,
                "form": form,
                "stats": stats,
            }
            maps = _sensitivity_maps(
                module, batches, layers, forward, project or _squared_error_probes, options
            )
    finally:
        for sub, training in modes.items():
            sub.train(training)
    order = list(module.state_dict().keys())
    for name, value in maps.items():
        if not np.all(np.isfinite(value)):
            raise NntmError(
                f"the importance map of {name!r} is not finite (the module's gradients "
                "overflowed or are NaN on the calibration batches)"
            )
    rank = {name: i for i, name in enumerate(order)}
    return {name: maps[name] for name in sorted(maps, key=lambda n: rank.get(n, len(rank)))}


def signature_inputs(module: torch.nn.Module) -> tuple[list[str], bool] | None:
    """The names ``module.forward`` takes by keyword and whether it takes ``**kwargs``
    (``None`` when its signature cannot be read)."""
    try:
        parameters = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return None
    names = [
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    return names, any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters)
