"""``tokenrace mutate``: the default ``check`` battery run on every mutant, and the score.

Each mutant goes through ``run_battery``, the loop ``check --engine`` runs,
scenario by scenario, until one catches it (a fatal anomaly: killed) or
the battery ends (survived).  The mutation score is killed / (mutants -
equivalent survivors); an equivalent mutant that is killed proves its
argument wrong and counts as killed.
"""

from __future__ import annotations

import argparse
import enum
import json
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from simulator import Strategy

from ._battery import battery_scenarios, run_battery
from ._campaign import search_world
from ._check_engine import scenario_files
from ._engines import BUILTIN_ENGINES, EngineEntry, Expectation
from ._errors import EXIT_FAILED, EXIT_OK, ConformanceError
from ._mutant_witness import lock_holders_overlap, witnesses
from ._mutants import MUTANTS, Gap, Mutant, mutant_named
from ._scenario_files import Scenario


class Fate(enum.Enum):
    KILLED = "killed"
    SURVIVED = "survived"
    EQUIVALENT = "equivalent"  # survived, and argued equivalent


@dataclass(frozen=True, slots=True)
class MutantResult:
    mutant: str
    operator: str
    fate: Fate
    scenario: str = ""  # the scenario that killed it
    anomaly: str = ""  # the fatal anomaly it was caught by
    time_to_kill: float = 0.0  # battery seconds until the first failing schedule
    elapsed: float = 0.0  # battery seconds spent on it in all (shrinking included)
    schedules: int = 0
    reason: str = ""  # why it survived: the dimension it needs, or the equivalence argument
    witness: str = ""  # a survivor in its gap's witness world: what happened there

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "fate": self.fate.value}


@dataclass(frozen=True, slots=True)
class MutationReport:
    results: tuple[MutantResult, ...]
    elapsed: float

    @property
    def killed(self) -> int:
        return sum(result.fate is Fate.KILLED for result in self.results)

    @property
    def scored(self) -> int:
        """Mutants that count: every one but the equivalent survivors."""
        return sum(result.fate is not Fate.EQUIVALENT for result in self.results)

    @property
    def score(self) -> float:
        return self.killed / self.scored if self.scored else 1.0

    @property
    def survivors(self) -> tuple[MutantResult, ...]:
        return tuple(result for result in self.results if result.fate is not Fate.KILLED)

    def as_json(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 4),
            "killed": self.killed,
            "scored": self.scored,
            "mutants": len(self.results),
            "operators": len({result.operator for result in self.results}),
            "elapsed": round(self.elapsed, 1),
            "results": [result.as_json() for result in self.results],
        }


def mutant_entry(mutant: Mutant) -> EngineEntry:
    return EngineEntry(f"mutant:{mutant.name}", mutant.build, Expectation.CLEAN, mutant.description)


def run_mutant(
    mutant: Mutant,
    scenarios: Sequence[Scenario],
    *,
    examples: int | None = None,
    seed: int | None = None,
    strategy: Strategy | None = None,
    witness: bool = False,
) -> MutantResult:
    """The battery on one mutant, until the first scenario that catches it; a survivor,
    with ``witness``, is also run in its gap's witness worlds."""
    spent, schedules = 0.0, 0
    battery = run_battery(
        mutant_entry(mutant),
        scenarios,
        examples=examples,
        seed=seed,
        strategy=strategy,
        stop=lambda result: result.caught,
    )
    for scenario, result in battery:
        schedules += result.examples
        if result.caught:
            headline = result.headline
            return MutantResult(
                mutant.name,
                mutant.operator.value,
                Fate.KILLED,
                scenario=scenario.name,
                anomaly=headline.kind.value if headline is not None else "",
                time_to_kill=spent + (result.time_to_first_failure or result.elapsed),
                elapsed=spent + result.elapsed,
                schedules=schedules,
            )
        spent += result.elapsed
    if mutant.equivalent:
        fate, reason = Fate.EQUIVALENT, f"equivalent: {mutant.equivalent}"
    else:
        fate = Fate.SURVIVED
        reason = f"needs {mutant.gap.value}" if mutant.gap.value else "unexplained: investigate"
        reason += f" ({mutant.why})" if mutant.why else ""
    return MutantResult(
        mutant.name,
        mutant.operator.value,
        fate,
        elapsed=spent,
        schedules=schedules,
        reason=reason,
        witness=in_witness_worlds(mutant, scenarios) if witness and not mutant.equivalent else "",
    )


