"""Preprocessing: transforms fitted once on training data, then applied differentiably.

Each transform has a fit and an op:

* ``fit_<name>(X_train, *, xp=None) -> dict`` computes the statistics once, on the host in
  float64 with NumPy (the fit is not differentiated: PCA uses ``numpy.linalg.eigh``), and
  returns them as arrays of ``xp`` (default: ``X_train``'s library) on ``X_train``'s device, in
  its floating dtype. The dict's keys are the op's array inputs after ``x``, in order, so
  ``<name>_forward(x, *fit.values())`` applies the fitted transform.
* ``<name>_forward(x, *statistics, /, *, ...) -> (out, cache)`` applies it to ``x`` of shape
  ``(n, d)`` (a leading batch axis on every input is mapped through), and
  ``<name>_backward(dout, cache) -> grads`` returns the gradient with respect to ``x`` **and
  to every statistic**.

The statistics are array inputs of the op, not keyword parameters: the engine then verifies
``d out / d statistics`` as well as ``d out / d x``, which is more thorough (a pipeline that
learns its normalization, or back-propagates into it, needs exactly these) and costs nothing
at training time: a caller that treats the statistics as constants ignores those gradients.

>>> import numpy as np
>>> X = np.array([[0.0, 10.0], [2.0, 30.0], [4.0, 20.0]])
>>> stats = fit_minmax_scaling(X)
>>> minmax_scaling_forward(X, *stats.values())[0].tolist()
[[-1.0, -1.0], [0.0, 1.0], [1.0, 0.0]]
"""

import zlib

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from gradverify._backend import backend_name, device_of, namespace_of, to_numpy
from gradverify._errors import InvalidArgument
from gradverify.catalog import Example, Op, register
from gradverify.strategies import float_arrays

__all__ = [
    "WHITENING_EPS",
    "fit_mean_subtraction",
    "fit_minmax_scaling",
    "fit_pca_projection",
    "fit_pca_whitening",
    "fit_standardization",
    "mean_subtraction_backward",
    "mean_subtraction_forward",
    "minmax_scaling_backward",
    "minmax_scaling_forward",
    "pca_projection_backward",
    "pca_projection_forward",
    "pca_whitening_backward",
    "pca_whitening_forward",
    "standardization_backward",
    "standardization_forward",
]

WHITENING_EPS = 1e-5


# -- fitting (host, float64, not differentiated) ---------------------------------------------


def _host_training(X_train, xp, name):
    """``(host float64 copy, xp, device, dtype)`` of a 2-D training set, validated."""
    own = namespace_of(X_train)
    xp = xp or own
    same = backend_name(own) == backend_name(xp)
    host = np.asarray(to_numpy(X_train))
    if host.ndim != 2 or host.shape[0] < 1 or host.shape[1] < 1:
        raise InvalidArgument(f"{name}: X_train has shape {host.shape}; pass a 2-D (n_samples, n_features) array with n_samples >= 1")
    if host.dtype.kind != "f":
        raise InvalidArgument(f"{name}: X_train has dtype {host.dtype}; pass real floating data")
    if not np.all(np.isfinite(host)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(host))[0])
        raise InvalidArgument(f"{name}: X_train holds NaN or Inf (first at {bad}); clean the data before fitting")
    device = device_of(X_train) if same else None
    dtype = X_train.dtype if same else None
    return host.astype(np.float64), xp, device, dtype


def _to(xp, device, dtype, **host):
    out = {}
    for key, value in host.items():
        a = xp.asarray(value, device=device)
        out[key] = a if dtype is None or a.dtype == dtype else xp.astype(a, dtype)
    return out


def fit_mean_subtraction(X_train, *, xp=None):
    """``{"mean": (d,)}``: the per-feature mean of ``X_train`` (n, d)."""
    host, xp, device, dtype = _host_training(X_train, xp, "fit_mean_subtraction")
    return _to(xp, device, dtype, mean=host.mean(axis=0))


