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
    Position,
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

from ._os import OsLayer


def os_call(
    os: OsLayer,
    pid: int,
    effect: Effect,
    *,
    now: float,
    alive: Callable[[int], bool],
    path_of: Callable[[int, int], str],
) -> Outcome:
    """Do ``effect`` for process ``pid``; an ``OSError`` becomes ``Failed``."""
    os.act_as(pid)  # real processes do path-only calls (replace, stat, ...) in pid's process
    try:
        return _call(os, pid, effect, now, alive, path_of)
    except OSError as exc:
        return Failed.from_exception(exc)


def _call(
    os: OsLayer,
    pid: int,
    effect: Effect,
    now: float,
    alive: Callable[[int], bool],
    path_of: Callable[[int, int], str],
) -> Outcome:
    fs = os.fs
    match effect:
        case Open(path, flags):
            return Opened(os.open(pid, path, flags))
        case CreateExclusive(path):
            return Opened(os.create_exclusive(pid, path))
        case Read(fd, size):
            return ReadData(os.read(pid, fd, size))
        case Write(fd, data):
            return Wrote(os.write(pid, fd, data))
        case Truncate(fd, size):
            fs.truncate(pid, fd, size)
        case Fsync(fd):
            fs.fsync(pid, fd)
        case Close(fd):
            os.close(pid, fd)
        case Replace(src, dst):
            os.replace(src, dst)
        case Unlink(path):
            os.unlink(path)
        case Mkdir(path):
            os.mkdir(path)
        case Rmdir(path):
            os.rmdir(path)
        case Stat(path):
            size, mtime = os.stat(path)
            return StatResult(size, mtime)
        case Touch(path):
            os.utime(path)
        case Seek(fd, offset):
            return Position(fs.seek(pid, fd, offset))
        case Flock(fd, op, _):
            os.flock(pid, fd, op, path_of(pid, fd))
        case Lockf(fd, op, _):
            os.lockf(pid, fd, op, path_of(pid, fd))
        case MsvcrtLocking(fd, mode, nbytes):
            os.msvcrt_locking(pid, fd, mode, nbytes)
        case LockFileEx(fd, op, _, offset, length):
            os.lock_file_ex(pid, fd, op, offset, length)
        case Now():
            return Clock(now)
        case GetPid():
            return Pid(pid)
        case ProcessAlive(other):
            return Alive(alive(other))
        case Log():
            pass
        case HttpPost() | Sleep() | Mutex():
            raise AssertionError("the kernel handles HttpPost, Sleep and Mutex itself")
        case _:
            assert_never(effect)
    return Done()
