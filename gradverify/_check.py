"""``check_vjp`` and its conventions: structural checks, then evidence, then one arbiter per input.

Defaults (documented in the README as well):

* ``mode="auto"``: full (every element) when the differentiated inputs hold at most
  ``FULL_MODE_MAX`` elements, else directional.
* ``truth="auto"``: in full mode, *lazy* when all inputs together hold at most
  ``TRUTH_DIRECTIONAL_MAX`` elements: the finite differences come first, and an element
  where they settle the verdict on their own (:func:`gradverify._verdict.conclusive`: the
  analytic value within ``rtol`` of every value the difference's error bound allows) gets
  no truth of its own. On inputs of at most ``TRUTH_ELEMENTWISE_MAX`` differentiated
  elements every other element (disputed, uncertain, at a kink, rough) gets the truth per
  element; on larger ones the disputed elements do, as many as :func:`_spot_budget`
  allows. Then ``LAZY_DIRECTIONS`` random direction(s) over the elements without a truth of
  their own (kinks left out) get the directional truth: the sanity check that catches a
  gradient the differences happened to agree with. In directional mode, along the random
  directions up to ``TRUTH_DIRECTIONAL_MAX``; off beyond that, with the reason in the
  report. When the function cannot run on mpmath arrays, ``auto`` records why and goes
  on without a truth; an explicit ``truth="elementwise"`` (every element) or
  ``"directional"`` raises instead.

The flow: :func:`gradverify._structural.inspect` returns findings; the finite differences
(:mod:`gradverify._numerical`) and the truth (:mod:`gradverify._truth`) produce estimates;
:func:`gradverify._arbiter.arbitrate` judges each input, asking :class:`_Sources` for more
evidence a bounded number of times. Every call of ``fn`` and ``vjp`` is counted where it is
made (the evaluation counts in the result are real) and checked against the time budget.
"""

import dataclasses
import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from gradverify import _arbiter, _backend, _explore, _gate, _highprec, _numerical, _power, _structural, _ties, _tolerances, _verdict
from gradverify._errors import CheckBudgetExceeded, GradVerifyError, HighPrecisionUnavailable, InvalidArgument, UserFunctionError, asserting
from gradverify._options import DEFAULT_DPS, DEFAULT_TIME_BUDGET, CheckOptions
from gradverify._reproduce import importable, reproduce_line
from gradverify._result import StructuralFailure, VerificationResult
from gradverify._truth import HighPrecisionPhi, confirm, element_scale, input_scale, reexamine

FULL_MODE_MAX = 20_000
TRUTH_ELEMENTWISE_MAX = 64
TRUTH_DIRECTIONAL_MAX = 50_000
# Directions of the lazy truth's sanity check (each costs about seven high-precision
# evaluations of fn, whatever the size).
LAZY_DIRECTIONS = 1
# Seconds of high-precision evaluation the spot truth of one input may take, and the
# fewest and most elements it covers whatever that allows.
SPOT_TRUTH_SECONDS = 10.0
SPOT_TRUTH_MIN, SPOT_TRUTH_MAX = 16, 1024
# Evaluations per element (full) or direction (directional) assumed by the cost estimate:
# the lazy first stencil spends about 2.3 on smooth code (issue 11's workloads), plus
# refinement where an element needs it.
EVALUATIONS_PER_ELEMENT = 3
# mutation_test=True scales the backward's largest element by 1 + this.
MUTATION_SCALE = 0.25


def check_vjp(
    fn,
    vjp,
    *inputs,
    wrt=None,
    cotangent=None,
    mode="auto",
    batched=False,
    directions=4,
    truth="auto",
    dps=DEFAULT_DPS,
    rtol=None,
    richardson=False,
    seed=0,
    max_batch_bytes=2**23,
    time_budget=DEFAULT_TIME_BUDGET,
    name=None,
    explore=0,
    domains=None,
    allow_nonfinite=False,
    reference=None,
    reference_factor=_gate.DEFAULT_FACTOR,
    repeats=2,
    nondeterministic=False,
    mutation_test=False,
):
    """Check a hand-written vector-Jacobian product against finite differences and the truth.

    Parameters
    ----------
    fn : callable
        ``fn(*inputs) -> array``. Close over labels, masks and hyperparameters.
    vjp : callable
        ``vjp(cotangent, *inputs) -> tuple`` with one gradient per input (``None`` allowed
        for inputs outside ``wrt``).
    *inputs : arrays
        NumPy, CuPy or array-api-strict arrays, all of one library and on one device.
    wrt : sequence of int, optional
        Which inputs to differentiate (default: every floating-point input). An integer
        input cannot be differentiated.
    cotangent : array, optional
        The vector ``v`` of ``v^T J``; default a seeded standard normal draw.
    mode : {"auto", "full", "directional"}
        Every element, or ``directions`` random signed directions over all inputs at once.
    batched : bool
        ``fn`` maps a leading batch axis on every input to a leading axis of its output;
        full mode then evaluates many perturbations per call.
    truth : {"auto", "elementwise", "directional", "off"}
        The high-precision (mpmath) side; see the module notes for ``auto``.
    dps : int
        Significant digits of the truth (at least 30).
    rtol : float, optional
        Relative tolerance; by default keyed by each input's dtype
        (:data:`gradverify._tolerances.RTOL`).
    richardson : bool
        Extrapolate the finite differences (three step sizes, error ``O(h^4)``).
    seed : int
        Seeds the default cotangent and the directions.
    max_batch_bytes : int
        Memory bound of one batched call.
    time_budget : float or None
        Seconds the check may run (default 600). A check that would need more, by its own
        estimate from the first evaluations, refuses before starting; one that runs past it
        stops at the next evaluation. Both raise :class:`gradverify.CheckBudgetExceeded`
        with what was found so far. None: no bound.
    name : str, optional
        The function's name in the report.
    explore : int
        Once the example passes, search up to this many variants of it (sizes set to 1,
        made equal or odd; zeros, ties, large and tiny values, ...) for an input that shows
        a bug, with Hypothesis, so that a finding shrinks to a minimal variant; see
        :mod:`gradverify._explore`. Default 0: the example only.
    domains : dict, optional
        ``{input position: domain}`` for the variants' values, where the example's own
        values would suggest the wrong one: ``"real"``, ``"positive"``, ``"nonnegative"``,
        ``"probability"``, ``"probability_rows"``, ``"logits"``, or ``("index", (j, axis))``
        for integer indices into ``inputs[j]``'s axis ``axis``.
    allow_nonfinite : bool
        A variant where ``fn`` is not finite is skipped rather than reported (for an op
        with a real singularity the high-precision forward cannot recognise).
    reference : callable, optional
        ``ref_vjp(cotangent, *inputs) -> tuple``: the plain, trusted backward (the obvious
        NumPy/CuPy code) for a low-precision kernel ``vjp``. It runs on the same inputs and
        cotangent, in the dtype under test, and the error-ratio gate replaces the dtype
        tolerance table: the check passes when at every element the kernel's error against
        the float64 judge (the truth, else the finite difference) is at most
        ``reference_factor`` times the reference's error plus a floor of a few ulps of the
        dtype at the gradient's scale; see :mod:`gradverify._gate`.
    reference_factor : float
        ``k`` of the gate (default 2), at least 1; fix it in advance.
    repeats : int
        How many times ``fn`` and ``vjp`` run on the same arguments (default 2, at least 2);
        their results must agree bitwise.
    nondeterministic : bool
        The op is nondeterministic by design (atomics): repeated results may differ, and
        their spread per element is measured, reported and joins the error budget (added
        to the gate's floor with ``reference=``; without it, a spread beyond what the dtype
        table allows at an element fails the check as ``nondeterministic_spread``).
    mutation_test : bool
        After the verdict, judge two mutants of the backward's output against the same
        evidence (per element in full mode, along the directions in directional mode): its
        largest element scaled by ``1 + MUTATION_SCALE``, and the gradient with the term of
        the output with the largest cotangent dropped (``vjp`` once more, with that cotangent
        entry zeroed). Each must fail; one that would pass
        is a warning (the check is blind to it). See ``InputReport.mutations``.

    Returns
    -------
    VerificationResult

    Examples
    --------
    >>> import numpy as np
    >>> from gradverify import check_vjp
    >>> x = np.array([0.5, -1.5, 2.0])
    >>> result = check_vjp(np.tanh, lambda v, x: (v * (1 - np.tanh(x) ** 2),), x)
    >>> result.passed, result.blame
    (True, None)
    """
    options = CheckOptions(
        wrt=wrt, mode=mode, batched=batched, directions=directions, truth=truth, dps=dps, rtol=rtol,
        richardson=richardson, seed=seed, max_batch_bytes=max_batch_bytes, time_budget=time_budget, name=name,
        explore=explore, domains=domains, allow_nonfinite=allow_nonfinite, reference=reference,
        reference_factor=reference_factor, repeats=repeats, nondeterministic=nondeterministic, mutation_test=mutation_test,
    )
    origin = _Origin("check_vjp", (fn, vjp), ("fn", "vjp"), cotangent)
    return _CheckRun(fn, vjp, inputs, cotangent, options, origin).execute()


