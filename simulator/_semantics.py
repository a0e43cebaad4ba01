"""One table of effect semantics: what each effect touches, who performs it, what it changes.

Every effect type of the ``Effect`` union has one row (a ``Rule``): its
footprint for partial-order reduction, how the simulator carries it out (one
OS call here, or the kernel itself for an effect that waits or takes two
steps), whether it may have to wait, and which paths a successful call may
change, so the kernel knows when to look at a credential store.  Faults have
a row each too (``fault_footprint``).  ``rule_for`` is exhaustive over the
union (``assert_never``); an object outside it touches everything.  The
argument for each footprint is in ``docs/semantics.md``.
"""

from __future__ import annotations

import enum
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, assert_never, get_args

from refresh_engine import (
    Alive,
    Clock,
    Close,
    CreateExclusive,
    Done,
    Effect,
    Flock,
    Fsync,
    GetPid,
    HttpPost,
    Lockf,
    LockFileEx,
    LockOp,
    Log,
    Mkdir,
    MsvcrtLocking,
    Mutex,
    Now,
    Open,
    Opened,
    OpenFlags,
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

from ._faults import FaultKind
from ._footprint import EVERYTHING, Footprint, local

if TYPE_CHECKING:
    from ._os import OsLayer
    from ._vfs import VirtualFS

__all__ = [
    "EFFECT_TYPES",
    "TABLE",
    "Machine",
    "Performer",
    "Rule",
    "Scene",
    "changed_paths",
    "fault_footprint",
    "footprint",
    "rule_for",
]

E = TypeVar("E")
Touched = set[tuple[str, bool]]

#: Every effect type, in the order the union declares them.
EFFECT_TYPES: tuple[type, ...] = get_args(Effect)


class Performer(enum.Enum):
    OS = "os"  # one call against the OS model (``Rule.perform``)
    KERNEL = "kernel"  # the kernel itself: the effect waits, or takes two steps


@dataclass(frozen=True, slots=True)
class Scene:
    """What a footprint is computed against: the filesystem now, and whose step it is.

    ``fold`` maps a path to the name the filesystem keys on (case-folding
    where names are case-insensitive); with ``windows``, open handles decide
    whether a replace or a delete succeeds, and byte-range locks are mandatory.
    """

    fs: VirtualFS
    pid: int
    agent: str
    fold: Callable[[str], str] = str
    windows: bool = False


@dataclass(frozen=True, slots=True)
class Machine:
    """What carrying an effect out needs: the OS model, the caller, its clock and the kernel."""

    os: OsLayer
    pid: int
    now: float = 0.0
    alive: Callable[[int], bool] = lambda pid: True
    path_of: Callable[[int, int], str] = lambda pid, fd: ""
    mutex_free: Callable[[int, str], bool] = lambda pid, name: True


@dataclass(frozen=True, slots=True)
class Rule(Generic[E]):
    """How the simulator treats one effect type."""

    effect: type[E]
    touches: Callable[[Scene, E], Footprint]
    performer: Performer
    perform: Callable[[Machine, E], Outcome] | None = None  # None: the kernel's own
    #: whether the call can run now; None: it never waits
    can_run: Callable[[Machine, E], bool] | None = None
    #: the paths a successful call may have changed (for the store watch)
    changes: Callable[[E, Callable[[int], str]], tuple[str, ...]] | None = None


# ------------------------------------------------------------------ footprints


def _norm(path: str) -> str:
    norm = posixpath.normpath(path)
    return "/" + norm.lstrip("/") if norm.startswith("//") else norm


def _entry(scene: Scene, path: str, writes: bool) -> Touched:
    """A directory entry, and every ancestor: the path walk reads each one."""
    name = scene.fold(_norm(path))
    touched = {(f"path:{name}", writes)}
    parent = name
    while parent != "/":
        parent = posixpath.dirname(parent)
        touched.add((f"path:{parent}", False))
    return touched


def _parent_mtime(scene: Scene, path: str) -> Touched:
    """Adding or removing a name sets its directory's mtime to now.

    Two such steps commute (both set the same now), so they *read*
    ``dirtime``; a ``Stat`` that returns the mtime *writes* it, which makes
    it dependent on every setter.  See docs/semantics.md.
    """
    ino = scene.fs.inode_at(posixpath.dirname(scene.fold(_norm(path))))
    return set() if ino is None else {(f"dirtime:{ino}", False)}


def _ino(scene: Scene, path: str) -> int | None:
    return scene.fs.inode_at(scene.fold(_norm(path)))


def _handles(scene: Scene, *paths: str) -> Touched:
    """On Windows, whether a file is open decides a replace or a delete: read that."""
    if not scene.windows:
        return set()
    found = (_ino(scene, path) for path in paths)
    return {(f"open:{ino}", False) for ino in found if ino is not None}


def _new_slot(scene: Scene) -> Touched:
    """An open takes the lowest free descriptor: it reads every slot below and writes its own."""
    used = set(scene.fs.open_fds(scene.pid))
    fd = 3
    touched = set()
    while fd in used:
        touched.add((f"fd:{scene.pid}:{fd}", False))
        fd += 1
    touched.add((f"fd:{scene.pid}:{fd}", True))
    return touched


def _slot(scene: Scene, fd: int) -> tuple[Touched, int | None]:
    """A descriptor call reads its slot (which open file it names) and returns that inode."""
    return {(f"fd:{scene.pid}:{fd}", False)}, scene.fs.inode_of(scene.pid, fd)


def _data(writes: bool, moves_offset: bool) -> Callable[[Scene, Any], Footprint]:
    """Read, Write, Truncate: the slot, the offset, the data; Windows' mandatory locks."""

    def touches(scene: Scene, effect: Any) -> Footprint:
        touched, ino = _slot(scene, effect.fd)
        if ino is None:
            return frozenset(touched)  # EBADF: changes nothing
        touched.add((f"ino:{ino}", writes))
        if moves_offset:
            touched.add((f"off:{scene.pid}:{effect.fd}", True))
        if scene.windows:
            touched.add((f"lock:{ino}", False))
        return frozenset(touched)

    return touches


def _locks(offset: bool) -> Callable[[Scene, Any], Footprint]:
    """Flock, Lockf, MsvcrtLocking, LockFileEx: the slot and the inode's locks."""

    def touches(scene: Scene, effect: Any) -> Footprint:
        touched, ino = _slot(scene, effect.fd)
        if ino is not None:
            touched.add((f"lock:{ino}", True))
            if offset:
                touched.add((f"off:{scene.pid}:{effect.fd}", False))
        return frozenset(touched)

    return touches


def _open_touches(scene: Scene, effect: Open | CreateExclusive) -> Footprint:
    flags = effect.flags if isinstance(effect, Open) else OpenFlags.CREATE | OpenFlags.EXCLUSIVE
    ino = _ino(scene, effect.path)
    if ino is None:
        creates = OpenFlags.CREATE in flags
        touched = _entry(scene, effect.path, creates) | _new_slot(scene)
        if creates:
            touched |= _parent_mtime(scene, effect.path)
        return frozenset(touched)
    touched = _entry(scene, effect.path, False) | _new_slot(scene)
    if OpenFlags.TRUNCATE in flags:
        touched.add((f"ino:{ino}", True))
    if scene.windows:
        touched.add((f"open:{ino}", True))
    return frozenset(touched)


def _fsync_touches(scene: Scene, effect: Fsync) -> Footprint:
    touched, ino = _slot(scene, effect.fd)
    if ino is not None:
        touched |= {(f"ino:{ino}", False), (f"sync:{ino}", True)}
    return frozenset(touched)


def _seek_touches(scene: Scene, effect: Seek) -> Footprint:
    touched, ino = _slot(scene, effect.fd)
    if ino is not None:
        touched.add((f"off:{scene.pid}:{effect.fd}", True))
    return frozenset(touched)


def _close_touches(scene: Scene, effect: Close) -> Footprint:
    """A close frees its slot and may drop any lock on the file (flock, lockf, ranges)."""
    slot = f"fd:{scene.pid}:{effect.fd}"
    ino = scene.fs.inode_of(scene.pid, effect.fd)
    if ino is None:
        return frozenset({(slot, False)})
    touched = {(slot, True), (f"lock:{ino}", True)}
    if scene.windows:
        touched.add((f"open:{ino}", True))
    return frozenset(touched)


def _replace_touches(scene: Scene, effect: Replace) -> Footprint:
    touched = _entry(scene, effect.src, True) | _entry(scene, effect.dst, True)
    touched |= _parent_mtime(scene, effect.src) | _parent_mtime(scene, effect.dst)
    return frozenset(touched | _handles(scene, effect.src, effect.dst))


def _remove_touches(scene: Scene, effect: Unlink | Rmdir) -> Footprint:
    touched = _entry(scene, effect.path, True) | _parent_mtime(scene, effect.path)
    return frozenset(touched | _handles(scene, effect.path))


def _mkdir_touches(scene: Scene, effect: Mkdir) -> Footprint:
    if _ino(scene, effect.path) is not None:
        return frozenset(_entry(scene, effect.path, False))  # EEXIST: changes nothing
    return frozenset(_entry(scene, effect.path, True) | _parent_mtime(scene, effect.path))


def _inode_touches(writes: bool) -> Callable[[Scene, Any], Footprint]:
    """Stat (reads size and mtime; a directory's mtime is ``dirtime``) and Touch (sets it)."""

    def touches(scene: Scene, effect: Any) -> Footprint:
        touched = _entry(scene, effect.path, False)
        ino = _ino(scene, effect.path)
        if ino is not None:
            touched.add((f"ino:{ino}", writes))
            if not writes:
                touched.add((f"dirtime:{ino}", True))
        return frozenset(touched)

    return touches


def _private(scene: Scene, effect: Any) -> Footprint:
    return local(scene.agent)


def _server(scene: Scene, effect: Any) -> Footprint:
    return frozenset({("server", True)})


def _procs(scene: Scene, effect: Any) -> Footprint:
    return frozenset({("procs", False)})


def _mutex_touches(scene: Scene, effect: Mutex) -> Footprint:
    return frozenset({(f"mutex:{scene.pid}:{effect.name}", True)})


# ---------------------------------------------------------------- performing


def _done(call: Callable[[Machine, Any], object]) -> Callable[[Machine, Any], Outcome]:
    def perform(machine: Machine, effect: Any) -> Outcome:
        call(machine, effect)
        return Done()

    return perform


def _stat(machine: Machine, effect: Stat) -> Outcome:
    size, mtime = machine.os.stat(effect.path)
    return StatResult(size, mtime)


def _waits_for_lock(kind: str) -> Callable[[Machine, Any], bool]:
    def can_run(machine: Machine, effect: Any) -> bool:
        os, pid, fd = machine.os, machine.pid, effect.fd
        if not effect.blocking or effect.op is LockOp.UNLOCK or os.fs.inode_of(pid, fd) is None:
            return True  # it never waits (a bad descriptor fails at once)
        if kind == "flock":
            return os.can_flock(pid, fd, effect.op, machine.path_of(pid, fd))
        if kind == "lockf":
            return os.can_lockf(pid, fd, effect.op, machine.path_of(pid, fd))
        end = effect.offset + effect.length
        return os.can_range_lock(pid, fd, effect.offset, end, effect.op is LockOp.EXCLUSIVE)

    return can_run


def _mutex_free(machine: Machine, effect: Mutex) -> bool:
    return effect.op is LockOp.UNLOCK or machine.mutex_free(machine.pid, effect.name)


# ------------------------------------------------------------ what may change


def _at(effect: Any, path_of: Callable[[int], str]) -> tuple[str, ...]:
    return (_norm(effect.path),)


def _through(effect: Any, path_of: Callable[[int], str]) -> tuple[str, ...]:
    return (path_of(effect.fd),)


def _open_changes(effect: Open, path_of: Callable[[int], str]) -> tuple[str, ...]:
    creates_or_truncates = OpenFlags.TRUNCATE in effect.flags or OpenFlags.CREATE in effect.flags
    return (_norm(effect.path),) if creates_or_truncates else ()


def _replace_changes(effect: Replace, path_of: Callable[[int], str]) -> tuple[str, ...]:
    return (_norm(effect.src), _norm(effect.dst))


# --------------------------------------------------------------------- table

OS = Performer.OS
KERNEL = Performer.KERNEL

OPEN = Rule(
    Open,
    _open_touches,
    OS,
    lambda m, e: Opened(m.os.open(m.pid, e.path, e.flags)),
    changes=_open_changes,
)
CREATE_EXCLUSIVE = Rule(
    CreateExclusive,
    _open_touches,
    OS,
    lambda m, e: Opened(m.os.create_exclusive(m.pid, e.path)),
    changes=_at,
)
READ = Rule(Read, _data(False, True), OS, lambda m, e: ReadData(m.os.read(m.pid, e.fd, e.size)))
WRITE = Rule(
    Write,
    _data(True, True),
    OS,
    lambda m, e: Wrote(m.os.write(m.pid, e.fd, e.data)),
    changes=_through,
)
TRUNCATE = Rule(
    Truncate,
    _data(True, False),
    OS,
    _done(lambda m, e: m.os.fs.truncate(m.pid, e.fd, e.size)),
    changes=_through,
)
FSYNC = Rule(Fsync, _fsync_touches, OS, _done(lambda m, e: m.os.fs.fsync(m.pid, e.fd)))
CLOSE = Rule(Close, _close_touches, OS, _done(lambda m, e: m.os.close(m.pid, e.fd)))
REPLACE = Rule(
    Replace,
    _replace_touches,
    OS,
    _done(lambda m, e: m.os.replace(e.src, e.dst)),
    changes=_replace_changes,
)
UNLINK = Rule(Unlink, _remove_touches, OS, _done(lambda m, e: m.os.unlink(e.path)), changes=_at)
MKDIR = Rule(Mkdir, _mkdir_touches, OS, _done(lambda m, e: m.os.mkdir(e.path)), changes=_at)
STAT = Rule(Stat, _inode_touches(False), OS, _stat)
FLOCK = Rule(
    Flock,
    _locks(False),
    OS,
    _done(lambda m, e: m.os.flock(m.pid, e.fd, e.op, m.path_of(m.pid, e.fd))),
    can_run=_waits_for_lock("flock"),
)
SEEK = Rule(Seek, _seek_touches, OS, lambda m, e: Position(m.os.fs.seek(m.pid, e.fd, e.offset)))
RMDIR = Rule(Rmdir, _remove_touches, OS, _done(lambda m, e: m.os.rmdir(e.path)), changes=_at)
TOUCH = Rule(Touch, _inode_touches(True), OS, _done(lambda m, e: m.os.utime(e.path)))
LOCKF = Rule(
    Lockf,
    _locks(False),
    OS,
    _done(lambda m, e: m.os.lockf(m.pid, e.fd, e.op, m.path_of(m.pid, e.fd))),
    can_run=_waits_for_lock("lockf"),
)
MSVCRT_LOCKING = Rule(
    MsvcrtLocking,
    _locks(True),
    OS,
    _done(lambda m, e: m.os.msvcrt_locking(m.pid, e.fd, e.mode, e.nbytes)),
)
LOCK_FILE_EX = Rule(
    LockFileEx,
    _locks(False),
    OS,
    _done(lambda m, e: m.os.lock_file_ex(m.pid, e.fd, e.op, e.offset, e.length)),
    can_run=_waits_for_lock("range"),
)
MUTEX = Rule(Mutex, _mutex_touches, KERNEL, can_run=_mutex_free)
GET_PID = Rule(GetPid, _private, OS, lambda m, e: Pid(m.pid))
PROCESS_ALIVE = Rule(ProcessAlive, _procs, OS, lambda m, e: Alive(m.alive(e.pid)))
HTTP_POST = Rule(HttpPost, _server, KERNEL)
NOW = Rule(Now, _private, OS, lambda m, e: Clock(m.now))
SLEEP = Rule(Sleep, _private, KERNEL)
LOG = Rule(Log, _private, OS, lambda m, e: Done())


def rule_for(effect: Effect) -> Rule[Any]:
    """The row of ``effect``'s type."""
    match effect:
        case Open():
            return OPEN
        case CreateExclusive():
            return CREATE_EXCLUSIVE
        case Read():
            return READ
        case Write():
            return WRITE
        case Truncate():
            return TRUNCATE
        case Fsync():
            return FSYNC
        case Close():
            return CLOSE
        case Replace():
            return REPLACE
        case Unlink():
            return UNLINK
        case Mkdir():
            return MKDIR
        case Stat():
            return STAT
        case Flock():
            return FLOCK
        case Seek():
            return SEEK
        case Rmdir():
            return RMDIR
        case Touch():
            return TOUCH
        case Lockf():
            return LOCKF
        case MsvcrtLocking():
            return MSVCRT_LOCKING
        case LockFileEx():
            return LOCK_FILE_EX
        case Mutex():
            return MUTEX
        case GetPid():
            return GET_PID
        case ProcessAlive():
            return PROCESS_ALIVE
        case HttpPost():
            return HTTP_POST
        case Now():
            return NOW
        case Sleep():
            return SLEEP
        case Log():
            return LOG
        case _:
            assert_never(effect)


#: Every row, in the order the ``Effect`` union declares its types.
TABLE: tuple[Rule[Any], ...] = (
    OPEN,
    CREATE_EXCLUSIVE,
    READ,
    WRITE,
    TRUNCATE,
    FSYNC,
    CLOSE,
    REPLACE,
    UNLINK,
    MKDIR,
    STAT,
    FLOCK,
    SEEK,
    RMDIR,
    TOUCH,
    LOCKF,
    MSVCRT_LOCKING,
    LOCK_FILE_EX,
    MUTEX,
    GET_PID,
    PROCESS_ALIVE,
    HTTP_POST,
    NOW,
    SLEEP,
    LOG,
)


def footprint(scene: Scene, effect: Effect) -> Footprint:
    """What carrying out ``effect`` now would touch; everything, for an unknown effect."""
    if not isinstance(effect, EFFECT_TYPES):
        return EVERYTHING
    return rule_for(effect).touches(scene, effect)


def changed_paths(effect: Effect, path_of: Callable[[int], str]) -> tuple[str, ...]:
    """The paths a successful ``effect`` may have changed; ``path_of`` names a descriptor."""
    changes = rule_for(effect).changes
    return () if changes is None else changes(effect, path_of)


def fault_footprint(fault: FaultKind, agent: str) -> Footprint:
    """What striking ``agent`` with ``fault`` touches; every fault spends the shared budget.

    A kill ends every flow of a process, closes its files and drops its
    locks; a crash does that to every process and rewinds every unsynced
    file: both touch everything.  The others change only the struck agent.
    """
    match fault:
        case FaultKind.KILL | FaultKind.CRASH:
            return EVERYTHING
        case (
            FaultKind.DROP
            | FaultKind.SERVER_ERROR
            | FaultKind.RATE_LIMIT
            | FaultKind.RESET
            | FaultKind.STALL
        ):
            return frozenset({(f"agent:{agent}", True), ("faults", True)})
        case _:
            assert_never(fault)
