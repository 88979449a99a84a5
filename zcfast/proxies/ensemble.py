"""Label-free ensembles of proxies: scores that rank cells against the other cells compared.

An ensemble column is not a property of one network: it is computed from the member scores of
*all the cells being compared* (the cells of a score file, a search's warmup pool, the
neighbours of a move). Semantics (docs/proxies_modern.md, "Ensembles"):

- ranks: per member, the average rank over the compared cells (1 = lowest score, ties share
  the mean of their ranks, as ``scipy.stats.rankdata``); NaN ranks as -inf (lowest, tied with
  -inf), as AZ-NAS does.
- ``logrank`` (default): sum_k log(rank_k / n) (AZ-NAS's aggregate, VKDNW_agg);
- ``meanrank``: mean_k rank_k;
- ``vote``: the zero-cost paper's pairwise majority vote, as a per-cell count: cell i beats j
  when at least half of the members score i strictly higher than j (NaN comparisons are not
  "higher"); the score of i is the number of cells it beats (Copeland count).

Names, usable wherever a proxy name is (output column named exactly as written):
``ensemble:a+b+c`` (rule logrank), ``ensemble[meanrank]:a+b``, ``ensemble[vote]:a+b+c``, and the
fixed ensembles ``vote`` (the paper's: vote over synflow, jacob_cov, snip), ``az_nas`` and
``vkdnw_agg``. Members are registry proxies or fixed ensembles (ranked again as one member).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from zcfast.proxy_names import FIXED_ENSEMBLES as _FIXED_NAMES

RULES = ("logrank", "meanrank", "vote")
DEFAULT_RULE = "logrank"
PREFIX = "ensemble"


@dataclass(frozen=True)
class Ensemble:
    name: str  # the column name, as written
    rule: str
    members: tuple  # member names (proxies or fixed ensembles)
    description: str = ""


# Fixed ensembles. az_nas: AZ-NAS (CVPR 2024) sums log(rank/n) of its four components, with
# FLOPs as complexity. vkdnw_agg: VKDNW (CVPR 2025) Table 1's VKDNW_agg = log ranks of the
# lexicographic (dim, entropy) order, expressivity, trainability, FLOPs and jacov.
FIXED = {
    "vote": Ensemble("vote", "vote", ("synflow", "jacob_cov", "snip"),
                     "the zero-cost paper's majority vote of synflow, jacob_cov and snip"),
    "az_nas": Ensemble("az_nas", "logrank",
                       ("az_expressivity", "az_progressivity", "az_trainability", "az_complexity"),
                       "AZ-NAS: sum of log ranks of its four components"),
    "vkdnw_agg": Ensemble("vkdnw_agg", "logrank",
                          ("vkdnw_single", "az_expressivity", "az_trainability", "flops",
                           "jacob_cov"),
                          "VKDNW_agg: sum of log ranks of VKDNW_single, expressivity, "
                          "trainability, FLOPs and jacob_cov"),
}

_SPEC = re.compile(r"^ensemble(?:\[(?P<rule>[^\]]*)\])?:(?P<members>.*)$")


if tuple(FIXED) != _FIXED_NAMES:  # the torch-free list the command line checks input against
    raise RuntimeError(f"zcfast.proxy_names.FIXED_ENSEMBLES {_FIXED_NAMES} != {tuple(FIXED)}")


def is_ensemble(name: str) -> bool:
    return name in FIXED or name.startswith(PREFIX + ":") or name.startswith(PREFIX + "[")


def parse(name: str, known=None) -> Ensemble:
    """The :class:`Ensemble` of a fixed name or an ``ensemble[rule]:a+b`` spec; ValueError names
    the bad part. ``known``: the valid member names (proxies); fixed ensembles are always valid.
    Given ``known`` (a spec being checked for a new run), a spec of one member is refused; without
    it (a spec read back from a stored file's meta) it is accepted, so older files stay readable."""
    if name in FIXED:
        return FIXED[name]
    m = _SPEC.match(name)
    if not m:
        raise ValueError(f"{name!r} is not an ensemble: write ensemble:a+b or ensemble[rule]:a+b")
    rule = m.group("rule")
    rule = DEFAULT_RULE if rule is None else rule.strip()
    if rule not in RULES:
        raise ValueError(f"unknown ensemble rule {rule!r} in {name!r}: expected one of {RULES}")
    members = tuple(t.strip() for t in m.group("members").split("+"))
    if not members or any(not t for t in members):
        raise ValueError(f"empty member in ensemble {name!r}")
    if len(set(members)) != len(members):
        raise ValueError(f"duplicate member in ensemble {name!r}")
    for t in members:
        if t.startswith(PREFIX):
            raise ValueError(f"ensemble {name!r}: nested ensemble specs are not supported ({t!r})")
        if t not in FIXED and known is not None and t not in known:
            raise ValueError(f"unknown proxy {t!r} in ensemble {name!r}: available are "
                             f"{', '.join(list(known) + list(FIXED))}")
    if known is not None and len(members) == 1:  # it would rank as its member does, renamed
        raise ValueError(f"ensemble {name!r} has one member: name {members[0]!r} itself, or "
                         "combine two or more (ensemble:a+b)")
    return Ensemble(name, rule, members)


def base_members(name: str) -> list:
    """The registry proxies an ensemble needs, fixed ensembles expanded (order kept)."""
    out: list = []
    for t in parse(name).members:
        for b in (base_members(t) if t in FIXED else [t]):
            if b not in out:
                out.append(b)
    return out


def ranks(scores) -> np.ndarray:
    """Average ranks (1 = lowest) of each column of (n, k) scores; NaN ranked as -inf."""
    from scipy.stats import rankdata

    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        s = s[:, None]
    s = np.where(np.isnan(s), -np.inf, s)
    return np.column_stack([rankdata(s[:, j]) for j in range(s.shape[1])]) if s.shape[1] else s


def vote_wins(scores, block: int = 256) -> np.ndarray:
    """Copeland count of the majority vote: for each row i, the number of rows j != i such that
    at least half of the columns have scores[i] > scores[j] (strict; NaN compares false)."""
    s = np.asarray(scores, dtype=np.float64)
    n, k = s.shape
    need = k / 2.0
    wins = np.zeros(n, dtype=np.int64)
    for a in range(0, n, block):
        blk = s[a : a + block]  # (b, k)
        gt = (blk[:, None, :] > s[None, :, :]).sum(2)  # (b, n): members preferring i over j
        win = gt >= need
        idx = np.arange(a, a + blk.shape[0])
        win[np.arange(blk.shape[0]), idx] = False  # no self-comparison
        wins[a : a + blk.shape[0]] = win.sum(1)
    return wins


def combine(scores, rule: str = DEFAULT_RULE) -> np.ndarray:
    """The pure ensemble function: (n_cells, n_members) scores of the compared cells ->
    (n_cells,) float64 ensemble scores (higher = better). Ranks are over these n cells only, so
    the result changes with the set compared, never with the order of the rows."""
    if rule not in RULES:
        raise ValueError(f"unknown ensemble rule {rule!r}: expected one of {RULES}")
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] < 1:
        raise ValueError(f"ensemble scores must be (n_cells, n_members), got shape {s.shape}")
    if s.shape[0] == 0:
        return np.zeros(0)
    if rule == "vote":
        return vote_wins(s).astype(np.float64)
    r = ranks(s)
    if rule == "meanrank":
        return r.mean(1)
    return np.log(r / s.shape[0]).sum(1)


