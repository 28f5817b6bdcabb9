"""The finite differences are as accurate as their error model says, measured against the truth."""

import functools

import numpy as np
import pytest
from array_api_compat import array_namespace
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from gradverify import _numerical
from gradverify._tolerances import ANALYTIC_NOISE_ULPS, EPS, natural_size
from gradverify._truth import HighPrecisionPhi, confirm, element_scale, input_scale


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
    phi = HighPrecisionPhi(fn, [x], v, dps=40, floating=[True])
    truth = phi.elementwise(0, element_scale(host), input_scale(host))
    natural = natural_size(evaluator.magnitude, np.max(np.abs(v)), _numerical.step_scale(host), np.nanmax(np.abs(truth.center), initial=0.0))
    # A correct gradient fails only where |fd - truth| exceeds both rtol * |truth| and twice
    # the error estimate plus the analytic noise (the verdict's margins). The rounding part
    # of the estimate rests on sampled noise (one fourth difference for a one-element input),
    # so it can fall a little short: this asks for twice the estimate, plus a third of the
    # float64 tolerance (1e-7) relative, plus the analytic noise floor.
    promised = 2.0 * stencil.error + 3e-8 * np.nanmax(np.abs(truth.center), initial=0.0) + ANALYTIC_NOISE_ULPS * EPS["float64"] * natural
    # Before a miss counts, the truth is re-derived at more digits, as the verdict would.
    recompute = functools.partial(phi.elementwise, 0, element_scale(host), input_scale(host))
    confirm(truth, np.abs(stencil.estimate - truth.center) > promised, recompute, 40, atol=1e-20 * natural)
    return stencil, truth, promised


@pytest.mark.parametrize("richardson", [False, True], ids=["central", "richardson"])
@pytest.mark.parametrize("name", sorted(SMOOTH))
@settings(deadline=None)
@given(x=points)
def test_finite_difference_error_is_within_its_estimate(name, richardson, x):
    stencil, truth, promised = _fd_and_truth(SMOOTH[name], x, richardson)
    # A truth that never settled (NaN) says nothing; a rough element has no estimate.
    smooth = ~stencil.kink & ~truth.kink & ~stencil.rough & np.isfinite(truth.center)
    # A smooth function has no rough elements.
    assert not stencil.rough.any(), stencil
    actual = np.abs(stencil.estimate - truth.center)[smooth]
    assert np.all(actual <= promised[smooth]), (actual, promised[smooth])


@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_finite_differences_reach_high_accuracy_on_smooth_functions(name):
    """Away from trouble, central differences reach ~1e-9 relative and Richardson ~1e-11."""
    x = np.random.default_rng(3).uniform(-2.0, 2.0, size=(2, 3))
    for richardson, bound in ((False, 1e-8), (True, 1e-10)):
        stencil, truth, _ = _fd_and_truth(SMOOTH[name], x, richardson)
        scale = np.max(np.abs(truth.center))
        assert np.max(np.abs(stencil.estimate - truth.center)) <= bound * scale


def test_the_adaptive_step_beats_a_fixed_step():
    """Across scales a fixed step (torch's eps=1e-6) is far off; the scaled, corrected one is not."""
    x = np.array([1e-3, 5e-3, 1e6, 4e7])
    fn = lambda x: _ns(x).log(x)  # noqa: E731
    stencil, truth, _ = _fd_and_truth(fn, x, richardson=False)
    v = np.random.default_rng(0).standard_normal(x.shape)
    eye = np.eye(x.size) * 1e-6
    fixed = np.array([(np.sum(v * fn(x + e)) - np.sum(v * fn(x - e))) / 2e-6 for e in eye])
    ours = np.max(np.abs(stencil.estimate - truth.center) / np.abs(truth.center))
    theirs = np.max(np.abs(fixed - truth.center) / np.abs(truth.center))
    assert ours < 1e-8 and ours < theirs / 100, (ours, theirs)


def test_truth_takes_more_digits_where_it_contradicts():
    """(x + 1e45) - 1e45 loses x at 40 digits; the truth must notice and go to 80."""
    from gradverify import check_vjp

    x = np.array([0.5, -2.0])
    result = check_vjp(lambda x: (x + 1e45) - 1e45, lambda v, x: (v,), x)
    assert result.passed and result.truth == "lazy", str(result)
    assert result.per_input[0].max_rel_analytic_truth < 1e-15
    # float64 loses x as well, so the finite difference is off and is blamed for it.
    assert result.blame == "numerical"
