"""The gradverify pytest plugin (registered through the ``pytest11`` entry point).

Fixtures
--------
``gradcheck``
    ``gradcheck(fn, vjp, *inputs, **options)`` checks like :func:`gradverify.assert_vjp`;
    ``gradcheck.layer(forward, backward, *inputs)`` like ``assert_layer`` and
    ``gradcheck.grad(f, grad_f, *inputs)`` like ``assert_grad``. A failing check fails the
    test with :class:`gradverify.GradientMismatch`, whose message is the readable report and
    whose note ``gradverify: reproduce: ...`` is a command line that runs the test again.
    Every check is recorded with its test. The fixture is session-scoped, so it works inside ``@given`` tests;
    inside one, each check also calls :func:`gradverify.strategies.target_error`, so that
    Hypothesis' targeted phase drifts toward inputs where the gradient is worst.
``xp``
    The array namespace, parametrized over the selected backends (ids ``numpy``,
    ``strict``, ``cupy``; the ``cupy`` parameter carries the ``gpu`` marker), session-scoped.

Settings
--------
Each has a command-line option and an ini setting of the same name (``--gradverify-dps`` and
``gradverify_dps``); the command line wins. Backends may also come from the environment
variable ``GRADVERIFY_BACKENDS`` (between the command line and the ini file). The check
options among them (``dps``, ``mode``, ``rtol``, ``truth``, ``time_budget``) are those of
:data:`gradverify._options.TEXT_SETTINGS`, parsed there; a bad value is a usage error.

========================  ===============================================================
``backends``              comma-separated: ``numpy`` (default), ``strict``, ``cupy``;
                          one that is not usable here is a usage error, never a skip
``report``                write the HTML report of the run there
``json``                  write the run record (``gradverify-run/2``, kind ``pytest``) there
``dps``                   digits of the high-precision truth
``mode``                  ``auto``, ``full`` or ``directional``
``rtol``                  relative tolerance of every check
``truth``                 ``auto``, ``elementwise``, ``directional`` or ``off``
``time_budget``           seconds each check may run (a positive number, or ``none`` for
                          no bound); past it the check stops with
                          :class:`gradverify.CheckBudgetExceeded`
========================  ===============================================================

``@pytest.mark.gradverify(**options)`` sets options of :func:`gradverify.check_vjp` for one
test, class or module, plus ``cotangent`` and ``target`` (``target=False`` turns the
targeted search off); they apply over the session settings and under the keyword arguments
of a call. Each layer is validated as a :class:`gradverify.CheckOptions`, so that a bad
option is an :class:`gradverify.InvalidArgument` naming the marker and the option.

The run record
--------------
The JSON file (and the HTML page rendered from it) holds every test's outcome as pytest's
summary counts it (passed, failed, error, skipped, xfailed, xpassed: a test that passes and
then errors in teardown counts twice, as there), its duration, a one-line message and its
gradient checks, sorted by node id. A failing check's ``reproduce`` is a command line that
runs as printed, from the directory pytest ran in; inside ``@given`` the failing check is
the shrunk example's, with its inputs, Hypothesis' falsifying example and, where Hypothesis
can give one, its ``@reproduce_failure(...)`` decorator. A run stopped with Ctrl-C is
recorded as ``interrupted`` (never passed). The output paths are checked before any test
runs; both files are written atomically.

Hypothesis
----------
A check takes longer than Hypothesis' default deadline (200 ms) allows. For ``@given`` tests
that use ``gradcheck`` and whose deadline is Hypothesis' default (not chosen in
``@settings`` or a profile), the plugin turns the deadline off and says so in its summary.

Under pytest-xdist each check travels to the controller on its test's report (the JSON-safe
attribute ``gradverify_checks``), and only the controller writes files.
"""

import contextlib
import datetime
import os
import shlex
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest

from gradverify import _record
from gradverify._errors import InvalidArgument
from gradverify._options import BACKENDS, DEFAULT_BACKEND, OPTION_NAMES, TEXT_SETTINGS, CheckOptions, parse_backends, parse_setting

__all__ = ["GradCheck", "SETTINGS", "gradcheck"]

