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


# -- issue 9: verdicts on code written the way real code is written ------------------------
#
# NumPy only (they use NumPy's own idioms on purpose): scratch buffers, casts, float
# constants in np.minimum/np.clip, a float32 buffer, noise, jumps, kinks along directions,
# realistic sizes. REAL_CORRECT must pass, or be honestly inconclusive, never blamed;
# REAL_BUGS must fail with blame "analytic"; NEVER_PASS must fail, whatever the blame
# (a function that is not differentiable where it is checked has no gradient to verify).


def _scratch_square_times_x(x):
    out = np.zeros(x.shape)  # a float64 scratch buffer: the truth cannot ride through it
    for i in range(x.size):
        out[i] = x[i] ** 2
    return out * x


def _cast_inside(x):
    return np.asarray(x, dtype=float) ** 3 * x.astype(float) + np.array(x, dtype=np.float64)


def _elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))


def _elu_vjp(v, x):
    return (v * np.where(x > 0, 1.0, np.exp(np.minimum(x, 0.0))),)


def _float32_buffer(x):
    buf = np.zeros(x.shape, dtype=np.float32)
    buf[:] = x  # quantizes x to float32
    return buf.astype(np.float64) * x


def _tanh_into_float32(x):
    out = np.empty(x.shape, dtype=np.float32)
    for i in range(x.size):
        out[i] = np.tanh(x[i])  # each value rounded to float32
    return out.astype(np.float64)


def _hinge_scores():
    # Scores whose float64 margin s_j - s_y + 1 is exactly 0 for j = 1 (0.1 + 0.2 - 0.3 + 1
    # - 1 style rounding), while the exact margin of the stored values is not.
    w = np.array([[0.1, 0.7, -0.4], [0.3, -1.2, 0.5]])
    x = np.array([1.0, 1.0])
    s = x @ w
    w = w.copy()
    w[0, 1] += (s[0] - 1.0) - s[1]  # now x @ w gives s_1 == s_0 - 1 in float64
    return x, w


def _svm_loss(w, x=None, y=0):
    s = x @ w
    margins = np.maximum(0.0, s - s[y] + 1.0)
    margins[y] = 0.0
    return np.sum(margins)


def _svm_vjp(v, w, x=None, y=0):
    s = x @ w
    margins = s - s[y] + 1.0
    mask = (margins > 0).astype(float)  # the textbook subgradient: 0 at a zero margin
    mask[y] = 0.0
    mask[y] = -np.sum(mask)
    return (v * np.outer(x, mask),)


def _noisy_tanh(x):
    return np.tanh(x) + 1e-3 * np.sin(1e9 * x)


def _tanh_vjp(v, x):
    return (v * (1 - np.tanh(x) ** 2),)


def _relu_planted_zeros(rng):
    x = rng.standard_normal((8, 16))
    x[rng.random(x.shape) < 0.3] = 0.0
    return (x,)


def _ce_mean(logits, labels):
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -np.mean(logp[np.arange(labels.size), labels])


def _ce_mean_vjp(v, logits, labels):
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(labels.size), labels] -= 1.0
    return (v * p / labels.size, None)


def _ce_inputs(n, c):
    return lambda rng: (rng.standard_normal((n, c)), rng.integers(0, c, size=n))


def _batchnorm_train(x, gamma, beta):
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    xhat = (x - mu) / np.sqrt(var + 1e-5)
    return gamma * xhat + beta


def _batchnorm_train_vjp(v, x, gamma, beta):
    n = x.shape[0]
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    inv = 1.0 / np.sqrt(var + 1e-5)
    xhat = (x - mu) * inv
    dxhat = v * gamma
    dx = inv / n * (n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))
    return dx, (v * xhat).sum(axis=0), v.sum(axis=0)


def _mlp_ce(w1, b1, w2, b2, x=None, labels=None):
    h = np.maximum(x @ w1 + b1, 0.0)
    return _ce_mean(h @ w2 + b2, labels)


