"""The process backend on other hosts: which OS's processes a host can run, and a Windows
host for real (pytest itself in the Windows CPython under Wine, as a Windows CI runner
would run it, its workers that host's own Windows processes)."""

from __future__ import annotations

import re
import sys
from importlib import metadata

import pytest

from simulator import OsModel
from simulator._errors import NotModelled
from simulator._procpool import ProcessPool, can_run, host_model
from simulator._wine_host import pinned, run_pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="checks a Linux host")


def test_a_linux_host_runs_linux_and_windows_under_wine_but_not_macos() -> None:
    assert host_model() is OsModel.LINUX
    assert can_run(OsModel.LINUX) == ""
    assert can_run(OsModel.WINDOWS) == ""
    assert "need a macos host; this is linux" in can_run(OsModel.MACOS)
    with pytest.raises(NotModelled, match="macos host"):
        ProcessPool(OsModel.MACOS)


def test_the_windows_wheels_are_the_versions_installed_here() -> None:
    assert f"hypothesis=={metadata.version('hypothesis')}" in pinned()
    assert f"pytest=={metadata.version('pytest')}" in pinned()


@pytest.mark.wine
def test_the_real_process_tests_pass_on_a_windows_host_under_wine() -> None:
    """The controller, the kernel and pytest in Windows CPython, the workers its own
    Windows processes: every real-process test a Windows runner takes passes, and only
    the POSIX record-lock tests are skipped."""
    done = run_pytest(["-q", "-rs", "-m", "not slow", "tests/test_controlled_processes.py"])
    tail = (done.stdout + done.stderr)[-6000:]
    assert done.returncode == 0, tail
    passed = re.search(r"(\d+) passed", done.stdout)
    assert passed is not None, tail
    assert int(passed.group(1)) >= 38, tail
    skips = re.findall(r"^SKIPPED \[\d+\] .*", done.stdout, re.MULTILINE)
    assert skips, tail
    assert all(skip.endswith("lockf is POSIX") for skip in skips), skips
