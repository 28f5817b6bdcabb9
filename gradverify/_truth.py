"""The truth side: derivatives of ``phi = sum(v * fn(x))`` at high precision with mpmath.

``fn`` runs on arrays of mpmath numbers at ``dps`` significant digits (see
:mod:`gradverify._highprec`), at the float64 point ``x`` exactly. Each derivative comes from
five evaluations at ``x + s h`` for ``s`` in -2..2 with ``h = 10**(-dps/3) * scale``:

* centered, 4th order: ``(phi(-2h) - 8 phi(-h) + 8 phi(h) - phi(2h)) / (12 h)``;
* one-sided, 2nd order: ``R = (-3 phi(0) + 4 phi(h) - phi(2h)) / (2h)`` and ``L`` likewise.

At 40 digits their truncation and rounding errors are both near ``1e-26`` relative, far
below anything float64 can resolve, so the result is the derivative of the float64-valued
function's smooth extension. Where ``|R - L|`` exceeds ``10**(-dps/4)`` relative, the point
is a kink at any resolution float64 can see, and ``[min(L, R), max(L, R)]`` is the bracket
a subgradient must lie in.

Per-element truth costs five evaluations per input element (four, and the probe below),
so it is for small inputs; directional truth costs five per direction whatever the size.

Integrity
---------
A truth is only as real as the precision ``fn`` keeps. Code that runs fine in float64 can
silently round the mpmath numbers back to float64 (a scratch buffer ``np.zeros(shape)``
written element by element, ``astype(float)``, ``np.asarray(x, dtype=float)``, ``float()``,
``math.*``) while later steps still produce mpmath-valued output. So every derivative is
checked, per element or direction, before it counts as truth:

* **conversions**: each evaluation records every ``float()`` of an mpmath number
  (:func:`gradverify._highprec.traced_call`); if a converted value, or an output element
  that is a Python float, differs between ``x`` and ``x + s h``, the derivative passed
  through float64 on its way;
* **probe**: ``phi`` must move under a step ``t = 10**(-5 dps / 8) * scale`` (1e-25 at 40
  digits), far below float64's resolution, as the derivative says: ``(phi(t) - phi(0)) / t``
  matches the right-sided derivative to ``PROBE_RTOL``, or to the rounding noise.

Where either fails, or an evaluation near ``x`` fails, that element has no truth (NaN) and
:attr:`TruthValues.note` says why and names the likely idiom; the finite differences decide
there. The probe costs one evaluation per element or direction, plus one at ``x`` per
precision used.

Near kinks
----------
A kink closer to ``x`` than the step (a hinge whose float64 margin is exactly 0 while the
exact margin is 1e-17) shows a jump at the normal step that the closer look loses: the
truth is then the smooth derivative on ``x``'s side, while float64 (finite differences,
the textbook subgradient) cannot tell the two sides apart. Such elements have
``near_kink`` set and ``[coarse_lo, coarse_hi]``, the one-sided derivatives at the normal
step, taken from differences that do not straddle the kink; a subgradient anywhere in that
bracket is as right as float64 can tell.

Errors
------
:class:`HighPrecisionPhi` raises :class:`~gradverify._errors.HighPrecisionUnavailable` only
from its constructor (``fn`` cannot run on mpmath arrays at ``x`` at all, or returns a
float array). :meth:`~HighPrecisionPhi.elementwise` and :meth:`~HighPrecisionPhi.directional`
never raise it: failures are per-element notes.
"""

import math
import time
from dataclasses import dataclass

import numpy as np

from gradverify import _highprec
from gradverify._errors import HighPrecisionUnavailable


# The most digits the truth adds on its own for one derivative.
MAX_EXTRA_DIGITS = 400
# The integrity probe steps 10**(-PROBE_EXPONENT * dps) times the element's scale.
PROBE_EXPONENT = 5 / 8
# How closely the probe's slope must match the derivative (beyond the rounding noise).
PROBE_RTOL = 1e-8
# Every derivative is taken with at least this many digits beyond ``dps``, and the value at
# ``x`` is first evaluated with them, so that one evaluation at ``x`` serves the constructor
# and every stencil asking for no more. (A stencil's points must share their precision: a
# value at ``x`` from more digits than its neighbours turns a cancellation inside ``fn``
# into a fake kink.)
SPARE_DIGITS = 4

_FIELDS = ("center", "lo", "hi", "kink", "note", "near_kink", "coarse_lo", "coarse_hi")


