"""The numerical side: centered finite differences in float64 with an error model.

The scalar that is differentiated is ``phi(x) = sum(v * fn(x))`` for the cotangent ``v``, so
that its gradient is exactly what the hand-written VJP returns.

Step and error model
--------------------
For an element ``x_k`` of input ``i`` the first step is ``h = BASE_STEP * scale_k`` with
``scale_k = max(|x_k|, rms(x_i))`` (1 when the input is all zeros): relative to the element,
but never smaller than the input's own scale near zero. ``phi`` is evaluated at
``x_k ± h / 2**j`` for ``j = 0, 1`` (and ``2`` with Richardson extrapolation), each step
replaced by the one the floating-point sum actually takes (``(x + h) - x``).

* The estimate is the centered difference at the finest step (with Richardson: the
  extrapolation of the last two), and its truncation error is estimated from the coarser
  ones: ``|D(h) - D(h/2)| / 3`` (with Richardson: ``|R(h/2) - R(h)| / 15``).
* ``phi(x') - phi(x)`` is computed as ``sum(v * (fn(x') - fn(x)))``: outputs a step does
  not touch cancel exactly instead of adding the rounding of the whole sum.
* Its rounding error is ``noise * sum(|stencil coefficients|)``, where ``noise``, the noise
  of one evaluation, is the larger of ``ROUNDING_ULPS * eps(output dtype)`` times
  ``sum(|v * fn(x')|)`` over the outputs the step changed, and the fourth difference of
  ``phi`` over the five equally spaced points (which only noise makes large where ``phi``
  is smooth: it catches cancellation inside ``fn``).
* Where the error estimate is large and truncation dominates, or rounding does, the step is
  moved once to the one the model says is best, ``h* = h * (rounding / (p * truncation))**(1/(p+1))``
  for a method of order ``p``; the result with the smaller error estimate is kept.

This beats a fixed ``eps``: the step follows the scale of each element and is corrected
where the function's curvature or size makes the first choice poor.

Kinks
-----
One-sided differences ``R_j = (phi(x + t_j) - phi(x)) / t_j`` and ``L_j`` likewise satisfy
``R_j - L_j ≈ phi'' t_j`` where ``phi`` is smooth and ``R_j - L_j ≈ jump`` at a kink. So
``|2 (R_1 - L_1) - (R_0 - L_0)|`` vanishes (to ``O(h^3)``) for a smooth function and equals
the jump in the derivative at a kink. A coordinate where it exceeds ``KINK_RTOL`` of the
derivative (and the rounding noise) is re-examined with a step 64 times smaller; if it
still shows a jump it is a non-differentiable point and the numerical side reports the
bracket ``[min, max]`` of its one-sided differences instead of a single value.
"""

from dataclasses import dataclass

import numpy as np

from gradverify._backend import backend_name, device_of, to_numpy
from gradverify._errors import GradVerifyError, InvalidArgument, UserFunctionError
from gradverify._truth import input_scale

BASE_STEP = float(np.finfo(np.float64).eps) ** (1 / 3)  # ~6.1e-6, optimal for O(h^2)
BASE_STEP_RICHARDSON = float(np.finfo(np.float64).eps) ** (1 / 5)  # ~7.4e-4, for O(h^4)
ROUNDING_ULPS = 4.0
KINK_RTOL = 1e-5
KINK_SHRINK = 64.0
# Move the step when the error estimate exceeds this fraction of the tolerance.
REFINE_FRACTION = 0.1
# The most the step is moved in one refinement, either way.
MAX_STEP_CHANGE = 1e3


@dataclass
class Stencil:
    """Finite-difference results for a set of coordinates (all arrays of one length)."""

    estimate: np.ndarray
    trunc: np.ndarray  # estimated truncation error
    rounding: np.ndarray  # estimated rounding error
    lo: np.ndarray  # bracket of the one-sided differences (meaningful where kink)
    hi: np.ndarray
    kink: np.ndarray
    step: np.ndarray
    still: np.ndarray  # no output moved at any stencil point (see refine_elementwise)

    @property
    def error(self):
        """Truncation plus rounding; infinite while a still element awaits a larger step."""
        return np.where(self.still, np.inf, self.trunc + self.rounding)

    def take(self, where, other, keep):
        """Replace the entries at indices ``where`` with ``other``'s entries under ``keep``."""
        for name in self.__dataclass_fields__:
            getattr(self, name)[where] = getattr(other, name)[keep]