ENV_BACKENDS = "GRADVERIFY_BACKENDS"
# The plugin's own settings (metavar, help); the check options a session may set come from
# gradverify._options.TEXT_SETTINGS.
_OWN_SETTINGS = {
    "backends": (
        "NAMES",
        f"comma-separated array backends the xp fixture runs over: {', '.join(BACKENDS)} "
        f"(default {DEFAULT_BACKEND}; also env {ENV_BACKENDS}). One that is not usable is an error.",
    ),
    "report": ("PATH", "write an HTML report of the run (every test's outcome and gradient checks) to this path"),
    "json": ("PATH", f"write the run record as JSON (schema {_record.SCHEMA}) to this path"),
}
# Every setting: name -> (metavar, help).
SETTINGS = {**_OWN_SETTINGS, **{name: (s.metavar, s.help) for name, s in TEXT_SETTINGS.items()}}
# What a marker or a call may give besides the CheckOptions: check_vjp's cotangent, and
# whether the check steers Hypothesis' targeted phase.
EXTRAS = ("cotangent", "target")
# The most failing checks the terminal summary lists (the record has them all).
SHOWN_FAILURES = 10
WIDTH = 80
NBSP = "\u00a0"

_STATE = pytest.StashKey["_Session"]()
_CHECKS = pytest.StashKey[list]()
_DEADLINE_OFF = pytest.StashKey[float]()


# -- settings --------------------------------------------------------------------------------


def pytest_addoption(parser):
    group = parser.getgroup("gradverify", "gradverify: gradient checks")
    for name, (metavar, text) in SETTINGS.items():
        group.addoption(_flag(name), dest=f"gradverify_{name}", default=None, metavar=metavar, help=text)
        parser.addini(f"gradverify_{name}", text, default="")


def _flag(name):
    return f"--gradverify-{name.replace('_', '-')}"


def _setting(config, name):
    """``(text, source)`` of a setting: the command line, then the environment (backends), then the ini file."""
    value = config.getoption(f"gradverify_{name}")
    if value is not None:
        return str(value).strip(), _flag(name)
    if name == "backends" and os.environ.get(ENV_BACKENDS, "").strip():
        return os.environ[ENV_BACKENDS].strip(), ENV_BACKENDS
    value = config.getini(f"gradverify_{name}")
    if isinstance(value, str) and value.strip():
        return value.strip(), f"ini setting gradverify_{name}"
    return None, None


def _session_settings(config):
    """The check options set for the whole session, parsed: ``{name: value}`` of those set."""
    values = {}
    for name in TEXT_SETTINGS:
        text, source = _setting(config, name)
        if text is not None:
            try:
                values[name] = parse_setting(name, text, source=source)
            except InvalidArgument as exc:
                raise pytest.UsageError(str(exc)) from None
    return values


def _backends(config):
    """``(names, explicit)``: the selected backends, and whether anyone chose them."""
    text, source = _setting(config, "backends")
    if text is None:
        return [DEFAULT_BACKEND], False
    try:
        return parse_backends(text, source=source), True
    except InvalidArgument as exc:
        raise pytest.UsageError(str(exc)) from None


def _path(config, name):
    """An output path, checked now (before any test runs), or None."""
    text, source = _setting(config, name)
    if text is None:
        return None
    base = config.invocation_params.dir if source.startswith("--") else (config.inipath.parent if config.inipath else config.rootpath)
    try:
        return _record.check_output_path(Path(base, text), option=source)
    except InvalidArgument as exc:
        raise pytest.UsageError(str(exc)) from None


# -- configuration ---------------------------------------------------------------------------


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "gradverify(**options): gradverify check options for this test, class or module (any option of "
        "gradverify.check_vjp, e.g. rtol=1e-5, truth='off'; target=False stops the targeted search)",
    )
    config.addinivalue_line("markers", "gpu: needs CuPy and a CUDA device (the xp fixture's cupy parameter)")
    state = _Session(config)
    config.stash[_STATE] = state
    config.pluginmanager.register(state, "gradverify-session")
    config.pluginmanager.register(_xp_plugin(state.backend_names), "gradverify-xp")


