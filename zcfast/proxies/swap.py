"""SWAP (Peng et al., "SWAP-NAS: Sample-Wise Activation Patterns for Ultra-fast NAS", ICLR 2024;
code: pym1024/SWAP, src/metrics/swap.py and correlation.py).

For each of ``REPEATS`` independent re-initialisations (conv/linear weights N(0, 1), biases 0,
BN weight 1 and bias 0), one forward pass in train mode of the first ``SAMPLES`` images of the
scoring batch. At every ``nn.ReLU`` whose input is 4-D, the sign of its output (1 where the unit
fires, 0 elsewhere) is recorded per sample; concatenated over ReLUs this is a (samples x units)
binary matrix. SWAP of one draw = the number of distinct columns (distinct per-unit activation
patterns across the samples). ``swap`` = the mean over the draws.

``swap_reg`` multiplies each draw's count by exp(-(P - mu)^2 / sigma), P = the number of
parameters in millions (the code: thousands; units here are chosen so that mu, sigma are of
order 1 on NB201), as the paper's size regularisation. The paper's NB201 values of mu and sigma
were not available to us: ``MU``, ``SIGMA`` are zcfast's documented choice
(docs/proxies_modern.md).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from zcfast.proxies import _random

REPEATS = 32  # correlation.py --repeats
SAMPLES = 16  # correlation.py --input_samples
MU = 1.5  # millions of parameters (zcfast's choice, see the module doc)
SIGMA = 1.5


def count_patterns(codes: torch.Tensor) -> int:
    """Number of distinct columns of a (samples, units) 0/1 matrix."""
    s = codes.shape[0]
    if s <= 62:  # pack each unit's pattern into one int64: exact and fast
        w = torch.pow(2, torch.arange(s, dtype=torch.int64, device=codes.device))
        keys = (codes.to(torch.int64) * w[:, None]).sum(0)
        return int(torch.unique(keys).numel())
    return int(torch.unique(codes.T, dim=0).shape[0])


def regular_factor(n_params: float, mu: float = MU, sigma: float = SIGMA) -> float:
    """exp(-(P - mu)^2 / sigma), P = n_params / 1e6."""
    return math.exp(-((n_params / 1e6 - mu) ** 2) / sigma)


def swap_components(net, x, y, loss_fn, split, ctx) -> dict:
    """{'swap', 'swap_reg'} of a private network copy (module doc)."""
    if split > 1:
        raise ValueError("swap: micro-batching is not supported")
    relus = [m for m in net.modules() if isinstance(m, nn.ReLU)]
    xs = x[:SAMPLES]
    acts: list = []

    def hook(module, inp, out):
        if inp[0].dim() == 4:
            acts.append((out.detach() > 0).reshape(out.shape[0], -1))

    n_params = float(sum(p.numel() for p in net.parameters()))
    factor = regular_factor(n_params)
    counts = []
    handles = [m.register_forward_hook(hook) for m in relus]
    try:
        for draw in range(REPEATS):
            _random.reinit_(net, ctx.seed, "normal", draw=draw)
            acts.clear()
            with torch.no_grad():
                net.train()(xs)
            counts.append(count_patterns(torch.cat(acts, 1)) if acts else math.nan)
    finally:
        for h in handles:
            h.remove()
    mean = sum(counts) / len(counts)
    return {"swap": mean, "swap_reg": mean * factor}
