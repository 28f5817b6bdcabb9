"""Hypothesis strategies for gradient checks.

Hypothesis' own array fill repeats a handful of values (ties everywhere, fatal for max and
maxout) and struggles past about a thousand elements; a fill from a drawn seed avoids both
but cannot shrink (a shrunk example is "the first draws of ``default_rng(0)``"). So arrays
are built from choices Hypothesis shrinks well, and ties are broken by construction:

* each of the first 64 elements is two drawn integers: a coarse value, a standard normal
  quantile rounded to a quarter (0 to 2.75 either side), and a fine offset within that
  quarter, in 1/512ths ordered simplest first (0, -1/8, 1/16, -1/16, 1/32, ...). Both
  shrink toward 0, so a shrunk element is 0, a quarter, or a few binary digits beyond;
* a drawn seed adds to each of them a jitter within its 1/512 cell and fills the elements
  past the 64th with standard normal values. Seed 0, where Hypothesis starts and where it
  shrinks to, means no jitter and a fill of zeros. A generated example (seed not 0) is thus
  continuous and roughly normal: no simple values, near-ties as rare as among normal values;
  the jitter is too small for most failures to need, so the shrinker drops it;
* a value that repeats (a shrunk example's zeros, say) is moved to the nearest free point
  ``v + step, v - step, v + 2 step, ...``, ``step`` being half the scale for up to 8
  elements and halved each time the size doubles, so even an array of one repeated value
  stays within 2 scales of it: the all-zero choices give ``[0, 0.5, -0.5, 1, -1, 1.5]`` for
  six elements at scale 1. Fewer distinct values cannot be had without ties; what shrinks
  instead is the number of elements that are not part of such a spread;
* ``bound`` wraps the values beyond it around into it (with seed 0, moves them to 0, to be
  spread inside it: wrapping simple values gives 17-digit ones and near-ties);
* the scale, when drawn, is a power of ten that shrinks to 1; the specials are planted last,
  at distinct places, and the other elements moved off them; only a planted zero or tie
  repeats a value.

A shrunk failure therefore reads like ``[[1.25, 0, 0.5], [-0.5, 1, -1]]`` (an element above
1 where the spread has none) or ``[[2.5, 0, 5], [-5, 10, -10]]`` (the same at a drawn scale
of 10). Every array is generated on the host in float64 (then cast to the requested dtype),
so NumPy and CuPy see bit-identical inputs for the same example.

>>> from hypothesis import find, settings
>>> find(float_arrays((2, 3), scale=1.0), lambda x: True, settings=settings(database=None))
array([[ 0. ,  0.5, -0.5],
       [ 1. , -1. ,  1.5]])

Two layers:

* host strategies, :func:`float_arrays` and :func:`shapes` (NumPy float64 arrays; the
  catalog's examples use them), :func:`hyperparameters` for optimizers, and
  :func:`target_error` for Hypothesis' targeted search;
* a namespace bound to one backend, :func:`make_strategies`, whose strategies move the
  arrays to that backend's device: arrays of given or generated shapes, positive arrays,
  logits, labels, one-hot and probability targets, arrays kept away from or pushed onto
  kinks and ties, and the inputs of any catalog op.

Arguments are checked when the strategy is built, not when it is drawn from: a bad value
raises :class:`gradverify.InvalidArgument` naming it and the fix. Where it makes sense an
argument may be a value or a strategy of values (shapes, scales, batch sizes, class counts,
hyperparameters); a strategy's draws are checked as they are drawn.

>>> import array_api_compat.numpy as xp
>>> s = make_strategies(xp)
>>> x = s.arrays((2, 3)).example()
>>> x.shape, str(x.dtype)
((2, 3), 'float64')
"""

import itertools
import math
import numbers
import statistics

import numpy as np
from hypothesis import strategies as st

from gradverify._errors import InvalidArgument

__all__ = [
    "FLOAT_DTYPES",
    "OPTIMIZERS",
    "SPECIALS",
    "Strategies",
    "float_arrays",
    "hyperparameters",
    "make_strategies",
    "shapes",
    "target_error",
]

SPECIALS = ("zero", "negative_zero", "tie", "large", "tiny")
FLOAT_DTYPES = ("float16", "float32", "float64")
# Default scales of logits: 1 first (it shrinks there), then peaked and saturated rows.
LOGIT_SCALES = (1.0, 0.1, 10.0, 100.0)
# The finite-difference step is about 6e-6 of an array's rms (eps ** (1/3)); a kink 1e-3 of
# the scale away is more than a hundred steps away, and so is a tie of that width.
DEFAULT_MARGIN = 1e-3
# The floor of log10 of a relative error passed to hypothesis.target (an exact gradient).
TARGET_FLOOR = -300.0

