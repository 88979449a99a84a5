"""CUDA kernels == their torch reference == their Triton twin, on a GPU (docs/engine.md,
invariant 3: kernel = reference).

Random ragged inputs: empty segments, lengths that are not multiples of any block or vector,
segments long enough for the chunked (split) path, misaligned views (scalar fallback of the
16-byte loads), non-contiguous inputs (made contiguous by the adapter), float32 and float64,
batches that are not multiples of 16. Every output is poisoned before the launch and must come
back fully written, and two runs must agree bit for bit.

The check functions take the device and backend, so one CPU test (Triton interpreter, tiny
sizes) keeps their logic honest on machines without a GPU; the rest is marked ``gpu``.

Every path of the kernels (second part of this file): thousands of segments and channels
(HW = 1 included) and hundreds of NASWOT candidates, so the persistent loops run several
iterations per block (or candidates per cluster) even on a 132-multiprocessor H200, and capped
grids force the same on any card; every grid gives bit-identical results; the NASWOT launch
reports the cluster size it really used and the tests assert it (no silent fallback); the CUDA
initialiser equals the CPU one bit for bit; empty inputs give zeros without a launch. Each of
these launches is also replayed on the host (tests/cuda_host, no GPU needed): the same cases,
the same grid, loop and cluster arithmetic, every element covered exactly once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from cuda_host import replay as host

from zcfast import _C
from zcfast.ops import _backend
from zcfast.ops.fisher import fisher_channels, fisher_channels_reference
from zcfast.ops.init import fill_uniform
from zcfast.ops.naswot import naswot_kernel, naswot_kernel_reference
from zcfast.ops.saliency import segment_saliency, segment_saliency_reference

HAS_CUDA_KERNELS = bool(_C.WITH_CUDA) and torch.cuda.is_available()
cuda_kernels = pytest.mark.skipif(not HAS_CUDA_KERNELS,
                                  reason="needs a GPU and zcfast._C built with nvcc")
GPU_BACKENDS = ["cuda", "triton"]


def _on(t: torch.Tensor, dev: str, offset: int = 0) -> torch.Tensor:
    """t copied to ``dev`` as a contiguous view that starts ``offset`` elements into its buffer
    (offset 1 breaks 16-byte alignment: the kernels must fall back to scalar loads)."""
    if offset == 0:
        return t.to(dev)
    buf = torch.empty(t.numel() + offset, dtype=t.dtype, device=dev)
    v = buf[offset:].view(t.shape)
    v.copy_(t)
    return v


def _offsets(lens) -> torch.Tensor:
    off = torch.zeros(len(lens) + 1, dtype=torch.int64)
    off[1:] = torch.cumsum(torch.as_tensor(lens, dtype=torch.int64), 0)
    return off


SAL_LENS = {
    "ragged": lambda gen: [int(v) for v in torch.randint(0, 3000, (41,), generator=gen)] + [0, 1, 3],
    "empty_first_last": lambda gen: [0, 5, 1024, 1023, 1025, 0],
    "all_empty": lambda gen: [0, 0, 0],
    "long": lambda gen: [70001, 0, 16384, 3, 200000, 65536, 65537],  # split path
}


def check_saliency(dev, backend, dtype, with_hg, case, *, w_off=0, g_off=0, force_split=False,
                   seed=0, tol=None):
    gen = torch.Generator().manual_seed(seed)
    lens = SAL_LENS[case](gen)
    off = _offsets(lens)
    n = int(off[-1]) + 7  # a few trailing elements outside every segment
    w = torch.randn(n, generator=gen, dtype=dtype)
    g = torch.randn(n, generator=gen, dtype=dtype) * 1e-3
    hg = torch.randn(n, generator=gen, dtype=dtype) if with_hg else None
    ref = segment_saliency_reference(w, g, hg, off)  # float64 math on the CPU
    wd, gd = _on(w, dev, w_off), _on(g, dev, g_off)
    hd = _on(hg, dev, g_off) if with_hg else None
    offd = off.to(dev)
    if backend == "cuda":
        from zcfast.ops.saliency import _prepare, _segment_saliency_cuda

        wd, gd, hd, offd, max_len = _prepare(wd, gd, hd, offd)
        runs = []
        for _ in range(2):
            out = torch.full((len(lens), 5), float("nan"), dtype=torch.float64, device=dev)
            runs.append(_segment_saliency_cuda(wd, gd, hd, offd, out, -1 if force_split else max_len))
        assert torch.equal(runs[0], runs[1]), "two runs differ: the reduction is not deterministic"
        out = runs[0]
        assert not torch.isnan(out).any(), "rows left unwritten"
    else:
        out = segment_saliency(wd, gd, hd, offd, backend=backend)
    out = out.cpu()
    if tol is None:
        # cuda accumulates in float64; triton per lane in the input dtype
        tol = 1e-12 if backend == "cuda" or dtype == torch.float64 else 1e-5
    scale = ref.abs().amax(0, keepdim=True).clamp_min(1e-30)
    err = ((out - ref).abs() / scale).max().item() if len(lens) else 0.0
    assert err <= tol, (case, dtype, backend, err)
    empty = (off[1:] == off[:-1]).nonzero().flatten()
    assert (out[empty] == 0).all()
    if not with_hg:
        assert (out[:, 3] == 0).all()
    return out


FISHER_SHAPES = [
    ((7, 6, 5, 3), 2),      # HW = 15: short-row kernel
    ((3, 12, 1, 1), 12),    # HW = 1
    ((5, 4), 1),            # the linear head: (B, C)
    ((0, 4, 2, 2), 4),      # empty batch
    ((17, 10, 4, 4), 5),    # HW = 16: 4 lanes per row
    ((9, 5, 7, 7), 5),      # HW = 49: not whole vectors -> scalar rows
    ((64, 33, 8, 8), 3),    # HW = 64: 16 lanes per row
    ((6, 3, 32, 32), 1),    # HW = 1024: a full warp per row
]


def check_fisher(dev, backend, dtype, shape, group, *, a_off=0, transpose=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(shape, generator=gen, dtype=dtype)
    g = torch.randn(shape, generator=gen, dtype=dtype)
    ref = fisher_channels_reference(a, g, group, 27.0)
    ad, gd = _on(a, dev, a_off), _on(g, dev, a_off)
    if transpose and a.dim() == 4:  # non-contiguous views of the same values
        ad = ad.transpose(2, 3).contiguous().transpose(2, 3)
        gd = gd.transpose(2, 3).contiguous().transpose(2, 3)
        assert not ad.is_contiguous() or ad.numel() == 0 or 1 in shape[2:]
    out = fisher_channels(ad, gd, group, 27.0, backend=backend).cpu()
    tol = 1e-12 if backend == "cuda" or dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out, ref, rtol=tol, atol=1e-300)
    if backend == "cuda" and shape[0] > 0:
        from zcfast.ops.fisher import _fisher_channels_cuda, _prepare

        a3, g3 = _prepare(ad, gd, group)
        runs = [_fisher_channels_cuda(a3, g3, torch.full((a3.shape[1],), float("nan"),
                                                         dtype=torch.float64, device=dev))
                for _ in range(2)]
        assert torch.equal(runs[0], runs[1])
        assert not torch.isnan(runs[0]).any()
    return out


NASWOT_SHAPES = [
    (5, 7, 3, 9),      # L = 27: scalar loads
    (17, 4, 2, 50),    # L = 100, 16-byte rows
    (33, 5, 1, 1),     # L = 1
    (64, 6, 16, 64),   # NB201-like: B = 64, L = 1024
    (128, 3, 4, 16),   # the largest batch
    (100, 4, 2, 8),    # B padded to 112
    (16, 2, 1, 1000),  # long groups
]


def check_naswot(dev, backend, dtype, b, groups, gsize, hw, *, x_off=0, splits=(0,), seed=0,
                 in_place=False):
    """``in_place``: x is a channel slice of a wider tensor (sample stride > its own features),
    as the packed engine hands it over; the adapter must read it without a copy."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, groups * gsize, hw, generator=gen, dtype=dtype)
    x[:, :, 0] = 0.0  # exact zeros code as "off" (-1)
    cand = torch.randint(0, 4, (groups,), generator=gen)
    cand[0] = 3
    k = 5  # candidate 4 owns nothing: its slice must stay as it was
    start = torch.randn(k, b, b, generator=gen).round()
    ref = naswot_kernel_reference(x, cand, gsize, start.clone())
    if in_place:  # the same values inside a wider buffer: 2 channels before, 3 after
        wide = torch.randn(b, groups * gsize + 5, hw, generator=gen, dtype=dtype)
        wide[:, 2 : 2 + groups * gsize] = x
        xd = _on(wide, dev, x_off)[:, 2 : 2 + groups * gsize]
        from zcfast.ops.naswot import _prepare

        xs, _ = _prepare(xd, cand.to(dev), gsize, start.to(dev))
        assert xs.data_ptr() == xd.data_ptr() and xs.stride(0) == (groups * gsize + 5) * hw, \
            "the channel slice was copied instead of read in place"
    else:
        xd = _on(x, dev, x_off)
    if backend == "cuda":
        from zcfast.ops.naswot import _naswot_kernel_cuda, _prepare

        xs, cd = _prepare(xd, cand.to(dev), gsize, start.to(dev))
        order = torch.argsort(cd, stable=True)
        ptr = torch.zeros(k + 1, dtype=torch.int64, device=dev)
        ptr[1:] = torch.cumsum(torch.bincount(cd, minlength=k), 0)
        outs = []
        for s in splits:
            for _ in range(2):
                info = {}
                outs.append(_naswot_kernel_cuda(xs, order, ptr, gsize * hw, start.clone().to(dev),
                                                split=s, info=info).cpu())
                if s:  # an explicit cluster size must be the one launched (no silent fallback)
                    assert info["cluster"] == s, (s, info)
        for o in outs:
            assert torch.equal(o, ref), "cuda NASWOT kernel is not exact"
        out = outs[0]
    else:
        out = naswot_kernel(xd, cand.to(dev), gsize, start.clone().to(dev), backend=backend).cpu()
    assert torch.equal(out, ref)  # integer-valued: exact
    assert torch.equal(out[4], start[4])
    return out


