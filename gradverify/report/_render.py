"""Render a run record to one self-contained HTML page (Jinja2, autoescaped).

The page shows the record and nothing else: :func:`render_html` validates it
(:func:`gradverify._record.validate`) and never imports the catalog, Hypothesis or the
runner, so that a saved run renders anywhere. A catalog run (``gradverify verify``) leads
with what it verified: the ops, failures first with their shrunk example and how to rerun
it, and the errors per op; the demonstrations follow behind a toggle. A test run (the
pytest plugin) is a test report: one row per test with its pytest outcome, the gradient
checks it made aggregated, the failing example shown, and filters.

The page loads nothing: its CSS and JavaScript are inlined from ``templates/`` and its
figures are inline SVG, and a Content-Security-Policy forbids any fetch besides. Data only
ever reaches the page through autoescaped template variables and escaped SVG text, never
inside the script; every piece of text has its bidirectional controls made visible
(:func:`gradverify._record.visible`) before it is escaped.
"""

import json
import math
from importlib import resources

import jinja2
import numpy as np
from markupsafe import Markup

from gradverify import _record
from gradverify._record import COMPARISONS, visible
from gradverify.report import _plots
from gradverify.report._study import study_context

_TEMPLATES = resources.files("gradverify.report") / "templates"


def _finalize(value):
    """Every ``{{ ... }}`` of the templates: text has its bidirectional controls shown
    (then Jinja escapes it); markup the renderer built itself passes as it is."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return visible(value)
    return value


_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    finalize=_finalize,
    trim_blocks=True,
    lstrip_blocks=True,
)
# The largest shrunk input shown in full; a larger one is summarized (the JSON has all of it).
SHOWN_ELEMENTS = 200
# The most failing checks shown in full under one test (the JSON has all of them).
SHOWN_FAILURES = 5
# The distinct warnings of a test's checks (a vacuous input, a mutant a check would pass) shown in its row.
MAX_WARNINGS_SHOWN = 3
# Outcomes in pytest's summary order ("1 failed, 3 passed, ..."), and in the order the
# test table lists them: what needs attention first.
SUMMARY_ORDER = ("failed", "passed", "skipped", "xfailed", "xpassed", "error")
ATTENTION_ORDER = ("failed", "error", "xpassed", "xfailed", "skipped", "passed")


def render_html(run):
    """The report for a ``gradverify-run/2`` record, as one HTML document.

    Parameters
    ----------
    run : dict
        A run record (:func:`gradverify._record.new_run`, or
        :func:`gradverify._record.read_run` of a saved one).

    Returns
    -------
    str
        A complete HTML page that needs no network and no other file.

    Raises
    ------
    gradverify.InvalidArgument
        When ``run`` is not a valid record (the message names the bad field).

    Examples
    --------
    >>> from gradverify._record import new_run
    >>> page = render_html(new_run("pytest", {"backend": "numpy"}))
    >>> page.startswith("<!DOCTYPE html>") and "gradverify test report" in page
    True
    """
    _record.validate(run)
    template = _ENV.get_template("report.html.j2")
    return template.render(
        css=Markup((_TEMPLATES / "report.css").read_text(encoding="utf-8")),
        js=Markup((_TEMPLATES / "report.js").read_text(encoding="utf-8")),
        **_context(run),
    )


def write_report(run, path):
    """Render ``run`` and write it to ``path`` atomically (a reader never sees half a page;
    parent directories are created); return the path."""
    return _record.write_atomic(path, render_html(run))


# Provenance entries the page shows in its header, None when a run lacks them.
_SHOWN = ("backend", "device", "date", "gradverify", "git_commit", "profile", "seed", "seconds", "command")


def _context(run):
    """The template's variables: rows and summaries computed from the run, figures drawn."""
    interrupted = run["status"] == "interrupted"
    passed = bool(run["passed"])
    if interrupted:
        verdict = "INTERRUPTED"
    elif not passed:
        verdict = "FAILED"
    else:
        verdict = "all verified" if run["kind"] == "catalog" else "passed"
    context = {
        "kind": run["kind"],
        "interrupted": interrupted,
        "passed": passed,
        "verdict": verdict,
        "prov": {key: _number(run["provenance"].get(key)) if key == "seconds" else _text(run["provenance"].get(key)) for key in _SHOWN},
        "prov_rows": _flatten(run["provenance"]),
    }
    context.update(_catalog(run) if run["kind"] == "catalog" else _tests(run))
    return context


# -- a catalog run ------------------------------------------------------------------------------


