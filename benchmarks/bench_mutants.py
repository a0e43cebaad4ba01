"""Mutation score of the default ``check`` battery (issue 18, item 4).

    python benchmarks/bench_mutants.py [--jobs 2] [--examples N] [--mutant NAME ...] [--quick]

Runs ``tokenrace check``'s battery (every shipped scenario the reference
claims clean, each with its own search budget unless ``--examples``) on each
mutant of the reference engine (``conformance.MUTANTS``: 13 operators over
the engine's effect stream and hooks), stopping at the first scenario that
catches it.  Prints one line per mutant as it ends (killed: by which
scenario and anomaly, seconds to the first failing schedule; survived: the
dimension of the world it needs, or its equivalence argument), then the
score: killed / (mutants - equivalent survivors).  ``--quick`` runs the
first mutant of each operator.  Writes ``reports/bench/mutants.json``.

A survivor costs the whole battery (about 20 s of one core); a kill, less
than a second to a few.  The full run is ~10 minutes on one idle core.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from conformance import MUTANTS, Fate, MutantResult, run_mutants, witness_check

OUT = Path("reports/bench/mutants.json")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1, help="mutants at once (default 1)")
    parser.add_argument("--examples", type=int, help="schedules per scenario (default: its own)")
    parser.add_argument("--mutant", action="append", default=[], help="only these (repeatable)")
    parser.add_argument("--quick", action="store_true", help="one mutant per operator")
    parser.add_argument(
        "--witness",
        action="store_true",
        help="run each survivor in its gap's witness worlds (the reference there first)",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    mutants = [m for m in MUTANTS if not args.mutant or m.name in args.mutant]
    if args.quick:
        firsts = {}
        for mutant in mutants:
            firsts.setdefault(mutant.operator, mutant)
        mutants = list(firsts.values())
    operators = len({m.operator for m in mutants})
    budget = f"{args.examples} schedules per scenario" if args.examples else "scenario budgets"
    print(
        f"bench_mutants: {len(mutants)} mutants, {operators} operators, {budget}, {args.jobs} jobs"
    )
    started = time.perf_counter()
    if args.witness:
        for line in witness_check():
            print(line, flush=True)

    def show(result: MutantResult) -> None:
        done = len(seen) + 1
        seen.append(result)
        if result.fate is Fate.KILLED:
            what = f"killed by {result.scenario} ({result.anomaly}) in {result.time_to_kill:.1f}s"
        else:
            what = result.reason  # "equivalent: <the argument>"
            if result.fate is Fate.SURVIVED:
                what = f"survived: {result.reason}"
            if result.witness:
                what += f"; {result.witness}"
        wall = time.perf_counter() - started
        print(f"[{done}/{len(mutants)} {wall:5.0f}s] {result.mutant}: {what}", flush=True)

    seen: list[MutantResult] = []
    report = run_mutants(
        mutants, examples=args.examples, jobs=args.jobs, witness=args.witness, on_result=show
    )
    print(
        f"\nmutation score: {report.killed}/{report.scored} = {report.score:.1%} of "
        f"non-equivalent mutants ({len(report.results) - report.scored} equivalent); "
        f"{report.elapsed:.0f}s wall, {args.jobs} jobs"
    )
    for result in report.survivors:
        print(f"  survivor {result.mutant}: {result.reason}")
        if result.witness:
            print(f"    {result.witness}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report.as_json(), indent=2) + "\n", encoding="utf-8")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
