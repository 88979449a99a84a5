"""Python face of the C++ search driver (``zcfast._C.search``): one search run, on any space.

The driver works on the rows of a ground-truth table (a :class:`~zcfast.spaces.Universe`: the
space's networks with their accuracies) and on the space's compiled hot path; this module builds
both from the space plugin (:mod:`zcfast.spaces`), answers the driver's requests for zero-cost
scores from a table, the score cache or a live scorer, and reports trained networks by the
space's identifiers (NB201 indices, NB101 hashes...).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import Callable

import numpy as np

from zcfast import _C
from zcfast.data import dataset_name
from zcfast.search.cache import ScoreCache, ScoreKey
from zcfast.spaces import Universe, get_space

ALGOS = ("rand", "ae", "rl", "bp")
# The rules a run was made under (docs/search.md): every oracle query is charged, and the headline
# curve is the test accuracy of the best-validation cell. Recorded in every run so that runs made
# under other rules are never mixed into one file or one table.
PROTOCOL = "every-query-charged/select-on-val"

# Tunables of the driver with their defaults (csrc/search.hpp documents each one).
DEFAULT_OPTIONS: dict = {
    name: getattr(_C.search.Config(), name)
    for name in ("population", "tournament", "move_random_prob", "rl_lr", "rl_momentum",
                 "rl_warmup_batch", "bp_batch", "bp_hidden", "bp_iters", "bp_warmup_iters",
                 "bp_pairs", "bp_lr", "bp_weight_decay", "bp_candidates", "max_steps")
}


def _int(name: str, v) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {v!r}")
    return int(v)


def check_algo(algo: str) -> str:
    a = str(algo).strip().lower() if isinstance(algo, str) else algo
    aliases = {"random": "rand", "evolution": "ae", "re": "ae", "reinforce": "rl",
               "predictor": "bp"}
    a = aliases.get(a, a)
    if a not in ALGOS:
        raise ValueError(f"unknown search algorithm {algo!r}: expected one of {', '.join(ALGOS)}")
    return a


def make_config(algo: str, budget: int = 300, warmup: int = 0, move: int = 0, seed: int = 0,
                **options) -> _C.search.Config:
    """A validated driver config; ValueError names the first bad value."""
    c = _C.search.Config()
    c.algo = check_algo(algo)
    b, w, m, s = _int("budget", budget), _int("warmup", warmup), _int("move", move), _int("seed", seed)
    if s < 0:
        raise ValueError(f"seed must be >= 0, got {s}")
    c.budget, c.warmup, c.move, c.seed = b, w, m, s
    for k, v in options.items():
        if k not in DEFAULT_OPTIONS:
            raise ValueError(f"unknown search option {k!r}: expected one of {', '.join(DEFAULT_OPTIONS)}")
        if isinstance(DEFAULT_OPTIONS[k], int):
            v = _int(k, v)
        else:
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"{k} must be a number, got {v!r}") from None
        setattr(c, k, v)
    c.validate()
    return c


@functools.cache
def _universe(space: str, dataset: str, data) -> tuple:
    sp = get_space(space)
    uni = sp.universe(dataset, data)
    gt = _C.search.GroundTruth(sp.hot(), np.asarray(uni.codes, dtype=np.uint64),
                               np.asarray(uni.val, dtype=np.float64),
                               np.asarray(uni.test, dtype=np.float64))
    ids = [sp.row_fields(int(c))[sp.key_column] for c in uni.codes]
    return uni, gt, ids


def universe(dataset: str, space: str = "nb201", data=None) -> Universe:
    """The cells a search on ``space`` may train, with their accuracies (see Universe)."""
    return _universe(get_space(space).name, dataset_name(dataset), data)[0]


def ground_truth(dataset: str, space: str = "nb201", data=None) -> _C.search.GroundTruth:
    """The driver's training oracle (one row per network of the universe; for NB201 row i is
    NB201 index i)."""
    return _universe(get_space(space).name, dataset_name(dataset), data)[1]


def universe_ids(dataset: str, space: str = "nb201", data=None) -> list:
    """The space's identifier (score-file key column) of every row of the universe."""
    return _universe(get_space(space).name, dataset_name(dataset), data)[2]


def _missing_message(missing: list, n: int, what: str, column: str) -> str:
    shown = ", ".join(str(i) for i in missing[:10])
    more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
    return (f"the score table misses {len(missing)} of the {n} {what} ({column} {shown}{more}); a "
            "complete table is needed, or pass no table and let the score cache and a live "
            "scorer fill the gaps")


