"""Optimizers: pure update steps with hand-written vector-Jacobian products.

Each optimizer is a pair of pure functions,

* ``<name>_step(param, grad, state, *, <hyperparameters>, xp=None) -> (new_param, new_state)``
* ``<name>_step_vjp(d_param, d_state, param, grad, state, *, <hyperparameters>, xp=None)
  -> (d_param_in, d_grad, d_state_in)``

where ``state`` is a dict of arrays shaped like ``param`` (empty for SGD), never mutated, and
a step counter ``t`` is a Python int keyword, not an array. The VJP differentiates the new
parameter and every new state array with respect to the parameter, the gradient and every
old state array, which is what differentiating through an optimizer step needs
(hypergradients, learned optimizers).

For the catalog, :func:`pack_step` turns such a pair into an op whose forward takes the
arrays ``(param, grad, *state)`` in the fixed key order of :data:`STATE_KEYS` and returns
one flat array, ``concat([new_param.reshape(-1)] + [new_state[k].reshape(-1) for k in keys])``
(the engine checks single-array outputs), and whose backward splits the cotangent the same
way. The registered ops are named after the optimizers:

=================  ===================================  =========================================
op                 inputs                               hyperparameters
=================  ===================================  =========================================
sgd                param, grad                          lr
momentum           param, grad, velocity                lr, momentum
nesterov           param, grad, velocity                lr, momentum
adagrad            param, grad, sum_sq                  lr, eps
adagrad_rms        param, grad, mean_sq                 lr, t (previous steps, >= 0), eps
rmsprop            param, grad, mean_sq                 lr, rho, eps
adam               param, grad, m, s                    lr, beta1, beta2, t (>= 1), eps, bias_correction
sgd_weight_decay   param, grad                          lr, weight_decay
adamw              param, grad, m, s                    lr, beta1, beta2, t (>= 1), eps, weight_decay, bias_correction
=================  ===================================  =========================================

One more op is a direction, not a step: ``lbfgs_direction`` takes a gradient ``g`` (n,) and the
last ``m`` curvature pairs ``S``, ``Y`` (m, n), oldest first, and returns the L-BFGS descent
direction ``-H_k g`` by the two-loop recursion, differentiated with respect to all three
(:func:`lbfgs_direction_forward`, :func:`lbfgs_direction_backward`).

Every ``eps`` sits outside the square root: ``g / (sqrt(s) + eps)``. The square root of a
squared-gradient state is differentiable only where that state is positive, so the examples
keep it positive (it cannot reach 0 when the old state is positive and its decay factor is
not 0; where it is 0, ``rho = 0`` for instance, the examples keep the gradient nonzero). The
VJPs are right at a zero state with a zero gradient as well (the first step of a
hypergradient from zero moments): there the update ``g / (|g| + eps)`` has derivative
``1 / eps``, not the 0/0 of the naive chain rule (see ``_ratio_vjp``).

>>> import numpy as np
>>> w, g = np.array([1.0, -2.0]), np.array([0.5, 0.0])
>>> w1, state = momentum_step(w, g, {"velocity": np.zeros(2)}, lr=0.1, momentum=0.9)
>>> w1.tolist(), state["velocity"].tolist()
([0.95, -2.0], [-0.05, 0.0])
"""

import inspect
import math

import numpy as np
from hypothesis import strategies as st

from gradverify._backend import namespace_of, to_numpy
from gradverify._errors import InvalidArgument
from gradverify.catalog import Example, Op, register
from gradverify.strategies import OPTIMIZERS, float_arrays, hyperparameters, shapes

__all__ = [
    "STATE_KEYS",
    "adagrad_rms_step",
    "adagrad_rms_step_vjp",
    "adagrad_step",
    "adagrad_step_vjp",
    "adam_step",
    "adam_step_vjp",
    "adamw_step",
    "adamw_step_vjp",
    "lbfgs_dense_inverse_hessian",
    "lbfgs_direction",
    "lbfgs_direction_backward",
    "lbfgs_direction_forward",
    "lbfgs_properties",
    "momentum_step",
    "momentum_step_vjp",
    "nesterov_step",
    "nesterov_step_vjp",
    "pack_step",
    "rmsprop_step",
    "rmsprop_step_vjp",
    "sgd_step",
    "sgd_step_vjp",
    "sgd_weight_decay_step",
    "sgd_weight_decay_step_vjp",
]

# The state arrays of each optimizer, in the order the catalog op takes (and returns) them.
STATE_KEYS = {
    "sgd": (),
    "momentum": ("velocity",),
    "nesterov": ("velocity",),
    "adagrad": ("sum_sq",),
    "adagrad_rms": ("mean_sq",),
    "rmsprop": ("mean_sq",),
    "adam": ("m", "s"),
    "sgd_weight_decay": (),
    "adamw": ("m", "s"),
}


# -- shared pieces ---------------------------------------------------------------------


def _check_state(name, state, keys):
    if not isinstance(state, dict) or set(state) != set(keys):
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        msg = f"{name} needs a state dict with exactly the keys {list(keys)}; got {got}"
        raise InvalidArgument(msg)


def _check_step_count(name, t, minimum):
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < minimum:
        msg = f"{name}: t={t!r} must be a Python int >= {minimum} ({'the step number, 1 for the first step' if minimum else 'the number of previous steps, 0 for the first'})"
        raise InvalidArgument(msg)


def _check_decay(name, label, value):
    if not 0.0 <= value < 1.0:
        raise InvalidArgument(f"{name}: {label}={value!r} must lie in [0, 1)")


def _ratio(num, sq, eps, xp):
    """``num / (sqrt(sq) + eps)``, the adaptive update shared by AdaGrad, RMSprop and Adam."""
    return num / (xp.sqrt(sq) + eps)


def _ratio_vjp(c, num, sq, eps, xp):
    """Cotangents of ``num`` and ``sq`` for ``y = num / (sqrt(sq) + eps)`` given ``c`` on ``y``.

    ``dy/dnum = 1 / D`` and ``dy/dsq = -num / (2 sqrt(sq) D^2)`` with ``D = sqrt(sq) + eps``.
    Where ``num = 0``, ``y`` is 0 along ``sq`` whatever ``sq`` is, so ``dy/dsq = 0`` even at
    ``sq = 0``, where the formula reads 0/0: the first step from a zero state with a zero
    gradient (``sq = g^2 = 0``, ``num = g = 0``) is differentiable, with ``dy/dg = 1 / eps``.
    Where ``sq = 0`` and ``num != 0`` the step has a genuine kink and ``d_sq`` is infinite.
    """
    root = xp.sqrt(sq)
    den = root + eps
    d_num = c / den
    nonzero_root = xp.where(num == 0, xp.ones_like(root), root)  # no 0/0 where the answer is 0
    d_sq = -d_num * num / (2.0 * nonzero_root * den)
    return d_num, d_sq


