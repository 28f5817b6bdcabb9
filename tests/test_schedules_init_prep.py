"""Learning-rate schedules, initializers and preprocessing: the engine on every differentiable
op, the properties no gradient check sees, and deliberately wrong backwards it must catch."""

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import Phase, given, settings

from gradverify import InvalidArgument, _runner, catalog
from gradverify._backend import load_backend, namespace_of, to_numpy
from gradverify.catalog import Example
from gradverify.catalog import initializers as init
from gradverify.catalog import preprocessing as prep
from gradverify.catalog import schedules as sched

SCHEDULES = ["cosine_decay", "exponential_decay", "inverse_time_decay", "step_decay", "warmup_linear_decay"]
INITIALIZERS = ["he", "lecun", "small_random", "xavier", "zeros"]
PREPROCESSING = ["mean_subtraction", "minmax_scaling", "pca_projection", "pca_whitening", "standardization"]


def host(a):
    return np.asarray(to_numpy(a))


def test_registered_with_families():
    assert set(SCHEDULES) <= set(catalog.names("schedule"))
    assert set(INITIALIZERS) <= set(catalog.names("initializer"))
    assert set(PREPROCESSING) <= set(catalog.names("preprocessing"))
    for name in SCHEDULES + INITIALIZERS + PREPROCESSING:
        op = catalog.get(name)
        assert op.properties is not None and op.summary
        assert (op.backward is None) == (name in INITIALIZERS)


# -- the engine on every differentiable op -------------------------------------------------------


@pytest.mark.parametrize("name", SCHEDULES + PREPROCESSING)
def test_engine_verifies_backward_and_properties(name, xp):
    op = catalog.get(name)

    @settings(deadline=None, max_examples=15)
    @given(op.examples())
    def check(example):
        result = _runner.check_op(op, example, xp)
        assert result.passed, str(result)
        # Every array input is differentiated: the fitted statistics and every hyperparameter too.
        assert len(result.per_input) == len(example.inputs)

    check()


@pytest.mark.parametrize("name", INITIALIZERS)
def test_initializer_properties(name, xp):
    op = catalog.get(name)

    @settings(deadline=None, max_examples=8)
    @given(op.examples())
    def check(example):
        assert example.inputs == ()
        out, cache = op.forward(*example.inputs, **example.params)  # no positional array at all
        assert cache is None and tuple(out.shape) == tuple(example.params["shape"])
        op.properties(example, xp)

    check()


# -- deliberately wrong backwards: caught, and blamed on the analytic side -----------------------


def _exponential_backward_without_t(dlr, cache):
    decay, lr, t = cache
    return dlr * decay, -(dlr * lr)  # d lr / dk = -t lr: the factor t is missing


def _standardization_forward_keeping_x(x, mean, std):
    out, cache = prep.standardization_forward(x, mean, std)
    return out, (cache, x)


def _standardization_backward_batch_std(dout, cache):
    (z, std), x = cache
    xp = namespace_of(x)
    batch_std = xp.std(x, axis=-2)  # the batch's std instead of the fitted one
    dx = dout / batch_std[..., None, :]
    return dx, -xp.sum(dx, axis=-2), -xp.sum(dx * z, axis=-2)


def _whitening_backward_missing_half(dout, cache):
    dx, dmean, dcomponents, dvariances = prep.pca_whitening_backward(dout, cache)
    return dx, dmean, dcomponents, 2.0 * dvariances


def _cosine_backward_swapped(dlr, w):
    return dlr * (1.0 - w), dlr * w


WRONG = {
    "exponential_decay": {"backward": _exponential_backward_without_t},
    "standardization": {"forward": _standardization_forward_keeping_x, "backward": _standardization_backward_batch_std},
    "pca_whitening": {"backward": _whitening_backward_missing_half},
    "cosine_decay": {"backward": _cosine_backward_swapped},
}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the batch std of one row is 0
@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_backward_is_blamed_on_the_analytic_side(name, xp):
    wrong = dataclasses.replace(catalog.get(name), **WRONG[name])
    results = []

    # Generation only: shrinking a failure through the high-precision truth costs minutes.
    @settings(deadline=None, max_examples=10, database=None, phases=[Phase.generate])
    @given(wrong.examples())
    def check(example):
        results.append(_runner.check_example(wrong, example, xp))

    check()
    failed = [r for r in results if not r.passed]
    assert failed, f"none of {len(results)} examples caught the wrong backward of {name}"
    assert all(r.blame == "analytic" for r in failed), [r.blame for r in failed]


