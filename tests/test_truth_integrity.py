"""The truth must never be fake (issue 9): per-element integrity of the high-precision truth.

Code that runs fine in float64 can silently drop the mpmath precision (a float scratch
buffer, a cast, ``float()``), and NumPy routines can leave Python floats among mpmath
numbers. Each test here is one idiom, judged at the level of :mod:`gradverify._truth`:
either the element has no truth and a note that names the idiom (the finite differences
decide there), or the truth is real and equals the exact derivative.
"""

import math

import mpmath
import numpy as np
import pytest

from gradverify import _highprec as H
from gradverify._errors import HighPrecisionUnavailable
from gradverify._truth import (
    PROBE_EXPONENT,
    HighPrecisionPhi,
    TruthValues,
    confirm,
    element_scale,
    input_scale,
    reexamine,
)

DPS = 40


def _phi(fn, *xs, v=None):
    xs = [np.asarray(x, dtype=np.float64) for x in xs]
    out = np.asarray(fn(*xs), dtype=np.float64)
    v = np.ones(out.shape) if v is None else np.asarray(v, dtype=np.float64)
    return HighPrecisionPhi(fn, xs, v, dps=DPS, floating=[True] * len(xs))


def _truth(fn, *xs, v=None, i=0):
    phi = _phi(fn, *xs, v=v)
    x = np.asarray(xs[i], dtype=np.float64).reshape(-1)
    return phi.elementwise(i, element_scale(x), input_scale(x))


def _no_truth(tv, *phrases):
    """No element has a truth, and every note names all ``phrases``."""
    assert np.all(np.isnan(tv.center)) and np.all(np.isnan(tv.lo)) and np.all(np.isnan(tv.hi))
    assert not tv.kink.any() and not tv.near_kink.any()
    for note in tv.note:
        assert note.startswith("no truth"), note
        for p in phrases:
            assert p in note, (p, note)


def _real(tv, want, rtol=1e-12):
    """Every element has a clean truth equal to ``want``."""
    assert list(tv.note) == [""] * len(want)
    np.testing.assert_allclose(tv.center, want, rtol=rtol, atol=1e-300)


# --- (a) float scratch buffers and casts: detected, named, no truth ---------------------

X = np.array([0.5, -1.5, 2.0])


def test_issue_example_float64_scratch_buffer_has_no_truth():
    def f(x):
        out = np.zeros(x.shape)
        [out.__setitem__(i, x[i] ** 2) for i in range(x.size)]
        return out * x

    # Today's failure mode: every output element is an mpmath number, so nothing looks wrong...
    assert all(type(e) is H.MPF for e in H.evaluate(f, [X]))
    # ...but the truth knows the precision was lost, and says where.
    _no_truth(_truth(f, X), "scratch buffer", "out.__setitem__(i, x[i] ** 2)")


@pytest.mark.parametrize(
    ("make", "phrase"),
    [
        (lambda x: np.empty(x.shape), "scratch buffer"),
        (lambda x: np.zeros(x.shape, dtype=np.float32), "float32) scratch buffer"),
        (lambda x: np.zeros_like(np.ones(x.shape)), "scratch buffer"),  # like a float array
    ],
)
def test_float_buffers_written_element_by_element_have_no_truth(make, phrase):
    def f(x):
        out = make(x)
        for i in range(x.size):
            out[i] = np.tanh(x[i])
        return out + x

    _no_truth(_truth(f, X), phrase)


def test_float32_buffer_is_caught_even_though_the_truth_would_see_a_flat_zero():
    # float32's resolution (6e-8) is far above the truth's step (5e-14): the five-point
    # stencil alone sees that term as constant and the probe agrees with it. The traced
    # conversions see the value rounded.
    def f(x):
        out = np.zeros(x.shape, dtype=np.float32)
        for i in range(x.size):
            out[i] = x[i] ** 2
        return out * x

    _no_truth(_truth(f, X), "float32) scratch buffer", "out[i] = x[i] ** 2")


