"""Everything the pytest plugin knows about Hypothesis beyond its public API, in one place.

The plugin needs a few things Hypothesis does not offer publicly:

* the settings a ``@given`` test will run with, whether its deadline is Hypothesis' own
  default or one the user chose, and a way to turn that default deadline off (a gradient
  check often takes longer than the 200 ms default);
* the build context of the example running (is it the final replay of a shrunk failure?),
  the ``@reproduce_failure(...)`` decorator of that example, and the ``hypothesis.target``
  labels it has used (for :func:`gradverify.strategies.target_error`);
* the explain phase's line tracer, paused while a check runs;
* the shrunk example's text, read from the notes Hypothesis adds to the failure;
* the environment variables that make Hypothesis think it runs in CI (for tests).

Each reads a private attribute or relies on printed text, and may break in any release of
Hypothesis: ``tests/test_plugin.py`` (the ``test_adapter_*`` tests) asserts every one of them
against the installed Hypothesis, so that a change fails those tests loudly instead of
quietly turning a feature off. Everything else in gradverify uses only public Hypothesis.

Import this module only where Hypothesis is (or may be) imported: it imports Hypothesis.
"""

import contextlib
import re
import sys

import hypothesis
from hypothesis import settings as Settings

# Python >= 3.12: Hypothesis' explain phase registers a sys.monitoring tool under this id and name.
MONITORING_TOOL_ID = 3
MONITORING_TOOL_NAME = "scrutineer"


# -- the deadline of @given tests ------------------------------------------------------------


def is_given_test(function):
    """True for a test function wrapped by ``@given`` (the attribute Hypothesis' own pytest plugin reads)."""
    return bool(getattr(function, "is_hypothesis_test", False))


def settings_of(function):
    """The settings a ``@given`` test runs with: its ``@settings``, or the profile loaded when it was decorated.

    Hypothesis reads this attribute each time the test runs, so that replacing it changes
    how the test runs.
    """
    return function._hypothesis_internal_use_settings


def _root(settings):
    """Hypothesis' own default settings, the root every settings object inherits from."""
    while settings._fallback is not None:
        settings = settings._fallback
    return settings


def builtin_deadline():
    """Hypothesis' own default deadline (a ``timedelta``; 200 ms), whatever profile is loaded."""
    return _root(Settings.default).deadline


def deadline_is_hypothesis_default(settings):
    """True when ``settings`` has Hypothesis' own default deadline, inherited, never chosen.

    Settings copy the value they inherit, by reference; a deadline given to
    ``settings(deadline=...)`` or to a profile is a new object, even one of 200 ms. So the
    deadline is the default exactly when it is the very object of Hypothesis' root settings.
    """
    deadline = settings.deadline
    return deadline is not None and deadline is _root(settings).deadline


def turn_deadline_off(function):
    """Run the ``@given`` test ``function`` without a deadline, its other settings kept."""
    function._hypothesis_internal_use_settings = Settings(parent=settings_of(function), deadline=None)


def ci_variables():
    """The environment variables whose presence makes Hypothesis load its ``ci`` profile (no
    deadline): ``CI``, tox's copy of it, GitHub's, GitLab's, ... (for tests that need
    Hypothesis' own defaults in a subprocess)."""
    from hypothesis import _settings

    return tuple(_settings._CI_VARS)


# -- the example running ---------------------------------------------------------------------


def build_context():
    """Hypothesis' build context when called inside a ``@given`` test's example, else None."""
    if not hypothesis.currently_in_test_context():
        return None
    from hypothesis.control import current_build_context

    return current_build_context()


def is_final(context):
    """True in the final replay of a (shrunk) failing example, the one Hypothesis reports."""
    return bool(context.is_final)


def reproduce_failure(context):
    """``@reproduce_failure(...)`` for the example of ``context`` (its choices), or None."""
    from hypothesis.core import reproduction_decorator

    choices = context.data.prefix
    return reproduction_decorator(choices) if choices else None


def target_labels(context):
    """The labels ``hypothesis.target`` was already called with in this example (a label may
    be used once per example, so that a second check picks a new one)."""
    return set(context.data.target_observations)


