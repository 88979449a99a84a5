"""Every fused op: Triton kernel (through the interpreter) == its one torch reference, on
ragged sizes, empty segments, non-contiguous inputs; plus argument validation."""

import numpy as np
import pytest
import torch

from zcfast.ops import _backend
from zcfast.ops.fisher import fisher_channels, fisher_channels_reference
from zcfast.ops.init import fill_uniform, fill_uniform_reference
from zcfast.ops.naswot import naswot_kernel, naswot_kernel_reference
from zcfast.ops.saliency import segment_saliency, segment_saliency_reference

pytestmark = pytest.mark.skipif(not _backend.triton_available(), reason="triton not installed")


def _ragged_offsets(gen, nseg, max_len, n_empty=3):
    lens = torch.randint(0, max_len, (nseg,), generator=gen)
    lens[torch.randperm(nseg, generator=gen)[:n_empty]] = 0  # empty segments
    off = torch.zeros(nseg + 1, dtype=torch.int64)
    off[1:] = torch.cumsum(lens, 0)
    return off


@pytest.mark.parametrize("backend", ["triton", "cpu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_hg", [True, False])
def test_segment_saliency(dtype, with_hg, backend):
    gen = torch.Generator().manual_seed(1)
    off = _ragged_offsets(gen, 13, 3000)  # lengths not multiples of the block
    n = int(off[-1])
    w = torch.randn(n, generator=gen, dtype=dtype)
    g = torch.randn(n, generator=gen, dtype=dtype) * 1e-3
    hg = torch.randn(n, generator=gen, dtype=dtype) if with_hg else None
    ref = segment_saliency_reference(w, g, hg, off)
    out = segment_saliency(w, g, hg, off, backend=backend)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    scale = ref.abs().amax(0, keepdim=True).clamp_min(1e-30)
    assert ((out - ref).abs() / scale).max() <= tol
    empty = (off[1:] == off[:-1]).nonzero().flatten()
    assert (out[empty] == 0).all()
    if not with_hg:
        assert (out[:, 3] == 0).all()


def test_segment_saliency_non_contiguous_and_validation():
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(4000, generator=gen)[::2]  # strided view
    g = torch.randn(2000, generator=gen).expand(1, 2000)[0]  # view of a broadcast-like tensor
    off = torch.tensor([0, 1, 1023, 1024, 2000])
    ref = segment_saliency_reference(w, g, None, off)
    out = segment_saliency(w, g, None, off, backend="triton")
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-9)
    with pytest.raises(ValueError, match="offsets"):
        segment_saliency(w, g, None, torch.tensor([0, 5, 3]), backend="triton")
    with pytest.raises(ValueError, match="differ"):
        segment_saliency(w, g[:10], None, off, backend="triton")
    with pytest.raises(ValueError, match="int64"):
        segment_saliency(w, g, None, off.int(), backend="triton")


@pytest.mark.parametrize("shape,group", [((7, 6, 5, 3), 2), ((3, 12, 1, 1), 12), ((5, 4), 1),
                                         ((0, 4, 2, 2), 4)])
def test_fisher_channels(shape, group):
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(shape, generator=gen)
    g = torch.randn(shape, generator=gen)
    ref = fisher_channels_reference(a, g, group, 27.0)
    out = fisher_channels(a, g, group, 27.0, backend="triton")
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-12)


def test_fisher_channels_non_contiguous_and_validation():
    gen = torch.Generator().manual_seed(4)
    a = torch.randn(6, 9, 4, 4, generator=gen).transpose(2, 3)  # non-contiguous
    g = torch.randn(6, 9, 4, 4, generator=gen)[:, :, :, :]
    ref = fisher_channels_reference(a, g, 3, 1.0)
    out = fisher_channels(a, g, 3, 1.0, backend="triton")
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-12)
    with pytest.raises(ValueError, match="group_size"):
        fisher_channels(a, g, 4, 1.0, backend="triton")
    with pytest.raises(ValueError, match="differs"):
        fisher_channels(a, g[:, :3], 3, 1.0, backend="triton")


