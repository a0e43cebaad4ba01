"""Race scan cost: exploring one schedule against replaying it, as runs grow long.

    python benchmarks/bench_race_scan.py [--steps 500 2000 5000] [--repeat 3]

The exhaustive search records every step of a run and, at every new state,
looks for the latest earlier step that races with each agent's next step
(``docs/race-scan.md``).  That scan must cost about as much per step as
running the step does, or a long run explores in quadratic time.  Here two
agents each loop ``stat`` + ``now`` over the shared store for about half of
``N`` steps before a normal reference turn; the table shows, for each ``N``,
the median time to replay the default schedule, the median time to explore
one schedule (``search_exhaustive`` with ``max_schedules=1``: the same run
plus the race scan at every state) and their ratio.  Times are CPU seconds
of this process (``time.process_time``, garbage collection included), the
median of ``--repeat`` runs, so that other load on a shared machine blurs
them less; ratios are what to read.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from refresh_engine import AgentContext, Flow, ReferenceEngine, ops
from simulator import (
    AgentSpec,
    DefaultChooser,
    RunResult,
    StoreLayout,
    WorldSpec,
    search_exhaustive,
    simulate,
)


class LoopingEngine(ReferenceEngine):
    """The reference engine after ``loops`` rounds of looking at the store and the clock."""

    name = "looping"

    def __init__(self, loops: int) -> None:
        super().__init__()
        self.loops = loops

    def access_token(self, ctx: AgentContext) -> Flow[str]:
        for _ in range(self.loops):
            yield from ops.stat(ctx.main_store)
            yield from ops.now()
        return (yield from super().access_token(ctx))


def world(steps: int) -> WorldSpec:
    return WorldSpec(
        agents=(AgentSpec("atlas", (3600.0,)), AgentSpec("nova", (3600.0,))),
        layout=StoreLayout.SHARED,
        max_steps=steps * 2 + 1000,
    )


def median_time(repeat: int, job: Callable[[], object]) -> float:
    samples = []
    for _ in range(repeat):
        started = time.process_time()
        job()
        samples.append(time.process_time() - started)
    return statistics.median(samples)


def measure(steps: int, repeat: int) -> tuple[int, float, float]:
    """Steps in the run, seconds to replay it, seconds to explore it."""
    spec = world(steps)
    loops = steps // 4  # two agents, two effects a loop

    def run(chooser: object) -> RunResult:
        return simulate(spec, LoopingEngine(loops), chooser)  # type: ignore[arg-type]

    length = run(DefaultChooser()).steps
    replay = median_time(repeat, lambda: run(DefaultChooser()))
    explore = median_time(repeat, lambda: search_exhaustive(run, lambda _: False, max_schedules=1))
    return length, replay, explore


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[500, 2000, 5000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"{'N':>6} {'steps':>6} {'replay s':>9} {'explore s':>10} {'ratio':>7}")
    for steps in args.steps:
        length, replay, explore = measure(steps, args.repeat)
        ratio = explore / replay
        print(f"{steps:>6} {length:>6} {replay:>9.3f} {explore:>10.3f} {ratio:>6.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
