"""Zero-cost NAS on NAS-Bench-201, simulated against the benchmark's ground truth.

The algorithms run in the compiled driver (``zcfast._C.search``, C++17, see csrc/search.hpp):
random search (RAND), aging evolution (AE), REINFORCE (RL) and a predictor-based search (BP),
each with a zero-cost *warmup* and a zero-cost *move* proposal (Abdelfattah et al., "Zero-Cost
Proxies for Lightweight NAS", ICLR 2021, section 5). Zero-cost scores reach the driver through
ask/tell, from a complete table, the on-disk score cache (:class:`ScoreCache`) or a live scorer
(:func:`default_scorer`: the packed engine ``zcfast.score`` when present, else the per-model loop).

>>> from zcfast.search import run_search
>>> r = run_search("ae", "cifar100", budget=300, warmup=3000, move=24, seed=0, proxy="synflow")
>>> r["test_curve"][49]     # test accuracy of the best-validation cell after 50 trained models
>>> r = run_search("ae", "cifar10", budget=50, warmup=1000, seed=0,
...                hardware=HardwareSpec("pixel3", max_latency=5.0))  # docs/hardware.md
>>> r["hw"]["selected"], r["test_curve"][-1]  # a Pixel 3 network within 5 ms, its test accuracy

Command line: ``zcfast search ...`` (one variant, many seeds) and ``zcfast figure ...`` (all the
paper's variants, the figure and the "models needed to reach X%" table); see docs/search.md.
"""

from __future__ import annotations

import importlib

# Names resolve on first use (PEP 562): the command line builds its parsers from
# zcfast.search.cli, and answering -h or rejecting an argument must not import torch, which the
# live scorer (zcfast.search.scorer) needs.
_WHERE = {
    "cache": ("DATA_FREE_PROXIES", "ScoreCache", "ScoreKey", "default_cache_root"),
    "driver": ("ALGOS", "DEFAULT_OPTIONS", "PROTOCOL", "ground_truth", "make_config",
               "run_search", "universe", "universe_ids"),
    "hw": ("HardwareSpec",),
    "runs": ("FIGURE_VARIANTS", "HEADLINE", "Variant", "complete_runs", "curve_matrix",
             "curve_table", "models_to_reach", "parse_variant", "plot_curves", "reach_table",
             "read_runs", "run_seeds", "run_variants", "summarize", "verify_run", "verify_runs"),
    "scorer": ("batched_available", "default_scorer"),
}
_MODULE_OF = {name: mod for mod, names in _WHERE.items() for name in names}


def __getattr__(name):
    mod = _MODULE_OF.get(name)
    if mod is None:
        raise AttributeError(f"module 'zcfast.search' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"zcfast.search.{mod}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_MODULE_OF))


__all__ = [
    "ALGOS", "DATA_FREE_PROXIES", "DEFAULT_OPTIONS", "FIGURE_VARIANTS", "HEADLINE", "PROTOCOL",
    "HardwareSpec", "ScoreCache", "ScoreKey", "Variant", "batched_available", "complete_runs",
    "curve_matrix", "curve_table", "default_cache_root", "default_scorer",
    "ground_truth", "make_config", "models_to_reach", "parse_variant", "plot_curves",
    "reach_table", "read_runs", "run_search", "run_seeds", "run_variants", "summarize",
    "universe", "universe_ids", "verify_run", "verify_runs",
]
