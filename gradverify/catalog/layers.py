"""Layers: each ``*_forward(...) -> (out, cache)`` with its ``*_backward(dout, cache) -> grads``.

Every function takes its array namespace from its inputs (NumPy, CuPy, array-api-strict, or
gradverify's mpmath arrays for the truth), or from ``xp=`` when given.
"""

import array_api_compat.numpy as np_xp
import numpy as np
from hypothesis import strategies as st

from gradverify import _highprec
from gradverify._backend import device_of, namespace_of, to_numpy
from gradverify._errors import InvalidArgument
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


MAXOUT_TIES = ("split", "first")


def maxout_forward(x, w, b, /, *, ties="split", xp=None):
    """Maxout: the largest of ``k`` affine pieces, elementwise.

    Parameters
    ----------
    x : array (n, d)
        A batch of n inputs of d features.
    w : array (k, d, m)
        The weights of the k pieces.
    b : array (k, m)
        The biases of the k pieces.
    ties : {"split", "first"}
        Where the backward sends the upstream gradient when pieces tie (see Notes).

    Returns
    -------
    out : array (n, m)
        ``out[i, c] = max_j (x @ w[j] + b[j])[i, c]``.

    Notes
    -----
    With ``z[j] = x @ w[j] + b[j]`` (shape (k, n, m)) and ``r[j]`` the share of the upstream
    gradient routed to piece j (1 for the single winner, 0 for the others),
    ``dz[j] = r[j] dout``, ``dx = sum_j dz[j] @ w[j]^T``, ``dw[j] = x^T @ dz[j]`` and
    ``db[j] = sum_n dz[j]``.

    Where pieces tie (``z[i] == z[j]`` at the maximum, e.g. a duplicated piece) the output
    is not differentiable in the pieces' parameters, and any convex combination of the
    tied pieces is a (Clarke) subgradient. ``ties="split"`` (the default, TensorFlow's rule
    for ``reduce_max``) shares the gradient equally among the tied pieces: at a two-way tie
    this is the midpoint of the one-sided derivatives along every single parameter, so it
    is the one rule that an elementwise one-sided check accepts for every cotangent.
    ``ties="first"`` routes all of it to the first winner (lowest index, ``argmax``'s and
    PyTorch's rule); it is a valid subgradient too, but along one parameter of a piece tied
    over several rows it can lie outside the one-sided derivatives when the cotangent has
    mixed signs (the function of that parameter is then not convex).

    Leading batch axes are mapped through (``x`` (B, n, d), ``w`` (B, k, d, m), ``b`` (B, k, m)).
    """
    if ties not in MAXOUT_TIES:
        raise InvalidArgument(f"ties={ties!r}; choose from {MAXOUT_TIES}")
    xp = xp or namespace_of(x, w, b)
    z = x[..., None, :, :] @ w + b[..., :, None, :]
    out = xp.max(z, axis=-3)
    return out, (x, w, z, out, ties)


def maxout_backward(dout, cache, *, xp=None):
    x, w, z, out, ties = cache
    xp = xp or namespace_of(x, w, z)
    if ties == "first":
        pieces = xp.arange(z.shape[-3], device=device_of(z))[:, None, None]
        share = xp.astype(xp.argmax(z, axis=-3)[..., None, :, :] == pieces, dout.dtype)
    else:
        winners = xp.astype(z == out[..., None, :, :], dout.dtype)
        share = winners / xp.sum(winners, axis=-3, keepdims=True)
    dz = share * dout[..., None, :, :]
    dx = xp.sum(dz @ xp.matrix_transpose(w), axis=-3)
    dw = xp.matrix_transpose(x)[..., None, :, :] @ dz
    db = xp.sum(dz, axis=-2)
    return dx, dw, db


def _check_eps(eps):
    if not (isinstance(eps, (int, float)) and eps > 0):
        raise InvalidArgument(f"eps={eps!r} must be a positive number: it keeps sqrt(var + eps) away from 0")


