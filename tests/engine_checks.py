"""Checks of the packed engine against the per-model reference, shared by the CPU tests
(tests/test_batched.py) and the GPU tests (tests/test_gpu_engine.py): the same cells, the same
criteria, on whichever device they are given (DESIGN.md invariants 1, 2 and 4)."""

from __future__ import annotations

import math

import numpy as np
import torch

from zcfast.batched import iter_packed
from zcfast.data import image_source
from zcfast.proxies import compute_measures
from zcfast.spaces import nb201
from zcfast.spaces.nb201_model import build_model

ALL = ["grad_norm", "snip", "plain", "grasp", "fisher", "jacob_cov", "synflow", "nwot",
       "params", "flops", "l2_norm"]
# cells with `none` everywhere, with ops whose input is a zero node (unreachable), isolated
# nodes, pools only, and the benchmark's best cell
SPECIAL = [
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|none~0|+|none~0|nor_conv_3x3~1|+|none~0|nor_conv_1x1~1|avg_pool_3x3~2|",
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|none~2|",
    "|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
]
NCLS = 120  # ImageNet16-120 networks: 16x16 inputs keep the reference passes short


def cells(n_random: int) -> list[int]:
    """The special cells plus ``n_random`` sampled ones, as NB201 indices."""
    rnd = [nb201.arch_at(int(i)) for i in nb201.sample(n_random, seed=11)]
    return [nb201.index_of(a) for a in SPECIAL + rnd]


def batch(b=8, seed=3, device="cpu", dataset="ImageNet16-120"):
    x, y = image_source(dataset).minibatch(b, seed)
    return x.to(device), y.to(device)


def relerr(a: float, b: float) -> float:
    if (math.isnan(a) and math.isnan(b)) or a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def packed(idx, x, y, dtype, names=ALL, ncls=NCLS, seed=0, chunk=None, device="cpu",
           backend=None) -> dict:
    """{cell: {proxy: value}} from the packed engine, ``chunk`` candidates per pass."""
    out = {}
    for part, res in iter_packed(idx, names, x, y, ncls=ncls, seed=seed, chunk=chunk or len(idx),
                                 dtype=dtype, device=device, backend=backend):
        for k, i in enumerate(part):
            out[i] = {p: float(res[p][k]) for p in names}
    return out


def check_float64(cells, device="cpu") -> None:
    """The packed math equals the per-model reference: in float64 every proxy agrees to 1e-9."""
    x, y = batch(device=device)
    got = packed(cells, x, y, torch.float64, device=device)
    for i in cells:
        net = build_model(i, NCLS, seed=0, dtype=torch.float64)
        ref = compute_measures(net, x.double(), y, ALL, device=device)
        for p in ALL:
            assert relerr(ref[p], got[i][p]) <= 1e-9 or abs(ref[p] - got[i][p]) < 1e-12, (
                nb201.arch_at(i), p, ref[p], got[i][p])


def check_float32(cells, device="cpu") -> None:
    """float32: relative error <= 1e-4 for every well-conditioned (cell, proxy); synflow (float64
    in both paths) <= 1e-9. A float32 value is only comparable when float32 can resolve it: if
    the reference's own float32 result is more than 1e-5 away from its float64 result (e.g.
    convolutions fed by an all-zero node, whose BatchNorm then normalises rounding noise), the
    value is rounding noise in *any* float32 implementation, and the float64 check is the
    equivalence check for it."""
    x, y = batch(device=device)
    got = packed(cells, x, y, torch.float32, device=device)
    strict = 0
    for i in cells:
        ref32 = compute_measures(build_model(i, NCLS, seed=0), x, y, ALL, device=device)
        ref64 = None
        for p in ALL:
            e = relerr(ref32[p], got[i][p])
            if p == "synflow":
                assert e <= 1e-9, (nb201.arch_at(i), p, ref32[p], got[i][p])
                continue
            if e <= 1e-4 or abs(ref32[p] - got[i][p]) < 1e-10:
                strict += 1
                continue
            if ref64 is None:
                ref64 = compute_measures(build_model(i, NCLS, seed=0, dtype=torch.float64),
                                         x.double(), y, ALL, device=device)
            own = relerr(ref32[p], ref64[p])
            assert own > 1e-5, ("well-conditioned but packed float32 differs",
                                nb201.arch_at(i), p, ref32[p], got[i][p], ref64[p])
    assert strict >= 0.9 * len(cells) * (len(ALL) - 1)


def check_batch_invariance(device="cpu") -> None:
    """A cell's scores do not depend on K or on its batch-mates (K = 1, 7, 64)."""
    x, y = batch(b=4, device=device)
    target = nb201.index_of(SPECIAL[-1])
    mates = [int(i) for i in nb201.sample(70, seed=5) if int(i) != target]
    cheap = ["synflow", "snip", "grad_norm", "fisher", "jacob_cov", "nwot", "params", "flops"]
    results = []
    for k in (1, 7, 64):
        idx = mates[: k - 1] + [target] if k > 1 else [target]
        (_, res), = list(iter_packed(idx, cheap, x, y, ncls=NCLS, seed=0, chunk=k, device=device))
        results.append({p: float(res[p][-1]) for p in cheap})
    for p in cheap:
        for r in results[1:]:
            assert relerr(results[0][p], r[p]) <= 2e-5, (p, results[0][p], r[p])


def check_nan_reported(device="cpu") -> None:
    x, y = batch(b=4, device=device)
    (_, res), = list(iter_packed([nb201.index_of(SPECIAL[0])], ["jacob_cov", "nwot"], x, y,
                                 ncls=NCLS, device=device))
    assert np.isnan(res["jacob_cov"][0])  # constant output: correlation undefined
    assert res["nwot"][0] == -np.inf  # all codes equal: singular kernel
