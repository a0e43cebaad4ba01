"""Windows for real, under Wine: the OS model against a real Windows CPython, and engines on it.

Each script below is a sequence of OS calls by two processes.  It runs once
through the simulated ``windows`` model (``OsLayer`` over ``VirtualFS``) and
once for real: each call done by ``RealWorld.perform`` inside a Windows
CPython under Wine (``_wine_probe``).  Every outcome must agree, exception
type, errno (by name: Windows and Linux number them differently) and
winerror; a difference fails and prints both columns.

Where Wine itself is known to differ from Windows, a step carries what Wine
gives (``wine=``, a pattern), so the step checks that Wine still does that and
the model's claim stays unconfirmed there.  Where the model differs from
both Wine and Windows' documented behaviour, the script is a strict xfail
naming the mismatch: fixing the model makes it pass, and then fail until the
marker goes.

The engine tests run the same flows in Windows processes and in native
ones; the native half needs no Wine and runs in every CI run.
"""

from __future__ import annotations

import errno
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pytest

from refresh_engine import (
    Close,
    CreateExclusive,
    Effect,
    Failed,
    Flock,
    Lockf,
    LockFileEx,
    LockOp,
    MsvcrtLocking,
    MsvcrtMode,
    Open,
    Opened,
    OpenFlags,
    Outcome,
    Read,
    Replace,
    Seek,
    Stat,
    StatResult,
    Unlink,
    Write,
)
from simulator import OsModel
from simulator._os import OsLayer
from simulator._probe import Probe
from simulator._syscalls import os_call
from simulator._vfs import VirtualFS
from simulator._wine import WineUnavailable, ensure_wine_python

R = OpenFlags.READ
RW = OpenFlags.READ | OpenFlags.WRITE
RWC = RW | OpenFlags.CREATE
#: Wine's ``_locking`` never sets errno: a failure shows whatever errno the thread had last
STALE_ERRNO = r"\w*Error\((?!EACCES\b)\w+, winerror=None\)"


class Names(Protocol):
    def path(self, name: str) -> str: ...

    def fd(self, handle: str) -> int: ...


@dataclass(frozen=True)
class Step:
    proc: int
    make: Callable[[Names], Effect] | None  # None: the process is killed
    keep: str | None = None  # name the descriptor an Open returns
    wine: str | None = None  # what Wine gives where it differs from Windows (a regex)


def do(proc: int, make: Callable[[Names], Effect], keep: str | None = None, wine: str = "") -> Step:
    return Step(proc, make, keep, wine or None)


def kill(proc: int) -> Step:
    return Step(proc, None)


@dataclass(frozen=True)
class Script:
    name: str
    steps: tuple[Step, ...]
    files: dict[str, bytes] = field(default_factory=lambda: {"store": b"0123456789"})


def render(outcome: Outcome | None, errno_name: str | None) -> str:
    """An outcome as both sides can show it: no descriptor numbers, no mtimes."""
    if outcome is None:
        return "killed"
    if isinstance(outcome, Failed):
        return f"{outcome.exception_type}({errno_name}, winerror={outcome.winerror})"
    if isinstance(outcome, Opened):
        return "Opened"
    if isinstance(outcome, StatResult):
        return f"StatResult(size={outcome.size})"
    return repr(outcome)


class _Handles:
    def __init__(self, path: Callable[[str], str]) -> None:
        self._path = path
        self.fds: dict[str, tuple[int, int]] = {}

    def path(self, name: str) -> str:
        return self._path(name)

    def fd(self, handle: str) -> int:
        return self.fds[handle][1]

    def keep(self, step: Step, outcome: Outcome) -> None:
        """Name the descriptor an Open returned (unnamed ones too, to close them at the end)."""
        if isinstance(outcome, Opened):
            self.fds[step.keep or f"#{len(self.fds)}"] = (step.proc, outcome.fd)


def run_model(script: Script) -> list[str]:
    """The script through the simulated Windows model."""
    fs = VirtualFS()
    fs.makedirs("/d")
    for name, data in script.files.items():
        fs.write_file(f"/d/{name}", data)
    layer = OsLayer(fs, OsModel.WINDOWS)
    names = _Handles(lambda name: f"/d/{name}")
    seen = []
    for step in script.steps:
        if step.make is None:
            layer.kill(step.proc)
            seen.append(render(None, None))
            continue
        outcome = os_call(
            layer,
            step.proc,
            step.make(names),
            now=0.0,
            alive=lambda pid: True,
            path_of=lambda pid, fd: "/d/lock",
        )
        names.keep(step, outcome)
        number = outcome.errno if isinstance(outcome, Failed) else None
        seen.append(render(outcome, None if number is None else errno.errorcode.get(number)))
    return seen


