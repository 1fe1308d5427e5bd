"""ConformanceApp: decode the conformance bitstreams and check their MD5s.

    ConformanceApp [--suite conformance/suite.json] [--list] [--Decoder python|c]
                   [--nntm-dec PROG] [NAME ...]

For every stream of the suite (or those named) the app decodes the stream, checks
each tensor's MD5 against the stream's hash units and against the stream's .md5
file, and prints one line per stream (name, size, tensors, format version, time,
PASS or FAIL with the reason), then a summary.  --Decoder c decodes through the C
decoder alone (build/nntm-dec, or --nntm-dec PROG) instead of the nntm package.
The exit status is 0 when every stream passes and 1 otherwise (2 for a bad command
line).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .. import conformance
from .common import escape_text, pad, run_app

PROG = "ConformanceApp"
DEFAULT_SUITE = "conformance/suite.json"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Decode the NNTM conformance bitstreams and check every tensor's MD5 "
                    "against the stream's hash units and the stream's .md5 file. Exits "
                    "non-zero if any stream fails.",
    )
    ap.add_argument("names", nargs="*", metavar="NAME",
                    help="streams to check, e.g. BASE_A_1 (default: every stream)")
    ap.add_argument("--suite", default=DEFAULT_SUITE, metavar="FILE",
                    help=f"the suite manifest (default: {DEFAULT_SUITE})")
    ap.add_argument("--list", action="store_true",
                    help="list the streams of the suite with their features; decode nothing")
    ap.add_argument("--kernel-tool", metavar="PROG",
                    help="decode the QUANTIZED tensors with this external program "
                         "(fuzz/kernel_check.c, e.g. built with sanitizers by "
                         "scripts/run_sanitizers.sh) instead of the Python extension")
    ap.add_argument("--Decoder", choices=("python", "c"), default="python",
                    help="python: the nntm package (default); c: the C decoder alone "
                         "(nntm-dec: every unit, parameter set and hash read in C)")
    ap.add_argument("--nntm-dec", metavar="PROG",
                    help="the nntm-dec program of --Decoder c (default: build/nntm-dec of "
                         "this checkout)")
    return ap


def _row(name: str, size: str, tensors: str, version: str, secs: str, status: str) -> str:
    return (f"{pad(escape_text(name), 14)} {size:>9} {tensors:>7} {escape_text(version):>7} "
            f"{secs:>8}  {escape_text(status)}")


def _main(argv: Sequence[str]) -> int:
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    path = Path(args.suite)
    if args.suite == DEFAULT_SUITE and not path.exists():
        # not run from the repository root: the suite of the checkout this package is in
        path = Path(__file__).resolve().parents[3] / DEFAULT_SUITE
    suite = conformance.load_suite(path)
    entries = suite.select(args.names)
    if args.list:
        for e in entries:
            print(f"{pad(escape_text(e.name), 14)} {e.bitstream_bytes:>8} bytes "
                  f"{e.num_tensors:>3} tensors  v{escape_text(str(e.format_version))}  "
                  f"{escape_text(', '.join(e.features))}")
        print(f"{len(entries)} stream(s) in {escape_text(str(path))}")
        return 0
    if args.Decoder == "c" and args.kernel_tool:
        print(f"{PROG}: error: --Decoder c and --kernel-tool exclude each other", file=sys.stderr)
        return 2
    nntm_dec = Path(args.nntm_dec) if args.nntm_dec else conformance.default_nntm_dec()
    if args.Decoder == "c" and not nntm_dec.is_file():
        print(f"{PROG}: error: {escape_text(str(nntm_dec))} not found: build it with "
              "cmake -S . -B build && cmake --build build (or give --nntm-dec)", file=sys.stderr)
        return 2
    print(f"NNTM {PROG}  suite {escape_text(str(path))}: {len(entries)} stream(s)"
          + (f", kernels decoded by {escape_text(args.kernel_tool)}" if args.kernel_tool else "")
          + (f", decoded by {escape_text(str(nntm_dec))}" if args.Decoder == "c" else ""))
    print(_row("stream", "bytes", "tensors", "version", "time s", "result"))
    start = time.perf_counter()
    failed: list[str] = []
    for e in entries:
        if args.Decoder == "c":
            r = conformance.check_stream_with_c_decoder(suite, e, nntm_dec)
        elif args.kernel_tool:
            r = conformance.check_stream_with_kernel_tool(suite, e, args.kernel_tool)
        else:
            r = conformance.check_stream(suite, e)
        status = "PASS" if r.ok else f"FAIL: {r.reason}"
        print(_row(e.name, str(r.size), str(r.tensors), r.format_version, f"{r.seconds:.3f}",
                   status), flush=True)
        if not r.ok:
            failed.append(e.name)
    total = time.perf_counter() - start
    passed = len(entries) - len(failed)
    print(f"Summary: {passed} of {len(entries)} stream(s) passed, {len(failed)} failed "
          f"({total:.2f} s)" + (": " + escape_text(", ".join(failed)) if failed else ""))
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_app(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
