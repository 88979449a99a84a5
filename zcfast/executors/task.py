"""A scoring task: "score these archs with these settings", independent of who runs it.

A :class:`ScoreTask` is a search-space name plus a settings dict of plain values (everything a
score depends on besides the arch, and how to compute it). Archs are plain, picklable
identifiers of that space (NB201: ints, the benchmark's index). An executor hands a task and a
list of archs to a *runner*, built once per (process, task) by the space's runner factory and
kept warm: it holds the seeded minibatch on its device and whatever else is worth keeping
between chunks. A runner yields ``(archs, {proxy: (n,) float64 array})`` for consecutive parts
of the archs it is given, in order.

Runner factories are registered by space name as ``"module:function"`` strings, so that a
worker on another host imports the factory by name (``RUNNERS``; a space plugin adds itself with
:func:`register_runner`). The semantics of the scores (seeds, batch, packing) are in
docs/ray.md and README.md.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

# space name -> "module:factory"; factory(settings: dict, device: str) -> runner
RUNNERS: dict = {"nb201": "zcfast.executors.task:nb201_runner"}


def register_runner(space: str, factory: str) -> None:
    """Register the runner factory of a space (``"package.module:function"``)."""
    if ":" not in factory:
        raise ValueError(f"runner factory {factory!r}: expected 'module:function'")
    RUNNERS[space] = factory


@dataclass(frozen=True)
class ScoreTask:
    """A space name and a JSON-serialisable settings dict (compared and hashed by content)."""

    space: str
    settings: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.space not in RUNNERS:
            raise ValueError(f"unknown space {self.space!r}: runners exist for {', '.join(RUNNERS)}")
        try:
            key = json.dumps(self.settings, sort_keys=True)
        except TypeError as e:
            raise ValueError(f"task settings must be plain JSON values: {e}") from None
        object.__setattr__(self, "_key", (self.space, key))

    @property
    def key(self) -> tuple:
        return self._key  # type: ignore[attr-defined]

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, ScoreTask) and self.key == other.key

    @property
    def proxies(self) -> list:
        return list(self.settings["proxies"])

    @property
    def pass_size(self) -> int | None:
        """Candidates per engine pass when pinned (``settings['chunk']``), else None (automatic)."""
        k = self.settings.get("chunk")
        if self.settings.get("engine") == "loop":
            return 1
        return int(k) if k else None


def make_runner(task: ScoreTask, device: str = "cpu"):
    """The runner of ``task`` on ``device`` (imports the space's factory by name)."""
    mod, _, fn = RUNNERS[task.space].partition(":")
    factory = getattr(importlib.import_module(mod), fn)
    return factory(dict(task.settings), device)


def collect(stream, archs, proxies) -> dict:
    """Gather a ``(archs, table)`` stream into ``{proxy: (n,) float64}`` aligned with ``archs``
    (which may repeat a cell). Raises if a cell is missing or comes twice."""
    pos: dict = {}
    for n, a in enumerate(archs):
        pos.setdefault(a, []).append(n)
    out = {p: np.full(len(archs), np.nan) for p in proxies}
    seen: set = set()
    for part, table in stream:
        for k, a in enumerate(part):
            if a in seen:
                raise RuntimeError(f"executor returned arch {a!r} twice")
            if a not in pos:
                raise RuntimeError(f"executor returned arch {a!r}, which was not asked for")
            seen.add(a)
            for p in proxies:
                out[p][pos[a]] = table[p][k]
    missing = [a for a in pos if a not in seen]
    if missing:
        raise RuntimeError(f"executor returned no scores for {len(missing)} archs, e.g. {missing[0]!r}")
    return out


# ------------------------------------------------------------------------------------ NB201
class _NB201Runner:
    """NB201 cells by index: the seeded minibatch lives on the device for the runner's life;
    ``engine`` 'packed' (``zcfast.batched.iter_packed``) or 'loop' (``scoring.iter_loop``)."""

    def __init__(self, s: dict, device: str):
        import torch

        from zcfast.data import dataset_name, image_source, num_classes

        from zcfast.scoring import resolve_device

        self.settings = s
        self.device = resolve_device(device)  # 'auto': CUDA when available
        self.dataset = dataset_name(s["dataset"])
        self.proxies = list(s["proxies"])
        self.ncls = num_classes(self.dataset)
        # one seed drives weights and minibatch unless weight_seed / data_seed are set apart
        self.weight_seed = int(s.get("weight_seed", s.get("seed", 0)))
        self.data_seed = int(s.get("data_seed", s.get("seed", 0)))
        src = image_source(self.dataset, data_root=s.get("data_root"), images=s.get("images", "default"),
                           normalization=s.get("normalization", "paper"))
        x, y = src.minibatch(int(s.get("batch_size", 64)), self.data_seed)
        self.x, self.y = x.to(self.device), y.to(self.device)
        dtypes = {"float32": torch.float32, "float64": torch.float64}
        if s.get("dtype", "float32") not in dtypes:
            raise ValueError(f"dtype {s.get('dtype')!r}: expected float32 or float64")
        self.dtype = dtypes[s.get("dtype", "float32")]

    def iter(self, archs) -> Iterator:
        s = self.settings
        idx = [int(a) for a in archs]
        if s.get("engine", "packed") == "loop":
            from zcfast.scoring import iter_loop

            for i, vals in iter_loop(idx, self.proxies, self.x, self.y, ncls=self.ncls,
                                     seed=self.weight_seed, flavour=s.get("flavour", "paper"),
                                     device=self.device):
                yield [i], {p: np.asarray([vals[p]], dtype=np.float64) for p in self.proxies}
            return
        from zcfast.batched import iter_packed

        for part, res in iter_packed(idx, self.proxies, self.x, self.y, ncls=self.ncls,
                                     seed=self.weight_seed, flavour=s.get("flavour", "paper"),
                                     device=self.device, chunk=s.get("chunk"),
                                     backend=s.get("backend"), dtype=self.dtype):
            yield list(part), {p: np.asarray(res[p], dtype=np.float64) for p in self.proxies}


def nb201_runner(settings: dict, device: str = "cpu") -> _NB201Runner:
    return _NB201Runner(settings, device)
