"""Second order: Hessians, Hessian-vector products, critical points and Taylor orders.

Everything here works on a scalar ``f(x)`` of one float array ``x`` (any shape) with its
hand-written gradient ``grad_f(x)`` (an array shaped like ``x``, or a tuple holding one).
Matrices are over the flattened ``x`` (C order) and live on the host in float64.

Three sides, as in :func:`gradverify.check_vjp`:

* **numerical**: :func:`hessian`, centered differences of ``grad_f`` in float64. Column
  ``k`` is ``(g(x + h e_k) - g(x - h e_k)) / 2h`` with ``h = BASE_STEP * max(|x_k|, rms(x))``
  (gradverify's step rule), taken at ``h`` and ``h / 2``; the estimate is the finer one, its
  error ``|D(h) - D(h/2)| / 3`` plus the rounding of the gradients (``ROUNDING_ULPS`` ulps of
  the largest finite ``|g|`` over ``h``) plus half the asymmetry, and the matrix is symmetrized.
* **truth**: :func:`hessian_truth`, second differences of ``f`` itself on mpmath arrays
  (:mod:`gradverify._highprec`), ``uᵀHw ≈ (f(x+hu+hw) - f(x+hu-hw) - f(x-hu+hw) + f(x-hu-hw)) / 4h²``
  with ``h = 10**(-dps/4)`` and ``TRUTH_EXTRA_DIGITS`` more working digits: truncation and
  rounding both near ``10**(-dps/2)`` relative, far below float64. Four evaluations per
  entry (``n (n + 1) / 2`` entries), so it is for small ``n``.
* **analytic**: the user's ``hess_f(x)`` (``(n, n)`` or ``x.shape + x.shape``) or
  ``hvp(x, v)`` (shaped like ``x``).

:func:`check_hessian` and :func:`check_hvp` judge every entry through
:func:`gradverify._arbiter.arbitrate`, as ``check_vjp`` judges gradient elements: the
finite differences are a :class:`~gradverify._numerical.Stencil` (estimate, truncation and
rounding error), the truth a :class:`~gradverify._truth.TruthValues`, and the natural size
of an entry the largest finite reference entry. Where ``x`` is too large for the truth of
every entry, the disputed entries get a spot truth; a truth that contradicts the finite
difference is re-derived at more digits before it is believed.

Examples
--------
>>> import numpy as np
>>> from gradverify import critical
>>> f = lambda w: (1.0 - w[0] * w[1]) ** 2
>>> g = lambda w: np.array([-2 * w[1] * (1 - w[0] * w[1]), -2 * w[0] * (1 - w[0] * w[1])])
>>> c = critical.classify(f, g, np.zeros(2))
>>> c.verdict
'saddle'
>>> [round(float(v), 6) for v in c.eigenvalues]
[-2.0, 2.0]
"""

import functools
import math
import time
from dataclasses import dataclass, field

import numpy as np

from gradverify import _arbiter, _backend, _highprec, _tolerances, _truth
from gradverify._errors import GradVerifyError, HighPrecisionUnavailable, InvalidArgument, UserFunctionError, asserting
from gradverify._numerical import BASE_STEP, ROUNDING_ULPS, Stencil, step_scale
from gradverify._truth import TruthValues, input_scale

__all__ = [
    "CriticalPoint",
    "HessianCheck",
    "HessianEstimate",
    "TaylorOrder",
    "WorstEntry",
    "assert_hessian",
    "assert_hvp",
    "check_hessian",
    "check_hvp",
    "classify",
    "hessian",
    "hessian_truth",
    "taylor_order",
]

DEFAULT_DPS = 40
TRUTH_EXTRA_DIGITS = 10
# The truth is computed for every entry up to this many elements (4 n (n+1) / 2 calls of f).
TRUTH_ELEMENTWISE_MAX = 32
# check_hvp compares the truth of H v element by element up to this many elements.
TRUTH_HVP_MAX = 256
# Default rtol of the second-order checks in float64: a centered difference of a float64
# gradient resolves the Hessian to about eps**(2/3) of its scale.
RTOL = 1e-6
# Eigenvalues within SAFETY times the Hessian's error bound (Frobenius norm) of zero are
# not called.
SAFETY = 10.0


# -- results -------------------------------------------------------------------------------


@dataclass
class HessianEstimate:
    """A float64 Hessian (``(n, n)``, flat index order) with an elementwise error estimate."""

    matrix: np.ndarray
    error: np.ndarray
    step: np.ndarray  # the coarse step per column

    @property
    def error_norm(self):
        """Frobenius norm of ``error``: a bound on how far any eigenvalue may have moved (Weyl)."""
        with np.errstate(over="ignore", invalid="ignore"):  # inf or NaN when the estimate is
            return float(np.sqrt(np.sum(self.error**2)))


@dataclass
class WorstEntry:
    """The entry with the largest relative error. For ``check_hvp``, ``i`` is the direction."""

    i: int
    j: int
    analytic: float
    numerical: float
    truth: float | None
    rel_analytic_numerical: float
    rel_analytic_truth: float | None
    rel_numerical_truth: float | None