def check_layer(forward, backward, *inputs, **options):
    """Check ``backward`` for the ``out, cache = forward(*inputs)``, ``grads = backward(dout, cache)`` convention.

    Options are those of :func:`check_vjp`.

    Examples
    --------
    >>> import numpy as np
    >>> from gradverify import check_layer
    >>> def forward(x, w):
    ...     return x @ w, (x, w)
    >>> def backward(dout, cache):
    ...     x, w = cache
    ...     return dout @ w.T, x.T @ dout
    >>> rng = np.random.default_rng(0)
    >>> check_layer(forward, backward, rng.normal(size=(2, 3)), rng.normal(size=(3, 4))).passed
    True
    """
    _require_callable(forward, "forward")
    _require_callable(backward, "backward")

    def fn(*xs):
        return _split_forward(forward(*xs))[0]

    def vjp(v, *xs):
        return backward(v, _split_forward(forward(*xs))[1])

    options.setdefault("name", _name_of(forward))
    origin = _Origin("check_layer", (forward, backward), ("forward", "backward"), options.get("cotangent"))
    return _run_wrapped(origin, fn, vjp, inputs, options)


def check_grad(f, grad_f, *inputs, **options):
    """Check ``grad_f`` for a scalar-valued ``f``.

    ``grad_f(*inputs)`` returns a tuple with one gradient per input (a bare array when there
    is one input). Options are those of :func:`check_vjp`; the cotangent defaults to 1.

    Examples
    --------
    >>> import numpy as np
    >>> from gradverify import check_grad
    >>> check_grad(lambda x: np.sum(x ** 3), lambda x: 3 * x ** 2, np.array([1.0, -2.0])).passed
    True
    """
    _require_callable(f, "f")
    _require_callable(grad_f, "grad_f")

    def fn(*xs):
        y = f(*xs)
        xp = _backend.namespace_of(*xs)
        if xp is _highprec.namespace:
            return xp.asarray(y)
        return xp.asarray(y, device=_backend.device_of(xs[0]))

    def vjp(v, *xs):
        grads = grad_f(*xs)
        if not isinstance(grads, (tuple, list)):
            grads = (grads,)
        return tuple(None if g is None else v * g for g in grads)

    origin = _Origin("check_grad", (f, grad_f), ("f", "grad_f"), options.get("cotangent"))
    if options.get("cotangent") is None and inputs:
        xp = _backend.namespace_of(*inputs)
        x0 = next((x for x in inputs if _backend.is_real_floating(xp, x.dtype)), inputs[0])
        options["cotangent"] = xp.ones((), dtype=x0.dtype, device=_backend.device_of(x0))
    options.setdefault("name", _name_of(f))
    return _run_wrapped(origin, fn, vjp, inputs, options)


def _run_wrapped(origin, fn, vjp, inputs, options):
    """check_vjp of the ``fn``/``vjp`` that check_layer or check_grad wrapped around the caller's functions."""
    options = dict(options)
    cotangent = options.pop("cotangent", None)
    return _CheckRun(fn, vjp, inputs, cotangent, CheckOptions().replace(**options), origin).execute()


@dataclass(frozen=True)
class _Origin:
    """The caller's own call, for a reproduce line that makes it again."""

    entry: str  # check_vjp, check_layer or check_grad
    callables: tuple
    placeholders: tuple  # their names in the signature
    cotangent: object  # the caller's, or None for the default

    def with_cotangent(self, cotangent):
        return dataclasses.replace(self, cotangent=cotangent)


assert_vjp = asserting(check_vjp)
assert_layer = asserting(check_layer)
assert_grad = asserting(check_grad)


