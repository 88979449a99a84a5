"""Per-model zero-cost proxies: one registry, and the paper-compatible ``find_measures``.

>>> from zcfast.proxies import find_measures, PROXIES
>>> find_measures(net, loader, ("random", 1, 10), "cpu", measure_names=["synflow", "snip"])

These per-model functions are also the reference that the packed engine must reproduce.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from zcfast.proxies import measures as _m
from zcfast.proxies._common import couples_samples


@dataclass(frozen=True)
class Proxy:
    name: str
    fn: Callable
    description: str
    paper: bool = False  # one of the six proxies of Abdelfattah et al. (2021), Table 1
    bn: bool = True  # False: scored on the model's BN-free prunable copy (synflow)
    # version of the definition: raise it whenever a change alters the values the proxy gives,
    # so that cached scores of the old definition are never mixed with new ones
    version: int = 1


PROXIES: dict = {}


def _register(name, fn, description, paper=False, bn=True):
    PROXIES[name] = Proxy(name, fn, description, paper, bn)


_register("grad_norm", _m.grad_norm, "sum over layers of ||dL/dW||", paper=True)
_register("snip", _m.snip, "sum |W * dL/dW|", paper=True)
_register("plain", _m.plain, "sum W * dL/dW")
_register("grasp", _m.grasp, "sum -W * (H dL/dW)", paper=True)
_register("fisher", _m.fisher, "sum_c 0.5 mean_b (sum_hw a dL/da)^2 * fan_in", paper=True)
_register("jacob_cov", _m.jacob_cov, "-sum log(l+k) + 1/(l+k) of corrcoef(dy/dx)", paper=True)
_register("synflow", _m.synflow, "sum |W * dR/dW|, |params|, ones input, float64", paper=True, bn=False)
_register("nwot", _m.nwot, "log|det K|, K the Hamming kernel of ReLU codes (NASWOT)")
_register("params", _m.params, "number of parameters")
_register("flops", _m.flops, "conv/linear multiply-accumulates per sample")
_register("l2_norm", _m.l2_norm, "sum over layers of ||W||")

PAPER_PROXIES = tuple(p for p in PROXIES if PROXIES[p].paper)


def check_names(names) -> list:
    """Validate proxy names (a list, or a comma-separated string); ValueError names the bad one."""
    if names is None:
        return list(PROXIES)
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = list(names)
    if not names:
        raise ValueError("no proxy requested")
    for n in names:
        if n not in PROXIES:
            raise ValueError(f"unknown proxy {n!r}: available are {', '.join(PROXIES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate proxy names in {names}")
    return names


def _private_copy(net: nn.Module, bn: bool, device) -> nn.Module:
    if not bn and hasattr(net, "get_prunable_copy"):
        c = net.get_prunable_copy(bn=False)
    else:
        c = copy.deepcopy(net)
        if not bn:
            _strip_bn(c)
    c = c.to(device).train()
    c.zero_grad(set_to_none=True)
    for p in c.parameters():
        p.requires_grad_(True)
    return c


def _strip_bn(net: nn.Module) -> None:
    for name, child in net.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(net, name, nn.Identity())
        else:
            _strip_bn(child)


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


def compute_measures(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                     measure_names=None, loss_fn=F.cross_entropy, split_data: int = 1,
                     device=None) -> dict:
    """Proxies of ``net`` on one batch. The caller's network (weights, grads, mode) is untouched:
    every proxy runs on its own copy. On out-of-memory, sample-independent networks retry with
    twice as many exact micro-batches; networks with train-mode BatchNorm raise instead."""
    names = check_names(measure_names)
    device = torch.device(device) if device is not None else inputs.device
    inputs, targets = inputs.to(device), targets.to(device)
    out = {}
    for name in names:
        p = PROXIES[name]
        split = split_data
        while True:
            net_c = _private_copy(net, p.bn, device)
            try:
                out[name] = float(p.fn(net_c, inputs, targets, loss_fn, split))
                break
            except Exception as e:
                if not _is_oom(e):
                    raise
                # the proxies run on the train-mode copy: judge the coupling there, not on the
                # caller's network (an eval-mode BN network is coupled once in train mode)
                coupled = couples_samples(net_c)
                del net_c
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                if coupled or split * 2 > inputs.shape[0]:
                    raise RuntimeError(
                        f"out of memory computing {name} with the batch in {split} part(s); "
                        + ("the network has train-mode BatchNorm, so it cannot be micro-batched "
                           "without changing the score" if coupled
                           else "cannot split further")
                    ) from e
                split *= 2
    return out


def get_some_data(loader, num_batches: int, device):
    xs, ys = [], []
    it = iter(loader)
    for _ in range(num_batches):
        x, y = next(it)
        xs.append(x)
        ys.append(y)
    return torch.cat(xs).to(device), torch.cat(ys).to(device)


def get_some_data_grasp(loader, num_classes: int, samples_per_class: int, device):
    """Class-balanced batch (GraSP's sampler): ``samples_per_class`` of each class."""
    bins = {c: [] for c in range(num_classes)}
    for x, y in loader:
        for xi, yi in zip(x, y):
            c = int(yi)
            if c in bins and len(bins[c]) < samples_per_class:
                bins[c].append(xi)
        if all(len(v) == samples_per_class for v in bins.values()):
            break
    short = [c for c, v in bins.items() if len(v) < samples_per_class]
    if short:
        raise ValueError(f"the loader ran out before {samples_per_class} samples of classes {short[:5]}")
    x = torch.stack([xi for c in range(num_classes) for xi in bins[c]])
    y = torch.tensor([c for c in range(num_classes) for _ in range(samples_per_class)])
    return x.to(device), y.to(device)


def find_measures(net: nn.Module, dataloader, dataload_info, device, loss_fn=F.cross_entropy,
                  measure_names=None, *, split_data: int = 1) -> dict:
    """Paper-compatible entry point: ``{proxy name: float}`` for any ``nn.Module``.

    dataload_info = (dataload, info, num_classes): ``("random", n_batches, C)`` takes the first
    ``n_batches`` batches of the loader; ``("grasp", samples_per_class, C)`` a class-balanced
    batch. NaN/inf are returned as they are. The caller's network is never modified.
    """
    if not isinstance(dataload_info, (tuple, list)) or len(dataload_info) != 3:
        raise ValueError(f"dataload_info must be (dataload, info, num_classes), got {dataload_info!r}")
    dataload, info, ncls = dataload_info
    device = torch.device(device)
    if dataload == "random":
        x, y = get_some_data(dataloader, int(info), device)
    elif dataload == "grasp":
        x, y = get_some_data_grasp(dataloader, int(ncls), int(info), device)
    else:
        raise ValueError(f"unknown dataload {dataload!r}: expected 'random' or 'grasp'")
    return compute_measures(net, x, y, measure_names, loss_fn, split_data, device)
