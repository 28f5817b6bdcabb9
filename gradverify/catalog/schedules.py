"""Learning-rate schedules: the rate at step ``t`` as a differentiable function of its hyperparameters.

The step ``t`` (and every other integer: step size, warm-up length, horizon) is a Python
``int`` keyword parameter; the hyperparameters (``alpha0``, ``gamma``, ``k``, ``alpha_min``)
are 0-d float arrays, so the engine verifies ``d lr / d hyperparameters``: what a
hyperparameter search by gradient (hypergradient descent) would use. Everything is
elementwise in the hyperparameters, so arrays of any (common) shape give one rate per
element, and a leading batch axis is mapped through.

Each forward is ``<name>_forward(*hyperparameters, /, *, t, ...) -> (lr, cache)`` and each
backward ``<name>_backward(dlr, cache) -> (one gradient per hyperparameter)``.

>>> import numpy as np
>>> lr, cache = exponential_decay_forward(np.asarray(0.5), np.asarray(0.1), t=10)
>>> round(float(lr), 6)
0.18394
>>> [round(float(g), 6) for g in exponential_decay_backward(np.asarray(1.0), cache)]  # d/dalpha0, d/dk
[0.367879, -1.839397]
"""

import math

import numpy as np
from hypothesis import strategies as st

from gradverify._backend import namespace_of, to_numpy
from gradverify._errors import InvalidArgument
from gradverify.catalog import Example, Op, register
from gradverify.strategies import float_arrays

__all__ = [
    "cosine_decay_backward",
    "cosine_decay_forward",
    "exponential_decay_backward",
    "exponential_decay_forward",
    "inverse_time_decay_backward",
    "inverse_time_decay_forward",
    "step_decay_backward",
    "step_decay_forward",
    "warmup_linear_decay_backward",
    "warmup_linear_decay_forward",
]


def _require_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        msg = f"{name}={value!r} must be a Python int >= {minimum} (a step count, not an array)"
        raise InvalidArgument(msg)
    return int(value)


# -- step decay -------------------------------------------------------------------------


def step_decay_forward(alpha0, gamma, /, *, t, step_size, xp=None):
    """Step decay ``alpha0 * gamma ** floor(t / step_size)``.

    Parameters
    ----------
    alpha0 : array (0-d, or any shape broadcasting with ``gamma``)
        The initial rate; differentiated.
    gamma : array
        The decay factor per stage, in ``(0, 1]``; differentiated.
    t : int
        The step, ``t >= 0``.
    step_size : int
        Steps per stage ``s >= 1``.

    Returns
    -------
    lr : array, the broadcast shape of the inputs
    cache : tuple

    Notes
    -----
    With ``n = t // s`` (a Python int, so never differentiated):
    ``d lr / d alpha0 = gamma ** n`` and ``d lr / d gamma = n alpha0 gamma ** (n - 1)``
    (zero for ``n = 0``). As a function of ``t`` the schedule is piecewise constant by
    design: it drops by the factor ``gamma`` at each multiple of ``s`` and nowhere else.
    """
    t = _require_int(t, "t", 0)
    s = _require_int(step_size, "step_size", 1)
    n = t // s
    decay = gamma**n
    return alpha0 * decay, (alpha0, gamma, decay, n)


def step_decay_backward(dlr, cache, *, xp=None):
    alpha0, gamma, decay, n = cache
    xp = xp or namespace_of(alpha0, gamma)
    if n == 0:
        dgamma = dlr * xp.zeros_like(gamma)
    else:
        dgamma = dlr * (n * alpha0 * gamma ** (n - 1))
    return dlr * decay, dgamma


# -- exponential decay ------------------------------------------------------------------


def exponential_decay_forward(alpha0, k, /, *, t, xp=None):
    """Exponential decay ``alpha0 * exp(-k t)``.

    Parameters
    ----------
    alpha0 : array
        The initial rate; differentiated.
    k : array
        The decay rate per step, ``k >= 0``; differentiated.
    t : int
        The step, ``t >= 0``.

    Notes
    -----
    ``d lr / d alpha0 = exp(-k t)`` and ``d lr / d k = -t lr``. The Lipschitz bound in ``t``
    is ``alpha0 k`` (the slope at ``t = 0``).
    """
    t = _require_int(t, "t", 0)
    xp = xp or namespace_of(alpha0, k)
    decay = xp.exp(-(k * t))
    lr = alpha0 * decay
    return lr, (decay, lr, t)