@pytest.mark.parametrize(
    ("cast", "phrase"),
    [
        (lambda x: np.array(x, dtype=np.float64), "np.asarray/np.array"),
        (lambda x: np.asarray(x, dtype=float), "np.asarray/np.array"),
        (lambda x: x.astype(float), ".astype(float)"),
        (lambda x: x.astype(np.float32), "float32"),
        (lambda x: np.array([float(v) for v in x]), "float()"),
        (lambda x: np.array([np.float64(v) for v in x]), "np.float64"),
        (lambda x: np.array([math.exp(v) for v in x]), "math.*"),
    ],
)
def test_casts_inside_the_function_have_no_truth(cast, phrase):
    def f(x):
        return cast(x) * x  # the product is mpmath-valued again

    _no_truth(_truth(f, X), phrase)


def test_check_grad_style_float_of_the_loss_has_no_truth():
    # check_grad(lambda x: float(np.sum(x**2)), ...) wraps f's result with xp.asarray.
    def fn(x):
        return H.namespace.asarray(float(np.sum(x**2)))

    _no_truth(_truth(fn, X), "float()", "float(np.sum(x**2))")


def test_a_cast_of_the_whole_output_is_refused_at_construction():
    # Nothing per element to say: the evaluator cannot be built, uniformly catchable.
    with pytest.raises(HighPrecisionUnavailable, match="lost precision"):
        _phi(lambda x: np.asarray(x, dtype=float) * 2, X)


def test_a_cast_of_another_input_leaves_this_inputs_truth_real():
    # w is rounded (a cast) but x's path is clean: x keeps its truth, w loses it.
    def f(x, w):
        return x**3 * np.asarray(w, dtype=float)

    w = np.array([0.25, 3.0, -1.0])
    _real(_truth(f, X, w, i=0), 3 * X**2 * w)
    _no_truth(_truth(f, X, w, i=1), "np.asarray/np.array")


def test_a_float_for_control_flow_costs_no_truth_where_it_does_not_move():
    def f(x, w):
        scale = 2.0 if float(np.sum(w)) > 0 else 3.0  # depends on w, not on x
        return scale * np.sin(x)

    w = np.array([1.0, 2.0])
    _real(_truth(f, X, w, i=0), 2 * np.cos(X))


def test_output_floats_that_move_have_no_truth():
    # mpmath's global functions return numbers of the global context (53 bits).
    def f(x):
        return np.array([mpmath.exp(v) for v in x], dtype=object)

    _no_truth(_truth(f, X), "output element")


def test_probe_catches_rounding_without_a_float_call():
    # mpmath's global context rounds to 53 bits without float(); the namespace turns the
    # result back into gradverify's numbers, so the output looks clean. Only the probe,
    # a step of 1e-25 relative, sees that it no longer moves.
    def f(x):
        return H.namespace.asarray(np.array([mpmath.exp(v) for v in x], dtype=object))

    tv = _truth(f, X)
    _no_truth(tv, "rounded to a grid")


def test_probe_catches_a_term_that_stops_moving_below_float64_resolution():
    # A term rounded to 53 bits moves at the five-point step (5e-14) by whole units in the
    # last place, about as the derivative says; the probe (1e-25) sees it standing still.
    def f(x):
        rounded = H.namespace.asarray(np.array([mpmath.mpf(v) * 1 for v in x**2], dtype=object))
        return rounded + 1e-3 * x

    assert PROBE_EXPONENT * DPS == 25
    _no_truth(_truth(f, np.array([0.3])), "does not follow a step of 1e-25", "derivative 0.600969", "moves at 0.001")
    # elsewhere the closer look of the five-point stencil already sees the grid
    _no_truth(_truth(f, np.array([0.75])), "a million times smaller", "rounded to a grid")


# --- (b) idioms that are supported: the truth is real ---------------------------------

