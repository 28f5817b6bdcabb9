"""The pytest plugin, run the way a user runs it: inner pytest sessions through ``pytester``.

In-process runs (``pytester.runpytest``) share this process' Hypothesis profile (the
project's ``dev`` profile has no deadline); what depends on Hypothesis' own defaults runs in
a subprocess with ``CI`` unset.
"""

import ast
import collections
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import hypothesis
from hypothesis import HealthCheck, Phase, given, reproduce_failure, settings
from hypothesis import strategies as st

from gradverify import InvalidArgument
from gradverify import _hypothesis_adapter as adapter
from gradverify._backend import load_backend
from gradverify._options import TEXT_SETTINGS
from gradverify.pytest_plugin import summary_lines

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
    """The inner sessions see the plugin's own defaults, not this project's (or tox's) backends,
    and Hypothesis' own default profile in a subprocess."""
    for name in ("GRADVERIFY_BACKENDS", "PYTEST_ADDOPTS", "HYPOTHESIS_PROFILE", *adapter.ci_variables()):
        monkeypatch.delenv(name, raising=False)


def _write(pytester, source, name="test_user"):
    pytester.makepyfile(**{name: FUNCTIONS + textwrap.dedent(source)})


def _section(stdout):
    """The lines of the gradverify summary section."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if re.fullmatch(r"-+ gradverify -+", line))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("=")), len(lines))
    return lines[start + 1 : end]


def _section_text(stdout):
    """The gradverify summary as one line of words (its wrapped lines joined)."""
    return " ".join(line.strip() for line in _section(stdout))


def _outcomes(run):
    """``[(nodeid, outcome)]`` of a record, in its order."""
    return [(t["nodeid"], t["outcome"]) for t in run["tests"]]


def _checks(run):
    return [c for t in run["tests"] for c in t["checks"]]


def _exception_group(message, exceptions):
    if sys.version_info >= (3, 11):
        return ExceptionGroup(message, exceptions)  # noqa: F821 (a builtin from 3.11)
    from exceptiongroup import ExceptionGroup as backport  # Hypothesis' dependency before 3.11

    return backport(message, exceptions)


# -- options, ini settings, markers, fixtures ------------------------------------------------


def test_options_and_ini_settings_are_in_one_group(pytester):
    result = pytester.runpytest("--help")
    out = result.stdout.str()
    assert "gradverify: gradient checks:" in out
    for name in ("backends", "report", "json", *TEXT_SETTINGS):
        assert f"--gradverify-{name.replace('_', '-')}" in out
        assert f"gradverify_{name} " in out
    # The check options' metavars and help come from gradverify._options.
    for name, setting in TEXT_SETTINGS.items():
        assert f"--gradverify-{name.replace('_', '-')}={setting.metavar}" in out
    assert " ".join(TEXT_SETTINGS["truth"].help.split()[:6]) in " ".join(out.split())


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
            assert result.passed and result.truth == "lazy"

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
            "*gradverify: reproduce: python -m pytest test_user.py::test_bad",
        ]
    )
    section = _section(result.stdout.str())
    assert section[0] == "2 gradient checks in 2 tests: 1 passed, 1 failed"
    assert section[-1] == "  reproduce: python -m pytest test_user.py::test_bad"
    text = " ".join(line.strip() for line in section)
    assert re.search(r"Worst relative error 0\.\d+ in test_user.py::test_bad: sig, input 0, element \(\d, \d\) \(the analytic gradient is off\)\.", text)
    assert re.search(r"Failed check in test_user.py::test_bad: sig: the analytic gradient is wrong \(max rel. error 0\.\d+\)\.", text)


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
            result = gradcheck.layer(forward, backward, X, X.T)
            assert result.passed and result.function == "forward"

        def cube(x):
            return np.sum(x ** 3)

        def test_grad(gradcheck):
            result = gradcheck.grad(cube, lambda x: 3 * x ** 2, X)
            assert result.passed and result.function == "cube"
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["2 gradient checks in 2 tests: 2 passed, 0 failed"])


def test_no_summary_without_checks(pytester):
    pytester.makepyfile("def test_plain():\n    assert True\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert "gradient check" not in result.stdout.str() and "- gradverify -" not in result.stdout.str()
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
    monkeypatch.setenv("WANT_TRUTH", "lazy")  # what truth="auto" runs in full mode
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

        @pytest.mark.gradverify(cotangent=np.ones((2, 2)), target=False, name="named")
        def test_extras(gradcheck):
            assert gradcheck(sig, sig_vjp, X).function == "named"

        @pytest.mark.gradverify(tolerance=1e-3)
        def test_unknown_option(gradcheck):
            gradcheck(sig, sig_vjp, X)

        @pytest.mark.gradverify(rtol=2)
        def test_bad_value(gradcheck):
            gradcheck(sig, sig_vjp, X)

        @pytest.mark.gradverify(mode="fast")
        class TestBadClassMarker:
            def test_it(self, gradcheck):
                gradcheck(sig, sig_vjp, X)

        def test_bad_call_keyword(gradcheck):
            gradcheck(sig, sig_vjp, X, truth="maybe")

        @pytest.mark.gradverify(target="no")
        def test_bad_target(gradcheck):
            gradcheck(sig, sig_vjp, X)
        """,
    )
    result = pytester.runpytest("--gradverify-truth=off", "--gradverify-rtol=1e-7")
    result.assert_outcomes(passed=4, failed=5)
    result.stdout.fnmatch_lines(
        [
            "*InvalidArgument: @pytest.mark.gradverify on test_user.py::test_unknown_option got unknown option(s) tolerance; choose from allow_nonfinite, batched, cotangent, *, target, *",
            "*InvalidArgument: @pytest.mark.gradverify on test_user.py::test_bad_value: rtol=2 must be a number in (0, 1)*",
            "*InvalidArgument: @pytest.mark.gradverify on test_user.py::TestBadClassMarker: mode='fast' is not one of 'auto', 'full', 'directional'",
            "*InvalidArgument: gradcheck(...): truth='maybe' is not one of*",
            "*InvalidArgument: @pytest.mark.gradverify on test_user.py::test_bad_target: target='no' must be True or False",
        ],
        consecutive=False,
    )


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (["--gradverify-dps=12"], "", "--gradverify-dps: '12' is not valid: the digits of the truth must be an integer >= 30"),
        (["--gradverify-mode=fast"], "", "--gradverify-mode: 'fast' is not valid: choose one of auto, full, directional"),
        (["--gradverify-truth=maybe"], "", "--gradverify-truth: 'maybe' is not valid: choose one of auto, elementwise, directional, off"),
        ([], "gradverify_rtol = abc", "ini setting gradverify_rtol: 'abc' is not valid: relative tolerance of every gradient check*"),
        (["--gradverify-backends=numpy,tensorflow"], "", "--gradverify-backends: 'tensorflow' - choose from numpy, strict, cupy"),
        (["--gradverify-time-budget=soon"], "", "--gradverify-time-budget: 'soon' is not valid: seconds each gradient check may run*"),
        (["--gradverify-time-budget=0"], "", "--gradverify-time-budget: '0' is not valid: the time budget must be a positive number of seconds*"),
        ([], "gradverify_time_budget = -5", "ini setting gradverify_time_budget: '-5' is not valid: the time budget must be a positive number*"),
    ],
    ids=["dps", "mode", "truth", "ini-rtol", "backend-name", "time-budget", "time-budget-zero", "ini-time-budget"],
)
def test_invalid_settings_are_usage_errors(pytester, args, ini, message):
    pytester.makepyfile("def test_plain():\n    pass\n")
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


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

