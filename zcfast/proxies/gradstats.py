"""Proxies built from gradients of the untrained network on real labelled batches:
ZiCo (Li et al., ICLR 2023) and EPE-NAS (Lopes et al., ICANN 2021).

Both run on the network as given (no re-initialisation), in train mode, with the loss and labels
of the real minibatch. Definitions and the authors' quirks: docs/proxies_modern.md.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from zcfast.proxies._common import check_split, counted_layers


def zico_from_grads(grads) -> float:
    """ZiCo of per-batch weight gradients.

    grads: one list per layer of the gradient tensors of that layer's weight, one per batch
    (at least 2). Per layer: elements whose gradient has zero standard deviation across the
    batches are dropped; s = sum over the rest of mean_k |g_k| / std_k g_k (population std);
    the layer adds log(s) unless s == 0. Returns the sum over layers (0.0 if none counts).
    """
    total = 0.0
    for per_batch in grads:
        g = torch.stack([t.detach().double().reshape(-1) for t in per_batch])  # (K, n)
        if g.shape[0] < 2:
            raise ValueError(f"ZiCo needs gradients of at least 2 batches, got {g.shape[0]}")
        std = g.std(0, unbiased=False)
        keep = std != 0
        s = float((g.abs().mean(0)[keep] / std[keep]).sum())
        if s != 0.0:
            total += math.log(s)
    return total


def zico(net, x, y, loss_fn, split, ctx) -> float:
    """ZiCo: sum over Conv2d/Linear layers of log( sum_w mean_k|g_w| / std_k(g_w) ) over the
    batches k = the scoring batch and ``ctx.extra_batches[0]`` (two batches, as the authors)."""
    if split > 1:
        raise ValueError("zico: micro-batching is not supported (each batch is one step)")
    batches = [(x, y), *ctx.extra_batches[:1]]
    if len(batches) < 2:
        raise ValueError("zico needs a second minibatch (extra_batches); none was given")
    layers = counted_layers(net)
    grads = [[] for _ in layers]
    for bx, by in batches:
        net.zero_grad(set_to_none=True)
        loss_fn(net(bx.to(x.device)), by.to(x.device)).backward()
        for acc, m in zip(grads, layers):
            if m.weight.grad is not None:  # a layer with no gradient is skipped (AZ-NAS's port)
                acc.append(m.weight.grad.detach().clone())
    return zico_from_grads([g for g in grads if len(g) == len(batches)])


def epe_from_jacobian(jac: torch.Tensor, labels: torch.Tensor, num_outputs: int) -> float:
    """EPE-NAS score of a (B, D) input Jacobian and the batch's labels.

    Per class c present in the batch (rows of that class, in batch order): C_c = corrcoef of the
    rows (n_c x n_c), s_c = sum log(|C_c| + 1e-5). With ``num_outputs`` <= 100: score =
    sum_c |s_c|. Otherwise s_c is divided by n_c and score = sum_{c,c'} |s_c - s_c'| / #classes.
    A class with one sample contributes log(1 + 1e-5) in the first form and is skipped in the
    second (the authors' code raises on it and skips). NaN propagates (constant rows).
    """
    j = jac.detach().double().cpu().numpy()
    lab = labels.detach().cpu().numpy()
    per_class = {}
    for c in dict.fromkeys(lab.tolist()):  # classes in order of first appearance
        rows = j[lab == c]
        if rows.shape[0] == 1:
            if num_outputs > 100:
                continue
            per_class[c] = math.log(1.0 + 1e-5)
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.corrcoef(rows)
            s = float(np.sum(np.log(np.abs(corr) + 1e-5)))
        if num_outputs > 100:
            s /= rows.shape[0]
        per_class[c] = s
    vals = np.array(list(per_class.values()), dtype=np.float64)
    if num_outputs <= 100:
        return float(np.abs(vals).sum())
    if len(vals) == 0:
        return 0.0
    return float(np.abs(vals[:, None] - vals[None, :]).sum() / len(vals))


def epe_nas(net, x, y, loss_fn, split, ctx) -> float:
    """EPE-NAS: J = d(sum of outputs)/dx per sample (the jacob_cov Jacobian), scored per class
    with :func:`epe_from_jacobian`; the number of outputs decides between its two forms."""
    check_split(net, split, "epe_nas")
    if split > 1:
        raise ValueError("epe_nas: micro-batching is not supported")
    xg = x.detach().clone().requires_grad_(True)
    out = net(xg)
    if not isinstance(out, torch.Tensor):
        raise TypeError("epe_nas needs a network whose output is one tensor")
    out.backward(torch.ones_like(out))
    return epe_from_jacobian(xg.grad.reshape(x.shape[0], -1), y, int(out.shape[-1]))

