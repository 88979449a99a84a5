"""Packed training: K NB201 candidates trained at once, step for step the same as training each
network alone (docs/reduced_training.md, "Packed training").

The packed forward of :class:`~zcfast.batched.engine.PackedNB201` already gives every candidate
its own channels, its own weights and its own train-mode BatchNorm statistics. Training adds
three things, each per candidate by construction:

- **Trainable parameters.** Every conv/linear weight and bias stays in the engine's flat buffer
  (now a leaf tensor in the training dtype); the BatchNorm affine parameters that the networks
  train (stem, reduction blocks, the head's BatchNorm, and the cell BatchNorms of the
  ``official`` flavour) live in a second flat buffer, one channel block per candidate.
- **One loss.** L = sum over candidates of each one's mean cross-entropy on the shared batch.
  The candidates share no parameter, so dL/dtheta_k is exactly candidate k's own gradient.
- **One optimizer over the two buffers.** SGD with momentum, weight decay and Nesterov is
  elementwise (decay, momentum buffer and update of an element read only that element), so one
  ``torch.optim.SGD`` over the flat buffers keeps a separate state for every candidate.

BatchNorm running statistics: ``F.batch_norm`` updates the running mean and (unbiased) variance
of every channel from that channel's batch statistics, so the packed running statistics are the
K networks' own. In evaluation mode the tracked BatchNorms use them; the paper flavour's cell
BatchNorms (``track_running_stats=False``) keep using the batch's statistics, as PyTorch does
for the per-model network.

The per-model reference is a plain ``nn.Module`` trained with ``torch.optim.SGD``
(:mod:`zcfast.reduced_training`); :func:`model_state` and :meth:`PackedTrainer.candidate_state`
put both in one keyed form so that tests compare every parameter and running statistic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zcfast.batched.engine import _BN_EPS, PackedNB201
from zcfast.spaces.nb201_model import INIT_CHANNELS

BN_MOMENTUM = 0.1  # nn.BatchNorm2d's default, the networks' own


@dataclass
class BNSite:
    """One packed BatchNorm call with trainable affine parameters and running statistics:
    ``groups`` blocks of ``C`` channels, block g belonging to candidate ``cand[g]``, known to the
    per-model network as ``keys[g]`` (see :func:`model_state`)."""

    name: str  # the site name the forward passes to _norm
    C: int
    cand: np.ndarray
    keys: list
    off: int = 0  # first channel in the BN buffers

    @property
    def n(self) -> int:
        return len(self.cand) * self.C


class PackedTrainer(PackedNB201):
    """K NB201 candidates with counter-based initial weights (seed, cell, slot), trained with
    SGD in one packed program. ``step(x, y, lr)`` runs one training step of every candidate on
    the shared batch; ``correct(x, y)`` counts each candidate's correct predictions in eval mode.
    """

    def __init__(self, codes, num_classes: int, *, flavour: str = "paper", seed: int = 0,
                 input_size: int = 32, init_channels: int = INIT_CHANNELS, device="cpu",
                 dtype=torch.float32, backend: str | None = None, lr: float = 0.1,
                 momentum: float = 0.9, weight_decay: float = 5e-4, nesterov: bool = True):
        super().__init__(codes, num_classes, flavour=flavour, seed=seed, input_size=input_size,
                         device=device, backend=backend, dtype=dtype, init_channels=init_channels)
        plan, K = self.plan, self.K
        allk = np.arange(K)
        # every conv/linear weight and bias: the initial float32 values, in the training dtype
        self.w = self.flat.to(dtype).clone().requires_grad_(True)
        sites = [BNSite("stem", plan.channels[0], allk, ["stem"] * K)]
        for r, (ca, cb, _) in enumerate(plan.reductions):
            sites.append(BNSite(ca.name, ca.c_out, allk, [f"red{r}.conv_a"] * K))
            sites.append(BNSite(cb.name, cb.c_out, allk, [f"red{r}.conv_b"] * K))
        sites.append(BNSite("lastact", plan.channels[-1], allk, ["lastact"] * K))
        if flavour == "official":  # affine, tracked cell BatchNorms
            for nodes in plan.cells:
                for nd in nodes:
                    for lay in (nd.conv1, nd.conv3):
                        if lay is not None:
                            sites.append(BNSite(lay.name, lay.c_out, lay.cand,
                                                [f"slot{int(s)}" for s in lay.slots]))
        off = 0
        for s in sites:
            s.off = off
            off += s.n
        self.bn_sites = {s.name: s for s in sites}
        self.n_bn = off
        dev = self.device
        # affine parameters: weights (1) then biases (0), as nn.BatchNorm2d starts
        self.bn = torch.cat([torch.ones(off, dtype=dtype, device=dev),
                             torch.zeros(off, dtype=dtype, device=dev)]).requires_grad_(True)
        self.running_mean = torch.zeros(off, dtype=dtype, device=dev)
        self.running_var = torch.ones(off, dtype=dtype, device=dev)
        self.training = True
        self.opt = torch.optim.SGD([self.w, self.bn], lr=lr, momentum=momentum,
                                   weight_decay=weight_decay, nesterov=nesterov)

    # ---- modes and parameters ----------------------------------------------------------------
    def train(self, mode: bool = True) -> PackedTrainer:
        self.training = bool(mode)
        return self

    def eval(self) -> PackedTrainer:
        return self.train(False)

    def views(self):
        """(ws, bs): per-layer views of the trainable buffer, in the forward's layout."""
        nw = self.plan.n_weights
        ws, bs = {}, {}
        for lay in self.plan.layers:
            ws[lay.name] = self.w[lay.w_off : lay.w_off + lay.groups * lay.seg_len].view(lay.w_shape)
            if lay.has_bias:
                a = nw + lay.b_off
                bs[lay.name] = self.w[a : a + lay.groups * lay.c_out]
        return ws, bs

    def _norm(self, h: torch.Tensor, site: str) -> torch.Tensor:
        s = self.bn_sites.get(site)
        if s is None:  # paper-flavour cell BatchNorm: no affine, batch statistics in both modes
            return F.batch_norm(h, None, None, training=True, momentum=0.0, eps=_BN_EPS)
        a, b, n = s.off, s.off + self.n_bn, s.n
        return F.batch_norm(h, self.running_mean[a : a + n], self.running_var[a : a + n],
                            self.bn[a : a + n], self.bn[b : b + n], training=self.training,
                            momentum=BN_MOMENTUM, eps=_BN_EPS)

    # ---- training and evaluation -------------------------------------------------------------
    def set_lr(self, lr: float) -> None:
        for g in self.opt.param_groups:
            g["lr"] = float(lr)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """One SGD step of every candidate on the batch (x, y); returns each one's loss."""
        self.train()
        x = x.to(self.device, self.dtype)
        y = y.to(self.device)
        ws, bs = self.views()
        logits = self.forward(x, ws, bs)  # (B, K, classes)
        B, K, ncls = logits.shape
        # per-candidate mean cross-entropy, summed: each candidate gets its own gradient
        per = F.cross_entropy(logits.reshape(B * K, ncls), y.repeat_interleave(K),
                              reduction="none").view(B, K).mean(0)
        self.opt.zero_grad(set_to_none=True)
        per.sum().backward()
        self.opt.step()
        return per.detach().cpu().numpy()

    @torch.no_grad()
    def correct(self, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """Correct predictions of every candidate on (x, y), in evaluation mode."""
        self.eval()
        x = x.to(self.device, self.dtype)
        y = y.to(self.device)
        ws, bs = self.views()
        pred = self.forward(x, ws, bs).argmax(-1)  # (B, K)
        return (pred == y.view(-1, 1)).sum(0).cpu().numpy().astype(np.int64)

    # ---- per-candidate state, keyed like model_state ----------------------------------------
    @torch.no_grad()
    def candidate_state(self, k: int) -> dict:
        """Candidate k's parameters and running statistics, keyed as :func:`model_state` keys
        the same network's (flattened float64 copies)."""
        t = self.table
        out = {}
        for s, (a, b) in enumerate(zip(t.offsets[:-1], t.offsets[1:])):
            if int(t.cand[s]) != k:
                continue
            slot, part = divmod(int(t.slot[s]), 2)
            out[f"{'bias' if part else 'weight'}:slot{slot}"] = self.w[a:b].double().cpu().clone()
        for site in self.bn_sites.values():
            for g in np.flatnonzero(site.cand == k):
                a = site.off + int(g) * site.C
                key = site.keys[g]
                n = site.C
                out[f"bn.weight:{key}"] = self.bn[a : a + n].double().cpu().clone()
                out[f"bn.bias:{key}"] = self.bn[self.n_bn + a : self.n_bn + a + n].double().cpu().clone()
                out[f"bn.running_mean:{key}"] = self.running_mean[a : a + n].double().cpu().clone()
                out[f"bn.running_var:{key}"] = self.running_var[a : a + n].double().cpu().clone()
        return out


@torch.no_grad()
def model_state(net: nn.Module) -> dict:
    """A per-model NB201 network's parameters and running statistics, keyed by structure:
    ``weight:slotS`` / ``bias:slotS`` for the conv/linear layer of slot S
    (:func:`~zcfast.spaces.nb201_model.slot_of`), ``bn.<field>:<site>`` for the BatchNorms that
    carry parameters (site ``stem``, ``red<r>.conv_a``, ``red<r>.conv_b``, ``lastact``, or
    ``slotS`` for the cell BatchNorm after the conv of slot S)."""
    from zcfast.spaces.nb201_model import Cell, ReLUConvBN, ResBlock

    out = {}

    def bn(m: nn.BatchNorm2d, key: str):
        if m.weight is not None:
            out[f"bn.weight:{key}"] = m.weight.double().cpu().clone().reshape(-1)
            out[f"bn.bias:{key}"] = m.bias.double().cpu().clone().reshape(-1)
        if m.running_mean is not None:
            out[f"bn.running_mean:{key}"] = m.running_mean.double().cpu().clone()
            out[f"bn.running_var:{key}"] = m.running_var.double().cpu().clone()

    for m in net.modules():
        if hasattr(m, "zc_slot"):
            out[f"weight:slot{m.zc_slot}"] = m.weight.double().cpu().clone().reshape(-1)
            if m.bias is not None:
                out[f"bias:slot{m.zc_slot}"] = m.bias.double().cpu().clone().reshape(-1)
    bn(net.stem[1], "stem")
    bn(net.lastact[0], "lastact")
    r = 0
    for layer in net.layers:
        if isinstance(layer, ResBlock):
            bn(layer.conv_a[2], f"red{r}.conv_a")
            bn(layer.conv_b[2], f"red{r}.conv_b")
            r += 1
        elif isinstance(layer, Cell):
            for e in layer.edges:
                if isinstance(e, ReLUConvBN):
                    bn(e[2], f"slot{e[1].zc_slot}")
    return out