class _CheckRun:
    """One check: validated arguments, metered calls of the code under test, the findings."""

    def __init__(self, fn, vjp, inputs, cotangent, options, origin):
        self.started = time.perf_counter()
        _require_callable(fn, "fn")
        _require_callable(vjp, "vjp")
        if not inputs:
            raise InvalidArgument("no inputs given: call check_vjp(fn, vjp, x, ...) with at least one array")
        inputs = [_backend.validate_input(i, x) for i, x in enumerate(inputs)]
        self.xp = xp = _backend.namespace_of(*inputs)
        if xp is _highprec.namespace:
            raise InvalidArgument("inputs are mpmath arrays; pass float arrays, gradverify makes the high-precision copies")
        self.device = _backend.device_of(inputs[0])
        for i, x in enumerate(inputs):
            if _backend.device_of(x) != self.device:
                msg = f"input {i} is on {_backend.device_of(x)} but input 0 is on {self.device}; move all inputs to one device"
                raise InvalidArgument(msg)
        self.floating = [_backend.is_real_floating(xp, x.dtype) for x in inputs]
        self.options = options
        self.wrt = self._resolve_wrt(options.wrt, inputs)
        self.rtols = {i: _tolerances.rtol_for(_backend.dtype_name(inputs[i].dtype), options.rtol) for i in self.wrt}
        self.fn, self.vjp, self.inputs = fn, vjp, list(inputs)
        self.cotangent = cotangent
        self.origin = origin
        self.mode = options.mode
        self.name = options.name or _name_of(fn)
        self.calls = {"fn": 0, "vjp": 0, "fn_float64": 0, "fn_high_precision": 0}
        self.truth_used, self.truth_notes = "off", []
        self.found = []  # what is established so far, for a budget error
        self.kinked = {}  # per input, the elements full mode found at kinks
        self.settled = {}  # per input, the elements full mode gave a truth of their own
        self.joint_failures = []  # failures across elements (a tie's gradients), as structural findings
        self.reference_grads = None  # per input, ref_vjp's gradient as float64 on the host (reference=)
        self.spread = {}  # per input, the gradient's spread over repeated runs (nondeterministic=True)
        self.total = 0  # differentiated elements

    def _resolve_wrt(self, wrt, inputs):
        if wrt is None:
            chosen = [i for i, fl in enumerate(self.floating) if fl]
            if not chosen:
                dtypes = ", ".join(_backend.dtype_name(x.dtype) for x in inputs)
                raise InvalidArgument(f"no floating-point input to differentiate (dtypes {dtypes}); pass float arrays")
            return chosen
        for i in wrt:
            if not 0 <= i < len(inputs):
                raise InvalidArgument(f"wrt names input {i}, but there are {len(inputs)} inputs (positions 0..{len(inputs) - 1})")
            if not self.floating[i]:
                dtype = _backend.dtype_name(inputs[i].dtype)
                msg = (
                    f"input {i} has dtype {dtype} and cannot be differentiated; leave it out of wrt"
                    " (or close over it with functools.partial), or pass it as a real floating array"
                )
                raise InvalidArgument(msg)
        return list(wrt)

    # -- calling the code under test -------------------------------------------------

    def _deadline(self):
        budget = self.options.time_budget
        elapsed = time.perf_counter() - self.started
        if budget is not None and elapsed > budget:
            msg = f"the check ran past its time_budget of {budget:g} s ({elapsed:.1f} s); pass a larger time_budget, mode='directional' or fewer directions"
            raise CheckBudgetExceeded(msg, found="; ".join(self.found), evaluations=self.calls, seconds=elapsed)

    def _call(self, what, func, *args):
        """Call the code under test from the structural checks, as ``what`` ("fn" or "vjp")."""
        self._deadline()
        self.calls[what] = self.calls.get(what, 0) + 1
        try:
            return func(*args)
        except GradVerifyError:
            raise  # gradverify's own verdict on an argument, e.g. from check_layer's wrapper
        except Exception as exc:
            msg = f"{what} raised {type(exc).__name__}: {exc} (its traceback follows, as the cause)"
            raise UserFunctionError(msg) from exc

    def _metered(self, *args):
        """``fn`` as the truth calls it: counted by precision, under the time budget."""
        self._deadline()
        high = any(_highprec.is_hp_array(a) for a in args)
        self.calls["fn_high_precision" if high else "fn_float64"] += 1
        return self.fn(*args)

    def _metered_float64(self, *args):
        """``fn`` as the finite differences call it (float64 only: thousands of calls, each
        as cheap as can be), counted, under the time budget."""
        self._deadline()
        self.calls["fn_float64"] += 1
        return self.fn(*args)

    # -- the check ---------------------------------------------------------------------

    def execute(self):
        seen = _structural.inspect(
            self._call, self.fn, self.vjp, self.inputs, wrt=self.wrt, floating=self.floating,
            cotangent=self.cotangent, seed=self.options.seed, xp=self.xp, device=self.device,
            repeats=self.options.repeats, nondeterministic=self.options.nondeterministic,
        )
        self.spread = seen.spread if self.options.nondeterministic else {}
        self.seen = seen
        self.dropped = None  # mutation_test: (output index, vjp with that cotangent entry zeroed)
        if self.options.nondeterministic:
            self.truth_notes.append(f"nondeterministic: {self.options.repeats} runs; fn's output spread {seen.fn_spread or 0.0:.3g}")
        self.inputs = seen.inputs
        self.found.append(f"{len(seen.findings)} structural finding(s)" + (": " + ", ".join(f.kind for f in seen.findings) if seen.findings else ""))
        if seen.numbers_possible and self.options.reference is not None:
            self._reference(seen)
        reports = self._numerics(seen) if seen.numbers_possible else []
        result = self._result(seen, reports)
        return _explore.explore(self, result) if self.options.explore else result

    def _reference(self, seen):
        """``ref_vjp`` on the caller's inputs and cotangent, in the dtype under test (reference=)."""
        xp = self.xp
        fresh = [xp.asarray(x, copy=True) for x in seen.inputs]
        got = self._call("reference", self.options.reference, xp.asarray(seen.v, copy=True), *fresh)
        n = len(seen.inputs)
        if not isinstance(got, (tuple, list)) or len(got) != n:
            what = f"{len(got)} gradients" if isinstance(got, (tuple, list)) else f"a {type(got).__name__}"
            raise InvalidArgument(f"reference returned {what}; like vjp it must return a tuple with one gradient per input ({n})")
        grads = {}
        for i in seen.usable:
            g, x = got[i], seen.inputs[i]
            if not _structural.is_array_of(xp, g) or tuple(g.shape) != tuple(x.shape):
                shape = tuple(g.shape) if hasattr(g, "shape") else type(g).__name__
                raise InvalidArgument(f"reference's gradient for input {i} is {shape}, not an array shaped like the input {tuple(x.shape)}")
            if g.dtype != x.dtype:
                msg = (
                    f"reference's gradient for input {i} has dtype {_backend.dtype_name(g.dtype)}, the input {_backend.dtype_name(x.dtype)}:"
                    " the reference must compute in the dtype under test (the gate compares the kernel with the plain computation"
                    " in the same precision); drop its casts"
                )
                raise InvalidArgument(msg)
            host = _host64(g)
            if not np.all(np.isfinite(host)):
                raise InvalidArgument(f"reference's gradient for input {i} holds NaN or Inf; the reference must be finite where fn is")
            grads[i] = host
        self.reference_grads = grads

    def _numerics(self, seen):
        xp, options = self.xp, self.options
        x64 = [_backend.float64_of(x, xp) if fl else x for x, fl in zip(self.inputs, self.floating)]
        v64 = _backend.float64_of(seen.v, xp)
        wrt = seen.usable
        try:
            with np.errstate(all="ignore"):
                timed = time.perf_counter()
                out64 = self._metered_float64(*x64)
                per_call = time.perf_counter() - timed
        except GradVerifyError:
            raise
        except Exception as exc:
            raise UserFunctionError(f"fn raised {type(exc).__name__} on the float64 copies of the inputs: {exc}") from exc
        _backend.validate_float64_output(out64, seen.out)
        seen.out = None  # only its shape mattered; fn's float64 output is kept
        evaluator = _numerical.PhiEvaluator(self._metered_float64, x64, v64, xp=xp, batched=options.batched, max_batch_bytes=options.max_batch_bytes, out=out64)
        del out64  # the evaluator keeps its own copy
        if options.batched:
            self._check_batched_claim(evaluator, wrt)
        hosts = {i: _host64(x64[i]) for i in wrt}
        analytic = {i: _host64(seen.grads[i]) for i in wrt}
        total = self.total = sum(h.size for h in hosts.values())
        mode = self.mode if self.mode != "auto" else ("full" if total <= FULL_MODE_MAX else "directional")
        self.mode = mode
        self._refuse_if_too_costly(mode, total, per_call)
        truth = self._truth_side(x64, seen.v, total)
        v_max = float(np.max(np.abs(_backend.to_numpy(v64)), initial=0.0))
        reports = []
        if mode == "full":
            for i in wrt:
                reports.append(self._full(evaluator, truth, i, hosts[i], analytic[i], v_max))
                self.found.append(f"input {i}: {reports[-1].failures} wrong, {reports[-1].unresolved} unresolved of {reports[-1].checked}")

        def directional(over):
            rng = np.random.default_rng([options.seed, 1])
            count = min(options.directions, LAZY_DIRECTIONS) if self.truth_used == "lazy" else options.directions
            rms = {i: input_scale(hosts[i]) for i in over}
            dirs = [_Direction({i: rng.choice(np.array([-1, 1], dtype=np.int8), size=hosts[i].size) for i in over}, hosts, rms) for _ in range(count)]
            if mode == "full":
                # The elements at kinks were judged one by one; the truth's directions leave
                # them alone, as a line through several kinks brackets too few subgradients.
                # A lazy truth's direction also leaves out the elements with a truth of
                # their own: it checks the ones the finite differences settled.
                for d in dirs:
                    for i in over:
                        d.signs[i][self.kinked[i]] = 0
                        if self.truth_used == "lazy":
                            d.signs[i][self.settled[i]] = 0
                if not any(d.signs[i].any() for d in dirs for i in over):
                    return None
            return self._directional(evaluator, truth, dirs, analytic, v_max, over)

        # A lazy truth on a small input checked its settled elements along a direction of
        # its own (see _arbiter._sanity); on larger inputs they share a report row.
        lazy_row = self.truth_used == "lazy" and total > TRUTH_ELEMENTWISE_MAX
        if mode == "directional" or self.truth_used == "directional" or lazy_row:
            row = directional(wrt)
            if row is not None:
                reports.append(row)
            else:
                self.truth_notes.append("no directional truth: every element has a truth of its own or lies at a kink")
        return self._explain_failures(seen, evaluator, hosts, reports, directional)

    def _explain_failures(self, seen, evaluator, hosts, reports, directional):
        """Where a comparison failed, ask whether fn ran in float64 at all.

        Only failures are probed: a function that quantizes its input (a float32 buffer)
        fails the comparison without the gradient being wrong, and its inputs' reports give
        way to a structural finding; a failed directional report is made again over the
        other inputs (``directional(over)``). A passing check is never touched by the probe.
        """
        failed = {p.index for p in reports if not p.passed}
        suspects = sorted(hosts) if None in failed else sorted(failed)
        quantized = set()
        for i in suspects:
            slopes = _quantization(evaluator, i, hosts[i], self.options.seed)
            if slopes is not None:
                msg = (
                    f"fn does not run in float64 on input {i}: its slope along a random direction is {slopes[0]:.6g} for steps"
                    f" of 2**-36 and 2**-35 of each element and {slopes[1]:.6g} for steps of 2**-12 and 2**-11, as when the"
                    " input passes through a float32 or float16 buffer or cast (out = np.zeros(shape, dtype=np.float32);"
                    " x.astype(np.float32)) and its low bits are lost; its gradient cannot be verified in float64."
                    " Keep the input's dtype inside fn"
                )
                seen.fail("fn_not_float64", msg, i)
                quantized.add(i)
        if not quantized:
            return reports
        kept = [p for p in reports if p.index not in quantized and not (p.index is None and None in failed)]
        others = [i for i in sorted(hosts) if i not in quantized]
        if None in failed and others:
            row = directional(others)
            if row is not None:
                kept.append(row)
        return kept

    def _refuse_if_too_costly(self, mode, total, per_call):
        budget = self.options.time_budget
        units = total if mode == "full" else self.options.directions
        estimate = EVALUATIONS_PER_ELEMENT * units * per_call
        if budget is not None and estimate > budget:
            what = f"{total} elements in full mode" if mode == "full" else f"{units} directions"
            msg = (
                f"checking {what} needs about {EVALUATIONS_PER_ELEMENT * units} evaluations of fn, about"
                f" {estimate:.0f} s at {per_call * 1e3:.3g} ms each, more than time_budget={budget:g} s;"
                " pass mode='directional' (a few directions), fewer directions, or a larger time_budget"
            )
            raise CheckBudgetExceeded(msg, evaluations=self.calls, seconds=time.perf_counter() - self.started)

    def _full(self, evaluator, truth, i, host, a, v_max):
        """Every element of input ``i``: finite differences and the truth, judged by the arbiter."""
        rtol, dtype = self.rtols[i], _backend.dtype_name(self.inputs[i].dtype)
        richardson = self.options.richardson
        st = _numerical.elementwise(evaluator, i, host, richardson)
        target = _numerical.REFINE_FRACTION * rtol * np.maximum(np.abs(st.estimate), np.max(np.abs(st.estimate), initial=0.0) * 1e-3)
        # Elements whose error the verdict's resolution rule already accepts need no better step.
        resolution = 0.5 * _tolerances.RESOLUTION_FACTOR * rtol * _numerical.gradient_size(st.estimate)
        _numerical.refine_elementwise(evaluator, i, host, richardson, st, target, resolution=resolution)
        sources = _Sources(self, evaluator, truth, i=i, host=host, analytic=a)
        tv = None
        if self.truth_used == "elementwise":
            tv = sources.truth(np.arange(a.size))
            sources.covers_all = True
        elif self.truth_used == "lazy":
            sources.lazy_all = self.total <= TRUTH_ELEMENTWISE_MAX
        reference = st.estimate if tv is None else np.where(np.isfinite(tv.center), tv.center, st.estimate)
        largest = _numerical.gradient_size(reference)
        resolution = _resolution(st)
        natural = _tolerances.natural_size(evaluator.magnitude, v_max, _numerical.step_scale(host), largest)
        limits = _arbiter.Limits(spot_truth=_spot_budget(truth))
        verdicts, evidence, notes = _arbiter.arbitrate(
            a, _arbiter.Evidence(st, tv), sources, rtol=rtol, eps=_tolerances.eps_for(dtype), natural=natural, resolution=resolution, limits=limits
        )
        if self.truth_used == "lazy" and not sources.lazy_all:
            own = int(np.count_nonzero(verdicts.has_truth))
            settled = int(np.count_nonzero(verdicts.agreed & ~verdicts.has_truth))
            rest = a.size - own - settled
            notes.append(
                f"lazy truth: per element at {own} of {a.size} elements; the finite differences settle {settled} (within rtol with"
                f" their error bound){f' and judge the other {rest} without a truth of their own' if rest else ''}; one random direction"
                " over the elements without a truth of their own gets the truth"
            )
        self.truth_notes.extend(f"input {i}: {n}" for n in notes)
        self.kinked[i] = evidence.fd.kink | (evidence.truth.kink if evidence.truth is not None else False)
        self.settled[i] = evidence.truth.has_truth if evidence.truth is not None else np.zeros(a.size, dtype=bool)
        shape = tuple(self.inputs[i].shape)
        unravel = lambda k: tuple(int(j) for j in np.unravel_index(k, shape))  # noqa: E731
        # Elements at a tie, each right alone, must also share the gradient (see _ties).
        for tie in _ties.judge(evaluator, i, host, a, _ties.groups(host, self.kinked[i]), rtol):
            self.joint_failures.append(StructuralFailure("tied_gradients", _ties.describe(tie, unravel, f"input {i}"), i, blame="analytic"))
        report = _verdict.report(f"input {i}", i, shape, dtype, rtol, a, evidence.fd, evidence.truth, verdicts, unravel, lazy=self.truth_used == "lazy")
        if self.reference_grads is not None:
            report.gate = self._gate_elements(i, a, evidence, dtype, unravel)
            if report.gate.undecided and sources.phi is not None:
                # The finite differences cannot resolve the errors there (float64 kernels, or an
                # error of a few ulps): the truth, at as many undecided elements as the spot budget allows.
                had = evidence.truth.has_truth if evidence.truth is not None else np.zeros(a.size, dtype=bool)
                wanted = np.flatnonzero(report.gate.undecided_mask & ~had)[: _spot_budget(truth)]
                if wanted.size:
                    got = sources.truth(wanted)
                    evidence = _arbiter.Evidence(evidence.fd, _arbiter._merge_truth(evidence.truth, a.size, wanted, got))
                    report.gate = self._gate_elements(i, a, evidence, dtype, unravel)
                    self.truth_notes.append(f"input {i}: the reference gate asked the truth at {wanted.size} element(s) the finite differences could not resolve")
        center, bound, kink, lo, hi, _ = _judged(evidence, a.size)
        center = np.where(kink, np.fmax(np.abs(lo), np.abs(hi)), center)  # at a kink, the bracket's larger end
        if report.gate is not None:
            allowance = report.gate.allowance
        else:
            a_noise = _tolerances.analytic_noise(_tolerances.eps_for(dtype), rtol, natural * np.ones(a.size))
            allowance = _power.table_allowance(center, bound, a_noise, rtol)
        report.detectable, report.blind = _power.measure(center, allowance)
        if self.options.mutation_test:
            report.mutations = self._mutants(i, a, evidence, rtol, dtype, natural, resolution, unravel, report.gate is not None)
        spread = self.spread.get(i)
        if spread is not None:
            report.spread = float(np.max(spread, initial=0.0))
            over = np.flatnonzero(spread > allowance) if report.gate is None else np.array([], dtype=int)
            if over.size:
                k = int(over[np.argmax(spread[over] - allowance[over])])
                msg = (
                    f"the gradient of input {i} varies by {spread[k]:.3g} at index {unravel(k)} over {self.options.repeats} runs, more than"
                    f" the {allowance[k]:.3g} the dtype table allows there (rtol {rtol:g}); {over.size} of {a.size} elements spread beyond it"
                )
                self.joint_failures.append(StructuralFailure("nondeterministic_spread", msg, i, blame="analytic"))
        return report

    def _mutants(self, i, a, evidence, rtol, dtype, natural, resolution, unravel, gated):
        """mutation_test=True: would the check fail two mutants of input ``i``'s gradient?"""
        out = []

        def detected(mutant):
            if gated:
                center, bound, kink, lo, hi, by_truth = _judged(evidence, a.size)
                g = _gate.judge(mutant, self.reference_grads[i], center, bound, eps=_tolerances.eps_for(dtype), k=self.options.reference_factor,
                                lo=lo, hi=hi, kink=kink, by_truth=by_truth, spread=self.spread.get(i))
                return g.verdict == "failed"
            v = _verdict.judge(mutant, evidence.fd, evidence.truth, rtol=rtol, eps=_tolerances.eps_for(dtype), natural=natural, resolution=resolution)
            return bool(v.wrong.any())

        if a.size:
            k = int(np.argmax(np.abs(a)))
            mutant = a.copy()
            mutant[k] = a[k] * (1 + MUTATION_SCALE) if a[k] != 0 else MUTATION_SCALE * float(np.max(np.abs(a), initial=1.0) or 1.0)
            out.append({"kind": "scale_one_element", "detail": f"element {unravel(k)} scaled by {1 + MUTATION_SCALE:g}", "detected": detected(mutant)})
        dropped = self._dropped_gradient(i)
        if dropped is not None:
            j, mutant = dropped
            if np.array_equal(mutant, a):
                note = f"the term of output {j} (zeroed in the cotangent) does not reach input {i}"
                out.append({"kind": "drop_a_term", "detail": note, "detected": None})
            else:
                out.append({"kind": "drop_a_term", "detail": f"the term of output {j} dropped (its cotangent entry zeroed)", "detected": detected(mutant)})
        return out

    def _dropped_gradient(self, i):
        """``(output index, input i's gradient as a flat float64 array)`` with the largest cotangent
        entry zeroed; None where there is none (a single output, or a gradient the structural
        checks judge)."""
        dropped = self._dropped_term()
        if dropped is None:
            return None
        j, grads = dropped
        g = grads[i] if isinstance(grads, (tuple, list)) and len(grads) > i else None
        if not (_structural.is_array_of(self.xp, g) and tuple(g.shape) == tuple(self.inputs[i].shape)):
            return None
        return j, _host64(g)

    def _dropped_term(self):
        """``(output index, vjp's gradients)`` with the largest cotangent entry zeroed; computed once."""
        if self.dropped is None:
            xp, v = self.xp, self.seen.v
            host = _backend.to_numpy(v).astype(np.float64).reshape(-1)
            if host.size < 2:
                self.dropped = False
                return None
            j = int(np.argmax(np.abs(host)))
            mask = np.ones(host.size)
            mask[j] = 0.0
            mask = xp.asarray(mask.reshape(tuple(v.shape)), device=self.device)
            v_drop = v * xp.astype(mask, v.dtype)
            grads = self._call("vjp", self.vjp, v_drop, *[xp.asarray(x, copy=True) for x in self.inputs])
            shape = tuple(v.shape)
            self.dropped = (tuple(int(q) for q in np.unravel_index(j, shape)), grads)
        return self.dropped or None

    def _gate_elements(self, i, a, evidence, dtype, unravel):
        """The error-ratio gate over the elements of input ``i`` (see :mod:`gradverify._gate`)."""
        center, bound, kink, lo, hi, by_truth = _judged(evidence, a.size)
        return _gate.judge(
            a, self.reference_grads[i], center, bound, eps=_tolerances.eps_for(dtype), k=self.options.reference_factor,
            lo=lo, hi=hi, kink=kink, by_truth=by_truth, unravel=unravel, spread=self.spread.get(i),
        )

    def _directional(self, evaluator, truth, dirs, analytic, v_max, wrt):
        """Random signed directions over all inputs at once: ``<grad, d>`` against ``phi'`` along ``d``."""
        richardson = self.options.richardson
        rtol = max(self.rtols[i] for i in wrt)
        a, terms = np.array([_along(analytic, d, wrt) for d in dirs]).T
        # A direction moves every element by its own scale: phi's natural rate of change along
        # it is phi's own magnitude (scale 1 in t).
        natural = _tolerances.natural_size(evaluator.magnitude, v_max, 1.0, terms)
        st = _numerical.directional(evaluator, dirs, richardson)
        sources = _DirectionalSources(self, evaluator, truth if self.truth_used in ("directional", "lazy") else None, dirs=dirs, analytic=analytic)
        tv = sources.truth(np.arange(len(dirs))) if sources.phi is not None else None
        sources.covers_all = True
        dtype = _backend.dtype_name(self.inputs[wrt[0]].dtype)
        resolution = _resolution(st)
        verdicts, evidence, notes = _arbiter.arbitrate(
            a, _arbiter.Evidence(st, tv), sources, rtol=rtol, eps=_tolerances.eps_for(dtype), natural=natural, resolution=resolution
        )
        self.truth_notes.extend(f"directions: {n}" for n in notes)
        name = "all inputs (directional)" if self.mode == "directional" else "all inputs (directional truth)"
        report = _verdict.report(name, None, (len(dirs),), dtype, rtol, a, evidence.fd, evidence.truth, verdicts, lambda k: (int(k),))
        if self.reference_grads is not None:
            report.gate = self._gate_directions(a, dirs, evidence, wrt, dtype)
            allowance = report.gate.allowance
        else:
            center, bound, kink, lo, hi, _ = _judged(evidence, len(dirs))
            center = np.where(kink, np.fmax(np.abs(lo), np.abs(hi)), center)
            a_noise = _tolerances.analytic_noise(_tolerances.eps_for(dtype), rtol, natural * np.ones(len(dirs)))
            allowance = _power.table_allowance(center, bound, a_noise, rtol)
        center, _, kink, lo, hi, _ = _judged(evidence, len(dirs))
        report.detectable, report.blind = _power.measure(np.where(kink, np.fmax(np.abs(lo), np.abs(hi)), center), allowance)
        if self.options.mutation_test and self.mode == "directional":  # in full mode the elements' mutants stand
            report.mutations = self._directional_mutants(analytic, dirs, evidence, wrt, rtol, dtype, natural, resolution, report.gate is not None)
        return report

    def _directional_mutants(self, analytic, dirs, evidence, wrt, rtol, dtype, natural, resolution, gated):
        """mutation_test=True along the directions: would ``<mutant, d>`` fail where ``<grad, d>`` was judged?

        The mutants of :meth:`_mutants`, over all inputs at once: the largest element of any
        input's gradient scaled, and every gradient with the term of one output dropped.
        """

        def detected(grads):
            m = np.array([_along(grads, d, wrt)[0] for d in dirs])
            if gated:
                return self._gate_directions(m, dirs, evidence, wrt, dtype).verdict == "failed"
            v = _verdict.judge(m, evidence.fd, evidence.truth, rtol=rtol, eps=_tolerances.eps_for(dtype), natural=natural, resolution=resolution)
            return bool(v.wrong.any())

        out = []
        i = max(wrt, key=lambda i: float(np.max(np.abs(analytic[i]), initial=0.0)))
        a = analytic[i]
        if a.size:
            k = int(np.argmax(np.abs(a)))
            scaled = a.copy()
            scaled[k] = a[k] * (1 + MUTATION_SCALE) if a[k] != 0 else MUTATION_SCALE
            where = tuple(int(q) for q in np.unravel_index(k, tuple(self.inputs[i].shape)))
            detail = f"element {where} of input {i} scaled by {1 + MUTATION_SCALE:g}"
            out.append({"kind": "scale_one_element", "detail": detail, "detected": detected({**analytic, i: scaled})})
        dropped = {w: self._dropped_gradient(w) for w in wrt}
        if all(d is not None for d in dropped.values()):
            j = dropped[wrt[0]][0]
            mutant = {w: g for w, (_, g) in dropped.items()}
            if all(np.array_equal(mutant[w], analytic[w]) for w in wrt):
                out.append({"kind": "drop_a_term", "detail": f"the term of output {j} (zeroed in the cotangent) reaches no input", "detected": None})
            else:
                out.append({"kind": "drop_a_term", "detail": f"the term of output {j} dropped (its cotangent entry zeroed)", "detected": detected(mutant)})
        return out

    def _gate_directions(self, a, dirs, evidence, wrt, dtype):
        """The error-ratio gate along the directions: ``<kernel, d>`` and ``<reference, d>`` against ``phi'``."""
        ref = self.reference_grads
        r = np.array([_along(ref, d, wrt)[0] for d in dirs])
        # The floor per direction: FLOOR_ULPS ulps of each input's gradient scale per element it
        # moves, added in quadrature (the direction's signs are random, independent of the errors).
        sizes = {i: float(np.max(np.abs(ref[i]), initial=0.0)) for i in wrt}
        floor_scale = np.array([np.sqrt(sum(sizes[i] ** 2 * float(np.sum(np.square(d[i]))) for i in wrt)) for d in dirs])
        center, bound, kink, lo, hi, by_truth = _judged(evidence, len(dirs))
        scale = float(np.max(np.abs(center[np.isfinite(center)]), initial=0.0))
        spread = None
        if self.spread:
            spread = np.array([sum(float(self.spread[i] @ np.abs(d[i])) for i in wrt if i in self.spread) for d in dirs])
        return _gate.judge(
            a, r, center, bound, eps=_tolerances.eps_for(dtype), k=self.options.reference_factor, spread=spread,
            scale=scale, floor_scale=floor_scale, lo=lo, hi=hi, kink=kink, by_truth=by_truth, unravel=lambda k: (int(k),),
        )

    def _check_batched_claim(self, evaluator, wrt):
        """Two unperturbed rows must both reproduce the unbatched output."""
        i = wrt[0]
        diff, _ = evaluator.phi(2, lambda start, stop: {i: _numerical.OneHot(np.zeros(stop - start, dtype=int), np.zeros(stop - start))})
        if not np.all(np.abs(diff) <= 1e-12 * evaluator.magnitude):
            msg = (
                "batched=True, but fn with a leading batch axis of 2 on every input does not reproduce"
                f" the unbatched output (sum(v * (out_row - out)) = {diff.tolist()});"
                " pass batched=False or make fn map the batch axis"
            )
            raise InvalidArgument(msg)

    def _truth_side(self, x64, v, total):
        """Decide the truth mode and build the high-precision evaluator (or record why not)."""
        want = self.options.truth
        all_size = sum(int(np.prod(x.shape)) for x in x64)
        if want == "elementwise" and self.mode == "directional":
            raise InvalidArgument("truth='elementwise' compares every element, which needs mode='full'; pass truth='directional' with mode='directional'")
        if want == "auto":
            if all_size <= TRUTH_DIRECTIONAL_MAX:
                want = "lazy" if self.mode == "full" else "directional"
            else:
                self.truth_notes.append(f"inputs hold {all_size} elements, more than the {TRUTH_DIRECTIONAL_MAX} the truth takes by default; pass truth='directional' to force it")
                return None
        if want == "off":
            self.truth_notes.append("turned off by the caller")
            return None
        hosts = [_backend.to_numpy(x) for x in x64]
        v_host = _backend.to_numpy(_backend.float64_of(v, self.xp)).astype(np.float64)
        try:
            phi = HighPrecisionPhi(self._metered, hosts, v_host, dps=self.options.dps, floating=self.floating)
        except HighPrecisionUnavailable as exc:
            if self.options.truth != "auto":
                raise
            self.truth_notes.append(f"unavailable: {exc}")
            return None
        self.truth_used = want
        return phi

    def _result(self, seen, reports):
        structural = seen.findings + self.joint_failures
        if self.reference_grads is not None:
            # The gate decides each input; the dtype table's counts stay in the report for information.
            failures = any(p.gate is not None and p.gate.verdict == "failed" for p in reports) or any(s.blame == "analytic" for s in structural)
            inconclusive = any(p.gate is not None and p.gate.verdict == "inconclusive" for p in reports)
            passed = not structural and not failures and not inconclusive
            blame = "analytic" if failures else None
        else:
            failures = any(p.failures for p in reports) or any(s.blame == "analytic" for s in structural)
            unresolved = any(p.unresolved for p in reports)
            passed = not structural and not failures and not unresolved and not any(p.not_differentiable for p in reports)
            if failures:
                blame = "analytic"
            elif unresolved or any(p.numerical_off for p in reports):
                blame = "numerical"
            else:
                blame = None
        v_host = _backend.to_numpy(seen.v).astype(np.float64).reshape(-1) if seen.v is not None else None
        warnings = _power.warnings_for(reports, cotangent_given=self.origin.cotangent is not None, v_host=v_host)
        worst = [p.max_rel_analytic_truth if p.max_rel_analytic_truth is not None else p.max_rel_analytic_numerical for p in reports]
        options = self.options.replace(mode=self.mode)
        origin = self.origin
        reproduce = _reproduce(origin, self.inputs, options)
        return VerificationResult(
            passed=passed,
            blame=blame,
            max_rel_error=float(max(worst, default=0.0)),
            per_input=reports,
            structural=structural,
            function=self.name,
            mode=self.mode,
            truth=self.truth_used,
            truth_note="; ".join(self.truth_notes),
            dps=self.options.dps,
            seed=self.options.seed,
            richardson=self.options.richardson,
            batched=self.options.batched,
            evaluations=dict(self.calls),
            seconds=time.perf_counter() - self.started,
            reproduce=reproduce,
            warnings=warnings,
        )