def in_witness_worlds(mutant: Mutant, battery: Sequence[Scenario]) -> str:
    """What the witness worlds of the mutant's gap say of it, in one line."""
    worlds = witnesses(battery, mutant.gap)
    if not worlds:
        return "no witness world: the model cannot express this dimension yet"
    for scenario in worlds:
        found = witness_search(mutant_entry(mutant), scenario, mutant.gap)
        if found is not None:
            kind, seconds = found
            return f"killed in witness world {scenario.name} ({kind}) in {seconds:.1f}s"
    return "not killed in " + ", ".join(scenario.name for scenario in worlds)


def witness_search(entry: EngineEntry, scenario: Scenario, gap: Gap) -> tuple[str, float] | None:
    """Search ``entry`` in a witness world: (what caught it, seconds), or None.

    The mutual-exclusion witness is judged by ``lock_holders_overlap``; the others by
    the checker, as ``check`` judges."""
    if gap is Gap.MUTUAL_EXCLUSION:
        search = search_world(
            scenario.world,
            entry,
            scenario.strategy,
            max_examples=scenario.examples,
            seed=scenario.seed,
            is_failure=lock_holders_overlap,
        )
        if search.failing is None:
            return None
        return "two lock holders at once", search.time_to_first_failure or search.elapsed
    for _, result in run_battery(entry, [scenario]):
        if result.caught:
            kind = result.headline.kind.value if result.headline is not None else "?"
            return kind, result.time_to_first_failure or result.elapsed
    return None


@dataclass(frozen=True, slots=True)
class _Job:
    name: str
    files: tuple[str, ...]
    examples: int | None
    seed: int | None
    witness: bool


def _run_job(job: _Job) -> MutantResult:
    scenarios = battery_scenarios(job.files)
    mutant = mutant_named(job.name)
    return run_mutant(mutant, scenarios, examples=job.examples, seed=job.seed, witness=job.witness)


def run_mutants(
    mutants: Sequence[Mutant] = MUTANTS,
    *,
    files: Sequence[str] = (),
    examples: int | None = None,
    seed: int | None = None,
    jobs: int = 1,
    witness: bool = False,
    on_result: Callable[[MutantResult], None] | None = None,
) -> MutationReport:
    """Run the battery on each mutant (``jobs`` at once) and score it; ``witness``: run
    each survivor in its gap's witness worlds too (see ``witness_check`` for the reference)."""
    started = time.perf_counter()
    work = [_Job(mutant.name, tuple(files), examples, seed, witness) for mutant in mutants]
    results: list[MutantResult] = []
    outcomes: Iterator[MutantResult]
    if jobs <= 1:
        outcomes = map(_run_job, work)
        for result in outcomes:
            results.append(result)
            if on_result is not None:
                on_result(result)
    else:
        with ProcessPoolExecutor(jobs) as pool:
            for result in pool.map(_run_job, work):
                results.append(result)
                if on_result is not None:
                    on_result(result)
    return MutationReport(tuple(results), time.perf_counter() - started)


# ---------------------------------------------------------------------- command line


