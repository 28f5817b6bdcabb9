"""The arbiter: one bounded judgement per input from immutable estimates.

It takes the finite differences (:class:`~gradverify._numerical.Stencil`, with their error
estimates and kink brackets) and the truth (:class:`~gradverify._truth.TruthValues`, with
its integrity), judges every element with :func:`gradverify._verdict.judge`, and may ask
its :class:`Sources` for more evidence, each kind at most once, before the final verdict:

1. **spot truth**: where there is no truth for every element, the truth for the disputed
   ones, as many as :attr:`Limits.spot_truth` allows; or, with a lazy truth on a small
   input (:attr:`Sources.lazy_all`), the truth for every element the finite differences
   do not settle on their own (:func:`gradverify._verdict.conclusive`): disputed,
   uncertain, at kinks, rough;
2. **confirmation**: where the truth contradicts the analytic value or the finite
   difference, the truth again at more digits (cancellation inside ``fn`` can exhaust any
   fixed precision without a sign); an element that never settles loses its truth;
3. **re-examination**: a truth that contradicts both the analytic value and the finite
   difference while those two agree within the difference's own error is not trusted on
   its word: the sources check it once more (its integrity, and whether the function at the
   finite difference's scale behaves like the truth says); where it fails, it is dropped;
4. **cross-check** (no truth): an element the finite differences would blame must keep its
   estimate at steps 16 times larger and smaller;
5. **kinks along a direction** (directional mode): the one-sided slopes along a direction
   that crosses several kinks bracket fewer values than the subgradients allow (with
   mixed-sign contributions), so a direction the bracket would blame is split into parts
   until each part is smooth or moves one element, and the sum of the parts' values and
   brackets is the reference; past :attr:`Limits.split_parts` parts it is unresolved;
6. **kinks jointly** (elements): each element at a kink lies in its own one-sided bracket,
   but the elements may still be jointly impossible (``[1, 1, 1]`` for ``max`` at a
   three-way tie, where the subgradients sum to 1). Along the direction that moves every
   element found at a kink by its scale, in the same sense, a tie moves as one and the
   function is smooth. Where the line is smooth and its slopes do not add up the way
   independent kinks would (each element's two one-sided slopes, summed, would give the
   line's right plus left slope: ``clip`` at both bounds, ``relu`` beside ``minimum(x, 0)``),
   the kinks are coupled and ``<g, d>`` must match the line's slope; the elements at kinks
   are wrong together when it does not. Independent kinks, and lines that cross a kink,
   are left to the per-element brackets.

Estimates are never modified in place: new evidence makes new estimates. Verdicts are only
ever taken from evidence that has checked itself (a truth that failed its integrity
checks is NaN, a finite difference that did not settle is rough or unresolved).
"""

import dataclasses
from dataclasses import dataclass

import numpy as np

from gradverify import _tolerances, _verdict
from gradverify._truth import TruthValues


@dataclass(frozen=True)
class Limits:
    """How much more evidence one arbiter may ask for."""

    spot_truth: int = 16  # elements given a truth when the truth does not cover them all
    split_parts: int = 512  # finite differences per direction when splitting at kinks
    confirm_blames: int = 8  # blames shared by the truth and the differences confirmed at more digits


@dataclass(frozen=True)
class Evidence:
    fd: object  # Stencil
    truth: object = None  # TruthValues or None


# Elements per request of spot truth.
SPOT_CHUNK = 4