# ---- CPU: the check logic itself (Triton interpreter, tiny sizes) ---------------------------


@pytest.mark.skipif(not (_backend.triton_available() and _backend.triton_interpreted()),
                    reason="needs triton with TRITON_INTERPRET=1 (CPU tensors)")
def test_check_functions_on_cpu_with_triton():
    check_saliency("cpu", "triton", torch.float64, True, "empty_first_last", w_off=1, g_off=1)
    check_fisher("cpu", "triton", torch.float32, (5, 4, 3, 3), 2, transpose=True)
    check_naswot("cpu", "triton", torch.float32, 5, 3, 2, 4)
    check_naswot("cpu", "triton", torch.float32, 6, 3, 2, 4, in_place=True)


# ---- GPU ---------------------------------------------------------------------------------------


@pytest.mark.gpu
@cuda_kernels
def test_cuda_is_the_automatic_backend_on_gpu():
    for op in ("segment_saliency", "fisher_channels", "naswot_kernel", "fill_uniform"):
        assert _backend.choose(op, "cuda") == "cuda"


@pytest.mark.gpu
@cuda_kernels
@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_hg", [True, False])
@pytest.mark.parametrize("case", list(SAL_LENS))
def test_segment_saliency_gpu(backend, dtype, with_hg, case):
    check_saliency("cuda", backend, dtype, with_hg, case)


