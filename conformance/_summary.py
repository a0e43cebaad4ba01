"""The verdict matrix, and ``summary.md``: the same table as the HTML report, for GitHub.

The matrix has a row per scenario and a column for the scenario's known-bug
engine plus one per clean engine (the reference, a user's engine), since each
scenario has its own known bug.  ``summary.md`` is written to be read where
CI shows Markdown (a job summary, a pull-request comment); ``publish`` puts the
timing-free part of it between two markers of a committed file, so the
published matrix changes only when a verdict does
(``python -m conformance._publish`` regenerates ``reports/README.md``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._campaign import CampaignResult, EngineResult, Verdict, replay_command
from ._engines import Expectation

KNOWN_BUG = "known-bug engine"
BEGIN, END = "<!-- tokenrace:matrix:begin -->", "<!-- tokenrace:matrix:end -->"
ICONS = {
    Verdict.REPRODUCED: "🔴",
    Verdict.RULED_OUT: "🟢",
    Verdict.NOT_FOUND: "⚪",
    Verdict.OTHER_ANOMALY: "🟠",
    Verdict.HANG: "⏳",
}
LEGEND = (
    "🔴 reproduced: a fatal anomaly, with a minimal schedule that replays it · "
    "🟢 ruled out: no schedule within the stated bound has one · "
    "⚪ not found: none in the schedules tried (not a proof) · "
    "🟠 other anomaly: caught, but never by the anomaly the scenario names · "
    "⏳ hang: a schedule ran past the wall-clock limit (the engine blocks in real time) · "
    "❌ not what the scenario expects · – not run"
)


@dataclass(frozen=True, slots=True)
class MatrixRow:
    scenario: str
    title: str
    cells: tuple[tuple[int, ...], ...]  # per column, indexes into the campaign's cells


@dataclass(frozen=True, slots=True)
class Matrix:
    columns: tuple[str, ...]
    rows: tuple[MatrixRow, ...]


def matrix(cells: Sequence[EngineResult]) -> Matrix:
    """Group cells by scenario (rows) and engine (columns), in the campaign's order."""
    columns: list[str] = []
    if any(cell.expectation is Expectation.BUGGY for cell in cells):
        columns.append(KNOWN_BUG)
    for cell in cells:
        if cell.expectation is Expectation.CLEAN and cell.engine not in columns:
            columns.append(cell.engine)
    grid: dict[str, list[list[int]]] = {}
    titles: dict[str, str] = {}
    for index, cell in enumerate(cells):
        column = KNOWN_BUG if cell.expectation is Expectation.BUGGY else cell.engine
        row = grid.setdefault(cell.scenario, [[] for _ in columns])
        row[columns.index(column)].append(index)
        titles.setdefault(cell.scenario, cell.title)
    rows = tuple(
        MatrixRow(scenario, titles[scenario], tuple(tuple(column) for column in row))
        for scenario, row in grid.items()
    )
    return Matrix(tuple(columns), rows)


def counts(campaign: CampaignResult) -> str:
    """``27 cells in 14 scenarios: 14 reproduced, 5 ruled out, 8 not found``."""
    scenarios = len({cell.scenario for cell in campaign.cells})
    tally = [
        f"{sum(cell.verdict is verdict for cell in campaign.cells)} {verdict.value}"
        for verdict in Verdict
    ]
    return (
        f"{_plural(len(campaign.cells), 'cell')} in {_plural(scenarios, 'scenario')}: "
        + ", ".join(tally)
    )


def first_anomaly(result: EngineResult) -> str:
    """The anomaly a cell names: its scenario's where it shows, else the first fatal one."""
    first = result.headline
    return first.kind.value if first is not None else ""


def anomaly_lines(result: EngineResult) -> list[str]:
    """Each anomaly as a line, the run's home directory shown as ``~``."""
    home = result.failing_run.home + "/" if result.failing_run is not None else ""
    lines = [str(anomaly) for anomaly in result.anomalies]
    return [line.replace(home, "~/") for line in lines] if home else lines


