"""Golden tables: the oracles' forward values and vector-Jacobian products on fixed inputs.

    python -m reference.golden --check   # recompute and diff against reference/golden/*.json
    python -m reference.golden --write   # regenerate the tables

Each case is an op name (the catalog's ``reference`` name), float64 inputs drawn from a fixed
seed, parameters, and a cotangent ``v``; the table stores ``f(x)`` and ``v^T J`` for every
float input at ``DPS`` digits, as decimal strings. The VJP is ``ctx.diff`` of
``phi(x) = sum(v * f(x))`` with respect to each element, on the oracle itself.
"""

import argparse
import json
import sys
from pathlib import Path

import mpmath
import numpy as np

from reference import oracles

DPS = 50
TABLES = Path(__file__).resolve().parent / "golden"
# Agreement asked of a regenerated table: far below float64, far above 50-digit noise.
CHECK_RTOL = mpmath.mpf("1e-35")


def _ints(rng, high, size):
    return rng.integers(0, high, size=size)


def cases():
    """The fixed cases: ``(op, inputs, params)``, inputs as float64 (or integer) arrays."""
    rng = np.random.default_rng(20261123)
    n = rng.standard_normal
    return [
        ("linear", (n((3, 4)), n((4, 2)), n(2)), {}),
        ("sigmoid", (n((2, 3)) * 3,), {}),
        ("tanh", (n((2, 3)) * 2,), {}),
        ("relu", (np.array([-1.5, -0.25, 0.5, 2.0]),), {}),
        ("leaky_relu", (np.array([-1.5, -0.25, 0.5, 2.0]),), {"slope": 0.1}),
        ("softmax", (n((2, 4)) * 3,), {"axis": -1}),
        ("log_softmax", (n((2, 4)) * 3,), {"axis": -1}),
        ("softmax_cross_entropy", (n((3, 4)) * 2, _ints(rng, 4, 3)), {"reduction": "mean"}),
        ("mse", (n((2, 3)), n((2, 3))), {"reduction": "mean"}),
        ("l1", (n((2, 3)), n((2, 3))), {"reduction": "sum"}),
    ]


def _hp(ctx, a):
    a = np.asarray(a)
    if a.dtype.kind == "f":
        return np.array([ctx.mpf(float(v)) for v in a.reshape(-1)], dtype=object).reshape(a.shape)
    return a


def compute(name, inputs, params, dps=DPS):
    """Forward value and VJPs of one case, as decimal strings."""
    ctx = mpmath.MPContext()
    ctx.dps = dps
    oracle = getattr(oracles, name)
    args = [_hp(ctx, a) for a in inputs]
    out = np.asarray(oracle(ctx, *args, **params), dtype=object)
    v = np.random.default_rng(len(name)).standard_normal(out.shape)
    cot = _hp(ctx, v)
    grads = []
    for i, a in enumerate(args):
        if np.asarray(inputs[i]).dtype.kind != "f":
            grads.append(None)
            continue
        g = np.empty(a.shape, dtype=object)
        for k in np.ndindex(a.shape):

            def phi(t, i=i, k=k):
                moved = list(args)
                shifted = a.copy()
                shifted[k] = t
                moved[i] = shifted
                return ctx.fsum(np.asarray(oracle(ctx, *moved, **params), dtype=object).reshape(-1) * cot.reshape(-1))

            g[k] = ctx.diff(phi, a[k])
        grads.append(g)

    def text(arr):
        return None if arr is None else [ctx.nstr(x, dps) for x in np.asarray(arr, dtype=object).reshape(-1)]

    return {
        "op": name,
        "params": params,
        "inputs": [np.asarray(a).tolist() for a in inputs],
        "input_dtypes": [np.asarray(a).dtype.name for a in inputs],
        "cotangent": v.tolist(),
        "forward": {"shape": list(out.shape), "values": text(out)},
        "vjp": [None if g is None else {"shape": list(g.shape), "values": text(g)} for g in grads],
        "dps": dps,
    }


def _close(a, b):
    a, b = mpmath.mpf(a), mpmath.mpf(b)
    return abs(a - b) <= CHECK_RTOL * max(abs(a), abs(b), mpmath.mpf("1e-300"))


def _same(old, new):
    if old["inputs"] != new["inputs"] or old["params"] != new["params"] or old["cotangent"] != new["cotangent"]:
        return False
    pairs = [(old["forward"], new["forward"])] + list(zip(old["vjp"], new["vjp"]))
    for o, n in pairs:
        if (o is None) != (n is None):
            return False
        if o is not None and (o["shape"] != n["shape"] or not all(_close(x, y) for x, y in zip(o["values"], n["values"]))):
            return False
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true", help="regenerate reference/golden/*.json")
    group.add_argument("--check", action="store_true", help="recompute and diff; exit 1 on any difference")
    args = parser.parse_args(argv)
    TABLES.mkdir(exist_ok=True)
    stale = []
    with mpmath.workdps(DPS):  # only for mpmath.mpf in _close; the oracles use their own context
        for name, inputs, params in cases():
            table = compute(name, inputs, params)
            path = TABLES / f"{name}.json"
            if args.write:
                path.write_text(json.dumps(table, indent=1) + "\n")
            elif not path.exists() or not _same(json.loads(path.read_text()), table):
                stale.append(name)
    if args.check:
        print("golden tables up to date" if not stale else f"stale or missing: {', '.join(stale)}")
        return 1 if stale else 0
    print(f"wrote {len(cases())} tables to {TABLES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
