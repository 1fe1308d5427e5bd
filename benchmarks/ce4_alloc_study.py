"""CE4 allocation study: one NNTM cfg over a few QPs on one CE model, against stored anchor points.

    PYTHONPATH=python python benchmarks/ce4_alloc_study.py --model mobilenetv2 \
        --maps results/maps/mnv2_sens.safetensors --cfg cfg/encoder_output_aware.cfg \
        --set ImportanceQPScale=0.5 --qps -28 -32 -36 \
        --anchor-csv docs/ce/CE4/CE4_oa075_qp1d80_mobilenetv2.csv [--out study.csv]

A cheap stand-in for CEApp while searching: the importance maps come from a
file (``nntm-calibrate``, the same maps CEApp's ``@sensitivity`` measures), the
reconstruction is the encoder's (bit-identical to the decoder's, which CEApp
checks), and the anchor's points are read from a CE CSV (NNCodec's rates and
metrics are deterministic), so only the test points are coded.  BD-rates are
pchip over the metric range both curves share, as in CEApp.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time

import numpy as np


def parse_value(text: str) -> object:
    """A cfg override's value: an int, a float, or the text."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _tensor_qps(tensors, maps, cfg) -> dict[str, int]:
    """The QP offset the encoder gives each mapped tensor under ``cfg``."""
    from nntm import importance as imp

    if not maps:
        return {}
    full = {k: imp.expand(k, tuple(np.shape(tensors[k])), v) for k, v in maps.items()}
    max_step = float(cfg["ImportanceMaxStep"])
    return imp.qp_offsets(
        full, float(cfg["ImportanceQPScale"]), int(cfg["QPDensity"]),
        max_offset=int(cfg["ImportanceQPMaxOffset"]), max_step=max_step,
        base_qp=int(cfg["QP"]),
        rms={n: imp.weight_rms(tensors[n]) for n in full} if max_step > 0 else None)


