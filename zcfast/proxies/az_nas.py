"""AZ-NAS's per-network components (Lee & Ham, "AZ-NAS: Assembling Zero-Cost Proxies for Network
Architecture Search", CVPR 2024; code: cvlab-yonsei/AZ-NAS, NB201/ZeroShotProxy/
compute_az_nas_score.py). The aggregate ``az_nas`` ranks these over the compared cells and lives
in :mod:`zcfast.proxies.ensemble`; the complexity component is ``flops``.

One pass shared by the three components: the network is re-initialised (Kaiming normal, fan-in),
fed the run's Gaussian noise input in train mode, and the feature maps F_0..F_L at its stage
boundaries are recorded (NB201: the stem output and the output of each of the 17 cells/blocks).

- expressivity: sum_l H(F_l), H = entropy of the normalised eigenvalues of the channel covariance
  of F_l (rows = all batch x spatial positions);
- progressivity: min_l H(F_l) - H(F_{l-1});
- trainability: mean over blocks l of 2 - s - 1/(s + 1e-6), s = largest singular value of
  E[g_in g_out^T], g_out a +-1 probe at F_l and g_in its vector-Jacobian product at F_{l-1}
  (space-to-depth when the block downsamples); -inf for a block that is the identity.
A network whose features are sequences of tokens (B, T, C), channels last, says so with
``zc_feature_channels_last = True`` (the reading of the authors' AutoFormer port: rows = batch x
tokens); a network whose first continuous input is not its argument (a language model's
embeddings) declares ``zc_continuous_input(x)`` and the noise replaces that input.
The authors turn a NaN component into -inf; zcfast reports NaN as NaN (never replaced) and the
``az_nas`` ensemble ranks NaN as -inf, which gives the authors' aggregate. Details:
docs/proxies_modern.md.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zcfast.proxies import _random


def feature_modules(net: nn.Module) -> list:
    """The modules whose outputs are the stage features F_0..F_L, in forward order.

    A network may declare them with ``zc_feature_modules()`` (NB201 does: stem, then each cell
    and reduction block); an ``nn.Sequential`` uses its children.
    """
    if hasattr(net, "zc_feature_modules"):
        mods = list(net.zc_feature_modules())
    elif isinstance(net, nn.Sequential):
        mods = list(net.children())
    else:
        raise ValueError(
            f"{type(net).__name__} does not declare its stage modules: AZ-NAS needs the feature "
            "maps at stage boundaries; define zc_feature_modules() returning them in order"
        )
    if len(mods) < 2:
        raise ValueError("AZ-NAS needs at least two stage features")
    return mods


def _rows(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """(N, C) view of a feature: channels (dim 1, or the last dim) as columns, every sample and
    position a row."""
    return t.reshape(-1, t.shape[-1]) if channels_last else t.movedim(1, -1).reshape(-1, t.shape[1])


def spectral_entropy(feat: torch.Tensor, channels_last: bool = False) -> float:
    """Entropy of the normalised eigenvalues of the channel covariance of a (B, C, H, W) or
    (B, C) feature (``channels_last``: a (B, T, C) one): rows = samples x positions, centred,
    Sigma = X^T X / N (float64); p = lambda / sum(lambda); H = -sum p log(p + 1e-8). NaN if
    Sigma is zero or not finite (a feature that overflowed, e.g. a recurrent cell over many steps)."""
    x = _rows(feat.detach().double(), channels_last)
    x = x - x.mean(0, keepdim=True)
    sigma = x.T @ x / x.shape[0]
    if not bool(torch.isfinite(sigma).all()):
        return math.nan
    lam = torch.linalg.eigvalsh(sigma)
    p = lam / lam.sum()
    return float(-(p * torch.log(p + 1e-8)).sum())


def block_trainability(f_in: torch.Tensor, f_out: torch.Tensor, probe: torch.Tensor,
                       channels_last: bool = False) -> float:
    """2 - s - 1/(s + 1e-6) of one block, s = top singular value of g_in^T g_out / N, with
    g_out = probe (+-1, shaped like f_out), g_in = vjp of the block at f_in; -inf if the block
    passes the probe through unchanged (identity); NaN if g_in^T g_out is not finite."""
    (g_in,) = torch.autograd.grad(f_out, f_in, grad_outputs=probe, retain_graph=True)
    if g_in.shape == probe.shape and bool(torch.equal(g_in, probe)):
        return -math.inf
    if not channels_last and g_in.dim() == 4 and g_in.shape[2:] != probe.shape[2:]:
        g_in = F.pixel_unshuffle(g_in, g_in.shape[2] // probe.shape[2])
    go = _rows(probe, channels_last).double()
    gi = _rows(g_in, channels_last).double()
    m = gi.T @ go / go.shape[0]
    if not bool(torch.isfinite(m).all()):  # an overflowed block: reported as NaN, never replaced
        return math.nan
    s = float(torch.linalg.svdvals(m).max())
    return 2.0 - s - 1.0 / (s + 1e-6)


def az_components(net, x, y, loss_fn, split, ctx) -> dict:
    """{'az_expressivity', 'az_progressivity', 'az_trainability'} of a private network copy."""
    if split > 1:
        raise ValueError("AZ-NAS: micro-batching is not supported (one pass over the batch)")
    mods = feature_modules(net)
    last = bool(getattr(net, "zc_feature_channels_last", False))
    _random.reinit_(net, ctx.seed, "kaiming_normal")
    net.train()
    if hasattr(net, "zc_continuous_input"):  # e.g. a language model: noise replaces embeddings
        like, forward = net.zc_continuous_input(x)
        noise = _random.noise_input(like, _random.NOISE_AZ, ctx.seed).requires_grad_(True)
    else:
        forward, noise = net, _random.noise_input(x, _random.NOISE_AZ, ctx.seed)
    feats: dict = {}

    def hook(module, inp, out):
        feats.setdefault(module, out)

    handles = [m.register_forward_hook(hook) for m in mods]
    try:
        forward(noise)
    finally:
        for h in handles:
            h.remove()
    missing = [i for i, m in enumerate(mods) if m not in feats]
    if missing:
        raise ValueError(f"AZ-NAS: stage modules {missing} were not called in the forward pass")
    fs = [feats[m] for m in mods]
    bad = [i for i, f in enumerate(fs) if not bool(torch.isfinite(f).all())]
    if bad:
        from zcfast.proxies._common import warn_degenerate

        warn_degenerate("az_nas", f"stage features {bad} are not finite (the network overflows "
                        "under its Kaiming-normal re-initialisation); the components that read "
                        "them are NaN")
    ent = [spectral_entropy(f, last) for f in fs]
    expressivity = sum(ent)
    diffs = [b - a for a, b in zip(ent[:-1], ent[1:])]
    progressivity = math.nan if any(map(math.isnan, diffs)) else min(diffs)  # NaN propagates
    arch = _random.arch_key(net)
    scores = []
    for i in reversed(range(1, len(fs))):  # the authors' order: last block first
        probe = _random.rademacher(fs[i].shape, arch, _random.PROBE + i, ctx.seed).to(fs[i].device)
        scores.append(block_trainability(fs[i - 1], fs[i], probe, last))
    trainability = sum(scores) / len(scores)
    return {"az_expressivity": float(expressivity), "az_progressivity": float(progressivity),
            "az_trainability": float(trainability)}
