"""Segmented saliency reduction over flat parameter / gradient buffers.

For every segment ``s`` (one weight tensor of one candidate: ``[off[s], off[s+1])`` of the flat
buffers) one pass computes, in float64::

    out[s] = ( sum |w g|,  sum w g,  sum g^2,  sum w hg,  sum w^2 )

from which the packed engine gets snip (sum of col 0), plain (col 1), grad_norm (sum over
segments of sqrt(col 2): one Frobenius norm per layer), grasp (-col 3) and l2_norm (sum of
sqrt(col 4)) per candidate (Abdelfattah et al., ICLR 2021). ``hg`` may be omitted (col 3 = 0).
"""

from __future__ import annotations

import torch

from zcfast.ops import _backend

NCOLS = 5


def _prepare(w, g, hg, offsets, max_len=None):
    """Validate and make contiguous; returns (w, g, hg, offsets, max_len), max_len the longest
    segment (0 when there is none). One device-to-host sync covers every value check; none when
    the caller gives ``max_len`` (it then vouches for the offsets, see segment_saliency)."""
    for name, t in (("w", w), ("g", g)) + ((("hg", hg),) if hg is not None else ()):
        if not isinstance(t, torch.Tensor) or t.dim() != 1:
            raise ValueError(f"segment_saliency: {name} must be a 1-D tensor, got "
                             f"{getattr(t, 'shape', type(t))}")
        if t.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"segment_saliency: {name} must be float32 or float64, got {t.dtype}")
        if t.device != w.device:
            raise ValueError(f"segment_saliency: {name} is on {t.device}, w on {w.device}")
    if g.shape != w.shape or (hg is not None and hg.shape != w.shape):
        raise ValueError(f"segment_saliency: w {tuple(w.shape)}, g {tuple(g.shape)}"
                         + (f", hg {tuple(hg.shape)}" if hg is not None else "") + " differ")
    if g.dtype != w.dtype or (hg is not None and hg.dtype != w.dtype):
        raise ValueError("segment_saliency: w, g (and hg) must share a dtype")
    if (not isinstance(offsets, torch.Tensor) or offsets.dim() != 1 or offsets.numel() < 1
            or offsets.dtype != torch.int64):
        raise ValueError("segment_saliency: offsets must be a 1-D int64 tensor of S+1 entries")
    offsets = offsets.to(w.device)
    if max_len is not None:
        if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 0:
            raise ValueError(f"segment_saliency: max_len must be a non-negative int, got {max_len!r}")
    elif offsets.numel() <= 1:
        max_len = 0
    else:
        lens = offsets[1:] - offsets[:-1]
        lo, hi, first, last = torch.stack([lens.min(), lens.max(), offsets[0], offsets[-1]]).tolist()
        if lo < 0 or first < 0 or last > w.numel():
            raise ValueError(f"segment_saliency: offsets must be non-decreasing within [0, {w.numel()}]")
        max_len = hi
    # kernels read flat memory: make inputs contiguous at the op boundary (a strided view or a
    # stride-0 broadcast gradient becomes a real buffer here)
    return (w.contiguous(), g.contiguous(), None if hg is None else hg.contiguous(),
            offsets.contiguous(), max_len)


def segment_saliency_reference(w, g, hg, offsets) -> torch.Tensor:
    """Plain-torch reference: (S, 5) float64 per-segment sums (see module doc)."""
    w, g, hg, offsets, _ = _prepare(w, g, hg, offsets)
    return _reference(w, g, hg, offsets)


def _reference(w, g, hg, offsets) -> torch.Tensor:
    nseg = offsets.numel() - 1
    out = torch.zeros((nseg, NCOLS), dtype=torch.float64, device=w.device)
    if nseg == 0:
        return out
    lens = offsets[1:] - offsets[:-1]
    a, b = int(offsets[0]), int(offsets[-1])
    seg = torch.repeat_interleave(torch.arange(nseg, device=w.device), lens)
    wd, gd = w[a:b].double(), g[a:b].double()
    # one quantity at a time keeps the float64 temporaries to one buffer each
    out[:, 0].index_add_(0, seg, (wd * gd).abs())
    out[:, 1].index_add_(0, seg, wd * gd)
    out[:, 2].index_add_(0, seg, gd * gd)
    if hg is not None:
        out[:, 3].index_add_(0, seg, wd * hg[a:b].double())
    out[:, 4].index_add_(0, seg, wd * wd)
    return out


