"""Scoring NB201 cells into a results file: shared by the CLI, the studies and the benchmarks.

A score file is a CSV (``index, arch, <proxy>...``) written row by row as cells are scored, plus
a sidecar ``<file>.meta.json`` with the settings (dataset, images used, seed, batch, engine...).
``resume=True`` continues an interrupted run: finished rows are kept, a torn last line is
dropped, and the remaining cells are scored in the original order.
"""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from zcfast import __version__
from zcfast.data import dataset_name, image_source, num_classes
from zcfast.proxies import MODERN_PROXIES, PAPER_PROXIES, PROXIES, check_names
from zcfast.proxies import ensemble as _ens
from zcfast.spaces import nb201

# settings that must match for --resume to continue a file
_RESUME_KEYS = ("space", "dataset", "proxies", "seed", "batch_size", "images", "flavour", "archs_spec")


def parse_proxies(spec) -> list:
    """Column names from a list or a comma string: registry proxies, ensembles (``vote``,
    ``az_nas``, ``vkdnw_agg``, ``ensemble[rule]:a+b``; docs/proxies_modern.md) and the tokens
    'paper' (the six of the paper's Table 1), 'modern' (the modern per-model proxies) and 'all'
    (every registry proxy), which expand in place; duplicates are dropped."""
    if isinstance(spec, str):
        spec = [t.strip() for t in spec.split(",") if t.strip()]
    groups = {"paper": PAPER_PROXIES, "modern": MODERN_PROXIES, "all": tuple(PROXIES)}
    out = []
    for t in spec:
        for n in groups.get(t, [t]):
            if n not in out:
                out.append(n)
    per_model = [n for n in out if not _ens.is_ensemble(n)]
    for n in out:
        if _ens.is_ensemble(n):
            _ens.parse(n, known=PROXIES)  # a clear error names a bad rule or member
    if per_model or not out:
        check_names(per_model)
    return out


def split_columns(columns) -> tuple:
    """(per-model proxies to compute, ensemble columns) of parsed column names: the per-model
    list holds the requested proxies in order, then every ensemble member not already in it,
    so a member requested alone too is computed once."""
    per_model = [c for c in columns if not _ens.is_ensemble(c)]
    ensembles = [c for c in columns if _ens.is_ensemble(c)]
    for e in ensembles:
        for m in _ens.base_members(e):
            if m not in per_model:
                per_model.append(m)
    return per_model, ensembles


def parse_archs(spec, seed: int) -> np.ndarray:
    """``all`` | N (N distinct cells sampled with ``seed``) | FILE (one arch string or NB201 index
    per line; blank lines and ``#`` comments skipped) -> NB201 indices."""
    if isinstance(spec, (list, tuple, np.ndarray)):
        return nb201.resolve(spec)
    s = str(spec).strip()
    if s.lower() == "all":
        return np.arange(nb201.NUM_ARCHS, dtype=np.int64)
    if s.isdigit():
        n = int(s)
        if not 1 <= n <= nb201.NUM_ARCHS:
            raise ValueError(f"--archs {n}: expected between 1 and {nb201.NUM_ARCHS} cells")
        return nb201.sample(n, seed)
    p = Path(s)
    if not p.is_file():
        raise ValueError(f"--archs {s!r} is neither 'all', a number of cells, nor an existing file")
    out = []
    seen: dict = {}  # index -> line: a cell listed twice would give two rows of one cell
    for lineno, line in enumerate(p.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            i = nb201.index_of(int(line)) if line.isdigit() else nb201.index_of(line)
        except ValueError as e:
            raise ValueError(f"{p}:{lineno}: {e}") from None
        if i in seen:
            raise ValueError(f"{p}:{lineno}: NB201 cell {i} is already listed on line {seen[i]}")
        seen[i] = lineno
        out.append(i)
    if not out:
        raise ValueError(f"{p} lists no architecture")
    return np.asarray(out, dtype=np.int64)


def git_sha(default: str = "unknown") -> str:
    try:
        here = Path(__file__).resolve().parents[1]
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True,
                           text=True, timeout=5)
        return r.stdout.strip() or default
    except Exception:
        return default


