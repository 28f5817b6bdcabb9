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

import math
from importlib import resources

import jinja2
import numpy as np
from markupsafe import Markup

from gradverify import _record
from gradverify._record import COMPARISONS, visible
from gradverify.report import _plots

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
        "prov": {**dict.fromkeys(_SHOWN), **run["provenance"]},
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
    }


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
    worst = max(((_error_key(c["result"]["max_rel_error"]), r["nodeid"]) for r, c in checks), default=None)
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
    final = [c for c in failing if (c.get("hypothesis") or {}).get("final")]
    shown = (final or failing)[-SHOWN_FAILURES:] if len(final or failing) > SHOWN_FAILURES else (final or failing)
    worst = max((_error_key(c["result"]["max_rel_error"]) for c in checks), default=None)
    backends = sorted({str(c["backend"]) for c in checks if c.get("backend")})
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
    failure = _failure(check["result"].get("function") or "check", {"result": check["result"], "inputs": check.get("inputs"), "reproduce": check["reproduce"]})
    hypothesis = check.get("hypothesis") or {}
    failure["hypothesis"] = {
        "falsifying_example": hypothesis.get("falsifying_example") or "",
        "reproduce_failure": hypothesis.get("reproduce_failure") or "",
        "seed": hypothesis.get("seed"),
    } if hypothesis else None
    failure["backend"] = check.get("backend") or ""
    return failure


# -- shared -------------------------------------------------------------------------------------


def _failure(name, failure):
    """What a reader needs to act on one failure: input, worst element, values, how to rerun."""
    result = failure.get("result")
    inputs = failure.get("inputs")
    worst = None
    if result:
        reports = [p for p in result.get("per_input", []) if p.get("worst")]
        if reports:
            # The input where the analytic side is most wrong: failures first, then the error.
            p = max(reports, key=lambda p: (p.get("failures", 0), _number(p["worst"].get("rel_analytic_truth")) or 0.0, _number(p["worst"].get("rel_analytic_numerical")) or 0.0))
            worst = {"input": p["name"], "shape": p.get("shape"), "dtype": p.get("dtype"), "rtol": p.get("rtol"), "index": None, "verdict": "", "step": None, "numerical_bracket": None, "truth_bracket": None, **p["worst"]}
    return {
        "name": name,
        "inputs": [_array_text(a) for a in inputs] if isinstance(inputs, list) else [],
        "params": failure.get("params") or {},
        "report": failure.get("report") or "",
        "structural": (result or {}).get("structural", []),
        "blame": (result or {}).get("blame"),
        "worst": worst,
        "reproduce": failure.get("reproduce") or (result or {}).get("reproduce", ""),
        "hypothesis": None,
        "backend": "",
    }


def _array_text(values):
    """An input as text: the numbers in full (up to SHOWN_ELEMENTS), or what a large one was."""
    if isinstance(values, dict):  # the plugin keeps only the shape of a large input
        return f"array of shape {tuple(values.get('shape') or ())}, {values.get('dtype', '?')} (too large to keep)"
    try:
        a = np.asarray(values, dtype=float)
    except (ValueError, TypeError):
        return repr(values)
    return np.array2string(a, separator=", ", threshold=SHOWN_ELEMENTS, floatmode="unique", max_line_width=100)


def _figures(run):
    """The demonstrations: ``{key: {"html": [...], "notes": [...]}}`` for each figure the run has data for."""
    data = run["figures"]
    out = {}
    for key, draw in (("fd_steps", _plots.fd_steps), ("trajectories", _plots.trajectories), ("activations", _plots.activations)):
        entry = data.get(key)
        if entry is None:
            continue
        if "error" in entry:
            out[key] = {"html": [], "notes": [f"this figure could not be computed: {entry['error']}"]}
            continue
        drawn = draw(entry)
        out[key] = {"html": drawn if isinstance(drawn, list) else [drawn], "notes": list(entry.get("notes", []))}
    return out


def _critical(entry):
    """The critical-points demonstration: None without data, else ``{"notes", "points"}`` drawn."""
    if entry is None:
        return None
    if "error" in entry:
        return {"notes": [f"the critical points could not be classified: {entry['error']}"], "points": []}
    points = []
    for i, p in enumerate(entry.get("points", [])):
        row = {"key": "", "title": "", "function": "", "point": "", "verdict": None, "error": None, "note": "", "escape": None, **p}
        if not row["error"]:
            row["svg"] = _plots.eigenvalues(p, f"{i}")
            escape = p.get("escape")
            if escape:
                row["escape"] = {
                    **escape,
                    "rows": [{"h": h, "actual": a, "predicted": q, "ratio": _ratio(a, q)} for h, a, q in escape["rows"]],
                }
        points.append(row)
    return {"notes": list(entry.get("notes", [])), "points": points}


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
