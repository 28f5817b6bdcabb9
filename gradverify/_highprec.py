"""High-precision evaluation of user functions on arrays of mpmath numbers.

Design
------
* **Private context.**  ``mpmath.mp.dps`` is global state shared with the
  user's own code, so it is never touched.  All numbers live in a private
  :class:`mpmath.ctx_mp.MPContext` (:data:`CTX`) whose element type
  :data:`MPF` is a fresh class; arithmetic on its elements returns the same
  class, and precision is chosen per call with ``CTX.workdps(dps)``.
* **Object ufuncs.**  NumPy's object-dtype loops call a method of the same
  name on every element (``np.exp(a)`` calls ``elem.exp()``,
  ``np.arctan2(a, b)`` calls ``elem.arctan2(b)``, ``np.floor`` calls
  ``math.floor``).  These methods are attached to :data:`MPF`, computed with
  :data:`CTX`, so plain NumPy code runs unchanged on object arrays and follows
  the working precision.  Results that mpmath would make complex (``sqrt`` of
  a negative number, ``x**0.5`` with ``x < 0``) become NaN and division by
  zero gives +-inf/NaN, as in float64, instead of an ``mpc`` or an exception.
* **Namespace.**  :data:`namespace` is an array-API-like namespace over object
  arrays: its floating dtypes all map to ``object``, constructors produce
  :data:`MPF` elements, the few functions NumPy has no object loop for
  (``logaddexp``, ``isfinite``, ``isnan``, ...) are written elementwise, and
  everything else falls back to ``array_api_compat.numpy``.
* **High-precision arrays.**  Inputs are handed to user code as :class:`HPArray`, an
  object-ndarray subclass whose ``__array_ufunc__`` turns float operands (the ``0.0`` of
  ``np.minimum(x, 0.0)``, the bounds of ``np.clip``, a float64 weight matrix) into exact
  :data:`MPF` first, and whose ``__array_function__`` makes ``np.zeros_like``/``ones_like``/
  ``empty_like``/``full_like`` high precision and turns float elements that ``np.where``,
  ``np.concatenate``, ``np.pad`` ... bring in into :data:`MPF`.  So constants never leave a
  Python float behind for a later ``np.expm1`` to trip over.
* **Conversions are traced.**  Every ``float(m)`` of an :data:`MPF` (``float()``,
  ``np.float64(m)``, ``.astype(float)``, ``np.asarray(x, dtype=float)``, a write into a
  float64 or float32 buffer, ``math.*``) goes through ``MPF.__float__``, which
  :func:`traced_call` records with the exact value and the user's source line.  Comparing
  the records of two evaluations at nearby points tells whether the precision was lost on
  the way from a given input element (see :mod:`gradverify._truth`).
* **When evaluation is impossible.**  :func:`evaluate` raises
  :class:`~gradverify._errors.HighPrecisionUnavailable` when the function
  cannot run on object arrays (a NumPy function without an object loop, a
  float-only library routine) or when it silently left the mpmath domain (an
  ``astype(np.float64)``, ``float(x)``, ``math.exp``): such an evaluation
  would be a double-precision result posing as the truth.

The context is shared module state: concurrent evaluations in several threads
at different precisions are not supported.
"""

from __future__ import annotations

import linecache
import math
import os
import re
import sys
from dataclasses import dataclass

import array_api_compat.numpy as _compat
import numpy as np
from mpmath import libmp
from mpmath.ctx_mp import MPContext

from gradverify._errors import GradVerifyError, HighPrecisionUnavailable

DEFAULT_DPS = 40

CTX = MPContext()
MPF = CTX.mpf
_MAKE = CTX.make_mpf
_BASE = MPF.__mro__[1]  # mpmath's _mpf, holding the arithmetic we wrap
_OBJ = np.dtype(object)
_TINY = 2.2250738585072014e-308  # smallest normal binary64


def hp_context():
    """Return the private mpmath context (:data:`CTX`) used for all numbers."""
    return CTX


# --- element methods used by NumPy's object loops ----------------------------

def _real(f):
    """Wrap a ctx function so that complex results become NaN, as in float64."""
    def method(*args):
        r = f(*args)
        return r if type(r) is MPF else CTX.nan
    return method


def _fmod(x, y):  # C semantics (sign of the dividend); mpmath's fmod differs
    r = CTX.fmod(abs(x), abs(y))
    return -r if x < 0 else r


