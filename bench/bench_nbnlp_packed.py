"""Packed vs per-model NAS-Bench-NLP scoring on this CPU, at the logs' sizes (33,278 words,
emsize 400, nhid 600, 3 layers) on one batch of 20 x 70 tokens.

    flock /work/.compute.lock flock /work/.compute2.lock nice -n 5 \
        python bench/bench_nbnlp_packed.py [--cells 4] [--threads 2] [--proxies paper]

For the same ``--cells`` logged networks (the first distinct ones of the logs), in one run:
per-model (``zcfast.proxies.compute_measures`` on each network) and the packed engine with K = 1
and K = cells candidates per pass. Every path computes the same proxies; the packed values are
checked against the per-model ones with the float32 criterion's fast pass (a report line says
how many pairs needed more than 16 ulps; docs/nbnlp.md, "Equivalence"). Writes
bench/results/nbnlp_packed_cpu.{json,md} with git SHA, CPU, threads, load average and date.
Ratios are measured in this one run; they are what a user on this machine would see.

Memory: the packed engine peaks at about 2.4 GB per network at these sizes; the per-model
reference's grasp keeps its double-backward graph and needs about 7 GB (extrapolated from scaled
models, bench/results/nbnlp_memory/README.md), so run the default proxy list only with that much
memory to spare (or leave grasp out with --proxies).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--proxies", default="grad_norm,snip,grasp,fisher,jacob_cov,synflow,nwot,params")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from zcfast.batched.verify import fast_pass
    from zcfast.proxies import compute_measures
    from zcfast.spaces import get_space

    sp = get_space("nbnlp")
    names = a.proxies.split(",")
    codes = [int(c) for c in sp.universe().codes[: a.cells]]
    mb = sp.minibatch()
    x, y = mb.x, mb.y
    times, vals = {}, {}
    t0 = time.perf_counter()
    ref = []
    for c in codes:
        ref.append(compute_measures(sp.build_model(c), x, y, names))
    times["per-model"] = time.perf_counter() - t0
    for k in sorted({1, a.cells}):
        t0 = time.perf_counter()
        got = []
        for i in range(0, len(codes), k):
            res = sp.packed(codes[i : i + k]).compute(x, y, names)
            got += [{p: float(res[p][j]) for p in names} for j in range(len(codes[i : i + k]))]
        times[f"packed K={k}"] = time.perf_counter() - t0
        vals[k] = got
    slow = {k: sum(not (fast_pass(g[p], r[p]) or (np.isnan(g[p]) and np.isnan(r[p])))
                   for g, r in zip(v, ref) for p in names) for k, v in vals.items()}
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=HERE.parent).stdout.strip()
    info = {"git": sha, "cpu": _cpu(), "threads": a.threads, "load_avg_at_end": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cells": len(codes),
            "proxies": names, "batch": list(x.shape), "seconds": times,
            "seconds_per_cell": {k: v / len(codes) for k, v in times.items()},
            "pairs_beyond_16_ulps": {f"packed K={k}": n for k, n in slow.items()}}
    out = HERE / "results" / "nbnlp_packed_cpu"
    out.with_suffix(".json").write_text(json.dumps(info, indent=1))
    base = times["per-model"]
    lines = ["# NB-NLP scoring on CPU: packed vs per-model", "",
             f"`python bench/bench_nbnlp_packed.py --cells {a.cells} --threads {a.threads}` at git "
             f"{sha}, {info['cpu']}, {a.threads} thread(s), {info['date']}, load average at the end "
             f"{info['load_avg_at_end'][0]:.1f}. Logs' sizes, batch 20 x 70 tokens, proxies "
             f"{', '.join(names)}; the first {len(codes)} distinct logged networks.", "",
             "| path | seconds | s/cell | speed-up vs per-model | pairs beyond 16 ulps of per-model |",
             "|---|---:|---:|---:|---:|"]
    for k, v in times.items():
        n = info["pairs_beyond_16_ulps"].get(k, "")
        lines.append(f"| {k} | {v:.1f} | {v / len(codes):.1f} | {base / v:.2f} | {n} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