def test_verify_op_shrinks_the_missing_t_to_an_analytic_failure(xp):
    wrong = dataclasses.replace(catalog.get("exponential_decay"), name="wrong_exponential_decay", backward=_exponential_backward_without_t)
    outcome = _runner.verify_op(wrong, xp, examples=20, seed=0)
    assert not outcome.passed and outcome.blame == "analytic"
    # A real gradient mismatch, not an exception (which verify_op would also call "analytic").
    assert outcome.failure["result"] is not None and outcome.failure["result"]["blame"] == "analytic", outcome.failure["report"]


def test_missing_t_is_caught_on_a_fixed_example(xp):
    example = Example((np.asarray(0.1), np.asarray(0.05)), {"t": 7})
    op = dataclasses.replace(catalog.get("exponential_decay"), backward=_exponential_backward_without_t)
    result = _runner.check_example(op, example, xp)
    assert not result.passed and result.blame == "analytic"
    assert result.per_input[0].failures == 0 and result.per_input[1].failures == 1  # only d/dk is wrong


# -- schedules ------------------------------------------------------------------------------------


def _lr(forward, *hyper, xp, **params):
    return float(host(forward(*(xp.asarray(h) for h in hyper), **params)[0]))


def _ulps(want, n=4):
    """``want`` to within ``n`` float64 ulps: for values made by ``pow``, ``exp`` or ``cos``, whose
    last bit depends on the library (libm, SVML on AVX-512) and so on the CPU."""
    return pytest.approx(want, rel=n * 2.0**-52, abs=0.0)


def test_schedule_values(xp):
    # gamma ** n (NumPy's power, SIMD on some CPUs) and cos: never compared bit for bit.
    for t, want in enumerate([0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025]):
        assert _lr(sched.step_decay_forward, 0.1, 0.5, t=t, step_size=3, xp=xp) == _ulps(want)
    assert _lr(sched.exponential_decay_forward, 2.0, 0.1, t=10, xp=xp) == pytest.approx(2.0 * math.exp(-1.0), rel=1e-15)
    assert _lr(sched.inverse_time_decay_forward, 2.0, 0.5, t=6, xp=xp) == pytest.approx(0.5, rel=1e-15)
    # Only +, *, / on small integers and powers of two: exact in IEEE arithmetic on every CPU.
    curve = [_lr(sched.warmup_linear_decay_forward, 1.0, t=t, warmup=4, total=8, xp=xp) for t in range(11)]
    assert curve == [0.0, 0.25, 0.5, 0.75, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0, 0.0]
    assert _lr(sched.warmup_linear_decay_forward, 1.0, t=0, warmup=0, total=8, xp=xp) == 1.0  # no warm-up
    cos = [_lr(sched.cosine_decay_forward, 1.0, 0.1, t=t, total=10, xp=xp) for t in (0, 5, 10, 11, 100)]
    assert cos[0] == _ulps(1.0) and cos[1] == pytest.approx(0.55, rel=1e-15) and cos[2:] == _ulps([0.1, 0.1, 0.1])


def test_schedule_gradients_by_hand(xp):
    a0, k = xp.asarray(2.0), xp.asarray(0.1)
    lr, cache = sched.exponential_decay_forward(a0, k, t=10)
    d_a0, d_k = sched.exponential_decay_backward(xp.asarray(1.0), cache)
    assert float(host(d_a0)) == pytest.approx(math.exp(-1.0), rel=1e-15)
    assert float(host(d_k)) == pytest.approx(-10 * 2.0 * math.exp(-1.0), rel=1e-15)
    lr, cache = sched.step_decay_forward(a0, xp.asarray(0.5), t=7, step_size=3)  # n = 2
    d_a0, d_gamma = sched.step_decay_backward(xp.asarray(1.0), cache)
    assert float(host(d_a0)) == _ulps(0.25) and float(host(d_gamma)) == _ulps(2 * 2.0 * 0.5)


