"""CE reports: Markdown tables, a CSV of every point, RD plots.

From the :class:`~nntm.ce.runner.Point` list of a CE:

- :func:`bd_summary` computes, per model and per test configuration against
  the anchor, the BD-rate on weight SNR, on per-tensor-normalised SNR and on
  the model's primary output metric, the BD-metric on normalised SNR, and
  the encode/decode time ratios (test time / anchor time, each summed over
  its whole QP sweep).  The "overall" row is the arithmetic mean of the
  models' BD-rates (models with n/a left out) and the geometric mean of the
  time ratios, as in JVET CTC reports.
- :func:`summary_markdown` renders the per-tool summary (JVET style): one table per
  metric, a row per test configuration (tool), a column per model and the overall mean.
- :func:`markdown_report` renders the settings, the summary, the BD table per test and one
  RD table per model: the *deterministic* part, the same for the same points whatever ran
  them (serially, in worker processes, from the cache); then, under
  :data:`RUN_HEADING`, what differs from run to run: the command, machine and date, the
  CE's wall and CPU time, the encode/decode time ratios and every point's times
  (:func:`deterministic_part` cuts the report there).
- :func:`write_csv` writes every point, one row each.
- :func:`plot_model` draws one PNG per model: bits/param on x, weight SNR
  (solid; normalised SNR dashed) in the left panel and the primary metric in
  the right, every configuration with a legend (matplotlib, Agg backend).

Every file is written to a temporary name and renamed, so an interrupted run
never leaves a half-written report.
"""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nntm.ce.bdrate import BDResult, bd_metric, bd_rate
from nntm.ce.runner import Point

__all__ = [
    "RUN_HEADING",
    "TIME_COLUMNS",
    "BDRow",
    "bd_summary",
    "bd_table_markdown",
    "deterministic_part",
    "markdown_report",
    "point_times_markdown",
    "plot_model",
    "rd_table_markdown",
    "summary_markdown",
    "time_table_markdown",
    "write_atomic",
    "write_csv",
]

FIXED_COLUMNS = (
    "model",
    "config",
    "role",
    "qp",
    "bytes",
    "bits",
    "num_params",
    "bits_per_param",
    "snr_db",
    "snr_norm_db",
    "primary_metric",
    "enc_s",
    "dec_s",
    "eval_s",
    "cpu_s",
    "cached",
)

TIME_COLUMNS = ("enc_s", "dec_s", "eval_s", "cpu_s", "cached")
"""CSV columns that differ from run to run (the rest is a function of the points)."""

RUN_HEADING = "## Run and times"
"""The heading after which a report holds only what differs from run to run."""


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        with _suppress():
            os.unlink(tmp)
        raise


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


