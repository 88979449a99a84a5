"""The names of zcfast's proxies, importable without torch, so that the command line rejects a
misspelt proxy before any heavy import (docs/performance.md, start-up). The registry
(zcfast.proxies) registers exactly :data:`ALL`, in this order, with :data:`PAPER` flagged as
the paper's, and zcfast.proxies.ensemble defines exactly :data:`FIXED_ENSEMBLES`; both check it
when imported."""

from __future__ import annotations

import re

PAPER = ("grad_norm", "snip", "grasp", "fisher", "jacob_cov", "synflow")
# modern proxies (docs/proxies_modern.md): asked for by name or by 'modern', never by default
MODERN = ("zico", "epe_nas", "zen", "meco", "swap", "swap_reg", "az_expressivity",
          "az_progressivity", "az_trainability", "az_complexity", "vkdnw", "vkdnw_dim",
          "vkdnw_single")
ALL = ("grad_norm", "snip", "plain", "grasp", "fisher", "jacob_cov", "synflow", "nwot", "params",
       "flops", "l2_norm") + MODERN
GROUPS = ("paper", "modern", "all")
FIXED_ENSEMBLES = ("vote", "az_nas", "vkdnw_agg")
_PLAIN = re.compile(r"[A-Za-z0-9_]+")


def unknown(spec: str) -> list:
    """The tokens of a ``--proxies`` string that are plain names (letters, digits, underscores)
    and name no proxy, group or fixed ensemble. Ensemble specs (``ensemble...:a+b``) and
    reduced-training specs (``econas...``) are left to the full parser."""
    out = []
    for t in (s.strip() for s in spec.split(",")):
        if not t or not _PLAIN.fullmatch(t) or t.lower().startswith("econas"):
            continue
        if t not in ALL and t not in GROUPS and t not in FIXED_ENSEMBLES:
            out.append(t)
    return out
