"""``junit.xml``: one test case per cell, for CI systems that read JUnit results.

The shape follows the strictest common reading of the format (the Apache Ant
schema as published in windyroad/JUnit-Schema), so Jenkins, GitLab, Azure and
the GitHub test-report actions all accept it: a ``testsuite`` per scenario
with ``properties``, test cases, ``system-out`` and ``system-err`` in that
order; a test case holds at most one ``failure``.  A cell fails when it did
not meet its expectation; its failure names the first fatal anomaly and
carries every anomaly, the schedule and the replay command (or, for a known
bug that was not reproduced, what was searched).  Reproductions that were
expected are listed in the suite's ``system-out`` with their replay commands.
"""

from __future__ import annotations

import platform
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from ._campaign import CampaignResult, EngineResult, Verdict, replay_command
from ._engines import Expectation
from ._summary import anomaly_lines

# characters XML 1.0 cannot carry, even escaped
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def render_junit(campaign: CampaignResult, *, timestamp: datetime | None = None) -> str:
    """The campaign as a JUnit ``testsuites`` document."""
    when = (timestamp or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S")
    host = _text(platform.node()).strip() or "localhost"
    root = ET.Element("testsuites")
    by_scenario: dict[str, list[EngineResult]] = {}
    for cell in campaign.cells:
        by_scenario.setdefault(cell.scenario, []).append(cell)
    for index, (scenario, cells) in enumerate(by_scenario.items()):
        failures = sum(not cell.passed for cell in cells)
        suite = ET.SubElement(
            root,
            "testsuite",
            {
                "name": _text(scenario) or "scenario",
                "package": "tokenrace",
                "id": str(index),
                "timestamp": when,
                "hostname": host,
                "tests": str(len(cells)),
                "failures": str(failures),
                "errors": "0",
                "skipped": "0",
                "time": _seconds(sum(cell.elapsed for cell in cells)),
            },
        )
        properties = ET.SubElement(suite, "properties")
        if cells[0].title:
            ET.SubElement(properties, "property", {"name": "title", "value": _text(cells[0].title)})
        for cell in cells:
            _testcase(suite, cell)
        ET.SubElement(suite, "system-out").text = _text(_suite_out(cells))
        ET.SubElement(suite, "system-err").text = ""
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def _testcase(suite: ET.Element, cell: EngineResult) -> None:
    case = ET.SubElement(
        suite,
        "testcase",
        {
            "name": _text(cell.engine),
            "classname": _text(f"tokenrace.{cell.scenario}"),
            "time": _seconds(cell.elapsed),
        },
    )
    if cell.passed:
        return
    if cell.hang is not None:
        kind, message = "hang", str(cell.hang)
    elif cell.verdict is Verdict.OTHER_ANOMALY:
        kind = "other-anomaly"
        message = f"known bug {cell.engine} {cell.expectation_note()}"
    elif cell.expectation is Expectation.BUGGY:
        kind = "not-reproduced"
        message = f"known bug {cell.engine} not reproduced: {cell.verdict.value}"
    else:
        first = cell.headline
        kind = first.kind.value if first is not None else "fatal-anomaly"
        message = str(first) if first is not None else cell.verdict.value
    failure = ET.SubElement(case, "failure", {"type": kind, "message": _text(message)})
    failure.text = _text(_describe(cell))


def _describe(cell: EngineResult) -> str:
    """What a reader of a failed test needs: the anomalies and how to replay them."""
    expected = "known bug" if cell.expectation is Expectation.BUGGY else "expected clean"
    lines = [
        f"{cell.scenario} / {cell.engine} ({expected}): {cell.verdict.value}",
        f"search: {cell.strategy.value}, {cell.examples} schedules; {cell.bound}",
    ]
    if cell.expectation_note():
        lines.append(cell.expectation_note())
    lines += [f"- {line}" for line in anomaly_lines(cell)]
    lines += [f"- {cell.hang}"] if cell.hang is not None else []
    if cell.schedule is not None:
        lines.append(f"minimal schedule: {cell.schedule}")
        lines.append(f"replay: {replay_command(cell.scenario, cell.engine, cell.schedule)}")
    return "\n".join(lines)


def _suite_out(cells: list[EngineResult]) -> str:
    lines = []
    for cell in cells:
        line = f"{cell.engine}: {cell.verdict.value} ({cell.examples} schedules)"
        if cell.caught and cell.schedule is not None:
            if cell.headline is not None or cell.hang is not None:
                line += f": {cell.headline or cell.hang}"
            line += f"\n  replay: {replay_command(cell.scenario, cell.engine, cell.schedule)}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _seconds(value: float) -> str:
    return f"{max(value, 0.0):.3f}"


def _text(value: str) -> str:
    return _NOT_XML.sub("\ufffd", value)
