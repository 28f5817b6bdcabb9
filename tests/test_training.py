"""gradverify.training: minibatch properties (with mutants that must fail them), metrics, search.

The statistical checks have a false-alarm rate fixed in advance (``ALPHA``) and a tolerance
computed from it and from the number of draws, never tuned to the seed used here:

* the minibatch-gradient variance: Bernstein's inequality for the mean of K independent,
  bounded draws, with the exact variance and range of one draw, both obtained by
  enumerating every size-B subset of a 16-example dataset;
* the share of each decade in log-uniform draws, and the number of seeds on which random
  search beats grid search: exact binomial tails (Bonferroni across the cells tested).
"""

import doctest
import itertools
import json
import math
import subprocess
import sys

import numpy as np
import pytest

import gradverify.training as T
from gradverify import InvalidArgument
from gradverify.catalog.losses import softmax_cross_entropy_backward, softmax_cross_entropy_forward

# The false-alarm rate of every statistical assertion below: the probability that a
# correct implementation fails it, over the seed, is at most this (Bonferroni inside a test).
ALPHA = 1e-6


# -- the property checks, and the mutants they must reject -----------------------------------


def split_epochs(stream, n, batch_size, *, drop_last, epochs):
    """The first ``epochs`` epochs of a stream of batches, as lists of int arrays."""
    per = T.batches_per_epoch(n, batch_size, drop_last=drop_last)
    flat = list(itertools.islice(stream, per * epochs))
    assert len(flat) == per * epochs, f"the stream stopped after {len(flat)} of {per * epochs} batches"
    return [flat[e * per : (e + 1) * per] for e in range(epochs)]


def assert_epoch(batches, n, batch_size, *, drop_last):
    """Every example exactly once (at most once, with drop_last), batches of the right sizes."""
    __tracebackhide__ = True
    sizes = [len(b) for b in batches]
    if drop_last:
        assert all(s == batch_size for s in sizes), f"batch sizes {sizes}; all should be {batch_size}"
    else:
        assert all(s == batch_size for s in sizes[:-1]) and 1 <= sizes[-1] <= batch_size, f"batch sizes {sizes}"
    seen = np.concatenate(batches)
    assert seen.dtype.kind == "i", f"indices of dtype {seen.dtype}"
    assert seen.min() >= 0 and seen.max() < n, f"an index outside [0, {n}): {seen.min()}..{seen.max()}"
    counts = np.bincount(seen, minlength=n)
    repeated = np.flatnonzero(counts > 1)
    assert repeated.size == 0, f"example(s) {repeated.tolist()} visited more than once in an epoch"
    if not drop_last:
        missed = np.flatnonzero(counts == 0)
        assert missed.size == 0, f"example(s) {missed.tolist()} never visited in an epoch"
    else:
        assert seen.size == n - n % batch_size


def assert_reshuffled(epochs):
    """No epoch visits the examples in the same order as the one before it."""
    __tracebackhide__ = True
    orders = [np.concatenate(e) for e in epochs]
    for k in range(1, len(orders)):
        assert not np.array_equal(orders[k], orders[k - 1]), f"epoch {k} repeats the order of epoch {k - 1}"


def repeating_stream(n, batch_size, *, seed):
    """A mutant: a shuffled epoch in which one example takes the place of another."""
    for b in T.minibatches(n, batch_size, seed=seed):
        others = np.flatnonzero(b != 0)
        if 0 in b and others.size:
            b[others[0]] = 0  # example 0 twice, another example never
        yield b


def stale_stream(n, batch_size, *, seed):
    """A mutant: epoch 1 reuses epoch 0's order (the shuffle ran once, not per epoch)."""
    per = T.batches_per_epoch(n, batch_size)
    first = list(itertools.islice(T.minibatches(n, batch_size, seed=seed), per))
    while True:
        yield from (b.copy() for b in first)


def with_replacement_stream(n, batch_size, *, seed):
    """A mutant: each batch drawn with replacement (the right mean, the wrong variance)."""
    rng = np.random.default_rng(seed)
    while True:
        yield rng.integers(n, size=batch_size)