def _batch_center(x, xp):
    """The batch mean over axis -2 (kept) and ``x`` minus it, computed from shifted data.

    Subtracting the first row first is exact for a (near-)constant column (Sterbenz), so
    the centered values keep their relative accuracy there instead of carrying the
    rounding of a mean of large, almost equal numbers (``x - mean(x)`` at ``x ~ 2`` with a
    spread of 1e-12 would otherwise be off by ~1e-4 relative).
    """
    shift = x[..., :1, :]
    d = x - shift
    mean_d = xp.sum(d, axis=-2, keepdims=True) / x.shape[-2]
    return shift + mean_d, d - mean_d


def batchnorm_train_forward(x, gamma, beta, /, *, eps=1e-5, xp=None):
    """Batch normalization in training mode: statistics of the batch itself.

    Parameters
    ----------
    x : array (n, d)
        A batch of n examples of d features; the statistics are taken over axis 0.
    gamma, beta : array (d,)
        The learnable scale and shift.
    eps : float
        Added to the variance inside the square root (a part of the definition, not a fudge).

    Returns
    -------
    out : array (n, d)
        ``gamma * (x - mu) / sqrt(var + eps) + beta``.

    Notes
    -----
    ``mu = mean_n x`` and ``var = mean_n (x - mu)^2`` is the biased (1/n) variance (both
    computed from data shifted by the first row, for accuracy on near-constant columns). The
    output depends on every row, so ``x``, ``gamma`` and ``beta`` are all differentiated.
    With ``xhat = (x - mu) / sqrt(var + eps)`` and ``g = dout * gamma`` the compact backward is

    ``dx = (n g - sum_n g - xhat sum_n(g xhat)) / (n sqrt(var + eps))``,
    ``dgamma = sum_n dout xhat``, ``dbeta = sum_n dout``.

    A batch of one (n = 1) is degenerate: ``x - mu = 0``, so the output is ``beta`` whatever
    ``x`` and ``gamma`` are, and ``dx = dgamma = 0``; the formula above gives those zeros
    exactly (``n g - sum g = 0`` and ``xhat = 0``), so n = 1 is allowed.

    With ``gamma = 1`` and ``beta = 0`` each feature of the output has mean 0 and variance
    ``var / (var + eps)`` (just below 1).

    Leading batch axes are mapped through (``x`` (B, n, d), ``gamma`` and ``beta`` (B, d)).
    """
    _check_eps(eps)
    xp = xp or namespace_of(x, gamma, beta)
    n = x.shape[-2]
    _, centered = _batch_center(x, xp)
    var = xp.sum(centered * centered, axis=-2, keepdims=True) / n
    inv = 1.0 / xp.sqrt(var + eps)
    xhat = centered * inv
    return gamma[..., None, :] * xhat + beta[..., None, :], (xhat, inv, gamma)


def batchnorm_train_backward(dout, cache, *, xp=None):
    xhat, inv, gamma = cache
    xp = xp or namespace_of(xhat, inv, gamma)
    n = xhat.shape[-2]
    g = dout * gamma[..., None, :]
    total = xp.sum(g, axis=-2, keepdims=True)
    projection = xp.sum(g * xhat, axis=-2, keepdims=True)
    dx = (inv / n) * (n * g - total - xhat * projection)
    return dx, xp.sum(dout * xhat, axis=-2), xp.sum(dout, axis=-2)


