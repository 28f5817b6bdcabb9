"""Run the workloads W1-W5 of issue 11 through gradverify, torch's gradcheck, JAX's check_grads and a 2N floor.

    python benchmarks/bench_gradcheck.py [--workloads W1,W2,...] [--configs NAME,...]
        [--repeat N] [--once-above S] [--cap [CONFIG=]S ...] [--memory-cap S] [--json PATH] [--profile]
    python benchmarks/bench_gradcheck.py --summarize RUN.json [RUN.json ...]

Every tool checks the same hand-written NumPy forward and VJP (defined below, one pair per
workload), so the comparison is between the checkers, not between implementations:

* gradverify calls them directly (``check_vjp``), in four configurations: its defaults (truth
  on, ``mode="auto"``), full mode with the truth off, looped and ``batched=True`` (every forward
  here maps a leading batch axis), and directional mode with the truth off;
* torch calls them through a ``torch.autograd.Function`` whose forward and backward convert to
  and from NumPy (``torch.autograd.gradcheck``, ``fast_mode=False`` and ``True``, its default
  tolerances);
* JAX calls them through ``jax.pure_callback`` inside a ``jax.custom_vjp`` function
  (``jax.test_util.check_grads(f, args, order=1, modes=["rev"])``, its default tolerances,
  float64 enabled);
* the floor is a plain loop of 2N forward evaluations of the same NumPy forward, perturbing
  one element in place at a time (N = differentiated elements): what any per-element central
  difference must at least spend.

torch and JAX are optional: when one is not importable its columns say "not installed".
Before timing, every configuration runs once, untimed, on W1 (library imports and first-call
set-up). Each configuration is timed with ``time.perf_counter``, best of ``--repeat`` runs; a
run longer than ``--once-above`` seconds is not repeated, and one longer than ``--cap``
seconds (settable per configuration) is stopped (SIGALRM) and its cell reads "> cap".
gradverify's defaults keep its own ``time_budget``: when its cost estimate refuses the check,
the cell says "refused"; the other gradverify configurations pass ``time_budget=None`` and
are bounded by the cap alone. Times are reported as ratios to torch's slow mode and to the
floor of the same workload in the same run; the seconds are printed only for context.

Evaluations per element count the calls of the NumPy forward in float64, a batched call
counting as many points as its batch axis holds (so looped and batched read alike), divided
by N; ``mp`` counts the truth's calls on mpmath arrays likewise. ``result.evaluations`` of
gradverify is kept in the JSON as reported.

Memory: ``RSS+`` is the growth of the process's peak resident set (``/proc/self/status``
VmHWM, reset through ``/proc/self/clear_refs``) during the last timed run, for every tool
alike; memory that the allocator kept from earlier runs is reused without growing it, so it
is a lower bound that shows mainly the large blocks. ``traced`` is the peak that
``tracemalloc`` sees (Python objects and NumPy's buffers) in one extra, untimed run, taken
for gradverify and the floor, whose allocations it sees in full, and only where the timed run
took at most ``--memory-cap`` seconds; torch's and XLA's own allocators are invisible to it,
so it is not taken for them.

Every gradverify check must pass, and torch's and JAX's must too: a failing check is printed
in full on stderr, its cell reads FAILED and the script exits with status 1 at the end (the
time of a check that fails measures nothing); so does a configuration that raises.

``--profile`` runs each selected cell once under cProfile instead and prints its 25 most
expensive entries by cumulative time. ``--summarize A.json B.json`` prints the summary tables of
saved runs (e.g. W1-W4 and W5 run separately) without measuring anything.
"""

import argparse
import contextlib
import cProfile
import dataclasses
import functools
import io
import json
import os
import platform
import pstats
import shlex
import signal
import subprocess
import sys
import time
import traceback
import tracemalloc

# One BLAS/OpenMP thread unless the caller chose otherwise (this must precede NumPy's import).
# On a shared 2-core machine a two-threaded OpenBLAS made W5's forward 15-150x slower (4-15 ms
# instead of 0.1-0.3 ms) whenever another process held a core, which swamps what is measured.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

