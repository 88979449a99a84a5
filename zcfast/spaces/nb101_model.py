"""The NAS-Bench-101 network, one model per cell (docs/nb101.md).

Structure (the benchmark's ``model_builder``, as ported to PyTorch by the zero-cost paper's
``foresight/models/nasbench1.py``): a 3x3 conv-BN-ReLU stem to ``stem_channels`` (128), then
``num_stacks`` (3) stacks of ``cells_per_stack`` (3) cells; before every stack but the first a
2x2 max-pool halves the resolution and the channel count doubles; then a global average pool and
a linear classifier. Inside a cell, vertex v's output channels come from
:func:`vertex_channels` (the output's channels are split across the vertices that feed it); a
vertex adds its interior inputs (truncated to its channel count) and, if the input feeds it, a
1x1 conv-BN-ReLU projection of the cell input; the output concatenates the vertices that feed it
and adds a projection of the input when the input feeds the output directly.

BatchNorm is PyTorch's default (affine, tracked statistics; the proxies run in train mode, so
batch statistics are used), convolutions have no bias, the classifier has one. For synflow the
paper's code builds a copy **without any BatchNorm** (``Network(..., bn=False)``): every BN goes,
in the stem, the vertices and the projections (:meth:`NB101Net.get_prunable_copy`).

Weights: the paper's NB101 initialisation (``Network._initialize_weights``): conv weights
N(0, 2 / (k * k * C_out)), classifier weights N(0, 0.01^2), classifier bias 0, BN weight 1 and
bias 0. The normal numbers come from counter-based streams (:func:`fill_normal`) keyed by
(seed, the cell's 64-bit key folded to 32 bits, structural slot), so a packed engine that gives
each tensor the same key and slot reproduces them bit for bit.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from zcfast.spaces import nb101

STEM_CHANNELS = 128
NUM_STACKS = 3
CELLS_PER_STACK = 3
MAX_STACKS = 8
MAX_CELLS_PER_STACK = 16
CLASSIFIER_STD = 0.01


# ---- channels --------------------------------------------------------------------------------
def vertex_channels(c_in: int, c_out: int, matrix) -> list:
    """Output channels of every vertex of a pruned cell (the benchmark's
    ``compute_vertex_channels``): vertices feeding the output share ``c_out`` (floor division,
    the remainder one channel each to the first of them); every other interior vertex takes the
    largest count among its interior successors; the input keeps ``c_in``."""
    m = np.asarray(matrix)
    n = m.shape[0]
    ch = [0] * n
    ch[0], ch[n - 1] = int(c_in), int(c_out)
    if n == 2:
        return ch
    feeders = int(m[1:, n - 1].sum())  # interior vertices feeding the output
    base, extra = divmod(int(c_out), feeders)
    for v in range(1, n - 1):
        if m[v, n - 1]:
            ch[v] = base + (1 if extra > 0 else 0)
            extra -= 1 if extra > 0 else 0
    for v in range(n - 3, 0, -1):
        if not m[v, n - 1]:
            ch[v] = max(ch[w] for w in range(v + 1, n - 1) if m[v, w])
    if any(c <= 0 for c in ch):
        raise ValueError(f"cell {m.tolist()} leaves a vertex without channels at c_out={c_out}")
    return ch


def channel_plan(arch, stem_channels: int = STEM_CHANNELS, num_stacks: int = NUM_STACKS,
                 cells_per_stack: int = CELLS_PER_STACK) -> list:
    """[(stack, cell, c_in, c_out, vertex channels)] of every cell of the network, in order."""
    spec = nb101.canonical_spec(arch)
    m = spec.array()
    out, c_in, c = [], stem_channels, stem_channels
    for s in range(num_stacks):
        if s > 0:
            c *= 2
        for k in range(cells_per_stack):
            out.append((s, k, c_in, c, vertex_channels(c_in, c, m)))
            c_in = c
    return out


# ---- parameter slots (shared with a packed engine) ---------------------------------------------
def slot_of(kind: str, *, stack: int = 0, cell: int = 0, vertex: int = 0) -> int:
    """Structural id of a conv/linear layer; its weight draws from streams 2*slot and 2*slot+1.

    kind: ``stem`` | ``vertex`` (the conv of interior vertex 1..5) | ``projection`` (the 1x1
    projection of the cell input into vertex 1..5, or 6 = the output) | ``head``. Vertices are
    numbered as in the cell's 7-vertex form (interior vertices keep their pruned index, the output
    is 6), so a slot never depends on which other cells exist.
    """
    if kind == "stem":
        return 1
    if kind == "head":
        return 10_000
    if kind not in ("vertex", "projection"):
        raise ValueError(f"unknown slot kind {kind!r}")
    if not (0 <= stack < MAX_STACKS and 0 <= cell < MAX_CELLS_PER_STACK):
        raise ValueError(f"stack {stack} / cell {cell} outside the slot layout")
    hi = 5 if kind == "vertex" else 6
    if not 1 <= vertex <= hi:
        raise ValueError(f"{kind} slot needs vertex in [1, {hi}], got {vertex}")
    base = 100 + (stack * MAX_CELLS_PER_STACK + cell) * 16
    return base + vertex + (8 if kind == "projection" else 0)


def stream_code(key: int) -> int:
    """The per-tensor stream key of :func:`zcfast.ops.init.fill_uniform` for a cell: the low 32
    bits of its 64-bit key (the streams hash 32-bit codes; MD5 bits are uniform, so about 21
    pairs among the 423,624 cells share a stream key -- they then share weights, nothing else)."""
    return int(key) & 0xFFFFFFFF


# ---- modules --------------------------------------------------------------------------------------
class ConvBnRelu(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int):
        super().__init__(nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=False))


class Cell(nn.Module):
    """One NB101 cell of a pruned spec (docs/nb101.md, "network")."""

    def __init__(self, spec: nb101.Spec, c_in: int, c_out: int):
        super().__init__()
        self.n = spec.n
        self.adj = spec.array()
        self.channels = vertex_channels(c_in, c_out, self.adj)
        ops = {}
        for v in range(1, self.n - 1):
            o = spec.ops[v]
            c = self.channels[v]
            ops[str(v)] = (ConvBnRelu(c, c, 3) if o == nb101.CONV3X3 else
                           ConvBnRelu(c, c, 1) if o == nb101.CONV1X1 else
                           nn.MaxPool2d(3, stride=1, padding=1))
        self.ops = nn.ModuleDict(ops)
        self.proj = nn.ModuleDict({str(v): ConvBnRelu(c_in, self.channels[v], 1)
                                   for v in range(1, self.n) if self.adj[0, v]})

    def forward(self, x):
        n, m, ch = self.n, self.adj, self.channels
        t = [x]
        outs = []
        for v in range(1, n - 1):
            # interior inputs (truncated to this vertex's channels), then the input's projection
            fan = [t[u][:, : ch[v]] for u in range(1, v) if m[u, v]]
            if m[0, v]:
                fan.append(self.proj[str(v)](x))
            acc = fan[0]
            for f in fan[1:]:
                acc = acc + f
            t.append(self.ops[str(v)](acc))
            if m[v, n - 1]:
                outs.append(t[v])
        if not outs:
            return self.proj[str(n - 1)](x)
        y = outs[0] if len(outs) == 1 else torch.cat(outs, 1)
        if m[0, n - 1]:
            # out of place: the released PyTorch ports write `outputs += ...`, which modifies a
            # ReLU output autograd still needs and crashes the backward for such cells
            y = y + self.proj[str(n - 1)](x)
        return y


class NB101Net(nn.Module):
    """NB101 network of one cell. Attributes: ``spec`` (pruned), ``code`` (raw code), ``hash``,
    ``key`` (64-bit), ``num_classes``. Every conv/linear carries ``zc_slot`` (:func:`slot_of`)."""

    def __init__(self, arch, num_classes: int = 10, stem_channels: int = STEM_CHANNELS,
                 num_stacks: int = NUM_STACKS, cells_per_stack: int = CELLS_PER_STACK):
        super().__init__()
        for name, v in (("num_classes", num_classes), ("stem_channels", stem_channels),
                        ("num_stacks", num_stacks), ("cells_per_stack", cells_per_stack)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if num_stacks > MAX_STACKS or cells_per_stack > MAX_CELLS_PER_STACK:
            raise ValueError(f"at most {MAX_STACKS} stacks of {MAX_CELLS_PER_STACK} cells")
        self.spec = nb101.canonical_spec(arch)
        self.code = nb101.encode(self.spec)
        self.hash = nb101.hash_of(self.spec)
        self.key = nb101.key_of_hash(self.hash)
        self.num_classes = int(num_classes)
        self.stem = ConvBnRelu(3, stem_channels, 3)
        self.stem[0].zc_slot = slot_of("stem")
        layers = []
        for s, k, c_in, c_out, _ in channel_plan(self.spec, stem_channels, num_stacks,
                                                  cells_per_stack):
            if s > 0 and k == 0:
                layers.append(nn.MaxPool2d(2, stride=2))
            cell = Cell(self.spec, c_in, c_out)
            for v, op in cell.ops.items():
                if isinstance(op, ConvBnRelu):
                    op[0].zc_slot = slot_of("vertex", stack=s, cell=k, vertex=int(v))
            for v, pr in cell.proj.items():
                v7 = 6 if int(v) == self.spec.n - 1 else int(v)
                pr[0].zc_slot = slot_of("projection", stack=s, cell=k, vertex=v7)
            layers.append(cell)
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Linear(channel_plan(self.spec, stem_channels, num_stacks,
                                                 cells_per_stack)[-1][3], num_classes)
        self.classifier.zc_slot = slot_of("head")

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.classifier(x.mean((2, 3)))

    def get_prunable_copy(self, bn: bool = False) -> NB101Net:
        """Copy with the same weights, in train mode; ``bn=False`` (synflow) removes every
        BatchNorm, as the paper's ``Network(spec, ..., bn=False)`` does."""
        net = copy.deepcopy(self)
        if not bn:
            for mod in net.modules():
                if isinstance(mod, ConvBnRelu):
                    mod[1] = nn.Identity()
        return net.train()