def batchnorm_infer_forward(x, gamma, beta, running_mean, running_var, /, *, eps=1e-5, xp=None):
    """Batch normalization in inference mode: fixed (running) statistics.

    Parameters
    ----------
    x : array (n, d)
    gamma, beta : array (d,)
        The learnable scale and shift.
    running_mean : array (d,)
    running_var : array (d,)
        Must satisfy ``running_var + eps > 0`` (it is a variance: non-negative).
    eps : float
        Added to the variance inside the square root.

    Returns
    -------
    out : array (n, d)
        ``gamma * (x - running_mean) / sqrt(running_var + eps) + beta``, row by row.

    Notes
    -----
    The rows are independent (no batch statistics). All five inputs are differentiated:
    the formula is smooth in the running statistics too (for ``running_var + eps > 0``),
    which matters when they are themselves outputs of a differentiated computation. With
    ``s = 1 / sqrt(running_var + eps)`` and ``xhat = (x - running_mean) s``:

    ``dx = dout gamma s``, ``dgamma = sum_n dout xhat``, ``dbeta = sum_n dout``,
    ``drunning_mean = -gamma s sum_n dout`` and
    ``drunning_var = -gamma s^2 sum_n(dout xhat) / 2``.

    Leading batch axes are mapped through (``x`` (B, n, d), the others (B, d)).
    """
    _check_eps(eps)
    xp = xp or namespace_of(x, gamma, beta, running_mean, running_var)
    inv = 1.0 / xp.sqrt(running_var + eps)
    xhat = (x - running_mean[..., None, :]) * inv[..., None, :]
    return gamma[..., None, :] * xhat + beta[..., None, :], (xhat, inv, gamma)


def batchnorm_infer_backward(dout, cache, *, xp=None):
    xhat, inv, gamma = cache
    xp = xp or namespace_of(xhat, inv, gamma)
    dsum = xp.sum(dout, axis=-2)
    dproj = xp.sum(dout * xhat, axis=-2)
    dx = dout * (gamma * inv)[..., None, :]
    return dx, dproj, dsum, -gamma * inv * dsum, -0.5 * gamma * inv * inv * dproj


def batchnorm_running_update_forward(x, running_mean, running_var, /, *, momentum=0.9, unbiased=True, xp=None):
    """The running-statistics update of batch normalization, as a function of the batch.

    Parameters
    ----------
    x : array (n, d)
        The batch; its statistics are taken over axis 0.
    running_mean, running_var : array (d,)
        The statistics before the update.
    momentum : float in [0, 1]
        The weight of the *old* statistics (the Keras/TensorFlow convention; PyTorch's
        ``momentum`` is ``1 - momentum`` here).
    unbiased : bool
        Update the running variance with the unbiased (Bessel-corrected, 1/(n - 1)) batch
        variance, as PyTorch does (default), or with the biased (1/n) one, as Keras does.
        The unbiased variance needs n >= 2.

    Returns
    -------
    out : array (2 d,)
        ``concat([new_mean, new_var])`` with
        ``new_mean = momentum running_mean + (1 - momentum) mean_n x`` and
        ``new_var = momentum running_var + (1 - momentum) sum_n (x - mean_n x)^2 / (n - ddof)``
        (``ddof`` 1 when unbiased, else 0).

    Notes
    -----
    The output is linear in the running statistics and quadratic in ``x``. With ``dm`` and
    ``dv`` the two halves of ``dout``:
    ``dx = (1 - momentum) (dm / n + 2 dv (x - mean_n x) / (n - ddof))`` (the term through
    the batch mean vanishes, as ``sum_n (x - mean_n x) = 0``), ``drunning_mean = momentum dm``,
    ``drunning_var = momentum dv``.

    Leading batch axes are mapped through (``x`` (B, n, d), the statistics (B, d), the
    output (B, 2 d)).
    """
    if not (isinstance(momentum, (int, float)) and 0.0 <= momentum <= 1.0):
        raise InvalidArgument(f"momentum={momentum!r} must be a number in [0, 1] (the weight of the old statistics)")
    xp = xp or namespace_of(x, running_mean, running_var)
    n = x.shape[-2]
    ddof = 1 if unbiased else 0
    if n - ddof < 1:
        raise InvalidArgument(f"the unbiased variance of a batch of n={n} is undefined; pass a batch of n >= 2 or unbiased=False")
    mu, centered = _batch_center(x, xp)
    var = xp.sum(centered * centered, axis=-2) / (n - ddof)
    new_mean = momentum * running_mean + (1.0 - momentum) * mu[..., 0, :]
    new_var = momentum * running_var + (1.0 - momentum) * var
    return xp.concat([new_mean, new_var], axis=-1), (centered, momentum, ddof)


