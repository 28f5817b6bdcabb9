"""The HTML report: rendering saved runs, escaping, self-containment, figures, a real browser."""

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st

import gradverify
from gradverify import catalog
from gradverify.__main__ import main
from gradverify.catalog import Example, Op
from gradverify.report import check_run, compute_figures, git_commit, load_run, new_run, render_html, to_json, write_report
from gradverify.report import _figures
from gradverify.report._svg import Axis, Figure

ROOT = Path(__file__).resolve().parent.parent
EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


def _cube_forward(x):
    return x * x * x, x


def _cube_backward(dout, x):
    return (dout * 3.0 * x * x * (1.0 + 1e-3 * (x < 0)),)  # off by 0.1 % for negative x


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A CLI run over two real ops and one broken op: (run.json path, index.html path)."""
    examples = st.builds(lambda xs: Example((np.array(xs),)), st.lists(st.floats(-4, 4, allow_nan=False), min_size=1, max_size=4))
    op = catalog.register(Op("broken_cube", "loss", _cube_forward, _cube_backward, lambda: examples, "x**3, 0.1 % off for x < 0"))
    out = tmp_path_factory.mktemp("run")
    try:
        status = main(["verify", "--ops", "relu,sigmoid,broken_cube", "--examples", "8", "--seed", "1", "--json", str(out / "run.json"), "--report", str(out / "index.html")])
    finally:
        del catalog._REGISTRY[op.name]
    assert status == 1
    return out / "run.json", out / "index.html"


@pytest.fixture(scope="module")
def run(saved_run):
    return load_run(saved_run[0])


def test_public_names():
    import gradverify.report

    assert gradverify.report.__all__ == [
        "SCHEMA",
        "check_run",
        "compute_figures",
        "describe_device",
        "git_commit",
        "load_run",
        "new_run",
        "provenance",
        "render_html",
        "to_json",
        "write_json",
        "write_report",
    ]


def test_git_commit_outside_a_checkout_is_none(tmp_path):
    assert git_commit(tmp_path) is None


def test_the_page_shows_summary_ops_failures_and_figures(saved_run):
    page = saved_run[1].read_text()
    for needle in ('id="summary"', "ops verified", "examples run", 'id="op-table"', 'id="op-failures"', "Shrunk input", "Reproduce"):
        assert needle in page
    assert "gradverify verify --ops broken_cube --seed 1 --examples 8" in page
    assert page.count("<svg") >= 5  # errors, step size, two trajectory panels, activations
    assert 'data-family="loss"' in page and '<option value="layer">' in page


def test_rendering_a_saved_run_gives_the_same_page(saved_run, run):
    # Only the run's own data goes into the page: rendering it again changes nothing.
    assert render_html(run) == saved_run[1].read_text()
    assert json.loads(to_json(run)) == run


def test_failure_block_has_the_three_values(run):
    (failed,) = [o for o in run["ops"] if not o["passed"]]
    worst = next(p["worst"] for p in failed["failure"]["result"]["per_input"] if p["failures"])
    page = render_html(run)
    for key in ("analytic", "numerical", "truth"):
        assert f"{float(worst[key]):.17g}" in page


def test_no_external_references(saved_run):
    page = saved_run[1].read_text()
    assert not re.search(r"""(?:src|href|action|xlink:href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert "://" not in page  # no URL of any scheme, not even in text
    assert "@import" not in page and "url(" not in page.replace("url(#clip-", "")
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def _evil_run(run):
    """The run with every piece of text the page shows replaced by a script tag."""
    evil = copy.deepcopy(run)
    for o in evil["ops"]:
        o["name"], o["family"], o["summary"] = f"op{EVIL}", f"fam{EVIL}", EVIL
        if o["failure"]:
            o["failure"].update(report=EVIL, reproduce=f"gradverify {EVIL}", params={EVIL: EVIL})
            o["failure"]["inputs"] = [[EVIL]]
            o["failure"]["result"]["per_input"][0]["name"] = EVIL
    evil["provenance"].update(backend=EVIL, device=EVIL, git_commit=EVIL, extra={EVIL: EVIL})
    evil["figures"]["fd_steps"]["curves"][0]["op"] = EVIL
    evil["figures"]["trajectories"]["problems"][0]["title"] = EVIL
    evil["figures"]["trajectories"]["notes"] = [EVIL]
    point = evil["figures"]["critical_points"]["points"][0]
    point.update(title=EVIL, function=EVIL, point=EVIL, verdict=EVIL, note=EVIL)
    result = gradverify.check_grad(lambda x: np.sum(x**2), lambda x: 3 * x, np.array([1.0, -2.0]), name=EVIL).to_dict()
    evil["checks"] = [{"test": f"tests/test_x.py::test_{EVIL}", "result": result, "reproduce": EVIL}]
    return evil


def test_text_from_the_data_is_escaped_never_run(run):
    page = render_html(_evil_run(run))
    assert EVIL not in page and "alert(1)</script>" not in page
    assert page.count(ESCAPED) >= 10
    assert page.count("<script") == 1  # the page's own, which holds no data
    script = page[page.index("<script>") : page.index("</script>")]
    assert "alert" not in script


def test_checks_from_the_pytest_plugin_render(run):
    result = gradverify.check_grad(lambda x: np.sum(x**2), lambda x: 3 * x, np.array([1.0, -2.0])).to_dict()
    plugin_run = new_run(run["provenance"], checks=[{"test": "tests/test_x.py::test_square", "result": result, "reproduce": "pytest tests/test_x.py::test_square"}])
    assert plugin_run["passed"] is False
    page = render_html(plugin_run)
    assert 'id="checks"' in page and "tests/test_x.py::test_square" in page and "blame: analytic" in page
    assert 'id="op-table"' not in page  # no ops: no ops table


def test_render_rejects_what_is_not_a_run():
    with pytest.raises(gradverify.InvalidArgument, match="not a gradverify-run/1 record"):
        render_html({"ops": []})
    with pytest.raises(gradverify.InvalidArgument, match="lacks checks"):
        check_run({"schema": "gradverify-run/1", "provenance": {}, "passed": True, "ops": [], "figures": {}})


def test_write_report_creates_directories(run, tmp_path):
    path = write_report(run, tmp_path / "a" / "b" / "report.html")
    assert path.read_text().startswith("<!DOCTYPE html>")


# -- figures ---------------------------------------------------------------------------------


def test_fd_error_is_a_v_with_gradverify_step_near_its_bottom(run):
    fd = run["figures"]["fd_steps"]
    steps = np.array(fd["steps"])
    for curve in fd["curves"]:
        errors = np.array(curve["errors"])
        best = steps[np.argmin(errors)]
        assert errors.min() < 1e-9 and errors[0] > 1e-5 and errors[-1] > 1e-4  # truncation, rounding
        assert 1e-2 < best / curve["chosen_step"] < 1e2  # the chosen step is near the bottom
        assert curve["chosen_error"] < 1e-3 * min(errors[0], errors[-1])


def test_sgd_bounces_across_the_valley_and_adaptive_methods_escape_the_saddle(run):
    traj = run["figures"]["trajectories"]
    assert traj["notes"] == []
    valley, saddle = ({p["optimizer"]: np.array(p["points"]) for p in problem["paths"]} for problem in traj["problems"])
    assert set(valley) == set(_figures.OPTIMIZERS)
    assert np.sum(np.diff(np.sign(valley["sgd"][:, 1])) != 0) > 20  # y changes sign step after step
    assert abs(valley["momentum"][-1, 0]) < abs(valley["sgd"][-1, 0])  # momentum got further
    assert abs(saddle["adam"][-1, 1]) > 10 * abs(saddle["sgd"][-1, 1])


def test_activation_derivatives_vanish(run):
    act = run["figures"]["activations"]
    sig, tanh = (np.array(c["derivative"]) for c in act["curves"])
    assert sig.max() == pytest.approx(0.25) and tanh.max() == pytest.approx(1.0)
    assert sig[0] < 1e-5 and tanh[0] < 1e-9


def test_trajectories_without_the_optimizers_module_leave_a_note(monkeypatch, run):
    import array_api_compat.numpy as xp

    monkeypatch.setitem(sys.modules, "gradverify.catalog.optimizers", None)  # import -> ImportError
    data = compute_figures(xp)["trajectories"]
    assert all(p["paths"] == [] and p["contours"] for p in data["problems"])
    (note,) = data["notes"]
    assert "gradverify.catalog.optimizers cannot be imported" in note
    page = render_html({**run, "figures": {"trajectories": data}})
    assert "cannot be imported" in page


def test_a_figure_that_failed_is_a_note(run):
    page = render_html({**run, "figures": {"fd_steps": {"error": "ZeroDivisionError: boom"}}})
    assert "this figure could not be computed: ZeroDivisionError: boom" in page


# -- critical points -------------------------------------------------------------------------


def _critical_articles(page):
    """``{key: html}`` of each critical point's article in the page."""
    section = page[page.index('<section id="critical-points"') :]
    section = section[: section.index("</section>")]
    parts = section.split('<article class="critical" id="critical-')[1:]
    return {part[: part.index('"')]: part for part in parts}


def test_critical_points_section_shows_the_verdicts(saved_run, run):
    points = {p["key"]: p for p in run["figures"]["critical_points"]["points"]}
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
    page = saved_run[1].read_text()
    assert '<h2>Critical points</h2>' in page
    articles = _critical_articles(page)
    assert set(articles) == set(points)
    for key, html in articles.items():
        assert f'<span class="badge verdict">{verdicts[key]}</span>' in html
    assert "within etol of zero" in articles["two-weight-one"]  # classify's own note
    assert "Escape step" in articles["two-weight-origin"] and "Escape step" not in articles["convex-quadratic"]


def test_the_eigenvalue_chart_has_one_bar_per_eigenvalue(run):
    points = {p["key"]: p for p in run["figures"]["critical_points"]["points"]}
    articles = _critical_articles(render_html(run))
    for key, p in points.items():
        html = articles[key]
        svg = html[html.index("<svg") : html.index("</svg>")]
        lam = np.array(p["eigenvalues"])
        assert svg.count('class="eigenvalue"') == lam.size
        negative = int(np.sum(lam < -p["etol"]))
        assert svg.count('fill="#D55E00"><title>λ') == negative  # negative ones in their own colour
        assert svg.count('fill="#0072B2"><title>λ') == int(np.sum(lam > p["etol"]))
        assert 'stroke="#333333" stroke-dasharray="none"' in svg  # the zero line
    assert int(np.sum(np.array(points["linear-network-origin"]["eigenvalues"]) < 0)) == 4


def test_the_saddle_escape_step_lowers_f_by_half_lambda_h_squared(run):
    points = {p["key"]: p for p in run["figures"]["critical_points"]["points"]}
    for key in ("two-weight-origin", "linear-network-origin"):
        escape = points[key]["escape"]
        lam = escape["eigenvalue"]
        assert lam == pytest.approx(min(points[key]["eigenvalues"])) and lam < 0
        assert np.linalg.norm(escape["direction"]) == pytest.approx(1.0)
        rows = np.array(escape["rows"])
        h, actual, predicted = rows.T
        assert np.all(actual < 0) and np.all(np.diff(np.abs(actual)) < 0)  # f falls, less for smaller h
        assert predicted == pytest.approx(0.5 * lam * h**2)
        ratio = actual / predicted
        assert np.all(np.abs(ratio - 1) < 0.1)
        assert abs(ratio[-1] - 1) <= abs(ratio[0] - 1) + 1e-9  # closer to ½ λ h² as h shrinks
    for point in points.values():
        if point["verdict"] != "saddle":
            assert point["escape"] is None
    table = _critical_articles(render_html(run))["two-weight-origin"]
    table = table[table.index('<table class="escape">') :]
    assert "<th>½ λ h²</th>" in table and "-0.009975" in table and "-0.01<" in table


def test_critical_points_degrade_to_notes(monkeypatch, run):
    import array_api_compat.numpy as xp

    from gradverify import critical

    def broken(*args, **kwargs):
        raise RuntimeError("no Hessian today")

    monkeypatch.setattr(critical, "classify", broken)
    data = compute_figures(xp)["critical_points"]
    assert all(p["error"] == "RuntimeError: no Hessian today" for p in data["points"])
    page = render_html({**run, "figures": {"critical_points": data}})
    assert page.count("classify failed here: RuntimeError: no Hessian today") == len(data["points"])
    assert 'class="eigenvalue"' not in page

    monkeypatch.setitem(sys.modules, "gradverify.critical", None)  # import -> ImportError
    monkeypatch.delattr(gradverify, "critical", raising=False)
    data = compute_figures(xp)["critical_points"]
    assert data["error"].startswith("ModuleNotFoundError: import of gradverify.critical halted")
    page = render_html({**run, "figures": {"critical_points": data}})
    assert '<h2>Critical points</h2>' in page and "the critical points could not be classified: ModuleNotFoundError" in page


def test_svg_helper_axes_and_escaping():
    log = Axis(1e-8, 1.0, log=True)
    assert log.fraction(1e-4) == pytest.approx(0.5) and log.fraction(0.0) is None and log.fraction(float("nan")) is None
    assert [v for v, _ in log.ticks()] == [10.0**k for k in range(-8, 1)]
    assert [v for v, _ in Axis(0, 1).ticks()] == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    with pytest.raises(ValueError):
        Axis(0, 1, log=True)
    fig = Figure("k", x=Axis(1e-3, 1, log=True), y=Axis(0, 1), title=EVIL)
    fig.line([1e-3, 0.0, 1e-2, 1e-1], [0.1, 0.2, 0.5, 0.9], color="#000", label=EVIL)  # 0: a gap
    fig.note(EVIL)
    svg = str(fig.svg())
    assert EVIL not in svg and svg.count(ESCAPED) == 4  # <title>, title, legend, note
    assert svg.count("<polyline") == 2  # broken where the value cannot be drawn


# -- a real browser --------------------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # nothing resolves: a fetch fails, never leaks
]


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


needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium); not installed here")


@needs_chromium
def test_the_browser_checks_can_fail(tmp_path):
    """A page that fetches and throws is caught by the same checks the report passes."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><img src="http://example.invalid/x.png"><script>noSuchFunction();</script></body></html>')
    _, log, requests = _chromium(bad, tmp_path, "--dump-dom")
    assert requests == ["http://example.invalid/x.png"]
    assert any("Uncaught ReferenceError" in line for line in _console_problems(log))


@needs_chromium
def test_the_report_in_headless_chromium(saved_run, tmp_path):
    dom, log, requests = _chromium(saved_run[1], tmp_path, "--dump-dom")
    assert 'id="summary"' in dom and "ops verified" in dom
    assert re.search(r'id="op-count"[^>]*>3 of 3 ops<', dom)  # set by the page's script: it ran
    assert _console_problems(log) == []
    assert requests == []
    # Keep a screenshot for people to look at (reports/ is ignored by git).
    shot_dir = ROOT / "reports" / "screenshots"
    shot_dir.mkdir(parents=True, exist_ok=True)
    shot = shot_dir / "report.png"
    _chromium(saved_run[1], tmp_path, f"--screenshot={shot}", "--window-size=1280,2000")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


# Clicks a header and types into the filter, as a reader would, once the page has loaded.
_INTERACT = """<script>
document.querySelector("#op-table thead tr:nth-child(2) th:nth-child(3)").click();
var box = document.getElementById("op-filter");
box.value = "sig";
box.dispatchEvent(new Event("input"));
</script>"""


@needs_chromium
def test_sorting_and_filtering_in_chromium(saved_run, tmp_path):
    page = tmp_path / "interactive.html"
    page.write_text(saved_run[1].read_text().replace("</body>", _INTERACT + "</body>"))
    dom, log, _ = _chromium(page, tmp_path, "--dump-dom")
    assert _console_problems(log) == []
    rows = re.findall(r'<tr data-name="(\w+)[^"]*"[^>]*?( hidden="")?>', dom)
    # Sorted by the worst analytic~truth error, ascending: the broken op last.
    assert [name for name, _ in rows] == ["relu", "sigmoid", "broken_cube"]
    assert [name for name, hidden in rows if not hidden] == ["sigmoid"]
    assert re.search(r'id="op-count"[^>]*>1 of 3 ops<', dom)
    assert 'aria-sort="ascending"' in dom
