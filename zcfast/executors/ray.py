"""The Ray executor: chunks of archs scored by Ray actors, one per GPU or per group of CPU cores.

Each actor (:class:`ScoreWorker`) keeps, for its whole life, its device, its torch threads and
one warm runner per task (the seeded minibatch on the device, imported modules, compiled
kernels). The driver splits the archs into chunks (contiguous slices, in input order), keeps
``depth`` chunks queued on every ready actor so that none idles between chunks, and yields each
chunk's scores as it arrives (completion order). A chunk whose actor dies (process killed,
node lost, out of memory) goes back to the front of the queue and runs on another actor; a
replacement actor is started in the dead one's place. A chunk is yielded at most once: results
are whole chunks, and a chunk id already yielded is never yielded again. Errors raised by the
scoring code itself are not retried (they would fail again) and reach the caller. docs/ray.md
has the cluster setup, the split and the measured overheads.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from zcfast.executors.base import Executor
from zcfast.executors.task import ScoreTask, make_runner

INSTALL_HINT = "pip install 'zcfast[ray]'"

# default cells per chunk: at most this many, and at least 4 chunks per worker when the
# request is smaller (docs/ray.md, "How the work is split")
MAX_CHUNK_CPU = 64
MAX_CHUNK_GPU = 2048
CHUNKS_PER_WORKER = 4


def require_ray():
    """The ``ray`` module, or ValueError naming the install command."""
    try:
        import ray
    except ImportError:
        raise ValueError(f"Ray is not installed: {INSTALL_HINT} (or run without --ray)") from None
    return ray


class ScoreWorker:
    """Body of one Ray actor (also usable in-process, which the tests do)."""

    def __init__(self, threads: int = 1, use_gpu: bool = False, max_tasks: int = 4):
        import torch

        t0 = time.perf_counter()
        if use_gpu and not torch.cuda.is_available():
            raise RuntimeError(f"Ray worker on {socket.gethostname()} was given a GPU, but torch "
                               "sees no CUDA device (CPU build of torch?)")
        if threads:
            torch.set_num_threads(int(threads))
        self.device = "cuda" if use_gpu else "cpu"  # Ray sets CUDA_VISIBLE_DEVICES to our GPU
        self.max_tasks = max_tasks
        self._runners: dict = {}  # task -> runner, least recently used first
        self._t_init = time.perf_counter() - t0

    def info(self) -> dict:
        import torch

        return {"pid": os.getpid(), "host": socket.gethostname(), "device": self.device,
                "threads": torch.get_num_threads(), "init_seconds": self._t_init}

    def _runner(self, task: ScoreTask):
        r = self._runners.pop(task, None)
        if r is None:
            r = make_runner(task, self.device)
            while len(self._runners) >= self.max_tasks:
                self._runners.pop(next(iter(self._runners)))
        self._runners[task] = r
        return r

    def warm(self, task: ScoreTask) -> float:
        """Build the runner of ``task`` now; returns the seconds it took (0 when already warm)."""
        t0 = time.perf_counter()
        self._runner(task)
        return time.perf_counter() - t0

    def ping(self, payload=None):
        return payload

    def score(self, task: ScoreTask, chunk_id: int, archs: list):
        """(chunk_id, archs, {proxy: (n,) float64}, seconds) for one whole chunk."""
        t0 = time.perf_counter()
        parts = list(self._runner(task).iter(archs))
        out = [a for part, _ in parts for a in part]
        table = {p: np.concatenate([t[p] for _, t in parts]) for p in task.proxies}
        return chunk_id, out, table, time.perf_counter() - t0


class Ledger:
    """Where every chunk of one run is: queued, running, or done (yielded). A chunk whose worker
    was lost goes back to the front of the queue; a chunk is yielded once, the first time its
    result arrives."""

    def __init__(self, n: int, max_attempts: int):
        self.n = n
        self.queue = deque(range(n))
        self.attempts = [0] * n
        self.done: set = set()
        self.max_attempts = max_attempts

    def take(self) -> int | None:
        return self.queue.popleft() if self.queue else None

    def lost(self, cid: int) -> bool:
        """The chunk's worker died before it returned: queue it again (False once it has lost
        ``max_attempts`` workers)."""
        self.attempts[cid] += 1
        if self.attempts[cid] >= self.max_attempts:
            return False
        self.queue.appendleft(cid)
        return True

    def complete(self, cid: int) -> bool:
        """Record a result; True when it is the chunk's first (the one to yield)."""
        if cid in self.done:
            return False
        self.done.add(cid)
        return True

    @property
    def finished(self) -> bool:
        return len(self.done) == self.n


@dataclass
class _Worker:
    wid: int
    handle: object
    ready_ref: object
    ready: bool = False
    alive: bool = True
    load: int = 0
    info: dict = field(default_factory=dict)