@dataclass
class HessianCheck:
    """The outcome of :func:`check_hessian` or :func:`check_hvp`.

    Each entry is judged by :func:`gradverify._arbiter.arbitrate`, as ``check_vjp`` judges
    gradient elements. ``blame`` is ``"analytic"`` when the user's Hessian (or HVP) is off
    its reference (the truth where there is one, else the finite differences of the
    gradient, beyond their own error estimate) or holds NaN or Inf (``nonfinite`` entries,
    counted among the failures), ``"numerical"`` when only the finite differences are off
    the truth (the check still passes) or when some entry is ``unresolved`` (no truth, and
    no finite difference that resolves it: not finite, or too coarse for ``rtol``; the check
    fails, since nothing was compared there; ``unresolved_note`` says which), else None. An
    entry whose truth is not finite is judged against the finite difference.

    ``truth`` is ``"elementwise"`` (the truth of every entry was computed), ``"spot"`` (``x``
    is too large for that: the truth was computed for a few disputed entries only) or ``"off"``.
    """

    passed: bool
    blame: str | None
    max_rel_error: float
    worst: WorstEntry | None
    kind: str  # "hessian" or "hvp"
    function: str
    checked: int
    failures: int
    numerical_off: int
    rtol: float
    truth: str  # "elementwise", "spot" or "off"
    truth_note: str = ""
    seconds: float = 0.0
    failing: list = field(default_factory=list)  # (i, j) of a few more failing entries
    nonfinite: int = 0  # entries where the analytic side is NaN or Inf (failures)
    unresolved: int = 0  # entries where neither the truth nor the finite difference is finite
    unresolved_at: list = field(default_factory=list)  # (i, j) of a few of them
    unresolved_note: str = ""  # why they are unresolved

    def __str__(self):
        what = "Hessian" if self.kind == "hessian" else "Hessian-vector product"
        if self.passed:
            head = f"gradverify: PASSED ({what} of {self.function})"
            if self.blame == "numerical":
                head += (
                    "; the finite differences of grad_f were off the truth at some entries, the truth agrees with"
                    " the analytic side (if they are far off, grad_f itself may be wrong: check it with gradverify.check_grad)"
                )
        elif self.blame == "analytic":
            head = f"gradverify: FAILED: the analytic {what} of {self.function} is wrong (blame: analytic)"
        elif self.unresolved:
            head = f"gradverify: FAILED ({what} of {self.function}): {self.unresolved} entries unresolved"
            if "no finite reference" in self.unresolved_note:
                head += " (grad_f, and f at high precision, are not finite within a step of x: x is at the edge of their domain)"
            if "too coarse" in self.unresolved_note:
                head += " (without a truth, the finite differences cannot resolve them to rtol: pass truth='on' or a looser rtol)"
        else:
            head = f"gradverify: FAILED ({what} of {self.function})"
        lines = [head]
        lines.append(
            f"  {self.checked} entries checked, {self.failures} failing, {self.numerical_off} with the finite difference off the truth;"
            f" rtol={self.rtol:g}, max relative error {self.max_rel_error:.3g}"
        )
        if self.nonfinite:
            lines.append(f"  the analytic {what} holds NaN or Inf at {self.nonfinite} entries")
        if self.unresolved:
            lines.append(
                f"  unresolved, not judged: {self.unresolved_note or f'{self.unresolved} entries'} entries: "
                + ", ".join(f"({i}, {j})" for i, j in self.unresolved_at)
            )
        lines.append(f"  truth: {self.truth}" + (f" ({self.truth_note})" if self.truth_note else ""))
        w = self.worst
        if w is not None:
            where = f"direction {w.i}, element {w.j}" if self.kind == "hvp" else f"entry ({w.i}, {w.j})"
            truth = "n/a" if w.truth is None else f"{w.truth:.12g}"
            lines.append(f"  worst {where}: analytic {w.analytic:.12g}, numerical {w.numerical:.12g}, truth {truth}")
            rat = "n/a" if w.rel_analytic_truth is None else f"{w.rel_analytic_truth:.3g}"
            rnt = "n/a" if w.rel_numerical_truth is None else f"{w.rel_numerical_truth:.3g}"
            lines.append(f"    rel(analytic, numerical)={w.rel_analytic_numerical:.3g}, rel(analytic, truth)={rat}, rel(numerical, truth)={rnt}")
        if self.failing:
            lines.append("  failing entries: " + ", ".join(f"({i}, {j})" for i, j in self.failing))
        return "\n".join(lines)


@dataclass
class CriticalPoint:
    """The outcome of :func:`classify`.

    ``verdict`` is one of ``"local minimum"``, ``"local maximum"``, ``"saddle"``,
    ``"degenerate"`` (critical, but an eigenvalue is within ``etol`` of zero: the second
    order cannot tell, and no guess is made), ``"not critical"`` (``grad_norm > gtol``) or
    ``"nonfinite"`` (``f(x)``, ``grad_f(x)``, the finite-difference Hessian or ``hess_f(x)``
    holds NaN or Inf: nothing can be said; ``note`` names which, ``eigenvalues`` is empty).
    For a saddle, ``escape_direction`` is the unit eigenvector of the most negative
    eigenvalue and ``demonstration`` rows ``(h, f(x + h d) - f(x), 0.5 * lambda * h**2)``.
    """

    verdict: str
    grad_norm: float
    gtol: float
    critical: bool
    eigenvalues: np.ndarray
    etol: float
    hessian: np.ndarray
    hessian_error: float  # Frobenius norm of the Hessian's error estimate
    escape_direction: np.ndarray | None = None
    escape_eigenvalue: float | None = None
    demonstration: list = field(default_factory=list)
    note: str = ""

    def __str__(self):
        lines = [f"critical point: {self.verdict}"]
        lines.append(f"  |grad| = {self.grad_norm:.3g} (critical when <= gtol = {self.gtol:.3g})")
        ev = ", ".join(f"{v:.6g}" for v in self.eigenvalues)
        lines.append(f"  Hessian eigenvalues: [{ev}] (zero within etol = {self.etol:.3g}; Hessian error {self.hessian_error:.3g})")
        if self.note:
            lines.append(f"  {self.note}")
        if self.escape_direction is not None:
            lines.append(f"  escape direction (lambda = {self.escape_eigenvalue:.6g}): {np.array2string(self.escape_direction, precision=6)}")
            for h, actual, predicted in self.demonstration:
                lines.append(f"    h={h:.3g}: f(x + h d) - f(x) = {actual:.6g}, 0.5 lambda h^2 = {predicted:.6g}")
        return "\n".join(lines)


@dataclass
class TaylorOrder:
    """The outcome of :func:`taylor_order`: rows ``(h, r(h))`` and the fitted log-log slope.

    ``expected`` is 2 without a Hessian, 3 with one; ``passed`` when the fitted order is at
    least ``expected - 0.5`` (a vanishing higher derivative along ``d`` raises it), or when
    the remainder is at rounding level throughout (``exact``: f is a polynomial of that degree).
    When ``grad_f(x)``, ``hess_f(x)`` or ``f(x)`` is not finite, or fewer than three steps
    leave ``f`` finite, ``order`` is NaN, ``passed`` False and ``note`` starts ``nonfinite:``.
    """

    order: float
    expected: int
    passed: bool
    exact: bool
    table: list
    high_precision: bool
    note: str = ""

    def __str__(self):
        lines = [f"Taylor remainder order {self.order:.3g} (expected {self.expected}; {'ok' if self.passed else 'WRONG'})"]
        if self.exact:
            lines.append("  the remainder is at rounding level for every step: exact to this order")
        lines.append(f"  f evaluated {'at high precision' if self.high_precision else 'in float64'}" + (f" ({self.note})" if self.note else ""))
        lines.extend(f"    h={h:.3e}  r(h)={r:.6e}" for h, r in self.table)
        return "\n".join(lines)


# -- argument handling -----------------------------------------------------------------------


