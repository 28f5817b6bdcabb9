"""Training-loop helpers: minibatch indices, per-epoch metrics, hyperparameter search.

Host NumPy throughout: indices, metrics and search bookkeeping are small, and arrays from
another backend (CuPy, array-api-strict) are copied to the host where a metric needs them.

Minibatches, epoch after epoch, reproducible from a seed:

>>> from gradverify.training import minibatches
>>> [b.tolist() for b in minibatches(5, 2, shuffle=False, epochs=2)]
[[0, 1], [2, 3], [4], [0, 1], [2, 3], [4]]
>>> epoch = list(minibatches(6, 3, seed=0, epochs=1))
>>> sorted(int(i) for b in epoch for i in b)
[0, 1, 2, 3, 4, 5]

Metrics for a per-epoch record:

>>> import numpy as np
>>> from gradverify.training import accuracy, dead_relu_fraction
>>> accuracy(np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0]]), np.array([0, 1, 1]))
0.6666666666666666
>>> dead_relu_fraction(np.array([[-1.0, 2.0, 0.0], [-3.0, -1.0, 0.0]]))
0.6666666666666666

Search at an equal budget (the objective is minimized and called with keyword arguments):

>>> from gradverify.training import LogUniform, Uniform, grid_search, random_search
>>> space = {"lr": LogUniform(1e-4, 1e0), "momentum": Uniform(0.0, 0.9)}
>>> f = lambda lr, momentum: (np.log10(lr) + 2.2) ** 2 + 1e-3 * momentum
>>> grid, rand = grid_search(f, space, 16), random_search(f, space, 16, seed=0)
>>> len(grid.trials), len(rand.trials)
(16, 16)
>>> sorted({t.params["lr"] for t in grid.trials}) == sorted(LogUniform(1e-4, 1e0).grid(4))
True
"""

import math
import numbers
import operator
from dataclasses import dataclass, field

import numpy as np

from gradverify._backend import to_numpy
from gradverify._errors import InvalidArgument

__all__ = [
    "Choice",
    "EpochRecord",
    "LogUniform",
    "SearchResult",
    "Trial",
    "Uniform",
    "accuracy",
    "batches_per_epoch",
    "coarse_to_fine",
    "dead_relu_fraction",
    "epoch_loss",
    "epoch_order",
    "grid_search",
    "minibatches",
    "random_search",
]



class _Required:
    """The default of an argument that must be given (so that leaving it out raises InvalidArgument)."""

    def __repr__(self):
        return "<required>"


_MISSING = _Required()


# -- argument checks ------------------------------------------------------------------------


def _as_int(value, name, *, minimum=None):
    """``value`` as a Python int (NumPy integers welcome; bools and floats refused)."""
    if isinstance(value, (bool, np.bool_)):
        msg = f"{name}={value!r} is a bool; pass an int"
        raise InvalidArgument(msg)
    try:
        result = operator.index(value)
    except TypeError:
        hint = f" (int({value!r}) if you meant {int(value)})" if isinstance(value, float) and float(value).is_integer() else ""
        msg = f"{name}={value!r} has type {type(value).__name__}; pass an int{hint}"
        raise InvalidArgument(msg) from None
    if minimum is not None and result < minimum:
        msg = f"{name}={result} must be at least {minimum}"
        raise InvalidArgument(msg)
    return result


def _as_seed(seed, *, needed_for):
    if seed is _MISSING or seed is None:
        msg = (
            f"seed is missing; {needed_for} needs one to be reproducible: pass seed=<a non-negative"
            " int> (e.g. seed=0), and record it with the run"
        )
        raise InvalidArgument(msg)
    return _as_int(seed, "seed", minimum=0)


# -- minibatches ----------------------------------------------------------------------------


