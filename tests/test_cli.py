"""``gradverify verify`` and ``gradverify report``: exit codes, the run record, profiles,
check options, output paths, Ctrl-C, malformed runs, the 80-column summary and progress."""

import copy
import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st
from rich.console import Console

from gradverify import _record, _runner, catalog
from gradverify.__main__ import _ProgressDisplay, legend, main, summary_table
from gradverify.catalog import Example, Op

BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def _plain_output(monkeypatch):
    """Plain lines, not progress bars, whatever the environment forces."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "GRADVERIFY_PROFILE", "CI", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)


def _verify(tmp_path, *args):
    """Run ``gradverify verify`` into ``tmp_path``; return (exit status, run record)."""
    out = tmp_path / "run.json"
    status = main(["verify", *args, "--json", str(out), "--report", str(tmp_path / "index.html")])
    return status, (_record.read_run(out) if out.exists() else None)


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "GRADVERIFY_PROFILE", "CI", "COLUMNS")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


def test_verify_writes_json_and_html_and_exits_zero(tmp_path, capsys):
    status, run = _verify(tmp_path, "--ops", "relu,tanh", "--examples", "5", "--seed", "0")
    assert status == 0
    assert (run["kind"], run["status"], run["passed"]) == ("catalog", "complete", True)
    assert [o["name"] for o in run["ops"]] == ["relu", "tanh"]
    assert all(1 <= o["examples"] <= 5 and o["shrink_steps"] == 0 for o in run["ops"])
    out = capsys.readouterr().out
    assert "verifying relu ... ok" in out and "all 2 ops verified" in out
    assert (tmp_path / "index.html").read_text().startswith("<!DOCTYPE html>")


def test_run_record(tmp_path):
    _, run = _verify(tmp_path, "--ops", "sigmoid", "--examples", "3", "--seed", "7")
    assert set(run) == set(_record.KEYS) and run["schema"] == _record.SCHEMA and run["tests"] == []
    prov = run["provenance"]
    types = {"gradverify": str, "backend": str, "device": str, "seed": int, "date": str, "seconds": float, "versions": dict, "profile": str, "command": str, "check_options": dict}
    for key, kind in types.items():
        assert isinstance(prov[key], kind), key
    assert prov["git_commit"] is None or (isinstance(prov["git_commit"], str) and len(prov["git_commit"]) == 40)
    assert (prov["backend"], prov["device"], prov["seed"], prov["interrupted_in"]) == ("numpy", "cpu", 7, None)
    assert prov["check_options"] == {
        "dps": 40, "mode": "auto", "rtol": None, "truth": "auto", "time_budget": 600.0, "explore": 0, "repeats": 2, "mutation_test": False,
    }
    assert {"gradverify", "numpy", "mpmath", "hypothesis"} <= set(prov["versions"])
    assert ("cupy" in prov["versions"]) == ("cupy" in sys.modules)  # listed only once imported
    (op,) = run["ops"]
    assert op["examples"] == 3  # the examples drawn, never more than asked
    assert len(op["rel_error"]) == op["examples"] and all(isinstance(v, float) for v in op["rel_error"])
    for key in _record.COMPARISONS:
        assert len(op[key]) <= op["examples"]
    assert op["failure"] is None and op["blame"] is None and op["passed"] is True
    assert op["origin"] == {"kind": "gradverify", "source": "gradverify.catalog"}
    assert set(run["figures"]) == {"fd_steps", "trajectories", "activations", "critical_points"}


def test_the_command_runs_the_run_again(tmp_path):
    """provenance.command is the command line with the seed and profile the run drew."""
    _, run = _verify(tmp_path, "--ops", "relu", "--examples", "2")
    command = run["provenance"]["command"]
    assert command.startswith("gradverify verify --ops relu --examples 2 --json ")
    assert command.endswith(f"--seed {run['provenance']['seed']} --profile dev")


def test_defaults_write_under_reports_latest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["verify", "--ops", "relu", "--examples", "2"]) == 0
    run = _record.read_run(tmp_path / "reports" / "latest" / "run.json")
    assert run["provenance"]["profile"] == "dev"
    assert (tmp_path / "reports" / "latest" / "index.html").exists()


def test_profiles_set_examples_and_seed(tmp_path, monkeypatch):
    _, run = _verify(tmp_path, "--ops", "relu", "--profile", "ci")
    assert (run["provenance"]["examples_per_op"], run["provenance"]["seed"]) == (50, 0)  # derandomized
    assert 1 <= run["ops"][0]["examples"] <= 50
    _, run = _verify(tmp_path, "--ops", "relu", "--profile", "thorough", "--examples", "3")
    assert run["provenance"]["examples_per_op"] == 3  # an explicit --examples wins
    monkeypatch.setenv("GRADVERIFY_PROFILE", "ci")
    _, run = _verify(tmp_path, "--ops", "relu", "--examples", "2")
    assert run["provenance"]["profile"] == "ci" and run["provenance"]["seed"] == 0
    monkeypatch.delenv("GRADVERIFY_PROFILE")
    monkeypatch.setenv("CI", "true")
    _, run = _verify(tmp_path, "--ops", "relu", "--examples", "2")
    assert run["provenance"]["profile"] == "ci"


def test_unknown_ops_pattern_is_a_usage_error(tmp_path, capsys):
    status, run = _verify(tmp_path, "--ops", "nope*")
    assert (status, run) == (2, None)
    assert "matches no op" in capsys.readouterr().err


def test_bad_profile_variable_is_a_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GRADVERIFY_PROFILE", "fast")
    assert _verify(tmp_path, "--ops", "relu")[0] == 2
    assert "GRADVERIFY_PROFILE='fast'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["verify", "--backend", "torch"],
        ["verify", "--examples", "0"],
        ["verify", "--seed", "-1"],
        ["verify", "--profile", "fast"],
        ["verify", "--module"],
        ["report"],
        ["frobnicate"],
    ],
)
def test_bad_arguments_exit_two(argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


# -- check options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dps", "5"], "--dps: '5' is not valid: the digits of the truth must be an integer >= 30"),
        (["--dps", "many"], "--dps: 'many' is not valid: significant digits"),
        (["--mode", "sideways"], "--mode: 'sideways' is not valid: choose one of auto, full, directional"),
        (["--truth", "maybe"], "--truth: 'maybe' is not valid: choose one of auto, elementwise, directional, off"),
        (["--rtol", "2"], "--rtol: '2' is not valid: rtol must be a number in (0, 1)"),
        (["--time-budget", "-1"], "--time-budget: '-1' is not valid: the time budget must be a positive number"),
        (["--repeats", "1"], "--repeats: '1' is not valid: repeats must be an integer >= 2"),
        (["--mutation-test", "maybe"], "--mutation-test: 'maybe' is not valid: write on or off"),
    ],
)
def test_bad_check_options_are_usage_errors_before_any_op_runs(tmp_path, capsys, args, message):
    assert _verify(tmp_path, "--ops", "relu", *args) == (2, None)
    captured = capsys.readouterr()
    assert message in captured.err and "verifying" not in captured.out


def test_every_text_setting_is_an_option_with_its_help():
    from gradverify._options import TEXT_SETTINGS
    from gradverify.__main__ import build_parser

    verify = build_parser()._subparsers._group_actions[0].choices["verify"]
    helps = {a.option_strings[0]: a.help for a in verify._actions if a.option_strings}
    for name, setting in TEXT_SETTINGS.items():
        assert helps[f"--{name.replace('_', '-')}"] == setting.help


def test_check_options_reach_every_check(tmp_path, monkeypatch):
    seen = []
    check_layer = _runner.check_layer

    def spy(*args, **kwargs):
        seen.append({k: kwargs[k] for k in ("dps", "mode", "truth", "rtol", "time_budget", "repeats", "mutation_test")})
        return check_layer(*args, **kwargs)

    monkeypatch.setattr(_runner, "check_layer", spy)
    status, run = _verify(
        tmp_path, "--ops", "relu,tanh", "--examples", "2", "--dps", "45", "--mode", "full", "--truth", "elementwise", "--rtol", "1e-6",
        "--time-budget", "none", "--repeats", "3", "--mutation-test", "on",
    )
    assert status == 0 and len(seen) == sum(o["examples"] for o in run["ops"]) >= 2
    expected = {"dps": 45, "mode": "full", "truth": "elementwise", "rtol": 1e-6, "time_budget": None, "repeats": 3, "mutation_test": True}
    assert all(s == expected for s in seen)
    assert run["provenance"]["check_options"] == {**expected, "explore": 0}
    assert "--repeats 3 --mutation-test on" in run["provenance"]["command"]


def test_warnings_of_the_checks_reach_the_summary_record_and_report(tmp_path, capsys):
    """A mutant the check would pass (rtol 0.5 misses a gradient element scaled by 1.25) is a
    warning of that example's check; the run counts such examples per op and shows them."""
    status, run = _verify(tmp_path, "--ops", "tanh", "--examples", "3", "--seed", "0", "--rtol", "0.5", "--mutation-test", "on")
    assert status == 0
    (op,) = run["ops"]
    assert op["passed"] and op["warned"] == op["examples"] >= 1
    assert 1 <= len(op["warnings"]) <= _runner.MAX_WARNINGS and "scale_one_element" in op["warnings"][0]
    out = capsys.readouterr().out
    assert f"checks that warned at some examples (an input where a zero gradient would pass, or a mutant the check would pass; the report lists them): tanh {op['warned']}/{op['examples']}" in " ".join(out.split())
    assert "warning: tanh: every example's check warned, e.g. mutation test of" in " ".join(out.split())
    html = (tmp_path / "index.html").read_text()
    assert f"warned at {op['warned']} of {op['examples']}" in html and "scale_one_element" in html


