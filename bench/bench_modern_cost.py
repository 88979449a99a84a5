"""Cost of the modern proxies, per-model and packed in one run: seconds per NB201 cell on this CPU.

    flock /work/.compute.lock flock /work/.compute2.lock nice -n 5 \
        python bench/bench_modern_cost.py [--cells 8] [--threads 1]

NB201 networks of ``--dataset`` (default CIFAR-10; paper flavour, seed 0), batch 64 of the
dataset's bundled real images (ZiCo: plus its second batch), float32.
- Per-model: the reference path of ``zcfast.compute_measures``, network build and copy included.
  Each proxy group (one computation shared by the names in it) is timed on the same cells, in a
  rotating order; snip (one forward/backward) and synflow are timed next to them as the scale.
  Every value is checked finite or -inf before its time counts.
  One untimed call per group first (on the first cell) warms up PyTorch's kernels.
- Packed (``--packed-repeat`` > 0, the default): the same cells as one chunk of the packed engine
  (``iter_packed``, plan and weights included), each group timed ``--packed-repeat`` times after
  the per-model loop; seconds per cell = the mean chunk time / cells. The ratio per-model /
  packed divides the per-model time of every cell (those with a NaN or +inf value included) by
  it. K is the number of cells (8 by default), far below the studies' chunks, so the ratio is
  the small-K one. The packed values are checked against the per-model ones on the same cells
  (equal within ``--rtol``, zico within ``--rtol-zico``: its float32 value is a ratio of two
  gradients that agree to a few ulps where a weight barely matters, so rounding moves it by up
  to 1e-2 relative, docs/engine.md; NaN with NaN, inf with inf), and the largest relative
  difference is written next to the time: a time whose values disagree is marked, not hidden,
  and the exit status is 1.
Writes bench/results/modern_cost{,_<dataset>}.{md,json} with the git SHA, CPU, threads, load
average and date.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import torch  # noqa: E402

GROUPS = {
    "snip (scale: one forward/backward)": ["snip"],
    "synflow (scale)": ["synflow"],
    "zico": ["zico"],
    "epe_nas": ["epe_nas"],
    "zen": ["zen"],
    "meco": ["meco"],
    "swap + swap_reg": ["swap", "swap_reg"],
    "AZ-NAS components (az_expressivity, az_progressivity, az_trainability)":
        ["az_expressivity", "az_progressivity", "az_trainability"],
    "vkdnw, vkdnw_dim, vkdnw_single": ["vkdnw", "vkdnw_dim", "vkdnw_single"],
}


def packed_cost(cells, proxies, x, y, ncls, a, extra, ref) -> dict:
    """Best of ``a.packed_repeat`` timings of ``cells`` as one packed chunk (seconds per cell),
    with the largest relative difference of its values from ``ref`` (per-model, {cell: {proxy:
    value}}) and whether they agree within ``a.rtol``."""
    if not a.packed_repeat:
        return {"packed_s": None}
    from zcfast.batched import iter_packed

    spent, got = [], {}
    for _ in range(a.packed_repeat):
        t = time.perf_counter()
        for part, res in iter_packed(cells, proxies, x, y, ncls=ncls, seed=a.seed,
                                     chunk=len(cells), extra_batches=extra):
            for k, i in enumerate(part):
                got[i] = {p: float(res[p][k]) for p in proxies}
        spent.append(time.perf_counter() - t)
    worst, bad = 0.0, []
    for i, vals in ref.items():
        for p, r in vals.items():
            g = got[i][p]
            if r == g or (math.isnan(r) and math.isnan(g)):
                continue
            d = abs(g - r) / max(abs(r), 1e-12)
            worst = max(worst, d if math.isfinite(d) else math.inf)
            if not d <= (a.rtol_zico if p == "zico" else a.rtol):
                bad.append(f"{p} cell {i}: {r:.6g} vs {g:.6g}")
    if bad:
        print("packed disagrees with per-model:", "; ".join(bad), flush=True)
    return {"packed_s": sum(spent) / len(spent) / len(cells), "packed_runs_s": spent,
            "max_rel_diff": worst if math.isfinite(worst) else "inf", "agree": not bad,
            "disagree": "; ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--out", default=None, help="default bench/results/modern_cost[_<dataset>]")
    ap.add_argument("--packed-repeat", type=int, default=2,
                    help="packed timings of each group's chunk (0: per-model only)")
    ap.add_argument("--rtol", type=float, default=1e-2,
                    help="packed vs per-model agreement required of the timed values (float32)")
    ap.add_argument("--rtol-zico", type=float, default=5e-2, help="the same for zico")
    a = ap.parse_args(argv)
    if a.cells < 1 or a.threads < 1 or a.packed_repeat < 0 or not (a.rtol > 0 and a.rtol_zico > 0):
        ap.error(f"--cells {a.cells} and --threads {a.threads} must be >= 1, --packed-repeat "
                 f"{a.packed_repeat} >= 0 and --rtol {a.rtol} > 0")
    torch.set_num_threads(a.threads)

    from zcfast.data import dataset_name, image_source, num_classes
    from zcfast.proxies import compute_measures, extra_batch_seed
    from zcfast.scoring import cpu_name, git_sha
    from zcfast.spaces import nb201
    from zcfast.spaces.nb201_model import build_model

    ds = dataset_name(a.dataset)
    ncls = num_classes(ds)
    if a.out is None:
        a.out = str(HERE / "results" / ("modern_cost" if ds == "cifar10" else f"modern_cost_{ds}"))
    src = image_source(ds)
    x, y = src.minibatch(64, a.seed)
    extra = [src.minibatch(64, extra_batch_seed(a.seed, 1))]
    cells = [int(i) for i in nb201.sample(a.cells, seed=a.seed + 101)]
    times = {g: [] for g in GROUPS}
    every = {g: [] for g in GROUPS}  # every cell's per-model time (the packed ratio's numerator)
    ref = {g: {} for g in GROUPS}  # per-model values, the packed check's reference
    names = list(GROUPS)
    for g in names:  # warm-up, untimed
        compute_measures(build_model(cells[0], ncls, seed=a.seed), x, y, GROUPS[g], seed=a.seed,
                         extra_batches=extra)
    t_all = time.perf_counter()
    for k, i in enumerate(cells):
        order = names[k % len(names):] + names[:k % len(names)]  # rotate: no group always first
        for g in order:
            t = time.perf_counter()
            net = build_model(i, ncls, seed=a.seed)
            vals = compute_measures(net, x, y, GROUPS[g], seed=a.seed, extra_batches=extra)
            dt = time.perf_counter() - t
            ref[g][i] = vals
            every[g].append(dt)
            bad = {p: v for p, v in vals.items() if math.isnan(v) or v == math.inf}
            if bad:
                print(f"cell {i}: {g} gave {bad} (time not counted)", flush=True)
                continue
            times[g].append(dt)
        print(f"cell {k + 1}/{len(cells)} ({i}) done, {time.perf_counter() - t_all:.0f} s", flush=True)
    packed = {g: packed_cost(cells, GROUPS[g], x, y, ncls, a, extra, ref[g]) for g in names}
    rows = []
    for g in names:
        ts = times[g]
        rows.append({"group": g, "proxies": GROUPS[g], "n": len(ts),
                     "median_s": statistics.median(ts) if ts else math.nan,
                     "min_s": min(ts) if ts else math.nan, "max_s": max(ts) if ts else math.nan,
                     **packed[g]})
    snip = rows[0]["median_s"]
    info = {"git": git_sha(), "cpu": cpu_name(), "threads": a.threads, "cells": cells,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "torch": torch.__version__,
            "load_average_end": list(os.getloadavg()), "batch": 64, "dataset": ds, "images": src.description,
            "rows": rows}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(str(out) + ".json").write_text(json.dumps(info, indent=1))
    lines = [
        f"# Cost of the modern proxies, per-model and packed (NB201, {ds}, batch 64)", "",
        f"`bench/bench_modern_cost.py`, git {info['git']}, {info['cpu']}, {a.threads} thread(s), "
        f"torch {torch.__version__}, {info['date']}, run under both compute locks; load average at "
        f"the end {', '.join(f'{v:.2f}' for v in info['load_average_end'])}.", "",
        "Per-model times include building the network (from git 2b845db on; earlier files of "
        "this name did not), after one untimed warm-up call per group.", "",
        f"Images: {src.description}.", "",
        f"{len(cells)} random cells (seed {a.seed + 101}); per-model: the reference path "
        "(`compute_measures`, network build and copy included); seconds per cell:", "",
        "| proxy group | cells | per-model median s/cell | min | max | x snip | packed s/cell "
        f"(K={len(cells)}) | per-model / packed | packed vs per-model: largest rel. diff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if r.get("packed_s") is None:
            pk = ["not run", "", ""]
        else:
            ratio = sum(every[r["group"]]) / len(every[r["group"]]) / r["packed_s"]
            pk = [f"{r['packed_s']:.3f}", f"{ratio:.1f}x",
                  (f"{r['max_rel_diff']:.1e}" if isinstance(r["max_rel_diff"], float)
                   else str(r["max_rel_diff"])) + ("" if r["agree"] else
                                                f" **DISAGREE** ({r['disagree']})")]
        lines.append(f"| {r['group']} | {r['n']} | {r['median_s']:.2f} | {r['min_s']:.2f} | "
                     f"{r['max_s']:.2f} | {r['median_s'] / snip:.1f} | " + " | ".join(pk) + " |")
    if a.packed_repeat:
        lines += ["", f"Packed: the {len(cells)} cells as one chunk (K={len(cells)}, far below "
                  f"the studies' chunks), float32, the mean of {a.packed_repeat} timings per "
                  "group, plan and weight init included; the ratio divides the mean per-model "
                  "time of every cell (NaN or +inf ones included) by it. Values checked against "
                  f"the per-model ones within {a.rtol:g} relative ({a.rtol_zico:g} for zico)."]
    lines += ["", "A group's names share one computation (e.g. swap_reg costs nothing beyond swap). "
              "az_complexity is flops (no pass). vkdnw does one backward pass per class, so its cost "
              "grows with the number of classes (measured per dataset: modern_cost_<dataset>.md)."]
    Path(str(out) + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r.get("agree", True) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
