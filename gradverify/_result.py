"""What a check returns: a JSON-safe record whose ``str()`` is the readable report."""

import dataclasses
from dataclasses import dataclass, field

from gradverify._record import jsonable

BLAMES = ("analytic", "numerical", None)


def _fmt(x, digits=10):
    return "n/a" if x is None else f"{float(x):.{digits}g}"


@dataclass
class ElementReport:
    """One element (or one direction) where a comparison was made, usually the worst."""

    index: tuple
    analytic: float
    numerical: float | None = None
    numerical_bracket: tuple | None = None  # (lo, hi) of one-sided differences at a kink
    numerical_error: float | None = None  # the finite difference's own error estimate
    step: float | None = None
    truth: float | None = None
    truth_bracket: tuple | None = None  # (lo, hi) of the truth's one-sided derivatives
    truth_note: str | None = None  # why this element has no truth (its integrity failed, ...)
    rel_analytic_numerical: float | None = None
    rel_analytic_truth: float | None = None
    rel_numerical_truth: float | None = None
    verdict: str = "ok"  # ok | analytic | unresolved | not differentiable


@dataclass
class InputReport:
    """The comparison for one differentiated input (or, in directional mode, all of them)."""

    name: str
    index: int | None
    shape: tuple
    dtype: str
    rtol: float
    checked: int  # elements, or directions in directional mode
    kinks: int = 0
    failures: int = 0  # elements where the analytic gradient is off
    numerical_off: int = 0  # elements where the finite difference is off the truth
    unresolved: int = 0  # elements the finite difference could not resolve, with no truth
    not_differentiable: int = 0  # elements where fn jumps or is noisy, with no truth
    truth_missing: int = 0  # elements whose truth failed its own checks (the differences decide)
    truth_missing_reason: str = ""  # the first such element's reason
    max_rel_analytic_numerical: float | None = None
    max_rel_analytic_truth: float | None = None
    max_rel_numerical_truth: float | None = None
    worst: ElementReport | None = None
    examples: list = field(default_factory=list)  # a few more failing elements
    gate: object = None  # gradverify._gate.GateReport with reference=: it decides, the counts above inform
    # Check power (gradverify._power): the smallest error relative to the gradient's scale that
    # fails at some element, and the elements where a zero gradient would pass.
    detectable: float | None = None
    blind: int | None = None
    # mutation_test=True: [{"kind", "detail", "detected"}] per mutant of the backward's output
    mutations: list | None = None
    spread: float | None = None  # nondeterministic=True: the gradient's largest spread over the repeated runs

    @property
    def passed(self):
        if self.gate is not None:
            return self.gate.passed
        return self.failures == 0 and self.unresolved == 0 and self.not_differentiable == 0


@dataclass
class StructuralFailure:
    """A failure that is no one element's: found before any number is compared (shape,
    mutation, determinism, ...), or across elements (the gradients of a tie, see _ties)."""

    kind: str
    message: str
    input: int | None = None
    blame: str | None = None


@dataclass
class VerificationResult:
    """The outcome of one gradient check.

    Attributes
    ----------
    passed : bool
        True when every structural check passed and the analytic gradient agrees with the
        reference (the truth where it was computed, else the finite differences).
    blame : {"analytic", "numerical", None}
        Which side is wrong: ``"analytic"`` when the hand-written gradient is off the
        reference; ``"numerical"`` when the finite difference is the one off (the check
        still passes when the truth vindicates the analytic gradient, and fails as
        inconclusive when there is no truth to decide); ``None`` when all agree.
    max_rel_error : float
        The worst relative error of the analytic gradient against its reference.
    per_input : list of InputReport
    """

    passed: bool
    blame: str | None
    max_rel_error: float
    per_input: list
    structural: list
    function: str
    mode: str
    truth: str  # "lazy", "elementwise", "directional" or "off"
    truth_note: str
    dps: int
    seed: int
    richardson: bool
    batched: bool
    evaluations: dict
    seconds: float
    reproduce: str = ""
    explore: object = None  # gradverify._explore.ExploreReport when explore=N was asked for
    warnings: list = field(default_factory=list)  # vacuous-check warnings (gradverify._power), as sentences

    def to_dict(self):
        """A JSON-safe dict (NaN and infinities as strings, tuples as lists)."""
        return jsonable(dataclasses.asdict(self))

    def __str__(self):
        return format_report(self)


def format_report(r):
    gated = [p.gate for p in r.per_input if p.gate is not None]
    if gated and not r.passed and r.blame is None and not r.structural:
        head = "gradverify: FAILED: inconclusive, the reference gate could not judge the kernel (blame: none)"
    elif gated and r.blame == "analytic" and any(g.verdict == "failed" for g in gated):
        head = "gradverify: FAILED: the kernel's error exceeds the reference gate (blame: analytic)"
    elif r.passed:
        head = "gradverify: PASSED"
        if r.blame == "numerical":
            head += " (the finite differences were off at some elements; the truth agrees with the analytic gradient)"
    elif r.blame == "analytic":
        head = "gradverify: FAILED: the analytic gradient is wrong (blame: analytic)"
    elif r.blame == "numerical":
        head = "gradverify: FAILED: inconclusive, the finite differences could not resolve the gradient and there is no truth (blame: numerical)"
    else:
        head = "gradverify: FAILED"
    lines = [
        head,
        f"  function: {r.function}   mode: {r.mode}{' batched' if r.batched else ''}"
        f"   richardson: {r.richardson}   seed: {r.seed}",
        f"  truth: {r.truth}{f' at {r.dps} digits' if r.truth != 'off' else ''}"
        f"{f' ({r.truth_note})' if r.truth_note else ''}",
        "  relative error = |a - r| / max(|a|, |r|, floor); a = analytic (your gradient),"
        " r = numerical (float64 finite differences) or truth (high precision)",
    ]
    for w in r.warnings:
        lines.append(f"  WARNING: {w}")
    for s in r.structural:
        where = f" [input {s.input}]" if s.input is not None else ""
        lines.append(f"  STRUCTURAL {s.kind}{where}: {s.message}")
    for p in r.per_input:
        lines.extend(_format_input(p))
    finding = r.explore.finding if r.explore is not None else None
    if r.reproduce and not r.passed and finding is None:
        lines.append(f"  reproduce: {r.reproduce}")
    if r.explore is not None:
        lines.extend(_format_explore(r.explore))
    return "\n".join(lines)


