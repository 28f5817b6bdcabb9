"""Hand-written gradients for the engine's own tests: deliberately wrong ones and correct but awkward ones.

Every function is written against the array-API namespace of its inputs, so the same case runs
on NumPy, array-api-strict and CuPy, and on gradverify's mpmath arrays for the truth.
Inputs are built on the host with NumPy and moved to the backend under test.
"""

from dataclasses import dataclass, field

import numpy as np
from array_api_compat import array_namespace


@dataclass
class Case:
    name: str
    fn: object
    vjp: object
    inputs: object  # rng -> tuple of host float64 arrays (ints allowed)
    expect: str = "analytic"  # for bugs: "analytic" or the structural failure kind
    options: dict = field(default_factory=dict)

    def arrays(self, xp, rng):
        return tuple(xp.asarray(a) for a in self.inputs(rng))


def _ns(*xs):
    return array_namespace(*xs)


def _normal(*shape):
    return lambda rng: (rng.standard_normal(shape),)


# -- building blocks (correct) ------------------------------------------------------------


def tanh(x):
    return _ns(x).tanh(x)


def sigmoid(x):
    xp = _ns(x)
    return 1.0 / (1.0 + xp.exp(-x))


def linear(x, w, b):
    return x @ w + b


def softmax(x):
    xp = _ns(x)
    z = x - xp.max(x, axis=-1, keepdims=True)
    e = xp.exp(z)
    return e / xp.sum(e, axis=-1, keepdims=True)


def log_softmax(x):
    xp = _ns(x)
    z = x - xp.max(x, axis=-1, keepdims=True)
    return z - xp.log(xp.sum(xp.exp(z), axis=-1, keepdims=True))


def softmax_vjp(v, x):
    xp = _ns(x)
    s = softmax(x)
    return (s * (v - xp.sum(v * s, axis=-1, keepdims=True)),)


def cross_entropy_mean(x, onehot):
    xp = _ns(x)
    return -xp.sum(onehot * log_softmax(x)) / x.shape[0]


def standardize(x):
    xp = _ns(x)
    mu = xp.mean(x, axis=0, keepdims=True)
    var = xp.mean((x - mu) ** 2, axis=0, keepdims=True)
    return (x - mu) / xp.sqrt(var + 1e-5)


def standardize_vjp(v, x):
    xp = _ns(x)
    n = x.shape[0]
    mu = xp.mean(x, axis=0, keepdims=True)
    var = xp.mean((x - mu) ** 2, axis=0, keepdims=True)
    inv = 1.0 / xp.sqrt(var + 1e-5)
    xhat = (x - mu) * inv
    dx = inv / n * (n * v - xp.sum(v, axis=0, keepdims=True) - xhat * xp.sum(v * xhat, axis=0, keepdims=True))
    return (dx,)


def _linear_inputs(batch, n_in, n_out):
    def make(rng):
        return rng.standard_normal((batch, n_in)), rng.standard_normal((n_in, n_out)), rng.standard_normal(n_out)

    return make


def _onehot_inputs(rng, batch=4, classes=5, scale=1.0):
    labels = rng.integers(0, classes, size=batch)
    onehot = np.zeros((batch, classes))
    onehot[np.arange(batch), labels] = 1.0
    return rng.standard_normal((batch, classes)) * scale, onehot


def _ce_vjp(scale_by_batch):
    def vjp(v, x, onehot):
        d = softmax(x) - onehot
        if scale_by_batch:
            d = d / x.shape[0]
        return v * d, None

    return vjp


# -- deliberately wrong gradients ---------------------------------------------------------


def _batch1_bug_vjp(v, x, w, b):
    dx, dw, db = v @ w.T, x.T @ v, _ns(x).sum(v, axis=0)
    if x.shape[0] == 1:  # the bug: a "squeeze" path taken only for a single example
        dw = dw * 2.0
    return dx, dw, db


def _leaky_wrong_negative_vjp(v, x):
    xp = _ns(x)
    return (v * xp.where(x > 0, xp.ones_like(x), 0.1),)  # forward uses slope 0.01


def _relu(x):
    return _ns(x).maximum(x, 0.0)