def evaluate(name: str, columns) -> np.ndarray:
    """Ensemble ``name`` over the compared cells: ``columns`` maps each base member to its (n,)
    scores (one entry per compared cell, same order). Fixed ensembles used as members are
    evaluated first over the same cells."""
    ens = parse(name)
    cols = []
    for t in ens.members:
        if t in FIXED:
            cols.append(evaluate(t, columns))
        elif t in columns:
            cols.append(np.asarray(columns[t], dtype=np.float64))
        else:
            raise ValueError(f"ensemble {name!r}: no scores for member {t!r}")
    return combine(np.column_stack(cols), ens.rule)


def pairwise_vote_agreement(scores, target, block: int = 256) -> float:
    """The zero-cost paper's 'vote' statistic (notebook nasbench201_correlations.ipynb): over all
    ordered pairs (i, j), i != j, with target_i != target_j, the fraction where the majority
    sign (+1 when at least half of the member differences scores[i] - scores[j] are > 0, else
    -1) matches the sign of target_i - target_j. NaN differences count as not > 0."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        s = s[:, None]
    t = np.asarray(target, dtype=np.float64)
    n, k = s.shape
    right = total = 0
    for a in range(0, n, block):
        blk = s[a : a + block]
        with np.errstate(invalid="ignore"):  # inf - inf is NaN, which is not > 0 (the notebook)
            gt = (blk[:, None, :] - s[None, :, :] > 0).sum(2) >= k / 2.0  # vote +1
        dt = t[a : a + block, None] - t[None, :]
        valid = (dt != 0) & ~np.isnan(dt)  # also excludes i == j
        right += int((valid & (gt == (dt > 0))).sum())
        total += int(valid.sum())
    return right / total if total else float("nan")
