"""The Spearman interval that `zcfast correlate` prints covers the population coefficient about
95% of the time (simulated bivariate normal cells, whose population Spearman is known)."""

import math

import numpy as np
import pytest
from scipy import stats

from zcfast.correlate import spearman_interval


@pytest.mark.parametrize("r", [0.8, 0.95])
def test_interval_covers_95_percent(r):
    rng = np.random.default_rng(11)
    # r: Pearson of the normal pair; population Spearman = 6/pi * asin(r / 2)
    rho_s = 6 / math.pi * math.asin(r / 2)
    cov = [[1, r], [r, 1]]
    hits = 0
    trials = 600
    for _ in range(trials):
        x = rng.multivariate_normal([0, 0], cov, size=150)
        rho = stats.spearmanr(x[:, 0], x[:, 1]).statistic
        lo, hi = spearman_interval(rho, 150)
        hits += lo <= rho_s <= hi
    assert 0.92 <= hits / trials <= 0.98, hits / trials


def test_interval_edges():
    assert all(math.isnan(v) for v in spearman_interval(0.5, 3))
    assert all(math.isnan(v) for v in spearman_interval(math.nan, 100))
    lo, hi = spearman_interval(1.0, 50)
    assert lo < 1.0 and hi <= 1.0
    lo, hi = spearman_interval(0.0, 1000)
    assert -0.07 < lo < 0 < hi < 0.07


def test_table_prints_an_undefined_correlation_as_nan():
    """A proxy with fewer than two distinct scores has no correlation: the table says nan (not
    '+nan'), and leaves its interval blank; a defined one keeps its sign."""
    import pandas as pd

    from zcfast.correlate import format_table

    nan = math.nan
    row = {"n": 5, "dropped": 0, "spearman_lo": nan, "spearman_hi": nan, "top10_spearman": nan,
           "hit_rate": nan, "pair_agree": nan, "paper_abs_spearman": nan, "paper_pair_agree": nan}
    tab = pd.DataFrame([{"proxy": "flat", **row, "spearman": nan, "kendall": nan,
                         "abs_spearman": nan},
                        {"proxy": "good", **row, "spearman": 0.5, "kendall": 0.4,
                         "abs_spearman": 0.5}]).set_index("proxy")
    lines = format_table(tab).splitlines()
    flat = [c.strip() for c in lines[2].split("|")]
    assert flat[1] == "flat" and flat[4] == "nan" and flat[5] == "" and flat[6] == "nan"
    assert flat[7] == "nan" and "+nan" not in lines[2]
    assert [c.strip() for c in lines[3].split("|")][4:8] == ["+0.500", "", "+0.400", "0.500"]