def _leaky(x):
    xp = _ns(x)
    return xp.where(x > 0, x, 0.01 * x)


def _float32_backward(v, x, w, b):
    xp = _ns(x)
    v32, x32, w32 = (xp.astype(a, xp.float32) for a in (v, x, w))
    dx, dw, db = v32 @ w32.T, x32.T @ v32, xp.sum(v32, axis=0)
    return tuple(xp.astype(g, xp.float64) for g in (dx, dw, db))


def _max_spread_vjp(v, x):
    xp = _ns(x)
    return (xp.broadcast_to(v[..., None] / x.shape[-1], x.shape),)


def _batchnorm_no_mean_term(v, x):
    xp = _ns(x)
    mu = xp.mean(x, axis=0, keepdims=True)
    var = xp.mean((x - mu) ** 2, axis=0, keepdims=True)
    inv = 1.0 / xp.sqrt(var + 1e-5)
    xhat = (x - mu) * inv
    return (inv * (v - xhat * xp.mean(v * xhat, axis=0, keepdims=True)),)


def _mutating_vjp(v, x):
    x *= 2.0  # doubles the caller's array in place; the returned value is right
    return (v * x,)


class _Noisy:
    """A vjp that draws from a generator it never reseeds."""

    def __init__(self):
        self.rng = np.random.default_rng(0)

    def __call__(self, v, x):
        xp = _ns(x)
        noise = xp.asarray(self.rng.standard_normal(tuple(x.shape)) * 1e-3, device=x.device)
        return (v * 2 * x + noise,)


def _softplus(x):
    xp = _ns(x)
    return xp.maximum(x, 0.0) + xp.log1p(xp.exp(-xp.abs(x)))


def _softplus_overflow_vjp(v, x):
    xp = _ns(x)
    e = xp.exp(x)  # overflows to inf at x > 709, and inf / inf is NaN
    return (v * e / (1.0 + e),)