def batches_per_epoch(n, batch_size, *, drop_last=False):
    """How many batches one epoch of :func:`minibatches` yields.

    >>> batches_per_epoch(10, 3), batches_per_epoch(10, 3, drop_last=True)
    (4, 3)
    """
    n = _as_int(n, "n", minimum=1)
    batch_size = _as_int(batch_size, "batch_size", minimum=1)
    return n // batch_size if drop_last else -(-n // batch_size)


def epoch_order(n, epoch, *, seed):
    """The order in which epoch ``epoch`` (0, 1, ...) of a shuffled :func:`minibatches` visits ``0..n-1``.

    Each epoch's permutation comes from its own random stream,
    ``np.random.SeedSequence(seed, spawn_key=(epoch,))``, so that any epoch can be rebuilt
    from ``(seed, epoch)`` alone (resuming a run at epoch 37 does not replay 37 shuffles),
    and different epochs (and different seeds) give independent orders.

    >>> epoch_order(5, 0, seed=1).tolist() == epoch_order(5, 0, seed=1).tolist()
    True
    >>> sorted(epoch_order(5, 3, seed=1).tolist())
    [0, 1, 2, 3, 4]
    """
    n = _as_int(n, "n", minimum=1)
    epoch = _as_int(epoch, "epoch", minimum=0)
    seed = _as_seed(seed, needed_for="epoch_order")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(epoch,)))
    return rng.permutation(n)


def minibatches(n, batch_size, *, shuffle=True, drop_last=False, seed=_MISSING, epochs=None):
    """Index arrays of minibatches over ``n`` examples, epoch after epoch.

    Parameters
    ----------
    n : int
        Number of examples (at least 1).
    batch_size : int
        Examples per batch (at least 1). With ``drop_last=False`` a ``batch_size`` above
        ``n`` gives one batch of all ``n`` examples per epoch; with ``drop_last=True`` it is
        an error (an epoch would have no batch at all).
    shuffle : bool
        Visit the examples in a fresh random order each epoch (:func:`epoch_order`), or in
        the order ``0..n-1`` every epoch.
    drop_last : bool
        Leave out the last, smaller batch of an epoch when ``batch_size`` does not divide
        ``n``: every batch then has exactly ``batch_size`` examples, and each epoch leaves
        out ``n % batch_size`` examples (different ones each epoch when shuffled).
    seed : int
        Required when ``shuffle=True`` (there is no hidden global seed); ignored otherwise.
    epochs : int or None
        Stop after this many epochs; ``None`` (the default) never stops: take what you need
        with ``itertools.islice`` or ``zip``, or break out of the loop.

    Yields
    ------
    numpy.ndarray of numpy.intp
        One batch's example indices, a fresh array each time (changing it in place changes
        nothing else). Epoch ``e`` is the ``batches_per_epoch(n, batch_size, drop_last=...)``
        batches starting at position ``e * batches_per_epoch(...)`` of the stream.

    Notes
    -----
    With ``drop_last=False`` an epoch visits every example exactly once; with
    ``drop_last=True`` at most once. A batch at any position of a shuffled epoch is a
    uniformly random subset of size ``B`` drawn without replacement, so for a mean-reduced
    loss the minibatch gradient is unbiased and its covariance is
    ``(1/B) (N - B)/(N - 1)`` times the per-example covariance (population normalization);
    the average of an epoch's minibatch gradients over equal batches is the full-batch
    gradient exactly. The arguments are checked when this function is called, not when the
    first batch is drawn.

    Examples
    --------
    >>> import itertools
    >>> stream = minibatches(4, 2, seed=0)          # infinite
    >>> len(list(itertools.islice(stream, 6)))      # three epochs of two batches
    6
    >>> [len(b) for b in minibatches(7, 3, seed=0, epochs=1, drop_last=True)]
    [3, 3]
    """
    n = _as_int(n, "n", minimum=1)
    batch_size = _as_int(batch_size, "batch_size", minimum=1)
    if not isinstance(shuffle, (bool, np.bool_)):
        msg = f"shuffle={shuffle!r}; pass True or False"
        raise InvalidArgument(msg)
    if not isinstance(drop_last, (bool, np.bool_)):
        msg = f"drop_last={drop_last!r}; pass True or False"
        raise InvalidArgument(msg)
    if drop_last and batch_size > n:
        msg = (
            f"batch_size={batch_size} is larger than n={n} with drop_last=True, so every epoch"
            f" would be empty; use batch_size <= {n}, or drop_last=False for one batch of all {n}"
        )
        raise InvalidArgument(msg)
    if epochs is not None:
        epochs = _as_int(epochs, "epochs", minimum=0)
    if shuffle:
        seed = _as_seed(seed, needed_for="minibatches(shuffle=True)")
    return _minibatches(n, batch_size, bool(shuffle), bool(drop_last), seed, epochs)


