"""Rank correlation of proxy scores with the ground truth of their search space (the space's
``targets``: NB201's 200-epoch accuracies, NB101's 108-epoch validation accuracy, ...)."""

from __future__ import annotations

import math

import numpy as np

from zcfast.data import dataset_name

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


def spearman_interval(rho: float, n: int, z: float = 1.959964) -> tuple:
    """Approximate 95% interval of a Spearman coefficient over n cells (Fisher's z with Bonett
    and Wright's standard error, sqrt((1 + rho^2 / 2) / (n - 3)); Psychometrika 65, 2000). It
    covers the sampling of the cells, not the proxy's own seed noise. (nan, nan) below 4 cells
    or for a NaN coefficient."""
    if n < 4 or math.isnan(rho):
        return math.nan, math.nan
    r = min(max(rho, -0.999999), 0.999999)
    se = math.sqrt((1.0 + r * r / 2.0) / (n - 3))
    return math.tanh(math.atanh(r) - z * se), math.tanh(math.atanh(r) + z * se)


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


def _targets(scores, dataset, space, data):
    from zcfast.spaces import get_space

    sp = get_space(space if space is not None else scores.attrs.get("space", "nb201"))
    return sp, sp.targets(dataset, data)


def target_values(scores, dataset: str, target: str | None = None, space=None, data=None):
    """(target name, (n,) target values aligned with the rows of ``scores``) from the space's
    ground truth; ValueError names a target the space lacks or a network it does not know."""
    sp, tg = _targets(scores, dataset, space, data)
    target = target or tg.default
    from pandas.api.types import is_numeric_dtype

    numeric = [c for c in tg.table.columns if is_numeric_dtype(tg.table[c])]
    if target not in numeric:  # accuracies; not the arch strings
        raise ValueError(f"unknown target {target!r} for {sp.name}: expected one of "
                         f"{', '.join(numeric)}")
    missing = scores.index[~scores.index.isin(tg.table.index)]
    if len(missing):
        raise ValueError(f"{len(missing)} networks of the scores have no {sp.name} ground truth, "
                         f"e.g. {sp.key_column} {missing[0]!r}")
    return target, tg.table[target].reindex(scores.index).to_numpy(dtype=np.float64)


def correlation_table(scores, dataset: str, target: str | None = None, space=None, data=None):
    """DataFrame (one row per proxy, plus the space's baselines) with n, Spearman, Kendall
    (signed), |Spearman|, top-10% Spearman, hit rate, pair agreement and the paper's values
    where they exist. NaN scores are left out (as the paper's notebook does with
    ``nan_policy='omit'``); the count says how many remain. ``space``: the scores' space
    (default: ``scores.attrs['space']``, else nb201); the target defaults to the space's."""
    import pandas as pd

    ds = dataset_name(dataset)
    sp, tg = _targets(scores, ds, space, data)
    target, acc = target_values(scores, ds, target, sp, data)
    idx = scores.index
    rows = []
    proxies = [c for c in scores.columns if c not in sp.id_columns]
    for p in proxies:
        keep = held_cells(scores, p)
        v = scores[p].to_numpy(dtype=np.float64)[keep]
        members = _vote_members(scores, p)
        n, rho, tau = _corr(v, acc[keep])
        lo, hi = spearman_interval(rho, n)
        rows.append({"proxy": p, "n": n, "dropped": len(v) - n, "spearman": rho,
                     "spearman_lo": lo, "spearman_hi": hi, "kendall": tau,
                     "abs_spearman": abs(rho), "paper_abs_spearman": tg.paper.get(p, math.nan),
                     **_rank_metrics(v, acc[keep], None if members is None else members[keep]),
                     "paper_pair_agree": tg.paper_pairs.get(p, math.nan)})
    for label, col in tg.baselines.items():
        vb = tg.table[col].reindex(idx).to_numpy(dtype=np.float64)
        n, rho, tau = _corr(vb, acc)
        lo, hi = spearman_interval(rho, n)
        rows.append({"proxy": label, "n": n, "dropped": len(idx) - n, "spearman": rho,
                     "spearman_lo": lo, "spearman_hi": hi, "kendall": tau,
                     "abs_spearman": abs(rho), "paper_abs_spearman": math.nan,
                     **_rank_metrics(vb, acc, None), "paper_pair_agree": math.nan})
    tab = pd.DataFrame(rows).set_index("proxy")
    tab.attrs["hit_sizes"] = hit_sizes(len(idx))
    tab.attrs["target"] = target
    tab.attrs["targets"] = tg.description
    return tab


