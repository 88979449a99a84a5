"""Shared helpers of the per-model (reference) proxies."""

from __future__ import annotations

import torch
from torch import nn

_BATCH_COUPLED = (nn.modules.batchnorm._BatchNorm, nn.SyncBatchNorm)


def counted_layers(net: nn.Module) -> list:
    """Every Conv2d and Linear (docs/proxies.md: weights only, no biases, no BN)."""
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def continuous_input(net: nn.Module, x: torch.Tensor) -> tuple:
    """(e, f): the network's first continuous input for the batch ``x`` and the function of it
    that gives the outputs (docs/proxies.md, "Networks whose input is not an image"). jacob_cov
    differentiates with respect to e; synflow feeds ones of one sample's shape of e. A network
    says what they are with a method ``zc_continuous_input(x)`` (a language model: its embedded
    tokens and the network after the embedding); otherwise they are x itself and the network."""
    hook = getattr(net, "zc_continuous_input", None)
    if hook is None:
        return x, net
    return hook(x)


def nwot_units(net: nn.Module) -> tuple:
    """(modules, declared): the modules whose inputs give NASWOT's binary codes. A network that
    names them with a method ``zc_nwot_modules()`` (declared) may name none: nwot is then
    undefined for it (NaN); otherwise they are its ``nn.ReLU`` modules."""
    hook = getattr(net, "zc_nwot_modules", None)
    if hook is None:
        return [m for m in net.modules() if isinstance(m, nn.ReLU)], False
    return list(hook()), True


def couples_samples(net: nn.Module) -> bool:
    """True if some layer mixes samples of a batch (train-mode BatchNorm): then splitting the
    batch into micro-batches changes the network's function and cannot give the same value."""
    for m in net.modules():
        if isinstance(m, _BATCH_COUPLED) and (m.training or not m.track_running_stats):
            return True
    return False


def chunks(n: int, split: int) -> list:
    """Contiguous (start, end) parts of range(n), ``split`` of them (as equal as possible)."""
    if split < 1 or split > max(n, 1):
        raise ValueError(f"cannot split a batch of {n} into {split} micro-batches")
    return [(k * n // split, (k + 1) * n // split) for k in range(split)]


def check_split(net: nn.Module, split: int, what: str) -> None:
    if split > 1 and couples_samples(net):
        raise ValueError(
            f"{what}: cannot micro-batch (split_data={split}) a network with train-mode "
            "BatchNorm: batch statistics couple the samples, so the split batch would give a "
            "different value (the released code summed such parts and silently rescaled the "
            "score; zcfast refuses). Use a smaller batch or more memory."
        )


def weighted_loss(net, loss_fn, x, y, n_total: int) -> torch.Tensor:
    """Loss of a micro-batch scaled so that the parts sum to the full-batch mean loss."""
    return loss_fn(net(x), y) * (x.shape[0] / n_total)


class DegenerateScoreWarning(UserWarning):
    """A proxy is undefined for this network and was returned as NaN or inf (docs/proxies.md)."""


def warn_degenerate(proxy: str, reason: str) -> None:
    """Say why ``proxy`` came out NaN/inf (the value itself is returned unchanged)."""
    import warnings

    warnings.warn(f"{proxy}: {reason}", DegenerateScoreWarning, stacklevel=3)


def as_float(v) -> float:
    """Python float of a scalar, NaN/inf kept as they are (never replaced)."""
    if isinstance(v, torch.Tensor):
        return float(v.detach().double().cpu().item())
    return float(v)
