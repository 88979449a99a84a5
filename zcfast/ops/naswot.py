"""NASWOT Hamming-kernel accumulation straight from packed ReLU inputs.

At a ReLU with input x, sample b has binary code c_b = 1[x_b > 0] over the layer's features.
NASWOT's kernel K_ab = sum_layers #{features where c_a and c_b agree} (Mellor et al., ICML 2021)
is, with s = 2c - 1 in {-1, +1} and F the feature count, K = (F + S S^T) / 2.

This op accumulates ``out[k] += sum_{groups g of candidate k} S_g S_g^T`` (B x B) for a packed
tensor (B, G*group_size, *spatial) whose channel group g belongs to candidate ``group_cand[g]``.
The products of +-1 are integers, so float32 accumulation is exact while counts stay < 2^24.

Inputs are read in place when each sample's (C, *spatial) block is contiguous, whatever the
stride between samples: the packed engine hands over channel slices of a larger gathered tensor
(the inputs of one node's convolutions), which would otherwise be copied. The fused kernels take
batches up to ``MAX_FUSED_BATCH``; larger batches use the torch reference, which gives the same
(exact, integer) values.
"""

from __future__ import annotations

import torch

from zcfast.ops import _backend

MAX_FUSED_BATCH = 128  # = kNaswotMaxBatch of csrc/cuda/launch.hpp; the Triton kernel shares it


def _prepare(x, group_cand, group_size, out, check_values: bool = True):
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
    if check_values and ng and (int(group_cand.min()) < 0 or int(group_cand.max()) >= out.shape[0]):
        raise ValueError(f"naswot_kernel: group_cand values must lie in [0, {out.shape[0]})")
    if not out.is_contiguous():
        raise ValueError("naswot_kernel: out must be contiguous (it is accumulated in place)")
    hw = 1
    for d in x.shape[2:]:
        hw *= d
    xs = x.reshape(b, c, hw)  # a view whenever the strides allow it
    return (xs if _rows_in_place(xs) else xs.contiguous()), group_cand


def _rows_in_place(xs: torch.Tensor) -> bool:
    """True when every sample's (C, HW) block of ``xs`` (B, C, HW) is contiguous and samples do
    not overlap: the kernels then read it through its sample stride, without a copy."""
    b, c, hw = xs.shape
    return ((hw <= 1 or xs.stride(2) == 1) and (c <= 1 or xs.stride(1) == hw)
            and (b <= 1 or xs.stride(0) >= c * hw))


def _sample_stride(xs: torch.Tensor) -> int:
    """Elements between consecutive samples of ``xs`` (B, C, HW) as the kernels read it (a
    single sample has no stride: its feature count stands in)."""
    b, c, hw = xs.shape
    return int(xs.stride(0)) if b > 1 else c * hw


def naswot_kernel_reference(x, group_cand, group_size: int, out: torch.Tensor) -> torch.Tensor:
    """Plain-torch reference; accumulates into ``out`` (K, B, B) float32 and returns it."""
    xs, group_cand = _prepare(x, group_cand, group_size, out)
    return _reference(xs, group_cand, group_size, out)