def cpu_name() -> str:
    """The CPU model (for results files)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


ENSEMBLE_SCOPE = ("all cells in the score file: ensemble columns are computed when the file is "
                  "read (zcfast.scoring.read_scores, zcfast correlate), never stored")


def _fmt(v: float) -> str:
    return repr(float(v))  # round-trips exactly; 'nan', 'inf', '-inf' stay explicit


class ScoreWriter:
    """Append-only CSV of scores with a meta sidecar; resumable."""

    def __init__(self, path, meta: dict, proxies: list, resume: bool = False):
        self.path = Path(path)
        self.meta_path = Path(str(path) + ".meta.json")
        self.proxies = list(proxies)
        self.done: dict = {}
        if self.path.exists() and self.path.stat().st_size > 0:
            if not resume:
                raise FileExistsError(
                    f"{self.path} exists; pass --resume to continue it or choose another --out"
                )
            self._load_existing(meta)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(["index", "arch", *self.proxies])
        if not self.meta_path.exists() or not resume:
            self.meta_path.write_text(json.dumps(meta, indent=1))
        self._f = open(self.path, "a", newline="")
        self._w = csv.writer(self._f)

    def _load_existing(self, meta: dict):
        if self.meta_path.exists():
            old = json.loads(self.meta_path.read_text())
            diff = {k: (old.get(k), meta.get(k)) for k in _RESUME_KEYS if old.get(k) != meta.get(k)}
            if diff:
                raise ValueError(
                    f"cannot resume {self.path}: settings differ from the file's "
                    + ", ".join(f"{k}: file {a!r} vs now {b!r}" for k, (a, b) in diff.items())
                )
        raw = self.path.read_bytes()
        if not raw.endswith(b"\n"):  # torn last line from an interrupted write: drop it
            cut = raw.rfind(b"\n") + 1
            with open(self.path, "r+b") as f:
                f.truncate(cut)
            raw = raw[:cut]
        rows = list(csv.reader(io.StringIO(raw.decode())))
        if not rows or rows[0][:2] != ["index", "arch"] or rows[0][2:] != self.proxies:
            raise ValueError(f"cannot resume {self.path}: its header {rows[:1]} does not match "
                             f"the proxies {self.proxies}")
        for r in rows[1:]:
            self.done[int(r[0])] = [float(v) for v in r[2:]]

    def write(self, index: int, values: dict):
        self._w.writerow([int(index), nb201.arch_at(int(index)),
                          *[_fmt(values[p]) for p in self.proxies]])
        self._f.flush()
        self.done[int(index)] = [values[p] for p in self.proxies]

    def close(self):
        self._f.close()


def read_scores(path):
    """(DataFrame of scores indexed by NB201 index, meta dict or {})."""
    import pandas as pd

    df = pd.read_csv(path)
    if "index" not in df.columns:
        raise ValueError(f"{path} is not a zcfast score file (no 'index' column)")
    # correlate indexes the ground truth with these: out-of-range, non-integer or repeated
    # indices would crash or count a cell twice
    idx = df["index"]
    v = pd.to_numeric(idx, errors="coerce")
    bad = v.isna() | (v != v.round()) | ~v.between(0, nb201.NUM_ARCHS - 1)
    if bad.any():
        raise ValueError(f"{path}: data row {int(bad.to_numpy().argmax()) + 1} has index "
                         f"{idx[bad].iloc[0]}, not an NB201 index in [0, {nb201.NUM_ARCHS - 1}]")
    dup = idx.duplicated()
    if dup.any():
        raise ValueError(f"{path}: NB201 index {idx[dup].iloc[0]} appears more than once")
    df["index"] = idx.astype(np.int64)
    df = df.set_index("index")
    meta_p = Path(str(path) + ".meta.json")
    meta = json.loads(meta_p.read_text()) if meta_p.exists() else {}
    return add_ensembles(df, meta.get("ensembles", {})), meta


def add_ensembles(df, ensembles):
    """``df`` with each ensemble column computed over all of its rows (the cells compared), from
    the member columns it holds; the columns named exactly as the ensembles are written."""
    for name in ensembles:
        members = _ens.base_members(name)
        missing = [m for m in members if m not in df.columns]
        if missing:
            raise ValueError(f"ensemble {name!r} needs columns {missing}, which the scores lack")
        df[name] = _ens.evaluate(name, {m: df[m].to_numpy(dtype=np.float64) for m in members})
    return df


def iter_loop(indices: Iterable[int], proxies: list, x, y, *, ncls: int, seed: int,
              flavour: str = "paper", device="cpu", extra_batches=()) -> Iterator:
    """Per-model path: build each cell's network with the (seed, arch) weights, run the
    reference proxies (``extra_batches``: further minibatches, for ZiCo). Yields
    (index, {proxy: value})."""
    from zcfast.proxies import compute_measures
    from zcfast.spaces.nb201_model import build_model

    for i in indices:
        net = build_model(int(i), ncls, flavour=flavour, seed=seed, device=device)
        yield int(i), compute_measures(net, x, y, proxies, device=device, seed=seed,
                                       extra_batches=extra_batches)


def score_to_file(out, *, archs="all", proxies="paper", dataset="cifar10", seed: int = 0,
                  batch_size: int = 64, engine: str = "packed", resume: bool = False,
                  data_root=None, images: str = "default", flavour: str = "paper",
                  device=None, chunk=None, progress: bool = True) -> dict:
    """Score cells into ``out`` (CSV + meta). Returns a summary dict.

    The CSV holds one column per per-model proxy (requested ones, then ensemble members), written
    row by row; ensemble columns are not stored: they rank the cells of the file against each
    other, so :func:`read_scores` computes them over all rows when the file is read (the meta
    records their rule and members). Proxies without a packed implementation run per model
    inside the packed loop (listed in the meta as ``per_model_fallback``)."""
    ds = dataset_name(dataset)
    names = parse_proxies(proxies)
    per_model, ensembles = split_columns(names)
    indices = parse_archs(archs, seed)
    if engine not in ("packed", "loop"):
        raise ValueError(f"unknown engine {engine!r}: expected 'packed' or 'loop'")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    src = image_source(ds, data_root=data_root, images=images)
    x, y = src.minibatch(batch_size, seed)
    from zcfast.proxies import extra_batch_seed, extra_batches_needed

    extra_seeds = [extra_batch_seed(seed, k) for k in range(1, extra_batches_needed(per_model) + 1)]
    extra = [src.minibatch(batch_size, s) for s in extra_seeds]
    meta = {
        "space": "nb201", "dataset": ds, "proxies": names, "seed": int(seed),
        "batch_size": int(batch_size), "images": src.name, "images_description": src.description,
        "flavour": flavour, "archs_spec": archs if isinstance(archs, str) else f"list[{len(indices)}]",
        "engine": engine, "device": str(dev), "zcfast": __version__, "git": git_sha(),
        "torch": torch.__version__, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if extra_seeds:
        meta["extra_batch_seeds"] = extra_seeds  # minibatch(batch_size, s) of the same images
    if ensembles:
        meta["ensembles"] = {e: {"rule": _ens.parse(e).rule, "members": _ens.base_members(e)}
                             for e in ensembles}
        meta["ensemble_ranks_over"] = ENSEMBLE_SCOPE
    looped = per_model
    if engine == "packed":
        from zcfast.batched import SUPPORTED

        looped = [p for p in per_model if p not in SUPPORTED]
        if looped:
            meta["per_model_fallback"] = looped
    packed = [p for p in per_model if p not in looped]
    writer = ScoreWriter(out, meta, per_model, resume=resume)
    todo = [int(i) for i in indices if int(i) not in writer.done]
    ncls = num_classes(ds)
    x, y = x.to(dev), y.to(dev)
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(indices), initial=len(indices) - len(todo), unit="cell",
                   desc=f"scoring {ds}", dynamic_ncols=True)
    loop_kw = dict(ncls=ncls, seed=seed, flavour=flavour, device=dev, extra_batches=extra)
    try:
        if not packed:
            for i, vals in iter_loop(todo, looped, x, y, **loop_kw):
                writer.write(i, vals)
                if bar:
                    bar.update(1)
        else:
            from zcfast.batched import iter_packed

            for idx_chunk, table in iter_packed(todo, packed, x, y, ncls=ncls, seed=seed,
                                                flavour=flavour, device=dev, chunk=chunk):
                for k, i in enumerate(idx_chunk):
                    vals = {p: table[p][k] for p in packed}
                    if looped:
                        vals.update(next(iter_loop([i], looped, x, y, **loop_kw))[1])
                    writer.write(i, vals)
                if bar:
                    bar.update(len(idx_chunk))
    finally:
        writer.close()
        if bar:
            bar.close()
    dt = time.perf_counter() - t0
    return {"out": str(out), "scored": len(todo), "total": len(indices), "seconds": dt,
            "cells_per_s": len(todo) / dt if dt > 0 and todo else math.nan, "meta": meta,
            "ensembles": ensembles}
