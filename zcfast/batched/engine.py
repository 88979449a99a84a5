"""The packed NB201 builder: K NB201 candidates in one forward/backward (plan.py has the layout;
the passes shared by every space are in base.py, docs/engine.md describes both).

Synflow's BatchNorm rule here is the paper code's: BatchNorm removed in the stem, the cells and
the head, kept in the two reduction blocks.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from zcfast.batched import modern
from zcfast.batched.base import LOSS_PROXIES, SUPPORTED, PackedModel, _reproducible
from zcfast.batched.ordered import index_rounds, ordered_index_add_
from zcfast.batched.plan import Plan, SegmentTable, build_plan, segment_table
from zcfast.batched.upload import DeviceTables
from zcfast.spaces import nb201
from zcfast.spaces.nb201_model import INIT_CHANNELS

__all__ = ["LOSS_PROXIES", "SUPPORTED", "PackedNB201", "_reproducible", "codes_of"]

# the paper's proxies (base.py) and the modern ones with a packed version (modern.py)
SUPPORTED = SUPPORTED + modern.names()

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


def _bn_eval_fresh(h: torch.Tensor) -> torch.Tensor:
    # eval-mode BatchNorm with fresh running statistics (mean 0, variance 1), weight 1, bias 0
    c = h.shape[1]
    return F.batch_norm(h, h.new_zeros(c), h.new_ones(c), training=False, eps=_BN_EPS)


class _GroupedConv(torch.autograd.Function):
    """Grouped convolution (no bias) whose backward is written with two calls that are
    themselves differentiable without a per-group loop: the input gradient a transposed
    convolution, the weight gradient ATen's convolution backward asked for the weight alone.
    PyTorch's own double backward of a grouped convolution (what grasp's Hessian-gradient
    product needs) runs one convolution per group, K*edges calls per layer on every device.
    Differentiating these two calls instead does not grow with the groups
    (tests/test_grouped_conv.py counts the operators of chunks of 4 and 8 cells). Used by the
    loss pass when grasp is asked (``double_backward``); docs/performance.md."""

    @staticmethod
    def forward(ctx, x, w, stride: int, padding: int, groups: int):
        dev = x.device.type
        if dev in ("cpu", "cuda") and torch.is_autocast_enabled(dev):  # reduced precision
            dt = torch.get_autocast_dtype(dev)
            x, w = x.to(dt), w.to(dt)
        ctx.save_for_backward(x, w)
        ctx.conf = (stride, padding, groups)
        with torch.autocast(dev, enabled=False) if dev in ("cpu", "cuda") else nullcontext():
            return F.conv2d(x, w, None, stride, padding, 1, groups)

    @staticmethod
    def backward(ctx, go):
        x, w = ctx.saved_tensors
        s, p, G = ctx.conf
        go = go.to(x.dtype)  # autograd casts the gradients back to the inputs' dtypes
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gx = _conv_input_grad(go, w, x.shape, s, p, G)
        if ctx.needs_input_grad[1]:
            gw = _conv_weight_grad(x, go, w.shape, s, p, G)
        return gx, gw, None, None, None


def _conv_input_grad(go, w, xshape, s: int, p: int, G: int) -> torch.Tensor:
    """d<go, conv(x, w)>/dx: a transposed convolution, its output padded to x's size."""
    kh, kw = w.shape[2], w.shape[3]
    oph = xshape[2] - ((go.shape[2] - 1) * s - 2 * p + kh)
    opw = xshape[3] - ((go.shape[3] - 1) * s - 2 * p + kw)
    return F.conv_transpose2d(go, w, None, s, p, (oph, opw), G)