import gradverify  # noqa: E402

EPS_BN = 1e-5  # batch norm's epsilon: part of the function's definition, not a fudge


# ---------------------------------------------------------------------------------------------
# The ops under test: NumPy forward and exact VJP. Each forward also maps a leading batch axis
# on every input to a leading axis of its output (gradverify's ``batched=True``); the VJPs are
# written for the unbatched inputs. The forwards run on gradverify's mpmath object arrays too
# (only arithmetic, @, sum/mean/max, exp/log/tanh/sqrt and indexing), so the truth can run.
# ---------------------------------------------------------------------------------------------


def tanh_fn(x):
    """``tanh(x)`` elementwise (W1)."""
    return np.tanh(x)


def tanh_vjp(v, x):
    """VJP of :func:`tanh_fn`: ``v * (1 - tanh(x)**2)``."""
    t = np.tanh(x)
    return (v * (1 - t * t),)


def tanh_matmul_sum(X, W):
    """``sum(tanh(X @ W))``, a scalar (W2).

    Notes
    -----
    With ``T = tanh(X @ W)`` and cotangent ``v`` (a scalar): ``D = v * (1 - T**2)``,
    ``dX = D @ W.T``, ``dW = X.T @ D``.
    """
    return np.sum(np.tanh(X @ W), axis=(-2, -1))


def tanh_matmul_sum_vjp(v, X, W):
    """VJP of :func:`tanh_matmul_sum` with respect to ``X`` and ``W``."""
    t = np.tanh(X @ W)
    d = v * (1 - t * t)
    return d @ W.T, X.T @ d


def _softmax_ce(z, labels):
    """Mean over rows of ``logsumexp(z_i) - z_i[labels_i]``; ``z`` holds logits, shape (..., n, k)."""
    s = z - np.max(z, axis=-1, keepdims=True)  # shift-invariant: its derivative cancels exactly
    lse = np.log(np.sum(np.exp(s), axis=-1))
    picked = s[..., np.arange(labels.shape[0]), labels]
    return np.mean(lse - picked, axis=-1)


def _softmax_ce_grad(z, labels):
    """Gradient of :func:`_softmax_ce` (unbatched): ``(softmax(z) - onehot(labels)) / n``."""
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))
    p = e / np.sum(e, axis=-1, keepdims=True)
    p[np.arange(labels.shape[0]), labels] -= 1
    return p / z.shape[0]


def softmax_ce(labels):
    """Softmax cross-entropy, mean over the batch, of logits ``z`` (n, k) for integer ``labels`` (n,) (W3).

    Returns ``(fn, vjp)`` with ``fn(z)`` a scalar and ``vjp(v, z) = (v * (softmax(z) -
    onehot(labels)) / n,)``. The labels are closed over: they are not differentiable.
    """

    def fn(z):
        return _softmax_ce(z, labels)

    def vjp(v, z):
        return (v * _softmax_ce_grad(z, labels),)

    fn.__name__, vjp.__name__ = "softmax_ce", "softmax_ce_vjp"
    return fn, vjp


def batch_norm(x, gamma, beta):
    """Batch norm in train mode over the rows of ``x`` (n, c), with scale ``gamma`` and shift ``beta`` (c,) (W4).

    Notes
    -----
    ``mu`` and ``var`` (biased) are the batch's; ``xhat = (x - mu) / sqrt(var + eps)``,
    ``y = gamma * xhat + beta``.
    """
    mu = np.mean(x, axis=-2, keepdims=True)
    xc = x - mu
    var = np.mean(xc * xc, axis=-2, keepdims=True)
    xhat = xc / np.sqrt(var + EPS_BN)
    return gamma[..., None, :] * xhat + beta[..., None, :]