class _TruthSources(_arbiter.Sources):
    """Confirmation and re-examination of a truth, for the elements or the directions."""

    phi = None
    recompute = None  # phi's method for these elements or directions, bound by each subclass

    def _again(self, truth, indices, how):
        if self.phi is None:
            return None
        got = _arbiter._replace(truth)
        mask = np.zeros(truth.center.shape, dtype=bool)
        mask[indices] = True
        how(got, mask, self.recompute, self.run.options.dps, atol=1e-20 * np.maximum(np.abs(truth.center), 1e-300))
        return got

    def confirm(self, truth, indices):
        return self._again(truth, indices, confirm)

    def reexamine(self, truth, fd, indices):
        """The truth again at more digits, then at the finite differences' own scale.

        Where the exact function's centered difference at the differences' step (half the
        coarsest, as their estimate takes) agrees with them and not with the truth, the truth
        describes structure below anything float64 can see (a wiggle or a kink within the
        step); it is dropped there and the differences decide.
        """
        got = self._again(truth, indices, reexamine)
        if got is None:
            return None
        kept = np.asarray(indices)[np.isfinite(got.center[indices])]
        if kept.size:
            coarse = self._slopes_at(kept, fd.step[kept] / 2)
            rtol = self._rtol
            with np.errstate(invalid="ignore"):
                with_fd = np.abs(coarse - fd.estimate[kept]) <= 2 * fd.error[kept] + rtol * np.abs(fd.estimate[kept])
                off_truth = np.abs(coarse - got.center[kept]) > rtol * np.maximum(np.abs(coarse), np.abs(got.center[kept]))
            for k, c in zip(kept[with_fd & off_truth], coarse[with_fd & off_truth]):
                note = (
                    f"no truth: at the finite differences' step ({fd.step[k] / 2:.3g}) the exact function's slope is {c:.10g},"
                    f" as they say, not the truth's {got.center[k]:.10g}: the truth sees structure below float64's view"
                )
                got.drop(np.array([k]), note)
        return got


