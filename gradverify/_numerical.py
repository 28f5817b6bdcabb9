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
* Where the error estimate exceeds the target and is not already below the resolution on
  the gradient's natural scale (see below), the step is moved to the one the model says is
  best, ``h* = h * (rounding / (p * truncation))**(1/(p+1))`` for a method of order ``p``,
  twice; the result with the smaller error estimate is kept. A growing step moves at most
  ``MAX_STEP_GROWTH`` times per refinement (``MAX_STEP_CHANGE`` while no output moved),
  never past half the distance to 0, and a grown step's estimate is kept only where it
  shows no kink and agrees with the smaller step's within both error estimates: beyond the
  scale on which ``fn`` is smooth the truncation estimate is no longer honest.
* With Richardson extrapolation the error estimate holds only where ``D(h) - D(h/2)`` is
  about four times ``D(h/2) - D(h/4)``; elsewhere the error is at least the change of the
  central differences.
* Directions (``directional``) are refined the same way: they carry each element's scale,
  which can be far beyond the scale on which ``fn`` is smooth along them.

Lazy first stencil
------------------
Over a whole input (central differences, the default) the first stencil is one centered
difference ``D(h)`` per element, two evaluations, the floor of any checker. What the second
step ``h/2`` would have said is bought only where it is needed (:func:`settle_pending`):
elements whose one-sided slopes differ (kink candidates, the full stencil's own test) get
it, and the truncation of the others is bounded by probes that move ``GROUP_SIZE`` of them
at once, each by its own step, along ``GROUP_PROBES`` random sign patterns (four
evaluations per probe). A group whose truncation would exceed a fraction of what its
elements are allowed, or that shows a kink, gets the second step element by element. On
smooth, well-scaled functions this is about 2.1-2.2 evaluations per element.

Evaluations
-----------
Unbatched, one-element (and group) perturbations are made in place, in the evaluator's own
copy of each input, and undone after each call; each output is copied into a block that is
contracted with the cotangent once it holds ``BLOCK_BYTES``. A ``fn`` that changes its
argument is detected after each block, which is then evaluated again from fresh copies.

This beats a fixed ``eps``: the step follows the scale of each element and is corrected
where the function's curvature or size makes the first choice poor.

Resolution
----------
An element far below the gradient's natural size (a softmax probability of 1e-6 in a mean
cross-entropy) cannot be resolved to ``rtol`` of itself: ``phi``'s rounding is of the order
of ``eps * |phi|`` whatever the element. Its error estimate stays honest (rounding over
the step, or truncation at a larger one), and refinement stops once it is below
``REFINE_FRACTION * rtol`` of the natural size (``resolution`` of
:func:`refine_elementwise`): such an element is resolved absolutely, to a small fraction of
``rtol`` of the gradient's natural size, not relative to itself, and the verdict is meant
to judge it so. A smooth, well-scaled function needs no evaluations beyond the first
stencil's.

