"""Reduced precision of the packed engine (docs/performance.md): ``precision='bf16'`` runs the
float32 passes' convolutions in bfloat16 (autocast), keeps synflow in float64 bit for bit, and
stays close to fp32 on the well-resolved proxies; bad values are rejected by name.

The bf16 check can fail: ``test_bf16_convolutions_are_bf16`` counts convolutions dispatched
with bfloat16 inputs (none under fp32; a precision option that is not wired to the forward
passes shows none under bf16 either, and fails).
"""

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from zcfast.batched.engine import PackedNB201
from zcfast.spaces import nb201

CELLS = [nb201.code_of_index(i) for i in (17, 9999, 12345)]
PROX = ["grad_norm", "snip", "fisher", "jacob_cov", "nwot", "synflow"]


def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, 16, 16, generator=g), torch.randint(0, 10, (4,), generator=g)


class ConvDtypes(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (torch.ops.aten.convolution.default, torch.ops.aten.convolution_backward.default):
            self.seen.append(args[0].dtype)
        return func(*args, **(kwargs or {}))


def run(precision, proxies=PROX):
    x, y = batch()
    return PackedNB201(CELLS, 10, input_size=16, precision=precision).compute(x, y, proxies)


@pytest.fixture(scope="module")
def both():
    return run("fp32"), run("bf16")


def test_synflow_unchanged(both):
    fp32, bf16 = both
    assert np.array_equal(fp32["synflow"], bf16["synflow"])


def test_bf16_close_on_well_resolved_proxies(both):
    fp32, bf16 = both
    for p in ("grad_norm", "snip", "nwot"):
        np.testing.assert_allclose(bf16[p], fp32[p], rtol=0.1, err_msg=p)
    assert not np.array_equal(bf16["grad_norm"], fp32["grad_norm"])  # it did run in bf16


@pytest.mark.parametrize("precision,expect", [("fp32", False), ("bf16", True)])
def test_bf16_convolutions_are_bf16(precision, expect):
    with ConvDtypes() as spy:
        run(precision, ["grad_norm"])
    assert (torch.bfloat16 in spy.seen) is expect


def test_bad_precision():
    with pytest.raises(ValueError, match="fp16"):
        PackedNB201(CELLS, 10, precision="fp16")
    with pytest.raises(ValueError, match="tf32.*cpu"):
        PackedNB201(CELLS, 10, precision="tf32")
    with pytest.raises(ValueError, match="float32"):
        PackedNB201(CELLS, 10, precision="bf16", dtype=torch.float64)


def test_score_file_records_and_checks_precision(tmp_path):
    from zcfast.scoring import score_to_file

    out = tmp_path / "s.csv"
    kw = dict(archs=[17, 9999], proxies="grad_norm", batch_size=4, device="cpu", progress=False)
    res = score_to_file(out, precision="bf16", **kw)
    assert res["meta"]["precision"] == "bf16"
    with pytest.raises(ValueError, match="precision"):  # resumed in another precision
        score_to_file(out, resume=True, **kw)
    with pytest.raises(ValueError, match="tf32.*cpu"):  # refused before any file is made
        score_to_file(tmp_path / "t.csv", precision="tf32", **kw)
    assert not (tmp_path / "t.csv").exists()
    with pytest.raises(ValueError, match="packed engine"):
        score_to_file(tmp_path / "u.csv", precision="bf16", engine="loop", **kw)
