"""Golden tables: the oracles' forward values and vector-Jacobian products on fixed inputs.

    python -m reference.golden --check   # recompute and diff against reference/golden/*.json
    python -m reference.golden --write   # regenerate the tables

Each case is an op name (the catalog's ``reference`` name), float64 inputs drawn from a fixed
seed, parameters, and a cotangent ``v``; the table stores ``f(x)`` and ``v^T J`` for every
float input at ``DPS`` digits, as decimal strings. The VJP is ``ctx.diff`` of
``phi(x) = sum(v * f(x))`` with respect to each element, on the oracle itself.

A case may carry a ``case`` label, for a second table of the same op (other parameters): the
table is then ``<op>-<case>.json`` and holds ``"case": "<case>"`` beside ``"op": "<op>"``;
without one it is ``<op>.json`` and has no ``case`` key. Op names never contain ``-``.
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


def _fitted(X):
    """Per-feature statistics of a training set, in plain float64 NumPy (population moments)."""
    mean = X.mean(axis=0)
    centered = X - mean
    variances, vectors = np.linalg.eigh(centered.T @ centered / X.shape[0])
    order = np.argsort(variances)[::-1]
    return {"mean": mean, "std": X.std(axis=0), "low": X.min(axis=0), "high": X.max(axis=0), "components": vectors[:, order], "variances": variances[order]}


def table_name(op, case=None):
    return op if case is None else f"{op}-{case}"


def cases():
    """The fixed cases: ``(op, inputs, params)`` or ``(op, inputs, params, case)``, inputs as
    float64 (or integer) arrays. New cases go at the end: the inputs come from one stream."""
    rng = np.random.default_rng(20261123)
    n = rng.standard_normal
    out = [
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
    # Optimizers: (param, grad, *state) of one shape; squared-gradient states positive and
    # gradients away from 0, so every square root is taken well inside its domain.
    pos = lambda shape, scale=1.0: scale * (0.5 + rng.random(shape))  # noqa: E731
    out += [
        ("sgd", (n((2, 3)), n((2, 3))), {"lr": 0.1}),
        ("momentum", (n((2, 3)), n((2, 3)), n((2, 3))), {"lr": 0.1, "momentum": 0.9}),
        ("nesterov", (n((2, 3)), n((2, 3)), n((2, 3))), {"lr": 0.05, "momentum": 0.8}),
        ("adagrad", (n((2, 3)), n((2, 3)), pos((2, 3))), {"lr": 0.1, "eps": 1e-8}),
        ("adagrad_rms", (n((2, 3)), n((2, 3)), pos((2, 3))), {"lr": 0.1, "t": 4, "eps": 1e-6}),
        ("rmsprop", (n((2, 3)), n((2, 3)), pos((2, 3))), {"lr": 0.01, "rho": 0.9, "eps": 1e-8}),
        ("adam", (n((2, 2)), n((2, 2)), 0.1 * n((2, 2)), pos((2, 2), 0.1)), {"lr": 0.01, "t": 3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "bias_correction": True}),
        ("adam", (n((2, 2)), n((2, 2)), 0.1 * n((2, 2)), pos((2, 2), 0.1)), {"lr": 0.01, "t": 3, "beta1": 0.8, "beta2": 0.99, "eps": 1e-4, "bias_correction": False}, "no_bias_correction"),
        ("sgd_weight_decay", (n((2, 3)), n((2, 3))), {"lr": 0.1, "weight_decay": 0.01}),
        ("adamw", (n((2, 2)), n((2, 2)), 0.1 * n((2, 2)), pos((2, 2), 0.1)), {"lr": 0.01, "t": 5, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.1, "bias_correction": True}),
    ]
    # Schedules: 0-d float hyperparameters, integer steps (step_decay's t between two jumps).
    scalar = lambda v: np.asarray(v, dtype=np.float64)  # noqa: E731
    out += [
        ("step_decay", (scalar(0.1), scalar(0.5)), {"t": 7, "step_size": 3}),
        ("exponential_decay", (scalar(0.5), scalar(0.1)), {"t": 10}),
        ("inverse_time_decay", (scalar(0.5), scalar(0.05)), {"t": 12}),
        ("warmup_linear_decay", (scalar(0.3),), {"t": 9, "warmup": 4, "total": 20}),
        ("cosine_decay", (scalar(0.2), scalar(0.01)), {"t": 7, "total": 20}),
    ]
    # Preprocessing: statistics fitted on a separate training set (plain NumPy, float64),
    # then applied to new rows; PCA keeps k = 2 of d = 3 components.
    fit = _fitted(n((8, 3)) * [1.0, 2.0, 0.5] + [0.3, -1.0, 2.0])
    x = lambda: n((2, 3)) * [1.0, 2.0, 0.5] + [0.3, -1.0, 2.0]  # noqa: E731
    out += [
        ("mean_subtraction", (x(), fit["mean"]), {}),
        ("standardization", (x(), fit["mean"], fit["std"]), {}),
        ("minmax_scaling", (x(), fit["low"], fit["high"]), {}),
        ("pca_projection", (x(), fit["mean"], fit["components"][:, :2]), {}),
        ("pca_whitening", (x(), fit["mean"], fit["components"][:, :2], fit["variances"][:2]), {"eps": 1e-2}),
    ]
    # More layers and losses. Maxout's pieces are apart at every output (no tie); batch
    # statistics come from 4 rows; dropout's mask is fixed (or drawn from a seed).
    mask = np.array([[1, 0, 1, 1], [0, 1, 1, 0]])
    probs = np.exp(n((3, 4)))
    out += [
        ("maxout", (n((3, 2)) * 3, n((3, 2, 2)), n((3, 2))), {"ties": "split"}),
        ("batchnorm_train", (n((4, 3)) * 2 + 1, n(3), n(3)), {"eps": 1e-3}),
        ("batchnorm_infer", (n((2, 3)), n(3), n(3), n(3), pos(3)), {"eps": 1e-5}),
        ("batchnorm_running_update", (n((4, 3)), n(3), pos(3)), {"momentum": 0.9, "unbiased": True}),
        ("batchnorm_running_update", (n((4, 3)), n(3), pos(3)), {"momentum": 0.8, "unbiased": False}, "biased"),
        ("dropout", (n((2, 4)),), {"p": 0.75, "mask": mask.tolist()}),
        ("dropout", (n((2, 4)),), {"p": 0.6, "seed": 7}, "seeded"),
        ("dropout", (n((2, 4)),), {"p": 0.5, "training": False}, "inference"),
        ("softmax_cross_entropy_probs", (n((3, 4)) * 2, probs / probs.sum(axis=1, keepdims=True)), {"reduction": "mean"}),
        ("sigmoid_binary_cross_entropy", (n((2, 3)) * 2, rng.random((2, 3))), {"reduction": "mean"}),
        ("sigmoid_binary_cross_entropy", (n((2, 3)) * 2, rng.random((2, 3))), {"reduction": "none"}, "none"),
    ]
    # Regularizers: weights at least 0.2 away from the kink of |w| at 0.
    away = lambda shape: np.where(rng.random(shape) < 0.5, -1.0, 1.0) * (0.2 + np.abs(n(shape)))  # noqa: E731
    out += [
        ("l1_penalty", (away((2, 3)),), {"lam": 0.3}),
        ("l2_penalty", (away((2, 3)),), {"lam": 0.5}),
        ("elastic_net", (away((2, 3)),), {"lam": 0.2, "alpha": 0.3}),
    ]
    return out


def _hp(ctx, a):
    a = np.asarray(a)
    if a.dtype.kind == "f":
        return np.array([ctx.mpf(float(v)) for v in a.reshape(-1)], dtype=object).reshape(a.shape)
    return a


def compute(name, inputs, params, case=None, dps=DPS):
    """Forward value and VJPs of one case, as decimal strings."""
    ctx = mpmath.MPContext()
    ctx.dps = dps
    oracle = getattr(oracles, name)
    args = [_hp(ctx, a) for a in inputs]
    out = np.asarray(oracle(ctx, *args, **params), dtype=object)
    v = np.random.default_rng(len(table_name(name, case))).standard_normal(out.shape)
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

    table = {"op": name} if case is None else {"op": name, "case": case}
    return table | {
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
    if old.get("case") != new.get("case") or old["op"] != new["op"]:
        return False
    if old["input_dtypes"] != new["input_dtypes"]:
        return False
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
    stale, written = [], set()
    with mpmath.workdps(DPS):  # only for mpmath.mpf in _close; the oracles use their own context
        for name, inputs, params, *case in cases():
            case = case[0] if case else None
            label = table_name(name, case)
            if label in written:
                raise SystemExit(f"two cases make the table {label!r}: give one a distinct case label")
            written.add(label)
            table = compute(name, inputs, params, case)
            path = TABLES / f"{label}.json"
            if args.write:
                path.write_text(json.dumps(table, indent=1) + "\n")
            elif not path.exists() or not _same(json.loads(path.read_text()), table):
                stale.append(label)
    orphans = sorted(p.stem for p in TABLES.glob("*.json") if p.stem not in written)
    if args.check:
        problems = ([f"stale or missing: {', '.join(stale)}"] if stale else []) + ([f"no case makes: {', '.join(orphans)}"] if orphans else [])
        print("; ".join(problems) or "golden tables up to date")
        return 1 if problems else 0
    print(f"wrote {len(written)} tables to {TABLES}" + (f"; tables no case makes (delete them): {', '.join(orphans)}" if orphans else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