class _Point:
    """A validated point: its namespace, shape, and float64 host copy."""

    def __init__(self, x, name="x", xp=None):
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            raise InvalidArgument(f"{name} is a {type(x).__name__}, not an array; pass a float array, e.g. np.asarray({name}, dtype=float)")
        self.xp = xp or _backend.namespace_of(x)
        if self.xp is _highprec.namespace:
            raise InvalidArgument(f"{name} is an mpmath array; pass a float array, gradverify makes the high-precision copies")
        if not _backend.is_real_floating(self.xp, x.dtype):
            raise InvalidArgument(f"{name} has dtype {_backend.dtype_name(x.dtype)}; pass a real floating array")
        self.shape = tuple(x.shape)
        self.device = _backend.device_of(x)
        self.dtype = x.dtype
        self.host = _backend.to_numpy(x).astype(np.float64).reshape(-1)
        self.n = self.host.size
        if self.n == 0:
            raise InvalidArgument(f"{name} is empty; pass at least one element")
        if not np.all(np.isfinite(self.host)):
            raise InvalidArgument(f"{name} holds NaN or Inf; pass a finite point")

    def array(self, flat):
        """A flat float64 host vector as an array of the point's namespace and shape (float64)."""
        return _backend.from_numpy(np.asarray(flat, dtype=np.float64).reshape(self.shape), self.xp, self.device)


def _require_callable(f, name):
    if not callable(f):
        raise InvalidArgument(f"{name} must be callable, got {type(f).__name__}")


def _require_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidArgument(f"{name}={value!r} must be an integer >= {minimum}")


def _require_positive(value, name):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not (value > 0 and math.isfinite(value)):
        raise InvalidArgument(f"{name}={value!r} must be a positive finite number or None")
    return float(value)


def _name_of(f):
    return getattr(f, "__qualname__", None) or getattr(f, "__name__", None) or repr(f)


def _call(name, func, *args):
    try:
        return func(*args)
    except GradVerifyError:
        raise
    except Exception as exc:
        raise UserFunctionError(f"{name} raised {type(exc).__name__}: {exc} (its traceback follows, as the cause)") from exc


