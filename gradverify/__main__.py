"""``gradverify verify``: verify the catalog on one backend and write the results as JSON."""

import argparse
import dataclasses
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import hypothesis
import mpmath
import numpy as np

import gradverify
from gradverify import _backend, _runner, catalog
from gradverify._errors import InvalidArgument

DEFAULT_JSON = Path("reports") / "latest" / "verify.json"


def build_parser():
    parser = argparse.ArgumentParser(prog="gradverify", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="verify the catalog's backward passes")
    verify.add_argument("--backend", default="numpy", choices=_backend.BACKENDS, help="array library (default numpy)")
    verify.add_argument("--examples", type=_positive_int, default=20, help="Hypothesis examples per op (default 20)")
    verify.add_argument("--ops", default="", help="comma-separated name patterns, e.g. 'relu,soft*' (default: all)")
    verify.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"where to write the results (default {DEFAULT_JSON})")
    verify.add_argument("--seed", type=_nonnegative_int, default=0, help="Hypothesis seed (default 0)")
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
    args = build_parser().parse_args(argv)
    try:
        xp = _backend.load_backend(args.backend)
        names = _runner.select(args.ops)
    except InvalidArgument as exc:
        print(f"gradverify: error: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    outcomes = []
    for name in names:
        print(f"verifying {name} ...", end="", flush=True)
        outcome = _runner.verify_op(catalog.get(name), xp, examples=args.examples, seed=args.seed)
        outcomes.append(outcome)
        print(f" {'ok' if outcome.passed else 'FAILED'} ({outcome.examples} examples, {outcome.seconds:.1f} s)")
    seconds = time.perf_counter() - started
    print()
    print(_table(outcomes))
    failed = [o for o in outcomes if not o.passed]
    for o in failed:
        print(f"\n--- {o.name}: shrunk failing example ---\n{o.failure['report']}\ninputs: {o.failure['inputs']}\nreproduce: {o.failure['reproduce']}")
    run = {
        "provenance": _provenance(args, seconds),
        "ops": [dataclasses.asdict(o) for o in outcomes],
        "passed": not failed,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(run, indent=1, default=_jsonable))
    verdict = "all verified" if not failed else f"{len(failed)} of {len(outcomes)} ops FAILED"
    print(f"\n{verdict} in {seconds:.1f} s on {args.backend}; results in {args.json}")
    return 1 if failed else 0


def _table(outcomes):
    head = f"{'op':24} {'family':8} {'examples':>8} {'verdict':8} {'an~fd':>9} {'an~truth':>9} {'fd~truth':>9} {'kinks':>6}  blame"
    rows = [head, "-" * len(head)]
    for o in outcomes:
        cells = [_fmt(o.worst(w)) for w in ("rel_analytic_numerical", "rel_analytic_truth", "rel_numerical_truth")]
        verdict = "ok" if o.passed else "FAILED"
        rows.append(f"{o.name:24} {o.family:8} {o.examples:>8} {verdict:8} {cells[0]:>9} {cells[1]:>9} {cells[2]:>9} {o.kinks:>6}  {o.blame or '-'}")
    return "\n".join(rows)


def _fmt(x):
    return "-" if x is None else f"{x:.1e}"


def _jsonable(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, float):
        return repr(obj)
    return str(obj)


def _provenance(args, seconds):
    versions = {"gradverify": gradverify.__version__, "numpy": np.__version__, "mpmath": mpmath.__version__, "hypothesis": hypothesis.__version__}
    return {
        "backend": args.backend,
        "examples_per_op": args.examples,
        "seed": args.seed,
        "ops_pattern": args.ops,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "python": platform.python_version(),
        "versions": versions,
    }


if __name__ == "__main__":
    sys.exit(main())
