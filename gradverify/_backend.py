"""One code path for NumPy, CuPy, array-api-strict and high-precision (mpmath) arrays.

The namespace is always chosen from the arrays themselves; nothing here imports CuPy
(array-api-compat only looks at ``sys.modules``).
"""

import numpy as np
import array_api_compat

from gradverify import _highprec
from gradverify._errors import InvalidArgument


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
    """``float32`` for NumPy's, CuPy's and array-api-strict's float32 alike."""
    name = getattr(dtype, "name", None)
    if isinstance(name, str):
        return name
    return str(dtype).rsplit(".", 1)[-1]


def is_real_floating(xp, dtype):
    return xp.isdtype(dtype, "real floating")


def float64_of(x, xp):
    """``x`` cast to float64 in its own namespace and on its own device."""
    if x.dtype == xp.float64:
        return x
    return xp.astype(x, xp.float64)


BACKENDS = ("numpy", "strict", "cupy")


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
            raise InvalidArgument(f"backend 'cupy' is unusable here ({exc!r}); install cupy (pip install 'gradverify[gpu]') on a machine with a CUDA GPU") from exc
        if count < 1:
            raise InvalidArgument("backend 'cupy' was asked for but no CUDA device is visible")
        import array_api_compat.cupy as xp

        return xp
    raise InvalidArgument(f"backend {name!r} is unknown; choose from {', '.join(BACKENDS)}")
