"""Encode time of the weight-fidelity cfg against NNCodec 2.1.3 on MiniLM, before and after
(issue #18 item 3), and the BD-rate of after against before.

One run measures, each in its own fresh subprocess and one at a time:

- NNCodec 2.1.3 (``nncodec.nn.encode`` through the CE anchor wrapper) at --nncodec-qp;
- NNTM ``-c cfg/encoder_anchor.cfg -c cfg/encoder_weight_fidelity.cfg`` with the code of
  --before (a ``python`` folder with its built extension, e.g. an export of main) and with
  this checkout, at each of --qps;

and prints bits/param, weight SNR, the output metric (MiniLM cos_db), encode wall and CPU
time (the process's, BLAS threads included), the time inside the row-reference search, and
the BD-rate of after against before on weight SNR and on cos_db.

    PYTHONPATH=python /work/venv/int/bin/python benchmarks/wf_encode_speed.py \\
        --before /tmp/before/python [--qps -20,-24,-28,-32] [--speed-qp -28] [--nncodec-qp -32]

Needs torch, nncodec 2.1.3 and the MiniLM package (the CE venv).  The timings depend on
the load of the machine: compare the rows of one run.
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
CFGS = [str(ROOT / "cfg/encoder_anchor.cfg"), str(ROOT / "cfg/encoder_weight_fidelity.cfg")]


def _metrics(tensors: dict, recon: dict, evaluate: bool) -> dict:
    from nntm.ce.models import get_adapter
    from nntm.ce.runner import weight_snr

    out = {"snr_db": weight_snr(tensors, recon).pooled_db}
    if evaluate:
        out["cos_db"] = get_adapter("minilm").evaluate(recon)["cos_db"]
    return out


def worker(kind: str, qp: int, evaluate: bool) -> dict:
    """One encode in this process: its figures as a dict."""
    import numpy as np
    from nntm.ce.models import get_adapter

    tensors = get_adapter("minilm").load()
    params = sum(int(a.size) for a in tensors.values() if np.issubdtype(a.dtype, np.floating))
    search_s = [0.0]
    if kind == "nncodec":
        from nntm.ce.nncodec_anchor import NNCodecAnchor

        codec = NNCodecAnchor()
        w0, c0 = time.perf_counter(), time.process_time()
        enc = codec.encode(tensors, qp, "minilm")
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        data, recon = enc.data, codec.decode(enc.data)
    else:
        import nntm
        from nntm import rowref

        search = rowref.reference_hints

        def timed(kernel: np.ndarray) -> np.ndarray:
            t0 = time.perf_counter()
            try:
                return search(kernel)
            finally:
                search_s[0] += time.perf_counter() - t0

        rowref.reference_hints = timed
        config = nntm.Config.from_files(CFGS, overrides={"QP": qp})
        w0, c0 = time.perf_counter(), time.process_time()
        res = nntm.encode_with_recon(dict(tensors), config)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        data, recon = bytes(res.data), dict(res.recon)
    return {"kind": kind, "qp": qp, "bytes": len(data), "bpp": 8 * len(data) / params,
            "wall_s": wall, "cpu_s": cpu, "search_s": search_s[0],
            "md5": hashlib.md5(data).hexdigest(), **_metrics(tensors, recon, evaluate)}


EXTRA_PATH: list[str] = []  # --extra-path: appended to every worker's PYTHONPATH


def run(kind: str, qp: int, pythonpath: str, evaluate: bool) -> dict:
    """worker() in a fresh subprocess with PYTHONPATH=pythonpath (and --extra-path)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([pythonpath, *EXTRA_PATH])}
    cmd = [sys.executable, __file__, "--worker", kind, "--qp", str(qp), "--out", out]
    if evaluate:
        cmd.append("--evaluate")
    subprocess.run(cmd, env=env, check=True, cwd=ROOT)
    doc = json.loads(Path(out).read_text())
    os.unlink(out)
    return doc


def _row(label: str, d: dict, anchor_wall: float | None) -> str:
    ratio = f"{d['wall_s'] / anchor_wall:.2f}" if anchor_wall else "1.00"
    cos = f"{d['cos_db']:.3f}" if "cos_db" in d else "-"
    return (f"| {label} | {d['qp']} | {d['bpp']:.4f} | {d['snr_db']:.3f} | {cos} | "
            f"{d['wall_s']:.1f} | {d['cpu_s']:.1f} | {d['search_s']:.1f} | {ratio} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", help="python folder of the code to compare against")
    ap.add_argument("--qps", default="-20,-24,-28,-32", help="NNTM QPs of the BD-rate")
    ap.add_argument("--speed-qp", type=int, default=-28, help="NNTM QP timed against NNCodec")
    ap.add_argument("--nncodec-qp", type=int, default=-32,
                    help="NNCodec QP (-32: about the bits/param of NNTM's -28)")
    ap.add_argument("--extra-path", default="",
                    help="folders appended to every worker's PYTHONPATH (e.g. a pip --target "
                         "install of threadpoolctl for a venv without it)")
    ap.add_argument("--worker", choices=["nntm", "nncodec"], help=argparse.SUPPRESS)
    ap.add_argument("--qp", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--evaluate", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        Path(args.out).write_text(json.dumps(worker(args.worker, args.qp, args.evaluate)))
        return
    if not args.before:
        ap.error("--before is required")
    EXTRA_PATH.extend(p for p in args.extra_path.split(os.pathsep) if p)
    here = str(ROOT / "python")
    # the timed QP first, so that the speed figures come early
    qps = [args.speed_qp] + sorted({int(q) for q in args.qps.split(",")} - {args.speed_qp})
    anchor = run("nncodec", args.nncodec_qp, here, False)
    print("| codec | QP | bits/param | weight SNR dB | cos_db | encode wall s | CPU s | "
          "rowref s | wall / NNCodec |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
          + _row("NNCodec 2.1.3", anchor, None), flush=True)
    points: dict[str, list[dict]] = {"before": [], "after": []}
    for qp in qps:
        for label, path in (("before", args.before), ("after", here)):
            d = run("nntm", qp, path, True)
            points[label].append(d)
            print(_row(f"NNTM wf {label}", d, anchor["wall_s"]), flush=True)
    from nntm.ce.bdrate import bd_rate

    b, a = points["before"], points["after"]
    same = sum(x["md5"] == y["md5"] for x, y in zip(b, a, strict=True))
    print(f"\nstreams identical before/after: {same} of {len(qps)}")
    for metric in ("snr_db", "cos_db"):
        res = bd_rate([p["bpp"] for p in b], [p[metric] for p in b],
                      [p["bpp"] for p in a], [p[metric] for p in a])
        value = "n/a" if res.value is None else f"{res.value:+.3f} %"
        print(f"BD-rate after vs before on {metric}: {value} {res.note or ''}")


if __name__ == "__main__":
    main()
