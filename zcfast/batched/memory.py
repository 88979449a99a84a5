"""Peak memory of one packed pass: how it is measured, and the model auto_chunk uses.

Measurement (``measure_peak_bytes``): the peak of the bytes held by tensors while a function
runs, above what was held when it started.
- CPU: the torch profiler's memory events (every allocation and free of the CPU allocator, with
  its size and time); their running sum in time order, maximised. This is tensor memory only,
  what ``torch.cuda.max_memory_allocated`` counts on a GPU, not the process's resident size.
- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus the bytes
  allocated at the start.

Model (``peak_bytes``): a packed chunk of K candidates runs its passes one after the other, so
its peak is the largest pass's, plus the NASWOT inputs kept from an earlier pass::

    peak(K) = K * max_p [ a_p * B * s + c_p  (+ r * B * s after the NASWOT inputs are taken) ] + f

with B the batch, s = (input size / 32)^2 (activations scale with the image area), a_p the
activation bytes per sample of pass p, c_p the bytes that do not scale with the batch (weights,
gradients), f a per-pass constant, and r the bytes per sample of the retained pre-ReLU tensors
(NASWOT codes are read from the first forward that runs, then kept until the end). Synflow runs
at batch 1 in float64, so its term is a * s + c whatever B is. The coefficients are fitted to
CPU measurements of random NB201 cells (bench/memory_model.py, results with the machine, date
and git SHA in bench/results/memory_model.md); tests/test_memory_model.py checks a fresh
measurement against the model within 30%.

On a GPU the same tensors are saved for backward; cuDNN workspaces come on top and the float64
synflow pass avoids the CPU's im2col buffers (so the CPU figure overestimates it): the device
benchmark (bench/bench_device.py) records torch.cuda.max_memory_allocated per chunk next to the
prediction.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# Fitted by bench/memory_model.py to CPU measurements (bench/results/memory_model.md), bytes:
# pass: (a = per sample per candidate at 32x32 (synflow: per candidate at 32x32),
#        c = per candidate, f = per pass)
COEFFS = {
    "loss": (7.31501e+06, 3.03229e+06, 1.3256e+06),
    "loss+fisher": (7.1284e+06, 3.24314e+06, 4.58625e+06),
    "loss+grasp": (1.40625e+07, 6.24615e+06, 1.13239e+07),
    "loss+fisher+grasp": (1.44868e+07, 7.6536e+06, 1.09307e+07),
    "jacobian": (7.43429e+06, 2.90822e+06, 0),
    "nwot": (2.38341e+06, 1.61358e+06, 2.94507e+06),
    "synflow": (2.07677e+07, 5.37405e+06, 1.98547e+07),
    "l2": (0, 1.10915e+06, 3.26286e+06),
}
# r: bytes per sample per candidate at 32x32 that the NASWOT inputs collected during a gradient
# pass keep alive beyond what that pass holds anyway (they are views of its activations)
RETAINED_NWOT = 861246

LOSS = {"grad_norm", "snip", "plain", "fisher", "grasp"}


def passes(proxies) -> list[str]:
    """The engine's passes for ``proxies``, in the order PackedNB201.compute runs them. A pass
    that runs while the NASWOT inputs are kept ends in ``+nwot`` when a gradient pass collected
    them (they cost r per sample) and in ``+nwot_fwd`` when the NASWOT-only forward did (then
    they are all that forward allocated: its activation term a)."""
    want = set(proxies)
    loss, jac, nw = bool(want & LOSS), "jacob_cov" in want, "nwot" in want
    keep = "+nwot" if nw and (loss or jac) else ""
    out = []
    if loss:
        out.append("loss" + ("+fisher" if "fisher" in want else "")
                   + ("+grasp" if "grasp" in want else "") + keep)
    if jac:
        out.append("jacobian" + keep)
    if nw and not (loss or jac):
        out.append("nwot")
        keep = "+nwot_fwd"
    if "synflow" in want:
        out.append("synflow" + keep)
    if "l2_norm" in want and not loss:
        out.append("l2" + keep)
    return out


def pass_bytes(name: str, batch: int, input_size: int, k: int = 1, coeffs=None,
               retained: float | None = None) -> float:
    """Predicted peak bytes of one pass of ``k`` candidates (see the module doc)."""
    coeffs = COEFFS if coeffs is None else coeffs
    retained = RETAINED_NWOT if retained is None else retained
    s = (input_size / 32.0) ** 2
    base, _, keep = name.partition("+nwot")
    a, c, f = coeffs[base]
    per = a * s + c if base == "synflow" else a * batch * s + c
    if keep == "_fwd":  # everything the NASWOT-only forward allocated per sample is kept
        per += coeffs["nwot"][0] * batch * s
    elif name.endswith("+nwot"):
        per += retained * batch * s
    return k * per + f


def peak_bytes(proxies, batch: int, input_size: int, k: int, coeffs=None,
               retained: float | None = None) -> float:
    """Predicted peak bytes of one PackedNB201(k candidates).compute(proxies) (0: no pass)."""
    ps = passes(proxies)
    return max((pass_bytes(p, batch, input_size, k, coeffs, retained) for p in ps), default=0.0)


def bytes_per_candidate(proxies, batch: int, input_size: int) -> float:
    """Predicted bytes each additional candidate adds to a chunk's peak (the slope of
    peak_bytes in k), the quantity auto_chunk divides free memory by."""
    return max(peak_bytes(proxies, batch, input_size, 2) - peak_bytes(proxies, batch, input_size, 1),
               1.0)


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