def _xp_plugin(names):
    params = [pytest.param(name, id=name, marks=[pytest.mark.gpu] if name == "cupy" else []) for name in names]

    @pytest.fixture(scope="session", params=params)
    def xp(request):
        """The array namespace of one backend chosen with --gradverify-backends (ids numpy, strict, cupy)."""
        return request.config.stash[_STATE].namespace(request.param)

    module = types.ModuleType("gradverify.pytest_plugin.xp")
    module.xp = xp
    return module


@pytest.fixture(scope="session")
def gradcheck(request):
    """Check a hand-written gradient and record the check: ``gradcheck(fn, vjp, *inputs, **options)``.

    Also ``gradcheck.layer(forward, backward, *inputs)`` and ``gradcheck.grad(f, grad_f,
    *inputs)``. Raises gradverify.GradientMismatch (the readable report) when the gradient
    is wrong; returns the VerificationResult otherwise. Session-scoped: usable in @given tests.
    """
    return request.config.stash[_STATE].gradcheck


class GradCheck:
    """The ``gradcheck`` fixture: gradverify's ``assert_*`` helpers, recording each check for the test running."""

    def __init__(self, session):
        self._session = session

    def __repr__(self):
        return "<gradverify gradcheck fixture>"

    def __call__(self, fn, vjp, *inputs, **options):
        """Like :func:`gradverify.assert_vjp`: ``vjp(v, *inputs)`` returns one gradient per input."""
        __tracebackhide__ = True
        return self._session.check("check_vjp", (fn, vjp), inputs, options)

    def layer(self, forward, backward, *inputs, **options):
        """Like :func:`gradverify.assert_layer`: ``out, cache = forward(*inputs)``, ``grads = backward(dout, cache)``."""
        __tracebackhide__ = True
        return self._session.check("check_layer", (forward, backward), inputs, options)

    def grad(self, f, grad_f, *inputs, **options):
        """Like :func:`gradverify.assert_grad` for a scalar-valued ``f``."""
        __tracebackhide__ = True
        return self._session.check("check_grad", (f, grad_f), inputs, options)