@settings(max_examples=30, deadline=None, print_blob=True)
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
    # The report, then the way back to it, then Hypothesis' shrunk example.
    result.stdout.fnmatch_lines(
        [
            "*GradientMismatch: gradverify: FAILED: the analytic gradient is wrong (blame: analytic)",
            "*function: cube *",
            "*input 0 shape (2,) float64*",
            "*gradverify: reproduce: python -m pytest 'test_given.py::test_wrong[[]numpy[]]' --gradverify-backends=numpy",
            "*gradverify: Hypothesis replays the shrunk example*@reproduce_failure(*",
            "*Draw 1: array([[]*",
            "*Highest target score: * (label='gradverify: log10 max rel. error (cube)')",
        ]
    )
    run = json.loads((pytester.path / "run.json").read_text())
    assert _outcomes(run) == [("test_given.py::test_correct[numpy]", "passed"), ("test_given.py::test_wrong[numpy]", "failed")]
    correct, wrong = run["tests"]
    failures = [c for c in wrong["checks"] if not c["result"]["passed"]]
    assert len(failures) == 1, "the shrinking steps are not recorded, the shrunk example is"
    (failure,) = failures
    assert failure["result"]["function"] == "cube" and failure["hypothesis"]["final"] is True
    assert failure["hypothesis"]["reproduce_failure"].startswith("@reproduce_failure(")
    assert failure["hypothesis"]["reproduce_failure"] in out, "the decorator Hypothesis printed"
    assert "Draw 1: array([" in failure["hypothesis"]["falsifying_example"]
    assert len(failure["inputs"]) == 1 and len(failure["inputs"][0]) == 2  # the shrunk x itself
    assert failure["reproduce"] == "python -m pytest 'test_given.py::test_wrong[numpy]' --gradverify-backends=numpy"
    assert correct["checks"] and all(c["result"]["passed"] and c["hypothesis"] == {"final": False} for c in correct["checks"])
    assert wrong["message"].endswith("gradverify: FAILED: the analytic gradient is wrong (blame: analytic)")


