"""repeats=N and nondeterministic=True (issue 14): the determinism envelope."""

import numpy as np
import pytest

import gradverify


def tanh_vjp(v, x):
    return (v * (1 - np.tanh(x) ** 2),)


X = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)


class Flaky:
    """A backward whose calls after the first ``clean`` add a small jitter (like atomics)."""

    def __init__(self, jitter, clean=1, every=1):
        self.calls, self.jitter, self.clean, self.every = 0, jitter, clean, every
        self.rng = np.random.default_rng(5)

    def __call__(self, v, x):
        self.calls += 1
        (g,) = tanh_vjp(v, x)
        if self.calls > self.clean and self.calls % self.every == 0 and np.any(v):  # a zero cotangent stays exact
            # like a sum by atomics: each element one of a few values around the exact one
            g = g + (self.jitter * self.rng.integers(-1, 2, size=g.shape)).astype(g.dtype)
        return (g.astype(x.dtype),)


def test_default_repeats_two_calls():
    result = gradverify.check_vjp(np.tanh, tanh_vjp, X)
    assert result.evaluations["vjp"] == 3  # the gradient, one repeat, the zero cotangent


def test_repeats_runs_fn_and_vjp_n_times_and_catches_a_late_difference():
    # The fourth and fifth calls differ: two calls see nothing, five do.
    late = Flaky(1e-3, clean=3)
    assert gradverify.check_vjp(np.tanh, late, X).passed
    late = Flaky(1e-3, clean=3)
    result = gradverify.check_vjp(np.tanh, late, X, repeats=5)
    assert result.evaluations["vjp"] == 6 and result.evaluations["fn"] == 5
    kinds = [s.kind for s in result.structural]
    assert kinds == ["vjp_nondeterministic"] and not result.passed and result.blame == "analytic"
    assert "2 of 4 repeated (of 5)" in str(result) and "repeats=5" in result.reproduce


def test_nondeterministic_small_spread_is_reported_and_passes():
    result = gradverify.check_vjp(np.tanh, Flaky(1e-6), X, repeats=4, nondeterministic=True)
    p = result.per_input[0]
    assert result.passed, str(result)
    assert p.spread is not None and 0 < p.spread < 1e-4
    assert "nondeterministic: the gradient's spread" in str(result)


def test_nondeterministic_spread_beyond_the_table_fails():
    result = gradverify.check_vjp(np.tanh, Flaky(0.05), X, repeats=4, nondeterministic=True)
    assert not result.passed and result.blame == "analytic"
    assert [s.kind for s in result.structural] == ["nondeterministic_spread"], str(result)


def test_nondeterministic_spread_joins_the_gate_floor():
    # Against the gate, a jitter of 1e-5 is far above k x the reference's error (a few ulps):
    # deterministic it would fail; declared nondeterministic, its measured spread is budgeted.
    x = X

    deterministic = gradverify.check_vjp(np.tanh, Flaky(3e-6, clean=0), x, reference=tanh_vjp)
    assert [s.kind for s in deterministic.structural] == ["vjp_nondeterministic"]
    strict = gradverify.check_vjp(np.tanh, Flaky(3e-6, clean=0), x, reference=tanh_vjp, repeats=8, nondeterministic=True)
    g = strict.per_input[0].gate
    assert g.spread is not None and g.spread > 0
    assert strict.passed, str(strict)
    assert "plus the spread over repeats" in str(strict)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"repeats": 1}, "repeats=1 must be an integer >= 2"),
        ({"repeats": 2.5}, "repeats=2.5"),
        ({"repeats": True}, "repeats=True"),
        ({"nondeterministic": 1}, "nondeterministic=1 must be True or False"),
    ],
)
def test_invalid_repeat_options(options, match):
    with pytest.raises(gradverify.InvalidArgument, match=match):
        gradverify.check_vjp(np.tanh, tanh_vjp, X, **options)
