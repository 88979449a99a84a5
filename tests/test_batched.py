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


def test_forward_without_autograd_same_bits():
    """Without autograd the cell keeps its node states in one buffer, summed in place
    (engine.py, _cell); with autograd it concatenates them: the outputs and every ReLU input
    that NASWOT reads must be the same bits, for cells with `none` nodes too."""
    codes = codes_of([nb201.index_of(a) for a in SPECIAL] + [0, 77, 15624, 6111])
    eng = PackedNB201(codes, 10, input_size=16)
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    outs = []
    for grad in (True, False):
        relus = []
        _, ws, bs = eng.params(requires_grad=grad)
        with torch.set_grad_enabled(grad):
            out = eng.forward(x, ws, bs, relus=relus)
        outs.append((out.detach(), [r[0].detach() for r in relus]))
    assert torch.equal(outs[0][0], outs[1][0])
    assert len(outs[0][1]) == len(outs[1][1])
    assert all(torch.equal(a, b) for a, b in zip(outs[0][1], outs[1][1]))


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


def _segments_by_definition(plan, value_w, value_b, slot_w, slot_b):
    """Rows (offset, length, candidate, slot, value) of the flat buffer's segments, one layer
    and one copy at a time: every layer's weight copies, then every biased layer's bias copies."""
    rows = []
    for lay in plan.layers:
        for g in range(lay.groups):
            rows.append((lay.w_off + g * lay.seg_len, lay.seg_len, lay.cand[g],
                         slot_w(lay.slots[g]), value_w(lay)))
    for lay in plan.layers:
        for g in range(lay.groups if lay.has_bias else 0):
            rows.append((plan.n_weights + lay.b_off + g * lay.c_out, lay.c_out, lay.cand[g],
                         slot_b(lay.slots[g]), value_b(lay)))
    return rows


def _check_segments(table, plan, rows, value_dtype):
    import numpy as np

    n_w = sum(lay.groups for lay in plan.layers)
    assert type(table.n_weight_segments) is int and table.n_weight_segments == n_w
    for name in ("offsets", "cand", "slot", "weight_numel", "weight_hw_out"):
        assert getattr(table, name).dtype == np.int64, name
    assert table.bound.dtype == value_dtype
    assert table.offsets[-1] == plan.n_weights + plan.n_biases
    lens = np.diff(table.offsets)
    got = list(zip(table.offsets[:-1].tolist(), lens.tolist(), table.cand.tolist(),
                   table.slot.tolist(), table.bound.tolist()))
    assert got == [(int(o), int(n), int(c), int(s), float(v)) for o, n, c, s, v in rows]
    assert table.weight_numel.tolist() == lens[:n_w].tolist()
    assert table.weight_hw_out.tolist() == [lay.hw_out for lay in plan.layers
                                            for _ in range(lay.groups)]


def test_segment_table_matches_its_definition_nb201():
    """The vectorised segment table (plan.layer_segments) equals the one built layer by layer
    and copy by copy, for fresh random chunks of ragged sizes, with and without biases."""
    import numpy as np

    from zcfast.batched.plan import build_plan, segment_table
    from zcfast.spaces.nb201_model import bound_of

    rng = np.random.default_rng()
    for k in (1, 3, int(rng.integers(4, 40))):
        codes = [nb201.code_of_index(int(i)) for i in rng.integers(0, nb201.NUM_ARCHS, size=k)]
        for flavour in ("paper", "nobias"):
            plan = build_plan(codes, 10, flavour=flavour, device="meta")
            bound = lambda lay: float(bound_of(lay.fan_in))  # noqa: E731
            rows = _segments_by_definition(plan, bound, bound, lambda s: 2 * s,
                                           lambda s: 2 * s + 1)
            _check_segments(segment_table(plan), plan, rows, np.float32)


def test_segment_table_matches_its_definition_nb101():
    import math

    import numpy as np

    from zcfast.batched import nb101 as packed101
    from zcfast.spaces import nb101
    from zcfast.spaces.nb101_model import CLASSIFIER_STD

    codes = nb101.sample(3, seed=int(torch.randint(0, 1000, ()).item()))
    plan = packed101.build_plan(codes, 10, input_size=8, device="meta")

    def std(lay):  # the per-model network's (spaces.nb101_model.std_of): He fan-out, 0.01
        return CLASSIFIER_STD if lay.k == 0 else math.sqrt(2.0 / (lay.k * lay.k * lay.c_out))

    rows = _segments_by_definition(plan, std, lambda lay: 0.0, int, int)
    _check_segments(packed101.segment_table(plan), plan, rows, np.float64)