class _Sources(_TruthSources):
    """More evidence about the elements of one input, for the arbiter."""

    def __init__(self, run, evaluator, phi, *, i, host, analytic):
        self.run, self.evaluator, self.phi, self.i, self.host, self.analytic = run, evaluator, phi, i, host, analytic
        self._spot_started = None
        self._rtol = run.rtols[i]
        if phi is not None:
            self.recompute = functools.partial(phi.elementwise, i, element_scale(host), input_scale(host))
            self._slopes_at = lambda indices, steps: phi.slopes_at(steps, i=i, indices=indices)

    def truth(self, indices):
        if self.phi is None:
            return None
        if self._spot_started is None:
            self._spot_started = time.perf_counter()
        return self.recompute(indices=indices, slopes=self.analytic[indices])

    def sanity(self, indices):
        if self.phi is None:
            return None
        rng = np.random.default_rng([self.run.options.seed, 3, self.i])
        d = np.zeros(self.host.size)
        d[indices] = rng.choice([-1.0, 1.0], size=len(indices)) * _numerical.step_scale(self.host)[indices]
        extra = self.phi.digits_for(self.analytic[indices] @ d[indices])
        return self.phi.directional([{self.i: d}], extra_digits=extra), d[indices]

    def spot_spent(self):
        return self._spot_started is not None and time.perf_counter() - self._spot_started > SPOT_TRUTH_SECONDS

    def kink_line(self, kinked):
        d = np.zeros(self.host.size)
        d[kinked] = _numerical.step_scale(self.host)[kinked]
        st = _numerical.directional(self.evaluator, [{self.i: d}], self.run.options.richardson)
        return float(self.analytic[kinked] @ d[kinked]), st, d[kinked]

    def cross_check(self, fd, indices):
        got = _arbiter._replace(fd)
        _numerical.cross_check(self.evaluator, self.i, self.host, self.run.options.richardson, got, indices)
        return got


