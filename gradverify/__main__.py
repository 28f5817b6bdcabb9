"""gradverify's command line: verify the catalog, and your own ops, and report on it.

``gradverify verify`` checks the backward pass of every catalog op (or of those matching
``--ops``) on Hypothesis examples, writes the run record (JSON, with provenance) and renders
it as one self-contained HTML page. Your own ops join the run from ``--module NAME_OR_PATH``
(a module or .py file whose import registers them with gradverify.catalog) or from installed
packages' "gradverify.ops" entry points. ``gradverify report RUN.json -o OUT.html`` renders a
saved run again. ``gradverify study`` runs the training study alone (the ops it uses
verified first; see gradverify.study), which ``gradverify verify`` of the whole catalog
includes. Exit status: 0 when everything verified, 1 when something failed, 2 on a usage
error or an unreadable run, 130 when interrupted (Ctrl-C; what ran is written).
"""

import argparse
import contextlib
import datetime
import os
import secrets
import shlex
import signal
import sys
import textwrap
import time
from pathlib import Path

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Column, Table
from rich.text import Text

from gradverify import _backend, _record, _runner, catalog
from gradverify._errors import InvalidArgument
from gradverify._options import BACKENDS, DEFAULT_BACKEND, TEXT_SETTINGS, CheckOptions, parse_setting
from gradverify._record import visible
from gradverify.report import compute_figures, write_report

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_DIR = Path("reports") / "latest"
DEFAULT_REPORT = DEFAULT_DIR / "index.html"
DEFAULT_JSON = DEFAULT_DIR / "run.json"
STUDY_DIR = Path("reports") / "study"
# The training study's sizes (gradverify.study.SIZES), and "off".
STUDY_SIZES = ("default", "small", "off")
# Examples per op when ``gradverify study`` verifies the ops the study uses.
STUDY_EXAMPLES = 10
# The profile when --profile is not given: this variable, else "ci" where the CI variable is
# set (as Hypothesis loads its own "ci" profile), else "dev".
PROFILE_ENV = "GRADVERIFY_PROFILE"
# The op column's width in the progress display and the per-op lines.
NAME_WIDTH = 28


def build_parser():
    """The argument parser of ``gradverify`` (``verify`` and ``report`` commands)."""
    parser = argparse.ArgumentParser(prog="gradverify", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    verify = commands.add_parser("verify", help="verify the catalog's backward passes (and your ops) and write a report")
    verify.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS, help=f"array library (default {DEFAULT_BACKEND})")
    verify.add_argument(
        "--profile",
        choices=sorted(_runner.PROFILES),
        help="; ".join(f"{n}: {p.examples} examples per op{', fixed seed' if p.derandomize else ''}" for n, p in _runner.PROFILES.items())
        + f" (default ${PROFILE_ENV}, else ci where $CI is set, else dev)",
    )
    verify.add_argument("--examples", type=_positive_int, help="Hypothesis examples per op, at most (default: the profile's)")
    verify.add_argument("--ops", default="", help="comma-separated names or patterns, e.g. 'relu,soft*' (default: all)")
    verify.add_argument("--seed", type=_nonnegative_int, help="Hypothesis seed (default: 0 for a derandomized profile, else a fresh one)")
    verify.add_argument(
        "--module",
        action="append",
        default=[],
        metavar="NAME_OR_PATH",
        help="a module name or .py file whose import registers your ops (gradverify.catalog.op or register); repeatable",
    )
    for setting in TEXT_SETTINGS.values():
        verify.add_argument(f"--{setting.name.replace('_', '-')}", dest=f"setting_{setting.name}", metavar=setting.metavar, help=setting.help)
    verify.add_argument(
        "--study",
        choices=STUDY_SIZES,
        help="the training study in the report: default, small or off (default: default when every op is verified, off with --ops)",
    )
    verify.add_argument("--report", type=Path, default=DEFAULT_REPORT, help=f"the HTML report (default {DEFAULT_REPORT})")
    verify.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"the run record with provenance (default {DEFAULT_JSON})")
    verify.set_defaults(handler=_verify)

    study = commands.add_parser("study", help="verify the ops the training study uses, run the study and write its report")
    study.add_argument("--seed", type=_nonnegative_int, default=0, help="the study's seed, and the ops' Hypothesis seed (default 0)")
    study.add_argument("--size", choices=STUDY_SIZES[:-1], default="default", help="default (the report's) or small (seconds)")
    study.add_argument("--examples", type=_positive_int, default=STUDY_EXAMPLES, help=f"Hypothesis examples per op used (default {STUDY_EXAMPLES})")
    study.add_argument("--report", type=Path, default=STUDY_DIR / "index.html", help=f"the HTML report (default {STUDY_DIR / 'index.html'})")
    study.add_argument("--json", type=Path, default=STUDY_DIR / "run.json", help=f"the run record (default {STUDY_DIR / 'run.json'})")
    study.set_defaults(handler=_study)

    report = commands.add_parser("report", help="render a saved run (run.json) as HTML and print its summary")
    report.add_argument("run", type=Path, help="a run.json written by 'gradverify verify' or the pytest plugin")
    report.add_argument("-o", "--output", type=Path, help="the HTML file (default: RUN with the suffix .html)")
    report.set_defaults(handler=_report)
    return parser


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _nonnegative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be at least 0")
    return value


