"""The run record: the one JSON document a run leaves, its schema, provenance, reading and writing.

``gradverify verify`` (a catalog run) and the pytest plugin (a test run) both write one; the
HTML report renders one, now or later, from the document alone. Schema
``gradverify-run/2``::

    {"schema": "gradverify-run/2",
     "kind": "catalog" | "pytest",
     "status": "complete" | "interrupted",   # interrupted: the run stopped early (Ctrl-C);
                                             # what it holds is partial and never "passed"
     "passed": bool,                         # must agree with the contents, see run_passed()
     "provenance": {...},                    # see provenance()
     "ops": [OP],                            # catalog runs; [] in a test run
     "tests": [TEST],                        # test runs; [] in a catalog run
     "figures": {...},                       # a catalog run's demonstrations; may be {}
     "study"?: STUDY}                        # optional: the training study (gradverify.study)

    OP    = {"name", "family", "summary", "examples", "passed", "blame", "kinks", "truth",
             "rel_analytic_numerical", "rel_analytic_truth", "rel_numerical_truth",
             "failure", "seconds", "warned"?: int, "warnings"?: [str],
             ...}                           # gradverify._runner.OpOutcome.to_dict()
    TEST  = {"nodeid": str, "outcome": one of OUTCOMES, "duration": float,
             "message": str | None,         # pytest's one-line reason (failures, skips)
             "checks": [CHECK], ...}
    STUDY = {"passed": bool,                 # False fails the run (an end-to-end check or a
             "problems": [str], ...}         # replay failed); gradverify.study.run_study()
    CHECK = {"result": VerificationResult.to_dict(), "reproduce": str,
             "inputs"?: list | None, "backend"?: str | None,
             "hypothesis"?: {"final": bool, "reproduce_failure"?, "falsifying_example"?, "seed"?}, ...}

Floats that JSON cannot hold (NaN, infinities) are the strings ``"nan"``, ``"inf"``,
``"-inf"``. Entries may carry further keys; the ones above are required and typed, and
:func:`validate` checks every one of them, so that a renderer never meets a surprise.

This module imports neither NumPy nor Hypothesis: the pytest plugin uses it at start-up, and
re-rendering a saved run needs nothing else.
"""

import contextlib
import datetime
import json
import math
import os
import platform
import sys
import tempfile
from pathlib import Path

from gradverify._errors import InvalidArgument

SCHEMA = "gradverify-run/2"
KINDS = ("catalog", "pytest")
STATUSES = ("complete", "interrupted")
# A test's outcome, as pytest's summary counts it.
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
FAILING_OUTCOMES = ("failed", "error")
# The three comparisons an op keeps per example (OP fields), with what each compares.
COMPARISONS = {
    "rel_analytic_numerical": "analytic ~ finite difference",
    "rel_analytic_truth": "analytic ~ truth",
    "rel_numerical_truth": "finite difference ~ truth",
}
KEYS = ("schema", "kind", "status", "passed", "provenance", "ops", "tests", "figures")
NONFINITE = ("nan", "inf", "-inf")

# Characters that reorder the text around them (Trojan Source, CVE-2021-42574): a name must
# read on the page as it is in the file.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def new_run(kind, provenance, *, ops=(), tests=(), figures=None, interrupted=False, study=None):
    """A validated run record; ``passed`` is computed from the contents (see :func:`run_passed`).

    Examples
    --------
    >>> run = new_run("pytest", {"gradverify": "0.1.0"})
    >>> run["schema"], run["status"], run["passed"]
    ('gradverify-run/2', 'complete', True)
    >>> new_run("pytest", {}, interrupted=True)["passed"]
    False
    """
    run = {
        "schema": SCHEMA,
        "kind": kind,
        "status": "interrupted" if interrupted else "complete",
        "passed": False,
        "provenance": dict(provenance),
        "ops": list(ops),
        "tests": list(tests),
        "figures": dict(figures or {}),
    }
    if study is not None:  # the key is left out when no study ran
        run["study"] = dict(study)
    run["passed"] = run_passed(run)
    run = jsonable(run)
    validate(run)
    return run


def run_passed(run):
    """True when the run completed and nothing in it failed: every op passed (a catalog run),
    no test failed or errored (a test run; pytest's own verdict), and the training study,
    where the run has one, passed."""
    if run["status"] != "complete":
        return False
    study = run.get("study")
    if isinstance(study, dict) and study.get("passed") is not True:
        return False
    return all(op["passed"] for op in run["ops"]) and all(t["outcome"] not in FAILING_OUTCOMES for t in run["tests"])