class _Session:
    """The plugin's state for one pytest session, and its hooks."""

    def __init__(self, config):
        self.config = config
        self.is_worker = hasattr(config, "workerinput")
        self.settings = _session_settings(config)
        self.options = CheckOptions(**self.settings)
        self.backend_names, explicit = _backends(config)
        self.json_path = self.report_path = None
        if not self.is_worker:
            self.json_path = _path(config, "json")
            self.report_path = _path(config, "report")
        self.gradcheck = GradCheck(self)
        self.item = None
        self.tests = {}  # nodeid -> _TestLog (the controller's)
        self.deadline_off = {}  # nodeid -> the deadline (ms) turned off
        self.written = []
        self.write_errors = []
        self.interrupted = False
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self.clock = time.perf_counter()
        self._namespaces = {}
        if explicit:
            # Asked for by name: load now, so that an unusable backend stops the run before
            # any test, instead of every test that needs it erroring (or skipping) one by one.
            for name in self.backend_names:
                self.namespace(name)

    def namespace(self, name):
        if name not in self._namespaces:
            from gradverify._backend import load_backend

            try:
                self._namespaces[name] = load_backend(name)
            except InvalidArgument as exc:
                raise pytest.UsageError(f"gradverify backend {name!r}: {exc}") from exc
        return self._namespaces[name]

    # -- the checks ------------------------------------------------------------------------

    def check(self, which, functions, inputs, call_options):
        __tracebackhide__ = True
        import gradverify

        item = self.item
        options, extras = self._options_for(item, call_options)
        kwargs = options.as_kwargs()
        if kwargs["name"] is None:
            del kwargs["name"]  # check_layer and check_grad name the check after the user's function
        if extras.get("cotangent") is not None:
            kwargs["cotangent"] = extras["cotangent"]
        context = None
        if "hypothesis" in sys.modules:
            from gradverify import _hypothesis_adapter as adapter

            context = adapter.build_context()
        # Everything, the raise included, with the explain tracer paused: lines of this
        # plugin would otherwise be "explained" as run only by failing examples.
        with _explain_tracer_paused(context):
            result = getattr(gradverify, which)(*functions, *inputs, **kwargs)
            record = self._keep(item, result, inputs, context)
            if context is not None and extras.get("target", True):
                from gradverify.strategies import target_error

                target_error(result)
            if not result.passed:
                exc = gradverify.GradientMismatch(result)
                if record is not None:
                    _add_note(exc, f"gradverify: reproduce: {record['reproduce']}")
                    if "hypothesis" in record:
                        _add_note(exc, _hypothesis_hint(record["hypothesis"]))
                raise exc
        return result

    def _options_for(self, item, call_options):
        """``(CheckOptions, extras)`` of a call: the session's, under each marker (the
        farthest first), under the call's keywords; each layer validated."""
        options, extras = self.options, {}
        marks = list(item.iter_markers_with_node("gradverify")) if item is not None else []
        for node, mark in reversed(marks):  # the closest (the test's own) last, so that it wins
            where = f"@pytest.mark.gradverify on {_record.visible(node.nodeid) or 'the root'}"
            if mark.args:
                raise InvalidArgument(f"{where} takes keyword options only (e.g. rtol=1e-5), got positional {mark.args!r}")
            options = _layer(options, extras, mark.kwargs, where)
        options = _layer(options, extras, call_options, "gradcheck(...)")
        return options, extras

    def _keep(self, item, result, inputs, context):
        """Keep the check with its test; None outside a test, and for a failing example that
        Hypothesis is still searching or shrinking (its shrunk example is replayed, and
        recorded, at the end)."""
        if item is None:
            return None
        final = False
        if context is not None:
            from gradverify import _hypothesis_adapter as adapter

            final = adapter.is_final(context)
        if context is not None and not result.passed and not final:
            return None
        backend, device = _backend_of(inputs)
        record = {"result": result.to_dict(), "reproduce": self._reproduce(item), "backend": backend, "device": device}
        if not result.passed:
            record["inputs"] = _inputs_record(inputs)
        if context is not None:
            record["hypothesis"] = {"final": final}
            if final and not result.passed:
                try:
                    blob = adapter.reproduce_failure(context)
                except Exception:  # a private API of Hypothesis: tests/test_plugin.py says when it changed
                    blob = None
                if blob:
                    record["hypothesis"]["reproduce_failure"] = blob
        item.stash.setdefault(_CHECKS, []).append(record)
        return record

    def _reproduce(self, item):
        """A command line that runs ``item`` again as it ran here, from the directory pytest ran in."""
        config = self.config
        args = ["python", "-m", "pytest", item.nodeid]
        backend = getattr(getattr(item, "callspec", None), "params", {}).get("xp")
        if backend in BACKENDS:  # the xp fixture's parameter: its id needs that backend selected
            args.append(f"{_flag('backends')}={backend}")
        for name in TEXT_SETTINGS:
            text, _ = _setting(config, name)
            if text is not None:
                args.append(f"{_flag(name)}={text}")
        for option, flag in (("hypothesis_profile", "--hypothesis-profile"), ("hypothesis_seed", "--hypothesis-seed")):
            value = config.getoption(option, None)
            if value is not None:
                args.append(f"{flag}={value}")
        command = shlex.join(args)
        root = Path(config.rootpath)
        if Path(config.invocation_params.dir).resolve() != root.resolve():
            command = f"cd {shlex.quote(str(root))} && {command}"  # node ids are relative to the rootdir
        return command

    # -- hooks: collection (every process that collects) ---------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session, config, items):
        """Turn Hypothesis' default deadline off for ``@given`` tests that use ``gradcheck``."""
        if "hypothesis" not in sys.modules:
            return
        from gradverify import _hypothesis_adapter as adapter

        turned = {}
        for item in items:
            function = getattr(item, "function", None)
            if function is None or "gradcheck" not in getattr(item, "fixturenames", ()) or not adapter.is_given_test(function):
                continue
            if function not in turned:
                try:
                    settings = adapter.settings_of(function)
                    if adapter.deadline_is_hypothesis_default(settings):
                        adapter.turn_deadline_off(function)
                        turned[function] = settings.deadline.total_seconds() * 1000
                    else:
                        turned[function] = None  # the user's deadline (or none): theirs to keep
                except Exception:  # Hypothesis changed (tests/test_plugin.py says how): leave the test alone
                    turned[function] = None
            if turned[function] is not None:
                item.stash[_DEADLINE_OFF] = turned[function]

    # -- hooks: running (every process that runs tests) -----------------------------------------

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        self.item = item
        try:
            yield
        finally:
            self.item = None

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if call.when == "setup" and _DEADLINE_OFF in item.stash:
            report.gradverify_deadline_off = item.stash[_DEADLINE_OFF]
        records = item.stash.get(_CHECKS, None)
        if not records:
            return
        item.stash[_CHECKS] = []
        if call.when == "call" and report.failed and any("hypothesis" in r for r in records):
            _add_hypothesis_failure(call, records)
        report.gradverify_checks = records

    # -- hooks: the controller (the only process that counts and writes) ----------------------------

    def pytest_collectreport(self, report):
        if self.is_worker or report.passed:
            return
        outcome = "error" if report.failed else "skipped"  # as pytest's terminal summary counts them
        self._log(report.nodeid).add(report, outcome)

    def pytest_runtest_logreport(self, report):
        if self.is_worker:
            return
        log = self._log(report.nodeid)
        log.checks.extend(getattr(report, "gradverify_checks", None) or ())
        deadline = getattr(report, "gradverify_deadline_off", None)
        if deadline:
            self.deadline_off[report.nodeid] = deadline
        category = self.config.hook.pytest_report_teststatus(report=report, config=self.config)[0]
        log.add(report, category if category in _record.OUTCOMES else None)

    def _log(self, nodeid):
        if nodeid not in self.tests:
            self.tests[nodeid] = _TestLog(nodeid)
        return self.tests[nodeid]

    def pytest_keyboard_interrupt(self, excinfo):
        self.interrupted = True

    def pytest_report_header(self, config):
        text, source = _setting(config, "backends")
        if source is None:
            origin = "default"
        elif source == ENV_BACKENDS:
            origin = f"{source}={text!r}"
        elif source.startswith("ini"):
            origin = f"{source} = {text}"
        else:
            origin = f"{source}={text}"
        return f"gradverify: xp backends {', '.join(self.backend_names)} ({origin})"

    def pytest_sessionfinish(self, session, exitstatus):
        if self.is_worker:
            return
        self.interrupted = self.interrupted or exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR)
        if not (self.json_path or self.report_path):
            return
        try:
            run = self.run_record(int(exitstatus))
        except Exception as exc:  # say so, and fail the run, rather than lose the traceback in a hook
            self.write_errors.append(f"could not make the run record: {type(exc).__name__}: {exc}")
            run = None
        for path, kind in ((self.json_path, "JSON"), (self.report_path, "HTML")):
            if path is None or run is None:
                continue
            try:
                if kind == "JSON":
                    _record.write_run(run, path)
                else:
                    from gradverify.report import write_report

                    write_report(run, path)
            except Exception as exc:  # report the failure in the summary and in the exit status
                self.write_errors.append(f"could not write the {kind} report {path}: {type(exc).__name__}: {exc}")
            else:
                self.written.append((kind, path))
        if self.write_errors and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter):
        if self.is_worker:
            return
        tests = self.test_entries()
        if not (any(t["checks"] for t in tests) or self.deadline_off or self.written or self.write_errors):
            return
        tr = terminalreporter
        tr.write_sep("-", "gradverify")
        deadline_ms = max(self.deadline_off.values(), default=200.0)
        for line in summary_lines(tests, interrupted=self.interrupted, deadline_off=len(self.deadline_off), deadline_ms=deadline_ms):
            tr.write_line(line)
        for kind, path in self.written:
            tr.write_line(f"{kind} report: {_record.visible(path)}")
        for error in self.write_errors:
            tr.write_line(_record.visible(error), red=True)

    # -- the run record ----------------------------------------------------------------------

    def test_entries(self):
        """The TEST entries of the run record, sorted by node id (and within a test, by phase)."""
        entries = []
        for nodeid in sorted(self.tests):
            entries.extend(self.tests[nodeid].entries())
        for entry in entries:
            if entry["nodeid"] in self.deadline_off:
                entry["hypothesis_deadline_off_ms"] = self.deadline_off[entry["nodeid"]]
        return entries

    def run_record(self, exitstatus):
        """The ``gradverify-run/2`` record (kind ``pytest``) of this session."""
        return _record.new_run("pytest", self.provenance(exitstatus), tests=self.test_entries(), interrupted=self.interrupted)

    def provenance(self, exitstatus):
        config = self.config
        hypothesis = sys.modules.get("hypothesis")
        if hypothesis is None and (self.deadline_off or any("hypothesis" in c for log in self.tests.values() for c in log.checks)):
            import hypothesis  # an xdist controller: the workers ran @given tests, this process never imported it
        profile = None
        if hypothesis is not None:
            try:
                hypothesis.settings.default  # loads the default profile where no test has (an xdist controller)
                profile = hypothesis.settings.get_current_profile_name()
            except Exception:
                profile = None
        return _record.provenance(
            backend=",".join(self.backend_names),
            device=", ".join(f"{name}: {self._device(name)}" for name in self.backend_names),
            seed=config.getoption("hypothesis_seed", None),
            seconds=time.perf_counter() - self.clock,
            started=self.started,
            command=shlex.join(["python", "-m", "pytest", *map(str, config.invocation_params.args)]),
            source=config.rootpath,
            profile=profile,
            options=dict(self.settings),
            rootdir=str(config.rootpath),
            workers=config.getoption("numprocesses", None),
            exitstatus=exitstatus,
            hypothesis_deadline_off=len(self.deadline_off),
        )

    def _device(self, name):
        """The device of a backend: described where it was loaded (here, or by an xdist worker)."""
        if name in self._namespaces:
            from gradverify._backend import describe_device

            return describe_device(self._namespaces[name])
        seen = {c.get("device") for log in self.tests.values() for c in log.checks if c.get("backend") == name and c.get("device")}
        return ", ".join(sorted(seen)) or "not loaded"