def build_model(arch, num_classes: int = 10, *, seed: int | None = 0,
                stem_channels: int = STEM_CHANNELS, num_stacks: int = NUM_STACKS,
                cells_per_stack: int = CELLS_PER_STACK, dtype=torch.float32,
                device=None) -> NB101Net:
    """NB101 network of ``arch`` (any form :mod:`zcfast.spaces.nb101` accepts), in train mode.
    ``seed=None`` keeps the weights PyTorch drew at construction; an int draws the paper's
    initialisation from the (seed, cell key, slot) streams."""
    net = NB101Net(arch, num_classes, stem_channels, num_stacks, cells_per_stack)
    if seed is not None:
        init_weights(net, seed)
    return net.to(device=device, dtype=dtype).train()


# ---- weights ------------------------------------------------------------------------------------
def std_of(m: nn.Module) -> float:
    """The paper's init scale: conv N(0, 2 / (k_h k_w C_out)) (He, fan-out), linear 0.01."""
    if isinstance(m, nn.Conv2d):
        return math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels))
    if isinstance(m, nn.Linear):
        return CLASSIFIER_STD
    raise TypeError(type(m))


def fill_normal(out: torch.Tensor, offsets: torch.Tensor, code: torch.Tensor, slot: torch.Tensor,
                std: torch.Tensor, seed: int, *, block: int = 1 << 20) -> torch.Tensor:
    """Fill segment s of ``out`` (float32, 1-D) with N(0, std[s]^2) numbers from counter streams.

    Box-Muller on two uniform streams of :func:`zcfast.ops.init.fill_uniform`: u1 from
    (seed, code[s], 2*slot[s]) and u2 from (seed, code[s], 2*slot[s]+1), both U[-1, 1) on a
    2^-23 grid; with U = (u + 1) / 2 in [0, 1), z = sqrt(-2 ln(1 - U1)) cos(2 pi U2), computed in
    float64 and rounded once to float32 after scaling (|z| <= 5.8). offsets (S+1,) int64, code and
    slot (S,) int64, std (S,) float64. Deterministic for a given backend of fill_uniform (all give
    the same uniforms); the float64 log/cos run in torch on ``out``'s device.

    The segments must cover ``out`` exactly (offsets from 0 to its length). They are drawn in
    runs of whole segments of at most ``block`` numbers (a longer segment alone): the float64
    temporaries take about 70 bytes x max(``block``, the longest segment) instead of 70 bytes
    per number drawn (a packed NB101 chunk draws millions per candidate; its longest segment, a
    512-channel 3x3 convolution, has 2.4 million). A number depends on its (seed, code, slot,
    position in its segment) only, so the runs draw the same numbers. ``offsets`` is read on
    the host (the NB101 engines draw there).
    """
    if block < 1:
        raise ValueError(f"fill_normal: block must be positive, got {block}")
    off = [int(v) for v in offsets.tolist()]
    if not off or off[0] != 0 or off[-1] != out.numel():
        raise ValueError(f"fill_normal: offsets must run from 0 to out's {out.numel()} numbers, "
                         f"got {off[:1]} ... {off[-1:]}")
    n_seg = len(off) - 1
    s0 = 0
    while s0 < n_seg:
        s1 = s0 + 1  # whole segments [s0, s1) of at most `block` numbers (at least one)
        while s1 < n_seg and off[s1 + 1] - off[s0] <= block:
            s1 += 1
        if off[s1] > off[s0]:  # empty segments draw nothing
            _fill_normal_run(out[off[s0] : off[s1]], offsets[s0 : s1 + 1] - off[s0],
                             code[s0:s1], slot[s0:s1], std[s0:s1], seed)
        s0 = s1
    return out


