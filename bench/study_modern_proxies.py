"""Correlation study of the modern proxies and label-free ensembles on NAS-Bench-201.

    # the pilot (CPU, per-model engine): 200 cells, CIFAR-10
    flock /work/.compute.lock nice -n 5 python bench/study_modern_proxies.py \\
        --datasets cifar10 --cells 200 --engine loop --out bench/results/modern_pilot
    # the full study, once packed versions exist (GPU): >= 3,000 cells, three datasets
    python bench/study_modern_proxies.py --datasets cifar10,cifar100,ImageNet16-120 \\
        --cells 3000 --engine packed --device cuda --out bench/results/modern_study

Scores go row by row to <out>/<dataset>/scores.csv through ``zcfast.scoring.score_to_file``
(rerunning resumes; ``--report-only`` rebuilds the tables from what is there). Proxies added
later on the same cells go to a second file, ``--scores-name scores_<name>``, which the report
joins by cell (load_scores). The cells are
``nb201.sample(cells, seed)``: identical across proxies and datasets. The images are the bundled
ones (zcfast/data/_bundled; each table states which). Ensembles rank the cells of the file.
<out>/README.md gets one table per dataset scored in <out> (whichever --datasets this run has): Spearman, Kendall, top-10% Spearman, hit rate and
the paper's pair agreement for every proxy and ensemble, next to the published values below,
plus the measured seconds per cell. Git SHA, CPU and date are recorded.
"""

from __future__ import annotations

import argparse
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

# per-model columns scored; the ensembles' members are added by score_to_file
PROXIES = ("synflow,jacob_cov,snip,nwot,flops,params,zico,epe_nas,zen,meco,swap,swap_reg,"
           "az_expressivity,az_progressivity,az_trainability,vkdnw,vkdnw_dim,vkdnw_single")
# ensembles recorded with the scores (computed over the file's cells when read)
ENSEMBLES = "vote,az_nas,vkdnw_agg,ensemble:zico+az_nas+vkdnw"
# further ensembles evaluated at report time over the same rows (no rescoring)
REPORT_ENSEMBLES = [
    "ensemble[meanrank]:zico+az_nas+vkdnw",
    "ensemble[vote]:zico+az_nas+vkdnw_single",
    "ensemble:vkdnw_agg+zico",
    "ensemble:vkdnw_agg+meco",
    "ensemble:az_nas+vkdnw_single+zico+meco",
    # fixed before the CIFAR-100 / ImageNet16-120 runs, which leave out the VKDNW group: the
    # analogue of the pilot's best (vkdnw_agg+meco) without it
    "ensemble:az_nas+meco",
    # chosen later on the whole-space CIFAR-100 table (bench/results/az_nas_all): in sample on
    # cifar100, out of sample on cifar10 and ImageNet16-120
    "ensemble:az_nas+meco+synflow",
]

# |Spearman| published over all 15,625 NB201 cells (C10 / C100 / IN16-120). VKDNW = Tybl &
# Neumann, CVPR 2025, Table 1 (every method re-run with its authors' code, mean of 5 runs; its
# "No. of trainable layers" row is vkdnw_dim). AZ-NAS's own notebook: 0.913 on CIFAR-10.
VKDNW_TABLE1 = {
    "flops": (0.799, 0.763, 0.718), "snip": (0.591, 0.597, 0.521),
    "synflow": (0.758, 0.750, 0.719), "jacob_cov": (0.800, 0.820, 0.779),
    "nwot": (0.762, 0.799, 0.794), "zen": (0.103, 0.072, 0.109), "zico": (0.802, 0.809, 0.779),
    "az_nas": (0.892, 0.880, 0.859), "vkdnw_dim": (0.767, 0.787, 0.764),
    "vkdnw_single": (0.815, 0.829, 0.814), "vkdnw_agg": (0.919, 0.919, 0.906),
}
OTHER_PUBLISHED = {  # own papers, one dataset each (abstracts)
    "meco": ("cifar10", 0.89, "MeCo (NeurIPS 2023), NATS-Bench-TSS CIFAR-10"),
    "swap_reg": ("cifar100", 0.90, "SWAP (ICLR 2024), regularised, CIFAR-100 validation accuracy"),
    "az_nas": ("cifar10", 0.913, "AZ-NAS notebook, CIFAR-10"),
}
DS_COL = {"cifar10": 0, "cifar100": 1, "ImageNet16-120": 2}


