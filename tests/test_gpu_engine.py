"""The packed engine on a GPU: packed scores == per-model reference scores (docs/engine.md,
invariant 1, with the criteria of tests/engine_checks.py; the second float32 reference runs with
cuDNN off), the cuda / triton / torch backends agree, and a candidate's scores do not depend on
its batch-mates (invariant 2). Marked ``gpu``."""

from __future__ import annotations

import pytest
import torch
from engine_checks import (
    ALL,
    batch,
    check_batch_invariance,
    check_float32,
    check_float64,
    check_nan_reported,
    packed,
    relerr,
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


def test_gpu_backends_agree(cells):
    x, y = batch(b=16, device=DEV)
    base = packed(cells, x, y, torch.float32, device=DEV, backend="torch")
    for backend in (["cuda"] if _C.WITH_CUDA else []) + ["triton"]:
        got = packed(cells, x, y, torch.float32, device=DEV, backend=backend)
        for i in cells:
            for p in ALL:
                a, b = base[i][p], got[i][p]
                assert relerr(a, b) <= 2e-5 or abs(a - b) < 1e-10, (backend, nb201.arch_at(i), p, a, b)


def test_gpu_batch_invariance():
    check_batch_invariance(DEV)


def test_gpu_nan_reported_not_replaced():
    check_nan_reported(DEV)
