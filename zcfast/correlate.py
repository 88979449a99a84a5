"""Rank correlation of proxy scores with NAS-Bench-201 ground truth."""

from __future__ import annotations

import math

import numpy as np

from zcfast.data import dataset_name, groundtruth

# |Spearman rho| over all 15,625 cells, from the outputs stored in the zero-cost paper's
# notebook (SamsungLabs/zero-cost-nas, notebooks/nasbench201_correlations.ipynb, commit ca61347).
PAPER_SPEARMAN = {
    "cifar10": {"grad_norm": 0.594, "snip": 0.596, "grasp": 0.514, "fisher": 0.360,
                "synflow": 0.737, "jacob_cov": 0.731},
    "cifar100": {"grad_norm": 0.637, "snip": 0.637, "grasp": 0.547, "fisher": 0.385,
                 "synflow": 0.763, "jacob_cov": 0.704},
    "ImageNet16-120": {"grad_norm": 0.578, "snip": 0.578, "grasp": 0.549, "fisher": 0.327,
                       "synflow": 0.751, "jacob_cov": 0.701},
}
BASELINE_12EP = "12-epoch training (baseline)"
# The paper's "vote" numbers are not Spearman: the notebook's fraction of ordered cell pairs
# (distinct accuracy) that the majority of synflow, jacob_cov and snip orders as the accuracy
# does (SamsungLabs/zero-cost-nas, notebooks/nasbench201_correlations.ipynb, commit ca61347).
PAPER_VOTE_PAIRS = {"cifar10": 0.817, "cifar100": 0.832, "ImageNet16-120": 0.813}
# top-k hit rate, defined on the full space: true top 50 among the proxy's top 500 of 15,625
HIT_TRUE, HIT_PROXY, SPACE_SIZE = 50, 500, 15625


def hit_sizes(n: int) -> tuple:
    """(k_true, k_proxy) for n compared cells: the full-space fractions 50/15625 and
    500/15625 of n, rounded, at least 1 each (exactly 50 and 500 when n = 15,625)."""
    return (max(1, round(HIT_TRUE * n / SPACE_SIZE)), max(1, round(HIT_PROXY * n / SPACE_SIZE)))


def _top_membership(v: np.ndarray, k: int) -> np.ndarray:
    """P(cell in the top k by v) under uniformly random tie-breaking: 1 above the k-th value,
    (free slots / tied cells) for cells tied with it, 0 below. NaN ranks lowest."""
    v = np.where(np.isnan(v), -np.inf, v)
    k = min(k, len(v))
    kth = np.sort(v)[::-1][k - 1]
    above = v > kth
    tied = v == kth
    p = above.astype(np.float64)
    p[tied] = (k - above.sum()) / tied.sum()
    return p


def hit_rate(proxy: np.ndarray, target: np.ndarray) -> float:
    """Expected fraction of the true top k_true cells (by target) found among the proxy's top
    k_proxy (:func:`hit_sizes` of the number of cells), ties at either boundary broken uniformly
    at random (in expectation). NaN proxy values rank lowest; all cells count."""
    kt, kp = hit_sizes(len(proxy))
    pt = _top_membership(np.asarray(target, np.float64), kt)
    pp = _top_membership(np.asarray(proxy, np.float64), kp)
    return float((pt * pp).sum() / kt)


def top_fraction_spearman(proxy: np.ndarray, target: np.ndarray, frac: float = 0.1):
    """(n, Spearman) over the top ``frac`` of the cells by target: the ceil(frac * n) cells with
    the highest target (ties at the boundary broken by position, i.e. lower NB201 index first
    in a score file), NaN proxy values then left out as in :func:`_corr`."""
    k = max(1, math.ceil(frac * len(target)))
    order = np.lexsort((np.arange(len(target)), -np.asarray(target, np.float64)))[:k]
    n, rho, _ = _corr(np.asarray(proxy, np.float64)[order], np.asarray(target, np.float64)[order])
    return n, rho


def _corr(a: np.ndarray, b: np.ndarray):
    from scipy import stats

    ok = ~(np.isnan(a) | np.isnan(b))
    n = int(ok.sum())
    if n < 3:
        return n, math.nan, math.nan
    a, b = a[ok], b[ok]
    # +-inf are legitimate extreme scores (e.g. nwot of a dead cell): rank them, do not drop
    rho = stats.spearmanr(a, b).statistic
    tau = stats.kendalltau(a, b).statistic
    return n, float(rho), float(tau)


