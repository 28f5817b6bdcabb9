"""Time the finite-difference engine of ``gradverify.check_vjp`` on one linear layer.

    python benchmarks/bench_engine.py [--repeat N] [--rtol R]

The problem is ``y = x @ W + b`` with ``x`` of shape (8, 64), ``W`` (64, 64) and ``b`` (64,):
4672 differentiated elements, so ``mode="auto"`` is full mode and ``truth="auto"`` is the
directional truth. The VJP is correct, so every configuration must pass; one that does not
makes the script exit with status 1, since timing a failing check measures nothing.

Every configuration runs at one ``rtol`` (default: gradverify's float64 default, 1e-7),
because the tolerance sets how many elements the refinement re-evaluates, so the work
compared is the same.

Each configuration is timed with ``time.perf_counter`` (best of ``--repeat``), then run once
more under ``tracemalloc`` for its peak memory (that run is not timed: tracing slows NumPy's
allocations down). Times and memory are reported as ratios to the looped full mode of the
same run; the absolute numbers depend on the machine and are printed only for context.
"""

import argparse
import platform
import sys
import time
import tracemalloc

import numpy as np

import gradverify

BATCH, FAN_IN, FAN_OUT = 8, 64, 64


def linear(x, W, b):
    """``x @ W + b``; with a leading batch axis on all three inputs it maps it through."""
    return x @ W + b[..., None, :]


def linear_vjp(v, x, W, b):
    """The exact VJP of the unbatched :func:`linear`."""
    return v @ W.T, x.T @ v, np.sum(v, axis=0)


CONFIGS = [
    ("full, looped", {"mode": "full", "batched": False, "truth": "off"}),
    ("full, batched", {"mode": "full", "batched": True, "truth": "off"}),
    ("directional (4)", {"mode": "directional", "truth": "off"}),
    ("full, batched, truth=auto", {"mode": "full", "batched": True, "truth": "auto"}),
]


def inputs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, FAN_IN))
    W = rng.normal(size=(FAN_IN, FAN_OUT)) / np.sqrt(FAN_IN)
    b = rng.normal(size=(FAN_OUT,))
    return x, W, b


def run(options, args, rtol):
    return gradverify.check_vjp(linear, linear_vjp, *args, rtol=rtol, name="linear", **options)


def measure(options, args, repeat, rtol):
    """Best time of ``repeat`` runs, the last result, and the peak traced memory of one more."""
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run(options, args, rtol)
        best = min(best, time.perf_counter() - started)
    tracemalloc.start()
    try:
        run(options, args, rtol)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return best, result, peak


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per configuration; the best counts (default 3)")
    parser.add_argument("--rtol", type=float, default=None, help="relative tolerance of every check (default: gradverify's, by dtype)")
    opts = parser.parse_args(argv)
    if opts.repeat < 1:
        parser.error(f"--repeat {opts.repeat} must be at least 1")
    if opts.rtol is not None and not 0 < opts.rtol < 1:
        parser.error(f"--rtol {opts.rtol} must be in (0, 1)")

    args = inputs()
    n = sum(a.size for a in args)
    print(f"check_vjp on linear x @ W + b, x {args[0].shape}, W {args[1].shape}, b {args[2].shape}: {n} elements")
    print(
        f"gradverify {gradverify.__version__}, NumPy {np.__version__}, Python {platform.python_version()},"
        f" {platform.machine()}, rtol {opts.rtol if opts.rtol is not None else 'default'}, best of {opts.repeat}"
    )

    rows, failed = [], []
    for label, options in CONFIGS:
        seconds, result, peak = measure(options, args, opts.repeat, opts.rtol)
        if not result.passed:
            failed.append((label, result))
        rows.append((label, seconds, result, peak))

    base_s, base_mem = rows[0][1], rows[0][3]
    header = (
        f"{'configuration':<27} {'seconds':>8} {'time/looped':>11} {'fn float64':>10} {'fn mpmath':>9}"
        f" {'truth':>11} {'peak MiB':>9} {'mem/looped':>10}  result"
    )
    print()
    print(header)
    print("-" * len(header))
    for label, seconds, result, peak in rows:
        ev = result.evaluations
        print(
            f"{label:<27} {seconds:8.3f} {seconds / base_s:11.3f} {ev['fn_float64']:10d} {ev['fn_high_precision']:9d}"
            f" {result.truth:>11} {peak / 2**20:9.1f} {peak / base_mem:10.3f}  {'passed' if result.passed else 'FAILED'}"
        )
    print()
    print("fn float64: calls of fn on float64 inputs by the finite differences (a batched call counts once);")
    print("fn mpmath: high-precision evaluations of phi by the truth. Ratios are to 'full, looped' of this run.")

    for label, result in failed:
        print(f"\n{label}: the check did not pass, so its timing is meaningless:\n{result}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
