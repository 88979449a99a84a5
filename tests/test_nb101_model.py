"""The NAS-Bench-101 network (docs/nb101.md): parameter counts against the benchmark's own
``trainable_parameters`` (31 real cells at the official widths, built on the meta device), the
channel split (the benchmark's own test vectors), the cell's wiring, the paper's initialisation
from counter-based streams, and the BN-free prunable copy used by synflow. Model runs use a
stem of 8 channels and 16x16 inputs.

Injected defects these checks catch (kept in the suite where cheap): a channel rule taking the
minimum instead of the maximum of the successors, non-affine BatchNorm, a classifier without
bias (parameter counts), init std with fan-in instead of fan-out (init statistics).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from zcfast.proxies import compute_measures
from zcfast.spaces import nb101
from zcfast.spaces import nb101_model as M

DATA = Path(__file__).resolve().parent / "data"
OFFICIAL = json.loads((DATA / "nb101_official30.json").read_text())["records"]
C3, C1, MP, IN, OUT = nb101.CONV3X3, nb101.CONV1X1, nb101.MAXPOOL3X3, nb101.INPUT, nb101.OUTPUT
# The official API's example cell: trainable_parameters 2,694,282 (its README notebook output)
INCEPTION = {"matrix": [[0, 1, 1, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1],
                        [0, 0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1],
                        [0, 0, 0, 0, 0, 0, 0]],
             "ops": [IN, C1, C3, C3, C3, MP, OUT]}
SMALL = {"stem_channels": 8}


def n_params(arch, **kw) -> int:
    with torch.device("meta"):  # no memory, no init: only the structure
        net = M.NB101Net(arch, **kw)
    return sum(p.numel() for p in net.parameters())


def official_cells():
    return [({"matrix": r["matrix"], "ops": r["ops"]}, r["trainable_parameters"]) for r in OFFICIAL]


# ---- parameter counts --------------------------------------------------------------------------
def test_parameter_counts_equal_the_benchmark():
    assert n_params(INCEPTION) == 2694282
    for cell, p in official_cells():
        assert n_params(cell) == p


@pytest.mark.parametrize("defect", ["min_channels", "bn_not_affine", "head_no_bias"])
def test_parameter_check_detects_defects(monkeypatch, defect):
    if defect == "min_channels":
        real = M.vertex_channels

        def wrong(c_in, c_out, matrix):
            ch = real(c_in, c_out, matrix)
            m = np.asarray(matrix)
            n = m.shape[0]
            for v in range(n - 3, 0, -1):  # minimum instead of maximum of the successors
                if not m[v, n - 1]:
                    ch[v] = min(ch[w] for w in range(v + 1, n - 1) if m[v, w])
            return ch

        monkeypatch.setattr(M, "vertex_channels", wrong)
    elif defect == "bn_not_affine":
        real_bn = nn.BatchNorm2d
        monkeypatch.setattr(M.nn, "BatchNorm2d", lambda c: real_bn(c, affine=False))
    else:
        real_linear = nn.Linear
        monkeypatch.setattr(M.nn, "Linear", lambda a, b: real_linear(a, b, bias=False))
    wrong = sum(n_params(cell) != p for cell, p in official_cells())
    assert wrong >= (3 if defect == "min_channels" else 30)


def test_parameter_count_by_hand_two_vertex_cell():
    """input -> output only: every cell is one 1x1 projection + BN."""
    cell = {"matrix": [[0, 1], [0, 0]], "ops": [IN, OUT]}
    stem = 3 * 128 * 9 + 2 * 128
    cells = 0
    c_in = 128
    for c in (128, 256, 512):
        for _ in range(3):
            cells += c_in * c + 2 * c
            c_in = c
    assert n_params(cell) == stem + cells + 512 * 10 + 10


# ---- channels ----------------------------------------------------------------------------------
def test_vertex_channels_benchmark_vectors():
    """Expected values of the benchmark's own model_builder tests."""
    branch = [[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]]
    assert M.vertex_channels(8, 8, branch) == [8, 4, 4, 8]
    assert M.vertex_channels(8, 15, branch) == [8, 8, 7, 15]
    three = [[0, 1, 1, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0] * 5]
    assert M.vertex_channels(8, 8, three) == [8, 3, 3, 2, 8]
    maxed = [[0, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0] * 5]
    assert M.vertex_channels(8, 9, maxed) == [8, 5, 5, 4, 9]
    chain = [[0, 1, 0, 1, 0], [0, 0, 1, 0, 1], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1], [0] * 5]
    assert M.vertex_channels(8, 15, chain) == [8, 8, 7, 7, 15]
    assert M.vertex_channels(5, 1, [[0, 1], [0, 0]]) == [5, 1]
    plan = M.channel_plan(INCEPTION)
    assert [(s, k, ci, co) for s, k, ci, co, _ in plan] == [
        (0, 0, 128, 128), (0, 1, 128, 128), (0, 2, 128, 128), (1, 0, 128, 256), (1, 1, 256, 256),
        (1, 2, 256, 256), (2, 0, 256, 512), (2, 1, 512, 512), (2, 2, 512, 512)]