def _minibatches(n, batch_size, shuffle, drop_last, seed, epochs):
    stop = n - n % batch_size if drop_last else n
    epoch = 0
    while epochs is None or epoch < epochs:
        order = epoch_order(n, epoch, seed=seed) if shuffle else np.arange(n, dtype=np.intp)
        order = order.astype(np.intp, copy=False)
        for start in range(0, stop, batch_size):
            yield order[start : start + batch_size].copy()
        epoch += 1


# -- metrics --------------------------------------------------------------------------------


def accuracy(logits_or_probs, labels):
    """The fraction of rows whose largest score is at the row's label.

    Parameters
    ----------
    logits_or_probs : array (n, c)
        Scores per class, logits or probabilities alike (the argmax is the same). Ties go
        to the first largest class, as ``argmax`` does. A row holding a NaN counts as wrong
        (a diverged model gets no credit), whatever its other entries.
    labels : integer array (n,)
        Class indices in ``[0, c)``.

    Returns
    -------
    float
        In ``[0, 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> accuracy(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1]))
    0.5
    """
    scores = to_numpy(logits_or_probs)
    labels = to_numpy(labels)
    if scores.ndim != 2 or scores.shape[0] < 1 or scores.shape[1] < 1:
        msg = f"logits_or_probs has shape {scores.shape}; pass a 2-D (n, classes) array with n, classes >= 1"
        raise InvalidArgument(msg)
    if labels.shape != (scores.shape[0],):
        msg = f"labels has shape {labels.shape}; pass one integer label per row, shape ({scores.shape[0]},)"
        raise InvalidArgument(msg)
    if not np.issubdtype(labels.dtype, np.integer):
        msg = f"labels has dtype {labels.dtype}; pass integer class indices (for one-hot targets, argmax them first)"
        raise InvalidArgument(msg)
    if labels.min() < 0 or labels.max() >= scores.shape[1]:
        bad = labels[(labels < 0) | (labels >= scores.shape[1])]
        msg = f"labels hold {bad[0]}, outside [0, {scores.shape[1]}); pass class indices of the {scores.shape[1]} columns"
        raise InvalidArgument(msg)
    correct = (np.argmax(scores, axis=1) == labels) & ~np.isnan(scores).any(axis=1)
    return float(np.mean(correct))


def dead_relu_fraction(pre_activations):
    """The fraction of units whose ReLU output is 0 on every example of the batch.

    Parameters
    ----------
    pre_activations : array (n, units...)
        The inputs of a ReLU, one row per example; trailing axes (channels, positions) are
        units too. A unit is dead when its pre-activation is ``<= 0`` on all n examples
        (``relu(0) = 0``: an input of exactly zero gives no output and, under the usual
        subgradient 0, no gradient). A NaN pre-activation is not ``<= 0``, so it does not
        make a unit dead.

    Returns
    -------
    float
        In ``[0, 1]``. On one batch this over-counts the units dead on the whole dataset;
        pass the pre-activations of the full set when the exact count matters.

    Examples
    --------
    >>> import numpy as np
    >>> dead_relu_fraction(np.array([[-1.0, 0.5], [-2.0, -0.5]]))
    0.5
    """
    z = to_numpy(pre_activations)
    if z.ndim < 2 or z.shape[0] < 1 or math.prod(z.shape[1:]) < 1:
        msg = f"pre_activations has shape {z.shape}; pass (n, units...) with n >= 1 and at least one unit"
        raise InvalidArgument(msg)
    dead = np.all(z.reshape(z.shape[0], -1) <= 0, axis=0)
    return float(np.mean(dead))


