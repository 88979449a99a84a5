"""The packed NB101 builder (zcfast/batched/nb101.py) equals the per-model reference
(zcfast/spaces/nb101_model.py + zcfast.proxies) for every proxy the packed engine supports, on
ragged chunks: the extremes (input -> output only, 7 vertices with 9 edges, all conv3x3 with the
most channels per vertex, all maxpool, a cell with pruned vertices) and sampled cells, in one
packed pass. Criteria are NB201's (docs/engine.md): float64 within 1e-9 relative, float32 within
zcfast.batched.verify's bound, params/flops exact, scores independent of the batch-mates.

Injected defects the float64 check is shown to catch (test_equivalence_check_detects_defects):
BatchNorm with a wrong eps, weights drawn from another stream key, and average pooling in place
of max pooling. Networks use a stem of 8 channels, 2 stacks of 1 cell, 8x8 inputs, batch 4
(one test at the official widths with batch 2 at 8x8).
"""

from __future__ import annotations

import contextlib
import math
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zcfast.batched import nb101 as packed_mod
from zcfast.batched import verify
from zcfast.batched.base import SUPPORTED
from zcfast.batched.nb101 import PackedNB101
from zcfast.data import image_source
from zcfast.proxies import compute_measures
from zcfast.spaces import nb101
from zcfast.spaces.nb101_model import build_model

C3, C1, MP, IN, OUT = nb101.CONV3X3, nb101.CONV1X1, nb101.MAXPOOL3X3, nb101.INPUT, nb101.OUTPUT
ALL = list(SUPPORTED)
OPTS = {"stem_channels": 8, "num_stacks": 2, "cells_per_stack": 1}


def _chain(ops):
    """input -> v1 -> ... -> output, plus input -> output."""
    n = len(ops) + 2
    m = [[int(j == i + 1 or (i == 0 and j == n - 1)) for j in range(n)] for i in range(n)]
    return {"matrix": m, "ops": [IN, *ops, OUT]}


EXTREMES = {
    "two_vertex": {"matrix": [[0, 1], [0, 0]], "ops": [IN, OUT]},
    # 7 vertices, 9 edges (the official API's example cell)
    "seven_nine": {"matrix": [[0, 1, 1, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1],
                              [0, 0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1],
                              [0, 0, 0, 0, 0, 0, 0]],
                   "ops": [IN, C1, C3, C3, C3, MP, OUT]},
    # one feeder: every vertex carries all of the cell's output channels
    "all_conv3x3": _chain([C3] * 5),
    # 7 vertices, 9 edges, no interior conv: only the projections carry weights
    "all_maxpool": {"matrix": [[0, 1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1],
                               [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1],
                               [0, 0, 0, 0, 0, 0, 0]],
                    "ops": [IN] + [MP] * 5 + [OUT]},
    # vertex 2 has no path to the output, vertex 4 none from the input: both are pruned
    "pruned": {"matrix": [[0, 1, 1, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0],
                          [0, 0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1],
                          [0, 0, 0, 0, 0, 0, 0]],
               "ops": [IN, C3, C1, C1, C3, MP, OUT]},
}


def cells(n_random: int = 4, seed: int = 7) -> list:
    out = [nb101.encode(a) for a in EXTREMES.values()]
    assert nb101.canonical_spec(out[-1]).n == 5  # the pruned cell did lose two vertices
    return out + [int(c) for c in nb101.sample(n_random, seed)]


def batch(b=4, size=8, seed=3):
    x, y = image_source("cifar10").minibatch(b, seed)
    return x[:, :, :size, :size].contiguous(), y


def packed(codes, x, y, dtype, names=ALL, opts=OPTS) -> list:
    eng = PackedNB101(codes, 10, seed=0, input_size=x.shape[-1], dtype=dtype, **opts)
    res = eng.compute(x, y, names)
    return [{p: float(res[p][k]) for p in names} for k in range(len(codes))]


def reference(code, x, y, dtype, names=ALL, opts=OPTS, other=False) -> dict:
    net = build_model(code, 10, seed=0, dtype=dtype, **opts)
    with verify.other_convolutions("cpu") if other else contextlib.nullcontext():
        return compute_measures(net, x.to(dtype), y, list(names))


def mismatches64(codes, x, y, names=ALL, opts=OPTS) -> list:
    got = packed(codes, x, y, torch.float64, names, opts)
    bad = []
    for c, g in zip(codes, got):
        ref = reference(c, x, y, torch.float64, names, opts)
        for p in names:
            if not (verify.relerr(ref[p], g[p]) <= 1e-9 or abs(ref[p] - g[p]) < 1e-12):
                bad.append((nb101.hash_of(c), p, ref[p], g[p]))
    return bad


