"""Packed engine vs per-model loop on this machine, in one run.

Question: how many NB201 candidates per second does packing K candidates per pass buy, per
proxy group, and what does it cost in memory? Also counts the ATen ops dispatched per
candidate (torch profiler), the CPU-side stand-in for GPU launch overhead: it should fall
roughly as 1/K.

    python bench/bench_packed.py                # full run (~30-60 min on 2 cores, + verification)
    python bench/bench_packed.py --quick        # small sizes, a few minutes
    python bench/bench_packed.py --verify-only  # re-verify the cells of the stored results

Writes bench/results/packed_cpu.{json,md} with the git SHA, CPU, library versions and date.
Every timed packed score (every cell, every K) is verified against the per-model reference with
the float32 criterion of docs/engine.md (zcfast.batched.verify) after the timing; the report
lists every failure and the script exits non-zero if there is one. ``--verify-only`` recomputes
the packed scores of the stored run's cells and K (untimed) with the current engine and verifies
them, keeping the stored timings (the report gives both git SHAs).
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
    """(median, min, max) seconds of ``repeats`` calls, and the last call's result."""
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return (float(np.median(ts)), float(np.min(ts)), float(np.max(ts))), out


def count_aten_ops(fn) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(1 for e in prof.events() if e.name.startswith("aten::"))


