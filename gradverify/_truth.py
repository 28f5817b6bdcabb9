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

Per-element truth costs four evaluations per input element, so it is for small inputs;
directional truth costs four per direction whatever the size.
"""

import time
from dataclasses import dataclass

import numpy as np

from gradverify import _highprec


# The most digits the truth adds on its own for one derivative.
MAX_EXTRA_DIGITS = 400


@dataclass
class TruthValues:
    center: np.ndarray  # NaN where there is no truth
    lo: np.ndarray
    hi: np.ndarray
    kink: np.ndarray

    @classmethod
    def unknown(cls, n):
        nan = np.full(n, np.nan)
        return cls(center=nan, lo=nan.copy(), hi=nan.copy(), kink=np.zeros(n, dtype=bool))

    def fill(self, indices, other):
        for name in ("center", "lo", "hi", "kink"):
            getattr(self, name)[indices] = getattr(other, name)


class HighPrecisionPhi:
    """``phi`` evaluated at high precision around a fixed float64 point."""

    def __init__(self, fn, inputs, cotangent, *, dps, floating):
        self.fn = fn
        self.dps = dps
        ctx = _highprec.CTX
        self.ctx = ctx
        self.base = [_highprec.to_hp(x) if fl else x for x, fl in zip(inputs, floating)]
        self.v = np.asarray(cotangent, dtype=np.float64).reshape(-1)
        started = time.perf_counter()
        out = _highprec.call(fn, self.base, dps=dps)
        self.seconds_per_call = time.perf_counter() - started
        with ctx.workdps(dps):
            flat = out.reshape(-1)
            self.phi0 = ctx.fdot(flat, self.v)
            self.magnitude = ctx.fsum(abs(o * w) for o, w in zip(flat, self.v))

    def _phi(self, args, dps):
        out = _highprec.call(self.fn, args, dps=dps)
        with self.ctx.workdps(dps):
            return self.ctx.fdot(out.reshape(-1), self.v)

    def _derivative(self, shifted, scale, extra_digits=0):
        """The five-point results along one coordinate or direction; ``shifted(t, dps)`` evaluates.

        Two retries, each at most a few times:

        * where the rounding noise of the result (``10**(6 - dps) * sum(|v * fn|) / h``) is
          not far below the derivative (or below ``10**(-dps/2)`` of the natural scale
          ``sum(|v * fn|) / scale`` when that is 0), it is evaluated again with as many
          more digits as are missing, plus five: ``1 / (1 + x**2)`` at ``x = 1e-20`` needs
          about 80;
        * a jump between the one-sided derivatives, or a centered value that disagrees with
          them, is looked at once more with a step a million times smaller (and 12 more
          digits): a real kink keeps its jump, while a point merely close to a singularity
          or a kink (``sqrt`` at 1e-10) loses it. Where the one-sided values agree and the
          centered one still does not (the second derivative jumps: ``g / (|g| + eps)`` at
          0), their mean is the derivative: each side's formula sees only its smooth half.
        """
        ctx = self.ctx
        dps = self.dps + extra_digits
        with ctx.workdps(dps):
            h = ctx.mpf(10) ** (-ctx.mpf(self.dps) / 3) * ctx.mpf(float(scale))
            natural = self.magnitude / abs(ctx.mpf(float(scale)))
        looked_closer = False
        for _ in range(6):
            center, lo, hi, kink, uneven, noise, size = self._five_point(shifted, h, dps)
            with ctx.workdps(dps):
                wanted = ctx.mpf(10) ** (-ctx.mpf(self.dps) / 2) * max(size, ctx.mpf(10) ** (-ctx.mpf(self.dps) / 2) * natural)
                missing = int(ctx.ceil(ctx.log10(noise / wanted))) if noise > wanted > 0 else 0
            if missing > 0 and dps < self.dps + MAX_EXTRA_DIGITS:
                dps += missing + 5
            elif (kink or uneven) and not looked_closer:
                h, dps, looked_closer = h * ctx.mpf(10) ** -6, dps + 12, True
            else:
                break
        if uneven and not kink:
            with ctx.workdps(dps):
                center = (lo + hi) / 2
        return float(center), float(lo), float(hi), bool(kink)

    def _five_point(self, shifted, h, dps):
        ctx = self.ctx
        p1, m1, p2, m2 = (shifted(s * h, dps) for s in (1, -1, 2, -2))
        # phi(x) is kept at the base precision; at more digits it is evaluated again.
        f0 = self.phi0 if dps == self.dps else shifted(0, dps)
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
        return center, min(left, right), max(left, right), kink, uneven, noise, size

    def elementwise(self, i, scales, input_scale, indices=None, extra_digits=0):
        """Truth for the elements ``indices`` (default all) of input ``i``.

        ``scales`` is the flat per-element step scale (:func:`element_scale`). An element
        much smaller than ``input_scale`` takes a step far below the other elements' share
        of ``phi``, so it is evaluated with as many more digits as it is orders of magnitude
        smaller: the step's effect on ``phi`` must stand out of the rounding of the rest.
        ``extra_digits`` adds more to every element (see :func:`confirm`).
        """
        base = self.base[i]
        flat = base.reshape(-1)
        idx = range(flat.size) if indices is None else indices
        # In logarithms: the ratio of a normal scale to a subnormal element overflows.
        orders = np.log10(input_scale) - np.log10(np.asarray(scales, dtype=np.float64))
        extra = np.ceil(np.clip(orders, 0.0, MAX_EXTRA_DIGITS)).astype(int) + extra_digits
        rows = []
        for k in idx:

            def shifted(t, dps, k=k):
                moved = flat.copy()
                with self.ctx.workdps(dps):
                    moved[k] = flat[k] + t
                args = list(self.base)
                args[i] = moved.reshape(base.shape)
                return self._phi(args, dps)

            rows.append(self._derivative(shifted, scales[k], int(extra[k])))
        return _values(rows)

    def directional(self, directions, indices=None, extra_digits=0):
        """Truth of ``t -> phi(x + t d)`` at 0 for each ``{i: flat float64 array}`` ``d``."""
        rows = []
        for k in range(len(directions)) if indices is None else indices:
            d = directions[k]

            def shifted(t, dps, d=d):
                args = list(self.base)
                with self.ctx.workdps(dps):
                    for i, di in d.items():
                        flat = self.base[i].reshape(-1)
                        args[i] = (flat + t * _highprec.to_hp(di)).reshape(self.base[i].shape)
                return self._phi(args, dps)

            rows.append(self._derivative(shifted, 1.0, extra_digits))
        return _values(rows)


def confirm(values, suspicious, recompute, dps, atol, rounds=3):
    """Re-derive the truth at more digits where it contradicts the other sides.

    Cancellation inside ``fn`` (``log(1 + 1e-34)``) can exhaust any fixed precision without
    any sign in the result. So where the truth disagrees with the analytic gradient or the
    finite difference, it is recomputed with ``dps``, ``3 dps``, ... more digits until two
    successive precisions agree (to 1e-12 relative or ``atol``); an element that never
    settles gets NaN, which the verdict reads as "no truth here". ``recompute(indices,
    extra_digits)`` (keywords) returns :class:`TruthValues` for those indices. Updates ``values``.
    """
    idx = np.flatnonzero(suspicious)
    extra = 0
    for _ in range(rounds):
        if not idx.size:
            return values
        extra = 2 * extra + dps
        new = recompute(indices=idx, extra_digits=extra)
        agree = (new.kink == values.kink[idx]) & np.all(
            [np.abs(getattr(new, f) - getattr(values, f)[idx]) <= 1e-12 * np.abs(getattr(new, f)) + atol[idx] for f in ("center", "lo", "hi")],
            axis=0,
        )
        values.fill(idx, new)
        idx = idx[~agree]
    for f in ("center", "lo", "hi"):
        getattr(values, f)[idx] = np.nan
    return values


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
    center, lo, hi, kink = (np.array(col) for col in zip(*rows)) if rows else [np.empty(0)] * 4
    return TruthValues(center=center.astype(float), lo=lo.astype(float), hi=hi.astype(float), kink=kink.astype(bool))
