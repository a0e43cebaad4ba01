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
import errno
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
    Failed,
    Flock,
    Fsync,
    GetPid,
    HttpPost,
    LinkTarget,
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
    ReadLink,
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

from ._describe import (
    describe_close,
    describe_create_exclusive,
    describe_flock,
    describe_fsync,
    describe_get_pid,
    describe_http_post,
    describe_lock_file_ex,
    describe_lockf,
    describe_log,
    describe_mkdir,
    describe_msvcrt_locking,
    describe_mutex,
    describe_now,
    describe_open,
    describe_process_alive,
    describe_read,
    describe_readlink,
    describe_replace,
    describe_rmdir,
    describe_seek,
    describe_sleep,
    describe_stat,
    describe_touch,
    describe_truncate,
    describe_unlink,
    describe_write,
)
from ._faults import FaultKind, failure, lock_fails, open_fails
from ._footprint import (
    EVERYTHING,
    Footprint,
    Scene,
    close_touches,
    data_touches,
    fsync_touches,
    inode_touches,
    lock_touches,
    mkdir_touches,
    mutex_touches,
    normalize,
    open_touches,
    private,
    procs,
    readlink_touches,
    remove_touches,
    replace_touches,
    seek_touches,
    server,
)

if TYPE_CHECKING:
    from ._os import OsLayer

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
    "io_failure",
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
    #: the effect as one line of a history, tokens fingerprinted (set below, per row)
    describe: Callable[[E], str] = lambda effect: type(effect).__name__
    #: how the call fails when an ``ioerror`` fault strikes it; None: it cannot be struck
    fails_with: Callable[[E], Failed | None] | None = None


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


# ------------------------------------------------------------- injected errors


def io_failure(effect: Effect | None) -> Failed | None:
    """How ``effect`` fails when an ``ioerror`` fault strikes it; None if it cannot be."""
    if effect is None or not isinstance(effect, EFFECT_TYPES):
        return None
    fails_with = rule_for(effect).fails_with
    return None if fails_with is None else fails_with(effect)


# ------------------------------------------------------------ what may change


def _at(effect: Any, path_of: Callable[[int], str]) -> tuple[str, ...]:
    return (normalize(effect.path),)


def _through(effect: Any, path_of: Callable[[int], str]) -> tuple[str, ...]:
    return (path_of(effect.fd),)


def _open_changes(effect: Open, path_of: Callable[[int], str]) -> tuple[str, ...]:
    creates_or_truncates = OpenFlags.TRUNCATE in effect.flags or OpenFlags.CREATE in effect.flags
    return (normalize(effect.path),) if creates_or_truncates else ()


def _replace_changes(effect: Replace, path_of: Callable[[int], str]) -> tuple[str, ...]:
    return (normalize(effect.src), normalize(effect.dst))


# --------------------------------------------------------------------- table

OS = Performer.OS
KERNEL = Performer.KERNEL

