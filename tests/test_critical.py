"""gradverify.critical: Hessians, HVPs, critical points and Taylor orders."""

import doctest
import math
import warnings

import array_api_strict
import numpy as np
import pytest

import gradverify
from gradverify import GradientMismatch, HighPrecisionUnavailable, InvalidArgument, critical
from gradverify.catalog import layers


def _quadratic(eigs, seed=0):
    """``0.5 xᵀAx`` with ``A = Q diag(eigs) Qᵀ`` for a seeded orthogonal ``Q``."""
    eigs = np.asarray(eigs, dtype=float)
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(eigs.size, eigs.size)))
    a = q @ np.diag(eigs) @ q.T
    a = (a + a.T) / 2
    return a, (lambda x: 0.5 * x @ a @ x), (lambda x: a @ x), q


# f(x) = sum(sin x) * sum(x**2): smooth, every entry of the Hessian nonzero.
def _f(x):
    return np.sum(np.sin(x)) * np.sum(x**2)


def _g(x):
    return np.cos(x) * np.sum(x**2) + 2 * x * np.sum(np.sin(x))


def _h(x):
    return np.diag(-np.sin(x) * np.sum(x**2) + 2 * np.sum(np.sin(x))) + 2 * np.outer(np.cos(x), x) + 2 * np.outer(x, np.cos(x))


X = np.array([0.7, -1.3, 0.4, 2.1])


