"""On-disk cache of zero-cost scores, so that repeated searches never rescore a network.

A cached score is keyed by the network's *key* (its identity in its space: the arch string for
NB201, the official graph hash for NB101; docs/spaces.md) and by a :class:`ScoreKey` that names
everything else the score depends on: the space, the proxy and the version of its definition,
the dataset (number of classes, input size), the network flavour, the weight seed and the
precision, and, for proxies that read images, the image source, batch size, minibatch seed and
normalisation. One append-only CSV holds all networks of one ScoreKey::

    <root>/scores/v2/<space>/<proxy>-v<version>/<dataset>-<flavour>-w<seed>-<precision>[-<data>].csv

with header ``key,score``; ``<data>`` is ``<images>-b<batch>-d<data seed>-<normalisation>`` for
proxies that read images and absent for the data-free ones (synflow, params, flops, l2_norm:
synflow feeds an all-ones input, so only the number of classes and the input size matter).
Scores are written with ``repr`` so that they round-trip exactly and NaN/inf stay explicit. A
torn last line (an interrupted append) is ignored when the file is read.

A score file made by ``zcfast score`` is imported only when its meta file records every field of
the key and each one matches: a file scored with other settings is refused, naming them.

The root is ``$ZCFAST_CACHE`` if set, else ``~/.cache/zcfast``.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np

from zcfast.data import dataset_name

DATA_FREE_PROXIES = frozenset({"synflow", "params", "flops", "l2_norm"})
# proxies computed in one fixed precision whatever the run's (synflow: float64 always; counts
# are exact)
FIXED_PRECISION = {"synflow": "fp64", "params": "exact", "flops": "exact"}
PRECISIONS = ("fp32", "fp64", "tf32", "bf16")


def default_cache_root() -> Path:
    env = os.environ.get("ZCFAST_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "zcfast"


def _proxy_version(proxy: str) -> int:
    from zcfast.proxies import PROXIES

    if proxy not in PROXIES:
        raise ValueError(f"unknown proxy {proxy!r}: available are {', '.join(PROXIES)}")
    return int(getattr(PROXIES[proxy], "version", 1))


def _safe(name: str, v) -> str:
    if not isinstance(v, str) or not v or "/" in v or v.startswith(".") or "," in v:
        raise ValueError(f"score cache key: bad {name} {v!r}")
    return v


def _int(name: str, v) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"score cache key: {name} must be an int, got {v!r}")
    return int(v)


@dataclass(frozen=True)
class ScoreKey:
    """Everything a zero-cost score depends on except the architecture (module docstring).

    The data fields (``images``, ``batch_size``, ``data_seed``, ``normalization``) are None for
    the data-free proxies; build keys with :meth:`of` or :meth:`from_meta`.
    """

    space: str
    proxy: str
    proxy_version: int
    dataset: str
    flavour: str
    seed: int  # weight seed
    precision: str
    images: str | None = None
    batch_size: int | None = None
    data_seed: int | None = None
    normalization: str | None = None

    def __post_init__(self):
        for name in ("space", "proxy", "dataset", "flavour", "precision"):
            _safe(name, getattr(self, name))
        _int("seed", self.seed)
        _int("proxy_version", self.proxy_version)
        data = (self.images, self.batch_size, self.data_seed, self.normalization)
        if self.proxy in DATA_FREE_PROXIES:
            if any(v is not None for v in data):
                raise ValueError(f"score cache key: {self.proxy} reads no image, so it has no "
                                 "image, batch, data seed or normalisation fields")
        else:
            if any(v is None for v in data):
                raise ValueError(f"score cache key: {self.proxy} reads images: images, "
                                 "batch_size, data_seed and normalization are all needed")
            _safe("images", self.images)
            _safe("normalization", self.normalization)
            _int("batch_size", self.batch_size)
            _int("data_seed", self.data_seed)

    @classmethod
    def of(cls, proxy: str, dataset: str, seed: int = 0, *, space: str = "nb201",
           images: str = "default", batch_size: int | None = None, flavour: str = "paper",
           data_seed: int | None = None, normalization: str = "paper",
           precision: str = "fp32") -> ScoreKey:
        """The key of ``proxy`` scores with weight seed ``seed`` (the minibatch seed defaults to
        it, as ``zcfast score --seed`` does; the batch size to the space's default)."""
        from zcfast.data import is_download_name, resolve_images
        from zcfast.spaces import get_space

        if batch_size is None:
            batch_size = get_space(space).default_batch_size

        ds = dataset_name(dataset)
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}: expected one of {PRECISIONS}")
        prec = FIXED_PRECISION.get(proxy, precision)
        if proxy in DATA_FREE_PROXIES:
            return cls(space, proxy, _proxy_version(proxy), ds, flavour, _int("seed", seed), prec)
        return cls(space, proxy, _proxy_version(proxy), ds, flavour, _int("seed", seed), prec,
                   images if is_download_name(ds, images) else resolve_images(ds, images),
                   _int("batch_size", batch_size),
                   _int("data_seed", seed if data_seed is None else data_seed), normalization)

    @classmethod
    def from_meta(cls, meta: dict, proxy: str, where: str = "the score file") -> ScoreKey:
        """The key of the ``proxy`` column of a ``zcfast score`` file, from its meta. Raises
        ValueError naming what the meta does not record."""
        need = ["space", "dataset", "flavour", "seed"]
        if proxy not in DATA_FREE_PROXIES:
            need += ["images", "batch_size"]
        missing = [k for k in need if k not in meta]
        if missing:
            raise ValueError(f"{where} does not record {', '.join(missing)} in its meta file, so "
                             "what its scores depend on is unknown: rescore it with this zcfast")
        images = meta.get("images", "default")
        if proxy not in DATA_FREE_PROXIES and images == f"{dataset_name(meta['dataset'])}-download":
            raise ValueError(f"{where} was scored on a CIFAR download under the name {images!r}, "
                             "which zcfast used before download names said which download "
                             "(docs/data.md): rescore it with this zcfast")
        seed = meta.get("weight_seed", meta["seed"])
        return cls.of(proxy, meta["dataset"], int(seed), space=meta["space"],
                      images=meta.get("images", "default"),
                      batch_size=int(meta.get("batch_size", 64)), flavour=meta["flavour"],
                      data_seed=int(meta.get("data_seed", meta["seed"])),
                      normalization=meta.get("normalization", "paper"),
                      precision=meta.get("precision", "fp32"))

    def for_proxy(self, proxy: str) -> ScoreKey:
        """The key of ``proxy`` scores made with the same settings (an ensemble's members)."""
        if proxy == self.proxy:
            return self
        if self.images is None and proxy not in DATA_FREE_PROXIES:
            raise ValueError(f"the key of {self.proxy} names no image settings, which {proxy} needs: "
                             "build the key with ScoreKey.of")
        return ScoreKey.of(proxy, self.dataset, self.seed, space=self.space,
                           images=self.images or "default", batch_size=self.batch_size or 64,
                           flavour=self.flavour, data_seed=self.data_seed,
                           normalization=self.normalization or "paper",
                           precision="fp32" if self.precision in ("fp64", "exact") else self.precision)

    def differences(self, other: ScoreKey) -> dict:
        """{field: (self, other)} of the fields that differ."""
        a, b = asdict(self), asdict(other)
        return {f.name: (a[f.name], b[f.name]) for f in fields(self) if a[f.name] != b[f.name]}

    def settings(self) -> dict:
        """What the score depends on besides the network, the proxy and the weight seed: the
        network flavour and, for a proxy that reads images, the minibatch and the precision of
        its passes (a search records it with each run, docs/search.md)."""
        out = {"flavour": self.flavour}
        if self.images is not None:
            out.update(images=self.images, batch_size=self.batch_size, data_seed=self.data_seed,
                       normalization=self.normalization, precision=self.precision)
        return out

    def relpath(self) -> Path:
        name = f"{self.dataset}-{self.flavour}-w{self.seed}-{self.precision}"
        if self.images is not None:
            name += f"-{self.images}-b{self.batch_size}-d{self.data_seed}-{self.normalization}"
        return Path("scores") / "v2" / self.space / f"{self.proxy}-v{self.proxy_version}" / f"{name}.csv"


