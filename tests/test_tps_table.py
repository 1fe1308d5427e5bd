"""The C stream reader's table of QUANTIZED tensor parameter set elements
(lib/decoder/tps_syntax.h) against the syntax table of docs/bitstream.md (clause 3.4):
the same elements, in the same order, with the same descriptors and format versions."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DESCRIPTORS = {"U1": "u(1)", "U4": "u(4)", "U8": "u(8)", "UE": "ue(v)", "SE": "se(v)",
               "MD5": "b(8)"}


def table_rows() -> list[tuple[str, str, int]]:
    text = (ROOT / "lib" / "decoder" / "tps_syntax.h").read_text()
    body = text[text.index("#define NNTM_TPS_QUANTIZED(X)"):]
    body = body[:body.index("typedef struct")]
    return [(name, DESCRIPTORS[desc], int(minor))
            for name, desc, minor in re.findall(r"X\((\w+),\s*(\w+),\s*(\d+),", body)]


def spec_rows() -> list[tuple[str, str, int]]:
    text = (ROOT / "docs" / "bitstream.md").read_text()
    block = text[text.index("tensor_parameter_set( ) {"):]
    block = block[:block.index("```")]
    block = block[block.index("if( tensor_coding_mode == 0 )"):]
    rows = []
    for m in re.finditer(r"^\s+(\w+)(?:\[ i \])?\s+(u\(\d+\)|ue\(v\)|se\(v\)|b\(8\))"
                         r"(?:\s+\[1\.(\d)\])?\s*$", block, re.M):
        rows.append((m[1], m[2], int(m[3] or 0)))
    return rows


def test_table_matches_the_spec() -> None:
    table, spec = table_rows(), spec_rows()
    assert len(table) >= 25
    assert table == spec


def test_table_check_can_fail() -> None:
    """A row out of order or with another descriptor is seen (the parse is not vacuous)."""
    table, spec = table_rows(), spec_rows()
    swapped = table[:]
    swapped[3], swapped[4] = swapped[4], swapped[3]
    assert swapped != spec
    assert [(n, "u(8)", v) for n, _, v in table] != spec
