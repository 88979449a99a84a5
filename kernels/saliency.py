"""Triton kernel: segmented saliency reduction (see zcfast/ops/saliency.py for the math).

One program per segment streams its slice of w, g (and hg) once, keeping five per-lane
accumulators; lanes are combined in float64 at the end. float32 inputs accumulate per lane in
float32 (a lane sees len/BLOCK_SIZE terms, a few dozen for NB201 layers), float64 inputs in
float64.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _segment_saliency_kernel(w_ptr, g_ptr, hg_ptr, off_ptr, out_ptr,
                             HAS_HG: tl.constexpr, IS_F64: tl.constexpr,
                             BLOCK_SIZE: tl.constexpr):
    s = tl.program_id(0)
    begin = tl.load(off_ptr + s)
    end = tl.load(off_ptr + s + 1)
    if IS_F64:
        acc_t = tl.float64
    else:
        acc_t = tl.float32
    a_abs = tl.zeros([BLOCK_SIZE], dtype=acc_t)
    a_wg = tl.zeros([BLOCK_SIZE], dtype=acc_t)
    a_gg = tl.zeros([BLOCK_SIZE], dtype=acc_t)
    a_wh = tl.zeros([BLOCK_SIZE], dtype=acc_t)
    a_ww = tl.zeros([BLOCK_SIZE], dtype=acc_t)
    for start in range(begin, end, BLOCK_SIZE):
        idx = start + tl.arange(0, BLOCK_SIZE)
        m = idx < end
        w = tl.load(w_ptr + idx, mask=m, other=0.0).to(acc_t)
        g = tl.load(g_ptr + idx, mask=m, other=0.0).to(acc_t)
        wg = w * g
        a_abs += tl.abs(wg)
        a_wg += wg
        a_gg += g * g
        a_ww += w * w
        if HAS_HG:
            h = tl.load(hg_ptr + idx, mask=m, other=0.0).to(acc_t)
            a_wh += w * h
    base = out_ptr + s * 5
    tl.store(base + 0, tl.sum(a_abs.to(tl.float64), axis=0))
    tl.store(base + 1, tl.sum(a_wg.to(tl.float64), axis=0))
    tl.store(base + 2, tl.sum(a_gg.to(tl.float64), axis=0))
    tl.store(base + 3, tl.sum(a_wh.to(tl.float64), axis=0))
    tl.store(base + 4, tl.sum(a_ww.to(tl.float64), axis=0))


def segment_saliency_triton(w, g, hg, offsets, out, block_size: int = 1024):
    """w, g, hg: (N,) contiguous; offsets (S+1,) int64; out (S, 5) float64, written."""
    nseg = offsets.numel() - 1
    _segment_saliency_kernel[(nseg,)](
        w, g, hg if hg is not None else w, offsets, out,
        HAS_HG=hg is not None, IS_F64=w.dtype.is_floating_point and w.element_size() == 8,
        BLOCK_SIZE=block_size,
    )
    return out