def _catalog(run):
    ops = [_op_row(i, o) for i, o in enumerate(run["ops"])]
    ops.sort(key=lambda o: o["passed"])  # failures first, the run's order otherwise
    return {
        "summary": _summary(ops),
        "ops": ops,
        "families": sorted({o["family"] for o in ops}),
        "comparisons": list(COMPARISONS.values()),
        "op_failures": [{**_failure(o["name"], o["raw"]["failure"]), "anchor": o["anchor"], "blame": o["blame"]} for o in ops if o["raw"]["failure"]],
        "errors_chart": _plots.error_distribution([o["raw"] for o in ops]),
        "figures": _figures(run),
        "critical": _critical(run["figures"].get("critical_points")),
        "study": study_context(run.get("study")),
    }


def _op_row(i, o):
    stats = []
    for key in COMPARISONS:
        values = _plots.finite_values(o[key])
        stats.append((float(values.max()) if values.size else None, float(np.median(values)) if values.size else None))
    return {
        "raw": o,
        "anchor": f"op-{i}",
        "name": o["name"],
        "family": o["family"],
        "summary": o["summary"],
        "examples": o["examples"],
        "passed": bool(o["passed"]),
        "blame": o["blame"],
        "kinks": o["kinks"],
        "stats": stats,
        "seconds": _number(o["seconds"]),
        # Optional keys of a newer runner: where the truth decided, and where a user's op came from.
        "truth_decided": o.get("truth_decided") if isinstance(o.get("truth_decided"), int) and not isinstance(o.get("truth_decided"), bool) else 0,
        "origin": _origin(o.get("origin")),
        "warned": o.get("warned") if isinstance(o.get("warned"), int) and not isinstance(o.get("warned"), bool) else 0,
        "warnings": [_text(w) for w in o.get("warnings") or [] if _text(w)] if isinstance(o.get("warnings"), list) else [],
    }


def _origin(origin):
    """Where a user's op came from, in words ("" for the catalog's own)."""
    origin = _dict(origin)
    kind, source = _text(origin.get("kind")), _text(origin.get("source"))
    if not kind or kind == "gradverify":
        return ""
    return f"from the {kind} {source}" if source else f"from {kind}"


def _summary(ops):
    worst = {}
    for j, label in enumerate(COMPARISONS.values()):
        candidates = [(o["stats"][j][0], o["name"]) for o in ops if o["stats"][j][0] is not None]
        worst[label] = max(candidates) if candidates else (None, None)
    return {
        "ops": len(ops),
        "ops_passed": sum(o["passed"] for o in ops),
        "examples": sum(o["examples"] for o in ops),
        "failures": sum(not o["passed"] for o in ops),
        "worst": worst,
    }


# -- a test run ---------------------------------------------------------------------------------


def _tests(run):
    rows = [_test_row(i, t) for i, t in enumerate(run["tests"])]
    rows.sort(key=lambda r: ATTENTION_ORDER.index(r["outcome"]))  # failures first, pytest's order otherwise
    counts = {outcome: sum(r["outcome"] == outcome for r in rows) for outcome in SUMMARY_ORDER}
    checks = [(r, c) for r in rows for c in r["raw"]["checks"]]
    # The first of the worst in the table's order (failures first), should several tie.
    worst = max(((_error_key(c["result"]["max_rel_error"]), r["nodeid"]) for r, c in checks), key=lambda p: p[0], default=None)
    return {
        "tests": rows,
        "counts": [(outcome, counts[outcome]) for outcome in ATTENTION_ORDER],
        "pytest_line": ", ".join(f"{n} {_plural(outcome, n)}" for outcome, n in counts.items() if n) or "no tests ran",
        "summary": {
            "tests": len(rows),
            "checks": len(checks),
            "checks_failed": sum(not c["result"]["passed"] for _, c in checks),
            "worst": (worst[0][1], worst[1]) if worst else (None, None),
        },
    }


def _plural(outcome, n):
    """pytest's word for ``n`` tests with ``outcome`` (only "error" takes a plural)."""
    return "errors" if outcome == "error" and n != 1 else outcome


def _test_row(i, t):
    checks = t["checks"]
    failing = [c for c in checks if not c["result"]["passed"]]
    # Hypothesis replays the shrunk example last, as the final one: show those, else every failure.
    final = [c for c in failing if _dict(c.get("hypothesis")).get("final") is True]
    shown = (final or failing)[-SHOWN_FAILURES:] if len(final or failing) > SHOWN_FAILURES else (final or failing)
    worst = max((_error_key(c["result"]["max_rel_error"]) for c in checks), default=None)
    backends = sorted({_text(c.get("backend")) for c in checks} - {""})
    warned = [c for c in checks if isinstance(c["result"].get("warnings"), list) and c["result"]["warnings"]]
    warnings = list(dict.fromkeys(_text(w) for c in warned for w in c["result"]["warnings"]))
    return {
        "raw": t,
        "anchor": f"test-{i}",
        "nodeid": t["nodeid"],
        "outcome": t["outcome"],
        "duration": _number(t["duration"]),
        "message": t["message"] or "",
        "checks": len(checks),
        "checks_failed": len(failing),
        "worst": worst[1] if worst else None,
        "blame": _test_blame(checks, failing),
        "backends": ", ".join(backends),
        "failures": [_check_failure(c) for c in shown],
        "more_failures": len(failing) - len(shown),
        "open": t["outcome"] in ("failed", "error"),
        "warned": len(warned),
        "warnings": warnings[:MAX_WARNINGS_SHOWN],
    }