class Pool:
    """Live probes per platform, started on first use and kept: a Wine start costs a second."""

    def __init__(self) -> None:
        self._probes: dict[tuple[str, int], Probe] = {}

    def get(self, platform: str, proc: int) -> Probe:
        key = (platform, proc)
        if key not in self._probes:
            self._probes[key] = self._start(platform)
        return self._probes[key]

    @staticmethod
    def _start(platform: str) -> Probe:
        if platform != "win32":
            return Probe.native()
        try:
            return Probe.wine(ensure_wine_python())
        except WineUnavailable as exc:
            pytest.fail(f"the wine tests need Wine: {exc}")

    def kill(self, platform: str, proc: int) -> None:
        self._probes.pop((platform, proc)).kill()

    def close(self) -> None:
        for probe in self._probes.values():
            probe.close()


@pytest.fixture(scope="module")
def pool() -> Iterator[Pool]:
    pool = Pool()
    yield pool
    pool.close()


def run_real(script: Script, pool: Pool, root: Path) -> tuple[list[str], list[str]]:
    """The script for real, each process a Windows CPython under Wine: calls and outcomes."""
    for name, data in script.files.items():
        (root / name).write_bytes(data)
    prefix = pool.get("win32", 1).path(root) + "/"
    names = _Handles(lambda name: prefix + name)
    calls, seen = [], []
    try:
        for step in script.steps:
            if step.make is None:
                pool.kill("win32", step.proc)
                names.fds = {h: pf for h, pf in names.fds.items() if pf[0] != step.proc}
                calls.append("kill")
                seen.append(render(None, None))
                continue
            effect = step.make(names)
            done = pool.get("win32", step.proc).effect(effect)
            names.keep(step, done.outcome)
            calls.append(repr(effect).replace(prefix, ""))
            seen.append(render(done.outcome, done.errno_name))
    finally:
        for proc, fd in names.fds.values():
            pool.get("win32", proc).effect(Close(fd))  # one closed already just fails: fine
    return calls, seen


def compare(script: Script, model: list[str], calls: list[str], real: list[str]) -> None:
    """Every step must agree; a step marked ``wine=`` must still show Wine's own answer."""
    rows, wrong = [], False
    for index, (step, call, said, got) in enumerate(zip(script.steps, calls, model, real)):
        expected = step.wine if step.wine is not None else re.escape(said)
        bad = re.fullmatch(expected, got) is None
        wrong |= bad
        note = "  <-- MISMATCH" if bad else ("  (Wine differs from Windows)" if step.wine else "")
        rows.append(f"{index:2} p{step.proc} {call}\n     model: {said}\n     wine:  {got}{note}")
    table = "\n".join(rows)
    assert not wrong, f"{script.name}: the model and Windows under Wine disagree\n{table}"


