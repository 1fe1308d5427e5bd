"""nntm-calibrate: write an importance file for EncoderApp --ImportanceFile.

    nntm-calibrate --torch mypackage.nets:build --inputs calib.pt -o imp.safetensors
    nntm-calibrate --model-file model.onnx --inputs calib.npz -o imp.safetensors
    nntm-calibrate --model-file model.onnx --synthetic 16 [--input-range 0,255] -o imp.safetensors
    nntm-calibrate --model minilm --kind sensitivity -o imp.safetensors
    nntm-calibrate --model mobilenetv2 --kind activation -o imp.npz [-i model.safetensors]

Measures importance maps (docs/importance.md, docs/calibration.md):

* ``--torch package.module:factory``: any PyTorch module, returned by calling
  ``factory()`` (or the module object itself), on the calibration inputs of
  ``--inputs``: a file written by ``torch.save`` holding a tensor (the module
  is called ``module(x)``), a list of tensors (``module(*xs)``) or a dict of
  tensors (``module(**d)``), the samples on the first axis of every tensor,
  run in batches of ``--batch-size`` samples.  The maps are made by the public
  :func:`nntm.calibrate` and named by the module's state-dict names;
  ``--output-metric`` says what they stand for (mse: the squared error of the
  output; kl: the KL divergence of a softmax over its last axis).
* ``--model-file model.onnx``: an ONNX model, on the inputs of ``--inputs``: an ``.npz``
  file with one array per graph input name, the samples on the first axis
  (:func:`nntm.calibrate_onnx.calibrate_onnx`: activation maps through onnxruntime,
  sensitivity maps through the graph converted to torch with onnx2torch, checked against
  onnxruntime); the maps carry EncoderApp's names of the graph's tensors.
  ``--output-name`` picks the scored graph output (default: the first float output).
* ``--synthetic N`` (instead of ``--inputs``, with ``--torch`` or ``--model-file``): no
  data: ``N`` inputs drawn from the model's own description (:mod:`nntm.synthetic`): the
  graph's input shapes and dtypes (``--input-shape [NAME=]D1,D2,...`` for free dims; with
  ``--torch`` the one input's per-sample shape), standard-normal values or uniform ones in
  ``--input-range LOW,HIGH``, integer inputs uniform over the rows of the tables they index.
  Whether such maps pay is measured per model in docs/calibration.md ("When the user has
  no data").
* ``--model NAME``: a CE model, on its adapter's calibration inputs, which
  are disjoint from the inputs its CE metrics are evaluated on.

Kinds: ``activation`` (the mean squared input of each input channel of every
conv and linear weight, a vector per weight; for embedding tables the smoothed
frequency of each row) and ``sensitivity`` (that input energy times the output
sensitivity of each output channel, Hutchinson probes through the network,
each layer scaled to its estimated output error: a float32 map of each
weight's shape).

The file holds one float32 entry per mapped tensor in the model's tensor order
(``.safetensors`` or ``.npz``, by the output's extension).  With ``-i`` the maps
are measured through the network holding that file's tensors (same names and
shapes as the model) instead of its own weights.  The report gives the time, the
peak memory, the share of the float parameters mapped and the tensors without a
map.  Nothing is written when anything fails.  ``--torch`` needs torch; ``--model``
the CE dependencies (``bash scripts/install_ce.sh``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import resource
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..calibrate import IMPORTANCE_KINDS, OUTPUT_METRICS, SENSITIVITY_FORMS
from ..errors import ConfigError, ModelIOError, NntmError
from ..modelio import read_model, write_model
from .common import (
    collision_problems,
    display_name,
    escape_text,
    input_problem,
    output_problem,
    run_app,
)

PROG = "nntm-calibrate"
DESCRIPTION = (
    "Write an importance file (docs/importance.md) for EncoderApp --ImportanceFile: for any "
    "PyTorch module (--torch package.module:factory --inputs calib.pt), an ONNX model "
    "(--model-file model.onnx --inputs calib.npz) or a CE model "
    "(--model NAME, on the adapter's calibration inputs, disjoint from its evaluation "
    "inputs; docs/calibration.md). Kinds: activation (mean squared input per input channel; "
    "row frequency for embeddings) or sensitivity (input energy x output sensitivity per "
    "weight, each layer scaled to its estimated output error)."
)
DEFAULT_BATCH = 32
LISTED = 12  # tensors without a map named in the report


def _parser() -> argparse.ArgumentParser:
    from ..ce.models import ADAPTERS

    ap = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", "-m", choices=tuple(ADAPTERS), help="CE model")
    source.add_argument(
        "--torch",
        metavar="MODULE:FACTORY",
        help="PyTorch module: package.module:factory, factory() returns the torch.nn.Module",
    )
    source.add_argument(
        "--model-file",
        metavar="MODEL.onnx",
        help="ONNX model file; --inputs is an .npz with one array per graph input name",
    )
    ap.add_argument(
        "--output-name",
        help="--model-file: the graph output the maps stand for (default: the first float one)",
    )
    ap.add_argument(
        "--inputs",
        help="--torch: calibration inputs, a torch.save'd tensor, list or dict of tensors; "
        "--model-file: an .npz, one array per graph input name (first axis: samples)",
    )
    ap.add_argument(
        "--synthetic",
        type=int,
        metavar="N",
        help="--torch, --model-file: no data: N synthetic inputs instead of --inputs (standard "
        "normal, or uniform in --input-range; integer inputs uniform over the rows of the "
        "tables they index; docs/calibration.md)",
    )
    ap.add_argument(
        "--input-shape",
        action="append",
        metavar="[NAME=]D1,D2,...",
        help="--synthetic: the per-sample shape of the input (--torch: required; --model-file: "
        "fills the graph's free dims)",
    )
    ap.add_argument(
        "--input-range",
        metavar="LOW,HIGH",
        help="--synthetic: draw uniform values in [LOW, HIGH] (for example 0,255 for raw "
        "pixels) instead of standard normal ones",
    )
    ap.add_argument(
        "--batch-size",
        type=int,
        help=f"--torch, --model-file: samples per pass (default {DEFAULT_BATCH}; an ONNX graph "
        "with a fixed batch axis is fed that many)",
    )
    ap.add_argument(
        "--output-metric",
        choices=OUTPUT_METRICS,
        help="--torch, --model-file: what the maps stand for: mse (squared error of the "
        "output, default) or kl (KL divergence of a softmax over the output's last axis)",
    )
    ap.add_argument(
        "--kind",
        "-k",
        default="sensitivity",
        choices=IMPORTANCE_KINDS,
        help="activation (input energy) or sensitivity (input energy x output sensitivity)",
    )
    ap.add_argument("-o", "--output", required=True, help="importance file (.safetensors/.npz)")
    ap.add_argument("-i", "--input", help="model file to measure through (default: its own)")
    ap.add_argument("--probes", type=int, help="sensitivity: probes per sample (default 4)")
    ap.add_argument("--samples", type=int, help="use only the first N calibration samples")
    ap.add_argument("--seed", type=int, default=0, help="sensitivity: seed of the probes")
    ap.add_argument(
        "--form",
        choices=SENSITIVITY_FORMS,
        help="sensitivity: factored (default), layer, diagonal or marginal (docs/calibration.md)",
    )
    return ap


def _file_problems(args: argparse.Namespace) -> list[str]:
    problems = []
    if not args.output.lower().endswith((".safetensors", ".npz")):
        problems.append(f"output '{args.output}': use a .safetensors or .npz name")
    problem = output_problem("-o", args.output)
    if problem:
        problems.append(problem)
    inputs = {}
    for key, path in (("-i", args.input), ("--inputs", args.inputs),
                      ("--model-file", args.model_file)):
        if path:
            problem = input_problem(key, path)
            if problem:
                problems.append(problem)
            inputs[key] = path
    problems += collision_problems(inputs, {"-o": args.output})
    if args.synthetic is not None:
        if args.model:
            problems.append("--synthetic applies to --torch and --model-file only")
        if args.inputs:
            problems.append("--synthetic replaces --inputs: give one of them")
        if args.synthetic < 1:
            problems.append(f"--synthetic must be at least 1, not {args.synthetic}")
        if args.torch and not args.input_shape:
            problems.append("--torch --synthetic needs --input-shape (the per-sample shape)")
        if args.torch and args.input_shape and len(args.input_shape) > 1:
            problems.append("--torch --synthetic takes one --input-shape (one input tensor)")
    elif args.input_shape or args.input_range:
        problems.append("--input-shape and --input-range apply to --synthetic only")
    if args.torch and not args.inputs and args.synthetic is None:
        problems.append("--torch needs --inputs (the calibration inputs, a torch.save'd file) "
                        "or --synthetic N")
    if args.model_file:
        if not args.inputs:
            if args.synthetic is None:
                problems.append("--model-file needs --inputs (an .npz, one array per graph "
                                "input) or --synthetic N")
        elif not args.inputs.lower().endswith(".npz"):
            problems.append(f"--inputs '{args.inputs}': --model-file takes an .npz file")
        if args.input:
            problems.append("-i applies to --torch and --model only (--model-file is the model)")
    elif args.output_name is not None:
        problems.append("--output-name applies to --model-file only")
    if args.model:
        used = [f"--{k.replace('_', '-')}" for k in ("inputs", "batch_size", "output_metric")
                if getattr(args, k) is not None]
        if used:
            problems.append(f"{', '.join(used)} apply to --torch and --model-file only (a CE "
                            "model brings its own inputs and metric)")
    return problems


def _options(args: argparse.Namespace) -> dict[str, int | str]:
    options: dict[str, int | str] = {"seed": args.seed}
    if args.form is not None:
        options["form"] = args.form
    for key in ("probes", "samples", "batch_size"):
        value = getattr(args, key)
        if value is not None:
            if value < 1:
                raise ConfigError(f"--{key.replace('_', '-')} must be at least 1, not {value}")
            if key != "batch_size":
                options[key] = value
    if args.kind == "activation":
        limited = {"probes", "form"} | ({"samples"} if args.model else set())
        if limited & set(options) or args.seed:
            raise ConfigError(
                f"--probes, --seed, --form{', --samples' if args.model else ''} apply to "
                "--kind sensitivity only"
            )
        options.pop("seed")
    return options


# --------------------------------------------------------------------------------------
# --torch: the module, its inputs
# --------------------------------------------------------------------------------------


def load_factory_module(spec: str) -> Any:
    """The ``torch.nn.Module`` named by ``package.module:factory`` (``factory()`` or itself).

    The current folder is importable, as with ``python -m``.
    """
    from ..calibrate import require_torch

    torch = require_torch()
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"--torch '{spec}': use package.module:factory")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(
            f"--torch '{spec}': cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise ConfigError(f"--torch '{spec}': {module_name!r} has no {attribute!r}")
        found = getattr(found, part)
    if isinstance(found, torch.nn.Module):
        return found
    if not callable(found):
        raise ConfigError(f"--torch '{spec}': {attribute!r} is neither callable nor a module")
    try:
        made = found()
    except Exception as exc:
        raise NntmError(
            f"--torch '{spec}': {attribute}() failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(made, torch.nn.Module):
        raise NntmError(
            f"--torch '{spec}': {attribute}() returned {type(made).__name__}, "
            "not a torch.nn.Module"
        )
    return made


def load_inputs(path: str) -> Any:
    """The calibration inputs of a ``torch.save``'d file: a tensor, a list/tuple or a dict
    of tensors, checked to share one number of samples (first axis)."""
    from ..calibrate import require_torch

    torch = require_torch()
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelIOError(
            f"--inputs '{path}': not a torch.save'd tensor, list or dict of tensors "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    if isinstance(data, torch.Tensor):
        entries: dict[str, Any] = {"input": data}
    elif isinstance(data, list | tuple):
        data = tuple(data)
        entries = {f"input {i}": value for i, value in enumerate(data)}
    elif isinstance(data, Mapping):
        data = dict(data)
        entries = {str(key): value for key, value in data.items()}
        bad = [key for key in data if not isinstance(key, str)]
        if bad:
            raise ModelIOError(f"--inputs '{path}': the dict's keys must be names, not {bad[0]!r}")
    else:
        raise ModelIOError(
            f"--inputs '{path}' holds {type(data).__name__}: use a tensor, a list or a dict "
            "of tensors"
        )
    if not entries:
        raise ModelIOError(f"--inputs '{path}' holds no tensor")
    samples = None
    for name, value in entries.items():
        if not isinstance(value, torch.Tensor) or value.dim() < 1:
            what = f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else (
                type(value).__name__)
            raise ModelIOError(
                f"--inputs '{path}': {name} is {what}, not a tensor with the samples on its "
                "first axis"
            )
        if samples is None:
            samples = int(value.shape[0])
        elif int(value.shape[0]) != samples:
            raise ModelIOError(
                f"--inputs '{path}': {name} has {value.shape[0]} samples (shape "
                f"{tuple(value.shape)}), the first input {samples}: every input needs the same "
                "number of samples on its first axis"
            )
    if not samples:
        raise ModelIOError(f"--inputs '{path}' holds no sample")
    return data


def check_input_names(module: Any, data: Any, path: str) -> None:
    """Raise unless the inputs fit ``module.forward``'s parameters (names, count)."""
    from ..calibrate import require_torch, signature_inputs

    torch = require_torch()
    found = signature_inputs(module)
    if found is None:
        return
    names, takes_kwargs = found
    forward = type(module).__name__ + ".forward"
    if isinstance(data, dict):
        unknown = [key for key in data if key not in names]
        if unknown and not takes_kwargs:
            raise ModelIOError(
                f"--inputs '{path}': input {unknown[0]!r} is not a parameter of {forward} "
                f"(it takes {', '.join(names) or 'none'})"
            )
        given: set[str] = set(data)
    else:
        count = 1 if isinstance(data, torch.Tensor) else len(data)
        given = set(names[:count])
    import inspect

    parameters = inspect.signature(module.forward).parameters.values()
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not isinstance(data, dict) and not any(p.kind == p.VAR_POSITIONAL for p in parameters):
        count = 1 if isinstance(data, torch.Tensor) else len(data)
        if count > len(positional):
            raise ModelIOError(
                f"--inputs '{path}' holds {count} inputs; {forward} takes {len(positional)}"
            )
    missing = [p.name for p in parameters
               if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               and p.name not in given]
    if missing:
        raise ModelIOError(
            f"--inputs '{path}': {forward} needs input {missing[0]!r}, which the file lacks"
        )


