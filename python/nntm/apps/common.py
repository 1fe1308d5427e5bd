"""What the apps share: error handling, safe name display, number formatting, file writes."""

from __future__ import annotations

import io
import math
import os
import sys
import unicodedata
from collections.abc import Callable, Iterable, Sequence

from ..errors import ConfigError, NntmError
from ..modelio import FORMATS, WRITE_FORMATS, _atomic_write

#: extensions of the model formats the apps write, from nntm.modelio
WRITE_EXTENSIONS = tuple(ext for ext, fmt in FORMATS.items() if fmt in WRITE_FORMATS)


#: ELLIPSIS marks where display_name cut a name
ELLIPSIS = "\u2026"

# characters that are never printed as they are: C0/C1 controls (ESC, CSI, BEL, line
# breaks, tabs), format and bidi controls (U+202E, zero-width characters, BOM), lone
# surrogates (which cannot even be encoded) and the line/paragraph separators
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(ch: str) -> str:
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def escape_text(text: str) -> str:
    """``text`` with every control, format/bidi control and separator escaped visibly.

    Escapes are written as in a Python string literal (``\\x1b``, ``\\n``, ``\\u202e``);
    every other character, backslashes included, is kept, so that ordinary names and
    paths print unchanged.
    """
    if text.isascii() and text.isprintable():
        return text
    return "".join(_escape_char(ch) if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch
                   for ch in text)


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cc", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def text_width(text: str) -> int:
    """The terminal columns ``text`` takes: wide (CJK, emoji) 2, combining marks 0."""
    if text.isascii():
        return len(text)
    return sum(_char_width(ch) for ch in text)


def _take(chars: Iterable[str], budget: int) -> list[str]:
    """The leading characters of ``chars`` that fit in ``budget`` columns."""
    out: list[str] = []
    for ch in chars:
        budget -= _char_width(ch)
        if budget < 0:
            break
        out.append(ch)
    return out


def fit_text(text: str, width: int) -> str:
    """``text`` if it fits in ``width`` columns, else cut in the middle with an ellipsis.

    Both ends are kept (a tensor name's prefix and its suffix such as ``.weight``);
    the result takes at most ``width`` columns.
    """
    if text_width(text) <= width:
        return text
    if width < 1:
        return ""
    head = _take(text, (width - 1) // 2)
    tail = _take(reversed(text), width - 1 - text_width("".join(head)))[::-1]
    while tail and _char_width(tail[0]) == 0:  # no combining mark on the ellipsis
        tail.pop(0)
    return "".join(head) + ELLIPSIS + "".join(tail)


def display_name(name: str, width: int | None = None) -> str:
    """A name from a model file or a bitstream, safe to print.

    Controls and bidi overrides are escaped (:func:`escape_text`); with ``width``
    the name is cut with an ellipsis to at most that many columns (:func:`fit_text`).
    """
    text = escape_text(name)
    return text if width is None else fit_text(text, width)


def pad(text: str, width: int, align: str = "<") -> str:
    """``text`` padded with spaces to ``width`` columns (``align`` "<" or ">")."""
    fill = " " * max(width - text_width(text), 0)
    return text + fill if align == "<" else fill + text


def name_column(names: Iterable[str], minimum: int, maximum: int) -> int:
    """The width of a table's name column: the widest displayed name, within the bounds."""
    widest = max((text_width(escape_text(n)) for n in names), default=0)
    return min(max(widest, minimum), maximum)


def error_text(exc: NntmError) -> str:
    """The message of ``exc`` with its controls escaped.

    The problem lists of a ConfigError ("N configuration problems:\\n  ...") keep
    their line breaks before an indented item; every other line break is escaped,
    so a name in a message cannot start a line of its own.
    """
    text = str(exc)
    if not isinstance(exc, ConfigError):
        return escape_text(text)
    parts = text.split("\n")
    out = [escape_text(parts[0])]
    for part in parts[1:]:
        if part.startswith("  "):
            out.append("\n" + escape_text(part))
        else:
            out[-1] += "\\n" + escape_text(part)
    return "".join(out)


def _tolerant_streams() -> None:
    """Print what a stream's encoding cannot carry as escapes instead of failing."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")


def run_app(prog: str, body: Callable[[Sequence[str]], int], argv: Sequence[str] | None) -> int:
    """Run an app body; print NntmErrors as `prog: error: ...` and return 1.

    The message is printed through :func:`error_text`, so a tensor name from a
    bitstream cannot put control sequences on the terminal.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    _tolerant_streams()
    try:
        return body(args)
    except NntmError as exc:
        print(f"{prog}: error: {error_text(exc)}", file=sys.stderr)
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
