"""Weight initializers: seeded draws, identical on every backend.

Each initializer is ``init(shape, *, seed, xp, device=None, dtype=None) -> array``. The draw is
made on the host with ``numpy.random.default_rng(seed)`` in float64 and moved with
``xp.asarray(..., device=device)`` (then cast to ``dtype`` when one is given), so NumPy, CuPy
and array-api-strict all see the same values for the same seed.

Fans follow the ``x @ W`` convention of :func:`gradverify.catalog.layers.linear_forward`: a
dense weight has shape ``(fan_in, fan_out)``; for more axes (a convolution kernel stored as
``(..., in_channels, out_channels)``, e.g. ``(kh, kw, c_in, c_out)``) the leading axes are the
receptive field, ``fan_in = prod(shape[:-1])`` and ``fan_out = prod(shape[:-2]) * shape[-1]``.

There is nothing to differentiate: the catalog entries have ``backward=None`` and are verified
by their properties (the sample statistics match the claimed ones, the same seed gives the
same values on every backend, and the variance claim that motivates each scale holds through
a deep stack of layers).

>>> import array_api_strict, numpy as np
>>> from gradverify._backend import load_backend
>>> a = he((256, 128), seed=0, xp=load_backend("numpy"))
>>> b = he((256, 128), seed=0, xp=array_api_strict)
>>> bool(np.all(a == np.asarray(b))), round(float(a.std()) ** 2 * 256, 1)
(True, 2.0)
"""

import math

import numpy as np
from hypothesis import strategies as st

from gradverify._backend import load_backend, to_numpy
from gradverify._errors import InvalidArgument
from gradverify.catalog import Example, Op, register

__all__ = [
    "CLAIMED_STD",
    "INITIALIZERS",
    "fans",
    "he",
    "lecun",
    "small_random",
    "stack_second_moments",
    "xavier",
    "zeros",
]


def _check_shape(shape, name, min_dims):
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{name}: shape={shape!r} must be a tuple of ints, e.g. (fan_in, fan_out)") from None
    if len(shape) < min_dims or any(s < 1 for s in shape):
        need = "at least two axes, (fan_in, fan_out)" if min_dims == 2 else "positive sides"
        raise InvalidArgument(f"{name}: shape={shape!r} needs {need}")
    return shape


def fans(shape):
    """``(fan_in, fan_out)`` of a weight of ``shape`` (see the module notes).

    >>> fans((3, 4)), fans((3, 3, 16, 32))
    ((3, 4), (144, 288))
    """
    shape = _check_shape(shape, "fans", 2)
    receptive = math.prod(shape[:-2])
    return receptive * shape[-2], receptive * shape[-1]


def _move(host, xp, device, dtype):
    out = xp.asarray(host, device=device)
    if dtype is not None and out.dtype != dtype:
        out = xp.astype(out, dtype)
    return out


def _normal(shape, std, seed, xp, device, dtype):
    host = np.random.default_rng(seed).standard_normal(shape) * std
    return _move(host, xp, device, dtype)


def small_random(shape, *, seed, xp, device=None, dtype=None):
    """``0.01 * N(0, 1)``: the classic small-weights start, whose signal vanishes in deep nets.

    Parameters
    ----------
    shape : tuple of int
    seed : int or sequence of int
        Seeds ``numpy.random.default_rng``; the draw is made on the host in float64.
    xp : namespace
        The array library of the result.
    device : optional
        The device of the result (``xp``'s default when None).
    dtype : optional
        Cast to this dtype of ``xp`` after the draw (float64 when None).

    Notes
    -----
    Through a layer ``x W`` of width ``d`` the second moment is multiplied by ``1e-4 d`` (by
    ``0.5e-4 d`` with a ReLU after it), so it collapses geometrically with depth for any
    width below ``1e4``.
    """
    shape = _check_shape(shape, "small_random", 1)
    return _normal(shape, 0.01, seed, xp, device, dtype)


def lecun(shape, *, seed, xp, device=None, dtype=None):
    """LeCun normal: ``N(0, 1 / fan_in)``.

    Parameters are those of :func:`small_random`; ``shape`` has at least two axes.

    Notes
    -----
    ``Var((x W)_j) = fan_in Var(W) E[x^2] = E[x^2]``: a linear layer keeps the second moment
    of its input (the choice for linear, tanh and SELU layers).
    """
    shape = _check_shape(shape, "lecun", 2)
    fan_in, _ = fans(shape)
    return _normal(shape, 1.0 / math.sqrt(fan_in), seed, xp, device, dtype)


def xavier(shape, *, seed, xp, device=None, dtype=None):
    """Glorot (Xavier) normal: ``N(0, 2 / (fan_in + fan_out))``.

    Parameters are those of :func:`small_random`; ``shape`` has at least two axes.

    Notes
    -----
    The harmonic compromise between keeping the forward variance (``1 / fan_in``) and the
    backward one (``1 / fan_out``); for a square layer it equals LeCun's.
    """
    shape = _check_shape(shape, "xavier", 2)
    fan_in, fan_out = fans(shape)
    return _normal(shape, math.sqrt(2.0 / (fan_in + fan_out)), seed, xp, device, dtype)


