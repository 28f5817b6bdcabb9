"""Losses: numerically stable, explicit about their reduction (``"mean"``, ``"sum"``, ``"none"``)."""

import numpy as np
from hypothesis import strategies as st

from gradverify._backend import device_of, namespace_of, to_numpy
from gradverify._errors import InvalidArgument
from gradverify.catalog import Example, Op, register
from gradverify.catalog.layers import log_softmax_forward, sigmoid_forward
from gradverify.strategies import float_arrays, shapes

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


def softmax_cross_entropy_probs_forward(logits, targets, /, *, reduction="mean", xp=None):
    """Cross-entropy of ``softmax(logits)`` against probability targets (soft labels).

    Parameters
    ----------
    logits : array (n, c)
        Unnormalized scores; never probabilities.
    targets : array (n, c)
        Probabilities: each row non-negative and summing to 1 (one-hot rows included).
    reduction : {"mean", "sum", "none"}
        Mean or sum over the n examples, or the per-example losses (n,).

    Notes
    -----
    ``loss_i = -sum_c targets_ic log_softmax(logits_i)_c``, with the log-sum-exp taken after
    subtracting the row maximum (no ``eps`` inside a ``log``; a zero target contributes 0).
    Both inputs are differentiated, with ``p = softmax(logits)``:

    ``dlogits_i = p_i sum_c targets_ic - targets_i``, which is ``p_i - targets_i`` on rows
    that sum to 1 (the general form is the derivative of the formula for any targets, so
    it stays exact where a float row sums to 1 only up to rounding), and
    ``dtargets_i = -log_softmax(logits_i)``; both divided by n for the mean.
    """
    xp = xp or namespace_of(logits, targets)
    logp, _ = log_softmax_forward(logits, axis=-1, xp=xp)
    per_example = -xp.sum(targets * logp, axis=-1)
    return _reduce(per_example, reduction, xp), (logp, targets, reduction)


def softmax_cross_entropy_probs_backward(dout, cache, *, xp=None):
    logp, targets, reduction = cache
    xp = xp or namespace_of(logp, targets)
    scale = _scale_for(dout, reduction, logp.shape[0], xp)
    mass = xp.sum(targets, axis=-1, keepdims=True)
    return scale * (xp.exp(logp) * mass - targets), -scale * logp


def sigmoid_binary_cross_entropy_forward(logits, targets, /, *, reduction="mean", xp=None):
    """Binary cross-entropy of ``sigmoid(logits)`` against targets in [0, 1], on logits.

    Parameters
    ----------
    logits : array (any shape)
        Unnormalized scores ``z``; never probabilities.
    targets : array like logits
        Probabilities ``y`` in [0, 1] (hard 0/1 labels or soft ones).
    reduction : {"mean", "sum", "none"}
        Mean or sum over every element, or the elementwise losses.

    Notes
    -----
    ``loss = -y log sigmoid(z) - (1 - y) log(1 - sigmoid(z))``, evaluated in the stable form
    ``max(z, 0) - z y + log1p(exp(-|z|))``: no exponential overflows and no ``eps`` inside a
    ``log``. Both inputs are differentiated: ``dz = sigmoid(z) - y`` and ``dy = -z`` (the
    loss is linear in ``y``), divided by the number of elements for the mean.

    The function is smooth everywhere: at ``z = 0`` the kinks of ``max(z, 0)`` (slopes 0
    and 1) and of ``log1p(exp(-|z|))`` (slopes 1/2 and -1/2) cancel, both sides give 1/2.
    """
    xp = xp or namespace_of(logits, targets)
    elementwise = xp.maximum(logits, 0.0) - logits * targets + xp.log1p(xp.exp(-xp.abs(logits)))
    return _reduce(elementwise, reduction, xp), (logits, targets, reduction)


def sigmoid_binary_cross_entropy_backward(dout, cache, *, xp=None):
    logits, targets, reduction = cache
    xp = xp or namespace_of(logits, targets)
    size = int(np.prod(logits.shape))
    scale = dout / size if reduction == "mean" else dout
    s, _ = sigmoid_forward(logits, xp=xp)
    return scale * (s - targets), -scale * logits


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


