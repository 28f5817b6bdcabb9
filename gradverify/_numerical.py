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
* Its rounding error is ``noise * sum(|stencil coefficients|)``, where ``noise``, the noise
  of one evaluation of ``phi``, is the largest of ``ROUNDING_ULPS * eps(output dtype)``
  times ``sum(|v * fn(x)|)`` or times ``|phi|`` at the stencil points, and the fourth
  difference of ``phi`` over the five equally spaced points (which only noise makes large
  where ``phi`` is smooth: it catches cancellation inside ``fn``).
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

from gradverify._backend import device_of, to_numpy
from gradverify._errors import GradVerifyError, InvalidArgument, UserFunctionError
from gradverify._truth import input_scale

BASE_STEP = float(np.finfo(np.float64).eps) ** (1 / 3)  # ~6.1e-6, optimal for O(h^2)
BASE_STEP_RICHARDSON = float(np.finfo(np.float64).eps) ** (1 / 5)  # ~7.4e-4, for O(h^4)
ROUNDING_ULPS = 4.0
KINK_RTOL = 1e-5
KINK_SHRINK = 64.0
# Move the step when the error estimate exceeds this fraction of the tolerance.
REFINE_FRACTION = 0.01
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

    @property
    def error(self):
        return self.trunc + self.rounding

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


def combine(phi0, plus, minus, tp, tm, delta, eps, richardson):
    """Estimates from ``phi`` at ``x ± t_j`` (arrays ``(n, J)``) and at ``x`` (scalar ``phi0``).

    ``tp``/``tm`` are the actual positive/negative step magnitudes; ``delta`` the modelled
    noise of one evaluation at ``x`` and ``eps`` the output dtype's machine epsilon. Returns a :class:`Stencil` (``step`` is the coarsest ``tp``).
    """
    with np.errstate(invalid="ignore", over="ignore"):
        return _combine(phi0, plus, minus, tp, tm, delta, eps, richardson)


def _combine(phi0, plus, minus, tp, tm, delta, eps, richardson):
    # The fourth difference over the equally spaced points -h, -h/2, 0, h/2, h is of order
    # h**4 times the fourth derivative for a smooth phi, far below rounding: what is left is
    # the noise of the evaluations, including cancellation inside fn that sum(|v * fn(x)|)
    # cannot see. The modelled noise also counts the values at the stencil points.
    fourth = np.abs(plus[:, 0] - 4.0 * plus[:, 1] + 6.0 * phi0 - 4.0 * minus[:, 1] + minus[:, 0])
    sampled = np.maximum(np.abs(plus), np.abs(minus)).max(axis=1)
    model = np.maximum(delta, ROUNDING_ULPS * eps * sampled)
    # One fourth difference is one sample of the noise; the median over the coordinates
    # evaluated together keeps an unluckily small sample from passing for a quiet one.
    noise = np.maximum(model, np.maximum(fourth, np.median(fourth) if fourth.size else 0.0))
    span = tp + tm
    central = (plus - minus) / span
    central_round = 2.0 * noise[:, None] / span
    right = (plus - phi0) / tp
    left = (phi0 - minus) / tm
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
    jump = np.abs(2.0 * (right[:, 1] - left[:, 1]) - (right[:, 0] - left[:, 0]))
    # The jump is that fourth difference over the coarsest step, so it is judged against
    # the modelled noise, not the sampled one (which it would always equal).
    jump_noise = 64.0 * model / np.minimum(tp[:, 0], tm[:, 0])
    size = np.maximum(np.maximum(np.abs(right[:, 1]), np.abs(left[:, 1])), np.abs(estimate))
    kink = (jump > KINK_RTOL * size) & (jump > jump_noise)
    sided = np.concatenate([left[:, :2], right[:, :2]], axis=1)
    # Widen the bracket by the rounding noise of a one-sided difference at the finest step.
    sided_round = noise / np.minimum(tp[:, 1], tm[:, 1])
    return Stencil(
        estimate=estimate,
        trunc=trunc,
        rounding=rounding,
        lo=sided.min(axis=1) - sided_round,
        hi=sided.max(axis=1) + sided_round,
        kink=kink,
        step=tp[:, 0].copy(),
    )