# -- the explain phase's tracer ----------------------------------------------------------------


def explain_tracer_active():
    """True while Hypothesis' explain-phase line tracer runs in this thread."""
    monitoring = getattr(sys, "monitoring", None)
    if monitoring is not None:
        return monitoring.get_tool(MONITORING_TOOL_ID) == MONITORING_TOOL_NAME and bool(monitoring.get_events(MONITORING_TOOL_ID))
    return _hypothesis_tracer(sys.gettrace()) is not None


def _hypothesis_tracer(tracer):
    owner = getattr(tracer, "__self__", None)
    return owner if owner is not None and type(owner).__module__.startswith("hypothesis.") else None


@contextlib.contextmanager
def explain_tracer_paused():
    """Pause Hypothesis' explain-phase line tracer (and only it) for the ``with`` block.

    Once an example has failed, Hypothesis traces every line of every later example to
    explain the failure. Inside a check that is thousands of lines of mpmath and finite
    differences per example: on Python 3.11 (``sys.settrace``) it made a shrinking run a
    hundred times slower. The explanation then leaves out the lines run inside the block.
    Another tracer (coverage, a debugger) is left alone.
    """
    monitoring = getattr(sys, "monitoring", None)
    if monitoring is not None:
        if monitoring.get_tool(MONITORING_TOOL_ID) != MONITORING_TOOL_NAME:
            yield
            return
        events = monitoring.get_events(MONITORING_TOOL_ID)
        monitoring.set_events(MONITORING_TOOL_ID, 0)
        try:
            yield
        finally:
            if monitoring.get_tool(MONITORING_TOOL_ID) == MONITORING_TOOL_NAME:
                monitoring.set_events(MONITORING_TOOL_ID, events)
        return
    tracer = sys.gettrace()
    if _hypothesis_tracer(tracer) is None:
        yield
        return
    sys.settrace(None)
    try:
        yield
    finally:
        sys.settrace(tracer)


# -- what Hypothesis printed about a failure ------------------------------------------------------

_EXAMPLE_HEADS = ("Falsifying example:", "Falsifying explicit example:", "Failing test case:")
_BLOB = re.compile(r"@reproduce_failure\(.*?\)(?= as a decorator|\s*$)", re.S)
_SEED = re.compile(r"(@seed\(\d+\)|--hypothesis-seed=\d+)")


def failure_notes(exc):
    """What Hypothesis printed about the failing example of ``exc`` (its ``__notes__``).

    Returns ``{"falsifying_example": str or None, "reproduce_failure": str or None,
    "seed": str or None}``: the example (with its ``Draw n:`` lines), the
    ``@reproduce_failure(...)`` decorator Hypothesis printed (with ``print_blob``), and the
    ``@seed(...)`` it printed, if any. An exception group (several distinct failures) gives
    the first of its failures that has an example.
    """
    for one in _leaves(exc):
        notes = [str(n) for n in getattr(one, "__notes__", None) or ()]
        example = []
        for note in notes:
            if note.startswith(_EXAMPLE_HEADS):
                example = [note]
            elif example and note.startswith("Draw "):
                example.append(note)
            elif example:
                break
        if not example:
            continue
        blob = next((m.group(0) for n in notes for m in [_BLOB.search(n)] if m), None)
        seed = next((m.group(1) for n in notes for m in [_SEED.search(n)] if m), None)
        return {"falsifying_example": "\n".join(example), "reproduce_failure": blob, "seed": seed}
    return {"falsifying_example": None, "reproduce_failure": None, "seed": None}


def _leaves(exc):
    if exc is None:
        return
    group = getattr(exc, "exceptions", None)
    if isinstance(exc, BaseException) and isinstance(group, (list, tuple)):
        for inner in group:
            yield from _leaves(inner)
    else:
        yield exc


# -- drawing inside a running test -------------------------------------------------------------


def draw(context, strategy):
    """Draw from ``strategy`` with the running ``@given`` example's own data (Hypothesis does not
    nest ``@given``), so that the outer test shrinks and replays what was drawn."""
    return context.data.draw(strategy)