@dataclass
class TruthValues:
    """The truth per element (or direction); NaN ``center`` where there is none.

    Attributes
    ----------
    center, lo, hi : numpy.ndarray
        The derivative, and at a kink the bracket ``[lo, hi]`` a subgradient must lie in
        (``lo == hi == center`` elsewhere). NaN where there is no truth.
    kink : numpy.ndarray of bool
        A kink at ``x`` at every resolution the truth looked at.
    note : numpy.ndarray of str
        Why there is no truth (the integrity check failed, the evaluation failed near ``x``,
        it never settled); ``""`` where there is a truth or none was computed.
    near_kink : numpy.ndarray of bool
        A jump at the normal step that vanished at the closer look: a kink within the step
        (~1e-13 relative) of ``x``, which float64 cannot place on either side.
    coarse_lo, coarse_hi : numpy.ndarray
        Where ``near_kink``, the one-sided derivatives at the normal step (the bracket
        float64 sees); NaN elsewhere.
    """

    center: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    kink: np.ndarray
    note: np.ndarray = None
    near_kink: np.ndarray = None
    coarse_lo: np.ndarray = None
    coarse_hi: np.ndarray = None

    def __post_init__(self):
        n = len(self.center)
        if self.note is None:
            self.note = np.full(n, "", dtype=object)
        if self.near_kink is None:
            self.near_kink = np.zeros(n, dtype=bool)
        if self.coarse_lo is None:
            self.coarse_lo = np.full(n, np.nan)
        if self.coarse_hi is None:
            self.coarse_hi = np.full(n, np.nan)

    @classmethod
    def unknown(cls, n, note=""):
        """``n`` elements without a truth, each with ``note`` as the reason."""
        nan = np.full(n, np.nan)
        return cls(center=nan, lo=nan.copy(), hi=nan.copy(), kink=np.zeros(n, dtype=bool),
                   note=np.full(n, note, dtype=object))

    @property
    def has_truth(self):
        return np.isfinite(self.center)

    def fill(self, indices, other):
        """Copy every field of ``other`` (one row per index) into ``indices``."""
        for name in _FIELDS:
            getattr(self, name)[indices] = getattr(other, name)

    def drop(self, indices, note):
        """Take the truth away from ``indices``, with ``note`` as the reason."""
        for name in ("center", "lo", "hi", "coarse_lo", "coarse_hi"):
            getattr(self, name)[indices] = np.nan
        self.kink[indices] = False
        self.near_kink[indices] = False
        self.note[indices] = note


@dataclass
class _Stencil:
    center: object
    left: object
    right: object
    outer_left: object  # (phi(-h) - phi(-2h)) / h: the slope left of a kink within h
    outer_right: object
    kink: bool
    uneven: bool
    noise: object
    size: object


class _Lost(Exception):
    """An element's truth is not real; the message says why."""


