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


def _tanh_layer(X):
    def fn(W):
        return np.sum(np.tanh(X @ W), axis=(-2, -1))

    def vjp(v, W):
        t = np.tanh(X @ W)
        return (X.T @ (v * (1 - t**2)),)

    return fn, vjp


def test_full_mode_spends_little_more_than_one_centered_difference_per_element():
    """The first stencil is one centered difference per element; group probes bound its
    truncation, and only kink candidates get a second step of their own."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 16))
    fn, vjp = _tanh_layer(X)
    W = rng.normal(size=(16, 16)) / 4
    result = check_vjp(fn, vjp, W, mode="full", truth="off")
    assert result.passed, str(result)
    assert result.evaluations["fn_float64"] <= 2.6 * W.size, result.evaluations
    wrong = check_vjp(fn, lambda v, W: (vjp(v, W)[0] * (1 + 1e-6),), W, mode="full", truth="off")
    assert not wrong.passed and wrong.blame == "analytic", str(wrong)


@pytest.mark.parametrize("case", ["tanh layer", "cross-entropy"])
def test_lazy_stencil_error_bounds_the_true_error(case):
    """Elements settled by group probes carry an error estimate that bounds the true error and
    stays as tight as the full stencil's (far below rtol of the gradient's largest element)."""
    rng = np.random.default_rng(1)
    if case == "tanh layer":
        X = rng.normal(size=(8, 16))
        fn, vjp = _tanh_layer(X)
        x = rng.normal(size=(16, 16)) / 4
        v = np.ones(())
        exact = vjp(v, x)[0].reshape(-1)
    else:
        y = rng.integers(0, 30, 12)
        x = rng.normal(size=(12, 30))
        fn = lambda L: np.asarray(_ce(L, y))  # noqa: E731
        v = np.ones(())
        exact = _ce_grad(x, y).reshape(-1)
    ev = _evaluator(fn, x, v=v)
    host = x.reshape(-1)
    st = _numerical.elementwise(ev, 0, host, False)
    assert st.pending.all() and np.isinf(st.error).all()  # nothing is known of the truncation yet
    size = _numerical.gradient_size(st.estimate)
    target = _numerical.REFINE_FRACTION * 1e-7 * np.maximum(np.abs(st.estimate), size * 1e-3)
    _numerical.refine_elementwise(ev, 0, host, False, st, target, resolution=5e-7 * size)
    assert not st.pending.any() and not st.kink.any()
    assert np.all(np.abs(st.estimate - exact) <= st.error)
    assert np.all(st.error <= 1e-7 * size), st.error.max() / size


def test_a_large_step_with_no_curvature_is_caught_by_the_group_probe():
    """tanh at 0 in an input whose rms is 6e5: the step (3.5) is far outside the region where
    tanh is smooth, yet the one-sided slopes agree exactly (tanh is odd). The group probe sees
    the truncation and the element gets steps of its own."""
    x = np.array([0.0, 1e4, 1e6])
    ev = _evaluator(np.tanh, x, v=np.ones(3))
    st = _numerical.elementwise(ev, 0, x, False)
    assert abs(st.estimate[0] - 1.0) > 0.5  # tanh(3.5) / 3.5
    _numerical.refine_elementwise(ev, 0, x, False, st, 1e-8 * np.abs(st.estimate))
    assert abs(st.estimate[0] - 1.0) <= max(st.error[0], 1e-9), st


def _mutating_tanh(x):
    y = np.tanh(x)
    x[...] = 0.0  # changes its argument on every call
    return y


_SCRATCH = np.zeros(6)


def _scratch_tanh(x):
    _SCRATCH[...] = np.tanh(x)
    return _SCRATCH  # the same array on every call


@pytest.mark.parametrize(
    "fn,batched",
    [(_mutating_tanh, False), (_mutating_tanh, True), (_scratch_tanh, False), (lambda x: x, False), (lambda x: x, True), (lambda x: np.reshape(x, (2, 3)), False)],
    ids=["mutates", "mutates-batched", "scratch", "identity", "identity-batched", "view"],
)
def test_perturbations_in_place_do_not_leak_into_fn(fn, batched):
    """Unbatched perturbations are made in the evaluator's own copy of the input and undone
    after each call: a fn that changes its argument, returns it or a view of it, or returns
    the same scratch array each time (also at x), gets the numbers it would get from fresh
    copies."""
    x = np.linspace(-1.2, 1.3, 6)
    out = fn(x.copy())
    v = np.random.default_rng(0).standard_normal(np.shape(out))
    ev = _numerical.PhiEvaluator(fn, [x.copy()], v, xp=np, batched=batched, max_batch_bytes=2**24, out=out)
    expected = (1 - np.tanh(x) ** 2) if fn in (_mutating_tanh, _scratch_tanh) else np.ones(6)
    expected = expected * v.reshape(-1)
    st = _numerical.elementwise(ev, 0, x.copy(), False)
    _numerical.refine_elementwise(ev, 0, x.copy(), False, st, 1e-8 * np.abs(st.estimate))
    assert np.all(np.abs(st.estimate - expected) <= 2 * st.error + 1e-12), (st.estimate, expected)


def test_batched_and_looped_agree():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(4, 6))
    fn, vjp = _tanh_layer(X)
    W = rng.normal(size=(6, 5))
    looped = check_vjp(fn, vjp, W, mode="full", truth="off")
    batched = check_vjp(fn, vjp, W, mode="full", truth="off", batched=True)
    assert looped.passed and batched.passed, (str(looped), str(batched))
    assert abs(looped.max_rel_error - batched.max_rel_error) <= 1e-12


@pytest.mark.parametrize("big", [2e2, 2e3, 2e5])
def test_many_inflection_points_under_a_large_step(big):
    """tanh at many zeros of an input whose rms is large: each zero's truncation has no
    curvature to show it, and their random signs can cancel along one group probe. The right
    gradient passes, a wrong one is blamed, as with the full stencil."""
    x = np.zeros(256)
    x[:4] = big
    x[4:40] = np.linspace(-1, 1, 36)
    right = check_vjp(np.tanh, dtanh, x, truth="off", mode="full")
    assert right.passed, str(right)
    wrong = check_vjp(np.tanh, lambda v, x: (dtanh(v, x)[0] * (1 + 1e-5),), x, truth="off", mode="full")
    assert not wrong.passed and wrong.blame == "analytic", str(wrong)


def test_directional_memory_is_a_small_multiple_of_the_input():
    """A direction over a large input is perturbed in one buffer and contracted in cache-sized
    column blocks: the peak is about the perturbed input and fn's output, not the stacked
    directions, their product with the step, the perturbed copy and output-sized scratch."""
    import tracemalloc

    x = np.random.default_rng(0).standard_normal(200_000)
    ev = _evaluator(np.tanh, x)
    dirs = [{0: np.random.default_rng(k).choice([-1.0, 1.0], size=x.size)} for k in range(2)]
    tracemalloc.start()
    try:
        st = _numerical.directional(ev, dirs, False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.all(np.isfinite(st.estimate))
    assert peak <= 3 * x.nbytes  # before the in-place rows and column blocks: 5.2 times


@pytest.mark.parametrize(
    ("fn", "bound"),
    [
        # A reduction: 10.2 times before the reproduce line stopped listing a large input, 4.0
        # before the magnitudes of phi took one buffer.
        (lambda x: np.sum(np.tanh(x)), 3.75),
        # Elementwise: one fn and one vjp call alone peak at 4 times; the check held 8 before
        # the repeated output and gradient were dropped after their comparison, the drawn
        # cotangent was drawn again instead of copied, and the magnitudes took one buffer.
        (np.tanh, 6.25),
    ],
    ids=["sum", "elementwise"],
)
def test_the_peak_memory_of_a_whole_directional_check(fn, bound):
    """Issue 11's memory target: the structural checks' copies, the perturbed input and the
    gradient; the reproduce line writes no large input."""
    import tracemalloc

    import gradverify

    x = np.random.default_rng(0).standard_normal(200_000)
    f_vjp = lambda v, x: (v * (1 - np.tanh(x) ** 2),)  # noqa: E731
    gradverify.check_vjp(fn, f_vjp, x[:10], mode="directional", truth="off")  # first-call imports
    tracemalloc.start()
    try:
        result = gradverify.check_vjp(fn, f_vjp, x, mode="directional", truth="off")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.passed
    assert peak <= bound * x.nbytes


@pytest.mark.parametrize("width", [7, 3 * _numerical.BLOCK_BYTES // 8 + 5])  # one column block, several
def test_contraction_matches_its_definition(width):
    """``phi`` differences and the noise model's ``moved`` from the in-place, column-blocked
    contraction equal ``sum(v * (y - out))`` and ``sum(|v| max(|out|, 1))`` over changed outputs."""
    rng = np.random.default_rng(5)
    out, v = rng.normal(size=width), rng.normal(size=width)
    ev = _numerical.PhiEvaluator(lambda x: out, [np.zeros(2)], v, xp=np, batched=False, max_batch_bytes=2**24)
    y = np.tile(out, (3, 1))
    y[0, :3] += 1e-3
    y[1, rng.integers(0, width, size=5)] *= 4.0
    y[2, 1] = np.nan
    ev._contract(np.tile(y, (22, 1))[:64], 64)  # scratch first sized for more rows, narrower blocks
    diff, moved = ev._contract(y, 3)
    changed = y != out
    np.testing.assert_allclose(diff[:2], ((y - out) * v).sum(axis=1)[:2], rtol=1e-12)
    np.testing.assert_allclose(moved[:2], (np.abs(v) * np.maximum(np.abs(out), 1.0) * changed).sum(axis=1)[:2], rtol=1e-12)
    assert np.isnan(diff[2]) and np.isnan(moved[2])
