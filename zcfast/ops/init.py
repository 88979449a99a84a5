"""Counter-based weight initialisation of a flat, segmented parameter buffer.

``out[off[s]:off[s+1]] = U[-1, 1) * bound[s]``, the uniform numbers coming from the stream
``(seed, arch[s], slot[s])`` (see csrc/hash.hpp). The bit pattern is identical on every backend,
so a candidate's weights depend on (seed, arch, slot) only: never on its batch-mates.
PyTorch's default conv/linear initialisation is U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights
and biases, so ``bound = 1/sqrt(fan_in)`` reproduces its distribution.
"""

from __future__ import annotations

import torch

from zcfast.ops import _backend

_M32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    # x * c mod 2^32 on int64 tensors without overflow: split c into 16-bit halves.
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _M32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def stream_keys(arch: torch.Tensor, slot: torch.Tensor, seed: int):
    """(ka, kb) int64 tensors (values < 2^32) of the streams (seed, arch, slot)."""
    arch = arch.to(torch.int64) & _M32
    slot = slot.to(torch.int64) & _M32
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    s = _mix32(torch.full_like(arch, (seed & _M32) ^ 0x9E3779B9))
    s = _mix32(s ^ (seed >> 32))
    s = _mix32(s ^ arch)
    s = _mix32(s ^ slot)
    return s, _mix32(s ^ 0x85EBCA6B)


def _check(out, offsets, arch, slot, bound, check_values: bool = True):
    if out.dtype != torch.float32 or out.dim() != 1 or not out.is_contiguous():
        raise ValueError(
            f"fill_uniform: out must be a contiguous 1-D float32 tensor, got {out.dtype} "
            f"shape {tuple(out.shape)}"
        )
    n = arch.numel()
    if slot.numel() != n or bound.numel() != n or offsets.numel() != n + 1:
        raise ValueError(
            f"fill_uniform: need len(offsets)=len(arch)+1=len(slot)+1=len(bound)+1, got "
            f"{offsets.numel()}, {arch.numel()}, {slot.numel()}, {bound.numel()}"
        )
    if offsets.dtype.is_floating_point or offsets.dtype == torch.bool:
        raise ValueError(f"fill_uniform: offsets must be integers, got {offsets.dtype}")
    if n and check_values:
        # every segment inside `out` (as the compiled CPU loop checks): 0 <= off[s] <= off[s+1]
        # <= len(out). One device-to-host transfer covers the three conditions.
        o = offsets.to(torch.int64)
        lo, first, last = torch.stack([(o[1:] - o[:-1]).min(), o[0], o[-1]]).tolist()
        if lo < 0 or first < 0 or last > out.numel():
            oc = o.cpu().tolist()
            s = next(s for s in range(n) if not 0 <= oc[s] <= oc[s + 1] <= out.numel())
            raise ValueError(f"fill_uniform: segment {s} [{oc[s]}, {oc[s + 1]}) is not inside "
                             f"the buffer of {out.numel()} elements")


def fill_uniform_reference(out, offsets, arch, slot, bound, seed: int) -> torch.Tensor:
    """Plain-torch reference (int64 arithmetic). Fills ``out`` in place and returns it."""
    _check(out, offsets, arch, slot, bound)
    dev = out.device
    offsets = offsets.to(dev, torch.int64)
    lens = offsets[1:] - offsets[:-1]
    if int(lens.sum()) == 0:
        return out
    ka, kb = stream_keys(arch.to(dev), slot.to(dev), seed)
    seg = torch.repeat_interleave(torch.arange(arch.numel(), device=dev), lens)
    start = offsets[:-1][seg]
    pos = torch.arange(int(offsets[-1] - offsets[0]), device=dev, dtype=torch.int64) + offsets[0]
    i = pos - start
    h = _mix32(_mix32(i ^ ka[seg]) ^ kb[seg])
    u = (h >> 8).to(torch.float32) * (1.0 / 8388608.0) - 1.0
    out[pos] = u * bound.to(dev, torch.float32)[seg]
    return out


def fill_uniform(out, offsets, arch, slot, bound, seed: int, *, backend: str | None = None,
                 check_values: bool = True):
    """Fill segments of ``out`` (float32, 1-D) with counter-based U[-bound, bound).

    offsets: (S+1,) int64; arch, slot: (S,) integer; bound: (S,) float32. Returns ``out``.
    ``check_values=False`` skips the check that every segment lies inside ``out``, which reads
    the offsets on the host (a sync on a GPU): for callers that checked a host copy themselves
    (the packed engine's segment table). The compiled CPU loop checks them regardless.
    """
    _check(out, offsets, arch, slot, bound, check_values)
    b = _backend.choose("fill_uniform", out.device, backend, has_cpu=True)
    if b == "torch":
        return fill_uniform_reference(out, offsets, arch, slot, bound, seed)
    if b == "meta":
        return out
    if b == "cpu":
        from zcfast import _C

        _C.fill_uniform(out.numpy(), offsets.cpu().numpy(), arch.cpu().numpy().astype("uint32"),
                        slot.cpu().numpy().astype("uint32"), bound.cpu().numpy(), int(seed))
        return out
    dev = out.device
    offsets = offsets.to(dev, torch.int64).contiguous()
    arch32 = arch.to(dev, torch.int64).to(torch.int32).contiguous()
    slot32 = slot.to(dev, torch.int64).to(torch.int32).contiguous()
    bound = bound.to(dev, torch.float32).contiguous()
    if b == "triton":
        from zcfast.kernels.init import fill_uniform_triton

        ka, kb = stream_keys(arch32, slot32, seed)
        fill_uniform_triton(out, offsets, ka.to(torch.int32), kb.to(torch.int32), bound)
        return out
    return _fill_uniform_cuda(out, offsets, arch32, slot32, bound, seed)


def _fill_uniform_cuda(out, offsets, arch32, slot32, bound, seed: int, max_grid: int = 0):
    """csrc/cuda/init.cu on checked CUDA tensors (offsets int64, arch/slot int32 bit patterns of
    the uint32 values, bound float32, all contiguous). ``max_grid`` > 0 caps the grid (tests)."""
    from zcfast import _C

    dev = out.device
    if dev.type != "cuda":
        raise RuntimeError(f"fill_uniform: the cuda kernel needs CUDA tensors, got {dev}")
    with torch.cuda.device(dev):
        _C.cuda.fill_uniform(out.data_ptr(), out.numel(), offsets.data_ptr(), arch32.data_ptr(),
                             slot32.data_ptr(), bound.data_ptr(), arch32.numel(), int(seed),
                             torch.cuda.current_stream(dev).cuda_stream, max_grid)
    return out