# -- SGD and its weight-decay form ------------------------------------------------------


def sgd_step(param, grad, state, *, lr, xp=None):
    """Plain gradient descent, ``w <- w - lr g``.

    Parameters
    ----------
    param, grad : array
        The parameter and the gradient of the loss at it, of one shape.
    state : dict
        Empty: SGD keeps no state.
    lr : float
        The learning rate alpha in (0, 1].

    Returns
    -------
    (new_param, new_state)
        ``new_state`` is a new empty dict.
    """
    _check_state("sgd", state, ())
    return param - lr * grad, {}


def sgd_step_vjp(d_param, d_state, param, grad, state, *, lr, xp=None):
    """VJP of :func:`sgd_step`: ``d_param_in = d_param``, ``d_grad = -lr d_param``."""
    _check_state("sgd", state, ())
    _check_state("sgd (d_state)", d_state, ())
    return d_param, -lr * d_param, {}


def sgd_weight_decay_step(param, grad, state, *, lr, weight_decay, xp=None):
    """SGD with L2 weight decay folded into the gradient, ``w <- w - lr (g + weight_decay w)``.

    Notes
    -----
    This is SGD on the loss plus ``weight_decay / 2 * ||w||^2``; the decay is coupled to the
    gradient (contrast :func:`adamw_step`). With ``weight_decay = 0`` it is :func:`sgd_step`.
    """
    _check_state("sgd_weight_decay", state, ())
    return sgd_step(param, grad + weight_decay * param, state, lr=lr, xp=xp)


def sgd_weight_decay_step_vjp(d_param, d_state, param, grad, state, *, lr, weight_decay, xp=None):
    """VJP of :func:`sgd_weight_decay_step`, through :func:`sgd_step_vjp` on ``g + weight_decay w``."""
    d_w, d_g, _ = sgd_step_vjp(d_param, d_state, param, grad + weight_decay * param, state, lr=lr, xp=xp)
    return d_w + weight_decay * d_g, d_g, {}


# -- momentum and Nesterov ---------------------------------------------------------------


def momentum_step(param, grad, state, *, lr, momentum=0.9, xp=None):
    """Heavy-ball momentum, ``v <- mu v - lr g``, ``w <- w + v``.

    Parameters
    ----------
    state : dict
        ``{"velocity": v}``, shaped like ``param``.
    lr : float
        alpha in (0, 1].
    momentum : float
        mu in [0, 1); ``momentum = 0`` is SGD.

    Notes
    -----
    The VJP with cotangents ``dw'``, ``dv'`` is, with ``u = dv' + dw'`` (everything that
    reaches ``v'``): ``dw = dw'``, ``dv = mu u``, ``dg = -lr u``.
    """
    _check_state("momentum", state, STATE_KEYS["momentum"])
    v = momentum * state["velocity"] - lr * grad
    return param + v, {"velocity": v}


def momentum_step_vjp(d_param, d_state, param, grad, state, *, lr, momentum=0.9, xp=None):
    """VJP of :func:`momentum_step` (see its Notes)."""
    _check_state("momentum", state, STATE_KEYS["momentum"])
    _check_state("momentum (d_state)", d_state, STATE_KEYS["momentum"])
    u = d_state["velocity"] + d_param
    return d_param, -lr * u, {"velocity": momentum * u}


def nesterov_step(param, grad, state, *, lr, momentum=0.9, xp=None):
    """Nesterov momentum in the common reformulation, ``v <- mu v - lr g``, ``w <- w + mu v_new - lr g``.

    Parameters
    ----------
    state : dict
        ``{"velocity": v}``, shaped like ``param``.
    lr, momentum : float
        alpha in (0, 1] and mu in [0, 1); ``momentum = 0`` is SGD.

    Notes
    -----
    Sutskever's form evaluates the gradient at the look-ahead point,
    ``v' = mu v - lr grad f(w + mu v)``, ``w' = w + v'``. Tracking the look-ahead point
    ``phi = w + mu v`` instead of ``w`` gives the form implemented here, in which ``param``
    is ``phi`` and ``grad`` is ``grad f(phi)``:

        v' = mu v - lr g
        phi' = phi + mu v' - lr g        (= phi + mu^2 v - (1 + mu) lr g)

    This is the update of PyTorch's ``SGD(nesterov=True)`` (without dampening) and of
    Keras. The VJP, with ``u = dv' + mu dphi'``: ``dphi = dphi'``, ``dv = mu u``,
    ``dg = -lr (u + dphi')``.
    """
    _check_state("nesterov", state, STATE_KEYS["nesterov"])
    v = momentum * state["velocity"] - lr * grad
    return param + momentum * v - lr * grad, {"velocity": v}


def nesterov_step_vjp(d_param, d_state, param, grad, state, *, lr, momentum=0.9, xp=None):
    """VJP of :func:`nesterov_step` (see its Notes)."""
    _check_state("nesterov", state, STATE_KEYS["nesterov"])
    _check_state("nesterov (d_state)", d_state, STATE_KEYS["nesterov"])
    u = d_state["velocity"] + momentum * d_param
    return d_param, -lr * (u + d_param), {"velocity": momentum * u}


# -- AdaGrad, its root-mean-square form, RMSprop ------------------------------------------


def adagrad_step(param, grad, state, *, lr, eps=1e-8, xp=None):
    """AdaGrad, ``r <- r + g^2``, ``w <- w - lr g / (sqrt(r) + eps)`` with the new ``r``.

    Parameters
    ----------
    state : dict
        ``{"sum_sq": r}``, the sum of all past squared gradients, elementwise (>= 0).
    lr : float
        alpha in (0, 1].
    eps : float
        Added to ``sqrt(r)``, outside the square root.

    Notes
    -----
    The effective learning rate ``lr / (sqrt(r) + eps)`` never increases, since ``r`` only
    grows. The update is differentiable where the new ``r`` is positive. VJP: with
    ``D = sqrt(r') + eps`` and ``u = dr' + dw' lr g / (2 sqrt(r') D^2)`` (everything that reaches
    ``r'``): ``dw = dw'``, ``dr = u``, ``dg = -lr dw' / D + 2 g u``.
    """
    xp = xp or namespace_of(param, grad)
    _check_state("adagrad", state, STATE_KEYS["adagrad"])
    r = state["sum_sq"] + grad * grad
    return param - lr * _ratio(grad, r, eps, xp), {"sum_sq": r}


def adagrad_step_vjp(d_param, d_state, param, grad, state, *, lr, eps=1e-8, xp=None):
    """VJP of :func:`adagrad_step` (see its Notes)."""
    xp = xp or namespace_of(param, grad)
    _check_state("adagrad", state, STATE_KEYS["adagrad"])
    _check_state("adagrad (d_state)", d_state, STATE_KEYS["adagrad"])
    r = state["sum_sq"] + grad * grad
    d_num, d_sq = _ratio_vjp(-lr * d_param, grad, r, eps, xp)
    u = d_state["sum_sq"] + d_sq
    return d_param, d_num + 2.0 * grad * u, {"sum_sq": u}


