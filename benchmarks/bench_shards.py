"""Time to rule out the reference engine: unsharded exhaustive search against shards.

    python benchmarks/bench_shards.py [--quick] [--agents 3,4] [--depth 8] [--repeat 1]

For each world (``shared/linux/NxPROC/openai/none``, N agents in N processes,
one turn each) the reference engine is searched exhaustively to the end:

- **unsharded**: ``search_exhaustive`` as ``tokenrace run --strategy exhaustive``
  runs it (DPOR with sleep sets from the first step);
- **split 1/1**: the same split the shards use (every option above
  ``--depth``), unsharded: what splitting costs by itself;
- **2 and 4 shards**, each shard a ``Shard(I, N, depth)`` search, run one after
  the other in this process (*sequential*: the sum of their times, what one
  core spends; *slowest*: the longest shard, what N CI jobs wait for) and
  all at once as processes (*parallel*: wall clock with as many processes
  as shards, on however many cores there are).

Ratios are to the unsharded time (above 1: slower).  Schedules are summed over
the shards and must equal the split search's: the benchmark stops if not.
Imports public names only.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

from conformance import load_engine, load_scenario
from simulator import DEFAULT_SPLIT_DEPTH, RunResult, Shard, search_exhaustive, simulate

ENGINE = "reference"


def world(agents: int) -> str:
    return f"shared/linux/{agents}xproc/openai/none"


def search(label: str, shard: Shard | None) -> tuple[int, int, float, bool]:
    """One search of ``label``'s world to the end: schedules, pruned runs, seconds, done."""
    spec = load_scenario(label)
    entry = load_engine(ENGINE)

    def never(_: RunResult) -> bool:
        return False

    started = time.perf_counter()
    result = search_exhaustive(
        lambda chooser: simulate(spec, entry.factory(), chooser),
        never,
        max_schedules=10_000_000,
        max_seconds=3600.0,
        shard=shard,
    )
    return result.examples, result.pruned, time.perf_counter() - started, result.complete


def _search_shard(args: tuple[str, int, int, int]) -> tuple[int, int, float, bool]:
    label, index, count, depth = args
    return search(label, Shard(index, count, depth))


def parallel(label: str, count: int, depth: int) -> tuple[int, float]:
    """Every shard as its own process at once: schedules summed, wall-clock seconds."""
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=count) as pool:
        parts = list(
            pool.map(_search_shard, [(label, index, count, depth) for index in range(1, count + 1)])
        )
    return sum(part[0] for part in parts), time.perf_counter() - started


def measure(label: str, depth: int, repeat: int) -> list[list[str]]:
    def median_of(run: Callable[[], tuple[int, int, float, bool]]) -> tuple[int, int, float]:
        results = [run() for _ in range(repeat)]
        return results[0][0], results[0][1], statistics.median(r[2] for r in results)

    schedules, pruned, whole = median_of(lambda: search(label, None))
    rows = [[label, "unsharded", str(schedules), str(pruned), f"{whole:.2f}", "1.00"]]
    split_schedules, split_pruned, split = median_of(lambda: search(label, Shard(1, 1, depth)))
    rows.append(
        [
            label,
            f"split at {depth}, 1 shard",
            str(split_schedules),
            str(split_pruned),
            f"{split:.2f}",
            f"{split / whole:.2f}",
        ]
    )
    for count in (2, 4):
        parts = [search(label, Shard(index, count, depth)) for index in range(1, count + 1)]
        total = sum(part[0] for part in parts)
        if total != split_schedules or not all(part[3] for part in parts):
            sys.exit(f"{label}: {count} shards explored {total} schedules, not {split_schedules}")
        sequential = sum(part[2] for part in parts)
        slowest = max(part[2] for part in parts)
        spread = "/".join(str(part[0]) for part in parts)
        cut = sum(part[1] for part in parts)
        times = [parallel(label, count, depth)[1] for _ in range(repeat)]
        wall = statistics.median(times)
        rows += [
            [label, f"{count} shards, sequential", spread, str(cut), f"{sequential:.2f}",
             f"{sequential / whole:.2f}"],
            [label, f"{count} shards, slowest one", "", "", f"{slowest:.2f}",
             f"{slowest / whole:.2f}"],
            [label, f"{count} shards, parallel ({count} processes)", "", "", f"{wall:.2f}",
             f"{wall / whole:.2f}"],
        ]  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the 3-agent world only")
    parser.add_argument("--agents", default="3,4", help="agent counts (default 3,4)")
    parser.add_argument("--depth", type=int, default=DEFAULT_SPLIT_DEPTH, help="split depth")
    parser.add_argument("--repeat", type=int, default=1, help="median of this many runs")
    args = parser.parse_args(argv)
    counts = [3] if args.quick else [int(part) for part in args.agents.split(",")]
    print(
        f"bench_shards: reference engine, exhaustive search to the end; "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, split depth {args.depth}"
    )
    columns = ["world", "search", "schedules", "pruned", "seconds", "x unsharded"]
    rows = [row for agents in counts for row in measure(world(agents), args.depth, args.repeat)]
    widths = [max(len(column), *(len(row[i]) for row in rows)) for i, column in enumerate(columns)]
    print("  ".join(column.ljust(width) for column, width in zip(columns, widths, strict=True)))
    for row in rows:
        cells = [
            cell.rjust(width) if index >= 2 else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
