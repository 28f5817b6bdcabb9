"""Hypothesis strategies for gradient checks.

Hypothesis' own array fill repeats a handful of values (ties everywhere, fatal for max and
maxout) and struggles past about a thousand elements. So these strategies let Hypothesis draw
what it is good at shrinking (shape, scale, a seed, where the special values go) and fill
the bulk with NumPy's generator. Arrays are NumPy float64 on the host; move them to the
backend under test with ``xp.asarray``.
"""

import numpy as np
from hypothesis import strategies as st

from gradverify._errors import InvalidArgument

__all__ = ["float_arrays", "shapes"]

SPECIALS = ("zero", "negative_zero", "tie", "large", "tiny")


def shapes(*, min_dims=1, max_dims=2, min_side=1, max_side=5):
    """Array shapes, batch size 1 included (it shrinks toward the smallest)."""
    _check_range("dims", min_dims, max_dims, 0)
    _check_range("side", min_side, max_side, 1)
    return st.lists(st.integers(min_side, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


@st.composite
def float_arrays(draw, shape=None, *, scale=None, specials=SPECIALS, positive=False):
    """Float64 arrays of ``shape`` (a tuple or a strategy of tuples; default :func:`shapes`).

    ``scale`` (a float, or ``None`` to draw one from 1e-3 to 1e3) multiplies standard normal
    values; ``specials`` names the special values that may be planted: exact zeros, negative
    zeros, ties with another element, large magnitudes (1e4 times the scale) and tiny ones
    (1e-8 times). ``positive=True`` takes absolute values (zeros then stay out).
    """
    unknown = set(specials) - set(SPECIALS)
    if unknown:
        raise InvalidArgument(f"specials={sorted(unknown)} are unknown; choose from {SPECIALS}")
    if shape is None:
        shape = shapes()
    shape = draw(shape) if isinstance(shape, st.SearchStrategy) else tuple(shape)
    if scale is None:
        scale = 10.0 ** draw(st.integers(-3, 3))
    elif not (isinstance(scale, (int, float)) and scale > 0):
        raise InvalidArgument(f"scale={scale!r} must be a positive number (or None to draw one)")
    seed = draw(st.integers(0, 2**32 - 1))
    x = np.random.default_rng(seed).standard_normal(shape) * scale
    flat = x.reshape(-1)
    if flat.size and specials:
        planted = draw(st.lists(st.tuples(st.sampled_from(specials), st.integers(0, flat.size - 1)), max_size=min(3, flat.size)))
        for kind, k in planted:
            if kind == "zero":
                flat[k] = 0.0
            elif kind == "negative_zero":
                flat[k] = -0.0
            elif kind == "tie" and flat.size > 1:
                flat[k] = flat[(k + 1) % flat.size]
            elif kind == "large":
                flat[k] *= 1e4
            elif kind == "tiny":
                flat[k] *= 1e-8
    if positive:
        x = np.abs(x)
        x[x == 0] = scale
    return x


def _check_range(name, low, high, minimum):
    if not (isinstance(low, int) and isinstance(high, int) and minimum <= low <= high):
        raise InvalidArgument(f"min_{name}={low!r}, max_{name}={high!r}: need integers with {minimum} <= min_{name} <= max_{name}")