def test_module_doctests():
    failures, tried = doctest.testmod(critical, optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failures == 0


def test_public_names_sorted_and_present():
    assert critical.__all__ == sorted(critical.__all__)
    for name in critical.__all__:
        assert hasattr(critical, name)
    assert "critical" not in gradverify.__all__  # a submodule, not part of the top-level pins


# -- Hessians -------------------------------------------------------------------------------------


def test_hessian_of_quadratic_and_shape():
    a, f, g, _ = _quadratic([3.0, -1.0, 0.5, 2.0])
    est = critical.hessian(f, g, np.array([0.1, -0.2, 0.3, 0.0]))
    np.testing.assert_allclose(est.matrix, a, rtol=0, atol=1e-9)
    assert est.matrix.shape == (4, 4) and np.array_equal(est.matrix, est.matrix.T)
    assert est.error.shape == (4, 4) and np.all(est.error >= 0) and est.error_norm < 1e-8


def test_hessian_of_shaped_input_is_over_flat_index():
    x = np.arange(6, dtype=float).reshape(2, 3) / 5 - 0.4
    est = critical.hessian(lambda x: np.sum(np.exp(x)), np.exp, x)
    np.testing.assert_allclose(est.matrix, np.diag(np.exp(x).reshape(-1)), rtol=1e-8, atol=1e-9)


def test_hessian_truth_matches_analytic_to_high_accuracy():
    np.testing.assert_allclose(critical.hessian_truth(_f, X), _h(X), rtol=1e-13, atol=1e-13)


def test_hessian_truth_requires_object_array_support():
    def float_only(x):
        return float(np.sum(np.asarray(x, dtype=np.float64) ** 2))

    with pytest.raises(HighPrecisionUnavailable):
        critical.hessian_truth(float_only, X)


def test_hessian_on_array_api_strict():
    x = array_api_strict.asarray([0.3, -0.8], dtype=array_api_strict.float64)
    xp = array_api_strict
    est = critical.hessian(lambda x: xp.sum(xp.sin(x)), xp.cos, x)
    np.testing.assert_allclose(est.matrix, np.diag(-np.sin([0.3, -0.8])), rtol=1e-8, atol=1e-10)


# -- check_hessian / check_hvp -----------------------------------------------------------------------


def test_correct_hessian_passes():
    r = critical.check_hessian(_f, _g, _h, X)
    assert r.passed and r.blame is None and r.truth == "elementwise"
    assert r.max_rel_error < 1e-12 and r.checked == 16
    assert "PASSED" in str(r)


def test_wrong_off_diagonal_entry_is_blamed_on_analytic():
    def wrong(x):
        h = _h(x)
        h[0, 2] += 1e-4  # a single asymmetric slip
        return h

    r = critical.check_hessian(_f, _g, wrong, X)
    assert not r.passed and r.blame == "analytic"
    assert (r.worst.i, r.worst.j) == (0, 2) and r.failing == [(0, 2)]
    assert r.worst.truth == pytest.approx(_h(X)[0, 2], rel=1e-12)
    text = str(r)
    assert "blame: analytic" in text and "entry (0, 2)" in text
    with pytest.raises(GradientMismatch, match="blame: analytic") as info:
        critical.assert_hessian(_f, _g, wrong, X)
    assert isinstance(info.value, AssertionError) and info.value.result is not None


def test_wrong_hessian_caught_without_truth():
    r = critical.check_hessian(_f, _g, lambda x: _h(x) * (1 + 1e-4), X, truth="off")
    assert not r.passed and r.blame == "analytic" and r.truth == "off" and r.worst.truth is None


def test_wrong_gradient_shows_as_numerical_off_the_truth():
    # The user's Hessian is right; the finite differences of a wrong gradient are not.
    r = critical.check_hessian(_f, lambda x: _g(x) + 0.01 * x**2, _h, X)
    assert r.passed and r.blame == "numerical" and r.numerical_off > 0


def test_hvp_right_and_wrong():
    assert critical.assert_hvp(_f, _g, lambda x, v: _h(x) @ v, X).passed

    def wrong(x, v):
        h = _h(x)
        h[1, 3] *= 1.001
        return h @ v

    r = critical.check_hvp(_f, _g, wrong, X, directions=2)
    assert not r.passed and r.blame == "analytic" and r.checked == 8
    assert r.worst.j == 1 and "direction" in str(r)
    with pytest.raises(GradientMismatch):
        critical.assert_hvp(_f, _g, wrong, X)


def test_hvp_without_truth_for_many_parameters():
    n = 300  # above TRUTH_HVP_MAX: finite differences only, 4 gradient calls per direction
    x = np.linspace(-1, 1, n)
    calls = []

    def g(x):
        calls.append(1)
        return np.cos(x)

    r = critical.check_hvp(lambda x: np.sum(np.sin(x)), g, lambda x, v: -np.sin(x) * v, x)
    assert r.passed and r.truth == "off" and "more than" in r.truth_note and len(calls) == 12
    bad = critical.check_hvp(lambda x: np.sum(np.sin(x)), g, lambda x, v: -np.sin(x) * v * 1.001, x)
    assert not bad.passed and bad.blame == "analytic"


# -- catalog ops: the gradient of their backward passes against the truth ------------------------------


def _softmax_hessian(x, v):
    s = layers.softmax_forward(x)[0]
    u = s * (v - s @ v)  # the gradient
    # d u_i / d x_k = s_i (delta_ik - s_k) (v_i - s.v) - s_i u_k: symmetric.
    return np.diag(u) - np.outer(u, s) - np.outer(s, u)


@pytest.mark.parametrize(
    ("name", "hess"),
    [
        ("tanh", lambda x, v: np.diag(v * -2 * np.tanh(x) * (1 - np.tanh(x) ** 2))),
        ("sigmoid", lambda x, v: np.diag(v * (s := 1 / (1 + np.exp(-x))) * (1 - s) * (1 - 2 * s))),
        ("softmax", _softmax_hessian),
    ],
)
def test_catalog_second_order(name, hess):
    forward, backward = getattr(layers, f"{name}_forward"), getattr(layers, f"{name}_backward")
    rng = np.random.default_rng(1)
    x, v = rng.normal(size=5), rng.normal(size=5)

    def f(x):
        return np.sum(v * forward(x)[0])

    def grad(x):
        return backward(v, forward(x)[1])[0]

    r = critical.check_hessian(f, grad, lambda x: hess(x, v), x, name=name)
    # The analytic Hessian agrees with the truth, and so does the derivative of the backward.
    assert r.passed and r.blame is None and r.numerical_off == 0 and r.truth == "elementwise", str(r)


def test_catalog_wrong_backward_is_seen_at_second_order():
    v = np.array([0.5, -1.0, 2.0])
    x = np.array([0.3, -0.7, 1.1])

    def f(x):
        return np.sum(v * layers.tanh_forward(x)[0])

    def wrong_backward(x):
        return v * (1 - np.abs(np.tanh(x)) ** 3)

    hess = np.diag(v * -2 * np.tanh(x) * (1 - np.tanh(x) ** 2))
    r = critical.check_hessian(f, wrong_backward, lambda x: hess, x)
    assert r.blame == "numerical" and r.numerical_off == 3


# -- classification ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("eigs", "verdict"),
    [
        ([1.0, 2.0, 3.0], "local minimum"),
        ([-1.0, -2.0, -5.0], "local maximum"),
        ([2.0, -3.0, 1.0], "saddle"),
        ([1.0, 0.0, 2.0], "degenerate"),
        ([1e-3, 2.0, 4.0], "local minimum"),
    ],
)
def test_quadratic_forms(eigs, verdict):
    _, f, g, _ = _quadratic(eigs)
    c = critical.classify(f, g, np.zeros(3))
    assert c.verdict == verdict and c.critical
    np.testing.assert_allclose(c.eigenvalues, sorted(eigs), atol=1e-9)
    assert verdict in str(c)


