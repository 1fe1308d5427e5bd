#!/usr/bin/env python3
"""Seed corpora for the fuzzers, from the conformance streams.

    python3 fuzz/make_seeds.py [OUT]        (default OUT: build-fuzz/)

OUT/seeds/decode/   the bitstreams themselves (seeds of fuzz_decode.py)
OUT/seeds/kernel/   one kernel case per QUANTIZED tensor: the kernel parameters in the
                    fuzz/kernel_input.h header, then the tensor data unit payload
                    (seeds of fuzz_kernel.c)
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from nntm import conformance, hls  # noqa: E402


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else ROOT / "build-fuzz"
    suite = conformance.load_suite(ROOT / "conformance" / "suite.json")
    dec, ker = out / "seeds" / "decode", out / "seeds" / "kernel"
    for d in (dec, ker):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    n = 0
    for entry in suite.streams:
        data = suite.file(entry.bitstream).read_bytes()
        (dec / f"{entry.name}.bit").write_bytes(data)
        for i, case in enumerate(conformance.kernel_cases(data)):
            if case.coding_mode == hls.CodingMode.QUANTIZED:
                (ker / f"{entry.name}_{i:02d}.kin").write_bytes(case.data)
                n += 1
    print(f"{len(suite.streams)} stream seeds in {dec}, {n} kernel seeds in {ker}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
