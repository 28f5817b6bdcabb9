"""``gradverify verify``: exit codes, the JSON it writes, and a shrunk failure."""

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import strategies as st

from gradverify import catalog
from gradverify.__main__ import main
from gradverify.catalog import Example, Op


def test_verify_writes_json_and_exits_zero(tmp_path, capsys):
    out = tmp_path / "run.json"
    assert main(["verify", "--ops", "relu,tanh", "--examples", "5", "--json", str(out)]) == 0
    run = json.loads(out.read_text())
    assert run["passed"] is True
    assert [o["name"] for o in run["ops"]] == ["relu", "tanh"]
    assert all(o["examples"] >= 5 for o in run["ops"])
    prov = run["provenance"]
    assert prov["backend"] == "numpy" and prov["seed"] == 0 and "numpy" in prov["versions"]
    assert "all verified" in capsys.readouterr().out


def test_unknown_ops_pattern_is_a_usage_error(tmp_path, capsys):
    assert main(["verify", "--ops", "nope*", "--json", str(tmp_path / "x.json")]) == 2
    assert "matches no op" in capsys.readouterr().err


def test_bad_arguments_exit_two():
    with pytest.raises(SystemExit) as info:
        main(["verify", "--backend", "torch"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["verify", "--examples", "0"])
    assert info.value.code == 2


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
    out = tmp_path / "run.json"
    assert main(["verify", "--ops", "broken_square", "--examples", "30", "--json", str(out)]) == 1
    (op,) = json.loads(out.read_text())["ops"]
    assert op["passed"] is False and op["blame"] == "analytic"
    failure = op["failure"]
    # Shrunk: a single negative element (Hypothesis' minimal failing list).
    assert len(failure["inputs"][0]) == 1 and failure["inputs"][0][0] < 0
    assert failure["reproduce"] == "gradverify verify --ops broken_square --seed 0 --examples 30"
    assert "blame: analytic" in failure["report"]
    assert "1 of 1 ops FAILED" in capsys.readouterr().out


def test_python_dash_m_runs(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "gradverify", "verify", "--ops", "sigmoid", "--examples", "3", "--json", str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "sigmoid" in proc.stdout