def _mlp_ce_vjp(v, w1, b1, w2, b2, x=None, labels=None):
    pre = x @ w1 + b1
    h = np.maximum(pre, 0.0)
    dlogits = _ce_mean_vjp(v, h @ w2 + b2, labels)[0]
    dh = dlogits @ w2.T
    dpre = dh * (pre > 0)
    return x.T @ dpre, dpre.sum(axis=0), h.T @ dlogits, dlogits.sum(axis=0)


def _mlp_pre_instead_of_h_vjp(v, w1, b1, w2, b2, x=None, labels=None):
    dw1, db1, _, db2 = _mlp_ce_vjp(v, w1, b1, w2, b2, x=x, labels=labels)
    pre = x @ w1 + b1
    dlogits = _ce_mean_vjp(v, np.maximum(pre, 0.0) @ w2 + b2, labels)[0]
    return dw1, db1, pre.T @ dlogits, db2


def _mlp_case(name, vjp):
    rng = np.random.default_rng(3)
    x, labels = rng.standard_normal((32, 20)), rng.integers(0, 10, size=32)
    fn = lambda w1, b1, w2, b2: _mlp_ce(w1, b1, w2, b2, x=x, labels=labels)  # noqa: E731
    grads = lambda v, *p: vjp(v, *p, x=x, labels=labels)  # noqa: E731
    params = lambda rng: (0.3 * rng.standard_normal((20, 16)), 0.1 * rng.standard_normal(16), 0.3 * rng.standard_normal((16, 10)), np.zeros(10))  # noqa: E731
    return Case(name, fn, grads, params)


def _svm_case(name, vjp):
    x, w = _hinge_scores()
    return Case(name, lambda w: _svm_loss(w, x=x), lambda v, w: vjp(v, w, x=x), lambda rng: (w,))


def _pool2(x):
    return x.reshape(x.shape[0], -1, 2).max(axis=2)


def _pool2_vjp(v, x):
    windows = x.reshape(x.shape[0], -1, 2)
    first = np.argmax(windows, axis=2)  # the first maximum of each window takes the gradient
    g = np.zeros_like(windows)
    np.put_along_axis(g, first[..., None], v[..., None], axis=2)
    return (g.reshape(x.shape),)