@pytest.mark.parametrize("b,groups,gsize,hw", [(5, 7, 3, 9), (17, 4, 2, 50), (33, 5, 1, 1)])
def test_naswot_kernel(b, groups, gsize, hw):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(b, groups * gsize, hw, generator=gen)
    x[:, :, 0] = 0.0  # exact zeros code as "off" (-1)
    cand = torch.randint(0, 4, (groups,), generator=gen)
    cand[0] = 3
    k = 5  # candidate 4 owns nothing: its slice must stay as it was
    start = torch.randn(k, b, b, generator=gen).round()
    ref = naswot_kernel_reference(x, cand, gsize, start.clone())
    out = naswot_kernel(x, cand, gsize, start.clone(), backend="triton")
    assert torch.equal(out, ref)  # integer-valued: exact
    assert torch.equal(out[4], start[4])


def test_naswot_kernel_non_contiguous_and_validation():
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(8, 6, 5, 5, generator=gen).transpose(2, 3)
    cand = torch.tensor([0, 1, 0])
    ref = naswot_kernel_reference(x, cand, 2, torch.zeros(2, 8, 8))
    out = naswot_kernel(x, cand, 2, torch.zeros(2, 8, 8), backend="triton")
    assert torch.equal(out, ref)
    with pytest.raises(ValueError, match="group_cand"):
        naswot_kernel(x, torch.tensor([0, 1]), 2, torch.zeros(2, 8, 8), backend="triton")
    with pytest.raises(ValueError, match="group_cand values"):
        naswot_kernel(x, torch.tensor([0, 1, 2]), 2, torch.zeros(2, 8, 8), backend="triton")
    with pytest.raises(ValueError, match="float32"):
        naswot_kernel(x, cand, 2, torch.zeros(2, 8, 8, dtype=torch.float64), backend="triton")


def test_fill_uniform_backends_bit_identical():
    off = torch.tensor([0, 5, 5, 1030, 3001])  # ragged, one empty segment
    arch = torch.tensor([1, 2, 15624, 7])
    slot = torch.tensor([0, 3, 2**20, 9])
    bound = torch.tensor([0.5, 1.0, 0.1, 2.0])
    seed = 2**40 + 3
    ref = fill_uniform_reference(torch.zeros(3001), off, arch, slot, bound, seed)
    cpu = fill_uniform(torch.zeros(3001), off, arch, slot, bound, seed)  # compiled C++ loop
    tri = fill_uniform(torch.zeros(3001), off, arch, slot, bound, seed, backend="triton")
    assert torch.equal(ref, cpu) and torch.equal(ref, tri)
    seg = ref[1030:]
    assert seg.abs().max() <= 2.0 and abs(float(seg.mean())) < 0.1
    assert abs(float(seg.std()) - 2.0 / np.sqrt(3)) < 0.05  # U(-2, 2)
    with pytest.raises(ValueError, match="float32"):
        fill_uniform(torch.zeros(3001, dtype=torch.float64), off, arch, slot, bound, seed)


def test_engine_with_triton_backend_matches_torch():
    """The packed engine gives the same scores with the Triton kernels as with the references."""
    from zcfast.batched.engine import PackedNB201, codes_of
    from zcfast.data import image_source
    from zcfast.spaces import nb201

    x, y = image_source("ImageNet16-120").minibatch(4, 0)
    idx = [nb201.index_of("|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|nor_conv_1x1~0|none~1|nor_conv_3x3~2|"),
           0]
    names = ["snip", "plain", "grad_norm", "grasp", "fisher", "nwot", "synflow", "l2_norm"]
    a = PackedNB201(codes_of(idx), 120, input_size=16, backend="torch").compute(x, y, names)
    b = PackedNB201(codes_of(idx), 120, input_size=16, backend="triton").compute(x, y, names)
    for p in names:
        np.testing.assert_allclose(b[p], a[p], rtol=2e-5, err_msg=p)


def test_forced_backend_unavailable_fails_loudly(monkeypatch):
    monkeypatch.setenv("ZCFAST_BACKEND", "cuda")
    w = torch.zeros(4)
    with pytest.raises(RuntimeError, match="cuda"):
        segment_saliency(w, w, None, torch.tensor([0, 4]))
    monkeypatch.setenv("ZCFAST_BACKEND", "bogus")
    with pytest.raises(ValueError, match="bogus"):
        segment_saliency(w, w, None, torch.tensor([0, 4]))
