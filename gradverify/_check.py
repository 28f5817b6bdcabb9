"""``check_vjp`` and its conventions: structural checks, then numbers, then a verdict.

Defaults (documented in the README as well):

* ``mode="auto"``: full (every element) when the differentiated inputs hold at most
  ``FULL_MODE_MAX`` elements, else directional.
* ``truth="auto"``: per element when the differentiated inputs hold at most
  ``TRUTH_ELEMENTWISE_MAX`` elements; along the random directions when all inputs together
  hold at most ``TRUTH_DIRECTIONAL_MAX`` (plus, in full mode, per element for the
  ``TRUTH_SPOT_CHECKS`` worst elements the finite differences dispute); off beyond that,
  with the reason in the report.
  When the function cannot run on mpmath arrays, ``auto`` records why and goes on without
  a truth; an explicit ``truth="elementwise"`` or ``"directional"`` raises instead.
"""

import functools
import time

import numpy as np

from gradverify import _backend, _highprec, _numerical, _tolerances, _verdict
from gradverify._errors import GradVerifyError, HighPrecisionUnavailable, InvalidArgument, UserFunctionError, asserting
from gradverify._result import StructuralFailure, VerificationResult
from gradverify._truth import HighPrecisionPhi, TruthValues, confirm, element_scale, input_scale

FULL_MODE_MAX = 20_000
TRUTH_ELEMENTWISE_MAX = 64
TRUTH_DIRECTIONAL_MAX = 50_000
DEFAULT_DPS = 40
MODES = ("auto", "full", "directional")
TRUTHS = ("auto", "elementwise", "directional", "off")
# How many disputed elements get a per-element truth when the inputs are too large for all.
TRUTH_SPOT_CHECKS = 16


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
    max_batch_bytes=2**28,
    name=None,
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
    name : str, optional
        The function's name in the report.

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
    started = time.perf_counter()
    run = _Run(fn, vjp, inputs, wrt, cotangent, mode, batched, directions, truth, dps, rtol, richardson, seed, max_batch_bytes, name)
    return run.execute(started)


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
    return check_vjp(fn, vjp, *inputs, **options)


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

    if options.get("cotangent") is None and inputs:
        xp = _backend.namespace_of(*inputs)
        x0 = next((x for x in inputs if _backend.is_real_floating(xp, x.dtype)), inputs[0])
        options["cotangent"] = xp.ones((), dtype=x0.dtype, device=_backend.device_of(x0))
    options.setdefault("name", _name_of(f))
    return check_vjp(fn, vjp, *inputs, **options)


assert_vjp = asserting(check_vjp)
assert_layer = asserting(check_layer)
assert_grad = asserting(check_grad)


