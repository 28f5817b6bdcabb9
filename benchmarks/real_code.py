"""Run gradverify over hand-written backward passes that nobody here wrote (issue 9, "Proof").

Third-party code under test (never dependencies of this project; install them in a scratch
venv outside the repo):

    python3 -m venv /tmp/realcode/venv
    /tmp/realcode/venv/bin/pip install -e /work/main numpy-ml tinynn dezero
    /tmp/realcode/venv/bin/python benchmarks/real_code.py [--json OUT] [--only LIB] [--verbose]

numpy-ml 0.1.2 does not import on Python >= 3.10 (``from collections import Hashable``), and
DeZero 0.0.13 imports matplotlib without declaring it and uses ``np.int`` (gone in NumPy 1.24);
the driver applies the shims a user would (``collections.abc`` aliases, ``np.int = int``, a stub
``matplotlib.pyplot`` when matplotlib is absent) before importing them. The libraries' own
code is not modified.

Every check is used the way a new user would: the library's own forward and backward, with
float64 NumPy inputs of a few dozen elements, default gradverify options unless a record
says otherwise. Each record carries my own judgement (``correct``) of whether the backward
is right, reached by derivation and, for the suspicious ones, independently with mpmath or a
hand-written reference (see ``note``). Outcomes:

- ``ok``: correct backward, passed (possibly with blame "numerical");
- ``false_alarm``: correct backward, failed with blame "analytic";
- ``inconclusive``: correct backward, failed with blame "numerical";
- ``caught`` / ``missed``: wrong backward, failed with blame "analytic" / anything else;
- ``user_error``: the library's own code raised (gradverify re-raised it as
  ``UserFunctionError``); ``crash``: gradverify itself raised something else.

This file imports the third-party packages only when run; tests never import it.

Results (150 checks: numpy-ml 63, tinynn 29, DeZero 58; 13 s on 2 cores):

- gradverify after issue 9 (the end of that session): 0 false alarms, 1 inconclusive
  (tinynn RNN on float32 inputs computed in float32 buffers), 12 defects judged: 9 blamed
  "analytic" (DeZero max with ties now caught in full mode, by the joint judgement of the
  elements at kinks), 3 surfaced as UserFunctionError, 0 missed, 0 crashes. Four correct
  backwards fail without blame, as they should: tinynn Conv2D SAME / VALID and
  ConvTranspose2D compute their forward in float32 im2col buffers (structural finding
  ``fn_not_float64``), and numpy-ml SELU's ``grad`` checked by its ``grad2`` at x = 0,
  where ``grad`` itself jumps (1.0507 to 1.7581): "not differentiable here".
- gradverify d3861e6: 0 false alarms, 3 inconclusive (tinynn Conv2D SAME / VALID and RNN,
  whose forwards compute in float32 buffers), 12 defects judged: 8 blamed "analytic", 3
  surfaced as UserFunctionError (DeZero backward raising), 1 missed (DeZero max with ties,
  in the default full mode; mode="directional" catches it), 0 crashes of gradverify.
- gradverify be59cf7: 4 false alarms (numpy-ml HardSigmoid at x = +-2.5; tinynn Conv2D SAME,
  VALID and ConvTranspose2D, where im2col copies x into a float32 buffer and the truth
  returned 0 for x), 1 inconclusive, the same defects caught/surfaced/missed.
"""

import argparse
import collections
import collections.abc
import json
import sys
import time
import traceback

import numpy as np

import gradverify

RECORDS = []
VERBOSE = False


# -- running one check ------------------------------------------------------------------


def run(lib, op, fn, vjp, inputs, correct, note="", **options):
    """Run one check_vjp and record it. ``correct``: my judgement of the backward (True/False)."""
    t0 = time.perf_counter()
    rec = dict(library=lib, op=op, correct=correct, note=note, options={k: repr(v) for k, v in options.items()})
    options.setdefault("name", f"{lib}:{op}")
    try:
        r = gradverify.check_vjp(fn, vjp, *inputs, **options)
    except gradverify.UserFunctionError as e:
        cause = e.__cause__
        rec.update(status="user_error", error=f"{type(cause).__name__}: {cause}"[:300], message=str(e)[:300])
    except gradverify.GradVerifyError as e:
        rec.update(status="gradverify_error", error=f"{type(e).__name__}: {e}"[:600])
    except Exception as e:  # noqa: BLE001 - a crash of gradverify itself is what we count
        rec.update(status="crash", error=f"{type(e).__name__}: {e}"[:300], traceback=traceback.format_exc()[-1500:])
    else:
        rec.update(
            status="ran",
            passed=bool(r.passed),
            blame=r.blame,
            truth=r.truth,
            truth_note=(r.truth_note or "")[:200],
            mode=r.mode,
            max_rel_error=None if r.max_rel_error is None else float(r.max_rel_error),
            structural=[s.kind for s in r.structural],
            kinks=sum(p.kinks for p in r.per_input),
            numerical_off=sum(p.numerical_off for p in r.per_input),
            unresolved=sum(p.unresolved for p in r.per_input),
            report=str(r),
        )
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    rec["outcome"] = outcome(rec)
    RECORDS.append(rec)
    flag = "" if rec["outcome"] in ("ok", "caught") else "   <-- " + rec["outcome"]
    print(
        f"{lib:9s} {op[:52]:52s} {rec.get('passed', '-')!s:5s} {rec.get('blame')!s:9s} "
        f"{rec.get('truth', '-')!s:11s} {fmt(rec.get('max_rel_error'))} {rec['seconds']:6.2f}s{flag}",
        flush=True,
    )
    if VERBOSE and rec["outcome"] not in ("ok", "caught"):
        print("    " + (rec.get("report") or rec.get("error") or "").replace("\n", "\n    "), flush=True)
    return rec