def test_saddle_escape_direction_lowers_f_by_half_lambda_h2():
    _, f, g, q = _quadratic([2.0, -3.0, 1.0])
    c = critical.classify(f, g, np.zeros(3))
    assert c.escape_eigenvalue == pytest.approx(-3.0, rel=1e-9)
    # The eigenvector of -3 (column 1 of Q), up to sign.
    assert abs(abs(c.escape_direction @ q[:, 1]) - 1) < 1e-9
    assert len(c.demonstration) == 3
    for h, actual, predicted in c.demonstration:
        assert actual < 0 and actual == pytest.approx(predicted, rel=1e-8)
    assert "escape direction" in str(c)


def test_product_of_weights_has_a_saddle_at_the_origin():
    def f(w):
        return (1.0 - w[0] * w[1]) ** 2

    def g(w):
        r = 1.0 - w[0] * w[1]
        return np.array([-2 * w[1] * r, -2 * w[0] * r])

    c = critical.classify(f, g, np.zeros(2))
    assert c.verdict == "saddle"
    np.testing.assert_allclose(c.eigenvalues, [-2.0, 2.0], atol=1e-9)
    assert abs(c.escape_direction[0]) == pytest.approx(abs(c.escape_direction[1]))
    assert np.sign(c.escape_direction[0]) == np.sign(c.escape_direction[1])
    h, actual, predicted = c.demonstration[-1]
    assert actual == pytest.approx(predicted, rel=1e-4)  # f = 1 - h^2 + h^4 / 4 along d
    # On the valley w1 w2 = 1 the minimum is degenerate (flat along the valley).
    assert critical.classify(f, g, np.array([2.0, 0.5])).verdict == "degenerate"
    assert critical.classify(f, g, np.array([1.0, 2.0])).verdict == "not critical"


def test_classify_with_user_hessian_and_tolerances():
    a, f, g, _ = _quadratic([1.0, 2.0])
    c = critical.classify(f, g, np.zeros(2), hess_f=lambda x: a)
    assert c.verdict == "local minimum" and c.hessian_error < 1e-12
    # A user Hessian far from the gradient's finite differences widens the error bound.
    c = critical.classify(f, g, np.zeros(2), hess_f=lambda x: a + 0.3 * np.eye(2))
    assert c.verdict == "degenerate" and c.hessian_error > 0.3
    # An etol above an eigenvalue makes the call degenerate rather than a guess.
    assert critical.classify(f, g, np.zeros(2), etol=1.5).verdict == "degenerate"
    assert critical.classify(f, g, np.full(2, 1e-3), gtol=1e-2).verdict == "local minimum"


# -- Taylor order -----------------------------------------------------------------------------------------


D = np.array([0.4, 1.0, -0.6, 0.3])


def test_taylor_order_right_gradient_and_hessian():
    t2 = critical.taylor_order(_f, _g, X, D)
    t3 = critical.taylor_order(_f, _g, X, D, hess_f=_h)
    assert t2.high_precision and abs(t2.order - 2) < 0.1 and t2.passed and t2.expected == 2
    assert abs(t3.order - 3) < 0.1 and t3.passed and t3.expected == 3
    assert len(t2.table) == 8 and "order" in str(t3)


def test_taylor_order_wrong_gradient_and_hessian():
    t1 = critical.taylor_order(_f, lambda x: _g(x) * 1.01, X, D)
    assert t1.order < 1.5 and not t1.passed and "WRONG" in str(t1)
    t2 = critical.taylor_order(_f, _g, X, D, hess_f=lambda x: _h(x) * 1.01)
    assert t2.order < 2.5 and not t2.passed