@pytest.mark.gpu
@cuda_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("w_off,g_off", [(1, 1), (1, 2), (0, 3), (2, 2)])
@pytest.mark.parametrize("force_split", [False, True])
def test_segment_saliency_cuda_alignment_and_split(dtype, w_off, g_off, force_split):
    """Shared misalignment: scalar head + 16-byte body; different phases: scalar loads; the
    chunked path forced on short segments: same sums (to float64 rounding)."""
    a = check_saliency("cuda", "cuda", dtype, True, "ragged", w_off=w_off, g_off=g_off,
                       force_split=force_split, seed=1)
    b = check_saliency("cuda", "cuda", dtype, True, "ragged", seed=1)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-300)


@pytest.mark.gpu
@cuda_kernels
@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,group", FISHER_SHAPES)
def test_fisher_channels_gpu(backend, dtype, shape, group):
    check_fisher("cuda", backend, dtype, shape, group)


@pytest.mark.gpu
@cuda_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,group", [s for s in FISHER_SHAPES if s[0][0] > 0])
def test_fisher_channels_cuda_misaligned_and_strided(dtype, shape, group):
    check_fisher("cuda", "cuda", dtype, shape, group, a_off=1, seed=2)
    check_fisher("cuda", "cuda", dtype, shape, group, transpose=True, seed=3)