def batchnorm_running_update_backward(dout, cache, *, xp=None):
    centered, momentum, ddof = cache
    xp = xp or namespace_of(centered)
    n, d = centered.shape[-2], centered.shape[-1]
    dm, dv = dout[..., :d], dout[..., d:]
    dx = (1.0 - momentum) * (dm[..., None, :] / n + (2.0 / (n - ddof)) * dv[..., None, :] * centered)
    return dx, momentum * dm, momentum * dv


def dropout_mask(shape, p, seed):
    """The host (NumPy) boolean keep-mask of :func:`dropout_forward`: ``True`` with probability ``p``.

    Drawn as ``numpy.random.default_rng(seed).random(shape) < p``, so one seed gives one mask
    whatever the backend.
    """
    _check_keep(p)
    return np.random.default_rng(seed).random(tuple(shape)) < p


def _check_keep(p):
    if isinstance(p, bool) or not (isinstance(p, (int, float)) and 0.0 < p <= 1.0):
        raise InvalidArgument(f"p={p!r} is the keep probability and must be in (0, 1]")


def dropout_forward(x, /, *, p=0.5, seed=None, mask=None, training=True, xp=None):
    """Inverted dropout with keep probability ``p``.

    Parameters
    ----------
    x : array (any shape)
    p : float in (0, 1]
        The probability of *keeping* an element (not of dropping it).
    seed : int, optional
        Seeds the mask, drawn on the host by :func:`dropout_mask` and moved to ``x``'s
        device, so every backend sees the same mask.
    mask : host array of x's shape, optional
        The keep-mask itself (booleans, or 0/1), instead of ``seed``.
    training : bool
        ``False`` is inference mode: the identity (``seed`` and ``mask`` are not used).

    Returns
    -------
    out : array like x
        ``x * mask / p`` in training mode, so that ``E[out] = x``.

    Notes
    -----
    In training mode exactly one of ``seed`` and ``mask`` must be given; the forward is then
    a deterministic (linear) function of ``x`` and ``dx = dout * mask / p``. Only ``x`` is
    differentiated; the mask is not an input.
    """
    xp = xp or namespace_of(x)
    if not training:
        return xp.asarray(x, copy=True), None
    _check_keep(p)
    if (seed is None) == (mask is None):
        raise InvalidArgument("dropout in training mode needs exactly one of seed= (an int) and mask= (a host array of x's shape)")
    if mask is None:
        keep = dropout_mask(x.shape, p, seed)
    else:
        keep = np.asarray(mask)
        if keep.shape != tuple(x.shape):
            raise InvalidArgument(f"mask has shape {keep.shape} but x has shape {tuple(x.shape)}; they must match")
        if not np.all((keep == 0) | (keep == 1)):
            raise InvalidArgument("mask must hold booleans or 0/1 values")
        keep = keep.astype(bool)
    m = xp.astype(xp.asarray(keep, device=device_of(x)), x.dtype)
    return x * m / p, (m, p)


def dropout_backward(dout, cache, *, xp=None):
    if cache is None:  # inference mode: the identity
        xp = xp or namespace_of(dout)
        return (xp.asarray(dout, copy=True),)
    m, p = cache
    return (dout * m / p,)


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


@st.composite
def _maxout_examples(draw):
    k, n, d, m = (draw(st.integers(1, 3)) for _ in range(4))
    x = draw(float_arrays((n, d)))
    w = draw(float_arrays((k, d, m)))
    b = draw(float_arrays((k, m)))
    if k >= 2 and draw(st.booleans()):
        # An exact tie between two pieces everywhere: a kink in both pieces' parameters.
        src, dst, *others = draw(st.permutations(range(k)))
        w[dst], b[dst] = w[src], b[src]
        for j in others:  # keep the tie two-way (see maxout_forward's Notes on ties)
            if np.array_equal(w[j], w[src]) and np.array_equal(b[j], b[src]):
                b[j] += 1.0 + abs(b[j])
        return Example((x, w, b))
    # Away from whole-piece ties (single entries may still tie) both rules are checked.
    return Example((x, w, b), {"ties": draw(st.sampled_from(MAXOUT_TIES))})


