"""Study: hardware-aware zero-cost NAS on NAS-Bench-201 with HW-NAS-Bench (docs/hardware.md).

Questions (answered whatever the outcome):
  1. Estimates: how well do params and flops rank each device's latency and energy (Spearman
     over all cells, per dataset)? How well does a small predictor fitted on N = 20, 50, 100
     measured cells do (held-out Spearman; precision and recall of "within the tight budget"),
     20 draws of the measured cells?
  2. Accuracy under a budget: for each device and CIFAR-10 / CIFAR-100, a tight budget (10th
     percentile of the device's latency) and a loose one (50th percentile): mean test accuracy
     of the best-validation feasible cell after 25, 50 and 100 trained models, 20 seeds, for
     RAND, AE and their +warmup / +move variants, next to the true optimum under the budget (the
     best feasible test accuracy of the table, and the test accuracy of the best-validation
     feasible cell, what training every feasible cell would select).
  3. Two objectives (accuracy, latency): hypervolume curves with and without zero-cost warmup,
     against the hypervolume of the table's own front.
  4. Estimate-driven search: AE+move(24) with the budget applied to an estimate (params / flops
     power laws, ridge fits) and a safety margin 1.0 or 0.9: its accuracy, and how often its
     trained cells and its selected cell break the true budget.

The proxy is synflow (the paper's NB201 networks, weight seed 0) of all cells, read from
bench/results/synflow_all/ (with params and flops), so no network is scored here. Every run is
checked with zcfast.search.verify_runs. Runs are appended to runs/study_hardware/*.jsonl as they
finish (resumable); outputs go to bench/results/hardware.{md,json} and hardware_*.png.

    OMP_NUM_THREADS=1 flock /work/.compute2.lock python bench/study_hardware.py [--seeds 20]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import pandas as pd  # noqa: E402
from scipy.stats import mannwhitneyu, spearmanr  # noqa: E402

from zcfast import hardware as hw  # noqa: E402
from zcfast.data import groundtruth  # noqa: E402
from zcfast.scoring import cpu_name, git_sha  # noqa: E402
from zcfast.search import run_search, verify_runs  # noqa: E402
from zcfast.search.hw import hypervolume, normalisers, pareto_front  # noqa: E402
from zcfast.search.runs import Variant  # noqa: E402

RESULTS = HERE / "results"
SYNFLOW = RESULTS / "synflow_all" / "synflow_params_flops_{ds}.csv"
DATASETS = ("cifar10", "cifar100")
ALL_DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
BUDGET = 100
AT = (25, 50, 100)
PERCENTILES = {"tight": 10, "loose": 50}
W = 1000  # warmup: <= the 1,563 cells of every tight budget
VARIANTS = (Variant("rand"), Variant("rand", warmup=W), Variant("rand", move=10),
            Variant("ae"), Variant("ae", warmup=W), Variant("ae", move=24))
MO_VARIANTS = (Variant("rand"), Variant("rand", warmup=W), Variant("ae"), Variant("ae", warmup=W))
EST_VARIANT = Variant("ae", move=24)
ESTIMATES = ("params:50", "flops:50", "fit:20", "fit:50", "fit:100")
MARGINS = (1.0, 0.9)
FIT_CELLS = (20, 50, 100)


def metrics() -> list:
    return [(d, m) for d in hw.DEVICES for m in hw.AVAILABLE[d]]


class Store:
    """Compact per-run records, one JSONL per part, appended as runs finish (resumable)."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.done = {}
        if path.exists():
            raw = path.read_text()
            if raw and not raw.endswith("\n"):
                raw = raw[: raw.rfind("\n") + 1]
                path.write_text(raw)
            for line in raw.splitlines():
                r = json.loads(line)
                self.done[(r["key"], r["seed"])] = r
        self.f = open(path, "a")

    def get(self, key: str, seed: int):
        return self.done.get((key, seed))

    def put(self, rec: dict) -> None:
        self.f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self.f.flush()
        self.done[(rec["key"], rec["seed"])] = rec


