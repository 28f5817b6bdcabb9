"""The catalog: verified ops, each a pure forward with a hand-written backward.

>>> from gradverify import catalog
>>> op = catalog.get("relu")
>>> op.family, op.kinks
('layer', ('x = 0',))
>>> "softmax_cross_entropy" in catalog.names()
True

Your own ops join the catalog the same way, with :func:`register` or the :func:`op`
decorator, and ``gradverify verify`` checks them next to the built-in ones: name the module
that registers them with ``--module`` (an importable module or a ``.py`` file), or make an
installed package declare it in the ``gradverify.ops`` entry-point group, which the command
line loads by itself (:func:`load_entry_points`)::

    # pyproject.toml of your package
    [project.entry-points."gradverify.ops"]
    mylib = "mylib.gradverify_ops"

:func:`origin` tells where an op was registered from, so that a failure's reproduce line
can name the module that brings it back.
"""

import contextlib
import difflib
import importlib
import importlib.metadata
import importlib.util
import sys
import traceback
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from gradverify._errors import InvalidArgument

__all__ = [
    "ENTRY_POINT_GROUP",
    "Example",
    "Op",
    "Origin",
    "families",
    "get",
    "load_entry_points",
    "load_module",
    "names",
    "op",
    "origin",
    "register",
    "unregister",
]

FAMILIES = ("layer", "loss", "regularizer", "optimizer", "schedule", "initializer", "preprocessing")
# The entry-point group whose entries (a module, or a function) register an installed package's ops.
ENTRY_POINT_GROUP = "gradverify.ops"


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


@dataclass(frozen=True)
class Origin:
    """Where an op was registered from.

    ``kind`` is ``"gradverify"`` (the built-in catalog), ``"module"`` (loaded by
    :func:`load_module`; ``source`` is the module name or file path as it was given),
    ``"entry point"`` (loaded by :func:`load_entry_points`; ``source`` is ``name = value``)
    or ``"python"`` (registered by other code in this process).
    """

    kind: str
    source: str | None = None


_REGISTRY = {}
_ORIGINS = {}
_LOADING = []  # the Origin of the module or entry point being loaded, innermost last
_LOADED = {}  # what load_module / load_entry_points already loaded -> the op names it registered


def register(op):
    """Add ``op`` (an :class:`Op`) to the catalog and return it.

    The name must be new, and printable without spaces or commas (``--ops`` takes a
    comma-separated list); the family one of :data:`FAMILIES`.
    """
    if not isinstance(op, Op):
        raise InvalidArgument(f"register() takes a gradverify.catalog.Op, not {type(op).__name__}; build one with Op(name, family, forward, backward, examples, summary) or use @catalog.op")
    name = op.name
    if not isinstance(name, str) or not name or any(c == "," or unicodedata.category(c)[0] in "CZ" for c in name):
        raise InvalidArgument(f"op name {name!r} must be a non-empty string without spaces, commas or control characters, e.g. 'my_sigmoid'")
    if op.family not in FAMILIES:
        raise InvalidArgument(f"op {name!r} has family {op.family!r}; choose from {', '.join(FAMILIES)}")
    for attribute in ("forward", "examples"):
        if not callable(getattr(op, attribute)):
            raise InvalidArgument(f"op {name!r}: {attribute} must be callable, not {type(getattr(op, attribute)).__name__}")
    if op.backward is not None and not callable(op.backward):
        raise InvalidArgument(f"op {name!r}: backward must be callable, or None for an op with nothing to differentiate")
    if name in _REGISTRY:
        raise InvalidArgument(f"an op named {name!r} is already registered ({_describe(_ORIGINS[name])}); choose another name")
    _REGISTRY[name] = op
    _ORIGINS[name] = _LOADING[-1] if _LOADING else Origin("python")
    return op


def unregister(name):
    """Remove the op called ``name`` from the catalog and return it (tests, interactive use)."""
    found = get(name)
    del _REGISTRY[name]
    del _ORIGINS[name]
    return found


def op(*, family, backward, examples, summary, name=None, kinks=(), batched=False, wrt=None, reference=None, properties=None):
    """Register the decorated forward, with its ``backward``, as a catalog op.

    The forward is returned unchanged. ``name`` defaults to the forward's name; the other
    arguments are the fields of :class:`Op`. ``examples`` is a Hypothesis strategy (or a
    function of no arguments that returns one) of :class:`Example`, of a tuple of input
    arrays, or of a single input array.

    Examples
    --------
    >>> import numpy as np
    >>> from hypothesis.extra import numpy as hnp
    >>> from gradverify import catalog
    >>> def cube_backward(dout, x):
    ...     return (dout * 3.0 * x**2,)
    >>> @catalog.op(family="layer", backward=cube_backward, summary="x**3, elementwise",
    ...             examples=hnp.arrays(np.float64, 3, elements={"min_value": -2, "max_value": 2}))
    ... def my_cube(x):
    ...     return x**3, x
    >>> catalog.get("my_cube").summary, catalog.origin("my_cube").kind
    ('x**3, elementwise', 'python')
    >>> catalog.unregister("my_cube").name
    'my_cube'
    """

    def decorate(forward):
        strategy = examples if callable(examples) and not _is_strategy(examples) else (lambda: examples)

        def draw_examples():
            return strategy().map(_as_example)

        register(
            Op(
                name or forward.__name__, family, forward, backward, draw_examples, summary,
                kinks=tuple(kinks), batched=batched, wrt=wrt, reference=reference, properties=properties,
            )
        )
        return forward

    return decorate