def batches_of(data: Any, size: int, samples: int | None) -> list[Any]:
    """The inputs cut into batches of ``size`` samples along the first axis."""
    first = data if not isinstance(data, dict | tuple) else next(iter(
        data.values() if isinstance(data, dict) else data))
    total = int(first.shape[0]) if samples is None else min(samples, int(first.shape[0]))
    out = []
    for start in range(0, total, size):
        stop = min(start + size, total)
        if isinstance(data, dict):
            out.append({key: value[start:stop] for key, value in data.items()})
        elif isinstance(data, tuple):
            out.append(tuple(value[start:stop] for value in data))
        else:
            out.append(data[start:stop])
    return out


def _load_weights(module: Any, path: str) -> None:
    """Put the tensors of model file ``path`` into ``module`` (names and shapes checked)."""
    from ..calibrate import require_torch, to_torch_state_dict

    torch = require_torch()
    tensors = read_model(path)
    state = module.state_dict()
    missing = [name for name in state if name not in tensors]
    extra = [name for name in tensors if name not in state]
    if missing or extra:
        first = missing[0] if missing else extra[0]
        raise ModelIOError(
            f"-i '{path}' does not match the module: {len(missing)} of its tensors missing, "
            f"{len(extra)} unknown (first: {first!r})"
        )
    for name, value in state.items():
        if tuple(np.shape(tensors[name])) != tuple(value.shape):
            raise ModelIOError(
                f"-i '{path}': tensor {name!r} has shape {tuple(np.shape(tensors[name]))}, "
                f"the module's {tuple(value.shape)}"
            )
    with torch.no_grad():
        module.load_state_dict(to_torch_state_dict(tensors, state), strict=True)