@pytest.fixture(scope="module")
def xy():
    return batch()


def test_float64_equals_reference_on_ragged_chunk(xy):
    x, y = xy
    bad = mismatches64(cells(), x, y)
    assert not bad, bad


def test_float32_within_the_engine_criterion(xy):
    x, y = xy
    codes = cells(1, seed=8)
    got = packed(codes, x, y, torch.float32)
    fails = []
    for c, g in zip(codes, got):
        r32 = reference(c, x, y, torch.float32)
        r32b = reference(c, x, y, torch.float32, other=True)
        r64 = reference(c, x, y, torch.float64)
        for p in ALL:
            if p in verify.EXACT_PROXIES:
                ok = g[p] == r32[p]
            elif p in verify.FLOAT64_PROXIES:
                ok = verify.relerr(g[p], r32[p]) <= 1e-9
            else:
                ok, _ = verify.judge(g[p], (r32[p], r32b[p]), r64[p])
            if not ok:
                fails.append((nb101.hash_of(c), p, g[p], r32[p], r32b[p], r64[p]))
    assert not fails, fails


def test_official_widths(xy):
    """The official widths (stem 128, channels doubling to 512) with one cell per stack, batch 2
    at 8x8: the all-conv3x3 chain, whose vertices carry all of a cell's channels."""
    x, y = batch(b=2, size=8)
    codes = [nb101.encode(EXTREMES["all_conv3x3"])]
    names = ["grad_norm", "snip", "fisher", "nwot", "params", "flops", "l2_norm"]
    bad = mismatches64(codes, x, y, names, opts={"cells_per_stack": 1})
    assert not bad, bad


def test_scores_do_not_depend_on_batch_mates(xy):
    x, y = xy
    codes = cells(5, seed=9)
    target = codes[1]
    names = ["synflow", "snip", "grad_norm", "fisher", "jacob_cov", "nwot", "params", "flops",
             "l2_norm"]
    alone = packed([target], x, y, torch.float32, names)[0]
    for mates in (codes[:1], codes[2:]):
        with_mates = packed(mates + [target], x, y, torch.float32, names)[-1]
        for p in names:
            assert verify.relerr(alone[p], with_mates[p]) <= 2e-5, (p, alone[p], with_mates[p])


def test_degenerate_kernel_is_reported():
    """Two equal samples share every ReLU code: the NASWOT kernel is singular, -inf (as the
    per-model reference says), not a finite number."""
    x, y = batch(b=2)
    x = x[:1].expand(2, -1, -1, -1).contiguous()
    code = nb101.encode(EXTREMES["all_maxpool"])
    got = packed([code], x, y, torch.float32, ["nwot"])
    assert got[0]["nwot"] == -math.inf
    with pytest.warns(Warning):
        assert reference(code, x, y, torch.float32, ["nwot"])["nwot"] == -math.inf


@pytest.mark.parametrize("defect", ["bn_eps", "stream_key", "avg_pool"])
def test_equivalence_check_detects_defects(monkeypatch, defect):
    x, y = batch(b=4)
    codes = [nb101.encode(EXTREMES["seven_nine"]), nb101.encode(EXTREMES["two_vertex"])]
    if defect == "bn_eps":
        monkeypatch.setattr(packed_mod, "_bn", lambda h: F.batch_norm(
            h, None, None, training=True, momentum=0.0, eps=1e-3))
    elif defect == "stream_key":
        monkeypatch.setattr(packed_mod, "stream_code", lambda key: (int(key) + 1) & 0xFFFFFFFF)
    else:
        fake = types.SimpleNamespace(relu=F.relu, max_pool2d=F.avg_pool2d)
        monkeypatch.setattr(packed_mod, "F", fake)
    bad = mismatches64(codes, x, y, ["grad_norm", "snip", "synflow", "l2_norm"])
    assert bad, f"the {defect} defect went unnoticed"


def test_space_plugs_in_and_rejects_bad_input():
    from zcfast.spaces import get_space

    sp = get_space("nb101")
    assert set(sp.packed_proxies()) == set(ALL)
    x, y = batch(b=4)
    eng = sp.packed(cells(0), "cifar10", seed=0, input_size=16, **OPTS)
    res = eng.compute(x, y, ["params", "synflow"])
    assert res["params"].shape == (len(EXTREMES),) and np.isfinite(res["synflow"]).all()
    with pytest.raises(ValueError, match="does not support"):
        eng.compute(x, y, ["zico"])
    with pytest.raises(ValueError, match="at least one cell"):
        PackedNB101([], 10)
    with pytest.raises(ValueError, match="float16"):
        PackedNB101(cells(0)[:1], 10, dtype=torch.float16, **OPTS)
