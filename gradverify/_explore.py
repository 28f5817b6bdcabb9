"""``explore=N``: after the example, a Hypothesis search over variants of it.

Many gradient bugs are invisible on a typical example (a ``squeeze`` that breaks at batch
size 1, a transpose that is right only when two sizes coincide, a softmax without
max-subtraction that overflows above 709, an ``x / |x|`` at an exact zero, ``grad[idx] +=``
with duplicate indices). So a check with ``explore=N`` goes on, once the example passes, to
up to N variants of it, each the example changed by one to three *edits*:

* shape edits: the example's sizes are *symbols*. Axes of equal size start as one symbol and
  split into the groups the forward accepts changing on their own (rows and columns of a
  square input become two symbols, so that a variant can make them differ); size-1 axes
  change only all together (one alone would often broadcast); a group the forward rejects
  at a fresh size (a weight closed over by ``fn``) stays fixed, and the report says so. A
  symbol goes to 1, to another symbol's size, to 2**k +- 1, or two symbols swap;
* value edits, in each input's *domain* (inferred from the example, or declared with
  ``domains=``): an exact zero, a saturating -50, exp's overflow at 710, a whole input made
  negative or positive, a tie with the next element, a row of zeros, tiny and huge
  magnitudes, probabilities at and next to 0 and 1, one-hot rows, duplicated and extreme
  indices, and, past an *inferred* positive domain, a sign change.

The first three quarters of the N variants are *canonical*: single edits taken in turn from
each symbol and each input, most telling first, so that the bugs above never depend on the
luck of a draw. The rest are drawn by Hypothesis (one to three edits), so that a failure
shrinks to a minimal variant, deterministically for a seed; inside a running ``@given`` test
they are drawn from that test's own data instead (Hypothesis does not nest ``@given``), so
that the outer test shrinks and replays them.

Each variant is screened cheaply: the forward must be finite, the backward must run and
return finite gradients of the right shapes that agree with central differences along two
random directions (or, at a kink along one, lie between settled one-sided slopes). Only a
variant the screen flags is checked in full, with the caller's options and truth, and only
what that check confirms is a finding:

* ``gradient``: the backward is wrong there (or returns the wrong shape);
* ``raises``: the forward or the backward raises on the variant;
* ``nonfinite``: the forward is not finite. The message says whether its exact value (the
  same function at high precision) is finite and representable (an overflow or cancellation:
  a softmax without max-subtraction) or is itself infinite or undefined (a singularity of the
  function as written: an all-zero row normalised, a variance divided by N - 1 = 0). A
  singularity that is expected is declared with ``allow_nonfinite=True`` (or a domain that
  excludes it). Not findings, but counted: an overflow whose exact value is beyond the
  dtype's range (``exp(710)``: inf is its float64 value), and a forward that fails on a
  value outside a domain gradverify only inferred (a log of a negated positive input);
* ``inconclusive``: neither side could be resolved on the variant.
"""

import contextlib
import itertools
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from gradverify import _backend, _highprec
from gradverify._errors import CheckBudgetExceeded, GradVerifyError, HighPrecisionUnavailable, InvalidArgument, UserFunctionError

FINDING_KINDS = ("gradient", "raises", "nonfinite", "inconclusive")
DOMAINS = ("real", "positive", "nonnegative", "probability", "probability_rows", "logits")

NEAR = 1e-12  # how close to 0 or 1 a probability edit goes
# Each variant changes the example by 1..MAX_EDITS edits.
MAX_EDITS = 3
# Random directions of the cheap screen of each variant.
SCREEN_DIRECTIONS = 2
# Checks spent shrinking a finding before the smallest one found so far is reported.
MAX_SHRINK_CHECKS = 60


@dataclass
class Finding:
    """A variant of the example that shows a bug (or that gradverify could not judge)."""

    kind: str  # one of FINDING_KINDS
    side: str | None  # "forward", "backward" or None
    variant: str  # how the variant differs from the example
    message: str
    shapes: list  # the variant's input shapes
    reproduce: str = ""
    result: object = None  # the confirming check's VerificationResult, when there is one


@dataclass
class ExploreReport:
    """What ``explore=N`` tried and found."""

    requested: int
    tried: int = 0  # variants generated and checked
    shrink_checks: int = 0  # variants checked while shrinking a finding
    flagged: int = 0  # variants the cheap screen flagged, checked again in full
    outside_domain: int = 0  # skipped: the variant left a domain gradverify only inferred, and fn rejects it
    beyond_range: int = 0  # skipped: fn overflows where its exact value is beyond the dtype's range
    allowed_nonfinite: int = 0  # skipped under allow_nonfinite=True
    symbols: list = field(default_factory=list)  # "n0 = 8: input 0 axis 0, input 1 axis 0"
    fixed: list = field(default_factory=list)  # symbols the forward rejects changing, and why
    domains: list = field(default_factory=list)  # per input
    finding: Finding | None = None
    note: str = ""
    seconds: float = 0.0


