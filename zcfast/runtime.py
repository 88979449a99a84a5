"""CPU thread settings: how many threads zcfast computes with, and how idle threads wait.

PyTorch's CPU kernels run on an OpenMP thread team (GNU OpenMP, ``libgomp``, in the PyTorch
wheels). Between parallel regions an idle OpenMP thread first *spins* (busy-waits on a core) and
only then sleeps; with the default wait policy it spins for a long time. On a machine shared with
another CPU-bound job, the spinning threads of both jobs burn the cores that the other job's
working threads need, and each parallel region waits for a teammate that the scheduler has
descheduled: both jobs slow down far more than their share (docs/threads.md;
``bench/bench_busy.py`` measures it).

zcfast therefore

- sets ``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep at once) when ``zcfast`` is imported, if
  the user has not chosen a wait policy (``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``) and OpenMP is
  not loaded yet. OpenMP reads its settings once, when it is loaded (by ``import torch``): after
  that nothing can change them, so ``import zcfast`` before ``torch``, or set the variable
  yourself;
- computes with one thread per core *available to this process* (its CPU affinity and cgroup
  CPU quota), unless told otherwise (``--threads N``, ``set_threads(N)``, ``OMP_NUM_THREADS``).
"""

from __future__ import annotations

import math
import os
import sys

WAIT_POLICY = "PASSIVE"
_state = {"wait_policy_set": False, "openmp_loaded_first": None}


def openmp_loaded() -> bool:
    """Whether an OpenMP runtime is already mapped into this process (Linux: /proc/self/maps);
    elsewhere, whether torch is imported."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return "torch" in sys.modules
    return any(n in maps for n in ("libgomp", "libiomp", "libomp.so"))


def prepare_openmp() -> None:
    """Choose the passive OpenMP wait policy before OpenMP is loaded (called by ``import
    zcfast``). Leaves the environment alone when the user set a policy or OpenMP is loaded."""
    if _state["openmp_loaded_first"] is not None:
        return
    loaded = openmp_loaded()
    _state["openmp_loaded_first"] = loaded
    if loaded or "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return
    os.environ["OMP_WAIT_POLICY"] = WAIT_POLICY
    _state["wait_policy_set"] = True


def _cgroup_cpu_quota() -> float | None:
    """CPUs allowed by a cgroup CPU quota (containers: ``--cpus``), or None when unlimited."""
    try:  # cgroup v2
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            quota = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period = int(f.read())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        n = min(n, max(1, math.floor(quota)))
    return max(1, n)


def default_threads() -> int:
    """zcfast's default thread count: ``OMP_NUM_THREADS`` when set, else one per available core."""
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    return available_cores()


def check_threads(n) -> int:
    """``n`` as a thread count; a clear error naming the bad value otherwise."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the thread count (--threads) must be a positive integer, got {n!r}")
    return n


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op CPU threads to ``n`` (None: :func:`default_threads`); returns it."""
    import torch

    n = default_threads() if n is None else check_threads(n)
    cores = available_cores()
    if n > cores:  # allowed (a user may mean it), but never silently: docs/threads.md
        import warnings

        warnings.warn(f"{n} threads on {cores} available core{'s' if cores != 1 else ''}: "
                      "oversubscribed threads wait for each other and slow the run down "
                      "(docs/threads.md)", stacklevel=2)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def info() -> dict:
    """The thread settings in force (for ``zcfast info`` and the meta of score files)."""
    import torch

    return {
        "threads": torch.get_num_threads(),
        "available_cores": available_cores(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset (OpenMP default: spin, then sleep)"),
        "wait_policy_set_by_zcfast": _state["wait_policy_set"],
        "openmp_loaded_before_zcfast": bool(_state["openmp_loaded_first"]),
    }


def add_threads_argument(parser) -> None:
    """``--threads N`` for every command that computes."""
    parser.add_argument(
        "--threads", type=int, default=None, metavar="N",
        help="CPU threads to compute with (default: one per core available to this process, or "
             "OMP_NUM_THREADS); on a machine shared with other jobs, fewer threads than cores "
             "leave room for them")
