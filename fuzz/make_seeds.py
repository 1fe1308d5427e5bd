#!/usr/bin/env python3
"""Seed corpora for the fuzzers, from the conformance streams.

    python3 fuzz/make_seeds.py [OUT]        (default OUT: build-fuzz/)

OUT/seeds/decode/   the bitstreams themselves (seeds of fuzz_decode.py)
OUT/seeds/kernel/   one kernel case per QUANTIZED tensor: the kernel parameters in the
                    fuzz/kernel_input.h header, then the tensor data unit payload
                    (seeds of fuzz_kernel.c)

When the package has coding tools beyond format 1.0 (the TreeType option), a few more
seeds are encoded on the fly with them (coding tree types, skip CUs, CU QP deltas,
kernel tiles, dependent quantization), so that the fuzzers start inside those syntax structures too.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from nntm import conformance, hls  # noqa: E402

# Coding-tool settings for the extra seeds (format 1.1 and later).
TOOL_SETTINGS = (
    {"TreeType": "qt", "SkipCU": True},
    {"TreeType": "qtbt", "CUQPDelta": True, "CTUSize": 16, "MinQTSize": 4, "MinCUSize": 1},
    {"TreeType": "qtmtt", "CUQPDelta": True, "SkipCU": True, "CTUSize": 32,
     "MaxMTTDepth": 3, "Arrangement": "tiles", "Preset": "fast"},
    {"DepQuant": True},
    {"DepQuant": True, "TreeType": "qtbt", "CUQPDelta": True, "Preset": "fast"},
    {"IntraPred": True, "IntraCopyRange": 8, "TreeType": "qtmtt", "CTUSize": 16,
     "MinQTSize": 4, "CUQPDelta": True, "Preset": "fast"},
)


def _tool_seeds(suite: conformance.Suite) -> list[bytes]:
    import nntm
    from nntm.options import ENCODER_OPTIONS

    keys = {o.key for o in ENCODER_OPTIONS}
    out: list[bytes] = []
    sources = [suite.file("conformance/sources/qp.safetensors"),
               suite.file("python/nntm/example/digits_cnn.safetensors")]
    for settings in TOOL_SETTINGS:
        if not set(settings) <= keys:
            continue  # a package without these tools
        cfg = nntm.Config.from_files([suite.file("conformance/cfg/BASE_A_1.cfg")],
                                     overrides=settings)
        for src in sources:
            if src.exists():
                out.append(nntm.encode(nntm.read_model(src), cfg))
    return out


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
        ref = conformance.load_ref_model(suite, entry)
        for i, case in enumerate(conformance.kernel_cases(data, ref)):
            if case.coding_mode == hls.CodingMode.QUANTIZED:
                (ker / f"{entry.name}_{i:02d}.kin").write_bytes(case.data)
                n += 1
    extra = _tool_seeds(suite)
    for i, data in enumerate(extra):
        (dec / f"tools_{i}.bit").write_bytes(data)
        for j, case in enumerate(conformance.kernel_cases(data)):
            if case.coding_mode == hls.CodingMode.QUANTIZED:
                (ker / f"tools_{i}_{j:02d}.kin").write_bytes(case.data)
                n += 1
    print(f"{len(suite.streams) + len(extra)} stream seeds in {dec}, {n} kernel seeds in {ker}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
