"""How far apart may the packed engine's backends (torch reference, CUDA, Triton) be? Bounds
derived from the floating-point error of each backend's summation, per candidate and proxy.

What differs between backends. The weights (fill_uniform, bit-identical on every backend), the
forward and backward passes (torch ops) and the NASWOT kernel (exact integers) are the same, so
``jacob_cov``, ``nwot``, ``params`` and ``flops`` must agree exactly. Only the fused reductions
differ: ``segment_saliency`` (snip, plain, grad_norm, grasp, l2_norm, synflow) and
``fisher_channels`` (fisher).

The bound (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., ch. 3-4): summing
n terms, each product rounded once, in any order, in a format of unit roundoff u, errs by at most
``gamma(n, u) * sum |terms|`` with gamma(n, u) = n u / (1 - n u); u = 2^-24 (float32), 2^-53
(float64). Per backend, for one segment of n elements:
- torch reference: float32 products are exact in float64, summed in float64:
  gamma(n + 1, u64) (n + 1: float64 inputs have their products rounded too);
- CUDA: the same, in a different order: gamma(n + 1, u64);
- Triton: each of the BLOCK lanes sums m = ceil(n / BLOCK) products in the input's precision
  (gamma(m, u32) for float32), then the lanes are added in float64 in the compiler's order
  (gamma(BLOCK, u64)).
Two backends then differ by at most the sum of their bounds. Per proxy and candidate (sums over
its segments s, terms t of s):
- snip = sum |w g|, plain = sum w g: sum_s eps_s sum_t |w g| (plain's bound is snip's: its
  terms cancel, their magnitudes do not);
- grasp = -sum w Hg: sum_s eps_s sum_t |w Hg| (from the recorded Hg);
- grad_norm = sum_s sqrt(sum g^2), l2_norm alike: positive terms, relative error eps_s, so
  sqrt(x) (1 - sqrt(1 - eps_s)) per segment;
- synflow (float64 inputs): as snip, with the float64 gammas;
- fisher: F_c = 0.5 / B sum_b d_bc^2 with d_bc = sum_hw a g. Triton sums d in float32: lanes of
  m = ceil(HW / BLOCK_HW) products, then min(HW, BLOCK_HW) lanes in any order, so
  |e_bc| <= E_bc = gamma(m + min(HW, BLOCK_HW) - 1, u32) sum_hw |a g|; CUDA and torch in
  float64, E_bc = gamma(HW + 1, u64) sum |a g|. Then |d^2 - (d + e)^2| <= 2 |d| E + E^2, and the
  candidate's fisher moves by at most fan_in * 0.5 / B * sum (2 |d| E + E^2) over its channels.
Every proxy also gets the float64 rounding of the final sums: gamma(S + 4, u64) * sum of the
magnitudes summed, S the number of values added. The engine's inputs to the reductions are
recorded (``Recorder``) and the bounds computed from them in float64.
"""

from __future__ import annotations

import inspect
import math
from contextlib import contextmanager

import numpy as np
import torch

U32 = 2.0**-24
U64 = 2.0**-53
EXACT = ("jacob_cov", "nwot", "params", "flops")


def gamma(n, u):
    n = np.asarray(n, dtype=np.float64)
    return n * u / (1.0 - n * u)


def _triton_block(fn_name: str, param: str) -> int:
    if fn_name == "saliency":
        from zcfast.kernels.saliency import segment_saliency_triton as f
    else:
        from zcfast.kernels.fisher import fisher_channels_triton as f
    return int(inspect.signature(f).parameters[param].default)