def published(p: str, ds: str) -> str:
    out = []
    if p in VKDNW_TABLE1:
        out.append(f"{VKDNW_TABLE1[p][DS_COL[ds]]:.3f}")
    if p in OTHER_PUBLISHED and OTHER_PUBLISHED[p][0] == ds:
        out.append(f"{OTHER_PUBLISHED[p][1]:.3f}*")
    return " / ".join(out)


def unique_representatives(index) -> np.ndarray:
    """Mask of the cells that are the lowest NB201 index of their isomorphism class (NATS-Bench's
    6,466 classes)."""
    from zcfast.data import nb201_unique_class

    uc = nb201_unique_class()
    _, first = np.unique(uc, return_index=True)
    rep = np.zeros(len(uc), dtype=bool)
    rep[first] = True
    return rep[np.asarray(index)]


# what must agree between a dataset's score files for their columns to sit in one table
SAME_SETTINGS = ("space", "dataset", "seed", "weight_seed", "data_seed", "batch_size", "images",
                 "normalization", "flavour", "precision", "data")


def load_scores(folder: Path, ds: str):
    """<folder>/<ds>/scores.csv with the columns of every scores_<name>.csv beside it (further
    proxies on the same cells, scored by a later run with ``--scores-name``), joined by cell.
    The files must share SAME_SETTINGS; a column in both must agree on their common cells (a
    check of determinism, then one copy is kept). An extra file's ensembles are computed over
    the cells that file holds (the rows of scores.csv it lacks stay empty). An extra file that
    does not yet hold every cell of scores.csv (a run still under way) is left out of the table:
    its missing rows would count as failed scores in the hit rate and the pair agreement;
    ``scores.attrs['partial']`` lists it as (file name, its cells, its proxies, scores.csv's
    cells)."""
    from zcfast.proxies.ensemble import is_ensemble
    from zcfast.scoring import add_ensembles, read_scores

    scores, meta = read_scores(folder / ds / "scores.csv")
    partial = []
    for path in sorted((folder / ds).glob("scores_*.csv")):
        more, m2 = read_scores(path)
        for key in SAME_SETTINGS:
            if m2.get(key) != meta.get(key):
                raise ValueError(f"{path}: {key} {m2.get(key)!r} differs from scores.csv's "
                                 f"{meta.get(key)!r}")
        ens = [c for c in more.columns if is_ensemble(c)]
        more = more.drop(columns=ens + [c for c in ("arch",) if c in more.columns])
        common = scores.index.intersection(more.index)
        for c in [c for c in more.columns if c in scores.columns]:
            a = scores.loc[common, c].to_numpy(dtype=np.float64)
            b = more.loc[common, c].to_numpy(dtype=np.float64)
            if not np.allclose(a, b, rtol=1e-9, atol=0.0, equal_nan=True):
                raise ValueError(f"{path}: column {c} differs from scores.csv's on the same cells")
            more = more.drop(columns=c)
        extra_rows = more.index.difference(scores.index)
        if len(extra_rows):
            raise ValueError(f"{path}: {len(extra_rows)} cells not in scores.csv (e.g. "
                             f"{extra_rows[0]}); an extra file adds proxies to its cells only")
        held = scores.index.isin(more.index)
        if not held.all():
            partial.append((path.name, int(held.sum()), [c for c in more.columns], len(scores)))
            continue
        scores = scores.join(more, how="left")
        if ens:
            part = add_ensembles(scores[held].copy(), ens)
            for e in ens:
                scores[e] = part[e].reindex(scores.index)
    scores.attrs["partial"] = partial
    return scores, meta


