"""Backend choice for the fused ops, in one place.

Backends: ``cuda`` (kernels compiled into ``zcfast._C`` from csrc/cuda), ``triton`` (kernels/),
``torch`` (the one plain-PyTorch reference of each op), and for CPU tensors ``cpu`` where the
compiled core has a native loop (the weight initialiser). ``ZCFAST_BACKEND=cuda|triton|torch``
forces a backend for every op; a forced backend that cannot run fails loudly, never falls back.
"""

from __future__ import annotations

import functools
import os

BACKENDS = ("cuda", "triton", "torch", "cpu")


@functools.cache
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.cache
def cuda_kernels_built() -> bool:
    from zcfast import _C

    return bool(_C.WITH_CUDA)


def cuda_op_available(op: str) -> bool:
    if not cuda_kernels_built():
        return False
    from zcfast import _C

    return hasattr(_C.cuda, op)


def forced_backend() -> str | None:
    b = os.environ.get("ZCFAST_BACKEND", "").strip().lower()
    if not b:
        return None
    if b not in ("cuda", "triton", "torch"):
        raise ValueError(f"ZCFAST_BACKEND={b!r}: expected cuda, triton or torch")
    return b


def choose(op: str, device, backend: str | None = None, *, has_cpu: bool = False) -> str:
    """Backend for ``op`` on ``device``: explicit argument > ZCFAST_BACKEND > automatic.

    Automatic: CUDA tensors -> cuda kernel if built, else triton, else torch; CPU tensors ->
    the native ``cpu`` loop where one exists, else torch (Triton runs on CPU tensors only
    under TRITON_INTERPRET=1, which is for tests, so it is never picked automatically there);
    ``meta`` tensors (host-cost measurements, zcfast/batched/hostprobe.py) -> ``meta``: the op's
    checks run and an output of the right shape comes back, as with a kernel launch.
    """
    import torch

    dev = torch.device(device)
    explicit = backend if backend is not None else forced_backend()
    if explicit is not None:
        explicit = explicit.lower()
        if explicit not in BACKENDS:
            raise ValueError(f"unknown backend {explicit!r} for {op}: expected one of {BACKENDS}")
        if explicit == "cuda":
            if dev.type != "cuda":
                raise RuntimeError(f"backend 'cuda' requested for {op} but the tensors are on {dev}")
            if not cuda_op_available(op):
                raise RuntimeError(
                    f"backend 'cuda' requested for {op} but zcfast._C was built without "
                    "CUDA kernels (rebuild with nvcc present, ZCFAST_CUDA=ON)"
                )
        elif explicit == "triton":
            if not triton_available():
                raise RuntimeError(f"backend 'triton' requested for {op} but triton is not installed")
            if dev.type != "cuda" and not triton_interpreted():
                raise RuntimeError(
                    f"backend 'triton' requested for {op} on {dev}: Triton runs CPU tensors "
                    "only under TRITON_INTERPRET=1"
                )
        elif explicit == "cpu" and (dev.type != "cpu" or not has_cpu):
            raise RuntimeError(f"backend 'cpu' is not available for {op} on {dev}")
        return explicit
    if dev.type == "meta":
        return "meta"
    if dev.type == "cuda":
        if cuda_op_available(op):
            return "cuda"
        if triton_available():
            return "triton"
        return "torch"
    return "cpu" if has_cpu else "torch"
