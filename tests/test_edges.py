"""Edges give named errors, never crashes (issue 9).

Empty inputs, ml_dtypes' bfloat16, ``np.matrix``, masked arrays, an ``fn`` whose output
shape depends on the dtype, degenerate cotangents, and ``python -W error``.

Two kinds of tests:

* tests of the validators in :mod:`gradverify._backend` (``validate_input``,
  ``validate_output``, ``validate_float64_output``, ``validate_cotangent``) and of the
  bfloat16 dtype helpers, which pass on their own;
* end-to-end tests through ``check_vjp`` in the section "needs the wiring in the engine":
  they pass once the engine calls those validators (see each test's comment for which).
"""

import functools
import warnings

import numpy as np
import pytest

import gradverify
from gradverify import InvalidArgument, UserFunctionError, _backend, _tolerances, check_grad, check_vjp, critical

ml_dtypes = pytest.importorskip("ml_dtypes")
bfloat16 = ml_dtypes.bfloat16


def _tanh_vjp(v, x):
    return (v * (1 - np.tanh(x) ** 2),)


def _escape(message):
    return message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace(".", r"\.")


@pytest.fixture
def no_pending_matrix_warning():
    """Constructing an np.matrix warns (PendingDeprecationWarning); not what is tested."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        yield


# -- validate_input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "message"),
    [
        ([1.0, 2.0], "input 3 is a list, not an array"),
        (np.zeros(0), "input 3 is empty (shape (0,)); a gradient check of zero elements cannot fail"),
        (np.zeros((3, 0)), "input 3 is empty (shape (3, 0))"),
        (np.zeros((0, 2), dtype=np.float32), "functools.partial"),
        (np.ma.array([0.5, 1.0, 2.0], mask=[0, 1, 0]), "input 3 is a numpy masked array with 1 masked element(s)"),
        (np.ma.array([0.5, 1.0, 2.0]), "input 3 is a numpy masked array (nothing masked)"),
        (np.ma.array([0.5, 1.0]), "np.ma.getdata(x)"),
        (np.array([0.5, 1.0], dtype=ml_dtypes.float8_e4m3fn), "input 3 has dtype float8_e4m3fn"),
        (np.array([0.5, 1.0], dtype=ml_dtypes.float8_e4m3fn), "cast to bfloat16, float16 or float32"),
    ],
)
def test_validate_input_rejects_with_the_argument_and_the_fix(x, message):
    with pytest.raises(InvalidArgument, match=_escape(message)):
        _backend.validate_input(3, x)


def test_validate_input_rejects_np_matrix(no_pending_matrix_warning):
    m = np.matrix([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(InvalidArgument, match=r"input 0 is a numpy\.matrix.*pass np\.asarray\(x\)"):
        _backend.validate_input(0, m)


@pytest.mark.parametrize(
    "x",
    [
        np.array([0.5, -1.0]),
        np.float64(2.0) * np.ones(()),  # 0-d: one element
        np.zeros(0, dtype=np.int64),  # an empty index list is never differentiated
        np.zeros((2, 0), dtype=bool),
        np.array([0.5, 1.0], dtype=bfloat16),
        np.array([1, 2], dtype=ml_dtypes.int4),  # an integer input, not differentiated
    ],
)
def test_validate_input_keeps_what_it_can_check(x):
    assert _backend.validate_input(0, x) is x


def test_validate_input_on_array_api_strict():
    xp = pytest.importorskip("array_api_strict")
    x = xp.asarray([0.5, 1.0])
    assert _backend.validate_input(0, x) is x
    with pytest.raises(InvalidArgument, match="input 1 is empty"):
        _backend.validate_input(1, xp.zeros((0,)))
    assert _backend.validate_input(2, xp.zeros((0,), dtype=xp.int64)) is not None


# -- validate_output, validate_float64_output ---------------------------------------------------


def test_validate_output(no_pending_matrix_warning):
    out = np.array([1.0])
    assert _backend.validate_output(out) is out
    with pytest.raises(InvalidArgument, match=r"fn returned an empty array \(shape \(0,\)\).*cannot fail"):
        _backend.validate_output(np.zeros(0))
    with pytest.raises(InvalidArgument, match=r"fn returned a numpy masked array"):
        _backend.validate_output(np.ma.log(np.array([-1.0, 1.0])))  # np.ma masks the NaN away
    with pytest.raises(InvalidArgument, match=r"forward returned a numpy\.matrix"):
        _backend.validate_output(np.matrix([[1.0]]), what="forward")


def test_validate_float64_output_names_the_dtype_dependence():
    out = np.zeros(3, dtype=np.float32)
    assert _backend.validate_float64_output(np.zeros(3), out) is not None
    with pytest.raises(InvalidArgument, match=r"shape \(2,\) for the float64 copies .* but \(3,\) .*float32 output.*must not depend on the dtype"):
        _backend.validate_float64_output(np.zeros(2), out)
    with pytest.raises(InvalidArgument, match="fn returned a float for the float64 copies"):
        _backend.validate_float64_output(1.0, out)


# -- validate_cotangent --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("v", "message"),
    [
        (np.zeros(3), "cotangent is all zeros"),
        (np.zeros(3), "cotangent=None for a seeded random one"),
        (np.array([1.0, np.nan, 2.0]), "cotangent holds NaN or Inf (at index (1,))"),
        (np.array([1.0, 2.0, -np.inf]), "at index (2,)"),
        (np.ones(2), "cotangent has shape (2,) but fn's output has shape (3,)"),
    ],
)
def test_validate_cotangent_rejects(v, message):
    with pytest.raises(InvalidArgument, match=_escape(message)):
        _backend.validate_cotangent(v, (3,))


def test_validate_cotangent_keeps_a_good_one():
    v = np.array([0.0, 1e-300, 0.0])  # one nonzero entry is enough
    assert _backend.validate_cotangent(v, (3,)) is v
    assert _backend.validate_cotangent(np.ones(()), ()) is not None
    assert _backend.validate_cotangent(np.array([1.0, 0.5], dtype=bfloat16), (2,)) is not None


# -- bfloat16 -----------------------------------------------------------------------------------------


def test_bfloat16_dtype_helpers():
    x = np.array([0.5, -1.0, 2.0], dtype=bfloat16)
    xp = _backend.namespace_of(x)
    assert _backend.dtype_name(x.dtype) == "bfloat16"
    assert _backend.dtype_name(bfloat16) == "bfloat16"
    assert _backend.is_real_floating(xp, x.dtype)
    assert not _backend.is_real_floating(xp, np.dtype(ml_dtypes.float8_e4m3fn))
    assert not _backend.is_real_floating(xp, np.dtype(ml_dtypes.int4))
    assert _backend.is_real_floating(xp, np.dtype(np.float16))
    assert not _backend.is_real_floating(xp, np.dtype(np.int32))
    x64 = _backend.float64_of(x, xp)
    assert x64.dtype == np.float64 and np.array_equal(x64, [0.5, -1.0, 2.0])
    assert _tolerances.rtol_for(_backend.dtype_name(x.dtype)) == _tolerances.RTOL["bfloat16"] == 1e-1
    assert _tolerances.eps_for("bfloat16") == float(ml_dtypes.finfo(bfloat16).eps)


def test_bfloat16_check_vjp_evaluates_in_bfloat16_and_differentiates_in_float64():
    x = np.array([0.5, -1.0, 2.0], dtype=bfloat16)
    result = check_vjp(np.tanh, _tanh_vjp, x)
    assert result.passed, str(result)
    report = result.per_input[0]
    assert report.dtype == "bfloat16" and report.rtol == 1e-1
    assert "bfloat16" in str(result)


def test_bfloat16_grossly_wrong_backward_fails():
    x = np.array([0.5, -1.0, 2.0], dtype=bfloat16)
    result = check_vjp(np.tanh, lambda v, x: (10 * v * (1 - np.tanh(x) ** 2),), x)
    assert not result.passed and result.blame == "analytic"


def test_bfloat16_check_grad():
    result = check_grad(lambda x: np.sum(x**3), lambda x: 3 * x**2, np.array([0.5, -1.0, 2.0], dtype=bfloat16))
    assert result.passed, str(result)


@pytest.mark.parametrize(
    "vjp",
    [
        pytest.param(lambda v, x: (-v * (1 - np.tanh(x) ** 2),), id="sign flipped"),
        pytest.param(lambda v, x: (v * (1 - np.tanh(x)),), id="1 - tanh, not 1 - tanh**2"),
    ],
)
def test_bfloat16_wrong_backward_fails(vjp):
    """The analytic noise slack is capped at rtol / 2 of the natural size: 64 bfloat16 ulps would be 50 %."""
    x = np.array([0.5, -1.0, 2.0], dtype=bfloat16)
    result = check_vjp(np.tanh, vjp, x)
    assert not result.passed and result.blame == "analytic", str(result)


# -- python -W error: gradverify's own arithmetic warns nowhere ------------------------------------


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _softmax_vjp(v, x):
    s = _softmax(x)
    return (s * (v - (v * s).sum(axis=-1, keepdims=True)),)


def _saddle_f(w):
    return (1.0 - w[0] * w[1]) ** 2


def _saddle_g(w):
    return np.array([-2 * w[1] * (1 - w[0] * w[1]), -2 * w[0] * (1 - w[0] * w[1])])


WARNING_FREE = {
    "tanh": lambda: check_vjp(np.tanh, _tanh_vjp, np.array([0.5, -1.5, 2.0])).passed,
    "tanh float32 directional": lambda: check_vjp(np.tanh, _tanh_vjp, np.array([0.5, -1.5, 2.0], dtype=np.float32), mode="directional").passed,
    "relu at 0": lambda: check_vjp(lambda x: np.maximum(x, 0), lambda v, x: (v * (x > 0),), np.array([0.0, 1.0, -1.0])).passed,
    "softmax": lambda: check_vjp(_softmax, _softmax_vjp, np.array([[1.0, 2.0, 3.0], [0.1, -0.2, 40.0]])).passed,
    "sqrt near 0": lambda: check_vjp(np.sqrt, lambda v, x: (v * 0.5 / np.sqrt(x),), np.array([1e-12, 1e-300, 4.0])).passed,
    "log near 0": lambda: check_vjp(np.log, lambda v, x: (v / x,), np.array([1e-300, 1.0])).passed,
    "a failing check": lambda: not check_vjp(np.tanh, lambda v, x: (v * (1 - np.tanh(x)),), np.array([0.5, -1.5, 2.0])).passed,
    "check_grad at 0": lambda: check_grad(lambda x: np.sum(x**3), lambda x: 3 * x**2, np.array([1.0, -2.0, 0.0])).passed,
    "classify saddle": lambda: critical.classify(_saddle_f, _saddle_g, np.zeros(2)).verdict == "saddle",
    "classify degenerate": lambda: critical.classify(lambda x: np.sum(x**4), lambda x: 4 * x**3, np.zeros(2)).verdict == "degenerate",
    "classify grad NaN near x": lambda: critical.classify(_saddle_f, lambda w: np.where(w == 0, _saddle_g(w), np.nan), np.zeros(2)).verdict == "nonfinite",
    "check_hessian sqrt at 0": lambda: not critical.check_hessian(lambda x: np.sum(np.sqrt(x)), lambda x: 0.5 / np.sqrt(x), lambda x: np.zeros((2, 2)), np.array([0.0, 1.0])).passed,
    "taylor_order with a NaN Hessian": lambda: critical.taylor_order(np.sum, np.ones_like, np.array([1.0, 2.0]), np.array([1.0, 0.0]), hess_f=lambda x: np.full((2, 2), np.nan)).order != 2,
}


@pytest.mark.parametrize("name", sorted(WARNING_FREE))
def test_gradverify_arithmetic_raises_no_warning_under_W_error(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert WARNING_FREE[name]()


def test_a_warning_of_the_users_backward_at_the_users_point_is_the_users():
    # 0.5 / sqrt(0) in the caller's vjp, at the caller's own input: theirs to see.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserFunctionError, match="vjp raised RuntimeWarning"):
            check_vjp(np.sqrt, lambda v, x: (v * 0.5 / np.sqrt(x),), np.array([0.0, 4.0]))


# -- end to end: needs the wiring in the engine ------------------------------------------------------
#
# These tests fail until gradverify's engine (_check.py / _structural.py / _numerical.py)
# calls the validators above; each comment names the call it needs.


def test_check_vjp_empty_input_is_a_named_error():
    # needs: _backend.validate_input(i, x) for every input in _Run.__init__
    # (today: UserFunctionError "fn raised ZeroDivisionError", gradverify's own division).
    for x in (np.zeros(0), np.zeros((3, 0))):
        with pytest.raises(InvalidArgument, match="input 0 is empty.*cannot fail"):
            check_vjp(np.tanh, _tanh_vjp, x)
    with pytest.raises(InvalidArgument, match="input 1 is empty"):
        check_vjp(lambda a, b: a * np.sum(b), lambda v, a, b: (v * np.sum(b), np.full(b.shape, np.sum(v * a))), np.ones(2), np.zeros(0))


def test_check_vjp_np_matrix_is_a_named_error(no_pending_matrix_warning):
    # needs: _backend.validate_input(i, x) in _Run.__init__ (today: ValueError from np.matrix's
    # * inside gradverify._truth.input_scale).
    m = np.matrix([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(InvalidArgument, match=r"input 0 is a numpy\.matrix"):
        check_vjp(lambda x: x * x, lambda v, x: (2 * v * x,), m)


def test_check_vjp_masked_input_is_a_named_error():
    # needs: _backend.validate_input(i, x) in _Run.__init__ (today: the mask is ignored, and a
    # masked element turns into a "wrong gradient" plus a UserWarning from _verdict).
    masked = np.ma.array([0.5, 1.0, 2.0], mask=[0, 1, 0])
    with pytest.raises(InvalidArgument, match="masked array with 1 masked element"):
        check_vjp(np.tanh, _tanh_vjp, masked)
    with pytest.raises(InvalidArgument, match=r"nothing masked"):
        check_vjp(np.tanh, _tanh_vjp, np.ma.array([0.5, 1.0, 2.0]))


def test_check_vjp_masked_or_empty_output_is_a_named_error():
    # needs: _backend.validate_output(out) right after fn's output is known to be a real
    # floating array of the inputs' library (today: an empty output runs a vacuous check).
    x = np.array([0.5, -2.0])
    with pytest.raises(InvalidArgument, match="fn returned an empty array"):
        check_vjp(lambda x: x[:0], lambda v, x: (np.zeros_like(x),), x)
    with pytest.raises(InvalidArgument, match="fn returned a numpy masked array"):
        check_vjp(lambda x: np.ma.log(x), lambda v, x: (v / x,), x)


def test_check_vjp_output_shape_depending_on_dtype_is_a_named_error():
    # needs: fn called on the float64 copies through the engine's user-call wrapper alone, then
    # _backend.validate_float64_output(out64, out) before any arithmetic of PhiEvaluator
    # (today: UserFunctionError "fn raised ValueError ... broadcast", gradverify's own out * v).
    def fn(x):
        return x if x.dtype == np.float32 else x[:2]

    with pytest.raises(InvalidArgument, match="must not depend on the dtype"):
        check_vjp(fn, lambda v, x: (v,), np.array([1.0, 2.0, 3.0], dtype=np.float32))


@pytest.mark.parametrize(
    ("cotangent", "message"),
    [
        (np.zeros(2), "cotangent is all zeros"),
        (np.array([np.nan, 1.0]), "cotangent holds NaN or Inf"),
        (np.array([np.inf, 1.0]), "cotangent holds NaN or Inf"),
    ],
)
def test_check_vjp_degenerate_cotangent_is_a_named_error(cotangent, message):
    # needs: _backend.validate_cotangent(v, out.shape) on the caller's cotangent (today: an
    # all-zero one passes any backward returning zeros; a NaN one blames the backward).
    with pytest.raises(InvalidArgument, match=message):
        check_vjp(np.tanh, _tanh_vjp, np.array([0.5, 1.0]), cotangent=cotangent)
    with pytest.raises(InvalidArgument, match=message):
        check_vjp(np.tanh, lambda v, x: (np.zeros_like(x),), np.array([0.5, 1.0]), cotangent=cotangent)


def test_check_layer_empty_input_is_a_named_error():
    # needs: _backend.validate_input(i, x) in _Run.__init__ (check_layer goes through it).
    def forward(x, w):
        return x @ w, (x, w)

    def backward(dout, cache):
        x, w = cache
        return dout @ w.T, x.T @ dout

    with pytest.raises(InvalidArgument, match="input 0 is empty"):
        gradverify.check_layer(forward, backward, np.zeros((0, 3)), np.ones((3, 2)))


def test_empty_input_gives_the_same_error_in_strict():
    # needs: _backend.validate_input(i, x) in _Run.__init__.
    xp = pytest.importorskip("array_api_strict")
    with pytest.raises(InvalidArgument, match="input 0 is empty"):
        check_vjp(xp.tanh, lambda v, x: (v * (1 - xp.tanh(x) ** 2),), xp.zeros((0,)))


def test_partial_closes_over_an_empty_input():
    # The fix the message names works today already.
    b = np.zeros(0)
    fn = functools.partial(lambda b, a: a * (1.0 + np.sum(b)), b)
    result = check_vjp(fn, lambda v, a: (v * (1.0 + np.sum(b)),), np.array([0.5, 1.0]))
    assert result.passed
