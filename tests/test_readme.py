"""The README's promises, checked: its example engine and what `tokenrace check` says of it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conformance._cli import main

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_readme_engine_is_caught_exactly_where_the_readme_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    found = re.search(r"```python\n# my_engine.py\n(.*?)```", README, re.S)
    assert found is not None, "the README lost its example engine"
    (tmp_path / "my_engine.py").write_text(found.group(1), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    # one job: the same verdicts (every cell is seeded), and a Windows host under Wine
    # cannot run a process pool (.ci/windows-tests)
    argv = ["check", "--engine", "my_engine:MyEngine", "--examples", "150", "--jobs", "1"]
    code = main([*argv, "--report-dir", str(tmp_path / "report")])
    out = capsys.readouterr().out
    assert code == 1
    report = json.loads((tmp_path / "report" / "results.json").read_text(encoding="utf-8"))
    rows = {cell["scenario"]: cell["verdict"] for cell in report["cells"]}
    reproduced = {name for name, verdict in rows.items() if verdict == "reproduced"}
    assert reproduced == {
        "shared/windows/3xproc/openai/none",  # flock does not exist on Windows
        "shared/windows/2xgw/openai/kill",
        "no-lock-on-windows",
        "windows-replace-dropped",
        "shared/linux/2xproc/openai/5xx",  # a new login asked over a 503
        "shared/linux/2xproc/openai/429",
        "shared/linux/2xproc/okta/drop",  # a lost answer not retried inside the window
        "lost-response-retry",
    }
    assert "flock is not available on win32" in out
    assert "TimeoutError" in out
    assert "refresh refused (503)" in out
    assert len(rows) == 42  # the battery's 27 worlds and the 15 scenarios the reference claims


def test_readme_check_command_matches_the_cli() -> None:
    assert "tokenrace check --engine my_engine:MyEngine" in README
    assert "PYTHONPATH=. .venv/bin/tokenrace check" in README
