"""The lock zoo: every way real refresh engines serialize a refresh, as flows.

Each kind acquires with ``acquire_lock(kind, path, ...)`` and gives back a
``Held`` that ``release_lock`` needs.  Which one excludes what depends on
the OS and on the process layout (a lockf lock belongs to the process, a
flock to the open file description, a Windows lock to the handle), which is
exactly what the suite checks, so none of them is "wrong" on its own.
"""

from __future__ import annotations

import contextlib
import enum
import posixpath
import re
from dataclasses import dataclass

from . import _flow as ops
from ._effects import LockOp, MsvcrtMode, OpenFlags
from ._errors import LockTimeout
from ._flow import Flow
from ._store import split_path


class LockKind(enum.Enum):
    NATIVE = "native"  # the OS's own blocking lock: flock on POSIX, LockFileEx on Windows
    NONE = "none"  # no lock at all
    MUTEX = "mutex"  # an in-process mutex: serializes one process's agents only
    FLOCK = "flock"  # fcntl.flock on a lock file (per open file description)
    LOCKF = "lockf"  # fcntl.lockf record lock (per process; any close drops it)
    EXCL_FILE = "excl-file"  # O_CREAT|O_EXCL lock file, stale-broken by age or dead pid
    MKDIR = "mkdir"  # mkdir lock dir with an mtime lease (Node's proper-lockfile)
    MSVCRT = "msvcrt"  # msvcrt.locking LK_LOCK on byte 0 (Windows)
    LOCKFILEEX = "lockfileex"  # LockFileEx exclusive (Windows; msal-extensions)
    FILELOCK = "filelock"  # the filelock library: flock (POSIX) or msvcrt (Windows), polled


class LockScope(enum.Enum):
    AGENT_DIR = "agent-dir"  # a lock per agent directory: serializes nothing shared
    STORE_FILE = "store-file"  # next to the store file the engine reads
    PROFILE = "profile"  # per provider + profileId in the shared state dir


@dataclass(frozen=True, slots=True)
class LockTiming:
    """How lock kinds that poll or lease behave, in seconds."""

    poll: float = 0.05  # filelock's default poll interval
    stale: float = 180.0  # an O_EXCL lock file older than this is broken (OpenClaw: 180 s)
    lease: float = 10.0  # a mkdir lock whose mtime is older than this is broken
    #: how long a blocking or polled wait lasts before it ends in ``LockTimeout`` (None: for
    #: ever): longer than a holder's slowest honest refresh (a 30 s request, a Retry-After
    #: of up to 60 s waited out, a 30 s retry), so only a stuck holder runs into it
    timeout: float | None = 300.0


DEFAULT_TIMING = LockTiming()


@dataclass(frozen=True, slots=True)
class Held:
    """What was acquired: the kind, the lock's path and the descriptor, if any."""

    kind: LockKind
    path: str
    fd: int | None = None


def lock_path_for(
    scope: LockScope, *, key: str, agent_dir: str, store_path: str, state_dir: str
) -> str:
    """Where a lock of ``scope`` lives."""
    match scope:
        case LockScope.AGENT_DIR:
            return posixpath.join(agent_dir, "auth.lock")
        case LockScope.STORE_FILE:
            return store_path + ".lock"
        case LockScope.PROFILE:
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", key)
            return posixpath.join(state_dir, "locks", f"{safe}.lock")


def ensure_dir(path: str) -> Flow[None]:
    with contextlib.suppress(FileExistsError):
        yield from ops.mkdir(path)


def acquire_lock(
    kind: LockKind, path: str, *, platform: str = "linux", timing: LockTiming = DEFAULT_TIMING
) -> Flow[Held]:
    """Take the lock, waiting as the kind waits."""
    if kind is LockKind.NATIVE:
        kind = LockKind.LOCKFILEEX if platform == "win32" else LockKind.FLOCK
    if kind is LockKind.NONE:
        return Held(kind, path)
    if kind is LockKind.MUTEX:
        yield from ops.mutex(path, LockOp.EXCLUSIVE)
        return Held(kind, path)
    yield from ensure_dir(split_path(path)[0])
    if kind is LockKind.FILELOCK:
        kind = LockKind.MSVCRT if platform == "win32" else LockKind.FLOCK
        return (yield from _polled(kind, path, timing))
    if kind is LockKind.EXCL_FILE:
        return (yield from _excl_file(path, timing))
    if kind is LockKind.MKDIR:
        return (yield from _mkdir_lease(path, timing))
    fd = yield from ops.open_file(path, OpenFlags.WRITE | OpenFlags.CREATE)
    timeout = timing.timeout
    try:
        match kind:
            case LockKind.FLOCK:
                yield from ops.flock(fd, LockOp.EXCLUSIVE, timeout=timeout)
            case LockKind.LOCKF:
                yield from ops.lockf(fd, LockOp.EXCLUSIVE, timeout=timeout)
            case LockKind.MSVCRT:  # LK_LOCK gives up by itself, after ten tries a second apart
                yield from ops.seek(fd, 0)
                yield from ops.msvcrt_locking(fd, MsvcrtMode.LOCK, 1)
            case LockKind.LOCKFILEEX:
                yield from ops.lock_file_ex(fd, LockOp.EXCLUSIVE, timeout=timeout)
    except TimeoutError:
        yield from ops.close(fd)
        raise LockTimeout(path, timeout) from None
    except Exception:
        yield from ops.close(fd)
        raise
    return Held(kind, path, fd)


