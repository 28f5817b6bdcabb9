"""Verify catalog ops on Hypothesis-generated examples, shrinking any failure to a minimal one."""

import dataclasses
import fnmatch
import functools
import time
from dataclasses import dataclass, field

import numpy as np
from hypothesis import HealthCheck, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed

from gradverify import _backend, catalog
from gradverify._check import check_layer
from gradverify._errors import GradVerifyError, InvalidArgument
from gradverify._result import _jsonable


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


@dataclass
class OpOutcome:
    """The verification of one op over many examples (JSON-safe through ``dataclasses.asdict``)."""

    name: str
    family: str
    summary: str
    examples: int = 0
    passed: bool = True
    blame: str | None = None
    kinks: int = 0
    truth: dict = field(default_factory=dict)  # how many checks used each truth mode
    rel_analytic_numerical: list = field(default_factory=list)  # worst per example
    rel_analytic_truth: list = field(default_factory=list)
    rel_numerical_truth: list = field(default_factory=list)
    failure: dict | None = None  # the shrunk example, its report and how to reproduce it
    seconds: float = 0.0

    def worst(self, which):
        values = getattr(self, which)
        return max(values) if values else None

    def to_dict(self):
        """A JSON-safe dict: the ``"ops"`` entries of a ``gradverify-run/1`` record."""
        return _jsonable(dataclasses.asdict(self))


# The three comparisons kept per example, as OpOutcome fields, with what each compares.
COMPARISONS = {
    "rel_analytic_numerical": "analytic ~ finite difference",
    "rel_analytic_truth": "analytic ~ truth",
    "rel_numerical_truth": "finite difference ~ truth",
}


class _Failed(Exception):
    pass


def select(patterns):
    """Op names matching any of the comma-separated fnmatch ``patterns`` (all when empty)."""
    names = catalog.names()
    if not patterns:
        return names
    wanted = [p.strip() for p in patterns.split(",") if p.strip()]
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in wanted)]
    if not chosen:
        raise InvalidArgument(f"--ops {patterns!r} matches no op; the catalog has: {', '.join(names)}")
    return chosen


def check_example(op, example, xp, **options):
    """Run the engine on one example of ``op`` on the backend ``xp``."""
    device_inputs = tuple(xp.asarray(a) for a in example.inputs)
    forward = functools.partial(op.forward, **example.params)
    options.setdefault("name", op.name)
    return check_layer(forward, op.backward, *device_inputs, wrt=op.wrt, batched=op.batched, **options)


def check_op(op, example, xp):
    """Everything verified about one example of ``op``: its gradient check (``None`` for an op
    with nothing to differentiate), then its properties, which raise ``AssertionError``."""
    result = check_example(op, example, xp) if op.backward is not None else None
    if op.properties is not None:
        op.properties(example, xp)
    return result


def verify_op(op, xp, *, examples, seed, on_example=None):
    """Check ``op`` on ``examples`` Hypothesis examples; a failure is shrunk and kept."""
    outcome = OpOutcome(name=op.name, family=op.family, summary=op.summary)
    started = time.perf_counter()
    last_failure = {}

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        verbosity=Verbosity.quiet,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @hypothesis_seed(seed)
    @given(op.examples())
    def run(example):
        try:
            result = check_op(op, example, xp)
        except (GradVerifyError, AssertionError) as exc:
            kind = "property" if isinstance(exc, AssertionError) else type(exc).__name__
            last_failure.update(example=example, result=None, error=f"{kind}: {exc}")
            raise _Failed from exc
        if result is not None:
            _record(outcome, result)
        else:
            outcome.examples += 1
        if on_example is not None:
            on_example()
        if result is not None and not result.passed:
            last_failure.update(example=example, result=result, error=None)
            raise _Failed

    try:
        run()
    except _Failed:
        outcome.passed = False
        outcome.failure = _failure_record(op, last_failure, seed, examples, _backend.backend_name(xp))
        outcome.blame = "analytic" if last_failure["result"] is None else last_failure["result"].blame
    else:
        outcome.blame = "numerical" if outcome.truth.get("numerical_off") else None
    outcome.seconds = time.perf_counter() - started
    return outcome


def _record(outcome, result):
    outcome.examples += 1
    outcome.truth[result.truth] = outcome.truth.get(result.truth, 0) + 1
    if result.passed and result.blame == "numerical":
        outcome.truth["numerical_off"] = outcome.truth.get("numerical_off", 0) + 1
    outcome.kinks += sum(p.kinks for p in result.per_input)
    for which in COMPARISONS:
        values = [getattr(p, f"max_{which}") for p in result.per_input]
        values = [v for v in values if v is not None and np.isfinite(v)]
        if values:
            getattr(outcome, which).append(max(values))


def _failure_record(op, failure, seed, examples, backend):
    example = failure["example"]
    result = failure["result"]
    on = "" if backend == "numpy" else f" --backend {backend}"  # numpy is the CLI's default
    return {
        "inputs": [np.asarray(a).tolist() for a in example.inputs],
        "params": {k: repr(v) for k, v in example.params.items()},
        "report": str(result) if result is not None else failure["error"],
        "result": result.to_dict() if result is not None else None,
        "reproduce": f"gradverify verify --ops {op.name}{on} --seed {seed} --examples {examples}",
    }