# Elements drawn one by one, each two choices Hypothesis shrinks; past them a seeded fill (a
# thousand element-wise draws would make every example slow and hit Hypothesis' size limits).
_HEAD = 64
# An element, in units of the scale, is coarse + fine + jitter:
# * coarse: a choice k in [-_COARSE, _COARSE] read as _COARSE_VALUES[|k|] with k's sign, the
#   standard normal's quantile at (|k| + _COARSE + 1/2) / (2 _COARSE + 1) rounded to a
#   quarter (0 to 2.75). Hypothesis draws k uniformly (its integers are uniform near 0 and
#   it favours the ends only of ranges wider than 127), so this is a normal sample rounded
#   to quarters, cut off near 2.7; k shrinks toward 0, and so does the value;
# * fine: a choice f read as _FINE_OFFSETS[f], the offsets j / 512 for j in [-64, 63] (a
#   quarter's width) in the order a person finds simple: 0, -1/8, 1/16, -1/16, 1/32, ... so
#   a shrunk offset has few binary digits; drawn uniformly, it spreads the quarters evenly;
# * jitter: uniform within the 1/512 cell, from the drawn seed (none for seed 0). It makes
#   generated values continuous (near-ties as rare as among normal values) and is too small
#   to matter to most conditions, so the shrinker can drop it.
_COARSE = 63
_QUARTER = 0.25
_COARSE_VALUES = np.array(
    [round(statistics.NormalDist().inv_cdf((_COARSE + j + 0.5) / (2 * _COARSE + 1)) / _QUARTER) * _QUARTER for j in range(_COARSE + 1)]
)
_FINE = 512


def _simplicity(j):
    """Sort key of the offset j / _FINE: 0 first, then fewer binary digits, then smaller, then positive."""
    digits = 0 if j == 0 else (abs(j) & -abs(j)).bit_length()  # position of the lowest set bit
    return (j != 0, -digits, abs(j), j < 0)