class _TestLog:
    """What the controller learned of one node id from its reports: the outcomes pytest counts,
    the phases' durations and the checks."""

    def __init__(self, nodeid):
        self.nodeid = nodeid
        self.counted = []  # [outcome, message, duration] per report pytest counts
        self.uncounted = 0.0  # seconds of the phases pytest does not count (a passing setup)
        self.checks = []

    def add(self, report, outcome):
        duration = float(getattr(report, "duration", 0.0) or 0.0)
        if outcome is None:
            self.uncounted += duration
        else:
            self.counted.append([outcome, _message(report, outcome), duration])

    def entries(self):
        """One TEST entry per outcome pytest counts; the first holds the checks and the
        durations of the phases that are not counted."""
        entries = []
        for i, (outcome, message, duration) in enumerate(self.counted):
            entries.append(
                {
                    "nodeid": self.nodeid,
                    "outcome": outcome,
                    "duration": round(duration + (self.uncounted if i == 0 else 0.0), 6),
                    "message": message,
                    "checks": list(self.checks) if i == 0 else [],
                }
            )
        return entries


def _layer(options, extras, given, where):
    """``options`` under the options ``given`` (a marker's or a call's), validated; the extras
    go to ``extras``. An unknown or bad option is an InvalidArgument naming ``where``."""
    unknown = sorted(set(given) - set(OPTION_NAMES) - set(EXTRAS))
    if unknown:
        raise InvalidArgument(f"{where} got unknown option(s) {', '.join(unknown)}; choose from {', '.join(sorted(OPTION_NAMES + EXTRAS))}")
    if "target" in given and not isinstance(given["target"], bool):
        raise InvalidArgument(f"{where}: target={given['target']!r} must be True or False")
    extras.update({k: v for k, v in given.items() if k in EXTRAS})
    try:
        return options.replace(**{k: v for k, v in given.items() if k not in EXTRAS})
    except InvalidArgument as exc:
        raise InvalidArgument(f"{where}: {exc}") from None


