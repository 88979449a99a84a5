"""MeCo (Jiang, Wang & Bie, "MeCo: Zero-Shot NAS with One Data and Single Forward Pass via
Minimum Eigenvalue of Correlation", NeurIPS 2023; code: HamsterMimi/MeCo,
correlation/NAS_Bench_201.py ``get_score``).

One real image (the first of the scoring batch), one forward pass in train mode, network as
given. For every module call whose output is a tensor: take the first sample's output, reshape
it to (n, -1) with n its first dimension (channels for a feature map), form the Pearson
correlation matrix of the n rows, set NaN/inf entries to 0, and take its smallest eigenvalue.
MeCo = the sum of these minima over module calls, NaN/inf minima left out.

Module calls, not layers: the code hooks every module, so a container whose output is its last
child's output counts that output again. The score therefore depends on how a network is
wrapped into modules. For :class:`~zcfast.spaces.nb201_model.NB201Net` zcfast reproduces the
counts of the module tree the authors scored (the zero-cost paper's NB201 model): see
:func:`nb201_extra_counts` and docs/proxies_modern.md.
"""

from __future__ import annotations

import torch
from torch import nn


def min_corr_eigenvalue(out: torch.Tensor) -> float:
    """Smallest eigenvalue of corrcoef(first sample of ``out`` reshaped to (n, -1)), NaN/inf
    entries of the correlation set to 0 (float64; NaN when undefined)."""
    fea = out[0].detach().double()
    if fea.dim() == 0:
        return float("nan")
    fea = fea.reshape(fea.shape[0], -1)
    if fea.shape[1] < 2:  # rows of one value: every correlation is NaN, zeroed: eigenvalues 0
        return 0.0 if fea.shape[0] > 1 else float("nan")
    corr = torch.corrcoef(fea)
    if corr.dim() == 0:  # one row: a scalar correlation, no eigenvalue problem
        return float("nan")
    corr = torch.where(torch.isfinite(corr), corr, torch.zeros((), dtype=corr.dtype))
    return float(torch.linalg.eigvalsh(corr).min())


def nb201_extra_counts(net: nn.Module) -> dict:
    """{module: extra times its output is counted} so that MeCo on an NB201Net counts what it
    counts on the authors' NB201 model: that tree wraps the stem and every ReLU-Conv-BN in one
    more container (their outputs count 3 times there, 2 here) and wraps each stage's five cells
    in a Sequential (the last cell of stages 1 and 2 counts once more; stage 3's is matched by
    ``layers`` here)."""
    from zcfast.spaces.nb201_model import Cell, ReLUConvBN

    extra = {net.stem: 1}
    cells = []
    for m in net.modules():
        if isinstance(m, ReLUConvBN):
            extra[m] = 1
        elif isinstance(m, Cell):
            cells.append(m)
    for pos in (4, 9):  # last cells of stages 1 and 2
        extra[cells[pos]] = extra.get(cells[pos], 0) + 1
    return extra


def meco(net, x, y, loss_fn, split, ctx) -> float:
    """MeCo of a private network copy on ``x[:1]`` (module doc)."""
    from zcfast.spaces.nb201_model import NB201Net

    extra = nb201_extra_counts(net) if isinstance(net, NB201Net) else {}
    vals: list = []

    def hook(module, inp, out):
        if isinstance(out, torch.Tensor):
            v = min_corr_eigenvalue(out)
            vals.extend([v] * (1 + extra.get(module, 0)))

    handles = [m.register_forward_hook(hook) for m in net.modules()]
    try:
        with torch.no_grad():
            net.train()(x[:1])
    finally:
        for h in handles:
            h.remove()
    t = torch.tensor(vals, dtype=torch.float64)
    return float(t[torch.isfinite(t)].sum())
