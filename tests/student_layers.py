"""Course-style ``layers.py`` code, written the way a cs231n-type student writes it, as gradverify cases.

Plain NumPy only (no array-API namespace), with the habits such code has: scratch buffers
(``out = np.zeros(shape); out[i] = ...``), defensive casts (``np.array(w, dtype=np.float64)``,
``x.astype(float)``), in-place ``+=``, ``np.maximum(x, 0.0)``, loops over ``np.ndindex``, naive
loops for the SVM and softmax losses, convolution and max pooling. Every layer is a pair
``forward(...) -> (out, cache)`` / ``backward(dout, cache) -> grads``, wrapped into a
:class:`cases.Case` (``fn``/``vjp``) at the bottom.

Two lists:

- ``STUDENT_CORRECT``: correct gradients. Each must pass, or fail honestly as inconclusive
  (``blame="numerical"``); it must never be blamed (``blame="analytic"``).
- ``STUDENT_BUGS``: deliberate, realistic mistakes. Each must fail with ``blame="analytic"``.

Inputs are small (a few dozen elements) so that each check takes well under a second.
Not wired into ``test_suites.py`` (the lead does that); run with NumPy inputs only.

Status as of my run (NumPy 2.4.6, seed 7, default options, NumPy inputs):

- gradverify at d3861e6: all 21 ``STUDENT_CORRECT`` cases pass (5 of them without a truth:
  their forward writes into ``np.zeros`` buffers so the output is a float array, which
  gradverify detects and reports as "truth: off (unavailable ...)"), and all 16
  ``STUDENT_BUGS`` are caught with ``blame="analytic"``.
- gradverify at be59cf7 blamed three correct cases (false alarms, truth 0 for the cast
  input): "affine: x.astype(float) in the forward (student cast)", "affine: x copied into a
  np.zeros scratch buffer" and "affine: np.array(w, dtype=np.float64) casts of w and b".
  One input passes through a float cast or buffer while another keeps the output an object
  array, so the truth saw that input quantized to float64 and returned a derivative of 0,
  overruling finite differences that agreed with the analytic gradient to ~1e-11.
  ``STUDENT_KNOWN_FALSE_ALARMS`` lists the cases that fail at the current commit (none).
"""

import numpy as np

from cases import Case

# -- the student's layers.py --------------------------------------------------------------


def affine_forward(x, w, b):
    N = x.shape[0]
    x_row = x.reshape(N, -1)
    out = x_row.dot(w) + b
    cache = (x, w, b)
    return out, cache


def affine_backward(dout, cache):
    x, w, b = cache
    N = x.shape[0]
    dx = dout.dot(w.T).reshape(x.shape)
    dw = x.reshape(N, -1).T.dot(dout)
    db = np.sum(dout, axis=0)
    return dx, dw, db


def affine_forward_cast(x, w, b):
    x = x.astype(float)  # "make sure it's float"
    out = x.reshape(x.shape[0], -1).dot(w) + b
    return out, (x, w, b)


def affine_forward_buffer(x, w, b):
    N, D = x.shape
    x_flat = np.zeros((N, D))
    for i in range(N):
        x_flat[i] = x[i]  # copy row by row into a scratch buffer
    out = x_flat.dot(w) + b
    return out, (x, w, b)


def affine_forward_wcast(x, w, b):
    w = np.array(w, dtype=np.float64)
    b = np.array(b, dtype=np.float64)
    out = x.dot(w) + b
    return out, (x, w, b)


def relu_forward(x):
    out = np.maximum(x, 0.0)
    return out, x


def relu_backward(dout, cache):
    x = cache
    dx = dout.copy()
    dx[x <= 0] = 0
    return (dx,)


def relu_forward_loops(x):
    out = np.zeros(x.shape)
    for idx in np.ndindex(x.shape):
        out[idx] = x[idx] if x[idx] > 0 else 0.0
    return out, x


def relu_backward_loops(dout, cache):
    x = cache
    dx = np.zeros(x.shape)
    for idx in np.ndindex(x.shape):
        if x[idx] > 0:
            dx[idx] += dout[idx]
    return (dx,)