def _num(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def _metric_digits(key: str) -> int:
    return 2 if key.endswith("_db") or key.endswith("db") else 4


def _groups(points: Iterable[Point]) -> dict[str, dict[str, list[Point]]]:
    """model -> config -> points sorted by rate, in first-seen order."""
    out: dict[str, dict[str, list[Point]]] = {}
    for p in points:
        out.setdefault(p.model, {}).setdefault(p.config, []).append(p)
    for per_model in out.values():
        for pts in per_model.values():
            pts.sort(key=lambda p: (p.bits_per_param, p.qp))
    return out


def _metric_keys(points: Sequence[Point]) -> list[str]:
    keys: list[str] = []
    for p in points:
        for k in p.metrics:
            if k not in keys:
                keys.append(k)
    return keys


# ---------------------------------------------------------------------------
# BD summary
# ---------------------------------------------------------------------------


@dataclass
class BDRow:
    """One row of the BD table: one model (or "overall"), one test config."""

    model: str
    test: str
    anchor: str
    primary_metric: str
    bd_snr: BDResult | None = None
    bd_snr_norm: BDResult | None = None
    bd_primary: BDResult | None = None
    bd_metric_snr_norm: BDResult | None = None
    enc_ratio: float | None = None
    dec_ratio: float | None = None
    num_params: int = 0
    overall_values: dict[str, float | None] = field(default_factory=dict)

    def value(self, key: str) -> float | None:
        if self.overall_values:
            return self.overall_values.get(key)
        res = getattr(self, key)
        return None if res is None else res.value

    def notes(self) -> str:
        parts = []
        for label, res in (
            ("wSNR", self.bd_snr),
            ("nSNR", self.bd_snr_norm),
            (self.primary_metric, self.bd_primary),
        ):
            if res is None:
                continue
            text = "; ".join(t for t in (res.reason, res.note) if t)
            if text:
                parts.append(f"{label}: {text}")
        return "; ".join(parts)


def _curve(
    points: Sequence[Point], get: Callable[[Point], float]
) -> tuple[list[float], list[float]]:
    return [p.bits_per_param for p in points], [get(p) for p in points]


def _ratio(test: Sequence[Point], anchor: Sequence[Point], attr: str) -> float | None:
    a = sum(getattr(p, attr) for p in anchor)
    t = sum(getattr(p, attr) for p in test)
    if a <= 0.0:
        return None
    return t / a


def bd_summary(
    points: Sequence[Point],
    anchor: str,
    tests: Sequence[str] | None = None,
    method: str = "pchip",
    models: Sequence[str] | None = None,
) -> list[BDRow]:
    """BD rows per model and test config, then one "overall" row per test config."""
    groups = _groups(points)
    model_order = list(models) if models is not None else list(groups)
    if tests is None:
        seen: list[str] = []
        for p in points:
            if p.config != anchor and p.config not in seen:
                seen.append(p.config)
        tests = seen
    rows: list[BDRow] = []
    for test in tests:
        per_test: list[BDRow] = []
        for model in model_order:
            per_model = groups.get(model, {})
            if anchor not in per_model or test not in per_model:
                continue
            a_pts, t_pts = per_model[anchor], per_model[test]
            primary = a_pts[0].primary_metric
            row = BDRow(model, test, anchor, primary, num_params=a_pts[0].num_params)
            for attr, get in (
                ("bd_snr", lambda p: p.snr_db),
                ("bd_snr_norm", lambda p: p.snr_norm_db),
                ("bd_primary", lambda p: p.primary),
            ):
                ar, am = _curve(a_pts, get)
                tr, tm = _curve(t_pts, get)
                if attr == "bd_primary" and all(math.isnan(v) for v in am + tm):
                    res = BDResult(None, method, reason="output metric not evaluated")
                else:
                    res = bd_rate(ar, am, tr, tm, method=method)
                setattr(row, attr, res)
            ar, am = _curve(a_pts, lambda p: p.snr_norm_db)
            tr, tm = _curve(t_pts, lambda p: p.snr_norm_db)
            row.bd_metric_snr_norm = bd_metric(ar, am, tr, tm, method=method)
            row.enc_ratio = _ratio(t_pts, a_pts, "enc_s")
            row.dec_ratio = _ratio(t_pts, a_pts, "dec_s")
            per_test.append(row)
        rows.extend(per_test)
        if per_test:
            overall = BDRow("overall", test, anchor, "primary")
            vals: dict[str, float | None] = {}
            for key in ("bd_snr", "bd_snr_norm", "bd_primary", "bd_metric_snr_norm"):
                xs = [r.value(key) for r in per_test]
                ok = [x for x in xs if x is not None]
                vals[key] = sum(ok) / len(ok) if ok else None
            for key in ("enc_ratio", "dec_ratio"):
                rs = [getattr(r, key) for r in per_test]
                ok = [x for x in rs if x is not None and x > 0]
                vals[key] = math.exp(sum(math.log(x) for x in ok) / len(ok)) if ok else None
            overall.overall_values = vals
            overall.enc_ratio = vals["enc_ratio"]
            overall.dec_ratio = vals["dec_ratio"]
            overall.num_params = sum(r.num_params for r in per_test)
            rows.append(overall)
    return rows


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f} %"


def _ratio_text(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.0f} %"


def _tests_of(rows: Sequence[BDRow]) -> list[str]:
    tests: list[str] = []
    for r in rows:
        if r.test not in tests:
            tests.append(r.test)
    return tests


def bd_table_markdown(rows: Sequence[BDRow], method: str = "pchip", times: bool = False) -> str:
    """The BD table as Markdown (one table per test config).

    ``times`` adds the EncT/DecT columns (which differ from run to run).
    """
    out: list[str] = []
    for test in _tests_of(rows):
        sub = [r for r in rows if r.test == test]
        anchor = sub[0].anchor
        out.append(f"BD-rate of **{test}** against **{anchor}** ({method}; negative = saving)")
        out.append("")
        head = (
            "| model | float params | BD-rate wSNR | BD-rate nSNR | BD-rate output "
            "| output metric | BD-nSNR dB |"
        )
        rule = "| --- | ---: | ---: | ---: | ---: | --- | ---: |"
        if times:
            head += " EncT | DecT |"
            rule += " ---: | ---: |"
        out += [head, rule]
        notes: list[str] = []
        for r in sub:
            bd_m = r.value("bd_metric_snr_norm")
            name = f"**{r.model}**" if r.model == "overall" else r.model
            line = (
                f"| {name} | {r.num_params:,} | {_pct(r.value('bd_snr'))} "
                f"| {_pct(r.value('bd_snr_norm'))} | {_pct(r.value('bd_primary'))} "
                f"| {r.primary_metric} | {_num(bd_m, 3) if bd_m is not None else 'n/a'} |"
            )
            if times:
                line += f" {_ratio_text(r.enc_ratio)} | {_ratio_text(r.dec_ratio)} |"
            out.append(line)
            if r.model != "overall" and r.notes():
                notes.append(f"- {r.model}: {r.notes()}")
        if notes:
            out.append("")
            out.append("Notes:")
            out.extend(notes)
        out.append("")
    if not out:
        return "No BD-rate: the anchor and the test have no model in common.\n"
    return "\n".join(out)