def run_one(store: Store, key: str, seed: int, v: Variant, ds: str, scores, hardware,
            est_scores=None, counters=None) -> dict:
    rec = store.get(key, seed)
    if rec is not None:
        return rec
    try:
        r = run_search(v.algo, ds, BUDGET, v.warmup, v.move, seed, "synflow", scores=scores,
                       hardware=hardware, estimate_scores=est_scores)
    except ValueError as e:  # e.g. an estimate admitting fewer cells than the budget
        rec = {"key": key, "seed": seed, "error": str(e)}
        store.put(rec)
        return rec
    probs = verify_runs([r], estimate_scores=est_scores)
    if probs:
        raise SystemExit(f"{key} seed {seed}: verify_runs found problems: {probs[:3]}")
    h = r["hw"]
    rec = {"key": key, "seed": seed, "error": None,
           "test_curve": [round(x, 4) for x in r["test_curve"]],
           "feasible_cells": h["feasible_cells"], "selected": h["selected"],
           "best_within": h.get("best_within"),
           "violations": h.get("violations", {}), "selected_violates": h["selected_violates"],
           "trained_distinct": h["trained_distinct"], "revisits": r["revisits"]}
    if "hv_curve" in r:
        rec["hv_curve"] = [round(x, 6) for x in r["hv_curve"]]
        rec["hv_val_curve"] = [round(x, 6) for x in r["hv_val_curve"]]
        rec["front"] = r["front"]
        rec["hv_ranges"] = r["hv_ranges"]
    store.put(rec)
    if counters is not None:
        counters["verified"] += 1
    return rec


# ----------------------------------------------------------------------------------- part 1
def part_estimates(prox: dict, seeds: int) -> dict:
    """Spearman of params / flops / synflow with every device metric, and the fitted estimates."""
    rank = []
    for ds in ALL_DATASETS:
        for dev, met in metrics():
            t = hw.metric(dev, met, ds)
            m = t.measured
            row = {"dataset": ds, "device": dev, "metric": met, "cells": int(m.sum())}
            for k in ("params", "flops", "synflow"):
                row[k] = float(spearmanr(prox[ds][k][m], t.values[m]).correlation)
            rank.append(row)
    fits = []
    for ds in ALL_DATASETS:
        for dev, met in metrics():
            t = hw.metric(dev, met, ds)
            b = t.percentile(PERCENTILES["tight"])
            truly = t.within(b)
            for kind in ("fit", "flops", "params"):
                for n in FIT_CELLS:
                    rho, prec, rec = [], [], []
                    for s in range(seeds):
                        est, rows = hw.estimate(hw.EstimateSpec(kind, n), t, s,
                                                proxy=prox[ds].get(kind))
                        held = t.measured.copy()
                        held[rows] = False
                        rho.append(spearmanr(est[held], t.values[held]).correlation)
                        pred = est <= b
                        tp = (pred & truly).sum()
                        prec.append(tp / max(pred.sum(), 1))
                        rec.append(tp / truly.sum())
                    fits.append({"dataset": ds, "device": dev, "metric": met, "kind": kind,
                                 "cells": n, "spearman": float(np.mean(rho)),
                                 "spearman_sd": float(np.std(rho)),
                                 "precision": float(np.mean(prec)), "recall": float(np.mean(rec))})
    return {"rank": rank, "fits": fits}


# ----------------------------------------------------------------------------------- part 2
def budgets(ds: str) -> dict:
    out = {}
    for dev in hw.DEVICES:
        t = hw.metric(dev, "latency", ds)
        for name, q in PERCENTILES.items():
            out[(dev, name)] = t.percentile(q)
    return out


def optimum(ds: str, feas: np.ndarray) -> tuple:
    g = groundtruth(ds)
    test, val = g["test_acc"].to_numpy(), g["val_acc"].to_numpy()
    idx = np.flatnonzero(feas)
    return float(test[idx].max()), float(test[idx[np.argmax(val[idx])]])


def part_budget(store: Store, scores: dict, seeds: int, counters: dict) -> list:
    rows = []
    for ds in DATASETS:
        b = budgets(ds)
        for dev in hw.DEVICES:
            lat = hw.metric(dev, "latency", ds)
            for name in PERCENTILES:
                spec = {"device": dev, "max_latency": b[(dev, name)]}
                best_test, best_val_sel = optimum(ds, lat.within(b[(dev, name)]))
                for v in VARIANTS:
                    key = f"budget/{ds}/{dev}/{name}/{v.slug}"
                    recs = [run_one(store, key, s, v, ds, scores[ds], spec, counters=counters)
                            for s in range(seeds)]
                    bad = [r for r in recs if r["error"]]
                    if bad:
                        raise SystemExit(f"{key}: {bad[0]['error']}")
                    curves = np.asarray([r["test_curve"] for r in recs])
                    rows.append({"dataset": ds, "device": dev, "budget": name,
                                 "max_latency": b[(dev, name)],
                                 "feasible": recs[0]["feasible_cells"], "variant": v.label,
                                 "mean": {a: float(curves[:, a - 1].mean()) for a in AT},
                                 "values": {a: curves[:, a - 1].tolist() for a in AT},
                                 "curve": curves.mean(0).tolist(),
                                 "optimum_test": best_test, "optimum_selected": best_val_sel})
    return rows


