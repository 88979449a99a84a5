"""Zen-NAS's Zen-score (Lin et al., "Zen-NAS: A Zero-Shot NAS for High-Performance Image
Recognition", ICCV 2021), as NASLib ports it (naslib/predictors/utils/pruners/measures/zen.py;
the same code as idstcv/ZenNAS and AZ-NAS's NB201 copy).

Re-initialise (conv/linear weights N(0, 1), biases 0, BN weight 1, bias 0); in train mode,
forward the run's Gaussian noise input x1 and x1 + 0.01 * x2 (x2 a second noise input) and
take the feature map that enters the global average pool; then

    zen = log( mean_b sum_{c,h,w} |f(x1) - f(x1 + 0.01 x2)| ) + sum_BN log sqrt(mean_c running_var)

over every BatchNorm2d. The code reads ``running_var`` after the two forward passes, i.e. the
running variance with PyTorch's momentum 0.1 starting from 1 (0.81 + 0.09 v1 + 0.1 v2, v the
unbiased batch variances), not the batch variance the paper describes. zcfast reproduces that,
starting from fresh statistics, and computes the same quantity for BatchNorms that do not track
statistics (the code would fail on them).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from zcfast.proxies import _random

GAMMA = 1e-2  # mixup_gamma
MOMENTUM = 0.1  # PyTorch's default BatchNorm momentum, which the code's running_var reflects


def pre_gap_input(net: nn.Module) -> nn.Module:
    """The network's single AdaptiveAvgPool2d (its input is Zen's feature map)."""
    pools = [m for m in net.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    if len(pools) != 1:
        raise ValueError(f"zen needs exactly one AdaptiveAvgPool2d (the global pool), found {len(pools)}")
    return pools[0]


def zen(net, x, y, loss_fn, split, ctx) -> float:
    """Zen-score of a private network copy (module doc)."""
    if split > 1:
        raise ValueError("zen: micro-batching is not supported")
    pool = pre_gap_input(net)
    _random.reinit_(net, ctx.seed, "normal")
    net.train()
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    var = {m: torch.ones(m.num_features, dtype=torch.float64) for m in bns}  # fresh statistics
    feats: list = []

    def bn_hook(module, inp, out):
        v = inp[0].detach().double().transpose(0, 1).reshape(module.num_features, -1).var(1)
        var[module] = (1 - MOMENTUM) * var[module].to(v.device) + MOMENTUM * v

    def pool_hook(module, inp, out):
        feats.append(inp[0].detach())

    handles = [m.register_forward_hook(bn_hook) for m in bns]
    handles.append(pool.register_forward_hook(pool_hook))
    x1 = _random.noise_input(x, _random.NOISE_ZEN_A, ctx.seed)
    x2 = _random.noise_input(x, _random.NOISE_ZEN_B, ctx.seed)
    try:
        with torch.no_grad():
            net(x1)
            net(x1 + GAMMA * x2)
    finally:
        for h in handles:
            h.remove()
    if len(feats) != 2:
        raise ValueError("zen: the global pool must be called once per forward pass")
    diff = (feats[0] - feats[1]).abs().double()
    score = float(diff.reshape(diff.shape[0], -1).sum(1).mean())
    log_bn = sum(math.log(math.sqrt(float(v.mean()))) for v in var.values())
    return math.log(score) + log_bn if score > 0 else -math.inf + log_bn
