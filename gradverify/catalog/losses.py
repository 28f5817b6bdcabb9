"""Losses: numerically stable, explicit about their reduction (``"mean"``, ``"sum"``, ``"none"``)."""

import numpy as np
from hypothesis import strategies as st

from gradverify._backend import device_of, namespace_of
from gradverify._errors import InvalidArgument
from gradverify.catalog import Example, Op, register
from gradverify.catalog.layers import log_softmax_forward
from gradverify.strategies import float_arrays

REDUCTIONS = ("mean", "sum", "none")


def _reduce(per_example, reduction, xp):
    if reduction == "mean":
        return xp.mean(per_example)
    if reduction == "sum":
        return xp.sum(per_example)
    if reduction == "none":
        return per_example
    raise InvalidArgument(f"reduction={reduction!r}; choose from {REDUCTIONS}")


def _scale_for(dout, reduction, n, xp):
    """The upstream gradient per example, shaped to broadcast against (n, ...)."""
    if reduction == "mean":
        return dout / n
    if reduction == "sum":
        return dout
    return dout[:, None]


def softmax_cross_entropy_forward(logits, labels, /, *, reduction="mean", xp=None):
    """Cross-entropy of ``softmax(logits)`` against integer ``labels``.

    Parameters
    ----------
    logits : array (n, c)
        Unnormalized scores; never probabilities.
    labels : integer array (n,)
        Class indices in ``[0, c)``; not differentiated.
    reduction : {"mean", "sum", "none"}
        Mean or sum over the n examples, or the per-example losses.

    Notes
    -----
    ``loss_i = -log_softmax(logits_i)[labels_i]`` with the log-sum-exp taken after
    subtracting the row maximum (no ``eps`` inside a ``log``). The gradient with respect to
    the logits is ``softmax(logits) - onehot(labels)``, divided by n for the mean.
    """
    xp = xp or namespace_of(logits)
    logp, _ = log_softmax_forward(logits, axis=-1, xp=xp)
    onehot = xp.astype(labels[:, None] == xp.arange(logits.shape[-1], device=device_of(labels)), logp.dtype)
    per_example = -xp.sum(onehot * logp, axis=-1)
    return _reduce(per_example, reduction, xp), (logp, onehot, reduction)


def softmax_cross_entropy_backward(dout, cache, *, xp=None):
    logp, onehot, reduction = cache
    xp = xp or namespace_of(logp)
    scale = _scale_for(dout, reduction, logp.shape[0], xp)
    return scale * (xp.exp(logp) - onehot), None


def mse_forward(pred, target, /, *, reduction="mean", xp=None):
    """Squared error ``(pred - target)^2``, averaged (or summed) over every element.

    Notes
    -----
    ``reduction="mean"`` divides by the number of elements, so the gradient with respect to
    ``pred`` is ``2 (pred - target) / size`` and with respect to ``target`` its negative.
    ``"none"`` returns the elementwise squares.
    """
    xp = xp or namespace_of(pred, target)
    diff = pred - target
    sq = diff * diff
    if reduction == "none":
        return sq, (diff, reduction)
    return _reduce(sq, reduction, xp), (diff, reduction)


def mse_backward(dout, cache, *, xp=None):
    diff, reduction = cache
    size = int(np.prod(diff.shape))
    g = 2.0 * diff * (dout / size if reduction == "mean" else dout)
    return g, -g


def l1_forward(pred, target, /, *, reduction="mean", xp=None):
    """Absolute error ``|pred - target|``, averaged (or summed) over every element.

    Notes
    -----
    Not differentiable where ``pred == target``; the backward uses the subgradient 0 there
    (``sign(0) = 0``).
    """
    xp = xp or namespace_of(pred, target)
    diff = pred - target
    if reduction == "none":
        return xp.abs(diff), (diff, reduction)
    return _reduce(xp.abs(diff), reduction, xp), (diff, reduction)


def l1_backward(dout, cache, *, xp=None):
    diff, reduction = cache
    xp = xp or namespace_of(diff)
    size = int(np.prod(diff.shape))
    g = xp.sign(diff) * (dout / size if reduction == "mean" else dout)
    return g, -g


# -- example strategies ------------------------------------------------------------------


@st.composite
def _ce_examples(draw):
    n, c = draw(st.integers(1, 5)), draw(st.integers(2, 6))
    logits = draw(float_arrays((n, c), scale=draw(st.sampled_from([1.0, 10.0, 300.0]))))
    labels = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(0, c, size=n)
    return Example((logits, labels), {"reduction": draw(st.sampled_from(REDUCTIONS))})


@st.composite
def _pair_examples(draw, ties):
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    pred, target = draw(float_arrays(shape)), draw(float_arrays(shape))
    if ties and draw(st.booleans()):
        target.reshape(-1)[0] = pred.reshape(-1)[0]  # a kink of |pred - target|
    return Example((pred, target), {"reduction": draw(st.sampled_from(REDUCTIONS))})


register(Op("softmax_cross_entropy", "loss", softmax_cross_entropy_forward, softmax_cross_entropy_backward, _ce_examples, "softmax cross-entropy on logits with integer labels", wrt=(0,), reference="softmax_cross_entropy"))
register(Op("mse", "loss", mse_forward, mse_backward, lambda: _pair_examples(ties=False), "mean squared error (L2 loss)", reference="mse"))
register(Op("l1", "loss", l1_forward, l1_backward, lambda: _pair_examples(ties=True), "mean absolute error (L1 loss)", kinks=("pred = target",), reference="l1"))
