"""3x3 box sum per channel plane, the neighbourhood sum of the pooling edges (docs/performance.md).

``y[b, c, i, j]`` = the sum of ``x[b, c]`` over rows i-1..i+1 and columns j-1..j+1, zero outside
the plane. The packed NB201 engine's 3x3 average pooling is this sum times the reciprocal of the
number of valid neighbours (zcfast/batched/engine.py, ``_pool3``).

Backends: ``torch``, the reference, is a depthwise convolution with a ones filter; ``cpu`` is the
compiled core's loop (csrc/cpu_ops.cpp), which adds the nine terms one at a time in row-major
window order from +0. On float32 CPU tensors that is the order oneDNN's depthwise convolution
adds them in, so both give the same bits (tests/test_boxsum.py checks it on ragged shapes),
and the loop reads strided channel slices in place, 5-6x faster than the convolution here.
There is no Triton or CUDA kernel: on a GPU the reference runs (cuDNN's depthwise convolution).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zcfast.ops import _backend

_NATIVE_DTYPES = (torch.float32, torch.float64)


def box_sum3_reference(x: torch.Tensor, ones=None) -> torch.Tensor:
    """Depthwise 3x3 convolution of ``x`` (B, C, H, W) with a ones filter, padding 1.
    ``ones(C, dtype, device)``, if given, returns the (C, 1, 3, 3) filter (a caller that keeps
    one saves an operator per call)."""
    c = x.shape[1]
    w = ones(c, x.dtype, x.device) if ones is not None else \
        torch.ones(c, 1, 3, 3, dtype=x.dtype, device=x.device)
    return F.conv2d(x, w, padding=1, groups=c)


def box_sum3_backend(x: torch.Tensor, backend: str | None = None) -> str:
    """``cpu`` or ``torch`` for ``x``. Under CPU autocast, the reference. Else an explicit
    ``backend`` (or ZCFAST_BACKEND) of ``torch`` picks the reference, ``cpu`` the loop (an error
    where it cannot run); ``triton`` and ``cuda``, which have no box-sum kernel, the reference;
    otherwise the loop for float32 and float64 CPU tensors and the reference for the rest."""
    b = backend if backend is not None else _backend.forced_backend()
    if b is not None and b not in _backend.BACKENDS:
        raise ValueError(f"unknown backend {b!r} for box_sum3: expected one of {_backend.BACKENDS}")
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        # the convolution then runs in autocast's dtype (reduced precision, --precision bf16),
        # which the loop, summing in x's dtype, would not reproduce
        return "torch"
    fits = x.device.type == "cpu" and x.dtype in _NATIVE_DTYPES
    if b == "cpu":
        if not fits:
            raise RuntimeError(f"backend 'cpu' is not available for box_sum3 on {x.device} "
                               f"{x.dtype} tensors (float32 or float64 CPU tensors only)")
        return "cpu"
    if b is not None:
        return "torch"
    return "cpu" if fits else "torch"


def box_sum3(x: torch.Tensor, *, backend: str | None = None, ones=None) -> torch.Tensor:
    """The 3x3 box sum of every (sample, channel) plane of ``x`` (B, C, H, W) (module doc);
    ``ones`` as in :func:`box_sum3_reference`. Not differentiable by itself: the operator is
    self-adjoint, and the engine's autograd Function applies it again for the backward."""
    if x.dim() != 4:
        raise ValueError(f"box_sum3: x must be 4-D (B, C, H, W), got shape {tuple(x.shape)}")
    if box_sum3_backend(x, backend) == "torch":
        return box_sum3_reference(x, ones)
    from zcfast import _C

    x = x.detach()
    H, W = x.shape[2], x.shape[3]
    if (W > 1 and x.stride(3) != 1) or (H > 1 and x.stride(2) != W):
        x = x.contiguous()  # the loop reads each plane as one block; batch and channels may stride
    out = torch.empty(x.shape, dtype=x.dtype)
    _C.cpu.box_sum3(x.numpy(), out.numpy(), torch.get_num_threads())
    return out
