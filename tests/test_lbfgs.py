"""L-BFGS's two-loop direction: the engine verifies its VJP (and catches a wrong one), it is the
dense BFGS recursion applied to ``g``, it meets the secant condition, rejects a pair with
``s.y <= 0``, and drives a quadratic to its minimum in ``n`` exact line searches. A variant with
its loops in the wrong order fails these checks."""

import doctest

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings

from gradverify import InvalidArgument, _runner, catalog, check_vjp
from gradverify._backend import to_numpy
from gradverify.catalog import Example
from gradverify.catalog import optimizers as O
from reference import oracles

OP = catalog.get("lbfgs_direction")


def _host(x):
    return np.asarray(to_numpy(x), dtype=np.float64)


def _spd(n, rng, low=0.5, high=5.0):
    """A symmetric positive definite matrix with eigenvalues spread over [low, high]."""
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return Q @ np.diag(np.linspace(low, high, n)) @ Q.T


def _pairs(n, m, seed=0):
    """A gradient and ``m`` curvature pairs ``y_i = A s_i`` of a quadratic (every ``s.y > 0``)."""
    rng = np.random.default_rng(seed)
    A = _spd(n, rng)
    S = rng.standard_normal((m, n))
    return rng.standard_normal(n), S, S @ A


def _dense_h(S, Y):
    """The BFGS inverse Hessian, written out here: ``H0 = gamma I``, then for each pair, oldest
    first, ``H <- (I - rho s y^T) H (I - rho y s^T) + rho s s^T``."""
    m, n = S.shape
    H = np.eye(n) * ((S[-1] @ Y[-1]) / (Y[-1] @ Y[-1]) if m else 1.0)
    for s, y in zip(S, Y):
        rho = 1.0 / (s @ y)
        left = np.eye(n) - rho * np.outer(s, y)
        H = left @ H @ left.T + rho * np.outer(s, s)
    return H


def _two_loop(g, S, Y, *, first_loop="newest first", second_loop="oldest first", xp=None):
    """The two-loop recursion in plain NumPy, its loop orders chosen (the right ones are the defaults)."""
    m = S.shape[0]
    rho = [1.0 / (S[i] @ Y[i]) for i in range(m)]
    order1 = range(m - 1, -1, -1) if first_loop == "newest first" else range(m)
    order2 = {"oldest first": range(m), "newest first": range(m - 1, -1, -1), "skipped": ()}[second_loop]
    q, alpha = np.array(g, dtype=np.float64), [0.0] * m
    for i in order1:
        alpha[i] = rho[i] * (S[i] @ q)
        q = q - alpha[i] * Y[i]
    r = (S[-1] @ Y[-1]) / (Y[-1] @ Y[-1]) * q if m else q
    for i in order2:
        beta = rho[i] * (Y[i] @ r)
        r = r + (alpha[i] - beta) * S[i]
    return -r


def _wrong_order(g, S, Y, xp=None):
    """The classic slip: the first loop runs oldest-first."""
    return _two_loop(_host(g), _host(S), _host(Y), first_loop="oldest first")


# -- the property checks, each taking the direction function under test --------------------


def _matches_dense(direction, g, S, Y):
    """``direction(g) == -H g``, ``H`` the dense BFGS recursion, within float64 rounding."""
    H = _dense_h(S, Y)
    d, want = _host(direction(g, S, Y)), -(H @ g)
    scale = np.linalg.norm(H, 2) * np.linalg.norm(g)
    assert np.linalg.norm(d - want) <= 1e-11 * scale, f"direction {d} is not the dense -H g = {want}"


def _secant(direction, S, Y):
    """``H_k y_{m-1} = s_{m-1}``: the newest pair's secant condition."""
    hy = -_host(direction(Y[-1], S, Y))
    scale = np.linalg.norm(_dense_h(S, Y), 2) * np.linalg.norm(Y[-1])
    assert np.linalg.norm(hy - S[-1]) <= 1e-11 * scale, f"H y = {hy} is not s = {S[-1]}"


SHAPES = [(1, 1), (2, 1), (3, 2), (4, 3), (5, 5), (3, 6)]  # (n, m): m > n too


@pytest.mark.parametrize(("n", "m"), SHAPES)
def test_direction_is_the_dense_bfgs_recursion(n, m, xp):
    g, S, Y = _pairs(n, m, seed=n * 10 + m)
    _matches_dense(lambda g, S, Y: O.lbfgs_direction(xp.asarray(g), xp.asarray(S), xp.asarray(Y)), g, S, Y)


