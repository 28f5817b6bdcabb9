"""The pytest plugin, run the way a user runs it: inner pytest sessions through ``pytester``."""

import json
import textwrap

import pytest

from gradverify import InvalidArgument
from gradverify._backend import load_backend

pytest_plugins = ["pytester"]

# A correct and a wrong backward pass, as a user writes them.
FUNCTIONS = """
import numpy as np

def sig(x):
    return 1 / (1 + np.exp(-x))

def sig_vjp(v, x):
    return (v * sig(x) * (1 - sig(x)),)

def sig_vjp_wrong(v, x):
    return (v * sig(x) * (1 + sig(x)),)  # the classic sign slip

X = np.array([[0.3, -1.2], [2.0, 0.5]])
"""


def _cupy_usable():
    try:
        load_backend("cupy")
    except InvalidArgument:
        return False
    return True


@pytest.fixture(autouse=True)
def _outer_settings_stay_out(monkeypatch):
    """The inner sessions see the plugin's own defaults, not this project's (or tox's) backends."""
    monkeypatch.delenv("GRADVERIFY_BACKENDS", raising=False)
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)


def _write(pytester, source, name="test_user"):
    pytester.makepyfile(**{name: FUNCTIONS + textwrap.dedent(source)})


# -- options, ini settings, markers, fixtures ------------------------------------------------


def test_options_and_ini_settings_are_in_one_group(pytester):
    result = pytester.runpytest("--help")
    out = result.stdout.str()
    assert "gradverify: gradient checks:" in out
    for name in ("backends", "report", "json", "dps", "mode", "rtol", "truth", "time_budget"):
        assert f"--gradverify-{name.replace('_', '-')}" in out
        assert f"gradverify_{name} " in out


def test_markers_and_fixtures_are_registered(pytester):
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.gradverify(**options):*", "@pytest.mark.gpu:*"])
    result = pytester.runpytest("--fixtures")
    for fixture in ("gradcheck", "xp"):
        result.stdout.fnmatch_lines([f"{fixture} [[]session scope[]] -- *gradverify*pytest_plugin.py*"])


def test_a_passing_and_a_failing_check(pytester):
    _write(
        pytester,
        """
        def test_good(gradcheck):
            result = gradcheck(sig, sig_vjp, X)
            assert result.passed and result.truth == "elementwise"

        def test_bad(gradcheck):
            gradcheck(sig, sig_vjp_wrong, X)
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*GradientMismatch: gradverify: FAILED: the analytic gradient is wrong (blame: analytic)",
            "*function: sig *",
            "*input 0 shape (2, 2) float64*FAILED*",
            "*worst at index (*",
            "*gradverify: reproduce: python -m pytest test_user.py::test_bad; the check itself: check_vjp(sig*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*- gradverify -*",
            "2 gradient checks in 2 tests: 1 passed, 1 failed",
            "worst relative error * in test_user.py::test_bad: sig, input 0, element (*) (analytic)",
            "FAILED test_user.py::test_bad: sig, blame analytic, max rel. error *",
        ]
    )


def test_layer_and_grad_forms(pytester):
    _write(
        pytester,
        """
        def forward(x, w):
            return x @ w, (x, w)

        def backward(dout, cache):
            x, w = cache
            return dout @ w.T, x.T @ dout

        def test_layer(gradcheck):
            assert gradcheck.layer(forward, backward, X, X.T).passed

        def test_grad(gradcheck):
            assert gradcheck.grad(lambda x: np.sum(x ** 3), lambda x: 3 * x ** 2, X).passed
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["2 gradient checks in 2 tests: 2 passed, 0 failed"])


