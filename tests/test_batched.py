"""Packed engine = per-model reference, on CPU (docs/engine.md: equivalence, batch invariance,
no silent garbage). The float32 criterion is shown failing on injected defects in
tests/test_float32_check.py."""

import pytest
import torch
from engine_checks import (
    SPECIAL,
    batch,
    check_batch_invariance,
    check_float32,
    check_float64,
    check_nan_reported,
)
from engine_checks import cells as _cells

import zcfast
from zcfast.batched import iter_packed
from zcfast.batched.engine import PackedNB201, codes_of
from zcfast.spaces import nb201
from zcfast.spaces.nb201_model import build_model


@pytest.fixture(scope="module")
def cells():
    return _cells(5)


@pytest.fixture(scope="module")
def refs():
    """Per-model reference results, shared by the float64 and float32 checks."""
    return {}


def test_equivalence_float64_exact(cells, refs):
    check_float64(cells, refs=refs)


def test_equivalence_float32(cells, refs):
    pairs = check_float32(cells, refs=refs)
    # every kind of verdict is a real comparison: none of these pairs skipped float64
    assert all(q.ref64 is not None or q.how in ("exact", "float64") for q in pairs)


def test_batch_invariance():
    check_batch_invariance()


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
        list(iter_packed([0], ["synflow"], *batch(b=2), ncls=120, chunk=0))


def test_nan_reported_not_replaced():
    check_nan_reported()
