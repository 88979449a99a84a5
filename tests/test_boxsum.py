"""The 3x3 box sum of the pooling edges (zcfast/ops/boxsum.py, docs/performance.md): the compiled
CPU loop gives the reference convolution's bits, in the op and inside the packed engine."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zcfast.ops import boxsum
from zcfast.ops.boxsum import box_sum3, box_sum3_backend, box_sum3_reference


def _ragged(g, dtype):
    """Random planes of ragged shapes, as a channel slice of a wider tensor (strided samples
    and channels), with many exact zeros of both signs."""
    B, C = int(torch.randint(1, 5, (1,), generator=g)), int(torch.randint(1, 30, (1,), generator=g))
    H, W = int(torch.randint(1, 34, (1,), generator=g)), int(torch.randint(1, 34, (1,), generator=g))
    big = torch.randn(B, C + 3, H, W, generator=g, dtype=dtype) * 10
    big[big.abs() < 2] = 0.0
    big[big.abs() > 15] = -0.0
    return big[:, 2 : 2 + C]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_loop_equals_convolution_bitwise(dtype):
    g = torch.Generator().manual_seed(7)
    shapes = [(32, 32), (16, 16), (8, 8), (4, 4), (1, 1), (1, 5), (5, 1), (2, 3)]
    for trial in range(40):
        x = _ragged(g, dtype)
        if trial < len(shapes):
            x = torch.randn(2, 3, *shapes[trial], generator=g, dtype=dtype)
        assert box_sum3_backend(x) == "cpu"
        ref = F.conv2d(x, torch.ones(x.shape[1], 1, 3, 3, dtype=dtype), padding=1, groups=x.shape[1])
        for threads in (1, 2):
            torch.set_num_threads(threads)
            try:
                out = box_sum3(x)
            finally:
                torch.set_num_threads(1)
            assert out.is_contiguous()
            assert torch.equal(out, ref), (tuple(x.shape), (out - ref).abs().max().item())
            assert torch.equal(out.signbit(), ref.signbit())  # zeros keep the convolution's sign


def test_strided_and_expanded_inputs():
    g = torch.Generator().manual_seed(3)
    base = torch.randn(1, 4, 6, 5, generator=g)
    for x in (base.expand(3, 4, 6, 5),  # stride 0 over samples: read in place
              torch.randn(2, 4, 5, 6, generator=g).transpose(2, 3),  # planes not contiguous: copied
              torch.randn(2, 8, 6, 5, generator=g)[:, ::2]):  # every other channel
        assert torch.equal(box_sum3(x), box_sum3_reference(x))


def test_backend_choice():
    x = torch.randn(1, 2, 4, 4)
    assert box_sum3_backend(x, "torch") == "torch"
    assert box_sum3_backend(x, "triton") == "torch"  # no box-sum kernel: the reference
    assert box_sum3_backend(x.to(torch.bfloat16)) == "torch"
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the convolution then runs in bf16
        assert box_sum3_backend(x) == "torch"
    with pytest.raises(RuntimeError, match="bfloat16"):
        box_sum3_backend(x.to(torch.bfloat16), "cpu")
    with pytest.raises(ValueError, match="'gpu'"):
        box_sum3_backend(x, "gpu")
    with pytest.raises(ValueError, match=r"\(2, 4, 4\)"):
        box_sum3(x[0])


def test_compiled_loop_rejects_bad_arrays():
    from zcfast import _C

    x = np.zeros((1, 2, 3, 4), np.float32)
    with pytest.raises(ValueError, match="float32 or float64"):
        _C.cpu.box_sum3(x.astype(np.int32), np.zeros_like(x), 1)
    with pytest.raises(ValueError, match="4-D"):
        _C.cpu.box_sum3(x[0], np.zeros_like(x[0]), 1)
    with pytest.raises(ValueError, match="out must be"):
        _C.cpu.box_sum3(x, np.zeros((1, 2, 3, 5), np.float32), 1)
    with pytest.raises(ValueError, match="contiguous"):
        _C.cpu.box_sum3(x.transpose(0, 1, 3, 2), np.zeros((1, 2, 4, 3), np.float32), 1)


def test_packed_engine_same_bits_with_either_backend(monkeypatch):
    """Every pass that pools (forward, backward, grasp's double backward, the no-grad forwards)
    gives the same bits with the loop as with the convolution."""
    from zcfast.batched.engine import PackedNB201
    from zcfast.spaces import nb201

    # cells with several pooling edges, into one node and into different nodes
    codes = [nb201.code_of_index(i) for i in (15624, 9000, 1234)]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 16, 16, generator=g)
    y = torch.randint(0, 10, (8,), generator=g)
    proxies = ("grasp", "snip", "nwot", "jacob_cov", "meco")
    chosen = []
    real = boxsum.box_sum3_backend

    def spy(t, backend=None):
        chosen.append(real(t, backend))
        return chosen[-1]

    monkeypatch.setattr(boxsum, "box_sum3_backend", spy)
    loop = PackedNB201(codes, 10, input_size=16).compute(x, y, proxies)
    assert "cpu" in chosen
    monkeypatch.setattr(boxsum, "box_sum3_backend", lambda t, backend=None: "torch")
    conv = PackedNB201(codes, 10, input_size=16).compute(x, y, proxies)
    for p in proxies:
        assert np.array_equal(loop[p], conv[p], equal_nan=True), p
