"""Fisher channel reduction straight from packed activation tensors.

For a layer output ``a`` (B, C, *spatial) and its gradient ``g = dL/da``::

    F_c = 0.5 * mean_b ( sum_{spatial} a[b,c] * g[b,c] )^2            (Theis et al. 2018)

The op returns ``fan_in * sum_{c in group} F_c`` for consecutive groups of ``group_size``
channels (a group = one candidate's copy of the layer in the packed tensor): the paper's fisher
broadcasts F_c to the C_in*kh*kw weights of channel c and sums them (Abdelfattah et al. 2021).
"""

from __future__ import annotations

import torch

from zcfast.ops import _backend


def _prepare(act, grad, group_size: int):
    if not isinstance(act, torch.Tensor) or act.dim() < 2:
        raise ValueError(f"fisher_channels: act must be (B, C, ...), got {getattr(act, 'shape', type(act))}")
    if grad.shape != act.shape:
        raise ValueError(f"fisher_channels: grad {tuple(grad.shape)} differs from act {tuple(act.shape)}")
    if act.dtype not in (torch.float32, torch.float64) or grad.dtype != act.dtype:
        raise ValueError(f"fisher_channels: act/grad must share float32 or float64, got {act.dtype}/{grad.dtype}")
    if grad.device != act.device:
        raise ValueError(f"fisher_channels: grad on {grad.device}, act on {act.device}")
    c = act.shape[1]
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1 or c % group_size:
        raise ValueError(f"fisher_channels: group_size {group_size!r} must divide the {c} channels")
    b = act.shape[0]
    hw = 1
    for d in act.shape[2:]:
        hw *= d
    return act.reshape(b, c, hw).contiguous(), grad.reshape(b, c, hw).contiguous()


def fisher_channels_reference(act, grad, group_size: int, fan_in: float) -> torch.Tensor:
    """Plain-torch reference: (C // group_size,) float64."""
    a, g = _prepare(act, grad, group_size)
    return _reference(a, g, group_size, fan_in)


def _reference(a, g, group_size: int, fan_in: float) -> torch.Tensor:
    b, c, _ = a.shape
    if b == 0:
        return torch.zeros(c // group_size, dtype=torch.float64, device=a.device)
    s = (a.double() * g.double()).sum(2)  # (B, C)
    f = 0.5 * s.pow(2).mean(0)  # (C,)
    return f.view(-1, group_size).sum(1) * float(fan_in)


def fisher_channels(act, grad, group_size: int, fan_in: float, *, backend: str | None = None):
    """(C // group_size,) float64 fan-in-weighted fisher sums per channel group.

    act, grad: (B, C, *spatial) float32 or float64, same shape, dtype and device (any strides:
    made contiguous here); group_size divides C.
    """
    a, g = _prepare(act, grad, group_size)  # ValueError before any backend question
    bk = _backend.choose("fisher_channels", a.device, backend)
    if bk == "torch":
        return _reference(a, g, group_size, fan_in)
    b, c, hw = a.shape
    per_channel = torch.zeros(c, dtype=torch.float64, device=a.device)
    if b > 0 and c > 0 and hw > 0 and bk != "meta":  # else every sum is empty: nothing to launch
        if bk == "triton":
            from zcfast.kernels.fisher import fisher_channels_triton

            fisher_channels_triton(a, g, per_channel)
        else:
            _fisher_channels_cuda(a, g, per_channel)
    return per_channel.view(-1, group_size).sum(1) * float(fan_in)


def _fisher_channels_cuda(a, g, out, max_grid: int = 0):
    """csrc/cuda/fisher.cu on contiguous (B, C, HW) CUDA tensors: out (C,) float64, written.
    ``max_grid`` > 0 caps the number of blocks (tests); every grid gives the same bits. An empty
    batch or an empty spatial extent gives zeros without a kernel launch."""
    from zcfast import _C

    b, c, hw = a.shape
    if b == 0 or c == 0 or hw == 0:
        return out.zero_()
    if a.device.type != "cuda":
        raise RuntimeError(f"fisher_channels: the cuda kernel needs CUDA tensors, got {a.device}")
    with torch.cuda.device(a.device):
        _C.cuda.fisher_channels(a.data_ptr(), g.data_ptr(), b, c, hw, out.data_ptr(),
                                a.dtype == torch.float64,
                                torch.cuda.current_stream(a.device).cuda_stream, max_grid)
    return out