# Hypothesis' default settings: no deadline=None anywhere. A check of slow_sig takes well over
# the 200 ms default per example (it calls slow_sig at least 7 times), so that only the
# plugin's handling of the deadline lets test_slow_but_right pass; test_chosen_deadline chose
# its deadline and keeps it. (x stays away from 0: there, with truth="off", the finite
# differences of a check cannot always resolve the gradient.)
DEADLINE = """
import time
from array_api_compat import array_namespace
from hypothesis import Phase, given, settings, strategies as st
from gradverify.strategies import make_strategies

def tanh(x):
    return array_namespace(x).tanh(x)

def tanh_vjp(v, x):
    return (v * (1 - tanh(x) ** 2),)

def slow_sig(x):
    time.sleep(0.05)
    return sig(x)

@given(data=st.data())
def test_readme_style(xp, gradcheck, data):
    gradcheck(tanh, tanh_vjp, data.draw(make_strategies(xp).arrays()))

@settings(max_examples=3)
@given(x=st.floats(0.5, 3))
def test_slow_but_right(gradcheck, x):
    gradcheck(slow_sig, sig_vjp, np.array([x]), truth="off")

@settings(max_examples=3, deadline=200, phases=[Phase.generate])
@given(x=st.floats(0.5, 3))
def test_chosen_deadline(gradcheck, x):
    gradcheck(slow_sig, sig_vjp, np.array([x]), truth="off")

@given(x=st.floats(0.5, 3))
def test_without_gradcheck(x):
    pass
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_default_hypothesis_settings_work_with_gradcheck(pytester, workers):
    _write(pytester, DEADLINE)
    result = pytester.runpytest_subprocess(*workers, "-p", "no:cacheprovider", "--gradverify-json=run.json")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*DeadlineExceeded*"])
    assert "test_user.py::test_chosen_deadline FAILED" in result.stdout.str() or "FAILED test_user.py::test_chosen_deadline" in result.stdout.str()
    section = _section_text(result.stdout.str())
    assert "Hypothesis deadline off for 2 @given tests that call gradcheck (a check can take longer than 200 ms)" in section
    run = json.loads((pytester.path / "run.json").read_text())
    off = {t["nodeid"] for t in run["tests"] if t.get("hypothesis_deadline_off_ms") == 200.0}
    assert off == {"test_user.py::test_readme_style[numpy]", "test_user.py::test_slow_but_right"}
    assert run["provenance"]["hypothesis_deadline_off"] == 2 and run["provenance"]["profile"] == "default"


# -- the adapter: every private piece of Hypothesis the plugin relies on, asserted ---------------
#
# These fail when an upgrade of Hypothesis changes what gradverify._hypothesis_adapter reads;
# fix the adapter (and only it) then.

DEFAULT = settings.get_profile("default")


def test_adapter_reads_and_replaces_the_settings_of_a_given_test():
    @settings(DEFAULT, max_examples=1, phases=[Phase.generate], database=None, suppress_health_check=list(HealthCheck))
    @given(st.just(0))
    def slow(n):
        time.sleep(0.3)

    assert adapter.is_given_test(slow) and not adapter.is_given_test(lambda: None)
    assert adapter.builtin_deadline() == datetime.timedelta(milliseconds=200)
    assert adapter.settings_of(slow).deadline == adapter.builtin_deadline()
    assert adapter.deadline_is_hypothesis_default(adapter.settings_of(slow))
    with pytest.raises(Exception, match="Deadline|deadline"):  # DeadlineExceeded, or Flaky around it
        slow()
    adapter.turn_deadline_off(slow)
    assert adapter.settings_of(slow).deadline is None and adapter.settings_of(slow).max_examples == 1
    slow()  # read when the test runs: no deadline now


@pytest.mark.parametrize(
    ("make", "default"),
    [
        (lambda: settings(DEFAULT), True),
        (lambda: settings(DEFAULT, max_examples=5), True),
        (lambda: settings(settings(DEFAULT, derandomize=True), print_blob=True), True),
        (lambda: settings(DEFAULT, deadline=200), False),
        (lambda: settings(DEFAULT, deadline=datetime.timedelta(milliseconds=200)), False),
        (lambda: settings(DEFAULT, deadline=1000), False),
        (lambda: settings(DEFAULT, deadline=None), False),
        (lambda: settings.get_profile("ci"), False),
    ],
    ids=["default", "max_examples", "nested", "explicit-200", "explicit-timedelta", "explicit-1000", "none", "ci"],
)
def test_adapter_tells_a_chosen_deadline_from_hypothesis_default(make, default):
    assert adapter.deadline_is_hypothesis_default(make()) is default


def test_adapter_build_context_final_replay_and_reproduce_failure():
    seen = []

    @settings(DEFAULT, max_examples=50, database=None, print_blob=True, suppress_health_check=list(HealthCheck))
    @given(st.integers(0, 1000))
    def fails(n):
        context = adapter.build_context()
        final = adapter.is_final(context)
        seen.append((n, final, adapter.reproduce_failure(context) if final else None))
        assert n < 10

    assert adapter.build_context() is None
    with pytest.raises(AssertionError) as info:
        fails()
    finals = [(n, blob) for n, final, blob in seen if final]
    assert [n for n, _ in finals] == [10], "one final replay, of the shrunk example"
    assert any(not final for _, final, _ in seen)
    blob = finals[0][1]
    assert blob.startswith("@reproduce_failure(")
    notes = adapter.failure_notes(info.value)
    assert notes["reproduce_failure"] == blob, "the decorator is the one Hypothesis prints"
    assert notes["falsifying_example"].startswith(("Falsifying example:", "Failing test case:")) and "n=10" in notes["falsifying_example"]
    # ... and it replays that example.
    args = ast.literal_eval(blob[len("@reproduce_failure") :])
    replayed = []

    @reproduce_failure(*args)
    @settings(DEFAULT, database=None)
    @given(st.integers(0, 1000))
    def again(n):
        replayed.append(n)
        assert n < 10

    with pytest.raises(AssertionError):
        again()
    assert replayed == [10]


def test_adapter_knows_the_variables_that_select_hypothesis_ci_profile(monkeypatch):
    """CI, and tox's renamed copy of it, among them; without any, Hypothesis is not 'in CI'."""
    from hypothesis._settings import is_in_ci

    names = adapter.ci_variables()
    assert "CI" in names and "__TOX_ENVIRONMENT_VARIABLE_ORIGINAL_CI" in names
    for name in names:
        monkeypatch.delenv(name, raising=False)
    assert not is_in_ci()
    monkeypatch.setenv("__TOX_ENVIRONMENT_VARIABLE_ORIGINAL_CI", "true")
    assert is_in_ci()