def _host(value, name, n):
    """A user function's array result as a flat float64 host vector of length ``n``."""
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    try:
        host = np.asarray(_backend.to_numpy(value), dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{name} returned a {type(value).__name__} that is not a float array: {exc}") from None
    if host.size != n:
        raise InvalidArgument(f"{name} returned {host.size} values; it must return {n} (one per element of x)")
    return host


def _scalar(value, name):
    try:
        host = np.asarray(_backend.to_numpy(value), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{name} returned a {type(value).__name__}, not a real scalar: {exc}") from None
    if host.size != 1:
        raise InvalidArgument(f"{name} returned shape {host.shape}; f must return a scalar")
    return float(host.reshape(()))


def _f_value(f, point, flat):
    return _scalar(_call("f", f, point.array(flat)), "f")


def _grad(grad_f, point, flat):
    return _host(_call("grad_f", grad_f, point.array(flat)), "grad_f", point.n)


# -- the numerical Hessian ---------------------------------------------------------------------


def hessian(f, grad_f, x, *, xp=None):
    """The Hessian of ``f`` at ``x`` by centered differences of ``grad_f``, in float64.

    Parameters
    ----------
    f : callable
        ``f(x) -> scalar``; validated as callable only (the Hessian needs ``grad_f`` alone).
    grad_f : callable
        ``grad_f(x) -> array`` shaped like ``x`` (or a 1-tuple of one).
    x : array
        A real floating array of any shape, NumPy or another array-API library.
    xp : namespace, optional
        The array namespace of ``x`` (default: found from ``x``).

    Returns
    -------
    HessianEstimate
        ``matrix`` (``(n, n)``, symmetrized) and ``error`` (elementwise estimate).

    Notes
    -----
    ``4 n`` calls of ``grad_f``: at ``x ± h e_k`` and ``x ± h/2 e_k``, each step replaced by
    the one float64 actually takes.

    Examples
    --------
    >>> import numpy as np
    >>> from gradverify.critical import hessian
    >>> A = np.array([[2.0, 1.0], [1.0, 3.0]])
    >>> est = hessian(lambda x: 0.5 * x @ A @ x, lambda x: A @ x, np.array([0.3, -0.2]))
    >>> bool(np.allclose(est.matrix, A))
    True
    """
    _require_callable(f, "f")
    _require_callable(grad_f, "grad_f")
    point = _Point(x, xp=xp)
    return _fd_hessian(grad_f, point)


def _fd_columns(grad_f, point, directions, steps):
    """``(g(x + t v) - g(x - t v)) / 2t`` (``≈ H v``) for each direction ``v`` and step ``t``.

    Taken at ``t`` and ``t / 2``; returns the estimate at ``t / 2`` and its error estimate in
    two parts, truncation ``|D(t) - D(t/2)| / 3`` and rounding (``ROUNDING_ULPS`` ulps of the
    largest gradient over the step), each ``(len(directions), n)``. Along a coordinate the
    step is the one float64 really takes.
    """
    x = point.host
    eps = float(np.finfo(np.float64).eps)
    est, truncs, roundings = [], [], []
    for v, t in zip(directions, steps):
        nz = np.flatnonzero(v)
        cols, gmax, spans = [], 0.0, []
        for frac in (1.0, 0.5):
            xp_, xm_ = x + (frac * t) * v, x - (frac * t) * v
            span = 2.0 * frac * t
            if nz.size == 1:
                k = nz[0]
                span = (xp_[k] - xm_[k]) / v[k]
            # A step may leave grad_f's domain (sqrt at 0): NumPy's warnings there are
            # gradverify's doing, not the caller's (as in check_vjp's finite differences);
            # the non-finite values they produce are reported by the callers.
            with np.errstate(all="ignore"):
                gp, gm = _grad(grad_f, point, xp_), _grad(grad_f, point, xm_)
            # A gradient that is not finite near x gives a non-finite column (the callers
            # report it); NumPy's warnings about inf - inf are not gradverify's to raise.
            # The rounding scale is the largest finite gradient element: an element that is
            # not finite makes its own entries non-finite, not every entry of the column.
            with np.errstate(invalid="ignore", over="ignore"):
                gmax = max(gmax, float(np.max(np.abs(gp), where=np.isfinite(gp), initial=0.0)), float(np.max(np.abs(gm), where=np.isfinite(gm), initial=0.0)))
                cols.append((gp - gm) / span)
            spans.append(span)
        with np.errstate(invalid="ignore", over="ignore"):
            trunc = np.abs(cols[0] - cols[1]) / 3.0
            rounding = 2.0 * ROUNDING_ULPS * eps * gmax / spans[1]
        est.append(cols[1])
        truncs.append(trunc)
        roundings.append(np.full(trunc.shape, rounding))
    return np.array(est), np.array(truncs), np.array(roundings)


def _fd_hessian_parts(grad_f, point):
    """The symmetrized finite-difference Hessian ``(matrix, trunc, rounding, steps)``.

    Half the asymmetry ``|H - Hᵀ| / 2`` counts as truncation.
    """
    x, n = point.host, point.n
    steps = BASE_STEP * step_scale(x)
    cols, trunc, rounding = _fd_columns(grad_f, point, np.eye(n), steps)
    # Row k of cols is column k of the Hessian: d g / d x_k.
    h = cols.T
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite columns stay non-finite
        asym = np.abs(h - h.T) / 2.0
        trunc = (trunc.T + trunc) / 2.0 + asym
        rounding = (rounding.T + rounding) / 2.0
        matrix = (h + h.T) / 2.0
    return matrix, trunc, rounding, steps


def _fd_hessian(grad_f, point):
    matrix, trunc, rounding, steps = _fd_hessian_parts(grad_f, point)
    with np.errstate(invalid="ignore", over="ignore"):
        err = trunc + rounding
    return HessianEstimate(matrix=matrix, error=err, step=steps)


# -- the high-precision Hessian -----------------------------------------------------------------


class _HighPrecisionF:
    """``f`` on mpmath arrays around the float64 point, at ``dps + TRUTH_EXTRA_DIGITS`` digits."""

    def __init__(self, f, point, dps):
        self.f, self.point = f, point
        self.dps = dps
        self.work = dps + TRUTH_EXTRA_DIGITS
        self.ctx = _highprec.CTX
        self.base = _highprec.to_hp(point.host)
        self.f0 = self(self.base)
        with self.ctx.workdps(self.work):
            self.h = self.ctx.mpf(10) ** (-self.ctx.mpf(dps) / 4)

    def __call__(self, flat):
        out = _highprec.call(self.f, [flat.reshape(self.point.shape)], dps=self.work)
        if out.size != 1:
            raise InvalidArgument(f"f returned shape {out.shape} on high-precision input; f must return a scalar")
        return out.reshape(-1)[0]

    def shifted(self, u, w, su, sw):
        """``f(x + su h u + sw h w)`` for host float64 vectors ``u``, ``w`` and signs."""
        with self.ctx.workdps(self.work):
            moved = self.base + (su * self.h) * _highprec.to_hp(u) + (sw * self.h) * _highprec.to_hp(w)
        return self(moved)

    def mixed(self, u, w):
        """``uᵀ H w`` by the four-point second difference."""
        pp, pm, mp, mm = (self.shifted(u, w, a, b) for a, b in ((1, 1), (1, -1), (-1, 1), (-1, -1)))
        with self.ctx.workdps(self.work):
            return float((pp - pm - mp + mm) / (4 * self.h * self.h))


def _truth_f(f, point, dps):
    _require_int(dps, "dps", 30)
    return _HighPrecisionF(f, point, dps)


def hessian_truth(f, x, *, dps=DEFAULT_DPS):
    """The Hessian of ``f`` at ``x`` from second differences of ``f`` at high precision.

    ``f`` must run on NumPy object arrays of mpmath numbers (plain NumPy code usually does);
    otherwise :class:`gradverify.HighPrecisionUnavailable` is raised. Costs ``2 n (n + 1)``
    evaluations of ``f``. Returns an ``(n, n)`` float64 NumPy array.

    Examples
    --------
    >>> import numpy as np
    >>> from gradverify.critical import hessian_truth
    >>> H = hessian_truth(lambda x: np.sum(np.sin(x)), np.array([0.5, 1.0]))
    >>> bool(np.allclose(np.diag(H), -np.sin([0.5, 1.0]), rtol=1e-14))
    True
    """
    _require_callable(f, "f")
    point = _Point(x)
    hp = _truth_f(f, point, dps)
    return _truth_matrix(hp, point)


def _truth_matrix(hp, point):
    n = point.n
    s = step_scale(point.host)
    eye = np.eye(n)
    out = np.empty((n, n))
    for i in range(n):
        for j in range(i, n):
            out[i, j] = out[j, i] = hp.mixed(s[i] * eye[i], s[j] * eye[j]) / (s[i] * s[j])
    return out


# -- checks ----------------------------------------------------------------------------------------

# Seconds of high-precision evaluation the spot truth of one check may take (at least one
# chunk of _arbiter.SPOT_CHUNK entries is always computed).
SPOT_TRUTH_SECONDS = 10.0
_NO_TRUTH = "f at high precision is not finite within the truth's step of x"


def _rtol(point, rtol):
    if rtol is not None:
        return _tolerances.rtol_for("float64", rtol)
    return RTOL


def _unit(n, k, size):
    e = np.zeros(n)
    e[k] = size
    return e


def _stencil(estimate, trunc, rounding, step):
    """The finite-difference entries as a :class:`~gradverify._numerical.Stencil` (flat).

    Smooth by construction (no kinks, nothing rough: centered differences of ``grad_f`` have
    no one-sided brackets). An entry whose estimate or error is not finite (``grad_f`` is not
    finite within a step of ``x``) gets a NaN estimate and an infinite error: the verdict
    reads it as "the finite differences were not finite around x", unresolved without a truth.
    """
    estimate, trunc, rounding = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (estimate, trunc, rounding))
    ok = np.isfinite(estimate) & np.isfinite(trunc) & np.isfinite(rounding)
    est = np.where(ok, estimate, np.nan)
    none = np.zeros(est.shape, dtype=bool)
    return Stencil(
        estimate=est,
        trunc=np.where(ok, trunc, np.inf),
        rounding=np.where(ok, rounding, 0.0),
        lo=est.copy(),
        hi=est.copy(),
        kink=none,
        step=np.broadcast_to(np.asarray(step, dtype=np.float64).reshape(-1) if np.ndim(step) else step, est.shape).copy(),
        still=none.copy(),
        rough=none.copy(),
    )


def _truth_values(center, notes=None):
    """:class:`~gradverify._truth.TruthValues` of smooth entries (NaN and a note where not finite)."""
    center = np.asarray(center, dtype=np.float64).reshape(-1)
    ok = np.isfinite(center)
    center = np.where(ok, center, np.nan)
    note = np.full(center.shape, "", dtype=object)
    note[~ok] = _NO_TRUTH
    if notes is not None:
        for k, why in notes.items():
            note[k] = why
    return TruthValues(center=center, lo=center.copy(), hi=center.copy(), kink=np.zeros(center.shape, dtype=bool), note=note)


class _Sources(_arbiter.Sources):
    """More evidence about the entries of a Hessian (or of ``H v``), for the arbiter.

    ``entry(hp, k)`` computes entry ``k`` from a :class:`_HighPrecisionF` ``hp``; ``key(k)``
    names the value it computes (a Hessian's ``(i, j)`` and ``(j, i)`` are one value).
    Provides spot truth (when ``spot``: the truth was not computed for every entry only
    because ``x`` is large) and the truth again at more digits (:func:`gradverify._truth.confirm`).
    No cross-check of the finite differences (their error estimate is all there is) and no
    re-examination: a confirmed truth stands.
    """

    def __init__(self, f, point, dps, entry, key, *, hp, spot):
        self.f, self.point, self.dps, self.entry, self.key = f, point, dps, entry, key
        self.covers_all = hp is not None
        self.spot = spot
        self.notes = []
        self._hp = {0: hp} if hp is not None else {}
        self._cache = {}
        self._spot_started = None

    def _hp_at(self, extra):
        if extra not in self._hp:
            try:
                self._hp[extra] = _HighPrecisionF(self.f, self.point, self.dps + extra)
            except HighPrecisionUnavailable as exc:
                self._hp[extra] = None
                self.notes.append(f"high precision unavailable at {self.dps + extra} digits: {exc}")
        return self._hp[extra]

    def values(self, indices, extra=0):
        """TruthValues for the flat entries ``indices`` at ``dps + extra`` digits, or None."""
        hp = self._hp_at(extra)
        if hp is None:
            return None
        center, notes = [], {}
        for pos, k in enumerate(indices):
            key = (extra, self.key(int(k)))
            if key not in self._cache:
                try:
                    self._cache[key] = (self.entry(hp, int(k)), "")
                except HighPrecisionUnavailable as exc:
                    self._cache[key] = (math.nan, f"unavailable at this entry: {exc}")
            value, why = self._cache[key]
            center.append(value)
            if why:
                notes[pos] = why
        return _truth_values(center, notes)

    def truth(self, indices):
        if not self.spot:
            return None
        if self._spot_started is None:
            self._spot_started = time.perf_counter()
        return self.values(indices)

    def spot_spent(self):
        return self._spot_started is not None and time.perf_counter() - self._spot_started > SPOT_TRUTH_SECONDS

    def confirm(self, truth, indices):
        got = _arbiter._replace(truth)
        mask = np.zeros(truth.center.shape, dtype=bool)
        mask[indices] = True

        def recompute(*, indices, extra_digits):
            new = self.values(indices, extra_digits)
            return TruthValues.unknown(len(indices), note="f no longer runs at more digits") if new is None else new

        # Settled when two precisions agree to 1e-12 relative, or to 1e-12 of the largest
        # entry (an entry that is zero is the difference of rounding at either precision).
        scale = float(np.max(np.abs(truth.center[truth.has_truth]), initial=0.0))
        _truth.confirm(got, mask, recompute, self.dps, np.full(mask.shape, 1e-12 * scale))
        return got


def _judge(a, num, fd, tv, sources, *, rtol, kind, name, note, started, index):
    """The :class:`HessianCheck` of the flat analytic entries ``a`` from the arbiter's verdicts.

    ``num`` is the finite-difference estimate as computed (for the report), ``fd`` its
    :class:`Stencil`, ``tv`` the truth (None when it was not computed for every entry) and
    ``index(k) -> (i, j)`` names the flat entry ``k``. A non-finite analytic entry fails
    (blame analytic) whatever the references say; an entry with neither a truth nor a
    finite difference that resolves it is unresolved, and the check fails.
    """
    a, num = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (a, num))
    a_ok = np.isfinite(a)
    # The natural size of an entry: the largest finite reference (the truth where there is
    # one, else the finite difference). The analytic side may carry ANALYTIC_NOISE_ULPS ulps of it.
    ref = fd.estimate if tv is None else np.where(tv.has_truth, tv.center, fd.estimate)
    natural = float(np.max(np.abs(ref[np.isfinite(ref)]), initial=0.0))
    v, evidence, notes = _arbiter.arbitrate(a, _arbiter.Evidence(fd, tv), sources, rtol=rtol, eps=_tolerances.eps_for("float64"), natural=natural)
    fd, tv = evidence.fd, evidence.truth
    wrong = v.wrong | ~a_ok
    unresolved = (v.unresolved | v.nondiff) & ~wrong
    has_truth = v.has_truth
    with np.errstate(invalid="ignore"):
        off = has_truth & (v.nt_loose > rtol) if v.nt_loose is not None else np.zeros(a.shape, dtype=bool)
        badness = v.badness
    judged = np.where(~a_ok, np.inf, np.where(unresolved & ~np.isfinite(badness), 0.0, badness))
    worst = None
    if a.size:
        # The worst entry: a non-finite analytic one, else a failing one, else an unresolved
        # one, else the largest error; among equals, one with a truth (the spot truth's
        # corroborated blame rather than an entry judged by the finite difference alone).
        priority = np.select([~a_ok, wrong, unresolved], [3, 2, 1], 0)
        k = int(np.lexsort((judged, has_truth, priority))[-1])
        i, j = index(k)
        truth_k = bool(has_truth[k])
        worst = WorstEntry(
            i=i,
            j=j,
            analytic=float(a[k]),
            numerical=float(num[k]),
            truth=float(tv.center[k]) if truth_k else None,
            rel_analytic_numerical=float(v.rel_an[k]),
            rel_analytic_truth=float(v.rel_at[k]) if truth_k else None,
            rel_numerical_truth=float(v.nt_loose[k]) if truth_k else None,
        )
    failures, numerical_off, n_unresolved = int(wrong.sum()), int(off.sum()), int(unresolved.sum())
    blame = "analytic" if failures else ("numerical" if numerical_off or n_unresolved else None)
    no_ref = unresolved & ~np.isfinite(fd.estimate)
    reasons = []
    if no_ref.any():
        reasons.append(f"no finite reference (truth or finite difference) at {int(no_ref.sum())}")
    if n_unresolved > no_ref.sum():
        reasons.append(f"no truth and a finite difference too coarse for rtol at {int(n_unresolved - no_ref.sum())}")
    if sources.covers_all:
        used = "elementwise"
    elif tv is not None and tv.has_truth.any():
        used = "spot"
    else:
        used = "off"
    notes = ([note] if note else []) + sources.notes + notes
    missing = (tv.note != "") & ~has_truth if tv is not None else np.zeros(a.shape, dtype=bool)
    if missing.any():
        k = int(np.flatnonzero(missing)[0])
        notes.append(f"no truth at {int(missing.sum())} entries, e.g. ({', '.join(map(str, index(k)))}): {tv.note[k]}")
    return HessianCheck(
        passed=failures == 0 and n_unresolved == 0,
        blame=blame,
        max_rel_error=float(np.max(judged, initial=0.0)),
        worst=worst,
        kind=kind,
        function=name,
        checked=int(a.size),
        failures=failures,
        numerical_off=numerical_off,
        rtol=rtol,
        truth=used,
        truth_note="; ".join(notes),
        seconds=time.perf_counter() - started,
        failing=[index(int(k)) for k in np.flatnonzero(wrong)[:8]],
        nonfinite=int((~a_ok).sum()),
        unresolved=n_unresolved,
        unresolved_at=[index(int(k)) for k in np.flatnonzero(unresolved)[:8]],
        unresolved_note="; ".join(reasons),
    )


