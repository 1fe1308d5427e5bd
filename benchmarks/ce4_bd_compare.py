"""BD-rates of one label of a ce4_alloc_study CSV against a reference at the same QPs.

    PYTHONPATH=python python benchmarks/ce4_bd_compare.py STUDY.csv MODEL LABEL REF

REF is a CE CSV (its ``test`` rows) or another label of STUDY.csv.  Prints the points
side by side and the pchip BD-rates on weight SNR, normalised SNR and the output metric.
"""

import csv
import sys

from nntm.ce.bdrate import bd_rate


def _rows(path: str, model: str, label: str) -> dict[int, tuple[float, ...]]:
    with open(path, newline="") as f:
        return {int(r[2]): tuple(float(x) for x in r[3:7])
                for r in csv.reader(f) if r[0] == model and r[1] == label}


def main() -> None:
    study, model, label, ref = sys.argv[1:5]
    t = _rows(study, model, label)
    if ref.endswith(".csv"):
        with open(ref, newline="") as f:
            a = {int(r["qp"]): (float(r["bits_per_param"]), float(r["snr_db"]),
                                float(r["snr_norm_db"]), float(r[r["primary_metric"]]))
                 for r in csv.DictReader(f) if r["role"] == "test" and r["model"] == model}
    else:
        a = _rows(study, model, ref)
    qps = [q for q in t if q in a]
    for q in qps:
        change = 100 * (t[q][0] / a[q][0] - 1)
        print(f"QP {q}: rate {t[q][0]:.4f} vs {a[q][0]:.4f} ({change:+.2f} %), "
              f"SNR {t[q][1]:.2f} vs {a[q][1]:.2f}, nSNR {t[q][2]:.2f} vs {a[q][2]:.2f}, "
              f"out {t[q][3]:.3f} vs {a[q][3]:.3f}")
    for i, name in ((1, "wSNR"), (2, "nSNR"), (3, "output")):
        b = bd_rate([a[q][0] for q in qps], [a[q][i] for q in qps],
                    [t[q][0] for q in qps], [t[q][i] for q in qps])
        value = "n/a" if b.value is None else f"{b.value:+.2f} %"
        print(f"BD-rate {name}: {value}  {b.note}")


if __name__ == "__main__":
    main()
