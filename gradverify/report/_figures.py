"""The data behind a catalog report's demonstrations, computed during a ``gradverify verify`` run.

The demonstrations illustrate the method (the finite-difference step, optimizer paths,
saturating activations, critical points); they do not depend on which ops a run verified,
and the report shows them below what it verified, behind a toggle. Each is computed once,
on the run's backend and with the catalog's own ops, and kept in the run's JSON
(``run["figures"]``), so that a saved run renders again without recomputing anything (see
:mod:`gradverify.report._plots` for the drawing). A figure that cannot be computed is kept
as ``{"error": message}`` and the report shows the message.

This module imports the catalog: :mod:`gradverify.report` loads it only when
``compute_figures`` is first used, never to render a saved run.
"""

import importlib
import math
from dataclasses import dataclass

import numpy as np

from gradverify import catalog
from gradverify._backend import to_numpy
from gradverify._numerical import BASE_STEP, step_scale
from gradverify._truth import HighPrecisionPhi, element_scale, input_scale

__all__ = ["compute_figures"]

# Centered-difference steps for the step-size figure, four per decade.
FD_STEPS = 10.0 ** np.linspace(-1.0, -14.0, 53)
TRUTH_DPS = 40

# (op, point, flat index of the element differentiated). The cotangent is fixed below.
_FD_CASES = (
    ("sigmoid", np.array([0.7, -1.3, 2.1]), 0),
    ("tanh", np.array([1.3, -0.4, 0.2]), 0),
    ("softmax", np.array([[0.5, -1.2, 2.0, 0.3, -0.7]]), 2),
)

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")


def compute_figures(xp):
    """Every figure's data, computed on the backend ``xp``.

    Returns
    -------
    dict
        ``{"fd_steps": ..., "trajectories": ..., "activations": ..., "critical_points": ...}``,
        JSON-safe; an entry that could not be computed is ``{"error": message}``.
    """
    figures = {}
    for key, compute in (("fd_steps", fd_steps), ("trajectories", trajectories), ("activations", activations), ("critical_points", critical_points)):
        try:
            figures[key] = compute(xp)
        except Exception as exc:  # an illustration must never fail the verification run
            figures[key] = {"error": f"{type(exc).__name__}: {exc}"}
    return figures


def fd_steps(xp):
    """Error of a float64 centered difference against the mpmath truth, over the step size.

    For ``phi(x) = sum(v * op(x))`` and one element ``x_k`` the estimate is
    ``sum(v * (op(x + h e_k) - op(x - h e_k))) / (2h)`` (with the step the floating-point
    sum actually takes). Its error falls like ``h**2`` (truncation) until rounding, growing
    like ``eps / h``, takes over: a V whose bottom is near ``eps**(1/3)``, where
    gradverify's first step ``BASE_STEP * max(|x_k|, rms(x))`` lies.
    """
    rng = np.random.default_rng(0)
    curves = []
    for name, x, k in _FD_CASES:
        op = catalog.get(name)
        v = rng.normal(size=x.shape)
        chosen = float(BASE_STEP * step_scale(x).reshape(-1)[k])
        truth = _truth_derivative(op, x, v, k)
        errors = [abs(_centered(op, x, v, k, h, xp) - truth) / abs(truth) for h in FD_STEPS]
        curves.append(
            {
                "op": name,
                "point": f"x = ({', '.join(f'{c:g}' for c in x.reshape(-1))}), element {k}",
                "truth": truth,
                "errors": errors,
                "chosen_step": chosen,
                "chosen_error": abs(_centered(op, x, v, k, chosen, xp) - truth) / abs(truth),
            }
        )
    return {"steps": FD_STEPS.tolist(), "base_step": BASE_STEP, "curves": curves}


def _centered(op, x, v, k, h, xp):
    flat = x.reshape(-1)
    up, down = flat.copy(), flat.copy()
    up[k] += h
    down[k] -= h
    span = (up[k] - flat[k]) + (flat[k] - down[k])
    outputs = [to_numpy(op.forward(xp.asarray(p.reshape(x.shape)))[0]) for p in (up, down)]
    return float(np.sum(v * (outputs[0] - outputs[1])) / span)


def _truth_derivative(op, x, v, k):
    phi = HighPrecisionPhi(lambda a: op.forward(a)[0], [x], v, dps=TRUTH_DPS, floating=[True])
    return float(phi.elementwise(0, element_scale(x).reshape(-1), input_scale(x), indices=[k]).center[0])