def main(argv=None):
    """Run the command line; return the exit status (argparse exits 2 itself on bad syntax)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.handler(args)
    except InvalidArgument as exc:  # usage errors, raised before any op runs; unreadable runs
        print(f"gradverify: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # an output that could be probed but not written after all
        print(f"gradverify: error: cannot write {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # before any op ran (loading modules, say), or in gradverify report
        print("gradverify: interrupted (Ctrl-C); nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED


# -- verify ---------------------------------------------------------------------------------------


def _profile_name(args):
    if args.profile is not None:
        return args.profile
    name = os.environ.get(PROFILE_ENV) or ("ci" if os.environ.get("CI") else "dev")
    if name not in _runner.PROFILES:
        raise InvalidArgument(f"{PROFILE_ENV}={name!r} is not a profile; choose from {', '.join(_runner.PROFILES)}")
    return name


def check_options(args):
    """The one :class:`CheckOptions` of a run, from the text settings on its command line."""
    values = {}
    for name in TEXT_SETTINGS:
        text = getattr(args, f"setting_{name}")
        if text is not None:
            values[name] = parse_setting(name, text, source=f"--{name.replace('_', '-')}")
    return CheckOptions(**values)


def _verify(args):
    profile_name = _profile_name(args)
    profile = _runner.PROFILES[profile_name]
    examples = args.examples or profile.examples
    seed = args.seed if args.seed is not None else 0 if profile.derandomize else secrets.randbelow(2**32)
    options = check_options(args)
    json_path = _record.check_output_path(args.json, option="--json")
    report_path = _record.check_output_path(args.report, option="--report")
    if json_path.resolve() == report_path.resolve():
        raise InvalidArgument(f"--json and --report are the same file {str(json_path)!r}; give them different paths")
    xp = _backend.load_backend(args.backend)
    _load_user_ops(args.module)
    names = _runner.select(args.ops)
    command = _command(args, profile_name, seed)

    console = _console()
    started_at = datetime.datetime.now(datetime.timezone.utc)
    started = time.perf_counter()
    study_size = args.study or ("off" if args.ops else "default")
    outcomes, stopped_in = _run_ops(names, xp, examples=examples, seed=seed, options=options, console=console)
    figures, study = {}, None
    if stopped_in is None:
        try:
            figures = compute_figures(xp)
        except KeyboardInterrupt:
            stopped_in = "the figures"
    if stopped_in is None and study_size != "off":
        try:
            study = _run_study(seed=seed % 2**32, size=study_size, outcomes=outcomes, console=console)
        except KeyboardInterrupt:
            stopped_in = "the training study"
    seconds = time.perf_counter() - started
    with _sigint_ignored():  # a moment: build, show and save what ran
        run = _record_run(
            args, xp, outcomes, figures=figures, stopped_in=stopped_in, seed=seed, seconds=seconds, started_at=started_at,
            command=command, profile_name=profile_name, examples=examples, options=options, study=study,
        )
        print_summary(run, console)
        _print_failures(run, console)
        if study is not None:
            print_study(study, console)
        _record.write_run(run, json_path)
    report_written = _write_report(run, report_path)

    failed = [o for o in run["ops"] if not o["passed"]]
    study_failed = study is not None and not study["passed"]
    if stopped_in is not None:
        wrote = f"{json_path} and {report_path}" if report_written else f"{json_path} (no HTML report)"
        console.print(
            f"\ngradverify: interrupted (Ctrl-C) in {visible(stopped_in)} after {seconds:.1f} s: {len(outcomes)} of {len(names)} ops checked"
            f"{f', {len(failed)} FAILED' if failed else ''}; what ran is in {wrote}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return EXIT_INTERRUPTED
    where = f"on {args.backend} (profile {profile_name}, seed {seed}, at most {examples} examples per op)"
    verdict_line = f"{len(failed)} of {len(outcomes)} ops FAILED" if failed else ("the op verified" if len(outcomes) == 1 else f"all {len(outcomes)} ops verified")
    if study_failed:
        verdict_line += "; the training study FAILED"
    console.print(f"\n{verdict_line} in {seconds:.1f} s {where}", markup=False, highlight=False)
    console.print(f"run record in {json_path}, report in {report_path}", markup=False, highlight=False, soft_wrap=True)
    return EXIT_FAILED if failed or study_failed else EXIT_OK


def _run_study(*, seed, size, outcomes, console):
    """The training study, told which of the ops it uses this run verified."""
    from gradverify.study import run_study  # trains networks: imported only when a run includes the study

    console.print(f"training study ({size} size, seed {seed}) ...", markup=False, highlight=False)
    return run_study(seed=seed, size=size, verified={o.name: o.passed for o in outcomes})


def _record_run(args, xp, outcomes, *, figures, stopped_in, seed, seconds, started_at, command, profile_name, examples, options, study=None):
    """The run record (``gradverify-run/2``, kind catalog) of what ran."""
    prov = _record.provenance(
        backend=args.backend,
        device=_backend.describe_device(xp),
        seed=seed,
        seconds=seconds,
        started=started_at,
        command=command,
        profile=profile_name,
        examples_per_op=examples,
        ops_pattern=args.ops,
        modules=list(args.module),
        check_options={name: getattr(options, name) for name in TEXT_SETTINGS},
        interrupted_in=stopped_in,
    )
    return _record.new_run("catalog", prov, ops=[o.to_dict() for o in outcomes], figures=figures, interrupted=stopped_in is not None, study=study)


def _load_user_ops(modules):
    """Load the installed packages' ops (entry points), then each ``--module``."""
    catalog.load_entry_points()
    if modules and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as python -m does: modules in the current directory import
    for spec in modules:
        try:
            loaded = catalog.load_module(spec)
        except InvalidArgument as exc:
            raise InvalidArgument(f"--module {spec!r}: {exc}") from None
        if not loaded:
            print(f"gradverify: note: --module {spec!r} registered no new op", file=sys.stderr)