def test_a_run_without_warnings_records_none(tmp_path, capsys):
    status, run = _verify(tmp_path, "--ops", "tanh", "--examples", "2", "--seed", "0")
    assert status == 0 and run["ops"][0]["warned"] == 0 and run["ops"][0]["warnings"] == []
    assert "warned" not in capsys.readouterr().out


# -- output paths -------------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["--json", "--report"])
def test_a_directory_as_output_is_a_usage_error_before_any_op_runs(tmp_path, capsys, option):
    directory = tmp_path / "out"
    directory.mkdir()
    other = "--report" if option == "--json" else "--json"
    status = main(["verify", "--ops", "relu", "--examples", "2", option, str(directory), other, str(tmp_path / "other.file")])
    captured = capsys.readouterr()
    assert status == 2 and "verifying" not in captured.out
    assert f"{option} '{directory}' is a directory" in captured.err


@pytest.mark.parametrize("option", ["--json", "--report"])
def test_an_unwritable_output_is_a_usage_error_before_any_op_runs(tmp_path, capsys, option):
    blocker = tmp_path / "file"
    blocker.write_text("")
    status = main(["verify", "--ops", "relu", "--examples", "2", option, str(blocker / "out")])
    captured = capsys.readouterr()
    assert status == 2 and "verifying" not in captured.out
    assert f"{option} '{blocker / 'out'}' cannot be written" in captured.err


