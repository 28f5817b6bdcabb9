"""gradverify.strategies: what each strategy draws, on every selected backend, and a table of invalid calls."""

import doctest
import math
import warnings

import numpy as np
import pytest
from array_api_compat import array_namespace
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NonInteractiveExampleWarning

import gradverify.strategies
from gradverify import InvalidArgument, catalog
from gradverify._backend import backend_name, to_numpy
from gradverify.strategies import (
    FLOAT_DTYPES,
    OPTIMIZERS,
    SPECIALS,
    float_arrays,
    hyperparameters,
    make_strategies,
    shapes,
    target_error,
)

S = make_strategies("numpy")


def host(x):
    return np.asarray(to_numpy(x))


def test_public_names_are_pinned():
    assert gradverify.strategies.__all__ == sorted(gradverify.strategies.__all__)
    assert set(gradverify.strategies.__all__) == {
        "FLOAT_DTYPES", "OPTIMIZERS", "SPECIALS", "Strategies", "float_arrays", "hyperparameters",
        "make_strategies", "shapes", "target_error",
    }


def test_docstring_examples_run():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonInteractiveExampleWarning)
        outcome = doctest.testmod(gradverify.strategies, report=False)
    assert outcome.failed == 0 and outcome.attempted >= 5


# -- the table of invalid calls: each raises when the strategy is built, before any draw ------

INVALID = [
    (lambda: shapes(min_dims=3, max_dims=2), "min_dims=3, max_dims=2"),
    (lambda: shapes(min_side=0), "min_side=0"),
    (lambda: shapes(max_side=2.5), "max_side=2.5"),
    (lambda: float_arrays((2, -1)), r"shape=\(2, -1\)"),
    (lambda: float_arrays("3x3"), "shape='3x3'"),
    (lambda: float_arrays((2.0, 3)), "non-negative integers"),
    (lambda: float_arrays(scale=-1.0), "scale=-1.0 must be a positive finite number"),
    (lambda: float_arrays(scale=float("inf")), "scale=inf"),
    (lambda: float_arrays(scale=True), "scale=True"),
    (lambda: float_arrays(scale="big"), "scale='big'"),
    (lambda: float_arrays(specials=("zero", "nan")), r"specials=\['nan'\] are unknown"),
    (lambda: float_arrays(specials="zero"), "must be a tuple of names"),
    (lambda: float_arrays(positive=1), "positive=1 must be True or False"),
    (lambda: make_strategies(42), "xp=42 is not an array namespace"),
    (lambda: make_strategies("tensorflow"), "backend 'tensorflow' is unknown"),
    (lambda: S.arrays(bound=0), "bound=0 must be a positive finite number"),
    (lambda: S.arrays(bound=st.just(1.0)), "bound=just"),
    (lambda: S.arrays(dtype="int32"), "dtype='int32' must be one of float16, float32, float64"),
    (lambda: S.arrays(dtype=None), "dtype=None"),
    (lambda: S.positive_arrays(min_value=-1.0), "min_value=-1.0"),
    (lambda: S.logits(batch=0), "batch=0 must be an integer >= 1"),
    (lambda: S.logits(classes=2.0), "classes=2.0"),
    (lambda: S.logits(scale=0.0), "scale=0.0"),
    (lambda: S.labels(batch=-2), "batch=-2"),
    (lambda: S.one_hot(classes=0), "classes=0"),
    (lambda: S.probabilities(batch="4"), "batch='4'"),
    (lambda: S.classification(target="soft"), "target='soft' must be one of 'labels', 'one_hot', 'probabilities'"),
    (lambda: S.away_from_kinks(kinks=()), "kinks=()"),
    (lambda: S.away_from_kinks(kinks=(0.0, math.nan)), "finite numbers"),
    (lambda: S.away_from_kinks(margin=-0.1), "margin=-0.1"),
    (lambda: S.away_from_kinks(distinct="yes"), "distinct='yes'"),
    (lambda: S.on_kinks(kinks="zero"), "kinks='zero'"),
    (lambda: S.with_ties((3, 1)), r"shape \(3, 1\) has 1 element\(s\) along axis -1"),
    (lambda: S.with_ties((3,), axis=1), "axis=1 is out of range"),
    (lambda: S.with_ties((), axis=0), "0-d array"),
    (lambda: S.with_ties(axis=0.5), "axis=0.5"),
    (lambda: S.catalog_inputs("sofmax"), "no op named 'sofmax'"),
    (lambda: hyperparameters("adamax"), "optimizer='adamax' is unknown; choose from"),
    (lambda: hyperparameters("sgd", momentum=0.9), "sgd has no hyperparameter 'momentum'; it has lr"),
    (lambda: hyperparameters("sgd", lr=0.0), r"lr=0.0 must be a learning rate, a number in \(0, 10\]"),
    (lambda: hyperparameters("momentum", momentum=1.0), r"momentum=1.0 must be a decay in \[0, 1\)"),
    (lambda: hyperparameters("adam", t=0), "t=0 must be a step count"),
    (lambda: hyperparameters("rmsprop", eps=float("nan")), "eps=nan"),
    (lambda: hyperparameters("adam", bias_correction="yes"), "bias_correction='yes'"),
    (lambda: target_error("large"), "must be a VerificationResult or a relative error"),
    (lambda: target_error(0.1, label=3), "label=3 must be a string"),
]


