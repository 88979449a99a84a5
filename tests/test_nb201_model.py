"""The NB201 network (docs/nb201.md): parameter counts derived by hand, output shapes,
the cell's wiring, deterministic (seed, arch) weights with PyTorch's default distribution, and
the prunable (synflow) copy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from zcfast.spaces import nb201
from zcfast.spaces.nb201_model import Cell, ResBlock, build_model

ALL3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL1 = ALL3.replace("3x3", "1x1")
NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


def skeleton_params(k: int) -> int:
    """Parameters outside the cells, counted by hand."""
    stem = 3 * 16 * 9 + 2 * 16  # conv 3->16 3x3 (no bias) + affine BN
    red = 0
    for ci, co in ((16, 32), (32, 64)):
        red += ci * co * 9 + 2 * co  # conv_a 3x3 s2 + BN
        red += co * co * 9 + 2 * co  # conv_b 3x3 + BN
        red += ci * co  # shortcut 1x1 (no bias)
    head = 2 * 64 + 64 * k + k  # last BN + Linear(64, k)
    return stem + red + head


def cell_params(kernel: int, flavour: str, n_conv_edges: int) -> int:
    """5 cells per stage at C = 16, 32, 64; per conv edge: C*C*k*k weights, plus a bias (paper:
    non-affine BN) or an affine BN (official: 2C, no bias)."""
    per_edge = sum(c * c * kernel * kernel + (c if flavour == "paper" else 2 * c) for c in (16, 32, 64))
    return 5 * n_conv_edges * per_edge


def n_params(net) -> int:
    return sum(p.numel() for p in net.parameters())


# ---- parameter counts ---------------------------------------------------------------------
@pytest.mark.parametrize("flavour", ["paper", "official"])
@pytest.mark.parametrize("k", [10, 100, 120])
def test_param_counts_by_hand(flavour, k):
    assert skeleton_params(10) == 73306  # NB201's smallest network (all-none cell), CIFAR-10
    assert n_params(build_model(NONE, k, flavour=flavour)) == skeleton_params(k)
    assert n_params(build_model(ALL3, k, flavour=flavour)) == skeleton_params(k) + cell_params(3, flavour, 6)
    assert n_params(build_model(ALL1, k, flavour=flavour)) == skeleton_params(k) + cell_params(1, flavour, 6)
    # BEST: four 3x3 edges and one 1x1 edge, skip has none
    assert n_params(build_model(BEST, k, flavour=flavour)) == (
        skeleton_params(k) + cell_params(3, flavour, 4) + cell_params(1, flavour, 1))


def test_known_totals():
    # NB201's largest CIFAR-10 network (official flavour) is known to have 1,531,546 parameters
    assert n_params(build_model(ALL3, 10, flavour="official")) == 1531546
    assert n_params(build_model(ALL3, 10, flavour="paper")) == 1528186


def test_flavours_differ_in_cell_bn_and_bias():
    for flavour, bias, affine in (("paper", True, False), ("official", False, True)):
        net = build_model(ALL3, flavour=flavour)
        cell = net.layers[0]
        assert isinstance(cell, Cell) and len(cell.edges) == 6
        conv, bn = cell.edges[0][1], cell.edges[0][2]
        assert (conv.bias is not None) == bias
        assert bn.affine == affine and bn.track_running_stats == affine
        # the reduction blocks and the stem do not depend on the flavour
        blk = net.layers[5]
        assert isinstance(blk, ResBlock)
        assert blk.conv_a[1].bias is None and blk.conv_a[2].affine and blk.conv_a[2].track_running_stats
        assert blk.conv_a[1].stride == (2, 2) and blk.shortcut[1].kernel_size == (1, 1)
    with pytest.raises(ValueError, match="flavour"):
        build_model(ALL3, flavour="nas")


def test_structure_counts():
    net = build_model(BEST)
    assert sum(isinstance(m, Cell) for m in net.modules()) == 15
    assert sum(isinstance(m, ResBlock) for m in net.modules()) == 2
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    # stem 1 + 15 cells x 5 conv edges + 2 blocks x 3
    assert len(convs) == 1 + 15 * 5 + 6
    assert net.arch == BEST and net.code == nb201.code_of(BEST)
    assert build_model(6111).arch == BEST and build_model(nb201.parse(BEST)).arch == BEST


# ---- shapes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("k, side", [(10, 32), (100, 32), (120, 16)])
def test_output_shapes(k, side):
    net = build_model(BEST, k)
    x = torch.randn(3, 3, side, side)
    y = net(x)
    assert y.shape == (3, k) and y.dtype == torch.float32 and torch.isfinite(y).all()
    feat = net.layers(net.stem(x))
    assert feat.shape == (3, 64, side // 4, side // 4)


def test_bad_num_classes():
    for k in (0, -1, True, 10.0):
        with pytest.raises(ValueError, match="num_classes"):
            build_model(NONE, k)


# ---- the cell's wiring ------------------------------------------------------------------
def test_cell_wiring_closed_forms():
    x = torch.randn(2, 4, 5, 5)

    def cell(s):
        return Cell(nb201.parse(s), 4, "paper")

    # node1 = x, node2 = x + x, node3 = x + node1 + node2 = 4x
    skips = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
    torch.testing.assert_close(cell(skips)(x), 4 * x)
    torch.testing.assert_close(cell(NONE)(x), torch.zeros_like(x))
    only03 = "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
    torch.testing.assert_close(cell(only03)(x), x)
    # a path 0 -> 1 -> 2 -> 3 of three poolings
    chain = "|avg_pool_3x3~0|+|none~0|avg_pool_3x3~1|+|none~0|none~1|avg_pool_3x3~2|"
    p = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    torch.testing.assert_close(cell(chain)(x), p(p(p(x))))
    # count_include_pad=False: a constant image stays constant at the borders
    ones = torch.ones(1, 4, 5, 5)
    torch.testing.assert_close(cell(chain)(ones), ones)


# ---- weights ------------------------------------------------------------------------------
def _weights(net):
    return {k: v for k, v in net.state_dict().items()}


def test_weights_are_a_function_of_seed_and_arch():
    a, b = build_model(BEST, seed=3), build_model(BEST, seed=3)
    sa, sb = _weights(a), _weights(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    c = _weights(build_model(BEST, seed=4))
    d = _weights(build_model(ALL3, seed=3))
    for name, m in a.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = name + ".weight"
            assert not torch.equal(sa[w], c[w]), w  # another seed: every layer differs
            if w in d and d[w].shape == sa[w].shape:
                assert not torch.equal(sa[w], d[w]), w  # another arch, same shape: differs
    # the stem (identical shape in every arch) differs between archs
    assert not torch.equal(sa["stem.0.weight"], d["stem.0.weight"])
    # the same cell given as string, index or ops gives the same weights
    e = _weights(build_model(6111, seed=3))
    assert all(torch.equal(sa[k], e[k]) for k in sa)
    # seed=None keeps PyTorch's own init (not the (seed, arch) streams)
    torch.manual_seed(0)
    f = _weights(build_model(BEST, seed=None))
    assert not torch.equal(f["stem.0.weight"], sa["stem.0.weight"])


@pytest.mark.parametrize("flavour", ["paper", "official"])
def test_init_distribution(flavour):
    net = build_model(ALL3, 100, flavour=flavour, seed=11)
    big_w = []
    for name, m in net.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan = m.weight[0].numel()  # C_in * kh * kw, or in_features
            b = 1.0 / np.sqrt(fan)
            for t in [m.weight] + ([m.bias] if m.bias is not None else []):
                v = t.detach().double().numpy().ravel()
                assert v.min() >= -b * (1 + 1e-6) and v.max() <= b * (1 + 1e-6), name
                if v.size >= 4096:
                    assert abs(v.mean()) < 0.05 * b, name
                    assert abs(v.std() - b / np.sqrt(3)) < 0.03 * b, name
                    assert v.max() > 0.99 * b and v.min() < -0.99 * b, name
                    big_w.append(v / b)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            assert torch.equal(m.weight, torch.ones_like(m.weight))
            assert torch.equal(m.bias, torch.zeros_like(m.bias))
    u = np.concatenate(big_w)
    assert u.size > 1e6
    assert stats.kstest(u[:: 97], stats.uniform(loc=-1, scale=2).cdf).pvalue > 1e-4


def test_dtype_and_train_mode():
    net = build_model(BEST, dtype=torch.float64)
    assert net.training and all(p.dtype == torch.float64 for p in net.parameters())


# ---- prunable copy ------------------------------------------------------------------------
def _bn_paths(net):
    return [n for n, m in net.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@pytest.mark.parametrize("flavour", ["paper", "official"])
def test_prunable_copy_keeps_only_reduction_bns(flavour):
    net = build_model(BEST, flavour=flavour, seed=2).eval()
    before = _bn_paths(net)
    # stem 1 + 15 cells x 5 conv edges + 2 blocks x 2 + head 1
    assert len(before) == 1 + 75 + 4 + 1
    cp = net.get_prunable_copy(bn=False)
    after = _bn_paths(cp)
    assert sorted(after) == sorted(["layers.5.conv_a.2", "layers.5.conv_b.2",
                                    "layers.11.conv_a.2", "layers.11.conv_b.2"])
    assert isinstance(cp.stem[1], nn.Identity) and isinstance(cp.lastact[0], nn.Identity)
    assert cp.training and not net.training  # the copy is in train mode, the original untouched
    assert _bn_paths(net) == before
    # conv/linear weights (and biases) identical, not shared
    sd, sc = net.state_dict(), cp.state_dict()
    for name, m in net.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            for p in ("weight", "bias"):
                if getattr(m, p) is not None:
                    k = f"{name}.{p}"
                    assert torch.equal(sd[k], sc[k]) and sd[k].data_ptr() != sc[k].data_ptr(), k
    with torch.no_grad():
        cp.stem[0].weight.add_(1.0)
    assert not torch.equal(net.stem[0].weight, cp.stem[0].weight)
    # bn=True: a full copy
    full = net.get_prunable_copy(bn=True)
    assert _bn_paths(full) == before and full.training


def test_prunable_copy_forward_is_bn_free_outside_blocks():
    # all-skip cell: the cells then just scale by 4, so the BN-free copy's output can be
    # written down with the copy's own reduction blocks and head
    skips = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
    net = build_model(skips, seed=0, dtype=torch.float64)
    cp = net.get_prunable_copy(bn=False)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    h = cp.stem[0](x) * 4**5
    h = cp.layers[5](h) * 4**5
    h = cp.layers[11](h) * 4**5
    ref = cp.classifier(torch.relu(h).mean((2, 3)))
    torch.testing.assert_close(cp(x), ref)
