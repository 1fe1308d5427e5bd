"""CE points as tasks: cache keys, the point cache, resumed and parallel CEApp runs."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from nntm.ce import app, points, report
from nntm.ce.identity import digest, tensors_sha256
from nntm.ce.runner import NntmCodec, Point, PointData, PointTiming
from nntm.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
QUICK_CFG = ROOT / "cfg" / "ce" / "quick.cfg"
ANCHOR_CFG = ROOT / "cfg" / "encoder_anchor.cfg"
PROGRESS = re.compile(r"^\[(\w+)\] (\S+)\s+QP\s+(-?\d+) ")


def _needs_digits() -> None:
    pytest.importorskip("nntm._nntm_c")
    from nntm.ce.models import get_adapter

    ok, why = get_adapter("digits").available()
    if not ok:
        pytest.skip(why)


def _data(value: float = 30.0) -> PointData:
    return PointData(1000, 4000, value, value + 1, {"b_metric": 2.0, "a_metric": 1.0}, "b_metric")


# ---------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------


def test_tensors_hash_sees_names_dtypes_shapes_and_values() -> None:
    base = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.array(3, np.int64)}
    h = tensors_sha256(base)
    assert h == tensors_sha256({k: v.copy() for k, v in base.items()})
    variants = [
        {"v": base["w"], "n": base["n"]},
        {"w": base["w"].astype(np.float64), "n": base["n"]},
        {"w": base["w"].reshape(3, 2), "n": base["n"]},
        {"w": base["w"] + np.float32(1e-6), "n": base["n"]},
        {"n": base["n"], "w": base["w"]},
    ]
    assert len({h, *(tensors_sha256(v) for v in variants)}) == 1 + len(variants)


def test_nntm_key_is_the_resolved_config_not_the_file_name(tmp_path: Path) -> None:
    pytest.importorskip("nntm._nntm_c")
    copy = tmp_path / "renamed.cfg"
    copy.write_text(ANCHOR_CFG.read_text())
    a = NntmCodec([ANCHOR_CFG], name="a").cache_identity("digits", -30)
    b = NntmCodec([copy], name="b").cache_identity("digits", -30)
    assert a is not None and b is not None
    assert digest(a) == digest(b)  # same values, other name and file: same points
    assert "QP" in a["config"] and a["config"]["QP"] == "-30"
    assert set(a["build"]) == {"nntm_version", "format_version", "python_sha256",
                               "extension_sha256"}
    changed = [
        NntmCodec([ANCHOR_CFG]).cache_identity("digits", -31),
        NntmCodec([ANCHOR_CFG], overrides={"LambdaScale": "0.37"}).cache_identity("digits", -30),
    ]
    assert len({digest(a), *(digest(c) for c in changed)}) == 3
    # a value that names a file puts the file's hash in the key
    maps = tmp_path / "maps.npz"
    maps.write_bytes(b"one")
    with_file = NntmCodec([ANCHOR_CFG], overrides={"ImportanceFile": str(maps)})
    first = with_file.cache_identity("digits", -30)
    maps.write_bytes(b"two")
    second = with_file.cache_identity("digits", -30)
    assert first is not None and second is not None
    assert first["files"]["ImportanceFile"] != second["files"]["ImportanceFile"]
    assert digest(first) != digest(second)


def test_point_key_covers_model_and_evaluation() -> None:
    from nntm.ce.models.digits import DigitsAdapter

    adapter = DigitsAdapter()
    codec = {"kind": "x"}
    key = points.point_key(points.model_identity(adapter, "aa"), codec, -30, True)
    others = [
        points.point_key(points.model_identity(adapter, "bb"), codec, -30, True),
        points.point_key(points.model_identity(adapter, "aa"), codec, -30, False),
        points.point_key(points.model_identity(adapter, "aa"), {"kind": "y"}, -30, True),
    ]

    class Newer(DigitsAdapter):
        eval_version = "2"

    others.append(points.point_key(points.model_identity(Newer(), "aa"), codec, -30, True))
    assert key["model"]["packages"] == {"numpy": np.__version__}
    assert len({digest(key), *(digest(k) for k in others)}) == 1 + len(others)


# ---------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------


def test_cache_round_trip_keeps_values_and_metric_order(tmp_path: Path) -> None:
    cache = points.PointCache(tmp_path / "c")
    key = {"k": 1, "nested": {"qp": -30}}
    data = PointData(123, 456, float("inf"), 12.5, {"z": 0.1 + 0.2, "a": -1.0}, "z")
    assert cache.get(key) is None
    path = cache.put(key, data, PointTiming(1.0, 2.0, 3.0, 4.0))
    assert path.name == digest(key) + ".json"
    got = cache.get(key)
    assert got is not None and not got.computed and got.timing.cached
    assert got.data == data and list(got.data.metrics) == ["z", "a"]
    assert (got.timing.enc_s, got.timing.cpu_s) == (1.0, 4.0)
    assert [p.name for p in (tmp_path / "c").iterdir()] == [path.name]  # no temp file left


def test_damaged_or_foreign_cache_files_count_as_missing(tmp_path: Path) -> None:
    cache = points.PointCache(tmp_path)
    key = {"k": 2}
    path = cache.put(key, _data(), PointTiming())
    text = path.read_text()
    path.write_text(text[: len(text) // 2])  # a half file (not from us: we rename)
    assert cache.get(key) is None
    doc = json.loads(text)
    doc["key"] = {"k": 3}  # a file under the wrong name
    path.write_text(json.dumps(doc))
    assert cache.get(key) is None
    doc["key"] = key
    doc["result"]["metrics"] = {"a": 1}  # the old dict form
    path.write_text(json.dumps(doc))
    assert cache.get(key) is None
    cache.put(key, _data(), PointTiming())
    assert cache.get(key) is not None


def test_interrupted_write_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = points.PointCache(tmp_path / "c")

    def killed(*_args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(points.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        cache.put({"k": 4}, _data(), PointTiming())
    assert list((tmp_path / "c").iterdir()) == []


def test_worker_errors_reach_the_caller() -> None:
    tasks = [points.PointTask("nosuchmodel", 0, -30), points.PointTask("nosuchmodel", 0, -32)]
    codec = NntmCodec([ANCHOR_CFG])
    with pytest.raises(ConfigError, match="unknown CE model"):
        points.run_points(tasks, [codec], jobs=2)


# ---------------------------------------------------------------------------
# The summary table
# ---------------------------------------------------------------------------


def _curve(model: str, config: str, role: str, shift: float) -> list[Point]:
    out = []
    for k, qp in enumerate((-20, -24, -28, -32)):
        bpp = 2.0 + k
        snr = 10.0 + 6.0 * k + shift
        out.append(Point(model, config, role, qp, int(bpp * 1000 / 8), 1000, snr, snr + 1,
                         {"m": snr}, primary_metric="m"))
    return out


def test_summary_has_a_row_per_tool_and_a_column_per_model() -> None:
    pts = []
    for model in ("m1", "m2"):
        pts += _curve(model, "anchor", "anchor", 0.0)
        pts += _curve(model, "better", "test", 1.0)
        pts += _curve(model, "worse", "test", -1.0 if model == "m1" else -2.0)
    rows = report.bd_summary(pts, "anchor", ["better", "worse"], models=["m1", "m2"])
    text = report.summary_markdown(rows, models=["m1", "m2"])
    tables = [t for t in text.split("\n\n") if t.startswith("| tool |")]
    assert len(tables) == 3  # output metric, nSNR, wSNR
    lines = tables[0].splitlines()
    assert lines[0] == "| tool | m1 | m2 | **overall** |"
    cells = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:]}
    assert set(cells) == {"better", "worse"}
    for test in ("better", "worse"):
        for model in ("m1", "m2", "overall"):
            row = next(r for r in rows if r.test == test and r.model == model)
            value = row.value("bd_primary")
            assert value is not None and f"{value:+.2f} %" in cells[test]
    better = next(r for r in rows if r.test == "better" and r.model == "m1").value("bd_primary")
    worse = next(r for r in rows if r.test == "worse" and r.model == "m2").value("bd_primary")
    assert better is not None and better < 0 < (worse or 0)


# ---------------------------------------------------------------------------
# CEApp: resume, changed cfg, parallel
# ---------------------------------------------------------------------------


def _ce(tmp_path: Path, out: str, *extra: str) -> list[str]:
    return [
        "-c", str(QUICK_CFG),
        f"--Anchor={ANCHOR_CFG}",
        "--QPs=-24 -32 -40",
        f"--ResultsDir={tmp_path / out}",
        "--Name=ce",
        "--Plots=0",
        *extra,
    ]


def _progress(out: str) -> list[tuple[str, int, bool]]:
    """(config, QP, cached) of every progress line."""
    got = []
    for line in out.splitlines():
        m = PROGRESS.match(line)
        if m:
            got.append((m.group(2), int(m.group(3)), line.rstrip().endswith("(cached)")))
    return got


def _deterministic(tmp_path: Path, out: str) -> tuple[str, str]:
    md = (tmp_path / out / "ce.md").read_text()
    rows = list(csv.DictReader(io.StringIO((tmp_path / out / "ce.csv").read_text())))
    for row in rows:
        for col in report.TIME_COLUMNS:
            del row[col]
    return report.deterministic_part(md), json.dumps(rows)


def _no_rdoq(tmp_path: Path) -> Path:
    cfg = tmp_path / "no_rdoq.cfg"
    cfg.write_text("RDOQ : 0\n")
    return cfg


def test_resumed_ce_computes_only_the_missing_points(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _needs_digits()
    cache = tmp_path / "cache"
    test_spec = f"--Test={ANCHOR_CFG},{_no_rdoq(tmp_path)}"
    argv = _ce(tmp_path, "first", test_spec, "--TestName=nordoq", f"--Cache={cache}", "--Jobs=1")
    assert app.main(argv) == 0
    first = _progress(capsys.readouterr().out)
    assert len(first) == 6 and not any(c for *_, c in first)
    files = sorted(cache.glob("*.json"))
    assert len(files) == 6
    # an interrupted run: two points never made it to the cache
    lost = set()
    for path in (files[1], files[4]):
        key = json.loads(path.read_text())["key"]
        cfg = key["codec"]["config"]
        lost.add(("nordoq" if cfg["RDOQ"] == "0" else ANCHOR_CFG.stem, key["qp"]))
        path.unlink()
    argv[argv.index("--ResultsDir=" + str(tmp_path / "first"))] = (
        f"--ResultsDir={tmp_path / 'second'}"
    )
    assert app.main(argv) == 0
    out = capsys.readouterr().out
    second = _progress(out)
    assert len(second) == 6
    assert {(c, q) for c, q, cached in second if not cached} == lost
    assert "points: 6: 2 computed, 4 from the cache" in out
    assert len(list(cache.glob("*.json"))) == 6
    assert _deterministic(tmp_path, "first") == _deterministic(tmp_path, "second")
    md = (tmp_path / "second" / "ce.md").read_text()
    run = md.partition(report.RUN_HEADING)[2]
    assert "2 computed, 4 from the cache" in run and run.count("| cached |") == 4
    assert re.search(r"wall time \d+\.\d+ s, CPU time \d+\.\d+ s", run)


def test_changed_cfg_recomputes_only_what_it_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _needs_digits()
    cache = f"--Cache={tmp_path / 'cache'}"
    assert app.main(_ce(tmp_path, "a", f"--Test={ANCHOR_CFG}", "--TestName=t",
                        "--TestOptions=LambdaScale=0.3", cache, "--Jobs=1")) == 0
    assert sum(not c for *_, c in _progress(capsys.readouterr().out)) == 6
    # the same anchor, another test: only the test's points are computed
    assert app.main(_ce(tmp_path, "b", f"--Test={ANCHOR_CFG}", "--TestName=t",
                        "--TestOptions=LambdaScale=0.5", cache, "--Jobs=1")) == 0
    got = _progress(capsys.readouterr().out)
    assert {(c, cached) for c, _q, cached in got} == {(ANCHOR_CFG.stem, True), ("t", False)}
    # a test that resolves to the first test's values, under another name: all cached
    assert app.main(_ce(tmp_path, "c", f"--Test={ANCHOR_CFG}", "--TestName=again",
                        "--TestOptions=LambdaScale=0.30", cache, "--Jobs=1")) == 0
    assert all(cached for *_, cached in _progress(capsys.readouterr().out))


def test_parallel_report_equals_serial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _needs_digits()
    tests = f"--Test={ANCHOR_CFG},{_no_rdoq(tmp_path)};{ANCHOR_CFG}"
    names = "--TestName=nordoq;lam"
    common = (tests, names, "--TestOptions=LambdaScale=0.2", "--NoCache")
    assert app.main(_ce(tmp_path, "serial", *common, "--Jobs=1")) == 0
    serial_out = capsys.readouterr().out
    assert app.main(_ce(tmp_path, "parallel", *common, "--Jobs", "2")) == 0
    parallel_out = capsys.readouterr().out
    assert "2 job(s)" in parallel_out and "1 job(s)" in serial_out
    for out in (serial_out, parallel_out):
        assert "points: 9: 9 computed, 0 from the cache" in out
    assert not (tmp_path / "cache").exists()
    serial = _deterministic(tmp_path, "serial")
    assert serial == _deterministic(tmp_path, "parallel")
    md = serial[0]
    assert "## Summary" in md and "| nordoq |" in md and "| lam |" in md
    assert "enc s" not in md and "wall time" not in md  # times only after RUN_HEADING


def test_test_names_must_match_the_tests() -> None:
    assert app.split_tests("a.cfg; b.cfg,c.cfg", "x;y") == [("a.cfg", "x"), ("b.cfg,c.cfg", "y")]
    assert app.split_tests("a.cfg", "") == [("a.cfg", None)]
    assert app.split_tests("", "") == []
    with pytest.raises(ConfigError, match="TestName"):
        app.split_tests("a.cfg;b.cfg", "x")


def test_worker_ends_itself_when_its_ce_is_gone() -> None:
    """A CE killed with -9 cannot stop its workers: each ends itself when orphaned."""
    import subprocess
    import sys
    import time

    code = (
        "import time\n"
        "from nntm.ce import points\n"
        "points._init_worker([], -1)  # -1: never our parent, as after the CE died\n"
        "time.sleep(60)\n"
    )
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], timeout=30, check=False)
    assert proc.returncode == 1
    assert time.perf_counter() - t0 < 20


def test_unusable_cache_folder_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _needs_digits()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    rc = app.main(_ce(tmp_path, "out", f"--Cache={blocker / 'cache'}", "--Jobs=1"))
    assert rc == 1
    err = capsys.readouterr().err
    assert "Cache: cannot use" in err and "--NoCache" in err
    assert not (tmp_path / "out").exists()
