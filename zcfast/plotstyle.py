"""One look for every zcfast figure: font sizes, grids, readable ticks, a statistics box.

Used by the correlation scatter (:func:`zcfast.correlate.plot_scatter`) and the search curves
(:func:`zcfast.search.runs.plot_curves`). Styles are applied to the axes explicitly (never
through global ``rcParams``), so plotting does not change the caller's matplotlib settings.
"""

from __future__ import annotations

TITLE = 10  # panel titles (points)
LABEL = 9  # axis labels
TICK = 8  # tick labels
NOTE = 8  # legends and statistics boxes
SUPTITLE = 10
DPI = 130
PANEL = (3.4, 3.1)  # inches per scatter panel
CURVE_PANEL = (6.0, 4.2)  # inches per curve panel
STEPS = (1, 2, 2.5, 5, 10)  # tick spacings allowed on linear axes (times a power of 10)

# y label of each search curve (the key is a parameter of plot_curves)
CURVE_LABELS = {
    "test_curve": "test accuracy of the best-validation cell (%)",
    "best_val_curve": "best validation accuracy so far (%)",
    "oracle_test_curve": "best test accuracy seen (oracle diagnostic, %)",
    "hv_curve": "hypervolume of the validation front, test accuracy (normalised)",
    "hv_val_curve": "hypervolume of the validation front (normalised)",
}


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def style_axes(ax, *, title: str | None = None, xlabel: str | None = None,
               ylabel: str | None = None, max_xticks: int = 6, max_yticks: int = 6) -> None:
    """Fonts, a light grid, no top/right frame, and at most ``max_*ticks`` ticks on linear
    axes (so long tick labels never overlap)."""
    from matplotlib.ticker import MaxNLocator

    if title is not None:
        ax.set_title(title, fontsize=TITLE)
    if xlabel is not None:
        ax.set_xlabel(xlabel, fontsize=LABEL)
    if ylabel is not None:
        ax.set_ylabel(ylabel, fontsize=LABEL)
    if ax.get_xscale() == "linear":
        ax.xaxis.set_major_locator(MaxNLocator(max_xticks, steps=STEPS))
    if ax.get_yscale() == "linear":
        ax.yaxis.set_major_locator(MaxNLocator(max_yticks, steps=STEPS))
    ax.tick_params(labelsize=TICK)
    ax.grid(True, alpha=0.3, lw=0.6, which="major")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def plain_log_ticks(axis, lo: float, hi: float) -> None:
    """Log-scale ticks at 1, 2, 5, 10, 20, 50, ... written as plain numbers (not 10^k)."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, StrMethodFormatter

    ticks, d = [], 1.0
    while d <= hi * 1.0001:
        ticks += [t for t in (d, 2 * d, 5 * d) if lo * 0.9999 <= t <= hi * 1.0001]
        d *= 10
    if hi not in ticks:
        ticks.append(hi)
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(StrMethodFormatter("{x:g}"))
    axis.set_minor_locator(NullLocator())
    axis.set_minor_formatter(NullFormatter())


def stats_box(ax, text: str, loc: str = "upper left") -> None:
    """A small boxed note (e.g. rho and counts) inside a panel."""
    x, ha = (0.03, "left") if "left" in loc else (0.97, "right")
    y, va = (0.97, "top") if "upper" in loc else (0.03, "bottom")
    ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, fontsize=NOTE,
            bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "0.7", "alpha": 0.9})


def finish(fig, path, suptitle: str = "") -> None:
    """Title, tight layout, save (parent folders created), close."""
    from pathlib import Path

    if suptitle:
        fig.suptitle(suptitle, fontsize=SUPTITLE)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    pyplot().close(fig)


def wrap(text: str, width: int) -> str:
    """Wrap a long figure title onto several lines."""
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) if text else text
