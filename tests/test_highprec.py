"""Tests of gradverify._highprec: exact conversion, real precision, the namespace, failures."""

import math

import array_api_compat
import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gradverify import _highprec as H
from gradverify._errors import HighPrecisionUnavailable

hp = H.namespace


@pytest.fixture(autouse=True)
def _keep_global_mpmath():
    prec = mpmath.mp.prec
    yield
    mpmath.mp.prec = prec


def _all_mpf(a):
    return all(type(v) is H.MPF for v in np.asarray(a, dtype=object).reshape(-1))


def _assert_matches(got, want, digits):
    """Every element of ``got`` agrees with ``want`` (mpmath numbers) to ``digits`` digits."""
    got = np.asarray(got, dtype=object).reshape(-1)
    want = np.asarray(want, dtype=object).reshape(-1)
    assert got.shape == want.shape
    assert _all_mpf(got)
    with mpmath.workdps(digits + 30):
        for g, w in zip(got, want):
            err = abs(mpmath.mpf(g) - mpmath.mpf(w))
            assert err <= mpmath.mpf(10) ** -digits * max(abs(mpmath.mpf(w)), mpmath.mpf(10) ** -300), (g, w)


def _ref(f, *arrays, dps):
    """``f`` applied elementwise with mpmath's global context at ``dps + 20`` digits."""
    with mpmath.workdps(dps + 20):
        return np.array([f(*(mpmath.mpf(float(v)) for v in vs)) for vs in zip(*(a.reshape(-1) for a in arrays))],
                        dtype=object)


# --- conversion ----------------------------------------------------------------

