"""Names the apps print (issue #19, item 4): escaped controls, full or ellipsized names in
aligned columns, and the coding parameters in readable lines."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from nntm import hls
from nntm.apps import common, conformance, decoder, encoder
from nntm.config import Config
from nntm.errors import BitstreamError, ConfigError
from nntm.modelio import write_model
from nntm.options import ENCODER_OPTIONS

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CFG = ROOT / "cfg" / "encoder_default.cfg"

# hostile names: each with the escaped form the apps must print instead
HOSTILE = {
    "clear\x1b[2J.weight": "clear\\x1b[2J.weight",
    "title\x1b]0;pwned\x07.bias": "title\\x1b]0;pwned\\x07.bias",
    "line\nbreak.weight": "line\\nbreak.weight",
    "ret\rurn\ttab.bias": "ret\\rurn\\ttab.bias",
    "rtl\u202egpj.exe": "rtl\\u202egpj.exe",
    "csi\x9b31m.sep\u2028x": "csi\\x9b31m.sep\\u2028x",
}


def run(main: Callable[[Sequence[str]], int], argv: Sequence[str]) -> int:
    try:
        return main(list(argv))
    except SystemExit as exc:
        return 0 if exc.code is None else int(exc.code) if isinstance(exc.code, int) else 1


def unsafe_chars(text: str) -> set[str]:
    """Characters of the output that must never reach a terminal (line ends aside)."""
    return {ch for ch in text
            if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp")}


def columns(text: str) -> int:
    """Terminal columns, independently of nntm: wide 2, combining 0, others 1."""
    return sum(0 if unicodedata.combining(ch) else
               2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def model(names: Sequence[str]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {n: rng.normal(0.0, 0.1, (4, 6) if i % 2 == 0 else (6,)).astype(np.float32)
            for i, n in enumerate(names)}


# ---- the helpers --------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "shown"), [*HOSTILE.items(), ("a\x00b\x7fc", "a\\x00b\\x7fc"),
                                            ("bom\ufeff", "bom\\ufeff"),
                                            ("zw\u200bj", "zw\\u200bj")])
def test_escape_text_escapes_controls_visibly(raw: str, shown: str) -> None:
    assert common.escape_text(raw) == shown
    assert common.display_name(raw) == shown
    assert not unsafe_chars(shown)


@pytest.mark.parametrize("name", ["features.0.weight", "C:\\models\\w", "层.权重", "e\u0301t\u00e9",
                                  "🙂.bias", "a b"])
def test_printable_names_are_unchanged(name: str) -> None:
    assert common.display_name(name) == name


def test_text_width_counts_terminal_columns() -> None:
    assert common.text_width("abc") == 3
    assert common.text_width("层权重") == 6
    assert common.text_width("e\u0301") == 1
    assert common.text_width("🙂") == 2


@pytest.mark.parametrize("name", ["model.layers.23.self_attn.q_proj.weight", "层" * 30 + ".weight",
                                  "x" * 5 + "\u0301" * 3 + "y" * 60])
@pytest.mark.parametrize("width", [9, 20, 21, 34])
def test_a_long_name_is_cut_in_the_middle_to_the_width(name: str, width: int) -> None:
    shown = common.display_name(name, width)
    assert common.ELLIPSIS in shown
    assert width - 1 <= columns(shown) <= width  # a wide character may leave one column
    head, tail = shown.split(common.ELLIPSIS)
    assert name.startswith(head) and name.endswith(tail) and head and tail
    assert columns(common.pad(shown, width)) == width
    assert columns(common.pad(shown, width, ">")) == width
    assert common.display_name(name, 200) == name  # short enough: in full


def test_error_text_escapes_names_but_keeps_problem_lists() -> None:
    err = BitstreamError("tensor 'a\nb\x1b[2J': bad\nDecoderApp: all OK")
    assert common.error_text(err) == "tensor 'a\\nb\\x1b[2J': bad\\nDecoderApp: all OK"
    problems = ConfigError("2 configuration problems:\n  QP 'x\x1b' bad\n  RDOQ\nforged")
    assert common.error_text(problems) == (
        "2 configuration problems:\n  QP 'x\\x1b' bad\n  RDOQ\\nforged")


def test_conformance_rows_escape_names() -> None:
    row = conformance._row("BASE\x1b[2J", "10", "1", "1.5", "0.1", "FAIL: tensor 'a\nb'")
    assert not unsafe_chars(row) and "\n" not in row
    assert "BASE\\x1b[2J" in row and "a\\nb" in row


# ---- the apps -----------------------------------------------------------------------------

def test_hostile_names_are_escaped_by_encoder_and_decoder(capsys: pytest.CaptureFixture[str],
                                                          tmp_path: Path) -> None:
    names = ["plain.weight", *HOSTILE]
    path = tmp_path / "evil.safetensors"
    write_model(path, model(names))
    bit = tmp_path / "evil.bit"
    assert run(encoder.main, ["-c", str(DEFAULT_CFG), "-i", str(path), "-b", str(bit)]) == 0
    enc = capsys.readouterr()
    assert run(decoder.main, ["-b", str(bit), "-o", str(tmp_path / "out.safetensors")]) == 0
    dec = capsys.readouterr()
    for out in (enc.out, enc.err, dec.out, dec.err):
        assert not unsafe_chars(out), sorted(map(hex, map(ord, unsafe_chars(out))))
    for raw, shown in HOSTILE.items():
        for out in (enc.out, dec.out):
            assert raw not in out
            # one line per tensor, starting with the escaped name
            assert sum(ln.startswith(shown + " ") for ln in out.splitlines()) == 1, out
    md5_lines = [ln for ln in dec.out.splitlines() if "[MD5:" in ln]
    assert len(md5_lines) == len(names)


def test_hostile_names_in_error_messages_are_escaped(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    raw = "bad\x1b]0;owned\x07\nDecoderApp: all OK\u202e"
    shown = "bad\\x1b]0;owned\\x07\\nDecoderApp: all OK\\u202e"
    # encoder: an EncodeError naming the tensor
    tensors = model(["ok.weight", raw])
    tensors[raw][0] = np.nan
    path = tmp_path / "nan.safetensors"
    write_model(path, tensors)
    assert run(encoder.main, ["-i", str(path), "-b", str(tmp_path / "x.bit")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("EncoderApp: error: ") and shown in err
    assert not unsafe_chars(err) and err.count("\n") == 1
    # decoder: a hash mismatch names the tensor on stdout and in the error
    tensors = {"ok.weight": tensors["ok.weight"], raw: np.array([5], dtype=np.int64)}
    write_model(path, tensors)
    bit = tmp_path / "m.bit"
    assert run(encoder.main, ["-i", str(path), "-b", str(bit), "--Verbose=0"]) == 0
    data = bytearray(bit.read_bytes())
    unit = [u for u in hls.split_units(bytes(data))
            if u.unit_type == hls.UnitType.TENSOR_DATA_UNIT][1]  # the raw int64 tensor
    data[unit.offset + hls.UNIT_HEADER_BYTES + len(unit.payload) - 1] ^= 0x01
    bit.write_bytes(bytes(data))
    assert run(decoder.main, ["-b", str(bit)]) == 1
    captured = capsys.readouterr()
    assert "MD5 mismatch in tensor(s)" in captured.err and shown in captured.err
    assert any(ln.startswith(shown) and "MISMATCH" in ln for ln in captured.out.splitlines())
    for out in (captured.out, captured.err):
        assert not unsafe_chars(out) and raw not in out
    assert captured.err.count("\n") == 1


WIDE_NAMES = ["conv.weight", "层.权重", "🙂.bias", "cafe\u0301.weight",
              "model.decoder.layers.11.encoder_attn.k_proj.weight.with.a.very.long.suffix",
              "层" * 40, "short"]


def test_wide_and_long_names_keep_the_columns_aligned(capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path) -> None:
    path = tmp_path / "wide.safetensors"
    write_model(path, model(WIDE_NAMES))
    bit = tmp_path / "wide.bit"
    assert run(encoder.main, ["-c", str(DEFAULT_CFG), "-i", str(path), "-b", str(bit)]) == 0
    enc = capsys.readouterr().out.splitlines()
    assert run(decoder.main, ["-b", str(bit)]) == 0
    dec = capsys.readouterr().out.splitlines()
    # decoder: "[MD5:" at the same column of every line
    md5_lines = [ln for ln in dec if "[MD5:" in ln]
    assert len(md5_lines) == len(WIDE_NAMES)
    assert len({columns(ln[:ln.index("[MD5:")]) for ln in md5_lines}) == 1, "\n".join(md5_lines)
    # encoder: the header and every tensor line end at the same column (right-aligned numbers)
    header = enc.index(next(ln for ln in enc if ln.startswith("tensor ")))
    table = enc[header:header + 1 + len(WIDE_NAMES)]
    assert len({columns(ln) for ln in table}) == 1, "\n".join(table)
    for lines in (md5_lines, table[1:]):
        shown = [ln.split("  ")[0] for ln in lines]
        for name, text in zip(WIDE_NAMES, shown, strict=True):
            if columns(name) <= 40:  # a short name is printed in full
                assert text.strip() == name
            else:  # a long one is cut in the middle, keeping both ends
                head, tail = text.strip().split(common.ELLIPSIS)
                assert name.startswith(head) and name.endswith(tail), text


def test_coding_params_are_readable_lines_with_every_key(capsys: pytest.CaptureFixture[str],
                                                         tmp_path: Path) -> None:
    assert run(encoder.main, ["-c", str(DEFAULT_CFG), "-b", str(tmp_path / "e.bit"),
                              "--LayerRules=*.weight=linear"]) == 0
    out = capsys.readouterr().out.splitlines()
    start = out.index("Coding params :")
    block = out[start + 1:out.index("", start)]
    assert len(block) >= 8
    assert all(len(ln) <= 120 for ln in block), "\n".join(block)
    keys = [m[1] for ln in block for m in re.finditer(r"(?:^|\s)(\w+)=", ln)]
    expected = [k for k, _ in Config.defaults(ENCODER_OPTIONS).coding_items()]
    assert sorted(keys) == sorted(expected)  # every key, once
    assert "LayerRules=*.weight=linear" in " ".join(block)
    labels = [ln.split(":")[0].strip() for ln in block if re.match(r"  \w", ln)]
    assert "quantization" in labels and "tree" in labels and len(labels) == len(set(labels))


def test_param_lines_put_unknown_keys_in_other_and_wrap() -> None:
    items = [("QP", -20), ("NewKey", "x" * 30), ("OtherKey", 1), ("Third", "y" * 30)]
    lines = encoder.param_lines(items, width=60)
    assert lines[:2] == ["Coding params :", "  quantization : QP=-20"]
    assert lines[2:] == ["  other        : NewKey=" + "x" * 30,
                         " " * 17 + "OtherKey=1",
                         " " * 17 + "Third=" + "y" * 30]
    assert all(len(ln) <= 60 for ln in lines)
