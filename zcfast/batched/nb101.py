"""The packed NB101 builder: K NAS-Bench-101 candidates in one forward/backward (the passes
shared by every space are in base.py; docs/engine.md and docs/nb101.md describe the layout).

NB101 candidates differ in topology *and* in the channels of every vertex (a cell's output
channels are split across the vertices that feed the output, docs/nb101.md), so their layers are
ragged. The packing buckets layers by shape:

- **Between cells** every candidate has the same channels (the cell's ``c_out``), so the cell
  inputs and outputs of all K candidates live in one tensor (B, K*C, H, W), as in NB201; the
  stem is one dense convolution to K*stem channels, the 2x2 max-pools and the global average
  pool run once on that tensor, the head is one batched matrix product.
- **Projections.** Every 1x1 projection of the cell input (into vertex v of candidate k) with
  the same output channels across the K candidates is one grouped convolution: its members'
  inputs are gathered from the cell input by candidate (index_select), so one bucket per
  distinct channel count of that cell position.
- **Vertices** run in step v = 1, 2, ... (a vertex only reads earlier ones): at step v every
  candidate that has a conv vertex v contributes one member to the bucket of its (kernel,
  channels); each bucket is one grouped convolution, one BatchNorm and one ReLU. The vertex
  inputs (sums of truncated predecessors and the projection, in the reference's order), the
  3x3 max-pools and the output concatenations stay per candidate: they are cheap next to the
  convolutions and carry no weights.

Buckets are exact (no padding): every member of a bucket is a real layer of one candidate, so
the weights, their gradients and the per-group reductions (fisher, NASWOT) need no masks.
Weights: one flat float32 buffer, a segment per (member, layer), filled with the per-model
network's normal draws from the (seed, cell stream key, slot) streams
(:func:`zcfast.spaces.nb101_model.fill_normal`), so packed and per-model nets hold the same
numbers bit for bit.

Synflow's BatchNorm rule is the paper code's for NB101: every BatchNorm removed
(``NB101Net.get_prunable_copy``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from zcfast.batched.base import PackedModel
from zcfast.batched.engine import _bn, _conv2d
from zcfast.batched.plan import PackedLayer, SegmentTable, layer_segments
from zcfast.batched.upload import DeviceTables
from zcfast.spaces import nb101
from zcfast.spaces.nb101_model import (
    CELLS_PER_STACK,
    CLASSIFIER_STD,
    NUM_STACKS,
    STEM_CHANNELS,
    channel_plan,
    fill_normal,
    slot_of,
    stream_code,
)

__all__ = ["PackedNB101"]


@dataclass
class _Bucket:
    """One grouped convolution of a cell position: ``layer`` (its members' candidates in
    ``layer.cand``) and, per member, the vertex it computes (pruned index)."""

    layer: PackedLayer
    vertex: list
    gather_np: np.ndarray | None = None  # projections: candidate of each member (index_select)
    gather: torch.Tensor | None = None  # gather_np on the device (PackedNB101 binds it)


@dataclass
class _CellPlan:
    stack: int
    c_in: int
    c_out: int
    size: int  # spatial size
    channels: list  # per candidate: vertex channels of the pruned cell
    proj: list = field(default_factory=list)  # projection buckets
    steps: list = field(default_factory=list)  # per vertex step v = 1..: conv buckets


@dataclass
class NB101Plan:
    codes: np.ndarray
    specs: list
    num_classes: int
    input_size: int
    adj: list = field(default_factory=list)  # (n, n) adjacency of each pruned cell
    stem: PackedLayer = None
    cells: list = field(default_factory=list)
    head: PackedLayer = None
    layers: list = field(default_factory=list)  # every PackedLayer in flat-buffer order
    n_weights: int = 0
    n_biases: int = 0

    @property
    def K(self) -> int:
        return len(self.codes)


def build_plan(codes, num_classes: int = 10, *, stem_channels: int = STEM_CHANNELS,
               num_stacks: int = NUM_STACKS, cells_per_stack: int = CELLS_PER_STACK,
               input_size: int = 32, device="cpu") -> NB101Plan:
    """Plan for the raw NB101 codes ``codes`` (any valid cells; pruned here). Its index arrays
    are host arrays (``_Bucket.gather_np``, ``PackedLayer.cand``); :class:`PackedNB101` sends
    them to ``device`` with its weights in one copy."""
    specs = [nb101.canonical_spec(int(c)) for c in codes]
    if not specs:
        raise ValueError("the packed NB101 builder needs at least one cell")
    if input_size < 2 ** (num_stacks - 1):
        raise ValueError(f"input_size {input_size} is too small for {num_stacks} stacks")
    K = len(specs)
    plan = NB101Plan(np.asarray([nb101.encode(s) for s in specs], dtype=np.uint64), specs,
                     int(num_classes), int(input_size))
    allk = np.arange(K)
    plan.stem = PackedLayer("stem", stem_channels, 3, 3, 1, 1, allk,
                            np.full(K, slot_of("stem")), False, input_size * input_size)
    plan.layers.append(plan.stem)
    adj = plan.adj = [s.array() for s in specs]
    per_cand = [channel_plan(s, stem_channels, num_stacks, cells_per_stack) for s in specs]
    size = input_size
    for pos, (s, c, c_in, c_out, _) in enumerate(per_cand[0]):
        if s > 0 and c == 0:
            size //= 2
        cp = _CellPlan(s, c_in, c_out, size, [pc[pos][4] for pc in per_cand])
        # projections of the cell input, bucketed by output channels (members in (k, v) order)
        groups = defaultdict(list)
        for k, (m, sp) in enumerate(zip(adj, specs)):
            for v in range(1, sp.n):
                if m[0, v]:
                    groups[cp.channels[k][v]].append((k, v))
        for ch in sorted(groups):
            mem = groups[ch]
            cand = np.array([k for k, _ in mem])
            slots = np.array([slot_of("projection", stack=s, cell=c,
                                      vertex=6 if v == specs[k].n - 1 else v) for k, v in mem])
            lay = PackedLayer(f"p{pos}_{ch}", ch, c_in, 1, 1, 0, cand, slots, False, size * size)
            cp.proj.append(_Bucket(lay, [v for _, v in mem], cand.astype(np.int64)))
            plan.layers.append(lay)
        # conv vertices, step by step, bucketed by (kernel, channels)
        for v in range(1, max(sp.n for sp in specs) - 1):
            groups = defaultdict(list)
            for k, sp in enumerate(specs):
                if v < sp.n - 1 and sp.ops[v] in (nb101.CONV3X3, nb101.CONV1X1):
                    kk = 3 if sp.ops[v] == nb101.CONV3X3 else 1
                    groups[(kk, cp.channels[k][v])].append(k)
            step = []
            for kk, ch in sorted(groups):
                cand = np.array(groups[(kk, ch)])
                slots = np.full(len(cand), slot_of("vertex", stack=s, cell=c, vertex=v))
                lay = PackedLayer(f"v{pos}_{v}_{kk}_{ch}", ch, ch, kk, 1, kk // 2, cand, slots,
                                  False, size * size)
                step.append(_Bucket(lay, [v] * len(cand)))
                plan.layers.append(lay)
            cp.steps.append(step)
        plan.cells.append(cp)
    c_last = per_cand[0][-1][3]
    plan.head = PackedLayer("head", num_classes, c_last, 0, 1, 0, allk,
                            np.full(K, slot_of("head")), True, 1)
    plan.layers.append(plan.head)
    w = b = 0
    for lay in plan.layers:
        lay.w_off = w
        w += lay.groups * lay.seg_len
        if lay.has_bias:
            lay.b_off = b
            b += lay.groups * lay.c_out
    plan.n_weights, plan.n_biases = w, b
    return plan


def segment_table(plan: NB101Plan) -> SegmentTable:
    """Segments [weights | biases] of the flat buffer; ``bound`` holds each weight's init std
    (NB101 draws normal weights, zcfast.spaces.nb101_model.std_of) and 0 for the biases; a
    layer's weight and bias share its stream slot."""
    def std(lay):
        return CLASSIFIER_STD if lay.k == 0 else (2.0 / (lay.k * lay.k * lay.c_out)) ** 0.5

    def same(slots):
        return np.asarray(slots, np.int64)

    return layer_segments(plan.layers, plan.n_weights, plan.n_biases, std, lambda lay: 0.0,
                          same, same)


