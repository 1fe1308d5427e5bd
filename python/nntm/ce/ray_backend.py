"""CE points on an existing Ray cluster (``CEApp --Ray auto|ADDRESS``).

Ray is an optional extra (``pip install nntm[ray]``).  The points are the same tasks as
with ``--Jobs`` (:class:`~nntm.ce.points.PointTask`, computed by
:class:`~nntm.ce.points.PointWorker`); this module only hands them to Ray:

- ``ray.init(address=...)`` joins the cluster (``auto``: the one this machine belongs
  to, as ``ray start`` left it; else ``HOST:PORT`` of its head).  Nothing here schedules:
  Ray places the actors, and :class:`ray.util.ActorPool` gives each idle actor the next
  point.
- Each actor is one :class:`PointActor` (one CPU), holding a ``PointWorker``: like a
  ``--Jobs`` worker it keeps the model it works on and its prepared codecs between
  points.  The codecs go to the actors through Ray's object store (pickled once); every
  node loads the model itself from its installed packages, so nodes need the same
  install (the cache key holds the model's tensor hash and package versions, computed in
  CEApp).  Results come back through the object store; CEApp alone writes the point
  cache and the report.
- Actors start in CEApp's working folder when the node has it (relative cfg paths and
  ``ImportanceFile`` values then work, as on a shared file system), with the folder of
  this ``nntm`` package first on their ``PYTHONPATH`` (runtime environment), so a
  source checkout runs on a local cluster as it does in CEApp.

The CPU time in the report is CEApp's own and its child processes': Ray's workers are
not CEApp's children, so their CPU time is in the points' ``cpu_s`` only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nntm.errors import ConfigError, NntmError

__all__ = ["RAY_INSTALL_HINT", "RayRunner", "ray_available"]

RAY_INSTALL_HINT = "pip install 'nntm[ray]'  (or: pip install ray)"

Finish = Callable[[int, Any, Any], None]


def ray_available() -> bool:
    """Whether ``import ray`` would work here (checked without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        return False


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"Ray: the ray package is not installed: {RAY_INSTALL_HINT}") from exc
    return ray


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""Thread settings of the BLAS libraries, passed from CEApp to the actors."""


def _thread_settings() -> dict[str, str]:
    """CEApp's BLAS thread settings for the actors.  Ray sets ``OMP_NUM_THREADS`` to an
    actor's CPUs (1) unless told otherwise, and the weight SNR's dot products
    (``np.dot``, OpenBLAS) differ in their last bits with the thread count: the actors
    get CEApp's own settings, or, where CEApp has none, OpenBLAS's default (the CPUs)."""
    env = {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ}
    env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    return env


class _Actor:
    """The body of a Ray actor: a :class:`~nntm.ce.points.PointWorker` in a Ray process."""

    def __init__(self, codecs: Sequence[Any], cwd: str) -> None:
        if os.path.isdir(cwd):
            os.chdir(cwd)
        from nntm.ce.points import PointWorker

        self.worker = PointWorker(codecs)

    def compute(self, index: int, task: Any) -> tuple[int, Any, Any]:
        data, timing = self.worker.compute(task)
        return index, data, timing

    def where(self) -> tuple[str, int]:
        """(Ray node id, process id) of this actor."""
        import ray

        return ray.get_runtime_context().get_node_id(), os.getpid()


class RayRunner:
    """Runs the missing points of a CE on the Ray cluster at ``address``.

    ``actors`` is the number of point actors (0: one per CPU of the cluster, at most one
    per point).  Use as the ``pool`` of :func:`nntm.ce.points.run_points`.
    """

    def __init__(self, address: str, actors: int = 0) -> None:
        self.address = address.strip()
        if not self.address:
            raise ConfigError("Ray: give auto or the cluster's HOST:PORT")
        self.actors = int(actors)
        self.ray = _import_ray()
        self.workers_seen: set[tuple[str, int]] = set()

    def _runtime_env(self) -> dict[str, Any]:
        import nntm

        package_root = str(Path(nntm.__file__).resolve().parent.parent)
        paths = [package_root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env = {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}
        env.update(_thread_settings())
        return {"env_vars": env}

    def _connect(self) -> bool:
        """Join the cluster; True when this call started the connection."""
        ray = self.ray
        if ray.is_initialized():
            return False
        try:
            ray.init(
                address=self.address,
                runtime_env=self._runtime_env(),
                log_to_driver=False,
                logging_level="WARNING",
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise NntmError(f"Ray: cannot join the cluster at {self.address!r}: {exc}") from exc
        return True

    def cluster_cpus(self) -> int:
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def __call__(
        self,
        tasks: Sequence[Any],
        todo: Sequence[int],
        codecs: Sequence[Any],
        finish: Finish,
    ) -> None:
        ray = self.ray
        started = self._connect()
        try:
            count = min(len(todo), self.actors or self.cluster_cpus())
            actor_cls = ray.remote(num_cpus=1)(_Actor)
            codecs_ref = ray.put(list(codecs))
            actors = [actor_cls.remote(codecs_ref, os.getcwd()) for _ in range(count)]
            try:
                self.workers_seen |= set(ray.get([a.where.remote() for a in actors]))
                pool = ray.util.ActorPool(actors)
                for i in todo:
                    pool.submit(lambda a, i: a.compute.remote(i, tasks[i]), i)
                while pool.has_next():
                    index, data, timing = pool.get_next_unordered()
                    finish(index, data, timing)
            finally:
                for actor in actors:
                    ray.kill(actor)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.as_instanceof_cause()
            raise cause if isinstance(cause, NntmError) else NntmError(f"Ray: {exc}") from exc
        finally:
            if started:
                ray.shutdown()