def outcome(rec):
    st = rec["status"]
    if st in ("user_error", "crash", "gradverify_error"):
        return st
    if rec["correct"]:
        if rec["passed"]:
            return "ok"
        if rec["blame"] == "analytic":
            return "false_alarm"
        if rec["blame"] == "numerical":
            return "inconclusive"
        return "failed_other"
    if not rec["passed"] and rec["blame"] == "analytic":
        return "caught"
    return "missed"


def fmt(x):
    return "   n/a   " if x is None else f"{x:9.2e}"


def rng(seed):
    return np.random.default_rng(seed)


def scalar(x):
    """A loss value as a 0-d array (gradverify wants an array, NumPy sums give scalars)."""
    return np.asarray(x)


# -- numpy-ml ---------------------------------------------------------------------------


def import_numpy_ml():
    for name in ("Hashable", "Iterable", "Mapping", "MutableMapping", "Sequence", "Callable"):
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    import warnings

    warnings.filterwarnings("ignore")
    import numpy_ml.neural_nets.activations as A
    import numpy_ml.neural_nets.layers as L
    import numpy_ml.neural_nets.losses as Lo

    return A, L, Lo


def nml_layer(make, init, names, grad_of=None, pick=None):
    """fn/vjp for a numpy-ml layer: a fresh layer per call, parameters taken from the inputs."""

    def build(x, params):
        layer = make()
        init(layer, x.shape)
        layer.parameters.update(dict(zip(names, params)))
        return layer

    def fn(x, *params):
        out = build(x, params).forward(x)
        return out if pick is None else out[pick]

    def vjp(v, x, *params):
        layer = build(x, params)
        layer.forward(x)
        dx = layer.backward(v)
        return (dx, *(layer.gradients[n] for n in names))

    return fn, vjp


