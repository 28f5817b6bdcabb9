"""Optimizer steps: the engine verifies their VJPs, catches wrong ones, and the update rules
keep the promises a first optimization course makes about them."""

import dataclasses
import doctest
import inspect
import math

import numpy as np
import pytest
from hypothesis import given, settings

from gradverify import InvalidArgument, _runner, catalog, check_layer
from gradverify._backend import to_numpy
from gradverify.catalog import Example
from gradverify.catalog import optimizers as O

NAMES = tuple(O.STATE_KEYS)


def _host(x):
    return np.asarray(to_numpy(x), dtype=np.float64)


def _example(name, shape=(2, 3), seed=0, **params):
    """A generic fixed example: no zeros, no ties, squared states in [0.1, 1]."""
    rng = np.random.default_rng(seed)
    arrays = [rng.uniform(-2.0, 2.0, shape), rng.uniform(-2.0, 2.0, shape)]
    for k in O.STATE_KEYS[name]:
        arrays.append(rng.uniform(0.1, 1.0, shape) if k in O.SQUARED_STATES else rng.uniform(-1.0, 1.0, shape))
    return Example(tuple(arrays), params)


FIXED = {
    "sgd": {"lr": 0.3},
    "momentum": {"lr": 0.3, "momentum": 0.9},
    "nesterov": {"lr": 0.3, "momentum": 0.9},
    "adagrad": {"lr": 0.3, "eps": 1e-8},
    "adagrad_rms": {"lr": 0.3, "t": 3, "eps": 1e-8},
    "rmsprop": {"lr": 0.3, "rho": 0.9, "eps": 1e-8},
    "adam": {"lr": 0.3, "t": 2, "beta1": 0.9, "beta2": 0.99, "eps": 1e-8, "bias_correction": True},
    "sgd_weight_decay": {"lr": 0.3, "weight_decay": 0.1},
    "adamw": {"lr": 0.5, "t": 2, "beta1": 0.9, "beta2": 0.99, "eps": 1e-8, "weight_decay": 0.1, "bias_correction": True},
}


# -- the engine on every optimizer --------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_engine_verifies_optimizer(name, xp):
    """Hypothesis examples of each op pass the engine and the op's registered properties."""
    op = catalog.get(name)

    # The truth costs ~10 mpmath steps per element; tests/test_catalog.py runs the full profile.
    @settings(max_examples=6, deadline=None)
    @given(op.examples())
    def check(example):
        result = _runner.check_op(op, example, xp)
        assert result.passed, str(result)

    check()


@pytest.mark.parametrize("name", NAMES)
def test_fixed_example_verifies_with_truth(name, xp):
    """A fixed generic example passes, with the per-element truth and no kinks."""
    result = _runner.check_example(catalog.get(name), _example(name, **FIXED[name]), xp)
    assert result.passed and result.truth == "lazy", str(result)
    assert sum(p.kinks for p in result.per_input) == 0, str(result)


def test_module_doctest():
    failed, attempted = doctest.testmod(O)
    assert attempted and not failed


def test_registered_in_the_optimizer_family():
    assert set(NAMES) <= set(catalog.names("optimizer"))
    for name in NAMES:
        op = catalog.get(name)
        assert op.family == "optimizer" and op.backward is not None and not op.batched
        arrays = [p.name for p in inspect.signature(op.forward).parameters.values() if p.kind is p.POSITIONAL_ONLY]
        assert arrays == ["param", "grad", *O.STATE_KEYS[name]]
        assert f":func:`{name}_step`" in op.forward.__doc__


@pytest.mark.parametrize("name", NAMES)
def test_forward_packs_param_then_states_in_key_order(name, xp):
    example = _example(name, shape=(3, 2), **FIXED[name])
    param, grad, *states = (xp.asarray(a) for a in example.inputs)
    keys = O.STATE_KEYS[name]
    out, _ = catalog.get(name).forward(param, grad, *states, **example.params)
    new_param, new_state = getattr(O, f"{name}_step")(param, grad, dict(zip(keys, states)), **example.params)
    expected = np.concatenate([_host(new_param).ravel()] + [_host(new_state[k]).ravel() for k in keys])
    assert tuple(out.shape) == (6 * (1 + len(keys)),)
    np.testing.assert_array_equal(_host(out), expected)


