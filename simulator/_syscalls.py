"""Carrying out one OS-level effect against the virtual filesystem.

The one place an effect meets the OS model: each call either returns its
outcome or raises the ``OSError`` the real call would, which comes back as
``Failed``.  Behaviour the model does not cover raises ``NotModelled``: the
simulator refuses rather than guess.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import assert_never

from refresh_engine import (
    Alive,
    Clock,
    Close,
    CreateExclusive,
    Done,
    Effect,
    Failed,
    Flock,
    Fsync,
    GetPid,
    HttpPost,
    Lockf,
    LockFileEx,
    Log,
    Mkdir,
    MsvcrtLocking,
    Mutex,
    Now,
    Open,
    Opened,
    Outcome,
    Pid,
    ProcessAlive,
    Read,
    ReadData,
    Replace,
    Rmdir,
    Seek,
    Sleep,
    Stat,
    StatResult,
    Touch,
    Truncate,
    Unlink,
    Write,
    Wrote,
)

from ._errors import NotModelled
from ._vfs import VirtualFS


def os_call(
    fs: VirtualFS, pid: int, effect: Effect, *, now: float, alive: Callable[[int], bool]
) -> Outcome:
    """Do ``effect`` for process ``pid``; an ``OSError`` becomes ``Failed``."""
    try:
        return _call(fs, pid, effect, now, alive)
    except OSError as exc:
        return Failed.from_exception(exc)


def _call(
    fs: VirtualFS, pid: int, effect: Effect, now: float, alive: Callable[[int], bool]
) -> Outcome:
    match effect:
        case Open(path, flags):
            return Opened(fs.open(pid, path, flags))
        case CreateExclusive(path):
            return Opened(fs.create_exclusive(pid, path))
        case Read(fd, size):
            return ReadData(fs.read(pid, fd, size))
        case Write(fd, data):
            return Wrote(fs.write(pid, fd, data))
        case Truncate(fd, size):
            fs.truncate(pid, fd, size)
        case Fsync(fd):
            fs.fsync(pid, fd)
        case Close(fd):
            fs.close(pid, fd)
        case Replace(src, dst):
            fs.replace(src, dst)
        case Unlink(path):
            fs.unlink(path)
        case Mkdir(path):
            fs.mkdir(path)
        case Stat(path):
            size, mtime = fs.stat(path)
            return StatResult(size, mtime)
        case Flock(fd, op, _):
            fs.flock(pid, fd, op)
        case Now():
            return Clock(now)
        case GetPid():
            return Pid(pid)
        case ProcessAlive(other):
            return Alive(alive(other))
        case Seek() | Rmdir() | Touch() | Lockf() | MsvcrtLocking() | LockFileEx():
            raise NotModelled(f"{type(effect).__name__} is not modelled by this OS model yet")
        case Log():
            pass
        case HttpPost() | Sleep() | Mutex():
            raise AssertionError("the kernel handles HttpPost, Sleep and Mutex itself")
        case _:
            assert_never(effect)
    return Done()
