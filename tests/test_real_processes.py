"""Python engines as real processes: the headline bug under a controlled refresh order."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conformance._cli import main

AGENT = f"{sys.executable} -m conformance.agent --engine"


def _check(tmp_path: Path, engine: str, *extra: str) -> tuple[int, str, dict[str, object]]:
    argv = ["check", "--command", f"{AGENT} {engine}", "--layout", "mirrored", *extra]
    code = main([*argv, "--report-dir", str(tmp_path)])
    report = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    return code, json.dumps(report), report


def test_mirrored_copies_reproduce_with_real_processes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, report = _check(tmp_path, "mirrored", "--orders", "2")
    assert code == 1
    out = capsys.readouterr().out
    assert "refresh-token-reuse (fatal)" in out
    assert "agent-stranded (fatal)" in out


def test_reference_is_clean_with_real_processes_in_every_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text, _ = _check(tmp_path, "reference", "--orders", "6")
    assert code == 0, capsys.readouterr().out
    assert "trr_" not in text


def test_a_killed_refresher_is_never_blamed_on_the_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Killed while its refresh is held at the server's door.

    If the server still commits it (the connection's end may or may not reach
    it first), the new token is lost and, under OpenAI's policy, nobody can
    recover: every consequence is a warning marked unavoidable.  If it does
    not, the others simply refresh.  Either way the engine is not at fault.
    """
    code, _, _ = _check(tmp_path, "reference", "--order", "atlas,nova,lumi", "--kill")
    out = capsys.readouterr().out
    assert "killing" in out
    assert code == 0, out
    if "(warning)" in out:
        assert "(unavoidable: " in out
