"""A scoring task: "score these archs with these settings", independent of who runs it.

A :class:`ScoreTask` is a search-space name plus a settings dict of plain values (everything a
score depends on besides the arch, and how to compute it). Archs are the space's codes (plain
ints, picklable; docs/spaces.md). An executor hands a task and a
list of archs to a *runner*, built once per (process, task) by the space's runner factory and
kept warm: it holds the seeded minibatch on its device and whatever else is worth keeping
between chunks. A runner yields ``(archs, {proxy: (n,) float64 array})`` for consecutive parts
of the archs it is given, in order.

Runner factories are registered by space name as ``"module:function"`` strings, so that a
worker on another host imports the factory by name (``RUNNERS``; every registered space gets the
generic :func:`space_runner`, which works through the space interface; a space with special
needs registers its own with :func:`register_runner`). The semantics of the scores (seeds, batch, packing) are in
docs/ray.md and README.md.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

# space name -> "module:factory"; factory(settings: dict, device: str, space: str) -> runner.
# Spaces not listed use the generic runner.
GENERIC = "zcfast.executors.task:space_runner"
RUNNERS: dict = {}


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
            from zcfast.spaces import get_space

            get_space(self.space)  # ValueError naming an unknown space
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
    mod, _, fn = RUNNERS.get(task.space, GENERIC).partition(":")
    factory = getattr(importlib.import_module(mod), fn)
    return factory(dict(task.settings), device, task.space)


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


# ---------------------------------------------------------------------------- any space
class SpaceRunner:
    """Scores codes of one space through the space interface: the seeded minibatch (and any
    extra batch a proxy needs) lives on the device for the runner's life; ``engine`` 'packed'
    (the space's packed builder, for the proxies it computes; the others per model, cell by
    cell, inside the packed loop) or 'loop' (every proxy per model)."""

    def __init__(self, s: dict, device: str, space: str):
        from zcfast.data import dataset_name
        from zcfast.proxies import extra_batch_seed, extra_batches_needed
        from zcfast.scoring import resolve_device
        from zcfast.spaces import get_space

        self.settings = s
        self.space = get_space(space)
        self.device = resolve_device(device)  # 'auto': CUDA when available
        self.dataset = dataset_name(s["dataset"])
        self.proxies = list(s["proxies"])
        # one seed drives weights and minibatch unless weight_seed / data_seed are set apart
        self.weight_seed = int(s.get("weight_seed", s.get("seed", 0)))
        self.data_seed = int(s.get("data_seed", s.get("seed", 0)))
        self.options = dict(s.get("options") or {})
        if "flavour" in s:  # the historical setting
            self.options.setdefault("flavour", s["flavour"])
        if not self.options and "flavour" in self.space.option_names:
            self.options["flavour"] = "paper"
        import torch

        dtypes = {"float32": torch.float32, "float64": torch.float64}
        if s.get("dtype", "float32") not in dtypes:
            raise ValueError(f"dtype {s.get('dtype')!r}: expected float32 or float64")
        self.dtype = dtypes[s.get("dtype", "float32")]
        from zcfast.data import batches

        # drawn once per process and setting, on the device once (docs/performance.md)
        bs = int(s.get("batch_size", 64))
        mb = batches.minibatch(self.space, self.dataset, bs, self.data_seed,
                               images=s.get("images", "default"), data_root=s.get("data_root"),
                               normalization=s.get("normalization", "paper"))
        self.x, self.y = batches.on_device(mb, self.device)
        self.extra = tuple(batches.more(mb, bs, extra_batch_seed(self.data_seed, k), self.device)
                           for k in range(1, extra_batches_needed(self.proxies) + 1))
        # the packed passes' dtype, converted once here rather than in every chunk
        self.xp = batches.on_device(mb, self.device, self.dtype)[0]
        self.extra_p = tuple(batches.more(mb, bs, extra_batch_seed(self.data_seed, k), self.device,
                                          self.dtype)
                             for k in range(1, extra_batches_needed(self.proxies) + 1))
        from zcfast.batched.base import PRECISIONS

        self.precision = s.get("precision", "fp32")  # packed passes only (docs/performance.md)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: expected one of {PRECISIONS}")
        packable = set(self.space.packed_proxies())
        self.packed = [p for p in self.proxies if p in packable] \
            if s.get("engine", "packed") == "packed" else []
        self.looped = [p for p in self.proxies if p not in self.packed]

    def _loop(self, codes, names) -> Iterator:
        from zcfast.scoring import iter_loop

        return iter_loop(codes, names, self.x, self.y, seed=self.weight_seed, space=self.space,
                         dataset=self.dataset, device=self.device, extra_batches=self.extra,
                         options=self.options)

    def _packed_options(self) -> dict:
        if self.precision == "fp32":
            return self.options
        return {**self.options, "precision": self.precision}

    def iter(self, archs) -> Iterator:
        codes = [int(a) for a in archs]
        if not self.packed:
            for c, vals in self._loop(codes, self.looped):
                yield [c], {p: np.asarray([vals[p]], dtype=np.float64) for p in self.proxies}
            return
        from zcfast.batched import iter_packed_space

        s = self.settings
        for part, res in iter_packed_space(self.space, codes, self.packed, self.xp, self.y,
                                           dataset=self.dataset, seed=self.weight_seed,
                                           device=self.device, chunk=s.get("chunk"),
                                           backend=s.get("backend"), dtype=self.dtype,
                                           options=self._packed_options(),
                                           extra_batches=self.extra_p):
            out = {p: np.asarray(res[p], dtype=np.float64) for p in self.packed}
            if self.looped:
                per = dict(self._loop(part, self.looped))
                for p in self.looped:
                    out[p] = np.asarray([per[c][p] for c in part], dtype=np.float64)
            yield list(part), out


def space_runner(settings: dict, device: str = "cpu", space: str = "nb201") -> SpaceRunner:
    return SpaceRunner(settings, device, space)
