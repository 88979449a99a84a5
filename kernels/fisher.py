"""Triton kernel: per-channel fisher F_c = 0.5 * mean_b (sum_hw a*g)^2 (zcfast/ops/fisher.py).

One program per channel walks (BLOCK_B x BLOCK_HW) tiles of the (B, C, HW) activation and
gradient, sums a*g over space per sample, squares and accumulates over the batch.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _fisher_channels_kernel(a_ptr, g_ptr, out_ptr, B, C, HW,
                            IS_F64: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_HW: tl.constexpr):
    c = tl.program_id(0)
    if IS_F64:
        acc_t = tl.float64
    else:
        acc_t = tl.float32
    total = tl.zeros([BLOCK_B], dtype=tl.float64)
    rb = tl.arange(0, BLOCK_B)
    rh = tl.arange(0, BLOCK_HW)
    for b0 in range(0, B, BLOCK_B):
        bb = b0 + rb
        mb = bb < B
        row = (bb.to(tl.int64) * C + c) * HW
        acc = tl.zeros([BLOCK_B, BLOCK_HW], dtype=acc_t)
        for h0 in range(0, HW, BLOCK_HW):
            hh = h0 + rh
            m = mb[:, None] & (hh[None, :] < HW)
            off = row[:, None] + hh[None, :]
            a = tl.load(a_ptr + off, mask=m, other=0.0).to(acc_t)
            g = tl.load(g_ptr + off, mask=m, other=0.0).to(acc_t)
            acc += a * g
        s = tl.sum(acc, axis=1).to(tl.float64)
        total += s * s
    tl.store(out_ptr + c, 0.5 * tl.sum(total, axis=0) / B)


def fisher_channels_triton(a, g, out, block_b: int = 16, block_hw: int = 256):
    """a, g: (B, C, HW) contiguous; out: (C,) float64 per-channel F_c (written)."""
    b, c, hw = a.shape
    block_hw = min(block_hw, max(16, triton.next_power_of_2(hw)))
    _fisher_channels_kernel[(c,)](a, g, out, b, c, hw, IS_F64=a.element_size() == 8,
                                  BLOCK_B=block_b, BLOCK_HW=block_hw)
    return out