SUMMARY_METRICS = (
    ("bd_primary", "output metric (each model's primary metric)"),
    ("bd_snr_norm", "nSNR (per-tensor-normalised weight SNR)"),
    ("bd_snr", "wSNR (pooled weight SNR)"),
)


def summary_markdown(
    rows: Sequence[BDRow], method: str = "pchip", models: Sequence[str] | None = None
) -> str:
    """The per-tool summary (JVET style): per metric, tools x models BD-rates.

    One table per metric of :data:`SUMMARY_METRICS`; a row per test configuration (tool),
    a column per model (``models`` order) and "overall" (the mean over the models).
    """
    if not rows:
        return "No BD-rate: the anchor and the tests have no model in common.\n"
    tests = _tests_of(rows)
    order = list(models) if models is not None else []
    for r in rows:
        if r.model != "overall" and r.model not in order:
            order.append(r.model)
    present = [m for m in order if any(r.model == m for r in rows)]
    cells = {(r.test, r.model): r for r in rows}
    anchor = rows[0].anchor
    primaries = []
    for m in present:
        row = next(r for r in rows if r.model == m)
        primaries.append(f"{m}: {row.primary_metric}")
    out = [
        f"BD-rates against **{anchor}** ({method}; negative = saving). "
        f"Output metrics: {', '.join(primaries)}.",
        "",
    ]
    for key, label in SUMMARY_METRICS:
        out.append(f"BD-rate on {label}:")
        out.append("")
        out.append("| tool | " + " | ".join([*present, "**overall**"]) + " |")
        out.append("| --- |" + " ---: |" * (len(present) + 1))
        for test in tests:
            line = [test]
            for m in [*present, "overall"]:
                r = cells.get((test, m))
                line.append(_pct(r.value(key)) if r is not None else "")
            out.append("| " + " | ".join(line) + " |")
        out.append("")
    return "\n".join(out)


def time_table_markdown(rows: Sequence[BDRow]) -> str:
    """EncT/DecT per tool and model: test time / anchor time over the QP sweep."""
    if not rows:
        return ""
    tests = _tests_of(rows)
    models: list[str] = []
    for r in rows:
        if r.model not in models and r.model != "overall":
            models.append(r.model)
    cols = [*models, "overall"]
    cells = {(r.test, r.model): r for r in rows}
    out = [
        "EncT / DecT: test time / anchor time, each summed over its QP sweep "
        "(overall: geometric mean).",
        "",
        "| tool | " + " | ".join(f"{m} EncT | {m} DecT" for m in cols) + " |",
        "| --- |" + " ---: | ---: |" * len(cols),
    ]
    for test in tests:
        line = [test]
        for m in cols:
            r = cells.get((test, m))
            line += ["", ""] if r is None else [_ratio_text(r.enc_ratio),
                                                _ratio_text(r.dec_ratio)]
        out.append("| " + " | ".join(line) + " |")
    out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------
# RD tables, CSV
# ---------------------------------------------------------------------------


def rd_table_markdown(model: str, points: Sequence[Point], times: bool = False) -> str:
    """The RD table of one model: every point of every config (``times``: enc/dec seconds)."""
    keys = _metric_keys(points)
    primary = points[0].primary_metric if points else ""
    head = ["cfg", "QP", "bits/param", "wSNR dB", "nSNR dB"]
    head += [f"{k} (primary)" if k == primary else k for k in keys]
    if times:
        head += ["enc s", "dec s"]
    out = [f"### {model}", "", "| " + " | ".join(head) + " |"]
    out.append("| --- | ---: |" + " ---: |" * (len(head) - 2))
    for p in points:
        cells = [
            p.config,
            str(p.qp),
            f"{p.bits_per_param:.4f}",
            _num(p.snr_db),
            _num(p.snr_norm_db),
        ]
        cells += [_num(p.metrics.get(k, math.nan), _metric_digits(k)) for k in keys]
        if times:
            cells += [f"{p.enc_s:.3f}", f"{p.dec_s:.3f}"]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    return "\n".join(out)