def _command(args, profile_name, seed):
    """The command line that runs this run again: as typed, with the seed and profile it drew."""
    words = ["gradverify", *args.argv]
    if args.seed is None:
        words += ["--seed", str(seed)]
    if args.profile is None:
        words += ["--profile", profile_name]
    return shlex.join(words)


def _console():
    return Console(highlight=False)


def _run_ops(names, xp, *, examples, seed, options, console):
    """Verify each op, with a progress display on a terminal and one plain line per op
    otherwise. Returns (outcomes, the op it was in when Ctrl-C came, or None)."""
    outcomes = []
    display = _ProgressDisplay(console, len(names), examples) if console.is_terminal else _PlainDisplay(examples)
    with display:
        for name in names:
            try:
                display.start(name)
                outcome = _runner.verify_op(catalog.get(name), xp, examples=examples, seed=seed, options=options, progress=display.progress)
                outcomes.append(outcome)
                display.done(outcome)
            except _runner.Interrupted as stop:
                if stop.outcome is not None:  # a failure found (perhaps not fully shrunk), or the op's last example done
                    outcomes.append(stop.outcome)
                    display.done(stop.outcome)
                else:
                    display.abandon()
                return outcomes, name
            except KeyboardInterrupt:  # between two ops
                display.abandon()
                return outcomes, name
    return outcomes, None