def fit_standardization(X_train, *, xp=None):
    """``{"mean": (d,), "std": (d,)}``: per-feature mean and population standard deviation.

    The standard deviation is the population one (``ddof=0``), so that the standardized
    training data has unit standard deviation in the same sense. A constant feature
    (``std == 0``) raises :class:`~gradverify.InvalidArgument`: there is no ``eps`` that hides
    a division by zero (drop the feature, or use ``mean_subtraction`` for it).
    """
    host, xp, device, dtype = _host_training(X_train, xp, "fit_standardization")
    std = host.std(axis=0)
    if not np.all(std > 0):
        constant = np.flatnonzero(~(std > 0)).tolist()
        msg = (
            f"fit_standardization: feature(s) {constant} of X_train are constant (std 0), so"
            " standardization would divide by zero; drop them or use mean_subtraction for them"
        )
        raise InvalidArgument(msg)
    return _to(xp, device, dtype, mean=host.mean(axis=0), std=std)


def fit_minmax_scaling(X_train, *, xp=None):
    """``{"low": (d,), "high": (d,)}``: the per-feature minimum and maximum of ``X_train``.

    A constant feature (``high == low``) raises :class:`~gradverify.InvalidArgument`.
    """
    host, xp, device, dtype = _host_training(X_train, xp, "fit_minmax_scaling")
    low, high = host.min(axis=0), host.max(axis=0)
    if not np.all(high > low):
        constant = np.flatnonzero(~(high > low)).tolist()
        msg = f"fit_minmax_scaling: feature(s) {constant} of X_train are constant (max == min); drop them before scaling"
        raise InvalidArgument(msg)
    return _to(xp, device, dtype, low=low, high=high)


def _pca(X_train, k, xp, name):
    host, xp, device, dtype = _host_training(X_train, xp, name)
    d = host.shape[1]
    k = d if k is None else k
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= d:
        raise InvalidArgument(f"{name}: k={k!r} must be an int in [1, {d}] (the number of features)")
    mean = host.mean(axis=0)
    centered = host - mean
    cov = centered.T @ centered / host.shape[0]
    variances, vectors = np.linalg.eigh(cov)
    order = np.argsort(variances)[::-1][:k]  # decreasing variance
    variances, vectors = variances[order], vectors[:, order]
    # A deterministic sign: the largest-magnitude entry of each component is positive.
    signs = np.sign(vectors[np.argmax(np.abs(vectors), axis=0), np.arange(k)])
    vectors = vectors * np.where(signs == 0, 1.0, signs)
    # A covariance is positive semidefinite; eigh's tiny negative values are rounding.
    variances = np.maximum(variances, 0.0)
    return (xp, device, dtype), mean, vectors, variances


def fit_pca_projection(X_train, *, k=None, xp=None):
    """``{"mean": (d,), "components": (d, k)}``: the top ``k`` principal axes of ``X_train``.

    The covariance is the population one (divided by n), diagonalized with
    ``numpy.linalg.eigh`` in float64 on the host; the components (orthonormal columns) are
    sorted by decreasing variance, each with its largest-magnitude entry positive. ``k``
    defaults to every feature.
    """
    where, mean, vectors, _ = _pca(X_train, k, xp, "fit_pca_projection")
    return _to(*where, mean=mean, components=vectors)


def fit_pca_whitening(X_train, *, k=None, xp=None):
    """``{"mean": (d,), "components": (d, k), "variances": (k,)}``: PCA and its variances.

    As :func:`fit_pca_projection`, plus the variance of the training data along each
    component (the eigenvalues, decreasing; tiny negative rounding clipped to 0).
    """
    where, mean, vectors, variances = _pca(X_train, k, xp, "fit_pca_whitening")
    return _to(*where, mean=mean, components=vectors, variances=variances)


# -- the differentiable applications --------------------------------------------------------


def mean_subtraction_forward(x, mean, /, *, xp=None):
    """``x - mean``: center each feature by its fitted mean.

    Parameters
    ----------
    x : array (n, d)
    mean : array (d,)
        From :func:`fit_mean_subtraction`.

    Notes
    -----
    Differentiated with respect to both: ``dx = dout`` and ``dmean = -sum_n dout``.
    """
    return x - mean[..., None, :], None


def mean_subtraction_backward(dout, cache, *, xp=None):
    xp = xp or namespace_of(dout)
    return dout, -xp.sum(dout, axis=-2)