def _is_strategy(value):
    from hypothesis.strategies import SearchStrategy

    return isinstance(value, SearchStrategy)


def _as_example(value):
    if isinstance(value, Example):
        return value
    return Example(tuple(value) if isinstance(value, tuple) else (value,))


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
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else "; see gradverify.catalog.names()"
        raise InvalidArgument(f"no op named {name!r} in the catalog{hint}") from None


def origin(name):
    """The :class:`Origin` of the op called ``name``."""
    get(name)
    return _ORIGINS[name]


def _describe(where):
    return {"gradverify": "by gradverify's catalog", "python": "by Python code in this process"}.get(where.kind, f"by the {where.kind} {where.source!r}")


# -- loading the user's ops -------------------------------------------------------------------


@contextlib.contextmanager
def _loading(where):
    """Register what runs inside under ``where``; on an error, undo those registrations."""
    before = set(_REGISTRY)
    _LOADING.append(where)
    try:
        yield
    except BaseException:
        for name in set(_REGISTRY) - before:
            del _REGISTRY[name], _ORIGINS[name]
        raise
    finally:
        _LOADING.pop()


def load_module(spec):
    """Import ``spec``, a module name (``mylib.ops``) or a path to a ``.py`` file, whose
    import registers ops; return the names of the ops it registered.

    A module already loaded is not loaded again (the names it registered then are returned).
    A file's directory goes on ``sys.path`` first, so that it can import its neighbours.
    Anything the import raises becomes an :class:`InvalidArgument` naming ``spec``, the
    error and where it happened; the ops registered before it are removed again.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidArgument(f"a module to load must be a module name or a .py file path, not {spec!r}")
    is_path = spec.endswith(".py") or "/" in spec or "\\" in spec or Path(spec).is_file()
    key = ("path", str(Path(spec).resolve())) if is_path else ("module", spec)
    if key in _LOADED:
        return _LOADED[key]
    before = set(_REGISTRY)
    with _loading(Origin("module", spec)):
        try:
            if is_path:
                _import_path(spec)
            else:
                _import_name(spec)
        except InvalidArgument:
            raise
        except Exception as exc:
            raise InvalidArgument(f"the ops module {spec!r} failed to import: {_error_text(exc)}") from exc
    _LOADED[key] = tuple(sorted(set(_REGISTRY) - before))
    return _LOADED[key]


def _import_name(spec):
    try:
        importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (spec == exc.name or spec.startswith(exc.name + ".")):
            raise InvalidArgument(f"no module named {spec!r} (looked in the current directory and sys.path); give an importable module name or the path of a .py file") from None
        raise


def _import_path(spec):
    path = Path(spec)
    if not path.is_file():
        raise InvalidArgument(f"the ops file {spec!r} does not exist" + (" (it is a directory; give a .py file)" if path.is_dir() else ""))
    resolved = path.resolve()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file and _same_file(file, resolved):
            return  # imported already (by another name); its ops are registered
    name = path.stem if path.stem.isidentifier() and path.stem not in sys.modules else f"_gradverify_ops_{len(_LOADED)}_{abs(hash(str(resolved)))}"
    module_spec = importlib.util.spec_from_file_location(name, resolved)
    if module_spec is None or module_spec.loader is None:
        raise InvalidArgument(f"the ops file {spec!r} cannot be imported as a Python module; give a .py file")
    module = importlib.util.module_from_spec(module_spec)
    directory = str(resolved.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise


def _same_file(file, resolved):
    try:
        return Path(file).resolve() == resolved
    except (OSError, ValueError):
        return False


def load_entry_points():
    """Load every entry point of the ``gradverify.ops`` group (see the module notes); return
    the names of the ops they registered.

    An entry point names a module, whose import registers ops, or a function, called with
    no arguments, that registers ops or returns them (an iterable of :class:`Op`). One that
    fails is an :class:`InvalidArgument` naming it and the package that installed it.
    """
    found = []
    for entry in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value)):
        key = ("entry point", entry.name, entry.value)
        if key in _LOADED:
            found.extend(_LOADED[key])
            continue
        package = getattr(getattr(entry, "dist", None), "name", None) or "an unknown package"
        before = set(_REGISTRY)
        with _loading(Origin("entry point", f"{entry.name} = {entry.value}")):
            try:
                loaded = entry.load()
                if callable(loaded) and not isinstance(loaded, type(sys)):
                    returned = loaded()
                    for item in returned if returned is not None else ():
                        if not (isinstance(item, Op) and _REGISTRY.get(item.name) is item):
                            register(item)
            except Exception as exc:
                msg = (
                    f"the {ENTRY_POINT_GROUP!r} entry point {entry.name!r} ({entry.value}, installed by {package}) "
                    f"failed to load: {_error_text(exc)}; fix or uninstall {package}"
                )
                raise InvalidArgument(msg) from exc
        _LOADED[key] = tuple(sorted(set(_REGISTRY) - before))
        found.extend(_LOADED[key])
    return tuple(found)


def _error_text(exc):
    """``Type: message (at file:line)``, the line being the innermost frame that raised."""
    text = f"{type(exc).__name__}: {exc}"
    frames = traceback.extract_tb(exc.__traceback__)
    if frames and not isinstance(exc, SyntaxError):  # a SyntaxError's message has its place
        text += f" (at {frames[-1].filename}:{frames[-1].lineno})"
    return text


with _loading(Origin("gradverify", "gradverify.catalog")):
    from gradverify.catalog import initializers, layers, losses, optimizers, preprocessing, regularizers, schedules  # noqa: E402,F401  (registers the ops)
