"""Every single-bit flip of a set of streams: does any decode "OK" to a changed model?

Re-encodes the conformance streams from their stored commands (conformance/suite.json), with
the integrity hashes of format 1.6 (``--IntegrityHash=1``) and, for comparison, without them
(``--IntegrityHash=0``, the tensor MD5s of format 1.5), then flips every bit of each stream in
turn and decodes it. Each flip ends in one of:

    error       the decoder refuses the stream (a syntax error, a limit, a memory budget)
    mismatch    it decodes, and a check fails (tensor, parameter set or stream MD5)
    identical   every check passes and the model is the encoder's, bit for bit
    CHANGED     every check passes but a name, dtype, shape, value or the order differs
    CRASH       an exception that is not an NntmError (a decoder bug)

With the integrity hashes, CHANGED and CRASH must be 0 (and so is identical: the stream MD5
sees every flip); the script exits 1 otherwise.

    python benchmarks/bitflip.py                    # streams up to 2500 bytes, both modes
    python benchmarks/bitflip.py --max-bytes 1300 --streams 20 --modes 1
    python benchmarks/bitflip.py --jobs 2

Each decode runs with a small memory budget (--max-memory, default 256M) and expansion limit
(--max-expansion, default 2^16), so that a flip that announces a huge tensor is refused fast;
the unflipped stream must decode within them, or the stream is skipped.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

import numpy as np  # noqa: E402
from nntm import codec, conformance  # noqa: E402
from nntm.errors import HashMismatchError, NntmError  # noqa: E402

OUTCOMES = ("error", "mismatch", "identical", "CHANGED", "CRASH")


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return list(a) == list(b) and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes()
        for k in a)


def make_streams(integrity: int, max_bytes: int) -> list[tuple[str, bytes, str]]:
    """(name, stream, ref_model path) of every re-encodable suite stream up to max_bytes."""
    suite = conformance.load_suite(ROOT / "conformance" / "suite.json")
    out = []
    with tempfile.TemporaryDirectory(prefix="nntm_bitflip_") as tmp:
        for entry in suite.streams:
            if not entry.reencode or entry.bitstream_bytes > max_bytes:
                continue
            argv = [*entry.encoder_command, f"--IntegrityHash={integrity}"]
            data = conformance.run_encoder_command(suite.root, argv,
                                                   Path(tmp) / f"{entry.name}.bit")
            ref = str(suite.file(entry.ref_model)) if entry.ref_model else ""
            out.append((entry.name, data, ref))
    return out


_STATE: dict[str, object] = {}


def _init(data: bytes, ref: str, max_memory: int, max_expansion: int) -> None:
    from nntm.modelio import read_model

    _STATE.update(data=data, ref=read_model(ref) if ref else None, max_memory=max_memory,
                  max_expansion=max_expansion)
    _STATE["want"] = _decode(data)


def _decode(data: bytes) -> dict[str, np.ndarray]:
    return codec.decode(data, ref_model=_STATE["ref"], max_memory=_STATE["max_memory"],
                        max_expansion=_STATE["max_expansion"])


def _flip(bits: range) -> tuple[Counter[str], list[str]]:
    data: bytes = _STATE["data"]  # type: ignore[assignment]
    counts: Counter[str] = Counter()
    bad_examples: list[str] = []
    for bit in bits:
        bad = bytearray(data)
        bad[bit // 8] ^= 0x80 >> (bit % 8)
        try:
            got = _decode(bytes(bad))
        except HashMismatchError:
            counts["mismatch"] += 1
            continue
        except NntmError:
            counts["error"] += 1
            continue
        except Exception as exc:  # a decoder bug
            counts["CRASH"] += 1
            bad_examples.append(f"bit {bit}: {type(exc).__name__}: {exc}")
            continue
        if _same(got, _STATE["want"]):  # type: ignore[arg-type]
            counts["identical"] += 1
        else:
            counts["CHANGED"] += 1
            bad_examples.append(f"bit {bit} (byte {bit // 8}): decodes OK to a changed model")
    return counts, bad_examples


def run_stream(name: str, data: bytes, ref: str, jobs: int, max_memory: int,
               max_expansion: int) -> tuple[Counter[str], list[str]]:
    nbits = 8 * len(data)
    step = max(1, nbits // (8 * jobs))
    chunks = [range(i, min(i + step, nbits)) for i in range(0, nbits, step)]
    total: Counter[str] = Counter()
    examples: list[str] = []
    if jobs == 1:
        _init(data, ref, max_memory, max_expansion)
        results = map(_flip, chunks)
        for counts, ex in results:
            total += counts
            examples += ex
        return total, examples
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(jobs, _init, (data, ref, max_memory, max_expansion)) as pool:
        for counts, ex in pool.imap_unordered(_flip, chunks):
            total += counts
            examples += ex
    return total, examples


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-bytes", type=int, default=2500, help="largest stream to flip")
    ap.add_argument("--streams", type=int, default=0, help="at most this many (0: all)")
    ap.add_argument("--modes", default="1,0",
                    help="IntegrityHash values to run, comma separated (default 1,0)")
    ap.add_argument("--jobs", type=int, default=1, help="processes per stream")
    ap.add_argument("--max-memory", default="256M")
    ap.add_argument("--max-expansion", type=int, default=1 << 16)
    args = ap.parse_args(argv)
    from nntm.memory import parse_size

    max_memory = parse_size(args.max_memory)
    failed = False
    for mode in (int(m) for m in args.modes.split(",")):
        streams = make_streams(mode, args.max_bytes)
        if args.streams:
            streams = streams[:args.streams]
        print(f"\n## IntegrityHash {mode}: {len(streams)} streams, every single-bit flip\n")
        print("| stream | bytes | flips | " + " | ".join(OUTCOMES) + " | seconds |")
        print("| --- | ---: | ---: | " + " | ".join("---:" for _ in OUTCOMES) + " | ---: |")
        grand: Counter[str] = Counter()
        for name, data, ref in streams:
            start = time.perf_counter()
            counts, examples = run_stream(name, data, ref, args.jobs, max_memory,
                                          args.max_expansion)
            grand += counts
            print(f"| {name} | {len(data)} | {8 * len(data)} | "
                  + " | ".join(str(counts[o]) for o in OUTCOMES)
                  + f" | {time.perf_counter() - start:.1f} |", flush=True)
            for ex in examples[:3]:
                print(f"|   {ex} |", file=sys.stderr)
        print(f"| **all** | | {sum(grand.values())} | "
              + " | ".join(str(grand[o]) for o in OUTCOMES) + " | |")
        if mode and (grand["CHANGED"] or grand["CRASH"]):
            failed = True
    print(f"\n(python benchmarks/bitflip.py {' '.join(argv or sys.argv[1:])}; "
          f"{os.cpu_count()} CPUs)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