def test_adapter_target_labels_are_those_of_the_example_running():
    seen = []

    @settings(DEFAULT, max_examples=3, database=None, phases=[Phase.generate])
    @given(st.integers(0, 10))
    def steered(n):
        context = adapter.build_context()
        before = adapter.target_labels(context)
        hypothesis.target(float(n), label="first")
        seen.append((before, adapter.target_labels(context)))

    steered()
    assert seen and all(before == set() and after == {"first"} for before, after in seen)


def test_adapter_failure_notes_reads_draws_and_exception_groups():
    @settings(DEFAULT, max_examples=50, database=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def fails(data):
        assert data.draw(st.integers(0, 100)) < 5

    with pytest.raises(AssertionError) as info:
        fails()
    notes = adapter.failure_notes(info.value)
    assert "Draw 1: 5" in notes["falsifying_example"] and notes["reproduce_failure"] is None
    group = _exception_group("two bugs", [ValueError("no notes"), info.value])
    assert adapter.failure_notes(group) == notes
    assert adapter.failure_notes(ValueError("no notes"))["falsifying_example"] is None


@pytest.mark.skipif(sys.gettrace() is not None, reason="another tracer (coverage, a debugger) keeps Hypothesis' explain phase from tracing")
def test_adapter_sees_and_pauses_the_explain_tracer():
    seen = []

    @settings(DEFAULT, max_examples=100, database=None, suppress_health_check=list(HealthCheck))
    @given(st.integers(0, 1000), st.integers(0, 1000))
    def fails(a, b):
        active = adapter.explain_tracer_active()
        with adapter.explain_tracer_paused():
            paused = adapter.explain_tracer_active()
        seen.append((active, paused, adapter.explain_tracer_active()))
        assert a < 10

    with pytest.raises(AssertionError):
        fails()
    assert any(active for active, _, _ in seen), "the explain phase traces lines once a failure is found"
    assert not any(paused for _, paused, _ in seen)
    assert all(active == after for active, _, after in seen), "the tracer comes back after the pause"
    assert not adapter.explain_tracer_active()


# -- the record: every test's outcome, as pytest counts it ------------------------------------------

OUTCOMES = """
import pytest

@pytest.fixture
def broken_setup():
    raise RuntimeError("setup broke")

@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown broke")

def test_passed(gradcheck):
    gradcheck(sig, sig_vjp, X)

def test_failed(gradcheck):
    gradcheck(sig, sig_vjp_wrong, X)

def test_plain_failure():
    assert 1 == 2, "one is not two"

def test_setup_error(broken_setup, gradcheck):
    gradcheck(sig, sig_vjp, X)

def test_teardown_error(broken_teardown, gradcheck):
    gradcheck(sig, sig_vjp, X)

@pytest.mark.skip(reason="not today")
def test_skipped():
    pass

def test_skipped_inside():
    pytest.skip("decided inside")

@pytest.mark.xfail(reason="known slip")
def test_xfailed(gradcheck):
    gradcheck(sig, sig_vjp_wrong, X)

@pytest.mark.xfail(reason="fixed already")
def test_xpassed(gradcheck):
    gradcheck(sig, sig_vjp, X)

@pytest.mark.xfail(reason="must fail", strict=True)
def test_strict_xpass():
    pass
"""


def _pytest_counts(stdout):
    """The counts of pytest's last summary line, as the record names its outcomes."""
    line = stdout.strip().splitlines()[-1]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", line)}
    rename = {"errors": "error", "error": "error"}
    return {rename.get(word, word): n for word, n in counts.items() if rename.get(word, word) in ("passed", "failed", "error", "skipped", "xfailed", "xpassed")}


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_the_record_holds_every_outcome_as_pytest_counts_it(pytester, workers):
    _write(pytester, OUTCOMES)
    pytester.makepyfile(test_broken="import no_such_module\n", test_skipped_module="import pytest\npytest.skip('whole module', allow_module_level=True)\n")
    result = pytester.runpytest_subprocess(*workers, "-p", "no:cacheprovider", "--continue-on-collection-errors", "--gradverify-json=out/run.json")
    run = json.loads((pytester.path / "out" / "run.json").read_text())
    assert run["kind"] == "pytest" and run["status"] == "complete" and run["passed"] is False
    counted = collections.Counter(t["outcome"] for t in run["tests"])
    assert dict(counted) == _pytest_counts(result.stdout.str())
    assert dict(counted) == {"passed": 2, "failed": 3, "error": 3, "skipped": 3, "xfailed": 1, "xpassed": 1}
    assert _outcomes(run) == sorted(_outcomes(run), key=lambda pair: pair[0])
    outcomes = collections.defaultdict(list)
    messages = {}
    for t in run["tests"]:
        outcomes[t["nodeid"]].append(t["outcome"])
        messages[t["nodeid"], t["outcome"]] = t["message"]
        assert isinstance(t["duration"], float) and t["duration"] >= 0
    assert dict(outcomes) == {
        "test_broken.py": ["error"],
        "test_skipped_module.py": ["skipped"],
        "test_user.py::test_failed": ["failed"],
        "test_user.py::test_passed": ["passed"],
        "test_user.py::test_plain_failure": ["failed"],
        "test_user.py::test_setup_error": ["error"],
        "test_user.py::test_skipped": ["skipped"],
        "test_user.py::test_skipped_inside": ["skipped"],
        "test_user.py::test_strict_xpass": ["failed"],
        "test_user.py::test_teardown_error": ["passed", "error"],  # pytest counts it twice
        "test_user.py::test_xfailed": ["xfailed"],
        "test_user.py::test_xpassed": ["xpassed"],
    }
    assert messages["test_user.py::test_passed", "passed"] is None
    assert messages["test_user.py::test_failed", "failed"].endswith("gradverify: FAILED: the analytic gradient is wrong (blame: analytic)")
    assert messages["test_user.py::test_plain_failure", "failed"].startswith("AssertionError: one is not two")
    assert messages["test_user.py::test_setup_error", "error"] == "RuntimeError: setup broke"
    assert messages["test_user.py::test_teardown_error", "error"] == "RuntimeError: teardown broke"
    assert messages["test_user.py::test_skipped", "skipped"] == "not today"
    assert messages["test_user.py::test_skipped_inside", "skipped"] == "decided inside"
    assert messages["test_skipped_module.py", "skipped"] == "whole module"
    assert "no_such_module" in messages["test_broken.py", "error"]
    assert messages["test_user.py::test_xfailed", "xfailed"] == "known slip"
    assert messages["test_user.py::test_xpassed", "xpassed"] == "fixed already"
    assert "XPASS(strict)" in messages["test_user.py::test_strict_xpass", "failed"]
    # The checks, with the entry of their test that pytest counted first.
    checks = {(t["nodeid"], t["outcome"]): [c["result"]["passed"] for c in t["checks"]] for t in run["tests"]}
    assert checks["test_user.py::test_passed", "passed"] == [True]
    assert checks["test_user.py::test_failed", "failed"] == [False]
    assert checks["test_user.py::test_teardown_error", "passed"] == [True] and checks["test_user.py::test_teardown_error", "error"] == []
    assert checks["test_user.py::test_xfailed", "xfailed"] == [False] and checks["test_user.py::test_xpassed", "xpassed"] == [True]
    assert checks["test_user.py::test_setup_error", "error"] == []
    (failing,) = [c for c in _checks(run) if not c["result"]["passed"] and c["reproduce"].endswith("test_failed")]
    assert failing["inputs"] == [[[0.3, -1.2], [2.0, 0.5]]] and failing["backend"] == "numpy" and failing["device"] == "cpu"
    prov = run["provenance"]
    assert prov["backend"] == "numpy" and prov["device"] == "numpy: cpu" and prov["versions"]["pytest"] == pytest.__version__
    assert prov["command"].startswith("python -m pytest ") and prov["workers"] == (2 if workers else None)


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
    result.stdout.fnmatch_lines(["13 gradient checks in 7 tests: 12 passed, 1 failed", "JSON report: *run.json"])
    run = json.loads((pytester.path / "out" / "run.json").read_text())
    assert sorted(run) == ["figures", "kind", "ops", "passed", "provenance", "schema", "status", "tests"]
    assert run["schema"] == "gradverify-run/2" and run["kind"] == "pytest" and run["status"] == "complete"
    assert run["passed"] is False and run["ops"] == [] and run["figures"] == {}
    names = [c["result"]["function"] for c in _checks(run)]
    expected = [f"check-{k}-{j}" for k in range(6) for j in range(k % 3 + 1)] + ["wrong"]
    assert sorted(names) == sorted(expected), "every check exactly once"
    assert [t["nodeid"] for t in run["tests"]] == sorted(f"test_user.py::test_checks[{k}]" for k in range(6)) + ["test_user.py::test_wrong"]
    for t in run["tests"]:
        for c in t["checks"]:
            assert c["reproduce"] == f"python -m pytest {t['nodeid'] if 'wrong' in t['nodeid'] else repr(t['nodeid'])}"
    prov = run["provenance"]
    assert prov["workers"] == 2 and prov["backend"] == "numpy" and prov["versions"]["gradverify"]
    assert not list((pytester.path / "out").glob(".*")), "no temporary files left behind"
    result.stdout.fnmatch_lines(["HTML report: *run.html"])
    html = (pytester.path / "out" / "run.html").read_text()
    assert html.startswith("<!DOCTYPE html>")
    for t in run["tests"]:  # every test and its outcome (the layout is tests/test_report.py's)
        assert t["nodeid"] in html and t["outcome"] in html


def test_html_report_without_xdist_and_relative_to_the_ini_file(pytester):
    _write(pytester, "def test_one(gradcheck):\n    gradcheck(sig, sig_vjp, X)\n")
    pytester.makeini("[pytest]\ngradverify_report = reports/checks.html\n")
    sub = pytester.mkdir("sub")
    result = pytester.runpytest(str(pytester.path), "--rootdir", str(pytester.path), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert not (sub / "reports").exists()
    page = (pytester.path / "reports" / "checks.html").read_text()
    assert "test_user.py::test_one" in page


def test_a_structural_failure_with_nan_inputs_still_makes_valid_json(pytester):
    _write(pytester, "def test_nan(gradcheck):\n    gradcheck(sig, sig_vjp, np.array([0.5, np.nan]))\n")
    result = pytester.runpytest("--gradverify-json=run.json", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*STRUCTURAL nonfinite_input [[]input 0[]]: input 0 holds NaN or Inf at index (1,)*"])
    result.stdout.fnmatch_lines(["Failed check in test_user.py::test_nan: sig: nonfinite input: input 0 holds*"])
    (test,) = json.loads((pytester.path / "run.json").read_text())["tests"]
    (check,) = test["checks"]
    assert check["inputs"] == [[0.5, "nan"]] and check["result"]["structural"][0]["kind"] == "nonfinite_input"


@pytest.mark.parametrize(
    ("option", "make", "message"),
    [
        ("--gradverify-report=taken.html", "dir", "--gradverify-report '*taken.html' is a directory*"),
        ("--gradverify-json=afile/run.json", "file", "--gradverify-json '*afile/run.json' cannot be written*"),
    ],
    ids=["directory", "under-a-file"],
)
def test_an_output_path_that_cannot_be_written_is_a_usage_error_before_any_test(pytester, option, make, message):
    _write(pytester, "def test_one(gradcheck):\n    open('ran', 'w').close()\n")
    if make == "dir":
        pytester.mkdir("taken.html")
    else:
        pytester.makefile("", afile="")
    result = pytester.runpytest(option, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert not (pytester.path / "ran").exists()


def test_an_ini_output_path_is_checked_too(pytester):
    pytester.makeini("[pytest]\ngradverify_json = taken\n")
    pytester.mkdir("taken")
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: ini setting gradverify_json '*taken' is a directory*"])


def test_a_report_that_cannot_be_rendered_fails_the_run(pytester, monkeypatch):
    import gradverify.report

    def broken(run, path):
        raise RuntimeError("the renderer broke")

    monkeypatch.setattr(gradverify.report, "write_report", broken)
    _write(pytester, "def test_one(gradcheck):\n    gradcheck(sig, sig_vjp, X)\n")
    result = pytester.runpytest("--gradverify-report=page.html", "--gradverify-json=run.json", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["could not write the HTML report *page.html: RuntimeError: the renderer broke"])
    assert json.loads((pytester.path / "run.json").read_text())["passed"] is True


# -- every printed reproduce line runs as printed, and fails the same way -------------------------

REPRODUCE = """
from array_api_compat import array_namespace
from hypothesis import given, settings, strategies as st
from gradverify.strategies import make_strategies

def sigmoid(x):
    return 1 / (1 + array_namespace(x).exp(-x))

def sigmoid_vjp_wrong(v, x):
    return (v * sigmoid(x) * (1 + sigmoid(x)),)

def test_wrong(xp, gradcheck):
    gradcheck(sigmoid, sigmoid_vjp_wrong, xp.asarray(X))

def cube(x):
    return array_namespace(x).sum(x * x * x)

def cube_grad_batch_bug(x):
    return 3 * x * x * (1.0 if x.shape[0] == 1 else 1.01)

@settings(max_examples=30)
@given(data=st.data())
def test_wrong_given(xp, gradcheck, data):
    x = data.draw(make_strategies(xp).arrays(st.tuples(st.integers(1, 4)), scale=1.0, specials=()))
    gradcheck.grad(cube, cube_grad_batch_bug, x)

def test_rtol_matters(gradcheck):
    # Passes at the default rtol, fails at the session's 1e-12: the line must carry it.
    gradcheck(sig, lambda v, x: (sig_vjp(v, x)[0] * (1 + 1e-9),), X, name="nearly")
"""


def _python_on_path(env):
    env = dict(env)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


@pytest.mark.parametrize("where", ["root", "subdir"])
def test_every_printed_reproduce_line_runs_as_printed(pytester, where):
    _write(pytester, REPRODUCE)
    pytester.makeini("[pytest]\ngradverify_truth = elementwise\n")
    cwd = pytester.path if where == "root" else pytester.mkdir("sub")
    env = _python_on_path(os.environ)
    env["GRADVERIFY_BACKENDS"] = "strict"
    first = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--gradverify-rtol=1e-12", "--gradverify-json=run.json", str(pytester.path)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )
    out = first.stdout
    assert first.returncode == 1, out
    assert "3 failed" in out.splitlines()[-1], out
    noted = re.findall(r"gradverify: reproduce: (.*)$", out, re.M)
    listed = re.findall(r"^  reproduce: (.*)$", out, re.M)
    record = sorted(c["reproduce"] for c in _checks(json.loads((cwd / "run.json").read_text())) if not c["result"]["passed"])
    assert sorted(noted) == sorted(listed) == record and len(record) == 3
    prefix = "" if where == "root" else f"cd {pytester.path} && "
    assert f"{prefix}python -m pytest 'test_user.py::test_wrong[strict]' --gradverify-backends=strict --gradverify-rtol=1e-12 --gradverify-truth=elementwise" in record
    draws = re.findall(r"Draw 1: (.*)$", out, re.M)
    assert draws
    # Run each as printed, through the shell, without the environment that chose the backend.
    del env["GRADVERIFY_BACKENDS"]
    for line in record:
        again = subprocess.run(line, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 1, (line, again.stdout[-3000:], again.stderr[-3000:])
        assert again.stdout.strip().splitlines()[-1].startswith("=") and "1 failed" in again.stdout.splitlines()[-1], line
        assert "GradientMismatch: gradverify: FAILED: the analytic gradient is wrong (blame: analytic)" in again.stdout
        if "given" in line:
            assert re.findall(r"Draw 1: (.*)$", again.stdout, re.M) == draws, "the same shrunk example"
        command = line.split(" && ", 1)[-1]  # run from the rootdir, the rerun needs no cd
        assert f"gradverify: reproduce: {command}" in again.stdout, "the rerun prints the same line"


# -- Ctrl-C -----------------------------------------------------------------------------------------

INTERRUPTED = """
import time
from pathlib import Path

def test_a(gradcheck):
    gradcheck(sig, sig_vjp, X)

def test_b(gradcheck):
    gradcheck(sig, sig_vjp, X + 1)

def test_c_waits():
    Path("ready").write_text("")
    time.sleep(120)

def test_d_never_runs(gradcheck):
    gradcheck(sig, sig_vjp, X)
"""


def test_ctrl_c_writes_an_interrupted_record(pytester):
    _write(pytester, INTERRUPTED)
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--gradverify-json=out/run.json", "test_user.py"],
        cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (pytester.path / "ready").exists():
            assert process.poll() is None and time.monotonic() < deadline, "the inner run ended before it waited"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == pytest.ExitCode.INTERRUPTED, out
    assert "KeyboardInterrupt" in out
    run = json.loads((pytester.path / "out" / "run.json").read_text())
    assert run["status"] == "interrupted" and run["passed"] is False
    assert _outcomes(run) == [("test_user.py::test_a", "passed"), ("test_user.py::test_b", "passed")]
    assert len(_checks(run)) == 2 and run["provenance"]["exitstatus"] == pytest.ExitCode.INTERRUPTED
    section = _section_text(out)
    assert "Interrupted: the run stopped early, so nothing is verified" in section
    assert "2 gradient checks in 2 tests: 2 passed, 0 failed" in section


# -- the summary, in words, at 80 columns -----------------------------------------------------------

SUMMARY = """
import pytest

def tanh(x):
    return np.tanh(x)

def tanh_vjp(v, x):
    return (v * (1 - np.tanh(x) ** 2),)

def test_finite_differences_off(gradcheck):
    # At x = 12 the finite difference of tanh is lost in rounding; the truth decides.
    assert gradcheck(tanh, tanh_vjp, np.array([0.5, 12.0])).blame == "numerical"

@pytest.mark.parametrize("k", range(3))
def test_a_rather_long_test_name_that_keeps_going_to_fill_the_line(gradcheck, k):
    gradcheck(sig, sig_vjp_wrong, X + k, name="sigmoid_with_a_long_name")

def test_bidi_name(gradcheck):
    gradcheck(sig, sig_vjp_wrong, X, name="evil\\u202eeman")
"""


def test_the_summary_reads_at_80_columns_in_words(pytester):
    _write(pytester, SUMMARY)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=4)
    section = _section(result.stdout.str())
    for line in section:  # a command is not wrapped, nor a name longer than the line
        assert len(line) <= 80 or line.startswith("  reproduce: ") or " " not in line.strip(), line
    text = " ".join(line.strip() for line in section)
    assert "Finite differences unreliable at 1 check; the high-precision truth decided." in text
    assert "blame" not in text
    assert "evil<U+202E>eman" in text and "\u202e" not in "\n".join(section)
    assert "Failed check in test_user.py::test_a_rather_long_test_name_that_keeps_going_to_fill_the_line[0]: sigmoid_with_a_long_name: the analytic gradient is wrong" in text


def _check(passed=True, blame=None, error=1e-12, function="f", reproduce="python -m pytest t.py::t"):
    worst = {"index": [0], "verdict": "ok" if passed else "analytic"}
    per_input = [{"name": "input 0", "max_rel_analytic_truth": error, "max_rel_analytic_numerical": error, "worst": worst}]
    result = {"passed": passed, "blame": blame, "max_rel_error": error, "function": function, "per_input": per_input, "structural": []}
    return {"result": result, "reproduce": reproduce}


def test_summary_lines_in_words():
    tests = [
        {"nodeid": "t.py::a", "outcome": "passed", "checks": [_check(), _check(blame="numerical", error=2e-10)]},
        {"nodeid": "t.py::b", "outcome": "failed", "checks": [_check(False, "analytic", 0.5, "g", "python -m pytest t.py::b")]},
        {"nodeid": "t.py::c", "outcome": "xfailed", "checks": [_check(False, "numerical", "nan", "h", "python -m pytest t.py::c")]},
    ]
    lines = summary_lines(tests, deadline_off=1, deadline_ms=200.0)
    assert lines == [
        "4 gradient checks in 3 tests: 2 passed, 2 failed",
        "Worst relative error inf in t.py::c: h, input 0, element (0,) (the analytic",
        "  gradient is off).",
        "Finite differences unreliable at 1 check; the high-precision truth decided.",
        "Failed check in t.py::b: g: the analytic gradient is wrong (max rel. error 0.5).",
        "  reproduce: python -m pytest t.py::b",
        "Failed check in t.py::c (the test xfailed): h: inconclusive, the finite",
        "  differences could not resolve the gradient and there is no truth",
        "  (max rel. error inf).",
        "  reproduce: python -m pytest t.py::c",
        "Hypothesis deadline off for 1 @given test that calls gradcheck (a check can take",
        "  longer than 200 ms); set @settings(deadline=...) to choose one.",
    ]
    warned = _check()
    warned["result"]["warnings"] = ["vacuous check of input 0: a zero gradient would pass at all 3 elements"]
    lines = summary_lines([{"nodeid": "t.py::w", "outcome": "passed", "checks": [_check(), warned]}])
    assert " ".join(line.strip() for line in lines[2:]) == (
        "1 check warned (an input where a zero gradient would pass, or a mutant it would pass); the first, in t.py::w: "
        "vacuous check of input 0: a zero gradient would pass at all 3 elements"
    )
    assert summary_lines([], interrupted=True) == [
        "Interrupted: the run stopped early, so nothing is verified; the record holds the",
        "  tests that finished.",
    ]


# -- the README's section runs as written ------------------------------------------------------


def test_readme_gradient_tests_run_as_written(pytester):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = re.search(r"^## Gradient tests in your project\n(.*?)(?=^## )", readme, re.S | re.M).group(1)
    first, given_test = re.findall(r"```python\n(.*?)```", section, re.S)[:2]
    assert len(first.strip().splitlines()) < 10, "a first gradient test in under ten lines"
    pytester.makepyfile(test_sigmoid=first, test_tanh=given_test)
    # A subprocess: Hypothesis' own default settings (this process loaded the project's profile).
    result = pytester.runpytest_subprocess("--gradverify-backends=numpy,strict", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["* gradient checks in 3 tests: * passed, 0 failed"])


def test_adapter_draws_from_the_running_example_so_that_it_shrinks_with_it():
    """A draw inside a @given test is part of its example: a failure on the inner draw shrinks."""
    shrunk = []

    @settings(DEFAULT, max_examples=200, database=None, suppress_health_check=list(HealthCheck))
    @given(st.integers(0, 10))
    def outer(n):
        inner = adapter.draw(adapter.build_context(), st.integers(0, 1000))
        if adapter.is_final(adapter.build_context()):
            shrunk.append(inner)
        assert inner < 500

    with pytest.raises(AssertionError):
        outer()
    assert shrunk == [500]


HIDDEN_BUG = """
import numpy as np

def mean_pool(x):
    return x.mean(axis=0)

def mean_pool_vjp(v, x):
    return (np.broadcast_to(v / np.squeeze(x).shape[0], x.shape),)  # wrong for a batch of one

def test_mean_pool(gradcheck):
    gradcheck(mean_pool, mean_pool_vjp, np.random.default_rng(0).normal(size=(4, 3)))
"""


@pytest.mark.parametrize("how", ["ini", "option", "marker"])
def test_explore_from_the_ini_the_command_line_or_a_marker_finds_a_hidden_bug(pytester, how):
    _write(pytester, HIDDEN_BUG)
    pytester.runpytest().assert_outcomes(passed=1)  # the example alone hides the bug
    if how == "ini":
        pytester.makeini("[pytest]\ngradverify_explore = 20\n")
    elif how == "marker":
        _write(pytester, HIDDEN_BUG.replace("def test_mean_pool", "import pytest\n\n@pytest.mark.gradverify(explore=20)\ndef test_mean_pool"))
    result = pytester.runpytest(*(["--gradverify-explore=20"] if how == "option" else []))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*FOUND (gradient in the backward) on the variant: n1 = 1 (was 4)*"])
    summary = " ".join(" ".join(_section(result.stdout.str())).replace("\xa0", " ").split())
    assert "Worst relative error 0.667 in test_user.py::test_mean_pool: mean_pool, input 0, element (0, 0) (the analytic gradient is off, on a variant of the example)." in summary
    assert "the analytic gradient is wrong on a variant of the example (n1 = 1 (was 4)) (max rel. error 0.667)" in summary


LOOSE_TANH = """
import numpy as np

def test_tanh(gradcheck):
    gradcheck(np.tanh, lambda v, x: (v * (1 - np.tanh(x) ** 2),), np.random.default_rng(0).normal(size=(2, 3)), rtol=0.5)
"""


@pytest.mark.parametrize("how", ["ini", "option"])
def test_mutation_test_from_the_ini_or_the_command_line_warns_in_the_summary(pytester, how):
    """rtol=0.5 passes a gradient element scaled by 1.25: the test passes, and the summary says so."""
    _write(pytester, LOOSE_TANH)
    quiet = " ".join(" ".join(_section(pytester.runpytest().stdout.str())).split())
    assert "warned" not in quiet  # the mutants are judged only when asked
    if how == "ini":
        pytester.makeini("[pytest]\ngradverify_mutation_test = on\ngradverify_repeats = 3\n")
    result = pytester.runpytest(*(["--gradverify-mutation-test=on", "--gradverify-repeats=3"] if how == "option" else []))
    result.assert_outcomes(passed=1)
    summary = " ".join(" ".join(_section(result.stdout.str())).replace("\xa0", " ").split())
    assert "1 check warned (an input where a zero gradient would pass, or a mutant it would pass); the first, in test_user.py::test_tanh: mutation test of input 0: the check would pass the mutant scale_one_element" in summary