def relu6_forward(x):
    out = np.minimum(np.maximum(x, 0.0), 6.0)
    return out, (x, out)


def relu6_backward(dout, cache):
    x, out = cache
    dx = dout * ((x > 0) & (x < 6))
    return (dx,)


def relu6_backward_bug(dout, cache):
    x, out = cache
    dx = dout * (out > 0)  # BUG: mask from the output misses the upper clip
    return (dx,)


def sigmoid_forward(x):
    out = 1.0 / (1.0 + np.exp(-x))
    return out, out


def sigmoid_backward(dout, cache):
    out = cache
    return (dout * out * (1 - out),)


def elu_forward(x, alpha=1.0):
    out = np.where(x > 0, x, alpha * (np.exp(x) - 1))
    return out, (x, out, alpha)


def elu_backward(dout, cache):
    x, out, alpha = cache
    dx = dout * np.where(x > 0, 1.0, out + alpha)
    return (dx,)


def clip_forward(x, lo=-1.0, hi=1.0):
    out = np.minimum(np.maximum(x, lo), hi)
    return out, (x, lo, hi)


def clip_backward(dout, cache):
    x, lo, hi = cache
    dx = dout.copy()
    dx[x < lo] = 0
    dx[x > hi] = 0
    return (dx,)


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    N = x.shape[0]
    mu = np.sum(x, axis=0) / N
    xc = x - mu
    var = np.sum(xc**2, axis=0) / N
    std = np.sqrt(var + eps)
    xhat = xc / std
    out = gamma * xhat + beta
    return out, (xhat, xc, std, gamma)


def batchnorm_backward(dout, cache):
    xhat, xc, std, gamma = cache
    N = dout.shape[0]
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * xhat, axis=0)
    dxhat = dout * gamma
    dvar = np.sum(dxhat * xc, axis=0) * -0.5 * std**-3
    dmu = np.sum(-dxhat / std, axis=0) + dvar * np.sum(-2.0 * xc, axis=0) / N
    dx = dxhat / std + dvar * 2.0 * xc / N + dmu / N
    return dx, dgamma, dbeta


def layernorm_forward(x, gamma, beta, eps=1e-5):
    mu = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    xhat = (x - mu) / np.sqrt(var + eps)
    return gamma * xhat + beta, (xhat, np.sqrt(var + eps), gamma)


def layernorm_backward(dout, cache, axis=1):
    xhat, std, gamma = cache
    D = dout.shape[1]
    dgamma = np.sum(dout * xhat, axis=0)
    dbeta = np.sum(dout, axis=0)
    dxhat = dout * gamma
    dx = (D * dxhat - np.sum(dxhat, axis=axis, keepdims=True) - xhat * np.sum(dxhat * xhat, axis=axis, keepdims=True)) / (D * std)
    return dx, dgamma, dbeta


def dropout_forward(x, p=0.6, seed=0):
    np.random.seed(seed)
    mask = (np.random.rand(*x.shape) < p) / p
    out = x * mask
    return out, mask


def dropout_backward(dout, cache):
    mask = cache
    return (dout * mask,)


def svm_loss_naive(W, X, y, reg):
    dW = np.zeros(W.shape)
    num_classes = W.shape[1]
    num_train = X.shape[0]
    loss = 0.0
    for i in range(num_train):
        scores = X[i].dot(W)
        correct_class_score = scores[y[i]]
        for j in range(num_classes):
            if j == y[i]:
                continue
            margin = scores[j] - correct_class_score + 1
            if margin > 0:
                loss += margin
                dW[:, j] += X[i]
                dW[:, y[i]] -= X[i]
    loss /= num_train
    dW /= num_train
    loss += reg * np.sum(W * W)
    dW += 2 * reg * W
    return loss, dW


