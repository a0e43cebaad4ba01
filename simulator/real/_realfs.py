"""The real filesystem behind the kernel: the model-against-reality check.

``RealFS`` offers the kernel the same ``FileSystem`` interface as ``VirtualFS``, but every
system call is carried out for real by ``refresh_engine.RealWorld.perform``
(the same interpreter users ship) on files under a temporary root, with the
kernel's virtual paths and descriptors translated on the way.  Running one
schedule once over ``VirtualFS`` and once over ``RealFS`` and comparing the
histories byte for byte checks the model against this machine's kernel:
every outcome, every error, every lock that was or was not granted.

All agents share this one real process, so only what is per open file
description can be real here: files, names and ``flock``.  Record locks
(per process) and Windows locks stay with the OS model; real processes check
those.  A power-loss crash cannot be made real and raises ``NotModelled``.
"""

from __future__ import annotations

import errno
import os
import posixpath
from collections.abc import Callable

from refresh_engine import (
    Close,
    CreateExclusive,
    Effect,
    Failed,
    Flock,
    Fsync,
    LinkTarget,
    LockOp,
    Mkdir,
    Open,
    Opened,
    OpenFlags,
    Outcome,
    Read,
    ReadData,
    ReadLink,
    RealWorld,
    Replace,
    Rmdir,
    Seek,
    Truncate,
    Unlink,
    Write,
    Wrote,
)
from simulator import FileSystemFactory, NotModelled, link_chain

#: Windows opens descriptors in text mode (newlines translated) unless told otherwise
_BINARY = getattr(os, "O_BINARY", 0)


def _granted(outcome: Outcome) -> bool:
    """A non-blocking lock call's answer: granted, or refused because another holds it."""
    if isinstance(outcome, Failed) and outcome.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
        return False
    if isinstance(outcome, Failed):
        raise outcome.to_exception()
    return True


