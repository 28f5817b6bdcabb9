"""Tied kinks judged together: along the line that keeps a tie, the gradient must match phi.

Full mode judges each element at a kink alone, against the one-sided slopes along its own
axis. At a max over tied elements that bracket is ``[0, v]`` for each of them, so a backward
that routes ``v`` to *every* tied maximum passes element by element, though its gradients
add up to ``2 v``: a wrong gradient passed (found by the explore suite's max-pool case).

Moving all the elements of a tie by the same amount keeps them tied. Along that line a
max, a min, a sort or a pooling window is smooth (every piece moves alike), and the
gradient's component along it is then no choice of subgradient but phi's one slope there.
So for each group of kinked elements that share one value, :func:`judge` takes the
one-sided slopes of phi along the group's common direction at two steps each side:

* if phi does not bend the same way at every element of the group along its own axis (a
  separable phi, ``relu(x0) + min(x1, 0)`` at a tie by chance, is smooth along the line
  when its bends cancel, and then every subgradient of each term is valid), or the slopes
  do not settle (a kink or jump just off the point), or the two sides differ (the line
  itself has a kink: ReLUs at an all-zero row, where phi moves as ``sum(v) * relu(t)``),
  the group says nothing and the elements' own verdicts stand;
* else phi is smooth along the line and the analytic ``<g, d>`` must equal its slope,
  within the input's ``rtol`` of the terms and the slopes' own error. A subgradient inside
  the two sides' bracket passes whenever the sides agree this closely, so no valid choice
  at a kink is blamed.

It costs two evaluations of ``fn`` per tied element and four per group, for at most
``MAX_GROUPS`` groups of at most ``MAX_GROUP_SIZE`` elements per input.
"""

from dataclasses import dataclass

import numpy as np

from gradverify import _numerical

# Groups checked per input, the largest first, and the elements of one group.
MAX_GROUPS = 16
MAX_GROUP_SIZE = 64
# The one-sided slopes at t and t/2 must agree to this fraction (they are equal on the
# piecewise-linear lines of max and pooling, and differ by O(t) on curved ones).
SETTLE_RTOL = 1e-3


@dataclass
class TieFailure:
    """A tie group whose gradients do not add up to phi's slope along the tie."""

    elements: np.ndarray  # flat indices of the tied elements
    value: float  # their common value
    analytic: float  # <g, d> over the group, d = 1 on each element
    slope: float  # phi's slope along d
    error: float  # the slope's error estimate


def groups(host, kinked):
    """Flat index arrays of the kinked elements that share one value, largest first (at most
    MAX_GROUPS groups of at most MAX_GROUP_SIZE elements)."""
    idx = np.flatnonzero(np.asarray(kinked).reshape(-1))
    if idx.size < 2:
        return []
    values = host.reshape(-1)[idx]
    order = np.argsort(values, kind="stable")
    idx, values = idx[order], values[order]
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    found = [g for g in np.split(idx, starts[1:]) if 2 <= g.size <= MAX_GROUP_SIZE]
    found.sort(key=lambda g: -g.size)
    return found[:MAX_GROUPS]


def judge(evaluator, i, host, analytic, tie_groups, rtol):
    """The :class:`TieFailure` of each group of input ``i`` whose gradients miss phi's slope along the tie."""
    failures = []
    flat_a = np.asarray(analytic, dtype=np.float64).reshape(-1)
    scale = _numerical.step_scale(host).reshape(-1)
    for tied in tie_groups:
        t = _numerical.BASE_STEP * float(scale[tied[0]])  # tied: one value, one scale
        for group in _bending_alike(evaluator, i, tied, t):
            failure = _judge_group(evaluator, i, host, flat_a, group, t, rtol)
            if failure is not None:
                failures.append(failure)
    return failures


def _judge_group(evaluator, i, host, flat_a, group, t, rtol):
    """A tie failure when phi is smooth along the group's common line and the analytic gradients miss its slope."""
    steps = np.array([t, t / 2, -t, -t / 2])
    diff, moved = evaluator.phi(steps.size, lambda start, stop: {i: _numerical.Sparse([group] * (stop - start), [np.full(group.size, s) for s in steps[start:stop]])}, sparse=True)
    if not np.all(np.isfinite(diff)):
        return None
    noise = 2 * float(np.max(evaluator.noise(moved))) / t
    right, left = diff[:2] / steps[:2], diff[2:] / steps[2:]
    # One-sided slopes extrapolated to t -> 0 (their error is O(t) on a curved line).
    r, l = 2 * right[1] - right[0], 2 * left[1] - left[0]
    error = abs(right[0] - right[1]) + abs(left[0] - left[1]) + 2 * noise
    size = max(abs(r), abs(l), float(np.sum(np.abs(flat_a[group]))))
    settled = max(abs(right[0] - right[1]), abs(left[0] - left[1])) <= SETTLE_RTOL * size + 2 * noise
    tol = rtol * size + 4 * error
    if not settled or abs(r - l) > tol:
        return None  # not smooth along the tie: the elements' own verdicts stand
    a = float(np.sum(flat_a[group]))
    slope = (r + l) / 2
    if abs(a - slope) > tol:
        return TieFailure(group, float(host.reshape(-1)[group[0]]), a, slope, error)
    return None


def _bending_alike(evaluator, i, tied, t):
    """The tied elements where phi clearly bends up along the element's own axis, and those
    where it bends down (each set of at least two).

    A separable phi (a ReLU here, a min(x, 0) there, at one value by chance) can be smooth
    along a common line only if its bends cancel, some up and some down; and then any
    subgradient of each term is valid, whatever their sum. Bends all one way and a smooth
    line mean the elements interact (a max, a min, a sort), and their gradients must share.
    Splitting by the bend also separates independent ties of one value whose cotangents
    differ in sign (the windows of a max-pool over a row of zeros).
    """
    columns = np.repeat(tied, 2)
    deltas = np.tile([t, -t], tied.size)
    diff, moved = evaluator.phi(columns.size, lambda start, stop: {i: _numerical.OneHot(columns[start:stop], deltas[start:stop])}, sparse=True)
    bend = diff[0::2] + diff[1::2]  # phi(x + t e) + phi(x - t e) - 2 phi(x)
    clear = np.abs(bend) > 4 * evaluator.noise(moved.reshape(-1, 2).max(axis=1))
    return [g for g in (tied[clear & (bend > 0)], tied[clear & (bend < 0)]) if g.size >= 2]


def describe(failure, unravel, name):
    """The finding's message."""
    where = ", ".join(str(unravel(k)) for k in failure.elements[:6]) + (", ..." if failure.elements.size > 6 else "")
    return (
        f"{name}: the elements {where} are tied (all {failure.value:.6g}) and phi is smooth along the line that moves them"
        f" together, with slope {failure.slope:.10g} (error {failure.error:.2g}); their analytic gradients add up to"
        f" {failure.analytic:.10g}. Each lies in its own one-sided bracket, but at a tie the gradient must be shared,"
        " not given to every tied element (route it to one, or split it)"
    )
