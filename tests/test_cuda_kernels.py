"""CUDA kernels == their torch reference == their Triton twin, on a GPU (docs/engine.md,
invariant 3: kernel = reference).

Random ragged inputs: empty segments, lengths that are not multiples of any block or vector,
segments long enough for the chunked (split) path, misaligned views (scalar fallback of the
16-byte loads), non-contiguous inputs (made contiguous by the adapter), float32 and float64,
batches that are not multiples of 16. Every output is poisoned before the launch and must come
back fully written, and two runs must agree bit for bit.

The check functions take the device and backend, so one CPU test (Triton interpreter, tiny
sizes) keeps their logic honest on machines without a GPU; the rest is marked ``gpu``.
"""

from __future__ import annotations

import pytest
import torch

from zcfast import _C
from zcfast.ops import _backend
from zcfast.ops.fisher import fisher_channels, fisher_channels_reference
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


def check_naswot(dev, backend, dtype, b, groups, gsize, hw, *, x_off=0, splits=(0,), seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, groups * gsize, hw, generator=gen, dtype=dtype)
    x[:, :, 0] = 0.0  # exact zeros code as "off" (-1)
    cand = torch.randint(0, 4, (groups,), generator=gen)
    cand[0] = 3
    k = 5  # candidate 4 owns nothing: its slice must stay as it was
    start = torch.randn(k, b, b, generator=gen).round()
    ref = naswot_kernel_reference(x, cand, gsize, start.clone())
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
                outs.append(_naswot_kernel_cuda(xs, order, ptr, gsize * hw, start.clone().to(dev),
                                                split=s).cpu())
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
    with pytest.raises(ValueError, match="128"):
        naswot_kernel(torch.randn(130, 4, 2, device="cuda"), torch.tensor([0, 0], device="cuda"), 2,
                      torch.zeros(1, 130, 130, device="cuda"), backend="cuda")
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
