"""Python face of the C++ search driver (``zcfast._C.search``): one search run.

The driver speaks cell codes (sum_e op_e 5^e); this module speaks NB201 indices (the benchmark's
rows), feeds the driver its ground truth (validation accuracy for selection, test accuracy for the
curves) and answers its requests for zero-cost scores from a table, the score cache or a live scorer.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import Callable

import numpy as np

from zcfast import _C
from zcfast.data import dataset_name, groundtruth
from zcfast.search.cache import ScoreCache, ScoreKey
from zcfast.spaces import nb201

ALGOS = ("rand", "ae", "rl", "bp")
# The rules a run was made under (docs/search.md): every oracle query is charged, and the headline
# curve is the test accuracy of the best-validation cell. Recorded in every run so that runs made
# under other rules are never mixed into one file or one table.
PROTOCOL = "every-query-charged/select-on-val"
SPACES = ("nb201",)
SPACE_SIZE = nb201.NUM_ARCHS

# Tunables of the driver with their defaults (csrc/search.hpp documents each one).
DEFAULT_OPTIONS: dict = {
    name: getattr(_C.search.Config(), name)
    for name in ("population", "tournament", "move_random_prob", "rl_lr", "rl_momentum",
                 "rl_warmup_batch", "bp_batch", "bp_hidden", "bp_iters", "bp_warmup_iters",
                 "bp_pairs", "bp_lr", "bp_weight_decay", "max_steps")
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
def code_tables() -> tuple:
    """(index_to_code, code_to_index), both (15625,) int32."""
    return nb201._tables()


def by_code(values_by_index: np.ndarray) -> np.ndarray:
    """Reorder a (15625,) table from NB201 index order to cell-code order."""
    i2c, _ = code_tables()
    v = np.asarray(values_by_index, dtype=np.float64)
    if v.shape != (SPACE_SIZE,):
        raise ValueError(f"expected a table of {SPACE_SIZE} values (one per NB201 cell), got shape {v.shape}")
    out = np.empty(SPACE_SIZE, dtype=np.float64)
    out[i2c] = v
    return out


@functools.cache
def ground_truth(dataset: str) -> _C.search.GroundTruth:
    """The driver's accuracy tables of a dataset (200-epoch validation and test accuracy, %)."""
    gt = groundtruth(dataset_name(dataset))
    return _C.search.GroundTruth(by_code(gt["val_acc"].to_numpy()), by_code(gt["test_acc"].to_numpy()))


def _missing_message(missing: list) -> str:
    shown = ", ".join(str(i) for i in missing[:10])
    more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
    return (f"the score table misses {len(missing)} of the {SPACE_SIZE} NB201 cells (NB201 "
            f"index {shown}{more}); a complete table is needed, or pass no table and let the "
            "score cache and a live scorer fill the gaps")


def _score_table(scores) -> np.ndarray:
    """A complete score table (array by NB201 index, or a Series/Mapping indexed by NB201 index).

    A table that lacks cells is refused, naming them: a missing score must never turn into a NaN
    that silently ranks the cell last."""
    if hasattr(scores, "reindex"):  # pandas Series
        idx = scores.index
        if not idx.is_unique:
            dup = idx[idx.duplicated()]
            raise ValueError(f"the score Series lists NB201 index {dup[0]!r} more than once")
        try:
            ints = np.asarray(idx, dtype=np.int64)
        except (TypeError, ValueError):
            raise ValueError("the score Series is not indexed by NB201 index (0..15624), its "
                             f"index holds e.g. {idx[0]!r}") from None
        bad = ints[(ints < 0) | (ints >= SPACE_SIZE)]
        if bad.size:
            raise ValueError(f"the score Series has index {int(bad[0])}, not an NB201 index in "
                             f"[0, {SPACE_SIZE - 1}]")
        present = np.zeros(SPACE_SIZE, dtype=bool)
        present[ints] = True
        if not present.all():
            raise ValueError(_missing_message(np.flatnonzero(~present).tolist()))
        return scores.reindex(range(SPACE_SIZE)).to_numpy(dtype=np.float64)
    if isinstance(scores, Mapping):
        missing = [i for i in range(SPACE_SIZE) if i not in scores]
        if missing:
            raise ValueError(_missing_message(missing))
        return np.asarray([scores[i] for i in range(SPACE_SIZE)], dtype=np.float64)
    arr = np.asarray(scores, dtype=np.float64)
    if arr.shape != (SPACE_SIZE,):
        raise ValueError(f"a score table needs {SPACE_SIZE} values by NB201 index, got shape {arr.shape}")
    return arr


