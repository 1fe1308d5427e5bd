"""What the apps share: error handling, number formatting, atomic file writes."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence

from ..errors import NntmError
from ..modelio import FORMATS, WRITE_FORMATS, _atomic_write

#: extensions of the model formats the apps write, from nntm.modelio
WRITE_EXTENSIONS = tuple(ext for ext, fmt in FORMATS.items() if fmt in WRITE_FORMATS)


def run_app(prog: str, body: Callable[[Sequence[str]], int], argv: Sequence[str] | None) -> int:
    """Run an app body; print NntmErrors as `prog: error: ...` and return 1."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return body(args)
    except NntmError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def fmt_db(value: float) -> str:
    if math.isinf(value):
        return "   inf" if value > 0 else "  -inf"
    return f"{value:6.2f}"


def fmt_shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) if shape else "scalar"


def write_bitstream(path: str, data: bytes) -> None:
    """Write a bitstream through a temporary file, so no half-written file is left.

    A missing folder of ``path`` is created, as for every output of the apps.
    """
    _atomic_write(path, lambda f: f.write(data), what="bitstream file", make_parents=True)


def input_problem(key: str, path: str) -> str | None:
    """Why an input file named by option ``key`` cannot be read, or None."""
    if os.path.isdir(path):
        return f"{key} '{path}' is a directory, not a file"
    if not os.path.isfile(path):
        return f"{key} '{path}' does not exist"
    return None


def output_problem(key: str, path: str) -> str | None:
    """Why option ``key`` cannot name an output file, or None."""
    if os.path.isdir(path):
        return f"{key} '{path}' is a directory; name a file"
    # a missing folder is created when the output is written; one that exists as a file cannot
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        return f"{key} '{path}': '{folder}' is not a folder"
    return None


def _same_file(a: str, b: str) -> bool:
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def collision_problems(inputs: dict[str, str], outputs: dict[str, str]) -> list[str]:
    """Outputs that would overwrite an input or each other (also through links)."""
    problems = []
    outs = [(k, p) for k, p in outputs.items() if p]
    for okey, opath in outs:
        for ikey, ipath in inputs.items():
            if ipath and _same_file(opath, ipath):
                problems.append(f"{okey} '{opath}' is the same file as {ikey} '{ipath}': "
                                "it would destroy the input; name another output")
    for i, (k1, p1) in enumerate(outs):
        for k2, p2 in outs[i + 1:]:
            if _same_file(p1, p2):
                problems.append(f"{k1} '{p1}' and {k2} '{p2}' are the same file")
    return problems