_METHODS = {
    "exp": CTX.exp, "expm1": CTX.expm1, "exp2": lambda x: CTX.power(2, x),
    "log": CTX.log, "log1p": CTX.log1p, "log2": lambda x: CTX.log(x, 2),
    "log10": CTX.log10, "sqrt": CTX.sqrt,
    "cbrt": lambda x: CTX.sign(x) * CTX.cbrt(abs(x)),
    "sin": CTX.sin, "cos": CTX.cos, "tan": CTX.tan,
    "arcsin": CTX.asin, "arccos": CTX.acos, "arctan": CTX.atan,
    "sinh": CTX.sinh, "cosh": CTX.cosh, "tanh": CTX.tanh,
    "arcsinh": CTX.asinh, "arccosh": CTX.acosh, "arctanh": CTX.atanh,
    "fabs": abs, "rint": CTX.nint,
    "deg2rad": CTX.radians, "radians": CTX.radians,
    "rad2deg": CTX.degrees, "degrees": CTX.degrees,
    "arctan2": CTX.atan2, "hypot": CTX.hypot, "fmod": _fmod,
    # math.floor/ceil/trunc would otherwise go through float(x)
    "__floor__": CTX.floor, "__ceil__": CTX.ceil,
    "__trunc__": lambda x: CTX.floor(x) if x >= 0 else CTX.ceil(x),
}
# This replaces mpf's ``exp`` property (the binary exponent, unused by mpmath
# itself; ``man_exp`` still gives it) on the private class only.
for _name, _f in _METHODS.items():
    setattr(MPF, _name, _real(_f))


# --- tracing conversions to float ------------------------------------------------

_TRACE = None  # a list while traced_call runs: (exact value, site) per float(MPF)
_SKIP = (os.path.dirname(np.__file__) + os.sep, __file__)


def _site():
    """``(filename, lineno, source line)`` of the innermost frame outside NumPy and gradverify."""
    f = sys._getframe(2)
    while f is not None and f.f_code.co_filename.startswith(_SKIP):
        f = f.f_back
    if f is None:
        return ("?", 0, "")
    name, line = f.f_code.co_filename, f.f_lineno
    return (name, line, linecache.getline(name, line).strip())


def _float(self):
    if _TRACE is not None:
        _TRACE.append((self._mpf_, _site()))
    return _BASE.__float__(self)


MPF.__float__ = _float


def _div_by_zero(num):
    num = CTX.convert(num)
    if num == 0 or CTX.isnan(num):
        return CTX.nan
    return CTX.inf if num > 0 else CTX.ninf


def _truediv(self, other):
    try:
        return _BASE.__truediv__(self, other)
    except ZeroDivisionError:
        return _div_by_zero(self)


def _pow(self, other):
    try:
        r = _BASE.__pow__(self, other)
    except ZeroDivisionError:  # 0 ** negative
        return CTX.inf
    return CTX.nan if type(r) is CTX.mpc else r


# __rtruediv__ and __rpow__ convert the left operand and re-enter these two.
MPF.__truediv__ = _truediv
MPF.__pow__ = _pow


# --- conversion ----------------------------------------------------------------

def _exact(v):
    """Convert one element exactly to an MPF (raises TypeError if impossible)."""
    if type(v) is MPF:
        return v
    if isinstance(v, float):  # also np.float64
        return _MAKE(libmp.from_float(v))
    if isinstance(v, (int, np.integer, np.bool_)):
        return _MAKE(libmp.from_int(int(v)))
    if isinstance(v, np.floating):
        if v.dtype.itemsize <= 8 or not np.isfinite(v):
            return _MAKE(libmp.from_float(float(v)))  # float16/32 embed exactly
        n, d = v.as_integer_ratio()  # long double: keep every bit
        return _MAKE(libmp.from_man_exp(n, 1 - d.bit_length()))
    if hasattr(v, "_mpf_"):  # an mpf of another mpmath context
        return _MAKE(v._mpf_)
    raise TypeError(f"cannot convert {type(v).__name__} to a real mpmath number")


def _to_float(v):
    """Round one element to the nearest binary64, subnormals included."""
    t = _exact(v)._mpf_
    f = libmp.to_float(t, rnd=libmp.round_nearest)
    if abs(f) <= _TINY and t[1]:
        # to_float rounds to 53 bits first, then ldexp rounds again into the
        # subnormal grid; round once on the 2**-1074 grid instead.
        k = libmp.to_int(libmp.mpf_shift(t, 1074), libmp.round_nearest)
        f = math.copysign(math.ldexp(abs(k), -1074), -1.0 if t[0] else 1.0)
    return f


_U_EXACT = np.frompyfunc(_exact, 1, 1)
_U_FROM_FLOAT = np.frompyfunc(lambda v: _MAKE(libmp.from_float(v)), 1, 1)  # fast path
_U_FLOAT = np.frompyfunc(_to_float, 1, 1)
_U_IS_MPF = np.frompyfunc(lambda v: type(v) is MPF, 1, 1)


def _obj0d(v):
    out = np.empty((), dtype=object)
    out[()] = v
    return out


def to_hp(a):
    """Convert a real array exactly to an object array of :data:`MPF`.

    Parameters
    ----------
    a : array_like
        Real floating, integer or boolean values (any shape, 0-d included), or
        an object array of numbers.  Every binary64 value, subnormals, infinities
        and NaN included, is represented exactly; the sign of a zero is lost
        because mpmath has no negative zero.

    Returns
    -------
    HPArray
        Object array of the same shape whose elements are :data:`MPF` (a view of `a`
        when it already is one).
    """
    a = np.asarray(a)
    if a.dtype.kind == "c":
        raise TypeError("complex arrays cannot be evaluated in high precision")
    if a.dtype.kind == "f" and a.dtype.itemsize <= 8:
        a = a.astype(np.float64)  # exact; object conversion then yields floats
    if a.dtype == _OBJ and a.size and np.all(_U_IS_MPF(a)):
        return a.view(HPArray)
    if not a.ndim:
        return _obj0d(_exact(a[()])).view(HPArray)
    with np.errstate(all="ignore"):  # NaN handling inside mpmath sets FP flags
        r = (_U_FROM_FLOAT if a.dtype == np.float64 else _U_EXACT)(a)
    return np.asarray(r, dtype=object).view(HPArray)


