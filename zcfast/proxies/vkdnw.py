"""VKDNW (Tybl & Neumann, "Training-free Neural Architecture Search through Variance of
Knowledge of Deep Network Weights", CVPR 2025; code: ondratybl/VKDNW,
NB201/ZeroShotProxy/compute_vkdnw_score.py, NB201 settings of its tss_general_.py).

The score is the entropy of the deciles of the eigenvalues of an empirical Fisher information
matrix restricted to one scalar per parameter tensor:

1. re-initialise (Kaiming normal, fan-in; BN weight 1, bias 0) and evaluate in **eval mode with
   fresh BatchNorm statistics** (mean 0, variance 1: BN acts as x / sqrt(1 + eps)), as the
   authors' ``model.eval()`` on a freshly built network does;
2. theta = the first element of each of the first 128 parameter tensors (``named_parameters``
   order); J_b = d logits_b / d theta (C x P) for each sample b of the run's Gaussian noise input;
3. p = 0.95 softmax(logits) + 0.05 / C, with the code's float16 constants (0.9501953125 and
   0.05/C rounded to float16: p sums to about 1.0002); L_b = the lower Cholesky factor of
   diag(p) - p p^T (Tanabe & Sagae 1992), computed from p as the code does (q_{C-1} forced to
   0); A_b = L_b J_b (**the code's order**: the Fisher information would be
   (L_b^T J_b)^T (L_b^T J_b));
4. F = mean_b A_b^T A_b (P x P); lambda = its singular values; q = the 10%..90% quantiles of
   lambda (linear interpolation); t = q / (|q|_1 + 1e-10); ``vkdnw`` = -sum t log(t + 1e-10).

``vkdnw_dim`` is the number of parameter tensors (the paper's "number of trainable layers"),
and ``vkdnw_single`` orders cells by (vkdnw_dim, vkdnw) lexicographically, as the authors'
dense rank of that tuple does: vkdnw_single = vkdnw_dim + vkdnw / 4 (vkdnw <= ln 9 < 4).
The aggregate ``vkdnw_agg`` is a rank ensemble (:mod:`zcfast.proxies.ensemble`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from zcfast.proxies import _random

MAX_TENSORS = 128  # the code's params_grad_len: tensors taken from the start of the network
# The code smooths p = softmax * (1 - alpha) + alpha / C with alpha a float16 tensor, so both
# constants are float16 results: 1 - alpha = 0.9501953125 and alpha / C rounded to float16; the
# smoothed p sums to about 1.0002, and the last q is then forced to 0.
_ALPHA16 = torch.tensor(0.05, dtype=torch.float16)
ALPHA = float(_ALPHA16)  # 0.0499877...
KEEP = float(1 - _ALPHA16)  # 0.9501953125


def smoothing_shift(num_classes: int) -> float:
    """alpha / C as the code computes it (a float16 division)."""
    return float(_ALPHA16 / int(num_classes))
ENTROPY_SCALE = 4.0  # > ln 9 >= vkdnw: vkdnw_single orders by dim first, then by vkdnw


def fresh_eval_bn_(net: nn.Module) -> nn.Module:
    """Eval mode, every BatchNorm normalising with fresh running statistics (mean 0, var 1),
    whether or not it tracks statistics."""
    ref = next(net.parameters(), None)
    dtype = ref.dtype if ref is not None else torch.float32
    dev = ref.device if ref is not None else None
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            shape = (m.num_features,)
            m.running_mean = torch.zeros(shape, dtype=dtype, device=dev)
            m.running_var = torch.ones(shape, dtype=dtype, device=dev)
            m.num_batches_tracked = torch.zeros((), dtype=torch.long, device=dev)
            m.track_running_stats = True
    return net.eval()


def categorical_cholesky(prob: torch.Tensor) -> torch.Tensor:
    """(B, C) probabilities -> (B, C, C) lower-triangular L with L L^T = diag(p) - p p^T.

    q_j = 1 - sum_{k<=j} p_k (q_{C-1} = 0), d_j = sqrt(p_j q_j / q_{j-1}) (q_{-1} = 1),
    L[i, j] = d_j for i = j, -p_i d_j / q_j for i > j (0 when q_j = 0), 0 above the diagonal.
    """
    p = prob.double()
    q = 1.0 - torch.cumsum(p, 1)
    q[:, -1] = 0.0
    q_prev = torch.cat([torch.ones_like(q[:, :1]), q[:, :-1]], 1)
    d = torch.sqrt(torch.clamp(p * q / q_prev, min=0.0))
    ratio = torch.where(q > 0, d / torch.where(q > 0, q, 1.0), 0.0)  # d_j / q_j
    low = -p[:, :, None] * ratio[:, None, :]
    c = p.shape[1]
    strict = torch.tril(torch.ones(c, c, dtype=torch.bool, device=p.device), -1)
    return torch.where(strict, low, 0.0) + torch.diag_embed(d)


def selected_parameters(net: nn.Module, max_tensors: int = MAX_TENSORS) -> list:
    """[(name, tensor)] of the parameters whose first element enters the Fisher matrix."""
    return list(net.named_parameters())[:max_tensors]


def jacobian_reference(net: nn.Module, x: torch.Tensor, max_tensors: int = MAX_TENSORS):
    """(B, C, P) d logits_b / d theta_k, theta_k = element 0 of the k-th selected tensor, each
    sample forwarded alone (torch.func). Generic: any module, any parameter."""
    from torch.func import functional_call, jacrev, vmap

    sel = selected_parameters(net, max_tensors)
    base = {n: p.detach() for n, p in net.named_parameters()}
    buffers = {n: b.detach() for n, b in net.named_buffers()}
    theta0 = torch.stack([p.detach().reshape(-1)[0] for _, p in sel])

    def logits(theta, xb):
        params = dict(base)
        for k, (n, _) in enumerate(sel):
            flat = base[n].reshape(-1)
            params[n] = torch.cat([theta[k : k + 1], flat[1:]]).reshape(base[n].shape)
        return functional_call(net, (params, buffers), (xb.unsqueeze(0),)).squeeze(0)

    return vmap(jacrev(logits), in_dims=(None, 0), chunk_size=8)(theta0, x)


def _element0_grad(module: nn.Module, pname: str, inp: torch.Tensor, gout: torch.Tensor):
    """Per-sample gradient (B,) of element 0 of ``module.<pname>`` from the module's input and
    the gradient at its output (Conv2d, Linear, eval-mode BatchNorm)."""
    g0 = gout[:, 0]
    if pname == "bias":
        return g0.reshape(g0.shape[0], -1).sum(1)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):  # eval: xhat = (x - m)/sqrt(v + eps)
        xhat = (inp[:, 0] - module.running_mean[0]) / torch.sqrt(module.running_var[0] + module.eps)
        return (g0 * xhat).reshape(g0.shape[0], -1).sum(1)
    if isinstance(module, nn.Linear):
        return g0 * inp[..., 0] if g0.dim() == 1 else (g0 * inp[..., 0]).reshape(g0.shape[0], -1).sum(1)
    # Conv2d, weight[0, 0, 0, 0]: output pixel (h, w) reads input pixel (h*s - p, w*s - p)
    sh, sw = module.stride
    ph, pw = module.padding
    ho, wo = g0.shape[1], g0.shape[2]
    xin = torch.nn.functional.pad(inp[:, 0], (pw, pw, ph, ph))
    win = xin[:, 0 : sh * (ho - 1) + 1 : sh, 0 : sw * (wo - 1) + 1 : sw]
    return (g0 * win).reshape(g0.shape[0], -1).sum(1)


def _hook_supported(module: nn.Module, pname: str) -> bool:
    if isinstance(module, nn.Conv2d):
        return (module.groups == 1 and module.dilation == (1, 1) and module.padding_mode == "zeros"
                and isinstance(module.padding, tuple))
    return isinstance(module, (nn.Linear, nn.modules.batchnorm._BatchNorm))


def jacobian_hooks(net: nn.Module, x: torch.Tensor, max_tensors: int = MAX_TENSORS):
    """Same as :func:`jacobian_reference` for networks whose selected parameters all belong to
    Conv2d (groups 1, no dilation), Linear or eval-mode BatchNorm layers, each called once and
    with no layer mixing samples: C backward passes over the whole batch (cotangent e_c), the
    per-sample gradient of each element 0 taken from the layer's input and output gradient.
    Returns None when the network is not of that kind."""
    owner = {}
    for m in net.modules():
        for pname, p in m.named_parameters(recurse=False):
            owner[id(p)] = (m, pname)
    sel = selected_parameters(net, max_tensors)
    pairs = [owner[id(p)] for _, p in sel]
    if not all(_hook_supported(m, pn) for m, pn in pairs):
        return None
    mods = list(dict.fromkeys(m for m, _ in pairs))
    saved: dict = {}
    calls: dict = {}

    def fwd(module, inp, out):
        calls[module] = calls.get(module, 0) + 1
        out.retain_grad()
        saved[module] = (inp[0].detach(), out)

    handles = [m.register_forward_hook(fwd) for m in mods]
    try:
        z = net(x)
    finally:
        for h in handles:
            h.remove()
    if any(calls.get(m, 0) != 1 for m in mods):
        return None
    b, c = z.shape
    jac = torch.empty((b, c, len(pairs)), dtype=z.dtype, device=z.device)
    for ci in range(c):
        for m in mods:
            saved[m][1].grad = None
        cot = torch.zeros_like(z)
        cot[:, ci] = 1.0
        z.backward(cot, retain_graph=ci < c - 1)
        for k, (m, pn) in enumerate(pairs):
            inp, out = saved[m]
            g = out.grad if out.grad is not None else torch.zeros_like(out)
            jac[:, ci, k] = _element0_grad(m, pn, inp, g)
    return jac


def fisher_matrix(jac: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """F = mean_b (L_b J_b)^T (L_b J_b) in float64, p = KEEP softmax + alpha/C (module doc)."""
    prob = torch.softmax(logits.double(), 1) * KEEP + smoothing_shift(logits.shape[1])
    a = categorical_cholesky(prob) @ jac.double()  # (B, C, P): the code's L J
    return torch.einsum("bcp,bcq->pq", a, a) / a.shape[0]


def decile_entropy_t(fisher: torch.Tensor) -> torch.Tensor:
    """:func:`decile_entropy` as a 0-d float64 tensor on the Fisher matrix's device."""
    lam = torch.linalg.svdvals(fisher.double())
    q = torch.quantile(lam, torch.linspace(0.1, 0.9, 9, dtype=lam.dtype, device=lam.device))
    t = q / (q.abs().sum() + 1e-10)
    return -(t * torch.log(t + 1e-10)).sum()


