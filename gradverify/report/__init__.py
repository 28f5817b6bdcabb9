"""Run records and the self-contained HTML report rendered from them.

A run is JSON first (``gradverify-run/1``, with provenance), written by ``gradverify
verify`` and by the pytest plugin alike; the HTML page is rendered from it, now or later
(``gradverify report run.json -o report.html``).

>>> import datetime
>>> from gradverify.report import new_run, provenance, render_html
>>> prov = provenance(backend="numpy", device="cpu", seed=0, seconds=1.5,
...                   started=datetime.datetime.now(datetime.timezone.utc))
>>> run = new_run(prov, checks=[])
>>> run["passed"], sorted(run)
(True, ['checks', 'figures', 'ops', 'passed', 'provenance', 'schema'])
>>> "<svg" in render_html(run)  # no ops, no figures: nothing to draw
False
"""

from gradverify.report._figures import compute_figures
from gradverify.report._render import render_html, write_report
from gradverify.report._run import (
    SCHEMA,
    check_run,
    describe_device,
    git_commit,
    load_run,
    new_run,
    provenance,
    to_json,
    write_json,
)

__all__ = [
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