# --- the high-precision array type ----------------------------------------------

def _fix_elem(v):
    return _exact(v) if isinstance(v, (float, np.floating)) else v


_U_FIX = np.frompyfunc(_fix_elem, 1, 1)
_U_IS_FLOAT = np.frompyfunc(lambda v: isinstance(v, (float, np.floating)), 1, 1)


def _plain(a):
    """An operand as NumPy should see it: float constants and arrays exactly as MPF."""
    if isinstance(a, HPArray):
        return a.view(np.ndarray)
    if isinstance(a, (float, np.floating)):
        return _exact(a)
    if isinstance(a, np.ndarray) and a.dtype.kind == "f":
        return to_hp(a).view(np.ndarray)
    return a


def _hp(r):
    """A result as user code should see it: object arrays as HPArray, the rest as is."""
    if isinstance(r, tuple):
        return tuple(_hp(v) for v in r)
    if isinstance(r, list):
        return [_hp(v) for v in r]
    if isinstance(r, np.ndarray):
        if r.dtype == _OBJ:
            return r if isinstance(r, HPArray) else r.view(HPArray)
        return r.view(np.ndarray) if isinstance(r, HPArray) else r
    return r


def _without_floats(r):
    """``r`` with its Python/NumPy float elements (constants) made exact MPF."""
    if isinstance(r, (tuple, list)):
        return type(r)(_without_floats(v) for v in r)
    if isinstance(r, np.ndarray) and r.dtype == _OBJ and r.size and np.any(_U_IS_FLOAT(r).astype(bool)):
        r = np.asarray(_U_FIX(r), dtype=object).reshape(r.shape)
    return _hp(r)


def _like(fill):
    """``np.zeros_like`` & co. of an HPArray: high precision unless a non-float dtype is asked.

    Returns None (let NumPy do it) for other dtypes or fill values.
    """
    def make(a, *args, **kwargs):
        if fill is None:  # full_like(a, fill_value, dtype=None, order, subok, shape)
            value = args[0] if args else kwargs.get("fill_value")
            dtype = args[1] if len(args) > 1 else kwargs.get("dtype")
        else:
            value, dtype = fill, args[0] if args else kwargs.get("dtype")
        if dtype is not None and not _is_float_dtype(dtype):
            return None
        if type(value) is not MPF:
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
                return None
            value = _exact(value)
        shape = kwargs.get("shape")
        return np.full(np.shape(a) if shape is None else shape, value, dtype=object).view(HPArray)
    return make


class HPArray(np.ndarray):
    """An object ndarray of :data:`MPF`, as user code sees the high-precision inputs.

    It behaves as a plain object array, except that

    * ufuncs (``np.minimum``, ``np.clip``, ``np.where``'s cousins ``maximum``/``fmax``,
      arithmetic, comparisons) see float operands as exact :data:`MPF`, so a constant
      they select is never a Python float that ``np.expm1`` has no method for;
    * ``np.zeros_like``, ``np.ones_like``, ``np.empty_like`` and ``np.full_like`` of it give
      high-precision arrays (``empty_like`` holds zeros) unless a non-float dtype is asked;
    * ``np.where``, ``np.select``, ``np.concatenate``, ``np.stack`` and the other functions
      that assemble arrays from several sources turn the float elements they bring in into
      :data:`MPF`.

    Casts (``astype(float)``, ``np.asarray(x, dtype=float)``, ``float(x)``) still round to
    float64: they are what the caller asked for, and :func:`traced_call` records them.
    """

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if ufunc is np.matmul and method == "__call__" and not kwargs and len(inputs) == 2:
            r = _exact_matmul(*(_plain(a) for a in inputs))
            if r is not None:
                return r[()] if r.ndim == 0 else r.view(HPArray)
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(o.view(np.ndarray) if isinstance(o, HPArray) else o for o in out)
        result = getattr(ufunc, method)(*(_plain(a) for a in inputs), **kwargs)
        if out is not None and all(o is not None for o in out):
            return out[0] if len(out) == 1 else out
        return _hp(result)

    def __array_function__(self, func, types, args, kwargs):
        special = _ARRAY_FUNCTIONS.get(func)
        if special is not None:
            r = special(*args, **kwargs)
            if r is not None:
                return r
        r = super().__array_function__(func, types, args, kwargs)
        return _without_floats(r) if func in _ASSEMBLING else _hp(r)


# The widest fixed-point integer (in bits) :func:`_exact_matmul` builds for one row or column.
_MATMUL_MAX_BITS = 4096


