"""On-disk cache of zero-cost scores, so that repeated searches never rescore a cell.

A score is keyed by (space, arch, proxy, seed, data). One append-only CSV holds all cells of one
(space, proxy, seed, data) key::

    <root>/scores/<space>/<proxy>/seed<seed>/<data>.csv      header ``index,score``

``index`` is the NB201 index (the benchmark's row), ``score`` is written with ``repr`` so that it
round-trips exactly and NaN/inf stay explicit. ``data`` names what the score depends on besides the
weights: for data-free proxies (synflow, params, flops, l2_norm: synflow feeds an all-ones input,
so only the number of classes and the input size matter) it is ``<dataset>-<flavour>``; for the
others it also names the image source and batch size, ``<dataset>-<images>-b<batch>-<flavour>``.
A torn last line (an interrupted append) is ignored when the file is read.

The root is ``$ZCFAST_CACHE`` if set, else ``~/.cache/zcfast``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from zcfast.data import dataset_name

DATA_FREE_PROXIES = frozenset({"synflow", "params", "flops", "l2_norm"})
NUM_CELLS = 15625


def default_cache_root() -> Path:
    env = os.environ.get("ZCFAST_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "zcfast"


def data_key(proxy: str, dataset: str, *, images: str = "default", batch_size: int = 64,
             flavour: str = "paper") -> str:
    """The ``data`` part of a cache key (see the module docstring)."""
    ds = dataset_name(dataset)
    if proxy in DATA_FREE_PROXIES:
        return f"{ds}-{flavour}"
    return f"{ds}-{images}-b{int(batch_size)}-{flavour}"


@dataclass(frozen=True)
class ScoreKey:
    """Everything a zero-cost score depends on except the arch."""

    space: str
    proxy: str
    seed: int
    data: str

    def __post_init__(self):
        for name in ("space", "proxy", "data"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v or "/" in v or v.startswith("."):
                raise ValueError(f"score cache key: bad {name} {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"score cache key: seed must be an int, got {self.seed!r}")

    @classmethod
    def of(cls, proxy: str, dataset: str, seed: int = 0, *, space: str = "nb201",
           images: str = "default", batch_size: int = 64, flavour: str = "paper") -> ScoreKey:
        return cls(space, proxy, int(seed),
                   data_key(proxy, dataset, images=images, batch_size=batch_size, flavour=flavour))


Scorer = Callable[[np.ndarray], np.ndarray]


class ScoreCache:
    """Append-only score files with an in-memory copy; see the module docstring."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_cache_root()
        self._mem: dict = {}  # key -> dict index -> score
        self.scored = 0  # cells scored live through get_or_score (not read from disk)

    def path(self, key: ScoreKey) -> Path:
        return self.root / "scores" / key.space / key.proxy / f"seed{key.seed}" / f"{key.data}.csv"

    def load(self, key: ScoreKey) -> dict:
        """All cached scores of ``key`` as {NB201 index: score}."""
        if key in self._mem:
            return self._mem[key]
        out: dict = {}
        p = self.path(key)
        if p.exists():
            raw = p.read_bytes()
            if raw and not raw.endswith(b"\n"):
                raw = raw[: raw.rfind(b"\n") + 1]  # torn last line
            lines = raw.decode().splitlines()
            if lines and lines[0].strip() != "index,score":
                raise ValueError(f"{p} is not a zcfast score cache file (header {lines[0]!r})")
            for n, line in enumerate(lines[1:], 2):
                if not line.strip():
                    continue
                try:
                    i, s = line.split(",")
                    i = int(i)
                    s = float(s)
                except ValueError:
                    raise ValueError(f"{p}:{n}: cannot read {line!r} as 'index,score'") from None
                if not 0 <= i < NUM_CELLS:
                    raise ValueError(f"{p}:{n}: NB201 index {i} is out of range [0, 15624]")
                out.setdefault(i, s)  # scores are deterministic: the first one wins
        self._mem[key] = out
        return out

    def add(self, key: ScoreKey, indices: Iterable[int], values: Iterable[float]) -> None:
        """Append scores (cells already cached are skipped)."""
        mem = self.load(key)
        rows = []
        for i, v in zip(indices, values):
            i = int(i)
            if i in mem:
                continue
            mem[i] = float(v)
            rows.append(f"{i},{float(v)!r}\n")
        if not rows:
            return
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        new = not p.exists() or p.stat().st_size == 0
        with open(p, "a") as f:
            if new:
                f.write("index,score\n")
            f.write("".join(rows))

    def table(self, key: ScoreKey) -> np.ndarray | None:
        """(15625,) float64 by NB201 index when every cell is cached, else None."""
        mem = self.load(key)
        if len(mem) < NUM_CELLS:
            return None
        out = np.empty(NUM_CELLS, dtype=np.float64)
        for i, v in mem.items():
            out[i] = v
        return out

    def get_or_score(self, key: ScoreKey, indices: np.ndarray, scorer: Scorer | None) -> np.ndarray:
        """Scores of ``indices`` (NB201 indices): cached ones are read, the rest are scored with
        ``scorer`` in one call and appended to the cache."""
        mem = self.load(key)
        idx = np.asarray(indices, dtype=np.int64)
        missing = np.asarray([i for i in dict.fromkeys(idx.tolist()) if i not in mem], dtype=np.int64)
        if missing.size:
            if scorer is None:
                raise ValueError(
                    f"{missing.size} cells have no cached {key.proxy} score "
                    f"(key {key}) and no scorer was given"
                )
            vals = np.asarray(scorer(missing), dtype=np.float64)
            if vals.shape != missing.shape:
                raise ValueError(f"scorer returned shape {vals.shape} for {missing.size} cells")
            self.add(key, missing, vals)
            self.scored += int(missing.size)
        return np.asarray([mem[i] for i in idx.tolist()], dtype=np.float64)

    def import_scores(self, key: ScoreKey, path: str | os.PathLike, column: str | None = None) -> int:
        """Add the scores of a ``zcfast score`` CSV (``index, arch, <proxy>...``) to the cache.
        Returns the number of cells read."""
        from zcfast.scoring import read_scores

        df, meta = read_scores(path)
        col = column or key.proxy
        if col not in df.columns:
            raise ValueError(f"{path} has no column {col!r} (columns: {list(df.columns)})")
        if meta:
            for k, want in (("seed", key.seed),):
                if k in meta and int(meta[k]) != int(want):
                    raise ValueError(f"{path} was scored with {k}={meta[k]}, the key says {want}")
            if "dataset" in meta and not key.data.startswith(dataset_name(meta["dataset"]) + "-"):
                raise ValueError(f"{path} was scored on {meta['dataset']}, the key says {key.data}")
        self.add(key, df.index.to_numpy(), df[col].to_numpy())
        return len(df)
