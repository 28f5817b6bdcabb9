"""Gradient checks of each layer, on inputs Hypothesis generates (NumPy and array-api-strict)."""

from hypothesis import given, settings, strategies as st

from gradverify.strategies import make_strategies
from two_layer_net.layers import affine_backward, affine_forward, relu_backward, relu_forward, softmax_loss

# Small inputs and a few examples each: every example is a full gradient check, with a
# high-precision truth, on each backend.
FAST = settings(max_examples=10, deadline=None)
SMALL = st.integers(1, 3)


@FAST
@given(data=st.data())
def test_affine_backward(xp, gradcheck, data):
    s = make_strategies(xp)
    n, d, m = data.draw(SMALL), data.draw(SMALL), data.draw(SMALL)
    x, w, b = data.draw(s.arrays((n, d))), data.draw(s.arrays((d, m))), data.draw(s.arrays((m,)))
    gradcheck.layer(affine_forward, affine_backward, x, w, b)


def relu_vjp(dout, cache):
    return (relu_backward(dout, cache),)


@FAST
@given(data=st.data())
def test_relu_backward_away_from_zero(xp, gradcheck, data):
    s = make_strategies(xp)
    x = data.draw(s.away_from_kinks(s.shapes(max_side=3), kinks=(0.0,)))
    gradcheck.layer(relu_forward, relu_vjp, x)


@FAST
@given(data=st.data())
def test_relu_backward_at_zero_is_a_subgradient(xp, gradcheck, data):
    s = make_strategies(xp)
    x = data.draw(s.on_kinks(s.shapes(max_side=3), kinks=(0.0,)))
    gradcheck.layer(relu_forward, relu_vjp, x)


def softmax_loss_value(scores, y):
    return softmax_loss(scores, y)[0]


def softmax_loss_gradient(scores, y):
    return softmax_loss(scores, y)[1], None  # no gradient for the integer labels


@FAST
@given(data=st.data())
def test_softmax_loss_gradient(xp, gradcheck, data):
    scores, y = data.draw(make_strategies(xp).classification(batch=SMALL, classes=st.integers(2, 4)))
    # The labels are an input too (not differentiated), so that the high-precision truth
    # sees them as host arrays on every backend.
    gradcheck.grad(softmax_loss_value, softmax_loss_gradient, scores, y, wrt=(0,), name="softmax_loss")