_FINE_OFFSETS = np.array(sorted(range(-_FINE // 8, _FINE // 8), key=_simplicity)) / _FINE
_COARSE_CHOICE = st.integers(-_COARSE, _COARSE)
_FINE_CHOICE = st.integers(0, _FINE_OFFSETS.size - 1)
# The seed of the jitter and of the fill past _HEAD; 0 means none. From -2, not 0: Hypothesis
# favours the two lowest and two highest values of a range wider than 127, and a generated
# seed should seldom be 0 (it is still where the seed shrinks to).
_SEED = st.integers(-2, 2**32)


# -- argument checks ------------------------------------------------------------------------


def _is_strategy(value):
    return isinstance(value, st.SearchStrategy)


def _draw(draw, value, check=None):
    """``value``, or a draw from it when it is a strategy (checked by ``check`` then)."""
    if not _is_strategy(value):
        return value
    drawn = draw(value)
    return check(drawn) if check is not None else drawn


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _int_arg(value, name, minimum, *, strategy=True):
    if strategy and _is_strategy(value):
        return value
    if not _is_int(value) or value < minimum:
        alt = " (or a strategy of them)" if strategy else ""
        msg = f"{name}={value!r} must be an integer >= {minimum}{alt}"
        raise InvalidArgument(msg)
    return int(value)


def _bool_arg(value, name):
    if not isinstance(value, (bool, np.bool_)):
        msg = f"{name}={value!r} must be True or False"
        raise InvalidArgument(msg)
    return bool(value)


def _positive_arg(value, name, *, strategy=True, allow_none=False):
    """A positive finite number (or a strategy of them; None where allowed)."""
    if allow_none and value is None:
        return None
    if strategy and _is_strategy(value):
        return value
    if not _is_real(value) or not math.isfinite(value) or value <= 0:
        extra = " (or a strategy of them)" if strategy else ""
        extra += ", or None to draw one" if allow_none else ""
        msg = f"{name}={value!r} must be a positive finite number{extra}"
        raise InvalidArgument(msg)
    return float(value)


def _shape_arg(shape, name="shape"):
    """A shape tuple, a strategy of shape tuples, or None for :func:`shapes`."""
    if shape is None:
        return shapes()
    if _is_strategy(shape):
        return shape
    if _is_int(shape):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not all(_is_int(n) and n >= 0 for n in shape):
        msg = f"{name}={shape!r} must be a tuple of non-negative integers, a strategy of them (e.g. shapes()), or None"
        raise InvalidArgument(msg)
    return tuple(int(n) for n in shape)


def _checked_shape(shape, name="shape"):
    """A drawn shape, checked as a value."""
    if _is_strategy(shape):
        msg = f"the {name} strategy drew another strategy ({shape!r}); draw tuples of integers"
        raise InvalidArgument(msg)
    return _shape_arg(shape, name)


def _specials_arg(specials):
    if isinstance(specials, str) or not isinstance(specials, (tuple, list, set, frozenset)):
        msg = f"specials={specials!r} must be a tuple of names from {SPECIALS} (or () for none)"
        raise InvalidArgument(msg)
    unknown = set(specials) - set(SPECIALS)
    if unknown:
        msg = f"specials={sorted(unknown)} are unknown; choose from {SPECIALS}"
        raise InvalidArgument(msg)
    return tuple(s for s in SPECIALS if s in specials)


def _dtype_arg(dtype, xp=None):
    """The name of a real floating dtype that ``xp`` (when given) has."""
    if isinstance(dtype, str):
        name = dtype
    else:
        from gradverify._backend import dtype_name

        name = dtype_name(dtype) if dtype is not None else repr(dtype)
    if name not in FLOAT_DTYPES:
        msg = f"dtype={dtype!r} must be one of {', '.join(FLOAT_DTYPES)} (a name or the library's dtype)"
        raise InvalidArgument(msg)
    if xp is not None and getattr(xp, name, None) is None:
        msg = f"dtype={name!r} is not available on the {_backend_name(xp)} backend; choose float32 or float64"
        raise InvalidArgument(msg)
    return name


def _kinks_arg(kinks):
    if _is_real(kinks):
        kinks = (kinks,)
    if not isinstance(kinks, (tuple, list)) or not kinks or not all(_is_real(k) and math.isfinite(k) for k in kinks):
        msg = f"kinks={kinks!r} must be a non-empty tuple of finite numbers, the points where the function has a kink (e.g. (0.0,) for ReLU)"
        raise InvalidArgument(msg)
    return tuple(sorted({float(k) for k in kinks}))


def _size_args(batch, classes):
    """Batch size (default 1 to 5, shrinking to 1) and class count (default 2 to 6)."""
    batch = _int_arg(st.integers(1, 5) if batch is None else batch, "batch", 1)
    classes = _int_arg(st.integers(2, 6) if classes is None else classes, "classes", 1)
    return batch, classes


def _check_range(name, low, high, minimum):
    if not (_is_int(low) and _is_int(high) and minimum <= low <= high):
        msg = f"min_{name}={low!r}, max_{name}={high!r}: need integers with {minimum} <= min_{name} <= max_{name}"
        raise InvalidArgument(msg)


# -- host strategies ------------------------------------------------------------------------


def shapes(*, min_dims=1, max_dims=2, min_side=1, max_side=5):
    """Array shapes, batch size 1 included (it shrinks toward the smallest).

    >>> shapes(max_dims=1, max_side=1).example()
    (1,)
    """
    _check_range("dims", min_dims, max_dims, 0)
    _check_range("side", min_side, max_side, 1)
    return st.lists(st.integers(min_side, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


def float_arrays(shape=None, *, scale=None, specials=SPECIALS, positive=False):
    """Float64 NumPy arrays of ``shape`` (a tuple or a strategy of tuples; default :func:`shapes`).

    ``scale`` (a positive number, a strategy of them, or ``None`` to draw a power of ten from
    1e-3 to 1e3, shrinking to 1) multiplies roughly standard normal values, all distinct (the
    module's docstring says how they are drawn and how they shrink); ``specials`` names the
    special values that may be planted, at up to three distinct places: exact zeros,
    negative zeros, ties with the next element, large magnitudes (1e4 to about 5e4 times the
    scale) and tiny ones (1e-8 to about 5e-8 times). Only planted specials repeat a value.
    ``positive=True`` takes absolute values (zeros then become the scale).

    >>> x = float_arrays((3,), scale=2.0, specials=()).example()
    >>> x.shape, x.dtype.name
    ((3,), 'float64')
    """
    shape = _shape_arg(shape)
    scale = _positive_arg(scale, "scale", allow_none=True)
    specials = _specials_arg(specials)
    positive = _bool_arg(positive, "positive")
    return _float_arrays(shape, scale, specials, positive)


@st.composite
def _float_arrays(draw, shape, scale, specials, positive, bound=None):
    shape = _draw(draw, shape, _checked_shape)
    if scale is None:
        scale = 10.0 ** draw(st.integers(-3, 3))
    else:
        scale = _draw(draw, scale, lambda s: _positive_arg(s, "scale", strategy=False))
    n = math.prod(shape)
    seed = draw(_SEED)
    head = min(n, _HEAD)
    x = _lattice(draw, n, head) * scale
    if positive:
        x = np.abs(x)
        x[x == 0] = scale
    step = _spread_step(n, scale, bound, positive)
    priority = np.zeros(n, dtype=np.int8)
    # Without a seed the values are simple and stay so: the ones beyond the bound move to the
    # simplest value inside, to be spread like any repeat (wrapping a simple value around a
    # bound such as 0.3 gives 17-digit values, and near-ties). With one they are continuous.
    fallback = None if seed else (min(scale, bound) if positive and bound is not None else 0.0)
    if seed:
        rng = np.random.default_rng(abs(seed))
        # Repeats spread before the jitter: drawn elements whose choices agree (a shrunk
        # example's zeros, a copy Hypothesis made) end a step apart, not a jitter apart.
        _break_ties(x[:head], step, priority[:head], positive=positive, bound=None)
        x[:head] += rng.uniform(-0.5, 0.5, size=head) * (scale / _FINE)
        x[head:] = rng.standard_normal(n - head) * scale
        if positive:
            x = np.abs(x)
            x[x == 0] = scale
    _into_bound(x, bound, positive, fallback)
    _break_ties(x, step, priority, positive=positive, bound=bound)
    if not n or not specials:
        return x.reshape(shape)
    planted = draw(st.lists(st.tuples(st.sampled_from(specials), st.integers(0, n - 1)), max_size=min(3, n), unique_by=lambda p: p[1]))
    ties = []
    for kind, k in planted:
        priority[k] = 1
        if kind == "tie":
            ties.append(k)
        elif kind in ("zero", "negative_zero") and positive:
            x[k] = scale if bound is None else min(scale, bound)  # the documented stand-in for 0
        elif kind in ("zero", "negative_zero"):
            x[k] = 0.0 if kind == "zero" else -0.0
            priority[k] = 2  # several planted zeros stay equal: that tie is the special
        elif kind == "large":
            x[k] = math.copysign(1e4 * (scale + abs(x[k])), x[k])
        else:  # tiny
            x[k] = math.copysign(1e-8 * (scale + abs(x[k])), x[k])
    _into_bound(x, bound, positive, fallback)
    _break_ties(x, step, priority, positive=positive, bound=bound)
    for k in ties:
        if n > 1:
            x[k] = x[(k + 1) % n]
    return x.reshape(shape)


def _lattice(draw, n, head):
    """``n`` float64 values in units of the scale: coarse + fine drawn for the first ``head``, then zeros."""
    z = np.zeros(n)
    for i in range(head):
        k, f = draw(_COARSE_CHOICE), draw(_FINE_CHOICE)
        z[i] = math.copysign(_COARSE_VALUES[abs(k)], k) + _FINE_OFFSETS[f] + 0.0  # + 0.0: no -0.0
    return z


def _spread_step(n, scale, bound, positive):
    """The spacing of the points a repeated value moves to: half the scale for up to 8
    elements, then halved as the size doubles (an array of one repeated value spans at most
    2 scales either side of it); within ``bound`` small enough that all ``n`` fit."""
    step = scale * 2.0 ** -max(1, math.ceil(math.log2(max(n, 1))) - 2)
    if bound is not None:
        width = bound if positive else 2.0 * bound
        step = min(step, 2.0 ** math.floor(math.log2(width / (n + 2))))
    return step


def _into_bound(x, bound, positive, fallback):
    """Values beyond ``bound`` (in place) set to ``fallback``, or wrapped around into
    [-bound, bound) ((0, bound] for positive arrays) when it is None. No clipping (no ties at
    the bound) and no draws (the seed stays shrinkable); values far beyond land about
    uniformly."""
    if bound is None:
        return
    outside = np.abs(x) > bound
    if not outside.any():
        return
    if fallback is not None:
        x[outside] = fallback
    elif positive:
        wrapped = np.mod(x[outside], bound)
        wrapped[wrapped == 0] = bound
        x[outside] = wrapped
    else:
        x[outside] = np.mod(x[outside] + bound, 2.0 * bound) - bound


def _break_ties(flat, step, priority, *, positive, bound):
    """Make the elements of ``flat`` (1-d, in place) distinct: of each group of equal values
    the element of highest ``priority`` (the first of them) keeps the value, and all of
    priority 2 (planted zeros) keep it; the others move to the nearest free points
    ``v + step, v - step, v + 2 step, ...`` that stay positive or within ``bound`` as asked."""
    ordered = np.sort(flat)
    if not np.any(ordered[1:] == ordered[:-1]):  # the usual case: one sort, nothing to do
        return
    taken = set(flat.tolist())  # floats: 0.0 and -0.0 are one key, as they are equal
    order = np.argsort(flat, kind="stable")
    values = flat[order]
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    for a, b in zip(starts, np.r_[starts[1:], values.size]):
        if b - a < 2:
            continue
        members = np.sort(order[a:b])
        fixed = priority[members] == 2
        keep = fixed if fixed.any() else np.arange(members.size) == np.argmax(priority[members])
        points = _free_points(float(values[a]), step, taken, positive, bound)
        for m, point in zip(members[~keep], points):
            flat[m] = point
            taken.add(point)


def _free_points(v, step, taken, positive, bound):
    """Points ``v +- j * step`` (j = 1, 2, ...) not in ``taken`` (read as it grows), inside the limits."""
    for j in itertools.count(1):
        inside = False
        for point in (v + j * step, v - j * step):
            if (bound is None or abs(point) <= bound) and (point > 0 or not positive):
                inside = True
                if point not in taken:
                    yield point
        if not inside:  # _spread_step leaves room for every element; this is a bug
            msg = f"no free point left near {v} with step {step} (bound={bound}, positive={positive})"
            raise RuntimeError(msg)


# Optimizer hyperparameters, named as in gradverify.catalog.optimizers (whose examples draw
# from here). Each value starts at (and shrinks to) a common textbook choice, then ranges
# over the valid interval.
_LR = st.one_of(st.sampled_from([0.1, 1e-3, 0.01, 1.0]), st.floats(1e-5, 1.0))
_DECAY = st.one_of(st.sampled_from([0.9, 0.0, 0.5, 0.99, 0.999]), st.floats(0.0, 0.999))
_EPS = st.sampled_from([1e-8, 1e-6, 1e-4, 1e-3])
_WEIGHT_DECAY = st.one_of(st.sampled_from([0.0, 1e-4, 0.01, 0.1]), st.floats(0.0, 1.0))

_HYPER_CHECKS = {
    "lr": ("a learning rate, a number in (0, 10]", lambda v: _is_real(v) and 0 < v <= 10),
    "momentum": ("a decay in [0, 1)", lambda v: _is_real(v) and 0 <= v < 1),
    "rho": ("a decay in [0, 1)", lambda v: _is_real(v) and 0 <= v < 1),
    "beta1": ("a decay in [0, 1)", lambda v: _is_real(v) and 0 <= v < 1),
    "beta2": ("a decay in [0, 1)", lambda v: _is_real(v) and 0 <= v < 1),
    "eps": ("a positive number below 1", lambda v: _is_real(v) and 0 < v < 1),
    "weight_decay": ("a number in [0, 1]", lambda v: _is_real(v) and 0 <= v <= 1),
    "t": ("a step count, an integer >= 0 (>= 1 for adam and adamw)", lambda v: _is_int(v) and v >= 0),
    "bias_correction": ("True or False", lambda v: isinstance(v, (bool, np.bool_))),
}

OPTIMIZERS = {
    "sgd": {"lr": _LR},
    "sgd_weight_decay": {"lr": _LR, "weight_decay": _WEIGHT_DECAY},
    "momentum": {"lr": _LR, "momentum": _DECAY},
    "nesterov": {"lr": _LR, "momentum": _DECAY},
    "adagrad": {"lr": _LR, "eps": _EPS},
    "adagrad_rms": {"lr": _LR, "t": st.integers(0, 10), "eps": _EPS},
    "rmsprop": {"lr": _LR, "rho": _DECAY, "eps": _EPS},
    "adam": {"lr": _LR, "t": st.integers(1, 10), "beta1": _DECAY, "beta2": _DECAY, "eps": _EPS, "bias_correction": st.booleans()},
}
OPTIMIZERS["adamw"] = {**OPTIMIZERS["adam"], "weight_decay": _WEIGHT_DECAY}


def hyperparameters(optimizer, **fixed):
    """Dicts of ``optimizer``'s hyperparameters, each drawn from its valid range.

    ``fixed`` pins a hyperparameter to a value or draws it from your strategy instead:
    ``hyperparameters("adam", lr=1e-3, beta2=st.floats(0.9, 0.999))``. The names follow
    :data:`OPTIMIZERS` (also the home of the ranges :mod:`gradverify.catalog.optimizers` draws its examples from): ``lr`` in (0, 1],
    decays ``momentum``, ``rho``, ``beta1``, ``beta2`` in [0, 1), ``eps`` from 1e-8 to
    1e-3, ``weight_decay`` in [0, 1], the step count ``t`` (from 1 for Adam).

    >>> sorted(hyperparameters("momentum").example())
    ['lr', 'momentum']
    >>> hyperparameters("sgd", lr=0.5).example()
    {'lr': 0.5}
    """
    if optimizer not in OPTIMIZERS:
        msg = f"optimizer={optimizer!r} is unknown; choose from {', '.join(sorted(OPTIMIZERS))}"
        raise InvalidArgument(msg)
    spec = dict(OPTIMIZERS[optimizer])
    for key, value in fixed.items():
        if key not in spec:
            msg = f"{optimizer} has no hyperparameter {key!r}; it has {', '.join(spec)}"
            raise InvalidArgument(msg)
        spec[key] = value if _is_strategy(value) else st.just(_hyper_value(optimizer, key, value))

    def check(params):
        return {k: _hyper_value(optimizer, k, v) for k, v in params.items()}

    return st.fixed_dictionaries(spec).map(check)


def _hyper_value(optimizer, key, value):
    what, ok = _HYPER_CHECKS[key]
    if not ok(value) or (key == "t" and optimizer in ("adam", "adamw") and value < 1) or (_is_real(value) and not math.isfinite(value)):
        msg = f"{optimizer} hyperparameter {key}={value!r} must be {what}"
        raise InvalidArgument(msg)
    return value


def target_error(result, *, label=None):
    """Steer Hypothesis toward inputs where a gradient is worst (targeted property-based testing).

    Calls :func:`hypothesis.target` with ``log10`` of the relative error (a
    :class:`~gradverify.VerificationResult`'s ``max_rel_error``, or a number), floored at
    -300 for an exact gradient; ``target`` maximizes, so later examples drift toward larger
    errors. Several calls in one example get distinct labels. Outside a Hypothesis test it
    does nothing and returns ``None``; inside, it returns the score. The ``gradcheck``
    fixture of the pytest plugin calls it for every check.
    """
    error = getattr(result, "max_rel_error", result)
    if not _is_real(error):
        msg = f"result={result!r} must be a VerificationResult or a relative error (a number)"
        raise InvalidArgument(msg)
    if label is not None and not isinstance(label, str):
        raise InvalidArgument(f"label={label!r} must be a string")
    import hypothesis

    from gradverify import _hypothesis_adapter

    context = _hypothesis_adapter.build_context()
    if context is None:
        return None
    error = float(error)
    if math.isnan(error) or error == math.inf:
        score = -TARGET_FLOOR
    else:
        score = max(math.log10(error) if error > 0 else TARGET_FLOOR, TARGET_FLOOR)
    base = label or f"gradverify: log10 max rel. error ({getattr(result, 'function', 'gradient')})"
    seen = _hypothesis_adapter.target_labels(context)
    name, k = base, 1
    while name in seen:
        k += 1
        name = f"{base} #{k}"
    hypothesis.target(score, label=name)
    return score


# -- the namespace bound to one backend -----------------------------------------------------


def _backend_name(xp):
    from gradverify._backend import backend_name

    return backend_name(xp)


def make_strategies(xp):
    """Strategies whose arrays land on ``xp``'s default device (``xp`` a namespace or a backend name).

    >>> s = make_strategies("numpy")
    >>> logits, labels = s.classification(batch=1, classes=3).example()
    >>> logits.shape, labels.shape
    ((1, 3), (1,))
    """
    if isinstance(xp, str):
        from gradverify._backend import load_backend

        xp = load_backend(xp)
    if not callable(getattr(xp, "asarray", None)):
        msg = f"xp={xp!r} is not an array namespace; pass one (the xp fixture, array_api_compat.numpy, ...) or a backend name such as 'numpy'"
        raise InvalidArgument(msg)
    return Strategies(xp)


class Strategies:
    """Strategies bound to the array namespace ``xp``; build it with :func:`make_strategies`.

    Every array is generated on the host (NumPy float64, from choices Hypothesis draws and
    shrinks, see the module's docstring), cast to ``dtype`` there, and moved to ``xp`` with
    ``xp.asarray``.
    """

    def __init__(self, xp):
        self.xp = xp
        self.backend = _backend_name(xp)

    def __repr__(self):
        return f"make_strategies({self.backend!r})"

    # helpers

    def _device(self, dtype):
        name = _dtype_arg(dtype, self.xp)

        def move(host):
            if host.dtype.kind == "f":
                host = host.astype(name)
            return self.xp.asarray(host)

        # Hypothesis prints a drawn array as this call: ``xp.asarray(array([...]))``.
        move.__name__ = move.__qualname__ = "xp.asarray" if name == "float64" else f"xp.asarray_{name}"
        return move

    def shapes(self, **kwargs):
        """:func:`shapes` (host tuples)."""
        return shapes(**kwargs)

    def hyperparameters(self, optimizer, **fixed):
        """:func:`hyperparameters` (host values)."""
        return hyperparameters(optimizer, **fixed)

    # arrays

    def arrays(self, shape=None, *, scale=None, bound=None, specials=SPECIALS, positive=False, dtype="float64"):
        """Float arrays of ``shape`` (a tuple, a strategy, or ``None`` for :func:`shapes`).

        Values are roughly normal with standard deviation ``scale`` (drawn from 1e-3 to 1e3
        when ``None``) plus the planted ``specials`` (see :func:`float_arrays`); ``bound``
        keeps every ``|x| <= bound`` by wrapping the values beyond it around into
        ``[-bound, bound)`` (no clipping, so no ties at the bound), still all distinct.
        """
        shape = _shape_arg(shape)
        scale = _positive_arg(scale, "scale", allow_none=True)
        bound = _positive_arg(bound, "bound", strategy=False, allow_none=True)
        specials = _specials_arg(specials)
        positive = _bool_arg(positive, "positive")
        return _float_arrays(shape, scale, specials, positive, bound).map(self._device(dtype))

    def positive_arrays(self, shape=None, *, scale=None, min_value=None, dtype="float64"):
        """Arrays with every element ``> 0`` (inputs of log, sqrt, a variance).

        ``min_value`` (a positive number) keeps every element at or above it: the values
        are then ``min_value + |normal| * scale``. Without it, tiny values (1e-8 of the
        scale) may be planted.
        """
        shape = _shape_arg(shape)
        scale = _positive_arg(scale, "scale", allow_none=True)
        min_value = _positive_arg(min_value, "min_value", strategy=False, allow_none=True)
        move = self._device(dtype)
        if min_value is None:
            return _float_arrays(shape, scale, ("tiny",), True).map(move)
        return _float_arrays(shape, scale, (), True).map(lambda x: move(min_value + x))

    def logits(self, batch=None, classes=None, *, scale=None, specials=("zero", "tie"), dtype="float64"):
        """Unnormalized scores of shape ``(batch, classes)``.

        ``batch`` and ``classes`` are integers or strategies (defaults: 1 to 5 rows, shrinking
        to 1, and 2 to 6 classes); ``scale`` defaults to one of 1, 0.1, 10 and 100 (peaked
        and saturated softmax rows).
        """
        batch, classes, scale, specials = self._classification_args(batch, classes, scale, specials)
        return _logits(batch, classes, scale, specials).map(self._device(dtype))

    def labels(self, batch=None, classes=None):
        """Integer class labels in ``[0, classes)``, shape ``(batch,)``, int64 (each shrinks to 0)."""
        batch, classes = _size_args(batch, classes)
        return _labels(batch, classes).map(self._device("float64"))

    def one_hot(self, batch=None, classes=None, *, dtype="float64"):
        """One-hot float targets of shape ``(batch, classes)``."""
        batch, classes = _size_args(batch, classes)
        return _one_hot(batch, classes).map(self._device(dtype))

    def probabilities(self, batch=None, classes=None, *, dtype="float64"):
        """Probability targets of shape ``(batch, classes)``: positive rows that sum to 1 (Dirichlet(1); uniform rows when shrunk)."""
        batch, classes = _size_args(batch, classes)
        return _probabilities(batch, classes).map(self._device(dtype))

    def classification(self, batch=None, classes=None, *, target="labels", scale=None, specials=("zero", "tie"), dtype="float64"):
        """Pairs ``(logits, targets)`` of matching sizes.

        ``target`` is ``"labels"`` (int64, shape ``(batch,)``), ``"one_hot"`` or
        ``"probabilities"`` (``(batch, classes)`` floats).
        """
        kinds = ("labels", "one_hot", "probabilities")
        if target not in kinds:
            msg = f"target={target!r} must be one of {', '.join(map(repr, kinds))}"
            raise InvalidArgument(msg)
        batch, classes, scale, specials = self._classification_args(batch, classes, scale, specials)
        move = self._device(dtype)

        def each(pair):
            return move(pair[0]), move(pair[1])

        each.__name__ = each.__qualname__ = f"{move.__name__}_each"
        return _classification(batch, classes, scale, specials, target).map(each)

    def _classification_args(self, batch, classes, scale, specials):
        batch, classes = _size_args(batch, classes)
        scale = _positive_arg(scale if scale is not None else st.sampled_from(LOGIT_SCALES), "scale")
        return batch, classes, scale, _specials_arg(specials)

    # kinks and ties

    def away_from_kinks(self, shape=None, *, kinks=(0.0,), margin=DEFAULT_MARGIN, distinct=False, scale=None, dtype="float64"):
        """Arrays with every element at least ``margin * rms(x)`` away from each kink point.

        ``kinks`` are the points where the function is not differentiable (``(0.0,)`` for
        ReLU, ``(-1.0, 1.0)`` for a clip); ``distinct=True`` also keeps every two elements
        that far apart (no near-ties for max, maxout, sort). ``margin`` is a fraction of the
        array's root mean square, the scale of the finite-difference steps; the default 1e-3
        is more than a hundred steps.
        """
        shape = _shape_arg(shape)
        kinks = _kinks_arg(kinks)
        margin = _positive_arg(margin, "margin", strategy=False)
        distinct = _bool_arg(distinct, "distinct")
        scale = _positive_arg(scale, "scale", allow_none=True)
        return _away(_float_arrays(shape, scale, (), False), kinks, margin, distinct).map(self._device(dtype))

    def on_kinks(self, shape=None, *, kinks=(0.0,), scale=None, dtype="float64"):
        """Arrays with one to three elements exactly on a kink point (where they go shrinks to the front)."""
        shape = _shape_arg(shape)
        kinks = _kinks_arg(kinks)
        scale = _positive_arg(scale, "scale", allow_none=True)
        return _onto_kinks(_float_arrays(shape, scale, (), False), kinks).map(self._device(dtype))

    def with_ties(self, shape=None, *, axis=-1, scale=None, dtype="float64"):
        """Arrays where the maximum along ``axis`` is attained twice in at least one slice.

        The default shape has at least 2 elements along every axis; a shape with fewer
        along ``axis`` cannot hold a tie and raises.
        """
        if shape is None:
            shape = shapes(min_side=2)
        shape = _shape_arg(shape)
        if not _is_int(axis):
            raise InvalidArgument(f"axis={axis!r} must be an integer")
        if isinstance(shape, tuple):
            _tie_axis(shape, axis)
        scale = _positive_arg(scale, "scale", allow_none=True)
        return _with_ties(_float_arrays(shape, scale, (), False), int(axis)).map(self._device(dtype))

    # catalog

    def catalog_inputs(self, name):
        """The examples of the catalog op ``name`` (its own ``examples()`` strategy), arrays moved to ``xp``.

        Draws :class:`gradverify.catalog.Example` with device arrays and the same params.
        """
        from gradverify import catalog

        op = catalog.get(name)
        xp = self.xp

        def move(example):
            inputs = tuple(xp.asarray(a) if isinstance(a, np.ndarray) else a for a in example.inputs)
            return catalog.Example(inputs, dict(example.params))

        return op.examples().map(move)


def _draw_sizes(draw, batch, classes):
    n = _draw(draw, batch, lambda v: _int_arg(v, "batch", 1, strategy=False))
    c = _draw(draw, classes, lambda v: _int_arg(v, "classes", 1, strategy=False))
    return n, c


@st.composite
def _labels(draw, batch, classes):
    n, c = _draw_sizes(draw, batch, classes)
    return _label_fill(draw, n, c)


def _label_fill(draw, n, c):
    """Labels in [0, c): drawn one by one for the first ``_HEAD`` (each shrinks to 0), the
    rest from a drawn seed (all 0 for seed 0)."""
    head = min(n, _HEAD)
    labels = np.zeros(n, dtype=np.int64)
    label = st.integers(0, c - 1)
    for i in range(head):
        labels[i] = draw(label)
    if n > head and (seed := draw(_SEED)):
        labels[head:] = np.random.default_rng(abs(seed)).integers(0, c, size=n - head)
    return labels


@st.composite
def _one_hot(draw, batch, classes):
    n, c = _draw_sizes(draw, batch, classes)
    return np.eye(c)[_label_fill(draw, n, c)]


@st.composite
def _probabilities(draw, batch, classes):
    n, c = _draw_sizes(draw, batch, classes)
    return _prob_fill(draw, n, c)


def _prob_fill(draw, n, c):
    """Rows from Dirichlet(1) by a drawn seed; seed 0 (where it shrinks) gives uniform rows."""
    seed = draw(_SEED)
    if not seed:
        return np.full((n, c), 1.0 / c)
    p = np.random.default_rng(abs(seed)).dirichlet(np.ones(c), size=n)
    p = np.maximum(p, 1e-12)
    return p / p.sum(axis=-1, keepdims=True)


@st.composite
def _logits(draw, batch, classes, scale, specials):
    n, c = _draw_sizes(draw, batch, classes)
    return draw(_float_arrays((n, c), scale, specials, False))


@st.composite
def _classification(draw, batch, classes, scale, specials, target):
    n, c = _draw_sizes(draw, batch, classes)
    logits = draw(_float_arrays((n, c), scale, specials, False))
    if target == "probabilities":
        return logits, _prob_fill(draw, n, c)
    y = _label_fill(draw, n, c)
    if target == "one_hot":
        return logits, np.eye(c)[y]
    return logits, y


@st.composite
def _away(draw, arrays, kinks, margin, distinct):
    x = draw(arrays)
    flat = x.reshape(-1)
    if not flat.size:
        return x
    rms = float(np.sqrt(np.mean(flat * flat))) or 1.0
    gap = margin * rms
    if not distinct:
        for k in kinks:
            near = np.abs(flat - k) < gap
            flat[near] = np.where(flat[near] >= k, k + gap, k - gap)
        return x
    # Sweep in ascending order: each value at least `gap` above the previous and outside
    # every kink's band (a value pushed past a kink's band is already above the previous).
    order = np.argsort(flat, kind="stable")
    values = flat[order]
    previous = -np.inf
    for j in range(values.size):
        v = max(values[j], previous + gap)
        for k in kinks:
            if abs(v - k) < gap:
                v = k + gap
        values[j] = previous = v
    flat[order] = values
    return x


@st.composite
def _onto_kinks(draw, arrays, kinks):
    x = draw(arrays)
    flat = x.reshape(-1)
    if flat.size:
        spots = draw(st.lists(st.tuples(st.integers(0, flat.size - 1), st.sampled_from(kinks)), min_size=1, max_size=min(3, flat.size)))
        for k, point in spots:
            flat[k] = point
    return x


def _tie_axis(shape, axis):
    if not shape:
        raise InvalidArgument("with_ties needs at least a 1-d shape; a 0-d array has nothing to tie")
    if not -len(shape) <= axis < len(shape):
        raise InvalidArgument(f"axis={axis} is out of range for shape {shape}")
    if shape[axis] < 2:
        raise InvalidArgument(f"shape {shape} has {shape[axis]} element(s) along axis {axis}; a tie needs at least 2")
    return axis % len(shape)


@st.composite
def _with_ties(draw, arrays, axis):
    x = draw(arrays)
    ax = _tie_axis(x.shape, axis)
    moved = np.moveaxis(x, ax, -1)  # a view: writes go to x
    slices, length = int(np.prod(moved.shape[:-1])), moved.shape[-1]
    r = draw(st.integers(0, slices - 1)) if slices else 0
    i = draw(st.integers(0, length - 1))
    j = draw(st.integers(0, length - 2))
    j = j + 1 if j >= i else j  # another position of the same slice
    if slices:
        where = np.unravel_index(r, moved.shape[:-1])
        peak = moved[where].max()
        moved[where + (i,)] = peak
        moved[where + (j,)] = peak
    return x
