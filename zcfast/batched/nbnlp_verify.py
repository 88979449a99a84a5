"""Is a packed NAS-Bench-NLP score the per-model reference's score? The checks of docs/engine.md
applied to the language models (docs/nbnlp.md, "Equivalence"):

- float64: relative error at most 1e-9 (absolute 1e-12 near zero) for every proxy;
- float32: the criterion of :mod:`zcfast.batched.verify`,
  |packed32 - ref64| <= 32 * own + 16 u |ref64| + 1e-12, own = max(|ref32 - ref64|,
  |ref32' - ref64|). The two float32 references must round differently: the image spaces get
  ref32' from PyTorch's other convolution code, which a recurrent network does not use; here
  ref32' is the per-model reference on the batch in reverse sample order (every proxy is a
  symmetric function of the samples, so the value is the same and only the order of the batch
  sums changes). synflow (float64 in both paths) to 1e-9, params and flops exactly;
- batch invariance: a candidate's scores do not depend on K or on its batch-mates.

No ReLU-branch re-check: leaky ReLU is the only kink, and a defect in a pair that fails near a
tie would show as a failure here (reported, never hidden).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from zcfast.batched.verify import EXACT_PROXIES, FLOAT64_PROXIES, Pair, fast_pass, judge, relerr

ALL = ("grad_norm", "snip", "plain", "grasp", "fisher", "jacob_cov", "synflow", "nwot", "params",
       "flops", "l2_norm")


def reference(code: int, proxies, x, y, *, sizes, seed: int = 0, dtype=torch.float32,
              device="cpu", reverse: bool = False) -> dict:
    """Per-model scores of one network (``reverse``: the batch in reverse sample order)."""
    from zcfast.proxies import compute_measures
    from zcfast.spaces.nbnlp_model import build_model

    net = build_model(int(code), sizes=sizes, seed=seed, dtype=dtype, device=device)
    if reverse:
        x, y = x.flip(0), y.flip(0)
    return compute_measures(net, x.to(device), y.to(device), list(proxies), device=device)


def packed(codes, proxies, x, y, *, sizes, seed: int = 0, dtype=torch.float32, device="cpu",
           chunk: int | None = None, time_chunk: int | None = None) -> dict:
    """{position in codes: {proxy: value}} from the packed engine, ``chunk`` candidates per
    pass, ``time_chunk`` time steps per decoder chunk (None: the engine's default)."""
    from zcfast.batched.nbnlp import PackedNBNLP

    codes = [int(c) for c in codes]
    chunk = chunk or len(codes)
    out = {}
    for a in range(0, len(codes), chunk):
        part = codes[a : a + chunk]
        res = PackedNBNLP(part, sizes=sizes, seed=seed, dtype=dtype, device=device,
                          time_chunk=time_chunk).compute(x, y, list(proxies))
        for k in range(len(part)):
            out[a + k] = {p: float(res[p][k]) for p in proxies}
    return out


def float64_mismatches(codes, proxies, x, y, *, sizes, seed: int = 0, device="cpu",
                       got: dict | None = None, time_chunk: int | None = None) -> list:
    """(position, proxy, reference, packed) of every float64 pair beyond 1e-9 relative (and
    1e-12 absolute); NaN must meet NaN."""
    got = packed(codes, proxies, x, y, sizes=sizes, seed=seed, dtype=torch.float64,
                 device=device, time_chunk=time_chunk) if got is None else got
    bad = []
    for k, c in enumerate(codes):
        ref = reference(c, proxies, x, y, sizes=sizes, seed=seed, dtype=torch.float64, device=device)
        for p in proxies:
            a, b = ref[p], got[k][p]
            if not (relerr(a, b) <= 1e-9 or abs(a - b) < 1e-12):
                bad.append((k, p, a, b))
    return bad


def check_float32(codes, proxies, x, y, *, sizes, seed: int = 0, device="cpu",
                  got: dict | None = None, lazy: bool = True, progress=None) -> list:
    """Verdicts (``verify.Pair``, cell = position in codes) on every (network, proxy) of packed
    float32 scores ``got`` ({position: {proxy: value}}; computed in one pass when None). lazy:
    skip the float64 and reversed references of pairs within 16 ulps of ref32."""
    proxies = list(proxies)
    got = packed(codes, proxies, x, y, sizes=sizes, seed=seed, device=device) if got is None else got
    kw = dict(sizes=sizes, seed=seed, device=device)
    out = []
    for k, c in enumerate(codes):
        r32 = reference(c, proxies, x, y, **kw)
        slow = []
        for p in proxies:
            v = got[k][p]
            if p in EXACT_PROXIES:
                ok = v == r32[p]
                out.append(Pair(k, p, v, (r32[p],), None, ok, "exact" if ok else "FAIL",
                                "" if ok else "counts differ"))
            elif p in FLOAT64_PROXIES:
                e = relerr(v, r32[p])
                out.append(Pair(k, p, v, (r32[p],), None, e <= 1e-9, "float64" if e <= 1e-9 else "FAIL",
                                f"relative error {e:.2g} (float64 in both)"))
            elif p == "nwot" and math.isnan(r32[p]):
                ok = math.isnan(v)
                out.append(Pair(k, p, v, (r32[p],), None, ok, "exact" if ok else "FAIL",
                                "no leaky ReLU: NaN in both" if ok else "NaN expected"))
            elif lazy and fast_pass(v, r32[p]):
                out.append(Pair(k, p, v, (r32[p],), None, True, "fast"))
            else:
                slow.append(p)
        if slow:
            r32b = reference(c, slow, x, y, reverse=True, **kw)
            r64 = reference(c, slow, x, y, dtype=torch.float64, **kw)
            for p in slow:
                r = (r32[p], r32b[p])
                ok, why = judge(got[k][p], r, r64[p])
                out.append(Pair(k, p, got[k][p], r, r64[p], ok, "float64" if ok else "FAIL", why))
        if progress:
            progress(k)
    return out


def batch_invariance(target: int, mates, proxies, x, y, *, sizes, ks=(1, 7, 16), seed: int = 0,
                     device="cpu") -> dict:
    """{proxy: largest relative difference} of ``target``'s scores packed with k - 1 of
    ``mates`` (k in ``ks``; the target last) against k = ks[0]."""
    from zcfast.batched.nbnlp import PackedNBNLP

    results = []
    for k in ks:
        codes = [int(m) for m in mates[: k - 1]] + [int(target)]
        res = PackedNBNLP(codes, sizes=sizes, seed=seed, device=device).compute(x, y, list(proxies))
        results.append({p: float(res[p][-1]) for p in proxies})
    return {p: max(relerr(results[0][p], r[p]) for r in results[1:]) for p in proxies}


def multiples(pairs) -> dict:
    """{proxy: largest |packed - ref64| / own} over the pairs judged against float64."""
    out: dict = {}
    for q in pairs:
        if q.ref64 is None or not np.isfinite(q.ref64):
            continue
        own = max(abs(r - q.ref64) for r in q.ref32)
        if own > 0:
            out[q.proxy] = max(out.get(q.proxy, 0.0), abs(q.packed - q.ref64) / own)
    return out