SCRIPTS = [
    Script(
        "replace over a file another process holds open",
        (
            do(2, lambda n: Open(n.path("store"), R), "reader"),
            do(1, lambda n: Replace(n.path("new"), n.path("store"))),
            do(2, lambda n: Close(n.fd("reader"))),
            do(1, lambda n: Replace(n.path("new"), n.path("store"))),
            do(1, lambda n: Open(n.path("store"), R), "a"),
            do(1, lambda n: Read(n.fd("a"), None)),
        ),
        {"store": b"old", "new": b"new"},
    ),
    Script(
        "replace over a file another handle of the same process holds open",
        (
            do(1, lambda n: Open(n.path("store"), RW), "a"),
            do(1, lambda n: Replace(n.path("new"), n.path("store"))),
        ),
        {"store": b"old", "new": b"new"},
    ),
    Script(
        "replace of a source another process holds open",
        (
            do(1, lambda n: Open(n.path("new"), R), "a"),
            do(2, lambda n: Replace(n.path("new"), n.path("store"))),
            do(1, lambda n: Close(n.fd("a"))),
            do(2, lambda n: Replace(n.path("new"), n.path("store"))),
        ),
        {"store": b"old", "new": b"new"},
    ),
    Script(
        "unlink of an open file",
        (
            do(2, lambda n: Open(n.path("store"), R), "b"),
            do(1, lambda n: Unlink(n.path("store"))),
            do(2, lambda n: Close(n.fd("b"))),
            do(1, lambda n: Unlink(n.path("store"))),
            do(1, lambda n: Open(n.path("store"), R)),
        ),
    ),
    Script(
        "msvcrt.locking between two processes, from the file position",
        (
            do(1, lambda n: Open(n.path("store"), RW), "a"),
            do(2, lambda n: Open(n.path("store"), RW), "b"),
            do(1, lambda n: Seek(n.fd("a"), 5)),
            do(1, lambda n: MsvcrtLocking(n.fd("a"), MsvcrtMode.NBLOCK, 2)),
            do(2, lambda n: MsvcrtLocking(n.fd("b"), MsvcrtMode.NBLOCK, 2)),
            do(2, lambda n: Seek(n.fd("b"), 6)),
            do(2, lambda n: MsvcrtLocking(n.fd("b"), MsvcrtMode.NBLOCK, 1), wine=STALE_ERRNO),
            do(1, lambda n: Seek(n.fd("a"), 5)),
            do(1, lambda n: MsvcrtLocking(n.fd("a"), MsvcrtMode.UNLOCK, 2)),
            do(2, lambda n: Seek(n.fd("b"), 6)),
            do(2, lambda n: MsvcrtLocking(n.fd("b"), MsvcrtMode.NBLOCK, 1)),
        ),
    ),
    Script(
        "msvcrt.locking between two handles of one process, released on close",
        (
            do(1, lambda n: Open(n.path("lock"), RWC), "a"),
            do(1, lambda n: Open(n.path("lock"), RWC), "b"),
            do(1, lambda n: MsvcrtLocking(n.fd("a"), MsvcrtMode.NBLOCK, 1)),
            do(1, lambda n: MsvcrtLocking(n.fd("b"), MsvcrtMode.NBLOCK, 1), wine=STALE_ERRNO),
            do(1, lambda n: Close(n.fd("a"))),
            do(1, lambda n: MsvcrtLocking(n.fd("b"), MsvcrtMode.NBLOCK, 1)),
        ),
    ),
    Script(
        "msvcrt.locking unlock of a range nobody locked",
        (
            do(1, lambda n: Open(n.path("lock"), RWC), "a"),
            do(1, lambda n: MsvcrtLocking(n.fd("a"), MsvcrtMode.UNLOCK, 1), wine=STALE_ERRNO),
        ),
    ),
    Script(
        "LockFileEx exclusive against shared, across processes",
        (
            do(1, lambda n: Open(n.path("lock"), RWC), "a"),
            do(2, lambda n: Open(n.path("lock"), RWC), "b"),
            do(1, lambda n: LockFileEx(n.fd("a"), LockOp.SHARED, False)),
            do(2, lambda n: LockFileEx(n.fd("b"), LockOp.SHARED, False)),
            do(2, lambda n: LockFileEx(n.fd("b"), LockOp.EXCLUSIVE, False, 0, 1)),
            do(1, lambda n: LockFileEx(n.fd("a"), LockOp.UNLOCK, False)),
            do(2, lambda n: LockFileEx(n.fd("b"), LockOp.UNLOCK, False)),
            do(2, lambda n: LockFileEx(n.fd("b"), LockOp.EXCLUSIVE, False)),
            do(1, lambda n: LockFileEx(n.fd("a"), LockOp.SHARED, False)),
            do(1, lambda n: LockFileEx(n.fd("a"), LockOp.EXCLUSIVE, False, 1, 4)),
        ),
    ),
    Script(
        "LockFileEx locks go when the handle closes or the process dies",
        (
            do(1, lambda n: Open(n.path("lock"), RWC), "a"),
            do(2, lambda n: Open(n.path("lock"), RWC), "b"),
            do(1, lambda n: LockFileEx(n.fd("a"), LockOp.EXCLUSIVE, False)),
            do(2, lambda n: LockFileEx(n.fd("b"), LockOp.EXCLUSIVE, False)),
            do(1, lambda n: Close(n.fd("a"))),
            do(2, lambda n: LockFileEx(n.fd("b"), LockOp.EXCLUSIVE, False)),
            kill(2),
            do(1, lambda n: Open(n.path("lock"), RWC), "c"),
            do(1, lambda n: LockFileEx(n.fd("c"), LockOp.EXCLUSIVE, False)),
        ),
    ),
    Script(
        "names are case-insensitive",
        (
            do(1, lambda n: Open(n.path("STORE"), R), "a"),
            do(1, lambda n: Read(n.fd("a"), None)),
            do(2, lambda n: Stat(n.path("Store"))),
            do(2, lambda n: CreateExclusive(n.path("sTore"))),
            do(2, lambda n: Replace(n.path("New"), n.path("NEW2"))),
            do(2, lambda n: Open(n.path("new2"), R)),
        ),
        {"store": b"0123456789", "new": b"n"},
    ),
    Script(
        "there is no fcntl: flock and lockf fail with ENOSYS",
        (
            do(1, lambda n: Open(n.path("lock"), RWC), "a"),
            do(1, lambda n: Flock(n.fd("a"), LockOp.EXCLUSIVE, False)),
            do(1, lambda n: Lockf(n.fd("a"), LockOp.EXCLUSIVE, False)),
        ),
    ),
]