def _fixed_rows(m):
    """``(ints, exps)`` with ``m[r, c] == ints[r, c] * 2**exps[r]`` exactly, or None.

    ``m`` is a 2-D object array; None unless every element is a finite :data:`MPF` and no
    row spans more than ``_MATMUL_MAX_BITS`` bits.
    """
    rows, exps = [], []
    for row in m:
        ts = [e._mpf_ if type(e) is MPF else None for e in row]
        low, top = None, None
        for t in ts:
            if t is None:
                return None
            sign, man, exp, bc = t
            if not man:
                if t != libmp.fzero:  # inf, nan
                    return None
                continue
            low = exp if low is None or exp < low else low
            top = exp + bc if top is None or exp + bc > top else top
        if low is None:
            low = top = 0
        if top - low > _MATMUL_MAX_BITS:
            return None
        rows.append([((-man if sign else man) << (exp - low)) if man else 0 for sign, man, exp, _ in ts])
        exps.append(low)
    ints = np.empty((len(rows), m.shape[1]), dtype=object)
    for r, row in enumerate(rows):
        ints[r, :] = row
    return ints, exps


def _exact_matmul(a, b):
    """``a @ b`` of 1-D or 2-D arrays of :data:`MPF`, each element the exact dot product
    rounded once to the working precision; None (NumPy's object loop does it) otherwise.

    NumPy's object loop rounds every product and every partial sum, each a Python call
    into mpmath; here each row of ``a`` and column of ``b`` becomes integers on one binary
    exponent (exactly), the products and sums are integer arithmetic, and only the result
    is rounded: at least as accurate, and far faster.
    """
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)) or a.dtype != _OBJ or b.dtype != _OBJ:
        return None
    if a.ndim not in (1, 2) or b.ndim not in (1, 2) or a.shape[-1] != b.shape[0] or not a.size or not b.size:
        return None
    left = _fixed_rows(a.reshape(1, -1) if a.ndim == 1 else a)
    right = _fixed_rows((b.reshape(-1, 1) if b.ndim == 1 else b).T)
    if left is None or right is None:
        return None
    (ia, ea), (ib, eb) = left, right
    sums = ia @ ib.T
    prec = CTX.prec
    out = np.empty(sums.shape, dtype=object)
    for r in range(sums.shape[0]):
        for c in range(sums.shape[1]):
            out[r, c] = _MAKE(libmp.from_man_exp(sums[r, c], ea[r] + eb[c], prec, libmp.round_nearest))
    if a.ndim == 1 and b.ndim == 1:
        return out.reshape(())
    return out.reshape(-1) if a.ndim == 1 or b.ndim == 1 else out


_ARRAY_FUNCTIONS = {
    np.zeros_like: _like(0), np.ones_like: _like(1), np.empty_like: _like(0), np.full_like: _like(None),
}
_ASSEMBLING = frozenset(getattr(np, n) for n in (
    "where", "select", "choose", "piecewise", "concatenate", "stack", "hstack", "vstack", "dstack",
    "column_stack", "block", "append", "insert", "pad", "nan_to_num", "clip",
) if hasattr(np, n))


def from_hp(a):
    """Round high-precision values to the nearest float64.

    Parameters
    ----------
    a : numpy.ndarray or number
        Object array holding :data:`MPF`, Python ints or floats; a plain
        numeric array; or a scalar :data:`MPF`.

    Returns
    -------
    numpy.ndarray
        float64 array of the same shape (0-d for a scalar).
    """
    a = np.asarray(a) if isinstance(a, (np.ndarray, list, tuple)) else _obj0d(a)
    if a.dtype != _OBJ:
        return a.astype(np.float64)
    if a.ndim == 0:
        return np.asarray(_to_float(a[()]), dtype=np.float64)
    with np.errstate(all="ignore"):  # NaN handling inside mpmath sets FP flags
        return np.asarray(_U_FLOAT(a), dtype=np.float64)


def is_hp_array(x):
    """Whether `x` is a high-precision value: an object ndarray of numbers, or an MPF."""
    if type(x) is MPF:
        return True
    if not isinstance(x, np.ndarray) or x.dtype != _OBJ:
        return False
    return x.size == 0 or isinstance(x.flat[0], (MPF, int, float, np.number))


def hp_sum_weighted(out, weights, *, dps=None):
    """Contract an output with a cotangent: ``sum_i weights_i * out_i``.

    The products are exact and the sum is rounded once (``CTX.fdot``), at the
    current working precision of :data:`CTX` or at `dps` digits if given.

    Parameters
    ----------
    out : numpy.ndarray
        High-precision output (object array of MPF) or any real array.
    weights : numpy.ndarray
        float64 weights, broadcastable to ``out.shape``.
    dps : int, optional
        Decimal digits to use instead of the current precision.

    Returns
    -------
    MPF
    """
    o = to_hp(out)
    w = to_hp(np.broadcast_to(np.asarray(weights), o.shape))
    if dps is None:
        return CTX.fdot(o.ravel(), w.ravel())
    with CTX.workdps(dps):
        return CTX.fdot(o.ravel(), w.ravel())


# --- array namespace ---------------------------------------------------------

def _is_float_dtype(dtype):
    return dtype is not None and (np.dtype(dtype) == _OBJ or np.dtype(dtype).kind == "f")


