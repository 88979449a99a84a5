"""The NAS-Bench-201 network, one model per cell (docs/nb201.md).

Two flavours:
- ``"paper"`` (default): as in the zero-cost paper's code -- cell BatchNorm ``affine=False,
  track_running_stats=False`` and cell convolutions *with* a bias.
- ``"official"``: as in the benchmark's trained networks -- affine, tracked cell BatchNorm and
  no conv bias.
Only the ops the cell chooses are instantiated (the paper's code instantiates all five per edge
and masks the unused ones: same scores, larger parameter counts).

Weights: :func:`init_weights` fills every conv/linear weight and bias with PyTorch's default
distribution U(-1/sqrt(fan_in), 1/sqrt(fan_in)) drawn from counter-based streams keyed by
(seed, cell code, parameter slot) -- the same numbers the packed engine (:mod:`zcfast.batched`)
gives the same candidate. Slots are structural positions (:func:`slot_of`), so they never
depend on which other candidates exist.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from zcfast.spaces import nb201

FLAVOURS = ("paper", "official")
INIT_CHANNELS = 16  # channels of the first stage; the stages have C, 2C and 4C
CELLS_PER_STAGE = 5


def stage_channels(init_channels: int = INIT_CHANNELS) -> tuple:
    """Channels of the three stages of a network whose first stage has ``init_channels``
    (NB201: 16; reduced training narrows it, docs/reduced_training.md)."""
    if isinstance(init_channels, bool) or not isinstance(init_channels, (int, np.integer)) \
            or init_channels < 1:
        raise ValueError(f"init_channels must be a positive integer, got {init_channels!r}")
    c = int(init_channels)
    return (c, 2 * c, 4 * c)


STAGE_CHANNELS = stage_channels(INIT_CHANNELS)


# ---- parameter slots (shared with the packed engine) ---------------------------------------
def slot_of(kind: str, *, cell: int = 0, edge: int = 0, op: int = 0, block: int = 0, part: int = 0) -> int:
    """Structural id of a conv/linear layer. Its weight uses stream ``2*slot``, its bias ``2*slot+1``.

    kind: ``stem`` | ``cell`` (cell 0..14, edge 0..5, op 2|3) | ``reduction`` (block 0|1,
    part 0=conv_a, 1=conv_b, 2=shortcut conv) | ``head``.
    """
    if kind == "stem":
        return 1
    if kind == "cell":
        return 100 + (cell * 6 + edge) * 5 + op
    if kind == "reduction":
        return 600 + block * 3 + part
    if kind == "head":
        return 700
    raise ValueError(f"unknown slot kind {kind!r}")


def check_flavour(flavour: str) -> str:
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown NB201 model flavour {flavour!r}: expected one of {FLAVOURS}")
    return flavour


# ---- modules -----------------------------------------------------------------------------
class Zero(nn.Module):
    """The ``none`` op: multiplies by zero (keeps the graph, like the paper's code)."""

    def forward(self, x):
        return x.mul(0.0)


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in, c_out, k, stride, padding, bias, affine, track):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding, bias=bias),
            nn.BatchNorm2d(c_out, affine=affine, track_running_stats=track),
        )


class Pool(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)

    def forward(self, x):
        return self.pool(x)


class Cell(nn.Module):
    """4-node NB201 cell; node j = sum_{i<j} op_(i->j)(node i); output node 3."""

    def __init__(self, ops, c: int, flavour: str):
        super().__init__()
        self.ops_ids = tuple(int(o) for o in ops)
        paper = flavour == "paper"
        edges = []
        for o in self.ops_ids:
            if o == nb201.NONE:
                edges.append(Zero())
            elif o == nb201.SKIP:
                edges.append(nn.Identity())
            elif o == nb201.CONV1:
                edges.append(ReLUConvBN(c, c, 1, 1, 0, bias=paper, affine=not paper, track=not paper))
            elif o == nb201.CONV3:
                edges.append(ReLUConvBN(c, c, 3, 1, 1, bias=paper, affine=not paper, track=not paper))
            else:
                edges.append(Pool())
        self.edges = nn.ModuleList(edges)

    def forward(self, x):
        nodes = [x]
        e = 0
        for j in range(1, 4):
            acc = None
            for i in range(j):
                y = self.edges[e](nodes[i])
                acc = y if acc is None else acc + y
                e += 1
            nodes.append(acc)
        return nodes[3]


