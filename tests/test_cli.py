"""``gradverify verify`` and ``gradverify report``: exit codes, the run JSON, profiles, output."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import strategies as st

from gradverify import catalog
from gradverify.__main__ import main
from gradverify.catalog import Example, Op
from gradverify.report import SCHEMA


@pytest.fixture(autouse=True)
def _plain_output(monkeypatch):
    """Plain lines, not progress bars, whatever the environment forces."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "GRADVERIFY_PROFILE", "CI"):
        monkeypatch.delenv(name, raising=False)


def _verify(tmp_path, *args):
    """Run ``gradverify verify`` into ``tmp_path``; return (exit status, run record)."""
    out = tmp_path / "run.json"
    status = main(["verify", *args, "--json", str(out), "--report", str(tmp_path / "index.html")])
    return status, (json.loads(out.read_text()) if out.exists() else None)


def test_verify_writes_json_and_html_and_exits_zero(tmp_path, capsys):
    status, run = _verify(tmp_path, "--ops", "relu,tanh", "--examples", "5", "--seed", "0")
    assert status == 0
    assert run["passed"] is True
    assert [o["name"] for o in run["ops"]] == ["relu", "tanh"]
    assert all(o["examples"] >= 5 for o in run["ops"])
    out = capsys.readouterr().out
    assert "verifying relu ... ok" in out and "all verified" in out
    assert (tmp_path / "index.html").read_text().startswith("<!DOCTYPE html>")


def test_run_json_schema(tmp_path):
    _, run = _verify(tmp_path, "--ops", "sigmoid", "--examples", "3", "--seed", "7")
    assert set(run) == {"schema", "provenance", "passed", "ops", "checks", "figures"}
    assert run["schema"] == SCHEMA and run["checks"] == [] and isinstance(run["passed"], bool)
    prov = run["provenance"]
    types = {"gradverify": str, "backend": str, "device": str, "seed": int, "date": str, "seconds": float, "versions": dict, "profile": str, "command": str}
    for key, kind in types.items():
        assert isinstance(prov[key], kind), key
    assert prov["git_commit"] is None or (isinstance(prov["git_commit"], str) and len(prov["git_commit"]) == 40)
    assert (prov["backend"], prov["device"], prov["seed"]) == ("numpy", "cpu", 7)
    assert {"gradverify", "numpy", "mpmath", "hypothesis"} <= set(prov["versions"])
    assert ("cupy" in prov["versions"]) == ("cupy" in sys.modules)  # listed only once imported
    (op,) = run["ops"]
    op_types = {"name": str, "family": str, "summary": str, "examples": int, "passed": bool, "kinks": int, "truth": dict, "seconds": float}
    for key, kind in op_types.items():
        assert isinstance(op[key], kind), key
    for key in ("rel_analytic_numerical", "rel_analytic_truth", "rel_numerical_truth"):
        assert len(op[key]) == op["examples"] and all(isinstance(v, float) for v in op[key])
    assert op["failure"] is None and op["blame"] in ("numerical", None)
    assert set(run["figures"]) == {"fd_steps", "trajectories", "activations", "critical_points"}


def test_defaults_write_under_reports_latest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["verify", "--ops", "relu", "--examples", "2"]) == 0
    run = json.loads((tmp_path / "reports" / "latest" / "run.json").read_text())
    assert run["provenance"]["profile"] == "dev"
    assert (tmp_path / "reports" / "latest" / "index.html").exists()


def test_profiles_set_examples_and_seed(tmp_path, monkeypatch):
    _, run = _verify(tmp_path, "--ops", "relu", "--profile", "ci")
    assert (run["provenance"]["examples_per_op"], run["provenance"]["seed"]) == (50, 0)  # derandomized
    assert run["ops"][0]["examples"] >= 50
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
        ["report"],
        ["frobnicate"],
    ],
)
def test_bad_arguments_exit_two(argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


def test_report_of_a_missing_or_foreign_file_exits_two(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"schema": "something-else/2"}))
    assert main(["report", str(foreign)]) == 2
    assert "is not a gradverify-run/1 record" in capsys.readouterr().err
    foreign.write_text("{not json")
    assert main(["report", str(foreign)]) == 2
    assert "is not JSON" in capsys.readouterr().err


def test_report_renders_a_saved_run(tmp_path, capsys):
    _verify(tmp_path, "--ops", "relu", "--examples", "2")
    out = tmp_path / "again" / "page.html"
    assert main(["report", str(tmp_path / "run.json"), "-o", str(out)]) == 0
    assert 'id="summary"' in out.read_text() and str(out) in capsys.readouterr().out
    assert main(["report", str(tmp_path / "run.json")]) == 0  # default: RUN with .html
    assert (tmp_path / "run.html").exists()


def test_an_unwritable_output_is_a_usage_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    status = main(["verify", "--ops", "relu", "--examples", "2", "--json", str(blocker / "run.json")])
    assert status == 2 and "cannot write" in capsys.readouterr().err


@pytest.fixture
def broken_op():
    """A square op whose backward forgets the factor 2 for negative inputs only."""

    def forward(x):
        return x * x, x

    def backward(dout, x):
        return (dout * x * (1.0 + (x > 0)),)

    examples = st.builds(lambda xs: Example((np.array(xs),)), st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=6))
    op = Op("broken_square", "layer", forward, backward, lambda: examples, "x**2 with a bug for x <= 0")
    catalog.register(op)
    yield op
    del catalog._REGISTRY[op.name]


def test_a_failing_op_exits_one_with_a_shrunk_reproducible_example(broken_op, tmp_path, capsys):
    status, run = _verify(tmp_path, "--ops", "broken_square", "--examples", "30", "--seed", "0")
    assert status == 1 and run["passed"] is False
    (op,) = run["ops"]
    assert op["passed"] is False and op["blame"] == "analytic"
    failure = op["failure"]
    # Shrunk: a single negative element (Hypothesis' minimal failing list).
    assert len(failure["inputs"][0]) == 1 and failure["inputs"][0][0] < 0
    assert failure["reproduce"] == "gradverify verify --ops broken_square --seed 0 --examples 30"
    assert "blame: analytic" in failure["report"]
    assert "1 of 1 ops FAILED" in capsys.readouterr().out


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
    assert "relu" in out and "sigmoid" in out and "all verified" in out


def test_python_dash_m_runs(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "gradverify", "verify", "--ops", "sigmoid", "--examples", "3", "--json", str(tmp_path / "r.json"), "--report", str(tmp_path / "r.html")],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")},
    )
    assert proc.returncode == 0, proc.stderr
    assert "sigmoid" in proc.stdout
    assert (tmp_path / "r.html").exists()
