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
