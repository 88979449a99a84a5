"""The CUDA part of zcfast._C without a GPU: it was built where nvcc exists, it reports its
kernels, the work decomposition of the kernels is sound (host replay), and every adapter and
binding turns a wrong call into a clear error instead of a crash."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

import zcfast
from zcfast import _C
from zcfast.ops import _backend
from zcfast.ops.fisher import fisher_channels
from zcfast.ops.naswot import naswot_kernel
from zcfast.ops.saliency import segment_saliency

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ("segment_saliency", "fisher_channels", "naswot_kernel", "fill_uniform",
           "segment_saliency_workspace_bytes")
needs_cuda_build = pytest.mark.skipif(not _C.WITH_CUDA, reason="zcfast._C built without nvcc")
no_device = pytest.mark.skipif(torch.cuda.is_available() or (_C.WITH_CUDA and _C.cuda.device_count() > 0),
                               reason="a CUDA device is present (these calls would really launch)")


def test_module_reports_cuda_when_nvcc_present():
    if not shutil.which("nvcc") or os.environ.get("ZCFAST_CUDA", "").upper() == "OFF":
        pytest.skip("no nvcc on PATH (or ZCFAST_CUDA=OFF): a CPU-only build is expected")
    assert _C.WITH_CUDA, "nvcc is on PATH but zcfast._C was built without CUDA"
    assert "90" in _C.CUDA_ARCHS.split(",")[0], _C.CUDA_ARCHS
    for k in KERNELS:
        assert hasattr(_C.cuda, k), k


@needs_cuda_build
def test_backend_info_lists_the_kernels():
    info = zcfast.backend_info()
    assert info["_C_with_cuda"] is True
    assert set(info["_C_cuda_kernels"]) == {"fill_uniform", "segment_saliency", "fisher_channels",
                                             "naswot_kernel"}
    assert isinstance(info["_C_cuda_devices"], int)
    if not torch.cuda.is_available():
        assert all(v["cpu"] in ("cpu", "torch") for v in info["ops"].values())


def test_host_replay_of_the_work_decomposition():
    """csrc/cuda/partition.hpp is plain C++: compile its checks with the host compiler."""
    from cuda_host.replay import compiler, run_builtin

    if not compiler():
        pytest.skip("no C++ compiler")
    r = run_builtin()
    assert r.returncode == 0, r.stderr


# ---- adapters: forced cuda backend on CPU tensors, wrong inputs ---------------------------


def _sal_inputs():
    w = torch.randn(100)
    return w, torch.randn(100), None, torch.tensor([0, 40, 40, 100])


def test_forced_cuda_on_cpu_tensors_fails_loudly(monkeypatch):
    w, g, hg, off = _sal_inputs()
    a = torch.randn(2, 4, 3, 3)
    x = torch.randn(4, 6, 5)
    for kwargs in ({"backend": "cuda"}, {}):
        if not kwargs:
            monkeypatch.setenv("ZCFAST_BACKEND", "cuda")
        with pytest.raises(RuntimeError, match="cuda"):
            segment_saliency(w, g, hg, off, **kwargs)
        with pytest.raises(RuntimeError, match="cuda"):
            fisher_channels(a, a, 2, 1.0, **kwargs)
        with pytest.raises(RuntimeError, match="cuda"):
            naswot_kernel(x, torch.tensor([0, 1, 0]), 2, torch.zeros(2, 4, 4), **kwargs)


@pytest.mark.parametrize("backend", ["cuda", "torch", None])
def test_wrong_inputs_raise_value_error_on_every_backend(backend):
    """Shape / dtype errors are found before the backend is chosen: ValueError everywhere."""
    w, g, _, off = _sal_inputs()
    with pytest.raises(ValueError, match="float32 or float64"):
        segment_saliency(w.half(), g.half(), None, off, backend=backend)
    with pytest.raises(ValueError, match="differ"):
        segment_saliency(w, g[:50], None, off, backend=backend)
    with pytest.raises(ValueError, match="share a dtype"):
        segment_saliency(w, g.double(), None, off, backend=backend)
    with pytest.raises(ValueError, match="offsets"):
        segment_saliency(w, g, None, torch.tensor([0, 50, 200]), backend=backend)
    with pytest.raises(ValueError, match="offsets"):
        segment_saliency(w, g, None, torch.tensor([0, 60, 50, 100]), backend=backend)
    with pytest.raises(ValueError, match="1-D"):
        segment_saliency(w.view(10, 10), g.view(10, 10), None, off, backend=backend)
    a = torch.randn(2, 4, 3, 3)
    with pytest.raises(ValueError, match="group_size"):
        fisher_channels(a, a, 3, 1.0, backend=backend)
    with pytest.raises(ValueError, match="differs"):
        fisher_channels(a, a[:, :2], 2, 1.0, backend=backend)
    with pytest.raises(ValueError, match="float32 or float64"):
        fisher_channels(a.half(), a.half(), 2, 1.0, backend=backend)
    x = torch.randn(4, 6, 5)
    with pytest.raises(ValueError, match="group_cand"):
        naswot_kernel(x, torch.tensor([0, 1]), 2, torch.zeros(2, 4, 4), backend=backend)
    with pytest.raises(ValueError, match="float32"):
        naswot_kernel(x, torch.tensor([0, 1, 0]), 2, torch.zeros(2, 4, 4, dtype=torch.float64),
                      backend=backend)
    with pytest.raises(ValueError, match="out must be"):
        naswot_kernel(x, torch.tensor([0, 1, 0]), 2, torch.zeros(2, 5, 5), backend=backend)


def test_unknown_forced_backend(monkeypatch):
    w, g, hg, off = _sal_inputs()
    monkeypatch.setenv("ZCFAST_BACKEND", "cudnn")
    with pytest.raises(ValueError, match="cudnn"):
        segment_saliency(w, g, hg, off)


def test_cuda_helpers_refuse_cpu_tensors():
    """The private launch helpers re-check the device: a CPU pointer never reaches a kernel."""
    if not _C.WITH_CUDA:
        pytest.skip("no CUDA build")
    from zcfast.ops.fisher import _fisher_channels_cuda
    from zcfast.ops.naswot import _naswot_kernel_cuda
    from zcfast.ops.saliency import _segment_saliency_cuda

    w, g, hg, off = _sal_inputs()
    with pytest.raises(RuntimeError, match="CUDA tensors"):
        _segment_saliency_cuda(w, g, hg, off, torch.zeros(3, 5, dtype=torch.float64), 60)
    a = torch.randn(2, 4, 9)
    with pytest.raises(RuntimeError, match="CUDA tensors"):
        _fisher_channels_cuda(a, a, torch.zeros(4, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="CUDA tensors"):
        _naswot_kernel_cuda(a, torch.arange(2), torch.tensor([0, 1, 2]), 18, torch.zeros(2, 2, 2))


# ---- bindings: validation before any launch ---------------------------------------------------


@needs_cuda_build
def test_bindings_validate_sizes_and_pointers():
    c = _C.cuda
    with pytest.raises(ValueError):
        c.segment_saliency(16, 16, 0, 16, -1, 10, 16, False, 5, 0, 0, 0)
    with pytest.raises(ValueError, match="null"):
        c.segment_saliency(0, 16, 0, 16, 3, 10, 16, False, 5, 0, 0, 0)
    with pytest.raises(ValueError, match="workspace"):  # long segments, no workspace
        c.segment_saliency(16, 16, 0, 16, 3, 10**6, 16, False, -1, 0, 0, 0)
    with pytest.raises(ValueError, match="workspace"):  # too small
        c.segment_saliency(16, 16, 0, 16, 3, 10**6, 16, False, 10**6, 256, 8, 0)
    with pytest.raises(ValueError):
        c.fisher_channels(16, 16, -1, 4, 4, 16, False, 0)
    with pytest.raises(ValueError, match="null"):
        c.fisher_channels(0, 16, 2, 4, 4, 16, False, 0)
    with pytest.raises(ValueError, match="max_grid"):
        c.fisher_channels(16, 16, 2, 4, 4, 16, False, 0, -1)
    with pytest.raises(ValueError, match="max_grid"):
        c.segment_saliency(16, 16, 0, 16, 3, 10, 16, False, 5, 0, 0, 0, 0, -1)
    # naswot_kernel(x, order, ptr, B, stride, ROW, L, K, out, is_f64, stream, split, max_clusters)
    with pytest.raises(ValueError, match="exceeds"):
        c.naswot_kernel(16, 16, 16, 129, 8, 8, 4, 2, 16, False, 0)
    with pytest.raises(ValueError, match="multiple"):
        c.naswot_kernel(16, 16, 16, 4, 10, 10, 4, 2, 16, False, 0)
    with pytest.raises(ValueError, match="split"):
        c.naswot_kernel(16, 16, 16, 4, 8, 8, 4, 2, 16, False, 0, 9)
    with pytest.raises(ValueError, match="stride"):  # samples would overlap
        c.naswot_kernel(16, 16, 16, 4, 7, 8, 4, 2, 16, False, 0)
    with pytest.raises(ValueError, match="max_clusters"):
        c.naswot_kernel(16, 16, 16, 4, 8, 8, 4, 2, 16, False, 0, 0, -1)
    with pytest.raises(ValueError, match="null"):
        c.naswot_kernel(0, 16, 16, 4, 8, 8, 4, 2, 16, False, 0)
    # fill_uniform(out, n_out, offsets, arch, slot, bound, nseg, seed, stream, max_grid)
    with pytest.raises(ValueError, match="null"):
        c.fill_uniform(0, 10, 16, 16, 16, 16, 2, 0, 0)
    with pytest.raises(ValueError, match=">= 0"):
        c.fill_uniform(16, -1, 16, 16, 16, 16, 2, 0, 0)
    # nothing to do: returns without touching the device (no launch, no memset)
    c.segment_saliency(0, 0, 0, 0, 0, 0, 0, False, 0, 0, 0, 0)
    c.fisher_channels(0, 0, 2, 0, 4, 0, False, 0)
    assert c.naswot_kernel(0, 0, 0, 0, 8, 8, 4, 2, 0, False, 0) == 0  # B = 0
    assert c.naswot_kernel(0, 0, 0, 4, 0, 0, 4, 2, 0, False, 0) == 0  # no feature
    c.fill_uniform(0, 0, 0, 0, 0, 0, 3, 0, 0)  # empty output buffer
    c.fill_uniform(0, 10, 0, 0, 0, 0, 0, 0, 0)  # no segment
    assert c.segment_saliency_workspace_bytes(3, 10**6) > 0
    with pytest.raises(ValueError):
        c.segment_saliency_workspace_bytes(-1, 10)


@needs_cuda_build
@no_device
def test_launch_without_a_device_is_a_runtime_error():
    """On a machine without a GPU (or driver) a well-formed call fails with the CUDA error's
    message; it never reaches a kernel, so the fake pointers are never dereferenced."""
    c = _C.cuda
    calls = [
        lambda: c.segment_saliency(256, 256, 0, 256, 3, 100, 256, False, 10, 0, 0, 0),
        lambda: c.segment_saliency(256, 256, 0, 256, 3, 10**6, 256, False, -1, 256, 10**7, 0),
        # empty inputs are accepted with null w / g / a / g (the launcher zero-fills `out`)
        lambda: c.segment_saliency(0, 0, 0, 0, 3, 0, 256, False, 0, 0, 0, 0),
        lambda: c.segment_saliency(0, 0, 0, 0, 3, 0, 256, False, -1, 0, 0, 0),
        lambda: c.fisher_channels(256, 256, 2, 4, 20, 256, False, 0),
        lambda: c.fisher_channels(256, 256, 0, 4, 20, 256, False, 0),
        lambda: c.fisher_channels(0, 0, 2, 4, 0, 256, False, 0),
        lambda: c.naswot_kernel(256, 256, 256, 8, 32, 32, 16, 2, 256, True, 0),
        lambda: c.naswot_kernel(256, 256, 256, 8, 48, 32, 16, 2, 256, True, 0, 2, 1),
        lambda: c.fill_uniform(256, 100, 256, 256, 256, 256, 2, 0, 0),
    ]
    for f in calls:
        with pytest.raises(RuntimeError, match="zcfast CUDA"):
            f()
    assert c.device_count() == 0


def test_cuda_is_never_chosen_automatically_for_cpu_tensors():
    for op in ("segment_saliency", "fisher_channels", "naswot_kernel", "fill_uniform"):
        assert _backend.choose(op, "cpu", has_cpu=op in ("segment_saliency", "fill_uniform")) in (
            "cpu", "torch")
