"""Layers: ``out, cache = *_forward(...)`` and ``grads = *_backward(dout, cache)``.

Each function takes its array namespace from its inputs (``array_namespace``), so the same
code runs on NumPy, CuPy and array-api-strict arrays.
"""

import os

from array_api_compat import array_namespace

# TWO_LAYER_BUG=1 brings back a classic bug: the gradient of the mean loss not divided by N.
FORGET_BATCH_MEAN = os.environ.get("TWO_LAYER_BUG") == "1"


def affine_forward(x, w, b):
    """``out = x @ w + b`` for a batch ``x`` (N, D), weights ``w`` (D, M) and bias ``b`` (M,)."""
    out = x @ w + b
    cache = (x, w)
    return out, cache


def affine_backward(dout, cache):
    """Gradients ``dx, dw, db`` of the affine layer, given the upstream ``dout`` (N, M)."""
    x, w = cache
    xp = array_namespace(dout)
    dx = dout @ w.T
    dw = x.T @ dout
    db = xp.sum(dout, axis=0)
    return dx, dw, db


def relu_forward(x):
    """``max(x, 0)`` elementwise."""
    xp = array_namespace(x)
    out = xp.where(x > 0, x, xp.zeros_like(x))
    return out, x


def relu_backward(dout, cache):
    """``dout`` where the input was positive, 0 elsewhere (the subgradient 0 at 0)."""
    x = cache
    xp = array_namespace(dout)
    return xp.where(x > 0, dout, xp.zeros_like(dout))


def softmax_loss(scores, y):
    """Mean cross-entropy of ``softmax(scores)`` (N, C) against integer labels ``y`` (N,).

    Returns the loss and its gradient with respect to the scores,
    ``(softmax(scores) - onehot(y)) / N``.
    """
    xp = array_namespace(scores)
    n, c = scores.shape
    shifted = scores - xp.max(scores, axis=1, keepdims=True)
    log_probs = shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))
    onehot = xp.astype(y[:, None] == xp.arange(c), scores.dtype)
    loss = -xp.sum(onehot * log_probs) / n
    dscores = xp.exp(log_probs) - onehot
    if not FORGET_BATCH_MEAN:
        dscores = dscores / n
    return loss, dscores
