"""NASWOT Hamming-kernel accumulation straight from packed ReLU inputs.

At a ReLU with input x, sample b has binary code c_b = 1[x_b > 0] over the layer's features.
NASWOT's kernel K_ab = sum_layers #{features where c_a and c_b agree} (Mellor et al., ICML 2021)
is, with s = 2c - 1 in {-1, +1} and F the feature count, K = (F + S S^T) / 2.

This op accumulates ``out[k] += sum_{groups g of candidate k} S_g S_g^T`` (B x B) for a packed
tensor (B, G*group_size, *spatial) whose channel group g belongs to candidate ``group_cand[g]``.
The products of +-1 are integers, so float32 accumulation is exact while counts stay < 2^24.
"""

from __future__ import annotations

import torch

from zcfast.ops import _backend


def _prepare(x, group_cand, group_size, out):
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or not x.is_floating_point():
        raise ValueError(f"naswot_kernel: x must be a float (B, C, ...) tensor, got {getattr(x, 'shape', type(x))}")
    b, c = x.shape[:2]
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1 or c % group_size:
        raise ValueError(f"naswot_kernel: group_size {group_size!r} must divide the {c} channels")
    ng = c // group_size
    group_cand = torch.as_tensor(group_cand, dtype=torch.int64, device=x.device)
    if group_cand.shape != (ng,):
        raise ValueError(f"naswot_kernel: group_cand has {tuple(group_cand.shape)} entries, expected ({ng},)")
    if out.dim() != 3 or out.shape[1:] != (b, b) or out.dtype != torch.float32 or out.device != x.device:
        raise ValueError(f"naswot_kernel: out must be float32 (K, {b}, {b}) on {x.device}, got "
                         f"{out.dtype} {tuple(out.shape)} on {out.device}")
    if ng and (int(group_cand.min()) < 0 or int(group_cand.max()) >= out.shape[0]):
        raise ValueError(f"naswot_kernel: group_cand values must lie in [0, {out.shape[0]})")
    if not out.is_contiguous():
        raise ValueError("naswot_kernel: out must be contiguous (it is accumulated in place)")
    hw = 1
    for d in x.shape[2:]:
        hw *= d
    return x.reshape(b, c, hw).contiguous(), group_cand


def naswot_kernel_reference(x, group_cand, group_size: int, out: torch.Tensor) -> torch.Tensor:
    """Plain-torch reference; accumulates into ``out`` (K, B, B) float32 and returns it."""
    xs, group_cand = _prepare(x, group_cand, group_size, out)
    return _reference(xs, group_cand, group_size, out)


def _reference(xs, group_cand, group_size: int, out: torch.Tensor) -> torch.Tensor:
    b, c, hw = xs.shape
    if b == 0 or c == 0:
        return out
    s = torch.where(xs > 0, 1.0, -1.0).to(torch.float32).reshape(b, c // group_size, group_size * hw)
    gram = torch.einsum("bgf,cgf->gbc", s, s)  # (G, B, B), exact integers
    out.index_add_(0, group_cand, gram)
    return out


def naswot_kernel(x, group_cand, group_size: int, out: torch.Tensor, *, backend: str | None = None):
    """Accumulate +-1 code Gram matrices per candidate into ``out`` (K, B, B) float32."""
    xs, group_cand = _prepare(x, group_cand, group_size, out)  # ValueError before the backend
    bk = _backend.choose("naswot_kernel", xs.device, backend)
    if bk == "torch":
        return _reference(xs, group_cand, group_size, out)
    b, c, hw = xs.shape
    if b == 0 or c == 0:
        return out
    if b > 128:
        raise ValueError(f"naswot_kernel: the fused kernels take batches up to 128, got {b}")
    # candidate-major list of groups (CSR): each program owns one candidate, no atomics
    order = torch.argsort(group_cand, stable=True)
    counts = torch.bincount(group_cand, minlength=out.shape[0])
    ptr = torch.zeros(out.shape[0] + 1, dtype=torch.int64, device=x.device)
    ptr[1:] = torch.cumsum(counts, 0)
    if bk == "triton":
        from zcfast.kernels.naswot import naswot_kernel_triton

        return naswot_kernel_triton(xs, order, ptr, group_size * hw, out)
    return _naswot_kernel_cuda(xs, order, ptr, group_size * hw, out)


def _naswot_kernel_cuda(xs, order, ptr, group_len: int, out, split: int = 0):
    """csrc/cuda/naswot.cu: xs (B, C, HW) contiguous CUDA tensor, groups of ``group_len``
    contiguous features per sample; order/ptr the candidate-major CSR of groups (int64);
    out (K, B, B) float32 accumulated in place. ``split``: blocks per candidate (a cluster of
    1..8), 0 = automatic; the result is exact, hence the same for every split."""
    from zcfast import _C

    if xs.device.type != "cuda":
        raise RuntimeError(f"naswot_kernel: the cuda kernel needs CUDA tensors, got {xs.device}")
    if xs.dtype not in (torch.float32, torch.float64):
        xs = xs.float()  # the kernel reads float32/float64; widening keeps every sign (the code)
    b, c, hw = xs.shape
    with torch.cuda.device(xs.device):
        _C.cuda.naswot_kernel(xs.data_ptr(), order.data_ptr(), ptr.data_ptr(), b, c * hw,
                              group_len, out.shape[0], out.data_ptr(),
                              xs.dtype == torch.float64,
                              torch.cuda.current_stream(xs.device).cuda_stream, split)
    return out