class PhiEvaluator:
    """Evaluates ``phi = sum(v * fn(*inputs))`` at blocks of perturbed float64 inputs.

    A block perturbs the flattened wrt inputs by rows of ``deltas`` (``{i: (B, n_i)}``).
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
        self.phi0 = float(xp.sum(weighted))
        # The modelled noise of one evaluation of phi near x.
        # (At least the spacing of subnormals, below which everything is underflow.)
        tiny = float(xp.finfo(self.out.dtype).smallest_normal) * self.eps
        self.delta = ROUNDING_ULPS * self.eps * float(xp.sum(xp.abs(weighted))) + tiny
        out_size = int(np.prod(self.out.shape))
        row_bytes = 8 * (sum(int(np.prod(x.shape)) for x in inputs) + out_size)
        # Three live copies per row: the perturbed inputs, the output, the product with v.
        self.rows_per_block = max(1, int(max_batch_bytes // (3 * row_bytes)))
        self.flat = {}

    def _flat(self, i):
        if i not in self.flat:
            self.flat[i] = self.xp.reshape(self.inputs[i], (-1,))
        return self.flat[i]

    def phi(self, rows, make_rows):
        """``phi`` at ``rows`` perturbations; ``make_rows(start, stop)`` builds a block of them.

        A block is ``{i: host float64 array (stop - start, n_i)}`` added to the flattened
        wrt inputs.
        """
        out = np.empty(rows, dtype=np.float64)
        step = self.rows_per_block
        for start in range(0, rows, step):
            stop = min(rows, start + step)
            out[start:stop] = self._phi_chunk(make_rows(start, stop))
        return out

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

    def _phi_chunk_unguarded(self, chunk):
        xp = self.xp
        device = self._device()
        moved = {i: xp.asarray(d, device=device) for i, d in chunk.items()}
        rows = next(iter(chunk.values())).shape[0]
        if self.batched:
            args = []
            for i, x in enumerate(self.inputs):
                if i in moved:
                    args.append(xp.reshape(self._flat(i)[None, :] + moved[i], (rows, *x.shape)))
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
            prod = xp.reshape(y * self.v, (rows, -1))
            return to_numpy(xp.sum(prod, axis=1))
        values = np.empty(rows, dtype=np.float64)
        for r in range(rows):
            args = list(self.inputs)
            for i, d in moved.items():
                args[i] = xp.reshape(self._flat(i) + d[r, :], self.inputs[i].shape)
            self.calls += 1
            values[r] = float(xp.sum(self.fn(*args) * self.v))
        return values

    def _device(self):
        return device_of(self.inputs[0])


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
        block = np.zeros((stop - start, n))
        block[np.arange(stop - start), columns[start:stop]] = signed[start:stop]
        return {i: block}

    values = evaluator.phi(signed.size, make_rows).reshape(idx.size, len(fr), 2)
    return combine(evaluator.phi0, values[:, :, 0], values[:, :, 1], tp, tm, evaluator.delta, evaluator.eps, richardson)


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
        return {i: t * np.stack([directions[k][i] for k in d]) for i in directions[0]}

    values = evaluator.phi(steps.size, make_rows).reshape(len(directions), len(fr), 2)
    tp = np.broadcast_to(ts, (len(directions), len(fr))).copy()
    return combine(evaluator.phi0, values[:, :, 0], values[:, :, 1], tp, tp.copy(), evaluator.delta, evaluator.eps, richardson)


def refine_elementwise(evaluator, i, x_host, richardson, first, target):
    """Step correction for the elements whose first estimate is poor; updates ``first``.

    * Elements where ``fn`` was not finite at a stencil point (a step left its domain, as
      ``sqrt`` near 0) are retried first, up to three times, with steps 1000 times smaller
      and no larger than ``|x_k|`` times the base step.
    * Kink candidates are re-examined with a step ``KINK_SHRINK`` times smaller: a real kink
      keeps its jump, a smooth curve loses it.
    * Elements whose error estimate exceeds ``target`` get the step the error model calls
      optimal, and keep whichever estimate has the smaller error.
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
    finite = np.isfinite(first.estimate)
    kinky = first.kink & finite
    poor = ~first.kink & finite & (first.error > target)
    new_step = first.step.copy()
    new_step[kinky] /= KINK_SHRINK
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = (first.rounding / (order * first.trunc)) ** (1.0 / (order + 1.0))
    factor = np.clip(np.nan_to_num(factor, nan=1.0, posinf=MAX_STEP_CHANGE), 1 / MAX_STEP_CHANGE, MAX_STEP_CHANGE)
    new_step[poor] *= factor[poor]
    redo = np.flatnonzero(kinky | poor)
    if redo.size:
        second = elementwise(evaluator, i, x_host, richardson, indices=redo, step=new_step[redo])
        # A kink candidate takes the finer look whatever it says.
        keep = first.kink[redo] | (second.error < first.error[redo])
        first.take(redo[keep], second, keep)
        redone += redo.size
    return redone
