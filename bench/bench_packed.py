"""Packed engine vs per-model loop on this machine, in one run.

Question: how many NB201 candidates per second does packing K candidates per pass buy, per
proxy group, and what does it cost in memory? Also counts the ATen ops dispatched per
candidate (torch profiler), the CPU-side stand-in for GPU launch overhead: it should fall
roughly as 1/K.

    python bench/bench_packed.py                # full run (~30-60 min on 2 cores)
    python bench/bench_packed.py --quick        # small sizes, a couple of minutes

Writes bench/results/packed_cpu.{json,md} with the git SHA, CPU, library versions and date.
Correctness is checked (packed == per-model on the timed cells) before anything is timed.
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

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
GROUPS = {
    "synflow": ["synflow"],
    "backward (grad_norm, snip, plain, fisher)": ["grad_norm", "snip", "plain", "fisher"],
    "grasp": ["grasp"],
    "jacob_cov": ["jacob_cov"],
    "nwot": ["nwot"],
}
# ATen ops per candidate do not depend on the batch size: they are counted on a batch of 2 for
# K up to 64 (a batch-64 pass of 64 candidates would not fit in this machine's memory).
OPS_K = [1, 4, 16, 64]
# (K values, cells timed for the packed engine, cells timed for the loop)
FULL = {
    "synflow": ([1, 16, 64, 256], 256, 32),
    "backward (grad_norm, snip, plain, fisher)": ([1, 4, 16], 32, 8),
    "grasp": ([1, 4, 8], 16, 4),
    "jacob_cov": ([1, 4, 16], 32, 8),
    "nwot": ([1, 8, 32], 64, 16),
}
QUICK = {
    "synflow": ([1, 16, 64], 64, 8),
    "backward (grad_norm, snip, plain, fisher)": ([1, 4], 8, 2),
    "grasp": ([1, 4], 4, 2),
    "jacob_cov": ([1, 4], 8, 2),
    "nwot": ([1, 8], 16, 4),
}


def batch():
    from zcfast.data import image_source

    return image_source("cifar10").minibatch(64, 0)


def run_packed(idx, proxies, k, x, y):
    from zcfast.batched import iter_packed

    out = {p: [] for p in proxies}
    for _, res in iter_packed(idx, proxies, x, y, ncls=10, seed=0, chunk=k):
        for p in proxies:
            out[p].extend(res[p].tolist())
    return out


def run_loop(idx, proxies, x, y):
    from zcfast.proxies import compute_measures
    from zcfast.spaces.nb201_model import build_model

    out = {p: [] for p in proxies}
    for i in idx:
        r = compute_measures(build_model(int(i), 10, seed=0), x, y, proxies)
        for p in proxies:
            out[p].append(r[p])
    return out


def timed(fn, repeats: int):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), float(np.min(ts)), float(np.max(ts))


def count_aten_ops(fn) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(1 for e in prof.events() if e.name.startswith("aten::"))


def check(idx, proxies, x, y, k):
    a = run_packed(idx, proxies, k, x, y)
    b = run_loop(idx, proxies, x, y)
    worst = {}
    for p in proxies:
        pa, pb = np.asarray(a[p]), np.asarray(b[p])
        both_nan = np.isnan(pa) & np.isnan(pb)
        err = np.where(both_nan | (pa == pb), 0.0,
                       np.abs(pa - pb) / np.maximum(np.maximum(np.abs(pa), np.abs(pb)), 1e-300))
        worst[p] = float(np.max(err))
    return worst


def memory_child(args) -> None:
    """Subprocess mode: peak RSS growth of one packed chunk (fresh process, bytes)."""
    from zcfast.spaces import nb201

    torch.set_num_threads(1)
    x, y = batch()
    idx = nb201.sample(args.k, seed=123)
    # Reset the high-water mark so that import and data-loading peaks do not mask the pass's.
    Path("/proc/self/clear_refs").write_text("5")
    base = _status_kb("VmRSS")
    run_packed(idx, args.proxies.split(","), args.k, x, y)
    peak = _status_kb("VmHWM")
    print(json.dumps({"peak_growth_bytes": (peak - base) * 1024}))


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_per_candidate(proxies, k) -> float:
    r = subprocess.run([sys.executable, __file__, "--memory-child", "--k", str(k), "--proxies",
                        ",".join(proxies)], capture_output=True, text=True)
    if r.returncode != 0:
        return float("nan")
    return json.loads(r.stdout.strip().splitlines()[-1])["peak_growth_bytes"] / k


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "results" / "packed_cpu"))
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the .md report from the existing .json results")
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--proxies", default="synflow", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        return memory_child(args)
    if args.report_only:
        src = Path(args.out).with_suffix(".json")
        if not src.exists():
            raise SystemExit(f"--report-only: no results at {src}; run the benchmark first")
        data = json.loads(src.read_text())
        data.setdefault("repeats", args.repeats)
        return write_report(data, Path(args.out))
    torch.set_num_threads(args.threads)
    from zcfast.scoring import cpu_name, git_sha
    from zcfast.spaces import nb201

    plan = QUICK if args.quick else FULL
    x, y = batch()
    rows, ops_rows = [], []
    for group, proxies in GROUPS.items():
        ks, n_packed, n_loop = plan[group]
        idx = nb201.sample(n_packed, seed=7)
        loop_idx = idx[:n_loop]
        err = check(idx[: max(2, min(4, n_loop))], proxies, x, y, k=max(2, min(4, n_loop)))
        t_loop = timed(lambda: run_loop(loop_idx, proxies, x, y), args.repeats)
        loop_cps = n_loop / t_loop[0]
        xs, ys = x[:2], y[:2]
        ops_loop = count_aten_ops(lambda: run_loop(loop_idx[:1], proxies, xs, ys))
        ops_idx = nb201.sample(max(OPS_K), seed=8)
        ops_packed = {k: count_aten_ops(lambda: run_packed(ops_idx[:k], proxies, k, xs, ys)) / k
                      for k in (OPS_K if not args.quick else OPS_K[:3])}
        print(f"{group}: loop {loop_cps:.2f} cells/s, {ops_loop} aten ops/cell, check {err}, "
              f"packed ops/cell {ops_packed}", flush=True)
        for k, ops in ops_packed.items():
            ops_rows.append({"group": group, "K": k, "aten_ops_per_cell_packed": ops,
                             "aten_ops_per_cell_loop": ops_loop, "ratio": ops / ops_loop})
        for k in ks:
            n = max(k, (n_packed // k) * k)
            sel = idx[:n]
            t = timed(lambda: run_packed(sel, proxies, k, x, y), args.repeats)
            cps = n / t[0]
            mem = memory_per_candidate(proxies, k)
            rows.append({
                "group": group, "K": k, "cells": int(n), "packed_cells_per_s": cps,
                "packed_s_median": t[0], "packed_s_min": t[1], "packed_s_max": t[2],
                "loop_cells_per_s": loop_cps, "loop_s_median": t_loop[0], "speedup": cps / loop_cps,
                "peak_mem_per_cell_MB": mem / 1e6, "max_rel_err_vs_loop": err,
            })
            print(f"  K={k:4d}: {cps:8.2f} cells/s  x{cps / loop_cps:5.2f}  {mem / 1e6:8.1f} MB/cell",
                  flush=True)
    meta = {
        "git": git_sha(), "cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__,
        "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M"),
        "batch": 64, "dataset": "cifar10 (bundled images)", "quick": args.quick,
        "load_average_at_end": os.getloadavg(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = {"meta": meta, "rows": rows, "ops": ops_rows, "repeats": args.repeats}
    out.with_suffix(".json").write_text(json.dumps(data, indent=1))
    write_report(data, out)


def write_report(data: dict, out: Path) -> None:
    """Markdown report (with the issue's targets checked) from the JSON results."""
    meta, rows, ops_rows = data["meta"], data["rows"], data["ops"]
    lines = [
        "# Packed engine vs per-model loop (CPU)", "",
        f"git `{meta['git']}`, {meta['cpu']}, {meta['threads']} threads, torch {meta['torch']}, "
        f"{meta['date']}; batch 64 (synflow: batch 1, float64); median of {data['repeats']} runs; "
        f"load average at the end {tuple(round(v, 2) for v in meta['load_average_at_end'])}.", "",
        "The loop is the per-model reference as the paper runs it: one model built per cell and",
        "one pass per proxy. Packed K=1 already shares passes between proxies and skips the",
        "module building; K>1 adds the packing itself. Before timing, packed and loop scores of",
        "the same cells are compared (max relative difference below; float32 except synflow).", "",
        "## Throughput and memory", "",
        "| proxy group | K | packed cells/s | loop cells/s | speedup | peak MB/cell |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['group']} | {r['K']} | {r['packed_cells_per_s']:.2f} | "
                     f"{r['loop_cells_per_s']:.2f} | {r['speedup']:.2f}x | "
                     f"{r['peak_mem_per_cell_MB']:.0f} |")
    lines += ["", "| proxy group | max relative difference packed vs loop |", "|---|---|"]
    seen = set()
    for r in rows:
        if r["group"] not in seen:
            seen.add(r["group"])
            lines.append(f"| {r['group']} | " + ", ".join(
                f"{p} {e:.1e}" for p, e in r["max_rel_err_vs_loop"].items()) + " |")
    lines += ["", "## ATen ops dispatched per candidate (torch profiler; batch-independent)", "",
              "| proxy group | K | packed ops/cell | loop ops/cell | packed / loop |",
              "|---|---:|---:|---:|---:|"]
    for r in ops_rows:
        lines.append(f"| {r['group']} | {r['K']} | {r['aten_ops_per_cell_packed']:.0f} | "
                     f"{r['aten_ops_per_cell_loop']} | {r['ratio']:.3f} |")

    def best(group):
        return max((r for r in rows if r["group"].startswith(group)), key=lambda r: r["speedup"])

    def ops_at(group, k):
        return next((r["ratio"] for r in ops_rows if r["group"].startswith(group) and r["K"] == k),
                    None)

    lines += ["", "## Targets (issue 3)", ""]
    if not meta.get("quick"):
        for group, want in (("synflow", 3.0), ("backward", 1.3)):
            r = best(group)
            lines.append(f"- {group}: best packed speedup {r['speedup']:.2f}x at K={r['K']} "
                         f"(target >= {want}x): {'met' if r['speedup'] >= want else 'MISSED'}")
        kmax = max(r["K"] for r in ops_rows)
        for g in dict.fromkeys(r["group"] for r in ops_rows):
            ratio = ops_at(g, kmax)
            lines.append(f"- {g}: ops per candidate at K={kmax} = {ratio:.3f} of the loop's "
                         f"(target <= 0.050): {'met' if ratio <= 0.05 else 'MISSED'}")
    else:
        lines.append("- quick run: sizes too small to judge the targets")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
