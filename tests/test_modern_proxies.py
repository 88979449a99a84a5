"""The modern per-model proxies (docs/proxies_modern.md) against values derived by hand.

Closed forms are written in numpy (float64) from the definitions, never by calling the function
under test. Tiny networks and 16x16 inputs keep the file fast. Where a check could pass for the
wrong reason, the test also shows that a plausible defect (the variant the authors' code does
*not* compute) gives a different value: the check can fail.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from zcfast.proxies import (
    MODERN_PROXIES,
    PROXIES,
    ProxyContext,
    compute_measures,
    extra_batch_seed,
    find_measures,
)
from zcfast.proxies import _random as R
from zcfast.proxies import az_nas as az
from zcfast.proxies import gradstats as gs
from zcfast.proxies import meco as mc
from zcfast.proxies import swap as sw
from zcfast.proxies import vkdnw as vk
from zcfast.spaces.nb201_model import build_model

MIXED = "|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_1x1~1|nor_conv_3x3~2|"


def bilinear_loss(out, y):
    return (out * y).sum(1).mean()


def conv_net(bn=True, ncls=5):
    layers = [nn.Conv2d(3, 4, 3, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(4))
    layers += [nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(6))
    layers += [nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, ncls)]
    torch.manual_seed(0)
    return nn.Sequential(*layers)


# ---- registry, randomness ------------------------------------------------------------------
def test_registry_and_names():
    assert set(MODERN_PROXIES) <= set(PROXIES)
    assert {"zico", "epe_nas", "zen", "meco", "swap", "swap_reg", "az_expressivity",
            "az_progressivity", "az_trainability", "az_complexity", "vkdnw", "vkdnw_dim",
            "vkdnw_single"} == set(MODERN_PROXIES)
    assert PROXIES["zico"].batches == 2
    net, x, y = conv_net(), torch.randn(4, 3, 8, 8), torch.randint(0, 5, (4,))
    with pytest.raises(ValueError, match="ensemble"):
        compute_measures(net, x, y, ["az_nas"])
    with pytest.raises(ValueError, match="extra minibatch"):
        compute_measures(net, x, y, ["zico"])
    for name in ("zico", "az_expressivity", "vkdnw", "swap", "zen", "epe_nas"):
        with pytest.raises(ValueError, match="micro-batch"):
            compute_measures(net, x, y, [name], split_data=2, extra_batches=[(x, y)])


def test_normal_draws_are_the_inverse_cdf_of_the_uniform_stream():
    u = torch.tensor([-1.0, -1.0 + 2.0**-23, -0.5, 0.0, 1.0 - 2.0**-23])
    m = np.array([0, 1, 2**22, 2**23, 2**24 - 1], dtype=np.float64)
    want = stats.norm.ppf((m + 0.5) / 2**24)
    assert R.uniform_to_normal(u).numpy() == pytest.approx(want, rel=1e-12, abs=1e-12)
    z = R.normal(200_000, 7, R.NOISE + 5, seed=3).numpy()
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(stats.kurtosis(z)) < 0.05  # Gaussian, not the uniform's -1.2
    assert np.array_equal(z, R.normal(200_000, 7, R.NOISE + 5, seed=3).numpy())
    assert not np.array_equal(z[:100], R.normal(100, 7, R.NOISE + 6, seed=3).numpy())
    r = R.rademacher((1000,), 1, R.PROBE, 0)
    assert set(r.unique().tolist()) == {-1.0, 1.0} and abs(float(r.mean())) < 0.1


def test_reinit_distributions_and_determinism():
    net = nn.Sequential(nn.Conv2d(8, 300, 3), nn.BatchNorm2d(300), nn.Linear(50, 400))
    with torch.no_grad():
        net[1].weight.fill_(3.0)
        net[1].bias.fill_(2.0)
    a = R.reinit_(copy.deepcopy(net), 5, "kaiming_normal")
    w = a[0].weight.detach().numpy().ravel()
    assert w.std() == pytest.approx(math.sqrt(2 / 72), rel=0.02) and abs(w.mean()) < 0.01
    assert a[2].weight.detach().numpy().std() == pytest.approx(math.sqrt(2 / 50), rel=0.02)
    assert float(a[0].bias.detach().abs().max()) == 0 and float(a[2].bias.detach().abs().max()) == 0
    assert torch.all(a[1].weight == 1) and torch.all(a[1].bias == 0)
    b = R.reinit_(copy.deepcopy(net), 5, "normal")
    assert b[0].weight.detach().numpy().std() == pytest.approx(1.0, rel=0.02)
    # deterministic in (seed, draw); the normal scheme is the Kaiming one rescaled (same stream)
    assert torch.equal(R.reinit_(copy.deepcopy(net), 5, "kaiming_normal")[0].weight, a[0].weight)
    assert torch.allclose(b[0].weight * math.sqrt(2 / 72), a[0].weight, rtol=1e-6)
    c = R.reinit_(copy.deepcopy(net), 6, "normal")
    d = R.reinit_(copy.deepcopy(net), 5, "normal", draw=1)
    assert not torch.equal(c[0].weight, b[0].weight) and not torch.equal(d[0].weight, b[0].weight)
    with pytest.raises(ValueError, match="re-initialisation"):
        R.reinit_(net, 0, "xavier")


def test_nb201_reinit_is_keyed_by_cell_and_slot():
    # same slot, same seed: two cells draw different weights; the same cell always the same
    n1, n2 = build_model(MIXED, seed=0), build_model(0, seed=0)
    a, b = R.reinit_(n1, 1, "normal"), R.reinit_(n2, 1, "normal")
    assert not torch.equal(a.stem[0].weight, b.stem[0].weight)
    assert torch.equal(a.stem[0].weight, R.reinit_(build_model(MIXED, seed=9), 1, "normal").stem[0].weight)


# ---- ZiCo ------------------------------------------------------------------------------------
def _zico_by_hand(grads_per_layer):
    total = 0.0
    for g in grads_per_layer:  # (2, n): two batches
        std = np.abs(g[0] - g[1]) / 2  # population std of two values
        keep = std != 0
        s = ((np.abs(g[0]) + np.abs(g[1])) / 2)[keep] / std[keep]
        if s.sum() != 0:
            total += np.log(s.sum())
    return total


def test_zico_two_layer_linear_closed_form():
    g = np.random.default_rng(0)
    w1, w2 = g.normal(size=(4, 5)), g.normal(size=(3, 4))
    net = nn.Sequential(nn.Linear(5, 4, bias=False), nn.Linear(4, 3, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(w1))
        net[1].weight.copy_(torch.from_numpy(w2))
    batches = [(g.normal(size=(6, 5)), g.normal(size=(6, 3))) for _ in range(2)]
    grads = [[], []]
    for xb, yb in batches:  # L = mean_b <y_b, W2 W1 x_b>: dL/dW1 = W2^T M, dL/dW2 = M W1^T
        m = yb.T @ xb / len(xb)
        grads[0].append((w2.T @ m).ravel())
        grads[1].append((m @ w1.T).ravel())
    want = _zico_by_hand([np.array(x) for x in grads])
    (x1, y1), (x2, y2) = [(torch.from_numpy(a), torch.from_numpy(b)) for a, b in batches]
    got = compute_measures(net, x1, y1, ["zico"], loss_fn=bilinear_loss, extra_batches=[(x2, y2)])
    assert got["zico"] == pytest.approx(want, rel=1e-12)
    # the check can fail: the sample std (ddof=1) the code does not use gives another value
    ddof1 = sum(np.log(((np.abs(a[0]) + np.abs(a[1])) / 2 / (np.abs(a[0] - a[1]) / np.sqrt(2))).sum())
                for a in (np.array(x) for x in grads))
    assert got["zico"] != pytest.approx(ddof1, rel=1e-6)
    # identical batches: every std is 0, every layer is skipped
    same = compute_measures(net, x1, y1, ["zico"], loss_fn=bilinear_loss, extra_batches=[(x1, y1)])
    assert same["zico"] == 0.0


def test_find_measures_takes_zicos_second_batch_from_the_loader():
    net = conv_net()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(12, 3, 8, 8, generator=g), torch.randint(0, 5, (12,), generator=g)
    loader = DataLoader(TensorDataset(x, y), batch_size=3, shuffle=False)
    got = find_measures(net, loader, ("random", 2, 5), "cpu", measure_names=["zico", "snip"])
    ref = compute_measures(net, x[:6], y[:6], ["zico", "snip"], extra_batches=[(x[6:], y[6:])])
    assert got == pytest.approx(ref, rel=1e-12)
    with pytest.raises(ValueError, match="fewer than"):
        find_measures(net, loader, ("random", 3, 5), "cpu", measure_names=["zico"])
    assert extra_batch_seed(3, 1) == 3 + 2**32 and extra_batch_seed(3, 2) == 3 + 2**33


# ---- EPE-NAS --------------------------------------------------------------------------------
def _epe_by_hand(jac, labels, n_out):
    s = {}
    for c in dict.fromkeys(labels.tolist()):
        rows = jac[labels == c]
        if len(rows) == 1:
            if n_out > 100:
                continue
            s[c] = np.log(1 + 1e-5)
            continue
        v = np.sum(np.log(np.abs(np.corrcoef(rows)) + 1e-5))
        s[c] = v / len(rows) if n_out > 100 else v
    v = np.array(list(s.values()))
    if n_out <= 100:
        return np.abs(v).sum()
    return np.abs(v[:, None] - v[None, :]).sum() / len(v)


def test_epe_nas_relu_net_closed_form():
    g = np.random.default_rng(3)
    w1, w2 = g.normal(size=(6, 5)), g.normal(size=(4, 6))
    net = nn.Sequential(nn.Linear(5, 6, bias=False), nn.ReLU(), nn.Linear(6, 4, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(w1))
        net[2].weight.copy_(torch.from_numpy(w2))
    x = g.normal(size=(9, 5))
    labels = np.array([0, 1, 1, 2, 0, 1, 3, 2, 0])  # class 3 has one sample
    # J_b = d(sum f)/dx_b = (1^T W2) diag(1[W1 x_b > 0]) W1
    jac = np.stack([(np.ones(4) @ w2) * (w1 @ xb > 0) @ w1 for xb in x])
    assert np.all(jac.std(1) > 0)  # every row varies: the correlations are defined
    got = compute_measures(net, torch.from_numpy(x), torch.from_numpy(labels), ["epe_nas"])["epe_nas"]
    assert got == pytest.approx(_epe_by_hand(jac, labels, 4), rel=1e-10)
    # the > 100 outputs form: per-class scores divided by n_c, pairwise differences
    jt = torch.from_numpy(jac)
    assert gs.epe_from_jacobian(jt, torch.from_numpy(labels), 120) == pytest.approx(
        _epe_by_hand(jac, labels, 120), rel=1e-10)
    # constant Jacobian rows within a class: the correlation is undefined, NaN is reported
    jac[labels == 1] = 1.0
    assert math.isnan(gs.epe_from_jacobian(torch.from_numpy(jac), torch.from_numpy(labels), 4))


# ---- AZ-NAS -------------------------------------------------------------------------------
def test_spectral_entropy_closed_form():
    g = np.random.default_rng(3)
    f = g.normal(size=(3, 4, 5, 5)) * np.array([1.0, 2.0, 0.5, 3.0])[None, :, None, None]
    rows = f.transpose(0, 2, 3, 1).reshape(-1, 4)
    rows = rows - rows.mean(0)
    lam = np.linalg.eigvalsh(rows.T @ rows / len(rows))
    p = lam / lam.sum()
    assert az.spectral_entropy(torch.from_numpy(f)) == pytest.approx(-(p * np.log(p + 1e-8)).sum(), rel=1e-12)
    assert math.isnan(az.spectral_entropy(torch.zeros(2, 3, 4, 4)))  # zero feature: NaN


def test_block_trainability_linear_and_downsampling_blocks():
    g = np.random.default_rng(4)
    a = g.normal(size=(3, 2))  # 1x1 conv 2 -> 3 channels: g_in = A^T g_out per position
    f_in = torch.from_numpy(g.normal(size=(2, 2, 4, 4))).requires_grad_(True)
    f_out = torch.einsum("oc,bchw->bohw", torch.from_numpy(a), f_in)
    probe = torch.from_numpy(np.where(g.random(size=(2, 3, 4, 4)) < 0.5, -1.0, 1.0))
    go = probe.numpy().transpose(0, 2, 3, 1).reshape(-1, 3)
    gi = go @ a
    s = np.linalg.svd(gi.T @ go / len(go), compute_uv=False).max()
    assert az.block_trainability(f_in, f_out, probe) == pytest.approx(2 - s - 1 / (s + 1e-6), rel=1e-12)
    # identity block: -inf
    assert az.block_trainability(f_in, f_in * 1.0, torch.ones_like(f_in)) == -math.inf
    # 2x2 average pool (downsampling): g_in = g_out / 4 on each 2x2 block, space-to-depth
    f_out = F.avg_pool2d(f_in, 2)
    probe = torch.from_numpy(np.where(g.random(size=(2, 2, 2, 2)) < 0.5, -1.0, 1.0))
    go = probe.numpy().transpose(0, 2, 3, 1).reshape(-1, 2)
    gi = np.repeat(go / 4, 4, axis=1)  # (N, 2*4): each input channel 4 times (pixel_unshuffle)
    s = np.linalg.svd(gi.T @ go / len(go), compute_uv=False).max()
    assert az.block_trainability(f_in, f_out, probe) == pytest.approx(2 - s - 1 / (s + 1e-6), rel=1e-12)


def test_az_components_on_a_staged_network():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)),
                        nn.Sequential(nn.ReLU(), nn.Conv2d(4, 8, 3, stride=2, padding=1)))
    x = torch.randn(4, 3, 16, 16)
    ctx = ProxyContext(seed=2)
    got = az.az_components(copy.deepcopy(net), x, None, None, 1, ctx)
    # by hand from the re-initialised weights and the run's noise input
    ref = R.reinit_(copy.deepcopy(net), 2, "kaiming_normal")
    f = [ref[0](R.noise_input(x, R.NOISE_AZ, 2))]
    f.append(ref[1](f[0]))
    f.append(ref[2](f[1]))
    ent = [az.spectral_entropy(t) for t in f]
    assert got["az_expressivity"] == pytest.approx(sum(ent), rel=1e-12)
    assert got["az_progressivity"] == pytest.approx(min(ent[1] - ent[0], ent[2] - ent[1]), rel=1e-12)
    assert math.isfinite(got["az_trainability"]) and got["az_trainability"] <= 0
    with pytest.raises(ValueError, match="zc_feature_modules"):
        az.az_components(nn.Module(), x, None, None, 1, ctx)


# ---- VKDNW --------------------------------------------------------------------------------
def test_categorical_cholesky():
    g = np.random.default_rng(5)
    p = g.dirichlet(np.ones(6), size=4)
    cov = np.stack([np.diag(q) - np.outer(q, q) for q in p])
    lo = vk.categorical_cholesky(torch.from_numpy(p)).numpy()
    assert np.allclose(lo @ lo.transpose(0, 2, 1), cov, atol=1e-14)
    assert np.all(np.triu(lo, 1) == 0) and np.all(np.diagonal(lo, axis1=1, axis2=2) >= 0)


def test_fisher_matrix_is_the_codes_L_J_and_decile_entropy():
    g = np.random.default_rng(6)
    jac, logits = g.normal(size=(5, 4, 7)), g.normal(size=(5, 4))
    # the code's smoothing in float16 constants: softmax * (1 - alpha) + alpha / C, alpha = f16(0.05)
    a16 = np.float16(0.05)
    keep, shift = float(np.float16(1.0) - a16), float(a16 / np.float16(4))
    assert keep == 0.9501953125 and shift != 0.0125
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True) * keep + shift
    lo = vk.categorical_cholesky(torch.from_numpy(p)).numpy()  # checked above
    a = lo @ jac
    want = np.einsum("bcp,bcq->pq", a, a) / 5
    got = vk.fisher_matrix(torch.from_numpy(jac), torch.from_numpy(logits)).numpy()
    assert np.allclose(got, want, rtol=1e-12)
    at = lo.transpose(0, 2, 1) @ jac  # the true Fisher's factor: a different matrix
    assert not np.allclose(got, np.einsum("bcp,bcq->pq", at, at) / 5, rtol=1e-3)
    lam = np.linalg.svd(want, compute_uv=False)
    q = np.quantile(lam, np.arange(1, 10) / 10)  # linear interpolation
    t = q / (np.abs(q).sum() + 1e-10)
    assert vk.decile_entropy(torch.from_numpy(want)) == pytest.approx(-(t * np.log(t + 1e-10)).sum(), rel=1e-10)
    assert vk.ALPHA == pytest.approx(0.05, abs=2e-5) and vk.ALPHA != 0.05  # float16 0.05


def test_vkdnw_jacobian_hooks_equal_the_generic_reference():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Conv2d(4, 5, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(5),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3)).double()
    vk.fresh_eval_bn_(R.reinit_(net, 0, "kaiming_normal"))
    with torch.no_grad():  # non-trivial BN affine parameters and biases
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    j_hooks, j_ref = vk.jacobian_hooks(net, x), vk.jacobian_reference(net, x)
    assert j_hooks.shape == (4, 3, len(list(net.parameters())))
    assert torch.allclose(j_hooks, j_ref, rtol=1e-10, atol=1e-12)
    assert vk.jacobian_hooks(nn.Sequential(nn.Flatten(), nn.Bilinear(4, 4, 2)), x) is None


def test_vkdnw_components_order_and_fresh_bn():
    net = build_model(MIXED, 10, seed=0)
    x = torch.randn(4, 3, 16, 16)
    got = compute_measures(net, x, torch.zeros(4, dtype=torch.long),
                           ["vkdnw", "vkdnw_dim", "vkdnw_single"], seed=1)
    assert got["vkdnw_dim"] == len(list(net.parameters()))
    assert 0 < got["vkdnw"] < math.log(9) + 1e-9
    assert got["vkdnw_single"] == pytest.approx(got["vkdnw_dim"] + got["vkdnw"] / 4, rel=1e-15)
    # eval mode with fresh statistics: BatchNorm is x / sqrt(1 + eps), whatever the batch
    bn = nn.BatchNorm2d(3, affine=False, track_running_stats=False)
    vk.fresh_eval_bn_(bn)
    t = torch.randn(2, 3, 4, 4) * 5 + 3
    assert torch.allclose(bn(t), t / math.sqrt(1 + bn.eps))


# ---- MeCo -----------------------------------------------------------------------------------
def test_meco_closed_form_two_channels():
    g = np.random.default_rng(7)
    w = g.normal(size=(2, 3))
    net = nn.Sequential(nn.Conv2d(3, 2, 1, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(w)[:, :, None, None])
    x = g.normal(size=(2, 3, 4, 4))  # only the first sample is used
    out = np.einsum("oc,chw->ohw", w, x[0]).reshape(2, -1)
    r = np.corrcoef(out)[0, 1]
    # two module calls (the Sequential and the conv) with the same output: min eig 1 - |r| each
    got = compute_measures(net, torch.from_numpy(x), torch.zeros(2, dtype=torch.long), ["meco"])
    assert got["meco"] == pytest.approx(2 * (1 - abs(r)), rel=1e-10)


def _foresight_calls(arch):
    """Hook firings on the zero-cost paper's NB201 module tree (the tree MeCo's authors scored):
    root 1, stem 4, three stage containers, per cell 1 + 5 per conv + 1 per skip/none + 2 per
    pool, two reduction blocks of 14, head 5, classifier 1."""
    from zcfast.spaces import nb201

    ops = nb201.ops_of_code(nb201.code_of(arch))
    c = sum(o in (nb201.CONV1, nb201.CONV3) for o in ops)
    sz = sum(o in (nb201.SKIP, nb201.NONE) for o in ops)
    p = sum(o == nb201.POOL for o in ops)
    return 1 + 4 + 3 + 15 * (1 + 5 * c + sz + 2 * p) + 28 + 5 + 1


@pytest.mark.parametrize("arch", [MIXED, 0, 15624])
def test_meco_counts_the_authors_module_tree_on_nb201(arch, monkeypatch):
    net = build_model(arch, 10, seed=0)
    counted = []
    real = mc.min_corr_eigenvalue
    monkeypatch.setattr(mc, "min_corr_eigenvalue", lambda out: counted.append(1) or real(out))
    x = torch.randn(2, 3, 16, 16)
    calls_here = sum(1 for _ in net.modules())  # upper bound on our own tree's calls
    v = mc.meco(copy.deepcopy(net), x, None, None, 1, ProxyContext())
    assert math.isfinite(v)
    extra = sum(mc.nb201_extra_counts(net).values())
    # the authors' tree also calls a 'top' container whose output is a flat vector per sample:
    # its rows are single numbers, so it adds exactly 0 and needs no counterpart here
    assert len(counted) + extra == _foresight_calls(arch) - 1 and len(counted) <= calls_here


# ---- SWAP -------------------------------------------------------------------------------------
def test_swap_counts_distinct_patterns_by_hand():
    codes = torch.tensor([[1, 0, 1, 1, 0], [0, 0, 1, 0, 0], [1, 0, 1, 1, 1]], dtype=torch.bool)
    assert sw.count_patterns(codes) == 4  # columns 101, 000, 111, 101, 001
    assert sw.count_patterns(torch.zeros(70, 3, dtype=torch.bool)) == 1  # the unpacked path
    assert sw.regular_factor(2.5e6, 1.5, 1.5) == pytest.approx(math.exp(-1 / 1.5), rel=1e-15)
    net = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(32, 2))
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    got = compute_measures(net.double(), x, torch.zeros(5, dtype=torch.long), ["swap", "swap_reg"], seed=4)
    counts = []
    for d in range(sw.REPEATS):
        w = R.reinit_(copy.deepcopy(net), 4, "normal", draw=d)[0].weight.detach().numpy()[:, :, 0, 0]
        pre = np.einsum("oc,bchw->bohw", w, x.numpy()).reshape(5, -1)  # bias 0 after re-init
        counts.append(len({tuple(col) for col in (pre > 0).T}))
    assert got["swap"] == pytest.approx(np.mean(counts), rel=1e-12)
    n_params = sum(p.numel() for p in net.parameters())
    assert got["swap_reg"] == pytest.approx(np.mean(counts) * sw.regular_factor(n_params), rel=1e-12)


# ---- Zen ---------------------------------------------------------------------------------------
def test_zen_closed_form_with_running_variance():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).double()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    got = compute_measures(net, x, torch.zeros(3, dtype=torch.long), ["zen"], seed=8)["zen"]
    w = R.reinit_(copy.deepcopy(net), 8, "normal")[0].weight.detach().numpy()
    x1 = R.noise_input(x.float(), R.NOISE_ZEN_A, 8).double().numpy()
    x2 = R.noise_input(x.float(), R.NOISE_ZEN_B, 8).double().numpy()

    def conv(v):  # 3x3, padding 1, bias 0, by hand
        vp = np.pad(v, ((0, 0), (0, 0), (1, 1), (1, 1)))
        return sum(np.einsum("oc,bchw->bohw", w[:, :, i, j], vp[:, :, i:i + 8, j:j + 8])
                   for i in range(3) for j in range(3))

    feats, variances = [], []
    for v in (x1, x1 + 0.01 * x2):
        a = conv(v)
        mu, var = a.mean((0, 2, 3), keepdims=True), a.var((0, 2, 3), keepdims=True)
        feats.append(np.maximum((a - mu) / np.sqrt(var + 1e-5), 0))  # train-mode BN, ReLU
        variances.append(a.var((0, 2, 3), ddof=1))  # unbiased, as the running statistics
    running = 0.81 + 0.09 * variances[0] + 0.1 * variances[1]
    want = np.log(np.abs(feats[0] - feats[1]).reshape(3, -1).sum(1).mean()) + np.log(np.sqrt(running.mean()))
    assert got == pytest.approx(want, rel=1e-9)
    # the batch variance of the paper's text (not the code's running one) would differ
    alt = np.log(np.abs(feats[0] - feats[1]).reshape(3, -1).sum(1).mean()) + np.log(np.sqrt(variances[1].mean()))
    assert got != pytest.approx(alt, rel=1e-6)


# ---- properties shared by every modern proxy -------------------------------------------------
def _snapshot(net):
    return ({k: v.clone() for k, v in net.state_dict().items()},
            {n: (None if p.grad is None else p.grad.clone()) for n, p in net.named_parameters()},
            [m.training for m in net.modules()])


def _scores(net, x, y, seed, x2, y2):
    return compute_measures(net, x, y, list(MODERN_PROXIES), seed=seed, extra_batches=[(x2, y2)])


@pytest.fixture(scope="module")
def nb201_scores():
    g = torch.Generator().manual_seed(0)
    x, x2 = torch.randn(8, 3, 16, 16, generator=g), torch.randn(8, 3, 16, 16, generator=g)
    y, y2 = torch.randint(0, 10, (8,), generator=g), torch.randint(0, 10, (8,), generator=g)
    net = build_model(MIXED, 10, seed=0).eval()
    net.stem[0].weight.grad = torch.ones_like(net.stem[0].weight)  # pre-existing state
    before = _snapshot(net)
    first = _scores(net, x, y, 0, x2, y2)
    return net, before, first, (x, y, x2, y2)


def test_caller_network_untouched(nb201_scores):
    net, before, _, _ = nb201_scores
    after = _snapshot(net)
    assert before[0].keys() == after[0].keys()
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(before[1].values(), after[1].values()))
    assert before[2] == after[2]


def test_deterministic_per_seed_and_arch(nb201_scores):
    _, _, first, (x, y, x2, y2) = nb201_scores
    again = _scores(build_model(MIXED, 10, seed=0), x, y, 0, x2, y2)
    assert again == first  # bit-identical: no global RNG
    other = _scores(build_model(MIXED, 10, seed=0), x, y, 1, x2, y2)
    reinit = ["zen", "az_expressivity", "az_trainability", "vkdnw"]
    assert all(other[p] != first[p] for p in reinit)  # the seed keys the re-initialisation
    assert first["swap"] <= 2**8  # 8 samples: at most 2^8 distinct patterns (here saturated)
    assert all(other[p] == first[p] for p in ["zico", "epe_nas", "meco", "az_complexity"])
    assert all(math.isfinite(first[p]) for p in MODERN_PROXIES)


def test_nan_and_inf_are_reported():
    class Const(nn.Module):  # the output ignores the input
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(2, 3)

        def forward(self, v):
            return self.fc(self.pool(self.conv(v) * 0.0).flatten(1))

    got = compute_measures(Const(), torch.randn(4, 3, 8, 8), torch.tensor([0, 0, 1, 1]),
                           ["zen", "epe_nas"])
    assert got["zen"] == -math.inf  # log of a zero perturbation response, not replaced
    assert math.isnan(got["epe_nas"])  # zero input Jacobian: undefined correlation