def batch_norm_vjp(dy, x, gamma, beta):
    """VJP of :func:`batch_norm`.

    Notes
    -----
    With ``g = dy * gamma``: ``dx = (g - mean(g) - xhat * mean(g * xhat)) / sqrt(var + eps)``
    (means over the rows), ``dgamma = sum(dy * xhat)``, ``dbeta = sum(dy)``.
    """
    mu = np.mean(x, axis=0, keepdims=True)
    xc = x - mu
    var = np.mean(xc * xc, axis=0, keepdims=True)
    inv = 1 / np.sqrt(var + EPS_BN)
    xhat = xc * inv
    g = dy * gamma
    dx = inv * (g - np.mean(g, axis=0, keepdims=True) - xhat * np.mean(g * xhat, axis=0, keepdims=True))
    return dx, np.sum(dy * xhat, axis=0), np.sum(dy, axis=0)


def mlp_ce(labels):
    """A 2-layer perceptron and its softmax cross-entropy, mean over the batch (W5).

    Returns ``(fn, vjp)``: ``fn(X, W1, b1, W2, b2) = softmax_ce(tanh(X @ W1 + b1) @ W2 + b2,
    labels)``, a scalar, and its exact VJP (backpropagation through the two layers).
    """

    def fn(X, W1, b1, W2, b2):
        h = np.tanh(X @ W1 + b1[..., None, :])
        return _softmax_ce(h @ W2 + b2[..., None, :], labels)

    def vjp(v, X, W1, b1, W2, b2):
        h = np.tanh(X @ W1 + b1)
        g = v * _softmax_ce_grad(h @ W2 + b2, labels)
        dh = g @ W2.T
        da = dh * (1 - h * h)
        return da @ W1.T, X.T @ da, np.sum(da, axis=0), h.T @ g, np.sum(g, axis=0)

    fn.__name__, vjp.__name__ = "mlp_ce", "mlp_ce_vjp"
    return fn, vjp


@dataclasses.dataclass
class Workload:
    key: str
    title: str
    fn: object
    vjp: object
    inputs: tuple
    wrt: tuple  # indices of the differentiated inputs

    @property
    def n(self):
        return sum(self.inputs[i].size for i in self.wrt)


def workloads():
    rng = np.random.default_rng(0)
    w3_labels = rng.integers(0, 100, size=128)
    w5_labels = rng.integers(0, 10, size=32)
    ce_fn, ce_vjp = softmax_ce(w3_labels)
    mlp_fn, mlp_vjp = mlp_ce(w5_labels)
    return [
        Workload("W1", "tanh on 4x5", tanh_fn, tanh_vjp, (rng.normal(size=(4, 5)),), (0,)),
        Workload(
            "W2", "sum(tanh(X @ W)), X 16x64 fixed, W 64x64", tanh_matmul_sum, tanh_matmul_sum_vjp,
            (rng.normal(size=(16, 64)), rng.normal(size=(64, 64)) / 8), (1,),
        ),
        Workload("W3", "softmax-CE mean, logits 128x100", ce_fn, ce_vjp, (rng.normal(size=(128, 100)),), (0,)),
        Workload(
            "W4", "batch norm (train) 64x32 + gamma, beta", batch_norm, batch_norm_vjp,
            (0.5 + 2 * rng.normal(size=(64, 32)), 1 + 0.1 * rng.normal(size=32), 0.1 * rng.normal(size=32)),
            (0, 1, 2),
        ),
        Workload(
            "W5", "2-layer MLP (tanh) + CE, X 32x128 fixed, 128-256-10", mlp_fn, mlp_vjp,
            (
                rng.normal(size=(32, 128)), rng.normal(size=(128, 256)) / np.sqrt(128), 0.1 * rng.normal(size=256),
                rng.normal(size=(256, 10)) / np.sqrt(256), 0.1 * rng.normal(size=10),
            ),
            (1, 2, 3, 4),
        ),
    ]


# ---------------------------------------------------------------------------------------------
# Counting: every tool calls the NumPy functions through these wrappers.
# ---------------------------------------------------------------------------------------------


class Counter:
    def __init__(self):
        self.reset()

    def reset(self):
        self.float_points = 0
        self.mp_points = 0
        self.vjp_calls = 0