def _score_table(scores, uni: Universe, ids: list, what: str, column: str) -> np.ndarray:
    """A complete score table by universe row: an array in row order, or a pandas Series /
    Mapping indexed by the space's identifiers (NB201 index, NB101 hash...) or keys.

    A table that lacks networks is refused, naming them: a missing score must never turn into a
    NaN that silently ranks the network last."""
    n = len(uni)
    if hasattr(scores, "index") and hasattr(scores, "to_numpy"):  # pandas Series
        idx = scores.index
        if not idx.is_unique:
            dup = idx[idx.duplicated()]
            raise ValueError(f"the score Series lists {dup[0]!r} more than once")
        scores = dict(zip(idx.tolist(), scores.to_numpy(dtype=np.float64).tolist()))
    if isinstance(scores, Mapping):
        by_key = not any(i in scores for i in ids[:1]) and any(k in scores for k in uni.keys[:1])
        names = uni.keys if by_key else ids
        extra = set(scores) - set(names)
        if extra:
            e = sorted(map(str, extra))[0]
            raise ValueError(f"the score table has {e!r}, which is not one of the {n} {what}")
        missing = [i for i in names if i not in scores]
        if missing:
            raise ValueError(_missing_message(missing, n, what, "key" if by_key else column))
        return np.asarray([scores[i] for i in names], dtype=np.float64)
    arr = np.asarray(scores, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"a score table needs {n} values (one per {what[:-1]}, in the universe's "
                         f"order), got shape {arr.shape}")
    return arr


# what the ranks of an ensemble proxy are computed over in a search (docs/search.md)
ENSEMBLE_SCOPE = ("the cells each comparison compares: the warmup pool, the move's candidates, "
                  "RL warmup's cells seen so far, BP's warmup pool")


def proxy_members(proxy: str) -> tuple:
    """(member proxies, driver ensemble expression or '') of a proxy name: a registry proxy is
    its own single member; an ensemble (``vote``, ``ensemble[rule]:a+b``, fixed ensembles as
    members) becomes its base members and an expression over their columns."""
    from zcfast.proxies import PROXIES
    from zcfast.proxies import ensemble as ens

    if not ens.is_ensemble(proxy):
        return [proxy], ""
    ens.parse(proxy, known=PROXIES)
    members = ens.base_members(proxy)

    def expr(name):
        if not ens.is_ensemble(name):
            return str(members.index(name))
        e = ens.parse(name)
        return f"{e.rule}(" + ",".join(expr(m) for m in e.members) + ")"

    return members, expr(proxy)


def _member_scorers(scorer, members: list) -> list:
    """One callable (codes -> scores) per member: ``scorer`` may be one callable (one member, or
    returning an (n, members) matrix), or a dict {member: callable}."""
    if scorer is None:
        return [None] * len(members)
    if isinstance(scorer, Mapping):
        missing = [m for m in members if m not in scorer]
        if missing:
            raise ValueError(f"no scorer for the ensemble members {missing}")
        return [scorer[m] for m in members]
    if len(members) == 1:
        return [scorer]
    cache: dict = {}

    def column(j):
        def f(codes):
            key = tuple(int(c) for c in codes)
            if key not in cache:
                cache.clear()
                cache[key] = np.asarray(scorer(codes), dtype=np.float64).reshape(len(key), -1)
            return cache[key][:, j]

        return f

    return [column(j) for j in range(len(members))]


def score_keys(members, dataset: str, score_seed: int, space: str,
               score_key: ScoreKey | None = None) -> list:
    """The cache key of each member's scores: ``score_key``'s settings (the key of a member that
    reads images, or of any member when none does; ``zcfast search`` builds it from its
    minibatch options), or the defaults of ``zcfast score`` with weight seed ``score_seed``.
    The key must be for this space, dataset and weight seed; its precision is the one the
    search's default live scorer computes in (a scorer passed in must compute in it too)."""
    if score_key is None:
        return [ScoreKey.of(m, dataset, score_seed, space=space) for m in members]
    for what, have, want in (("space", score_key.space, space),
                             ("dataset", score_key.dataset, dataset_name(dataset)),
                             ("weight seed", score_key.seed, score_seed)):
        if have != want:
            raise ValueError(f"the score key is for {what} {have!r}, the search's is {want!r}")
    return [score_key.for_proxy(m) for m in members]


def score_settings(keys) -> dict:
    """The settings of a proxy's (an ensemble's) scores: the flavour, and the minibatch of the
    first member that reads images (ScoreKey.settings)."""
    return next((k for k in keys if k.images is not None), keys[0]).settings()