def svm_loss_naive_overwrite(W, X, y, reg):
    dW = np.zeros(W.shape)
    num_train = X.shape[0]
    loss = 0.0
    for i in range(num_train):
        scores = X[i].dot(W)
        for j in range(W.shape[1]):
            if j == y[i]:
                continue
            margin = scores[j] - scores[y[i]] + 1
            if margin > 0:
                loss += margin
                dW[:, j] = X[i]  # BUG: = instead of +=
                dW[:, y[i]] -= X[i]
    loss /= num_train
    dW /= num_train
    loss += reg * np.sum(W * W)
    dW += 2 * reg * W
    return loss, dW


def svm_loss_vectorized(W, X, y, reg):
    N = X.shape[0]
    scores = X.dot(W)
    correct = scores[np.arange(N), y].reshape(-1, 1)
    margins = np.maximum(0, scores - correct + 1)
    margins[np.arange(N), y] = 0
    loss = np.sum(margins) / N + reg * np.sum(W * W)
    binary = (margins > 0).astype(float)
    binary[np.arange(N), y] = -np.sum(binary, axis=1)
    dW = X.T.dot(binary) / N + 2 * reg * W
    return loss, dW


def softmax_loss_naive(W, X, y, reg, forget_correct_class=False):
    loss = 0.0
    dW = np.zeros_like(W, dtype=float)
    num_train = X.shape[0]
    for i in range(num_train):
        scores = X[i].dot(W)
        scores -= np.max(scores)
        exp_scores = np.exp(scores)
        probs = exp_scores / np.sum(exp_scores)
        loss += -np.log(probs[y[i]])
        for j in range(W.shape[1]):
            dW[:, j] += probs[j] * X[i]
        if not forget_correct_class:
            dW[:, y[i]] -= X[i]
    loss /= num_train
    dW /= num_train
    loss += reg * np.sum(W * W)
    dW += 2 * reg * W
    return loss, dW


def softmax_loss_vectorized(W, X, y, reg, divide_dw=True):
    N = X.shape[0]
    scores = X.dot(W)
    scores -= scores.max(axis=1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=1, keepdims=True)
    loss = -np.sum(np.log(probs[np.arange(N), y])) / N + reg * np.sum(W * W)
    dscores = probs.copy()
    dscores[np.arange(N), y] -= 1
    dW = X.T.dot(dscores)
    if divide_dw:
        dW /= N
    dW += 2 * reg * W
    return loss, dW


def conv_forward_naive(x, w, b, stride=1, pad=1):
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    Hout = 1 + (H + 2 * pad - HH) // stride
    Wout = 1 + (W + 2 * pad - WW) // stride
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="constant")
    out = np.zeros((N, F, Hout, Wout))
    for n in range(N):
        for f in range(F):
            for i in range(Hout):
                for j in range(Wout):
                    hs, ws = i * stride, j * stride
                    out[n, f, i, j] = np.sum(x_pad[n, :, hs : hs + HH, ws : ws + WW] * w[f]) + b[f]
    return out, (x, w, b, stride, pad)


def conv_backward_naive(dout, cache, overwrite=False):
    x, w, b, stride, pad = cache
    N, F, Hout, Wout = dout.shape
    _, _, HH, WW = w.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="constant")
    dx_pad = np.zeros(x_pad.shape)
    dw = np.zeros(w.shape)
    db = np.zeros(b.shape)
    for n in range(N):
        for f in range(F):
            db[f] += np.sum(dout[n, f])
            for i in range(Hout):
                for j in range(Wout):
                    hs, ws = i * stride, j * stride
                    dw[f] += x_pad[n, :, hs : hs + HH, ws : ws + WW] * dout[n, f, i, j]
                    if overwrite:  # BUG: = instead of += for overlapping windows
                        dx_pad[n, :, hs : hs + HH, ws : ws + WW] = w[f] * dout[n, f, i, j]
                    else:
                        dx_pad[n, :, hs : hs + HH, ws : ws + WW] += w[f] * dout[n, f, i, j]
    dx = dx_pad[:, :, pad:-pad, pad:-pad] if pad > 0 else dx_pad
    return dx, dw, db


