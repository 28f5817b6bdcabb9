"""The checks that need no finite difference, as one function that returns findings.

:func:`inspect` calls ``fn`` and ``vjp`` a few times on the caller's inputs and reports what
it saw: the output, the gradients, and a list of :class:`StructuralFailure` (mutation,
determinism, arity, shapes, dtypes, devices, a backward that ignores its cotangent,
non-finite values). Whatever it finds, the numbers that follow are computed from the
caller's own values: copies of the inputs and of the cotangent taken before any call, never
what a mutating ``fn`` or ``vjp`` left behind. A bad gradient for one input (wrong shape,
``None``) makes that input unusable, not the others.
"""

from dataclasses import dataclass, field

import numpy as np

from gradverify import _backend
from gradverify._errors import InvalidArgument
from gradverify._result import StructuralFailure


@dataclass
class Observed:
    """What the structural pass saw. ``usable`` lists the wrt inputs whose gradient can be compared."""

    findings: list = field(default_factory=list)
    inputs: list | None = None  # the caller's values (copies where fn or vjp mutated them)
    out: object = None
    v: object = None  # the cotangent as the caller passed (or gradverify drew) it
    grads: dict = field(default_factory=dict)
    usable: list = field(default_factory=list)
    # With nondeterministic=True: per usable input, the largest minus the smallest value of
    # each gradient element over the repeated calls of vjp (float64, on the host).
    spread: dict = field(default_factory=dict)
    fn_spread: float | None = None  # the same for fn's output, its largest element

    def fail(self, kind, message, i=None, blame=None):
        self.findings.append(StructuralFailure(kind=kind, message=message, input=i, blame=blame))

    @property
    def numbers_possible(self):
        return self.out is not None and bool(self.usable)


def inspect(call, fn, vjp, inputs, *, wrt, floating, cotangent, seed, xp, device, repeats=2, nondeterministic=False):
    """Run the structural checks; ``call(what, f, *args)`` calls the code under test.

    ``fn`` and ``vjp`` each run ``repeats`` times on the same arguments and must agree bitwise,
    unless ``nondeterministic``: then the spread of the results is measured instead
    (:attr:`Observed.spread`, :attr:`Observed.fn_spread`).
    """
    seen = Observed(inputs=list(inputs))
    for i, x in enumerate(inputs):
        if floating[i] and not bool(xp.all(xp.isfinite(x))):
            seen.fail("nonfinite_input", f"input {i} holds NaN or Inf at index {first_bad(xp, x)}; gradients are checked at finite points", i)
    if seen.findings:
        return seen
    copies = [xp.asarray(x, copy=True) for x in inputs]
    out = call("fn", fn, *inputs)
    if not is_array_of(xp, out):
        msg = f"fn returned a {type(out).__name__}, not an array of the inputs' library; return an array (for a scalar function use check_grad)"
        raise InvalidArgument(msg)
    if not _backend.is_real_floating(xp, out.dtype):
        raise InvalidArgument(f"fn returned dtype {_backend.dtype_name(out.dtype)}; a differentiable function returns real floating values")
    _backend.validate_output(out)
    _mutations(seen, copies, "fn", xp)
    if not bool(xp.all(xp.isfinite(out))):
        seen.fail("nonfinite_output", f"fn returned NaN or Inf at output index {first_bad(xp, out)}")
        return seen
    differ = 0
    lo_out = hi_out = None
    for _ in range(repeats - 1):
        again_out = call("fn", fn, *seen.inputs)
        if not same(xp, out, again_out):
            differ += 1
            if nondeterministic:
                host = _host(again_out)
                lo_out = np.minimum(_host(out) if lo_out is None else lo_out, host)
                hi_out = np.maximum(_host(out) if hi_out is None else hi_out, host)
        del again_out  # an output-sized array: not held through the calls of vjp
    if nondeterministic:
        seen.fn_spread = float(np.max(hi_out - lo_out, initial=0.0)) if lo_out is not None else 0.0
    elif differ:
        msg = (
            f"{_of(differ, repeats)} calls of fn on the same inputs gave different outputs; make it deterministic (seed any randomness,"
            " e.g. pass the dropout mask), or pass nondeterministic=True for an op that is nondeterministic by design (atomics)"
        )
        seen.fail("fn_nondeterministic", msg)
    v = _cotangent(cotangent, out, seed, xp, device)
    # The caller's cotangent is copied, to see whether vjp writes into it; one drawn here is
    # drawn again instead: an output-sized array less while vjp runs.
    v_copy = xp.asarray(v, copy=True) if cotangent is not None else None
    grads = call("vjp", vjp, v, *seen.inputs)
    mutates = _mutations(seen, copies, "vjp", xp)
    del copies
    original = v_copy if v_copy is not None else _cotangent(None, out, seed, xp, device)
    del v_copy
    if not same(xp, v, original):
        seen.fail("vjp_mutates_cotangent", "vjp changed the cotangent in place; work on a copy", blame="analytic")
        v = original  # the numbers use the cotangent as it was passed in
    del original
    if not _arity(seen, grads, len(inputs), xp):
        return seen
    seen.out, seen.v = out, v
    seen.grads = {i: grads[i] for i in wrt}
    seen.usable = [i for i in wrt if _gradient_usable(seen, i, grads[i], seen.inputs[i], xp, device)]

    def fresh():  # a vjp that changes its inputs gets copies, so that the numbers keep the caller's
        return [xp.asarray(x, copy=True) for x in seen.inputs] if mutates else seen.inputs

    differ = 0
    lo = {i: None for i in seen.usable}
    hi = {i: None for i in seen.usable}
    for _ in range(repeats - 1):
        again = call("vjp", vjp, xp.asarray(seen.v, copy=True), *fresh())
        if _tuple_same(xp, grads, again, seen.usable):
            del again  # gradient-sized: not held through the next call
            continue
        differ += 1
        if nondeterministic and isinstance(again, (tuple, list)) and len(again) == len(grads):
            for i in seen.usable:
                g = again[i]
                if not is_array_of(xp, g) or tuple(g.shape) != tuple(grads[i].shape):
                    continue
                host, first = _host(g), _host(grads[i])
                lo[i] = np.minimum(first if lo[i] is None else lo[i], host)
                hi[i] = np.maximum(first if hi[i] is None else hi[i], host)
        del again
    if nondeterministic:
        seen.spread = {i: (hi[i] - lo[i] if lo[i] is not None else np.zeros(int(np.prod(grads[i].shape)))) for i in seen.usable}
    elif differ:
        msg = (
            f"{_of(differ, repeats)} calls of vjp on the same arguments gave different gradients; make it deterministic, or pass"
            " nondeterministic=True for a backward that is nondeterministic by design (atomics): its spread then joins the error budget"
        )
        seen.fail("vjp_nondeterministic", msg, blame="analytic")
    zero = call("vjp", vjp, xp.zeros_like(seen.v), *fresh())
    for i in seen.usable:
        g = zero[i] if isinstance(zero, (tuple, list)) and len(zero) == len(inputs) else None
        if is_array_of(xp, g) and tuple(g.shape) == tuple(seen.inputs[i].shape) and not bool(xp.all(g == 0)):
            worst = float(xp.max(xp.abs(g)))
            msg = f"a zero cotangent gave a nonzero gradient for input {i} (max |g| = {worst:.3g}); the backward must multiply by the upstream gradient"
            seen.fail("ignores_cotangent", msg, i, blame="analytic")
    return seen


