"""Structural checks: each way a function or its VJP can be malformed has its own clear failure."""

import array_api_strict
import numpy as np
import pytest
from array_api_compat import array_namespace

import gradverify
from gradverify import check_grad, check_vjp


def _ns(*xs):
    return array_namespace(*xs)


def _arr(xp, values):
    return xp.asarray(np.asarray(values, dtype=np.float64))


def _square(x):
    return x * x


def _square_vjp(v, x):
    return (2 * v * x,)


def _structural(result, kind):
    """Assert ``kind`` was found, fails the result and shows in the report; return the failure."""
    found = [s for s in result.structural if s.kind == kind]
    assert found, str(result)
    assert result.passed is False
    assert f"STRUCTURAL {kind}" in str(result)
    return found[0]


# -- non-finite inputs and outputs ------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_nonfinite_input_names_the_index(xp, bad):
    """A NaN/Inf input is refused before fn runs, naming the input and the element."""
    x = _arr(xp, [[1.0, 2.0], [bad, 4.0]])
    result = check_vjp(_square, _square_vjp, x)
    failure = _structural(result, "nonfinite_input")
    assert failure.input == 0
    assert "input 0" in failure.message and "(1, 0)" in failure.message
    assert result.evaluations["fn"] == 0
    assert result.per_input == []


@pytest.mark.parametrize("op", ["sqrt", "reciprocal"])
def test_nonfinite_output(xp, op):
    """fn giving NaN (sqrt of a negative) or Inf (1/0) at a finite input is reported with the output index."""
    x = _arr(xp, [1.0, 0.0 if op == "reciprocal" else -1.0, 4.0])
    fn = (lambda x: _ns(x).sqrt(x)) if op == "sqrt" else (lambda x: 1.0 / x)
    with np.errstate(all="ignore"):
        result = check_vjp(fn, lambda v, x: (v * x,), x)
    failure = _structural(result, "nonfinite_output")
    assert "output index (1,)" in failure.message
    assert result.per_input == []


# -- mutation -----------------------------------------------------------------------------


def test_fn_mutating_its_input_is_reported_without_blaming_the_gradient(xp):
    """fn scaling its input in place -> fn_mutates_input on input 0, blame None (the vjp is not at fault)."""

    def fn(x):
        out = x * x
        x *= 2.0
        return out

    result = check_vjp(fn, _square_vjp, _arr(xp, [0.5, -1.0, 2.0]), truth="off")
    failure = _structural(result, "fn_mutates_input")
    assert failure.input == 0 and failure.blame is None
    assert "fn changed input 0 in place" in failure.message


def test_vjp_mutating_an_input_blames_the_analytic_side(xp):
    """A vjp that returns the right value but scales x in place -> vjp_mutates_input, blame analytic."""

    def vjp(v, x):
        g = 2 * v * x
        x *= 2.0
        return (g,)

    result = check_vjp(_square, vjp, _arr(xp, [0.5, -1.0, 2.0]), truth="off")
    failure = _structural(result, "vjp_mutates_input")
    assert failure.input == 0 and failure.blame == "analytic"
    assert result.blame == "analytic"


def test_vjp_mutating_the_cotangent(xp):
    """A vjp that adds to the cotangent in place -> vjp_mutates_cotangent, blame analytic."""

    def vjp(v, x):
        g = 2 * v * x
        v += 1.0
        return (g,)

    result = check_vjp(_square, vjp, _arr(xp, [0.5, -1.0, 2.0]), truth="off")
    failure = _structural(result, "vjp_mutates_cotangent")
    assert failure.blame == "analytic" and failure.input is None
    assert result.blame == "analytic"


# -- determinism --------------------------------------------------------------------------


def test_fn_drawing_from_a_closed_over_generator_is_nondeterministic(xp):
    """fn adding noise from a generator it never reseeds -> fn_nondeterministic."""
    rng = np.random.default_rng(0)

    def fn(x):
        noise = _ns(x).asarray(rng.standard_normal(tuple(x.shape)) * 1e-3, device=x.device)
        return x * x + noise

    result = check_vjp(fn, _square_vjp, _arr(xp, [0.5, -1.0, 2.0]), truth="off")
    failure = _structural(result, "fn_nondeterministic")
    assert failure.blame is None
    assert "deterministic" in failure.message