def test_zeros_like_of_the_input_is_a_high_precision_buffer():
    def f(x):
        out = np.zeros_like(x)
        for i in range(x.size):
            out[i] = x[i] ** 2
        return out * x

    _real(_truth(f, X), 3 * X**2)


@pytest.mark.parametrize("like", [np.zeros_like, np.empty_like, np.ones_like, lambda x: np.full_like(x, 0.5)])
def test_like_constructors_of_an_input_keep_precision(like):
    def f(x):
        out = like(x)
        out[...] = np.exp(x)
        return np.expm1(out * 1e-30)  # needs every digit of exp(x)

    tv = _truth(f, X)
    assert list(tv.note) == [""] * 3
    with mpmath.workdps(60):
        want = [float(mpmath.exp(mpmath.mpf(v)) * mpmath.mpf(1e-30) * mpmath.exp(mpmath.exp(mpmath.mpf(v)) * mpmath.mpf(1e-30))) for v in X]
    np.testing.assert_allclose(tv.center, want, rtol=1e-12)


def test_elu_with_minimum_and_an_exact_zero():
    x = np.array([0.0, -1.0, 2.0, -1e-3])

    def elu(x):
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))

    tv = _truth(elu, x)
    _real(tv, [1.0, math.exp(-1.0), 1.0, math.exp(-1e-3)])
    assert not tv.kink.any()


def test_clip_at_its_bounds_does_not_raise_and_brackets_the_kink():
    x = np.array([2.0, -3.0, 1.0, 0.5, -1.0])
    tv = _truth(lambda x: np.clip(x, -1.0, 1.0), x)
    assert list(tv.note) == [""] * 5
    assert tv.center[[0, 1, 3]].tolist() == [0.0, 0.0, 1.0]
    assert tv.kink.tolist() == [False, False, True, False, True]
    for k in (2, 4):  # the subgradients of clip at a bound: [0, 1]
        assert tv.lo[k] == pytest.approx(0.0, abs=1e-20) and tv.hi[k] == pytest.approx(1.0, rel=1e-12)


def test_float_constants_and_arrays_become_mpmath_numbers():
    x = H.to_hp(np.array([2.0, -3.0, 1.0]))
    assert isinstance(x, H.HPArray)
    for r in [np.minimum(x, 0.0), np.maximum(0.0, x), np.clip(x, -1.0, 1.0), np.where(x > 0, x, 0.0),
              np.where(x > 0, 0.5, x), np.concatenate([x, np.array([0.5])]), np.stack([x, np.ones(3)]),
              np.fmax(x, np.float32(0.5)), x * np.array([0.1, 0.2, 0.3]), np.pad(x, 1, constant_values=0.25)]:
        assert r.dtype == object and all(type(e) is H.MPF for e in r.reshape(-1)), r
    assert np.all(np.expm1(np.minimum(x, 0.0)) <= 0)  # no Python float without .expm1
    assert isinstance(np.sum(x), H.MPF) and (x > 0).dtype == bool


def test_casts_still_round_but_are_recorded_with_their_line():
    traced = H.traced_call(lambda x: x * float(x[0]), [H.to_hp(np.array([1.0, 2.0]))])
    (value, (name, line, source)), = traced.conversions
    assert value == H.MPF(1.0)._mpf_ and name == __file__ and "float(x[0])" in source
    assert "float()" in H.describe_conversion((name, line, source))


# --- (c) the derivative methods never raise -------------------------------------------

def test_failures_near_x_are_notes_not_exceptions():
    def f(x):
        if np.any(x > 1.0):
            raise ValueError("only up to 1")
        return x * 2

    tv = _truth(f, np.array([1.0, 0.5]))
    assert np.isnan(tv.center[0]) and "failed near x" in tv.note[0] and "only up to 1" in tv.note[0]
    _real(TruthValues(**{k: getattr(tv, k)[1:] for k in ("center", "lo", "hi", "kink", "note")}), [2.0])


