"""``tokenrace check --engine``: an engine against the battery and the corpus, in parallel.

With no ``--scenario``, the cells are every world of the battery (``_battery``)
and every shipped scenario whose guarantees the reference claims; with
``--scenario FILE`` (repeatable), those files only.  Every cell expects the
engine clean; the cells run ``--jobs`` at a time like ``run``'s.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from simulator import Strategy

from ._battery import BATTERY, battery_scenarios
from ._campaign import CampaignResult, EngineResult
from ._console import anomaly_column, print_result, progress_bar
from ._engines import Expectation, load_engine
from ._errors import EXIT_FAILED, EXIT_OK
from ._matrix import Cell, run_cells
from ._report import write_report

__all__ = ["check_battery", "check_battery_cells", "check_cells", "check_engine"]


def check_battery_cells(engine: str) -> list[Cell]:
    """The cells ``check --engine ENGINE`` runs, with each world's own settings."""
    options = argparse.Namespace(
        engine=engine, scenarios=None, examples=None, seed=None, strategy=None, hypothesis_db=None
    )
    return check_cells(options)


def check_battery(
    engine: str,
    *,
    jobs: int | None = None,
    examples: int | None = None,
    seed: int | None = None,
    strategy: Strategy | None = None,
    on_result: Callable[[EngineResult], None] | None = None,
) -> CampaignResult:
    """What ``tokenrace check --engine ENGINE`` runs, as a campaign: the battery and the
    claimed corpus, ``jobs`` worlds at a time."""
    cells = check_battery_cells(engine)
    cells = [
        dataclasses.replace(
            cell,
            examples=examples or cell.examples,
            seed=cell.seed if seed is None else seed,
            strategy=strategy or cell.strategy,
        )
        for cell in cells
    ]
    return run_cells(cells, jobs=jobs, on_result=on_result)


def check_cells(args: argparse.Namespace) -> list[Cell]:
    """A clean-expected cell of the engine in each of ``battery_scenarios``: the battery's
    worlds and the claimed corpus, or the ``--scenario`` files' claimed scenarios."""
    cells = [
        Cell(
            scenario=str(scenario.path) if args.scenarios else scenario.name,
            title=scenario.title,
            engine=args.engine,
            expectation=Expectation.CLEAN,
            strategy=args.strategy or scenario.strategy,
            examples=args.examples or scenario.examples,
            seed=scenario.seed if args.seed is None else args.seed,
            world=scenario.world,
        )
        for scenario in battery_scenarios(args.scenarios or ())
    ]
    if args.hypothesis_db:
        cells = [dataclasses.replace(cell, database=args.hypothesis_db) for cell in cells]
    return cells


def check_engine(args: argparse.Namespace, console: Console) -> int:
    """Run every cell; print each failure with its replay line, then one table."""
    load_engine(args.engine)  # a bad engine: one line, exit 2, before any worker starts
    cells = check_cells(args)
    dimensions = {entry.label: entry.dimension for entry in BATTERY}
    console.print(
        f"tokenrace check --engine {escape(args.engine)}: {len(cells)} worlds "
        f"({sum(cell.scenario in dimensions for cell in cells)} of the battery, the rest "
        "shipped scenarios)"
    )
    with progress_bar(console) as progress:
        task = progress.add_task("worlds", total=len(cells))

        def show(result: EngineResult) -> None:
            progress.advance(task)
            if not result.passed:
                print_result(console, result.scenario, result)

        campaign = run_cells(cells, jobs=args.jobs, on_result=show)
    table = Table(title=f"tokenrace check --engine {escape(args.engine)}")
    for column in ("world", "what it varies", "verdict", "anomaly", "schedules", "ok"):
        table.add_column(column, overflow="fold")
    for result in campaign.cells:
        table.add_row(
            escape(result.scenario),
            escape(dimensions.get(result.scenario, "shipped scenario")),
            result.verdict.value,
            anomaly_column(result),
            str(result.examples),
            "[green]yes[/]" if result.passed else "[bold red]NO[/]",
        )
    console.print(table)
    write_report(campaign, args.report_dir)
    failed = sum(not result.passed for result in campaign.cells)
    verdict = f"[bold red]{failed} of {len(cells)} failed[/]" if failed else "[green]all clean[/]"
    console.print(f"{verdict} ({campaign.elapsed:.1f}s); report: {args.report_dir / 'index.html'}")
    return EXIT_FAILED if failed else EXIT_OK
