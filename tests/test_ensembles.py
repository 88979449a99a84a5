"""Label-free ensembles (zcfast/proxies/ensemble.py), the paper's vote, the new correlation
metrics (zcfast/correlate.py) and their integration into ``zcfast score`` / ``zcfast correlate``.
Expected values are derived by hand on small matrices; the notebook's vote is re-typed as the
literal double loop of the released notebook (the oracle), not vectorised."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from zcfast import cli
from zcfast.correlate import correlation_table, hit_rate, hit_sizes, top_fraction_spearman
from zcfast.data import groundtruth
from zcfast.proxies import PROXIES
from zcfast.proxies import ensemble as ens
from zcfast.scoring import parse_proxies, read_scores, split_columns
from zcfast.spaces import nb201


# ---- names --------------------------------------------------------------------------------
def test_parse_syntax_and_errors():
    e = ens.parse("ensemble:zico+az_nas+vkdnw", known=PROXIES)
    assert (e.rule, e.members, e.name) == ("logrank", ("zico", "az_nas", "vkdnw"), "ensemble:zico+az_nas+vkdnw")
    assert ens.parse("ensemble[meanrank]:a+b").rule == "meanrank"
    assert ens.parse("ensemble[vote]:a+b+c").members == ("a", "b", "c")
    assert ens.parse("vote").members == ("synflow", "jacob_cov", "snip")
    for bad, msg in [("ensemble[median]:a+b", "rule"), ("ensemble:a++b", "empty"),
                     ("ensemble:a+a", "duplicate"), ("ensemble:snip+nope", "'nope'"),
                     ("ensemble:snip+ensemble:a", "nested"), ("ensmble:a", "not an ensemble"),
                     ("ensemble[vote]:snip", "'ensemble\\[vote\\]:snip' has one member: name 'snip'")]:
        with pytest.raises(ValueError, match=msg):
            ens.parse(bad, known=PROXIES)
    with pytest.raises(ValueError, match="unknown proxy 'nope'"):  # named before its count
        ens.parse("ensemble:nope", known=PROXIES)
    # a one-member spec read back from an older file's meta (no `known`) is still understood
    assert ens.parse("ensemble:snip").members == ("snip",)
    assert ens.base_members("ensemble:zico+az_nas") == [
        "zico", "az_expressivity", "az_progressivity", "az_trainability", "az_complexity"]
    assert ens.base_members("vkdnw_agg") == ["vkdnw_single", "az_expressivity", "az_trainability",
                                              "flops", "jacob_cov"]


def test_score_columns_compute_each_member_once():
    cols = parse_proxies("synflow,ensemble:zico+az_nas,paper,vote")
    assert cols[:2] == ["synflow", "ensemble:zico+az_nas"] and cols[-1] == "vote"
    per_model, ensembles = split_columns(cols)
    assert ensembles == ["ensemble:zico+az_nas", "vote"]
    assert len(per_model) == len(set(per_model))  # synflow, snip, jacob_cov once each
    assert set(per_model) == {"synflow", "grad_norm", "snip", "grasp", "fisher", "jacob_cov", "zico",
                              "az_expressivity", "az_progressivity", "az_trainability", "az_complexity"}
    with pytest.raises(ValueError, match="'ensemble:synflow\\+foo'|'foo'"):
        parse_proxies("ensemble:synflow+foo")


# ---- rules --------------------------------------------------------------------------------
S = np.array([[3.0, 0.1, 5.0],
              [1.0, 0.3, np.nan],
              [2.0, 0.3, 7.0],
              [4.0, 0.2, -np.inf]])
# average ranks by hand (1 = lowest; NaN ranked as -inf, tied with the -inf)
R = np.array([[3, 1, 3], [1, 3.5, 1.5], [2, 3.5, 4], [4, 2, 1.5]])


def test_ranks_logrank_meanrank_by_hand():
    assert np.array_equal(ens.ranks(S), R)
    assert ens.combine(S, "meanrank") == pytest.approx(R.mean(1), rel=1e-15)
    assert ens.combine(S, "logrank") == pytest.approx(np.log(R / 4).sum(1), rel=1e-15)
    assert ens.combine(S) == pytest.approx(np.log(R / 4).sum(1))  # default rule: logrank
    perm = np.array([2, 0, 3, 1])  # rows permuted: scores permuted, nothing else changes
    for rule in ens.RULES:
        assert ens.combine(S[perm], rule) == pytest.approx(ens.combine(S, rule)[perm])


def test_vote_copeland_by_hand():
    # i beats j when >= 2 of 3 members are strictly higher (NaN compares false)
    wins = np.zeros(4)
    for i in range(4):
        for j in range(4):
            if i != j and sum(S[i, k] > S[j, k] for k in range(3)) >= 1.5:
                wins[i] += 1
    assert np.array_equal(ens.combine(S, "vote"), wins)
    assert list(wins) == [0, 0, 2, 1]
    # two members: a 1-1 split is a win for both (at least half prefer each)
    assert list(ens.combine(np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]), "vote")) == [2, 2, 0]
    # the ranks are over the cells compared: dropping a cell changes the others' scores
    assert not np.array_equal(ens.combine(S[:3], "vote"), wins[:3])


def _notebook_vote(mets, acc):
    """The released notebook's loop, literally (ordered pairs, equal accuracies skipped)."""
    tot = right = 0
    n = len(acc)
    for i in range(n):
        for j in range(n):
            if i != j:
                diff = acc[i] - acc[j]
                if diff == 0:
                    continue
                numpos = sum(1 if mets[m][i] - mets[m][j] > 0 else 0 for m in range(len(mets)))
                sign = +1 if numpos >= len(mets) / 2 else -1
                right += 1 if sign * diff > 0 else 0
                tot += 1
    return right / tot