@pytest.mark.parametrize(("n", "m"), [(3, 2), (2, 3)])
def test_direction_matches_the_mpmath_oracle(n, m):
    g, S, Y = _pairs(n, m, seed=7)
    ctx = mpmath.MPContext()
    ctx.dps = 40
    as_mp = lambda a: np.vectorize(lambda v: ctx.mpf(float(v)), otypes=[object])(a)  # noqa: E731
    want = np.array([float(v) for v in oracles.lbfgs_direction(ctx, as_mp(g), as_mp(S), as_mp(Y))])
    d = O.lbfgs_direction(g, S, Y)
    assert np.allclose(d, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize(("n", "m"), SHAPES)
def test_secant_condition(n, m, xp):
    g, S, Y = _pairs(n, m, seed=n * 10 + m + 1)
    _secant(lambda g, S, Y: O.lbfgs_direction(xp.asarray(g), xp.asarray(S), xp.asarray(Y)), S, Y)


def test_descent_and_no_pairs():
    g, S, Y = _pairs(4, 3)
    assert g @ O.lbfgs_direction(g, S, Y) < 0
    empty = np.zeros((0, 4))
    assert O.lbfgs_direction(g, empty, empty).tolist() == (-g).tolist()  # H = I without pairs
    d, cache = O.lbfgs_direction_forward(g, empty, empty)
    dg, dS, dY = O.lbfgs_direction_backward(np.ones(4), cache)
    assert dg.tolist() == [-1.0] * 4 and dS.shape == dY.shape == (0, 4)


# -- invalid arguments -----------------------------------------------------------------------


@pytest.mark.parametrize("pair", [0, 1, 2])
@pytest.mark.parametrize("curvature", [0.0, -1.0])
def test_nonpositive_curvature_is_a_named_error(pair, curvature):
    g, S, Y = _pairs(3, 3)
    # Make s_pair . y_pair = curvature exactly: y along s only.
    S[pair] = [1.0, 0.0, 0.0]
    Y[pair] = [curvature, 2.0, -1.0]
    with pytest.raises(InvalidArgument, match=rf"curvature pair {pair} \(of 3, oldest first\) has s_{pair} \. y_{pair} = {curvature}.*skip that pair.*Wolfe"):
        O.lbfgs_direction(g, S, Y)
    with pytest.raises(InvalidArgument, match=f"pair {pair}"):
        OP.forward(g, S, Y)


INVALID = {
    "g not 1-d": (np.zeros((2, 3)), np.ones((1, 3)), np.ones((1, 3)), "g must be a 1-d gradient"),
    "S wrong width": (np.zeros(3), np.ones((1, 2)), np.ones((1, 3)), r"S must have shape \(m, 3\)"),
    "Y not 2-d": (np.zeros(3), np.ones((1, 3)), np.ones(3), r"Y must have shape \(m, 3\)"),
    "unpaired": (np.zeros(3), np.ones((2, 3)), np.ones((1, 3)), "S holds 2 steps s_i but Y holds 1"),
}


@pytest.mark.parametrize("case", list(INVALID), ids=list(INVALID))
def test_invalid_shapes(case):
    g, S, Y, match = INVALID[case]
    with pytest.raises(InvalidArgument, match=match):
        O.lbfgs_direction(g, S, Y)


# -- a quadratic: finite termination with exact line searches ----------------------------------


def _minimize_quadratic(A, b, x0, *, memory, iterations, direction):
    """L-BFGS on ``f(x) = x^T A x / 2 - b^T x`` with the exact line search
    ``t = -g.d / d^T A d``; the gradient norms after each iteration."""
    x, g = x0, A @ x0 - b
    S, Y, norms = [], [], [np.linalg.norm(g)]
    for _ in range(iterations):
        d = direction(g, np.array(S[-memory:] if memory else []).reshape(-1, len(x)), np.array(Y[-memory:] if memory else []).reshape(-1, len(x)))
        t = -(g @ d) / (d @ A @ d)
        x_new = x + t * d
        g_new = A @ x_new - b
        S.append(x_new - x)
        Y.append(g_new - g)
        x, g = x_new, g_new
        norms.append(np.linalg.norm(g))
        if norms[-1] <= 1e-10 * norms[0]:
            break
    return norms


@pytest.mark.parametrize("n", [2, 3, 5, 8])
@pytest.mark.parametrize("extra_memory", [0, 3])
def test_quadratic_minimum_in_n_exact_line_searches(n, extra_memory):
    rng = np.random.default_rng(n)
    A, b = _spd(n, rng, 1.0, 20.0), rng.standard_normal(n)
    norms = _minimize_quadratic(A, b, rng.standard_normal(n), memory=n + extra_memory, iterations=n, direction=O.lbfgs_direction)
    assert len(norms) <= n + 1 and norms[-1] <= 1e-8 * norms[0], f"|g| per iteration: {norms}"


def _first_loop_only(g, S, Y, xp=None):
    """A broken two-loop: the second loop left out (``d = -gamma q``)."""
    return _two_loop(g, S, Y, second_loop="skipped")


@pytest.mark.parametrize(("memory", "direction", "label"), [(0, O.lbfgs_direction, "steepest descent"), (5, _first_loop_only, "no second loop")])
def test_quadratic_check_can_fail(memory, direction, label):
    """The same check rejects a direction that is not L-BFGS's: after n = 5 steps the gradient
    is still large. (A short memory would not do: with exact line searches on a quadratic,
    L-BFGS with any m >= 1 makes the conjugate-gradient iterates, so m >= n is sufficient,
    not necessary.)"""
    n = 5
    rng = np.random.default_rng(n)
    A, b = _spd(n, rng, 1.0, 20.0), rng.standard_normal(n)
    norms = _minimize_quadratic(A, b, rng.standard_normal(n), memory=memory, iterations=n, direction=direction)
    assert norms[-1] > 1e-4 * norms[0], f"{label} reached the minimum in {n} steps: {norms}"


@pytest.mark.parametrize("n", [3, 5])
def test_quadratic_one_pair_is_conjugate_gradients(n):
    """L-BFGS(1) with exact line searches also ends in n steps (it is CG on a quadratic)."""
    rng = np.random.default_rng(n)
    A, b = _spd(n, rng, 1.0, 20.0), rng.standard_normal(n)
    norms = _minimize_quadratic(A, b, rng.standard_normal(n), memory=1, iterations=n, direction=O.lbfgs_direction)
    assert norms[-1] <= 1e-8 * norms[0], f"|g| per iteration: {norms}"


# -- mutations: the checks reject a two-loop with its loops in the wrong order, and a wrong VJP --


def test_the_reference_two_loop_passes_the_checks():
    """The test's own two-loop, in the right order, passes (so a failure below is the order's)."""
    for n, m in SHAPES:
        g, S, Y = _pairs(n, m, seed=3)
        _matches_dense(_two_loop, g, S, Y)
        _secant(_two_loop, S, Y)
        assert np.allclose(_two_loop(g, S, Y), O.lbfgs_direction(g, S, Y), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("n", "m"), [(3, 2), (4, 3), (5, 5)])
def test_loops_in_the_wrong_order_are_rejected(n, m):
    g, S, Y = _pairs(n, m, seed=11)
    with pytest.raises(AssertionError, match="dense"):
        _matches_dense(_wrong_order, g, S, Y)
    with pytest.raises(AssertionError, match="is not s"):
        _secant(_wrong_order, S, Y)
    with pytest.raises(AssertionError, match="dense BFGS recursion|secant"):
        O.lbfgs_properties(Example((g, S, Y)), np, direction=_wrong_order)
    O.lbfgs_properties(Example((g, S, Y)), np)  # the catalog's own passes


def _fn_vjp():
    def fn(g, S, Y):
        return O.lbfgs_direction_forward(g, S, Y)[0]

    def vjp(dd, g, S, Y):
        return O.lbfgs_direction_backward(dd, O.lbfgs_direction_forward(g, S, Y)[1])

    return fn, vjp


def test_check_vjp_passes_the_right_vjp(xp):
    g, S, Y = _pairs(3, 2, seed=5)
    result = check_vjp(*_fn_vjp(), xp.asarray(g), xp.asarray(S), xp.asarray(Y))
    assert result.passed, str(result)


def test_check_vjp_catches_a_vjp_without_the_gamma_term(monkeypatch, xp):
    """Treating ``gamma = s.y / y.y`` as a constant drops its derivative: the newest pair's
    gradients are wrong (and only those: ``dg`` does not involve it)."""
    g, S, Y = _pairs(3, 2, seed=5)
    monkeypatch.setattr(O, "_lbfgs_gamma_vjp", lambda d_gamma, s, y, sy, xp: (0.0 * s, 0.0 * y))
    result = check_vjp(*_fn_vjp(), xp.asarray(g), xp.asarray(S), xp.asarray(Y))
    assert not result.passed and result.blame == "analytic", str(result)
    g_report, s_report, y_report = result.per_input
    assert g_report.passed and s_report.failures and y_report.failures, str(result)
    for report in (s_report, y_report):
        assert report.worst.index[0] == 1, str(result)  # the newest pair's row


# -- the engine ---------------------------------------------------------------------------------


def test_engine_verifies_lbfgs_direction(xp):
    """Hypothesis examples pass the engine (with the truth) and the registered properties."""

    @settings(max_examples=8, deadline=None)
    @given(OP.examples())
    def check(example):
        result = _runner.check_op(OP, example, xp)
        assert result.passed, str(result)

    check()


def test_registered_op():
    assert OP.family == "optimizer" and OP.reference == "lbfgs_direction" and OP.properties is O.lbfgs_properties
    assert "lbfgs_direction" in catalog.names("optimizer")


def test_doctests():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for f in (O.lbfgs_direction_forward, O.lbfgs_direction):
        for test in finder.find(f, globs=dict(vars(O))):
            runner.run(test)
    assert runner.failures == 0 and runner.tries >= 2
