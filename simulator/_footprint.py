"""Footprints: which shared objects a step reads or writes, for partial-order reduction.

Two steps are *dependent* when they touch one object and at least one of
them writes it; independent steps commute, so an exhaustive search need
only try one of their orders.  Objects are named strings: a directory entry
(``path:/x``), an inode's data (``ino:7``), an inode's locks (``lock:7``), a
process's descriptor table (``fdt:1001``), the server (``server``), the
process table (``procs``).  A footprint may over-approximate (that costs
reduction) but must never miss an access (that would cost soundness).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import TYPE_CHECKING

from refresh_engine import (
    Close,
    CreateExclusive,
    Effect,
    Flock,
    Fsync,
    HttpPost,
    Lockf,
    LockFileEx,
    Mkdir,
    MsvcrtLocking,
    Open,
    OpenFlags,
    ProcessAlive,
    Read,
    Replace,
    Rmdir,
    Stat,
    Touch,
    Truncate,
    Unlink,
    Write,
)

if TYPE_CHECKING:
    from ._filesystem import FileSystem

#: ``(object, writes)`` pairs.
Footprint = frozenset[tuple[str, bool]]

#: A step that touches everything: a process kill.
EVERYTHING: Footprint = frozenset({("*", True)})
SERVER_READ: Footprint = frozenset({("server", False)})


def local(agent: str) -> Footprint:
    """A step that touches nothing shared (``now``, ``log``, a response arriving)."""
    return frozenset({(f"agent:{agent}", True)})


def touches_everything(footprint: Footprint) -> bool:
    """Whether a step depends on every other step, whatever the other touches (a kill)."""
    return footprint is EVERYTHING


def dependent(first: Footprint, second: Footprint) -> bool:
    """Whether two steps may not commute: one touches everything, or both an object one writes.

    The race scan's indexes (``_races``) rely on exactly this rule; change both together.
    """
    if touches_everything(first) or touches_everything(second):
        return True
    for obj, writes in first:
        for other, other_writes in second:
            if obj == other and (writes or other_writes):
                return True
    return False


def effect_footprint(
    fs: FileSystem,
    pid: int,
    agent: str,
    effect: Effect,
    fold: Callable[[str], str] = str,
    locked: Callable[[int], bool] = lambda ino: True,
    windows: bool = False,
) -> Footprint:
    """What carrying out ``effect`` now, for ``pid``, would touch.

    ``fold`` maps a path to the name the filesystem keys on (case-folding
    where names are case-insensitive); ``locked(ino)`` says whether any lock
    is held on an inode, so a ``close`` that could drop one (a flock, a
    process's lockf, a handle's byte ranges) depends on lockers; with
    ``windows`` an inode's open handles decide whether a replace or a delete
    succeeds, so opens and closes depend on them.
    """

    def _norm(path: str) -> str:
        return fold(posixpath.normpath(path))

    table = (f"fdt:{pid}", True)
    match effect:
        case Open(path, flags):
            p = _norm(path)
            ino = fs.inode_at(p)
            if ino is None:
                creates = OpenFlags.CREATE in flags
                return frozenset({(f"path:{p}", creates), table})
            data = (f"ino:{ino}", OpenFlags.TRUNCATE in flags)
            handles = {(f"open:{ino}", True)} if windows else set()
            return frozenset({(f"path:{p}", False), data, table, *handles})
        case CreateExclusive(path):
            return frozenset({(f"path:{_norm(path)}", True), table})
        case Read(fd) | Write(fd) | Truncate(fd) | Fsync(fd):
            ino = fs.inode_of(pid, fd)
            if ino is None:
                return local(agent)
            return frozenset({(f"ino:{ino}", not isinstance(effect, Read))})
        case Close(fd):
            ino = fs.inode_of(pid, fd)
            if ino is None:
                return frozenset({table})
            touched = {table}
            if locked(ino):
                touched.add((f"lock:{ino}", True))
            if windows:
                touched.add((f"open:{ino}", True))
            return frozenset(touched)
        case Flock(fd) | Lockf(fd):
            ino = fs.inode_of(pid, fd)
            return local(agent) if ino is None else frozenset({(f"lock:{ino}", True)})
        case MsvcrtLocking(fd) | LockFileEx(fd):
            ino = fs.inode_of(pid, fd)  # mandatory: reads and writes of the range depend too
            if ino is None:
                return local(agent)
            return frozenset({(f"lock:{ino}", True), (f"ino:{ino}", True)})
        case Replace(src, dst):
            names = {(f"path:{_norm(src)}", True), (f"path:{_norm(dst)}", True)}
            return frozenset(names | _handles(fs, windows, src, dst, fold=_norm))
        case Mkdir(path):
            p = _norm(path)  # mkdir of an existing name fails and changes nothing
            return frozenset({(f"path:{p}", fs.inode_at(p) is None)})
        case Unlink(path) | Rmdir(path):
            return frozenset(
                {(f"path:{_norm(path)}", True)} | _handles(fs, windows, path, fold=_norm)
            )
        case Stat(path) | Touch(path):
            p = _norm(path)
            found = fs.inode_at(p)
            touched = {(f"ino:{found}", isinstance(effect, Touch))} if found is not None else set()
            return frozenset({(f"path:{p}", False), *touched})
        case HttpPost():
            return frozenset({("server", True)})
        case ProcessAlive():
            return frozenset({("procs", False)})
    return local(agent)  # Now, Sleep, Log, GetPid, Seek: private to the agent


def _handles(
    fs: FileSystem, windows: bool, *paths: str, fold: Callable[[str], str]
) -> set[tuple[str, bool]]:
    """On Windows, whether the files are open decides a replace or delete: read that."""
    if not windows:
        return set()
    found = (fs.inode_at(fold(path)) for path in paths)
    return {(f"open:{ino}", False) for ino in found if ino is not None}
