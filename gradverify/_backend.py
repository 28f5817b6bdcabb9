"""One code path for NumPy, CuPy, array-api-strict and high-precision (mpmath) arrays.

The namespace is always chosen from the arrays themselves; nothing here imports CuPy
(array-api-compat only looks at ``sys.modules``).
"""

import sys

import numpy as np
import array_api_compat

from gradverify import _highprec
from gradverify._errors import InvalidArgument
from gradverify._options import BACKENDS


def namespace_of(*arrays):
    """The array namespace of ``arrays``: the high-precision one for mpmath object arrays."""
    if any(_highprec.is_hp_array(a) for a in arrays):
        return _highprec.namespace
    try:
        return array_api_compat.array_namespace(*arrays)
    except TypeError as exc:
        kinds = ", ".join(sorted({type(a).__name__ for a in arrays}))
        msg = (
            f"cannot tell the array library of the inputs ({kinds}); pass arrays of one "
            "library (NumPy, CuPy or array-api-strict), all on one device"
        )
        raise InvalidArgument(msg) from exc


def device_of(x):
    return array_api_compat.device(x)


def backend_name(xp):
    """A short name of the namespace: ``numpy``, ``cupy``, ``strict`` or ``mpmath``."""
    if xp is _highprec.namespace:
        return "mpmath"
    if array_api_compat.is_numpy_namespace(xp):
        return "numpy"
    if array_api_compat.is_cupy_namespace(xp):
        return "cupy"
    if array_api_compat.is_array_api_strict_namespace(xp):
        return "strict"
    return getattr(xp, "__name__", repr(xp))


def to_numpy(x):
    """A host NumPy copy-or-view of ``x`` with its dtype kept."""
    if isinstance(x, np.ndarray):
        return x
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if isinstance(x, (int, float, np.generic)):
        return np.asarray(x)
    try:
        return np.from_dlpack(x)
    except (TypeError, AttributeError, BufferError, RuntimeError):
        return np.asarray(x)


def from_numpy(a, xp, device):
    """``a`` (a NumPy array) as an array of ``xp`` on ``device``."""
    if xp is _highprec.namespace:
        return _highprec.to_hp(a)
    return xp.asarray(a, device=device)


def dtype_name(dtype):
    """``float32`` for NumPy's, CuPy's and array-api-strict's float32 alike; ``bfloat16``
    for ml_dtypes' (the key of :data:`gradverify._tolerances.RTOL`)."""
    if isinstance(dtype, type) and issubclass(dtype, np.generic):
        dtype = np.dtype(dtype)
    name = getattr(dtype, "name", None)
    if isinstance(name, str):
        return name
    return str(dtype).rsplit(".", 1)[-1]


# The ml_dtypes floating type gradverify checks (the others have no tolerance table yet).
EXTENSION_FLOATS = ("bfloat16",)


def extension_float(dtype):
    """The name of an ml_dtypes floating dtype (``bfloat16``, ``float8_e4m3fn``, ...), else None.

    ml_dtypes' types are NumPy structured-kind (``'V'``) dtypes that ``isdtype`` rejects with
    a TypeError. Nothing is imported: an array of one exists only once ml_dtypes is loaded.
    """
    if "ml_dtypes" not in sys.modules:
        return None
    if isinstance(dtype, type) and issubclass(dtype, np.generic):
        dtype = np.dtype(dtype)
    if not isinstance(dtype, np.dtype) or dtype.kind != "V":
        return None
    if not getattr(dtype.type, "__module__", "").startswith("ml_dtypes"):
        return None
    return dtype.name if dtype.name.startswith(("float", "bfloat")) else None


def is_real_floating(xp, dtype):
    """Whether ``dtype`` is a real floating dtype gradverify can differentiate.

    ml_dtypes' ``bfloat16`` counts (it is evaluated in bfloat16, differentiated numerically in
    float64); its other floating types (float8, float4, ...) do not, and
    :func:`validate_input` names them.
    """
    ext = extension_float(dtype)
    if ext is not None:
        return ext in EXTENSION_FLOATS
    if "ml_dtypes" in sys.modules and isinstance(dtype, np.dtype) and dtype.kind == "V":
        return False  # ml_dtypes' int4 and friends, or a structured dtype
    return xp.isdtype(dtype, "real floating")


def float64_of(x, xp):
    """``x`` cast to float64 in its own namespace and on its own device (bfloat16 included:
    every bfloat16 value is exact in float64)."""
    if x.dtype == xp.float64:
        return x
    return xp.astype(x, xp.float64)


