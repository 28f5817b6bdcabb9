"""The HTML report: a catalog run and a test run rendered from their records alone; escaping,
self-containment, interruption, the figures, and both pages measured in a real browser."""

import copy
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from markupsafe import escape

import gradverify
from gradverify import _record
from gradverify._record import new_run
from gradverify.report import _figures, render_html, write_report
from gradverify.report._svg import Axis, Figure, text_width

ROOT = Path(__file__).resolve().parent.parent
EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: reverses the text after it on screen
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
PROVENANCE = {
    "gradverify": gradverify.__version__,
    "git_commit": "0123456789abcdef0123456789abcdef01234567",
    "backend": "numpy",
    "device": "cpu",
    "seed": 1,
    "date": "2026-01-02T03:04:05+00:00",
    "seconds": 12.5,
    "command": "gradverify verify --ops relu,broken_cube --seed 1 --examples 8",
    "versions": {"numpy": np.__version__},
}

# -- the records, as data ------------------------------------------------------------------------
# The inputs of every check below, and what each check's gradient gets wrong.
X_CUBE = [-1.5, 0.25, 2.0]  # the cube's gradient is 0.1 % off where x < 0
X_SIN = [0.3, -1.2]
LONG_NAME = "conv2d_transpose_with_dilation_and_groups_" * 3 + "channels_last"
LONG_NODEID = (
    "tests/test_layers.py::test_conv2d_backward[numpy-float64-stride=(2, 2)-padding=((1, 1), (2, 2))"
    "-dilation=(1, 1)-groups=1-bias=True-channels_last=False-batch=(8, 3, 32, 32)-kernel=(16, 3, 5, 5)]"
)
BLOB = '@reproduce_failure("6.170.17", b"AXicY2BgZGBkAAIAAA0AAw==")'
FALSIFYING = "Falsifying example: test_cube_loss(\n    x=array([-1.5 ,  0.25,  2.  ]),\n)"


def _results():
    """VerificationResult.to_dict() of a right gradient, a wrong one, and a wrongly shaped one."""
    sin = gradverify.check_grad(lambda x: np.sum(np.sin(x)), np.cos, np.array(X_SIN), name="sin_sum")
    cube = gradverify.check_grad(
        lambda x: np.sum(x**3), lambda x: 3 * x**2 * (1 + 1e-3 * (x < 0)), np.array(X_CUBE), name="cube_sum"
    )
    shape = gradverify.check_grad(lambda x: np.sum(x**2), lambda x: 2 * x[:1], np.array(X_SIN), name="square_sum")
    assert sin.passed and not cube.passed and cube.blame == "analytic" and shape.structural
    return sin.to_dict(), cube.to_dict(), shape.to_dict()


@pytest.fixture(scope="module")
def results():
    return _results()


def _check(result, *, inputs=None, hypothesis=None, backend="numpy"):
    check = {"result": result, "reproduce": f"python -m pytest tests/t.py::test; the check itself: {result['reproduce']}", "backend": backend}
    if inputs is not None:
        check["inputs"] = inputs
    if hypothesis is not None:
        check["hypothesis"] = hypothesis
    return check


def _test(nodeid, outcome, checks=(), message=None, duration=0.25):
    checks = [{**c, "reproduce": c["reproduce"].replace("tests/t.py::test", nodeid, 1)} for c in checks]
    return {"nodeid": nodeid, "outcome": outcome, "duration": duration, "message": message, "checks": checks}


def pytest_record(results, *, interrupted=False):
    """A test run with every outcome pytest knows, in an order that is not the report's."""
    sin, cube, shape = results
    numerical_off = {**sin, "blame": "numerical"}  # passed: the truth sided with the analytic gradient
    example = {"final": False}
    final = {"final": True, "reproduce_failure": BLOB, "falsifying_example": FALSIFYING, "seed": "@seed(1234567)"}
    tests = [
        _test("tests/test_layers.py::test_dense_backward[numpy-float64]", "passed", [_check(sin)]),
        _test("tests/test_layers.py::test_softmax_property", "passed", [_check(sin, hypothesis=example)] * 40 + [_check(numerical_off, hypothesis=example)]),
        _test(
            "tests/test_losses.py::test_cube_loss",
            "failed",
            [_check(sin, hypothesis=example)] * 12 + [_check(cube, inputs=[X_CUBE], hypothesis=final)],
            message="gradverify.GradientMismatch: gradverify: FAILED: the analytic gradient is wrong (blame: analytic)",
        ),
        _test("tests/test_losses.py::test_square_shape", "failed", [_check(shape, inputs=[X_SIN])], message="GradientMismatch: gradient_shape"),
        _test("tests/test_io.py::test_loader", "error", message="fixture 'dataset' not found"),
        _test("tests/test_gpu.py::test_cupy_matmul[cupy]", "skipped", message="needs CuPy and a CUDA device"),
        _test("tests/test_known.py::test_known_bug", "xfailed", [_check(cube, inputs=[X_CUBE])], message="reason: issue 12"),
        _test("tests/test_known.py::test_fixed_bug", "xpassed", [_check(sin)]),
        _test(LONG_NODEID, "passed", [_check(sin)] * 3, duration=3.5),
        _test(f"tests/test_names.py::test_user_{RLO}nimda", "passed", [_check(sin)]),
        _test("tests/test_plain.py::test_no_gradient_checks", "passed"),
    ]
    return new_run("pytest", {**PROVENANCE, "command": "python -m pytest --gradverify-report=r.html"}, tests=tests, interrupted=interrupted)


def _op(name, *, passed=True, failure=None, family="layer", summary="", errors=(1e-9, 2e-16, 1e-9), n=8):
    rng = np.random.default_rng(len(name))
    spread = lambda e: [float(e * 10.0 ** -s) for s in rng.uniform(0, 3, n)]  # noqa: E731
    return {
        "name": name,
        "family": family,
        "summary": summary or f"the {name} op",
        "examples": n,
        "passed": passed,
        "blame": None if passed else "analytic",
        "kinks": 0,
        "truth": {"elementwise": n},
        "rel_analytic_numerical": spread(errors[0]),
        "rel_analytic_truth": spread(errors[1]),
        "rel_numerical_truth": spread(errors[2]),
        "failure": failure,
        "seconds": 0.5,
    }


