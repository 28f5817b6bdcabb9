"""Verify catalog ops on Hypothesis-generated examples, shrinking any failure to a minimal one.

One op's verification is one Hypothesis run (:func:`verify_op`). Its examples are counted as
Hypothesis draws them, up to the first failure; every call after that is a shrink step
(Hypothesis stops drawing new examples at the first failure when it reports one bug, then
shrinks it, then replays the minimal example once), so ``examples`` never exceeds the
number asked for and the shrink steps are counted apart.
"""

import contextlib
import dataclasses
import fnmatch
import functools
import shlex
import signal
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import HypothesisException

from gradverify import _backend, catalog
from gradverify._check import check_layer
from gradverify._errors import GradVerifyError, InvalidArgument
from gradverify._options import TEXT_SETTINGS, CheckOptions
from gradverify._record import COMPARISONS, jsonable

__all__ = ["PROFILES", "Interrupted", "OpOutcome", "Profile", "check_example", "check_op", "reproduce_command", "select", "verify_op"]


@dataclass(frozen=True)
class Profile:
    """How hard a run tries: Hypothesis examples per op, and whether its seed is fixed.

    A derandomized profile always draws the same examples (seed 0 unless one is given), so
    that a run is repeatable; the others draw a fresh seed each run, recorded with the run
    and in every reproduce line.
    """

    examples: int
    derandomize: bool


PROFILES = {
    "dev": Profile(examples=10, derandomize=False),
    "ci": Profile(examples=50, derandomize=True),
    "thorough": Profile(examples=500, derandomize=False),
}

# What a failure was: a gradient check that failed, a property (AssertionError) of the op,
# or an error (the op raised, a check ran out of time, the example strategy broke).
FAILURE_KINDS = ("gradient", "property", "error")
# Distinct warnings an op's outcome keeps (the count of examples that warned is kept whole).
MAX_WARNINGS = 3


@dataclass
class OpOutcome:
    """The verification of one op over many examples; :meth:`to_dict` is an ``"ops"`` entry
    of a ``gradverify-run/2`` record (:mod:`gradverify._record`)."""

    name: str
    family: str
    summary: str
    examples: int = 0  # the examples Hypothesis drew and checked (never the shrink steps)
    passed: bool = True
    blame: str | None = None  # of the failure; None when the op passed
    kinks: int = 0
    truth: dict = field(default_factory=dict)  # how many checks used each truth mode
    rel_analytic_numerical: list = field(default_factory=list)  # worst per example
    rel_analytic_truth: list = field(default_factory=list)
    rel_numerical_truth: list = field(default_factory=list)
    failure: dict | None = None  # the shrunk example, its report and how to reproduce it
    seconds: float = 0.0
    # Further keys of the record (the schema allows them):
    rel_error: list = field(default_factory=list)  # per example: analytic ~ the reference that decided
    truth_decided: int = 0  # examples where the finite differences were off and the truth decided
    shrink_steps: int = 0
    origin: dict = field(default_factory=dict)  # catalog.origin(name) as a dict
    warned: int = 0  # examples whose check warned (result.warnings: a vacuous check, a mutant it would pass)
    warnings: list = field(default_factory=list)  # the first MAX_WARNINGS distinct warnings

    def worst(self, which):
        values = getattr(self, which)
        return max(values) if values else None

    def to_dict(self):
        """A JSON-safe dict, an ``"ops"`` entry of a ``gradverify-run/2`` record."""
        return jsonable(dataclasses.asdict(self))


