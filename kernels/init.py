"""Triton kernel: counter-based weight initialisation of a segmented flat buffer.

One program per segment walks it in BLOCK_SIZE chunks; element i of segment s gets
``(mix32(mix32(i ^ ka[s]) ^ kb[s]) >> 8) * 2^-23 - 1`` times ``bound[s]`` (csrc/hash.hpp).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _mix32(x):
    x = x ^ (x >> 16)
    x = x * 0x7FEB352D
    x = x ^ (x >> 15)
    x = x * 0x846CA68B
    return x ^ (x >> 16)


@triton.jit
def _fill_uniform_kernel(out_ptr, off_ptr, ka_ptr, kb_ptr, bound_ptr, BLOCK_SIZE: tl.constexpr):
    s = tl.program_id(0)
    begin = tl.load(off_ptr + s)
    end = tl.load(off_ptr + s + 1)
    ka = tl.load(ka_ptr + s).to(tl.uint32)
    kb = tl.load(kb_ptr + s).to(tl.uint32)
    b = tl.load(bound_ptr + s)
    n = end - begin
    for start in range(0, n, BLOCK_SIZE):
        i = start + tl.arange(0, BLOCK_SIZE)
        h = _mix32(_mix32(i.to(tl.uint32) ^ ka) ^ kb)
        u = (h >> 8).to(tl.float32) * (1.0 / 8388608.0) - 1.0
        tl.store(out_ptr + begin + i, u * b, mask=i < n)


def fill_uniform_triton(out, offsets, ka, kb, bound, block_size: int = 1024):
    """out: (N,) float32; offsets (S+1,) int64; ka, kb (S,) int32 stream keys; bound (S,) f32."""
    nseg = ka.numel()
    if nseg == 0:
        return out
    _fill_uniform_kernel[(nseg,)](out, offsets, ka, kb, bound, BLOCK_SIZE=block_size)
    return out
