"""Peak memory of one packed pass: how it is measured, and the model auto_chunk uses.

Measurement (``measure_peak_bytes``): the peak of the bytes held by tensors while a function
runs, above what was held when it started.
- CPU: the torch profiler's memory events (every allocation and free of the CPU allocator, with
  its size and time); their running sum in time order, maximised. This is tensor memory only,
  what ``torch.cuda.max_memory_allocated`` counts on a GPU, not the process's resident size.
- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus the bytes
  allocated at the start.

Without computing (``meta_peak_bytes``): the function runs on PyTorch's ``meta`` device, where
every operator is dispatched and every tensor has its shape and dtype but no data. Each new
tensor storage is counted when an operator creates it and uncounted when Python frees it (a
finalizer on the storage: a view shares its base's storage, and a tensor saved for backward
keeps its storage alive exactly as it would on the CPU), so the running sum is the tensor bytes
the same run would hold on a real device, without the time or the memory. It counts the
tensors operators return, not the scratch buffers a kernel allocates for itself: it is within 2%
of the CPU profiler's figure for float32 passes (tests/test_memory_model.py; the CPU's float64
convolutions add im2col buffers on top, 12% for NB201's synflow pass). It sizes a pass that
would not fit in this machine's memory, in seconds: bench/nb101_grasp_memory.py. Device-to-host copies of meta
tensors are answered as HostProbe answers them (zeros), so scores computed this way mean nothing.

Model (``peak_bytes``): a packed chunk runs its passes one after the other, so its peak is the
largest pass's. A candidate's share of a pass depends on its cell: every edge with a
convolution adds a gathered input, a ReLU output, a convolution output and a BatchNorm output
(and their gradients), a pooling edge fewer tensors, a skip edge one copy. With x_k = (1, number
of 1x1 convolutions, 3x3 convolutions, poolings, skips among the cell's six edges)::

    peak = sum_k [ (a_p . x_k) * B * s + (c_p . x_k) ] + f_p

B the batch, s = (input size / 32)^2 (activations scale with the image area), a_p the activation
bytes per sample of pass p, c_p the bytes that do not scale with the batch (weights, gradients,
their float64 copies), f_p a per-pass constant. The NASWOT codes are folded into their kernels as
the forward reaches each ReLU, so they keep nothing alive beyond the pass that reads them. Synflow
runs at batch 1 (float64): its term is (a . x_k) * s + (c . x_k) whatever B is. Without the
cells, x is the mean over the search space (every edge takes each of the 5 operations with
probability 1/5). The coefficients are fitted to CPU measurements of single cells and packed
chunks (bench/memory_model.py; results with the machine, date and git SHA in
bench/results/memory_model.md); tests/test_memory_model.py checks a fresh measurement of cells
the fit never saw against the model within 30%.

On a GPU the same tensors are saved for backward; cuDNN workspaces come on top and the float64
synflow pass avoids the CPU's im2col buffers (so the CPU figure overestimates it): the device
benchmark (bench/bench_device.py) records torch.cuda.max_memory_allocated per chunk next to the
prediction.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

FEATURES = ("1", "conv1x1", "conv3x3", "pool", "skip")
# the search space's mean cell: each of the six edges is each operation with probability 1/5
MEAN_X = np.array([1.0, 1.2, 1.2, 1.2, 1.2])

# Fitted by bench/memory_model.py (bench/results/memory_model.md: git SHA, CPU, date), bytes.
# Per pass: a (per sample at 32x32; synflow: per candidate at 32x32) and c (per candidate), each a
# vector over FEATURES, and f (per pass).
COEFFS: dict = {
    "loss": ([301976.0, 1900950.0, 1969270.0, 614172.0, 636515.0], [647692.0, 0.0, 1383980.0, 0.0, 0.0], 0),
    "loss+fisher": ([452518.0, 1870670.0, 1849620.0, 566646.0, 584817.0], [817383.0, 0.0, 1957770.0, 0.0, 0.0], 0),
    "loss+grasp": ([72743.9, 3914580.0, 4072460.0, 1350020.0, 1379880.0], [1549330.0, 340917.0, 3973250.0, 0.0, 0.0], 0),
    "loss+fisher+grasp": ([409381.0, 4018170.0, 4002910.0, 1286580.0, 1308050.0], [1583840.0, 325942.0, 4558090.0, 0.0, 0.0], 0),
    "jacobian": ([341376.0, 1906570.0, 2020160.0, 650083.0, 671014.0], [317428.0, 88246.6, 1091730.0, 0.0, 0.0], 0),
    "nwot": ([287057.0, 184690.0, 197723.0, 152137.0, 84300.0], [293801.0, 109752.0, 987754.0, 0.0, 0.0], 24841),
    "synflow": ([2292340.0, 3571950.0, 10407300.0, 0.0, 0.0], [1663120.0, 0.0, 3989140.0, 168745.0, 146434.0], 0),
    "l2": ([0.0, 0.0, 0.0, 0.0, 0.0], [307752.0, 110343.0, 970423.0, 11.6383, 7.18158], 12198.7),
}

LOSS = {"grad_norm", "snip", "plain", "fisher", "grasp"}


def features(codes) -> np.ndarray:
    """(K, 5) FEATURES of NB201 cells given as internal cell codes (see nb201.code_of)."""
    from zcfast.spaces import nb201

    ops = np.array([nb201.ops_of_code(int(c)) for c in np.atleast_1d(codes)], dtype=np.int64)
    x = np.ones((len(ops), len(FEATURES)))
    for j, op in enumerate((nb201.CONV1, nb201.CONV3, nb201.POOL, nb201.SKIP), start=1):
        x[:, j] = (ops == op).sum(1)
    return x


def passes(proxies) -> list[str]:
    """The engine's passes for ``proxies``, in the order PackedNB201.compute runs them (NASWOT
    has a forward of its own only when no gradient pass runs)."""
    want = set(proxies)
    loss, jac, nw = bool(want & LOSS), "jacob_cov" in want, "nwot" in want
    out = []
    if loss:
        out.append("loss" + ("+fisher" if "fisher" in want else "")
                   + ("+grasp" if "grasp" in want else ""))
    if jac:
        out.append("jacobian")
    if nw and not (loss or jac):
        out.append("nwot")
    if "synflow" in want:
        out.append("synflow")
    if "l2_norm" in want and not loss:
        out.append("l2")
    return out


def mean_features(codes, limit: int = 512) -> np.ndarray:
    """Mean feature vector of the cells ``codes`` (at most ``limit`` of them, evenly spaced)."""
    codes = np.atleast_1d(np.asarray(codes))
    if len(codes) > limit:
        codes = codes[np.linspace(0, len(codes) - 1, limit).astype(np.int64)]
    return features(codes).mean(0)


def pass_bytes(name: str, batch: int, input_size: int, xsum, coeffs=None) -> float:
    """Predicted peak bytes of one pass (``name`` from ``passes``) of candidates whose feature
    vectors sum to ``xsum``."""
    coeffs = COEFFS if coeffs is None else coeffs
    x = np.asarray(xsum, dtype=np.float64)
    s = (input_size / 32.0) ** 2
    a, c, f = (np.asarray(coeffs[name][0]), np.asarray(coeffs[name][1]), float(coeffs[name][2]))
    per_sample = 1.0 if name == "synflow" else float(batch)
    return float(a @ x) * per_sample * s + float(c @ x) + f


def peak_bytes(proxies, batch: int, input_size: int, k: int | None = None, codes=None, *,
               mean_x=None, coeffs=None) -> float:
    """Predicted peak bytes of one PackedNB201(candidates).compute(proxies): of the cells
    ``codes`` when given, else of ``k`` cells with mean features ``mean_x`` (default: the search
    space's mean). 0 when no pass runs."""
    if codes is not None:
        xsum = features(codes).sum(0)
    else:
        xsum = (MEAN_X if mean_x is None else np.asarray(mean_x)) * float(k)
    return max((pass_bytes(p, batch, input_size, xsum, coeffs) for p in passes(proxies)),
               default=0.0)


def bytes_per_candidate(proxies, batch: int, input_size: int, mean_x=None) -> float:
    """Predicted bytes each additional candidate adds to a chunk's peak (the slope of
    peak_bytes in k) for cells with mean features ``mean_x`` (default: the space's mean): what
    auto_chunk divides free memory by."""
    two = peak_bytes(proxies, batch, input_size, 2, mean_x=mean_x)
    one = peak_bytes(proxies, batch, input_size, 1, mean_x=mean_x)
    return max(two - one, 1.0)


def measure_peak_bytes(fn: Callable[[], object], device="cpu") -> int:
    """Peak tensor bytes allocated while ``fn()`` runs, above the bytes held at its start (see
    the module doc for how, per device)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        fn()
        torch.cuda.synchronize(dev)
        return int(torch.cuda.max_memory_allocated(dev) - base)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
              and e.device_type() == torch.autograd.DeviceType.CPU]
    events.sort(key=lambda e: e.start_ns())
    cur = peak = 0
    for e in events:
        cur += e.nbytes()
        peak = max(peak, cur)
    return int(peak)


class _MetaPeak:
    """The running and peak bytes of the meta tensor storages alive (see meta_peak_bytes)."""

    def __init__(self):
        import weakref

        self._finalize = weakref.finalize
        self.live: dict = {}
        self.cur = self.peak = 0

    def track(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        key = id(st)  # the storage's Python object lives as long as the storage
        if key in self.live:
            return
        n = st.nbytes()
        self.live[key] = n
        self.cur += n
        self.peak = max(self.peak, self.cur)
        self._finalize(st, self._free, key)

    def _free(self, key) -> None:
        self.cur -= self.live.pop(key, 0)


def meta_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes of the tensors ``fn()`` creates on the ``meta`` device and holds at once (see
    the module doc): what the same run would allocate on a real device, found without computing
    it. ``fn`` builds its tensors and models on ``device="meta"``; tensors made before the call
    are not counted. Its scores are meaningless (no data)."""
    from torch.utils._pytree import tree_flatten

    from zcfast.batched.hostprobe import HostProbe

    acc = _MetaPeak()

    class _Probe(HostProbe):
        def _dispatch(self, func, args, kwargs):
            out = super()._dispatch(func, args, kwargs)
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor) and t.device.type == "meta":
                    acc.track(t)
            return out

    with _Probe():
        fn()
    return int(acc.peak)