class Sources:
    """Where more evidence comes from; each method may return None (no such evidence).

    Subclasses (see :mod:`gradverify._check`) bind the function, the point and the budget.
    """

    covers_all = False  # the initial truth covers every element
    lazy_all = False  # the truth for every element the finite differences do not settle (step 1)
    directional = False  # the elements are directions (step 5 applies)

    def truth(self, indices):
        """TruthValues for ``indices`` (elements, or directions)."""
        return None

    def spot_spent(self):
        """Whether the spot truth has used up its time."""
        return False

    def confirm(self, truth, indices):
        """A new TruthValues with ``indices`` re-derived at more digits (NaN where unsettled)."""
        return None

    def reexamine(self, truth, fd, indices):
        """A new TruthValues where the elements ``indices`` keep their truth only if it holds up."""
        return None

    def cross_check(self, fd, indices):
        """A new Stencil whose errors at ``indices`` include the spread over steps."""
        return None

    def kink_line(self, kinked):
        """``(<g, d>, Stencil of one direction, d's entries at kinked)`` along ``d`` = every
        element of ``kinked`` moved by its scale in the same sense; None where not available."""
        return None

    def sanity(self, indices):
        """``(TruthValues of one direction, its entries at indices)``: the truth along a random
        signed direction over the elements ``indices`` (each moved by its scale); None where
        not available."""
        return None

    def split(self, k, judge_part, max_parts):
        """Direction ``k`` judged part by part: ``("wrong", detail)``, ``("ok", (lo, hi,
        error))`` or None when ``max_parts`` finite differences did not settle it."""
        return None


