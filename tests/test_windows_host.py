"""The process backend on other hosts: which OS's processes a host can run, and a Windows
host for real (pytest itself in the Windows CPython under Wine, as a Windows CI runner
would run it, its workers that host's own Windows processes).  The Wine test drives Wine
from a Linux host."""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

from simulator import NotModelled, OsModel
from simulator.real import (
    WINE_CANNOT,
    ProcessPool,
    can_run,
    host_model,
    pinned,
    run_pytest,
    setup_windows_host,
    windows_runner_args,
    windows_test_files,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(sys.platform != "linux", reason="checks a Linux host")
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


#: the Windows runner's test files (ci.yml reads the same list)
WINDOWS_TESTS = windows_test_files()
#: why a test may skip on a Windows host: the OS lacks what it checks
WINDOWS_SKIPS = ("lockf is POSIX", "the model is Linux; other kernels differ")


def test_the_windows_list_names_real_files_and_the_real_process_tests() -> None:
    assert all((ROOT / name).is_file() for name in WINDOWS_TESTS), WINDOWS_TESTS
    assert all(test.split("::")[0] in WINDOWS_TESTS for test in WINE_CANNOT)
    assert "tests/test_controlled_processes.py" in WINDOWS_TESTS
    assert "tests/test_real_processes.py" in WINDOWS_TESTS
    workflow = (ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8")
    assert ".ci/windows-tests" in workflow


#: CI's part of the Windows list (`pytest -m "wine and not slow"`): the OS models' pinned
#: semantics (Windows' locks, replace and delete among them) and real Windows processes
#: against the Windows model; the whole list is the slow test below (`-m "wine and slow"`)
WINDOWS_SAMPLE = ("tests/test_os_models.py", "tests/test_controlled_processes.py")


def test_the_windows_sample_is_part_of_the_windows_list() -> None:
    assert set(WINDOWS_SAMPLE) <= set(WINDOWS_TESTS)


def _passes_on_a_windows_host(args: list[str], at_least: int) -> None:
    """pytest with ``args`` on the Windows host: it passes, at least ``at_least`` tests
    pass, and every skip is for what Windows lacks."""
    setup_windows_host()  # the test sets its Windows host up; a run never installs
    done = run_pytest(["-q", "-rs", "-m", "not slow", *args])
    tail = (done.stdout + done.stderr)[-6000:]
    assert done.returncode == 0, tail
    passed = re.search(r"(\d+) passed", done.stdout)
    assert passed is not None, tail
    assert int(passed.group(1)) >= at_least, tail
    skips = re.findall(r"^SKIPPED \[\d+\] .*", done.stdout, re.MULTILINE)
    assert skips, tail
    assert all(skip.endswith(WINDOWS_SKIPS) for skip in skips), skips


@pytest.mark.wine
def test_the_windows_sample_passes_on_a_windows_host_under_wine() -> None:
    """The OS-model and real-Windows-process files of the Windows list, as the Windows
    runner runs them: pytest, the controller and the kernel in Windows CPython, the
    workers its own Windows processes."""
    deselect = [
        arg
        for test in WINE_CANNOT
        if test.split("::")[0] in WINDOWS_SAMPLE
        for arg in ("--deselect", test)
    ]
    _passes_on_a_windows_host([*deselect, *WINDOWS_SAMPLE], at_least=60)


@pytest.mark.wine
@pytest.mark.slow
def test_the_windows_runner_tests_pass_on_a_windows_host_under_wine() -> None:
    """pytest, the controller, the kernel and the fake server in Windows CPython, the
    workers and agents its own Windows processes: every test the Windows runner takes
    passes, the real-process ones included; skips are only for what Windows lacks."""
    _passes_on_a_windows_host(windows_runner_args(), at_least=400)