def counted(w, counter):
    """``(fn, vjp)`` of ``w`` that count their calls in ``counter`` (a batched call counts its batch)."""
    probe = w.inputs[w.wrt[0]]

    @functools.wraps(w.fn)
    def fn(*xs):
        x = xs[w.wrt[0]]
        points = x.shape[0] if x.ndim == probe.ndim + 1 else 1
        if x.dtype == object:
            counter.mp_points += points
        else:
            counter.float_points += points
        return w.fn(*xs)

    @functools.wraps(w.vjp)
    def vjp(v, *xs):
        counter.vjp_calls += 1
        return w.vjp(v, *xs)

    return fn, vjp


# ---------------------------------------------------------------------------------------------
# The configurations. Each ``prepare_*(w, counter)`` does the untimed set-up and returns
# ``run() -> (passed, report, extra)``.
# ---------------------------------------------------------------------------------------------


class NotInstalled(Exception):
    pass


class Refused(Exception):
    """gradverify refused to start (its own cost estimate exceeded its ``time_budget``)."""


# The defaults are gradverify's own, time_budget included. The other configurations pass
# time_budget=None: they are here to measure the engine's work, and --cap bounds them instead
# of the check's own estimate (which at e963997 counts a batched call as one element's).
GV_CONFIGS = {
    "gv-default": {},
    "gv-full": {"mode": "full", "truth": "off", "time_budget": None},
    "gv-full-batched": {"mode": "full", "truth": "off", "batched": True, "time_budget": None},
    "gv-directional": {"mode": "directional", "truth": "off", "time_budget": None},
}


def prepare_gradverify(options):
    def prepare(w, counter):
        fn, vjp = counted(w, counter)

        def run():
            try:
                r = gradverify.check_vjp(fn, vjp, *w.inputs, wrt=list(w.wrt), **options)
            except gradverify.CheckBudgetExceeded as exc:
                raise Refused(str(exc).splitlines()[0]) from exc
            extra = {"mode": r.mode, "truth": r.truth, "evaluations": dict(r.evaluations)}
            return r.passed, str(r), extra

        return run

    return prepare


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise NotInstalled("torch") from exc
    return torch


def prepare_torch(fast_mode):
    def prepare(w, counter):
        torch = _torch()
        fn, vjp = counted(w, counter)

        class NumpyOp(torch.autograd.Function):
            @staticmethod
            def forward(ctx, *ts):
                arrays = [t.detach().numpy() for t in ts]
                ctx.save_for_backward(*ts)
                return torch.from_numpy(np.array(fn(*arrays), dtype=np.float64))

            @staticmethod
            def backward(ctx, gy):
                arrays = [t.detach().numpy() for t in ctx.saved_tensors]
                grads = vjp(gy.detach().numpy(), *arrays)
                return tuple(
                    torch.from_numpy(np.array(g, dtype=np.float64)) if need else None
                    for g, need in zip(grads, ctx.needs_input_grad)
                )

        from torch.autograd.gradcheck import GradcheckError

        tensors = tuple(
            torch.tensor(x, dtype=torch.float64, requires_grad=i in w.wrt) for i, x in enumerate(w.inputs)
        )

        def run():
            try:
                ok = torch.autograd.gradcheck(NumpyOp.apply, tensors, fast_mode=fast_mode)
            except GradcheckError as exc:
                return False, str(exc), {}
            return ok, "", {}

        return run

    return prepare


def _jax():
    try:
        import jax
        import jax.test_util
    except ImportError as exc:
        raise NotInstalled("jax") from exc
    jax.config.update("jax_enable_x64", True)
    return jax


