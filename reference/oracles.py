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


# -- optimizers: one step, returned flat as concat([new_param] + [new state arrays]) ----------


def _step(ctx, arrays, rule):
    """Apply ``rule(*elements) -> (new_w, *new_states)`` element by element, flattened.

    The result is ``concat([new_w.reshape(-1)] + [new_state_j.reshape(-1) for j])``, the
    layout of the catalog's optimizer ops.
    """
    per_element = [rule(*vals) for vals in zip(*(a.reshape(-1) for a in arrays))]
    parts = len(per_element[0])
    return np.array([e[j] for j in range(parts) for e in per_element], dtype=object)


def sgd(ctx, param, grad, lr):
    lr = ctx.mpf(lr)
    return _step(ctx, (param, grad), lambda w, g: (w - lr * g,))


def momentum(ctx, param, grad, velocity, lr, momentum=0.9):
    lr, mu = ctx.mpf(lr), ctx.mpf(momentum)

    def rule(w, g, v):
        v_new = mu * v - lr * g
        return w + v_new, v_new

    return _step(ctx, (param, grad, velocity), rule)


def nesterov(ctx, param, grad, velocity, lr, momentum=0.9):
    """Look-ahead form: ``v' = mu v - lr g``, ``w' = w + mu v' - lr g``."""
    lr, mu = ctx.mpf(lr), ctx.mpf(momentum)

    def rule(w, g, v):
        v_new = mu * v - lr * g
        return w + mu * v_new - lr * g, v_new

    return _step(ctx, (param, grad, velocity), rule)


def adagrad(ctx, param, grad, sum_sq, lr, eps=1e-8):
    """``r' = r + g^2``, ``w' = w - lr g / (sqrt(r') + eps)``."""
    lr, eps = ctx.mpf(lr), ctx.mpf(eps)

    def rule(w, g, r):
        r_new = r + g * g
        return w - lr * g / (ctx.sqrt(r_new) + eps), r_new

    return _step(ctx, (param, grad, sum_sq), rule)


def adagrad_rms(ctx, param, grad, mean_sq, lr, t, eps=1e-8):
    """``s' = (t s + g^2) / (t + 1)`` (``t`` previous steps), ``w' = w - lr g / (sqrt(s') + eps)``."""
    lr, eps, t = ctx.mpf(lr), ctx.mpf(eps), int(t)

    def rule(w, g, s):
        s_new = (t * s + g * g) / (t + 1)
        return w - lr * g / (ctx.sqrt(s_new) + eps), s_new

    return _step(ctx, (param, grad, mean_sq), rule)


def rmsprop(ctx, param, grad, mean_sq, lr, rho=0.9, eps=1e-8):
    """``s' = rho s + (1 - rho) g^2``, ``w' = w - lr g / (sqrt(s') + eps)``."""
    lr, rho, eps = ctx.mpf(lr), ctx.mpf(rho), ctx.mpf(eps)

    def rule(w, g, s):
        s_new = rho * s + (1 - rho) * g * g
        return w - lr * g / (ctx.sqrt(s_new) + eps), s_new

    return _step(ctx, (param, grad, mean_sq), rule)


def _adam_rule(ctx, lr, t, beta1, beta2, eps, bias_correction, weight_decay):
    """Adam's (AdamW's, with ``weight_decay``) per-element update ``(w, g, m, s) -> (w', m', s')``."""
    lr, b1, b2, eps, wd, t = ctx.mpf(lr), ctx.mpf(beta1), ctx.mpf(beta2), ctx.mpf(eps), ctx.mpf(weight_decay), int(t)
    c1 = 1 / (1 - b1**t) if bias_correction else ctx.one
    c2 = 1 / (1 - b2**t) if bias_correction else ctx.one

    def rule(w, g, m, s):
        m_new = b1 * m + (1 - b1) * g
        s_new = b2 * s + (1 - b2) * g * g
        m_hat, s_hat = c1 * m_new, c2 * s_new
        return w - lr * (m_hat / (ctx.sqrt(s_hat) + eps) + wd * w), m_new, s_new

    return rule