def _near_constant_columns(draw, x):
    """Make some columns of ``x`` constant or nearly so (variance far below eps, or 0)."""
    for j in range(x.shape[1]):
        if draw(st.integers(0, 3)) == 0:
            spread = draw(st.sampled_from([0.0, 1e-12, 1e-7, 1e-4]))
            x[:, j] = x[0, j] + spread * (abs(x[0, j]) + 1e-3) * np.random.default_rng(j).standard_normal(x.shape[0])
    return x


@st.composite
def _batchnorm_train_examples(draw):
    n, d = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    x = _near_constant_columns(draw, draw(float_arrays((n, d))))
    gamma, beta = draw(float_arrays((d,))), draw(float_arrays((d,)))
    return Example((x, gamma, beta), {"eps": draw(st.sampled_from([1e-5, 1e-3, 0.1]))})


@st.composite
def _batchnorm_infer_examples(draw):
    n, d = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    x, gamma, beta = draw(float_arrays((n, d))), draw(float_arrays((d,))), draw(float_arrays((d,)))
    running_mean = draw(float_arrays((d,)))
    running_var = draw(float_arrays((d,), positive=True))
    if draw(st.booleans()):
        running_var[0] = 0.0  # a variance of exactly 0 is in the domain: eps keeps sqrt away from 0
    eps = draw(st.sampled_from([1e-5, 1e-3, 0.1]))
    return Example((x, gamma, beta, running_mean, running_var), {"eps": eps})


@st.composite
def _running_update_examples(draw):
    unbiased = draw(st.booleans())
    n, d = draw(st.integers(2 if unbiased else 1, 4)), draw(st.integers(1, 4))
    x = _near_constant_columns(draw, draw(float_arrays((n, d))))
    running_mean = draw(float_arrays((d,)))
    running_var = draw(float_arrays((d,), positive=True))
    momentum = draw(st.sampled_from([0.9, 0.0, 0.1, 0.99, 1.0]))
    return Example((x, running_mean, running_var), {"momentum": momentum, "unbiased": unbiased})


@st.composite
def _dropout_examples(draw):
    x = draw(float_arrays(shapes(max_dims=3)))
    p = draw(st.sampled_from([0.5, 0.8, 0.1, 1.0]))
    how = draw(st.sampled_from(["seed", "mask", "inference"]))
    if how == "inference":
        return Example((x,), {"p": p, "training": False})
    seed = draw(st.integers(0, 2**32 - 1))
    if how == "seed":
        return Example((x,), {"p": p, "seed": seed})
    return Example((x,), {"p": p, "mask": dropout_mask(x.shape, p, seed)})


def _host(a):
    return np.asarray(to_numpy(a), dtype=np.float64)


def _batchnorm_properties(example, xp):
    """With gamma = 1 and beta = 0 each feature has mean 0 and variance var / (var + eps).

    Checked at 50 digits on gradverify's mpmath arrays, where the statement is exact up to
    ~1e-45 relative, and on ``xp`` in float64 within rounding.
    """
    x, _, _ = example.inputs
    eps = example.params.get("eps", 1e-5)
    n, d = x.shape
    ones, zeros = np.ones(d), np.zeros(d)
    # Exact statement, at high precision.
    out = _highprec.call(lambda *a: batchnorm_train_forward(*a, eps=eps)[0], [_highprec.to_hp(a) for a in (x, ones, zeros)], dps=50)
    ctx = _highprec.CTX
    with ctx.workdps(50):
        for j in range(d):
            col, xcol = out[:, j], _highprec.to_hp(x[:, j])
            mean = ctx.fsum(col) / n
            var_out = ctx.fsum((c - mean) ** 2 for c in col) / n
            mu = ctx.fsum(xcol) / n
            var = ctx.fsum((c - mu) ** 2 for c in xcol) / n
            expected = var / (var + eps)
            scale = ctx.mpf(1) + max(abs(c) for c in xcol) / ctx.sqrt(var + eps)
            assert abs(mean) <= ctx.mpf(10) ** -44 * scale, f"feature {j}: batch-normalized mean is {mean}, not 0"
            assert abs(var_out - expected) <= ctx.mpf(10) ** -44 * (scale * scale), f"feature {j}: variance {var_out} != var/(var+eps) = {expected}"
    # The same statement on the backend, within float64 rounding.
    got, _ = batchnorm_train_forward(xp.asarray(x), xp.asarray(ones), xp.asarray(zeros), eps=eps)
    got = _host(got)
    mu = x.mean(axis=0)
    var = ((x - mu) ** 2).mean(axis=0)
    u = np.finfo(np.float64).eps
    inv = 1.0 / np.sqrt(var + eps)
    drift = 8 * n * u * np.abs(x).max(axis=0) * inv  # the rounding of the batch mean, in output units
    mean = got.mean(axis=0)
    assert np.all(np.abs(mean) <= drift + 8 * n * u), f"batch-normalized means {mean} are not 0"
    var_out = ((got - mean) ** 2).mean(axis=0)
    expected = var / (var + eps)
    assert np.all(np.abs(var_out - expected) <= 64 * n * u * expected + drift**2 + 8 * n * u * drift), f"variances {var_out} != var/(var+eps) = {expected}"


