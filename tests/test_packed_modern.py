"""Packed NB201 versions of the modern proxies (zcfast/batched/modern.py) against the per-model
reference (zcfast.proxies.compute_measures) on ragged packs of special and random cells: float64
to 1e-9, float32 within the reference's own float32 resolution, batch invariance, and injected
defects that the float64 comparison must catch (docs/proxies_modern.md, "Packed versions")."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from engine_checks import SPECIAL

from zcfast.batched import base, iter_packed, modern
from zcfast.data import image_source
from zcfast.proxies import compute_measures
from zcfast.spaces import nb201
from zcfast.spaces.nb201_model import build_model

AZ = ["az_expressivity", "az_progressivity", "az_trainability"]
NAMES = ["zico", "epe_nas", "zen", "meco", "swap", "swap_reg", "az_complexity"] + AZ
NCLS = 120  # small inputs (_batches); epe_nas's > 100 outputs form (the <= 100 form: test_epe_small_head)
SEED = 5
# a conv fed only by a zero node, isolated nodes, the benchmark's best cell, two random cells
CELLS = [nb201.index_of(SPECIAL[k]) for k in (1, 2, 4)] + [int(i) for i in nb201.sample(2, seed=23)]


def _batches(ncls=NCLS, b=16):
    """16 images (swap's sample count: with fewer, its 2**b possible patterns saturate), cropped
    to 8x8 to keep the reference passes short; labels in pairs (epe_nas scores only classes with
    more than one sample)."""
    ds = {10: "cifar10", 120: "ImageNet16-120"}[ncls]
    src = image_source(ds)
    x, y = src.minibatch(b, 3)
    x2, y2 = src.minibatch(b, 99)
    x, x2 = x[..., :8, :8].contiguous(), x2[..., :8, :8].contiguous()
    y = y[torch.arange(b) // 2 * 2]
    return x, y, x2, y2


def _packed(cells, dtype, names=NAMES, ncls=NCLS, chunk=None) -> dict:
    x, y, x2, y2 = _batches(ncls)
    out = {}
    for part, res in iter_packed(cells, names, x, y, ncls=ncls, seed=SEED, dtype=dtype,
                                 chunk=chunk or len(cells), extra_batches=[(x2, y2)]):
        for k, i in enumerate(part):
            out[i] = {p: float(res[p][k]) for p in names}
    return out


def _reference(cells, dtype, names=NAMES, ncls=NCLS) -> dict:
    x, y, x2, y2 = _batches(ncls)
    out = {}
    for i in cells:
        net = build_model(i, ncls, seed=SEED, dtype=dtype)
        out[i] = compute_measures(net, x.to(dtype), y, names, seed=SEED,
                                  extra_batches=[(x2.to(dtype), y2)])
    return out


def _mismatches(got, ref, rtol=1e-9) -> list:
    bad = []
    for i, vals in ref.items():
        for p, r in vals.items():
            g = got[i][p]
            if r == g or (math.isnan(r) and math.isnan(g)):
                continue
            if not (abs(g - r) <= rtol * abs(r) or abs(g - r) < 1e-12):
                bad.append((nb201.arch_at(i), p, r, g))
    return bad


@pytest.fixture(scope="module")
def ref64():
    torch.set_num_threads(1)
    return _reference(CELLS, torch.float64)


def test_float64_equals_reference(ref64):
    got = _packed(CELLS, torch.float64)
    assert not _mismatches(got, ref64)
    # swap's batch invariance here (its 32 draws make a separate pack costly): K = 1 vs 5
    target = CELLS[-1]
    alone = _packed([target], torch.float64, names=["swap", "swap_reg"])
    assert not _mismatches(alone, {target: {p: got[target][p] for p in ("swap", "swap_reg")}})
    # the pack is ragged and covers the degenerate cases: -inf zen (no path from the input)
    assert any(v["zen"] == -math.inf for v in ref64.values())
    assert all(math.isfinite(v["swap"]) and v["swap"] >= 1 for v in ref64.values())
    assert sum(v["epe_nas"] != 0 for v in ref64.values()) >= 3
    # AZ-NAS's degenerate values: NaN entropy (a zero feature), -inf (an identity block), and
    # the zero vjp of a block whose output ignores its input
    assert any(math.isnan(v["az_expressivity"]) for v in ref64.values())
    assert any(v["az_trainability"] == -math.inf for v in ref64.values())
    assert any(v["az_trainability"] < -1e5 for v in ref64.values())
    swaps = [v["swap"] for v in ref64.values()]
    assert len(set(swaps)) >= 4 and max(swaps) < 2**16  # distinct, not saturated


def test_float32_within_reference_resolution(ref64):
    """|packed32 - ref64| <= 32 max(|ref32 - ref64|, |ref32' - ref64|) + 16 ulp |ref64|
    (docs/engine.md's criterion: the per-model float32 results with both of PyTorch's
    convolution implementations measure float32's resolution). zico needs it: where a weight's
    two gradients agree to a few ulps its ratio is rounding noise, and the reference's own
    float32 value moves by 1e-4 to 1e-2 relative; so does epe_nas, whose 1/(|c| + 1e-5) terms
    magnify the rounding of near-zero correlations (cell 6111: 4e-7 relative with oneDNN's
    convolutions, 1.5e-2 with the native ones, 1.8e-4 packed, on an AVX2 CPU; one reference
    alone, lucky here, failed the packed value)."""
    cells = CELLS[1:3] + CELLS[-1:]
    names = ["zico", "epe_nas", "zen", "meco"] + AZ  # swap: its own test below
    _assert_float32_close(cells, names, ref64)


def _assert_float32_close(cells, names, ref64):
    """Packed float32 against the float64 reference, by the criterion above."""
    from zcfast.batched.verify import other_convolutions

    got = _packed(cells, torch.float32, names=names)
    ref32 = _reference(cells, torch.float32, names=names)
    with other_convolutions("cpu"):  # a second, independently rounded float32 reference
        alt32 = _reference(cells, torch.float32, names=names)
    u = 2.0**-24
    for i in cells:
        for p in names:
            r64, r32, a32, g = ref64[i][p], ref32[i][p], alt32[i][p], got[i][p]
            if r64 == g or (math.isinf(r64) and r64 == g):
                continue
            bound = 32 * max(abs(r32 - r64), abs(a32 - r64)) + 16 * u * abs(r64) + 1e-12
            assert abs(g - r64) <= bound, (nb201.arch_at(i), p, r64, r32, a32, g)


def test_swap_float32_within_reference_resolution(ref64):
    """swap and swap_reg in float32 (the studies' precision), packed against the per-model
    reference on two cells, by the criterion above: swap counts distinct activation patterns, so
    where float32 flips no sign the packed count must equal the reference's exactly."""
    _assert_float32_close(CELLS[1:3], ["swap", "swap_reg"], ref64)


def test_batch_invariance():
    """A candidate's scores do not depend on its pack (K = 1 and 5, float64)."""
    target = CELLS[-1]
    # swap: its per-draw forward is zen's; az_complexity: the flops of the plan
    names = ["zico", "epe_nas", "zen", "meco", "az_complexity"] + AZ
    alone = _packed([target], torch.float64, names=names)
    packed = _packed(CELLS, torch.float64, names=names)
    assert not _mismatches({target: packed[target]}, alone)


def test_pack_whose_every_cell_output_is_zero():
    """A pack in which no candidate's cell output depends on anything (every edge into node 3
    is 'none': the packed stage outputs are fresh zero tensors, outside the autograd graph)
    equals the reference, where they are x * 0 inside it. AZ-NAS's trainability needs the next
    stage's vjp at them (an error before the fix)."""
    cells = [i for i in range(2040, 2060) if nb201.arch_at(i).endswith("|none~0|none~1|none~2|")]
    assert len(cells) >= 2
    got = _packed(cells, torch.float64)
    assert not _mismatches(got, _reference(cells, torch.float64))


def test_epe_small_head():
    """epe_nas's <= 100 outputs form (CIFAR-10 networks) and zico with 10 classes."""
    cells = CELLS[2:4]
    got = _packed(cells, torch.float64, names=["epe_nas", "zico"], ncls=10)
    ref = _reference(cells, torch.float64, names=["epe_nas", "zico"], ncls=10)
    assert not _mismatches(got, ref)


def test_shares_the_jacobian_with_jacob_cov():
    got = _packed(CELLS[2:4], torch.float64, names=["jacob_cov", "epe_nas"])
    ref = _reference(CELLS[2:4], torch.float64, names=["jacob_cov", "epe_nas"])
    assert not _mismatches(got, ref)


def test_zico_needs_a_second_batch():
    x, y, _, _ = _batches()
    with pytest.raises(ValueError, match="second minibatch"):
        list(iter_packed(CELLS[:1], ["zico"], x, y, ncls=NCLS, seed=SEED))


# ---- injected defects: the float64 comparison must fail on each ---------------------------------
def _perturb_second_gradient(monkeypatch):
    orig = base.PackedModel.weight_grad_flat
    calls = []

    def bad(self, x, y, flat=None):
        g = orig(self, x, y, flat)
        calls.append(1)
        if len(calls) % 2 == 0:  # the extra batch's gradient: the last head 1e-4 off
            t = self.table
            a, b = t.offsets[t.n_weight_segments - 1], t.offsets[t.n_weight_segments]
            g = g.clone()
            g[a:b] *= 1 + 1e-4
        return g

    monkeypatch.setattr(base.PackedModel, "weight_grad_flat", bad)


def _noisy_jacobian_row(monkeypatch):
    orig = base.PackedModel._input_jacobian

    def bad(self, x, relus):
        j = orig(self, x, relus).clone()
        j[-1, 0] += 1e-3 * j[-1, 0].abs().max() * torch.linspace(-1, 1, j.shape[-1], dtype=j.dtype)
        return j

    monkeypatch.setattr(base.PackedModel, "_input_jacobian", bad)


def _wrong_draw(monkeypatch):
    orig = base.PackedModel.reinit_flat
    monkeypatch.setattr(base.PackedModel, "reinit_flat",
                        lambda self, scheme, draw=0: orig(self, scheme, draw + 1))


def _skip_stem_bn(monkeypatch):
    """zen's BatchNorm term without the stem's BatchNorm (one of 17+ terms)."""
    orig = modern.zen

    def bad(model, x, y, extra):
        fwd = model.forward

        def forward(*a, taps=None, **k):
            if taps and "bn" in taps:
                inner, seen = taps["bn"], []

                def skip_first(h, cand, C):
                    seen.append(1)
                    inner(h, cand, C) if len(seen) > 1 else None

                taps = {**taps, "bn": skip_first}
            return fwd(*a, taps=taps, **k)

        model.forward = forward
        try:
            return orig(model, x, y, extra)
        finally:
            del model.forward

    monkeypatch.setitem(modern.PACKED, "zen", modern.PackedGroup(("zen",), bad))


def _wrong_probe(monkeypatch):
    """AZ-NAS probes drawn with the neighbouring candidate's cell code (the packed group draws
    them on the device, modern._probes, from the plan's codes)."""
    orig = modern._probes

    def bad(model, shape, slot):
        real = model.plan_codes
        model.plan_codes = lambda register=False: real(register) if register else real() + 1
        try:
            return orig(model, shape, slot)
        finally:
            del model.plan_codes

    monkeypatch.setattr(modern, "_probes", bad)


def _scaled_channel(monkeypatch):
    """One channel of every stage feature 1e-3 larger before the entropy."""
    orig = modern._entropies

    def bad(f, K):
        f = f.clone()
        f[:, 0] *= 1 + 1e-3
        return orig(f, K)

    monkeypatch.setattr(modern, "_entropies", bad)


def _second_eigenvalue(monkeypatch):
    """MeCo with the second smallest correlation eigenvalue of every output."""
    orig = torch.linalg.eigvalsh

    def bad(corr):
        return orig(corr).roll(-1, -1)

    monkeypatch.setattr(modern.torch.linalg, "eigvalsh", bad)


def _no_edge_outputs(monkeypatch):
    """MeCo without the skip and pool edge outputs."""
    orig = modern.meco

    def bad(model, x, y, extra):
        fwd = model.forward
        model.forward = lambda *a, taps=None, **k: fwd(
            *a, taps={n: t for n, t in (taps or {}).items() if n != "edge"}, **k)
        try:
            return orig(model, x, y, extra)
        finally:
            del model.forward

    monkeypatch.setitem(modern.PACKED, "meco", modern.PackedGroup(("meco",), bad))


@pytest.mark.parametrize("defect, hit", [
    (_second_eigenvalue, {"meco"}),
    (_no_edge_outputs, {"meco"}),
    (_wrong_probe, {"az_trainability"}),
    (_scaled_channel, {"az_expressivity"}),
    (_perturb_second_gradient, {"zico"}),
    (_noisy_jacobian_row, {"epe_nas"}),
    (_wrong_draw, {"zen", "swap", "swap_reg"}),
    (_skip_stem_bn, {"zen"}),
])
def test_injected_defect_is_caught(ref64, monkeypatch, defect, hit):
    defect(monkeypatch)
    cells = [CELLS[2], CELLS[-1]]  # the best cell and a random one (last: the row/head defects)
    names = sorted(hit)
    got = _packed(cells, torch.float64, names=names)
    bad = {p for _, p, _, _ in _mismatches(got, {i: {p: ref64[i][p] for p in names} for i in cells})}
    assert bad == hit, (hit, bad)
    assert all(np.isfinite(got[i][p]) for i in cells for p in names)


def test_scoring_path_runs_them_packed():
    """zcfast score / zcfast.score (the executors' SpaceRunner): the packed versions run packed,
    with the run's seed and extra minibatch, and give the per-model values on those batches."""
    from zcfast.executors.task import space_runner

    cells = CELLS[2:4]
    names = ["zico", "epe_nas", "zen"]
    s = {"dataset": "ImageNet16-120", "proxies": names, "batch_size": 8, "seed": 1,
         "dtype": "float64", "engine": "packed"}
    run = space_runner(s)
    assert run.packed == names and not run.looped and len(run.extra) == 1
    got = {nb201.index_of_code(c): {p: float(v[k]) for p, v in res.items()}
           for part, res in run.iter([nb201.code_of_index(i) for i in cells])
           for k, c in enumerate(part)}
    d = torch.float64
    ref = {i: compute_measures(build_model(i, NCLS, seed=1, dtype=d), run.x.to(d), run.y, names,
                               seed=1, extra_batches=[(run.extra[0][0].to(d), run.extra[0][1])])
           for i in cells}
    assert not _mismatches(got, ref)


# ---- VKDNW: one backward pass per class, so 10-class (CIFAR-10) networks keep it short -------
VK = ["vkdnw", "vkdnw_dim", "vkdnw_single"]


def _vk(cells, dtype, flavour, packed: bool) -> dict:
    x, y, _, _ = _batches(10)
    if packed:
        return _packed_flavour(cells, dtype, flavour, x, y)
    return {i: compute_measures(build_model(i, 10, flavour=flavour, seed=SEED, dtype=dtype),
                                x.to(dtype), y, VK, seed=SEED) for i in cells}


def _packed_flavour(cells, dtype, flavour, x, y) -> dict:
    from zcfast.batched.engine import PackedNB201

    eng = PackedNB201([nb201.code_of_index(i) for i in cells], 10, flavour=flavour, seed=SEED,
                      input_size=x.shape[-1], dtype=dtype)
    res = eng.compute(x, y, VK)
    return {i: {p: float(res[p][k]) for p in VK} for k, i in enumerate(cells)}


@pytest.fixture(scope="module")
def vk_ref64():
    torch.set_num_threads(1)
    return {fl: _vk(CELLS, torch.float64, fl, False) for fl in ("paper", "official")}


@pytest.mark.parametrize("flavour", ["paper", "official"])
def test_vkdnw_pack_whose_every_cell_output_is_zero(flavour):
    """As test_pack_whose_every_cell_output_is_zero for VKDNW: the last BatchNorm's output is
    computed from no parameter there, and the logits' gradient must still reach it."""
    cells = [i for i in range(2040, 2060) if nb201.arch_at(i).endswith("|none~0|none~1|none~2|")]
    ref = _vk(cells, torch.float64, flavour, False)
    assert not _mismatches(_vk(cells, torch.float64, flavour, True), ref)


@pytest.mark.parametrize("flavour", ["paper", "official"])
def test_vkdnw_float64_equals_reference(vk_ref64, flavour):
    """Both flavours (paper: conv biases; official: affine cell BatchNorms) select different
    parameter tensors; the best cell has more than 128 of them (the selection's cut)."""
    ref = vk_ref64[flavour]
    assert not _mismatches(_vk(CELLS, torch.float64, flavour, True), ref)
    assert max(v["vkdnw_dim"] for v in ref.values()) > 128
    assert len({round(v["vkdnw"], 6) for v in ref.values()}) >= 4


def test_vkdnw_float32_within_reference_resolution(vk_ref64):
    cells = CELLS[2:]
    got = _vk(cells, torch.float32, "paper", True)
    ref32 = _vk(cells, torch.float32, "paper", False)
    u = 2.0**-24
    for i in cells:
        for p in VK:
            r64, r32, g = vk_ref64["paper"][i][p], ref32[i][p], got[i][p]
            assert abs(g - r64) <= 32 * abs(r32 - r64) + 16 * u * abs(r64) + 1e-12, (i, p, r64, r32, g)


def _conv_channel_1(monkeypatch):
    orig = modern._conv_elem0

    def bad(x_in, g_out, lay):
        return orig(x_in.roll(-1, 1), g_out, lay)  # element [0, 1, 0, 0]'s input channel

    monkeypatch.setattr(modern, "_conv_elem0", bad)


def _train_bn(monkeypatch):
    from zcfast.batched import engine

    monkeypatch.setattr(engine, "_bn_eval_fresh", engine._bn)


def _cut_shifted(monkeypatch):
    orig = modern._vkdnw_items
    monkeypatch.setattr(modern, "_vkdnw_items", lambda model: [it[1:] + it[:1] for it in orig(model)])


@pytest.mark.parametrize("defect", [_conv_channel_1, _train_bn, _cut_shifted])
def test_vkdnw_injected_defect_is_caught(vk_ref64, monkeypatch, defect):
    """Each defect changes vkdnw of at least one cell beyond 1e-9 (the shifted cut only matters
    for cells with more than 128 tensors: the best cell here)."""
    defect(monkeypatch)
    cells = [CELLS[2], CELLS[-1]]
    got = _vk(cells, torch.float64, "paper", True)
    bad = {p for _, p, _, _ in _mismatches(got, {i: vk_ref64["paper"][i] for i in cells})}
    assert "vkdnw" in bad


def test_vkdnw_batch_invariance(vk_ref64):
    """The candidate's VKDNW alone (K = 1) equals its value in the pack of five (float64)."""
    target = CELLS[-1]
    alone = _vk([target], torch.float64, "paper", True)
    assert not _mismatches(alone, {target: _vk(CELLS, torch.float64, "paper", True)[target]})
