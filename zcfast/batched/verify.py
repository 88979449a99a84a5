"""Is a packed score the per-model reference's score? The float32 criterion of docs/engine.md.

Float64 is compared directly (relative error <= 1e-9, tests/engine_checks.py). Float32 cannot
be: two correct float32 implementations that sum in different orders disagree, by an amount that
depends on how well float32 resolves that particular (cell, proxy). The criterion measures
float32's resolution on the same cell with the per-model reference (``zcfast.proxies``) and
holds the packed engine to it:

    |packed32 - ref64| <= MULTIPLE * own + REL_FLOOR * |ref64| + ABS_FLOOR
    own = max(|ref32 - ref64|, |ref32' - ref64|)

ref64 is the per-model reference in float64 on the same weights and batch, ref32 the same in
float32, ref32' the same in float32 with PyTorch's other convolution implementation (oneDNN off
on a CPU, cuDNN off on a GPU): two float32 results that round differently, so that ``own`` does
not come out small by luck. A packed engine about as accurate as PyTorch's own float32 passes;
one that adds an error well above float32's rounding on that cell fails, whatever its size
relative to 1e-4. The constants are justified, with measurements, in docs/engine.md.

ReLU is the one non-smooth operation: where a pre-activation is within rounding of zero, float32
and float64 may take different sides, and the float32 score then belongs to a slightly different
piecewise-linear function. Such a pair is re-checked on float32's own branch: the packed engine
is re-run in float64 with every ReLU replaced by the mask the float32 run used (``relu_tape``);
every mask entry that disagrees with float64's sign must be a near tie (|pre-activation| at most
``TIE`` times the largest one of its tensor), and the float32 value must meet the same bound
against that float64 value.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# float32's unit roundoff
U32 = 2.0**-24
# The packed engine may be at most this many times less accurate than the less accurate of the
# two per-model float32 results (docs/engine.md: calibration).
MULTIPLE = 32.0
# Floors: float32 cannot resolve a score better than a few ulps of it (both per-model errors can
# be near zero by luck), nor an exact zero of float64.
REL_FLOOR = 16 * U32  # about 9.5e-7
ABS_FLOOR = 1e-12
# A ReLU mask entry where float32 and float64 disagree counts as a near tie when its
# pre-activation is at most TIE times the largest |pre-activation| of that tensor (the largest
# measured on correct runs is 8.5e-5, docs/engine.md).
TIE = 1e-3
# proxies computed in float64 by both paths (synflow: relative error <= 1e-9), or exactly (counts)
FLOAT64_PROXIES = ("synflow",)
EXACT_PROXIES = ("params", "flops")


def relerr(a: float, b: float) -> float:
    """|a - b| / max(|a|, |b|); 0 when equal or both NaN, inf when only one is NaN."""
    if (math.isnan(a) and math.isnan(b)) or a == b:
        return 0.0
    if math.isnan(a) or math.isnan(b):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def own_error(ref32s, ref64: float) -> float:
    """float32's error on this (cell, proxy): the largest of the per-model float32 results'."""
    return max((abs(r - ref64) if math.isfinite(r) else math.inf) for r in ref32s)


def float32_bound(ref32s, ref64: float) -> float:
    """How far a correct float32 score may be from ``ref64``, given the per-model float32
    results ``ref32s`` of the same (cell, proxy)."""
    return MULTIPLE * own_error(ref32s, ref64) + REL_FLOOR * abs(ref64) + ABS_FLOOR


def judge(value: float, ref32s, ref64: float, truth: float | None = None) -> tuple:
    """(ok, reason) for a float32 score ``value``. ``truth``: the float64 value to measure the
    error against when it is not ``ref64`` (float32's ReLU branch); the bound stays the one
    measured with ``ref64``."""
    truth = ref64 if truth is None else truth
    if math.isnan(ref64):
        return math.isnan(value), "float64 is NaN: the score must be NaN"
    if math.isinf(ref64):
        return value == ref64, f"float64 is {ref64}: the score must be the same"
    if not all(math.isfinite(r) for r in ref32s):
        return True, "float32 does not resolve this value (a per-model float32 result is not finite)"
    if not (math.isfinite(value) and math.isfinite(truth)):
        return False, "not finite where float64 is"
    bound = float32_bound(ref32s, ref64)
    err = abs(value - truth)
    return err <= bound, f"|err| {err:.3g} vs bound {bound:.3g}"


def fast_pass(value: float, ref32: float) -> bool:
    """True when ``value`` meets the criterion whatever float64 says: if |value - ref32| <=
    REL_FLOOR * |ref32| + ABS_FLOOR then, by the triangle inequality, |value - ref64| <=
    (1 + REL_FLOOR) * |ref32 - ref64| + REL_FLOOR * |ref64| + ABS_FLOOR, within the bound. Lets a
    long check skip the float64 reference of the pairs that agree to a few ulps."""
    if not (math.isfinite(value) and math.isfinite(ref32)):
        return False
    return abs(value - ref32) <= REL_FLOOR * abs(ref32) + ABS_FLOOR


@contextlib.contextmanager
def other_convolutions(device):
    """PyTorch's second float32 convolution implementation on ``device``: oneDNN off on a CPU
    (native im2col + GEMM), cuDNN off on a GPU (native CUDA kernels)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # oneDNN's flag setter warns about Intel-GPU TF32
        if torch.device(device).type == "cuda":
            ctx = torch.backends.cudnn.flags(enabled=False)
        else:
            ctx = torch.backends.mkldnn.flags(enabled=False)
        with ctx:
            yield


# ---------------------------------------------------------------------------------------------
# ReLU branches
# ---------------------------------------------------------------------------------------------
class _ReluTape:
    """Stands in for torch.nn.functional inside the packed engine module. Recording: ReLUs run as
    usual and their masks (input > 0) are kept in call order. Replaying: the i-th ReLU call
    multiplies its input by the i-th recorded mask (the recorded run's piecewise-linear branch),
    counting the entries where its own input's sign disagrees and how close to zero they are;
    NASWOT codes are taken from the masks too."""

    def __init__(self, masks=None):
        self.replaying = masks is not None
        self.masks = masks if masks is not None else []
        self.pos = 0
        self.flips = 0
        self.worst_tie = 0.0  # largest |pre-activation| / max |pre-activation| among flips
        self._by_ptr: dict = {}

    def __getattr__(self, name):
        return getattr(F, name)

    def relu(self, x, inplace=False):
        if not self.replaying:
            self.masks.append(x.detach() > 0)
            return F.relu(x)
        if self.pos >= len(self.masks) or self.masks[self.pos].shape != x.shape:
            raise RuntimeError("ReLU replay: this run's ReLU calls differ from the recorded run's")
        m = self.masks[self.pos]
        self.pos += 1
        xd = x.detach()
        self._by_ptr[(xd.data_ptr(), tuple(xd.shape))] = m
        diff = (xd > 0) != m
        n = int(diff.sum())
        if n:
            self.flips += n
            scale = float(xd.abs().max())
            self.worst_tie = max(self.worst_tie, float(xd[diff].abs().max()) / max(scale, 1e-300))
        return x * m.to(x.dtype)

    def codes(self, h):
        """NASWOT input carrying the recorded signs (replay), else ``h`` itself."""
        m = self._by_ptr.get((h.data_ptr(), tuple(h.shape)))
        if m is None:
            return h
        return torch.where(m, 1.0, -1.0).to(h.dtype)


@contextlib.contextmanager
def relu_tape(masks=None):
    """Record (``masks=None``) or replay the ReLU masks of the packed-engine runs in this block."""
    from zcfast.batched import base, engine

    tape = _ReluTape(masks)
    orig_f, orig_naswot = engine.F, base.naswot_kernel

    def naswot(h, cand, C, kmat, backend=None):
        return orig_naswot(tape.codes(h), cand, C, kmat, backend=backend)

    engine.F = tape
    base.naswot_kernel = naswot
    try:
        yield tape
    finally:
        engine.F, base.naswot_kernel = orig_f, orig_naswot


# ---------------------------------------------------------------------------------------------
# Checking packed float32 scores of many cells
# ---------------------------------------------------------------------------------------------
@dataclass
class Pair:
    """The verdict on one (cell, proxy). how: 'fast' (agrees with ref32 to the floor), 'float64'
    (within the bound), 'branch' (within the bound on float32's ReLU branch), 'exact' (counts),
    or 'FAIL'."""

    cell: int
    proxy: str
    packed: float
    ref32: tuple  # per-model float32 results (one for 'fast', two otherwise)
    ref64: float | None  # None where not needed
    ok: bool
    how: str
    detail: str = ""


def _packed_chunk(part, proxies, x, y, *, ncls, seed, flavour, device, dtype, backend,
                  tape=False, masks=None):
    """One packed pass over ``part``: ({proxy: [values]}, tape or None). ``tape``: record the
    ReLU masks; ``masks``: replay them."""
    from zcfast.batched import iter_packed

    ctx = relu_tape(masks) if (tape or masks is not None) else contextlib.nullcontext()
    with ctx as t:
        (_, res), = list(iter_packed(part, proxies, x, y, ncls=ncls, seed=seed, flavour=flavour,
                                     device=device, chunk=len(part), backend=backend, dtype=dtype))
    return {p: [float(v) for v in res[p]] for p in proxies}, t


def reference(cell: int, proxies, x, y, *, ncls: int, seed: int = 0, flavour: str = "paper",
              device="cpu", dtype=torch.float32, other: bool = False) -> dict:
    """Per-model reference scores of one cell (``other``: with the second convolution code)."""
    from zcfast.proxies import compute_measures
    from zcfast.spaces.nb201_model import build_model

    net = build_model(int(cell), ncls, flavour=flavour, seed=seed, device=device, dtype=dtype)
    ctx = other_convolutions(device) if other else contextlib.nullcontext()
    with ctx:
        return compute_measures(net, x.to(device, dtype), y.to(device), list(proxies), device=device)


def check_float32(chunks, proxies, x, y, *, ncls: int, seed: int = 0, flavour: str = "paper",
                  device="cpu", backend=None, packed=None, refs=None, lazy: bool = True,
                  progress=None) -> list:
    """Verdicts on every (cell, proxy) of the packed engine in float32.

    chunks: lists of NB201 indices, each scored in one packed pass (as timed or as scored).
    packed: optional {cell: {proxy: value}} of an earlier float32 run with the same chunks (the
    timed one); a chunk re-run for a branch check must reproduce it exactly. refs: optional cache
    {(cell, 'ref32' | 'ref32b' | 'ref64'): {proxy: value}} of reference results, filled as they
    are computed. lazy: skip the float64 reference (and the second float32 one) of the pairs that
    pass ``fast_pass``. progress: called with each cell once it is judged. Returns ``Pair``s.
    """
    proxies = list(proxies)
    refs = {} if refs is None else refs
    kw = dict(ncls=ncls, seed=seed, flavour=flavour, device=device)

    def ref(i, kind, names):
        have = refs.get((i, kind), {})
        missing = [p for p in names if p not in have]
        if missing:
            dtype = torch.float64 if kind == "ref64" else torch.float32
            have = {**have, **reference(i, missing, x, y, dtype=dtype, other=kind == "ref32b", **kw)}
            refs[(i, kind)] = have
        return have

    out = []
    for part in chunks:
        part = [int(i) for i in part]
        if packed is None:
            vals, _ = _packed_chunk(part, proxies, x, y, dtype=torch.float32, backend=backend, **kw)
            got = {i: {p: vals[p][k] for p in proxies} for k, i in enumerate(part)}
        else:
            got = {i: packed[i] for i in part}
        pairs = []
        for i in part:
            r32 = ref(i, "ref32", proxies)
            slow = []
            for p in proxies:
                v = got[i][p]
                if p in EXACT_PROXIES:
                    ok = v == r32[p]
                    pairs.append(Pair(i, p, v, (r32[p],), None, ok, "exact" if ok else "FAIL",
                                      "" if ok else "counts differ"))
                elif p in FLOAT64_PROXIES:
                    e = relerr(v, r32[p])
                    pairs.append(Pair(i, p, v, (r32[p],), None, e <= 1e-9,
                                      "float64" if e <= 1e-9 else "FAIL",
                                      f"relative error {e:.2g} (float64 in both)"))
                elif lazy and fast_pass(v, r32[p]):
                    pairs.append(Pair(i, p, v, (r32[p],), None, True, "fast"))
                else:
                    slow.append(p)
            if slow:
                r32b, r64 = ref(i, "ref32b", slow), ref(i, "ref64", slow)
                for p in slow:
                    r = (r32[p], r32b[p])
                    ok, why = judge(got[i][p], r, r64[p])
                    pairs.append(Pair(i, p, got[i][p], r, r64[p], ok, "float64" if ok else "FAIL",
                                      why))
            if progress:
                progress(i)
        failing = [q for q in pairs if not q.ok and q.ref64 is not None]
        if failing:
            _branch_recheck(part, proxies, x, y, got, failing, backend=backend, **kw)
        out += pairs
    return out


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _branch_recheck(part, proxies, x, y, got, failing, **kw) -> None:
    """Re-judge failing pairs on float32's ReLU branch (see the module docstring), in place."""
    vals, tape32 = _packed_chunk(part, proxies, x, y, dtype=torch.float32, tape=True, **kw)
    if not all(_same(vals[p][k], got[i][p]) for k, i in enumerate(part) for p in proxies):
        for q in failing:
            q.detail += "; re-running the chunk did not reproduce the packed float32 values"
        return
    v64, tape64 = _packed_chunk(part, proxies, x.double(), y, dtype=torch.float64,
                                masks=tape32.masks, **kw)
    for q in failing:
        if tape64.flips == 0:
            q.detail += "; float32 took float64's ReLU branch everywhere"
            continue
        if tape64.worst_tie > TIE:
            q.detail += (f"; {tape64.flips} ReLU mask entries differ from float64's, one at "
                         f"{tape64.worst_tie:.2g} of its tensor's largest |value| (not a near tie)")
            continue
        on_branch = v64[q.proxy][part.index(q.cell)]
        ok, why = judge(q.packed, q.ref32, q.ref64, truth=on_branch)
        q.detail += (f"; on float32's ReLU branch ({tape64.flips} near-tie mask entries in the "
                     f"pass, largest {tape64.worst_tie:.1g}): float64 {on_branch:.10g}, {why}")
        if ok:
            q.ok, q.how = True, "branch"


def summary(pairs) -> dict:
    """{proxy: {how: count}} for reports."""
    table: dict = {}
    for q in pairs:
        table.setdefault(q.proxy, {}).setdefault(q.how, 0)
        table[q.proxy][q.how] += 1
    return table


def failures(pairs) -> list:
    return [q for q in pairs if not q.ok]


def describe(q: Pair) -> str:
    from zcfast.spaces import nb201

    refs = ", ".join(f"{r:.10g}" for r in q.ref32)
    r64 = "" if q.ref64 is None else f", float64 reference {q.ref64:.12g}"
    return (f"cell {q.cell} ({nb201.arch_at(q.cell)}), {q.proxy}: packed float32 {q.packed:.10g}, "
            f"per-model float32 {refs}{r64}: {q.how}; {q.detail}")