def _message(report, outcome):
    """pytest's one-line reason for an outcome: the exception, the skip or xfail reason; None for a pass."""
    if outcome == "passed":
        return None
    if outcome in ("xfailed", "xpassed"):
        text = getattr(report, "wasxfail", "") or ""
    elif outcome == "skipped" and isinstance(report.longrepr, (tuple, list)) and len(report.longrepr) == 3:
        text = str(report.longrepr[2])
        text = text[len("Skipped: ") :] if text.startswith("Skipped: ") else text
    else:
        crash = getattr(report.longrepr, "reprcrash", None)
        text = crash.message if crash is not None else str(report.longrepr or "")
        if crash is None:  # a collection error: its "E   " lines hold the exception, the last one its cause
            causes = [line[1:].strip() for line in text.splitlines() if line.startswith("E ") and line[1:].strip()]
            text = causes[-1] if causes else text
    line = next((line.strip() for line in str(text).splitlines() if line.strip()), "")
    return line[:500] or None


def _hypothesis_hint(hypothesis):
    text = "gradverify: Hypothesis replays the shrunk example from its database (.hypothesis/) when the test runs again"
    if hypothesis.get("reproduce_failure"):
        text += f"; or add {hypothesis['reproduce_failure']} above the test"
    return text


def _add_note(exc, text):
    if hasattr(exc, "add_note"):
        exc.add_note(text)
    else:  # Python 3.10: pytest and Hypothesis read __notes__ all the same
        exc.__notes__ = [*getattr(exc, "__notes__", ()), text]


