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
