"""Traced peak memory of a directional check over the input's bytes (issue 11).

``tanh`` (elementwise) and ``sum(tanh)`` over ``N`` float64 elements with their exact VJPs,
``mode="directional"``, ``time_budget=None``. For each it prints the check's peak over the
input's bytes, split at the start of the numerical part (the structural checks before it),
and the peak of one ``fn`` call and one ``vjp`` call alone (the user's own allocations).
``--without-reproduce-lists`` also measures the check with the reproduce line's
``write_array`` skipping inputs of more than 100 elements (which the line does not write
out anyway), to show what that conversion costs.

    .venv/bin/python benchmarks/bench_directional_memory.py 1e6 [off|auto] [--without-reproduce-lists]
"""

import sys
import tracemalloc

import numpy as np

import gradverify
from gradverify import _check, _reproduce


def main(argv):
    n = int(float(argv[0])) if argv else 10**6
    truth = argv[1] if len(argv) > 1 and not argv[1].startswith("--") else "off"
    variants = (False, True) if "--without-reproduce-lists" in argv else (False,)
    x = np.random.default_rng(0).normal(size=n)
    cases = {
        "elementwise": (np.tanh, lambda g, x: (g * (1 - np.tanh(x) ** 2),)),
        "sum": (lambda x: np.sum(np.tanh(x)), lambda g, x: (g * (1 - np.tanh(x) ** 2),)),
    }
    phase = {}
    numerics = _check._CheckRun._numerics

    def timed_numerics(self, seen):
        _, phase["structural"] = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        return numerics(self, seen)

    _check._CheckRun._numerics = timed_numerics
    write = _reproduce.write_array
    for name, (fn, vjp) in cases.items():
        gradverify.check_vjp(fn, vjp, x[:100], mode="directional", truth=truth, time_budget=None)  # imports, first calls
        tracemalloc.start()
        y = fn(x)
        g = vjp(np.ones_like(y), x)
        del y, g
        _, user = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        for skip in variants:
            _reproduce.write_array = (lambda a: None if a.size > 100 else write(a)) if skip else write
            tracemalloc.start()
            r = gradverify.check_vjp(fn, vjp, x, mode="directional", truth=truth, time_budget=None)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            b = x.nbytes
            label = " (reproduce lists skipped)" if skip else ""
            print(
                f"{name:11s} n={n:.0e} truth={truth}{label}: passed={r.passed} peak/input {max(peak, phase['structural']) / b:.2f}"
                f" (structural checks {phase['structural'] / b:.2f}, numerical part and result {peak / b:.2f});"
                f" one fn + one vjp call alone {user / b:.2f}"
            )
    _reproduce.write_array = write
    _check._CheckRun._numerics = numerics


if __name__ == "__main__":
    main(sys.argv[1:])