def test_vjp_nondeterministic(xp):
    """A vjp adding fresh noise on every call -> vjp_nondeterministic, blame analytic."""
    rng = np.random.default_rng(0)

    def vjp(v, x):
        noise = _ns(x).asarray(rng.standard_normal(tuple(x.shape)) * 1e-3, device=x.device)
        return (2 * v * x + noise,)

    result = check_vjp(_square, vjp, _arr(xp, [0.5, -1.0, 2.0]), truth="off")
    failure = _structural(result, "vjp_nondeterministic")
    assert failure.blame == "analytic"
    assert result.blame == "analytic"


# -- malformed gradients ------------------------------------------------------------------


def test_gradient_of_the_wrong_shape(xp):
    """A gradient one element short -> gradient_shape naming both shapes; no numbers compared."""
    result = check_vjp(_square, lambda v, x: ((2 * v * x)[:-1],), _arr(xp, [0.5, -1.0, 2.0, 3.0]))
    failure = _structural(result, "gradient_shape")
    assert failure.input == 0 and failure.blame == "analytic"
    assert "(3,)" in failure.message and "(4,)" in failure.message
    assert result.per_input == []


def test_float32_gradient_for_a_float64_input(xp):
    """A float32 gradient of a float64 input -> gradient_dtype naming both dtypes."""
    result = check_vjp(_square, lambda v, x: (_ns(x).astype(2 * v * x, _ns(x).float32),), _arr(xp, [0.5, -1.0]))
    failure = _structural(result, "gradient_dtype")
    assert failure.input == 0 and failure.blame == "analytic"
    assert "float32" in failure.message and "float64" in failure.message


@pytest.mark.parametrize(
    "vjp, says",
    [
        (lambda v, x, y: (v * y,), "1 gradients for 2 inputs"),
        (lambda v, x, y: (v * y, v * x, v * x), "3 gradients for 2 inputs"),
        (lambda v, x, y: v * y, "an array"),
    ],
    ids=["too-few", "too-many", "bare-array"],
)
def test_gradient_tuple_of_the_wrong_arity(xp, vjp, says):
    """vjp must return exactly one gradient per input, as a tuple -> vjp_arity otherwise."""
    x, y = _arr(xp, [0.5, -1.0]), _arr(xp, [2.0, 3.0])
    result = check_vjp(lambda x, y: x * y, vjp, x, y)
    failure = _structural(result, "vjp_arity")
    assert failure.blame == "analytic"
    assert says in failure.message
    assert result.per_input == []


def test_none_for_a_differentiated_input(xp):
    """None for an input in wrt -> gradient_type on that input (None is only allowed outside wrt)."""
    x, y = _arr(xp, [0.5, -1.0]), _arr(xp, [2.0, 3.0])
    result = check_vjp(lambda x, y: x * y, lambda v, x, y: (v * y, None), x, y)
    failure = _structural(result, "gradient_type")
    assert failure.input == 1 and failure.blame == "analytic"
    assert "NoneType" in failure.message


def test_nan_gradient_where_fn_is_finite(xp):
    """A NaN in the gradient at a point where fn is finite -> nonfinite_gradient with the index."""
    nan_at_2 = _arr(xp, [0.0, 0.0, np.nan, 0.0])
    result = check_vjp(_square, lambda v, x: (2 * v * x + nan_at_2,), _arr(xp, [0.5, -1.0, 2.0, 3.0]))
    failure = _structural(result, "nonfinite_gradient")
    assert failure.input == 0 and failure.blame == "analytic"
    assert "index (2,)" in failure.message


def test_gradient_ignoring_the_cotangent(xp):
    """A gradient that is nonzero for a zero cotangent -> ignores_cotangent on that input."""
    result = check_vjp(_square, lambda v, x: (2 * v * x + 1.0,), _arr(xp, [0.5, -1.0, 2.0]))
    failure = _structural(result, "ignores_cotangent")
    assert failure.input == 0 and failure.blame == "analytic"
    assert "zero cotangent" in failure.message
    assert result.blame == "analytic"


