"""The packed engine: K NB201 candidates in one forward/backward (see plan.py for the layout).

Passes, each shared by every proxy that needs it:
- *loss pass* (grad_norm, snip, plain, fisher, grasp): one forward, one backward for the weights
  and the pre-BN conv outputs (fisher), plus the double backward of grasp when requested.
  Loss = sum over candidates of each one's mean cross-entropy, so every candidate gets exactly
  its own gradient (and, the Hessian being block diagonal, its own Hessian-gradient product).
- *jacobian pass* (jacob_cov): every candidate reads its own copy of the input, so d(sum of
  outputs)/dx comes out per candidate.
- *synflow pass*: float64, |weights|, all-ones input of batch 1, BatchNorm removed except in
  the two reduction blocks (the paper code's rule).
NASWOT codes are collected by the fused kernel during whichever forward runs first; params and
flops are counted from the plan.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from zcfast.batched.ordered import index_rounds, ordered_index_add_
from zcfast.batched.plan import Plan, SegmentTable, build_plan, segment_table
from zcfast.ops.fisher import fisher_channels
from zcfast.ops.init import fill_uniform
from zcfast.ops.naswot import naswot_kernel
from zcfast.ops.saliency import segment_saliency
from zcfast.spaces import nb201
from zcfast.spaces.nb201_model import STAGE_CHANNELS

LOSS_PROXIES = ("grad_norm", "snip", "plain", "grasp", "fisher")
SUPPORTED = LOSS_PROXIES + ("jacob_cov", "synflow", "nwot", "params", "flops", "l2_norm")

_BN_EPS = 1e-5  # nn.BatchNorm2d's default


def _bn(h: torch.Tensor) -> torch.Tensor:
    # train-mode BatchNorm with batch statistics. The affine BNs of the per-model network start
    # at weight 1, bias 0, and x*1+0 is exact, so one non-affine call covers both flavours.
    return F.batch_norm(h, None, None, training=True, momentum=0.0, eps=_BN_EPS)


def _conv2d(x, w, b, stride: int, padding: int, groups: int) -> torch.Tensor:
    """Grouped convolution. float64 on CPU has no oneDNN kernel and PyTorch's fallback loops
    over the groups one slow convolution at a time (100k calls for a synflow pass of 64
    candidates); there it runs as im2col + one batched GEMM per layer instead (same math)."""
    if groups == 1 or x.dtype != torch.float64 or x.device.type != "cpu":
        return F.conv2d(x, w, b, stride=stride, padding=padding, groups=groups)
    B, cin, H, W = x.shape
    cout, cin_g, kh, kw = w.shape
    og = cout // groups
    if kh == 1 and stride == 1 and padding == 0:
        cols = x.reshape(B, groups, cin_g, H * W)
        ho, wo = H, W
    else:
        cols = F.unfold(x, (kh, kw), padding=padding, stride=stride)  # (B, cin*kh*kw, L)
        ho = (H + 2 * padding - kh) // stride + 1
        wo = (W + 2 * padding - kw) // stride + 1
        cols = cols.reshape(B, groups, cin_g * kh * kw, ho * wo)
    wg = w.reshape(groups, og, cin_g * kh * kw)
    if B == 1:
        y = torch.bmm(wg, cols[0])  # (G, og, L)
        y = y.view(1, cout, ho, wo)
    else:
        y = torch.einsum("gok,bgkl->bgol", wg, cols).reshape(B, cout, ho, wo).contiguous()
    if b is not None:
        y = y + b.view(1, -1, 1, 1)
    return y


class _BoxSum3(torch.autograd.Function):
    """y = sum of the 3x3 neighbourhood (zero padding) per channel. The operator is
    self-adjoint, so the backward is the same op, and double backward (grasp) stays on the
    fast depthwise-convolution path instead of PyTorch's per-group convolution fallback."""

    @staticmethod
    def forward(ctx, x):
        if x.dtype == torch.float64 and x.device.type == "cpu":
            # no oneDNN depthwise conv in float64: separable sums of shifted views (measured
            # 1.7x faster than avg_pool2d on CPU here)
            H, W = x.shape[2], x.shape[3]
            p = F.pad(x, (1, 1, 1, 1))
            r = p[:, :, 0:H] + p[:, :, 1 : H + 1] + p[:, :, 2 : H + 2]
            return r[..., 0:W] + r[..., 1 : W + 1] + r[..., 2 : W + 2]
        c = x.shape[1]
        box = torch.ones(c, 1, 3, 3, dtype=x.dtype, device=x.device)
        return F.conv2d(x, box, padding=1, groups=c)

    @staticmethod
    def backward(ctx, g):
        return _BoxSum3.apply(g)


