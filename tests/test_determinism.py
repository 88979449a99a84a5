"""Reproducible scores: the packed engine gives the same bits every time it scores the same
cells (README: "deterministic").

On the CPU, index_add_ adds a node's terms sequentially, in index order. On CUDA index_add_ adds
with atomics: a candidate with several edges in one section of a node gets its float32 terms in a
varying order. The engine therefore sums node terms in ordered rounds on CUDA
(PackedNB201.ordered_accumulation, see its _accumulate) and restricts cuDNN to deterministic
algorithms. The CPU tests below check that the ordered rounds give the CPU loop's values bit for
bit, and that the bitwise check used on the GPU does catch an accumulation whose order varies
(simulated on the CPU); the GPU tests score the same cells twice and compare bit for bit.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_checks import ALL, NCLS, SPECIAL, batch, packed

from zcfast import _C
from zcfast.batched import engine as engine_mod
from zcfast.batched.engine import PackedNB201, codes_of
from zcfast.batched.ordered import index_rounds
from zcfast.spaces import nb201

# cells whose node 3 receives several terms in one section (skip + conv + conv, three convs,
# three pools), plus random ones
CELLS = [nb201.index_of(a) for a in (
    SPECIAL[-1],
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|",
    "|avg_pool_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|",
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
)] + [int(i) for i in nb201.sample(4, seed=21)]
NAMES = [p for p in ALL if p not in ("params", "flops")]


def bitwise_differences(a: dict, b: dict) -> list:
    """(cell, proxy, a, b) for every score whose bits differ (NaN equals NaN)."""
    bad = []
    for i in a:
        for p in a[i]:
            u, v = a[i][p], b[i][p]
            same = (math.isnan(u) and math.isnan(v)) or np.float64(u).tobytes() == np.float64(v).tobytes()
            if not same:
                bad.append((nb201.arch_at(i), p, u, v))
    return bad


def _scores(ordered: bool, x, y, names=NAMES) -> dict:
    eng = PackedNB201(codes_of(CELLS), NCLS, input_size=x.shape[-1])
    eng.ordered_accumulation = ordered
    res = eng.compute(x, y, names)
    return {c: {p: float(res[p][k]) for p in names} for k, c in enumerate(CELLS)}


def test_ordered_accumulation_gives_the_cpu_values_bit_for_bit():
    """The CUDA accumulation (ordered rounds) run on the CPU equals the CPU's index_add_ loop
    bit for bit, for every proxy: the GPU path computes the same float32 node sums."""
    x, y = batch(b=4)
    eng = PackedNB201(codes_of(CELLS), NCLS, input_size=16)
    eng._materialize()  # the plan bound to its device tables (done on first use)
    rounds = [len(index_rounds(t)) for cell in eng.plan.cells for nd in cell for t in nd.targets]
    assert max(rounds) >= 2, "no node with repeated targets: the test would prove nothing"
    assert not bitwise_differences(_scores(False, x, y), _scores(True, x, y))


def test_bitwise_check_catches_an_accumulation_in_varying_order(monkeypatch):
    """Injected defect: node terms added in a different (random) order on every call, as atomics
    would. Scoring the same cells twice then differs in the low bits, and the check says so."""
    x, y = batch(b=4)
    rng = np.random.default_rng(0)

    def shuffled(self, node, tgt, src, rounds=None):
        perm = torch.as_tensor(rng.permutation(tgt.numel()))
        return node.index_add_(1, tgt[perm], src.index_select(1, perm))

    monkeypatch.setattr(engine_mod.PackedNB201, "_accumulate", shuffled)
    names = ["snip", "grad_norm", "jacob_cov", "synflow"]
    bad = bitwise_differences(_scores(False, x, y, names), _scores(False, x, y, names))
    assert bad, "a varying summation order went unnoticed"


def test_cpu_scores_reproducible():
    x, y = batch(b=4)
    a = packed(CELLS[:4], x, y, torch.float32, names=NAMES)
    b = packed(CELLS[:4], x, y, torch.float32, names=NAMES)
    assert not bitwise_differences(a, b)


# ---- GPU -------------------------------------------------------------------------------------



@pytest.mark.parametrize("backend", [None, "triton", "torch"])
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_scores_reproducible_bit_for_bit(backend):
    """Default settings (what a user gets; TF32 as configured): the same cells scored twice, by
    fresh engines, give the same bits for every proxy."""
    if backend is None and not _C.WITH_CUDA:
        pytest.skip("zcfast._C built without nvcc")
    x, y = batch(b=16, device="cuda")
    a = packed(CELLS, x, y, torch.float32, names=NAMES, device="cuda", backend=backend)
    b = packed(CELLS, x, y, torch.float32, names=NAMES, device="cuda", backend=backend)
    assert not bitwise_differences(a, b)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_ordered_accumulation_equals_cpu_index_add():
    """The CUDA node sums (ordered rounds) equal the CPU's sequential index_add_ bit for bit, on
    one (pre-BN) activation: the terms are the same float32 values, added in the same order."""
    gen = torch.Generator().manual_seed(3)
    src = torch.randn(3, 9, 50, generator=gen)
    tgt = torch.tensor([2, 0, 2, 1, 2, 0, 3, 3, 2])
    eng = PackedNB201(codes_of(CELLS[:1]), NCLS, input_size=16, device="cuda")
    gpu_sum = eng._accumulate(torch.zeros(3, 4, 50, device="cuda"), tgt.cuda(), src.cuda())
    cpu_sum = torch.zeros(3, 4, 50).index_add_(1, tgt, src)
    assert torch.equal(gpu_sum.cpu(), cpu_sum)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_engine_uses_no_op_without_a_deterministic_implementation():
    """Under torch.use_deterministic_algorithms(warn_only=True) PyTorch warns for every op that
    has no deterministic implementation: the engine must trigger none (cuBLAS's workspace
    warning aside: a single stream is reproducible)."""
    import warnings

    x, y = batch(b=8, device="cuda")
    old = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            packed(CELLS[:4], x, y, torch.float32, names=NAMES, device="cuda")
    finally:
        torch.use_deterministic_algorithms(old[0], warn_only=old[1])
    found = sorted({str(w.message)[:300] for w in rec if "deterministic" in str(w.message)
                    and "CUBLAS_WORKSPACE_CONFIG" not in str(w.message)})
    out = os.environ.get("ZCFAST_REPORT_DIR")  # bench/device.sh: part of the first run's report
    if out:
        Path(out, "determinism_alerts.json").write_text(json.dumps(found, indent=1))
    assert not found, found


def _rounds_by_definition(t) -> list:
    """Round r: the entries that are the r-th occurrence of their target, in index order."""
    occ, seen = [], {}
    for k in t:
        occ.append(seen.get(k, 0))
        seen[k] = occ[-1] + 1
    return [[i for i, q in enumerate(occ) if q == r] for r in range(max(occ, default=0) + 1)]


def test_rounds_of_matches_its_definition_on_random_ragged_indices():
    """The vectorised rounds (a stable sort) equal the definition on fresh random indices of
    ragged lengths and repeat counts, including the empty index and one without repeats."""
    from zcfast.batched.ordered import rounds_of

    rng = np.random.default_rng()
    cases = [[], [5], [3, 1, 2], [7, 7, 7], [0, 1, 0, 2, 1, 0]]
    cases += [rng.integers(0, int(rng.integers(1, 40)), size=int(rng.integers(1, 300))).tolist()
              for _ in range(50)]
    for t in cases:
        want = _rounds_by_definition(t)
        got = rounds_of(t)
        if len(want) == 1:  # no repeats: one round over every entry
            assert len(got) == 1 and got[0][0] is None and list(got[0][1]) == list(t), t
            continue
        assert [list(p) for p, _ in got] == want, t
        assert all(list(tt) == [t[i] for i in p] for p, tt in got), t