def prepare_jax(w, counter):
    jax = _jax()
    fn, vjp = counted(w, counter)
    fixed = list(w.inputs)

    def full(diff):
        xs = list(fixed)
        for i, x in zip(w.wrt, diff):
            xs[i] = np.asarray(x)
        return xs

    out_shape = jax.ShapeDtypeStruct(np.shape(w.fn(*w.inputs)), np.float64)
    grad_shapes = tuple(jax.ShapeDtypeStruct(w.inputs[i].shape, np.float64) for i in w.wrt)

    def host_fn(*diff):
        return np.asarray(fn(*full(diff)), dtype=np.float64)

    def host_vjp(g, *diff):
        grads = vjp(np.asarray(g), *full(diff))
        return tuple(np.asarray(grads[i], dtype=np.float64) for i in w.wrt)

    @jax.custom_vjp
    def f(*diff):
        return jax.pure_callback(host_fn, out_shape, *diff)

    def f_fwd(*diff):
        return f(*diff), diff

    def f_bwd(diff, g):
        return jax.pure_callback(host_vjp, grad_shapes, g, *diff)

    f.defvjp(f_fwd, f_bwd)
    args = tuple(jax.numpy.asarray(w.inputs[i]) for i in w.wrt)

    def run():
        try:
            jax.test_util.check_grads(f, args, order=1, modes=["rev"])
        except AssertionError as exc:
            return False, str(exc), {}
        return True, "", {}

    return run


def prepare_floor(w, counter):
    fn, _ = counted(w, counter)
    xs = [np.array(x, copy=True) for x in w.inputs]

    def run():
        h = 1e-6
        for i in w.wrt:
            flat = xs[i].reshape(-1)  # a view: perturbing it perturbs xs[i]
            for k in range(flat.size):
                old = flat[k]
                flat[k] = old + h
                fn(*xs)
                flat[k] = old - h
                fn(*xs)
                flat[k] = old
        return True, "", {}

    return run


@dataclasses.dataclass
class Config:
    name: str
    label: str
    tool: str  # "gradverify", "torch", "jax", "floor"
    prepare: object


CONFIGS = [
    Config("gv-default", "gradverify defaults", "gradverify", prepare_gradverify(GV_CONFIGS["gv-default"])),
    Config("gv-full", "gradverify full, truth off", "gradverify", prepare_gradverify(GV_CONFIGS["gv-full"])),
    Config("gv-full-batched", "gradverify full, truth off, batched", "gradverify",
           prepare_gradverify(GV_CONFIGS["gv-full-batched"])),
    Config("gv-directional", "gradverify directional, truth off", "gradverify",
           prepare_gradverify(GV_CONFIGS["gv-directional"])),
    Config("torch-slow", "torch gradcheck slow", "torch", prepare_torch(False)),
    Config("torch-fast", "torch gradcheck fast", "torch", prepare_torch(True)),
    Config("jax", "JAX check_grads rev", "jax", prepare_jax),
    Config("floor", "floor (2N forwards)", "floor", prepare_floor),
]
CONFIG_NAMES = [c.name for c in CONFIGS]


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------


class CapExceeded(BaseException):
    """Raised by SIGALRM when a run passes the cap; a BaseException so no checker swallows it."""


class _Cap:
    armed = False
    fired = False


def _on_alarm(signum, frame):
    if _Cap.armed:
        _Cap.fired = True
        raise CapExceeded