@pytest.mark.gpu
@cuda_kernels
@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("b,groups,gsize,hw", NASWOT_SHAPES)
def test_naswot_kernel_gpu(backend, dtype, b, groups, gsize, hw):
    check_naswot("cuda", backend, dtype, b, groups, gsize, hw)


@pytest.mark.gpu
@cuda_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("b,groups,gsize,hw", [NASWOT_SHAPES[1], NASWOT_SHAPES[3], NASWOT_SHAPES[4]])
def test_naswot_kernel_cuda_every_cluster_size_and_misaligned(dtype, b, groups, gsize, hw):
    """1..8 blocks per candidate (a thread-block cluster) give the same exact result."""
    check_naswot("cuda", "cuda", dtype, b, groups, gsize, hw, splits=(1, 2, 3, 4, 8), seed=4)
    check_naswot("cuda", "cuda", dtype, b, groups, gsize, hw, x_off=1, seed=5)


@pytest.mark.gpu
@cuda_kernels
def test_naswot_kernel_cuda_half_input_and_validation():
    x = torch.randn(8, 6, 5, 5, device="cuda").half()
    cand = torch.tensor([0, 1, 0], device="cuda")
    ref = naswot_kernel_reference(x.float(), cand, 2, torch.zeros(2, 8, 8, device="cuda"))
    out = naswot_kernel(x, cand, 2, torch.zeros(2, 8, 8, device="cuda"), backend="cuda")
    assert torch.equal(out, ref)
    with pytest.raises(ValueError, match="group_cand values"):
        naswot_kernel(x, torch.tensor([0, 1, 2], device="cuda"), 2, torch.zeros(2, 8, 8, device="cuda"),
                      backend="cuda")


@pytest.mark.gpu
@cuda_kernels
def test_kernels_follow_the_current_stream():
    """Launches go to torch's current stream: work queued there before is seen."""
    s = torch.cuda.Stream()
    gen = torch.Generator().manual_seed(7)
    w = torch.randn(1 << 20, generator=gen).cuda()
    off = torch.tensor([0, 1 << 19, 1 << 20], device="cuda")
    ref = segment_saliency_reference(w.cpu() * 2, w.cpu(), None, off.cpu())
    with torch.cuda.stream(s):
        w2 = w * 2  # queued on s
        out = segment_saliency(w2, w, None, off, backend="cuda")
    torch.cuda.synchronize()
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-12, atol=0)


# ---- every path of the kernels: many items per block, every grid, cluster sizes ---------------
# An H200 has 132 multiprocessors; the fused-reduction kernels run 256-thread blocks, up to 8
# resident per multiprocessor: a persistent grid of at most 1,056 blocks. The cases below give
# every block several items on such a card, and the capped grids (max_grid / max_clusters) give
# every block several items on any card. tests/cuda_host replays each launch on the host.

H200_SMS = 132
RESIDENT = H200_SMS * 8
GRIDS = [(0, 0), (1, 0), (0, 1), (0, 7), (1, 5)]  # (grid_mode, max_grid): persistent, one block
# per item, one block for everything, 7 blocks, 5 blocks of the one-per-item mode


def _lens(case: str) -> list[int]:
    gen = torch.Generator().manual_seed(21)
    if case == "many":  # 5,000 short ragged segments, 10% empty: direct mode, ~5 items per block
        lens = torch.randint(0, 300, (5000,), generator=gen)
        lens[torch.randperm(5000, generator=gen)[:500]] = 0
    elif case == "many_long":  # 1,500 short ones and 9 over the direct limit: split mode
        lens = torch.randint(0, 3000, (1500,), generator=gen)
        pos = torch.randperm(1500, generator=gen)[:9]
        lens[pos] = torch.tensor([65537, 70001, 16384 * 5, 200000, 65536 + 16384, 99999,
                                  131072, 65539, 300000])
    else:
        raise KeyError(case)
    return [int(v) for v in lens]


