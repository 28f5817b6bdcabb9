"""The training study: small networks built from catalog ops, trained, checked and compared.

:func:`run_study` trains a two-layer network (``linear -> relu -> linear ->
softmax_cross_entropy``, every piece a catalog op) on a small synthetic classification task
(three interleaved 2-D spirals, a train/validation split, standardized with the catalog's
``standardization``) by minibatch SGD with shuffling (:func:`gradverify.training.minibatches`),
and records what the course compares:

* loss and accuracy curves for each catalog optimizer (SGD, momentum, Nesterov, AdaGrad,
  RMSProp, Adam, AdamW) and for the learning-rate schedules;
* small against large batches; cross-entropy against MSE (on softmax outputs) on the same
  network; the dead-unit fraction of ReLU against leaky ReLU at a large learning rate;
  random against grid search of the learning rate (and an unimportant second parameter)
  at an equal budget;
* two checks of what the curves rest on: the whole network's backward pass is checked end
  to end with :func:`gradverify.check_vjp` (every parameter, ``mode="full"``) before and
  after training, and each optimizer's recorded trajectory is replayed step by step with
  the registered catalog op's forward (the update rule that ``gradverify verify`` checks)
  and compared with what training did;
* where training stalls: a tiny tanh network (13 parameters) trained by plain gradient
  descent from many initializations until the gradient norm is below a tolerance, each
  point reached classified by :func:`gradverify.critical.classify`, the loss plotted
  against the minimum ratio (the share of positive Hessian eigenvalues), and at each
  saddle the escape step along the most negative eigenvector taken and training resumed.

The result is a JSON-safe dict (the ``"study"`` entry of a run record, see
:mod:`gradverify._record`); the HTML report draws it without recomputing anything. The study
is deterministic for a seed. Everything runs in float64 on the host with NumPy, whatever
backend a ``gradverify verify`` run checks.

>>> from gradverify.study import spirals
>>> X, y = spirals(6, seed=0)
>>> X.shape, sorted(y.tolist())
((6, 2), [0, 0, 1, 1, 2, 2])
>>> from gradverify.study import run_study
>>> s = run_study(seed=0, size="small")  # about two seconds  # doctest: +SKIP
>>> s["passed"], s["e2e"]["before"]["passed"], s["optimizers"]["adam"]["replay"]["passed"]  # doctest: +SKIP
(True, True, True)
"""

import math
import time

import numpy as np

from gradverify import catalog
from gradverify._errors import InvalidArgument
from gradverify.catalog import optimizers as _optimizers
from gradverify.catalog.preprocessing import fit_standardization
from gradverify.training import LogUniform, Uniform, accuracy, batches_per_epoch, dead_relu_fraction, epoch_order, grid_search, random_search

__all__ = ["Network", "OPS_USED", "SIZES", "check_network", "replay", "run_study", "spirals", "stall_study", "train"]

SCHEMA = "gradverify-study/1"

# How big the study is. "default" is the report's; "small" the tests' (a few seconds).
SIZES = {
    "default": {"points": 360, "hidden": 16, "epochs": 30, "batch": 16, "search_budget": 9, "search_epochs": 6, "stall_runs": 48, "stall_cap": 5000},
    "small": {"points": 150, "hidden": 8, "epochs": 6, "batch": 16, "search_budget": 4, "search_epochs": 2, "stall_runs": 12, "stall_cap": 5000},
}
CLASSES = 3
VALIDATION = 0.25  # the share of the points held out