def _of(differ, repeats):
    """``"two"`` for the old two-call check, else how many of the repeated calls differed."""
    return "two" if repeats == 2 else f"{differ} of {repeats - 1} repeated (of {repeats})"


def _host(x):
    return np.asarray(_backend.to_numpy(x), dtype=np.float64).reshape(-1)


def _mutations(seen, copies, who, xp):
    """Record each input ``who`` changed in place and go on from the caller's values; True if any."""
    changed = False
    for i, (x, c) in enumerate(zip(seen.inputs, copies)):
        if not same(xp, x, c):
            seen.fail(f"{who}_mutates_input", f"{who} changed input {i} in place; work on a copy", i, blame="analytic" if who == "vjp" else None)
            seen.inputs[i] = xp.asarray(c, copy=True)  # go on from the values the caller passed
            changed = True
    return changed


def _cotangent(v, out, seed, xp, device):
    if v is None:
        rng = np.random.default_rng(seed)
        drawn = rng.standard_normal(size=tuple(out.shape))
        return xp.astype(xp.asarray(drawn, device=device), out.dtype)
    if not is_array_of(xp, v):
        raise InvalidArgument(f"cotangent is a {type(v).__name__}; pass an array of the inputs' library shaped like fn's output {tuple(out.shape)}")
    if not _backend.is_real_floating(xp, v.dtype):
        raise InvalidArgument(f"cotangent has dtype {_backend.dtype_name(v.dtype)}; pass a real floating array")
    _backend.validate_cotangent(v, tuple(out.shape))
    return v


def _arity(seen, grads, n, xp):
    if not isinstance(grads, (tuple, list)):
        got = "an array" if is_array_of(xp, grads) else f"a {type(grads).__name__}"
        seen.fail("vjp_arity", f"vjp returned {got}; it must return a tuple with one gradient per input ({n}), e.g. (dx,)", blame="analytic")
        return False
    if len(grads) != n:
        seen.fail("vjp_arity", f"vjp returned {len(grads)} gradients for {n} inputs; return one per input (None for one not differentiated)", blame="analytic")
        return False
    return True


def _gradient_usable(seen, i, g, x, xp, device):
    where = f"the gradient of input {i}"
    if not is_array_of(xp, g):
        seen.fail("gradient_type", f"{where} is {type(g).__name__}, not an array of the inputs' library", i, "analytic")
        return False
    if tuple(g.shape) != tuple(x.shape):
        seen.fail("gradient_shape", f"{where} has shape {tuple(g.shape)}, the input has {tuple(x.shape)}", i, "analytic")
        return False
    if _backend.device_of(g) != device:
        seen.fail("gradient_device", f"{where} is on {_backend.device_of(g)}, the input on {device}", i, "analytic")
        return False
    if not _backend.is_real_floating(xp, g.dtype):
        seen.fail("gradient_dtype", f"{where} has non-floating dtype {_backend.dtype_name(g.dtype)}", i, "analytic")
        return False
    if g.dtype != x.dtype:
        seen.fail("gradient_dtype", f"{where} has dtype {_backend.dtype_name(g.dtype)}, the input has {_backend.dtype_name(x.dtype)}", i, "analytic")
    if not bool(xp.all(xp.isfinite(g))):
        seen.fail("nonfinite_gradient", f"{where} holds NaN or Inf at index {first_bad(xp, g)} where fn is finite", i, "analytic")
        return False
    return True


def is_array_of(xp, obj):
    if obj is None or not hasattr(obj, "shape"):
        return False
    try:
        return _backend.namespace_of(obj) is xp or _backend.backend_name(_backend.namespace_of(obj)) == _backend.backend_name(xp)
    except InvalidArgument:
        return False


def same(xp, a, b):
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
    return all(is_array_of(xp, second[i]) and same(xp, first[i], second[i]) for i in wrt)


def first_bad(xp, x):
    host = _backend.to_numpy(x)
    bad = np.argwhere(~np.isfinite(host))
    return tuple(int(j) for j in bad[0]) if bad.size else ()