def check_numpy_ml():
    A, L, Lo = import_numpy_ml()
    lib = "numpy-ml"

    # activations: fn and grad (the elementwise derivative), then grad and grad2
    x_generic = rng(1).standard_normal(12) * 2
    acts = [
        ("Sigmoid", A.Sigmoid(), x_generic, True, ""),
        ("ReLU (incl. x=0)", A.ReLU(), np.array([0.0, -1.3, 0.7, 2.2, -0.1, 0.0]), True, "grad returns an int array"),
        ("LeakyReLU(0.3) (incl. x=0)", A.LeakyReLU(0.3), np.array([0.0, -1.3, 0.7, 2.2, -0.1]), True, ""),
        ("Tanh", A.Tanh(), x_generic, True, ""),
        ("Affine(2, 1)", A.Affine(2.0, 1.0), x_generic, True, ""),
        ("Identity", A.Identity(), x_generic, True, ""),
        ("ELU(1.0) (incl. x=0)", A.ELU(1.0), np.append(x_generic[:8], 0.0), True, ""),
        ("ELU(0.5) (incl. x=0)", A.ELU(0.5), np.append(x_generic[:8], 0.0), True, "kink at 0, grad(0)=0.5 inside [0.5, 1]"),
        ("Exponential", A.Exponential(), x_generic, True, ""),
        ("SELU (incl. x=0)", A.SELU(), np.append(x_generic[:8], 0.0), True, "kink at 0, grad(0)=scale inside"),
        ("HardSigmoid (incl. +-2.5)", A.HardSigmoid(), np.array([-2.5, 2.5, -3.0, 3.1, 0.4, -1.2]), True, "kinks at +-2.5"),
        ("SoftPlus", A.SoftPlus(), x_generic, True, ""),
    ]
    for name, act, x, ok, note in acts:
        run(lib, f"act {name}: grad", act.fn, lambda v, x, a=act: (v * a.grad(x),), (x,), ok, note)
    for name in ("Sigmoid", "Tanh", "ELU(1.0) (incl. x=0)", "SELU (incl. x=0)", "SoftPlus", "Exponential"):
        act = dict((a[0], a[1]) for a in acts)[name]
        x = dict((a[0], a[2]) for a in acts)[name]
        run(lib, f"act {name}: grad2", act.grad, lambda v, x, a=act: (v * a.grad2(x),), (x,), True, "second derivative")

    # layers
    r = rng(2)
    x = r.standard_normal((3, 4))

    def fc_init(layer, shape):
        layer.n_in = shape[1]
        layer._init_params()

    for act in (None, "ReLU", "Sigmoid", "Tanh"):
        fn, vjp = nml_layer(lambda a=act: L.FullyConnected(3, act_fn=a), fc_init, ("W", "b"))
        run(lib, f"FullyConnected(act={act})", fn, vjp, (x, r.standard_normal((4, 3)), r.standard_normal((1, 3))), True)

    def nothing(layer, shape):
        layer.n_in = shape[1]
        layer._init_params()

    fn, vjp = nml_layer(lambda: L.Softmax(dim=-1), nothing, ())
    run(lib, "Softmax(dim=-1)", fn, vjp, (x,), True)
    fn, vjp = nml_layer(lambda: L.Softmax(dim=0), nothing, ())
    run(lib, "Softmax(dim=0)", fn, vjp, (x,), False, "backward ignores self.dim: always the Jacobian of a softmax over the last axis")

    def bn1_init(layer, shape):
        layer.n_in = layer.n_out = shape[1]
        layer._init_params()

    fn, vjp = nml_layer(L.BatchNorm1D, bn1_init, ("scaler", "intercept"))
    run(lib, "BatchNorm1D", fn, vjp, (r.standard_normal((5, 3)), r.uniform(0.5, 1.5, 3), r.standard_normal(3)), True)

    def ln1_init(layer, shape):
        layer.n_in = layer.n_out = shape[1]
        layer._init_params()

    fn, vjp = nml_layer(L.LayerNorm1D, ln1_init, ("scaler", "intercept"))
    run(lib, "LayerNorm1D", fn, vjp, (r.standard_normal((3, 5)), r.uniform(0.5, 1.5, 5), r.standard_normal(5)), True)

    def bn2_init(layer, shape):
        layer.in_ch = layer.out_ch = shape[3]
        layer._init_params()

    fn, vjp = nml_layer(L.BatchNorm2D, bn2_init, ("scaler", "intercept"))
    run(lib, "BatchNorm2D", fn, vjp, (r.standard_normal((2, 2, 3, 2)), r.uniform(0.5, 1.5, 2), r.standard_normal(2)), True)

    def ln2_init(layer, shape):
        layer.in_ch = layer.out_ch = shape[3]
        layer._init_params(shape)

    fn, vjp = nml_layer(L.LayerNorm2D, ln2_init, ("scaler", "intercept"))
    run(lib, "LayerNorm2D", fn, vjp, (r.standard_normal((2, 2, 2, 2)), r.uniform(0.5, 1.5, (2, 2, 2)), r.standard_normal((2, 2, 2))), True)

    def conv_init(layer, shape):
        layer.in_ch = shape[-1]
        layer._init_params()

    for pad, stride, dil in ((0, 1, 0), (1, 1, 0), (1, 2, 0), (0, 1, 1)):
        fn, vjp = nml_layer(lambda p=pad, s=stride, d=dil: L.Conv1D(2, 2, pad=p, stride=s, dilation=d), conv_init, ("W", "b"))
        run(
            lib,
            f"Conv1D(k=2, pad={pad}, stride={stride}, dilation={dil})",
            fn,
            vjp,
            (r.standard_normal((2, 5, 2)), r.standard_normal((2, 2, 2)), r.standard_normal((1, 1, 2))),
            True,
        )
    for pad, stride, dil in ((0, 1, 0), (1, 1, 0), (1, 2, 0), (0, 1, 1)):
        fn, vjp = nml_layer(lambda p=pad, s=stride, d=dil: L.Conv2D(2, (2, 2), pad=p, stride=s, dilation=d), conv_init, ("W", "b"))
        run(
            lib,
            f"Conv2D(k=2x2, pad={pad}, stride={stride}, dilation={dil})",
            fn,
            vjp,
            (r.standard_normal((1, 4, 4, 2)), r.standard_normal((2, 2, 2, 2)), r.standard_normal((1, 1, 1, 2))),
            True,
        )
    for stride in (1, 2):
        fn, vjp = nml_layer(lambda s=stride: L.Deconv2D(2, (2, 2), pad=0, stride=s), conv_init, ("W", "b"))
        run(
            lib,
            f"Deconv2D(k=2x2, pad=0, stride={stride})",
            fn,
            vjp,
            (r.standard_normal((1, 3, 3, 2)), r.standard_normal((2, 2, 2, 2)), r.standard_normal((1, 1, 1, 2))),
            True,
        )

    def pool_init(layer, shape):
        layer.in_ch = layer.out_ch = shape[3]
        layer._init_params()

    xp = r.standard_normal((1, 4, 4, 2))
    fn, vjp = nml_layer(lambda: L.Pool2D((2, 2), stride=2, mode="max"), pool_init, ())
    run(lib, "Pool2D max (2x2, stride 2)", fn, vjp, (xp,), True)
    fn, vjp = nml_layer(lambda: L.Pool2D((2, 2), stride=1, mode="max"), pool_init, ())
    run(lib, "Pool2D max (2x2, stride 1, overlapping)", fn, vjp, (xp,), True)
    fn, vjp = nml_layer(lambda: L.Pool2D((2, 2), stride=2, pad=1, mode="max"), pool_init, ())
    run(lib, "Pool2D max (2x2, stride 2, pad 1)", fn, vjp, (r.standard_normal((1, 3, 3, 1)),), False,
        "backward takes the argmax in the unpadded X with padded-window indices")
    fn, vjp = nml_layer(lambda: L.Pool2D((2, 2), stride=2, mode="average"), pool_init, ())
    run(lib, "Pool2D average (2x2, stride 2)", fn, vjp, (xp,), True)
    xt = np.array([[[[1.0], [1.0], [0.5], [2.0]], [[0.0], [1.0], [2.0], [0.3]]]])  # ties within windows
    fn, vjp = nml_layer(lambda: L.Pool2D((2, 2), stride=2, mode="max"), pool_init, ())
    run(lib, "Pool2D max with ties (first argmax)", fn, vjp, (xt,), True, "first maximum gets the cotangent: a valid subgradient")

    def multi(layer_cls, act):
        def fn(*xs):
            return layer_cls(act_fn=act).forward(list(xs))

        def vjp(v, *xs):
            layer = layer_cls(act_fn=act)
            layer.forward(list(xs))
            return tuple(layer.backward(v))

        return fn, vjp

    xs3 = tuple(r.standard_normal((2, 3)) for _ in range(3))
    for cls in (L.Add, L.Multiply):
        for act in (None, "Tanh"):
            fn, vjp = multi(cls, act)
            run(lib, f"{cls.__name__}(3 inputs, act={act})", fn, vjp, xs3, True)

    fn, vjp = nml_layer(L.Flatten, lambda layer, shape: None, ())
    run(lib, "Flatten", fn, vjp, (r.standard_normal((2, 2, 3)),), True)

    # Embedding: gradient wrt W only (the ids are integers)
    ids = np.array([[0, 2], [2, 3]])
    for pool in (None, "sum", "mean"):

        def emb_fn(W, ids, pool=pool):
            layer = L.Embedding(3, 4, pool=pool)
            layer.parameters["W"] = W
            return layer.forward(ids)

        def emb_vjp(v, W, ids, pool=pool):
            layer = L.Embedding(3, 4, pool=pool)
            layer.parameters["W"] = W
            layer.forward(ids)
            layer.backward(v)
            return layer.gradients["W"], None

        run(lib, f"Embedding(pool={pool}) dW", emb_fn, emb_vjp, (r.standard_normal((4, 3)), ids), True, "id 2 repeated", wrt=(0,))

    def att_fn(q, k, v):
        return L.DotProductAttention(scale=True).forward(q, k, v)

    def att_vjp(g, q, k, v):
        layer = L.DotProductAttention(scale=True)
        layer.forward(q, k, v)
        return layer.backward(g)

    run(lib, "DotProductAttention", att_fn, att_vjp, (r.standard_normal((2, 3)), r.standard_normal((4, 3)), r.standard_normal((4, 2))), True)

    def cell_init(layer, shape):
        layer.n_in = shape[1]
        layer._init_params()

    names = ("Wax", "Waa", "ba", "bx")
    fn, vjp = nml_layer(lambda: L.RNNCell(3), cell_init, names)
    run(lib, "RNNCell (one step)", fn, vjp, (r.standard_normal((2, 2)), r.standard_normal((2, 3)), r.standard_normal((3, 3)), r.standard_normal((3, 1)), r.standard_normal((3, 1))), True,
        "Waa has no effect on the first step: zero gradient is right")

    def rnn2(v_or_none, x, *params):
        layer = L.RNNCell(3)
        cell_init(layer, x[:, :, 0].shape)
        layer.parameters.update(dict(zip(names, params)))
        a = [layer.forward(x[:, :, t]) for t in range(2)]
        if v_or_none is None:
            return np.stack(a, axis=-1)
        dx = [None, None]
        for t in (1, 0):
            dx[t] = layer.backward(v_or_none[..., t])
        return (np.stack(dx, axis=-1), *(layer.gradients[n] for n in names))

    run(lib, "RNNCell (two steps, BPTT)", lambda *a: rnn2(None, *a), rnn2,
        (r.standard_normal((2, 2, 2)), r.standard_normal((2, 3)), r.standard_normal((3, 3)), r.standard_normal((3, 1)), r.standard_normal((3, 1))), True)

    lnames = ("Wf", "Wu", "Wc", "Wo", "bf", "bu", "bc", "bo")
    lstm_params = tuple(r.standard_normal((4, 2)) * 0.7 for _ in range(4)) + tuple(r.standard_normal((1, 2)) * 0.5 for _ in range(4))
    fn, vjp = nml_layer(lambda: L.LSTMCell(2), cell_init, lnames, pick=0)
    run(lib, "LSTMCell (one step, output A)", fn, vjp, (r.standard_normal((2, 2)), *lstm_params), True,
        "Wf/bf have no effect on the first step (C_prev = 0)")

    def lstm2(v_or_none, x, *params):
        layer = L.LSTMCell(2)
        cell_init(layer, x[:, :, 0].shape)
        layer.parameters.update(dict(zip(lnames, params)))
        a = [layer.forward(x[:, :, t])[0] for t in range(2)]
        if v_or_none is None:
            return np.stack(a, axis=-1)
        dx = [None, None]
        for t in (1, 0):
            dx[t] = layer.backward(v_or_none[..., t])
        return (np.stack(dx, axis=-1), *(layer.gradients[n] for n in lnames))

    run(lib, "LSTMCell (two steps, BPTT)", lambda *a: lstm2(None, *a), lstm2, (r.standard_normal((2, 2, 2)), *lstm_params), True)

    # losses
    y = np.eye(4)[[0, 3, 1]]
    z = r.standard_normal((3, 4))
    for act in (A.Identity(), A.Sigmoid(), A.Tanh()):

        def se_fn(z, y, act=act):
            return scalar(Lo.SquaredError.loss(y, act.fn(z)))

        def se_vjp(v, z, y, act=act):
            return v * Lo.SquaredError.grad(y, act.fn(z), z, act), None

        run(lib, f"SquaredError through {act} (d/dz)", se_fn, se_vjp, (z, r.standard_normal((3, 4))), True, wrt=(0,))

    def softmax(z):
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    run(lib, "CrossEntropy(softmax(z)) d/dz", lambda z, y: scalar(Lo.CrossEntropy.loss(y, softmax(z))),
        lambda v, z, y: (v * Lo.CrossEntropy.grad(y, softmax(z)), None), (z, y), True,
        "grad is y_pred - y, the gradient wrt the logits (documented); the +eps inside the log moves it by ~eps/p", wrt=(0,))

    yb = (r.uniform(size=(3, 4)) > 0.5).astype(float)

    def vae_fn(yp, m, lv, y):
        return scalar(Lo.VAELoss.loss(y, yp, m, lv))

    def vae_vjp(v, yp, m, lv, y):
        dyp, dlv, dm = Lo.VAELoss.grad(y, yp, m, lv)
        return v * dyp, v * dm, v * dlv, None

    run(lib, "VAELoss (y_pred, mean, log_var)", vae_fn, vae_vjp, (r.uniform(0.1, 0.9, (3, 4)), r.standard_normal((3, 2)), r.standard_normal((3, 2)) * 0.5, yb), True, wrt=(0, 1, 2))

    wg = Lo.WGAN_GPLoss(lambda_=10)

    def wgc_fn(yf, yr, gi):
        return scalar(wg.loss(yf, "C", Y_real=yr, gradInterp=gi))

    def wgc_vjp(v, yf, yr, gi):
        return tuple(v * g for g in wg.grad(yf, "C", Y_real=yr, gradInterp=gi))

    run(lib, "WGAN_GPLoss critic (Y_fake, Y_real, gradInterp)", wgc_fn, wgc_vjp, (r.standard_normal((3, 1)), r.standard_normal((3, 1)), r.standard_normal((3, 2))), False,
        "loss = mean(Y_fake) - mean(Y_real) + GP, but grad returns -1/n for Y_fake and +1/n for Y_real: both signs flipped")
    run(lib, "WGAN_GPLoss generator (Y_fake)", lambda yf: scalar(wg.loss(yf, "G")), lambda v, yf: (v * wg.grad(yf, "G"),), (r.standard_normal((3, 1)),), True)


