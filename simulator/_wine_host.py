"""A Windows *host* under Wine: the controller itself in Windows CPython.

``_wine`` runs the agent processes under Wine while the controller stays
native Linux.  A Windows CI runner has no Linux anywhere: the controller,
the kernel, pytest and every worker are Windows processes, so the code paths
that only a Windows host takes (its own processes as workers, pipes read by
a thread since Windows' ``select`` takes sockets only, binary-mode
descriptors, TerminateProcess on the host's own children) run nowhere else.
This module runs them here: pytest, the project and its dependencies in the
Windows CPython of ``ensure_wine_python()``, against this checkout.

The dependencies are PyPI's own Windows wheels (``pip download --platform
win_amd64 --python-version 3.13``; Hypothesis has a compiled part), pinned to
the versions installed here and unpacked into ``<cache>/host-site``, once.

``python -m simulator._wine_host [PYTEST ARGS]`` runs pytest that way.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from ._wine import (
    Log,
    WinePython,
    WineRun,
    WineUnavailable,
    _say,
    ensure_wine_python,
    run_command,
    sync_site,
    windows_path,
)

#: what the controller and pytest import, beyond the standard library
REQUIREMENTS = ("httpx", "respx", "hypothesis", "rich", "uvicorn", "pytest", "colorama")
#: this checkout: the project's packages and its tests are imported from here
CHECKOUT = Path(__file__).resolve().parent.parent
#: Python 3.13 on Windows asks WMI for its version through ``_wmi``, which calls a
#: propsys function Wine 8 lacks (the process aborts): without ``_wmi``,
#: ``platform`` falls back to the version the kernel reports
BOOT = "import sys; sys.modules['_wmi'] = None; sys.path[:0] = {paths!r}; "


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
    site = wine.site.with_name("host-site")
    wanted = pinned(requirements)
    stamp = site / ".requirements"
    if stamp.exists() and stamp.read_text(encoding="utf-8") == "\n".join(wanted):
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
        sync_site(site, wheel_files(wheels))
    stamp.write_text("\n".join(wanted), encoding="utf-8")
    _say(log, f"unpacked {len(wheels)} Windows wheels into {site}")
    return site


def host_command(wine: WinePython, site: Path, code: str) -> list[str]:
    """Windows CPython running ``code`` with ``site`` and this checkout first on its path."""
    paths = [windows_path(site), windows_path(CHECKOUT)]
    return wine.command("-c", BOOT.format(paths=paths) + code)


def run_pytest(
    args: Sequence[str],
    *,
    timeout: float = 1800.0,
    log: Log | None = None,
    echo: Log | None = None,
) -> WineRun:
    """pytest with ``args`` (paths relative to the checkout), in a Windows host under Wine.

    Pytest keeps no cache and Hypothesis' database goes to a temporary dir, so
    the Linux and the Windows runs of one checkout never share them.
    """
    wine = ensure_wine_python(log=log)
    site = ensure_host_site(wine, log=log)
    with tempfile.TemporaryDirectory(prefix="tokenrace-winhost-") as tmp:
        argv = ["-p", "no:cacheprovider", *args]
        code = (
            f"import os; os.chdir({windows_path(CHECKOUT)!r}); "
            f"os.environ['HYPOTHESIS_STORAGE_DIRECTORY'] = {windows_path(tmp)!r}; "
            f"import pytest; sys.exit(pytest.main({argv!r}))"
        )
        return run_command(host_command(wine, site, code), wine.env(), timeout, echo)


def main(argv: Sequence[str] | None = None) -> int:
    """Run pytest as a Windows host would, printing its output as it comes."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        done = run_pytest(
            args or ["-q", "-m", "not slow", "tests/test_controlled_processes.py"],
            log=print,
            echo=lambda text: print(text, end="", flush=True),
        )
    except WineUnavailable as exc:
        print(f"tokenrace wine host: {exc}", file=sys.stderr)
        return 2
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