class PackedNB101(PackedModel):
    """K NB101 candidates with the per-model network's weights (seed, cell key, slot)."""

    def __init__(self, codes, num_classes: int = 10, *, seed: int = 0,
                 stem_channels: int = STEM_CHANNELS, num_stacks: int = NUM_STACKS,
                 cells_per_stack: int = CELLS_PER_STACK, input_size: int = 32, device="cpu",
                 backend: str | None = None, dtype=torch.float32):
        dev = torch.device(device)
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"the packed engine computes in float32 or float64, not {dtype}")
        self.plan = build_plan(codes, num_classes, stem_channels=stem_channels,
                               num_stacks=num_stacks, cells_per_stack=cells_per_stack,
                               input_size=input_size, device=dev)
        self.table = segment_table(self.plan)
        self.input_shape = (3, input_size, input_size)
        self.dtype, self.device, self.backend, self.seed = dtype, dev, backend, int(seed)
        t = self.table
        keys = np.array([stream_code(nb101.key_of_hash(nb101.hash_of(s))) for s in self.plan.specs],
                        dtype=np.int64)
        flat = torch.zeros(self.plan.n_weights + self.plan.n_biases, dtype=torch.float32)
        nw = t.n_weight_segments
        # the per-model initialiser on the weight segments (biases stay 0, as the reference's),
        # on the host (its float64 log/cos are the reference's CPU ones)
        fill_normal(flat[: self.plan.n_weights], torch.as_tensor(t.offsets[: nw + 1]),
                    torch.as_tensor(keys[t.cand[:nw]]), torch.as_tensor(t.slot[:nw]),
                    torch.as_tensor(t.bound[:nw], dtype=torch.float64), self.seed)
        # weights, weight offsets, projection gathers and every layer's candidates (NASWOT's
        # groups): one host-to-device copy (docs/performance.md)
        tb = self.tables = DeviceTables(dev)
        flat_np = tb.add(flat.numpy())
        off_np = tb.add(self._host_weight_offsets())
        for cp in self.plan.cells:
            for bk in cp.proj:
                tb.add(bk.gather_np)
        for lay in self.plan.layers:
            tb.add(np.ascontiguousarray(lay.cand))
        tb.upload()
        for cp in self.plan.cells:
            for bk in cp.proj:
                bk.gather = tb.get(bk.gather_np)
        self.flat = tb.get(flat_np)
        self._off_w = tb.get(off_np)

    # ---- forward ---------------------------------------------------------------------------
    def forward(self, x, ws, bs, *, bn: bool = True, per_candidate_input: bool = False,
                acts: list | None = None, relus=None) -> torch.Tensor:
        """Logits (B, K, classes). ``bn=False``: synflow (no BatchNorm anywhere). ``acts``
        collects (pre-BN conv/linear output, layer); ``relus`` (ReLU input, group -> candidate,
        channels per group)."""
        plan, K = self.plan, self.plan.K

        def conv_bn_relu(h, lay):
            y = _conv2d(h, ws[lay.name], None, lay.stride, lay.padding, lay.groups)
            if acts is not None:
                acts.append((y, lay))
            if bn:
                y = _bn(y)
            if relus is not None:
                relus.append((y, lay.cand, lay.c_out))
            return F.relu(y)

        stem = plan.stem
        if per_candidate_input:  # x: (B, K*3, H, W)
            y = _conv2d(x, ws[stem.name], None, 1, 1, K)
        else:  # shared input: one dense conv to K*stem channels
            y = _conv2d(x, ws[stem.name], None, 1, 1, 1)
        if acts is not None:
            acts.append((y, stem))
        if bn:
            y = _bn(y)
        if relus is not None:
            relus.append((y, stem.cand, stem.c_out))
        h = F.relu(y)
        for cp in plan.cells:
            if h.shape[2] != cp.size:
                h = F.max_pool2d(h, 2, 2)
            h = self._cell(h, cp, conv_bn_relu)
        f = h.mean((2, 3))
        B = f.shape[0]
        f = f.view(B, K, -1).transpose(0, 1)  # (K, B, C)
        head = plan.head
        logits = torch.baddbmm(bs[head.name].view(K, 1, -1), f, ws[head.name].transpose(1, 2))
        logits = logits.transpose(0, 1)  # (B, K, classes)
        if acts is not None:
            acts.append((logits, head))
        return logits

    def _cell(self, h, cp: _CellPlan, conv_bn_relu):
        specs, adj, K = self.plan.specs, self.plan.adj, self.plan.K
        B, _, H, W = h.shape
        blocks = h.view(B, K, cp.c_in * H * W)
        proj = [dict() for _ in range(K)]  # candidate -> {vertex: projection output}
        for bk in cp.proj:
            lay = bk.layer
            g = blocks.index_select(1, bk.gather).view(B, lay.groups * cp.c_in, H, W)
            out = conv_bn_relu(g, lay).split(lay.c_out, 1)
            for k, v, o in zip(lay.cand, bk.vertex, out):
                proj[k][v] = o
        t = [[None] * sp.n for sp in specs]  # per candidate: vertex outputs
        for v, step in enumerate(cp.steps, 1):
            acc = {}
            for k, sp in enumerate(specs):
                if v >= sp.n - 1:
                    continue
                m, ch = adj[k], cp.channels[k]
                # the reference's order: interior inputs truncated to ch[v], then the projection
                fan = [t[k][u][:, : ch[v]] for u in range(1, v) if m[u, v]]
                if m[0, v]:
                    fan.append(proj[k][v])
                a = fan[0]
                for f in fan[1:]:
                    a = a + f
                if sp.ops[v] == nb101.MAXPOOL3X3:
                    t[k][v] = F.max_pool2d(a, 3, 1, 1)
                else:
                    acc[k] = a
            for bk in step:
                lay = bk.layer
                g = torch.cat([acc[k] for k in lay.cand], 1) if lay.groups > 1 else acc[lay.cand[0]]
                out = conv_bn_relu(g, lay).split(lay.c_out, 1) if lay.groups > 1 else \
                    [conv_bn_relu(g, lay)]
                for k, o in zip(lay.cand, out):
                    t[k][v] = o
        outs = []
        for k, sp in enumerate(specs):
            m, n = adj[k], sp.n
            feeders = [t[k][v] for v in range(1, n - 1) if m[v, n - 1]]
            if not feeders:
                outs.append(proj[k][n - 1])
                continue
            y = feeders[0] if len(feeders) == 1 else torch.cat(feeders, 1)
            if m[0, n - 1]:
                y = y + proj[k][n - 1]
            outs.append(y)
        return torch.cat(outs, 1) if K > 1 else outs[0]

    def counts(self) -> dict:
        """params and flops per candidate from the plan (no tensor work): every weight, the head
        bias and 2 BatchNorm parameters per output channel of every conv (all are ConvBnRelu);
        flops = multiply-accumulates of the convs and the head for one sample."""
        t = self.table
        nw = t.n_weight_segments
        params = np.bincount(t.cand, weights=np.diff(t.offsets), minlength=self.K)
        for lay in self.plan.layers:
            if lay.k > 0:
                params += 2 * lay.c_out * np.bincount(lay.cand, minlength=self.K)
        flops = np.bincount(t.cand[:nw], weights=t.weight_numel * t.weight_hw_out,
                            minlength=self.K)
        return {"params": params.astype(np.float64), "flops": flops.astype(np.float64)}
