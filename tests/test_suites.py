"""The verifier is as good as the bugs it catches and the correct gradients it lets through."""

import numpy as np
import pytest

from gradverify import check_vjp
from cases import AWKWARD, BUGS, NEVER_PASS, REAL_BUGS, REAL_CORRECT
from student_layers import STUDENT_BUGS, STUDENT_CORRECT


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
    assert result.truth == "lazy", str(result)


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
    result = check_vjp(case.fn, case.vjp, *inputs, **{**case.options, "truth": "off"})
    assert result.blame != "analytic", str(result)
    assert result.passed or result.blame == "numerical", str(result)


# -- issue 9: code written the way real code is written (NumPy idioms, so NumPy only) ------------

TRUTHS = ["auto", "off"]
CORRECT = REAL_CORRECT + STUDENT_CORRECT
WRONG = REAL_BUGS + STUDENT_BUGS


def _run(case, truth):
    inputs = case.inputs(np.random.default_rng(7))
    # No time budget: these judge verdicts, and a budget's refusal depends on the machine's load.
    options = {"time_budget": None, **case.options, "truth": case.options.get("truth", truth) if truth == "auto" else truth}
    return check_vjp(case.fn, case.vjp, *inputs, **options)


@pytest.mark.parametrize("truth", TRUTHS)
@pytest.mark.parametrize("case", CORRECT, ids=[c.name for c in CORRECT])
def test_real_code_correct_gradient_is_never_blamed(case, truth):
    """Passes, or is honestly inconclusive (blame "numerical"); never blamed."""
    result = _run(case, truth)
    assert result.blame != "analytic", str(result)
    assert result.passed or result.blame == "numerical", str(result)
    if truth == "auto" and "truth" not in case.options:
        assert result.passed, str(result)  # with the truth there is no excuse left


@pytest.mark.parametrize("truth", TRUTHS)
@pytest.mark.parametrize("case", WRONG, ids=[c.name for c in WRONG])
def test_real_code_wrong_gradient_is_caught(case, truth):
    result = _run(case, truth)
    assert not result.passed and result.blame == "analytic", str(result)


@pytest.mark.parametrize("truth", TRUTHS)
@pytest.mark.parametrize("case", NEVER_PASS, ids=[c.name for c in NEVER_PASS])
def test_no_gradient_passes_where_fn_is_not_differentiable_in_float64(case, truth):
    result = _run(case, truth)
    assert not result.passed, str(result)


@pytest.mark.parametrize("case", [c for c in NEVER_PASS if "float32" in c.name], ids=lambda c: c.name)
def test_a_float32_buffer_is_a_structural_finding_not_a_wrong_gradient(case):
    result = _run(case, "auto")
    assert {s.kind for s in result.structural} == {"fn_not_float64"}, str(result)
    assert result.blame is None and not result.per_input, str(result)


def test_a_mutated_cotangent_does_not_corrupt_the_numbers():
    def vjp(v, x):
        v *= 1 - np.tanh(x) ** 2  # right value, computed in the caller's array
        return (v,)

    result = check_vjp(np.tanh, vjp, np.array([0.3, -1.2, 2.0]), truth="elementwise")  # every element judged by its truth
    assert [s.kind for s in result.structural] == ["vjp_mutates_cotangent"]
    assert result.per_input and result.per_input[0].failures == 0, str(result)
    assert result.max_rel_error < 1e-12, str(result)


def test_one_bad_gradient_does_not_hide_the_verdict_of_the_others():
    def vjp(v, x, w):
        return (v @ w.T)[:, :1], 2 * x.T @ v  # dx has the wrong shape; dw is doubled

    rng = np.random.default_rng(0)
    result = check_vjp(lambda x, w: x @ w, vjp, rng.standard_normal((2, 3)), rng.standard_normal((3, 2)))
    assert "gradient_shape" in {s.kind for s in result.structural}
    assert [p.index for p in result.per_input] == [1] and result.per_input[0].failures, str(result)


def test_a_vjp_that_mutates_its_input_on_every_call_leaves_the_numbers_alone():
    def vjp(v, x):
        g = 2 * v * x
        x *= 3.0  # changes the caller's array on every call; its returned value is right
        return (g,)

    x = np.array([0.5, -1.0, 2.0])
    result = check_vjp(lambda x: x * x, vjp, x.copy(), truth="elementwise")  # every element judged by its truth
    assert [s.kind for s in result.structural] == ["vjp_mutates_input"], str(result)
    assert result.per_input[0].failures == 0 and result.max_rel_error < 1e-12, str(result)


def test_a_truth_that_alone_disagrees_is_reexamined_at_the_differences_scale():
    """A wiggle far below float64's view (1e-9 sin(1e12 x)) moves the exact derivative by ~1e3;
    float64 and the gradient both see x**2. The truth must not blame on its own word."""
    f = lambda x: x * x + 1e-9 * np.sin(1e12 * x)  # noqa: E731
    x = np.array([0.7, -1.3])
    result = check_vjp(f, lambda v, x: (2 * v * x,), x)
    assert result.blame != "analytic", str(result)
    assert "float64's view" in str(result), str(result)
    wrong = check_vjp(f, lambda v, x: (2.02 * v * x,), x)
    assert not wrong.passed and wrong.blame == "analytic", str(wrong)


def test_a_quantized_input_does_not_hide_another_inputs_wrong_gradient_in_directional_mode():
    def fn(x, w):
        buf = np.zeros(x.shape, dtype=np.float32)
        buf[:] = x  # x passes through float32; w stays float64
        return buf.astype(np.float64) * x + w * w

    def vjp(v, x, w):
        return 2 * v * x, 3 * v * w  # dw is wrong (2 v w is right)

    rng = np.random.default_rng(0)
    result = check_vjp(fn, vjp, rng.standard_normal(40), rng.standard_normal(40), mode="directional")
    assert "fn_not_float64" in {s.kind for s in result.structural}, str(result)
    assert not result.passed and result.blame == "analytic", str(result)
