"""How long ``tokenrace check --engine`` takes: the battery and the corpus, per world.

    python benchmarks/bench_check.py [--engine reference] [--jobs 2]

The target (issue 18): the default battery finishes within 5 minutes on 2
cores.  This runs exactly the cells ``check --engine`` runs
(``conformance.check_battery``), ``--jobs`` at a time, and
prints each world's verdict, schedules and seconds, the slowest five, the
battery's and the corpus's share, and the total wall time.  Each world's time
is the CPU of its own worker; the total is wall time, so a busy machine shows
in the total first.
"""

from __future__ import annotations

import argparse
import time

from conformance import BATTERY, check_battery


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="reference")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    started = time.perf_counter()
    campaign = check_battery(args.engine, jobs=args.jobs)
    wall = time.perf_counter() - started
    cells = campaign.cells
    labels = {entry.label for entry in BATTERY}
    print(f"check --engine {args.engine}: {len(cells)} worlds, {args.jobs} jobs")
    print(f"{'world':48} {'verdict':11} {'schedules':>9} {'seconds':>8}")
    for result in campaign.cells:
        print(
            f"{result.scenario:48} {result.verdict.value:11} {result.examples:9d} "
            f"{result.elapsed:8.1f}"
        )
    battery = sum(r.elapsed for r in campaign.cells if r.scenario in labels)
    corpus = sum(r.elapsed for r in campaign.cells if r.scenario not in labels)
    slowest = sorted(campaign.cells, key=lambda r: -r.elapsed)[:5]
    print("slowest: " + ", ".join(f"{r.scenario} {r.elapsed:.1f}s" for r in slowest))
    print(f"worker seconds: battery {battery:.1f}, corpus {corpus:.1f}")
    failed = sum(not r.passed for r in campaign.cells)
    print(f"wall: {wall:.1f}s for {len(cells)} worlds ({failed} not as expected); target 300s")


if __name__ == "__main__":
    main()
