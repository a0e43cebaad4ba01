"""Race scan cost: exploring one schedule against replaying it, as runs grow long.

    python benchmarks/bench_race_scan.py [--steps 500 2000 5000] [--repeat 5]

The exhaustive search records every step of a run and, at every new state,
looks for the latest earlier step that races with each agent's next step
(``docs/race-scan.md``).  That scan must cost about as much per step as
running the step does, or a long run explores in quadratic time.  Here two
agents loop over the shared store (``LoopingEngine``) until the run is about
``N`` steps long, then take a normal reference turn.  For each loop and
``N`` the table shows the time to replay the default schedule
(``ReplayChooser``), the time to explore one schedule (``search_exhaustive``
with ``max_schedules=1``: the same run, plus every option's footprint, the
race scan and the sleep sets at every state) and their ratio.  Times are CPU
seconds of this process (``time.process_time``, garbage collection
included), the median of ``--repeat`` runs, so that other load on a shared
machine blurs them less; ratios are what to read.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from refresh_engine import AgentContext, Flow, ReferenceEngine, ops, read_store
from simulator import (
    AgentSpec,
    Chooser,
    DefaultChooser,
    ReplayChooser,
    RunResult,
    StoreLayout,
    WorldSpec,
    search_exhaustive,
    simulate,
)


class LoopingEngine(ReferenceEngine):
    """The reference engine after ``loops`` rounds of a loop that reads the store or its inode.

    ``poll`` reads the whole store (open, read, close) and the clock, as an
    engine waiting for another process's refresh does; ``stat`` looks at the
    store's inode and the clock: the cheapest steps the simulator has, so the
    search's fixed cost per step weighs most against them.
    """

    name = "looping"

    def __init__(self, loops: int, loop: str) -> None:
        super().__init__()
        self.loops = loops
        self.loop = loop

    def access_token(self, ctx: AgentContext) -> Flow[str]:
        for _ in range(self.loops):
            if self.loop == "stat":
                yield from ops.stat(ctx.main_store)
            else:
                yield from read_store(ctx.main_store)
            yield from ops.now()
        return (yield from super().access_token(ctx))


LOOPS = ("stat", "poll")


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


def measure(loop: str, steps: int, repeat: int) -> tuple[int, float, float]:
    """Steps in the run, seconds to replay it, seconds to explore it."""
    spec = world(steps)

    def run(chooser: Chooser, loops: int) -> RunResult:
        return simulate(spec, LoopingEngine(loops, loop), chooser)

    base = run(DefaultChooser(), 0).steps
    per_loop = run(DefaultChooser(), 1).steps - base  # both agents, one round each
    loops = max(0, (steps - base) // per_loop)
    first = run(DefaultChooser(), loops)
    schedule, length = first.schedule, first.steps
    replay = median_time(repeat, lambda: run(ReplayChooser(schedule), loops))
    explore = median_time(
        repeat,
        lambda: search_exhaustive(
            lambda chooser: run(chooser, loops), lambda _: False, max_schedules=1
        ),
    )
    return length, replay, explore


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[500, 2000, 5000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"{'loop':>5} {'N':>6} {'steps':>6} {'replay s':>9} {'explore s':>10} {'ratio':>7}")
    for loop in LOOPS:
        for steps in args.steps:
            length, replay, explore = measure(loop, steps, args.repeat)
            ratio = explore / replay
            print(
                f"{loop:>5} {steps:>6} {length:>6} {replay:>9.3f} {explore:>10.3f} {ratio:>6.2f}x"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
