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
        n, rho, tau = _corr(scores[p].to_numpy(dtype=np.float64), acc)
        rows.append({"proxy": p, "n": n, "spearman": rho, "kendall": tau,
                     "abs_spearman": abs(rho), "paper_abs_spearman": PAPER_SPEARMAN[ds].get(p, math.nan)})
    n, rho, tau = _corr(gt["test_acc_12ep"].to_numpy()[idx], acc)
    rows.append({"proxy": BASELINE_12EP, "n": n, "spearman": rho, "kendall": tau,
                 "abs_spearman": abs(rho), "paper_abs_spearman": math.nan})
    return pd.DataFrame(rows).set_index("proxy")


def format_table(tab, title: str = "") -> str:
    """Plain-text (Markdown) table."""
    lines = []
    if title:
        lines += [title, ""]
    lines.append("| proxy | n | Spearman | Kendall | abs Spearman | paper abs Spearman |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    for p, r in tab.iterrows():
        paper = "" if math.isnan(r.paper_abs_spearman) else f"{r.paper_abs_spearman:.3f}"
        lines.append(f"| {p} | {int(r.n)} | {r.spearman:+.3f} | {r.kendall:+.3f} | "
                     f"{r.abs_spearman:.3f} | {paper} |")
    return "\n".join(lines)


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