class RealFS:
    """The ``FileSystem`` interface, done for real under ``root``.

    What cannot be made real here refuses with ``NotModelled`` rather than
    answer wrongly.
    """

    def __init__(self, root: str, clock: Callable[[], float]) -> None:
        self._root = os.path.realpath(root)
        self._clock = clock
        self._world = RealWorld()
        self._fds: dict[int, dict[int, int]] = {}  # pid -> virtual fd -> real fd
        self._flocked: set[tuple[int, int]] = set()
        self._mtimes: dict[int, float] = {}  # inode -> virtual mtime (the clock is virtual)

    # ---------------------------------------------------------- translation

    def real(self, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError(f"path must be absolute: {path!r}")
        return self._root + posixpath.normpath(path)

    def _real_fd(self, pid: int, fd: int) -> int:
        real = self._fds.get(pid, {}).get(fd)
        if real is None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return real

    def _do(self, effect: Effect) -> Outcome:
        outcome = self._world.perform(effect)
        if isinstance(outcome, Failed):
            raise outcome.to_exception()
        return outcome

    def _new_fd(self, pid: int, real: int) -> int:
        table = self._fds.setdefault(pid, {})
        fd = 3
        while fd in table:
            fd += 1
        table[fd] = real
        return fd

    def _touch(self, real_fd: int) -> None:
        self._mtimes[os.fstat(real_fd).st_ino] = self._clock()

    # ------------------------------------------------------- setup helpers

    def makedirs(self, path: str) -> None:
        os.makedirs(self.real(path), mode=0o700, exist_ok=True)

    def write_file(self, path: str, data: bytes) -> None:
        fd = os.open(self.real(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _BINARY, 0o600)
        try:
            os.write(fd, data)
            self._touch(fd)
        finally:
            os.close(fd)

    def read_file(self, path: str) -> bytes:
        """The whole file, opened as the interpreter's ``Open`` does (a FIFO is refused,
        not waited on)."""
        opened = self._do(Open(self.real(path), OpenFlags.READ))
        assert isinstance(opened, Opened)
        try:
            data = self._do(Read(opened.fd, None))
        finally:
            os.close(opened.fd)
        assert isinstance(data, ReadData)
        return data.data

    def exists(self, path: str) -> bool:
        return os.path.lexists(self.real(path))

    def symlink(self, target: str, path: str) -> None:
        """A link to ``target``; an absolute target is a virtual path, made real."""
        os.symlink(self.real(target) if target.startswith("/") else target, self.real(path))

    def mkfifo(self, path: str) -> None:
        make = getattr(os, "mkfifo", None)
        if make is None:
            raise NotModelled("a FIFO cannot be made on this host")
        make(self.real(path))

    def _virtual(self, target: str) -> str:
        """A link target read back: a real path under the root is a virtual one again."""
        return target[len(self._root) :] if target.startswith(self._root + os.sep) else target

    def _target_of(self, path: str) -> str | None:
        real = self.real(path)
        return self._virtual(os.readlink(real)) if os.path.islink(real) else None

    # -------------------------------------------------------- system calls

    def open(self, pid: int, path: str, flags: OpenFlags) -> int:
        outcome = self._do(Open(self.real(path), flags))
        assert isinstance(outcome, Opened)
        if OpenFlags.CREATE in flags or OpenFlags.TRUNCATE in flags:
            self._touch(outcome.fd)
        return self._new_fd(pid, outcome.fd)

    def create_exclusive(self, pid: int, path: str) -> int:
        outcome = self._do(CreateExclusive(self.real(path)))
        assert isinstance(outcome, Opened)
        self._touch(outcome.fd)
        return self._new_fd(pid, outcome.fd)

    def read(self, pid: int, fd: int, size: int | None = None) -> bytes:
        outcome = self._do(Read(self._real_fd(pid, fd), size))
        assert isinstance(outcome, ReadData)
        return outcome.data

    def write(self, pid: int, fd: int, data: bytes) -> int:
        real = self._real_fd(pid, fd)
        outcome = self._do(Write(real, data))
        assert isinstance(outcome, Wrote)
        self._touch(real)
        return outcome.count

    def truncate(self, pid: int, fd: int, size: int = 0) -> None:
        real = self._real_fd(pid, fd)
        self._do(Truncate(real, size))
        self._touch(real)

    def fsync(self, pid: int, fd: int) -> None:
        self._do(Fsync(self._real_fd(pid, fd)))

    def close(self, pid: int, fd: int) -> None:
        real = self._real_fd(pid, fd)
        self._do(Close(real))
        del self._fds[pid][fd]
        self._flocked.discard((pid, fd))

    def replace(self, src: str, dst: str) -> None:
        self._do(Replace(self.real(src), self.real(dst)))

    def unlink(self, path: str) -> None:
        self._do(Unlink(self.real(path)))

    def mkdir(self, path: str) -> None:
        self._do(Mkdir(self.real(path)))

    def rmdir(self, path: str) -> None:
        self._do(Rmdir(self.real(path)))

    def readlink(self, path: str) -> str:
        outcome = self._do(ReadLink(self.real(path)))
        assert isinstance(outcome, LinkTarget)
        return self._virtual(outcome.target)

    def utime(self, path: str) -> None:
        os.utime(self.real(path))
        self._mtimes[os.stat(self.real(path)).st_ino] = self._clock()

    def seek(self, pid: int, fd: int, offset: int) -> int:
        self._do(Seek(self._real_fd(pid, fd), offset))
        return offset

    def offset_of(self, pid: int, fd: int) -> int:
        return os.lseek(self._real_fd(pid, fd), 0, os.SEEK_CUR)

    def stat(self, path: str) -> tuple[int, float]:
        info = os.stat(self.real(path))
        size = 0 if os.path.isdir(self.real(path)) else info.st_size
        return size, self._mtimes.get(info.st_ino, self._clock())

    def flock(self, pid: int, fd: int, op: LockOp) -> None:
        """Never waits: the kernel decides who waits, so the real call is non-blocking."""
        self._do(Flock(self._real_fd(pid, fd), op, blocking=False))
        if op is LockOp.UNLOCK:
            self._flocked.discard((pid, fd))
        else:
            self._flocked.add((pid, fd))

    def can_flock(self, pid: int, fd: int, op: LockOp) -> bool:
        """Probe with a fresh open file description: would the kernel grant ``op`` now?"""
        if op is LockOp.UNLOCK or (pid, fd) in self._flocked:
            return True
        probe = os.open(f"/proc/self/fd/{self._real_fd(pid, fd)}", os.O_RDONLY)
        try:
            return _granted(self._world.perform(Flock(probe, op, blocking=False)))
        finally:
            os.close(probe)  # closing the probe drops its lock at once

    def kill_process(self, pid: int) -> None:
        for fd, real in sorted(self._fds.pop(pid, {}).items()):
            os.close(real)
            self._flocked.discard((pid, fd))

    def crash(self) -> None:
        raise NotModelled("a power-loss crash cannot be made real on the running machine")

    # ------------------------------------------------------------ queries

    def inode_at(self, path: str) -> int | None:
        try:
            return os.lstat(self.real(path)).st_ino
        except FileNotFoundError:
            return None

    def inode_of(self, pid: int, fd: int) -> int | None:
        real = self._fds.get(pid, {}).get(fd)
        return None if real is None else os.fstat(real).st_ino

    def flocked(self, inode: int) -> bool:
        return any(self.inode_of(pid, fd) == inode for pid, fd in self._flocked)

    def holds_flock(self, pid: int, fd: int) -> bool:
        return (pid, fd) in self._flocked

    def is_symlink(self, path: str) -> bool:
        return os.path.islink(self.real(path))

    def link_chain(self, path: str) -> list[str]:
        return link_chain(posixpath.normpath(path), self._target_of)

    def is_open(self, path: str) -> bool:
        ino = self.inode_at(path)
        return ino is not None and any(
            os.fstat(real).st_ino == ino for table in self._fds.values() for real in table.values()
        )

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(self.real(path)))

    def open_fds(self, pid: int) -> list[int]:
        return sorted(self._fds.get(pid, ()))

    def lock_holders(self, path: str) -> list[tuple[int, int, LockOp]]:
        raise NotModelled("RealFS cannot list another holder's locks")

    def close_all(self) -> None:
        for pid in list(self._fds):
            self.kill_process(pid)


def real_backend(root: str) -> FileSystemFactory:
    """The kernel's backend for a run whose every file effect is done for real under ``root``."""
    return lambda clock: RealFS(root, clock)
