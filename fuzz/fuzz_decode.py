#!/usr/bin/env python3
"""atheris harness for the Python reader (nntm.decode_python; nntm.decode goes through libnntm).

    python3 fuzz/fuzz_decode.py build-fuzz/corpus/decode build-fuzz/seeds/decode \
        -max_total_time=900 -timeout=20 -rss_limit_mb=3072 -max_len=65536

Every exception other than nntm.NntmError is a bug (atheris reports it with the input
that caused it), as is a hang (-timeout) or an input that needs gigabytes (-rss_limit_mb).
Only the nntm package is instrumented for coverage; the C core is covered by
fuzz_kernel.c.  See fuzz/README.md.

With NNTM_FUZZ_UNITS=1 in the environment a structure-aware mutator is used: it cuts
the input into units, mutates one unit's payload (or drops, duplicates or swaps whole
units) and rewrites every unit header with the right payload size, so that the
mutations reach the parameter sets, the order checks and the C core instead of dying
in the unit headers.  Half of the time it falls back to plain byte mutation.
"""

from __future__ import annotations

import os
import random
import sys

import atheris

with atheris.instrument_imports(include=["nntm"]):
    import nntm


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name atheris calls
    try:
        nntm.decode_python(data)  # the Python reader: the C one has fuzz_stream.c
    except nntm.NntmError:
        pass


def _units(data: bytes) -> list[tuple[int, bytes]] | None:
    """(unit_type, payload) pairs of data, or None when its headers do not parse."""
    units, pos = [], 0
    while pos < len(data):
        if len(data) - pos < 5:
            return None
        size = int.from_bytes(data[pos + 1:pos + 5], "big")
        if size > len(data) - pos - 5:
            return None
        units.append((data[pos], data[pos + 5:pos + 5 + size]))
        pos += 5 + size
    return units


def _join(units: list[tuple[int, bytes]]) -> bytes:
    return b"".join(bytes([t]) + len(p).to_bytes(4, "big") + p for t, p in units)


def CustomMutator(data: bytes, max_size: int, seed: int) -> bytes:  # noqa: N802
    rnd = random.Random(seed)
    units = _units(data)
    if not units or rnd.random() < 0.5:
        return atheris.Mutate(data, max_size)
    i = rnd.randrange(len(units))
    op = rnd.random()
    if op < 0.7:                       # mutate one unit's payload, keep the header right
        t, p = units[i]
        room = max(max_size - len(data) + len(p), len(p), 1)
        units[i] = (t, atheris.Mutate(p, room))
    elif op < 0.8:                     # drop a unit
        del units[i]
    elif op < 0.9:                     # duplicate a unit somewhere
        units.insert(rnd.randrange(len(units) + 1), units[i])
    else:                              # swap two units
        j = rnd.randrange(len(units))
        units[i], units[j] = units[j], units[i]
    out = _join(units)
    return out[:max_size]


def main() -> None:
    if os.environ.get("NNTM_FUZZ_UNITS") == "1":
        atheris.Setup(sys.argv, TestOneInput, custom_mutator=CustomMutator)
    else:
        atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