def _as_0d(r):
    """Reductions and ufuncs on object arrays return bare scalars; keep arrays."""
    return _obj0d(r).view(HPArray) if type(r) in (MPF, int, float) else _hp(r)


def _wrapped(f):
    def g(*args, **kwargs):
        return _as_0d(f(*args, **kwargs))
    g.__name__ = getattr(f, "__name__", "function")
    g.__doc__ = getattr(f, "__doc__", None)
    return g


def _operand(v):
    """Make a float scalar/array operand high precision so that constants a
    where/maximum/clip selects end up as MPF elements, not Python floats."""
    if v is None or isinstance(v, (bool, np.bool_)) or is_hp_array(v):
        return v
    a = np.asarray(v)
    return to_hp(a) if a.dtype.kind == "f" else v


def _elementwise(f, nin=1, bool_out=False, fallback=None):
    uf = np.frompyfunc(f, nin, 1)

    def g(*args):
        if fallback is not None and not any(is_hp_array(a) for a in args):
            return fallback(*args)
        r = uf(*(to_hp(a) if is_hp_array(a) else _operand(a) for a in args))
        r = np.asarray(r, dtype=object) if isinstance(r, np.ndarray) else _obj0d(r)
        return r.astype(bool) if bool_out else r
    return g


def _logaddexp(a, b):
    if a == b:  # also covers +-inf, where a - b would be NaN
        return a + CTX.ln2
    m = a if a > b else b
    return m + CTX.log1p(CTX.exp(-abs(a - b)))


def _sign(x):
    return CTX.nan if CTX.isnan(x) else CTX.sign(x)


class _Fallback:
    """Attribute access falling back to a module, 0-d-preserving wrappers cached."""

    _module = _compat

    def __getattr__(self, name):
        obj = getattr(self._module, name)
        if callable(obj) and not isinstance(obj, type):
            obj = _wrapped(obj)
        self.__dict__[name] = obj
        return obj


class _Linalg(_Fallback):
    _module = _compat.linalg

    def __repr__(self):
        return "<gradverify high-precision linalg namespace>"


class HighPrecisionNamespace(_Fallback):
    """Array-API-like namespace over object arrays of :data:`MPF`.

    Code written as ``xp.exp(x)``, ``xp.sum(x, axis=0, keepdims=True)``,
    ``x @ W + b`` ... runs unchanged.  ``float64``/``float32``/``float16`` are
    all ``object``; ``asarray``, ``astype`` and the constructors produce MPF
    elements; functions NumPy has no object loop for are implemented
    elementwise; anything else comes from ``array_api_compat.numpy``.  Bare
    scalars that NumPy returns for object reductions are wrapped as 0-d arrays.
    """

    float64 = float32 = float16 = _OBJ

    def __init__(self):
        self.__name__ = "gradverify._highprec.namespace"
        self.linalg = _Linalg()

    def __repr__(self):
        return f"<high-precision array namespace {self.__name__} (mpmath object arrays)>"

    # dtypes ---------------------------------------------------------------
    def finfo(self, type, /):
        """``finfo(float64)`` for object dtypes.

        Constants such as ``eps`` or ``tiny`` then stay the float64 literals
        the float64 evaluation uses, so the high-precision run evaluates the
        same mathematical function (same clamps and offsets), just exactly.
        """
        d = type.dtype if isinstance(type, (np.ndarray, np.generic)) else type
        return np.finfo(np.float64) if np.dtype(d) == _OBJ else _compat.finfo(type)

    def isdtype(self, dtype, kind):
        if np.dtype(dtype) == _OBJ:
            kinds = kind if isinstance(kind, tuple) else (kind,)
            return any(k in ("real floating", "numeric") or k == _OBJ for k in kinds)
        return _compat.isdtype(dtype, kind)

    # creation -------------------------------------------------------------
    def asarray(self, obj, /, *, dtype=None, device=None, copy=None):
        a = np.asarray(obj)
        if _is_float_dtype(dtype) or (dtype is None and a.dtype.kind in "fO"):
            r = to_hp(a)
            return r.copy() if copy and r is a else r
        return _compat.asarray(obj, dtype=dtype, copy=copy)

    def astype(self, x, dtype, /, *, copy=True, device=None):
        if _is_float_dtype(dtype):
            r = to_hp(x)
            return r.copy() if copy and r is x else r
        return np.asarray(x).astype(dtype, copy=copy)

    def full(self, shape, fill_value, *, dtype=None, device=None):
        if _is_float_dtype(dtype) or (dtype is None and not isinstance(fill_value, (bool, int))):
            return np.full(shape, _exact(np.asarray(fill_value)[()]), dtype=object).view(HPArray)
        return np.full(shape, fill_value, dtype=dtype)

    def zeros(self, shape, *, dtype=None, device=None):
        return self.full(shape, 0.0 if dtype is None else 0, dtype=dtype)

    def ones(self, shape, *, dtype=None, device=None):
        return self.full(shape, 1.0 if dtype is None else 1, dtype=dtype)

    empty = zeros

    def full_like(self, x, /, fill_value, *, dtype=None, device=None):
        return self.full(np.shape(x), fill_value, dtype=np.asarray(x).dtype if dtype is None else dtype)

    def zeros_like(self, x, /, *, dtype=None, device=None):
        return self.full_like(x, 0, dtype=dtype)

    def ones_like(self, x, /, *, dtype=None, device=None):
        return self.full_like(x, 1, dtype=dtype)

    empty_like = zeros_like

    def eye(self, n_rows, n_cols=None, /, *, k=0, dtype=None, device=None):
        if dtype is None or _is_float_dtype(dtype):
            return to_hp(np.eye(n_rows, n_cols, k=k))
        return np.eye(n_rows, n_cols, k=k, dtype=dtype)

    def arange(self, start, /, stop=None, step=1, *, dtype=None, device=None):
        r = np.arange(start, stop, step) if stop is not None else np.arange(start, step=step)
        if _is_float_dtype(dtype) or (dtype is None and r.dtype.kind == "f"):
            return to_hp(r.astype(np.float64))
        return r if dtype is None else r.astype(dtype)

    def linspace(self, start, stop, /, num, *, dtype=None, device=None, endpoint=True):
        return to_hp(np.linspace(start, stop, num, endpoint=endpoint))

    # elementwise with float constants -----------------------------------
    def where(self, condition, x1, x2, /):
        return _hp(np.where(condition, _operand(x1), _operand(x2)))

    def maximum(self, x1, x2, /):
        return _as_0d(np.maximum(_operand(x1), _operand(x2)))

    def minimum(self, x1, x2, /):
        return _as_0d(np.minimum(_operand(x1), _operand(x2)))

    def clip(self, x, /, min=None, max=None):
        return _as_0d(np.clip(x, _operand(min), _operand(max)))

    # no object loop in NumPy (or one that returns ints) ------------------
    logaddexp = staticmethod(_elementwise(_logaddexp, 2, fallback=np.logaddexp))
    isfinite = staticmethod(_elementwise(CTX.isfinite, bool_out=True, fallback=np.isfinite))
    isnan = staticmethod(_elementwise(CTX.isnan, bool_out=True, fallback=np.isnan))
    isinf = staticmethod(_elementwise(CTX.isinf, bool_out=True, fallback=np.isinf))
    signbit = staticmethod(_elementwise(lambda x: x < 0, bool_out=True, fallback=np.signbit))
    copysign = staticmethod(_elementwise(lambda x, y: abs(x) if y >= 0 else -abs(x), 2,
                                         fallback=np.copysign))
    sign = staticmethod(_elementwise(_sign, fallback=np.sign))
    floor = staticmethod(_elementwise(CTX.floor, fallback=np.floor))
    ceil = staticmethod(_elementwise(CTX.ceil, fallback=np.ceil))
    trunc = staticmethod(_elementwise(MPF.__trunc__, fallback=np.trunc))
    round = staticmethod(_elementwise(CTX.nint, fallback=np.round))