class ResBlock(nn.Module):
    """NB201 reduction block: ResNet basic block, stride 2 (affine tracked BN, no conv bias)."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1, bias=False, affine=True, track=True)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1, bias=False, affine=True, track=True)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2, padding=0), nn.Conv2d(c_in, c_out, 1, bias=False)
        )

    def forward(self, x):
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class NB201Net(nn.Module):
    """NB201 network for one cell. Attributes: ``arch`` (string), ``code`` (cell code),
    ``num_classes``, ``flavour``. Every conv/linear carries ``zc_slot`` (see :func:`slot_of`)."""

    def __init__(self, arch, num_classes: int = 10, flavour: str = "paper",
                 init_channels: int = INIT_CHANNELS):
        super().__init__()
        channels = stage_channels(init_channels)
        check_flavour(flavour)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.code = nb201.code_of(arch)
        self.arch = nb201.string_of_code(self.code)
        self.num_classes = num_classes
        self.flavour = flavour
        self.init_channels = channels[0]
        ops = nb201.ops_of_code(self.code)
        c0 = channels[0]
        self.stem = nn.Sequential(nn.Conv2d(3, c0, 3, padding=1, bias=False), nn.BatchNorm2d(c0))
        self.stem[0].zc_slot = slot_of("stem")
        layers = []
        cell_id = 0
        for stage, c in enumerate(channels):
            if stage > 0:
                blk = ResBlock(channels[stage - 1], c)
                blk.conv_a[1].zc_slot = slot_of("reduction", block=stage - 1, part=0)
                blk.conv_b[1].zc_slot = slot_of("reduction", block=stage - 1, part=1)
                blk.shortcut[1].zc_slot = slot_of("reduction", block=stage - 1, part=2)
                layers.append(blk)
            for _ in range(CELLS_PER_STAGE):
                cell = Cell(ops, c, flavour)
                for e, m in enumerate(cell.edges):
                    if isinstance(m, ReLUConvBN):
                        m[1].zc_slot = slot_of("cell", cell=cell_id, edge=e, op=ops[e])
                layers.append(cell)
                cell_id += 1
        self.layers = nn.Sequential(*layers)
        c_last = channels[-1]
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_last), nn.ReLU(inplace=False))
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_last, num_classes)
        self.classifier.zc_slot = slot_of("head")

    def zc_feature_modules(self) -> list:
        """The stage modules whose outputs are the network's feature maps, in forward order:
        the stem, then each of the 17 cells and reduction blocks (AZ-NAS's features)."""
        return [self.stem, *self.layers]

    def forward(self, x):
        x = self.layers(self.stem(x))
        x = self.gap(self.lastact(x)).flatten(1)
        return self.classifier(x)

    def get_prunable_copy(self, bn: bool = False) -> NB201Net:
        """Copy with the same weights, in train mode. ``bn=False`` (synflow, as in the paper's
        code): BatchNorm removed from the stem, the cells and the head, but **kept inside the two
        reduction blocks** -- the released code's behaviour (docs/proxies.md, quirks)."""
        net = copy.deepcopy(self)
        if not bn:
            net.stem[1] = nn.Identity()
            net.lastact[0] = nn.Identity()
            for layer in net.layers:
                if isinstance(layer, Cell):
                    for m in layer.edges:
                        if isinstance(m, ReLUConvBN):
                            m[2] = nn.Identity()
        return net.train()


def build_model(arch, num_classes: int = 10, *, flavour: str = "paper", seed: int | None = 0,
                dtype=torch.float32, device=None, init_channels: int = INIT_CHANNELS) -> NB201Net:
    """NB201 network of ``arch`` (string, index or op ids). ``seed=None`` keeps PyTorch's own
    random init; an int draws the counter-based weights of (seed, arch). ``init_channels``: the
    first stage's width (16 in NB201; the stages have C, 2C, 4C)."""
    net = NB201Net(arch, num_classes, flavour, init_channels)
    if seed is not None:
        init_weights(net, seed)
    return net.to(device=device, dtype=dtype).train()


def fan_in(m: nn.Module) -> int:
    if isinstance(m, nn.Conv2d):
        return (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
    if isinstance(m, nn.Linear):
        return m.in_features
    raise TypeError(type(m))


def bound_of(fan: int) -> np.float32:
    # computed in float64 then rounded once, identically for the per-model and packed engines
    return np.float32(1.0 / math.sqrt(fan))


@torch.no_grad()
def init_weights(net: NB201Net, seed: int) -> NB201Net:
    """Fill every slotted conv/linear weight (and bias) from the streams (seed, code, slot)."""
    from zcfast.ops.init import fill_uniform

    mods = [m for m in net.modules() if hasattr(m, "zc_slot")]
    tensors, slots, bounds = [], [], []
    for m in mods:
        b = bound_of(fan_in(m))
        tensors.append(m.weight)
        slots.append(2 * m.zc_slot)
        bounds.append(b)
        if m.bias is not None:
            tensors.append(m.bias)
            slots.append(2 * m.zc_slot + 1)
            bounds.append(b)
    sizes = [t.numel() for t in tensors]
    offsets = torch.tensor(np.concatenate([[0], np.cumsum(sizes)]), dtype=torch.int64)
    flat = torch.empty(int(offsets[-1]), dtype=torch.float32)
    fill_uniform(flat, offsets, torch.full((len(tensors),), net.code, dtype=torch.int64),
                 torch.tensor(slots, dtype=torch.int64), torch.tensor(bounds, dtype=torch.float32),
                 seed)
    for t, a, n in zip(tensors, offsets[:-1].tolist(), sizes):
        t.copy_(flat[a : a + n].view_as(t))
    return net
