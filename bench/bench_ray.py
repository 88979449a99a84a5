"""Local engine vs Ray with 1 and 2 workers on this CPU, and what one chunk costs Ray.

1. Throughput of one scoring job, in one run: local (this process, 1 and 2 torch threads),
   Ray with 1 worker and with 2 workers (1 CPU, 1 torch thread each), as ratios to local with
   1 thread. Two workloads: *heavy* (CIFAR-10 networks, batch 64, grad_norm/snip/synflow/nwot;
   seconds per cell) and *light* (ImageNet16-120 networks, synflow+params; tens of ms per cell).
   Timed warm: every executor scored a few cells of the task first (runner built, kernels
   primed); actor start-up is reported separately (3).
2. Per-chunk overhead: a ping round trip to an actor; chunks of one cell of the cheapest proxy
   (params, counted from the plan) through the executor, 1 worker, with 1 and 2 chunks queued
   per actor, against the same cells scored locally; the light job on 2 workers with chunks of
   16..128 cells.
3. Warm start: a local ``ray.init``, actors from creation to ready (process start and imports),
   and a runner's first build (its minibatch) per actor.

Correctness first: every timed run's scores are checked against the local run's, bit for bit
(the engine's pass size is pinned, so Ray actors pack exactly the cells a local run packs).
Writes bench/results/ray_cpu.{md,json} (git SHA, CPU, date, versions). Run holding both compute
locks: ``flock /work/.compute.lock flock /work/.compute2.lock nice -n 5 python bench/bench_ray.py``.

    python bench/bench_ray.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # Ray workers inherit it; threads are set below
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

# zcfast before torch, as the zcfast command does: idle OpenMP threads sleep instead of spinning
# (docs/threads.md); Ray's workers inherit the policy through the environment
import zcfast  # noqa: F401, I001
import numpy as np
import torch

from zcfast.executors import LocalExecutor, ScoreTask
from zcfast.scoring import cpu_name, git_sha
from zcfast.spaces import nb201

OUT = HERE / "results"


def task(dataset, proxies, batch, pass_size):
    return ScoreTask("nb201", {"dataset": dataset, "proxies": proxies, "seed": 0,
                               "batch_size": batch, "images": "default", "data_root": None,
                               "flavour": "paper", "engine": "packed", "chunk": pass_size})


WORKLOADS = {  # name -> (task, cells, warm-up cells)
    "heavy": (task("cifar10", ["grad_norm", "snip", "synflow", "nwot"], 64, 2), 32, 4),
    "light": (task("ImageNet16-120", ["synflow", "params"], 64, 16), 512, 32),
}
TRIVIAL = task("ImageNet16-120", ["params"], 8, 1)
REPS = {"heavy": 1, "light": 3}  # timings per measurement (median reported)


def same(a: dict, b: dict) -> bool:
    return all(np.array_equal(a[p], b[p], equal_nan=True) for p in a)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def local_job(t, archs, warm, threads, reps=1):
    torch.set_num_threads(threads)
    ex = LocalExecutor()
    ex.score(t, warm)
    times = []
    for _ in range(reps):
        out, dt = timed(lambda: ex.score(t, archs))
        times.append(dt)
    torch.set_num_threads(1)
    return out, times


def ray_job(ex, t, archs, reps=1):
    """(scores, wall seconds per rep, actor-busy seconds per rep, chunks per rep)."""
    walls, busy = [], []
    for _ in range(reps):
        b0, c0 = ex.stats["busy_seconds"], ex.stats["chunks"]
        out, dt = timed(lambda: ex.score(t, archs))
        walls.append(dt)
        busy.append(ex.stats["busy_seconds"] - b0)
    return out, walls, busy, ex.stats["chunks"] - c0


def med(xs):
    return statistics.median(xs)


def spread(xs):
    return (max(xs) - min(xs)) / med(xs) if len(xs) > 1 else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke test, not for results)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    scale = 8 if a.quick else 1
    jobs = {}
    for k, (t, n, w) in WORKLOADS.items():
        cells = [nb201.code_of_index(int(i)) for i in nb201.sample(n // scale + w, 1)]  # codes
        jobs[k] = (t, cells[:-w], cells[-w:])  # (task, timed cells, warm-up cells)
    triv = [nb201.code_of_index(int(i)) for i in nb201.sample(200 // scale, 2)]
    res: dict = {"throughput": {}, "overhead": {}, "start": {}}

    # ---- local runs first, before Ray's processes exist ---------------------------------------
    ref = {}
    for name, (t, archs, warm) in jobs.items():
        for threads in (1, 2):
            out, times = local_job(t, archs, warm, threads, REPS[name])
            if threads == 1:
                ref[name] = out  # (2 threads change float32 sums' order: not compared)
            res["throughput"].setdefault(name, {})[f"local, {threads} thread{'s' * (threads > 1)}"] = {
                "seconds": med(times), "spread": spread(times), "cells": len(archs)}
            print(f"{name}: local {threads} threads {med(times):.2f} s", flush=True)
    ref_triv, times = local_job(TRIVIAL, triv, triv[:4], 1, 3)
    res["overhead"]["local trivial cells"] = {"seconds": med(times), "cells": len(triv)}

    # ---- Ray ------------------------------------------------------------------------------------
    import ray

    from zcfast.executors.ray import RayExecutor

    _, dt = timed(lambda: ray.init(address="local", num_cpus=2, include_dashboard=False,
                                   object_store_memory=200 * 2**20, log_to_driver=False))
    res["start"]["ray.init (local instance, 2 CPUs)"] = dt
    print(f"ray.init {dt:.1f} s", flush=True)
    try:
        for workers in (1, 2):
            ex = RayExecutor(workers=workers)
            infos, dt = timed(ex.wait_ready)
            res["start"][f"{workers} actor(s): created -> ready"] = dt
            for name, (t, archs, warm) in jobs.items():
                secs = ex.warm(t)
                res["start"].setdefault(f"runner first build ({name})", max(secs))
                ex.score(t, warm)
                out, walls, busy, _ = ray_job(ex, t, archs, REPS[name])
                assert same(out, ref[name]), f"{name}: Ray with {workers} workers != local"
                res["throughput"][name][f"Ray, {workers} worker{'s' * (workers > 1)}"] = {
                    "seconds": med(walls), "spread": spread(walls), "cells": len(archs),
                    "chunk": ex.chunk_size(t, len(archs)),
                    "busy_share": med(busy) / (med(walls) * workers),
                    "checked": "bit for bit vs local 1 thread"}
                print(f"{name}: ray {workers} workers {med(walls):.2f} s", flush=True)
            if workers == 1:
                w = ex._workers[0].handle
                lat = []
                for _ in range(200 // scale):
                    _, d = timed(lambda: ray.get(w.ping.remote(None)))
                    lat.append(d)
                res["overhead"]["ping round trip (median)"] = {"seconds": statistics.median(lat)}
                ex.warm(TRIVIAL)
                for depth in (1, 2):
                    ex.depth = depth
                    ex.chunk = 1
                    out, walls, busy, n = ray_job(ex, TRIVIAL, triv, 3)
                    assert same(out, ref_triv)
                    res["overhead"][f"trivial 1-cell chunks, 1 worker, depth {depth}"] = {
                        "seconds": med(walls), "busy": med(busy), "chunks": n, "cells": len(triv)}
                ex.depth, ex.chunk = 2, None
            else:
                t, archs, _ = jobs["light"]
                for c in (16, 32, 64, 128):
                    ex.chunk = c
                    out, walls, busy, n = ray_job(ex, t, archs, REPS["light"])
                    assert same(out, ref["light"])
                    res["overhead"][f"light job, 2 workers, chunk {c}"] = {
                        "seconds": med(walls), "spread": spread(walls), "busy": med(busy),
                        "cells": len(archs), "chunks": n}
                ex.chunk = None
            ex.close()
    finally:
        ray.shutdown()
    write(res, a)


def write(res, a):
    meta = {"git": git_sha(), "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_name(),
            "cores": os.cpu_count(), "python": sys.version.split()[0], "torch": torch.__version__,
            "ray": __import__("ray").__version__, "quick": a.quick,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset")}
    lines = [
        "# Local engine vs Ray on this CPU", "",
        f"- git {meta['git']}, {meta['date']}, CPU: {meta['cpu']} ({meta['cores']} logical cores)",
        f"- Python {meta['python']}, torch {meta['torch']}, Ray {meta['ray']}; every process and "
        f"actor on 1 torch thread unless stated; OMP_WAIT_POLICY={meta['omp_wait_policy']}",
        "- command: `flock /work/.compute.lock flock /work/.compute2.lock nice -n 5 python bench/bench_ray.py`"
        + (" --quick (NOT for results)" if a.quick else ""), "",
        "## 1. Throughput, one job, ratios to local with 1 thread", "",
        "Warm timings (runners built and a few cells scored first). Every Ray result equals the "
        "local 1-thread result bit for bit (checked).", "",
        "Seconds: median of the repetitions (heavy 1, light 3), spread = (max - min) / median. "
        "Busy: the share of the actors' wall time spent inside chunks.", "",
        "| workload | run | cells | seconds | spread | cells/s | ratio | chunk | busy |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in res["throughput"].items():
        base = runs["local, 1 thread"]["seconds"] / runs["local, 1 thread"]["cells"]
        t = WORKLOADS[name][0]
        label = f"{name} ({t.settings['dataset']}, batch {t.settings['batch_size']}, {'+'.join(t.proxies)})"
        for run, r in runs.items():
            per = r["seconds"] / r["cells"]
            busy = f"{r['busy_share']:.0%}" if "busy_share" in r else "-"
            lines.append(f"| {label} | {run} | {r['cells']} | {r['seconds']:.2f} | {r['spread']:.0%} | "
                         f"{1 / per:.2f} | {base / per:.2f}x | {r.get('chunk', '-')} | {busy} |")
    lines += ["", "## 2. Per-chunk overhead", ""]
    ov = res["overhead"]
    loc = ov["local trivial cells"]
    loc_per = loc["seconds"] / loc["cells"]
    lines.append(f"- ping round trip to an actor (median of {200 // (8 if a.quick else 1)}): "
                 f"{ov['ping round trip (median)']['seconds'] * 1e3:.2f} ms")
    lines.append(f"- one cell of `params` scored locally: {loc_per * 1e3:.2f} ms")
    for depth in (1, 2):
        r = ov[f"trivial 1-cell chunks, 1 worker, depth {depth}"]
        per, inside = r["seconds"] / r["chunks"], r["busy"] / r["chunks"]
        lines.append(f"- {r['chunks']} 1-cell chunks through the executor, 1 worker, {depth} "
                     f"chunk(s) queued per actor (median of 3): {per * 1e3:.2f} ms per chunk of wall "
                     f"time, {inside * 1e3:.2f} ms of it inside the actor: **{(per - inside) * 1e3:.2f} "
                     "ms overhead per chunk**" + (" (round trip exposed)" if depth == 1 else
                                                  " (next chunk already queued)"))
    lines += ["", "Light job on 2 workers by chunk size (busy = actors' share of wall time "
              "inside chunks):", "",
              "| chunk | chunks | seconds | spread | cells/s | busy |", "|---:|---:|---:|---:|---:|---:|"]
    for k, r in ov.items():
        if k.startswith("light job"):
            lines.append(f"| {k.rsplit(' ', 1)[1]} | {r['chunks']} | {r['seconds']:.2f} | "
                         f"{r['spread']:.0%} | {r['cells'] / r['seconds']:.1f} | "
                         f"{r['busy'] / (2 * r['seconds']):.0%} |")
    lines += ["", "## 3. Warm start", ""]
    for k, v in res["start"].items():
        lines.append(f"- {k}: {v:.2f} s")
    lines.append("")
    out = Path(tempfile.gettempdir()) if a.quick else OUT  # a smoke test's numbers stay out of bench/
    out.mkdir(parents=True, exist_ok=True)
    (out / "ray_cpu.md").write_text("\n".join(lines))
    (out / "ray_cpu.json").write_text(json.dumps({"meta": meta, **res}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
