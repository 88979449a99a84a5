"""Peak memory of packed passes, measured on this CPU, and the model auto_chunk uses.

Question: how many bytes does one more candidate add to a packed chunk's peak, per pass of the
engine (loss pass with or without fisher / grasp, jacobian pass, NASWOT forward, synflow), and
does the model of zcfast/batched/memory.py predict the measured peak of other batch sizes,
image sizes, chunk sizes and proxy combinations within 30%?

    flock /work/.compute.lock nice -n 5 python bench/memory_model.py      # ~10-20 min, 2 cores
    python bench/memory_model.py --resume                                  # continue a run

Every measurement is the peak of tensor memory while one PackedNB201(K cells).compute(proxies)
runs, engine construction included (zcfast.batched.memory.measure_peak_bytes: the torch
profiler's allocation events), on a fixed sample of random NB201 cells. The coefficients are
fitted (non-negative least squares on relative error) to the FIT configurations of the
single-pass groups; the CHECK configurations and the combined groups are held out and only
predicted. Writes bench/results/memory_model.{json,md} (git SHA, CPU model, date), saving after
every measurement; prints the COEFFS / RETAINED_NWOT literals for zcfast/batched/memory.py.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zcfast.batched import memory as mm  # noqa: E402

SIX = ["grad_norm", "snip", "grasp", "fisher", "jacob_cov", "synflow"]
ALL = ["grad_norm", "snip", "plain", "grasp", "fisher", "jacob_cov", "synflow", "nwot", "params",
       "flops", "l2_norm"]
# single-pass groups: one per model term
FIT_GROUPS = {
    "loss": ["grad_norm", "snip"],
    "loss+fisher": ["grad_norm", "fisher"],
    "loss+grasp": ["grasp"],
    "loss+fisher+grasp": ["grasp", "fisher"],
    "jacobian": ["jacob_cov"],
    "nwot": ["nwot"],
    "synflow": ["synflow"],
    "l2": ["l2_norm"],
}
RETAIN_GROUPS = {"loss, nwot": ["snip", "nwot"], "jacobian, nwot": ["jacob_cov", "nwot"]}
CHECK_GROUPS = {"six (paper)": SIX, "nwot, synflow": ["nwot", "synflow"], "all": ALL,
                "snip, grad_norm, jacob_cov": ["snip", "grad_norm", "jacob_cov"]}
# (batch, input size, K)
FIT_CONFIGS = [(4, 16, 2), (4, 16, 6), (16, 16, 2), (16, 16, 6), (8, 32, 2), (8, 32, 4)]
CHECK_CONFIGS = [(2, 16, 8), (32, 32, 3), (64, 32, 2)]
CELL_SEED = 0
N_CELLS = 8


def git_sha() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cells(k: int) -> list[int]:
    from zcfast.spaces import nb201

    return [int(i) for i in nb201.sample(N_CELLS, seed=CELL_SEED)][:k]


def measure(proxies, b: int, size: int, k: int, idx=None) -> int:
    """Peak tensor bytes of one packed chunk (engine construction included)."""
    from zcfast.batched.engine import PackedNB201, codes_of
    from zcfast.data import image_source

    ds = "ImageNet16-120" if size == 16 else "cifar10"
    x, y = image_source(ds).minibatch(b, 0)
    ncls = 120 if size == 16 else 10
    codes = codes_of(cells(k) if idx is None else idx)
    return mm.measure_peak_bytes(lambda: PackedNB201(codes, ncls, input_size=size).compute(x, y, proxies))


def fit(rows) -> tuple[dict, float]:
    """Non-negative least squares on relative residuals: (coeffs, retained)."""
    from scipy.optimize import nnls

    coeffs = {}
    for g in FIT_GROUPS:
        rs = [r for r in rows if r["group"] == g and r["role"] == "fit"]
        a_mat, rhs = [], []
        for r in rs:
            s = (r["size"] / 32.0) ** 2
            act = r["k"] * s if g == "synflow" else r["k"] * r["batch"] * s
            a_mat.append(np.array([act, r["k"], 1.0]) / r["measured"])
            rhs.append(1.0)
        sol, _ = nnls(np.array(a_mat), np.array(rhs))
        coeffs[g] = tuple(float(v) for v in sol)
    # r: the extra of the combined groups over their own pass
    a_mat, rhs = [], []
    for g, proxies in RETAIN_GROUPS.items():
        for r in (r for r in rows if r["group"] == g and r["role"] == "fit"):
            base = mm.peak_bytes(proxies, r["batch"], r["size"], r["k"], coeffs, retained=0.0)
            s = (r["size"] / 32.0) ** 2
            a_mat.append([r["k"] * r["batch"] * s / r["measured"]])
            rhs.append(1.0 - base / r["measured"])
    sol, _ = nnls(np.array(a_mat), np.array(rhs))
    return coeffs, float(sol[0])


def markdown(res: dict) -> str:
    m = res["meta"]
    L = ["# Peak memory of packed passes: measured vs model (CPU)", "",
         f"measured at git `{m.get('measured_git_sha', m['git_sha'])}` on "
         f"{m.get('measured_date_utc', m['date_utc'])} UTC, model fitted at git `{m['git_sha']}` "
         f"on {m['date_utc']} UTC; {m['cpu']}, {m['threads']} thread(s), torch {m['torch']}; "
         f"load average at the end {m.get('loadavg_end')}. Measured under the shared compute "
         "lock (no other measurement running).", "",
         "Peak tensor bytes while `PackedNB201(K cells).compute(proxies)` runs (engine "
         "construction included), from the torch profiler's allocation events "
         "(`zcfast.batched.memory.measure_peak_bytes`); cells: the first K of "
         f"`nb201.sample({N_CELLS}, seed={CELL_SEED})`. Images: 16x16 = ImageNet16-120 stand-in, "
         "32x32 = CIFAR-10. Model: `zcfast/batched/memory.py`, fitted to the `fit` rows of the "
         "single-pass groups (and the retained NASWOT inputs to the `loss, nwot` / `jacobian, "
         "nwot` fit rows); every `check` row is held out and only predicted.", "",
         "## Fitted coefficients", "",
         "| pass | a: bytes per sample per candidate at 32x32 | c: bytes per candidate | f: bytes per pass |",
         "|---|---:|---:|---:|"]
    for g, (a, c, f) in res["coeffs"].items():
        L.append(f"| {g} | {a / 1e6:.3f} MB | {c / 1e6:.3f} MB | {f / 1e6:.2f} MB |")
    L += ["", f"Retained NASWOT inputs r: {res['retained_nwot'] / 1e6:.3f} MB per sample per "
          "candidate at 32x32.", "",
          "At the GPU benchmark's setting (batch 64, 32x32), predicted bytes per candidate "
          "(slope in K):", ""]
    for name, v in res["per_candidate_b64"].items():
        L.append(f"- {name}: {v / 1e9:.3f} GB")
    L += ["", "## Measured vs predicted", "",
          "| group | role | batch | size | K | measured MB | predicted MB | predicted / measured |",
          "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        if "predicted" in r:
            L.append(f"| {r['group']} | {r['role']} | {r['batch']} | {r['size']} | {r['k']} | "
                     f"{r['measured'] / 1e6:.1f} | {r['predicted'] / 1e6:.1f} | {r['ratio']:.3f} |")
    chk = [r["ratio"] for r in res["rows"] if r["role"] == "check" and "ratio" in r]
    fitr = [r["ratio"] for r in res["rows"] if r["role"] == "fit" and "ratio" in r]
    L += ["", f"Held-out rows: {len(chk)}, predicted/measured from {min(chk):.3f} to "
          f"{max(chk):.3f}; fit rows: {min(fitr):.3f} to {max(fitr):.3f}."]
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "memory_model"))
    ap.add_argument("--resume", action="store_true", help="keep measurements already in --out.json")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="tiny configurations (checks the script)")
    args = ap.parse_args(argv)
    if args.quick:
        FIT_CONFIGS[:] = [(2, 16, 1), (2, 16, 2), (4, 16, 1)]
        CHECK_CONFIGS[:] = [(2, 16, 3)]
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    res = {"rows": []}
    if args.resume and out.with_suffix(".json").exists():
        res = json.loads(out.with_suffix(".json").read_text())
    old = res.get("meta", {}) if res["rows"] else {}
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    res["meta"] = {"git_sha": git_sha(), "measured_git_sha": old.get("measured_git_sha", git_sha()),
                   "measured_date_utc": old.get("measured_date_utc", now),
                   "cpu": cpu_model(), "threads": args.threads,
                   "torch": torch.__version__, "python": platform.python_version(),
                   "date_utc": now,
                   "cells": f"first K of nb201.sample({N_CELLS}, seed={CELL_SEED})",
                   "method": "torch profiler allocation events (zcfast.batched.memory.measure_peak_bytes)"}
    done = {(r["group"], r["batch"], r["size"], r["k"]) for r in res["rows"]}
    plan = ([(g, p, c, "fit") for g, p in {**FIT_GROUPS, **RETAIN_GROUPS}.items() for c in FIT_CONFIGS]
            + [(g, p, c, "check") for g, p in {**FIT_GROUPS, **RETAIN_GROUPS, **CHECK_GROUPS}.items()
               for c in CHECK_CONFIGS]
            + [(g, p, c, "check") for g, p in CHECK_GROUPS.items() for c in FIT_CONFIGS])

    def save():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(res, indent=1))

    for g, proxies, (b, size, k), role in plan:
        if (g, b, size, k) in done:
            continue
        t = time.perf_counter()
        peak = measure(proxies, b, size, k)
        res["rows"].append({"group": g, "proxies": proxies, "role": role, "batch": b, "size": size,
                            "k": k, "measured": peak, "seconds": round(time.perf_counter() - t, 1)})
        done.add((g, b, size, k))
        print(f"{g:28s} {role:5s} B={b:3d} S={size} K={k}: {peak / 1e6:9.1f} MB "
              f"({time.perf_counter() - t:.1f} s)", flush=True)
        save()
    coeffs, retained = fit(res["rows"])
    res["coeffs"], res["retained_nwot"] = coeffs, retained
    for r in res["rows"]:
        r["predicted"] = mm.peak_bytes(r["proxies"], r["batch"], r["size"], r["k"], coeffs, retained)
        r["ratio"] = r["predicted"] / r["measured"]
    res["per_candidate_b64"] = {
        name: mm.peak_bytes(p, 64, 32, 2, coeffs, retained) - mm.peak_bytes(p, 64, 32, 1, coeffs, retained)
        for name, p in {"six (paper)": SIX, "all": ALL, "synflow": ["synflow"],
                        "loss (grad_norm, snip)": ["grad_norm", "snip"]}.items()}
    res["meta"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    save()
    out.with_suffix(".md").write_text(markdown(res))
    print("COEFFS = {")
    for g, (a, c, f) in coeffs.items():
        print(f'    "{g}": ({a:.6g}, {c:.6g}, {f:.6g}),')
    print("}")
    print(f"RETAINED_NWOT = {retained:.6g}")
    bad = [r for r in res["rows"] if abs(r["ratio"] - 1) > 0.3]
    for r in bad:
        print(f"outside 30%: {r['group']} {r['role']} B={r['batch']} S={r['size']} K={r['k']}: "
              f"{r['ratio']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