# -- tinynn -----------------------------------------------------------------------------


def tn_layer(make, names, setup=None):
    """fn/vjp for a tinynn layer: a fresh layer per call, params from the inputs."""

    def build(params):
        layer = make()
        if names:
            layer.params = dict(zip(names, params))
            layer.is_init = True
        if setup:
            setup(layer)
        return layer

    def fn(x, *params):
        return build(params).forward(x)

    def vjp(v, x, *params):
        layer = build(params)
        layer.forward(x)
        dx = layer.backward(v)
        return (dx, *(layer.grads[n] for n in names))

    return fn, vjp


def check_tinynn():
    import tinynn.core.layer as T
    import tinynn.core.loss as TL

    lib = "tinynn"
    r = rng(3)
    x = r.standard_normal((3, 4))
    fn, vjp = tn_layer(lambda: T.Dense(3), ("w", "b"))
    run(lib, "Dense", fn, vjp, (x, r.standard_normal((4, 3)), r.standard_normal(3)), True)

    xc = r.standard_normal((1, 4, 4, 2))
    wc = r.standard_normal((2, 2, 2, 2))
    bc = r.standard_normal(2)
    fn, vjp = tn_layer(lambda: T.Conv2D((2, 2, 2, 2), padding="SAME"), ("w", "b"))
    run(lib, "Conv2D SAME (as shipped)", fn, vjp, (xc, wc, bc), False, "d_in is built in a float32 buffer: a float32 gradient for float64 inputs")

    def as64(vjp):
        return lambda *a: tuple(g.astype(np.float64) for g in vjp(*a))

    run(lib, "Conv2D SAME (d_in cast back to float64, rtol 1e-5)", fn, as64(vjp), (xc, wc, bc), True, "math right; float32 accumulation", rtol=1e-5)
    fn, vjp = tn_layer(lambda: T.Conv2D((2, 2, 2, 2), stride=(2, 2), padding="VALID"), ("w", "b"))
    run(lib, "Conv2D VALID stride 2 (d_in cast to float64, rtol 1e-5)", fn, as64(vjp), (xc, wc, bc), True, "", rtol=1e-5)
    fn, vjp = tn_layer(lambda: T.ConvTranspose2D((2, 2, 2, 2), stride=(2, 2), padding="SAME"), ("w", "b"))
    run(lib, "ConvTranspose2D SAME stride 2 (cast, rtol 1e-5)", fn, as64(vjp), (r.standard_normal((1, 2, 2, 2)), wc, bc), True, "", rtol=1e-5)

    fn, vjp = tn_layer(lambda: T.MaxPool2D((2, 2)), ())
    run(lib, "MaxPool2D 2x2 (as shipped)", fn, vjp, (xc,), False,
        "routing to the argmax is right, but d_in is a float32 buffer: a float32 gradient for float64 inputs"
        " (the forward also returns float32)")
    xc32 = xc.astype(np.float32)
    run(lib, "MaxPool2D 2x2 (float32 inputs)", fn, vjp, (xc32,), True, "the library's own dtype")

    fn, vjp = tn_layer(lambda: T.RNN(3), ("W", "b"))
    run(lib, "RNN (3 steps, float32 buffers, float32 inputs)", fn, vjp,
        (r.standard_normal((2, 3, 2)).astype(np.float32), r.standard_normal((3, 5)).astype(np.float32), r.standard_normal(3).astype(np.float32)), True,
        "h/a buffers are float32 (empty()); checked in float32 as the library intends")

    def bn_setup(layer):
        layer.nt_params = {"r_mean": None, "r_var": None}

    fn, vjp = tn_layer(T.BatchNormalization, ("gamma", "beta"), bn_setup)
    run(lib, "BatchNormalization", fn, vjp, (r.standard_normal((5, 3)), r.uniform(0.5, 1.5, 3), r.standard_normal(3)), True)

    fn, vjp = tn_layer(lambda: T.Reshape(6), ())
    run(lib, "Reshape", fn, vjp, (r.standard_normal((2, 2, 3)),), True)
    fn, vjp = tn_layer(T.Flatten, ())
    run(lib, "Flatten", fn, vjp, (r.standard_normal((2, 2, 3)),), True)

    def dropout_fn(x):
        np.random.seed(7)
        return T.Dropout(0.6).forward(x)

    def dropout_vjp(v, x):
        np.random.seed(7)
        layer = T.Dropout(0.6)
        layer.forward(x)
        return (layer.backward(v),)

    run(lib, "Dropout (global seed reset per call)", dropout_fn, dropout_vjp, (x,), True)

    xa = np.append(r.standard_normal(10) * 2, [0.0, -0.0])
    for name, make, ok, note in (
        ("Sigmoid", T.Sigmoid, True, ""),
        ("Softplus", T.Softplus, True, ""),
        ("Tanh", T.Tanh, True, ""),
        ("ReLU (incl. 0)", T.ReLU, True, "derivative is a bool array"),
        ("LeakyReLU(0.2) (incl. 0)", lambda: T.LeakyReLU(0.2), True, ""),
        ("GELU (sigmoid approx.)", T.GELU, True, "derivative of x*sigmoid(1.702x); uses the cache of the last forward"),
        ("ELU", T.ELU, False, "derivative `x > 0.0 + (x < 0.0) * a * exp(x)` parses as x > (...): 0 for x < 0 instead of a*exp(x)"),
    ):
        fn, vjp = tn_layer(make, ())
        run(lib, f"act {name}", fn, vjp, (xa,), ok, note)

    # losses: d/d predictions
    p = r.standard_normal((3, 4))
    t = r.standard_normal((3, 4))
    onehot = np.eye(4)[[1, 0, 3]]
    for name, loss, tgt, ok, note in (
        ("MSE", TL.MSE(), t, True, ""),
        ("MAE", TL.MAE(), t, True, ""),
        ("Huber(1.0)", TL.Huber(1.0), t, True, ""),
        ("SoftmaxCrossEntropy", TL.SoftmaxCrossEntropy(), onehot, True, ""),
        ("SoftmaxCrossEntropy(T=2)", TL.SoftmaxCrossEntropy(T=2.0), onehot, False, "loss uses log_softmax(x / T) but grad omits the 1/T factor"),
        ("SoftmaxCrossEntropy(weights)", TL.SoftmaxCrossEntropy(weights=[1.0, 2.0, 0.5, 3.0]), onehot, False,
         "loss weights each row by weights[label]; grad multiplies column j by weights[j]"),
        ("SigmoidCrossEntropy", TL.SigmoidCrossEntropy(), (r.uniform(size=(3, 4)) > 0.5).astype(float), True, ""),
        ("SigmoidCrossEntropy(weights=[0.5, 2])", TL.SigmoidCrossEntropy(weights=[0.5, 2.0]), (r.uniform(size=(3, 4)) > 0.5).astype(float), True, "derived by hand: matches"),
    ):
        run(lib, f"loss {name}", lambda p, y, l=loss: scalar(l.loss(p, y)), lambda v, p, y, l=loss: (v * l.grad(p, y), None), (p, tgt), ok, note, wrt=(0,))
    # Huber and MAE exactly at their switch points
    run(lib, "loss Huber(1.0) at |err| = delta and err = 0", lambda p, y: scalar(TL.Huber(1.0).loss(p, y)),
        lambda v, p, y: (v * TL.Huber(1.0).grad(p, y), None), (np.array([[1.0, -1.0, 0.0, 0.5]]), np.zeros((1, 4))), True, "C1 at delta", wrt=(0,))
    run(lib, "loss MAE at err = 0", lambda p, y: scalar(TL.MAE().loss(p, y)),
        lambda v, p, y: (v * TL.MAE().grad(p, y), None), (np.array([[0.0, -1.0, 0.3]]), np.zeros((1, 3))), True, "sign(0) = 0 is a subgradient", wrt=(0,))