def verify_timed(sel, proxies, k, values, x, y, refs) -> dict:
    """Judge every (cell, proxy) of one timed packed run (``values``: {proxy: [score per cell of
    sel]}, computed ``k`` cells per pass) with the float32 criterion of docs/engine.md."""
    from zcfast.batched import verify

    sel = [int(i) for i in sel]
    packed = {i: {p: float(values[p][n]) for p in proxies} for n, i in enumerate(sel)}
    chunks = [sel[j : j + k] for j in range(0, len(sel), k)]
    pairs = verify.check_float32(chunks, proxies, x, y, ncls=10, seed=0, packed=packed, refs=refs)
    worst = {p: max(verify.relerr(q.packed, q.ref32[0]) for q in pairs if q.proxy == p)
             for p in proxies}
    return {"pairs": len(pairs), "verdicts": verify.summary(pairs),
            "failures": [verify.describe(q) for q in verify.failures(pairs)],
            "max_rel_diff_vs_ref32": worst}


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
    ap.add_argument("--verify-only", action="store_true",
                    help="verify (untimed) the cells and K of the existing .json results with the "
                         "current engine, keep their timings, rewrite the report")
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--proxies", default="synflow", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        return memory_child(args)
    out = Path(args.out)
    if args.report_only or args.verify_only:
        src = out.with_suffix(".json")
        if not src.exists():
            raise SystemExit(f"no results at {src}; run the benchmark first")
        data = json.loads(src.read_text())
        data.setdefault("repeats", args.repeats)
        if args.verify_only:
            torch.set_num_threads(args.threads)
            data["verification"] = verify_stored(data, out)
            src.write_text(json.dumps(data, indent=1))
        return finish(data, out)
    torch.set_num_threads(args.threads)
    from zcfast.scoring import cpu_name, git_sha
    from zcfast.spaces import nb201

    plan = QUICK if args.quick else FULL
    x, y = batch()
    rows, ops_rows, timed_runs = [], [], []
    for group, proxies in GROUPS.items():
        ks, n_packed, n_loop = plan[group]
        idx = nb201.sample(n_packed, seed=7)
        loop_idx = idx[:n_loop]
        t_loop, loop_vals = timed(lambda: run_loop(loop_idx, proxies, x, y), args.repeats)
        loop_cps = n_loop / t_loop[0]
        xs, ys = x[:2], y[:2]
        ops_loop = count_aten_ops(lambda: run_loop(loop_idx[:1], proxies, xs, ys))
        ops_idx = nb201.sample(max(OPS_K), seed=8)
        ops_packed = {k: count_aten_ops(lambda: run_packed(ops_idx[:k], proxies, k, xs, ys)) / k
                      for k in (OPS_K if not args.quick else OPS_K[:3])}
        print(f"{group}: loop {loop_cps:.2f} cells/s, {ops_loop} aten ops/cell, "
              f"packed ops/cell {ops_packed}", flush=True)
        for k, ops in ops_packed.items():
            ops_rows.append({"group": group, "K": k, "aten_ops_per_cell_packed": ops,
                             "aten_ops_per_cell_loop": ops_loop, "ratio": ops / ops_loop})
        for k in ks:
            n = max(k, (n_packed // k) * k)
            sel = [int(i) for i in idx[:n]]
            t, vals = timed(lambda: run_packed(sel, proxies, k, x, y), args.repeats)
            cps = n / t[0]
            mem = memory_per_candidate(proxies, k)
            rows.append({
                "group": group, "K": k, "cells": int(n), "packed_cells_per_s": cps,
                "packed_s_median": t[0], "packed_s_min": t[1], "packed_s_max": t[2],
                "loop_cells_per_s": loop_cps, "loop_s_median": t_loop[0], "speedup": cps / loop_cps,
                "peak_mem_per_cell_MB": mem / 1e6, "timed_cells": sel,
            })
            timed_runs.append((group, k, sel, vals, loop_idx, loop_vals))
            print(f"  K={k:4d}: {cps:8.2f} cells/s  x{cps / loop_cps:5.2f}  {mem / 1e6:8.1f} MB/cell",
                  flush=True)
    meta = {
        "git": git_sha(), "cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__,
        "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M"),
        "batch": 64, "dataset": "cifar10 (bundled images)", "quick": args.quick,
        "load_average_at_end": os.getloadavg(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    data = {"meta": meta, "rows": rows, "ops": ops_rows, "repeats": args.repeats}
    out.with_suffix(".json").write_text(json.dumps(data, indent=1))
    # verification of every timed score, after the timing (it does not slow the timed runs)
    refs: dict = {}
    ver = {"git": meta["git"], "date": None, "of": "the timed scores", "runs": []}
    for group, k, sel, vals, loop_idx, loop_vals in timed_runs:
        proxies = GROUPS[group]
        for n, i in enumerate(loop_idx):  # the timed loop is the per-model float32 reference
            refs.setdefault((int(i), "ref32"), {}).update(
                {p: float(loop_vals[p][n]) for p in proxies})
        res = verify_timed(sel, proxies, k, vals, x, y, refs)
        ver["runs"].append({"group": group, "K": k, "cells": len(sel), **res})
        print(f"verified {group} K={k}: {res['pairs']} pairs, {len(res['failures'])} failing",
              flush=True)
    ver["date"] = time.strftime("%Y-%m-%d %H:%M")
    data["verification"] = ver
    out.with_suffix(".json").write_text(json.dumps(data, indent=1))
    finish(data, out)


def verify_stored(data: dict, out: Path) -> dict:
    """Re-run (untimed) the packed engine on the stored run's cells and K and verify them."""
    from zcfast.scoring import git_sha
    from zcfast.spaces import nb201

    x, y = batch()
    refs: dict = {}
    plan = QUICK if data["meta"].get("quick") else FULL
    ver = {"git": git_sha(), "date": None, "runs": [],
           "of": "the stored run's cells and K, re-scored untimed by the engine at this git SHA"}
    for r in data["rows"]:
        group, k = r["group"], r["K"]
        proxies = GROUPS[group]
        sel = r.get("timed_cells") or [int(i) for i in nb201.sample(plan[group][1], seed=7)[: r["cells"]]]
        vals = run_packed(sel, proxies, k, x, y)
        res = verify_timed(sel, proxies, k, vals, x, y, refs)
        ver["runs"].append({"group": group, "K": k, "cells": len(sel), **res})
        print(f"verified {group} K={k}: {res['pairs']} pairs, {len(res['failures'])} failing",
              flush=True)
    ver["date"] = time.strftime("%Y-%m-%d %H:%M")
    return ver


def finish(data: dict, out: Path) -> None:
    write_report(data, out)
    ver = data.get("verification")
    if ver is None:
        raise SystemExit("these results carry no verification: run with --verify-only")
    bad = sum(len(r["failures"]) for r in ver["runs"])
    if bad:
        raise SystemExit(f"{bad} packed scores fail the float32 criterion (see the report)")


def write_report(data: dict, out: Path) -> None:
    """Markdown report (verification, throughput, ops, targets) from the JSON results."""
    meta, rows, ops_rows = data["meta"], data["rows"], data["ops"]
    ver = data.get("verification")
    lines = [
        "# Packed engine vs per-model loop (CPU)", "",
        f"git `{meta['git']}`, {meta['cpu']}, {meta['threads']} threads, torch {meta['torch']}, "
        f"{meta['date']}; batch 64 (synflow: batch 1, float64); median of {data['repeats']} runs; "
        f"load average at the end {tuple(round(v, 2) for v in meta['load_average_at_end'])}.", "",
        "The loop is the per-model reference as the paper runs it: one model built per cell and",
        "one pass per proxy. Packed K=1 already shares passes between proxies and skips the",
        "module building; K>1 adds the packing itself.", "",
        "## Verification", "",
    ]
    if ver is None:
        lines += ["**Not verified**: these results predate the verification of every timed score "
                  "(run `python bench/bench_packed.py --verify-only`).", ""]
    else:
        total = sum(r["pairs"] for r in ver["runs"])
        bad = [f for r in ver["runs"] for f in r["failures"]]
        same = ver["git"] == meta["git"]
        lines += [
            f"Every packed score of every timed cell at every K ({total} (cell, proxy) pairs) was "
            "judged against the per-model reference with the float32 criterion of "
            "docs/engine.md (`zcfast/batched/verify.py`): |packed32 - ref64| <= 32 x "
            "max(|ref32 - ref64|, |ref32' - ref64|) + 16 ulps, on float32's own ReLU branch "
            "where a near-tie ReLU went the other way; synflow (float64 in both) to 1e-9, "
            "params and flops exactly. "
            + (f"Verified: {ver['of']} (git `{ver['git']}`, {ver['date']})."
               if same else
               f"Verified: {ver['of']} (git `{ver['git']}`, {ver['date']}); the timings below are "
               f"from git `{meta['git']}`."), "",
            f"**{len(bad)} failing pairs.**" if bad else f"**All {total} pairs pass.**", "",
            "| proxy group | K | cells | fast | float64 | branch | exact | FAIL | max rel. "
            "difference to per-model float32 |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in ver["runs"]:
            c: dict = {}
            for counts in r["verdicts"].values():
                for how, n in counts.items():
                    c[how] = c.get(how, 0) + n
            lines.append(f"| {r['group']} | {r['K']} | {r['cells']} | {c.get('fast', 0)} | "
                         f"{c.get('float64', 0)} | {c.get('branch', 0)} | {c.get('exact', 0)} | "
                         f"{c.get('FAIL', 0)} | " + ", ".join(
                             f"{p} {e:.1e}" for p, e in r["max_rel_diff_vs_ref32"].items()) + " |")
        lines += ["", "fast: within 16 ulps of the per-model float32 score (the bound then holds "
                  "whatever float64 says); float64: within the bound; branch: within the bound "
                  "against float64 on float32's ReLU masks; exact: counts equal."]
        lines += [f"- FAIL: {f}" for f in bad]
        lines.append("")
    lines += [
        "## Throughput and memory", "",
        "| proxy group | K | packed cells/s | loop cells/s | speedup | peak MB/cell |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['group']} | {r['K']} | {r['packed_cells_per_s']:.2f} | "
                     f"{r['loop_cells_per_s']:.2f} | {r['speedup']:.2f}x | "
                     f"{r['peak_mem_per_cell_MB']:.0f} |")
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

    lines += ["", "## Targets (docs/engine.md, performance targets)", ""]
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