def adagrad_rms_step(param, grad, state, *, lr, t, eps=1e-8, xp=None):
    """AdaGrad scaled by the root mean square of all past gradients.

    ``sigma_t = sqrt(1/(t+1) sum_{i<=t} g_i^2)``, kept as the running mean
    ``mean_sq <- (t mean_sq + g^2) / (t + 1)``; ``w <- w - lr g / (sigma_t + eps)``.

    Parameters
    ----------
    state : dict
        ``{"mean_sq": s}``, the mean of the ``t`` previous squared gradients (its value is
        ignored when ``t = 0``).
    lr : float
        alpha in (0, 1].
    t : int
        The number of previous steps, 0 for the first step.
    eps : float
        Added to ``sigma_t``, outside the square root.

    Notes
    -----
    Unlike :func:`adagrad_step`, the effective learning rate ``lr / (sigma_t + eps)`` can
    increase: ``mean_sq`` is a mean, and it falls (so the rate rises) exactly when
    ``g_t^2 < mean_sq_{t-1}``, rises when ``g_t^2 > mean_sq_{t-1}``. At ``t = 0``,
    ``sigma_0 = |g|``, not differentiable at ``g = 0``.

    VJP: with ``s' = mean_sq_t``, ``D = sqrt(s') + eps`` and
    ``u = ds' + dw' lr g / (2 sqrt(s') D^2)``: ``dw = dw'``, ``ds = u t / (t+1)``,
    ``dg = -lr dw' / D + 2 g u / (t+1)``.
    """
    xp = xp or namespace_of(param, grad)
    _check_state("adagrad_rms", state, STATE_KEYS["adagrad_rms"])
    _check_step_count("adagrad_rms", t, 0)
    s = (float(t) * state["mean_sq"] + grad * grad) / float(t + 1)
    return param - lr * _ratio(grad, s, eps, xp), {"mean_sq": s}


def adagrad_rms_step_vjp(d_param, d_state, param, grad, state, *, lr, t, eps=1e-8, xp=None):
    """VJP of :func:`adagrad_rms_step` (see its Notes)."""
    xp = xp or namespace_of(param, grad)
    _check_state("adagrad_rms", state, STATE_KEYS["adagrad_rms"])
    _check_state("adagrad_rms (d_state)", d_state, STATE_KEYS["adagrad_rms"])
    _check_step_count("adagrad_rms", t, 0)
    s = (float(t) * state["mean_sq"] + grad * grad) / float(t + 1)
    d_num, d_sq = _ratio_vjp(-lr * d_param, grad, s, eps, xp)
    u = d_state["mean_sq"] + d_sq
    return d_param, d_num + (2.0 / (t + 1)) * grad * u, {"mean_sq": (t / (t + 1)) * u}


def rmsprop_step(param, grad, state, *, lr, rho=0.9, eps=1e-8, xp=None):
    """RMSprop, ``s <- rho s + (1 - rho) g^2``, ``w <- w - lr g / (sqrt(s) + eps)``.

    Parameters
    ----------
    state : dict
        ``{"mean_sq": s}``, the exponential moving average of squared gradients (sigma^2).
    rho : float
        Decay in [0, 1).
    eps : float
        Added to ``sqrt(s)``, outside the square root.

    Notes
    -----
    VJP: with ``D = sqrt(s') + eps`` and ``u = ds' + dw' lr g / (2 sqrt(s') D^2)``:
    ``dw = dw'``, ``ds = rho u``, ``dg = -lr dw' / D + 2 (1 - rho) g u``.
    """
    xp = xp or namespace_of(param, grad)
    _check_state("rmsprop", state, STATE_KEYS["rmsprop"])
    s = rho * state["mean_sq"] + (1.0 - rho) * (grad * grad)
    return param - lr * _ratio(grad, s, eps, xp), {"mean_sq": s}


def rmsprop_step_vjp(d_param, d_state, param, grad, state, *, lr, rho=0.9, eps=1e-8, xp=None):
    """VJP of :func:`rmsprop_step` (see its Notes)."""
    xp = xp or namespace_of(param, grad)
    _check_state("rmsprop", state, STATE_KEYS["rmsprop"])
    _check_state("rmsprop (d_state)", d_state, STATE_KEYS["rmsprop"])
    s = rho * state["mean_sq"] + (1.0 - rho) * (grad * grad)
    d_num, d_sq = _ratio_vjp(-lr * d_param, grad, s, eps, xp)
    u = d_state["mean_sq"] + d_sq
    return d_param, d_num + 2.0 * (1.0 - rho) * grad * u, {"mean_sq": rho * u}


# -- Adam and AdamW ----------------------------------------------------------------------


def _adam_factors(name, beta1, beta2, t, bias_correction):
    _check_step_count(name, t, 1)
    _check_decay(name, "beta1", beta1)
    _check_decay(name, "beta2", beta2)
    if not bias_correction:
        return 1.0, 1.0
    return 1.0 / (1.0 - beta1**t), 1.0 / (1.0 - beta2**t)


def adam_step(param, grad, state, *, lr, t, beta1=0.9, beta2=0.999, eps=1e-8, bias_correction=True, xp=None):
    """Adam: moving averages of the gradient and its square, bias-corrected.

    Parameters
    ----------
    state : dict
        ``{"m": m, "s": s}``: the first moment and the (non-negative) second moment.
    lr : float
        alpha in (0, 1].
    t : int
        The step number, 1 for the first step (the bias correction uses it).
    beta1, beta2 : float
        Decays in [0, 1).
    eps : float
        Added to ``sqrt(s_hat)``, outside the square root.
    bias_correction : bool
        Divide the moments by ``1 - beta^t``; without it ``m_hat = m``, ``s_hat = s``.

    Notes
    -----
    ::

        m' = beta1 m + (1 - beta1) g          s' = beta2 s + (1 - beta2) g^2
        m_hat = c1 m',  c1 = 1 / (1 - beta1^t)    s_hat = c2 s',  c2 = 1 / (1 - beta2^t)
        w' = w - lr m_hat / (sqrt(s_hat) + eps)

    On the first step from ``m = s = 0``, ``m_hat = g`` and ``s_hat = g^2``, so every
    coordinate moves by ``lr |g| / (|g| + eps)``, about ``lr``. VJP: with
    ``D = sqrt(s_hat) + eps``, ``u_m = dm' - c1 lr dw' / D`` and
    ``u_s = ds' + c2 lr dw' m_hat / (2 sqrt(s_hat) D^2)``: ``dw = dw'``, ``dm = beta1 u_m``,
    ``ds = beta2 u_s``, ``dg = (1 - beta1) u_m + 2 (1 - beta2) g u_s``.
    """
    xp = xp or namespace_of(param, grad)
    _check_state("adam", state, STATE_KEYS["adam"])
    c1, c2 = _adam_factors("adam", beta1, beta2, t, bias_correction)
    m = beta1 * state["m"] + (1.0 - beta1) * grad
    s = beta2 * state["s"] + (1.0 - beta2) * (grad * grad)
    return param - lr * _ratio(c1 * m, c2 * s, eps, xp), {"m": m, "s": s}


