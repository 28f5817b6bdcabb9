"""The ``reproduce`` line of a check: Python that runs as printed, or says exactly what it lacks.

A check is reproduced by calling it again with the same functions, inputs and options. The
line can do that by itself when the functions are importable by name (a module-level
function or a class attribute, not a lambda, a closure or something defined in
``__main__``) and the inputs are small enough to write out. Python prints a float64 exactly
(``repr`` round-trips), and so also every float32 and float16 value once widened, so the
written inputs are the inputs, bit for bit. Otherwise the line is the same call with
placeholders, followed by what is missing and why.
"""

import functools
import math
import sys

import numpy as np

from gradverify import _backend

# The most input elements written out in a reproduce line (the line stays readable).
MAX_WRITTEN_ELEMENTS = 100
# How each backend writes an array: the import and the constructor's module name.
_WRITERS = {
    "numpy": ("import numpy as np", "np"),
    "strict": ("import array_api_strict", "array_api_strict"),
    "cupy": ("import cupy", "cupy"),
}
_WRITABLE_DTYPES = ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")


def reproduce_line(entry, callables, placeholders, inputs, cotangent, options_text):
    """The reproduce line of a check made by ``gradverify.<entry>(*callables, *inputs, ...)``.

    ``placeholders`` name the callables when they cannot be imported (``fn``, ``vjp``);
    ``cotangent`` is the caller's cotangent, or None when the default was used.
    """
    missing, supplied = [], []
    imports, names = {}, []
    for f, placeholder in zip(callables, placeholders):
        partial = _partial_parts(f)
        where = importable(partial[0] if partial else f)
        if where is None:
            missing.append(f"{placeholder} ({_describe(f)}) cannot be imported by name")
            names.append(placeholder)
            supplied.append(placeholder)
            continue
        module, qualname = where
        imports.setdefault(module, []).append(qualname.split(".")[0])
        if partial:
            imports.setdefault("functools", []).append("partial")
            qualname = f"partial({', '.join([qualname, *partial[1]])})"
        names.append(qualname)
    arrays = list(inputs) + ([cotangent] if cotangent is not None else [])
    size = sum(math.prod(x.shape) for x in arrays)  # no host copy of a large device array
    # Written out only when small: writing is a list of Python floats, several times the input.
    written = [write_array(x) for x in arrays] if size <= MAX_WRITTEN_ELEMENTS else []
    unwritten = None
    if size > MAX_WRITTEN_ELEMENTS:
        unwritten = f"the inputs have {size} elements, more than the {MAX_WRITTEN_ELEMENTS} written out"
    elif any(w is None for w in written):
        unwritten = "an input cannot be written exactly (" + ", ".join(_why_not_written(x) for x, w in zip(arrays, written) if w is None) + ")"
    if unwritten:
        missing.append(unwritten)
        inputs_text = ["*inputs"] + (["cotangent=cotangent"] if cotangent is not None else [])
        call = f"gradverify.{entry}({', '.join(names + inputs_text)}, {options_text})"
        return f"{call}  # with the same {', '.join(placeholders)} and inputs: {'; '.join(missing)}"
    arrays_text = [w[1] for w in written]
    array_imports = sorted({w[0] for w in written})
    args = arrays_text[: len(inputs)] + ([f"cotangent={arrays_text[-1]}"] if cotangent is not None else [])
    if missing:
        # The inputs are written out even where the functions must be supplied: for a
        # variant found by explore=, they are what the reader cannot rebuild.
        call = f"gradverify.{entry}({', '.join(names + args)}, {options_text})"
        return f"{call}  # with the same {', '.join(supplied)}: {'; '.join(missing)}"
    statements = ["import gradverify", *array_imports]
    statements += [f"from {module} import {', '.join(dict.fromkeys(found))}" for module, found in imports.items()]
    statements.append(f"print(gradverify.{entry}({', '.join(names + args)}, {options_text}))")
    return "; ".join(statements)


def importable(f):
    """``(module, qualname)`` when ``import module`` then ``qualname`` finds ``f`` itself, else None."""
    module = getattr(f, "__module__", None)
    qualname = getattr(f, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or module == "__main__":
        return None
    if "<" in qualname:  # <lambda>, <locals>
        return None
    found = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if found is not f and getattr(found, "__func__", None) is not getattr(f, "__func__", f):
        return None
    return module, qualname


def _partial_parts(f):
    """``(func, argument texts)`` of a ``functools.partial`` whose arguments are literals
    Python writes exactly (numbers, strings, booleans, None, tuples of them), else None."""
    if not isinstance(f, functools.partial):
        return None
    values = list(f.args) + list(f.keywords.values())
    if not all(_is_literal(v) for v in values):
        return None
    return f.func, [repr(a) for a in f.args] + [f"{k}={v!r}" for k, v in f.keywords.items()]


def _is_literal(value):
    if isinstance(value, tuple):
        return all(_is_literal(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (bool, int, str))


def write_array(x):
    """``(import, source text)`` that rebuilds ``x`` exactly on its backend, or None."""
    try:
        writer = _WRITERS.get(_backend.backend_name(_backend.namespace_of(x)))
    except Exception:  # not an array of a known library
        return None
    host = np.asarray(_backend.to_numpy(x))
    dtype = _backend.dtype_name(host.dtype)
    if writer is None or dtype not in _WRITABLE_DTYPES:
        return None
    if host.dtype.kind == "f" and not np.isfinite(host).all():
        return None
    values = host.tolist()
    if host.dtype.kind == "f":
        values = _floats(values)
    module_import, name = writer
    return module_import, f"{name}.asarray({values!r}, dtype={name}.{dtype})"


def _floats(values):
    """Python floats, so that ``repr`` writes 1.0 (not 1) and each value exactly."""
    if isinstance(values, list):
        return [_floats(v) for v in values]
    return float(values)


def _why_not_written(x):
    try:
        host = np.asarray(_backend.to_numpy(x))
    except Exception:
        return type(x).__name__
    if host.dtype.kind == "f" and not np.isfinite(host).all():
        return "it holds NaN or infinity"
    return f"dtype {_backend.dtype_name(host.dtype)}"


def _describe(f):
    qualname = getattr(f, "__qualname__", None) or type(f).__name__
    module = getattr(f, "__module__", None)
    if isinstance(f, functools.partial):
        return f"a functools.partial of {_describe(f.func)} with arguments that are not plain literals"
    if isinstance(qualname, str) and "<lambda>" in qualname:
        return "a lambda"
    if isinstance(qualname, str) and "<locals>" in qualname:
        return f"{qualname.split('.<locals>')[0]}'s local function {qualname.rsplit('.', 1)[-1]}"
    if module == "__main__":
        return f"{qualname}, defined in __main__"
    return str(qualname)

