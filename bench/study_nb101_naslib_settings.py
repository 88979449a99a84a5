"""Why zcfast and NASLib disagree on NB101: rescore the subset's cells with NASLib's settings.

    python bench/study_nb101_naslib_settings.py [--cells N] [--threads 2]

NASLib's zero-cost file (bundled as the NB101 subset) was computed (automl/NASLib at 8b8ca4a,
run config and code read there) with batch 32, a new random training batch for every proxy,
CIFAR-10 normalised with std (0.2470, 0.2435, 0.2616), and a new random network per record.
This script keeps zcfast's network and proxies and switches only the data to NASLib's: batch 32,
NASLib's normalisation, one seeded batch per (cell, proxy). If zcfast's agreement with NASLib
rises from the paper-settings run (study_nb101_correlation.py) to this one, the batch explains
the gap; what remains is the noise of NASLib's single random draws (its own records of the same
cell agree only that well: see the main report).

Writes bench/results/nb101_c10_subset_naslib_settings/scores.csv (resumable, keyed by hash); the
main report picks it up.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from study_nb101_correlation import PROXIES, cut_torn, read_rows  # noqa: E402

FOLDER = HERE / "results" / "nb101_c10_subset_naslib_settings"
NASLIB_MEAN = (0.49139968, 0.48215827, 0.44653124)
NASLIB_STD = (0.24703233, 0.24348505, 0.26158768)
BATCH = 32


def main() -> None:
    from zcfast.data import image_source
    from zcfast.data.nb101 import subset_groundtruth
    from zcfast.proxies import compute_measures
    from zcfast.scoring import cpu_name, git_sha
    from zcfast.spaces.nb101_model import build_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=292)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    src = dataclasses.replace(image_source("cifar10"), mean=NASLIB_MEAN, std=NASLIB_STD)
    FOLDER.mkdir(parents=True, exist_ok=True)
    out, meta_p = FOLDER / "scores.csv", FOLDER / "scores.csv.meta.json"
    if not meta_p.exists():
        meta_p.write_text(json.dumps({
            "space": "nb101", "proxies": PROXIES, "seed": a.seed, "batch_size": BATCH,
            "batches": "one per (cell, proxy): seed = seed * 1_000_003 + 1_000 * row + proxy",
            "normalisation": {"mean": NASLIB_MEAN, "std": NASLIB_STD},
            "images_description": src.description, "git": git_sha(), "cpu": cpu_name(),
            "threads": a.threads, "torch": torch.__version__,
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1))
    cut_torn(out)
    rows = read_rows(out)
    done = {r["hash"] for r in rows}
    gt = subset_groundtruth()
    todo = [(k, h, int(c)) for k, (h, c) in enumerate(zip(gt.index, gt["code"])) if h not in done]
    todo = todo[: max(0, a.cells - len(done))]
    fields = ["hash", "code", *PROXIES, "seconds"]
    new = not out.exists() or out.stat().st_size == 0
    with open(out, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        if new:
            w.writeheader()
        for row_k, h, code in todo:
            t0 = time.perf_counter()
            net = build_model(code, 10, seed=a.seed)
            vals = {}
            for j, p in enumerate(PROXIES):
                x, y = src.minibatch(BATCH, a.seed * 1_000_003 + 1_000 * row_k + j)
                vals[p] = compute_measures(net, x, y, [p])[p]
            dt = time.perf_counter() - t0
            w.writerow({"hash": h, "code": code, **{p: repr(float(vals[p])) for p in PROXIES},
                        "seconds": f"{dt:.2f}"})
            f.flush()
            print(f"[{len(done) + 1}] {h} {dt:.1f} s", flush=True)
            done.add(h)


if __name__ == "__main__":
    main()