@dataclass(frozen=True)
class _Problem:
    """A two-parameter test function for the optimizer trajectories."""

    key: str
    title: str
    weights: tuple  # f = sum(weights * p**2) / 2, so grad = weights * p
    start: tuple
    steps: int
    xlim: tuple
    ylim: tuple
    levels: tuple
    lr: dict  # per optimizer: each at a rate that suits it on this problem

    def contours(self):
        """Level sets of ``f`` as polylines (ellipses for a valley, hyperbolas for a saddle)."""
        a, b = self.weights
        t = np.linspace(-1.0, 1.0, 61)
        lines = []
        for c in self.levels:
            if a > 0 and b > 0:
                s = np.linspace(0, 2 * np.pi, 121)
                lines.append((np.sqrt(2 * c / a) * np.cos(s), np.sqrt(2 * c / b) * np.sin(s)))
                continue
            # a > 0 > b: a x^2 + b y^2 = 2c, branches along x for c > 0, along y for c < 0.
            u = np.arcsinh(3.0) * t
            if c > 0:
                xs, ys = np.sqrt(2 * c / a) * np.cosh(u), np.sqrt(2 * c / -b) * np.sinh(u)
                lines += [(xs, ys), (-xs, ys)]
            elif c < 0:
                xs, ys = np.sqrt(-2 * c / a) * np.sinh(u), np.sqrt(-2 * c / -b) * np.cosh(u)
                lines += [(xs, ys), (xs, -ys)]
            else:
                r = 3.0 * t
                lines += [(r / np.sqrt(a), r / np.sqrt(-b)), (r / np.sqrt(a), -r / np.sqrt(-b))]
        return [np.round(np.stack([xs, ys], axis=1), 4).tolist() for xs, ys in lines]


PROBLEMS = (
    _Problem(
        "valley",
        "narrow valley f = ½(x² + 100 y²)",
        (1.0, 100.0),
        (-9.0, 1.0),
        60,
        (-10.0, 2.0),
        (-1.5, 1.5),
        (0.5, 2.0, 8.0, 18.0, 32.0, 50.0),
        {"sgd": 0.019, "momentum": 0.006, "nesterov": 0.006, "adagrad": 1.0, "rmsprop": 0.15, "adam": 0.4},
    ),
    _Problem(
        "saddle",
        "saddle f = ½(2x² − 2y²) = x² − y²",
        (2.0, -2.0),
        (1.8, 1e-3),
        60,
        (-2.0, 2.0),
        (-2.0, 2.0),
        (-3.0, -1.5, -0.5, 0.0, 0.5, 1.5, 3.0),
        {"sgd": 0.05, "momentum": 0.02, "nesterov": 0.02, "adagrad": 0.5, "rmsprop": 0.05, "adam": 0.1},
    ),
)


def trajectories(xp):
    """Paths of the catalog's optimizer steps on a narrow valley and on a saddle.

    Each ``<name>_step(param, grad, state, *, lr, xp)`` (Adam also takes the step number
    ``t``) starts from zeros for each of its state arrays (the module's ``STATE_KEYS``),
    with its other hyperparameters at their defaults. Without :mod:`gradverify.catalog.optimizers` the level sets are kept and the
    figure says why there are no paths; an optimizer that fails is left out with a note.
    """
    notes = []
    try:
        module = importlib.import_module("gradverify.catalog.optimizers")
    except ImportError as exc:
        module = None
        notes.append(f"no trajectories: gradverify.catalog.optimizers cannot be imported ({exc})")
    problems = []
    for problem in PROBLEMS:
        paths = []
        for name in OPTIMIZERS if module is not None else ():
            step = getattr(module, f"{name}_step", None)
            if step is None:
                notes.append(f"{problem.key}: gradverify.catalog.optimizers has no {name}_step")
                continue
            try:
                keys = getattr(module, "STATE_KEYS", {}).get(name, ())
                points = _trajectory(step, name, keys, problem, xp)
            except Exception as exc:  # one broken optimizer must not hide the others
                notes.append(f"{problem.key}: {name}_step failed: {type(exc).__name__}: {exc}")
                continue
            paths.append({"optimizer": name, "lr": problem.lr[name], "points": points})
        problems.append(
            {
                "key": problem.key,
                "title": problem.title,
                "xlim": list(problem.xlim),
                "ylim": list(problem.ylim),
                "start": list(problem.start),
                "contours": problem.contours(),
                "paths": paths,
            }
        )
    return {"problems": problems, "notes": notes}


def _trajectory(step, name, keys, problem, xp):
    weights = xp.asarray(np.asarray(problem.weights, dtype=np.float64))
    param = xp.asarray(np.asarray(problem.start, dtype=np.float64))
    state, points = {k: xp.zeros_like(param) for k in keys}, [list(problem.start)]
    far = 10 * max(map(abs, problem.xlim + problem.ylim))
    for t in range(1, problem.steps + 1):
        extra = {"t": t} if name == "adam" else {}
        param, state = step(param, weights * param, state, lr=problem.lr[name], xp=xp, **extra)
        p = [float(c) for c in to_numpy(param)]
        points.append([round(c, 6) for c in p])
        if not all(math.isfinite(c) and abs(c) < far for c in p):
            break  # diverged or left the picture for good
    return points


def activations(xp):
    """The derivatives of sigmoid and tanh over ``[-12, 12]``, from the catalog's backward passes.

    Both saturate: the derivative falls like ``exp(-|x|)`` (sigmoid, at most 1/4) and
    ``4 exp(-2|x|)`` (tanh), so a gradient through a few saturated units vanishes.
    """
    x = np.linspace(-12.0, 12.0, 241)
    curves = []
    for name in ("sigmoid", "tanh"):
        op = catalog.get(name)
        _, cache = op.forward(xp.asarray(x))
        (dx,) = op.backward(xp.ones_like(xp.asarray(x)), cache)
        curves.append({"op": name, "derivative": to_numpy(dx).astype(float).tolist()})
    return {"x": x.tolist(), "curves": curves}


