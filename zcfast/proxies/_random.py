"""Deterministic random draws of the modern proxies: re-initialisation, noise inputs, probes.

Every random number a proxy uses comes from the counter-based streams of
:func:`zcfast.ops.init.fill_uniform`, keyed by ``(seed, arch, slot)``, so a score depends on
(seed, arch) only -- never on a global RNG, on other cells, or on the order of evaluation -- and a
packed engine can draw the very same numbers for the same candidate.

Stream ids (``slot`` argument of the streams; docs/proxies_modern.md, "Randomness"):

- ``arch``: the NB201 cell code (``net.code``) for NB201 networks, ``zc_arch_key()`` for a
  network that declares it (NB-NLP: its key folded to 32 bits), 0 for any other module.
- weights of the default NB201 initialisation use slots ``2*s`` and ``2*s+1`` (s < 1024,
  :func:`zcfast.spaces.nb201_model.slot_of`); everything here lives above ``1 << 24``:
- re-initialisation draw ``d`` of the layer with structural slot ``s``: ``REINIT + d*4096 + s``
  (``s`` is ``zc_slot`` when the layer has one, else the layer's position among the Conv2d /
  Linear modules in ``net.modules()`` order);
- noise inputs (shared by every cell of a run, ``arch = 0``): ``NOISE + k``, one ``k`` per use;
- random probe vectors of cell ``arch``: ``PROBE + k``.

Normal numbers come from the uniform ones by the inverse normal CDF: the stream gives
``u = m * 2**-23 - 1`` with an integer ``m`` in ``[0, 2**24)``; ``z = Phi^-1((m + 0.5) / 2**24)``
in float64 (|z| < 5.4), then scaled and rounded once to float32.
"""

from __future__ import annotations

import math

import torch
from torch import nn

REINIT = 1 << 24
NOISE = 2 << 24
PROBE = 3 << 24
_DRAW_STRIDE = 4096
_MAX_DRAWS = (1 << 24) // _DRAW_STRIDE

# noise-input ids (k of NOISE + k), one per use so that no two proxies share a draw
NOISE_AZ = 0
NOISE_VKDNW = 1
NOISE_ZEN_A = 2
NOISE_ZEN_B = 3


def _stream(n: int, arch: int, slot: int, seed: int) -> torch.Tensor:
    """(n,) float32 uniform numbers in [-1, 1) of the stream (seed, arch, slot)."""
    from zcfast.ops.init import fill_uniform

    out = torch.empty(int(n), dtype=torch.float32)
    if n == 0:
        return out
    fill_uniform(out, torch.tensor([0, int(n)], dtype=torch.int64),
                 torch.tensor([int(arch)], dtype=torch.int64),
                 torch.tensor([int(slot)], dtype=torch.int64),
                 torch.tensor([1.0], dtype=torch.float32), int(seed))
    return out


def uniform_to_normal(u: torch.Tensor) -> torch.Tensor:
    """float64 standard normal numbers from the stream's uniform numbers (see module doc)."""
    m = torch.round((u.double() + 1.0) * 8388608.0)  # exact: u has 24 significant bits
    return torch.special.ndtri((m + 0.5) / 16777216.0)


def normal(n: int, arch: int, slot: int, seed: int) -> torch.Tensor:
    """(n,) float64 standard normal numbers of the stream (seed, arch, slot)."""
    return uniform_to_normal(_stream(n, arch, slot, seed))


def rademacher(shape, arch: int, slot: int, seed: int) -> torch.Tensor:
    """float32 tensor of +-1 (probability 1/2 each: u >= 0 gives +1) of the given shape."""
    n = math.prod(shape)
    u = _stream(n, arch, slot, seed)
    return torch.where(u >= 0, 1.0, -1.0).to(torch.float32).reshape(tuple(shape))


def noise_values(n: int, k: int, seed: int) -> torch.Tensor:
    """(n,) float32 CPU values of the k-th noise input (:func:`noise_input` before its shape,
    dtype and device; the packed engine sends them with its other host tables)."""
    # rounded to float32 first: a float64 run sees the same numbers as a float32 one
    return normal(int(n), 0, NOISE + int(k), seed).to(torch.float32)


def noise_input(like: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """Standard normal tensor shaped like ``like`` (its dtype and device): the k-th noise input
    of the run. It depends on (seed, k, shape) only, so every cell sees the same noise."""
    z = noise_values(like.numel(), k, seed)
    dtype = like.dtype if like.is_floating_point() else torch.float32
    return z.to(dtype).reshape(like.shape).to(like.device)


def arch_key(net: nn.Module) -> int:
    """The ``arch`` field of the streams: what the network declares with ``zc_arch_key()`` (a
    network whose code is not a stream key, e.g. NB-NLP's handles: docs/nbnlp.md), else the
    NB201 cell code, 0 for other modules."""
    if hasattr(net, "zc_arch_key"):
        return int(net.zc_arch_key())
    code = getattr(net, "code", 0)
    return int(code) if isinstance(code, int) else 0


def layer_slots(net: nn.Module) -> list:
    """[(module, slot)] of every Conv2d and Linear, in ``net.modules()`` order."""
    out = []
    for pos, m in enumerate(x for x in net.modules() if isinstance(x, (nn.Conv2d, nn.Linear))):
        s = getattr(m, "zc_slot", None)
        s = pos if s is None else int(s)
        if not 0 <= s < _DRAW_STRIDE:
            raise ValueError(f"layer slot {s} outside [0, {_DRAW_STRIDE}): too many layers")
        out.append((m, s))
    return out


def _fan_in(m: nn.Module) -> int:
    w = m.weight
    return int(w.numel() // w.shape[0])  # C_in/groups * kh * kw, or in_features


SCHEMES = ("kaiming_normal", "normal")


@torch.no_grad()
def reinit_(net: nn.Module, seed: int, scheme: str, draw: int = 0) -> nn.Module:
    """Re-initialise ``net`` in place, as the modern proxies' authors do before scoring:

    - ``kaiming_normal`` (AZ-NAS, VKDNW): Conv2d/Linear weights ~ N(0, 2 / fan_in);
    - ``normal`` (Zen-NAS, SWAP): Conv2d/Linear weights ~ N(0, 1);
    - both: biases 0; affine BatchNorm/GroupNorm weight 1, bias 0.

    ``draw`` selects an independent re-initialisation (SWAP averages several). Deterministic in
    (seed, arch, slot, draw); see the module doc for the stream ids.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown re-initialisation {scheme!r}: expected one of {SCHEMES}")
    if not 0 <= int(draw) < _MAX_DRAWS:
        raise ValueError(f"draw {draw} outside [0, {_MAX_DRAWS})")
    arch = arch_key(net)
    for m, s in layer_slots(net):
        w = m.weight
        std = math.sqrt(2.0 / _fan_in(m)) if scheme == "kaiming_normal" else 1.0
        z = normal(w.numel(), arch, REINIT + int(draw) * _DRAW_STRIDE + s, seed)
        # float64 product rounded once to the weight's dtype: reproducible by any engine
        w.copy_((z * std).reshape(w.shape).to(w.dtype))
        if m.bias is not None:
            m.bias.zero_()
    for m in net.modules():
        if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)) and m.weight is not None:
            m.weight.fill_(1.0)
            m.bias.zero_()
    return net
