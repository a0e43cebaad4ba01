"""The default ``check`` battery: which scenarios it runs, and the one loop that runs them.

``tokenrace check --engine`` and ``tokenrace mutate`` both run an engine
through ``run_battery``, so the mutation score measures exactly what
``check`` would catch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from simulator import Strategy

from ._campaign import EngineResult, search_engine
from ._engines import EngineEntry
from ._scenario_files import ReferenceClaim, Scenario, builtin_scenarios, load_scenario_file


def battery_scenarios(files: Sequence[Path | str] = ()) -> list[Scenario]:
    """The scenarios ``check`` holds an engine to: those the reference claims clean."""
    scenarios = [load_scenario_file(Path(path)) for path in files or builtin_scenarios()]
    return [scenario for scenario in scenarios if scenario.reference is ReferenceClaim.CLEAN]


def run_battery(
    entry: EngineEntry,
    scenarios: Sequence[Scenario],
    *,
    examples: int | None = None,
    seed: int | None = None,
    strategy: Strategy | None = None,
    database: str | None = None,
    stop: Callable[[EngineResult], bool] = lambda result: False,
) -> Iterator[tuple[Scenario, EngineResult]]:
    """Search ``entry`` in each scenario in turn, with the scenario's own budget unless
    overridden; ``stop`` ends the battery early after a result (``mutate``: the first kill)."""
    for scenario in scenarios:
        result = search_engine(
            scenario.name,
            scenario.world,
            entry,
            max_examples=examples or scenario.examples,
            seed=scenario.seed if seed is None else seed,
            strategy=strategy or scenario.strategy,
            database=database,
        )
        result = dataclasses.replace(result, title=scenario.title)
        yield scenario, result
        if stop(result):
            return