def exponential_decay_backward(dlr, cache, *, xp=None):
    decay, lr, t = cache
    return dlr * decay, -t * (dlr * lr)


# -- inverse-time decay -----------------------------------------------------------------


def inverse_time_decay_forward(alpha0, k, /, *, t, xp=None):
    """Inverse-time decay ``alpha0 / (1 + k t)``.

    Parameters
    ----------
    alpha0 : array
        The initial rate; differentiated.
    k : array
        The decay rate, ``k >= 0`` (so that ``1 + k t > 0``); differentiated.
    t : int
        The step, ``t >= 0``.

    Notes
    -----
    ``d lr / d alpha0 = 1 / (1 + k t)`` and ``d lr / d k = -alpha0 t / (1 + k t) ** 2``. The
    Lipschitz bound in ``t`` is ``alpha0 k`` (the slope at ``t = 0``).
    """
    t = _require_int(t, "t", 0)
    denom = 1.0 + k * t
    return alpha0 / denom, (alpha0, denom, t)


def inverse_time_decay_backward(dlr, cache, *, xp=None):
    alpha0, denom, t = cache
    inv = 1.0 / denom
    return dlr * inv, -t * (dlr * alpha0 * inv * inv)


# -- linear warm-up, then linear decay ---------------------------------------------------


def _warmup_factor(t, warmup, total):
    """The Python float ``lr / alpha0`` of :func:`warmup_linear_decay_forward`."""
    if t < warmup:
        return t / warmup
    if t < total:
        return (total - t) / (total - warmup)
    return 0.0


def warmup_linear_decay_forward(alpha0, /, *, t, warmup, total, xp=None):
    """Linear warm-up from 0 to ``alpha0`` over ``warmup`` steps, then linear decay to 0 at ``total``.

    Parameters
    ----------
    alpha0 : array
        The peak rate; differentiated.
    t : int
        The step, ``t >= 0``.
    warmup : int
        Warm-up steps ``w``, ``0 <= w < total`` (``w = 0``: no warm-up, ``lr(0) = alpha0``).
    total : int
        The step ``T`` at which the rate reaches 0.

    Notes
    -----
    ``lr = alpha0 * f(t)`` with the Python float

    * ``f(t) = t / w`` for ``t < w`` (so ``lr(0) = 0`` when there is a warm-up),
    * ``f(t) = (T - t) / (T - w)`` for ``w <= t < T``: the peak ``lr(w) = alpha0`` exactly,
      where both pieces meet (the schedule is continuous),
    * ``f(t) = 0`` for ``t >= T``: the rate stays 0 after the horizon.

    ``d lr / d alpha0 = f(t)``. The Lipschitz bound in ``t`` is
    ``alpha0 * max(1 / w, 1 / (T - w))``; the rate is non-decreasing up to ``w`` and
    non-increasing after.
    """
    t = _require_int(t, "t", 0)
    warmup = _require_int(warmup, "warmup", 0)
    total = _require_int(total, "total", 1)
    if warmup >= total:
        msg = f"warmup={warmup} must be below total={total}: the decay needs at least one step"
        raise InvalidArgument(msg)
    f = _warmup_factor(t, warmup, total)
    return alpha0 * f, f


def warmup_linear_decay_backward(dlr, f, *, xp=None):
    return (dlr * f,)


# -- cosine decay -----------------------------------------------------------------------