@pytest.mark.parametrize("name", NAMES)
def test_step_and_vjp_are_pure(name, xp):
    """Neither function changes its arrays or its dicts; the VJP's dict has the state's keys."""
    example = _example(name, **FIXED[name])
    param, grad, *states = (xp.asarray(a) for a in example.inputs)
    keys = O.STATE_KEYS[name]
    state = dict(zip(keys, states))
    d_state = {k: xp.ones_like(param) for k in keys}
    step, vjp = getattr(O, f"{name}_step"), getattr(O, f"{name}_step_vjp")
    _, new_state = step(param, grad, state, **example.params)
    d_param_in, d_grad, d_state_in = vjp(xp.ones_like(param), d_state, param, grad, state, **example.params)
    assert new_state is not state and d_state_in is not d_state
    assert set(new_state) == set(d_state_in) == set(keys) and list(state) == list(keys)
    for original, now in zip(example.inputs, [param, grad, *(state[k] for k in keys)]):
        np.testing.assert_array_equal(_host(now), original)
    assert tuple(d_param_in.shape) == tuple(d_grad.shape) == tuple(param.shape)


# -- deliberately wrong VJPs: the engine must blame the analytic side ------------------------


def _adam_vjp_without_bias_correction_in_d_grad(d_param, d_state, param, grad, state, **p):
    d_w, _, d_s = O.adam_step_vjp(d_param, d_state, param, grad, state, **p)
    _, d_g, _ = O.adam_step_vjp(d_param, d_state, param, grad, state, **{**p, "bias_correction": False})
    return d_w, d_g, d_s


def _momentum_vjp_with_flipped_mu_in_d_state(d_param, d_state, param, grad, state, *, lr, momentum, xp=None):
    d_w, d_g, _ = O.momentum_step_vjp(d_param, d_state, param, grad, state, lr=lr, momentum=momentum, xp=xp)
    _, _, d_s = O.momentum_step_vjp(d_param, d_state, param, grad, state, lr=lr, momentum=-momentum, xp=xp)
    return d_w, d_g, d_s


def _adagrad_vjp_ignoring_g_in_the_denominator(d_param, d_state, param, grad, state, *, lr, eps, xp=None):
    """d_grad as if sqrt(r + g^2) did not depend on g: -lr dw' / D + 2 g dr'."""
    d_w, _, d_s = O.adagrad_step_vjp(d_param, d_state, param, grad, state, lr=lr, eps=eps, xp=xp)
    _, d_g_state_only, _ = O.adagrad_step_vjp(0.0 * d_param, d_state, param, grad, state, lr=lr, eps=eps, xp=xp)
    d_g = d_g_state_only - lr * d_param / ((state["sum_sq"] + grad * grad) ** 0.5 + eps)
    return d_w, d_g, d_s


def _adamw_vjp_without_decay_in_d_param(d_param, d_state, param, grad, state, *, weight_decay, **p):
    return O.adam_step_vjp(d_param, d_state, param, grad, state, **p)


WRONG = {
    "adam: d_grad without the bias-correction factors": ("adam", _adam_vjp_without_bias_correction_in_d_grad),
    "momentum: -mu instead of mu in d_velocity": ("momentum", _momentum_vjp_with_flipped_mu_in_d_state),
    "adagrad: d_grad ignores the g in sqrt(r + g^2)": ("adagrad", _adagrad_vjp_ignoring_g_in_the_denominator),
    "adamw: d_param without the decoupled decay": ("adamw", _adamw_vjp_without_decay_in_d_param),
}


@pytest.mark.parametrize("case", list(WRONG))
def test_engine_blames_a_wrong_vjp(case, xp):
    name, wrong_vjp = WRONG[case]
    op = catalog.get(name)
    _, backward = O.pack_step(name, getattr(O, f"{name}_step"), wrong_vjp, O.STATE_KEYS[name])
    example = _example(name, **FIXED[name])
    assert _runner.check_example(op, example, xp).passed  # the right VJP passes here
    result = _runner.check_example(dataclasses.replace(op, backward=backward), example, xp)
    assert not result.passed and result.blame == "analytic", str(result)


