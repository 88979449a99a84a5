"""Per-model cost of the modern proxies: seconds per NB201 cell on this CPU.

    flock /work/.compute.lock nice -n 5 python bench/bench_modern_cost.py [--cells 8] [--threads 1]

NB201 CIFAR-10 networks (paper flavour, seed 0), batch 64 of the bundled real CIFAR-10 images
(ZiCo: plus its second batch), the per-model reference path of ``zcfast.compute_measures``
(network copy included). Each proxy group (one computation shared by the names in it) is timed
on the same cells, in a rotating order; snip (one forward/backward) and synflow are timed next to
them as the scale. Every value is checked finite or -inf before its time counts. Writes
bench/results/modern_cost.{md,json} with the git SHA, CPU, threads, load average and date.
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results" / "modern_cost"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)

    from zcfast.data import image_source
    from zcfast.proxies import compute_measures, extra_batch_seed
    from zcfast.scoring import cpu_name, git_sha
    from zcfast.spaces import nb201
    from zcfast.spaces.nb201_model import build_model

    src = image_source("cifar10")
    x, y = src.minibatch(64, a.seed)
    extra = [src.minibatch(64, extra_batch_seed(a.seed, 1))]
    cells = [int(i) for i in nb201.sample(a.cells, seed=a.seed + 101)]
    times = {g: [] for g in GROUPS}
    names = list(GROUPS)
    t_all = time.perf_counter()
    for k, i in enumerate(cells):
        order = names[k % len(names):] + names[:k % len(names)]  # rotate: no group always first
        for g in order:
            net = build_model(i, 10, seed=a.seed)
            t = time.perf_counter()
            vals = compute_measures(net, x, y, GROUPS[g], seed=a.seed, extra_batches=extra)
            dt = time.perf_counter() - t
            bad = {p: v for p, v in vals.items() if math.isnan(v) or v == math.inf}
            if bad:
                print(f"cell {i}: {g} gave {bad} (time not counted)", flush=True)
                continue
            times[g].append(dt)
        print(f"cell {k + 1}/{len(cells)} ({i}) done, {time.perf_counter() - t_all:.0f} s", flush=True)
    rows = []
    for g in names:
        ts = times[g]
        rows.append({"group": g, "proxies": GROUPS[g], "n": len(ts),
                     "median_s": statistics.median(ts) if ts else math.nan,
                     "min_s": min(ts) if ts else math.nan, "max_s": max(ts) if ts else math.nan})
    snip = rows[0]["median_s"]
    info = {"git": git_sha(), "cpu": cpu_name(), "threads": a.threads, "cells": cells,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "torch": torch.__version__,
            "load_average_end": list(os.getloadavg()), "batch": 64, "dataset": "cifar10",
            "rows": rows}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(str(out) + ".json").write_text(json.dumps(info, indent=1))
    lines = [
        "# Per-model cost of the modern proxies (NB201, CIFAR-10, batch 64)", "",
        f"`bench/bench_modern_cost.py`, git {info['git']}, {info['cpu']}, {a.threads} thread(s), "
        f"torch {torch.__version__}, {info['date']}, run under the compute lock; load average at "
        f"the end {', '.join(f'{v:.2f}' for v in info['load_average_end'])}.", "",
        f"{len(cells)} random cells (seed {a.seed + 101}), the per-model reference path "
        "(`compute_measures`, network copy included), seconds per cell:", "",
        "| proxy group | cells | median s/cell | min | max | x snip |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['group']} | {r['n']} | {r['median_s']:.2f} | {r['min_s']:.2f} | "
                     f"{r['max_s']:.2f} | {r['median_s'] / snip:.1f} |")
    lines += ["", "A group's names share one computation (e.g. swap_reg costs nothing beyond swap). "
              "az_complexity is flops (no pass). Not measured here, an extrapolation: vkdnw does one "
              "backward pass per class, so CIFAR-100 should cost about 10x its CIFAR-10 figure, "
              "and ImageNet16-120 (12x the classes, a quarter of the pixels) about 3x."]
    Path(str(out) + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