def _same_float(a, b):
    """Bitwise equality of float64 arrays, except that NaNs match and -0.0 == 0.0."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, max_side=5),
                  elements=st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True)))
def test_roundtrip_is_exact(a):
    h = H.to_hp(a)
    assert h.dtype == object and h.shape == a.shape and _all_mpf(h)
    back = H.from_hp(h)
    assert back.dtype == np.float64 and _same_float(back, a)


def test_roundtrip_bit_patterns_and_special_values(rng):
    bits = rng.integers(0, 2**64, size=2000, dtype=np.uint64).view(np.float64)
    special = np.array([5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
                        -1.7976931348623157e308, -0.0, 0.0, np.inf, -np.inf, np.nan, 1e-310])
    a = np.concatenate([bits, special])
    h = H.to_hp(a)
    assert _all_mpf(h)
    assert _same_float(H.from_hp(h), a)
    # mpmath has no negative zero: -0.0 comes back as a zero (sign lost), value equal
    assert H.from_hp(H.to_hp(np.array(-0.0)))[()] == 0.0
    # exactness, not merely a float roundtrip: the mpf holds the double's exact value
    with mpmath.workdps(400):
        for got, want in zip(h[2000:], special):
            if not np.isnan(want):
                assert mpmath.mpf(got) == mpmath.mpf(float(want))


def test_to_hp_zero_d_other_dtypes_and_scalars():
    z = H.to_hp(np.float64(0.1))
    assert z.shape == () and type(z[()]) is H.MPF and H.from_hp(z).shape == ()
    assert H.from_hp(z)[()] == 0.1
    f32 = np.array([0.1, 3e-45, -1e38], dtype=np.float32)
    assert [mpmath.mpf(v) for v in H.to_hp(f32)] == [mpmath.mpf(float(v)) for v in f32]
    f16 = np.array([0.1, 6e-8], dtype=np.float16)
    assert H.from_hp(H.to_hp(f16)).tolist() == f16.astype(np.float64).tolist()
    big = np.array([2**63 - 1, -(2**63)], dtype=np.int64)
    assert [int(v) for v in H.to_hp(big)] == big.tolist()  # exact, beyond 53 bits
    assert _all_mpf(H.to_hp(np.array([True, False])))
    if np.finfo(np.longdouble).nmant > 52:
        ld = np.longdouble(1) + np.longdouble(2) ** -60
        assert H.to_hp(np.array(ld))[()] - 1 == mpmath.mpf(2) ** -60
    with pytest.raises(TypeError):
        H.to_hp(np.array([1 + 2j]))


def test_from_hp_rounds_to_nearest_including_subnormals():
    C = H.CTX
    with C.workdps(80):
        two = C.mpf(2)
        values = [
            C.mpf(1) + two ** -53 + two ** -70,  # just above a tie: rounds up
            C.mpf(1) + two ** -53,  # tie: to even (1.0)
            two ** -1075 * (1 + two ** -60),  # just above half the smallest subnormal
            -(two ** -1075) * (1 + two ** -60),
            two ** -1075,  # tie: to even (0)
            3 * two ** -1075,  # tie: to even (2 ulp)
            two ** -1022 - two ** -1075 - two ** -1100,  # below the smallest normal
            two ** 1024,  # overflow
            -(two ** 1100),
        ]
    got = H.from_hp(np.array(values, dtype=object))
    want = [1 + 2.0**-52, 1.0, 5e-324, -5e-324, 0.0, 1e-323, 2.0**-1022 - 2.0**-1074, np.inf, -np.inf]
    assert got.tolist() == want
    assert H.from_hp(H.MPF(3)).shape == () and H.from_hp(H.MPF(3))[()] == 3.0
    assert H.from_hp(np.array([1, 2.5, 10**400], dtype=object)).tolist() == [1.0, 2.5, np.inf]
    assert H.from_hp(np.array([1, 2], dtype=np.int32)).dtype == np.float64


def test_is_hp_array():
    assert H.is_hp_array(H.to_hp(np.ones(3)))
    assert H.is_hp_array(H.MPF(1))
    assert H.is_hp_array(np.empty(0, dtype=object))
    assert H.is_hp_array(np.array([1, 2.0], dtype=object))
    assert not H.is_hp_array(np.ones(3))
    assert not H.is_hp_array(np.array(["a"], dtype=object))
    assert not H.is_hp_array(1.0)
    assert not H.is_hp_array(mpmath.mpf(1))


def test_methods_are_private_to_the_context():
    assert hasattr(H.MPF(1), "exp")
    assert not hasattr(mpmath.mpf(1), "log1p") and not hasattr(mpmath.mpf(1), "arctan")
    assert mpmath.mpf(2).exp == 1  # the global mpf keeps its exponent property
    assert H.MPF is not mpmath.mpf


# --- precision ---------------------------------------------------------------------

def test_global_mpmath_precision_untouched():
    mpmath.mp.dps = 15
    before = (mpmath.mp.dps, mpmath.mp.prec)
    out = H.evaluate(lambda x: np.exp(x) / 3, [np.array([0.5, 1.5])], dps=60)
    assert (mpmath.mp.dps, mpmath.mp.prec) == before
    assert H.CTX.prec == 53  # the private context is restored too
    with mpmath.workdps(80):
        assert abs(mpmath.mpf(out[0]) - mpmath.exp(mpmath.mpf(0.5)) / 3) < mpmath.mpf(10) ** -58


def test_precision_is_real_cancellation():
    x = np.array([1.0, 3.0, 1e5])
    out = H.evaluate(lambda x: (x + 1e-20) - x, [x], dps=50)
    assert _all_mpf(out)
    assert all(v == H.MPF(1e-20) for v in out)  # exact; float64 would give 0
    with pytest.raises(AssertionError):  # the same at float64 loses everything
        assert np.all(((x + 1e-20) - x) == 1e-20)


@pytest.mark.parametrize("dps", [30, 50, 80])
def test_exp_minus_one_at_tiny_x(dps):
    x = np.array([1e-30, -3e-25, 2e-18])
    out = H.evaluate(lambda x: np.exp(x) - 1, [x], dps=dps)
    # cancellation costs ~|log10 x| digits of the working precision
    _assert_matches(out, _ref(mpmath.expm1, x, dps=dps), dps - 32)
    assert np.all(np.exp(x) - 1 != H.from_hp(out))  # float64 gets this wrong


def test_methods_follow_working_precision():
    x = np.array([0.7])
    lo = H.evaluate(np.exp, [x], dps=20)[0]
    hi = H.evaluate(np.exp, [x], dps=70)[0]
    with mpmath.workdps(100):
        ref = mpmath.exp(mpmath.mpf(0.7))
        assert abs(mpmath.mpf(hi) - ref) < mpmath.mpf(10) ** -68
        assert abs(mpmath.mpf(lo) - ref) > mpmath.mpf(10) ** -40  # really only ~20 digits


# --- plain NumPy code ----------------------------------------------------------------

@pytest.mark.parametrize(
    ("np_fn", "mp_fn"),
    [
        (np.exp, mpmath.exp), (np.tanh, mpmath.tanh), (np.log1p, mpmath.log1p),
        (np.expm1, mpmath.expm1), (np.sqrt, mpmath.sqrt), (np.log, mpmath.log),
        (np.sin, mpmath.sin), (np.arctan, mpmath.atan), (np.arcsinh, mpmath.asinh),
        (np.log2, lambda v: mpmath.log(v, 2)), (np.cbrt, lambda v: mpmath.sign(v) * mpmath.cbrt(abs(v))),
        (np.exp2, lambda v: mpmath.mpf(2) ** v), (np.cosh, mpmath.cosh), (np.log10, mpmath.log10),
    ],
)
def test_numpy_ufuncs_on_object_arrays(np_fn, mp_fn, rng):
    x = rng.uniform(0.05, 3.0, size=(3, 4))
    if np_fn is np.cbrt:
        x = -x
    _assert_matches(H.evaluate(np_fn, [x], dps=45), _ref(mp_fn, x, dps=45), 43)


def test_plain_numpy_network(rng):
    x, w = rng.normal(size=(4, 3)), rng.normal(size=(3, 5))
    b = rng.normal(size=5)

    def f(x, w, b):
        h = np.tanh(x @ w + b)
        r = np.maximum(h, 0.0) + np.where(h > 0.2, np.log1p(np.exp(h)), h * 0.5)
        return np.sum(r, axis=0)

    out = H.evaluate(f, [x, w, b], dps=50)
    assert out.shape == (5,) and _all_mpf(out)
    with mpmath.workdps(80):
        X, W, B = (mpmath.matrix(np.atleast_2d(a).tolist()) for a in (x, w, b))
        want = []
        for j in range(5):
            s = 0
            for i in range(4):
                h = mpmath.tanh(sum(X[i, k] * W[k, j] for k in range(3)) + B[0, j])
                s += max(h, 0) + (mpmath.log1p(mpmath.exp(h)) if h > 0.2 else h * mpmath.mpf(0.5))
            want.append(s)
    _assert_matches(out, want, 48)


def test_relu_float_constant_is_accepted_even_when_everything_is_clipped():
    out = H.evaluate(lambda x: np.maximum(x, 0.0), [np.array([-1.0, -2.0])])
    assert _all_mpf(out) and H.from_hp(out).tolist() == [0.0, 0.0]


def test_domain_errors_give_nan_and_division_by_zero_gives_inf():
    x = np.array([-1.0, 0.0, 4.0])
    out = H.from_hp(H.evaluate(lambda x: np.sqrt(x), [x]))
    assert np.isnan(out[0]) and out[1:].tolist() == [0.0, 2.0]
    out = H.from_hp(H.evaluate(lambda x: 1 / x + x**0.5, [x]))
    assert np.isnan(out[0]) and out[1] == np.inf
    out = H.from_hp(H.evaluate(lambda x: np.log(x), [x]))
    assert np.isnan(out[0]) and out[1] == -np.inf


def test_floor_and_trunc_stay_exact_beyond_float64():
    # 3 * 2**60 + 1 needs 62 bits: a floor through float() would give -1 for the first
    out = H.evaluate(lambda x: np.floor(x * 3 + 1) - (x * 3 + 1), [np.array([2.0**60, -2.5])], dps=40)
    assert H.from_hp(out).tolist() == [0.0, -0.5]
    assert _all_mpf(H.evaluate(lambda x: np.trunc(x) + np.ceil(x), [np.array([1.5, -1.5])]))


# --- code written against a namespace -----------------------------------------------

def _ns(x):
    """What gradverify's namespace_of does for high-precision arrays."""
    return H.namespace if H.is_hp_array(x) else array_api_compat.array_namespace(x)