def epoch_loss(batch_losses, batch_sizes):
    """The mean loss over an epoch from mean-reduced batch losses, weighted by batch size.

    The plain mean of the batch losses over-weights a smaller last batch; this is the loss
    of the whole epoch's examples.

    >>> epoch_loss([1.0, 1.0, 4.0], [4, 4, 1])
    1.3333333333333333
    """
    losses = np.asarray([float(v) for v in batch_losses], dtype=np.float64)
    sizes = np.asarray([_as_int(s, "batch_sizes[i]", minimum=1) for s in batch_sizes], dtype=np.float64)
    if losses.size == 0 or losses.shape != sizes.shape:
        msg = f"batch_losses ({losses.size}) and batch_sizes ({sizes.size}) must be non-empty and of the same length"
        raise InvalidArgument(msg)
    return float(np.sum(losses * sizes) / np.sum(sizes))


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's numbers. ``None`` for what was not measured; ``extra`` for anything else.

    >>> r = EpochRecord(epoch=0, loss=0.7, train_accuracy=0.5, extra={"lr": 0.1})
    >>> r.to_dict()["lr"], r.to_dict()["val_accuracy"]
    (0.1, None)
    """

    epoch: int
    loss: float
    train_accuracy: float | None = None
    val_accuracy: float | None = None
    dead_relu_fraction: float | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "epoch", _as_int(self.epoch, "epoch", minimum=0))
        if not isinstance(self.extra, dict) or not all(isinstance(k, str) for k in self.extra):
            msg = f"extra={self.extra!r}; pass a dict with str keys"
            raise InvalidArgument(msg)
        object.__setattr__(self, "extra", dict(self.extra))  # a copy: later changes to the caller's dict do not leak in
        for name in ("loss", "train_accuracy", "val_accuracy", "dead_relu_fraction"):
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, numbers.Real) and not (isinstance(value, np.ndarray) and value.ndim == 0):
                    msg = f"{name}={value!r}; pass a number (float(...) of a 0-d array) or None"
                    raise InvalidArgument(msg)
                object.__setattr__(self, name, float(value))

    def to_dict(self):
        """A flat, JSON-safe dict (``extra`` merged in; NaN loss kept as NaN)."""
        out = {
            "epoch": self.epoch,
            "loss": self.loss,
            "train_accuracy": self.train_accuracy,
            "val_accuracy": self.val_accuracy,
            "dead_relu_fraction": self.dead_relu_fraction,
        }
        clash = set(out) & set(self.extra)
        if clash:
            msg = f"extra repeats the field(s) {sorted(clash)}; give them as arguments, not in extra"
            raise InvalidArgument(msg)
        return {**out, **self.extra}


# -- hyperparameter spaces ------------------------------------------------------------------


def _finite_float(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        msg = f"{name}={value!r}; pass a real number"
        raise InvalidArgument(msg)
    value = float(value)
    if not math.isfinite(value):
        msg = f"{name}={value!r}; pass a finite number"
        raise InvalidArgument(msg)
    return value


class _Continuous:
    """Sampling and grids of a real range, through its map ``_to_unit`` of ``[0, 1]`` onto it."""

    def sample(self, rng, size=None):
        """Draws from ``rng`` (a ``numpy.random.Generator``)."""
        out = self._to_unit(rng.random(size))
        return float(out) if size is None else out

    def grid(self, k):
        k = _as_int(k, "k", minimum=1)
        return [float(self._to_unit((i + 0.5) / k)) for i in range(k)]


@dataclass(frozen=True)
class Uniform(_Continuous):
    """A real hyperparameter drawn uniformly from ``[low, high]``.

    :meth:`grid` gives the centers of ``k`` equal cells (no evaluation spent on an end).

    >>> Uniform(0.0, 1.0).grid(4)
    [0.125, 0.375, 0.625, 0.875]
    """

    low: float
    high: float

    def __post_init__(self):
        low, high = _finite_float(self.low, "low"), _finite_float(self.high, "high")
        if not low < high:
            msg = f"low={low!r} must be below high={high!r}"
            raise InvalidArgument(msg)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def _to_unit(self, u):
        return self.low + (self.high - self.low) * u


@dataclass(frozen=True)
class LogUniform(_Continuous):
    """A positive hyperparameter (a learning rate) whose logarithm is uniform on ``[log low, log high]``.

    Each decade of the range gets the same share of the draws, and :meth:`grid` is
    geometric (the centers of ``k`` equal cells in log space).

    >>> [round(v, 12) for v in LogUniform(1e-4, 1e0).grid(2)]
    [0.001, 0.1]
    >>> import numpy as np
    >>> x = LogUniform(1e-5, 1e-1).sample(np.random.default_rng(0), 4000)
    >>> bool(x.min() >= 1e-5 and x.max() <= 1e-1)
    True
    """

    low: float
    high: float

    def __post_init__(self):
        low, high = _finite_float(self.low, "low"), _finite_float(self.high, "high")
        if not 0 < low < high:
            msg = f"LogUniform(low={low!r}, high={high!r}) needs 0 < low < high; for a range that reaches 0 use Uniform"
            raise InvalidArgument(msg)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def _to_unit(self, u):
        lo, hi = math.log(self.low), math.log(self.high)
        return np.clip(np.exp(lo + (hi - lo) * np.asarray(u)), self.low, self.high)



@dataclass(frozen=True)
class Choice:
    """A hyperparameter taking one of a few values; a grid takes them all.

    A plain list or tuple in a search space means a ``Choice`` of its items.

    >>> Choice(("relu", "tanh")).grid()
    ['relu', 'tanh']
    """

    values: tuple

    def __post_init__(self):
        values = tuple(self.values)
        if not values:
            msg = "Choice(values=()) is empty; pass at least one value"
            raise InvalidArgument(msg)
        object.__setattr__(self, "values", values)

    def sample(self, rng, size=None):
        """Draws from ``rng`` (a ``numpy.random.Generator``), uniformly over the values."""
        if size is None:
            return self.values[int(rng.integers(len(self.values)))]
        return [self.values[int(i)] for i in rng.integers(len(self.values), size=size)]

    def grid(self, k=None):
        return list(self.values)


def _check_space(space):
    if not isinstance(space, dict) or not space:
        msg = (
            f"space={space!r}; pass a non-empty dict from parameter name to LogUniform(low, high),"
            " Uniform(low, high) or Choice(values) (a list also means a Choice)"
        )
        raise InvalidArgument(msg)
    checked = {}
    for name, dim in space.items():
        if not isinstance(name, str) or not name.isidentifier():
            msg = f"space key {name!r} is not a valid keyword name; the objective is called as objective(**params)"
            raise InvalidArgument(msg)
        if isinstance(dim, (list, tuple)):
            dim = Choice(tuple(dim))
        if not isinstance(dim, (Uniform, LogUniform, Choice)):
            msg = f"space[{name!r}]={dim!r}; pass LogUniform(low, high), Uniform(low, high) or Choice(values)"
            raise InvalidArgument(msg)
        checked[name] = dim
    return checked


# -- search ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    """One evaluation: the parameters and the objective's value (NaN kept as NaN)."""

    params: dict
    value: float