def he(shape, *, seed, xp, device=None, dtype=None):
    """He (Kaiming) normal: ``N(0, 2 / fan_in)``.

    Parameters are those of :func:`small_random`; ``shape`` has at least two axes.

    Notes
    -----
    A ReLU keeps half of a symmetric input's second moment, ``E[relu(y)^2] = Var(y) / 2``,
    which the factor 2 restores: ``x <- relu(x W)`` keeps ``E[x^2]`` through any depth.
    """
    shape = _check_shape(shape, "he", 2)
    fan_in, _ = fans(shape)
    return _normal(shape, math.sqrt(2.0 / fan_in), seed, xp, device, dtype)


def zeros(shape, *, seed=None, xp, device=None, dtype=None):
    """All zeros, for biases. ``seed`` is accepted (and ignored) for a uniform signature."""
    shape = _check_shape(shape, "zeros", 1)
    return _move(np.zeros(shape), xp, device, dtype)


# What each initializer claims: its standard deviation as a function of the shape.
CLAIMED_STD = {
    "small_random": lambda shape: 0.01,
    "lecun": lambda shape: 1.0 / math.sqrt(fans(shape)[0]),
    "xavier": lambda shape: math.sqrt(2.0 / sum(fans(shape))),
    "he": lambda shape: math.sqrt(2.0 / fans(shape)[0]),
    "zeros": lambda shape: 0.0,
}
INITIALIZERS = {"small_random": small_random, "lecun": lecun, "xavier": xavier, "he": he, "zeros": zeros}


# -- deep stacks ----------------------------------------------------------------------------


def stack_second_moments(init, activation, *, xp, seed, width=256, depth=10, batch=4):
    """``E[x^2]`` after each of ``depth`` layers ``x <- activation(x W_l)``, ``x`` starting N(0, 1).

    ``W_l = init((width, width), seed=seed + 1 + l, xp=xp)``; ``activation`` is ``"relu"``,
    ``"tanh"`` or ``"linear"``. Returns a host float64 array of ``depth`` values.

    The layers are square, where Xavier's and LeCun's scales coincide. A batch of 4 rows
    (1024 activations a layer) is enough: the fluctuation of ``E[x^2]`` comes from the
    weights, not from the inputs. (It also keeps each product below OpenBLAS's threading
    threshold, which matters on an oversubscribed CI machine: 0.1 ms instead of 15 ms.)
    """
    x = xp.asarray(np.random.default_rng(seed).standard_normal((batch, width)))
    moments = []
    for layer in range(depth):
        x = x @ init((width, width), seed=seed + 1 + layer, xp=xp)
        if activation == "relu":
            x = xp.maximum(x, 0.0)
        elif activation == "tanh":
            x = xp.tanh(x)
        elif activation != "linear":
            raise InvalidArgument(f"activation={activation!r}; choose from 'relu', 'tanh', 'linear'")
        moments.append(float(np.asarray(to_numpy(xp.mean(x * x)))))
    return np.array(moments)


# -- the ops and their properties --------------------------------------------------------------


def _forward_of(init):
    def forward(*, shape, seed, xp=None, device=None, dtype=None):
        # No array input to take a namespace from: NumPy unless told otherwise.
        return init(shape, seed=seed, xp=xp or load_backend("numpy"), device=device, dtype=dtype), None

    forward.__name__ = forward.__qualname__ = f"{init.__name__}_forward"
    forward.__doc__ = f"``({init.__name__}(shape, seed=seed, xp=xp), None)``: the catalog's call of :func:`{init.__name__}`."
    return forward


@st.composite
def _init_examples(draw):
    """Shapes with at least 4096 elements (the statistics need them), dense or convolutional."""
    if draw(st.booleans()):
        shape = (draw(st.integers(64, 160)), draw(st.integers(64, 160)))
    else:
        k = draw(st.sampled_from([1, 3]))
        shape = (k, k, draw(st.integers(24, 48)), draw(st.integers(24, 48)))
        if math.prod(shape) < 4096:
            shape = (k, k, 64, shape[-1] + 40)
    return Example((), {"shape": shape, "seed": draw(st.integers(0, 2**32 - 1))})


# The number of standard errors a sample statistic may be off by: a false alarm has
# probability below 1e-6 per check.
Z = 5.0


