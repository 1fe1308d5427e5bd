"""Decompression bombs: tiny valid streams that announce gigabytes, and what decoding them costs.

The three streams of issue #19 (all valid, all-skip coding-tree tensors of zeros):

    bomb_one_16k.bit      one 16384 x 16384 float32 tensor            (about 130 bytes)
    bomb_four_16k.bit     four such tensors                           (about 450 bytes)
    bomb_twelve_8k.bit    twelve 8192 x 8192 float32 tensors          (about 1300 bytes)

    python benchmarks/bombs.py --make tests/data/bombs   # (re)make them (a minute, 1 GB)
    python benchmarks/bombs.py                           # DecoderApp on each, default limits
    python benchmarks/bombs.py --raised                  # ... with the limits raised (the
                                                         # decoder before the budget: GBs)

Each DecoderApp runs in its own process; the table gives its exit status, wall time and peak
resident memory (ru_maxrss of that process), and the first line of its message.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

BOMBS = {"bomb_one_16k.bit": (1, 16384), "bomb_four_16k.bit": (4, 16384),
         "bomb_twelve_8k.bit": (12, 8192)}
DEFAULT_DIR = ROOT / "tests" / "data" / "bombs"


def make(folder: Path) -> None:
    """Encode one all-zero tensor per size with a skip-only coding tree, then build the
    multi-tensor streams from its units (the same TPS renamed; the same payload and hashes)."""
    import numpy as np
    from nntm import codec, hls
    from nntm.config import Config

    cfg = Config.defaults().replace(TreeType="qt", CTUSize=128, MinQTSize=128, SkipCU=1,
                                    Preset="fast", IntegrityHash=1)
    folder.mkdir(parents=True, exist_ok=True)
    for file, (count, n) in BOMBS.items():
        one = codec.encode({"w0": np.zeros((n, n), np.float32)}, cfg)
        units = hls.split_units(one)
        mps = hls.parse_model_parameter_set(units[0])
        tps = hls.parse_tensor_parameter_set(units[1], mps)
        _, payload = hls.parse_tensor_data_unit(units[2])
        _, md5, _ = hls.parse_tensor_hash_unit(units[3], mps)
        mps.num_tensors = count
        parts = [hls.model_parameter_set(mps)]
        for i in range(count):
            tps.tensor_id, tps.name = i, f"w{i}"
            tps_unit = hls.tensor_parameter_set(tps, mps.tool_flags)
            parts += [tps_unit, hls.tensor_data_unit(i, payload),
                      hls.tensor_hash_unit(i, md5, hls.unit_md5(tps_unit))]
        body = b"".join(parts)
        data = body + hls.end_of_stream(hls.unit_md5(body))
        (folder / file).write_bytes(data)
        print(f"{file}: {len(data)} bytes, {count} x {n}x{n} float32 "
              f"({count * n * n * 4 / 2**30:.1f} GiB decoded)")


def measure(folder: Path, extra: list[str]) -> None:
    print("| stream | bytes | exit | seconds | peak RSS | message |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for file in BOMBS:
        path = folder / file
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "nntm.apps.decoder", "-b", str(path),
                                 *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        out = proc.stdout.read() if proc.stdout else ""
        err = proc.stderr.read() if proc.stderr else ""
        message = (err.strip() or out.strip().splitlines()[-1] if (err or out) else "")
        rss_mb = usage.ru_maxrss / 1024
        print(f"| {file} | {path.stat().st_size} | {os.waitstatus_to_exitcode(status)} | "
              f"{seconds:.2f} | {rss_mb:.0f} MB | {message.splitlines()[0][:110]} |",
              flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--make", metavar="DIR", help="write the three streams to DIR and stop")
    ap.add_argument("--dir", default=str(DEFAULT_DIR), help="where the streams are")
    ap.add_argument("--raised", action="store_true",
                    help="decode with MaxMemory and MaxExpansion raised (needs ~7 GB)")
    args = ap.parse_args(argv)
    if args.make:
        make(Path(args.make))
        return 0
    extra = ["--MaxMemory=1T", f"--MaxExpansion={1 << 40}"] if args.raised else []
    measure(Path(args.dir), extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
