"""CEApp: run a core experiment, a test configuration against an anchor.

::

    CEApp -c cfg/ce/ctc.cfg --Anchor=cfg/encoder_anchor.cfg --Test=cfg/encoder_xyz.cfg \\
          [--Models=minilm,mobilenetv2] [--ResultsDir=results/ce_x] [--Name=xyz]
    CEApp -c cfg/ce/ctc.cfg --Anchor=nncodec --Test=cfg/encoder_anchor.cfg
    CEApp -c cfg/ce/ctc.cfg --Anchor=nncodec "--Test=cfg/a.cfg;cfg/b.cfg" --Jobs 2

Options are HM-style (``-c`` cfg files layered, ``--Key=value`` wins); the
lower-case spellings ``--anchor``, ``--test``, ``--models`` (any key, case
insensitively) are accepted too.  For every model it codes the QP sweep of
the anchor and of each test (``QPs`` for NNTM cfgs, ``NNCodecQPs`` for
NNCodec), measures each point on the decoded tensors
(:mod:`nntm.ce.runner`), and writes ``<Name>.md``, ``<Name>.csv`` and
``rd_<model>.png`` to ``ResultsDir``; the summary and the BD tables are
printed at the end.

Each (model, configuration, QP) point is a task (:mod:`nntm.ce.points`): its
results are kept in the point cache (``Cache``, default ``~/.cache/nntm/ce``;
``NoCache`` turns it off) under a key of everything they depend on, so an
interrupted CE resumes where it stopped, an anchor is computed once per
machine, and a changed cfg recomputes only the points it changes.  Missing
points run in ``Jobs`` worker processes (default: every core); the report is
the same as a serial run's except for its last section, the times.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from nntm.config import Config, Option, parse_app_args
from nntm.errors import ConfigError, NntmError

PROG = "CEApp"
DESCRIPTION = (
    "Core experiment: code every CTC model over a QP sweep with an anchor and a test "
    "configuration, measure them on the decoded tensors and report BD-rates."
)

DEFAULT_MODELS = "digits,minilm,mobilenetv2,mtcnn"

CE_OPTIONS: tuple[Option, ...] = (
    Option(
        "Anchor",
        "str",
        "cfg/encoder_anchor.cfg",
        "anchor: NNTM cfg file(s) separated by commas, or 'nncodec'",
        group="app",
    ),
    Option(
        "Test",
        "str",
        "",
        "tests separated by ';', each NNTM cfg file(s) separated by commas or 'nncodec' "
        "(empty: anchor only)",
        group="app",
    ),
    Option(
        "AnchorName",
        "str",
        "",
        "label of the anchor in tables (default: from its cfg)",
        group="app",
    ),
    Option(
        "TestName",
        "str",
        "",
        "labels of the tests in tables, separated by ';' (default: from their cfgs)",
        group="app",
    ),
    Option(
        "AnchorOptions",
        "str",
        "",
        "extra NNTM options for the anchor, 'Key=value;Key=value'",
        group="app",
    ),
    Option(
        "TestOptions",
        "str",
        "",
        "extra NNTM options for every test, 'Key=value;Key=value'",
        group="app",
    ),
    Option(
        "Models",
        "str",
        DEFAULT_MODELS,
        "CTC models, separated by commas or spaces",
        group="app",
    ),
    Option(
        "QPs",
        "intlist",
        (-20, -24, -28, -32, -36, -40, -44),
        "QP sweep of NNTM configurations",
        minimum=-128,
        maximum=127,
        group="app",
    ),
    Option(
        "NNCodecQPs",
        "intlist",
        (-20, -24, -28, -32, -36, -40),
        "QP sweep of NNCodec",
        minimum=-128,
        maximum=127,
        group="app",
    ),
    Option(
        "ModelQPOffsets",
        "str",
        "",
        "per-model shift of both QP sweeps, 'model=offset,model=offset' (e.g. mtcnn=-4)",
        group="app",
    ),
    Option(
        "ModelCfgDir",
        "str",
        "cfg/models",
        "folder of per-model NNTM cfgs (<model>.cfg, layered after an NNTM cfg if present)",
        group="app",
    ),
    Option("ResultsDir", "str", "results/ce", "folder for the report, CSV and plots", group="app"),
    Option("Name", "str", "", "report name (default: <test>_vs_<anchor>)", group="app"),
    Option(
        "BDMethod",
        "choice",
        "pchip",
        "BD interpolation: pchip (piecewise cubic) or cubic (polynomial fit)",
        choices=("pchip", "cubic"),
        group="app",
    ),
    Option("Plots", "bool", True, "write rd_<model>.png (needs matplotlib)", group="app"),
    Option(
        "Evaluate",
        "bool",
        True,
        "run each decoded model on its inputs (0: weight SNR only, no output metric)",
        group="app",
    ),
    Option(
        "Jobs",
        "int",
        0,
        "worker processes computing points (0: one per core; 1: in this process)",
        minimum=0,
        maximum=4096,
        group="app",
    ),
    Option(
        "Cache",
        "str",
        "",
        "point cache folder (default: $XDG_CACHE_HOME/nntm/ce or ~/.cache/nntm/ce)",
        group="app",
    ),
    Option("NoCache", "bool", False, "compute every point; read and write no cache",
           group="app"),
    Option(
        "Ray",
        "str",
        "",
        "compute the points on a Ray cluster: auto or HOST:PORT (pip install 'nntm[ray]'); "
        "Jobs then counts actors (0: one per cluster CPU)",
        group="app",
    ),
)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def _fold_case(argv: Sequence[str], table: Sequence[Option]) -> list[str]:
    """Rewrite ``--anchor=x`` / ``--models x`` to the table's spelling of the key."""
    by_lower: dict[str, str] = {}
    for opt in table:
        by_lower.setdefault(opt.key.lower(), opt.key)
    keys = {opt.key for opt in table}
    out = []
    for tok in argv:
        if tok.startswith("--") and len(tok) > 2:
            body, eq, value = tok[2:].partition("=")
            if body not in keys and body.lower() in by_lower:
                tok = f"--{by_lower[body.lower()]}{eq}{value}"
        out.append(tok)
    return out


