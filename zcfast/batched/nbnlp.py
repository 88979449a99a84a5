"""The packed NAS-Bench-NLP builder: K language models (one recurrent cell each) in one tensor
program, with the contract of the packed engines (``compute(x, y, proxies)`` -> {proxy: (K,)
array}) and the per-model reference's values (docs/nbnlp.md, "Packed engine").

Layout. Every layer runs the K cells together, one time step after another:

- the projections of the layer input x (the x inputs of all linear nodes of all candidates) do
  not depend on the recurrence: one batched matrix product computes them for all time steps
  before the loop, and together with the biases they form ``pre`` (linear nodes, B, T, H);
- inside a step, the nodes of all candidates are evaluated level by level (level = longest path
  from the cell inputs; nodes of one level never read each other). The values computed so far
  live in one node-major tensor (values, B, H): the hidden states, then each level's nodes. A
  level gathers the inputs of its linear terms and multiplies them by their weight matrices in
  one batched matrix product, adds them into ``pre``'s row of their node (index_add), applies
  each activation to its gathered inputs in one call per activation type, and evaluates the
  sums, products and blends of all candidates in one call each;
- the decoder is one batched product of each candidate's outputs with its own embedding matrix.

Weights of all candidates live in one flat float32 buffer (segment table: candidate, slot,
bound, one segment per weight matrix, bias and embedding), drawn from the same (seed, key, slot)
streams as the per-model network (zcfast/spaces/nbnlp_model.py). Passes: one loss pass (grad_norm,
snip, plain, fisher; the NASWOT codes on the way), one Hessian-vector pass (grasp), one jacobian
pass against the candidates' embedded inputs (jacob_cov), one float64 synflow pass on all-ones
embeddings.

Memory (docs/nbnlp.md, "Memory"). The loss is a sum over token positions, so the decoder and the
loss run in chunks of ``time_chunk`` time steps on the detached outputs of the last layer, their
gradients accumulated, and the recurrent layers are back-propagated once with the summed output
gradient: the logits (B x T x 33,278 per candidate) never exist for all steps at once. grasp's
Hessian-vector product Hg is taken reverse-over-forward: a forward pass carrying the tangent g
(forward-mode AD) gives z = <g, dL/dW> as a sum over positions (chunked the same way), and one
first-order backward of z gives Hg = dz/dW; no gradient graph of the time loop is kept, as a
double backward would. jacob_cov's output gradient (of the summed logits) is the column sum of
each candidate's tied matrix, so its pass builds no logits at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from zcfast.ops.init import fill_uniform
from zcfast.ops.naswot import naswot_kernel
from zcfast.ops.saliency import segment_saliency
from zcfast.spaces import nbnlp
from zcfast.spaces.nb101_model import stream_code
from zcfast.spaces.nbnlp_model import Sizes, segments

LOSS_PROXIES = ("grad_norm", "snip", "plain", "grasp", "fisher")
SUPPORTED = LOSS_PROXIES + ("jacob_cov", "synflow", "nwot", "params", "flops", "l2_norm")
_ACT_FN = {nbnlp.TANH: torch.tanh, nbnlp.SIGM: torch.sigmoid, nbnlp.LEAKY: F.leaky_relu}
_GROUP_ORDER = (nbnlp.LINEAR, nbnlp.TANH, nbnlp.SIGM, nbnlp.LEAKY, nbnlp.SUM, nbnlp.PROD,
                nbnlp.BLEND)


@dataclass
class Level:
    """The nodes of one level of all candidates, in group order (linear, tanh, sigmoid, leaky
    ReLU, sum, product, blend), and where their inputs are in the value tensor."""

    lin_lo: int = 0  # linear nodes: rows [lin_lo, lin_hi) of ``pre``
    lin_hi: int = 0
    s_lo: int = 0  # their state terms: rows [s_lo, s_hi) of the state weights
    s_hi: int = 0
    s_src: torch.Tensor = None  # value rows the state terms read
    s_tgt: torch.Tensor = None  # linear node (0-based in the level) of each state term
    acts: list = field(default_factory=list)  # (op, value rows read, candidate of each)
    sum_in: tuple = ()  # (rows a, rows b)
    prod_in: tuple = ()
    blend_in: tuple = ()  # (rows z, rows a, rows b)


@dataclass
class Plan:
    """Everything the forward needs, shared by every layer (each candidate has the same cell in
    every layer; only sizes and weights differ)."""

    K: int
    hidden_cand: np.ndarray  # candidate of each hidden-state row (level 0)
    levels: list
    n_values: int
    out_rows: torch.Tensor  # the rows of h_new_i after a step, in level-0 order
    out0_rows: torch.Tensor  # the rows of h_new_0, candidate order
    n_lin: int
    x_cand: np.ndarray  # candidate of each x term
    x_tgt: torch.Tensor  # linear node (row of pre) of each x term
    x_pos0: np.ndarray  # the term is its node's first input (it carries the node's bias)
    s_tgt_global: np.ndarray  # row of pre of each state term (level order)
    s_pos0: np.ndarray
    lin_cand: np.ndarray  # candidate of each linear node (row of pre)
    # per linear node: (candidate, node index in its cell); per term: (cand, node, input pos)
    lin_ids: list = field(default_factory=list)
    x_ids: list = field(default_factory=list)
    s_ids: list = field(default_factory=list)


def _depths(cell: nbnlp.Cell) -> list:
    d = [0] * cell.n
    for j, ins in enumerate(cell.inputs):  # canonical order is topological
        d[j] = 1 + max((d[s - nbnlp.NODE0] if s >= nbnlp.NODE0 else 0) for s in ins)
    return d


def build_plan(cells, device) -> Plan:
    K = len(cells)
    depths = [_depths(c) for c in cells]
    D = max(max(d) for d in depths)
    row: dict = {}  # (k, source id) -> value row
    hidden_cand = []
    for k, c in enumerate(cells):
        for i in range(c.hidden):
            row[(k, 1 + i)] = len(row)
            hidden_cand.append(k)
    n_rows = len(row)
    levels, lin_ids, x_ids, s_ids = [], [], [], []
    x_tgt, x_pos0, s_tgt_g, s_pos0 = [], [], [], []
    nodes_at = {d: {op: [] for op in _GROUP_ORDER} for d in range(1, D + 1)}
    for k, c in enumerate(cells):
        for j, op in enumerate(c.ops):
            nodes_at[depths[k][j]][op].append((k, j))
    dev = torch.device(device)

    def t(v):
        return torch.as_tensor(np.asarray(v, dtype=np.int64), device=dev)

    for d in range(1, D + 1):
        lv = Level()
        # rows of this level's nodes (group order)
        for op in _GROUP_ORDER:
            for k, j in nodes_at[d][op]:
                row[(k, nbnlp.NODE0 + j)] = n_rows
                n_rows += 1
        lv.lin_lo = len(lin_ids)
        s_src, s_tgt = [], []
        lv.s_lo = len(s_ids)
        for li, (k, j) in enumerate(nodes_at[d][nbnlp.LINEAR]):
            g = len(lin_ids)
            lin_ids.append((k, j))
            for p, s in enumerate(cells[k].inputs[j]):
                if s == nbnlp.X_SRC:
                    x_ids.append((k, j, p))
                    x_tgt.append(g)
                    x_pos0.append(p == 0)
                else:
                    s_ids.append((k, j, p))
                    s_src.append(row[(k, s)])
                    s_tgt.append(li)
                    s_tgt_g.append(g)
                    s_pos0.append(p == 0)
        lv.lin_hi = len(lin_ids)
        lv.s_hi = len(s_ids)
        lv.s_src, lv.s_tgt = t(s_src), t(s_tgt)
        for op in (nbnlp.TANH, nbnlp.SIGM, nbnlp.LEAKY):
            if nodes_at[d][op]:
                lv.acts.append((op, t([row[(k, cells[k].inputs[j][0])] for k, j in nodes_at[d][op]]),
                                np.asarray([k for k, _ in nodes_at[d][op]], dtype=np.int64)))
        for op, attr in ((nbnlp.SUM, "sum_in"), (nbnlp.PROD, "prod_in"), (nbnlp.BLEND, "blend_in")):
            if nodes_at[d][op]:
                n_in = 3 if op == nbnlp.BLEND else 2
                setattr(lv, attr, tuple(t([row[(k, cells[k].inputs[j][p])] for k, j in nodes_at[d][op]])
                                        for p in range(n_in)))
        levels.append(lv)
    out_rows = [row[(k, nbnlp.NODE0 + c.outputs[i])] for k, c in enumerate(cells) for i in range(c.hidden)]
    out0 = [row[(k, nbnlp.NODE0 + c.outputs[0])] for k, c in enumerate(cells)]
    return Plan(K=K, hidden_cand=np.asarray(hidden_cand, dtype=np.int64), levels=levels,
                n_values=n_rows, out_rows=t(out_rows), out0_rows=t(out0), n_lin=len(lin_ids),
                x_cand=np.asarray([k for k, _, _ in x_ids], dtype=np.int64), x_tgt=t(x_tgt),
                x_pos0=np.asarray(x_pos0, dtype=bool), s_tgt_global=np.asarray(s_tgt_g, dtype=np.int64),
                s_pos0=np.asarray(s_pos0, dtype=bool),
                lin_cand=np.asarray([k for k, _ in lin_ids], dtype=np.int64),
                lin_ids=lin_ids, x_ids=x_ids, s_ids=s_ids)


class PackedNBNLP:
    """K NB-NLP language models with counter-based weights (seed, key, slot); see the module
    docstring. ``codes``: network codes (zcfast.spaces.nbnlp); ``sizes``: the model's dimensions
    (NAS-Bench-NLP's by default)."""

    SUPPORTED = SUPPORTED

    def __init__(self, codes, *, sizes: Sizes | None = None, seed: int = 0, device="cpu",
                 dtype=torch.float32, backend: str | None = None,
                 time_chunk: int | None = None):
        from zcfast import _C

        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"the packed engine computes in float32 or float64, not {dtype}")
        if time_chunk is not None and (isinstance(time_chunk, bool)
                                       or not isinstance(time_chunk, (int, np.integer))
                                       or time_chunk < 1):
            raise ValueError(f"time_chunk (time steps per decoder chunk) must be a positive int "
                             f"or None, got {time_chunk!r}")
        self.time_chunk = None if time_chunk is None else int(time_chunk)
        codes = [int(c) for c in codes]
        if not codes:
            raise ValueError("PackedNBNLP needs at least one candidate")
        self.codes = codes
        self.keys = [int(_C.nbnlp.key(c)) for c in codes]
        self.cells = [nbnlp.cell_of(c) for c in codes]
        self.sizes = Sizes() if sizes is None else sizes
        self.seed = int(seed)
        self.device = torch.device(device)
        self.dtype = dtype
        self.backend = backend
        self.plan = build_plan(self.cells, self.device)
        self._x_cand = torch.as_tensor(self.plan.x_cand, device=self.device)
        self._layout()

    @property
    def K(self) -> int:
        return self.plan.K

    # ---- weights ---------------------------------------------------------------------------
    def _layout(self) -> None:
        """Flat buffer: [embeddings | per layer: x-term weights, state-term weights] (the counted
        weights), then [per layer: linear-node biases | decoder biases]. One segment per tensor,
        drawn from the stream (seed, key of its candidate, slot) of the per-model network."""
        p, sz, K = self.plan, self.sizes, self.K
        per_cand = [{(s[0], s[1], s[2], s[3]): s for s in segments(c, sz)} for c in self.cells]
        segs = []  # (candidate, segment spec)
        groups = {}  # name -> (offset, shape)

        def add(name, items, shape):
            off = sum(int(np.prod(s[4])) for _, s in segs)
            segs.extend(items)
            groups[name] = (off, shape)

        add("emb", [(k, per_cand[k][("embedding", -1, -1, -1)]) for k in range(K)],
            (K, sz.ntoken, sz.emsize))
        for li, (n_in, hid) in enumerate(sz.layers()):
            add(f"wx{li}", [(k, per_cand[k][("weight", li, j, q)]) for k, j, q in p.x_ids],
                (len(p.x_ids), hid, n_in))
            add(f"ws{li}", [(k, per_cand[k][("weight", li, j, q)]) for k, j, q in p.s_ids],
                (len(p.s_ids), hid, hid))
        self.n_weight_segments = len(segs)
        self.n_weights = sum(int(np.prod(s[4])) for _, s in segs)
        for li, (_, hid) in enumerate(sz.layers()):
            add(f"b{li}", [(k, per_cand[k][("bias", li, j, 0)]) for k, j in p.lin_ids], (p.n_lin, hid))
        dec = ("decoder_bias", -1, -1, -1, (sz.ntoken,), 0, 0.0)
        add("decb", [(k, dec) for k in range(K)], (K, sz.ntoken))
        self.groups = groups
        lens = np.asarray([int(np.prod(s[4])) for _, s in segs], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        self.seg_cand = np.asarray([k for k, _ in segs], dtype=np.int64)
        self.seg_kind = [s[0] for _, s in segs]
        self.seg_fan_in = np.asarray([s[4][-1] if len(s[4]) > 1 else 0 for _, s in segs])
        dev = self.device
        self.flat = torch.empty(int(self.offsets[-1]), dtype=torch.float32, device=dev)
        init_backend = self.backend if self.backend is not None and dev.type == "cuda" else None
        keys32 = np.asarray([stream_code(self.keys[k]) for k, _ in segs], dtype=np.int64)
        fill_uniform(self.flat, torch.as_tensor(self.offsets, device=dev),
                     torch.as_tensor(keys32, device=dev),
                     torch.as_tensor(np.asarray([s[5] for _, s in segs], dtype=np.int64), device=dev),
                     torch.as_tensor(np.asarray([s[6] for _, s in segs], dtype=np.float32), device=dev),
                     self.seed, backend=init_backend)
        off, _ = groups["decb"]
        self.flat[off:].zero_()  # the decoder bias starts at zero

    def params(self, dtype=None, absolute: bool = False, requires_grad: bool = True):
        """(flat weights, {group: leaf tensor}) in ``dtype`` (views of the flat buffer, or of a
        converted copy)."""
        flat = self.flat
        dtype = self.dtype if dtype is None else dtype
        if dtype != flat.dtype:
            flat = flat.to(dtype)
        if absolute:
            flat = flat.abs()
        leaves = {}
        for name, (off, shape) in self.groups.items():
            n = int(np.prod(shape))
            weight = name == "emb" or name.startswith(("wx", "ws"))
            leaves[name] = flat[off : off + n].view(shape).detach().requires_grad_(
                requires_grad and weight)
        return flat[: self.n_weights], leaves

    # ---- forward ---------------------------------------------------------------------------
    def forward(self, X, w, *, record: dict | None = None, nwot: list | None = None,
                decoder: bool = True):
        """Logits (K, B*T, ntoken) of layer-0 inputs X (K, B, T, emsize), or with ``decoder``
        False the last layer's outputs (K, B, T, emsize). ``record`` collects for fisher: 'pre'
        (per layer), 'x_terms' and 'state_terms' outputs; ``nwot`` collects (leaky ReLU input
        (rows, B, H), candidate of each row)."""
        h = X
        for li, (_, H) in enumerate(self.sizes.layers()):
            h = self._layer(h, li, H, w, record, nwot)
        if not decoder:
            return h
        return self._decode(h.reshape(h.shape[0], -1, h.shape[3]), w["emb"], w["decb"])

    @staticmethod
    def _decode(h, emb, decb):
        """Logits (K, N, ntoken) of last-layer outputs h (K, N, emsize): each candidate's tied
        matrix and decoder bias."""
        return torch.baddbmm(decb.unsqueeze(1), h, emb.transpose(1, 2))

    @staticmethod
    def _decode_tangent(u, ut, emb, g_emb):
        """The two terms of the tangent of the logits u E^T + b along (u', g_E):
        (u' E^T, u g_E^T) (b carries none)."""
        return torch.bmm(ut, emb.transpose(1, 2)), torch.bmm(u, g_emb.transpose(1, 2))

    def time_chunks(self, B: int, T: int) -> list:
        """(t0, t1) ranges of the decoder chunks: ``time_chunk`` time steps, or by default as
        many as keep one chunk's logits within 2**23 elements (32 MB in float32), at least one."""
        tc = self.time_chunk
        if tc is None:
            tc = max(1, (1 << 23) // max(1, self.K * B * self.sizes.ntoken))
        return [(t0, min(T, t0 + tc)) for t0 in range(0, T, tc)]

    def _layer(self, X, li: int, H: int, w: dict, record, nwot):
        p = self.plan
        K, B, T, n_in = X.shape
        bias = w[f"b{li}"]
        pre = bias.view(p.n_lin, 1, H).expand(p.n_lin, B * T, H)
        if len(p.x_cand):
            xg = X.reshape(K, B * T, n_in).index_select(0, self._x_cand)
            P = torch.bmm(xg, w[f"wx{li}"].transpose(1, 2))  # (n_x, B*T, H)
            pre = pre.index_add(0, p.x_tgt, P)
            if record is not None:
                record.setdefault("x_terms", []).append(P)
        else:
            pre = pre.contiguous()
        if record is not None:
            if not pre.requires_grad:  # fisher reads dL/dpre: make it a node of the graph
                pre = pre.detach().requires_grad_(True)
            record.setdefault("pre", []).append(pre)
        pre4 = pre.view(p.n_lin, B, T, H)
        ws = w[f"ws{li}"]
        # each level's state weights and pre-activations, sliced once per layer (not per step: a
        # slice's backward writes a zero-filled copy of the whole tensor, per step T times that);
        # the pre-activations split into steps by unbind, whose backward is one stack
        wsl = [ws[lv.s_lo : lv.s_hi].transpose(1, 2) if lv.s_hi > lv.s_lo else None
               for lv in p.levels]
        pre_lv = [pre4[lv.lin_lo : lv.lin_hi].unbind(2) if lv.lin_hi > lv.lin_lo else None
                  for lv in p.levels]
        hid = X.new_zeros(len(p.hidden_cand), B, H)
        outs, sterms = [], []
        for t in range(T):
            cur = hid
            step_terms = []
            for lv, wl, pl in zip(p.levels, wsl, pre_lv):
                parts = []
                if pl is not None:
                    v = pl[t]
                    if wl is not None:
                        src = cur.index_select(0, lv.s_src)
                        ts = torch.bmm(src, wl)
                        v = v.index_add(0, lv.s_tgt, ts)
                        if record is not None:
                            step_terms.append(ts)
                    parts.append(v)
                for op, rows, cand in lv.acts:
                    a = cur.index_select(0, rows)
                    if nwot is not None and op == nbnlp.LEAKY:
                        nwot.append((a.detach(), cand))
                    parts.append(_ACT_FN[op](a))
                if lv.sum_in:
                    parts.append(cur.index_select(0, lv.sum_in[0]) + cur.index_select(0, lv.sum_in[1]))
                if lv.prod_in:
                    parts.append(cur.index_select(0, lv.prod_in[0]) * cur.index_select(0, lv.prod_in[1]))
                if lv.blend_in:
                    z, a, b = (cur.index_select(0, r) for r in lv.blend_in)
                    parts.append(z * a + (1 - z) * b)
                cur = torch.cat([cur] + parts, 0)
            hid = cur.index_select(0, p.out_rows)
            outs.append(cur.index_select(0, p.out0_rows))
            if record is not None:
                sterms.append(torch.cat(step_terms, 0) if step_terms else None)
        if record is not None:
            record.setdefault("state_terms", []).append(sterms)
        return torch.stack(outs, 2)  # (K, B, T, H)

    def _embed(self, x, emb):
        """Each candidate's embedding of tokens x (B, T): (K, B, T, emsize)."""
        K, V = self.K, self.sizes.ntoken
        idx = x.unsqueeze(0) + (torch.arange(K, device=x.device) * V).view(K, 1, 1)
        return emb.reshape(K * V, -1)[idx]

    # ---- passes -----------------------------------------------------------------------------
    def _per_candidate(self, seg_values, seg_cand) -> np.ndarray:
        return np.bincount(seg_cand, weights=seg_values, minlength=self.K)

    def _saliency(self, flat_w, g_flat, hg_flat):
        nw = self.n_weight_segments
        off = torch.as_tensor(self.offsets[: nw + 1], device=self.device)
        return segment_saliency(flat_w, g_flat, hg_flat, off, backend=self.backend).cpu().numpy()

    def _weight_names(self) -> list:
        return ["emb"] + [f"{k}{li}" for li in range(self.sizes.nlayers) for k in ("wx", "ws")]

    def _zero_or(self, grads, tensors) -> list:
        return [g if g is not None else torch.zeros_like(t) for g, t in zip(grads, tensors)]

    def _decoder_grads(self, h, w, y, *, fisher: bool):
        """The decoder and the loss in time chunks (module docstring). h: the last layer's
        outputs (K, B, T, emsize), detached. Returns (dL/dh (K, B, T, emsize), the decoder's
        share of dL/d(embedding matrices) (K, ntoken, emsize), and with ``fisher`` the decoder's
        fisher term per candidate ((K,) numpy): 0.5 * mean_b (sum_t logit * dL/dlogit)^2 summed
        over the vocabulary, times emsize, the sum over t in float64).
        L = sum over the B x T positions of the cross-entropy / (B T): each chunk adds its
        positions' terms, so the chunked gradients sum to the whole batch's exactly."""
        K, B, T, E = h.shape
        V = self.sizes.ntoken
        emb = w["emb"].detach().requires_grad_(True)
        decb = w["decb"].detach()
        g_h = torch.zeros_like(h)
        g_emb = torch.zeros_like(emb)
        s = torch.zeros(K, B, V, dtype=torch.float64, device=h.device) if fisher else None
        for t0, t1 in self.time_chunks(B, T):
            n = t1 - t0
            hc = h[:, :, t0:t1].reshape(K, B * n, E).detach().requires_grad_(True)
            logits = self._decode(hc, emb, decb)
            yc = y[:, t0:t1].reshape(-1).repeat(K)
            loss = F.cross_entropy(logits.reshape(K * B * n, V), yc, reduction="sum") / (B * T)
            targets = [hc, emb] + ([logits] if fisher else [])
            gs = torch.autograd.grad(loss, targets)
            g_h[:, :, t0:t1] = gs[0].view(K, B, n, E)
            g_emb += gs[1]
            if fisher:  # the product in the compute dtype, the sum over steps in float64
                s += (logits.detach() * gs[2]).view(K, B, n, V).sum(2, dtype=torch.float64)
            del logits, loss, gs
        fisher_dec = None
        if fisher:
            fisher_dec = (0.5 * s.pow(2).mean(1).sum(1) * E).cpu().numpy()
        return g_h, g_emb, fisher_dec

    def loss_pass(self, x, y, want: set, nwot: list | None) -> dict:
        """grad_norm, snip, plain, fisher, l2_norm (and grasp, by :meth:`hessian_pass`)."""
        flat_w, w = self.params()
        names = self._weight_names()
        wlist = [w[n] for n in names]
        fisher = "fisher" in want
        record = {} if fisher else None
        X = self._embed(x, w["emb"])
        h = self.forward(X, w, record=record, nwot=nwot, decoder=False)
        B, T = y.shape
        g_h, g_emb_dec, fisher_dec = self._decoder_grads(h.detach(), w, y, fisher=fisher)
        targets = wlist + (record["pre"] if fisher else [])
        grads = torch.autograd.grad(h, targets, grad_outputs=g_h, allow_unused=True)
        del h, X
        gw = self._zero_or(grads[: len(wlist)], wlist)
        gw[0] = gw[0] + g_emb_dec  # the tied matrix: lookup and decoder
        g_flat = torch.cat([g.reshape(-1) for g in gw])
        out = {}
        if fisher:
            g_pre = [g.detach() for g in grads[len(wlist) : len(wlist) + self.sizes.nlayers]]
            out["fisher"] = self._fisher(record, g_pre, w, B, T) + fisher_dec
            del g_pre
        del gw, grads, record, g_h, g_emb_dec  # free the first pass before grasp's
        hg_flat, hg_dec = self.hessian_pass(x, y, g_flat) if "grasp" in want else (None, 0.0)
        sal = self._saliency(flat_w.detach(), g_flat.detach(), hg_flat)
        cand = self.seg_cand[: self.n_weight_segments]
        out.update({
            "snip": self._per_candidate(sal[:, 0], cand),
            "plain": self._per_candidate(sal[:, 1], cand),
            "grad_norm": self._per_candidate(np.sqrt(sal[:, 2]), cand),
            "grasp": -(self._per_candidate(sal[:, 3], cand) + hg_dec),
            "l2_norm": self._per_candidate(np.sqrt(sal[:, 4]), cand),
        })
        return out

    def hessian_pass(self, x, y, g_flat) -> tuple:
        """(Hg, d): Hg (flat, the weights' layout) for the detached gradient g of the loss, except
        the decoder's share of the tied matrices' Hg, and d (K,) float64, that share's product
        with the tied matrices, sum W_E * (Hg_E from the decoder), which is all grasp needs of it.

        Reverse over forward (module docstring): a forward pass whose weights carry the tangent g
        gives the last layer's outputs u and their tangent u' (= du/dW . g); the decoder chunks
        give z = <g, dL/dW> = sum over positions of (softmax(l) - onehot(y)) . l' / (B T), with
        l = u E^T + b and l' = u' E^T + u g_E^T (g_E: g's share of the tied matrix E; biases
        carry no tangent, as grasp perturbs the counted weights only), and Hg = dz/dW summed over
        the chunks and the backward through the layers. With s = dz/dl and r = dz/dl', the
        decoder's Hg_E = s^T u + r^T u', so sum E * Hg_E = sum s * (l - b) + sum r * (u' E^T):
        two products with the 33,278 x emsize matrix per chunk fewer than forming Hg_E."""
        import torch.autograd.forward_ad as fwAD

        _, w = self.params()
        names = self._weight_names()
        wlist = [w[n] for n in names]
        # the tangents laid out as the weights (views at the same offsets of a buffer the size
        # of the flat one): make_dual would otherwise copy a whole buffer per weight tensor
        gfull = torch.zeros(int(self.offsets[-1]), dtype=g_flat.dtype, device=g_flat.device)
        gfull[: g_flat.numel()] = g_flat.detach()
        tangents = {}
        for n in names:
            off, shape = self.groups[n]
            tangents[n] = gfull[off : off + int(np.prod(shape))].view(shape)
        with fwAD.dual_level():
            wd = dict(w)
            for n in names:
                wd[n] = fwAD.make_dual(w[n], tangents[n])
            X = self._embed(x, wd["emb"])
            hd = self.forward(X, wd, decoder=False)
            u, ut = fwAD.unpack_dual(hd)
        if ut is None:  # no weight reaches the outputs: z = 0 through the layers
            ut = torch.zeros_like(u)
        K, B, T, E = u.shape
        emb = w["emb"].detach()
        g_emb = tangents["emb"]
        decb = w["decb"].detach()
        g_u, g_ut = torch.zeros_like(u), torch.zeros_like(u)
        dec = torch.zeros(K, dtype=torch.float64, device=u.device)
        ud, utd = u.detach(), ut.detach()
        for t0, t1 in self.time_chunks(B, T):
            n = t1 - t0
            uc = ud[:, :, t0:t1].reshape(K, B * n, E).requires_grad_(True)
            utc = utd[:, :, t0:t1].reshape(K, B * n, E).requires_grad_(True)
            logits = self._decode(uc, emb, decb)
            ut_e, u_ge = self._decode_tangent(uc, utc, emb, g_emb)
            dl = ut_e + u_ge
            yc = y[:, t0:t1].reshape(1, B * n, 1).expand(K, B * n, 1)
            z = ((torch.softmax(logits, 2) * dl).sum() - dl.gather(2, yc).sum()) / (B * T)
            gu, gut, s_, r_ = torch.autograd.grad(z, [uc, utc, logits, dl])
            g_u[:, :, t0:t1] = gu.view(K, B, n, E)
            g_ut[:, :, t0:t1] = gut.view(K, B, n, E)
            lb = logits.detach() - decb.unsqueeze(1)  # products in the compute dtype, sums in float64
            dec += (s_ * lb).sum((1, 2), dtype=torch.float64)
            dec += (r_ * ut_e.detach()).sum((1, 2), dtype=torch.float64)
            del logits, ut_e, u_ge, dl, z, gu, gut, s_, r_, lb
        outs, gouts = [u], [g_u]
        if ut.requires_grad:
            outs.append(ut)
            gouts.append(g_ut)
        hg = self._zero_or(torch.autograd.grad(outs, wlist, grad_outputs=gouts, allow_unused=True),
                           wlist)
        return torch.cat([t.reshape(-1) for t in hg]), dec.cpu().numpy()

    def _fisher(self, record, g_pre, w, B, T) -> np.ndarray:
        """fisher per candidate over the cell matrices: for every weight matrix (a layer of the
        per-model network), its output a (plus the node's bias for a node's first matrix) and the
        gradient of the node it feeds, summed over the time steps before the square
        (docs/proxies.md). The decoder's term comes from :meth:`_decoder_grads`."""
        p, K = self.plan, self.K
        total = np.zeros(K)

        def add(a, g, fan_in, cand):
            # a, g: (n, B, T, C) -> per row: 0.5 * mean_b (sum_t a g)^2 summed over C, * fan_in
            s = (a.double() * g.double()).sum(2)  # (n, B, C)
            f = 0.5 * s.pow(2).mean(1).sum(1)  # (n,)
            total[:] += np.bincount(cand, weights=(f.cpu().numpy() * fan_in), minlength=K)

        for li, (n_in, H) in enumerate(self.sizes.layers()):
            gp = g_pre[li].view(p.n_lin, B, T, H)
            bias = w[f"b{li}"].detach()
            if len(p.x_cand):
                P = record["x_terms"][li].detach().view(-1, B, T, H)
                a = P + torch.where(torch.as_tensor(p.x_pos0, device=P.device).view(-1, 1, 1, 1),
                                    bias[p.x_tgt].view(-1, 1, 1, H), torch.zeros((), dtype=P.dtype,
                                                                                  device=P.device))
                add(a, gp[p.x_tgt], np.full(len(p.x_cand), n_in, dtype=np.float64), p.x_cand)
            steps = record["state_terms"][li]
            if len(p.s_ids):
                S = torch.stack([s.detach() for s in steps], 2)  # (n_s, B, T, H)
                tg = torch.as_tensor(p.s_tgt_global, device=S.device)
                a = S + torch.where(torch.as_tensor(p.s_pos0, device=S.device).view(-1, 1, 1, 1),
                                    bias[tg].view(-1, 1, 1, H), torch.zeros((), dtype=S.dtype,
                                                                            device=S.device))
                add(a, gp[tg], np.full(len(p.s_ids), H, dtype=np.float64),
                    np.asarray([k for k, _, _ in p.s_ids], dtype=np.int64))
        return total

    def jacobian_pass(self, x, nwot: list | None) -> np.ndarray:
        from zcfast.proxies.measures import jacob_cov_scores

        _, w = self.params(requires_grad=False)
        with torch.no_grad():
            X = self._embed(x, w["emb"])
        X = X.detach().requires_grad_(True)
        h = self.forward(X, w, nwot=nwot, decoder=False)
        # d(sum of the logits)/dh = the column sum of the candidate's tied matrix at every position
        g_h = w["emb"].sum(1).view(self.K, 1, 1, -1).expand_as(h)
        (gx,) = torch.autograd.grad(h, X, grad_outputs=g_h)
        K, B = X.shape[0], X.shape[1]
        return jacob_cov_scores(gx.reshape(K, B, -1))

    def synflow_pass(self, T: int) -> np.ndarray:
        flat_w, w = self.params(torch.float64, absolute=True)
        names = self._weight_names()
        wlist = [w[n] for n in names]
        ones = torch.ones(self.K, 1, T, self.sizes.emsize, dtype=torch.float64, device=self.device)
        r = self.forward(ones, w).sum()
        grads = torch.autograd.grad(r, wlist, allow_unused=True)
        g_flat = torch.cat([(g if g is not None else torch.zeros_like(t)).reshape(-1)
                            for g, t in zip(grads, wlist)])
        sal = self._saliency(flat_w.detach(), g_flat, None)
        return self._per_candidate(sal[:, 0], self.seg_cand[: self.n_weight_segments])

    def nwot_from(self, codes: list, batch: int) -> np.ndarray:
        K = self.K
        kmat = torch.zeros(K, batch, batch, dtype=torch.float32, device=self.device)
        feats = np.zeros(K)
        for a, cand in codes:  # a: (rows, B, H), one row per leaky unit of a candidate
            H = a.shape[2]
            naswot_kernel(a.permute(1, 0, 2).reshape(batch, -1), torch.as_tensor(cand, device=self.device),
                          H, kmat, backend=self.backend)
            feats += np.bincount(cand, minlength=K) * H
        k64 = (kmat.double() + torch.as_tensor(feats, device=self.device).view(K, 1, 1)) * 0.5
        out = torch.linalg.slogdet(k64).logabsdet.cpu().numpy()
        out[feats == 0] = np.nan  # no leaky ReLU: nwot undefined (as the per-model reference)
        return out

    def counts(self, T: int) -> dict:
        """params and flops (multiply-accumulates per sequence of T tokens) per candidate."""
        lens = np.diff(self.offsets).astype(np.float64)
        params = np.bincount(self.seg_cand, weights=lens, minlength=self.K)
        nw = self.n_weight_segments
        kinds = self.seg_kind[:nw]
        cell_w = np.asarray([k == "weight" for k in kinds], dtype=np.float64)
        flops = T * np.bincount(self.seg_cand[:nw], weights=lens[:nw] * cell_w, minlength=self.K)
        flops += T * self.sizes.ntoken * self.sizes.emsize
        return {"params": params, "flops": flops}

    def l2_pass(self) -> np.ndarray:
        flat_w, _ = self.params(requires_grad=False)
        sal = self._saliency(flat_w, flat_w, None)
        return self._per_candidate(np.sqrt(sal[:, 4]), self.seg_cand[: self.n_weight_segments])

    # ---- all requested proxies ----------------------------------------------------------------
    def compute(self, x, y, proxies) -> dict:
        """{proxy: (K,) float64 array} on tokens x and targets y (B, T) (see the module doc)."""
        want = set(proxies)
        bad = want - set(SUPPORTED)
        if bad:
            raise ValueError(f"the packed NB-NLP engine does not support {sorted(bad)}")
        x = x.to(self.device)
        y = y.to(self.device)
        if x.dim() != 2 or y.shape != x.shape or x.dtype != torch.int64:
            raise ValueError(f"x and y must be int64 token tensors (B, T) of one shape, got "
                             f"{tuple(x.shape)} {x.dtype} and {tuple(y.shape)}")
        out = {}
        codes = [] if "nwot" in want else None
        done = False
        if want & set(LOSS_PROXIES):
            res = self.loss_pass(x, y, want, codes)
            done = codes is not None
            out.update({k: v for k, v in res.items() if k in want})
        if "jacob_cov" in want:
            out["jacob_cov"] = self.jacobian_pass(x, None if done else codes)
            done = done or codes is not None
        if "nwot" in want:
            if not done:
                _, w = self.params(requires_grad=False)
                with torch.no_grad():
                    self.forward(self._embed(x, w["emb"]), w, nwot=codes, decoder=False)
            out["nwot"] = self.nwot_from(codes, x.shape[0])
        if "synflow" in want:
            out["synflow"] = self.synflow_pass(x.shape[1])
        if "l2_norm" in want and "l2_norm" not in out:
            out["l2_norm"] = self.l2_pass()
        if want & {"params", "flops"}:
            cnt = self.counts(x.shape[1])
            out.update({k: cnt[k] for k in ("params", "flops") if k in want})
        return out
