"""Reduced precision: speed and fidelity per proxy group (docs/performance.md, precision).

    flock /work/.compute.lock flock /work/.compute2.lock python bench/study_precision.py --cells 100

Scores ``--cells`` NB201 cells (sampled with a fixed seed) on the bundled CIFAR-10 minibatch
(batch 64, the paper's setting) with the packed engine in fp32 and in each reduced precision
(bf16 on any device, tf32 on CUDA only), timing each proxy group in the same run. Reports per
proxy: Spearman between the reduced-precision and the fp32 scores, Spearman of each with the
200-epoch test accuracy, and the group's speed ratio; a precision is recommended for a proxy
only where the first Spearman is at least 0.99. synflow is float64 whatever the precision and
is not run. Results: bench/results/precision.{md,json}; raw scores are kept per (precision,
group) in bench/results/precision_raw/ so that an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GROUPS = {
    "one_backward": ("grad_norm", "snip", "plain", "fisher"),
    "grasp": ("grasp",),
    "jacob_cov": ("jacob_cov",),
    "nwot": ("nwot",),
}
THRESHOLD = 0.99
# --fp32-from: the file's fp32 scores may come from an earlier engine whose operators were
# reordered (float32 rounding); they must agree with this engine's within this relative tolerance,
# and the largest difference seen is printed in the report
CHECK_RTOL = 1e-2
# sums that cancel (plain = sum of g*w; grasp's Hessian-gradient term) move more under a
# reordering: plain 1.2e-2 measured between the engine of 7db9dda and 0a96de9
CHECK_RTOL_CANCELLING = {"plain": 1e-1, "grasp": 1e-1}


def _fp32_file(path: str, cells: int, proxies: list):
    """The first ``cells`` rows of a zcfast score file with the study's settings, as a DataFrame
    indexed by NB201 index (its meta must say CIFAR-10, batch 64, seed 0, fp32)."""
    from zcfast.scoring import read_scores

    df, meta = read_scores(path)
    want = {"dataset": "cifar10", "batch_size": 64, "seed": 0, "images": "cifar10-subset",
            "flavour": "paper"}
    for k, v in want.items():
        if meta.get(k) != v:
            raise SystemExit(f"{path}: {k} is {meta.get(k)!r}, the study needs {v!r}")
    if meta.get("precision") not in (None, "fp32"):
        raise SystemExit(f"{path}: precision {meta.get('precision')!r}, not fp32")
    missing = [p for p in proxies if p not in df.columns]
    if missing:
        raise SystemExit(f"{path} lacks {missing}")
    if len(df) < cells:
        raise SystemExit(f"{path} has {len(df)} cells, fewer than --cells {cells}")
    return df.iloc[:cells]


def main(argv=None) -> int:
    import tempfile

    import numpy as np
    import torch
    from host_overhead import cpu_model, export
    from scipy.stats import spearmanr

    # the engine of the commit, exported: edits made while this runs do not leak in
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    tmp = tempfile.mkdtemp()
    export(head, os.path.join(tmp, "src"))
    sys.path.insert(0, os.path.join(tmp, "src"))
    from zcfast.batched import iter_packed_space
    from zcfast.spaces import get_space, nb201

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=100)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=None, help="candidates per pass (default: auto)")
    ap.add_argument("--groups", default=",".join(GROUPS))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "precision"))
    ap.add_argument("--fp32-from", default=None, metavar="CSV",
                    help="take the fp32 scores from this zcfast score file (NB201, CIFAR-10, "
                         "batch 64, seed 0) instead of scoring them: the cells are its first "
                         "--cells rows; the first --check cells are rescored in fp32 here and "
                         "must match the file; fidelity only, no speed column")
    ap.add_argument("--check", type=int, default=16,
                    help="with --fp32-from: cells rescored in fp32 to check the file")
    a = ap.parse_args(argv)
    if a.cells < 3:
        ap.error(f"--cells must be at least 3, got {a.cells}")
    groups = [g for g in a.groups.split(",") if g]
    bad = [g for g in groups if g not in GROUPS]
    if bad:
        ap.error(f"unknown group(s) {bad}: choose from {sorted(GROUPS)}")
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    precisions = ["fp32", "bf16"] + (["tf32"] if dev.type == "cuda" else [])
    sp = get_space("nb201")
    given = None
    if a.fp32_from:
        given = _fp32_file(a.fp32_from, a.cells, [p for g in groups for p in GROUPS[g]])
        idx = [int(i) for i in given.index]
    else:
        idx = np.sort(nb201.sample_distinct(a.cells, seed=0)) \
            if hasattr(nb201, "sample_distinct") \
            else np.random.default_rng(0).choice(nb201.NUM_ARCHS, a.cells, replace=False)
        idx = [int(i) for i in idx]
    codes = [nb201.code_of_index(i) for i in idx]
    mb = sp.minibatch("cifar10", 64, 0)
    x, y = mb.x.to(dev), mb.y.to(dev)
    acc = sp.targets("cifar10").table["test_acc"].reindex(idx).to_numpy(np.float64)
    raw_dir = a.out + "_raw"
    os.makedirs(raw_dir, exist_ok=True)
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True).stdout.strip()
    def score(cells, proxies, prec) -> dict:
        """{proxy: [score per cell]} by the packed engine at precision ``prec``."""
        out = {p: [] for p in proxies}
        for _, res in iter_packed_space("nb201", cells, list(proxies), x, y, dataset="cifar10",
                                        device=dev, chunk=a.chunk, options={"precision": prec}):
            for p in proxies:
                out[p] += [float(v) for v in res[p]]
        return out

    runs = {}
    tag = "" if given is None else "_given"
    if given is not None:  # the file's fp32 scores, after checking a few cells against this engine
        check = codes[: a.check]
        got = score(check, [p for g in groups for p in GROUPS[g]], "fp32")
        drift = {}  # the file's fp32 against this engine's: largest relative difference
        for p, v in got.items():
            want = given[p].to_numpy(np.float64)[: len(check)]
            rtol = CHECK_RTOL_CANCELLING.get(p, CHECK_RTOL)
            if not np.allclose(v, want, rtol=rtol, atol=0.0, equal_nan=True):
                raise SystemExit(f"{a.fp32_from}: its fp32 {p} differs from this engine's on the "
                                 f"first {len(check)} cells (max relative difference "
                                 f"{np.nanmax(np.abs(np.asarray(v) / want - 1)):.2e})")
            ok = np.isfinite(want) & (want != 0)
            drift[p] = float(np.max(np.abs(np.asarray(v)[ok] / want[ok] - 1))) if ok.any() else 0.0
        print(f"fp32 scores of {a.fp32_from} reproduced on {len(check)} cells: {drift}", flush=True)
        for g in groups:
            runs[(g, "fp32")] = {"seconds": float("nan"), "git": "file",
                                 "scores": {p: given[p].tolist() for p in GROUPS[g]}}
    for g in groups:
        for prec in precisions:
            if (g, prec) in runs:
                continue
            path = os.path.join(raw_dir, f"{g}_{prec}_{a.cells}_{dev.type}{tag}.json")
            if os.path.exists(path):
                with open(path) as f:
                    runs[(g, prec)] = json.load(f)
                continue
            t0 = time.perf_counter()
            scores = score(codes, GROUPS[g], prec)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            runs[(g, prec)] = {"seconds": dt, "scores": scores, "git": sha}
            with open(path, "w") as f:
                json.dump(runs[(g, prec)], f)
            print(f"{g} {prec}: {a.cells / dt:.2f} cells/s", flush=True)

    def rho(u, v):
        u, v = np.asarray(u), np.asarray(v)
        ok = np.isfinite(u) & np.isfinite(v)
        return float(spearmanr(u[ok], v[ok])[0]) if ok.sum() > 2 else float("nan")

    table = []
    for g in groups:
        base = runs[(g, "fp32")]
        for prec in precisions[1:]:
            r = runs[(g, prec)]
            speed = base["seconds"] / r["seconds"]  # NaN with --fp32-from: not timed
            for p in GROUPS[g]:
                fid = rho(r["scores"][p], base["scores"][p])
                table.append({"group": g, "proxy": p, "precision": prec, "speedup": speed,
                              "spearman_vs_fp32": fid,
                              "spearman_acc_fp32": rho(base["scores"][p], acc),
                              "spearman_acc_reduced": rho(r["scores"][p], acc),
                              "recommended": bool(fid >= THRESHOLD)})
    meta = {"git": sha, "cpu": cpu_model(), "device": str(dev), "threads": a.threads,
            "torch": torch.__version__, "cells": a.cells,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load": os.getloadavg()}
    with open(a.out + ".json", "w") as f:
        json.dump({"meta": meta, "table": table,
                   "seconds": {f"{g}/{p}": runs[(g, p)]["seconds"] for g, p in runs}}, f, indent=1)
    lines = [
        "# Reduced precision: speed and fidelity per proxy",
        "",
        f"git `{sha}`, {meta['cpu']}, device {dev}, {a.threads} threads, torch {meta['torch']}, "
        f"{meta['date']}, load average at the end {tuple(round(v, 2) for v in meta['load'])}. "
        + (f"{a.cells} NB201 cells (seed 0)" if given is None else
         f"the first {a.cells} NB201 cells of {os.path.relpath(a.fp32_from, ROOT)}, whose fp32 "
         f"scores are the reference (this engine's fp32 reproduced them on the first {a.check} "
         "cells to a largest relative difference of "
         + ", ".join(f"{p} {d:.1e}" for p, d in drift.items())
         + "; fidelity only, not timed: the speed column is the smaller table's)") +
        ", bundled CIFAR-10 minibatch of 64, packed engine at its default chunk. Command: "
        f"`python bench/study_precision.py {' '.join(argv if argv is not None else sys.argv[1:])}`"
        + (" (both compute locks held)" if given is None else "")
        + ". Spearman with accuracy: against the 200-epoch "
        f"CIFAR-10 test accuracy. Recommended: Spearman with fp32 at least {THRESHOLD}.",
        "",
        "| group | proxy | precision | speed vs fp32 | Spearman vs fp32 | Spearman acc. fp32 "
        "| acc. reduced | recommended |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for t in table:
        speed = "not timed" if math.isnan(t["speedup"]) else f"{t['speedup']:.2f}x"
        lines.append(f"| {t['group']} | {t['proxy']} | {t['precision']} | {speed} | "
                     f"{t['spearman_vs_fp32']:.4f} | {t['spearman_acc_fp32']:.3f} | "
                     f"{t['spearman_acc_reduced']:.3f} | {'yes' if t['recommended'] else 'no'} |")
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