def provenance(*, backend, device, seed, seconds, started, command, source=None, **extra):
    """Where a run came from, enough to trust it and to run it again.

    ``command`` is how to run it again (a shell command line); ``source`` a directory whose
    git commit is recorded (default: gradverify's own source). The versions are those of
    the libraries the run imported; nothing is imported to ask.
    """
    import gradverify

    versions = {"gradverify": gradverify.__version__}
    for name in ("numpy", "mpmath", "hypothesis", "pytest", "array_api_compat", "array_api_strict", "cupy", "gmpy2"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = str(getattr(module, "__version__", "unknown"))
    return {
        "gradverify": gradverify.__version__,
        "git_commit": git_commit(source if source is not None else Path(gradverify.__file__).parent),
        "backend": backend,
        "device": device,
        "seed": seed,
        "date": started.astimezone(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(float(seconds), 3),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "command": command,
        "versions": versions,
        **extra,
    }


def git_commit(directory):
    """The commit checked out in ``directory`` or a parent, read from ``.git`` (no git process), or None."""
    try:
        for candidate in (Path(directory).resolve(), *Path(directory).resolve().parents):
            git = candidate / ".git"
            if git.is_file():  # a worktree or submodule: "gitdir: PATH"
                git = (candidate / git.read_text().split(":", 1)[1].strip()).resolve()
            if git.is_dir():
                break
        else:
            return None
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head.split(":", 1)[1].strip()
        for gitdir in (git, _common_dir(git)):
            if (gitdir / ref).is_file():
                return (gitdir / ref).read_text().strip() or None
            packed = gitdir / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split()[0]
    except (OSError, IndexError):
        pass
    return None


def _common_dir(git):
    common = git / "commondir"
    return (git / common.read_text().strip()).resolve() if common.is_file() else git


# -- JSON ---------------------------------------------------------------------------------------


def jsonable(obj):
    """Plain JSON types: NaN and infinities as strings, tuples as lists, array scalars as numbers."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else repr(float(obj))
    item = getattr(obj, "item", None)  # NumPy and CuPy scalars
    if callable(item):
        return jsonable(item())
    return str(obj)


def to_json(run):
    """The run as JSON text."""
    return json.dumps(jsonable(run), indent=1, allow_nan=False) + "\n"


def number(value):
    """A float from a record's number (NaN and infinities travel as strings); None stays None."""
    return None if value is None else float(value)


# -- writing --------------------------------------------------------------------------------


def check_output_path(path, *, option):
    """Make sure a file can be written at ``path`` before a run spends time: its directory
    exists or can be made, is writable, and ``path`` is not a directory.

    Raises :class:`InvalidArgument` naming ``option`` (``--report``, say) and the fix.
    """
    path = Path(path)
    if path.is_dir():
        raise InvalidArgument(f"{option} {str(path)!r} is a directory; give a file path, e.g. {str(path / 'index.html')!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe"):
            pass
    except OSError as exc:
        raise InvalidArgument(f"{option} {str(path)!r} cannot be written ({exc.strerror or exc}); choose a writable path") from None
    return path


def write_atomic(path, text):
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename,
    so that a reader (or an interrupted writer) never leaves a half-written file; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide a report from its readers
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)  # still open when fdopen itself failed; already closed otherwise
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path


def _process_umask():
    umask = os.umask(0o022)  # the only way to read it is to set it: once, at import
    os.umask(umask)
    return umask


_UMASK = _process_umask()


def write_run(run, path):
    """Validate ``run`` and write it as JSON, atomically; return the path."""
    validate(run)
    return write_atomic(path, to_json(run))


# -- reading ------------------------------------------------------------------------------------


def read_run(path):
    """Read and validate a run record written by :func:`write_run`.

    Raises
    ------
    InvalidArgument
        When the file is missing or unreadable, is not JSON, or is not a valid
        ``gradverify-run/2`` record; the message names the file and the first bad field.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except IsADirectoryError:
        raise InvalidArgument(f"{str(path)!r} is a directory; pass a run.json written by gradverify") from None
    except OSError as exc:
        raise InvalidArgument(f"cannot read the run {str(path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{str(path)!r} is not UTF-8 text ({exc.reason}); pass a run.json written by gradverify") from None
    try:
        run = json.loads(text, parse_constant=_reject_constant)
    except (json.JSONDecodeError, ValueError) as exc:
        raise InvalidArgument(f"{str(path)!r} is not JSON ({exc}); pass a run.json written by gradverify") from None
    except RecursionError:
        raise InvalidArgument(f"{str(path)!r} nests too deeply to be a run record") from None
    validate(run, source=repr(str(path)))
    return run


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON; gradverify writes it as the string {name.lower().replace('infinity', 'inf')!r}")


def validate(run, *, source="the run"):
    """Raise :class:`InvalidArgument` unless ``run`` is a well-formed ``gradverify-run/2`` record
    whose ``passed`` agrees with its contents."""
    if not isinstance(run, dict):
        raise InvalidArgument(f"{source} is a JSON {_kind(run)}, not a {SCHEMA} record; pass a run.json written by gradverify")
    schema = run.get("schema")
    if schema != SCHEMA:
        hint = " (written by an older gradverify: run it again to write the current schema)" if isinstance(schema, str) and schema.startswith("gradverify-run/") else ""
        raise InvalidArgument(f"{source} is not a {SCHEMA} record (its schema is {schema!r}){hint}; pass a run.json written by gradverify")
    _check(run, _RUN, source, "")
    if run["kind"] == "catalog" and run["tests"]:
        raise InvalidArgument(f"{source}: a catalog run has no tests, but 'tests' has {len(run['tests'])}")
    if run["kind"] == "pytest" and run["ops"]:
        raise InvalidArgument(f"{source}: a test run has no catalog ops, but 'ops' has {len(run['ops'])}")
    expected = run_passed(run)
    if run["passed"] is not expected:
        raise InvalidArgument(
            f"{source}: 'passed' is {run['passed']!r} but its contents say {expected!r} "
            f"(status {run['status']!r}); the file was edited or is damaged"
        )


# A tiny structural schema: a Python type (bool is not a number here), a tuple of choices
# (alternatives), a one-element list [SPEC] (a list of SPEC), a dict (its keys, required
# unless they end in "?"), or one of the named kinds below.
_NUMBER = "number"  # int, float or one of NONFINITE
_STR_OR_NONE = (str, None)
_HYPOTHESIS = {"final": bool, "reproduce_failure?": str, "falsifying_example?": str, "seed?": _STR_OR_NONE}
_CHECK = {
    "result": {"passed": bool, "blame": ("analytic", "numerical", None), "max_rel_error": _NUMBER, "function": _STR_OR_NONE, "per_input": [dict], "structural": [dict]},
    "reproduce": str,
    "inputs?": (list, None),  # a failing check's inputs, or their shapes when large
    "hypothesis?": _HYPOTHESIS,  # inside a @given test
    "backend?": _STR_OR_NONE,
}
_TEST = {"nodeid": str, "outcome": OUTCOMES, "duration": _NUMBER, "message": _STR_OR_NONE, "checks": [_CHECK]}
_OP = {
    "name": str,
    "family": str,
    "summary": str,
    "examples": int,
    "passed": bool,
    "blame": ("analytic", "numerical", None),
    "kinks": int,
    "truth": dict,
    **dict.fromkeys(COMPARISONS, [_NUMBER]),
    "failure": (dict, None),
    "seconds": _NUMBER,
    "warned?": int,  # examples whose check warned (a vacuous check, a mutant it would pass)
    "warnings?": [str],  # the first few of those warnings
}
_STUDY = {"passed": bool, "problems": [str]}
_RUN = {"kind": KINDS, "status": STATUSES, "passed": bool, "provenance": dict, "ops": [_OP], "tests": [_TEST], "figures": dict, "study?": _STUDY}


def _check(value, spec, source, where):
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            _bad(source, where, f"must be an object, not a JSON {_kind(value)}")
        for key, inner in spec.items():
            optional = key.endswith("?")
            key = key.rstrip("?")
            if key not in value:
                if optional:
                    continue
                _bad(source, where, f"lacks the key {key!r}")
            _check(value[key], inner, source, f"{where}.{key}" if where else key)
    elif isinstance(spec, list):
        if not isinstance(value, list):
            _bad(source, where, f"must be a list, not a JSON {_kind(value)}")
        for i, item in enumerate(value):
            _check(item, spec[0], source, f"{where}[{i}]")
    elif isinstance(spec, tuple):
        if not any(_matches(value, s) for s in spec):
            choices = ", ".join("null" if s is None else _describe(s) if isinstance(s, type) else repr(s) for s in spec)
            _bad(source, where, f"is {value!r}; it must be one of {choices}")
    elif not _matches(value, spec):
        _bad(source, where, f"is {value!r} (a JSON {_kind(value)}); it must be {_describe(spec)}")


def _matches(value, spec):
    if spec is None:
        return value is None
    if spec == _NUMBER:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)) or value in NONFINITE
    if isinstance(spec, type):
        if spec is int:
            return isinstance(value, int) and not isinstance(value, bool)
        if isinstance(value, dict) and spec is dict:
            return True
        return isinstance(value, spec) and not (spec is not bool and isinstance(value, bool))
    if isinstance(spec, (dict, list)):
        try:
            _check(value, spec, "", "")
        except InvalidArgument:
            return False
        return True
    return value == spec and type(value) is type(spec)


def _describe(spec):
    return {bool: "true or false", int: "an integer", str: "a string", dict: "an object", _NUMBER: 'a number (or "nan", "inf", "-inf")'}.get(spec, str(spec))


def _kind(value):
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def _bad(source, where, what):
    raise InvalidArgument(f"{source}: {where or 'the record'} {what}; pass a run.json written by gradverify")


# -- text shown to people ------------------------------------------------------------------------


def visible(text):
    """``text`` with bidirectional control characters shown as ``<U+202E>``: a name in a report
    or a terminal then reads as it is, never reordered."""
    text = str(text)
    if not BIDI_CONTROLS.intersection(text):
        return text
    return "".join(f"<U+{ord(c):04X}>" if c in BIDI_CONTROLS else c for c in text)
