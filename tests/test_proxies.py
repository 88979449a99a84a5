"""Reference proxies against values derived by hand (docs/proxies.md), in float64.

The closed forms are written in numpy from the math, never by calling zcfast code:
- a 2-layer bias-free linear net f(x) = W2 W1 x with the bilinear loss L = mean_b <y_b, f(x_b)>:
  with M = Y^T X / B, dL/dW1 = W2^T M, dL/dW2 = M W1^T, and the Hessian-gradient product is
  H g = (g2^T M, M g1^T) (the loss is linear in each weight, so only the cross blocks survive);
- the same net with cross-entropy: dL/dlogits = (softmax - onehot) / B;
- synflow of a chain of L bias-free linear layers is L * R (R is 1-homogeneous in every layer);
- jacob_cov with identical Jacobian rows: the correlation matrix is all-ones, eigenvalues {B, 0...}.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from zcfast.proxies import MODERN_PROXIES, PAPER_PROXIES, PROXIES, compute_measures, find_measures

K_EPS = 1e-5  # jacob_cov's k
ALL = [p for p in PROXIES if p not in MODERN_PROXIES]  # the classic ones (tests/test_modern_proxies.py)
BATCH = ["grad_norm", "snip", "plain", "grasp", "fisher", "jacob_cov", "nwot"]  # use the batch


def bilinear_loss(out, y):
    """L = mean_b <y_b, out_b> (y: (B, k) float)."""
    return (out * y).sum(1).mean()


def linear2(d=5, h=4, k=3, seed=0):
    g = np.random.default_rng(seed)
    w1, w2 = g.normal(size=(h, d)), g.normal(size=(k, h))
    net = nn.Sequential(nn.Linear(d, h, bias=False), nn.Linear(h, k, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(w1))
        net[1].weight.copy_(torch.from_numpy(w2))
    return net, w1, w2


def data(b=6, d=5, k=3, seed=1):
    g = np.random.default_rng(seed)
    x, y = g.normal(size=(b, d)), g.normal(size=(b, k))
    return x, y, torch.from_numpy(x), torch.from_numpy(y)


def cm(net, x, y, names, **kw):
    return compute_measures(net, x, y, names, **kw)


# ---- registry -------------------------------------------------------------------------------
def test_registry():
    assert set(ALL) == {"grad_norm", "snip", "plain", "grasp", "fisher", "jacob_cov",
                        "synflow", "nwot", "params", "flops", "l2_norm"}
    assert set(PAPER_PROXIES) == {"grad_norm", "snip", "grasp", "fisher", "jacob_cov", "synflow"}


# ---- the 2-layer linear net, bilinear loss ----------------------------------------------
def test_linear_net_bilinear_loss_closed_forms():
    net, w1, w2 = linear2()
    xn, yn, x, y = data()
    b = len(xn)
    m = yn.T @ xn / b  # (k, d)
    g1, g2 = w2.T @ m, m @ w1.T
    hg1, hg2 = g2.T @ m, m @ g1.T
    # fisher: layer outputs a1 = W1 x, a2 = W2 W1 x; dL/da2 = y / B, dL/da1 = W2^T y / B
    a1, a2 = xn @ w1.T, xn @ w1.T @ w2.T
    da1, da2 = yn @ w2 / b, yn / b
    fisher = (0.5 * ((a1 * da1) ** 2).mean(0)).sum() * 5 + (0.5 * ((a2 * da2) ** 2).mean(0)).sum() * 4
    want = {
        "grad_norm": np.linalg.norm(g1) + np.linalg.norm(g2),
        "snip": np.abs(w1 * g1).sum() + np.abs(w2 * g2).sum(),
        "plain": 2 * (m * (w2 @ w1)).sum(),  # <W1, W2^T M> = <W2, M W1^T> = <M, W2 W1>
        "grasp": -(w1 * hg1).sum() - (w2 * hg2).sum(),
        "fisher": fisher,
        "synflow": 2 * np.abs(w2).dot(np.abs(w1)).sum(),  # 2 layers x R, R = 1^T |W2||W1| 1
        "params": 4 * 5 + 3 * 4,
        "flops": 4 * 5 + 3 * 4,
        "l2_norm": np.linalg.norm(w1) + np.linalg.norm(w2),
    }
    got = cm(net, x, y, list(want), loss_fn=bilinear_loss)
    for p, v in want.items():
        assert got[p] == pytest.approx(v, rel=1e-12, abs=1e-14), p
    # plain = sum over layers of <W, dL/dW>: equal halves for a bilinear loss
    assert got["plain"] == pytest.approx(2 * (w1 * g1).sum(), rel=1e-12)


def test_linear_net_cross_entropy_closed_forms():
    net, w1, w2 = linear2(seed=3)
    xn, _, x, _ = data(b=7)
    labels = np.array([0, 2, 1, 1, 0, 2, 2])
    logits = xn @ w1.T @ w2.T
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - np.eye(3)[labels]) / len(xn)  # dL/dlogits, (B, k)
    h = xn @ w1.T
    g2, g1 = dz.T @ h, w2.T @ dz.T @ xn
    dh = dz @ w2
    fisher = (0.5 * ((h * dh) ** 2).mean(0)).sum() * 5 + (0.5 * ((logits * dz) ** 2).mean(0)).sum() * 4
    want = {
        "grad_norm": np.linalg.norm(g1) + np.linalg.norm(g2),
        "snip": np.abs(w1 * g1).sum() + np.abs(w2 * g2).sum(),
        "plain": (w1 * g1).sum() + (w2 * g2).sum(),
        "fisher": fisher,
    }
    got = cm(net, x, torch.from_numpy(labels), list(want))  # default loss: cross-entropy, mean
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-10), k


def test_conv_fisher_sums_over_space_before_squaring():
    # one 1x1 conv (written as an einsum by hand), bilinear loss on its flattened output:
    # a = conv(x) (B, C, H, W), dL/da = y / B; F_c = 0.5 mean_b (sum_hw a * dL/da)^2; x fan_in
    g = np.random.default_rng(8)
    b, cin, cout, hw = 5, 2, 3, 4
    w = g.normal(size=(cout, cin, 1, 1))
    net = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.Flatten()).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(w))
    xn = g.normal(size=(b, cin, hw, hw))
    yn = g.normal(size=(b, cout * hw * hw))
    a = np.einsum("oi,bihw->bohw", w[:, :, 0, 0], xn)
    da = yn.reshape(b, cout, hw, hw) / b
    fc = 0.5 * ((a * da).sum((2, 3)) ** 2).mean(0)
    got = cm(net, torch.from_numpy(xn), torch.from_numpy(yn), ["fisher", "snip"], loss_fn=bilinear_loss)
    assert got["fisher"] == pytest.approx(fc.sum() * cin, rel=1e-12)
    dw = np.einsum("bohw,bihw->oi", da, xn)  # dL/dW
    assert got["snip"] == pytest.approx(np.abs(w[:, :, 0, 0] * dw).sum(), rel=1e-12)


def test_grasp_cross_entropy_matches_finite_difference_hessian():
    # grasp = -<W, H g> with g = dL/dW; H g is the directional derivative of dL/dW along g
    net, w1, w2 = linear2(seed=4)
    _, _, x, _ = data(b=7)
    y = torch.tensor([0, 2, 1, 1, 0, 2, 2])

    def grads(a, b_):
        ta = torch.tensor(a, requires_grad=True)
        tb = torch.tensor(b_, requires_grad=True)
        loss = F.cross_entropy(x @ ta.T @ tb.T, y)
        ga, gb = torch.autograd.grad(loss, (ta, tb))
        return ga.numpy(), gb.numpy()

    g1, g2 = grads(w1, w2)
    eps = 1e-5
    p1, p2 = grads(w1 + eps * g1, w2 + eps * g2)
    m1, m2 = grads(w1 - eps * g1, w2 - eps * g2)
    hg1, hg2 = (p1 - m1) / (2 * eps), (p2 - m2) / (2 * eps)
    want = -(w1 * hg1).sum() - (w2 * hg2).sum()
    assert cm(net, x, y, ["grasp"])["grasp"] == pytest.approx(want, rel=1e-6)


def test_biases_and_bn_are_not_counted():
    # a bias adds to params but not to the weight-only proxies of an unchanged gradient path
    net, _, _ = linear2()
    _, _, x, y = data()
    base = cm(net, x, y, ["snip", "grad_norm", "l2_norm", "params"], loss_fn=bilinear_loss)
    net2 = nn.Sequential(nn.Linear(5, 4, bias=True), nn.Linear(4, 3, bias=True)).double()
    with torch.no_grad():
        net2[0].weight.copy_(net[0].weight)
        net2[1].weight.copy_(net[1].weight)
        net2[0].bias.zero_()
        net2[1].bias.fill_(3.0)  # the output bias does not change any gradient w.r.t. weights
    got = cm(net2, x, y, ["snip", "grad_norm", "l2_norm", "params"], loss_fn=bilinear_loss)
    for p in ("snip", "grad_norm", "l2_norm"):
        assert got[p] == pytest.approx(base[p], rel=1e-12), p
    assert got["params"] == base["params"] + 4 + 3


# ---- synflow ---------------------------------------------------------------------------------
def test_synflow_deep_chain_float64_where_float32_overflows():
    n_layers, d, w = 30, 8, 10.0
    layers = [nn.Linear(d, d, bias=False) for _ in range(n_layers)]
    net = nn.Sequential(*layers)  # float32 network, as callers pass it
    with torch.no_grad():
        for i, lay in enumerate(layers):
            lay.weight.fill_(w if i % 2 else -w)  # signs are dropped by synflow's |.|
    r = d * (d * w) ** n_layers  # 1^T |W_L| ... |W_1| 1 = d (d w)^L = 9.9e57
    assert r > 1e38
    assert torch.isinf(_abs_forward32(net, d))  # the same forward in float32 overflows
    x = torch.randn(2, d)
    got = cm(net, x, torch.zeros(2, dtype=torch.long), ["synflow"])["synflow"]
    assert math.isfinite(got)
    assert got == pytest.approx(n_layers * r, rel=1e-12)
    assert net[0].weight.dtype == torch.float32 and float(net[0].weight[0, 0].detach()) == -w  # untouched


def _abs_forward32(net, d):
    with torch.no_grad():
        h = torch.ones(1, d)
        for lay in net:
            h = h @ lay.weight.abs().T
        return h.sum()


def test_synflow_strips_bn_and_uses_ones_input():
    # Linear -> BN -> Linear: synflow removes the BN (a BN of a batch of one ones-vector would
    # otherwise give 0) and ignores the data (input = ones of batch 1)
    g = np.random.default_rng(5)
    w1, w2 = g.normal(size=(4, 3)), g.normal(size=(2, 4))
    net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.BatchNorm1d(4), nn.Linear(4, 2, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(w1))
        net[2].weight.copy_(torch.from_numpy(w2))
    want = 2 * np.abs(w2).dot(np.abs(w1)).sum()
    for b in (3, 9):
        x = torch.randn(b, 3, dtype=torch.float64) * 100
        got = cm(net, x, torch.zeros(b, dtype=torch.long), ["synflow"])["synflow"]
        assert got == pytest.approx(want, rel=1e-12)


def test_synflow_nb201_keeps_reduction_block_bn():
    from zcfast.spaces.nb201_model import build_model

    skips = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
    net = build_model(skips, seed=1)
    x = torch.zeros(2, 3, 32, 32)
    got = cm(net, x, torch.zeros(2, dtype=torch.long), ["synflow"])["synflow"]

    # by hand: |weights| in float64; stem conv, x4^5 per stage (all-skip cells), reduction blocks
    # with their BNs in train mode (batch statistics of the single all-ones sample), head
    def by_hand(block_bn: bool):
        ws = []

        def conv(m, h):
            ws.append(m.weight.detach().double().abs().requires_grad_(True))
            return F.conv2d(h, ws[-1], None, m.stride, m.padding)

        def bn(h):  # affine params are 1 and 0 (|.| of them too): plain batch normalisation
            if not block_bn:
                return h
            mu = h.mean((0, 2, 3), keepdim=True)
            var = h.var((0, 2, 3), unbiased=False, keepdim=True)
            return (h - mu) / torch.sqrt(var + 1e-5)

        def block(blk, h):
            a = bn(conv(blk.conv_a[1], torch.relu(h)))
            bb = bn(conv(blk.conv_b[1], torch.relu(a)))
            return conv(blk.shortcut[1], F.avg_pool2d(h, 2, 2)) + bb

        h = conv(net.stem[0], torch.ones(1, 3, 32, 32, dtype=torch.float64)) * 4**5
        h = block(net.layers[5], h) * 4**5
        h = block(net.layers[11], h) * 4**5
        ws.append(net.classifier.weight.detach().double().abs().requires_grad_(True))
        out = torch.relu(h).mean((2, 3)) @ ws[-1].T + net.classifier.bias.detach().double().abs()
        out.sum().backward()
        return sum(float((t.detach() * t.grad).abs().sum()) for t in ws)

    want = by_hand(block_bn=True)
    assert got == pytest.approx(want, rel=1e-9)
    # stripping the blocks' BN too would give another value: the quirk matters
    assert abs(by_hand(block_bn=False) - want) > 1e-3 * want


# ---- jacob_cov, nwot --------------------------------------------------------------------------
def test_jacob_cov_identical_rows():
    # linear net: J_b = (W2 W1)^T 1 for every sample -> corrcoef = ones(B, B), eigenvalues {B, 0..}
    net, _, _ = linear2()
    for b in (4, 9):
        _, _, x, y = data(b=b)
        want = -((math.log(b + K_EPS) + 1 / (b + K_EPS)) + (b - 1) * (math.log(K_EPS) + 1 / K_EPS))
        got = cm(net, x, y, ["jacob_cov"], loss_fn=bilinear_loss)["jacob_cov"]
        assert got == pytest.approx(want, rel=1e-9)


def test_jacob_cov_relu_net_by_hand():
    g = np.random.default_rng(6)
    d, h, k, b = 6, 12, 3, 5
    w1, b1, w2 = g.normal(size=(h, d)), g.normal(size=h), g.normal(size=(k, h))
    net = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, k, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(w1))
        net[0].bias.copy_(torch.from_numpy(b1))
        net[2].weight.copy_(torch.from_numpy(w2))
    xn = g.normal(size=(b, d))
    c = (xn @ w1.T + b1 > 0).astype(float)  # (B, h)
    jac = (c * (np.ones(k) @ w2)) @ w1  # row b: W1^T diag(c_b) W2^T 1
    lam = np.linalg.eigvalsh(np.corrcoef(jac))
    want = -np.sum(np.log(lam + K_EPS) + 1 / (lam + K_EPS))
    got = cm(net, torch.from_numpy(xn), torch.zeros(b, dtype=torch.long), ["jacob_cov"])["jacob_cov"]
    assert got == pytest.approx(want, rel=1e-8)


def _nwot_by_hand(codes_per_relu):
    kmat = sum(c @ c.T + (1 - c) @ (1 - c).T for c in codes_per_relu)
    return np.linalg.slogdet(kmat).logabsdet


def test_nwot_by_hand():
    g = np.random.default_rng(7)
    d, h1, h2, k, b = 5, 40, 30, 3, 8
    w1, b1 = g.normal(size=(h1, d)), g.normal(size=h1)
    w2, b2 = g.normal(size=(h2, h1)), g.normal(size=h2)
    net = nn.Sequential(nn.Linear(d, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(), nn.Linear(h2, k)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(w1))
        net[0].bias.copy_(torch.from_numpy(b1))
        net[2].weight.copy_(torch.from_numpy(w2))
        net[2].bias.copy_(torch.from_numpy(b2))
    xn = g.normal(size=(b, d))
    z1 = xn @ w1.T + b1
    z2 = np.maximum(z1, 0) @ w2.T + b2
    c1, c2 = (z1 > 0).astype(float), (z2 > 0).astype(float)
    x = torch.from_numpy(xn)
    y = torch.zeros(b, dtype=torch.long)
    got = cm(net, x, y, ["nwot"])["nwot"]
    assert math.isfinite(got)
    assert got == pytest.approx(_nwot_by_hand([c1, c2]), rel=1e-10)
    # one ReLU only (the first): the kernel of its codes
    net1 = nn.Sequential(*list(net.children())[:3])
    assert cm(net1, x, y, ["nwot"])["nwot"] == pytest.approx(_nwot_by_hand([c1]), rel=1e-10)
    # an in-place ReLU gives the same codes
    net2 = nn.Sequential(net[0], nn.ReLU(inplace=True), net[2])
    assert cm(net2, x, y, ["nwot"])["nwot"] == pytest.approx(_nwot_by_hand([c1]), rel=1e-10)


# ---- params, flops, l2_norm ------------------------------------------------------------------
def test_params_flops_l2_small_conv_net():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 5, 1, stride=2, bias=False), nn.ReLU(),
        nn.Conv2d(5, 6, 3, padding=1, groups=1), nn.Flatten(), nn.Linear(6 * 4 * 4, 7),
    )
    x = torch.randn(3, 3, 8, 8)
    got = cm(net, x, torch.zeros(3, dtype=torch.long), ["params", "flops", "l2_norm"])
    params = (3 * 4 * 9 + 4) + 2 * 4 + (4 * 5) + (5 * 6 * 9 + 6) + (96 * 7 + 7)
    flops = (4 * 8 * 8) * 27 + (5 * 4 * 4) * 4 + (6 * 4 * 4) * 45 + 7 * 96  # MACs per sample
    l2 = sum(float(np.linalg.norm(m.weight.detach().double().numpy()))
             for m in net if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert got["params"] == params
    assert got["flops"] == flops
    assert got["l2_norm"] == pytest.approx(l2, rel=1e-6)


# ---- NaN / inf -----------------------------------------------------------------------------
def test_nan_and_inf_are_reported_not_replaced():
    net, _, _ = linear2()
    _, _, x, y = data()
    with torch.no_grad():
        net[0].weight[1, 2] = float("nan")
    got = cm(net, x, y, ["grad_norm", "snip", "synflow", "l2_norm"], loss_fn=bilinear_loss)
    for p, v in got.items():
        assert math.isnan(v), (p, v)
    net, _, _ = linear2()
    with torch.no_grad():
        net[1].weight[0, 0] = float("inf")
    assert cm(net, x, y, ["l2_norm"])["l2_norm"] == math.inf
    # constant output: the Jacobian is zero, the correlation undefined -> NaN
    const = nn.Sequential(nn.Linear(5, 3)).double()
    with torch.no_grad():
        const[0].weight.zero_()
    assert math.isnan(cm(const, x, y, ["jacob_cov"], loss_fn=bilinear_loss)["jacob_cov"])
    # identical samples: every ReLU code is the same, K has rank 1, log|det K| = -inf
    relu = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3)).double()
    same = x[:1].repeat(6, 1)
    assert cm(relu, same, y, ["nwot"])["nwot"] == -math.inf


# ---- micro-batching --------------------------------------------------------------------------
def _conv_net(bn=False, seed=0):
    torch.manual_seed(seed)
    layers = [nn.Conv2d(3, 6, 3, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(6))
    layers += [nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1, stride=2), nn.ReLU(),
               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)]
    return nn.Sequential(*layers)


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_micro_batching_is_exact(dtype, rtol):
    net = _conv_net().to(dtype)
    torch.manual_seed(1)
    x = torch.randn(10, 3, 8, 8, dtype=dtype)  # 10 = uneven parts for split 4 (2, 3, 2, 3)
    y = torch.randint(0, 5, (10,))
    ref = cm(net, x, y, ALL)
    assert all(math.isfinite(v) for v in ref.values()), ref
    for split in (2, 4):
        got = cm(net, x, y, ALL, split_data=split)
        for p in ALL:
            assert got[p] == pytest.approx(ref[p], rel=rtol, abs=1e-12), (p, split)
    # the released code's rescaling (summing k mean-loss gradients) would multiply grad_norm by k
    assert cm(net, x, y, ["grad_norm"], split_data=2)["grad_norm"] != pytest.approx(2 * ref["grad_norm"])


def test_micro_batching_bn_net_refuses():
    net = _conv_net(bn=True)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 5, (8,))
    for p in BATCH:
        with pytest.raises(ValueError, match="BatchNorm"):
            cm(net, x, y, [p], split_data=2)
    # proxies that do not use the batch's coupling still work; split 1 is fine
    got = cm(net, x, y, ["synflow", "params", "flops", "l2_norm"], split_data=2)
    assert all(math.isfinite(v) for v in got.values())
    assert math.isfinite(cm(net, x, y, ["snip"], split_data=1)["snip"])
    with pytest.raises(ValueError, match="split"):
        cm(_conv_net(), x, y, ["snip"], split_data=9)  # more parts than samples


class _FakeOOM(nn.Module):
    """Raises PyTorch's out-of-memory message when given more than ``limit`` samples."""

    def __init__(self, limit):
        super().__init__()
        self.limit = limit

    def forward(self, x):
        if x.shape[0] > self.limit:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return x


