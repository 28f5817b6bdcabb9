"""The gradverify pytest plugin (registered through the ``pytest11`` entry point).

Fixtures
--------
``gradcheck``
    ``gradcheck(fn, vjp, *inputs, **options)`` checks like :func:`gradverify.assert_vjp`;
    ``gradcheck.layer(forward, backward, *inputs)`` like ``assert_layer`` and
    ``gradcheck.grad(f, grad_f, *inputs)`` like ``assert_grad``. A failing check fails the
    test with :class:`gradverify.GradientMismatch`, whose message is the readable report.
    Every check is recorded (the result, the test, how to reproduce it) for the terminal
    summary and the ``--gradverify-json`` / ``--gradverify-report`` files. The fixture is
    session-scoped, so it works inside ``@given`` tests; inside one, each check also calls
    :func:`gradverify.strategies.target_error`, so that Hypothesis' targeted phase drifts
    toward inputs where the gradient is worst.
``xp``
    The array namespace, parametrized over the selected backends (ids ``numpy``,
    ``strict``, ``cupy``; the ``cupy`` parameter carries the ``gpu`` marker), session-scoped.

Settings
--------
Each has a command-line option and an ini setting of the same name (``--gradverify-dps`` and
``gradverify_dps``); the command line wins. Backends may also come from the environment
variable ``GRADVERIFY_BACKENDS`` (between the command line and the ini file).

========================  ===============================================================
``backends``              comma-separated: ``numpy`` (default), ``strict``, ``cupy``;
                          one that is not usable here is a usage error, never a skip
``report``                write the HTML report there
``json``                  write the ``gradverify-run/1`` JSON there
``dps``                   digits of the high-precision truth
``mode``                  ``auto``, ``full`` or ``directional``
``rtol``                  relative tolerance of every check
``truth``                 ``auto``, ``elementwise``, ``directional`` or ``off``
``time_budget``           seconds each check may run (a positive number, or ``none`` for
                          no bound); past it the check stops with
                          :class:`gradverify.CheckBudgetExceeded`
========================  ===============================================================

``@pytest.mark.gradverify(**options)`` sets options of :func:`gradverify.check_vjp` for one
test, class or module (``target=False`` turns the targeted search off); they apply over
the session settings and under the keyword arguments of a call.

Under pytest-xdist each check travels to the controller on its test's report (the JSON-safe
attribute ``gradverify_checks``), and only the controller writes files.
"""

import contextlib
import datetime
import json
import math
import os
import platform
import re
import shlex
import sys
import time
import types
from pathlib import Path

import pytest

__all__ = ["GradCheck", "SETTINGS", "gradcheck"]

ENV_BACKENDS = "GRADVERIFY_BACKENDS"
DEFAULT_BACKENDS = ("numpy",)
KNOWN_BACKENDS = ("numpy", "strict", "cupy")  # gradverify._backend.BACKENDS, without importing it
MODES = ("auto", "full", "directional")
TRUTHS = ("auto", "elementwise", "directional", "off")
SCHEMA = "gradverify-run/1"
# Options a @pytest.mark.gradverify may set: check_vjp's keywords, plus target.
MARKER_OPTIONS = ("batched", "cotangent", "directions", "dps", "max_batch_bytes", "mode", "name", "richardson", "rtol", "seed", "target", "time_budget", "truth", "wrt")

SETTINGS = {
    "backends": "comma-separated array backends the xp fixture runs over: numpy, strict, cupy (default numpy; also env GRADVERIFY_BACKENDS). One that is not usable is an error.",
    "report": "write an HTML report of every gradient check to this path",
    "json": "write every gradient check as JSON (schema gradverify-run/1) to this path",
    "dps": "significant digits of the high-precision truth (an integer >= 30; default 40)",
    "mode": "finite differences for every element (full), along random directions (directional), or auto (default)",
    "rtol": "relative tolerance of every gradient check, a number in (0, 1) (default: by dtype)",
    "truth": "the high-precision truth: auto (default), elementwise, directional or off",
    "time_budget": "seconds each gradient check may run before it stops with CheckBudgetExceeded: a positive number, or none for no bound (default 600)",
}

_STATE = pytest.StashKey["_Session"]()
_CHECKS = pytest.StashKey[list]()


# -- options ---------------------------------------------------------------------------------


