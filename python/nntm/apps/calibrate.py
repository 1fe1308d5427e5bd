"""nntm-calibrate: write an importance file for a CE model, for EncoderApp --ImportanceFile.

    nntm-calibrate --model minilm --kind sensitivity -o imp.safetensors
    nntm-calibrate --model mobilenetv2 --kind activation -o imp.npz [-i model.safetensors]

Measures importance maps (docs/importance.md, docs/calibration.md) on the
model adapter's calibration inputs, which are disjoint from the inputs its CE
metrics are evaluated on:

* ``activation``: the mean squared input of each input channel of every conv
  and linear weight (a vector per weight), and for embedding tables the
  smoothed frequency of each row (a map of the table's shape);
* ``sensitivity``: that input energy times the output sensitivity of each
  output channel (Hutchinson probes through the network), each layer scaled to
  its estimated output error, a float32 map of each weight's shape.

The file holds one float32 entry per mapped tensor, named like the model's
tensors (``.safetensors`` or ``.npz``, by the output's extension).  With ``-i``
the maps are measured through the network built from that file's tensors (same
names and shapes as the CE model) instead of the original weights.  Needs the
CE dependencies (``bash scripts/install_ce.sh``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError
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
    "Write an importance file (docs/importance.md) for a CE model, measured on the model "
    "adapter's calibration inputs (disjoint from its evaluation inputs; docs/calibration.md), "
    "for EncoderApp --ImportanceFile. Kinds: activation (mean squared input per input channel; "
    "row frequency for embeddings) or sensitivity (input energy x output sensitivity per "
    "weight, each layer scaled to its estimated output error)."
)


def _parser() -> argparse.ArgumentParser:
    from ..ce.models import ADAPTERS
    from ..ce.models.base import IMPORTANCE_KINDS, SENSITIVITY_FORMS

    ap = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    ap.add_argument("--model", "-m", required=True, choices=tuple(ADAPTERS), help="CE model")
    ap.add_argument(
        "--kind",
        "-k",
        default="sensitivity",
        choices=IMPORTANCE_KINDS,
        help="activation (input energy) or sensitivity (input energy x output sensitivity)",
    )
    ap.add_argument("-o", "--output", required=True, help="importance file (.safetensors/.npz)")
    ap.add_argument("-i", "--input", help="model file to measure through (default: the original)")
    ap.add_argument("--probes", type=int, help="sensitivity: probes per sample (adapter default)")
    ap.add_argument("--samples", type=int, help="use only the first N calibration samples")
    ap.add_argument("--seed", type=int, default=0, help="sensitivity: seed of the probes")
    ap.add_argument(
        "--form",
        choices=SENSITIVITY_FORMS,
        help="sensitivity: factored (default), diagonal or marginal (docs/calibration.md)",
    )
    return ap


def _main(argv: Sequence[str]) -> int:
    from ..ce.models import get_adapter

    args = _parser().parse_args(list(argv))
    problems = []
    if not args.output.lower().endswith((".safetensors", ".npz")):
        problems.append(f"output '{args.output}': use a .safetensors or .npz name")
    problem = output_problem("-o", args.output)
    if problem:
        problems.append(problem)
    if args.input:
        problem = input_problem("-i", args.input)
        if problem:
            problems.append(problem)
        problems += collision_problems({"-i": args.input}, {"-o": args.output})
    if problems:
        raise ConfigError("; ".join(problems))
    adapter = get_adapter(args.model)
    adapter.ensure_available()
    tensors = read_model(args.input) if args.input else adapter.load()
    start = time.perf_counter()
    options: dict[str, int | str] = {"seed": args.seed}
    if args.form is not None:
        options["form"] = args.form
    for key in ("probes", "samples"):
        value = getattr(args, key)
        if value is not None:
            if value < 1:
                raise ConfigError(f"--{key} must be at least 1, not {value}")
            options[key] = value
    if args.kind == "activation" and len(options) > 1:
        raise ConfigError("--probes, --samples and --form apply to --kind sensitivity only")
    maps = adapter.importance(tensors, args.kind, **options)
    seconds = time.perf_counter() - start
    out = {}
    for name in tensors:  # the model's tensor order
        if name in maps:
            value = np.asarray(maps[name], dtype=np.float32)
            out[name] = np.ascontiguousarray(value)
    write_model(args.output, out, make_parents=True)
    mapped = sum(int(np.prod(tensors[name].shape)) for name in out)
    floats = sum(v.size for v in tensors.values() if np.asarray(v).dtype.kind == "f")
    zero = [name for name, value in out.items() if not np.any(value)]
    print(
        f"{PROG}: wrote {escape_text(args.output)}: {args.kind} maps of {len(out)} tensors "
        f"of {args.model} "
        f"({mapped / max(floats, 1):.1%} of its float parameters), {seconds:.1f} s"
    )
    if zero:
        print(
            f"{PROG}: {len(zero)} map(s) are zero (no path to the scored output): "
            f"{', '.join(display_name(n) for n in zero[:6])}{' ...' if len(zero) > 6 else ''}"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_app(PROG, _main, argv)
