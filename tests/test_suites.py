"""The verifier is as good as the bugs it catches and the correct gradients it lets through."""

import numpy as np
import pytest

from gradverify import check_vjp
from cases import AWKWARD, BUGS


@pytest.mark.parametrize("case", BUGS, ids=[c.name for c in BUGS])
def test_wrong_gradient_is_caught_with_the_right_blame(case, xp):
    inputs = case.arrays(xp, np.random.default_rng(7))
    result = check_vjp(case.fn, case.vjp, *inputs, **case.options)
    assert not result.passed, str(result)
    assert result.blame == "analytic", str(result)
    if case.expect == "analytic":
        assert not result.structural, str(result)
        assert any(p.failures for p in result.per_input), str(result)
        worst = max(result.per_input, key=lambda p: p.failures).worst
        assert worst.verdict == "analytic"
    else:
        assert case.expect in {s.kind for s in result.structural}, str(result)


@pytest.mark.parametrize("case", AWKWARD, ids=[c.name for c in AWKWARD])
def test_correct_awkward_gradient_passes(case, xp):
    inputs = case.arrays(xp, np.random.default_rng(7))
    result = check_vjp(case.fn, case.vjp, *inputs, **case.options)
    assert result.passed, str(result)
    assert result.truth == "elementwise", str(result)


NUMERIC_BUGS = [c for c in BUGS if c.expect == "analytic"]


@pytest.mark.parametrize("case", NUMERIC_BUGS, ids=[c.name for c in NUMERIC_BUGS])
def test_wrong_gradient_is_caught_by_finite_differences_alone(case, xp):
    """Without the truth, the error model makes the finite difference confident enough to blame."""
    inputs = case.arrays(xp, np.random.default_rng(7))
    result = check_vjp(case.fn, case.vjp, *inputs, truth="off", **case.options)
    assert not result.passed and result.blame == "analytic", str(result)


@pytest.mark.parametrize("case", NUMERIC_BUGS, ids=[c.name for c in NUMERIC_BUGS])
def test_wrong_gradient_is_caught_in_directional_mode(case, xp):
    inputs = case.arrays(xp, np.random.default_rng(7))
    result = check_vjp(case.fn, case.vjp, *inputs, mode="directional", directions=4, **case.options)
    assert result.truth == "directional"
    assert not result.passed and result.blame == "analytic", str(result)


@pytest.mark.parametrize("case", AWKWARD, ids=[c.name for c in AWKWARD])
def test_awkward_gradient_is_never_blamed_without_the_truth(case, xp):
    """Finite differences alone may be unable to decide (blame "numerical"), never accuse wrongly."""
    inputs = case.arrays(xp, np.random.default_rng(7))
    result = check_vjp(case.fn, case.vjp, *inputs, truth="off", **case.options)
    assert result.blame != "analytic", str(result)
    assert result.passed or result.blame == "numerical", str(result)
