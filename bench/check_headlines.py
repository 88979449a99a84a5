"""Headline numbers of the README recomputed from committed score files (no scoring):

    python bench/check_headlines.py

1. The out-of-sample Spearman of ``ensemble:az_nas+meco`` on the NB201 cells of
   bench/results/modern_3000 (CIFAR-10, CIFAR-100, ImageNet16-120) outside the 200-cell pilot (the first 200 of ``nb201.sample(., 0)``),
   with a 95% percentile bootstrap interval over cells (seeded, ranks of the ensemble taken over
   those cells once); on CIFAR-10 also the pilot's best ensemble, ``ensemble:vkdnw_agg+meco``,
   VKDNW's own aggregate ``vkdnw_agg``, and ``ensemble:az_nas+meco+synflow`` (chosen on the
   CIFAR-100 table, so out of sample here). The score files of a dataset are joined by cell as
   the study's report joins them (study_modern_proxies.load_scores).
2. zcfast's synflow over the 292-cell NB101 pool (bench/results/nb101_c10_subset/pool_synflow.csv)
   against NASLib's released synflow of the same cells (per-cell Spearman), and against the
   per-model study's cells (largest relative difference).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def ensemble_out_of_sample(dataset: str = "cifar10", col: str = "ensemble:az_nas+meco",
                           boot: int = 1000, seed: int = 0) -> None:
    from study_modern_proxies import load_scores

    from zcfast.data import groundtruth
    from zcfast.proxies.ensemble import is_ensemble
    from zcfast.scoring import add_ensembles
    from zcfast.spaces import nb201

    df, _ = load_scores(HERE / "results/modern_3000", dataset)
    pilot = {int(i) for i in nb201.sample(200, 0)}
    ens = [c for c in df.columns if is_ensemble(c)]
    d = df.drop(columns=ens)[[int(i) not in pilot for i in df.index]]
    d = add_ensembles(d, [col])
    x = d[col].to_numpy(float)
    y = groundtruth(dataset)["test_acc"].to_numpy()[d.index]
    ok = np.isfinite(x)
    x, y = x[ok], y[ok]
    g = np.random.default_rng(seed)
    bs = [spearmanr(x[k], y[k]).correlation for k in (g.integers(0, len(x), len(x))
                                                      for _ in range(boot))]
    lo, hi = np.percentile(bs, [2.5, 97.5])
    print(f"{dataset}: {col} on the {len(x)} cells outside the pilot: Spearman "
          f"{spearmanr(x, y).correlation:.3f}, 95% bootstrap [{lo:.3f}, {hi:.3f}] ({boot} draws)")


def nb101_synflow_agreement() -> None:
    from zcfast.data.nb101 import naslib_scores
    from zcfast.scoring import read_scores

    pool, _ = read_scores(HERE / "results/nb101_c10_subset/pool_synflow.csv")
    study, _ = read_scores(HERE / "results/nb101_c10_subset/scores.csv")
    nas = naslib_scores("mean")["synflow"].reindex(pool.index)
    print(f"NB101 pool synflow ({len(pool)} cells) vs NASLib's released synflow: per-cell Spearman "
          f"{spearmanr(pool['synflow'], nas).correlation:.4f}")
    both = [h for h in study.index if np.isfinite(study.loc[h, "synflow"])]
    rel = np.abs(pool.loc[both, "synflow"].to_numpy() / study.loc[both, "synflow"].to_numpy() - 1)
    print(f"  vs the per-model study's {len(both)} cells: largest relative difference {rel.max():.1e}")


if __name__ == "__main__":
    for ds in ("cifar10", "cifar100", "ImageNet16-120"):
        ensemble_out_of_sample(ds)
    for c in ("ensemble:vkdnw_agg+meco", "vkdnw_agg", "ensemble:az_nas+meco+synflow"):
        ensemble_out_of_sample("cifar10", c)
    nb101_synflow_agreement()