def max_pool_forward_naive(x, ph=2, pw=2, stride=2):
    N, C, H, W = x.shape
    Hout = 1 + (H - ph) // stride
    Wout = 1 + (W - pw) // stride
    out = np.zeros((N, C, Hout, Wout))
    for n, c, i, j in np.ndindex(N, C, Hout, Wout):
        out[n, c, i, j] = np.max(x[n, c, i * stride : i * stride + ph, j * stride : j * stride + pw])
    return out, (x, ph, pw, stride)


def max_pool_backward_naive(dout, cache, forget_offset=False):
    x, ph, pw, stride = cache
    N, C, Hout, Wout = dout.shape
    dx = np.zeros(x.shape)
    for n, c, i, j in np.ndindex(N, C, Hout, Wout):
        hs, ws = i * stride, j * stride
        window = x[n, c, hs : hs + ph, ws : ws + pw]
        h, w = np.unravel_index(np.argmax(window), window.shape)
        if forget_offset:  # BUG: index of the max inside the window, used as an index into x
            dx[n, c, h, w] += dout[n, c, i, j]
        else:
            dx[n, c, hs + h, ws + w] += dout[n, c, i, j]
    return (dx,)


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    next_h = np.tanh(x.dot(Wx) + prev_h.dot(Wh) + b)
    return next_h, (x, prev_h, Wx, Wh, next_h)


def rnn_step_backward(dnext_h, cache, bug=False):
    x, prev_h, Wx, Wh, next_h = cache
    dtanh = dnext_h * ((1 - next_h) if bug else (1 - next_h**2))
    dx = dtanh.dot(Wx.T)
    dprev_h = dtanh.dot(Wh.T)
    dWx = x.T.dot(dtanh)
    dWh = prev_h.T.dot(dtanh)
    db = np.sum(dtanh, axis=0)
    return dx, dprev_h, dWx, dWh, db


# -- wrapping the layers as cases -------------------------------------------------------


def _layer(forward, backward, **kw):
    """fn/vjp from a forward(*inputs) -> (out, cache) and backward(dout, cache) -> grads pair."""

    def fn(*xs):
        return forward(*xs, **kw)[0]

    def vjp(v, *xs):
        return tuple(backward(v, forward(*xs, **kw)[1]))

    return fn, vjp


def _loss(loss_fn, reg=0.05, **kw):
    """fn/vjp of a (W, X, y) loss whose gradient is wrt W only."""

    def fn(W, X, y):
        return np.asarray(loss_fn(W, X, y, reg, **kw)[0])

    def vjp(v, W, X, y):
        return v * loss_fn(W, X, y, reg, **kw)[1], None, None

    return fn, vjp


def _case(name, pair, inputs, expect="analytic", **options):
    fn, vjp = pair
    return Case(name, fn, vjp, inputs, expect=expect, options=options)


def _affine_inputs(n=3, d=4, m=3):
    return lambda rng: (rng.standard_normal((n, d)), rng.standard_normal((d, m)), rng.standard_normal(m))


def _loss_inputs(rng, n=4, d=3, c=3):
    return rng.standard_normal((d, c)), rng.standard_normal((n, d)), rng.integers(0, c, size=n)


def _bn_inputs(rng):
    return rng.standard_normal((5, 3)), rng.uniform(0.5, 1.5, 3), rng.standard_normal(3)


def _conv_inputs(rng):
    return rng.standard_normal((1, 1, 3, 3)), rng.standard_normal((2, 1, 2, 2)), rng.standard_normal(2)


def _rnn_inputs(rng):
    return (rng.standard_normal((2, 3)), rng.standard_normal((2, 2)), rng.standard_normal((3, 2)), rng.standard_normal((2, 2)), rng.standard_normal(2))


def _with_kinks(rng):
    return (np.concatenate([rng.standard_normal(8) * 3, [0.0, 7.0, -1.0, 1.0]]),)