def cell_text(result: EngineResult, *, name_engine: bool) -> str:
    """One cell, e.g. ``reproduced: mirrored, refresh-token-reuse, 3 schedules``."""
    parts = [f"`{result.engine}`"] if name_engine else []
    if result.hang is not None:
        parts.append(f"step {result.hang.step}")
    elif result.caught:
        parts += [first_anomaly(result) or "fatal anomaly", _plural(result.examples, "schedule")]
    if result.verdict is Verdict.OTHER_ANOMALY and result.expected_anomaly is not None:
        parts.insert(-1, f"expected {result.expected_anomaly.value}")
    else:
        parts.append(_plural(result.examples, "schedule"))
    text = f"{ICONS[result.verdict]} {result.verdict.value}: {', '.join(parts)}"
    return text if result.passed else f"{text} ❌"


def matrix_markdown(campaign: CampaignResult) -> str:
    """The verdict table and its legend; no timings, so it is stable run to run."""
    grid = matrix(campaign.cells)
    lines = [
        "| scenario | " + " | ".join(grid.columns) + " |",
        "|---" * (len(grid.columns) + 1) + "|",
    ]
    for row in grid.rows:
        cells = [
            "<br>".join(
                _cell(cell_text(campaign.cells[i], name_engine=name == KNOWN_BUG)) for i in column
            )
            or "–"
            for name, column in zip(grid.columns, row.cells, strict=True)
        ]
        lines.append(f"| `{_cell(row.scenario)}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + LEGEND + "\n"


def render_summary(campaign: CampaignResult) -> str:
    """``summary.md``: status, the matrix, then every unexpected and reproduced cell."""
    status = "✅ passed" if campaign.passed else "❌ failed"
    unexpected = [cell for cell in campaign.cells if not cell.passed]
    verdict = (
        "every cell met its expectation"
        if not unexpected
        else f"{_plural(len(unexpected), 'cell')} did not meet "
        + ("its expectation" if len(unexpected) == 1 else "their expectations")
    )
    out = [
        f"# tokenrace: {status}",
        "",
        f"{counts(campaign)}; {verdict} ({campaign.elapsed:.1f} s).",
        "",
        matrix_markdown(campaign),
    ]
    if unexpected:
        out += ["## Not as expected", ""]
        for cell in unexpected:
            out += _details(cell, folded=False)
    reproduced = [c for c in campaign.cells if c.verdict is Verdict.REPRODUCED and c.passed]
    if reproduced:
        out += ["## Reproduced", ""]
        for cell in reproduced:
            out += _details(cell, folded=True)
    out.append("Tokens appear only as fingerprints (`rt#…`, `at#…`). The full histories, and a")
    out.append("sequence diagram of each minimal run, are in `index.html` beside this file.")
    return "\n".join(out) + "\n"


def _details(cell: EngineResult, *, folded: bool) -> list[str]:
    """A cell's anomalies and its replay command (or, if nothing was found, what was searched)."""
    expected = "known bug" if cell.expectation is Expectation.BUGGY else "expected clean"
    name = f"{_inline(cell.scenario)}</b> · <code>{_inline(cell.engine)}</code>"
    head = f"<b>{name} ({expected}): {cell.verdict.value}"
    body: list[str] = [f"- {_inline(cell.expectation_note())}"] if cell.expectation_note() else []
    if cell.caught:
        body += [f"- {_inline(str(cell.hang))}"] if cell.hang is not None else []
        body += [f"- {_inline(line)}" for line in anomaly_lines(cell)]
        if cell.schedule is not None:
            command = replay_command(cell.scenario, cell.engine, cell.schedule)
            body += ["", "```sh", command, "```"]
    else:
        body.append(f"- searched: {_inline(cell.bound or _plural(cell.examples, 'schedule'))}")
    if folded:
        return ["<details>", f"<summary>{head}</summary>", "", *body, "", "</details>", ""]
    return [head, "", *body, ""]


def publish(campaign: CampaignResult, path: Path) -> bool:
    """Replace the matrix between the markers in ``path``; True when it changed."""
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"{path} has no {BEGIN} ... {END} markers")
    block = f"{BEGIN}\n{matrix_markdown(campaign)}{END}"
    updated = pattern.sub(lambda _: block, text, count=1)
    if updated == text:
        return False
    path.write_text(updated, encoding="utf-8")
    return True


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _inline(text: str) -> str:
    return text.replace("\n", " ").replace("&", "&amp;").replace("<", "&lt;")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")
