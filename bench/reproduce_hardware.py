"""Re-run the hardware study's searches with the current code and compare with its committed
per-run records (bench/results/hardware_runs.jsonl.gz): the selected cell, the best truly
feasible cell, the budget breaks, the test accuracy after 25 / 50 / 100 trained models and the
hypervolume at the same points. A driver change that moves any hardware-aware result shows up
here without rerunning the whole study (docs/hardware.md, "Results").

    OMP_NUM_THREADS=1 python bench/reproduce_hardware.py [--sample N] [--seed S]

Exit 1 on any mismatch. Shown failing: one record's ``selected`` cell edited in a copy of the
bundle (``--runs``) gives "1 mismatches".
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import pandas as pd  # noqa: E402
import study_hardware as S  # noqa: E402

from zcfast.search import run_search  # noqa: E402


def spec_of(key: str, budgets: dict, prox: dict) -> tuple:
    """(variant, dataset, hardware spec, estimate scores) of a study record's key."""
    parts = key.split("/")
    kind, ds, dev = parts[0], parts[1], parts[2]
    slugs = {v.slug: v for v in (*S.VARIANTS, *S.MO_VARIANTS, S.EST_VARIANT)}
    v = slugs[parts[-1]]
    if kind == "budget":
        return v, ds, {"device": dev, "max_latency": budgets[ds][(dev, parts[3])]}, None
    if kind == "mo":
        return v, ds, {"device": dev, "objectives": "accuracy,latency"}, None
    est, margin = parts[4], float(parts[5][1:])
    k = est.split(":")[0]
    return (v, ds, {"device": dev, "max_latency": budgets[ds][(dev, parts[3])], "estimate": est,
                    "margin": margin},
            {k: prox[ds][k]} if k in ("params", "flops") else None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default=str(S.RESULTS / "hardware_runs.jsonl.gz"))
    ap.add_argument("--sample", type=int, default=0, help="re-run N random records (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the outcome to this markdown file")
    a = ap.parse_args(argv)
    recs = [json.loads(line) for line in gzip.open(a.runs, "rt")]
    if a.sample:
        recs = random.Random(a.seed).sample(recs, min(a.sample, len(recs)))
    prox = {}
    for ds in S.DATASETS:
        df = pd.read_csv(str(S.SYNFLOW).format(ds=ds))
        prox[ds] = {k: df[k].to_numpy(np.float64) for k in ("synflow", "params", "flops")}
    budgets = {ds: S.budgets(ds) for ds in S.DATASETS}
    bad, t0 = [], time.time()
    for rec in recs:
        v, ds, spec, es = spec_of(rec["key"], budgets, prox)
        try:
            r = run_search(v.algo, ds, S.BUDGET, v.warmup, v.move, rec["seed"], "synflow",
                           scores=prox[ds]["synflow"], hardware=spec, estimate_scores=es)
        except ValueError as e:  # an estimate admitting fewer cells than the budget
            ok = rec["error"] == str(e)
        else:
            h = r["hw"]
            ok = (rec["error"] is None and h["selected"] == rec["selected"]
                  and h.get("best_within") == rec["best_within"]
                  and h.get("violations", {}) == rec["violations"]
                  and all(abs(r["test_curve"][int(k) - 1] - x) < 1e-3
                          for k, x in rec["test_at"].items()))
            if "hv_at" in rec:
                ok = ok and all(abs(r["hv_curve"][int(k) - 1] - x) < 1e-5
                                for k, x in rec["hv_at"].items())
        if not ok:
            bad.append(f"{rec['key']} seed {rec['seed']}")
    for b in bad[:20]:
        print("MISMATCH", b)
    line = f"{len(recs)} runs re-run, {len(bad)} mismatches ({time.time() - t0:.0f} s)"
    print(line)
    if a.out:
        from zcfast.scoring import cpu_name, git_sha

        Path(a.out).write_text(
            "# Hardware study: its committed runs re-run with the current code\n\n"
            f"git {git_sha()}, {time.strftime('%Y-%m-%d %H:%M')}, {cpu_name()}; "
            f"`python bench/reproduce_hardware.py` against `{Path(a.runs).name}` "
            "(selected cell, best truly feasible cell, budget breaks, test accuracy after 25 / "
            "50 / 100 trained models, hypervolume at the same points).\n\n"
            f"{line}.\n" + "".join(f"- mismatch: {b}\n" for b in bad))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
