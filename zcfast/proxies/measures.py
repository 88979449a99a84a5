"""Reference (per-model) zero-cost proxies, exactly as docs/proxies.md defines them.

Each function takes a *private copy* of the network (``find_measures`` makes it), the inputs
(B, ...) and targets (B,), the loss and a micro-batch count, and returns one float. Scores are
plain sums over every Conv2d/Linear weight (no biases, no BN), except jacob_cov and nwot.
Everything runs in train mode. Micro-batching (``split``) is exact: parts are weighted by their
share of the batch, per-sample terms are summed before the batch mean, and networks whose
layers couple samples (train-mode BatchNorm) refuse to be split.

References: Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021 (grad_norm,
snip, grasp, fisher, jacob_cov, synflow, plain); Mellor et al., "Neural Architecture Search
without Training", ICML 2021 (nwot).
"""

from __future__ import annotations

import torch
from torch import nn

from zcfast.proxies._common import (
    as_float,
    check_split,
    chunks,
    continuous_input,
    counted_layers,
    nwot_units,
    warn_degenerate,
    weighted_loss,
)


def _backward_all(net, x, y, loss_fn, split, what):
    check_split(net, split, what)
    net.zero_grad(set_to_none=True)
    n = x.shape[0]
    for a, b in chunks(n, split):
        weighted_loss(net, loss_fn, x[a:b], y[a:b], n).backward()


def _sum64(values) -> float:
    # per-layer sums in the layer's dtype (as the paper), the sum over layers in float64
    total = torch.zeros((), dtype=torch.float64)
    for v in values:
        total += v.detach().double().cpu()
    return as_float(total)


def grad_norm(net, x, y, loss_fn, split=1) -> float:
    """sum over layers of ||dL/dW||_F (one norm per layer, then summed)."""
    _backward_all(net, x, y, loss_fn, split, "grad_norm")
    return _sum64(m.weight.grad.norm() for m in counted_layers(net) if m.weight.grad is not None)


def snip(net, x, y, loss_fn, split=1) -> float:
    """sum |W * dL/dW| (SNIP, Lee et al. 2019)."""
    _backward_all(net, x, y, loss_fn, split, "snip")
    return _sum64((m.weight * m.weight.grad).abs().sum()
                  for m in counted_layers(net) if m.weight.grad is not None)


def plain(net, x, y, loss_fn, split=1) -> float:
    """sum W * dL/dW (signed)."""
    _backward_all(net, x, y, loss_fn, split, "plain")
    return _sum64((m.weight * m.weight.grad).sum()
                  for m in counted_layers(net) if m.weight.grad is not None)


def grasp(net, x, y, loss_fn, split=1) -> float:
    """sum -W * (H g): g = dL/dW (detached), Hg = d/dW sum_l <g_l, dL/dW_l> (Wang et al. 2020)."""
    check_split(net, split, "grasp")
    layers = counted_layers(net)
    weights = [m.weight for m in layers]
    n = x.shape[0]
    parts = chunks(n, split)
    g = [torch.zeros_like(w) for w in weights]
    for a, b in parts:
        gp = torch.autograd.grad(weighted_loss(net, loss_fn, x[a:b], y[a:b], n), weights,
                                 allow_unused=True)
        for acc, gi in zip(g, gp):
            if gi is not None:
                acc += gi
    net.zero_grad(set_to_none=True)
    for a, b in parts:
        gf = torch.autograd.grad(weighted_loss(net, loss_fn, x[a:b], y[a:b], n), weights,
                                 create_graph=True, allow_unused=True)
        z = sum((gi.detach() * fi).sum() for gi, fi in zip(g, gf) if fi is not None)
        if isinstance(z, torch.Tensor) and z.requires_grad:
            z.backward()
    return _sum64((-m.weight * m.weight.grad).sum() for m in layers if m.weight.grad is not None)


def _channel_dims(module, act):
    """(channel dim, dims summed per sample) of a conv/linear output."""
    if isinstance(module, nn.Conv2d):
        return 1, tuple(range(2, act.dim()))
    return act.dim() - 1, tuple(range(1, act.dim() - 1))


