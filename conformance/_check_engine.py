"""``tokenrace check --engine``: an engine against the battery and the corpus, in parallel.

With no ``--scenario``, the cells are every world of the battery (``_battery``)
and every shipped scenario whose guarantees the reference claims; with
``--scenario FILE`` (repeatable), those files only.  Every cell expects the
engine clean; the cells run ``--jobs`` at a time like ``run``'s.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ._battery import BATTERY, battery_cells
from ._campaign import EngineResult
from ._console import anomaly_column, print_result
from ._engines import Expectation, load_engine
from ._errors import EXIT_FAILED, EXIT_OK
from ._matrix import Cell, run_cells
from ._report import write_report
from ._scenario_files import ReferenceClaim, builtin_scenarios, load_scenario_file

__all__ = ["check_engine", "check_cells"]


def check_cells(args: argparse.Namespace) -> list[Cell]:
    """The battery and the claimed corpus scenarios, or the ``--scenario`` files."""
    files = args.scenarios or builtin_scenarios()
    cells = (
        []
        if args.scenarios
        else battery_cells(
            args.engine, examples=args.examples, seed=args.seed, strategy=args.strategy
        )
    )
    for path in files:
        scenario = load_scenario_file(Path(path))
        if scenario.reference is not ReferenceClaim.CLEAN:
            continue  # a guarantee the reference does not make is not asked of others
        cells.append(
            Cell(
                scenario=str(path) if args.scenarios else scenario.name,
                title=scenario.title,
                engine=args.engine,
                expectation=Expectation.CLEAN,
                strategy=args.strategy or scenario.strategy,
                examples=args.examples or scenario.examples,
                seed=scenario.seed if args.seed is None else args.seed,
                world=scenario.world,
            )
        )
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
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
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