def standardization_forward(x, mean, std, /, *, xp=None):
    """``(x - mean) / std`` with the fitted per-feature mean and standard deviation.

    Parameters
    ----------
    x : array (n, d)
    mean, std : arrays (d,)
        From :func:`fit_standardization`; ``std > 0`` (the fit refuses constant features and
        there is no ``eps``: a zero ``std`` gives infinities, not a hidden bias).

    Notes
    -----
    With ``z = (x - mean) / std``: ``dx = dout / std``, ``dmean = -sum_n dout / std`` and
    ``dstd = -sum_n dout z / std``. The statistics are the fitted ones, never the batch's.
    """
    z = (x - mean[..., None, :]) / std[..., None, :]
    return z, (z, std)


def standardization_backward(dout, cache, *, xp=None):
    z, std = cache
    xp = xp or namespace_of(z, std)
    dx = dout / std[..., None, :]
    return dx, -xp.sum(dx, axis=-2), -xp.sum(dx * z, axis=-2)


def minmax_scaling_forward(x, low, high, /, *, xp=None):
    """``2 (x - low) / (high - low) - 1``: the fitted range of each feature onto ``[-1, 1]``.

    Parameters
    ----------
    x : array (n, d)
    low, high : arrays (d,)
        From :func:`fit_minmax_scaling`; ``high > low``. New data outside the training range
        maps outside ``[-1, 1]`` (no clipping: clipping would hide the shift and zero the
        gradient).

    Notes
    -----
    With ``r = high - low``: ``dx = 2 dout / r``, ``dlow = sum_n dout 2 (x - high) / r^2`` and
    ``dhigh = -sum_n dout 2 (x - low) / r^2``. The training minimum maps to ``-1`` and the
    maximum to ``+1`` exactly (``2 r / r = 2`` in floating point).
    """
    shifted = x - low[..., None, :]
    r = (high - low)[..., None, :]
    return 2.0 * shifted / r - 1.0, (shifted, r)


def minmax_scaling_backward(dout, cache, *, xp=None):
    shifted, r = cache
    xp = xp or namespace_of(shifted, r)
    dx = 2.0 * dout / r
    dhigh = -xp.sum(dx * shifted / r, axis=-2)
    # d/dlow = (2 (x - low) - 2 r) / r^2 = 2 (x - high) / r^2
    dlow = xp.sum(dx * (shifted / r - 1.0), axis=-2)
    return dx, dlow, dhigh


def pca_projection_forward(x, mean, components, /, *, xp=None):
    """``(x - mean) @ components``: coordinates along the top ``k`` principal axes.

    Parameters
    ----------
    x : array (n, d)
    mean : array (d,)
    components : array (d, k)
        From :func:`fit_pca_projection` (orthonormal columns, decreasing variance).

    Returns
    -------
    out : array (n, k)

    Notes
    -----
    With ``c = x - mean`` and ``V = components``: ``dx = dout V^T``, ``dmean = -sum_n dx`` and
    ``dV = c^T dout``.
    """
    centered = x - mean[..., None, :]
    return centered @ components, (centered, components)


def pca_projection_backward(dout, cache, *, xp=None):
    centered, components = cache
    xp = xp or namespace_of(centered, components)
    dx = dout @ xp.matrix_transpose(components)
    return dx, -xp.sum(dx, axis=-2), xp.matrix_transpose(centered) @ dout


def pca_whitening_forward(x, mean, components, variances, /, *, eps=WHITENING_EPS, xp=None):
    """PCA whitening ``((x - mean) @ components) / sqrt(variances + eps)``.

    Parameters
    ----------
    x : array (n, d)
    mean : array (d,)
    components : array (d, k)
    variances : array (k,)
        From :func:`fit_pca_whitening`.
    eps : float
        The whitening regularizer (default ``1e-5``), added to each variance: it bounds the
        gain ``1 / sqrt(variance + eps)`` of the near-null directions, which otherwise blow
        up noise (and divide by zero for a rank-deficient training set). It is part of the
        definition, not a hidden fudge: the whitened training covariance is
        ``diag(variances / (variances + eps))``, the identity up to ``eps / variance``. It
        is in the data's squared units: scale it with the data.

    Returns
    -------
    out : array (n, k)

    Notes
    -----
    With ``p = (x - mean) V`` and ``s = sqrt(variances + eps)``: ``out = p / s``,
    ``dp = dout / s``, ``dx = dp V^T``, ``dmean = -sum_n dx``, ``dV = (x - mean)^T dp`` and
    ``dvariances = -sum_n dout p / (2 s^3) = -sum_n dout out / (2 s^2)``.
    """
    xp = xp or namespace_of(x, mean, components, variances)
    centered = x - mean[..., None, :]
    s = xp.sqrt(variances + eps)[..., None, :]
    out = (centered @ components) / s
    return out, (centered, components, s, out)


