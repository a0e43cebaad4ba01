"""The matrix runner: cells of (scenario, engine), searched in parallel.

A cell names its scenario and engine by strings (a scenario name or file, a
built-in engine or ``module:attribute``), so a worker process can load it
on its own; every cell is seeded, so the verdicts do not depend on how many
workers ran them or in which order.
"""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from simulator import Shard, Strategy, WorldSpec

from ._campaign import CampaignResult, EngineResult, search_engine
from ._checker import AnomalyKind
from ._engines import Expectation, load_engine, with_lock
from ._hang import DEFAULT_HANG_AFTER
from ._scenario_files import ReferenceClaim, Scenario, builtin_scenarios, load_scenario_file
from ._scenarios import load_scenario
from ._worlds import GeneratedWorld


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
    world: WorldSpec | None = None  # a generated world (the matrix); else the named scenario
    lock: str = ""  # a lock kind for an engine that takes one (the matrix's lock axis)
    scope: str = ""  # likewise, a lock scope
    anomaly: AnomalyKind | None = None  # what a known bug must show (its scenario's anomaly)
    hang_after: float = DEFAULT_HANG_AFTER  # seconds of real time a schedule may take
    shard: Shard | None = None  # an exhaustive search's part (--shard I/N)


def default_cells(
    *,
    engines: Sequence[str] = (),
    scenarios: Sequence[str] = (),
    examples: int | None = None,
    strategy: Strategy | None = None,
    seed: int | None = None,
    hang_after: float | None = None,
) -> list[Cell]:
    """Every shipped scenario: its known-bug engine, and the reference where it claims clean.

    ``engines`` and ``scenarios`` filter (a scenario by name, or a file: a user's
    file is run as shipped ones are); ``examples``, ``strategy``, ``seed`` and
    ``hang_after`` override each scenario's own settings.
    """
    shipped = {path.resolve(): path for path in builtin_scenarios()}
    files = [Path(value) for value in scenarios if is_scenario_file(value)]
    chosen: list[tuple[str, Scenario]] = []
    for path in shipped.values():
        scenario = load_scenario_file(path)
        if (
            not scenarios
            or scenario.name in scenarios
            or path.resolve() in {file.resolve() for file in files}
        ):
            chosen.append((scenario.name, scenario))
    for file in files:  # a user's own, named as given so its replay line works from here
        if file.resolve() not in shipped:
            chosen.append((str(file), load_scenario_file(file)))
    cells = []
    for label, scenario in chosen:
        pairs = [(scenario.engine, Expectation.BUGGY if scenario.reproduces else Expectation.CLEAN)]
        if scenario.reference is ReferenceClaim.CLEAN:
            pairs.append(("reference", Expectation.CLEAN))
        for engine, expectation in pairs:
            buggy = expectation is Expectation.BUGGY
            if engines and engine not in engines:
                continue
            cells.append(
                Cell(
                    scenario=label,
                    title=scenario.title,
                    engine=engine,
                    expectation=expectation,
                    strategy=strategy or scenario.strategy,
                    examples=examples or scenario.examples,
                    seed=scenario.seed if seed is None else seed,
                    anomaly=scenario.anomaly if buggy else None,
                    hang_after=scenario.hang_after if hang_after is None else hang_after,
                )
            )
    return cells


def is_scenario_file(value: str) -> bool:
    """``--scenario`` names a file (else a scenario by name)."""
    return value.endswith(".toml") or Path(value).is_file()


def run_cell(cell: Cell) -> EngineResult:
    """Search one cell; safe to call in a worker process."""
    loaded = load_engine(cell.engine, hang_after=cell.hang_after)
    entry = dataclasses.replace(loaded, expectation=cell.expectation)
    if cell.lock or cell.scope:
        entry = with_lock(entry, cell.lock, cell.scope)
    result = search_engine(
        cell.scenario,
        cell.world if cell.world is not None else load_scenario(cell.scenario),
        entry,
        max_examples=cell.examples,
        seed=cell.seed,
        strategy=cell.strategy,
        database=cell.database,
        anomaly=cell.anomaly,
        hang_after=cell.hang_after,
        shard=cell.shard,
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
        pool = ProcessPoolExecutor(max_workers=jobs, initializer=_leave_ctrl_c_to_the_parent)
        try:
            futures = {pool.submit(run_cell, cell): index for index, cell in enumerate(cells)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                if on_result is not None:
                    on_result(results[futures[future]])
        except BaseException:  # Ctrl-C or a failed cell: stop the workers now, not at the end
            _stop(pool)
            raise
        pool.shutdown()
    ordered = tuple(results[index] for index in range(len(cells)))
    return CampaignResult(ordered, time.perf_counter() - started)


def _leave_ctrl_c_to_the_parent() -> None:
    """A worker ignores SIGINT: the parent stops it, so Ctrl-C shows no worker tracebacks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the workers that are running a cell.

    Every child process is ended, not only those the pool listed when this
    began: the pool may start a worker late, and one left running a cell
    keeps the interpreter from exiting until the cell is done.
    """
    pool.shutdown(wait=False, cancel_futures=True)
    workers = {
        *(getattr(pool, "_processes", None) or {}).values(),
        *multiprocessing.active_children(),
    }
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.join(timeout=1)
        if worker.is_alive():
            worker.kill()
            worker.join(timeout=1)


@dataclass(frozen=True, slots=True)
class MatrixAxes:
    """Every axis of the matrix; a cell is one value of each."""

    engines: tuple[str, ...] = ("reference",)
    layouts: tuple[str, ...] = ("shared",)
    locks: tuple[str, ...] = ("",)  # "" keeps each engine's own
    scopes: tuple[str, ...] = ("",)
    oses: tuple[str, ...] = ("linux",)
    agents: tuple[int, ...] = (2,)
    processes: tuple[str, ...] = ("separate",)  # separate | gateway | mixed
    populations: tuple[str, ...] = ("one",)  # one | two | bystander: the store's profiles
    skew: int = 0  # seconds the last agent's clock runs ahead
    torn: bool = False  # torn writes: a reader between a write's two halves sees a prefix
    policies: tuple[str, ...] = ("openai",)
    faults: tuple[str, ...] = ("none",)  # none | a fault kind (one per run)
    expiries: int = 1


def matrix_cells(
    axes: MatrixAxes,
    *,
    strategy: Strategy,
    examples: int,
    seed: int = 0,
    hang_after: float = DEFAULT_HANG_AFTER,
) -> list[Cell]:
    """The cross product of the axes, each cell a generated world and an engine."""
    cells = []
    combos = itertools.product(
        axes.engines,
        axes.layouts,
        axes.locks,
        axes.scopes,
        axes.oses,
        axes.agents,
        axes.processes,
        axes.policies,
        axes.faults,
        axes.populations,
    )
    for engine, layout, lock, scope, os_name, count, processes, policy, fault, people in combos:
        generated = GeneratedWorld(
            layout,
            os_name,
            count,
            processes,
            policy,
            fault,
            axes.expiries,
            people,
            axes.skew,
            axes.torn,
        )
        cells.append(
            Cell(
                scenario=generated.label,
                title=generated.title,
                engine=engine,
                expectation=Expectation.CLEAN,
                strategy=strategy,
                examples=examples,
                seed=seed,
                world=generated.world(),
                lock=lock,
                scope=scope,
                hang_after=hang_after,
            )
        )
    return cells