class HighPrecisionPhi:
    """``phi = sum(v * fn(x))`` evaluated at high precision around a fixed float64 point.

    The constructor evaluates ``fn`` at ``x`` and raises
    :class:`~gradverify._errors.HighPrecisionUnavailable` when that is impossible; the
    derivative methods never raise it (see the module notes). ``calls`` counts the
    high-precision evaluations of ``fn`` made so far.
    """

    def __init__(self, fn, inputs, cotangent, *, dps, floating):
        self.fn = fn
        self.dps = dps
        ctx = _highprec.CTX
        self.ctx = ctx
        self.base = [_highprec.to_hp(x) if fl else x for x, fl in zip(inputs, floating)]
        self.v = np.asarray(cotangent, dtype=np.float64).reshape(-1)
        self.calls = 0
        started = time.perf_counter()
        phi0, traced = self._evaluate(self.base, dps + SPARE_DIGITS)
        self.seconds_per_call = time.perf_counter() - started
        self._centers = {dps + SPARE_DIGITS: (phi0, traced)}
        self.phi0 = phi0
        with ctx.workdps(dps):
            flat = traced.out.reshape(-1)
            self.magnitude = ctx.fsum(abs(o * w) for o, w in zip(flat, self.v))

    def _evaluate(self, args, dps):
        """``(phi, Traced)`` at ``args``; raises HighPrecisionUnavailable."""
        self.calls += 1
        # Copies: user code that writes into its arguments must not move the base point.
        args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        traced = _highprec.traced_call(self.fn, args, dps=dps)
        flat = traced.out.reshape(-1)
        if flat.size != self.v.size:
            msg = f"fn returned {flat.size} elements at a point near x but {self.v.size} at x"
            raise HighPrecisionUnavailable(msg)
        with self.ctx.workdps(dps):
            return self.ctx.fdot(flat, self.v), traced

    def _center(self, dps):
        if dps not in self._centers:
            self._centers[dps] = self._evaluate(self.base, dps)
        return self._centers[dps]

    def _derivative(self, shifted, scale, extra_digits=0):
        """One row of :class:`TruthValues` along one coordinate or direction.

        ``shifted(t, dps)`` returns ``(phi, Traced)`` at ``x + t e``. Never raises
        HighPrecisionUnavailable: a failure is the row's note.
        """
        try:
            return self._checked_derivative(shifted, scale, extra_digits)
        except _Lost as lost:
            note = str(lost)
        except HighPrecisionUnavailable as exc:
            note = f"the high-precision evaluation failed near x: {exc}"
        nan = math.nan
        return nan, nan, nan, False, f"no truth: {note}", False, nan, nan

    def _checked_derivative(self, shifted, scale, extra_digits):
        """The five-point results, then the integrity probe.

        Two retries, each at most a few times:

        * where the rounding noise of the result (``10**(6 - dps) * sum(|v * fn|) / h``) is
          not far below the derivative (or below ``10**(-dps/2)`` of the natural scale
          ``sum(|v * fn|) / scale`` when that is 0), it is evaluated again with as many
          more digits as are missing, plus five: ``1 / (1 + x**2)`` at ``x = 1e-20`` needs
          about 80;
        * a jump between the one-sided derivatives, or a centered value that disagrees with
          them, is looked at once more with a step a million times smaller (and 12 more
          digits): a real kink keeps its jump, while a point merely close to a singularity
          or a kink (``sqrt`` at 1e-10) loses it (``near_kink`` when it was a jump). Where
          the one-sided values agree and the centered one still does not (the second
          derivative jumps: ``g / (|g| + eps)`` at 0), their mean is the derivative: each
          side's formula sees only its smooth half.
        """
        ctx = self.ctx
        dps = self.dps + max(extra_digits, SPARE_DIGITS)
        with ctx.workdps(dps):
            h = ctx.mpf(10) ** (-ctx.mpf(self.dps) / 3) * ctx.mpf(float(scale))
            natural = self.magnitude / abs(ctx.mpf(float(scale)))
        looked_closer = False
        normal = None
        for _ in range(6):
            st = self._five_point(shifted, h, dps)
            if not looked_closer:
                normal = st
            with ctx.workdps(dps):
                wanted = ctx.mpf(10) ** (-ctx.mpf(self.dps) / 2) * max(st.size, ctx.mpf(10) ** (-ctx.mpf(self.dps) / 2) * natural)
                missing = int(ctx.ceil(ctx.log10(st.noise / wanted))) if st.noise > wanted > 0 else 0
            if missing > 0 and dps < self.dps + MAX_EXTRA_DIGITS:
                dps += missing + 5
            elif (st.kink or st.uneven) and not looked_closer:
                h, dps, looked_closer = h * ctx.mpf(10) ** -6, dps + 12, True
            else:
                break
        center = st.center
        if st.uneven and not st.kink:
            with ctx.workdps(dps):
                center = (st.left + st.right) / 2
        near = looked_closer and self._near_kink(normal, st, center, dps)
        with ctx.workdps(dps):
            truncation = abs(st.center - st.right)  # the one-sided formula's own error, O(h**2)
        self._probe(shifted, scale, st.right, dps, natural, truncation)
        coarse = (math.nan, math.nan)
        if near:
            sides = [float(normal.left), float(normal.right), float(normal.outer_left), float(normal.outer_right)]
            coarse = (min(sides), max(sides))
        lo, hi = min(st.left, st.right), max(st.left, st.right)
        return float(center), float(lo), float(hi), bool(st.kink), "", near, *coarse

    def _near_kink(self, normal, closer, center, dps):
        """Whether the closer look found a kink within the normal step; raise _Lost if it
        found a grid.

        A kink (or a singularity) within the normal step leaves the closer look's one-sided
        derivatives inside the range the normal step saw. A function rounded to a grid
        (float64 without a float() call: mpmath's global functions, a quantization) moves by
        whole grid steps at the normal step but is flat at the closer one: its closer
        derivative (0) lies outside. A near kink proper is a jump at the normal step whose
        closer look is smooth and matches the slope of one side, taken from differences
        that do not straddle the kink.
        """
        ctx = self.ctx
        sides = (normal.left, normal.right, normal.outer_left, normal.outer_right)
        with ctx.workdps(dps):
            margin = ctx.mpf(10) ** (-ctx.mpf(self.dps) / 4) * normal.size + 2 * normal.noise
            low, high = min(sides) - margin, max(sides) + margin
            if not all(low <= d <= high for d in (closer.left, closer.right)):
                msg = (
                    "precision lost: at a step a million times smaller the derivative is "
                    f"{float(center):.6g}, outside the range [{float(min(sides)):.6g}, {float(max(sides)):.6g}] "
                    "seen at the normal step: the function is rounded to a grid somewhere (mpmath's global "
                    "functions, a quantization, a float64/float32 buffer or cast)"
                )
                raise _Lost(msg)
            if not normal.kink or closer.kink:
                return False
            tol = ctx.mpf(10) ** -9 * max(abs(normal.outer_left), abs(normal.outer_right)) + 2 * normal.noise
            return bool(min(abs(center - normal.outer_left), abs(center - normal.outer_right)) <= tol)

    def _five_point(self, shifted, h, dps):
        ctx = self.ctx
        f0, c_tr = self._center(dps)
        phis = []
        for s in (1, -1, 2, -2):
            phi, tr = shifted(s * h, dps)
            note = _highprec.lost_precision(c_tr, tr)
            if note:
                raise _Lost(note)
            phis.append(phi)
        p1, m1, p2, m2 = phis
        with ctx.workdps(dps):
            center = (m2 - 8 * m1 + 8 * p1 - p2) / (12 * h)
            right = (-3 * f0 + 4 * p1 - p2) / (2 * h)
            left = (3 * f0 - 4 * m1 + m2) / (2 * h)
            size = max(abs(left), abs(right))
            # Rounding noise of a one-sided difference, with a wide margin.
            noise = ctx.mpf(10) ** (6 - dps) * self.magnitude / h
            threshold = ctx.mpf(10) ** (-ctx.mpf(self.dps) / 4) * size + noise
            kink = abs(right - left) > threshold
            uneven = abs(center - (left + right) / 2) > threshold
            outer_right, outer_left = (p2 - p1) / h, (m1 - m2) / h
        return _Stencil(center, left, right, outer_left, outer_right, bool(kink), bool(uneven), noise, size)

    def _probe(self, shifted, scale, right, dps, natural, truncation):
        """Raise _Lost unless ``phi`` follows a step far below float64's resolution as ``right`` says.

        ``truncation`` (the one-sided value's distance from the centered one) is allowed on top:
        where the derivative is 0 (``x**3`` at 0) the one-sided value is its truncation error.
        """
        ctx = self.ctx
        exponent = PROBE_EXPONENT * self.dps
        # As many more digits as the probe step is below the five-point one: the same noise.
        dps = dps + int(math.ceil(exponent - self.dps / 3))
        with ctx.workdps(dps):
            t = ctx.mpf(10) ** (-ctx.mpf(exponent)) * ctx.mpf(float(scale))
        f0, c_tr = self._center(dps)
        ft, tr = shifted(t, dps)
        note = _highprec.lost_precision(c_tr, tr)
        if note:
            raise _Lost(note)
        with ctx.workdps(dps):
            slope = (ft - f0) / t
            noise = ctx.mpf(10) ** (6 - dps) * self.magnitude / t
            floor = ctx.mpf(10) ** (-ctx.mpf(self.dps) / 2) * natural
            ok = abs(slope - right) <= PROBE_RTOL * max(abs(slope), abs(right)) + noise + floor + 2 * truncation
        if not ok:
            msg = (
                f"precision lost: the output does not follow a step of {10 ** -exponent:.0e} (relative) "
                f"in this input as its derivative {float(right):.6g} says (it moves at {float(slope):.6g}); "
                "something inside the function rounds to float64 without a float() call: mpmath's "
                "global functions (mpmath.exp), a quantization, or a float64/float32 scratch buffer or "
                "cast (np.zeros(shape) written element by element, .astype(float), np.asarray(..., dtype=float))"
            )
            raise _Lost(msg)

    def elementwise(self, i, scales, input_scale, indices=None, extra_digits=0, slopes=None):
        """Truth for the elements ``indices`` (default all) of input ``i``.

        ``scales`` is the flat per-element step scale (:func:`element_scale`). An element
        much smaller than ``input_scale`` takes a step far below the other elements' share
        of ``phi``, so it is evaluated with as many more digits as it is orders of magnitude
        smaller: the step's effect on ``phi`` must stand out of the rounding of the rest.
        ``slopes`` (the expected derivatives of the elements ``indices``, such as the
        analytic gradient's) ask at once for the digits a small derivative needs
        (:meth:`digits_for`), which the truth would otherwise add after a first stencil:
        only the cost depends on them. ``extra_digits`` adds more to every element (see
        :func:`confirm`).
        """
        idx = range(self.base[i].size) if indices is None else indices
        # In logarithms: the ratio of a normal scale to a subnormal element overflows.
        orders = np.log10(input_scale) - np.log10(np.asarray(scales, dtype=np.float64))
        extra = np.ceil(np.clip(orders, 0.0, MAX_EXTRA_DIGITS)).astype(int)
        wanted = [int(extra[k]) for k in idx]
        if slopes is not None:
            # digits_for takes a derivative along a step of scale 1: the element's is scales[k] long.
            wanted = [max(e, self.digits_for(float(s) * float(scales[k]))) for e, s, k in zip(wanted, slopes, idx)]
        return _values([self._derivative(self._along_element(i, k), scales[k], e + extra_digits) for e, k in zip(wanted, idx)])

    def _along_element(self, i, k):
        """``shifted(t, dps)``: phi with element ``k`` of input ``i`` moved by ``t``."""
        base = self.base[i]
        flat = base.reshape(-1)

        def shifted(t, dps):
            moved = flat.copy()
            with self.ctx.workdps(dps):
                moved[k] = flat[k] + t
            args = list(self.base)
            args[i] = moved.reshape(base.shape)
            return self._evaluate(args, dps)

        return shifted

    def _along_direction(self, d):
        """``shifted(t, dps)``: phi at ``x + t d`` for ``d = {i: flat float64 array}``."""
        hp_d = {}  # converted once: a stencil shifts along d five times or more

        def shifted(t, dps):
            args = list(self.base)
            with self.ctx.workdps(dps):
                for i, di in d.items():
                    flat = self.base[i].reshape(-1)
                    if i not in hp_d:
                        hp_d[i] = _highprec.to_hp(di)
                    # The array first: mpmath's own conversion of an array (t * array) goes through its repr.
                    args[i] = (flat + hp_d[i] * t).reshape(self.base[i].shape)
            return self._evaluate(args, dps)

        return shifted

    def slopes_at(self, steps, *, i=None, indices=None, directions=None):
        """Centered differences of ``phi`` at the float64 ``steps``, in high precision.

        Along elements ``indices`` of input ``i``, or along ``directions[k]`` for ``k`` in
        ``indices``: what the exact function does at the scale the finite differences look
        at (the truth itself looks far closer). NaN where it cannot be evaluated.
        """
        out = np.full(len(indices), np.nan)
        for r, (k, h) in enumerate(zip(indices, steps)):
            shifted = self._along_element(i, k) if directions is None else self._along_direction(directions[k])
            try:
                (plus, _), (minus, _) = shifted(self.ctx.mpf(float(h)), self.dps), shifted(-self.ctx.mpf(float(h)), self.dps)
            except HighPrecisionUnavailable:
                continue
            with self.ctx.workdps(self.dps):
                out[r] = float((plus - minus) / (2 * self.ctx.mpf(float(h))))
        return out

    def digits_for(self, slope):
        """Extra digits a directional derivative of size about ``slope`` needs at once.

        :meth:`_checked_derivative` adds the digits its rounding noise leaves missing by
        itself, at the cost of a second five-point stencil; where the analytic slope is
        known, asking for them up front saves that. Only the cost depends on this: the
        truth still checks its own noise.
        """
        ctx = self.ctx
        with ctx.workdps(self.dps):
            magnitude = float(self.magnitude)
        if not magnitude > 0 or not np.isfinite(magnitude):
            return 0
        size = max(abs(float(slope)), 10.0 ** (-self.dps / 2) * magnitude)
        if not size > 0 or not np.isfinite(size):
            return 0
        # The noise model's 10**(6 - dps) * magnitude / h against 10**(-dps/2) * size, h = 10**(-dps/3).
        missing = 6 + self.dps / 3 + self.dps / 2 + math.log10(magnitude / size) - self.dps
        return int(np.clip(math.ceil(missing) + 1, 0, MAX_EXTRA_DIGITS)) if missing > 0 else 0

    def directional(self, directions, indices=None, extra_digits=0):
        """Truth of ``t -> phi(x + t d)`` at 0 for each ``{i: flat float64 array}`` ``d``."""
        idx = range(len(directions)) if indices is None else indices
        return _values([self._derivative(self._along_direction(directions[k]), 1.0, extra_digits) for k in idx])