def cosine_decay_forward(alpha0, alpha_min, /, *, t, total, xp=None):
    """Cosine decay from ``alpha0`` to ``alpha_min`` over ``total`` steps, ``alpha_min`` after.

    Parameters
    ----------
    alpha0 : array
        The initial rate; differentiated.
    alpha_min : array
        The final rate, ``0 <= alpha_min <= alpha0`` for a decreasing schedule; differentiated.
    t : int
        The step, ``t >= 0``.
    total : int
        The horizon ``T >= 1``.

    Notes
    -----
    ``lr = alpha_min + (alpha0 - alpha_min) (1 + cos(pi t / T)) / 2`` for ``t <= T`` and
    ``alpha_min`` after. It is computed as the convex combination ``w alpha0 + (1 - w)
    alpha_min`` with the Python float ``w = (1 + cos(pi min(t, T) / T)) / 2``, so that
    ``lr(0) = alpha0`` and ``lr(T) = alpha_min`` exactly. ``d lr / d alpha0 = w`` and
    ``d lr / d alpha_min = 1 - w``. The Lipschitz bound in ``t`` is
    ``pi (alpha0 - alpha_min) / (2 T)``.
    """
    t = _require_int(t, "t", 0)
    total = _require_int(total, "total", 1)
    w = 0.5 * (1.0 + math.cos(math.pi * min(t, total) / total))
    return alpha0 * w + alpha_min * (1.0 - w), w


def cosine_decay_backward(dlr, w, *, xp=None):
    return dlr * w, dlr * (1.0 - w)


# -- examples -----------------------------------------------------------------------------


def _positive(draw, scales):
    """A positive 0-d float64 array (drawn with shape (1,): float_arrays cannot take
    positive=True with shape () because np.abs turns the 0-d array into a scalar)."""
    return draw(float_arrays((1,), scale=draw(st.sampled_from(scales)), positive=True)).reshape(())


@st.composite
def _step_examples(draw):
    alpha0 = _positive(draw, [1e-3, 0.1, 1.0])
    gamma = np.asarray(draw(st.floats(0.05, 1.0)))
    return Example((alpha0, gamma), {"t": draw(st.integers(0, 60)), "step_size": draw(st.integers(1, 10))})


@st.composite
def _decay_examples(draw):
    alpha0 = _positive(draw, [1e-3, 0.1, 1.0])
    k = _positive(draw, [1e-3, 1e-2, 0.1])
    return Example((alpha0, k), {"t": draw(st.integers(0, 100))})


@st.composite
def _warmup_examples(draw):
    total = draw(st.integers(1, 60))
    warmup = draw(st.integers(0, total - 1))
    params = {"t": draw(st.integers(0, total + 5)), "warmup": warmup, "total": total}
    return Example((_positive(draw, [1e-3, 0.1, 1.0]),), params)


@st.composite
def _cosine_examples(draw):
    alpha0 = _positive(draw, [1e-3, 0.1, 1.0])
    alpha_min = alpha0 * draw(st.sampled_from([0.0, 0.01, 0.5, 1.0]) | st.floats(0.0, 1.0))
    total = draw(st.integers(1, 60))
    return Example((alpha0, np.asarray(alpha_min)), {"t": draw(st.integers(0, total + 5)), "total": total})


# -- properties ----------------------------------------------------------------------------

_EPS = float(np.finfo(np.float64).eps)


def _curve(forward, example, xp, ts):
    """The rates at the steps ``ts`` (host float64), the example's own ``t`` replaced."""
    inputs = tuple(xp.asarray(a) for a in example.inputs)
    params = {k: v for k, v in example.params.items() if k != "t"}
    return np.array([float(np.asarray(to_numpy(forward(*inputs, t=t, **params)[0]))) for t in ts])


def _check_curve(name, lr, *, alpha0, lipschitz, decreasing_from=0, jumps_at=None, start=None):
    """Shared assertions: lr >= 0, lr(0), monotone after ``decreasing_from``, bounded jumps."""
    assert np.all(np.isfinite(lr)) and np.all(lr >= 0), f"{name}: negative or non-finite rate {lr.tolist()}"
    start = alpha0 if start is None else start
    assert abs(lr[0] - start) <= 4 * _EPS * abs(start), f"{name}: lr(0) = {lr[0]!r}, expected {start!r}"
    slack = 8 * _EPS * max(abs(alpha0), np.max(lr))
    tail = lr[decreasing_from:]
    up = np.flatnonzero(np.diff(tail) > slack)
    assert not up.size, f"{name}: the rate increases from t = {up[0] + decreasing_from} to {up[0] + decreasing_from + 1} ({tail[up[0]]!r} -> {tail[up[0] + 1]!r})"
    jumps = np.abs(np.diff(lr))
    big = np.flatnonzero(jumps > lipschitz * (1 + 1e-12) + slack)
    assert not big.size, f"{name}: |lr({big[0] + 1}) - lr({big[0]})| = {jumps[big[0]]!r} exceeds the Lipschitz bound {lipschitz!r}"
    if jumps_at is not None:
        moved = np.flatnonzero(jumps > 0) + 1
        stray = [int(t) for t in moved if t % jumps_at]
        assert not stray, f"{name}: the rate changes at t = {stray}, which are not multiples of the step size {jumps_at}"