def arbitrate(a, evidence, sources, *, rtol, eps, natural, resolution=None, limits=Limits()):
    """The verdicts for analytic values ``a``; returns ``(Verdicts, Evidence, notes)``.

    ``natural`` and ``resolution`` are as in :func:`gradverify._verdict.judge`.
    """
    notes = []
    fd, truth = evidence.fd, evidence.truth

    def judge(fd, truth):
        return _verdict.judge(a, fd, truth, rtol=rtol, eps=eps, natural=natural, resolution=resolution)

    verdicts = judge(fd, truth)

    # 1. Spot truth for the disputed elements, worst first, a few at a time: until the
    #    sources' time is spent, or a blame is corroborated (truth and finite difference
    #    agree that the analytic value is off), which settles the verdict. A lazy truth
    #    that covers every unsettled element takes them all at once instead.
    if sources.lazy_all:
        wanted = np.flatnonzero(~verdicts.agreed & ~verdicts.has_truth)
        if wanted.size:
            got = sources.truth(wanted)
            if got is not None:
                truth = _merge_truth(truth, a.size, wanted, got)
                verdicts = judge(fd, truth)
        rest = np.flatnonzero(verdicts.agreed & ~verdicts.has_truth)
        sanity = _sanity(a, fd, rest, sources, rtol=rtol, eps=eps, natural=natural) if rest.size else "ok"
        if sanity != "ok":
            got = sources.truth(rest)
            if got is not None:
                truth = _merge_truth(truth, a.size, rest, got)
                verdicts = judge(fd, truth)
            notes.append(f"lazy truth: per element at all {a.size} elements (the direction over the {rest.size} the finite differences settled {sanity})")
        else:
            settled = (
                f"; the finite differences settle the other {rest.size} (within rtol with their error bound),"
                " and the truth along one random direction over them agrees" if rest.size else ""
            )
            notes.append(f"lazy truth: per element at {wanted.size} of {a.size} elements (disputed, uncertain or at kinks){settled}")
    elif not sources.covers_all and verdicts.disputed.any():
        order = np.argsort(-verdicts.badness, kind="stable")
        spot = order[verdicts.disputed[order]][: limits.spot_truth]
        reached = 0
        for start in range(0, spot.size, SPOT_CHUNK):
            chunk = spot[start : start + SPOT_CHUNK]
            got = sources.truth(chunk)
            if got is None:
                break
            truth = _merge_truth(truth, a.size, chunk, got)
            reached += int(np.count_nonzero(np.isfinite(got.center)))
            verdicts = judge(fd, truth)
            if (verdicts.wrong & verdicts.has_truth & (verdicts.nt_loose <= rtol)).any() or sources.spot_spent():
                break
        if truth is not None:
            notes.append(f"truth for {reached} of the {spot.size} most disputed of {a.size} elements")

    # 2. Confirm the truth at more digits where it contradicts the finite difference, and
    #    for a sample of the blames it shares with it (float64 and 40 digits can lose the
    #    same cancellation, (x + 1e45) - 1e45): if any of the sample turns, all blames are
    #    confirmed.
    if truth is not None:
        contradicts = _verdict.suspicious(verdicts, rtol)
        shared = np.flatnonzero(verdicts.wrong & verdicts.has_truth & ~contradicts)
        sample = shared[np.argsort(-verdicts.badness[shared], kind="stable")][: limits.confirm_blames]
        doubtful = np.union1d(np.flatnonzero(contradicts), sample)
        if doubtful.size:
            got = sources.confirm(truth, doubtful)
            if got is not None:
                truth = got
                verdicts = judge(fd, truth)
                rest = np.setdiff1d(shared, sample)
                if rest.size and not verdicts.wrong[sample].all():
                    got = sources.confirm(truth, rest)
                    if got is not None:
                        truth = got
                        verdicts = judge(fd, truth)

    # 3. Re-examine a truth that stands alone against two agreeing sides.
    if truth is not None:
        lonely = np.flatnonzero(verdicts.has_truth & verdicts.wrong & (verdicts.nt_loose > rtol) & (verdicts.rel_an <= rtol) & np.isfinite(fd.estimate))
        if lonely.size:
            got = sources.reexamine(truth, fd, lonely)
            if got is not None:
                dropped = int(np.count_nonzero(np.isnan(got.center[lonely])))
                if dropped:
                    notes.append(f"the truth did not hold up at {dropped} element(s) where it alone disagreed; the finite differences decide there")
                truth = got
                verdicts = judge(fd, truth)

    # 4. Without a truth, an element the differences blame is looked at with other steps.
    blamed = np.flatnonzero(verdicts.wrong & ~verdicts.has_truth & ~fd.kink)
    if blamed.size:
        got = sources.cross_check(fd, blamed)
        if got is not None:
            fd = got
            verdicts = judge(fd, truth)

    # 5. Directions that cross several kinks.
    kinked = np.flatnonzero(verdicts.wrong & _kink(fd, truth)) if sources.directional else np.empty(0, dtype=int)
    if kinked.size:
        fd = _replace(fd)
        if truth is not None:
            truth = _replace(truth)
        wrong = []

        def judge_part(a_part, st):
            part = _verdict.judge(a_part, st, None, rtol=rtol, eps=eps, natural=np.max(natural * np.ones(a.shape)))
            return bool(part.wrong[0])

        for k in kinked:
            got = sources.split(k, judge_part, limits.split_parts)
            if truth is not None:  # the line's one-sided slopes are too narrow a bracket
                truth.drop(np.array([k]), "no truth: the direction crosses several kinks, where its one-sided slopes bracket too few subgradients")
            if got is None:
                fd.estimate[k] = np.nan  # no sound bracket within the budget: unresolved, never blamed
            elif got[0] == "wrong":
                wrong.append(k)
                notes.append(got[1])
            else:
                lo, hi, err = got[1]
                fd.kink[k], fd.lo[k], fd.hi[k], fd.estimate[k] = True, lo - 2 * err, hi + 2 * err, 0.5 * (lo + hi)
                fd.trunc[k], fd.rounding[k] = err, 0.0
        notes.append(f"{kinked.size} direction(s) crossed several kinks and were judged part by part")
        verdicts = judge(fd, truth)
        verdicts.wrong[wrong] = True
        verdicts.unresolved[wrong] = False
    # 6. Elements at kinks, jointly: only where the line shows them coupled (a tie).
    at_kinks = np.flatnonzero(_kink(fd, truth) & ~verdicts.wrong) if not sources.directional else np.empty(0, dtype=int)
    if at_kinks.size >= 2:
        got = sources.kink_line(at_kinks)
        if got is not None:
            a_line, st, weights = got
            smooth = not st.kink[0] and not st.rough[0] and np.isfinite(st.estimate[0])
            # Independent kinks add up along the line: its right and left slopes sum to the
            # sum of each element's two one-sided slopes. A tie moves as one and does not.
            lo, hi = fd.lo[at_kinks], fd.hi[at_kinks]
            if truth is not None:  # the truth's bracket where the truth saw the kink
                by_truth = truth.kink[at_kinks] & np.isfinite(truth.center[at_kinks])
                lo, hi = np.where(by_truth, truth.lo[at_kinks], lo), np.where(by_truth, truth.hi[at_kinks], hi)
            separable = float(np.sum((lo + hi) * weights))
            width = float(np.sum((hi - lo) * np.abs(weights)))
            coupled = abs(2 * st.estimate[0] - separable) > 0.1 * width + 4 * st.error[0]
            line = _verdict.judge(np.array([a_line]), st, None, rtol=rtol, eps=eps, natural=np.max(natural * np.ones(a.shape)) * at_kinks.size)
            if smooth and coupled and line.wrong[0]:
                verdicts.wrong[at_kinks] = True
                verdicts.unresolved[at_kinks] = False
                notes.append(
                    f"the {at_kinks.size} elements at kinks are jointly wrong: moving them all together, fn is smooth with slope"
                    f" {st.estimate[0]:.10g} (error estimate {st.error[0]:.3g}), the gradient gives {a_line:.10g} (a tie's subgradients sum to its slope)"
                )
    return verdicts, Evidence(fd, truth), notes


