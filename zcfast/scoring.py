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
from zcfast import reduced_training as _reduced
from zcfast.data import dataset_name, image_source, num_classes
from zcfast.proxies import PAPER_PROXIES, PROXIES, check_names
from zcfast.spaces import nb201

# settings that must match for --resume to continue a file
_RESUME_KEYS = ("space", "dataset", "proxies", "seed", "batch_size", "images", "flavour", "archs_spec",
                "sample_seed", "weight_seed", "data_seed", "normalization", "reduced_training")

# proxies that never read the minibatch (synflow scores an all-ones input), and the settings
# that only change the minibatch's pixels: a file of data-free proxies resumes across them
_DATA_FREE = {"synflow", "params", "flops", "l2_norm"}
_PIXEL_KEYS = ("data_seed", "normalization")


def _legacy(meta: dict, key: str):
    """The value a meta file written before ``key`` existed implies for it (None: no default):
    one seed drove sampling, weights and data; the images were normalised with the dataset's
    own statistics (the same as the paper's, except for CIFAR-100)."""
    if key in ("sample_seed", "weight_seed", "data_seed"):
        return meta.get("seed")
    if key == "normalization":
        return "dataset" if meta.get("dataset") == "cifar100" else "paper"
    return None


def resolve_device(device=None):
    """torch.device from 'auto' / None (CUDA when available, else CPU), 'cpu', 'cuda', 'cuda:N'."""
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: zcfast runs on cpu or cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here")
    return dev


def device_name(dev) -> str:
    """What ran: the GPU's name, or the CPU model."""
    dev = torch.device(dev)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return cpu_name()


def parse_proxies(spec) -> list:
    """Proxy names from a list or a comma string; the tokens 'paper' (the six of the paper's
    Table 1) and 'all' expand in place, duplicates are dropped. Reduced-training proxies
    (``econas[:key=value+...]``, zcfast/reduced_training.py) are kept as written."""
    if isinstance(spec, str):
        spec = [t.strip() for t in spec.split(",") if t.strip()]
    out = []
    for t in spec:
        for n in (PAPER_PROXIES if t == "paper" else PROXIES if t == "all" else [t]):
            if n not in out:
                out.append(n)
    return _reduced.check_proxy_names(out, check_names)


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
            keys = [k for k in _RESUME_KEYS
                    if not (k in _PIXEL_KEYS and set(self.proxies) <= _DATA_FREE)]
            diff = {k: (old.get(k, _legacy(old, k)), meta.get(k)) for k in keys
                    if old.get(k, _legacy(old, k)) != meta.get(k)}
            if diff:
                raise ValueError(
                    f"cannot resume {self.path}: settings differ from the file's "
                    + ", ".join(f"{k}: file {a!r} vs now {b!r}" for k, (a, b) in diff.items())
                )
            if old.get("device") and meta.get("device") and meta["device"] not in old["device"].split(" + "):
                # a run resumed on another device: the file holds rows of both, say so
                old["device"] = f"{old['device']} + {meta['device']}"
                old["device_name"] = f"{old.get('device_name', '?')} + {meta.get('device_name', '?')}"
                self.meta_path.write_text(json.dumps(old, indent=1))
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
    return df, meta


def iter_loop(indices: Iterable[int], proxies: list, x, y, *, ncls: int, seed: int,
              flavour: str = "paper", device="cpu") -> Iterator:
    """Per-model path: build each cell's network with the (seed, arch) weights, run the
    reference proxies. Yields (index, {proxy: value})."""
    from zcfast.proxies import compute_measures
    from zcfast.spaces.nb201_model import build_model

    for i in indices:
        net = build_model(int(i), ncls, flavour=flavour, seed=seed, device=device)
        yield int(i), compute_measures(net, x, y, proxies, device=device)