def parse_args(argv: Sequence[str]) -> Config:
    cfg, _files = parse_app_args(_fold_case(argv, CE_OPTIONS), CE_OPTIONS, PROG, DESCRIPTION)
    return cfg


def split_models(text: str) -> list[str]:
    models = [m for m in re.split(r"[\s,]+", text.strip()) if m]
    if not models:
        raise ConfigError("Models: no model given")
    dupes = sorted({m for m in models if models.count(m) > 1})
    if dupes:
        raise ConfigError(f"Models: {', '.join(dupes)} given twice")
    return models


def parse_overrides(text: str, key: str) -> dict[str, str]:
    """``"RDOQ=0; LambdaScale=1.2"`` -> ``{"RDOQ": "0", "LambdaScale": "1.2"}``."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        k, eq, v = part.partition("=")
        if not eq or not k.strip():
            raise ConfigError(f"{key}: expected 'Key=value' items separated by ';', got {part!r}")
        out[k.strip()] = v.strip()
    return out


def parse_qp_offsets(text: str) -> dict[str, int]:
    """``"mtcnn=-4, digits=2"`` -> ``{"mtcnn": -4, "digits": 2}``."""
    out: dict[str, int] = {}
    for part in (p.strip() for p in re.split(r"[,;\s]+", text.strip())):
        if not part:
            continue
        model, eq, value = part.partition("=")
        try:
            if not eq or not model:
                raise ValueError
            out[model] = int(value)
        except ValueError:
            raise ConfigError(
                f"ModelQPOffsets: expected 'model=offset' items, got {part!r}"
            ) from None
    return out


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_") or "ce"


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def _log(line: str) -> None:
    print(line, flush=True)


def split_tests(spec: str, names: str) -> list[tuple[str, str | None]]:
    """``"a.cfg;b.cfg,c.cfg"`` and ``"x;y"`` -> ``[("a.cfg", "x"), ("b.cfg,c.cfg", "y")]``."""
    specs = [t.strip() for t in spec.split(";") if t.strip()]
    labels = [n.strip() for n in names.split(";")] if names.strip() else []
    if labels and len(labels) != len(specs):
        raise ConfigError(
            f"TestName: {len(labels)} label(s) for {len(specs)} test(s); separate both by ';'"
        )
    return [(t, (labels[k] or None) if labels else None) for k, t in enumerate(specs)]


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the point workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _seconds(value: float) -> str:
    if value >= 120.0:
        return f"{value:.1f} s ({value / 60.0:.1f} min)"
    return f"{value:.2f} s"


def run(cfg: Config, argv: Sequence[str]) -> int:
    from nntm.ce import report
    from nntm.ce.identity import tensors_sha256
    from nntm.ce.models import get_adapter
    from nntm.ce.points import (
        Outcome,
        PointCache,
        PointTask,
        default_cache_dir,
        default_jobs,
        model_identity,
        point_key,
        run_points,
    )
    from nntm.ce.runner import NNCODEC, Codec, Point, make_codec, progress_line

    wall0 = time.perf_counter()
    cpu0 = _cpu_seconds()
    models = split_models(str(cfg["Models"]))
    models_explicit = cfg.source("Models") == "command line"
    model_cfg_dir = str(cfg["ModelCfgDir"]) or None

    def build(role: str, spec: str, label: str | None) -> Codec:
        overrides = parse_overrides(str(cfg[f"{role}Options"]), f"{role}Options")
        codec = make_codec(spec, name=label, model_cfg_dir=model_cfg_dir, overrides=overrides)
        ok, why = codec.available()
        if not ok:
            raise ConfigError(f"{role} {codec.describe()} cannot run here: {why}")
        if why:
            _log(f"{PROG}: note: {role} {codec.name}: {why}")
        return codec

    anchor_spec = str(cfg["Anchor"]).strip()
    if not anchor_spec:
        raise ConfigError("Anchor: no anchor given (an NNTM cfg file or 'nncodec')")
    anchor = build("Anchor", anchor_spec, str(cfg["AnchorName"]).strip() or None)
    tests = [build("Test", spec, label)
             for spec, label in split_tests(str(cfg["Test"]), str(cfg["TestName"]))]
    for test in tests:
        if test.name == anchor.name:
            anchor.name, test.name = f"{anchor.name}(anchor)", f"{test.name}(test)"
    names = [t.name for t in tests]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"tests with the same label {', '.join(dupes)}: set TestName")
    codecs: list[tuple[str, Codec]] = [("anchor", anchor)] + [("test", t) for t in tests]

    def qps_for(codec: Codec) -> tuple[int, ...]:
        key = "NNCodecQPs" if codec.spec == NNCODEC else "QPs"
        qps = tuple(cfg[key])  # type: ignore[arg-type]
        if not qps:
            raise ConfigError(f"{key}: empty QP sweep")
        return qps

    qp_offsets = parse_qp_offsets(str(cfg["ModelQPOffsets"]))

    adapters = []
    for name in models:
        adapter = get_adapter(name)
        ok, why = adapter.available()
        if not ok:
            if models_explicit:
                raise ConfigError(f"model {name!r} is not available: {why}")
            _log(f"{PROG}: skipping model {name!r}: {why}")
            continue
        adapters.append(adapter)
    if not adapters:
        raise ConfigError(f"none of the models {', '.join(models)} is available here")

    results = Path(str(cfg["ResultsDir"]))
    default_name = "_vs_".join([*(t.name for t in tests), anchor.name]) if tests else anchor.name
    report_name = _safe(str(cfg["Name"]).strip() or default_name)
    method = str(cfg["BDMethod"])
    evaluate = bool(cfg["Evaluate"])
    ray_address = str(cfg["Ray"]).strip()
    pool = None
    if ray_address:
        from nntm.ce.ray_backend import RayRunner

        pool = RayRunner(ray_address, actors=int(cfg["Jobs"]))  # type: ignore[call-overload]
    jobs = int(cfg["Jobs"]) or default_jobs()  # type: ignore[call-overload]
    cache = None if cfg["NoCache"] else PointCache(str(cfg["Cache"]) or default_cache_dir())
    plots_wanted = bool(cfg["Plots"])
    if plots_wanted and not report.matplotlib_available():
        _log(f"{PROG}: note: matplotlib is not installed; no RD plots (pip install matplotlib)")
        plots_wanted = False

    _log(f"{PROG}: anchor {anchor.describe()}, QPs {' '.join(map(str, qps_for(anchor)))}")
    for test in tests:
        _log(f"{PROG}: test   {test.describe()}, QPs {' '.join(map(str, qps_for(test)))}")
    _log(f"{PROG}: models {', '.join(a.name for a in adapters)}; results in {results}/")
    _log(f"{PROG}: " + (f"Ray cluster {ray_address}" if ray_address else f"{jobs} job(s)")
         + "; point cache "
         + (f"{cache.root}" if cache is not None else "off (NoCache)"))

    if cache is not None:
        try:
            cache.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"Cache: cannot use {cache.root} ({exc.strerror or exc}); "
                "give another --Cache folder or --NoCache"
            ) from None

    # -- the points, in report order: model, configuration, QP ---------------------
    tasks: list[PointTask] = []
    labels: list[tuple[str, str, str, int]] = []
    for adapter in adapters:
        model_id = None
        if cache is not None:
            model_id = model_identity(adapter, tensors_sha256(adapter.load()))
        shift = qp_offsets.get(adapter.name, 0)
        for index, (role, codec) in enumerate(codecs):
            for qp in (q + shift for q in qps_for(codec)):
                key = None
                if model_id is not None:
                    ident = codec.cache_identity(adapter.name, qp)
                    key = None if ident is None else point_key(model_id, ident, qp, evaluate)
                tasks.append(PointTask(adapter.name, index, qp, evaluate, key))
                labels.append((adapter.name, codec.name, role, qp))

    model_names = [a.name for a in adapters]
    header = [
        f"- anchor: `{anchor.spec}` ({anchor.name})",
        *(f"- test: `{t.spec}` ({t.name})" for t in tests),
        *([] if tests else ["- test: none"]),
        f"- models: {', '.join(model_names)}",
        f"- QPs: NNTM {' '.join(map(str, cfg['QPs']))}; "  # type: ignore[arg-type]
        f"NNCodec {' '.join(map(str, cfg['NNCodecQPs']))}",  # type: ignore[arg-type]
        f"- per-model QP offsets: {cfg['ModelQPOffsets'] or 'none'}",
        f"- BD method: {method}",
        f"- output metrics: {'evaluated' if evaluate else 'not evaluated (Evaluate 0)'}",
    ]
    started = datetime.datetime.now().isoformat(timespec="seconds")
    done: dict[int, Point] = {}
    left = {m: sum(1 for t in tasks if t.model == m) for m in model_names}
    plots: dict[str, str] = {}

    def run_lines(final: bool) -> list[str]:
        computed = sum(1 for p in done.values() if not p.cached)
        lines = [
            f"- command: `{shlex.join([PROG, *argv])}`",
            f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}; run {started}",
            (f"- Ray cluster: {ray_address}" if ray_address else f"- jobs: {jobs}")
            + "; point cache: "
            + (f"`{cache.root}`" if cache is not None else "off"),
            f"- points: {len(done)} of {len(tasks)}: {computed} computed, "
            f"{len(done) - computed} from the cache",
        ]
        if final:
            lines.append(
                f"- wall time {_seconds(time.perf_counter() - wall0)}, CPU time "
                f"{_seconds(_cpu_seconds() - cpu0)} (this process and its workers)"
            )
            if ray_address:  # Ray's actors are not our children: their points' CPU time
                actors_cpu = sum(p.cpu_s for p in done.values() if not p.cached)
                lines.append(f"- CPU time of the computed points in Ray's actors "
                             f"{_seconds(actors_cpu)} (not in the CPU time above)")
        else:
            lines.append("- run still going (partial report)")
        return lines

    def write_reports(final: bool) -> None:
        complete = {m for m in model_names if left[m] == 0}
        points = [done[i] for i in range(len(tasks)) if i in done and tasks[i].model in complete]
        md = report.markdown_report(
            points,
            anchor.name,
            [t.name for t in tests],
            title=f"CE {report_name}",
            header_lines=header,
            method=method,
            models=model_names,
            plots=plots,
            run_lines=run_lines(final),
        )
        report.write_atomic(results / f"{report_name}.md", md)
        report.write_csv(results / f"{report_name}.csv", points)

    def on_done(index: int, outcome: Outcome) -> None:
        model, config_name, role, qp = labels[index]
        point = Point.build(model, config_name, role, qp, outcome.data, outcome.timing)
        done[index] = point
        _log(progress_line(point))
        left[model] -= 1
        if left[model] == 0:
            if plots_wanted:
                png = f"rd_{_safe(model)}.png"
                report.plot_model(
                    results / png, model,
                    [done[i] for i in sorted(done) if tasks[i].model == model],  # task order
                )
                plots[model] = png
            write_reports(final=False)

    run_points(
        tasks,
        [c for _role, c in codecs],
        adapters={a.name: a for a in adapters},
        jobs=jobs,
        cache=cache,
        on_done=on_done,
        pool=pool,
    )
    write_reports(final=True)
    points = [done[i] for i in range(len(tasks))]
    computed = sum(1 for p in points if not p.cached)
    _log("")
    if tests:
        rows = report.bd_summary(
            points, anchor.name, [t.name for t in tests], method=method, models=model_names
        )
        _log(report.summary_markdown(rows, method, model_names))
        _log(report.bd_table_markdown(rows, method, times=True))
    _log(f"{PROG}: points: {len(points)}: {computed} computed, "
         f"{len(points) - computed} from the cache")
    _log(
        f"{PROG}: wrote {results / (report_name + '.md')}, {results / (report_name + '.csv')}"
        + (f" and {len(plots)} plot(s)" if plots else "")
        + f"; wall time {_seconds(time.perf_counter() - wall0)}, "
        f"CPU time {_seconds(_cpu_seconds() - cpu0)}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``CEApp``; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = parse_args(args)
        return run(cfg, args)
    except SystemExit as exc:  # --help
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except NntmError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