def _softmax(x):
    xp = _ns(x)
    e = xp.exp(x - xp.max(x, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


def _softmax_ref(x):
    with mpmath.workdps(80):
        rows = []
        for row in x:
            e = [mpmath.exp(mpmath.mpf(float(v))) for v in row]
            rows.append([v / mpmath.fsum(e) for v in e])
    return np.array(rows, dtype=object)


def test_namespace_softmax_and_logsumexp(rng):
    x = rng.normal(size=(3, 6)) * 10

    def logsumexp(x):
        xp = _ns(x)
        m = xp.max(x, axis=1, keepdims=True)
        return xp.squeeze(m, axis=1) + xp.log(xp.sum(xp.exp(x - m), axis=1))

    _assert_matches(H.evaluate(_softmax, [x], dps=50), _softmax_ref(x), 48)
    with mpmath.workdps(80):
        want = [mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in row)) for row in x]
    _assert_matches(H.evaluate(logsumexp, [x], dps=50), want, 48)


def test_array_api_compat_namespace_path(rng):
    x = rng.normal(size=(2, 5))

    def softmax(x):
        xp = array_api_compat.array_namespace(x)
        e = xp.exp(x - xp.max(x, axis=-1, keepdims=True))
        return e / xp.sum(e, axis=-1, keepdims=True)

    _assert_matches(H.evaluate(softmax, [x], dps=45), _softmax_ref(x), 43)