Kinks and rough points
----------------------
One-sided differences ``R_j = (phi(x + t_j) - phi(x)) / t_j`` and ``L_j`` likewise satisfy
``R_j - L_j ≈ phi'' t_j`` where ``phi`` is smooth and ``R_j - L_j ≈ jump`` at a kink. So
``|2 (R_1 - L_1) - (R_0 - L_0)|`` vanishes (to ``O(h^3)``) for a smooth function and equals
the jump in the derivative at a kink. A coordinate where it exceeds ``KINK_RTOL`` of the
derivative (and the rounding noise) is a candidate, examined with a ladder of one-sided
differences from a step ``KINK_SHRINK`` times smaller (:func:`settle`): a kink needs finite,
step-stable one-sided derivatives, each side settling as the step halves. Both settle and
differ: a kink, reported as the bracket of the two. Both settle and agree: smooth. A side
that does not settle (a jump in the value, whose one-sided differences grow like ``1/t``,
or noise, whose ones wander) is looked at again ``KINK_SHRINK`` times lower, up to
``LADDER_STAGES`` times; still unsettled, it is **rough** (``Stencil.rough``: NaN estimate,
infinite error, bracket ``[-inf, inf]``, kink False), not differentiable at float64's
resolution, unless the one-sided slopes at the first step were already within
``ROUGH_RTOL`` of each other (smooth at that scale, noisy below it: the first stencil
stands, its one-sided spread added to its truncation error).
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
# A kink's one-sided slopes must settle to this fraction of the larger of them and the jump.
SETTLE_RTOL = 1e-3
# Halvings of the step in the one-sided ladder that examines kink candidates, and how many
# times the ladder is moved KINK_SHRINK times lower where it does not settle.
LADDER_LEVELS = 4
LADDER_STAGES = 3
# Where the one-sided slopes do not settle, the function is rough (not differentiable at
# float64's resolution) when, at the first step, its one-sided slopes already differ by
# more than this fraction of their size; below it, it is smooth but noisy.
ROUGH_RTOL = 1e-3
# Move the step when the error estimate exceeds this fraction of the tolerance.
REFINE_FRACTION = 0.1
# Bytes of outputs a block of unbatched rows collects before they are contracted with the
# cotangent: small enough to stay in cache (larger temporaries cost page faults).
BLOCK_BYTES = 2**18
# The most the step is moved in one refinement, either way; a growing step at most
# MAX_STEP_GROWTH per refinement, so that each growth is checked at the scale it reaches.
MAX_STEP_CHANGE = 1e3
MAX_STEP_GROWTH = 32.0
# The first stencil of a whole input is one centered difference per element (two
# evaluations); its truncation error is bounded from probes that move GROUP_SIZE elements
# at once at two steps, along GROUP_PROBES sign patterns (see settle_pending): 8 / GROUP_SIZE
# evaluations per element. A group's truncation, attributed to each of its elements, must be
# below GROUP_FRACTION of what the element is allowed; else, and at kink candidates, the
# elements get the second step of their own.
GROUP_SIZE = 64
GROUP_FRACTION = 0.5
# Each group is probed along this many directions with independent random signs: a large
# term hidden by the others' cancellation along one is not hidden along both.
GROUP_PROBES = 2


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
    # Not differentiable here at float64's resolution: a jump in the value or noise, not a
    # kink (the one-sided slopes do not settle as the step shrinks). The estimate is NaN,
    # the bracket [-inf, inf] and kink False there: no value can agree with it.
    rough: np.ndarray = None
    # Measured at one step only (the lazy first stencil, see elementwise): the truncation
    # error is not known yet (infinite) until settle_pending bounds it.
    pending: np.ndarray = None

    def __post_init__(self):
        if self.rough is None:
            self.rough = np.zeros(self.estimate.shape, dtype=bool)
        if self.pending is None:
            self.pending = np.zeros(self.estimate.shape, dtype=bool)

    @property
    def error(self):
        """Truncation plus rounding; infinite while a still element awaits a larger step, and where rough."""
        return np.where(self.still | self.rough, np.inf, self.trunc + self.rounding)

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
        # The extrapolation and its error estimate hold only where the step is small enough
        # that D(h) - D(h/2) is four times D(h/2) - D(h/4) (the h**2 term dominates). Where
        # it is not (a step that leaves the function's smooth region: tanh at 0 moved by 5),
        # the error is at least the change of the central differences themselves.
        a = central[:, 0] - central[:, 1]
        b = central[:, 1] - central[:, 2]
        slack = 2.0 * (central_round[:, 0] + 5.0 * central_round[:, 1] + 4.0 * central_round[:, 2])
        off = np.abs(a - 4.0 * b) > 0.5 * np.abs(a) + slack
        trunc = np.where(off, np.maximum(trunc, np.maximum(np.abs(a), np.abs(b))), trunc)
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

    def __init__(self, fn, inputs, cotangent, *, xp, batched, max_batch_bytes, out=None):
        self.fn = fn
        self.inputs = inputs
        self.xp = xp
        self.v = cotangent
        self.batched = batched
        # The caller may have evaluated fn already. A copy: fn may return the same scratch
        # array on every call, or a view of its argument.
        self.out = xp.asarray(fn(*inputs) if out is None else out, copy=True)
        self.calls = 1
        self.eps = float(xp.finfo(self.out.dtype).eps)
        self.magnitude, self.noise_magnitude = _magnitudes(xp, self.out, cotangent)
        # The spacing of subnormals: below it everything is underflow.
        self.tiny = float(xp.finfo(self.out.dtype).smallest_normal) * self.eps
        out_size = int(np.prod(self.out.shape))
        row_bytes = 8 * (sum(int(np.prod(x.shape)) for x in inputs) + out_size)
        # Three live copies per row: the perturbed inputs, the output, the product with v.
        self.rows_per_block = max(1, int(max_batch_bytes // (3 * row_bytes)))
        # Unbatched rows made in place (one or a few elements each) only collect outputs.
        self.rows_in_place = self.rows_per_block
        if not batched:
            # fn sees one row at a time: a block only stacks perturbed inputs or collects
            # outputs, so keep it near BLOCK_BYTES (in cache; memory a small multiple of the
            # input on large arrays).
            self.rows_per_block = max(1, min(self.rows_per_block, BLOCK_BYTES // row_bytes))
            self.rows_in_place = max(1, min(1 << 16, BLOCK_BYTES // (8 * max(out_size, 1))))
        self.flat = {}
        self.host = {}
        # NumPy and CuPy assign through integer index arrays, a third of the work of the
        # array API's masked where (which array-api-strict needs).
        self.scatter = backend_name(xp) in ("numpy", "cupy")
        # Unbatched one-element perturbations are made in place, in copies of the inputs that
        # the evaluator owns, and undone after each call (see _phi_in_place): no copy of the
        # whole input per call. Cleared for good if fn is seen to change its arguments.
        self.in_place = self.scatter and not batched
        self.buffers = {}
        self.block = None
        self.flat_v = None
        self.scratch = None

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

    def size(self, i):
        """Number of elements of input ``i``."""
        return int(np.prod(self.inputs[i].shape))

    def _host(self, i):
        """The flattened input ``i`` on the host (float64 sums for in-place perturbations)."""
        if i not in self.host:
            self.host[i] = np.asarray(to_numpy(self._flat(i)), dtype=np.float64)
        return self.host[i]

    def _buffer(self, i):
        """``(array fn sees, its flat view)``: the evaluator's own copy of input ``i``."""
        if i not in self.buffers:
            xp = self.xp
            own = xp.asarray(self.inputs[i], copy=True)
            flat = xp.reshape(own, (-1,))
            self.buffers[i] = (own, flat)
        return self.buffers[i]

    def phi(self, rows, make_rows, sparse=False):
        """``phi(x') - phi(x)`` at ``rows`` perturbations, and ``sum(|v * fn(x')|)`` over the
        outputs each one changed; ``make_rows(start, stop)`` builds a block of them.

        A block is ``{i: OneHot, Sparse or Dense}``, the rows of perturbations of the flattened
        wrt input ``i``; ``sparse`` says that they are OneHot or Sparse (unbatched, they are
        made in place and a block only collects outputs).
        """
        diff = np.empty(rows, dtype=np.float64)
        moved = np.empty(rows, dtype=np.float64)
        step = self.rows_in_place if sparse and self.in_place else self.rows_per_block
        for start in range(0, rows, step):
            stop = min(rows, start + step)
            diff[start:stop], moved[start:stop] = self._phi_chunk(make_rows(start, stop))
        return diff, moved

    def _phi_chunk(self, chunk):
        # A step may leave fn's domain (sqrt near 0): NumPy's warnings about it are expected,
        # and the non-finite values they produce are handled by refinement.
        with np.errstate(all="ignore"):
            return self._phi_chunk_unguarded(chunk)

    def _call_fn(self, *args):
        """``fn`` at a perturbed point; only fn itself runs inside the user-error handler."""
        self.calls += 1
        try:
            y = self.fn(*args)
        except GradVerifyError:
            raise
        except Exception as exc:
            msg = f"fn raised {type(exc).__name__} at a perturbed point of the finite differences: {exc}"
            raise UserFunctionError(msg) from exc
        if not hasattr(y, "shape"):
            raise UserFunctionError(f"fn returned a {type(y).__name__} at a perturbed point of the finite differences, an array at x")
        return y

    def _contract(self, y, rows):
        """Row sums of ``v * (y - out)`` and of ``|v| * max(|out|, 1)`` where ``y`` differs from ``out``.

        The second is the size the noise model weighs (:meth:`noise`); a perturbed output is
        ``out`` to within the step's effect, so ``out`` stands for it (NaN where the first is
        not finite). Written so that at most about three output-sized temporaries live at once.
        """
        xp = self.xp
        if self.flat_v is None:
            self.flat_v = xp.reshape(self.v, (-1,))
            self.flat_out = xp.reshape(self.out, (-1,))
        y = xp.reshape(y, (rows, -1))
        if isinstance(y, np.ndarray) and isinstance(self.flat_out, np.ndarray):
            return self._contract_numpy(y, rows)
        d = y - self.flat_out
        diff = xp.sum(d * self.flat_v, axis=1)
        weight = xp.maximum(xp.abs(self.flat_out), 1.0) * xp.abs(self.flat_v)
        moved = np.array(to_numpy(xp.sum(xp.where(d != 0, weight, 0.0), axis=1)), dtype=np.float64)
        diff = np.array(to_numpy(diff), dtype=np.float64)
        moved[~np.isfinite(diff)] = np.nan  # a non-finite output has no size to model
        return diff, moved

    def _contract_numpy(self, y, rows):
        """:meth:`_contract` over column blocks of about ``BLOCK_BYTES``, in scratch arrays the
        evaluator keeps: no output-sized temporaries (they cost page faults, and on a large
        output each one is another copy of it). An output of one block sums as before."""
        width = y.shape[1]
        cols = max(1, min(width, BLOCK_BYTES // (8 * rows)))
        if self.scratch is None or self.scratch[0].size < rows * cols or self.scratch[1].size < cols:
            self.scratch = (np.empty(rows * cols), np.empty(cols), np.empty(cols))
        v = np.asarray(self.flat_v, dtype=np.float64)
        diff = np.zeros(rows)
        moved = np.zeros(rows)
        for start in range(0, width, cols):
            stop = min(width, start + cols)
            work = self.scratch[0][: rows * (stop - start)].reshape(rows, -1)
            weight, absv = self.scratch[1][: stop - start], self.scratch[2][: stop - start]
            d = np.subtract(y[:, start:stop], self.flat_out[start:stop], out=work)
            diff += d @ v[start:stop]  # a BLAS matrix-vector product: a third of einsum's time
            np.not_equal(d, 0.0, out=work)  # 1.0 where the output changed
            np.abs(self.flat_out[start:stop], out=weight)
            np.maximum(weight, 1.0, out=weight)
            weight *= np.abs(v[start:stop], out=absv)
            moved += work @ weight
        moved[~np.isfinite(diff)] = np.nan  # a non-finite output has no size to model
        return diff, moved

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
            y = self._call_fn(*args)
            if tuple(y.shape) != (rows, *self.out.shape):
                msg = (
                    f"batched=True, but fn mapped inputs with a leading batch axis of {rows} to shape"
                    f" {tuple(y.shape)}, not {(rows, *self.out.shape)}; pass batched=False or make fn map the batch axis"
                )
                raise InvalidArgument(msg)
            return self._contract(y, rows)
        if self.in_place and all(isinstance(entry, (OneHot, Sparse)) for entry in chunk.values()):
            got = self._phi_in_place(chunk, rows)
            if got is not None:
                return got
        outs = []
        for r in range(rows):
            args = list(self.inputs)
            for i, entry in chunk.items():
                args[i] = xp.reshape(self._perturbed(i, entry.row(r), device)[0, ...], self.inputs[i].shape)
            y = self._call_fn(*args)
            self._check_shape(y)
            outs.append(y)
        # One row (large inputs) needs no stacked copy of its output.
        return self._contract(xp.reshape(outs[0], (1, *self.out.shape)) if rows == 1 else xp.stack(outs), rows)

    def _check_shape(self, y):
        if y.shape != self.out.shape and tuple(y.shape) != tuple(self.out.shape):
            msg = f"fn returned shape {tuple(y.shape)} at a perturbed point of the finite differences but {tuple(self.out.shape)} at x; its output shape must not depend on the input's values"
            raise UserFunctionError(msg)

    def _phi_in_place(self, chunk, rows):
        """One-element perturbations made in the evaluator's own copies of the inputs and undone
        after each call; each output is copied into a preallocated block before the next
        perturbation (fn may return a view of its argument, or the same array every call).

        Returns None, and stops working in place for good, where fn changed its arguments: the
        block is then evaluated again from fresh copies, as fn would see them from the caller.
        """
        xp = self.xp
        if self.block is None or self.block.shape[0] < rows:
            self.block = xp.empty((max(rows, self.rows_in_place), *self.out.shape), dtype=self.out.dtype, device=device_of(self.out))
        block = self.block
        args = list(self.inputs)
        plan = []
        for i, entry in chunk.items():
            own, flat = self._buffer(i)
            args[i] = own
            host = self._host(i)
            if isinstance(entry, OneHot):
                columns = entry.columns.tolist()
                plan.append((flat, columns, (host[entry.columns] + entry.deltas).tolist(), host[entry.columns].tolist()))
            else:
                device = device_of(own)
                columns = [xp.asarray(c, device=device) for c in entry.columns]
                values = [xp.asarray(host[c] + d, device=device) for c, d in zip(entry.columns, entry.deltas)]
                plan.append((flat, columns, values, [xp.asarray(host[c], device=device) for c in entry.columns]))
        call, check = self._call_fn, self._check_shape
        try:
            if len(plan) == 1:  # the usual case, with less Python per call
                flat, columns, values, originals = plan[0]
                for r in range(rows):
                    flat[columns[r]] = values[r]
                    y = call(*args)
                    check(y)
                    block[r] = y
                    flat[columns[r]] = originals[r]
            else:
                for r in range(rows):
                    for flat, columns, values, _ in plan:
                        flat[columns[r]] = values[r]
                    y = call(*args)
                    check(y)
                    block[r] = y
                    for flat, columns, _, originals in plan:
                        flat[columns[r]] = originals[r]
        finally:
            intact = all(bool(xp.all(self._buffer(i)[0] == self.inputs[i])) for i in chunk)
            if not intact:
                self.in_place = False
                self.buffers = {}
        if not intact:
            return None
        return self._contract(block[:rows, ...], rows)

    def _perturbed(self, i, entry, device):
        """The flattened input ``i`` perturbed by each row of ``entry``: ``(rows, n_i)``."""
        xp = self.xp
        flat = self._flat(i)[None, :]
        if isinstance(entry, Sparse):
            if not self.scatter:
                return flat + xp.asarray(entry.dense(flat.shape[1]), device=device)
            rows = xp.asarray(xp.broadcast_to(flat, (len(entry), flat.shape[1])), copy=True)
            for r, (c, d) in enumerate(zip(entry.columns, entry.deltas)):
                c = xp.asarray(c, device=device)
                rows[r, c] = flat[0, c] + xp.asarray(d, device=device)
            return rows
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
        # Dense rows are made for one call: the input is added to them in place.
        rows = xp.asarray(entry.deltas, device=device)
        rows += flat
        return rows


def _magnitudes(xp, out, v):
    """``(sum(|v * out|), sum(|v| * max(|out|, 1)))``, through one output-sized buffer where
    the library writes in place (NumPy, CuPy): on a large output every temporary is another
    copy of it."""
    if isinstance(out, np.ndarray) and isinstance(v, np.ndarray):
        work = np.asarray(np.multiply(out, v), dtype=np.float64)  # a 0-d product is a scalar: make it an array
        magnitude = float(np.sum(np.abs(work, out=work)))
        np.abs(out, out=work)
        np.maximum(work, 1.0, out=work)
        np.multiply(work, v, out=work)
        return magnitude, float(np.sum(np.abs(work, out=work)))
    weighted = xp.abs(out * v)
    magnitude = float(xp.sum(weighted))
    del weighted
    return magnitude, float(xp.sum(xp.maximum(xp.abs(out), 1.0) * xp.abs(v)))


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
class Sparse:
    """Rows that each shift a few elements (``columns[r]``, an index array) by ``deltas[r]``."""

    columns: list
    deltas: list

    def __len__(self):
        return len(self.columns)

    def row(self, r):
        return Sparse(self.columns[r : r + 1], self.deltas[r : r + 1])

    def dense(self, n):
        out = np.zeros((len(self), n))
        for r, (c, d) in enumerate(zip(self.columns, self.deltas)):
            out[r, c] = d
        return out


@dataclass
class Dense:
    """Rows of dense perturbations ``deltas`` (``(rows, n)``), made for one evaluation: the
    evaluator adds the input to them in place (on a large input, no second copy)."""

    deltas: np.ndarray

    def __len__(self):
        return self.deltas.shape[0]

    def row(self, r):
        return Dense(self.deltas[r : r + 1])


def _evaluate_elementwise(evaluator, i, idx, tp, tm):
    """``phi(x ± t) - phi(x)`` for element ``idx[r]`` at the actual steps ``tp``/``tm`` (``(n, J)``)."""
    n, levels = tp.shape
    # Row layout: for each element, +t_0, -t_0, +t_1, -t_1, ...
    signed = np.stack([tp, -tm], axis=2).reshape(-1)
    columns = np.repeat(idx, 2 * levels)

    def make_rows(start, stop):
        return {i: OneHot(columns[start:stop], signed[start:stop])}

    diff, moved = evaluator.phi(signed.size, make_rows, sparse=True)
    diff = diff.reshape(n, levels, 2)
    return diff[:, :, 0], diff[:, :, 1], moved.reshape(n, -1).max(axis=1)


def _evaluate_directional(evaluator, directions, ts):
    """``phi(x ± t d_r) - phi(x)`` for direction ``r`` at the steps ``ts`` (``(n, J)``)."""
    n, levels = ts.shape
    signed = np.stack([ts, -ts], axis=2).reshape(-1)
    which = np.repeat(np.arange(n), 2 * levels)

    def make_rows(start, stop):
        # Each row built in place: a direction over a large input is one copy of it at a time.
        rows = {}
        for i in directions[0]:
            deltas = np.empty((stop - start, evaluator.size(i)))
            for r, k in enumerate(which[start:stop]):
                np.multiply(directions[k][i], signed[start + r], out=deltas[r])
            rows[i] = Dense(deltas)
        return rows

    diff, moved = evaluator.phi(signed.size, make_rows)
    diff = diff.reshape(n, levels, 2)
    return diff[:, :, 0], diff[:, :, 1], moved.reshape(n, -1).max(axis=1)


def elementwise(evaluator, i, x_host, richardson, indices=None, step=None, *, lazy=True):
    """Finite differences of ``phi`` with respect to each element of wrt input ``i``.

    ``x_host`` is the flattened float64 input on the host. ``indices`` restricts to some
    elements and ``step`` overrides the first step per element (both used by refinement).
    With ``lazy`` (central differences only) each element gets one centered difference at
    its first step, two evaluations, and is ``pending``: its truncation error is unknown
    (infinite) until :func:`refine_elementwise` bounds it (:func:`settle_pending`).
    Otherwise every element gets the full stencil.
    """
    n = x_host.size
    idx = np.arange(n) if indices is None else indices
    if step is None:
        base = BASE_STEP_RICHARDSON if richardson else BASE_STEP
        step = base * step_scale(x_host)[idx]
    if lazy and not richardson:
        return _first_level(evaluator, i, x_host, idx, step)
    fr = fractions(richardson)
    xk = x_host[idx]
    tp = np.empty((idx.size, len(fr)))
    tm = np.empty_like(tp)
    for j, f in enumerate(fr):
        tp[:, j], tm[:, j] = actual_steps(xk, step * f)
    plus, minus, moved = _evaluate_elementwise(evaluator, i, idx, tp, tm)
    return combine(plus, minus, tp, tm, evaluator.noise(moved), richardson, moved == 0)


def _first_level(evaluator, i, x_host, idx, step):
    """One centered difference per element at ``step``: a pending :class:`Stencil`."""
    tp, tm = actual_steps(x_host[idx], step)
    plus, minus, moved = _evaluate_elementwise(evaluator, i, idx, tp[:, None], tm[:, None])
    plus, minus = plus[:, 0], minus[:, 0]
    model = evaluator.noise(moved)
    with np.errstate(invalid="ignore", over="ignore"):
        span = tp + tm
        right, left = plus / tp, -minus / tm
        sided_round = model / np.minimum(tp, tm)
        st = Stencil(
            estimate=(plus - minus) / span,
            trunc=np.full(idx.size, np.inf),
            rounding=2.0 * model / span,
            lo=np.minimum(left, right) - sided_round,
            hi=np.maximum(left, right) + sided_round,
            kink=np.zeros(idx.size, dtype=bool),
            step=tp.copy(),
            still=moved == 0,
            pending=np.ones(idx.size, dtype=bool),
        )
    st.level0 = {"plus": plus, "minus": minus, "tp": tp, "tm": tm, "moved": moved, "nominal": np.asarray(step, dtype=np.float64) * np.ones(idx.size)}
    return st


def settle_pending(evaluator, i, x_host, first, allowed):
    """Bound the truncation error of the pending elements of ``first`` (updates it); returns how
    many elements got the second step of their own.

    A centered difference at one step ``h`` says nothing about its truncation error
    ``h**2 * phi_kkk / 6``, nor whether the one-sided slopes differ because of curvature or a
    kink. So:

    * **Kink candidates**, where the one-sided slopes ``R = (phi(x + h) - phi(x)) / h`` and
      ``L`` differ by more than ``KINK_RTOL`` of their size (and the noise), elements where
      no output moved, and elements whose modelled rounding alone is too large, get the
      second step ``h/2`` of their own: the full stencil of :func:`combine`, as if computed
      eagerly.
    * The others are probed in groups of ``GROUP_SIZE``: a direction ``u`` that moves each
      element of the group by its own step, with random signs, gets a centered difference at
      ``t = 1`` and ``t = 1/2`` (four evaluations), along ``GROUP_PROBES`` independent sign
      patterns. Its truncation at ``t = 1``, ``T = 4 |C(1) - C(1/2)| / 3``, holds each
      element's own term ``+-h_k * tau_k`` (plus the cross terms of the group), so ``T / h_k``
      bounds element ``k``'s truncation unless terms cancel, which independent signs make
      unlikely along both directions. Where the larger ``T / h_k`` is below
      ``GROUP_FRACTION`` of what the element is ``allowed``, and the group shows no kink along
      either, it is the element's truncation error; otherwise the group's elements get the
      second step of their own.
    * The rounding of an element probed in a group comes from its modelled noise ``m_k`` and
      the group's sampled noise ``s`` (its fourth difference, as in :func:`combine`) over the
      group's model ``m``: ``max(m_k, s * sqrt(m_k / m))``. Noise adds in quadrature over the
      outputs a step moves, which the models weigh: a group that moves 16 outputs of an
      elementwise op has four times the noise of one element, one that moves the single
      output of a mean the same.
    """
    pend = np.flatnonzero(first.pending)
    if not pend.size:
        return 0
    data = {k: v[pend] for k, v in first.level0.items()}
    tp, tm, h = data["tp"], data["tm"], data["nominal"]
    model = evaluator.noise(data["moved"])
    allowed = np.broadcast_to(np.asarray(allowed, dtype=np.float64), first.estimate.shape)[pend]
    with np.errstate(invalid="ignore", over="ignore"):
        right, left = data["plus"] / tp, -data["minus"] / tm
        central = first.estimate[pend]
        jump = np.abs(right - left)
        jump_noise = 64.0 * model / np.minimum(tp, tm)
        size = np.maximum(np.maximum(np.abs(right), np.abs(left)), np.abs(central))
        own = (jump > KINK_RTOL * size) & (jump > jump_noise)
        own |= (data["moved"] == 0) | ~np.isfinite(central) | ~(first.rounding[pend] <= GROUP_FRACTION * allowed)
    rest = np.flatnonzero(~own)
    if rest.size:
        flagged, trunc, ratio = _probe_groups(evaluator, i, x_host, pend[rest], h[rest], allowed[rest])
        own[rest[flagged]] = True
        ok = rest[~flagged]
        k = pend[ok]
        noise = np.maximum(model[ok], ratio[~flagged] * np.sqrt(model[ok]))
        first.trunc[k] = trunc[~flagged]
        first.rounding[k] = 2.0 * noise / (tp[ok] + tm[ok])
        sided_round = noise / np.minimum(tp[ok], tm[ok])
        lo, hi = np.minimum(right[ok], left[ok]), np.maximum(right[ok], left[ok])
        first.lo[k], first.hi[k] = lo - sided_round, hi + sided_round
        first.pending[k] = False
    esc = np.flatnonzero(own)
    if esc.size:
        idx = pend[esc]
        tp1, tm1 = actual_steps(x_host[idx], h[esc] * 0.5)
        plus1, minus1, moved1 = _evaluate_elementwise(evaluator, i, idx, tp1[:, None], tm1[:, None])
        moved = np.maximum(data["moved"][esc], moved1)
        full = combine(
            np.stack([data["plus"][esc], plus1[:, 0]], axis=1),
            np.stack([data["minus"][esc], minus1[:, 0]], axis=1),
            np.stack([tp[esc], tp1], axis=1),
            np.stack([tm[esc], tm1], axis=1),
            evaluator.noise(moved),
            False,
            moved == 0,
        )
        first.take(idx, full, np.ones(idx.size, dtype=bool))
    first.pending[pend] = False
    return int(esc.size)


def _probe_groups(evaluator, i, x_host, idx, h, allowed):
    """Group probes of :func:`settle_pending` for elements ``idx`` with nominal steps ``h``:
    ``(flagged, truncation, s / sqrt(m))`` per element (its group's sampled noise over the
    square root of the group's modelled noise)."""
    n = idx.size
    rng = np.random.default_rng([0x6EAD, n])
    order = rng.permutation(n)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(GROUP_PROBES, n))
    groups = np.array_split(order, max(1, -(-n // GROUP_SIZE)))
    columns, deltas = [], []
    for g in groups:
        c, x = idx[g], x_host[idx[g]]
        steps = [actual_steps(x, h[g] * t) for t in (1.0, 0.5)]
        for sg in signs[:, g]:
            for tp, tm in steps:
                columns += [c, c]
                deltas += [np.where(sg > 0, tp, -tm), np.where(sg > 0, -tm, tp)]

    def make_rows(start, stop):
        return {i: Sparse(columns[start:stop], deltas[start:stop])}

    diff, moved = evaluator.phi(len(columns), make_rows, sparse=True)
    probes = len(groups) * GROUP_PROBES
    diff = diff.reshape(probes, 2, 2)
    moved = moved.reshape(probes, -1).max(axis=1)
    plus, minus = diff[:, :, 0], diff[:, :, 1]
    ts = np.tile(np.array([1.0, 0.5]), (probes, 1))
    model = evaluator.noise(moved)
    gs = combine(plus, minus, ts, ts.copy(), model, False, moved == 0)
    with np.errstate(invalid="ignore", over="ignore"):
        fourth = np.abs(plus[:, 0] - 4.0 * plus[:, 1] - 4.0 * minus[:, 1] + minus[:, 0])
        sampled = 2.0 * np.maximum(fourth, np.median(fourth))
        ratio_g = np.nan_to_num(sampled / np.sqrt(model), nan=np.inf).reshape(-1, GROUP_PROBES).max(axis=1)
        # Of the centered difference at t = 1, each element's own step; the larger of the probes.
        trunc_p = 4.0 * gs.trunc
        trunc_g = np.where(np.isnan(trunc_p), np.inf, trunc_p).reshape(-1, GROUP_PROBES).max(axis=1)
        budget_g = np.array([np.min(h[g] * allowed[g]) for g in groups])
        bad_p = gs.kink | gs.still | ~np.isfinite(gs.estimate)
        bad_g = bad_p.reshape(-1, GROUP_PROBES).any(axis=1) | ~(trunc_g <= GROUP_FRACTION * budget_g)
    flagged = np.empty(n, dtype=bool)
    trunc = np.empty(n)
    ratio = np.empty(n)
    for k, g in enumerate(groups):
        flagged[g] = bad_g[k]
        trunc[g] = trunc_g[k] / h[g]
        ratio[g] = ratio_g[k]
    return flagged, trunc, ratio


def _ladder_steps(t0, levels=LADDER_LEVELS):
    return t0[:, None] * 0.5 ** np.arange(levels)[None, :]


def settle(plus, minus, tp, tm, model, richardson, base):
    """Classify kink candidates from one-sided differences at halving steps (``(n, J)``).

    ``R_j = (phi(x + t_j) - phi(x)) / t_j`` (and ``L_j`` on the left) are first order in
    ``t_j``: their extrapolations ``R*_j = (r R_{j+1} - R_j) / (r - 1)`` (``r = t_j /
    t_{j+1}``) converge to the one-sided derivatives with an error of order ``t_j**2``.

    * Both sides settle (successive ``R*_j`` agree within ``SETTLE_RTOL`` of the larger of
      the one-sided values and their jump, plus their rounding) and differ: a kink, with the
      bracket of the two settled values widened by how far they moved.
    * Both settle and agree: smooth; the central differences of the first levels stand.
    * A side does not settle: the value jumps (one-sided differences growing like ``1/t``)
      or is noisy (wandering ones). Where ``base``, the candidate's stencil at the first
      step, already had one-sided slopes more than ``ROUGH_RTOL`` apart it is rough (not
      differentiable at float64's resolution: NaN estimate, infinite error); else the
      function is differentiable at the scale of ``base``, noisy below it, and ``base``
      stands with the spread of its one-sided slopes added to its truncation error.
    """
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        levels = 3 if richardson else 2
        smooth = combine(plus[:, :levels], minus[:, :levels], tp[:, :levels], tm[:, :levels], model, richardson, np.zeros(model.shape, dtype=bool))
        r_star, r_dev, r_round = _one_sided(plus, tp, model)
        l_star, l_dev, l_round = _one_sided(-minus, tm, model)
        ref = np.maximum(np.maximum(np.abs(r_star), np.abs(l_star)), np.abs(r_star - l_star))
        settled = (r_dev <= SETTLE_RTOL * ref + r_round) & (l_dev <= SETTLE_RTOL * ref + l_round)
        settled &= np.isfinite(r_star) & np.isfinite(l_star)
        widen = r_dev + l_dev + r_round + l_round
        jump = np.abs(r_star - l_star)
        kink = settled & (jump > KINK_RTOL * np.maximum(np.abs(r_star), np.abs(l_star))) & (jump > 2.0 * widen)
        spread = base.hi - base.lo
        size = np.maximum(np.abs(base.lo), np.abs(base.hi))
        unsettled = ~settled & np.isfinite(smooth.estimate)
        rough = unsettled & ~(spread <= ROUGH_RTOL * size)
        noisy = unsettled & ~rough
    out = smooth
    out.kink = kink
    out.lo = np.where(kink, np.minimum(r_star, l_star) - widen, out.lo)
    out.hi = np.where(kink, np.maximum(r_star, l_star) + widen, out.hi)
    for name in ("estimate", "trunc", "rounding", "lo", "hi", "step"):
        getattr(out, name)[noisy] = getattr(base, name)[noisy]
    out.trunc[noisy] = np.maximum(out.trunc[noisy], spread[noisy])
    out.kink[noisy] = False
    out.estimate[rough] = np.nan
    out.lo[rough], out.hi[rough] = -np.inf, np.inf
    out.rough = rough
    return out, settled


def _one_sided(diff, t, model):
    """Settled value of one-sided differences ``diff / t`` over halving ``t``: ``(value, moved, rounding)``."""
    slope = diff / t
    ratio = t[:, :-1] / t[:, 1:]
    star = (ratio * slope[:, 1:] - slope[:, :-1]) / (ratio - 1.0)
    noise = model[:, None] / t
    star_round = (ratio * noise[:, 1:] + noise[:, :-1]) / (ratio - 1.0)
    moved = np.abs(np.diff(star, axis=1))
    allowed = 2.0 * (star_round[:, 1:] + star_round[:, :-1])
    # How far the extrapolations moved beyond their rounding, at worst over the ladder.
    dev = np.max(np.maximum(moved - allowed, 0.0), axis=1)
    dev = np.where(np.isfinite(moved).all(axis=1), dev, np.inf)
    return star[:, -1], dev, 2.0 * star_round[:, -1]


def _examine(ladder, base, richardson, noise):
    """Run the one-sided ladder from ``base.step / KINK_SHRINK`` and, where it does not settle,
    again from steps ``KINK_SHRINK`` times smaller, up to ``LADDER_STAGES`` times: a first
    step far beyond the scale on which ``fn`` is smooth (an element at 0 of an input whose
    rms is 1e4) needs more than one shrink. What has not settled by then is rough or noisy.

    ``ladder(idx, t0)`` returns ``plus, minus, tp, tm, moved`` for the entries ``idx``, and
    ``noise(moved)`` models their rounding (:meth:`PhiEvaluator.noise`).
    """
    n = base.step.size
    todo = np.arange(n)
    t0 = base.step / KINK_SHRINK
    out = None
    for stage in range(LADDER_STAGES):
        plus, minus, tp, tm, moved = ladder(todo, t0[todo])
        got, settled = settle(plus, minus, tp, tm, noise(moved), richardson, _subset(base, todo))
        got.still = (moved == 0) & ~got.rough
        if out is None:
            out = got
        else:
            out.take(todo, got, np.ones(todo.size, dtype=bool))
        todo = todo[~settled & np.isfinite(got.estimate) | got.rough]
        if not todo.size:
            break
        t0 = t0 / KINK_SHRINK
    return out


def examine_elementwise(evaluator, i, x_host, richardson, indices, base):
    """The one-sided ladder (see :func:`settle`, :func:`_examine`) for elements ``indices``."""
    def ladder(idx, t0):
        xk = x_host[indices[idx]]
        ts = _ladder_steps(t0)
        tp = np.empty_like(ts)
        tm = np.empty_like(ts)
        for j in range(ts.shape[1]):
            tp[:, j], tm[:, j] = actual_steps(xk, ts[:, j])
        plus, minus, moved = _evaluate_elementwise(evaluator, i, indices[idx], tp, tm)
        return plus, minus, tp, tm, moved

    return _examine(ladder, base, richardson, evaluator.noise)


def directional(evaluator, directions, richardson, t0=None, target=None):
    """Finite differences of ``t -> phi(x + t d)`` at 0 for each direction ``d``.

    ``directions`` is a list of ``{i: flat float64 host array}``; steps are taken in ``t``
    (the directions already carry each element's scale, which may be far larger than the
    scale on which ``fn`` is smooth along them: an element at 0 moves by the input's rms).
    So, as for elements, kink candidates are examined with the one-sided ladder
    (:func:`settle`), and a direction whose error estimate exceeds ``target`` (default
    ``REFINE_FRACTION * 1e-7`` of its estimate) gets the step the error model calls optimal,
    keeping whichever estimate is more accurate (:func:`_refine_steps`).
    """
    if t0 is None:
        t0 = BASE_STEP_RICHARDSON if richardson else BASE_STEP
    n = len(directions)
    t0 = np.broadcast_to(np.asarray(t0, dtype=np.float64), (n,)).copy()

    def run(idx, t):
        ts = t[:, None] * np.array(fractions(richardson))[None, :]
        plus, minus, moved = _evaluate_directional(evaluator, [directions[k] for k in idx], ts)
        # A direction that moves no output has a derivative of 0 within the noise bound.
        return combine(plus, minus, ts, ts.copy(), evaluator.noise(moved), richardson, np.zeros(moved.shape, dtype=bool))

    def examine(idx, base):
        def ladder(sub, t):
            ts = _ladder_steps(t)
            plus, minus, moved = _evaluate_directional(evaluator, [directions[k] for k in idx[sub]], ts)
            return plus, minus, ts, ts.copy(), moved

        return _examine(ladder, base, richardson, evaluator.noise)

    first = run(np.arange(n), t0)
    if target is None:
        target = REFINE_FRACTION * 1e-7 * np.abs(first.estimate)
    _refine_steps(first, run, examine, richardson, target, np.full(n, np.inf))
    return first


def refine_elementwise(evaluator, i, x_host, richardson, first, target, resolution=None):
    """Step correction for the elements whose first estimate is poor; updates ``first``.

    * Elements where ``fn`` was not finite at a stencil point (a step left its domain, as
      ``sqrt`` near 0) are retried first, up to three times, with steps 1000 times smaller
      and no larger than ``|x_k|`` times the base step.
    * Kink candidates are examined with the one-sided ladder (:func:`settle`) from a step
      ``KINK_SHRINK`` times smaller: a real kink keeps its jump with settled one-sided
      slopes, a smooth curve loses it, a jump in the value or noise is rough.
    * Elements whose error estimate exceeds both ``target`` and ``resolution`` get the step
      the error model calls optimal (:func:`_refine_steps`). ``resolution`` is the absolute
      error below which an element is resolved on the gradient's natural scale (the verdict
      then judges it absolutely); by default ``REFINE_FRACTION * 1e-7`` (float64's rtol)
      times :func:`gradient_size`.
    Returns the number of elements re-evaluated.
    """
    redone = 0
    base = BASE_STEP_RICHARDSON if richardson else BASE_STEP
    for _ in range(3):
        redo = np.flatnonzero(~np.isfinite(first.estimate) & ~first.rough)
        if not redo.size:
            break
        xk = np.abs(x_host[redo])
        step = first.step[redo] / 1e3
        step = np.where(xk > 0, np.minimum(step, base * xk), step)
        second = elementwise(evaluator, i, x_host, richardson, indices=redo, step=step, lazy=False)
        first.take(redo, second, np.ones(redo.size, dtype=bool))
        redone += redo.size
    if resolution is None:
        resolution = REFINE_FRACTION * 1e-7 * gradient_size(first.estimate)
    redone += settle_pending(evaluator, i, x_host, first, np.maximum(target, resolution))
    # A growing step stops at half the distance to 0, where most kinks and domain edges lie.
    bound = np.where(x_host != 0, np.abs(x_host) / 2, np.inf)

    def run(idx, step):
        return elementwise(evaluator, i, x_host, richardson, indices=idx, step=step, lazy=False)

    def examine(idx, cand):
        return examine_elementwise(evaluator, i, x_host, richardson, idx, cand)

    redone += _refine_steps(first, run, examine, richardson, np.maximum(target, resolution), bound)
    # Still no output moved, even at the largest step tried: the derivative is below what
    # float64 shows there, and the noise bound of that step is its error.
    first.still[:] = False
    return redone


def gradient_size(estimate):
    """The gradient's own size for the resolution rule: its largest finite estimate.

    Taken from the gradient alone, never from ``fn``'s value (``sum(|v * fn|)``): a large
    constant in ``fn`` would otherwise stop refinement early and widen the resolution.
    """
    finite = np.abs(estimate[np.isfinite(estimate)])
    return float(finite.max()) if finite.size else 0.0


def _subset(st, idx):
    return Stencil(**{name: getattr(st, name)[idx].copy() for name in st.__dataclass_fields__})


def _refine_steps(first, run, examine, richardson, target, bound):
    """Kink candidates to the ladder, then up to two step corrections; updates ``first``.

    ``run(idx, step)`` makes a stencil for entries ``idx`` at first steps ``step``,
    ``examine(idx, candidates)`` the ladder. The corrected step is ``h * (rounding / (p *
    truncation)) ** (1 / (p + 1))``, between ``1 / MAX_STEP_CHANGE`` and ``MAX_STEP_GROWTH``
    times ``h`` (``MAX_STEP_CHANGE`` for a still entry, where nothing moved), and a growing
    step at most ``bound``. A growing step may leave the region where ``fn`` is smooth on its
    scale, where the truncation estimate is no longer honest, so its estimate is kept only
    where it shows no kink and agrees with the smaller step's within both error estimates;
    otherwise, and where the new estimate is less accurate, the old one stands.
    """
    redone = 0
    kinky = np.flatnonzero(first.kink & np.isfinite(first.estimate))
    if kinky.size:
        first.take(kinky, examine(kinky, _subset(first, kinky)), np.ones(kinky.size, dtype=bool))
        redone += kinky.size
    order = 4.0 if richardson else 2.0
    for _ in range(2):
        finite = np.isfinite(first.estimate)
        error = first.error
        poor = ~first.kink & ~first.rough & finite & (error > target)
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = (first.rounding / (order * first.trunc)) ** (1.0 / (order + 1.0))
        factor = np.nan_to_num(factor, nan=1.0, posinf=MAX_STEP_CHANGE)
        factor = np.clip(factor, 1 / MAX_STEP_CHANGE, np.where(first.still, MAX_STEP_CHANGE, MAX_STEP_GROWTH))
        new_step = first.step * factor
        grown = new_step > first.step
        new_step = np.where(grown, np.maximum(first.step, np.minimum(new_step, bound)), new_step)
        redo = np.flatnonzero(poor & (new_step != first.step))
        if not redo.size:
            break
        second = run(redo, new_step[redo])
        old_est, old_err = first.estimate[redo], error[redo]
        with np.errstate(invalid="ignore"):
            agree = np.abs(second.estimate - old_est) <= 2.0 * (second.error + old_err)
        grew = second.step > first.step[redo]
        keep = (second.error < old_err) & ~second.kink & ~second.rough & (~grew | agree | first.still[redo])
        first.take(redo[keep], second, keep)
        redone += redo.size
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
        estimates.append(elementwise(evaluator, i, x_host, richardson, indices=indices, step=first.step[indices] * factor, lazy=False).estimate)
    estimates = np.array(estimates)
    with np.errstate(invalid="ignore"):
        spread = np.nanmax(estimates, axis=0) - np.nanmin(estimates, axis=0)
    first.trunc[indices] = np.maximum(first.trunc[indices], np.nan_to_num(spread, nan=np.inf))