def describe_device(xp):
    """The device a backend computes on: ``cpu``, or ``cuda:0 (NVIDIA H100 ...)`` for CuPy."""
    if backend_name(xp) != "cupy":
        return "cpu"
    cupy = sys.modules["cupy"]  # imported by load_backend; never imported here
    device = cupy.cuda.Device()
    name = cupy.cuda.runtime.getDeviceProperties(device.id)["name"]
    return f"cuda:{device.id} ({name.decode() if isinstance(name, bytes) else name})"


def load_backend(name):
    """The array namespace called ``name`` (numpy, strict or cupy), or a clear error.

    CuPy is imported here and only here, when asked for by name; asking for it without a
    usable CUDA device is an error, never a quiet fall back to the CPU.
    """
    if name == "numpy":
        import array_api_compat.numpy as xp

        return xp
    if name == "strict":
        try:
            import array_api_strict as xp
        except ImportError as exc:
            raise InvalidArgument("backend 'strict' needs array-api-strict: pip install array-api-strict") from exc
        return xp
    if name == "cupy":
        try:
            import cupy

            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # ImportError, or CUDA's own errors where there is no driver
            msg = (
                f"backend 'cupy' is unusable here ({exc!r}): it needs CuPy and an NVIDIA GPU with a working"
                " CUDA driver. On such a machine install CuPy's prebuilt wheel for the CUDA version that"
                " nvidia-smi prints ('CUDA Version'): pip install 'gradverify[gpu-cuda12]' for CUDA 12.x,"
                " pip install 'gradverify[gpu-cuda13]' for CUDA 13.x"
            )
            raise InvalidArgument(msg) from exc
        if count < 1:
            raise InvalidArgument("backend 'cupy' was asked for but no CUDA device is visible")
        import array_api_compat.cupy as xp

        return xp
    raise InvalidArgument(f"backend {name!r} is unknown; choose from {', '.join(BACKENDS)}")


# -- validation of the caller's arrays (called by gradverify._check) ---------------------------