# -- minibatches: argument checks ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"n": 0, "batch_size": 1, "seed": 0}, "n=0"),
        ({"n": -3, "batch_size": 1, "seed": 0}, "n=-3"),
        ({"n": 5, "batch_size": 0, "seed": 0}, "batch_size=0"),
        ({"n": 5, "batch_size": 6, "drop_last": True, "seed": 0}, "batch_size=6"),
        ({"n": 5.0, "batch_size": 2, "seed": 0}, "int(5.0)"),
        ({"n": 5, "batch_size": 2.5, "seed": 0}, "batch_size=2.5"),
        ({"n": True, "batch_size": 2, "seed": 0}, "bool"),
        ({"n": "5", "batch_size": 2, "seed": 0}, "n='5'"),
        ({"n": 5, "batch_size": 2}, "seed is missing"),
        ({"n": 5, "batch_size": 2, "seed": None}, "seed is missing"),
        ({"n": 5, "batch_size": 2, "seed": -1}, "seed=-1"),
        ({"n": 5, "batch_size": 2, "seed": 1.5}, "seed=1.5"),
        ({"n": 5, "batch_size": 2, "seed": 0, "epochs": -1}, "epochs=-1"),
        ({"n": 5, "batch_size": 2, "seed": 0, "epochs": 2.0}, "epochs=2.0"),
        ({"n": 5, "batch_size": 2, "seed": 0, "shuffle": "yes"}, "shuffle="),
        ({"n": 5, "batch_size": 2, "seed": 0, "drop_last": 1}, "drop_last="),
    ],
)
def test_minibatches_rejects_bad_arguments_when_called(kwargs, named):
    """Raised at the call, not at the first next(); the message names the argument and the fix."""
    with pytest.raises(InvalidArgument, match=None) as info:
        T.minibatches(**kwargs)
    assert named in str(info.value)
    assert any(w in str(info.value) for w in ("pass", "use", "must"))
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)


def test_minibatches_accepts_numpy_integers_and_needs_no_seed_unshuffled():
    batches = list(T.minibatches(np.int64(5), np.int32(2), shuffle=False, epochs=1))
    assert [b.tolist() for b in batches] == [[0, 1], [2, 3], [4]]
    assert all(b.dtype == np.intp for b in batches)
    # batch_size above n without drop_last: one batch of everything
    assert [b.tolist() for b in T.minibatches(3, 10, shuffle=False, epochs=2)] == [[0, 1, 2], [0, 1, 2]]


def test_epochs_argument_and_infinite_default():
    assert list(T.minibatches(5, 2, seed=0, epochs=0)) == []
    assert len(list(T.minibatches(5, 2, seed=0, epochs=3))) == 9
    assert len(list(itertools.islice(T.minibatches(5, 2, seed=0), 1000))) == 1000  # epochs=None never stops


def test_yielded_arrays_are_fresh():
    """Changing a yielded batch in place changes no other batch (nor a later epoch, unshuffled)."""
    stream = T.minibatches(4, 2, shuffle=False)
    first = next(stream)
    first[:] = 99
    assert [b.tolist() for b in itertools.islice(stream, 3)] == [[2, 3], [0, 1], [2, 3]]


# -- minibatches: properties -----------------------------------------------------------------

SHAPES = [(10, 3), (12, 4), (7, 7), (9, 1), (13, 5)]


@pytest.mark.parametrize(("n", "batch_size"), SHAPES)
@pytest.mark.parametrize("drop_last", [False, True])
def test_each_epoch_visits_examples_exactly_or_at_most_once(n, batch_size, drop_last):
    epochs = split_epochs(T.minibatches(n, batch_size, seed=7, drop_last=drop_last), n, batch_size, drop_last=drop_last, epochs=6)
    for e in epochs:
        assert_epoch(e, n, batch_size, drop_last=drop_last)
    assert_reshuffled(epochs)


def test_drop_last_leaves_out_different_examples_each_epoch():
    epochs = split_epochs(T.minibatches(10, 4, seed=3, drop_last=True), 10, 4, drop_last=True, epochs=20)
    left_out = {tuple(sorted(set(range(10)) - set(np.concatenate(e).tolist()))) for e in epochs}
    assert len(left_out) > 1


