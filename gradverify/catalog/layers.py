"""Layers: each ``*_forward(...) -> (out, cache)`` with its ``*_backward(dout, cache) -> grads``.

Every function takes its array namespace from its inputs (NumPy, CuPy, array-api-strict, or
gradverify's mpmath arrays for the truth), or from ``xp=`` when given.
"""

import numpy as np
from hypothesis import strategies as st

from gradverify._backend import namespace_of, to_numpy
from gradverify.catalog import Example, Op, register
from gradverify.strategies import float_arrays, shapes


def linear_forward(x, w, b, /, *, xp=None):
    """Affine layer ``x @ w + b``.

    Parameters
    ----------
    x : array (n, d)
        A batch of n inputs of d features.
    w : array (d, m)
    b : array (m,)

    Notes
    -----
    Leading batch axes are mapped through (``x`` (B, n, d), ``w`` (B, d, m), ``b`` (B, m)).
    The gradients are ``dx = dout w^T``, ``dw = x^T dout`` and ``db = sum_n dout``.
    """
    out = x @ w + b[..., None, :]
    return out, (x, w)


def linear_backward(dout, cache, *, xp=None):
    x, w = cache
    xp = xp or namespace_of(x, w)
    return dout @ xp.matrix_transpose(w), xp.matrix_transpose(x) @ dout, xp.sum(dout, axis=-2)


def sigmoid_forward(x, /, *, xp=None):
    """Logistic sigmoid ``1 / (1 + exp(-x))``, without overflow for large ``|x|``.

    Notes
    -----
    With ``e = exp(-|x|)`` (never above 1) the value is ``1 / (1 + e)`` for ``x >= 0`` and
    ``e / (1 + e)`` below. The derivative is ``s (1 - s)``.
    """
    xp = xp or namespace_of(x)
    e = xp.exp(-xp.abs(x))
    s = xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return s, s


def sigmoid_backward(dout, s, *, xp=None):
    return (dout * s * (1.0 - s),)


def tanh_forward(x, /, *, xp=None):
    """Hyperbolic tangent; the derivative is ``1 - tanh(x)^2``."""
    xp = xp or namespace_of(x)
    y = xp.tanh(x)
    return y, y


def tanh_backward(dout, y, *, xp=None):
    return (dout * (1.0 - y * y),)


def relu_forward(x, /, *, xp=None):
    """``max(x, 0)``. At ``x = 0`` the backward uses the subgradient 0."""
    xp = xp or namespace_of(x)
    return xp.maximum(x, 0.0), x


def relu_backward(dout, x, *, xp=None):
    xp = xp or namespace_of(x)
    return (dout * xp.astype(x > 0, dout.dtype),)


def leaky_relu_forward(x, /, *, slope=0.01, xp=None):
    """``x`` for ``x > 0``, ``slope * x`` otherwise; subgradient ``slope`` at 0."""
    xp = xp or namespace_of(x)
    return xp.where(x > 0, x, slope * x), (x, slope)


def leaky_relu_backward(dout, cache, *, xp=None):
    x, slope = cache
    xp = xp or namespace_of(x)
    return (xp.where(x > 0, dout, slope * dout),)


def softmax_forward(x, /, *, axis=-1, xp=None):
    """Softmax along ``axis``, computed from ``x - max(x)`` so that no exponential overflows.

    Notes
    -----
    The vector-Jacobian product is ``s * (dout - sum(dout * s, axis))``.
    """
    xp = xp or namespace_of(x)
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    s = e / xp.sum(e, axis=axis, keepdims=True)
    return s, (s, axis)


def softmax_backward(dout, cache, *, xp=None):
    s, axis = cache
    xp = xp or namespace_of(s)
    return (s * (dout - xp.sum(dout * s, axis=axis, keepdims=True)),)


def log_softmax_forward(x, /, *, axis=-1, xp=None):
    """``x - logsumexp(x)`` along ``axis``, with the maximum taken out first.

    Notes
    -----
    The vector-Jacobian product is ``dout - softmax(x) * sum(dout, axis)``.
    """
    xp = xp or namespace_of(x)
    z = x - xp.max(x, axis=axis, keepdims=True)
    out = z - xp.log(xp.sum(xp.exp(z), axis=axis, keepdims=True))
    return out, (out, axis)


def log_softmax_backward(dout, cache, *, xp=None):
    out, axis = cache
    xp = xp or namespace_of(out)
    return (dout - xp.exp(out) * xp.sum(dout, axis=axis, keepdims=True),)


# -- example strategies ------------------------------------------------------------------


def _elementwise_examples(**params):
    return st.builds(lambda x: Example((x,), dict(params)), float_arrays(shapes(max_dims=3)))


@st.composite
def _linear_examples(draw):
    n, d, m = draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 4))
    return Example((draw(float_arrays((n, d))), draw(float_arrays((d, m))), draw(float_arrays((m,)))))


@st.composite
def _leaky_examples(draw):
    slope = draw(st.sampled_from([0.01, 0.1, 0.2]))
    return Example((draw(float_arrays(shapes(max_dims=3))),), {"slope": slope})


@st.composite
def _logit_examples(draw):
    x = draw(float_arrays(shapes(min_dims=1, max_dims=2, max_side=6), scale=draw(st.sampled_from([1.0, 10.0, 300.0]))))
    return Example((x,), {"axis": -1})


def _softmax_properties(example, xp):
    """Rows sum to 1 and are unchanged by a shift of the logits."""
    (x,) = example.inputs
    s, _ = softmax_forward(xp.asarray(x), **example.params)
    shifted, _ = softmax_forward(xp.asarray(x + 7.25), **example.params)
    s, shifted = np.asarray(to_numpy(s)), np.asarray(to_numpy(shifted))
    assert np.allclose(s.sum(axis=-1), 1.0, rtol=0, atol=1e-12), f"softmax rows sum to {s.sum(axis=-1)}"
    assert np.allclose(s, shifted, rtol=1e-9, atol=1e-300), "softmax changed under a shift of the logits by 7.25"


register(Op("linear", "layer", linear_forward, linear_backward, _linear_examples, "affine layer x @ W + b", batched=True, reference="linear"))
register(Op("sigmoid", "layer", sigmoid_forward, sigmoid_backward, _elementwise_examples, "logistic sigmoid", batched=True, reference="sigmoid"))
register(Op("tanh", "layer", tanh_forward, tanh_backward, _elementwise_examples, "hyperbolic tangent", batched=True, reference="tanh"))
register(Op("relu", "layer", relu_forward, relu_backward, _elementwise_examples, "rectified linear unit", kinks=("x = 0",), batched=True, reference="relu"))
register(Op("leaky_relu", "layer", leaky_relu_forward, leaky_relu_backward, _leaky_examples, "leaky ReLU with slope a", kinks=("x = 0",), batched=True, reference="leaky_relu"))
register(Op("softmax", "layer", softmax_forward, softmax_backward, _logit_examples, "softmax along the last axis", batched=True, reference="softmax", properties=_softmax_properties))
register(Op("log_softmax", "layer", log_softmax_forward, log_softmax_backward, _logit_examples, "log-softmax along the last axis", batched=True, reference="log_softmax"))
