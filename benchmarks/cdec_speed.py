"""Whole-process decode time of nntm-dec (C) against DecoderApp (Python), same streams.

    python benchmarks/cdec_speed.py                       # the 3 largest conformance streams
    python benchmarks/cdec_speed.py --synthetic /tmp/syn  # + a random 20.2 M-param float32
                                                          #   model encoded at QP -24
    python benchmarks/cdec_speed.py a.bit b.bit --repeat 3

Each decoder runs in its own process, writing safetensors to a temporary folder; the table
gives the wall time of each (the best of --repeat runs, default 1; nntm-dec with --threads 1
and 2), the ratios C / Python, the peak resident memory (/usr/bin/time %M; nntm-dec on one
thread) and whether the outputs are byte-identical.  The
synthetic model (4 x 2048x2048 + 2 x 1024x1536 weights and 4 biases, N(0, 0.02-0.03),
seed 17) is made and encoded with EncoderApp -c cfg/encoder_default.cfg --QP=-24 once.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))


def _run(cmd: list[str]) -> float:
    """Wall seconds of one process that must succeed."""
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _rss(cmd: list[str]) -> int:
    """Peak RSS (KiB) of one run, through /usr/bin/time when there is one."""
    if not Path("/usr/bin/time").exists():
        return 0
    out = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, check=True, capture_output=True,
                         text=True)
    return int(out.stderr.strip().splitlines()[-1])


def synthetic(folder: Path) -> Path:
    """The random 20 M-parameter model, encoded at QP -24 (made once)."""
    import numpy as np
    from nntm.modelio import write_model

    folder.mkdir(parents=True, exist_ok=True)
    model, bit = folder / "rand20m.safetensors", folder / "rand20m.bit"
    if not bit.exists():
        rng = np.random.default_rng(17)
        tensors = {}
        for i in range(4):
            tensors[f"layer{i}.weight"] = (rng.standard_normal((2048, 2048)) * 0.02).astype(
                np.float32)
            tensors[f"layer{i}.bias"] = (rng.standard_normal(2048) * 0.01).astype(np.float32)
        for i in range(2):
            tensors[f"proj{i}.weight"] = (rng.standard_normal((1024, 1536)) * 0.03).astype(
                np.float32)
        write_model(str(model), tensors, "safetensors")
        subprocess.run([sys.executable, "-m", "nntm.apps.encoder", "-c",
                        str(ROOT / "cfg" / "encoder_default.cfg"), "-i", str(model), "-b",
                        str(bit), "--QP=-24"], check=True, stdout=subprocess.DEVNULL)
    return bit


def largest_conformance(count: int) -> list[tuple[Path, Path | None]]:
    streams = json.loads((ROOT / "conformance" / "suite.json").read_text())["streams"]
    streams.sort(key=lambda s: -s["bitstream_bytes"])
    return [(ROOT / s["bitstream"], ROOT / s["ref_model"] if s.get("ref_model") else None)
            for s in streams[:count]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bitstreams", nargs="*", type=Path)
    ap.add_argument("--nntm-dec", type=Path, default=ROOT / "build" / "nntm-dec")
    ap.add_argument("--synthetic", type=Path, help="folder for the synthetic 20 M model")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    jobs = [(b, None) for b in args.bitstreams] or largest_conformance(3)
    if args.synthetic:
        jobs.append((synthetic(args.synthetic), None))
    print(f"{'stream':<24} {'bytes':>9} {'DecoderApp s':>12} {'nntm-dec -t1':>12} "
          f"{'-t2':>6} {'C1/Py':>6} {'C2/Py':>6} {'Py MiB':>7} {'C MiB':>6}  same")
    with tempfile.TemporaryDirectory() as tmp:
        for bit, ref in jobs:
            extra = ["--RefModel", str(ref)] if ref else []
            py_out, c_out = Path(tmp) / "py.safetensors", Path(tmp) / "c.safetensors"
            py_cmd = [sys.executable, "-m", "nntm.apps.decoder", "-b", str(bit), "-o",
                      str(py_out)] + extra
            c_cmd = [str(args.nntm_dec), "-b", str(bit), "-o", str(c_out)] + extra
            py_s = min(_run(py_cmd) for _ in range(args.repeat))
            c1_s = min(_run(c_cmd + ["--threads", "1"]) for _ in range(args.repeat))
            same = py_out.read_bytes() == c_out.read_bytes()
            c2_s = min(_run(c_cmd + ["--threads", "2"]) for _ in range(args.repeat))
            same = same and py_out.read_bytes() == c_out.read_bytes()
            py_rss, c_rss = _rss(py_cmd), _rss(c_cmd + ["--threads", "1"])
            print(f"{bit.name:<24} {os.path.getsize(bit):>9} {py_s:>12.3f} {c1_s:>12.3f} "
                  f"{c2_s:>6.3f} {c1_s / py_s:>6.3f} {c2_s / py_s:>6.3f} {py_rss / 1024:>7.1f} "
                  f"{c_rss / 1024:>6.1f}  {'yes' if same else 'NO'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