def segment_saliency(w, g, hg, offsets, *, backend: str | None = None,
                     max_len: int | None = None) -> torch.Tensor:
    """(S, 5) float64 per-segment sums; dispatches cuda | triton | cpu | torch.

    w, g, hg: (N,) float32 or float64, one dtype, on one device (hg may be None: column 3 is
    then 0); offsets: (S+1,) int64, non-decreasing within [0, N]. Empty segments give zero rows.
    max_len: the longest segment, from a host copy of ``offsets`` that the caller has checked
    (the packed engine's segment table); without it the offsets are checked here, which reads
    them on the host (a device-to-host sync on a GPU).
    """
    # shapes and dtypes first (ValueError wherever the tensors are), then the backend
    w, g, hg, offsets, max_len = _prepare(w, g, hg, offsets, max_len)
    b = _backend.choose("segment_saliency", w.device, backend, has_cpu=True)
    if b == "torch":
        return _reference(w, g, hg, offsets)
    nseg = offsets.numel() - 1
    out = torch.zeros((nseg, NCOLS), dtype=torch.float64, device=w.device)
    if b == "meta":
        return out
    if nseg == 0 or max_len == 0:  # no segment, or only empty ones: every row is zero
        return out
    if b == "cpu":
        from zcfast import _C

        _C.cpu.segment_saliency(w.numpy(), g.numpy(), None if hg is None else hg.numpy(),
                                offsets.numpy(), out.numpy(), torch.get_num_threads())
        return out
    if b == "triton":
        from zcfast.kernels.saliency import segment_saliency_triton

        return segment_saliency_triton(w, g, hg, offsets, out)
    return _segment_saliency_cuda(w, g, hg, offsets, out, max_len)


def _segment_saliency_cuda(w, g, hg, offsets, out, max_len: int, grid_mode: int = 0,
                           max_grid: int = 0) -> torch.Tensor:
    """Launch csrc/cuda/saliency.cu on validated, contiguous CUDA tensors (see _prepare).

    ``max_len`` picks the work decomposition only (one block per segment when every segment is
    at most ``_C.cuda.SALIENCY_DIRECT_MAX`` long, else fixed-size chunks plus an ordered combine,
    which needs a scratch buffer); pass -1 to force the chunked path. The result is the same.
    ``grid_mode`` 1 launches one block per work item instead of the persistent grid (benchmarks);
    ``max_grid`` > 0 caps the number of blocks (tests: every block then walks several items).
    Every grid gives the same bits. Nothing to reduce (no segment, no element, or max_len 0):
    ``out`` is zero-filled and no kernel is launched.
    """
    from zcfast import _C

    nseg, n = offsets.numel() - 1, w.numel()
    if nseg <= 0 or n == 0 or max_len == 0:
        return out.zero_()
    if w.device.type != "cuda":
        raise RuntimeError(f"segment_saliency: the cuda kernel needs CUDA tensors, got {w.device}")
    ws, nbytes = None, 0
    if max_len < 0 or max_len > _C.cuda.SALIENCY_DIRECT_MAX:
        nbytes = _C.cuda.segment_saliency_workspace_bytes(nseg, n)
        ws = torch.empty(nbytes, dtype=torch.uint8, device=w.device)  # allocator: 512-B aligned
    with torch.cuda.device(w.device):
        _C.cuda.segment_saliency(
            w.data_ptr(), g.data_ptr(), 0 if hg is None else hg.data_ptr(), offsets.data_ptr(),
            nseg, n, out.data_ptr(), w.dtype == torch.float64, int(max_len),
            0 if ws is None else ws.data_ptr(), nbytes,
            torch.cuda.current_stream(w.device).cuda_stream, grid_mode, max_grid,
        )
    return out