def test_pairwise_vote_agreement_matches_the_notebook_loop():
    g = np.random.default_rng(0)
    acc = np.round(g.normal(size=60), 1)  # ties in accuracy
    m = np.round(g.normal(size=(60, 3)) + acc[:, None], 1)  # ties in the proxies
    m[3, 1] = np.nan
    want = _notebook_vote([m[:, k] for k in range(3)], acc)
    assert ens.pairwise_vote_agreement(m, acc, block=7) == pytest.approx(want, rel=1e-15)
    # even member count: a 1-1 split counts as +1 (numpos >= k/2)
    want2 = _notebook_vote([m[:, 0], m[:, 1]], acc)
    assert ens.pairwise_vote_agreement(m[:, :2], acc) == pytest.approx(want2, rel=1e-15)
    # the check can fail: a strict majority (numpos > k/2) differs on the 1-1 splits
    tot = right = 0
    for i in range(60):
        for j in range(60):
            if i != j and acc[i] != acc[j]:
                pos = sum(m[i, k] - m[j, k] > 0 for k in range(2))
                right += (1 if pos > 1 else -1) * (acc[i] - acc[j]) > 0
                tot += 1
    strict = right / tot
    assert strict != pytest.approx(want2, rel=1e-6)


def test_evaluate_nested_fixed_ensembles():
    g = np.random.default_rng(1)
    cols = {m: g.normal(size=12) for m in ens.base_members("ensemble[meanrank]:az_nas+zico")}
    az = ens.combine(np.column_stack([cols[m] for m in ens.FIXED["az_nas"].members]), "logrank")
    want = ens.combine(np.column_stack([az, cols["zico"]]), "meanrank")
    assert ens.evaluate("ensemble[meanrank]:az_nas+zico", cols) == pytest.approx(want)
    with pytest.raises(ValueError, match="no scores for member"):
        ens.evaluate("ensemble:zico+snip", cols)


# ---- correlation metrics ----------------------------------------------------------------------
def test_hit_rate_and_sizes():
    assert hit_sizes(15625) == (50, 500) and hit_sizes(3000) == (10, 96) and hit_sizes(100) == (1, 3)
    target = np.arange(100.0)  # true top 1: index 99
    proxy = np.arange(100.0)
    assert hit_rate(proxy, target) == 1.0
    proxy[99] = 95.5  # now 4th (after 98, 97, 96): outside the top 3
    assert hit_rate(proxy, target) == 0.0
    proxy[99] = np.nan  # NaN ranks lowest
    assert hit_rate(proxy, target) == 0.0
    flat = np.zeros(100)  # all tied: the top 3 is a random 3 of 100, in expectation 3/100
    assert hit_rate(flat, target) == pytest.approx(0.03)


def test_top10_spearman_by_hand():
    g = np.random.default_rng(2)
    target, proxy = g.normal(size=95), g.normal(size=95)
    top = np.argsort(-target)[:10]  # ceil(9.5)
    n, rho = top_fraction_spearman(proxy, target)
    assert n == 10 and rho == pytest.approx(stats.spearmanr(proxy[top], target[top]).statistic)