@pytest.mark.parametrize(("call", "message"), INVALID, ids=[m for _, m in INVALID])
def test_invalid_calls_raise_up_front(call, message):
    with pytest.raises(InvalidArgument, match=message):
        call()


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        (float_arrays(st.just((2, -3))), r"shape=\(2, -3\)"),
        (float_arrays((2,), scale=st.just(-2.0)), "scale=-2.0"),
        (S.logits(batch=st.just(0)), "batch=0"),
        (hyperparameters("sgd", lr=st.just(5e3)), "lr=5000.0"),
        (S.with_ties(st.just((4, 1))), "a tie needs at least 2"),
    ],
    ids=["shape", "scale", "batch", "lr", "tie"],
)
def test_a_strategy_argument_is_checked_as_it_is_drawn(strategy, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonInteractiveExampleWarning)
        with pytest.raises(InvalidArgument, match=message):
            strategy.example()


# -- what the strategies draw, on each backend ---------------------------------------------------


def strategies_for(xp):
    s = make_strategies(xp)
    assert s.xp is xp and s.backend == backend_name(xp)
    return s


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_arrays_have_the_shape_dtype_and_bound_asked_for(xp, data):
    s = strategies_for(xp)
    dtype = data.draw(st.sampled_from(["float32", "float64"]))
    bound = data.draw(st.sampled_from([None, 0.5, 2.0]))
    x = data.draw(s.arrays((2, 3), bound=bound, dtype=dtype))
    assert backend_name(array_namespace(x)) == s.backend
    assert tuple(x.shape) == (2, 3) and host(x).dtype.name == dtype
    assert np.all(np.isfinite(host(x)))
    if bound is not None:
        assert np.all(np.abs(host(x)) <= bound)
    y = data.draw(s.arrays(s.shapes(max_dims=3, max_side=4)))
    assert 1 <= len(y.shape) <= 3 and all(1 <= n <= 4 for n in y.shape)


def test_generated_shapes_reach_a_batch_of_one():
    assert find(shapes(min_dims=2), lambda shape: True) == (1, 1)
    x = find(S.logits(), lambda x: True)
    assert x.shape == (1, 2)


def test_numpy_and_strict_draw_identical_values():
    """Generated on the host, moved afterwards: the same example on two backends holds the same numbers."""
    import array_api_strict

    quiet = settings(database=None, derandomize=True, max_examples=50)
    found = []
    for xp in ("numpy", array_api_strict):
        s = make_strategies(xp)
        found.append(host(find(s.arrays((3, 4), scale=1.0), lambda x: float(host(x).max()) > 1.5, settings=quiet)))
    np.testing.assert_array_equal(found[0], found[1])


@settings(max_examples=30)
@given(data=st.data())
def test_positive_arrays_are_positive(xp, data):
    s = strategies_for(xp)
    assert np.all(host(data.draw(s.positive_arrays())) > 0)
    assert np.all(host(data.draw(s.positive_arrays((4,), min_value=0.25))) >= 0.25)
    scalar = host(data.draw(s.positive_arrays(())))  # 0-d: np.abs makes it a scalar on the way
    assert scalar.shape == () and scalar > 0