def correlation_table(scores, dataset: str, target: str = "test_acc"):
    """DataFrame (one row per proxy, plus the 12-epoch baseline) with n, Spearman, Kendall
    (signed), |Spearman| and the paper's |Spearman| where it exists. NaN scores are left out
    (as the paper's notebook does with ``nan_policy='omit'``); the count says how many remain."""
    import pandas as pd

    ds = dataset_name(dataset)
    gt = groundtruth(ds)
    if target not in ("test_acc", "val_acc"):
        raise ValueError(f"target must be test_acc or val_acc, got {target!r}")
    idx = scores.index.to_numpy()
    acc = gt[target].to_numpy()[idx]
    rows = []
    proxies = [c for c in scores.columns if c != "arch"]
    for p in proxies:
        v = scores[p].to_numpy(dtype=np.float64)
        n, rho, tau = _corr(v, acc)
        rows.append({"proxy": p, "n": n, "spearman": rho, "kendall": tau,
                     "abs_spearman": abs(rho), "paper_abs_spearman": PAPER_SPEARMAN[ds].get(p, math.nan),
                     **_rank_metrics(v, acc, _vote_members(scores, p)),
                     "paper_pair_agree": PAPER_VOTE_PAIRS[ds] if p == "vote" else math.nan})
    v12 = gt["test_acc_12ep"].to_numpy()[idx]
    n, rho, tau = _corr(v12, acc)
    rows.append({"proxy": BASELINE_12EP, "n": n, "spearman": rho, "kendall": tau,
                 "abs_spearman": abs(rho), "paper_abs_spearman": math.nan,
                 **_rank_metrics(v12, acc, None), "paper_pair_agree": math.nan})
    tab = pd.DataFrame(rows).set_index("proxy")
    tab.attrs["hit_sizes"] = hit_sizes(len(idx))
    return tab


def _vote_members(scores, col):
    """(n, k) member scores of a vote-rule ensemble column, else None."""
    from zcfast.proxies import ensemble as ens

    if not ens.is_ensemble(col) or ens.parse(col).rule != "vote":
        return None
    base = {m: scores[m].to_numpy(dtype=np.float64) for m in ens.base_members(col)}
    return np.column_stack([ens.evaluate(m, base) if m in ens.FIXED else base[m]
                            for m in ens.parse(col).members])


def _rank_metrics(v: np.ndarray, acc: np.ndarray, vote_members) -> dict:
    """Top-10% Spearman, hit rate, and the notebook's pairwise agreement (of the vote's members
    for a vote ensemble, of the column itself otherwise)."""
    from zcfast.proxies.ensemble import pairwise_vote_agreement

    n10, rho10 = top_fraction_spearman(v, acc)
    pairs = pairwise_vote_agreement(v if vote_members is None else vote_members, acc)
    return {"n_top10": n10, "top10_spearman": rho10, "hit_rate": hit_rate(v, acc),
            "pair_agree": pairs}


def format_table(tab, title: str = "") -> str:
    """Plain-text (Markdown) table."""
    lines = []
    if title:
        lines += [title, ""]
    kt, kp = tab.attrs.get("hit_sizes", ("k", "k"))
    lines.append("| proxy | n | Spearman | Kendall | abs Spearman | top-10% Spearman | "
                 f"hit {kt}/{kp} | pair agree | paper abs Spearman | paper pair agree |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def f(v, fmt):
        return "" if math.isnan(v) else format(v, fmt)

    for p, r in tab.iterrows():
        lines.append(f"| {p} | {int(r.n)} | {r.spearman:+.3f} | {r.kendall:+.3f} | "
                     f"{r.abs_spearman:.3f} | {f(r.top10_spearman, '+.3f')} | "
                     f"{f(r.hit_rate, '.2f')} | {f(r.pair_agree, '.3f')} | "
                     f"{f(r.paper_abs_spearman, '.3f')} | {f(r.paper_pair_agree, '.3f')} |")
    return "\n".join(lines)


METRICS_NOTE = (
    "Spearman/Kendall: NaN scores left out. top-10% Spearman: over the ceil(n/10) cells with the "
    "highest target. hit k_t/k_p: expected fraction of the true top k_t cells among the proxy's "
    "top k_p (50/500 of 15,625 scaled to n; NaN ranks lowest). pair agree: fraction of ordered "
    "pairs with distinct target ordered as the target (the zero-cost paper's vote statistic; "
    "for a vote ensemble, by the majority of its members). Ensembles rank the cells of the file.")


def _auto_scale(ax, x: np.ndarray) -> None:
    """symlog x axis when the scores span many decades (synflow reaches 1e40)."""
    nz = np.abs(x[x != 0])
    if nz.size and nz.max() / np.median(nz) > 1e3:
        ax.set_xscale("symlog", linthresh=float(np.percentile(nz, 5)))


def plot_scatter(scores, dataset: str, out, target: str = "test_acc", title: str = ""):
    """Score vs accuracy scatter per proxy (symlog x where scores span many decades)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = dataset_name(dataset)
    acc = groundtruth(ds)[target].to_numpy()[scores.index.to_numpy()]
    proxies = [c for c in scores.columns if c != "arch"]
    ncol = min(4, len(proxies))
    nrow = math.ceil(len(proxies) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.0 * nrow), squeeze=False)
    tab = correlation_table(scores, ds, target)
    for ax, p in zip(axes.flat, proxies):
        v = scores[p].to_numpy(dtype=np.float64)
        ok = np.isfinite(v)
        x = v[ok]
        _auto_scale(ax, x)
        ax.scatter(x, acc[ok], s=2, alpha=0.35, rasterized=True)
        ax.set_title(f"{p}  rho={tab.loc[p, 'spearman']:+.3f}", fontsize=9)
        ax.set_xlabel("score", fontsize=8)
        ax.set_ylabel(f"{ds} {target}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(proxies):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