# -- DeZero -----------------------------------------------------------------------------


def dz(f, n_in=None):
    """fn/vjp for a DeZero function of Variables; integer inputs are passed as plain arrays."""
    from dezero import Variable

    def wrap(xs):
        return [Variable(x) if x.dtype.kind in "fO" else x for x in xs]

    def fn(*xs):
        return f(*wrap(xs)).data

    def vjp(v, *xs):
        vs = wrap(xs)
        y = f(*vs)
        y.grad = Variable(v)
        y.backward()
        out = []
        for x, var in zip(xs, vs):
            if not isinstance(var, Variable):
                out.append(None)
            elif var.grad is None:
                out.append(np.zeros_like(x))
            else:
                out.append(var.grad.data)
        return tuple(out)

    return fn, vjp


def import_dezero():
    """DeZero 0.0.13 imports matplotlib (undeclared) and uses np.int (removed in NumPy 1.24)."""
    import types

    if not hasattr(np, "int"):
        np.int = int  # noqa: NPY001 - the shim a user of DeZero on NumPy 2 needs
    try:
        import matplotlib.pyplot  # noqa: F401
    except ImportError:
        mpl = types.ModuleType("matplotlib")
        mpl.pyplot = types.ModuleType("matplotlib.pyplot")
        sys.modules.update({"matplotlib": mpl, "matplotlib.pyplot": mpl.pyplot})
    import dezero

    return dezero