def test_no_summary_without_checks(pytester):
    pytester.makepyfile("def test_plain():\n    assert True\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert "gradient check" not in result.stdout.str()
    result.stdout.fnmatch_lines(["gradverify: xp backends numpy (default)"])


# -- session options: command line over ini; the marker over both; call keywords over all ---------

OPTION_PROBE = """
import os

def test_options(gradcheck):
    result = gradcheck(sig, sig_vjp, X)
    assert (result.per_input[0].rtol, result.truth, result.dps) == (
        float(os.environ["WANT_RTOL"]), os.environ["WANT_TRUTH"], int(os.environ["WANT_DPS"]))
"""


def test_ini_settings_and_command_line_options(pytester, monkeypatch):
    _write(pytester, OPTION_PROBE)
    pytester.makeini("[pytest]\ngradverify_rtol = 1e-3\ngradverify_truth = off\ngradverify_dps = 35\n")
    monkeypatch.setenv("WANT_RTOL", "1e-3")
    monkeypatch.setenv("WANT_TRUTH", "off")
    monkeypatch.setenv("WANT_DPS", "35")
    pytester.runpytest().assert_outcomes(passed=1)
    monkeypatch.setenv("WANT_RTOL", "1e-4")
    monkeypatch.setenv("WANT_TRUTH", "elementwise")
    pytester.runpytest("--gradverify-rtol=1e-4", "--gradverify-truth=auto").assert_outcomes(passed=1)


def test_marker_merges_over_the_session_and_under_call_keywords(pytester):
    _write(
        pytester,
        """
        import pytest

        pytestmark = pytest.mark.gradverify(rtol=0.5, dps=32)

        @pytest.mark.gradverify(rtol=0.25)
        class TestMarked:
            @pytest.mark.gradverify(rtol=0.125)
            def test_closest_wins(self, gradcheck):
                r = gradcheck(sig, sig_vjp, X)
                assert (r.per_input[0].rtol, r.dps, r.truth) == (0.125, 32, "off")

            def test_class_over_module(self, gradcheck):
                assert gradcheck(sig, sig_vjp, X).per_input[0].rtol == 0.25

            def test_call_keywords_win(self, gradcheck):
                r = gradcheck(sig, sig_vjp, X, rtol=1e-6, dps=31)
                assert (r.per_input[0].rtol, r.dps) == (1e-6, 31)

        @pytest.mark.gradverify(tolerance=1e-3)
        def test_unknown_option(gradcheck):
            gradcheck(sig, sig_vjp, X)
        """,
    )
    result = pytester.runpytest("--gradverify-truth=off", "--gradverify-rtol=1e-7")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*InvalidArgument: @pytest.mark.gradverify got unknown option(s) tolerance; choose from*"])


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (["--gradverify-dps=12"], "", "--gradverify-dps=12: the digits of the truth must be an integer >= 30"),
        (["--gradverify-mode=fast"], "", "--gradverify-mode=fast: choose a mode from auto, full, directional"),
        (["--gradverify-truth=maybe"], "", "--gradverify-truth=maybe: choose a truth from"),
        ([], "gradverify_rtol = abc", "ini setting gradverify_rtol = abc: rtol must be a number in (0, 1)"),
        (["--gradverify-backends=numpy,tensorflow"], "", "*'tensorflow' - choose from numpy, strict, cupy"),
        (["--gradverify-time-budget=soon"], "", "--gradverify-time-budget=soon: the time budget must be a positive number of seconds"),
        (["--gradverify-time-budget=0"], "", "--gradverify-time-budget=0: the time budget must be a positive number of seconds"),
        ([], "gradverify_time_budget = -5", "ini setting gradverify_time_budget = -5: the time budget must be a positive number"),
    ],
    ids=["dps", "mode", "truth", "ini-rtol", "backend-name", "time-budget", "time-budget-zero", "ini-time-budget"],
)
def test_invalid_settings_are_usage_errors(pytester, args, ini, message):
    pytester.makepyfile("def test_plain():\n    pass\n")
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: *{message}*"])


# -- the time budget: a session setting, the call's own time_budget wins ------------------------

SLOW = """
import time

def slow_sig(x):
    time.sleep(0.05)
    return sig(x)

def test_slow(gradcheck):
    gradcheck(slow_sig, sig_vjp, X)

def test_call_keyword_wins(gradcheck):
    assert gradcheck(sig, sig_vjp, X, time_budget=None).passed
"""


@pytest.mark.parametrize("how", ["option", "ini"])
def test_time_budget_setting_stops_a_slow_check(pytester, how):
    _write(pytester, SLOW)
    args = ["--gradverify-time-budget=0.01"] if how == "option" else []
    if how == "ini":
        pytester.makeini("[pytest]\ngradverify_time_budget = 0.01\n")
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*CheckBudgetExceeded: *time_budget*0.01 s*"])
    assert "test_user.py::test_slow" in result.stdout.str()


def test_time_budget_none_is_no_bound(pytester):
    _write(pytester, "def test_fast(gradcheck):\n    assert gradcheck(sig, sig_vjp, X).passed\n")
    result = pytester.runpytest("--gradverify-time-budget=none")
    result.assert_outcomes(passed=1)


# -- the xp fixture and backend selection ----------------------------------------------------------

XP_PROBE = """
def test_backend(xp, gradcheck):
    x = xp.asarray([0.3, -1.2])
    assert gradcheck.grad(lambda x: xp.sum(x * x), lambda x: 2 * x, x).passed
"""


