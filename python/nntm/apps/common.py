"""What the apps share: error handling, number formatting, atomic file writes."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence

from ..errors import NntmError
from ..modelio import _atomic_write


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
    """Write a bitstream through a temporary file, so no half-written file is left."""
    _atomic_write(path, lambda f: f.write(data))