@st.composite
def _prob_target_examples(draw):
    n, c = draw(st.integers(1, 5)), draw(st.integers(2, 6))
    logits = draw(float_arrays((n, c), scale=draw(st.sampled_from([1.0, 10.0, 300.0]))))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["soft", "onehot", "uniform", "sparse"]))
    if kind == "onehot":
        targets = np.eye(c)[rng.integers(0, c, size=n)]
    elif kind == "uniform":
        targets = np.full((n, c), 1.0 / c)
    else:
        targets = rng.random((n, c))
        if kind == "sparse":
            targets[rng.random((n, c)) < 0.5] = 0.0
            targets[np.arange(n), rng.integers(0, c, size=n)] += 0.5  # no row is all zeros
        targets /= targets.sum(axis=-1, keepdims=True)
    return Example((logits, targets), {"reduction": draw(st.sampled_from(REDUCTIONS))})


@st.composite
def _binary_examples(draw):
    shape = draw(shapes(max_dims=2))
    logits = draw(float_arrays(shape, scale=draw(st.sampled_from([1.0, 10.0, 100.0, 1e-3]))))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        targets = rng.integers(0, 2, size=shape).astype(np.float64)  # hard labels
    else:
        targets = rng.random(shape)
    if draw(st.booleans()):
        logits.reshape(-1)[0] = 0.0  # where max(z, 0) and |z| have their (cancelling) kinks
    return Example((logits, targets), {"reduction": draw(st.sampled_from(REDUCTIONS))})


def _per_example_gradient_property(forward, backward, wrt):
    """The batch gradient is the mean (or sum) of the single-example gradients, row by row.

    For ``reduction="mean"`` the gradient of the batch loss with respect to row i is the
    gradient of example i alone divided by n; for ``"sum"`` it is that gradient itself.
    """

    def check(example, xp):
        reduction = example.params.get("reduction", "mean")
        if reduction == "none":
            return
        inputs = example.inputs
        n = inputs[0].shape[0]
        one = xp.asarray(1.0)
        _, cache = forward(*(xp.asarray(a) for a in inputs), reduction=reduction)
        batch = backward(one, cache)
        rows = []
        for i in range(n):
            _, cache_i = forward(*(xp.asarray(a[i : i + 1]) for a in inputs), reduction=reduction)
            rows.append(backward(one, cache_i))
        for k in wrt:
            got = np.asarray(to_numpy(batch[k]), dtype=np.float64)
            stacked = np.concatenate([np.asarray(to_numpy(r[k]), dtype=np.float64) for r in rows], axis=0)
            want = stacked / n if reduction == "mean" else stacked
            tol = 1e-14 * np.max(np.abs(want), initial=0.0) + 1e-300
            assert np.all(np.abs(got - want) <= tol), f"input {k}: the batch gradient is not the {reduction} of the per-example gradients (max diff {np.max(np.abs(got - want)):.3g})"

    return check


register(Op("softmax_cross_entropy", "loss", softmax_cross_entropy_forward, softmax_cross_entropy_backward, _ce_examples, "softmax cross-entropy on logits with integer labels", wrt=(0,), reference="softmax_cross_entropy", properties=_per_example_gradient_property(softmax_cross_entropy_forward, softmax_cross_entropy_backward, (0,))))
register(Op("mse", "loss", mse_forward, mse_backward, lambda: _pair_examples(ties=False), "mean squared error (L2 loss)", reference="mse", properties=_per_example_gradient_property(mse_forward, mse_backward, (0, 1))))
register(Op("l1", "loss", l1_forward, l1_backward, lambda: _pair_examples(ties=True), "mean absolute error (L1 loss)", kinks=("pred = target",), reference="l1"))
register(Op("softmax_cross_entropy_probs", "loss", softmax_cross_entropy_probs_forward, softmax_cross_entropy_probs_backward, _prob_target_examples, "softmax cross-entropy on logits with probability targets", reference="softmax_cross_entropy_probs", properties=_per_example_gradient_property(softmax_cross_entropy_probs_forward, softmax_cross_entropy_probs_backward, (0, 1))))
register(Op("sigmoid_binary_cross_entropy", "loss", sigmoid_binary_cross_entropy_forward, sigmoid_binary_cross_entropy_backward, _binary_examples, "binary cross-entropy on logits (sigmoid), targets in [0, 1]", reference="sigmoid_binary_cross_entropy", properties=_per_example_gradient_property(sigmoid_binary_cross_entropy_forward, sigmoid_binary_cross_entropy_backward, (0, 1))))