@dataclass(frozen=True)
class SearchResult:
    """The trials of a search, in the order they ran, and the best of them (lowest value).

    A NaN value (a diverged run) ranks below every number; if every value is NaN the best
    is the first trial. ``note`` says what the search could not do (e.g. "the best learning
    rate is at the edge of the range").
    """

    trials: tuple
    note: str = ""

    @property
    def best(self):
        """The :class:`Trial` with the lowest value (the first such, on ties)."""
        return min(self.trials, key=lambda t: math.inf if math.isnan(t.value) else t.value)

    @property
    def best_params(self):
        return dict(self.best.params)

    @property
    def best_value(self):
        return self.best.value


def _evaluate(objective, params):
    value = objective(**params)
    try:
        value = float(value)
    except (TypeError, ValueError):
        msg = f"objective({params}) returned {value!r}; it must return a number (the value to minimize)"
        raise InvalidArgument(msg) from None
    return Trial(params=dict(params), value=value)


def _check_objective(objective):
    if not callable(objective):
        msg = f"objective={objective!r} is not callable; pass a function called as objective(**params) -> float"
        raise InvalidArgument(msg)


def _grid_counts(space, budget):
    """Points per dimension: every Choice value, and a balanced share of the rest of the budget."""
    fixed = math.prod(len(d.values) for d in space.values() if isinstance(d, Choice))
    free = [name for name, d in space.items() if not isinstance(d, Choice)]
    if fixed > budget:
        msg = (
            f"budget={budget} is below the {fixed} combinations of the Choice parameters a grid must"
            f" cover; raise budget to at least {fixed}, or use random_search"
        )
        raise InvalidArgument(msg)
    room = budget // fixed
    counts = {name: len(d.values) for name, d in space.items() if isinstance(d, Choice)}
    if free:
        k = max(1, int(math.floor(room ** (1 / len(free)) + 1e-9)))
        while (k + 1) ** len(free) <= room:
            k += 1
        while k ** len(free) > room and k > 1:
            k -= 1
        per = dict.fromkeys(free, k)
        for name in free:  # spend what is left, one dimension at a time, in the space's order
            if math.prod(per.values()) // per[name] * (per[name] + 1) <= room:
                per[name] += 1
        counts.update(per)
    return counts