def pytest_addoption(parser):
    group = parser.getgroup("gradverify", "gradverify: gradient checks")
    for name, text in SETTINGS.items():
        metavar = {"report": "PATH", "json": "PATH", "backends": "NAMES", "dps": "N", "rtol": "R", "mode": "|".join(MODES), "truth": "|".join(TRUTHS), "time_budget": "SECONDS"}[name]
        group.addoption(f"--gradverify-{name.replace('_', '-')}", dest=f"gradverify_{name}", default=None, metavar=metavar, help=text)
        parser.addini(f"gradverify_{name}", text, default="")


def _setting(config, name):
    """``(text, source)`` of a setting: the command line, then the environment (backends), then the ini file."""
    value = config.getoption(f"gradverify_{name}")
    if value is not None:
        return str(value), f"--gradverify-{name.replace('_', '-')}={value}"
    if name == "backends" and os.environ.get(ENV_BACKENDS, "").strip():
        value = os.environ[ENV_BACKENDS]
        return value, f"{ENV_BACKENDS}={value!r}"
    value = config.getini(f"gradverify_{name}")
    if isinstance(value, str) and value.strip():
        return value.strip(), f"ini setting gradverify_{name} = {value.strip()}"
    return None, None


def _session_options(config):
    """The check options set for the whole session (dps, mode, rtol, truth, time_budget), validated."""
    options = {}
    text, source = _setting(config, "dps")
    if text is not None:
        try:
            options["dps"] = int(text)
        except ValueError:
            options["dps"] = None
        if options["dps"] is None or options["dps"] < 30:
            raise pytest.UsageError(f"{source}: the digits of the truth must be an integer >= 30")
    text, source = _setting(config, "mode")
    if text is not None:
        if text not in MODES:
            raise pytest.UsageError(f"{source}: choose a mode from {', '.join(MODES)}")
        options["mode"] = text
    text, source = _setting(config, "truth")
    if text is not None:
        if text not in TRUTHS:
            raise pytest.UsageError(f"{source}: choose a truth from {', '.join(TRUTHS)}")
        options["truth"] = text
    text, source = _setting(config, "rtol")
    if text is not None:
        try:
            rtol = float(text)
        except ValueError:
            rtol = math.nan
        if not 0 < rtol < 1:
            raise pytest.UsageError(f"{source}: rtol must be a number in (0, 1), e.g. 1e-6")
        options["rtol"] = rtol
    text, source = _setting(config, "time_budget")
    if text is not None:
        if text.lower() == "none":
            options["time_budget"] = None
        else:
            try:
                budget = float(text)
            except ValueError:
                budget = math.nan
            if not 0 < budget < math.inf:
                raise pytest.UsageError(f"{source}: the time budget must be a positive number of seconds (e.g. 60), or none for no bound")
            options["time_budget"] = budget
    return options


def _backends(config):
    """``(names, explicit)``: the selected backends, and whether anyone chose them."""
    text, source = _setting(config, "backends")
    if text is None:
        return list(DEFAULT_BACKENDS), False
    names = [b.strip() for b in text.split(",") if b.strip()]
    unknown = [b for b in names if b not in KNOWN_BACKENDS]
    if unknown or not names:
        raise pytest.UsageError(f"{source}: {', '.join(map(repr, unknown)) or 'no backend'} - choose from {', '.join(KNOWN_BACKENDS)}")
    return list(dict.fromkeys(names)), True


def _path(config, name):
    text, source = _setting(config, name)
    if text is None:
        return None
    base = config.invocation_params.dir if source.startswith("--") else (config.inipath.parent if config.inipath else config.rootpath)
    return Path(base, text)