class PackedNB201:
    """K NB201 candidates with counter-based weights (seed, cell code, slot)."""

    def __init__(self, codes, num_classes: int, *, flavour: str = "paper", seed: int = 0,
                 input_size: int = 32, device="cpu", backend: str | None = None,
                 dtype=torch.float32):
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"PackedNB201 computes in float32 or float64, not {dtype}")
        self.dtype = dtype  # of the loss/jacobian passes; synflow is always float64
        self.device = torch.device(device)
        self.backend = backend
        self.plan: Plan = build_plan(codes, num_classes, flavour, input_size, device=self.device)
        self.table: SegmentTable = segment_table(self.plan)
        self.seed = int(seed)
        self._pool_cache: dict = {}
        # node sums in index order without atomics (see _accumulate): on by default on CUDA,
        # where index_add_ with repeated targets is not reproducible
        self.ordered_accumulation = self.device.type == "cuda"
        self._rounds_cache: dict = {}
        t = self.table
        self.flat = torch.empty(self.plan.n_weights + self.plan.n_biases, dtype=torch.float32,
                                device=self.device)
        codes_t = torch.as_tensor(self.plan.codes, device=self.device)
        # weight init: the native CPU loop / CUDA kernel by default; a backend forced for the
        # reductions (e.g. triton in tests) only applies to init on a GPU
        init_backend = backend if (backend is not None and self.device.type == "cuda") else None
        fill_uniform(
            self.flat, torch.as_tensor(t.offsets, device=self.device),
            codes_t[torch.as_tensor(t.cand, device=self.device)],
            torch.as_tensor(t.slot, device=self.device), torch.as_tensor(t.bound, device=self.device),
            self.seed, backend=init_backend,
        )

    @property
    def K(self) -> int:
        return self.plan.K

    # ---- parameters ----------------------------------------------------------------------
    def params(self, dtype=None, absolute: bool = False, requires_grad: bool = True):
        """Per-layer leaf tensors (views of the flat buffer, or of a converted copy)."""
        flat = self.flat
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

    # ---- forward ---------------------------------------------------------------------------
    def forward(self, x, ws, bs, *, bn: bool = True, per_candidate_input: bool = False,
                acts: list | None = None, relus: list | None = None) -> torch.Tensor:
        """Logits (B, K, classes). ``bn=False``: synflow rule (BN only in reduction blocks).
        ``acts`` collects (pre-BN conv/linear output, layer); ``relus`` collects (ReLU input,
        group -> candidate, channels per group)."""
        plan, K = self.plan, self.plan.K
        allk = plan.stem.cand

        def conv(h, lay, groups=1):
            y = _conv2d(h, ws[lay.name], bs.get(lay.name), lay.stride, lay.padding, groups)
            if acts is not None:
                acts.append((y, lay))
            return y

        if per_candidate_input:
            h = conv(x, plan.stem, groups=K)  # x: (B, K*3, H, W)
        else:
            h = conv(x, plan.stem)  # shared input: one dense conv producing K*16 channels
        if bn:
            h = _bn(h)
        red = 0
        for c, nodes in enumerate(plan.cells):
            stage = plan.stage_of_cell[c]
            C = STAGE_CHANNELS[stage]
            if stage > red:
                h = self._reduction(h, plan.reductions[red], ws, conv, relus, allk)
                red += 1
            h = self._cell(h, nodes, C, ws, conv, relus, bn)
        if bn:
            h = _bn(h)
        if relus is not None:
            relus.append((h, allk, STAGE_CHANNELS[-1]))
        f = F.relu(h).mean((2, 3))  # global average pool
        B = f.shape[0]
        f = f.view(B, K, -1).transpose(0, 1)  # (K, B, 64)
        head = plan.head
        logits = torch.baddbmm(bs[head.name].view(K, 1, -1), f, ws[head.name].transpose(1, 2))
        logits = logits.transpose(0, 1)  # (B, K, classes)
        if acts is not None:
            acts.append((logits, head))
        return logits

    def _reduction(self, h, layers, ws, conv, relus, allk):
        ca, cb, sc = layers
        K = self.plan.K
        if relus is not None:
            relus.append((h, allk, ca.c_in))
        a = _bn(conv(F.relu(h), ca, groups=K))
        if relus is not None:
            relus.append((a, allk, ca.c_out))
        b = _bn(conv(F.relu(a), cb, groups=K))
        s = conv(F.avg_pool2d(h, 2, 2), sc, groups=K)
        return s + b

    def _pool3(self, x: torch.Tensor) -> torch.Tensor:
        """AvgPool2d(3, stride 1, pad 1, count_include_pad=False) as a 3x3 box sum (depthwise
        conv, self-adjoint, see _BoxSum3) times 1/(number of valid neighbours): the same values
        to rounding, 2-4x faster on CPU than the pooling kernels forward, backward and in grasp's
        double backward."""
        hgt, wid = x.shape[2], x.shape[3]
        key = (hgt, wid, x.dtype, x.device)
        if key not in self._pool_cache:
            ones = torch.ones(1, 1, hgt, wid, dtype=x.dtype, device=x.device)
            box = torch.ones(1, 1, 3, 3, dtype=x.dtype, device=x.device)
            self._pool_cache[key] = 1.0 / F.conv2d(ones, box, padding=1)
        return _BoxSum3.apply(x) * self._pool_cache[key]

    def _cell(self, h, nodes, C, ws, conv, relus, bn):
        B, KC, H, W = h.shape
        K = KC // C
        states = [h.reshape(B, K, C * H * W)]  # block view: one row of C*H*W floats per candidate
        for nd in nodes:
            node = h.new_zeros(B, K, C * H * W)
            if nd.n_total == 0:  # every candidate has `none` on all edges into this node
                states.append(node)
                continue
            src = states[0] if len(states) == 1 else torch.cat(states, 1)
            g = src.index_select(1, nd.gather).view(B, nd.n_total * C, H, W)
            nconv = nd.n_conv1 + nd.n_conv3
            sizes = [n * C for n in (nd.n_skip, nconv, nd.n_pool) if n]
            # split (not slicing): its backward is one cat, where each slice's backward would
            # materialise a zero tensor of the full gathered size
            pieces = list(g.split(sizes, 1)) if len(sizes) > 1 else [g]
            parts = []
            if nd.n_skip:
                parts.append(pieces.pop(0))
            if nconv:
                pre = pieces.pop(0)
                if relus is not None:
                    relus.append((pre, nd.conv_cand, C))
                r = F.relu(pre)
                rs = r.split([nd.n_conv1 * C, nd.n_conv3 * C], 1) if nd.n_conv1 and nd.n_conv3 else [r]
                outs = []
                if nd.n_conv1:
                    outs.append(conv(rs[0], nd.conv1, groups=nd.n_conv1))
                if nd.n_conv3:
                    outs.append(conv(rs[-1], nd.conv3, groups=nd.n_conv3))
                if bn:  # per-channel statistics: normalising the two parts apart is the same
                    outs = [_bn(o) for o in outs]
                parts.append(outs[0] if len(outs) == 1 else torch.cat(outs, 1))
            if nd.n_pool:
                parts.append(self._pool3(pieces.pop(0)))
            for part, tgt in zip(parts, nd.targets):
                node = self._accumulate(node, tgt, part.reshape(B, -1, C * H * W))
            states.append(node)
        return states[3].view(B, KC, H, W)

    def _accumulate(self, node, tgt, src):
        """node[:, tgt[i]] += src[:, i], i in order: index_add_, which adds sequentially on the
        CPU; with ``ordered_accumulation`` (CUDA, where index_add_ uses atomics) the same
        additions in the same order, in rounds without atomics (zcfast/batched/ordered.py)."""
        if not self.ordered_accumulation:
            return node.index_add_(1, tgt, src)
        key = id(tgt)
        if key not in self._rounds_cache:  # holding tgt keeps its id from being reused
            self._rounds_cache[key] = (tgt, index_rounds(tgt))
        return ordered_index_add_(node, src, self._rounds_cache[key][1], tgt)

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

        _, ws, bs = self.params(requires_grad=False)
        K = self.K
        xr = x.repeat(1, K, 1, 1).requires_grad_(True)  # (B, K*3, H, W): one copy per candidate
        out = self.forward(xr, ws, bs, per_candidate_input=True, relus=relus)
        total = out.sum()
        # a pass where no candidate's output depends on its input (all-`none` cells) has no
        # path to xr at all: their Jacobian is zero (the score then comes out NaN, as it should)
        gx = (torch.autograd.grad(total, xr, allow_unused=True)[0] if total.requires_grad else None)
        if gx is None:
            gx = torch.zeros_like(xr)
        B = x.shape[0]
        jac = gx.view(B, K, -1).transpose(0, 1)  # (K, B, 3*H*W)
        return jacob_cov_scores(jac)  # batched: one eigvalsh for the K candidates

    def synflow_pass(self) -> np.ndarray:
        flat_w, ws, bs = self.params(torch.float64, absolute=True)
        size = self.plan.input_size
        ones = torch.ones(1, 3, size, size, dtype=torch.float64, device=self.device)
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

    def counts(self) -> dict:
        """params and flops per candidate from the plan (no tensor work)."""
        t = self.table
        nw = t.n_weight_segments
        lens = np.diff(t.offsets)
        params = np.bincount(t.cand, weights=lens, minlength=self.K).astype(np.float64)
        # BatchNorm affine parameters of the per-model network (2 per channel): stem, the two
        # BNs of each reduction block, the head; cell BNs only in the official flavour.
        bn = 2 * (STAGE_CHANNELS[0] + 2 * STAGE_CHANNELS[1] + 2 * STAGE_CHANNELS[2] + STAGE_CHANNELS[2])
        params += bn
        if self.plan.flavour == "official":
            for nodes, stage in zip(self.plan.cells, self.plan.stage_of_cell):
                C = STAGE_CHANNELS[stage]
                for nd in nodes:
                    params += 2 * C * np.bincount(nd.conv_cand, minlength=self.K)
        flops = np.bincount(t.cand[:nw], weights=t.weight_numel * t.weight_hw_out,
                            minlength=self.K).astype(np.float64)
        return {"params": params, "flops": flops}

    # ---- all requested proxies ----------------------------------------------------------------
    def compute(self, x, y, proxies) -> dict:
        with _reproducible(self.device):
            return self._compute(x, y, proxies)

    def _compute(self, x, y, proxies) -> dict:
        want = set(proxies)
        x = x.to(self.device, self.dtype)
        y = y.to(self.device)
        bad = want - set(SUPPORTED)
        if bad:
            raise ValueError(f"the packed engine does not support {sorted(bad)}")
        out = {}
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


def codes_of(archs) -> np.ndarray:
    return np.asarray([nb201.code_of_index(int(i)) for i in nb201.resolve(archs)], dtype=np.int64)
