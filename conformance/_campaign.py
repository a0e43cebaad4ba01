"""Campaigns: search each engine's schedules in a scenario and give it a verdict.

A known-bug engine passes when the search reproduces a fatal anomaly (of the
kind its scenario names, when it names one); a clean engine passes when none
shows up within the examples budget.  The verdict is honest about its bound:
"not found" says how many schedules were tried, never "ruled out".
"""

from __future__ import annotations

import dataclasses
import enum
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from simulator import (
    Chooser,
    ReplayChooser,
    RunResult,
    Schedule,
    SearchResult,
    Shard,
    Strategy,
    WorldSpec,
    search_exhaustive,
    search_hypothesis,
    search_pct,
    search_random,
    simulate,
)

from ._checker import Anomaly, AnomalyKind, check, fatal
from ._diagram import Diagram
from ._engines import EngineEntry, Expectation
from ._hang import DEFAULT_HANG_AFTER, Hang, HangError, limited


class Verdict(enum.Enum):
    REPRODUCED = "reproduced"  # a fatal anomaly, with its minimal schedule
    RULED_OUT = "ruled out"  # exhaustive search covered every schedule within its bound
    NOT_FOUND = "not found"  # no fatal anomaly within the schedules tried
    OTHER_ANOMALY = "other anomaly"  # fatal anomalies, but never the one the scenario names
    HANG = "hang"  # a schedule ran past the wall-clock limit: the engine blocks in real time


@dataclass(frozen=True, slots=True)
class EngineResult:
    engine: str
    summary: str
    expectation: Expectation
    verdict: Verdict
    anomalies: tuple[Anomaly, ...]  # of the minimal failing run; empty when not found
    schedule: Schedule | None  # the minimal failing schedule
    preemptions: int  # context switches the minimal schedule forces beyond the default order
    examples: int  # schedules run, shrinking included
    first_failure_at: int | None
    time_to_first_failure: float | None
    elapsed: float
    history: str  # the minimal failing run's history, tokens fingerprinted; "" when not found
    strategy: Strategy = Strategy.HYPOTHESIS
    bound: str = ""  # what the search covered, in words
    scenario: str = ""  # the scenario's name or file, as ``tokenrace replay --scenario`` takes it
    title: str = ""  # the scenario's one-line description
    failing_run: RunResult | None = None  # the minimal failing run itself, for reports
    expected_anomaly: AnomalyKind | None = None  # the kind a known bug must show, if named
    diagram: Diagram | None = None  # a real client's run, drawn (a simulated one draws its own)
    hang: Hang | None = None  # where the run that hung stopped (verdict ``hang``)
    complete: bool = False  # exhaustive: every schedule (a shard's: of its subtrees) covered
    pruned: int = 0  # exhaustive: runs cut short by sleep sets
    subtrees: tuple[int, int] = (0, 0)  # a shard's: its own subtrees, and all it met

    @property
    def passed(self) -> bool:
        if self.verdict is Verdict.HANG:  # never what anyone expects
            return False
        if self.expectation is Expectation.BUGGY:
            return self.verdict is Verdict.REPRODUCED
        return not self.caught

    @property
    def caught(self) -> bool:
        """A fatal anomaly or a hang showed up: there is a failing run to show and replay."""
        return self.verdict in (Verdict.REPRODUCED, Verdict.OTHER_ANOMALY, Verdict.HANG)

    @property
    def headline(self) -> Anomaly | None:
        """The fatal anomaly to name first: the expected kind where it shows, else the first."""
        found = fatal(self.anomalies)
        wanted = [anomaly for anomaly in found if anomaly.kind is self.expected_anomaly]
        shown = wanted or found
        return shown[0] if shown else None

    def expectation_note(self) -> str:
        """Why an ``other anomaly`` cell is not as expected, in one line; "" otherwise."""
        if self.verdict is not Verdict.OTHER_ANOMALY or self.expected_anomaly is None:
            return ""
        seen = sorted({anomaly.kind.value for anomaly in fatal(self.anomalies)})
        return (
            f"not as expected: the scenario names {self.expected_anomaly.value}, "
            f"but the engine was caught only by {', '.join(seen)}"
        )


@dataclass(frozen=True, slots=True)
class CampaignResult:
    """Every cell of a campaign: one engine searched in one scenario each."""

    cells: tuple[EngineResult, ...]
    elapsed: float

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.cells)


