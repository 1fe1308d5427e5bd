#!/usr/bin/env python3
"""CE3: model updates coded with prediction from the reference model (issue #6).

    python scripts/run_ce3.py [--pairs digits-continue,digits-domain,minilm-ft,mobilenetv2-adapt]
                              [--cfg cfg/encoder_anchor.cfg,cfg/ce/tool_dq.cfg] [--out docs/ce/CE3]
                              [--no-nncodec]

For each update pair (nntm.ce.updates) and each QP of the pair's sweep, in one run:

- NNTM intra: the new model coded alone (EncoderApp without --RefModel);
- NNTM update: the new model coded against the reference (EncoderApp --RefModel);
- NNCodec update: NNCodec 2.1.3's own update coding (nnc.compress of new - ref with
  compress_differences=True; the receiver adds the reference);
- NNCodec intra: the new model coded alone by NNCodec.

Fidelity is measured against the NEW model: pooled weight SNR and the pair's output metric
(digits: kl_db = -10 log10 of the mean KL divergence of the predictions; MiniLM: cos_db;
MobileNetV2: kl_db).  BD-rates (pchip) over each pair's sweep: NNTM update against NNTM
intra (the goal: the update at most 20 % of the intra size at equal fidelity, i.e. a
BD-rate of -80 % or less), NNTM update against NNCodec update.  Writes CE3_<pair>.csv,
CE3_prediction.csv and CE3_summary.md in --out.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from nntm import codec  # noqa: E402
from nntm.ce import updates  # noqa: E402
from nntm.ce.bdrate import bd_rate  # noqa: E402
from nntm.ce.runner import weight_snr  # noqa: E402
from nntm.config import Config  # noqa: E402

QPS = {
    "digits-continue": (-20, -24, -28, -32, -36),
    "digits-domain": (-20, -24, -28, -32, -36),
    "minilm-ft": (-32, -36, -40, -44, -48),
    "mobilenetv2-adapt": (-40, -44, -48, -52, -56),
}
METRIC = {"digits": "kl_db", "minilm": "cos_db", "mobilenetv2": "kl_db"}


def output_metric(adapter: str, decoded: dict[str, np.ndarray],
                  new: dict[str, np.ndarray]) -> float:
    fid = updates.fidelity(adapter, decoded, new)
    if adapter == "digits":
        return -10.0 * math.log10(max(fid["kl_mean"], 1e-12))
    return float(fid[METRIC[adapter]])


def float_params(model: dict[str, np.ndarray]) -> int:
    return sum(int(v.size) for v in model.values() if v.dtype.kind == "f"
               or v.dtype.name == "bfloat16")


def reused_rows(folder: Path, pair: str) -> list[dict[str, object]]:
    """The points of an earlier run other than NNTM's update (its CE3_<pair>.csv)."""
    with open(folder / f"CE3_{pair}.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["codec"] != "nntm-update"]
    if not rows:
        raise SystemExit(f"--reuse: no points of {pair} in {folder}")
    ints, text = {"qp", "bytes"}, {"pair", "codec"}
    return [{k: v if k in text else int(v) if k in ints else float(v) for k, v in r.items()}
            for r in rows]


def run_pair(pair: str, cfg: Config, nncodec: bool, log: list[str],
             reuse: list[dict[str, object]] | None = None
             ) -> tuple[list[dict[str, object]], int]:
    """Every point of one pair; also its number of float parameters.  With ``reuse``
    (points of an earlier run), only NNTM's update is coded and the other points are
    taken from there: bytes and metrics are deterministic, their times are that run's."""
    ref, new = updates.load_pair(pair)
    adapter = updates.UPDATE_PAIRS[pair].adapter
    n = float_params(new)
    rows: list[dict[str, object]] = []

    def add(kind: str, qp: int, nbytes: int, decoded: dict[str, np.ndarray], enc: float,
            dec: float) -> None:
        snr = weight_snr(new, decoded)
        row = {"pair": pair, "codec": kind, "qp": qp, "bytes": nbytes,
               "bits_per_param": 8.0 * nbytes / n, "wsnr_db": snr.pooled_db,
               "output_db": output_metric(adapter, decoded, new), "enc_s": enc, "dec_s": dec}
        rows.append(row)
        line = (f"[{pair}] {kind:<14} QP {qp:4d} {nbytes:10d} B {row['bits_per_param']:7.4f} "
                f"bits/param wSNR {snr.pooled_db:6.2f} dB {METRIC[adapter]} "
                f"{row['output_db']:7.2f} enc {enc:6.1f} s dec {dec:6.1f} s")
        print(line, flush=True)
        log.append(line)

    for qp in QPS[pair]:
        c = cfg.replace(QP=qp)
        if reuse is not None:
            rows += [r for r in reuse if r["qp"] == qp and r["codec"] == "nntm-intra"]
        kinds = (("nntm-intra", None), ("nntm-update", ref)) if reuse is None else (
            ("nntm-update", ref),)
        for kind, refm in kinds:
            t0 = time.perf_counter()
            res = codec.encode_with_recon(new, c, ref_model=refm)
            t1 = time.perf_counter()
            decoded = codec.decode(res.data, ref_model=refm)
            t2 = time.perf_counter()
            for k, v in decoded.items():
                if v.tobytes() != res.recon[k].tobytes():
                    raise SystemExit(f"{pair} QP {qp}: decoder output differs from the encoder's "
                                     f"reconstruction in '{k}'")
            add(kind, qp, len(res.data), decoded, t1 - t0, t2 - t1)
        if reuse is not None:
            rows += [r for r in reuse if r["qp"] == qp and r["codec"].startswith("nncodec")]
        elif nncodec:
            from nntm.ce.nncodec_anchor import NNCodecAnchor

            t0 = time.perf_counter()
            data, decoded = updates.nncodec_update(new, ref, qp)
            add("nncodec-update", qp, len(data), decoded, time.perf_counter() - t0, 0.0)
            anchor = NNCodecAnchor()
            t0 = time.perf_counter()
            enc = anchor.encode(new, qp, pair)
            t1 = time.perf_counter()
            alone = anchor.decode(enc.data)
            add("nncodec-intra", qp, len(enc.data), alone, t1 - t0, time.perf_counter() - t1)
    return rows, n


def bd(rows: list[dict[str, object]], test: str, anchor: str, metric: str) -> str:
    a = [r for r in rows if r["codec"] == anchor]
    t = [r for r in rows if r["codec"] == test]
    if not a or not t:
        return "n/a"
    res = bd_rate([r["bytes"] for r in a], [r[metric] for r in a],
                  [r["bytes"] for r in t], [r[metric] for r in t])
    if res.value is None:
        return f"n/a ({res.reason})"
    return f"{res.value:+.2f} %"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", default=",".join(QPS))
    ap.add_argument("--cfg", default="cfg/encoder_anchor.cfg,cfg/ce/tool_dq.cfg",
                    help="NNTM cfg files, comma-separated (layered)")
    ap.add_argument("--out", default="docs/ce/CE3")
    ap.add_argument("--no-nncodec", action="store_true", help="skip the NNCodec anchors")
    ap.add_argument("--reuse", default="",
                    help="folder of an earlier run: take its intra and NNCodec points "
                         "(deterministic) and code only NNTM's updates")
    args = ap.parse_args(argv)
    files = [str(ROOT / f) for f in args.cfg.split(",") if f]
    cfg = Config.from_files(files)
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    nncodec = not args.no_nncodec
    if nncodec:
        try:
            import nncodec as _  # noqa: F401
        except ImportError:
            print("nncodec is not installed (bash scripts/install_nncodec.sh); "
                  "running without the NNCodec anchors", file=sys.stderr)
            nncodec = False
    summary = ["| pair | float params | update vs intra: wSNR | update vs intra: output | "
               "update vs NNCodec update: wSNR | update vs NNCodec update: output | "
               "NNCodec update vs NNCodec intra: output |",
               "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    log: list[str] = []
    all_rows: list[dict[str, object]] = []
    for pair in [p for p in args.pairs.split(",") if p]:
        reuse = reused_rows(ROOT / args.reuse, pair) if args.reuse else None
        rows, n = run_pair(pair, cfg, nncodec and reuse is None, log, reuse)
        all_rows += rows
        with open(out / f"CE3_{pair}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        summary.append(
            f"| {pair} | {n:,} | {bd(rows, 'nntm-update', 'nntm-intra', 'wsnr_db')}"
            f" | {bd(rows, 'nntm-update', 'nntm-intra', 'output_db')}"
            f" | {bd(rows, 'nntm-update', 'nncodec-update', 'wsnr_db')}"
            f" | {bd(rows, 'nntm-update', 'nncodec-update', 'output_db')}"
            f" | {bd(rows, 'nncodec-update', 'nncodec-intra', 'output_db')} |")
        print("\n".join(summary), flush=True)
    with open(out / "CE3_prediction.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(all_rows[0]))
        w.writeheader()
        w.writerows(all_rows)
    cmd = "python scripts/run_ce3.py " + " ".join(argv if argv is not None else sys.argv[1:])
    (out / "CE3_summary.md").write_text(
        "# CE3 summary (generated by scripts/run_ce3.py)\n\n"
        f"Command: `{cmd.strip()}`; NNTM cfg: {args.cfg}\n\n"
        "BD-rates (pchip, bytes at equal fidelity against the new model; negative = "
        "smaller):\n\n" + "\n".join(summary) + "\n\n## Points\n\n```\n" + "\n".join(log)
        + "\n```\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
