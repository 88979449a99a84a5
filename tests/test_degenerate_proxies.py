"""Degenerate networks get a stated NaN or a clear error, never a crash or a silent value
(docs/proxies.md, NaN/inf policy): jacob_cov of a network whose output has no path to its input,
nwot of a network without nn.ReLU modules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from zcfast.proxies import compute_measures
from zcfast.proxies._common import DegenerateScoreWarning
from zcfast.spaces import nb201
from zcfast.spaces.nb201_model import build_model

X = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
Y = torch.zeros(6, dtype=torch.long)


class IgnoresInput(nn.Module):
    """Output from parameters only: it requires grad, but not through the input."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        return self.lin(torch.zeros_like(x))


class Constant(nn.Module):
    """No parameters, no input: the output requires no grad at all."""

    def forward(self, x):
        return torch.zeros(x.shape[0], 3)


@pytest.mark.parametrize("net", [IgnoresInput(), Constant()], ids=["params-only", "constant"])
def test_jacob_cov_without_input_path_is_nan_with_reason(net):
    with pytest.warns(DegenerateScoreWarning, match="does not depend on its input"):
        v = compute_measures(net, X, Y, ["jacob_cov"])["jacob_cov"]
    assert math.isnan(v)


def test_jacob_cov_of_the_all_none_cell():
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    net = build_model(nb201.index_of("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"), 120)
    with pytest.warns(DegenerateScoreWarning, match="jacob_cov"):
        v = compute_measures(net, x, torch.zeros(4, dtype=torch.long), ["jacob_cov"])["jacob_cov"]
    assert math.isnan(v)


class FunctionalRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


class UnusedRelu(FunctionalRelu):
    def __init__(self):
        super().__init__()
        self.act = nn.ReLU()  # registered, never called


@pytest.mark.parametrize("net, what", [(FunctionalRelu(), "no nn.ReLU module"),
                                       (UnusedRelu(), "ran in the forward pass")])
def test_nwot_without_relu_modules_raises(net, what):
    with pytest.raises(ValueError, match=what) as e:
        compute_measures(net, X, Y, ["nwot"])
    assert type(net).__name__ in str(e.value)


def test_nwot_singular_kernel_is_minus_inf_with_reason():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    same = X[:1].repeat(6, 1)
    with pytest.warns(DegenerateScoreWarning, match="singular"):
        assert compute_measures(net, same, Y, ["nwot"])["nwot"] == -math.inf