def grid_search(objective, space, budget):
    """Evaluate ``objective`` on a grid of at most ``budget`` points and keep the best.

    Parameters
    ----------
    objective : callable
        Called as ``objective(**params)``; returns the number to minimize.
    space : dict
        Parameter name -> :class:`LogUniform`, :class:`Uniform` or :class:`Choice` (or a
        list, meaning a Choice).
    budget : int
        The most evaluations to spend. Every Choice value is on the grid; the continuous
        parameters share the rest as evenly as a product of whole numbers allows (``k``
        points each, ``k = floor(room ** (1/d))``, then one more point per parameter, in
        the space's order, while the product still fits), at the centers of equal cells
        (geometric for LogUniform). ``len(result.trials)`` says how many were spent.

    Returns
    -------
    SearchResult

    Notes
    -----
    A grid of ``k`` points per axis tries only ``k`` distinct values of each parameter;
    when one parameter matters far more than the others, :func:`random_search` at the same
    budget tries ``budget`` distinct values of it (Bergstra & Bengio, 2012).

    Examples
    --------
    >>> r = grid_search(lambda x, y: (x - 0.3) ** 2 + y, {"x": Uniform(0, 1), "y": [0, 1]}, 10)
    >>> len(r.trials), r.best_params
    (10, {'x': 0.3, 'y': 0})
    """
    _check_objective(objective)
    space = _check_space(space)
    budget = _as_int(budget, "budget", minimum=1)
    counts = _grid_counts(space, budget)
    axes = [(name, dim.grid(counts[name])) for name, dim in space.items()]
    trials = []
    for point in np.ndindex(*[len(values) for _, values in axes]):
        params = {name: values[i] for (name, values), i in zip(axes, point)}
        trials.append(_evaluate(objective, params))
    return SearchResult(trials=tuple(trials))


