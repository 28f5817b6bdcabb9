"""gradverify: verify hand-written gradients against finite differences and a high-precision truth.

>>> import numpy as np
>>> import gradverify
>>> x = np.array([0.3, -1.2])
>>> gradverify.check_grad(lambda x: np.sum(np.sin(x)), np.cos, x).passed
True

The names below are imported on first use: loading the pytest plugin in a project that never
calls a check must not import the engine, NumPy or mpmath.
"""

import importlib

__version__ = "0.1.0"

# Each public name and the module that defines it.
_EXPORTS = {
    "assert_grad": "gradverify._check",
    "assert_layer": "gradverify._check",
    "assert_vjp": "gradverify._check",
    "check_grad": "gradverify._check",
    "check_layer": "gradverify._check",
    "check_vjp": "gradverify._check",
    "CheckBudgetExceeded": "gradverify._errors",
    "GradVerifyError": "gradverify._errors",
    "GradientMismatch": "gradverify._errors",
    "HighPrecisionUnavailable": "gradverify._errors",
    "InvalidArgument": "gradverify._errors",
    "UserFunctionError": "gradverify._errors",
    "CheckOptions": "gradverify._options",
    "VerificationResult": "gradverify._result",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gradverify' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return __all__