def significance(rows: list) -> list:
    """One-sided Mann-Whitney U (variant > its baseline) per setting at 50 and 100, Holm over
    all comparisons."""
    base = {(r["dataset"], r["device"], r["budget"], r["variant"]): r for r in rows}
    out = []
    for r in rows:
        v = r["variant"]
        if "+" not in v:
            continue
        b = base[(r["dataset"], r["device"], r["budget"], v.split("+")[0])]
        for a in (50, 100):
            x, y = np.asarray(r["values"][a]), np.asarray(b["values"][a])
            p = 1.0 if np.array_equal(x, y) else float(
                mannwhitneyu(x, y, alternative="greater").pvalue)
            out.append({"setting": (r["dataset"], r["device"], r["budget"]), "variant": v,
                        "at": a, "diff": float(x.mean() - y.mean()), "p": p})
    order = np.argsort([o["p"] for o in out])
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(out) - rank) * out[i]["p"]))
        out[i]["p_holm"] = running
    return out


# ----------------------------------------------------------------------------------- part 3
def true_front_hv(ds: str, dev: str) -> float:
    """Hypervolume (test accuracy, latency) of the table's own Pareto front over the cells the
    search may train (the measured ones), with the search's normalisation."""
    g = groundtruth(ds)
    t = hw.metric(dev, "latency", ds)
    m = t.measured
    val, test, c = g["val_acc"].to_numpy()[m], g["test_acc"].to_numpy()[m], t.values[m]
    ranges = {"acc_lo": min(val.min(), test.min()), "acc_hi": max(val.max(), test.max()),
              "cost_lo": c.min(), "cost_hi": c.max()}
    fa, fg = normalisers(ranges)
    # the front by a sort: by cost ascending, keep the points that raise the best accuracy
    order = np.lexsort((-test, c))
    keep, best = [], -np.inf
    for i in order:
        if test[i] > best:
            keep.append(i)
            best = test[i]
    keep = np.asarray(keep)
    assert set(pareto_front(test[keep], c[keep]).tolist()) == set(range(keep.size))
    return hypervolume(fa(test[keep]), fg(c[keep]))


def part_mo(store: Store, scores: dict, seeds: int, counters: dict) -> list:
    rows = []
    for ds in DATASETS:
        for dev in hw.DEVICES:
            spec = {"device": dev, "objectives": "accuracy,latency"}
            opt = true_front_hv(ds, dev)
            for v in MO_VARIANTS:
                key = f"mo/{ds}/{dev}/{v.slug}"
                recs = [run_one(store, key, s, v, ds, scores[ds], spec, counters=counters)
                        for s in range(seeds)]
                hv = np.asarray([r["hv_curve"] for r in recs])
                rows.append({"dataset": ds, "device": dev, "variant": v.label,
                             "mean": {a: float(hv[:, a - 1].mean()) for a in AT},
                             "values": {a: hv[:, a - 1].tolist() for a in AT},
                             "curve": hv.mean(0).tolist(), "optimum": opt,
                             "front_size": float(np.mean([len(r["front"]) for r in recs]))})
    return rows