def _torch_maps(
    args: argparse.Namespace, options: dict[str, int | str]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(maps, the module's tensors as numpy) for ``--torch``."""
    from ..calibrate import calibrate, require_torch

    torch = require_torch()
    module = load_factory_module(args.torch)
    if args.input:
        _load_weights(module, args.input)
    if args.synthetic is not None:
        from ..synthetic import parse_range, parse_shape, torch_inputs

        value_range = parse_range(args.input_range) if args.input_range else None
        data = torch_inputs(parse_shape(args.input_shape[0])[1], args.synthetic,
                            value_range=value_range)
    else:
        data = load_inputs(args.inputs)
        check_input_names(module, data, args.inputs)
    samples = options.pop("samples", None)
    batches = batches_of(data, args.batch_size or DEFAULT_BATCH, samples)
    tensors = {  # what the report counts (bfloat16 as float32: numpy has no bfloat16)
        name: (value.float() if value.dtype == torch.bfloat16 else value).detach().cpu().numpy()
        for name, value in module.state_dict().items()
    }
    maps = calibrate(module, batches, kind=args.kind, output=args.output_metric or "mse",
                     **options)  # type: ignore[arg-type]
    return maps, tensors


def _onnx_maps(
    args: argparse.Namespace, options: dict[str, int | str]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(maps, the graph's tensors as EncoderApp reads them) for ``--model-file``."""
    from ..calibrate_onnx import calibrate_onnx, read_inputs
    from ..onnxio import read_onnx

    tensors = read_onnx(args.model_file)[0]
    if args.synthetic is not None:
        from ..synthetic import onnx_inputs, parse_range, parse_shape

        shapes = dict(parse_shape(text) for text in args.input_shape or ())
        value_range = parse_range(args.input_range) if args.input_range else None
        inputs = onnx_inputs(args.model_file, args.synthetic, shapes=shapes,
                             value_range=value_range)
    else:
        inputs = read_inputs(args.inputs)
    samples = options.pop("samples", None)
    maps = calibrate_onnx(args.model_file, inputs, kind=args.kind,
                          output=args.output_metric or "mse", output_name=args.output_name,
                          batch_size=args.batch_size, samples=samples,  # type: ignore[arg-type]
                          **options)  # type: ignore[arg-type]
    return maps, tensors


def _model_maps(
    args: argparse.Namespace, options: dict[str, int | str]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    from ..ce.models import get_adapter

    adapter = get_adapter(args.model)
    adapter.ensure_available()
    tensors = read_model(args.input) if args.input else adapter.load()
    return adapter.importance(tensors, args.kind, **options), tensors


def _report(args: argparse.Namespace, out: dict[str, np.ndarray],
            tensors: dict[str, np.ndarray], seconds: float) -> None:
    floats = {n: v for n, v in tensors.items() if np.asarray(v).dtype.kind == "f"}
    mapped = sum(int(np.prod(tensors[name].shape)) for name in out)
    total = sum(int(np.asarray(v).size) for v in floats.values())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    what = args.model or args.torch or args.model_file
    print(
        f"{PROG}: wrote {escape_text(args.output)}: {args.kind} maps of {len(out)} tensors "
        f"of {escape_text(what)} ({mapped / max(total, 1):.1%} of its {total} float "
        f"parameters), {seconds:.1f} s, peak memory {peak:.0f} MiB"
    )
    unmapped = [name for name in floats if name not in out]
    if unmapped:
        shown = ", ".join(display_name(n) for n in unmapped[:LISTED])
        more = f" ... ({len(unmapped)} in all)" if len(unmapped) > LISTED else ""
        print(f"{PROG}: {len(unmapped)} float tensor(s) without a map (weighted 1 by the "
              f"encoder): {shown}{more}")
    zero = [name for name, value in out.items() if not np.any(value)]
    if zero:
        print(
            f"{PROG}: {len(zero)} map(s) are zero (no path to the scored output): "
            f"{', '.join(display_name(n) for n in zero[:6])}{' ...' if len(zero) > 6 else ''}"
        )


def _main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    problems = _file_problems(args)
    if problems:
        raise ConfigError("; ".join(problems))
    options = _options(args)
    start = time.perf_counter()
    if args.torch:
        maps, tensors = _torch_maps(args, options)
    elif args.model_file:
        maps, tensors = _onnx_maps(args, options)
    else:
        maps, tensors = _model_maps(args, options)
    seconds = time.perf_counter() - start
    out = {}
    for name in tensors:  # the model's tensor order
        if name in maps:
            value = np.asarray(maps[name], dtype=np.float32)
            if not np.all(np.isfinite(value)):
                raise NntmError(f"the map of {name!r} is not finite: nothing written")
            out[name] = np.ascontiguousarray(value)
    write_model(args.output, out, make_parents=True)
    _report(args, out, tensors, seconds)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_app(PROG, _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