Scorer = Callable[[np.ndarray], np.ndarray]


class ScoreCache:
    """Append-only score files with an in-memory copy; see the module docstring. Scores are
    keyed by the network's key string."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_cache_root()
        self._mem: dict = {}  # ScoreKey -> {network key: score}
        self.scored = 0  # networks scored live through get_or_score (not read from disk)

    def path(self, key: ScoreKey) -> Path:
        return self.root / key.relpath()

    def load(self, key: ScoreKey) -> dict:
        """All cached scores of ``key`` as {network key: score}."""
        if key in self._mem:
            return self._mem[key]
        out: dict = {}
        p = self.path(key)
        if p.exists():
            raw = p.read_bytes()
            if raw and not raw.endswith(b"\n"):
                raw = raw[: raw.rfind(b"\n") + 1]  # torn last line
            rows = list(csv.reader(io.StringIO(raw.decode())))
            if rows and rows[0] != ["key", "score"]:
                raise ValueError(f"{p} is not a zcfast score cache file (header {rows[0]!r})")
            for n, row in enumerate(rows[1:], 2):
                if not row:
                    continue
                try:
                    k, s = row
                    s = float(s)
                except ValueError:
                    raise ValueError(f"{p}:{n}: cannot read {row!r} as 'key,score'") from None
                out.setdefault(k, s)  # scores are deterministic: the first one wins
        self._mem[key] = out
        return out

    def add(self, key: ScoreKey, keys: Iterable[str], values: Iterable[float]) -> None:
        """Append scores (networks already cached are skipped)."""
        mem = self.load(key)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        for k, v in zip(keys, values):
            k = str(k)
            if k in mem:
                continue
            mem[k] = float(v)
            w.writerow([k, repr(float(v))])
        if not buf.tell():
            return
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        new = not p.exists() or p.stat().st_size == 0
        with open(p, "a") as f:
            if new:
                f.write("key,score\n")
            f.write(buf.getvalue())

    def table(self, key: ScoreKey, keys: list) -> np.ndarray | None:
        """Scores of the networks ``keys`` (in that order) when every one is cached, else None."""
        mem = self.load(key)
        try:
            return np.asarray([mem[k] for k in keys], dtype=np.float64)
        except KeyError:
            return None

    def get_or_score(self, key: ScoreKey, keys: list, codes, scorer: Scorer | None) -> np.ndarray:
        """Scores of the networks ``keys`` (whose codes are ``codes``): cached ones are read, the
        rest are scored with ``scorer`` (codes -> scores) in one call and appended."""
        mem = self.load(key)
        todo = {}
        for k, c in zip(keys, codes):
            if k not in mem and k not in todo:
                todo[k] = int(c)
        if todo:
            if scorer is None:
                raise ValueError(f"{len(todo)} networks have no cached {key.proxy} score "
                                 f"(key {key}) and no scorer was given")
            vals = np.asarray(scorer(np.asarray(list(todo.values()), dtype=np.uint64)),
                              dtype=np.float64)
            if vals.shape != (len(todo),):
                raise ValueError(f"scorer returned shape {vals.shape} for {len(todo)} networks")
            self.add(key, list(todo), vals)
            self.scored += len(todo)
        return np.asarray([mem[k] for k in keys], dtype=np.float64)

    def import_scores(self, key: ScoreKey, path: str | os.PathLike, column: str | None = None) -> int:
        """Add the scores of a ``zcfast score`` CSV to the cache. The file's meta must record
        every field of ``key`` and agree with it, and networks already cached must have the
        same scores, within ``zcfast.scoring.agree_rtol`` (ValueError naming them otherwise;
        nothing is added then). Returns the number of networks read."""
        keys, values = self.check_import(key, path, column)
        self.add(key, keys, values)
        return len(keys)

    def check_import(self, key: ScoreKey, path: str | os.PathLike, column: str | None = None,
                     table: tuple | None = None):
        """(network keys, scores) that :meth:`import_scores` would add, after its checks
        (``table``: the file's ``read_scores`` result, when the caller has read it already)."""
        from zcfast.scoring import agree_rtol, read_scores, scores_agree, typical_magnitude
        from zcfast.spaces import get_space

        df, meta = read_scores(path) if table is None else table
        col = column or key.proxy
        if col not in df.columns:
            raise ValueError(f"{path} has no column {col!r} (columns: {list(df.columns)})")
        if not meta:
            raise ValueError(f"{path} has no meta file ({path}.meta.json), so what its scores "
                             "depend on is unknown: rescore it with `zcfast score`")
        have = ScoreKey.from_meta(meta, key.proxy, where=str(path))
        diff = have.differences(key)
        if diff:
            raise ValueError(f"{path} was scored with other settings than the search needs: "
                             + ", ".join(f"{k} file {a!r} vs needed {b!r}"
                                         for k, (a, b) in diff.items()))
        sp = get_space(key.space)
        keys = [sp.key_from_row(v) for v in df.index]
        values = df[col].to_numpy(dtype=np.float64)
        mem = self.load(key)
        rtol = agree_rtol(key.precision)
        shared = [(k, v, mem[k]) for k, v in zip(keys, values) if k in mem]
        new_v = np.array([v for _, v, _ in shared], dtype=np.float64)
        old_v = np.array([c for _, _, c in shared], dtype=np.float64)
        bad = ~scores_agree(new_v, old_v, rtol, typical_magnitude(values, old_v))
        if bad.any():
            k, v, c = shared[int(np.argmax(bad))]
            raise ValueError(f"{path}: network {k} has {col} {float(v)!r}, but the cache "
                             f"({self.path(key)}) holds {c!r} (more than {rtol:g} relative "
                             "apart): one of them was made with other code; move that cache "
                             "file away or use another --cache-dir")
        return keys, values
