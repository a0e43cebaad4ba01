"""``tokenrace check --engine``: an engine against the battery and the corpus, in parallel.

With no ``--scenario``, the cells are every world of the battery (``_battery``)
and every shipped scenario whose guarantees the reference claims; with
``--scenario FILE`` (repeatable), those files only.  Every cell expects the
engine clean; the cells run ``--jobs`` at a time like ``run``'s.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from simulator import Strategy

from ._battery import BATTERY, battery_scenarios
from ._campaign import CampaignResult, EngineResult
from ._console import (
    Running,
    anomaly_column,
    cell_label,
    narrow,
    plural,
    print_result,
    progress_bar,
    verdict_line,
)
from ._engines import Expectation, load_engine
from ._errors import EXIT_FAILED, EXIT_OK
from ._hang import DEFAULT_HANG_AFTER
from ._matrix import Cell, run_cells
from ._report import write_report
from ._scenario_files import SCENARIO_DIR, Scenario, builtin_scenarios, load_scenario_file
from ._shards import shard_cells, shard_of, write_shard
from ._validate import check_names

__all__ = ["check_battery", "check_cells", "check_engine"]


def check_cells(
    engine: str,
    *,
    scenarios: Sequence[Path | str] = (),
    examples: int | None = None,
    seed: int | None = None,
    strategy: Strategy | None = None,
    database: str | None = None,
    hang_after: float | None = None,
) -> list[Cell]:
    """A clean-expected cell of ``engine`` in each of ``battery_scenarios``: the battery's
    worlds and the claimed corpus, or the ``scenarios`` files' claimed scenarios; each
    world's own search settings unless overridden."""
    return [
        Cell(
            scenario=_label(scenario),
            title=scenario.title,
            engine=engine,
            expectation=Expectation.CLEAN,
            strategy=strategy or scenario.strategy,
            examples=examples or scenario.examples,
            seed=scenario.seed if seed is None else seed,
            database=database,
            world=scenario.world,
            hang_after=scenario.hang_after if hang_after is None else hang_after,
        )
        for scenario in battery_scenarios(scenarios)
    ]


def _label(scenario: Scenario) -> str:
    """What a replay line names: a shipped scenario by name, a user's file by its path."""
    shipped = scenario.path is None or scenario.path.resolve().parent == SCENARIO_DIR.resolve()
    return scenario.name if shipped else str(scenario.path)


def scenario_files(wanted: Sequence[str]) -> list[Path]:
    """``--scenario`` values as files: a file as given, a shipped scenario by its name."""
    by_name = {load_scenario_file(path).name: path for path in builtin_scenarios()}
    files = []
    for value in wanted:
        if value in by_name and not Path(value).is_file():
            files.append(by_name[value])
        elif value.endswith(".toml") or Path(value).exists():
            files.append(Path(value))
        else:
            check_names("--scenario", [value], by_name)
    return files


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
    cells = check_cells(engine, examples=examples, seed=seed, strategy=strategy)
    return run_cells(cells, jobs=jobs, on_result=on_result)


def check_engine(args: argparse.Namespace, console: Console) -> int:
    """Run every cell; print each failure with its replay line, then one table."""
    limit = DEFAULT_HANG_AFTER if args.hang_after is None else args.hang_after
    load_engine(args.engine, hang_after=limit)  # a bad engine: one line, exit 2, at once
    shard = shard_of(args)
    cells = check_cells(
        args.engine,
        scenarios=scenario_files(args.scenarios or ()),
        examples=args.examples,
        seed=args.seed,
        strategy=args.strategy,
        database=args.hypothesis_db or None,
        hang_after=args.hang_after,
    )
    cells = shard_cells(cells, shard)
    dimensions = {entry.label: entry.dimension for entry in BATTERY}
    battery = sum(cell.scenario in dimensions for cell in cells)
    console.print(
        f"tokenrace check --engine {escape(args.engine)}: {plural(len(cells), 'world')} "
        f"({battery} of the battery, {len(cells) - battery} shipped scenarios)"
    )
    now = Running([cell_label(cell.scenario, cell.engine) for cell in cells], args.jobs)
    with progress_bar(console) as progress:
        task = progress.add_task(now.label(), total=len(cells))

        def show(result: EngineResult) -> None:
            label = now.done(cell_label(result.scenario, result.engine))
            progress.update(task, advance=1, description=label)
            if not result.passed:
                print_result(console, result.scenario, result)

        campaign = run_cells(cells, jobs=args.jobs, on_result=show)
    table = Table(title=f"tokenrace check --engine {escape(args.engine)}")
    columns = ("world", "what it varies", "verdict", "anomaly", "schedules", "result")
    kept = ("world", "verdict", "anomaly", "result") if narrow(console) else columns
    for column in kept:
        table.add_column(column, overflow="fold", no_wrap=column in ("verdict", "result"))
    for result in campaign.cells:
        row = dict(
            zip(
                columns,
                (
                    escape(result.scenario),
                    escape(dimensions.get(result.scenario, "shipped scenario")),
                    result.verdict.value,
                    anomaly_column(result),
                    str(result.examples),
                    "[green]pass[/]" if result.passed else "[bold red]FAIL[/]",
                ),
                strict=True,
            )
        )
        table.add_row(*(row[column] for column in kept))
    console.print(table)
    write_report(campaign, args.report_dir)
    if shard is not None:  # what the shard file holds: not the whole search's verdict
        return write_shard(campaign, cells, shard, "check", args.shard_output, console)
    console.print(verdict_line("tokenrace check", campaign, args.report_dir))
    return EXIT_OK if campaign.passed else EXIT_FAILED
