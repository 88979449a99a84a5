"""The search driver on spaces other than NB201: the NB101 bundled pool end to end (every
algorithm with warmup and move, the budget rule, the curves rebuilt by verify_runs, scores keyed
by the official hash), and the NB101 hot path the driver uses (docs/spaces.md)."""

from __future__ import annotations

import numpy as np
import pytest

from zcfast import _C
from zcfast.search import ScoreCache, ScoreKey, run_search, universe, verify_runs
from zcfast.spaces import get_space

VARIANTS = [("rand", 0, 0), ("rand", 60, 0), ("rand", 0, 10), ("ae", 0, 0), ("ae", 60, 0),
            ("ae", 0, 8), ("rl", 0, 0), ("rl", 60, 0), ("rl", 0, 10), ("bp", 0, 0),
            ("bp", 40, 0), ("bp", 0, 20)]
OPTS = {"ae": {"population": 16, "tournament": 4},
        "bp": {"bp_iters": 30, "bp_warmup_iters": 30, "bp_pairs": 16}}


@pytest.fixture(scope="module")
def pool():
    return universe("cifar10", space="nb101")


@pytest.fixture(scope="module")
def proxy(pool):
    """A synthetic proxy keyed by official hash: the pool's accuracy plus a deterministic offset."""
    import pandas as pd

    off = (np.arange(len(pool)) * 7919 % 1009) / 1009.0 * 3.0
    return pd.Series(np.asarray(pool.val) + off, index=pool.keys)


def test_nb101_universe_is_the_bundled_pool(pool):
    assert len(pool) == 292 and len(set(pool.keys)) == 292
    assert "pool" in pool.description and "no test accuracy" in pool.description
    sp = get_space("nb101")
    assert [sp.key(int(c)) for c in pool.codes[:5]] == pool.keys[:5]


@pytest.mark.parametrize("algo,w,m", VARIANTS)
def test_nb101_pool_search(algo, w, m, pool, proxy):
    r = run_search(algo, "cifar10", 40, w, m, 1, space="nb101", scores=proxy,
                   options=OPTS.get(algo, {}))
    assert r["pool"] and r["queries"] == 40 == len(r["trained"]) and not r["failed"]
    assert set(r["trained"]) <= set(pool.keys)
    assert "292 distinct cells" in r["universe"]
    assert verify_runs([r]) == []
    if w or m:
        assert r["scores_used"] > 0


def test_nb101_scores_come_from_the_cache_by_hash(tmp_path, pool, proxy):
    calls = []

    def scorer(codes):
        calls.append(len(codes))
        keys = get_space("nb101").keys(codes)
        return proxy.reindex(keys).to_numpy()

    cache = ScoreCache(tmp_path)
    a = run_search("ae", "cifar10", 30, 50, 8, 0, "synflow", space="nb101", cache=cache,
                   scorer=scorer, options=OPTS["ae"])
    key = ScoreKey.of("synflow", "cifar10", 0, space="nb101")
    cached = ScoreCache(tmp_path).load(key)
    assert sum(calls) == a["scored_live"] == len(cached) > 50
    assert set(cached) <= set(pool.keys)  # keyed by official hash
    b = run_search("ae", "cifar10", 30, 50, 8, 0, "synflow", space="nb101",
                   cache=ScoreCache(tmp_path), scorer=None, options=OPTS["ae"])
    assert b["trained"] == a["trained"] and b["scored_live"] == 0


def test_nb101_budget_bounded_by_the_pool():
    with pytest.raises(ValueError, match=r"budget 293 is out of range: expected 1 to 292 trained "
                                         r"models \(the 292 cells of the nb101 pool\)"):
        run_search("rand", "cifar10", 293, space="nb101")


