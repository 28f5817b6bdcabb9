"""Check power and vacuous-check warnings (issue 14, gradverify._power)."""

import numpy as np
import pytest

import gradverify
from gradverify import _power


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def zeros_vjp(v, x):
    return (np.zeros_like(x),)


def tanh_vjp(v, x):
    return (v * (1 - np.tanh(x) ** 2),)


X = np.random.default_rng(0).normal(size=(2, 3))


def test_every_input_reports_its_power():
    result = gradverify.check_vjp(np.tanh, tanh_vjp, X)
    p = result.per_input[0]
    assert result.passed and result.warnings == []
    assert 0 < p.detectable < 1e-6 and p.blind == 0  # float64: rtol 1e-7 of the smallest element over the largest
    assert "power: fails an error of" in str(result)
    assert result.to_dict()["per_input"][0]["detectable"] == pytest.approx(p.detectable)


def test_float32_power_is_coarser_than_float64():
    p64 = gradverify.check_vjp(np.tanh, tanh_vjp, X).per_input[0]
    p32 = gradverify.check_vjp(np.tanh, tanh_vjp, X.astype(np.float32)).per_input[0]
    assert p32.detectable > 100 * p64.detectable


def test_cotangent_of_ones_through_softmax_is_vacuous():
    # A backward that returns zeros passes: the check could not have failed, and says so.
    result = gradverify.check_vjp(softmax, zeros_vjp, X, cotangent=np.ones((2, 3)))
    assert result.per_input[0].blind == result.per_input[0].checked
    assert any("vacuous check of input 0" in w and "cotangent" in w for w in result.warnings), result.warnings
    assert "WARNING: vacuous check" in str(result)
    # With the default random cotangent the same backward fails.
    assert not gradverify.check_vjp(softmax, zeros_vjp, X).passed


def test_gradient_below_the_floor_everywhere_is_vacuous():
    result = gradverify.check_vjp(np.tanh, zeros_vjp, X + 30)
    assert any("below the check's floor everywhere" in w for w in result.warnings), result.warnings


def test_cotangent_with_zeros_is_partly_blind():
    v = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 1.0]])
    result = gradverify.check_vjp(np.tanh, tanh_vjp, X, cotangent=v)
    assert result.per_input[0].blind == 3
    assert any("the cotangent is 0 at 3 of 6 outputs" in w for w in result.warnings)
    assert not any("vacuous" in w for w in result.warnings)


def test_gate_power_uses_the_gate_allowance():
    x = X.astype(np.float32)
    result = gradverify.check_vjp(np.tanh, tanh_vjp, x, reference=tanh_vjp)
    p = result.per_input[0]
    # The gate's allowance is k * reference error + a 2-ulp floor: far below rtol (2e-3) of the table.
    assert p.gate is not None and p.detectable < 1e-5 and p.blind == 0


def test_measure():
    assert _power.measure(np.array([1.0, 0.5]), np.array([0.1, 0.6])) == (pytest.approx(0.1), 1)
    assert _power.measure(np.array([0.0, 0.0]), np.array([1e-9, 1e-9])) == (float("inf"), 2)
    assert _power.measure(np.array([np.nan]), np.array([1.0])) == (None, 0)