def test_order_is_reproducible_from_the_seed_and_changes_with_it():
    a = [b.tolist() for b in T.minibatches(11, 3, seed=42, epochs=4)]
    b = [b.tolist() for b in T.minibatches(11, 3, seed=42, epochs=4)]
    c = [b.tolist() for b in T.minibatches(11, 3, seed=43, epochs=4)]
    assert a == b
    assert a != c
    # epoch e can be rebuilt alone, from (seed, e)
    assert sum(a[3 * 4 : 4 * 4], []) == T.epoch_order(11, 3, seed=42).tolist()


def test_unshuffled_epochs_repeat_and_the_reshuffle_check_says_so():
    epochs = split_epochs(T.minibatches(6, 2, shuffle=False), 6, 2, drop_last=False, epochs=2)
    with pytest.raises(AssertionError, match="epoch 1 repeats the order of epoch 0"):
        assert_reshuffled(epochs)


def test_mutant_that_repeats_an_example_is_rejected():
    epochs = split_epochs(repeating_stream(10, 5, seed=1), 10, 5, drop_last=False, epochs=3)
    with pytest.raises(AssertionError, match="more than once"):
        for e in epochs:
            assert_epoch(e, 10, 5, drop_last=False)


def test_mutant_that_reuses_the_previous_order_is_rejected():
    epochs = split_epochs(stale_stream(10, 3, seed=1), 10, 3, drop_last=False, epochs=3)
    for e in epochs:
        assert_epoch(e, 10, 3, drop_last=False)  # each epoch on its own is fine
    with pytest.raises(AssertionError, match="repeats the order"):
        assert_reshuffled(epochs)


# -- the epoch average of minibatch gradients is the full-batch gradient ----------------------


def _softmax_regression_grad(X, W, labels):
    """d mean-CE(X @ W, labels) / dW, through the catalog's verified softmax cross-entropy."""
    _, cache = softmax_cross_entropy_forward(X @ W, labels, reduction="mean")
    dlogits, _ = softmax_cross_entropy_backward(1.0, cache)
    return X.T @ dlogits


def _least_squares_grad(X, w, y):
    """d/dw of mean 0.5 (X w - y)^2, by hand."""
    return X.T @ (X @ w - y) / X.shape[0]


def _epoch_average(grad, batches):
    """The batch-size-weighted average of the minibatch gradients (the plain mean for equal batches)."""
    sizes = np.array([len(b) for b in batches], dtype=float)
    return sum(s * grad(b) for s, b in zip(sizes, batches)) / sizes.sum()


@pytest.fixture
def dataset():
    rng = np.random.default_rng(2024)
    X = rng.standard_normal((12, 3))
    return X, rng.standard_normal((3, 4)), rng.integers(4, size=12), rng.standard_normal(3), rng.standard_normal(12)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 4, 6, 12])