namespace = HighPrecisionNamespace()


# --- evaluation -----------------------------------------------------------------

_NO_LOOP = re.compile(r"ufunc '(\w+)' not supported for the input types")
_NO_METHOD = re.compile(r"no callable (\w+) method|object has no attribute '(\w+)'")


def _fix_hint(namespace_aware, name=None):
    own = name is not None and callable(getattr(type(namespace), name, None))
    ns = (f"call xp.{name} with xp = gradverify's namespace_of(x) (it implements "
          f"{name} elementwise)" if own else
          "express it with exp/log/comparisons from xp = gradverify's namespace_of(x)")
    np_fix = "express it with np.exp/np.log/np.where and arithmetic"
    fix = ns if namespace_aware else np_fix if namespace_aware is False else f"{np_fix}, or {ns}"
    return f"Fix: {fix}; or pass truth=False to skip the high-precision truth."


def _explain(exc, namespace_aware):
    msg = str(exc)
    m = _NO_LOOP.search(msg)
    if m:
        return (f"numpy.{m.group(1)} has no object-dtype loop, so it cannot run on the "
                f"high-precision (mpmath object) arrays. {_fix_hint(namespace_aware, m.group(1))}")
    m = _NO_METHOD.search(msg)
    if m:
        meth = m.group(1) or m.group(2)
        return (f"an operation called .{meth}() on each element, which mpmath numbers do not "
                f"provide ({type(exc).__name__}: {msg}). {_fix_hint(namespace_aware)}")
    if isinstance(exc, (TypeError, AttributeError, ValueError)):
        return (f"the function failed on high-precision (object-dtype mpmath) arrays with "
                f"{type(exc).__name__}: {msg}. Float-only routines (np.linalg solvers, "
                f"np.isclose, scipy, writes into float buffers) cannot run on them. "
                f"{_fix_hint(namespace_aware)}")
    return (f"the function raised {type(exc).__name__}: {msg} during the high-precision "
            f"evaluation; no truth could be computed. Fix the error or pass truth=False.")


