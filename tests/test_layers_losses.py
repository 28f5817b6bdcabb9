"""Maxout, batch normalization, dropout, the soft-label and binary cross-entropies and the
regularizers: their properties, the engine on Hypothesis examples, and deliberately wrong
backwards that the engine must blame on the analytic side."""

import dataclasses

import array_api_compat.numpy as np_xp
import numpy as np
import pytest
from hypothesis import given, settings

from gradverify import InvalidArgument, _runner, catalog
from gradverify._backend import load_backend, namespace_of, to_numpy
from gradverify.catalog import Example, layers, losses, regularizers

NEW_OPS = {
    "maxout": "layer",
    "batchnorm_train": "layer",
    "batchnorm_infer": "layer",
    "batchnorm_running_update": "layer",
    "dropout": "layer",
    "softmax_cross_entropy_probs": "loss",
    "sigmoid_binary_cross_entropy": "loss",
    "l1_penalty": "regularizer",
    "l2_penalty": "regularizer",
    "elastic_net": "regularizer",
}


def host(a):
    return np.asarray(to_numpy(a), dtype=np.float64)


def on(xp, *arrays):
    return tuple(xp.asarray(a) for a in arrays)


# -- the engine on every new op, both backends ---------------------------------------------


@pytest.mark.parametrize("name", sorted(NEW_OPS))
def test_engine_verifies_new_op(name, xp):
    op = catalog.get(name)
    assert op.family == NEW_OPS[name]

    @settings(deadline=None, max_examples=max(8, settings.default.max_examples // 3))
    @given(op.examples())
    def check(example):
        result = _runner.check_op(op, example, xp)
        assert result.passed, str(result)

    check()


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "mse"])
def test_batch_gradient_is_mean_of_per_example_gradients_on_examples(name, xp):
    op = catalog.get(name)

    @settings(deadline=None, max_examples=max(8, settings.default.max_examples // 3))
    @given(op.examples())
    def check(example):
        op.properties(example, xp)

    check()


# -- batch normalization ---------------------------------------------------------------


def _columns(rng, n):
    """Columns of very different spreads: ordinary, near-constant, exactly constant, wide."""
    return np.stack([rng.standard_normal(n), 3.0 + 1e-9 * rng.standard_normal(n), np.full(n, -2.5), 1e3 * rng.standard_normal(n) + 7.0], axis=1)


@pytest.mark.parametrize("eps", [1e-5, 0.1])
def test_batchnorm_train_gives_zero_mean_and_variance_var_over_var_plus_eps(xp, eps):
    rng = np.random.default_rng(0)
    x = _columns(rng, 6)
    d = x.shape[1]
    out, _ = layers.batchnorm_train_forward(*on(xp, x, np.ones(d), np.zeros(d)), eps=eps)
    out = host(out)
    var = x.var(axis=0)
    np.testing.assert_allclose(out.mean(axis=0), 0.0, rtol=0, atol=1e-14)
    np.testing.assert_allclose(out.var(axis=0), var / (var + eps), rtol=1e-13, atol=1e-15)
    # The same statement, at 50 digits and in float64 on the backend, over Hypothesis examples.
    layers._batchnorm_properties(Example((x, np.ones(d), np.zeros(d)), {"eps": eps}), xp)


def test_batchnorm_train_batch_of_one_is_beta_with_zero_gradients(xp):
    x, gamma, beta = np.array([[1.5, -3.0, 0.0]]), np.array([2.0, -1.0, 0.5]), np.array([0.25, 4.0, -1.0])
    out, cache = layers.batchnorm_train_forward(*on(xp, x, gamma, beta))
    np.testing.assert_array_equal(host(out), beta[None, :])
    dx, dgamma, dbeta = layers.batchnorm_train_backward(xp.asarray(np.array([[0.5, -2.0, 3.0]])), cache)
    np.testing.assert_array_equal(host(dx), 0.0)
    np.testing.assert_array_equal(host(dgamma), 0.0)
    np.testing.assert_array_equal(host(dbeta), [0.5, -2.0, 3.0])


def test_batchnorm_infer_with_batch_statistics_matches_train(xp):
    x = _columns(np.random.default_rng(1), 5)
    gamma, beta = np.array([1.0, 2.0, -0.5, 3.0]), np.array([0.0, 1.0, 2.0, -1.0])
    train, _ = layers.batchnorm_train_forward(*on(xp, x, gamma, beta), eps=1e-3)
    infer, _ = layers.batchnorm_infer_forward(*on(xp, x, gamma, beta, x.mean(axis=0), x.var(axis=0)), eps=1e-3)
    np.testing.assert_allclose(host(train), host(infer), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("unbiased", [True, False])
def test_batchnorm_running_update_formula(xp, unbiased):
    rng = np.random.default_rng(2)
    x, rm, rv = rng.standard_normal((5, 3)), rng.standard_normal(3), rng.random(3)
    out, _ = layers.batchnorm_running_update_forward(*on(xp, x, rm, rv), momentum=0.9, unbiased=unbiased)
    want = np.concatenate([0.9 * rm + 0.1 * x.mean(axis=0), 0.9 * rv + 0.1 * x.var(axis=0, ddof=int(unbiased))])
    np.testing.assert_allclose(host(out), want, rtol=1e-14)


def test_batchnorm_argument_errors(xp):
    x, s = xp.asarray(np.ones((1, 2))), xp.asarray(np.ones(2))
    with pytest.raises(InvalidArgument, match="n >= 2"):
        layers.batchnorm_running_update_forward(x, s, s)
    layers.batchnorm_running_update_forward(x, s, s, unbiased=False)
    with pytest.raises(InvalidArgument, match="momentum"):
        layers.batchnorm_running_update_forward(x, s, s, momentum=1.5, unbiased=False)
    with pytest.raises(InvalidArgument, match="eps"):
        layers.batchnorm_train_forward(x, s, s, eps=0.0)


# -- dropout ---------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_mask_mean_is_near_p(p):
    size = 200_000
    keep = layers.dropout_mask((size,), p, seed=7)
    assert abs(keep.mean() - p) <= 6 * np.sqrt(p * (1 - p) / size)


@pytest.mark.parametrize("p", [0.2, 0.8])
def test_dropout_is_unbiased(xp, p):
    """Inverted scaling: E[out] = x; the mean of out - x over 200k elements is within 6 sigma of 0."""
    x = 1.0 + np.random.default_rng(3).standard_normal(200_000)
    out, _ = layers.dropout_forward(xp.asarray(x), p=p, seed=11)
    sigma = np.sqrt(np.sum(x**2) * (1 - p) / p) / x.size
    assert abs(host(out).mean() - x.mean()) <= 6 * sigma
    assert set(np.unique(host(out) / x).round(12)) <= {0.0, round(1 / p, 12)}


def test_dropout_same_seed_same_mask_on_numpy_and_strict():
    strict = load_backend("strict")
    x = np.random.default_rng(4).standard_normal((7, 9)) + 2.0
    a, _ = layers.dropout_forward(np_xp.asarray(x), p=0.6, seed=123)
    b, _ = layers.dropout_forward(strict.asarray(x), p=0.6, seed=123)
    np.testing.assert_array_equal(host(a), host(b))
    c, _ = layers.dropout_forward(strict.asarray(x), p=0.6, seed=124)
    assert not np.array_equal(host(a), host(c))


def test_dropout_modes_and_mask_parameter(xp):
    x = np.random.default_rng(5).standard_normal((4, 6))
    mask = layers.dropout_mask(x.shape, 0.7, seed=9)
    by_seed, _ = layers.dropout_forward(xp.asarray(x), p=0.7, seed=9)
    by_mask, cache = layers.dropout_forward(xp.asarray(x), p=0.7, mask=mask)
    np.testing.assert_array_equal(host(by_seed), host(by_mask))
    np.testing.assert_array_equal(host(by_mask), np.where(mask, x / 0.7, 0.0))
    (dx,) = layers.dropout_backward(xp.asarray(np.ones_like(x)), cache)
    np.testing.assert_array_equal(host(dx), np.where(mask, 1 / 0.7, 0.0))
    ident, cache = layers.dropout_forward(xp.asarray(x), p=0.7, seed=9, training=False)
    np.testing.assert_array_equal(host(ident), x)
    np.testing.assert_array_equal(host(layers.dropout_backward(xp.asarray(x), cache)[0]), x)
    for bad in ({"p": 0.5}, {"p": 0.5, "seed": 1, "mask": mask}, {"p": 0.0, "seed": 1}, {"p": 0.5, "mask": mask[:2]}):
        with pytest.raises(InvalidArgument):
            layers.dropout_forward(xp.asarray(x), **bad)


# -- maxout ------------------------------------------------------------------------------


def _duplicated_maxout(n=3):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((n, 2))
    w, b = rng.standard_normal((3, 2, 2)), rng.standard_normal((3, 2))
    w[1], b[1] = w[0], b[0]  # pieces 0 and 1 tie everywhere
    b[2] -= 100.0  # piece 2 never wins
    return x, w, b


@pytest.mark.parametrize("ties", ["split", "first"])
def test_maxout_tie_rules(xp, ties):
    x, w, b = _duplicated_maxout()
    out, cache = layers.maxout_forward(*on(xp, x, w, b), ties=ties)
    np.testing.assert_allclose(host(out), x @ w[0] + b[0], rtol=1e-14)
    dout = np.random.default_rng(7).standard_normal(host(out).shape)
    dx, dw, db = (host(g) for g in layers.maxout_backward(xp.asarray(dout), cache))
    share = (0.5, 0.5) if ties == "split" else (1.0, 0.0)
    for j, s in enumerate(share):
        np.testing.assert_allclose(dw[j], s * x.T @ dout, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(db[j], s * dout.sum(axis=0), rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(dw[2], 0.0)
    np.testing.assert_allclose(dx, dout @ w[0].T, rtol=1e-14)  # smooth in x: both rules agree


def test_maxout_first_argmax_passes_where_the_function_is_convex(xp):
    """With a positive cotangent phi is convex in (w, b): the first-argmax subgradient then lies
    in every one-sided bracket, and the engine accepts it at an exact tie."""
    x, w, b = _duplicated_maxout()
    example = Example((x, w, b), {"ties": "first"})
    result = _runner.check_example(catalog.get("maxout"), example, xp, cotangent=xp.asarray(np.full((3, 2), 0.75)))
    assert result.passed, str(result)


@pytest.mark.xfail(strict=True, reason="engine limitation: a coordinate's one-sided bracket is narrower than the Clarke subdifferential of a non-convex phi")
def test_maxout_first_argmax_at_a_duplicated_piece_with_mixed_cotangent(xp):
    """x of both signs in one column and a cotangent of both signs: along w[0] alone phi has
    one-sided derivatives v0 x0 and v1 x1, while first-argmax gives their sum (a limiting
    gradient, from b[0] slightly above b[1]). The engine's bracket rejects it."""
    x = np.array([[0.5], [-0.5]])
    w, b = np.array([[[1.0]], [[1.0]]]), np.array([[0.25], [0.25]])
    example = Example((x, w, b), {"ties": "first"})
    result = _runner.check_example(catalog.get("maxout"), example, xp, cotangent=xp.asarray(np.array([[1.0], [-1.0]])))
    assert result.passed, str(result)


# -- losses ------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_cross_entropy_is_smooth_at_zero_logits(xp, reduction):
    logits, targets = np.array([[0.0, 0.0, 1.5], [-2.0, 0.0, 30.0]]), np.array([[0.3, 1.0, 0.0], [0.5, 0.0, 1.0]])
    op = catalog.get("sigmoid_binary_cross_entropy")
    result = _runner.check_example(op, Example((logits, targets), {"reduction": reduction}), xp)
    assert result.passed, str(result)
    assert result.per_input[0].kinks == 0, str(result)
    out, cache = losses.sigmoid_binary_cross_entropy_forward(*on(xp, logits, targets), reduction="sum")
    y = targets
    want = -(y * np.log(1 / (1 + np.exp(-logits))) + (1 - y) * np.log(1 - 1 / (1 + np.exp(-logits))))
    np.testing.assert_allclose(host(out), want.sum(), rtol=1e-12)


def test_soft_label_cross_entropy_matches_integer_labels_on_one_hot_targets(xp):
    rng = np.random.default_rng(8)
    logits, labels = rng.standard_normal((4, 5)) * 10, rng.integers(0, 5, size=4)
    soft, soft_cache = losses.softmax_cross_entropy_probs_forward(*on(xp, logits, np.eye(5)[labels]))
    hard, hard_cache = losses.softmax_cross_entropy_forward(*on(xp, logits, labels))
    np.testing.assert_allclose(host(soft), host(hard), rtol=1e-14)
    one = xp.asarray(1.0)
    dsoft, dtargets = losses.softmax_cross_entropy_probs_backward(one, soft_cache)
    np.testing.assert_allclose(host(dsoft), host(losses.softmax_cross_entropy_backward(one, hard_cache)[0]), rtol=1e-12, atol=1e-16)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    # A log-probability near 0 (p near 1) is a difference of two numbers of the row's scale, so its
    # error is absolute: a few ulps of the largest |log p|, however np.exp and np.log round on this
    # CPU. Relative agreement alone would ask for the same last bit of exp and log on both sides.
    np.testing.assert_allclose(host(dtargets), -log_softmax / 4, rtol=1e-13, atol=1e-14 * np.max(np.abs(log_softmax)) / 4)


def test_batch_gradient_is_mean_of_per_example_gradients(xp):
    rng = np.random.default_rng(9)
    logits, labels = rng.standard_normal((5, 3)), rng.integers(0, 3, size=5)
    one = xp.asarray(1.0)
    _, cache = losses.softmax_cross_entropy_forward(*on(xp, logits, labels))
    batch = host(losses.softmax_cross_entropy_backward(one, cache)[0])
    rows = [host(losses.softmax_cross_entropy_backward(one, losses.softmax_cross_entropy_forward(*on(xp, logits[i : i + 1], labels[i : i + 1]))[1])[0]) for i in range(5)]
    np.testing.assert_allclose(batch, np.concatenate(rows) / 5, rtol=1e-14)
    pred, target = rng.standard_normal((5, 2)), rng.standard_normal((5, 2))
    _, cache = losses.mse_forward(*on(xp, pred, target))
    batch = host(losses.mse_backward(one, cache)[0])
    rows = [host(losses.mse_backward(one, losses.mse_forward(*on(xp, pred[i : i + 1], target[i : i + 1]))[1])[0]) for i in range(5)]
    np.testing.assert_allclose(batch, np.concatenate(rows) / 5, rtol=1e-14)


# -- regularizers ------------------------------------------------------------------------


def test_elastic_net_ends_are_l1_and_unhalved_l2(xp):
    w = xp.asarray(np.array([[0.0, -1.5, 2.0], [0.25, -0.0, 3.0]]))
    l1 = host(regularizers.l1_penalty_forward(w, lam=0.3)[0])
    np.testing.assert_allclose(host(regularizers.elastic_net_forward(w, lam=0.3, alpha=1.0)[0]), l1, rtol=1e-15)
    l2 = host(regularizers.l2_penalty_forward(w, lam=0.6)[0])  # elastic net has no 1/2: lam doubles
    np.testing.assert_allclose(host(regularizers.elastic_net_forward(w, lam=0.3, alpha=0.0)[0]), l2, rtol=1e-15)
    _, cache = regularizers.l1_penalty_forward(w, lam=0.3)
    np.testing.assert_array_equal(host(regularizers.l1_penalty_backward(xp.asarray(1.0), cache)[0]), [[0.0, -0.3, 0.3], [0.3, 0.0, 0.3]])
    with pytest.raises(InvalidArgument, match="alpha"):
        regularizers.elastic_net_forward(w, alpha=1.5)
    with pytest.raises(InvalidArgument, match="lam"):
        regularizers.l2_penalty_forward(w, lam=-1.0)


# -- deliberately wrong backwards ------------------------------------------------------------


def _batchnorm_without_mean_term(dout, cache):
    xhat, inv, gamma = cache
    xp = namespace_of(dout)
    dx, dgamma, dbeta = layers.batchnorm_train_backward(dout, cache)
    g = dout * gamma[..., None, :]
    return dx + inv * xp.sum(g, axis=-2, keepdims=True) / xhat.shape[-2], dgamma, dbeta


def _maxout_to_argmin(dout, cache):
    x, w, z, out, ties = cache
    xp = namespace_of(z)
    return layers.maxout_backward(dout, (x, w, -z, xp.max(-z, axis=-3), ties))


def _bce_with_target_sign_flipped(dout, cache):
    logits, targets, reduction = cache
    return losses.sigmoid_binary_cross_entropy_backward(dout, (logits, -targets, reduction))


def _dropout_without_rescaling(dout, cache):
    m, p = cache
    return (dout * m,)


def _wrong_cases():
    rng = np.random.default_rng(10)
    return {
        "batchnorm_train": (_batchnorm_without_mean_term, Example((rng.standard_normal((4, 3)), rng.standard_normal(3), rng.standard_normal(3)))),
        "maxout": (_maxout_to_argmin, Example((rng.standard_normal((3, 2)), rng.standard_normal((3, 2, 2)), rng.standard_normal((3, 2))))),
        "sigmoid_binary_cross_entropy": (_bce_with_target_sign_flipped, Example((rng.standard_normal((3, 4)), rng.random((3, 4))), {"reduction": "mean"})),
        "dropout": (_dropout_without_rescaling, Example((rng.standard_normal((3, 4)),), {"p": 0.5, "seed": 3})),
    }


@pytest.mark.parametrize("name", sorted(_wrong_cases()))
def test_engine_blames_a_wrong_backward(name, xp):
    backward, example = _wrong_cases()[name]
    op = catalog.get(name)
    assert _runner.check_example(op, example, xp).passed
    result = _runner.check_example(dataclasses.replace(op, backward=backward), example, xp)
    assert not result.passed and result.blame == "analytic", str(result)
    assert result.truth == "lazy"