def _reference(xs, group_cand, group_size: int, out: torch.Tensor) -> torch.Tensor:
    b, c, hw = xs.shape
    if b == 0 or c == 0:
        return out
    # With 0/1 codes C and F features per group, S S^T = 4 C C^T - 2 n_a - 2 n_b + F, where
    # n_a = |c_a| is the diagonal of C C^T: one conversion pass and one product, instead of
    # building the +-1 codes (torch.where with scalars ran at a third of this speed on CPU).
    # The same float32 bits as the +-1 product while F < 2^24: C C^T is an exact count, 4 C C^T
    # a multiple of 4 below 2^26, and each partial sum an even integer of magnitude <= 2F.
    f = group_size * hw
    # the comparison written straight into float32 (one pass; gt then a conversion took 8x
    # longer on CPU, measured in docs/performance.md)
    codes = torch.gt(xs, 0, out=torch.empty(xs.shape, dtype=torch.float32, device=xs.device))
    codes = codes.reshape(b, c // group_size, f)
    gram = torch.einsum("bgf,cgf->gbc", codes, codes)  # (G, B, B) exact integers
    n2 = 2 * torch.diagonal(gram, dim1=1, dim2=2)  # (G, B): twice each sample's active units
    gram = gram.mul_(4).sub_(n2.unsqueeze(2)).sub_(n2.unsqueeze(1)).add_(f)
    out.index_add_(0, group_cand, gram)
    return out


def naswot_kernel(x, group_cand, group_size: int, out: torch.Tensor, *, backend: str | None = None,
                  check_values: bool = True):
    """Accumulate +-1 code Gram matrices per candidate into ``out`` (K, B, B) float32.

    ``check_values=False`` skips the range check of ``group_cand``'s values, which reads them
    on the host (a device-to-host sync on a GPU): for callers that built and checked the indices
    on the host themselves (the packed engine's plan)."""
    xs, group_cand = _prepare(x, group_cand, group_size, out, check_values)  # ValueError first
    bk = _backend.choose("naswot_kernel", xs.device, backend)
    if bk == "torch":
        return _reference(xs, group_cand, group_size, out)
    b, c, hw = xs.shape
    if b == 0 or c == 0 or hw == 0:
        return out
    if b > MAX_FUSED_BATCH:  # beyond the fused kernels' tiles: the reference, same exact values
        return _reference(xs, group_cand, group_size, out)
    # candidate-major list of groups (CSR): each program owns one candidate, no atomics.
    # Counts by scatter_add (bincount sizes its output from the largest value: a sync on GPUs).
    order = torch.argsort(group_cand, stable=True)
    counts = torch.zeros(out.shape[0], dtype=torch.int64, device=x.device)
    counts.scatter_add_(0, group_cand, torch.ones_like(group_cand))
    ptr = torch.zeros(out.shape[0] + 1, dtype=torch.int64, device=x.device)
    ptr[1:] = torch.cumsum(counts, 0)
    if bk == "meta":
        return out
    if bk == "triton":
        from zcfast.kernels.naswot import naswot_kernel_triton

        return naswot_kernel_triton(xs, order, ptr, group_size * hw, out)
    return _naswot_kernel_cuda(xs, order, ptr, group_size * hw, out)


def _naswot_kernel_cuda(xs, order, ptr, group_len: int, out, split: int = 0,
                       max_clusters: int = 0, info: dict | None = None):
    """csrc/cuda/naswot.cu: xs (B, C, HW) CUDA tensor whose samples are contiguous blocks (any
    sample stride, see _rows_in_place), groups of ``group_len`` contiguous features per sample;
    order/ptr the candidate-major CSR of groups (int64); out (K, B, B) float32 accumulated in
    place. ``split``: blocks per candidate (a cluster of 1..8), 0 = automatic; ``max_clusters``
    > 0 caps the clusters (tests: each then walks several candidates). The result is exact,
    hence the same for every split and grid. ``info`` (a dict) receives ``cluster``: the cluster
    size the launch really used (0 when there was nothing to launch)."""
    from zcfast import _C

    if xs.device.type != "cuda":
        raise RuntimeError(f"naswot_kernel: the cuda kernel needs CUDA tensors, got {xs.device}")
    if xs.dtype not in (torch.float32, torch.float64):
        xs = xs.float()  # the kernel reads float32/float64; widening keeps every sign (the code)
    if not _rows_in_place(xs):
        xs = xs.contiguous()
    b, c, hw = xs.shape
    with torch.cuda.device(xs.device):
        used = _C.cuda.naswot_kernel(xs.data_ptr(), order.data_ptr(), ptr.data_ptr(), b,
                                     _sample_stride(xs), c * hw, group_len, out.shape[0],
                                     out.data_ptr(), xs.dtype == torch.float64,
                                     torch.cuda.current_stream(xs.device).cuda_stream, split,
                                     max_clusters)
    if info is not None:
        info["cluster"] = int(used)
    return out