_LOST = ("the high-precision evaluation silently lost precision: {what}, so the 'truth' "
         "would only be float64. This happens with astype(np.float64), np.asarray(..., "
         "dtype=float), float(x), np.float64(...), math.* functions or mpmath's global "
         "functions. Keep the input's dtype (x.dtype, xp.float64 of the input's namespace) "
         "and use np./xp. functions, or pass truth=False.")


def _normalize(out, lenient=False):
    """The output as a plain object array of MPF, and its elements that were not MPF.

    ``lost`` lists ``(flat index, exact value)`` of the output elements that were Python or
    NumPy floats or mpmath numbers of another context (converted exactly here). Strict mode
    (``lenient=False``) rejects them the way :func:`call` documents; lenient mode leaves
    judging them to the caller, who can see whether they move with the inputs.
    """
    if isinstance(out, (tuple, list)):
        raise HighPrecisionUnavailable(
            f"the function returned a {type(out).__name__}; high-precision evaluation needs a "
            "single array output (evaluate each output separately).")
    if not isinstance(out, np.ndarray):
        if not isinstance(out, (int, float, complex, np.generic)) and not hasattr(out, "_mpf_"):
            raise HighPrecisionUnavailable(
                f"the function returned {type(out).__name__}, not an array or number.")
        out = _obj0d(out)
    out = out.view(np.ndarray)
    kind = out.dtype.kind
    if kind in "fc":
        raise HighPrecisionUnavailable(_LOST.format(
            what=f"the function returned a {out.dtype} array instead of an object array"))
    if kind in "iub":
        return to_hp(out).view(np.ndarray), ()
    if kind != "O":
        raise HighPrecisionUnavailable(f"the function returned a {out.dtype} array.")
    is_m = np.asarray(_U_IS_MPF(out), dtype=bool)
    if is_m.all():
        return out, ()
    lost = []
    for k in np.flatnonzero(~is_m.reshape(-1)):
        v = out.reshape(-1)[k]
        if isinstance(v, (int, np.integer, np.bool_)):
            continue
        if isinstance(v, (float, np.floating)):
            # A float constant picked by maximum/where/clip (ReLU's 0.0) is an
            # exact value; an output with no MPF at all left the mpmath domain.
            if not lenient and not (v == 0 or is_m.any()):
                raise HighPrecisionUnavailable(_LOST.format(
                    what="the output holds Python/NumPy floats instead of mpmath numbers"))
        elif hasattr(v, "_mpf_"):
            if not lenient:
                raise HighPrecisionUnavailable(_LOST.format(
                    what="the output holds numbers of mpmath's global context (mp.dps="
                    f"{v.context.dps}) instead of gradverify's"))
        else:
            raise HighPrecisionUnavailable(
                f"the function's output holds {type(v).__name__} elements; only real (not complex) "
                "numbers can be evaluated in high precision.")
        lost.append((int(k), _exact(v)._mpf_))
    return to_hp(out).view(np.ndarray), tuple(lost)


def _run(fn, args, dps, namespace_aware):
    args = [a.view(HPArray) if isinstance(a, np.ndarray) and a.dtype == _OBJ else a for a in args]
    try:
        with CTX.workdps(dps):
            return fn(*args)
    except GradVerifyError:
        raise  # gradverify's own (HighPrecisionUnavailable, a time budget run out)
    except ZeroDivisionError as exc:  # e.g. mpf % 0 or Python ints
        raise HighPrecisionUnavailable(
            f"division by zero during the high-precision evaluation ({exc!r}); float64 would "
            "give inf/nan here. Avoid the division or pass truth=False.") from exc
    except Exception as exc:
        raise HighPrecisionUnavailable(_explain(exc, namespace_aware)) from exc


def call(fn, args, *, dps=DEFAULT_DPS, namespace_aware=None):
    """Call ``fn(*args)`` on arguments that are already high precision.

    Like :func:`evaluate` (same errors, same normalized output) but without
    converting the arguments, for callers that build shifted high-precision
    points themselves.  Object-array arguments reach ``fn`` as :class:`HPArray`.
    """
    return _normalize(_run(fn, args, dps, namespace_aware))[0]


@dataclass(frozen=True)
class Traced:
    """One evaluation by :func:`traced_call`.

    Attributes
    ----------
    out : numpy.ndarray
        Plain object array of :data:`MPF` (0-d for a scalar output).
    lost : tuple
        ``(flat index, exact mpf tuple)`` of the output elements that were Python/NumPy
        floats or mpmath numbers of another context (now exact MPF in ``out``). A constant
        (ReLU's ``0.0``) is harmless; one that changes with an input lost its precision.
    conversions : tuple
        ``(exact mpf tuple, (filename, lineno, source line))`` of every ``float()`` of an
        :data:`MPF` during the call, in order: ``float(x)``, ``np.float64(x)``,
        ``.astype(float)``, ``np.asarray(x, dtype=float)``, writes into float64/float32
        buffers, ``math.*``.  The site is the innermost frame outside NumPy.
    """

    out: np.ndarray
    lost: tuple
    conversions: tuple