def check_dezero():
    dezero = import_dezero()
    import dezero.functions as F

    lib = "dezero"
    r = rng(4)
    x = r.standard_normal((3, 4))
    pos = r.uniform(0.3, 3.0, (3, 4))
    for name, f, inp in (
        ("sin", F.sin, x),
        ("cos", F.cos, x),
        ("tanh", F.tanh, x),
        ("exp", F.exp, x),
        ("log", F.log, pos),
        ("sigmoid", F.sigmoid, x * 3),
        ("relu (incl. 0)", F.relu, np.append(x.ravel(), 0.0)),
        ("leaky_relu (incl. 0)", F.leaky_relu, np.append(x.ravel(), 0.0)),
        ("softmax(axis=1)", F.softmax, x),
        ("log_softmax(axis=1)", F.log_softmax, x),
        ("pow 3 (x ** 3)", lambda a: a**3, x),
        ("reshape", lambda a: F.reshape(a, (2, 6)), x),
        ("transpose()", F.transpose, x),
        ("flatten", F.flatten, r.standard_normal((2, 2, 3))),
        ("transpose(axes=(1, 2, 0))", lambda a: F.transpose(a, (1, 2, 0)), r.standard_normal((2, 3, 2))),
        ("sum()", F.sum, x),
        ("sum(axis=0, keepdims=True)", lambda a: F.sum(a, axis=0, keepdims=True), x),
        ("sum(axis=1)", lambda a: F.sum(a, axis=1), x),
        ("broadcast_to", lambda a: F.broadcast_to(a, (3, 2, 4)), r.standard_normal((2, 1))),
        ("sum_to", lambda a: F.sum_to(a, (1, 4)), x),
        ("get_item fancy (repeated index)", lambda a: a[np.array([0, 2, 0])], x),
        ("get_item slice", lambda a: a[1:, ::2], x),
        ("max(axis=1)", lambda a: F.max(a, axis=1), x),
        ("min(axis=0)", lambda a: F.min(a, axis=0), x),
        ("max()", F.max, x),
        ("clip(-0.5, 0.5)", lambda a: F.clip(a, -0.5, 0.5), np.append(x.ravel(), [0.5, -0.5])),
        ("expand_dims", lambda a: F.expand_dims(a, 1), x),
    ):
        fn, vjp = dz(f)
        run(lib, name, fn, vjp, (inp,), True)

    fn, vjp = dz(lambda a: F.sum(a, axis=(0, 2)))
    run(lib, "sum(axis=(0, 2)) [tuple axis]", fn, vjp, (r.standard_normal((2, 3, 2)),), False,
        "reshape_sum_backward tests hasattr(axis, 'len') (not '__len__'): a tuple axis is wrapped again and backward raises")
    fn, vjp = dz(lambda a: F.max(a, axis=-1))
    run(lib, "max(axis=-1) [negative axis]", fn, vjp, (x,), False,
        "max_backward_shape does not normalize -1: backward tries to reshape gy (3,) to (3, 4) and raises")
    xt = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [0.0, -1.0, 5.0]])
    fn, vjp = dz(lambda a: F.max(a, axis=1))
    run(lib, "max(axis=1) with ties", fn, vjp, (xt,), False,
        "every tied maximum gets the whole cotangent (row [2,2,2] gets v*[1,1,1]): not a subgradient of max, "
        "whose subgradients sum to 1; the directional derivative along (1,1,1) is v, the VJP claims 3v")

    # binary ops with broadcasting, matmul, linear
    y = r.standard_normal((3, 4))
    b = r.standard_normal(4)
    for name, f, inp in (
        ("add broadcast (3,4)+(4,)", lambda a, c: a + c, (x, b)),
        ("mul broadcast (3,4)*(4,)", lambda a, c: a * c, (x, b)),
        ("sub broadcast (3,4)-(4,)", lambda a, c: a - c, (x, b)),
        ("div broadcast (3,4)/(4,)", lambda a, c: a / c, (x, r.uniform(0.5, 2.0, 4))),
        ("div same shape", lambda a, c: a / c, (x, pos)),
        ("matmul", F.matmul, (x, r.standard_normal((4, 2)))),
        ("linear", F.linear, (x, r.standard_normal((4, 2)), r.standard_normal(2))),
        ("linear_simple", F.linear_simple, (x, r.standard_normal((4, 2)), r.standard_normal(2))),
        ("mean_squared_error", F.mean_squared_error, (x, y)),
        ("sigmoid_cross_entropy", F.sigmoid_cross_entropy, None),
    ):
        if inp is None:
            continue
        fn, vjp = dz(f)
        run(lib, name, fn, vjp, inp, True)

    labels = np.array([1, 0, 3])
    fn, vjp = dz(F.softmax_cross_entropy)
    run(lib, "softmax_cross_entropy", fn, vjp, (x, labels), True, wrt=(0,))
    fn, vjp = dz(F.softmax_cross_entropy_simple)
    run(lib, "softmax_cross_entropy_simple", fn, vjp, (x, labels), True, wrt=(0,))
    fn, vjp = dz(F.sigmoid_cross_entropy)
    run(lib, "sigmoid_cross_entropy (wrt logits)", fn, vjp, (x, (r.uniform(size=(3, 4)) > 0.5).astype(np.int64)), True, wrt=(0,))
    fn, vjp = dz(F.binary_cross_entropy)
    run(lib, "binary_cross_entropy (wrt p)", fn, vjp, (r.uniform(0.05, 0.95, (3, 4)), (r.uniform(size=(3, 4)) > 0.5).astype(np.int64)), True, wrt=(0,))

    def bn(a, g, be):
        return F.batch_nrom(a, g, be, np.zeros(3), np.ones(3))

    fn, vjp = dz(bn)
    run(lib, "batch_nrom (BatchNorm, 2-D)", fn, vjp, (r.standard_normal((5, 3)), r.uniform(0.5, 1.5, 3), r.standard_normal(3)), True)
    fn, vjp = dz(lambda a, g, be: F.batch_nrom(a, g, be, np.zeros(2), np.ones(2)))
    run(lib, "batch_nrom (BatchNorm, 4-D NCHW)", fn, vjp, (r.standard_normal((2, 2, 2, 2)), r.uniform(0.5, 1.5, 2), r.standard_normal(2)), True)

    def drop(a):
        np.random.seed(11)
        return F.dropout(a, 0.4)

    fn, vjp = dz(drop)
    run(lib, "dropout (global seed reset per call)", fn, vjp, (x,), True)

    # convolutions and pooling (NCHW)
    xi = r.standard_normal((1, 2, 4, 4))
    W = r.standard_normal((2, 2, 2, 2))
    bb = r.standard_normal(2)
    for stride, pad in ((1, 0), (1, 1), (2, 1)):
        fn, vjp = dz(lambda a, w, c, s=stride, p=pad: F.conv2d(a, w, c, stride=s, pad=p))
        run(lib, f"conv2d (k=2, stride={stride}, pad={pad})", fn, vjp, (xi, W, bb), True)
    fn, vjp = dz(lambda a, w, c: F.conv2d_simple(a, w, c, stride=1, pad=1))
    run(lib, "conv2d_simple (k=2, stride=1, pad=1)", fn, vjp, (xi, W, bb), True)
    fn, vjp = dz(lambda a, w, c: F.deconv2d(a, w, c, stride=2, pad=0))
    run(lib, "deconv2d (k=2, stride=2)", fn, vjp, (r.standard_normal((1, 2, 2, 2)), W, bb), True)
    for stride in (1, 2):
        fn, vjp = dz(lambda a, s=stride: F.pooling(a, 2, stride=s))
        run(lib, f"pooling max (k=2, stride={stride})", fn, vjp, (xi,), True)
    fn, vjp = dz(lambda a: F.pooling_simple(a, 2, stride=2))
    run(lib, "pooling_simple max (k=2, stride=2)", fn, vjp, (xi,), True)
    fn, vjp = dz(lambda a: F.average_pooling(a, 2, stride=2))
    run(lib, "average_pooling (k=2, stride=2)", fn, vjp, (xi,), True)
    fn, vjp = dz(lambda a: F.average_pooling(a, (2, 1), stride=1))
    run(lib, "average_pooling (k=(2,1)) [non-square]", fn, vjp, (xi,), False,
        "backward unpacks pair(kernel) as KW, KH (swapped); non-square kernels make col2im index past the kernel axis")
    fn, vjp = dz(lambda a: F.im2col(a, 2, stride=1, pad=1))
    run(lib, "im2col (k=2, pad=1)", fn, vjp, (r.standard_normal((1, 1, 3, 3)),), True)
    fn, vjp = dz(lambda a: dezero.functions.embed_id(np.array([0, 2, 2]), a))
    run(lib, "embed_id (W[x], repeated id)", fn, vjp, (r.standard_normal((3, 2)),), True)


