"""One frozen model of a check's options: validated once, read everywhere, replayed exactly.

Every option that can change a verdict is a field of :class:`CheckOptions`, so that the
``reproduce`` line a failing check prints (:meth:`CheckOptions.reproduce_args`) carries all
of them. This module is also the one home of the backend names, the option names and their
defaults, and of how a setting written as text (an ini file, a command line, an environment
variable) becomes a value: :func:`gradverify.check_vjp`, the pytest plugin (its settings and
its marker) and the command line all read them from here.

It imports neither NumPy nor anything heavy, so that the pytest plugin can read it at start
up in a project that never runs a check.
"""

import dataclasses
import math
import numbers
from dataclasses import dataclass

from gradverify._errors import InvalidArgument

# The array libraries a run can use, by the short name every interface takes.
BACKENDS = ("numpy", "strict", "cupy")
DEFAULT_BACKEND = "numpy"
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
    max_batch_bytes: int = 2**23
    time_budget: float | None = DEFAULT_TIME_BUDGET
    name: str | None = None
    explore: int = 0
    domains: tuple | None = None
    allow_nonfinite: bool = False
    reference: object = None  # ref_vjp: the error-ratio gate (gradverify._gate)
    reference_factor: float = 2.0
    repeats: int = 2
    nondeterministic: bool = False
    mutation_test: bool = False

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
        _require_int(self.explore, "explore", 0)
        if self.domains is not None:
            from gradverify._explore import normalize_domains  # imports NumPy: only when domains are given

            object.__setattr__(self, "domains", normalize_domains(self.domains))
        if isinstance(self.repeats, bool) or not isinstance(self.repeats, numbers.Integral) or self.repeats < 2:
            raise InvalidArgument(f"repeats={self.repeats!r} must be an integer >= 2: fn and vjp run that many times and must agree (default 2)")
        for name in ("batched", "richardson", "allow_nonfinite", "nondeterministic", "mutation_test"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidArgument(f"{name}={getattr(self, name)!r} must be True or False")
        if self.reference is not None and not callable(self.reference):
            msg = f"reference={self.reference!r} must be callable: the plain, trusted backward ref_vjp(cotangent, *inputs) -> tuple, like vjp"
            raise InvalidArgument(msg)
        factor = self.reference_factor
        if not (_is_real(factor) and 1 <= factor < math.inf):
            raise InvalidArgument(f"reference_factor={factor!r} must be a number >= 1 (the kernel may err k times the reference; default 2)")
        if self.rtol is not None and not (_is_real(self.rtol) and 0 < self.rtol < 1):
            raise InvalidArgument(f"rtol={self.rtol!r} must be a number in (0, 1), e.g. rtol=1e-6")
        budget = self.time_budget
        if budget is not None and not (_is_real(budget) and 0 < budget < math.inf):
            raise InvalidArgument(f"time_budget={budget!r} must be a positive number of seconds, or None for no bound")
        if self.name is not None and not isinstance(self.name, str):
            raise InvalidArgument(f"name={self.name!r} must be a string (the function's name in the report) or None")
        if self.wrt is not None:
            wrt = (self.wrt,) if isinstance(self.wrt, numbers.Integral) else self.wrt
            try:
                chosen = tuple(sorted({_index(i) for i in wrt}))
            except TypeError:
                raise InvalidArgument(f"wrt={self.wrt!r} must be a sequence of input positions, e.g. wrt=(0, 1)") from None
            if not chosen:
                raise InvalidArgument("wrt is empty; name at least one input to differentiate")
            object.__setattr__(self, "wrt", chosen)

    def replace(self, **changes):
        """A copy with ``changes``; an unknown name is an :class:`InvalidArgument` naming the choices."""
        unknown = sorted(set(changes) - set(OPTION_NAMES))
        if unknown:
            raise InvalidArgument(f"unknown check option(s) {', '.join(unknown)}; choose from {', '.join(OPTION_NAMES)}")
        return dataclasses.replace(self, **changes)

    def as_kwargs(self):
        """The options as keyword arguments of :func:`gradverify.check_vjp`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def reproduce_args(self, reference_name="reference"):
        """The options that differ from the defaults, as ``key=value`` source text.

        ``mode`` and ``truth`` are always given (``auto`` resolves by size, and the reader
        should see which one ran), as are ``seed`` and ``dps``. A ``reference`` callable is
        written as ``reference_name`` (its importable name, or a placeholder the caller
        supplies).
        """
        always = {"mode", "truth", "seed", "dps"}
        skip = {"name", "time_budget", "max_batch_bytes"}  # change cost, never the verdict
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in skip or (f.name not in always and value == f.default):
                continue
            if f.name == "domains":
                value = dict(value)  # as the caller most likely wrote it
            if f.name == "reference":
                parts.append(f"reference={reference_name}")
                continue
            parts.append(f"{f.name}={value!r}")
        return ", ".join(parts)


OPTION_NAMES = tuple(f.name for f in dataclasses.fields(CheckOptions))


# -- settings written as text ------------------------------------------------------------------


@dataclass(frozen=True)
class TextSetting:
    """A check option a whole run may set as text (pytest's ini and command line, the CLI)."""

    name: str
    metavar: str
    help: str
    parse: object  # text -> value, raising ValueError with what is wrong


def _parse_int(minimum, message):
    """A parser of integers ``>= minimum``; ``message`` says what is wrong otherwise."""

    def parse(text):
        value = int(text)
        if value < minimum:
            raise ValueError(message)
        return value

    return parse


def _parse_choice(choices):
    def parse(text):
        if text not in choices:
            raise ValueError(f"choose one of {', '.join(choices)}")
        return text

    return parse


def _parse_rtol(text):
    value = float(text)
    if not 0 < value < 1:
        raise ValueError("rtol must be a number in (0, 1), e.g. 1e-6")
    return value


_FLAGS = {"on": True, "true": True, "yes": True, "1": True, "off": False, "false": False, "no": False, "0": False}


def _parse_flag(text):
    value = _FLAGS.get(text.lower())
    if value is None:
        raise ValueError("write on or off (true/false, yes/no and 1/0 are read too)")
    return value


def _parse_time_budget(text):
    if text.strip().lower() == "none":
        return None
    value = float(text)
    if not 0 < value < math.inf:
        raise ValueError("the time budget must be a positive number of seconds (e.g. 60), or none for no bound")
    return value


TEXT_SETTINGS = {
    s.name: s
    for s in (
        TextSetting("dps", "N", f"significant digits of the high-precision truth (an integer >= 30; default {DEFAULT_DPS})", _parse_int(30, "the digits of the truth must be an integer >= 30")),
        TextSetting("mode", "|".join(MODES), "finite differences for every element (full), along random directions (directional), or auto (default)", _parse_choice(MODES)),
        TextSetting("rtol", "R", "relative tolerance of every gradient check, a number in (0, 1) (default: by dtype)", _parse_rtol),
        TextSetting("truth", "|".join(TRUTHS), "the high-precision truth: auto (default), elementwise, directional or off", _parse_choice(TRUTHS)),
        TextSetting(
            "explore",
            "N",
            "after each check's example, search up to N variants of it for inputs that show a bug (default 0: the example only)",
            _parse_int(0, "the number of variants to explore must be an integer >= 0 (0: the example only)"),
        ),
        TextSetting(
            "repeats",
            "N",
            "how many times fn and vjp run on the example; their results must agree bitwise (an integer >= 2; default 2)",
            _parse_int(2, "repeats must be an integer >= 2: fn and vjp run that many times and must agree"),
        ),
        TextSetting(
            "mutation_test",
            "on|off",
            "judge two mutants of each backward's output (its largest element scaled, one output's term dropped) and warn where the check would pass one (default off)",
            _parse_flag,
        ),
        TextSetting(
            "time_budget",
            "SECONDS",
            f"seconds each gradient check may run before it stops with CheckBudgetExceeded: a positive number, or none for no bound (default {DEFAULT_TIME_BUDGET:g})",
            _parse_time_budget,
        ),
    )
}


def parse_setting(name, text, *, source):
    """The value of the text setting ``name``; ``source`` (where the text came from) names it in the error."""
    try:
        return TEXT_SETTINGS[name].parse(text.strip())
    except ValueError as exc:
        detail = str(exc) if not str(exc).startswith(("could not convert", "invalid literal")) else TEXT_SETTINGS[name].help
        raise InvalidArgument(f"{source}: {text.strip()!r} is not valid: {detail}") from None


def parse_backends(text, *, source):
    """The backend names of a comma-separated list, in order, without repeats."""
    names = [b.strip() for b in text.split(",") if b.strip()]
    unknown = [b for b in names if b not in BACKENDS]
    if unknown or not names:
        raise InvalidArgument(f"{source}: {', '.join(map(repr, unknown)) or 'no backend'} - choose from {', '.join(BACKENDS)}")
    return list(dict.fromkeys(names))


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _index(i):
    if isinstance(i, bool) or not isinstance(i, numbers.Integral):
        raise TypeError(i)
    return int(i)


def _require_choice(value, name, choices):
    if value not in choices:
        raise InvalidArgument(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")


def _require_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InvalidArgument(f"{name}={value!r} must be an integer >= {minimum}")
