"""The self-contained HTML report rendered from a run record.

A run is JSON first (``gradverify-run/2``, see :mod:`gradverify._record`), written by
``gradverify verify`` (a catalog run) and by the pytest plugin (a test run) alike; the HTML
page is rendered from it alone, now or later (``gradverify report run.json -o report.html``),
without importing the catalog, Hypothesis or the runner.

>>> from gradverify._record import new_run
>>> from gradverify.report import render_html
>>> run = new_run("catalog", {"backend": "numpy"})
>>> "<svg" in render_html(run)  # no ops, no figures: nothing to draw
False

:func:`compute_figures` (the data of a catalog run's demonstrations) needs the catalog, and
is imported on first use.
"""

import importlib

from gradverify.report._render import render_html, write_report

__all__ = ["compute_figures", "render_html", "write_report"]


def __getattr__(name):
    if name == "compute_figures":  # imports the catalog: only for a run that computes figures
        value = importlib.import_module("gradverify.report._figures").compute_figures
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gradverify.report' has no attribute {name!r}")


def __dir__():
    return __all__