class _DirectionalSources(_TruthSources):
    """More evidence about random directions over all inputs, for the arbiter."""

    directional = True

    def __init__(self, run, evaluator, phi, *, dirs, analytic):
        self.run, self.evaluator, self.phi, self.dirs, self.analytic = run, evaluator, phi, dirs, analytic
        self._rtol = max(run.rtols.values())
        if phi is not None:
            self.recompute = functools.partial(phi.directional, dirs)
            self._slopes_at = lambda indices, steps: phi.slopes_at(steps, indices=indices, directions=dirs)

    def truth(self, indices):
        if self.phi is None:
            return None
        slopes = [sum(float(self.analytic[i] @ self.dirs[k][i]) for i in self.dirs[k]) for k in indices]
        extra = max(self.phi.digits_for(s) for s in slopes) if slopes else 0
        return self.phi.directional(self.dirs, indices=indices, extra_digits=extra)

    def split(self, k, judge_part, max_parts):
        """Direction ``k`` judged part by part: each part smooth, or one element at a kink.

        A part is the direction restricted to a subset of the (input, element) pairs it
        moves. A smooth part is judged by its finite difference (with its error), a kinked
        part of one element by its one-sided bracket, and a kinked larger part is halved.
        ``judge_part(a_part, stencil)`` says whether a part is wrong. Returns ``("wrong",
        detail)`` at the first wrong part, ``("ok", (lo, hi, error))`` (the sums of the
        parts) when every part is right, or None when ``max_parts`` run out first.
        """
        d = dict(self.dirs[k].items())  # materialized once for the whole split
        support = [(i, j) for i, di in d.items() for j in np.flatnonzero(di)]
        lo = hi = err = 0.0
        pending = [support]
        for _ in range(max_parts):
            if not pending:
                return "ok", (lo, hi, err)
            part = pending.pop()
            sub = {i: np.zeros_like(di) for i, di in d.items()}
            for i, j in part:
                sub[i][j] = d[i][j]
            st = _numerical.directional(self.evaluator, [sub], self.run.options.richardson)
            if not np.isfinite(st.estimate[0]) or st.rough[0]:
                return None
            if st.kink[0] and len(part) > 1:
                half = len(part) // 2
                pending.extend([part[half:], part[:half]])
                continue
            a_part = sum(float(self.analytic[i][j] * d[i][j]) for i, j in part)
            if judge_part(np.array([a_part]), st):
                where = part[0] if len(part) == 1 else f"{len(part)} elements"
                return "wrong", f"direction {k}, restricted to {where}: analytic {a_part:.10g}, numerical {_describe(st)}"
            lo += st.lo[0] if st.kink[0] else st.estimate[0]
            hi += st.hi[0] if st.kink[0] else st.estimate[0]
            err += st.rounding[0] if st.kink[0] else st.error[0]
        return ("ok", (lo, hi, err)) if not pending else None