def step_scale(x):
    """Per-element scale of a float64 host array: ``max(|x_k|, rms(x))``, 1 if all zero."""
    return np.maximum(np.abs(x), input_scale(x))


def actual_steps(x, h):
    """The steps a float64 sum really takes: ``(x + h) - x`` and ``x - (x - h)``."""
    return (x + h) - x, x - (x - h)


def fractions(richardson):
    return (1.0, 0.5, 0.25) if richardson else (1.0, 0.5)


def combine(plus, minus, tp, tm, noise_model, richardson, still):
    """Estimates from ``phi(x ± t_j) - phi(x)`` (arrays ``(n, J)``).

    ``tp``/``tm`` are the actual positive/negative step magnitudes and ``noise_model`` the
    modelled rounding noise of each coordinate's evaluations (an ``(n,)`` array). Returns a
    :class:`Stencil` (``step`` is the coarsest ``tp``).
    """
    with np.errstate(invalid="ignore", over="ignore"):
        return _combine(plus, minus, tp, tm, noise_model, richardson, still)


def _combine(plus, minus, tp, tm, model, richardson, still):
    # The fourth difference over the equally spaced points -h, -h/2, 0, h/2, h is of order
    # h**4 times the fourth derivative for a smooth phi, far below rounding: what is left is
    # the noise of the evaluations, including cancellation inside fn that no magnitude of
    # its outputs can show.
    fourth = np.abs(plus[:, 0] - 4.0 * plus[:, 1] - 4.0 * minus[:, 1] + minus[:, 0])
    if richardson:  # a second sample, over -h/2 .. h/2
        fourth = np.maximum(fourth, np.abs(plus[:, 1] - 4.0 * plus[:, 2] - 4.0 * minus[:, 2] + minus[:, 1]))
    # One fourth difference is one sample of the noise (about 7 times its standard deviation
    # on average); twice it, and the median over the coordinates evaluated together, keep an
    # unluckily small sample from passing for a quiet one.
    sampled = 2.0 * np.maximum(fourth, np.median(fourth) if fourth.size else 0.0)
    span = tp + tm
    central = (plus - minus) / span
    right = plus / tp
    left = -minus / tm
    # At a kink the fourth difference is the jump itself (|jump| times the step), not noise.
    jump = np.abs(2.0 * (right[:, 1] - left[:, 1]) - (right[:, 0] - left[:, 0]))
    # So the jump is judged against the modelled noise, not the sampled one (which it
    # would always equal).
    jump_noise = 64.0 * model / np.minimum(tp[:, 0], tm[:, 0])
    one_sided = np.maximum(np.abs(right[:, 1]), np.abs(left[:, 1]))
    kink = (jump > KINK_RTOL * np.maximum(one_sided, np.abs(central[:, 1]))) & (jump > jump_noise)
    noise = np.where(kink, model, np.maximum(model, sampled))
    central_round = 2.0 * noise[:, None] / span
    if richardson:
        r1 = (4.0 * central[:, 1] - central[:, 0]) / 3.0
        r2 = (4.0 * central[:, 2] - central[:, 1]) / 3.0
        estimate = r2
        trunc = np.abs(r2 - r1) / 15.0
        rounding = (4.0 * central_round[:, 2] + central_round[:, 1]) / 3.0
    else:
        estimate = central[:, 1]
        trunc = np.abs(central[:, 0] - central[:, 1]) / 3.0
        rounding = central_round[:, 1]
    sided = np.concatenate([left[:, :2], right[:, :2]], axis=1)
    # Widen the bracket by the rounding noise of a one-sided difference at the finest step.
    sided_round = noise / np.minimum(tp[:, 1], tm[:, 1])
    return Stencil(
        estimate=estimate,
        trunc=trunc,
        rounding=rounding,
        lo=sided.min(axis=1) - sided_round,
        hi=sided.max(axis=1) + sided_round,
        kink=kink & ~still,
        step=tp[:, 0].copy(),
        still=still,
    )