def test_namespace_linear_layer_and_batchnorm(rng):
    x, w, b = rng.normal(size=(6, 4)), rng.normal(size=(4, 3)), rng.normal(size=3)

    def f(x, w, b):
        xp = _ns(x)
        y = xp.matmul(x, w) + b
        mu = xp.mean(y, axis=0, keepdims=True)
        var = xp.var(y, axis=0, keepdims=True)
        eps = xp.asarray(1e-5, dtype=x.dtype)
        half = xp.asarray(0.5, dtype=x.dtype)
        z = (y - mu) / xp.sqrt(var + eps)
        return z * half + xp.zeros((1, 3), dtype=x.dtype) + xp.std(y, axis=0)

    out = H.evaluate(f, [x, w, b], dps=50)
    with mpmath.workdps(80):
        y = [[mpmath.fsum(mpmath.mpf(x[i, k]) * mpmath.mpf(w[k, j]) for k in range(4)) + mpmath.mpf(b[j])
              for j in range(3)] for i in range(6)]
        want = np.empty((6, 3), dtype=object)
        for j in range(3):
            col = [y[i][j] for i in range(6)]
            mu = mpmath.fsum(col) / 6
            var = mpmath.fsum((c - mu) ** 2 for c in col) / 6
            for i in range(6):
                want[i, j] = (col[i] - mu) / mpmath.sqrt(var + mpmath.mpf(1e-5)) / 2 + mpmath.sqrt(var)
    _assert_matches(out, want, 47)
    # the same function runs on float64 and agrees to float64 accuracy
    np.testing.assert_allclose(f(x, w, b), H.from_hp(out), rtol=1e-12, atol=1e-12)