# -- the example's structure -------------------------------------------------------------------


@dataclass(frozen=True)
class Domain:
    kind: str  # one of DOMAINS, "index" or "fixed"
    # index: the symbols whose smallest size bounds the values, or ("axis", (input, axis)) declared
    bound: tuple = ()
    top: int = 1  # index: the example's largest value + 1, the bound when no symbol gives one
    declared: bool = False

    def describe(self, symbols):
        if self.kind == "fixed":
            return "values kept (not a float or index array)"
        if self.kind != "index":
            return self.kind + (" (declared)" if self.declared else " (inferred)")
        if self.declared:  # ("axis", (input, axis))
            j, axis = self.bound[1]
            return f"index < input {j} axis {axis} (declared)"
        names = " and ".join(symbols[s].name for s in self.bound)
        return f"index < {names or self.top} (inferred)"


@dataclass(frozen=True)
class Symbol:
    name: str
    size: int
    where: tuple  # (input, axis) pairs

    def describe(self, labels):
        return f"{self.name} = {self.size}: " + ", ".join(f"{labels[i]} axis {a}" for i, a in self.where)


# Axes of one size are split into independent symbols only up to this many (2**(k-1) probes).
MAX_SPLIT_AXES = 6


class Signature:
    """The example's sizes as symbols, each input's domain, and which sizes stay fixed.

    Axes of equal size start as one symbol, then split into the groups the forward accepts
    changing on their own (``x`` of shape (4, 4) for a column mean: rows and columns are two
    symbols, so that a variant can make them differ). ``accepts({(input, axis): size})``
    calls the forward with those axes resized. Size-1 axes change only all together: one
    alone would often just broadcast. A group the forward rejects at a fresh size stays fixed.
    """

    def __init__(self, hosts, floating, labels, domains, accepts):
        self.hosts, self.labels = hosts, labels
        by_size = {}
        for i, h in enumerate(hosts):
            for a, n in enumerate(h.shape):
                by_size.setdefault(n, []).append((i, a))
        fresh = max(by_size, default=1) + 1  # a size no axis has, above every index's bound
        groups, self.fixed = [], []
        for n, where in sorted(by_size.items()):
            said = ", ".join(f"{labels[i]} axis {a}" for i, a in where)
            if n == 0:
                self.fixed.append(f"size 0 ({said}): empty axes stay empty")
                continue
            error = accepts({w: fresh for w in where})
            if error:
                self.fixed.append(f"size {n} ({said}): kept, fn raised {error} at size {fresh}")
            elif n == 1 or len(where) > MAX_SPLIT_AXES:
                groups.append((n, tuple(where)))
            else:
                groups.extend((n, g) for g in _split(where, lambda sub: not accepts({w: fresh for w in sub})))
        self.symbols = [Symbol(f"n{k}", n, where) for k, (n, where) in enumerate(groups)]
        self.axes = [[None] * h.ndim for h in hosts]  # per input and axis: its symbol, or None (fixed)
        for k, sym in enumerate(self.symbols):
            for i, a in sym.where:
                self.axes[i][a] = k
        self.domains = [self._domain(i, h, fl, domains.get(i)) for i, (h, fl) in enumerate(zip(hosts, floating))]

    def shapes(self, sizes):
        return [tuple(h.shape[a] if k is None else sizes[k] for a, k in enumerate(axes)) for h, axes in zip(self.hosts, self.axes)]

    def resized(self, sizes):
        """The example's inputs at the symbol ``sizes``, their values kept in each domain."""
        return [_resize(h, shape, d, _bound(d, self, sizes)) for h, shape, d in zip(self.hosts, self.shapes(sizes), self.domains)]

    def _domain(self, i, h, floating, declared):
        if declared is not None:
            return _declared_domain(declared, i, h, self.hosts)
        if h.dtype == bool:
            return Domain("fixed")
        if not floating:
            if not np.issubdtype(h.dtype, np.integer) or h.size == 0 or h.min() < 0:
                return Domain("fixed")
            top = int(h.max())
            # The true bound is one of the sizes above the largest value; the smallest of
            # them, at its current size, keeps every variant's indices valid.
            return Domain("index", tuple(k for k, s in enumerate(self.symbols) if s.size > top), top=top + 1)
        finite = h[np.isfinite(h)]
        if finite.size == 0:
            return Domain("real")
        if np.all(finite > 0):
            if h.ndim and h.shape[-1] > 1 and np.all(finite <= 1) and np.allclose(h.sum(axis=-1), 1.0, rtol=0, atol=1e-9 * h.shape[-1]):
                return Domain("probability_rows")
            return Domain("probability") if np.all(finite < 1) else Domain("positive")
        if np.all(finite >= 0):
            return Domain("nonnegative")
        return Domain("real")


