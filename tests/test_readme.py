"""The README's promises, checked: its example engine and what `tokenrace check` says of it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
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
        # killed with the new credential staged, which it never looks for (avoidable-loss)
        "shared/linux/2xproc/openai/kill",
        "shared/linux/2xproc/openai/kill/2prof",
        "shared/linux/3xmix/openai/kill",
        "shared/linux/2xproc/openai/crash",
        "shared/linux/1xproc/openai/ioerror+crash",
        "killed-before-replace",
        # saved by renaming over the store's name: a symlinked store becomes a plain file
        "symlinked-store",
        # presents with the store's directory unwritable before its turn (avoidable-loss)
        "store-dir-denied",
    }
    assert "flock is not available on win32" in out
    assert "TimeoutError" in out
    assert "refresh refused (503)" in out
    assert len(rows) == 45  # the battery's 27 worlds and the 18 scenarios the reference claims


def test_readme_check_command_matches_the_cli() -> None:
    # pasted from the directory that holds my_engine.py: no PYTHONPATH needed
    assert "\n.venv/bin/tokenrace check --engine my_engine:MyEngine\n" in README
    assert "PYTHONPATH" not in README


#: the ``run`` whose output the README shows, at 80 columns
RUN_SAMPLE = ["run", "--scenario", "headline", "--scenario", "no-cross-process-lock"]
RUN_SAMPLE += ["--examples", "60", "--jobs", "1"]


def run_sample(directory: Path) -> str:
    """What ``tokenrace run`` prints for the README's sample, as a terminal shows it."""
    done = subprocess.run(
        [sys.executable, "-m", "conformance._cli", *RUN_SAMPLE],
        cwd=directory,
        env={**os.environ, "COLUMNS": "80", "PYTHONIOENCODING": "utf-8"},  # as a terminal
        capture_output=True,
        encoding="utf-8",
        timeout=120,
        check=True,
    )
    lines = [line.rstrip() for line in done.stdout.splitlines()]
    return "$ tokenrace " + " ".join(RUN_SAMPLE) + "\n" + "\n".join(lines) + "\n"


def timeless(text: str) -> str:
    """``text`` with its timings blanked (they change run to run) and paths in ``/`` form
    (a Windows host prints ``reports\\latest``)."""
    return re.sub(r"\d+\.\d+s\b", "N.Ns", text).replace("\\", "/")


def test_run_sample_is_stable_and_its_table_fits_80_columns(tmp_path: Path) -> None:
    """The README's sample output can be produced by a test (see ``__main__`` below)."""
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first, second = run_sample(tmp_path / "one"), run_sample(tmp_path / "two")
    assert timeless(first) == timeless(second)
    table = [line for line in first.splitlines() if line and line[0] in "┏┃┡│└"]
    assert len(table) == 4 + 4  # borders, header, four cells
    assert all(len(line) <= 80 for line in table)
    assert "tokenrace replay --scenario headline --engine mirrored 'default'" in first
    assert "\ntokenrace run: passed: 4 cells as expected" in first


def test_readme_run_sample_is_what_run_prints(tmp_path: Path) -> None:
    found = re.search(r"<!-- run-sample -->\n```\n(.*?)```\n<!-- /run-sample -->", README, re.S)
    assert found is not None, "the README lost its run sample"
    assert timeless(found.group(1)) == timeless(run_sample(tmp_path))


if __name__ == "__main__":  # print the README's sample: python tests/test_readme.py
    with tempfile.TemporaryDirectory() as scratch:
        print(run_sample(Path(scratch)), end="")
