"""Packed NB201 versions of modern proxies (docs/proxies_modern.md, "Packed versions").

Each group computes, for the K candidates of one packed model (zcfast/batched/base.py), the values
the per-model reference in zcfast/proxies gives each candidate on its own: the same batches, the
same noise inputs and the same re-initialisation bits (``PackedModel.reinit_flat``), read from the
engine's passes and the forward's taps (engine.py). A group is one registry entry: its names
share one computation, as in the per-model registry.

- ``zico``: two loss backward passes (the scoring batch and the first extra batch) on the packed
  weights, then per weight segment (= one per-model layer) the sum of mean|g| / std(g) over the
  elements with std(g) != 0, the log of each non-zero sum, summed per candidate.
- ``epe_nas``: the input Jacobian of the jacob_cov pass (shared with jacob_cov in one call), then
  the per-class correlation score of each candidate's rows.
- ``zen``: N(0, 1) re-initialisation, two no-grad forwards of the noise inputs; the BatchNorm tap
  gives each BatchNorm's per-channel unbiased batch variance (per candidate: the K*C channels of
  one packed BatchNorm are K candidates' own), the pool tap the pre-pool feature.
- ``swap``, ``swap_reg``: per draw, N(0, 1) re-initialisation and one no-grad forward of the first
  16 images; the ReLU tap packs each unit's 16 sign bits into one integer, prefixed by its
  candidate; one ``unique`` per draw, counted per candidate.

- ``az_expressivity``, ``az_progressivity``, ``az_trainability``: Kaiming-normal
  re-initialisation, one packed forward of the noise input with the graph kept; the feature tap
  gives the stage features; per candidate a batched covariance eigvalsh, and per block one vjp
  of the packed graph with the candidates' probes side by side, then a batched svdvals.

- ``vkdnw``, ``vkdnw_dim``, ``vkdnw_single``: Kaiming-normal re-initialisation, eval-mode
  BatchNorm with fresh statistics, one packed forward of the noise input keeping each conv's
  input/output and each BN's output; C backward passes (cotangent e_c, all candidates at once);
  per candidate the per-sample gradients of element 0 of its first 128 tensors in its per-model
  ``named_parameters()`` order, then the reference's Fisher matrix and decile entropy.

- ``meco``: one no-grad forward of the first image; every output of the per-model module tree
  with its count (see :func:`meco`), batched correlation eigenvalues per output.

Every modern proxy of the registry now has a packed NB201 version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch


@dataclass(frozen=True)
class PackedGroup:
    """``fn(model, x, y, extra_batches)`` returns {name: (K,) array} or a ``_Deferred`` (its
    device results, fetched with the chunk's other results in one copy, and the host step that
    makes the scores). ``prepare(model, x, y, extra_batches)``, when given, registers the
    group's host data (noise inputs, re-initialisation tables) with the model's device tables
    before the chunk's one upload (docs/performance.md)."""

    names: tuple  # proxies computed together
    fn: Callable
    prepare: Callable | None = None


PACKED: dict = {}


def _register(names, fn, prepare=None) -> None:
    g = PackedGroup(tuple(names), fn, prepare)
    for n in names:
        PACKED[n] = g


def names() -> tuple:
    return tuple(PACKED)


def _deferred(tensors: list, finish, raw: bool = False):
    from zcfast.batched.base import _Deferred

    return _Deferred(tensors, finish, raw=raw)


def zico(model, x, y, extra) -> dict:
    if not extra:
        raise ValueError("zico needs a second minibatch (extra_batches); none was given")
    g1 = model.weight_grad_flat(x, y).detach().double()
    bx, by = extra[0]
    g2 = model.weight_grad_flat(bx, by).detach().double()
    g = torch.stack([g1, g2])
    # the reference's own elementwise arithmetic (zcfast.proxies.gradstats.zico_from_grads):
    # where g1 and g2 agree to a few ulps the ratio is rounding noise and can dominate a layer's
    # sum (e.g. the head of a cell whose output does not depend on its input), so the closed
    # form (|g1| + |g2|) / |g1 - g2| would not give the reference's value there
    std = g.std(0, unbiased=False)
    keep = std != 0
    ratio = torch.where(keep, g.abs().mean(0) / torch.where(keep, std, 1.0), 0.0)
    del g
    t = model.table
    nw = t.n_weight_segments

    def finish(host):
        seg = np.add.reduceat(host[0], t.offsets[:nw])  # (weight segments,) float64 sums
        with np.errstate(divide="ignore"):
            logs = np.where(seg != 0, np.log(np.where(seg != 0, seg, 1.0)), 0.0)
        return {"zico": model._per_candidate(logs, t.cand[:nw])}

    return _deferred([ratio], finish)


