"""SmolLM2's RD curves as perplexity against bits/param, with llama.cpp's formats beside them.

    python benchmarks/smollm2_rd_plot.py --csv results/smollm2_cfgs_vs_nncodec.csv \\
        --grid docs/ce/smollm2/grid.jsonl --png docs/ce/smollm2/ppl_smollm2.png \\
        --rates 3.0 3.5 4.0 4.5

Reads the CE's CSV (every point of one CEApp run, ``model == smollm2``) and the llama.cpp
rows of ``benchmarks/smollm2_grid.py``'s JSON lines; plots perplexity (log scale) and
``kl_db`` against bits/param, one curve per cfg, llama.cpp's formats as single points; and
prints a Markdown table of each cfg's perplexity and KL at the given rates, interpolated
linearly in bits/param on ``log(ppl)`` and on ``kl_db`` between the cfg's two neighbouring
points (no extrapolation: outside a cfg's range the cell is empty).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np


def read_curves(path: Path, model: str = "smollm2") -> dict[str, list[dict[str, float]]]:
    curves: dict[str, list[dict[str, float]]] = {}
    with open(path, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["model"] != model or not row.get("ppl"):
                continue
            point = {k: float(row[k]) for k in ("bits_per_param", "ppl", "kl_db", "kl_mean")}
            point["qp"] = float(row["qp"])
            curves.setdefault(row["config"], []).append(point)
    for points in curves.values():
        points.sort(key=lambda p: p["bits_per_param"])
    return curves


def read_llama(path: Path) -> list[dict[str, object]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if str(row.get("what", "")).startswith("llama.cpp"):
            rows.append(row)
    return rows


def at_rate(points: list[dict[str, float]], rate: float, key: str) -> float | None:
    bits = np.array([p["bits_per_param"] for p in points])
    if len(bits) < 2 or rate < bits[0] or rate > bits[-1]:
        return None
    values = np.array([p[key] for p in points])
    if key == "ppl":
        return float(math.exp(np.interp(rate, bits, np.log(values))))
    return float(np.interp(rate, bits, values))


def matched_table(curves: dict[str, list[dict[str, float]]], rates: list[float]) -> str:
    head = "| cfg | " + " | ".join(f"ppl @ {r:g}" for r in rates) + " | "
    head += " | ".join(f"kl_db @ {r:g}" for r in rates) + " |"
    lines = [head, "| --- |" + " ---: |" * (2 * len(rates))]
    for name, points in curves.items():
        ppl = [at_rate(points, r, "ppl") for r in rates]
        kl = [at_rate(points, r, "kl_db") for r in rates]
        cells = [f"{v:.2f}" if v is not None else "" for v in ppl]
        cells += [f"{v:.2f}" if v is not None else "" for v in kl]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(curves: dict[str, list[dict[str, float]]], llama: list[dict[str, object]],
         ppl0: float | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    for name, points in curves.items():
        bits = [p["bits_per_param"] for p in points]
        left.plot(bits, [p["ppl"] for p in points], "o-", label=name)
        right.plot(bits, [p["kl_db"] for p in points], "o-", label=name)
    for row in llama:
        label = str(row["what"]).replace(" (gguf.quants)", "")
        bits = float(row["bits_per_param"])  # type: ignore[arg-type]
        left.plot([bits], [float(row["ppl"])], "k^")  # type: ignore[arg-type]
        left.annotate(label, (bits, float(row["ppl"])), textcoords="offset points",  # type: ignore[arg-type]
                      xytext=(4, 4), fontsize=8)
        right.plot([bits], [float(row["kl_db"])], "k^")  # type: ignore[arg-type]
        right.annotate(label, (bits, float(row["kl_db"])), textcoords="offset points",  # type: ignore[arg-type]
                       xytext=(4, -10), fontsize=8)
    if ppl0 is not None:
        left.axhline(ppl0, color="grey", lw=0.8, ls="--", label=f"original ({ppl0:.2f})")
    left.set_yscale("log")
    left.set_ylim(top=min(left.get_ylim()[1], 300.0))
    left.set_title("smollm2: perplexity (eval text, 2 044 predicted tokens)")
    left.set_ylabel("perplexity")
    right.set_title("smollm2: kl_db = -10 log10(mean KL)")
    right.set_ylabel("kl_db")
    for ax in (left, right):
        ax.set_xlabel("bits per float parameter (134.5 M)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, required=True)
    parser.add_argument("--grid", type=Path, required=True)
    parser.add_argument("--png", type=Path)
    parser.add_argument("--rates", type=float, nargs="*", default=[3.0, 3.5, 4.0, 4.5])
    parser.add_argument("--ppl0", type=float, default=12.59, help="the original's perplexity")
    args = parser.parse_args(argv)
    curves = read_curves(args.csv)
    llama = read_llama(args.grid)
    print(matched_table(curves, args.rates))
    if args.png:
        plot(curves, llama, args.ppl0, args.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
