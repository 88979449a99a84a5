"""Search driver (zcfast._C.search via zcfast.search): golden runs, invariants, ask/tell, warmup
and move, bad parameters. Synthetic proxy tables only (no network is scored here).

Golden runs are recorded in tests/data/search_golden.json (the first trained cells and curve
values of seeded runs; the RNG is specified bit for bit, see csrc/rng.hpp). After an intended
change of an algorithm, regenerate with ``ZCFAST_REGEN_GOLDEN=1 pytest tests/test_search_driver.py``
and explain the change in the commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from zcfast import _C
from zcfast.data import groundtruth
from zcfast.search import ground_truth, make_config, run_search
from zcfast.spaces import nb201

GOLDEN = Path(__file__).parent / "data" / "search_golden.json"
N = nb201.NUM_ARCHS
FAST_BP = {"bp_iters": 40, "bp_warmup_iters": 60, "bp_pairs": 32}


@pytest.fixture(scope="module")
def gt():
    return groundtruth("cifar100")


@pytest.fixture(scope="module")
def noisy(gt):
    """A synthetic proxy: test accuracy plus a deterministic pseudo-random offset (0..5 points),
    so it is informative but imperfect (like a real zero-cost proxy)."""
    idx = np.arange(N)
    return gt["test_acc"].to_numpy() + ((idx * 7919) % 1009) / 1009.0 * 5.0


@pytest.fixture(scope="module")
def oracle(gt):
    return gt["test_acc"].to_numpy().copy()


VARIANTS = [
    ("rand", 0, 0), ("rand", 500, 0), ("rand", 0, 10),
    ("ae", 0, 0), ("ae", 500, 0), ("ae", 0, 24), ("ae", 0, 5),
    ("rl", 0, 0), ("rl", 500, 0), ("rl", 0, 10),
    ("bp", 0, 0), ("bp", 128, 0), ("bp", 0, 30),
]


def _opts(algo):
    return dict(FAST_BP) if algo == "bp" else {}


def _run(algo, w, m, seed, scores, budget=60, **kw):
    opts = {**_opts(algo), **kw.pop("options", {})}
    return run_search(algo, "cifar100", budget, w, m, seed, scores=scores, options=opts, **kw)


# ------------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("algo,w,m", VARIANTS)
def test_same_seed_same_trajectory_different_seed_differs(algo, w, m, noisy):
    a = _run(algo, w, m, 3, noisy)
    b = _run(algo, w, m, 3, noisy)
    c = _run(algo, w, m, 4, noisy)
    assert a["trained"] == b["trained"]
    assert a["test_curve"] == b["test_curve"]
    assert a["trained"] != c["trained"]


def _golden_entry(r):
    return {"trained": r["trained"][:16], "test": [round(v, 4) for v in r["test_curve"][::15]],
            "steps": r["steps"], "proposals": r["proposals"], "revisits": r["revisits"]}


def test_golden_runs(noisy):
    got = {f"{a}_w{w}_m{m}": _golden_entry(_run(a, w, m, 0, noisy)) for a, w, m in VARIANTS}
    if os.environ.get("ZCFAST_REGEN_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        lines = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in got.items()]
        GOLDEN.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    want = json.loads(GOLDEN.read_text())
    assert set(want) == set(got)
    for k in want:
        assert got[k] == want[k], f"golden run {k} changed"


# -------------------------------------------------------------------------------- invariants
@pytest.mark.parametrize("algo,w,m", VARIANTS)
def test_invariants(algo, w, m, noisy, gt):
    from zcfast.search import verify_run

    budget = 80
    r = _run(algo, w, m, 1, noisy, budget=budget)
    t = r["trained"]
    # every oracle query is charged: the budget is spent exactly, repeats included
    assert not r["failed"] and len(t) == r["queries"] == budget
    assert r["distinct"] == len(set(t)) and r["revisits"] == budget - len(set(t))
    test = gt["test_acc"].to_numpy()[t]
    val = gt["val_acc"].to_numpy()[t]
    np.testing.assert_allclose(r["oracle_test_curve"], np.maximum.accumulate(test))
    np.testing.assert_allclose(r["best_val_curve"], np.maximum.accumulate(val))
    sel = test[[int(np.argmax(val[: k + 1])) for k in range(budget)]]  # argmax: first on ties
    np.testing.assert_allclose(r["test_curve"], sel)
    assert verify_run(r, gt["val_acc"].to_numpy(), gt["test_acc"].to_numpy()) == []
    assert r["proposals"] >= budget
    if w == 0 and m == 0:
        assert r["scores_used"] == 0 and r["proxy"] is None


def test_revisits_are_charged_and_counted():
    # a small AE population re-proposes known cells now and then: each one costs a trained model
    r = _run("ae", 0, 0, 0, None, budget=300, options={"population": 8, "tournament": 4})
    assert len(r["trained"]) == r["queries"] == 300
    assert r["revisits"] > 0 and len(set(r["trained"])) == 300 - r["revisits"]
    assert r["steps"] == 300  # one query per AE step, revisit or not


def test_rl_revisits_are_charged():
    # a REINFORCE policy concentrates on good cells and asks for them again: charged, not free
    r = _run("rl", 0, 0, 0, None, budget=300, options={"rl_lr": 0.5})
    assert r["queries"] == 300 and r["revisits"] > 0 and not r["failed"]


@pytest.mark.parametrize("budget", [5, 8, 50])
def test_population_size_kept(budget):
    cfg = make_config("ae", budget, 0, 0, 2, population=8, tournament=3)
    s = _C.search.Search(cfg, ground_truth("cifar100"))
    s.run()
    pop = s.population()
    assert len(pop) == min(8, budget)
    trained = set(s.result()["trained"].tolist())
    assert set(pop.tolist()) <= trained


def test_ae_children_are_one_edge_mutations():
    # every cell trained after the initial population differs from a population member in one edge
    cfg = make_config("ae", 40, 0, 0, 5, population=10, tournament=3)
    s = _C.search.Search(cfg, ground_truth("cifar100"))
    s.run()
    rows = s.result()["trained"].tolist()  # ground-truth rows = NB201 indices
    ops = {i: np.array(nb201.parse(int(i))) for i in rows}
    for k in range(10, len(rows)):
        assert any((ops[rows[k]] != ops[p]).sum() == 1 for p in rows[:k])


def test_rl_policy_is_a_distribution_and_learns():
    cfg = make_config("rl", 1, 0, 0, 0)
    s = _C.search.Search(cfg, ground_truth("cifar100"))
    p0 = s.policy().reshape(6, 5)
    np.testing.assert_allclose(p0, 0.2)
    cfg = make_config("rl", 200, 0, 0, 0)
    s = _C.search.Search(cfg, ground_truth("cifar100"))
    s.run()
    p = s.policy().reshape(6, 5)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-12)
    assert np.abs(p - 0.2).max() > 0.01  # 200 REINFORCE updates moved it


def test_step_guard_marks_failed_and_aggregation_refuses_it(noisy):
    from zcfast.search import complete_runs, curve_matrix

    # RAND+warmup(15625) spends its first step scoring the warmup pool without training: a guard
    # of 1 step stops it before any query
    r = _run("rand", 15625, 0, 0, noisy, budget=30, options={"max_steps": 1})
    assert r["failed"] and r["queries"] == len(r["trained"]) < 30
    with pytest.raises(ValueError, match="incomplete"):
        curve_matrix([r], length=30)  # never padded
    ok, bad = complete_runs([r])
    assert ok == [] and bad == [r]


# ------------------------------------------------------------------------------------ ask/tell
@pytest.mark.parametrize("algo,w,m", [v for v in VARIANTS if v[1] or v[2]])
def test_ask_tell_matches_full_table(algo, w, m, noisy):
    cfg = make_config(algo, 60, w, m, 7, **_opts(algo))
    gtab = ground_truth("cifar100")
    table = noisy  # by ground-truth row = NB201 index
    full = _C.search.Search(cfg, gtab, table)
    full.run()
    s = _C.search.Search(cfg, gtab)
    asked: set = set()
    batches = []
    while True:
        need = s.ask()
        if need.size == 0:
            break
        assert len(set(need.tolist())) == need.size  # distinct within a batch
        assert not (asked & set(need.tolist()))  # never asked twice
        asked |= set(need.tolist())
        batches.append(need.size)
        s.tell(need, table[need])
    assert s.done
    a, b = full.result(), s.result()
    np.testing.assert_array_equal(a["trained"], b["trained"])
    assert a["scores_used"] == b["scores_used"] == len(asked)
    assert b["asks"] == len(batches) and a["asks"] == 0
    if w:  # the warmup asks for its W cells in one batch (RL: in policy batches)
        assert batches[0] == (min(w, cfg.rl_warmup_batch) if algo == "rl" else w)


def test_ask_tell_preloaded_scores_are_not_asked(noisy):
    cfg = make_config("ae", 60, 0, 24, 1)
    table = noisy
    s = _C.search.Search(cfg, ground_truth("cifar100"))
    rows = np.arange(N, dtype=np.int32)[: N // 2]
    s.tell(rows, table[rows])
    while (need := s.ask()).size:
        assert need.min() >= N // 2
        s.tell(need, table[need])


def test_nan_scores_rank_last(noisy):
    # a NaN score never wins a move: with NaN on every cell but the oracle-best ones, the run
    # behaves as if those cells were the only informative ones
    scores = np.full(N, np.nan)
    best = int(np.argmax(noisy))
    scores[best] = 1.0
    r = _run("rand", 15625, 0, 0, scores, budget=3)
    assert r["trained"][0] == best


# ------------------------------------------------------------------------ warmup/move use scores
def test_warmup_with_oracle_finds_the_optimum_first(oracle, gt):
    top = float(gt["test_acc"].max())
    for algo in ("rand", "ae"):
        r = _run(algo, 15625, 0, 0, oracle, budget=10)
        assert r["oracle_test_curve"][0] == top, algo
    # BP pre-trained on the oracle ranking of 256 cells trains a strong first batch
    bp = [_run("bp", 256, 0, s, oracle, budget=10)["oracle_test_curve"][-1] for s in range(3)]
    base = [_run("bp", 0, 0, s, oracle, budget=10)["oracle_test_curve"][-1] for s in range(3)]
    assert np.mean(bp) > np.mean(base)


@pytest.mark.parametrize("algo,w,m", [("rand", 1000, 0), ("rand", 0, 10), ("ae", 1000, 0),
                                      ("ae", 0, 24), ("rl", 1000, 0), ("rl", 0, 10),
                                      ("bp", 256, 0), ("bp", 0, 50)])
def test_scores_steer_the_search(algo, w, m, oracle):
    """With the true accuracy as proxy the variant beats its anti-proxy twin (scores negated):
    so the proxy really drives warmup and move."""
    seeds = range(4)
    o = {"population": 16, "tournament": 5} if algo == "ae" and m else {}  # reach the move phase

    def final(scores, s):
        return _run(algo, w, m, s, scores, budget=40, options=o)["test_curve"][-1]

    good = np.mean([final(oracle, s) for s in seeds])
    bad = np.mean([final(-oracle, s) for s in seeds])
    assert good > bad + 0.3, (good, bad)


# ------------------------------------------------------------------------------ bad parameters
@pytest.mark.parametrize("kwargs,match", [
    ({"budget": 0}, "budget 0"),
    ({"budget": 15626}, "budget 15626"),
    ({"warmup": 15626}, "warmup 15626"),
    ({"warmup": -1}, "warmup -1"),
    ({"move": -3}, "move -3"),
    ({"algo": "sa"}, "'sa'"),
    ({"options": {"population": 20000}}, "population 20000"),
    ({"options": {"tournament": 65}}, "tournament 65"),
    ({"options": {"rl_lr": -1.0}}, "rl_lr"),
    ({"options": {"move_random_prob": 1.5}}, "move_random_prob"),
    ({"options": {"bogus": 1}}, "bogus"),
    ({"budget": True}, "budget"),
    ({"seed": -1}, "seed must be >= 0, got -1"),
])
def test_bad_parameters_raise_value_error_naming_them(kwargs, match):
    args = {"algo": "ae", "budget": 10, "warmup": 0, "move": 0, "seed": 0}
    opts = kwargs.pop("options", {})
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        run_search(args.pop("algo"), "cifar100", options=opts, **args)


def test_bad_tables_raise():
    g = ground_truth("cifar100")
    sp = _C.space.nb201()
    codes = nb201._tables()[0].astype(np.uint64)
    with pytest.raises(ValueError, match="10 entries, expected 15625"):
        _C.search.GroundTruth(sp, codes, np.zeros(10), np.zeros(N))
    bad = np.zeros(N)
    bad[5] = np.nan
    with pytest.raises(ValueError, match=r"validation accuracy of \|.*\(row 5\) is not finite"):
        _C.search.GroundTruth(sp, codes, bad, np.zeros(N))
    with pytest.raises(ValueError, match="rows 0 and 1 of the ground truth are the same nb201"):
        _C.search.GroundTruth(sp, codes[[0, 0]], np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="NB201 cell code 15625"):
        _C.search.GroundTruth(sp, np.array([15625], dtype=np.uint64), np.zeros(1), np.zeros(1))
    with pytest.raises(ValueError, match="15625 entries"):
        _C.search.Search(make_config("ae", 5, 10, 0), g, np.zeros(3))
    s = _C.search.Search(make_config("ae", 5, 10, 0), g)
    with pytest.raises(ValueError, match="row 15625 is out of range"):
        s.tell(np.array([15625], dtype=np.int32), np.array([1.0]))
    with pytest.raises(RuntimeError, match="proxy scores"):
        s.run()
    with pytest.raises(ValueError, match="score table"):
        run_search("ae", "cifar100", 5, 10, 0, scores=np.zeros(7))


def test_incomplete_score_series_is_refused_naming_the_missing_cells(noisy):
    import pandas as pd

    full = pd.Series(noisy, index=np.arange(N))
    assert run_search("rand", "cifar100", 5, 100, 0, scores=full)["queries"] == 5
    gappy = full.drop([17, 4242])
    with pytest.raises(ValueError, match=r"misses 2 of the 15625 networks of the nb201 universe \(index 17, 4242\)"):
        run_search("rand", "cifar100", 5, 100, 0, scores=gappy)
    with pytest.raises(ValueError, match="more than once"):
        run_search("rand", "cifar100", 5, 100, 0, scores=pd.concat([full, full.iloc[:1]]))
    with pytest.raises(ValueError, match="15625.*is not one of the 15625 networks"):
        run_search("rand", "cifar100", 5, 100, 0, scores=pd.Series(noisy, index=np.arange(N) + 1))


# ---------------------------------------------------------------------------------- predictor
def test_rank_predictor_learns_an_ordering(gt):
    i2c = nb201._tables()[0].astype(np.uint64)
    rng = np.random.default_rng(0)
    idx = rng.permutation(N)
    tr, te = idx[:300], idx[300:1300]
    y = gt["val_acc"].to_numpy()
    p = _C.search.RankPredictor(_C.space.nb201(), hidden=32, lr=3e-3, weight_decay=5e-4, seed=0)
    before = p.pair_accuracy(i2c[te], y[te])
    p.fit(i2c[tr], y[tr], iters=300, pairs=64, seed=1)
    after = p.pair_accuracy(i2c[te], y[te])
    assert after > 0.8 and after > before + 0.1, (before, after)
    f = p.predict_many(i2c)
    assert f.shape == (N,) and np.isfinite(f).all()
    assert f[te[0]] == p.predict(int(i2c[te[0]]))  # one definition of a prediction


# ------------------------------------------------------------------------------------- pools
def _pool(n=300, seed=4):
    """A pool: the ground truth of n random NB201 cells only (not the whole space)."""
    g = groundtruth("cifar100")
    idx = np.sort(nb201.sample(n, seed))
    codes = nb201._tables()[0][idx].astype(np.uint64)
    gt = _C.search.GroundTruth(_C.space.nb201(), codes, g["val_acc"].to_numpy()[idx],
                               g["test_acc"].to_numpy()[idx])
    return gt, idx, codes


@pytest.mark.parametrize("algo,w,m", VARIANTS)
def test_pool_search_trains_only_pool_members(algo, w, m):
    gt, idx, _ = _pool()
    assert not gt.complete and gt.rows == 300
    w = min(w, 300)
    cfg = make_config(algo, 60, w, m, 3, **_opts(algo))
    s = _C.search.Search(cfg, gt, np.random.default_rng(1).standard_normal(300))
    s.run()
    r = s.result()
    assert s.pool and r["queries"] == 60 and not r["failed"]
    assert r["trained"].min() >= 0 and r["trained"].max() < 300  # rows of the pool
    val = gt_val = groundtruth("cifar100")["val_acc"].to_numpy()[idx]
    np.testing.assert_allclose(r["val"], val[r["trained"]])
    del gt_val


def test_pool_budget_is_bounded_by_the_pool():
    gt, _, _ = _pool(50)
    with pytest.raises(ValueError, match=r"budget 51 is out of range: expected 1 to 50 trained "
                                         r"models \(the 50 cells of the nb201 pool\)"):
        _C.search.Search(make_config("rand", 51), gt)
    s = _C.search.Search(make_config("rand", 50, 0, 0, 0), gt)
    s.run()
    assert sorted(s.result()["trained"].tolist()) == list(range(50))  # every member once


def test_pool_ae_children_are_nearest_pool_members():
    """In a pool, a mutation picks one of the parent's nearest pool members in the predictor
    encoding (as many as the space's neighbourhood: 24 for NB201)."""
    gt, _, codes = _pool(200, seed=9)
    sp = _C.space.nb201()
    enc = sp.encode(codes)
    d = ((enc[:, None, :] - enc[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    cfg = make_config("ae", 120, 0, 0, 2, population=10, tournament=3)
    s = _C.search.Search(cfg, gt)
    s.run()
    t = s.result()["trained"].tolist()
    for k in range(10, len(t)):  # each child is within 24 nearest of some earlier member
        near = [set(np.lexsort((codes, d[p]))[:24].tolist()) for p in t[:k]]
        assert any(t[k] in nb for nb in near)


def test_pool_rl_policy_is_restricted_to_the_pool():
    """RL in a pool samples from q(cell) = p(cell) / sum_pool p: the driver's q equals that formula
    for a trained (non-uniform) policy, and draws from a fixed policy hit every member with its
    probability."""
    gt, _, codes = _pool(20, seed=2)
    s = _C.search.Search(make_config("rl", 20, 0, 0, 5, rl_lr=0.5), gt)
    s.run()  # 20 REINFORCE updates make the policy non-uniform
    p = s.policy().reshape(6, 5)
    sp = _C.space.nb201()
    dec = np.array([sp.to_decisions(int(c)) for c in codes])
    logq = np.log(p[np.arange(6), dec]).sum(1)
    q = np.exp(logq - logq.max())
    q /= q.sum()
    assert q.max() > 2 * q.min()  # the policy prefers some members: a real test of restriction
    # (q is read back from cumulative sums: absolute rounding ~1e-16)
    np.testing.assert_allclose(s.pool_probabilities(), q, rtol=1e-9, atol=1e-14)
    # draws with a policy that stays fixed (lr ~ 0: uniform p, so q is uniform over the pool)
    counts = np.zeros(20)
    for seed in range(400):
        s2 = _C.search.Search(make_config("rl", 20, 0, 0, seed, rl_lr=1e-12), gt)
        s2.run()
        counts += np.bincount(s2.result()["trained"], minlength=20)
    freq = counts / counts.sum()
    assert np.abs(freq - 1 / 20).max() < 0.01, freq


# --------------------------------------------------------------------------------- ensembles
def test_ensemble_proxy_ranks_over_the_compared_cells(gt):
    """A search with an ensemble proxy: every comparison ranks each member over the cells it
    compares and combines the ranks by the ensemble's rule, exactly as
    zcfast.proxies.ensemble.evaluate does over those cells. Checked on RAND+warmup, whose first
    trained cells are its warmup pool in descending ensemble order, for all three rules and a
    nested fixed ensemble. (Swapping the logrank and meanrank rules in the driver fails it.)"""
    import pandas as pd

    from zcfast.proxies import ensemble as ens
    from zcfast.search.driver import proxy_members

    rng = np.random.default_rng(5)
    cols = {m: pd.Series(np.where(rng.random(N) < 0.01, np.nan, rng.standard_normal(N)), index=np.arange(N))
            for m in ("synflow", "jacob_cov", "snip", "nwot")}
    cols["jacob_cov"].iloc[: N // 3] = 1.0  # ties
    assert all(0 < c.isna().sum() < N // 20 for c in cols.values())  # a few NaN, not all
    for name in ("vote", "ensemble:synflow+jacob_cov+snip", "ensemble[meanrank]:snip+nwot",
                 "ensemble:nwot+vote"):
        members, expr = proxy_members(name)
        r = run_search("rand", "cifar100", 200, 200, 0, 3, name,
                       scores={m: cols[m] for m in members})
        assert r["ensemble"]["members"] == members and r["ensemble"]["expression"] == expr
        pool = np.asarray(r["trained"])  # RAND+warmup(W), budget W: exactly its warmup pool
        want = ens.evaluate(name, {m: cols[m].to_numpy()[pool] for m in members})
        order = sorted(range(len(pool)), key=lambda i: (-np.nan_to_num(want[i], nan=-np.inf),
                                                         nb201.code_of_index(int(pool[i]))))
        assert [int(pool[i]) for i in order] == r["trained"], name


def test_ensemble_proxy_drives_move_proposal():
    """AE+move with an ensemble proxy picks, among each step's proposals, the ensemble's best
    over those proposals. Made checkable with a first member that ties on every cell: the
    log-rank ensemble then orders any set of cells as its second member alone, so the run must
    train exactly the cells the second member's own run trains. (A driver that reads only the
    first member, seen by handing it the expression of member 0 alone, fails it.)"""
    import pandas as pd

    rng = np.random.default_rng(11)
    syn = pd.Series(rng.standard_normal(N), index=np.arange(N))
    flat = pd.Series(np.ones(N), index=np.arange(N))
    o = {"population": 16, "tournament": 5}  # reach the move phase within the budget
    for seed in range(2):
        alone = run_search("ae", "cifar100", 40, 0, 10, seed, "synflow", scores=syn,
                           options=o)
        both = run_search("ae", "cifar100", 40, 0, 10, seed, "ensemble:nwot+synflow",
                          scores={"nwot": flat, "synflow": syn}, options=o)
        assert both["trained"] == alone["trained"], seed
        assert len(set(both["trained"][16:])) > 10  # the move phase ran and proposed many cells


def test_ensemble_expression_errors():
    cfg = make_config("rand", 5)
    cfg.score_members, cfg.ensemble = 2, "logrank(0,2)"
    with pytest.raises(ValueError, match="reads column 2 but score_members is 2"):
        cfg.validate()
    cfg.ensemble = "median(0,1)"
    with pytest.raises(ValueError, match="unknown rule 'median'"):
        cfg.validate()
    cfg.ensemble = ""
    with pytest.raises(ValueError, match="needs an ensemble expression"):
        cfg.validate()
    with pytest.raises(ValueError, match="per member"):
        run_search("rand", "cifar100", 5, 10, 0, 0, "vote", scores=np.zeros(N))


def test_run_search_scores_missing_cells_live_by_default(tmp_path):
    """Without scores, a cache or a scorer, run_search scores the cells it needs with the packed
    engine (as ``zcfast search`` does) and caches them: a fresh install's first call works."""
    from zcfast.search import ScoreCache
    from zcfast.search.cache import ScoreKey
    from zcfast.search.scorer import default_scorer

    r = run_search("rand", "cifar100", 3, 6, 0, 0, "synflow", cache=ScoreCache(tmp_path))
    assert r["scored_live"] == 6 and r["queries"] == 3
    got = ScoreCache(tmp_path).load(ScoreKey.of("synflow", "cifar100", 0))
    codes = np.asarray([nb201.code_of_index(nb201.index_of(k)) for k in got], dtype=np.uint64)
    np.testing.assert_array_equal(default_scorer("synflow", "cifar100", 0)(codes),
                                  np.asarray(list(got.values())))
