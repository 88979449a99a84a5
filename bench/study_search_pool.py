"""Study: zero-cost warmup and move on a search space's benchmarked pool (NB101's 292 bundled
cells, NB-NLP's 263 logged networks).

RAND, AE, RL and BP, each alone, with a proxy warmup and with proxy move proposals, on the pool
of a space whose ground truth is a pool (docs/spaces.md: a pool search only proposes pool
members). Every oracle query is charged; 20 seeds by default. The headline is what the driver
reports: the value of the best-validation network among the first n trained. NB101's bundled
pool holds only validation accuracy, so there the selection and the reported value are the same
number; NB-NLP reports the test log-perplexity (negated) at the best validation epoch.

Proxy scores of every pool member come from ``zcfast score`` CSV files (``--scores``, several
files are joined, e.g. the shards of bench/study_nbnlp_correlation.py) or, for NB101, from
NASLib's released synflow for the same cells (``--naslib``: the bundled subset's scores, mean
over a cell's records; NASLib computes the same definition on archai's port of the same network,
one random network per record; its values are the log of the sum, which leaves every ranking,
and so every search, unchanged).

    python bench/study_search_pool.py --space nb101 (--scores CSV | --naslib) [--seeds 20]
    python bench/study_search_pool.py --space nbnlp --scores A.csv B.csv --proxy synflow

Runs go to runs/search_<space>_pool/<proxy source>/*.jsonl (resumed); outputs
bench/results/search_<space>_pool*.{md,png} and a gzipped bundle of every run.
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
sys.path.insert(0, str(HERE))

from study_search_nb201 import bootstrap_ci, check_runs, holm, verdict  # noqa: E402

from zcfast.scoring import git_sha, read_scores  # noqa: E402
from zcfast.search import (  # noqa: E402
    DEFAULT_OPTIONS,
    complete_runs,
    curve_matrix,
    curve_table,
    plot_curves,
    run_variants,
    universe,
    universe_ids,
)
from zcfast.search.runs import Variant  # noqa: E402

# per space: its dataset, the default budget, the unit of its headline, and what lies beyond
# the pool
SPACES = {
    "nb101": {"dataset": "cifar10", "budget": 100, "part": 100, "unit": "%", "title": "NB101",
              "beyond": "the rest of NB101's 423,624 cells (with the official file, `--data`, "
                        "the same search runs over the whole space)"},
    "nbnlp": {"dataset": "wikitext2", "budget": 50, "part": 88, "unit": " nats", "title": "NB-NLP",
              "beyond": "the rest of NAS-Bench-NLP's space (14k trained cells on PTB, and far "
                        "more untrained ones)"},
}


def variants(pool: int, part: int) -> tuple:
    """The study's variants: each algorithm alone, with a warmup over ``part`` networks (about a
    third of the pool) and over all of it, and with move proposals."""
    return (
        Variant("rand"), Variant("rand", warmup=part), Variant("rand", warmup=pool),
        Variant("rand", move=10),
        Variant("ae"), Variant("ae", warmup=part), Variant("ae", warmup=pool), Variant("ae", move=24),
        Variant("rl"), Variant("rl", warmup=part), Variant("rl", move=10),
        Variant("bp"), Variant("bp", warmup=min(64, part)), Variant("bp", move=30),
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="nb101", choices=sorted(SPACES))
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--scores", nargs="+", help="zcfast score CSV file(s) with the proxy column "
                     "(joined by network: zcfast.scoring.read_score_files)")
    src.add_argument("--naslib", action="store_true",
                     help="nb101: NASLib's released synflow of the pool cells (bundled)")
    ap.add_argument("--proxy", default="synflow", help="the score column used by warmup and move")
    ap.add_argument("--budget", type=int, default=None, help="default: the space's (nb101 100, "
                    "nbnlp 50)")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--runs-dir", default=None,
                    help="default: runs/search_<space>_pool")
    ap.add_argument("--out", default=None,
                    help="default: bench/results/search_<space>_pool_<source>.md")
    a = ap.parse_args(argv)
    t0 = time.time()
    sp = SPACES[a.space]
    unit = sp["unit"]
    uni = universe(sp["dataset"], space=a.space)
    from zcfast.search.driver import ground_truth

    if ground_truth(sp["dataset"], a.space).complete:
        raise SystemExit(f"{a.space}: its table is the complete space, not a pool")
    pool = len(uni)
    budget = a.budget or sp["budget"]
    if a.naslib:
        if a.space != "nb101" or a.proxy != "synflow":
            raise SystemExit("--naslib holds NASLib's synflow of the NB101 pool only")
        from zcfast.data.nb101 import naslib_scores

        syn = naslib_scores("mean")["synflow"]
        proxy_what = ("NASLib's released synflow of these cells (bundled subset, NAS-Bench-Suite-"
                      "Zero, Krishnakumar et al., NeurIPS 2022 Datasets and Benchmarks; mean over a "
                      "cell's records, each a new random network; log of the sum, same ranking)")
        source = "naslib_synflow"
    else:
        from zcfast.scoring import read_score_files

        # joined as zcfast correlate joins files (same settings; shared cells must agree)
        syn = read_score_files(a.scores, columns=[a.proxy])[0][a.proxy]
        gits = sorted({read_scores(f)[1].get("git", "?") for f in a.scores})
        proxy_what = (f"zcfast's {a.proxy}, weight seed 0 "
                      f"({', '.join(f'`{Path(f).name}`' for f in a.scores)}, git {', '.join(gits)})")
        source = f"zcfast_{a.proxy}"
    runs_dir = Path(a.runs_dir or HERE.parent / "runs" / f"search_{a.space}_pool") / source
    out = Path(a.out or HERE / "results" / f"search_{a.space}_pool_{source.split('_', 1)[0]}.md")
    from scipy.stats import kendalltau, spearmanr

    ids = universe_ids(sp["dataset"], space=a.space)
    missing = [h for h in ids if h not in syn.index]
    if missing:
        raise SystemExit(f"{a.proxy}: {len(missing)} of the {pool} pool members have no score, "
                         f"e.g. {missing[0]}")
    table = np.array([syn[h] for h in ids], dtype=np.float64)
    finite = np.isfinite(table)
    if not finite.all():  # a NaN must not rank anywhere by accident: last, and said so
        table = np.where(finite, table, -np.inf)
    rho = spearmanr(table[finite], uni.val[finite]).correlation
    tau = kendalltau(table[finite], uni.val[finite]).correlation
    print(f"{a.proxy} vs {uni.val_name} over the pool: Spearman {rho:.3f}, Kendall {tau:.3f}")
    VARIANTS = variants(pool, sp["part"])
    groups = run_variants(runs_dir, VARIANTS, dataset=sp["dataset"], budget=budget,
                          seeds=a.seeds, proxy=a.proxy, score_seed=0, progress=False,
                          space=a.space, scores=table)
    for v, runs in groups.items():
        ok, bad = complete_runs(runs)
        if bad:
            raise SystemExit(f"{v.label}: {len(bad)} runs failed to spend their budget")
    png = out.with_suffix(".png")
    plot_curves(groups, png, title=(f"{sp['title']} pool of {pool}, budget {budget}, {a.seeds} "
                                    f"seeds: {uni.test_name} of the best-validation network"))
    rows = []
    for v, runs in groups.items():
        if v.warmup == 0 and v.move == 0:
            continue
        base, var = curve_matrix(groups[v.baseline]), curve_matrix(runs)
        from scipy.stats import mannwhitneyu

        for at in [k for k in (10, 25, 50) if k <= budget]:
            xv, xb = var[:, at - 1], base[:, at - 1]
            lo, hi = bootstrap_ci(xv, xb)
            p = float(mannwhitneyu(xv, xb, alternative="greater").pvalue) \
                if not np.array_equal(np.sort(xv), np.sort(xb)) else 1.0
            rows.append([f"{v.label} vs {v.baseline.label}", at, xv.mean(), xb.mean(), lo, hi, p])
    for r, p_adj in zip(rows, holm([r[-1] for r in rows])):
        r.append(p_adj)
    order = np.argsort(-table, kind="stable")
    best_i = int(np.argmax(uni.val))
    rank_best = int(np.nonzero(order == best_i)[0][0]) + 1
    revisits = {v.label: float(np.mean([r["revisits"] for r in runs])) for v, runs in groups.items()}
    at = [k for k in (1, 10, 25, 50, 75, 100) if k <= budget]
    from zcfast.scoring import cpu_name

    cmd = " ".join(["python bench/study_search_pool.py", *(argv if argv is not None else sys.argv[1:])])
    same = np.array_equal(uni.val, uni.test)
    lines = [
        f"# Zero-cost warmup and move on the {sp['title']} pool ({pool} networks)", "",
        f"git {git_sha()}, {cpu_name()}, {time.strftime('%Y-%m-%d %H:%M')}; `{cmd}` "
        f"({time.time() - t0:.0f} s).", "",
        f"- Universe: {uni.description}.",
        f"- Budget {budget} trained models of the {pool}, {a.seeds} seeds; every oracle query is "
        "charged, repeats included; every run spent its budget.",
        "- **Headline** (what the driver reports as `test_curve`): the "
        f"{uni.test_name} of the network with the best {uni.val_name} among the first n "
        "trained."
        + (" The pool has **validation values only**, so the selected network's reported value "
           "is that same validation value: an optimistic number, not a held-out one." if same
           else ""),
        f"- Best network of the pool by {uni.val_name}: {uni.val[best_i]:.2f}{unit} (its "
        f"{uni.test_name}: {uni.test[best_i]:.2f}{unit}; rank {rank_best} of {pool} by "
        f"{a.proxy}). Pool mean {np.mean(uni.val):.2f}{unit}, median "
        f"{np.median(uni.val):.2f}{unit}.",
        f"- Proxy: {proxy_what}; over the pool: Spearman {rho:.3f}, Kendall {tau:.3f} against "
        f"the {uni.val_name}"
        + ("" if finite.all() else f" ({int((~finite).sum())} networks without a finite score "
           "rank last in the searches and are left out of these two numbers)") + ".",
        "- Driver defaults: " + ", ".join(f"{k}={v}" for k, v in DEFAULT_OPTIONS.items()) + ".",
        "- A pool search proposes only pool members: sampling is uniform over the pool, "
        "neighbours are the nearest pool members in the predictor encoding, RL's policy is "
        f"restricted to the pool (docs/spaces.md). warmup({pool}) ranks the whole pool by "
        f"{a.proxy}, so its first trained networks are the same for every seed.", "",
        f"![curves]({png.name})", "",
        "## Does each variant beat its baseline?", "",
        "Mean headline value of the selected network after k trained models, difference with a 95% "
        "bootstrap interval, one-sided Mann-Whitney U (variant > baseline) over the seeds, "
        f"Holm-adjusted over all {len(rows)} comparisons. yes: p Holm < 0.05 and a higher mean; no: lower mean; "
        "n.s.: otherwise.", "",
        "| variant vs baseline | k | variant | baseline | diff [95% CI] | p | p Holm | beats? |",
        "|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for name, k, va, ba, lo, hi, p, p_adj in rows:
        lines.append(f"| {name} | {k} | {va:.2f} | {ba:.2f} | {va - ba:+.2f} [{lo:+.2f}, {hi:+.2f}]"
                     f" | {p:.2g} | {p_adj:.2g} | {verdict(va, ba, p_adj)} |")
    lines += [
        "", f"## {uni.test_name} of the selected network [25%, 75%] after k trained models", "",
        curve_table(groups, at), "",
        "## Diagnostics", "",
        f"- {uni.val_name} of the top-10 pool networks by {a.proxy}: "
        + ", ".join(f"{uni.val[i]:.2f}" for i in order[:10]) + ".",
        "- Mean charged revisits per run: "
        + ", ".join(f"{k} {v:.0f}" for k, v in revisits.items()) + ".",
        f"- A pool of {pool} networks says how well {a.proxy} orders these networks and how fast a "
        f"search finds the pool's best; it says nothing about {sp['beyond']}. With a budget "
        f"of {budget}, a search trains {budget / pool:.0%} of the pool, so differences between "
        "variants shrink quickly.", "",
        f"Runs: `{out.stem}_runs.jsonl.gz` (one line per variant and seed).", "",
    ]
    out.write_text("\n".join(lines))
    with gzip.open(out.with_name(out.stem + "_runs.jsonl.gz"), "wt") as f:
        for v, runs in groups.items():
            for r in runs:
                f.write(json.dumps({"variant": v.label, **r}, separators=(",", ":")) + "\n")
    print("\n".join(lines))
    check_runs(groups)
    return 0


if __name__ == "__main__":
    sys.exit(main())
