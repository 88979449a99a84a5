"""Score all 15,625 NB201 cells with synflow, params and flops on this CPU (packed engine) for
the three datasets, report the wall time and the Spearman table, and cross-check the packed
synflow against an independent per-model (loop engine) run where one is committed.

    python bench/study_synflow_all.py [--threads 1] [--datasets cifar10,cifar100,ImageNet16-120]

Score files go to bench/results/synflow_all/ (resumable: rerunning continues them); the
summary to bench/results/synflow_all.md. Synflow reads no image (all-ones input), so it depends
on the dataset only through the number of classes and the input size.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "synflow_all"
LOOP_REF = {"cifar100": HERE / "data" / "synflow_nb201_cifar100_seed0.csv.gz"}


def main() -> None:
    from zcfast.correlate import correlation_table
    from zcfast.scoring import cpu_name, git_sha, read_scores, score_to_file

    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--datasets", default="cifar10,cifar100,ImageNet16-120")
    ap.add_argument("--chunk", type=int, default=16)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    OUT.mkdir(parents=True, exist_ok=True)
    timing_p = OUT / "timing.json"
    timing = json.loads(timing_p.read_text()) if timing_p.exists() else {}
    lines = []
    for ds in a.datasets.split(","):
        f = OUT / f"synflow_params_flops_{ds}.csv"
        res = score_to_file(f, archs="all", proxies="synflow,params,flops", dataset=ds, seed=0,
                            engine="packed", resume=True, chunk=a.chunk, progress=True)
        if res["scored"]:
            prev = timing.get(ds, {"seconds": 0.0, "cells": 0})
            timing[ds] = {"seconds": prev["seconds"] + res["seconds"],
                          "cells": prev["cells"] + res["scored"], "threads": a.threads,
                          "chunk": a.chunk, "git": git_sha(), "cpu": cpu_name(),
                          "load_average": os.getloadavg()}
            timing_p.write_text(json.dumps(timing, indent=1))
        scores, meta = read_scores(f)
        tab = correlation_table(scores[["arch", "synflow", "params", "flops"]], ds)
        t = timing.get(ds, {})
        lines.append(f"## {ds} ({len(scores)} cells)\n")
        if t:
            lines.append(f"Wall time: {t['seconds']:.0f} s for {t['cells']} cells "
                         f"({t['cells'] / t['seconds']:.1f} cells/s, {t['threads']} thread(s), "
                         f"chunk {t['chunk']}, {t['cpu']}, git {t['git']}, load average at the end "
                         f"{tuple(round(v, 2) for v in t['load_average'])}).\n")
        lines.append("| proxy | Spearman | Kendall | paper abs Spearman |\n|---|---:|---:|---:|")
        for p, r in tab.iterrows():
            paper = "" if math.isnan(r.paper_abs_spearman) else f"{r.paper_abs_spearman:.3f}"
            lines.append(f"| {p} | {r.spearman:+.3f} | {r.kendall:+.3f} | {paper} |")
        lines.append("")
        ref_p = LOOP_REF.get(ds)
        if ref_p is not None and ref_p.exists():
            with gzip.open(ref_p, "rt") as fh:
                ref = pd.read_csv(io.StringIO(fh.read())).set_index("index")
            common = scores.index.intersection(ref.index)
            a_ = scores.loc[common, "synflow"].to_numpy()
            b_ = ref.loc[common, "synflow"].to_numpy()
            rel = np.abs(a_ - b_) / np.maximum(np.maximum(np.abs(a_), np.abs(b_)), 1e-300)
            rel[(a_ == b_)] = 0.0
            lines.append(f"Cross-check against the per-model (loop engine) synflow of "
                         f"`{ref_p.relative_to(HERE.parent)}`: {len(common)} cells, max relative "
                         f"difference {rel.max():.2e}, median {np.median(rel):.2e}.\n")
    head = ["# Synflow, params and flops for all 15,625 NB201 cells (packed engine, CPU)", "",
            "Weights seed 0 (counter-based, per cell), float64 synflow with the paper code's BN "
            "rule; flops = conv/linear multiply-accumulates per sample. Target: 200-epoch test "
            "accuracy of the bundled NB201 table. Produced by `bench/study_synflow_all.py`.", ""]
    (HERE / "results" / "synflow_all.md").write_text("\n".join(head + lines) + "\n")
    print("\n".join(head + lines))


if __name__ == "__main__":
    main()
