"""Public fused ops: validation + dispatch to cuda | triton | torch (see ``_backend``).

Each op has exactly one plain-PyTorch reference (``<op>_reference``) that tests, benchmarks and
the CPU fallback share.
"""

from __future__ import annotations

from zcfast.ops import _backend

FUSED_OPS = ("fill_uniform", "segment_saliency", "fisher_channels", "naswot_kernel")
_HAS_CPU = {"fill_uniform", "segment_saliency"}


def backend_info() -> dict:
    """Versions, CUDA support of ``zcfast._C``, and the backend each fused op will use."""
    import platform

    import torch

    from zcfast import _C, __version__

    info = {
        "zcfast": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "triton": None,
        "triton_interpret": _backend.triton_interpreted(),
        "_C_with_cuda": bool(_C.WITH_CUDA),
        "_C_cuda_archs": _C.CUDA_ARCHS,
        "forced_backend": _backend.forced_backend(),
    }
    if _backend.triton_available():
        import triton

        info["triton"] = triton.__version__
    if _C.WITH_CUDA:
        # kernels compiled into the module (whether or not this machine has a GPU to run them)
        info["_C_cuda_kernels"] = [op for op in FUSED_OPS if hasattr(_C.cuda, op)]
        try:
            info["_C_cuda_runtime"] = _C.cuda.runtime_version()
        except RuntimeError as e:  # e.g. no driver on this machine: report, don't fail
            info["_C_cuda_runtime"] = f"unavailable: {e}"
        info["_C_cuda_devices"] = _C.cuda.device_count()
    else:
        info["_C_cuda_kernels"] = []
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    ops = {}
    for op in FUSED_OPS:
        ops[op] = {}
        for d in devices:
            try:
                ops[op][d] = _backend.choose(op, d, has_cpu=op in _HAS_CPU)
            except Exception as e:  # a forced backend that cannot run here
                ops[op][d] = f"unavailable: {e}"
    info["ops"] = ops
    return info