BUGS = [
    Case("tanh: sign error", tanh, lambda v, x: (-v * (1 - _ns(x).tanh(x) ** 2),), _normal(3, 4)),
    Case("sigmoid: missing (1 - s) factor", sigmoid, lambda v, x: (v * sigmoid(x),), _normal(3, 4)),
    Case("square: missing factor 2", lambda x: x * x, lambda v, x: (v * x,), _normal(5)),
    Case("log: 1/x^2 instead of 1/x", lambda x: _ns(x).log(x), lambda v, x: (v / (x * x),), lambda rng: (rng.uniform(0.5, 3.0, 6),)),
    Case(
        "product: gradients swapped",
        lambda x, y: x * y,
        lambda v, x, y: (v * x, v * y),
        lambda rng: (rng.standard_normal(4), rng.standard_normal(4)),
    ),
    Case(
        "division: d/dy is 1/y",
        lambda x, y: x / y,
        lambda v, x, y: (v / y, v / y),
        lambda rng: (rng.standard_normal(4), rng.uniform(1.0, 2.0, 4)),
    ),
    Case(
        "linear: db is a mean over the batch, not a sum",
        linear,
        lambda v, x, w, b: (v @ w.T, x.T @ v, _ns(x).mean(v, axis=0)),
        _linear_inputs(3, 4, 2),
    ),
    Case(
        "linear: dx uses W instead of W^T (square W)",
        linear,
        lambda v, x, w, b: (v @ w, x.T @ v, _ns(x).sum(v, axis=0)),
        _linear_inputs(2, 3, 3),
    ),
    Case(
        "linear: dW has the wrong shape (v^T x)",
        linear,
        lambda v, x, w, b: (v @ w.T, v.T @ x, _ns(x).sum(v, axis=0)),
        _linear_inputs(2, 3, 4),
        expect="gradient_shape",
    ),
    Case("linear: dW doubled only for batch size 1", linear, _batch1_bug_vjp, _linear_inputs(1, 3, 2)),
    Case("leaky ReLU: slope 0.1 instead of 0.01 for negative inputs", _leaky, _leaky_wrong_negative_vjp, lambda rng: (-rng.uniform(0.5, 2.0, 5),)),
    Case(
        "ReLU: 2.5 at 0, outside the subgradients [0, 1]",
        _relu,
        lambda v, x: (v * (_ns(x).astype(x > 0, x.dtype) + 2.5 * _ns(x).astype(x == 0, x.dtype)),),
        lambda rng: (np.array([0.0, 0.0, 1.5]),),
    ),
    Case(
        "abs: sign(x) forgotten for negative inputs",
        lambda x: _ns(x).abs(x),
        lambda v, x: (v * _ns(x).ones_like(x),),
        lambda rng: (np.array([-1.5, 0.7, -0.2, 2.0]),),
    ),
    Case("softmax: diagonal of the Jacobian only", softmax, lambda v, x: (v * softmax(x) * (1 - softmax(x)),), _normal(2, 4)),
    Case("log-softmax: gradient of softmax instead", log_softmax, softmax_vjp, _normal(2, 4)),
    Case("logsumexp: exp(x) unnormalized", lambda x: _ns(x).log(_ns(x).sum(_ns(x).exp(x))), lambda v, x: (v * _ns(x).exp(x),), _normal(5)),
    Case(
        "cross-entropy (mean): gradient not divided by the batch size",
        cross_entropy_mean,
        _ce_vjp(scale_by_batch=False),
        _onehot_inputs,
        options={"wrt": (0,)},
    ),
    Case(
        "MSE: (t - y) instead of (y - t)",
        lambda y, t: _ns(y).sum((y - t) ** 2),
        lambda v, y, t: (v * 2 * (t - y), None),
        lambda rng: (rng.standard_normal(5), rng.standard_normal(5)),
        options={"wrt": (0,)},
    ),
    Case(
        "bias broadcast: row 0 of v instead of the sum over rows",
        lambda x, b: x + b,
        lambda v, x, b: (v, v[0, ...]),
        lambda rng: (rng.standard_normal((3, 4)), rng.standard_normal(4)),
    ),
    Case("max: gradient spread evenly instead of to the argmax", lambda x: _ns(x).max(x, axis=-1), _max_spread_vjp, _normal(3, 4)),
    Case("batch norm: the mean's dependence on x dropped", standardize, _batchnorm_no_mean_term, _normal(4, 3)),
    Case("linear: backward computed in float32", linear, _float32_backward, _linear_inputs(8, 32, 4)),
    Case("exp: off by a relative 1e-5", lambda x: _ns(x).exp(x), lambda v, x: (v * _ns(x).exp(x) * (1 + 1e-5),), _normal(4)),
    Case(
        "linear: a bias gradient that ignores the cotangent",
        linear,
        lambda v, x, w, b: (v @ w.T, x.T @ v, _ns(x).sum(v, axis=0) + 1.0),
        _linear_inputs(2, 3, 2),
        expect="ignores_cotangent",
    ),
    Case(
        "square: float32 gradient for a float64 input",
        lambda x: x * x,
        lambda v, x: (_ns(x).astype(2 * v * x, _ns(x).float32),),
        _normal(4),
        expect="gradient_dtype",
    ),
    Case("square: a vjp that is not deterministic", lambda x: x * x, _Noisy(), _normal(4), expect="vjp_nondeterministic"),
    Case(
        "softplus: exp overflow makes the gradient NaN",
        _softplus,
        _softplus_overflow_vjp,
        lambda rng: (np.array([-3.0, 0.5, 800.0]),),
        expect="nonfinite_gradient",
    ),
    Case("square: a vjp that scales its input in place", lambda x: x * x, _mutating_vjp, _normal(4), expect="vjp_mutates_input"),
    Case("square: returns a bare array", lambda x: x * x, lambda v, x: 2 * v * x, _normal(3), expect="vjp_arity"),
]


# -- correct but awkward gradients (must pass) ------------------------------------------


def _max_first_argmax_vjp(v, x):
    """Routes the cotangent to the first maximum (ties broken by position)."""
    xp = _ns(x)
    idx = xp.argmax(x, axis=-1)
    cols = xp.arange(x.shape[-1])
    return (xp.where(cols == idx[:, None], v[:, None], 0.0 * v[:, None]),)


