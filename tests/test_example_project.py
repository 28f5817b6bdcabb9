"""The outside project in examples/two_layer_net: green as written, red with its bug switched on.

It runs as a user runs it: a separate ``python -m pytest`` in a copy of the project, with
gradverify's plugin coming from the installed entry point (nothing of this project's
``tests/`` is loaded) and its own pyproject.toml choosing the backends (numpy, strict).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "two_layer_net"


def _run(tmp_path, bug):
    project = tmp_path / "two_layer_net"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".hypothesis", "__pycache__", ".pytest_cache"))
    # The outer session's settings stay out: backends, addopts, xdist's worker variables.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "GRADVERIFY_", "HYPOTHESIS_", "TWO_LAYER_"))}
    if bug:
        env["TWO_LAYER_BUG"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rf"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_the_example_passes_as_written(tmp_path):
    code, out = _run(tmp_path, bug=False)
    assert code == 0, out
    assert "gradverify: xp backends numpy, strict (ini setting gradverify_backends = numpy,strict)" in out
    assert "16 passed" in out and "0 failed" in out


def test_the_example_fails_on_the_buggy_gradient(tmp_path):
    code, out = _run(tmp_path, bug=True)
    assert code == pytest.ExitCode.TESTS_FAILED, out
    failed = sorted(line.split()[1] for line in out.splitlines() if line.startswith("FAILED ") and " - " in line)
    assert failed == [
        "tests/test_layers.py::test_softmax_loss_gradient[numpy]",
        "tests/test_layers.py::test_softmax_loss_gradient[strict]",
        "tests/test_model.py::test_network_gradient[numpy-4]",
        "tests/test_model.py::test_network_gradient[strict-4]",
    ], out
    # The message names the gradient, blames it, and shows the shrunk batch of two.
    assert "gradverify: FAILED: the analytic gradient is wrong (blame: analytic)" in out
    assert "function: softmax_loss" in out and "function: two_layer_net.loss" in out
    assert "input 0 shape (2, " in out and "Draw 1: " in out
    assert "max rel. error 0.5" in out  # analytic = 2 x the truth: the missing / N, N = 2
