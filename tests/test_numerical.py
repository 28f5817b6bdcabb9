"""The finite differences on their own: kinks, rough points, steps that stay where fn is smooth.

Each case has both sides: the right gradient passes (or is honestly inconclusive) and a
wrong one is not passed. Where the verdict has to act on a new field (``Stencil.rough``),
the Stencil itself is tested.
"""

import numpy as np
import pytest

from gradverify import _numerical, check_grad, check_vjp


def _evaluator(fn, x, v=None, seed=0):
    if v is None:
        v = np.random.default_rng(seed).standard_normal(fn(x).shape)
    return _numerical.PhiEvaluator(fn, [x], v, xp=np, batched=False, max_batch_bytes=2**24)


def _refined(fn, x, richardson=False):
    ev = _evaluator(fn, x)
    host = x.reshape(-1)
    st = _numerical.elementwise(ev, 0, host, richardson)
    target = _numerical.REFINE_FRACTION * 1e-7 * np.abs(st.estimate)
    _numerical.refine_elementwise(ev, 0, host, richardson, st, target)
    return ev, st


def _hash_noise(x):
    """Noise that jumps at every float64 of x (no scale on which it is smooth)."""
    bits = np.ascontiguousarray(x, dtype=np.float64).view(np.uint64)
    return ((bits * np.uint64(2654435761)) % np.uint64(1000)).astype(np.float64) / 1000.0


def noisy_tanh(x):
    return np.tanh(x) + 1e-3 * _hash_noise(x)


def floor_plus_x(x):
    return np.floor(x) + x


def dtanh(v, x):
    return (v * (1 - np.tanh(x) ** 2),)


XS = np.random.default_rng(0).normal(size=5)


@pytest.mark.parametrize("richardson", [False, True])
def test_noise_is_rough_not_a_kink(richardson):
    _, st = _refined(noisy_tanh, XS, richardson)
    assert st.rough.all() and not st.kink.any(), st
    assert np.isnan(st.estimate).all() and np.isinf(st.error).all()


@pytest.mark.parametrize("vjp", [dtanh, lambda v, x: (2 * dtanh(v, x)[0],), lambda v, x: (0 * v,)], ids=["right", "2x", "zeros"])
@pytest.mark.parametrize("mode", ["full", "directional"])
def test_no_gradient_passes_through_noise(vjp, mode):
    result = check_vjp(noisy_tanh, vjp, XS, truth="off", mode=mode)
    assert not result.passed, str(result)


def test_a_jump_in_the_value_is_rough():
    """floor(x) + x at an integer: one-sided differences grow like 1/h, no kink."""
    x = np.array([1.0, -2.0, 0.5])
    _, st = _refined(floor_plus_x, x)
    assert st.rough[:2].all() and not st.kink.any(), st
    assert not st.rough[2] and abs(st.estimate[2] - _evaluator(floor_plus_x, x).v[2]) < 1e-8


def test_floor_plus_x_wrong_gradient_fails():
    result = check_vjp(floor_plus_x, lambda v, x: (100 * v,), XS, truth="off")
    assert not result.passed and result.blame == "analytic", str(result)
    assert check_vjp(floor_plus_x, lambda v, x: (v,), XS, truth="off").passed


KINKS = {
    "relu": (lambda x: np.maximum(x, 0.0), np.array([0.0, -0.0, 1.5, -2.0]), [(0.0, 1.0), (0.0, 1.0)]),
    "abs": (np.abs, np.array([0.0, -1.0, 2.5]), [(-1.0, 1.0)]),
    "leaky": (lambda x: np.where(x > 0, x, 0.01 * x), np.array([0.0, 0.5]), [(0.01, 1.0)]),
    "hinge": (lambda x: np.maximum(0.0, 1.0 - x), np.array([1.0, 3.0]), [(-1.0, 0.0)]),
}


@pytest.mark.parametrize("name", sorted(KINKS))
def test_real_kinks_keep_their_bracket(name):
    fn, x, brackets = KINKS[name]
    ev, st = _refined(fn, x)
    v = ev.v
    assert not st.rough.any(), st
    for k, (a, b) in enumerate(brackets):
        assert st.kink[k], st
        lo, hi = sorted((a * v[k], b * v[k]))
        assert abs(st.lo[k] - lo) < 1e-5 * abs(v[k]) and abs(st.hi[k] - hi) < 1e-5 * abs(v[k]), (st, lo, hi)
    assert not st.kink[len(brackets) :].any()


def test_max_ties_are_kinks():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    _, st = _refined(lambda x: np.max(x, axis=-1), x)
    assert not st.rough.any()
    assert list(st.kink) == [False, True, True, True, True, True], st