def decile_entropy(fisher: torch.Tensor) -> float:
    """Entropy of the 10%..90% quantiles of the singular values of F, normalised to sum 1."""
    return float(decile_entropy_t(fisher))


def vkdnw_components(net, x, y, loss_fn, split, ctx) -> dict:
    """{'vkdnw', 'vkdnw_dim', 'vkdnw_single'} of a private network copy (module doc)."""
    if split > 1:
        raise ValueError("vkdnw: micro-batching is not supported")
    dim = float(len(list(net.parameters())))
    if "vkdnw" in getattr(net, "zc_not_applicable", dict)():
        # the Fisher matrix is out of reach on this network (e.g. a 33,278-word language model);
        # the size term alone is still defined, and vkdnw, vkdnw_single are refused before this
        return {"vkdnw_dim": dim}
    _random.reinit_(net, ctx.seed, "kaiming_normal")
    fresh_eval_bn_(net)
    for p in net.parameters():
        p.requires_grad_(True)
    xn = _random.noise_input(x, _random.NOISE_VKDNW, ctx.seed)
    jac = jacobian_hooks(net, xn)
    if jac is None:
        jac = jacobian_reference(net, xn)
    with torch.no_grad():
        logits = net(xn)
    ent = decile_entropy(fisher_matrix(jac.detach(), logits))
    single = dim + ent / ENTROPY_SCALE if math.isfinite(ent) else math.nan
    return {"vkdnw": ent, "vkdnw_dim": dim, "vkdnw_single": single}