class _Run:
    """One check: validated arguments, the calls made so far, and the findings."""

    def __init__(self, fn, vjp, inputs, wrt, cotangent, mode, batched, directions, truth, dps, rtol, richardson, seed, max_batch_bytes, name):
        _require_callable(fn, "fn")
        _require_callable(vjp, "vjp")
        if not inputs:
            raise InvalidArgument("no inputs given: call check_vjp(fn, vjp, x, ...) with at least one array")
        _require_choice(mode, "mode", MODES)
        if truth is False or truth is None:
            truth = "off"
        elif truth is True:
            truth = "auto"
        _require_choice(truth, "truth", TRUTHS)
        _require_int(directions, "directions", 1)
        _require_int(dps, "dps", 30)
        _require_int(seed, "seed", 0)
        _require_int(max_batch_bytes, "max_batch_bytes", 1)
        if not isinstance(batched, bool):
            raise InvalidArgument(f"batched={batched!r} must be True or False")
        if not isinstance(richardson, bool):
            raise InvalidArgument(f"richardson={richardson!r} must be True or False")
        for i, x in enumerate(inputs):
            if not hasattr(x, "shape") or not hasattr(x, "dtype"):
                msg = (
                    f"input {i} is a {type(x).__name__}, not an array; pass arrays (e.g. "
                    "np.asarray(value)) or close over non-array arguments with functools.partial"
                )
                raise InvalidArgument(msg)
        self.xp = xp = _backend.namespace_of(*inputs)
        if xp is _highprec.namespace:
            raise InvalidArgument("inputs are mpmath arrays; pass float arrays, gradverify makes the high-precision copies")
        self.device = _backend.device_of(inputs[0])
        for i, x in enumerate(inputs):
            if _backend.device_of(x) != self.device:
                msg = f"input {i} is on {_backend.device_of(x)} but input 0 is on {self.device}; move all inputs to one device"
                raise InvalidArgument(msg)
        self.floating = [_backend.is_real_floating(xp, x.dtype) for x in inputs]
        self.wrt = self._resolve_wrt(wrt, inputs)
        self.rtols = {i: _tolerances.rtol_for(_backend.dtype_name(inputs[i].dtype), rtol) for i in self.wrt}
        self.fn, self.vjp, self.inputs = fn, vjp, list(inputs)
        self.cotangent = cotangent
        self.mode, self.truth, self.batched = mode, truth, batched
        self.directions, self.dps, self.seed = directions, dps, seed
        self.richardson, self.max_batch_bytes = richardson, max_batch_bytes
        self.name = name or _name_of(fn)
        self.structural = []
        self.calls = {"fn": 0, "vjp": 0, "fn_float64": 0, "fn_high_precision": 0}
        self.truth_used, self.truth_note = "off", ""

    def _resolve_wrt(self, wrt, inputs):
        if wrt is None:
            chosen = [i for i, fl in enumerate(self.floating) if fl]
            if not chosen:
                dtypes = ", ".join(_backend.dtype_name(x.dtype) for x in inputs)
                raise InvalidArgument(f"no floating-point input to differentiate (dtypes {dtypes}); pass float arrays")
            return chosen
        if isinstance(wrt, int):
            wrt = (wrt,)
        try:
            chosen = sorted({int(i) for i in wrt})
        except TypeError:
            raise InvalidArgument(f"wrt={wrt!r} must be a sequence of input positions, e.g. wrt=(0, 1)") from None
        for i in chosen:
            if not 0 <= i < len(inputs):
                raise InvalidArgument(f"wrt names input {i}, but there are {len(inputs)} inputs (positions 0..{len(inputs) - 1})")
            if not self.floating[i]:
                dtype = _backend.dtype_name(inputs[i].dtype)
                msg = (
                    f"input {i} has dtype {dtype} and cannot be differentiated; leave it out of wrt"
                    " (or close over it with functools.partial), or pass it as a real floating array"
                )
                raise InvalidArgument(msg)
        if not chosen:
            raise InvalidArgument("wrt is empty; name at least one input to differentiate")
        return chosen

    # -- calling the code under test -------------------------------------------------

    def _call(self, what, func, *args):
        self.calls[what] += 1
        try:
            return func(*args)
        except GradVerifyError:
            raise  # gradverify's own verdict on an argument, e.g. from check_layer's wrapper
        except Exception as exc:
            msg = f"{what} raised {type(exc).__name__}: {exc} (its traceback follows, as the cause)"
            raise UserFunctionError(msg) from exc

    def _fail(self, kind, message, i=None, blame=None):
        self.structural.append(StructuralFailure(kind=kind, message=message, input=i, blame=blame))

    # -- the check ---------------------------------------------------------------------

    def execute(self, started):
        reports = []
        if self._structural():
            reports = self._numerics()
        return self._result(reports, started)

    def _structural(self):
        """The checks that need no finite difference; False when numerics cannot follow."""
        xp, inputs = self.xp, self.inputs
        for i, x in enumerate(inputs):
            if self.floating[i] and not bool(xp.all(xp.isfinite(x))):
                self._fail("nonfinite_input", f"input {i} holds NaN or Inf at index {_first_bad(xp, x)}; gradients are checked at finite points", i)
        if self.structural:
            return False
        copies = [xp.asarray(x, copy=True) for x in inputs]
        out = self._call("fn", self.fn, *inputs)
        if not _is_array_of(xp, out):
            msg = f"fn returned a {type(out).__name__}, not an array of the inputs' library; return an array (for a scalar function use check_grad)"
            raise InvalidArgument(msg)
        if not _backend.is_real_floating(xp, out.dtype):
            raise InvalidArgument(f"fn returned dtype {_backend.dtype_name(out.dtype)}; a differentiable function returns real floating values")
        self.out = out
        if not bool(xp.all(xp.isfinite(out))):
            self._fail("nonfinite_output", f"fn returned NaN or Inf at output index {_first_bad(xp, out)}")
            return False
        self._check_mutation(copies, "fn")
        if not _same(xp, out, self._call("fn", self.fn, *inputs)):
            self._fail("fn_nondeterministic", "two calls of fn on the same inputs gave different outputs; make it deterministic (seed any randomness, e.g. pass the dropout mask)")
        v = self._cotangent(out)
        if v is None:
            return False
        v_copy = xp.asarray(v, copy=True)
        grads = self._grads(v, copies, v_copy)
        if grads is None:
            return False
        if not _tuple_same(xp, grads, self._call("vjp", self.vjp, v, *inputs), self.wrt):
            self._fail("vjp_nondeterministic", "two calls of vjp on the same arguments gave different gradients", blame="analytic")
        zero = self._call("vjp", self.vjp, xp.zeros_like(v), *inputs)
        for i in self.wrt:
            g = zero[i] if isinstance(zero, (tuple, list)) and len(zero) == len(inputs) else None
            if _is_array_of(xp, g) and not bool(xp.all(g == 0)):
                worst = float(xp.max(xp.abs(g)))
                msg = f"a zero cotangent gave a nonzero gradient for input {i} (max |g| = {worst:.3g}); the backward must multiply by the upstream gradient"
                self._fail("ignores_cotangent", msg, i, blame="analytic")
        self.v, self.grads = v, grads
        return True

    def _check_mutation(self, copies, who):
        for i, (x, c) in enumerate(zip(self.inputs, copies)):
            if not _same(self.xp, x, c):
                self._fail(f"{who}_mutates_input", f"{who} changed input {i} in place; work on a copy", i, blame="analytic" if who == "vjp" else None)
                self.inputs[i] = c  # go on from the values the caller passed

    def _cotangent(self, out):
        xp = self.xp
        if self.cotangent is None:
            rng = np.random.default_rng(self.seed)
            drawn = rng.standard_normal(size=tuple(out.shape))
            return xp.astype(xp.asarray(drawn, device=self.device), out.dtype)
        v = self.cotangent
        if not _is_array_of(xp, v):
            raise InvalidArgument(f"cotangent is a {type(v).__name__}; pass an array of the inputs' library shaped like fn's output {tuple(out.shape)}")
        if tuple(v.shape) != tuple(out.shape):
            raise InvalidArgument(f"cotangent has shape {tuple(v.shape)} but fn's output has shape {tuple(out.shape)}; they must match")
        if not _backend.is_real_floating(xp, v.dtype):
            raise InvalidArgument(f"cotangent has dtype {_backend.dtype_name(v.dtype)}; pass a real floating array")
        return v

    def _grads(self, v, copies, v_copy):
        xp, inputs = self.xp, self.inputs
        grads = self._call("vjp", self.vjp, v, *inputs)
        self._check_mutation(copies, "vjp")
        if not _same(xp, v, v_copy):
            self._fail("vjp_mutates_cotangent", "vjp changed the cotangent in place; work on a copy", blame="analytic")
        if not isinstance(grads, (tuple, list)):
            got = "an array" if _is_array_of(xp, grads) else f"a {type(grads).__name__}"
            self._fail("vjp_arity", f"vjp returned {got}; it must return a tuple with one gradient per input ({len(inputs)}), e.g. (dx,)", blame="analytic")
            return None
        if len(grads) != len(inputs):
            self._fail("vjp_arity", f"vjp returned {len(grads)} gradients for {len(inputs)} inputs; return one per input (None for one not differentiated)", blame="analytic")
            return None
        usable = True
        for i in self.wrt:
            g, x = grads[i], inputs[i]
            where = f"the gradient of input {i}"
            if not _is_array_of(xp, g):
                self._fail("gradient_type", f"{where} is {type(g).__name__}, not an array of the inputs' library", i, "analytic")
                usable = False
                continue
            if tuple(g.shape) != tuple(x.shape):
                self._fail("gradient_shape", f"{where} has shape {tuple(g.shape)}, the input has {tuple(x.shape)}", i, "analytic")
                usable = False
                continue
            if g.dtype != x.dtype:
                self._fail("gradient_dtype", f"{where} has dtype {_backend.dtype_name(g.dtype)}, the input has {_backend.dtype_name(x.dtype)}", i, "analytic")
            if _backend.device_of(g) != self.device:
                self._fail("gradient_device", f"{where} is on {_backend.device_of(g)}, the input on {self.device}", i, "analytic")
                usable = False
                continue
            if not _backend.is_real_floating(xp, g.dtype):
                self._fail("gradient_dtype", f"{where} has non-floating dtype {_backend.dtype_name(g.dtype)}", i, "analytic")
                usable = False
                continue
            if not bool(xp.all(xp.isfinite(g))):
                self._fail("nonfinite_gradient", f"{where} holds NaN or Inf at index {_first_bad(xp, g)} where fn is finite", i, "analytic")
                usable = False
        return grads if usable else None

    # -- numbers ------------------------------------------------------------------------

    def _numerics(self):
        xp = self.xp
        x64 = [_backend.float64_of(x, xp) if fl else x for x, fl in zip(self.inputs, self.floating)]
        v64 = _backend.float64_of(self.v, xp)
        self.calls["fn"] += 1
        try:
            evaluator = _numerical.PhiEvaluator(self.fn, x64, v64, xp=xp, batched=self.batched, max_batch_bytes=self.max_batch_bytes)
        except GradVerifyError:
            raise
        except Exception as exc:
            raise UserFunctionError(f"fn raised {type(exc).__name__} on the float64 copies of the inputs: {exc}") from exc
        if not _is_array_of(xp, evaluator.out) or tuple(evaluator.out.shape) != tuple(self.out.shape):
            raise InvalidArgument("fn returned a different shape for float64 inputs; the function must work in float64 as well as in the dtype under test")
        if self.batched:
            self._check_batched_claim(evaluator)
        hosts = {i: _backend.to_numpy(x64[i]).astype(np.float64).reshape(-1) for i in self.wrt}
        analytic = {i: _backend.to_numpy(self.grads[i]).astype(np.float64).reshape(-1) for i in self.wrt}
        total = sum(h.size for h in hosts.values())
        mode = self.mode if self.mode != "auto" else ("full" if total <= FULL_MODE_MAX else "directional")
        self.mode = mode
        truth = self._truth_side(x64, total)
        v_max = float(np.max(np.abs(_backend.to_numpy(v64)), initial=0.0))
        reports = []
        if mode == "full":
            reports = [self._full(evaluator, truth, i, hosts[i], analytic[i], v_max) for i in self.wrt]
        if mode == "directional" or self.truth_used == "directional":
            rng = np.random.default_rng([self.seed, 1])
            dirs = [{i: rng.choice([-1.0, 1.0], size=h.size) * _numerical.step_scale(h) for i, h in hosts.items()} for _ in range(self.directions)]
            reports.append(self._directional(evaluator, truth, dirs, analytic, v_max))
        self.calls["fn_float64"] = evaluator.calls - 1  # the first call is counted in "fn"
        return reports

    def _full(self, evaluator, truth, i, host, a, v_max):
        """Every element of input ``i``: finite differences, then the truth where there is one."""
        rtol, dtype = self.rtols[i], _backend.dtype_name(self.inputs[i].dtype)
        st = _numerical.elementwise(evaluator, i, host, self.richardson)
        target = _numerical.REFINE_FRACTION * rtol * np.maximum(np.abs(st.estimate), np.max(np.abs(st.estimate), initial=0.0) * 1e-3)
        _numerical.refine_elementwise(evaluator, i, host, self.richardson, st, target)
        recompute = None
        if truth is not None:
            recompute = functools.partial(self._truth_call, truth.elementwise, i, element_scale(host), input_scale(host))
        tv = recompute() if self.truth_used == "elementwise" else None
        largest = np.abs(tv.center if tv is not None else st.estimate).max(initial=0.0)
        natural = _tolerances.natural_size(evaluator.magnitude, v_max, _numerical.step_scale(host), largest)
        judge = functools.partial(_verdict.judge, a, st, rtol=rtol, eps=_tolerances.eps_for(dtype), natural=natural)
        verdicts = judge(tv)
        if tv is None and verdicts.disputed.any():
            if recompute is not None:
                # The truth costs too much for every element, but not for the few in dispute.
                order = np.argsort(-verdicts.badness, kind="stable")
                spot = np.sort(order[verdicts.disputed[order]][:TRUTH_SPOT_CHECKS])
                tv = TruthValues.unknown(a.size)
                tv.fill(spot, recompute(indices=spot))
                self.truth_note = f"per-element truth for the {spot.size} most disputed elements of input {i}"
            else:
                # No truth at all: an element blamed on the analytic side must keep its
                # finite difference at steps 16 times larger and smaller.
                _numerical.cross_check(evaluator, i, host, self.richardson, st, np.flatnonzero(verdicts.disputed & ~st.kink))
            verdicts = judge(tv)
        verdicts = self._confirmed(judge, verdicts, tv, recompute, rtol, natural)
        shape = tuple(self.inputs[i].shape)
        return _verdict.report(f"input {i}", i, shape, dtype, rtol, a, st, tv, verdicts, lambda k: tuple(int(j) for j in np.unravel_index(k, shape)))

    def _directional(self, evaluator, truth, dirs, analytic, v_max):
        """Random signed directions over all inputs at once: ``<grad, d>`` against ``phi'`` along ``d``."""
        st = _numerical.directional(evaluator, dirs, self.richardson)
        a = np.array([sum(float(analytic[i] @ d[i]) for i in self.wrt) for d in dirs])
        terms = np.array([sum(float(np.abs(analytic[i]) @ np.abs(d[i])) for i in self.wrt) for d in dirs])
        # A direction moves every element by its own scale: phi's natural rate of change along
        # it is phi's own magnitude (scale 1 in t).
        natural = _tolerances.natural_size(evaluator.magnitude, v_max, 1.0, terms)
        recompute = functools.partial(self._truth_call, truth.directional, dirs) if self.truth_used == "directional" else None
        tv = recompute() if recompute is not None else None
        rtol = max(self.rtols.values())
        dtype = _backend.dtype_name(self.inputs[self.wrt[0]].dtype)
        judge = functools.partial(_verdict.judge, a, st, rtol=rtol, eps=_tolerances.eps_for(dtype), natural=natural)
        verdicts = self._confirmed(judge, judge(tv), tv, recompute, rtol, natural)
        name = "all inputs (directional)" if self.mode == "directional" else "all inputs (directional truth)"
        return _verdict.report(name, None, (len(dirs),), dtype, rtol, a, st, tv, verdicts, lambda k: (int(k),))

    def _confirmed(self, judge, verdicts, tv, recompute, rtol, natural):
        """Verdicts after the truth has been re-derived at more digits where it contradicts."""
        doubtful = _verdict.suspicious(verdicts, rtol)
        if recompute is None or not doubtful.any():
            return verdicts
        confirm(tv, doubtful, recompute, self.dps, atol=1e-20 * natural * np.ones(doubtful.shape))
        return judge(tv)

    def _check_batched_claim(self, evaluator):
        """Two unperturbed rows must both reproduce the unbatched output."""
        i = self.wrt[0]
        diff, _ = evaluator.phi(2, lambda start, stop: {i: _numerical.OneHot(np.zeros(stop - start, dtype=int), np.zeros(stop - start))})
        if not np.all(np.abs(diff) <= 1e-12 * evaluator.magnitude):
            msg = (
                "batched=True, but fn with a leading batch axis of 2 on every input does not reproduce"
                f" the unbatched output (sum(v * (out_row - out)) = {diff.tolist()});"
                " pass batched=False or make fn map the batch axis"
            )
            raise InvalidArgument(msg)

    def _truth_side(self, x64, total):
        """Decide the truth mode and build the high-precision evaluator (or record why not)."""
        want = self.truth
        all_size = sum(int(np.prod(x.shape)) for x in x64)
        if want == "elementwise" and self.mode == "directional":
            raise InvalidArgument("truth='elementwise' compares every element, which needs mode='full'; pass truth='directional' with mode='directional'")
        if want == "auto":
            if total <= TRUTH_ELEMENTWISE_MAX and self.mode == "full":
                want = "elementwise"
            elif all_size <= TRUTH_DIRECTIONAL_MAX:
                want = "directional"
            else:
                self.truth_note = f"inputs hold {all_size} elements, more than the {TRUTH_DIRECTIONAL_MAX} the truth takes by default; pass truth='directional' to force it"
                return None
        if want == "off":
            self.truth_note = "turned off by the caller" if self.truth == "off" else self.truth_note
            return None
        hosts = [_backend.to_numpy(x) for x in x64]
        v = _backend.to_numpy(_backend.float64_of(self.v, self.xp)).astype(np.float64)
        try:
            phi = HighPrecisionPhi(self.fn, hosts, v, dps=self.dps, floating=self.floating)
        except HighPrecisionUnavailable as exc:
            if self.truth != "auto":
                raise
            self.truth_note = f"unavailable: {exc}"
            return None
        self.calls["fn_high_precision"] += 1
        self.truth_used = want
        return phi

    def _truth_call(self, method, *args, indices=None, extra_digits=0):
        values = method(*args, indices=indices, extra_digits=extra_digits)
        self.calls["fn_high_precision"] += 4 * values.center.size
        return values

    def _result(self, reports, started):
        failures = any(p.failures for p in reports) or any(s.blame == "analytic" for s in self.structural)
        unresolved = any(p.unresolved for p in reports)
        passed = not self.structural and not failures and not unresolved
        if failures:
            blame = "analytic"
        elif unresolved or any(p.numerical_off for p in reports):
            blame = "numerical"
        else:
            blame = None
        worst = [p.max_rel_analytic_truth if p.max_rel_analytic_truth is not None else p.max_rel_analytic_numerical for p in reports]
        reproduce = f"check_vjp({self.name}, ..., seed={self.seed}, mode={self.mode!r}, truth={self.truth!r}, dps={self.dps})"
        return VerificationResult(
            passed=passed,
            blame=blame,
            max_rel_error=float(max(worst, default=0.0)),
            per_input=reports,
            structural=self.structural,
            function=self.name,
            mode=self.mode,
            truth=self.truth_used,
            truth_note=self.truth_note,
            dps=self.dps,
            seed=self.seed,
            richardson=self.richardson,
            batched=self.batched,
            evaluations=dict(self.calls),
            seconds=time.perf_counter() - started,
            reproduce=reproduce,
        )