# The lazy truth's direction must match the analytic gradient to this fraction of what the
# elements' own tolerances allow along it; beyond, every element gets its truth.
SANITY_FRACTION = 0.1


def _sanity(a, fd, rest, sources, *, rtol, eps, natural):
    """``"ok"`` when the truth along one random direction over the elements ``rest`` (the
    ones the finite differences settled) agrees with the analytic gradient; else why not.

    Each element of ``rest`` is within ``rtol`` of every value its difference's error bound
    allows (:func:`gradverify._verdict.conclusive`), so along ``d`` the analytic and the true
    slopes can differ by at most the sum of those tolerances times ``|d|``. A truth farther
    off than :data:`SANITY_FRACTION` of that sum, at a kink, or missing (its integrity
    failed) means the error bounds cannot be taken on their word: the caller then gives
    every element its own truth. A disagreement never blames anything by itself.
    """
    got = sources.sanity(rest)
    if got is None:
        return "could not be evaluated"
    tv, d = got
    e = 2 * fd.error[rest]
    natural = natural * np.ones(a.shape)
    noise = _tolerances.analytic_noise(eps, rtol, natural[rest])
    allowed = float(np.abs(d) @ (rtol * (np.maximum(np.abs(a[rest]), np.abs(fd.estimate[rest])) + e) + noise))
    slope = float(a[rest] @ d)
    t = float(tv.center[0])
    if not np.isfinite(t):
        return "has no truth (its integrity failed; the elements say why)"
    if tv.kink[0]:
        return "crosses a kink"
    if abs(slope - t) > SANITY_FRACTION * allowed:
        return f"disagrees: analytic {slope:.10g}, truth {t:.10g}"
    return "ok"


def _kink(fd, truth):
    k = fd.kink.copy()
    if truth is not None:
        k |= truth.kink & np.isfinite(truth.center)
    return k


def _replace(values):
    """A copy of a dataclass of arrays, arrays copied."""
    return dataclasses.replace(values, **{f.name: np.array(getattr(values, f.name), copy=True) for f in dataclasses.fields(values) if isinstance(getattr(values, f.name), np.ndarray)})


def _merge_truth(truth, n, indices, got):
    merged = TruthValues.unknown(n) if truth is None else _replace(truth)
    merged.fill(indices, got)
    return merged