def _truth_choice(truth):
    if truth is True or truth is None:
        return "auto"
    if truth is False:
        return "off"
    if truth not in ("auto", "on", "off"):
        raise InvalidArgument(f"truth={truth!r} is not one of 'auto', 'on', 'off' (or True/False)")
    return truth


def _maybe_truth(f, point, truth, dps, limit):
    """``(hp, note, spot)``: the high-precision ``f`` for every entry, or None with a note
    saying why not; ``spot`` when the truth may still be taken for a few disputed entries
    (``x`` is only too large for all of them)."""
    if truth == "off":
        return None, "turned off by the caller", False
    _require_int(dps, "dps", 30)
    if truth == "auto" and point.n > limit:
        return None, f"x holds {point.n} elements, more than the {limit} the truth takes by default; pass truth='on' to force it", True
    try:
        return _truth_f(f, point, dps), "", False
    except HighPrecisionUnavailable as exc:
        if truth == "on":
            raise
        return None, f"unavailable: {exc}", False


def check_hessian(f, grad_f, hess_f, x, *, rtol=None, truth="auto", dps=DEFAULT_DPS, name=None):
    """Check a hand-written Hessian against the finite-difference Hessian and the truth.

    Parameters
    ----------
    f, grad_f : callable
        The scalar function and its (trusted or separately checked) gradient.
    hess_f : callable
        ``hess_f(x)`` returning ``(n, n)`` or ``x.shape + x.shape``; compared entry by entry
        as returned (an asymmetric Hessian fails on the entry that is off).
    x : array
        The point (real floating, any shape).
    rtol : float, optional
        Default :data:`RTOL` (1e-6).
    truth : {"auto", "on", "off"}
        ``auto``: the high-precision Hessian when ``x`` holds at most
        :data:`TRUTH_ELEMENTWISE_MAX` elements and ``f`` runs on mpmath arrays; ``on``
        raises :class:`gradverify.HighPrecisionUnavailable` when it cannot.
    dps : int
        Digits of the truth (at least 30).

    Returns
    -------
    HessianCheck

    Examples
    --------
    >>> import numpy as np
    >>> from gradverify.critical import check_hessian
    >>> f = lambda x: np.sum(x ** 3)
    >>> check_hessian(f, lambda x: 3 * x ** 2, lambda x: np.diag(6 * x), np.array([1.0, -2.0])).passed
    True
    """
    started = time.perf_counter()
    for fn, label in ((f, "f"), (grad_f, "grad_f"), (hess_f, "hess_f")):
        _require_callable(fn, label)
    point = _Point(x)
    rtol = _rtol(point, rtol)
    truth = _truth_choice(truth)
    n = point.n
    # A non-finite analytic entry is a failure of hess_f (blame analytic), as a non-finite
    # gradient is in check_vjp: _judge counts it.
    user = _host(_call("hess_f", hess_f, point.array(point.host)), "hess_f", n * n)
    matrix, trunc, rounding, steps = _fd_hessian_parts(grad_f, point)
    fd = _stencil(matrix, trunc, rounding, np.maximum.outer(steps, steps))
    hp, note, spot = _maybe_truth(f, point, truth, dps, TRUTH_ELEMENTWISE_MAX)
    s = step_scale(point.host)

    def entry(hp, k):
        i, j = divmod(k, n)
        return hp.mixed(_unit(n, i, s[i]), _unit(n, j, s[j])) / (s[i] * s[j])

    def key(k):
        i, j = divmod(k, n)
        return (min(i, j), max(i, j))  # one value, computed once

    sources = _Sources(f, point, dps, entry, key, hp=hp, spot=spot)
    tv = sources.values(range(n * n)) if hp is not None else None
    return _judge(user, matrix, fd, tv, sources, rtol=rtol, kind="hessian", name=name or _name_of(hess_f), note=note, started=started, index=lambda k: divmod(k, n))