def test_out_of_memory_retry_is_exact():
    base = _conv_net().double()
    net = nn.Sequential(_FakeOOM(3), *base)  # 10 samples -> retried in 4 parts of <= 3
    torch.manual_seed(2)
    x, y = torch.randn(10, 3, 8, 8, dtype=torch.float64), torch.randint(0, 5, (10,))
    got = cm(net, x, y, BATCH)
    ref = cm(base, x, y, BATCH)
    for p in BATCH:
        assert got[p] == pytest.approx(ref[p], rel=1e-10), p
    with pytest.raises(RuntimeError, match="cannot split further"):
        cm(nn.Sequential(_FakeOOM(0), *base), x, y, ["snip"])
    # with BatchNorm the retry is refused, whatever mode the caller left the network in
    bn = nn.Sequential(_FakeOOM(3), *_conv_net(bn=True)).double()
    for mode in (True, False):
        bn.train(mode)
        with pytest.raises(RuntimeError, match="out of memory.*BatchNorm"):
            cm(bn, x, y, ["snip"])
    # other errors are not retried
    with pytest.raises(RuntimeError, match="shape|size"):
        cm(base, torch.randn(4, 3, 9, 9, 9, dtype=torch.float64), y[:4], ["snip"])


# ---- the caller's network is untouched ------------------------------------------------------
def _snapshot(net):
    return ({k: v.clone() for k, v in net.state_dict().items()},
            {n: (None if p.grad is None else p.grad.clone()) for n, p in net.named_parameters()},
            {n: p.requires_grad for n, p in net.named_parameters()},
            [m.training for m in net.modules()],
            {n: p.dtype for n, p in net.named_parameters()})