def held_cells(scores, col) -> np.ndarray:
    """Mask of the rows of ``scores`` that have a score for ``col``. Joined files
    (scoring.read_score_files) record in ``attrs["held"]`` the cells some file holds each column
    for; the others have no score at all (not a proxy's NaN), so every metric of the column's
    row leaves them out, and an ensemble's row those of any of its members."""
    from zcfast.proxies import ensemble as ens

    held = scores.attrs.get("held", {})
    keep = np.ones(len(scores), bool)
    for c in ens.base_members(col) if ens.is_ensemble(col) else [col]:
        if c in held:
            keep &= scores.index.isin(held[c])
    return keep


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
    lines.append("| proxy | n | dropped (NaN) | Spearman | 95% interval | Kendall | abs Spearman | "
                 f"top-10% Spearman | hit {kt}/{kp} | pair agree | paper abs Spearman | "
                 "paper pair agree |")
    lines.append("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")

    def f(v, fmt, nan=""):
        return nan if math.isnan(v) else format(v, fmt)

    for p, r in tab.iterrows():
        ci = "" if math.isnan(r.spearman_lo) else f"[{r.spearman_lo:+.2f}, {r.spearman_hi:+.2f}]"
        # an undefined correlation (fewer than two distinct scores) reads nan, not +nan
        lines.append(f"| {p} | {int(r.n)} | {int(r.dropped)} | {f(r.spearman, '+.3f', 'nan')} | "
                     f"{ci} | {f(r.kendall, '+.3f', 'nan')} | "
                     f"{f(r.abs_spearman, '.3f', 'nan')} | {f(r.top10_spearman, '+.3f')} | "
                     f"{f(r.hit_rate, '.2f')} | {f(r.pair_agree, '.3f')} | "
                     f"{f(r.paper_abs_spearman, '.3f')} | {f(r.paper_pair_agree, '.3f')} |")
    return "\n".join(lines)


METRICS_NOTE = (
    "Spearman/Kendall: NaN scores left out. 95% interval: Spearman's over the sampling of the "
    "cells (Fisher z, Bonett-Wright standard error; meaningless when the file holds every cell "
    "of the space, approximate for heavily tied scores such as params), not the proxy's seed "
    "noise. top-10% Spearman: over the ceil(n/10) cells with the "
    "highest target. hit k_t/k_p: expected fraction of the true top k_t cells among the proxy's "
    "top k_p (50/500 of 15,625 scaled to n; NaN ranks lowest). pair agree: fraction of ordered "
    "pairs with distinct target ordered as the target (the zero-cost paper's vote statistic; "
    "for a vote ensemble, by the majority of its members). Ensembles rank the cells of the file.")


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


def plot_scatter(scores, dataset: str, out, target: str | None = None, title: str = "",
                 kind: str = "rank", space=None, data=None):
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
    sp, _ = _targets(scores, ds, space, data)
    target, acc = target_values(scores, ds, target, sp, data)
    proxies = [c for c in scores.columns if c not in sp.id_columns]
    ncol = min(4, len(proxies))
    nrow = math.ceil(len(proxies) / ncol)
    w, h = plotstyle.PANEL
    fig, axes = plt.subplots(nrow, ncol, figsize=(w * ncol, h * nrow + 0.6), squeeze=False)
    tab = correlation_table(scores, ds, target, sp, data)
    gaps = explain(scores, proxies)
    for ax, p in zip(axes.flat, proxies):
        v = scores[p].to_numpy(dtype=np.float64)
        ok = ~np.isnan(v)
        g = gaps[p]
        rho = tab.loc[p, "spearman"]
        note = [f"Spearman \u03c1 = {'nan' if math.isnan(rho) else format(rho, '+.3f')}",
                f"n = {int(ok.sum())}, NaN {g['NaN']}"]
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