@pytest.mark.parametrize(
    ("args", "env", "ini", "ids"),
    [
        ([], None, None, ["numpy"]),
        (["--gradverify-backends=numpy,strict"], None, None, ["numpy", "strict"]),
        ([], "strict", None, ["strict"]),
        ([], None, "strict,numpy", ["strict", "numpy"]),
        (["--gradverify-backends=numpy"], "strict", "strict", ["numpy"]),
        ([], "strict", "numpy", ["strict"]),
    ],
    ids=["default", "option", "env", "ini", "option-over-env", "env-over-ini"],
)
def test_backends_from_option_env_and_ini(pytester, monkeypatch, args, env, ini, ids):
    pytester.makepyfile(test_xp=XP_PROBE)
    if env:
        monkeypatch.setenv("GRADVERIFY_BACKENDS", env)
    if ini:
        pytester.makeini(f"[pytest]\ngradverify_backends = {ini}\n")
    result = pytester.runpytest("-v", *args)
    result.assert_outcomes(passed=len(ids))
    result.stdout.fnmatch_lines([f"test_xp.py::test_backend[[]{i}[]] PASSED*" for i in ids], consecutive=False)


@pytest.mark.skipif(_cupy_usable(), reason="this machine has a usable CuPy; the error path needs one without")
@pytest.mark.parametrize("how", ["option", "env"])
def test_an_unavailable_backend_is_an_error_not_a_skip(pytester, monkeypatch, how):
    pytester.makepyfile(test_xp=XP_PROBE)
    args = ["--gradverify-backends=numpy,cupy"] if how == "option" else []
    if how == "env":
        monkeypatch.setenv("GRADVERIFY_BACKENDS", "cupy")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: gradverify backend 'cupy': backend 'cupy' is unusable here*"])
    assert "skipped" not in result.stdout.str() and "passed" not in result.stdout.str()


def test_the_cupy_parameter_carries_the_gpu_marker(pytester, monkeypatch):
    """Without a GPU, stand NumPy in for CuPy to see the parameters and their marks."""
    import gradverify._backend

    real = gradverify._backend.load_backend
    monkeypatch.setattr(gradverify._backend, "load_backend", lambda name: real("numpy" if name == "cupy" else name))
    pytester.makepyfile(test_xp=XP_PROBE)
    everything = pytester.runpytest("--gradverify-backends=numpy,cupy", "--collect-only", "-q")
    everything.stdout.fnmatch_lines(["test_xp.py::test_backend[[]numpy[]]", "test_xp.py::test_backend[[]cupy[]]"])
    gpu_only = pytester.runpytest("--gradverify-backends=numpy,cupy", "--collect-only", "-q", "-m", "gpu")
    gpu_only.stdout.fnmatch_lines(["test_xp.py::test_backend[[]cupy[]]", "*1/2 tests collected (1 deselected)*"])


# -- Hypothesis ------------------------------------------------------------------------------------

GIVEN = """
from hypothesis import given, settings, strategies as st
from gradverify.strategies import make_strategies

@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_correct(xp, gradcheck, data):
    x = data.draw(make_strategies(xp).arrays(st.tuples(st.integers(1, 3))))
    gradcheck.grad(lambda x: xp.sum(x * x * x), lambda x: 3 * x * x, x)

def cube_grad_batch_bug(x):
    # Right for one element, 1% off for more: Hypothesis has to find (and shrink to) two.
    return 3 * x * x * (1.0 if x.shape[0] == 1 else 1.01)

@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_wrong(xp, gradcheck, data):
    x = data.draw(make_strategies(xp).arrays(st.tuples(st.integers(1, 4)), scale=1.0, specials=()))
    gradcheck.grad(lambda x: xp.sum(x * x * x), cube_grad_batch_bug, x, name="cube")
"""


