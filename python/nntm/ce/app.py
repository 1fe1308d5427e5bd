"""CEApp: run a core experiment, a test configuration against an anchor.

::

    CEApp -c cfg/ce/ctc.cfg --Anchor=cfg/encoder_anchor.cfg --Test=cfg/encoder_xyz.cfg \\
          [--Models=minilm,mobilenetv2] [--ResultsDir=results/ce_x] [--Name=xyz]
    CEApp -c cfg/ce/ctc.cfg --Anchor=nncodec --Test=cfg/encoder_anchor.cfg

Options are HM-style (``-c`` cfg files layered, ``--Key=value`` wins); the
lower-case spellings ``--anchor``, ``--test``, ``--models`` (any key, case
insensitively) are accepted too.  For every model it codes the QP sweep of
the anchor and of the test (``QPs`` for NNTM cfgs, ``NNCodecQPs`` for
NNCodec), measures each point on the decoded tensors
(:mod:`nntm.ce.runner`), and writes ``<Name>.md``, ``<Name>.csv`` and
``rd_<model>.png`` to ``ResultsDir``; the BD table is printed at the end.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
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
        "test: NNTM cfg file(s) separated by commas, or 'nncodec' (empty: anchor only)",
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
        "TestName", "str", "", "label of the test in tables (default: from its cfg)", group="app"
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
        "extra NNTM options for the test, 'Key=value;Key=value'",
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


def run(cfg: Config, argv: Sequence[str]) -> int:
    from nntm.ce import report
    from nntm.ce.models import get_adapter
    from nntm.ce.runner import NNCODEC, Codec, Point, make_codec, run_sweep

    models = split_models(str(cfg["Models"]))
    models_explicit = cfg.source("Models") == "command line"
    model_cfg_dir = str(cfg["ModelCfgDir"]) or None

    def build(role: str) -> Codec | None:
        spec = str(cfg[role]).strip()
        if not spec:
            return None
        overrides = parse_overrides(str(cfg[f"{role}Options"]), f"{role}Options")
        label = str(cfg[f"{role}Name"]).strip() or None
        codec = make_codec(spec, name=label, model_cfg_dir=model_cfg_dir, overrides=overrides)
        ok, why = codec.available()
        if not ok:
            raise ConfigError(f"{role} {codec.describe()} cannot run here: {why}")
        if why:
            _log(f"{PROG}: note: {role} {codec.name}: {why}")
        return codec

    anchor = build("Anchor")
    if anchor is None:
        raise ConfigError("Anchor: no anchor given (an NNTM cfg file or 'nncodec')")
    test = build("Test")
    if test is not None and test.name == anchor.name:
        anchor.name, test.name = f"{anchor.name}(anchor)", f"{test.name}(test)"
    codecs: list[tuple[str, Codec]] = [("anchor", anchor)]
    if test is not None:
        codecs.append(("test", test))

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
    report_name = _safe(
        str(cfg["Name"]).strip()
        or (f"{test.name}_vs_{anchor.name}" if test is not None else anchor.name)
    )
    method = str(cfg["BDMethod"])
    plots_wanted = bool(cfg["Plots"])
    if plots_wanted and not report.matplotlib_available():
        _log(f"{PROG}: note: matplotlib is not installed; no RD plots (pip install matplotlib)")
        plots_wanted = False

    _log(f"{PROG}: anchor {anchor.describe()}, QPs {' '.join(map(str, qps_for(anchor)))}")
    if test is not None:
        _log(f"{PROG}: test   {test.describe()}, QPs {' '.join(map(str, qps_for(test)))}")
    _log(f"{PROG}: models {', '.join(a.name for a in adapters)}; results in {results}/")

    t_start = time.perf_counter()
    points: list[Point] = []
    plots: dict[str, str] = {}
    model_names = [a.name for a in adapters]
    header = [
        f"- anchor: `{anchor.spec}` ({anchor.name})",
        f"- test: `{test.spec}` ({test.name})" if test is not None else "- test: none",
        f"- models: {', '.join(model_names)}",
        f"- QPs: NNTM {' '.join(map(str, cfg['QPs']))}; "  # type: ignore[arg-type]
        f"NNCodec {' '.join(map(str, cfg['NNCodecQPs']))}",  # type: ignore[arg-type]
        f"- per-model QP offsets: {cfg['ModelQPOffsets'] or 'none'}",
        f"- BD method: {method}",
        f"- command: `{' '.join([PROG, *argv])}`",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; "
        f"run {datetime.datetime.now().isoformat(timespec='seconds')}",
    ]

    def write_reports() -> str:
        md = report.markdown_report(
            points,
            anchor.name,
            [test.name] if test is not None else [],
            title=f"CE {report_name}",
            header_lines=header,
            method=method,
            models=model_names,
            plots=plots,
        )
        report.write_atomic(results / f"{report_name}.md", md)
        report.write_csv(results / f"{report_name}.csv", points)
        return md

    for adapter in adapters:
        tensors = adapter.load()
        for role, codec in codecs:
            shift = qp_offsets.get(adapter.name, 0)
            points += run_sweep(
                adapter,
                codec,
                tuple(qp + shift for qp in qps_for(codec)),
                tensors=tensors,
                role=role,
                log=_log,
                evaluate=bool(cfg["Evaluate"]),
            )
        if plots_wanted:
            png = f"rd_{_safe(adapter.name)}.png"
            report.plot_model(
                results / png, adapter.name, [p for p in points if p.model == adapter.name]
            )
            plots[adapter.name] = png
        write_reports()
        del tensors

    write_reports()
    _log("")
    if test is not None:
        rows = report.bd_summary(
            points, anchor.name, [test.name], method=method, models=model_names
        )
        _log(report.bd_table_markdown(rows, method))
    _log(
        f"{PROG}: wrote {results / (report_name + '.md')}, {results / (report_name + '.csv')}"
        + (f" and {len(plots)} plot(s)" if plots else "")
        + f" in {time.perf_counter() - t_start:.1f} s"
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