def confirm(values, suspicious, recompute, dps, atol, rounds=3):
    """Re-derive the truth at more digits where it contradicts the other sides.

    Cancellation inside ``fn`` (``log(1 + 1e-34)``) can exhaust any fixed precision without
    any sign in the result. So where the truth disagrees with the analytic gradient or the
    finite difference, it is recomputed with ``dps``, ``3 dps``, ... more digits (integrity
    probe included) until two successive precisions agree (to 1e-12 relative or ``atol``);
    an element that never settles, or whose recomputation has a note, has no truth
    (NaN and a note), which the verdict reads as "no truth here". ``recompute(indices,
    extra_digits)`` (keywords) returns :class:`TruthValues` for those indices. Updates ``values``.
    """
    idx = np.flatnonzero(suspicious)
    extra = 0
    for _ in range(rounds):
        if not idx.size:
            return values
        extra = 2 * extra + dps
        new = recompute(indices=idx, extra_digits=extra)
        lost = new.note != ""
        agree = (new.kink == values.kink[idx]) & np.all(
            [np.abs(getattr(new, f) - getattr(values, f)[idx]) <= 1e-12 * np.abs(getattr(new, f)) + atol[idx] for f in ("center", "lo", "hi")],
            axis=0,
        )
        values.fill(idx, new)
        idx = idx[~(agree | lost)]
    note = (f"no truth: it kept changing with more digits (up to {extra} more than {dps}): "
            "cancellation inside the function exhausts the precision")
    values.drop(idx, note)
    return values


