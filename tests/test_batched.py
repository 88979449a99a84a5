"""Packed engine = per-model reference (DESIGN.md invariants 1, 2 and 4)."""

import math

import numpy as np
import pytest
import torch

import zcfast
from zcfast.batched import iter_packed
from zcfast.batched.engine import PackedNB201, codes_of
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


def _batch(dataset="ImageNet16-120", b=8, seed=3):
    x, y = image_source(dataset).minibatch(b, seed)
    return x, y


def _same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def _relerr(a, b):
    if _same(a, b):
        return 0.0
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


@pytest.fixture(scope="module")
def cells():
    rnd = [nb201.arch_at(int(i)) for i in nb201.sample(5, seed=11)]
    return [nb201.index_of(a) for a in SPECIAL + rnd]


def _packed(idx, x, y, dtype, ncls=120, seed=0, chunk=None):
    out = {}
    for part, res in iter_packed(idx, ALL, x, y, ncls=ncls, seed=seed, chunk=chunk or len(idx),
                                 dtype=dtype):
        for k, i in enumerate(part):
            out[i] = {p: float(res[p][k]) for p in ALL}
    return out


def test_equivalence_float64_exact(cells):
    """The packed math equals the per-model reference: in float64 every proxy agrees to 1e-9."""
    x, y = _batch()
    packed = _packed(cells, x, y, torch.float64)
    for i in cells:
        net = build_model(i, 120, seed=0, dtype=torch.float64)
        ref = compute_measures(net, x.double(), y, ALL)
        for p in ALL:
            assert _relerr(ref[p], packed[i][p]) <= 1e-9 or abs(ref[p] - packed[i][p]) < 1e-12, (
                nb201.arch_at(i), p, ref[p], packed[i][p])


def test_equivalence_float32(cells):
    """float32: relative error <= 1e-4 for every well-conditioned (cell, proxy); synflow (float64
    in both paths) <= 1e-9. A float32 value is only comparable when float32 can resolve it: if
    the reference's own float32 result is more than 1e-5 away from its float64 result (e.g.
    convolutions fed by an all-zero node, whose BatchNorm then normalises rounding noise), the
    value is rounding noise in *any* float32 implementation, and the float64 test above is the
    equivalence check for it."""
    x, y = _batch()
    packed = _packed(cells, x, y, torch.float32)
    strict = 0
    for i in cells:
        ref32 = compute_measures(build_model(i, 120, seed=0), x, y, ALL)
        ref64 = None
        for p in ALL:
            e = _relerr(ref32[p], packed[i][p])
            if p == "synflow":
                assert e <= 1e-9, (nb201.arch_at(i), p, ref32[p], packed[i][p])
                continue
            if e <= 1e-4 or abs(ref32[p] - packed[i][p]) < 1e-10:
                strict += 1
                continue
            if ref64 is None:
                ref64 = compute_measures(build_model(i, 120, seed=0, dtype=torch.float64),
                                         x.double(), y, ALL)
            own = _relerr(ref32[p], ref64[p])
            assert own > 1e-5, ("well-conditioned but packed float32 differs",
                                nb201.arch_at(i), p, ref32[p], packed[i][p], ref64[p])
    assert strict >= 0.9 * len(cells) * (len(ALL) - 1)


def test_batch_invariance():
    """A cell's scores do not depend on K or on its batch-mates (K = 1, 7, 64)."""
    x, y = _batch(b=4)
    target = nb201.index_of(SPECIAL[-1])
    mates = [int(i) for i in nb201.sample(70, seed=5) if int(i) != target]
    cheap = ["synflow", "snip", "grad_norm", "fisher", "jacob_cov", "nwot", "params", "flops"]
    results = []
    for k in (1, 7, 64):
        idx = mates[: k - 1] + [target] if k > 1 else [target]
        (_, res), = list(iter_packed(idx, cheap, x, y, ncls=120, seed=0, chunk=k))
        results.append({p: float(res[p][-1]) for p in cheap})
    for p in cheap:
        for r in results[1:]:
            assert _relerr(results[0][p], r[p]) <= 2e-5, (p, results[0][p], r[p])


def test_score_api_and_duplicates():
    df = zcfast.score([SPECIAL[-1], 0, SPECIAL[-1]], "synflow,params", dataset="cifar100", batch_size=8)
    assert list(df.columns) == ["arch", "synflow", "params"]
    assert list(df.index) == [nb201.index_of(SPECIAL[-1]), 0, nb201.index_of(SPECIAL[-1])]
    assert df.iloc[0].synflow == df.iloc[2].synflow
    net = build_model(0, 100, seed=0)
    assert df.iloc[1].params == sum(p.numel() for p in net.parameters())


def test_official_flavour_counts():
    idx = [nb201.index_of(SPECIAL[-1]), nb201.index_of(SPECIAL[0])]
    eng = PackedNB201(codes_of(idx), 10, flavour="official")
    cnt = eng.counts()
    for k, i in enumerate(idx):
        net = build_model(i, 10, flavour="official")
        assert cnt["params"][k] == sum(p.numel() for p in net.parameters())


def test_bad_input():
    with pytest.raises(ValueError, match="snipp"):
        zcfast.score([0], ["snipp"])
    with pytest.raises(ValueError, match="empty"):
        zcfast.score([], ["synflow"])
    with pytest.raises(ValueError, match="CUDA|cuda"):
        if torch.cuda.is_available():
            pytest.skip("CUDA present")
        zcfast.score([0], ["synflow"], device="cuda")
    with pytest.raises(ValueError, match="tpu"):
        zcfast.score([0], ["synflow"], device="tpu")
    with pytest.raises(ValueError, match="nor_conv_5x5"):
        zcfast.score(["|nor_conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|"], ["synflow"])
    with pytest.raises(ValueError, match="chunk"):
        list(iter_packed([0], ["synflow"], *_batch(b=2), ncls=120, chunk=0))


def test_nan_reported_not_replaced():
    x, y = _batch(b=4)
    idx = [nb201.index_of(SPECIAL[0])]
    (_, res), = list(iter_packed(idx, ["jacob_cov", "nwot"], x, y, ncls=120))
    assert np.isnan(res["jacob_cov"][0])  # constant output: correlation undefined
    assert res["nwot"][0] == -np.inf  # all codes equal: singular kernel