@settings(max_examples=30)
@given(data=st.data())
def test_classification_targets_match_their_logits(xp, data):
    s = strategies_for(xp)
    target = data.draw(st.sampled_from(["labels", "one_hot", "probabilities"]))
    logits, y = data.draw(s.classification(classes=st.integers(2, 5), target=target))
    n, c = logits.shape
    y = host(y)
    if target == "labels":
        assert y.shape == (n,) and y.dtype == np.int64 and np.all((0 <= y) & (y < c))
    else:
        assert y.shape == (n, c) and np.all(y >= 0)
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-12)
        if target == "one_hot":
            assert set(np.unique(y)) <= {0.0, 1.0}
    assert host(data.draw(s.labels(3, 4))).shape == (3,)
    one_hot = host(data.draw(s.one_hot(2, 3)))
    assert one_hot.shape == (2, 3) and np.all(one_hot.sum(axis=1) == 1)
    probs = host(data.draw(s.probabilities(2, 3)))
    assert np.all(probs > 0) and np.allclose(probs.sum(axis=1), 1)


@settings(max_examples=40)
@given(data=st.data())
def test_away_from_kinks_keeps_its_margin(xp, data):
    s = strategies_for(xp)
    kinks = data.draw(st.sampled_from([(0.0,), (-1.0, 1.0)]))
    distinct = data.draw(st.booleans())
    x = host(data.draw(s.away_from_kinks(kinks=kinks, distinct=distinct, margin=1e-3)))
    gap = 1e-3 * np.sqrt(np.mean(x * x))
    for k in kinks:
        # The rms is taken before the elements move, so allow a sliver of slack.
        assert np.all(np.abs(x - k) >= 0.999 * gap)
    if distinct and x.size > 1:
        assert np.min(np.diff(np.sort(x.reshape(-1)))) >= 0.999 * gap


@settings(max_examples=30)
@given(data=st.data())
def test_on_kinks_and_with_ties_push_onto_them(xp, data):
    s = strategies_for(xp)
    x = host(data.draw(s.on_kinks(kinks=(1.5,))))
    assert np.any(x == 1.5)
    t = host(data.draw(s.with_ties(axis=0)))
    top = t.max(axis=0)
    assert np.any(np.sum(t == top, axis=0) >= 2)


@given(hyperparameters("adam"))
def test_hyperparameters_lie_in_their_valid_ranges(params):
    assert set(params) == set(OPTIMIZERS["adam"])
    assert 0 < params["lr"] <= 1 and 0 < params["eps"] < 1 and params["t"] >= 1
    assert 0 <= params["beta1"] < 1 and 0 <= params["beta2"] < 1


def test_every_optimizer_has_hyperparameters():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonInteractiveExampleWarning)
        for name in OPTIMIZERS:
            assert set(hyperparameters(name).example()) == set(OPTIMIZERS[name])
        assert hyperparameters("adam", lr=0.5, beta2=st.just(0.9)).example()["beta2"] == 0.9
    assert FLOAT_DTYPES == ("float16", "float32", "float64") and "tie" in SPECIALS


@pytest.mark.parametrize("name", catalog.names())
def test_catalog_inputs_land_on_the_backend(name, xp):
    s = make_strategies(xp)
    op = catalog.get(name)

    @settings(max_examples=3, database=None)
    @given(s.catalog_inputs(name))
    def check(example):
        assert isinstance(example, catalog.Example)
        for a in example.inputs:
            if hasattr(a, "shape"):
                assert backend_name(array_namespace(a)) == s.backend

    check()
    assert op.examples is not None


# -- targeted search ---------------------------------------------------------------------------


def test_target_error_is_quiet_outside_a_test_and_scores_inside():
    assert target_error(0.5) is None
    seen = []

    @settings(max_examples=5, database=None)
    @given(st.floats(1e-12, 1.0))
    def run(error):
        # Twice in one example: the second call gets a label of its own.
        seen.append((target_error(error), target_error(error, label="mine"), target_error(0.0), target_error(math.inf)))

    run()
    for score, again, exact, infinite in seen:
        assert -12.01 <= score <= 0 and again == score and exact == -300.0 and infinite == 300.0


def test_float_arrays_keeps_its_behaviour_for_the_catalog():
    x = find(float_arrays((2, 2), specials=()), lambda x: True, settings=settings(database=None))
    assert x.shape == (2, 2) and x.dtype == np.float64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonInteractiveExampleWarning)
        assert np.all(float_arrays((5,), positive=True).example() > 0)