def _examples(n):
    return f"{n} example{'s' if n != 1 else ''}"


def _shrink_words(outcome):
    steps = f"{outcome.shrink_steps} step{'s' if outcome.shrink_steps != 1 else ''}"
    return f"shrunk in {steps}" if outcome.failure is None or outcome.failure.get("shrunk", True) else f"shrinking interrupted after {steps}"


def _op_line(outcome):
    """One line for a finished op: its name, verdict, examples, shrink steps and time."""
    line = Text(f"{visible(outcome.name):<{NAME_WIDTH}} ")
    line.append("ok" if outcome.passed else "FAILED", style="green" if outcome.passed else "bold red")
    details = f"  {_examples(outcome.examples)}"
    if outcome.shrink_steps:
        details += f", {_shrink_words(outcome)}"
    line.append(f"{details}, {outcome.seconds:.1f} s")
    return line


class _PlainDisplay:
    """One line per op, for logs: ``verifying NAME ... ok (10 examples, 0.3 s)``."""

    def __init__(self, examples):
        self.examples = examples
        self.shrinking = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def start(self, name):
        self.shrinking = False
        self.generated = 0
        print(f"verifying {visible(name)} ...", end="", flush=True)

    def progress(self, phase, count):
        if phase == "generate":
            self.generated = count
        elif not self.shrinking:
            self.shrinking = True
            print(f" failed at example {self.generated}; shrinking ...", end="", flush=True)

    def done(self, outcome):
        verdict = "ok" if outcome.passed else "FAILED"
        steps = f", {_shrink_words(outcome)}" if outcome.shrink_steps else ""
        print(f" {verdict} ({_examples(outcome.examples)}{steps}, {outcome.seconds:.1f} s)", flush=True)

    def abandon(self):
        print(" interrupted", flush=True)


class _ProgressDisplay:
    """Rich progress on a terminal: the catalog's bar, the op's bar over its examples, and,
    when an example fails, a shrinking line with its step count and a live timer."""

    def __init__(self, console, ops, examples):
        self.examples = examples
        self.progress_bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", table_column=Column(width=NAME_WIDTH + 2, no_wrap=True, overflow="ellipsis")),
            BarColumn(bar_width=None),
            TextColumn("{task.fields[count]}", table_column=Column(width=12, no_wrap=True)),
            TimeElapsedColumn(),
            console=console,
        )
        self.ops = ops
        self.done_ops = 0
        self.task = self.shrink_task = None

    def __enter__(self):
        self.progress_bar.__enter__()
        self.overall = self.progress_bar.add_task("[bold]catalog", total=self.ops, count=f"0/{self.ops} ops")
        return self

    def __exit__(self, *exc):
        return self.progress_bar.__exit__(*exc)

    def start(self, name):

        self.name = escape(visible(name))
        self.generated = 0
        self.shrink_task = None
        self.task = self.progress_bar.add_task(self.name, total=self.examples, count=f"0/{self.examples}")

    def progress(self, phase, count):
        bar = self.progress_bar
        if phase == "generate":
            self.generated = count
            bar.update(self.task, completed=count, count=f"{count}/{self.examples}")
            return
        if self.shrink_task is None:  # the first shrink step: the examples are over
            bar.update(self.task, total=self.generated, completed=self.generated, count=f"{self.generated}/{self.examples} [red]✗[/]")
            bar.stop_task(self.task)
            self.shrink_task = bar.add_task(f"  shrinking {self.name}", total=None, count="0 steps")
        bar.update(self.shrink_task, completed=count, count=f"{count} step{'s' if count != 1 else ''}")

    def _clear(self):
        for task in (self.task, self.shrink_task):
            if task is not None:
                self.progress_bar.remove_task(task)
        self.task = self.shrink_task = None

    def done(self, outcome):
        self._clear()
        self.progress_bar.console.print(_op_line(outcome), highlight=False)
        self.done_ops += 1
        self.progress_bar.update(self.overall, advance=1, count=f"{self.done_ops}/{self.ops} ops")

    def abandon(self):
        self._clear()