def replay(
    spec: WorldSpec,
    entry: EngineEntry,
    schedule: Schedule,
    *,
    hang_after: float = DEFAULT_HANG_AFTER,
) -> RunResult:
    """Run one schedule exactly; ``HangError`` when it runs past ``hang_after`` seconds."""
    run = limited(lambda chooser: simulate(spec, entry.factory(), chooser), hang_after)
    return run(ReplayChooser(schedule))


def has_fatal(result: RunResult) -> bool:
    return bool(fatal(check(result)))


def world_bound(spec: WorldSpec) -> str:
    """The world's size, as an exhaustive verdict states it."""
    counts = sorted({len(agent.turns) for agent in spec.agents})
    turns = f"{counts[0]} turns each" if len(counts) == 1 else f"{counts[0]}-{counts[-1]} turns"
    processes = len({spec.pid(index) for index in range(len(spec.agents))})
    profiles = len(spec.profiles)
    store = f", {profiles} profiles in the store" if profiles > 1 else ""
    return (
        f"{len(spec.agents)} agents in {processes} processes, {turns}{store}, "
        f"{spec.max_faults} faults, at most {spec.max_steps} steps"
    )


def search_world(
    spec: WorldSpec,
    entry: EngineEntry,
    strategy: Strategy,
    *,
    max_examples: int,
    seed: int,
    depth: int = 3,
    database: str | None = None,
    key: str = "",
    is_failure: Callable[[RunResult], bool] = has_fatal,
    hang_after: float = DEFAULT_HANG_AFTER,
    shard: Shard | None = None,
) -> SearchResult:
    """Search ``entry``'s schedules in ``spec`` with one strategy, until ``is_failure``;
    ``HangError`` when one schedule runs past ``hang_after`` seconds of real time;
    ``shard``: an exhaustive search's part (``simulator.Shard``)."""

    runs = 0

    def simulated(chooser: Chooser) -> RunResult:
        nonlocal runs
        runs += 1
        return simulate(spec, entry.factory(), chooser)

    run = limited(simulated, hang_after)
    try:
        return _search(
            spec, strategy, run, is_failure, max_examples, seed, depth, database, key, shard
        )
    except HangError as error:
        raise HangError(dataclasses.replace(error.hang, runs=runs)) from None


def _search(
    spec: WorldSpec,
    strategy: Strategy,
    run: Callable[[Chooser], RunResult],
    is_failure: Callable[[RunResult], bool],
    max_examples: int,
    seed: int,
    depth: int,
    database: str | None,
    key: str,
    shard: Shard | None = None,
) -> SearchResult:
    """One strategy's search through ``run``."""

    match strategy:
        case Strategy.HYPOTHESIS:
            faults = bool(spec.faults) and spec.max_faults > 0
            return search_hypothesis(
                run,
                is_failure,
                max_examples=max_examples,
                seed=seed,
                faults=faults,
                database=database,
                key=key,
            )
        case Strategy.RANDOM:
            return search_random(run, is_failure, max_examples=max_examples, seed=seed)
        case Strategy.PCT:
            names = [agent.name for agent in spec.agents]
            return search_pct(
                run, is_failure, names, depth=depth, max_examples=max_examples, seed=seed
            )
        case Strategy.EXHAUSTIVE:
            return search_exhaustive(
                run,
                is_failure,
                max_schedules=max_examples,
                describe=world_bound(spec),
                shard=shard,
            )