def _fill_normal_run(out, offsets, code, slot, std, seed) -> None:
    """:func:`fill_normal` on one run of segments (offsets relative to ``out``)."""
    from zcfast.ops.init import fill_uniform

    ones = torch.ones(code.numel(), dtype=torch.float32)
    u1 = torch.empty_like(out)
    u2 = torch.empty_like(out)
    fill_uniform(u1, offsets, code, 2 * slot, ones, seed)
    fill_uniform(u2, offsets, code, 2 * slot + 1, ones, seed)
    lens = (offsets[1:] - offsets[:-1]).to(out.device)
    s = torch.repeat_interleave(std.to(out.device, torch.float64), lens)
    a = u1.double().add_(1.0).mul_(0.5)  # U1 in [0, 1), exact
    b = u2.double().add_(1.0).mul_(0.5)
    z = torch.sqrt(-2.0 * torch.log1p(-a)) * torch.cos((2.0 * math.pi) * b)
    out.copy_((z * s).to(torch.float32))


@torch.no_grad()
def init_weights(net: NB101Net, seed: int) -> NB101Net:
    """The paper's NB101 initialisation from the streams (seed, stream_code(net.key), slot)."""
    mods = [m for m in net.modules() if hasattr(m, "zc_slot")]
    sizes = [m.weight.numel() for m in mods]
    offsets = torch.tensor(np.concatenate([[0], np.cumsum(sizes)]), dtype=torch.int64)
    flat = torch.empty(int(offsets[-1]), dtype=torch.float32)
    fill_normal(flat, offsets, torch.full((len(mods),), stream_code(net.key), dtype=torch.int64),
                torch.tensor([m.zc_slot for m in mods], dtype=torch.int64),
                torch.tensor([std_of(m) for m in mods], dtype=torch.float64), seed)
    for m, a, k in zip(mods, offsets[:-1].tolist(), sizes):
        m.weight.copy_(flat[a : a + k].view_as(m.weight))
        if m.bias is not None:
            m.bias.zero_()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.fill_(1.0)
            m.bias.zero_()
    return net