def _split(where, accepts):
    """Partition axes of one size into the smallest groups ``accepts`` lets change on their own."""
    groups, rest = [], list(where)
    while len(rest) > 1:
        first, others = rest[0], rest[1:]
        group = next((g for r in range(len(others)) for c in itertools.combinations(others, r) if accepts(g := (first, *c))), None)
        if group is None:
            break
        groups.append(group)
        rest = [w for w in rest if w not in group]
    return groups + ([tuple(rest)] if rest else [])


def _declared_domain(spec, i, h, hosts):
    if isinstance(spec, str):
        if spec not in DOMAINS:
            raise InvalidArgument(f"domains[{i}]={spec!r} is not a domain; choose one of {', '.join(map(repr, DOMAINS))}, or ('index', (input, axis))")
        return Domain(spec, declared=True)
    try:
        kind, (j, axis) = spec
        ok = kind == "index" and 0 <= j < len(hosts) and -hosts[j].ndim <= axis < hosts[j].ndim
    except (TypeError, ValueError):
        ok = False
    if not ok or not np.issubdtype(h.dtype, np.integer):
        msg = f"domains[{i}]={spec!r} must be one of {', '.join(map(repr, DOMAINS))}, or ('index', (input, axis)) for an integer input whose values index that axis"
        raise InvalidArgument(msg)
    return Domain("index", ("axis", (j, axis % hosts[j].ndim)), top=int(h.max(initial=0)) + 1, declared=True)


def normalize_domains(domains):
    """``domains=`` as a tuple of ``(input, spec)`` pairs, from a dict, such pairs, or one spec (or None) per input.

    No spec is itself an ``(int, ...)`` pair, so the forms cannot be confused.
    """
    if domains is None:
        return None
    if isinstance(domains, dict):
        pairs = list(domains.items())
    elif isinstance(domains, (list, tuple)) and all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], int) for p in domains):
        pairs = list(domains)
    elif isinstance(domains, (list, tuple)):
        pairs = [(i, d) for i, d in enumerate(domains) if d is not None]
    else:
        raise InvalidArgument(f"domains={domains!r} must be a dict {{input position: domain}} or a sequence with one domain (or None) per input")
    for i, _ in pairs:
        if isinstance(i, bool) or not isinstance(i, int) or i < 0:
            raise InvalidArgument(f"domains has the key {i!r}; keys are input positions 0, 1, ...")
    return tuple(sorted(pairs))


# -- edits -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShapeEdit:
    kind: str  # "one", "equal", "odd", "swap"
    a: int
    b: int = 0  # the other symbol (equal, swap)
    k: int = 1  # odd: size 2**k + 1 or 2**k - 1 (sign in s)
    s: int = 1

    def sizes(self, sig, sizes):
        n = len(sig.symbols)
        a, b = self.a % n, self.b % n
        if self.kind == "one":
            sizes[a] = 1
        elif self.kind == "equal" and a != b:
            sizes[a] = sizes[b]
        elif self.kind == "swap" and a != b:
            sizes[a], sizes[b] = sizes[b], sizes[a]
        elif self.kind == "odd":
            sizes[a] = max(1, 2 ** (self.k + 1) + self.s)


@dataclass(frozen=True)
class ValueEdit:
    input: int
    kind: str  # "set", "tie", "negated", "negative", "positive", "zero_row", or an index or row edit
    value: float = 0.0  # "set": the value planted
    position: int = 0  # a flat position, taken modulo the input's size


# Each domain's value edits, most telling first (the canonical variants take them in this
# order): exact zeros, a saturating -50, exp's overflow at 710, sign changes, ties, a row of
# zeros, tiny and huge magnitudes. "negated" steps outside an *inferred* positive domain: a forward that
# rejects it marks the end of the domain, not a bug.
_REAL = (("set", 0.0), ("set", -50.0), ("set", 710.0), ("negative", 0.0), ("tie", 0.0), ("zero_row", 0.0), ("set", 1e-8), ("positive", 0.0), ("set", -710.0), ("set", 50.0), ("set", 1e-30), ("set", 100.0), ("set", 709.0))
_EDITS = {
    "real": _REAL,
    "logits": (("set", 710.0), ("set", -50.0), ("set", 0.0), ("tie", 0.0), ("set", 1000.0), ("set", -710.0), ("negative", 0.0), ("set", 50.0), ("set", 1e-8)),
    "positive": (("set", 1e-8), ("set", 1e3), ("negated", 0.0), ("tie", 0.0), ("set", 1e6), ("set", 1e-30), ("set", 50.0)),
    "nonnegative": (("set", 0.0), ("set", 1e-8), ("negated", 0.0), ("set", 1e3), ("tie", 0.0), ("set", 1e6), ("set", 50.0)),
    "probability": (("set", NEAR), ("set", 1.0 - NEAR), ("set", 0.0), ("set", 1.0), ("negated", 0.0), ("tie", 0.0), ("set", 0.5)),
    "probability_rows": (("one_hot", 0.0), ("near_one_hot", 0.0), ("uniform", 0.0)),
    "index": (("duplicate", 0.0), ("largest", 0.0), ("zero", 0.0), ("all_same", 0.0)),
}
_OUTSIDE_INFERRED = {"negated"}
_ROW_MASS = {"one_hot", "near_one_hot"}