def check_hvp(f, grad_f, hvp, x, *, directions=3, rtol=None, truth="auto", dps=DEFAULT_DPS, seed=0, name=None):
    """Check a hand-written Hessian-vector product along random signed directions.

    ``hvp(x, v)`` returns ``H v`` shaped like ``x``. For each of ``directions`` seeded
    directions ``v`` (entries ``±1`` times the element's step scale) it is compared, element
    by element, with ``(g(x + h v) - g(x - h v)) / 2h`` and, for at most
    :data:`TRUTH_HVP_MAX` elements (``truth="auto"``), with the high-precision ``H v``
    (``4 n`` evaluations of ``f`` per direction). Only ``4 * directions`` gradient calls on the
    numerical side: the path for many parameters. In the result, entry ``(i, j)`` is
    direction ``i``, element ``j``.

    Examples
    --------
    >>> import numpy as np
    >>> from gradverify.critical import check_hvp
    >>> f = lambda x: np.sum(np.exp(x))
    >>> check_hvp(f, np.exp, lambda x, v: np.exp(x) * v, np.array([0.1, 0.7, -0.4])).passed
    True
    """
    started = time.perf_counter()
    for fn, label in ((f, "f"), (grad_f, "grad_f"), (hvp, "hvp")):
        _require_callable(fn, label)
    _require_int(directions, "directions", 1)
    _require_int(seed, "seed", 0)
    point = _Point(x)
    rtol = _rtol(point, rtol)
    truth = _truth_choice(truth)
    n = point.n
    rng = np.random.default_rng([seed, 2])
    scale = step_scale(point.host)
    vs = [rng.choice([-1.0, 1.0], size=n) * scale for _ in range(directions)]
    user = np.array([_host(_call("hvp", hvp, point.array(point.host), point.array(v)), "hvp", n) for v in vs])
    num, trunc, rounding = _fd_columns(grad_f, point, vs, [BASE_STEP] * len(vs))
    fd = _stencil(num, trunc, rounding, BASE_STEP)
    hp, note, spot = _maybe_truth(f, point, truth, dps, TRUTH_HVP_MAX)

    def entry(hp, k):
        d, j = divmod(k, n)
        return hp.mixed(_unit(n, j, scale[j]), vs[d]) / scale[j]

    sources = _Sources(f, point, dps, entry, int, hp=hp, spot=spot)
    tv = sources.values(range(directions * n)) if hp is not None else None
    return _judge(user, num, fd, tv, sources, rtol=rtol, kind="hvp", name=name or _name_of(hvp), note=note, started=started, index=lambda k: divmod(k, n))