# -- the summary ----------------------------------------------------------------------------------

# Verdicts in words, with the legend line that explains each.
_LEGEND = {
    "truth decided": "ok, truth decided (N): at N examples the finite differences were too inexact to judge; the high-precision truth decided, and agreed with the backward pass",
    "backward wrong": "FAILED: backward wrong: the backward pass disagrees with the reference (details below)",
    "undecided": "FAILED: undecided: the finite differences were too inexact to judge and no high-precision truth could decide",
    "property": "FAILED: property: the op broke a property its forward must have (details below)",
    "error": "FAILED: error: the op, its examples or the check raised an error (details below)",
}
_WORST_ERROR = (
    "worst error: the largest relative error |a - r| / max(|a|, |r|) of the backward pass a over the examples, "
    "r the high-precision truth where it ran, else the finite differences; - where there is no gradient"
)


def verdict(op):
    """The verdict of a record's op in words, and the legend key that explains it (or None)."""
    if op["passed"]:
        decided = op.get("truth_decided", op["truth"].get("numerical_off", 0))
        return ("ok", None) if not decided else (f"ok, truth decided ({decided})", "truth decided")
    kind = (op.get("failure") or {}).get("kind")
    if kind in ("property", "error"):
        return f"FAILED: {kind}", kind
    if op["blame"] == "numerical":
        return "FAILED: undecided", "undecided"
    return "FAILED: backward wrong", "backward wrong"


def worst_error(op):
    """The op's worst relative error against the reference that decided, or None."""
    values = op.get("rel_error") or op["rel_analytic_truth"] or op["rel_analytic_numerical"]
    values = [_record.number(v) for v in values]
    return max(values) if values else None