def _conv_weight_grad(x, go, wshape, s: int, p: int, G: int) -> torch.Tensor:
    """d<go, conv(x, w)>/dw: ATen's convolution backward for the weight alone, one call for all
    groups, itself twice differentiable without a per-group loop. (Written out as a convolution
    of x, samples as channels, with go as a dilated kernel, it gave the same first derivative,
    but its float32 derivative lost grasp's Hessian-gradient product on CPU: measured, 1.61
    instead of -0.27 for NB201 cell 11224 in a chunk of two; docs/performance.md.)"""
    return torch.nn.grad.conv2d_weight(x, wshape, go, stride=s, padding=p, groups=G)


class _BoxSum3(torch.autograd.Function):
    """y = sum of the 3x3 neighbourhood (zero padding) per channel. The operator is
    self-adjoint, so the backward is the same op, and double backward (grasp) stays on the
    fast depthwise-convolution path instead of PyTorch's per-group convolution fallback."""

    @staticmethod
    def forward(ctx, x, boxes):
        """``boxes(C, dtype, device)``: (C, 1, 3, 3) ones (kept by the caller, made once per
        model, shape and dtype, never written; the backward asks for its gradient's dtype)."""
        ctx.boxes = boxes
        if x.dtype == torch.float64 and x.device.type == "cpu":
            # no oneDNN depthwise conv in float64: separable sums of shifted views (measured
            # 1.7x faster than avg_pool2d on CPU here)
            H, W = x.shape[2], x.shape[3]
            p = F.pad(x, (1, 1, 1, 1))
            r = p[:, :, 0:H] + p[:, :, 1 : H + 1] + p[:, :, 2 : H + 2]
            return r[..., 0:W] + r[..., 1 : W + 1] + r[..., 2 : W + 2]
        c = x.shape[1]
        return F.conv2d(x, boxes(c, x.dtype, x.device), padding=1, groups=c)

    @staticmethod
    def backward(ctx, g):
        return _BoxSum3.apply(g, ctx.boxes), None