WINE_DIFFERS = [
    Script(
        "reads and writes of a range another handle locked (Wine has no mandatory locks)",
        (
            do(1, lambda n: Open(n.path("store"), RW), "a"),
            do(2, lambda n: Open(n.path("store"), RW), "b"),
            do(1, lambda n: LockFileEx(n.fd("a"), LockOp.EXCLUSIVE, False, 0, 5)),
            do(2, lambda n: Read(n.fd("b"), 3), wine=re.escape("ReadData(data=b'012')")),
            do(2, lambda n: Write(n.fd("b"), b"x"), wine=re.escape("Wrote(count=1)")),
            do(2, lambda n: Seek(n.fd("b"), 5)),
            do(2, lambda n: Read(n.fd("b"), 2)),
            do(1, lambda n: Read(n.fd("a"), 3)),
        ),
    ),
    Script(
        "UnlockFileEx of a range that is not locked (Windows: ERROR_NOT_LOCKED, 158)",
        (
            do(1, lambda n: Open(n.path("lock"), RWC), "a"),
            do(1, lambda n: LockFileEx(n.fd("a"), LockOp.EXCLUSIVE, False, 0, 10)),
            do(
                1,
                lambda n: LockFileEx(n.fd("a"), LockOp.UNLOCK, False, 0, 5),
                wine=re.escape("PermissionError(EACCES, winerror=33)"),
            ),
            do(1, lambda n: LockFileEx(n.fd("a"), LockOp.UNLOCK, False, 0, 10)),
        ),
    ),
]

MODEL_MISMATCHES = [
    pytest.param(
        Script(
            "LockFileEx over a range the same handle locked",
            (
                do(1, lambda n: Open(n.path("lock"), RWC), "a"),
                do(1, lambda n: LockFileEx(n.fd("a"), LockOp.EXCLUSIVE, False, 0, 10)),
                do(1, lambda n: LockFileEx(n.fd("a"), LockOp.SHARED, False, 0, 10)),
                do(1, lambda n: LockFileEx(n.fd("a"), LockOp.SHARED, False, 20, 10)),
                do(1, lambda n: LockFileEx(n.fd("a"), LockOp.EXCLUSIVE, False, 20, 10)),
            ),
        ),
        marks=pytest.mark.xfail(
            strict=True,
            reason="MODEL MISMATCH: a handle may take a shared lock over its own exclusive "
            "range, and may not take an exclusive lock over its own shared range "
            "(LockFileEx docs; Wine agrees); OsLayer.can_range_lock has it the other way",
        ),
        id="own-range-overlap",
    ),
]


@pytest.mark.wine
@pytest.mark.parametrize(
    "script",
    [
        *(pytest.param(s, id=s.name) for s in SCRIPTS + WINE_DIFFERS),
        *MODEL_MISMATCHES,
    ],
)
def test_windows_model_matches_windows_under_wine(
    script: Script, pool: Pool, tmp_path: Path
) -> None:
    model = run_model(script)
    calls, real = run_real(script, pool, tmp_path)
    compare(script, model, calls, real)


@pytest.mark.wine
def test_fcntl_does_not_import_and_msvcrt_does(pool: Pool) -> None:
    probe = pool.get("win32", 1)
    assert probe.platform == "win32"
    code = (
        "import importlib, msvcrt\n"
        "try:\n    importlib.import_module('fcntl')\nexcept ImportError as exc:\n"
        "    result = [type(exc).__name__, msvcrt.LK_LOCK, msvcrt.LK_NBLCK]\n"
    )
    assert probe.exec(code) == ["ModuleNotFoundError", 1, 2]
