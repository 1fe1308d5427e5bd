"""Configuration: typed option tables, cfg files and the HM-style command line.

A cfg file holds one ``Key : value  # comment`` per line.  Values are layered
like the HM/VTM test models::

    defaults  <  cfg files in the order given (later wins)  <  command line

Everything is driven by one option table (a sequence of :class:`Option`, see
:mod:`nntm.options`): parsing, validation, ``--help`` and the cfg text that
reproduces a configuration.  Validation collects every problem (unknown keys,
bad values, out-of-range values, missing files) and raises one
:class:`~nntm.errors.ConfigError` that lists them all, one per line, each
naming where it came from (``file:line`` or the command line).
"""

from __future__ import annotations

import difflib
import math
import numbers
import os
import re
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from typing import NoReturn

__all__ = [
    "GROUPS",
    "KINDS",
    "Config",
    "Option",
    "Value",
    "format_help",
    "format_value",
    "parse_app_args",
]

#: A typed option value.
Value = int | float | bool | str | tuple[int, ...]

#: The kinds of option.
KINDS = ("int", "float", "bool", "str", "choice", "intlist")
#: The option groups: "app" (file names, app behaviour) and "coding" (what
#: changes the bitstream).
GROUPS = ("app", "coding")

_GROUP_TITLES = {
    "app": "Application options",
    "coding": "Coding options (they change the bitstream)",
}

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_KEY_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_SHORT_RE = re.compile(r"-[A-Za-z]\Z")
_RESERVED_SHORT = frozenset({"-c", "-h"})
_RESERVED_KEYS = frozenset({"config", "help"})

# Where a value came from; these are the phrases used in messages.
_DEFAULT = "default"
_COMMAND_LINE = "command line"


class _BadValue(Exception):
    """Raised by the converters; the message says what was expected."""


