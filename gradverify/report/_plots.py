"""The report's figures drawn as inline SVG from a run record (see :mod:`._figures`).

Drawing needs only the record: nothing here imports the catalog, Hypothesis or the runner.
"""

import math

import numpy as np

from gradverify._record import COMPARISONS
from gradverify._tolerances import RTOL
from gradverify.report._svg import PALETTE, Axis, Figure

# Relative errors of exactly 0 (common: the truth rounds to the analytic value) are drawn here.
ERROR_FLOOR = 1e-18
_DOTS_PER_SERIES = 40
EPS64 = float(np.finfo(np.float64).eps)  # more than this and the dots are an evenly spaced subset


def error_distribution(ops):
    """Per op, a box plot and dots of the per-example worst relative errors (log10)."""
    ops = [o for o in ops if any(finite_values(o.get(key, [])).size for key in COMPARISONS)]
    if not ops:
        return None
    n = len(ops)
    ticks = [(n - 1 - i, o["name"]) for i, o in enumerate(ops)]
    fig = Figure(
        "errors",
        x=Axis(ERROR_FLOOR, 10.0, log=True, label="worst relative error of each example (0 drawn at the left edge)"),
        y=Axis(-0.5, n - 0.5, ticks=ticks),
        title="Distribution of relative errors per op",
        width=640,
        height=30 * n,
    )
    offsets = (0.27, 0.0, -0.27)
    for (key, label), offset, color in zip(COMPARISONS.items(), offsets, PALETTE):
        for i, o in enumerate(ops):
            values = np.sort(np.maximum(finite_values(o.get(key, [])), ERROR_FLOOR))
            if not values.size:
                continue
            y = n - 1 - i + offset
            fig.box(y, np.quantile(values, [0, 0.25, 0.5, 0.75, 1.0]), color=color, half_height=3.5)
            shown = values[np.unique(np.linspace(0, values.size - 1, min(values.size, _DOTS_PER_SERIES)).round().astype(int))]
            fig.points(shown, np.full(shown.size, y), color=color, radius=1.8, opacity=0.55)
        fig.points([], [], color=color, label=label)
    fig.vline(RTOL["float64"], color="#B00020", label="float64 rtol")
    return fig.html()


def fd_steps(data):
    """The V of a centered difference's error over its step, gradverify's first step marked."""
    steps = data["steps"]
    fig = Figure(
        "fd-steps",
        x=Axis(min(steps) / 2, max(steps) * 2, log=True, label="step h"),
        y=Axis(1e-16, 1.0, log=True, label="relative error"),
        title="Centered-difference error against the step size (float64 vs mpmath truth)",
        width=560,
        height=280,
    )
    for curve, color in zip(data["curves"], PALETTE):
        errors = np.maximum(_as_float(curve["errors"]), 1e-16)
        fig.line(steps, errors, color=color, label=f"{curve['op']} at {curve['point']}")
        fig.points(steps, errors, color=color, radius=1.6, opacity=0.8)
        fig.points([curve["chosen_step"]], [max(_as_float([curve["chosen_error"]])[0], 1e-16)], color=color, radius=5, hollow=True, opacity=1)
    fig.vline(data["base_step"], label="ε^(1/3)")
    # Guides: truncation error falls like h², rounding error grows like ε/h.
    h = np.array([1e-1, 1e-6])
    fig.line(h, 1e-3 * (h / 1e-1) ** 2, color="#888888", dash="2 3", width=1.2, label="∝ h² (truncation)")
    h = np.array([1e-6, 1e-14])
    fig.line(h, EPS64 / h, color="#555555", dash="6 3", width=1.2, label="ε/h (rounding)")
    fig.note(
        "Hollow circles: the error at gradverify's first step for that element, ε^(1/3) times"
        " max(|x_k|, rms(x)); the step is then refined where the error model asks."
    )
    return fig.html()


