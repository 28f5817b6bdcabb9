"""gradverify: verify hand-written gradients against finite differences and a high-precision truth.

>>> import numpy as np
>>> import gradverify
>>> x = np.array([0.3, -1.2])
>>> gradverify.check_grad(lambda x: np.sum(np.sin(x)), np.cos, x).passed
True
"""

from gradverify._check import assert_grad, assert_layer, assert_vjp, check_grad, check_layer, check_vjp
from gradverify._errors import (
    CheckBudgetExceeded,
    GradientMismatch,
    GradVerifyError,
    HighPrecisionUnavailable,
    InvalidArgument,
    UserFunctionError,
)
from gradverify._result import VerificationResult

__version__ = "0.1.0"

__all__ = [
    "CheckBudgetExceeded",
    "GradVerifyError",
    "GradientMismatch",
    "HighPrecisionUnavailable",
    "InvalidArgument",
    "UserFunctionError",
    "VerificationResult",
    "__version__",
    "assert_grad",
    "assert_layer",
    "assert_vjp",
    "check_grad",
    "check_layer",
    "check_vjp",
]
