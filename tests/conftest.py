"""Backends for the project's own tests, Hypothesis profiles, and mpmath hygiene.

The ``xp`` fixture comes from gradverify's pytest plugin (``gradverify.pytest_plugin``):
``--gradverify-backends`` or ``GRADVERIFY_BACKENDS`` (comma-separated: numpy, strict, cupy)
picks the array libraries it runs over; here the default is numpy,strict (the plugin's own
default, for users, is numpy). Asking for one that is not there is a usage error, never a
skip: a "GPU" run that skips everything would pass while proving nothing.
"""

import os

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

PROJECT_BACKENDS = "numpy,strict"

settings.register_profile("dev", max_examples=25, deadline=None)
settings.register_profile(
    "thorough", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
# CI=true makes Hypothesis load its built-in "ci" profile; elsewhere "dev" unless asked.
if not os.environ.get("CI"):
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Default the plugin's backends to numpy,strict unless the command line or the environment chose."""
    if config.getoption("gradverify_backends") is None and not os.environ.get("GRADVERIFY_BACKENDS", "").strip():
        config.option.gradverify_backends = PROJECT_BACKENDS


@pytest.fixture(autouse=True)
def _restore_mpmath_precision():
    prec = mpmath.mp.prec
    yield
    mpmath.mp.prec = prec


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