def adam_step_vjp(d_param, d_state, param, grad, state, *, lr, t, beta1=0.9, beta2=0.999, eps=1e-8, bias_correction=True, xp=None):
    """VJP of :func:`adam_step` (see its Notes)."""
    xp = xp or namespace_of(param, grad)
    _check_state("adam", state, STATE_KEYS["adam"])
    _check_state("adam (d_state)", d_state, STATE_KEYS["adam"])
    c1, c2 = _adam_factors("adam", beta1, beta2, t, bias_correction)
    m = beta1 * state["m"] + (1.0 - beta1) * grad
    s = beta2 * state["s"] + (1.0 - beta2) * (grad * grad)
    d_mhat, d_shat = _ratio_vjp(-lr * d_param, c1 * m, c2 * s, eps, xp)
    u_m = d_state["m"] + c1 * d_mhat
    u_s = d_state["s"] + c2 * d_shat
    d_grad = (1.0 - beta1) * u_m + 2.0 * (1.0 - beta2) * grad * u_s
    return d_param, d_grad, {"m": beta1 * u_m, "s": beta2 * u_s}


def adamw_step(param, grad, state, *, lr, t, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, bias_correction=True, xp=None):
    """AdamW: Adam with decoupled weight decay, ``w' = adam(w) - lr weight_decay w``.

    Parameters are those of :func:`adam_step`, plus ``weight_decay`` (lambda >= 0).

    Notes
    -----
    The decay acts on the parameter directly, not through the moments, and is scaled by
    the learning rate (``lr * weight_decay``, as in Loshchilov & Hutter's ``eta_t lambda``
    with schedule multiplier 1, and as in PyTorch's ``AdamW``); it uses the old ``w``::

        w' = w - lr (m_hat / (sqrt(s_hat) + eps) + weight_decay w)

    With ``weight_decay = 0`` it is :func:`adam_step`. The VJP is Adam's with
    ``dw = (1 - lr weight_decay) dw'``.
    """
    new_param, new_state = adam_step(param, grad, state, lr=lr, t=t, beta1=beta1, beta2=beta2, eps=eps, bias_correction=bias_correction, xp=xp)
    return new_param - (lr * weight_decay) * param, new_state


def adamw_step_vjp(d_param, d_state, param, grad, state, *, lr, t, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, bias_correction=True, xp=None):
    """VJP of :func:`adamw_step`: Adam's, plus ``-lr weight_decay dw'`` on the parameter."""
    d_w, d_g, d_s = adam_step_vjp(d_param, d_state, param, grad, state, lr=lr, t=t, beta1=beta1, beta2=beta2, eps=eps, bias_correction=bias_correction, xp=xp)
    return d_w - (lr * weight_decay) * d_param, d_g, d_s


# -- the catalog adapter -------------------------------------------------------------------


def pack_step(name, step, step_vjp, keys):
    """A catalog ``(forward, backward)`` pair for the optimizer ``step`` and its ``step_vjp``.

    ``forward(param, grad, *states, **hyperparameters)`` takes the state arrays in the order
    ``keys`` and returns ``concat([new_param.reshape(-1)] + [new_state[k].reshape(-1) for k
    in keys])`` with a cache; ``backward(dout, cache)`` splits ``dout`` the same way and
    returns ``(d_param, d_grad, *d_states)`` from ``step_vjp``.
    """
    keys = tuple(keys)

    def forward(param, grad, /, *states, xp=None, **hyperparameters):
        if len(states) != len(keys):
            msg = f"{name} takes (param, grad{''.join(', ' + k for k in keys)}); got {2 + len(states)} arrays"
            raise InvalidArgument(msg)
        for label, x in [("grad", grad), *zip(keys, states)]:
            if tuple(x.shape) != tuple(param.shape):
                raise InvalidArgument(f"{name}: {label} has shape {tuple(x.shape)}, param has {tuple(param.shape)}; they must match")
        xp = xp or namespace_of(param, grad, *states)
        state = dict(zip(keys, states))
        new_param, new_state = step(param, grad, state, xp=xp, **hyperparameters)
        out = xp.concat([xp.reshape(new_param, (-1,))] + [xp.reshape(new_state[k], (-1,)) for k in keys])
        return out, (param, grad, state, hyperparameters)

    def backward(dout, cache, *, xp=None):
        param, grad, state, hyperparameters = cache
        xp = xp or namespace_of(dout, param)
        shape = tuple(param.shape)
        n = math.prod(shape)
        parts = [xp.reshape(dout[j * n : (j + 1) * n], shape) for j in range(1 + len(keys))]
        d_param, d_grad, d_state = step_vjp(parts[0], dict(zip(keys, parts[1:])), param, grad, state, xp=xp, **hyperparameters)
        return (d_param, d_grad, *(d_state[k] for k in keys))

    hyper = [p for p in inspect.signature(step).parameters.values() if p.kind is p.KEYWORD_ONLY and p.name != "xp"]
    positional = [inspect.Parameter(a, inspect.Parameter.POSITIONAL_ONLY) for a in ("param", "grad", *keys)]
    xp_param = inspect.Parameter("xp", inspect.Parameter.KEYWORD_ONLY, default=None)
    forward.__signature__ = inspect.Signature([*positional, *hyper, xp_param])
    forward.__name__ = forward.__qualname__ = f"{name}_forward"
    backward.__name__ = backward.__qualname__ = f"{name}_backward"
    arrays = ", ".join(("param", "grad", *keys))
    forward.__doc__ = f"""One ``{step.__name__}`` as a catalog op with a single flat output.

    Parameters
    ----------
    {arrays} : arrays of one shape
        The parameter, its gradient and the state arrays in this fixed order; every one is
        differentiated.
    **hyperparameters
        Those of :func:`{step.__name__}` ({', '.join(p.name for p in hyper)}).

    Returns
    -------
    out : array (size * {1 + len(keys)},)
        ``concat([new_param.reshape(-1){''.join(f', new_state[{k!r}].reshape(-1)' for k in keys)}])``.
    cache
        For ``{name}_backward``, which splits ``dout`` the same way and returns the gradients
        of ({arrays}) from :func:`{step_vjp.__name__}`.

    Notes
    -----
    The math is in :func:`{step.__name__}`.
    """
    backward.__doc__ = f"Gradients of ({arrays}) for ``{name}_forward``, from :func:`{step_vjp.__name__}`."
    return forward, backward