def _explain_tracer_paused(context):
    if context is None:
        return contextlib.nullcontext()
    from gradverify import _hypothesis_adapter as adapter

    return adapter.explain_tracer_paused()


def _add_hypothesis_failure(call, records):
    """Put what Hypothesis printed about the shrunk example on the recorded final failures."""
    from gradverify import _hypothesis_adapter as adapter

    failing = [r for r in records if r.get("hypothesis", {}).get("final") and not r["result"]["passed"]]
    if not failing:
        return
    notes = adapter.failure_notes(getattr(call.excinfo, "value", None))
    for record in failing:
        if notes["falsifying_example"]:
            record["hypothesis"]["falsifying_example"] = notes["falsifying_example"]
        if notes["reproduce_failure"]:  # printed by Hypothesis (print_blob): the one to trust
            record["hypothesis"]["reproduce_failure"] = notes["reproduce_failure"]
        if notes["seed"]:
            record["hypothesis"]["seed"] = notes["seed"]


# The most elements of a failing check's inputs kept in its record (the JSON stays small).
MAX_RECORDED_ELEMENTS = 10_000


def _inputs_record(inputs):
    """The inputs of a failing check as nested lists (host values), or their shapes when large."""
    try:
        import numpy as np

        from gradverify._backend import dtype_name, to_numpy

        hosts = [np.asarray(to_numpy(x)) for x in inputs]
        if sum(h.size for h in hosts) > MAX_RECORDED_ELEMENTS:
            return [{"shape": list(h.shape), "dtype": dtype_name(h.dtype)} for h in hosts]
        return _record.jsonable([h.tolist() for h in hosts])
    except Exception:  # the record must not fail the test for a reason of its own
        return None


def _backend_of(inputs):
    """``(backend name, device)`` of the inputs of a check that ran."""
    try:
        from gradverify._backend import backend_name, describe_device, namespace_of

        xp = namespace_of(*inputs)
        return backend_name(xp), describe_device(xp)
    except Exception:  # the check itself has already judged the inputs
        return None, None


# -- the terminal summary --------------------------------------------------------------------------


