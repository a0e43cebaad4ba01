"""What the command line prints of a search's result: one block per cell, one table cell."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ._campaign import EngineResult, Verdict, replay_command
from ._engines import Expectation

#: Anomalies printed per result; the report has them all.
MAX_ANOMALIES_SHOWN = 4


def print_result(console: Console, scenario: str, result: EngineResult) -> None:
    expected = "known bug" if result.expectation is Expectation.BUGGY else "expected clean"
    header = f"[bold]{escape(result.engine)}[/] ({expected}: {escape(result.summary)})"
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
        hang = escape(str(result.hang))
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
    shown = result.anomalies[:MAX_ANOMALIES_SHOWN]
    for anomaly in shown:
        console.print(f"  - {anomaly}", markup=False, soft_wrap=True)
    if len(result.anomalies) > len(shown):
        console.print(f"  … and {len(result.anomalies) - len(shown)} more (see the report)")
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