def _describe(st):
    if st.kink[0]:
        return f"kink, one-sided in [{st.lo[0]:.10g}, {st.hi[0]:.10g}]"
    return f"{st.estimate[0]:.10g} (error estimate {st.error[0]:.3g})"


# Steps of the float64 probe, in units of each element's scale: two far below float32's
# resolution (2**-24) and far above float64's (2**-52), and two above float32's.
QUANTIZATION_STEPS = (2.0**-36, 2.0**-35, 2.0**-12, 2.0**-11)
# Fine and coarse slopes further apart than this (relative) mean fn quantizes its input,
# when each pair agrees within itself to a tenth of it and the fine steps move phi by
# QUANTIZATION_RESOLVED times its modelled rounding or more.
QUANTIZATION_RTOL = 0.05
QUANTIZATION_RESOLVED = 16.0


def _quantization(evaluator, i, host, seed):
    """``(fine, coarse)`` slopes of ``phi`` when ``fn`` loses the low bits of input ``i``, else None.

    Asked only where a comparison failed (see :meth:`_CheckRun._explain_failures`), along
    one random direction with steps relative to each element. For a function that runs in
    float64, centered differences agree at steps of 2**-36 and of 2**-12. A float32 buffer
    inside ``fn`` makes the path through it constant below 2**-24: the slopes at 2**-36
    and 2**-35 then agree with each other, those at 2**-12 and 2**-11 with each other, and
    the two pairs differ. The probe says nothing unless

    * both pairs settle (a jump, noise or curvature at the coarse steps unsettles them);
    * the one-sided slopes at the fine step agree (no kink at ``x`` along the direction);
    * the coarse slope would move ``phi`` far above rounding at the fine steps (an output
      that would barely move there only shows rounding; one that does not move at all,
      though it should, is quantized);
    * the one-sided slopes at the coarse step both differ from the fine slope: a kink
      between the scales (within about 5e-4 of ``x`` relative) lies on one side and leaves
      the other side's slope equal to the fine one. Two such kinks on opposite sides could
      still read as quantization; as the probe only explains failures, that can turn a
      blame into this finding, never a failure into a pass.
    """
    rng = np.random.default_rng([seed, 2, i])
    # Steps relative to each element alone: the commonest kinks (at 0) stay out of reach,
    # and float32's rounding is relative too. Zeros are left alone (float32 holds 0 + t).
    # Random sizes too: with steps of exactly +-|x| the slopes of a sum of logs are +-1 each
    # and cancel to an exact 0 at every scale, which reads like a constant path.
    d = rng.choice([-1.0, 1.0], size=host.size) * rng.uniform(0.5, 1.5, size=host.size) * np.abs(host)
    if not d.any():
        return None
    steps = np.array([s * sign for s in QUANTIZATION_STEPS for sign in (1.0, -1.0)])
    diff, moved = evaluator.phi(steps.size, lambda start, stop: {i: _numerical.Dense(steps[start:stop, None] * d[None, :])})
    if not np.all(np.isfinite(diff)):
        return None  # a step left fn's domain: no evidence either way
    fine, finer, coarse, coarser = ((diff[2 * k] - diff[2 * k + 1]) / (2 * t) for k, t in enumerate(QUANTIZATION_STEPS))
    # The fine steps would move phi far above rounding if the coarse slope held there (an
    # output that would barely move at 2**-36 only shows rounding).
    resolved = np.all(abs(coarse) * np.repeat(QUANTIZATION_STEPS[:2], 2) > QUANTIZATION_RESOLVED * evaluator.noise(moved[:4]))

    # The rounding of a one-sided slope at the fine and at the coarse step: slopes that
    # cancel to about 0 agree within it, not within a relative tolerance of 0.
    fine_noise = float(np.max(evaluator.noise(moved[:2]))) / QUANTIZATION_STEPS[0]
    coarse_noise = float(np.max(evaluator.noise(moved[4:6]))) / QUANTIZATION_STEPS[2]

    def agree(a, b, rtol, atol=0.0):
        return abs(a - b) <= rtol * max(abs(a), abs(b)) + atol

    settled = agree(fine, finer, 0.1 * QUANTIZATION_RTOL, 2 * fine_noise) and agree(coarse, coarser, 0.1 * QUANTIZATION_RTOL, 2 * coarse_noise)
    # A kink at x itself shows as one-sided slopes that differ already at the fine step.
    smooth = agree(diff[0] / QUANTIZATION_STEPS[0], -diff[1] / QUANTIZATION_STEPS[0], 0.5 * QUANTIZATION_RTOL, 2 * fine_noise)
    # A kink between the scales lies on one side: the one-sided slope of the other side
    # still agrees with the fine slope. Quantization changes both sides alike.
    right, left = diff[4] / QUANTIZATION_STEPS[2], -diff[5] / QUANTIZATION_STEPS[2]
    between = fine_noise + coarse_noise
    both_sides = not agree(fine, right, QUANTIZATION_RTOL, between) and not agree(fine, left, QUANTIZATION_RTOL, between)
    if resolved and settled and smooth and both_sides and not agree(fine, coarse, QUANTIZATION_RTOL):
        return fine, coarse
    return None


