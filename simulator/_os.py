"""OS models over the virtual filesystem: what differs between Linux, macOS and Windows.

The filesystem (``_vfs``) has POSIX semantics; this layer adds what each OS
decides on top, as Python on that OS would show it:

- ``linux``, ``macos``: ``flock`` per open file description (in ``_vfs``);
  ``lockf``/fcntl record locks per *process*, dropped when the process closes
  any descriptor of the file; the two kinds do not exclude each other (as
  corpus class 10 has it); ``msvcrt.locking`` and ``LockFileEx`` do not
  exist (``OSError(ENOSYS)``); macOS names are case-insensitive.
- ``windows``: no ``fcntl`` (``flock``/``lockf`` fail with ``ENOSYS``, as
  ``RealWorld`` reports a missing ``fcntl``); replacing a file another handle
  holds open fails with ``PermissionError`` (winerror 5), deleting one with
  ``PermissionError`` (winerror 32); locks are mandatory byte ranges per
  handle (``msvcrt.locking`` from the file position, ``LockFileEx``): reads
  and writes of a range another handle locked fail with winerror 33; names
  are case-insensitive; path calls (``os.mkdir``, ``os.stat``, ``os.replace``,
  ...) are Win32 calls, so their errors carry a winerror (2, 3, 145, 183; 5 for
  unlinking a directory), where ``os.open``'s (the C runtime's) carry none.
- ``nolock`` directories (NFS mounted ``nolock``, SMB): ``flock`` and
  ``lockf`` succeed and lock nothing (corpus class 11).

What no model here covers raises ``NotModelled`` rather than guess.

Over a filesystem whose calls real processes make (``RealProcesses``, the
process backend of ``_procfs``), this layer decides nothing but names: every
call, lock and "would this lock be granted now?" goes to the real OS, except
in ``nolock`` directories, which stay modelled (this machine has no such mount).
"""

from __future__ import annotations

import errno
import math
import os
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from refresh_engine import LockOp, MsvcrtMode, OpenFlags

from ._errors import NotModelled
from ._filesystem import FileSystem
from ._world import OsModel

#: ``errno`` values as CPython on Windows reports them.
WINDOWS_EDEADLOCK = 36  # msvcrt.locking gave up after 10 tries
ERROR_ACCESS_DENIED = 5
ERROR_SHARING_VIOLATION = 32
ERROR_LOCK_VIOLATION = 33
ERROR_NOT_A_REPARSE_POINT = 4390
MSVCRT_TRIES = 10  # LK_LOCK tries once a second, 10 times
#: the Win32 errors behind the POSIX errors of path calls: errno -> (errno, winerror, message)
_WIN32_PATH_ERRORS = {
    errno.ENOENT: (errno.ENOENT, 2, "The system cannot find the file specified"),
    errno.EEXIST: (errno.EEXIST, 183, "Cannot create a file when that file already exists"),
    errno.ENOTEMPTY: (errno.ENOTEMPTY, 145, "The directory is not empty"),
    errno.EISDIR: (errno.EACCES, ERROR_ACCESS_DENIED, "Access is denied"),
}
ERROR_PATH_NOT_FOUND = 3


def _win_error(winerror: int, message: str, path: str | None = None) -> OSError:
    exc = (
        PermissionError(errno.EACCES, message)
        if path is None
        else PermissionError(errno.EACCES, message, path)
    )
    exc.winerror = winerror  # type: ignore[attr-defined, unused-ignore]
    return exc


def _missing(call: str, model: OsModel) -> OSError:
    return OSError(errno.ENOSYS, f"{call} is not available on {model.platform}")


@dataclass(frozen=True, slots=True)
class _Range:
    pid: int
    fd: int
    start: int
    end: int
    exclusive: bool

    def overlaps(self, start: int, end: int) -> bool:
        return self.start < end and start < self.end


@runtime_checkable
class RealProcesses(Protocol):
    """A filesystem whose calls real processes make: their OS holds the per-process locks."""

    def act_as(self, pid: int) -> None: ...

    def has_locks(self, inode: int) -> bool: ...

    def lockf(self, pid: int, fd: int, op: LockOp) -> None: ...

    def can_lockf(self, pid: int, fd: int, op: LockOp) -> bool: ...

    def msvcrt_locking(self, pid: int, fd: int, mode: MsvcrtMode, nbytes: int) -> None: ...

    def lock_file_ex(self, pid: int, fd: int, op: LockOp, offset: int, length: int) -> None: ...

    def can_range_lock(self, pid: int, fd: int, start: int, end: int, exclusive: bool) -> bool: ...


