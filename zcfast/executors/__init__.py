"""Executors: who runs a scoring task. The scoring code does not know which one it has.

- :class:`LocalExecutor` -- this process, one device (the default everywhere).
- :class:`RayExecutor` -- Ray actors on a cluster, one per GPU or per group of CPU cores
  (optional: ``pip install 'zcfast[ray]'``; docs/ray.md).

Both take a :class:`ScoreTask` (a space name and a dict of settings) and a list of plain,
picklable archs, and stream ``(archs, {proxy: array})`` chunks; every arch comes back exactly
once. ``zcfast.scoring.score_to_file`` writes that stream into its resumable CSV,
``zcfast.score(..., executor=)`` gathers it into a DataFrame, and the search's live scorer
(``zcfast.search.default_scorer(..., executor=)``) answers the driver's asks with it.

>>> from zcfast.executors import RayExecutor
>>> with RayExecutor(workers=2) as ex:                     # doctest: +SKIP
...     df = zcfast.score(range(100), "synflow,nwot", executor=ex)
"""

from __future__ import annotations

from zcfast.executors.base import Executor
from zcfast.executors.local import LocalExecutor
from zcfast.executors.task import RUNNERS, ScoreTask, make_runner, register_runner

__all__ = ["RUNNERS", "Executor", "LocalExecutor", "RayExecutor", "ScoreTask", "add_cli_options",
           "executor_from_args", "get_executor", "make_runner", "register_runner"]


def __getattr__(name):
    if name == "RayExecutor":  # imported on use: Ray is optional
        from zcfast.executors.ray import RayExecutor

        return RayExecutor
    raise AttributeError(name)


def get_executor(executor=None, *, device=None) -> Executor:
    """``None`` or ``"local"`` -> :class:`LocalExecutor` on ``device``; ``"ray"`` -> a
    :class:`RayExecutor` with default settings; an :class:`Executor` is returned as is."""
    if executor is None or executor == "local":
        return LocalExecutor(device)
    if isinstance(executor, Executor):
        return executor
    if executor == "ray":
        from zcfast.executors.ray import RayExecutor

        return RayExecutor(gpus=_gpus_of(device))
    raise ValueError(f"unknown executor {executor!r}: expected 'local', 'ray' or an Executor")


def _gpus_of(device) -> bool | None:
    if device is None:
        return None
    return str(device).startswith("cuda")


def add_cli_options(p) -> None:
    """The ``--ray`` options of ``zcfast score`` and ``zcfast search``/``figure``."""
    g = p.add_argument_group("Ray cluster (needs pip install 'zcfast[ray]'; see docs/ray.md)")
    g.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="score on Ray actors. ADDRESS: HOST:PORT of the head, 'auto' or 'local'; "
                        "without it: $RAY_ADDRESS, else the cluster 'ray start' started on this "
                        "host, else a new local one")
    g.add_argument("--ray-workers", type=int, default=None,
                   help="actors (default: one per GPU, or one per --ray-cpus-per-worker CPUs)")
    g.add_argument("--ray-cpus-per-worker", type=int, default=1,
                   help="CPUs (and torch threads) per actor (default 1)")
    g.add_argument("--ray-chunk", type=int, default=None,
                   help="cells per chunk sent to an actor (default: up to 64 on CPU, 2048 on GPU)")


def executor_from_args(a, device=None) -> Executor:
    """The executor the parsed ``--ray*`` options ask for (LocalExecutor without ``--ray``)."""
    if getattr(a, "ray", None) is None:
        used = [f"--{k.replace('_', '-')}" for k in ("ray_workers", "ray_chunk")
                if getattr(a, k, None) is not None]
        if used:
            raise ValueError(f"{', '.join(used)} only apply with --ray")
        return LocalExecutor(device)
    from zcfast.executors.ray import RayExecutor

    return RayExecutor(a.ray or None, workers=a.ray_workers, cpus_per_worker=a.ray_cpus_per_worker,
                       chunk=a.ray_chunk, gpus=_gpus_of(device))
