"""The matrix runner: cells of (scenario, engine), searched in parallel.

A cell names its scenario and engine by strings (a scenario name or file, a
built-in engine or ``module:attribute``), so a worker process can load it
on its own; every cell is seeded, so the verdicts do not depend on how many
workers ran them or in which order.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

from simulator import Strategy

from ._campaign import CampaignResult, EngineResult, search_engine
from ._engines import Expectation, load_engine
from ._scenario_files import ReferenceClaim, builtin_scenarios, load_scenario_file
from ._scenarios import load_scenario


@dataclass(frozen=True, slots=True)
class Cell:
    scenario: str  # a scenario name or file path
    title: str
    engine: str  # a built-in engine name or module:attribute
    expectation: Expectation
    strategy: Strategy
    examples: int
    seed: int
    database: str | None = None  # Hypothesis' example database directory, kept between runs


def default_cells(
    *,
    engines: Sequence[str] = (),
    scenarios: Sequence[str] = (),
    examples: int | None = None,
    strategy: Strategy | None = None,
    seed: int | None = None,
) -> list[Cell]:
    """Every shipped scenario: its known-bug engine, and the reference where it claims clean.

    ``engines`` and ``scenarios`` filter; ``examples``, ``strategy`` and ``seed``
    override each scenario's own settings.
    """
    cells = []
    for path in builtin_scenarios():
        scenario = load_scenario_file(path)
        if scenarios and scenario.name not in scenarios and str(path) not in scenarios:
            continue
        pairs = [(scenario.engine, Expectation.BUGGY if scenario.reproduces else Expectation.CLEAN)]
        if scenario.reference is ReferenceClaim.CLEAN:
            pairs.append(("reference", Expectation.CLEAN))
        for engine, expectation in pairs:
            if engines and engine not in engines:
                continue
            cells.append(
                Cell(
                    scenario=scenario.name,
                    title=scenario.title,
                    engine=engine,
                    expectation=expectation,
                    strategy=strategy or scenario.strategy,
                    examples=examples or scenario.examples,
                    seed=scenario.seed if seed is None else seed,
                )
            )
    return cells


def run_cell(cell: Cell) -> EngineResult:
    """Search one cell; safe to call in a worker process."""
    entry = dataclasses.replace(load_engine(cell.engine), expectation=cell.expectation)
    result = search_engine(
        cell.scenario,
        load_scenario(cell.scenario),
        entry,
        max_examples=cell.examples,
        seed=cell.seed,
        strategy=cell.strategy,
        database=cell.database,
    )
    return dataclasses.replace(result, title=cell.title)


def run_cells(
    cells: Sequence[Cell],
    *,
    jobs: int | None = None,
    on_result: Callable[[EngineResult], None] | None = None,
) -> CampaignResult:
    """Run every cell, ``jobs`` at a time (default: one per CPU); results in cell order."""
    started = time.perf_counter()
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(cells) or 1))
    results: dict[int, EngineResult] = {}
    if jobs == 1:
        for index, cell in enumerate(cells):
            results[index] = run_cell(cell)
            if on_result is not None:
                on_result(results[index])
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(run_cell, cell): index for index, cell in enumerate(cells)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                if on_result is not None:
                    on_result(results[futures[future]])
    ordered = tuple(results[index] for index in range(len(cells)))
    return CampaignResult(ordered, time.perf_counter() - started)
