"""The BatchNorm used when grasp differentiates a pass twice (engine._BatchNormTrain) against
PyTorch's own F.batch_norm: values, first and second derivatives, in float64 on fresh random
ragged shapes, plus numerical checks of both derivatives (gradcheck, gradgradcheck)."""

import pytest
import torch
import torch.nn.functional as F

from zcfast.batched.engine import _BN_EPS, _bn


def _native(x):
    return F.batch_norm(x, None, None, training=True, momentum=0.0, eps=_BN_EPS)


def _hvp_pair(fn, x, w, v):
    """(y, g, Hv-type product) for L = <w, fn(x)>: g = dL/dx (with graph), then d<g, v>/dx, so
    the second differentiation runs through fn's backward as grasp's does."""
    y = fn(x)
    (g,) = torch.autograd.grad((y * w).sum(), x, create_graph=True)
    (h,) = torch.autograd.grad((g * v).sum(), x)
    return y.detach(), g.detach(), h


@pytest.mark.parametrize("shape", [(3, 5, 4, 3), (7, 2, 1, 5), (2, 3, 6, 6), (5, 4)])
def test_matches_native_to_second_order(shape):
    gen = torch.Generator().manual_seed(sum(shape))
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 3 + 1).requires_grad_()
    # a nonlinear outer function, so the gradient arriving at the BatchNorm depends on its output
    w = torch.randn(shape, generator=gen, dtype=torch.float64)
    v = torch.randn(shape, generator=gen, dtype=torch.float64)
    ref = _hvp_pair(lambda t: torch.tanh(_native(t)) * w, x, torch.ones_like(w), v)
    got = _hvp_pair(lambda t: torch.tanh(_bn(t, twice=True)) * w, x, torch.ones_like(w), v)
    for a, b, what in zip(ref, got, ("value", "gradient", "second derivative")):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-11), (what, (a - b).abs().max())


def test_numerical_derivatives():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 2, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 2, 3, generator=gen, dtype=torch.float64)
    fn = lambda t: torch.sin(_bn(t, twice=True)) * w  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_gradient_reaches_both_inputs_of_the_backward():
    """grasp needs the second derivative both through the activations (x) and through the
    gradient flowing back (gy, which depends on earlier weights): a weight before and after."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 4, 3, 3, generator=gen, dtype=torch.float64)
    w1 = torch.randn(4, 4, 1, 1, generator=gen, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(4, 4, 1, 1, generator=gen, dtype=torch.float64, requires_grad=True)

    def hg(bn):
        out = F.conv2d(torch.relu(bn(F.conv2d(x, w1))), w2)
        loss = (out ** 2).sum() + out.sum()
        g = torch.autograd.grad(loss, (w1, w2), create_graph=True)
        z = sum((gi.detach() * gi).sum() for gi in g)
        return torch.autograd.grad(z, (w1, w2))

    for a, b in zip(hg(_native), hg(lambda t: _bn(t, twice=True))):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12), (a - b).abs().max()