# ---- wiring --------------------------------------------------------------------------------------
def _cell_out(arch, c_in=6, c_out=15, seed=0):
    torch.manual_seed(seed)
    cell = M.Cell(nb101.canonical_spec(arch), c_in, c_out).train()
    x = torch.randn(4, c_in, 5, 5)
    return cell, x, cell(x)


def test_cell_wiring():
    # input -> output only: the output is the input's projection
    cell, x, y = _cell_out({"matrix": [[0, 1], [0, 0]], "ops": [IN, OUT]})
    torch.testing.assert_close(y, cell.proj["1"](x), rtol=0, atol=0)
    # 0 -> 1 -> 2 -> out and 1 -> out, 0 -> out: vertex 1 has 8 channels, vertex 2 gets 7, so
    # vertex 2 reads vertex 1 truncated to 7; the output concatenates 1 and 2 and adds proj(x)
    arch = {"matrix": [[0, 1, 0, 1], [0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]],
            "ops": [IN, C3, MP, OUT]}
    cell, x, y = _cell_out(arch)
    assert cell.channels == [6, 8, 7, 15]
    t1 = cell.ops["1"](cell.proj["1"](x))
    t2 = cell.ops["2"](t1[:, :7])
    torch.testing.assert_close(y, torch.cat([t1, t2], 1) + cell.proj["3"](x), rtol=0, atol=0)
    # a vertex fed by the input and by another vertex adds them, projection last
    arch = {"matrix": [[0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]],
            "ops": [IN, C1, C3, OUT]}
    cell, x, y = _cell_out(arch)
    t1 = cell.ops["1"](cell.proj["1"](x))
    torch.testing.assert_close(y, cell.ops["2"](t1 + cell.proj["2"](x)), rtol=0, atol=0)


def test_network_shapes_and_layers():
    net = M.build_model(INCEPTION, 10, **SMALL)
    x = torch.randn(3, 3, 16, 16)
    assert net(x).shape == (3, 10)
    pools = [m for m in net.layers if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 2 and len([m for m in net.layers if isinstance(m, M.Cell)]) == 9
    assert net.classifier.in_features == 32 and net.classifier.bias is not None
    assert all(m.bias is None for m in net.modules() if isinstance(m, nn.Conv2d))
    assert net.hash == nb101.hash_of(INCEPTION) and net.code == nb101.encode(INCEPTION)
    with pytest.raises(ValueError, match="stem_channels"):
        M.NB101Net(INCEPTION, stem_channels=0)
    with pytest.raises(ValueError, match="not connected"):
        M.NB101Net({"matrix": [[0, 0], [0, 0]], "ops": [IN, OUT]})


def test_slots_are_distinct_and_structural():
    net = M.build_model(INCEPTION, **SMALL)
    slots = [m.zc_slot for m in net.modules() if hasattr(m, "zc_slot")]
    assert len(slots) == len(set(slots))
    n_conv = sum(isinstance(m, nn.Conv2d) for m in net.modules())
    assert len(slots) == n_conv + 1  # every conv and the classifier
    # the projection into the output is vertex 6 whatever the cell's size
    five = {"matrix": [[0, 1, 0, 0, 1], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1], [0] * 5],
            "ops": [IN, C3, C3, C1, OUT]}
    net5 = M.build_model(five, **SMALL)
    assert net5.layers[0].proj["4"][0].zc_slot == M.slot_of("projection", vertex=6)
    with pytest.raises(ValueError, match="vertex"):
        M.slot_of("vertex", vertex=6)


# ---- initialisation ------------------------------------------------------------------------------
def test_init_is_deterministic_and_keyed():
    a = M.build_model(INCEPTION, **SMALL, seed=3)
    b = M.build_model(INCEPTION, **SMALL, seed=3)
    c = M.build_model(INCEPTION, **SMALL, seed=4)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
        if pa.dim() > 1:
            assert not torch.equal(pa, pc)
    # a tensor's numbers depend on (seed, key, slot) only: drawn alone they are the same
    conv = a.layers[4].ops["2"][0]
    alone = torch.empty(conv.weight.numel())
    M.fill_normal(alone, torch.tensor([0, alone.numel()]),
                  torch.tensor([M.stream_code(a.key)]), torch.tensor([conv.zc_slot]),
                  torch.tensor([M.std_of(conv)], dtype=torch.float64), 3)
    assert torch.equal(alone.view_as(conv.weight), conv.weight)