def test_relu_directional_kinks():
    x = np.random.default_rng(1).normal(size=60)
    x[::3] = 0.0
    result = check_vjp(lambda x: np.maximum(x, 0), lambda v, x: (v * (x > 0),), x, mode="directional", truth="off")
    assert result.passed, str(result)
    wrong = check_vjp(lambda x: np.maximum(x, 0), lambda v, x: (2 * v * (x > 0),), x, mode="directional", truth="off")
    assert not wrong.passed, str(wrong)


@pytest.mark.parametrize("mode,x", [("directional", [0.0, 1e4]), ("full", [0.0, 1e4, 1e6]), ("full", [0.0, 3.0, 1e4, 1e6]), ("directional", [0.0, 3.0, 1e4, 1e6])])
@pytest.mark.parametrize("richardson", [False, True])
def test_tanh_on_mixed_scales(mode, x, richardson):
    """Directions carry each element's scale: tanh at 0 moves by the rms (7e3) times the step."""
    x = np.array(x)
    right = check_vjp(np.tanh, dtanh, x, mode=mode, truth="off", richardson=richardson)
    # The cases pass; with an element at 3 besides 0 and 1e6 a direction may stay
    # honestly inconclusive (no step resolves tanh at 0, 3 and 1e6 at once), never blamed.
    assert right.passed or (len(x) == 4 and right.blame == "numerical"), str(right)
    wrong = check_vjp(np.tanh, lambda v, x: (2 * dtanh(v, x)[0],), x, mode=mode, truth="off", richardson=richardson)
    assert not wrong.passed and wrong.blame == "analytic", str(wrong)


def test_richardson_error_estimate_is_honest_outside_the_smooth_region():
    """At a step where tanh is far from its Taylor regime the estimate says so."""
    x = np.array([0.0, 1e4])
    ev = _evaluator(np.tanh, x)
    d = [{0: np.array([1.0, -1.0]) * _numerical.step_scale(x)}]
    truth = float(ev.v @ (d[0][0] * (1 - np.tanh(x) ** 2)))
    first = _numerical.directional(ev, d, True, target=np.array([np.inf]))  # no refinement
    assert abs(first.estimate[0] - truth) <= first.error[0]
    refined = _numerical.directional(ev, d, True)
    assert abs(refined.estimate[0] - truth) <= max(refined.error[0], 1e-12 * abs(truth)) and refined.error[0] < 1e-8 * abs(truth)


def _ce(L, y):
    s = L - L.max(axis=1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=1, keepdims=True)
    return -np.mean(np.log(p[np.arange(len(y)), y]))


def _ce_grad(L, y):
    s = L - L.max(axis=1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return p / len(y)


def test_smooth_function_shows_no_kinks_and_steps_stay_small():
    """Softmax cross-entropy: elements from 1e-8 to 1e-2, smooth everywhere."""
    rng = np.random.default_rng(0)
    L = rng.normal(size=(16, 50))
    y = rng.integers(0, 50, 16)
    fn = lambda L: np.asarray(_ce(L, y))  # noqa: E731
    ev = _evaluator(fn, L, v=np.ones(()))
    host = L.reshape(-1)
    st = _numerical.elementwise(ev, 0, host, False)
    target = _numerical.REFINE_FRACTION * 1e-7 * np.maximum(np.abs(st.estimate), np.max(np.abs(st.estimate)) * 1e-3)
    _numerical.refine_elementwise(ev, 0, host, False, st, target)
    assert not st.kink.any() and not st.rough.any()
    assert st.step.max() <= 1e-2, st.step.max()
    exact = _ce_grad(L, y).reshape(-1)
    # The error estimate bounds the true error (the analytic value is exact to ~1e-18 here).
    assert np.all(np.abs(st.estimate - exact) <= 2 * st.error + 1e-17)
    # And it resolves every element to rtol of the gradient's largest element.
    assert np.all(st.error <= 1e-7 * _numerical.gradient_size(st.estimate))


def test_softmax_cross_entropy_passes_and_is_cheap():
    rng = np.random.default_rng(0)
    L = rng.normal(size=(32, 100))
    y = rng.integers(0, 100, 32)
    result = check_grad(lambda L: _ce(L, y), lambda L: _ce_grad(L, y), L, truth="off")
    assert result.passed, str(result)
    assert result.per_input[0].kinks == 0 and result.per_input[0].unresolved == 0
    assert result.evaluations["fn_float64"] <= 4.5 * L.size, result.evaluations
    wrong = check_grad(lambda L: _ce(L, y), lambda L: _ce_grad(L, y) * (1 + 1e-5), L, truth="off")
    assert not wrong.passed and wrong.blame == "analytic", str(wrong)