def search_engine(
    scenario: str,
    spec: WorldSpec,
    entry: EngineEntry,
    *,
    max_examples: int,
    seed: int,
    strategy: Strategy = Strategy.HYPOTHESIS,
    database: str | None = None,
    anomaly: AnomalyKind | None = None,
    hang_after: float = DEFAULT_HANG_AFTER,
    shard: Shard | None = None,
) -> EngineResult:
    """Search ``entry``'s schedules in ``spec`` and give it a verdict.

    ``database``: a directory where Hypothesis keeps failing schedules between runs.
    ``anomaly``: search for a fatal anomaly of this kind; a search that finds
    only other fatal anomalies ends ``other anomaly``, with the first such run.
    ``hang_after``: a schedule's wall-clock limit; the first past it ends ``hang``.
    ``shard``: search only this shard's part of an exhaustive search; a clean shard is
    ``not found`` (only ``merge-shards`` of every shard says ``ruled out``).
    """
    key = f"{scenario}|{entry.name}|{seed}"
    if anomaly is not None:
        key += f"|{anomaly.value}"
    other: list[RunResult] = []  # the first run caught only by other anomalies

    def is_failure(result: RunResult) -> bool:
        found = fatal(check(result))
        if anomaly is None or any(each.kind is anomaly for each in found):
            return bool(found)
        if found and not other:
            other.append(result)
        return False

    started = time.perf_counter()
    try:
        search = search_world(
            spec,
            entry,
            strategy,
            max_examples=max_examples,
            seed=seed,
            database=database,
            key=key,
            is_failure=is_failure,
            hang_after=hang_after,
            shard=shard,
        )
    except HangError as error:
        return hung(scenario, entry, strategy, error.hang, time.perf_counter() - started)
    failing = search.failing
    if failing is not None:
        verdict = Verdict.REPRODUCED
    elif other:  # caught, but only by anomalies other than the one the scenario names
        failing, verdict = other[0], Verdict.OTHER_ANOMALY
    else:
        ruled_out = search.complete and shard is None
        verdict = Verdict.RULED_OUT if ruled_out else Verdict.NOT_FOUND
    found = verdict is Verdict.REPRODUCED
    return EngineResult(
        engine=entry.name,
        summary=entry.summary,
        expectation=entry.expectation,
        verdict=verdict,
        anomalies=check(failing) if failing is not None else (),
        schedule=failing.schedule if failing is not None else None,
        preemptions=failing.preemptions if failing is not None else 0,
        examples=search.examples,
        first_failure_at=search.first_failure_at if found else None,
        time_to_first_failure=search.time_to_first_failure if found else None,
        elapsed=search.elapsed,
        history=failing.render() if failing is not None else "",
        strategy=strategy,
        bound=search.bound,
        scenario=scenario,
        failing_run=failing,
        expected_anomaly=anomaly,
        complete=search.complete,
        pruned=search.pruned,
        subtrees=search.subtrees,
    )


def hung(
    scenario: str, entry: EngineEntry, strategy: Strategy, hang: Hang, elapsed: float
) -> EngineResult:
    """The verdict of a search stopped by a schedule that ran past the limit."""
    return EngineResult(
        engine=entry.name,
        summary=entry.summary,
        expectation=entry.expectation,
        verdict=Verdict.HANG,
        anomalies=(),
        schedule=hang.schedule,
        preemptions=hang.schedule.context_switches,
        examples=hang.runs,
        first_failure_at=None,
        time_to_first_failure=None,
        elapsed=elapsed,
        history="",
        strategy=strategy,
        bound=str(hang),
        scenario=scenario,
        hang=hang,
    )


def run_campaign(
    scenario: str,
    spec: WorldSpec,
    entries: Sequence[EngineEntry],
    *,
    max_examples: int = 1000,
    seed: int = 0,
    strategy: Strategy = Strategy.HYPOTHESIS,
    on_result: Callable[[EngineResult], None] | None = None,
    anomaly: AnomalyKind | None = None,
    hang_after: float = DEFAULT_HANG_AFTER,
) -> CampaignResult:
    """Search each entry; ``anomaly`` is what the known-bug (``BUGGY``) entries must show."""
    started = time.perf_counter()
    results = []
    for entry in entries:
        result = search_engine(
            scenario,
            spec,
            entry,
            max_examples=max_examples,
            seed=seed,
            strategy=strategy,
            anomaly=anomaly if entry.expectation is Expectation.BUGGY else None,
            hang_after=hang_after,
        )
        results.append(result)
        if on_result is not None:
            on_result(result)
    return CampaignResult(tuple(results), time.perf_counter() - started)


def invoked_as() -> str:
    """``tokenrace`` as the user can start it again from here: the name where it is on
    ``PATH``, else the path it was started by (``.venv/bin/tokenrace`` when not activated)."""
    started = sys.argv[0] if sys.argv else ""
    if Path(started).name not in ("tokenrace", "tokenrace.exe"):
        return "tokenrace"  # python -m, the pytest plugin, a library call
    found = shutil.which("tokenrace")
    if found is not None and Path(found).resolve() == Path(started).resolve():
        return "tokenrace"
    return shlex.quote(started)


def replay_command(scenario: str, engine: str, schedule: Schedule) -> str:
    """The line a user pastes to replay a run (a matrix engine's ``[lock=...]`` quoted),
    from the directory it ran in."""
    return (
        f"{invoked_as()} replay --scenario {shlex.quote(scenario)} --engine {shlex.quote(engine)} "
        f"'{schedule}'"
    )
