"""Render a run record to one self-contained HTML page (Jinja2, autoescaped).

The page loads nothing: its CSS and JavaScript are inlined from ``templates/`` and its
figures are inline SVG, and a Content-Security-Policy forbids any fetch besides. Data only
ever reaches the page through autoescaped template variables and escaped SVG text, never
inside the script.
"""

import math
from importlib import resources
from pathlib import Path

import jinja2
import numpy as np
from markupsafe import Markup

from gradverify._runner import COMPARISONS
from gradverify.report import _plots
from gradverify.report._run import check_run

_TEMPLATES = resources.files("gradverify.report") / "templates"
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
# The largest shrunk input shown in full; a larger one is summarized (the JSON has all of it).
SHOWN_ELEMENTS = 200


def render_html(run):
    """The report for a ``gradverify-run/1`` record, as one HTML document.

    Parameters
    ----------
    run : dict
        A run record (:func:`gradverify.report.new_run`, or :func:`load_run` of a saved one).

    Returns
    -------
    str
        A complete HTML page that needs no network and no other file.

    Examples
    --------
    >>> from gradverify.report import new_run, render_html
    >>> page = render_html(new_run({"backend": "numpy"}))
    >>> page.startswith("<!DOCTYPE html>") and "gradverify report" in page
    True
    """
    check_run(run)
    template = _ENV.get_template("report.html.j2")
    return template.render(
        css=Markup((_TEMPLATES / "report.css").read_text(encoding="utf-8")),
        js=Markup((_TEMPLATES / "report.js").read_text(encoding="utf-8")),
        **_context(run),
    )


def write_report(run, path):
    """Render ``run`` and write it to ``path`` (parent directories are created); return the path."""
    path = Path(path)
    page = render_html(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


# Provenance entries the page shows in its header, None when a run lacks them.
_SHOWN = ("backend", "device", "date", "gradverify", "git_commit", "profile", "seed", "seconds")


def _context(run):
    """The template's variables: rows and summaries computed from the run, figures drawn."""
    prov = {**dict.fromkeys(_SHOWN), **run["provenance"]}
    ops = [_op_row(o) for o in run["ops"]]
    checks = [_check_row(c) for c in run["checks"]]
    return {
        "passed": bool(run["passed"]),
        "prov": prov,
        "prov_rows": _flatten(run["provenance"]),
        "summary": _summary(ops, checks),
        "ops": ops,
        "families": sorted({o["family"] for o in ops}),
        "comparisons": list(COMPARISONS.values()),
        "op_failures": [_failure(o["name"], o["raw"]["failure"]) for o in ops if o["raw"].get("failure")],
        "checks": checks,
        "check_failures": [_failure(c["test"], {"result": c["result"], "reproduce": c["reproduce"]}) for c in checks if not c["passed"]],
        "figures": _figures(run),
        "critical": _critical(run["figures"].get("critical_points")),
    }


def _op_row(o):
    stats = []
    for key in COMPARISONS:
        values = _plots.finite_values(o.get(key, []))
        stats.append((float(values.max()) if values.size else None, float(np.median(values)) if values.size else None))
    return {
        "raw": o,
        "name": o["name"],
        "family": o["family"],
        "summary": o.get("summary", ""),
        "examples": o["examples"],
        "passed": bool(o["passed"]),
        "blame": o.get("blame"),
        "kinks": o.get("kinks", 0),
        "stats": stats,
        "seconds": o.get("seconds"),
    }


def _check_row(c):
    result = c["result"]
    return {
        "test": c["test"],
        "result": result,
        "reproduce": c.get("reproduce", ""),
        "function": result.get("function", ""),
        "passed": bool(result["passed"]),
        "blame": result.get("blame"),
        "max_rel_error": _number(result.get("max_rel_error")),
        "truth": result.get("truth", ""),
        "seconds": result.get("seconds"),
    }


def _summary(ops, checks):
    worst = {}
    for j, label in enumerate(COMPARISONS.values()):
        candidates = [(o["stats"][j][0], o["name"]) for o in ops if o["stats"][j][0] is not None]
        worst[label] = max(candidates) if candidates else (None, None)
    return {
        "ops": len(ops),
        "ops_passed": sum(o["passed"] for o in ops),
        "examples": sum(o["examples"] for o in ops),
        "checks": len(checks),
        "checks_passed": sum(c["passed"] for c in checks),
        "failures": sum(not o["passed"] for o in ops) + sum(not c["passed"] for c in checks),
        "worst": worst,
    }


def _failure(name, failure):
    """What a reader needs to act on one failure: input, worst element, values, how to rerun."""
    result = failure.get("result")
    inputs = [_array_text(a) for a in failure.get("inputs", [])]
    worst = None
    if result:
        reports = [p for p in result.get("per_input", []) if p.get("worst")]
        if reports:
            # The input where the analytic side is most wrong: failures first, then the error.
            p = max(reports, key=lambda p: (p.get("failures", 0), _number(p["worst"].get("rel_analytic_truth")) or 0.0, _number(p["worst"].get("rel_analytic_numerical")) or 0.0))
            worst = {"input": p["name"], "shape": p.get("shape"), "dtype": p.get("dtype"), "rtol": p.get("rtol"), **p["worst"]}
    return {
        "name": name,
        "inputs": inputs,
        "params": failure.get("params") or {},
        "report": failure.get("report") or (_report_text(result) if result else ""),
        "structural": (result or {}).get("structural", []),
        "blame": (result or {}).get("blame"),
        "worst": worst,
        "reproduce": failure.get("reproduce") or (result or {}).get("reproduce", ""),
    }


def _report_text(result):
    lines = [f"{'PASSED' if result['passed'] else 'FAILED'} (blame: {result.get('blame')})"]
    lines += [f"{s['kind']}: {s['message']}" for s in result.get("structural", [])]
    return "\n".join(lines)


def _array_text(values):
    a = np.asarray(values, dtype=object if _ragged(values) else None)
    if a.dtype == object:
        return repr(values)
    return np.array2string(a, separator=", ", threshold=SHOWN_ELEMENTS, floatmode="unique", max_line_width=100)


def _ragged(values):
    try:
        np.asarray(values, dtype=float)
    except (ValueError, TypeError):
        return True
    return False


def _figures(run):
    """``{key: {"svg": [...], "notes": [...]}}`` for each figure the run has data for."""
    data = run["figures"]
    out = {}
    errors = _plots.error_distribution(run["ops"])
    if errors is not None:
        out["errors"] = {"svg": [errors], "notes": []}
    for key, draw in (("fd_steps", _plots.fd_steps), ("trajectories", _plots.trajectories), ("activations", _plots.activations)):
        entry = data.get(key)
        if entry is None:
            continue
        if "error" in entry:
            out[key] = {"svg": [], "notes": [f"this figure could not be computed: {entry['error']}"]}
            continue
        drawn = draw(entry)
        out[key] = {"svg": drawn if isinstance(drawn, list) else [drawn], "notes": list(entry.get("notes", []))}
    return out


def _critical(entry):
    """The critical-points section: None without data, else ``{"notes", "points"}`` drawn."""
    if entry is None:
        return None
    if "error" in entry:
        return {"notes": [f"the critical points could not be classified: {entry['error']}"], "points": []}
    points = []
    for i, p in enumerate(entry.get("points", [])):
        row = {"key": "", "title": "", "function": "", "point": "", "verdict": None, "error": None, "note": "", "escape": None, **p}
        if not row["error"]:
            row["svg"] = _plots.eigenvalues(p, f"{i}-{p.get('key', '')}")
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