def test_directional_truth_has_the_same_integrity():
    def clean(x):
        return np.sin(x) * x

    def dirty(x):
        out = np.zeros(x.shape)
        out[:] = np.sin(x)
        return out * x

    d = [{0: np.array([1.0, -1.0, 0.5])}, {0: np.array([0.0, 1.0, 1.0])}]
    tv = _phi(clean, X).directional(d)
    want = [float((np.cos(X) * X + np.sin(X)) @ di[0]) for di in d]
    _real(tv, want)
    _no_truth(_phi(dirty, X).directional(d), "scratch buffer", "out[:] = np.sin(x)")


def test_integrity_costs_about_one_evaluation_per_element():
    x = np.linspace(-2, 2, 8)
    phi = _phi(np.tanh, x)
    stencils = []
    five_point = phi._five_point
    phi._five_point = lambda *a: stencils.append(1) or five_point(*a)
    before = phi.calls
    tv = phi.elementwise(0, element_scale(x), 1.0)
    _real(tv, 1 - np.tanh(x) ** 2)
    # Four per five-point stencil (some elements take two, at more digits); the integrity
    # adds one probe per element and one evaluation at x per precision used.
    extra = phi.calls - before - 4 * len(stencils)
    assert extra <= 8 + len(phi._centers) - 1


# --- (e) a kink within float64 resolution of x ---------------------------------------

def test_near_kink_hinge_exposes_the_float64_bracket():
    # The multiclass hinge margin s1 - s0 + 1 is exactly 0 in float64 and 5.55e-17 exactly.
    s = np.array([0.3, -0.7, 0.2])
    assert s[1] - s[0] + 1.0 == 0.0

    def svm(s):
        return np.maximum(0.0, s[1:] - s[0] + 1.0)

    tv = _truth(svm, s)
    assert list(tv.note) == [""] * 3
    # The truth, looking closer, sees the hinge active (smooth): slope 1 for s1...
    assert tv.center[1] == pytest.approx(1.0) and not tv.kink[1]
    # ...but flags that float64 cannot tell: the textbook subgradient 0 is within the bracket.
    assert tv.near_kink.tolist() == [True, True, False]
    assert tv.coarse_lo[1] == pytest.approx(0.0, abs=1e-12) and tv.coarse_hi[1] == pytest.approx(1.0, rel=1e-12)
    assert tv.coarse_lo[0] == pytest.approx(-2.0, rel=1e-12) and tv.coarse_hi[0] == pytest.approx(-1.0, rel=1e-12)
    assert np.isnan(tv.coarse_lo[2]) and tv.center[2] == 1.0


def test_a_kink_exactly_at_x_is_a_kink_not_a_near_kink():
    tv = _truth(lambda x: np.maximum(x, 0.0), np.array([0.0, 1.0]))
    assert tv.kink.tolist() == [True, False] and not tv.near_kink.any()
    assert (tv.lo[0], tv.hi[0]) == pytest.approx((0.0, 1.0))


# --- (d) re-examination, confirm, TruthValues -------------------------------------------

def test_reexamine_keeps_a_real_truth_and_drops_an_unsettled_one():
    x = np.array([0.5, 1.5])
    phi = _phi(np.tanh, x)

    def recompute(**kw):
        return phi.elementwise(0, element_scale(x), input_scale(x), **kw)

    tv = recompute()
    kept = reexamine(tv, np.array([True, False]), recompute, DPS, atol=np.zeros(2))
    assert kept.tolist() == [True, False]
    _real(tv, 1 - np.tanh(x) ** 2)

    calls = iter(range(100))

    def drifting(indices, extra_digits):  # a truth that changes with every precision
        got = TruthValues.unknown(len(indices))
        got.center[:] = got.lo[:] = got.hi[:] = 1.0 + next(calls)
        return got

    kept = reexamine(tv, np.array([False, True]), drifting, DPS, atol=np.zeros(2))
    assert kept.tolist() == [False, False]
    assert np.isnan(tv.center[1]) and "kept changing" in tv.note[1] and tv.note[0] == ""