def _error_key(value):
    """Sorts relative errors with NaN above infinity above every finite value."""
    x = _number(value)
    if x is None:
        return (0, -math.inf)
    return (2, math.inf) if math.isnan(x) else (1, x)


def _test_blame(checks, failing):
    """Which side was wrong, in words, over a test's checks."""
    if not checks:
        return ""
    if failing:
        blames = {c["result"]["blame"] for c in failing}
        kinds = sorted({str(s.get("kind", "?")) for c in failing for s in c["result"]["structural"]})
        found = f" ({', '.join(kinds)})" if kinds else ""
        if "analytic" in blames:
            return f"analytic: the hand-written gradient is wrong{found}"
        if "numerical" in blames:
            return f"inconclusive: the finite differences could not resolve the gradient and there was no truth{found}"
        return f"structural: {', '.join(kinds)}" if kinds else "failed"
    if any(c["result"]["blame"] == "numerical" for c in checks):
        return "passed; the finite differences were off somewhere and the truth sided with the analytic gradient"
    return "all agree"


def _check_failure(check):
    """A failing check as a failure block: its worst element, input, Hypothesis' example, how to rerun."""
    failure = _failure(check["result"]["function"] or "check", {"result": check["result"], "inputs": check.get("inputs"), "reproduce": check["reproduce"]})
    hypothesis = _dict(check.get("hypothesis"))
    if "hypothesis" in check:
        failure["hypothesis"] = {key: _text(hypothesis.get(key)) for key in ("falsifying_example", "reproduce_failure", "seed")}
    failure["backend"] = _text(check.get("backend"))
    return failure


# -- shared -------------------------------------------------------------------------------------
# The record's required keys are validated (gradverify._record.validate); what a failure holds
# inside (the worst element, the inputs, Hypothesis' notes) is optional, and a damaged file
# may hold anything there: it is read through these, so that the page still renders.


def _dict(value):
    return value if isinstance(value, dict) else {}


def _list(value):
    return value if isinstance(value, list) else []


def _text(value):
    return "" if value is None else value if isinstance(value, str) else json.dumps(value)


def _failure(name, failure):
    """What a reader needs to act on one failure: input, worst element, values, how to rerun."""
    result = _dict(failure.get("result"))
    finding = _dict(_dict(result.get("explore")).get("finding"))
    # A finding of explore=: the variant's check holds the failing elements, not the example's.
    shown = _dict(finding.get("result")) or result
    worst = None
    reports = [p for p in _list(shown.get("per_input")) if isinstance(p, dict) and isinstance(p.get("worst"), dict)]
    if reports:
        # The input where the analytic side is most wrong: failures first, then the error.
        p = max(reports, key=lambda p: (_number(p.get("failures")) or 0.0, _number(p["worst"].get("rel_analytic_truth")) or 0.0, _number(p["worst"].get("rel_analytic_numerical")) or 0.0))
        element = p["worst"]
        worst = {
            "input": _text(p.get("name")),
            "shape": p.get("shape"),
            "dtype": _text(p.get("dtype")),
            "rtol": p.get("rtol"),
            "index": [_text(i) if not isinstance(i, int) else i for i in element["index"]] if isinstance(element.get("index"), list) else None,
            "verdict": _text(element.get("verdict")),
            "step": element.get("step"),
            "numerical_bracket": _pair(element.get("numerical_bracket")),
            "truth_bracket": _pair(element.get("truth_bracket")),
            **{key: element.get(key) for key in ("analytic", "numerical", "truth", *COMPARISONS)},
        }
    structural = [
        {"kind": _text(s.get("kind")), "message": _text(s.get("message")), "input": s.get("input") if isinstance(s.get("input"), int) else None}
        for s in _list(shown.get("structural"))
        if isinstance(s, dict)
    ]
    inputs = failure.get("inputs")
    return {
        "name": name,
        "inputs": [_array_text(a) for a in inputs] if isinstance(inputs, list) else [],
        "params": {_text(k): _text(v) for k, v in _dict(failure.get("params")).items()},
        "report": _text(failure.get("report")),
        "structural": structural,
        "blame": result.get("blame") if result.get("blame") in ("analytic", "numerical") else None,
        "worst": worst,
        "reproduce": _text(failure.get("reproduce") or result.get("reproduce")),
        "hypothesis": None,
        "backend": "",
        "variant": {key: _text(finding.get(key)) for key in ("kind", "side", "variant", "message", "reproduce")} if finding else None,
    }