class RayExecutor(Executor):
    """Scores on a Ray cluster.

    address: ``None`` (``ray.init()``'s discovery: $RAY_ADDRESS, else the cluster started with
    ``ray start`` on this host, else a new local instance), ``"auto"``, ``"local"`` or
    ``HOST:PORT``; ignored when this process is already connected. workers: number of actors
    (default: one per GPU of the cluster, or one per ``cpus_per_worker`` CPUs when it has no GPU
    or ``gpus=False``). chunk: cells per chunk (default: see ``MAX_CHUNK_*``; rounded up to a
    multiple of a pinned engine pass size). depth: chunks queued per actor. max_attempts: how
    often one chunk may lose its worker before the run fails.
    """

    def __init__(self, address: str | None = None, *, workers: int | None = None,
                 cpus_per_worker: int = 1, gpus: bool | None = None, chunk: int | None = None,
                 depth: int = 2, max_attempts: int = 3, start_timeout: float = 600.0,
                 init_kwargs: dict | None = None):
        self.ray = require_ray()
        for name, v, lo in (("workers", workers, 1), ("cpus_per_worker", cpus_per_worker, 1),
                            ("chunk", chunk, 1), ("depth", depth, 1), ("max_attempts", max_attempts, 1)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo):
                raise ValueError(f"Ray executor: {name} must be an integer >= {lo}, got {v!r}")
        self.address = address
        self.n_workers = workers
        self.cpus_per_worker = int(cpus_per_worker)
        self.gpus = gpus
        self.chunk = chunk
        self.depth = int(depth)
        self.max_attempts = int(max_attempts)
        self.start_timeout = float(start_timeout)
        self.init_kwargs = dict(init_kwargs or {})
        self._owns_ray = False
        self._workers: list = []
        self._use_gpu = False
        self._next_wid = 0
        self._replacements = 0
        self._n_start = 0
        # chunks yielded, chunks retried after losing their worker, workers lost, and the
        # seconds the actors spent inside the yielded chunks (wall minus this = overhead)
        self.stats = {"chunks": 0, "retried": 0, "workers_lost": 0, "busy_seconds": 0.0}

    # ---- pool ------------------------------------------------------------------------------
    def _connect(self):
        ray = self.ray
        if not ray.is_initialized():
            kw = {"log_to_driver": True, **self.init_kwargs}
            ray.init(address=self.address, **kw)
            self._owns_ray = True

    def _spawn(self) -> _Worker:
        ray = self.ray
        cls = ray.remote(ScoreWorker).options(
            num_cpus=self.cpus_per_worker, num_gpus=1 if self._use_gpu else 0,
            max_restarts=0, max_task_retries=0)
        h = cls.remote(self.cpus_per_worker, self._use_gpu)
        w = _Worker(self._next_wid, h, h.info.remote())
        self._next_wid += 1
        self._workers.append(w)
        return w

    def start(self) -> RayExecutor:
        """Connect and start the actors (done by the first :meth:`run` otherwise)."""
        if self._workers:
            return self
        self._connect()
        res = self.ray.cluster_resources()
        n_gpu = int(res.get("GPU", 0))
        self._use_gpu = bool(n_gpu) if self.gpus is None else bool(self.gpus)
        if self._use_gpu and n_gpu == 0:
            raise ValueError("Ray executor: GPUs asked for, but the cluster has none")
        n = self.n_workers or (n_gpu if self._use_gpu else int(res.get("CPU", 0)) // self.cpus_per_worker)
        if n < 1:
            raise ValueError(f"Ray executor: the cluster ({res.get('CPU', 0)} CPUs) cannot host one "
                             f"worker of {self.cpus_per_worker} CPUs")
        self._n_start = n
        for _ in range(n):
            self._spawn()
        return self

    def wait_ready(self, timeout: float | None = None) -> list:
        """Block until every live actor has started; returns their info dicts."""
        self.start()
        pend = {w.ready_ref: w for w in self._workers if w.alive and not w.ready}
        if pend:
            ready, _ = self.ray.wait(list(pend), num_returns=len(pend),
                                     timeout=timeout or self.start_timeout)
            for ref in ready:
                self._on_ready(pend[ref])
        return [w.info for w in self._workers if w.alive and w.ready]

    def _on_ready(self, w: _Worker):
        try:
            w.info = self.ray.get(w.ready_ref)
            w.ready = True
        except self.ray.exceptions.RayError as e:
            self._lose(w, e)

    def _lose(self, w: _Worker, err: BaseException):
        """Mark a worker dead and start a replacement (bounded, so a worker that cannot start
        anywhere ends the run instead of looping)."""
        if not w.alive:
            return
        w.alive = False
        self.stats["workers_lost"] += 1
        self._last_error = err
        with contextlib.suppress(Exception):  # already gone
            self.ray.kill(w.handle)
        if self._replacements < self.max_attempts * self._n_start:
            self._replacements += 1
            self._spawn()

    def warm(self, task: ScoreTask) -> list:
        """Build ``task``'s runner on every ready actor now (its minibatch on the device);
        returns each actor's build seconds (about 0 when it was warm already)."""
        self.wait_ready()
        live = [w for w in self._workers if w.alive and w.ready]
        secs = self.ray.get([w.handle.warm.remote(task) for w in live])
        return secs

    def workers(self) -> list:
        """One dict per actor: wid, alive, ready, load (chunks queued), and its info (pid, host,
        device, threads)."""
        return [{"wid": w.wid, "alive": w.alive, "ready": w.ready, "load": w.load, **w.info}
                for w in self._workers]

    def _lost_errors(self) -> tuple:
        E = self.ray.exceptions
        names = ("RayActorError", "WorkerCrashedError", "ObjectLostError", "NodeDiedError",
                 "OutOfMemoryError", "LocalRayletDiedError")
        return tuple(getattr(E, n) for n in names if hasattr(E, n))

    def chunk_size(self, task: ScoreTask, n: int) -> int:
        """Cells per chunk for a request of ``n`` archs (see the class docstring)."""
        live = max(1, sum(w.alive for w in self._workers))
        if self.chunk:
            c = int(self.chunk)
        else:
            cap = MAX_CHUNK_GPU if self._use_gpu else MAX_CHUNK_CPU
            c = max(1, min(cap, math.ceil(n / (CHUNKS_PER_WORKER * live))))
        k = task.pass_size
        if k and c % k:  # whole engine passes: packs then match a local run's packs
            c = (c // k + 1) * k
        return c

    # ---- running ---------------------------------------------------------------------------
    def run(self, task: ScoreTask, archs) -> Iterator:
        archs = list(archs)
        if not archs:
            return
        self.start()
        ray = self.ray
        lost_errors = self._lost_errors()
        c = self.chunk_size(task, len(archs))
        chunks = [archs[i : i + c] for i in range(0, len(archs), c)]
        book = Ledger(len(chunks), self.max_attempts)
        inflight: dict = {}  # ObjectRef -> (worker, chunk id)
        task_ref = ray.put(task)
        last_event = time.monotonic()
        ok = False
        try:
            while not book.finished:
                for w in self._workers:
                    while w.alive and w.ready and w.load < self.depth and book.queue:
                        cid = book.take()
                        inflight[w.handle.score.remote(task_ref, cid, chunks[cid])] = (w, cid)
                        w.load += 1
                if not inflight and not book.queue:
                    raise RuntimeError(f"{book.n - len(book.done)} chunks are neither done, queued "
                                       "nor running: the executor lost track of them")
                starting = {w.ready_ref: w for w in self._workers if w.alive and not w.ready}
                waitables = list(inflight) + list(starting)
                if not waitables:
                    raise RuntimeError(
                        f"no Ray worker is left to score {book.n - len(book.done)} chunks "
                        f"(last error: {getattr(self, '_last_error', None)})")
                ready, _ = ray.wait(waitables, num_returns=1, timeout=5.0)
                if not ready:
                    if not inflight and time.monotonic() - last_event > self.start_timeout:
                        raise TimeoutError(
                            f"no Ray worker could start within {self.start_timeout:.0f} s "
                            f"(cluster resources: {ray.cluster_resources()})")
                    continue
                last_event = time.monotonic()
                ref = ready[0]
                if ref in starting:
                    self._on_ready(starting[ref])
                    continue
                w, cid = inflight.pop(ref)
                w.load -= 1
                try:
                    _, part, table, secs = ray.get(ref)
                except lost_errors as e:
                    self._lose(w, e)
                    self.stats["retried"] += 1
                    if not book.lost(cid):
                        raise RuntimeError(
                            f"chunk {cid} ({len(chunks[cid])} archs, first {chunks[cid][0]!r}) lost "
                            f"its worker {book.attempts[cid]} times; last error: {e}") from e
                    continue
                except ray.exceptions.RayTaskError as e:
                    raise e.as_instanceof_cause() from None  # the scoring code's own error
                if not book.complete(cid):  # at most once per chunk, whatever happened on the way
                    continue
                self.stats["chunks"] += 1
                self.stats["busy_seconds"] += secs
                yield part, table
            ok = True
        finally:
            if not ok:
                # stopped early (error, interrupt, consumer gone): queued chunks would keep the
                # actors busy for nothing; start afresh on the next call
                self._stop_workers()

    # ---- lifecycle -------------------------------------------------------------------------
    def describe(self) -> dict:
        return {"executor": "ray", "address": self.address, "workers": self.n_workers or "auto",
                "cpus_per_worker": self.cpus_per_worker, "gpus": self.gpus, "chunk": self.chunk}

    def _stop_workers(self):
        for w in self._workers:
            if w.alive:
                with contextlib.suppress(Exception):
                    self.ray.kill(w.handle)
        self._workers = []

    def close(self) -> None:
        """Stop the actors, and Ray itself if this executor started it."""
        self._stop_workers()
        if self._owns_ray and self.ray.is_initialized():
            self.ray.shutdown()
            self._owns_ray = False
