"""Golden tables: the oracles' forward values and vector-Jacobian products on fixed inputs.

    python -m reference.golden --check   # recompute from the stored inputs and diff against reference/golden/*.json
    python -m reference.golden --write   # regenerate the tables (stored inputs kept, new cases drawn)
    python -m reference.golden --write --redraw [LABEL ...]   # draw fresh inputs (all tables, or those named)

Each case is an op name (the catalog's ``reference`` name), parameters, and a recipe that draws
float64 (or integer) inputs; the table stores those inputs, a cotangent ``v``, and ``f(x)`` and
``v^T J`` for every float input at ``DPS`` digits, as decimal strings. The VJP is ``ctx.diff``
of ``phi(x) = sum(v * f(x))`` with respect to each element, on the oracle itself.

Inputs are data, not recipes. Some are the results of float64 operations (``np.exp``, a matrix
product, the eigenvectors of a PCA fit) whose last bit depends on the CPU's SIMD path and the
BLAS kernel, so they are drawn once, by ``--write``, and stored: JSON writes a float with
``repr``, the shortest decimal that reads back as the same float64, so every input and the
cotangent round-trip bit for bit. ``--check`` never draws: it reads each table's inputs and
cotangent, runs the oracle on them (mpmath, pure integer arithmetic, the same on every
machine), and compares the outputs with the stored ones within ``CHECK_RTOL``. ``--write``
keeps a table's stored inputs and cotangent while they still have the shapes and dtypes the
recipe draws, and draws only for a new table or one named to ``--redraw``; so after editing a
recipe (a scale, a distribution), redraw that table.

A case may carry a ``case`` label, for a second table of the same op (other parameters): the
table is then ``<op>-<case>.json`` and holds ``"case": "<case>"`` beside ``"op": "<op>"``;
without one it is ``<op>.json`` and has no ``case`` key. Op names never contain ``-``. Each
table draws from its own stream, seeded by ``SEED`` and its name, so cases can be added anywhere.
"""

import argparse
import json
import sys
import zlib
from collections import namedtuple
from pathlib import Path

import mpmath
import numpy as np

from reference import oracles

DPS = 50
SEED = 20261123
TABLES = Path(__file__).resolve().parent / "golden"
# Agreement asked of a recomputed table, per array, relative to its largest magnitude. The
# stored 50-digit values are right to about 5e-50 (recomputing at 70 digits agrees that far),
# and the recomputation is mpmath's integer arithmetic on the stored float64 inputs, so it does
# not depend on the CPU, its SIMD path or BLAS; 1e-30 leaves twenty orders of magnitude for
# another mpmath version or backend (a different ``diff`` step, other guard digits). It is far
# below float64's resolution on purpose: a real change (an oracle edited, a parameter, or any
# stored input or cotangent element moved by one ulp) moves the outputs by ~1e-16 relative or
# more, which a float64-ulp tolerance could let through and this one cannot.
CHECK_RTOL = mpmath.mpf("1e-30")

Case = namedtuple("Case", ["op", "params", "case", "draw"])
Case.__doc__ = "One golden table: ``draw(rng)`` returns its inputs, float64 (or integer) arrays."


def table_name(op, case=None):
    return op if case is None else f"{op}-{case}"


def _label(c):
    return table_name(c.op, c.case)


def _rng(label):
    return np.random.default_rng([SEED, zlib.crc32(label.encode())])


def _fitted(X):
    """Per-feature statistics of a training set, in plain float64 NumPy (population moments)."""
    mean = X.mean(axis=0)
    centered = X - mean
    variances, vectors = np.linalg.eigh(centered.T @ centered / X.shape[0])
    order = np.argsort(variances)[::-1]
    return {"mean": mean, "std": X.std(axis=0), "low": X.min(axis=0), "high": X.max(axis=0), "components": vectors[:, order], "variances": variances[order]}


def _n(r, *shape, scale=1.0):
    return scale * r.standard_normal(shape)


def _pos(r, *shape, scale=1.0):
    """Positive, away from 0: squared-gradient states, so every square root is well inside its domain."""
    return scale * (0.5 + r.random(shape))