@pytest.mark.parametrize(
    ("forward", "hyper", "params", "match"),
    [
        (sched.exponential_decay_forward, (1.0, 0.1), {"t": -1}, "t=-1"),
        (sched.exponential_decay_forward, (1.0, 0.1), {"t": 1.5}, "t=1.5"),
        (sched.inverse_time_decay_forward, (1.0, 0.1), {"t": True}, "t=True"),
        (sched.step_decay_forward, (1.0, 0.5), {"t": 3, "step_size": 0}, "step_size=0"),
        (sched.warmup_linear_decay_forward, (1.0,), {"t": 3, "warmup": 8, "total": 8}, "warmup=8 must be below total=8"),
        (sched.cosine_decay_forward, (1.0, 0.0), {"t": 3, "total": 0}, "total=0"),
    ],
)
def test_schedule_rejects_bad_steps(forward, hyper, params, match):
    with pytest.raises(InvalidArgument, match=match):
        forward(*(np.asarray(h) for h in hyper), **params)


def test_schedule_property_checks_catch_bad_curves():
    ok = np.array([1.0, 0.9, 0.8])
    sched._check_curve("ok", ok, alpha0=1.0, lipschitz=0.1)
    with pytest.raises(AssertionError, match="increases from t = 1"):
        sched._check_curve("bad", np.array([1.0, 0.9, 0.95]), alpha0=1.0, lipschitz=1.0)
    with pytest.raises(AssertionError, match="exceeds the Lipschitz bound"):
        sched._check_curve("bad", np.array([1.0, 0.5, 0.4]), alpha0=1.0, lipschitz=0.1)
    with pytest.raises(AssertionError, match="not multiples of the step size 3"):
        sched._check_curve("bad", np.array([1.0, 0.5, 0.5, 0.5]), alpha0=1.0, lipschitz=1.0, jumps_at=3)
    with pytest.raises(AssertionError, match=r"lr\(0\)"):
        sched._check_curve("bad", np.array([0.9, 0.8]), alpha0=1.0, lipschitz=1.0)


# -- initializers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", INITIALIZERS)
def test_same_seed_same_values_on_every_backend(name):
    f = init.INITIALIZERS[name]
    numpy_ns, strict_ns = load_backend("numpy"), load_backend("strict")
    a = f((96, 80), seed=7, xp=numpy_ns)
    b = f((96, 80), seed=7, xp=strict_ns)
    assert isinstance(a, np.ndarray) and not isinstance(b, np.ndarray)
    assert np.array_equal(a, host(b))
    if name != "zeros":
        assert not np.array_equal(a, f((96, 80), seed=8, xp=numpy_ns))


@pytest.mark.parametrize("name", ["he", "lecun", "small_random", "xavier"])
def test_sample_std_matches_the_claim(name, xp):
    shape = (128, 64)
    a = host(init.INITIALIZERS[name](shape, seed=2024, xp=xp))
    claimed = init.CLAIMED_STD[name](shape)
    assert claimed == pytest.approx({"he": math.sqrt(2 / 128), "lecun": math.sqrt(1 / 128), "small_random": 0.01, "xavier": math.sqrt(2 / 192)}[name])
    se = claimed / math.sqrt(2 * (a.size - 1))
    assert abs(a.std(ddof=1) - claimed) <= 5 * se


def test_fans_and_dtype_and_bad_shapes(xp):
    assert init.fans((3, 4)) == (3, 4) and init.fans((3, 3, 16, 32)) == (144, 288)
    a = init.he((3, 3, 16, 32), seed=0, xp=xp, dtype=xp.float32)
    assert a.dtype == xp.float32 and tuple(a.shape) == (3, 3, 16, 32)
    assert not np.any(host(init.zeros((5,), xp=xp)))
    with pytest.raises(InvalidArgument, match="at least two axes"):
        init.he((5,), seed=0, xp=xp)
    with pytest.raises(InvalidArgument, match="tuple of ints"):
        init.lecun("big", seed=0, xp=xp)


SEEDS = [11, 222, 3333, 44444, 555555, 6666666, 7, 88]


def _geometric_mean_final(f, activation, xp):
    """Geometric mean over seeds of E[x^2] after 10 square layers of width 256 (log std ~0.13)."""
    return math.exp(np.mean([math.log(init.stack_second_moments(f, activation, xp=xp, seed=s)[-1]) for s in SEEDS]))


def test_he_keeps_relu_activations_and_small_random_collapses(xp):
    assert 0.5 < _geometric_mean_final(init.he, "relu", xp) < 2.0
    # The test has power: LeCun's scale (no factor 2) halves E[x^2] at each ReLU layer.
    assert _geometric_mean_final(init.lecun, "relu", xp) < 2.0**-7
    collapsed = init.stack_second_moments(init.small_random, "relu", xp=xp, seed=SEEDS[0])
    assert collapsed[-1] < 1e-15 and np.all(np.diff(np.log(collapsed)) < 0)


