"""Every fault kind under every strategy runs to a verdict, a report and a diagram.

A fault that strikes somewhere the report's diagram did not expect (a crash
rewinds stores on behalf of no agent) once ended ``tokenrace matrix`` in a
traceback; these tests walk the whole cross product so a new fault kind or
strategy is covered the day it is added.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from conformance._campaign import search_world
from conformance._cli import main
from conformance._diagram import RowKind
from conformance._engines import load_engine
from conformance._matrix import MatrixAxes, matrix_cells
from conformance._sequence import build
from conformance._svg import render_svg
from simulator import FaultKind, RunResult, Strategy

FAULTS = list(FaultKind)
STRATEGIES = list(Strategy)


def _struck(kind: FaultKind) -> Callable[[RunResult], bool]:
    """A failure predicate that holds when ``kind`` struck somewhere in the run."""

    def predicate(result: RunResult) -> bool:
        return any(step.endswith("!" + kind.value) for step in result.schedule.steps)

    return predicate


def _assert_drawable(run: RunResult) -> None:
    diagram = build(run)
    keys = {lane.key for lane in diagram.lanes}
    for row in diagram.rows:
        if row.kind is not RowKind.DIVIDER:
            assert {row.source, row.target} <= keys, row
    ET.fromstring(render_svg(diagram, prefix="t", title="test"))  # well-formed


@pytest.mark.parametrize("kind", FAULTS, ids=lambda kind: kind.value)
def test_a_run_struck_by_each_fault_draws_a_diagram(kind: FaultKind) -> None:
    """Find a run where the fault strikes (any strategy that can), and draw it."""
    (cell,) = matrix_cells(
        MatrixAxes(engines=("no-lock",), faults=(kind.value,)),
        strategy=Strategy.EXHAUSTIVE,
        examples=1,
    )
    assert cell.world is not None
    search = search_world(
        cell.world,
        load_engine("no-lock"),
        Strategy.EXHAUSTIVE,
        max_examples=500,
        seed=0,
        is_failure=_struck(kind),
    )
    assert search.failing is not None, f"{kind.value} never struck in {search.examples} runs"
    _assert_drawable(search.failing)


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda strategy: strategy.value)
def test_matrix_runs_every_fault_to_a_verdict_report_and_diagram(
    strategy: Strategy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    faults = ",".join(kind.value for kind in FAULTS)
    argv = ["matrix", "--engine", "reference", "--engine", "no-lock", "--faults", faults]
    argv += ["--strategy", strategy.value, "--agents", "2", "--examples", "12", "--jobs", "1"]
    code = main([*argv, "--quiet", "--report-dir", str(tmp_path)])
    out = capsys.readouterr()
    assert code in (0, 1), out.err
    assert "Traceback" not in out.err
    assert "tokenrace matrix" in out.out
    report = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert report["passed"] is (code == 0)
    cells = report["cells"]
    assert len(cells) == 2 * len(FAULTS)
    assert {cell["scenario"].rsplit("/", 1)[-1] for cell in cells} == {k.value for k in FAULTS}
    assert all(cell["strategy"] == strategy.value for cell in cells)
    caught = [cell for cell in cells if cell["verdict"] in ("reproduced", "other anomaly")]
    assert any(cell["engine"] == "no-lock" for cell in caught)  # there is a diagram to draw
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    svgs = re.findall(r"<svg .*?</svg>", page, re.DOTALL)
    assert len(svgs) == len(caught)
    for svg in svgs:
        ET.fromstring(svg)
    for name in ("summary.md", "junit.xml"):
        assert (tmp_path / name).stat().st_size > 0


def test_crash_matrix_from_the_issue_ends_with_a_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``tokenrace matrix --faults crash --strategy exhaustive --agents 2``, as filed."""
    argv = ["matrix", "--faults", "crash", "--strategy", "exhaustive", "--agents", "2"]
    code = main([*argv, "--jobs", "1", "--report-dir", str(tmp_path)])
    out = capsys.readouterr()
    assert code in (0, 1), out.err
    assert "tokenrace matrix" in out.out
    assert "shared/linux/2xproc/openai/crash" in out.out.replace("\n", "").replace("│", "")
    assert (tmp_path / "index.html").is_file()
