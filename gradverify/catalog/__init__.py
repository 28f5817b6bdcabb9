"""The catalog: verified ops, each a pure forward with a hand-written backward.

>>> from gradverify import catalog
>>> op = catalog.get("relu")
>>> op.family, op.kinks
('layer', ('x = 0',))
>>> "softmax_cross_entropy" in catalog.names()
True
"""

import difflib
from dataclasses import dataclass, field

from gradverify._errors import InvalidArgument

__all__ = ["Example", "Op", "families", "get", "names", "register"]

FAMILIES = ("layer", "loss", "regularizer", "optimizer", "schedule", "initializer", "preprocessing")


@dataclass(frozen=True)
class Example:
    """One input of an op: the arrays (host NumPy) and the keyword parameters."""

    inputs: tuple
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Op:
    """A catalog entry.

    ``forward(*inputs, **params) -> (out, cache)`` and ``backward(dout, cache) -> grads``
    (one per input, ``None`` for an input that is not differentiated, such as labels);
    ``backward`` is ``None`` for an op with nothing to differentiate (an initializer).
    ``examples()`` is a Hypothesis strategy of :class:`Example`. ``properties(example, xp)``
    checks what no gradient check sees (rows of a softmax sum to 1, an initializer's
    variance) and raises ``AssertionError`` with a message when one fails. ``kinks``
    describes where the op is not differentiable; ``batched`` says that forward maps a
    leading batch axis; ``wrt`` restricts the differentiated inputs; ``reference`` names the
    independent mpmath oracle in ``reference/``.
    """

    name: str
    family: str
    forward: object
    backward: object
    examples: object
    summary: str
    kinks: tuple = ()
    batched: bool = False
    wrt: tuple | None = None
    reference: str | None = None
    properties: object = None


_REGISTRY = {}


def register(op):
    if op.family not in FAMILIES:
        raise InvalidArgument(f"op {op.name!r} has family {op.family!r}; choose from {FAMILIES}")
    if op.name in _REGISTRY:
        raise InvalidArgument(f"an op named {op.name!r} is already registered")
    _REGISTRY[op.name] = op
    return op


def names(family=None):
    """Sorted op names, of one family if given."""
    if family is not None and family not in FAMILIES:
        raise InvalidArgument(f"family={family!r}; choose from {FAMILIES}")
    return sorted(n for n, op in _REGISTRY.items() if family is None or op.family == family)


def families():
    return tuple(f for f in FAMILIES if any(op.family == f for op in _REGISTRY.values()))


def get(name):
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else "; see gradverify.catalog.names()"
        raise InvalidArgument(f"no op named {name!r} in the catalog{hint}") from None


from gradverify.catalog import initializers, layers, losses, optimizers, preprocessing, regularizers, schedules  # noqa: E402,F401  (registers the ops)
