"""Forward oracles: ``name(ctx, *arrays, **params) -> array``, arrays of mpmath numbers.

Arrays are NumPy object arrays used only as containers: every number is an ``ctx.mpf`` and all
arithmetic is mpmath's, one element at a time. Each function takes the mpmath context first
and works at that context's precision.
"""

import numpy as np


def _map(f, x):
    return np.vectorize(f, otypes=[object])(x)


def _rows(x):
    """``x`` as a list of rows (the last axis), and a function putting rows back in shape."""
    flat = x.reshape(-1, x.shape[-1])
    return [list(r) for r in flat], lambda rows: np.array(rows, dtype=object).reshape(x.shape)


def linear(ctx, x, w, b):
    n, d = x.shape
    m = w.shape[1]
    out = np.empty((n, m), dtype=object)
    for i in range(n):
        for j in range(m):
            out[i, j] = ctx.fsum(x[i, k] * w[k, j] for k in range(d)) + b[j]
    return out


def sigmoid(ctx, x):
    return _map(lambda t: 1 / (1 + ctx.exp(-t)), x)


def tanh(ctx, x):
    return _map(ctx.tanh, x)


def relu(ctx, x):
    return _map(lambda t: t if t > 0 else ctx.zero, x)


def leaky_relu(ctx, x, slope=0.01):
    return _map(lambda t: t if t > 0 else ctx.mpf(slope) * t, x)


def softmax(ctx, x, axis=-1):
    rows, back = _rows(x)
    out = []
    for r in rows:
        e = [ctx.exp(t) for t in r]
        total = ctx.fsum(e)
        out.append([t / total for t in e])
    return back(out)


def log_softmax(ctx, x, axis=-1):
    rows, back = _rows(x)
    return back([[t - ctx.log(ctx.fsum(ctx.exp(u) for u in r)) for t in r] for r in rows])


def _reduce(ctx, values, reduction):
    values = list(values)
    if reduction == "mean":
        return np.array(ctx.fsum(values) / len(values), dtype=object)
    if reduction == "sum":
        return np.array(ctx.fsum(values), dtype=object)
    return np.array(values, dtype=object)


def softmax_cross_entropy(ctx, logits, labels, reduction="mean"):
    logp = log_softmax(ctx, logits)
    return _reduce(ctx, (-logp[i, int(labels[i])] for i in range(logits.shape[0])), reduction)


def mse(ctx, pred, target, reduction="mean"):
    sq = [(p - t) ** 2 for p, t in zip(pred.reshape(-1), target.reshape(-1))]
    if reduction == "none":
        return np.array(sq, dtype=object).reshape(pred.shape)
    return _reduce(ctx, sq, reduction)


def l1(ctx, pred, target, reduction="mean"):
    ab = [abs(p - t) for p, t in zip(pred.reshape(-1), target.reshape(-1))]
    if reduction == "none":
        return np.array(ab, dtype=object).reshape(pred.shape)
    return _reduce(ctx, ab, reduction)
