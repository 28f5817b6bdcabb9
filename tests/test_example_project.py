"""The outside project in examples/two_layer_net: green as written, red with its bug switched on.

It runs as a user runs it: a separate ``python -m pytest`` in a copy of the project, with
gradverify's plugin coming from the installed entry point (nothing of this project's
``tests/`` is loaded) and its own pyproject.toml choosing the backends (numpy, strict).
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

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


def _readme_commands():
    """The shell commands of the example README's bash block, comments stripped, in order."""
    text = (EXAMPLE / "README.md").read_text()
    blocks = re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M)
    assert len(blocks) == 1, "the example README should have one bash block, the commands to run"
    lines = (line.split("#", 1)[0].strip() for line in blocks[0].splitlines())
    return [line for line in lines if line]


def test_the_example_readme_installs_gradverify_from_the_repository_first():
    """The README's install commands work from a clone: gradverify is not on PyPI, so the plain
    ``gradverify`` requirement of the example's ``test`` extra must already be satisfied by an
    install from the repository root, one command earlier.

    Structural only: running the commands for real needs a fresh virtual environment and the
    network (``pip install`` of numpy, pytest, ...), too slow and too fragile for the suite. It
    was run by hand: ``pip install -e ../..``, ``pip install -e '.[test]'`` and the two pytest
    runs, each as written, in a new venv in a clone's ``examples/two_layer_net``.
    """
    commands = _readme_commands()
    installs = [shlex.split(c) for c in commands if c.startswith("pip install")]
    assert len(installs) == 2, commands
    # Every install names a local path (nothing is fetched from PyPI by name) ...
    targets = []
    for argv in installs:
        assert argv[:3] == ["pip", "install", "-e"] and len(argv) == 4, argv
        path, _, extras = argv[3].partition("[")
        targets.append(((EXAMPLE / path).resolve(), extras.rstrip("]")))
    # ... the first gradverify at the repository root, the second this project with its tests.
    (root, root_extras), (project, project_extras) = targets
    assert root == EXAMPLE.parent.parent, root
    assert tomllib.loads((root / "pyproject.toml").read_text())["project"]["name"] == "gradverify"
    assert root_extras == ""
    assert project == EXAMPLE and project_extras == "test"
    example = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    assert "gradverify" in example["optional-dependencies"]["test"]
    # The runs come after both installs and are the ones the tests above make.
    assert commands[2:] == ["python -m pytest", "TWO_LAYER_BUG=1 python -m pytest"], commands
