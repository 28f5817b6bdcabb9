"""Detection, false alarms and cost of ``explore=N`` over the hidden-bug suite (issue 12).

For each case of ``tests/explore_cases.py`` and each seed: the wrong pair with ``explore=N``
(caught with the expected finding kind?), the correct pair with ``explore=N`` (a false
alarm?), and the correct pair without exploration (the cost of a single check). Prints one
row per case and the totals; nothing is asserted (``tests/test_explore.py`` does that).

    .venv/bin/python benchmarks/bench_explore.py [--seeds 20] [--explore 20] [--json PATH]
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gradverify  # noqa: E402
from tests.explore_cases import CASES  # noqa: E402


def _timed(fn, vjp, inputs, **options):
    started = time.perf_counter()
    result = gradverify.check_vjp(fn, vjp, *inputs, **options)
    return result, time.perf_counter() - started


def measure(case, seeds, n):
    single_options = {k: v for k, v in case.options.items() if k not in ("domains", "allow_nonfinite")}
    row = {"case": case.name, "expected": case.finding, "caught": 0, "kinds": {}, "false_alarms": 0, "notes": [], "t_explore": [], "t_single": []}
    for seed in seeds:
        wrong, _ = _timed(case.fn, case.vjp, case.inputs, explore=n, seed=seed, **case.options)
        finding = wrong.explore.finding
        kind = finding.kind if finding else "missed"
        row["kinds"][kind] = row["kinds"].get(kind, 0) + 1
        row["caught"] += kind == case.finding
        if kind != case.finding:
            row["notes"].append(f"seed {seed}: {kind} {finding.variant if finding else ''}")
        right, seconds = _timed(case.correct_fn, case.correct_vjp, case.inputs, explore=n, seed=seed, **case.options)
        row["t_explore"].append(seconds)
        if not right.passed:
            row["false_alarms"] += 1
            f = right.explore.finding
            row["notes"].append(f"seed {seed}: FALSE ALARM {f.kind if f else 'on the example'} {f.variant if f else ''}")
        _, seconds = _timed(case.correct_fn, case.correct_vjp, case.inputs, seed=seed, **single_options)
        row["t_single"].append(seconds)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--explore", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    seeds = range(args.seeds)
    # One untimed run first: imports and Hypothesis' set-up are not the cost of a check.
    gradverify.check_vjp(CASES[0].correct_fn, CASES[0].correct_vjp, *CASES[0].inputs, explore=2, **CASES[0].options)
    rows = []
    print(f"{'case':58} {'finding':9} {'caught':>7} {'false':>6} {'single ms':>9} {'explore ms':>10} {'ratio':>6}")
    for case in CASES:
        row = measure(case, seeds, args.explore)
        single, explore = statistics.median(row["t_single"]), statistics.median(row["t_explore"])
        row["ratio"] = explore / single
        rows.append(row)
        print(f"{case.name[:58]:58} {case.finding:9} {row['caught']:>3}/{len(seeds):<3} {row['false_alarms']:>3}/{len(seeds):<2} {single * 1e3:9.1f} {explore * 1e3:10.1f} {row['ratio']:5.1f}x", flush=True)
        for note in row["notes"][:3]:
            print(f"    {note}")
    ratios = sorted(r["ratio"] for r in rows)
    caught = sum(r["caught"] for r in rows)
    print(
        f"\n{len(rows)} cases x {len(seeds)} seeds, explore={args.explore}: caught {caught}/{len(rows) * len(seeds)} with the expected kind,"
        f" cases caught in >= 19 of 20 seeds' share: {sum(r['caught'] >= 0.95 * len(seeds) for r in rows)}/{len(rows)};"
        f" false alarms {sum(r['false_alarms'] for r in rows)}/{len(rows) * len(seeds)};"
        f" explore/single (medians per case): median {statistics.median(ratios):.1f}x, max {ratios[-1]:.1f}x"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
