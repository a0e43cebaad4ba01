"""A Windows *host* under Wine: the controller itself in Windows CPython.

``_wine`` runs the agent processes under Wine while the controller stays
native Linux.  A Windows CI runner has no Linux anywhere: the controller,
the kernel, pytest and every worker are Windows processes, so the code paths
that only a Windows host takes (its own processes as workers, pipes read by
a thread since Windows' ``select`` takes sockets only, binary-mode
descriptors, TerminateProcess on the host's own children) run nowhere else.
This module runs them here: pytest, the project and its dependencies in the
Windows CPython of ``setup_wine_python()``, against this checkout.

The dependencies are PyPI's own Windows wheels (``pip download --platform
win_amd64 --python-version 3.13``; Hypothesis has a compiled part), pinned to
the versions installed here and unpacked into ``<cache>/host-site``, once;
``<cache>/host-python`` is a copy of the interpreter whose ``._pth`` puts them
and this checkout on every process's path.

``tokenrace wine setup`` downloads them (``setup_windows_host``); ``tokenrace
wine host [PYTEST ARGS]`` runs pytest that way (no arguments: the Windows
runner's test files, ``.ci/windows-tests``) and downloads nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from ._wine import (
    CHECKOUT,
    PTH_NAME,
    Log,
    WineNotSetUp,
    WinePython,
    WineRun,
    WineUnavailable,
    _say,
    _setup_lock,
    run_command,
    setup_wine_python,
    sync_site,
    windows_path,
    wine_python,
)

#: what the project and its tests import on Windows: the dependencies and the dev
#: extra but for the linters (checked once, on Linux) and frontrun (no Windows build)
#: Wheels left out of the host site: Windows CPython under Wine cannot load their native
#: extension ("DLL load failed while importing _rust"), and a package that is absent is
#: one its importers can do without (PyJWT signs HS256 without cryptography).
WINE_CANNOT_LOAD = ("cryptography",)
REQUIREMENTS = (
    *("httpx", "respx", "hypothesis", "rich", "uvicorn"),
    *("pytest", "pytest-xdist", "colorama", "msal-extensions", "filelock", "PyJWT"),
)


def pinned(requirements: Sequence[str] = REQUIREMENTS) -> list[str]:
    """Each requirement at the version installed here, so both hosts run the same code."""
    out = []
    for name in requirements:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(name)  # colorama: pytest needs it on Windows only
    return out


def wheel_files(wheels: Sequence[Path]) -> dict[str, bytes]:
    """Every file of every wheel, by path in a site dir (a wheel is a zip of just that)."""
    files: dict[str, bytes] = {}
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if not name.endswith("/"):
                    files[name] = archive.read(name)
    return files


def ensure_host_site(
    wine: WinePython, requirements: Sequence[str] = REQUIREMENTS, log: Log | None = None
) -> Path:
    """``<cache>/host-site``, holding the Windows wheels of ``requirements`` and their
    dependencies; downloaded once (pip's cache serves later runs)."""
    site = _host_site(wine)
    wanted = pinned(requirements)
    stamp = site_stamp(wanted)
    if _current(site, stamp):
        return site
    with tempfile.TemporaryDirectory(prefix="tokenrace-wheels-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--only-binary", ":all:"]
        command += ["--platform", "win_amd64", "--python-version", "3.13"]
        command += ["--disable-pip-version-check", "-q", "-d", tmp, *wanted]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise WineUnavailable(
                f"could not download Windows wheels of {' '.join(wanted)}:\n"
                f"{done.stdout}{done.stderr}"
            )
        loadable = [w for w in wheels if w.name.split("-")[0].lower() not in WINE_CANNOT_LOAD]
        sync_site(site, wheel_files(loadable))
    (site / ".requirements").write_text("\n".join(stamp), encoding="utf-8")
    _say(log, f"unpacked {len(wheels)} Windows wheels into {site}")
    return site


def _host_site(wine: WinePython) -> Path:
    return wine.site.with_name("host-site")


def site_stamp(wanted: Sequence[str]) -> list[str]:
    """What a host site's ``.requirements`` says: the pinned wheels, and those left out."""
    return [*wanted, *(f"without {name}" for name in WINE_CANNOT_LOAD)]


def _current(site: Path, wanted: Sequence[str]) -> bool:
    stamp = site / ".requirements"
    return stamp.exists() and stamp.read_text(encoding="utf-8") == "\n".join(wanted)


def setup_windows_host(log: Log | None = None) -> WinePython:
    """The explicit set-up of a Windows host (part of ``tokenrace wine setup``): Wine and
    the Windows CPython, then the Windows wheels of what the project's tests import."""
    wine = setup_wine_python(log=log)
    return ensure_host_python(wine, ensure_host_site(wine, log=log))


def windows_host_python() -> WinePython:
    """The Windows host's interpreter as the set-up left it; downloads nothing."""
    wine = wine_python()
    site = _host_site(wine)
    if not _current(site, site_stamp(pinned())):
        raise WineNotSetUp(f"the Windows wheels in {site} are not the versions installed here")
    return ensure_host_python(wine, site)


def ensure_host_python(wine: WinePython, site: Path) -> WinePython:
    """A copy of the interpreter whose ``._pth`` lists ``site`` and this checkout.

    The embedded interpreter ignores ``PYTHONPATH``, and every process a test
    starts with ``sys.executable`` (workers, ``python -m pytest``, agents) must
    find what the host finds, so the path goes in the copy's ``._pth``.
    """
    home = wine.site.parent
    target = home / "host-python"
    with _setup_lock(home):
        if not (target / "python.exe").exists():
            staging = home / "host-python.partial"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(wine.python.parent, staging)
            (staging / PTH_NAME).unlink(missing_ok=True)
            staging.rename(target)
        pth = target / PTH_NAME
        text = f"python313.zip\n.\n{windows_path(site)}\n{windows_path(CHECKOUT)}\n"
        if not pth.exists() or pth.read_text(encoding="utf-8") != text:
            pth.write_text(text, encoding="utf-8")
    return WinePython(wine.launcher, target / "python.exe", wine.prefix, site)


def run_pytest(
    args: Sequence[str],
    *,
    timeout: float = 1800.0,
    echo: Log | None = None,
) -> WineRun:
    """pytest with ``args`` (paths relative to the checkout), in a Windows host under Wine.

    Pytest keeps no cache and Hypothesis' database goes to a temporary dir, so
    the Linux and the Windows runs of one checkout never share them.
    """
    host = windows_host_python()
    with tempfile.TemporaryDirectory(prefix="tokenrace-winhost-") as tmp:
        argv = ["-p", "no:cacheprovider", *args]
        code = (
            f"import os, sys; os.chdir({windows_path(CHECKOUT)!r}); "
            f"os.environ['HYPOTHESIS_STORAGE_DIRECTORY'] = {windows_path(tmp)!r}; "
            f"import pytest; sys.exit(pytest.main({argv!r}))"
        )
        return run_command(host.command("-c", code), host.env(), timeout, echo)


#: tests of the Windows list that Wine cannot host: a process started from Linux with
#: pipes has no console, so GenerateConsoleCtrlEvent (Ctrl+Break) fails, WinError 12
WINE_CANNOT = (
    "tests/test_fake_server_stress.py::test_cli_prints_its_url_serves_and_stops_on_interrupt",
    # free-running agent processes judged against the harness's deadline: a Wine process
    # that starts slowly on a busy machine reads as a deadlock (seen in 2 of 4 CI runs);
    # they run natively in the default selection and on the windows-latest leg
    "tests/test_real_processes.py::test_reference_is_clean_with_real_processes_in_every_order",
    "tests/test_real_processes.py::test_a_killed_refresher_is_never_blamed_on_the_engine",
    # a store symlink made by Windows CPython under Wine 8 is not the reparse point Windows
    # makes (the same schedules agree with Wine processes when a Linux host makes the link:
    # `tokenrace replay --scenario symlinked-store --os windows --real`); the windows-latest
    # leg runs it on real Windows
    "tests/test_controlled_processes.py::test_every_shipped_scenario_agrees_with_real_processes[symlinked-store]",
)


def windows_test_files() -> list[str]:
    """The test files a Windows host runs: ``.ci/windows-tests`` (ci.yml reads it too)."""
    listed = (CHECKOUT / ".ci" / "windows-tests").read_text(encoding="utf-8").splitlines()
    return [line for line in listed if line and not line.startswith("#")]


def windows_runner_args() -> list[str]:
    """The Windows runner's test files, less what Wine cannot host."""
    deselect = [arg for test in WINE_CANNOT for arg in ("--deselect", test)]
    return [*deselect, *windows_test_files()]