def catalog_record(results, figures, *, interrupted=False):
    """A catalog run: two right ops, a wrong one, one whose property fails, one with a long name."""
    _, cube, _ = results
    ops = [
        _op("relu", summary="rectified linear unit"),
        _op("sigmoid", summary="logistic sigmoid"),
        _op(
            "broken_cube",
            family="loss",
            passed=False,
            errors=(1e-3, 1e-3, 1e-11),
            failure={"inputs": [X_CUBE], "params": {"axis": "-1"}, "report": "gradverify: FAILED ...", "result": cube, "reproduce": "gradverify verify --ops broken_cube --seed 1 --examples 8"},
        ),
        _op("adam", family="optimizer", summary="Adam step with optional bias correction (m, s)"),
        _op(
            "broken_property",
            family="schedule",
            passed=False,
            failure={"inputs": [[0.5]], "params": {}, "report": "property: the schedule is not monotone", "result": None, "reproduce": "gradverify verify --ops broken_property --seed 1 --examples 8"},
        ),
        {**_op(LONG_NAME, summary="a name longer than any column"), "truth_decided": 2, "origin": {"kind": "module", "source": "my_project/ops.py"}},
    ]
    return new_run("catalog", PROVENANCE, ops=ops, figures=figures, interrupted=interrupted)


@pytest.fixture(scope="module")
def figures():
    import array_api_compat.numpy as xp

    return _figures.compute_figures(xp)


@pytest.fixture(scope="module")
def catalog(results, figures):
    return catalog_record(results, figures)


@pytest.fixture(scope="module")
def tests_run(results):
    return pytest_record(results)


def _between(page, start, end):
    page = page[page.index(start) :]
    return page[: page.index(end)]


# -- the public surface and what rendering imports ---------------------------------------------


def test_public_names():
    import gradverify.report

    assert gradverify.report.__all__ == ["compute_figures", "render_html", "write_report"]
    assert gradverify.report.compute_figures is _figures.compute_figures
    for gone in ("new_run", "provenance", "load_run", "write_json", "check_run", "to_json", "describe_device", "git_commit", "SCHEMA"):
        assert not hasattr(gradverify.report, gone)


@pytest.mark.parametrize("name", ["gradverify.report", "gradverify.report._render", "gradverify.report._svg"])
def test_docstring_examples_run(name):
    import doctest
    import importlib

    outcome = doctest.testmod(importlib.import_module(name), report=False)
    assert outcome.failed == 0 and outcome.attempted >= 1


_RENDER_SAVED = """
import sys
from gradverify._record import read_run
from gradverify.report import write_report
write_report(read_run(sys.argv[1]), sys.argv[2])
print(sorted(m for m in sys.modules if m in {"hypothesis", "gradverify.catalog", "gradverify._runner", "gradverify.report._figures", "mpmath"}))
"""


