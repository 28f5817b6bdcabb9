"""The error-ratio gate for low-precision kernels: ``check_vjp(..., reference=ref_vjp)``.

A fast backward kernel in float16, bfloat16 or float32 cannot meet a float64 tolerance, and
a tolerance picked by hand is either too loose to see a precision bug or too tight for an
honest kernel. The gate compares the kernel with the plain computation instead: the
*reference* ``ref_vjp`` (the obvious, trusted NumPy/CuPy backward) runs on the same
low-precision inputs and cotangent as the kernel, both gradients are measured against the
float64 judge (the high-precision truth where an element has one, else the float64 finite
difference with its error bound), and each element must satisfy

    kernel_error <= k * reference_error + floor

with ``k`` fixed in advance (``reference_factor``, default ``DEFAULT_FACTOR = 2``) and
``floor = FLOOR_ULPS * eps(dtype) * G``, a few units in the last place of the dtype at the
gradient's natural scale ``G`` (the input's largest judged gradient element), plus, for a
``nondeterministic=True`` op, the spread its repeated runs showed at that element. The
floor covers the rounding of the result itself, which an exact reference can escape.

The judge's own uncertainty ``e`` (twice the finite difference's error estimate; zero for
the truth) is carried through: an element *fails* only when it fails for every value the
judge allows (``kernel_error - e > k * (reference_error + e) + floor``), *passes* when it
passes for every one (``kernel_error + e <= k * max(reference_error - e, 0) + floor``), and
is otherwise undecided. The gate's verdict:

* ``failed`` (blame ``"analytic"``) at any failing element;
* ``inconclusive`` when the reference itself is off the judge by more than
  ``REFERENCE_MAX_ERROR`` of ``G`` (it is not a trusted computation of this gradient, and
  ``k`` times its error would let anything pass), or when some element is undecided (the
  judge cannot resolve the reference's error there);
* ``passed`` otherwise.

At a kink the judge is a bracket of subgradients and an error is the distance to it. In
directional mode (and on the lazy truth's directional row) the same rule applies to the
values along each direction, ``<g, d>``, with the floor ``FLOOR_ULPS * eps * sqrt(sum_i
G_i**2 * sum_j d_ij**2)``: each element's floor, added in quadrature, as the direction's
random signs add independent errors. Along a direction errors of opposite signs partly
cancel, so the directional gate is weaker than the elementwise one (full mode).
"""

from dataclasses import dataclass

import numpy as np

DEFAULT_FACTOR = 2.0
FLOOR_ULPS = 2
REFERENCE_MAX_ERROR = 0.25


@dataclass
class GateElement:
    """One element (or direction) of the gate, usually the worst."""

    index: tuple
    kernel: float
    reference: float
    judge: float | None  # the float64 value both are measured against (None at a kink)
    judge_bracket: tuple | None  # (lo, hi) at a kink
    judge_error: float  # the judge's own error bound (0 for the truth)
    judged_by: str  # "truth" or "finite difference"
    kernel_error: float
    reference_error: float
    allowed: float  # k * reference_error + floor


@dataclass
class GateReport:
    """The gate's verdict for one input (or for the directions over all inputs)."""

    verdict: str  # "passed", "failed" or "inconclusive"
    reason: str
    k: float
    floor: float  # the floor at the gradient's scale (per element; per direction its largest)
    scale: float  # G, the gradient's natural scale
    checked: int
    failures: int
    undecided: int
    kernel_error: float  # the largest absolute error of the kernel over the elements
    reference_error: float  # the same for the reference
    ratio: float | None  # kernel_error / reference_error (None when the reference is exact)
    ratio_median: float | None  # of the per-element ratio kernel / max(reference, floor)
    ratio_p90: float | None
    ratio_max: float | None
    spread: float | None = None  # the kernel's largest spread over repeated runs (nondeterministic=True)
    worst: GateElement | None = None

    @property
    def passed(self):
        return self.verdict == "passed"


