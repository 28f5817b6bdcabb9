"""gradverify's command line: verify the catalog and report on it.

``gradverify verify`` checks the backward pass of every catalog op (or of those matching
``--ops``) on Hypothesis examples, writes the results as JSON with provenance and renders
them as one self-contained HTML page. ``gradverify report RUN.json -o OUT.html`` renders a
saved run again. Exit status: 0 when everything verified, 1 when something failed, 2 on a
usage error.
"""

import argparse
import datetime
import os
import secrets
import shlex
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from gradverify import _backend, _runner, catalog
from gradverify._errors import InvalidArgument
from gradverify.report import compute_figures, describe_device, load_run, new_run, provenance, write_json, write_report

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_DIR = Path("reports") / "latest"
DEFAULT_REPORT = DEFAULT_DIR / "index.html"
DEFAULT_JSON = DEFAULT_DIR / "run.json"
# The profile when --profile is not given: this variable, else "ci" where the CI variable is
# set (as Hypothesis loads its own "ci" profile), else "dev".
PROFILE_ENV = "GRADVERIFY_PROFILE"
# Short column headers for _runner.COMPARISONS, in its order.
SHORT_LABELS = ("an~fd", "an~truth", "fd~truth")


def build_parser():
    """The argument parser of ``gradverify`` (``verify`` and ``report`` commands)."""
    parser = argparse.ArgumentParser(prog="gradverify", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    verify = commands.add_parser("verify", help="verify the catalog's backward passes and write a report")
    verify.add_argument("--backend", default="numpy", choices=_backend.BACKENDS, help="array library (default numpy)")
    verify.add_argument(
        "--profile",
        choices=sorted(_runner.PROFILES),
        help="; ".join(f"{n}: {p.examples} examples per op{', fixed seed' if p.derandomize else ''}" for n, p in _runner.PROFILES.items())
        + f" (default ${PROFILE_ENV}, else ci where $CI is set, else dev)",
    )
    verify.add_argument("--examples", type=_positive_int, help="Hypothesis examples per op (default: the profile's)")
    verify.add_argument("--ops", default="", help="comma-separated name patterns, e.g. 'relu,soft*' (default: all)")
    verify.add_argument("--seed", type=_nonnegative_int, help="Hypothesis seed (default: 0 for a derandomized profile, else a fresh one)")
    verify.add_argument("--report", type=Path, default=DEFAULT_REPORT, help=f"the HTML report (default {DEFAULT_REPORT})")
    verify.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"the results with provenance (default {DEFAULT_JSON})")
    verify.set_defaults(handler=_verify)

    report = commands.add_parser("report", help="render a saved run (run.json) as HTML")
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
    except InvalidArgument as exc:  # raised before any op runs: verify_op keeps its own
        print(f"gradverify: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # a --json, --report or -o path that cannot be written
        print(f"gradverify: error: cannot write {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE


def _profile_name(args):
    if args.profile is not None:
        return args.profile
    name = os.environ.get(PROFILE_ENV) or ("ci" if os.environ.get("CI") else "dev")
    if name not in _runner.PROFILES:
        raise InvalidArgument(f"{PROFILE_ENV}={name!r} is not a profile; choose from {', '.join(_runner.PROFILES)}")
    return name


def _verify(args):
    profile_name = _profile_name(args)
    profile = _runner.PROFILES[profile_name]
    examples = args.examples or profile.examples
    seed = args.seed if args.seed is not None else 0 if profile.derandomize else secrets.randbelow(2**32)
    xp = _backend.load_backend(args.backend)
    names = _runner.select(args.ops)

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=140)  # not squeezed to 80 columns in a log
    started_at = datetime.datetime.now(datetime.timezone.utc)
    started = time.perf_counter()
    outcomes = _run_ops(names, xp, examples=examples, seed=seed, console=console)
    figures = compute_figures(xp)
    seconds = time.perf_counter() - started

    console.print()
    console.print(_table(outcomes))
    failed = [o for o in outcomes if not o.passed]
    for o in failed:
        print(f"\n--- {o.name}: shrunk failing example ---\n{o.failure['report']}\ninputs: {o.failure['inputs']}\nreproduce: {o.failure['reproduce']}")

    prov = provenance(
        backend=args.backend,
        device=describe_device(xp),
        seed=seed,
        seconds=seconds,
        started=started_at,
        profile=profile_name,
        examples_per_op=examples,
        ops_pattern=args.ops,
        command=shlex.join(["gradverify", *args.argv]),
    )
    run = new_run(prov, ops=[o.to_dict() for o in outcomes], figures=figures)
    write_json(run, args.json)
    write_report(run, args.report)
    verdict = "all verified" if not failed else f"{len(failed)} of {len(outcomes)} ops FAILED"
    print(f"\n{verdict} in {seconds:.1f} s on {args.backend} (profile {profile_name}, seed {seed}, {examples} examples per op)")
    print(f"results in {args.json}, report in {args.report}")
    return EXIT_FAILED if failed else EXIT_OK


def _run_ops(names, xp, *, examples, seed, console):
    """Verify each op: progress bars on a terminal, one plain line per op otherwise."""
    outcomes = []
    if not console.is_terminal:
        for name in names:
            print(f"verifying {name} ...", end="", flush=True)
            outcome = _runner.verify_op(catalog.get(name), xp, examples=examples, seed=seed)
            print(f" {'ok' if outcome.passed else 'FAILED'} ({outcome.examples} examples, {outcome.seconds:.1f} s)", flush=True)
            outcomes.append(outcome)
        return outcomes
    columns = (SpinnerColumn(), TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        overall = progress.add_task("[bold]catalog", total=len(names))
        for name in names:
            task = progress.add_task(escape(name), total=examples)
            outcome = _runner.verify_op(catalog.get(name), xp, examples=examples, seed=seed, on_example=lambda: progress.advance(task))
            progress.remove_task(task)
            mark = "[green]ok[/]" if outcome.passed else "[bold red]FAILED[/]"
            progress.console.print(f"{escape(name):<28} {mark}  {outcome.examples} examples, {outcome.seconds:.1f} s")
            progress.advance(overall)
            outcomes.append(outcome)
    return outcomes


def _table(outcomes):
    table = Table(title="gradverify: worst relative errors per op", title_justify="left")
    for header in ("op", "family", "examples", "verdict", *SHORT_LABELS, "kinks", "blame"):
        table.add_column(header, justify="right" if header in ("examples", "kinks") or "~" in header else "left", no_wrap=header == "op")
    for o in outcomes:
        verdict = Text("ok", style="green") if o.passed else Text("FAILED", style="bold red")
        errors = [Text(_fmt(o.worst(key))) for key in _runner.COMPARISONS]
        table.add_row(Text(o.name), Text(o.family), str(o.examples), verdict, *errors, str(o.kinks), Text(o.blame or "-"))
    return table


def _fmt(x):
    return "-" if x is None else f"{x:.1e}"


def _report(args):
    run = load_run(args.run)
    output = args.output or args.run.with_suffix(".html")
    write_report(run, output)
    print(f"report in {output}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
