"""Peak memory of packed passes, measured on this CPU, and the model auto_chunk uses.

Question: how many bytes does a candidate add to a packed chunk's peak, per pass of the engine
(loss pass with or without fisher / grasp, jacobian pass, NASWOT forward, synflow) and per
operation of its cell, and does the model of zcfast/batched/memory.py predict the measured peak
of cells, batch sizes, image sizes, chunk sizes and proxy combinations it was not fitted to
within 30%?

    OMP_NUM_THREADS=1 flock /work/.compute2.lock nice -n 5 python bench/memory_model.py  # 1 thread, ~15 min
    python bench/memory_model.py --resume                                  # continue a run

Every measurement is the peak of tensor memory while one PackedNB201(cells).compute(proxies)
runs, engine construction included (zcfast.batched.memory.measure_peak_bytes: the torch
profiler's allocation events). Fit rows: 25 single cells (five one-operation cells and 20
random ones) at two batch sizes, and chunks of the first K of nb201.sample(8, seed=0). The
coefficients are fitted (non-negative least squares on relative error) to the fit rows of the
single-pass groups; check rows (other batch / image / chunk sizes, proxy combinations, and
chunks of nb201.sample(8, seed=123), cells no fit row contains) are only predicted. Writes bench/results/memory_model.{json,md} (git SHA, CPU model, date), saving after
every measurement; prints the COEFFS literal for zcfast/batched/memory.py.
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
from zcfast.scoring import cpu_name  # noqa: E402

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
# NASWOT read during a gradient pass (nothing kept beyond that pass's own tensors: only checked)
RETAIN_GROUPS = {"loss, nwot": ["snip", "nwot"], "jacobian, nwot": ["jacob_cov", "nwot"]}
CHECK_GROUPS = {"six (paper)": SIX, "nwot, synflow": ["nwot", "synflow"], "all": ALL,
                "snip, grad_norm, jacob_cov": ["snip", "grad_norm", "jacob_cov"]}
# (batch, input size, K): chunks of the first K of nb201.sample(N_CELLS, seed=CELL_SEED)
FIT_CONFIGS = [(4, 16, 2), (4, 16, 6), (16, 16, 2), (16, 16, 6), (8, 32, 2), (8, 32, 4)]
CHECK_CONFIGS = [(2, 16, 8), (32, 32, 3), (64, 32, 2)]
CELL_SEED = 0
N_CELLS = 8
# single cells (batch, input size) for the per-operation terms
SINGLE_CONFIGS = [(4, 16), (16, 16)]
ONE_OP = [f"|{op}~0|+|{op}~0|{op}~1|+|{op}~0|{op}~1|{op}~2|" for op in
          ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")]
SINGLE_SEED, N_SINGLE = 1, 20
# held-out chunks: cells no fit row contains
HELD_SEED = 123
HELD_CONFIGS = [(2, 16, 8), (8, 32, 4), (64, 32, 2)]


def git_sha() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cells(k: int, seed: int = CELL_SEED) -> list[int]:
    from zcfast.spaces import nb201

    return [int(i) for i in nb201.sample(N_CELLS, seed=seed)][:k]


def single_cells() -> list[int]:
    from zcfast.spaces import nb201

    return [nb201.index_of(a) for a in ONE_OP] + [int(i) for i in nb201.sample(N_SINGLE, seed=SINGLE_SEED)]


def measure(proxies, b: int, size: int, idx) -> int:
    """Peak tensor bytes of one packed chunk of the cells ``idx`` (engine construction included)."""
    from zcfast.batched.engine import PackedNB201, codes_of
    from zcfast.data import image_source

    ds = "ImageNet16-120" if size == 16 else "cifar10"
    x, y = image_source(ds).minibatch(b, 0)
    ncls = 120 if size == 16 else 10
    codes = codes_of(idx)
    return mm.measure_peak_bytes(lambda: PackedNB201(codes, ncls, input_size=size).compute(x, y, proxies))


def _xsum(r) -> np.ndarray:
    from zcfast.batched.engine import codes_of

    return mm.features(codes_of(r["cells"])).sum(0)


def fit(rows) -> dict:
    """Non-negative least squares on relative residuals: the coefficients per pass."""
    from scipy.optimize import nnls

    coeffs = {}
    for g in FIT_GROUPS:
        a_mat = []
        for r in (r for r in rows if r["group"] == g and r["role"] == "fit"):
            s = (r["size"] / 32.0) ** 2
            x = _xsum(r)
            act = x * s * (1.0 if g == "synflow" else r["batch"])
            a_mat.append(np.concatenate([act, x, [1.0]]) / r["measured"])
        sol, _ = nnls(np.array(a_mat), np.ones(len(a_mat)))
        n = len(mm.FEATURES)
        coeffs[g] = ([float(v) for v in sol[:n]], [float(v) for v in sol[n : 2 * n]], float(sol[-1]))
    return coeffs


def _codes(r):
    from zcfast.batched.engine import codes_of

    return codes_of(r["cells"])


def _vec(v) -> str:
    return " / ".join(f"{x / 1e6:.3f}" for x in v)


def markdown(res: dict) -> str:
    m = res["meta"]
    L = ["# Peak memory of packed passes: measured vs model (CPU)", "",
         f"Measured at git `{m.get('measured_git_sha', m['git_sha'])}` from "
         f"{m.get('measured_date_utc', m['date_utc'])} UTC, model fitted at git `{m['git_sha']}` "
         f"on {m['date_utc']} UTC; {m['cpu']}, {m['threads']} thread(s), torch {m['torch']}; "
         f"load average at the end of the measuring {m.get('loadavg_end')}. Measured under the "
         "1-thread compute lock; the peaks are tensor bytes, which the machine's load does not "
         "change.", "",
         "Peak tensor bytes while `PackedNB201(cells).compute(proxies)` runs (engine construction "
         "included), from the torch profiler's allocation events "
         "(`zcfast.batched.memory.measure_peak_bytes`). Images: 16x16 = ImageNet16-120 stand-in, "
         "32x32 = CIFAR-10. Cells: `single` = one cell (the five one-operation cells and "
         f"`nb201.sample({N_SINGLE}, seed={SINGLE_SEED})`), `chunk` = the first K of "
         f"`nb201.sample({N_CELLS}, seed={CELL_SEED})`, `held-out` = the first K of "
         f"`nb201.sample({N_CELLS}, seed={HELD_SEED})` (no fit row contains them). Model: "
         "`zcfast/batched/memory.py`, fitted to the `fit` rows of the single-pass groups; every "
         "`check` row is only predicted (NASWOT read during a gradient pass keeps nothing "
         "beyond it: the `loss, nwot` and `jacobian, nwot` rows check that).", "",
         "## Fitted coefficients (MB, over the features " + " / ".join(mm.FEATURES) + ")", "",
         "| pass | a: per sample per candidate at 32x32 | c: per candidate | f: per pass |",
         "|---|---|---|---:|"]
    for g, (a, c, f) in res["coeffs"].items():
        L.append(f"| {g} | {_vec(a)} | {_vec(c)} | {f / 1e6:.2f} |")
    L += ["", "At the GPU benchmark's setting (batch 64, 32x32), predicted bytes per candidate for the "
          "search space's mean cell (slope in K):", ""]
    for name, v in res["per_candidate_b64"].items():
        L.append(f"- {name}: {v / 1e9:.3f} GB")
    chk = [r["ratio"] for r in res["rows"] if r["role"] == "check"]
    held = [r["ratio"] for r in res["rows"] if r.get("cells_from") == "held-out"]
    fitr = [r["ratio"] for r in res["rows"] if r["role"] == "fit"]
    L += ["", f"Check rows: {len(chk)}, predicted / measured from {min(chk):.3f} to {max(chk):.3f} "
          f"(held-out cells: {min(held):.3f} to {max(held):.3f}); fit rows: {len(fitr)}, "
          f"{min(fitr):.3f} to {max(fitr):.3f}.", "",
          "## Measured vs predicted (chunks; the single-cell fit rows are in the JSON file)", "",
          "| group | role | cells | batch | size | K | measured MB | predicted MB | predicted / measured |",
          "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        if r.get("cells_from") != "single":
            L.append(f"| {r['group']} | {r['role']} | {r['cells_from']} | {r['batch']} | {r['size']} | "
                     f"{len(r['cells'])} | {r['measured'] / 1e6:.1f} | {r['predicted'] / 1e6:.1f} | "
                     f"{r['ratio']:.3f} |")
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
        SINGLE_CONFIGS[:] = [(2, 16)]
        HELD_CONFIGS[:] = [(2, 16, 2)]
        globals()["N_SINGLE"] = 2
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    res = {"rows": []}
    if args.resume and out.with_suffix(".json").exists():
        res = json.loads(out.with_suffix(".json").read_text())
    for r in res["rows"]:  # rows of the first run name their cells implicitly
        r.setdefault("cells", cells(r["k"]))
        r.setdefault("cells_from", "chunk")
    old = res.get("meta", {}) if res["rows"] else {}
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    res["meta"] = {"git_sha": git_sha(), "measured_git_sha": old.get("measured_git_sha", git_sha()),
                   "measured_date_utc": old.get("measured_date_utc", now),
                   "cpu": cpu_name(), "threads": args.threads,
                   "torch": torch.__version__, "python": platform.python_version(),
                   "date_utc": now,
                   "method": "torch profiler allocation events (zcfast.batched.memory.measure_peak_bytes)"}
    if old.get("measured_git_sha") and old.get("measured_git_sha") != git_sha():
        res["meta"]["measured_git_sha"] = f"{old['measured_git_sha']} and {git_sha()}"
    done = {(r["group"], r["batch"], r["size"], tuple(r["cells"])) for r in res["rows"]}
    single, every = single_cells(), {**FIT_GROUPS, **RETAIN_GROUPS, **CHECK_GROUPS}
    plan = ([(g, p, b, sz, [c], "fit", "single") for g, p in FIT_GROUPS.items()
             for b, sz in SINGLE_CONFIGS for c in single]
            + [(g, p, b, sz, cells(k), "fit", "chunk") for g, p in FIT_GROUPS.items()
               for b, sz, k in FIT_CONFIGS]
            + [(g, p, b, sz, cells(k), "check", "chunk") for g, p in RETAIN_GROUPS.items()
               for b, sz, k in FIT_CONFIGS]
            + [(g, p, b, sz, cells(k), "check", "chunk") for g, p in every.items()
               for b, sz, k in CHECK_CONFIGS]
            + [(g, p, b, sz, cells(k), "check", "chunk") for g, p in CHECK_GROUPS.items()
               for b, sz, k in FIT_CONFIGS]
            + [(g, p, b, sz, cells(k, HELD_SEED), "check", "held-out") for g, p in every.items()
               for b, sz, k in HELD_CONFIGS])

    def save():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(res, indent=1))

    measured = 0
    for g, proxies, b, size, idx, role, src in plan:
        if (g, b, size, tuple(idx)) in done:
            continue
        measured += 1
        t = time.perf_counter()
        peak = measure(proxies, b, size, idx)
        res["rows"].append({"group": g, "proxies": proxies, "role": role, "cells_from": src,
                            "cells": idx, "batch": b, "size": size, "k": len(idx), "measured": peak,
                            "seconds": round(time.perf_counter() - t, 1)})
        done.add((g, b, size, tuple(idx)))
        print(f"{g:28s} {role:5s} {src:8s} B={b:3d} S={size} K={len(idx)}: {peak / 1e6:9.1f} MB "
              f"({time.perf_counter() - t:.1f} s)", flush=True)
        save()
    coeffs = fit(res["rows"])
    res["coeffs"] = coeffs
    res.pop("retained_nwot", None)
    for r in res["rows"]:
        r["predicted"] = mm.peak_bytes(r["proxies"], r["batch"], r["size"], codes=_codes(r),
                                       coeffs=coeffs)
        r["ratio"] = r["predicted"] / r["measured"]
    res["per_candidate_b64"] = {
        name: (mm.peak_bytes(p, 64, 32, 2, coeffs=coeffs)
               - mm.peak_bytes(p, 64, 32, 1, coeffs=coeffs))
        for name, p in {"six (paper)": SIX, "all": ALL, "synflow": ["synflow"],
                        "loss (grad_norm, snip)": ["grad_norm", "snip"]}.items()}
    if measured:  # the load while measuring (a pure refit keeps the measuring run's)
        res["meta"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    else:
        res["meta"]["loadavg_end"] = old.get("loadavg_end")
    save()
    out.with_suffix(".md").write_text(markdown(res))
    print("COEFFS = {")
    for g, (a, c, f) in coeffs.items():
        print(f'    "{g}": ({[float(f"{v:.6g}") for v in a]}, {[float(f"{v:.6g}") for v in c]}, {f:.6g}),')
    print("}")
    for r in res["rows"]:
        if abs(r["ratio"] - 1) > 0.3:
            print(f"outside 30%: {r['group']} {r['role']} {r['cells_from']} B={r['batch']} "
                  f"S={r['size']} K={r['k']}: {r['ratio']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
