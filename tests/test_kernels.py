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


def test_engine_with_triton_backend_matches_torch(monkeypatch):
    """The packed engine gives the same scores with the Triton kernels as with the references,
    within the bounds derived from each backend's float32 / float64 summation error
    (tests/backend_bounds.py; nwot exactly). The bounds can fail: a Triton saliency kernel that
    dropped the last element of every segment (an off-by-one mask) breaks them."""
    from backend_bounds import derived_bounds, run_backends, violations

    from zcfast.data import image_source
    from zcfast.spaces import nb201

    x, y = image_source("ImageNet16-120").minibatch(4, 0)
    idx = [nb201.index_of("|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|nor_conv_1x1~0|none~1|nor_conv_3x3~2|"),
           0]
    names = ["snip", "plain", "grad_norm", "grasp", "fisher", "nwot", "synflow", "l2_norm"]
    scores, rec = run_backends(monkeypatch, idx, x, y, names, ["torch", "triton"], ncls=120)
    bounds = derived_bounds(rec, len(idx))
    assert set(bounds) >= {"snip", "plain", "grad_norm", "grasp", "fisher", "synflow", "l2_norm"}
    bad = violations(scores["torch"], scores["triton"], bounds, idx)
    assert not bad, bad
    # tight enough to mean something where the terms do not cancel: under 1e-5 relative
    for p in ("snip", "grad_norm", "l2_norm", "synflow"):
        for k, c in enumerate(idx):
            v = abs(scores["torch"][c][p])
            assert bounds[p][k] <= 1e-5 * v, (p, bounds[p][k], v)
    # injected defect: the last element of every weight segment left out of snip and plain
    w, g, _, off, _ = rec.saliency[0]
    last = (off[1:] - 1)[off[1:] > off[:-1]]
    cand = rec.per_candidate[0][1][(off[1:] > off[:-1]).numpy()]
    drop = (w[last].double() * g[last].double()).numpy()
    broken = {c: dict(v) for c, v in scores["triton"].items()}
    for k, c in enumerate(idx):
        broken[c]["snip"] -= float(np.abs(drop[cand == k]).sum())
        broken[c]["plain"] -= float(drop[cand == k].sum())
    caught = violations(scores["torch"], broken, bounds, idx)
    assert {p for _, p, *_ in caught} >= {"snip"}, caught


def test_forced_backend_unavailable_fails_loudly(monkeypatch):
    monkeypatch.setenv("ZCFAST_BACKEND", "cuda")
    w = torch.zeros(4)
    with pytest.raises(RuntimeError, match="cuda"):
        segment_saliency(w, w, None, torch.tensor([0, 4]))
    monkeypatch.setenv("ZCFAST_BACKEND", "bogus")
    with pytest.raises(ValueError, match="bogus"):
        segment_saliency(w, w, None, torch.tensor([0, 4]))


# ---- edge cases of the adapters (CPU) ------------------------------------------------------------


@pytest.mark.parametrize("backend", ["cpu", "torch", "triton"])
def test_empty_inputs_give_zeros(backend):
    """n = 0 with segments (every segment empty), fisher with HW = 0 or B = 0: zeros, on every
    backend."""
    e = torch.empty(0)
    off = torch.zeros(4, dtype=torch.int64)
    out = segment_saliency(e, e, None, off, backend=backend)
    assert out.shape == (3, 5) and (out == 0).all()
    if backend == "cpu":
        return  # fisher has no native CPU loop
    for shape in ((3, 6, 0), (3, 6, 4, 0), (0, 6, 5)):
        a = torch.empty(shape)
        f = fisher_channels(a, a, 2, 1.0, backend=backend)
        assert f.shape == (3,) and (f == 0).all()
    acc = torch.ones(2, 3, 3)
    naswot_kernel(torch.empty(3, 4, 0), torch.tensor([0, 1]), 2, acc, backend=backend)
    assert (acc == 1).all()


def test_cuda_adapters_skip_the_launch_only_for_empty_inputs(monkeypatch):
    """The CUDA adapters' empty-input guards, without a GPU: empty inputs return zeros and never
    reach the binding (which is replaced by one that fails the test); the smallest non-empty
    input (one element, one row) is not swallowed by the guard: it reaches the device check,
    which refuses CPU tensors. An off-by-one guard (n <= 1, HW <= 1) fails here."""
    from types import SimpleNamespace

    from zcfast import _C
    from zcfast.ops.fisher import _fisher_channels_cuda
    from zcfast.ops.saliency import _segment_saliency_cuda

    def launched(*a, **k):
        raise AssertionError("an empty input reached the CUDA binding")

    monkeypatch.setattr(_C, "cuda", SimpleNamespace(segment_saliency=launched, fisher_channels=launched,
                                                    SALIENCY_DIRECT_MAX=65536,
                                                    segment_saliency_workspace_bytes=launched),
                        raising=False)
    nan5 = lambda k: torch.full((k, 5), float("nan"), dtype=torch.float64)  # noqa: E731
    e = torch.empty(0)
    assert (_segment_saliency_cuda(e, e, None, torch.zeros(4, dtype=torch.int64), nan5(3), 0) == 0).all()
    one = torch.ones(3)
    # elements exist but every segment is empty (max_len 0): zeros too
    assert (_segment_saliency_cuda(one, one, None, torch.tensor([0, 0, 0]), nan5(2), 0) == 0).all()
    with pytest.raises(RuntimeError, match="CUDA tensors"):  # one element in one segment
        _segment_saliency_cuda(one, one, None, torch.tensor([0, 0, 1]), nan5(2), 1)
    nan = lambda c: torch.full((c,), float("nan"), dtype=torch.float64)  # noqa: E731
    for shape in ((3, 4, 0), (0, 4, 7)):
        a = torch.empty(shape)
        assert (_fisher_channels_cuda(a, a, nan(4)) == 0).all()
    with pytest.raises(RuntimeError, match="CUDA tensors"):  # one sample, one position
        _fisher_channels_cuda(torch.ones(1, 4, 1), torch.ones(1, 4, 1), nan(4))