PATH_SAL = ["many", "many_long"]
# (shape, group): HW = 1 with 40,000 channels (1,250 items of 32 channels: the short-row
# kernel's second iteration), and 2,500 / 1,200 channels for the row kernel
PATH_FISHER = [((4, 40000), 8), ((3, 1200, 1, 1), 3), ((5, 2500, 4, 4), 5), ((2, 1500, 8, 8), 3)]
FISHER_CAPS = [0, 1, 3]
# NASWOT: 300 candidates owning 0-5 groups each (several candidates per cluster), and 6
# candidates with long groups (the automatic choice is then a cluster of 8)
PATH_NASWOT = {"hundreds": dict(b=64, k=300, groups=900, gsize=4, hw=50),
               "few_long": dict(b=33, k=6, groups=12, gsize=16, hw=250)}
NASWOT_SPLITS = [1, 2, 4, 8]
NASWOT_CAPS = [0, 5]


def _naswot_inputs(name: str, dev, dtype=torch.float32):
    c = PATH_NASWOT[name]
    gen = torch.Generator().manual_seed(22)
    x = torch.randn(c["b"], c["groups"] * c["gsize"], c["hw"], generator=gen, dtype=dtype)
    cand = torch.randint(0, c["k"], (c["groups"],), generator=gen)
    cand[: c["k"] - 1] = torch.arange(c["k"] - 1)  # every candidate but the last owns a group
    return x.to(dev), cand.to(dev), c


