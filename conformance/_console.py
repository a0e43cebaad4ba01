"""What the command line prints of a search's result: one block per cell, one table cell."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ._campaign import CampaignResult, EngineResult, Verdict, replay_command
from ._engines import Expectation

#: Anomalies printed per result; the report has them all.
MAX_ANOMALIES_SHOWN = 4


def print_result(
    console: Console, scenario: str, result: EngineResult, *, shown: int = MAX_ANOMALIES_SHOWN
) -> None:
    """One cell's block: scenario and engine, verdict, up to ``shown`` anomalies, replay line."""
    expected = "known bug" if result.expectation is Expectation.BUGGY else "expected clean"
    ok = "" if result.passed else " [bold red]NOT AS EXPECTED[/]"
    header = (
        f"[bold]{escape(result.scenario or scenario)}[/] · [bold]{escape(result.engine)}[/] "
        f"({expected}: {escape(result.summary)}){ok}"
    )
    if result.verdict is Verdict.RULED_OUT:
        console.print(f"{header}\n  [green]RULED OUT[/] ({result.elapsed:.1f}s): {result.bound}")
        return
    if result.verdict is Verdict.NOT_FOUND:
        console.print(
            f"{header}\n  [green]no fatal anomaly[/] in {result.examples} schedules "
            f"({result.elapsed:.1f}s); not found within this bound, not ruled out"
        )
        return
    assert result.schedule is not None
    if result.hang is not None:
        hang = escape(str(result.hang).removeprefix("hang: "))
        console.print(f"{header}\n  [bold red]HANG[/] ({result.elapsed:.1f}s): {hang}")
        _print_replay(console, "Schedule up to the step that blocked:", scenario, result)
        return
    if result.verdict is Verdict.OTHER_ANOMALY:
        console.print(
            f"{header}\n  [bold red]OTHER ANOMALY[/] in {result.examples} schedules "
            f"({result.elapsed:.1f}s): {escape(result.expectation_note())}"
        )
    else:
        console.print(
            f"{header}\n  [red]REPRODUCED[/] after "
            f"{plural(result.first_failure_at or 0, 'schedule')}"
            f" ({result.time_to_first_failure or 0:.2f}s); {result.examples} run in all, "
            f"shrinking included ({result.elapsed:.1f}s)"
        )
    for anomaly in result.anomalies[:shown]:
        console.print(f"  - {anomaly}", markup=False, soft_wrap=True)
    if len(result.anomalies) > shown:
        console.print(f"  … and {len(result.anomalies) - shown} more (see the report)")
    which = "Minimal schedule" if result.verdict is Verdict.REPRODUCED else "Schedule"
    switches = plural(result.preemptions, "context switch")
    _print_replay(console, f"{which} ({switches} beyond the default order):", scenario, result)


def _print_replay(console: Console, heading: str, scenario: str, result: EngineResult) -> None:
    assert result.schedule is not None
    console.print(f"  {heading}")
    command = replay_command(scenario, result.engine, result.schedule)
    console.print(f"      {command}", markup=False, soft_wrap=True)


def anomaly_column(result: EngineResult) -> str:
    """The anomaly a table names: the expected one where it shows; flagged when it does not."""
    first = result.headline
    text = first.kind.value if first is not None else "-"
    if result.verdict is Verdict.OTHER_ANOMALY and result.expected_anomaly is not None:
        text += f" (expected {result.expected_anomaly.value})"
    return text


def verdict_line(command: str, campaign: CampaignResult, report: Path) -> str:
    """The closing line: passed or not, how many, and what to do next."""
    cells = campaign.cells
    failed = [cell for cell in cells if not cell.passed]
    took = f"{campaign.elapsed:.1f}s"
    if not failed:
        return (
            f"[green]{command}: passed[/]: {plural(len(cells), 'cell')} as expected ({took}); "
            f"report: {report / 'index.html'}"
        )
    if any(cell.hang is not None for cell in failed):
        step = "an engine blocks in real time: see the hang's file and line above"
    elif any(cell.caught for cell in failed):
        step = "paste a replay line above to see the failing run step by step"
    else:
        step = "a known bug was not reproduced within the budget: raise --examples"
    return (
        f"[bold red]{command}: FAILED[/]: {len(failed)} of {plural(len(cells), 'cell')} not as "
        f"expected ({took}); {step}; report: {report / 'index.html'}"
    )


class Running:
    """The progress bar's label: the cells the workers hold now.

    Workers take cells in order, so the first ``jobs`` cells not yet done are
    the ones running.
    """

    def __init__(self, labels: Sequence[str], jobs: int | None) -> None:
        self.pending = list(labels)
        self.jobs = max(1, jobs or os.cpu_count() or 1)

    def done(self, label: str) -> str:
        if label in self.pending:
            self.pending.remove(label)
        return self.label()

    def label(self) -> str:
        names = self.pending[: self.jobs]
        if len(names) > 2:
            return f"{names[0]}, {names[1]} +{len(names) - 2}"
        return ", ".join(names) or "done"


def cell_label(scenario: str, engine: str) -> str:
    return f"{scenario} · {engine}"


def narrow(console: Console) -> bool:
    """Too narrow for every column: tables keep the ones that say what passed."""
    return console.width < 100


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "es" if noun.endswith("ch") else "s")


def progress_bar(console: Console, *, disable: bool = False) -> Progress:
    """The bar long runs show while cells finish: what, how many of how many, how long."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=disable,
        transient=True,
    )
