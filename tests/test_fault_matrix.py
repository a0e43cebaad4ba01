"""Every fault kind under every strategy runs to a verdict, a report and a diagram.

A fault that strikes somewhere the report's diagram did not expect (a crash
rewinds stores on behalf of no agent) once ended ``tokenrace matrix`` in a
traceback; these tests walk the whole cross product so a new fault kind or
strategy is covered the day it is added.
"""

from __future__ import annotations

import json
import re
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance._campaign import search_world
from conformance._cli import main
from conformance._diagram import RowKind
from conformance._engines import load_engine
from conformance._matrix import MatrixAxes, matrix_cells
from conformance._scenarios import load_scenario
from conformance._sequence import build
from conformance._svg import render_svg
from conformance._worlds import AGENT_NAMES, GeneratedWorld
from fake_oauth_server import PRESETS
from simulator import FaultKind, OsModel, RunResult, StoreLayout, Strategy

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
    """Each cell: a verdict; each caught cell: a diagram, and a replay command that replays it."""
    faults = ",".join(kind.value for kind in FAULTS)
    argv = ["matrix", "--engine", "reference", "--lock", "flock,none", "--faults", faults]
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
    assert any(cell["engine"] == "reference[lock=none]" for cell in caught)  # a diagram to draw
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    svgs = re.findall(r"<svg .*?</svg>", page, re.DOTALL)
    assert len(svgs) == len(caught)
    for svg in svgs:
        ET.fromstring(svg)
    for name in ("summary.md", "junit.xml"):
        assert (tmp_path / name).stat().st_size > 0
    for cell in caught:  # the printed command replays the cell's run, anomaly for anomaly
        command = shlex.split(cell["replay"])
        assert command[:2] == ["tokenrace", "replay"]
        assert main(command[1:]) == 1
        printed = re.findall(r"^anomaly: (\S+) \((\w+)\)", capsys.readouterr().out, re.M)
        assert printed == [(a["kind"], a["severity"]) for a in cell["anomalies"]]


def test_crash_matrix_from_the_issue_ends_with_a_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``tokenrace matrix --faults crash --strategy exhaustive --agents 2``, as filed."""
    monkeypatch.setenv("COLUMNS", "200")  # a narrow terminal would fold the cell's name
    argv = ["matrix", "--faults", "crash", "--strategy", "exhaustive", "--agents", "2"]
    code = main([*argv, "--jobs", "1", "--report-dir", str(tmp_path)])
    out = capsys.readouterr()
    assert code in (0, 1), out.err
    assert "tokenrace matrix" in out.out
    assert "shared/linux/2xproc/openai/crash" in out.out
    cells = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["cells"]
    assert [cell["verdict"] for cell in cells] in (["ruled out"], ["not found"], ["reproduced"])
    assert (tmp_path / "index.html").is_file()


# matrix cells replay by name -----------------------------------------------------


@given(
    world=st.builds(
        GeneratedWorld,
        layout=st.sampled_from([layout.value for layout in StoreLayout]),
        os=st.sampled_from([model.value for model in OsModel]),
        agents=st.integers(1, len(AGENT_NAMES)),
        processes=st.sampled_from(["separate", "gateway"]),
        policy=st.sampled_from(PRESETS),
        fault=st.sampled_from(["none", *(kind.value for kind in FAULTS)]),
        expiries=st.integers(1, 3),
    )
)
@settings(max_examples=40, deadline=None)
def test_a_matrix_label_names_its_world(world: GeneratedWorld) -> None:
    assert GeneratedWorld.parse(world.label) == world
    assert load_scenario(world.label) == world.world()


def test_a_matrix_engine_name_loads_the_engine_it_names() -> None:
    entry = load_engine("reference[lock=lockf][scope=agent-dir]")
    assert entry.name == "reference[lock=lockf][scope=agent-dir]"
    assert load_engine(entry.name).name == entry.name


@pytest.mark.parametrize(
    ("engine", "message"),
    [
        ("reference[scope=profile][lock=none]", "write it 'reference[lock=none][scope=profile]'"),
        ("no-lock[lock=flock]", "engine 'no-lock' has a fixed lock"),
        ("reference[lock=nope]", "unknown lock 'nope'"),
    ],
)
def test_a_bad_matrix_engine_name_is_one_line(
    engine: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    label = "shared/linux/2xproc/openai/none"
    assert main(["replay", "default", "--scenario", label, "--engine", engine]) == 2
    err = capsys.readouterr().err
    assert message in err  # brackets printed as written, not taken for markup
    assert err.count("\n") == 1