def point_times_markdown(points: Sequence[Point]) -> str:
    """Every point's encode, decode, evaluation and CPU seconds; cached ones marked."""
    out = [
        "| model | cfg | QP | enc s | dec s | eval s | CPU s | |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for p in points:
        out.append(
            f"| {p.model} | {p.config} | {p.qp} | {p.enc_s:.3f} | {p.dec_s:.3f} "
            f"| {p.eval_s:.3f} | {p.cpu_s:.3f} | {'cached' if p.cached else ''} |"
        )
    n_cached = sum(p.cached for p in points)
    if n_cached:
        out.append("")
        out.append(
            f"{n_cached} of {len(points)} points came from the point cache: their times are "
            "those of the run that computed them."
        )
    out.append("")
    return "\n".join(out)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def csv_text(points: Sequence[Point], times: bool = True) -> str:
    """Every point as CSV: the fixed columns, then every metric seen.

    ``times=False`` leaves out :data:`TIME_COLUMNS` (what differs from run to run).
    """
    fixed = [c for c in FIXED_COLUMNS if times or c not in TIME_COLUMNS]
    columns = fixed + _metric_keys(points)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for p in points:
        writer.writerow({k: _cell(v) for k, v in p.row().items() if k in columns})
    return buf.getvalue()


def write_csv(path: str | os.PathLike[str], points: Sequence[Point]) -> None:
    write_atomic(path, csv_text(points))


def markdown_report(
    points: Sequence[Point],
    anchor: str,
    tests: Sequence[str] | None = None,
    title: str = "Core experiment",
    header_lines: Sequence[str] = (),
    method: str = "pchip",
    models: Sequence[str] | None = None,
    plots: dict[str, str] | None = None,
    run_lines: Sequence[str] = (),
) -> str:
    """The whole Markdown report.

    Deterministic part: title, ``header_lines`` (settings), the per-tool summary, the BD
    table of each test, the RD tables (and plot links).  Then :data:`RUN_HEADING` with
    ``run_lines`` (command, machine, wall and CPU time, ...), the time ratios and every
    point's times.
    """
    rows = bd_summary(points, anchor, tests, method=method, models=models)
    groups = _groups(points)
    out = [f"# {title}", ""]
    out.extend(header_lines)
    if header_lines:
        out.append("")
    out.append("## Summary")
    out.append("")
    out.append(summary_markdown(rows, method, models))
    out.append("## BD-rate")
    out.append("")
    out.append(bd_table_markdown(rows, method))
    out.append(
        "wSNR: weight SNR pooled over all float tensors; nSNR: per-tensor-normalised SNR "
        "(each tensor scaled to unit energy); output: the model's primary output metric. "
        "Overall: mean BD-rate over models."
    )
    out.append("")
    out.append("## RD points")
    out.append("")
    model_order = models if models is not None else list(groups)
    for model in model_order:
        if model not in groups:
            continue
        pts = [p for cfg_pts in groups[model].values() for p in cfg_pts]
        out.append(rd_table_markdown(model, pts))
        if plots and model in plots:
            out.append(f"![RD curves of {model}]({plots[model]})")
            out.append("")
    out.append(RUN_HEADING)
    out.append("")
    out.extend(run_lines)
    if run_lines:
        out.append("")
    if rows:
        out.append(time_table_markdown(rows))
    ordered = [p for m in model_order if m in groups for pts in groups[m].values() for p in pts]
    out.append(point_times_markdown(ordered))
    return "\n".join(out).rstrip() + "\n"


def deterministic_part(report_text: str) -> str:
    """The part of a report before :data:`RUN_HEADING`: the same for the same points."""
    head, _sep, _tail = report_text.partition("\n" + RUN_HEADING + "\n")
    return head


# ---------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot_model(path: str | os.PathLike[str], model: str, points: Sequence[Point]) -> None:
    """One PNG: weight SNR (and nSNR dashed) and the primary metric vs bits/param."""
    plt = _pyplot()
    groups = _groups(points).get(model, {})
    primary = next((p.primary_metric for p in points if p.model == model), "")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (cfg, pts) in enumerate(groups.items()):
        c = colours[i % len(colours)]
        x = [p.bits_per_param for p in pts]
        ax1.plot(x, [p.snr_db for p in pts], "o-", color=c, label=f"{cfg} wSNR")
        ax1.plot(x, [p.snr_norm_db for p in pts], "s--", color=c, label=f"{cfg} nSNR", alpha=0.8)
        ax2.plot(x, [p.primary for p in pts], "o-", color=c, label=cfg)
    ax1.set_xlabel("bits per float parameter")
    ax1.set_ylabel("SNR [dB]")
    ax1.set_title(f"{model}: weight SNR (solid) / normalised (dashed)")
    ax2.set_xlabel("bits per float parameter")
    ax2.set_ylabel(primary)
    ax2.set_title(f"{model}: {primary}")
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_atomic(path, buf.getvalue())