class PackedNB201(PackedModel):
    """K NB201 candidates with counter-based weights (seed, cell code, slot)."""

    SUPPORTED = SUPPORTED

    def __init__(self, codes, num_classes: int, *, flavour: str = "paper", seed: int = 0,
                 input_size: int = 32, device="cpu", backend: str | None = None,
                 dtype=torch.float32, precision: str = "fp32",
                 init_channels: int = INIT_CHANNELS):
        dev = torch.device(device)
        tables = DeviceTables(dev)  # the plan's and the segment table's indices: one copy
        self.plan: Plan = build_plan(codes, num_classes, flavour, input_size, device=dev,
                                     tables=tables, init_channels=init_channels)
        self.table: SegmentTable = segment_table(self.plan)
        self.input_shape = (3, input_size, input_size)
        self._pool_cache: dict = {}
        # node sums in index order without atomics (see _accumulate): on by default on CUDA,
        # where index_add_ with repeated targets is not reproducible
        self.ordered_accumulation = dev.type == "cuda"
        self._rounds_cache: dict = {}
        # a candidate's weight streams are keyed by its cell code
        self._setup(self.plan.codes, seed=seed, device=dev, backend=backend, dtype=dtype,
                    tables=tables, precision=precision)

    # ---- forward ---------------------------------------------------------------------------
    def _norm(self, h: torch.Tensor, site: str) -> torch.Tensor:
        """The BatchNorm at ``site`` ('stem', 'lastact', or the name of the packed conv layer it
        follows). Here train-mode batch statistics, no affine transform (the initial state of
        every BatchNorm); a subclass that trains the networks keeps their affine parameters
        and running statistics (zcfast/batched/train.py)."""
        return _bn(h)

    def forward(self, x, ws, bs, *, bn: bool = True, per_candidate_input: bool = False,
                acts: list | None = None, relus=None,
                taps: dict | None = None) -> torch.Tensor:
        """Logits (B, K, classes). ``bn=False``: synflow rule (BN only in reduction blocks).
        ``acts`` collects (pre-BN conv/linear output, layer); ``relus`` collects (ReLU input,
        group -> candidate, channels per group). ``taps`` (the modern proxies, base.py): optional
        callables ``"bn"(input, group -> candidate, channels per group)`` at every BatchNorm,
        ``"relu"(input, group -> candidate, channels per group)`` at every ReLU whose output
        feeds a convolution or the pool, ``"pool"(feature)`` with the map entering the global
        average pool (B, K*64, H, W), ``"feature"(map)`` with the stem's output and each cell's
        and reduction block's output (B, K*C, H, W), in forward order (AZ-NAS's stages),
        ``"conv"(input, output, layer)`` at every convolution, ``"bn_out"(output, layer)`` after
        every BatchNorm (``layer``: the convolution it follows, None for the last one), and
        ``"bn_eval": True`` for eval-mode BatchNorm with fresh statistics (mean 0, variance 1:
        VKDNW), ``"edge"(kind, output, candidate of each group)`` with the skip ('skip') and
        pooling ('pool') edge outputs of each node (MeCo; the candidates as a host array)."""
        plan, K = self.plan, self.plan.K
        allk = plan.stem.cand
        self._materialize()  # the device tables and weights (base.py): drawn on first use
        taps = taps or {}
        relus = _Relus(relus, taps.get("relu"))
        bn_tap, bn_out, conv_tap = taps.get("bn"), taps.get("bn_out"), taps.get("conv")
        bn_fn = _bn_eval_fresh if taps.get("bn_eval") else _bn

        def norm(h, cand, C, site, layer=None):
            """The BatchNorm at ``site`` (see _norm; ``layer``: the packed conv it follows),
            with the modern proxies' taps around it; ``bn_eval``: a fresh eval-mode BatchNorm."""
            if bn_tap is not None:
                bn_tap(h, cand, C)
            out = bn_fn(h) if bn_fn is not _bn else self._norm(h, site)
            if bn_out is not None:
                bn_out(out, layer)
            return out

        # grasp (loss pass with double_backward): grouped convolutions through _GroupedConv,
        # whose backward differentiates without per-group loops. float64 on the CPU keeps
        # _conv2d's batched-GEMM path (its double backward has no per-group fallback)
        dbl = (getattr(self, "double_backward", False)
               and not (x.dtype == torch.float64 and x.device.type == "cpu"))

        def conv(h, lay, groups=1):
            if dbl and groups > 1:
                y = _GroupedConv.apply(h, ws[lay.name], lay.stride, lay.padding, groups)
                if lay.name in bs:
                    y = y + bs[lay.name].view(1, -1, 1, 1)
            else:
                y = _conv2d(h, ws[lay.name], bs.get(lay.name), lay.stride, lay.padding, groups)
            if acts is not None:
                acts.append((y, lay))
            if conv_tap is not None:
                conv_tap(h, y, lay)
            return y

        if per_candidate_input:
            h = conv(x, plan.stem, groups=K)  # x: (B, K*3, H, W)
        else:
            h = conv(x, plan.stem)  # shared input: one dense conv producing K*16 channels
        if bn:
            h = norm(h, allk, plan.channels[0], "stem", plan.stem)
        feature = taps.get("feature", lambda t: None)
        feature(h)
        red = 0
        for c, nodes in enumerate(plan.cells):
            stage = plan.stage_of_cell[c]
            C = plan.channels[stage]
            if stage > red:
                h = self._reduction(h, plan.reductions[red], ws, conv, relus, allk, norm)
                feature(h)
                red += 1
            h = self._cell(h, nodes, C, ws, conv, relus, bn, norm, taps.get("edge"))
            feature(h)
        if bn:
            h = norm(h, allk, plan.channels[-1], "lastact")
        if relus is not None:
            relus.append((h, allk, plan.channels[-1]))
        f = F.relu(h)
        if "pool" in taps:
            taps["pool"](f)
        f = f.mean((2, 3))  # global average pool
        B = f.shape[0]
        f = f.view(B, K, -1).transpose(0, 1)  # (K, B, 64)
        head = plan.head
        logits = torch.baddbmm(bs[head.name].view(K, 1, -1), f, ws[head.name].transpose(1, 2))
        logits = logits.transpose(0, 1)  # (B, K, classes)
        if acts is not None:
            acts.append((logits, head))
        return logits

    def _reduction(self, h, layers, ws, conv, relus, allk, norm=None):
        norm = norm or (lambda t, cand, C, layer=None: _bn(t))
        ca, cb, sc = layers
        K = self.plan.K
        if relus is not None:
            relus.append((h, allk, ca.c_in))
        a = norm(conv(F.relu(h), ca, groups=K), allk, ca.c_out, ca.name, ca)
        if relus is not None:
            relus.append((a, allk, ca.c_out))
        b = norm(conv(F.relu(a), cb, groups=K), allk, cb.c_out, cb.name, cb)
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
        return _BoxSum3.apply(x, self._box) * self._pool_cache[key]

    def _box(self, c: int, dtype, device) -> torch.Tensor:
        """(c, 1, 3, 3) ones for _BoxSum3, made once per model, shape and dtype (an operator
        per pooling call otherwise)."""
        key = ("box", c, dtype, device)
        if key not in self._pool_cache:
            self._pool_cache[key] = torch.ones(c, 1, 3, 3, dtype=dtype, device=device)
        return self._pool_cache[key]

    def _cell(self, h, nodes, C, ws, conv, relus, bn, norm=None, edge_tap=None):
        norm = norm or (lambda t, cand, C, layer=None: _bn(t))
        B, KC, H, W = h.shape
        K = KC // C
        states = [h.reshape(B, K, C * H * W)]  # block view: one row of C*H*W floats per candidate
        # node sums in float32 when the forward runs in bf16 (reduced precision), else h's dtype
        acc = torch.float32 if h.dtype in (torch.bfloat16, torch.float16) else h.dtype
        # Without autograd (nwot's forward, the modern proxies' forwards), the states that later
        # nodes read live in one buffer and each node is summed in place into its rows: the
        # same values as concatenating the earlier states before every node, without copying
        # them all again each time (docs/performance.md). With autograd the nodes stay apart
        # (an in-place sum into a shared buffer would make the backward copy the buffer).
        buf = None
        if not torch.is_grad_enabled() and len(nodes) > 2:
            buf = h.new_empty(B, len(nodes) * K, C * H * W, dtype=acc)
            buf[:, :K].copy_(states[0])
        for j, nd in enumerate(nodes, 1):
            if buf is not None and j < len(nodes):  # the last node is read by no other
                node = buf[:, j * K : (j + 1) * K].zero_()
            else:
                node = h.new_zeros(B, K, C * H * W, dtype=acc)
            if nd.n_total == 0:  # every candidate has `none` on all edges into this node
                states.append(node)
                continue
            # node 1 reads the cell input itself (in its own dtype, as without the buffer)
            if len(states) == 1:
                src = states[0]
            elif buf is not None:  # the gather's indices only reach the states written so far
                src = buf
            else:
                src = torch.cat(states, 1)
            g = src.index_select(1, nd.gather).view(B, nd.n_total * C, H, W)
            nconv = nd.n_conv1 + nd.n_conv3
            sizes = [n * C for n in (nd.n_skip, nconv, nd.n_pool) if n]
            # split (not slicing): its backward is one cat, where each slice's backward would
            # materialise a zero tensor of the full gathered size
            pieces = list(g.split(sizes, 1)) if len(sizes) > 1 else [g]
            parts = []
            if nd.n_skip:
                parts.append(pieces.pop(0))
                if edge_tap is not None:
                    edge_tap("skip", parts[-1], nd.targets_np[0])
            if nconv:
                pre = pieces.pop(0)
                if relus is not None:
                    relus.append((pre, nd.conv_cand, C))
                r = F.relu(pre)
                rs = r.split([nd.n_conv1 * C, nd.n_conv3 * C], 1) if nd.n_conv1 and nd.n_conv3 else [r]
                outs, lays = [], []
                if nd.n_conv1:
                    outs.append(conv(rs[0], nd.conv1, groups=nd.n_conv1))
                    lays.append(nd.conv1)
                if nd.n_conv3:
                    outs.append(conv(rs[-1], nd.conv3, groups=nd.n_conv3))
                    lays.append(nd.conv3)
                if bn:  # per-channel statistics: normalising the two parts apart is the same
                    cands = [c for c, n in ((nd.conv_cand[: nd.n_conv1], nd.n_conv1),
                                            (nd.conv_cand[nd.n_conv1 :], nd.n_conv3)) if n]
                    outs = [norm(o, cc, C, lay.name, lay) for o, cc, lay in zip(outs, cands, lays)]
                parts.append(outs[0] if len(outs) == 1 else torch.cat(outs, 1))
            if nd.n_pool:
                parts.append(self._pool3(pieces.pop(0)))
                if edge_tap is not None:
                    edge_tap("pool", parts[-1], nd.targets_np[-1])
            for i, (part, tgt) in enumerate(zip(parts, nd.targets)):
                rounds = nd.rounds[i] if nd.rounds else None
                node = self._accumulate(node, tgt, part.reshape(B, -1, C * H * W), rounds)
            states.append(node)
        return states[3].view(B, KC, H, W)

    def _accumulate(self, node, tgt, src, rounds=None):
        """node[:, tgt[i]] += src[:, i], i in order: index_add_, which adds sequentially on the
        CPU; with ``ordered_accumulation`` (CUDA, where index_add_ uses atomics) the same
        additions in the same order, in rounds without atomics (zcfast/batched/ordered.py)."""
        if src.dtype != node.dtype:  # reduced precision: bf16 results summed in float32
            src = src.to(node.dtype)
        if not self.ordered_accumulation:
            return node.index_add_(1, tgt, src)
        if rounds is None:  # not from the plan: built from the device index (syncs), cached
            key = id(tgt)
            if key not in self._rounds_cache:  # holding tgt keeps its id from being reused
                self._rounds_cache[key] = (tgt, index_rounds(tgt))
            rounds = self._rounds_cache[key][1]
        return ordered_index_add_(node, src, list(rounds), tgt)

    def counts(self) -> dict:
        """params and flops per candidate from the plan (no tensor work)."""
        t = self.table
        nw = t.n_weight_segments
        lens = np.diff(t.offsets)
        params = np.bincount(t.cand, weights=lens, minlength=self.K).astype(np.float64)
        # BatchNorm affine parameters of the per-model network (2 per channel): stem, the two
        # BNs of each reduction block, the head; cell BNs only in the official flavour.
        ch = self.plan.channels
        bn = 2 * (ch[0] + 2 * ch[1] + 2 * ch[2] + ch[2])
        params += bn
        if self.plan.flavour == "official":
            for nodes, stage in zip(self.plan.cells, self.plan.stage_of_cell):
                C = ch[stage]
                for nd in nodes:
                    params += 2 * C * np.bincount(nd.conv_cand, minlength=self.K)
        flops = np.bincount(t.cand[:nw], weights=t.weight_numel * t.weight_hw_out,
                            minlength=self.K).astype(np.float64)
        return {"params": params, "flops": flops}

class _Relus:
    """The ``relus`` list of ``forward`` and the ``relu`` tap behind one ``append``: None when
    neither is asked for (so ``relus is not None`` still says whether anyone listens)."""

    def __new__(cls, lst, tap):
        if lst is None and tap is None:
            return None
        return super().__new__(cls)

    def __init__(self, lst, tap):
        self.lst, self.tap = lst, tap

    def append(self, item):
        if self.lst is not None:
            self.lst.append(item)
        if self.tap is not None:
            self.tap(*item)


def codes_of(archs) -> np.ndarray:
    return np.asarray([nb201.code_of_index(int(i)) for i in nb201.resolve(archs)], dtype=np.int64)