def judge(kernel, reference, center, bound, *, eps, k, floor_scale=None, scale=None, lo=None, hi=None, kink=None, spread=None, by_truth=None, unravel=None):
    """The gate over one vector of values.

    ``kernel`` and ``reference`` are the two gradients (or their values along directions),
    ``center`` the judge's value (NaN where there is none) and ``bound`` its error bound
    (infinite where unknown); at ``kink`` the judge is the bracket ``[lo, hi]``. ``scale``
    is the gradient's natural scale ``G`` (default: the largest ``|center|``);
    ``floor_scale`` the per-element multiplier of ``FLOOR_ULPS * eps`` (default ``G``).
    ``spread``, where given, is added to the floor per element.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    n = kernel.size
    center = np.asarray(center, dtype=np.float64)
    bound = np.where(np.isnan(bound), np.inf, np.asarray(bound, dtype=np.float64))
    kink = np.zeros(n, dtype=bool) if kink is None else np.asarray(kink, dtype=bool)
    lo = center if lo is None else np.where(kink, lo, center)
    hi = center if hi is None else np.where(kink, hi, center)
    known = np.where(kink, np.isfinite(lo) & np.isfinite(hi), np.isfinite(center)) & np.isfinite(bound)
    if scale is None:
        mags = np.maximum(np.abs(lo), np.abs(hi))[known]
        scale = float(mags.max()) if mags.size else 0.0
    floor = FLOOR_ULPS * eps * (scale * np.ones(n) if floor_scale is None else np.asarray(floor_scale, dtype=np.float64))
    if spread is not None:
        floor = floor + np.asarray(spread, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        k_err = _distance(kernel, lo, hi)
        r_err = _distance(reference, lo, hi)
        b = np.where(known, bound, 0.0)
        fails = known & (k_err - b > k * (r_err + b) + floor)
        passes = known & (k_err + b <= k * np.maximum(r_err - b, 0.0) + floor)
    undecided = ~fails & ~passes
    k_known, r_known = k_err[known], r_err[known]
    kernel_error = float(k_known.max()) if k_known.size else float("nan")
    reference_error = float(r_known.max()) if r_known.size else float("nan")
    ratio = kernel_error / reference_error if reference_error > 0 else None
    per = k_known / np.maximum(r_known, floor[known]) if k_known.size else np.array([])
    per = per[np.isfinite(per)]
    q = (lambda p: float(np.percentile(per, p))) if per.size else (lambda p: None)
    nfail, nund = int(fails.sum()), int(undecided.sum())
    if nfail:
        verdict = "failed"
        reason = f"the kernel's error exceeds {k:g} x the reference's error + the floor at {nfail} of {n}"
    elif known.any() and reference_error > REFERENCE_MAX_ERROR * scale:
        verdict = "inconclusive"
        reason = (
            f"the reference itself is off the float64 judge by {reference_error:.3g}, {reference_error / scale:.2g} of the gradient's scale"
            f" {scale:.3g} (more than {REFERENCE_MAX_ERROR:g}): it is not a trusted computation of this gradient; check it alone in float64 first"
        )
    elif nund:
        verdict = "inconclusive"
        reason = (
            f"at {nund} of {n} the float64 judge is not accurate enough to tell the kernel's error from {k:g} x the reference's"
            " (its own error bound is not far below the reference's error, or there is no finite value there)"
        )
    else:
        verdict = "passed"
        reason = ""
    usage = np.where(known, k_err / np.maximum(k * r_err + floor, np.finfo(float).tiny), np.inf)
    if nfail:
        order = np.where(fails, usage, -np.inf)
    elif nund:
        order = np.where(undecided, np.where(np.isfinite(usage), usage, np.finfo(float).max), -np.inf)
    else:
        order = usage
    w = int(np.argmax(order)) if n else None
    worst = None
    if w is not None:
        truth_here = bool(by_truth[w]) if by_truth is not None else False
        worst = GateElement(
            index=unravel(w) if unravel else (w,),
            kernel=float(kernel[w]),
            reference=float(reference[w]),
            judge=None if kink[w] else float(center[w]),
            judge_bracket=(float(lo[w]), float(hi[w])) if kink[w] else None,
            judge_error=float(bound[w]),
            judged_by="truth" if truth_here else "finite difference",
            kernel_error=float(k_err[w]),
            reference_error=float(r_err[w]),
            allowed=float(k * r_err[w] + floor[w]),
        )
    report = GateReport(
        verdict=verdict,
        reason=reason,
        k=float(k),
        floor=float(np.max(floor, initial=0.0)),
        scale=float(scale),
        checked=n,
        failures=nfail,
        undecided=nund,
        kernel_error=kernel_error,
        reference_error=reference_error,
        ratio=ratio,
        ratio_median=q(50),
        ratio_p90=q(90),
        ratio_max=q(100),
        spread=None if spread is None else float(np.max(spread, initial=0.0)),
        worst=worst,
    )
    report.undecided_mask = undecided  # not fields: for asking the truth where the judge is too coarse,
    report.allowance = np.where(known, k * r_err + floor + b, np.nan)  # and for the check's power (gradverify._power)
    return report


def _distance(a, lo, hi):
    """``|a - t|``, or at a bracket the distance from ``a`` to ``[lo, hi]``."""
    return np.maximum(np.maximum(lo - a, a - hi), 0.0)


def _fmt(x, digits=3):
    return "n/a" if x is None else f"{float(x):.{digits}g}"


def format_gate(g, unit):
    """The report lines of one gate."""
    lines = [
        f"    reference gate: {g.verdict.upper()}; kernel error <= {g.k:g} x reference error + floor {_fmt(g.floor)}"
        f" ({FLOOR_ULPS} ulps at the gradient's scale {_fmt(g.scale)}{'' if g.spread is None else f', plus the spread over repeats up to {_fmt(g.spread)}'})"
        f" at each of {g.checked} {unit}: {g.failures} over, {g.undecided} undecided",
        f"      max abs. error  kernel {_fmt(g.kernel_error)}  reference {_fmt(g.reference_error)}  ratio {_fmt(g.ratio)}"
        f"   per-{unit[:-1] if unit.endswith('s') else unit} ratio kernel/max(reference, floor): median {_fmt(g.ratio_median)}"
        f"  90% {_fmt(g.ratio_p90)}  max {_fmt(g.ratio_max)}",
    ]
    if g.reason:
        lines.append(f"      {g.reason}")
    e = g.worst
    if e is not None:
        judge = f"bracket [{e.judge_bracket[0]:.10g}, {e.judge_bracket[1]:.10g}]" if e.judge_bracket else f"{e.judge:.17g}"
        lines += [
            f"      worst at index {e.index}: kernel {e.kernel:.10g}  reference {e.reference:.10g}"
            f"  judge ({e.judged_by}) {judge} +- {_fmt(e.judge_error)}",
            f"        error kernel {_fmt(e.kernel_error)}, reference {_fmt(e.reference_error)}, allowed {_fmt(e.allowed)}",
        ]
    return lines