@contextlib.contextmanager
def capped(seconds):
    """Raise CapExceeded in the body after ``seconds`` (and every 0.25 s after, until it leaves)."""
    _Cap.fired = False
    _Cap.armed = True
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.25)
    try:
        yield
    finally:
        _Cap.armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _vm_kib(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


@dataclasses.dataclass
class Cell:
    workload: str
    config: str
    status: str = "ok"  # ok, FAILED, > cap, not installed, error
    seconds: float | None = None
    runs: int = 0
    float_per_element: float | None = None
    mp_per_element: float | None = None
    vjp_calls: int | None = None
    rss_growth_mib: float | None = None
    traced_peak_mib: float | None = None
    extra: dict = dataclasses.field(default_factory=dict)


def measure(w, config, args):
    cell = Cell(w.key, config.name)
    counter = Counter()
    try:
        run = config.prepare(w, counter)
    except NotInstalled as exc:
        cell.status = f"{exc} not installed"
        return cell
    cap = args.caps.get(config.name, args.cap)
    times = []
    for attempt in range(args.repeat):
        counter.reset()
        rss_ok = _reset_peak_rss()
        rss0 = _vm_kib("VmRSS") if rss_ok else None
        started = time.perf_counter()
        try:
            with capped(cap):
                passed, report, extra = run()
        except CapExceeded:
            passed = None
        except Refused as exc:
            cell.status = "refused (time_budget)"
            cell.extra = {"refused": str(exc), "after seconds": time.perf_counter() - started}
            print(f"\n{w.key} {config.label}: refused: {exc}", file=sys.stderr)
            return cell
        except Exception:  # a bug of the benchmark or of a tool: reported, never hidden
            cell.status = "error"
            print(f"\n{w.key} {config.label}: raised:\n{traceback.format_exc()}", file=sys.stderr)
            return cell
        elapsed = time.perf_counter() - started
        if _Cap.fired or passed is None:
            if not times:
                cell.status = f"> {cap:g} s"
                return cell
            break  # an earlier run finished: keep its time
        if not passed:
            cell.status = "FAILED"
            print(f"\n{w.key} {config.label}: the check FAILED on a correct VJP:\n{report}", file=sys.stderr)
            return cell
        times.append(elapsed)
        if attempt == 0:
            n = w.n
            cell.float_per_element = counter.float_points / n
            cell.mp_per_element = counter.mp_points / n
            cell.vjp_calls = counter.vjp_calls
            cell.extra = extra
        hwm = _vm_kib("VmHWM") if rss_ok else None
        if hwm is not None and rss0 is not None:
            cell.rss_growth_mib = max(hwm - rss0, 0) / 1024  # the last run's: warm-up excluded where repeated
        if elapsed > args.once_above:
            break
    cell.seconds = min(times)
    cell.runs = len(times)
    if config.tool in ("gradverify", "floor") and cell.seconds <= args.memory_cap:
        tracemalloc.start()
        try:
            with capped(max(cap, 10 * cell.seconds)):
                run()
            cell.traced_peak_mib = tracemalloc.get_traced_memory()[1] / 2**20
        except CapExceeded:
            pass
        finally:
            tracemalloc.stop()
    return cell


def profile(w, config, args):
    counter = Counter()
    try:
        run = config.prepare(w, counter)
    except NotInstalled as exc:
        print(f"{w.key} {config.label}: {exc} not installed")
        return
    profiler = cProfile.Profile()
    started = time.perf_counter()
    cap = args.caps.get(config.name, args.cap)
    try:
        with capped(cap):
            profiler.runcall(run)
    except CapExceeded:
        print(f"(stopped at the cap of {cap:g} s)")
    except Refused as exc:
        print(f"(refused: {exc})")
    elapsed = time.perf_counter() - started
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
    print(f"\n## cProfile: {w.key} {w.title}, {config.label} ({elapsed:.2f} s under the profiler)\n")
    print(out.getvalue())


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------


def _seconds(s):
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} us"


def _ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    r = a / b
    return f"{r:.3g}" if r < 1000 else f"{r:.0f}"


def _num(x, fmt):
    return "–" if x is None else format(x, fmt)