LIBS = {"numpy-ml": check_numpy_ml, "tinynn": check_tinynn, "dezero": check_dezero}


def summarize(records):
    cols = ("checks", "ok", "false_alarm", "inconclusive", "defects", "caught", "surfaced", "missed", "user_error", "crash", "gv_error")
    rows = {}
    for lib in [*LIBS, "all"]:
        recs = [r for r in records if lib == "all" or r["library"] == lib]
        if not recs:
            continue
        o = [r["outcome"] for r in recs]
        rows[lib] = dict(
            checks=len(recs),
            ok=o.count("ok"),
            false_alarm=o.count("false_alarm"),
            inconclusive=o.count("inconclusive"),
            defects=sum(not r["correct"] for r in recs),
            caught=o.count("caught"),
            surfaced=sum(r["outcome"] == "user_error" and not r["correct"] for r in recs),
            missed=o.count("missed"),
            user_error=o.count("user_error"),
            crash=o.count("crash"),
            gv_error=o.count("gradverify_error"),
        )
    print()
    print("library   " + " ".join(f"{c:>12s}" for c in cols))
    for lib, row in rows.items():
        print(f"{lib:9s} " + " ".join(f"{row[c]:12d}" for c in cols))
    print(
        "\n(defects: backward judged wrong; caught: blamed 'analytic'; surfaced: the defective backward raised and"
        " gradverify re-raised it as UserFunctionError; missed: neither; user_error: the library's own code raised"
        " inside fn/vjp; crash: gradverify itself raised; gv_error: another GradVerifyError)"
    )
    odd = [r for r in records if r["outcome"] not in ("ok", "caught")]
    if odd:
        print("\nnot ok / not caught:")
        for r in odd:
            detail = r.get("error") or (f"blame={r.get('blame')} structural={r.get('structural')} truth={r.get('truth')} " f"{r.get('truth_note', '')}")
            print(f"  [{r['outcome']}] {r['library']}: {r['op']}  (correct={r['correct']})\n      {detail[:400]}")
    return rows


def main(argv=None):
    global VERBOSE
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", metavar="OUT", help="write every record (with its report) to OUT")
    ap.add_argument("--only", choices=list(LIBS), action="append", help="run only this library (repeatable)")
    ap.add_argument("--verbose", action="store_true", help="print the report of every check that is not ok/caught")
    args = ap.parse_args(argv)
    VERBOSE = args.verbose
    np.seterr(all="ignore")
    print(f"gradverify {gradverify.__version__} from {gradverify.__file__}, numpy {np.__version__}, python {sys.version.split()[0]}")
    print(f"{'library':9s} {'op':52s} {'pass':5s} {'blame':9s} {'truth':11s} {'max err':9s}")
    t0 = time.perf_counter()
    for lib in args.only or LIBS:
        try:
            LIBS[lib]()
        except ImportError as e:
            print(f"{lib}: not importable ({e}); skipped")
    rows = summarize(RECORDS)
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": rows, "records": RECORDS}, f, indent=1, default=str)
        print(f"records written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