# ----------------------------------------------------------------------------------- part 4
def part_estimate_search(store: Store, scores: dict, prox: dict, seeds: int,
                         counters: dict) -> list:
    rows = []
    test = {ds: groundtruth(ds)["test_acc"].to_numpy() for ds in DATASETS}
    for ds in DATASETS:
        b = budgets(ds)
        for dev in hw.DEVICES:
            for name in PERCENTILES:
                base = f"budget/{ds}/{dev}/{name}/{EST_VARIANT.slug}"
                ref = [store.get(base, s) for s in range(seeds)]
                for est in ESTIMATES:
                    for margin in MARGINS:
                        spec = {"device": dev, "max_latency": b[(dev, name)], "estimate": est,
                                "margin": margin}
                        key = f"estimate/{ds}/{dev}/{name}/{est}/m{margin:g}/{EST_VARIANT.slug}"
                        kind = est.split(":")[0]
                        es = {kind: prox[ds][kind]} if kind in ("params", "flops") else None
                        recs = [run_one(store, key, s, EST_VARIANT, ds, scores[ds], spec, es,
                                        counters) for s in range(seeds)]
                        ok = [r for r in recs if not r["error"]]
                        row = {"dataset": ds, "device": dev, "budget": name, "estimate": est,
                               "margin": margin, "runs": len(ok), "impossible": len(recs) - len(ok),
                               "reference": float(np.mean([r["test_curve"][-1] for r in ref]))}
                        if ok:
                            viol = sum(r["violations"]["latency"] for r in ok)
                            dist = sum(r["trained_distinct"] for r in ok)
                            within = [test[ds][r["best_within"]] for r in ok
                                      if r["best_within"] is not None]
                            row.update({
                                "acc": float(np.mean([r["test_curve"][-1] for r in ok])),
                                "acc_within": float(np.mean(within)) if within else None,
                                "none_within": len(ok) - len(within),
                                "trained_break": viol / dist,
                                "selected_break": float(np.mean([r["selected_violates"] for r in ok])),
                                "feasible": float(np.mean([r["feasible_cells"] for r in ok])),
                            })
                        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------ output