class OsLayer:
    """One OS model's view of the virtual filesystem, for one simulated machine."""

    __slots__ = (
        "fs",
        "model",
        "_nolock",
        "_lockf",
        "_ranges",
        "_real",
        "mtime_resolution",
        "_denied",
    )

    def __init__(
        self,
        fs: FileSystem,
        model: OsModel,
        nolock_dirs: Sequence[str] = (),
        mtime_resolution: float = 0.0,
    ) -> None:
        self.fs = fs
        self.model = model
        #: seconds a ``stat`` mtime is rounded down to (FAT: 2, HFS+ and SMB: 1; 0: exact)
        self.mtime_resolution = mtime_resolution
        self._nolock = tuple(posixpath.normpath(d) for d in nolock_dirs)
        self._lockf: dict[int, dict[int, LockOp]] = {}  # inode -> pid -> mode
        self._ranges: dict[int, list[_Range]] = {}  # inode -> byte-range locks (Windows)
        self._real = fs if isinstance(fs, RealProcesses) else None  # real processes decide
        self._denied: frozenset[str] = frozenset()  # directories whose names cannot change

    def deny_writes(self, directories: Iterable[str]) -> None:
        """From now on no name is added to, renamed in or removed from ``directories``
        (their write permission is gone): ``EACCES``, as for ``chmod a-w``.  Existing
        files stay writable through their own permissions."""
        self._denied |= {self.path(posixpath.normpath(d)) for d in directories}

    def _check_writable(self, *paths: str, adds: bool = False) -> None:
        """EACCES where a name in a denied directory would change.  Linux looks the name
        up first: adding one that exists is EEXIST, and changing one that is missing is
        ENOENT, before any permission check; the filesystem call says those."""
        if not self._denied or self.fs.exists(paths[0]) is adds:
            return
        for path in paths:
            if posixpath.dirname(path) in self._denied:
                raise PermissionError(errno.EACCES, "Permission denied", path)

    def act_as(self, pid: int) -> None:
        """The next call is ``pid``'s: real processes do even path-only calls in its process."""
        if self._real is not None:
            self._real.act_as(pid)

    @property
    def _emulates_windows(self) -> bool:
        """Windows' rules come from this model, not from a real Windows process."""
        return self.windows and self._real is None

    @property
    def windows(self) -> bool:
        return self.model is OsModel.WINDOWS

    def path(self, path: str) -> str:
        """The name the filesystem keys on: case-folded where names are case-insensitive."""
        return path if self.model is OsModel.LINUX else path.lower()

    # ------------------------------------------------------- names and data

    def open(self, pid: int, path: str, flags: OpenFlags) -> int:
        path = self.path(path)
        if OpenFlags.CREATE in flags:
            self._check_writable(path, adds=True)
        return self.fs.open(pid, path, flags)

    def create_exclusive(self, pid: int, path: str) -> int:
        self._check_writable(self.path(path), adds=True)
        return self.fs.create_exclusive(pid, self.path(path))

    def read(self, pid: int, fd: int, size: int | None) -> bytes:
        if self._emulates_windows:
            start = self.fs.offset_of(pid, fd)
            self._check_range(pid, fd, start, start + (size if size is not None else 1 << 62))
        return self.fs.read(pid, fd, size)

    def write(self, pid: int, fd: int, data: bytes) -> int:
        if self._emulates_windows:
            start = self.fs.offset_of(pid, fd)
            self._check_range(pid, fd, start, start + len(data), writing=True)
        return self.fs.write(pid, fd, data)

    def replace(self, src: str, dst: str) -> None:
        src, dst = self.path(src), self.path(dst)
        self._check_writable(src, dst)
        if self._emulates_windows:
            if self.fs.is_open(src):
                raise _win_error(ERROR_SHARING_VIOLATION, "file in use by another process", src)
            if self.fs.is_open(dst):
                raise _win_error(ERROR_ACCESS_DENIED, "Access is denied", dst)
        try:
            self.fs.replace(src, dst)
        except OSError as exc:
            raise self._win32(exc, src, dst) from None

    def unlink(self, path: str) -> None:
        path = self.path(path)
        self._check_writable(path)
        if self._emulates_windows and self.fs.is_open(path):
            raise _win_error(ERROR_SHARING_VIOLATION, "file in use by another process", path)
        try:
            self.fs.unlink(path)
        except OSError as exc:
            raise self._win32(exc, path) from None

    def rmdir(self, path: str) -> None:
        path = self.path(path)
        self._check_writable(path)
        if self._emulates_windows and self.fs.is_open(path):
            raise NotModelled("rmdir of a directory a handle holds open on Windows")
        try:
            self.fs.rmdir(path)
        except OSError as exc:
            raise self._win32(exc, path) from None

    def mkdir(self, path: str) -> None:
        path = self.path(path)
        self._check_writable(path, adds=True)
        try:
            self.fs.mkdir(path)
        except OSError as exc:
            raise self._win32(exc, path) from None

    def stat(self, path: str) -> tuple[int, float]:
        path = self.path(path)
        try:
            size, mtime = self.fs.stat(path)
        except OSError as exc:
            raise self._win32(exc, path) from None
        step = self.mtime_resolution
        return size, (math.floor(mtime / step) * step if step > 0 else mtime)

    def readlink(self, path: str) -> str:
        """``os.readlink``; on Windows a file that is no link is winerror 4390, not a reparse
        point (errno EINVAL as on POSIX)."""
        path = self.path(path)
        try:
            return self.fs.readlink(path)
        except OSError as exc:
            if exc.errno == errno.EINVAL and self._emulates_windows:
                error = OSError(errno.EINVAL, "The file or directory is not a reparse point", path)
                error.winerror = ERROR_NOT_A_REPARSE_POINT  # type: ignore[attr-defined, unused-ignore]
                raise error from None
            raise self._win32(exc, path) from None

    def utime(self, path: str) -> None:
        path = self.path(path)
        try:
            self.fs.utime(path)
        except OSError as exc:
            raise self._win32(exc, path) from None

    def _win32(self, exc: OSError, *paths: str) -> OSError:
        """On Windows, a path call's error as the Win32 call gives it: with a winerror,
        3 (path not found) where a parent directory is missing.  Else ``exc`` itself."""
        found = _WIN32_PATH_ERRORS.get(exc.errno or 0)
        if not self._emulates_windows or found is None:
            return exc
        code, winerror, message = found
        if code == errno.ENOENT and not all(self.fs.exists(posixpath.dirname(p)) for p in paths):
            winerror, message = ERROR_PATH_NOT_FOUND, "The system cannot find the path specified"
        error = OSError(code, message, exc.filename)
        error.winerror = winerror  # type: ignore[attr-defined, unused-ignore]
        return error

    def close(self, pid: int, fd: int) -> None:
        inode = self.fs.inode_of(pid, fd)
        self.fs.close(pid, fd)
        if inode is None:
            return
        held = self._lockf.get(inode)
        if held is not None:  # POSIX: closing ANY descriptor drops the process's record locks
            held.pop(pid, None)
        ranges = self._ranges.get(inode)
        if ranges:
            self._ranges[inode] = [r for r in ranges if (r.pid, r.fd) != (pid, fd)]

    def kill(self, pid: int) -> None:
        """A process dies: the OS closes its files and drops every lock it held."""
        self.fs.kill_process(pid)
        for held in self._lockf.values():
            held.pop(pid, None)
        for inode, ranges in self._ranges.items():
            self._ranges[inode] = [r for r in ranges if r.pid != pid]

    # ---------------------------------------------------------------- locks

    def has_locks(self, inode: int) -> bool:
        """Any lock held on ``inode``: a flock, a process's lockf, a handle's byte range."""
        if self._real is not None:
            return self._real.has_locks(inode)
        return (
            self.fs.flocked(inode) or bool(self._lockf.get(inode)) or bool(self._ranges.get(inode))
        )

    def holds_lock(self, pid: int, fd: int) -> bool:
        """Whether ``fd`` of ``pid`` holds a lock of its own: a flock, a byte range."""
        if self._real is not None:
            return True  # the real OS knows; be safe
        ino = self.fs.inode_of(pid, fd)
        ranges = self._ranges.get(ino, ()) if ino is not None else ()
        return self.fs.holds_flock(pid, fd) or any((r.pid, r.fd) == (pid, fd) for r in ranges)

    def in_nolock_dir(self, path: str) -> bool:
        return any(path == d or path.startswith(d + "/") for d in self._nolock)

    def flock(self, pid: int, fd: int, op: LockOp, path: str) -> None:
        if self._emulates_windows:
            raise _missing("flock", self.model)
        if self.in_nolock_dir(path) and not self.windows:  # Windows has no flock to say yes
            return  # the mount says yes and locks nothing
        self.fs.flock(pid, fd, op)

    def can_flock(self, pid: int, fd: int, op: LockOp, path: str) -> bool:
        if self.windows or self.in_nolock_dir(path):
            return True  # it fails or succeeds at once; it never waits
        return self.fs.can_flock(pid, fd, op)

    def lockf(self, pid: int, fd: int, op: LockOp, path: str) -> None:
        if self._real is not None and not self.in_nolock_dir(path):
            self._real.lockf(pid, fd, op)
            return
        if self.windows:
            raise _missing("lockf", self.model)
        inode = self.fs.inode_of(pid, fd)
        if inode is None:
            raise OSError(errno.EBADF, "Bad file descriptor")
        if self.in_nolock_dir(path):
            return
        held = self._lockf.setdefault(inode, {})
        if op is LockOp.UNLOCK:
            held.pop(pid, None)
            return
        if not self._lockf_free(inode, pid, op):
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
        held[pid] = op

    def can_lockf(self, pid: int, fd: int, op: LockOp, path: str) -> bool:
        inode = self.fs.inode_of(pid, fd)
        if self.windows or inode is None or op is LockOp.UNLOCK or self.in_nolock_dir(path):
            return True
        if self._real is not None:
            return self._real.can_lockf(pid, fd, op)
        return self._lockf_free(inode, pid, op)

    def _lockf_free(self, inode: int, pid: int, op: LockOp) -> bool:
        """Record locks never conflict within one process: that is the gateway trap."""
        for other, mode in self._lockf.get(inode, {}).items():
            if other != pid and (op is LockOp.EXCLUSIVE or mode is LockOp.EXCLUSIVE):
                return False
        return True

    def msvcrt_locking(self, pid: int, fd: int, mode: MsvcrtMode, nbytes: int) -> None:
        """One try of ``msvcrt.locking``; the kernel retries ``LOCK`` once a second.

        The C runtime reports failures by errno alone: ``PermissionError``
        (EACCES) with no winerror, where LockFileEx gives winerror 33.
        """
        if self._real is not None:
            self._real.msvcrt_locking(pid, fd, mode, nbytes)
            return
        if not self.windows:
            raise _missing("msvcrt.locking", self.model)
        start = self.fs.offset_of(pid, fd)
        locking = mode is not MsvcrtMode.UNLOCK
        try:
            self._range_lock(pid, fd, start, start + nbytes, locking, True)
        except PermissionError as exc:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES)) from exc

    def lock_file_ex(self, pid: int, fd: int, op: LockOp, offset: int, length: int) -> None:
        if self._real is not None:
            self._real.lock_file_ex(pid, fd, op, offset, length)
            return
        if not self.windows:
            raise _missing("LockFileEx", self.model)
        locking = op is not LockOp.UNLOCK
        self._range_lock(pid, fd, offset, offset + length, locking, op is LockOp.EXCLUSIVE)

    def can_range_lock(self, pid: int, fd: int, start: int, end: int, exclusive: bool) -> bool:
        """LockFileEx's rules: an exclusive lock overlaps no locked range, not even the
        handle's own; a shared lock overlaps shared ones, and the same handle's exclusive."""
        inode = self.fs.inode_of(pid, fd)
        if not self.windows or inode is None:
            return True
        if self._real is not None:
            return self._real.can_range_lock(pid, fd, start, end, exclusive)
        for r in self._ranges.get(inode, ()):
            if not r.overlaps(start, end):
                continue
            if exclusive:
                return False
            if r.exclusive and (r.pid, r.fd) != (pid, fd):
                return False
        return True

    def _range_lock(
        self, pid: int, fd: int, start: int, end: int, locking: bool, exclusive: bool
    ) -> None:
        inode = self.fs.inode_of(pid, fd)
        if inode is None:
            raise OSError(errno.EBADF, "Bad file descriptor")
        ranges = self._ranges.setdefault(inode, [])
        if not locking:
            mine = [r for r in ranges if (r.pid, r.fd, r.start, r.end) == (pid, fd, start, end)]
            if not mine:
                raise _win_error(158, "The segment is already unlocked")  # ERROR_NOT_LOCKED
            ranges.remove(mine[0])
            return
        if not self.can_range_lock(pid, fd, start, end, exclusive):
            raise _win_error(
                ERROR_LOCK_VIOLATION,
                "The process cannot access the file "
                "because another process has locked a portion of the file",
            )
        ranges.append(_Range(pid, fd, start, end, exclusive))

    def _check_range(self, pid: int, fd: int, start: int, end: int, writing: bool = False) -> None:
        """Windows locks are mandatory: another handle's exclusive range cannot be read or
        written, and a shared range cannot be written by anyone, its holder included.

        Reads and writes go through the C runtime, so the error is ``PermissionError``
        (EACCES) with no winerror.
        """
        inode = self.fs.inode_of(pid, fd)
        if inode is None:
            return
        for r in self._ranges.get(inode, ()):
            if not r.overlaps(start, end):
                continue
            own = (r.pid, r.fd) == (pid, fd)
            if (r.exclusive and not own) or (writing and not r.exclusive):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
