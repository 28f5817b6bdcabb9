"""Tolerances keyed by the dtype under test, and the relative error every comparison uses.

The relative error of an analytic value ``a`` against a reference ``r`` (a finite
difference or the high-precision truth) is the course-notes one,

    rel(a, r) = |a - r| / max(|a|, |r|, floor),

where ``floor`` keeps two near-zero values from reading as a 100 % error. The floor is the
noise both sides are expected to carry, divided by the tolerance, so that ``rel <= rtol``
holds exactly when ``|a - r| <= rtol * max(|a|, |r|)`` or ``|a - r|`` is within that noise:

    floor = (reference_error + ANALYTIC_NOISE_ULPS * eps(dtype) * natural) / rtol

``reference_error`` is twice the finite difference's own error estimate (zero for the
truth) and ``natural`` the natural size of a gradient element (:func:`natural_size`). A
gradient element far below it (``1 - tanh(x)**2`` at ``x = 12``, ``softmax - onehot`` where
a probability is ``1 - 1e-34``) carries the rounding of the larger terms it was computed
from, and is judged on their absolute scale: the analytic side cannot carry more accuracy
than its dtype allows. The absolute slack this grants is ``ANALYTIC_NOISE_ULPS`` units in
the last place of ``natural``, about 1.4e-14 of it in float64, but never more than half of
``rtol`` of ``natural`` (:func:`analytic_noise`): in bfloat16 and float16, 64 ulps are 50 %
and 6 % of the natural size, a slack that would let a flipped sign pass.
"""

import numpy as np

from gradverify._errors import InvalidArgument

# rtol per dtype under test. float64 is tight enough to catch a backward computed in
# float32 (errors of 1e-7 and up); lower precisions follow JAX's table, loosened where
# a hand-written backward in that dtype accumulates rounding over long reductions.
RTOL = {
    "float64": 1e-7,
    "float32": 2e-3,
    "float16": 2e-2,
    "bfloat16": 1e-1,
}

# How many units in the last place of its dtype an analytic gradient may be off by,
# relative to the largest gradient of the same input (rounding in long reductions).
ANALYTIC_NOISE_ULPS = 64

# Without a truth, an element whose finite difference agrees with the analytic value within
# the difference's own error is verified when that error is at most RESOLUTION_FACTOR * rtol
# of the gradient's largest element (see gradverify._verdict): small elements are checked at
# an absolute resolution of 1e-6 of the largest one in float64, not called unresolved.
RESOLUTION_FACTOR = 10.0

EPS = {name: float(np.finfo(name).eps) for name in ("float64", "float32", "float16")}
EPS["bfloat16"] = 2.0**-7


def rtol_for(dtype_name, rtol=None):
    """The relative tolerance for ``dtype_name``, or ``rtol`` when the caller set one."""
    if rtol is not None:
        if not (isinstance(rtol, (int, float)) and 0 < rtol < 1):
            msg = f"rtol={rtol!r} must be a number in (0, 1), e.g. rtol=1e-6"
            raise InvalidArgument(msg)
        return float(rtol)
    try:
        return RTOL[dtype_name]
    except KeyError:
        msg = f"no default tolerance for dtype {dtype_name}; pass rtol= explicitly"
        raise InvalidArgument(msg) from None


def analytic_noise(eps, rtol, natural):
    """The absolute rounding an analytic gradient element may carry: ``ANALYTIC_NOISE_ULPS``
    ulps of ``natural``, capped at ``rtol / 2`` of it for coarse dtypes."""
    return min(ANALYTIC_NOISE_ULPS * eps, rtol / 2) * natural


def eps_for(dtype_name):
    return EPS.get(dtype_name, EPS["float64"])


def relative_error(a, r, floor):
    """Elementwise ``|a - r| / max(|a|, |r|, floor)``; 0 where all three are 0."""
    a = np.asarray(a, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    diff = np.abs(a - r)
    denom = np.maximum(np.maximum(np.abs(a), np.abs(r)), floor)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(diff == 0, 0.0, diff / denom)
    return rel


def natural_size(magnitude, v_max, scale, largest):
    """The natural size of gradient elements, for the floor of the relative error.

    The largest of: ``largest``, the input's largest reference gradient; ``magnitude /
    scale``, how fast ``phi = sum(v * fn)`` (of magnitude ``sum(|v * fn(x)|)``) moves per unit
    of an element's scale ``max(|x_k|, rms(x))``; and ``v_max``, the cotangent's largest entry,
    the gradient of an op whose Jacobian entries are of order one (softmax, cross-entropy).
    """
    return np.maximum(largest, np.maximum(magnitude / scale, v_max))