def run_search(algo: str, dataset: str = "cifar100", budget: int = 300, warmup: int = 0,
               move: int = 0, seed: int = 0, proxy: str = "synflow", *, space: str = "nb201",
               score_seed: int = 0, scores=None, scorer: Callable | None = None,
               cache: ScoreCache | str | None = None, score_key: ScoreKey | None = None,
               options: dict | None = None) -> dict:
    """One simulated zero-cost NAS run; returns a JSON-ready dict.

    ``algo`` rand | ae | rl | bp; ``budget`` oracle queries (trained models, ground-truth look-ups);
    ``warmup`` W and ``move`` M switch on the zero-cost warmup and move proposal (0 = off; the
    meaning per algorithm is in ``docs/search.md``). Zero-cost scores (``proxy`` with weight seed
    ``score_seed``) come from ``scores`` (a complete table by NB201 index) if given, else from the
    score ``cache`` (a ScoreCache or its root folder; default root if None), cells missing there
    being scored with ``scorer`` (callable: NB201 indices -> scores) and appended to the cache.

    Result keys: the settings, ``trained`` (NB201 indices in query order, one per oracle query,
    repeats kept: every query costs one trained model), ``test_curve`` (the headline: entry n-1 is
    the test accuracy of the best-validation cell among the first n queries, the model a user
    would pick), ``best_val_curve``, ``oracle_test_curve`` (diagnostic only: the best *test*
    accuracy seen, which no searcher can select on), ``queries`` (= ``budget`` unless the run
    ``failed``), ``distinct``, ``revisits`` (queries of cells queried before), counters (steps,
    proposals, scores_used, asks, scored_live), ``failed`` and ``seconds``.
    """
    if space not in SPACES:
        raise ValueError(f"unknown search space {space!r}: expected one of {', '.join(SPACES)}")
    ds = dataset_name(dataset)
    opts = dict(options or {})
    cfg = make_config(algo, budget, warmup, move, seed, **opts)
    score_seed = _int("score_seed", score_seed)
    gt = ground_truth(ds)
    i2c, c2i = code_tables()
    needs_scores = cfg.warmup > 0 or cfg.move > 0
    key = score_key or ScoreKey.of(proxy, ds, score_seed, space=space)
    store = None
    full = None
    if needs_scores:
        if scores is not None:
            full = _score_table(scores)
        else:
            store = cache if isinstance(cache, ScoreCache) else ScoreCache(cache)
            full = store.table(key)
    t0 = time.perf_counter()
    s = _C.search.Search(cfg, gt, None if full is None else by_code(full))
    scored_before = store.scored if store is not None else 0
    if needs_scores and full is None:
        known = store.load(key)
        if known:
            idx = np.fromiter(known.keys(), dtype=np.int64, count=len(known))
            vals = np.fromiter(known.values(), dtype=np.float64, count=len(known))
            s.tell(i2c[idx], vals)
    while True:
        need = s.ask()
        if need.size == 0:
            break
        idx = c2i[need].astype(np.int64)
        vals = store.get_or_score(key, idx, scorer)
        s.tell(need, vals)
    dt = time.perf_counter() - t0
    r = s.result()
    out = {
        "space": space, "dataset": ds, "algo": cfg.algo, "budget": cfg.budget,
        "warmup": cfg.warmup, "move": cfg.move, "seed": cfg.seed,
        "proxy": proxy if needs_scores else None, "score_seed": score_seed if needs_scores else None,
        "options": {k: v for k, v in opts.items()},
        "protocol": PROTOCOL,
        "trained": c2i[r["trained"]].astype(int).tolist(),
        "test_curve": r["test_curve"].tolist(),
        "best_val_curve": r["best_val_curve"].tolist(),
        "oracle_test_curve": r["oracle_test_curve"].tolist(),
        "queries": int(r["queries"]), "distinct": int(r["distinct"]),
        "revisits": int(r["revisits"]),
        "steps": int(r["steps"]), "proposals": int(r["proposals"]),
        "scores_used": int(r["scores_used"]), "asks": int(r["asks"]),
        "scored_live": (store.scored - scored_before) if store is not None else 0,
        "failed": bool(r["failed"]), "seconds": dt,
    }
    return out