@pytest.mark.parametrize("backend", ["cpu", "torch", "triton"])
def test_fill_uniform_rejects_offsets_outside_out(backend):
    a = torch.tensor([1, 2])
    b = torch.tensor([0.5, 0.5])
    with pytest.raises(ValueError, match=r"segment 1 \[10, 30\) is not inside the buffer of 20"):
        fill_uniform(torch.zeros(20), torch.tensor([0, 10, 30]), a, a, b, 0, backend=backend)
    with pytest.raises(ValueError, match="segment 0"):
        fill_uniform(torch.zeros(20), torch.tensor([-1, 5, 6]), a, a, b, 0, backend=backend)
    with pytest.raises(ValueError, match="segment 0"):
        fill_uniform(torch.zeros(20), torch.tensor([6, 5, 6]), a, a, b, 0, backend=backend)
    out = fill_uniform(torch.zeros(20), torch.tensor([0, 10, 20]), a, a, b, 0, backend=backend)
    assert (out != 0).all()  # the whole buffer, exactly: accepted


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_naswot_batch_over_128_gives_the_reference_value(backend):
    """Batches above the fused kernels' 128 take the reference path: the same exact values."""
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(130, 6, 3, generator=gen)
    cand = torch.tensor([0, 1, 0])
    ref = naswot_kernel_reference(x, cand, 2, torch.zeros(2, 130, 130))
    out = naswot_kernel(x, cand, 2, torch.zeros(2, 130, 130), backend=backend)
    assert torch.equal(out, ref)
    assert ref.abs().max() > 0 and ref[0, 0, 0] == 2 * 2 * 3  # S S^T diagonal = features


def test_naswot_reads_channel_slices_in_place():
    """A channel slice of a wider tensor (what the packed engine passes) is not copied: the
    prepared tensor shares its memory and carries the wider sample stride; the Triton kernel
    reads it through that stride and matches the reference."""
    from zcfast.ops.naswot import _prepare

    gen = torch.Generator().manual_seed(9)
    wide = torch.randn(5, 10, 3, 4, generator=gen)
    view = wide[:, 2:8]  # 6 channels, sample stride 10 * 12
    cand = torch.tensor([0, 1, 1])
    xs, _ = _prepare(view, cand, 2, torch.zeros(2, 5, 5))
    assert xs.data_ptr() == view.data_ptr() and xs.stride(0) == 120
    ref = naswot_kernel_reference(view.contiguous(), cand, 2, torch.zeros(2, 5, 5))
    assert torch.equal(naswot_kernel(view, cand, 2, torch.zeros(2, 5, 5), backend="triton"), ref)
    # samples that overlap (stride 0, a broadcast) or a transposed block are copied first
    bcast = torch.randn(1, 6, 12, generator=gen).expand(5, 6, 12)
    xb, _ = _prepare(bcast, cand, 2, torch.zeros(2, 5, 5))
    assert xb.is_contiguous() and xb.data_ptr() != bcast.data_ptr()
    assert torch.equal(naswot_kernel(bcast, cand, 2, torch.zeros(2, 5, 5), backend="triton"),
                       naswot_kernel_reference(bcast.contiguous(), cand, 2, torch.zeros(2, 5, 5)))


def _naswot_by_counting(x, cand, gsize, k):
    """S S^T per candidate from its definition: +1 per feature where two samples' codes agree
    (both > 0 or both not), -1 where they differ, summed over the candidate's groups."""
    b = x.shape[0]
    xs = x.reshape(b, x.shape[1] // gsize, -1)  # (B, G, group features)
    out = torch.zeros(k, b, b, dtype=torch.float64)
    for g in range(xs.shape[1]):
        code = xs[:, g] > 0
        agree = (code[:, None, :] == code[None, :, :]).sum(-1).double()
        out[int(cand[g])] += 2 * agree - code.shape[1]
    return out.float()


@pytest.mark.parametrize("b,groups,gsize,hw", [(6, 5, 3, 7), (11, 3, 1, 40), (1, 2, 2, 1)])
def test_naswot_reference_counts_agreements(b, groups, gsize, hw):
    """The reference's 0/1-code product with its count correction equals counting agreements
    feature by feature (exact zeros and negative zeros code as off)."""
    gen = torch.Generator().manual_seed(b * 31 + hw)
    x = torch.randn(b, groups * gsize, hw, generator=gen)
    x[:, :, 0] = 0.0
    x[0, :, -1] = -0.0
    cand = torch.randint(0, 3, (groups,), generator=gen)
    out = naswot_kernel_reference(x, cand, gsize, torch.zeros(4, b, b))
    assert torch.equal(out, _naswot_by_counting(x, cand, gsize, 4))
    assert torch.equal(out[3], torch.zeros(b, b))  # candidate 3 owns no group