assert_hessian = asserting(check_hessian)
assert_hvp = asserting(check_hvp)


# -- classification -------------------------------------------------------------------------------


def classify(f, grad_f, x, *, hess_f=None, gtol=None, etol=None):
    """Classify ``x`` as a critical point of ``f`` from its gradient and Hessian.

    Parameters
    ----------
    f, grad_f : callable
    x : array
    hess_f : callable, optional
        The user's Hessian; when given its eigenvalues are used, and its distance from the
        finite-difference Hessian counts in the error bound.
    gtol : float, optional
        ``x`` is critical when ``||grad_f(x)||_2 <= gtol``; default
        ``sqrt(eps) * max(1, |f(x)|) / rms(x)`` (``rms`` 1 at the origin).
    etol : float, optional
        Eigenvalues with ``|lambda| <= etol`` are too close to zero to call; default
        ``max(SAFETY * ||E||_F, sqrt(eps) * max|lambda|)`` with ``E`` the Hessian's error
        estimate (Weyl: no eigenvalue moves by more than ``||E||_2 <= ||E||_F``).

    Returns
    -------
    CriticalPoint
        ``verdict="nonfinite"`` (with the reason in ``note``) when ``f(x)``, ``grad_f(x)``,
        ``grad_f`` within a finite-difference step of ``x``, or ``hess_f(x)`` is not finite.
    """
    _require_callable(f, "f")
    _require_callable(grad_f, "grad_f")
    if hess_f is not None:
        _require_callable(hess_f, "hess_f")
    gtol = _require_positive(gtol, "gtol")
    etol = _require_positive(etol, "etol")
    point = _Point(x)
    n = point.n
    fx = _f_value(f, point, point.host)
    g = _grad(grad_f, point, point.host)
    with np.errstate(over="ignore", invalid="ignore"):
        gnorm = float(np.linalg.norm(g))
    sqrt_eps = math.sqrt(np.finfo(np.float64).eps)
    nonfinite = functools.partial(_nonfinite_point, point, gnorm, gtol, etol)
    if not math.isfinite(fx):
        return nonfinite(f"f(x) = {fx}: a point where f is not finite has no classification")
    if not np.all(np.isfinite(g)):
        return nonfinite(f"grad_f(x) holds NaN or Inf at index {_first_nonfinite(g, point.shape)}; pass a point where the gradient is finite")
    if gtol is None:
        gtol = sqrt_eps * max(1.0, abs(fx)) / input_scale(point.host)
    nonfinite = functools.partial(_nonfinite_point, point, gnorm, gtol, etol)
    fd = _fd_hessian(grad_f, point)
    H, E = fd.matrix, fd.error
    if not (np.all(np.isfinite(H)) and np.all(np.isfinite(E))):
        bad = np.argwhere(~(np.isfinite(H) & np.isfinite(E)))[0]
        msg = (
            f"the finite-difference Hessian holds NaN or Inf at entry ({bad[0]}, {bad[1]}): grad_f is not finite"
            f" within a step (about {float(np.max(fd.step)):.3g}) of x, which is at the edge of its domain"
        )
        return nonfinite(msg, H)
    if hess_f is not None:
        user = _host(_call("hess_f", hess_f, point.array(point.host)), "hess_f", n * n).reshape(n, n)
        if not np.all(np.isfinite(user)):
            bad = np.argwhere(~np.isfinite(user))[0]
            return nonfinite(f"hess_f(x) holds NaN or Inf at entry ({bad[0]}, {bad[1]})", user)
        with np.errstate(over="ignore"):
            E = np.maximum(E, np.abs(user - H))
            H = (user + user.T) / 2.0
    with np.errstate(over="ignore"):
        enorm = float(np.sqrt(np.sum(E**2)))
    if not (math.isfinite(enorm) and np.all(np.isfinite(H))):
        return nonfinite(f"the Hessian or its error bound overflows float64 (error norm {enorm:.3g})", H)
    lam, vec = np.linalg.eigh(H)
    if etol is None:
        etol = max(SAFETY * enorm, sqrt_eps * float(np.max(np.abs(lam))))
    critical = gnorm <= gtol
    result = CriticalPoint(
        verdict="",
        grad_norm=gnorm,
        gtol=gtol,
        critical=critical,
        eigenvalues=lam,
        etol=etol,
        hessian=H,
        hessian_error=enorm,
    )
    small = np.abs(lam) <= etol
    if not critical:
        result.verdict = "not critical"
        result.note = f"the gradient norm {gnorm:.3g} exceeds gtol; classification applies at critical points only"
    elif small.any():
        result.verdict = "degenerate"
        result.note = (
            f"{int(small.sum())} eigenvalue(s) within etol of zero ({', '.join(f'{v:.3g}' for v in lam[small])}):"
            " the second-order test cannot decide; higher-order terms do"
        )
    elif np.all(lam > 0):
        result.verdict = "local minimum"
    elif np.all(lam < 0):
        result.verdict = "local maximum"
    else:
        result.verdict = "saddle"
    if critical and lam[0] < -etol:
        d = vec[:, 0] / np.linalg.norm(vec[:, 0])
        result.escape_direction = d.reshape(point.shape)
        result.escape_eigenvalue = float(lam[0])
        scale = input_scale(point.host)
        for h in scale * np.array([1e-1, 1e-2, 1e-3]):
            with np.errstate(all="ignore"):  # a step may leave f's domain: the row shows NaN
                actual = _f_value(f, point, point.host + h * d) - fx
            result.demonstration.append((float(h), float(actual), float(0.5 * lam[0] * h * h)))
    return result


def _first_nonfinite(values, shape):
    k = int(np.flatnonzero(~np.isfinite(values))[0])
    return tuple(int(j) for j in np.unravel_index(k, shape))


def _nonfinite_point(point, gnorm, gtol, etol, note, hessian=None):
    """The ``"nonfinite"`` verdict: nothing is classified, no eigenvalue is computed."""
    n = point.n
    return CriticalPoint(
        verdict="nonfinite",
        grad_norm=gnorm,
        gtol=math.nan if gtol is None else gtol,
        critical=False,
        eigenvalues=np.empty(0),
        etol=math.nan if etol is None else etol,
        hessian=np.full((n, n), np.nan) if hessian is None else hessian,
        hessian_error=math.nan,
        note=note,
    )


# -- Taylor order ----------------------------------------------------------------------------------