def validate_input(i, x):
    """``x``, input ``i`` of a check, or :class:`InvalidArgument` naming it and the fix.

    Rejected, each with its own message:

    * not an array (no ``shape`` and ``dtype``);
    * ``np.matrix``: its ``*`` is the matrix product and its slices stay 2-D, so gradverify's
      elementwise arithmetic (and usually ``fn``) would compute something else. Not
      converted: ``fn`` may rely on matrix semantics, and checking it on an ndarray would
      check a different function. Fix: ``np.asarray(x)``;
    * a masked array (``np.ma``), masked elements or not: ``np.ma`` arithmetic masks what
      leaves the domain (``np.ma.log`` of a negative number) instead of returning NaN, and
      finite differences of a masked element are meaningless, so a mask would be silently
      ignored or silently hide a failure. Not converted even when nothing is masked, since
      ``fn`` would then be checked on plain arrays it never sees in use. Fix: pass
      ``np.ma.getdata(x)`` (or ``x.filled(value)``) and apply the mask inside ``fn``
      (close over it);
    * an ml_dtypes floating type other than bfloat16 (float8, float6, float4): no tolerance
      and no eps model for them yet. Fix: cast to bfloat16, float16 or float32;
    * an empty floating input: a gradient check of zero elements cannot fail, so it would
      pass vacuously. Fix: pass at least one element, or close over the empty array with
      ``functools.partial``. An empty integer input (an empty index list) is kept: it is
      never differentiated.
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        msg = (
            f"input {i} is a {type(x).__name__}, not an array; pass arrays (e.g. "
            "np.asarray(value)) or close over non-array arguments with functools.partial"
        )
        raise InvalidArgument(msg)
    if isinstance(x, np.matrix):
        msg = (
            f"input {i} is a numpy.matrix, whose * is the matrix product and whose slices stay 2-D;"
            f" pass np.asarray(x) (a plain ndarray) and write fn and vjp for ndarrays (@ for the matrix product)"
        )
        raise InvalidArgument(msg)
    if isinstance(x, np.ma.MaskedArray):
        masked = int(np.ma.count_masked(x))
        what = f"with {masked} masked element(s)" if masked else "(nothing masked)"
        msg = (
            f"input {i} is a numpy masked array {what}; gradverify does not differentiate through"
            " masks (np.ma hides values that leave the domain instead of returning NaN). Pass"
            f" np.ma.getdata(x) or x.filled(value) and apply the mask inside fn (close over it)"
        )
        raise InvalidArgument(msg)
    ext = extension_float(x.dtype)
    if ext is not None and ext not in EXTENSION_FLOATS:
        msg = (
            f"input {i} has dtype {ext}, which gradverify has no tolerance for; among ml_dtypes'"
            f" types it checks {', '.join(EXTENSION_FLOATS)}: cast to bfloat16, float16 or float32"
        )
        raise InvalidArgument(msg)
    if _size(x) == 0 and _floating_or_unknown(x.dtype):
        msg = (
            f"input {i} is empty (shape {tuple(x.shape)}); a gradient check of zero elements cannot fail."
            " Pass at least one element, or close over the empty array with functools.partial"
        )
        raise InvalidArgument(msg)
    return x


def validate_output(out, what="fn"):
    """``out``, the value of ``fn`` at the inputs, or :class:`InvalidArgument`.

    Rejects an ``np.matrix`` or masked-array output (see :func:`validate_input`; a masked
    output drops its masked elements from ``phi`` silently) and an empty one, for which
    ``phi = sum(v * fn(x))`` is identically zero: the check could not tell a right
    backward from one returning zeros. Call it after checking that ``out`` is an array.
    """
    if isinstance(out, np.matrix):
        raise InvalidArgument(f"{what} returned a numpy.matrix; return a plain ndarray (np.asarray(out)), whose * is elementwise")
    if isinstance(out, np.ma.MaskedArray):
        msg = (
            f"{what} returned a numpy masked array; a masked output element drops out of the check"
            " silently. Return np.ma.getdata(out) with the masked elements set explicitly (e.g. to 0 with out.filled(0))"
        )
        raise InvalidArgument(msg)
    if _size(out) == 0:
        msg = (
            f"{what} returned an empty array (shape {tuple(out.shape)}); the check of sum(v * {what}(x)),"
            " identically zero, cannot fail. Check inputs for which the output has at least one element"
        )
        raise InvalidArgument(msg)
    return out


def validate_float64_output(out64, out):
    """``out64``, ``fn`` at the float64 copies of the inputs, or :class:`InvalidArgument`.

    gradverify differentiates in float64 whatever the dtype under test, so ``fn``'s output
    shape must not depend on the dtype; ``out`` is ``fn``'s output at the inputs as given.
    """
    if not hasattr(out64, "shape") or not hasattr(out64, "dtype"):
        msg = f"fn returned a {type(out64).__name__} for the float64 copies of the inputs, but an array for the inputs as given; it must return an array in float64 as well"
        raise InvalidArgument(msg)
    if tuple(out64.shape) != tuple(out.shape):
        msg = (
            f"fn returned shape {tuple(out64.shape)} for the float64 copies of the inputs but {tuple(out.shape)}"
            f" for the inputs as given ({dtype_name(out.dtype)} output); gradverify differentiates in float64,"
            " so the output's shape must not depend on the dtype"
        )
        raise InvalidArgument(msg)
    return out64


def validate_cotangent(v, out_shape):
    """``v``, the caller's cotangent, or :class:`InvalidArgument` naming ``cotangent``.

    Besides the shape (``out_shape``, fn's output shape), it rejects an all-zero cotangent,
    which makes ``phi = sum(v * fn(x))`` identically zero so that any backward returning
    zeros passes, and a non-finite one, whose NaN would be blamed on the backward.
    (Its array library and real floating dtype are checked by the caller.)
    """
    if tuple(v.shape) != tuple(out_shape):
        raise InvalidArgument(f"cotangent has shape {tuple(v.shape)} but fn's output has shape {tuple(out_shape)}; they must match")
    host = to_numpy(v)
    if not np.all(np.isfinite(host)):
        bad = tuple(int(j) for j in np.argwhere(~np.isfinite(host))[0])
        msg = f"cotangent holds NaN or Inf (at index {bad}); pass a finite cotangent, or cotangent=None for a seeded random one"
        raise InvalidArgument(msg)
    if host.size and not np.any(host):
        msg = (
            "cotangent is all zeros, so sum(cotangent * fn(x)) is identically zero and any backward"
            " returning zeros would pass; pass a nonzero cotangent, or cotangent=None for a seeded random one"
        )
        raise InvalidArgument(msg)
    return v


def _size(x):
    size = 1
    for d in x.shape:
        if d is None:  # a lazy array of unknown shape: not empty as far as we can tell
            return 1
        size *= int(d)
    return size


def _floating_or_unknown(dtype):
    """True unless ``dtype`` is known not to be floating (integers and booleans may be empty)."""
    if extension_float(dtype) is not None:
        return True
    try:
        kind = np.dtype(dtype).kind
    except TypeError:
        try:
            return not ("int" in dtype_name(dtype) or "bool" in dtype_name(dtype))
        except Exception:
            return True
    return kind not in "biuV"