@pytest.mark.parametrize("f", [init.lecun, init.xavier])
def test_lecun_and_xavier_keep_linear_activations(f, xp):
    assert 0.8 < _geometric_mean_final(f, "linear", xp) < 1.25
    # tanh contracts only polynomially (q_l ~ 1 / (2 l)), small weights geometrically.
    assert 0.035 < _geometric_mean_final(f, "tanh", xp) < 0.07
    assert init.stack_second_moments(init.small_random, "tanh", xp=xp, seed=SEEDS[0])[-1] < 1e-12


# -- preprocessing -----------------------------------------------------------------------------------


@pytest.fixture
def train(rng):
    # Correlated features of different scales and offsets, 200 samples.
    base = rng.standard_normal((200, 4)) @ np.array([[2.0, 0.5, 0, 0], [0, 1.0, 0.3, 0], [0, 0, 0.2, 0.1], [0, 0, 0, 0.05]])
    return base + np.array([10.0, -3.0, 0.0, 100.0])


def test_standardization_of_the_training_data(train, xp):
    stats = prep.fit_standardization(xp.asarray(train), xp=xp)
    assert set(stats) == {"mean", "std"} and stats["std"].dtype == xp.float64
    z = host(prep.standardization_forward(xp.asarray(train), *stats.values())[0])
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0), 1.0, rtol=1e-12)


def test_minmax_maps_the_training_range_exactly(train, xp):
    stats = prep.fit_minmax_scaling(xp.asarray(train), xp=xp)
    z = host(prep.minmax_scaling_forward(xp.asarray(train), stats["low"], stats["high"])[0])
    assert np.all(z.min(axis=0) == -1.0) and np.all(z.max(axis=0) == 1.0)


def test_pca_projection_and_whitening_of_the_training_data(train, xp):
    p = prep.fit_pca_projection(xp.asarray(train), k=3, xp=xp)
    V = host(p["components"])
    np.testing.assert_allclose(V.T @ V, np.eye(3), atol=1e-12)
    z = host(prep.pca_projection_forward(xp.asarray(train), p["mean"], p["components"])[0])
    cov = z.T @ z / len(z)
    assert np.all(np.diff(np.diag(cov)) < 0)
    np.testing.assert_allclose(cov - np.diag(np.diag(cov)), 0.0, atol=1e-12 * cov[0, 0])
    w = prep.fit_pca_whitening(xp.asarray(train), k=4, xp=xp)
    lam = host(w["variances"])
    np.testing.assert_allclose(lam[:3], np.diag(cov), rtol=1e-12)
    white = host(prep.pca_whitening_forward(xp.asarray(train), *w.values())[0])
    wcov = white.T @ white / len(white)
    np.testing.assert_allclose(wcov, np.diag(lam / (lam + prep.WHITENING_EPS)), atol=1e-10)
    # The smallest variance (0.05**2 scale) shows the eps effect, still within eps / var of 1.
    assert np.all(np.abs(np.diag(wcov) - 1.0) <= prep.WHITENING_EPS / lam + 1e-10)


def test_fits_refuse_constant_features_and_bad_k(train):
    X = train.copy()
    X[:, 2] = 4.0
    with pytest.raises(InvalidArgument, match=r"feature\(s\) \[2\].*constant"):
        prep.fit_standardization(X)
    with pytest.raises(InvalidArgument, match=r"feature\(s\) \[2\].*constant"):
        prep.fit_minmax_scaling(X)
    prep.fit_mean_subtraction(X)  # a constant feature is fine to center
    with pytest.raises(InvalidArgument, match="k=5 must be an int in"):
        prep.fit_pca_projection(train, k=5)
    with pytest.raises(InvalidArgument, match="2-D"):
        prep.fit_pca_whitening(train[0])
    with pytest.raises(InvalidArgument, match="NaN"):
        prep.fit_mean_subtraction(np.array([[1.0, np.nan]]))


def test_fit_follows_the_requested_namespace_and_dtype(train):
    strict = load_backend("strict")
    stats = prep.fit_standardization(train, xp=strict)  # host data, strict statistics
    assert not isinstance(stats["mean"], np.ndarray) and stats["mean"].dtype == strict.float64
    s32 = prep.fit_standardization(strict.asarray(train, dtype=strict.float32))
    assert s32["std"].dtype == strict.float32