def taylor_order(f, grad_f, x, d, *, hess_f=None, steps=None, dps=DEFAULT_DPS):
    """The observed order of the Taylor remainder of ``f`` at ``x`` along ``d``.

    ``r(h) = f(x + h d) - f(x) - h gᵀd`` (``- h²/2 dᵀHd`` when ``hess_f`` is given) over
    ``steps`` (default ``0.1 * rms(x) / max|d| * 2**-k`` for ``k = 0..7``); the order is the
    least-squares slope of ``log|r|`` against ``log h`` over the finer half of the steps
    (at least three; steps where ``|r|`` is at rounding level are left out): 2 for a right gradient, 3 for a right
    Hessian, 1 (resp. 2) when the gradient (resp. Hessian) is wrong. ``f`` is evaluated on
    mpmath arrays at ``dps`` digits where it can run there, so that rounding does not
    flatten the curve at small ``h``; otherwise in float64 (noted).

    Examples
    --------
    >>> import numpy as np
    >>> from gradverify.critical import taylor_order
    >>> x, d = np.array([0.3, -0.5]), np.array([1.0, 2.0])
    >>> f = lambda x: np.sum(np.sin(x))
    >>> round(taylor_order(f, np.cos, x, d).order)
    2
    >>> round(taylor_order(f, np.cos, x, d, hess_f=lambda x: np.diag(-np.sin(x))).order)
    3
    """
    _require_callable(f, "f")
    _require_callable(grad_f, "grad_f")
    if hess_f is not None:
        _require_callable(hess_f, "hess_f")
    _require_int(dps, "dps", 30)
    point = _Point(x)
    dpoint = _Point(d, name="d")
    if dpoint.n != point.n:
        raise InvalidArgument(f"d has {dpoint.n} elements but x has {point.n}; d is a direction in x's space")
    dv = dpoint.host
    if not np.any(dv):
        raise InvalidArgument("d is all zeros; pass a nonzero direction")
    if steps is None:
        steps = 0.1 * input_scale(point.host) / np.max(np.abs(dv)) * 2.0 ** -np.arange(8)
    steps = np.asarray(steps, dtype=np.float64).reshape(-1)
    if steps.size < 3 or not np.all(steps > 0) or not np.all(np.isfinite(steps)):
        raise InvalidArgument("steps must hold at least 3 positive finite step sizes")
    expected = 3 if hess_f is not None else 2

    def nonfinite(why, rows=(), high=False):
        return TaylorOrder(order=math.nan, expected=expected, passed=False, exact=False, table=list(rows), high_precision=high, note=f"nonfinite: {why}")

    g = _grad(grad_f, point, point.host)
    if not np.all(np.isfinite(g)):
        return nonfinite(f"grad_f(x) holds NaN or Inf at index {_first_nonfinite(g, point.shape)}")
    with np.errstate(over="ignore", invalid="ignore"):
        slope = float(g @ dv)
    curv, curv_size = 0.0, 0.0
    if hess_f is not None:
        H = _host(_call("hess_f", hess_f, point.array(point.host)), "hess_f", point.n**2).reshape(point.n, point.n)
        if not np.all(np.isfinite(H)):
            bad = np.argwhere(~np.isfinite(H.reshape(point.n, point.n)))[0]
            return nonfinite(f"hess_f(x) holds NaN or Inf at entry ({bad[0]}, {bad[1]})")
        with np.errstate(over="ignore", invalid="ignore"):
            curv = float(dv @ H @ dv)
            curv_size = float(np.abs(dv) @ np.abs(H) @ np.abs(dv))
    if not (math.isfinite(slope) and math.isfinite(curv) and math.isfinite(curv_size)):
        return nonfinite(f"the Taylor terms overflow float64 (g·d = {slope:.3g}, dᵀHd = {curv:.3g})")
    high, note = True, ""
    try:
        ctx = _highprec.CTX
        base = _highprec.to_hp(point.host)
        dhp = _highprec.to_hp(dv)

        def at(h):
            with ctx.workdps(dps):
                moved = base + ctx.mpf(float(h)) * dhp
            out = _highprec.call(f, [moved.reshape(point.shape)], dps=dps)
            return out.reshape(-1)[0]

        f0 = at(0.0)
        rows = []
        for h in steps:
            fh = at(h)
            with ctx.workdps(dps):
                hm = ctx.mpf(float(h))
                r = fh - f0 - hm * ctx.mpf(slope) - hm * hm * ctx.mpf(curv) / 2
            rows.append((float(h), float(r)))
        noise = 10.0 ** (6 - dps) * max(1.0, abs(float(f0)))
    except HighPrecisionUnavailable as exc:
        high, note = False, f"high precision unavailable: {exc}"
        f0 = _f_value(f, point, point.host)
        rows = []
        for h in steps:
            with np.errstate(all="ignore"):  # a step may leave f's domain; reported below
                fh = _f_value(f, point, point.host + h * dv)
            with np.errstate(over="ignore", invalid="ignore"):  # f not finite at x + h d: r is NaN
                rows.append((float(h), float(fh - f0 - h * slope - h * h * curv / 2.0)))
        noise = 16 * np.finfo(np.float64).eps * max(1.0, abs(f0))
    hs = np.array([h for h, _ in rows])
    rs = np.abs(np.array([r for _, r in rows]))
    if not math.isfinite(float(f0)):
        return nonfinite(f"f(x) = {float(f0)}", rows, high)
    finite = np.isfinite(rs)
    if not finite.all():
        # Steps that left f's domain are left out of the fit; with fewer than three left
        # the order is not measured (never "exact" on the strength of NaN).
        lost = ", ".join(f"{h:.3g}" for h in hs[~finite])
        note = (note + "; " if note else "") + f"f(x + h d) is not finite at h = {lost}; those steps are left out"
        if finite.sum() < 3:
            return nonfinite(f"f(x + h d) is not finite at h = {lost}; fewer than three steps remain (pass smaller steps=)", rows, high)
    # The float64 gradient and Hessian carry rounding of their own: a remainder at that level
    # (h times ulps of |g||d|) is what an exact polynomial leaves, not an order.
    eps = float(np.finfo(np.float64).eps)
    carried = _tolerances.ANALYTIC_NOISE_ULPS * eps * (hs * float(np.abs(g) @ np.abs(dv)) + hs * hs * curv_size / 2.0)
    usable = finite & (rs > noise + carried)
    if usable.sum() < 2:
        return TaylorOrder(order=math.inf, expected=expected, passed=True, exact=True, table=rows, high_precision=high, note=note)
    # The asymptotic regime is at the small steps: fit the finer half of the usable ones
    # (at least three), so that a sign change of r at large h (a wrong gradient's h-term
    # overtaking the curvature) does not bend the fit.
    idx = np.flatnonzero(usable)
    tail = idx[-max(3, idx.size // 2):] if idx.size >= 3 else idx
    order = float(np.polyfit(np.log(hs[tail]), np.log(rs[tail]), 1)[0])
    return TaylorOrder(order=order, expected=expected, passed=order >= expected - 0.5, exact=False, table=rows, high_precision=high, note=note)