def _seed(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def score_to_file(out, *, archs="all", proxies="paper", dataset="cifar10", seed: int = 0,
                  batch_size: int = 64, engine: str = "packed", resume: bool = False,
                  data_root=None, images: str = "default", flavour: str = "paper",
                  device="auto", chunk=None, progress: bool = True, sample_seed=None,
                  weight_seed=None, data_seed=None, normalization: str = "paper") -> dict:
    """Score cells into ``out`` (CSV + meta). Returns a summary dict.

    ``seed`` drives cell sampling (``archs=N``), the weights and the minibatch; ``sample_seed``,
    ``weight_seed`` and ``data_seed`` override it for one of the three. ``device``: 'auto'
    (CUDA when available), 'cpu', 'cuda' or 'cuda:N'. ``normalization``: 'paper' or 'dataset'
    (docs/data.md). All of them are recorded in the meta file, and --resume compares them."""
    ds = dataset_name(dataset)
    names = parse_proxies(proxies)
    seed = _seed(seed, "seed")
    s_sample, s_weight, s_data = (seed if v is None else _seed(v, n) for v, n in (
        (sample_seed, "sample_seed"), (weight_seed, "weight_seed"), (data_seed, "data_seed")))
    indices = parse_archs(archs, s_sample)
    if engine not in ("packed", "loop"):
        raise ValueError(f"unknown engine {engine!r}: expected 'packed' or 'loop'")
    dev = resolve_device(device)
    src = image_source(ds, data_root=data_root, images=images, normalization=normalization)
    x, y = src.minibatch(batch_size, s_data)
    meta = {
        "space": "nb201", "dataset": ds, "proxies": names, "seed": seed,
        "sample_seed": s_sample, "weight_seed": s_weight, "data_seed": s_data,
        "batch_size": int(batch_size), "images": src.name, "images_description": src.description,
        "normalization": normalization, "normalization_mean": list(src.mean),
        "normalization_std": list(src.std),
        "flavour": flavour, "archs_spec": archs if isinstance(archs, str) else f"list[{len(indices)}]",
        "engine": engine, "device": str(dev), "device_name": device_name(dev),
        "zcfast": __version__, "git": git_sha(),
        "torch": torch.__version__, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    zc_names, rt_specs = _reduced.split_proxies(names)
    if rt_specs:  # reduction factors and images of every reduced-training column
        meta["reduced_training"] = _reduced.describe_specs(
            rt_specs, dataset=ds, data_root=data_root, data_seed=s_data, normalization=normalization)
    writer = ScoreWriter(out, meta, names, resume=resume)
    todo = [int(i) for i in indices if int(i) not in writer.done]
    ncls = num_classes(ds)
    x, y = x.to(dev), y.to(dev)
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(indices), initial=len(indices) - len(todo), unit="cell",
                   desc=f"scoring {ds}", dynamic_ncols=True)
    try:
        if rt_specs:
            _reduced.score_rows(writer, todo, zc_names, rt_specs, x=x, y=y, dataset=ds,
                                data_root=data_root, weight_seed=s_weight, data_seed=s_data,
                                flavour=flavour, engine=engine, device=dev, chunk=chunk,
                                normalization=normalization, bar=bar)
        elif engine == "loop":
            it = iter_loop(todo, names, x, y, ncls=ncls, seed=s_weight, flavour=flavour, device=dev)
            for i, vals in it:
                writer.write(i, vals)
                if bar:
                    bar.update(1)
        else:
            from zcfast.batched import iter_packed

            for idx_chunk, table in iter_packed(todo, names, x, y, ncls=ncls, seed=s_weight,
                                                flavour=flavour, device=dev, chunk=chunk):
                for k, i in enumerate(idx_chunk):
                    writer.write(i, {p: table[p][k] for p in names})
                if bar:
                    bar.update(len(idx_chunk))
    finally:
        writer.close()
        if bar:
            bar.close()
    dt = time.perf_counter() - t0
    return {"out": str(out), "scored": len(todo), "total": len(indices), "seconds": dt,
            "cells_per_s": len(todo) / dt if dt > 0 and todo else math.nan, "meta": meta}
