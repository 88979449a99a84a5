"""The space-independent part of the packed engine: a packed model of K candidates whose weights
live in one flat buffer, and the passes every proxy shares (docs/engine.md).

A space's packed builder subclasses :class:`PackedModel`: it builds a *plan* (its layers as
:class:`~zcfast.batched.plan.PackedLayer`, in flat-buffer order, with ``n_weights``/``n_biases``)
and the segment table, and implements ``forward`` and ``counts``. Everything below works on those
alone:

- *loss pass* (grad_norm, snip, plain, fisher, grasp): one forward, one backward for the weights
  and the pre-BN conv outputs (fisher), plus the double backward of grasp when requested. Loss =
  sum over candidates of each one's mean cross-entropy, so every candidate gets exactly its own
  gradient (and, the Hessian being block diagonal, its own Hessian-gradient product).
- *jacobian pass* (jacob_cov): every candidate reads its own copy of the input, so d(sum of
  outputs)/dx comes out per candidate.
- *synflow pass*: float64, |weights|, all-ones input of batch 1, with the space's BatchNorm rule
  (``forward(..., bn=False)``).
NASWOT codes are collected by the fused kernel during whichever forward runs first; params and
flops are counted from the plan.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from zcfast.ops.fisher import fisher_channels
from zcfast.ops.init import fill_uniform
from zcfast.ops.naswot import naswot_kernel
from zcfast.ops.saliency import segment_saliency

LOSS_PROXIES = ("grad_norm", "snip", "plain", "grasp", "fisher")
SUPPORTED = LOSS_PROXIES + ("jacob_cov", "synflow", "nwot", "params", "flops", "l2_norm")


class PackedModel:
    """K candidates of one space in one tensor program (see the module docstring).

    Subclasses set ``self.plan`` and ``self.table`` and call :meth:`_setup`; they implement
    ``forward(x, ws, bs, *, bn=True, per_candidate_input=False, acts=None, relus=None)`` returning
    logits (B, K, classes), and ``counts()``. ``input_shape`` is the shape of one input sample
    (synflow's all-ones input).
    """

    SUPPORTED = SUPPORTED
    input_shape: tuple = ()

    def _setup(self, stream_keys, *, seed: int, device, backend: str | None, dtype) -> None:
        """Common state, then the flat buffer of every weight and bias, drawn from the streams
        (seed, candidate stream key, slot) of the segment table (docs/nb201.md, weights)."""
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"the packed engine computes in float32 or float64, not {dtype}")
        self.dtype = dtype  # of the loss/jacobian passes; synflow is always float64
        self.device = torch.device(device)
        self.backend = backend
        self.seed = int(seed)
        t = self.table
        self.flat = torch.empty(self.plan.n_weights + self.plan.n_biases, dtype=torch.float32,
                                device=self.device)
        keys_t = torch.as_tensor(np.asarray(stream_keys, dtype=np.int64), device=self.device)
        # weight init: the native CPU loop / CUDA kernel by default; a backend forced for the
        # reductions (e.g. triton in tests) only applies to init on a GPU
        init_backend = backend if (backend is not None and self.device.type == "cuda") else None
        fill_uniform(
            self.flat, torch.as_tensor(t.offsets, device=self.device),
            keys_t[torch.as_tensor(t.cand, device=self.device)],
            torch.as_tensor(t.slot, device=self.device), torch.as_tensor(t.bound, device=self.device),
            self.seed, backend=init_backend,
        )

    @property
    def K(self) -> int:
        return self.plan.K

    # ---- parameters ----------------------------------------------------------------------
    def params(self, dtype=None, absolute: bool = False, requires_grad: bool = True, flat=None):
        """Per-layer leaf tensors (views of the flat buffer, or of a converted copy). ``flat``:
        another buffer of the same layout (a re-initialisation, :meth:`reinit_flat`)."""
        flat = self.flat if flat is None else flat
        dtype = self.dtype if dtype is None else dtype
        if dtype != flat.dtype:
            flat = flat.to(dtype)
        if absolute:
            flat = flat.abs()
        nw = self.plan.n_weights
        ws, bs = {}, {}
        for lay in self.plan.layers:
            n = lay.groups * lay.seg_len
            w = flat[lay.w_off : lay.w_off + n].view(lay.w_shape).detach()
            ws[lay.name] = w.requires_grad_(requires_grad)
            if lay.has_bias:
                nb = lay.groups * lay.c_out
                b = flat[nw + lay.b_off : nw + lay.b_off + nb].detach()
                bs[lay.name] = b.requires_grad_(False)
        return flat[:nw], ws, bs

    def forward(self, x, ws, bs, *, bn: bool = True, per_candidate_input: bool = False,
                acts: list | None = None, relus: list | None = None) -> torch.Tensor:
        raise NotImplementedError

    def counts(self) -> dict:
        raise NotImplementedError

    def reinit_flat(self, scheme: str, draw: int = 0) -> torch.Tensor:
        """A flat buffer of the same layout holding the modern proxies' re-initialisation
        (zcfast.proxies._random.reinit_, docs/proxies_modern.md, "Randomness"): every weight
        segment z * std with z the normal numbers of the stream (seed, cell code,
        REINIT + 4096 draw + structural slot), std = sqrt(2 / fan_in) (``kaiming_normal``) or 1
        (``normal``), computed in float64 and rounded once to the engine's dtype; biases 0.
        The same bits as the per-model reference's weights."""
        from zcfast.proxies import _random

        if scheme not in _random.SCHEMES:
            raise ValueError(f"unknown re-initialisation {scheme!r}: expected one of {_random.SCHEMES}")
        if not 0 <= int(draw) < _random._MAX_DRAWS:
            raise ValueError(f"draw {draw} outside [0, {_random._MAX_DRAWS})")
        t = self.table
        nw_seg = t.n_weight_segments
        nw = self.plan.n_weights
        dev = self.device
        u = torch.empty(nw, dtype=torch.float32, device=dev)
        keys = np.asarray(self.plan.codes, dtype=np.int64)[t.cand[:nw_seg]]
        slots = _random.REINIT + int(draw) * _random._DRAW_STRIDE + t.slot[:nw_seg] // 2
        fill_uniform(u, torch.as_tensor(t.offsets[: nw_seg + 1], device=dev),
                     torch.as_tensor(keys, device=dev), torch.as_tensor(slots, device=dev),
                     torch.ones(nw_seg, dtype=torch.float32, device=dev), self.seed)
        z = _random.uniform_to_normal(u)
        if scheme == "kaiming_normal":
            fan = np.concatenate([np.full(lay.groups, lay.fan_in) for lay in self.plan.layers])
            std = torch.as_tensor(np.sqrt(2.0 / fan), dtype=torch.float64, device=dev)
            z = z * std.repeat_interleave(torch.as_tensor(t.weight_numel, device=dev))
        out = torch.zeros(nw + self.plan.n_biases, dtype=self.dtype, device=dev)
        out[:nw] = z.to(self.dtype)
        return out

    def weight_grad_flat(self, x, y, flat=None) -> torch.Tensor:
        """Flat gradient of every weight (no biases) of the loss pass's loss (sum over
        candidates of each one's mean cross-entropy) on (x, y)."""
        _, ws, bs = self.params(flat=flat)
        wlist = [ws[lay.name] for lay in self.plan.layers]
        logits = self.forward(x, ws, bs)
        B, K, ncls = logits.shape
        loss = F.cross_entropy(logits.reshape(B * K, ncls), y.repeat_interleave(K),
                               reduction="sum") / B
        grads = torch.autograd.grad(loss, wlist, allow_unused=True)
        return torch.cat([(g if g is not None else torch.zeros_like(w)).reshape(-1)
                          for g, w in zip(grads, wlist)])

    # ---- per-candidate reductions ------------------------------------------------------------
    def _per_candidate(self, seg_values: np.ndarray, seg_cand: np.ndarray) -> np.ndarray:
        # deterministic: bincount sums sequentially in float64
        return np.bincount(seg_cand, weights=seg_values, minlength=self.K)

    # ---- passes -----------------------------------------------------------------------------
    def loss_pass(self, x, y, want: set, relus: list | None = None) -> dict:
        flat_w, ws, bs = self.params()
        names = [lay.name for lay in self.plan.layers]
        acts = [] if "fisher" in want else None
        logits = self.forward(x, ws, bs, acts=acts, relus=relus)
        B, K, ncls = logits.shape
        loss = F.cross_entropy(logits.reshape(B * K, ncls), y.repeat_interleave(K),
                               reduction="sum") / B
        grasp = "grasp" in want
        wlist = [ws[n] for n in names]
        targets = wlist + ([a for a, _ in acts] if acts else [])
        grads = torch.autograd.grad(loss, targets, create_graph=grasp, allow_unused=True)
        gw = [g if g is not None else torch.zeros_like(w) for g, w in zip(grads[: len(wlist)], wlist)]
        out = {}
        hg_flat = None
        g_flat = torch.cat([g.reshape(-1) for g in gw])  # keeps the graph when grasp
        if grasp:
            # z = sum_l <g_l (detached), g_l>: one dot over the flat gradient; dz/dW = H g
            z = torch.dot(g_flat.detach(), g_flat)
            if z.requires_grad:
                hg = torch.autograd.grad(z, wlist, allow_unused=True)
                hg_flat = torch.cat([(h if h is not None else torch.zeros_like(w)).reshape(-1)
                                     for h, w in zip(hg, wlist)])
            else:
                hg_flat = torch.zeros_like(flat_w)
        g_flat = g_flat.detach()
        t = self.table
        nw = t.n_weight_segments
        off = torch.as_tensor(t.offsets[: nw + 1], device=self.device)
        sal = segment_saliency(flat_w.detach(), g_flat, hg_flat, off, backend=self.backend)
        sal = sal.cpu().numpy()
        cand = t.cand[:nw]
        out["snip"] = self._per_candidate(sal[:, 0], cand)
        out["plain"] = self._per_candidate(sal[:, 1], cand)
        out["grad_norm"] = self._per_candidate(np.sqrt(sal[:, 2]), cand)
        out["grasp"] = -self._per_candidate(sal[:, 3], cand)
        out["l2_norm"] = self._per_candidate(np.sqrt(sal[:, 4]), cand)
        if acts:
            fis = np.zeros(self.K)
            for (a, lay), g in zip(acts, grads[len(wlist):]):
                if g is None:
                    continue
                if lay.k == 0:  # linear head: (B, K, classes) -> channels K*classes, no space
                    a2, g2 = a.detach().reshape(B, -1), g.detach().reshape(B, -1)
                else:
                    a2, g2 = a.detach(), g.detach()
                per_group = fisher_channels(a2, g2, lay.c_out, lay.fan_in, backend=self.backend)
                fis += self._per_candidate(per_group.cpu().numpy(), lay.cand)
            out["fisher"] = fis
        return out

    def l2_pass(self) -> np.ndarray:
        flat_w, _, _ = self.params(requires_grad=False)
        t = self.table
        nw = t.n_weight_segments
        off = torch.as_tensor(t.offsets[: nw + 1], device=self.device)
        sal = segment_saliency(flat_w, flat_w, None, off, backend=self.backend).cpu().numpy()
        return self._per_candidate(np.sqrt(sal[:, 4]), t.cand[:nw])

    def jacobian_pass(self, x, relus: list | None = None) -> np.ndarray:
        from zcfast.proxies.measures import jacob_cov_scores

        return jacob_cov_scores(self.input_jacobian(x, relus))  # one eigvalsh for the K candidates

    def input_jacobian(self, x, relus: list | None = None) -> torch.Tensor:
        """(K, B, input size) d(sum of each candidate's outputs)/dx per sample (jacob_cov's and
        epe_nas's Jacobian). Kept for the rest of one ``compute`` call, so both proxies share one
        pass (a pass that must also collect NASWOT's ReLU inputs always runs)."""
        cached = getattr(self, "_jac", None)
        if relus is None and cached is not None:
            return cached
        self._jac = self._input_jacobian(x, relus)
        return self._jac

    def _input_jacobian(self, x, relus):
        _, ws, bs = self.params(requires_grad=False)
        K = self.K
        xr = x.repeat(1, K, 1, 1).requires_grad_(True)  # (B, K*C, H, W): one copy per candidate
        out = self.forward(xr, ws, bs, per_candidate_input=True, relus=relus)
        total = out.sum()
        # a pass where no candidate's output depends on its input (all-`none` cells) has no
        # path to xr at all: their Jacobian is zero (the score then comes out NaN, as it should)
        gx = (torch.autograd.grad(total, xr, allow_unused=True)[0] if total.requires_grad else None)
        if gx is None:
            gx = torch.zeros_like(xr)
        B = x.shape[0]
        return gx.view(B, K, -1).transpose(0, 1)  # (K, B, 3*H*W)

    def synflow_pass(self) -> np.ndarray:
        flat_w, ws, bs = self.params(torch.float64, absolute=True)
        ones = torch.ones(1, *self.input_shape, dtype=torch.float64, device=self.device)
        names = [lay.name for lay in self.plan.layers]
        wlist = [ws[n] for n in names]
        r = self.forward(ones, ws, bs, bn=False).sum()
        grads = torch.autograd.grad(r, wlist, allow_unused=True)
        g_flat = torch.cat([(g if g is not None else torch.zeros_like(w)).reshape(-1)
                            for g, w in zip(grads, wlist)])
        t = self.table
        nw = t.n_weight_segments
        off = torch.as_tensor(t.offsets[: nw + 1], device=self.device)
        sal = segment_saliency(flat_w.detach(), g_flat, None, off, backend=self.backend).cpu().numpy()
        return self._per_candidate(sal[:, 0], t.cand[:nw])

    def nwot_from(self, relus: list, batch: int) -> np.ndarray:
        K = self.K
        kmat = torch.zeros(K, batch, batch, dtype=torch.float32, device=self.device)
        feats = np.zeros(K)
        for h, cand, C in relus:
            naswot_kernel(h.detach(), torch.as_tensor(cand, device=self.device), C, kmat,
                          backend=self.backend)
            per_group = C * h.shape[2] * h.shape[3]
            feats += np.bincount(cand, minlength=K) * per_group
        k64 = (kmat.double() + torch.as_tensor(feats, device=self.device).view(K, 1, 1)) * 0.5
        return torch.linalg.slogdet(k64).logabsdet.cpu().numpy()

    # ---- all requested proxies ----------------------------------------------------------------
    def compute(self, x, y, proxies, extra_batches=()) -> dict:
        """{proxy: (K,) array}. ``extra_batches``: further (x, y) minibatches, for the proxies
        that need them (zico: the first), as in zcfast.proxies.compute_measures."""
        self._jac = None
        try:
            with _reproducible(self.device):
                return self._compute(x, y, proxies, extra_batches)
        finally:
            self._jac = None

    def _compute(self, x, y, proxies, extra_batches=()) -> dict:
        from zcfast.batched import modern

        want = set(proxies)
        x = x.to(self.device, self.dtype)
        y = y.to(self.device)
        bad = want - set(self.SUPPORTED)
        if bad:
            raise ValueError(f"the packed engine does not support {sorted(bad)}")
        extra = tuple((bx.to(self.device, self.dtype), by.to(self.device))
                      for bx, by in (extra_batches or ()))
        out = {}
        done: set = set()
        for name in sorted(want & set(modern.PACKED)):
            group = modern.PACKED[name]
            if group.names[0] in done:
                continue
            done.add(group.names[0])
            res = group.fn(self, x, y, extra)
            out.update({k: v for k, v in res.items() if k in want})
        want -= set(modern.PACKED)
        relus = [] if "nwot" in want else None
        if want & set(LOSS_PROXIES):
            res = self.loss_pass(x, y, want, relus=relus)
            relus_done = relus is not None
            out.update({k: v for k, v in res.items() if k in want})
        else:
            relus_done = False
        if "jacob_cov" in want:
            out["jacob_cov"] = self.jacobian_pass(x, relus=None if relus_done else relus)
            relus_done = relus_done or relus is not None
        if "nwot" in want:
            if not relus_done:
                _, ws, bs = self.params(requires_grad=False)
                with torch.no_grad():
                    self.forward(x, ws, bs, relus=relus)
            out["nwot"] = self.nwot_from(relus, x.shape[0])
        if "synflow" in want:
            out["synflow"] = self.synflow_pass()
        if "l2_norm" in want and "l2_norm" not in out:
            out["l2_norm"] = self.l2_pass()
        if want & {"params", "flops"}:
            cnt = self.counts()
            out.update({k: cnt[k] for k in ("params", "flops") if k in want})
        return out


@contextmanager
def _reproducible(device: torch.device):
    """On CUDA: cuDNN restricted to deterministic algorithms, chosen without timing (some of
    its default weight-gradient algorithms accumulate with atomics), restored afterwards."""
    if device.type != "cuda":
        yield
        return
    cd = torch.backends.cudnn
    old = (cd.deterministic, cd.benchmark)
    cd.deterministic, cd.benchmark = True, False
    try:
        yield
    finally:
        cd.deterministic, cd.benchmark = old