def adam(ctx, param, grad, m, s, lr, t, beta1=0.9, beta2=0.999, eps=1e-8, bias_correction=True):
    """``m' = b1 m + (1 - b1) g``, ``s' = b2 s + (1 - b2) g^2``, hats ``/(1 - b^t)`` if bias-corrected,
    ``w' = w - lr m_hat / (sqrt(s_hat) + eps)``."""
    rule = _adam_rule(ctx, lr, t, beta1, beta2, eps, bias_correction, 0)
    return _step(ctx, (param, grad, m, s), rule)


def sgd_weight_decay(ctx, param, grad, lr, weight_decay):
    """``w' = w - lr (g + weight_decay w)``."""
    lr, wd = ctx.mpf(lr), ctx.mpf(weight_decay)
    return _step(ctx, (param, grad), lambda w, g: (w - lr * (g + wd * w),))


def adamw(ctx, param, grad, m, s, lr, t, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, bias_correction=True):
    """Adam plus decoupled decay on the old ``w``: ``w' = w - lr (m_hat / (sqrt(s_hat) + eps) + weight_decay w)``."""
    rule = _adam_rule(ctx, lr, t, beta1, beta2, eps, bias_correction, weight_decay)
    return _step(ctx, (param, grad, m, s), rule)


# -- learning-rate schedules: elementwise in the float hyperparameters, integer steps ----------


def step_decay(ctx, alpha0, gamma, t, step_size):
    """``alpha0 * gamma ** floor(t / step_size)``; the exponent is an integer, never differentiated."""
    n = int(ctx.floor(ctx.mpf(t) / step_size))
    return np.vectorize(lambda a, g: a * g**n, otypes=[object])(alpha0, gamma)


def exponential_decay(ctx, alpha0, k, t):
    return np.vectorize(lambda a, kk: a * ctx.exp(-kk * t), otypes=[object])(alpha0, k)


def inverse_time_decay(ctx, alpha0, k, t):
    return np.vectorize(lambda a, kk: a / (1 + kk * t), otypes=[object])(alpha0, k)


def warmup_linear_decay(ctx, alpha0, t, warmup, total):
    """``alpha0 t / w`` for ``t < w``, ``alpha0 (T - t) / (T - w)`` for ``w <= t < T``, 0 after."""
    if t < warmup:
        f = ctx.mpf(t) / warmup
    elif t < total:
        f = ctx.mpf(total - t) / (total - warmup)
    else:
        f = ctx.zero
    return _map(lambda a: a * f, alpha0)


def cosine_decay(ctx, alpha0, alpha_min, t, total):
    """``alpha_min + (alpha0 - alpha_min) (1 + cos(pi min(t, T) / T)) / 2``."""
    c = (1 + ctx.cos(ctx.pi * min(t, total) / total)) / 2
    return np.vectorize(lambda a, lo: lo + (a - lo) * c, otypes=[object])(alpha0, alpha_min)


# -- preprocessing with fitted statistics: x (n, d), statistics per feature -------------------


def _per_feature(x, f, *stats):
    """``out[i, j] = f(x[i, j], stats[0][j], ...)``."""
    n, d = x.shape
    out = np.empty((n, d), dtype=object)
    for i in range(n):
        for j in range(d):
            out[i, j] = f(x[i, j], *(s[j] for s in stats))
    return out


def mean_subtraction(ctx, x, mean):
    return _per_feature(x, lambda v, mu: v - mu, mean)


def standardization(ctx, x, mean, std):
    return _per_feature(x, lambda v, mu, sd: (v - mu) / sd, mean, std)


def minmax_scaling(ctx, x, low, high):
    """``2 (x - low) / (high - low) - 1``."""
    return _per_feature(x, lambda v, lo, hi: 2 * (v - lo) / (hi - lo) - 1, low, high)


