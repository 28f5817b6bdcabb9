"""``explore=N``: the search over variants of the example (gradverify._explore).

The proof of issue 12 is the suite in tests/explore_cases.py: each wrong pair is right on its
typical example and must be caught on a variant with the right finding kind; each correct
pair must never fail. Under the ``thorough`` profile every case runs over 20 seeds; under
``ci`` and ``dev``, over two.
"""

import contextlib
import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradverify
from gradverify import _explore
from gradverify._errors import InvalidArgument
from tests.explore_cases import CASES

SEEDS = range(20 if settings.default.max_examples >= 500 else 2)
EXPLORE = 20


def _tanh_layer(x, w):
    return np.tanh(x @ w)


def _tanh_layer_vjp(v, x, w):
    g = v * (1 - np.tanh(x @ w) ** 2)
    return g @ w.T, x.T @ g


def _tanh_layer_vjp_squeezed(v, x, w):
    g = v * (1 - np.tanh(x @ w) ** 2)
    return g @ w.T, np.squeeze(x).T @ np.squeeze(g)  # wrong for a batch of one


def _l2_rows(x):
    return x / np.sqrt(np.sum(x * x, axis=1, keepdims=True))


def _l2_rows_vjp(v, x):
    n = np.sqrt(np.sum(x * x, axis=1, keepdims=True))
    y = x / n
    return ((v - y * np.sum(v * y, axis=1, keepdims=True)) / n,)


RNG = np.random.default_rng(7)
X, W = RNG.normal(size=(4, 3)), RNG.normal(size=(3, 5))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_bug_hidden_on_the_example_is_found_with_its_kind(case):
    assert gradverify.check_vjp(case.fn, case.vjp, *case.inputs, **case.options).passed, "the bug must hide on the example"
    for seed in SEEDS:
        result = gradverify.check_vjp(case.fn, case.vjp, *case.inputs, explore=EXPLORE, seed=seed, **case.options)
        finding = result.explore.finding
        assert not result.passed and finding is not None, f"seed {seed}: not caught\n{result}"
        assert finding.kind == case.finding, f"seed {seed}: {finding.kind} ({finding.variant}: {finding.message})"
        assert finding.variant and finding.reproduce
        assert "FOUND" in str(result)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_correct_counterpart_is_never_failed(case):
    for seed in SEEDS:
        result = gradverify.check_vjp(case.correct_fn, case.correct_vjp, *case.inputs, explore=EXPLORE, seed=seed, **case.options)
        assert result.passed, f"seed {seed}: a false alarm\n{result}"
        assert result.explore.tried >= EXPLORE // 2


def test_a_finding_names_the_variant_and_rebuilds_it():
    result = gradverify.check_vjp(_tanh_layer, _tanh_layer_vjp_squeezed, X, W, explore=EXPLORE)
    finding = result.explore.finding
    assert (finding.kind, finding.side) == ("gradient", "backward")
    # The first canonical variant: the inner size 3 set to 1, where np.squeeze drops it.
    assert finding.variant == "n0 = 1 (was 3)" and finding.shapes == [(4, 1), (1, 5)]
    assert result.blame == "analytic"
    # The functions import by name, so the reproduce line runs as printed and fails again.
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(finding.reproduce, {})
    assert printed.getvalue().startswith("gradverify: FAILED: the analytic gradient is wrong")
    assert "input 0 shape (4, 1)" in printed.getvalue()


def test_exploration_is_deterministic_for_a_seed():
    a, b = (gradverify.check_vjp(_tanh_layer, _tanh_layer_vjp_squeezed, X, W, explore=EXPLORE, seed=3) for _ in range(2))
    assert a.explore.finding.variant == b.explore.finding.variant
    assert a.explore.tried == b.explore.tried


def test_a_correct_layer_passes_and_the_report_says_what_was_explored():
    result = gradverify.check_vjp(_tanh_layer, _tanh_layer_vjp, X, W, explore=EXPLORE)
    assert result.passed and result.explore.finding is None
    text = str(result)
    assert f"explore: {result.explore.tried} of up to {EXPLORE} variant(s) tried" in text
    assert "sizes n0 = 3: input 0 axis 1, input 1 axis 0" in text
    json.dumps(result.to_dict())


def test_no_exploration_when_the_example_already_fails():
    bad = lambda v, x, w: (v @ w.T, x.T @ v * 2)  # noqa: E731
    result = gradverify.check_vjp(lambda x, w: x @ w, bad, X, W, explore=EXPLORE)
    assert not result.passed and result.explore.tried == 0
    assert result.explore.note == "not run: the example itself fails"


def test_equal_sizes_split_into_the_symbols_the_forward_accepts():
    square = RNG.normal(size=(4, 4))
    result = gradverify.check_vjp(lambda x: np.sum(x, axis=0), lambda v, x: (np.broadcast_to(v, x.shape).copy(),), square, explore=4)
    assert result.explore.symbols == ["n0 = 4: input 0 axis 0", "n1 = 4: input 0 axis 1"]


def test_a_size_the_forward_rejects_stays_fixed():
    closed = RNG.normal(size=(3, 2))
    result = gradverify.check_vjp(lambda x: x @ closed, lambda v, x: (v @ closed.T,), X, explore=4)
    assert result.passed
    assert result.explore.symbols == ["n0 = 4: input 0 axis 0"]
    assert result.explore.fixed == ["size 3 (input 0 axis 1): kept, fn raised ValueError at size 5"]