# -- a zero gradient on a zero squared state: sqrt(0) -------------------------------------------


def test_vjp_at_zero_gradient_and_zero_state_is_finite_and_right(xp):
    """rho = 0 makes the new state g^2; at g = 0 the update g / (|g| + eps) has slope 1 / eps."""
    lr, eps = 0.1, 1e-8
    param, grad, mean_sq = xp.asarray([0.5, -1.0]), xp.asarray([0.0, 0.7]), xp.asarray([0.3, 0.2])
    d_param = xp.asarray([1.0, 1.0])
    _, d_grad, d_state = O.rmsprop_step_vjp(d_param, {"mean_sq": xp.zeros_like(param)}, param, grad, {"mean_sq": mean_sq}, lr=lr, rho=0.0, eps=eps)
    assert np.all(np.isfinite(_host(d_grad))) and np.all(_host(d_state["mean_sq"]) == 0.0)
    assert _host(d_grad)[0] == -lr / eps


@pytest.mark.parametrize("name", ["rmsprop", "adagrad_rms", "adam"])
def test_engine_verifies_zero_gradient_on_a_vanishing_state(name, xp):
    """With eps = 1e-3 (the kink's scale within the differences' reach) the engine confirms it."""
    params = {**FIXED[name], "eps": 1e-3, **{"rmsprop": {"rho": 0.0}, "adagrad_rms": {"t": 0}, "adam": {"beta2": 0.0, "beta1": 0.0}}[name]}
    example = _example(name, **params)
    example.inputs[1].reshape(-1)[0] = 0.0
    result = _runner.check_example(catalog.get(name), example, xp)
    assert result.passed, str(result)


def test_adam_hypergradient_from_zero_moments_with_a_zero_gradient(xp):
    """Adam's first step from m = s = 0 with g = 0 in one coordinate: d_grad is c1 (1 - beta1) / eps there."""
    op = catalog.get("adam")
    params = {"lr": 0.1, "t": 1, "beta1": 0.9, "beta2": 0.999, "eps": 1e-3, "bias_correction": True}
    g = np.array([0.0, 0.4, -1.5])
    inputs = [xp.asarray(a) for a in (np.array([1.0, -2.0, 0.5]), g, np.zeros(3), np.zeros(3))]

    def forward(*arrays):
        return op.forward(*arrays, **params)

    result = check_layer(forward, op.backward, *inputs, wrt=(1,))  # s cannot be perturbed below 0
    assert result.passed, str(result)
    d_param = xp.asarray([1.0, 0.0, 0.0])
    _, d_grad, _ = O.adam_step_vjp(d_param, {"m": xp.zeros_like(d_param), "s": xp.zeros_like(d_param)}, *inputs[:2], {"m": inputs[2], "s": inputs[3]}, **params)
    np.testing.assert_allclose(_host(d_grad), [-0.1 / 1e-3, 0.0, 0.0], rtol=1e-14)


# -- the reductions: mu = 0 is SGD, lambda = 0 removes the decay ----------------------------


@pytest.mark.parametrize("name", ["momentum", "nesterov", "sgd_weight_decay", "adamw"])
def test_zero_hyperparameter_reduces_to_simpler_optimizer(name, xp):
    prop = catalog.get(name).properties

    @settings(max_examples=15, deadline=None)
    @given(catalog.get(name).examples())
    def check(example):
        prop(example, xp)

    check()


def test_reduction_property_catches_a_wrong_step(xp):
    """A momentum step with the gradient's sign flipped is not SGD at mu = 0, and is told so."""

    def wrong_momentum(param, grad, state, *, lr, momentum, xp=None):
        return O.momentum_step(param, -grad, state, lr=lr, momentum=momentum, xp=xp)

    prop = O._reduces_to("momentum", wrong_momentum, "momentum", O.sgd_step, "sgd")
    with pytest.raises(AssertionError, match="momentum with momentum=0"):
        prop(_example("momentum", **FIXED["momentum"]), xp)