def epe_nas(model, x, y, extra) -> dict:
    from zcfast.proxies.gradstats import epe_from_jacobian

    jac = model.input_jacobian(x)  # (K, B, D), fetched as is (no float64 copy on the device)
    ncls = int(model.plan.num_classes)

    def finish(host):
        j, lab = torch.from_numpy(host[0]), torch.from_numpy(host[1])
        return {"epe_nas": np.array([epe_from_jacobian(j[k], lab, ncls) for k in range(len(j))])}

    return _deferred([jac, y], finish, raw=True)


def _prepare_zen(model, x, y, extra) -> None:
    from zcfast.proxies import _random

    model.reinit_tables("normal")
    model.register_noise(x, _random.NOISE_ZEN_A)
    model.register_noise(x, _random.NOISE_ZEN_B)


def zen(model, x, y, extra) -> dict:
    from zcfast.proxies import _random
    from zcfast.proxies import zen as _zen

    _, ws, bs = model.params(flat=model.reinit_flat("normal"), requires_grad=False)
    x1 = model.noise_input(x, _random.NOISE_ZEN_A)
    x2 = model.noise_input(x, _random.NOISE_ZEN_B)
    running: list = []  # per BatchNorm call: [running variance (G, C) float64, cand]
    feats: list = []
    for n_pass, xin in enumerate((x1, x1 + _zen.GAMMA * x2)):
        calls = iter(range(10**9))

        def bn_tap(h, cand, C, n_pass=n_pass, calls=calls):
            i = next(calls)
            v = h.detach().double().transpose(0, 1).reshape(h.shape[1], -1).var(1).view(len(cand), C)
            if n_pass == 0:
                running.append([torch.ones_like(v), cand])
            r = running[i]
            r[0] = (1 - _zen.MOMENTUM) * r[0] + _zen.MOMENTUM * v  # the per-model update

        with torch.no_grad():
            model.forward(xin, ws, bs, taps={"bn": bn_tap, "pool": feats.append})
    K = model.K
    B = x.shape[0]
    diff = (feats[0] - feats[1]).abs().double()
    del feats
    cands = [np.asarray(cand) for _, cand in running]

    def finish(host):
        log_bn = np.zeros(K)
        for v, cand in zip(host[1:], cands):
            log_bn += model._per_candidate(np.log(np.sqrt(v)), cand)
        score = host[0]
        with np.errstate(divide="ignore"):
            return {"zen": np.where(score > 0, np.log(np.where(score > 0, score, 1.0)), -np.inf)
                    + log_bn}

    return _deferred([diff.reshape(B, K, -1).sum(2).mean(0)] + [r.mean(1) for r, _ in running],
                     finish)


def _distinct_per_candidate(keys: torch.Tensor, shift: int, K: int) -> torch.Tensor:
    """(K,) float64: the number of distinct values of ``keys`` (int64, candidate in the bits
    from ``shift`` up) per candidate, on the device: sorted, a 1 where a value differs from the
    one before it, summed per candidate (torch.unique would size its output on the host)."""
    srt = torch.sort(keys).values
    first = torch.ones(srt.shape, dtype=torch.float64, device=srt.device)
    first[1:] = (srt[1:] != srt[:-1]).to(torch.float64)
    return torch.zeros(K, dtype=torch.float64, device=srt.device).index_add_(0, srt >> shift, first)


def _prepare_swap(model, x, y, extra) -> None:
    from zcfast.proxies import swap as _swap

    for d in range(_swap.REPEATS):
        model.reinit_tables("normal", d)