def add_mutate_parser(commands: Any) -> None:
    mut = commands.add_parser(
        "mutate", help="run the default check battery on every mutant of the reference engine"
    )
    mut.add_argument(
        "--mutant",
        action="append",
        dest="mutants",
        metavar="NAME",
        help="only this mutant, or every mutant of an operator (repeatable; default: all)",
    )
    mut.add_argument("--list", action="store_true", help="list the mutants and stop")
    mut.add_argument(
        "--scenario",
        action="append",
        dest="scenarios",
        metavar="NAME|FILE",
        help="a shipped scenario's name or a scenario file (repeatable; default: the battery "
        "and the claimed corpus)",
    )
    mut.add_argument("--examples", type=int, help="schedules per scenario (default: its own)")
    mut.add_argument("--seed", type=int, help="search seed (default: each scenario's own)")
    mut.add_argument("--jobs", type=int, default=1, help="mutants run at once (default 1)")
    mut.add_argument("--json", type=Path, help="also write the results as JSON here")
    mut.add_argument(
        "--witness",
        action="store_true",
        help="run each survivor in its gap's witness worlds (and the reference there first)",
    )


def select(names: Sequence[str]) -> list[Mutant]:
    if not names:
        return list(MUTANTS)
    chosen = [m for m in MUTANTS if m.name in names or m.operator.value in names]
    known = {m.name for m in MUTANTS} | {m.operator.value for m in MUTANTS}
    unknown = sorted(set(names) - known)
    if unknown:
        raise ConformanceError(
            f"unknown mutant or operator {unknown[0]!r}: see tokenrace mutate --list"
        )
    return chosen


def mutate_command(args: argparse.Namespace, console: Console) -> int:
    mutants = select(args.mutants or ())
    if args.list:
        for mutant in mutants:
            flag = " (argued equivalent)" if mutant.equivalent else ""
            console.print(f"{mutant.name:40} {mutant.description}{flag}", markup=False)
        return EXIT_OK
    files = [str(path) for path in scenario_files(args.scenarios or ())]
    count = len(battery_scenarios(files))
    console.print(
        f"tokenrace mutate: {len(mutants)} mutants x {count} scenarios, {args.jobs} jobs",
        markup=False,
    )
    done = 0

    def show(result: MutantResult) -> None:
        nonlocal done
        done += 1
        where = (
            f"by {result.scenario} ({result.anomaly}) in {result.time_to_kill:.1f}s"
            if result.fate is Fate.KILLED
            else result.reason.removeprefix("equivalent: ")
            + (f"; {result.witness}" if result.witness else "")
        )
        console.print(
            f"[{done}/{len(mutants)}] {result.mutant}: {result.fate.name} {where} "
            f"[{result.elapsed:.1f}s]",
            markup=False,
            soft_wrap=True,
        )

    if args.witness:
        for line in witness_check(battery_scenarios(files)):
            console.print(line, markup=False)
    report = run_mutants(
        mutants,
        files=files,
        examples=args.examples,
        seed=args.seed,
        jobs=args.jobs,
        witness=args.witness,
        on_result=show,
    )
    console.print(
        f"mutation score {report.killed}/{report.scored} = {report.score:.1%} "
        f"({len(report.results) - report.scored} equivalent left out); "
        f"{report.elapsed:.0f}s in all",
        markup=False,
    )
    if args.json is not None:
        args.json.write_text(json.dumps(report.as_json(), indent=2) + "\n", encoding="utf-8")
    return EXIT_OK if not [r for r in report.results if r.fate is Fate.SURVIVED] else EXIT_FAILED


def witness_check(battery: Sequence[Scenario] = ()) -> list[str]:
    """The reference in every witness world: a witness counts only where it stays clean."""
    battery = battery or battery_scenarios()
    lines = []
    reference = BUILTIN_ENGINES["reference"]
    for gap in Gap:
        for scenario in witnesses(battery, gap):
            if witness_search(reference, scenario, gap) is not None:
                raise ConformanceError(
                    f"the reference fails witness world {scenario.name}: not a witness"
                )
            lines.append(f"witness world {scenario.name}: the reference stays clean")
    return lines