def pca_projection(ctx, x, mean, components):
    """``(x - mean) @ components``, components (d, k)."""
    n, d = x.shape
    k = components.shape[1]
    out = np.empty((n, k), dtype=object)
    for i in range(n):
        for j in range(k):
            out[i, j] = ctx.fsum((x[i, c] - mean[c]) * components[c, j] for c in range(d))
    return out


def pca_whitening(ctx, x, mean, components, variances, eps=1e-5):
    """``((x - mean) @ components) / sqrt(variances + eps)``."""
    p = pca_projection(ctx, x, mean, components)
    eps = ctx.mpf(eps)
    for i, j in np.ndindex(p.shape):
        p[i, j] = p[i, j] / ctx.sqrt(variances[j] + eps)
    return p


# -- more layers: maxout, batch normalization, dropout ----------------------------------------


def maxout(ctx, x, w, b, ties="split"):
    """``out[i, c] = max_j (sum_d x[i, d] w[j, d, c] + b[j, c])``; ``ties`` only routes gradients at a tie."""
    n, d = x.shape
    k, _, m = w.shape
    out = np.empty((n, m), dtype=object)
    for i in range(n):
        for c in range(m):
            out[i, c] = max(ctx.fsum(x[i, e] * w[j, e, c] for e in range(d)) + b[j, c] for j in range(k))
    return out


def _column_moments(ctx, x, j, ddof=0):
    """Mean and ``sum (x - mean)^2 / (n - ddof)`` of column ``j`` of ``x`` (n, d)."""
    col = list(x[:, j])
    mean = ctx.fsum(col) / len(col)
    return mean, ctx.fsum((v - mean) ** 2 for v in col) / (len(col) - ddof)


def batchnorm_train(ctx, x, gamma, beta, eps=1e-5):
    """``gamma (x - mu) / sqrt(var + eps) + beta`` with the batch mean and biased (1/n) variance."""
    n, d = x.shape
    out = np.empty((n, d), dtype=object)
    for j in range(d):
        mu, var = _column_moments(ctx, x, j)
        scale = 1 / ctx.sqrt(var + ctx.mpf(eps))
        for i in range(n):
            out[i, j] = gamma[j] * (x[i, j] - mu) * scale + beta[j]
    return out


def batchnorm_infer(ctx, x, gamma, beta, running_mean, running_var, eps=1e-5):
    """``gamma (x - running_mean) / sqrt(running_var + eps) + beta``, row by row."""
    n, d = x.shape
    out = np.empty((n, d), dtype=object)
    for i, j in np.ndindex(n, d):
        out[i, j] = gamma[j] * (x[i, j] - running_mean[j]) / ctx.sqrt(running_var[j] + ctx.mpf(eps)) + beta[j]
    return out


def batchnorm_running_update(ctx, x, running_mean, running_var, momentum=0.9, unbiased=True):
    """``concat([mom rm + (1 - mom) mean_n x, mom rv + (1 - mom) var_n x])``, var with 1/(n - 1) if unbiased."""
    mom = ctx.mpf(momentum)
    d = x.shape[1]
    moments = [_column_moments(ctx, x, j, ddof=1 if unbiased else 0) for j in range(d)]
    new_mean = [mom * running_mean[j] + (1 - mom) * moments[j][0] for j in range(d)]
    new_var = [mom * running_var[j] + (1 - mom) * moments[j][1] for j in range(d)]
    return np.array(new_mean + new_var, dtype=object)


def dropout(ctx, x, p=0.5, seed=None, mask=None, training=True):
    """Inverted dropout ``x * mask / p`` (keep probability ``p``); the identity when not training.

    The keep-mask is ``mask``, or ``numpy.random.default_rng(seed).random(x.shape) < p`` (the
    documented draw) when a seed is given.
    """
    if not training:
        return x.copy()
    keep = np.asarray(mask) if mask is not None else np.random.default_rng(seed).random(x.shape) < p
    p = ctx.mpf(p)
    out = np.empty(x.shape, dtype=object)
    for k in np.ndindex(x.shape):
        out[k] = x[k] / p if keep[k] else ctx.zero
    return out


