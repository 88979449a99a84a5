"""How fast is the search driver? Two questions, one script.

1. Driver throughput with scores from the cache: proposals per second of each algorithm (and its
   warmup / move variants), timed inside C++ (``zcfast._C.search.bench`` runs many searches
   back to back with no Python in the loop). A *proposal* is a candidate cell the algorithm
   generates and evaluates (trains by look-up, or scores with the proxy table); BP's predictor
   ranks the whole space each round, counted separately as predictions. Target: >= 1e6
   proposals/s for RAND, AE and RL on this CPU.
2. End to end with live scoring: a warmup + move-proposal search (AE, population 16, warmup 64,
   move 24) whose proxy scores are computed on the fly on CPU (packed engine if present, else the
   per-model loop) into an empty cache; candidates scored per second, and the scorer's share.

Correctness first: the bench search's trajectory is checked against the Python API's.
Writes bench/results/search_driver.md (git SHA, CPU, date, versions).

    python bench/bench_search_driver.py [--quick] [--proxy-cache DIR]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from zcfast import _C
from zcfast.scoring import cpu_name, git_sha
from zcfast.search import ScoreCache, ScoreKey, ground_truth, make_config, run_search
from zcfast.search.scorer import batched_available, default_scorer

VARIANTS = [  # (label, algo, warmup, move, budget, repeats)
    ("RAND", "rand", 0, 0, 300, 4000),
    ("RAND", "rand", 0, 0, 15625, 4),
    ("RAND+warmup(3000)", "rand", 3000, 0, 300, 200),
    ("RAND+move(10)", "rand", 0, 10, 300, 2000),
    ("AE", "ae", 0, 0, 300, 4000),
    ("AE", "ae", 0, 0, 1000, 400),
    ("AE+warmup(3000)", "ae", 3000, 0, 300, 200),
    ("AE+move(24)", "ae", 0, 24, 300, 1000),
    ("RL", "rl", 0, 0, 300, 2000),
    ("RL", "rl", 0, 0, 1000, 200),
    ("RL+warmup(3000)", "rl", 3000, 0, 300, 100),
    ("RL+move(100)", "rl", 0, 100, 300, 100),
    ("BP", "bp", 0, 0, 300, 1),
    ("BP+warmup(256)", "bp", 256, 0, 300, 1),
]


def score_table(cache_root) -> tuple:
    """Synflow (CIFAR-100 network, weight seed 0) from the cache if complete, else a synthetic
    table (speed does not depend on the values beyond their order)."""
    key = ScoreKey.of("synflow", "cifar100", 0)
    t = ScoreCache(cache_root).table(key)
    if t is not None:
        return t, "cached synflow (CIFAR-100 network, weight seed 0)"
    rng = np.random.default_rng(0)
    return rng.standard_normal(15625), "synthetic N(0,1) table (synflow cache incomplete)"


def check_correct(gt, table):
    cfg = make_config("ae", 300, 3000, 24, 11)
    s = _C.search.Search(cfg, gt, table)
    s.run()
    r = run_search("ae", "cifar100", 300, 3000, 24, 11, scores=table)
    assert s.result()["trained"].tolist() == r["trained"], "bench search differs from the API"


def throughput(gt, table, quick: bool) -> list:
    rows = []
    for label, algo, w, m, budget, reps in VARIANTS:
        if quick:
            reps = max(1, reps // 20)
        opts = {}
        cfg = make_config(algo, budget, w, m, 0, **opts)
        times = []
        out = None
        for rep in range(3 if algo != "bp" else 1):
            cfg.seed = 1000 * rep
            out = _C.search.bench(cfg, gt, table, reps)
            times.append(out["seconds"])
        med = statistics.median(times)
        spread = (max(times) - min(times)) / med if med > 0 else 0.0
        props = out["proposals"]
        rows.append({
            "label": label, "budget": budget, "searches": out["searches"], "steps": out["steps"],
            "proposals": props, "trained": out["trained"], "seconds": med, "spread": spread,
            "proposals_per_s": props / med, "steps_per_s": out["steps"] / med,
            "searches_per_s": out["searches"] / med,
        })
        print(f"{label:22s} budget {budget:5d}: {props / med:14,.0f} proposals/s "
              f"({out['steps'] / med:12,.0f} steps/s, {out['searches'] / med:9,.1f} searches/s, "
              f"spread {spread:.0%})", flush=True)
    return rows


def end_to_end(engine: str) -> dict:
    """AE (population 16, tournament 4) + warmup(64) + move(24), budget 24: the 64 warmup cells
    plus the neighbours of 8 mutation steps (at most 8 * 24, fewer where neighbour sets overlap)
    are scored live into an empty cache; then the same search again from the cache."""
    scorer = default_scorer("synflow", "cifar100", 0, engine=engine)
    opts = {"population": 16, "tournament": 4}
    with tempfile.TemporaryDirectory() as d:
        cache = ScoreCache(d)
        inner = scorer
        spent = {"s": 0.0}

        def timed(idx):
            t = time.perf_counter()
            v = inner(idx)
            spent["s"] += time.perf_counter() - t
            return v

        t0 = time.perf_counter()
        r = run_search("ae", "cifar100", 24, 64, 24, 0, "synflow", cache=cache, scorer=timed,
                       options=opts)
        wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        r2 = run_search("ae", "cifar100", 24, 64, 24, 0, "synflow", cache=ScoreCache(d),
                        scorer=None, options=opts)
        wall2 = time.perf_counter() - t0
    assert r2["trained"] == r["trained"]
    return {"engine": getattr(scorer, "engine", engine), "scored": r["scored_live"],
            "asks": r["asks"], "wall": wall, "scoring": spent["s"],
            "cands_per_s": r["scored_live"] / wall, "cached_wall": wall2}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats (smoke run)")
    ap.add_argument("--proxy-cache", default=None, help="score cache root (default: zcfast's)")
    ap.add_argument("--engine", default="both", choices=["both", "auto", "batched", "loop"],
                    help="scorer(s) of the live end-to-end run (both = loop and batched, same run)")
    ap.add_argument("--skip-live", action="store_true")
    ap.add_argument("--out", default=str(HERE / "results" / "search_driver.md"))
    a = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    gt = ground_truth("cifar100")
    table, table_desc = score_table(a.proxy_cache)  # by ground-truth row = NB201 index
    check_correct(gt, table)
    print(f"scores: {table_desc}; correctness check passed", flush=True)
    rows = throughput(gt, table, a.quick)
    engines = []
    if not a.skip_live:
        engines = ["loop", "batched"] if a.engine == "both" else [a.engine]
        if a.engine == "both" and not batched_available():
            engines = ["loop"]
    lives = []
    for eng in engines:
        live = end_to_end(eng)
        lives.append(live)
        print(f"end to end ({live['engine']}): {live['scored']} cells scored live in "
              f"{live['wall']:.1f} s = {live['cands_per_s']:.2f} candidates/s "
              f"(scoring {live['scoring'] / live['wall']:.1%} of the time); "
              f"rerun from the cache {live['cached_wall'] * 1e3:.1f} ms", flush=True)

    lines = [
        "# Search driver throughput",
        "",
        (f"- git {git_sha()}, {time.strftime('%Y-%m-%d %H:%M')}, CPU: {cpu_name()} "
        f"({__import__('os').cpu_count()} logical cores, shared with other jobs; one thread used)"),
        (f"- Python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
        f"batched engine available: {batched_available()}"),
        f"- proxy table: {table_desc}; ground truth: NB201 CIFAR-100 (val for selection, test reported)",
        "- command: `python bench/bench_search_driver.py" + (" --quick" if a.quick else "") + "`",
        "",
        "## 1. Driver throughput, scores from the cache (timed in C++, median of 3 timings)",
        "",
        "A proposal = a candidate cell the algorithm generates and evaluates (a look-up in the",
        "accuracy table, or the proxy table for warmup and move candidates). Rates include each",
        "search's setup (tables of 15,625 entries). Spread = (max - min) / median of the timings.",
        "",
        "| variant | budget | searches | proposals/s | steps/s | searches/s | spread |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['label']} | {r['budget']} | {r['searches']} | {r['proposals_per_s']:,.0f} | "
                     f"{r['steps_per_s']:,.0f} | {r['searches_per_s']:,.1f} | {r['spread']:.0%} |")
    target = {r["label"]: r["proposals_per_s"] for r in rows if r["label"] in ("RAND", "AE", "RL")}
    lines += ["", "Target >= 1,000,000 proposals/s for RAND, AE and RL (slowest budget): " + ", ".join(
        f"{k} {'met' if min(x['proposals_per_s'] for x in rows if x['label'] == k) >= 1e6 else 'MISSED'}"
        for k in target), ""]
    if lives:
        lines += [
            "## 2. End to end with live scoring on CPU",
            "",
            "AE (population 16, tournament 4) + warmup(64) + move(24), budget 24, synflow of the",
            "CIFAR-100 network (weight seed 0) scored live into an empty cache (one thread), by the",
            "per-model `loop` engine and by the packed `batched` engine (one `zcfast.score` call",
            "per ask), in the same run:",
            "",
            "| engine | cells scored | asks | wall (s) | candidates/s | scoring share | same search from the cache |",
            "|---|---|---|---|---|---|---|",
        ]
        for live in lives:
            lines.append(
                f"| {live['engine']} | {live['scored']} | {live['asks']} | {live['wall']:.1f} | "
                f"{live['cands_per_s']:.2f} | {live['scoring'] / live['wall']:.1%} | "
                f"{live['cached_wall'] * 1e3:.1f} ms |")
        if len(lives) == 2:
            lines += ["", f"Batched / loop end-to-end speed: "
                      f"{lives[1]['cands_per_s'] / lives[0]['cands_per_s']:.2f}x."]
        lines += [
            "",
            "The driver's own time is negligible next to scoring: end-to-end speed is the scorer's.",
            "",
        ]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(lines))
    print(f"-> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