def run_search(algo: str, dataset: str = "cifar100", budget: int = 300, warmup: int = 0,
               move: int = 0, seed: int = 0, proxy: str = "synflow", *, space: str = "nb201",
               data=None, score_seed: int = 0, scores=None, scorer: Callable | None = None,
               cache: ScoreCache | str | None = None, score_key: ScoreKey | None = None,
               options: dict | None = None, hardware=None, estimate_scores: dict | None = None,
               estimate_scorers: dict | None = None) -> dict:
    """One simulated zero-cost NAS run on ``space``; returns a JSON-ready dict.

    ``algo`` rand | ae | rl | bp; ``budget`` oracle queries (trained models, ground-truth look-ups);
    ``warmup`` W and ``move`` M switch on the zero-cost warmup and move proposal (0 = off; the
    meaning per algorithm is in ``docs/search.md``). The universe is the space's ground truth of
    ``dataset`` (``data``: an optional benchmark file the space reads, e.g. NB101's official
    tfrecord); a universe that does not cover the whole space is searched as a pool
    (docs/spaces.md). Zero-cost scores (``proxy`` with weight seed ``score_seed``) come from
    ``scores`` (a complete table: an array in universe order, or a Series/Mapping by the space's
    identifiers, e.g. NB201 index) if given, else from the score ``cache`` (a ScoreCache or its
    root folder; default root if None), networks missing there being scored with ``scorer``
    (callable: codes (uint64 array) -> scores; default: the packed engine on this machine, as
    ``zcfast search`` does, ``zcfast.search.scorer.default_scorer``) and appended to the cache.

    Result keys: the settings, ``trained`` (the space's identifiers of the networks queried, in
    query order, one per oracle query, repeats kept: every query costs one trained model; NB201
    indices for NB201), ``test_curve`` (the headline: entry n-1 is the test accuracy of the
    best-validation network among the first n queries, the model a user would pick),
    ``best_val_curve``, ``oracle_test_curve`` (diagnostic only: the best *test* accuracy seen,
    which no searcher can select on), ``queries`` (= ``budget`` unless the run ``failed``),
    ``distinct``, ``revisits`` (queries of networks queried before), counters (steps, proposals,
    scores_used, asks, scored_live), ``universe`` (what was searched), ``pool``, ``failed`` and
    ``seconds``.

    ``hardware``: a :class:`zcfast.search.hw.HardwareSpec` (or a dict of its fields) makes the
    search hardware-aware (docs/hardware.md): only cells within the device budget are proposed,
    scored and trained, and with two objectives the run also returns the Pareto front of its
    trained cells and the hypervolume curves. A ``params`` / ``flops`` estimate reads those
    scores from ``estimate_scores`` ({kind: table}) or the score cache (weight seed 0), scoring
    missing cells with ``estimate_scorers`` ({kind: scorer}). Extra result keys: ``hardware``
    (the spec), ``hw`` (feasible cells, the selected cell's true metrics, budget violations),
    and with two objectives ``hv_curve``, ``hv_val_curve``, ``front`` (identifiers, cost
    ascending), ``front_points`` ([id, val, test, cost] each) and ``hv_ranges``.
    """
    sp = get_space(space)
    ds = dataset_name(dataset)
    opts = dict(options or {})
    cfg = make_config(algo, budget, warmup, move, seed, **opts)
    score_seed = _int("score_seed", score_seed)
    uni, gt, ids = _universe(sp.name, ds, data)
    needs_scores = cfg.warmup > 0 or cfg.move > 0
    members, expression = proxy_members(proxy)
    keys = score_keys(members, ds, score_seed, sp.name, score_key)
    if expression:
        cfg.score_members = len(members)
        cfg.ensemble = expression
        cfg.validate()
    store = None
    full = None
    what = f"networks of the {sp.name} universe"
    if needs_scores:
        if scores is not None:
            if len(members) > 1:
                if not isinstance(scores, Mapping) or set(scores) != set(members):
                    raise ValueError(f"the ensemble {proxy!r} needs a score table per member: a "
                                     f"dict {{member: table}} with the members {members}")
                full = np.column_stack([_score_table(scores[m], uni, ids, what, sp.key_column)
                                        for m in members]).reshape(-1)
            else:
                full = _score_table(scores, uni, ids, what, sp.key_column)
        else:
            store = cache if isinstance(cache, ScoreCache) else ScoreCache(cache)
            tabs = [store.table(k, uni.keys) for k in keys]
            if all(t is not None for t in tabs):
                full = np.column_stack(tabs).reshape(-1)
    spec = task = None
    if hardware is not None:
        from zcfast.search import hw as _hw

        spec = _hw.HardwareSpec.of(hardware)
        if sp.name != "nb201" or not gt.complete:
            raise ValueError("hardware-aware search needs the complete NB201 space (HW-NAS-Bench "
                             f"measured NB201 cells), not the {sp.name} universe")
        tables = {}
        kind = spec.estimate.split(":")[0] if spec.estimate else None
        if kind in ("params", "flops"):
            if estimate_scores and kind in estimate_scores:
                tables[kind] = _score_table(estimate_scores[kind], uni, ids, what, sp.key_column)
            else:
                est_store = cache if isinstance(cache, ScoreCache) else ScoreCache(cache)
                tables[kind] = est_store.get_or_score(
                    ScoreKey.of(kind, ds, 0, space=sp.name), uni.keys, uni.codes,
                    (estimate_scorers or {}).get(kind))
        task = _hw.resolve(spec, ds, cfg.seed, proxy_tables=tables, n_rows=len(uni))
    t0 = time.perf_counter()
    s = _C.search.Search(cfg, gt, full, feasible=None if task is None else task.feasible,
                         cost=None if task is None else task.cost)
    scored_before = store.scored if store is not None else 0
    if needs_scores and full is None:
        known = [store.load(k) for k in keys]
        rows = uni.row_of()
        have = [k for k in known[0] if k in rows and all(k in kn for kn in known[1:])]
        if have:
            s.tell(np.asarray([rows[k] for k in have], dtype=np.int32),
                   np.asarray([[kn[k] for kn in known] for k in have], dtype=np.float64))
    if needs_scores and full is None and scorer is None:  # the CLI's live scorer, built lazily
        from zcfast.search.scorer import default_scorer

        scorer = default_scorer(proxy, ds, score_seed, space=sp.name, **score_settings(keys))
    member_scorers = _member_scorers(scorer, members)
    while True:
        need = s.ask()  # rows of the universe
        if need.size == 0:
            break
        nkeys, ncodes = [uni.keys[r] for r in need], uni.codes[need]
        vals = np.column_stack([store.get_or_score(k, nkeys, ncodes, f)
                                for k, f in zip(keys, member_scorers)])
        s.tell(need, vals)
    dt = time.perf_counter() - t0
    r = s.result()
    out = {
        "space": sp.name, "dataset": ds, "data": None if data is None else str(data),
        "algo": cfg.algo, "budget": cfg.budget,
        "warmup": cfg.warmup, "move": cfg.move, "seed": cfg.seed,
        "proxy": proxy if needs_scores else None, "score_seed": score_seed if needs_scores else None,
        # the minibatch and flavour the scores were made with (None: a table given by the caller)
        "score_settings": score_settings(keys) if needs_scores and scores is None else None,
        **({"ensemble": {"members": members, "expression": expression,
                         "ranks_over": ENSEMBLE_SCOPE}} if expression and needs_scores else {}),
        "options": {k: v for k, v in opts.items()},
        "protocol": PROTOCOL,
        "universe": uni.description, "pool": bool(s.pool),
        "trained": [ids[i] for i in r["trained"].tolist()],
        "test_curve": r["test_curve"].tolist(),
        "best_val_curve": r["best_val_curve"].tolist(),
        "oracle_test_curve": r["oracle_test_curve"].tolist(),
        "queries": int(r["queries"]), "distinct": int(r["distinct"]),
        "revisits": int(r["revisits"]),
        "steps": int(r["steps"]), "proposals": int(r["proposals"]),
        "scores_used": int(r["scores_used"]), "asks": int(r["asks"]),
        "scored_live": (store.scored - scored_before) if store is not None else 0,
        "failed": bool(r["failed"]), "seconds": dt,
        "hardware": None if spec is None else spec.settings(),
    }
    if task is not None:
        from zcfast.search import hw as _hw

        out["hw"] = {**task.record, **_hw.outcome(task, r["trained"], r["val"], r["test"])}
        for k in ("selected", "best_within"):
            if out["hw"].get(k) is not None:
                out["hw"][k] = ids[out["hw"][k]]
        if spec.estimate and spec.budgets:  # the headline cell may break the true budget
            out["within_curve"] = _hw.within_curve(task, r["trained"], r["val"], r["test"])
        if "hv_curve" in r:
            front = r["front"]
            out["hv_curve"] = r["hv_curve"].tolist()
            out["hv_val_curve"] = r["hv_val_curve"].tolist()
            out["front"] = [ids[i] for i in front.tolist()]
            out["front_points"] = [[ids[i], float(uni.val[i]), float(uni.test[i]),
                                    float(task.cost[i])] for i in front.tolist()]
            out["hv_ranges"] = {k: float(v) for k, v in r["hv_ranges"].items()}
    return out
