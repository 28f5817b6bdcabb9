"""The README's Quick start and CI agree: .ci/run runs the README's test command exactly."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _quick_start_commands():
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Quick start\n(.*?)(?=^## )", text, re.S | re.M).group(1)
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_quick_start_has_two_commands_main_job_then_tests():
    main_job, tests = _quick_start_commands()
    assert "gradverify verify" in main_job
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command():
    """The last command of .ci/run is the README's test command, character for character."""
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert ci[-1] == _quick_start_commands()[1]


def test_the_readme_user_op_verifies_as_written(tmp_path):
    """The 'Verify your own ops' file, copied from the README, verifies through --module as the
    README says; with its backward broken, the same command fails and blames it."""
    import subprocess
    import sys

    text = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(# my_ops\.py\n.*?)```", text, re.S).group(1)
    command = re.search(r"`(gradverify verify --module my_ops\.py --ops my_sigmoid)`", text).group(1).split()
    gradverify_cli = [sys.executable, "-m", "gradverify", *command[1:], "--examples", "3", "--json", "run.json", "--report", "index.html"]
    (tmp_path / "my_ops.py").write_text(code)
    good = subprocess.run(gradverify_cli, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "my_sigmoid" in good.stdout
    (tmp_path / "my_ops.py").write_text(code.replace("s * (1 - s)", "s * (1 + s)"))
    bad = subprocess.run(gradverify_cli, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "backward wrong" in bad.stdout