class Recorder:
    """Records the engine's calls of segment_saliency and fisher_channels (inputs and outputs)
    and of PackedNB201._per_candidate (values and candidate of each segment / channel group)."""

    def __init__(self):
        self.saliency, self.fisher, self.per_candidate = [], [], []

    @contextmanager
    def on(self, monkeypatch):
        from zcfast.batched import base

        sal, fis, per = base.segment_saliency, base.fisher_channels, base.PackedModel._per_candidate

        def rec_sal(w, g, hg, off, **kw):
            out = sal(w, g, hg, off, **kw)
            self.saliency.append((w.detach(), g.detach(), None if hg is None else hg.detach(),
                                  off, out.detach().cpu().double()))
            return out

        def rec_fis(a, g, group, fan_in, **kw):
            out = fis(a, g, group, fan_in, **kw)
            self.fisher.append((a.detach(), g.detach(), group, float(fan_in), out.detach().cpu()))
            return out

        def rec_per(eng, values, cand):
            self.per_candidate.append((np.asarray(values), np.asarray(cand)))
            return per(eng, values, cand)

        with monkeypatch.context() as m:
            m.setattr(base, "segment_saliency", rec_sal)
            m.setattr(base, "fisher_channels", rec_fis)
            m.setattr(base.PackedModel, "_per_candidate", rec_per)
            yield self


def _seg_eps(n: np.ndarray, dtype, backend: str) -> np.ndarray:
    """Relative error bound of one backend's per-segment sum of n products."""
    if backend == "triton":
        block = _triton_block("saliency", "block_size")
        m = np.ceil(n / block)
        lanes = gamma(m, U32) if dtype == torch.float32 else gamma(m, U64)
        return np.where(n > 0, lanes + gamma(block, U64), 0.0)
    return np.where(n > 0, gamma(n + 1, U64), 0.0)


def _segment_abs_sums(w, g, hg, off):
    """Per segment (float64): sum |w g|, sum g^2, sum |w hg|, sum w^2 (exact-ish in float64)."""
    nseg = off.numel() - 1
    lens = (off[1:] - off[:-1]).cpu()
    seg = torch.repeat_interleave(torch.arange(nseg), lens).to(w.device)
    a, b = int(off[0]), int(off[-1])
    wd, gd = w[a:b].double(), g[a:b].double()
    out = torch.zeros(nseg, 4, dtype=torch.float64, device=w.device)
    out[:, 0].index_add_(0, seg, (wd * gd).abs())
    out[:, 1].index_add_(0, seg, gd * gd)
    if hg is not None:
        out[:, 2].index_add_(0, seg, (wd * hg[a:b].double()).abs())
    out[:, 3].index_add_(0, seg, wd * wd)
    return out.cpu().numpy(), lens.numpy().astype(np.float64)