def summary_table(ops):
    """The summary of a run's ops (record entries) as a rich Table that reads at 80 columns:
    names whole, numbers never wrapped, verdicts in words."""
    table = Table(title="worst error of each op's backward pass", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("op", no_wrap=True)
    table.add_column("examples", justify="right", no_wrap=True)
    table.add_column("worst error", justify="right", no_wrap=True)
    table.add_column("verdict", overflow="fold")
    for op in ops:
        words, _ = verdict(op)
        error = worst_error(op)
        style = "green" if op["passed"] else "bold red"
        table.add_row(Text(visible(op["name"])), str(op["examples"]), "-" if error is None else f"{error:.1e}", Text(words, style=style))
    return table


def legend(ops):
    """The legend lines for the verdicts that ``ops`` show, and for the worst error."""
    keys = {verdict(op)[1] for op in ops}
    return [_WORST_ERROR, *(line for key, line in _LEGEND.items() if key in keys)]


def print_summary(run, console):
    """Print a run record's summary table and its legend (a test run: its outcomes, counted)."""
    if run["kind"] == "pytest":
        counts = {}
        for test in run["tests"]:
            counts[test["outcome"]] = counts.get(test["outcome"], 0) + 1
        console.print(f"a pytest run: {len(run['tests'])} tests" + "".join(f", {n} {outcome}" for outcome, n in counts.items()), markup=False, highlight=False)
        for test in run["tests"]:
            if test["outcome"] in _record.FAILING_OUTCOMES:
                console.print(f"  {test['outcome'].upper()} {visible(test['nodeid'])}", markup=False, highlight=False, soft_wrap=True)
        return
    if not run["ops"]:
        console.print("no op was checked", markup=False)
        return
    console.print()
    console.print(summary_table(run["ops"]))
    for line in legend(run["ops"]):
        console.print(visible(line), markup=False, highlight=False, style="dim")
    for line in warning_lines(run["ops"]):
        console.print(visible(line), markup=False, highlight=False, style="yellow")


def warning_lines(ops):
    """What the checks' warnings say of a run: the ops whose checks warned at some examples,
    in one line with their counts, and the first warning in full of each op that warned at
    every example (no example of it could have shown every kind of bug)."""
    warned = [op for op in ops if isinstance(op.get("warned"), int) and op["warned"] > 0]
    if not warned:
        return []
    counts = ", ".join(f"{op['name']} {op['warned']}/{op['examples']}" for op in warned)
    lines = [f"checks that warned at some examples (an input where a zero gradient would pass, or a mutant the check would pass; the report lists them): {counts}"]
    for op in warned:
        if op["warned"] >= op["examples"] and op.get("warnings"):
            lines.append(f"warning: {op['name']}: every example's check warned, e.g. {op['warnings'][0]}")
    return lines


def _print_failures(run, console):
    for op in run["ops"]:
        failure = op["failure"]
        if failure is None:
            continue
        shrunk = "shrunk failing example" if failure.get("shrunk", True) else "failing example (shrinking interrupted, not minimal)"
        inputs = ", ".join(str(a) for a in failure.get("inputs", [])) or "-"
        params = ", ".join(f"{k}={v}" for k, v in (failure.get("params") or {}).items())
        text = f"\n--- {op['name']}: {shrunk} ---\n{failure.get('report', '')}\ninputs: {inputs}" + (f"\nparams: {params}" if params else "")
        console.print(visible(text), markup=False, highlight=False, soft_wrap=True)
        console.print(f"reproduce: {visible(failure['reproduce'])}", markup=False, highlight=False, soft_wrap=True)


def _write_report(run, path):
    """Write the HTML report, which Ctrl-C may cut short (the record is saved by then);
    True when it was written."""
    try:
        write_report(run, path)
    except KeyboardInterrupt:
        return False
    return True


@contextlib.contextmanager
def _sigint_ignored():
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals cannot be changed, nor delivered here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# -- study ----------------------------------------------------------------------------------------


def _study(args):
    """``gradverify study``: verify the ops the study uses, run it, write the record and report."""
    from gradverify.study import OPS_USED

    json_path = _record.check_output_path(args.json, option="--json")
    report_path = _record.check_output_path(args.report, option="--report")
    if json_path.resolve() == report_path.resolve():
        raise InvalidArgument(f"--json and --report are the same file {str(json_path)!r}; give them different paths")
    xp = _backend.load_backend("numpy")
    options = CheckOptions()
    command = shlex.join(["gradverify", *args.argv])
    console = _console()
    started_at = datetime.datetime.now(datetime.timezone.utc)
    started = time.perf_counter()
    console.print(f"verifying the {len(OPS_USED)} catalog ops the study uses ({args.examples} examples each)", markup=False, highlight=False)
    outcomes, stopped_in = _run_ops(list(OPS_USED), xp, examples=args.examples, seed=args.seed, options=options, console=console)
    study = None
    if stopped_in is None:
        try:
            study = _run_study(seed=args.seed, size=args.size, outcomes=outcomes, console=console)
        except KeyboardInterrupt:
            stopped_in = "the training study"
    seconds = time.perf_counter() - started
    with _sigint_ignored():
        prov = _record.provenance(
            backend="numpy", device=_backend.describe_device(xp), seed=args.seed, seconds=seconds, started=started_at, command=command,
            examples_per_op=args.examples, ops_pattern=",".join(OPS_USED), study_size=args.size, interrupted_in=stopped_in,
        )
        run = _record.new_run("catalog", prov, ops=[o.to_dict() for o in outcomes], interrupted=stopped_in is not None, study=study)
        _print_failures(run, console)
        if study is not None:
            print_study(study, console)
        _record.write_run(run, json_path)
    report_written = _write_report(run, report_path)
    failed = [o for o in run["ops"] if not o["passed"]]
    if stopped_in is not None:
        wrote = f"{json_path} and {report_path}" if report_written else f"{json_path} (no HTML report)"
        console.print(f"\ngradverify: interrupted (Ctrl-C) in {visible(stopped_in)} after {seconds:.1f} s; what ran is in {wrote}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_INTERRUPTED
    ops_line = f"{len(failed)} of {len(outcomes)} ops FAILED" if failed else f"all {len(outcomes)} ops verified"
    console.print(f"\n{ops_line}; the training study {'passed' if study['passed'] else 'FAILED'}; {seconds:.1f} s", markup=False, highlight=False)
    console.print(f"run record in {json_path}, report in {report_path}", markup=False, highlight=False, soft_wrap=True)
    return EXIT_OK if run["passed"] else EXIT_FAILED


def study_lines(study):
    """The training study's summary as short sentences (the console wraps them at its width)."""
    e2e = study["e2e"]
    checks = ", ".join(
        f"{when} training {'passed' if e2e[when]['passed'] else 'FAILED'} (max rel. error {_record.number(e2e[when]['max_rel_error']) or 0:.1e})" for when in ("before", "after")
    )
    replays = study["optimizers"]
    every = [o["replay"] for o in replays.values()] + [r["replay"] for part in ("schedules", "batch", "losses", "activations") for r in study[part]["runs"].values() if "replay" in r]
    same = [r for r in every if r["passed"]]
    worst = max(float(r["max_rel_deviation"]) for r in every)
    stall = study["stall"]
    accuracy = ", ".join(f"{n} {o['curves']['val_accuracy'][-1]:.2f}" for n, o in replays.items())
    lines = [
        f"training study (seed {study['seed']}, {study['size']} size, {study['seconds']:.1f} s): {'passed' if study['passed'] else 'FAILED'}",
        f"  end-to-end check of the network's backward pass: {checks}",
        f"  training runs replayed with the catalog's update rules: {len(same)} of {len(every)} followed them (max deviation {worst:.1e} of the parameters' scale)",
        f"  validation accuracy after {study['network']['epochs']} epochs: {accuracy}",
    ]
    if stall is not None:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(stall["counts"].items(), key=lambda kv: -kv[1]))
        saddles = [p for p in stall["points"] if p.get("escape")]
        lowered = sum(1 for p in saddles if p["escape"]["decrease"] > 0)
        lines.append(
            f"  where training stalls ({len(stall['points'])} runs, |grad| < {stall['tol']:g}): {counts}; the escape step lowered the loss at {lowered} of {len(saddles)} saddle(s)"
        )
    unchecked = [op["name"] for op in study["ops"] if op["verified"] is None]
    if unchecked:
        lines.append(f"  not verified in this run: {', '.join(unchecked)}")
    lines += [f"  FAILED: {p}" for p in study["problems"]]
    return lines


def print_study(study, console):
    """Print the training study's summary."""
    console.print()
    width = max(40, console.width)
    for line in study_lines(study):
        indent = "    " if line.startswith("  ") else "  "
        text = textwrap.fill(visible(line), width=width, subsequent_indent=indent, break_on_hyphens=False)
        console.print(text, markup=False, highlight=False, style=None if study["passed"] else "bold red", soft_wrap=True)


# -- report ---------------------------------------------------------------------------------------


def _report(args):
    run = _record.read_run(args.run)
    output = _record.check_output_path(args.output or args.run.with_suffix(".html"), option="-o/--output")
    console = _console()
    print_summary(run, console)
    if run["status"] == "interrupted":
        console.print("this run was interrupted: it holds what ran before Ctrl-C", markup=False)
    write_report(run, output)
    console.print(f"report in {output}", markup=False, highlight=False, soft_wrap=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