def trajectories(data):
    """One panel per problem: level sets and each optimizer's path."""
    panels = []
    for problem in data["problems"]:
        (x0, x1), (y0, y1) = problem["xlim"], problem["ylim"]
        wide = (x1 - x0) / (y1 - y0) > 2
        fig = Figure(
            f"traj-{problem['key']}",
            x=Axis(x0, x1, label="x"),
            y=Axis(y0, y1, label="y"),
            title=problem["title"],
            width=520 if wide else 300,
            height=200 if wide else 300,
        )
        for line in problem["contours"]:
            xs, ys = zip(*line)
            fig.line(xs, ys, color="#bbbbbb", width=0.8)
        for path, color in zip(problem["paths"], PALETTE):
            xs, ys = zip(*path["points"])
            fig.line(xs, ys, color=color, width=1.4, label=f"{path['optimizer']} (lr {path['lr']:g}, {len(xs) - 1} steps)")
            fig.points(xs, ys, color=color, radius=1.5, opacity=0.8)
        fig.points([problem["start"][0]], [problem["start"][1]], color="#000000", radius=3.5, label="start")
        if not problem["paths"]:
            fig.note("no optimizer paths (see the note below)")
        panels.append(fig.html())
    return panels


def activations(data):
    """Derivatives of the saturating activations on a log scale: where gradients vanish."""
    x = data["x"]
    fig = Figure(
        "activations",
        x=Axis(min(x), max(x), label="x"),
        y=Axis(1e-11, 2.0, log=True, label="derivative"),
        title="Derivatives of sigmoid and tanh (catalog backward passes)",
        width=560,
        height=240,
    )
    for curve, color in zip(data["curves"], PALETTE):
        fig.line(x, np.maximum(_as_float(curve["derivative"]), 1e-300), color=color, label=f"d {curve['op']}(x) / dx")
    fig.hline(0.25, label="¼: the most a sigmoid passes on")
    return fig.html()


NEGATIVE, POSITIVE, ZERO = PALETTE[1], PALETTE[0], "#999999"


def eigenvalues(point, key):
    """The Hessian's eigenvalues of one critical point as bars from zero, the zero line marked.

    Negative eigenvalues are drawn in orange, positive ones in blue, and those within
    ``etol`` of zero (which ``classify`` does not call) in grey.
    """
    lam = _as_float(point["eigenvalues"])
    etol = float(point.get("etol") or 0.0)
    n = lam.size
    finite = lam[np.isfinite(lam)]
    lo, hi = min(0.0, float(finite.min(initial=0.0))), max(0.0, float(finite.max(initial=0.0)))
    pad = 0.12 * (hi - lo) if hi > lo else 1.0
    ticks = [(i, f"λ{i + 1}") for i in range(n)] if n <= 16 else None
    fig = Figure(
        f"eig-{key}",
        x=Axis(-0.5, n - 0.5, label="eigenvalue (ascending)", ticks=ticks),
        y=Axis(lo - pad, hi + pad, label="λ"),
        title=f"Hessian eigenvalues: {point['verdict']}",
        width=max(160, min(480, 44 * n)),
        height=160,
    )
    half = max(2.0, min(12.0, 0.3 * fig.width / max(n, 1)))
    for i, v in enumerate(lam):
        color = ZERO if abs(v) <= etol else (NEGATIVE if v < 0 else POSITIVE)
        fig.bar(i, v, color=color, half_width=half, mark="eigenvalue", title=f"λ{i + 1} = {v:.6g}")
    fig.hline(0.0, color="#333333", dash="none")  # the y axis labels it; a label here would sit on a bar
    for color, label, used in ((NEGATIVE, "λ < 0", (lam < -etol).any()), (POSITIVE, "λ > 0", (lam > etol).any()), (ZERO, "|λ| ≤ etol (zero)", (np.abs(lam) <= etol).any())):
        if used:
            fig.legend(color, label)
    return fig.html()


def _as_float(values):
    """A float array from JSON values (``"nan"``/``"inf"`` strings become floats)."""
    return np.array([float(v) if v is not None else math.nan for v in values], dtype=float)


def finite_values(values):
    """The finite floats among JSON values."""
    a = _as_float(values)
    return a[np.isfinite(a)]
