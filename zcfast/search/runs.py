"""Many-seed searches into resumable JSONL files, their aggregation, plots and tables.

A runs file has one JSON object per seed (the dict of :func:`zcfast.search.run_search`, curves
rounded to 1e-6), written and flushed as each seed finishes. ``resume=True`` keeps the finished
seeds (a torn last line from an interrupted write is dropped) and runs only the missing ones; the
settings of the file must match.

Aggregations take complete runs only: a run that could not spend its budget is marked ``failed``
and is never padded into a curve; :func:`complete_runs` separates such runs so that every table
can say how many there were. The headline curve everywhere is ``test_curve`` (the test accuracy
of the best-validation cell so far); ``oracle_test_curve`` is a diagnostic.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zcfast.cli_common import refuse_overwrite
from zcfast.search.driver import (
    PROTOCOL,
    check_algo,
    make_config,
    proxy_members,
    run_search,
    score_keys,
    score_settings,
)

# settings that identify a runs file (must match to resume or to append)
SETTING_KEYS = ("protocol", "space", "dataset", "data", "algo", "budget", "warmup", "move",
                "proxy", "score_seed", "score_settings", "options", "hardware")
CURVES = ("test_curve", "best_val_curve", "oracle_test_curve", "hv_curve", "hv_val_curve")
HEADLINE = "test_curve"


def _settings(run: dict) -> dict:
    out = {k: run.get(k) for k in SETTING_KEYS}
    ss = out.get("score_settings")
    if isinstance(ss, dict) and "images" in ss and "precision" not in ss:
        # recorded before searches had --precision: their scores were float32
        out["score_settings"] = {**ss, "precision": "fp32"}
    return out


def _compact(run: dict) -> dict:
    out = dict(run)
    for k in CURVES:
        if k in out:
            out[k] = [round(float(v), 6) for v in out[k]]
    if out.get("within_curve") is not None:  # None until a trained cell truly meets the budget
        out["within_curve"] = [None if v is None else round(float(v), 6) for v in out["within_curve"]]
    out["seconds"] = round(float(out.get("seconds", 0.0)), 4)
    return out


def read_runs(path: str | os.PathLike, *, repair: bool = False) -> list:
    """The runs of a JSONL file (seed order as written). A torn last line is ignored (and cut
    from the file when ``repair``)."""
    p = Path(path)
    if not p.exists():
        return []
    if p.suffix == ".gz":  # a bundle written in one go (e.g. the study's); never repaired
        import gzip

        raw = gzip.decompress(p.read_bytes())
        repair = False
    else:
        raw = p.read_bytes()
    if raw and not raw.endswith(b"\n"):
        cut = raw.rfind(b"\n") + 1
        if repair:
            with open(p, "r+b") as f:
                f.truncate(cut)
        raw = raw[:cut]
    runs = []
    for n, line in enumerate(raw.decode().splitlines(), 1):
        if not line.strip():
            continue
        try:
            runs.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}:{n}: not a JSON line ({e})") from None
    return runs


def expected_settings(algo, dataset, budget, warmup, move, proxy, score_seed, options,
                      space="nb201", data=None, hardware=None, score_key=None,
                      scores_given: bool = False) -> dict:
    """The settings a run of these arguments records (run_search's result keys SETTING_KEYS).
    ``score_key``: as run_search's; ``scores_given``: the scores come as a table (run_search's
    ``scores``), whose settings the run cannot know (recorded as None)."""
    from zcfast.data import dataset_name
    from zcfast.search.hw import HardwareSpec
    from zcfast.spaces import get_space

    uses = int(warmup) > 0 or int(move) > 0
    ds = dataset_name(dataset)
    settings = None
    if uses and not scores_given:
        settings = score_settings(score_keys(proxy_members(proxy)[0], ds, int(score_seed),
                                             get_space(space).name, score_key))
    return {"protocol": PROTOCOL, "space": space, "dataset": ds,
            "data": None if data is None else str(data), "algo": check_algo(algo),
            "budget": int(budget), "warmup": int(warmup), "move": int(move),
            "proxy": proxy if uses else None, "score_seed": int(score_seed) if uses else None,
            "score_settings": settings,
            "options": dict(options or {}),
            "hardware": None if hardware is None else HardwareSpec.of(hardware).settings()}


def run_seeds(out: str | os.PathLike, algo: str, *, dataset: str = "cifar100", budget: int = 300,
              warmup: int = 0, move: int = 0, seeds: Sequence[int] | int = 20,
              proxy: str = "synflow", score_seed: int = 0, resume: bool = False,
              progress: bool = True, desc: str | None = None, options: dict | None = None,
              space: str = "nb201", data=None, hardware=None, **search_kwargs) -> list:
    """Run one search per seed into the JSONL file ``out``; returns all runs of the file.

    ``seeds``: an int n (seeds 0..n-1) or a list. ``hardware``: a hardware-aware search
    (:class:`zcfast.search.hw.HardwareSpec` or a dict, docs/hardware.md). ``search_kwargs`` go
    to :func:`run_search` (``scores``, ``scorer``, ``cache``...).
    """
    seed_list = list(range(int(seeds))) if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("no seeds to run")
    if any(s < 0 for s in seed_list) or len(set(seed_list)) != len(seed_list):
        raise ValueError(f"seeds must be distinct non-negative integers, got {seed_list}")
    want = expected_settings(algo, dataset, budget, warmup, move, proxy, score_seed, options, space,
                             data, hardware, search_kwargs.get("score_key"),
                             search_kwargs.get("scores") is not None)
    make_config(algo, budget, warmup, move, seed_list[0], **(options or {}))  # fail before any I/O
    p = Path(out)
    existing = []
    refuse_overwrite(p, resume)
    if p.exists() and p.stat().st_size > 0:
        existing = read_runs(p, repair=True)
        # a line written before runs recorded score_settings was scored with the defaults (the
        # command line had no other) or from a table passed by a caller (recorded as None)
        base = expected_settings(algo, dataset, budget, warmup, move, proxy, score_seed,
                                 options, space, data, hardware)["score_settings"]
        old = want["score_settings"] if want["score_settings"] in (None, base) else base
        for r in existing:
            got = _settings(r)
            if "score_settings" not in r:
                got["score_settings"] = old
            if got != want:
                diff = {k: (got[k], want[k]) for k in SETTING_KEYS if got[k] != want[k]}
                raise ValueError(f"cannot resume {p}: settings differ from the file's "
                                 + ", ".join(f"{k}: file {a!r} vs now {b!r}" for k, (a, b) in diff.items()))
    done = {int(r["seed"]) for r in existing}
    todo = [s for s in seed_list if s not in done]
    p.parent.mkdir(parents=True, exist_ok=True)
    bar = None
    if progress:
        from zcfast.progress import progress_bar

        bar = progress_bar(len(seed_list), len(seed_list) - len(todo), unit="seed",
                           desc=desc or f"{want['algo']} w{warmup} m{move}")
    runs = list(existing)
    try:
        with open(p, "a") as f:
            for s in todo:
                r = run_search(algo, dataset, budget, warmup, move, s, proxy, space=space,
                               data=data, score_seed=score_seed, options=options,
                               hardware=hardware, **search_kwargs)
                r = _compact(r)
                f.write(json.dumps(r, separators=(",", ":")) + "\n")
                f.flush()
                runs.append(r)
                if bar:
                    bar.update(1)
    finally:
        if bar:
            bar.close()
    return runs


# ------------------------------------------------------------------------------- aggregation
def complete_runs(runs: Iterable[dict]) -> tuple:
    """(complete runs, failed runs): a run is complete when it spent its whole budget."""
    ok, bad = [], []
    for r in runs:
        (bad if r.get("failed") or len(r.get(HEADLINE, ())) < int(r["budget"]) else ok).append(r)
    return ok, bad


def curve_matrix(runs: Iterable[dict], key: str = HEADLINE, length: int | None = None) -> np.ndarray:
    """(seeds, length) array of one curve per run. Every run must be complete: a failed run
    (shorter curve) raises, naming its seed, instead of being padded."""
    runs = list(runs)
    if not runs:
        raise ValueError("no runs to aggregate")
    n = length or max(int(r["budget"]) for r in runs)
    out = np.empty((len(runs), n), dtype=np.float64)
    for i, r in enumerate(runs):
        if key not in r:
            raise ValueError(f"run with seed {r.get('seed')} has no {key!r} (made under other "
                             f"rules: protocol {r.get('protocol')!r}, now {PROTOCOL!r})")
        c = np.asarray(r[key], dtype=np.float64)
        if r.get("failed") or c.size < n:
            raise ValueError(f"run with seed {r.get('seed')} is incomplete ({c.size} of {n} "
                             "trained models): filter it with complete_runs() and report it")
        out[i] = c[:n]
    return out


@dataclass
class Summary:
    mean: np.ndarray
    q25: np.ndarray
    q75: np.ndarray
    n: int


def summarize(runs: Iterable[dict], key: str = HEADLINE) -> Summary:
    m = curve_matrix(runs, key)
    return Summary(m.mean(0), np.quantile(m, 0.25, axis=0), np.quantile(m, 0.75, axis=0), m.shape[0])


def models_to_reach(runs: Iterable[dict], threshold: float, key: str = HEADLINE) -> dict:
    """Trained models needed to reach ``threshold`` (%): from the mean curve (as read off a plot),
    and per seed (median over seeds that reach it, and how many do)."""
    m = curve_matrix(runs, key)
    mean = m.mean(0)
    hit = np.nonzero(mean >= threshold)[0]
    per_seed = [int(np.argmax(row >= threshold)) + 1 for row in m if (row >= threshold).any()]
    return {
        "mean_curve": int(hit[0]) + 1 if hit.size else None,
        "median_seed": float(np.median(per_seed)) if per_seed else None,
        "reached": len(per_seed), "seeds": m.shape[0],
    }


# --------------------------------------------------------------------------------- variants
@dataclass(frozen=True)
class Variant:
    algo: str
    warmup: int = 0
    move: int = 0

    @property
    def label(self) -> str:
        s = self.algo.upper()
        if self.warmup:
            s += f"+warmup({self.warmup})"
        if self.move:
            s += f"+move({self.move})"
        return s

    @property
    def slug(self) -> str:
        return f"{self.algo}_w{self.warmup}_m{self.move}"

    @property
    def baseline(self) -> Variant:
        return Variant(self.algo)


# The paper's figure (docs/search.md), plus move analogues for RAND and BP.
FIGURE_VARIANTS = (
    Variant("rand"), Variant("rand", warmup=3000), Variant("rand", warmup=15625), Variant("rand", move=10),
    Variant("ae"), Variant("ae", warmup=3000), Variant("ae", warmup=15625), Variant("ae", move=24),
    Variant("rl"), Variant("rl", warmup=3000), Variant("rl", move=10), Variant("rl", move=100),
    Variant("bp"), Variant("bp", warmup=256), Variant("bp", move=100),
)


def parse_variant(text: str) -> Variant:
    """``ae``, ``ae+warmup(3000)``, ``rl+move(10)``, ``ae+warmup(3000)+move(24)`` (case-insensitive)."""
    import re

    t = text.strip().lower().replace(" ", "")
    m = re.fullmatch(r"([a-z]+)((?:\+(?:warmup|move)\(\d+\))*)", t)
    if not m:
        raise ValueError(f"cannot read variant {text!r} (expected e.g. ae+warmup(3000)+move(24))")
    algo = check_algo(m.group(1))
    parts = dict(re.findall(r"\+(warmup|move)\((\d+)\)", m.group(2)))
    return Variant(algo, int(parts.get("warmup", 0)), int(parts.get("move", 0)))


def run_variants(runs_dir: str | os.PathLike, variants: Sequence[Variant], *, dataset: str = "cifar100",
                 budget: int = 300, seeds: int = 20, proxy: str = "synflow", score_seed: int = 0,
                 progress: bool = True, space: str = "nb201", data=None, **search_kwargs) -> dict:
    """Run (or resume) every variant into ``runs_dir/<slug>.jsonl`` (prefixed by the space's
    name outside NB201); returns {variant: runs}."""
    from zcfast.data import dataset_name
    from zcfast.spaces import get_space

    d = Path(runs_dir)
    ds = dataset_name(dataset)
    sp = get_space(space).name
    prefix = "" if sp == "nb201" else f"{sp}_"
    out = {}
    for v in variants:
        path = d / f"{prefix}{ds}_{v.slug}_b{budget}.jsonl"
        out[v] = run_seeds(path, v.algo, dataset=ds, budget=budget, warmup=v.warmup, move=v.move,
                           seeds=seeds, proxy=proxy, score_seed=score_seed, resume=True,
                           progress=progress, desc=v.label, space=sp, data=data,
                           **search_kwargs)
        # keep exactly the requested seeds (a file may hold more)
        want = set(range(int(seeds)))
        out[v] = [r for r in out[v] if int(r["seed"]) in want]
    return out


# ----------------------------------------------------------------------------- plots/tables
def plot_curves(groups: dict, path: str | os.PathLike, title: str = "", key: str = HEADLINE,
                ylim: tuple | None = None, panels: bool = True) -> None:
    """Mean ``key`` vs trained models with a 25-75% band, one line per label of ``groups``
    ({label or Variant: runs}). With ``panels`` and Variant keys: one panel per algorithm."""
    from zcfast import plotstyle

    plt = plotstyle.pyplot()
    items = list(groups.items())
    algos = []
    for k, _ in items:
        a = k.algo if isinstance(k, Variant) else "all"
        if a not in algos:
            algos.append(a)
    if not panels or len(algos) == 1:
        algos = ["all"]
    ncol = min(2, len(algos))
    nrow = (len(algos) + ncol - 1) // ncol
    w, h = plotstyle.CURVE_PANEL
    fig, axes = plt.subplots(nrow, ncol, figsize=(w * ncol, h * nrow + 0.5), squeeze=False)
    for ax, algo in zip(axes.flat, algos):
        for k, runs in items:
            if algo != "all" and (not isinstance(k, Variant) or k.algo != algo):
                continue
            ok, bad = complete_runs(runs)
            if not ok:
                continue
            s = summarize(ok, key)
            x = np.arange(1, s.mean.size + 1)
            label = _label(k) + f" (n={s.n}" + (f", {len(bad)} failed" if bad else "") + ")"
            (line,) = ax.plot(x, s.mean, label=label, lw=1.6)
            ax.fill_between(x, s.q25, s.q75, color=line.get_color(), alpha=0.15, lw=0)
        ax.set_xscale("log")
        plotstyle.plain_log_ticks(ax.xaxis, 1, max((ln.get_xdata()[-1] for ln in ax.lines), default=1))
        if ylim:
            ax.set_ylim(*ylim)
        plotstyle.style_axes(ax, title=algo.upper() if algo != "all" else None,
                             xlabel="trained models (log scale)",
                             ylabel=plotstyle.CURVE_LABELS.get(key, key))
        ax.legend(fontsize=plotstyle.NOTE, loc="lower right")
    for ax in list(axes.flat)[len(algos):]:
        ax.axis("off")
    plotstyle.finish(fig, path, plotstyle.wrap(title, int(12 * w * ncol)))


def reach_table(groups: dict, thresholds: Sequence[float], key: str = HEADLINE) -> str:
    """Markdown table: trained models needed to reach each threshold, per variant.

    Cell: k from the mean curve, then (median over seeds, seeds reaching / seeds); '-' = never."""
    head = "| variant | " + " | ".join(f"{t:g}%" for t in thresholds) + " |"
    lines = [head, "|" + "---|" * (len(thresholds) + 1)]
    for k, runs in groups.items():
        ok, bad = complete_runs(runs)
        if not ok:
            lines.append(f"| {_label(k, bad)} | " + " | ".join("no complete run" for _ in thresholds) + " |")
            continue
        cells = []
        for t in thresholds:
            r = models_to_reach(ok, t, key)
            mc = "-" if r["mean_curve"] is None else str(r["mean_curve"])
            med = "-" if r["median_seed"] is None else f"{r['median_seed']:g}"
            cells.append(f"{mc} ({med}, {r['reached']}/{r['seeds']})")
        lines.append(f"| {_label(k, bad)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def curve_table(groups: dict, at: Sequence[int], key: str = HEADLINE) -> str:
    """Markdown table: mean [25%, 75%] of ``key`` after ``at`` trained models, per variant."""
    head = "| variant | " + " | ".join(f"@{a}" for a in at) + " |"
    lines = [head, "|" + "---|" * (len(at) + 1)]
    for k, runs in groups.items():
        ok, bad = complete_runs(runs)
        if not ok:
            lines.append(f"| {_label(k, bad)} | " + " | ".join("no complete run" for _ in at) + " |")
            continue
        s = summarize(ok, key)
        cells = [f"{s.mean[a - 1]:.2f} [{s.q25[a - 1]:.2f}, {s.q75[a - 1]:.2f}]" for a in at if a <= s.mean.size]
        lines.append(f"| {_label(k, bad)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _label(k, failed=()) -> str:
    label = k.label if isinstance(k, Variant) else str(k)
    return label + (f" ({len(failed)} failed runs left out)" if failed else "")


# ------------------------------------------------------------------------------ verification
def verify_run(run: dict, val: np.ndarray, test: np.ndarray) -> list:
    """Problems of one run against the ground truth (``val``/``test`` accuracy by NB201 index):
    every query charged (``queries`` == len(trained) == budget unless failed), and every curve
    recomputed from ``trained``: test_curve[n-1] = test accuracy of the best-validation cell among
    trained[:n] (the first one on ties), best_val_curve and oracle_test_curve their running
    maxima. Returns a list of messages (empty: the run is consistent)."""
    probs = []
    seed = run.get("seed")
    t = np.asarray(run.get("trained", []), dtype=np.int64)
    n = t.size
    budget = int(run.get("budget", -1))
    if run.get("protocol") != PROTOCOL:
        probs.append(f"seed {seed}: protocol {run.get('protocol')!r}, expected {PROTOCOL!r}")
    if int(run.get("queries", -1)) != n:
        probs.append(f"seed {seed}: queries {run.get('queries')} != {n} trained entries")
    if not run.get("failed") and n != budget:
        probs.append(f"seed {seed}: {n} queries charged, budget {budget}, and not marked failed")
    if n and ((t < 0) | (t >= val.size)).any():
        return probs + [f"seed {seed}: trained holds indices outside the table"]
    if int(run.get("distinct", -1)) != np.unique(t).size:
        probs.append(f"seed {seed}: distinct {run.get('distinct')} != {np.unique(t).size}")
    if int(run.get("revisits", -1)) != n - np.unique(t).size:
        probs.append(f"seed {seed}: revisits {run.get('revisits')} != {n - np.unique(t).size}")
    v, te = val[t], test[t]
    if n:
        best = np.zeros(n, dtype=np.int64)  # position of the best-validation query so far
        for k in range(1, n):
            best[k] = k if v[k] > v[best[k - 1]] else best[k - 1]
        want = {"test_curve": te[best], "best_val_curve": np.maximum.accumulate(v),
                "oracle_test_curve": np.maximum.accumulate(te)}
        for key, w in want.items():
            got = np.asarray(run.get(key, []), dtype=np.float64)
            if got.shape != w.shape:
                probs.append(f"seed {seed}: {key} has {got.size} entries, expected {w.size}")
                continue
            # curves are stored rounded to 1e-6 (see _compact)
            bad = np.flatnonzero(np.abs(got - w) > 1e-6)
            if bad.size:
                k = int(bad[0])
                probs.append(f"seed {seed}: {key}[{k}] = {got[k]} but the trained cells give "
                             f"{w[k]} (first of {bad.size} mismatches)")
    return probs


def verify_runs(runs: Iterable[dict], *, estimate_scores: dict | None = None, cache=None) -> list:
    """:func:`verify_run` for every run, against the ground truth of its space and dataset (the
    universe the run recorded, rebuilt from the space plugin); hardware-aware runs also get
    :func:`zcfast.search.hw.verify` (``estimate_scores`` / ``cache``: where a params or flops
    estimate's scores are read)."""
    from zcfast.search.driver import universe, universe_ids

    probs = []
    for r in runs:
        try:
            uni = universe(r["dataset"], r.get("space", "nb201"), r.get("data"))
            ids = universe_ids(r["dataset"], r.get("space", "nb201"), r.get("data"))
        except (ValueError, OSError) as e:
            probs.append(f"seed {r.get('seed')}: cannot rebuild its ground truth ({e})")
            continue
        row = {i: n for n, i in enumerate(ids)}
        missing = [t for t in r.get("trained", []) if t not in row]
        if missing:
            probs.append(f"seed {r.get('seed')}: trained {missing[0]!r} is not in the universe")
            continue
        rr = dict(r)
        rr["trained"] = [row[t] for t in r.get("trained", [])]
        probs += verify_run(rr, np.asarray(uni.val), np.asarray(uni.test))
        if r.get("hardware") is not None:
            from zcfast.search.hw import verify

            probs += verify(rr, np.asarray(uni.val), np.asarray(uni.test),
                            estimate_scores=estimate_scores, cache=cache)
    return probs