"""``tokenrace check --command CMD --fs``: search schedules of file steps and refreshes.

The search is exhaustive up to a bound on preemptions: the default schedule
first (``_fs_run``), then every schedule that departs from it at one decision,
then at two, … up to ``--preemptions``.  A departure is tried only where it
reverses a race: at decision *i* another agent *q* stands at a door whose step
conflicts (a common path, one of them changing it) with a step the run lets
through before *q*'s own — anywhere else the two orders give the same files.
Departures are added after the last one, so each schedule is run once, and
breadth first, so the first failure found has the fewest preemptions.  Its
schedule is run a second time to show the history repeats, and printed as
the line that runs it again (``--schedule``).  Nothing failing within the
bound: "ruled out", with the bound and the number of runs.

``--strategy random|pct`` samples schedules instead (``_fs_search``) and
shrinks the failure it finds; ``--kill AGENT@DECISION`` kills and restarts an
agent in every run (``_fs_run``).
"""

from __future__ import annotations

import argparse
import random
import shlex
import time
from collections.abc import Callable, Iterator

from rich.console import Console

from simulator import Strategy
from simulator.real import FuseUnavailable, fuse_unavailable

from ._campaign import CampaignResult, EngineResult, Verdict, invoked_as
from ._command import command_scenario
from ._engines import Expectation
from ._errors import EXIT_FAILED, EXIT_OK, ConformanceError
from ._fs_run import Deviation, FsRun, Kill, format_schedule, parse_kill, parse_schedule, run_fs
from ._fs_search import PctPicker, RandomPicker, counted, hot_paths, sample_schedules, shrink
from ._report import write_report
from ._validate import agent_names, command_argv

__all__ = ["add_fs_options", "check_fs", "race_reversals", "search_schedules"]


def add_fs_options(chk: argparse.ArgumentParser) -> None:
    chk.add_argument(
        "--fs",
        action="store_true",
        help="--command: run the agents on a scheduled filesystem (FUSE) and schedule every "
        "file step too (docs/fuse.md)",
    )
    chk.add_argument(
        "--schedule", help="--fs: run exactly this schedule, e.g. 12:nova (or 'default')"
    )
    chk.add_argument(
        "--preemptions",
        type=int,
        default=1,
        metavar="K",
        help="--fs: the search's bound: schedules departing from the default at most K times "
        "(default 1)",
    )
    chk.add_argument(
        "--runs", type=int, default=300, help="--fs: stop the search after this many runs"
    )
    chk.add_argument(
        "--depth",
        type=int,
        metavar="D",
        help="--fs --strategy pct: D-1 priority change points a run (default 3)",
    )


def race_reversals(run: FsRun) -> list[Deviation]:
    """The departures worth trying after ``run``'s last one: each reverses a race."""
    after = run.schedule[-1].index if run.schedule else -1
    found = []
    decisions = run.decisions
    for index in range(after + 1, len(decisions)):
        decision = decisions[index]
        for door in decision.doors:
            if door.agent == decision.chosen:
                continue
            for later in decisions[index:]:
                if later.chosen == door.agent:
                    break  # q's own step went through: the race, if any, was seen above
                passed = later.door(later.chosen)
                if passed is not None and passed.conflicts(door):
                    found.append(Deviation(index, door.agent))
                    break
    return found


def search_schedules(
    run_one: Callable[[tuple[Deviation, ...]], FsRun], bound: int, limit: int
) -> Iterator[FsRun]:
    """Runs breadth first by number of departures, up to ``bound`` departures, ``limit`` runs."""
    frontier: list[tuple[Deviation, ...]] = [()]
    runs = 0
    for depth in range(bound + 1):
        following: list[tuple[Deviation, ...]] = []
        for schedule in frontier:
            if runs >= limit:
                return
            run = run_one(schedule)
            runs += 1
            yield run
            if depth < bound:
                following += [(*schedule, step) for step in race_reversals(run)]
        frontier = following


