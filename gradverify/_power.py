"""Check power: the smallest error a check could have detected, and vacuous checks.

A check passes vacuously when no error below its floor could have failed it: every gradient
element is below that floor (a backward returning zeros, or off by any factor, would pass,
though one returning large values would not), or the cotangent hides what the
backward does (a cotangent of ones through a softmax makes ``phi = sum(v * fn)`` constant;
a cotangent with zeros leaves those outputs unchecked). Each input's report says how much
power its check had:

* ``detectable``: the smallest error, relative to the input's gradient scale ``G`` (its
  largest judged element), that fails the check at some element. Per element the check
  fails an error ``delta`` larger than its *allowance*: in the dtype table's rule
  ``max(rtol * |r|, 2 * e + noise)`` (``r`` the judge's value, ``e`` the finite difference's
  error estimate, zero with a truth, ``noise`` the analytic noise floor of
  :mod:`gradverify._tolerances`); with ``reference=``, ``k * reference_error + floor + e``
  (:mod:`gradverify._gate`). ``detectable = min(allowance) / G``.
* ``blind``: the elements where a zero gradient would pass (``|r| <= allowance``): there
  the check cannot tell a backward that returns nothing from a right one.

The result's ``warnings`` say when every element of an input is blind (the check could not
have failed), and when the caller's cotangent is zero at some outputs or makes an input's
gradient vanish everywhere. At kinks the allowance is taken at the bracket's larger end.
"""

import numpy as np


def measure(judge, allowance):
    """``(detectable, blind)`` for judge values ``judge`` and per-element ``allowance``."""
    judge = np.abs(np.asarray(judge, dtype=np.float64))
    allowance = np.asarray(allowance, dtype=np.float64)
    known = np.isfinite(judge) & np.isfinite(allowance)
    if not known.any():
        return None, 0
    scale = float(judge[known].max())
    blind = int(np.count_nonzero(known & (judge <= allowance)))
    if scale == 0:
        return float("inf"), blind
    return float(allowance[known].min() / scale), blind


def table_allowance(center, fd_bound, a_noise, rtol):
    """Per element, the largest error the dtype table's rule lets pass."""
    return np.maximum(rtol * np.abs(center), fd_bound + a_noise)


def warnings_for(reports, *, cotangent_given, v_host):
    """The vacuous-check warnings of a result, as sentences."""
    out = []
    if cotangent_given and v_host is not None and v_host.size:
        zeros = int(np.count_nonzero(v_host == 0))
        if 0 < zeros < v_host.size:
            out.append(
                f"the cotangent is 0 at {zeros} of {v_host.size} outputs: what the backward does with those outputs is not checked;"
                " use the default random cotangent (leave cotangent= out) or one without zeros"
            )
    for p in reports:
        for m in p.mutations or []:
            if m["detected"] is False:
                out.append(f"mutation test of {p.name}: the check would pass the mutant {m['kind']} ({m['detail']}); it cannot see such a bug")
        if p.blind is None or p.checked == 0 or p.blind < p.checked:
            continue
        unit = "directions" if p.index is None else "elements"
        if cotangent_given:
            why = (
                "with the given cotangent phi = sum(v * fn) barely depends on it (a cotangent of ones through a softmax or a"
                " normalization makes it constant); use the default random cotangent"
            )
        else:
            why = "its gradient is below the check's floor everywhere (fn barely depends on it at this point); check it at a point where it matters"
        out.append(
            f"vacuous check of {p.name}: a zero gradient would pass at all {p.checked} {unit}, so would a backward off by any factor"
            f" there: only an error above the check's floor could have failed it; {why}"
        )
    return out