def workload_table(w, cells):
    by = {c.config: c for c in cells}
    slow = by.get("torch-slow")
    floor = by.get("floor")
    slow_s = slow.seconds if slow else None
    floor_s = floor.seconds if floor else None
    lines = [
        f"### {w.key}: {w.title} (N = {w.n} differentiated elements)",
        "",
        "| configuration | time | / torch slow | / floor | fn/elem | mp/elem | vjp calls | RSS+ MiB | traced MiB | runs | mode, truth |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for config in CONFIGS:
        c = by.get(config.name)
        if c is None:
            continue
        if c.seconds is None:
            lines.append(f"| {config.label} | {c.status} | | | | | | | | | |")
            continue
        note = f"{c.extra['mode']}, {c.extra['truth']}" if "mode" in c.extra else ""
        lines.append(
            f"| {config.label} | {_seconds(c.seconds)} | {_ratio(c.seconds, slow_s)} | {_ratio(c.seconds, floor_s)}"
            f" | {_num(c.float_per_element, '.3g')} | {_num(c.mp_per_element or None, '.3g')} | {_num(c.vjp_calls, 'd')}"
            f" | {_num(c.rss_growth_mib, '.1f')} | {_num(c.traced_peak_mib, '.1f')} | {c.runs} | {note} |"
        )
    return "\n".join(lines)


def _time_cell(c, by):
    slow, floor = by.get("torch-slow"), by.get("floor")
    slow_s = slow.seconds if slow else None
    floor_s = floor.seconds if floor else None
    ratios = [_ratio(c.seconds, ref) for ref in (slow_s, floor_s)]
    return f"{_seconds(c.seconds)} (" + " / ".join(r if r == "–" else r + "x" for r in ratios) + ")"


def _work_cell(c, by):
    text = _num(c.float_per_element, ".3g")
    if c.mp_per_element:
        text += f" + {c.mp_per_element:.3g} mp"
    return text


def _memory_cell(c, by):
    if c.traced_peak_mib is not None:
        return f"{c.traced_peak_mib:.1f}"
    return "–" if c.rss_growth_mib is None else f"RSS+ {c.rss_growth_mib:.1f}"


SUMMARIES = [
    ("best time (ratio to torch gradcheck slow / to the floor)", _time_cell),
    ("evaluations of fn per differentiated element, float64 (+ mpmath)", _work_cell),
    ("peak memory, MiB: traced (tracemalloc) where taken, else the growth of peak RSS", _memory_cell),
]


def summary_table(wls, cells, fmt):
    names = [c.name for c in CONFIGS if any(cell.config == c.name for cell in cells)]
    labels = {c.name: c.label for c in CONFIGS}
    lines = [
        "| workload | " + " | ".join(labels[n] for n in names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for w in wls:
        by = {c.config: c for c in cells if c.workload == w.key}
        if not by:
            continue
        row = []
        for n in names:
            c = by.get(n)
            row.append("" if c is None else c.status if c.seconds is None else fmt(c, by))
        lines.append(f"| {w.key} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def print_summaries(wls, cells):
    for title, fmt in SUMMARIES:
        print(f"### Summary: {title}\n")
        print(summary_table(wls, cells, fmt) + "\n")


def summarize_saved(paths, wls):
    """Print the summaries of saved ``--json`` files (cells of later files replace earlier ones)."""
    cells = {}
    for path in paths:
        with open(path) as f:
            saved = json.load(f)
        prov = saved["provenance"]
        print(f"- {path}: commit {prov['commit']}, {prov['command']}, {prov['date']}")
        for c in saved["cells"]:
            cells[c["workload"], c["config"]] = Cell(**c)
    print()
    print_summaries(wls, list(cells.values()))


def _git(*cmd, cwd):
    try:
        return subprocess.run(["git", *cmd], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def provenance(argv):
    source = os.path.dirname(os.path.dirname(os.path.abspath(gradverify.__file__)))
    commit = _git("rev-parse", "HEAD", cwd=source)
    dirty = _git("status", "--porcelain", "--", "gradverify", cwd=source) if commit else None
    versions = {"python": platform.python_version(), "numpy": np.__version__, "gradverify": gradverify.__version__}
    for name in ("mpmath", "gmpy2", "torch", "jax", "jaxlib"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    try:
        import mpmath.libmp

        versions["mpmath backend"] = mpmath.libmp.BACKEND
    except ImportError:
        pass
    try:
        versions["numpy blas"] = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:  # the layout of show_config's dict is NumPy's business
        pass
    if versions["torch"]:
        import torch

        versions["torch threads"] = torch.get_num_threads()
    return {
        "gradverify source": source,
        "commit": commit,
        "uncommitted changes in gradverify/": dirty.splitlines() if dirty else [],
        "cpu": _cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": {v: os.environ.get(v) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        "load average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "versions": versions,
        "command": "python benchmarks/bench_gradcheck.py " + shlex.join(argv),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def _cap(value):
    name, _, seconds = value.rpartition("=")
    if name and name not in CONFIG_NAMES:
        msg = f"--cap {value}: unknown configuration {name!r}; choose from {', '.join(CONFIG_NAMES)}"
        raise argparse.ArgumentTypeError(msg)
    try:
        s = float(seconds)
    except ValueError:
        s = -1.0
    if not s > 0:
        msg = f"--cap {value}: the cap must be a positive number of seconds, as in --cap 120 or --cap gv-full=300"
        raise argparse.ArgumentTypeError(msg)
    return (name or None, s)


def _csv(value, allowed, what):
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        msg = f"--{what}: unknown {', '.join(bad) or 'empty list'}; choose from {', '.join(allowed)}"
        raise argparse.ArgumentTypeError(msg)
    return items


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    wls_all = workloads()
    keys = [w.key for w in wls_all]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=lambda s: _csv(s, keys, "workloads"), default=keys,
                        help="comma-separated, default all: " + ",".join(keys))
    parser.add_argument("--configs", type=lambda s: _csv(s, CONFIG_NAMES, "configs"), default=CONFIG_NAMES,
                        help="comma-separated, default all: " + ",".join(CONFIG_NAMES))
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs (default 3)")
    parser.add_argument("--once-above", type=float, default=20.0,
                        help="a run longer than this many seconds is not repeated (default 20)")
    parser.add_argument("--cap", action="append", type=_cap, default=[], metavar="[CONFIG=]S",
                        help="stop a run after S seconds, its cell reading '> S s' (default 120); CONFIG=S sets"
                             " one configuration's cap; repeatable: --cap 300 --cap gv-default=120")
    parser.add_argument("--memory-cap", type=float, default=20.0,
                        help="the untimed tracemalloc run only for cells that took at most this many seconds (default 20)")
    parser.add_argument("--json", metavar="PATH", help="save the provenance and every cell as JSON")
    parser.add_argument("--profile", action="store_true", help="run each cell once under cProfile instead of timing")
    parser.add_argument("--summarize", nargs="+", metavar="JSON",
                        help="print the summary tables of saved --json files (merged in order) and exit")
    args = parser.parse_args(argv)
    if args.summarize:
        summarize_saved(args.summarize, wls_all)
        return 0
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    args.caps = {name: s for name, s in args.cap if name is not None}
    args.cap = next((s for name, s in reversed(args.cap) if name is None), 120.0)

    wls = [w for w in wls_all if w.key in args.workloads]
    configs = [c for c in CONFIGS if c.name in args.configs]
    prov = provenance(argv)
    print("# gradverify vs torch.autograd.gradcheck vs jax check_grads (issue 11, W1-W5)\n")
    for key, value in prov.items():
        print(f"- {key}: {value}")
    print()
    sys.stdout.flush()

    if args.profile:
        for w in wls:
            for config in configs:
                profile(w, config, args)
        return 0

    # One untimed run of every configuration on W1 first: importing torch and JAX and their
    # first calls' set-up are not what a check costs (repeated cells drop them anyway).
    warm = next(w for w in wls_all if w.key == "W1")
    for config in configs:
        with contextlib.suppress(Exception):
            config.prepare(warm, Counter())()

    cells = []
    for w in wls:
        wcells = []
        for config in configs:
            cell = measure(w, config, args)
            wcells.append(cell)
            shown = _seconds(cell.seconds) if cell.seconds is not None else cell.status
            print(f"  {w.key} {config.label}: {shown}", file=sys.stderr, flush=True)
        cells.extend(wcells)
        print(workload_table(w, wcells) + "\n", flush=True)
        if args.json:  # after every workload, so a long run stopped later keeps what it measured
            with open(args.json, "w") as f:
                json.dump({"provenance": prov, "cells": [dataclasses.asdict(c) for c in cells]}, f, indent=2)
    print_summaries(wls, cells)

    failed = [f"{c.workload} {c.config}" for c in cells if c.status in ("FAILED", "error")]
    if failed:
        print(f"\nFAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