def test_epoch_average_of_minibatch_gradients_is_the_full_gradient(dataset, batch_size):
    X, W, labels, w, y = dataset
    full_ce, full_ls = _softmax_regression_grad(X, W, labels), _least_squares_grad(X, w, y)
    for epoch in split_epochs(T.minibatches(12, batch_size, seed=5), 12, batch_size, drop_last=False, epochs=3):
        ce = [_softmax_regression_grad(X[b], W, labels[b]) for b in epoch]
        ls = [_least_squares_grad(X[b], w, y[b]) for b in epoch]
        np.testing.assert_allclose(np.mean(ce, axis=0), full_ce, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(np.mean(ls, axis=0), full_ls, rtol=1e-12, atol=1e-15)


def test_unequal_batches_need_the_size_weighted_average(dataset):
    X, W, labels, _, _ = dataset
    full = _softmax_regression_grad(X, W, labels)
    (epoch,) = split_epochs(T.minibatches(12, 5, seed=0), 12, 5, drop_last=False, epochs=1)  # 5, 5, 2
    weighted = _epoch_average(lambda b: _softmax_regression_grad(X[b], W, labels[b]), epoch)
    np.testing.assert_allclose(weighted, full, rtol=1e-12, atol=1e-15)
    plain = np.mean([_softmax_regression_grad(X[b], W, labels[b]) for b in epoch], axis=0)
    assert not np.allclose(plain, full)


def test_mutant_that_repeats_an_example_breaks_the_epoch_average(dataset):
    X, W, labels, _, _ = dataset
    full = _softmax_regression_grad(X, W, labels)
    (epoch,) = split_epochs(repeating_stream(12, 6, seed=0), 12, 6, drop_last=False, epochs=1)
    average = np.mean([_softmax_regression_grad(X[b], W, labels[b]) for b in epoch], axis=0)
    assert not np.allclose(average, full)


# -- the variance of the minibatch gradient: (1/B) (N-B)/(N-1) times the per-example variance ---

VAR_N = 16
VAR_BATCHES = (1, 2, 4, 8, 12)
VAR_DRAWS = 3000  # independent batches per B: one per epoch, at position epoch % batches_per_epoch


@pytest.fixture(scope="module")
def per_example_grads():
    """Per-example least-squares gradients x_i (x_i . w - y_i) at a fixed w; shape (16, 3)."""
    rng = np.random.default_rng(11)
    X, y, w = rng.standard_normal((VAR_N, 3)), rng.standard_normal(VAR_N), rng.standard_normal(3)
    return X * (X @ w - y)[:, None]


def exact_subset_moments(grads, batch_size):
    """Over every size-B subset (each equally likely): the mean, variance and range of
    q = |mean of the subset's gradients - full gradient|^2."""
    d = grads - grads.mean(axis=0)
    subsets = np.array(list(itertools.combinations(range(len(grads)), batch_size)))
    q = np.sum(d[subsets].mean(axis=1) ** 2, axis=-1)
    mean = float(q.mean())
    return mean, float(q.var()), float(max(mean, q.max() - mean))


def bernstein_halfwidth(draws, variance, bound, alpha):
    """t with P(|mean of `draws` iid draws - their expectation| >= t) <= alpha, for draws
    whose variance is `variance` and which lie within `bound` of their expectation:
    Bernstein, 2 exp(-K t^2 / (2 s^2 + 2 M t / 3)) = alpha, solved for t."""
    log_term = math.log(2 / alpha)
    a = 2 * bound * log_term / 3
    return (a + math.sqrt(a * a + 8 * draws * log_term * variance)) / (2 * draws)


def sampled_q(stream_factory, grads, batch_size, draws, *, per_epoch):
    """q for one batch per epoch (its position rotating), from `draws` epochs of a stream."""
    d = grads - grads.mean(axis=0)
    stream = stream_factory(len(grads), batch_size)
    out = np.empty(draws)
    for e in range(draws):
        epoch = list(itertools.islice(stream, per_epoch))
        b = epoch[e % per_epoch]
        out[e] = np.sum(d[b].mean(axis=0) ** 2)
    return out


def variance_check(stream_factory, grads, batch_size, *, alpha):
    """(passed, message): the sampled mean of q is within the Bernstein half-width of
    (1/B)(N-B)/(N-1) times the per-example variance."""
    n = len(grads)
    per_example = float(np.mean(np.sum((grads - grads.mean(axis=0)) ** 2, axis=1)))
    expected = (n - batch_size) / (batch_size * (n - 1)) * per_example
    mean, var, bound = exact_subset_moments(grads, batch_size)
    assert math.isclose(mean, expected, rel_tol=1e-12, abs_tol=1e-15 * per_example)  # the formula, exactly
    per_epoch = T.batches_per_epoch(n, batch_size, drop_last=True)
    q = sampled_q(stream_factory, grads, batch_size, VAR_DRAWS, per_epoch=per_epoch)
    # plus the rounding of a float64 mean of B gradients (it alone is what B = N shows)
    rounding = (batch_size * np.finfo(np.float64).eps * np.abs(grads).max()) ** 2
    t = bernstein_halfwidth(VAR_DRAWS, var, bound, alpha) + rounding
    observed = float(q.mean())
    msg = f"B={batch_size}: mean |g_B - g|^2 = {observed:.5g}, expected {expected:.5g} +- {t:.3g} (alpha={alpha:g})"
    return abs(observed - expected) <= t, msg


def _shuffled(n, b):
    return T.minibatches(n, b, seed=20261202, drop_last=True)


def test_variance_formula_and_bernstein_halfwidth_by_hand():
    """Sanity of the tools: the exact moments of B = 1 and B = N, and the half-width's limits."""
    grads = np.array([[0.0], [1.0], [2.0], [5.0]])  # mean 2, per-example variance (4+1+0+9)/4 = 3.5
    assert exact_subset_moments(grads, 1)[0] == pytest.approx(3.5)
    assert exact_subset_moments(grads, 4) == (0.0, 0.0, 0.0)
    assert exact_subset_moments(grads, 2)[0] == pytest.approx(3.5 / 2 * (4 - 2) / (4 - 1))
    # no spread and no range: no half-width; the variance term alone: sqrt(2 s^2 log(2/alpha) / K)
    assert bernstein_halfwidth(100, 0.0, 0.0, 0.05) == 0.0
    assert bernstein_halfwidth(100, 4.0, 0.0, 0.05) == pytest.approx(math.sqrt(2 * 4.0 * math.log(40) / 100))


def test_minibatch_gradient_variance_shrinks_like_the_finite_population_formula(per_example_grads):
    alpha = ALPHA / len(VAR_BATCHES)
    for b in VAR_BATCHES:
        passed, msg = variance_check(_shuffled, per_example_grads, b, alpha=alpha)
        assert passed, msg


def test_a_full_batch_has_no_variance(per_example_grads):
    passed, msg = variance_check(lambda n, b: T.minibatches(n, b, seed=0), per_example_grads, VAR_N, alpha=ALPHA)
    assert passed, msg


@pytest.mark.parametrize("batch_size", [4, 8, 12])
def test_mutant_sampling_with_replacement_is_rejected(per_example_grads, batch_size):
    """Its variance is (1/B) times the per-example variance: 1.25x, 1.9x, 3.75x too large here."""
    passed, msg = variance_check(lambda n, b: with_replacement_stream(n, b, seed=1), per_example_grads, batch_size, alpha=ALPHA)
    assert not passed, msg


def test_mutant_without_shuffling_is_rejected(per_example_grads):
    """Fixed batches: the rotating position sees only N/B distinct batches, not a random subset."""
    passed, msg = variance_check(lambda n, b: T.minibatches(n, b, shuffle=False), per_example_grads, 2, alpha=ALPHA)
    assert not passed, msg


# -- metrics --------------------------------------------------------------------------------


def test_accuracy_by_hand():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 3.0], [1.0, 1.0, 5.0], [-1.0, -2.0, -0.5]])
    labels = np.array([0, 2, 2, 2])
    # row 0 right; row 1 a tie between 1 and 2 goes to 1 (wrong); row 2 right; row 3 right
    assert T.accuracy(logits, labels) == 0.75
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert T.accuracy(probs, labels) == 0.75
    assert T.accuracy(logits[:1], labels[:1]) == 1.0
    assert T.accuracy(logits, np.array([1, 1, 0, 0])) == 0.25  # only the tie row, won by its first class


