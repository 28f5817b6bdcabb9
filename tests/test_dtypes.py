"""The dtype under test sets the tolerance; finite differences still run in float64."""

import numpy as np
import pytest

from gradverify import check_vjp
from gradverify._tolerances import RTOL


def _tanh(x):
    import array_api_compat

    return array_api_compat.array_namespace(x).tanh(x)


def _tanh_vjp(v, x):
    y = _tanh(x)
    return (v * (1 - y * y),)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_correct_low_precision_backward_passes_at_its_dtype_tolerance(dtype, xp):
    if not hasattr(xp, dtype):  # array-api-strict has no float16; NumPy's proves the point
        import array_api_compat.numpy as xp
    x = xp.asarray(np.linspace(-2.0, 2.0, 12).reshape(3, 4), dtype=getattr(xp, dtype))
    result = check_vjp(_tanh, _tanh_vjp, x)
    assert result.passed, str(result)
    (report,) = result.per_input
    assert report.dtype == dtype and report.rtol == RTOL[dtype]
    # The backward's own rounding shows, well above float64's and within the tolerance.
    assert 1e-12 < result.max_rel_error <= RTOL[dtype]


def test_a_wrong_float32_backward_is_caught(xp):
    x = xp.asarray(np.linspace(-2.0, 2.0, 12), dtype=xp.float32)
    result = check_vjp(_tanh, lambda v, x: (v * (1 - _tanh(x) ** 2) * 1.01,), x)
    assert not result.passed and result.blame == "analytic", str(result)


def test_finite_differences_run_in_float64_for_float32_inputs(xp):
    """fn sees float64 inputs from the numerical side, float32 ones from the analytic side."""
    seen = set()

    def fn(x):
        seen.add(str(x.dtype).rsplit(".", 1)[-1])
        return x * x

    x = xp.asarray([0.5, -1.5], dtype=xp.float32)
    assert check_vjp(fn, lambda v, x: (2 * v * x,), x, truth="off").passed
    assert seen == {"float32", "float64"}


def test_an_explicit_rtol_overrides_the_dtype_default():
    x = np.array([0.3, -0.7])
    loose = check_vjp(np.exp, lambda v, x: (v * np.exp(x) * (1 + 1e-5),), x, rtol=1e-3)
    assert loose.passed and loose.per_input[0].rtol == 1e-3
    assert not check_vjp(np.exp, lambda v, x: (v * np.exp(x) * (1 + 1e-5),), x).passed