def pca_whitening_backward(dout, cache, *, xp=None):
    centered, components, s, out = cache
    xp = xp or namespace_of(centered, components)
    dp = dout / s
    dx = dp @ xp.matrix_transpose(components)
    dvariances = -0.5 * xp.sum(dp * out / s, axis=-2)
    return dx, -xp.sum(dx, axis=-2), xp.matrix_transpose(centered) @ dp, dvariances


# -- examples ---------------------------------------------------------------------------------


@st.composite
def _fitted_examples(draw, fit, **fit_params):
    """``x`` (n, d) and statistics fitted on a separate training set of the same scale.

    Sizes keep the differentiated elements (x, statistics) at most 55, so the per-element
    high-precision truth runs. The training set has more rows than features (a full-rank
    covariance for PCA).
    """
    n, d = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    scale = 10.0 ** draw(st.integers(-3, 3))
    X_train = draw(float_arrays((draw(st.integers(d + 2, 8)), d), scale=scale))
    assume(np.all(np.ptp(X_train, axis=0) > 0))  # a constant feature: the fit refuses it
    params = {key: draw(value) if isinstance(value, st.SearchStrategy) else value for key, value in fit_params.items()}
    if "k" in params:
        params["k"] = min(params["k"], d)
    x = draw(float_arrays((n, d), scale=scale))
    if draw(st.booleans()):
        x[0] = X_train[0]  # a training row: min-max hits -1/+1 exactly, etc.
    stats = fit(X_train, **params)
    return Example((x, *(np.asarray(v) for v in stats.values())))


@st.composite
def _whitening_examples(draw):
    example = draw(_fitted_examples(fit_pca_whitening, k=st.integers(1, 5)))
    return Example(example.inputs, {"eps": draw(st.sampled_from([WHITENING_EPS, 1e-2, 1.0]))})


# -- properties on a training set -------------------------------------------------------------

_EPS = float(np.finfo(np.float64).eps)


def _training_set(example):
    """The example's ``x`` plus deterministic extra rows: more rows than features, no constant feature."""
    x = np.asarray(example.inputs[0], dtype=np.float64)
    n, d = x.shape
    rng = np.random.default_rng(zlib.crc32(x.tobytes()))
    size = float(np.max(np.abs(x))) or 1.0
    return np.concatenate([x, rng.standard_normal((max(2 * d + 2, 8), d)) * size])


def _apply(forward, fit, X, xp, **params):
    Xd = xp.asarray(X)
    stats = fit(Xd, xp=xp)
    out, _ = forward(Xd, *stats.values(), **params)
    return np.asarray(to_numpy(out)), {k: np.asarray(to_numpy(v)) for k, v in stats.items()}


def _mean_subtraction_properties(example, xp):
    X = _training_set(example)
    Z, _ = _apply(mean_subtraction_forward, fit_mean_subtraction, X, xp)
    tol = 4 * X.shape[0] * _EPS * np.max(np.abs(X))
    assert np.all(np.abs(Z.mean(axis=0)) <= tol), f"mean_subtraction: centered training data has feature means {Z.mean(axis=0).tolist()}"


def _standardization_properties(example, xp):
    X = _training_set(example)
    Z, stats = _apply(standardization_forward, fit_standardization, X, xp)
    # Rounding of x - mean, relative to std, bounds the error (cancellation when |mean| >> std).
    tol = 16 * X.shape[0] * _EPS * np.max(np.abs(X) / stats["std"])
    assert np.all(np.abs(Z.mean(axis=0)) <= tol), f"standardization: training features have means {Z.mean(axis=0).tolist()}, not 0 (tol {tol:.2g})"
    assert np.all(np.abs(Z.std(axis=0) - 1.0) <= tol), f"standardization: training features have std {Z.std(axis=0).tolist()}, not 1 (tol {tol:.2g})"