# -- more losses: soft-label and binary cross-entropy -------------------------------------------


def softmax_cross_entropy_probs(ctx, logits, targets, reduction="mean"):
    """``loss_i = -sum_c targets_ic log_softmax(logits_i)_c``."""
    logp = log_softmax(ctx, logits)
    n, c = logits.shape
    return _reduce(ctx, (-ctx.fsum(targets[i, j] * logp[i, j] for j in range(c)) for i in range(n)), reduction)


def sigmoid_binary_cross_entropy(ctx, logits, targets, reduction="mean"):
    """``-y log sigmoid(z) - (1 - y) log(1 - sigmoid(z))`` elementwise, reduced over every element."""

    def bce(z, y):
        s = 1 / (1 + ctx.exp(-z))
        return -y * ctx.log(s) - (1 - y) * ctx.log(1 - s)

    values = [bce(z, y) for z, y in zip(logits.reshape(-1), targets.reshape(-1))]
    if reduction == "none":
        return np.array(values, dtype=object).reshape(logits.shape)
    return _reduce(ctx, values, reduction)


# -- regularizers: 0-d penalties on a parameter array --------------------------------------------


def l1_penalty(ctx, w, lam=0.01):
    """``lam * sum |w|``."""
    return np.array(ctx.mpf(lam) * ctx.fsum(abs(v) for v in w.reshape(-1)), dtype=object)


def l2_penalty(ctx, w, lam=0.01):
    """``lam / 2 * sum w^2``."""
    return np.array(ctx.mpf(lam) / 2 * ctx.fsum(v * v for v in w.reshape(-1)), dtype=object)


def elastic_net(ctx, w, lam=0.01, alpha=0.5):
    """``lam * (alpha * sum |w| + (1 - alpha) * sum w^2)`` (no 1/2 on the squared term)."""
    lam, alpha = ctx.mpf(lam), ctx.mpf(alpha)
    flat = w.reshape(-1)
    return np.array(lam * (alpha * ctx.fsum(abs(v) for v in flat) + (1 - alpha) * ctx.fsum(v * v for v in flat)), dtype=object)


# -- quasi-Newton: the L-BFGS direction from the dense BFGS inverse Hessian ----------------------


def lbfgs_direction(ctx, g, S, Y):
    """``-H g``, ``H`` the BFGS inverse Hessian of the pairs ``(S[i], Y[i])``, oldest first.

    Dense, not the two-loop recursion: ``H0 = gamma I`` with ``gamma = s.y / y.y`` of the
    newest pair (``I`` without pairs), then ``H <- (I - rho s y^T) H (I - rho y s^T) + rho s s^T``,
    ``rho = 1 / s.y``, for each pair in turn; the result is ``-H g``.
    """
    n = g.shape[0]
    m = S.shape[0]

    def dot(a, b):
        return ctx.fsum(a[k] * b[k] for k in range(n))

    if m:
        gamma = dot(S[m - 1], Y[m - 1]) / dot(Y[m - 1], Y[m - 1])
    else:
        gamma = ctx.one
    H = [[gamma if i == j else ctx.zero for j in range(n)] for i in range(n)]
    for p in range(m):
        s, y = S[p], Y[p]
        rho = 1 / dot(s, y)
        # V = I - rho y s^T;  H' = V^T H V + rho s s^T
        V = [[(ctx.one if i == j else ctx.zero) - rho * y[i] * s[j] for j in range(n)] for i in range(n)]
        HV = [[ctx.fsum(H[i][k] * V[k][j] for k in range(n)) for j in range(n)] for i in range(n)]
        H = [[ctx.fsum(V[k][i] * HV[k][j] for k in range(n)) + rho * s[i] * s[j] for j in range(n)] for i in range(n)]
    return np.array([-ctx.fsum(H[i][k] * g[k] for k in range(n)) for i in range(n)], dtype=object)
