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


@pytest.mark.parametrize("constant_channel", [False, True])
def test_value_and_first_gradient_are_native_bit_for_bit(constant_channel):
    """The forward and the first backward are PyTorch's kernels: equal bits in float32, also on a
    channel of one constant value (degenerate cells, where BatchNorm divides by sqrt(eps))."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(6, 4, 5, 3, generator=gen)
    if constant_channel:
        x[:, 2] = 0.3
    w = torch.randn(6, 4, 5, 3, generator=gen)
    out = []
    for fn in (_native, lambda t: _bn(t, twice=True)):
        xx = x.clone().requires_grad_()
        y = fn(xx)
        (g,) = torch.autograd.grad((torch.tanh(y) * w).sum(), xx, create_graph=True)
        out.append((y.detach(), g.detach()))
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])


def _dropped(term):
    """A copy of _BatchNormTrainBackward.backward's formula with one term removed."""
    from zcfast.batched import engine as E

    def backward(ctx, v):
        gy, x, mean, invstd = ctx.saved_tensors
        dims = [0] + list(range(2, x.dim()))
        r = E._per_channel(invstd, x)
        y = (x - E._per_channel(mean, x)) * r
        m = lambda t: t.mean(dim=dims, keepdim=True)  # noqa: E731
        a, b, c, d, e = m(v), m(v * y), m(gy), m(gy * y), m(v * gy)
        ggy = (v - a - (0 if term == "yb" else y * b)) * r
        s = e - (0 if term == "ac" else a * c) - (2.0 if term == "3bd" else 3.0) * b * d
        ggx = (y * s + (v - a) * d + (0 if term == "gyb" else (gy - c) * b)) * (-(r * r))
        return ggy, ggx, None, None
    return backward


@pytest.mark.parametrize("term", ["none", "yb", "ac", "3bd", "gyb"])
def test_checks_fail_on_a_wrong_second_derivative(monkeypatch, term):
    """The copy with nothing dropped passes (so the copy is the formula); each dropped term, or
    2 in place of 3, fails the second-order check."""
    from zcfast.batched import engine as E

    monkeypatch.setattr(E._BatchNormTrainBackward, "backward",
                        staticmethod(torch.autograd.function.once_differentiable(_dropped(term))))
    if term == "none":
        test_matches_native_to_second_order((3, 5, 4, 3))
        return
    with pytest.raises(AssertionError):
        test_matches_native_to_second_order((3, 5, 4, 3))
