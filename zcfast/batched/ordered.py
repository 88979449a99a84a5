"""Index-add in a fixed order, without atomics, first- and second-order differentiable.

``ordered_index_add_(node, src, rounds)`` computes ``node[:, tgt[i]] += src[:, i]`` for
i = 0, 1, ... in this order, like ``Tensor.index_add_`` on the CPU (which adds sequentially in
index order). On CUDA ``index_add_`` adds with atomics, so when a target repeats (a candidate
with several edges in one section of a node) its float32 terms arrive in a varying order and
the sum varies run to run; its backward's backward (grasp's Hessian-gradient product) is again
an ``index_add_``. Here the entries are split into *rounds* in which every target occurs once
(round r: the r-th occurrence of each target, see ``index_rounds``); the rounds run in order,
so no two additions race for one element and every element receives the same additions in the
same order as the CPU loop. The backward (a gather) and its own backward (this add again) keep
that order, so the values are reproducible, and equal to the CPU's, to every order grasp needs.
"""

from __future__ import annotations

import numpy as np
import torch


def rounds_of(t) -> list:
    """[(positions or None, targets)] per round for the 1-D index ``t`` (a host sequence), as
    int64 numpy arrays; ``None`` positions mean "every entry" (no target repeats: one round).
    Round r holds the entries that are the r-th occurrence of their target, in index order.
    Vectorised: a stable sort groups equal targets with their entries in index order, and an
    entry's occurrence number is its place in its group."""
    t = np.asarray(t, dtype=np.int64).reshape(-1)
    n = len(t)
    order = np.argsort(t, kind="stable")
    st = t[order]
    starts = np.flatnonzero(np.r_[True, st[1:] != st[:-1]]) if n else np.zeros(0, np.int64)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    top = int(rank.max()) if n else 0
    if top == 0:
        return [(None, t)]
    pos = [np.flatnonzero(rank == r) for r in range(top + 1)]
    return [(p, t[p]) for p in pos]


def index_rounds(tgt: torch.Tensor) -> list:
    """:func:`rounds_of` for a device index, as device tensors. One device-to-host copy of
    ``tgt`` and one copy back per round: the packed engine builds its rounds on the host with
    its plan instead (plan.py), this is for indices that only exist on the device."""
    rounds = rounds_of(tgt.tolist())
    if rounds[0][0] is None:
        return [(None, tgt)]
    return [(torch.as_tensor(pos, device=tgt.device), torch.as_tensor(t, device=tgt.device))
            for pos, t in rounds]


def _add_rounds(out: torch.Tensor, src: torch.Tensor, rounds: list) -> torch.Tensor:
    for pos, t in rounds:  # targets distinct within a round: no two adds to one element
        out.index_add_(1, t, src if pos is None else src.index_select(1, pos))
    return out


class _OrderedIndexAdd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, node, src, rounds, tgt):
        ctx.rounds, ctx.tgt = rounds, tgt
        ctx.mark_dirty(node)
        return _add_rounds(node, src, rounds)

    @staticmethod
    def backward(ctx, grad):
        return grad, _OrderedGather.apply(grad, ctx.rounds, ctx.tgt), None, None


class _OrderedGather(torch.autograd.Function):
    """grad.index_select(1, tgt), whose backward is the ordered add (not an atomic index_add_)."""

    @staticmethod
    def forward(ctx, grad, rounds, tgt):
        ctx.rounds, ctx.tgt, ctx.shape = rounds, tgt, grad.shape
        return grad.index_select(1, tgt)

    @staticmethod
    def backward(ctx, v):
        return _OrderedIndexAdd.apply(v.new_zeros(ctx.shape), v, ctx.rounds, ctx.tgt), None, None


def ordered_index_add_(node: torch.Tensor, src: torch.Tensor, rounds: list, tgt: torch.Tensor):
    """In place: node (B, K, F) [:, tgt[i]] += src (B, n, F) [:, i], i in order (see module doc);
    ``rounds = index_rounds(tgt)`` (callers cache it: it costs a device-to-host copy)."""
    return _OrderedIndexAdd.apply(node, src, rounds, tgt)