def test_nb101_hot_path():
    """The driver's view of NB101: keys are the official hash's first 8 bytes, moves give other
    networks, decisions round-trip, invalid decision vectors are refused."""
    sp = _C.space.nb101()
    codes = sp.sample_distinct(50, 3)
    keys = sp.keys(codes)
    assert len(set(keys.tolist())) == 50 and sp.size == 423624
    for c in codes[:20]:
        c = int(c)
        h = _C.nb101.hash(c)
        assert sp.key(c) == int(h[:16], 16)
        nb = sp.neighbours(c)
        # every cell has a one-move neighbour but the 2-vertex cell (input -> output), whose
        # single moves all give an invalid or the same (pruned) network
        assert len(nb) <= sp.neighbourhood_size
        assert len(nb) > 0 or _C.nb101.decode(c)[0] == 2
        assert sp.key(c) not in set(sp.keys(nb).tolist())
        assert sp.key(sp.mutate(c, 7)) != sp.key(c)
        d = sp.to_decisions(c)
        assert len(d) == len(sp.decision_sizes) == 26
        back = sp.from_decisions(d.tolist())
        assert back is not None and sp.key(back) == sp.key(c)
    # no edge at all: the input does not reach the output
    assert sp.from_decisions([0] * 5 + [0] * 21) is None
    assert sp.encode(codes[:3]).shape == (3, 36)


def test_nb101_score_correlate_search_end_to_end(tmp_path, capsys, monkeypatch):
    """`zcfast score --space nb101` (the packed NB101 builder, the default engine) on a few
    bundled cells at a tiny batch, `zcfast correlate` against the 108-epoch validation
    accuracy, and `zcfast search --space nb101` importing those scores: every row keyed by the
    official hash, every search query a pool member."""
    import json

    from zcfast.cli import main
    from zcfast.scoring import read_scores

    pool = universe("cifar10", space="nb101")
    archs = tmp_path / "cells.jsonl"
    sp = get_space("nb101")
    archs.write_text("".join(sp.describe(int(c)) + "\n" for c in pool.codes[:4]))
    out = tmp_path / "s.csv"
    from zcfast.batched.nb101 import PackedNB101

    packed_cells = []
    real = PackedNB101.compute
    monkeypatch.setattr(PackedNB101, "compute", lambda self, x, y, names: (
        packed_cells.extend(self.plan.codes.tolist()), real(self, x, y, names))[1])
    assert main(["score", "--space", "nb101", "--archs", str(archs), "--proxies", "params,flops",
                 "--batch-size", "2", "--out", str(out), "--no-progress"]) == 0
    df, meta = read_scores(out)
    assert meta["space"] == "nb101" and list(df.index) == pool.keys[:4]
    assert meta["engine"] == "packed" and len(packed_cells) == 4  # the packed builder ran
    assert (df["params"] > 1e5).all() and df["arch"].str.startswith('{"matrix"').all()
    capsys.readouterr()
    assert main(["correlate", str(out)]) == 0
    text = capsys.readouterr().out
    assert "NB101 cifar10: 4 cells, target val_acc" in text and "| params | 4 |" in text
    # the bundled pool has 292 cells: a 4-cell file cannot drive a warmup over the pool, so the
    # search scores the rest with a counting scorer through the cache
    bad = tmp_path / "runs.jsonl"
    rc = main(["search", "--space", "nb101", "--dataset", "cifar10", "--algo", "rand",
               "--budget", "10", "--seeds", "1", "--out", str(bad), "--no-progress"])
    assert rc == 0
    run = json.loads(bad.read_text().splitlines()[0])
    assert run["space"] == "nb101" and run["pool"] and set(run["trained"]) <= set(pool.keys)
    assert main(["verify-runs", str(bad)]) == 0


def test_figure_runs_on_the_space_it_names(tmp_path, capsys):
    """`zcfast figure --space nb101` searches the NB101 pool (not NB201), names the space in
    its title, and by default reads its 'models needed to reach' levels from the pool."""
    import json

    from zcfast.cli import main

    fig = tmp_path / "fig.png"
    assert main(["figure", "--space", "nb101", "--variants", "rand", "--seeds", "1",
                 "--budget", "5", "--out", str(fig), "--no-progress"]) == 0
    (runs,) = list((tmp_path / "fig_runs").glob("*.jsonl"))
    assert runs.name.startswith("nb101_cifar10_")
    run = json.loads(runs.read_text().splitlines()[0])
    pool = universe("cifar10", space="nb101")
    assert run["space"] == "nb101" and set(run["trained"]) <= set(pool.keys)
    md = fig.with_suffix(".md").read_text()
    assert md.startswith("# NB101 cifar10:")
    assert f"| {max(pool.test):.2f}" in md or f"{round(float(max(pool.test)), 2)}" in md
    assert main(["figure", "--thresholds", "72,x", "--out", str(tmp_path / "g.png"),
                 "--no-progress"]) == 2
    assert "'x' is not a number" in capsys.readouterr().err
