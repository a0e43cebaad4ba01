"""Two runs that write one report directory at once leave one run's report, whole.

Every file is renamed into place whole, and the report is written under the
directory's lock, so the files never come from two runs.  Without the lock a
reader holding it sees, between the interleaved writers below, a
``results.json`` of one campaign beside the history files of the other.
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conformance._campaign import CampaignResult
from conformance._matrix import default_cells, run_cells
from conformance._report import _locked, write_report


@pytest.fixture(scope="module")
def campaigns() -> tuple[CampaignResult, CampaignResult]:
    first = run_cells(default_cells(scenarios=["no-cross-process-lock"]), jobs=1)
    second = run_cells(default_cells(scenarios=["headline"], examples=5), jobs=1)
    return first, second


def one_run(directory: Path) -> set[str]:
    """The scenarios the report describes; fails if its files describe different runs."""
    results = json.loads((directory / "results.json").read_text(encoding="utf-8"))
    scenarios = {cell["scenario"] for cell in results["cells"]}
    histories = {cell["history_file"] for cell in results["cells"]} - {None}
    assert {path.name for path in directory.glob("history-*.txt")} == histories
    suite = ET.parse(directory / "junit.xml").getroot()
    names = {case.get("classname") for case in suite.iter("testcase")}
    assert names == {f"tokenrace.{scenario}" for scenario in scenarios}
    summary = (directory / "summary.md").read_text(encoding="utf-8")
    html = (directory / "index.html").read_text(encoding="utf-8")
    for scenario in scenarios:
        assert scenario in summary
        assert scenario in html
    return scenarios


def _write_many(campaign: CampaignResult, directory: Path, times: int) -> None:
    for _ in range(times):
        write_report(campaign, directory)


def _check_many(directory: Path, stop: float) -> None:
    """While the writers run, the report read under the lock is always one run's."""
    import time

    while time.monotonic() < stop:
        with _locked(directory):
            if (directory / "results.json").exists():
                one_run(directory)


@pytest.mark.skipif(sys.platform == "win32", reason="fork: the campaigns are not re-run")
def test_concurrent_writers_leave_one_whole_report(
    campaigns: tuple[CampaignResult, CampaignResult], tmp_path: Path
) -> None:
    import time

    context = multiprocessing.get_context("fork")
    writers = [
        context.Process(target=_write_many, args=(campaign, tmp_path, 40)) for campaign in campaigns
    ]
    write_report(campaigns[0], tmp_path)
    reader = context.Process(target=_check_many, args=(tmp_path, time.monotonic() + 3))
    for process in (*writers, reader):
        process.start()
    for process in (*writers, reader):
        process.join(timeout=60)
        assert process.exitcode == 0
    scenarios = one_run(tmp_path)
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind
    assert scenarios in ({"no-cross-process-lock"}, {"headline"})


def test_two_runs_into_one_directory(tmp_path: Path) -> None:
    """The command line, twice at once: both succeed, and the report is one of them."""
    argvs = [
        ["run", "--scenario", "no-cross-process-lock", "--jobs", "1"],
        ["run", "--scenario", "headline", "--examples", "5", "--jobs", "1"],
    ]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "conformance._cli", *argv, "--report-dir", "shared", "--quiet"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, (out, err)
    assert one_run(tmp_path / "shared") in ({"no-cross-process-lock"}, {"headline"})