def _step_properties(example, xp):
    alpha0, gamma = (float(a) for a in example.inputs)
    s = example.params["step_size"]
    lr = _curve(step_decay_forward, example, xp, range(4 * s + 2))
    # Piecewise constant: jumps only at multiples of s, each at most alpha0 (1 - gamma).
    _check_curve("step_decay", lr, alpha0=alpha0, lipschitz=alpha0 * (1.0 - gamma), jumps_at=s)


def _exponential_properties(example, xp):
    alpha0, k = (float(a) for a in example.inputs)
    lr = _curve(exponential_decay_forward, example, xp, range(50))
    _check_curve("exponential_decay", lr, alpha0=alpha0, lipschitz=alpha0 * k)


def _inverse_time_properties(example, xp):
    alpha0, k = (float(a) for a in example.inputs)
    lr = _curve(inverse_time_decay_forward, example, xp, range(50))
    _check_curve("inverse_time_decay", lr, alpha0=alpha0, lipschitz=alpha0 * k)


def _warmup_properties(example, xp):
    (alpha0,) = (float(a) for a in example.inputs)
    w, total = example.params["warmup"], example.params["total"]
    lr = _curve(warmup_linear_decay_forward, example, xp, range(total + 3))
    bound = alpha0 * max(1.0 / w if w else 0.0, 1.0 / (total - w))
    _check_curve("warmup_linear_decay", lr, alpha0=alpha0, lipschitz=bound, decreasing_from=w, start=0.0 if w else alpha0)
    assert lr[w] == alpha0, f"warmup_linear_decay: lr(warmup={w}) = {lr[w]!r}, expected the peak {alpha0!r}"
    assert np.all(np.diff(lr[: w + 1]) >= 0), f"warmup_linear_decay: the rate decreases during warm-up: {lr[: w + 1].tolist()}"
    assert np.all(lr[total:] == 0), f"warmup_linear_decay: lr(t >= total={total}) = {lr[total:].tolist()}, expected 0"


def _cosine_properties(example, xp):
    alpha0, alpha_min = (float(a) for a in example.inputs)
    total = example.params["total"]
    lr = _curve(cosine_decay_forward, example, xp, range(total + 3))
    _check_curve("cosine_decay", lr, alpha0=alpha0, lipschitz=math.pi * (alpha0 - alpha_min) / (2 * total))
    assert np.all(lr[total:] == alpha_min), f"cosine_decay: lr(t >= total={total}) = {lr[total:].tolist()}, expected alpha_min = {alpha_min!r}"
    assert np.all(lr >= alpha_min - 8 * _EPS * alpha0), f"cosine_decay: the rate falls below alpha_min = {alpha_min!r}: {lr.tolist()}"


register(Op("step_decay", "schedule", step_decay_forward, step_decay_backward, _step_examples, "step decay alpha0 * gamma ** floor(t / s)", batched=True, reference="step_decay", properties=_step_properties))
register(Op("exponential_decay", "schedule", exponential_decay_forward, exponential_decay_backward, _decay_examples, "exponential decay alpha0 * exp(-k t)", batched=True, reference="exponential_decay", properties=_exponential_properties))
register(Op("inverse_time_decay", "schedule", inverse_time_decay_forward, inverse_time_decay_backward, _decay_examples, "inverse-time decay alpha0 / (1 + k t)", batched=True, reference="inverse_time_decay", properties=_inverse_time_properties))
register(Op("warmup_linear_decay", "schedule", warmup_linear_decay_forward, warmup_linear_decay_backward, _warmup_examples, "linear warm-up to alpha0, then linear decay to 0", batched=True, reference="warmup_linear_decay", properties=_warmup_properties))
register(Op("cosine_decay", "schedule", cosine_decay_forward, cosine_decay_backward, _cosine_examples, "cosine decay from alpha0 to alpha_min", batched=True, reference="cosine_decay", properties=_cosine_properties))