def random_search(objective, space, budget, *, seed=_MISSING):
    """Evaluate ``objective`` at ``budget`` independent random points of ``space`` and keep the best.

    Each parameter is drawn independently: LogUniform in log space (each decade equally
    often), Uniform linearly, Choice uniformly over its values. ``seed`` (required) makes
    the draws reproducible. See :func:`grid_search` for the arguments.

    >>> import numpy as np
    >>> r = random_search(lambda lr: abs(np.log10(lr) + 2), {"lr": LogUniform(1e-4, 1)}, 20, seed=0)
    >>> len(r.trials), 1e-3 < r.best_params["lr"] < 1e-1
    (20, True)
    """
    _check_objective(objective)
    space = _check_space(space)
    budget = _as_int(budget, "budget", minimum=1)
    seed = _as_seed(seed, needed_for="random_search")
    rng = np.random.default_rng(seed)
    draws = {name: dim.sample(rng, budget) for name, dim in space.items()}
    trials = []
    for i in range(budget):
        params = {name: (v[i] if isinstance(v, list) else float(v[i])) for name, v in draws.items()}
        trials.append(_evaluate(objective, params))
    return SearchResult(trials=tuple(trials))


def coarse_to_fine(objective, low, high, *, points=5, rounds=3, name="lr"):
    """Search one positive parameter (a learning rate) on log grids that narrow around the best.

    Round 1 evaluates ``points`` log-spaced values from ``low`` to ``high`` (ends included).
    Each later round spans the two grid neighbours of the best value so far (clipped to
    ``[low, high]``) with ``points`` log-spaced values, so the spacing shrinks by a factor
    of about ``(points - 1) / 2`` per round. Values already evaluated are not evaluated
    again; at most ``points * rounds`` evaluations in all.

    Parameters
    ----------
    objective : callable
        Called as ``objective(**{name: value})``; returns the number to minimize. Hold the
        other hyperparameters fixed by closing over them.
    low, high : float
        ``0 < low < high``.
    points : int
        Values per round, at least 3 (a best value needs two neighbours).
    rounds : int
        At least 1.
    name : str
        The keyword the objective takes.

    Returns
    -------
    SearchResult
        ``note`` warns when the final best value sits at ``low`` or ``high``: the optimum
        may lie outside the range, so widen it.

    Examples
    --------
    >>> import numpy as np
    >>> r = coarse_to_fine(lambda lr: (np.log10(lr) + 2.3) ** 2, 1e-6, 1.0, points=7, rounds=3)
    >>> len(r.trials) <= 21, bool(abs(np.log10(r.best_params["lr"]) + 2.3) < 0.05), r.note
    (True, True, '')
    """
    _check_objective(objective)
    LogUniform(low, high)  # checks 0 < low < high
    low, high = float(low), float(high)
    points = _as_int(points, "points", minimum=3)
    rounds = _as_int(rounds, "rounds", minimum=1)
    if not isinstance(name, str) or not name.isidentifier():
        msg = f"name={name!r} is not a valid keyword name; the objective is called as objective(**{{name: value}})"
        raise InvalidArgument(msg)
    seen = {}
    trials = []
    lo, hi = math.log(low), math.log(high)
    for _ in range(rounds):
        logs = np.linspace(lo, hi, points)
        values = [float(np.clip(np.exp(v), low, high)) for v in logs]
        for v in values:
            if v not in seen:
                seen[v] = _evaluate(objective, {name: v})
                trials.append(seen[v])
        best = SearchResult(trials=tuple(trials)).best.params[name]
        step = (hi - lo) / (points - 1)
        center = math.log(best)
        lo, hi = max(center - step, math.log(low)), min(center + step, math.log(high))
    result = SearchResult(trials=tuple(trials))
    note = ""
    edge = math.log(result.best_params[name])
    if min(abs(edge - math.log(low)), abs(edge - math.log(high))) <= 1e-9 * max(1.0, abs(edge)):
        note = (
            f"the best {name}={result.best_params[name]:g} is at the edge of [{low:g}, {high:g}];"
            " the optimum may lie outside: widen the range"
        )
    return SearchResult(trials=tuple(trials), note=note)