def test_namespace_dtypes_and_constructors():
    x = H.to_hp(np.array([1.0, 2.0]))
    assert hp.float64 == hp.float32 == hp.float16 == np.dtype(object)
    assert x.dtype == hp.float64
    assert hp.isdtype(x.dtype, "real floating") and not hp.isdtype(x.dtype, "integral")
    for a in [hp.asarray(0.5), hp.asarray(0.5, dtype=hp.float32), hp.asarray([1, 2], dtype=x.dtype),
              hp.asarray(np.array([0.1, 0.2])), hp.astype(np.array([1, 2]), hp.float64),
              hp.astype(np.array([0.1], dtype=np.float32), hp.float32),
              hp.zeros((2, 2)), hp.ones(3), hp.full((2,), 0.1), hp.zeros_like(x), hp.ones_like(x),
              hp.full_like(x, 0.25), hp.eye(3), hp.arange(0.0, 1.0, 0.25), hp.linspace(0, 1, 5),
              hp.where(x > 1.5, x, 0.0), hp.maximum(x, 1.5), hp.minimum(0.5, x), hp.clip(x, 1.2, 1.7)]:
        assert a.dtype == object and _all_mpf(a), a
    assert hp.asarray(0.1)[()] == H.MPF(0.1)
    assert hp.asarray([1, 2]).dtype.kind == "i"  # integer data stays integer
    assert hp.zeros(2, dtype=np.int64).dtype == np.int64
    assert hp.astype(x, np.int64).tolist() == [1, 2]
    assert hp.arange(3).dtype.kind == "i"
    assert hp.finfo(x.dtype).eps == np.finfo(np.float64).eps
    assert hp.finfo(hp.float32) == np.finfo(np.float64)
    assert hp.finfo(np.float32) == np.finfo(np.float32)


def test_namespace_functions_without_object_loops():
    x = H.to_hp(np.array([-np.inf, -1.0, 0.0, 2.0, np.inf, np.nan]))
    assert hp.isfinite(x).tolist() == [False, True, True, True, False, False]
    assert hp.isnan(x).tolist() == [False] * 5 + [True]
    assert hp.isinf(x).tolist() == [True, False, False, False, True, False]
    s = H.from_hp(hp.sign(x))
    assert s[:5].tolist() == [-1.0, -1.0, 0.0, 1.0, 1.0] and np.isnan(s[5])
    assert hp.isnan(np.array([1.0, np.nan])).tolist() == [False, True]  # float input: numpy
    a, b = np.array([0.3, -700.0, 5.0, -np.inf]), np.array([0.3, 2.0, -40.0, -np.inf])
    got = hp.logaddexp(H.to_hp(a), H.to_hp(b))
    assert _all_mpf(got) and got[3] == H.CTX.ninf
    with mpmath.workdps(60):
        want = [mpmath.log(mpmath.exp(mpmath.mpf(u)) + mpmath.exp(mpmath.mpf(v))) for u, v in zip(a[:3], b[:3])]
    with H.CTX.workdps(50):
        got = hp.logaddexp(H.to_hp(a[:3]), H.to_hp(b[:3]))
    _assert_matches(got, want, 48)
    assert _all_mpf(hp.logaddexp(H.to_hp(a[:3]), 0.0))


def test_namespace_shape_functions_and_scalar_results():
    x = H.to_hp(np.arange(6.0).reshape(2, 3))
    total = hp.sum(x)
    assert isinstance(total, np.ndarray) and total.shape == () and total[()] == 15
    assert hp.linalg.vector_norm(x).shape == ()
    assert hp.max(x, axis=0).shape == (3,)
    assert hp.reshape(x, (3, 2)).shape == (3, 2)
    assert hp.expand_dims(x, axis=0).shape == (1, 2, 3)
    assert hp.permute_dims(x, (1, 0)).shape == (3, 2)
    assert hp.matrix_transpose(x).shape == (3, 2)
    assert hp.broadcast_to(x[0], (4, 3)).shape == (4, 3)
    assert hp.concat([x, x], axis=0).shape == (4, 3)
    assert hp.stack([x, x]).shape == (2, 2, 3)
    assert hp.take(x, np.array([2, 0]), axis=1)[0].tolist() == [2, 0]
    assert hp.take_along_axis(x, np.array([[1], [2]]), axis=1).reshape(-1).tolist() == [1, 5]
    assert hp.argmax(x, axis=1).tolist() == [2, 2]
    assert _all_mpf(hp.square(x)) and _all_mpf(hp.pow(x, 2)) and _all_mpf(hp.abs(-x))
    assert _all_mpf(hp.exp(H.to_hp(np.array(1.0)))) and hp.exp(H.to_hp(np.array(1.0))).shape == ()
    assert "high-precision" in repr(hp) and hp.__name__.startswith("gradverify")


