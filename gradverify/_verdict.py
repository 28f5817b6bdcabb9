"""Per-element verdicts: the analytic gradient against the finite difference and the truth.

For each element (or direction) the analytic value ``a`` is judged against the truth where
there is one, else against the finite difference:

* **wrong** (blame ``"analytic"``): ``a`` is off the truth by more than ``rtol`` (outside the
  truth's subgradient bracket at a kink); without a truth, off the finite difference by
  more than ``rtol`` *and* more than twice the finite difference's own error estimate;
* **unresolved** (no truth only): ``a`` agrees with the finite difference only within that
  error estimate, which is itself too large for ``rtol``: the check cannot tell;
* **numerical off** (truth only): ``a`` matches the truth but the finite difference does not.
"""

from dataclasses import dataclass

import numpy as np

from gradverify import _tolerances
from gradverify._result import ElementReport, InputReport

EXAMPLES_SHOWN = 3


@dataclass
class Verdicts:
    rel_an: np.ndarray  # analytic~numerical as the verdict reads it (with the FD's error)
    strict_an: np.ndarray  # analytic~numerical with only the analytic noise floor (reported)
    rel_at: np.ndarray | None  # analytic~truth
    rel_nt: np.ndarray | None  # numerical~truth
    has_truth: np.ndarray
    wrong: np.ndarray
    unresolved: np.ndarray

    @property
    def disputed(self):
        return self.wrong | self.unresolved

    @property
    def badness(self):
        """How bad each element is, by the reference that decided it (for ordering)."""
        fd = np.where(self.unresolved, self.strict_an, self.rel_an)
        return fd if self.rel_at is None else np.where(self.has_truth, self.rel_at, fd)


def judge(a, st, tv, *, rtol, eps, natural):
    """Verdicts for analytic values ``a`` given the stencil ``st`` and truth ``tv`` (or None).

    ``natural`` is the natural size of each gradient element (see :mod:`_tolerances`). A
    truth element that is NaN (it never settled) leaves that element to the finite
    difference.
    """
    a_noise = _tolerances.ANALYTIC_NOISE_ULPS * eps * natural * np.ones_like(a)
    floor = a_noise / rtol
    loose = (2 * np.nan_to_num(st.error) + a_noise) / rtol
    rel_an = np.where(st.kink, interval_rel(a, st.lo, st.hi, loose), _tolerances.relative_error(a, st.estimate, loose))
    strict_an = np.where(st.kink, rel_an, _tolerances.relative_error(a, st.estimate, floor))
    # Where fn was not finite around x even after refinement the finite difference has
    # nothing to say: its errors read as infinite, never as agreement.
    fd_bad = ~np.isfinite(st.estimate)
    rel_an[fd_bad] = strict_an[fd_bad] = np.inf
    fd_wrong = rel_an > rtol
    fd_unresolved = ~fd_wrong & (strict_an > rtol)
    if tv is None:
        none = np.zeros(a.shape, dtype=bool)
        return Verdicts(rel_an, strict_an, None, None, none, fd_wrong, fd_unresolved)
    with np.errstate(invalid="ignore"):
        rel_at = np.where(tv.kink, interval_rel(a, tv.lo, tv.hi, floor), _tolerances.relative_error(a, tv.center, floor))
        rel_nt = np.where(tv.kink, interval_rel(st.estimate, tv.lo, tv.hi, floor), _tolerances.relative_error(st.estimate, tv.center, floor))
    rel_nt[fd_bad] = np.inf
    has_truth = np.isfinite(tv.center)
    wrong = np.where(has_truth, rel_at > rtol, fd_wrong)
    unresolved = ~has_truth & fd_unresolved
    return Verdicts(rel_an, strict_an, rel_at, rel_nt, has_truth, wrong, unresolved)


def suspicious(verdicts, rtol):
    """Elements where the truth contradicts another side: worth a second, finer look."""
    if verdicts.rel_at is None:
        return np.zeros(verdicts.wrong.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        return verdicts.has_truth & ((verdicts.rel_at > rtol) | (verdicts.rel_nt > rtol))


def report(name, index, shape, dtype, rtol, a, st, tv, v, unravel):
    """The :class:`InputReport` of one input (``index``) or of the directions (``None``)."""
    out = InputReport(
        name=name,
        index=index,
        shape=shape,
        dtype=dtype,
        rtol=rtol,
        checked=int(a.size),
        kinks=int(np.count_nonzero(np.where(v.has_truth, tv.kink, st.kink) if tv is not None else st.kink)),
        failures=int(np.count_nonzero(v.wrong)),
        unresolved=int(np.count_nonzero(v.unresolved)),
        max_rel_analytic_numerical=float(v.strict_an.max(initial=0.0)),
    )
    if v.rel_at is not None and v.has_truth.any():
        out.numerical_off = int(np.count_nonzero(v.has_truth & ~v.wrong & (v.rel_nt > rtol)))
        out.max_rel_analytic_truth = float(v.rel_at[v.has_truth].max())
        out.max_rel_numerical_truth = float(v.rel_nt[v.has_truth].max())
    if a.size:
        order = np.argsort(-v.badness, kind="stable")
        out.worst = _element(order[0], a, st, tv, v, unravel)
        disputed = v.disputed
        shown = [k for k in order[1:] if disputed[k]][:EXAMPLES_SHOWN]
        out.examples = [_element(k, a, st, tv, v, unravel) for k in shown]
    return out


def _element(k, a, st, tv, v, unravel):
    truth = tv is not None and bool(v.has_truth[k])
    return ElementReport(
        index=unravel(k),
        analytic=float(a[k]),
        numerical=float(st.estimate[k]),
        numerical_bracket=(float(st.lo[k]), float(st.hi[k])) if st.kink[k] else None,
        numerical_error=float(st.error[k]),
        step=float(st.step[k]),
        truth=float(tv.center[k]) if truth else None,
        truth_bracket=(float(tv.lo[k]), float(tv.hi[k])) if truth and tv.kink[k] else None,
        rel_analytic_numerical=float(v.strict_an[k]),
        rel_analytic_truth=float(v.rel_at[k]) if truth else None,
        rel_numerical_truth=float(v.rel_nt[k]) if truth else None,
        verdict="analytic" if v.wrong[k] else ("unresolved" if v.unresolved[k] else "ok"),
    )


def interval_rel(a, lo, hi, floor):
    """Relative distance of ``a`` from ``[lo, hi]`` (0 inside), on the scale of the three."""
    dist = np.maximum(np.maximum(lo - a, a - hi), 0.0)
    denom = np.maximum(np.maximum(np.abs(a), np.maximum(np.abs(lo), np.abs(hi))), floor)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(dist == 0, 0.0, dist / denom)
