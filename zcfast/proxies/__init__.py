"""Per-model zero-cost proxies: one registry, and the paper-compatible ``find_measures``.

>>> from zcfast.proxies import find_measures, PROXIES
>>> find_measures(net, loader, ("random", 1, 10), "cpu", measure_names=["synflow", "snip"])

These per-model functions are also the reference that the packed engine must reproduce.
The modern proxies (docs/proxies_modern.md) take a :class:`ProxyContext` (seed, extra
minibatches); ensembles (``vote``, ``az_nas``, ``ensemble:a+b``) rank cells against each other
and live in :mod:`zcfast.proxies.ensemble`, not in this per-model registry.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from zcfast import proxy_names as _names
from zcfast.proxies import az_nas as _az
from zcfast.proxies import gradstats as _gs
from zcfast.proxies import measures as _m
from zcfast.proxies import meco as _meco
from zcfast.proxies import swap as _swap
from zcfast.proxies import vkdnw as _vk
from zcfast.proxies import zen as _zen
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
    batches: int = 1  # minibatches it needs: the scoring batch + (batches - 1) extra ones
    ctx: bool = False  # fn takes a ProxyContext as its sixth argument
    group: str | None = None  # fn returns {name: value} for every proxy of its group


@dataclass(frozen=True)
class ProxyContext:
    """What the modern proxies need besides (net, x, y): the run's seed (re-initialisation,
    noise inputs and probes are drawn from counter-based streams keyed by it, see
    zcfast/proxies/_random.py) and further minibatches (ZiCo's second batch)."""

    seed: int = 0
    extra_batches: tuple = ()


PROXIES: dict = {}


def _register(name, fn, description, paper=False, bn=True, batches=1, ctx=False, group=None,
              version=1):
    PROXIES[name] = Proxy(name, fn, description, paper=paper, bn=bn, version=version,
                          batches=batches, ctx=ctx, group=group)


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
# modern proxies (docs/proxies_modern.md)
_register("zico", _gs.zico, "sum_layers log sum_w mean|g|/std(g) over 2 batches (ZiCo)",
          batches=2, ctx=True)
_register("epe_nas", _gs.epe_nas, "per-class log|corrcoef| of the input Jacobian (EPE-NAS)",
          ctx=True)
_register("zen", _zen.zen, "log E|f(x) - f(x + 0.01 e)| + sum log BN scale, N(0,1) weights (Zen-NAS)",
          ctx=True)
_register("meco", _meco.meco, "sum over module outputs of min eig corrcoef, one image (MeCo)",
          ctx=True)
for _n, _d in (("swap", "distinct ReLU patterns over 16 images, mean of 32 N(0,1) draws (SWAP)"),
               ("swap_reg", "swap * exp(-(params/1e6 - 1.5)^2 / 1.5) (regularised SWAP)")):
    _register(_n, _swap.swap_components, _d, ctx=True, group="swap")
for _n, _d in (("az_expressivity", "sum of feature spectral entropies (AZ-NAS)"),
               ("az_progressivity", "min increase of feature entropy between stages (AZ-NAS)"),
               ("az_trainability", "mean 2 - s - 1/s of block Jacobian probes (AZ-NAS)")):
    _register(_n, _az.az_components, _d, ctx=True, group="az")
_register("az_complexity", _m.flops, "AZ-NAS complexity: the flops proxy")
for _n, _d in (("vkdnw", "entropy of the Fisher eigenvalue deciles (VKDNW)"),
               ("vkdnw_dim", "number of parameter tensors (VKDNW's size term)"),
               ("vkdnw_single", "vkdnw_dim + vkdnw / 4: VKDNW_single's order")):
    _register(_n, _vk.vkdnw_components, _d, ctx=True, group="vkdnw")

PAPER_PROXIES = tuple(p for p in PROXIES if PROXIES[p].paper)
MODERN_PROXIES = _names.MODERN
if tuple(PROXIES) != _names.ALL or PAPER_PROXIES != _names.PAPER:  # the torch-free name list
    raise RuntimeError("zcfast.proxy_names lists other proxies than the registry registers: "
                       f"{sorted(set(PROXIES) ^ set(_names.ALL))} (or another order)")


def check_names(names) -> list:
    """Validate proxy names (a list, or a comma-separated string); ValueError names the bad one.
    ``None`` means the classic proxies (every registered one except :data:`MODERN_PROXIES`,
    which must be asked for by name: they re-initialise, may need extra batches, cost more)."""
    if names is None:
        return [p for p in PROXIES if p not in MODERN_PROXIES]
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = list(names)
    if not names:
        raise ValueError("no proxy requested")
    for n in names:
        if n not in PROXIES:
            from zcfast.proxies.ensemble import is_ensemble

            if is_ensemble(n):
                raise ValueError(
                    f"{n!r} is an ensemble: it ranks cells against each other, so it has no "
                    "per-model value; score its members and combine them over the compared cells "
                    "(zcfast.proxies.ensemble.evaluate, or zcfast score / correlate)")
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


def extra_batch_seed(seed: int, k: int) -> int:
    """Seed of the k-th extra minibatch (k >= 1) of a run with ``seed``: the scoring paths draw
    it as ``ImageSource.minibatch(batch_size, extra_batch_seed(seed, k))`` (the scoring batch
    itself is ``minibatch(batch_size, seed)``). Distinct from every seed below 2**32."""
    if k < 1:
        raise ValueError(f"extra minibatches are numbered from 1, got {k}")
    return int(seed) + int(k) * 2**32


def extra_batches_needed(names) -> int:
    """How many minibatches beyond the scoring batch the named proxies need (ZiCo: 1)."""
    return max([PROXIES[n].batches - 1 for n in check_names(names)] + [0])


def compute_measures(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                     measure_names=None, loss_fn=F.cross_entropy, split_data: int = 1,
                     device=None, *, seed: int = 0, extra_batches=None) -> dict:
    """Proxies of ``net`` on one batch. The caller's network (weights, grads, mode) is untouched:
    every proxy runs on its own copy. On out-of-memory, sample-independent networks retry with
    twice as many exact micro-batches; networks with train-mode BatchNorm raise instead.

    Modern proxies also use ``seed`` (their re-initialisation, noise inputs and probes come from
    counter-based streams keyed by seed and, for NB201 networks, the cell: docs/proxies_modern.md)
    and ``extra_batches``, a sequence of further ``(x, y)`` minibatches (ZiCo uses the first).
    Proxies of one group (AZ-NAS's components, VKDNW's, SWAP and its regularised form) share one
    computation per call. A network may name proxies whose definition does not carry over to it
    (a method ``zc_not_applicable()`` -> {proxy: reason}); asking for one raises ValueError with
    the reason."""
    names = check_names(measure_names)
    device = torch.device(device) if device is not None else inputs.device
    inputs, targets = inputs.to(device), targets.to(device)
    extra = tuple((bx.to(device), by.to(device)) for bx, by in (extra_batches or ()))
    for n in names:
        if PROXIES[n].batches - 1 > len(extra):
            raise ValueError(f"{n} needs {PROXIES[n].batches - 1} extra minibatch(es) "
                             f"(extra_batches), {len(extra)} given")
    refused = getattr(net, "zc_not_applicable", dict)()
    for n in names:
        if n in refused:
            raise ValueError(f"{n} does not apply to {type(net).__name__}: {refused[n]}")
    ctx = ProxyContext(int(seed), extra)
    out = {}
    groups: dict = {}
    for name in names:
        p = PROXIES[name]
        if p.group is not None and p.group in groups:
            out[name] = float(groups[p.group][name])
            continue
        split = split_data
        while True:
            net_c = _private_copy(net, p.bn, device)
            try:
                args = (net_c, inputs, targets, loss_fn, split) + ((ctx,) if p.ctx else ())
                val = p.fn(*args)
                if p.group is not None:
                    groups[p.group] = val
                    val = val[name]
                out[name] = float(val)
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
                  measure_names=None, *, split_data: int = 1, seed: int = 0) -> dict:
    """Paper-compatible entry point: ``{proxy name: float}`` for any ``nn.Module``.

    dataload_info = (dataload, info, num_classes): ``("random", n_batches, C)`` takes the first
    ``n_batches`` batches of the loader; ``("grasp", samples_per_class, C)`` a class-balanced
    batch. Proxies that need further minibatches (ZiCo) take the loader's next ``n_batches``
    batches per extra minibatch (with "grasp", the loader's first batches). ``seed`` keys the
    modern proxies' random draws. NaN/inf are returned as they are. The caller's network is
    never modified.
    """
    if not isinstance(dataload_info, (tuple, list)) or len(dataload_info) != 3:
        raise ValueError(f"dataload_info must be (dataload, info, num_classes), got {dataload_info!r}")
    dataload, info, ncls = dataload_info
    device = torch.device(device)
    n_extra = extra_batches_needed(measure_names)
    extra = []
    if dataload == "random":
        nb = int(info)
        it = iter(dataloader)  # one pass: a shuffling loader reshuffles on every iter()
        groups = []
        for g in range(1 + n_extra):
            try:
                part = [next(it) for _ in range(nb)]
            except StopIteration:
                raise ValueError(f"the loader has fewer than {nb * (g + 1)} batches "
                                 f"({nb} for the scoring batch, {nb} per extra one)") from None
            groups.append((torch.cat([b[0] for b in part]).to(device),
                           torch.cat([b[1] for b in part]).to(device)))
        (x, y), extra = groups[0], groups[1:]
    elif dataload == "grasp":
        x, y = get_some_data_grasp(dataloader, int(ncls), int(info), device)
        if n_extra:
            it = iter(dataloader)
            extra = [tuple(t.to(device) for t in next(it)) for _ in range(n_extra)]
    else:
        raise ValueError(f"unknown dataload {dataload!r}: expected 'random' or 'grasp'")
    return compute_measures(net, x, y, measure_names, loss_fn, split_data, device, seed=seed,
                            extra_batches=extra)