def fmt_pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def plots(budget_rows, mo_rows, est, out_dir: Path, fronts: dict) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for ds in DATASETS:
        fig, axes = plt.subplots(2, 6, figsize=(24, 7.5), squeeze=False)
        for j, dev in enumerate(hw.DEVICES):
            for i, name in enumerate(PERCENTILES):
                ax = axes[i, j]
                rows = [r for r in budget_rows if (r["dataset"], r["device"], r["budget"]) ==
                        (ds, dev, name)]
                for r in rows:
                    ax.plot(np.arange(1, BUDGET + 1), r["curve"], lw=1.3, label=r["variant"])
                ax.axhline(rows[0]["optimum_test"], c="k", ls="--", lw=0.8, label="best feasible")
                ax.axhline(rows[0]["optimum_selected"], c="k", ls=":", lw=0.8,
                           label="best-val feasible")
                ax.set_xscale("log")
                lo = min(min(r["curve"][4:]) for r in rows)
                ax.set_ylim(lo - 0.5, rows[0]["optimum_test"] + 0.4)
                ax.set_title(f"{dev}, {name}: <= {rows[0]['max_latency']:.3g} ms "
                             f"({rows[0]['feasible']} cells)", fontsize=9)
                ax.grid(alpha=0.3, which="both")
                if i == 1:
                    ax.set_xlabel("trained models")
                if j == 0:
                    ax.set_ylabel("test acc. of best-val feasible cell (%)")
        axes[0, 0].legend(fontsize=7, loc="lower right")
        fig.suptitle(f"NB201 {ds}: accuracy under a latency budget (10th / 50th percentile of "
                     "each device), mean of 20 seeds, proxy synflow", fontsize=11)
        fig.tight_layout()
        p = out_dir / f"hardware_budget_{ds}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        files.append(p)
    fig, axes = plt.subplots(2, 6, figsize=(24, 7.5), squeeze=False)
    for i, ds in enumerate(DATASETS):
        for j, dev in enumerate(hw.DEVICES):
            ax = axes[i, j]
            rows = [r for r in mo_rows if (r["dataset"], r["device"]) == (ds, dev)]
            for r in rows:
                gap = np.maximum(r["optimum"] - np.asarray(r["curve"]), 1e-5)
                ax.plot(np.arange(1, BUDGET + 1), gap, lw=1.3, label=r["variant"])
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{ds}, {dev} (table's front: HV {rows[0]['optimum']:.4f})", fontsize=9)
            ax.grid(alpha=0.3, which="both")
            if i == 1:
                ax.set_xlabel("trained models")
            if j == 0:
                ax.set_ylabel("HV of the table's front - HV found")
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.suptitle("Two objectives (accuracy, latency): hypervolume gap of the validation front "
                 "(test accuracy), mean of 20 seeds", fontsize=11)
    fig.tight_layout()
    p = out_dir / "hardware_hypervolume.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    files.append(p)
    # an example front: Pixel 3, CIFAR-10, seed 0
    g = groundtruth("cifar10")
    lat = hw.metric("pixel3", "latency", "cifar10")
    test = g["test_acc"].to_numpy()
    order = np.lexsort((-test, lat.values))
    keep, best = [], -np.inf
    for k in order:
        if test[k] > best:
            keep.append(k)
            best = test[k]
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    ax.step(lat.values[keep], test[keep], where="post", c="k", lw=1, label="table's front (test)")
    for lab, fr in fronts.items():
        fr = np.asarray(sorted(fr, key=lambda i: lat.values[i]))
        ax.plot(lat.values[fr], test[fr], "o-", ms=4, lw=1, label=lab)
    ax.set_ylim(80, 95)
    ax.set_xlabel("Pixel 3 latency (ms)")
    ax.set_ylabel("CIFAR-10 test accuracy (%)")
    ax.set_title("Validation fronts after 100 trained models (seed 0), test accuracy shown",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    p = out_dir / "hardware_front_pixel3.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    files.append(p)
    # estimate quality vs measured cells
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    for ax, ds in zip(axes, ALL_DATASETS):
        for dev in hw.DEVICES:
            ys = [next(f["spearman"] for f in est["fits"] if (f["dataset"], f["device"], f["metric"],
                                                              f["kind"], f["cells"]) ==
                       (ds, dev, "latency", "fit", n)) for n in FIT_CELLS]
            (line,) = ax.plot(FIT_CELLS, ys, "o-", label=f"{dev}: fit")
            fl = next(r["flops"] for r in est["rank"] if (r["dataset"], r["device"], r["metric"]) ==
                      (ds, dev, "latency"))
            ax.axhline(fl, c=line.get_color(), ls=":", lw=1)
        ax.set_xlabel("measured cells N")
        ax.set_ylabel("Spearman with the true latency")
        ax.set_title(f"{ds}: ridge fit (solid) vs flops (dotted)", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    p = out_dir / "hardware_estimates.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    files.append(p)
    return files


def report(a, est, budget_rows, sig, mo_rows, est_rows, files, seconds, counters) -> str:
    L = ["# Hardware-aware zero-cost NAS on NB201 (HW-NAS-Bench latency and energy)", "",
         f"git {git_sha()}, {time.strftime('%Y-%m-%d %H:%M')}, {cpu_name()}; "
         f"`python bench/study_hardware.py --seeds {a.seeds}` ({seconds:.0f} s). "
         f"{counters['total']} searches, every one checked by `zcfast.search.verify_runs` "
         "(curves, budget accounting, constraint, fronts and hypervolumes rebuilt from the "
         "trained cells); per-run records in `hardware_runs.jsonl.gz`.", "",
         "- Data: the bundled HW-NAS-Bench table (docs/hardware.md): latency (ms) on 6 devices, "
         "energy (mJ) on 3, per dataset; the Edge TPU lacks 4,699 cells (never feasible).",
         "- Proxy: synflow of all 15,625 cells (the paper's NB201 network for the dataset, "
         "weight seed 0), `bench/results/synflow_all/`; params and flops from the same files.",
         f"- Searches: {BUDGET} trained models (every oracle query charged), seeds "
         f"0..{a.seeds - 1}; the curve is the test accuracy of the best-validation *feasible* "
         f"cell. Variants: RAND, RAND+warmup({W}), RAND+move(10), AE, AE+warmup({W}), "
         "AE+move(24) (docs/search.md); under a budget every one of them proposes, scores and "
         "trains feasible cells only (docs/hardware.md).", ""]
    # ---- 1. estimates
    L += ["## 1. Zero-cost estimates of the device metric", "",
          "Spearman of each cell's params, flops (zero-cost, no measurement) and synflow with "
          "the device metric, over every measured cell:", "",
          "| device | metric | " + " | ".join(f"{ds} params | {ds} flops | {ds} synflow"
                                             for ds in ALL_DATASETS) + " |",
          "|---|---|" + "---:|" * (3 * len(ALL_DATASETS))]
    for dev, met in metrics():
        cells = []
        for ds in ALL_DATASETS:
            r = next(x for x in est["rank"] if (x["dataset"], x["device"], x["metric"]) ==
                     (ds, dev, met))
            cells += [f"{r['params']:+.3f}", f"{r['flops']:+.3f}", f"{r['synflow']:+.3f}"]
        L.append(f"| {dev} | {met} | " + " | ".join(cells) + " |")
    L += ["", f"Estimates from N measured cells (mean over {a.seeds} random draws of the cells): "
          "Spearman with the true value over the cells not measured, and precision / recall of "
          "\"estimate <= the tight budget\" (10th percentile) for the truly feasible cells. "
          "`fit` = ridge regression on the one-hot cell; `flops` / `params` = a power law "
          "fitted in log-log (its ranking is that of flops / params: only the threshold it "
          "puts on them depends on N).", ""]
    for ds in ALL_DATASETS:
        L += [f"**{ds}** (Spearman / precision / recall)", "",
              "| device | metric | " + " | ".join(f"{k}:{n}" for k in ("fit", "flops")
                                                   for n in FIT_CELLS) + " |",
              "|---|---|" + "---|" * 6]
        for dev, met in metrics():
            cells = []
            for k in ("fit", "flops"):
                for n in FIT_CELLS:
                    f = next(x for x in est["fits"] if (x["dataset"], x["device"], x["metric"],
                                                        x["kind"], x["cells"]) ==
                             (ds, dev, met, k, n))
                    cells.append(f"{f['spearman']:.3f} / {fmt_pct(f['precision'])} / "
                                 f"{fmt_pct(f['recall'])}")
            L.append(f"| {dev} | {met} | " + " | ".join(cells) + " |")
        L.append("")
    # ---- 2. budgets
    L += ["## 2. Accuracy under a latency budget", "",
          f"Mean test accuracy (%) of the best-validation feasible cell after {', '.join(map(str, AT))} "
          f"trained models ({a.seeds} seeds). *best* = the best feasible test accuracy of the table "
          "(an oracle), *sel* = the test accuracy of the best-validation feasible cell (what "
          "training every feasible cell would select).", ""]
    for ds in DATASETS:
        L += [f"### {ds}", "",
              "| device | budget | cells | best / sel | " + " | ".join(v.label for v in VARIANTS)
              + " |", "|---|---|---:|---|" + "---|" * len(VARIANTS)]
        for dev in hw.DEVICES:
            for name in PERCENTILES:
                rows = {r["variant"]: r for r in budget_rows
                        if (r["dataset"], r["device"], r["budget"]) == (ds, dev, name)}
                r0 = next(iter(rows.values()))
                cells = [" / ".join(f"{rows[v.label]['mean'][k]:.2f}" for k in AT)
                         for v in VARIANTS]
                L.append(f"| {dev} | {name} <= {r0['max_latency']:.3g} ms | {r0['feasible']} | "
                         f"{r0['optimum_test']:.2f} / {r0['optimum_selected']:.2f} | "
                         + " | ".join(cells) + " |")
        L.append("")
    L += [f"Gap to *sel* averaged over the {len(DATASETS) * 12} settings (points; negative = "
          "below):", "", "| variant | " + " | ".join(f"@{k}" for k in AT) + " |",
          "|---|" + "---:|" * len(AT)]
    for v in VARIANTS:
        rs = [r for r in budget_rows if r["variant"] == v.label]
        L.append(f"| {v.label} | " + " | ".join(
            f"{np.mean([r['mean'][k] - r['optimum_selected'] for r in rs]):+.2f}" for k in AT)
            + " |")
    wins = {}
    for o in sig:
        w = wins.setdefault((o["variant"], o["at"]), [0, 0, 0])
        w[0] += o["p_holm"] < 0.05
        w[1] += o["diff"] < 0
        w[2] += 1
    L += ["", "Does each variant beat its baseline? Settings (of "
          f"{len(DATASETS) * 12}) where the variant's mean is higher with a one-sided "
          "Mann-Whitney U p < 0.05 after Holm's correction over all "
          f"{len(sig)} comparisons, and settings where its mean is lower:", "",
          "| variant | @50 significant better | @50 lower | @100 significant better | @100 lower |",
          "|---|---:|---:|---:|---:|"]
    for v in VARIANTS:
        if not (v.warmup or v.move):
            continue
        a50, a100 = wins[(v.label, 50)], wins[(v.label, 100)]
        L.append(f"| {v.label} | {a50[0]} | {a50[1]} | {a100[0]} | {a100[1]} |")
    L += ["", *[f"![budget]({f.name})" for f in files if "budget" in f.name], ""]
    # ---- 3. two objectives
    L += ["## 3. Two objectives: accuracy and latency", "",
          "Hypervolume of the validation front (test accuracy of its members; normalisation and "
          "reference point in docs/hardware.md: 1 = as accurate as the best cell and as fast as "
          "the fastest) after 25 / 50 / 100 trained models, mean of "
          f"{a.seeds} seeds, next to the hypervolume of the table's own front (test accuracy, "
          "all cells).", "",
          "| dataset | device | table's front | " + " | ".join(v.label for v in MO_VARIANTS)
          + " |", "|---|---|---:|" + "---|" * len(MO_VARIANTS)]
    for ds in DATASETS:
        for dev in hw.DEVICES:
            rows = {r["variant"]: r for r in mo_rows if (r["dataset"], r["device"]) == (ds, dev)}
            r0 = next(iter(rows.values()))
            L.append(f"| {ds} | {dev} | {r0['optimum']:.4f} | " + " | ".join(
                " / ".join(f"{rows[v.label]['mean'][k]:.4f}" for k in AT) for v in MO_VARIANTS)
                + " |")
    mo_sig = []
    for ds in DATASETS:
        for dev in hw.DEVICES:
            for v in MO_VARIANTS:
                if not v.warmup:
                    continue
                r = next(x for x in mo_rows if (x["dataset"], x["device"], x["variant"]) ==
                         (ds, dev, v.label))
                b = next(x for x in mo_rows if (x["dataset"], x["device"], x["variant"]) ==
                         (ds, dev, v.baseline.label))
                for k in (50, 100):
                    x, y = np.asarray(r["values"][k]), np.asarray(b["values"][k])
                    p = float(mannwhitneyu(x, y, alternative="greater").pvalue)
                    mo_sig.append((v.label, k, p, x.mean() - y.mean()))
    order = np.argsort([m[2] for m in mo_sig])
    adj = np.empty(len(mo_sig))
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(mo_sig) - rank) * mo_sig[i][2]))
        adj[i] = running
    L += ["", "Warmup vs no warmup (one-sided Mann-Whitney U, Holm over the "
          f"{len(mo_sig)} comparisons), settings of 12:", "",
          "| variant | @50 significantly higher | @50 lower | @100 significantly higher | @100 lower |",
          "|---|---:|---:|---:|---:|"]
    for v in MO_VARIANTS:
        if not v.warmup:
            continue
        cells = []
        for k in (50, 100):
            sel = [(m, q) for m, q in zip(mo_sig, adj) if m[0] == v.label and m[1] == k]
            cells += [str(sum(q < 0.05 for _, q in sel)), str(sum(m[3] < 0 for m, _ in sel))]
        L.append(f"| {v.label} | " + " | ".join(cells) + " |")
    L += ["", "![hypervolume](hardware_hypervolume.png)", "",
          "![front](hardware_front_pixel3.png)", ""]
    # ---- 4. estimate-driven search
    L += ["## 4. Searching on an estimate", "",
          f"{EST_VARIANT.label}, {BUDGET} trained models, the budget applied to an estimate of "
          "the latency (measured cells drawn with the run's seed; they keep their measured "
          "value) with margin m (a cell is searched when estimate <= m x budget). *acc*: mean "
          "test accuracy of the selected cell, whatever its true latency (breaking the budget "
          "can buy accuracy); *within*: mean test accuracy of the best-validation trained cell "
          "that truly meets the budget (what a user who measures the trained cells afterwards "
          "deploys; runs without one left out, count in brackets); *ref*: the same search on the "
          "measured table; *trained*: share of distinct trained cells whose true latency breaks "
          "the budget; *selected*: share of runs whose selected cell breaks it; *impossible*: "
          "runs for which the estimate admitted fewer cells than the budget (the search refuses "
          "to start, naming the count).", ""]

    def within(r):
        if r["acc_within"] is None:
            return "-"
        return f"{r['acc_within']:.2f}" + (f" ({r['none_within']})" if r["none_within"] else "")

    for ds in DATASETS:
        L += [f"### {ds}", "", "| device | budget | estimate | m | acc | within | ref | trained | "
              "selected | impossible |", "|---|---|---|---:|---:|---|---:|---:|---:|---:|"]
        for r in est_rows:
            if r["dataset"] != ds:
                continue
            if r["runs"]:
                L.append(f"| {r['device']} | {r['budget']} | {r['estimate']} | {r['margin']:g} | "
                         f"{r['acc']:.2f} | {within(r)} | {r['reference']:.2f} | "
                         f"{fmt_pct(r['trained_break'])} | {fmt_pct(r['selected_break'])} | "
                         f"{r['impossible']} |")
            else:
                L.append(f"| {r['device']} | {r['budget']} | {r['estimate']} | {r['margin']:g} | "
                         f"- | - | {r['reference']:.2f} | - | - | {r['impossible']} |")
        L.append("")
    L += ["Summary over devices, datasets and budgets (settings with runs):", "",
          "| estimate | m | acc - ref | within - ref | trained break | selected break | "
          "impossible runs |", "|---|---:|---:|---:|---:|---:|---:|"]
    for e in ESTIMATES:
        for m in MARGINS:
            rs = [r for r in est_rows if r["estimate"] == e and r["margin"] == m]
            ok = [r for r in rs if r["runs"]]
            w = [r["acc_within"] - r["reference"] for r in ok if r["acc_within"] is not None]
            L.append(f"| {e} | {m:g} | {np.mean([r['acc'] - r['reference'] for r in ok]):+.2f} | "
                     f"{np.mean(w):+.2f} | "
                     f"{fmt_pct(np.mean([r['trained_break'] for r in ok]))} | "
                     f"{fmt_pct(np.mean([r['selected_break'] for r in ok]))} | "
                     f"{sum(r['impossible'] for r in rs)} of "
                     f"{sum(r['impossible'] + r['runs'] for r in rs)} |")
    L += ["", "![estimates](hardware_estimates.png)", ""]
    return "\n".join(L)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--runs-dir", default=str(HERE.parent / "runs" / "study_hardware"))
    ap.add_argument("--out", default=str(RESULTS / "hardware.md"))
    a = ap.parse_args(argv)
    t0 = time.time()
    prox, scores = {}, {}
    for ds in ALL_DATASETS:
        df = pd.read_csv(str(SYNFLOW).format(ds=ds))
        assert (df["index"].to_numpy() == np.arange(15625)).all()
        prox[ds] = {k: df[k].to_numpy(np.float64) for k in ("synflow", "params", "flops")}
        scores[ds] = prox[ds]["synflow"]
    runs = Path(a.runs_dir)
    store = Store(runs / "runs.jsonl")
    counters = {"verified": 0}
    print("part 1: estimates", flush=True)
    est = part_estimates(prox, a.seeds)
    print("part 2: budgets", flush=True)
    budget_rows = part_budget(store, scores, a.seeds, counters)
    sig = significance(budget_rows)
    print("part 3: two objectives", flush=True)
    mo_rows = part_mo(store, scores, a.seeds, counters)
    print("part 4: estimate-driven search", flush=True)
    est_rows = part_estimate_search(store, scores, prox, a.seeds, counters)
    fronts = {}
    for v in (Variant("ae"), Variant("ae", warmup=W)):
        fronts[f"{v.label}: validation front"] = store.get(f"mo/cifar10/pixel3/{v.slug}", 0)["front"]
    out = Path(a.out)
    files = plots(budget_rows, mo_rows, est, out.parent, fronts)
    counters["total"] = sum(1 for r in store.done.values() if not r.get("error"))
    text = report(a, est, budget_rows, sig, mo_rows, est_rows, files, time.time() - t0, counters)
    out.write_text(text)
    with gzip.open(out.with_name("hardware_runs.jsonl.gz"), "wt") as f:
        for r in store.done.values():
            rr = {k: v for k, v in r.items() if k not in ("test_curve", "hv_curve", "hv_val_curve")}
            if "test_curve" in r:
                rr["test_at"] = {k: r["test_curve"][k - 1] for k in AT}
            if "hv_curve" in r:
                rr["hv_at"] = {k: r["hv_curve"][k - 1] for k in AT}
            f.write(json.dumps(rr, separators=(",", ":")) + "\n")
    summary = {"git": git_sha(), "cpu": cpu_name(), "date": time.strftime("%Y-%m-%d %H:%M"),
               "seeds": a.seeds, "estimates": est,
               "budget": [{k: v for k, v in r.items() if k not in ("values", "curve")}
                          for r in budget_rows],
               "significance": [{**o, "setting": list(o["setting"])} for o in sig],
               "mo": [{k: v for k, v in r.items() if k not in ("values", "curve")}
                      for r in mo_rows], "estimate_search": est_rows}
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