def _format_explore(x):
    skipped = [f"{n} {what}" for n, what in ((x.outside_domain, "outside an inferred domain"), (x.beyond_range, "overflowing a value beyond float range"), (x.allowed_nonfinite, "non-finite, allowed")) if n]
    lines = [
        f"  explore: {x.tried} of up to {x.requested} variant(s) tried, {x.flagged} checked again in full"
        + (f", skipped {', '.join(skipped)}" if skipped else "")
        + f" ({x.seconds:.2f} s)" + (f"; {x.note}" if x.note else "")
    ]
    lines.extend(f"    sizes {s}" for s in x.symbols)
    lines.extend(f"    fixed {s}" for s in x.fixed)
    if x.domains:
        lines.append(f"    domains {'; '.join(x.domains)}")
    f = x.finding
    if f is not None:
        side = f" in the {f.side}" if f.side else ""
        lines.append(f"  FOUND ({f.kind}{side}) on the variant: {f.variant}")
        lines.append(f"    input shapes {', '.join(str(s) for s in f.shapes)}" if f.shapes else "")
        lines.append(f"    {f.message}")
        if f.result is not None:
            lines.extend("    " + line for line in str(f.result).splitlines()[1:] if not line.lstrip().startswith("reproduce:"))
        if f.reproduce:
            lines.append(f"  reproduce the variant: {f.reproduce}")
    return [line for line in lines if line]


def _format_input(p):
    status = "ok" if p.passed else "FAILED"
    unit = "directions" if p.index is None else "elements"
    table = " (dtype table, for information: the reference gate decides)" if p.gate is not None else ""
    lines = [
        f"  {p.name} shape {p.shape} {p.dtype} (rtol {p.rtol:g}{table}): {status}; {p.checked} {unit},"
        f" {p.failures} wrong, {p.kinks} at kinks, {p.numerical_off} with the finite difference off,"
        f" {p.unresolved} unresolved"
        + (f", {p.not_differentiable} not differentiable (fn jumps or is noisy there)" if p.not_differentiable else ""),
        f"    max rel. error  analytic~numerical {_fmt(p.max_rel_analytic_numerical, 3)}"
        f"  analytic~truth {_fmt(p.max_rel_analytic_truth, 3)}"
        f"  numerical~truth {_fmt(p.max_rel_numerical_truth, 3)}",
    ]
    if p.detectable is not None:
        lines.append(
            f"    power: fails an error of {_fmt(p.detectable, 3)} of the gradient's scale at best;"
            f" {p.blind} of {p.checked} {unit} blind (a zero gradient would pass there)"
        )
    for m in p.mutations or []:
        seen = {True: "detected", False: "NOT detected: the check is blind to it", None: "not applicable"}[m["detected"]]
        lines.append(f"    mutation test: {m['kind']} ({m['detail']}): {seen}")
    if p.spread is not None:
        lines.append(f"    nondeterministic: the gradient's spread over the repeated runs is up to {_fmt(p.spread, 3)}, part of the error budget")
    if p.truth_missing:
        lines.append(f"    no truth at {p.truth_missing} {unit} (the finite differences decide there): {p.truth_missing_reason}")
    if p.gate is not None:
        from gradverify._gate import format_gate

        lines.extend(format_gate(p.gate, unit))
    for label, e in [("worst", p.worst)] + [("also", e) for e in p.examples]:
        if e is None:
            continue
        lines.extend(_format_element(label, e))
    return lines


def _format_element(label, e):
    lines = [f"    {label} at index {e.index} ({e.verdict}):"]
    lines.append(f"      analytic   {_fmt(e.analytic, 17)}")
    if e.numerical_bracket is not None:
        lo, hi = e.numerical_bracket
        lines.append(f"      numerical  kink: one-sided differences in [{_fmt(lo)}, {_fmt(hi)}]  (step {_fmt(e.step, 3)})")
    elif e.numerical is not None:
        lines.append(
            f"      numerical  {_fmt(e.numerical, 17)}  (step {_fmt(e.step, 3)},"
            f" error estimate {_fmt(e.numerical_error, 3)})"
        )
    if e.truth_bracket is not None:
        lo, hi = e.truth_bracket
        lines.append(f"      truth      kink: subgradients in [{_fmt(lo, 17)}, {_fmt(hi, 17)}]")
    elif e.truth is not None:
        lines.append(f"      truth      {_fmt(e.truth, 17)}")
    elif e.truth_note:
        none = "" if e.truth_note.startswith("not needed") else "none: "  # a lazy truth's settled element
        lines.append(f"      truth      {none}{e.truth_note}")
    lines.append(
        f"      rel. error analytic~numerical {_fmt(e.rel_analytic_numerical, 3)}, analytic~truth"
        f" {_fmt(e.rel_analytic_truth, 3)}, numerical~truth {_fmt(e.rel_numerical_truth, 3)}"
    )
    return lines