def test_gradcheck_inside_given_passes_and_shrinks_a_failure(pytester):
    pytester.makepyfile(test_given=GIVEN)
    result = pytester.runpytest("--gradverify-json=run.json", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "function_scoped_fixture" not in out
    # The report, then Hypothesis' shrunk example, then the way back to it.
    result.stdout.fnmatch_lines(
        [
            "*GradientMismatch: gradverify: FAILED: the analytic gradient is wrong (blame: analytic)",
            "*function: cube *",
            "*input 0 shape (2,) float64*",
            "*gradverify: reproduce: python -m pytest 'test_given.py::test_wrong[[]numpy[]]'*Hypothesis replays the shrunk example*@reproduce_failure(*",
            "*Draw 1: array([[]*",
            "*Highest target score: * (label='gradverify: log10 max rel. error (cube)')",
        ]
    )
    run = json.loads((pytester.path / "run.json").read_text())
    failures = [c for c in run["checks"] if not c["result"]["passed"]]
    assert len(failures) == 1, "the shrinking steps are not recorded, the shrunk example is"
    (failure,) = failures
    assert failure["test"] == "test_given.py::test_wrong[numpy]" and failure["result"]["function"] == "cube"
    assert failure["hypothesis"]["final"] is True
    assert failure["hypothesis"]["reproduce_failure"].startswith("@reproduce_failure(")
    assert "Draw 1: array([" in failure["hypothesis"]["falsifying_example"]
    assert len(failure["inputs"]) == 1 and len(failure["inputs"][0]) == 2  # the shrunk x itself
    assert "Hypothesis replays the shrunk example" in failure["reproduce"]
    passed = [c for c in run["checks"] if c["test"] == "test_given.py::test_correct[numpy]"]
    assert passed and all(c["result"]["passed"] and c["hypothesis"] == {"final": False} for c in passed)


# -- files: JSON and HTML, once, under pytest-xdist ----------------------------------------------

XDIST = """
import pytest

@pytest.mark.parametrize("k", range(6))
def test_checks(gradcheck, k):
    for j in range(k % 3 + 1):
        gradcheck(sig, sig_vjp, X + k + j / 10, name=f"check-{k}-{j}", truth="off")

def test_wrong(gradcheck):
    gradcheck(sig, sig_vjp_wrong, X, name="wrong", truth="off")
"""


def test_json_and_html_hold_every_check_exactly_once_under_xdist(pytester):
    _write(pytester, XDIST)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "--gradverify-json=out/run.json", "--gradverify-report=out/run.html")
    result.assert_outcomes(passed=6, failed=1)
    result.stdout.fnmatch_lines(["13 gradient checks in 7 tests: 12 passed, 1 failed", "JSON report: *run.json", "HTML report: *run.html"])
    run = json.loads((pytester.path / "out" / "run.json").read_text())
    assert sorted(run) == ["checks", "figures", "ops", "passed", "provenance", "schema"]
    assert run["schema"] == "gradverify-run/1" and run["passed"] is False and run["ops"] == [] and run["figures"] == {}
    names = [c["result"]["function"] for c in run["checks"]]
    expected = [f"check-{k}-{j}" for k in range(6) for j in range(k % 3 + 1)] + ["wrong"]
    assert sorted(names) == sorted(expected), "every check exactly once"
    for c in run["checks"]:
        assert set(c) >= {"test", "result", "reproduce"} and c["test"].startswith("test_user.py::test_")
        assert c["reproduce"].startswith("python -m pytest test_user.py::test_") or c["reproduce"].startswith("python -m pytest 'test_user.py::test_")
    prov = run["provenance"]
    assert prov["workers"] == 2 and prov["backend"] == "numpy" and prov["versions"]["gradverify"]
    html = (pytester.path / "out" / "run.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "test_user.py::test_wrong" in html and "check-5-2" in html


def test_html_report_without_xdist_and_relative_to_the_ini_file(pytester):
    _write(pytester, "def test_one(gradcheck):\n    gradcheck(sig, sig_vjp, X)\n")
    pytester.makeini("[pytest]\ngradverify_report = reports/checks.html\n")
    sub = pytester.mkdir("sub")
    result = pytester.runpytest(str(pytester.path), "--rootdir", str(pytester.path), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    page = (pytester.path / "reports" / "checks.html").read_text()
    assert "test_user.py::test_one" in page and not (sub / "reports").exists()


def test_a_structural_failure_with_nan_inputs_still_makes_valid_json(pytester):
    _write(pytester, "def test_nan(gradcheck):\n    gradcheck(sig, sig_vjp, np.array([0.5, np.nan]))\n")
    result = pytester.runpytest("--gradverify-json=run.json", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*STRUCTURAL nonfinite_input [[]input 0[]]: input 0 holds NaN or Inf at index (1,)*"])
    (check,) = json.loads((pytester.path / "run.json").read_text())["checks"]
    assert check["inputs"] == [[0.5, "nan"]] and check["result"]["structural"][0]["kind"] == "nonfinite_input"


def test_a_report_that_cannot_be_written_fails_the_run(pytester):
    _write(pytester, "def test_one(gradcheck):\n    gradcheck(sig, sig_vjp, X)\n")
    pytester.mkdir("taken.html")  # a directory where the page should go
    result = pytester.runpytest("--gradverify-report=taken.html", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["could not write the HTML report *taken.html: IsADirectoryError*"])


# -- the README's section runs as written ------------------------------------------------------


def test_readme_gradient_tests_run_as_written(pytester):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = re.search(r"^## Gradient tests in your project\n(.*?)(?=^## )", readme, re.S | re.M).group(1)
    first, given = re.findall(r"```python\n(.*?)```", section, re.S)[:2]
    assert len(first.strip().splitlines()) < 10, "a first gradient test in under ten lines"
    pytester.makepyfile(test_sigmoid=first, test_tanh=given)
    result = pytester.runpytest("--gradverify-backends=numpy,strict", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["* gradient checks in 3 tests: * passed, 0 failed"])