def main(argv: list[str] | None = None) -> int:
    import nntm
    from nntm.ce.bdrate import bd_rate
    from nntm.ce.models import get_adapter
    from nntm.ce.runner import weight_snr

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--maps", default="", help="importance file (empty: no maps)")
    ap.add_argument("--cfg", nargs="+", default=["cfg/encoder_output_aware.cfg"])
    ap.add_argument("--set", nargs="*", default=[], help="Key=value overrides")
    ap.add_argument("--qps", nargs="+", type=int, required=True)
    ap.add_argument("--anchor-csv", default="", help="CE CSV; rows with --anchor-config")
    ap.add_argument("--anchor-config", default="nncodec")
    ap.add_argument("--label", default="test")
    ap.add_argument("--out", default="", help="append the points to this CSV")
    ap.add_argument("--tensors", action="store_true", help="print per-tensor stats")
    ap.add_argument("--reuse-csv", default="",
                    help="CE CSV of a run of the plain cfg (no --set): a QP whose tensor QPs "
                         "equal the plain cfg's is taken from it instead of coded")
    ap.add_argument("--reuse-config", default="encoder_output_aware")
    ap.add_argument("--reuse-set", nargs="*", default=[],
                    help="Key=value overrides of --cfg that the --reuse-csv run was made with")
    ap.add_argument("--no-eval", action="store_true", help="weight SNR only (no output metric)")
    ap.add_argument("--decode-check", action="store_true",
                    help="decode each stream and check it equals the encoder's reconstruction")
    args = ap.parse_args(argv)

    adapter = get_adapter(args.model)
    tensors = adapter.load()
    maps = None
    if args.maps:
        maps = {k: np.asarray(v) for k, v in nntm.read_model(args.maps).items() if k in tensors}
    overrides = dict(kv.split("=", 1) for kv in args.set)
    overrides = {k: parse_value(v) for k, v in overrides.items()}
    if not maps:
        overrides.setdefault("ImportanceFile", "")
    reuse = {}
    if args.reuse_csv:
        with open(args.reuse_csv, newline="") as f:
            reuse = {int(r["qp"]): r for r in csv.DictReader(f)
                     if r["config"] == args.reuse_config and r["model"] == args.model}
    points = []
    for qp in args.qps:
        cfg = nntm.Config.from_files(args.cfg, overrides={**overrides, "QP": qp,
                                                          "ImportanceFile": ""})
        if qp in reuse:
            plain_set = {k: parse_value(v) for k, v in (kv.split("=", 1) for kv in args.reuse_set)}
            plain = nntm.Config.from_files(args.cfg, overrides={**plain_set, "QP": qp,
                                                                "ImportanceFile": ""})
            if _tensor_qps(tensors, maps, cfg) == _tensor_qps(tensors, maps, plain) and all(
                    cfg[k] == plain[k] for k in plain.keys()
                    if k not in ("ImportanceQPScale", "ImportanceQPMaxOffset",
                                 "ImportanceMaxStep", "QP")):
                r = reuse[qp]
                p = (qp, float(r["bits_per_param"]), float(r["snr_db"]),
                     float(r["snr_norm_db"]), float(r[r["primary_metric"]]))
                points.append(p)
                print(f"{args.label} QP {qp:4d} {p[1]:.4f} bpp  SNR {p[2]:6.2f}  "
                      f"nSNR {p[3]:6.2f}  {adapter.primary_metric} {p[4]:8.4f}  "
                      f"(same tensor QPs as {args.reuse_config}: reused)", flush=True)
                continue
        t0 = time.perf_counter()
        res = nntm.encode_with_recon(dict(tensors), cfg, importance=maps)
        enc_s = time.perf_counter() - t0
        if args.decode_check:
            dec = nntm.decode(res.data)
            bad = [k for k in tensors if dec[k].tobytes() != res.recon[k].tobytes()]
            if bad:
                raise SystemExit(f"QP {qp}: decoded != reconstruction: {bad[:3]}")
        w = weight_snr(tensors, res.recon)
        metrics = ({adapter.primary_metric: float("nan")} if args.no_eval
                   else adapter.evaluate(res.recon))
        bpp = 8 * len(res.data) / w.num_params
        prim = float(metrics[adapter.primary_metric])
        points.append((qp, bpp, w.pooled_db, w.normalised_db, prim))
        print(f"{args.label} QP {qp:4d} {bpp:.4f} bpp  SNR {w.pooled_db:6.2f}  "
              f"nSNR {w.normalised_db:6.2f}  {adapter.primary_metric} {prim:8.4f}  "
              f"enc {enc_s:6.1f} s", flush=True)
        if args.tensors:
            for s in res.stats:
                print(f"    {s.name:60s} {s.layer_type:10s} qp {s.qp!s:>5s} "
                      f"{s.num_params:9d} {s.bits / max(s.num_params, 1):7.3f} bpp "
                      f"snr {s.snr_db:6.2f}")
        if args.out:
            with open(args.out, "a", newline="") as f:
                csv.writer(f).writerow([args.model, args.label, qp, bpp, w.pooled_db,
                                        w.normalised_db, prim, " ".join(args.set)])
    if args.anchor_csv:
        with open(args.anchor_csv, newline="") as f:
            rows = [r for r in csv.DictReader(f)
                    if r["config"] == args.anchor_config and r["model"] == args.model]
        ar = [float(r["bits_per_param"]) for r in rows]
        for key, col, idx in (("output", rows[0]["primary_metric"], 4), ("SNR", "snr_db", 2),
                              ("nSNR", "snr_norm_db", 3)):
            am = [float(r[col]) for r in rows]
            bd = bd_rate(ar, am, [p[1] for p in points], [p[idx] for p in points])
            val = "n/a" if bd.value is None else f"{bd.value:+.2f} %"
            print(f"BD-rate {key:6s} vs {args.anchor_config}: {val}  "
                  f"range {bd.interval}  {bd.note}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
