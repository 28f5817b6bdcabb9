"""Regularizers: penalties on a parameter array ``w`` (any shape), each a 0-d array.

``lam`` (λ) scales the penalty; the gradient is that of the penalty alone, to be added to
the loss gradient. Like the other catalog modules, each function takes its array namespace
from its input (or from ``xp=``).
"""

from hypothesis import strategies as st

from gradverify._backend import namespace_of
from gradverify._errors import InvalidArgument
from gradverify.catalog import Example, Op, register
from gradverify.strategies import float_arrays, shapes


def _check_lam(lam):
    if isinstance(lam, bool) or not (isinstance(lam, (int, float)) and lam >= 0):
        raise InvalidArgument(f"lam={lam!r} must be a non-negative number (the penalty's weight)")


def l1_penalty_forward(w, /, *, lam=0.01, xp=None):
    """L1 penalty ``lam * sum |w|`` (lasso).

    Parameters
    ----------
    w : array (any shape)
        The parameters; every element is penalized.
    lam : float >= 0

    Returns
    -------
    out : 0-d array

    Notes
    -----
    ``dw = lam * sign(w)``. Not differentiable where an element of ``w`` is 0; the backward
    uses the subgradient 0 there (``sign(0) = 0``), the one that leaves a zero weight alone.
    """
    _check_lam(lam)
    xp = xp or namespace_of(w)
    return lam * xp.sum(xp.abs(w)), (w, lam)


def l1_penalty_backward(dout, cache, *, xp=None):
    w, lam = cache
    xp = xp or namespace_of(w)
    return (dout * lam * xp.sign(w),)


def l2_penalty_forward(w, /, *, lam=0.01, xp=None):
    """L2 penalty ``lam / 2 * sum w^2`` (ridge, weight decay).

    Parameters
    ----------
    w : array (any shape)
    lam : float >= 0

    Returns
    -------
    out : 0-d array

    Notes
    -----
    The factor 1/2 makes the gradient ``dw = lam * w``, so that with plain gradient descent
    ``lam`` is the weight-decay rate. (:func:`elastic_net_forward` has no such 1/2.)
    """
    _check_lam(lam)
    xp = xp or namespace_of(w)
    return 0.5 * lam * xp.sum(w * w), (w, lam)


def l2_penalty_backward(dout, cache, *, xp=None):
    w, lam = cache
    return (dout * lam * w,)


def elastic_net_forward(w, /, *, lam=0.01, alpha=0.5, xp=None):
    """Elastic net ``lam * (alpha * sum |w| + (1 - alpha) * sum w^2)``.

    Parameters
    ----------
    w : array (any shape)
    lam : float >= 0
        The overall weight.
    alpha : float in [0, 1]
        The L1 share: 1 is :func:`l1_penalty_forward`; 0 is a squared penalty.

    Returns
    -------
    out : 0-d array

    Notes
    -----
    The squared term has *no* factor 1/2 (the formula as specified, unlike scikit-learn's
    ``ElasticNet``, which halves it): with ``alpha = 0`` this equals
    ``l2_penalty(w, lam=2 * lam)``, and with ``alpha = 1`` it equals ``l1_penalty(w, lam=lam)``.

    ``dw = lam * (alpha * sign(w) + 2 (1 - alpha) w)``; where an element of ``w`` is 0 (a
    kink when ``alpha > 0``) the backward uses the subgradient 0, as ``l1_penalty`` does.
    """
    _check_lam(lam)
    if isinstance(alpha, bool) or not (isinstance(alpha, (int, float)) and 0.0 <= alpha <= 1.0):
        raise InvalidArgument(f"alpha={alpha!r} must be a number in [0, 1] (the L1 share)")
    xp = xp or namespace_of(w)
    return lam * (alpha * xp.sum(xp.abs(w)) + (1.0 - alpha) * xp.sum(w * w)), (w, lam, alpha)


def elastic_net_backward(dout, cache, *, xp=None):
    w, lam, alpha = cache
    xp = xp or namespace_of(w)
    return (dout * lam * (alpha * xp.sign(w) + 2.0 * (1.0 - alpha) * w),)


# -- example strategies ------------------------------------------------------------------

LAMS = (0.01, 1e-4, 0.5, 1.0, 3.0)


@st.composite
def _weights(draw):
    w = draw(float_arrays(shapes(max_dims=3, max_side=4)))
    if draw(st.booleans()):
        w.reshape(-1)[0] = 0.0  # the kink of |w|
    return w


@st.composite
def _penalty_examples(draw):
    return Example((draw(_weights()),), {"lam": draw(st.sampled_from(LAMS))})


@st.composite
def _elastic_net_examples(draw):
    alpha = draw(st.sampled_from([0.5, 0.0, 0.1, 0.9, 1.0]))
    return Example((draw(_weights()),), {"lam": draw(st.sampled_from(LAMS)), "alpha": alpha})


register(Op("l1_penalty", "regularizer", l1_penalty_forward, l1_penalty_backward, _penalty_examples, "L1 penalty lam * sum |w|", kinks=("w = 0",), reference="l1_penalty"))
register(Op("l2_penalty", "regularizer", l2_penalty_forward, l2_penalty_backward, _penalty_examples, "L2 penalty lam / 2 * sum w^2", reference="l2_penalty"))
register(Op("elastic_net", "regularizer", elastic_net_forward, elastic_net_backward, _elastic_net_examples, "elastic net lam * (alpha sum |w| + (1 - alpha) sum w^2)", kinks=("w = 0 (alpha > 0)",), reference="elastic_net"))