def test_gradient_on_another_device():
    """array-api-strict: a gradient returned on device1 for an input on the default device -> gradient_device."""
    xs = array_api_strict
    other = xs.Device("device1")
    x = xs.asarray(np.array([0.5, -1.0, 2.0]))
    assert x.device != other
    result = check_vjp(_square, lambda v, x: (xs.asarray(2 * v * x, device=other),), x)
    failure = _structural(result, "gradient_device")
    assert failure.input == 0 and failure.blame == "analytic"
    assert "device1" in failure.message
    assert result.per_input == []


def test_inputs_on_a_non_default_device_pass():
    """Control for the device check: everything on device1 is consistent and passes."""
    xs = array_api_strict
    x = xs.asarray(np.array([0.5, -1.0, 2.0]), device=xs.Device("device1"))
    result = check_vjp(_square, _square_vjp, x)
    assert result.passed, str(result)
    assert result.structural == []


# -- user code raising --------------------------------------------------------------------


class _Boom(RuntimeError):
    pass


@pytest.mark.parametrize("who", ["fn", "vjp"])
def test_user_code_raising_is_wrapped_with_its_cause(xp, who):
    """fn or vjp raising -> UserFunctionError naming the original, chained as __cause__."""
    boom = _Boom("kaboom in user code")

    def raises(*args):
        raise boom

    fn, vjp = (raises, _square_vjp) if who == "fn" else (_square, raises)
    with pytest.raises(gradverify.UserFunctionError) as info:
        check_vjp(fn, vjp, _arr(xp, [0.5, -1.0]))
    assert info.value.__cause__ is boom
    message = str(info.value)
    assert message.startswith(f"{who} raised")
    assert "_Boom" in message and "kaboom in user code" in message


# -- integer inputs -----------------------------------------------------------------------


def test_integer_input_named_in_wrt_is_refused(xp):
    """Asking to differentiate an integer input -> InvalidArgument naming it, its dtype and the fix."""
    x, labels = _arr(xp, [[0.5, -1.0], [2.0, 3.0]]), xp.asarray(np.array([0, 1]))
    with pytest.raises(gradverify.InvalidArgument) as info:
        check_vjp(lambda x, k: x * 2.0, lambda v, x, k: (2.0 * v, None), x, labels, wrt=(0, 1))
    message = str(info.value)
    assert "input 1" in message and "int64" in message
    assert "leave it out of wrt" in message


def _onehot(x, labels):
    xp = _ns(x)
    return xp.astype(labels[:, None] == xp.arange(x.shape[-1])[None, :], x.dtype)


def _cross_entropy(x, labels):
    xp = _ns(x)
    z = x - xp.max(x, axis=-1, keepdims=True)
    log_p = z - xp.log(xp.sum(xp.exp(z), axis=-1, keepdims=True))
    return -xp.sum(_onehot(x, labels) * log_p) / x.shape[0]


def _cross_entropy_grad(x, labels, scale_by_batch=True):
    xp = _ns(x)
    e = xp.exp(x - xp.max(x, axis=-1, keepdims=True))
    d = e / xp.sum(e, axis=-1, keepdims=True) - _onehot(x, labels)
    return d / x.shape[0] if scale_by_batch else d


@pytest.mark.parametrize("correct", [True, False], ids=["correct", "not-divided-by-batch"])
@pytest.mark.parametrize("labels_as", ["input", "closure"])
def test_cross_entropy_with_integer_labels(xp, labels_as, correct):
    """Integer labels, passed as an input (default wrt skips them) or closed over: only the logits are checked."""
    rng = np.random.default_rng(3)
    x = _arr(xp, rng.standard_normal((4, 5)))
    labels = xp.asarray(np.array([0, 3, 1, 4]))
    if labels_as == "input":
        result = check_grad(_cross_entropy, lambda x, k: (_cross_entropy_grad(x, k, correct), None), x, labels)
    else:
        result = check_grad(lambda x: _cross_entropy(x, labels), lambda x: _cross_entropy_grad(x, labels, correct), x)
    assert [p.index for p in result.per_input] == [0], str(result)
    assert result.structural == []
    assert result.passed is correct, str(result)
    assert result.blame == (None if correct else "analytic"), str(result)