def _minmax_properties(example, xp):
    X = _training_set(example)
    Z, _ = _apply(minmax_scaling_forward, fit_minmax_scaling, X, xp)
    assert np.all(Z.min(axis=0) == -1.0) and np.all(Z.max(axis=0) == 1.0), (
        f"minmax_scaling: the training range maps to [{Z.min(axis=0).tolist()}, {Z.max(axis=0).tolist()}], not exactly [-1, 1]"
    )


def _covariance(Z):
    return Z.T @ Z / Z.shape[0]  # Z is centered by the fitted mean


def _pca_properties(example, xp):
    X = _training_set(example)
    k = example.inputs[2].shape[-1]
    fit = lambda Xd, xp: fit_pca_projection(Xd, k=k, xp=xp)  # noqa: E731
    Z, _ = _apply(pca_projection_forward, fit, X, xp)
    cov = _covariance(Z)
    top = float(np.max(np.diag(cov)))
    tol = 64 * X.shape[1] * _EPS * top
    off = cov - np.diag(np.diag(cov))
    assert np.all(np.abs(off) <= tol), f"pca_projection: projected training components are correlated (largest |cov| off the diagonal {np.max(np.abs(off)):.3g}, tol {tol:.2g})"
    var = np.diag(cov)
    assert np.all(np.diff(var) <= tol), f"pca_projection: component variances {var.tolist()} are not in decreasing order"


def _whitening_properties(example, xp):
    X = _training_set(example)
    k = example.inputs[2].shape[-1]
    eps = example.params.get("eps", WHITENING_EPS)
    fit = lambda Xd, xp: fit_pca_whitening(Xd, k=k, xp=xp)  # noqa: E731
    W, stats = _apply(pca_whitening_forward, fit, X, xp, eps=eps)
    lam = stats["variances"]
    cov = _covariance(W)
    expected = np.diag(lam / (lam + eps))
    # eigh's error is a few eps * lambda_max in the projected covariance, divided by the
    # whitening gains sqrt((lambda_i + eps) (lambda_j + eps)).
    gain = 1.0 / np.sqrt(lam + eps)
    tol = 64 * X.shape[1] * _EPS * float(np.max(lam)) * np.outer(gain, gain) + 1e-14
    err = np.abs(cov - expected)
    assert np.all(err <= tol), f"pca_whitening: training covariance {cov.tolist()} differs from diag(var / (var + eps)) by up to {np.max(err - tol):.3g} beyond tolerance"
    # ... which is the identity within the eps effect eps / (var + eps).
    off_identity = np.abs(np.diag(cov) - 1.0)
    assert np.all(off_identity <= eps / (lam + eps) + np.diag(tol)), f"pca_whitening: diagonal {np.diag(cov).tolist()} is further from 1 than eps / (var + eps)"


register(Op("mean_subtraction", "preprocessing", mean_subtraction_forward, mean_subtraction_backward, lambda: _fitted_examples(fit_mean_subtraction), "subtract the fitted per-feature mean", batched=True, reference="mean_subtraction", properties=_mean_subtraction_properties))
register(Op("standardization", "preprocessing", standardization_forward, standardization_backward, lambda: _fitted_examples(fit_standardization), "standardize with the fitted mean and std", batched=True, reference="standardization", properties=_standardization_properties))
register(Op("minmax_scaling", "preprocessing", minmax_scaling_forward, minmax_scaling_backward, lambda: _fitted_examples(fit_minmax_scaling), "scale the fitted range of each feature to [-1, 1]", batched=True, reference="minmax_scaling", properties=_minmax_properties))
register(Op("pca_projection", "preprocessing", pca_projection_forward, pca_projection_backward, lambda: _fitted_examples(fit_pca_projection, k=st.integers(1, 5)), "project onto the top k fitted principal components", batched=True, reference="pca_projection", properties=_pca_properties))
register(Op("pca_whitening", "preprocessing", pca_whitening_forward, pca_whitening_backward, _whitening_examples, "PCA whitening with the fitted components and variances (+ eps)", batched=True, reference="pca_whitening", properties=_whitening_properties))