# -- critical points of small networks' losses ------------------------------------------------


def _two_weight(w):
    return (1.0 - w[0] * w[1]) ** 2


def _two_weight_grad(w):
    r = 1.0 - w[0] * w[1]
    return np.array([-2.0 * w[1] * r, -2.0 * w[0] * r])


# A linear network 2 -> 2 -> 2 on three fixed samples (columns), weights flattened as (W1, W2).
_LIN_X = np.array([[1.0, 0.5, -0.3], [0.2, -1.0, 0.8]])
_LIN_Y = np.array([[0.6, -0.4, 0.3], [1.0, 0.2, -0.5]])
_LIN_HIDDEN = 2


def _linear_split(w):
    d, o, h = _LIN_X.shape[0], _LIN_Y.shape[0], _LIN_HIDDEN
    return w[: h * d].reshape(h, d), w[h * d :].reshape(o, h)


def _linear_loss(w):
    W1, W2 = _linear_split(w)
    R = W2 @ W1 @ _LIN_X - _LIN_Y
    return 0.5 * np.sum(R * R)


def _linear_grad(w):
    W1, W2 = _linear_split(w)
    R = W2 @ W1 @ _LIN_X - _LIN_Y
    return np.concatenate([(W2.T @ R @ _LIN_X.T).reshape(-1), (R @ (W1 @ _LIN_X).T).reshape(-1)])


_QUAD_A = np.array([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]])
_QUAD_B = np.array([1.0, -2.0, 0.5])


def _quadratic(x):
    return 0.5 * x @ _QUAD_A @ x + _QUAD_B @ x


def _quadratic_grad(x):
    return _QUAD_A @ x + _QUAD_B


def _critical_cases():
    """(key, title, formula, point text, f, grad_f, x) for each point classified."""
    return (
        ("two-weight-origin", "scalar two-weight network at the origin", "L(w₁, w₂) = (1 − w₁ w₂)²", "(w₁, w₂) = (0, 0)", _two_weight, _two_weight_grad, np.zeros(2)),
        ("two-weight-one", "scalar two-weight network at w₁ = w₂ = 1", "L(w₁, w₂) = (1 − w₁ w₂)²", "(w₁, w₂) = (1, 1), on the valley w₁ w₂ = 1", _two_weight, _two_weight_grad, np.ones(2)),
        (
            "linear-network-origin",
            "linear two-layer network (2 → 2 → 2) at zero weights",
            "L(W₁, W₂) = ½ ‖W₂ W₁ X − Y‖² with fixed X, Y (2 × 3)",
            "W₁ = 0, W₂ = 0 (8 weights)",
            _linear_loss,
            _linear_grad,
            np.zeros(2 * _LIN_HIDDEN * 2),
        ),
        ("convex-quadratic", "convex quadratic at its minimizer", "f(x) = ½ xᵀA x + bᵀx, A symmetric positive definite (3 × 3)", "x = −A⁻¹b", _quadratic, _quadratic_grad, -np.linalg.solve(_QUAD_A, _QUAD_B)),
    )


def critical_points(xp):
    """Critical points of small networks' losses classified by :func:`gradverify.critical.classify`.

    The gradient norm, the Hessian's eigenvalues (finite differences of the gradient, in
    float64 on the host: ``classify`` works there whatever the backend) and the verdict as
    ``classify`` gives it; for a saddle, the escape direction's demonstration rows
    ``(h, f(x + h d) - f(x), ½ λ h²)``. A point that ``classify`` cannot handle is kept
    as ``{"key", "title", "error"}``.
    """
    from gradverify import critical  # inside: a missing or broken module is this figure's error only

    points = []
    for key, title, formula, where, f, grad_f, x in _critical_cases():
        base = {"key": key, "title": title, "function": formula, "point": where}
        try:
            c = critical.classify(f, grad_f, x)
        except Exception as exc:  # one point failing must not hide the others
            points.append({**base, "error": f"{type(exc).__name__}: {exc}"})
            continue
        escape = None
        if c.escape_direction is not None:
            escape = {
                "eigenvalue": float(c.escape_eigenvalue),
                "direction": [float(v) for v in np.asarray(c.escape_direction).reshape(-1)],
                "rows": [[float(h), float(a), float(p)] for h, a, p in c.demonstration],
            }
        points.append(
            {
                **base,
                "verdict": c.verdict,
                "critical": bool(c.critical),
                "grad_norm": float(c.grad_norm),
                "gtol": float(c.gtol),
                "etol": float(c.etol),
                "hessian_error": float(c.hessian_error),
                "eigenvalues": [float(v) for v in c.eigenvalues],
                "note": c.note,
                "escape": escape,
            }
        )
    return {"points": points}