def _same(a, b):
    sa, ga, ra, ta, da = a
    sb, gb, rb, tb, db = b
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert all((ga[k] is None and gb[k] is None) or torch.equal(ga[k], gb[k]) for k in ga)
    assert ra == rb and ta == tb and da == db


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_find_measures_leaves_network_untouched(mode):
    net = _conv_net(bn=True)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 5, (8,))
    net(x).sum().backward()  # pre-existing grads
    net[0].bias.grad = None  # ... and a missing one
    net[3].weight.requires_grad_(False)  # a frozen layer
    net.train(mode == "train")
    before = _snapshot(net)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    got = find_measures(net, loader, ("random", 2, 5), "cpu", measure_names=None)
    assert set(got) == set(ALL)
    _same(before, _snapshot(net))


def test_nb201_network_untouched():
    from zcfast.spaces.nb201_model import build_model

    net = build_model("|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|",
                      seed=0, flavour="official").eval()
    before = _snapshot(net)
    x, y = torch.randn(3, 3, 8, 8), torch.randint(0, 10, (3,))
    got = compute_measures(net, x, y, ["synflow", "snip"])  # the prunable-copy and deepcopy paths
    assert all(math.isfinite(v) for v in got.values())
    _same(before, _snapshot(net))


# ---- names and data loading ----------------------------------------------------------------
def test_unknown_proxy_names():
    net = _conv_net()
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 5, (4,))
    with pytest.raises(ValueError, match="'synflw'"):
        cm(net, x, y, ["snip", "synflw"])
    with pytest.raises(ValueError, match="'naswot'"):
        cm(net, x, y, "snip,naswot")
    loader = DataLoader(TensorDataset(x, y), batch_size=2)
    with pytest.raises(ValueError, match="'foo'"):
        find_measures(net, loader, ("random", 1, 5), "cpu", measure_names=["foo"])
    with pytest.raises(ValueError, match="dataload"):
        find_measures(net, loader, ("shuffled", 1, 5), "cpu", measure_names=["snip"])
    with pytest.raises(ValueError, match="dataload_info"):
        find_measures(net, loader, ("random", 1), "cpu", measure_names=["snip"])
    with pytest.raises(ValueError, match="duplicate"):
        cm(net, x, y, ["snip", "snip"])


