"""Scoring networks of any search space into a results file: shared by the CLI, the studies and
the benchmarks.

A score file is a CSV written chunk by chunk as networks are scored (one write and flush per
chunk): the space's identifying columns
(NB201: ``index, arch``; NB101: ``hash, arch``; see ``Space.id_columns``) and one column per
proxy, plus a sidecar ``<file>.meta.json`` with the settings (space, dataset, images used,
seeds, batch, engine, device...). ``resume=True`` continues an interrupted run: finished rows are
kept, a torn last line is dropped, and the remaining networks are scored. Who computes the
scores is an executor (zcfast.executors: this process, or Ray actors); the rows of a finished
file are in the order of ``archs`` whatever order the chunks finished in.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from zcfast import __version__
from zcfast import reduced_training as _reduced
from zcfast.cli_common import refuse_overwrite
from zcfast.data import dataset_name
from zcfast.proxies import MODERN_PROXIES, PAPER_PROXIES, PROXIES, check_names
from zcfast.proxies import ensemble as _ens
from zcfast.spaces import get_space

# settings that must match for --resume to continue a file
# proxies whose bf16 ranking departs from fp32's (bench/results/precision.md, docs/performance.md)
BF16_POOR = ("plain", "grasp", "jacob_cov")
_RESUME_KEYS = ("space", "dataset", "proxies", "seed", "batch_size", "images", "flavour", "archs_spec",
                "sample_seed", "weight_seed", "data_seed", "normalization", "data", "precision",
                "reduced_training")

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
    if key == "precision":  # before reduced precision existed, every file was fp32
        return "fp32"
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


def parse_proxies(spec, space=None) -> list:
    """Column names from a list or a comma string: registry proxies, ensembles (``vote``,
    ``az_nas``, ``vkdnw_agg``, ``ensemble[rule]:a+b``; docs/proxies_modern.md) and the tokens
    'paper' (the six of the paper's Table 1), 'modern' (the modern per-model proxies) and 'all'
    (every registry proxy), which expand in place; duplicates are dropped. Reduced-training
    proxies (``econas[:key=value+...]``, docs/reduced_training.md) are kept as written.

    With a ``space`` (a Space), the tokens expand to the proxies that apply to its networks:
    those its ``proxy_problem`` refuses are left out (NB-NLP: docs/nbnlp.md). A refused proxy
    named on its own is kept, so that scoring refuses it with the reason."""
    if isinstance(spec, str):
        spec = [t.strip() for t in spec.split(",") if t.strip()]

    def applies(names):
        return tuple(n for n in names if space is None or not space.proxy_problem(n))

    groups = {"paper": applies(PAPER_PROXIES), "modern": applies(MODERN_PROXIES),
              "all": applies(PROXIES)}
    out = []
    for t in spec:
        for n in groups.get(t, [t]):
            if n not in out:
                out.append(n)
    per_model = [n for n in out if not _ens.is_ensemble(n)]
    for n in out:
        if _ens.is_ensemble(n):
            _ens.parse(n, known=PROXIES)  # a clear error names a bad rule or member
    zero_cost, specs = _reduced.split_proxies(per_model)
    for sp in specs:
        _reduced.parse_spec(sp)  # a clear error names the bad option
    if zero_cost or not out:
        check_names(zero_cost)
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


def check_precision(precision: str, engine: str, device, proxies) -> None:
    """The checks of ``--precision`` for a scoring run (``zcfast score`` and the search's live
    scorer): a known name, the packed engine for a reduced one, CUDA for tf32; a warning for the
    proxies whose bf16 ranking departs from fp32's. ValueError names the bad value."""
    from zcfast.batched.base import PRECISIONS

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: expected one of {PRECISIONS}")
    if precision != "fp32" and engine != "packed":
        raise ValueError(f"precision {precision!r} applies to the packed engine, not engine={engine!r}")
    if precision == "tf32" and torch.device(device).type != "cuda":
        raise ValueError(f"precision 'tf32' needs a CUDA device, not {device}")
    poor = [p for p in proxies if p in BF16_POOR]
    if precision == "bf16" and poor:
        print(f"warning: under bf16, {', '.join(poor)} rank cells differently from fp32 "
              "(Spearman vs fp32 on 50 NB201 cells: plain 0.69, grasp 0.77, jacob_cov 0.987; "
              "bench/results/precision.md): use fp32 for them", file=sys.stderr)


def git_sha(default: str = "unknown") -> str:
    """The short SHA of the checkout zcfast runs from; ``$ZCFAST_GIT_SHA`` when set (a copied
    tree without .git, e.g. on a lent GPU machine: bench/DEVICE.md)."""
    env = os.environ.get("ZCFAST_GIT_SHA")
    if env:
        return env[:7] if len(env) == 40 else env
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


def _number(v: str, path, line: int, column: str) -> float:
    """A score field as a float ('nan', 'inf' included; an empty field, which older files hold
    for a score not computed, is NaN); ValueError naming the file, line and column otherwise."""
    if v == "":
        return math.nan
    try:
        return float(v)
    except ValueError:
        raise ValueError(f"{path}: line {line}, column {column!r}: {v!r} is not a number") from None


def _whole_rows(path) -> str:
    """A score CSV's text, checked: not empty, every row with the header's number of fields
    (ValueError naming the first damaged line). A torn last line (a run still writing the file,
    or one killed mid-write; --resume drops it too) is left out with a warning."""
    import warnings

    raw = Path(path).read_bytes()
    if str(path).endswith(".gz"):  # a bundled score file (bench/data)
        import gzip

        raw = gzip.decompress(raw)
    try:
        text = raw.decode()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not a text (CSV) score file: {e}") from None
    if not text.strip():
        raise ValueError(f"{path} is empty: not a zcfast score file")
    if "\n" not in text:  # a header alone
        text += "\n"
    elif not text.endswith("\n"):
        text = text[: _whole_length(text)]
        warnings.warn(f"{path}: its last line is incomplete (a run still writing the file, or one "
                      "interrupted mid-write) and is left out", stacklevel=3)
    rows = csv.reader(io.StringIO(text))
    header = next(rows, [])
    for line, r in enumerate(rows, start=2):
        if _damaged(r, header):
            raise ValueError(f"{path}: {_damaged_message(line, r, header)}")
    return text


def _whole_length(data) -> int:
    """Length of the whole lines at the start of a score file's text or bytes: all of it, or up
    to a torn last line (a run killed mid-write, or one still writing), which readers leave out
    and a resumed writer cuts off."""
    nl = "\n" if isinstance(data, str) else b"\n"
    return len(data) if data.endswith(nl) else data.rfind(nl) + 1


def _damaged(row: list, header: list) -> bool:
    """Whether a score file's row has another number of fields than its header (a blank line,
    which pandas skips, is not damaged)."""
    return bool(row) and len(row) != len(header)


def _damaged_message(line: int, row: list, header: list, hint: str = "") -> str:
    """What is wrong with a damaged row (:func:`_damaged`), ``hint`` appended in the bracket."""
    return f"line {line} has {len(row)} fields, the header {len(header)} (a damaged row{hint})"


def read_meta(path) -> dict:
    """A score file's meta sidecar (JSON); ValueError naming the file when it is not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not a valid meta file (JSON): {e}") from None


def parse_archs(spec, seed: int, *, space="nb201", dataset: str = "cifar10", data=None) -> list:
    """Codes of the networks to score. ``spec``: ``all`` (every network of the space's
    universe of ``dataset``: NB201's 15,625 cells, NB101's bundled pool or the official file
    given as ``data``...), N (N distinct networks sampled with ``seed``), a FILE in the space's
    ``--archs`` format, or a list of anything the space parses (NB201: arch strings or indices)."""
    sp = get_space(space)
    if isinstance(spec, (list, tuple, np.ndarray)):
        return [sp.parse(a.item() if isinstance(a, np.generic) else a) for a in spec]
    s = str(spec).strip()
    sp.check_archs_spec(s)
    if s.lower() == "all":
        return sp.all_archs(dataset, data)
    if s.isdigit():
        return [int(c) for c in sp.sample(int(s), seed)]
    return [int(c) for c in sp.parse_file(Path(s))]


class ScoreWriter:
    """Append-only CSV of scores with a meta sidecar; resumable. Rows are keyed by the space's
    key column (NB201: the index; NB101: the hash)."""

    def __init__(self, path, meta: dict, proxies: list, resume: bool = False, space="nb201"):
        self.space = get_space(space)
        self.ids = list(self.space.id_columns)
        self.path = Path(path)
        self.meta_path = Path(str(path) + ".meta.json")
        self.proxies = list(proxies)
        self.done: dict = {}  # key column value (as written) -> scores
        self._mixed_meta = None  # the meta with another device/engine, written with the first rows
        refuse_overwrite(self.path, resume)
        if self.path.exists() and self.path.read_bytes().count(b"\n") >= 2:  # a header and rows
            self._load_existing(meta)
        else:  # no rows: a new file, whose meta describes this run (replacing a stale one)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow([*self.ids, *self.proxies])
            self.meta_path.write_text(json.dumps(meta, indent=1))
        self._f = open(self.path, "a", newline="")

    def _load_existing(self, meta: dict):
        if not self.meta_path.exists():  # the rows' settings are unknown: they cannot be checked
            raise ValueError(f"cannot resume {self.path}: {self.meta_path.name} is missing, so the "
                             "settings of its rows cannot be checked (remove the file to start again)")
        old = read_meta(self.meta_path)
        keys = [k for k in _RESUME_KEYS
                if not (k in _PIXEL_KEYS and set(self.proxies) <= _DATA_FREE)]
        diff = {k: (old.get(k, _legacy(old, k)), meta.get(k)) for k in keys
                if old.get(k, _legacy(old, k)) != meta.get(k)}
        if diff:
            raise ValueError(
                f"cannot resume {self.path}: settings differ from the file's "
                + ", ".join(f"{k}: file {a!r} vs now {b!r}" for k, (a, b) in diff.items())
            )
        mixed = False
        for k, also in (("device", "device_name"), ("engine", None)):
            if old.get(k) and meta.get(k) and meta[k] not in old[k].split(" + "):
                # resumed on another device or engine: the file holds rows of both, say so
                old[k] = f"{old[k]} + {meta[k]}"
                if also:
                    old[also] = f"{old.get(also, '?')} + {meta.get(also, '?')}"
                mixed = True
        if mixed:  # recorded once rows of this run are written (a refused resume adds none)
            self._mixed_meta = old
        raw = self.path.read_bytes()
        cut = _whole_length(raw)
        if cut < len(raw):  # torn last line from an interrupted write: cut it off
            with open(self.path, "r+b") as f:
                f.truncate(cut)
            raw = raw[:cut]
        rows = list(csv.reader(io.StringIO(raw.decode())))
        n = len(self.ids)
        if not rows or rows[0][:n] != self.ids or rows[0][n:] != self.proxies:
            raise ValueError(f"cannot resume {self.path}: its header {rows[:1]} does not match "
                             f"the columns {self.ids + self.proxies}")
        for line, r in enumerate(rows[1:], start=2):
            if _damaged(r, rows[0]):  # refused, not kept
                raise ValueError(f"cannot resume {self.path}: " + _damaged_message(
                    line, r, rows[0], ": remove it to score that network again"))
            if r:  # (a blank line is skipped, as readers skip it)
                self.done[r[0]] = [_number(v, self.path, line, c)
                                   for v, c in zip(r[n:], self.proxies)]

    def row_key(self, code: int) -> str:
        return str(self.space.row_fields(int(code))[self.space.key_column])

    def write(self, code: int, values: dict):
        """One row (see :meth:`write_rows`)."""
        self.write_rows([(code, values)])

    def write_rows(self, rows) -> None:
        """Rows ``[(code, {proxy: value})]`` of one chunk, appended with one write and one flush
        (docs/performance.md, score files). Every key is checked before anything is written: a
        network already in the file, or twice in ``rows``, raises and writes nothing. A run
        killed during the write leaves whole rows and at most one torn last line, which a resume
        drops (:meth:`_load_existing`), so it loses at most this chunk."""
        rows = list(rows)
        keys, lines = [], []
        for code, values in rows:
            fields = self.space.row_fields(int(code))
            key = str(fields[self.space.key_column])
            if key in self.done or key in keys:  # whatever runs the scoring, one row per network
                raise RuntimeError(f"{self.space.name} network {key} is already in {self.path}: "
                                   "not written twice")
            keys.append(key)
            lines.append([*(fields[c] for c in self.ids), *[_fmt(values[p]) for p in self.proxies]])
        if not lines:
            return
        buf = io.StringIO(newline="")
        csv.writer(buf).writerows(lines)
        self._f.write(buf.getvalue())
        self._f.flush()
        if self._mixed_meta is not None:
            self.meta_path.write_text(json.dumps(self._mixed_meta, indent=1))
            self._mixed_meta = None
        for key, (_, values) in zip(keys, rows):
            self.done[key] = [values[p] for p in self.proxies]

    def close(self):
        self._f.close()

    def finish(self, order) -> bool:
        """After :meth:`close`: once every network of ``order`` (codes) has its row, rewrite the
        rows in that order (chunks that finished out of order, or a resumed run, then give the
        same file as one uninterrupted local run). Atomic (temporary file + rename); rows of
        networks not in ``order`` stay at the end. Returns whether the file is complete."""
        if not self._f.closed:
            return False
        keys = [self.row_key(c) for c in order]
        lines = self.path.read_bytes().decode().splitlines(keepends=True)
        rows = {}
        for line in lines[1:]:
            if line.strip():  # a blank line (skipped by the readers) is dropped
                rows[next(csv.reader([line]))[0]] = line
        if any(k not in rows for k in keys):
            return False
        want = set(keys)
        body = [rows[k] for k in keys] + [r for k, r in rows.items() if k not in want]
        if body != lines[1:]:
            tmp = self.path.with_name(self.path.name + ".reorder")
            tmp.write_bytes("".join([lines[0], *body]).encode())
            tmp.replace(self.path)
        return True


def read_scores(path):
    """(DataFrame of scores indexed by the space's key column, meta dict or {}). The space comes
    from the meta file (NB201 when there is none); ensemble columns recorded in the meta are
    computed over all rows."""
    import pandas as pd

    meta_p = Path(str(path) + ".meta.json")
    meta = read_meta(meta_p) if meta_p.exists() else {}
    sp = get_space(meta.get("space", "nb201"))
    col = sp.key_column
    text = _whole_rows(path)
    # NaN only as the writer writes it ('nan'), or an empty field: not pandas' other NA words
    df = pd.read_csv(io.StringIO(text), dtype={c: str for c in sp.id_columns if c != "index"},
                     keep_default_na=False, na_values=["", "nan", "NaN"])
    if col not in df.columns:
        raise ValueError(f"{path} is not a zcfast score file of space {sp.name} (no {col!r} column)")
    for c in df.columns:  # every score column numeric ('nan', 'inf' included), else name the field
        if c not in sp.id_columns and not pd.api.types.is_numeric_dtype(df[c]):
            for line, v in enumerate(df[c], start=2):
                _number(v, path, line, c)
    idx = df[col]
    if col == "index":  # NB201: correlate indexes the ground truth with these
        v = pd.to_numeric(idx, errors="coerce")
        from zcfast.spaces import nb201

        bad = v.isna() | (v != v.round()) | ~v.between(0, nb201.NUM_ARCHS - 1)
        if bad.any():
            raise ValueError(f"{path}: data row {int(bad.to_numpy().argmax()) + 1} has index "
                             f"{idx[bad].iloc[0]}, not an NB201 index in [0, {nb201.NUM_ARCHS - 1}]")
        df[col] = idx.astype(np.int64)
    dup = df[col].duplicated()
    if dup.any():
        raise ValueError(f"{path}: {sp.name} network {df[col][dup].iloc[0]} appears more than once")
    df = df.set_index(col)
    df.attrs["space"] = sp.name
    return add_ensembles(df, meta.get("ensembles", {})), meta


# meta fields a column's values depend on besides the network, for columns that are not registry
# proxies (whose settings zcfast.search.cache.ScoreKey knows: docs/proxies_modern.md, joining
# score files): a column split over several files must have them equal in each
_COLUMN_SETTINGS = ("weight_seed", "data_seed", "batch_size", "images", "normalization", "flavour",
                    "precision", "data")
# how far two scores of one cell may differ (relative) and still count as the same score: packed
# and per-model passes, or other chunk sizes, sum in other orders (fp32: up to ~3e-5 measured)
AGREE_RTOL = {"fp32": 1e-4, "tf32": 1e-2, "bf16": 5e-2}


def agree_rtol(*precisions) -> float:
    """The relative tolerance two scores made in these precisions must agree to."""
    return max(AGREE_RTOL.get(p or "fp32", 1e-4) for p in precisions)


def scores_agree(a, b, rtol: float, scale: float) -> np.ndarray:
    """Elementwise: ``a`` and ``b`` are the same score (equal, both NaN, or within ``rtol`` of
    the larger of |a|, |b| and ``scale``, the column's typical magnitude: a score that is a
    small difference of large terms, e.g. AZ-NAS's trainability near 0, keeps the absolute
    rounding of its terms)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(invalid="ignore"):
        close = np.abs(a - b) <= rtol * np.maximum(np.maximum(np.abs(a), np.abs(b)), scale)
    return (a == b) | (np.isnan(a) & np.isnan(b)) | close


def typical_magnitude(*arrays) -> float:
    """The median |value| of the finite entries (0 when there are none)."""
    v = np.abs(np.concatenate([np.asarray(x, np.float64).ravel() for x in arrays]))
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else 0.0


def column_settings(meta: dict, column: str, where: str):
    """What ``column``'s scores in a file with ``meta`` depend on besides the network: the score
    cache key of a registry proxy (knows which proxies read no image and the old files'
    defaults), else the raw meta fields of ``_COLUMN_SETTINGS``."""
    from zcfast.proxy_names import ALL
    from zcfast.search.cache import ScoreKey

    if column in ALL:
        return ScoreKey.from_meta(meta, column, where=where)
    return {f: meta.get(f) for f in _COLUMN_SETTINGS}


def _settings_differences(a, b) -> dict:
    if isinstance(a, dict):
        return {k: (a[k], b[k]) for k in a if json.dumps(a[k]) != json.dumps(b[k])}
    return a.differences(b)


def read_score_files(paths, columns=None, tables: dict | None = None):
    """(DataFrame, meta) of one or several ``zcfast score`` files joined by network: the cells
    of all files, each proxy column from every file that has it (a proxy may be split over files
    holding different cells). All files must be of one space and dataset; a column held by
    several files must have been made with the same settings in each, and where two files hold
    the same cell their values must agree (``agree_rtol`` of their precisions), else ValueError
    naming them. ``columns``: join only these proxy columns (and ``arch``). Ensemble columns
    are recomputed over the joined cells. The meta keeps the fields every file
    agrees on, ``files`` the paths and ``column_files`` {column: [paths]}; the frame's
    ``attrs["held"]`` {column: index of the cells some file holds it for}. ``tables``: {path:
    ``read_scores(path)``} for files the caller has read already (not read again)."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    tables = tables or {}

    def read(p):
        return tables[p] if p in tables else read_scores(p)

    if len(paths) == 1 and columns is None:
        return read(paths[0])
    parts = []
    for p in paths:
        df, meta = read(p)
        if not meta:
            raise ValueError(f"{p} has no meta file ({p}.meta.json): which space, dataset and "
                             "settings its scores have is unknown, so it cannot be joined")
        ens = meta.get("ensembles", {})
        df = df.drop(columns=[c for c in ens if c in df.columns])
        if columns is not None:
            df = df[[c for c in df.columns if c == "arch" or c in columns]]
            meta = {**meta, "ensembles": {}}
        parts.append((str(p), df, meta))
    for field_ in ("space", "dataset"):
        vals = {p: m.get(field_) for p, _, m in parts}
        if len(set(vals.values())) > 1:
            raise ValueError(f"score files of different {field_}s cannot be joined: "
                             + ", ".join(f"{p} {v!r}" for p, v in vals.items()))
    column_files: dict = {}
    for p, df, _ in parts:
        for c in df.columns:
            column_files.setdefault(c, []).append(p)
    metas = {p: m for p, _, m in parts}
    for c, files in column_files.items():
        if c == "arch" or len(files) < 2:
            continue
        ref = column_settings(metas[files[0]], c, files[0])
        for p in files[1:]:
            diff = _settings_differences(ref, column_settings(metas[p], c, p))
            if diff:
                raise ValueError(f"column {c!r} is in files made with different settings: "
                                 + ", ".join(f"{k} {files[0]} {a!r} vs {p} {b!r}"
                                             for k, (a, b) in diff.items()))
    joined, held = None, {}  # held: column -> the cells some earlier file gave it for
    for p, df, _ in parts:
        for c in df.columns:
            if c == "arch" or c not in held:
                continue
            both = held[c].intersection(df.index)
            a = joined.loc[both, c].to_numpy(dtype=np.float64)
            b = df.loc[both, c].to_numpy(dtype=np.float64)
            rtol = agree_rtol(*(metas[f].get("precision") for f in column_files[c]))
            scale = typical_magnitude(joined.loc[held[c], c].to_numpy(), df[c].to_numpy())
            bad = ~scores_agree(a, b, rtol, scale)
            if bad.any():
                k = int(np.argmax(bad))
                raise ValueError(f"{p} and an earlier file disagree on {c!r} for network "
                                 f"{both[k]}: {float(b[k])!r} vs {float(a[k])!r} (more than "
                                 f"{rtol:g} relative to the larger of them and the column's "
                                 f"typical magnitude {scale:.3g}): were they scored with other code or "
                                 "settings? Join only files of one scoring")
        for c in df.columns:
            held[c] = df.index if c not in held else held[c].union(df.index)
        joined = df.copy() if joined is None else joined.combine_first(df)
    first = parts[0][2]
    meta = {k: v for k, v in first.items()
            if k not in ("ensembles", "gaps") and all(json.dumps(m.get(k), sort_keys=True)
                                                       == json.dumps(v, sort_keys=True)
                                                       for m in metas.values())}
    ensembles: dict = {}
    for m in metas.values():
        ensembles.update(m.get("ensembles", {}))
    meta.update(files=[p for p, _, _ in parts], column_files=column_files, ensembles=ensembles)
    cols = ["arch"] if "arch" in joined.columns else []
    joined = joined[cols + [c for c in column_files if c != "arch"]]
    joined.attrs["space"] = first.get("space", "nb201")
    joined.attrs["held"] = {c: held[c] for c in column_files if c != "arch"}  # cells per column
    return add_ensembles(joined, ensembles), meta


def add_ensembles(df, ensembles):
    """``df`` with each ensemble column computed over all of its rows (the cells compared), from
    the member columns it holds; the columns named exactly as the ensembles are written. Joined
    files (:func:`read_score_files`): over the rows that hold every member (the others have no
    score for some member and get NaN: correlate.held_cells)."""
    from zcfast.correlate import held_cells

    for name in ensembles:
        members = _ens.base_members(name)
        missing = [m for m in members if m not in df.columns]
        if missing:
            raise ValueError(f"ensemble {name!r} needs columns {missing}, which the scores lack")
        keep = held_cells(df, name)
        values = np.full(len(df), np.nan)
        values[keep] = _ens.evaluate(name, {m: df[m].to_numpy(dtype=np.float64)[keep]
                                            for m in members})
        df[name] = values
    return df


def iter_loop(codes: Iterable[int], proxies: list, x, y, *, seed: int, space="nb201",
              dataset: str = "cifar10", device="cpu", extra_batches=(), options=None,
              ncls: int | None = None, flavour: str | None = None) -> Iterator:
    """Per-model path: build each network with the (seed, arch) weights (``space.build_model``),
    run the reference proxies (``extra_batches``: further minibatches, for ZiCo). Yields
    (code, {proxy: value}). For NB201 the codes may also be given as NB201 indices through
    ``space="nb201-index"`` (the historical interface)."""
    from zcfast.proxies import compute_measures

    opts = dict(options or {})
    if flavour is not None:
        opts["flavour"] = flavour
    if space == "nb201-index":  # NB201 indices in, indices out
        from zcfast.spaces import nb201

        sp = get_space("nb201")
        pairs = [(int(i), nb201.code_of_index(int(i))) for i in codes]
    else:
        sp = get_space(space)
        pairs = [(int(c), int(c)) for c in codes]
    for name, code in pairs:
        net = sp.build_model(code, dataset, seed=seed, device=device, **opts)
        yield name, compute_measures(net, x, y, proxies, device=device, seed=seed,
                                     extra_batches=extra_batches)


def _seed(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def score_to_file(out, *, archs="all", proxies="paper", dataset=None, seed: int = 0,
                  batch_size: int | None = None, engine: str = "packed", resume: bool = False,
                  data_root=None, images: str = "default", flavour: str = "paper",
                  device="auto", chunk=None, progress: bool = True, sample_seed=None,
                  weight_seed=None, data_seed=None, normalization: str = "paper",
                  executor=None, space="nb201", data=None, precision: str = "fp32") -> dict:
    """Score networks of ``space`` into ``out`` (CSV + meta). Returns a summary dict.

    ``seed`` drives sampling (``archs=N``), the weights and the minibatch; ``sample_seed``,
    ``weight_seed`` and ``data_seed`` override it for one of the three. ``device``: 'auto'
    (CUDA when available), 'cpu', 'cuda' or 'cuda:N'. ``normalization``: 'paper' or 'dataset'
    (docs/data.md). ``data``: the space's benchmark file, when ``archs='all'`` should mean its
    networks (NB101's official file). ``precision``: 'fp32' (default), 'bf16' or 'tf32' (CUDA) for
    the packed engine's float32 passes (docs/performance.md). All of them are recorded in the
    meta file, and --resume compares them. ``executor``: what runs the scoring (zcfast.executors; default: this
    process on ``device``). Rows are written as chunks finish; a finished file has them in the
    order of ``archs`` (docs/ray.md).

    The CSV holds one column per per-model proxy (requested ones, then ensemble members);
    ensemble columns are not stored: they rank the networks of the file against each other, so
    :func:`read_scores` computes them over all rows when the file is read (the meta records
    their rule and members). Proxies without a packed implementation run per model inside the
    packed loop (listed in the meta as ``per_model_fallback``)."""
    from zcfast.executors import Executor, ScoreTask, get_executor

    sp = get_space(space)
    if data is not None and not sp.reads_data_file:  # recorded in the meta, so refused up front
        raise ValueError(f"--data {data}: space {sp.name} reads no benchmark file (its ground "
                         "truth is bundled)")
    ds = dataset_name(sp.score_dataset() if dataset is None else dataset)
    if batch_size is None:
        batch_size = sp.default_batch_size
    names = parse_proxies(proxies, space=sp)
    per_model, ensembles = split_columns(names)
    zero_cost, rt_specs = _reduced.split_proxies(per_model)  # the CSV holds both kinds
    for n in zero_cost:
        why = sp.proxy_problem(n)
        if why:
            via = [e for e in ensembles if n in _ens.base_members(e)] if n not in names else []
            raise ValueError(f"{n}{' (a member of ' + ', '.join(via) + ')' if via else ''} "
                             f"does not apply to space {sp.name!r}: {why}")
    if rt_specs and sp.name != "nb201":
        raise ValueError(f"reduced-training proxies {rt_specs} train NB201 networks; space "
                         f"{sp.name!r} has none (docs/reduced_training.md)")
    seed = _seed(seed, "seed")
    s_sample, s_weight, s_data = (seed if v is None else _seed(v, n) for v, n in (
        (sample_seed, "sample_seed"), (weight_seed, "weight_seed"), (data_seed, "data_seed")))
    codes = parse_archs(archs, s_sample, space=sp, dataset=ds, data=data)
    if engine not in ("packed", "loop"):
        raise ValueError(f"unknown engine {engine!r}: expected 'packed' or 'loop'")
    options = sp.model_options(flavour=flavour)
    dev = resolve_device(device)
    check_precision(precision, engine, dev, per_model)
    from zcfast.data import batches

    # a bad setting fails before any file; drawn once per process (the runner reuses it)
    batch = batches.minibatch(sp, ds, batch_size, s_data, images=images, data_root=data_root,
                              normalization=normalization)
    ex = get_executor(executor, device=str(dev))
    task = ScoreTask(sp.name, {
        "dataset": ds, "proxies": zero_cost, "weight_seed": s_weight, "data_seed": s_data,
        "batch_size": int(batch_size), "images": images, "normalization": normalization,
        "data_root": None if data_root is None else str(data_root),
        "options": options, "engine": engine, "chunk": chunk,
        **({"precision": precision} if precision != "fp32" else {}),
    })
    meta = {
        "space": sp.name, "dataset": ds, "proxies": names, "seed": seed,
        "sample_seed": s_sample, "weight_seed": s_weight, "data_seed": s_data,
        "batch_size": int(batch_size), **batch.meta(), "normalization": normalization,
        "flavour": flavour, "data": None if data is None else str(data), "precision": precision,
        "archs_spec": archs if isinstance(archs, str) else f"list[{len(codes)}]",
        "engine": engine, "device": str(dev), "device_name": device_name(dev),
        "zcfast": __version__, "git": git_sha(),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"), "executor": ex.describe(),
    }
    if rt_specs:  # reduction factors and images of every reduced-training column
        meta["reduced_training"] = _reduced.describe_specs(
            rt_specs, dataset=ds, data_root=data_root, data_seed=s_data, normalization=normalization)
    from zcfast.proxies import extra_batch_seed, extra_batches_needed

    n_extra = extra_batches_needed(zero_cost) if zero_cost else 0
    if n_extra:  # minibatch(batch_size, s) of the same source
        meta["extra_batch_seeds"] = [extra_batch_seed(s_data, k) for k in range(1, n_extra + 1)]
    if ensembles:
        meta["ensembles"] = {e: {"rule": _ens.parse(e).rule, "members": _ens.base_members(e)}
                             for e in ensembles}
        meta["ensemble_ranks_over"] = ENSEMBLE_SCOPE
    if engine == "packed":
        looped = [p for p in zero_cost if p not in sp.packed_proxies()]
        if looped:
            meta["per_model_fallback"] = looped
    writer = ScoreWriter(out, meta, per_model, resume=resume, space=sp)
    keys = [writer.row_key(c) for c in codes]
    wanted = set(keys)
    stray = [k for k in writer.done if k not in wanted]
    if stray:  # rows of networks this run does not ask for: an edited --archs file, say
        writer.close()
        raise ValueError(f"cannot resume {out}: it holds {len(stray)} network(s) that this run's "
                         f"--archs does not ask for ({sp.key_column} {stray[0]}); resuming would "
                         "mix two sets of networks in one file")
    todo = [c for c, k in zip(codes, keys) if k not in writer.done]
    t0 = time.perf_counter()
    bar = None
    if progress and todo:
        from zcfast.progress import progress_bar

        bar = progress_bar(len(codes), len(codes) - len(todo), unit="cell", desc=f"scoring {ds}")
    try:
        if rt_specs:  # chunk by chunk: reduced training here, zero-cost by the executor
            from zcfast.spaces import nb201

            def zc_scores(part):
                out = {p: np.full(len(part), math.nan) for p in zero_cost}
                pos = {c: k for k, c in enumerate(part)}
                for sub, table in (ex.run(task, part) if zero_cost else ()):
                    for k, c in enumerate(sub):
                        for p in zero_cost:
                            out[p][pos[c]] = table[p][k]
                return out

            _reduced.score_rows(writer, todo, rt_specs, zc_scores, index_of=nb201.index_of_code,
                                dataset=ds, data_root=data_root,
                                weight_seed=s_weight, data_seed=s_data, flavour=flavour,
                                engine=engine, device=dev, chunk=chunk,
                                normalization=normalization, bar=bar)
        else:
            for part, table in ex.run(task, todo):  # chunks in any order, each network once
                writer.write_rows([(c, {p: table[p][k] for p in per_model})
                                   for k, c in enumerate(part)])
                if bar:
                    bar.update(len(part))
    finally:
        writer.close()
        if bar:
            bar.close()
        if not isinstance(executor, Executor):  # made here, so closed here
            ex.close()
    writer.finish(codes)
    dt = time.perf_counter() - t0
    from zcfast.gaps import record_gaps

    meta["gaps"] = record_gaps(out)
    return {"out": str(out), "scored": len(todo), "total": len(codes), "seconds": dt,
            "cells_per_s": len(todo) / dt if dt > 0 and todo else math.nan, "meta": meta,
            "ensembles": ensembles}


def score_summary(res: dict) -> str:
    """The line ``zcfast score`` ends with, from :func:`score_to_file`'s summary."""
    if res["scored"] == 0:
        return (f"all {res['total']} cells were already scored in {res['out']}: "
                "nothing left to do")
    kept = res["total"] - res["scored"]
    return (f"scored {res['scored']} of {res['total']} cells"
            + (f" ({kept} already in the file)" if kept else "")
            + f" in {res['seconds']:.1f} s ({res['seconds'] / res['scored']:.2f} s/cell, "
            f"{res['meta']['threads']} thread{'s' if res['meta']['threads'] != 1 else ''}, engine {res['meta']['engine']}, device "
            f"{res['meta']['device']}: {res['meta'].get('device_name', '?')}) -> {res['out']}")