def test_a_singularity_is_a_finding_until_declared():
    x = RNG.normal(size=(3, 4))
    result = gradverify.check_vjp(_l2_rows, _l2_rows_vjp, x, explore=EXPLORE)
    finding = result.explore.finding
    assert finding.kind == "nonfinite" and "row 0 all zero" in finding.variant
    assert "a singularity of fn as written" in finding.message and "allow_nonfinite=True" in finding.message
    declared = gradverify.check_vjp(_l2_rows, _l2_rows_vjp, x, explore=EXPLORE, allow_nonfinite=True)
    assert declared.passed and declared.explore.allowed_nonfinite >= 1


def test_an_overflow_of_a_value_beyond_float_range_is_not_a_finding():
    result = gradverify.check_vjp(np.exp, lambda v, x: (v * np.exp(x),), RNG.normal(size=5), explore=EXPLORE)
    assert result.passed and result.explore.beyond_range >= 1


def test_leaving_an_inferred_positive_domain_is_not_a_finding():
    result = gradverify.check_vjp(np.log, lambda v, x: (v / x,), RNG.uniform(1, 2, size=5), explore=EXPLORE)
    assert result.passed and result.explore.outside_domain >= 1
    assert result.explore.domains == ["input 0: positive (inferred)"]


@pytest.mark.parametrize(
    ("domains", "message"),
    [
        ({0: "reals"}, "domains[0]='reals' is not a domain"),
        ({0: ("index", (0, 1))}, "for an integer input"),
        ({3: "real"}, "domains names input 3, but there are 2 inputs"),
        ({"x": "real"}, "domains has the key 'x'"),
        ("real", "must be a dict"),
    ],
)
def test_a_bad_domain_is_named_with_the_fix(domains, message):
    with pytest.raises(InvalidArgument) as info:
        gradverify.check_vjp(_tanh_layer, _tanh_layer_vjp, X, W, explore=2, domains=domains)
    assert message in str(info.value)


def test_explore_must_be_a_count():
    with pytest.raises(InvalidArgument, match="explore=-1 must be an integer >= 0"):
        gradverify.check_vjp(_tanh_layer, _tanh_layer_vjp, X, W, explore=-1)


def test_hypothesis_shrinks_a_drawn_finding_to_one_edit(monkeypatch):
    sig = _explore.Signature([X, W], [True, True], ["input 0", "input 1"], {}, lambda changes: None)
    report = _explore.ExploreReport(requested=50)
    explorer = _explore.Explorer.__new__(_explore.Explorer)
    explorer.report, explorer.deadline, explorer.kind, explorer.best, explorer.seen = report, None, None, None, {}
    # Any variant with a shape edit is a "finding": Hypothesis must shrink to one edit.
    monkeypatch.setattr(explorer, "variant", lambda sig, edits: _explore.Finding("gradient", "backward", str(edits), "", []) if any(isinstance(e, _explore.ShapeEdit) for e in edits) else None, raising=False)
    finding = _explore._inner_search(explorer, sig, _explore.strategy(sig), 50, 0)
    assert finding is not None
    edits = explorer.best[1]
    assert len(edits) == 1 and isinstance(edits[0], _explore.ShapeEdit)


@settings(max_examples=3, deadline=None, database=None)
@given(st.integers(0, 3))
def test_inside_a_given_test_the_variants_come_from_its_own_data(k):
    # No nested-@given health check; the finding fails the outer test's assertion.
    result = gradverify.check_vjp(_tanh_layer, _tanh_layer_vjp_squeezed, X, W, explore=EXPLORE, seed=k)
    assert not result.passed and result.explore.finding.kind == "gradient"


def test_explore_runs_on_every_backend(xp):
    """The variants are built on the host and moved to the inputs' backend and device."""
    from array_api_compat import array_namespace

    def pool(x):
        return array_namespace(x).mean(x, axis=0)

    def pool_vjp_squeezed(v, x):
        n = array_namespace(x).squeeze(x, axis=0).shape[0] if x.shape[0] == 1 else x.shape[0]  # wrong for a batch of one
        return (array_namespace(x).broadcast_to(v / n, x.shape),)

    x = xp.asarray(RNG.normal(size=(4, 3)))
    result = gradverify.check_vjp(pool, pool_vjp_squeezed, x, explore=EXPLORE)
    assert result.explore.finding.variant == "n1 = 1 (was 4)"
    assert type(result.explore.finding.result.per_input) is list


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_variants_keep_the_example_dtype_and_its_range(dtype):
    """A grown axis stays in the input's dtype, and a value the dtype cannot hold (1e6 in
    float16) is no variant at all, never a spurious non-finite forward."""
    seen = []

    def tanh(x):
        seen.append(x.dtype)
        return np.tanh(x)

    x = np.abs(RNG.normal(size=(4, 3))).astype(dtype) + dtype(0.5)  # positive: 1e3 and 1e6 are edits
    result = gradverify.check_vjp(tanh, lambda v, x: (v * (1 - np.tanh(x) ** 2),), x, explore=EXPLORE, rtol=1e-2)
    assert result.passed, str(result)
    assert result.explore.tried >= EXPLORE // 2 and set(seen) >= {np.dtype(dtype)}
    assert all(d == np.dtype(dtype) or d == np.dtype(np.float64) or d == np.dtype(object) for d in seen)


def test_a_grown_axis_keeps_the_dtype():
    x = RNG.normal(size=(4, 3)).astype(np.float32)
    sig = _explore.Signature([x], [True], ["input 0"], {}, lambda changes: None)
    hosts, words = _explore.apply(sig, [_explore.ShapeEdit("odd", 0, k=2)])
    assert hosts[0].dtype == np.float32 and hosts[0].shape == (4, 9) and words == "n0 = 9 (was 3)"