STUDENT_CORRECT = [
    _case("affine: reshape, dot and np.sum", _layer(affine_forward, affine_backward), lambda rng: (rng.standard_normal((2, 2, 3)), rng.standard_normal((6, 3)), rng.standard_normal(3))),
    _case("affine: x.astype(float) in the forward (student cast)", _layer(affine_forward_cast, affine_backward), _affine_inputs()),
    _case("affine: x copied into a np.zeros scratch buffer", _layer(affine_forward_buffer, affine_backward), _affine_inputs()),
    _case("affine: np.array(w, dtype=np.float64) casts of w and b", _layer(affine_forward_wcast, affine_backward), _affine_inputs()),
    _case("ReLU: np.maximum(x, 0.0), dx[x <= 0] = 0", _layer(relu_forward, relu_backward), lambda rng: (np.concatenate([rng.standard_normal(10), [0.0, -0.0]]),)),
    _case("ReLU: loops over np.ndindex into np.zeros buffers, +=", _layer(relu_forward_loops, relu_backward_loops), lambda rng: (rng.standard_normal((3, 4)),)),
    _case("ReLU6: mask from the input", _layer(relu6_forward, relu6_backward), _with_kinks),
    _case("sigmoid: derivative from the cached output", _layer(sigmoid_forward, sigmoid_backward), lambda rng: (rng.standard_normal((3, 4)) * 3,)),
    _case("ELU: out + alpha for x < 0", _layer(elu_forward, elu_backward), lambda rng: (rng.standard_normal(12) * 2,)),
    _case("clip to [-1, 1]: dx zeroed outside", _layer(clip_forward, clip_backward), _with_kinks),
    _case("batchnorm (train): the staged backward", _layer(batchnorm_forward, batchnorm_backward), _bn_inputs),
    _case("layernorm: the compact backward", _layer(layernorm_forward, layernorm_backward), lambda rng: (rng.standard_normal((3, 5)), rng.uniform(0.5, 1.5, 5), rng.standard_normal(5))),
    _case("dropout: np.random.seed(seed) in the forward, inverted mask", _layer(dropout_forward, dropout_backward), lambda rng: (rng.standard_normal((3, 4)),)),
    _case("SVM loss: naive loops", _loss(svm_loss_naive), _loss_inputs, wrt=(0,)),
    _case("SVM loss: vectorized", _loss(svm_loss_vectorized), _loss_inputs, wrt=(0,)),
    _case("softmax loss: naive loops, scores -= max", _loss(softmax_loss_naive), _loss_inputs, wrt=(0,)),
    _case("softmax loss: vectorized", _loss(softmax_loss_vectorized), _loss_inputs, wrt=(0,)),
    _case("conv: naive forward/backward, stride 1, pad 1", _layer(conv_forward_naive, conv_backward_naive), _conv_inputs),
    _case("conv: naive, stride 2, pad 1", _layer(conv_forward_naive, conv_backward_naive, stride=2), lambda rng: (rng.standard_normal((1, 1, 4, 4)), rng.standard_normal((2, 1, 2, 2)), rng.standard_normal(2))),
    _case("max pool: naive 2x2 stride 2, argmax routing", _layer(max_pool_forward_naive, max_pool_backward_naive), lambda rng: (rng.standard_normal((1, 2, 4, 4)),)),
    _case("RNN step: tanh(x Wx + h Wh + b)", _layer(rnn_step_forward, rnn_step_backward), _rnn_inputs),
]

# Correct cases that gradverify blames at the current commit (see the module docstring).
STUDENT_KNOWN_FALSE_ALARMS = []


def _bug(name, forward, backward, inputs, **options):
    return _case(name, (lambda *xs: forward(*xs)[0], lambda v, *xs: tuple(backward(v, forward(*xs)[1]))), inputs, **options)


def _affine_missing_transpose(dout, cache):
    x, w, b = cache
    return dout.dot(w).reshape(x.shape), x.T.dot(dout), np.sum(dout, axis=0)


def _affine_db_wrong_axis(dout, cache):
    x, w, b = cache
    return dout.dot(w.T), x.T.dot(dout), np.sum(dout, axis=1)


def _sigmoid_forward_caching_x(x):
    return 1.0 / (1.0 + np.exp(-x)), x  # BUG (with sigmoid_backward): caches x, the backward reads it as out


