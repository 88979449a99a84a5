"""Checks of the packed engine against the per-model reference, shared by the CPU tests
(tests/test_batched.py) and the GPU tests (tests/test_gpu_engine.py): the same cells, the same
criteria, on whichever device they are given (docs/engine.md: equivalence, batch invariance, no
silent garbage)."""

from __future__ import annotations

import numpy as np
import torch

from zcfast.batched import iter_packed, verify
from zcfast.batched.verify import relerr
from zcfast.data import image_source
from zcfast.spaces import nb201

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


def packed(idx, x, y, dtype, names=ALL, ncls=NCLS, seed=0, chunk=None, device="cpu",
           backend=None) -> dict:
    """{cell: {proxy: value}} from the packed engine, ``chunk`` candidates per pass."""
    out = {}
    for part, res in iter_packed(idx, names, x, y, ncls=ncls, seed=seed, chunk=chunk or len(idx),
                                 dtype=dtype, device=device, backend=backend):
        for k, i in enumerate(part):
            out[i] = {p: float(res[p][k]) for p in names}
    return out


def check_float64(cells, device="cpu", refs=None) -> None:
    """The packed math equals the per-model reference: in float64 every proxy agrees to 1e-9.
    ``refs``: optional cache shared with check_float32 (its float64 references are filled in)."""
    x, y = batch(device=device)
    got = packed(cells, x, y, torch.float64, device=device)
    refs = {} if refs is None else refs
    for i in cells:
        if (i, "ref64") not in refs:
            refs[(i, "ref64")] = verify.reference(i, ALL, x, y, ncls=NCLS, device=device,
                                                  dtype=torch.float64)
        ref = refs[(i, "ref64")]
        for p in ALL:
            assert relerr(ref[p], got[i][p]) <= 1e-9 or abs(ref[p] - got[i][p]) < 1e-12, (
                nb201.arch_at(i), p, ref[p], got[i][p])


def check_float32(cells, device="cpu", refs=None, names=ALL) -> list:
    """float32: every (cell, proxy) meets the criterion of zcfast.batched.verify (docs/engine.md):
    the packed error against float64 is at most 32 times the per-model float32 error (the larger
    of two float32 implementations) plus a floor of 16 ulps; synflow (float64 in both paths)
    agrees to 1e-9, params and flops exactly. No pair is exempt. Returns the verdicts."""
    x, y = batch(device=device)
    pairs = verify.check_float32([list(cells)], names, x, y, ncls=NCLS, device=device,
                                 lazy=False, refs=refs)
    bad = verify.failures(pairs)
    assert not bad, "packed float32 outside the criterion:\n" + "\n".join(map(verify.describe, bad))
    assert len(pairs) == len(cells) * len(names)
    return pairs


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
