"""The packed engine on a GPU: packed scores == per-model reference scores (docs/engine.md,
invariant 1, with the criteria of tests/engine_checks.py; the second float32 reference runs with
cuDNN off), the cuda / triton / torch backends agree, and a candidate's scores do not depend on
its batch-mates (invariant 2). Marked ``gpu``."""

from __future__ import annotations

import pytest
import torch
from engine_checks import (
    ALL,
    NCLS,
    batch,
    check_batch_invariance,
    check_float32,
    check_float64,
    check_nan_reported,
)
from engine_checks import cells as _cells

from zcfast import _C
from zcfast.spaces import nb201

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
DEV = "cuda"


@pytest.fixture(autouse=True)
def exact_float32():
    """TF32 off: cuDNN convolutions would otherwise round their inputs to 10-bit mantissas and
    no float32 comparison at 1e-4 could hold (for either path)."""
    old = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


@pytest.fixture(scope="module")
def cells():
    return _cells(3)


def test_gpu_uses_the_cuda_kernels():
    if not _C.WITH_CUDA:
        pytest.skip("zcfast._C built without nvcc: the engine runs the Triton kernels")
    from zcfast.ops import _backend

    assert _backend.choose("segment_saliency", DEV) == "cuda"


def test_gpu_equivalence_float64(cells):
    check_float64(cells, DEV)


def test_gpu_equivalence_float32(cells):
    check_float32(cells, DEV)


def test_gpu_backends_agree(cells, monkeypatch):
    """torch, cuda and triton backends: jacob_cov, nwot, params and flops equal; every other
    proxy within the bound derived from the two backends' float32 / float64 summation error,
    per candidate (tests/backend_bounds.py states the derivation). The Triton saliency kernel
    sums float32 per lane, so plain and grasp, whose terms cancel, may differ by more than any
    fixed relative tolerance; the bound scales with the magnitudes summed instead."""
    from backend_bounds import derived_bounds, run_backends, violations

    x, y = batch(b=16, device=DEV)
    backends = ["torch"] + (["cuda"] if _C.WITH_CUDA else []) + ["triton"]
    scores, rec = run_backends(monkeypatch, cells, x, y, ALL, backends, ncls=NCLS, device=DEV)
    for backend in backends[1:]:
        bounds = derived_bounds(rec, len(cells), backends=("torch", backend))
        bad = violations(scores["torch"], scores[backend], bounds, cells)
        assert not bad, (backend, [(nb201.arch_at(c), *rest) for c, *rest in bad])


def test_gpu_batch_invariance():
    check_batch_invariance(DEV)


def test_gpu_nan_reported_not_replaced():
    check_nan_reported(DEV)