# -- helpers ----------------------------------------------------------------------------


def _split_forward(result):
    if not isinstance(result, tuple) or len(result) != 2:
        raise InvalidArgument("forward must return (out, cache), a tuple of two; got " + type(result).__name__)
    return result


def _name_of(f):
    return getattr(f, "__qualname__", None) or getattr(f, "__name__", None) or repr(f)


def _require_callable(f, name):
    if not callable(f):
        raise InvalidArgument(f"{name} must be callable, got {type(f).__name__}")


def _require_choice(value, name, choices):
    if value not in choices:
        raise InvalidArgument(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")


def _require_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidArgument(f"{name}={value!r} must be an integer >= {minimum}")


def _is_array_of(xp, obj):
    if obj is None or not hasattr(obj, "shape"):
        return False
    try:
        return _backend.namespace_of(obj) is xp or _backend.backend_name(_backend.namespace_of(obj)) == _backend.backend_name(xp)
    except InvalidArgument:
        return False


def _same(xp, a, b):
    """Bitwise equality, NaN equal to NaN."""
    if tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype:
        return False
    eq = a == b
    if _backend.is_real_floating(xp, a.dtype):
        eq = eq | (xp.isnan(a) & xp.isnan(b))
    return bool(xp.all(eq))


def _tuple_same(xp, first, second, wrt):
    if not isinstance(second, (tuple, list)) or len(second) != len(first):
        return False
    return all(_is_array_of(xp, second[i]) and _same(xp, first[i], second[i]) for i in wrt)


def _first_bad(xp, x):
    host = _backend.to_numpy(x)
    bad = np.argwhere(~np.isfinite(host))
    return tuple(int(j) for j in bad[0]) if bad.size else ()
