"""Gaps in score tables: which cells a proxy has no finite score for, how many, and why.

NaN scores are dropped from a correlation (as the zero-cost paper's notebook does); +-inf scores
are legitimate extremes and are ranked. For NAS-Bench-201 the usual causes can be read off the
cell's structure (docs/gaps.md):

- the cell's output ignores its input (every path from node 0 to node 3 crosses a ``none``
  edge): the network's output does not depend on the image, so jacob_cov correlates zero
  Jacobians (0/0 = NaN);
- moreover no ReLU sees the image: every image has the same ReLU code, NASWOT's kernel matrix is
  singular and its log-determinant is -inf.

Anything else is reported as not explained by the structure.
"""

from __future__ import annotations

import math

import numpy as np

from zcfast.spaces import nb201

# structural causes
IGNORES_INPUT = "output ignores input"
NO_RELU_SEES_INPUT = "no ReLU sees the image"
UNEXPLAINED = "not explained by the cell structure"

_WHY = {
    IGNORES_INPUT: ("the cell's output ignores its input (every path from the cell's input to "
                    "its output crosses a 'none' edge)"),
    NO_RELU_SEES_INPUT: ("no ReLU sees the image (the cell's output ignores its input and no "
                         "conv edge reads an image-dependent node)"),
    UNEXPLAINED: "not explained by the cell structure",
}
# (proxy, value) -> (the structural cause that produces it, what that cause does to the proxy)
_EFFECT = {
    ("jacob_cov", "NaN"): (IGNORES_INPUT,
                           "every input gradient is zero and their correlation is 0/0"),
    ("nwot", "-inf"): (NO_RELU_SEES_INPUT,
                       "every image has the same ReLU code, so NASWOT's kernel matrix is "
                       "singular: log det = -inf"),
}


def cause(proxy: str, value: str, index, space: str = "nb201") -> str:
    """The structural cause of ``proxy`` being ``value`` (NaN, +inf, -inf) for an NB201 cell:
    the one known for that proxy and value if the cell has it, else whether the cell's output
    ignores its input, else UNEXPLAINED. Other spaces: UNEXPLAINED (no structural rule yet)."""
    if space != "nb201":
        return UNEXPLAINED
    known = _EFFECT.get((proxy, value), (IGNORES_INPUT, ""))[0]
    has = {IGNORES_INPUT: nb201.output_ignores_input,
           NO_RELU_SEES_INPUT: lambda i: not nb201.relu_sees_input(i)}
    if has[known](int(index)):
        return known
    if nb201.output_ignores_input(int(index)):
        return IGNORES_INPUT
    return UNEXPLAINED


def reason(proxy: str, value: str, cls: str) -> str:
    """One sentence: why ``proxy`` is ``value`` for cells whose structural cause is ``cls``."""
    known, effect = _EFFECT.get((proxy, value), (None, ""))
    return f"{_WHY[cls]}: {effect}" if cls == known else _WHY[cls]


def _kind(v: float) -> str | None:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+inf" if v > 0 else "-inf"
    return None


def explain(scores, proxies=None, space: str | None = None) -> dict:
    """Gaps of a score table (DataFrame indexed by NB201 index, one column per proxy; an
    ``arch`` column is ignored). Returns, per proxy::

        {"cells": N, "dropped": number of NaN cells (left out of correlations),
         "NaN": k, "+inf": k, "-inf": k,
         "reasons": [{"value": "NaN", "count": k, "kept": False, "reason": "...",
                      "example": NB201 index}, ...]}
    """
    space = space or scores.attrs.get("space", "nb201")
    from zcfast.spaces import get_space

    ids = get_space(space).id_columns
    cols = [c for c in (proxies or scores.columns) if c not in ids]
    idx = scores.index.to_numpy()
    out = {}
    for p in cols:
        v = scores[p].to_numpy(dtype=np.float64)
        groups: dict = {}
        counts = {"NaN": 0, "+inf": 0, "-inf": 0}
        for i in np.nonzero(~np.isfinite(v))[0]:
            kind = _kind(float(v[i]))
            counts[kind] += 1
            cell = idx[i].item() if hasattr(idx[i], "item") else idx[i]
            cls = cause(p, kind, cell, space)
            key = (kind, cls)
            if key not in groups:
                groups[key] = {"value": kind, "count": 0, "kept": kind != "NaN", "cause": cls,
                               "reason": reason(p, kind, cls), "example": cell}
            groups[key]["count"] += 1
        out[p] = {"cells": int(len(v)), "dropped": counts["NaN"], **counts,
                  "reasons": list(groups.values())}
    return out


def format_gaps(gaps: dict) -> str:
    """Plain-text notes, one line per (proxy, value, reason); '' when every score is finite."""
    lines = []
    for p, g in gaps.items():
        for r in g["reasons"]:
            what = (f"{r['count']} of {g['cells']} cells are {r['value']}, dropped"
                    if not r["kept"] else
                    f"{r['count']} of {g['cells']} cells are {r['value']}, kept and ranked "
                    + ("lowest" if r["value"] == "-inf" else "highest"))
            lines.append(f"- {p}: {what}: {r['reason']} (e.g. {r['example']}).")
    if not lines:
        return ""
    return "\n".join(["Cells without a finite score:", *lines])


def record_gaps(path) -> dict:
    """Count the gaps of a score file and record them in its meta sidecar (``gaps``); returns
    them. The counts cover every row of the file, resumed ones included."""
    import json
    from pathlib import Path

    from zcfast.scoring import read_scores

    scores, meta = read_scores(path)
    gaps = explain(scores)
    meta_path = Path(str(path) + ".meta.json")
    if meta_path.exists():
        meta["gaps"] = gaps
        meta_path.write_text(json.dumps(meta, indent=1))
    return gaps