def test_taylor_order_of_a_quadratic_with_its_hessian_is_exact():
    a, f, g, _ = _quadratic([1.0, 2.0, -1.0])
    t = critical.taylor_order(f, g, np.array([0.5, 0.1, -0.3]), np.ones(3), hess_f=lambda x: a)
    assert t.exact and t.passed


def test_taylor_order_falls_back_to_float64():
    def f(x):
        return float(np.sum(np.asarray(x, dtype=np.float64) ** 3))

    t = critical.taylor_order(f, lambda x: 3 * x**2, np.array([1.0, 2.0]), np.array([1.0, -1.0]))
    assert not t.high_precision and "unavailable" in t.note and abs(t.order - 2) < 0.2


# -- invalid arguments -----------------------------------------------------------------------------------------


def _ok(x):
    return np.sum(x**2)


def _ok_g(x):
    return 2 * x


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: critical.hessian(_ok, None, X), "grad_f"),
        (lambda: critical.hessian(3, _ok_g, X), "f must be callable"),
        (lambda: critical.hessian(_ok, _ok_g, [1.0, 2.0]), "x is a list"),
        (lambda: critical.hessian(_ok, _ok_g, np.array([1, 2])), "x has dtype int64"),
        (lambda: critical.hessian(_ok, _ok_g, np.array([1.0, np.nan])), "x holds NaN"),
        (lambda: critical.hessian(_ok, _ok_g, np.zeros(0)), "x is empty"),
        (lambda: critical.hessian(_ok, lambda x: x[:1], X), "grad_f returned 1 values"),
        (lambda: critical.hessian_truth(_ok, X, dps=10), "dps=10"),
        (lambda: critical.check_hessian(_ok, _ok_g, "H", X), "hess_f"),
        (lambda: critical.check_hessian(_ok, _ok_g, lambda x: np.eye(3), X), "hess_f returned 9 values"),
        (lambda: critical.check_hessian(_ok, _ok_g, lambda x: 2 * np.eye(4), X, truth="maybe"), "truth='maybe'"),
        (lambda: critical.check_hessian(_ok, _ok_g, lambda x: 2 * np.eye(4), X, rtol=2.0), "rtol=2.0"),
        (lambda: critical.check_hvp(_ok, _ok_g, lambda x, v: 2 * v, X, directions=0), "directions=0"),
        (lambda: critical.check_hvp(_ok, _ok_g, lambda x, v: 2 * v, X, seed=-1), "seed=-1"),
        (lambda: critical.classify(_ok, _ok_g, X, gtol=-1.0), "gtol=-1.0"),
        (lambda: critical.classify(_ok, _ok_g, X, etol="big"), "etol='big'"),
        (lambda: critical.classify(_ok, _ok_g, X, hess_f=1), "hess_f must be callable"),
        (lambda: critical.classify(lambda x: x, _ok_g, X), "f must return a scalar"),
        (lambda: critical.taylor_order(_ok, _ok_g, X, np.ones(3)), "d has 3 elements"),
        (lambda: critical.taylor_order(_ok, _ok_g, X, np.zeros(4)), "d is all zeros"),
        (lambda: critical.taylor_order(_ok, _ok_g, X, np.ones(4), steps=[1e-2]), "steps"),
    ],
)
def test_invalid_arguments(call, message):
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace("[", r"\[")):
        call()


def test_user_function_errors_are_wrapped():
    def boom(x):
        raise RuntimeError("kaput")

    with pytest.raises(gradverify.UserFunctionError, match="grad_f raised RuntimeError: kaput"):
        critical.hessian(_ok, boom, X)


# -- non-finite values: a named verdict, never a confident classification ---------------------------


def _saddle_f(w):
    return (1.0 - w[0] * w[1]) ** 2