def release_lock(held: Held) -> Flow[None]:
    """Give the lock back; the lock file stays (unlinking it races new lockers)."""
    match held.kind:
        case LockKind.NONE:
            return
        case LockKind.MUTEX:
            yield from ops.mutex(held.path, LockOp.UNLOCK)
            return
        case LockKind.EXCL_FILE:
            if held.fd is not None:
                yield from ops.close(held.fd)
            yield from _unlink_if_ours(held.path)
            return
        case LockKind.MKDIR:
            yield from ops.rmdir(held.path)
            return
    assert held.fd is not None
    try:
        match held.kind:
            case LockKind.FLOCK:
                yield from ops.flock(held.fd, LockOp.UNLOCK)
            case LockKind.LOCKF:
                yield from ops.lockf(held.fd, LockOp.UNLOCK)
            case LockKind.MSVCRT:
                yield from ops.seek(held.fd, 0)
                yield from ops.msvcrt_locking(held.fd, MsvcrtMode.UNLOCK, 1)
            case LockKind.LOCKFILEEX:
                yield from ops.lock_file_ex(held.fd, LockOp.UNLOCK)
    finally:
        yield from ops.close(held.fd)


def _polled(kind: LockKind, path: str, timing: LockTiming) -> Flow[Held]:
    """The filelock library's loop: a non-blocking attempt, then sleep and retry."""
    fd = yield from ops.open_file(path, OpenFlags.WRITE | OpenFlags.CREATE)
    waited = 0.0  # counted in polls, not read from a clock: no step more per attempt
    while True:
        try:
            if kind is LockKind.MSVCRT:
                yield from ops.seek(fd, 0)
                yield from ops.msvcrt_locking(fd, MsvcrtMode.NBLOCK, 1)
            else:
                yield from ops.flock(fd, LockOp.EXCLUSIVE, blocking=False)
        except OSError:
            if timing.timeout is not None and waited >= timing.timeout:
                yield from ops.close(fd)
                raise LockTimeout(path, timing.timeout) from None
            yield from ops.sleep(timing.poll)
            waited += timing.poll
            continue
        return Held(kind, path, fd)


def _excl_file(path: str, timing: LockTiming) -> Flow[Held]:
    """Create the lock file exclusively, with our pid in it; break it when stale."""
    pid = yield from ops.getpid()
    while True:
        try:
            fd = yield from ops.create_exclusive(path)
        except FileExistsError:
            if (yield from _excl_is_stale(path, timing)):
                with contextlib.suppress(FileNotFoundError):
                    yield from ops.unlink(path)
                continue
            yield from ops.sleep(timing.poll)
            continue
        yield from ops.write(fd, f"{pid}\n".encode())
        return Held(LockKind.EXCL_FILE, path, fd)


def _unlink_if_ours(path: str) -> Flow[None]:
    """Remove the lock file only if it names us: it may have been broken and re-taken."""
    pid = yield from ops.getpid()
    try:
        fd = yield from ops.open_file(path, OpenFlags.READ)
    except FileNotFoundError:
        return
    try:
        owner = (yield from ops.read(fd)).strip()
    finally:
        yield from ops.close(fd)
    if owner == str(pid).encode():
        with contextlib.suppress(FileNotFoundError):
            yield from ops.unlink(path)


def _excl_is_stale(path: str, timing: LockTiming) -> Flow[bool]:
    try:
        info = yield from ops.stat(path)
        fd = yield from ops.open_file(path, OpenFlags.READ)
    except FileNotFoundError:
        return False  # gone already: just retry
    try:
        text = yield from ops.read(fd)
    finally:
        yield from ops.close(fd)
    if (yield from ops.now()) - info.mtime > timing.stale:
        return True
    owner = text.strip()
    return owner.isdigit() and not (yield from ops.process_alive(int(owner)))


def _mkdir_lease(path: str, timing: LockTiming) -> Flow[Held]:
    """proper-lockfile: mkdir is the lock; an mtime older than the lease breaks it."""
    while True:
        try:
            yield from ops.mkdir(path)
        except FileExistsError:
            try:
                info = yield from ops.stat(path)
            except FileNotFoundError:
                continue
            if (yield from ops.now()) - info.mtime > timing.lease:
                with contextlib.suppress(FileNotFoundError):
                    yield from ops.rmdir(path)
                continue
            yield from ops.sleep(timing.poll)
            continue
        return Held(LockKind.MKDIR, path)


def renew_lease(held: Held) -> Flow[None]:
    """Touch a mkdir lock so it is not broken while its holder still works."""
    if held.kind is LockKind.MKDIR:
        yield from ops.touch(held.path)
