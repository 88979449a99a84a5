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
        rows.append({"proxy": p, "n": n, "dropped": len(idx) - n, "spearman": rho, "kendall": tau,
                     "abs_spearman": abs(rho), "paper_abs_spearman": PAPER_SPEARMAN[ds].get(p, math.nan)})
    n, rho, tau = _corr(gt["test_acc_12ep"].to_numpy()[idx], acc)
    rows.append({"proxy": BASELINE_12EP, "n": n, "dropped": len(idx) - n, "spearman": rho, "kendall": tau,
                 "abs_spearman": abs(rho), "paper_abs_spearman": math.nan})
    return pd.DataFrame(rows).set_index("proxy")


def format_table(tab, title: str = "") -> str:
    """Plain-text (Markdown) table."""
    lines = []
    if title:
        lines += [title, ""]
    lines.append("| proxy | n | dropped (NaN) | Spearman | Kendall | abs Spearman | paper abs Spearman |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    for p, r in tab.iterrows():
        paper = "" if math.isnan(r.paper_abs_spearman) else f"{r.paper_abs_spearman:.3f}"
        lines.append(f"| {p} | {int(r.n)} | {int(r.dropped)} | {r.spearman:+.3f} | {r.kendall:+.3f} | "
                     f"{r.abs_spearman:.3f} | {paper} |")
    return "\n".join(lines)


def _auto_scale(ax, x: np.ndarray) -> None:
    """symlog x axis when the scores span many decades (synflow reaches 1e40), with at most
    about six ticks (one every few decades) so that the labels never overlap."""
    from matplotlib.ticker import FixedLocator, LogFormatterSciNotation, NullLocator

    nz = np.abs(x[x != 0])
    if not (nz.size and nz.max() / np.median(nz) > 30):
        return
    lin = float(np.percentile(nz, 5))
    ax.set_xscale("symlog", linthresh=lin)
    lo, hi = int(np.floor(np.log10(lin))), int(np.ceil(np.log10(nz.max())))
    step = max(1, int(np.ceil((hi - lo + 1) / 4)))
    pos = [10.0**k for k in range(lo, hi + 1, step)]
    pos = pos[1:] if len(pos) > 2 else pos  # the first decade sits next to 0 on the axis
    ticks = ([-t for t in reversed(pos)] + [0.0] if (x < 0).any() else []) + pos
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False))


def _percentile_ranks(v: np.ndarray) -> np.ndarray:
    """Average ranks (ties share one, +-inf rank at the ends) scaled to (0, 100)."""
    from scipy import stats

    return 100.0 * (stats.rankdata(v) - 0.5) / v.size


def plot_scatter(scores, dataset: str, out, target: str = "test_acc", title: str = "",
                 kind: str = "rank"):
    """One panel per proxy of what Spearman's rho measures: each cell's score rank against its
    accuracy rank (percentiles among the cells with a score; ``kind="score"`` plots the raw
    score instead, symlog where it spans many decades). Each panel gives rho, the cells used
    and the NaN cells left out (with -inf/+inf counts when there are any)."""
    from zcfast import plotstyle
    from zcfast.gaps import explain

    if kind not in ("rank", "score"):
        raise ValueError(f"kind must be 'rank' or 'score', got {kind!r}")
    plt = plotstyle.pyplot()
    ds = dataset_name(dataset)
    acc = groundtruth(ds)[target].to_numpy()[scores.index.to_numpy()]
    proxies = [c for c in scores.columns if c != "arch"]
    ncol = min(4, len(proxies))
    nrow = math.ceil(len(proxies) / ncol)
    w, h = plotstyle.PANEL
    fig, axes = plt.subplots(nrow, ncol, figsize=(w * ncol, h * nrow + 0.6), squeeze=False)
    tab = correlation_table(scores, ds, target)
    gaps = explain(scores, proxies)
    for ax, p in zip(axes.flat, proxies):
        v = scores[p].to_numpy(dtype=np.float64)
        ok = ~np.isnan(v)
        g = gaps[p]
        note = [f"Spearman \u03c1 = {tab.loc[p, 'spearman']:+.3f}", f"n = {int(ok.sum())}, NaN {g['NaN']}"]
        inf = ", ".join(f"{g[k]} {k}" for k in ("-inf", "+inf") if g[k])
        if inf:
            note.append(inf)
        if kind == "rank" and ok.sum() > 0:
            ax.scatter(_percentile_ranks(v[ok]), _percentile_ranks(acc[ok]), s=5, alpha=0.45,
                       lw=0, rasterized=True)
            ax.plot([0, 100], [0, 100], color="0.6", lw=0.8, ls="--", zorder=0)
            ax.set_xlim(0, 100)
            ax.set_ylim(0, 100)
            xlabel, ylabel = "score rank (percentile)", f"{target} rank (percentile)"
        else:
            fin = np.isfinite(v)
            _auto_scale(ax, v[fin])
            ax.scatter(v[fin], acc[fin], s=5, alpha=0.45, lw=0, rasterized=True)
            xlabel, ylabel = "score", f"{ds} {target} (%)"
        plotstyle.style_axes(ax, title=p, xlabel=xlabel, ylabel=ylabel, max_xticks=4,
                             max_yticks=5)
        if kind == "rank":
            ax.set_xticks([0, 25, 50, 75, 100])
            ax.set_yticks([0, 25, 50, 75, 100])
        plotstyle.stats_box(ax, "\n".join(note))
    for ax in list(axes.flat)[len(proxies):]:
        ax.axis("off")
    plotstyle.finish(fig, out, plotstyle.wrap(title, int(12 * w * ncol)))