def _away(r, *shape):
    """Weights at least 0.2 away from the kink of ``|w|`` at 0."""
    return np.where(r.random(shape) < 0.5, -1.0, 1.0) * (0.2 + np.abs(r.standard_normal(shape)))


def _fitted_rows(pick):
    """Preprocessing: statistics fitted on a training set of 8 rows (plain NumPy, float64), then
    applied to 2 new rows; ``pick(fit)`` chooses the statistics the op takes after ``x``."""
    spread, shift = np.array([1.0, 2.0, 0.5]), np.array([0.3, -1.0, 2.0])

    def draw(r):
        fit = _fitted(r.standard_normal((8, 3)) * spread + shift)
        return (r.standard_normal((2, 3)) * spread + shift, *pick(fit))

    return draw


def _soft_labels(r):
    """Logits and rows of target probabilities (``exp`` of normals, normalized)."""
    logits = _n(r, 3, 4, scale=2.0)
    probs = np.exp(r.standard_normal((3, 4)))
    return logits, probs / probs.sum(axis=1, keepdims=True)


def _curvature_pairs(n, m):
    """A gradient and ``m`` curvature pairs ``y_i = A s_i`` of a quadratic with SPD Hessian ``A``
    (eigenvalues at least 0.5), so every ``s_i . y_i > 0``."""

    def draw(r):
        B = r.standard_normal((n, n))
        A = B @ B.T / n + 0.5 * np.eye(n)
        S = r.standard_normal((m, n))
        return r.standard_normal(n), S, S @ A

    return draw