REAL_CORRECT = [
    Case("a float64 scratch buffer filled in a loop", _scratch_square_times_x, lambda v, x: (3 * v * x**2,), lambda rng: (np.array([0.3, -1.2, 2.0]),)),
    Case("casts inside fn (np.asarray(dtype=float), astype(float), np.array(dtype=float64))", _cast_inside, lambda v, x: (v * (4 * x**3 + 1),), lambda rng: (np.array([0.3, -1.2, 2.0]),)),
    Case("np.clip at its bounds", lambda x: np.clip(x, -1.0, 1.0), lambda v, x: (v * ((x >= -1) & (x <= 1)),), lambda rng: (np.array([2.0, -3.0, 1.0]),)),
    Case("ELU through np.minimum(x, 0.0) at an exact 0", _elu, _elu_vjp, lambda rng: (np.array([0.0, -1.0, 2.0, -0.5]),)),
    Case("check_grad's wrapper around float(np.sum(x**2))", lambda x: np.asarray(float(np.sum(x**2))), lambda v, x: (2 * v * x,), lambda rng: (np.array([0.3, -1.2, 2.0]),)),
    _svm_case("SVM hinge with a float64 margin of exactly 0 (textbook subgradient)", _svm_vjp),
    Case("sum(clip(x, -1, 1)) with elements on both bounds", lambda x: np.sum(np.clip(x, -1.0, 1.0), keepdims=True), lambda v, x: (v * ((x >= -1) & (x <= 1)),), lambda rng: (np.array([1.0, -1.0, 0.3]),)),
    Case("sum(hardtanh(x)) at both bounds, open mask", lambda x: np.sum(np.clip(x, -2.0, 2.0), keepdims=True), lambda v, x: (v * ((x > -2) & (x < 2)),), lambda rng: (np.array([2.0, -2.0, 0.5, 2.0]),)),
    Case("max with a tie, the gradient to the first maximum", lambda x: np.max(x, keepdims=True), lambda v, x: (v * (np.arange(x.size) == np.argmax(x)),), lambda rng: (np.array([1.0, 1.0, 0.5]),)),
    Case("max with a tie, the gradient split between the maxima", lambda x: np.max(x, keepdims=True), lambda v, x: (v * (x == x.max()) / np.sum(x == x.max()),), lambda rng: (np.array([1.0, 0.5, 1.0]),)),
    Case("sort with ties (a stable argsort routes the cotangent)", np.sort, lambda v, x: (v[np.argsort(np.argsort(x, kind="stable"), kind="stable")],), lambda rng: (np.array([1.0, 1.0, 0.5, 2.0, 0.5]),)),
    Case("max-pool 2 over a row of zeros (first maximum of each window)", _pool2, _pool2_vjp, lambda rng: (np.zeros((2, 4)),)),
    Case("relu(x0) + min(x1, 0) at (0, 0)", lambda x: np.maximum(x[:1], 0.0) + np.minimum(x[1:], 0.0), lambda v, x: (v * np.concatenate([x[:1] > 0, x[1:] < 0]),), lambda rng: (np.array([0.0, 0.0]),)),
    Case("ReLU with planted exact zeros, directional mode", lambda x: np.maximum(x, 0.0), lambda v, x: (v * (x > 0),), _relu_planted_zeros, options={"mode": "directional"}),
    Case("ReLU with planted exact zeros, full mode", lambda x: np.maximum(x, 0.0), lambda v, x: (v * (x > 0),), _relu_planted_zeros),
    Case("tanh at 0 and 1e4 with Richardson, directional, no truth", np.tanh, _tanh_vjp, lambda rng: (np.array([0.0, 1e4]),), options={"mode": "directional", "truth": "off", "richardson": True}),
    Case("tanh at 0, 1e4 and 1e6 with Richardson, full, no truth", np.tanh, _tanh_vjp, lambda rng: (np.array([0.0, 1e4, 1e6]),), options={"truth": "off", "richardson": True}),
    Case("mean softmax cross-entropy, logits 128x100", _ce_mean, _ce_mean_vjp, _ce_inputs(128, 100)),
    Case("mean softmax cross-entropy, logits 256x1000 (directional)", _ce_mean, _ce_mean_vjp, _ce_inputs(256, 1000)),
    Case("batch norm (train) 64x32 with gamma and beta", _batchnorm_train, _batchnorm_train_vjp, lambda rng: (rng.standard_normal((64, 32)), 1 + 0.1 * rng.standard_normal(32), 0.1 * rng.standard_normal(32))),
    _mlp_case("2-layer MLP with ReLU and cross-entropy", _mlp_ce_vjp),
    Case("sum(tanh(X @ W)), W 64x64", lambda w: np.sum(np.tanh(np.linspace(-1, 1, 8 * 64).reshape(8, 64) @ w)), lambda v, w: (np.linspace(-1, 1, 8 * 64).reshape(8, 64).T @ (v * (1 - np.tanh(np.linspace(-1, 1, 8 * 64).reshape(8, 64) @ w) ** 2)),), lambda rng: (rng.standard_normal((64, 64)) / 8,)),
]

