"""Per-element verdicts: the analytic gradient against the finite difference and the truth.

For each element (or direction) the analytic value ``a`` is judged against the truth where
there is one, else against the finite difference:

* **wrong** (blame ``"analytic"``): ``a`` is off the truth by more than ``rtol`` (outside the
  truth's subgradient bracket at a kink); without a truth, off the finite difference by
  more than ``rtol`` *and* more than twice the finite difference's own error estimate;
* **unresolved** (no truth only): ``a`` agrees with the finite difference only within that
  error estimate, and that estimate is too large for ``rtol`` even on the gradient's natural
  scale; or the finite differences were not finite around ``x``: the check cannot tell;
* **not differentiable** (no truth only): the finite differences show a jump in the value
  or noise, not a kink with settled one-sided slopes (:attr:`Stencil.rough`): no gradient,
  right or wrong, can be verified there, and the element fails without blame;
* **numerical off** (truth only): ``a`` matches the truth but the finite difference does not.

Resolution without a truth: an element far below the gradient's largest element ``G`` cannot
always be resolved to ``rtol`` of itself by float64 differences. When ``a`` agrees with the
finite difference within the difference's own error ``e``, and ``2 e`` plus the analytic noise
is at most ``RESOLUTION_FACTOR * rtol * G`` (1e-6 of ``G`` in float64), the element is
verified at that absolute resolution, not called unresolved: an error in it would have to be
below that to go unseen. ``G`` comes from the gradient, never from ``fn``'s value.

Near kinks within float64's resolution (a hinge whose float64 margin is exactly 0 while the
exact margin is 1e-17), the finite differences see a kink that the truth, looking closer,
does not. Where the truth flags this (``near_kink``), the reference is the union of the
finite differences' bracket and the truth's own one-sided values.
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
    nt_loose: np.ndarray | None  # numerical~truth with the finite difference's error in the floor
    has_truth: np.ndarray
    wrong: np.ndarray
    unresolved: np.ndarray
    nondiff: np.ndarray  # not differentiable here (discontinuous / noisy), no truth
    agreed: np.ndarray = None  # the finite difference alone settles the element (see judge)

    @property
    def disputed(self):
        return self.wrong | self.unresolved | self.nondiff

    @property
    def badness(self):
        """How bad each element is, by the reference that decided it (for ordering)."""
        fd = np.where(self.unresolved, self.strict_an, self.rel_an)
        return fd if self.rel_at is None else np.where(self.has_truth, self.rel_at, fd)


def judge(a, st, tv, *, rtol, eps, natural, resolution=None):
    """Verdicts for analytic values ``a`` given the stencil ``st`` and truth ``tv`` (or None).

    ``natural`` is the natural size of each gradient element (see :mod:`_tolerances`), for
    the analytic noise floor. ``resolution`` (default ``natural``) is the gradient's own size
    (its largest reference element), for the resolution rule: an element is only called
    unresolved where the difference's error exceeds ``RESOLUTION_FACTOR * rtol`` of it. It must come from the
    gradient, never from ``fn``'s value: a large constant in ``fn`` would otherwise widen the
    resolution and let a wrong gradient through. A truth element that is NaN (it never
    settled, or failed its integrity checks) leaves that element to the finite difference.
    """
    n = a.shape
    natural = natural * np.ones(n)
    a_noise = _tolerances.analytic_noise(eps, rtol, natural)
    floor = a_noise / rtol
    fd_err = 2 * np.where(np.isnan(st.error), np.inf, st.error)
    loose = (fd_err + a_noise) / rtol
    rough = st.rough
    with np.errstate(invalid="ignore"):
        rel_an = np.where(st.kink, interval_rel(a, st.lo, st.hi, loose), _tolerances.relative_error(a, st.estimate, loose))
        strict_an = np.where(st.kink, rel_an, _tolerances.relative_error(a, st.estimate, floor))
    # Where fn was not finite around x even after refinement, or is not differentiable
    # there, the finite difference has nothing to say: never agreement, never blame.
    fd_bad = ~np.isfinite(st.estimate) | rough
    rel_an[fd_bad] = strict_an[fd_bad] = np.inf
    fd_wrong = ~fd_bad & (rel_an > rtol)
    scale = natural if resolution is None else resolution
    coarse = fd_err + a_noise > _tolerances.RESOLUTION_FACTOR * rtol * scale  # not resolved on the gradient's scale
    fd_unresolved = ~fd_wrong & ~rough & ((strict_an > rtol) & coarse | fd_bad)
    agreed = conclusive(a, st, fd_err, a_noise, rtol) & ~fd_bad
    if tv is None:
        none = np.zeros(n, dtype=bool)
        return Verdicts(rel_an, strict_an, None, None, None, none, fd_wrong, fd_unresolved, rough.copy(), agreed)
    lo, hi = tv.lo, tv.hi
    kink = tv.kink.copy()
    if tv.near_kink.any():
        # A kink within float64's resolution of x: float64 sees it, the exact function
        # does not. Either view's subgradients are acceptable: the union of the truth, its
        # one-sided values at the normal step and the finite differences' bracket.
        near = tv.near_kink & np.isfinite(tv.center)
        fd_lo = np.where(st.kink & ~fd_bad, st.lo, np.nan)
        fd_hi = np.where(st.kink & ~fd_bad, st.hi, np.nan)
        kink |= near
        lo = np.where(near, np.fmin(np.fmin(np.fmin(tv.lo, tv.coarse_lo), fd_lo), tv.center), lo)
        hi = np.where(near, np.fmax(np.fmax(np.fmax(tv.hi, tv.coarse_hi), fd_hi), tv.center), hi)
    with np.errstate(invalid="ignore"):
        rel_at = np.where(kink, interval_rel(a, lo, hi, floor), _tolerances.relative_error(a, tv.center, floor))
        rel_nt = np.where(kink, interval_rel(st.estimate, lo, hi, floor), _tolerances.relative_error(st.estimate, tv.center, floor))
        nt_loose = np.where(
            kink,
            interval_rel(st.estimate, lo, hi, loose),
            np.where(st.kink, interval_rel(tv.center, st.lo, st.hi, loose), _tolerances.relative_error(st.estimate, tv.center, loose)),
        )
    rel_nt[fd_bad] = nt_loose[fd_bad] = np.inf
    has_truth = tv.has_truth
    wrong = np.where(has_truth, rel_at > rtol, fd_wrong)
    unresolved = ~has_truth & fd_unresolved
    nondiff = ~has_truth & rough
    return Verdicts(rel_an, strict_an, rel_at, rel_nt, nt_loose, has_truth, wrong, unresolved, nondiff, agreed)


def conclusive(a, st, fd_err, a_noise, rtol):
    """Where the finite difference alone settles the element, so that a truth would add nothing.

    With ``e`` the difference's error bound (twice its estimate, as the verdict reads it) the
    truth ``t`` lies within ``e`` of the difference ``n``, so ``|a - t| <= |a - n| + e``. The
    element is conclusive when that bound is within the tolerance the truth's own verdict
    applies, ``max(rtol * max(|a|, |t|), analytic noise)``, for every such ``t`` (using
    ``|t| >= |n| - e``): the truth could only confirm the pass. Never at a kink (the bracket
    is the truth's to give), nowhere the difference is not finite or rough.
    """
    with np.errstate(invalid="ignore"):
        bound = np.abs(a - st.estimate) + fd_err
        allowed = np.maximum(rtol * (np.maximum(np.abs(a), np.abs(st.estimate)) - fd_err), a_noise)
        return ~st.kink & ~st.rough & np.isfinite(st.estimate) & np.isfinite(fd_err) & (bound <= allowed)


def suspicious(verdicts, rtol):
    """Elements where the truth contradicts the finite difference beyond the difference's
    own error: worth a second, finer look (where the two agree, each vouches for the other)."""
    if verdicts.rel_at is None:
        return np.zeros(verdicts.wrong.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        return verdicts.has_truth & (verdicts.nt_loose > rtol)


# What an element's report says where a lazy truth left it to the finite differences.
LAZY_SETTLED = "not needed: the finite difference settles this element within rtol with its error bound (lazy truth)"


def report(name, index, shape, dtype, rtol, a, st, tv, v, unravel, *, lazy=False):
    """The :class:`InputReport` of one input (``index``) or of the directions (``None``).

    ``lazy``: the truth was lazy, so an element the finite differences settled
    (:func:`conclusive`) says so where its truth would be.
    """
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
        not_differentiable=int(np.count_nonzero(v.nondiff)),
        max_rel_analytic_numerical=float(v.strict_an.max(initial=0.0)),
    )
    if tv is not None:
        missing = ~v.has_truth & (tv.note != "")
        out.truth_missing = int(np.count_nonzero(missing))
        if out.truth_missing:
            out.truth_missing_reason = str(tv.note[np.flatnonzero(missing)[0]])
    if v.rel_at is not None and v.has_truth.any():
        out.numerical_off = int(np.count_nonzero(v.has_truth & ~v.wrong & (v.rel_nt > rtol)))
        out.max_rel_analytic_truth = float(v.rel_at[v.has_truth].max())
        out.max_rel_numerical_truth = float(v.rel_nt[v.has_truth].max())
    if a.size:
        order = np.argsort(-v.badness, kind="stable")
        out.worst = _element(order[0], a, st, tv, v, unravel, lazy)
        disputed = v.disputed
        shown = [k for k in order[1:] if disputed[k]][:EXAMPLES_SHOWN]
        out.examples = [_element(k, a, st, tv, v, unravel, lazy) for k in shown]
    return out


def _element(k, a, st, tv, v, unravel, lazy=False):
    truth = tv is not None and bool(v.has_truth[k])
    note = str(tv.note[k]) if tv is not None and not truth and tv.note[k] else None
    if note is None and lazy and not truth and v.agreed is not None and v.agreed[k]:
        note = LAZY_SETTLED
    return ElementReport(
        index=unravel(k),
        analytic=float(a[k]),
        numerical=float(st.estimate[k]),
        numerical_bracket=(float(st.lo[k]), float(st.hi[k])) if st.kink[k] else None,
        numerical_error=float(st.error[k]),
        step=float(st.step[k]),
        truth=float(tv.center[k]) if truth else None,
        truth_note=note,
        truth_bracket=(float(tv.lo[k]), float(tv.hi[k])) if truth and tv.kink[k] else None,
        rel_analytic_numerical=float(v.strict_an[k]),
        rel_analytic_truth=float(v.rel_at[k]) if truth else None,
        rel_numerical_truth=float(v.rel_nt[k]) if truth else None,
        verdict="analytic" if v.wrong[k] else ("unresolved" if v.unresolved[k] else ("not differentiable" if v.nondiff[k] else "ok")),
    )


def interval_rel(a, lo, hi, floor):
    """Relative distance of ``a`` from ``[lo, hi]`` (0 inside), on the scale of the three."""
    dist = np.maximum(np.maximum(lo - a, a - hi), 0.0)
    denom = np.maximum(np.maximum(np.abs(a), np.maximum(np.abs(lo), np.abs(hi))), floor)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(dist == 0, 0.0, dist / denom)