def cases():
    """The fixed cases, as ``Case(op, params, case, draw)``."""
    scalar = lambda v: np.asarray(v, dtype=np.float64)  # noqa: E731
    kinked = np.array([-1.5, -0.25, 0.5, 2.0])
    mask = [[1, 0, 1, 1], [0, 1, 1, 0]]
    adam = lambda r: (_n(r, 2, 2), _n(r, 2, 2), _n(r, 2, 2, scale=0.1), _pos(r, 2, 2, scale=0.1))  # noqa: E731
    return [
        Case("linear", {}, None, lambda r: (_n(r, 3, 4), _n(r, 4, 2), _n(r, 2))),
        Case("sigmoid", {}, None, lambda r: (_n(r, 2, 3, scale=3.0),)),
        Case("tanh", {}, None, lambda r: (_n(r, 2, 3, scale=2.0),)),
        Case("relu", {}, None, lambda r: (kinked.copy(),)),
        Case("leaky_relu", {"slope": 0.1}, None, lambda r: (kinked.copy(),)),
        Case("softmax", {"axis": -1}, None, lambda r: (_n(r, 2, 4, scale=3.0),)),
        Case("log_softmax", {"axis": -1}, None, lambda r: (_n(r, 2, 4, scale=3.0),)),
        Case("softmax_cross_entropy", {"reduction": "mean"}, None, lambda r: (_n(r, 3, 4, scale=2.0), r.integers(0, 4, size=3))),
        Case("mse", {"reduction": "mean"}, None, lambda r: (_n(r, 2, 3), _n(r, 2, 3))),
        Case("l1", {"reduction": "sum"}, None, lambda r: (_n(r, 2, 3), _n(r, 2, 3))),
        # Optimizers: (param, grad, *state) of one shape.
        Case("sgd", {"lr": 0.1}, None, lambda r: (_n(r, 2, 3), _n(r, 2, 3))),
        Case("momentum", {"lr": 0.1, "momentum": 0.9}, None, lambda r: (_n(r, 2, 3), _n(r, 2, 3), _n(r, 2, 3))),
        Case("nesterov", {"lr": 0.05, "momentum": 0.8}, None, lambda r: (_n(r, 2, 3), _n(r, 2, 3), _n(r, 2, 3))),
        Case("adagrad", {"lr": 0.1, "eps": 1e-8}, None, lambda r: (_n(r, 2, 3), _n(r, 2, 3), _pos(r, 2, 3))),
        Case("adagrad_rms", {"lr": 0.1, "t": 4, "eps": 1e-6}, None, lambda r: (_n(r, 2, 3), _n(r, 2, 3), _pos(r, 2, 3))),
        Case("rmsprop", {"lr": 0.01, "rho": 0.9, "eps": 1e-8}, None, lambda r: (_n(r, 2, 3), _n(r, 2, 3), _pos(r, 2, 3))),
        Case("adam", {"lr": 0.01, "t": 3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "bias_correction": True}, None, adam),
        Case("adam", {"lr": 0.01, "t": 3, "beta1": 0.8, "beta2": 0.99, "eps": 1e-4, "bias_correction": False}, "no_bias_correction", adam),
        Case("sgd_weight_decay", {"lr": 0.1, "weight_decay": 0.01}, None, lambda r: (_n(r, 2, 3), _n(r, 2, 3))),
        Case("adamw", {"lr": 0.01, "t": 5, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.1, "bias_correction": True}, None, adam),
        # Schedules: 0-d float hyperparameters, integer steps (step_decay's t between two jumps).
        Case("step_decay", {"t": 7, "step_size": 3}, None, lambda r: (scalar(0.1), scalar(0.5))),
        Case("exponential_decay", {"t": 10}, None, lambda r: (scalar(0.5), scalar(0.1))),
        Case("inverse_time_decay", {"t": 12}, None, lambda r: (scalar(0.5), scalar(0.05))),
        Case("warmup_linear_decay", {"t": 9, "warmup": 4, "total": 20}, None, lambda r: (scalar(0.3),)),
        Case("cosine_decay", {"t": 7, "total": 20}, None, lambda r: (scalar(0.2), scalar(0.01))),
        # Preprocessing; PCA keeps k = 2 of d = 3 components.
        Case("mean_subtraction", {}, None, _fitted_rows(lambda f: (f["mean"],))),
        Case("standardization", {}, None, _fitted_rows(lambda f: (f["mean"], f["std"]))),
        Case("minmax_scaling", {}, None, _fitted_rows(lambda f: (f["low"], f["high"]))),
        Case("pca_projection", {}, None, _fitted_rows(lambda f: (f["mean"], f["components"][:, :2]))),
        Case("pca_whitening", {"eps": 1e-2}, None, _fitted_rows(lambda f: (f["mean"], f["components"][:, :2], f["variances"][:2]))),
        # More layers and losses. Maxout's pieces are apart at every output (no tie); batch
        # statistics come from 4 rows; dropout's mask is fixed (or drawn from a seed).
        Case("maxout", {"ties": "split"}, None, lambda r: (_n(r, 3, 2, scale=3.0), _n(r, 3, 2, 2), _n(r, 3, 2))),
        Case("batchnorm_train", {"eps": 1e-3}, None, lambda r: (_n(r, 4, 3, scale=2.0) + 1, _n(r, 3), _n(r, 3))),
        Case("batchnorm_infer", {"eps": 1e-5}, None, lambda r: (_n(r, 2, 3), _n(r, 3), _n(r, 3), _n(r, 3), _pos(r, 3))),
        Case("batchnorm_running_update", {"momentum": 0.9, "unbiased": True}, None, lambda r: (_n(r, 4, 3), _n(r, 3), _pos(r, 3))),
        Case("batchnorm_running_update", {"momentum": 0.8, "unbiased": False}, "biased", lambda r: (_n(r, 4, 3), _n(r, 3), _pos(r, 3))),
        Case("dropout", {"p": 0.75, "mask": mask}, None, lambda r: (_n(r, 2, 4),)),
        Case("dropout", {"p": 0.6, "seed": 7}, "seeded", lambda r: (_n(r, 2, 4),)),
        Case("dropout", {"p": 0.5, "training": False}, "inference", lambda r: (_n(r, 2, 4),)),
        Case("softmax_cross_entropy_probs", {"reduction": "mean"}, None, _soft_labels),
        Case("sigmoid_binary_cross_entropy", {"reduction": "mean"}, None, lambda r: (_n(r, 2, 3, scale=2.0), r.random((2, 3)))),
        Case("sigmoid_binary_cross_entropy", {"reduction": "none"}, "none", lambda r: (_n(r, 2, 3, scale=2.0), r.random((2, 3)))),
        # Regularizers.
        Case("l1_penalty", {"lam": 0.3}, None, lambda r: (_away(r, 2, 3),)),
        Case("l2_penalty", {"lam": 0.5}, None, lambda r: (_away(r, 2, 3),)),
        Case("elastic_net", {"lam": 0.2, "alpha": 0.3}, None, lambda r: (_away(r, 2, 3),)),
        # Quasi-Newton: the L-BFGS direction, 2 pairs in 3 dimensions and 3 pairs in 4.
        Case("lbfgs_direction", {}, None, _curvature_pairs(3, 2)),
        Case("lbfgs_direction", {}, "m3", _curvature_pairs(4, 3)),
    ]


