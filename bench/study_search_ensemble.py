"""Study: a label-free ensemble as the search driver's proxy, next to its members alone.

NB201 CIFAR-100, budget 300 trained models (every oracle query charged), 20 seeds (0..19), the
headline curve (test accuracy of the best-validation cell among the first n trained). Proxies:
synflow, flops, and their ensembles ``ensemble:synflow+flops`` (sum of log ranks) and
``ensemble[meanrank]:synflow+flops``, all scored over the whole space
(bench/results/synflow_all/synflow_params_flops_cifar100.csv, imported into a private score
cache). Variants: RAND+warmup(1000), AE+warmup(1000), AE+move(10); RAND and AE without a proxy
as baselines. Design fixed before any run: these are the only members with full-space CIFAR-100
scores in this repository (the modern proxies' full-space scores need a GPU or hours of CPU).
Added later, before any search with it: meco and ``ensemble:synflow+meco``. MeCo is, with
az_nas, the strongest single proxy of the 3,000-cell table (bench/results/modern_3000) and one
batch-1 forward per cell, so it was scored over the whole space on a CPU
(bench/results/meco_all). Added last, again before any search with them: az_nas and the
strongest ensemble of the 3,000-cell table, ``ensemble:az_nas+meco``, once az_nas had been
scored over all cells on two CPU lanes (about 0.75 s per cell; bench/results/az_nas_all, two
files of half the cells each, both imported with repeated ``--scores``). Added after that,
and chosen in sample: ``ensemble:az_nas+meco+synflow``, the best in Spearman and hit rate of
six ensembles of az_nas, meco, synflow and flops (four of them tried for this) on the
full-space CIFAR-100 correlation table (Spearman 0.924, hit 50/500 0.60,
bench/results/az_nas_all/README.md); its correlation was then checked
out of sample on ImageNet16-120's and CIFAR-10's 3,000 cells and CIFAR-10's whole space, its
search effect only here (the same CIFAR-100 cells it was chosen on: read its rows with that in
mind).

    python bench/study_search_ensemble.py [--seeds 20]

Runs go to runs/search_ensemble/<variant>__<proxy>.jsonl (resumed; bundled as
bench/results/search_ensemble_runs.jsonl.gz); the report to
bench/results/search_ensemble.md: mean test accuracy at k = 10, 25, 50, 100, 300 and, for each
ensemble against synflow under the same variant and seeds, the paired mean difference with a 95%
bootstrap interval over seeds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from zcfast.scoring import cpu_name, git_sha  # noqa: E402
from zcfast.search import curve_matrix, read_runs  # noqa: E402

SCORES = HERE / "results" / "synflow_all" / "synflow_params_flops_cifar100.csv"
# meco over all 15,625 cells (with synflow and flops, in one file so that an ensemble of them
# finds every member): bench/results/meco_all, `zcfast score --dataset cifar100 --archs all
# --proxies synflow,meco,flops --seed 0`
MECO_SCORES = HERE / "results" / "meco_all" / "synflow_meco_flops_cifar100.csv"
# az_nas's four components over all 15,625 cells, in two halves scored side by side:
# bench/results/az_nas_all, `zcfast score --dataset cifar100 --archs <half> --proxies az_nas
# --seed 0` (same minibatch settings as the meco file)
AZ_SCORES = [HERE / "results" / "az_nas_all" / f"az_nas_cifar100_{h}.csv" for h in ("a", "b")]
PROXIES = ["synflow", "flops", "ensemble:synflow+flops", "ensemble[meanrank]:synflow+flops",
           "meco", "ensemble:synflow+meco", "az_nas", "ensemble:az_nas+meco",
           "ensemble:az_nas+meco+synflow"]
SCORE_FILES = {"meco": [MECO_SCORES], "ensemble:synflow+meco": [MECO_SCORES],  # else [SCORES]
               "az_nas": AZ_SCORES, "ensemble:az_nas+meco": [MECO_SCORES] + AZ_SCORES,
               "ensemble:az_nas+meco+synflow": [MECO_SCORES] + AZ_SCORES}
VARIANTS = [("rand", 1000, 0), ("ae", 1000, 0), ("ae", 0, 10)]
BASELINES = [("rand", 0, 0), ("ae", 0, 0)]
KS = (10, 25, 50, 100, 300)


def vname(algo, w, m) -> str:
    s = algo.upper()
    if w:
        s += f"+warmup({w})"
    if m:
        s += f"+move({m})"
    return s


def run(algo, w, m, proxy, seeds, runs_dir: Path, cache: Path) -> list:
    safe = proxy.replace(":", "_").replace("+", "-").replace("[", "").replace("]", "")
    out = runs_dir / f"{vname(algo, w, m)}__{safe}.jsonl"
    cmd = [sys.executable, "-m", "zcfast.cli", "search", "--algo", algo, "--warmup", str(w),
           "--move", str(m), "--budget", "300", "--seeds", str(seeds), "--dataset", "cifar100",
           "--proxy", proxy, "--cache-dir", str(cache), "--out", str(out),
           "--resume", "--no-progress", "--engine", "loop"]
    for f in SCORE_FILES.get(proxy, [SCORES]):
        cmd += ["--scores", str(f)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    runs = sorted(read_runs(out), key=lambda r: r["seed"])[:seeds]
    if len(runs) != seeds or any(int(r["queries"]) != 300 for r in runs):
        raise RuntimeError(f"{out}: incomplete runs")
    if any(int(r.get("scored_live", 0)) for r in runs):
        raise RuntimeError(f"{out}: cells scored live: the cache should hold every score")
    return runs


def check_same_synflow(a: Path, b: Path) -> None:
    """The two score files' synflow columns must hold the same cells and agree to float64
    rounding (1e-12 relative; measured 2.2e-15 at most), so that which file the cache imported
    synflow from cannot change a ranking."""
    from zcfast.scoring import read_scores

    sa = read_scores(a)[0]["synflow"].sort_index()
    sb = read_scores(b)[0]["synflow"].sort_index()
    if not sa.index.equals(sb.index) or not np.allclose(sa.to_numpy(), sb.to_numpy(),
                                                         rtol=1e-12, atol=0.0):
        raise RuntimeError(f"{a} and {b} hold different synflow scores")


def check_complete(files) -> None:
    """The files must together hold every cell of the space for every column: a cell missing
    would be scored live (by another engine) and cached before the files are complete."""
    from zcfast.scoring import read_score_files

    df = read_score_files(files)[0]
    held = df.attrs.get("held", {})
    short = {c: 15625 - len(h) for c, h in held.items() if len(h) < 15625}
    if len(df) < 15625 or short:
        raise RuntimeError(f"{', '.join(map(str, files))}: not every cell is scored yet "
                           f"({len(df)} cells; missing per column {short})")


def boot_ci(d: np.ndarray, n: int = 10000, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (n, len(d)))].mean(1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--runs-dir", default=str(HERE.parent / "runs" / "search_ensemble"))
    ap.add_argument("--cache-dir", default=str(HERE.parent / "runs" / "search_ensemble_cache"))
    ap.add_argument("--out", default=str(HERE / "results" / "search_ensemble.md"))
    a = ap.parse_args(argv)
    runs_dir, cache = Path(a.runs_dir), Path(a.cache_dir)
    check_same_synflow(SCORES, MECO_SCORES)
    check_complete(AZ_SCORES)
    runs_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    curves = {}
    for algo, w, m in BASELINES:
        curves[(vname(algo, w, m), "-")] = curve_matrix(run(algo, w, m, "synflow", a.seeds, runs_dir, cache))
    for algo, w, m in VARIANTS:
        for p in PROXIES:
            curves[(vname(algo, w, m), p)] = curve_matrix(run(algo, w, m, p, a.seeds, runs_dir, cache))
    secs = time.perf_counter() - t0
    lines = ["# A label-free ensemble as the search proxy (NB201 CIFAR-100)", "",
             f"`python bench/study_search_ensemble.py --seeds {a.seeds}`; git {git_sha()}, "
             f"{time.strftime('%Y-%m-%d %H:%M')}, {cpu_name()}, {secs:.0f} s (scores from the "
             "cache, no live scoring).", "",
             "Budget 300 trained models, every oracle query charged; headline: test accuracy "
             "(200 epochs) of the cell with the best validation accuracy among the first k trained, "
             f"mean over {a.seeds} seeds (0..{a.seeds - 1}). Ensemble ranks are over the cells each "
             "comparison compares (the warmup pool; the move's candidates), docs/search.md. "
             "Members scored over all 15,625 cells: synflow (CIFAR-100 network, weight seed 0, "
             "float64) and flops (conv/linear multiply-accumulates), "
             "bench/results/synflow_all/synflow_params_flops_cifar100.csv; meco (one bundled "
             "image, batch 1, weight seed 0; the file's synflow equals the other's to 1e-12), "
             "bench/results/meco_all/synflow_meco_flops_cifar100.csv; az_nas's four components "
             "(batch 64 of the same bundled images, weight seed 0; az_nas is their sum of log "
             "ranks, ranked like any ensemble over the cells compared), "
             "bench/results/az_nas_all/az_nas_cifar100_{a,b}.csv.", "",
             "| variant | proxy | " + " | ".join(f"@{k}" for k in KS) + " |",
             "|---|---|" + "---:|" * len(KS)]
    for (v, p), c in curves.items():
        lines.append(f"| {v} | {p} | " + " | ".join(f"{c[:, k - 1].mean():.2f}" for k in KS) + " |")
    lines += ["", "Paired difference (proxy minus synflow, same variant and seeds), mean with a "
              "95% bootstrap interval over seeds (per cell, not corrected for the "
              f"{len(VARIANTS) * (len(PROXIES) - 1) * len(KS)} comparisons):", "",
              "| variant | proxy | " + " | ".join(f"@{k}" for k in KS) + " |",
              "|---|---|" + "---|" * len(KS)]
    for algo, w, m in VARIANTS:
        v = vname(algo, w, m)
        for p in PROXIES[1:]:
            d = curves[(v, p)] - curves[(v, "synflow")]
            cells = []
            for k in KS:
                lo, hi = boot_ci(d[:, k - 1])
                cells.append(f"{d[:, k - 1].mean():+.2f} [{lo:+.2f}, {hi:+.2f}]")
            lines.append(f"| {v} | {p} | " + " | ".join(cells) + " |")
    summary = {f"{v}|{p}": {str(k): float(c[:, k - 1].mean()) for k in KS} for (v, p), c in curves.items()}
    Path(a.out).write_text("\n".join(lines) + "\n")
    Path(a.out).with_suffix(".json").write_text(json.dumps(summary, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