def test_correlation_table_has_the_new_columns():
    import pandas as pd

    idx = nb201.sample(40, seed=3)
    acc = groundtruth("cifar10").test_acc.to_numpy()[idx]
    g = np.random.default_rng(4)
    df = pd.DataFrame({"synflow": acc + g.normal(0, 1, 40), "jacob_cov": acc + g.normal(0, 2, 40),
                       "snip": g.normal(size=40)}, index=pd.Index(idx, name="index"))
    from zcfast.scoring import add_ensembles

    tab = correlation_table(add_ensembles(df, ["vote"]), "cifar10")
    for c in ("top10_spearman", "hit_rate", "pair_agree", "paper_pair_agree", "kendall"):
        assert c in tab.columns
    m = df[["synflow", "jacob_cov", "snip"]].to_numpy()
    assert tab.loc["vote", "pair_agree"] == pytest.approx(ens.pairwise_vote_agreement(m, acc))
    assert tab.loc["vote", "paper_pair_agree"] == 0.817
    assert tab.loc["synflow", "pair_agree"] == pytest.approx(_notebook_vote([m[:, 0]], acc))


# ---- zcfast score / correlate -------------------------------------------------------------------
CHEAP = "params,ensemble:synflow+params,ensemble[vote]:synflow+flops+l2_norm"


def test_score_and_correlate_with_ensembles(tmp_path, capsys):
    out = tmp_path / "s.csv"
    args = ["score", "--engine", "loop", "--archs", "5", "--seed", "2", "--proxies", CHEAP,
            "--out", str(out), "--no-progress", "--batch-size", "4"]
    assert cli.main(args) == 0
    assert "ranks over all cells in the score file" in capsys.readouterr().out
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["index", "arch", "params", "synflow", "flops", "l2_norm"]  # members only
    meta = json.loads(Path(str(out) + ".meta.json").read_text())
    assert meta["proxies"] == CHEAP.split(",")
    assert meta["ensembles"]["ensemble:synflow+params"] == {"rule": "logrank", "members": ["synflow", "params"]}
    assert "all cells in the score file" in meta["ensemble_ranks_over"]
    df, _ = read_scores(out)
    s = df[["synflow", "params"]].to_numpy()
    assert df["ensemble:synflow+params"].to_numpy() == pytest.approx(ens.combine(s, "logrank"))
    v = df[["synflow", "flops", "l2_norm"]].to_numpy()
    assert df["ensemble[vote]:synflow+flops+l2_norm"].to_numpy() == pytest.approx(ens.combine(v, "vote"))
    # resume after an interruption: the rows are kept, the ensemble is over all rows again
    with open(out, "w", newline="") as f:
        csv.writer(f).writerows(rows[:3])
    assert cli.main(args + ["--resume"]) == 0
    df2, _ = read_scores(out)
    assert len(df2) == 5
    assert df2["ensemble:synflow+params"].to_numpy() == pytest.approx(df["ensemble:synflow+params"].to_numpy())
    capsys.readouterr()
    assert cli.main(["correlate", str(out), "--ensembles", "ensemble[meanrank]:params+l2_norm"]) == 0
    text = capsys.readouterr().out
    assert "ensemble[meanrank]:params+l2_norm" in text and "ensembles rank the 5 cells" in text
    assert "top-10% Spearman" in text and "hit 1/1" in text and "pair agree" in text
    assert cli.main(["correlate", str(out), "--ensembles", "ensemble:params+nope"]) == 2


def test_packed_engine_falls_back_per_model_for_proxies_without_packed_version(tmp_path, monkeypatch):
    """Every NB201 proxy has a packed version now (meco included); a proxy without one (here
    meco with its packed version hidden) runs per model inside the packed loop, and says so."""
    from zcfast.scoring import score_to_file
    from zcfast.spaces import nb201

    res = score_to_file(tmp_path / "p.csv", archs="2", proxies="params,meco", dataset="ImageNet16-120",
                        batch_size=4, engine="packed", progress=False)
    assert "per_model_fallback" not in res["meta"]
    packed, _ = read_scores(tmp_path / "p.csv")
    orig = nb201.NB201Space.packed_proxies
    monkeypatch.setattr(nb201.NB201Space, "packed_proxies",
                        lambda self: tuple(p for p in orig(self) if p != "meco"))
    res = score_to_file(tmp_path / "q.csv", archs="2", proxies="params,meco", dataset="ImageNet16-120",
                        batch_size=4, engine="packed", progress=False)
    assert res["meta"]["per_model_fallback"] == ["meco"]
    df, _ = read_scores(tmp_path / "q.csv")
    assert df["meco"].notna().all() and (df["params"] > 0).all()
    assert math.isfinite(float(df["meco"].iloc[0]))
    assert df["meco"].to_numpy() == pytest.approx(packed["meco"].to_numpy(), rel=1e-5)