def fisher(net, x, y, loss_fn, split=1) -> float:
    """sum over layers and output channels c of F_c * fan_in, with
    F_c = 0.5 * mean_b (sum_{h,w} a * dL/da)^2, a the layer's output (before BN) (Theis 2018).
    A layer applied several times in one forward (a recurrent cell's weights, once per time step)
    sums a * dL/da over all its applications before the square, as over the positions of a
    convolution: the applications share the channel (docs/proxies.md)."""
    check_split(net, split, "fisher")
    layers = counted_layers(net)
    acc = {m: None for m in layers}  # sum over samples of (sum over positions of a*g)^2
    part: dict = {}  # this micro-batch: per layer, sum over its applications of a*g, (B, C)

    def make_grad_hook(module, act):
        def grad_hook(gout):
            _, sdims = _channel_dims(module, act)  # g_nk ends as (B, C_out)
            g_nk = act * gout.detach()
            if sdims:
                g_nk = g_nk.sum(sdims)
            part[module] = g_nk if module not in part else part[module] + g_nk

        return grad_hook

    def fwd_hook(module, inp, out):
        if out.requires_grad:
            out.register_hook(make_grad_hook(module, out.detach()))

    handles = [m.register_forward_hook(fwd_hook) for m in layers]
    try:
        net.zero_grad(set_to_none=True)
        n = x.shape[0]
        for a, b in chunks(n, split):
            part.clear()
            weighted_loss(net, loss_fn, x[a:b], y[a:b], n).backward()
            for m, g_nk in part.items():
                s = g_nk.pow(2).sum(0)
                acc[m] = s if acc[m] is None else acc[m] + s
    finally:
        for h in handles:
            h.remove()
    n = x.shape[0]
    vals = []
    for m in layers:
        if acc[m] is None:
            continue
        per_channel = 0.5 * acc[m] / n
        vals.append(per_channel.sum() * (m.weight.numel() // m.weight.shape[0]))
    return _sum64(vals)


def jacob_cov(net, x, y, loss_fn, split=1) -> float:
    """J = d(sum of outputs)/dx per sample; C = corrcoef(J); -sum_i log(l_i+k) + 1/(l_i+k), k=1e-5
    (Mellor et al. 2020 as used by Abdelfattah et al.). Labels are not used. x is the network's
    continuous input (``continuous_input``: the embeddings of a language model)."""
    check_split(net, split, "jacob_cov")
    xin, fwd = continuous_input(net, x)
    xg = xin.detach().clone().requires_grad_(True)
    for a, b in chunks(x.shape[0], split):
        out = fwd(xg[a:b])
        if out.requires_grad:
            out.backward(torch.ones_like(out))
    if xg.grad is None:
        # no path from the input to the output (e.g. an NB201 cell of `none` edges): J = 0 and
        # its correlation is undefined, the same NaN as any constant Jacobian (docs/proxies.md)
        warn_degenerate("jacob_cov", "the network's output does not depend on its input (no "
                        "gradient path), so the Jacobian is zero and its correlation undefined")
        return float("nan")
    return jacob_cov_score(xg.grad.reshape(x.shape[0], -1))


def jacob_cov_score(jac: torch.Tensor) -> float:
    """Score of a (N, D) Jacobian; NaN when the correlation is undefined (e.g. J constant)."""
    c = torch.corrcoef(jac.detach().double())
    if not bool(torch.isfinite(c).all()):
        warn_degenerate("jacob_cov", "some sample's Jacobian row is constant (zero variance), so "
                        "the correlation matrix is undefined")
        return float("nan")
    v = torch.linalg.eigvalsh(c)
    k = 1e-5
    return as_float(-(torch.log(v + k) + 1.0 / (v + k)).sum())


def jacob_cov_scores(jac: torch.Tensor):
    """jacob_cov_score of K Jacobians at once: jac (K, N, D) -> (K,) float64 numpy array.

    The operations of torch.corrcoef per candidate (centre, x x^T / (D - 1), divide by the
    standard deviations, clip to [-1, 1]) with one batched matmul and one batched eigvalsh, so a
    packed pass costs a handful of launches and one device-to-host copy instead of K small
    decompositions with a sync each. NaN where the correlation is undefined, as above.
    """
    import numpy as np

    return jacob_cov_finish(*jacob_cov_corr(jac)).cpu().numpy().astype(np.float64)


def jacob_cov_corr(jac: torch.Tensor):
    """First half of :func:`jacob_cov_scores`, on the device: (K, N, N) float64 correlation
    matrices (a stand-in identity where undefined) and the (K,) mask of defined ones."""
    j = jac.detach().double()
    n, d = j.shape[1], j.shape[2]
    xm = j - j.mean(2, keepdim=True)
    c = torch.bmm(xm, xm.transpose(1, 2)) / (d - 1)
    std = torch.diagonal(c, dim1=1, dim2=2).sqrt()
    c = (c / std[:, :, None]) / std[:, None, :]
    c = c.clamp(-1.0, 1.0)
    finite = torch.isfinite(c).flatten(1).all(1)
    # undefined correlations get a harmless stand-in for the decomposition, then NaN
    c = torch.where(finite[:, None, None], c, torch.eye(n, dtype=c.dtype, device=c.device))
    return c, finite


def jacob_cov_finish(c: torch.Tensor, finite: torch.Tensor) -> torch.Tensor:
    """Second half of :func:`jacob_cov_scores`: the (K,) float64 scores, on the device.
    torch.linalg.eigvalsh checks its result on the host (a sync on a GPU): the packed engine
    runs this last in a chunk, just before the chunk's one device-to-host copy."""
    v = torch.linalg.eigvalsh(c)
    k = 1e-5
    s = -(torch.log(v + k) + 1.0 / (v + k)).sum(1)
    return torch.where(finite, s, torch.full_like(s, float("nan")))


def synflow(net, x, y, loss_fn, split=1) -> float:
    """sum |W * dR/dW| on the prunable copy (BN rule of the model), |params| and |buffers|,
    float64, input all ones of batch 1, R = sum of outputs (Tanaka et al. 2020). The ones stand
    at the network's continuous input (``continuous_input``: a language model's embeddings)."""
    net = net.double()
    with torch.no_grad():
        for t in list(net.parameters()) + list(net.buffers()):
            if t.is_floating_point():
                t.abs_()
    net.zero_grad(set_to_none=True)
    with torch.no_grad():
        xin, fwd = continuous_input(net, x[:1])
    ones = torch.ones((1,) + tuple(xin.shape[1:]), dtype=torch.float64, device=x.device)
    fwd(ones).sum().backward()
    return _sum64((m.weight * m.weight.grad).abs().sum()
                  for m in counted_layers(net) if m.weight.grad is not None)


def nwot(net, x, y, loss_fn, split=1) -> float:
    """NASWOT: c = 1[input > 0] at every ReLU module; K = sum c c^T + (1-c)(1-c)^T;
    score = log|det K|. Computed as K = (F + S S^T)/2 with S = 2c - 1 (identical, exact)."""
    check_split(net, split, "nwot")
    relus, declared = nwot_units(net)
    if not relus and declared:
        warn_degenerate("nwot", f"{type(net).__name__} has no units with binary codes (it names "
                        "none: e.g. a recurrent cell with only tanh and sigmoid activations)")
        return float("nan")
    if not relus:
        raise ValueError(
            f"nwot: {type(net).__name__} has no nn.ReLU module. NASWOT reads its binary codes at "
            "nn.ReLU modules (forward hooks); functional ReLUs (F.relu, torch.relu) and other "
            "activations are not seen, and an empty code set would give a meaningless -inf")
    n = x.shape[0]
    calls: list = []  # per chunk: list of +-1 code matrices (n_chunk, F) in call order
    current: list = []

    def hook(module, inp, out):
        current.append((inp[0].detach().reshape(inp[0].shape[0], -1) > 0).to(torch.int8))

    handles = [m.register_forward_hook(hook) for m in relus]
    try:
        with torch.no_grad():
            for a, b in chunks(n, split):
                current = []
                net(x[a:b])
                calls.append(current)
    finally:
        for h in handles:
            h.remove()
    if not calls[0]:
        raise ValueError(f"nwot: none of the {len(relus)} nn.ReLU modules of "
                         f"{type(net).__name__} ran in the forward pass: no codes to score")
    k = torch.zeros((n, n), dtype=torch.float64, device=x.device)
    for layer in range(len(calls[0])):
        c = torch.cat([chunk[layer] for chunk in calls]).float()
        s = 2.0 * c - 1.0
        # integer-valued float32 GEMM: exact while F < 2^24
        k += ((s @ s.T).double() + c.shape[1]) * 0.5
    v = as_float(torch.linalg.slogdet(k).logabsdet)
    if v == float("-inf"):
        warn_degenerate("nwot", "the code kernel is singular (some samples share every ReLU "
                        "code), so log|det K| = -inf")
    return v


def params(net, x, y, loss_fn, split=1) -> float:
    """Number of trainable parameters."""
    return float(sum(p.numel() for p in net.parameters() if p.requires_grad))


def flops(net, x, y, loss_fn, split=1) -> float:
    """Multiply-accumulates of the Conv2d and Linear layers for one input sample
    (biases, BN, pooling and additions not counted)."""
    total = [0]

    def hook(module, inp, out):
        per_out = module.weight.numel() // module.weight.shape[0]  # C_in/groups * kh * kw
        total[0] += (out.numel() // out.shape[0]) * per_out

    handles = [m.register_forward_hook(hook) for m in counted_layers(net)]
    try:
        with torch.no_grad():
            net(x[:1])
    finally:
        for h in handles:
            h.remove()
    return float(total[0])


def l2_norm(net, x, y, loss_fn, split=1) -> float:
    """sum over layers of ||W||_2 (Frobenius norm of each weight tensor)."""
    return _sum64(m.weight.norm() for m in counted_layers(net))
