"""The matrix: every combination of the axes, a verdict each, and the verdicts make sense."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance import ConformanceError
from conformance._cli import main
from conformance._matrix import MatrixAxes, matrix_cells, run_cells
from simulator import Strategy


def test_lock_kinds_against_process_layouts() -> None:
    """flock holds everywhere; lockf breaks inside a gateway; a mutex only inside one."""
    axes = MatrixAxes(locks=("flock", "lockf", "mutex", "none"), processes=("separate", "gateway"))
    cells = matrix_cells(axes, strategy=Strategy.EXHAUSTIVE, examples=5000)
    assert len(cells) == 8
    campaign = run_cells(cells, jobs=1)
    verdicts = {
        (cell.lock, "gateway" if "gw" in result.scenario else "separate"): result.verdict.value
        for cell, result in zip(cells, campaign.cells, strict=True)
    }
    assert verdicts == {
        ("flock", "separate"): "ruled out",
        ("flock", "gateway"): "ruled out",
        ("lockf", "separate"): "ruled out",
        ("lockf", "gateway"): "reproduced",
        ("mutex", "separate"): "reproduced",
        ("mutex", "gateway"): "ruled out",
        ("none", "separate"): "reproduced",
        ("none", "gateway"): "reproduced",
    }


def test_matrix_command_writes_a_verdict_per_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["matrix", "--engine", "reference", "--engine", "mirrored", "--layout", "mirrored"]
    argv += ["--os", "linux,windows", "--examples", "30", "--jobs", "1", "--quiet"]
    assert main([*argv, "--report-dir", str(tmp_path)]) == 1  # mirrored breaks
    report = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    cells = {(cell["engine"], cell["scenario"]): cell["verdict"] for cell in report["cells"]}
    assert len(cells) == 4
    assert all(v == "reproduced" for (engine, _), v in cells.items() if engine == "mirrored")
    assert all(v == "not found" for (engine, _), v in cells.items() if engine == "reference")
    assert "reference" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lock", "nope"], "unknown lock 'nope'"),
        (["--engine", "no-lock", "--lock", "lockf"], "fixed lock"),
        (["--agents", "x"], "--agents must be numbers"),
        (["--os", "beos"], "unknown os 'beos'"),
        (["--faults", "boom"], "unknown fault 'boom'"),
    ],
)
def test_bad_axes_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["matrix", *argv]) == 2
    assert message in capsys.readouterr().err


def test_matrix_cells_refuse_a_bad_policy() -> None:
    with pytest.raises(ConformanceError, match="nope"):
        matrix_cells(MatrixAxes(policies=("nope",)), strategy=Strategy.RANDOM, examples=1)