# Each optimizer at a rate that suits it on this task, its other hyperparameters at the
# catalog's defaults (AdamW's weight decay named).
OPTIMIZERS = {
    "sgd": {"lr": 0.2},
    "momentum": {"lr": 0.02, "momentum": 0.9},
    "nesterov": {"lr": 0.02, "momentum": 0.9},
    "adagrad": {"lr": 0.1},
    "rmsprop": {"lr": 0.003},
    "adam": {"lr": 0.01},
    "adamw": {"lr": 0.01, "weight_decay": 0.01},
}
STEP_COUNTED = ("adam", "adamw")  # their step takes the step number t (1 for the first)
# ReLU against leaky ReLU at a rate large enough to push units into the flat region.
ACTIVATION_LR = 4.0
SCHEDULE_OPTIMIZER = "momentum"
SCHEDULE_LR = 0.05
SCHEDULES = ("constant", "step_decay", "exponential_decay", "inverse_time_decay", "warmup_linear_decay", "cosine_decay")
# A replayed parameter may differ from the trained one by this many float64 rounding units of
# the parameter's scale (the replay runs the same arithmetic, so it is exact in practice).
REPLAY_ULPS = 4
# "Where training stalls": a 2 -> 3 -> 1 tanh network on 24 points, plain gradient descent.
STALL = {"hidden": 3, "points": 24, "lr": 0.3, "tol": 1e-3, "scales": (0.01, 0.1, 1.0), "escape_steps": (0.01, 0.03, 0.1, 0.3, 1.0)}
# The catalog ops the study builds on; their verdicts from the same run are recorded.
OPS_USED = (
    "standardization",
    "linear",
    "relu",
    "leaky_relu",
    "tanh",
    "softmax",
    "softmax_cross_entropy",
    "mse",
    *OPTIMIZERS,
    *(s for s in SCHEDULES if s != "constant"),
)


# -- data -----------------------------------------------------------------------------------


def spirals(n, *, seed):
    """``n`` points of three interleaved noisy spirals in 2-D and their labels (0, 1, 2)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    labels = np.arange(n) % CLASSES
    r = rng.uniform(0.05, 1.0, size=n)
    angle = 4.0 * r + labels * (2.0 * np.pi / CLASSES) + rng.normal(scale=0.25, size=n)
    X = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1) * np.array([3.0, 1.5]) + np.array([1.0, -2.0])
    order = rng.permutation(n)
    return X[order], labels[order]


def _data(size, seed):
    X, y = spirals(size["points"], seed=seed)
    n_val = int(round(VALIDATION * len(y)))
    Xtr, ytr, Xva, yva = X[n_val:], y[n_val:], X[:n_val], y[:n_val]
    stats = fit_standardization(Xtr)  # fitted on the training split only
    standardize = catalog.get("standardization").forward
    Xtr = standardize(Xtr, stats["mean"], stats["std"])[0]
    Xva = standardize(Xva, stats["mean"], stats["std"])[0]
    return {"Xtr": Xtr, "ytr": ytr, "Xva": Xva, "yva": yva, "raw_mean": stats["mean"].tolist(), "raw_std": stats["std"].tolist()}


# -- the network ----------------------------------------------------------------------------


class Network:
    """``x -> linear -> act -> linear -> loss``, parameters in one flat float64 vector.

    ``activation`` is ``"relu"`` or ``"leaky_relu"``; ``loss`` is ``"cross_entropy"``
    (``softmax_cross_entropy`` on the logits) or ``"mse"`` (``mse`` of ``softmax`` of the
    logits against one-hot targets). Every piece is the catalog op's forward and backward.
    """

    def __init__(self, d, hidden, classes, *, activation="relu", loss="cross_entropy"):
        if activation not in ("relu", "leaky_relu") or loss not in ("cross_entropy", "mse"):
            msg = f"activation={activation!r}, loss={loss!r}; choose relu or leaky_relu, and cross_entropy or mse"
            raise InvalidArgument(msg)
        self.d, self.h, self.c = d, hidden, classes
        self.activation, self.loss = activation, loss
        self.shapes = ((d, hidden), (hidden,), (hidden, classes), (classes,))
        self.size = sum(math.prod(s) for s in self.shapes)
        self.ops = {name: catalog.get(name) for name in ("linear", activation, "softmax", "softmax_cross_entropy", "mse")}

    def init(self, seed):
        """He-normal weights, zero biases (as :func:`gradverify.catalog.initializers.he`)."""
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2,)))
        W1 = rng.normal(scale=math.sqrt(2.0 / self.d), size=(self.d, self.h))
        W2 = rng.normal(scale=math.sqrt(2.0 / self.h), size=(self.h, self.c))
        return np.concatenate([W1.ravel(), np.zeros(self.h), W2.ravel(), np.zeros(self.c)])

    def split(self, theta):
        parts, i = [], 0
        for s in self.shapes:
            k = math.prod(s)
            parts.append(theta[i : i + k].reshape(s))
            i += k
        return parts

    def forward(self, theta, X, y):
        """``(loss, logits, hidden pre-activations, cache)``; the loss is a 0-d array."""
        W1, b1, W2, b2 = self.split(theta)
        lin, act = self.ops["linear"], self.ops[self.activation]
        z1, c1 = lin.forward(X, W1, b1)
        a1, ca = act.forward(z1)
        z2, c2 = lin.forward(a1, W2, b2)
        if self.loss == "cross_entropy":
            L, cl = self.ops["softmax_cross_entropy"].forward(z2, y)
            cs = None
        else:
            p, cs = self.ops["softmax"].forward(z2)
            L, cl = self.ops["mse"].forward(p, np.eye(self.c)[y])
        return L, z2, z1, (c1, ca, c2, cs, cl)  # L a 0-d array (of mpmath numbers under the truth)

    def backward(self, cache):
        """The gradient of the loss with respect to ``theta`` (flat), from the ops' backward passes."""
        c1, ca, c2, cs, cl = cache
        one = np.asarray(1.0)
        if self.loss == "cross_entropy":
            dz2, _ = self.ops["softmax_cross_entropy"].backward(one, cl)
        else:
            dp, _ = self.ops["mse"].backward(one, cl)
            (dz2,) = self.ops["softmax"].backward(dp, cs)
        da1, dW2, db2 = self.ops["linear"].backward(dz2, c2)
        (dz1,) = self.ops[self.activation].backward(da1, ca)
        _, dW1, db1 = self.ops["linear"].backward(dz1, c1)
        return np.concatenate([dW1.ravel(), db1.ravel(), dW2.ravel(), db2.ravel()])