def test_zero_weight_decay_reduces_exactly(xp):
    example = _example("adamw", **FIXED["adamw"])
    param, grad, m, s = (xp.asarray(a) for a in example.inputs)
    p = {k: v for k, v in FIXED["adamw"].items() if k != "weight_decay"}
    w_adamw, st_adamw = O.adamw_step(param, grad, {"m": m, "s": s}, weight_decay=0.0, **p)
    w_adam, st_adam = O.adam_step(param, grad, {"m": m, "s": s}, **p)
    np.testing.assert_array_equal(_host(w_adamw), _host(w_adam))
    np.testing.assert_array_equal(_host(st_adamw["s"]), _host(st_adam["s"]))
    w_decay, _ = O.adamw_step(param, grad, {"m": m, "s": s}, weight_decay=0.1, **p)
    # decoupled: the decay term is exactly lr * lambda * w, independent of the moments
    np.testing.assert_allclose(_host(w_adam) - _host(w_decay), 0.05 * example.inputs[0], rtol=1e-12, atol=1e-15)
    w_sgdwd, _ = O.sgd_weight_decay_step(param, grad, {}, lr=0.3, weight_decay=0.0)
    w_sgd, _ = O.sgd_step(param, grad, {}, lr=0.3)
    np.testing.assert_array_equal(_host(w_sgdwd), _host(w_sgd))


# -- Adam's first step ------------------------------------------------------------------------


def test_adam_first_step_moves_each_coordinate_by_about_lr(xp):
    g = xp.asarray([3.0, -1e-2, 1e-6, 0.0, -250.0, 1e-9])
    zeros = xp.zeros_like(g)
    w, _ = O.adam_step(zeros, g, {"m": zeros, "s": zeros}, lr=0.01, t=1, beta1=0.9, beta2=0.999, eps=1e-8)
    step = np.abs(_host(w))
    np.testing.assert_allclose(step[[0, 1, 4]], 0.01, rtol=1e-6)
    np.testing.assert_allclose(step, 0.01 * np.abs(_host(g)) / (np.abs(_host(g)) + 1e-8), rtol=1e-12)
    assert step[3] == 0.0 and step[5] < 0.001  # |g| = 0 and |g| < eps move little
    # Without the bias correction the first step is (1 - beta1) / sqrt(1 - beta2) = 3.16 times lr.
    w_raw, _ = O.adam_step(zeros, g, {"m": zeros, "s": zeros}, lr=0.01, t=1, beta1=0.9, beta2=0.999, eps=1e-8, bias_correction=False)
    np.testing.assert_allclose(np.abs(_host(w_raw))[0], 0.01 * 0.1 / math.sqrt(0.001), rtol=1e-6)


def test_adam_first_step_property_on_examples(xp):
    @settings(max_examples=15, deadline=None)
    @given(catalog.get("adam").examples())
    def check(example):
        O.adam_first_step_property(example, xp)

    check()


def test_adam_first_step_property_catches_a_missing_bias_correction(xp, monkeypatch):
    real = O.adam_step
    monkeypatch.setattr(O, "adam_step", lambda *a, **k: real(*a, **{**k, "bias_correction": False}))
    # beta2 = 0.999: without the correction the step is (1 - beta1) / sqrt(1 - beta2) = 3.16 lr
    with pytest.raises(AssertionError, match="first step"):
        O.adam_first_step_property(_example("adam", **{**FIXED["adam"], "beta2": 0.999}), xp)


# -- AdaGrad's effective learning rate --------------------------------------------------------


def test_adagrad_effective_rate_never_increases(xp):
    @settings(max_examples=15, deadline=None)
    @given(catalog.get("adagrad").examples())
    def check(example):
        O.adagrad_rate_property(example, xp)

    check()