def test_fill_normal_in_runs_draws_the_same_numbers(monkeypatch):
    """Drawn in runs of whole segments (small ``block``: runs of one to a few segments, a
    segment longer than the block on its own) the numbers equal those drawn in one run, bit for
    bit, on fresh random ragged segments with empty ones among them; every run holds at most
    ``block`` numbers unless it is one segment."""
    g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ()).item()))
    lens = torch.randint(0, 40, (int(torch.randint(8, 30, (), generator=g)),), generator=g)
    lens[::4] = 0
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lens.cumsum(0)])
    code = torch.randint(0, 2**40, (len(lens),), generator=g)
    slot = torch.randint(0, 500, (len(lens),), generator=g)
    std = torch.rand(len(lens), generator=g, dtype=torch.float64) + 0.01
    whole = torch.empty(int(offsets[-1]))
    M.fill_normal(whole, offsets, code, slot, std, 7, block=1 << 30)
    runs_seen = []
    one_run = M._fill_normal_run

    def spy(out, offs, *a):
        runs_seen.append((out.numel(), len(offs) - 1))
        one_run(out, offs, *a)

    monkeypatch.setattr(M, "_fill_normal_run", spy)
    for block in (1, 5, 37, 100):
        runs_seen.clear()
        runs = torch.full_like(whole, float("nan"))
        M.fill_normal(runs, offsets, code, slot, std, 7, block=block)
        assert torch.equal(runs, whole), block
        assert all(n <= block or segs == 1 for n, segs in runs_seen), (block, runs_seen)
        # every non-empty segment drawn once
        assert sum(segs for n, segs in runs_seen if n) <= len(lens)
        assert sum(n for n, _ in runs_seen) == len(whole)
    # no segment, and empty segments only
    M.fill_normal(torch.empty(0), torch.zeros(1, dtype=torch.int64), code[:0], slot[:0], std[:0], 7)
    M.fill_normal(torch.empty(0), torch.zeros(3, dtype=torch.int64), code[:2], slot[:2], std[:2], 7)
    with pytest.raises(ValueError, match="block must be positive, got 0"):
        M.fill_normal(whole, offsets, code, slot, std, 7, block=0)
    with pytest.raises(ValueError, match="offsets must run from 0"):  # does not cover out
        M.fill_normal(torch.empty(len(whole) + 1), offsets, code, slot, std, 7)


def test_init_statistics_are_the_papers():
    net = M.build_model(INCEPTION, stem_channels=32, seed=0)
    for m in net.modules():
        if isinstance(m, nn.Conv2d) and m.weight.numel() >= 4096:
            w = m.weight.detach().double().flatten()
            std = np.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels))
            assert abs(float(w.std()) / std - 1) < 0.05
            assert abs(float(w.mean())) < 0.1 * std
        if isinstance(m, nn.BatchNorm2d):
            assert bool((m.weight == 1).all()) and bool((m.bias == 0).all())
    w = net.classifier.weight.detach().double().flatten().numpy()
    assert abs(w.std() / 0.01 - 1) < 0.1 and bool((net.classifier.bias == 0).all())
    # normal shape: Kolmogorov-Smirnov against N(0, std^2) on a big tensor
    big = net.layers[8].ops["2"][0].weight.detach().double().flatten().numpy()
    std = np.sqrt(2.0 / (9 * net.layers[8].ops["2"][0].out_channels))
    assert stats.kstest(big / std, "norm").pvalue > 1e-3
    # an injected fan-in std (sqrt(2 / (k k C_in))) would be caught: the cells' first convs
    # have C_in != C_out only through projections, so use the stem (C_in = 3, C_out = 32)
    stem = net.stem[0].weight.detach().double()
    assert abs(float(stem.std()) / np.sqrt(2.0 / (9 * 32)) - 1) < 0.1
    assert abs(float(stem.std()) / np.sqrt(2.0 / (9 * 3)) - 1) > 0.5


# ---- the prunable (synflow) copy ----------------------------------------------------------------
def test_prunable_copy_removes_every_bn():
    net = M.build_model(INCEPTION, **SMALL)
    cp = net.get_prunable_copy(bn=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in cp.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == \
        sum(isinstance(m, nn.Conv2d) for m in net.modules())
    conv_a = [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    conv_b = [m.weight for m in cp.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert all(torch.equal(a, b) for a, b in zip(conv_a, conv_b))
    assert cp.training and cp.get_prunable_copy(bn=True) is not cp


def test_proxies_run_where_the_released_code_crashes():
    """A single conv vertex feeding the output plus an input -> output edge: the released
    ``outputs += projection`` modifies a ReLU output autograd needs (backward raises); the
    out-of-place sum here gives finite scores, and synflow equals a by-hand BN-free pass."""
    arch = {"matrix": [[0, 1, 1], [0, 0, 1], [0, 0, 0]], "ops": [IN, C3, OUT]}
    net = M.build_model(arch, **SMALL, seed=0)
    x = torch.randn(8, 3, 16, 16)
    y = torch.randint(0, 10, (8,))
    s = compute_measures(net, x, y, ["synflow", "snip", "grad_norm", "jacob_cov"])
    assert all(np.isfinite(v) for v in s.values())
    cp = net.get_prunable_copy(bn=False).double()
    with torch.no_grad():
        for p in cp.parameters():
            p.abs_()
    cp(torch.ones(1, 3, 16, 16, dtype=torch.float64)).sum().backward()
    ref = sum(float((m.weight * m.weight.grad).abs().sum().detach()) for m in cp.modules()
              if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert s["synflow"] == pytest.approx(ref, rel=1e-12)