def _elu_forgot_alpha(dout, cache):
    x, out, alpha = cache
    return (dout * np.where(x > 0, 1.0, out),)  # BUG: out instead of out + alpha


def _clip_no_mask(dout, cache):
    return (dout.copy(),)


def _batchnorm_unbiased(dout, cache):
    xhat, xc, std, gamma = cache
    N = dout.shape[0]
    dxhat = dout * gamma
    dvar = np.sum(dxhat * xc, axis=0) * -0.5 * std**-3
    dmu = np.sum(-dxhat / std, axis=0)
    dx = dxhat / std + dvar * 2.0 * xc / (N - 1) + dmu / N  # BUG: N - 1, the forward used N
    return dx, np.sum(dout * xhat, axis=0), np.sum(dout, axis=0)


def _layernorm_batch_axis(dout, cache):
    return layernorm_backward(dout, cache, axis=0)  # BUG: sums over the batch, not the features


def _dropout_no_scale(dout, cache):
    mask = cache
    return (dout * (mask > 0),)  # BUG: forgot the 1/p of inverted dropout


def _reg_missing_two(W, X, y, reg):
    loss, dW = softmax_loss_vectorized(W, X, y, reg)
    return loss, dW - reg * W  # BUG: reg * W instead of 2 * reg * W


STUDENT_BUGS = [
    _bug("affine: missing transpose, dout.dot(w) (square w)", affine_forward, _affine_missing_transpose, _affine_inputs(3, 3, 3)),
    _bug("affine: db summed over axis 1 (N == M)", affine_forward, _affine_db_wrong_axis, _affine_inputs(3, 4, 3)),
    _bug("ReLU6: mask taken from the output (misses the clip at 6)", relu6_forward, relu6_backward_bug, _with_kinks),
    _bug("sigmoid: s(1 - s) applied to the cached input", _sigmoid_forward_caching_x, sigmoid_backward, lambda rng: (rng.standard_normal((3, 4)),)),
    _bug("ELU: out instead of out + alpha for x < 0", elu_forward, _elu_forgot_alpha, lambda rng: (rng.standard_normal(12) * 2,)),
    _bug("clip: gradient passed through outside the range", clip_forward, _clip_no_mask, _with_kinks),
    _bug("batchnorm: N - 1 in the variance backward", batchnorm_forward, _batchnorm_unbiased, _bn_inputs),
    _bug("layernorm: reductions over the batch axis", layernorm_forward, _layernorm_batch_axis, lambda rng: (rng.standard_normal((3, 5)), rng.uniform(0.5, 1.5, 5), rng.standard_normal(5))),
    _bug("dropout: backward forgets the 1/p", dropout_forward, _dropout_no_scale, lambda rng: (rng.standard_normal((3, 4)),)),
    _case("SVM loss: dW[:, j] = X[i] instead of +=", _loss(svm_loss_naive_overwrite), lambda rng: _loss_inputs(rng, n=5), wrt=(0,)),
    _case("softmax loss: forgot to subtract X[i] for the correct class", _loss(softmax_loss_naive, forget_correct_class=True), _loss_inputs, wrt=(0,)),
    _case("softmax loss: forgot the 1/N in dW", _loss(softmax_loss_vectorized, divide_dw=False), _loss_inputs, wrt=(0,)),
    _case("softmax loss: regularization gradient reg * W (not 2 reg W)", _loss(_reg_missing_two), _loss_inputs, wrt=(0,)),
    _case("conv: dx_pad window assigned with = (overlapping windows)", _layer(conv_forward_naive, lambda d, c: conv_backward_naive(d, c, overwrite=True)), _conv_inputs),
    _case("max pool: argmax index used without the window offset", _layer(max_pool_forward_naive, lambda d, c: max_pool_backward_naive(d, c, forget_offset=True)), lambda rng: (rng.standard_normal((1, 1, 4, 4)),)),
    _case("RNN step: (1 - h) instead of (1 - h**2)", _layer(rnn_step_forward, lambda d, c: rnn_step_backward(d, c, bug=True)), _rnn_inputs),
]