def test_integer_inputs_pass_through():
    x = np.array([0.5, 1.5, 2.5])
    out = H.evaluate(lambda x, i: hp.take(x, i) * 2, [x, np.array([2, 0])])
    assert H.from_hp(out).tolist() == [5.0, 1.0]


def test_scalar_and_integer_outputs_are_normalized():
    out = H.evaluate(lambda x: np.sum(x * x), [np.array([1.0, 2.0])])
    assert out.shape == () and out.dtype == object and type(out[()]) is H.MPF and out[()] == 5
    out = H.evaluate(lambda x: np.argmax(x), [np.array([1.0, 2.0])])
    assert type(out[()]) is H.MPF and out[()] == 1


def test_hp_sum_weighted_is_exact():
    out = H.to_hp(np.array([1e20, 1.0, -1e20, 2.0**-60]))
    w = np.array([1.0, 3.0, 1.0, 1.0])
    got = H.hp_sum_weighted(out, w, dps=30)
    assert type(got) is H.MPF and got - 3 == H.MPF(2.0**-60)
    assert np.sum(H.from_hp(out) * w) < 1e-17  # float64 loses the 3 entirely
    assert H.hp_sum_weighted(H.to_hp(np.ones((2, 3))), np.array([1.0, 2.0, 3.0])) == 12
    assert H.hp_context() is H.CTX


# --- failures ----------------------------------------------------------------------

def test_cast_to_float64_is_rejected():
    with pytest.raises(HighPrecisionUnavailable, match="lost precision.*float64 array"):
        H.evaluate(lambda x: np.exp(x).astype(np.float64), [np.ones(3)])
    with pytest.raises(HighPrecisionUnavailable, match="lost precision.*float64 array"):
        H.evaluate(lambda x: np.asarray(x, dtype=float) * 2, [np.ones(3)])


def test_float_elements_are_rejected():
    with pytest.raises(HighPrecisionUnavailable, match="holds Python/NumPy floats"):
        H.evaluate(lambda x: np.frompyfunc(lambda v: math.exp(float(v)), 1, 1)(x), [np.ones(3)])
    with pytest.raises(HighPrecisionUnavailable, match="lost precision"):
        H.evaluate(lambda x: float(np.sum(x)) + 1.0, [np.ones(3)])
    with pytest.raises(HighPrecisionUnavailable, match="global context"):
        H.evaluate(lambda x: np.array([mpmath.exp(v) for v in x], dtype=object), [np.ones(2)])


def test_missing_object_loop_is_explained():
    with pytest.raises(TypeError):  # premise: NumPy really has no object loop
        np.logaddexp(np.array([1], dtype=object), np.array([1], dtype=object))
    with pytest.raises(HighPrecisionUnavailable, match=r"numpy\.logaddexp has no object-dtype loop") as info:
        H.evaluate(lambda x: np.logaddexp(x, x), [np.ones(3)], namespace_aware=False)
    assert isinstance(info.value.__cause__, TypeError)
    assert "truth=False" in str(info.value) and "np.exp" in str(info.value)
    with pytest.raises(HighPrecisionUnavailable, match="xp.isfinite") as info:
        H.evaluate(lambda x: np.isfinite(x), [np.ones(3)], namespace_aware=True)


def test_user_error_is_wrapped_and_chained():
    def f(x):
        raise RuntimeError("boom in user code")

    with pytest.raises(HighPrecisionUnavailable, match="RuntimeError: boom in user code") as info:
        H.evaluate(f, [np.ones(2)])
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(HighPrecisionUnavailable) as info:
        H.evaluate(lambda x: np.linalg.inv(x), [np.eye(2)])
    assert isinstance(info.value.__cause__, TypeError)