def _pair(value):
    return value if isinstance(value, list) and len(value) == 2 else None


def _array_text(values):
    """An input as text: the numbers in full (up to SHOWN_ELEMENTS), or what a large one was."""
    if isinstance(values, dict):  # the plugin keeps only the shape of a large input
        shape = values.get("shape")
        shape = tuple(shape) if isinstance(shape, list) else shape
        return f"array of shape {shape}, {_text(values.get('dtype', '?'))} (too large to keep)"
    try:
        a = np.asarray(values, dtype=float)
    except (ValueError, TypeError):
        return repr(values)
    return np.array2string(a, separator=", ", threshold=SHOWN_ELEMENTS, floatmode="unique", max_line_width=100)


# What a damaged figure (a record edited by hand, or cut short) raises while it is drawn.
_DAMAGED = (KeyError, TypeError, ValueError, IndexError, AttributeError)


def _figures(run):
    """The demonstrations: ``{key: {"html": [...], "notes": [...]}}`` for each figure the run has data for."""
    data = run["figures"]
    out = {}
    for key, draw in (("fd_steps", _plots.fd_steps), ("trajectories", _plots.trajectories), ("activations", _plots.activations)):
        entry = data.get(key)
        if entry is None:
            continue
        if isinstance(entry, dict) and "error" in entry:
            out[key] = {"html": [], "notes": [f"this figure could not be computed: {_text(entry['error'])}"]}
            continue
        try:
            drawn = draw(entry)
            notes = [_text(n) for n in _list(entry.get("notes"))]
        except _DAMAGED as exc:
            out[key] = {"html": [], "notes": [f"this figure's data in the record is damaged ({type(exc).__name__}: {exc})"]}
            continue
        out[key] = {"html": drawn if isinstance(drawn, list) else [drawn], "notes": notes}
    return out


def _critical(entry):
    """The critical-points demonstration: None without data, else ``{"notes", "points"}`` drawn."""
    if entry is None:
        return None
    entry = _dict(entry) or {"error": "not an object"}
    if "error" in entry:
        return {"notes": [f"the critical points could not be classified: {_text(entry['error'])}"], "points": []}
    points = []
    for i, p in enumerate(_list(entry.get("points"))):
        p = _dict(p)
        row = {key: _text(p.get(key)) for key in ("key", "title", "function", "point", "verdict", "note", "error")}
        if not row["error"]:
            try:
                row.update(_critical_numbers(p), svg=_plots.eigenvalues(p, f"{i}"))
            except _DAMAGED as exc:
                row["error"] = f"the data of this point in the record is damaged ({type(exc).__name__}: {exc})"
        points.append(row)
    return {"notes": [_text(n) for n in _list(entry.get("notes"))], "points": points}


def _critical_numbers(p):
    """A critical point's numbers for the page (raises one of _DAMAGED where they are damaged)."""
    numbers = {key: p.get(key) for key in ("grad_norm", "gtol", "etol", "hessian_error")}
    numbers["eigenvalues"] = [float(v) for v in p["eigenvalues"]]
    escape = p.get("escape")
    numbers["escape"] = None
    if escape is not None:
        numbers["escape"] = {
            "eigenvalue": escape["eigenvalue"],
            "rows": [{"h": h, "actual": a, "predicted": q, "ratio": _ratio(a, q)} for h, a, q in escape["rows"]],
        }
    return numbers


def _ratio(a, b):
    a, b = _number(a), _number(b)
    return None if a is None or not b else a / b


def _flatten(prov, prefix=""):
    rows = []
    for key, value in prov.items():
        if isinstance(value, dict):
            rows += _flatten(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", "—" if value is None else value))
    return rows


def _number(x):
    """A float from a JSON value (``"nan"``, ``"inf"`` strings included), or None."""
    if x is None:
        return None
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def sci(x):
    """A relative error for a table cell: ``3.1e-09``, ``0``, or a dash where there is none."""
    x = _number(x)
    if x is None:
        return "—"
    if x == 0:
        return "0"
    return f"{x:.1e}" if math.isfinite(x) else str(x)


def num(x):
    """A value to 6 significant digits, or a dash."""
    x = _number(x)
    return "—" if x is None else f"{x:.6g}"


def full(x):
    """A value with all its digits (17 significant), or a dash."""
    x = _number(x)
    return "—" if x is None else f"{x:.17g}"


def sort_key(x):
    """The ``data-v`` of a numeric cell: the number, or empty (sorted last)."""
    x = _number(x)
    return "" if x is None or not math.isfinite(x) else repr(x)


_ENV.filters.update(sci=sci, full=full, num=num, sort_key=sort_key)