def swap(model, x, y, extra) -> dict:
    from zcfast.proxies import swap as _swap

    xs = x[: _swap.SAMPLES]
    S = xs.shape[0]
    if S > 62:
        raise ValueError(f"swap packs each unit's pattern into 63 bits: at most 62 samples, got {S}")
    K = model.K
    dev = xs.device
    counts = []
    for d in range(_swap.REPEATS):
        _, ws, bs = model.params(flat=model.reinit_flat("normal", draw=d), requires_grad=False)
        keys: list = []

        def relu_tap(h, cand, C):
            G = len(cand)
            hv = h.detach().reshape(S, G, -1)
            code = torch.zeros(hv.shape[1:], dtype=torch.int64, device=dev)
            for s in range(S):  # one sample at a time: no (S, units) int64 temporary
                code |= (hv[s] > 0).to(torch.int64) << s
            # the plan's candidate table, already on the device
            code |= model._index_tables().get(cand).to(torch.int64).view(G, 1) << S
            keys.append(code.reshape(-1))

        with torch.no_grad():
            model.forward(xs, ws, bs, taps={"relu": relu_tap})
        counts.append(_distinct_per_candidate(torch.cat(keys), S, K))
    params = model.counts()["params"]
    factor = np.array([_swap.regular_factor(float(p)) for p in params])

    def finish(host):
        mean = host[0].sum(0) / _swap.REPEATS
        return {"swap": mean, "swap_reg": mean * factor}

    return _deferred([torch.stack(counts)], finish)


def _entropies(f: torch.Tensor, K: int):
    """Per candidate, zcfast.proxies.az_nas.spectral_entropy of its channels of a packed
    (B, K*C, H, W) feature: one batched float64 covariance eigvalsh. Returns a callable that
    makes the (K,) device tensor: the covariances (K, C, C) are computed now, the eigvalsh (it
    checks its result on the host on a GPU) runs when the chunk's results are fetched."""
    B, KC, H, W = f.shape
    C = KC // K
    x = f.detach().double().view(B, K, C, H * W).permute(1, 0, 3, 2).reshape(K, B * H * W, C)
    x = x - x.mean(1, keepdim=True)
    sigma = x.transpose(1, 2) @ x / x.shape[1]

    def entropy():
        lam = torch.linalg.eigvalsh(sigma)
        p = lam / lam.sum(1, keepdim=True)
        return -(p * torch.log(p + 1e-8)).sum(1)

    return entropy


def _probes(model, shape, slot: int) -> torch.Tensor:
    """(B, K*C, H, W) float32: zcfast.proxies._random.rademacher((B, C, H, W), code, slot, seed)
    of each candidate side by side, drawn on the device from the same counter streams (one
    segment per candidate) with the plan's codes from the chunk's upload."""
    B, C, H, W = shape
    K = model.K
    n = B * C * H * W
    dev = model.device
    codes = model.plan_codes()
    u = torch.empty(K * n, dtype=torch.float32, device=dev)
    from zcfast.ops.init import fill_uniform

    fill_uniform(u, torch.arange(K + 1, dtype=torch.int64, device=dev) * n, codes,
                 torch.full((K,), int(slot), dtype=torch.int64, device=dev),
                 torch.ones(K, dtype=torch.float32, device=dev), model.seed, check_values=False)
    r = torch.where(u >= 0, 1.0, -1.0).to(torch.float32)
    return r.view(K, B, C, H, W).transpose(0, 1).reshape(B, K * C, H, W)


def _prepare_az(model, x, y, extra) -> None:
    from zcfast.proxies import _random

    model.reinit_tables("kaiming_normal")
    model.register_noise(x, _random.NOISE_AZ)
    model.plan_codes(register=True)