def test_reexamine_drops_a_truth_whose_recomputation_has_a_note():
    tv = _truth(np.sin, X)

    def lost(indices, extra_digits):
        return TruthValues.unknown(len(indices), note="no truth: precision lost: something")

    kept = reexamine(tv, np.array([True, False, True]), lost, DPS, atol=np.zeros(3))
    assert kept.tolist() == [False, False, False]
    assert np.isnan(tv.center[[0, 2]]).all() and tv.center[1] == pytest.approx(math.cos(X[1]))
    assert tv.note.tolist() == ["no truth: precision lost: something", "", "no truth: precision lost: something"]


def test_truth_values_fields_stay_consistent():
    u = TruthValues.unknown(3, note="not computed")
    assert u.note.tolist() == ["not computed"] * 3 and not u.near_kink.any() and np.isnan(u.coarse_lo).all()
    assert not u.has_truth.any()
    tv = _truth(lambda s: np.maximum(0.0, s[1:] - s[0] + 1.0), np.array([0.3, -0.7, 0.2]))
    u.fill([0, 2], TruthValues(**{f: getattr(tv, f)[[1, 2]] for f in ("center", "lo", "hi", "kink", "note", "near_kink", "coarse_lo", "coarse_hi")}))
    assert u.has_truth.tolist() == [True, False, True]
    assert u.near_kink.tolist() == [True, False, False] and u.note.tolist() == ["", "not computed", ""]
    assert u.coarse_hi[0] == pytest.approx(1.0)
    u.drop([0], "no truth: dropped")
    assert np.isnan(u.center[0]) and not u.near_kink[0] and np.isnan(u.coarse_hi[0]) and u.note[0] == "no truth: dropped"


def test_confirm_keeps_a_settled_truth():
    x = np.array([1e-20, 0.5])
    phi = _phi(lambda x: 1 / (1 + x**2), x)

    def recompute(**kw):
        return phi.elementwise(0, element_scale(x), input_scale(x), **kw)

    tv = recompute()
    confirm(tv, np.array([True, True]), recompute, DPS, atol=np.zeros(2))
    _real(tv, -2 * x / (1 + x**2) ** 2)


def test_global_mpmath_precision_untouched():
    mpmath.mp.dps = 15
    _truth(lambda x: np.clip(x, -1.0, 1.0) * np.exp(x), X)
    assert mpmath.mp.dps == 15 and H.CTX.prec == 53


# --- the lazy truth of check_vjp (issue 11) keeps these rules ----------------------------


def _buffered_tanh(x):
    out = np.zeros(x.shape)
    flat, xs = out.reshape(-1), x.reshape(-1)
    for i in range(x.size):
        flat[i] = np.tanh(xs[i])
    return out + x


@pytest.mark.parametrize("shape", [(3,), (12, 10)])
def test_a_lazy_truth_that_lost_precision_is_no_truth(shape):
    """With truth="auto" the elements the finite differences settle get no truth of their own;
    the direction that checks them loses precision too, and is never taken as a truth: on a small
    input every element then gets its own (which fails the same way, with the idiom named), on a
    larger one the direction's row has none. Either way the finite differences decide."""
    from gradverify import check_vjp

    x = np.linspace(-1.5, 1.5, math.prod(shape)).reshape(shape)
    result = check_vjp(_buffered_tanh, lambda v, x: (v * (2 - np.tanh(x) ** 2),), x)
    assert result.passed and result.truth == "lazy", str(result)
    rows = {p.index: p for p in result.per_input}
    if x.size <= 64:
        assert list(rows) == [0] and rows[0].truth_missing == x.size, str(result)
        assert "scratch buffer" in rows[0].truth_missing_reason, str(result)
        assert "the direction over the 3 the finite differences settled has no truth" in result.truth_note
    else:
        assert list(rows) == [0, None] and rows[None].truth_missing == 1, str(result)
        assert "scratch buffer" in rows[None].truth_missing_reason and rows[None].max_rel_analytic_truth is None