def derived_bounds(rec: Recorder, k: int, backends=("torch", "triton")) -> dict:
    """{proxy: (K,) float64 absolute bound} on |score(backends[0]) - score(backends[1])|, from
    the inputs recorded while one of them ran (the inputs are the same on every backend)."""
    out = {}
    # the loss pass: one float32 saliency call (first), then five per-candidate sums over its
    # segments (snip, plain, grad_norm, grasp, l2_norm), then one per fisher layer
    calls = list(rec.saliency)
    per = list(rec.per_candidate)
    loss = next(c for c in calls if c[0].dtype == torch.float32)
    syn = next((c for c in calls if c[0].dtype == torch.float64), None)
    w, g, hg, off, _ = loss
    sums, n = _segment_abs_sums(w, g, hg, off)
    eps = sum(_seg_eps(n, torch.float32, b) for b in backends)
    cand = per[0][1]
    assert all(np.array_equal(p[1], cand) for p in per[:5]), "unexpected call order in loss_pass"
    nseg = len(cand)
    slack = gamma(nseg + 4, U64)

    def over(values):
        return np.bincount(cand, weights=values, minlength=k)

    out["snip"] = over(eps * sums[:, 0]) + slack * over(sums[:, 0])
    out["plain"] = out["snip"].copy()
    out["grasp"] = over(eps * sums[:, 2]) + slack * over(sums[:, 2])
    for name, col in (("grad_norm", 1), ("l2_norm", 3)):
        root = np.sqrt(sums[:, col])
        out[name] = over(root * (1.0 - np.sqrt(np.clip(1.0 - eps, 0.0, None)))) + slack * over(root)
    if syn is not None:
        w, g, _, off, _ = syn
        s2, n2 = _segment_abs_sums(w, g, None, off)
        eps2 = sum(_seg_eps(n2, torch.float64, b) for b in backends)
        scand = next(p[1] for p in per if len(p[1]) == len(n2))
        out["synflow"] = (np.bincount(scand, weights=eps2 * s2[:, 0], minlength=k)
                          + gamma(len(n2) + 4, U64) * np.bincount(scand, weights=s2[:, 0], minlength=k))
    # fisher: each fisher_channels call is followed by its per-candidate sum
    fis_per = [p for p in per[5:] if p[0].dtype == np.float64][: len(rec.fisher)]
    fb, total = np.zeros(k), np.zeros(k)
    for (a, gr, group, fan_in, res), (vals, fcand) in zip(rec.fisher, fis_per):
        assert np.array_equal(vals, res.numpy()), "fisher calls out of step with their sums"
        total += np.bincount(fcand, weights=np.abs(vals), minlength=k)
        b = a.shape[0]
        a3 = a.reshape(b, a.shape[1], -1).double()
        g3 = gr.reshape(b, a.shape[1], -1).double()
        hw = a3.shape[2]
        d = (a3 * g3).sum(2).abs()  # (B, C)
        mag = (a3 * g3).abs().sum(2)
        e = torch.zeros_like(mag)
        for bk in backends:
            if bk == "triton":
                bhw = min(_triton_block("fisher", "block_hw"), max(16, 1 << max(0, (hw - 1).bit_length())))
                m = math.ceil(hw / bhw)
                e = e + float(gamma(m + min(hw, bhw) - 1, U32)) * mag
            else:
                e = e + float(gamma(hw + 1, U64)) * mag
        per_c = 0.5 / b * (2 * d * e + e * e).sum(0)  # (C,)
        f_c = 0.5 / b * (d * d).sum(0)
        per_c = per_c + float(gamma(b + group + 4, U64)) * f_c
        grp = (per_c.view(-1, group).sum(1) * fan_in).cpu().numpy()
        fb += np.bincount(fcand, weights=grp, minlength=k)
    out["fisher"] = fb + gamma(len(rec.fisher) + 4, U64) * total
    return out


def run_backends(monkeypatch, cells, x, y, names, backends, *, ncls, device="cpu"):
    """Score ``cells`` once per backend (fresh engines); the first backend's run is recorded.
    Returns ({backend: {cell: {proxy: value}}}, Recorder of the first run)."""
    from zcfast.batched.engine import PackedNB201, codes_of

    scores, rec = {}, Recorder()
    for i, bk in enumerate(backends):
        eng = PackedNB201(codes_of(cells), ncls, input_size=x.shape[-1], device=device, backend=bk)
        if i == 0:
            with rec.on(monkeypatch):
                res = eng.compute(x, y, names)
        else:
            res = eng.compute(x, y, names)
        scores[bk] = {c: {p: float(res[p][j]) for p in names} for j, c in enumerate(cells)}
    return scores, rec


def violations(base: dict, got: dict, bounds: dict, order: list) -> list:
    """(cell, proxy, a, b, |a - b|, bound) where two backends' scores disagree beyond the bound;
    EXACT proxies must be equal (NaN == NaN, inf == inf)."""
    bad = []
    for k, cell in enumerate(order):
        for p, a in base[cell].items():
            b = got[cell][p]
            if p in EXACT or p not in bounds:
                same = (math.isnan(a) and math.isnan(b)) or a == b
                if not same:
                    bad.append((cell, p, a, b, abs(a - b), 0.0))
                continue
            if math.isnan(a) or math.isnan(b):
                if not (math.isnan(a) and math.isnan(b)):
                    bad.append((cell, p, a, b, math.inf, bounds[p][k]))
                continue
            if abs(a - b) > bounds[p][k]:
                bad.append((cell, p, a, b, abs(a - b), bounds[p][k]))
    return bad