sgd_forward, sgd_backward = pack_step("sgd", sgd_step, sgd_step_vjp, STATE_KEYS["sgd"])
momentum_forward, momentum_backward = pack_step("momentum", momentum_step, momentum_step_vjp, STATE_KEYS["momentum"])
nesterov_forward, nesterov_backward = pack_step("nesterov", nesterov_step, nesterov_step_vjp, STATE_KEYS["nesterov"])
adagrad_forward, adagrad_backward = pack_step("adagrad", adagrad_step, adagrad_step_vjp, STATE_KEYS["adagrad"])
adagrad_rms_forward, adagrad_rms_backward = pack_step("adagrad_rms", adagrad_rms_step, adagrad_rms_step_vjp, STATE_KEYS["adagrad_rms"])
rmsprop_forward, rmsprop_backward = pack_step("rmsprop", rmsprop_step, rmsprop_step_vjp, STATE_KEYS["rmsprop"])
adam_forward, adam_backward = pack_step("adam", adam_step, adam_step_vjp, STATE_KEYS["adam"])
sgd_weight_decay_forward, sgd_weight_decay_backward = pack_step("sgd_weight_decay", sgd_weight_decay_step, sgd_weight_decay_step_vjp, STATE_KEYS["sgd_weight_decay"])
adamw_forward, adamw_backward = pack_step("adamw", adamw_step, adamw_step_vjp, STATE_KEYS["adamw"])


# -- example strategies --------------------------------------------------------------------

# Squared-gradient states: drawn positive, so that sqrt of the new state is differentiable.
SQUARED_STATES = ("sum_sq", "mean_sq", "s")
# Differentiable elements per example, all inputs together. The per-element high-precision
# truth costs about 10 mpmath evaluations of the whole step per element, so examples stay
# small: up to 16 elements per array for SGD, 10 with one state, 8 for Adam's two.
MAX_ELEMENTS = 32

# The names and valid ranges of the hyperparameters live in gradverify.strategies; the
# examples narrow the decays (mu, rho, beta) to exactly 0 (the degenerate case) or at
# least 0.01, so that a decayed state never underflows to 0 while the drawn gradient is 0.
EXAMPLE_DECAYS = st.one_of(st.sampled_from([0.0, 0.5, 0.9, 0.99, 0.999]), st.floats(0.01, 0.999))


def _example_hyperparameters(name):
    decays = {k: EXAMPLE_DECAYS for k in ("momentum", "rho", "beta1", "beta2") if k in OPTIMIZERS[name]}
    return hyperparameters(name, **decays)


def _squared_state_can_vanish(params):
    """Whether the new squared-gradient state is ``g^2`` alone.

    Then ``g = 0`` puts the update at the kink of ``sqrt(g^2) = |g|``. For RMSprop and the
    RMS form the update is ``g / (|g| + eps)``, differentiable with slope ``1 / eps`` (the
    VJP gives it), but it bends on the scale ``eps``, far below any finite-difference step,
    and its second derivative jumps, so neither the float64 differences nor the
    high-precision truth resolve it for ``eps = 1e-8``. For Adam with ``beta2 = 0`` the
    numerator ``m'`` need not vanish with ``g`` and the kink is genuine. The examples keep
    ``g`` nonzero in these cases; tests/test_optimizers.py checks the point with ``eps = 1e-3``.
    """
    return params.get("t") == 0 or params.get("rho") == 0.0 or params.get("beta2") == 0.0


@st.composite
def _optimizer_examples(draw, name):
    keys = STATE_KEYS[name]
    params = draw(_example_hyperparameters(name))
    limit = MAX_ELEMENTS // (2 + len(keys))
    shape = draw(shapes(min_dims=1, max_dims=2, max_side=4).filter(lambda s: math.prod(s) <= limit))
    g_scale = 10.0 ** draw(st.integers(-3, 3))
    param = draw(float_arrays(shape))
    grad = draw(float_arrays(shape, scale=g_scale))
    if draw(st.booleans()):
        grad.reshape(-1)[draw(st.integers(0, grad.size - 1))] = 0.0  # the classic sqrt(0) trap
    if _squared_state_can_vanish(params):
        grad = np.where(grad == 0.0, g_scale, grad)
    states = []
    for k in keys:
        if k in SQUARED_STATES:
            # Positive, its square root within a factor 10 of the gradient's scale.
            states.append(draw(float_arrays(shape, scale=g_scale**2 * 10.0 ** draw(st.integers(-2, 2)), positive=True)))
        else:
            states.append(draw(float_arrays(shape, scale=g_scale)))
    return Example((param, grad, *states), params)


# -- properties ----------------------------------------------------------------------------


def _host(x):
    return np.asarray(to_numpy(x), dtype=np.float64)


def _split(example, name, xp):
    param, grad, *states = (xp.asarray(a) for a in example.inputs)
    return param, grad, dict(zip(STATE_KEYS[name], states))


def _reduces_to(name, step, zeroed, reference, reference_name):
    """Property: ``step`` with the hyperparameter ``zeroed`` at 0 is exactly ``reference``."""

    def check(example, xp):
        param, grad, state = _split(example, name, xp)
        params = {**example.params, zeroed: 0.0}
        ref_params = {k: v for k, v in example.params.items() if k != zeroed}
        ref_state = {k: state[k] for k in STATE_KEYS[reference_name]}
        w, new_state = step(param, grad, state, xp=xp, **params)
        w_ref, ref_new_state = reference(param, grad, ref_state, xp=xp, **ref_params)
        assert np.array_equal(_host(w), _host(w_ref)), f"{name} with {zeroed}=0 moved the parameter to {_host(w)}, {reference_name} to {_host(w_ref)}"
        for k in STATE_KEYS[reference_name]:
            assert np.array_equal(_host(new_state[k]), _host(ref_new_state[k])), f"{name} with {zeroed}=0 left state {k!r} different from {reference_name}'s"

    check.__name__ = f"{name}_with_zero_{zeroed}_is_{reference_name}"
    return check


def adam_first_step_property(example, xp):
    """Adam's first bias-corrected step from zero moments moves each coordinate by ``lr |g| / (|g| + eps)``."""
    _, grad, _ = _split(example, "adam", xp)
    p = example.params
    zeros = xp.zeros_like(grad)
    w, _ = adam_step(zeros, grad, {"m": zeros, "s": zeros}, lr=p["lr"], t=1, beta1=p["beta1"], beta2=p["beta2"], eps=p["eps"], bias_correction=True, xp=xp)
    g = _host(grad)
    step = np.abs(_host(w))
    expected = p["lr"] * np.abs(g) / (np.abs(g) + p["eps"])
    assert np.allclose(step, expected, rtol=1e-12, atol=0.0), f"adam's first step moved by {step}, expected lr |g| / (|g| + eps) = {expected}"
    big = np.abs(g) >= 1e6 * p["eps"]
    assert np.allclose(step[big], p["lr"], rtol=2e-6, atol=0.0), f"adam's first step moved by {step[big]} where |g| >> eps, not lr = {p['lr']}"
    assert np.all(step <= p["lr"] * (1.0 + 1e-12)), f"adam's first step moved by {step.max()} > lr = {p['lr']}"