def traced_call(fn, args, *, dps=DEFAULT_DPS, namespace_aware=None):
    """Like :func:`call`, recording what left the working precision instead of rejecting it.

    Output elements that are floats (or mpmath numbers of another context) are converted
    exactly and listed in :attr:`Traced.lost`, and every conversion of an :data:`MPF` to a
    float during the call is listed in :attr:`Traced.conversions`.  Neither says on its own
    whether the result is fake (a constant ``0.0``, a ``float()`` for an ``if``): two
    evaluations at points a tiny step apart do (:func:`lost_precision`).

    Raises
    ------
    HighPrecisionUnavailable
        As :func:`call`, except for float or foreign-mpmath elements next to others.
    """
    global _TRACE
    saved, _TRACE = _TRACE, []
    try:
        out = _run(fn, args, dps, namespace_aware)
        conversions = tuple(_TRACE)
    finally:
        _TRACE = saved
    out, lost = _normalize(out, lenient=True)
    return Traced(out, lost, conversions)


# Most specific first: one source line may hold several idioms.
_CAST_KINDS = (
    (re.compile(r"float32|float16|half|single"), "a float32/float16 buffer or cast"),
    (re.compile(r"(?<![\w.])float\("), "float()"),
    (re.compile(r"\bmath\.\w+\("), "a math.* function (it works on Python floats)"),
    (re.compile(r"float64\(|\bdouble\("), "np.float64(...)"),
    (re.compile(r"\b(asarray|array|asanyarray|ascontiguousarray)\("), "a cast to a float array (np.asarray/np.array(..., dtype=float))"),
    (re.compile(r"\.astype\("), "a cast (.astype(float))"),
    (re.compile(r"\]\s*(?:[-+*/@]|//|\*\*)?=(?!=)|__setitem__|\bout\s*=|\bput\(|\bcopyto\("),
     "a write into a float64 (or float32) scratch buffer (np.zeros(shape)/np.empty/np.zeros_like of a float array)"),
)


def describe_conversion(site):
    """A readable name of the idiom that converted an MPF to float at ``site``, and where."""
    name, line, source = site
    kind = next((k for pattern, k in _CAST_KINDS if pattern.search(source)), "a conversion to a Python/NumPy float")
    where = f"{os.path.basename(name)}:{line}" + (f" `{source}`" if source else "")
    return f"{kind} at {where}"


def lost_precision(center, moved):
    """Why ``moved`` (an evaluation at a point near ``center``'s) shows lost precision, or "".

    Both are :class:`Traced` at one precision.  Precision was lost on the way from the
    inputs that differ between the two points if a value converted to float differs (or
    the conversions differ in number), or an output element that was a float changed.
    """
    a, b = center.conversions, moved.conversions
    for k in range(max(len(a), len(b))):
        if k >= len(a) or k >= len(b) or a[k][0] != b[k][0]:
            site = (b if k < len(b) else a)[k][1]
            return (f"precision lost: a value that depends on this input was rounded to float64 by "
                    f"{describe_conversion(site)}; keep the input's dtype (np.zeros_like(x), "
                    "xp.zeros(shape, dtype=x.dtype), no float()/astype/np.asarray(..., dtype=float)) "
                    "so the high-precision run stays in mpmath numbers")
    if center.lost != moved.lost:
        ka = {k: v for k, v in center.lost}
        kb = {k: v for k, v in moved.lost}
        j = min(k for k in set(ka) | set(kb) if ka.get(k) != kb.get(k))
        return (f"precision lost: output element {j} is a Python/NumPy float (or an mpmath number "
                "of another context) that changes with this input; build it from the inputs' "
                "mpmath numbers instead")
    return ""


def evaluate(fn, inputs, *, dps=DEFAULT_DPS, namespace_aware=None):
    """Evaluate ``fn(*inputs)`` on mpmath numbers at `dps` significant digits.

    Parameters
    ----------
    fn : callable
        Function of arrays, written against an array namespace (gradverify's
        ``namespace_of(x)`` or ``array_api_compat.array_namespace(x)``) or as
        plain NumPy code.  It must return one array or scalar.
    inputs : sequence of numpy.ndarray
        Real floating inputs are converted exactly with :func:`to_hp`; integer
        and boolean ones (indices, masks) are passed unchanged.
    dps : int, optional
        Decimal digits of working precision (default :data:`DEFAULT_DPS`).
    namespace_aware : bool or None, optional
        Whether `fn` takes its operations from an array namespace ``xp`` rather
        than calling NumPy directly.  Only tailors the fix suggested in error
        messages; None (unknown) suggests both.

    Returns
    -------
    numpy.ndarray
        Object array (0-d for a scalar output) whose elements are :data:`MPF`.

    Raises
    ------
    HighPrecisionUnavailable
        If `fn` fails on object arrays (the original exception is chained), or
        its output is not an array of mpmath numbers (a float array or float
        elements mean it left the mpmath domain and lost precision).
    """
    args = []
    for a in inputs:
        a = np.asarray(a)
        try:
            args.append(to_hp(a) if a.dtype.kind in "fcO" else a)
        except TypeError as exc:
            raise HighPrecisionUnavailable(
                f"cannot convert an input to high precision: {exc}") from exc
    return call(fn, args, dps=dps, namespace_aware=namespace_aware)
