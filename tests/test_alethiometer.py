"""Independent check against the PyPI package ``alethiometer`` (Apache-2.0; "modified and
simplified from foresight", the zero-cost paper's released code), an optional test dependency.

Same network, same weights (a deep copy), same batch, for the proxies both packages define:
grad_norm, snip, grasp, synflow (alethiometer's ``synflow``: BN removed; on NB201 it calls our
``get_prunable_copy``, so the reduction-block BN rule is the same) and NASWOT (alethiometer's
``nwot_relu``, the original ReLU-hook implementation; its ``nwot`` hooks conv/linear *outputs*,
a different proxy by design, not compared). alethiometer has no fisher, jacob_cov, plain, params,
flops or l2_norm.

Differences by design, tested as documented relationships below:
- alethiometer runs a non-NB201 network in the mode the caller left it in (it deep-copies it);
  zcfast always uses train mode (docs/proxies.md: BatchNorm uses batch statistics).
- ``nwot_relu`` switches the network to eval mode; zcfast's nwot runs in train mode.
- ``nwot_relu`` hooks every module whose *class name* contains 'ReLU' (the original NASWOT code's
  rule), so on NB201 each ``ReLUConvBN`` op is counted a second time next to its inner ReLU (same
  input, same codes); zcfast counts each ReLU once (docs/proxies.md, deviations).
- ``nwot_relu`` returns 0 for a singular K; zcfast returns log|det K| = -inf (never replaced).
- alethiometer sums float32 per-layer values in float32; zcfast sums over layers in float64:
  values agree to float32 rounding (rtol 1e-5).
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import math
import sys
import types

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from zcfast.proxies import compute_measures
from zcfast.proxies import measures as zm
from zcfast.spaces.nb201_model import ReLUConvBN, build_model


def _import_alethiometer():
    """alethiometer's package __init__ imports its dataset helpers, which need torchvision (not
    declared by the package, and not a zcfast dependency). The proxies themselves do not: when
    torchvision is missing, load ``alethiometer.zc_proxy`` without running the package __init__."""
    spec = importlib.util.find_spec("alethiometer")
    if spec is None:
        pytest.skip("optional test dependency alethiometer is not installed "
                    "(pip install alethiometer) - independent cross-check skipped")
    try:
        return importlib.import_module("alethiometer.zc_proxy")
    except ModuleNotFoundError as e:
        if e.name != "torchvision":
            raise
    for k in [k for k in sys.modules if k == "alethiometer" or k.startswith("alethiometer.")]:
        del sys.modules[k]
    pkg = types.ModuleType("alethiometer")
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__spec__ = spec
    sys.modules["alethiometer"] = pkg
    return importlib.import_module("alethiometer.zc_proxy")


@pytest.fixture(scope="module")
def aleth():
    return _import_alethiometer().calc_zc_metrics


SHARED = ["grad_norm", "snip", "grasp", "synflow"]
ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


def _batch(n=16, side=16, k=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, side, side, generator=g), torch.randint(0, k, (n,), generator=g)


def _run_aleth(aleth, net, x, y, names, **kw):
    # alethiometer mutates the network it is given (adds get_prunable_copy, calls .train()):
    # give it a deep copy, never the caller's object
    loader = DataLoader(TensorDataset(x, y), batch_size=len(x))
    return aleth(names, copy.deepcopy(net), loader, torch.device("cpu"), **kw)


def _conv_net(bn: bool):
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 8, 3, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(8))
    layers += [nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.ReLU(),
               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)]
    return nn.Sequential(*layers)


@pytest.mark.parametrize("bn", [False, True])
def test_conv_net_same_values(aleth, bn):
    net = _conv_net(bn).train()
    x, y = _batch()
    theirs = _run_aleth(aleth, net, x, y, SHARED + ["nwot_relu"])
    ours = compute_measures(net, x, y, SHARED + ["nwot"])
    for p in SHARED:
        assert ours[p] == pytest.approx(theirs[p], rel=1e-5), p
    if not bn:  # without BN, eval mode (theirs) and train mode (ours) are the same function
        assert ours["nwot"] == pytest.approx(theirs["nwot_relu"], rel=1e-5)


def test_nb201_same_values(aleth):
    net = build_model(ARCH, 10, seed=0)
    x, y = _batch(n=6, side=8)  # small: NB201 accepts any side divisible by 4
    theirs = _run_aleth(aleth, net, x, y, SHARED)
    ours = compute_measures(net, x, y, SHARED)
    for p in SHARED:
        assert ours[p] == pytest.approx(theirs[p], rel=1e-5), p
    assert ours["synflow"] > 1e20  # the float64 path is exercised


def test_eval_mode_network_documented_difference(aleth):
    # alethiometer keeps the caller's (eval) mode for a generic network: its grad_norm is our
    # grad_norm of an eval-mode copy, while zcfast's value is the train-mode one
    net = _conv_net(bn=True)
    x, y = _batch()
    with torch.no_grad():  # non-trivial running statistics
        net(x * 2 + 1)
    net.eval()
    theirs = _run_aleth(aleth, net, x, y, ["grad_norm", "snip"])
    for p, fn in (("grad_norm", zm.grad_norm), ("snip", zm.snip)):
        ours_eval = fn(copy.deepcopy(net).eval(), x, y, nn.functional.cross_entropy)
        assert theirs[p] == pytest.approx(ours_eval, rel=1e-5), p
        ours = compute_measures(net, x, y, [p])[p]
        assert abs(ours - theirs[p]) > 1e-3 * abs(ours), p  # train mode differs


def _double_count_relu_conv_bn(net):
    """The original NASWOT rule ('ReLU' in the class name) also hooks each ReLUConvBN op, whose
    input is its inner ReLU's input: reproduce it with an extra (idempotent) ReLU in front."""
    for m in net.modules():
        if isinstance(m, ReLUConvBN):
            m[0] = nn.Sequential(nn.ReLU(), nn.ReLU())  # relu(relu(x)) = relu(x); codes 1[x>0] twice
    return net


def test_nb201_naswot_documented_relationship(aleth):
    net = build_model(ARCH, 10, seed=0)
    x, y = _batch(n=10, side=8)
    theirs = _run_aleth(aleth, net, x, y, ["nwot_relu"])["nwot_relu"]
    # eval mode + the ReLUConvBN double count reproduce alethiometer's value
    twin = _double_count_relu_conv_bn(copy.deepcopy(net)).eval()
    assert zm.nwot(twin, x, y, None) == pytest.approx(theirs, rel=1e-5)
    # zcfast's own value (each ReLU once, train mode) is a different number
    ours = compute_measures(net, x, y, ["nwot"])["nwot"]
    assert math.isfinite(ours) and abs(ours - theirs) > 1.0


def test_singular_naswot_kernel(aleth):
    net = _conv_net(bn=False)
    x, y = _batch(n=6)
    x = x[:1].repeat(6, 1, 1, 1)  # identical samples: K has rank 1
    assert compute_measures(net, x, y, ["nwot"])["nwot"] == -math.inf
    assert _run_aleth(aleth, net, x, y, ["nwot_relu"])["nwot_relu"] == 0  # alethiometer's choice