def _sequence_grads(grad):
    """A short run of gradients derived from ``grad``, with a zero and a sign flip."""
    return [grad, 0.0 * grad, 0.5 * grad, -3.0 * grad, grad]


def adagrad_rate_property(example, xp):
    """AdaGrad's effective learning rate ``lr / (sqrt(r) + eps)`` never increases over a run."""
    param, grad, state = _split(example, "adagrad", xp)
    p = example.params
    rates = [p["lr"] / (np.sqrt(_host(state["sum_sq"])) + p["eps"])]
    for g in _sequence_grads(grad):
        param, state = adagrad_step(param, g, state, xp=xp, **p)
        rates.append(p["lr"] / (np.sqrt(_host(state["sum_sq"])) + p["eps"]))
    for k in range(1, len(rates)):
        assert np.all(rates[k] <= rates[k - 1]), f"adagrad's effective learning rate rose at step {k}: {rates[k - 1]} -> {rates[k]}"


def adagrad_rms_rate_property(example, xp):
    """The RMS form's effective rate rises exactly where ``g^2`` is below the running mean.

    ``mean_sq`` is a mean, so one step lowers it (and raises ``lr / (sqrt(mean_sq) + eps)``)
    where ``g_t^2 < mean_sq_{t-1}`` and raises it where ``g_t^2 > mean_sq_{t-1}``. Only
    coordinates where the two differ by more than rounding are judged; at ``t = 0`` the old
    mean is empty and the new one is ``g^2``.
    """
    param, grad, state = _split(example, "adagrad_rms", xp)
    p = example.params
    _, new_state = adagrad_rms_step(param, grad, state, xp=xp, **p)
    g2, old, new = _host(grad) ** 2, _host(state["mean_sq"]), _host(new_state["mean_sq"])
    rate_old, rate_new = p["lr"] / (np.sqrt(old) + p["eps"]), p["lr"] / (np.sqrt(new) + p["eps"])
    if p["t"] == 0:
        assert np.allclose(new, g2, rtol=1e-15, atol=0.0), f"adagrad_rms at t=0 has mean_sq {new}, not g^2 = {g2}"
        return
    gap = 1e-12 * np.maximum(g2, old)
    below, above = g2 < old - gap, g2 > old + gap
    assert np.all(rate_new[below] >= rate_old[below]), f"adagrad_rms: g^2 {g2[below]} < mean_sq {old[below]}, yet the effective rate fell: {rate_old[below]} -> {rate_new[below]}"
    assert np.all(rate_new[above] <= rate_old[above]), f"adagrad_rms: g^2 {g2[above]} > mean_sq {old[above]}, yet the effective rate rose: {rate_old[above]} -> {rate_new[above]}"


def rmsprop_average_property(example, xp):
    """RMSprop's new ``mean_sq`` lies between the old one and ``g^2`` (a convex combination)."""
    param, grad, state = _split(example, "rmsprop", xp)
    _, new_state = rmsprop_step(param, grad, state, xp=xp, **example.params)
    g2, old, new = _host(grad) ** 2, _host(state["mean_sq"]), _host(new_state["mean_sq"])
    low, high = np.minimum(g2, old), np.maximum(g2, old)
    slack = 4e-16 * high
    assert np.all((new >= low - slack) & (new <= high + slack)), f"rmsprop's mean_sq {new} left [min, max] of old {old} and g^2 {g2}"


register(Op("sgd", "optimizer", sgd_forward, sgd_backward, lambda: _optimizer_examples("sgd"), "SGD step w - lr g, differentiated through", reference="sgd"))
register(Op("momentum", "optimizer", momentum_forward, momentum_backward, lambda: _optimizer_examples("momentum"), "heavy-ball momentum step (velocity)", properties=_reduces_to("momentum", momentum_step, "momentum", sgd_step, "sgd"), reference="momentum"))
register(Op("nesterov", "optimizer", nesterov_forward, nesterov_backward, lambda: _optimizer_examples("nesterov"), "Nesterov momentum step, look-ahead reformulation (velocity)", properties=_reduces_to("nesterov", nesterov_step, "momentum", sgd_step, "sgd"), reference="nesterov"))
register(Op("adagrad", "optimizer", adagrad_forward, adagrad_backward, lambda: _optimizer_examples("adagrad"), "AdaGrad step (sum of squared gradients, eps outside sqrt)", properties=adagrad_rate_property, reference="adagrad"))
register(Op("adagrad_rms", "optimizer", adagrad_rms_forward, adagrad_rms_backward, lambda: _optimizer_examples("adagrad_rms"), "AdaGrad scaled by the RMS of all past gradients (mean_sq)", properties=adagrad_rms_rate_property, reference="adagrad_rms"))
register(Op("rmsprop", "optimizer", rmsprop_forward, rmsprop_backward, lambda: _optimizer_examples("rmsprop"), "RMSprop step (moving mean of squared gradients)", properties=rmsprop_average_property, reference="rmsprop"))
register(Op("adam", "optimizer", adam_forward, adam_backward, lambda: _optimizer_examples("adam"), "Adam step with optional bias correction (m, s)", properties=adam_first_step_property, reference="adam"))
register(Op("sgd_weight_decay", "optimizer", sgd_weight_decay_forward, sgd_weight_decay_backward, lambda: _optimizer_examples("sgd_weight_decay"), "SGD with L2 weight decay folded into the gradient", properties=_reduces_to("sgd_weight_decay", sgd_weight_decay_step, "weight_decay", sgd_step, "sgd"), reference="sgd_weight_decay"))
register(Op("adamw", "optimizer", adamw_forward, adamw_backward, lambda: _optimizer_examples("adamw"), "AdamW step: Adam plus decoupled weight decay lr * lambda * w", properties=_reduces_to("adamw", adamw_step, "weight_decay", adam_step, "adam"), reference="adamw"))


# -- L-BFGS: the two-loop recursion as a differentiable op ------------------------------------