def _dropout_properties(example, xp):
    """One mask on every backend; mean of the mask near p and E[out] = x on a large draw."""
    (x,) = example.inputs
    params = example.params
    out, _ = dropout_forward(xp.asarray(x), **params)
    on_numpy, _ = dropout_forward(np_xp.asarray(x), **params)
    assert np.array_equal(_host(out), _host(on_numpy)), f"dropout gave different outputs on {xp.__name__} and NumPy for {params}"
    if not params.get("training", True):
        assert np.array_equal(_host(out), x), "dropout in inference mode is not the identity"
        return
    p = params["p"]
    if params.get("mask") is not None:
        keep = np.asarray(params["mask"], dtype=bool)
        assert np.array_equal(_host(out), np.where(keep, x / p, 0.0 * x)), "dropout with an explicit mask is not x * mask / p"
        return
    size = 40_000
    seed = params["seed"]
    keep = dropout_mask((size,), p, seed)
    sigma = np.sqrt(p * (1 - p) / size)
    assert abs(keep.mean() - p) <= 6 * sigma + 1e-12, f"mask mean {keep.mean()} is more than 6 sigma ({sigma:.3g}) from p={p} (seed {seed})"
    big = 1.0 + np.random.default_rng([seed, 1]).standard_normal(size)
    dropped = _host(dropout_forward(xp.asarray(big), p=p, seed=seed)[0])
    spread = np.sqrt(np.sum(big**2) * (1 - p) / p) / size  # std of mean(out) - mean(x)
    assert abs(dropped.mean() - big.mean()) <= 6 * spread + 1e-12, f"mean(out) = {dropped.mean()} but mean(x) = {big.mean()} (6 sigma = {6 * spread:.3g}, p={p}, seed {seed})"


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
register(Op("maxout", "layer", maxout_forward, maxout_backward, _maxout_examples, "maxout: max over k affine pieces", kinks=("two pieces tie",), batched=True, reference="maxout"))
register(Op("batchnorm_train", "layer", batchnorm_train_forward, batchnorm_train_backward, _batchnorm_train_examples, "batch normalization, training mode (batch statistics)", batched=True, reference="batchnorm_train", properties=_batchnorm_properties))
register(Op("batchnorm_infer", "layer", batchnorm_infer_forward, batchnorm_infer_backward, _batchnorm_infer_examples, "batch normalization, inference mode (running statistics)", batched=True, reference="batchnorm_infer"))
register(Op("batchnorm_running_update", "layer", batchnorm_running_update_forward, batchnorm_running_update_backward, _running_update_examples, "batch normalization's running mean and variance update", batched=True, reference="batchnorm_running_update"))
register(Op("dropout", "layer", dropout_forward, dropout_backward, _dropout_examples, "inverted dropout with keep probability p", reference="dropout", properties=_dropout_properties))