def reexamine(values, contradicted, recompute, dps, atol, rounds=3):
    """Re-derive a truth that contradicts two sides which agree with each other.

    For the elements ``contradicted`` (the truth contradicts both the analytic value and the
    finite difference while those two agree within the finite difference's error estimate),
    the truth is never taken on trust: it is recomputed at ``dps``, ``3 dps``, ... more digits,
    each time with the integrity checks (conversions and the probe, at that precision), as
    :func:`confirm` does. It survives only if it settles and stays clean; otherwise it becomes
    NaN with the reason in ``values.note``. A survivor with ``values.near_kink`` set is a kink
    within float64 resolution: judge it against ``[coarse_lo, coarse_hi]`` too.

    Returns
    -------
    numpy.ndarray of bool
        The elements of ``contradicted`` that kept their truth.
    """
    contradicted = np.asarray(contradicted, dtype=bool)
    confirm(values, contradicted, recompute, dps, atol, rounds)
    return contradicted & values.has_truth


def input_scale(x):
    """The rms of ``x``, or 1 when ``x`` is all zeros."""
    ax = np.abs(x)
    rms = float(np.sqrt(np.mean(ax * ax))) if ax.size else 0.0
    return rms if rms > 0 and np.isfinite(rms) else 1.0


def element_scale(x):
    """Truth step scale per element: ``|x_k|`` itself, or the input's rms where ``x_k = 0``.

    Relative to the element alone (unlike the finite differences' scale), so that a point
    near a singularity of the function at 0 (``sqrt`` at 1e-10) is stepped on its own
    scale; the digits this costs are added back (see :meth:`HighPrecisionPhi.elementwise`).
    """
    ax = np.abs(x)
    return np.where(ax > 0, ax, input_scale(x))


def _values(rows):
    cols = list(zip(*rows)) if rows else [()] * len(_FIELDS)
    center, lo, hi, coarse_lo, coarse_hi = (np.array(cols[j], dtype=float) for j in (0, 1, 2, 6, 7))
    kink, near = (np.array(cols[j], dtype=bool) for j in (3, 5))
    note = np.empty(len(cols[4]), dtype=object)
    note[:] = cols[4]
    return TruthValues(center=center, lo=lo, hi=hi, kink=kink, note=note, near_kink=near,
                       coarse_lo=coarse_lo, coarse_hi=coarse_hi)
