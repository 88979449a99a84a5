"""Zero-cost proxies on NAS-Bench-101: the bundled NASLib subset (292 distinct cells), per-model,
on CPU.

    python bench/study_nb101_correlation.py [--cells N] [--threads 2] [--measure K]

Settings are the paper's NB101 ones (SamsungLabs/zero-cost-nas nasbench1_pred.py): the official
network (128-channel stem, 3 stacks of 3 cells, docs/nb101.md), its own initialisation (He
fan-out normal convs, N(0, 0.01) classifier), train-mode BN, synflow on the BN-free copy in
float64; one batch of 256 real CIFAR-10 training images with the training augmentation (bundled
images, zcfast.data.image_source), the same batch for every cell. Scores go row by row to
bench/results/nb101_c10_subset/scores.csv (rerunning resumes; rows are never recomputed), each
row keyed by the official hash in column ``hash``, with the seconds each proxy took.

The report (.../README.md) gives Spearman and Kendall of each proxy against the 108-epoch
validation accuracy (mean of the records of each cell, which are draws of the benchmark's 3
training repeats), the paper's all-space |Spearman|, NASLib's scores on the same cells, and the
per-cell Spearman agreement between zcfast and NASLib for every proxy both define. It is
rewritten from whatever the CSV holds, so a partial run still gets a (labelled) report.

``--measure K`` only times every proxy on K cells (no results written).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

PROXIES = ["grad_norm", "snip", "grasp", "fisher", "jacob_cov", "synflow", "nwot", "plain",
           "params", "flops", "l2_norm"]
# |Spearman| over all 423,624 NB101 cells (Abdelfattah et al., ICLR 2021, Table 2 / PROXIES
# reference numbers)
PAPER_NB101 = {"grad_norm": 0.198, "snip": 0.164, "grasp": 0.448, "fisher": 0.257,
               "synflow": 0.372, "jacob_cov": 0.378}
FOLDER = HERE / "results" / "nb101_c10_subset"
RESUME_KEYS = ("batch_size", "seed", "proxies", "images", "stem_channels", "dataset")


GRAD_PROXIES = ("fisher", "grad_norm", "snip", "plain")  # one backward serves all four


def score_cell(code: int, x, y, names, seed: int, stem_channels: int, fused: bool = True) -> tuple:
    """({proxy: value}, {proxy: seconds}) of one cell. Every proxy runs zcfast's reference
    (zcfast.proxies) on a private copy of the network. ``fused``: fisher's pass (one forward and
    backward of the batch loss, zcfast.proxies.measures.fisher) leaves the weight gradients that
    grad_norm, snip and plain would recompute identically, so their reference reductions run on
    that copy without a new backward (--check shows the values are bit-identical)."""
    from unittest import mock

    import torch.nn.functional as F

    from zcfast.proxies import _private_copy, compute_measures
    from zcfast.proxies import measures as pm
    from zcfast.spaces.nb101_model import build_model

    net = build_model(code, 10, seed=seed, stem_channels=stem_channels)
    vals, secs = {}, {}
    grads = [p for p in GRAD_PROXIES if p in names] if fused else []
    if grads:
        t = time.perf_counter()
        cp = _private_copy(net, True, x.device)
        vals["fisher"] = float(pm.fisher(cp, x, y, F.cross_entropy))
        with mock.patch.object(pm, "_backward_all", lambda *a, **k: None):
            for p in grads[1:]:
                vals[p] = float(getattr(pm, p)(cp, x, y, F.cross_entropy))
        del cp
        for p in grads:
            secs[p] = (time.perf_counter() - t) / len(grads)
    for p in names:
        if p in vals:
            continue
        t = time.perf_counter()
        vals[p] = compute_measures(net, x, y, [p])[p]
        secs[p] = time.perf_counter() - t
    return vals, secs


def check(k: int, seed: int) -> None:
    """Fused vs separate reference passes on k small cells (stem 8, batch 16): must be equal."""
    from zcfast.data import image_source
    from zcfast.data.nb101 import subset_groundtruth

    xs, ys = image_source("cifar10").minibatch(16, seed)
    worst = 0
    for c in [int(c) for c in subset_groundtruth()["code"][:k]]:
        a, _ = score_cell(c, xs, ys, PROXIES, seed, 8, fused=True)
        b, _ = score_cell(c, xs, ys, PROXIES, seed, 8, fused=False)
        bad = [p for p in PROXIES if a[p] != b[p] and not (math.isnan(a[p]) and math.isnan(b[p]))]
        worst += len(bad)
        print(f"cell {c}: " + ("identical" if not bad else f"differ in {bad}"), flush=True)
    print(f"fused vs separate: {worst} differing values")


def read_rows(path: Path) -> list:
    """The whole rows of a score file (a torn last line, from a run still writing it or one
    interrupted mid-write, is left out; the file is not touched: a lane may be appending)."""
    if not path.exists():
        return []
    from zcfast.scoring import _whole_length

    text = path.read_bytes().decode()
    return list(csv.DictReader(io.StringIO(text[: _whole_length(text)])))


def cut_torn(path: Path) -> None:
    """Before appending to ``path``: cut a torn last line left by an interrupted run."""
    from zcfast.scoring import _whole_length

    if path.exists():
        raw = path.read_bytes()
        if len(raw) != _whole_length(raw):
            path.write_bytes(raw[: _whole_length(raw)])


def measure(k: int, x, y, seed: int, stem_channels: int) -> None:
    from zcfast.data.nb101 import subset_groundtruth

    gt = subset_groundtruth()
    # cells of the three most common sizes, in the subset's order
    codes = []
    for n in (5, 4, 6):
        codes += [int(c) for c in gt["code"] if int(c) & 7 == n][: max(1, k // 3)]
    for c in codes[:k]:
        vals, secs = score_cell(c, x, y, PROXIES, seed, stem_channels)
        print(f"cell {c} ({c & 7} vertices): {sum(secs.values()):.1f} s  "
              + "  ".join(f"{p} {secs[p]:.1f}" for p in PROXIES), flush=True)


def report(rows: list, meta: dict, timing: dict) -> str:
    import pandas as pd
    from scipy import stats

    from zcfast.data.nb101 import naslib_scores, subset_groundtruth

    gt = subset_groundtruth()
    df = pd.DataFrame(rows).set_index("hash")
    for p in PROXIES:
        df[p] = pd.to_numeric(df[p].replace("", np.nan))
    acc = gt.loc[df.index, "val_acc_mean"].to_numpy()
    nl_mean, nl_first = naslib_scores("mean"), naslib_scores("first")

    def corr(a, b):
        a, b = np.asarray(a, float), np.asarray(b, float)
        ok = ~(np.isnan(a) | np.isnan(b))
        if ok.sum() < 3:
            return int(ok.sum()), math.nan, math.nan
        return (int(ok.sum()), float(stats.spearmanr(a[ok], b[ok]).statistic),
                float(stats.kendalltau(a[ok], b[ok]).statistic))

    def spearman_ci(a, b, draws: int = 1000, seed: int = 0):
        """95% percentile bootstrap interval of Spearman over the cells both hold (cells
        resampled with replacement, seeded)."""
        a, b = np.asarray(a, float), np.asarray(b, float)
        ok = ~(np.isnan(a) | np.isnan(b))
        a, b = a[ok], b[ok]
        if len(a) < 10:
            return math.nan, math.nan
        rng = np.random.default_rng(seed)
        vals = []
        for _ in range(draws):
            i = rng.integers(0, len(a), len(a))
            vals.append(stats.spearmanr(a[i], b[i]).statistic)
        lo, hi = np.nanpercentile(vals, [2.5, 97.5])
        return float(lo), float(hi)

    n_done = len(df)
    n_full = int(df[PROXIES].notna().all(axis=1).sum())
    n_per = {p: int(df[p].notna().sum()) for p in PROXIES}
    lines = ["# Zero-cost proxies on NAS-Bench-101: the bundled 292-cell NASLib subset, CPU", "",
             f"Produced by `python bench/study_nb101_correlation.py` (git {meta['git']} at start, "
             f"{meta['cpu']}, {meta['threads']} thread(s), started {meta['started']}; report "
             f"written {time.strftime('%Y-%m-%d %H:%M')}).", "",
             f"**Progress: {n_done} of {len(gt)} distinct cells scored, {n_full} of them with "
             f"every proxy"
             + (" (partial run: every number below is over the cells scored so far; column n "
                "says how many)." if n_full < len(gt) else ".") + "** Cells per proxy: "
             + ", ".join(f"{p} {n_per[p]}" for p in PROXIES) + ".", "",
             "Cells: the 500 records of NASLib's `zc_nasbench101.json` are 292 distinct cells under "
             "the official hash (48 repeated, one 55 times); each row of `scores.csv` is one cell, "
             "keyed by its official hash (column `hash`). Target: the 108-epoch CIFAR-10 "
             "validation accuracy, **mean of the cell's records** (each record is one of the "
             "benchmark's 3 training repeats drawn at random). Settings: the paper's NB101 "
             f"network and initialisation, batch {meta['batch_size']} of "
             f"{meta['images_description']} (one seeded batch, seed {meta['seed']}, for every "
             "cell), train-mode BN, synflow on the BN-free copy in float64.", "",
             "| proxy | n | Spearman | 95% interval | Kendall | \\|Spearman\\| | paper "
             "\\|Spearman\\| (all 423,624 cells) | NASLib Spearman, same cells | agreement zcfast "
             "vs NASLib (Spearman) |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    from zcfast.data.nb101 import NASLIB_PROXIES, subset_records

    both = {v for v in NASLIB_PROXIES.values() if v}
    # NASLib's own repeatability: its first two records of each repeated cell (different random
    # network and batch, same cell); an upper bound on how well anyone can agree with it
    rec = subset_records().rename(columns={k: v for k, v in NASLIB_PROXIES.items() if v})
    pairs = [g.iloc[:2] for _, g in rec.groupby("hash", sort=False) if len(g) > 1]
    self_agree = {p: corr([g[p].iloc[0] for g in pairs], [g[p].iloc[1] for g in pairs])[1]
                  for p in both}
    alt_p = HERE / "results" / "nb101_c10_subset_naslib_settings" / "scores.csv"
    alt = pd.DataFrame(read_rows(alt_p)).set_index("hash") if alt_p.exists() else None
    if alt is not None and len(alt):
        alt = alt[alt.index.isin(df.index)]
    for p in PROXIES:
        n, rho, tau = corr(df[p], acc)
        paper = f"{PAPER_NB101[p]:.3f}" if p in PAPER_NB101 else ""
        if p in both:
            # NASLib on exactly the cells zcfast has scored for this proxy
            _, nrho, _ = corr(nl_mean.loc[df.index, p].where(df[p].notna().to_numpy()), acc)
            _, agree, _ = corr(df[p], nl_mean.loc[df.index, p])
            nl, ag = f"{nrho:+.3f}", f"{agree:+.3f}"
        else:
            nl = ag = ""
        lo, hi = spearman_ci(df[p], acc)
        ci = "" if math.isnan(lo) else f"[{lo:+.2f}, {hi:+.2f}]"
        lines.append(f"| {p} | {n} | {rho:+.3f} | {ci} | {tau:+.3f} | {abs(rho):.3f} | {paper} "
                     f"| {nl} | {ag} |")
    all_acc = gt["val_acc_mean"]
    lines += ["", "95% interval: percentile bootstrap of Spearman over the proxy's cells (1,000 "
              "resamples, seed 0; blank under 10 cells); it covers the sampling of the cells, not "
              "the proxy's seed noise or the repeats' noise in the target, and a percentile "
              "interval under-covers at small n. Which cells: `scores.csv` (per-model loop, "
              "every proxy) holds the first cells in the order of NASLib's file; the "
              "`pool_*.csv` files (packed engine) hold cells taken in the seeded order of "
              "`bench/nb101_pool_lanes.py` (random.Random(101)), each file listing its cells "
              "(column `hash`). So a proxy on fewer than 292 cells is scored on those first "
              "cells plus the start of a random order of the rest, less the cells listed here:"]
    lines += coverage(df, gt)
    lines += ["", "NASLib's released scores over **all 292 cells** of the pool (NAS-Bench-Suite-Zero, "
              "Krishnakumar et al., NeurIPS 2022 Datasets and Benchmarks; the bundled subset, mean "
              "over a cell's records), Spearman against the same target: "
              + ", ".join(f"{p} {corr(nl_mean.loc[gt.index, p], all_acc)[1]:+.3f}"
                          for p in PROXIES if p in both) + "."]
    lines += ["", "NASLib's scores are averaged over the records of a cell (they were computed "
              "once per record, on a different random network and batch each); with its first "
              "record only instead, the agreement is: "
              + ", ".join(f"{p} {corr(df[p], nl_first.loc[df.index, p])[1]:+.3f}"
                          for p in PROXIES if p in both) + ".", ""]
    lines += ["## Why zcfast and NASLib disagree", "",
              "Both use the same network (archai's NB101 port, structure and initialisation as "
              "the paper's) and the same proxy definitions (NASLib's copy of the paper's code; "
              "its synflow is the log of the sum, which leaves ranks unchanged). They differ in "
              "the data and in the draws: NASLib used **batch 32** (run config), a **new random "
              "batch for every proxy**, a new random network per record, and normalised with "
              "std (0.2470, 0.2435, 0.2616); zcfast uses one batch of 256 with the paper's "
              "normalisation for every cell. Two measurements separate the causes:", "",
              f"- NASLib against itself: for the {len(pairs)} cells with several records, its "
              "first two records (same cell, another network and batch) agree only as well as "
              "the first column below; a proxy that is this noisy at batch 32 cannot agree better "
              "with anything.",
              "- zcfast with NASLib's data settings (`bench/study_nb101_naslib_settings.py`: "
              "batch 32, NASLib's normalisation, one seeded batch per cell and proxy, zcfast's "
              "network and proxies unchanged): if its agreement with NASLib is higher than the "
              "paper-settings run's, the batch accounts for that part of the gap.", "",
              "| proxy | NASLib self-agreement (repeated cells) | agreement, paper settings | "
              "agreement, NASLib's data settings (cells) |", "|---|---:|---:|---:|"]
    for p in PROXIES:
        if p not in both:
            continue
        _, agree, _ = corr(df[p], nl_mean.loc[df.index, p])
        if alt is not None and len(alt):
            m, a2, _ = corr(alt[p].astype(float), nl_mean.loc[alt.index, p])
            alt_s = f"{a2:+.3f} ({m})"
        else:
            alt_s = "not run"
        lines.append(f"| {p} | {self_agree[p]:+.3f} | {agree:+.3f} | {alt_s} |")
    lines.append("")
    agree = engine_agreement()
    if agree:
        def engine(p):
            return json.loads(Path(str(p) + ".meta.json").read_text()).get("engine", "packed")

        lines += ["Rows beyond scores.csv come from `zcfast score --space nb101` files ("
                  + ", ".join(f"`{p.name}`" + ("" if engine(p) == "packed" else f" ({engine(p)})")
                              for p in pool_files())
                  + "; the packed engine unless marked, `loop` = the per-model engine: the same "
                  "batch, seed, images and network; packed = per-model, "
                  "tests/test_nb101_packed.py). On "
                  "the cells both hold, the largest relative difference between the per-model "
                  "loop and the packed engine is: "
                  + ", ".join(f"{p} {d:.1e} ({n} cells)" for p, (n, d) in agree.items()) + ".", ""]
    pc = timing.get("proxy_cells", {p: timing.get("cells", 0) for p in PROXIES})
    if all(pc.get(p) for p in PROXIES):
        per = {p: timing["proxy_seconds"][p] / pc[p] for p in PROXIES}
        lines += [f"Cost per cell (per-model loop, one copy of the network per proxy, except "
                  "that fisher, grad_norm, snip and plain share one copy and one backward pass, "
                  "whose time is split evenly among them; "
                  f"{meta['threads']} threads, under the shared compute lock; averages over the "
                  f"cells scored for each proxy): {sum(per.values()):.0f} s in all -- "
                  + ", ".join(f"{p} {per[p]:.1f} s" for p in PROXIES) + ". The lock keeps other "
                  "long jobs out, not other engineers' tests and builds: the load average at the "
                  f"last cell was {timing.get('load_average_last', ['?'])[0]:.1f} on 2 cores, so "
                  "these are upper bounds of a quiet machine's cost.", ""]
    return "\n".join(lines) + "\n"


def coverage(df, gt, folder: Path = FOLDER) -> list:
    """For each proxy on fewer than all cells: which cells of the seeded order it covers, and the
    cells of that stretch it lacks, with the reason recorded in pool_skipped.json ({hash:
    reason}: e.g. a pass that does not fit in this machine's memory), so that a sample with
    holes says so."""
    from nb101_pool_lanes import shuffled  # bench/ is on sys.path when this script runs

    by_arch = {a: h for h, a in zip(gt.index, gt["arch"])}
    order = [by_arch[a] for a in shuffled()]
    pos = {h: i for i, h in enumerate(order)}
    first = {r["hash"] for r in read_rows(folder / "scores.csv")}
    skip_p = folder / "pool_skipped.json"
    why = json.loads(skip_p.read_text()) if skip_p.exists() else {}
    out = []
    for p in PROXIES:
        have = set(df.index[df[p].notna()])
        if len(have) >= len(gt):
            continue
        rest = have - first
        last = max((pos[h] for h in rest), default=-1)
        holes = [h for h in order[: last + 1] if h not in have]
        again = sum(h in first for h in order[: last + 1])
        text = (f"- {p}: {len(have & first)} cells of `scores.csv`, then the first {last + 1} "
                f"cells of the seeded order" + (f" ({again} of them among those)" if again else ""))
        if holes:
            text += ", less " + ", ".join(
                f"`{h[:8]}` ({why.get(h, 'reason not recorded')})" for h in holes)
        out.append(text + ".")
    return out


def load_all(folder: Path = FOLDER) -> list:
    """Rows of scores.csv with blank proxies filled from the part files scores_<proxies>.csv
    (written by --only passes), then from the ``zcfast score`` files pool_*.csv (packed engine,
    same settings, checked against their meta), which also add rows for cells scores.csv lacks."""
    rows = read_rows(folder / "scores.csv")
    by_hash = {r["hash"]: r for r in rows}
    for part in sorted(folder.glob("scores_*.csv")):
        for r in read_rows(part):
            if r["hash"] in by_hash:
                for k, v in r.items():
                    if k in PROXIES and v != "" and by_hash[r["hash"]].get(k, "") == "":
                        by_hash[r["hash"]][k] = v
    pools = pool_files(folder)
    if pools:
        from zcfast.data.nb101 import subset_groundtruth

        gt = subset_groundtruth()
        for path in pools:
            for r in read_rows(path):
                h = r["hash"]
                if h not in gt.index:
                    raise SystemExit(f"{path}: {h} is not a cell of the bundled subset")
                if h not in by_hash:
                    by_hash[h] = {"hash": h, "code": int(gt.loc[h, "code"]),
                                  "n_records": int(gt.loc[h, "n_records"]),
                                  "val_acc_mean": repr(float(gt.loc[h, "val_acc_mean"])),
                                  **{p: "" for p in PROXIES}}
                    rows.append(by_hash[h])
                for k, v in r.items():
                    if k in PROXIES and v != "" and by_hash[h].get(k, "") == "":
                        by_hash[h][k] = v
    return rows


def pool_files(folder: Path = FOLDER) -> list:
    """The ``zcfast score`` files pool_*.csv of the folder, after checking that their settings
    are the study's (batch, seed, images, space; the engine may differ: packed equals per-model,
    tests/test_nb101_packed.py)."""
    out = []
    for path in sorted(folder.glob("pool_*.csv")):
        meta = json.loads(Path(str(path) + ".meta.json").read_text())
        want = {"space": "nb101", "batch_size": 256, "dataset": "cifar10", "images": "cifar10-subset",
                "normalization": "paper"}
        bad = {k: (meta.get(k), v) for k, v in want.items() if meta.get(k) != v}
        if meta.get("weight_seed", meta.get("seed")) != 0:
            bad["weight_seed"] = (meta.get("weight_seed", meta.get("seed")), 0)
        if bad:
            raise SystemExit(f"{path}: settings differ from the study's: {bad}")
        out.append(path)
    return out


def engine_agreement(folder: Path = FOLDER) -> dict:
    """{proxy: (cells, max relative difference)} between scores.csv (per-model loop) and the
    pool_*.csv files (packed engine) on the cells both hold."""
    loop = {r["hash"]: r for r in read_rows(folder / "scores.csv")}
    out = {}
    for path in pool_files(folder):
        for r in read_rows(path):
            a = loop.get(r["hash"])
            if a is None:
                continue
            for p in PROXIES:
                if r.get(p, "") in ("", None) or a.get(p, "") == "":
                    continue
                u, v = float(a[p]), float(r[p])
                d = 0.0 if u == v else abs(u - v) / max(abs(u), abs(v), 1e-300)
                n, worst = out.get(p, (0, 0.0))
                out[p] = (n + 1, max(worst, d))
    return out


def main() -> None:
    from zcfast.data import image_source
    from zcfast.data.nb101 import subset_groundtruth
    from zcfast.scoring import cpu_name, git_sha

    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=292, help="stop when this many cells are scored")
    ap.add_argument("--more", type=int, default=0,
                    help="score at most this many new cells in this run (0: no limit)")
    ap.add_argument("--skip", default="",
                    help="proxies left blank in scores.csv, to be filled by a later --only pass")
    ap.add_argument("--only", default="",
                    help="score only these proxies, into scores_<names>.csv, for the cells of "
                         "scores.csv that lack them")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--stem-channels", type=int, default=128)
    ap.add_argument("--measure", type=int, default=0)
    ap.add_argument("--check", type=int, default=0)
    ap.add_argument("--report-only", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    src = image_source("cifar10")
    x, y = src.minibatch(a.batch, a.seed)
    if a.check:
        check(a.check, a.seed)
        return
    if a.measure:
        measure(a.measure, x, y, a.seed, a.stem_channels)
        return
    skip = [p for p in a.skip.split(",") if p]
    only = [p for p in a.only.split(",") if p]
    for p in skip + only:
        if p not in PROXIES:
            raise SystemExit(f"unknown proxy {p!r}: expected some of {PROXIES}")
    FOLDER.mkdir(parents=True, exist_ok=True)
    out, meta_p, timing_p = FOLDER / "scores.csv", FOLDER / "scores.csv.meta.json", FOLDER / "timing.json"
    meta = {"space": "nb101", "dataset": "cifar10", "proxies": PROXIES, "seed": a.seed,
            "batch_size": a.batch, "images": src.name, "images_description": src.description,
            "stem_channels": a.stem_channels, "engine": "loop", "git": git_sha(),
            "cpu": cpu_name(), "threads": a.threads, "torch": torch.__version__,
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if meta_p.exists():
        old = json.loads(meta_p.read_text())
        diff = {k: (old.get(k), meta[k]) for k in RESUME_KEYS if old.get(k) != meta[k]}
        if diff:
            raise SystemExit(f"cannot resume {out}: settings differ: {diff}")
        meta = old
    else:
        meta_p.write_text(json.dumps(meta, indent=1))
    timing = json.loads(timing_p.read_text()) if timing_p.exists() else \
        {"seconds": 0.0, "cells": 0, "proxy_seconds": {p: 0.0 for p in PROXIES}}
    timing.setdefault("proxy_cells", {p: timing["cells"] for p in PROXIES})
    gt = subset_groundtruth()
    rows = read_rows(out)
    if only:
        have = {r["hash"] for r in load_all() if all(r.get(p, "") != "" for p in only)}
        target = FOLDER / f"scores_{'_'.join(only)}.csv"
        names = only
        todo = [(r["hash"], int(r["code"])) for r in rows if r["hash"] not in have]
        fields = ["hash", *only, "seconds"]
    else:
        done = {r["hash"] for r in rows}
        target = out
        names = [p for p in PROXIES if p not in skip]
        todo = [(h, int(c)) for h, c in zip(gt.index, gt["code"]) if h not in done]
        todo = todo[: max(0, a.cells - len(done))]
        fields = ["hash", "code", "n_records", "val_acc_mean", *PROXIES, "seconds"]
    if a.more:
        todo = todo[: a.more]
    if not a.report_only and todo:
        cut_torn(target)
        new = not target.exists() or target.stat().st_size == 0
        with open(target, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            if new:
                w.writeheader()
            for k, (h, code) in enumerate(todo):
                t0 = time.perf_counter()
                vals, secs = score_cell(code, x, y, names, a.seed, a.stem_channels)
                dt = time.perf_counter() - t0
                row = {"hash": h, **{p: repr(float(vals[p])) for p in names},
                       "seconds": f"{dt:.2f}"}
                if not only:
                    row.update({"code": code, "n_records": int(gt.loc[h, "n_records"]),
                                "val_acc_mean": repr(float(gt.loc[h, "val_acc_mean"])),
                                **{p: "" for p in skip}})
                w.writerow(row)
                f.flush()
                for p in names:
                    timing["proxy_seconds"][p] += secs[p]
                    timing["proxy_cells"][p] += 1
                timing["seconds"] += dt
                timing["cells"] += 0 if only else 1
                timing.update(cpu=cpu_name(), threads=a.threads, git_last=git_sha(),
                              load_average_last=os.getloadavg())
                timing_p.write_text(json.dumps(timing, indent=1))
                print(f"[{k + 1}/{len(todo)}] {'+'.join(names) if only else 'cell'} {h} "
                      f"{dt:.0f} s", flush=True)
                if (k + 1) % 5 == 0:
                    (FOLDER / "README.md").write_text(report(load_all(), meta, timing))
    rows = load_all()
    if rows:
        text = report(rows, meta, timing)
        (FOLDER / "README.md").write_text(text)
        print(text)


if __name__ == "__main__":
    main()