class PhiEvaluator:
    """Evaluates ``phi(x') - phi(x) = sum(v * (fn(x') - fn(x)))`` at blocks of perturbed inputs.

    The outputs are differenced before they are contracted with ``v``, so the outputs a
    perturbation does not touch drop out exactly and add no rounding: an elementwise op on
    a large array is differentiated as accurately as on a single element.

    A block perturbs the flattened wrt inputs row by row (:class:`OneHot`, :class:`Dense`).
    With ``batched=True`` a block is one call of ``fn`` with a leading batch axis on every
    input (unperturbed ones are broadcast views); otherwise one call per row. Blocks are cut
    so that no call holds more than ``max_batch_bytes`` of perturbed inputs and outputs.
    """

    def __init__(self, fn, inputs, cotangent, *, xp, batched, max_batch_bytes):
        self.fn = fn
        self.inputs = inputs
        self.xp = xp
        self.v = cotangent
        self.batched = batched
        self.out = fn(*inputs)
        self.calls = 1
        self.eps = float(xp.finfo(self.out.dtype).eps)
        weighted = self.out * cotangent
        self.magnitude = float(xp.sum(xp.abs(weighted)))  # sum(|v * fn(x)|)
        self.noise_magnitude = float(xp.sum(xp.abs(cotangent) * xp.maximum(xp.abs(self.out), 1.0)))
        # The spacing of subnormals: below it everything is underflow.
        self.tiny = float(xp.finfo(self.out.dtype).smallest_normal) * self.eps
        out_size = int(np.prod(self.out.shape))
        row_bytes = 8 * (sum(int(np.prod(x.shape)) for x in inputs) + out_size)
        # Three live copies per row: the perturbed inputs, the output, the product with v.
        self.rows_per_block = max(1, int(max_batch_bytes // (3 * row_bytes)))
        self.flat = {}
        # NumPy and CuPy assign through integer index arrays, a third of the work of the
        # array API's masked where (which array-api-strict needs).
        self.scatter = backend_name(xp) in ("numpy", "cupy")

    def noise(self, moved):
        """Modelled rounding noise of ``phi`` differences, from ``sum(|v| * max(|fn|, 1))`` over
        the outputs a perturbation changed (the whole output where it changed none).

        Outputs count at least 1 each: intermediates of order one (the 1 of
        ``log(1 + x**2)``) carry rounding that an output's own size cannot show.
        """
        return ROUNDING_ULPS * self.eps * np.where(moved > 0, moved, self.noise_magnitude) + self.tiny

    def _flat(self, i):
        if i not in self.flat:
            self.flat[i] = self.xp.reshape(self.inputs[i], (-1,))
        return self.flat[i]

    def phi(self, rows, make_rows):
        """``phi(x') - phi(x)`` at ``rows`` perturbations, and ``sum(|v * fn(x')|)`` over the
        outputs each one changed; ``make_rows(start, stop)`` builds a block of them.

        A block is ``{i: OneHot or Dense}``, the rows of perturbations of the flattened
        wrt input ``i``.
        """
        diff = np.empty(rows, dtype=np.float64)
        moved = np.empty(rows, dtype=np.float64)
        step = self.rows_per_block
        for start in range(0, rows, step):
            stop = min(rows, start + step)
            diff[start:stop], moved[start:stop] = self._phi_chunk(make_rows(start, stop))
        return diff, moved

    def _phi_chunk(self, chunk):
        # A step may leave fn's domain (sqrt near 0): NumPy's warnings about it are expected,
        # and the non-finite values they produce are handled by refinement.
        with np.errstate(all="ignore"):
            try:
                return self._phi_chunk_unguarded(chunk)
            except GradVerifyError:
                raise
            except Exception as exc:
                msg = f"fn raised {type(exc).__name__} at a perturbed point of the finite differences: {exc}"
                raise UserFunctionError(msg) from exc

    def _contract(self, y, rows):
        """Row sums of ``v * (y - out)`` and of ``|v * y|`` where ``y`` differs from ``out``."""
        xp = self.xp
        d = y - self.out
        diff = xp.sum(xp.reshape(d * self.v, (rows, -1)), axis=1)
        touched = xp.where(d != 0, xp.abs(self.v) * xp.maximum(xp.abs(y), 1.0), xp.zeros_like(d))
        moved = xp.sum(xp.reshape(touched, (rows, -1)), axis=1)
        return to_numpy(diff), to_numpy(moved)

    def _phi_chunk_unguarded(self, chunk):
        xp = self.xp
        device = device_of(self.inputs[0])
        rows = len(next(iter(chunk.values())))
        if self.batched:
            args = []
            for i, x in enumerate(self.inputs):
                if i in chunk:
                    args.append(xp.reshape(self._perturbed(i, chunk[i], device), (rows, *x.shape)))
                else:
                    args.append(xp.broadcast_to(x[None, ...], (rows, *x.shape)))
            self.calls += 1
            y = self.fn(*args)
            if tuple(y.shape) != (rows, *self.out.shape):
                msg = (
                    f"batched=True, but fn mapped inputs with a leading batch axis of {rows} to shape"
                    f" {tuple(y.shape)}, not {(rows, *self.out.shape)}; pass batched=False or make fn map the batch axis"
                )
                raise InvalidArgument(msg)
            return self._contract(y, rows)
        outs = []
        for r in range(rows):
            args = list(self.inputs)
            for i, entry in chunk.items():
                args[i] = xp.reshape(self._perturbed(i, entry.row(r), device)[0, ...], self.inputs[i].shape)
            self.calls += 1
            outs.append(self.fn(*args))
        return self._contract(xp.stack(outs), rows)

    def _perturbed(self, i, entry, device):
        """The flattened input ``i`` perturbed by each row of ``entry``: ``(rows, n_i)``."""
        xp = self.xp
        flat = self._flat(i)[None, :]
        if isinstance(entry, OneHot):
            # x_k + delta as the host computed it for the step; every other element exact.
            columns = xp.asarray(entry.columns, device=device)
            deltas = xp.asarray(entry.deltas, device=device)
            if self.scatter:
                rows = xp.asarray(xp.broadcast_to(flat, (len(entry), flat.shape[1])), copy=True)
                rows[xp.arange(len(entry), device=device), columns] = flat[0, columns] + deltas
                return rows
            hit = xp.arange(flat.shape[1], device=device)[None, :] == columns[:, None]
            return xp.where(hit, flat + deltas[:, None], flat)
        return flat + xp.asarray(entry.deltas, device=device)


@dataclass
class OneHot:
    """Rows that each shift one element (``columns[r]``) by ``deltas[r]``."""

    columns: np.ndarray
    deltas: np.ndarray

    def __len__(self):
        return self.columns.size

    def row(self, r):
        return OneHot(self.columns[r : r + 1], self.deltas[r : r + 1])


@dataclass
class Dense:
    """Rows of dense perturbations ``deltas`` (``(rows, n)``)."""

    deltas: np.ndarray

    def __len__(self):
        return self.deltas.shape[0]

    def row(self, r):
        return Dense(self.deltas[r : r + 1])


def elementwise(evaluator, i, x_host, richardson, indices=None, step=None):
    """Finite differences of ``phi`` with respect to each element of wrt input ``i``.

    ``x_host`` is the flattened float64 input on the host. ``indices`` restricts to some
    elements and ``step`` overrides the first step per element (both used by refinement).
    """
    n = x_host.size
    idx = np.arange(n) if indices is None else indices
    if step is None:
        base = BASE_STEP_RICHARDSON if richardson else BASE_STEP
        step = base * step_scale(x_host)[idx]
    fr = fractions(richardson)
    xk = x_host[idx]
    tp = np.empty((idx.size, len(fr)))
    tm = np.empty_like(tp)
    for j, f in enumerate(fr):
        tp[:, j], tm[:, j] = actual_steps(xk, step * f)
    # Row layout: for each element, +t_0, -t_0, +t_1, -t_1, ...
    signed = np.stack([tp, -tm], axis=2).reshape(-1)
    columns = np.repeat(idx, 2 * len(fr))

    def make_rows(start, stop):
        return {i: OneHot(columns[start:stop], signed[start:stop])}

    diff, moved = evaluator.phi(signed.size, make_rows)
    diff = diff.reshape(idx.size, len(fr), 2)
    moved = moved.reshape(idx.size, -1).max(axis=1)
    return combine(diff[:, :, 0], diff[:, :, 1], tp, tm, evaluator.noise(moved), richardson, moved == 0)


def directional(evaluator, directions, richardson, t0=None):
    """Finite differences of ``t -> phi(x + t d)`` at 0 for each direction ``d``.

    ``directions`` is a list of ``{i: flat float64 host array}``; steps are taken in ``t``
    (the directions already carry each element's scale).
    """
    if t0 is None:
        t0 = BASE_STEP_RICHARDSON if richardson else BASE_STEP
    fr = fractions(richardson)
    ts = np.array([t0 * f for f in fr])
    signed = np.stack([ts, -ts], axis=1).reshape(-1)
    steps = np.tile(signed, len(directions))
    which = np.repeat(np.arange(len(directions)), signed.size)

    def make_rows(start, stop):
        t, d = steps[start:stop, None], which[start:stop]
        return {i: Dense(t * np.stack([directions[k][i] for k in d])) for i in directions[0]}

    diff, moved = evaluator.phi(steps.size, make_rows)
    diff = diff.reshape(len(directions), len(fr), 2)
    moved = moved.reshape(len(directions), -1).max(axis=1)
    tp = np.broadcast_to(ts, (len(directions), len(fr))).copy()
    # A direction that moves no output has a derivative of 0 within the noise bound.
    return combine(diff[:, :, 0], diff[:, :, 1], tp, tp.copy(), evaluator.noise(moved), richardson, np.zeros(moved.shape, dtype=bool))


def refine_elementwise(evaluator, i, x_host, richardson, first, target):
    """Step correction for the elements whose first estimate is poor; updates ``first``.

    * Elements where ``fn`` was not finite at a stencil point (a step left its domain, as
      ``sqrt`` near 0) are retried first, up to three times, with steps 1000 times smaller
      and no larger than ``|x_k|`` times the base step.
    * Kink candidates are re-examined with a step ``KINK_SHRINK`` times smaller: a real kink
      keeps its jump, a smooth curve loses it.
    * Elements whose error estimate exceeds ``target`` get the step the error model calls
      optimal, and keep whichever estimate has the smaller error; twice, so that a step
      that moved no output at all (a function flat at float64's resolution there, whose
      error counts as infinite until then) can grow by up to a million, though never past
      half the distance to 0.
    Returns the number of elements re-evaluated.
    """
    redone = 0
    base = BASE_STEP_RICHARDSON if richardson else BASE_STEP
    for _ in range(3):
        redo = np.flatnonzero(~np.isfinite(first.estimate))
        if not redo.size:
            break
        xk = np.abs(x_host[redo])
        step = first.step[redo] / 1e3
        step = np.where(xk > 0, np.minimum(step, base * xk), step)
        second = elementwise(evaluator, i, x_host, richardson, indices=redo, step=step)
        first.take(redo, second, np.ones(redo.size, dtype=bool))
        redone += redo.size
    order = 4.0 if richardson else 2.0
    for attempt in range(2):
        finite = np.isfinite(first.estimate)
        kinky = first.kink & finite if attempt == 0 else np.zeros_like(finite)
        poor = ~first.kink & finite & (first.error > target)
        new_step = first.step.copy()
        new_step[kinky] /= KINK_SHRINK
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = (first.rounding / (order * first.trunc)) ** (1.0 / (order + 1.0))
        factor = np.clip(np.nan_to_num(factor, nan=1.0, posinf=MAX_STEP_CHANGE), 1 / MAX_STEP_CHANGE, MAX_STEP_CHANGE)
        new_step[poor] *= factor[poor]
        # A growing step stops at half the distance to 0, where most kinks and domain edges lie.
        grown = poor & (new_step > first.step) & (x_host != 0)
        new_step[grown] = np.maximum(first.step[grown], np.minimum(new_step[grown], np.abs(x_host[grown]) / 2))
        redo = np.flatnonzero(kinky | (poor & (new_step != first.step)))
        if not redo.size:
            break
        second = elementwise(evaluator, i, x_host, richardson, indices=redo, step=new_step[redo])
        # A kink candidate takes the finer look whatever it says.
        keep = first.kink[redo] | (second.error < first.error[redo])
        first.take(redo[keep], second, keep)
        redone += redo.size
    # Still no output moved, even at the largest step tried: the derivative is below what
    # float64 shows there, and the noise bound of that step is its error.
    first.still[:] = False
    return redone


def cross_check(evaluator, i, x_host, richardson, first, indices):
    """Widen the error of elements whose estimate moves with the step; updates ``first``.

    Without a truth, an element blamed on the analytic side is looked at again with steps
    16 times larger and 16 times smaller. A genuine error in the analytic gradient leaves
    all three estimates in agreement; noise the error model missed (a function that rounds
    through a large intermediate, like ``(x + 1e8) - 1e8``) does not, and the spread of the
    three becomes part of the error estimate, so the element reads as unresolved.
    """
    if not indices.size:
        return
    estimates = [first.estimate[indices]]
    for factor in (16.0, 1 / 16.0):
        estimates.append(elementwise(evaluator, i, x_host, richardson, indices=indices, step=first.step[indices] * factor).estimate)
    estimates = np.array(estimates)
    with np.errstate(invalid="ignore"):
        spread = np.nanmax(estimates, axis=0) - np.nanmin(estimates, axis=0)
    first.trunc[indices] = np.maximum(first.trunc[indices], np.nan_to_num(spread, nan=np.inf))