@dataclass(frozen=True)
class Option:
    """One configuration option: one row of an option table.

    ``key`` is the CamelCase name used in cfg files and as ``--Key``.
    ``kind`` is one of :data:`KINDS`.  ``minimum``/``maximum`` bound int and
    float values and each item of an intlist (inclusive).  ``choices`` lists
    the values of a "choice" option.  ``group`` is "app" for file names and
    app behaviour, "coding" for what changes the bitstream.  ``short`` is an
    optional short flag such as ``"-i"``.

    The default is converted and checked like any other value when the
    option is defined, so a bad table fails at import time.
    """

    key: str
    kind: str
    default: Value
    help: str
    short: str | None = None
    choices: tuple[str, ...] = ()
    minimum: int | float | None = None
    maximum: int | float | None = None
    group: str = "coding"

    def __post_init__(self) -> None:
        where = f"option {self.key!r}"
        if not isinstance(self.key, str) or not _KEY_RE.match(self.key):
            raise ConfigError(f"{where}: a key is a CamelCase identifier")
        if self.key.lower() in _RESERVED_KEYS:
            raise ConfigError(f"{where}: the key is reserved for the command line")
        if self.kind not in KINDS:
            raise ConfigError(f"{where}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.group not in GROUPS:
            raise ConfigError(f"{where}: group {self.group!r} is not one of {', '.join(GROUPS)}")
        if self.short is not None and (
            not _SHORT_RE.match(self.short) or self.short in _RESERVED_SHORT
        ):
            raise ConfigError(
                f"{where}: short flag {self.short!r} must be '-' and one letter, not -c or -h"
            )
        if "\n" in self.help:
            raise ConfigError(f"{where}: help is one line")
        object.__setattr__(self, "choices", tuple(self.choices))
        if self.kind == "choice":
            if not self.choices or not all(isinstance(c, str) and c for c in self.choices):
                raise ConfigError(f"{where}: a choice option needs a list of non-empty strings")
        elif self.choices:
            raise ConfigError(f"{where}: only a choice option has choices")
        if (self.minimum is not None or self.maximum is not None) and self.kind not in (
            "int",
            "float",
            "intlist",
        ):
            raise ConfigError(f"{where}: only int, float and intlist options have a range")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ConfigError(f"{where}: minimum {self.minimum} > maximum {self.maximum}")
        try:
            default = self._convert(self.default)
        except _BadValue as exc:
            raise ConfigError(f"{where}: bad default {self.default!r}: {exc}") from None
        problem = self._range_problem(default)
        if problem:
            raise ConfigError(f"{where}: default {problem}")
        object.__setattr__(self, "default", default)

    # -- values -------------------------------------------------------------

    def parse(self, raw: object, where: str = "") -> Value:
        """Cfg text or a Python value -> this option's typed value, range checked.

        Raises ConfigError naming the key (and ``where``, e.g. "in x.cfg:3").
        """
        at = f" {where}" if where else ""
        try:
            value = self._convert(raw)
        except _BadValue as exc:
            shown = raw if isinstance(raw, str) else repr(raw)
            raise ConfigError(f"bad value '{shown}' for {self.key}{at}: {exc}") from None
        problem = self._range_problem(value)
        if problem:
            raise ConfigError(f"{self.key}{at}: {problem}")
        return value

    def _convert(self, raw: object) -> Value:
        """Turn cfg text or a Python value into this option's typed value.

        Raises ``_BadValue`` (internal) with what was expected.  Range is not
        checked here: see :meth:`_range_problem`.
        """
        if isinstance(raw, str):
            return self._parse(raw.strip())
        kind = self.kind
        if kind == "int":
            if not isinstance(raw, numbers.Integral) or isinstance(raw, bool):
                raise _BadValue("expected an integer")
            return int(raw)
        if kind == "float":
            if not isinstance(raw, numbers.Real) or isinstance(raw, bool):
                raise _BadValue("expected a number")
            value = float(raw)
            if not math.isfinite(value):
                raise _BadValue("expected a finite number")
            return value
        if kind == "bool":
            if isinstance(raw, bool) or getattr(getattr(raw, "dtype", None), "kind", "") == "b":
                return bool(raw)  # a Python or numpy bool
            if isinstance(raw, numbers.Integral) and int(raw) in (0, 1):
                return bool(raw)
            raise _BadValue("expected a bool (0/1, true/false, yes/no, on/off)")
        if kind == "str":
            if isinstance(raw, os.PathLike):
                path = os.fspath(raw)
                if isinstance(path, str):
                    return path
            raise _BadValue("expected a string")
        if kind == "choice":
            raise _BadValue(f"expected one of {', '.join(self.choices)}")
        # intlist
        if isinstance(raw, numbers.Integral) and not isinstance(raw, bool):
            return (int(raw),)
        if isinstance(raw, (list, tuple)) or type(raw).__name__ == "ndarray":
            items = list(raw)  # type: ignore[call-overload]
            if all(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in items):
                return tuple(int(x) for x in items)
        raise _BadValue("expected a list of integers")

    def _parse(self, text: str) -> Value:
        kind = self.kind
        if kind == "int":
            return _parse_int(text)
        if kind == "float":
            try:
                value = float(text)
            except ValueError:
                raise _BadValue("expected a number") from None
            if not math.isfinite(value):
                raise _BadValue("expected a finite number")
            return value
        if kind == "bool":
            low = text.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise _BadValue("expected a bool (0/1, true/false, yes/no, on/off)")
        if kind == "str":
            return text
        if kind == "choice":
            for choice in self.choices:
                if text.lower() == choice.lower():
                    return choice
            raise _BadValue(f"expected one of {', '.join(self.choices)}")
        # intlist: space- or comma-separated
        parts = [p for p in re.split(r"[\s,]+", text) if p]
        return tuple(_parse_int(p, "expected a list of integers") for p in parts)

    def _range_problem(self, value: Value) -> str | None:
        """Return a message if ``value`` is outside minimum..maximum, else None."""
        if self.minimum is None and self.maximum is None:
            return None
        items: Iterable[Value] = value if isinstance(value, tuple) else (value,)
        for item in items:
            assert isinstance(item, (int, float))
            if (self.minimum is not None and item < self.minimum) or (
                self.maximum is not None and item > self.maximum
            ):
                return f"{format_value(item)} is out of range {self.range_text()}"
        return None

    def range_text(self) -> str:
        """The range as text, e.g. "-128..127", ">= 0"; "" when unbounded."""
        lo, hi = self.minimum, self.maximum
        if lo is not None and hi is not None:
            return f"{_num(lo)}..{_num(hi)}"
        if lo is not None:
            return f">= {_num(lo)}"
        if hi is not None:
            return f"<= {_num(hi)}"
        return ""


def _num(x: float) -> str:
    return format_value(x)


def _parse_int(text: str, expected: str = "expected an integer") -> int:
    try:
        return int(text, 10)
    except ValueError:
        pass
    try:
        return int(text, 0)  # 0x.., 0b.., 0o..
    except ValueError:
        raise _BadValue(expected) from None


def format_value(value: Value) -> str:
    """Format a typed value as cfg text (bool as 1/0, intlist space-separated)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _check_table(table: Sequence[Option]) -> dict[str, Option]:
    by_key: dict[str, Option] = {}
    shorts: set[str] = set()
    for opt in table:
        if not isinstance(opt, Option):
            raise ConfigError(f"option table: {opt!r} is not an Option")
        if opt.key in by_key:
            raise ConfigError(f"option table: key {opt.key!r} appears twice")
        if opt.short is not None:
            if opt.short in shorts:
                raise ConfigError(f"option table: short flag {opt.short} appears twice")
            shorts.add(opt.short)
        by_key[opt.key] = opt
    return by_key


def _default_table() -> Sequence[Option]:
    # nntm.options imports this module, so the default table is looked up late.
    from .options import ENCODER_OPTIONS

    return ENCODER_OPTIONS


def _suggest(key: str, keys: Iterable[str]) -> str | None:
    """The nearest valid key, if one is close enough."""
    lowered: dict[str, str] = {}
    for k in keys:
        lowered.setdefault(k.lower(), k)
    if key.lower() in lowered:
        return lowered[key.lower()]
    match = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


def _where(source: str) -> str:
    """The phrase for a source in a message: "in foo.cfg:3", "on the command line"."""
    if source == _COMMAND_LINE:
        return "on the command line"
    return f"in {source}"


def _unknown_key(key: str, source: str, keys: Iterable[str], prefix: str = "") -> str:
    msg = f"unknown key '{prefix}{key}' {_where(source)}"
    near = _suggest(key, keys)
    if near is not None:
        msg += f" (did you mean '{prefix}{near}'?)"
    return msg


def _raise_problems(problems: Sequence[str]) -> NoReturn:
    if len(problems) == 1:
        raise ConfigError(problems[0])
    raise ConfigError(f"{len(problems)} configuration problems:\n  " + "\n  ".join(problems))


# An assignment before validation: (key, raw value, source).  In a list of
# items, a plain str is a problem found while reading, kept in its place so that
# problems are reported in file and line order.
_Assignment = tuple[str, object, str]
_Item = _Assignment | str


def _read_cfg_file(path: str | os.PathLike[str]) -> list[_Item]:
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return [f"cannot read cfg file '{name}': no such file"]
    except (OSError, UnicodeDecodeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return [f"cannot read cfg file '{name}': {detail}"]
    return _cfg_items(text, name)


def _cfg_items(text: str, name: str) -> list[_Item]:
    """Split cfg text into ``(key, value text, "name:line")`` assignments and problems."""
    out: list[_Item] = []
    first_line: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        source = f"{name}:{lineno}"
        if ":" not in body:
            out.append(f"{source}: expected 'Key : value', got {body!r}")
            continue
        key, value = body.split(":", 1)
        key = key.strip()
        if not key:
            out.append(f"{source}: missing key before ':'")
            continue
        if key in first_line:
            out.append(f"{source}: key '{key}' is given twice in this file (first at line "
                       f"{first_line[key]}); give each key once")
            continue
        first_line[key] = lineno
        out.append((key, value.strip(), source))
    return out


class Config(Mapping[str, Value]):
    """The typed values of one option table; immutable.

    Make one with :meth:`from_files`, :meth:`defaults` or :func:`parse_app_args`;
    derive another with :meth:`replace`.  It is a read-only mapping from key
    to typed value (int, float, bool, str or tuple of int) in table order;
    two configs are equal when they hold the same keys and values.
    """

    __slots__ = ("_options", "_sources", "_table", "_values")

    _table: tuple[Option, ...]
    _options: dict[str, Option]
    _values: dict[str, Value]
    _sources: dict[str, str]

    def __init__(self) -> None:
        raise TypeError("use Config.from_files(), Config.defaults() or parse_app_args()")

    # -- construction -------------------------------------------------------

    @classmethod
    def defaults(cls, table: Sequence[Option] | None = None) -> Config:
        """The configuration with every option at its default."""
        return cls.from_files((), None, table)

    @classmethod
    def from_files(
        cls,
        files: Sequence[str | os.PathLike[str]] = (),
        overrides: Mapping[str, object] | None = None,
        table: Sequence[Option] | None = None,
    ) -> Config:
        """Layer defaults < ``files`` (in order, later wins) < ``overrides``.

        ``table`` defaults to :data:`nntm.options.ENCODER_OPTIONS`.  Override
        values may be cfg text (str) or typed Python values; they count as
        given on the command line.  Raises one ConfigError listing every
        problem.
        """
        if isinstance(files, (str, os.PathLike)):
            files = [files]
        items: list[_Item] = []
        for path in files:
            items.extend(_read_cfg_file(path))
        items.extend((k, v, _COMMAND_LINE) for k, v in (overrides or {}).items())
        return cls._build(table, items)

    @classmethod
    def from_text(
        cls,
        text: str,
        name: str = "<text>",
        overrides: Mapping[str, object] | None = None,
        table: Sequence[Option] | None = None,
    ) -> Config:
        """Like :meth:`from_files` with one cfg file given as text, called ``name``."""
        items = _cfg_items(text, name)
        items.extend((k, v, _COMMAND_LINE) for k, v in (overrides or {}).items())
        return cls._build(table, items)

    @classmethod
    def _build(
        cls,
        table: Sequence[Option] | None,
        items: Sequence[_Item],
        base: Config | None = None,
        problems_out: list[str] | None = None,
    ) -> Config:
        if table is None:
            table = base._table if base is not None else _default_table()
        table = tuple(table)
        options = _check_table(table)
        if base is not None:
            values = dict(base._values)
            sources = dict(base._sources)
        else:
            values = {opt.key: opt.default for opt in table}
            sources = {opt.key: _DEFAULT for opt in table}
        problems: list[str] = []
        for item in items:
            if isinstance(item, str):
                problems.append(item)
                continue
            key, raw, source = item
            if not isinstance(key, str) or key not in options:
                problems.append(_unknown_key(str(key), source, options))
                continue
            try:
                value = options[key].parse(raw, _where(source))
            except ConfigError as exc:
                problems.append(str(exc))
                continue
            values[key] = value
            sources[key] = source
        if problems and problems_out is None:
            _raise_problems(problems)
        if problems_out is not None:
            problems_out.extend(problems)
        self = object.__new__(cls)
        self._table = table
        self._options = options
        self._values = values
        self._sources = sources
        return self

    def replace(self, **changes: object) -> Config:
        """A new, validated Config with ``changes`` (cfg text or typed values)."""
        items: list[_Item] = [(k, v, "replace()") for k, v in changes.items()]
        return type(self)._build(None, items, base=self)

    # -- mapping ------------------------------------------------------------

    def __getitem__(self, key: str) -> Value:
        try:
            return self._values[key]
        except KeyError:
            near = _suggest(key, self._values) if isinstance(key, str) else None
            hint = f" (did you mean '{near}'?)" if near else ""
            raise KeyError(f"unknown key {key!r}{hint}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __hash__(self) -> int:
        return hash(tuple(self._values.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Config):
            return self._values == other._values and list(self._values) == list(other._values)
        if isinstance(other, Mapping):
            return self._values == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"Config({body})"

    # -- extras -------------------------------------------------------------

    @property
    def table(self) -> tuple[Option, ...]:
        """The option table this config was built from."""
        return self._table

    def option(self, key: str) -> Option:
        """The :class:`Option` of ``key``."""
        try:
            return self._options[key]
        except KeyError:
            near = _suggest(key, self._options)
            hint = f" (did you mean '{near}'?)" if near else ""
            raise KeyError(f"unknown key {key!r}{hint}") from None

    def source(self, key: str) -> str:
        """Where the value of ``key`` came from.

        One of "default", "file:line", "command line" or "replace()".
        """
        self.option(key)
        return self._sources[key]

    def coding_items(self) -> list[tuple[str, Value]]:
        """The (key, value) pairs of group "coding", in table order.

        These are the options that change the bitstream.
        """
        return [(o.key, self._values[o.key]) for o in self._table if o.group == "coding"]

    def to_cfg_text(self) -> str:
        """A cfg file that reproduces this config.

        Every key, grouped, with its help as a comment.

        Raises ConfigError for a str value that a cfg line cannot carry
        (one holding '#', a line break, or leading/trailing spaces).
        """
        width = max((len(o.key) for o in self._table), default=0)
        lines = ["# NNTM configuration (every key; generated)"]
        for group in GROUPS:
            opts = [o for o in self._table if o.group == group]
            if not opts:
                continue
            lines.append("")
            lines.append(f"# {_GROUP_TITLES[group]}")
            for opt in opts:
                text = format_value(self._values[opt.key])
                if "#" in text or "\n" in text or "\r" in text or text != text.strip():
                    raise ConfigError(
                        f"value {text!r} of {opt.key} cannot be written to a cfg file"
                    )
                entry = f"{opt.key:<{width}} : {text}"
                lines.append(f"{entry:<{width + 24}} # {opt.help}".rstrip())
        return "\n".join(lines) + "\n"


# -- command line ---------------------------------------------------------------


def _kind_text(opt: Option) -> str:
    if opt.kind == "choice":
        return "|".join(opt.choices)
    return {
        "int": "INT",
        "float": "FLOAT",
        "bool": "0|1",
        "str": "STR",
        "intlist": "INTS",
    }[opt.kind]


def format_help(table: Sequence[Option], prog: str, description: str) -> str:
    """The ``--help`` text generated from the option table."""
    _check_table(table)
    width = 79
    col = 28
    indent = " " * col
    out = [
        f"usage: {prog} [-h] [-c FILE]... [--Key=value]...",
        "",
    ]
    if description:
        out.extend(textwrap.wrap(description, width))
        out.append("")
    out.extend(
        textwrap.wrap(
            "Values are layered: defaults, then each cfg file given with -c in order "
            "(later files win), then --Key=value on the command line "
            "(wins over everything). "
            "A cfg file holds one 'Key : value  # comment' per line.",
            width,
        )
    )

    def entry(left: str, text: str) -> list[str]:
        left = "  " + left
        if len(left) <= col - 2:
            first = left.ljust(col)
            return textwrap.wrap(text, width, initial_indent=first, subsequent_indent=indent)
        return [
            left,
            *textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent),
        ]

    out.append("")
    out.append("General:")
    out.extend(entry("-h, --help", "print this help and exit"))
    out.extend(entry("-c FILE, --config=FILE", "read a cfg file; repeat to layer several"))
    for group in GROUPS:
        opts = [o for o in table if o.group == group]
        if not opts:
            continue
        out.append("")
        out.append(f"{_GROUP_TITLES[group]}:")
        for opt in opts:
            flag = f"--{opt.key}={_kind_text(opt)}"
            left = f"{opt.short}, {flag}" if opt.short else f"    {flag}"
            extra = []
            rng = opt.range_text()
            if rng:
                extra.append(f"range {rng}")
            default = format_value(opt.default)
            extra.append(f"default {default}" if default != "" else 'default ""')
            out.extend(entry(left, f"{opt.help} [{'; '.join(extra)}]"))
    return "\n".join(out) + "\n"


def parse_app_args(
    argv: Sequence[str],
    table: Sequence[Option],
    prog: str,
    description: str,
    checks: Callable[[Config], list[str]] | None = None,
) -> tuple[Config, list[str]]:
    """Parse an HM-style command line; return the Config and the cfg files used.

    ``checks`` (the app's own validation: files that must exist, ...) runs on
    the values that did parse, so that its problems are reported together with
    the option problems, in one ConfigError.

    Accepts ``-c FILE`` / ``--config=FILE`` (repeatable, layered in order),
    ``--Key=value`` or ``--Key value`` for every option (a bool may be given
    bare, ``--RDOQ``, meaning 1), and the options' short flags (``-i x``).
    ``-h``/``--help`` prints the help to stdout and raises SystemExit(0).
    Every problem (unknown options with the nearest key, positional
    arguments, missing values, bad values, unreadable cfg files) is reported
    in one ConfigError.
    """
    options = _check_table(table)
    shorts = {o.short: o for o in table if o.short}
    files: list[str] = []
    # assignments and problems in command-line order
    cmdline: list[_Item] = []
    args = list(argv)
    i = 0

    def next_value(flag: str) -> str | None:
        nonlocal i
        if i + 1 < len(args):
            i += 1
            return args[i]
        cmdline.append(f"option {flag} on the command line needs a value")
        return None

    while i < len(args):
        tok = args[i]
        if tok in ("-h", "--help"):
            sys.stdout.write(format_help(table, prog, description))
            sys.stdout.flush()
            raise SystemExit(0)
        if tok in ("-c", "--config"):
            value = next_value(tok)
            if value is not None:
                files.append(value)
        elif tok.startswith("--config="):
            files.append(tok[len("--config=") :])
        elif tok.startswith("--") and len(tok) > 2:
            body = tok[2:]
            if "=" in body:
                key, value = body.split("=", 1)
                if key in options:
                    cmdline.append((key, value, _COMMAND_LINE))
                else:
                    cmdline.append(_unknown_key(key, _COMMAND_LINE, options, "--"))
            elif body in options:
                opt = options[body]
                nxt = args[i + 1] if i + 1 < len(args) else None
                if opt.kind == "bool" and (
                    nxt is None or (nxt.startswith("-") and not _looks_numeric(nxt))
                ):
                    cmdline.append((body, True, _COMMAND_LINE))
                else:
                    value = next_value(tok)
                    if value is not None:
                        cmdline.append((body, value, _COMMAND_LINE))
            else:
                cmdline.append(_unknown_key(body, _COMMAND_LINE, options, "--"))
                # skip what looks like its value: do not report it as positional
                if i + 1 < len(args) and not args[i + 1].startswith("-"):
                    i += 1
        elif tok.startswith("-") and len(tok) > 1 and not _looks_numeric(tok):
            flag, eq, inline = tok.partition("=")
            if flag == "-c":
                files.append(inline)
            elif flag in shorts:
                if eq:
                    cmdline.append((shorts[flag].key, inline, _COMMAND_LINE))
                else:
                    value = next_value(flag)
                    if value is not None:
                        cmdline.append((shorts[flag].key, value, _COMMAND_LINE))
            else:
                near = _suggest(flag.lstrip("-"), options)
                hint = f" (did you mean '--{near}'?)" if near else ""
                short_list = ", ".join(sorted(shorts)) or "none"
                cmdline.append(
                    f"unknown option '{flag}' on the command line{hint}; "
                    f"short flags: -c, -h, {short_list}"
                )
        else:
            cmdline.append(
                f"unexpected argument {tok!r} on the command line "
                "(options are --Key=value; cfg files go after -c)"
            )
        i += 1
    items: list[_Item] = []
    for path in files:
        items.extend(_read_cfg_file(path))
    items.extend(cmdline)
    problems: list[str] = []
    config = Config._build(table, items, problems_out=problems)
    if checks is not None:
        problems.extend(checks(config))
    if problems:
        _raise_problems(problems)
    return config, files


def _looks_numeric(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True