def _lbfgs_arrays(g, S, Y, xp):
    """Validate ``g`` (n,), ``S`` and ``Y`` (m, n), every ``s_i . y_i > 0``; return the ``s_i . y_i``."""
    if len(g.shape) != 1:
        raise InvalidArgument(f"lbfgs_direction: g must be a 1-d gradient of shape (n,), got shape {tuple(g.shape)}; flatten the parameters first")
    n = g.shape[0]
    for label, a in (("S", S), ("Y", Y)):
        if len(a.shape) != 2 or a.shape[1] != n:
            msg = f"lbfgs_direction: {label} must have shape (m, {n}) (m curvature pairs of the gradient's size {n}, oldest first), got {tuple(a.shape)}"
            raise InvalidArgument(msg)
    if S.shape[0] != Y.shape[0]:
        raise InvalidArgument(f"lbfgs_direction: S holds {S.shape[0]} steps s_i but Y holds {Y.shape[0]} gradient changes y_i; they pair up row by row")
    sy = [xp.sum(S[i, :] * Y[i, :]) for i in range(S.shape[0])]
    for i, v in enumerate(sy):
        if not bool(v > 0):
            msg = (
                f"lbfgs_direction: curvature pair {i} (of {len(sy)}, oldest first) has s_{i} . y_{i} = {float(v)!r}, "
                "not > 0, so no positive definite BFGS inverse Hessian fits it; skip that pair (do not store it) "
                "or get it from a line search that satisfies the Wolfe conditions, which guarantee s . y > 0"
            )
            raise InvalidArgument(msg)
    return sy


def _lbfgs_gamma(s, y, sy, xp):
    """The initial scaling ``gamma = s.y / y.y`` of the newest pair, ``H0 = gamma I``."""
    return sy / xp.sum(y * y)


def _lbfgs_gamma_vjp(d_gamma, s, y, sy, xp):
    """Cotangents of the newest ``(s, y)`` from ``d_gamma`` on ``gamma = s.y / y.y``.

    ``dgamma/ds = y / y.y``, ``dgamma/dy = s / y.y - 2 gamma y / y.y``.
    """
    yy = xp.sum(y * y)
    gamma = sy / yy
    return (d_gamma / yy) * y, (d_gamma / yy) * (s - 2.0 * gamma * y)


def lbfgs_direction_forward(g, S, Y, /, *, xp=None):
    """The L-BFGS search direction ``d = -H_k g`` by the two-loop recursion.

    Parameters
    ----------
    g : array (n,)
        The gradient at the current point.
    S, Y : arrays (m, n)
        The last ``m`` curvature pairs, oldest first: row ``i`` holds a step
        ``s_i = x_{i+1} - x_i`` and the gradient change ``y_i = g_{i+1} - g_i``. Every pair must
        have ``s_i . y_i > 0`` (else :class:`~gradverify.InvalidArgument` names the pair).
        ``m = 0`` is allowed: then ``H_k = I`` and ``d = -g``.

    Returns
    -------
    d : array (n,)
        The descent direction ``-H_k g`` (note the sign: the two-loop recursion computes
        ``H_k g``, this returns its negative, the step a line search scales).
    cache
        For :func:`lbfgs_direction_backward`.

    Notes
    -----
    ``H_k`` is the BFGS inverse-Hessian approximation built from ``H0 = gamma I``,
    ``gamma = s_{m-1}.y_{m-1} / y_{m-1}.y_{m-1}`` (the newest pair), by the updates
    ``H <- (I - rho_i s_i y_i^T) H (I - rho_i y_i s_i^T) + rho_i s_i s_i^T``,
    ``rho_i = 1 / s_i.y_i``, oldest pair first. The two-loop recursion (Nocedal & Wright,
    Algorithm 7.4) applies it to ``g`` in ``O(m n)`` without forming it:

        q = g;  for i = m-1 down to 0:  a_i = rho_i s_i.q,  q <- q - a_i y_i
        r = gamma q;  for i = 0 up to m-1:  b_i = rho_i y_i.r,  r <- r + (a_i - b_i) s_i
        d = -r

    Everything is differentiated: ``g``, every ``s_i`` and every ``y_i``, including through
    ``rho_i`` and ``gamma``. ``d`` is linear in ``g`` (``dg = -H_k dd``, ``H_k`` symmetric) and
    rational in ``S`` and ``Y``; the backward runs the two loops in reverse (see
    :func:`lbfgs_direction_backward`). ``H_k`` is positive definite, so ``g . d < 0`` for
    ``g != 0``, and it satisfies the newest secant condition ``H_k y_{m-1} = s_{m-1}``.

    >>> import numpy as np
    >>> S, Y = np.array([[1.0, 0.0]]), np.array([[2.0, 0.0]])   # curvature 2 along x
    >>> d, _ = lbfgs_direction_forward(np.array([4.0, 1.0]), S, Y)
    >>> d.tolist()                                            # -(H g) with H = diag(1/2, 1/2)
    [-2.0, -0.5]
    """
    xp = xp or namespace_of(g, S, Y)
    sy = _lbfgs_arrays(g, S, Y, xp)
    m = len(sy)
    rho = [1.0 / v for v in sy]
    q = g
    qs, alphas = [None] * m, [None] * m
    for i in range(m - 1, -1, -1):
        qs[i] = q  # q before pair i acts
        alphas[i] = rho[i] * xp.sum(S[i, :] * q)
        q = q - alphas[i] * Y[i, :]
    gamma = _lbfgs_gamma(S[m - 1, :], Y[m - 1, :], sy[m - 1], xp) if m else 1.0
    r = gamma * q
    rs = [None] * m
    for i in range(m):
        rs[i] = r  # r before pair i acts
        beta = rho[i] * xp.sum(Y[i, :] * r)
        r = r + (alphas[i] - beta) * S[i, :]
    return -r, (g, S, Y, sy, rho, qs, alphas, q, gamma, rs)