REAL_BUGS = [
    Case("a float64 scratch buffer, gradient missing a factor", _scratch_square_times_x, lambda v, x: (2 * v * x**2,), lambda rng: (np.array([0.3, -1.2, 2.0]),)),
    Case("ELU through np.minimum, slope 0.5 on the negative side", _elu, lambda v, x: (0.5 * _elu_vjp(v, x)[0],), lambda rng: (np.array([0.0, -1.0, 2.0, -0.5]),)),
    Case("floor(x) + x at integers, gradient 100", lambda x: np.floor(x) + x, lambda v, x: (100 * v,), lambda rng: (np.array([2.0, -1.0, 0.5]),)),
    Case("ReLU with planted zeros, directional, gradient 1.5 where x >= 0", lambda x: np.maximum(x, 0.0), lambda v, x: (1.5 * v * (x >= 0),), _relu_planted_zeros, options={"mode": "directional"}),
    Case("ReLU with planted zeros, directional, mask inverted", lambda x: np.maximum(x, 0.0), lambda v, x: (v * (x < 0),), _relu_planted_zeros, options={"mode": "directional"}),
    _svm_case("SVM hinge at a zero margin, gradient of the correct class left out", lambda v, w, x=None: (_svm_vjp(v, w, x=x)[0] * np.array([0.0, 1.0, 1.0]),)),
    Case("max over rows with ties, every tied element given the whole gradient (DeZero's Max)", lambda x: np.max(x, axis=1), lambda v, x: (v[:, None] * (x == x.max(axis=1, keepdims=True)),), lambda rng: (np.array([[2.0, 2.0, 2.0], [1.0, 3.0, 3.0], [0.5, -1.0, 0.0]]),)),
    Case("a clip's gradient ignored next to the upper clip (seed 1): blamed, not read as a float32 path", lambda p: -np.sum(np.log(np.clip(p, 1e-7, 1.0)), keepdims=True), lambda v, p: (-v / p,), lambda rng: (np.array([1e-9, 0.3, 1 - 1e-6]),), options={"seed": 1}),
    Case("a clip's gradient ignored next to the upper clip (seed 5): blamed, not read as a float32 path", lambda p: -np.sum(np.log(np.clip(p, 1e-7, 1.0)), keepdims=True), lambda v, p: (-v / p,), lambda rng: (np.array([1e-9, 0.3, 1 - 1e-6]),), options={"seed": 5}),
    Case("max with one tie, full mode, every tied element given v (found by explore=)", lambda x: np.max(x, keepdims=True), lambda v, x: (v * (x == x.max()),), lambda rng: (np.array([1.0, 1.0, 0.5]),), expect="tied_gradients", options={"truth": "off"}),
    Case("max-pool 2 over a row of zeros, every tied element given v", _pool2, lambda v, x: (np.repeat(v, 2, axis=1) * (x == np.repeat(_pool2(x), 2, axis=1)),), lambda rng: (np.zeros((2, 4)),), expect="tied_gradients"),
    Case("mean softmax cross-entropy 32x10, the 1/N left out", _ce_mean, lambda v, logits, labels: (_ce_mean_vjp(v, logits, labels)[0] * labels.size, None), _ce_inputs(32, 10)),
    _mlp_case("2-layer MLP, dW2 from the pre-activations instead of the ReLU output", _mlp_pre_instead_of_h_vjp),
]

REAL_BUGS += [
    Case("sum(x**2) + 1e6: gradient off by a relative 1e-5 (a large constant in the loss)", lambda x: np.sum(x**2, keepdims=True) + 1e6, lambda v, x: (2 * (1 + 1e-5) * v * x,), _normal(6)),
    Case("sum(x**2) + 1e6, directional: gradient off by a relative 1e-5", lambda x: np.sum(x**2, keepdims=True) + 1e6, lambda v, x: (2 * (1 + 1e-5) * v * x,), _normal(6), options={"mode": "directional"}),
]

NEVER_PASS = [
    Case("tanh plus deterministic noise, gradient doubled", _noisy_tanh, lambda v, x: (2 * _tanh_vjp(v, x)[0],), _normal(5)),
    Case("tanh plus deterministic noise, gradient all zeros", _noisy_tanh, lambda v, x: (0 * v,), _normal(5)),
    Case("a float32 buffer inside fn", _float32_buffer, lambda v, x: (2 * v * x,), lambda rng: (np.array([0.3, -1.2, 2.0]),)),
    Case("tanh written element by element into a float32 buffer", _tanh_into_float32, _tanh_vjp, lambda rng: (np.array([0.3, -1.2, 2.0]),)),
]