def summary_lines(tests, *, interrupted=False, deadline_off=0, deadline_ms=200.0, width=WIDTH):
    """The terminal summary of the run's TEST entries, in words, wrapped at ``width`` columns
    (command lines are never wrapped: they are for copying)."""
    lines = []

    def say(text):  # a no-break space (NBSP) holds words together
        wrapped = textwrap.wrap(text, width=width, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)
        lines.extend(line.replace(NBSP, " ") for line in wrapped)

    if interrupted:
        say("Interrupted: the run stopped early, so nothing is verified; the record holds the tests that finished.")
    checks = [(t["nodeid"], c) for t in tests for c in t["checks"]]
    outcomes = {t["nodeid"]: t["outcome"] for t in reversed(tests) if t["checks"]}
    if checks:
        failed = [(nodeid, c) for nodeid, c in checks if not c["result"]["passed"]]
        tests_with_checks = {nodeid for nodeid, _ in checks}
        lines.append(f"{_count(len(checks), 'gradient check')} in {_count(len(tests_with_checks), 'test')}: {len(checks) - len(failed)} passed, {len(failed)} failed")
        nodeid, worst = max(checks, key=lambda pair: _error(pair[1]["result"].get("max_rel_error")))
        result = worst["result"]
        say(f"Worst relative error {_error(result.get('max_rel_error')):.3g} in {_record.visible(nodeid)}: {_record.visible(result.get('function'))}{_worst_element(result)}.")
        unreliable = sum(c["result"]["passed"] and c["result"].get("blame") == "numerical" for _, c in checks)
        if unreliable:
            say(f"Finite differences unreliable at {_count(unreliable, 'check')}; the high-precision truth decided.")
        for nodeid, c in failed[:SHOWN_FAILURES]:
            result = c["result"]
            outcome = "" if outcomes[nodeid] in _record.FAILING_OUTCOMES else f" (the test {outcomes[nodeid]})"
            say(
                f"Failed check in {_record.visible(nodeid)}{outcome}: {_record.visible(result.get('function'))}: "
                f"{_verdict(result)} (max{NBSP}rel.{NBSP}error {_error(result.get('max_rel_error')):.3g})."
            )
            lines.append(f"  reproduce: {_record.visible(c['reproduce'])}")
        if len(failed) > SHOWN_FAILURES:
            say(f"... and {len(failed) - SHOWN_FAILURES} more failed checks (all of them are in the JSON record).")
        warned = [(nodeid, c) for nodeid, c in checks if c["result"].get("warnings")]
        if warned:
            nodeid, c = warned[0]
            say(
                f"{_count(len(warned), 'check')} warned (an input where a zero gradient would pass, or a mutant it would pass); "
                f"the first, in {_record.visible(nodeid)}: {_record.visible(c['result']['warnings'][0])}"
            )
    if deadline_off:
        say(
            f"Hypothesis deadline off for {_count(deadline_off, '@given test')} that "
            f"{'calls' if deadline_off == 1 else 'call'} gradcheck "
            f"(a check can take longer than {deadline_ms:g} ms); set @settings(deadline=...) to choose one."
        )
    return lines


def _verdict(result):
    """A failed check's verdict in words."""
    finding = (result.get("explore") or {}).get("finding")
    if finding:
        said = {"gradient": "the analytic gradient is wrong", "raises": f"the {finding.get('side')} raises", "nonfinite": "the forward is not finite"}
        return f"{said.get(finding.get('kind'), 'inconclusive')} on a variant of the example ({_record.visible(finding.get('variant'))})"
    blame = result.get("blame")
    if blame == "analytic":
        return "the analytic gradient is wrong"
    if blame == "numerical":
        return "inconclusive, the finite differences could not resolve the gradient and there is no truth"
    structural = result.get("structural") or ()
    if structural:
        return f"{str(structural[0].get('kind')).replace('_', ' ')}: {_record.visible(structural[0].get('message'))}"
    return "failed"


_ELEMENT_VERDICTS = {
    "ok": "all agree",
    "analytic": "the analytic gradient is off",
    "unresolved": "the finite differences could not resolve it",
    "not differentiable": "not differentiable there",
}


def _worst_element(result):
    finding = (result.get("explore") or {}).get("finding") or {}
    if finding.get("result"):
        return f"{_worst_element(finding['result'])[:-1]}, on a variant of the example)"
    best, where = -float("inf"), ""
    for p in result.get("per_input") or ():
        error = p.get("max_rel_analytic_truth")
        if error is None:
            error = p.get("max_rel_analytic_numerical")
        if error is not None and _error(error) > best:
            worst = p.get("worst") or {}
            best = _error(error)
            verdict = worst.get("verdict", "?")
            index = str(tuple(worst.get("index") or ())).replace(" ", NBSP)
            where = f", {_record.visible(p.get('name'))}, element {index} ({_ELEMENT_VERDICTS.get(verdict, verdict)})"
    structural = result.get("structural") or ()
    if not where and structural:
        where = f", {str(structural[0].get('kind')).replace('_', ' ')}"
    return where


def _count(n, noun):
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _error(value):
    """A relative error from a result dict (NaN and infinities travel as strings)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return -float("inf")
    return float("inf") if value != value else value
