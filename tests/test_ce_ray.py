"""CEApp --Ray: the CE's points on a real local Ray cluster (a head and a worker node).

The cluster test is skipped when ray is not installed (``pip install 'nntm[ray]'``).
"""

from __future__ import annotations

import builtins
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nntm.ce import app
from nntm.ce.ray_backend import RayRunner, ray_available
from nntm.errors import ConfigError
from test_ce_points import ANCHOR_CFG, _ce, _deterministic, _needs_digits, _no_rdoq

CLUSTER_START_S = 120.0


def test_ray_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_ray(name: str, *args: object, **kwargs: object) -> object:
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "ray", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ConfigError, match=r"nntm\[ray\]"):
        RayRunner("auto")
    _needs_digits()
    assert app.main(["-c", str(ANCHOR_CFG.parent / "ce" / "quick.cfg"),
                     f"--Anchor={ANCHOR_CFG}", "--Ray=auto", "--NoCache"]) == 1


def test_ray_needs_an_address() -> None:
    if not ray_available():
        pytest.skip("ray is not installed")
    with pytest.raises(ConfigError, match="auto"):
        RayRunner("  ")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_start(*args: str, log: Path) -> subprocess.Popen[bytes]:
    ray_cli = Path(sys.executable).with_name("ray")
    cmd = [str(ray_cli) if ray_cli.is_file() else "ray", "start", "--block",
           "--num-cpus=1", "--disable-usage-stats", "--node-ip-address=127.0.0.1", *args]
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the ``ray start --block`` we started: it stops the processes it started."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_for_cpus(address: str, cpus: int, procs: list[subprocess.Popen[bytes]]) -> None:
    code = (
        "import ray, sys, time\n"
        f"ray.init(address={address!r}, logging_level='ERROR')\n"
        f"deadline = time.time() + {CLUSTER_START_S}\n"
        f"while ray.cluster_resources().get('CPU', 0) < {cpus}:\n"
        "    if time.time() > deadline: sys.exit(1)\n"
        "    time.sleep(0.5)\n"
        "print(len([n for n in ray.nodes() if n['Alive']]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=CLUSTER_START_S + 60)
    for proc in procs:
        assert proc.poll() is None, "a ray start process ended"
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "2"  # a head and a worker node


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[str]:
    """A Ray cluster on localhost: ``ray start --head`` and one ``ray start --address``
    worker node, one CPU each; stopped through the two processes started here."""
    if not ray_available():
        pytest.skip("ray is not installed (pip install 'nntm[ray]')")
    temp = tempfile.mkdtemp(prefix="nr", dir="/tmp")  # short: Ray's socket paths
    port = _free_port()
    address = f"127.0.0.1:{port}"
    procs = [_ray_start("--head", f"--port={port}", "--include-dashboard=false",
                        f"--temp-dir={temp}", log=Path(temp) / "head.log")]
    try:
        time.sleep(2)
        procs.append(_ray_start(f"--address={address}", log=Path(temp) / "worker.log"))
        _wait_for_cpus(address, 2, procs)
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)


def test_ray_local_cluster_report_equals_serial(
    local_cluster: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The digits model, the anchor and one test at 3 QPs (6 points) on two Ray nodes:
    the report and the CSV equal a serial run's, and the points come back in order."""
    _needs_digits()
    monkeypatch.chdir(tmp_path)  # the actors start in CEApp's folder
    common = (f"--Test={ANCHOR_CFG},{_no_rdoq(tmp_path)}", "--TestName=nordoq")
    assert app.main(_ce(tmp_path, "serial", *common, "--NoCache", "--Jobs=1")) == 0
    serial_out = capsys.readouterr().out
    cache = tmp_path / "cache"
    ray_args = (*common, f"--Ray={local_cluster}", f"--Cache={cache}")
    assert app.main(_ce(tmp_path, "ray", *ray_args)) == 0
    ray_out = capsys.readouterr().out
    assert f"Ray cluster {local_cluster}" in ray_out
    assert "points: 6: 6 computed, 0 from the cache" in ray_out
    assert "points: 6: 6 computed" in serial_out
    assert _deterministic(tmp_path, "serial") == _deterministic(tmp_path, "ray")
    assert len(list(cache.glob("*.json"))) == 6  # CEApp wrote the cache from Ray's results
    # run again: everything from the cache, Ray is not asked for anything
    assert app.main(_ce(tmp_path, "again", *ray_args)) == 0
    assert "points: 6: 0 computed, 6 from the cache" in capsys.readouterr().out


def test_ray_runner_uses_both_nodes(local_cluster: str) -> None:
    """Two actors, one CPU each on a two-CPU cluster: one per node, not in this process."""
    _needs_digits()
    from nntm.ce.points import PointTask, run_points
    from nntm.ce.runner import NntmCodec

    runner = RayRunner(local_cluster)
    codec = NntmCodec([ANCHOR_CFG])
    tasks = [PointTask("digits", 0, qp, evaluate=False) for qp in (-24, -36)]
    ray_points = run_points(tasks, [codec], pool=runner)
    serial = run_points(tasks, [codec], jobs=1)
    assert [o.data for o in ray_points] == [o.data for o in serial]
    assert len({node for node, _pid in runner.workers_seen}) == 2
    assert os.getpid() not in {pid for _host, pid in runner.workers_seen}