def _saddle_g(w):
    return np.array([-2 * w[1] * (1 - w[0] * w[1]), -2 * w[0] * (1 - w[0] * w[1])])


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"f": lambda w: np.nan}, "f(x) = nan"),
        ({"f": lambda w: np.inf}, "f(x) = inf"),
        ({"grad_f": lambda w: np.array([np.nan, 0.0])}, "grad_f(x) holds NaN or Inf at index (0,)"),
        # finite at x, NaN a step away: x at the edge of grad_f's domain
        ({"grad_f": lambda w: np.where(w == 0, _saddle_g(w), np.nan)}, "the finite-difference Hessian holds NaN or Inf"),
        ({"hess_f": lambda w: np.array([[np.nan, -2.0], [-2.0, 0.0]])}, "hess_f(x) holds NaN or Inf at entry (0, 0)"),
        ({"hess_f": lambda w: np.array([[0.0, -2.0], [-np.inf, 0.0]])}, "hess_f(x) holds NaN or Inf at entry (1, 0)"),
    ],
)
def test_classify_says_nonfinite(kwargs, reason):
    f = kwargs.pop("f", _saddle_f)
    g = kwargs.pop("grad_f", _saddle_g)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gradverify's own arithmetic on NaN warns nowhere
        c = critical.classify(f, g, np.zeros(2), **kwargs)
    assert c.verdict == "nonfinite" and not c.critical
    assert reason in c.note
    assert c.eigenvalues.size == 0 and c.escape_direction is None
    assert "critical point: nonfinite" in str(c) and reason in str(c)


def test_classify_still_classifies_the_finite_saddle():
    c = critical.classify(_saddle_f, _saddle_g, np.zeros(2), hess_f=lambda w: np.array([[0.0, -2.0], [-2.0, 0.0]]))
    assert c.verdict == "saddle"


def test_check_hessian_fails_a_nonfinite_analytic_hessian():
    x = np.array([1.0, -2.0])
    for bad in (np.nan, np.inf):
        hess = lambda x, bad=bad: np.diag(6 * x) + np.array([[0.0, bad], [0.0, 0.0]])
        r = critical.check_hessian(lambda x: np.sum(x**3), lambda x: 3 * x**2, hess, x)
        assert not r.passed and r.blame == "analytic"
        assert r.nonfinite == 1 and r.failures == 1 and r.failing == [(0, 1)]
        assert (r.worst.i, r.worst.j) == (0, 1)
        assert "holds NaN or Inf at 1 entries" in str(r)
        with pytest.raises(GradientMismatch):
            critical.assert_hessian(lambda x: np.sum(x**3), lambda x: 3 * x**2, hess, x)


def test_check_hvp_fails_a_nonfinite_analytic_hvp():
    r = critical.check_hvp(lambda x: np.sum(x**3), lambda x: 3 * x**2, lambda x, v: 6 * x * v * np.nan, np.array([1.0, -2.0]))
    assert not r.passed and r.blame == "analytic" and r.nonfinite == r.checked == 6
    assert not math.isfinite(r.max_rel_error)


def _grad_nan_below_zero(x):
    return np.where(x >= 0, 2 * x, np.nan)  # grad of sum(x**2), NaN off x >= 0