def test_accuracy_counts_a_nan_row_as_wrong():
    logits = np.array([[np.nan, 0.0], [1.0, 0.0], [1.0, np.nan]])
    assert T.accuracy(logits, np.array([0, 0, 0])) == pytest.approx(1 / 3)
    assert T.accuracy(np.full((2, 3), np.nan), np.array([0, 1])) == 0.0


def test_accuracy_takes_other_backends():
    xps = pytest.importorskip("array_api_strict")
    logits = xps.asarray([[0.0, 1.0], [2.0, 1.0]])
    assert T.accuracy(logits, xps.asarray([1, 1])) == 0.5


@pytest.mark.parametrize(
    ("scores", "labels", "named"),
    [
        (np.zeros(3), np.zeros(3, dtype=int), "2-D"),
        (np.zeros((3, 2)), np.zeros(2, dtype=int), "labels has shape"),
        (np.zeros((3, 2)), np.zeros(3), "integer"),
        (np.zeros((3, 2)), np.array([0, 2, 1]), "outside [0, 2)"),
        (np.zeros((3, 2)), np.array([0, -1, 1]), "-1"),
        (np.zeros((0, 2)), np.zeros(0, dtype=int), "n, classes >= 1"),
    ],
)
def test_accuracy_rejects_bad_arguments(scores, labels, named):
    with pytest.raises(InvalidArgument) as info:
        T.accuracy(scores, labels)
    assert named in str(info.value)