class _Direction(Mapping):
    """A random signed direction ``{i: signs_i * scale_i}``, stored as int8 signs.

    Materialized one input at a time when read, so that a few directions over a large
    input cost a fraction of it, not a few copies.
    """

    def __init__(self, signs, hosts, rms):
        self.signs, self.hosts, self.rms = signs, hosts, rms

    def __getitem__(self, i):
        # _numerical.step_scale with the input's rms computed once: one array, no temporaries.
        d = np.abs(self.hosts[i])
        np.maximum(d, self.rms[i], out=d)
        d *= self.signs[i]
        return d

    def __iter__(self):
        return iter(self.signs)

    def __len__(self):
        return len(self.signs)


def _along(analytic, d, wrt):
    """``(<grad, d>, <|grad|, |d|>)`` for direction ``d``, each input's part materialized once."""
    slope = terms = 0.0
    for i in wrt:
        di = d[i]
        slope += float(analytic[i] @ di)
        terms += float(np.abs(analytic[i]) @ np.abs(di, out=di))
    return slope, terms


def _resolution(st):
    """The gradient's own size for the resolution rule (see :func:`gradverify._verdict.judge`).

    Its largest finite difference (the truth is not used: one that does not hold up must not
    widen the rule); but where the whole gradient is zero within the differences' own error
    (``x**3`` at 0), that error: the elements are then verified to be zero at the resolution
    the differences have.
    """
    errors = 2 * st.error[np.isfinite(st.error)]
    return max(_numerical.gradient_size(st.estimate), float(np.median(errors)) if errors.size else 0.0)


def _host64(x):
    """A flat float64 host view of ``x`` (a copy only where the dtype or device needs one)."""
    return np.asarray(_backend.to_numpy(x), dtype=np.float64).reshape(-1)


def _spot_budget(phi):
    """How many disputed elements of one input get a truth when not all of them do."""
    if phi is None:
        return SPOT_TRUTH_MIN
    per_element = EVALUATIONS_PER_ELEMENT * max(phi.seconds_per_call, 1e-6)
    return int(np.clip(SPOT_TRUTH_SECONDS / per_element, SPOT_TRUTH_MIN, SPOT_TRUTH_MAX))


# -- helpers ----------------------------------------------------------------------------


def _judged(evidence, n):
    """``(center, bound, kink, lo, hi, by_truth)``: the float64 judge's value per element (the
    truth where there is one, else the finite difference; NaN where neither is finite), its
    error bound (0 for the truth, twice the difference's estimate, its rounding at a kink) and
    the kink brackets."""
    st, tv = evidence.fd, evidence.truth
    by_truth = tv.has_truth if tv is not None else np.zeros(n, dtype=bool)
    with np.errstate(invalid="ignore"):
        fd_bound = np.where(st.rough | ~np.isfinite(st.estimate), np.inf, 2 * np.where(st.kink, st.rounding, st.error))
    center = np.where(by_truth, tv.center if tv is not None else np.nan, st.estimate)
    kink = np.where(by_truth, tv.kink if tv is not None else False, st.kink & ~st.rough)
    lo = np.where(by_truth, tv.lo if tv is not None else np.nan, st.lo)
    hi = np.where(by_truth, tv.hi if tv is not None else np.nan, st.hi)
    return center, np.where(by_truth, 0.0, fd_bound), kink, lo, hi, by_truth


def _reproduce(origin, inputs, options):
    """The reproduce line, with ``reference=`` written by its importable name where it has one."""
    ref = options.reference
    where = importable(ref) if ref is not None else None
    text = options.reproduce_args(reference_name=where[1] if where else "reference")
    line = reproduce_line(origin.entry, origin.callables, origin.placeholders, inputs, origin.cotangent, text)
    if ref is None:
        return line
    if where is None:
        sep = "; " if "  # with the same" in line else "  # with the same reference: "
        return f"{line}{sep}reference ({_name_of(ref)}) cannot be imported by name"
    statement = f"from {where[0]} import {where[1].split('.')[0]}"
    if line.startswith("import gradverify;"):
        head, _, call = line.rpartition("; print(")
        return f"{head}; {statement}; print({call}"
    return f"{statement}; {line}"


def _split_forward(result):
    if not isinstance(result, tuple) or len(result) != 2:
        raise InvalidArgument("forward must return (out, cache), a tuple of two; got " + type(result).__name__)
    return result


def _name_of(f):
    return getattr(f, "__qualname__", None) or getattr(f, "__name__", None) or repr(f)


def _require_callable(f, name):
    if not callable(f):
        raise InvalidArgument(f"{name} must be callable, got {type(f).__name__}")
