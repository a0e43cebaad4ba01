"""``tokenrace wine``: set Wine up (the one command that installs anything), check it,
and run the test suite as a Windows host under it.

``python -m simulator.real`` is the same command without the ``tokenrace``
front end.  Exit status 0 on success, 1 when what ran failed, 2 when Wine
cannot be had (one line saying why, never a traceback).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from ._wine import WinePython, WineUnavailable, wine_python
from ._wine_host import run_pytest, setup_windows_host, windows_runner_args

EXIT_FAILED = 1
EXIT_UNAVAILABLE = 2


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Wine and the official Windows CPython, for real Windows processes."
    )
    commands = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    commands.add_parser(
        "setup",
        help="install Wine (apt-get, as root), download the Windows CPython and the Windows "
        "wheels the tests import; cached, so a second run only checks",
    )
    commands.add_parser("status", help="say whether Wine is set up; installs nothing")
    commands.add_parser(
        "host",
        usage=f"{prog} host [PYTEST ARGS ...]",
        help="run pytest as a Windows host under Wine, every argument pytest's (default: the "
        "Windows runner's tests, .ci/windows-tests)",
    )
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "tokenrace wine") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(prog)
    host = argv[:1] == ["host"] and argv[1:] not in (["-h"], ["--help"])
    action = "host" if host else parser.parse_args(argv).action
    try:
        if action == "setup":
            return _setup()
        if action == "status":
            return _status()
        done = run_pytest(
            argv[1:] or ["-q", "-rs", "-m", "not slow", *windows_runner_args()],
            echo=lambda text: print(text, end="", flush=True),
        )
    except WineUnavailable as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return EXIT_FAILED if done.returncode else 0


def _setup() -> int:
    started = time.monotonic()
    setup_windows_host(log=print)
    print(f"set up in {time.monotonic() - started:.1f} s")
    return _report(wine_python())


def _status() -> int:
    return _report(wine_python())


def _report(wine: WinePython) -> int:
    """One interpreter start, to show the set-up works and what it costs."""
    probe = wine.run("import sys; print(sys.version.split()[0], sys.platform)")
    print(f"one interpreter start and exit: {probe.seconds:.2f} s")
    print(f"loader {wine.launcher}; interpreter {wine.python}; {probe.stdout.strip()}")
    return EXIT_FAILED if probe.returncode else 0