def test_adagrad_rms_effective_rate_rises_after_a_small_gradient(xp):
    """The RMS form is a mean: a gradient below the RMS so far raises the rate, so AdaGrad's
    "never increases" is false for it, while its own property (rate up iff g^2 < mean) holds."""
    lr, eps = 0.1, 1e-8
    param = xp.asarray([1.0, 1.0, 1.0])
    state = {"mean_sq": xp.asarray([4.0, 4.0, 4.0])}
    grad = xp.asarray([0.0, 1.0, 3.0])  # g^2 = 0, 1 < 4 and 9 > 4
    _, new = O.adagrad_rms_step(param, grad, state, lr=lr, t=1, eps=eps)
    np.testing.assert_allclose(_host(new["mean_sq"]), [2.0, 2.5, 6.5], rtol=1e-15)
    rate_old = lr / (2.0 + eps)
    rate_new = lr / (np.sqrt(_host(new["mean_sq"])) + eps)
    assert rate_new[0] > rate_old and rate_new[1] > rate_old and rate_new[2] < rate_old
    # AdaGrad proper on the same numbers (sum 4 + g^2) never raises it.
    _, new_sum = O.adagrad_step(param, grad, {"sum_sq": xp.asarray([4.0, 4.0, 4.0])}, lr=lr, eps=eps)
    assert np.all(lr / (np.sqrt(_host(new_sum["sum_sq"])) + eps) <= rate_old)


def test_adagrad_rms_rate_property_on_examples(xp):
    @settings(max_examples=15, deadline=None)
    @given(catalog.get("adagrad_rms").examples())
    def check(example):
        O.adagrad_rms_rate_property(example, xp)

    check()


def test_adagrad_rate_property_catches_a_mean_instead_of_a_sum(xp, monkeypatch):
    """Swap AdaGrad's sum for the RMS form's mean: the "never increases" property fails."""

    def mean_not_sum(param, grad, state, *, lr, eps, xp=None):
        w, s = O.adagrad_rms_step(param, grad, {"mean_sq": state["sum_sq"]}, lr=lr, t=3, eps=eps, xp=xp)
        return w, {"sum_sq": s["mean_sq"]}

    monkeypatch.setattr(O, "adagrad_step", mean_not_sum)
    with pytest.raises(AssertionError, match="rose"):
        O.adagrad_rate_property(_example("adagrad", **FIXED["adagrad"]), xp)


def test_rmsprop_mean_sq_property_on_examples(xp):
    @settings(max_examples=15, deadline=None)
    @given(catalog.get("rmsprop").examples())
    def check(example):
        O.rmsprop_average_property(example, xp)

    check()


# -- a convex quadratic: every optimizer makes progress ---------------------------------------

QUADRATIC_HYPERPARAMETERS = {
    "sgd": {"lr": 0.01},
    "momentum": {"lr": 0.005, "momentum": 0.9},
    "nesterov": {"lr": 0.005, "momentum": 0.9},
    "adagrad": {"lr": 0.5, "eps": 1e-8},
    "adagrad_rms": {"lr": 0.02, "eps": 1e-8},
    "rmsprop": {"lr": 0.01, "rho": 0.9, "eps": 1e-8},
    "adam": {"lr": 0.02, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
    "sgd_weight_decay": {"lr": 0.005, "weight_decay": 0.1},
    "adamw": {"lr": 0.02, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01},
}


def _quadratic(seed, xp):
    """Diagonal A with eigenvalues from 1 to 100 (condition number 100) and a start w0."""
    rng = np.random.default_rng(seed)
    a = 10.0 ** rng.uniform(0.0, 2.0, 6)
    a[0], a[1] = 1.0, 100.0
    w0 = rng.uniform(0.5, 2.0, 6) * rng.choice([-1.0, 1.0], 6)
    return xp.asarray(a), xp.asarray(w0)


def _run(name, a, w, steps, xp, **hyper):
    """Losses ``f(w) = 1/2 w^T A w`` along ``steps`` steps from zero state, ``t`` counted per step."""
    step = getattr(O, f"{name}_step")
    state = {k: xp.zeros_like(w) for k in O.STATE_KEYS[name]}
    losses = [0.5 * float(xp.sum(a * w * w))]
    for k in range(steps):
        counter = {"t": k + 1} if name in ("adam", "adamw") else {"t": k} if name == "adagrad_rms" else {}
        w, state = step(w, a * w, state, **hyper, **counter)
        losses.append(0.5 * float(xp.sum(a * w * w)))
    return np.array(losses)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", NAMES)
def test_every_optimizer_decreases_a_convex_quadratic(name, seed, xp):
    a, w0 = _quadratic(seed, xp)
    losses = _run(name, a, w0, 50, xp, **QUADRATIC_HYPERPARAMETERS[name])
    assert losses[-1] < losses[0], f"{name}: f went from {losses[0]} to {losses[-1]} in 50 steps"
    assert losses[-1] < 0.5 * losses[0], f"{name}: f only went from {losses[0]} to {losses[-1]} in 50 steps"


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.95])
def test_sgd_decreases_monotonically_below_two_over_lambda_max(fraction, xp):
    """Each coordinate is multiplied by 1 - lr a_i, of modulus < 1 for lr < 2 / lambda_max."""
    a, w0 = _quadratic(0, xp)
    losses = _run("sgd", a, w0, 50, xp, lr=fraction * 2.0 / 100.0)
    assert np.all(np.diff(losses) < 0), f"sgd with lr = {fraction} * 2 / lambda_max: losses {losses}"


