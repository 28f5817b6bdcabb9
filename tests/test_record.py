"""The run record (gradverify._record): strict reading that names the file and the field,
round trips, atomic writes, output paths checked first, text made visible."""

import copy
import datetime
import json
import os
import re
import sys

import pytest

from gradverify import InvalidArgument, _record
from gradverify._record import (
    BIDI_CONTROLS,
    SCHEMA,
    check_output_path,
    git_commit,
    new_run,
    read_run,
    run_passed,
    validate,
    visible,
    write_atomic,
    write_run,
)

RESULT = {
    "passed": True,
    "blame": None,
    "max_rel_error": 2.5e-16,
    "function": "square_sum",
    "per_input": [{"name": "input 0", "worst": {"analytic": 2.0, "truth": 2.0}}],
    "structural": [],
    "reproduce": "gradverify.check_grad(...)",
}
OP = {
    "name": "relu",
    "family": "layer",
    "summary": "rectified linear unit",
    "examples": 3,
    "passed": True,
    "blame": None,
    "kinks": 1,
    "truth": {"elementwise": 3},
    "rel_analytic_numerical": [1e-10, 0.0, "nan"],
    "rel_analytic_truth": [0.0, 1e-16, 2e-16],
    "rel_numerical_truth": [1e-10, "inf", 0.0],
    "failure": None,
    "seconds": 0.25,
}
CHECK = {"result": RESULT, "reproduce": "python -m pytest tests/t.py::test_a", "backend": "numpy", "hypothesis": {"final": False}}
TEST = {"nodeid": "tests/t.py::test_a", "outcome": "passed", "duration": 0.5, "message": None, "checks": [CHECK]}
PROVENANCE = {"gradverify": "0.1.0", "backend": "numpy", "seed": 0}


def catalog_run():
    return new_run("catalog", PROVENANCE, ops=[OP], figures={"fd_steps": {"steps": [1e-3]}})


def pytest_run():
    return new_run("pytest", PROVENANCE, tests=[TEST, {**TEST, "nodeid": "tests/t.py::test_b", "outcome": "skipped", "message": "no GPU", "checks": []}])


# -- reading what is not a valid record ------------------------------------------------------
# (what to write, the field the message must name). Each starts from a valid run's JSON.


def _edit(run, change):
    run = copy.deepcopy(run)
    change(run)
    return json.dumps(run)


def _setter(*path, value):
    def change(run):
        target = run
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _deleter(*path):
    def change(run):
        target = run
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return change