def lbfgs_direction_backward(dd, cache, *, xp=None):
    """Gradients ``(dg, dS, dY)`` of :func:`lbfgs_direction_forward` for the cotangent ``dd``.

    Notes
    -----
    Reverse mode through the two loops, with ``R`` the cotangent of ``r`` (``-dd`` at the end),
    ``c_i = a_i - b_i`` and ``q_i``, ``r_i`` the vectors before pair ``i`` acted:

        second loop, i = m-1 down to 0:  dc = R.s_i;  ds_i += c_i R;  da_i += dc;
                                          drho_i -= dc y_i.r_i;  dy_i -= dc rho_i r_i;
                                          R -= dc rho_i y_i
        r_start = gamma q:                dgamma = R.q;  Q = gamma R
        first loop, i = 0 up to m-1:      da_i -= Q.y_i;  dy_i -= a_i Q;
                                          drho_i += da_i s_i.q_i;  ds_i += da_i rho_i q_i;
                                          Q += da_i rho_i s_i
        dg = Q;  rho_i = 1/s_i.y_i:       ds_i -= drho_i rho_i^2 y_i;  dy_i -= drho_i rho_i^2 s_i

    and ``dgamma`` reaches the newest pair through ``gamma = s.y / y.y``
    (``_lbfgs_gamma_vjp``). The result is ``dg = -H_k dd``.
    """
    g, S, Y, sy, rho, qs, alphas, q0, gamma, rs = cache
    xp = xp or namespace_of(dd, g)
    m = len(sy)
    dS = [xp.zeros_like(g) for _ in range(m)]
    dY = [xp.zeros_like(g) for _ in range(m)]
    d_alpha = [0.0] * m
    d_rho = [0.0] * m
    R = -dd
    for i in range(m - 1, -1, -1):
        s, y = S[i, :], Y[i, :]
        beta = rho[i] * xp.sum(y * rs[i])
        dc = xp.sum(R * s)
        dS[i] = dS[i] + (alphas[i] - beta) * R
        d_alpha[i] = d_alpha[i] + dc
        d_rho[i] = d_rho[i] - dc * xp.sum(y * rs[i])
        dY[i] = dY[i] - (dc * rho[i]) * rs[i]
        R = R - (dc * rho[i]) * y
    if m:
        d_gamma = xp.sum(R * q0)
        ds_gamma, dy_gamma = _lbfgs_gamma_vjp(d_gamma, S[m - 1, :], Y[m - 1, :], sy[m - 1], xp)
        dS[m - 1] = dS[m - 1] + ds_gamma
        dY[m - 1] = dY[m - 1] + dy_gamma
    Q = gamma * R
    for i in range(m):
        s, y = S[i, :], Y[i, :]
        d_alpha[i] = d_alpha[i] - xp.sum(Q * y)
        dY[i] = dY[i] - alphas[i] * Q
        d_rho[i] = d_rho[i] + d_alpha[i] * xp.sum(s * qs[i])
        dS[i] = dS[i] + (d_alpha[i] * rho[i]) * qs[i]
        Q = Q + (d_alpha[i] * rho[i]) * s
    for i in range(m):
        d_sy = -d_rho[i] * rho[i] * rho[i]
        dS[i] = dS[i] + d_sy * Y[i, :]
        dY[i] = dY[i] + d_sy * S[i, :]
    if m:
        return Q, xp.stack(dS), xp.stack(dY)
    return Q, xp.zeros_like(S), xp.zeros_like(Y)


def lbfgs_direction(g, S, Y, /, *, xp=None):
    """The L-BFGS descent direction ``d = -H_k g`` alone (see :func:`lbfgs_direction_forward`).

    >>> import numpy as np
    >>> lbfgs_direction(np.array([1.0, -2.0]), np.zeros((0, 2)), np.zeros((0, 2))).tolist()
    [-1.0, 2.0]
    """
    return lbfgs_direction_forward(g, S, Y, xp=xp)[0]


def lbfgs_dense_inverse_hessian(S, Y):
    """``H_k`` itself, as a dense float64 NumPy matrix, by the BFGS recursion from ``gamma I``.

    ``H <- (I - rho s y^T) H (I - rho y s^T) + rho s s^T`` for each pair, oldest first, from
    ``H0 = gamma I`` (``gamma`` from the newest pair; ``I`` when there is none). An
    ``O(m n^2)`` cross-check of the two-loop recursion for the properties and tests, on the host.
    """
    S, Y = _host(S), _host(Y)
    m, n = S.shape
    eye = np.eye(n)
    H = (S[-1] @ Y[-1]) / (Y[-1] @ Y[-1]) * eye if m else eye
    for s, y in zip(S, Y):
        rho = 1.0 / (s @ y)
        V = eye - rho * np.outer(y, s)
        H = V.T @ H @ V + rho * np.outer(s, s)
    return H


# Curvature pairs: y_i = c_i (s_i + theta_i |s_i| u_i) with |u_i| <= 1 and theta_i <= 1/2, so
# s_i.y_i >= c_i |s_i|^2 / 2 > 0 and the angle between s_i and y_i stays under 60 degrees:
# every update then stays well conditioned, and finite-difference steps never reach s.y = 0.
LBFGS_MAX_THETA = 0.5


@st.composite
def _lbfgs_examples(draw):
    n = draw(st.integers(1, 4))
    m = draw(st.integers(1, max(1, min(3, (MAX_ELEMENTS // n - 1) // 2))))
    s_scale = 10.0 ** draw(st.integers(-2, 2))
    g = draw(float_arrays((n,), scale=10.0 ** draw(st.integers(-3, 3))))
    S = draw(float_arrays((m, n), scale=s_scale, specials=()))
    U = draw(float_arrays((m, n), scale=1.0, specials=()))
    for i in range(m):
        if np.linalg.norm(S[i]) < 0.5 * s_scale:
            S[i, i % n] += s_scale if S[i, i % n] >= 0 else -s_scale  # keep every step away from 0
    Y = np.empty_like(S)
    for i in range(m):
        c = draw(st.sampled_from([1.0, 0.5, 2.0, 10.0, 0.1]))
        theta = draw(st.sampled_from([0.0, 0.25, LBFGS_MAX_THETA]))
        u = U[i] / max(np.linalg.norm(U[i]), 1.0)
        Y[i] = c * (S[i] + theta * np.linalg.norm(S[i]) * u)
    return Example((g, S, Y))


def lbfgs_properties(example, xp, *, direction=None):
    """What the gradient check does not see: ``direction`` (default :func:`lbfgs_direction`) is
    the dense BFGS inverse Hessian applied to ``g`` (negated), meets the newest secant
    condition ``H_k y_{m-1} = s_{m-1}``, and descends (``g.d < 0`` for ``g != 0``)."""
    direction = direction or lbfgs_direction
    g, S, Y = (xp.asarray(a) for a in example.inputs)
    H = lbfgs_dense_inverse_hessian(S, Y)
    gh, Sh, Yh = _host(g), _host(S), _host(Y)
    d = _host(direction(g, S, Y, xp=xp))
    want = -(H @ gh)
    scale = np.linalg.norm(H, 2) * np.linalg.norm(gh)
    assert np.linalg.norm(d - want) <= 1e-10 * scale, f"lbfgs direction {d} is not -H g = {want} (dense BFGS recursion), off by {np.linalg.norm(d - want):.3g} of |H| |g| = {scale:.3g}"
    if Sh.shape[0]:
        m = Sh.shape[0]
        s, y = Sh[-1], Yh[-1]
        hy = -_host(direction(Y[m - 1, :], S, Y, xp=xp))
        limit = 1e-10 * np.linalg.norm(H, 2) * np.linalg.norm(y)
        assert np.linalg.norm(hy - s) <= limit, f"secant condition fails: H y_(m-1) = {hy}, s_(m-1) = {s} (off by {np.linalg.norm(hy - s):.3g})"
    if np.any(gh != 0):
        assert gh @ d < 0, f"lbfgs direction {d} is not a descent direction for g = {gh}: g.d = {gh @ d}"


register(Op("lbfgs_direction", "optimizer", lbfgs_direction_forward, lbfgs_direction_backward, _lbfgs_examples, "L-BFGS two-loop direction -H_k g from m curvature pairs (S, Y), H0 = gamma I", properties=lbfgs_properties, reference="lbfgs_direction"))
