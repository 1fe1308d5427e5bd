"""CE points as tasks: their cache keys, the point cache, serial or parallel runs.

A core experiment is a set of *points* (model, codec configuration, QP).  Each is a pure
function of its inputs, so its results (:class:`~nntm.ce.runner.PointData`: bytes, weight
SNRs, metric values; never times) are kept in a :class:`PointCache` under a key of
everything they depend on (:func:`point_key`):

- the model: its name, the SHA-256 of its tensors (:func:`~nntm.ce.identity.tensors_sha256`),
  the adapter's ``eval_version`` and the installed versions of numpy and of the packages
  the adapter needs (torch, the model packages);
- the codec: for NNTM the resolved configuration (every key, the QP among them) with the
  SHA-256 of any file it names, and the NNTM build (package and format version, hashes of
  the Python modules and of the C extension); for NNCodec its installed version, the
  wrapper's version and its arguments (:meth:`~nntm.ce.runner.Codec.cache_identity`);
- the QP, whether the network is evaluated, the measurement's ``MEASURE_VERSION`` and the
  cache format :data:`CACHE_FORMAT`.

Labels are not in the key (a codec's name, its cfg file names, the role): the same anchor
under another name, or the same settings from another cfg file, reuse the points.

The cache is a folder (``CEApp --Cache``, default :func:`default_cache_dir`) with one JSON
file per point, ``<sha256 of the canonical key>.json``, holding the key itself (checked on
every read), the results and the times of the run that computed it.  Files are written to
a temporary name and renamed, so a killed run leaves no half file; an unreadable or
mismatching file counts as missing and is computed again.

:func:`run_points` takes the points from the cache or computes them, in this process
(``jobs`` 1) or in ``jobs`` worker processes (``spawn``: safe with torch's threads, and the
workers are this process's children, so ``os.times()`` counts their CPU time); every
worker keeps its model's tensors and its prepared codecs between points.  Results are
given back in task order, so a report does not depend on which worker finished first.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import multiprocessing
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nntm.ce.identity import digest, module_versions
from nntm.ce.runner import MEASURE_VERSION, Codec, PointData, PointTiming, measure_point

if TYPE_CHECKING:  # pragma: no cover - typing only
    from nntm.ce.models.base import ModelAdapter

__all__ = [
    "CACHE_FORMAT",
    "Outcome",
    "PointCache",
    "PointTask",
    "PointWorker",
    "default_cache_dir",
    "default_jobs",
    "model_identity",
    "point_key",
    "run_points",
]

CACHE_FORMAT = 1
"""Version of the cache's file layout and key structure."""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/nntm/ce``, else ``~/.cache/nntm/ce``: one cache per machine."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nntm" / "ce"


def default_jobs() -> int:
    """The cores this process may run on (``os.sched_getaffinity``, else ``os.cpu_count``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def model_identity(adapter: ModelAdapter, tensors_sha256: str) -> dict[str, Any]:
    """The model part of a point's key: name, tensors, evaluation version, and the
    versions of numpy and of the packages the adapter runs on (``requires``)."""
    return {
        "name": adapter.name,
        "eval_version": str(adapter.eval_version),
        "tensors_sha256": tensors_sha256,
        "packages": module_versions(("numpy", *adapter.requires)),
    }


def point_key(
    model: Mapping[str, Any], codec: Mapping[str, Any], qp: int, evaluate: bool
) -> dict[str, Any]:
    """The cache key of one point (a JSON-able dict; its file name is its :func:`digest`)."""
    return {
        "cache_format": CACHE_FORMAT,
        "measure_version": MEASURE_VERSION,
        "model": dict(model),
        "codec": dict(codec),
        "qp": int(qp),
        "evaluate": bool(evaluate),
    }


# ---------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One point's results and times; ``computed`` is False when it came from the cache."""

    data: PointData
    timing: PointTiming
    computed: bool


class PointCache:
    """One JSON file per point in ``root``, named by the SHA-256 of its key."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, key_digest: str) -> Path:
        return self.root / f"{key_digest}.json"

    def get(self, key: Mapping[str, Any]) -> Outcome | None:
        """The stored point of ``key``, or None (missing, unreadable or another key)."""
        path = self.path(digest(key))
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("key") != json.loads(json.dumps(key)):
                return None
            data = PointData.from_json(doc["result"])
            timing = PointTiming.from_json(doc.get("timing", {}), cached=True)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None  # a damaged file counts as missing; it is written again
        return Outcome(data, timing, computed=False)

    def put(self, key: Mapping[str, Any], data: PointData, timing: PointTiming) -> Path:
        """Store one point (temporary file, then rename: never a half file)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(digest(key))
        doc = {
            "key": key,
            "result": data.to_json(),
            "timing": {
                **timing.to_json(),
                "host": platform.node(),
                "date": datetime.datetime.now(datetime.UTC).isoformat(
                    timespec="seconds"
                ),
            },
        }
        text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem[:16]}.", suffix=".tmp", dir=self.root)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; a shared cache is read by others
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return path


# ---------------------------------------------------------------------------
# Tasks and workers
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PointTask:
    """One point to compute: model name, index into the run's codec list, QP."""

    model: str
    codec: int
    qp: int
    evaluate: bool = True
    key: Mapping[str, Any] | None = None