def report(folder: Path, ds: str, target: str, unique: bool = False, exclude: tuple = ()) -> list:
    """One dataset's table. ``unique``: only one cell per isomorphism class; ``exclude``: (n,
    seed, why): leave out the first n cells of ``nb201.sample(., seed)`` (cells that were used to
    choose the ensembles, so the table is an out-of-sample check)."""
    from zcfast.correlate import correlation_table
    from zcfast.proxies.ensemble import base_members, is_ensemble
    from zcfast.scoring import add_ensembles

    scores, meta = load_scores(folder, ds)
    ens_cols = [c for c in scores.columns if is_ensemble(c)]
    if unique:  # compare only the class representatives: the ensembles rank these cells
        scores = scores.drop(columns=ens_cols)[unique_representatives(scores.index)]
        scores = add_ensembles(scores, ens_cols)
    if exclude:  # the ensembles rank the cells that remain
        from zcfast.spaces import nb201

        n_ex, seed, why = exclude
        gone = {int(i) for i in nb201.sample(n_ex, seed)}
        scores = scores.drop(columns=ens_cols)[[int(i) not in gone for i in scores.index]]
        scores = add_ensembles(scores, ens_cols)
    # the recorded ensembles too: a later file may hold the members of one that the file that
    # recorded it lacked (vkdnw_agg once VKDNW's columns are complete)
    extra = [e for e in (*ENSEMBLES.split(","), *REPORT_ENSEMBLES) if e not in scores.columns
             and all(m in scores.columns for m in base_members(e))]
    scores = add_ensembles(scores, extra)
    tab = correlation_table(scores, ds, target)
    kt, kp = tab.attrs["hit_sizes"]
    timings = []  # (file's proxies, timing), for scores.csv and each scores_<name>.csv
    if not unique and not exclude:
        for tpath in sorted((folder / ds).glob("timing*.json")):
            stem = tpath.stem[len("timing"):]
            sfile = folder / ds / (f"scores{stem}.csv")
            what = "the file's proxies" if not stem else f"the proxies of {sfile.name}"
            timings.append((what, json.loads(tpath.read_text())))
    which = ("the cells of the file that are the lowest NB201 index of their isomorphism class "
             "(one per class of the 6,466)" if unique else "all cells of the file")
    if exclude:
        which = (f"the cells of the file outside the first {exclude[0]} of the sample: "
                 f"{exclude[2]}")
    lines = [f"## {ds}: {len(scores)} cells ({which}), target {target}", "",
             f"Images: {meta.get('images_description')}; batch {meta.get('batch_size')}, seed "
             f"{meta.get('seed')}, flavour {meta.get('flavour')}, engine {meta.get('engine')}. "
             f"Ensembles rank these {len(scores)} cells. hit = expected fraction of the true top "
             f"{kt} found in the proxy's top {kp} (the full-space 50-in-500 scaled to "
             f"{len(scores)} cells).", "",
             "| proxy | n | Spearman | Kendall | top-10% Spearman | hit | pair agree | "
             "published abs Spearman | zero-cost paper abs Spearman |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def f(v, fmt):
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    for p, r in tab.iterrows():
        pub = published(p, ds)
        if p == "vote":
            pub = f"pairs {r.paper_pair_agree:.3f} (the paper's vote statistic)"
        # a proxy constant over the cells (epe_nas on one image per class) has no rank
        # correlation: n/a, not "+nan"
        lines.append(f"| {p} | {int(r.n)} | {f(r.spearman, '+.3f') or 'n/a'} | "
                     f"{f(r.kendall, '+.3f') or 'n/a'} | "
                     f"{f(r.top10_spearman, '+.3f')} | {f(r.hit_rate, '.2f')} | "
                     f"{f(r.pair_agree, '.3f')} | {pub} | {f(r.paper_abs_spearman, '.3f')} |")
    lines += ["", "Published: VKDNW (CVPR 2025) Table 1 (stated as all 15,625 cells; its code keeps "
              "the cells that have GRAF features, and its size proxies match the 6,466 "
              "isomorphism-unique cells: see NOTES.md); * the proxy's own paper ("
              + "; ".join(v[2] for v in OTHER_PUBLISHED.values()) + "). Zero-cost paper: "
              "Abdelfattah et al. (ICLR 2021), the outputs stored in its NB201 notebook, all "
              "15,625 cells (zcfast/correlate.py)."]
    if any(c.startswith("ensemble") for c in tab.index):
        lines += ["", "Where the ensembles were chosen: vote, az_nas and vkdnw_agg are their papers' "
                  "definitions; the other `ensemble:` rows were tried on the 200-cell CIFAR-10 "
                  "pilot (bench/results/modern_pilot: the first 200 cells of this sample), except "
                  "ensemble:az_nas+meco+synflow, chosen on the whole-space CIFAR-100 table "
                  "(bench/results/az_nas_all): in sample on every CIFAR-100 table, the 2,800-cell "
                  "one included."]
    for name, n_held, cols, n_all in scores.attrs.get("partial", []):
        lines += ["", f"Not in the table yet: {', '.join(cols)} ({name}: {n_held} of the {n_all} "
                  "cells scored so far; a run under way, resumed by rerunning the study)."]
    for what, timing in timings:
        lines += ["", f"Scoring time: {timing['seconds']:.0f} s for {timing['cells']} cells "
                  f"({timing['seconds'] / max(timing['cells'], 1):.1f} s/cell wall time, {what}, "
                  f"engine {timing.get('engine')}, {timing.get('threads')} thread(s), "
                  f"{timing.get('cpu')}, git {timing.get('git')}, {timing.get('date')})."]
    return lines


def _shown_path(folder: Path) -> str:
    """``folder`` relative to the repository when inside it (as the README names it)."""
    try:
        return str(folder.resolve().relative_to(HERE.parent))
    except ValueError:
        return str(folder)


def _rows(path: Path) -> int:
    """Complete data rows of a score file (0 if absent; a torn last line does not count)."""
    if not path.exists():
        return 0
    raw = path.read_bytes()
    return max(0, raw[: raw.rfind(b"\n") + 1].count(b"\n") - 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="cifar10")
    ap.add_argument("--cells", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--engine", default="loop", choices=["loop", "packed"])
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--flavour", default="paper", choices=["paper", "official"])
    ap.add_argument("--target", default="test_acc", choices=["test_acc", "val_acc"])
    ap.add_argument("--out", default=str(HERE / "results" / "modern_pilot"))
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--exclude-first", type=int, default=0,
                    help="add a table without the first N cells of the sample (e.g. the cells "
                         "an ensemble was chosen on: an out-of-sample check)")
    ap.add_argument("--exclude-why", default="the cells not used to choose the ensembles",
                    help="what the --exclude-first table's cells are, for its title")
    ap.add_argument("--proxies", default=PROXIES, help="per-model columns (default: all of them)")
    ap.add_argument("--ensembles", default=ENSEMBLES, help="ensembles recorded with the scores")
    ap.add_argument("--scores-name", default="scores",
                    help="score file name without .csv: 'scores', or scores_<name> for further "
                         "proxies on the same cells (the report joins them, see load_scores)")
    a = ap.parse_args(argv)
    if a.scores_name != "scores" and not (a.scores_name.startswith("scores_")
                                          and a.scores_name[7:].isidentifier()):
        ap.error(f"--scores-name {a.scores_name!r}: use 'scores' or scores_<name> "
                 "(letters, digits, _)")
    torch.set_num_threads(a.threads)

    from zcfast.data import dataset_name
    from zcfast.scoring import cpu_name, git_sha, score_to_file

    folder = Path(a.out)
    datasets = [dataset_name(d) for d in a.datasets.split(",")]
    for ds in datasets:
        if a.report_only:
            continue
        out = folder / ds / f"{a.scores_name}.csv"
        spec = ",".join(t for t in (a.proxies, a.ensembles) if t)
        n0 = _rows(out)
        t0 = time.perf_counter()
        try:  # SIGINT (e.g. `timeout -s INT`) ends a time slice: the rows so far are kept
            score_to_file(out, archs=str(a.cells), proxies=spec,
                          dataset=ds, seed=a.seed, engine=a.engine, resume=True,
                          flavour=a.flavour, device=a.device, progress=True)
        except KeyboardInterrupt:
            print(f"{ds}: interrupted, {_rows(out)} rows kept (rerun to resume)", flush=True)
        res = {"seconds": time.perf_counter() - t0, "scored": _rows(out) - n0}
        tpath = folder / ds / ("timing.json" if a.scores_name == "scores"
                               else f"timing_{a.scores_name[len('scores_'):]}.json")
        old = json.loads(tpath.read_text()) if tpath.exists() else {"seconds": 0.0, "cells": 0}
        timing = {"seconds": old["seconds"] + res["seconds"], "cells": old["cells"] + res["scored"],
                  "engine": a.engine, "threads": a.threads, "cpu": cpu_name(), "git": git_sha(),
                  "date": time.strftime("%Y-%m-%d %H:%M:%S"), "load_average": list(os.getloadavg())}
        tpath.write_text(json.dumps(timing, indent=1))
    # the report covers every dataset scored in the folder, not only this run's (a run that
    # extends one dataset must not drop the others' tables)
    shown = [d for d in ("cifar10", "cifar100", "ImageNet16-120")
             if (folder / d / "scores.csv").exists()]
    lines = ["# Modern proxies and label-free ensembles on NAS-Bench-201", "",
             f"Report of `bench/study_modern_proxies.py --out {_shown_path(folder)}` over the datasets scored "
             f"there ({', '.join(shown)}; each table states its files' images, engine and "
             f"scoring time); report written at git {git_sha()}, "
             f"{time.strftime('%Y-%m-%d %H:%M:%S')}, {cpu_name()}. Definitions: "
             "docs/proxies_modern.md.", ""]
    for ds in shown:
        lines += report(folder, ds, a.target) + [""]
        lines += report(folder, ds, a.target, unique=True) + [""]
        if a.exclude_first:
            lines += report(folder, ds, a.target, exclude=(
                a.exclude_first, a.seed, a.exclude_why)) + [""]
    if (folder / "NOTES.md").exists():
        lines += ["Findings, comparisons with the literature and their explanations: NOTES.md.", ""]
    (folder / "README.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