# -- configuration ---------------------------------------------------------------------------


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "gradverify(**options): gradverify check options for this test, class or module (any keyword of "
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
        self.options = _session_options(config)
        self.backend_names, explicit = _backends(config)
        self.json_path = _path(config, "json")
        self.report_path = _path(config, "report")
        self.gradcheck = GradCheck(self)
        self.item = None
        self.checks = []
        self.written = []
        self.write_errors = []
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
            from gradverify._errors import InvalidArgument

            try:
                self._namespaces[name] = load_backend(name)
            except InvalidArgument as exc:
                raise pytest.UsageError(f"gradverify backend {name!r}: {exc}") from exc
        return self._namespaces[name]

    # -- the checks ------------------------------------------------------------------------

    def check(self, which, functions, inputs, call_options):
        __tracebackhide__ = True
        import gradverify
        from gradverify.strategies import target_error

        item = self.item
        options = self._options_for(item, call_options)
        target = options.pop("target", True)
        context = _hypothesis_context()
        # Everything, the raise included, with the explain tracer paused: lines of this
        # plugin would otherwise be "explained" as run only by failing examples.
        with _explain_tracer_paused(context):
            result = getattr(gradverify, which)(*functions, *inputs, **options)
            record = self._record(item, result, inputs, context)
            if context is not None and target:
                target_error(result)
            if not result.passed:
                exc = gradverify.GradientMismatch(result)
                if record is not None and hasattr(exc, "add_note"):
                    exc.add_note(f"gradverify: reproduce: {record['reproduce']}")
                raise exc
        return result

    def _options_for(self, item, call_options):
        from gradverify._errors import InvalidArgument

        options = dict(self.options)
        marks = list(item.iter_markers("gradverify")) if item is not None else []
        for mark in reversed(marks):  # the closest (the test's own) last, so that it wins
            if mark.args:
                msg = f"@pytest.mark.gradverify takes keyword options only (e.g. rtol=1e-5), got positional {mark.args!r}"
                raise InvalidArgument(msg)
            unknown = sorted(set(mark.kwargs) - set(MARKER_OPTIONS))
            if unknown:
                msg = f"@pytest.mark.gradverify got unknown option(s) {', '.join(unknown)}; choose from {', '.join(MARKER_OPTIONS)}"
                raise InvalidArgument(msg)
            options.update(mark.kwargs)
        options.update(call_options)
        return options

    def _record(self, item, result, inputs, context):
        """Keep the check for the report; None for a failure Hypothesis is still shrinking."""
        final = context is not None and bool(getattr(context, "is_final", False))
        if context is not None and not result.passed and not final:
            return None  # one step of the search: the shrunk example is replayed, and recorded, at the end
        record = {
            "test": item.nodeid if item is not None else None,
            "result": _json_safe(result.to_dict()),
            "reproduce": "",
            "backend": _backend_of(inputs),
        }
        hypothesis = None
        if not result.passed:
            record["inputs"] = _inputs_record(inputs)
        if context is not None:
            hypothesis = {"final": final}
            if final and not result.passed:
                blob = _reproduction_decorator(context)
                if blob:
                    hypothesis["reproduce_failure"] = blob
            record["hypothesis"] = hypothesis
        record["reproduce"] = self._reproduce(item, result, hypothesis)
        if item is not None:
            item.stash.setdefault(_CHECKS, []).append(record)
        else:
            self.checks.append(record)  # outside any test (a session fixture's teardown)
        return record

    def _reproduce(self, item, result, hypothesis):
        parts = []
        if item is not None:
            command = f"python -m pytest {shlex.quote(item.nodeid)}"
            backend = getattr(getattr(item, "callspec", None), "params", {}).get("xp")
            if isinstance(backend, str) and backend != "numpy":
                command += f" --gradverify-backends={backend}"
            for key in ("dps", "mode", "rtol", "truth", "time_budget"):
                if self.config.getoption(f"gradverify_{key}") is not None:
                    command += f" --gradverify-{key.replace('_', '-')}={self.config.getoption(f'gradverify_{key}')}"
            parts.append(command)
        if hypothesis is not None and not result.passed:
            text = "Hypothesis replays the shrunk example from its database (.hypothesis/) when the test runs again"
            if hypothesis.get("reproduce_failure"):
                text += f", or add {hypothesis['reproduce_failure']} above the test"
            parts.append(text)
        parts.append(f"the check itself: {result.reproduce}")
        return "; ".join(parts)

    # -- hooks -----------------------------------------------------------------------------

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
        records = item.stash.get(_CHECKS, None)
        if not records:
            return
        item.stash[_CHECKS] = []
        if call.when == "call" and report.failed:
            _add_hypothesis_failure(item, call, records)
        report.gradverify_checks = records

    def pytest_runtest_logreport(self, report):
        if not self.is_worker:
            self.checks.extend(getattr(report, "gradverify_checks", None) or ())

    def pytest_report_header(self, config):
        origin = "default" if _setting(config, "backends")[0] is None else _setting(config, "backends")[1]
        return f"gradverify: xp backends {', '.join(self.backend_names)} ({origin})"

    def pytest_sessionfinish(self, session, exitstatus):
        if self.is_worker or not (self.json_path or self.report_path):
            return
        run = self.run_record(int(exitstatus))
        for path, kind in ((self.json_path, "JSON"), (self.report_path, "HTML")):
            if path is None:
                continue
            try:
                if kind == "JSON":
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps(run, indent=1, allow_nan=False) + "\n", encoding="utf-8")
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
        if self.is_worker or not (self.checks or self.written or self.write_errors):
            return
        tr = terminalreporter
        tr.write_sep("-", "gradverify")
        for line in summary_lines(self.checks):
            tr.write_line(line)
        for kind, path in self.written:
            tr.write_line(f"{kind} report: {path}")
        for error in self.write_errors:
            tr.write_line(error, red=True)

    # -- the run record ----------------------------------------------------------------------

    def run_record(self, exitstatus):
        """The ``gradverify-run/1`` record of every check in this session (each exactly once)."""
        checks = sorted(self.checks, key=lambda c: c["test"] or "")
        return {
            "schema": SCHEMA,
            "provenance": self.provenance(exitstatus),
            "passed": all(c["result"]["passed"] for c in checks),
            "ops": [],
            "checks": checks,
            "figures": {},
        }

    def provenance(self, exitstatus):
        import gradverify

        versions = {"gradverify": gradverify.__version__, "pytest": pytest.__version__}
        for name in ("numpy", "mpmath", "hypothesis", "array_api_compat", "array_api_strict", "cupy"):
            module = sys.modules.get(name)  # only what the run imported: never import CuPy here
            if module is not None:
                versions[name] = getattr(module, "__version__", "unknown")
        hypothesis = sys.modules.get("hypothesis")
        profile = getattr(getattr(hypothesis, "settings", None), "_current_profile", None) if hypothesis else None
        seed = self.config.getoption("hypothesis_seed", None)
        return {
            "source": "pytest plugin",
            "gradverify": gradverify.__version__,
            "git_commit": _git_commit(self.config.rootpath),
            "backend": ",".join(self.backend_names),
            "device": ", ".join(f"{name}: {_device(self._namespaces.get(name), name)}" for name in self.backend_names),
            "seed": seed,
            "profile": profile,
            "date": self.started.isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - self.clock, 3),
            "python": platform.python_version(),
            "platform": platform.platform(terse=True),
            "versions": versions,
            "options": dict(self.options),
            "rootdir": str(self.config.rootpath),
            "args": [str(a) for a in self.config.invocation_params.args],
            "workers": self.config.getoption("numprocesses", None),
            "exitstatus": exitstatus,
        }


