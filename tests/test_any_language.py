"""`tokenrace check --command`: an engine in JavaScript, run as real processes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conformance._cli import main

ENGINE = Path(__file__).resolve().parent / "engines" / "refresh.mjs"


@pytest.fixture(autouse=True)
def _node() -> None:
    assert shutil.which("node"), "these tests need Node.js (node) on PATH"


def test_finds_the_reuse_bug_of_an_unlocked_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both programs are held together at the door however slowly Node starts (``--settle``)."""
    command = f"node {ENGINE} --no-lock"
    argv = ["check", "--command", command, "--orders", "2", "--settle", "20"]
    assert main([*argv, "--report-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "refresh-token-reuse (fatal)" in out
    assert "--order" in out  # the line that runs the failing order again
    report = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert report["cells"][0]["verdict"] == "reproduced"
    assert "trr_" not in (tmp_path / "results.json").read_text(encoding="utf-8")


def test_passes_a_correct_engine_in_every_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["check", "--command", f"node {ENGINE}", "--agents", "atlas,nova", "--orders", "2"]
    assert main([*argv, "--report-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count(" ok ") == 2


def test_a_kill_while_holding_the_lock_strands_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The JavaScript engine's mkdir lock has no stale break: a killed holder blocks everyone."""
    argv = ["check", "--command", f"node {ENGINE}", "--agents", "atlas,nova", "--kill"]
    argv += ["--order", "atlas,nova", "--timeout", "6", "--report-dir", str(tmp_path)]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "deadlock (fatal)" in out
    assert "while its request was held" in out  # whoever held the lock first