def _hp(ctx, a):
    a = np.asarray(a)
    if a.dtype.kind == "f":
        return np.array([ctx.mpf(float(v)) for v in a.reshape(-1)], dtype=object).reshape(a.shape)
    return a


def compute(name, inputs, params, cotangent, case=None, dps=DPS):
    """The table of one case: its inputs and cotangent as stored, forward value and VJPs as decimal strings.

    ``cotangent`` is a float64 array of the output's shape, or ``cotangent(shape)`` draws one.
    Nothing here is float64 arithmetic: the inputs enter mpmath exactly and all the rest is mpmath's.
    """
    ctx = mpmath.MPContext()
    ctx.dps = dps
    oracle = getattr(oracles, name)
    args = [_hp(ctx, a) for a in inputs]
    out = np.asarray(oracle(ctx, *args, **params), dtype=object)
    v = np.asarray(cotangent(out.shape) if callable(cotangent) else cotangent, dtype=np.float64)
    if v.shape != out.shape:
        msg = f"{table_name(name, case)}: cotangent of shape {v.shape} for an output of shape {out.shape}"
        raise ValueError(msg)
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


def stored_inputs(table):
    """A table's inputs as arrays of their stored dtypes (bit for bit what was drawn)."""
    return [np.asarray(a, dtype=t) for a, t in zip(table["inputs"], table["input_dtypes"])]


def _difference(old, new):
    """Why ``old`` (stored) is not ``new`` (recomputed from its own inputs), or ``None``."""
    if old.get("dps") != new["dps"]:
        return f"made at {old.get('dps')} digits, not {new['dps']}"
    if len(old["vjp"]) != len(new["vjp"]):
        return f"{len(old['vjp'])} VJPs stored for {len(new['vjp'])} inputs"
    arrays = [("forward", old["forward"], new["forward"])]
    arrays += [(f"vjp of input {i}", o, n) for i, (o, n) in enumerate(zip(old["vjp"], new["vjp"]))]
    with mpmath.workdps(DPS + 10):  # read the decimal strings at (more than) their own precision
        return _first_difference(arrays)


def _first_difference(arrays):
    for what, o, n in arrays:
        if (o is None) != (n is None):
            return f"{what}: stored {'none' if o is None else 'one'}, the oracle makes {'none' if n is None else 'one'}"
        if o is None:
            continue
        if o["shape"] != n["shape"] or len(o["values"]) != len(n["values"]):
            return f"{what}: shape {o['shape']} stored, {n['shape']} recomputed"
        want = [mpmath.mpf(x) for x in o["values"]]
        got = [mpmath.mpf(x) for x in n["values"]]
        scale = max([abs(x) for x in want] + [mpmath.mpf("1e-300")])
        worst, at = max(((abs(g - w), k) for k, (g, w) in enumerate(zip(got, want))), default=(0, 0))
        if worst > CHECK_RTOL * scale:
            return f"{what}: element {at} is {n['values'][at]}, stored {o['values'][at]} ({mpmath.nstr(worst / scale, 3)} of the largest value; tolerance {mpmath.nstr(CHECK_RTOL, 3)})"
    return None