def _max_shared_vjp(v, x):
    """Splits the cotangent evenly among tied maxima."""
    xp = _ns(x)
    hit = x == xp.max(x, axis=-1, keepdims=True)
    hit = xp.astype(hit, x.dtype)
    return (hit * v[:, None] / xp.sum(hit, axis=-1, keepdims=True),)


AWKWARD = [
    Case("ReLU at exactly 0 and -0 (subgradient 0)", _relu, lambda v, x: (v * _ns(x).astype(x > 0, x.dtype),), lambda rng: (np.array([0.0, -0.0, 1.5, -2.0, 0.0]),)),
    Case("ReLU at 0 with subgradient 1", _relu, lambda v, x: (v * _ns(x).astype(x >= 0, x.dtype),), lambda rng: (np.array([0.0, 0.3, -0.3]),)),
    Case("ReLU at 0 with subgradient 1/2", _relu, lambda v, x: (v * (_ns(x).astype(x > 0, x.dtype) + 0.5 * _ns(x).astype(x == 0, x.dtype)),), lambda rng: (np.array([0.0, 2.0, -1.0]),)),
    Case("|x| at 0", lambda x: _ns(x).abs(x), lambda v, x: (v * _ns(x).sign(x),), lambda rng: (np.array([0.0, -1.0, 2.5, 0.0]),)),
    Case("leaky ReLU at 0", _leaky, lambda v, x: (v * _ns(x).where(x > 0, _ns(x).ones_like(x), 0.01),), lambda rng: (np.array([0.0, -0.5, 0.5]),)),
    Case("max with ties (first argmax)", lambda x: _ns(x).max(x, axis=-1), _max_first_argmax_vjp, lambda rng: (np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [0.0, -1.0, 5.0]]),)),
    Case("max with ties (shared)", lambda x: _ns(x).max(x, axis=-1), _max_shared_vjp, lambda rng: (np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]),)),
    Case("softmax of large logits", softmax, softmax_vjp, lambda rng: (np.array([[1000.0, 0.0, -1000.0], [500.0, 499.0, 498.0]]),)),
    Case("log-softmax of large logits", log_softmax, lambda v, x: (v - softmax(x) * _ns(x).sum(v, axis=-1, keepdims=True),), lambda rng: (np.array([[800.0, -800.0, 0.0, 1.0]]),)),
    Case(
        "cross-entropy (mean) with large logits",
        cross_entropy_mean,
        _ce_vjp(scale_by_batch=True),
        lambda rng: _onehot_inputs(rng, scale=300.0),
        options={"wrt": (0,)},
    ),
    Case("sigmoid in its saturated tails", sigmoid, lambda v, x: (v * sigmoid(x) * (1 - sigmoid(x)),), lambda rng: (np.array([-40.0, -30.0, 0.0, 30.0, 38.0]),)),
    Case("standardization of a near-constant batch", standardize, standardize_vjp, lambda rng: (1.0 + 1e-3 * rng.standard_normal((4, 3)),)),
    Case("square at exactly 0", lambda x: x * x, lambda v, x: (2 * v * x,), lambda rng: (np.array([0.0, 0.0, 1e-200, -3.0]),)),
    Case("sqrt near the edge of its domain", lambda x: _ns(x).sqrt(x), lambda v, x: (v * 0.5 / _ns(x).sqrt(x),), lambda rng: (np.array([1e-10, 4.0, 0.25]),)),
    Case("linear layer, batch size 1", linear, lambda v, x, w, b: (v @ w.T, x.T @ v, _ns(x).sum(v, axis=0)), _linear_inputs(1, 4, 3)),
    Case("a polynomial at a subnormal element", lambda x: x * x + 3.0 * x, lambda v, x: (v * (2.0 * x + 3.0),), lambda rng: (np.array([1.7436e-320, 0.5, -2.0]),)),
    Case("tanh of mixed scales", tanh, lambda v, x: (v * (1 - _ns(x).tanh(x) ** 2),), lambda rng: (np.array([1e-8, -3.0, 20.0, 0.5]),)),
]