# -- helpers ---------------------------------------------------------------------------------


def summary_lines(checks):
    """The terminal summary: how many checks ran and failed, and the worst relative error and where."""
    if not checks:
        return ["gradverify: no gradient checks ran"]
    failed = [c for c in checks if not c["result"]["passed"]]
    tests = {c["test"] for c in checks}
    lines = [f"{_count(len(checks), 'gradient check')} in {_count(len(tests), 'test')}: {len(checks) - len(failed)} passed, {len(failed)} failed"]
    worst = max(checks, key=lambda c: _error(c["result"].get("max_rel_error")))
    error = _error(worst["result"].get("max_rel_error"))
    where = _worst_element(worst["result"])
    lines.append(f"worst relative error {error:.3g} in {worst['test']}: {worst['result'].get('function')}{where}")
    for c in failed[:10]:
        lines.append(f"FAILED {c['test']}: {c['result'].get('function')}, blame {c['result'].get('blame')}, max rel. error {_error(c['result'].get('max_rel_error')):.3g}")
    if len(failed) > 10:
        lines.append(f"... and {len(failed) - 10} more failed checks")
    return lines


def _count(n, noun):
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _error(value):
    """A relative error from a result dict (NaN and infinities travel as strings)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return -math.inf
    return math.inf if math.isnan(value) else value


def _worst_element(result):
    best, where = -math.inf, ""
    for p in result.get("per_input") or ():
        error = p.get("max_rel_analytic_truth")
        if error is None:
            error = p.get("max_rel_analytic_numerical")
        if error is not None and _error(error) > best:
            worst = p.get("worst") or {}
            best = _error(error)
            where = f", {p.get('name')}, element {tuple(worst.get('index', ()))} ({worst.get('verdict', '?')})"
    structural = result.get("structural") or ()
    if not where and structural:
        where = f", structural: {structural[0].get('kind')}"
    return where


def _json_safe(obj):
    """Plain JSON types only (the record crosses pytest-xdist's channel and ends in a JSON file).

    NaN and infinities become the strings ``"nan"``, ``"inf"``, ``"-inf"``, as in
    ``VerificationResult.to_dict()``; NumPy scalars become Python numbers.
    """
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else repr(float(obj))
    item = getattr(obj, "item", None)
    if callable(item):
        return _json_safe(item())
    return str(obj)


def _backend_of(inputs):
    try:
        from gradverify._backend import backend_name, namespace_of

        return backend_name(namespace_of(*inputs))
    except Exception:  # the check itself has already judged the inputs
        return None


def _device(xp, name):
    if xp is None:
        return "cpu" if name != "cupy" else "cuda (not loaded)"
    if name == "cupy":
        try:
            cupy = sys.modules["cupy"]
            device = cupy.cuda.Device()
            props = cupy.cuda.runtime.getDeviceProperties(device.id)["name"]
            return f"cuda:{device.id} ({props.decode() if isinstance(props, bytes) else props})"
        except Exception:
            return "cuda"
    return "cpu"


def _git_commit(root):
    """The checked-out commit, read from ``.git`` (no git process), or None."""
    try:
        for directory in (Path(root), *Path(root).parents):
            git = directory / ".git"
            if git.is_file():  # a worktree: "gitdir: PATH"
                git = Path(git.read_text().split(":", 1)[1].strip())
            if git.is_dir():
                break
        else:
            return None
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head.split(":", 1)[1].strip()
        if (git / ref).is_file():
            return (git / ref).read_text().strip() or None
        packed = git / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                if line.endswith(" " + ref):
                    return line.split()[0]
    except (OSError, IndexError):
        pass
    return None


def _hypothesis_context():
    """Hypothesis' build context when a check runs inside a ``@given`` test, else None."""
    if "hypothesis" not in sys.modules:
        return None
    try:
        from hypothesis import currently_in_test_context
        from hypothesis.control import current_build_context

        return current_build_context() if currently_in_test_context() else None
    except Exception:
        return None


@contextlib.contextmanager
def _explain_tracer_paused(context):
    """Pause Hypothesis' explain-phase line tracer (and only it) while a check runs.

    Once an example has failed, Hypothesis traces every line of every later example to
    explain the failure. Inside a check that is thousands of lines of mpmath and finite
    differences per example: on Python 3.11 (``sys.settrace``) it made a shrinking run a
    hundred times slower. The explanation then leaves out the lines run inside the check.
    """
    if context is None:
        yield
        return
    monitoring = getattr(sys, "monitoring", None)
    if monitoring is not None:  # Python >= 3.12: Hypothesis' tool id 3, named "scrutineer"
        try:
            tool = 3 if monitoring.get_tool(3) == "scrutineer" else None
            events = monitoring.get_events(tool) if tool is not None else 0
        except Exception:
            tool, events = None, 0
        if tool is None or not events:
            yield
            return
        monitoring.set_events(tool, 0)
        try:
            yield
        finally:
            if monitoring.get_tool(tool) == "scrutineer":
                monitoring.set_events(tool, events)
        return
    tracer = sys.gettrace()
    owner = getattr(tracer, "__self__", None)
    if owner is None or not type(owner).__module__.startswith("hypothesis."):
        yield  # no tracer, or another one (coverage, a debugger): leave it alone
        return
    sys.settrace(None)
    try:
        yield
    finally:
        sys.settrace(tracer)


def _reproduction_decorator(context):
    """``@reproduce_failure(...)`` for the example being replayed, when Hypothesis can tell."""
    try:
        from hypothesis.core import reproduction_decorator

        choices = getattr(context.data, "prefix", None)
        return reproduction_decorator(choices) if choices else None
    except Exception:  # a private API of Hypothesis: do without it when it changes
        return None


_SEED = re.compile(r"(@seed\(\d+\)|--hypothesis-seed=\d+)")


def _add_hypothesis_failure(item, call, records):
    """Put Hypothesis' shrunk example (and any seed it printed) on the recorded failures."""
    failing = [r for r in records if "hypothesis" in r and not r["result"]["passed"]]
    if not failing:
        return
    notes = [str(n) for n in getattr(getattr(call.excinfo, "value", None), "__notes__", None) or ()]
    example = []
    for note in notes:
        if note.startswith(("Failing test case:", "Falsifying example:", "Falsifying explicit example:")):
            example = [note]
        elif example and note.startswith("Draw "):
            example.append(note)
        elif example:
            break
    if not example:
        example = [str(e) for e in getattr(item, "_hypothesis_failing_examples", None) or ()]
    seed = next((m.group(1) for n in notes for m in [_SEED.search(n)] if m), None)
    for record in failing:
        if example:
            record["hypothesis"]["falsifying_example"] = "\n".join(example)
        if seed:
            record["hypothesis"]["seed"] = seed
            record["reproduce"] += f"; or use {seed}"


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
        return _json_safe([h.tolist() for h in hosts])
    except Exception:  # the record must not fail the test for a reason of its own
        return None