def test_check_hessian_with_a_nonfinite_reference_does_not_pass():
    # x0 = 0: grad_f at x0 - h is NaN, so the finite-difference entry (0, 0) is NaN. Without
    # the truth nothing is compared there: unresolved, the check fails (blame numerical).
    x = np.array([0.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = critical.check_hessian(_ok, _grad_nan_below_zero, lambda x: 2 * np.eye(2), x, truth="off")
    assert not r.passed and r.blame == "numerical"
    assert r.unresolved == 1 and r.unresolved_at == [(0, 0)] and r.failures == 0
    assert "no finite reference" in str(r)
    # A wrong analytic Hessian is still caught where the reference is finite.
    r = critical.check_hessian(_ok, _grad_nan_below_zero, lambda x: 3 * np.eye(2), x, truth="off")
    assert not r.passed and r.blame == "analytic" and (1, 1) in r.failing


def test_check_hessian_judges_against_the_truth_where_the_finite_difference_is_nonfinite():
    x = np.array([0.0, 1.0])
    r = critical.check_hessian(_ok, _grad_nan_below_zero, lambda x: 2 * np.eye(2), x)
    assert r.truth == "elementwise"
    assert r.passed and r.unresolved == 0 and r.numerical_off == 1 and r.blame == "numerical"


def test_check_hessian_with_nonfinite_truth_and_reference_fails():
    # sqrt at 0: f at 0 - h is NaN at high precision, grad_f there too; a made-up analytic
    # Hessian of zeros used to pass on NaN comparisons.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = critical.check_hessian(lambda x: np.sum(np.sqrt(x)), lambda x: 0.5 / np.sqrt(x), lambda x: np.zeros((2, 2)), np.array([0.0, 1.0]))
    assert not r.passed
    assert r.unresolved >= 1 and (0, 0) in r.unresolved_at
    assert (1, 1) in r.failing  # -0.25 at x1 = 1, judged against the finite truth


def test_check_hvp_with_a_nonfinite_reference_does_not_pass():
    r = critical.check_hvp(_ok, _grad_nan_below_zero, lambda x, v: 2 * v, np.array([0.0, 1.0]), truth="off")
    assert not r.passed and r.blame == "numerical" and r.unresolved >= 1


def test_taylor_order_never_calls_nan_exact():
    x, d = np.array([0.3, -0.5]), np.array([1.0, 2.0])
    t = critical.taylor_order(lambda x: np.sum(np.sin(x)), lambda x: np.cos(x) * np.nan, x, d)
    assert not t.passed and not t.exact and math.isnan(t.order) and t.note.startswith("nonfinite: grad_f(x)")
    t = critical.taylor_order(lambda x: np.sum(np.sin(x)), np.cos, x, d, hess_f=lambda x: np.full((2, 2), np.inf))
    assert not t.passed and "hess_f(x) holds NaN or Inf" in t.note
    t = critical.taylor_order(lambda x: np.nan * np.sum(x), lambda x: x, x, d)
    assert not t.passed and not t.exact and "f(x) = nan" in t.note
    assert "nonfinite" in str(t) and "WRONG" in str(t)


def test_taylor_order_leaves_out_steps_off_the_domain():
    # log at 0.01 along -e0: the three large steps leave the domain (NaN), the rest fit.
    steps = [0.1, 0.05, 0.02, 1e-3, 5e-4, 2.5e-4, 1e-4]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = critical.taylor_order(lambda x: np.sum(np.log(x)), lambda x: 1 / x, np.array([0.01, 1.0]), np.array([-1.0, 0.0]), steps=steps)
    assert t.passed and abs(t.order - 2) < 0.3 and "left out" in t.note
    t = critical.taylor_order(lambda x: np.sum(np.log(x)), lambda x: 1 / x, np.array([0.01, 1.0]), np.array([-1.0, 0.0]), steps=steps[:5])
    assert not t.passed and "fewer than three steps remain" in t.note


# -- judged by the arbiter: spot truth beyond the elementwise limit -------------------------------------


def test_check_hessian_takes_spot_truth_for_disputed_entries_of_a_large_x():
    x = np.linspace(0.1, 2.0, critical.TRUTH_ELEMENTWISE_MAX + 8)

    def wrong(x):
        h = np.diag(-np.sin(x))
        h[3, 5] += 1e-3
        return h

    r = critical.check_hessian(lambda x: np.sum(np.sin(x)), np.cos, wrong, x)
    assert not r.passed and r.blame == "analytic" and r.failing == [(3, 5)]
    # The blame rests on the truth of the disputed entry, not on the finite difference alone.
    assert r.truth == "spot" and "most disputed" in r.truth_note
    assert (r.worst.i, r.worst.j) == (3, 5) and r.worst.truth == pytest.approx(0.0, abs=1e-15)
    ok = critical.check_hessian(lambda x: np.sum(np.sin(x)), np.cos, lambda x: np.diag(-np.sin(x)), x)
    assert ok.passed and ok.truth == "off" and ok.worst.truth is None  # nothing disputed: no truth computed


def test_check_hvp_spot_truth_corroborates_the_blame_and_stays_off_when_turned_off():
    x = np.linspace(-1, 1, critical.TRUTH_HVP_MAX + 4)
    f, g = (lambda x: np.sum(np.sin(x))), np.cos
    r = critical.check_hvp(f, g, lambda x, v: -np.sin(x) * v * 1.001, x, directions=1)
    assert r.blame == "analytic" and r.truth == "spot" and r.worst.truth is not None
    assert r.worst.rel_analytic_truth == pytest.approx(1e-3, rel=1e-2)
    off = critical.check_hvp(f, g, lambda x, v: -np.sin(x) * v * 1.001, x, directions=1, truth="off")
    assert off.blame == "analytic" and off.truth == "off" and off.worst.truth is None


def test_unresolved_entries_say_why():
    r = critical.check_hessian(_ok, _grad_nan_below_zero, lambda x: 2 * np.eye(2), np.array([0.0, 1.0]), truth="off")
    assert "no finite reference" in r.unresolved_note and "edge of their domain" in str(r)
