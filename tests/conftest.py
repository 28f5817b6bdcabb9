"""Backends for the project's own tests, Hypothesis profiles, and mpmath hygiene.

``GRADVERIFY_BACKENDS`` (comma-separated: numpy, strict, cupy; default numpy,strict) picks
the array libraries the ``xp`` fixture runs over. Asking for one that is not there is a
usage error, never a skip: a "GPU" run that skips everything would pass while proving nothing.
"""

import os

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from gradverify import InvalidArgument
from gradverify._backend import BACKENDS, load_backend

settings.register_profile("dev", max_examples=25, deadline=None)
settings.register_profile(
    "thorough", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
# CI=true makes Hypothesis load its built-in "ci" profile; elsewhere "dev" unless asked.
if not os.environ.get("CI"):
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def _requested_backends():
    raw = os.environ.get("GRADVERIFY_BACKENDS", "numpy,strict")
    names = [b.strip() for b in raw.split(",") if b.strip()]
    unknown = [b for b in names if b not in BACKENDS]
    if unknown or not names:
        raise pytest.UsageError(f"GRADVERIFY_BACKENDS={raw!r}: choose from {', '.join(BACKENDS)}")
    return names


def _load_backend(name):
    try:
        return load_backend(name)
    except InvalidArgument as exc:
        raise pytest.UsageError(str(exc)) from exc


SELECTED = _requested_backends()


def pytest_configure(config):
    for name in SELECTED:
        _load_backend(name)


@pytest.fixture(params=[pytest.param(b, marks=pytest.mark.gpu if b == "cupy" else ()) for b in SELECTED])
def xp(request):
    """The array namespace of one selected backend."""
    return _load_backend(request.param)


@pytest.fixture(autouse=True)
def _restore_mpmath_precision():
    prec = mpmath.mp.prec
    yield
    mpmath.mp.prec = prec


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