def _expected_auto_cluster(k: int, sms: int, groups: int, group_len: int, ft: int) -> int:
    """csrc/cuda/partition.hpp nw_auto_cluster, re-typed (the test must not trust the code)."""
    items = -(-groups * -(-group_len // ft) // k)
    cs = 1
    while cs < 8 and k * cs < 2 * sms and cs < items:
        cs *= 2
    return cs


@pytest.fixture(scope="module")
def path_report():
    """What the launches really did (grids, cluster sizes), written to $ZCFAST_REPORT_DIR/
    kernel_paths.json when that is set (bench/device.sh sets it): the report of the first run."""
    rep: dict = {}
    yield rep
    out = os.environ.get("ZCFAST_REPORT_DIR")
    if out and rep:
        Path(out, "kernel_paths.json").write_text(json.dumps(rep, indent=1, sort_keys=True))


@pytest.mark.gpu
@cuda_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("force_split", [False, True])
@pytest.mark.parametrize("case", PATH_SAL)
def test_segment_saliency_cuda_every_grid_bit_identical(case, force_split, dtype, path_report):
    from zcfast.ops.saliency import _prepare, _segment_saliency_cuda

    lens = _lens(case)
    off = _offsets(lens)
    gen = torch.Generator().manual_seed(23)
    n = int(off[-1])
    w = torch.randn(n, generator=gen, dtype=dtype)
    g = torch.randn(n, generator=gen, dtype=dtype) * 1e-3
    hg = torch.randn(n, generator=gen, dtype=dtype)
    ref = segment_saliency_reference(w, g, hg, off)
    wd, gd, hd, offd, max_len = _prepare(w.cuda(), g.cuda(), hg.cuda(), off.cuda())
    outs = []
    for mode, cap in GRIDS:
        out = torch.full((len(lens), 5), float("nan"), dtype=torch.float64, device="cuda")
        outs.append(_segment_saliency_cuda(wd, gd, hd, offd, out, -1 if force_split else max_len,
                                           mode, cap).cpu())
    for (mode, cap), o in zip(GRIDS, outs):
        assert torch.equal(o, outs[0]), f"grid_mode {mode} max_grid {cap} differs from the persistent grid"
    scale = ref.abs().amax(0, keepdim=True).clamp_min(1e-30)
    assert ((outs[0] - ref).abs() / scale).max() <= 1e-12
    path_report[f"saliency_{case}_{'split' if force_split else 'auto'}"] = {
        "segments": len(lens), "max_len": max_len, "grids": GRIDS}


@pytest.mark.gpu
@cuda_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,group", PATH_FISHER)
def test_fisher_channels_cuda_every_grid_bit_identical(shape, group, dtype):
    from zcfast.ops.fisher import _fisher_channels_cuda, _prepare

    gen = torch.Generator().manual_seed(24)
    a = torch.randn(shape, generator=gen, dtype=dtype)
    g = torch.randn(shape, generator=gen, dtype=dtype)
    ref = fisher_channels_reference(a, g, group, 3.0)
    a3, g3 = _prepare(a.cuda(), g.cuda(), group)
    outs = [_fisher_channels_cuda(a3, g3, torch.full((a3.shape[1],), float("nan"), dtype=torch.float64,
                                                     device="cuda"), cap).cpu() for cap in FISHER_CAPS]
    for cap, o in zip(FISHER_CAPS, outs):
        assert torch.equal(o, outs[0]), f"max_grid {cap} differs from the persistent grid"
    got = fisher_channels(a.cuda(), g.cuda(), group, 3.0, backend="cuda").cpu()
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-300)


@pytest.mark.gpu
@cuda_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(PATH_NASWOT))
def test_naswot_cuda_cluster_sizes_reported_and_exact(name, dtype, path_report):
    """Every requested cluster size (1, 2, 4, 8) is the one launched, with and without a cap on
    the clusters (several candidates per cluster); the automatic size is the documented one;
    every launch gives the reference's exact integers, read in place from a channel slice."""
    from zcfast.ops.naswot import _naswot_kernel_cuda, _prepare

    x, cand, c = _naswot_inputs(name, "cuda", dtype)
    k, gsize, hw = c["k"], c["gsize"], c["hw"]
    start = torch.zeros(k, c["b"], c["b"], device="cuda")
    ref = naswot_kernel_reference(x.cpu(), cand.cpu(), gsize, start.cpu().clone())
    wide = torch.zeros(x.shape[0], x.shape[1] + 8, hw, dtype=dtype, device="cuda")
    wide[:, 4 : 4 + x.shape[1]] = x
    view = wide[:, 4 : 4 + x.shape[1]]  # sample stride (C + 8) * HW: read in place
    xs, cd = _prepare(view, cand, gsize, start)
    assert xs.data_ptr() == view.data_ptr()
    order = torch.argsort(cd, stable=True)
    ptr = torch.zeros(k + 1, dtype=torch.int64, device="cuda")
    ptr[1:] = torch.cumsum(torch.bincount(cd, minlength=k), 0)
    used = {}
    for split in [0] + NASWOT_SPLITS:
        for cap in NASWOT_CAPS:
            info = {}
            out = _naswot_kernel_cuda(xs, order, ptr, gsize * hw, start.clone(), split=split,
                                      max_clusters=cap, info=info).cpu()
            assert torch.equal(out, ref), (split, cap)
            used[f"split{split}_cap{cap}"] = info["cluster"]
            if split:
                assert info["cluster"] == split, f"asked for clusters of {split}, got {info['cluster']}"
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    # 16-byte rows (stride and group length multiples of the vector): 32 x vector features a tile
    ft = 32 * (16 // x.element_size())
    want = _expected_auto_cluster(k, sms, c["groups"], gsize * hw, ft)
    assert used["split0_cap0"] == want, (used, want)
    path_report[f"naswot_{name}_{str(dtype)[6:]}"] = {"sms": sms, "cluster_used": used,
                                                      "auto_expected": want}


@pytest.mark.gpu
@cuda_kernels
@pytest.mark.parametrize("max_grid", [0, 1, 7])
def test_fill_uniform_cuda_equals_cpu_bit_for_bit(max_grid):
    from zcfast.ops.init import _fill_uniform_cuda

    off, arch, slot, bound, seed = _init_case()
    n = int(off[-1]) + 5  # trailing elements no segment owns: never written
    cpu = fill_uniform(torch.full((n,), 7.0), off, arch, slot, bound, seed, backend="cpu")
    out = torch.full((n,), 7.0, device="cuda")
    a32 = arch.to(torch.int64).to(torch.int32).cuda()
    s32 = slot.to(torch.int64).to(torch.int32).cuda()
    _fill_uniform_cuda(out, off.cuda(), a32, s32, bound.cuda(), seed, max_grid)
    assert torch.equal(out.cpu(), cpu)
    assert torch.equal(fill_uniform(torch.full((n,), 7.0, device="cuda"), off.cuda(), arch.cuda(),
                                    slot.cuda(), bound.cuda(), seed, backend="cuda").cpu(), cpu)
    assert (cpu[-5:] == 7.0).all()


def _init_case():
    gen = torch.Generator().manual_seed(25)
    lens = torch.randint(0, 2000, (3000,), generator=gen)
    lens[::17] = 0
    off = _offsets(lens.tolist())
    arch = torch.randint(0, 2**32, (3000,), generator=gen, dtype=torch.int64)
    slot = torch.randint(0, 2**32, (3000,), generator=gen, dtype=torch.int64)
    bound = torch.rand(3000, generator=gen) + 0.01
    return off, arch, slot, bound, 2**40 + 12345


@pytest.mark.gpu
@cuda_kernels
def test_fill_uniform_cuda_rejects_offsets_outside_out():
    off = torch.tensor([0, 10, 30], device="cuda")
    a = torch.tensor([1, 2], device="cuda")
    b = torch.tensor([0.5, 0.5], device="cuda")
    with pytest.raises(ValueError, match="segment 1 \\[10, 30\\)"):
        fill_uniform(torch.zeros(20, device="cuda"), off, a, a, b, 0, backend="cuda")
    with pytest.raises(ValueError, match="segment 0"):
        fill_uniform(torch.zeros(20, device="cuda"), torch.tensor([-1, 5, 6], device="cuda"), a, a,
                     b, 0, backend="cuda")


@pytest.mark.gpu
@cuda_kernels
def test_empty_inputs_give_zeros_on_cuda():
    """n = 0 with segments, fisher with HW = 0 (and B = 0), NASWOT without features: zeros
    (or an untouched accumulator), never a null-pointer error."""
    e = torch.empty(0, device="cuda")
    off = torch.zeros(4, dtype=torch.int64, device="cuda")
    for hg in (None, e):
        out = segment_saliency(e, e, hg, off, backend="cuda")
        assert out.shape == (3, 5) and (out == 0).all()
    a = torch.empty(3, 6, 0, device="cuda")
    assert (fisher_channels(a, a, 2, 1.0, backend="cuda") == 0).all()
    assert fisher_channels(a, a, 2, 1.0, backend="cuda").shape == (3,)
    a0 = torch.empty(0, 6, 5, device="cuda")
    assert (fisher_channels(a0, a0, 3, 1.0, backend="cuda") == 0).all()
    acc = torch.ones(2, 4, 4, device="cuda")
    naswot_kernel(torch.empty(4, 6, 0, device="cuda"), torch.tensor([0, 1, 0], device="cuda"), 2,
                  acc, backend="cuda")
    assert (acc == 1).all()
    # the bindings themselves, with null input pointers
    from zcfast.ops.fisher import _fisher_channels_cuda
    from zcfast.ops.saliency import _segment_saliency_cuda

    out = torch.full((3, 5), float("nan"), dtype=torch.float64, device="cuda")
    _C.cuda.segment_saliency(0, 0, 0, off.data_ptr(), 3, 0, out.data_ptr(), False, -1, 0, 0,
                             torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    assert (out == 0).all()
    oc = torch.full((6,), float("nan"), dtype=torch.float64, device="cuda")
    _C.cuda.fisher_channels(0, 0, 3, 6, 0, oc.data_ptr(), False, torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    assert (oc == 0).all()
    assert (_segment_saliency_cuda(e, e, None, off, out.fill_(float("nan")), 0) == 0).all()
    assert (_fisher_channels_cuda(a, a, oc.fill_(float("nan"))) == 0).all()


@pytest.mark.gpu
@cuda_kernels
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_naswot_batch_over_128_falls_back_to_the_same_value(backend):
    gen = torch.Generator().manual_seed(26)
    x = torch.randn(200, 12, 9, generator=gen)
    cand = torch.tensor([0, 1, 2, 1, 0, 2])
    ref = naswot_kernel_reference(x, cand, 2, torch.zeros(3, 200, 200))
    out = naswot_kernel(x.cuda(), cand.cuda(), 2, torch.zeros(3, 200, 200, device="cuda"), backend=backend)
    assert torch.equal(out.cpu(), ref)


# ---- the same launches, replayed on the host (no GPU) -------------------------------------------


def _replay_cases() -> list[tuple[str, str, dict]]:
    """(name, case line, what must hold) for every launch of the path tests above."""
    cases = []
    for case in PATH_SAL:
        off = _offsets(_lens(case)).tolist()
        for force in (False, True):
            for mode, cap in GRIDS:
                need = {"max_iters": 2} if (mode, cap) != (1, 0) else {}
                cases.append((f"sal-{case}-split{int(force)}-grid{mode}.{cap}",
                              host.sal_case(off, RESIDENT, cap, mode, force), need))
    for shape, _group in PATH_FISHER:
        b, c = shape[0], shape[1]
        hw = 1
        for d in shape[2:]:
            hw *= d
        items = c if hw >= 16 else -(-c // 32)  # one channel / 32 channels per block and step
        for cap in FISHER_CAPS:
            loops = (0 < cap < items) or items > RESIDENT
            for vec in ((4, 2) if hw >= 16 else (1,)):
                cases.append((f"fisher-{b}x{c}x{hw}-cap{cap}-v{vec}",
                              host.fisher_case(RESIDENT, cap, b, c, hw, vec),
                              {"max_iters": 2} if loops else {}))
    for name in PATH_NASWOT:
        x, cand, c = _naswot_inputs(name, "cpu")
        for split in [0] + NASWOT_SPLITS:
            for cap in NASWOT_CAPS:
                for ft in (128, 64):  # float32 / float64 16-byte tiles
                    # resident clusters of cs blocks: assume two blocks per multiprocessor
                    cs = split or 8
                    need = {"cluster": split} if split else {}
                    if cap:
                        need["max_cands"] = 2
                    cases.append((f"naswot-{name}-split{split}-cap{cap}-ft{ft}",
                                  host.naswot_case(H200_SMS, max(1, 2 * H200_SMS // cs), cap, split,
                                                   c["b"], c["gsize"] * c["hw"], ft, c["k"],
                                                   cand.tolist()), need))
    off, *_ = _init_case()
    for cap in (0, 1, 7):
        cases.append((f"init-cap{cap}", host.init_case(H200_SMS, cap, int(off[-1]) + 5, off.tolist()),
                      {"max_iters": 2}))
    return cases


def test_gpu_kernel_launches_under_host_replay():
    """Every launch of the path tests, replayed on the host with an H200's grid: each element,
    row and (candidate, tile) is covered exactly once, blocks run their persistent loops for
    several items (max_iters >= 2), clusters own several candidates when capped, and an explicit
    cluster size is the one used."""
    if not host.compiler():
        pytest.skip("no C++ compiler")
    cases = _replay_cases()
    results = host.replay([line for _, line, _ in cases])
    for (name, _, need), r in zip(cases, results):
        assert r["ok"], (name, r["text"])
        for key, low in need.items():
            if key == "cluster":
                assert r["cluster"] == low, (name, r["text"])
            else:
                assert r.get(key, 0) >= low, (name, r["text"])
    # the uncapped launches on an H200 already loop: 5,000 segments on 1,056 blocks
    many = {r["text"] for (n, _, _), r in zip(cases, results) if n == "sal-many-split0-grid0.0"}
    assert any("max_iters=5" in t for t in many), many


@pytest.mark.parametrize("mutation,case", [
    # the last partial chunk of a long segment dropped (split mode)
    (("return len <= 0 ? 0 : ceil_div(len, kSalChunk);", "return len <= 0 ? 0 : len / kSalChunk;"),
     "sal-many_long-split1-grid0.0"),
    # the automatic cluster grows past the largest cluster the kernel can launch
    (("while (cs < kNwMaxCluster && K * cs", "while (cs < 4 * kNwMaxCluster && K * cs"),
     "naswot-few_long-split0-cap0-ft128"),
    # feature tiles rounded down: the tail of every group never read
    (("return L <= 0 ? 0 : ceil_div(L, ft);", "return L <= 0 ? 0 : L / ft;"),
     "naswot-hundreds-split2-cap5-ft128"),
])
def test_host_replay_catches_injected_defects(mutation, case):
    """The replay can fail: compiled against a copy of partition.hpp with one defect injected,
    the case that exercises it is reported as FAIL (and so is an impossible cluster request)."""
    if not host.compiler():
        pytest.skip("no C++ compiler")
    line = dict((n, ln) for n, ln, _ in _replay_cases())[case]
    assert host.replay([line])[0]["ok"]
    bad = host.replay([line], mutation=mutation)[0]
    assert not bad["ok"], bad["text"]
    wrong = host.replay([host.naswot_case(132, 10, 0, 9, 8, 64, 128, 3, [0, 1, 2])])[0]
    assert not wrong["ok"] and "cluster size 9" in wrong["text"]