def test_rendering_a_saved_run_imports_no_catalog_hypothesis_or_runner(catalog, tests_run, tmp_path):
    for name, run in (("catalog", catalog), ("pytest", tests_run)):
        saved = _record.write_run(run, tmp_path / f"{name}.json")
        proc = subprocess.run([sys.executable, "-c", _RENDER_SAVED, str(saved), str(tmp_path / f"{name}.html")], capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "[]", f"rendering a saved {name} run imported {proc.stdout.strip()}"
        assert (tmp_path / f"{name}.html").read_text() == render_html(run)


def test_render_validates_the_record(catalog):
    with pytest.raises(gradverify.InvalidArgument, match="not a gradverify-run/2 record"):
        render_html({"ops": []})
    broken = copy.deepcopy(catalog)
    broken["ops"][0]["examples"] = "eight"
    with pytest.raises(gradverify.InvalidArgument, match=r"ops\[0\]\.examples"):
        render_html(broken)
    lying = {**catalog, "passed": True}  # an op failed
    with pytest.raises(gradverify.InvalidArgument, match="'passed' is True but its contents say False"):
        render_html(lying)


def test_write_report_is_atomic(catalog, tmp_path, monkeypatch):
    path = write_report(catalog, tmp_path / "a" / "b" / "report.html")
    assert path.read_text().startswith("<!DOCTYPE html>")
    assert os.stat(path).st_mode & 0o044  # readable by others, as a report should be
    before = path.read_text()
    # Rendering fails: the old page stays whole.
    with pytest.raises(gradverify.InvalidArgument):
        write_report({**catalog, "passed": True}, path)
    # Writing fails half way: the old page stays whole, and no temporary file is left.
    real_fdopen = os.fdopen

    def half_then_fail(fd, *args, **kwargs):
        handle = real_fdopen(fd, *args, **kwargs)
        write = handle.write

        def broken(text):
            write(text[: len(text) // 2])
            raise OSError(28, "No space left on device")

        handle.write = broken
        return handle

    monkeypatch.setattr(os, "fdopen", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        write_report(catalog, path)
    monkeypatch.undo()
    assert path.read_text() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]


def test_the_page_loads_nothing(catalog, tests_run):
    for run in (catalog, tests_run):
        page = render_html(run)
        assert not re.search(r"""(?:src|href|action|xlink:href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
        assert "://" not in page  # no URL of any scheme, not even in text
        assert "@import" not in page and "url(" not in page.replace("url(#clip-", "")
        assert "Content-Security-Policy" in page and "default-src 'none'" in page


# -- a catalog run ------------------------------------------------------------------------------


def test_the_catalog_report_leads_with_what_the_run_verified(catalog):
    page = render_html(catalog)
    order = [page.index(s) for s in ('id="summary"', 'id="op-failures"', 'id="op-table"', 'id="errors"', '<details id="demonstrations">', 'id="provenance"')]
    assert order == sorted(order)
    summary = _between(page, 'id="summary"', "</section>")
    assert "ops verified</div><div class=\"v\">4 / 6" in summary and "examples run</div><div class=\"v\">48" in summary
    # Failures first, in the table and in the failures section, each with its example and rerun line.
    rows = re.findall(r'<tr id="op-\d+" data-name="([^ "]+)', page)
    assert rows[:2] == ["broken_cube", "broken_property"] and len(rows) == 6
    failures = _between(page, 'id="op-failures"', "</section>")
    assert "Failures (2)" in failures
    assert "input 0 = [-1.5 ,  0.25,  2.  ]" in failures and "params: axis=-1" in failures
    assert "gradverify verify --ops broken_cube --seed 1 --examples 8" in failures
    assert '<pre class="mono bad-text what-failed">property: the schedule is not monotone</pre>' in failures  # shown, not folded
    assert 'href="#failure-op-2"' in page and 'id="failure-op-2"' in page  # the row links to its failure
    assert "truth decided (2)" in page and "(from the module my_project/ops.py)" in page  # a newer runner's keys
    # The errors per op are this run's; the demonstrations come after, behind a toggle, so labelled.
    errors = _between(page, 'id="errors"', "</section>")
    assert errors.count("<svg") == 1 and "broken_cube" in errors
    demos = _between(page, '<details id="demonstrations">', "</details>\n")
    assert "Demonstrations" in demos and "the same whichever ops this run verified" in demos
    assert demos.count("<svg") >= 8  # step size, two trajectories, activations, four Hessians
    assert page.count("<svg") == demos.count("<svg") + 1
    assert "all verified" not in page and '<span class="badge bad" id="verdict">FAILED</span>' in page


def test_failure_block_has_the_three_values(catalog):
    page = render_html(catalog)
    worst = next(p["worst"] for p in catalog["ops"][2]["failure"]["result"]["per_input"] if p["failures"])
    block = _between(page, 'id="failure-op-2"', "</article>")
    for key in ("analytic", "numerical", "truth"):
        assert f"{float(worst[key]):.17g}" in block


def test_a_passing_catalog_run_is_all_verified(results, figures):
    run = new_run("catalog", PROVENANCE, ops=[_op("relu")], figures={})
    page = render_html(run)
    assert '<span class="badge ok" id="verdict">all verified</span>' in page
    assert 'id="op-failures"' not in page and "<details id=\"demonstrations\">" not in page  # no figures: no demonstrations


def test_a_figure_that_failed_is_a_note(catalog):
    page = render_html({**catalog, "figures": {"fd_steps": {"error": "ZeroDivisionError: boom"}}})
    assert "this figure could not be computed: ZeroDivisionError: boom" in page


# -- a test run ---------------------------------------------------------------------------------


def _test_rows(page):
    """``[(outcome, nodeid, row html)]`` of the test table, in the page's order."""
    found = re.findall(r'<tbody class="test outcome-(\w+)" id="test-\d+" data-outcome="\1" data-name="([^"]*)">(.*?)</tbody>', page, re.S)
    return [(outcome, html.unescape(name), body) for outcome, name, body in found]


def test_the_test_report_has_one_row_per_test_failures_first(tests_run):
    page = render_html(tests_run)
    rows = _test_rows(page)
    assert len(rows) == len(tests_run["tests"])
    assert [o for o, _, _ in rows] == ["failed", "failed", "error", "xpassed", "xfailed", "skipped"] + ["passed"] * 5
    assert rows[0][1] == "tests/test_losses.py::test_cube_loss"
    assert "gradverify test report" in page and '<span class="badge bad" id="verdict">FAILED</span>' in page


def test_the_header_counts_each_outcome_as_the_record_does(tests_run):
    page = render_html(tests_run)
    counts = {o: sum(t["outcome"] == o for t in tests_run["tests"]) for o in _record.OUTCOMES}
    assert counts == {"passed": 5, "failed": 2, "error": 1, "skipped": 1, "xfailed": 1, "xpassed": 1}
    # As pytest's own summary line words it.
    assert '<p class="pytest-line" id="pytest-line">2 failed, 5 passed, 1 skipped, 1 xfailed, 1 xpassed, 1 error in 12.50s' in page
    for outcome, n in counts.items():
        assert re.search(rf'<input type="checkbox" data-outcome="{outcome}" checked> {n} {outcome}</label>', page)


def test_a_test_row_aggregates_its_checks(tests_run):
    rows = {name: body for _, name, body in _test_rows(render_html(tests_run))}
    cube = rows["tests/test_losses.py::test_cube_loss"]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", cube.split('<tr class="detail">')[0], re.S)
    worst = _record.number(tests_run["tests"][2]["checks"][-1]["result"]["max_rel_error"])
    assert cells[2].startswith("13 ") and "(1 failed)" in cells[2]
    assert cells[3] == f"{worst:.1e}"
    assert cells[4] == "analytic: the hand-written gradient is wrong"
    softmax = rows["tests/test_layers.py::test_softmax_property"]
    assert ">41</td>" in softmax and "the truth sided with the analytic gradient" in softmax
    assert "<td>analytic: the hand-written gradient is wrong (gradient_shape)</td>" in rows["tests/test_losses.py::test_square_shape"]
    assert "fixture &#39;dataset&#39; not found" in rows["tests/test_io.py::test_loader"]
    plain = rows["tests/test_plain.py::test_no_gradient_checks"]
    assert plain.count("—") == 4  # no checks: no count, no error, no blame, no backend


def test_the_failing_example_is_shown(tests_run):
    rows = {name: body for _, name, body in _test_rows(render_html(tests_run))}
    cube = rows["tests/test_losses.py::test_cube_loss"]
    detail = cube[cube.index('<tr class="detail">') :]
    assert "<details open>" in detail  # a failure's details are open, an expected failure's closed
    assert "Shrunk input (the smallest failing example Hypothesis found)" in detail
    assert "input 0 = [-1.5 ,  0.25,  2.  ]" in detail
    assert escape(FALSIFYING) in detail
    assert escape(BLOB) in detail and "@seed(1234567)" in detail
    assert "python -m pytest tests/test_losses.py::test_cube_loss" in detail
    assert detail.count('<article class="failure check">') == 1  # the final replay, not the passing examples
    assert "<details>" in rows["tests/test_known.py::test_known_bug"] and "(expected to fail)" in rows["tests/test_known.py::test_known_bug"]
    shape = rows["tests/test_losses.py::test_square_shape"]
    assert "structural gradient_shape [input 0]" in shape and "<h4>Input</h4>" in shape


def test_a_large_input_is_described_not_shown(results):
    _, cube, _ = results
    big = [_test("tests/t.py::test_big", "failed", [_check(cube, inputs=[{"shape": [1000, 1000], "dtype": "float32"}])])]
    page = render_html(new_run("pytest", PROVENANCE, tests=big))
    assert "array of shape (1000, 1000), float32 (too large to keep)" in page


def test_a_passing_test_run(results):
    sin, _, _ = results
    run = new_run("pytest", PROVENANCE, tests=[_test("tests/t.py::test_a", "passed", [_check(sin)]), _test("tests/t.py::test_b", "skipped", message="no GPU")])
    page = render_html(run)
    assert '<span class="badge ok" id="verdict">passed</span>' in page and "1 passed, 1 skipped" in page
    assert 'class="detail"' not in page


# -- interruption, escaping, bidirectional text ------------------------------------------------


def test_an_interrupted_run_says_so_and_never_all_verified(results, figures):
    sin, _, _ = results
    passing_catalog = new_run("catalog", PROVENANCE, ops=[_op("relu")], figures={}, interrupted=True)
    passing_tests = new_run("pytest", PROVENANCE, tests=[_test("tests/t.py::test_a", "passed", [_check(sin)])], interrupted=True)
    for run in (passing_catalog, passing_tests, catalog_record(results, figures, interrupted=True), pytest_record(results, interrupted=True)):
        page = render_html(run)
        assert run["passed"] is False
        assert 'id="interrupted" role="alert"' in page and "INTERRUPTED — partial results." in page
        assert page.index('id="interrupted"') < page.index('id="summary"')  # above everything it qualifies
        assert '<span class="badge bad" id="verdict">INTERRUPTED</span>' in page
        assert "all verified" not in page and ">passed</span>" not in page.split('id="summary"')[0]


def _evil(run):
    """The run with every piece of text the page shows replaced by a script tag (and a bidi override)."""
    evil = copy.deepcopy(run)
    bad = EVIL + RLO
    for o in evil["ops"]:
        o["name"], o["family"], o["summary"] = f"op{bad}", f"fam{bad}", bad
        if o["failure"]:
            o["failure"].update(report=bad, reproduce=f"gradverify {bad}", params={bad: bad}, inputs=[[bad]])
            if o["failure"]["result"]:
                o["failure"]["result"]["per_input"][0]["name"] = bad
                o["failure"]["result"]["structural"] = [{"kind": bad, "message": bad, "input": None, "blame": "analytic"}]
    for t in evil["tests"]:
        t["nodeid"], t["message"] = f"tests/t.py::test_{bad}", bad
        for c in t["checks"]:
            c.update(reproduce=bad, backend=bad)
            c["result"]["function"] = bad
            if "hypothesis" in c:
                c["hypothesis"].update(falsifying_example=bad, reproduce_failure=bad, seed=bad)
    evil["provenance"].update(backend=bad, device=bad, git_commit=bad, command=bad, extra={bad: bad})
    if evil["figures"]:
        evil["figures"]["fd_steps"]["curves"][0]["op"] = bad
        evil["figures"]["trajectories"]["problems"][0]["title"] = bad
        evil["figures"]["trajectories"]["notes"] = [bad]
        evil["figures"]["critical_points"]["points"][0].update(title=bad, function=bad, point=bad, verdict=bad, note=bad)
    evil["passed"] = _record.run_passed(evil)
    return evil


def test_text_from_the_data_is_escaped_never_run(catalog, results):
    for run in (catalog, pytest_record(results, interrupted=True)):
        page = render_html(_evil(run))
        assert EVIL not in page and "alert(1)</script>" not in page
        assert page.count(ESCAPED) >= 20
        assert page.count("<script") == 1  # the page's own, which holds no data
        script = page[page.index("<script>") : page.index("</script>")]
        assert "alert" not in script


def test_bidirectional_controls_are_shown_never_applied(catalog, tests_run):
    for run in (catalog, tests_run):
        page = render_html(_evil(run))
        assert not _record.BIDI_CONTROLS.intersection(page)
        assert page.count("&lt;U+202E&gt;") >= 20  # in text, in attributes and in the figures' SVG
    page = render_html(tests_run)
    assert 'data-name="tests/test_names.py::test_user_&lt;U+202E&gt;nimda"' in page
    svg = _between(render_html(_evil(catalog)), '<section id="errors"', "</section>")
    assert "op&lt;script&gt;alert(1)&lt;/script&gt;&lt;U+202E&gt;" in svg  # an op's name as an axis label


# Where a record holds optional parts that validation does not type (what a failure holds
# inside, Hypothesis' notes, provenance, the figures), and what a damaged file may put there.
_OPTIONAL_OP = [("failure", "inputs"), ("failure", "inputs", 0), ("failure", "params"), ("failure", "report"), ("failure", "reproduce"), ("failure", "result"),
                ("failure", "result", "per_input"), ("failure", "result", "per_input", 0), ("failure", "result", "per_input", 0, "worst"),
                ("failure", "result", "per_input", 0, "worst", "index"), ("failure", "result", "per_input", 0, "worst", "numerical_bracket"),
                ("failure", "result", "per_input", 0, "worst", "analytic"), ("failure", "result", "structural"), ("failure", "result", "blame")]
_OPTIONAL_CHECK = [("inputs",), ("inputs", 0), ("hypothesis",), ("hypothesis", "falsifying_example"), ("hypothesis", "seed"), ("backend",),
                   ("result", "per_input", 0, "worst"), ("result", "per_input", 0, "worst", "truth_bracket"), ("result", "structural")]
_OPTIONAL_RUN = [("provenance", "git_commit"), ("provenance", "seconds"), ("provenance", "seed"), ("provenance", "versions"),
                 ("figures", "fd_steps"), ("figures", "fd_steps", "curves"), ("figures", "trajectories", "problems", 0), ("figures", "trajectories", "notes"),
                 ("figures", "activations", "x"), ("figures", "critical_points"), ("figures", "critical_points", "points", 0),
                 ("figures", "critical_points", "points", 0, "eigenvalues"), ("figures", "critical_points", "points", 0, "escape")]
_DAMAGE = (None, 7, "text", [], {"a": [1]}, [{"a": 1}])


def _set(record, path, value):
    for key in path[:-1]:
        record = record[key]
    record[path[-1]] = value


def test_a_damaged_optional_part_never_breaks_the_page(catalog, tests_run):
    """Rendering a damaged file either gives a page or says which field is bad, never a traceback."""
    plain = {**catalog, "figures": {}}
    cases = [(plain, ("ops", 2, *path)) for path in _OPTIONAL_OP]
    cases += [(tests_run, ("tests", 2, "checks", 12, *path)) for path in _OPTIONAL_CHECK]
    cases += [({**catalog, "figures": {path[1]: catalog["figures"][path[1]]}} if path[0] == "figures" else plain, path) for path in _OPTIONAL_RUN]
    rendered = 0
    for record, path in cases:
        for value in _DAMAGE:
            damaged = copy.deepcopy(record)
            _set(damaged, path, value)
            try:
                page = render_html(damaged)
            except gradverify.InvalidArgument:
                continue  # a required field: validation names it
            assert page.startswith("<!DOCTYPE html>"), path
            rendered += 1
    assert rendered > 0.8 * len(cases) * len(_DAMAGE)
    page = render_html({**catalog, "figures": {**catalog["figures"], "activations": {"x": 7}}})
    assert "this figure&#39;s data in the record is damaged (TypeError" in page


# -- figures: the demonstrations' data ---------------------------------------------------------


def test_fd_error_is_a_v_with_gradverify_step_near_its_bottom(figures):
    fd = figures["fd_steps"]
    steps = np.array(fd["steps"])
    for curve in fd["curves"]:
        errors = np.array(curve["errors"])
        best = steps[np.argmin(errors)]
        assert errors.min() < 1e-9 and errors[0] > 1e-5 and errors[-1] > 1e-4  # truncation, rounding
        assert 1e-2 < best / curve["chosen_step"] < 1e2  # the chosen step is near the bottom
        assert curve["chosen_error"] < 1e-3 * min(errors[0], errors[-1])


def test_sgd_bounces_across_the_valley_and_adaptive_methods_escape_the_saddle(figures):
    traj = figures["trajectories"]
    assert traj["notes"] == []
    valley, saddle = ({p["optimizer"]: np.array(p["points"]) for p in problem["paths"]} for problem in traj["problems"])
    assert set(valley) == set(_figures.OPTIMIZERS)
    assert np.sum(np.diff(np.sign(valley["sgd"][:, 1])) != 0) > 20  # y changes sign step after step
    assert abs(valley["momentum"][-1, 0]) < abs(valley["sgd"][-1, 0])  # momentum got further
    assert abs(saddle["adam"][-1, 1]) > 10 * abs(saddle["sgd"][-1, 1])


def test_activation_derivatives_vanish(figures):
    sig, tanh = (np.array(c["derivative"]) for c in figures["activations"]["curves"])
    assert sig.max() == pytest.approx(0.25) and tanh.max() == pytest.approx(1.0)
    assert sig[0] < 1e-5 and tanh[0] < 1e-9


def test_trajectories_without_the_optimizers_module_leave_a_note(monkeypatch, catalog):
    import array_api_compat.numpy as xp

    monkeypatch.setitem(sys.modules, "gradverify.catalog.optimizers", None)  # import -> ImportError
    data = _figures.trajectories(xp)
    assert all(p["paths"] == [] and p["contours"] for p in data["problems"])
    (note,) = data["notes"]
    assert "gradverify.catalog.optimizers cannot be imported" in note
    page = render_html({**catalog, "figures": {"trajectories": data}})
    assert "cannot be imported" in page


def _critical_articles(page):
    """``{key: html}`` of each critical point's article in the page."""
    section = _between(page, '<section id="critical-points"', "</section>")
    parts = section.split('<article class="critical" id="critical-')[1:]
    return {part[: part.index('"')]: part for part in parts}


def test_critical_points_section_shows_the_verdicts(catalog, figures):
    points = {p["key"]: p for p in figures["critical_points"]["points"]}
    verdicts = {key: p["verdict"] for key, p in points.items()}
    assert verdicts == {
        "two-weight-origin": "saddle",
        "two-weight-one": "degenerate",  # eigenvalues 0 and 4: flat along the valley w1 w2 = 1
        "linear-network-origin": "saddle",
        "convex-quadratic": "local minimum",
    }
    assert points["two-weight-origin"]["eigenvalues"] == pytest.approx([-2.0, 2.0])
    assert points["two-weight-one"]["eigenvalues"] == pytest.approx([0.0, 4.0], abs=1e-6)
    assert all(p["critical"] and p["grad_norm"] <= p["gtol"] for p in points.values())
    articles = _critical_articles(render_html(catalog))
    assert set(articles) == set(points)
    for key, text in articles.items():
        assert f'<span class="badge verdict">{verdicts[key]}</span>' in text
        assert f'<p class="chart-title">Hessian eigenvalues: {verdicts[key]}</p>' in text  # HTML: it wraps
    assert "within etol of zero" in articles["two-weight-one"]  # classify's own note
    assert "Escape step" in articles["two-weight-origin"] and "Escape step" not in articles["convex-quadratic"]


def test_the_eigenvalue_chart_has_one_bar_per_eigenvalue(catalog, figures):
    points = {p["key"]: p for p in figures["critical_points"]["points"]}
    articles = _critical_articles(render_html(catalog))
    for key, p in points.items():
        svg = _between(articles[key], "<svg", "</svg>")
        lam = np.array(p["eigenvalues"])
        assert svg.count('class="eigenvalue"') == lam.size
        assert svg.count('fill="#D55E00"><title>λ') == int(np.sum(lam < -p["etol"]))  # negative ones in their own colour
        assert svg.count('fill="#0072B2"><title>λ') == int(np.sum(lam > p["etol"]))
        assert 'stroke="#333333" stroke-dasharray="none"' in svg  # the zero line
    assert int(np.sum(np.array(points["linear-network-origin"]["eigenvalues"]) < 0)) == 4


def test_the_saddle_escape_step_lowers_f_by_half_lambda_h_squared(catalog, figures):
    points = {p["key"]: p for p in figures["critical_points"]["points"]}
    for key in ("two-weight-origin", "linear-network-origin"):
        escape = points[key]["escape"]
        lam = escape["eigenvalue"]
        assert lam == pytest.approx(min(points[key]["eigenvalues"])) and lam < 0
        assert np.linalg.norm(escape["direction"]) == pytest.approx(1.0)
        h, actual, predicted = np.array(escape["rows"]).T
        assert np.all(actual < 0) and np.all(np.diff(np.abs(actual)) < 0)  # f falls, less for smaller h
        assert predicted == pytest.approx(0.5 * lam * h**2)
        ratio = actual / predicted
        assert np.all(np.abs(ratio - 1) < 0.1)
        assert abs(ratio[-1] - 1) <= abs(ratio[0] - 1) + 1e-9  # closer to ½ λ h² as h shrinks
    for point in points.values():
        if point["verdict"] != "saddle":
            assert point["escape"] is None
    table = _critical_articles(render_html(catalog))["two-weight-origin"]
    table = table[table.index('<table class="escape">') :]
    assert "<th>½ λ h²</th>" in table and "-0.009975" in table and "-0.01<" in table


def test_critical_points_degrade_to_notes(monkeypatch, catalog):
    import array_api_compat.numpy as xp

    from gradverify import critical

    def broken(*args, **kwargs):
        raise RuntimeError("no Hessian today")

    monkeypatch.setattr(critical, "classify", broken)
    data = _figures.compute_figures(xp)["critical_points"]
    assert all(p["error"] == "RuntimeError: no Hessian today" for p in data["points"])
    page = render_html({**catalog, "figures": {"critical_points": data}})
    assert page.count("classify failed here: RuntimeError: no Hessian today") == len(data["points"])
    assert 'class="eigenvalue"' not in page

    monkeypatch.setitem(sys.modules, "gradverify.critical", None)  # import -> ImportError
    monkeypatch.delattr(gradverify, "critical", raising=False)
    data = _figures.compute_figures(xp)["critical_points"]
    assert data["error"].startswith("ModuleNotFoundError: import of gradverify.critical halted")
    page = render_html({**catalog, "figures": {"critical_points": data}})
    assert "<h2>Critical points</h2>" in page and "the critical points could not be classified: ModuleNotFoundError" in page


# -- the SVG helper ------------------------------------------------------------------------------


def test_svg_helper_axes_and_escaping():
    log = Axis(1e-8, 1.0, log=True)
    assert log.fraction(1e-4) == pytest.approx(0.5) and log.fraction(0.0) is None and log.fraction(float("nan")) is None
    assert [v for v, _ in log.ticks()] == [10.0**k for k in range(-8, 1)]
    assert [v for v, _ in Axis(0, 1).ticks()] == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    with pytest.raises(ValueError):
        Axis(0, 1, log=True)
    fig = Figure("k", x=Axis(1e-3, 1, log=True), y=Axis(0, 1), title=EVIL + RLO)
    fig.line([1e-3, 0.0, 1e-2, 1e-1], [0.1, 0.2, 0.5, 0.9], color="#000", label=EVIL)  # 0: a gap
    fig.note(EVIL)
    chart = str(fig.html())
    assert EVIL not in chart and chart.count(ESCAPED) == 4  # <title>, HTML title, legend, note
    assert RLO not in chart and "&lt;U+202E&gt;" in chart
    assert chart.count("<polyline") == 2  # broken where the value cannot be drawn


def test_svg_margins_are_sized_from_their_text():
    names = ["relu", "x" * 200]
    fig = Figure("k", x=Axis(1e-18, 10, log=True), y=Axis(-0.5, 1.5, ticks=list(enumerate(names))), width=300, height=60, max_label=240)
    assert 240 <= fig.left <= 240 + 10  # room for the widest label it keeps
    chart = str(fig.html())
    assert "x" * 200 not in chart.replace("<title>" + "x" * 200 + "</title>", "")  # cut to the room it has...
    assert "…" in chart and "<title>" + "x" * 200 + "</title>" in chart  # ...and in full as its tooltip
    fig = Figure("k", x=Axis(0, 1), y=Axis(0, 1), width=100, height=50)
    fig.legend("#000", "a legend entry much wider than the plotting frame itself")
    width = int(re.search(r'viewBox="0 0 (\d+)', str(fig.html())).group(1))
    assert width >= fig.left + 26 + text_width("a legend entry much wider than the plotting frame itself")
    assert text_width("mmm") > text_width("aaa") > text_width("iii") > 0


# -- a real browser --------------------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--hide-scrollbars",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # nothing resolves: a fetch fails, never leaks
]
WIDTH = 1400


def _chromium(page, tmp_path, *extra):
    """Open ``page`` in headless Chromium: (stdout, stderr log, URLs the page requested)."""
    netlog = tmp_path / "net.json"
    proc = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--log-net-log={netlog}", *extra, page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr, _page_requests(netlog)


def _page_requests(netlog):
    """Non-file URLs that a file:// page started loading, from Chromium's net log.

    Chromium's own background traffic (time sync, accounts) shows too; what the page loads
    carries the page's file:// origin in its network isolation key.
    """
    log = json.loads(netlog.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log["events"]:
        params = event.get("params", {})
        if event["type"] == start_job and "url" in params and "file://" in params.get("network_isolation_key", ""):
            if not params["url"].startswith("file:"):
                urls.append(params["url"])
    return urls


def _console_problems(log):
    return [line for line in log.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


# Run in the page once it has loaded: opens every <details> (the demonstrations, the failing
# examples), then measures. Horizontal overflow: the document against the window; every
# table against its container, every cell's content against the cell, every element in a
# cell against the cell; pre, figures, articles and sections against their own box. Clipped
# text: every SVG <text>'s box on screen inside its <svg>, and (untransformed text) its
# getBBox() inside the viewBox. The result is written into the page as JSON for --dump-dom.
_MEASURE = """<script>
(function () {
  "use strict";
  Array.prototype.forEach.call(document.querySelectorAll("details"), function (d) { d.open = true; });
  var root = document.documentElement;
  var out = {innerWidth: window.innerWidth, scrollWidth: root.scrollWidth, height: root.scrollHeight,
             tables: 0, cells: 0, svgs: 0, texts: 0, overflowing: [], clipped: [], interactions: {}};
  function describe(el) {
    var cls = typeof el.className === "string" && el.className ? "." + el.className.trim().split(/\\s+/).join(".") : "";
    return el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + cls + " '" + (el.textContent || "").trim().slice(0, 50) + "'";
  }
  function outside(inner, outer) { return inner.left < outer.left - 1 || inner.right > outer.right + 1; }
  Array.prototype.forEach.call(document.querySelectorAll("table"), function (table) {
    out.tables++;
    if (outside(table.getBoundingClientRect(), table.parentElement.getBoundingClientRect())) {
      out.overflowing.push("table wider than its container: " + describe(table));
    }
    Array.prototype.forEach.call(table.querySelectorAll("th, td"), function (cell) {
      out.cells++;
      if (cell.scrollWidth > cell.clientWidth + 1) { out.overflowing.push("content wider than its cell: " + describe(cell)); }
      var box = cell.getBoundingClientRect();
      Array.prototype.forEach.call(cell.querySelectorAll("*"), function (el) {
        if (el.closest("td, th") === cell && outside(el.getBoundingClientRect(), box)) {
          out.overflowing.push("element outside its cell: " + describe(el));
        }
      });
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll("pre, .chart, figure, article, section, .cards, .card"), function (el) {
    if (el.scrollWidth > el.clientWidth + 1) { out.overflowing.push("content wider than its box: " + describe(el)); }
  });
  Array.prototype.forEach.call(document.querySelectorAll("svg"), function (svg) {
    out.svgs++;
    var frame = svg.getBoundingClientRect(), view = svg.viewBox.baseVal;
    if (outside(frame, svg.parentElement.getBoundingClientRect())) { out.overflowing.push("svg wider than its container: " + describe(svg)); }
    Array.prototype.forEach.call(svg.querySelectorAll("text"), function (text) {
      out.texts++;
      var r = text.getBoundingClientRect();
      if (r.left < frame.left - 0.5 || r.right > frame.right + 0.5 || r.top < frame.top - 0.5 || r.bottom > frame.bottom + 0.5) {
        out.clipped.push("text outside its svg: " + describe(text));
      } else if (!text.hasAttribute("transform")) {
        var b = text.getBBox();
        if (b.x < view.x - 0.5 || b.x + b.width > view.x + view.width + 0.5 || b.y < view.y - 0.5 || b.y + b.height > view.y + view.height + 0.5) {
          out.clipped.push("text outside the viewBox: " + describe(text));
        }
      }
    });
  });
  function shown(selector) {
    return Array.prototype.filter.call(document.querySelectorAll(selector), function (el) { return !el.hidden; })
      .map(function (el) { return el.getAttribute("data-name"); });
  }
  function type(id, value) {
    var box = document.getElementById(id);
    box.value = value;
    box.dispatchEvent(new Event("input"));
  }
  if (document.getElementById("test-table")) {  // a reader filters the test report
    var passed = document.querySelector('#test-controls input[data-outcome="passed"]');
    passed.click();
    out.interactions.without_passed = shown("#test-table > tbody");
    out.interactions.count_without_passed = document.getElementById("test-count").textContent;
    type("test-filter", "TEST_LOSSES");
    out.interactions.losses_without_passed = shown("#test-table > tbody");
    passed.click();
    type("test-filter", "");
    out.interactions.all = shown("#test-table > tbody");
  }
  if (document.getElementById("op-table")) {  // ... and sorts and filters the ops
    document.querySelector("#op-table thead tr:nth-child(2) th:nth-child(3)").click();  // analytic ~ truth, worst
    out.interactions.by_error = shown("#op-table tbody tr").map(function (n) { return n.split(" ")[0]; });
    type("op-filter", "sig");
    out.interactions.sig = shown("#op-table tbody tr").map(function (n) { return n.split(" ")[0]; });
    out.interactions.count_sig = document.getElementById("op-count").textContent;
  }
  var pre = document.createElement("pre");
  pre.id = "gv-measure";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}());
</script>"""
_OPEN_ALL = """<script>Array.prototype.forEach.call(document.querySelectorAll("details"), function (d) { d.open = true; });</script>"""


def _measure(page_html, tmp_path, name):
    """Open the page at WIDTH px with the measuring script: (measurements, console problems, requests)."""
    page = tmp_path / f"{name}-measured.html"
    page.write_text(page_html.replace("</body>", _MEASURE + "</body>"))
    dom, log, requests = _chromium(page, tmp_path, f"--window-size={WIDTH},900", "--dump-dom")
    found = re.search(r'<pre id="gv-measure">(.*?)</pre>', dom, re.S)
    assert found, "the measuring script did not run"
    return json.loads(html.unescape(found.group(1))), _console_problems(log), requests


def _screenshot(page_html, tmp_path, name, height):
    """A screenshot of the whole page, every <details> open, into reports/screenshots/ (ignored by git)."""
    page = tmp_path / f"{name}-open.html"
    page.write_text(page_html.replace("</body>", _OPEN_ALL + "</body>"))
    shots = ROOT / "reports" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / f"{name}.png"
    _chromium(page, tmp_path, f"--screenshot={shot}", f"--window-size={WIDTH},{min(max(height, 900), 16000)}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    return shot


def _assert_fits(m):
    assert m["innerWidth"] == WIDTH
    assert m["scrollWidth"] <= WIDTH, f"the page is {m['scrollWidth']} px wide in a {WIDTH} px window"
    assert m["overflowing"] == []
    assert m["clipped"] == []


needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium); not installed here")


@needs_chromium
def test_the_browser_checks_can_fail(tmp_path):
    """A page that overflows, clips an SVG title, fetches and throws is caught by the same
    checks that the reports pass."""
    bad = (
        '<!DOCTYPE html><html><body style="margin:0"><div style="width:300px"><table><tr><td style="white-space:nowrap">'
        + "a very long cell " * 20
        + '</td></tr></table></div><svg viewBox="0 0 100 40" width="100" height="40"><text x="2" y="18">a title much wider than its figure</text></svg>'
        + '<img src="http://example.invalid/x.png"><script>noSuchFunction();</script></body></html>'
    )
    m, problems, requests = _measure(bad, tmp_path, "bad")
    assert m["scrollWidth"] > WIDTH
    assert any(p.startswith("table wider than its container") for p in m["overflowing"])
    assert any("a title much wider" in p for p in m["clipped"])
    assert requests == ["http://example.invalid/x.png"]
    assert any("Uncaught ReferenceError" in line for line in problems)


@needs_chromium
def test_the_catalog_report_in_chromium_at_1400px(catalog, tmp_path):
    page = render_html(catalog)
    m, problems, requests = _measure(page, tmp_path, "catalog")
    _assert_fits(m)
    assert problems == [] and requests == []
    assert m["svgs"] == page.count("<svg") >= 9 and m["texts"] > 100  # the demonstrations were measured too
    # The table sorts by the worst analytic ~ truth error (the broken ops last) and filters by name.
    assert m["interactions"]["by_error"][-1] == "broken_cube"
    assert m["interactions"]["sig"] == ["sigmoid"] and m["interactions"]["count_sig"] == "1 of 6 ops"
    _screenshot(page, tmp_path, "catalog", m["height"])


@needs_chromium
def test_the_test_report_in_chromium_at_1400px(tests_run, tmp_path):
    page = render_html(tests_run)
    m, problems, requests = _measure(page, tmp_path, "pytest")
    _assert_fits(m)
    assert problems == [] and requests == []
    names = [t["nodeid"] for t in tests_run["tests"]]
    shown = lambda ids: sorted(_record.visible(i) for i in ids)  # noqa: E731
    interactions = m["interactions"]
    assert sorted(interactions["all"]) == shown(names)
    assert sorted(interactions["without_passed"]) == shown(t["nodeid"] for t in tests_run["tests"] if t["outcome"] != "passed")
    assert interactions["count_without_passed"] == "6 of 11 tests"
    assert sorted(interactions["losses_without_passed"]) == ["tests/test_losses.py::test_cube_loss", "tests/test_losses.py::test_square_shape"]
    _screenshot(page, tmp_path, "pytest", m["height"])


def _mean_pool(x):
    return x.mean(axis=0)


def _mean_pool_vjp(v, x):
    return (np.broadcast_to(v / np.squeeze(x).shape[0], x.shape),)  # wrong for a batch of one


def _explore_run():
    """A test run whose one check passed on its example and failed on a variant (explore=)."""
    found = gradverify.check_vjp(_mean_pool, _mean_pool_vjp, np.random.default_rng(0).normal(size=(4, 3)), explore=20)
    assert found.explore.finding is not None
    check = _check(found.to_dict(), inputs=[[[0.1, 0.2, 0.3]] * 4])
    return new_run("pytest", {**PROVENANCE, "command": "python -m pytest --gradverify-explore=20"}, tests=[_test("tests/test_pool.py::test_mean_pool", "failed", [check])])


def test_a_finding_on_a_variant_shows_the_variant_and_its_worst_element():
    page = render_html(_explore_run())
    block = _between(page, "Found on a variant of the example", "The example (where the check passed)")
    assert "(gradient in the backward)" in block and "n1 = 1 (was 4)" in block
    assert "Reproduce the variant" in block and "np.asarray([[0.1257302210933933" in block
    # The worst element is the variant's (0.667 off), not the example's (all agree).
    assert "0.041910073697797763" in page and "(analytic)" in page


@needs_chromium
def test_a_finding_on_a_variant_in_chromium_at_1400px(tmp_path):
    page = render_html(_explore_run())
    m, problems, requests = _measure(page, tmp_path, "explore")
    _assert_fits(m)
    assert problems == [] and requests == []
    _screenshot(page, tmp_path, "pytest-explore", m["height"])


def test_warned_checks_and_ops_are_listed_under_their_counts(results, catalog):
    sin = results[0]
    warned = {**sin, "warnings": ["vacuous check of input 0: a zero gradient would pass at all 3 elements", "mutation test of input 0: the check would pass the mutant scale_one_element"]}
    run = new_run("pytest", PROVENANCE, tests=[_test("tests/t.py::test_w", "passed", [_check(sin), _check(warned), _check(warned)])])
    rows = {name: body for _, name, body in _test_rows(render_html(run))}
    row = rows["tests/t.py::test_w"]
    assert "<summary>2 warned</summary>" in row and row.count("vacuous check of input 0") == 1 and "scale_one_element" in row
    ops = copy.deepcopy(catalog)
    ops["ops"][0].update(warned=3, warnings=["vacuous check of input 1: a zero gradient would pass at all 1 elements"])
    page = render_html(ops)
    assert f"<summary>warned at 3 of {ops['ops'][0]['examples']}</summary>" in page and "vacuous check of input 1" in page
    assert page.count("warned at") == 1  # the other ops did not warn
