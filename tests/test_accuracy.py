"""The finite differences are as accurate as their error model says, measured against the truth."""

import numpy as np
import pytest
from array_api_compat import array_namespace
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from gradverify import _numerical
from gradverify._truth import HighPrecisionPhi, element_scale, input_scale


def _ns(x):
    return array_namespace(x)


SMOOTH = {
    "tanh(x) * x": lambda x: _ns(x).tanh(x) * x,
    "exp(sin(x))": lambda x: _ns(x).exp(_ns(x).sin(x)),
    "log(1 + x^2)": lambda x: _ns(x).log(1.0 + x * x),
    "x^3 - 2x": lambda x: x * x * x - 2.0 * x,
    "1 / (1 + x^2)": lambda x: 1.0 / (1.0 + x * x),
    "sigmoid": lambda x: 1.0 / (1.0 + _ns(x).exp(-x)),
    "softmax rows": lambda x: _ns(x).exp(x) / _ns(x).sum(_ns(x).exp(x), axis=-1, keepdims=True),
    "x * sum(x^2)": lambda x: x * _ns(x).sum(x * x),
}

points = arrays(
    np.float64,
    array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=4),
    elements=st.floats(-4.0, 4.0, allow_nan=False, allow_subnormal=False),
)


def _fd_and_truth(fn, x, richardson, seed=0):
    v = np.random.default_rng(seed).standard_normal(fn(x).shape)
    evaluator = _numerical.PhiEvaluator(fn, [x], v, xp=_ns(x), batched=False, max_batch_bytes=2**24)
    host = x.reshape(-1)
    stencil = _numerical.elementwise(evaluator, 0, host, richardson)
    target = _numerical.REFINE_FRACTION * 1e-7 * np.abs(stencil.estimate)
    _numerical.refine_elementwise(evaluator, 0, host, richardson, stencil, target)
    truth = HighPrecisionPhi(fn, [x], v, dps=40, floating=[True]).elementwise(0, element_scale(host), input_scale(host))
    return stencil, truth


@pytest.mark.parametrize("richardson", [False, True], ids=["central", "richardson"])
@pytest.mark.parametrize("name", sorted(SMOOTH))
@settings(deadline=None)
@given(x=points)
def test_finite_difference_error_is_within_its_estimate(name, richardson, x):
    stencil, truth = _fd_and_truth(SMOOTH[name], x, richardson)
    smooth = ~stencil.kink & ~truth.kink
    actual = np.abs(stencil.estimate - truth.center)[smooth]
    # Twice the estimate is the margin the verdict allows the finite difference. The rounding
    # part of the estimate rests on sampled noise (one fourth difference for a one-element
    # input), so it can fall short; 1e-8 relative to the largest derivative stays ten times
    # below the tightest tolerance (float64, 1e-7), so the verdict is unaffected.
    promised = 2.0 * stencil.error[smooth] + 1e-8 * np.max(np.abs(truth.center), initial=0.0)
    assert np.all(actual <= promised), (actual, promised)


@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_finite_differences_reach_high_accuracy_on_smooth_functions(name):
    """Away from trouble, central differences reach ~1e-9 relative and Richardson ~1e-11."""
    x = np.random.default_rng(3).uniform(-2.0, 2.0, size=(2, 3))
    for richardson, bound in ((False, 1e-8), (True, 1e-10)):
        stencil, truth = _fd_and_truth(SMOOTH[name], x, richardson)
        scale = np.max(np.abs(truth.center))
        assert np.max(np.abs(stencil.estimate - truth.center)) <= bound * scale


def test_the_adaptive_step_beats_a_fixed_step():
    """Across scales a fixed step (torch's eps=1e-6) is far off; the scaled, corrected one is not."""
    x = np.array([1e-3, 5e-3, 1e6, 4e7])
    fn = lambda x: _ns(x).log(x)  # noqa: E731
    stencil, truth = _fd_and_truth(fn, x, richardson=False)
    v = np.random.default_rng(0).standard_normal(x.shape)
    eye = np.eye(x.size) * 1e-6
    fixed = np.array([(np.sum(v * fn(x + e)) - np.sum(v * fn(x - e))) / 2e-6 for e in eye])
    ours = np.max(np.abs(stencil.estimate - truth.center) / np.abs(truth.center))
    theirs = np.max(np.abs(fixed - truth.center) / np.abs(truth.center))
    assert ours < 1e-8 and ours < theirs / 100, (ours, theirs)
