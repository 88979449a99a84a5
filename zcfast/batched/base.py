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

from contextlib import contextmanager, nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from zcfast.batched.upload import DeviceTables
from zcfast.ops.fisher import fisher_channels
from zcfast.ops.init import fill_uniform
from zcfast.ops.naswot import naswot_kernel
from zcfast.ops.saliency import segment_saliency

LOSS_PROXIES = ("grad_norm", "snip", "plain", "grasp", "fisher")
# compute precision of the float32 loss/jacobian/nwot passes (docs/performance.md): fp32 as
# PyTorch runs it by default, tf32 (CUDA: TF32 matmuls and cuDNN convolutions), bf16 (autocast
# to bfloat16 on the CPU and on CUDA). synflow stays float64 whatever is chosen.
PRECISIONS = ("fp32", "tf32", "bf16")
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

    def _setup(self, stream_keys, *, seed: int, device, backend: str | None, dtype,
               tables: DeviceTables | None = None, precision: str = "fp32") -> None:
        """Common state, and the segment table from which the flat buffer of every weight and
        bias is drawn: the streams (seed, candidate stream key, slot) (docs/nb201.md, weights).

        ``tables``: the builder's index arrays registered for the device (upload.py); the
        segment table's arrays join them. Nothing is sent yet: :meth:`_materialize` (at the
        start of ``compute`` or at the first use of ``flat``) sends every registered table in
        one copy, calls the plan's ``bind()`` when the plan uses these tables, and draws the
        weights on the device. Without ``tables``, the model uses tables of its own."""
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"the packed engine computes in float32 or float64, not {dtype}")
        self.dtype = dtype  # of the loss/jacobian passes; synflow is always float64
        self.device = torch.device(device)
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}: expected one of {PRECISIONS}")
        if precision != "fp32" and dtype != torch.float32:
            raise ValueError(f"precision {precision!r} applies to float32 scoring, not {dtype}")
        if precision == "tf32" and self.device.type != "cuda":
            raise ValueError(f"precision 'tf32' needs a CUDA device, not {self.device}")
        self.precision = precision
        self.backend = backend
        self.seed = int(seed)
        t = self.table
        # the segment table is checked here, on the host, once: the fused ops then skip their
        # own device-side checks of it (each a device-to-host sync on a GPU)
        lens = np.diff(t.offsets)
        n_flat = self.plan.n_weights + self.plan.n_biases
        if len(t.offsets) and (t.offsets[0] < 0 or (lens < 0).any() or t.offsets[-1] > n_flat):
            raise ValueError("packed model: segment table offsets are not non-decreasing within "
                             f"[0, {n_flat}]")
        nw = t.n_weight_segments
        self._max_len_w = int(lens[:nw].max()) if nw else 0
        self.tables = DeviceTables(self.device) if tables is None else tables
        tb = self.tables
        keys = np.asarray(stream_keys, dtype=np.int64)[t.cand]
        # registered now, sent with the first chunk's other host data in one copy: the weights
        # are drawn on the device when first needed (_materialize)
        self._init_np = [tb.add(np.ascontiguousarray(a)) for a in (t.offsets, keys, t.slot, t.bound)]
        self._flat = None
        self._off_w = None

    def _materialize(self) -> None:
        """Upload every registered table in one copy, bind the plan to it and draw the flat
        weight buffer (once; a builder that sets ``flat`` itself has nothing to do here)."""
        init = getattr(self, "_init_np", None)
        if init is None or self._flat is not None:
            return
        tb = self.tables
        tb.upload()
        if getattr(self.plan, "tables", None) is tb:
            self.plan.bind()
        flat = torch.empty(self.plan.n_weights + self.plan.n_biases, dtype=torch.float32,
                           device=self.device)
        # weight init: the native CPU loop / CUDA kernel by default; a backend forced for the
        # reductions (e.g. triton in tests) only applies to init on a GPU
        backend = self.backend
        init_backend = backend if (backend is not None and self.device.type == "cuda") else None
        off, k, slot, bound = (tb.get(a) for a in init)
        fill_uniform(flat, off, k, slot, bound, self.seed, backend=init_backend, check_values=False)
        self._off_w = off[: self.table.n_weight_segments + 1]
        self._flat = flat

    @property
    def flat(self) -> torch.Tensor:
        """The flat buffer of every weight and bias (drawn on first use, :meth:`_materialize`)."""
        if getattr(self, "_flat", None) is None:
            self._materialize()
        return self._flat

    @flat.setter
    def flat(self, value: torch.Tensor) -> None:
        self._flat = value

    @property
    def K(self) -> int:
        return self.plan.K

    def _index_tables(self) -> DeviceTables:
        """The model's device tables (a builder that does not call _setup gets its own)."""
        if getattr(self, "tables", None) is None:
            self.tables = DeviceTables(self.device)
        return self.tables

    def _weight_offsets(self) -> torch.Tensor:
        """Offsets of the weight segments on the device (set by _setup; a builder that does
        not call it gets them here, checked on the host, in one copy) and ``_max_len_w``."""
        self._materialize()
        if getattr(self, "_off_w", None) is None:
            self._off_w = self._index_tables().get(self._host_weight_offsets())
        return self._off_w

    def _host_weight_offsets(self) -> np.ndarray:
        """The weight segments' offsets on the host, checked, and ``_max_len_w`` set."""
        t = self.table
        nw = t.n_weight_segments
        off = np.ascontiguousarray(t.offsets[: nw + 1])
        lens = np.diff(off)
        if len(off) and (off[0] < 0 or (lens < 0).any() or off[-1] > self.plan.n_weights):
            raise ValueError("packed model: weight segment offsets are not non-decreasing "
                             f"within [0, {self.plan.n_weights}]")
        self._max_len_w = int(lens.max()) if nw else 0
        return off

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
        # one detach and one split for every layer (the layers' weights, then their biases, lie
        # in flat-buffer order): two operators per pass instead of two or three per layer
        parts = iter(flat.detach().split(self._split_sizes()))
        for lay in self.plan.layers:
            ws[lay.name] = next(parts).view(lay.w_shape).requires_grad_(requires_grad)
        for lay in self.plan.layers:
            if lay.has_bias:
                bs[lay.name] = next(parts)
        return flat[:nw], ws, bs

    def _split_sizes(self) -> list:
        """Sizes of the flat buffer's pieces: each layer's weights, then each layer's bias
        (checked once against the layers' offsets: together they tile the buffer)."""
        sizes = getattr(self, "_sizes", None)
        if sizes is None:
            plan = self.plan
            sizes, pos = [], 0
            for lay in plan.layers:
                if lay.w_off != pos:
                    raise ValueError(f"layer {lay.name}: weights at {lay.w_off}, expected {pos}")
                sizes.append(lay.groups * lay.seg_len)
                pos += sizes[-1]
            pos = 0
            for lay in plan.layers:
                if lay.has_bias:
                    if lay.b_off != pos:
                        raise ValueError(f"layer {lay.name}: bias at {lay.b_off}, expected {pos}")
                    sizes.append(lay.groups * lay.c_out)
                    pos += sizes[-1]
            if sum(sizes) != plan.n_weights + plan.n_biases:
                raise ValueError("packed model: the layers do not tile the flat buffer")
            self._sizes = sizes
        return sizes

    def forward(self, x, ws, bs, *, bn: bool = True, per_candidate_input: bool = False,
                acts: list | None = None, relus=None) -> torch.Tensor:
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
        host = self.reinit_tables(scheme, draw)
        self._pending_upload()
        get = self._index_tables().get
        u = torch.empty(nw, dtype=torch.float32, device=dev)
        fill_uniform(u, get(host["offsets"]), get(host["keys"]), get(host[("slots", int(draw))]),
                     torch.ones(nw_seg, dtype=torch.float32, device=dev), self.seed,
                     check_values=False)  # the segment table was checked on the host
        z = _random.uniform_to_normal(u)
        if scheme == "kaiming_normal":
            # output_size: the repeats' sum known on the host (no sync to size the result)
            z = z * get(host["std"]).repeat_interleave(get(host["numel"]), output_size=nw)
        out = torch.zeros(nw + self.plan.n_biases, dtype=self.dtype, device=dev)
        out[:nw] = z.to(self.dtype)
        return out

    def reinit_tables(self, scheme: str, draw: int = 0) -> dict:
        """The host tables of :meth:`reinit_flat` (``scheme``, ``draw``), registered with the
        model's device tables: asked for before the chunk's upload (a group's ``prepare``), they
        travel in its one copy. Offsets and stream keys of the weight segments, the slots of
        the draw, and for Kaiming-normal each segment's std and length."""
        from zcfast.proxies import _random

        c = self.__dict__.setdefault("_reinit_np", {})
        t = self.table
        nw_seg = t.n_weight_segments
        tb = self._index_tables()
        if "offsets" not in c:
            c["offsets"] = tb.add(np.ascontiguousarray(t.offsets[: nw_seg + 1], dtype=np.int64))
            c["keys"] = tb.add(np.ascontiguousarray(
                np.asarray(self.plan.codes, dtype=np.int64)[t.cand[:nw_seg]]))
        if ("slots", int(draw)) not in c:
            c[("slots", int(draw))] = tb.add(np.ascontiguousarray(
                _random.REINIT + int(draw) * _random._DRAW_STRIDE + t.slot[:nw_seg] // 2,
                dtype=np.int64))
        if scheme == "kaiming_normal" and "std" not in c:
            fan = np.concatenate([np.full(lay.groups, lay.fan_in) for lay in self.plan.layers])
            c["std"] = tb.add(np.ascontiguousarray(np.sqrt(2.0 / fan), dtype=np.float64))
            c["numel"] = tb.add(np.ascontiguousarray(t.weight_numel, dtype=np.int64))
        return c

    def register_noise(self, x: torch.Tensor, k: int) -> np.ndarray:
        """The host values of the k-th noise input shaped like ``x``
        (zcfast.proxies._random.noise_values), registered with the device tables (once)."""
        from zcfast.proxies import _random

        c = self.__dict__.setdefault("_host_np", {})
        key = ("noise", int(k), x.numel())
        if key not in c:
            c[key] = self._index_tables().add(_random.noise_values(x.numel(), k, self.seed).numpy())
        return c[key]

    def noise_input(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """zcfast.proxies._random.noise_input(x, k, seed) through the device tables: drawn on
        the host, registered by a group's ``prepare`` before the chunk's upload (so it travels
        in that one copy; otherwise registered and copied now)."""
        arr = self.register_noise(x, k)
        self._pending_upload()
        dtype = x.dtype if x.is_floating_point() else torch.float32
        return self._index_tables().get(arr).to(dtype).reshape(x.shape)

    def plan_codes(self, register: bool = False):
        """The candidates' codes (int64) on the device; ``register=True``: only registered for
        the chunk's upload (returns the host array)."""
        c = self.__dict__.setdefault("_host_np", {})
        if "codes" not in c:
            c["codes"] = self._index_tables().add(
                np.ascontiguousarray(np.asarray(self.plan.codes, dtype=np.int64)))
        if register:
            return c["codes"]
        self._pending_upload()
        return self._index_tables().get(c["codes"])

    def _pending_upload(self) -> None:
        """The weights drawn and every table registered so far on the device (one copy for
        all those not sent yet; nothing when there are none)."""
        self._materialize()
        self._index_tables().upload()

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
    # Each pass queues its device work and returns a _Deferred: the device tensors it needs on
    # the host and the host step that turns them into scores. compute() fetches the tensors of
    # every pass in one device-to-host copy at the end of the chunk (docs/performance.md);
    # called on its own (defer=False), a pass fetches its own.
    def loss_pass(self, x, y, want: set, relus=None, defer: bool = False):
        flat_w, ws, bs = self.params()
        names = [lay.name for lay in self.plan.layers]
        acts = [] if "fisher" in want else None
        grasp = "grasp" in want
        # a builder may route its layers through ops whose backward is twice differentiable
        # without per-group loops when the Hessian-gradient product follows (engine.py)
        self.double_backward = grasp
        try:
            with self._mixed():
                logits = self.forward(x, ws, bs, acts=acts, relus=relus)
        finally:
            self.double_backward = False
        B, K, ncls = logits.shape
        loss = F.cross_entropy(logits.reshape(B * K, ncls), y.repeat_interleave(K),
                               reduction="sum") / B
        wlist = [ws[n] for n in names]
        targets = wlist + ([a for a, _ in acts] if acts else [])
        grads = torch.autograd.grad(loss, targets, create_graph=grasp, allow_unused=True)
        gw = [g if g is not None else torch.zeros_like(w) for g, w in zip(grads[: len(wlist)], wlist)]
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
        sal = segment_saliency(flat_w.detach(), g_flat, hg_flat, self._weight_offsets(), backend=self.backend,
                               max_len=self._max_len_w)
        tensors = [sal]
        fis_layers = []
        if acts:
            for (a, lay), g in zip(acts, grads[len(wlist):]):
                if g is None:
                    continue
                if lay.k == 0:  # linear head: (B, K, classes) -> channels K*classes, no space
                    a2, g2 = a.detach().reshape(B, -1), g.detach().reshape(B, -1)
                else:
                    a2, g2 = a.detach(), g.detach()
                if a2.dtype != g2.dtype or a2.dtype not in (torch.float32, torch.float64):
                    a2, g2 = a2.float(), g2.float()  # bf16 activations: reduced in float32
                tensors.append(fisher_channels(a2, g2, lay.c_out, lay.fan_in, backend=self.backend))
                fis_layers.append(lay)
        cand = t.cand[:nw]
        with_fisher = acts is not None
        del acts, grads, gw, g_flat, hg_flat  # the closure below must not keep them alive

        def finish(host):
            sal = host[0]
            out = {"snip": self._per_candidate(sal[:, 0], cand),
                   "plain": self._per_candidate(sal[:, 1], cand),
                   "grad_norm": self._per_candidate(np.sqrt(sal[:, 2]), cand),
                   "grasp": -self._per_candidate(sal[:, 3], cand),
                   "l2_norm": self._per_candidate(np.sqrt(sal[:, 4]), cand)}
            if with_fisher:
                fis = np.zeros(self.K)
                for lay, per_group in zip(fis_layers, host[1:]):
                    fis += self._per_candidate(per_group, lay.cand)
                out["fisher"] = fis
            return out

        return _Deferred(tensors, finish).result(defer)

    def l2_pass(self, defer: bool = False):
        flat_w, _, _ = self.params(requires_grad=False)
        t = self.table
        nw = t.n_weight_segments
        sal = segment_saliency(flat_w, flat_w, None, self._weight_offsets(), backend=self.backend,
                               max_len=self._max_len_w)
        return _Deferred([sal], lambda h: self._per_candidate(np.sqrt(h[0][:, 4]), t.cand[:nw])
                         ).result(defer)

    def jacobian_pass(self, x, relus=None, defer: bool = False):
        from zcfast.proxies.measures import jacob_cov_corr, jacob_cov_finish

        c, finite = jacob_cov_corr(self.input_jacobian(x, relus))
        # batched: one eigvalsh for the K candidates, run last (it checks on the host)
        return _Deferred([lambda: jacob_cov_finish(c, finite)], lambda h: h[0]).result(defer)

    def input_jacobian(self, x, relus=None) -> torch.Tensor:
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
        with self._mixed():
            out = self.forward(xr, ws, bs, per_candidate_input=True, relus=relus)
        total = out.float().sum()
        # a pass where no candidate's output depends on its input (all-`none` cells) has no
        # path to xr at all: their Jacobian is zero (the score then comes out NaN, as it should)
        gx = (torch.autograd.grad(total, xr, allow_unused=True)[0] if total.requires_grad else None)
        if gx is None:
            gx = torch.zeros_like(xr)
        B = x.shape[0]
        return gx.view(B, K, -1).transpose(0, 1)  # (K, B, 3*H*W)

    def synflow_pass(self, defer: bool = False):
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
        sal = segment_saliency(flat_w.detach(), g_flat, None, self._weight_offsets(), backend=self.backend,
                               max_len=self._max_len_w)
        return _Deferred([sal], lambda h: self._per_candidate(h[0][:, 0], t.cand[:nw])).result(defer)

    def nwot_from(self, codes: _NwotCodes, defer: bool = False):
        """NASWOT's log|det K| per candidate from the kernel the forward accumulated."""
        k64 = (codes.kmat.double() + codes.feats.view(self.K, 1, 1)) * 0.5
        return _Deferred([torch.linalg.slogdet(k64).logabsdet], lambda h: h[0]).result(defer)

    def _mixed(self):
        """The precision context of a float32 forward (its backward follows the dtypes the
        forward recorded)."""
        p = getattr(self, "precision", "fp32")
        if p == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        if p == "tf32":
            return _tf32(self.device)
        return nullcontext()

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
        groups = []
        for name in sorted(want & set(modern.PACKED)):
            group = modern.PACKED[name]
            if all(g.names[0] != group.names[0] for g in groups):
                groups.append(group)
        for group in groups:  # host data of the groups: registered for the chunk's upload
            if group.prepare is not None:
                group.prepare(self, x, y, extra)
        self._pending_upload()  # the chunk's one host-to-device copy (weights drawn after it)
        pending = {}  # name -> _Deferred, in the order the passes ran
        for group in groups:
            res = group.fn(self, x, y, extra)
            pending[("modern", group.names[0])] = res if isinstance(res, _Deferred) else \
                _Deferred([], lambda h, r=res: r)
        modern_want = want & set(modern.PACKED)
        want -= set(modern.PACKED)
        relus = _NwotCodes(self, x.shape[0]) if "nwot" in want else None
        relus_done = False
        if want & set(LOSS_PROXIES):
            pending["loss"] = self.loss_pass(x, y, want, relus=relus, defer=True)
            relus_done = relus is not None
        if "jacob_cov" in want:
            pending["jacob_cov"] = self.jacobian_pass(x, relus=None if relus_done else relus,
                                                      defer=True)
            relus_done = relus_done or relus is not None
        if "nwot" in want:
            if not relus_done:
                _, ws, bs = self.params(requires_grad=False)
                with torch.no_grad(), self._mixed():
                    self.forward(x, ws, bs, relus=relus)
            pending["nwot"] = self.nwot_from(relus, defer=True)
        if "synflow" in want:
            pending["synflow"] = self.synflow_pass(defer=True)
        if "l2_norm" in want and "loss" not in pending:
            pending["l2_norm"] = self.l2_pass(defer=True)
        host = _Deferred.fetch(list(pending.values()))  # the chunk's one device-to-host copy
        for name, value in zip(pending, host):
            if isinstance(name, tuple):  # a modern group
                out.update({k: v for k, v in value.items() if k in modern_want})
            elif name == "loss":
                out.update({k: v for k, v in value.items() if k in want})
            else:
                out[name] = value
        if want & {"params", "flops"}:
            cnt = self.counts()
            out.update({k: cnt[k] for k in ("params", "flops") if k in want})
        return out


_NUMPY = {torch.float64: np.float64, torch.float32: np.float32, torch.float16: np.float16,
          torch.int64: np.int64, torch.int32: np.int32, torch.int16: np.int16, torch.int8: np.int8,
          torch.uint8: np.uint8, torch.bool: np.bool_}


def _bytes(t: torch.Tensor) -> torch.Tensor:
    """The bytes of ``t`` (a flat uint8 view of a contiguous copy)."""
    t = t.contiguous().reshape(-1)
    if t.numel() <= 1:  # a single element may keep any stride; the view needs stride 1
        t = t.as_strided((t.numel(),), (1,))
    return t.view(torch.uint8)


class _Deferred:
    """Device tensors a pass needs on the host (or zero-argument callables that make them,
    run at fetch time: work that checks on the host goes last) and the host step ``finish``
    (list of numpy arrays -> scores). The arrays are float64 (exact conversions of the
    tensors), or with ``raw=True`` in the tensors' own dtypes."""

    def __init__(self, tensors: list, finish, raw: bool = False):
        self.tensors, self.finish, self.raw = tensors, finish, raw

    def result(self, defer: bool):
        return self if defer else _Deferred.fetch([self])[0]

    @staticmethod
    def fetch(items: list) -> list:
        """Every item's tensors in one device-to-host copy of their bytes (no conversion on the
        device), then their finish steps."""
        ts = []
        for d in items:
            for t in d.tensors:
                t = t() if callable(t) else t
                if t.requires_grad:
                    t = t.detach()
                if t.dtype not in _NUMPY:  # e.g. bfloat16 (no numpy type): float64 is exact
                    t = t.to(torch.float64)
                ts.append(t)
        # the tensors of each dtype in one flat tensor, the bytes of those in one buffer
        by_dtype: dict = {}
        for i, t in enumerate(ts):
            by_dtype.setdefault(t.dtype, []).append(i)
        start = [0] * len(ts)
        chunks, pos = [], 0
        for idx in by_dtype.values():
            flat = torch.cat([ts[i].reshape(-1) for i in idx]) if len(idx) > 1 else ts[idx[0]]
            chunks.append(_bytes(flat))
            for i in idx:
                start[i] = pos
                pos += ts[i].numel() * ts[i].element_size()
        if chunks:
            host = (torch.cat(chunks) if len(chunks) > 1 else chunks[0]).cpu().numpy()
        arrays = []
        for t, p in zip(ts, start):
            a = host[p : p + t.numel() * t.element_size()].view(_NUMPY[t.dtype])
            if not a.flags.aligned:  # after a dtype of smaller size
                a = a.copy()
            arrays.append(a.reshape(tuple(t.shape)))
        out, i = [], 0
        for d in items:
            k = len(d.tensors)
            part = arrays[i : i + k]
            if not d.raw:
                part = [a.astype(np.float64) for a in part]
            out.append(d.finish(part))
            i += k
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


@contextmanager
def _tf32(device: torch.device):
    """TF32 matmuls and cuDNN convolutions on CUDA for the block, restored afterwards."""
    m, c = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = m, c


class _NwotCodes:
    """The ``relus`` sink of the forward when NASWOT is asked: each ReLU input is folded into
    the candidates' Hamming kernels as the forward reaches it (the same kernel calls in the same
    order as over a list of them afterwards, so the same bits), instead of keeping every ReLU
    input of the network alive until the pass ends (autograd keeps the ReLU's output, not its
    input: the list held a whole extra set of activations)."""

    def __init__(self, model, batch: int):
        self.model = model
        self.kmat = torch.zeros(model.K, batch, batch, dtype=torch.float32, device=model.device)
        # the number of ReLU units of each candidate, summed on the device (integers: exact)
        self.feats = torch.zeros(model.K, dtype=torch.float64, device=model.device)

    def append(self, item) -> None:
        h, cand, C = item
        m = self.model
        cand_dev = m._index_tables().get(cand)
        dev = h.device.type
        # the forward may run under autocast (--precision bf16); the codes' Gram matrices are
        # exact integers in float32, as when they were built after the pass
        with torch.autocast(dev, enabled=False) if dev in ("cpu", "cuda") else nullcontext():
            naswot_kernel(h.detach(), cand_dev, C, self.kmat, backend=m.backend,
                          check_values=False)
        per_group = C * h.shape[2] * h.shape[3]
        self.feats.index_add_(0, cand_dev, torch.full((len(cand),), float(per_group),
                                                      dtype=torch.float64, device=m.device))