def test_dead_relu_fraction_by_hand():
    z = np.array([[-1.0, 2.0, 0.0, -0.1], [-3.0, -1.0, 0.0, 1e-300]])
    # unit 0 dead; unit 1 alive on row 0; unit 2 exactly 0 everywhere: dead; unit 3 alive on row 1
    assert T.dead_relu_fraction(z) == 0.5
    assert T.dead_relu_fraction(z[1:]) == 0.75  # one example: only unit 3 fires
    assert T.dead_relu_fraction(np.array([[np.nan, -1.0]])) == 0.5  # NaN is not <= 0
    # trailing axes are units: (n=2, channels=2, positions=2); only channel 0 position 1 ever fires
    conv = np.array([[[-1.0, 3.0], [-2.0, -2.0]], [[-1.0, -1.0], [0.0, -5.0]]])
    assert T.dead_relu_fraction(conv) == 0.75


def test_dead_relu_fraction_rejects_one_dimensional_input():
    with pytest.raises(InvalidArgument, match="pre_activations has shape"):
        T.dead_relu_fraction(np.zeros(4))


def test_epoch_loss_weights_by_batch_size():
    assert T.epoch_loss([2.0, 2.0, 5.0], [5, 5, 2]) == pytest.approx((10 + 10 + 10) / 12)
    assert T.epoch_loss([np.float32(1.5)], [3]) == 1.5
    with pytest.raises(InvalidArgument):
        T.epoch_loss([1.0, 2.0], [3])
    with pytest.raises(InvalidArgument, match="batch_sizes"):
        T.epoch_loss([1.0], [0])


def test_epoch_record_is_json_safe():
    r = T.EpochRecord(epoch=np.int64(3), loss=np.float32(0.25), train_accuracy=np.float64(0.5), dead_relu_fraction=0.1, extra={"lr": 1e-3})
    d = r.to_dict()
    assert d == {"epoch": 3, "loss": 0.25, "train_accuracy": 0.5, "val_accuracy": None, "dead_relu_fraction": 0.1, "lr": 1e-3}
    assert json.loads(json.dumps(d)) == d
    assert type(d["loss"]) is float and type(d["epoch"]) is int
    extra = {"lr": 1e-3}
    r = T.EpochRecord(epoch=0, loss=1.0, extra=extra)
    extra["lr"] = 1.0
    assert r.to_dict()["lr"] == 1e-3  # the record keeps its own copy
    with pytest.raises(InvalidArgument, match="extra repeats"):
        T.EpochRecord(epoch=0, loss=1.0, extra={"loss": 2.0}).to_dict()
    with pytest.raises(InvalidArgument, match="loss="):
        T.EpochRecord(epoch=0, loss="high")


# -- hyperparameter search ------------------------------------------------------------------


def binomial_pmf(n, p):
    """P(Binomial(n, p) = k) for k = 0..n, from log-gamma (exact to rounding)."""
    k = np.arange(n + 1)
    lgamma = np.vectorize(math.lgamma)
    return np.exp(lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p))


def binomial_upper_tail(n, p, k):
    """P(Binomial(n, p) >= k)."""
    return math.fsum(binomial_pmf(n, p)[max(k, 0) :])


def binomial_acceptance(n, p, alpha):
    """The interval [lo, hi] holding Binomial(n, p) with probability >= 1 - alpha: the
    smallest hi with P(X > hi) <= alpha/2 and the largest lo with P(X < lo) <= alpha/2."""
    pmf = binomial_pmf(n, p)
    above = np.append(np.cumsum(pmf[::-1])[::-1][1:], 0.0)  # above[k] = P(X > k), small terms first
    below = np.concatenate([[0.0], np.cumsum(pmf)[:-1]])  # below[k] = P(X < k)
    hi = int(np.flatnonzero(above <= alpha / 2)[0])
    lo = int(np.flatnonzero(below <= alpha / 2)[-1])
    return lo, hi


def test_binomial_tools_by_hand():
    assert binomial_upper_tail(3, 0.5, 2) == pytest.approx(0.5)
    assert binomial_upper_tail(10, 0.5, 10) == pytest.approx(2**-10)
    assert binomial_acceptance(10, 0.5, 2 * 2**-10 * 1.0001) == (1, 9)


