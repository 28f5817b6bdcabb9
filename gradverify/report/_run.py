"""The run record: one JSON document, with provenance, that every report is rendered from.

Schema ``gradverify-run/1``::

    {"schema": "gradverify-run/1",
     "provenance": {...},            # see provenance()
     "passed": bool,
     "ops": [OpOutcome.to_dict()],   # from `gradverify verify`
     "checks": [{"test": str, "result": VerificationResult.to_dict(), "reproduce": str}],
                                     # from the pytest plugin
     "figures": {...}}               # see gradverify.report._figures; may be empty

Either list may be empty. Floats that JSON cannot hold (NaN, infinities) are written as the
strings ``"nan"``, ``"inf"``, ``"-inf"``, as :meth:`VerificationResult.to_dict` does.
"""

import datetime
import json
import platform
import subprocess
import sys
from pathlib import Path

import hypothesis
import mpmath
import numpy as np

import gradverify
from gradverify._backend import backend_name
from gradverify._errors import InvalidArgument
from gradverify._result import _jsonable

SCHEMA = "gradverify-run/1"
KEYS = ("schema", "provenance", "passed", "ops", "checks", "figures")


def new_run(provenance, *, ops=(), checks=(), figures=None):
    """A run record; it passed when every op and every check did.

    Parameters
    ----------
    provenance : dict
        From :func:`provenance`.
    ops : list of dict, optional
        ``OpOutcome.to_dict()`` of each verified catalog op.
    checks : list of dict, optional
        ``{"test": nodeid, "result": VerificationResult.to_dict(), "reproduce": str}``.
    figures : dict, optional

    Examples
    --------
    >>> run = new_run({"backend": "numpy"})
    >>> run["schema"], run["passed"], run["ops"], run["checks"]
    ('gradverify-run/1', True, [], [])
    """
    ops, checks = list(ops), list(checks)
    passed = all(o["passed"] for o in ops) and all(c["result"]["passed"] for c in checks)
    return {"schema": SCHEMA, "provenance": provenance, "passed": passed, "ops": ops, "checks": checks, "figures": figures or {}}


def provenance(*, backend, device, seed, seconds, started, source=None, **extra):
    """Where a run came from, enough to trust it and to run it again.

    Parameters
    ----------
    backend : str
        ``numpy``, ``strict`` or ``cupy``.
    device : str
        From :func:`describe_device`.
    seed : int or None
        The Hypothesis seed.
    seconds : float
        The run's duration.
    started : datetime.datetime
        When it started (timezone-aware).
    source : path-like, optional
        A directory whose git commit is recorded (``git rev-parse HEAD``); the commit is
        None outside a checkout or without git. Default: gradverify's own source.
    **extra
        Further JSON-safe entries (the profile, the op pattern, ...).
    """
    versions = {"gradverify": gradverify.__version__, "numpy": np.__version__, "mpmath": mpmath.__version__, "hypothesis": hypothesis.__version__}
    # Only what the run imported: asking for CuPy's version must not import it.
    for name in ("cupy", "array_api_strict"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "unknown")
    return {
        "gradverify": gradverify.__version__,
        "git_commit": git_commit(source if source is not None else Path(gradverify.__file__).parent),
        "backend": backend,
        "device": device,
        "seed": seed,
        "date": started.astimezone(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(float(seconds), 3),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "versions": versions,
        **extra,
    }


def git_commit(directory):
    """``git rev-parse HEAD`` in ``directory``, or None (not a checkout, no git, no answer)."""
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = proc.stdout.strip()
    return commit if proc.returncode == 0 and commit else None


def describe_device(xp):
    """The device a backend computes on: ``cpu``, or ``cuda:0 (NVIDIA H100 ...)`` for CuPy."""
    if backend_name(xp) == "cupy":
        cupy = sys.modules["cupy"]  # imported by load_backend; never imported here
        device = cupy.cuda.Device()
        name = cupy.cuda.runtime.getDeviceProperties(device.id)["name"]
        return f"cuda:{device.id} ({name.decode() if isinstance(name, bytes) else name})"
    return "cpu"


def to_json(run):
    """The run as JSON text (NaN and infinities as strings; NumPy scalars as numbers)."""
    return json.dumps(_jsonable(run), indent=1, allow_nan=False, default=_numpy_scalar)


def _numpy_scalar(obj):
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    raise TypeError(f"{type(obj).__name__} is not JSON-serializable")


def write_json(run, path):
    """Write the run to ``path`` (parent directories are created); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_json(run) + "\n", encoding="utf-8")
    return path


def load_run(path):
    """Read a run written by :func:`write_json` (by the CLI or the pytest plugin).

    Raises
    ------
    InvalidArgument
        When the file is missing, is not JSON, or is not a ``gradverify-run/1`` record.
    """
    try:
        run = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidArgument(f"cannot read the run {str(path)!r}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{str(path)!r} is not JSON ({exc}); pass a run.json written by gradverify") from exc
    check_run(run, source=str(path))
    return run


def check_run(run, *, source="the run"):
    """Raise :class:`InvalidArgument` unless ``run`` has the ``gradverify-run/1`` shape."""
    if not isinstance(run, dict) or run.get("schema") != SCHEMA:
        found = run.get("schema") if isinstance(run, dict) else type(run).__name__
        raise InvalidArgument(f"{source} is not a {SCHEMA} record (schema {found!r}); pass a run.json written by gradverify")
    missing = [k for k in KEYS if k not in run]
    if missing:
        raise InvalidArgument(f"{source} lacks {', '.join(missing)}; a {SCHEMA} record has {', '.join(KEYS)}")
    for key, kind in (("ops", list), ("checks", list), ("figures", dict), ("provenance", dict)):
        if not isinstance(run[key], kind):
            raise InvalidArgument(f"{source}: {key!r} must be a {kind.__name__}, not {type(run[key]).__name__}")