def test_dataload_random_and_grasp():
    net = _conv_net().double()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(20, 3, 8, 8, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4, 4, 3, 2, 1, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=False)
    names = ["snip", "grasp", "fisher", "jacob_cov", "nwot"]
    # ('random', n, C): the first n batches of the loader
    got = find_measures(net, loader, ("random", 2, 5), "cpu", measure_names=names)
    ref = cm(net, x[:8], y[:8], names)
    assert got == pytest.approx(ref, rel=1e-12)
    # ('grasp', k, C): k samples of each class, classes in order, first seen first
    got = find_measures(net, loader, ("grasp", 2, 5), "cpu", measure_names=names)
    order = [0, 9, 1, 8, 2, 7, 3, 6, 4, 5]
    ref = cm(net, x[order], y[order], names)
    assert got == pytest.approx(ref, rel=1e-12)
    with pytest.raises(ValueError, match="ran out"):
        find_measures(net, loader, ("grasp", 5, 5), "cpu", measure_names=names)
    # custom loss through find_measures
    lin, w1, w2 = linear2()
    xn, yn, xt, yt = data(b=6)
    got = find_measures(lin, DataLoader(TensorDataset(xt, yt), batch_size=3), ("random", 2, 3), "cpu",
                        loss_fn=bilinear_loss, measure_names=["plain"])
    m = yn.T @ xn / 6
    assert got["plain"] == pytest.approx(2 * (m * (w2 @ w1)).sum(), rel=1e-12)