def _edits_of(domain):
    table = _EDITS.get(domain.kind, ())
    if domain.declared:
        table = tuple(t for t in table if t[0] not in _OUTSIDE_INFERRED)
    return table


def leaves_inferred_domain(sig, edits):
    """True when a value edit steps outside a domain gradverify only inferred."""
    return any(isinstance(e, ValueEdit) and e.kind in _OUTSIDE_INFERRED and not sig.domains[e.input].declared for e in edits)


def strategy(sig):
    """Hypothesis' strategy of edit lists for ``sig`` (shrinking toward one edit, the most telling)."""
    from hypothesis import strategies as st

    choices = []
    if sig.symbols:
        n = len(sig.symbols)
        choices.append(
            st.builds(
                ShapeEdit,
                kind=st.sampled_from(("one", "equal", "odd", "swap")),
                a=st.integers(0, n - 1),
                b=st.integers(0, n - 1),
                k=st.integers(1, 4),
                s=st.sampled_from((1, -1)),
            )
        )
    for i, d in enumerate(sig.domains):
        table = _edits_of(d)
        if table and sig.hosts[i].size:
            choices.append(st.tuples(st.sampled_from(table), st.integers(0, 2**16)).map(lambda t, i=i: ValueEdit(i, t[0][0], t[0][1], t[1])))
    if not choices:
        return None
    return st.lists(st.one_of(choices), min_size=1, max_size=MAX_EDITS)


def canonical(sig):
    """Single-edit variants, taken in turn from each size and each input, most telling first.

    A search of N variants starts with these, run as they are (one edit is already minimal):
    the edits that show the bugs explore= exists for must not depend on the luck of a draw.
    """
    streams = []
    n = len(sig.symbols)
    if n:
        shapes = [ShapeEdit("one", a) for a in range(n)]
        shapes += [ShapeEdit("equal", a, b) for a in range(n) for b in range(n) if a != b]
        shapes += [ShapeEdit("odd", a, k=2, s=1) for a in range(n)]
        streams.append(shapes)
    for i, d in enumerate(sig.domains):
        if sig.hosts[i].size:
            # A row's mass on one column shows a bug only off that row's label: two columns.
            streams.append([ValueEdit(i, kind, value, p) for kind, value in _edits_of(d) for p in ((0, 1) if kind in _ROW_MASS else (0,))])
    out = []
    for k in range(max((len(s) for s in streams), default=0)):
        out.extend([s[k]] for s in streams if k < len(s))
    return out


def apply(sig, edits):
    """The variant's host arrays, and how it differs from the example, in words."""
    sizes = [s.size for s in sig.symbols]
    for e in edits:
        if isinstance(e, ShapeEdit):
            e.sizes(sig, sizes)
    hosts = sig.resized(sizes)
    words = [f"{s.name} = {n} (was {s.size})" for s, n in zip(sig.symbols, sizes) if n != s.size]
    for e in edits:
        if isinstance(e, ValueEdit):
            said = _apply_value(hosts, e, sig, sizes)
            if said:
                words.append(said)
    return hosts, "; ".join(dict.fromkeys(words))  # empty: no edit applied (the example itself)


