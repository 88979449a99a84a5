"""NAS-Bench-201 space: encodings, benchmark index order, sampling, mutation, neighbours,
canonical form (isomorphism classes) and the errors of bad archs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import source_data
from scipy import stats

from zcfast.data import nb201_ops_table, nb201_unique_class
from zcfast.spaces import nb201

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# Known NB201 rows (NATS-Bench topology index -> arch string), read off nats_bench.csv
KNOWN = {
    0: "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    1: "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    6111: "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
}
GOOD = KNOWN[6111]


def hand_string(ops) -> str:
    """Independent (pure Python) arch string of 6 op ids, edges (0->1),(0->2),(1->2),(0->3),(1->3),(2->3)."""
    n = [OPS[o] for o in ops]
    return f"|{n[0]}~0|+|{n[1]}~0|{n[2]}~1|+|{n[3]}~0|{n[4]}~1|{n[5]}~2|"


@pytest.fixture(scope="module")
def all_ops():
    return np.array(list(itertools.product(range(5), repeat=6)))  # every cell once, (15625, 6)


# ---- encodings --------------------------------------------------------------------------
def test_constants():
    assert nb201.OP_NAMES == OPS
    assert nb201.NUM_ARCHS == 15625 == 5**6
    assert list(zip(nb201.EDGE_SRC, nb201.EDGE_DST)) == [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]


def test_string_ops_index_round_trip_all(all_ops):
    strings = nb201.all_arch_strings()
    assert len(strings) == 15625 and len(set(strings)) == 15625
    # index -> string -> index, index -> ops -> index, index -> ops -> string
    idx_from_str = np.array([nb201.index_of(s) for s in strings])
    np.testing.assert_array_equal(idx_from_str, np.arange(15625))
    ops = np.array([nb201.parse(i) for i in range(15625)])
    np.testing.assert_array_equal(np.array([nb201.index_of(tuple(o)) for o in ops]), np.arange(15625))
    assert [hand_string(o) for o in ops] == list(strings)
    np.testing.assert_array_equal(np.array([nb201.parse(s) for s in strings]), ops)
    # the space is exactly the 5^6 op vectors, each once
    assert sorted(map(tuple, ops.tolist())) == sorted(map(tuple, all_ops.tolist()))
    # ops -> string -> ops for every op vector, through the public converters
    for o in all_ops[::97]:
        s = nb201.to_string(list(o))
        assert s == hand_string(o) and nb201.parse(s) == tuple(o)
        assert nb201.arch_at(nb201.index_of(s)) == s
    # numpy integer index and numpy op vector are accepted
    assert nb201.to_string(np.int64(6111)) == GOOD
    assert nb201.index_of(np.asarray(nb201.parse(GOOD), dtype=np.uint8)) == 6111


def test_index_order_is_the_benchmark_table():
    ops = nb201_ops_table()
    assert ops.shape == (15625, 6)
    np.testing.assert_array_equal(np.array([nb201.parse(i) for i in range(15625)]), ops)
    for i, s in KNOWN.items():
        assert nb201.arch_at(i) == s and nb201.index_of(s) == i
    np.testing.assert_array_equal(nb201.resolve([GOOD, 0, (4, 2, 1, 2, 1, 1)]), [6111, 0, 0])


@source_data.needs("nb201-natsbench-landscape/nats_bench.csv",
                   "checks that zcfast's NB201 index order is the benchmark's, row by row")
def test_index_order_matches_shared_csv():
    import pandas as pd

    df = pd.read_csv(source_data.path("nb201-natsbench-landscape/nats_bench.csv"))
    assert list(df.ArchitectureString) == list(nb201.all_arch_strings())
    val = source_data.path("nb201-val-accuracy/nb201_val_accuracy.csv")
    if val.is_file():  # a second, independent index <-> string source (NASLib)
        v = pd.read_csv(val)
        assert list(v["arch"]) == [nb201.arch_at(int(i)) for i in v["index"]]


# ---- sampling ------------------------------------------------------------------------------
def test_sample_seeded_distinct_prefix():
    a = nb201.sample(1000, seed=7)
    assert a.dtype == np.int64 and a.shape == (1000,)
    assert len(np.unique(a)) == 1000 and a.min() >= 0 and a.max() < 15625
    np.testing.assert_array_equal(a, nb201.sample(1000, seed=7))
    assert not np.array_equal(a, nb201.sample(1000, seed=8))
    np.testing.assert_array_equal(nb201.sample(10, seed=7), a[:10])  # same stream: a prefix
    everything = nb201.sample(15625, seed=1)
    np.testing.assert_array_equal(np.sort(everything), np.arange(15625))
    assert len(nb201.sample(0, seed=1)) == 0


def test_sample_uniform():
    # first draw over 4000 seeds: each edge's op is uniform over the 5 ops (chi-square)
    first = np.array([nb201.sample(1, s)[0] for s in range(4000)])
    ops = np.array([nb201.parse(int(i)) for i in first])
    for e in range(6):
        counts = np.bincount(ops[:, e], minlength=5)
        assert stats.chisquare(counts).pvalue > 1e-4, (e, counts)
    # within one draw of 5000: cell codes spread evenly over the space (10 bins of index)
    one = nb201.sample(5000, seed=3)
    assert stats.chisquare(np.bincount(one * 10 // 15625, minlength=10)).pvalue > 1e-4


@pytest.mark.parametrize("n", [-1, 15626, True, 2.0, "5"])
def test_sample_bad_n(n):
    with pytest.raises(ValueError, match="sample"):
        nb201.sample(n, seed=0)


# ---- mutation and neighbours -------------------------------------------------------------
def test_mutate_changes_exactly_one_edge():
    rng = np.random.default_rng(0)
    edges, new_ops = [], []
    for k in range(3000):
        i = int(rng.integers(15625))
        parent = np.array(nb201.parse(i))
        child = nb201.mutate(i, seed=k)
        assert nb201.mutate(nb201.arch_at(i), seed=k) == child  # seeded, any arch form
        c = np.array(nb201.parse(child))
        diff = np.flatnonzero(c != parent)
        assert len(diff) == 1, (nb201.arch_at(i), child)
        assert c[diff[0]] != parent[diff[0]]
        edges.append(diff[0])
        new_ops.append((c[diff[0]] - parent[diff[0]]) % 5)  # 1..4: which of the other ops
    assert stats.chisquare(np.bincount(edges, minlength=6)).pvalue > 1e-4
    d = np.bincount(new_ops, minlength=5)
    assert d[0] == 0 and stats.chisquare(d[1:]).pvalue > 1e-4
    assert len({nb201.mutate(GOOD, seed=s) for s in range(200)}) == 24  # reaches every neighbour


def test_neighbours():
    for i in [0, 1, 6111, 15624, *nb201.sample(40, seed=5).tolist()]:
        p = np.array(nb201.parse(i))
        nb = nb201.neighbours(i)
        assert len(nb) == 24 and len(set(nb)) == 24
        expected = set()
        for e in range(6):
            for o in range(5):
                if o != p[e]:
                    q = p.copy()
                    q[e] = o
                    expected.add(hand_string(q))
        assert set(nb) == expected
        for s in nb:
            assert int((np.array(nb201.parse(s)) != p).sum()) == 1
            assert nb201.arch_at(i) in nb201.neighbours(s)  # symmetric
        assert nb201.neighbours(nb201.arch_at(i)) == nb  # same from the string form


# ---- canonical form ------------------------------------------------------------------------
def test_canonical_classes_match_natsbench():
    cls = nb201.canonical_classes()
    assert cls.shape == (15625,) and cls.max() + 1 == 6466 and len(np.unique(cls)) == 6466
    uc = nb201_unique_class()
    assert len(np.unique(uc)) == 6466
    # same partition: the pairs (ours, NATS-Bench's) form a bijection
    assert len(set(zip(cls.tolist(), uc.tolist()))) == 6466
    # canonical() agrees with the class ids
    c = [nb201.canonical(i) for i in range(15625)]
    assert len(set(c)) == 6466
    _, inv = np.unique(np.array(c), return_inverse=True)
    assert len(set(zip(inv.tolist(), cls.tolist()))) == 6466


def test_canonical_known_isomorphisms():
    # node 1 is zero ('none' into it): what node 1 feeds is irrelevant, whatever the ops
    a = "|none~0|+|avg_pool_3x3~0|nor_conv_3x3~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_1x1~2|"
    b = "|none~0|+|avg_pool_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_1x1~2|"
    assert nb201.canonical(a) == nb201.canonical(b) and nb201.index_of(a) != nb201.index_of(b)
    assert nb201.canonical_classes()[nb201.index_of(a)] == nb201.canonical_classes()[nb201.index_of(b)]
    # a cell whose output is disconnected is equivalent to the all-none cell
    z = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    dead = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    assert nb201.canonical(dead) == nb201.canonical(z) == "#+#+#"
    # the order of the terms of a node does not matter (sum is commutative)
    c = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|none~0|none~1|skip_connect~2|"
    c2 = "|nor_conv_1x1~0|+|nor_conv_3x3~0|skip_connect~1|+|none~0|none~1|skip_connect~2|"
    assert nb201.canonical(c) == nb201.canonical(c2) == "#+#+(0)@nor_conv_1x1+(0)@nor_conv_3x3"
    # NB201's rule keeps the zero terms ('#') in a node's sum, so swapping two intermediate
    # nodes with a 'none' edge between them is *not* identified (as in NATS-Bench's 6,466)
    p = "|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|"
    q = "|avg_pool_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    assert nb201.canonical(p) != nb201.canonical(q)
    assert nb201_unique_class()[nb201.index_of(p)] != nb201_unique_class()[nb201.index_of(q)]
    # skip vs conv differ
    assert nb201.canonical(GOOD) != nb201.canonical(GOOD.replace("nor_conv_1x1~2", "skip_connect~2"))


# ---- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "arch, part",
    [
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|", "got 2"),  # 2 node groups
        (GOOD + "+|none~0|", "got 4"),
        ("", "got 1"),
        (GOOD.replace("nor_conv_1x1~2", "conv_5x5~2"), "conv_5x5"),  # unknown op
        (GOOD.replace("skip_connect~0", "skip_connect~1"), "skip_connect~1"),  # wrong input node
        (GOOD.replace("skip_connect~0", "skip_connect0"), "skip_connect0"),  # missing ~
        (GOOD[1:], "nor_conv_3x3~0|"),  # group does not start with |
        (GOOD.replace("|nor_conv_3x3~0|+", "|nor_conv_3x3~0|none~0|+", 1), "has 2 edges"),
        ([0, 0, 0, 0, 0], "length 5"),
        ([0] * 7, "length 7"),
        ([0, 0, 0, 0, 0, 5], "op id 5 on edge 5"),
        ([0, 0, 0, -1, 0, 0], "op id -1 on edge 3"),
        (15625, "15625"),
        (-1, "-1"),
        (True, "True"),
        (np.bool_(False), "False"),
        (3.0, "3.0"),
        (None, "None"),
    ],
)
def test_bad_archs_raise_value_error_naming_the_part(arch, part):
    for fn in (nb201.index_of, nb201.parse, nb201.to_string, nb201.canonical, nb201.neighbours):
        with pytest.raises(ValueError) as e:
            fn(arch)
        assert part in str(e.value), (fn.__name__, str(e.value))


def test_bad_index_for_index_only_functions():
    for bad in (True, 15625, -3, 1.0):
        with pytest.raises(ValueError, match="index"):
            nb201.arch_at(bad)
    with pytest.raises(ValueError, match="cannot read"):
        nb201.index_of(["none"] * 6)  # op names are not op ids


def test_bad_seed_is_a_value_error():
    with pytest.raises(ValueError, match="seed"):
        nb201.sample(3, seed=-1)
    with pytest.raises(ValueError, match="seed"):
        nb201.mutate(0, seed=-1)
    with pytest.raises(ValueError, match="seed"):
        nb201.sample(3, seed=True)