def test_sgd_diverges_above_two_over_lambda_max(xp):
    a, w0 = _quadratic(0, xp)
    losses = _run("sgd", a, w0, 50, xp, lr=1.05 * 2.0 / 100.0)
    assert losses[-1] > losses[0], f"sgd with lr = 1.05 * 2 / lambda_max: losses {losses}"


def test_nesterov_reformulation_tracks_the_look_ahead_point(xp):
    """Sutskever's v' = mu v - lr grad f(w + mu v), w' = w + v' is our step on phi = w + mu v."""
    a, w = _quadratic(1, xp)
    lr, mu = 0.005, 0.9
    v = xp.zeros_like(w)
    phi, state = w, {"velocity": v}
    for _ in range(20):
        v = mu * v - lr * (a * (w + mu * v))
        w = w + v
        phi, state = O.nesterov_step(phi, a * phi, state, lr=lr, momentum=mu)
        np.testing.assert_allclose(_host(state["velocity"]), _host(v), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(_host(phi), _host(w + mu * v), rtol=1e-12, atol=1e-15)


# -- invalid calls --------------------------------------------------------------------------

_W = np.ones(3)
INVALID = [
    ("adam t=0", lambda: O.adam_step(_W, _W, {"m": _W, "s": _W}, lr=0.1, t=0), "t=0 must be a Python int >= 1"),
    ("adam t=1.0", lambda: O.adam_step(_W, _W, {"m": _W, "s": _W}, lr=0.1, t=1.0), r"t=1.0 must be"),
    ("adam beta1=1", lambda: O.adam_step(_W, _W, {"m": _W, "s": _W}, lr=0.1, t=1, beta1=1.0), r"beta1=1.0 must lie in \[0, 1\)"),
    ("adagrad_rms t=-1", lambda: O.adagrad_rms_step(_W, _W, {"mean_sq": _W}, lr=0.1, t=-1), "t=-1 must be a Python int >= 0"),
    ("missing state", lambda: O.momentum_step(_W, _W, {}, lr=0.1), r"exactly the keys \['velocity'\]"),
    ("extra state", lambda: O.sgd_step(_W, _W, {"velocity": _W}, lr=0.1), r"exactly the keys \[\]"),
    ("vjp d_state keys", lambda: O.adam_step_vjp(_W, {"m": _W}, _W, _W, {"m": _W, "s": _W}, lr=0.1, t=1), "d_state"),
    ("forward arity", lambda: O.adam_forward(_W, _W, _W, lr=0.1, t=1), r"takes \(param, grad, m, s\); got 3 arrays"),
    ("forward shapes", lambda: O.momentum_forward(_W, _W, np.ones(4), lr=0.1), "velocity has shape"),
]


@pytest.mark.parametrize("call,match", [pytest.param(c, m, id=i) for i, c, m in INVALID])
def test_invalid_calls_raise_clear_errors(call, match):
    with pytest.raises(InvalidArgument, match=match):
        call()