class _Failed(Exception):
    pass


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`verify_op`. ``outcome`` is what it found when that is worth keeping:
    the op's failure (``failure["shrunk"]`` False when shrinking was cut short), or the op's
    whole verification when Ctrl-C came after its last example; else None."""

    def __init__(self, name, outcome=None):
        super().__init__(name)
        self.name = name
        self.outcome = outcome


class _CtrlC:
    """Ctrl-C, raised only where Hypothesis expects it: inside the test body.

    A ``KeyboardInterrupt`` that lands in Hypothesis' own steps (drawing an example, the
    shrinker's bookkeeping) can break its internal invariants and surface as another error;
    there the interrupt waits for the next example to start. A second Ctrl-C while one waits
    is raised at once.
    """

    def __init__(self):
        self.in_body = False
        self.pending = False

    def handler(self, signum, frame):
        if self.in_body or self.pending:
            raise KeyboardInterrupt
        self.pending = True

    @contextlib.contextmanager
    def installed(self):
        """Handle SIGINT here while inside, where Python's own handler is the one installed."""
        if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            yield
            return
        previous = signal.signal(signal.SIGINT, self.handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    @contextlib.contextmanager
    def body(self):
        self.in_body = True
        try:
            if self.pending:
                raise KeyboardInterrupt
            yield
        finally:
            self.in_body = False


def select(patterns):
    """Op names matching any of the comma-separated fnmatch ``patterns`` (all when empty);
    a pattern that is an op's exact name selects that op whatever characters it holds."""
    names = catalog.names()
    if not patterns:
        return names
    wanted = [p.strip() for p in patterns.split(",") if p.strip()]
    chosen = [n for n in names if any(n == p or fnmatch.fnmatchcase(n, p) for p in wanted)]
    if not chosen:
        raise InvalidArgument(f"--ops {patterns!r} matches no op; the catalog has: {', '.join(names)}")
    return chosen


def check_example(op, example, xp, options=None, **overrides):
    """Run the engine on one example of ``op`` on the backend ``xp``.

    ``options`` (a :class:`CheckOptions`) are the run's; the op sets ``wrt``, ``batched`` and
    the name, and ``overrides`` (any :func:`gradverify.check_vjp` keyword, ``cotangent``
    included) win over both.
    """
    options = (options or CheckOptions()).replace(wrt=op.wrt, batched=op.batched, name=op.name)
    device_inputs = tuple(xp.asarray(a) for a in example.inputs)
    # Without parameters the op's own forward, which the check's reproduce line can import.
    forward = functools.partial(op.forward, **example.params) if example.params else op.forward
    return check_layer(forward, op.backward, *device_inputs, **{**options.as_kwargs(), **overrides})


def check_op(op, example, xp, options=None):
    """Everything verified about one example of ``op``: its gradient check (``None`` for an op
    with nothing to differentiate), then its properties, which raise ``AssertionError``."""
    result = check_example(op, example, xp, options) if op.backward is not None else None
    if op.properties is not None:
        op.properties(example, xp)
    return result


def reproduce_command(name, *, backend, seed, examples, options=None, module=None):
    """The ``gradverify verify`` command line that runs op ``name`` again exactly: the
    ``--module`` that registers it (when one does), the backend, the Hypothesis seed and
    examples, and every text setting of ``options`` that differs from its default.

    >>> reproduce_command("my_op", backend="numpy", seed=7, examples=10, module="my_ops.py")
    'gradverify verify --module my_ops.py --ops my_op --backend numpy --seed 7 --examples 10'
    """
    words = ["gradverify", "verify"]
    if module is not None:
        words += ["--module", module]
    words += ["--ops", name, "--backend", backend, "--seed", str(seed), "--examples", str(examples)]
    words += setting_args(options or CheckOptions())
    return shlex.join(words)


def setting_args(options):
    """The command-line words of the text settings in ``options`` that differ from the defaults."""
    words = []
    defaults = CheckOptions()
    for name in TEXT_SETTINGS:
        value = getattr(options, name)
        if value != getattr(defaults, name):
            text = "none" if value is None else ("on" if value else "off") if isinstance(value, bool) else str(value)
            words += [f"--{name.replace('_', '-')}", text]
    return words


def verify_op(op, xp, *, examples, seed, options=None, progress=None):
    """Check ``op`` on up to ``examples`` Hypothesis examples; a failure is shrunk and kept.

    ``options`` (a :class:`CheckOptions`) go to every check. ``progress(phase, count)`` is
    called after each example (``phase`` ``"generate"``, ``count`` the examples so far) and
    after each shrink step (``"shrink"``, the steps so far). Ctrl-C raises
    :class:`Interrupted`.
    """
    options = options or CheckOptions()
    registered = op.name in catalog.names() and catalog.get(op.name) is op  # not a variant made for a test
    where = catalog.origin(op.name) if registered else None
    outcome = OpOutcome(name=op.name, family=op.family, summary=op.summary, origin=dataclasses.asdict(where) if where else {})
    reproduce = reproduce_command(
        op.name, backend=_backend.backend_name(xp), seed=seed, examples=examples, options=options,
        module=where.source if where is not None and where.kind == "module" else None,
    )
    started = time.perf_counter()
    failure = {}  # the latest failing example: while shrinking, the smallest so far
    ctrl_c = _CtrlC()

    hypothesis_settings = settings(
        max_examples=examples,
        phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink),
        deadline=None,
        database=None,
        derandomize=False,
        verbosity=Verbosity.quiet,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )

    def body(example):
        with ctrl_c.body():
            check_one(example)

    def check_one(example):
        shrinking = bool(failure)
        try:
            result = check_op(op, example, xp, options)
        except HypothesisException:
            raise  # Hypothesis' own control flow (an assume() in the op's code, say)
        except Exception as exc:  # the op's properties, or an error: a failure of this example
            kind = "property" if isinstance(exc, AssertionError) and not isinstance(exc, GradVerifyError) else "error"
            label = "property" if kind == "property" else type(exc).__name__
            failure.update(example=example, result=None, kind=kind, error=f"{label}: {exc}")
            result = None
        else:
            if result is not None and not result.passed:
                failure.update(example=example, result=result, kind="gradient", error=None)
        if shrinking:
            outcome.shrink_steps += 1
            if progress is not None:
                progress("shrink", outcome.shrink_steps)
        else:
            outcome.examples += 1
            if result is not None:
                _tally(outcome, result)
            if progress is not None:
                progress("generate", outcome.examples)
        if failure and (failure["example"] is example):
            raise _Failed

    finished = interrupted = False
    with ctrl_c.installed():
        try:
            run = hypothesis_settings(hypothesis_seed(seed)(given(op.examples())(body)))
            run()
            finished = True
        except _Failed:
            finished = True
        except KeyboardInterrupt:
            interrupted = True
        except Exception as exc:  # the examples broke, or Hypothesis gave up (a flaky failure, say)
            finished = True
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if failure:
                failure["note"] = f"Hypothesis ended with {error}"
            else:
                failure.update(example=None, result=None, kind="error", error=error)
    interrupted = interrupted or ctrl_c.pending
    if failure:
        _fail(outcome, failure, reproduce=reproduce, shrunk=finished)
    outcome.seconds = time.perf_counter() - started
    if interrupted:
        raise Interrupted(op.name, outcome if failure or finished else None)
    return outcome