def _properties_of(name):
    init = INITIALIZERS[name]

    def properties(example, xp):
        shape, seed = example.params["shape"], example.params["seed"]
        a = init(shape, seed=seed, xp=xp)
        host = np.asarray(to_numpy(a))
        assert tuple(a.shape) == tuple(shape), f"{name}: shape {tuple(a.shape)}, asked for {tuple(shape)}"
        assert host.dtype == np.float64, f"{name}: dtype {host.dtype}, expected float64 by default"
        again = np.asarray(to_numpy(init(shape, seed=seed, xp=xp)))
        assert np.array_equal(host, again), f"{name}: two draws with seed {seed} differ"
        on_numpy = np.asarray(init(shape, seed=seed, xp=load_backend("numpy")))
        assert np.array_equal(host, on_numpy), f"{name}: seed {seed} gives other values than on NumPy (max diff {np.max(np.abs(host - on_numpy))})"
        std = CLAIMED_STD[name](shape)
        if std == 0.0:
            assert not np.any(host), f"{name}: nonzero entries {host[host != 0][:5].tolist()}"
            return
        n = host.size
        mean, sample_std = host.mean(), host.std(ddof=1)
        se_mean, se_std = std / math.sqrt(n), std / math.sqrt(2.0 * (n - 1))
        assert abs(mean) <= Z * se_mean, f"{name}{tuple(shape)} seed {seed}: sample mean {mean:.3g} is {abs(mean) / se_mean:.1f} standard errors from 0"
        assert abs(sample_std - std) <= Z * se_std, (
            f"{name}{tuple(shape)} seed {seed}: sample std {sample_std:.6g}, claimed {std:.6g}"
            f" ({abs(sample_std - std) / se_std:.1f} standard errors off; tolerance {Z})"
        )
        other = np.asarray(init(shape, seed=seed + 1, xp=load_backend("numpy")))
        assert not np.array_equal(host, other), f"{name}: seeds {seed} and {seed + 1} give the same values"
        _STACK_CLAIMS[name](xp, seed)

    properties.__name__ = f"_{name}_properties"
    return properties


# Per-seed bands for the deep-stack claims, width 256, depth 10. At finite width the second
# moment of a ReLU stack fluctuates from one weight draw to the next: log E[x^2] has a standard
# deviation of about 0.4 at depth 10 (measured over 300 seeds; it grows like sqrt(depth /
# width)), so a per-seed band of a factor 2 would fail about one seed in twenty. The bands
# below are about 5 standard deviations wide and still far from what a wrong scale gives
# (a factor 2 error in the variance per layer moves E[x^2] by 2**10 over 10 layers). The
# factor-2 claim itself is tested on the geometric mean over several seeds in
# tests/test_schedules_init_prep.py.
RELU_BAND = (1.0 / 8.0, 8.0)
LINEAR_BAND = (1.0 / 3.0, 3.0)
# With Var(W) = 1 / fan_in a tanh stack contracts only polynomially:
# q <- E[tanh(sqrt(q) z)^2] ~ q - 2 q^2 for small q, so q_l ~ 1 / (2 l), 0.05 at depth 10.
TANH_BAND = (0.025, 0.1)


def _within(m, band):
    return bool(np.all((m > band[0]) & (m < band[1])))


def _he_stack(xp, seed):
    m = stack_second_moments(he, "relu", xp=xp, seed=seed)
    assert _within(m, RELU_BAND), f"he: E[x^2] through 10 ReLU layers (seed {seed}) left {RELU_BAND}: {m.round(3).tolist()}"


def _lecun_stack(xp, seed, name="lecun", init=lecun):
    m = stack_second_moments(init, "linear", xp=xp, seed=seed)
    assert _within(m, LINEAR_BAND), f"{name}: E[x^2] through 10 linear layers (seed {seed}) left {LINEAR_BAND}: {m.round(3).tolist()}"
    t = stack_second_moments(init, "tanh", xp=xp, seed=seed)
    assert _within(t[-1:], TANH_BAND), f"{name}: E[x^2] after 10 tanh layers (seed {seed}) is {t[-1]:.3g}, expected about 1 / (2 * 10) = 0.05 (band {TANH_BAND})"


def _xavier_stack(xp, seed):
    _lecun_stack(xp, seed, "xavier", xavier)


def _small_random_stack(xp, seed):
    m = stack_second_moments(small_random, "relu", xp=xp, seed=seed)
    # Expected factor 0.5e-4 * 256 = 0.0128 per layer: about 1e-19 after 10 layers.
    assert m[-1] < 1e-12, f"small_random: E[x^2] through 10 ReLU layers of width 256 (seed {seed}) should collapse; got {m[-1]:.3g}"


_STACK_CLAIMS = {"he": _he_stack, "lecun": _lecun_stack, "xavier": _xavier_stack, "small_random": _small_random_stack, "zeros": lambda xp, seed: None}

_SUMMARIES = {
    "small_random": "small random normal weights 0.01 N(0, 1)",
    "lecun": "LeCun normal weights, std 1 / sqrt(fan_in)",
    "xavier": "Glorot (Xavier) normal weights, std sqrt(2 / (fan_in + fan_out))",
    "he": "He (Kaiming) normal weights, std sqrt(2 / fan_in)",
    "zeros": "all-zero biases",
}

for _name in ("small_random", "lecun", "xavier", "he", "zeros"):
    register(Op(_name, "initializer", _forward_of(INITIALIZERS[_name]), None, _init_examples, _SUMMARIES[_name], reference=_name, properties=_properties_of(_name)))