def test_log_uniform_draws_each_decade_equally_and_linear_draws_do_not():
    n, decades = 4000, 4
    lo, hi = binomial_acceptance(n, 1 / decades, ALPHA / decades)
    x = T.LogUniform(1e-5, 1e-1).sample(np.random.default_rng(8), n)
    counts = np.histogram(np.log10(x), bins=decades, range=(-5, -1))[0]
    assert all(lo <= c <= hi for c in counts), (counts, lo, hi)
    linear = T.Uniform(1e-5, 1e-1).sample(np.random.default_rng(8), n)  # the mistake
    counts = np.histogram(np.log10(linear), bins=decades, range=(-5, -1))[0]
    assert not all(lo <= c <= hi for c in counts), (counts, lo, hi)


def test_grid_uses_cell_centers_and_the_budget():
    space = {"lr": T.LogUniform(1e-4, 1e0), "wd": T.Uniform(0.0, 1.0)}
    seen = []
    r = T.grid_search(lambda lr, wd: seen.append((lr, wd)) or lr + wd, space, 12)
    assert len(seen) == len(r.trials) == 12  # 4 x 3: balanced 3 x 3, then one more lr
    assert sorted({lr for lr, _ in seen}) == pytest.approx([10**-3.5, 10**-2.5, 10**-1.5, 10**-0.5])
    assert sorted({wd for _, wd in seen}) == pytest.approx([1 / 6, 1 / 2, 5 / 6])
    assert r.best_params == pytest.approx({"lr": 10**-3.5, "wd": 1 / 6})
    assert len(T.grid_search(lambda lr, wd: 0.0, space, 10).trials) == 9  # 4 x 3 would not fit
    assert len(T.grid_search(lambda lr, wd: 0.0, space, 3).trials) == 2  # balanced: 2 x 1, not 3 x 1


def test_grid_covers_every_choice_and_rejects_a_budget_below_them():
    space = {"act": ["relu", "tanh", "gelu"], "lr": T.LogUniform(1e-3, 1e-1)}
    r = T.grid_search(lambda act, lr: len(act) + lr, space, 7)
    assert len(r.trials) == 6 and {t.params["act"] for t in r.trials} == {"relu", "tanh", "gelu"}
    with pytest.raises(InvalidArgument, match="at least 3"):
        T.grid_search(lambda act, lr: 0.0, space, 2)


def test_random_search_is_reproducible_and_draws_budget_points():
    space = {"lr": T.LogUniform(1e-4, 1e0), "act": T.Choice(("relu", "tanh"))}
    f = lambda lr, act: lr  # noqa: E731
    a, b, c = (T.random_search(f, space, 25, seed=s) for s in (1, 1, 2))
    assert len(a.trials) == 25 and a.trials == b.trials and a.trials != c.trials
    assert all(1e-4 <= t.params["lr"] <= 1.0 and t.params["act"] in ("relu", "tanh") for t in a.trials)
    assert a.best_value == min(t.value for t in a.trials)


def test_search_ranks_nan_below_every_number():
    r = T.grid_search(lambda x: float("nan") if x > 0.5 else -x, {"x": T.Uniform(0, 1)}, 4)
    assert r.best_params == {"x": 0.375}
    assert math.isnan(T.grid_search(lambda x: float("nan"), {"x": T.Uniform(0, 1)}, 2).best_value)


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda: T.random_search(lambda lr: 0.0, {"lr": T.LogUniform(1e-3, 1)}, 5), "seed is missing"),
        (lambda: T.grid_search(lambda lr: 0.0, {"lr": T.LogUniform(1e-3, 1)}, 0), "budget=0"),
        (lambda: T.grid_search(lambda lr: 0.0, {}, 5), "space={}"),
        (lambda: T.grid_search(lambda lr: 0.0, {"lr": (1e-3, 1)}, 5.5), "budget=5.5"),
        (lambda: T.grid_search(lambda lr: 0.0, {"lr": "1e-3..1"}, 5), "space['lr']"),
        (lambda: T.grid_search(lambda lr: 0.0, {"l r": T.Uniform(0, 1)}, 5), "keyword"),
        (lambda: T.grid_search("f", {"lr": T.Uniform(0, 1)}, 5), "not callable"),
        (lambda: T.grid_search(lambda lr: "bad", {"lr": T.Uniform(0, 1)}, 5), "must return a number"),
        (lambda: T.LogUniform(0.0, 1.0), "0 < low < high"),
        (lambda: T.LogUniform(1e-3, float("inf")), "finite"),
        (lambda: T.Uniform(1.0, 0.0), "below"),
        (lambda: T.Choice(()), "empty"),
        (lambda: T.coarse_to_fine(lambda lr: 0.0, 1e-3, 1.0, points=2), "points=2"),
        (lambda: T.coarse_to_fine(lambda lr: 0.0, -1.0, 1.0), "0 < low < high"),
    ],
)
def test_search_rejects_bad_arguments(call, named):
    with pytest.raises(InvalidArgument) as info:
        call()
    assert named in str(info.value)