MALFORMED = {
    # name: (kind of run, change, the field or what the message names)
    "a JSON array": ("catalog", lambda r: r.clear(), None),
    "no schema": ("catalog", _deleter("schema"), "its schema is None"),
    "an older schema": ("catalog", _setter("schema", value="gradverify-run/1"), "written by an older gradverify"),
    "another schema": ("catalog", _setter("schema", value="other/1"), "its schema is 'other/1'"),
    "a missing top-level key": ("catalog", _deleter("tests"), "the record lacks the key 'tests'"),
    "an unknown kind": ("catalog", _setter("kind", value="benchmark"), "kind is 'benchmark'; it must be one of 'catalog', 'pytest'"),
    "an unknown status": ("catalog", _setter("status", value="crashed"), "status is 'crashed'"),
    "passed as text": ("catalog", _setter("passed", value="yes"), "passed is 'yes' (a JSON string); it must be true or false"),
    "provenance as a list": ("catalog", _setter("provenance", value=[]), "provenance is [] (a JSON array); it must be an object"),
    "ops as an object": ("catalog", _setter("ops", value={}), "ops must be a list, not a JSON object"),
    "an op lacking a key": ("catalog", _deleter("ops", 0, "family"), "ops[0] lacks the key 'family'"),
    "examples as a boolean": ("catalog", _setter("ops", 0, "examples", value=True), "ops[0].examples is True (a JSON boolean); it must be an integer"),
    "examples as a float": ("catalog", _setter("ops", 0, "examples", value=3.0), "ops[0].examples is 3.0"),
    "an error that is not a number": ("catalog", _setter("ops", 0, "rel_analytic_truth", 1, value="NaN"), "ops[0].rel_analytic_truth[1] is 'NaN'"),
    "an unknown blame": ("catalog", _setter("ops", 0, "blame", value="both"), "ops[0].blame is 'both'; it must be one of 'analytic', 'numerical', null"),
    "a failure as text": ("catalog", _setter("ops", 0, "failure", value="boom"), "ops[0].failure is 'boom'; it must be one of an object, null"),
    "figures as a list": ("catalog", _setter("figures", value=[]), "figures is [] (a JSON array); it must be an object"),
    "a catalog run with tests": ("catalog", _setter("tests", value=[TEST]), "a catalog run has no tests, but 'tests' has 1"),
    "a test run with ops": ("pytest", _setter("ops", value=[OP]), "a test run has no catalog ops, but 'ops' has 1"),
    "an unknown outcome": ("pytest", _setter("tests", 0, "outcome", value="xfail"), "tests[0].outcome is 'xfail'"),
    "a duration as text": ("pytest", _setter("tests", 0, "duration", value="fast"), "tests[0].duration is 'fast' (a JSON string); it must be a number"),
    "a message as a number": ("pytest", _setter("tests", 1, "message", value=3), "tests[1].message is 3; it must be one of a string, null"),
    "a check without its result's error": ("pytest", _deleter("tests", 0, "checks", 0, "result", "max_rel_error"), "tests[0].checks[0].result lacks the key 'max_rel_error'"),
    "a check's structural findings as text": ("pytest", _setter("tests", 0, "checks", 0, "result", "structural", value="none"), "tests[0].checks[0].result.structural must be a list"),
    "a check without a reproduce line": ("pytest", _deleter("tests", 0, "checks", 0, "reproduce"), "tests[0].checks[0] lacks the key 'reproduce'"),
    "passed that the contents contradict": ("pytest", _setter("tests", 0, "outcome", value="failed"), "'passed' is True but its contents say False"),
    "an interrupted run that passed": ("catalog", _setter("status", value="interrupted"), "'passed' is True but its contents say False (status 'interrupted')"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_a_malformed_record_is_rejected_naming_the_file_and_the_field(name, tmp_path):
    kind, change, field = MALFORMED[name]
    run = catalog_run() if kind == "catalog" else pytest_run()
    path = tmp_path / "run.json"
    text = _edit(run, change)
    if name == "a JSON array":
        text = "[]"
    path.write_text(text)
    with pytest.raises(InvalidArgument) as info:
        read_run(path)
    message = str(info.value)
    assert message.startswith(repr(str(path))), message  # the file, first
    if field is not None:
        assert field in message, message
    assert "\n" not in message


FILE_ERRORS = {
    "missing": (None, "cannot read the run"),
    "a directory": ("dir", "is a directory; pass a run.json written by gradverify"),
    "not UTF-8": (b"\xff\xfe{}", "is not UTF-8 text"),
    "not JSON": (b"gradverify: FAILED", "is not JSON"),
    "cut short": (b'{"schema": "gradverify-run/2", "kind": "cat', "is not JSON"),
    "a NaN literal": (b'{"schema": "gradverify-run/2", "x": NaN}', "NaN is not JSON; gradverify writes it as the string 'nan'"),
    "an Infinity literal": (b'{"x": -Infinity}', "-Infinity is not JSON; gradverify writes it as the string '-inf'"),
    "nested too deeply": (b"[" * 200_000 + b"]" * 200_000, "nests too deeply"),
    "a string": (b'"gradverify-run/2"', "is a JSON string, not a gradverify-run/2 record"),
}


@pytest.mark.parametrize("name", FILE_ERRORS)
def test_a_file_that_is_no_record_is_rejected_naming_the_file(name, tmp_path):
    content, expected = FILE_ERRORS[name]
    path = tmp_path / "run.json"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(InvalidArgument) as info:
        read_run(path)
    assert str(path) in str(info.value) and expected in str(info.value), str(info.value)


def test_validate_names_its_source_and_rejects_a_non_object():
    with pytest.raises(InvalidArgument, match=r"^the run is a JSON array, not a gradverify-run/2 record"):
        validate([])
    with pytest.raises(InvalidArgument, match=r"^'x\.json': ops\[0\] lacks the key 'name'"):
        validate({**catalog_run(), "ops": [{}], "passed": False}, source="'x.json'")


# -- valid records ----------------------------------------------------------------------------


@pytest.mark.parametrize("make", [catalog_run, pytest_run])
def test_a_valid_record_round_trips(make, tmp_path):
    run = make()
    assert run["schema"] == SCHEMA and run["status"] == "complete" and run["passed"] is True
    path = write_run(run, tmp_path / "run.json")
    assert read_run(path) == run
    text = path.read_text()
    assert json.loads(text) == run and "NaN" not in text and "Infinity" not in text  # plain JSON
    if make is catalog_run:
        assert '"nan"' in text and '"inf"' in text  # as the strings jsonable writes


def test_new_run_makes_values_json_safe_and_computes_passed():
    run = new_run("catalog", {"seconds": float("inf"), "pair": (1, 2)}, ops=[{**OP, "seconds": float("nan")}])
    assert run["provenance"] == {"seconds": "inf", "pair": [1, 2]} and run["ops"][0]["seconds"] == "nan"
    failed = new_run("catalog", {}, ops=[{**OP, "passed": False, "blame": "analytic"}])
    assert failed["passed"] is False
    assert new_run("pytest", {}, tests=[{**TEST, "outcome": "error"}])["passed"] is False
    assert new_run("pytest", {}, tests=[{**TEST, "outcome": o} for o in ("passed", "skipped", "xfailed", "xpassed")])["passed"] is True
    interrupted = new_run("pytest", {}, tests=[TEST], interrupted=True)
    assert interrupted["status"] == "interrupted" and interrupted["passed"] is False and run_passed(interrupted) is False
    with pytest.raises(InvalidArgument, match="kind is 'tests'"):
        new_run("tests", {})


def test_number_reads_what_jsonable_wrote():
    assert [_record.number(v) for v in (None, 1, 2.5, "inf", "-inf")] == [None, 1.0, 2.5, float("inf"), float("-inf")]
    assert _record.number("nan") != _record.number("nan")  # NaN
    assert _record.jsonable([float("nan"), float("-inf"), (1, True), {"a": None}]) == ["nan", "-inf", [1, True], {"a": None}]


def test_git_commit_outside_a_checkout_is_none(tmp_path):
    assert git_commit(tmp_path) is None


def test_git_commit_reads_a_checkout_without_git(tmp_path):
    git = tmp_path / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs" / "heads" / "main").write_text("a" * 40 + "\n")
    assert git_commit(tmp_path / "sub" / "dir") == "a" * 40
    (git / "refs" / "heads" / "main").unlink()
    (git / "packed-refs").write_text(f"# pack-refs with: peeled\n{'b' * 40} refs/heads/main\n")
    assert git_commit(tmp_path) == "b" * 40


def test_provenance_records_the_libraries_already_imported():
    started = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    prov = _record.provenance(backend="numpy", device="cpu", seed=3, seconds=1.23456, started=started, command="gradverify verify", profile="ci")
    assert prov["date"] == "2026-01-02T03:04:05+00:00" and prov["seconds"] == 1.235 and prov["profile"] == "ci"
    assert set(prov["versions"]) <= {"gradverify", *(m for m in ("numpy", "mpmath", "hypothesis", "pytest", "array_api_compat", "array_api_strict", "cupy", "gmpy2") if m in sys.modules)}
    assert "pytest" in prov["versions"]  # imported here: it runs this test


# -- writing ---------------------------------------------------------------------------------


def _half_then(error):
    """An os.fdopen whose handle writes half of the text, then raises ``error``."""
    real = os.fdopen

    def fdopen(fd, *args, **kwargs):
        handle = real(fd, *args, **kwargs)
        write = handle.write

        def broken(text):
            write(text[: len(text) // 2])
            raise error

        handle.write = broken
        return handle

    return fdopen


def test_write_atomic_leaves_the_file_whole_and_no_temporary_file(tmp_path, monkeypatch):
    path = write_atomic(tmp_path / "out" / "run.json", "first\n")
    assert path.read_text() == "first\n" and sorted(p.name for p in path.parent.iterdir()) == ["run.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    for error in (OSError(28, "No space left on device"), KeyboardInterrupt()):
        monkeypatch.setattr(os, "fdopen", _half_then(error))
        with pytest.raises(type(error)):
            write_atomic(path, "second, and much longer than the first\n" * 100)
        monkeypatch.undo()
        assert path.read_text() == "first\n"  # never a partial file
        assert sorted(p.name for p in path.parent.iterdir()) == ["run.json"]  # nor a temporary one
    write_atomic(path, "second\n")
    assert path.read_text() == "second\n" and sorted(p.name for p in path.parent.iterdir()) == ["run.json"]


def test_write_run_validates_before_writing(tmp_path):
    path = tmp_path / "run.json"
    with pytest.raises(InvalidArgument, match="'passed' is False but its contents say True"):
        write_run({**catalog_run(), "passed": False}, path)
    assert not path.exists()


def test_check_output_path(tmp_path):
    fine = check_output_path(tmp_path / "new" / "deeper" / "index.html", option="--report")
    assert fine == tmp_path / "new" / "deeper" / "index.html"
    assert fine.parent.is_dir() and list(fine.parent.iterdir()) == []  # the probe is gone
    with pytest.raises(InvalidArgument, match=re.escape(f"--report {str(tmp_path)!r} is a directory; give a file path, e.g. {str(tmp_path / 'index.html')!r}")):
        check_output_path(tmp_path, option="--report")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(InvalidArgument, match=r"--gradverify-json '.*a-file/run\.json' cannot be written \(.*\); choose a writable path"):
        check_output_path(blocker / "run.json", option="--gradverify-json")


def test_check_output_path_unwritable_directory(tmp_path):
    """A directory the process may not create files in: read-only by mode, or (as root, who
    ignores modes) procfs, where nobody creates files."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        with pytest.raises(InvalidArgument, match="--json '/proc/self/run.json' cannot be written"):
            check_output_path("/proc/self/run.json", option="--json")
        return
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(InvalidArgument, match="cannot be written"):
            check_output_path(locked / "run.json", option="--json")
    finally:
        locked.chmod(0o755)


# -- text shown to people --------------------------------------------------------------------


def test_visible_shows_bidirectional_controls_and_nothing_else():
    assert visible("test_user_\u202enimda") == "test_user_<U+202E>nimda"
    assert visible("".join(sorted(BIDI_CONTROLS))) == "".join(f"<U+{ord(c):04X}>" for c in sorted(BIDI_CONTROLS))
    assert len(BIDI_CONTROLS) == 12  # LRM, RLM, ALM, the embeddings, overrides and isolates
    plain = "λ₁ ≤ ε^(1/3) — naïve 数值 \u200d emoji 👍🏽"  # other non-ASCII (a zero-width joiner too) stays
    assert visible(plain) == plain
    assert visible(3.5) == "3.5" and visible(None) == "None"
    assert visible(visible("\u2067x\u2069")) == "<U+2067>x<U+2069>"  # idempotent
