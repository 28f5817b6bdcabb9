"""One frozen model of a check's options: validated once, read everywhere, replayed exactly.

Every option that can change a verdict is a field here, so that the ``reproduce`` line a
failing check prints (:meth:`CheckOptions.reproduce_args`) carries all of them.
"""

import dataclasses
from dataclasses import dataclass

import numpy as np

from gradverify._errors import InvalidArgument

MODES = ("auto", "full", "directional")
TRUTHS = ("auto", "elementwise", "directional", "off")
DEFAULT_DPS = 40
# A check that has run this long stops with CheckBudgetExceeded (seconds; None: no bound).
DEFAULT_TIME_BUDGET = 600.0


@dataclass(frozen=True)
class CheckOptions:
    """The options of :func:`gradverify.check_vjp` (see its docstring for each one)."""

    wrt: tuple | None = None
    mode: str = "auto"
    batched: bool = False
    directions: int = 4
    truth: str = "auto"
    dps: int = DEFAULT_DPS
    rtol: float | None = None
    richardson: bool = False
    seed: int = 0
    max_batch_bytes: int = 2**28
    time_budget: float | None = DEFAULT_TIME_BUDGET
    name: str | None = None

    def __post_init__(self):
        truth = self.truth
        if truth is False or truth is None:
            object.__setattr__(self, "truth", "off")
        elif truth is True:
            object.__setattr__(self, "truth", "auto")
        _require_choice(self.mode, "mode", MODES)
        _require_choice(self.truth, "truth", TRUTHS)
        _require_int(self.directions, "directions", 1)
        _require_int(self.dps, "dps", 30)
        _require_int(self.seed, "seed", 0)
        _require_int(self.max_batch_bytes, "max_batch_bytes", 1)
        for name in ("batched", "richardson"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidArgument(f"{name}={getattr(self, name)!r} must be True or False")
        if self.rtol is not None and not (isinstance(self.rtol, (int, float)) and not isinstance(self.rtol, bool) and 0 < self.rtol < 1):
            raise InvalidArgument(f"rtol={self.rtol!r} must be a number in (0, 1), e.g. rtol=1e-6")
        budget = self.time_budget
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0):
            raise InvalidArgument(f"time_budget={budget!r} must be a positive number of seconds, or None for no bound")
        if self.wrt is not None:
            wrt = (self.wrt,) if isinstance(self.wrt, (int, np.integer)) else self.wrt
            try:
                chosen = tuple(sorted({_index(i) for i in wrt}))
            except TypeError:
                raise InvalidArgument(f"wrt={self.wrt!r} must be a sequence of input positions, e.g. wrt=(0, 1)") from None
            if not chosen:
                raise InvalidArgument("wrt is empty; name at least one input to differentiate")
            object.__setattr__(self, "wrt", chosen)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def reproduce_args(self):
        """The options that differ from the defaults, as ``key=value`` source text.

        ``mode`` and ``truth`` are always given (``auto`` resolves by size, and the reader
        should see which one ran), as are ``seed`` and ``dps``.
        """
        always = {"mode", "truth", "seed", "dps"}
        skip = {"name", "time_budget", "max_batch_bytes"}  # change cost, never the verdict
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in skip or (f.name not in always and value == f.default):
                continue
            parts.append(f"{f.name}={value!r}")
        return ", ".join(parts)


def _index(i):
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
        raise TypeError(i)
    return int(i)


def _require_choice(value, name, choices):
    if value not in choices:
        raise InvalidArgument(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")


def _require_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidArgument(f"{name}={value!r} must be an integer >= {minimum}")