def _resize(h, shape, domain, bound=None):
    """``h`` at ``shape``: cut, or repeated with each repeat's values moved (no accidental ties)."""
    out = h
    for a, n in enumerate(shape):
        old = out.shape[a]
        if n == old:
            continue
        take = np.arange(n)
        out = np.take(out, take % old, axis=a)
        if n > old and np.issubdtype(out.dtype, np.floating):
            along = [1] * out.ndim
            along[a] = n
            rep = (take // old).reshape(along).astype(np.float64)
            out = _shift(out, rep, domain.kind)
    if domain.kind == "probability_rows" and out.ndim and out is not h:
        out = out / out.sum(axis=-1, keepdims=True)
    if domain.kind == "index" and bound is not None:
        out = out % bound  # the bounding size may have shrunk
    return out.copy() if out is h else out.astype(h.dtype, copy=False)  # a float32 input stays float32


def _shift(x, rep, kind):
    if kind in ("real", "logits"):
        scale = float(np.sqrt(np.mean(x * x))) or 1.0
        return x * (1.0 + 0.1 * rep) + 0.05 * scale * rep
    if kind in ("positive", "nonnegative", "probability_rows"):
        return x * (1.0 + 0.1 * rep)
    if kind == "probability":
        return x ** (1.0 + 0.1 * rep)
    return x


def _bound(domain, sig, sizes):
    """The exclusive upper bound of an index input's values in the variant (at least 1)."""
    if domain.kind != "index":
        return None
    if domain.declared:
        j, axis = domain.bound[1]
        sid = sig.axes[j][axis]
        return max(sizes[sid] if sid is not None else sig.hosts[j].shape[axis], 1)
    if not domain.bound:
        return domain.top
    return min(sizes[s] for s in domain.bound)


def _apply_value(hosts, e, sig, sizes):
    x = hosts[e.input]
    if x.size == 0:
        return ""
    flat = x.reshape(-1)  # hosts are fresh copies, so this writes into the variant
    label = sig.labels[e.input]

    def at(p):
        return f"{label}[{', '.join(map(str, np.unravel_index(p, x.shape)))}]" if x.ndim else label

    p = e.position % flat.size
    q = (p + 1) % flat.size
    kind = e.kind
    if kind in ("negative", "positive"):
        flat[:] = np.abs(flat) * (-1 if kind == "negative" else 1)
        return f"{label} all {kind}"
    if kind == "negated":
        flat[p] = -flat[p] if flat[p] else -1.0
        return f"{at(p)} = {flat[p]:g} (sign changed)"
    if kind in ("tie", "duplicate"):
        if flat.size < 2:
            return ""
        flat[q] = flat[p]
        return f"{at(q)} = {at(p)} ({'a tie' if kind == 'tie' else 'a duplicate index'})"
    if kind in ("one_hot", "near_one_hot", "uniform"):
        rows = x.reshape(-1, x.shape[-1])
        r, c = (p // x.shape[-1]) % rows.shape[0], p % x.shape[-1]
        if kind == "uniform":
            rows[r] = 1.0 / x.shape[-1]
            return f"{label} row {r} uniform"
        off = 0.0 if kind == "one_hot" else NEAR
        rows[r] = off
        rows[r, c] = 1.0 - off * (x.shape[-1] - 1)
        return f"{label} row {r} {'one-hot' if kind == 'one_hot' else 'nearly one-hot'} at {c}"
    if kind == "zero_row":
        rows = x.reshape(-1, x.shape[-1]) if x.ndim else flat.reshape(1, 1)
        r = (p // rows.shape[1]) % rows.shape[0]
        rows[r] = 0.0
        return f"{label} row {r} all zero" if x.ndim > 1 else f"{label} all zero"
    if kind == "all_same":
        flat[:] = flat[p]
        return f"{label} all {flat[p]} (every index the same)"
    if kind in ("zero", "largest"):
        value = 0 if kind == "zero" else _bound(sig.domains[e.input], sig, sizes) - 1
        flat[p] = value
        return f"{at(p)} = {value} (the {'smallest' if kind == 'zero' else 'largest'} index)"
    with np.errstate(over="ignore"):
        value = flat.dtype.type(e.value)
    if not np.isfinite(value) or (value == 0) != (e.value == 0):
        return ""  # not a value of this dtype (1e6 in float16): no such variant
    flat[p] = value
    return f"{at(p)} = {e.value:g}"


# -- the search ----------------------------------------------------------------------------------


class _Found(Exception):
    def __init__(self, finding):
        super().__init__(finding.variant)
        self.finding = finding


class Explorer:
    """Runs the variants of one check's example (see the module notes)."""

    def __init__(self, run, report, deadline):
        self.run = run  # the example's _CheckRun
        self.hosts = [np.array(_backend.to_numpy(x)) for x in run.inputs]
        self.report = report
        self.deadline = deadline
        self.xp, self.device = run.xp, run.device
        self.kind = None  # the first finding's kind; shrinking keeps to it
        self.best = None  # the smallest finding so far, and its edits
        self.seen = {}

    def accepts(self, changes):
        """None when ``fn`` runs with the axes ``{(input, axis): size}`` resized, else the error's name."""
        run = self.run
        probe = [Domain("real" if fl else "fixed") for fl in run.floating]
        shapes = [tuple(changes.get((i, a), n) for a, n in enumerate(h.shape)) for i, h in enumerate(self.hosts)]
        inputs = [_backend.from_numpy(_resize(h, shape, d), self.xp, self.device) for h, shape, d in zip(self.hosts, shapes, probe)]
        try:
            with _quiet():
                run.fn(*inputs)
        except GradVerifyError:
            raise
        except Exception as exc:
            return type(exc).__name__
        return None

    def out_of_time(self):
        return self.deadline is not None and time.perf_counter() > self.deadline

    def test(self, sig, edits):
        """One variant: raise _Found for a finding of the kind being shrunk."""
        key = tuple(edits)
        if key in self.seen:
            finding = self.seen[key]
        else:
            if self.best is not None:
                if self.report.shrink_checks >= MAX_SHRINK_CHECKS or self.out_of_time():
                    return  # stop shrinking: only the smallest finding so far still fails
            elif self.out_of_time():
                return
            finding = self.seen[key] = self.variant(sig, edits)
        if finding is None or (self.kind is not None and finding.kind != self.kind):
            if self.best is not None and self.best[1] == key:
                raise _Found(self.best[0])
            return
        self.kind = finding.kind
        self.best = (finding, key)
        raise _Found(finding)

    def variant(self, sig, edits):
        hosts, words = apply(sig, edits)
        if not words:
            return None  # every edit fell away (a value the dtype cannot hold): the example itself
        if self.best is None:
            self.report.tried += 1
        else:
            self.report.shrink_checks += 1
        with _quiet():
            return self._variant(hosts, words, sig, edits)

    def _variant(self, hosts, words, sig, edits):
        inputs = [_backend.from_numpy(h, self.xp, self.device) for h in hosts]
        shapes = [tuple(h.shape) for h in hosts]

        def finding(kind, side, message, result=None, reproduce=""):
            return Finding(kind, side, words, message, shapes, reproduce or (result.reproduce if result else ""), result)

        try:
            y = self.run.fn(*inputs)
        except GradVerifyError:
            raise
        except Exception as exc:
            if leaves_inferred_domain(sig, edits):
                self.report.outside_domain += 1  # the forward marks where its domain ends
                return None
            return finding("raises", "forward", f"fn raised {type(exc).__name__}: {exc}", reproduce=self._reproduce(inputs))
        if y is None:
            return finding("raises", "forward", "fn returned None", reproduce=self._reproduce(inputs))
        y_host = np.asarray(_backend.to_numpy(y))
        if np.issubdtype(y_host.dtype, np.inexact) and not np.all(np.isfinite(y_host)):
            if self.run.options.allow_nonfinite:
                self.report.allowed_nonfinite += 1
                return None
            return self._nonfinite(sig, edits, hosts, y_host, finding)
        cotangent = self._cotangent()
        try:
            if self._screen(inputs, y_host, cotangent):
                return None
        except UserFunctionError as exc:
            return finding("raises", "backward", str(exc), reproduce=self._reproduce(inputs, cotangent))
        self.report.flagged += 1
        try:
            full = self._check(inputs, cotangent)
        except UserFunctionError as exc:
            side = "forward" if str(exc).startswith("fn ") else "backward"
            return finding("raises", side, str(exc).split(" (its traceback", 1)[0], reproduce=self._reproduce(inputs, cotangent))
        except CheckBudgetExceeded:
            return None
        if full.passed:
            return None
        return finding("gradient" if full.blame == "analytic" else "inconclusive", "backward" if full.blame == "analytic" else None, _first_line(full), full)

    def _screen(self, inputs, y_host, cotangent):
        """True when the variant looks clean: the backward's shapes are right and it agrees with
        central differences along SCREEN_DIRECTIONS random directions, at two steps.

        About 4 evaluations of fn per direction and one of vjp, where a full check would cost
        2-3 per element: what it misses is only where to look, since a flagged variant gets
        the full check and only that check's verdict counts.
        """
        run = self.run
        rng = np.random.default_rng([run.options.seed, self.report.tried + self.report.shrink_checks])
        v = rng.standard_normal(y_host.shape) if cotangent is None else np.broadcast_to(np.asarray(_backend.to_numpy(cotangent), dtype=np.float64), y_host.shape)
        try:
            grads = run.vjp(_backend.from_numpy(v.astype(y_host.dtype), self.xp, self.device), *inputs)
        except GradVerifyError:
            raise
        except Exception as exc:
            raise UserFunctionError(f"vjp raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(grads, (tuple, list)) or len(grads) != len(inputs):
            return False
        x64 = {i: np.asarray(_backend.to_numpy(inputs[i]), dtype=np.float64) for i in run.wrt}
        g64 = {}
        for i in run.wrt:
            g = grads[i]
            if g is None or tuple(getattr(g, "shape", ())) != x64[i].shape:
                return False
            g64[i] = np.asarray(_backend.to_numpy(g), dtype=np.float64)
            if not np.all(np.isfinite(g64[i])):
                return False
        rtol = max(run.rtols.values())
        for _ in range(SCREEN_DIRECTIONS):
            d = {i: rng.standard_normal(x.shape) * np.maximum(np.abs(x), 1e-3 + np.sqrt(np.mean(x * x))) for i, x in x64.items()}
            analytic = sum(float(np.sum(g64[i] * d[i])) for i in d)

            def phi(t):
                args = list(inputs)
                for i in d:
                    args[i] = _backend.from_numpy((x64[i] + t * d[i]).astype(x64[i].dtype), self.xp, self.device)
                y = np.asarray(_backend.to_numpy(run.fn(*args)), dtype=np.float64)
                return float(np.sum(v * y))

            h = 1e-5
            try:
                at = {t: phi(t) for t in (-h, -h / 2, h / 2, h)}
            except GradVerifyError:
                raise
            except Exception:
                return False  # fn fails next to the variant: let the full check say why
            noise = 4 * np.finfo(np.float64).eps * (float(np.sum(np.abs(v * y_host))) + 1.0) / h

            def agrees(coarse, fine, value):
                return abs(value - fine) <= 10 * (abs(coarse - fine) + noise) + 10 * rtol * max(abs(value), abs(fine))

            if agrees((at[h] - at[-h]) / (2 * h), (at[h / 2] - at[-h / 2]) / h, analytic):
                continue
            # A kink along d: the slopes on either side must each settle, and the analytic
            # value lie between them (a subgradient); else the full check decides. (With
            # several kinks on the line and a cotangent of mixed signs the one-sided slopes
            # bracket no longer every subgradient: such variants are flagged, which costs a
            # full check, never a verdict.)
            zero = phi(0.0)
            right = ((at[h] - zero) / h, (at[h / 2] - zero) * 2 / h)
            left = ((zero - at[-h]) / h, (zero - at[-h / 2]) * 2 / h)
            settled = abs(right[0] - right[1]) <= 1e-3 * max(abs(right[1]), 1e-300) + 2 * noise and abs(left[0] - left[1]) <= 1e-3 * max(abs(left[1]), 1e-300) + 2 * noise
            lo, hi = sorted((right[1], left[1]))
            slack = 10 * rtol * max(abs(lo), abs(hi)) + 4 * noise
            if not (settled and lo - slack <= analytic <= hi + slack):
                return False
        return True

    def _cotangent(self):
        v = self.run.cotangent
        if v is not None and not getattr(v, "shape", None):
            return v  # a scalar cotangent (check_grad's 1) fits every variant
        return None

    def _check(self, inputs, cotangent):
        """The full check of a flagged variant, with the caller's options (truth included)."""
        from gradverify._check import _CheckRun

        run = self.run
        budget = None if self.deadline is None else max(self.deadline - time.perf_counter(), 1e-3)
        options = run.options.replace(explore=0, time_budget=budget)
        return _CheckRun(run.fn, run.vjp, inputs, cotangent, options, run.origin.with_cotangent(cotangent)).execute()

    def _reproduce(self, inputs, cotangent=None):
        from gradverify._reproduce import reproduce_line

        run = self.run
        origin = run.origin
        options = run.options.replace(explore=0)
        return reproduce_line(origin.entry, origin.callables, origin.placeholders, inputs, cotangent, options.reproduce_args())

    def _nonfinite(self, sig, edits, hosts, y_host, finding):
        """A non-finite forward: a finding, unless it is the correctly rounded overflow of an
        exact value beyond the dtype's range, or a step outside an inferred domain."""
        if leaves_inferred_domain(sig, edits):
            self.report.outside_domain += 1
            return None
        flat = y_host.reshape(-1)
        bad = ~np.isfinite(flat)
        what = f"fn returns {int(bad.sum())} non-finite value(s) (first: {flat[bad][0]})"
        run = self.run
        reproduce = self._reproduce([_backend.from_numpy(h, self.xp, self.device) for h in hosts])
        declare = "if that is expected, declare allow_nonfinite=True or a domain that excludes this variant"
        hp_inputs = [_highprec.to_hp(h.astype(np.float64)) if fl else h for h, fl in zip(hosts, run.floating)]
        try:
            traced = _highprec.traced_call(run.fn, hp_inputs, dps=run.options.dps)
        except ArithmeticError as exc:  # mpmath's ZeroDivisionError, ...
            note = f"{what}, and fn is undefined there at high precision too ({type(exc).__name__}: {exc}): a singularity of fn as written; {declare}"
            return finding("nonfinite", "forward", note, reproduce=reproduce)
        except (HighPrecisionUnavailable, ValueError, TypeError) as exc:
            note = f"{what}; its exact value could not be computed (fn does not run at high precision: {exc}), so this may be a true overflow; {declare}"
            return finding("nonfinite", "forward", note, reproduce=reproduce)
        if traced.conversions or traced.lost:
            note = f"{what}; its exact value could not be computed (fn passed through float64 at high precision), so this may be a true overflow; {declare}"
            return finding("nonfinite", "forward", note, reproduce=reproduce)
        ctx = _highprec.CTX
        limit = float(np.finfo(y_host.dtype).max)
        with ctx.workdps(run.options.dps):
            exact = traced.out.reshape(-1)
            if not all(ctx.isfinite(v) for v in exact):
                note = f"{what}, and so does fn at high precision: a singularity of fn as written; {declare}"
                return finding("nonfinite", "forward", note, reproduce=reproduce)
            rounded = all(abs(v) > limit and np.isinf(y) and (v > 0) == (y > 0) for v, y in zip(exact[bad], flat[bad]))
        if rounded:
            self.report.beyond_range += 1  # exp(710): inf is the float64 value of a finite number
            return None
        first = float(exact[bad][0])
        note = f"{what}, but its exact value is finite and representable (there: {first:.6g}): an overflow or cancellation in the forward"
        return finding("nonfinite", "forward", note, reproduce=reproduce)


@contextlib.contextmanager
def _quiet():
    """The variants' overflows are what is being looked for: not warnings for the caller."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _first_line(result):
    return str(result).splitlines()[0].removeprefix("gradverify: ")


def explore(run, result):
    """Extend the passed example check ``result`` of ``run`` with the search; returns the result."""
    options = run.options
    started = time.perf_counter()
    report = ExploreReport(requested=options.explore)
    result.explore = report
    if not result.passed:
        report.note = "not run: the example itself fails"
        return result
    labels = [f"input {i}" for i in range(len(run.inputs))]
    domains = dict(options.domains or ())
    n = len(run.inputs)
    bad = [i for i in domains if i >= n]
    if bad:
        raise InvalidArgument(f"domains names input {bad[0]}, but there are {n} inputs (positions 0..{n - 1})")
    budget = options.time_budget
    deadline = None if budget is None else run.started + budget
    explorer = Explorer(run, report, deadline)
    sig = Signature(explorer.hosts, run.floating, labels, domains, explorer.accepts)
    report.symbols = [s.describe(labels) for s in sig.symbols]
    report.fixed = list(sig.fixed)
    report.domains = [f"{labels[i]}: {d.describe(sig.symbols)}" for i, d in enumerate(sig.domains)]
    edits = strategy(sig)
    if edits is None:
        report.note = "nothing to vary: every axis is fixed and no input has a domain with edits"
    else:
        finding = _search(explorer, sig, edits, options)
        report.finding = finding
        if explorer.out_of_time():
            report.note = f"stopped at the time budget ({budget:g} s) after {report.tried} variant(s)"
    report.seconds = time.perf_counter() - started
    if report.finding is not None:
        result.passed = False
        if report.finding.result is not None:  # the worst error over everything checked
            result.max_rel_error = max(result.max_rel_error, report.finding.result.max_rel_error)
        result.blame = {"gradient": "analytic", "inconclusive": "numerical"}.get(report.finding.kind, "analytic" if report.finding.side == "backward" else None)
    result.seconds += report.seconds
    return result


def _search(explorer, sig, edits, options):
    from gradverify import _hypothesis_adapter as adapter

    n = options.explore
    # Most of the budget goes to the canonical variants (single edits, already minimal, so
    # run directly), the rest to Hypothesis' draws, which shrink.
    explicit = canonical(sig)[: max(n - n // 4, 1) if n > 1 else 1]
    for variant in explicit:
        if explorer.out_of_time():
            return None
        try:
            explorer.test(sig, variant)
        except _Found as exc:
            return exc.finding
    drawn = n - len(explicit)
    if not drawn:
        return None
    context = adapter.build_context()
    if context is None:
        return _inner_search(explorer, sig, edits, drawn, options.seed)
    # Inside a running @given test (Hypothesis does not nest @given): draw from its own data,
    # so that the outer test shrinks and replays the variants.
    for _ in range(drawn):
        if explorer.out_of_time():
            return None
        try:
            explorer.test(sig, adapter.draw(context, edits))
        except _Found as exc:
            return exc.finding
    return None


def _inner_search(explorer, sig, edits, drawn, seed_):
    from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
    from hypothesis.errors import Flaky

    @seed(seed_)
    @settings(
        max_examples=drawn,
        database=None,
        deadline=None,
        derandomize=False,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        verbosity=Verbosity.quiet,
        print_blob=False,
    )
    @given(edits)
    def search(variant):
        explorer.test(sig, variant)

    try:
        search()
    except _Found as exc:
        return exc.finding
    except Flaky:
        return explorer.best[0] if explorer.best else None
    return None