def _narrow_lr_problem(seed):
    """objective(lr, other) = f(lr) + tiny g(other): f has a narrow optimum (0.1 decade wide)
    at a random lr*; `other` barely matters. Closed form, cheap."""
    rng = np.random.default_rng([seed, 99])
    log_lr_star, other_star = rng.uniform(-5.0, -1.0), rng.uniform()

    def objective(lr, other):
        return ((math.log10(lr) - log_lr_star) / 0.1) ** 2 + 1e-3 * (other - other_star) ** 2

    return objective


def test_random_search_beats_grid_search_at_equal_budget_more_often_than_not():
    """Budget 16 over (lr, other): the grid tries 4 learning rates, random search 16.

    Null hypothesis: random search wins (a strictly lower best value) on at most half of the
    problems. Under it the number of wins over 200 independent problems is at most
    Binomial(200, 1/2) (stochastically), so requiring at least the count whose upper tail is
    below ALPHA fails with probability <= ALPHA if random search were no better.
    """
    seeds, budget = 200, 16
    space = {"lr": T.LogUniform(1e-5, 1e-1), "other": T.Uniform(0.0, 1.0)}
    wins = 0
    for s in range(seeds):
        objective = _narrow_lr_problem(s)
        grid = T.grid_search(objective, space, budget)
        rand = T.random_search(objective, space, budget, seed=s)
        assert len(grid.trials) == len(rand.trials) == budget
        wins += rand.best_value < grid.best_value
    needed = next(k for k in range(seeds + 1) if binomial_upper_tail(seeds, 0.5, k) <= ALPHA)
    assert wins >= needed, f"random search won {wins} of {seeds}; at least {needed} needed (alpha={ALPHA:g})"


def test_coarse_to_fine_narrows_in_on_a_narrow_optimum():
    evaluated = []

    def f(lr):
        evaluated.append(lr)
        return (math.log10(lr) + 3.37) ** 2

    r = T.coarse_to_fine(f, 1e-6, 1e0, points=7, rounds=4)
    assert len(evaluated) == len(set(evaluated)) == len(r.trials) <= 28
    coarse = min(abs(math.log10(v) + 3.37) for v in evaluated[:7])
    assert coarse == pytest.approx(0.37)  # the coarse grid's best is a decade step away
    assert abs(math.log10(r.best_params["lr"]) + 3.37) < 0.02
    assert r.note == ""
    # every value of a later round lies within one coarse step of the coarse best
    assert all(abs(math.log10(v) + 3) <= 1 + 1e-9 for v in evaluated[7:])


def test_coarse_to_fine_warns_when_the_best_is_at_the_edge():
    r = T.coarse_to_fine(lambda lr: lr, 1e-4, 1e-1, points=4, rounds=2)
    assert r.best_params["lr"] == pytest.approx(1e-4)
    assert "edge" in r.note and "widen" in r.note


# -- the public surface ----------------------------------------------------------------------


def test_public_names():
    assert T.__all__ == sorted(T.__all__)
    assert T.__all__ == [
        "Choice", "EpochRecord", "LogUniform", "SearchResult", "Trial", "Uniform", "accuracy",
        "batches_per_epoch", "coarse_to_fine", "dead_relu_fraction", "epoch_loss", "epoch_order",
        "grid_search", "minibatches", "random_search",
    ]  # fmt: skip


def test_docstring_examples_run():
    outcome = doctest.testmod(T, report=False)
    assert outcome.failed == 0 and outcome.attempted >= 20


def test_import_leaves_cupy_out():
    code = "import sys, gradverify.training; assert 'cupy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