def _tally(outcome, result):
    outcome.truth[result.truth] = outcome.truth.get(result.truth, 0) + 1
    if result.warnings:
        outcome.warned += 1
        for w in result.warnings:
            if w not in outcome.warnings and len(outcome.warnings) < MAX_WARNINGS:
                outcome.warnings.append(w)
    if result.passed and result.blame == "numerical":
        outcome.truth_decided += 1
    outcome.kinks += sum(p.kinks for p in result.per_input)
    for which in COMPARISONS:
        values = [getattr(p, f"max_{which}") for p in result.per_input]
        values = [v for v in values if v is not None and np.isfinite(v)]
        if values:
            getattr(outcome, which).append(max(values))
    if result.max_rel_error is not None and np.isfinite(result.max_rel_error):
        outcome.rel_error.append(float(result.max_rel_error))


def _fail(outcome, failure, *, reproduce, shrunk):
    example, result = failure["example"], failure["result"]
    outcome.passed = False
    outcome.blame = result.blame if result is not None else "analytic" if failure["kind"] == "property" else None
    outcome.failure = {
        "kind": failure["kind"],
        "shrunk": shrunk,
        "inputs": [np.asarray(a).tolist() for a in example.inputs] if example is not None else [],
        "params": {k: repr(v) for k, v in example.params.items()} if example is not None else {},
        "report": str(result) if result is not None else failure["error"],
        "result": result.to_dict() if result is not None else None,
        "reproduce": reproduce,
    }
    if "note" in failure:
        outcome.failure["note"] = failure["note"]