def test_json_and_report_on_one_file_is_a_usage_error(tmp_path, capsys):
    same = str(tmp_path / "x")
    assert main(["verify", "--ops", "relu", "--json", same, "--report", same]) == 2
    assert "the same file" in capsys.readouterr().err


def test_report_output_is_checked(tmp_path, capsys):
    _verify(tmp_path, "--ops", "relu", "--examples", "2")
    assert main(["report", str(tmp_path / "run.json"), "-o", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


# -- gradverify report on good and bad runs ---------------------------------------------------------


def test_report_renders_a_saved_run_and_prints_its_summary(tmp_path, capsys):
    _verify(tmp_path, "--ops", "relu", "--examples", "2")
    capsys.readouterr()
    out = tmp_path / "again" / "page.html"
    assert main(["report", str(tmp_path / "run.json"), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.read_text().startswith("<!DOCTYPE html>") and f"report in {out}" in printed
    assert re.search(r"relu\s+\d+\s+\S+\s+ok", printed)
    assert main(["report", str(tmp_path / "run.json")]) == 0  # default: RUN with .html
    assert (tmp_path / "run.html").exists()


def _op(name="relu", **changes):
    op = _runner.OpOutcome(name=name, family="layer", summary="an op", examples=3, rel_error=[1e-12, 2e-12, 3e-12], rel_analytic_truth=[1e-12], rel_analytic_numerical=[1e-9])
    return {**op.to_dict(), **changes}


def _valid_run(**changes):
    run = _record.new_run("catalog", {"command": "gradverify verify"}, ops=[_op()])
    return {**run, **changes}


def _edit(edit):
    run = copy.deepcopy(_valid_run())
    edit(run)
    return run


MALFORMED = {
    "not JSON": ("{not json", "is not JSON"),
    "empty file": ("", "is not JSON"),
    "NaN literal": ('{"schema": "gradverify-run/2", "x": NaN}', "NaN is not JSON"),
    "Infinity literal": ('{"schema": "gradverify-run/2", "x": -Infinity}', "-Infinity is not JSON"),
    "an array": ("[]", "is a JSON array, not a gradverify-run/2 record"),
    "a string": ('"gradverify-run/2"', "is a JSON string"),
    "deeply nested": ("[" * 100_000, "nests too deeply"),
    "wrong schema": (json.dumps({"schema": "something-else/2"}), "its schema is 'something-else/2'"),
    "old schema": (json.dumps({"schema": "gradverify-run/1", "checks": []}), "written by an older gradverify"),
    "missing key": (_edit(lambda r: r.pop("ops")), "lacks the key 'ops'"),
    "unknown kind": (_edit(lambda r: r.update(kind="notebook")), "kind is 'notebook'"),
    "unknown status": (_edit(lambda r: r.update(status="halfway")), "status is 'halfway'"),
    "passed as a string": (_edit(lambda r: r.update(passed="false")), "passed is 'false' (a JSON string); it must be true or false"),
    "passed disagreeing": (_edit(lambda r: r["ops"][0].update(passed=False)), "'passed' is True but its contents say False"),
    "interrupted yet passed": (_edit(lambda r: r.update(status="interrupted")), "'passed' is True but its contents say False"),
    "op lacks a key": (_edit(lambda r: r["ops"][0].pop("examples")), "ops[0] lacks the key 'examples'"),
    "op examples a string": (_edit(lambda r: r["ops"][0].update(examples="10")), "ops[0].examples is '10'"),
    "op examples a boolean": (_edit(lambda r: r["ops"][0].update(examples=True)), "ops[0].examples is True"),
    "op error not a number": (_edit(lambda r: r["ops"][0].update(rel_analytic_truth=["tiny"])), "ops[0].rel_analytic_truth[0] is 'tiny'"),
    "op blame unknown": (_edit(lambda r: r["ops"][0].update(blame="cosmic rays")), "ops[0].blame is 'cosmic rays'"),
    "ops not a list": (_edit(lambda r: r.update(ops={"relu": {}})), "ops must be a list"),
    "provenance a list": (_edit(lambda r: r.update(provenance=[])), "provenance is [] (a JSON array)"),
    "catalog run with tests": (
        _edit(lambda r: r.update(tests=[{"nodeid": "t", "outcome": "passed", "duration": 0.1, "message": None, "checks": []}])),
        "a catalog run has no tests",
    ),
    "test outcome unknown": (
        _edit(lambda r: r.update(kind="pytest", ops=[], tests=[{"nodeid": "t", "outcome": "exploded", "duration": 0.1, "message": None, "checks": []}])),
        "tests[0].outcome is 'exploded'",
    ),
    "test duration a string": (
        _edit(lambda r: r.update(kind="pytest", ops=[], tests=[{"nodeid": "t", "outcome": "passed", "duration": "fast", "message": None, "checks": []}])),
        "tests[0].duration is 'fast'",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_report_of_a_malformed_run_exits_two_with_the_reason(tmp_path, capsys, case):
    content, message = MALFORMED[case]
    path = tmp_path / "run.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradverify: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "run.html").exists()


def test_report_of_what_is_no_run_file_exits_two(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing.json")]) == 2
    assert "cannot read the run" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    (tmp_path / "latin1.json").write_bytes(b'{"schema": "caf\xe9"}')
    assert main(["report", str(tmp_path / "latin1.json")]) == 2
    assert "is not UTF-8 text" in capsys.readouterr().err


def test_a_malformed_run_prints_no_traceback(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(MALFORMED["passed as a string"][0]))
    proc = subprocess.run([str(BIN / "gradverify"), "report", str(path)], capture_output=True, text=True, env=_env())
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("gradverify: error: ") and proc.stderr.count("\n") == 1


def test_report_of_a_test_run_counts_its_outcomes(tmp_path, capsys):
    tests = [
        {"nodeid": "tests/test_a.py::test_ok", "outcome": "passed", "duration": 0.1, "message": None, "checks": []},
        {"nodeid": "tests/test_a.py::test_\u202ebad", "outcome": "failed", "duration": 0.2, "message": "boom", "checks": []},
    ]
    path = tmp_path / "run.json"
    _record.write_run(_record.new_run("pytest", {}, tests=tests), path)
    assert main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "a pytest run: 2 tests, 1 passed, 1 failed" in out and "FAILED tests/test_a.py::test_<U+202E>bad" in out


def test_bidi_controls_in_names_print_visibly(tmp_path, capsys):
    name = "safe\u202eelif"
    path = tmp_path / "run.json"
    _record.write_run(_record.new_run("catalog", {}, ops=[_op(name)]), path)
    assert main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "safe<U+202E>elif" in out and "\u202e" not in out
    assert "\u202e" not in (tmp_path / "run.html").read_text()


# -- the summary at 80 columns ------------------------------------------------------------------


SUMMARY_OPS = [
    _op("relu"),
    _op("sigmoid_binary_cross_entropy", truth_decided=7, examples=500, rel_error=[3.3e-300]),
    _op("batchnorm_running_update", truth_decided=1),
    _op("broken_square_backward_x", passed=False, blame="analytic", rel_error=[1.25e12], failure={"kind": "gradient", "reproduce": "gradverify verify"}),
    _op("he_normal", examples=10, rel_error=[], rel_analytic_truth=[], rel_analytic_numerical=[]),
    _op("softmax_with_a_property", passed=False, blame="analytic", failure={"kind": "property", "reproduce": "x"}),
    _op("time_budget_blown", passed=False, blame=None, failure={"kind": "error", "reproduce": "x"}),
    _op("fd_too_rough", passed=False, blame="numerical", failure={"kind": "gradient", "reproduce": "x"}),
]


def _render(renderable, width=80):
    console = Console(file=io.StringIO(), width=width, color_system=None, highlight=False)
    console.print(renderable)
    return console.file.getvalue()


def test_the_summary_reads_at_80_columns():
    text = _render(summary_table(SUMMARY_OPS))
    lines = text.splitlines()
    assert max(map(len, lines)) <= 80
    expected = {
        "relu": ("3", "3.0e-12", "ok"),
        "sigmoid_binary_cross_entropy": ("500", "3.3e-300", "ok, truth decided (7)"),
        "batchnorm_running_update": ("3", "3.0e-12", "ok, truth decided (1)"),
        "broken_square_backward_x": ("3", "1.2e+12", "FAILED: backward wrong"),
        "he_normal": ("10", "-", "ok"),
        "softmax_with_a_property": ("3", "3.0e-12", "FAILED: property"),
        "time_budget_blown": ("3", "3.0e-12", "FAILED: error"),
        "fd_too_rough": ("3", "3.0e-12", "FAILED: undecided"),
    }
    for name, cells in expected.items():
        (row,) = [line for line in lines if line.split() and line.split()[0] == name]  # the name whole, on one line
        assert row.split()[1:3] == list(cells[:2]) and " ".join(row.split()[3:]) == cells[2], row
    assert "blame" not in text and "numerical" not in text


def test_the_legend_explains_the_verdicts_shown():
    lines = legend(SUMMARY_OPS)
    assert lines[0].startswith("worst error: the largest relative error")
    assert any(line.startswith("ok, truth decided (N): at N examples the finite differences were too inexact") for line in lines)
    assert len(lines) == 6
    assert legend([_op()]) == lines[:1]  # only what the table shows


def test_the_cli_summary_at_80_columns(tmp_path):
    proc = subprocess.run(
        [str(BIN / "gradverify"), "verify", "--ops", "relu,sigmoid_binary_cross_entropy,he_normal", "--examples", "3", "--seed", "0", "--json", str(tmp_path / "r.json"), "--report", str(tmp_path / "r.html")],
        capture_output=True,
        text=True,
        env=_env(COLUMNS="80"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines if not line.startswith("run record in")), proc.stdout
    assert any(line.split()[:1] == ["sigmoid_binary_cross_entropy"] for line in lines)


# -- failures, shrinking and their reproduce lines ------------------------------------------------


@pytest.fixture
def broken_op():
    """A square op whose backward forgets the factor 2 for negative inputs only."""

    def forward(x):
        return x * x, x

    def backward(dout, x):
        return (dout * x * (1.0 + (x > 0)),)

    examples = st.builds(lambda xs: Example((np.array(xs),)), st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=6))
    op = catalog.register(Op("broken_square", "layer", forward, backward, lambda: examples, "x**2 with a bug for x <= 0"))
    yield op
    catalog.unregister(op.name)


def test_a_failing_op_exits_one_with_a_shrunk_reproducible_example(broken_op, tmp_path, capsys):
    status, run = _verify(tmp_path, "--ops", "broken_square", "--examples", "30", "--seed", "0", "--dps", "50")
    assert status == 1 and run["passed"] is False
    (op,) = run["ops"]
    assert op["passed"] is False and op["blame"] == "analytic"
    assert 1 <= op["examples"] <= 30 and op["shrink_steps"] >= 1  # counted apart
    failure = op["failure"]
    # Shrunk: a single negative element (Hypothesis' minimal failing list).
    assert len(failure["inputs"][0]) == 1 and failure["inputs"][0][0] < 0
    assert (failure["kind"], failure["shrunk"]) == ("gradient", True)
    assert failure["reproduce"] == "gradverify verify --ops broken_square --backend numpy --seed 0 --examples 30 --dps 50"
    assert "blame: analytic" in failure["report"]
    out = capsys.readouterr().out
    assert f"failed at example {op['examples']}; shrinking ... FAILED ({op['examples']} examples, shrunk in {op['shrink_steps']} steps" in out
    assert "1 of 1 ops FAILED" in out and f"reproduce: {failure['reproduce']}" in out
    assert re.search(r"broken_square\s+\d+\s+\d\.\de[-+]\d\d\s+FAILED: backward wrong", out)


def test_a_fresh_seed_is_recorded_and_reproduces(broken_op, tmp_path):
    """The dev profile draws a seed per run; the reproduce line names it and repeats the run."""
    _, first = _verify(tmp_path, "--ops", "broken_square", "--examples", "30")
    seed = first["provenance"]["seed"]
    assert f"--seed {seed} " in first["ops"][0]["failure"]["reproduce"]
    _, again = _verify(tmp_path, "--ops", "broken_square", "--examples", "30", "--seed", str(seed))
    assert again["ops"][0]["failure"]["inputs"] == first["ops"][0]["failure"]["inputs"]


def test_progress_bars_on_a_terminal(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich then treats the captured stdout as a terminal
    assert _verify(tmp_path, "--ops", "relu,sigmoid", "--examples", "3")[0] == 0
    out = capsys.readouterr().out
    assert "verifying relu ..." not in out  # the bars replaced the plain lines
    assert "relu" in out and "sigmoid" in out and "all 2 ops verified" in out


def _task(display, task_id):
    (task,) = [t for t in display.progress_bar.tasks if t.id == task_id]
    return task


def test_the_progress_display_shows_shrinking_as_its_own_phase():
    console = Console(file=io.StringIO(), force_terminal=True, width=80)
    display = _ProgressDisplay(console, ops=1, examples=10)
    with display:
        display.start("broken_square")
        for n in (1, 2, 3):
            display.progress("generate", n)
        examples = _task(display, display.task)
        assert (examples.completed, examples.total, examples.fields["count"]) == (3, 10, "3/10")
        for n in range(1, 82):
            display.progress("shrink", n)
        examples = _task(display, display.task)
        shrinking = _task(display, display.shrink_task)
        assert examples.completed == examples.total == 3 and examples.fields["count"].startswith("3/10")  # never 81/10
        assert shrinking.description.startswith("  shrinking broken_square")
        assert (shrinking.total, shrinking.completed, shrinking.fields["count"]) == (None, 81, "81 steps")
        assert not shrinking.finished and shrinking.elapsed is not None  # the timer runs on
        frame = _render(display.progress_bar.get_renderable())
        assert "shrinking broken_square" in frame and "81 steps" in frame and max(map(len, frame.splitlines())) <= 80


def test_python_dash_m_runs(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "gradverify", "verify", "--ops", "sigmoid", "--examples", "3", "--json", str(tmp_path / "r.json"), "--report", str(tmp_path / "r.html")],
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert "sigmoid" in proc.stdout
    assert (tmp_path / "r.html").exists()


# -- Ctrl-C ---------------------------------------------------------------------------------------


def test_ctrl_c_writes_an_interrupted_record_and_exits_130(tmp_path):
    ops = "relu,linear,maxout,softmax_cross_entropy,batchnorm_train,log_softmax,softmax,tanh"
    proc = subprocess.Popen(
        # Enough examples that the ops after the first outlast any delay before the signal.
        [str(BIN / "gradverify"), "verify", "--ops", ops, "--examples", "200", "--seed", "0", "--json", str(tmp_path / "run.json"), "--report", str(tmp_path / "index.html")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        # A shell without job control starts background jobs with SIGINT ignored, which the
        # child would inherit (and Python then installs no KeyboardInterrupt): restore it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if " ok (" in line or " FAILED (" in line:  # the first op is done
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    out = "".join(lines) + out
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "Traceback" not in out, err
    assert not re.search(r"^all \d+ ops", out, re.MULTILINE) and "verified" not in out
    (message,) = [line for line in out.splitlines() if "interrupted (Ctrl-C)" in line]
    assert message.startswith("gradverify: interrupted (Ctrl-C) in ") and str(tmp_path / "run.json") in message
    run = _record.read_run(tmp_path / "run.json")
    assert (run["status"], run["passed"]) == ("interrupted", False)
    assert 1 <= len(run["ops"]) < len(ops.split(","))
    assert run["provenance"]["interrupted_in"] in ops.split(",")
    assert (tmp_path / "index.html").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left
