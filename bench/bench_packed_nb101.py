"""Packed NB101 engine vs per-model loop on this machine, in one run.

Question: what does the packed NB101 builder (zcfast/batched/nb101.py: shared passes, layers
bucketed by shape) buy over the per-model reference loop on this CPU, per proxy group and for
all proxies at once, on real cells of the bundled subset at the official network widths?

    flock /work/.compute.lock flock /work/.compute2.lock nice -n 5 \\
        python bench/bench_packed_nb101.py [--batch 64] [--threads 2]

The loop is the per-model reference as the paper runs it: one model built per cell and one pass
per proxy (zcfast.proxies.compute_measures, every proxy on its own copy). Packed K=1 shares the
passes between proxies; K>1 adds the bucketing of K candidates' layers. Each row is timed once
(the per-cell costs are seconds to minutes; a row's time is the sum over its cells), after one
untimed warm-up pass of the smallest cell. Every packed score is compared with the loop's float32
score of the same cell (max relative difference per proxy; the equivalence itself, with the
float32 criterion of docs/engine.md, is tests/test_nb101_packed.py).

Rows are appended to bench/results/packed_nb101_cpu.json as they finish (rerunning skips the
rows already there for the same settings); bench/results/packed_nb101_cpu.md is rewritten after
every row, with the git SHA, CPU, threads, torch version, date and load average.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

OUT = HERE / "results" / "packed_nb101_cpu"
ALL = ["grad_norm", "snip", "plain", "grasp", "fisher", "jacob_cov", "synflow", "nwot",
       "params", "flops", "l2_norm"]
# (group, proxies, K values, cells for the packed engine, cells for the loop), headline first
ROWS = [
    ("all 11 proxies", ALL, [1, 2], 2, 2),
    ("synflow", ["synflow"], [1, 4], 4, 4),
    ("backward (grad_norm, snip, plain, fisher)", ["grad_norm", "snip", "plain", "fisher"],
     [1, 4], 4, 2),
    ("jacob_cov", ["jacob_cov"], [1, 4], 4, 2),
    ("nwot", ["nwot"], [1, 4], 4, 2),
    ("grasp", ["grasp"], [1, 2], 2, 2),
]


def cells(n: int) -> list:
    """The first n distinct cells of the bundled subset (its order), as raw codes."""
    from zcfast.data.nb101 import subset_groundtruth

    return [int(c) for c in subset_groundtruth()["code"][:n]]


def time_loop(codes, names, x, y):
    from zcfast.proxies import compute_measures
    from zcfast.spaces.nb101_model import build_model

    vals = {}
    t0 = time.perf_counter()
    for c in codes:
        net = build_model(c, 10, seed=0)
        vals[c] = compute_measures(net, x, y, names)
    return time.perf_counter() - t0, vals


def time_packed(codes, names, k, x, y):
    from zcfast.batched.nb101 import PackedNB101

    vals = {}
    t0 = time.perf_counter()
    for a in range(0, len(codes), k):
        part = codes[a : a + k]
        res = PackedNB101(part, 10, seed=0).compute(x, y, names)
        for i, c in enumerate(part):
            vals[c] = {p: float(res[p][i]) for p in names}
    return time.perf_counter() - t0, vals


def maxrel(a: dict, b: dict, names) -> dict:
    out = {}
    for p in names:
        worst = 0.0
        for c in a:
            u, v = a[c][p], b[c][p]
            if u == v or (np.isnan(u) and np.isnan(v)):
                continue
            worst = max(worst, abs(u - v) / max(abs(u), abs(v), 1e-300))
        out[p] = worst
    return out


def report(res: dict) -> str:
    m = res["meta"]
    lines = [
        "# Packed NB101 engine vs per-model loop (CPU)", "",
        f"git `{m['git']}`, {m['cpu']}, {m['threads']} threads, torch {m['torch']}, started "
        f"{m['started']}; the official NB101 network (stem 128, 3 stacks of 3 cells, CIFAR-10, "
        f"32x32), batch {m['batch']} of bundled real CIFAR-10 images (synflow: batch 1, float64), "
        "float32 otherwise; cells: the first distinct cells of the bundled subset. Each row timed "
        "once (sum over its cells); load average when each row ended in its last column (what "
        f"ran beside it: {m.get('beside', 'nothing else of the project')}).", "",
        "The loop is the per-model reference as the paper runs it: one model per cell, one pass "
        "per proxy, each proxy on its own copy. Packed K=1 shares passes between proxies (one "
        "loss pass serves grad_norm, snip, plain, fisher and grasp; NASWOT codes are read during "
        "it); K>1 adds the bucketing of K candidates' layers (zcfast/batched/nb101.py).", "",
        "| proxy group | K | cells | packed s/cell | loop s/cell | speedup | max rel. difference to per-model float32 | load avg |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in res["rows"]:
        diff = ", ".join(f"{p} {v:.1e}" for p, v in r["maxrel"].items())
        lines.append(f"| {r['group']} | {r['k']} | {r['cells']} | {r['packed_s_per_cell']:.2f} | "
                     f"{r['loop_s_per_cell']:.2f} | {r['loop_s_per_cell'] / r['packed_s_per_cell']:.2f}x"
                     f" | {diff} | {', '.join(f'{v:.1f}' for v in r['load'])} |")
    lines += ["", "speedup = loop seconds per cell / packed seconds per cell, both measured in "
              "this run on the same cells' settings (the loop on the first `loop cells` of the "
              "row's cells). Differences to per-model float32 are float32 rounding of two "
              "summation orders; tests/test_nb101_packed.py holds the engine to the float32 "
              "criterion of docs/engine.md and to 1e-9 in float64.", ""]
    return "\n".join(lines)


def main() -> None:
    from zcfast.data import image_source
    from zcfast.scoring import cpu_name, git_sha

    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(OUT), help="results path without suffix")
    ap.add_argument("--beside", default=None,
                    help="what else ran on the machine during the run, for the report (default: "
                         "nothing else of the project, e.g. both compute locks held)")
    a = ap.parse_args()
    out = Path(a.out)
    torch.set_num_threads(a.threads)
    x, y = image_source("cifar10").minibatch(a.batch, a.seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    jpath = out.with_suffix(".json")
    meta = {"git": git_sha(), "cpu": cpu_name(), "threads": a.threads, "torch": torch.__version__,
            "batch": a.batch, "seed": a.seed, "started": time.strftime("%Y-%m-%d %H:%M"),
            **({"beside": a.beside} if a.beside else {})}
    res = json.loads(jpath.read_text()) if jpath.exists() else {"meta": meta, "rows": []}
    if any(res["meta"][k] != meta[k] for k in ("batch", "seed", "threads")):
        raise SystemExit(f"{jpath} holds a run with other settings: {res['meta']}")
    done = {(r["group"], r["k"]) for r in res["rows"]}
    pool = cells(max(r[3] for r in ROWS))
    # warm-up: one untimed packed and loop pass (allocator, oneDNN primitives)
    time_packed(pool[:1], ["grad_norm", "synflow"], 1, x, y)
    time_loop(pool[:1], ["grad_norm"], x, y)
    for group, names, ks, n_packed, n_loop in ROWS:
        todo = [k for k in ks if (group, k) not in done]
        if not todo:
            continue
        codes = pool[:n_packed]
        t_loop, loop_vals = time_loop(codes[:n_loop], names, x, y)
        print(f"{group}: loop {t_loop / n_loop:.2f} s/cell", flush=True)
        for k in todo:
            t, vals = time_packed(codes, names, k, x, y)
            row = {"group": group, "proxies": names, "k": k, "cells": n_packed,
                   "loop_cells": n_loop, "packed_s_per_cell": t / n_packed,
                   "loop_s_per_cell": t_loop / n_loop,
                   "maxrel": maxrel({c: loop_vals[c] for c in codes[:n_loop]},
                                    {c: vals[c] for c in codes[:n_loop]}, names),
                   "load": list(os.getloadavg()), "git": git_sha(),
                   "ended": time.strftime("%Y-%m-%d %H:%M")}
            res["rows"].append(row)
            jpath.write_text(json.dumps(res, indent=1))
            out.with_suffix(".md").write_text(report(res))
            print(f"{group} K={k}: packed {t / n_packed:.2f} s/cell", flush=True)
    print(report(res))


if __name__ == "__main__":
    main()
