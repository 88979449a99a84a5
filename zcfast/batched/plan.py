"""Packing plan: how K NB201 candidates share one supernet-style tensor program.

Activations of K candidates live in one tensor (B, K*C, H, W): candidate k owns channels
[k*C, (k+1)*C). Every conv/linear layer becomes one *packed layer* whose weight stacks the
weights of the candidates (or (candidate, edge) pairs) that use it, applied as a grouped
convolution (groups = number of stacked copies). All weights of the K candidates live in one
flat buffer; the *segment table* records, for every stacked copy, its slice of the buffer, its
candidate, its parameter slot (-> counter-based init stream) and its fan-in.

Inside a cell, the edges into node j are processed together: one gather (index_select) picks
from cat(node_0..node_{j-1}) the channel groups of every (edge, candidate) pair that uses a
non-zero op, ordered [skip | conv1x1 | conv3x3 | pool]; conv pairs share one ReLU and one
BatchNorm call, and one index_add per section (skip, the convolutions, pool) sums its results
into node j per candidate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from zcfast.batched.ordered import rounds_of
from zcfast.batched.upload import DeviceTables
from zcfast.spaces import nb201
from zcfast.spaces.nb201_model import (
    CELLS_PER_STAGE,
    INIT_CHANNELS,
    bound_of,
    slot_of,
    stage_channels,
)

# node j's incoming edges (edge ids in string order) and their source nodes
_IN_EDGES = {1: (0,), 2: (1, 2), 3: (3, 4, 5)}


@dataclass
class PackedLayer:
    """One packed conv (or linear) layer: ``groups`` stacked copies of a (c_out, c_in, k, k) weight."""

    name: str
    c_out: int
    c_in: int
    k: int  # 0 for linear
    stride: int
    padding: int
    cand: np.ndarray  # (groups,) local candidate of each copy
    slots: np.ndarray  # (groups,) structural slot of each copy
    has_bias: bool
    hw_out: int  # spatial positions of the output (1 for linear)
    w_off: int = 0  # offset of the weight block in the flat buffer
    b_off: int = 0  # offset of the bias block in the flat buffer

    @property
    def groups(self) -> int:
        return len(self.cand)

    @property
    def fan_in(self) -> int:
        return self.c_in * max(self.k, 1) ** 2

    @property
    def seg_len(self) -> int:
        return self.c_out * self.fan_in

    @property
    def w_shape(self) -> tuple:
        if self.k == 0:
            return (self.groups, self.c_out, self.c_in)
        return (self.groups * self.c_out, self.c_in, self.k, self.k)


@dataclass
class NodePlan:
    """Edges into one node of one cell, for all candidates."""

    n_skip: int
    n_conv1: int
    n_conv3: int
    n_pool: int
    gather_np: np.ndarray  # block indices into cat(nodes[:j]) viewed as (B, j*K, C*H*W)
    targets_np: tuple  # block (= candidate) indices into node j, one per non-empty section
    conv_cand: np.ndarray  # candidate of each conv pair (ReLU groups, for NASWOT)
    conv1: PackedLayer | None
    conv3: PackedLayer | None
    rounds_np: tuple = ()  # per target section: ordered-accumulation rounds (ordered.py)
    gather: torch.Tensor | None = None  # gather_np on the device (Plan.bind)
    targets: tuple = ()  # targets_np on the device (Plan.bind)
    rounds: tuple = ()  # rounds_np on the device (Plan.bind)

    @property
    def n_total(self) -> int:
        return self.n_skip + self.n_conv1 + self.n_conv3 + self.n_pool


@dataclass
class Plan:
    codes: np.ndarray  # (K,) cell codes
    num_classes: int
    flavour: str
    input_size: int
    channels: tuple = stage_channels(INIT_CHANNELS)  # of the three stages
    stem: PackedLayer = None
    cells: list = field(default_factory=list)  # 15 lists of 3 NodePlans
    stage_of_cell: list = field(default_factory=list)
    reductions: list = field(default_factory=list)  # 2 tuples (conv_a, conv_b, shortcut)
    head: PackedLayer = None
    layers: list = field(default_factory=list)  # every PackedLayer in flat-buffer order
    n_weights: int = 0
    n_biases: int = 0
    tables: DeviceTables | None = None  # the plan's index arrays on the device

    @property
    def K(self) -> int:
        return len(self.codes)

    def bind(self) -> None:
        """Point the node plans at the device copies of their index arrays (after upload)."""
        seen = {}
        for nodes in self.cells:
            for nd in nodes:
                key = id(nd.gather_np)
                if key not in seen:  # the 15 cells share their node templates
                    get = self.tables.get
                    seen[key] = (get(nd.gather_np), tuple(get(t) for t in nd.targets_np),
                                 tuple(tuple((None if pos is None else get(pos), get(tt))
                                             for pos, tt in r) for r in nd.rounds_np))
                nd.gather, nd.targets, nd.rounds = seen[key]


def build_plan(codes, num_classes: int, flavour: str = "paper", input_size: int = 32,
               device="cpu", tables: DeviceTables | None = None,
               init_channels: int = INIT_CHANNELS) -> Plan:
    """Plan for the candidates ``codes`` (internal cell codes, see nb201.code_of).

    Vectorised over candidates: the (edge, candidate) pairs of node j depend only on the codes,
    so they are computed once with numpy and shared by the 15 cells (only the layers' init slots
    differ between cells). The index tensors go to ``device`` through ``tables``
    (zcfast/batched/upload.py): with ``tables`` given, they are only registered and the caller
    uploads them (with its own tables, in one copy) and calls :meth:`Plan.bind`; without, the
    plan uploads and binds them itself. The stages have ``init_channels`` x (1, 2, 4)
    channels."""
    channels = stage_channels(init_channels)
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 1 or len(codes) == 0:
        raise ValueError("build_plan needs a non-empty 1-D list of cell codes")
    K = len(codes)
    ops = nb201.ops_of_codes(codes)  # (K, 6)
    paper = flavour == "paper"
    plan = Plan(codes=codes, num_classes=num_classes, flavour=flavour, input_size=input_size,
                channels=channels)
    own = tables is None
    tables = DeviceTables(device) if own else tables
    plan.tables = tables
    allk = np.arange(K)
    size = input_size
    c0 = channels[0]
    plan.stem = PackedLayer("stem", c0, 3, 3, 1, 1, allk, np.full(K, slot_of("stem")), False, size * size)
    plan.layers.append(plan.stem)
    order = (nb201.SKIP, nb201.CONV1, nb201.CONV3, nb201.POOL)
    src = np.asarray(nb201.EDGE_SRC, dtype=np.int64)
    # node j's pairs, shared by every cell: per op, (edge, candidate) in edge-major order
    templates = {}
    for j in (1, 2, 3):
        edges = np.asarray(_IN_EDGES[j], dtype=np.int64)
        sub = ops[:, edges].T  # (edges, K)
        pairs = {}
        for o in order:
            ei, kk = np.nonzero(sub == o)  # row-major: edge-major, candidates ascending
            pairs[o] = (edges[ei], kk.astype(np.int64))
        # whole channel blocks: indexing (B, blocks, C*H*W) views moves contiguous rows of
        # C*H*W floats instead of single channels
        gidx = np.concatenate([src[pairs[o][0]] * K + pairs[o][1] for o in order])
        conv_cand = np.concatenate([pairs[nb201.CONV1][1], pairs[nb201.CONV3][1]])
        sections = (pairs[nb201.SKIP][1], conv_cand, pairs[nb201.POOL][1])
        targets = tuple(tables.add(np.ascontiguousarray(t)) for t in sections if len(t))
        # the rounds of the ordered accumulation (CUDA), built here on the host and uploaded
        # with the rest: computed from the device index they would cost syncs and copies
        rounds = tuple(tuple((None if pos is None else tables.add(np.asarray(pos, np.int64)),
                              tables.add(np.asarray(tt, np.int64)))
                             for pos, tt in rounds_of(t)) for t in targets)
        templates[j] = (pairs, tables.add(gidx), targets, tables.add(conv_cand), rounds)
    cell_id = 0
    for stage, C in enumerate(channels):
        if stage > 0:
            cp = channels[stage - 1]
            r = stage - 1
            size_out = size // 2
            ca = PackedLayer(f"red{r}.conv_a", C, cp, 3, 2, 1, allk,
                             np.full(K, slot_of("reduction", block=r, part=0)), False, size_out ** 2)
            cb = PackedLayer(f"red{r}.conv_b", C, C, 3, 1, 1, allk,
                             np.full(K, slot_of("reduction", block=r, part=1)), False, size_out ** 2)
            sc = PackedLayer(f"red{r}.shortcut", C, cp, 1, 1, 0, allk,
                             np.full(K, slot_of("reduction", block=r, part=2)), False, size_out ** 2)
            plan.reductions.append((ca, cb, sc))
            plan.layers += [ca, cb, sc]
            size = size_out
        for _ in range(CELLS_PER_STAGE):
            nodes = []
            for j in (1, 2, 3):
                pairs, gidx, targets, conv_cand, rounds = templates[j]

                def conv_layer(o, kk, pad):
                    e, cand = pairs[o]
                    if not len(cand):
                        return None
                    lay = PackedLayer(f"cell{cell_id}.n{j}.{nb201.OP_NAMES[o]}", C, C, kk, 1, pad,
                                      cand, slot_of("cell", cell=cell_id, edge=e, op=o), paper,
                                      size * size)
                    plan.layers.append(lay)
                    return lay

                c1 = conv_layer(nb201.CONV1, 1, 0)
                c3 = conv_layer(nb201.CONV3, 3, 1)
                nodes.append(NodePlan(
                    len(pairs[nb201.SKIP][1]), len(pairs[nb201.CONV1][1]), len(pairs[nb201.CONV3][1]),
                    len(pairs[nb201.POOL][1]), gidx, targets, conv_cand, c1, c3, rounds,
                ))
            plan.cells.append(nodes)
            plan.stage_of_cell.append(stage)
            cell_id += 1
    plan.head = PackedLayer("head", num_classes, channels[-1], 0, 1, 0, allk,
                            np.full(K, slot_of("head")), True, 1)
    plan.layers.append(plan.head)
    w_off = b_off = 0
    for lay in plan.layers:
        lay.w_off = w_off
        w_off += lay.groups * lay.seg_len
        if lay.has_bias:
            lay.b_off = b_off
            b_off += lay.groups * lay.c_out
    plan.n_weights, plan.n_biases = w_off, b_off
    tables.add(allk)
    if own:
        tables.upload()
        plan.bind()
    return plan


@dataclass
class SegmentTable:
    """Segments of the flat buffer [weights | biases]; the first ``n_weight_segments`` are weights."""

    offsets: np.ndarray  # (S+1,) int64
    cand: np.ndarray  # (S,) local candidate
    slot: np.ndarray  # (S,) init stream slot (2*slot weight, 2*slot+1 bias)
    bound: np.ndarray  # (S,) float32 U(-bound, bound)
    n_weight_segments: int
    weight_numel: np.ndarray  # (S_w,) elements of each weight segment
    weight_hw_out: np.ndarray  # (S_w,) output positions (for flops)


def _runs(starts, counts, steps) -> np.ndarray:
    """Concatenation of start[i] + step[i] * arange(count[i]) over i, without a loop."""
    counts = np.asarray(counts, dtype=np.int64)
    first = np.repeat(np.cumsum(counts) - counts, counts)  # where each run begins
    within = np.arange(int(counts.sum()), dtype=np.int64) - first
    return (np.repeat(np.asarray(starts, dtype=np.int64), counts)
            + within * np.repeat(np.asarray(steps, dtype=np.int64), counts))


def layer_segments(layers, n_weights: int, n_biases: int, w_value, b_value, w_slot, b_slot
                   ) -> SegmentTable:
    """The segment table of packed ``layers`` (in flat-buffer order, offsets set): each layer's
    ``groups`` weight copies, then, for the layers with a bias, their bias copies. ``w_value``
    / ``b_value`` (layer -> float) give a segment's init parameter (NB201: the uniform bound,
    NB101: the normal std, 0 for a bias); ``w_slot`` / ``b_slot`` map a layer's structural
    slots to the init-stream slots of its weight and bias. Built with one pass over the layers
    for their scalars and numpy over the copies (a chunk of 1,024 NB201 candidates has 90
    layers and about 45,000 weight segments)."""
    groups = np.array([lay.groups for lay in layers], dtype=np.int64)
    biased = [lay for lay in layers if lay.has_bias]
    bgroups = np.array([lay.groups for lay in biased], dtype=np.int64)
    offs = np.concatenate([
        _runs([lay.w_off for lay in layers], groups, [lay.seg_len for lay in layers]),
        _runs([n_weights + lay.b_off for lay in biased], bgroups, [lay.c_out for lay in biased]),
        np.array([n_weights + n_biases], dtype=np.int64)])
    n_w = int(groups.sum())
    wv = np.array([w_value(lay) for lay in layers])  # float32 (NB201) or float64 (NB101)
    bv = np.array([b_value(lay) for lay in biased], dtype=wv.dtype)
    cand = np.concatenate([lay.cand for lay in layers] + [lay.cand for lay in biased])
    slot = np.concatenate([w_slot(lay.slots) for lay in layers]
                          + [b_slot(lay.slots) for lay in biased])
    hw = np.array([lay.hw_out for lay in layers], dtype=np.int64)
    return SegmentTable(offs, cand.astype(np.int64, copy=False), slot.astype(np.int64, copy=False),
                        np.concatenate([np.repeat(wv, groups), np.repeat(bv, bgroups)]), n_w,
                        np.diff(offs[: n_w + 1]), np.repeat(hw, groups))


def segment_table(plan: Plan) -> SegmentTable:
    """NB201: uniform bounds 1/sqrt(fan_in) (float32) for weights and biases; a layer's weight
    draws from stream slot 2*slot and its bias from 2*slot + 1."""
    def bound(lay):
        return bound_of(lay.fan_in)

    return layer_segments(plan.layers, plan.n_weights, plan.n_biases, bound, bound,
                          lambda s: 2 * np.asarray(s, np.int64),
                          lambda s: 2 * np.asarray(s, np.int64) + 1)