def check_table(spec, table):
    """Why a stored table is stale for its case, or ``None``: recomputed from its own inputs, never drawn."""
    if table.get("op") != spec.op or table.get("case") != spec.case:
        return f"holds op {table.get('op')!r}, case {table.get('case')!r}"
    if table.get("params") != spec.params:
        return f"params {table.get('params')} stored, the case has {spec.params}"
    try:
        new = compute(spec.op, stored_inputs(table), spec.params, table["cotangent"], spec.case)
    except Exception as exc:  # a table whose inputs the oracle cannot take is stale, not a crash
        return f"the oracle fails on the stored inputs: {type(exc).__name__}: {exc}"
    return _difference(table, new)


def _keeps(table, spec, drawn):
    """Whether a stored table's inputs still fit the case: same op, case, count, shapes and dtypes."""
    if table is None or table.get("op") != spec.op or table.get("case") != spec.case:
        return False
    stored = stored_inputs(table)
    return len(stored) == len(drawn) and all(s.shape == np.shape(d) and s.dtype == np.asarray(d).dtype for s, d in zip(stored, drawn))


def _cotangent(table, rng):
    """``cotangent(shape)``: the one ``table`` stores if it has that shape, else a fresh draw."""

    def cotangent(shape):
        if table is not None and np.shape(table["cotangent"]) == tuple(shape):
            return table["cotangent"]
        return rng.standard_normal(shape)

    return cotangent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true", help="regenerate the tables, keeping their stored inputs")
    group.add_argument("--check", action="store_true", help="recompute from the stored inputs and diff; exit 1 on any difference")
    parser.add_argument("--redraw", nargs="*", metavar="LABEL", help="with --write: draw fresh inputs for these tables (all when none is named)")
    parser.add_argument("--tables", type=Path, default=TABLES, help=f"the tables' folder (default {TABLES})")
    args = parser.parse_args(argv)
    if args.redraw is not None and not args.write:
        parser.error("--redraw goes with --write")
    tables = args.tables
    specs, labels = cases(), set()
    for spec in specs:
        if _label(spec) in labels:
            raise SystemExit(f"two cases make the table {_label(spec)!r}: give one a distinct case label")
        labels.add(_label(spec))
    unknown = set(args.redraw or ()) - labels
    if unknown:
        parser.error(f"--redraw: no case makes {', '.join(sorted(unknown))}")
    redraw = labels if args.redraw == [] else set(args.redraw or ())
    stale, drawn = [], []
    if args.write:
        tables.mkdir(exist_ok=True)
    for spec in specs:
        label = _label(spec)
        path = tables / f"{label}.json"
        old = json.loads(path.read_text()) if path.exists() else None
        if args.check:
            why = "missing" if old is None else check_table(spec, old)
            if why:
                stale.append(f"{label} ({why})")
            continue
        rng = _rng(label)
        fresh = spec.draw(rng)
        if label in redraw or not _keeps(old, spec, fresh):
            old = None
            drawn.append(label)
        inputs = fresh if old is None else stored_inputs(old)
        table = compute(spec.op, inputs, spec.params, _cotangent(old, rng), spec.case)
        text = json.dumps(table, indent=1) + "\n"
        back = json.loads(text)
        if back["inputs"] != table["inputs"] or back["cotangent"] != table["cotangent"]:
            raise SystemExit(f"{label}: the inputs do not read back bit for bit from JSON")
        path.write_text(text)
    orphans = sorted(p.stem for p in tables.glob("*.json") if p.stem not in labels)
    if args.check:
        problems = ([f"stale or missing: {', '.join(stale)}"] if stale else []) + ([f"no case makes: {', '.join(orphans)}"] if orphans else [])
        print("; ".join(problems) or "golden tables up to date")
        return 1 if problems else 0
    print(f"wrote {len(labels)} tables to {tables} (inputs drawn for {len(drawn)}: {', '.join(drawn) or 'none'})" + (f"; tables no case makes (delete them): {', '.join(orphans)}" if orphans else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
