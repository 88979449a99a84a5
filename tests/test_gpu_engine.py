"""The packed engine on a GPU: packed scores == per-model reference scores (DESIGN.md invariant 1,
with the criteria of tests/test_batched.py), the cuda / triton / torch backends agree, and a
candidate's scores do not depend on its batch-mates (invariant 2). Marked ``gpu``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zcfast import _C
from zcfast.batched import iter_packed
from zcfast.data import image_source
from zcfast.proxies import compute_measures
from zcfast.spaces import nb201
from zcfast.spaces.nb201_model import build_model

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

ALL = ["grad_norm", "snip", "plain", "grasp", "fisher", "jacob_cov", "synflow", "nwot",
       "params", "flops", "l2_norm"]
SPECIAL = [  # tests/test_batched.py's special cells
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|none~0|+|none~0|nor_conv_3x3~1|+|none~0|nor_conv_1x1~1|avg_pool_3x3~2|",
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|none~2|",
    "|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
]
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
    rnd = [nb201.arch_at(int(i)) for i in nb201.sample(3, seed=11)]
    return [nb201.index_of(a) for a in SPECIAL + rnd]


def _batch(b=8, seed=3):
    x, y = image_source("ImageNet16-120").minibatch(b, seed)
    return x.to(DEV), y.to(DEV)


def _relerr(a, b):
    if (math.isnan(a) and math.isnan(b)) or a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def _packed(idx, x, y, dtype, names=ALL, backend=None, chunk=None):
    out = {}
    for part, res in iter_packed(idx, names, x, y, ncls=120, seed=0, chunk=chunk or len(idx),
                                 dtype=dtype, device=DEV, backend=backend):
        for k, i in enumerate(part):
            out[i] = {p: float(res[p][k]) for p in names}
    return out


def test_gpu_uses_the_cuda_kernels():
    if not _C.WITH_CUDA:
        pytest.skip("zcfast._C built without nvcc: the engine runs the Triton kernels")
    from zcfast.ops import _backend

    assert _backend.choose("segment_saliency", DEV) == "cuda"


def test_gpu_equivalence_float64(cells):
    x, y = _batch()
    packed = _packed(cells, x, y, torch.float64)
    for i in cells:
        net = build_model(i, 120, seed=0, dtype=torch.float64)
        ref = compute_measures(net, x.double(), y, ALL, device=DEV)
        for p in ALL:
            assert _relerr(ref[p], packed[i][p]) <= 1e-9 or abs(ref[p] - packed[i][p]) < 1e-12, (
                nb201.arch_at(i), p, ref[p], packed[i][p])


def test_gpu_equivalence_float32(cells):
    """tests/test_batched.py's criterion: <= 1e-4 where float32 resolves the value (the
    reference's own float32 result within 1e-5 of its float64 result), synflow <= 1e-9."""
    x, y = _batch()
    packed = _packed(cells, x, y, torch.float32)
    strict = 0
    for i in cells:
        ref32 = compute_measures(build_model(i, 120, seed=0), x, y, ALL, device=DEV)
        ref64 = None
        for p in ALL:
            e = _relerr(ref32[p], packed[i][p])
            if p == "synflow":
                assert e <= 1e-9, (nb201.arch_at(i), p, ref32[p], packed[i][p])
                continue
            if e <= 1e-4 or abs(ref32[p] - packed[i][p]) < 1e-10:
                strict += 1
                continue
            if ref64 is None:
                ref64 = compute_measures(build_model(i, 120, seed=0, dtype=torch.float64),
                                         x.double(), y, ALL, device=DEV)
            own = _relerr(ref32[p], ref64[p])
            assert own > 1e-5, ("well-conditioned but packed float32 differs",
                                nb201.arch_at(i), p, ref32[p], packed[i][p], ref64[p])
    assert strict >= 0.9 * len(cells) * (len(ALL) - 1)


def test_gpu_backends_agree(cells):
    x, y = _batch(b=16)
    base = _packed(cells, x, y, torch.float32, backend="torch")
    for backend in (["cuda"] if _C.WITH_CUDA else []) + ["triton"]:
        got = _packed(cells, x, y, torch.float32, backend=backend)
        for i in cells:
            for p in ALL:
                a, b = base[i][p], got[i][p]
                assert _relerr(a, b) <= 2e-5 or abs(a - b) < 1e-10, (backend, nb201.arch_at(i), p, a, b)


def test_gpu_batch_invariance():
    x, y = _batch(b=4)
    target = nb201.index_of(SPECIAL[-1])
    mates = [int(i) for i in nb201.sample(70, seed=5) if int(i) != target]
    cheap = ["synflow", "snip", "grad_norm", "fisher", "jacob_cov", "nwot", "params", "flops"]
    results = []
    for k in (1, 7, 64):
        idx = mates[: k - 1] + [target] if k > 1 else [target]
        (_, res), = list(iter_packed(idx, cheap, x, y, ncls=120, seed=0, chunk=k, device=DEV))
        results.append({p: float(res[p][-1]) for p in cheap})
    for p in cheap:
        for r in results[1:]:
            assert _relerr(results[0][p], r[p]) <= 2e-5, (p, results[0][p], r[p])


def test_gpu_nan_reported_not_replaced():
    x, y = _batch(b=4)
    (_, res), = list(iter_packed([nb201.index_of(SPECIAL[0])], ["jacob_cov", "nwot"], x, y,
                                 ncls=120, device=DEV))
    assert np.isnan(res["jacob_cov"][0])
    assert res["nwot"][0] == -np.inf
