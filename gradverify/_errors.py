"""The exceptions gradverify raises, and the ``assert_*`` twin of a check."""

import functools

__all__ = [
    "CheckBudgetExceeded",
    "GradVerifyError",
    "GradientMismatch",
    "HighPrecisionUnavailable",
    "InvalidArgument",
    "UserFunctionError",
    "asserting",
]


class GradVerifyError(Exception):
    """Base class of every error gradverify raises on purpose."""


class InvalidArgument(GradVerifyError, TypeError, ValueError):
    """An argument has the wrong type or value; the message names it and the fix.

    It is both a ``TypeError`` and a ``ValueError`` so that callers who catch
    either one, as they would for a NumPy function, catch it too.
    """


class UserFunctionError(GradVerifyError):
    """The function or gradient under test raised; the original is chained as ``__cause__``."""


class HighPrecisionUnavailable(GradVerifyError):
    """The function cannot be evaluated on arrays of mpmath numbers (the truth side)."""


class CheckBudgetExceeded(GradVerifyError):
    """A check ran past its ``time_budget`` (or would, by its own estimate, before starting).

    ``.found`` says what was established before it stopped (a short text), ``.evaluations``
    how many calls were made, ``.seconds`` how long it ran.
    """

    def __init__(self, message, *, found="", evaluations=None, seconds=0.0):
        super().__init__(message + (f"\n  found so far: {found}" if found else ""))
        self.found = found
        self.evaluations = dict(evaluations or {})
        self.seconds = seconds


class GradientMismatch(GradVerifyError, AssertionError):
    """Raised by the ``assert_*`` helpers; the message is the readable report.

    The :class:`~gradverify.VerificationResult` is kept on ``.result``.
    """

    def __init__(self, result):
        super().__init__(str(result))
        self.result = result


def asserting(check):
    """The ``assert_*`` twin of ``check``: it raises :class:`GradientMismatch` unless the
    result passes, and returns the result otherwise."""

    @functools.wraps(check)
    def assert_(*args, **kwargs):
        __tracebackhide__ = True
        result = check(*args, **kwargs)
        if not result.passed:
            raise GradientMismatch(result)
        return result

    assert_.__name__ = assert_.__qualname__ = check.__name__.replace("check_", "assert_")
    assert_.__doc__ = (
        f"Like :func:`{check.__name__}`, but raise :class:`gradverify.GradientMismatch` (an"
        " AssertionError whose message is the readable report) unless it passes; return the"
        " result otherwise."
    )
    return assert_