def test_tuple_and_odd_outputs_are_rejected():
    with pytest.raises(HighPrecisionUnavailable, match="tuple"):
        H.evaluate(lambda x: (x, x), [np.ones(2)])
    with pytest.raises(HighPrecisionUnavailable, match="NoneType"):
        H.evaluate(lambda x: None, [np.ones(2)])
    with pytest.raises(HighPrecisionUnavailable, match="complex"):
        H.evaluate(lambda x: x * 1j, [np.ones(2)])
    with pytest.raises(HighPrecisionUnavailable, match="convert an input"):
        H.evaluate(lambda x: x, [np.array(["a"], dtype=object)])


# -- matmul of high-precision arrays: exact dot products, rounded once (issue 11) ---------------


def _hp_arr(x, tweak=True):
    a = H.to_hp(np.asarray(x, dtype=np.float64)).view(H.HPArray)
    if tweak:  # values float64 cannot hold: the 136-bit mantissas of a shifted point
        a = a + a * H.MPF("1e-25")
    return a


@pytest.mark.parametrize(("sa", "sb"), [((5, 7), (7, 3)), ((7,), (7, 3)), ((5, 7), (7,)), ((7,), (7,)), ((1, 1), (1, 1))])
def test_matmul_is_the_exact_dot_product_rounded_once(sa, sb):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(sa) * np.exp(5 * rng.standard_normal(sa))  # magnitudes over ~1e-10..1e10
    b = rng.standard_normal(sb)
    a[..., 0] = 0.0  # exact zeros among them
    with H.CTX.workdps(40):
        ha, hb = _hp_arr(a), _hp_arr(b)
        got = ha @ hb
        also = b.T @ ha.T if a.ndim == 2 and b.ndim == 2 else None  # a float64 operand, on the left
        with mpmath.workdps(200):
            want = np.matmul(np.asarray(ha, dtype=object).view(np.ndarray), np.asarray(hb, dtype=object).view(np.ndarray))
    assert np.shape(got) == np.shape(a @ b)
    if np.ndim(got) == 0:
        assert type(got) is H.MPF
    else:
        assert isinstance(got, H.HPArray)
    _assert_matches(got, want, 39)
    if also is not None:
        with H.CTX.workdps(40):
            want_t = np.matmul(H.to_hp(b.T), np.asarray(ha.T).view(np.ndarray))
        _assert_matches(also, want_t, 38)


def test_matmul_cancellation_keeps_every_digit():
    """(1e30 + x) - 1e30 inside a dot product: the exact sum holds x at full precision."""
    with H.CTX.workdps(40):
        row = _hp_arr([1e30, 0.3, -1e30], tweak=False)
        got = row @ _hp_arr([1.0, 1.0, 1.0], tweak=False)
    assert got == H.MPF(0.3)


@pytest.mark.parametrize(
    "make",
    [
        lambda: (_hp_arr(np.ones((2, 3))), np.array([[1.0], [H.CTX.inf], [2.0]], dtype=object)),  # inf: NumPy's loop
        lambda: (_hp_arr(np.ones((2, 2, 3))), _hp_arr(np.ones((3, 2)))),  # stacked matrices
        lambda: (np.array([[1, 2]], dtype=object).view(H.HPArray), _hp_arr(np.ones((2, 1)))),  # Python ints
    ],
)
def test_matmul_leaves_other_operands_to_numpy(make):
    a, b = make()
    with H.CTX.workdps(40):
        assert H._exact_matmul(np.asarray(a).view(np.ndarray), np.asarray(b).view(np.ndarray)) is None
        got = a @ b
        want = np.matmul(np.asarray(a).view(np.ndarray), np.asarray(b).view(np.ndarray))
    assert np.shape(got) == np.shape(want)
    assert all((g == w) or (g != g and w != w) for g, w in zip(np.ravel(got), np.ravel(want)))