def _strategy(args: argparse.Namespace) -> Strategy:
    strategy: Strategy = args.strategy or Strategy.EXHAUSTIVE
    if strategy is Strategy.HYPOTHESIS:
        raise ConformanceError("--strategy with --fs: exhaustive (default), random or pct")
    if args.schedule is not None and args.strategy is not None:
        raise ConformanceError("--schedule runs one schedule: no --strategy with it")
    if args.depth is not None and strategy is not Strategy.PCT:
        raise ConformanceError("--depth applies to --strategy pct")
    return strategy


def _kill(args: argparse.Namespace, agents: tuple[str, ...]) -> Kill | None:
    if args.kill is True:
        raise ConformanceError("--kill with --fs takes AGENT@DECISION, e.g. --kill nova@3")
    return parse_kill(args.kill, agents) if args.kill else None


def check_fs(args: argparse.Namespace, console: Console) -> int:
    """``check --command … --fs``: the search above, judged by the black-box checker."""
    command_argv(args.command)
    agents = agent_names(args.order or args.agents, "--order" if args.order else "--agents")
    for option, given in (("--fault", args.fault), ("--hold", args.hold)):
        if given:
            raise ConformanceError(f"{option} is not available with --fs yet")
    if not 0 <= args.preemptions <= 4:
        raise ConformanceError("--preemptions is 0-4 (each adds a factor of the run's length)")
    if args.runs < 1:
        raise ConformanceError("--runs must be at least 1")
    strategy, kill = _strategy(args), _kill(args, agents)
    depth = 3 if args.depth is None else args.depth
    if not 1 <= depth <= 10:
        raise ConformanceError("--depth is 1-10 (the priority change points of PCT, plus one)")
    reason = fuse_unavailable()
    if reason:
        raise FuseUnavailable(reason)
    scenario = command_scenario(
        args.command,
        agents,
        policy=args.policy,
        timeout=args.timeout,
        settle=args.settle,
        mirrored=args.layout == "mirrored",
    )
    started = time.perf_counter()
    seed = 0 if args.seed is None else args.seed

    def run_one(schedule: tuple[Deviation, ...]) -> FsRun:
        return run_fs(scenario, schedule, kill=kill)

    def run_with(picker: RandomPicker | PctPicker | None) -> FsRun:
        return run_fs(scenario, picker=picker, kill=kill)

    def pct(rng: random.Random, first: FsRun) -> RandomPicker | PctPicker:
        hot = hot_paths(first)
        return PctPicker(rng, agents, depth, max(1, counted(first, hot)), hot)

    def coin(rng: random.Random, first: FsRun) -> RandomPicker | PctPicker:
        return RandomPicker(rng, hot_paths(first), 1 / max(1, len(first.decisions)))

    killing = f", {kill.agent} killed before decision {kill.decision}" if kill else ""
    if args.schedule is not None:
        runs = iter([run_one(parse_schedule(args.schedule, agents))])
        bound = f"the schedule {args.schedule}"
    elif strategy is Strategy.EXHAUSTIVE:
        runs = search_schedules(run_one, args.preemptions, args.runs)
        times = "time" if args.preemptions == 1 else "times"
        bound = f"schedules departing from the default at most {args.preemptions} {times}"
    else:
        make = pct if strategy is Strategy.PCT else coin
        runs = sample_schedules(run_with, make, seed=seed, limit=args.runs)
        kind = f"PCT schedules of depth {depth}" if strategy is Strategy.PCT else "random schedules"
        bound = f"default schedule and {args.runs - 1} {kind} (seed {seed})"
    console.print(
        f"tokenrace check --command {args.command!r} --fs: agents {', '.join(agents)}; "
        f"{bound}{killing}, at racing file steps and refreshes"
    )
    failing: FsRun | None = None
    count = steps = 0
    last: FsRun | None = None
    for run in runs:
        count, last = count + 1, run
        steps += len(run.decisions)
        if run.diverged:
            console.print(f"  schedule {format_schedule(run.schedule)} diverged: {run.diverged}")
        if run.client.run.failed:
            failing = run
            break
    assert last is not None  # --runs is at least 1
    took = time.perf_counter() - started
    console.print(
        f"  {count} runs, {steps} steps in {took:.1f}s ({steps / max(took, 1e-9):.0f} steps/s "
        "end to end)"
    )
    shown, tries = failing or last, 0
    if failing is not None:
        found = format_schedule(failing.schedule)
        console.print(f"  [red]FAILED[/] schedule {found}: {len(failing.decisions)} steps")
        if args.schedule is None and strategy is not Strategy.EXHAUSTIVE and failing.schedule:
            shrunk, tries = shrink(run_one, failing)
            if shrunk.schedule != failing.schedule:
                console.print(f"  shrunk to {format_schedule(shrunk.schedule)} in {tries} runs")
            else:
                console.print(f"  shrinking: nothing smaller fails alike ({tries} runs)")
            failing = shrunk
        shown = failing
        for anomaly in failing.client.run.anomalies:
            console.print(f"      {anomaly}", markup=False, soft_wrap=True)
        again = run_one(failing.schedule)
        same = again.client.run.log == failing.client.run.log
        console.print(
            "  run again: the same history"
            if same
            else "  [yellow]run again: a different history[/] (the program depends on more "
            "than its files and the server: time, randomness, threads)"
        )
        console.print("  to run the failing schedule again:")
        line = _replay_line(args, agents, format_schedule(failing.schedule), kill)
        console.print(f"      {line}", markup=False, soft_wrap=True)
    elif args.schedule is None:
        complete = count < args.runs or strategy is not Strategy.EXHAUSTIVE
        sampled = "not found" if strategy is not Strategy.EXHAUSTIVE else "ruled out"
        verdict = sampled if complete else "not found (the search stopped at --runs)"
        console.print(f"  [green]{verdict}[/]: {count} runs cover the {bound}")
    else:
        console.print(f"  [green]ok[/] schedule {format_schedule(shown.schedule)}")
    elapsed = time.perf_counter() - started
    schedule = format_schedule(shown.schedule)
    result = EngineResult(
        engine=args.command,
        summary="a program started once per agent on a scheduled filesystem",
        expectation=Expectation.CLEAN,
        verdict=Verdict.REPRODUCED if failing else Verdict.NOT_FOUND,
        anomalies=shown.client.run.anomalies,
        schedule=None,  # a simulator schedule; this one is in the history's first line
        preemptions=len(shown.schedule),
        examples=count + tries,
        strategy=strategy,
        first_failure_at=count if failing else None,
        time_to_first_failure=elapsed if failing else None,
        elapsed=elapsed,
        history=f"schedule {schedule}{f' kill {kill}' if kill else ''}\n" + shown.client.run.log,
        bound=f"{count} runs: {bound}",
        scenario="command --fs",
        diagram=shown.client.diagram,
    )
    write_report(CampaignResult((result,), result.elapsed), args.report_dir)
    return EXIT_FAILED if failing else EXIT_OK


def _replay_line(
    args: argparse.Namespace, agents: tuple[str, ...], schedule: str, kill: Kill | None
) -> str:
    """The command that runs ``schedule`` again, with the options that shape a run."""
    line = f"{invoked_as()} check --command {shlex.quote(args.command)} --fs"
    line += f" --agents {','.join(agents)} --schedule {schedule}"
    if kill is not None:
        line += f" --kill {kill}"
    if args.policy != "openai":
        line += f" --policy {shlex.quote(args.policy)}"
    if args.layout != "shared":
        line += f" --layout {args.layout}"
    if args.timeout != 30.0:
        line += f" --timeout {args.timeout:g}"
    if args.settle != 2.0:
        line += f" --settle {args.settle:g}"
    return line