OPEN = Rule(
    Open,
    open_touches,
    OS,
    lambda m, e: Opened(m.os.open(m.pid, e.path, e.flags)),
    changes=_open_changes,
    describe=describe_open,
    fails_with=open_fails,
)
CREATE_EXCLUSIVE = Rule(
    CreateExclusive,
    open_touches,
    OS,
    lambda m, e: Opened(m.os.create_exclusive(m.pid, e.path)),
    changes=_at,
    describe=describe_create_exclusive,
    fails_with=failure(errno.ENOSPC),
)
READ = Rule(
    Read,
    data_touches(False, True),
    OS,
    lambda m, e: ReadData(m.os.read(m.pid, e.fd, e.size)),
    describe=describe_read,
)
WRITE = Rule(
    Write,
    data_touches(True, True),
    OS,
    lambda m, e: Wrote(m.os.write(m.pid, e.fd, e.data)),
    changes=_through,
    describe=describe_write,
    fails_with=failure(errno.ENOSPC),
)
TRUNCATE = Rule(
    Truncate,
    data_touches(True, False),
    OS,
    _done(lambda m, e: m.os.fs.truncate(m.pid, e.fd, e.size)),
    changes=_through,
    describe=describe_truncate,
    fails_with=failure(errno.EIO),
)
FSYNC = Rule(
    Fsync,
    fsync_touches,
    OS,
    _done(lambda m, e: m.os.fs.fsync(m.pid, e.fd)),
    describe=describe_fsync,
    fails_with=failure(errno.EIO),
)
CLOSE = Rule(
    Close, close_touches, OS, _done(lambda m, e: m.os.close(m.pid, e.fd)), describe=describe_close
)
REPLACE = Rule(
    Replace,
    replace_touches,
    OS,
    _done(lambda m, e: m.os.replace(e.src, e.dst)),
    changes=_replace_changes,
    describe=describe_replace,
    fails_with=failure(errno.EROFS),
)
UNLINK = Rule(
    Unlink,
    remove_touches,
    OS,
    _done(lambda m, e: m.os.unlink(e.path)),
    changes=_at,
    describe=describe_unlink,
)
MKDIR = Rule(
    Mkdir,
    mkdir_touches,
    OS,
    _done(lambda m, e: m.os.mkdir(e.path)),
    changes=_at,
    describe=describe_mkdir,
    fails_with=failure(errno.ENOSPC),
)
STAT = Rule(Stat, inode_touches(False), OS, _stat, describe=describe_stat)
READLINK = Rule(
    ReadLink,
    readlink_touches,
    OS,
    lambda m, e: LinkTarget(m.os.readlink(e.path)),
    describe=describe_readlink,
)
FLOCK = Rule(
    Flock,
    lock_touches(False),
    OS,
    _done(lambda m, e: m.os.flock(m.pid, e.fd, e.op, m.path_of(m.pid, e.fd))),
    can_run=_waits_for_lock("flock"),
    describe=describe_flock,
    fails_with=lock_fails,
)
SEEK = Rule(
    Seek,
    seek_touches,
    OS,
    lambda m, e: Position(m.os.fs.seek(m.pid, e.fd, e.offset)),
    describe=describe_seek,
)
RMDIR = Rule(
    Rmdir,
    remove_touches,
    OS,
    _done(lambda m, e: m.os.rmdir(e.path)),
    changes=_at,
    describe=describe_rmdir,
)
TOUCH = Rule(
    Touch, inode_touches(True), OS, _done(lambda m, e: m.os.utime(e.path)), describe=describe_touch
)
LOCKF = Rule(
    Lockf,
    lock_touches(False),
    OS,
    _done(lambda m, e: m.os.lockf(m.pid, e.fd, e.op, m.path_of(m.pid, e.fd))),
    can_run=_waits_for_lock("lockf"),
    describe=describe_lockf,
    fails_with=lock_fails,
)
MSVCRT_LOCKING = Rule(
    MsvcrtLocking,
    lock_touches(True),
    OS,
    _done(lambda m, e: m.os.msvcrt_locking(m.pid, e.fd, e.mode, e.nbytes)),
    describe=describe_msvcrt_locking,
)
LOCK_FILE_EX = Rule(
    LockFileEx,
    lock_touches(False),
    OS,
    _done(lambda m, e: m.os.lock_file_ex(m.pid, e.fd, e.op, e.offset, e.length)),
    can_run=_waits_for_lock("range"),
    describe=describe_lock_file_ex,
    fails_with=lock_fails,
)
MUTEX = Rule(Mutex, mutex_touches, KERNEL, can_run=_mutex_free, describe=describe_mutex)
GET_PID = Rule(GetPid, private, OS, lambda m, e: Pid(m.pid), describe=describe_get_pid)
PROCESS_ALIVE = Rule(
    ProcessAlive, procs, OS, lambda m, e: Alive(m.alive(e.pid)), describe=describe_process_alive
)
HTTP_POST = Rule(HttpPost, server, KERNEL, describe=describe_http_post)
NOW = Rule(Now, private, OS, lambda m, e: Clock(m.now), describe=describe_now)
SLEEP = Rule(Sleep, private, KERNEL, describe=describe_sleep)
LOG = Rule(Log, private, OS, lambda m, e: Done(), describe=describe_log)


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
    READLINK,
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


_ROWS: dict[type, Rule[Any]] = {rule.effect: rule for rule in TABLE}
if tuple(_ROWS) != EFFECT_TYPES:  # pragma: no cover - a row missing or out of order
    raise ImportError(f"the semantics table does not match the Effect union: {list(_ROWS)}")


def rule_for(effect: Effect) -> Rule[Any]:
    """The row of ``effect``'s type (one per type of the ``Effect`` union, checked at import)."""
    return _ROWS[type(effect)]


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
        file: both touch everything.  The others change only the struck agent (an
    ``ioerror`` fails the agent's call before it touches anything).
    """
    match fault:
        case FaultKind.KILL | FaultKind.CRASH | FaultKind.DENIED:  # DENIED: every later call
            return EVERYTHING
        case (
            FaultKind.DROP
            | FaultKind.SERVER_ERROR
            | FaultKind.RATE_LIMIT
            | FaultKind.RESET
            | FaultKind.STALL
            | FaultKind.SLOW
            | FaultKind.IO_ERROR
        ):
            return frozenset({(f"agent:{agent}", True), ("faults", True)})
        case _:
            assert_never(fault)