def check_network(net, theta, X, y, *, backward=None, seed=0):
    """:func:`gradverify.check_vjp` of the network's loss with respect to every parameter.

    ``backward(cache) -> flat gradient`` defaults to ``net.backward``. Returns the
    :class:`~gradverify.VerificationResult` (``mode="full"``: every parameter perturbed).
    """
    from gradverify import check_vjp  # the engine; imported here so that the module loads light

    backward = backward or net.backward

    def loss(t):
        return net.forward(t, X, y)[0]

    def loss_vjp(v, t):
        return (np.asarray(v) * backward(net.forward(t, X, y)[3]),)

    name = f"two-layer {net.activation} network + {net.loss}"
    return check_vjp(loss, loss_vjp, theta, mode="full", seed=seed, name=name)


def _check_summary(result, seconds):
    worst = result.max_rel_error
    return {
        "passed": bool(result.passed),
        "blame": result.blame,
        "max_rel_error": float(worst) if worst is not None else None,
        "mode": result.mode,
        "truth": result.truth,
        "seconds": round(seconds, 3),
        "report": "" if result.passed else str(result),
    }


# -- training -------------------------------------------------------------------------------


def _schedule_lr(name, t, total, base):
    """The learning rate of schedule ``name`` at step ``t`` of ``total``, from the catalog op."""
    if name == "constant":
        return base
    a = np.asarray(base)
    forward = catalog.get(name).forward
    if name == "step_decay":
        lr, _ = forward(a, np.asarray(0.5), t=t, step_size=max(1, total // 3))
    elif name == "exponential_decay":
        lr, _ = forward(a, np.asarray(3.0 / total), t=t)
    elif name == "inverse_time_decay":
        lr, _ = forward(a, np.asarray(10.0 / total), t=t)
    elif name == "warmup_linear_decay":
        lr, _ = forward(a, t=t, warmup=max(1, total // 10), total=total)
    else:
        lr, _ = forward(a, np.asarray(0.0), t=t, total=total)
    return float(lr)


def _step_function(name):
    return getattr(_optimizers, f"{name}_step")


def train(net, data, *, optimizer, hyper, epochs, batch, seed, schedule="constant", step=None, record=False):
    """Minibatch training with shuffling; returns per-epoch curves (and, with ``record``, the trajectory).

    Each step computes the minibatch gradient with the network's backward pass and applies
    ``step`` (default: the catalog's ``<optimizer>_step``) to the flat parameter vector.
    Epoch 0 of the curves is the untrained network.
    """
    step = step or _step_function(optimizer)
    keys = _optimizers.STATE_KEYS[optimizer]
    Xtr, ytr, Xva, yva = data["Xtr"], data["ytr"], data["Xva"], data["yva"]
    n = len(ytr)
    per_epoch = batches_per_epoch(n, batch)
    total = per_epoch * epochs
    theta = net.init(seed)
    state = {k: np.zeros_like(theta) for k in keys}
    curves = {k: [] for k in ("loss", "val_loss", "train_accuracy", "val_accuracy", "dead_fraction")}
    lrs, trajectory = [], []

    def measure():
        L, logits, z1, _ = net.forward(theta, Xtr, ytr)
        Lv, logits_v, _, _ = net.forward(theta, Xva, yva)
        for key, value in (
            ("loss", L),
            ("val_loss", Lv),
            ("train_accuracy", accuracy(logits, ytr)),
            ("val_accuracy", accuracy(logits_v, yva)),
            ("dead_fraction", dead_relu_fraction(z1)),
        ):
            curves[key].append(float(value))

    measure()
    t = 0
    for epoch in range(epochs):
        order = epoch_order(n, epoch, seed=seed)
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            _, _, _, cache = net.forward(theta, Xtr[idx], ytr[idx])
            grad = net.backward(cache)
            lr = _schedule_lr(schedule, t, total, hyper["lr"])
            extra = {"t": t + 1} if optimizer in STEP_COUNTED else {}
            kwargs = {**hyper, "lr": lr, **extra}
            if record:
                trajectory.append((theta, grad, kwargs))
            theta, state = step(theta, grad, state, **kwargs)
            lrs.append(lr)
            t += 1
        measure()
    out = {"curves": curves, "lr": lrs, "steps": t, "steps_per_epoch": per_epoch}
    if record:
        trajectory.append((theta, None, None))
        out["trajectory"] = trajectory
    out["theta"] = theta
    return out


def replay(optimizer, trajectory):
    """Replay a recorded trajectory with the registered catalog op's forward, step by step.

    ``trajectory`` is ``[(theta_t, grad_t, hyperparameters_t), ..., (theta_T, None, None)]``.
    At each step the op's forward ``(param, grad, *state) -> concat(new_param, *new_state)``
    runs from the *recorded* ``theta_t`` with the replay's own state, and its new parameter
    is compared with the recorded ``theta_{t+1}``. Returns ``{"steps", "max_abs_deviation",
    "max_rel_deviation", "first_bad_step", "tolerance", "passed"}``; the relative deviation
    is over ``max(|theta|)`` of the step, and a step is bad past ``REPLAY_ULPS`` float64 units.
    """
    op = catalog.get(optimizer)
    keys = _optimizers.STATE_KEYS[optimizer]
    size = trajectory[0][0].size
    states = [np.zeros(size) for _ in keys]
    eps = float(np.finfo(np.float64).eps)
    worst_abs = worst_rel = 0.0
    first_bad = None
    for t in range(len(trajectory) - 1):
        theta, grad, kwargs = trajectory[t]
        out, _ = op.forward(theta, grad, *states, **kwargs)
        new = out[:size]
        states = [out[(j + 1) * size : (j + 2) * size] for j in range(len(keys))]
        recorded = trajectory[t + 1][0]
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.abs(new - recorded)
        same = (new == recorded) | (np.isnan(new) & np.isnan(recorded))  # a blown-up run replays as NaN too
        dev = float(np.max(np.where(same, 0.0, np.where(np.isnan(diff), np.inf, diff))))
        finite = np.abs(np.concatenate([recorded, theta]))
        finite = finite[np.isfinite(finite)]
        scale = max(float(finite.max()) if finite.size else 0.0, 1e-300)
        rel = dev / scale
        worst_abs, worst_rel = max(worst_abs, dev), max(worst_rel, rel)
        if first_bad is None and not rel <= REPLAY_ULPS * eps:
            first_bad = t
    return {
        "steps": len(trajectory) - 1,
        "max_abs_deviation": worst_abs,
        "max_rel_deviation": worst_rel,
        "first_bad_step": first_bad,
        "tolerance": REPLAY_ULPS * eps,
        "passed": first_bad is None,
    }


def _run_summary(result, optimizer=None):
    """A run's curves and rates for the record, with its replay when it recorded a trajectory."""
    out = {key: result[key] for key in ("curves", "steps", "steps_per_epoch")} | {"lr": _thin(result["lr"])}
    if "trajectory" in result:
        out["replay"] = replay(optimizer, result["trajectory"])
    return out


def _thin(values, most=200):
    """``[[step, value], ...]``: at most ``most`` evenly spaced values of a per-step series."""
    idx = np.unique(np.linspace(0, len(values) - 1, min(most, len(values))).round().astype(int)) if values else []
    return [[int(i), float(values[i])] for i in idx]


# -- where training stalls -----------------------------------------------------------------


class _TinyTanh:
    """``2 -> hidden (tanh) -> 1`` regression with mean squared error, for a stack of parameter vectors.

    ``theta`` is ``(S, n)``: S networks trained at once (the catalog's ``linear`` maps a
    leading batch axis through); every piece is a catalog op.
    """

    def __init__(self, X, Y, hidden):
        self.X, self.Y, self.h = X, Y, hidden
        self.shapes = ((2, hidden), (hidden,), (hidden, 1), (1,))
        self.n = sum(math.prod(s) for s in self.shapes)
        self.lin, self.tanh, self.mse = catalog.get("linear"), catalog.get("tanh"), catalog.get("mse")

    def loss_grad(self, T):
        S = T.shape[0]
        parts, i = [], 0
        for s in self.shapes:
            k = math.prod(s)
            parts.append(T[:, i : i + k].reshape((S, *s)))
            i += k
        W1, b1, W2, b2 = parts
        Xb = np.broadcast_to(self.X, (S, *self.X.shape))
        z, c1 = self.lin.forward(Xb, W1, b1)
        a, ct = self.tanh.forward(z)
        p, c2 = self.lin.forward(a, W2, b2)
        L, cl = self.mse.forward(p, np.broadcast_to(self.Y, p.shape), reduction="none")
        m = self.X.shape[0]
        dp, _ = self.mse.backward(np.full(L.shape, 1.0 / m), cl)
        da, dW2, db2 = self.lin.backward(dp, c2)
        (dz,) = self.tanh.backward(da, ct)
        _, dW1, db1 = self.lin.backward(dz, c1)
        G = np.concatenate([dW1.reshape(S, -1), db1, dW2.reshape(S, -1), db2], axis=1)
        return L.reshape(S, -1).mean(axis=1), G

    def f(self, theta):
        return float(self.loss_grad(np.asarray(theta)[None])[0][0])

    def grad(self, theta):
        return self.loss_grad(np.asarray(theta)[None])[1][0]


def _descend(model, T, *, lr, tol, cap):
    """Plain gradient descent on each row of ``T`` until its gradient norm is below ``tol`` or ``cap`` steps."""
    T = T.copy()
    done = np.zeros(T.shape[0], dtype=bool)
    steps = np.zeros(T.shape[0], dtype=int)
    for _ in range(cap):
        _, G = model.loss_grad(T)
        done |= np.linalg.norm(G, axis=1) < tol
        if done.all():
            break
        T = np.where(done[:, None], T, T - lr * G)
        steps += ~done
    L, G = model.loss_grad(T)
    return T, L, np.linalg.norm(G, axis=1), steps


def stall_study(*, seed=0, runs=24, cap=5000):
    """Where plain gradient descent stalls on a tiny tanh network, and what each point is.

    ``runs`` initializations (normal with scales ``STALL["scales"]`` in turn) are trained by
    gradient descent (rate ``STALL["lr"]``) until ``||grad|| < STALL["tol"]`` or ``cap``
    steps. Each point reached is classified by :func:`gradverify.critical.classify` with
    ``gtol`` the same tolerance; its minimum ratio is the share of eigenvalues above
    ``etol``. At a saddle (a negative eigenvalue below ``-etol``), the escape step is the
    best of ``+-h d`` over ``STALL["escape_steps"]`` with ``d`` the eigenvector of the most
    negative eigenvalue, and gradient descent resumes from there (same rule, same cap).
    """
    from gradverify import critical

    data = np.random.default_rng(np.random.SeedSequence(0, spawn_key=(3,)))  # one fixed problem; the seed draws the starts
    X = data.uniform(-1.0, 1.0, size=(STALL["points"], 2))
    Y = np.sin(2 * X[:, :1]) * np.cos(2 * X[:, 1:]) + 0.5 * X[:, :1] * X[:, 1:]
    model = _TinyTanh(X, Y, STALL["hidden"])
    scales = np.array([STALL["scales"][i % len(STALL["scales"])] for i in range(runs)])
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(4,)))
    T0 = rng.normal(size=(runs, model.n)) * scales[:, None]
    tol = STALL["tol"]
    T, L, gnorm, steps = _descend(model, T0, lr=STALL["lr"], tol=tol, cap=cap)
    points, escapes = [], []
    for i in range(runs):
        c = critical.classify(model.f, model.grad, T[i], gtol=tol)
        lam = np.asarray(c.eigenvalues, dtype=float)
        point = {
            "run": i,
            "init_scale": float(scales[i]),
            "steps": int(steps[i]),
            "loss": float(L[i]),
            "grad_norm": float(gnorm[i]),
            "verdict": c.verdict,
            "min_ratio": float(np.mean(lam > c.etol)) if lam.size else None,
            "negative": int(np.sum(lam < -c.etol)),
            "zero": int(np.sum(np.abs(lam) <= c.etol)),
            "eigenvalues": [float(v) for v in lam],
            "etol": float(c.etol),
            "escape": None,
        }
        if c.escape_direction is not None:
            d = np.asarray(c.escape_direction, dtype=float).reshape(-1)
            f0 = model.f(T[i])
            tried = [(model.f(T[i] + s * h * d), s * h) for h in STALL["escape_steps"] for s in (1.0, -1.0)]
            f1, h = min(tried)
            point["escape"] = {"eigenvalue": float(c.escape_eigenvalue), "step": float(h), "loss_before": f0, "loss_after": float(f1), "decrease": float(f0 - f1)}
            escapes.append((i, T[i] + h * d))
        points.append(point)
    if escapes:
        T2, L2, g2, s2 = _descend(model, np.stack([p for _, p in escapes]), lr=STALL["lr"], tol=tol, cap=cap)
        for k, (i, _) in enumerate(escapes):
            c = critical.classify(model.f, model.grad, T2[k], gtol=tol)
            points[i]["escape"]["resumed"] = {"steps": int(s2[k]), "loss": float(L2[k]), "grad_norm": float(g2[k]), "verdict": c.verdict}
    counts = {}
    for p in points:
        counts[p["verdict"]] = counts.get(p["verdict"], 0) + 1
    return {
        "network": f"2 -> {STALL['hidden']} (tanh) -> 1, mean squared error on {STALL['points']} points ({model.n} parameters)",
        "parameters": model.n,
        "lr": STALL["lr"],
        "tol": tol,
        "cap": cap,
        "points": points,
        "counts": counts,
    }


# -- the study ------------------------------------------------------------------------------


def _size(size):
    if size not in SIZES:
        msg = f"size={size!r}; choose one of {', '.join(SIZES)}"
        raise InvalidArgument(msg)
    return SIZES[size]


def run_study(*, seed=0, size="default", verified=None, stall=True, progress=None, _faults=None):
    """Run the training study; return its JSON-safe record (see the module's docstring).

    Parameters
    ----------
    seed : int
        Data, initialization, shuffling and search draws all derive from it.
    size : {"default", "small"}
        See :data:`SIZES`.
    verified : dict, optional
        ``{op name: passed}`` from the same run's verification of the catalog; the study
        records, for each op of :data:`OPS_USED`, whether it verified (``True``), failed
        (``False``, which fails the study) or was not checked in this run (``None``).
    stall : bool
        Include "where training stalls" (``out["stall"]`` is None without it).
    progress : callable, optional
        ``progress(text)`` before each part.
    _faults : dict, optional
        For the tests: ``{"backward": fn}`` replaces the network's backward pass in the
        end-to-end check, ``{"steps": {name: fn}}`` an optimizer's step in training.

    Returns
    -------
    dict
        ``{"schema", "seed", "size", "passed", "problems", "task", "network", "ops",
        "e2e", "optimizers", "schedules", "batch", "losses", "activations", "search",
        "stall", "seconds"}``.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        msg = f"seed={seed!r}; pass a non-negative int"
        raise InvalidArgument(msg)
    seed = int(seed)
    cfg = _size(size)
    faults = _faults or {}
    say = progress or (lambda text: None)
    started = time.perf_counter()
    data = _data(cfg, seed)
    net = Network(2, cfg["hidden"], CLASSES)
    epochs, batch = cfg["epochs"], cfg["batch"]
    out = {
        "schema": SCHEMA,
        "seed": seed,
        "size": size,
        "task": {
            "name": "three interleaved 2-D spirals",
            "train": int(len(data["ytr"])),
            "validation": int(len(data["yva"])),
            "classes": CLASSES,
            "standardization": {"mean": data["raw_mean"], "std": data["raw_std"]},
        },
        "network": {"layers": f"linear(2, {cfg['hidden']}) -> relu -> linear({cfg['hidden']}, {CLASSES}) -> softmax_cross_entropy", "parameters": net.size, "epochs": epochs, "batch": batch},
    }
    # Which ops this rests on, and what the run's verification said of them.
    verified = verified or {}
    out["ops"] = [{"name": name, "verified": verified.get(name)} for name in OPS_USED]

    # The end-to-end check before training, on a fixed batch of the training set.
    say("end-to-end check before training")
    probe = slice(0, min(64, len(data["ytr"])))
    Xp, yp = data["Xtr"][probe], data["ytr"][probe]
    backward = faults.get("backward")
    t0 = time.perf_counter()
    before = _check_summary(check_network(net, net.init(seed), Xp, yp, backward=backward), time.perf_counter() - t0)

    steps = faults.get("steps", {})
    optimizers, final = {}, None
    for name, hyper in OPTIMIZERS.items():
        say(f"training with {name}")
        result = train(net, data, optimizer=name, hyper=hyper, epochs=epochs, batch=batch, seed=seed, step=steps.get(name), record=True)
        optimizers[name] = {"hyper": hyper, **_run_summary(result, name)}
        if name == "adam":
            final = result["theta"]
    out["optimizers"] = optimizers

    say("end-to-end check after training")
    t0 = time.perf_counter()
    after = _check_summary(check_network(net, final, Xp, yp, backward=backward), time.perf_counter() - t0)
    out["e2e"] = {"batch": int(len(yp)), "parameters": net.size, "before": before, "after": after, "trained_with": "adam"}

    say("learning-rate schedules")
    schedules = {}
    for name in SCHEDULES:
        hyper = {**OPTIMIZERS[SCHEDULE_OPTIMIZER], "lr": SCHEDULE_LR}
        result = train(net, data, optimizer=SCHEDULE_OPTIMIZER, hyper=hyper, epochs=epochs, batch=batch, seed=seed, schedule=name, step=steps.get(SCHEDULE_OPTIMIZER), record=True)
        schedules[name] = _run_summary(result, SCHEDULE_OPTIMIZER)
    out["schedules"] = {"optimizer": SCHEDULE_OPTIMIZER, "base_lr": SCHEDULE_LR, "runs": schedules}

    say("small and large batches")
    n = len(data["ytr"])
    sizes = {"small": 4, "large": n}
    out["batch"] = {
        "optimizer": "sgd",
        "lr": OPTIMIZERS["sgd"]["lr"],
        "runs": {key: {"batch": b, **_run_summary(train(net, data, optimizer="sgd", hyper=OPTIMIZERS["sgd"], epochs=epochs, batch=b, seed=seed, step=steps.get("sgd"), record=True), "sgd")} for key, b in sizes.items()},
    }

    say("cross-entropy and MSE")
    losses = {}
    for loss in ("cross_entropy", "mse"):
        other = Network(2, cfg["hidden"], CLASSES, loss=loss)
        losses[loss] = _run_summary(train(other, data, optimizer="sgd", hyper=OPTIMIZERS["sgd"], epochs=epochs, batch=batch, seed=seed, step=steps.get("sgd"), record=True), "sgd")
    out["losses"] = {"optimizer": "sgd", "lr": OPTIMIZERS["sgd"]["lr"], "runs": losses}

    say("ReLU and leaky ReLU")
    acts, big = {}, {"lr": ACTIVATION_LR}
    for act in ("relu", "leaky_relu"):
        other = Network(2, cfg["hidden"], CLASSES, activation=act)
        with np.errstate(over="ignore", invalid="ignore"):  # at this rate a run may blow up: its curves say so
            acts[act] = _run_summary(train(other, data, optimizer="sgd", hyper=big, epochs=epochs, batch=batch, seed=seed, step=steps.get("sgd"), record=True), "sgd")
    out["activations"] = {"optimizer": "sgd", "lr": big["lr"], "runs": acts}

    say("random and grid search")
    out["search"] = _search(net, data, cfg, seed)

    out["stall"] = None
    if stall:
        say("where training stalls")
        out["stall"] = stall_study(seed=seed, runs=cfg["stall_runs"], cap=cfg["stall_cap"])

    out["problems"] = _problems(out)
    out["passed"] = not out["problems"]
    out["seconds"] = round(time.perf_counter() - started, 3)
    return out


def _search(net, data, cfg, seed):
    """Random against grid search at one budget: the validation loss after a short SGD-with-momentum run.

    The learning rate matters; the momentum (in [0, 0.5]) hardly does at this length. The
    grid tries ``sqrt(budget)`` distinct rates, the random search ``budget``.
    """
    space = {"lr": LogUniform(1e-3, 1.0), "momentum": Uniform(0.0, 0.5)}

    def objective(lr, momentum):
        result = train(net, data, optimizer="momentum", hyper={"lr": lr, "momentum": momentum}, epochs=cfg["search_epochs"], batch=cfg["batch"], seed=seed)
        value = result["curves"]["val_loss"][-1]
        return value if math.isfinite(value) else math.nan

    with np.errstate(all="ignore"):  # a large rate may diverge: its value is NaN, ranked last
        grid = grid_search(objective, space, cfg["search_budget"])
        rand = random_search(objective, space, cfg["search_budget"], seed=seed)

    def summary(result):
        return {
            "trials": [{"lr": t.params["lr"], "momentum": t.params["momentum"], "value": t.value} for t in result.trials],
            "best": {"lr": result.best_params["lr"], "momentum": result.best_params["momentum"], "value": result.best_value},
            "distinct_lr": len({t.params["lr"] for t in result.trials}),
        }

    return {"budget": cfg["search_budget"], "epochs": cfg["search_epochs"], "objective": "validation loss", "space": {"lr": [1e-3, 1.0, "log-uniform"], "momentum": [0.0, 0.5, "uniform"]}, "grid": summary(grid), "random": summary(rand)}


def _replayed(out):
    """``(part, name, run)`` for every training run of the study that was replayed."""
    for name, run in out["optimizers"].items():
        yield "optimizers", name, run
    for part in ("schedules", "batch", "losses", "activations"):
        for name, run in out[part]["runs"].items():
            if "replay" in run:
                yield part, name, run


def _problems(out):
    """What fails the study, in words: an end-to-end check, a replay, an op that failed verification."""
    problems = []
    for when in ("before", "after"):
        check = out["e2e"][when]
        if not check["passed"]:
            problems.append(f"the end-to-end check of the network's backward pass {when} training FAILED (blame {check['blame']}, max rel. error {check['max_rel_error']:.3g})")
    for part, name, run in _replayed(out):
        r = run["replay"]
        if not r["passed"]:
            where = name if part == "optimizers" else f"{part} run {name!r}"
            problems.append(f"{where}: training left the catalog's update rule at step {r['first_bad_step']} (max deviation {r['max_rel_deviation']:.3g} of the parameters' scale)")
    for op in out["ops"]:
        if op["verified"] is False:
            problems.append(f"the study uses {op['name']}, which FAILED verification in this run")
    return problems