def az_nas(model, x, y, extra) -> dict:
    from torch.nn import functional as F

    from zcfast.proxies import _random

    K = model.K
    _, ws, bs = model.params(flat=model.reinit_flat("kaiming_normal"))  # weights need grad: graph
    feats = []  # the stem's output and each stage's, in order

    def feature(t, feats=feats):  # (bound now: the name is deleted below)
        # a stage output that no candidate computes from a parameter (every candidate's cell
        # output is a 'none' sum: a fresh zero tensor) is still the next stage's input, whose
        # vjp trainability needs: make it a graph input, as the per-model network's x * 0 is
        if not t.requires_grad:
            t.requires_grad_(True)
        feats.append(t)

    model.forward(model.noise_input(x, _random.NOISE_AZ), ws, bs, taps={"feature": feature})
    ents = [_entropies(f, K) for f in feats]  # L+1 callables, run at the fetch
    L = len(feats) - 1
    tensors: list = []  # per block, last first: (K,) identity flags and svdvals maxima
    for i in reversed(range(1, len(feats))):  # the reference's order: last block first
        f_in, f_out = feats[i - 1], feats[i]
        B, KC, H, W = f_out.shape
        C = KC // K
        probe = _probes(model, (B, C, H, W), _random.PROBE + i).to(f_out.device, f_out.dtype)
        g_in = None
        if f_out.requires_grad:
            (g_in,) = torch.autograd.grad(f_out, f_in, grad_outputs=probe, retain_graph=True,
                                          allow_unused=True)
        if g_in is None:  # no candidate's output depends on its input: zero vjp
            g_in = torch.zeros_like(f_in)
        Bi, KCi, Hi, Wi = g_in.shape
        if g_in.shape == probe.shape:
            tensors.append((g_in == probe).view(B, K, -1).all(2).all(0))
        else:
            tensors.append(torch.zeros(K, dtype=torch.bool, device=g_in.device))
        if Hi != H:
            g_in = F.pixel_unshuffle(g_in, Hi // H)  # candidate k keeps a contiguous block
        Ci = g_in.shape[1] // K
        go = probe.double().view(B, K, C, H * W).permute(1, 0, 3, 2).reshape(K, -1, C)
        gi = g_in.double().view(B, K, Ci, H * W).permute(1, 0, 3, 2).reshape(K, -1, Ci)
        m = gi.transpose(1, 2) @ go / go.shape[1]
        # svdvals checks its result on the host on a GPU: run at the fetch, with the (K, Ci, C)
        # matrices kept until then
        tensors.append(lambda m=m: torch.linalg.svdvals(m).amax(1))
    del feats

    def finish(host):
        ent = np.stack(host[: L + 1])  # (L+1, K)
        expressivity = ent.sum(0)
        progressivity = np.diff(ent, axis=0).min(0)  # NaN propagates, as in the reference
        scores = []
        for b in range(L):
            ident, s = host[L + 1 + 2 * b] != 0, host[L + 2 + 2 * b]
            scores.append(np.where(ident, -np.inf, 2.0 - s - 1.0 / (s + 1e-6)))
        trainability = np.sum(scores, axis=0) / len(scores)
        return {"az_expressivity": expressivity, "az_progressivity": progressivity,
                "az_trainability": trainability}

    return _deferred(ents + tensors, finish)


def _vkdnw_items(model) -> list:
    """Per candidate, [(kind, key, group)] of its parameter tensors in the per-model network's
    ``named_parameters()`` order (zcfast/spaces/nb201_model.py): kind 'w' (conv weight), 'b'
    (conv bias), 'bnw'/'bnb' (BatchNorm weight/bias), 'hw'/'hb' (head); key the packed layer's
    name ('last' for the BatchNorm before the pool); group the candidate's copy in that layer."""
    from zcfast.spaces import nb201

    plan = model.plan
    K = plan.K
    paper = plan.flavour == "paper"
    # (cell, edge, candidate) -> (layer name, group) of the cell convolutions
    where = {}
    for c, nodes in enumerate(plan.cells):
        for nd in nodes:
            for lay in (nd.conv1, nd.conv3):
                if lay is None:
                    continue
                for g, (k, slot) in enumerate(zip(lay.cand, lay.slots)):
                    e = ((int(slot) - 100) // 5) % 6
                    where[(c, e, int(k))] = (lay.name, g)
    items = [[("w", "stem", k), ("bnw", "stem", k), ("bnb", "stem", k)] for k in range(K)]
    red = 0
    for c in range(len(plan.cells)):
        if plan.stage_of_cell[c] > red:
            ca, cb, sc = plan.reductions[red]
            for k in range(K):
                items[k] += [("w", ca.name, k), ("bnw", ca.name, k), ("bnb", ca.name, k),
                             ("w", cb.name, k), ("bnw", cb.name, k), ("bnb", cb.name, k),
                             ("w", sc.name, k)]
            red += 1
        for k in range(K):
            ops = nb201.ops_of_code(int(plan.codes[k]))
            for e in range(6):
                if (c, e, k) not in where:
                    continue
                name, g = where[(c, e, k)]
                items[k] += [("w", name, g)] + ([("b", name, g)] if paper else
                                                 [("bnw", name, g), ("bnb", name, g)])
                assert ops[e] in (nb201.CONV1, nb201.CONV3)
    for k in range(K):
        items[k] += [("bnw", "last", k), ("bnb", "last", k), ("hw", "head", k), ("hb", "head", k)]
    return items


def _conv_elem0(x_in, g_out, lay) -> torch.Tensor:
    """(B, G) per-sample gradient of weight[0, 0, 0, 0] of every copy of a packed conv layer:
    the sum over output pixels of the output gradient's first channel of the copy times the
    input's first channel of the copy at the pixel that element reads."""
    G = lay.groups
    g0 = g_out[:, :: lay.c_out]  # (B, G, Ho, Wo)
    if x_in.shape[1] == lay.c_in:  # the stem on the shared input: every copy reads channel 0
        xin = x_in[:, :1].expand(-1, G, -1, -1)
    else:
        xin = x_in[:, :: lay.c_in]
    p, s = lay.padding, lay.stride
    xin = torch.nn.functional.pad(xin, (p, p, p, p))
    ho, wo = g0.shape[2], g0.shape[3]
    win = xin[:, :, 0 : s * (ho - 1) + 1 : s, 0 : s * (wo - 1) + 1 : s]
    return (g0 * win).sum((2, 3))


def _vkdnw_columns(model) -> tuple:
    """(items, sel, order, idx): each candidate's parameter tensors (``_vkdnw_items``) and the
    first MAX_TENSORS of them (``sel``); ``order`` the (kind, key) tables one class's
    per-sample gradients are concatenated in (B, columns); ``idx`` (K * n,) int64, registered
    for the chunk's upload: the column of candidate k's i-th tensor (a zero column past the
    end for i >= len(sel[k])). A table's width is the groups of its packed layer (K for the
    last BatchNorm and the head), checked against the tensors in :func:`vkdnw`."""
    c = model.__dict__.setdefault("_host_np", {})
    if "vkdnw" not in c:
        from zcfast.proxies import vkdnw as _vk

        K = model.K
        items = _vkdnw_items(model)
        sel = [it[: _vk.MAX_TENSORS] for it in items]
        groups = {lay.name: lay.groups for lay in model.plan.layers}
        order, off, pos = [], {}, 0
        for s in sel:
            for kind, name, _ in s:
                if (kind, name) not in off:
                    order.append(((kind, name), K if name in ("last", "head") else groups[name]))
                    off[(kind, name)] = pos
                    pos += order[-1][1]
        n = max(len(s) for s in sel)
        idx = np.full((K, n), pos, dtype=np.int64)  # pos: the zero column
        for k, s in enumerate(sel):
            for i, (kind, name, g) in enumerate(s):
                idx[k, i] = off[(kind, name)] + g
        c["vkdnw"] = (items, sel, order, model._index_tables().add(idx.reshape(-1)))
    return c["vkdnw"]


def vkdnw(model, x, y, extra) -> dict:
    from zcfast.proxies import _random
    from zcfast.proxies import vkdnw as _vk

    K = model.K
    items, sel, order, idx_np = _vkdnw_columns(model)
    _, ws, bs = model.params(flat=model.reinit_flat("kaiming_normal"))  # weights need grad: graph
    convs: dict = {}
    bns: dict = {}
    pooled: list = []

    # an output computed from no parameter (in a pack whose every cell output is a 'none' sum,
    # the last BatchNorm's) is made a graph input, so that the logits' gradient reaches it, as
    # it reaches the per-model network's (see az_nas)
    def conv_tap(h, out, lay):
        if not out.requires_grad:
            out.requires_grad_(True)
        convs[lay.name] = (h.detach(), out, lay)

    def bn_tap(out, lay):
        if not out.requires_grad:
            out.requires_grad_(True)
        bns["last" if lay is None else lay.name] = (out, lay)

    xn = model.noise_input(x, _random.NOISE_VKDNW)
    logits = model.forward(xn, ws, bs, taps={"conv": conv_tap, "bn_out": bn_tap, "bn_eval": True,
                                             "pool": lambda f: pooled.append(f.mean((2, 3)))})
    B, _, C = logits.shape
    feat0 = pooled[0].detach()[:, ::64]  # (B, K): the head's input feature 0 of each candidate
    keys = [("conv", n) for n in convs] + [("bn", n) for n in bns]  # a conv and its BN share a name
    outs = [convs[n][1] for n in convs] + [bns[n][0] for n in bns]
    model._pending_upload()
    idx = model._index_tables().get(idx_np)
    n = idx.numel() // K
    # (B, C, K * n): class c's column of candidate k's i-th tensor at [:, c, k * n + i]
    jac_all = torch.empty((B, C, K * n), dtype=logits.dtype, device=logits.device)
    zero = torch.zeros((B, 1), dtype=logits.dtype, device=logits.device)
    for c in range(C):
        cot = torch.zeros_like(logits)
        cot[:, :, c] = 1.0
        gs = torch.autograd.grad(logits, outs, cot, retain_graph=c < C - 1, allow_unused=True)
        grad = {k: (g if g is not None else torch.zeros_like(o)) for k, g, o in zip(keys, gs, outs)}
        table: dict = {}
        for name, (h, _out, lay) in convs.items():
            g = grad[("conv", name)]
            table[("w", name)] = _conv_elem0(h, g, lay)
            if lay.has_bias:
                table[("b", name)] = g[:, :: lay.c_out].sum((2, 3))
        for name, (out, lay) in bns.items():
            ch = 64 if lay is None else lay.c_out
            g = grad[("bn", name)][:, ::ch]
            table[("bnw", name)] = (g * out.detach()[:, ::ch]).sum((2, 3))
            table[("bnb", name)] = g.sum((2, 3))
        hb = torch.full((B, K), 1.0 if c == 0 else 0.0, dtype=logits.dtype, device=logits.device)
        table[("hw", "head")] = hb * feat0
        table[("hb", "head")] = hb
        for key, width in order:
            if table[key].shape[1] != width:
                raise RuntimeError(f"vkdnw: table {key} has {table[key].shape[1]} columns, the "
                                   f"plan says {width}")
        big = torch.cat([table[key] for key, _ in order] + [zero], 1)
        jac_all[:, c] = big.index_select(1, idx)  # one gather for every candidate's tensors
    jac_all = jac_all.view(B, C, K, n)
    jac = [jac_all[:, :, k, : len(s)].contiguous() for k, s in enumerate(sel)]
    del jac_all
    logits = logits.detach()
    fishers = [_vk.fisher_matrix(jac[k], logits[:, k]) for k in range(K)]
    del jac, logits
    dim = np.array([float(len(it)) for it in items])

    def finish(host):
        ent = host[0]
        single = np.where(np.isfinite(ent), dim + ent / _vk.ENTROPY_SCALE, np.nan)
        return {"vkdnw": ent, "vkdnw_dim": dim, "vkdnw_single": single}

    # svdvals and quantile check on the host on a GPU: run at the fetch (the (P, P) Fisher
    # matrices, P <= 128, kept until then)
    return _deferred([lambda: torch.stack([_vk.decile_entropy_t(f) for f in fishers])], finish)


def _prepare_vkdnw(model, x, y, extra) -> None:
    from zcfast.proxies import _random

    model.reinit_tables("kaiming_normal")
    model.register_noise(x, _random.NOISE_VKDNW)
    _vkdnw_columns(model)


def _min_corr_eig(t: torch.Tensor, cand) -> tuple:
    """Per group of a packed (1, G*C, H, W) output: zcfast.proxies.meco.min_corr_eigenvalue of
    the group's C channels (rows) over its H*W positions; returns (values (G,) on the device,
    cand as a host array)."""
    cand = np.asarray(cand)
    G = len(cand)
    f = t[0].detach().double().reshape(G, t.shape[1] // G, -1)  # (G, C, HW)
    if f.shape[2] < 2:
        return torch.zeros(G, dtype=torch.float64, device=t.device), cand
    # torch.corrcoef's arithmetic, batched: covariance, divided by the row deviations, clipped
    xc = f - f.mean(2, keepdim=True)
    cov = xc @ xc.transpose(1, 2) / (f.shape[2] - 1)
    sd = torch.sqrt(torch.diagonal(cov, dim1=1, dim2=2))
    corr = (cov / sd[:, :, None] / sd[:, None, :]).clamp(-1, 1)
    corr = torch.where(torch.isfinite(corr), corr, torch.zeros((), dtype=corr.dtype))
    return torch.linalg.eigvalsh(corr)[:, 0], cand


def meco(model, x, y, extra) -> dict:
    """The module outputs of the per-model network with their counts (zcfast/proxies/meco.py:
    every module call, plus nb201_extra_counts): stem conv 1, stem BN 3; per conv edge its ReLU
    1, conv 1, BN 3; skip edge 1; pool edge 2; cell output 1 (+1 for the last cell of stages 1
    and 2 and for the last cell overall); reduction block: each ReLU 1, conv 1, BN 3, the
    shortcut's pool 1 and conv 2, the block 1; last BN 1, its ReLU 2. Zero edges, the pooled
    vector and the logits add exactly 0."""
    K = model.K
    parts: list = []  # (values on the device, cand, times) in the reference's order
    _, ws, bs = model.params(requires_grad=False)
    n_cells = len(model.plan.cells)
    # feature calls: 0 stem, then cells and reduction blocks in forward order
    last_of_stage = {c for c in range(n_cells)
                     if c == n_cells - 1 or model.plan.stage_of_cell[c + 1] != model.plan.stage_of_cell[c]}
    order = []
    red = 0
    for c in range(n_cells):
        if model.plan.stage_of_cell[c] > red:
            order.append(("red", None))
            red += 1
        order.append(("cell", c))
    feature_calls = iter(range(10**9))

    def add(t, cand, times):
        v, cand = _min_corr_eig(t, cand)
        parts.append((v, cand, times))

    def conv_tap(h, out, lay):
        name = lay.name
        if name == "stem":
            add(out, lay.cand, 1)
        elif name.endswith("shortcut"):
            add(h, lay.cand, 1)  # the shortcut's AvgPool2d output
            add(out, lay.cand, 2)  # its conv and the shortcut Sequential
        else:  # cell edge or conv_a / conv_b: the ReLU output is the conv input
            add(h, lay.cand, 1)
            add(out, lay.cand, 1)

    def bn_tap(out, lay):
        if lay is None:
            add(out, model.plan.stem.cand, 1)
        else:
            add(out, lay.cand, 3)  # BatchNorm, its ReLUConvBN / stem Sequential, the extra wrapper

    def edge_tap(kind, out, cand):
        add(out, cand, 1 if kind == "skip" else 2)  # Identity; Pool and its AvgPool2d

    def feature_tap(f):
        i = next(feature_calls)
        if i == 0:
            return  # the stem's output is its BatchNorm's, counted there
        kind, c = order[i - 1]
        times = 1
        if kind == "cell" and c in last_of_stage:
            times = 2  # the stage Sequential of the authors' tree / this network's ``layers``
        add(f, model.plan.stem.cand, times)

    with torch.no_grad():
        model.forward(x[:1], ws, bs, taps={"conv": conv_tap, "bn_out": bn_tap, "edge": edge_tap,
                                           "feature": feature_tap,
                                           "pool": lambda f: add(f, model.plan.stem.cand, 2)})

    def finish(host):
        total = np.zeros(K)
        for v, (_, cand, times) in zip(host, parts):
            ok = np.isfinite(v)
            total[:] += times * np.bincount(cand[ok], weights=v[ok], minlength=K)
        return {"meco": total}

    # the eigenvalues (eigvalsh per output, run in the forward: keeping every output's
    # correlation matrix to the end would cost hundreds of MB) come back in the chunk's fetch
    return _deferred([v for v, _, _ in parts], finish)


_register(("zico",), zico)
_register(("epe_nas",), epe_nas)
_register(("zen",), zen, _prepare_zen)
_register(("swap", "swap_reg"), swap, _prepare_swap)
_register(("az_expressivity", "az_progressivity", "az_trainability"), az_nas, _prepare_az)
_register(("vkdnw", "vkdnw_dim", "vkdnw_single"), vkdnw, _prepare_vkdnw)
_register(("meco",), meco)
# AZ-NAS's complexity is the flops proxy (zcfast/proxies/__init__.py), counted from the plan
_register(("az_complexity",), lambda model, x, y, extra: {"az_complexity": model.counts()["flops"]})

__all__ = ["PACKED", "PackedGroup", "names"]
