"""The public surface: exports, argument validation, the wrappers, the result record and the options."""

import dataclasses
import doctest
import json
import subprocess
import sys

import array_api_strict
import numpy as np
import pytest
from array_api_compat import array_namespace

import gradverify
import gradverify._check
from gradverify import (
    GradientMismatch,
    InvalidArgument,
    VerificationResult,
    assert_grad,
    assert_layer,
    assert_vjp,
    check_grad,
    check_layer,
    check_vjp,
)


def _ns(*xs):
    return array_namespace(*xs)


def _square(x):
    return x * x


def _square_vjp(v, x):
    return (2 * v * x,)


def _tanh(x):
    return _ns(x).tanh(x)


def _tanh_vjp(v, x):
    return (v * (1 - _ns(x).tanh(x) ** 2),)


def _tanh_vjp_wrong_sign(v, x):
    return (-v * (1 - _ns(x).tanh(x) ** 2),)


X = np.array([0.5, -1.0, 2.0])


# -- exports ------------------------------------------------------------------------------


def test_importing_the_package_imports_no_engine():
    """The package's names load on first use: the pytest plugin, loaded into every pytest
    session of a project that installed gradverify, must not pay for NumPy, mpmath or Hypothesis."""
    code = (
        "import sys, gradverify, gradverify.pytest_plugin, gradverify._options\n"
        "heavy = [m for m in ('numpy', 'mpmath', 'hypothesis', 'gradverify._check', 'jinja2') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_all_is_pinned_and_importable():
    """__all__ is exactly this sorted list, and every name in it exists on the package."""
    expected = [
        "CheckBudgetExceeded",
        "CheckOptions",
        "GradVerifyError",
        "GradientMismatch",
        "HighPrecisionUnavailable",
        "InvalidArgument",
        "UserFunctionError",
        "VerificationResult",
        "__version__",
        "assert_grad",
        "assert_layer",
        "assert_vjp",
        "check_grad",
        "check_layer",
        "check_vjp",
    ]
    assert gradverify.__all__ == expected == sorted(expected)
    namespace = {}
    exec("from gradverify import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == expected


def test_error_hierarchy():
    """InvalidArgument is a TypeError and a ValueError; GradientMismatch an AssertionError; all GradVerifyError."""
    assert issubclass(InvalidArgument, TypeError) and issubclass(InvalidArgument, ValueError)
    assert issubclass(GradientMismatch, AssertionError)
    for name in ("CheckBudgetExceeded", "GradientMismatch", "HighPrecisionUnavailable", "InvalidArgument", "UserFunctionError"):
        assert issubclass(getattr(gradverify, name), gradverify.GradVerifyError)


def test_import_does_not_pull_in_cupy():
    """`import gradverify` in a fresh interpreter leaves cupy out of sys.modules."""
    code = "import sys, gradverify; print('cupy' in sys.modules, 'gradverify' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True"], done.stderr


# -- argument validation ------------------------------------------------------------------


def _two_devices():
    xs = array_api_strict
    x = xs.asarray(X)
    y = xs.asarray(X, device=xs.Device("device1"))
    return check_vjp(lambda x, y: x * y, lambda v, x, y: (v * y, v * x), x, y)


BAD_CALLS = [
    ("fn-not-callable", lambda: check_vjp(3, _square_vjp, X), "fn must be callable"),
    ("vjp-not-callable", lambda: check_vjp(_square, "vjp", X), "vjp must be callable"),
    ("no-inputs", lambda: check_vjp(_square, _square_vjp), "no inputs"),
    ("python-float-input", lambda: check_vjp(_square, _square_vjp, 1.5), "input 0 is a float"),
    ("mode", lambda: check_vjp(_square, _square_vjp, X, mode="bogus"), "mode='bogus'"),
    ("truth", lambda: check_vjp(_square, _square_vjp, X, truth="bogus"), "truth='bogus'"),
    ("directions", lambda: check_vjp(_square, _square_vjp, X, directions=0), "directions=0"),
    ("dps", lambda: check_vjp(_square, _square_vjp, X, dps=10), "dps=10"),
    ("seed", lambda: check_vjp(_square, _square_vjp, X, seed=-1), "seed=-1"),
    ("rtol-zero", lambda: check_vjp(_square, _square_vjp, X, rtol=0), "rtol=0"),
    ("rtol-two", lambda: check_vjp(_square, _square_vjp, X, rtol=2), "rtol=2"),
    ("batched", lambda: check_vjp(_square, _square_vjp, X, batched="yes"), "batched='yes'"),
    ("wrt-out-of-range", lambda: check_vjp(_square, _square_vjp, X, wrt=(5,)), "wrt names input 5"),
    ("wrt-empty", lambda: check_vjp(_square, _square_vjp, X, wrt=()), "wrt is empty"),
    ("cotangent-shape", lambda: check_vjp(_square, _square_vjp, X, cotangent=np.ones(4)), "cotangent has shape (4,)"),
    ("two-devices", _two_devices, "input 1 is on"),
    (
        "elementwise-truth-directional-mode",
        lambda: check_vjp(_square, _square_vjp, X, truth="elementwise", mode="directional"),
        "truth='elementwise'",
    ),
]


@pytest.mark.parametrize("call, names", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_arguments_raise_invalid_argument_naming_them(call, names):
    """Each bad call raises InvalidArgument (also TypeError and ValueError) whose message names the argument."""
    with pytest.raises(InvalidArgument) as info:
        call()
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)
    assert names in str(info.value)


# -- check_layer and check_grad -----------------------------------------------------------


def _linear_forward(x, w):
    return x @ w, (x, w)


def _linear_backward(dout, cache):
    x, w = cache
    return dout @ w.T, x.T @ dout


def _linear_inputs():
    rng = np.random.default_rng(1)
    return rng.standard_normal((2, 3)), rng.standard_normal((3, 4))


def test_check_layer_with_out_cache_convention_passes():
    """forward -> (out, cache), backward(dout, cache) -> grads: a correct layer passes on both inputs."""
    result = check_layer(_linear_forward, _linear_backward, *_linear_inputs())
    assert result.passed, str(result)
    assert [p.index for p in result.per_input] == [0, 1]
    assert result.function == _linear_forward.__qualname__


def test_check_layer_wrong_backward_fails():
    """A backward with dW transposed the wrong way round (correct shape, W square) is blamed."""
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    result = check_layer(_linear_forward, lambda d, c: (d @ c[1].T, d.T @ c[0]), x, w)
    assert not result.passed and result.blame == "analytic", str(result)
    assert [p.failures > 0 for p in result.per_input] == [False, True]


def test_check_layer_forward_without_cache_is_invalid_argument():
    """A forward returning only `out` is a convention error: InvalidArgument mentioning "(out, cache)"."""
    with pytest.raises(InvalidArgument, match=r"\(out, cache\)"):
        check_layer(lambda x, w: x @ w, _linear_backward, *_linear_inputs())


def test_check_grad_single_input_bare_array():
    """check_grad on a scalar function whose single-input grad returns a bare array passes."""
    result = check_grad(lambda x: np.sum(np.sin(x)), np.cos, X)
    assert result.passed, str(result)
    assert [p.shape for p in result.per_input] == [(3,)]


def test_check_grad_two_inputs_tuple(xp):
    """check_grad with a two-input grad returning a tuple passes, checking both inputs."""
    x, y = xp.asarray(X), xp.asarray(np.array([1.5, 0.25, -2.0]))
    result = check_grad(lambda x, y: _ns(x).sum(x * y * y), lambda x, y: (y * y, 2 * x * y), x, y)
    assert result.passed, str(result)
    assert [p.index for p in result.per_input] == [0, 1]


def test_check_grad_wrong_grad_is_blamed(xp):
    """A grad missing its factor 2 fails with blame analytic and an analytic verdict at the worst element."""
    result = check_grad(lambda x: _ns(x).sum(x * x), lambda x: x, xp.asarray(X))
    assert not result.passed and result.blame == "analytic", str(result)
    assert result.per_input[0].failures == 3
    assert result.per_input[0].worst.verdict == "analytic"


# -- assert_* -----------------------------------------------------------------------------


ASSERTS = [
    ("vjp", lambda: assert_vjp(_tanh, _tanh_vjp_wrong_sign, X), lambda: assert_vjp(_tanh, _tanh_vjp, X)),
    (
        "layer",
        lambda: assert_layer(_linear_forward, lambda d, c: (d @ c[1].T, 2 * c[0].T @ d), *_linear_inputs()),
        lambda: assert_layer(_linear_forward, _linear_backward, *_linear_inputs()),
    ),
    (
        "grad",
        lambda: assert_grad(lambda x: np.sum(x**3), lambda x: 3 * x, X),
        lambda: assert_grad(lambda x: np.sum(x**3), lambda x: 3 * x**2, X),
    ),
]


@pytest.mark.parametrize("failing, passing", [a[1:] for a in ASSERTS], ids=[a[0] for a in ASSERTS])
def test_assert_helpers(failing, passing):
    """assert_* raise GradientMismatch (an AssertionError) with the report and .result; else return the result."""
    with pytest.raises(AssertionError) as info:
        failing()
    error = info.value
    assert isinstance(error, GradientMismatch)
    assert isinstance(error.result, VerificationResult) and not error.result.passed
    message = str(error)
    assert message == str(error.result)
    assert "blame: analytic" in message
    bad = next(p for p in error.result.per_input if p.failures)
    assert f"{bad.name} shape" in message and f"worst at index {bad.worst.index}" in message
    result = passing()
    assert isinstance(result, VerificationResult) and result.passed


# -- the result record and its report -----------------------------------------------------


def _relu(x):
    return _ns(x).maximum(x, 0.0)


def _relu_vjp(v, x):
    return (v * _ns(x).astype(x > 0, x.dtype),)


def _roundtrip(result):
    d = result.to_dict()
    back = json.loads(json.dumps(d, allow_nan=False))
    assert back == d
    return back


def test_to_dict_roundtrips_through_json():
    """A plain result's dict survives strict JSON and carries passed, blame, max_rel_error, per_input."""
    result = check_vjp(_tanh, _tanh_vjp_wrong_sign, X)
    d = _roundtrip(result)
    assert d["passed"] is False and d["blame"] == "analytic"
    assert d["max_rel_error"] == result.max_rel_error
    assert [p["name"] for p in d["per_input"]] == ["input 0"]
    assert d["per_input"][0]["shape"] == [3]
    assert d["per_input"][0]["worst"]["truth"] == result.per_input[0].worst.truth
    assert d["evaluations"] == result.evaluations


@pytest.mark.parametrize("truth", ["auto", "off"])
def test_to_dict_roundtrips_at_a_kink(truth):
    """At a kink (ReLU at 0) brackets become lists; with the truth off its fields are None."""
    result = check_vjp(_relu, _relu_vjp, np.array([0.0]), truth=truth)
    assert result.passed, str(result)
    d = _roundtrip(result)
    p = d["per_input"][0]
    assert p["kinks"] == 1
    assert isinstance(p["worst"]["numerical_bracket"], list) and len(p["worst"]["numerical_bracket"]) == 2
    if truth == "off":
        assert d["truth"] == "off"
        assert p["worst"]["truth"] is None and p["max_rel_analytic_truth"] is None
    else:
        assert d["truth"] == "lazy"  # the kink gets its truth per element
        assert isinstance(p["worst"]["truth_bracket"], list)


def test_to_dict_writes_nonfinite_floats_as_strings():
    """inf and NaN (which JSON has no literal for) become strings, so strict json.dumps accepts the dict."""
    result = check_vjp(_tanh, _tanh_vjp, X, truth="off")
    odd = dataclasses.replace(result, max_rel_error=float("inf"), seconds=float("nan"))
    d = _roundtrip(odd)
    assert d["max_rel_error"] == "inf" and d["seconds"] == "nan"


def test_report_names_analytic_numerical_truth_step_tolerance_and_blame():
    """The readable report labels each value and shows the step, the rtol and the blame."""
    result = check_vjp(_tanh, _tanh_vjp_wrong_sign, X)
    text = str(result)
    worst = result.per_input[0].worst
    assert result.truth == "lazy"
    assert "a = analytic (your gradient)" in text
    assert "r = numerical (float64 finite differences) or truth (high precision)" in text
    assert f"analytic   {worst.analytic:.17g}" in text
    assert f"numerical  {worst.numerical:.17g}  (step {worst.step:.3g}" in text
    assert f"truth      {worst.truth:.17g}" in text
    assert "(rtol 1e-07)" in text
    assert "blame: analytic" in text
    assert f"reproduce: {result.reproduce}" in text and "gradverify.check_vjp(" in result.reproduce


# -- options ------------------------------------------------------------------------------


def test_truth_off():
    """truth="off" computes no truth and says the caller turned it off."""
    result = check_vjp(_tanh, _tanh_vjp, X, truth="off")
    assert result.passed, str(result)
    assert result.truth == "off"
    assert "turned off" in result.truth_note
    assert result.evaluations["fn_high_precision"] == 0
    assert result.per_input[0].max_rel_analytic_truth is None


def test_directional_mode_gives_one_report():
    """mode="directional" on a 30x40 input gives one report over `directions` directions."""
    x = np.random.default_rng(4).standard_normal((30, 40))
    result = check_vjp(_tanh, _tanh_vjp, x, mode="directional", directions=3)
    assert result.passed, str(result)
    assert result.mode == "directional"
    [report] = result.per_input
    assert "directional" in report.name and report.index is None
    assert report.checked == 3
    wrong = check_vjp(_tanh, _tanh_vjp_wrong_sign, x, mode="directional", directions=3)
    assert not wrong.passed and wrong.blame == "analytic"


def test_richardson():
    """richardson=True passes a correct gradient and catches a wrong one (off by a relative 1e-5)."""
    good = check_vjp(np.exp, lambda v, x: (v * np.exp(x),), X, richardson=True, truth="off")
    assert good.passed and good.richardson, str(good)
    bad = check_vjp(np.exp, lambda v, x: (v * np.exp(x) * (1 + 1e-5),), X, richardson=True, truth="off")
    assert not bad.passed and bad.blame == "analytic", str(bad)


def _affine(x, w, b):
    return x @ w + b[..., None, :]


def _affine_vjp(v, x, w, b):
    xp = _ns(x)
    return v @ xp.matrix_transpose(w), xp.matrix_transpose(x) @ v, xp.sum(v, axis=-2)


def test_batched_uses_fewer_calls(xp):
    """batched=True with a function that maps a leading batch axis passes with fewer fn calls than looped."""
    rng = np.random.default_rng(5)
    inputs = tuple(xp.asarray(rng.standard_normal(s)) for s in [(3, 4), (4, 5), (5,)])
    looped = check_vjp(_affine, _affine_vjp, *inputs, truth="off")
    batched = check_vjp(_affine, _affine_vjp, *inputs, truth="off", batched=True)
    assert looped.passed and batched.passed, str(batched)
    assert batched.batched is True
    assert 0 < batched.evaluations["fn_float64"] < looped.evaluations["fn_float64"]


def test_batched_claim_for_an_unbatched_function_is_invalid(xp):
    """batched=True with a function that sums everything (ignoring the batch axis) -> InvalidArgument."""
    x = xp.asarray(X)
    with pytest.raises(InvalidArgument, match="batched"):
        check_vjp(lambda x: _ns(x).sum(x), lambda v, x: (v * _ns(x).ones_like(x),), x, batched=True)


def _mean_cotangent_vjp(v, x):
    """Right only when v is all ones: it uses mean(v) for every element."""
    return (_ns(x).mean(v) * 2 * x,)


def test_given_cotangent_is_used():
    """A vjp correct only for a ones cotangent passes with cotangent=ones and fails with a random one."""
    ones = check_vjp(_square, _mean_cotangent_vjp, X, cotangent=np.ones(3))
    assert ones.passed, str(ones)
    random = check_vjp(_square, _mean_cotangent_vjp, X, cotangent=np.array([0.3, -1.1, 0.8]))
    assert not random.passed and random.blame == "analytic", str(random)


def test_wrt_restricts_the_reports():
    """wrt=(0,) checks input 0 only: a wrong gradient for input 1 goes unchecked."""
    y = np.array([1.5, 0.25, -2.0])
    vjp = lambda v, x, y: (v * y, v * y)  # noqa: E731 - the gradient of y is wrong
    only_x = check_vjp(lambda x, y: x * y, vjp, X, y, wrt=(0,))
    assert only_x.passed, str(only_x)
    assert [p.index for p in only_x.per_input] == [0]
    both = check_vjp(lambda x, y: x * y, vjp, X, y)
    assert not both.passed and [p.failures > 0 for p in both.per_input] == [False, True]


def test_seed_changes_the_default_cotangent():
    """The default cotangent is a seeded draw: the same seed gives the same one, another seed another."""
    seen = []

    def vjp(v, x):
        seen.append(np.array(v, copy=True))
        return (2 * v * x,)

    def cotangent(seed):
        seen.clear()
        assert check_vjp(_square, vjp, X, seed=seed, truth="off").seed == seed
        return seen[0]

    first, again, other = cotangent(0), cotangent(0), cotangent(1)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


# -- doctests -----------------------------------------------------------------------------


@pytest.mark.parametrize("module", [gradverify, gradverify._check], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    """The examples in the public docstrings run and give what they show."""
    outcome = doctest.testmod(module, report=False)
    assert outcome.failed == 0
    assert outcome.attempted >= 1


# -- the lazy truth (issue 11) ------------------------------------------------------------------

_X20 = np.random.default_rng(0).standard_normal((4, 5))


def test_lazy_truth_leaves_out_the_elements_the_differences_settle():
    """A correct smooth gradient: no element needs its own truth; one direction checks them all."""
    result = check_vjp(_tanh, _tanh_vjp, _X20)
    assert result.passed and result.blame is None, str(result)
    assert result.truth == "lazy"
    assert [p.index for p in result.per_input] == [0]
    assert result.per_input[0].max_rel_analytic_truth is None  # no element has its own truth
    assert "per element at 0 of 20 elements" in result.truth_note and "settle the other 20" in result.truth_note
    assert "along one random direction over them agrees" in result.truth_note
    # One random direction (about seven evaluations), not five or more per element.
    assert 0 < result.evaluations["fn_high_precision"] <= 10, result.evaluations
    assert "lazy" in str(result)


def test_lazy_truth_judges_a_disputed_element_by_its_own_truth():
    def vjp(v, x):
        g = v * (1 - np.tanh(x) ** 2)
        g[1, 2] *= 1 + 1e-5  # off by 1e-5 relative at one element
        return (g,)

    result = check_vjp(_tanh, vjp, _X20)
    assert not result.passed and result.blame == "analytic", str(result)
    p = result.per_input[0]
    assert p.failures == 1 and p.worst.index == (1, 2) and p.worst.verdict == "analytic"
    assert p.worst.truth is not None and p.examples == []  # its own truth; the other 19 agree
    assert p.worst.rel_analytic_truth == pytest.approx(1e-5, rel=1e-3)
    assert "per element at 1 of 20 elements" in result.truth_note


def test_explicit_elementwise_truth_still_covers_every_element():
    lazy = check_vjp(_tanh, _tanh_vjp, _X20)
    full = check_vjp(_tanh, _tanh_vjp, _X20, truth="elementwise")
    assert full.passed and full.truth == "elementwise", str(full)
    assert full.per_input[0].max_rel_analytic_truth is not None
    assert full.evaluations["fn_high_precision"] >= 5 * _X20.size > lazy.evaluations["fn_high_precision"]


def test_lazy_truth_gives_every_element_its_truth_when_the_direction_disagrees(monkeypatch):
    """The direction's disagreement never blames by itself: it buys every element its own truth."""
    monkeypatch.setattr(gradverify._arbiter, "_sanity", lambda *args, **kwargs: "disagrees: planted")
    result = check_vjp(_tanh, _tanh_vjp, _X20)
    assert result.passed and result.truth == "lazy", str(result)
    assert result.per_input[0].max_rel_analytic_truth < 1e-12
    assert "per element at all 20 elements" in result.truth_note and "disagrees: planted" in result.truth_note
    assert result.evaluations["fn_high_precision"] >= 5 * _X20.size


def test_sanity_direction_compares_the_analytic_slope_with_the_truth():
    from gradverify import _arbiter
    from gradverify._truth import TruthValues

    a = np.array([1.0, -2.0, 3.0])
    class St:  # the fields _sanity reads
        estimate = a.copy()
        error = np.full(3, 1e-12)

    def sources(center, kink=False, note=""):
        class S(_arbiter.Sources):
            def sanity(self, indices):
                d = np.array([1.0, 1.0, -1.0])[indices]
                tv = TruthValues(center=np.array([center]), lo=np.array([center]), hi=np.array([center]), kink=np.array([kink]))
                tv.note[0] = note
                return tv, d
        return S()

    rest = np.arange(3)
    kw = dict(rtol=1e-7, eps=2.0**-52, natural=1.0)
    slope = 1.0 - 2.0 - 3.0
    assert _arbiter._sanity(a, St, rest, sources(slope), **kw) == "ok"
    assert _arbiter._sanity(a, St, rest, sources(slope * (1 + 1e-14)), **kw) == "ok"
    assert _arbiter._sanity(a, St, rest, sources(slope * (1 + 1e-6)), **kw).startswith("disagrees")
    assert _arbiter._sanity(a, St, rest, sources(slope, kink=True), **kw) == "crosses a kink"
    assert _arbiter._sanity(a, St, rest, sources(np.nan, note="no truth: lost"), **kw).startswith("has no truth")
    assert _arbiter._sanity(a, St, rest, _arbiter.Sources(), **kw) == "could not be evaluated"


def test_lazy_truth_on_a_larger_input_checks_the_settled_elements_in_one_direction():
    x = np.random.default_rng(1).standard_normal(100)
    result = check_vjp(_tanh, _tanh_vjp, x)
    assert result.passed and result.truth == "lazy", str(result)
    assert [p.index for p in result.per_input] == [0, None]
    assert result.per_input[1].checked == 1 and result.per_input[1].max_rel_analytic_truth < 1e-12
    assert "per element at 0 of 100 elements; the finite differences settle 100 " in result.truth_note