class PointWorker:
    """Computes points; keeps one model's adapter and tensors, and prepared codecs.

    ``adapters`` (model name -> adapter) are used when given (the serial run passes the
    CE's own); otherwise an adapter is made by name (:func:`nntm.ce.models.get_adapter`).
    When the model changes, the previous one's tensors are dropped.
    """

    def __init__(
        self, codecs: Sequence[Codec], adapters: Mapping[str, ModelAdapter] | None = None
    ) -> None:
        self.codecs = list(codecs)
        self.adapters = dict(adapters or {})
        self._model: str | None = None
        self._adapter: ModelAdapter | None = None
        self._tensors: dict[str, np.ndarray] = {}
        self._prepared: set[tuple[int, str]] = set()

    def _load(self, model: str) -> tuple[ModelAdapter, dict[str, np.ndarray]]:
        if model != self._model or self._adapter is None:
            self._tensors = {}
            self._adapter = None
            adapter = self.adapters.get(model)
            if adapter is None:
                from nntm.ce.models import get_adapter

                adapter = get_adapter(model)
            self._tensors = adapter.load()
            self._adapter, self._model = adapter, model
        return self._adapter, self._tensors

    def compute(self, task: PointTask) -> tuple[PointData, PointTiming]:
        adapter, tensors = self._load(task.model)
        codec = self.codecs[task.codec]
        if (task.codec, task.model) not in self._prepared:
            codec.prepare(adapter, tensors)
            self._prepared.add((task.codec, task.model))
        return measure_point(adapter, codec, task.qp, tensors, evaluate=task.evaluate)


_WORKER: PointWorker | None = None

PARENT_POLL_S = 1.0
"""How often a worker checks that the CE process is still there."""


def _exit_when_orphaned(parent: int) -> None:
    """A killed CE (``kill -9``) cannot stop its workers, and they would wait for work
    forever: each worker ends itself once its parent is gone."""
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent:
            os._exit(1)


def _init_worker(codecs: Sequence[Codec], parent: int) -> None:
    global _WORKER
    _WORKER = PointWorker(codecs)
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()


def _compute_in_worker(task: PointTask) -> tuple[PointData, PointTiming]:
    if _WORKER is None:  # pragma: no cover - the pool's initializer sets it
        raise RuntimeError("point worker not initialised")
    return _WORKER.compute(task)


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------

OnDone = Callable[[int, Outcome], None]
Pool = Callable[
    [Sequence[PointTask], Sequence[int], Sequence[Codec],
     Callable[[int, PointData, PointTiming], None]],
    None,
]
"""Computes the points ``todo`` of ``tasks`` elsewhere, calling ``finish(index, data,
timing)`` for each (:class:`nntm.ce.ray_backend.RayRunner`)."""


def run_points(
    tasks: Sequence[PointTask],
    codecs: Sequence[Codec],
    adapters: Mapping[str, ModelAdapter] | None = None,
    jobs: int = 1,
    cache: PointCache | None = None,
    on_done: OnDone | None = None,
    pool: Pool | None = None,
) -> list[Outcome]:
    """Every task's outcome, in task order: from ``cache`` when there, else computed.

    Computed points go into ``cache`` as soon as each is done (a killed run keeps them);
    ``on_done(index, outcome)`` is called for each point when it is ready (cached points
    first, then computed ones in the order they finish).  ``jobs`` > 1 computes in that
    many worker processes (fewer when fewer points are missing).  The first error of any
    point cancels the points not yet started and is raised.  ``pool``, when given,
    computes the missing points instead of this process or its workers (Ray).
    """
    outcomes: list[Outcome | None] = [None] * len(tasks)
    todo: list[int] = []
    for i, task in enumerate(tasks):
        hit = cache.get(task.key) if cache is not None and task.key is not None else None
        if hit is None:
            todo.append(i)
            continue
        outcomes[i] = hit
        if on_done is not None:
            on_done(i, hit)

    def finish(i: int, data: PointData, timing: PointTiming) -> None:
        task = tasks[i]
        if cache is not None and task.key is not None:
            cache.put(task.key, data, timing)
        outcome = Outcome(data, timing, computed=True)
        outcomes[i] = outcome
        if on_done is not None:
            on_done(i, outcome)

    workers = min(max(1, jobs), len(todo))
    if pool is not None:
        if todo:
            pool(tasks, todo, codecs, finish)
    elif workers <= 1:
        worker = PointWorker(codecs, adapters)
        for i in todo:
            finish(i, *worker.compute(tasks[i]))
    else:
        _run_pool(tasks, todo, codecs, workers, finish)
    missing = [i for i, o in enumerate(outcomes) if o is None]
    if missing:  # pragma: no cover - every path above fills or raises
        raise RuntimeError(f"points {missing} were not computed")
    return [o for o in outcomes if o is not None]


def _run_pool(
    tasks: Sequence[PointTask],
    todo: Sequence[int],
    codecs: Sequence[Codec],
    workers: int,
    finish: Callable[[int, PointData, PointTiming], None],
) -> None:
    context = multiprocessing.get_context("spawn")
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_init_worker,
        initargs=(list(codecs), os.getpid()),
    )
    try:
        futures = {pool.submit(_compute_in_worker, tasks[i]): i for i in todo}
        for future in concurrent.futures.as_completed(futures):
            data, timing = future.result()
            finish(futures[future], data, timing)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
