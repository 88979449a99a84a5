"""Triton kernel: NASWOT Hamming-kernel accumulation with tl.dot on +-1 tiles (ops/naswot.py).

One program per candidate walks the channel groups it owns (CSR list) in (BLOCK_B x BLOCK_F)
tiles (sample rows STRIDE elements apart: channel slices are read in place), turns activations
into +-1 codes in registers (never materialised), accumulates S S^T with tl.dot and adds the
result to out[k]. On GPUs tl.dot on float32 uses TF32, which
represents +-1 exactly; accumulation is float32 and exact for counts < 2^24.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _naswot_kernel(x_ptr, order_ptr, ptr_ptr, out_ptr, B, STRIDE, L,
                   BLOCK_B: tl.constexpr, BLOCK_F: tl.constexpr):
    k = tl.program_id(0)
    g0 = tl.load(ptr_ptr + k)
    g1 = tl.load(ptr_ptr + k + 1)
    rb = tl.arange(0, BLOCK_B)
    rf = tl.arange(0, BLOCK_F)
    mb = rb < B
    acc = tl.zeros([BLOCK_B, BLOCK_B], dtype=tl.float32)
    for gi in range(g0, g1):
        grp = tl.load(order_ptr + gi)
        base = grp * L
        for f0 in range(0, L, BLOCK_F):
            ff = f0 + rf
            m = mb[:, None] & (ff[None, :] < L)
            v = tl.load(x_ptr + rb[:, None].to(tl.int64) * STRIDE + base + ff[None, :], mask=m, other=0.0)
            s = tl.where(m, tl.where(v > 0, 1.0, -1.0), 0.0).to(tl.float32)
            acc += tl.dot(s, tl.trans(s))
    o = out_ptr + k.to(tl.int64) * B * B + rb[:, None] * B + rb[None, :]
    mo = mb[:, None] & mb[None, :]
    prev = tl.load(o, mask=mo, other=0.0)
    tl.store(o, prev + acc, mask=mo)


def naswot_kernel_triton(xs, order, ptr, group_len: int, out, block_f: int = 64):
    """xs: (B, C, HW), each sample's (C, HW) block contiguous, samples ``xs.stride(0)`` elements
    apart (a channel slice of a packed tensor is read in place); groups of ``group_len``
    contiguous features per sample."""
    b, c, hw = xs.shape
    block_b = max(16, triton.next_power_of_2(b))
    nk = out.shape[0]
    stride = xs.stride(0) if b > 1 else c * hw
    _naswot_kernel[(nk,)](xs, order, ptr, out, b, stride, group_len,
                          BLOCK_B=block_b, BLOCK_F=block_f)
    return out
