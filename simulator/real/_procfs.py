"""The process backend: every virtual process a real one, every call made in it.

``ProcessFS`` offers the kernel ``VirtualFS``'s interface, as ``RealFS`` does,
but where ``RealFS`` makes every call in this one process, here each virtual
pid is a live worker process from a ``ProcessPool`` (native CPython for
``linux``, the Windows CPython under Wine for ``windows``).  Each effect is
sent to its process and done there by ``RealWorld.perform``; descriptors
are the worker's, renumbered as the kernel numbers them.  So what belongs to
a process is real: ``lockf`` record locks (a gateway's agents share them,
and any close drops them), Windows handles, sharing violations and
byte-range locks across processes, and what a SIGKILL leaves behind.
``OsLayer`` sees the ``RealProcesses`` methods and leaves every decision to
the real OS.

Blocking locks never block a worker: the kernel asks whether the lock would
be granted now and tries it non-blocking only then.  The real OS answers,
and the question never changes lock state:

- ``flock`` belongs to the open file description, so another description
  sees every holder but the asker: this (host) process opens the asker's
  file afresh through ``/proc/<worker>/fd/<fd>`` (the same inode, wherever
  its name went), tries ``LOCK_NB`` and closes, dropping what it got.
- ``lockf`` belongs to the process.  A third process would count the
  asker's own process's locks as conflicts (wrong for a gateway whose other
  agent holds the lock), and a descriptor opened and closed *in* the asker
  would drop its locks.  So the asker answers itself with ``F_GETLK`` on the
  descriptor it has: that reports other processes' locks only, changing none.
- ``LockFileEx`` belongs to the handle, so the prober, a third Windows
  process, opens the file (an open file's name cannot move on Windows),
  tries the range with ``LOCKFILE_FAIL_IMMEDIATELY``, and unlocks and closes.
  That is the asker's answer too, unless the asker's own handle holds an
  exclusive range a shared request overlaps: that, and a flock conversion
  (one mode held, the other wanted), raise ``NotModelled``; no engine does either.

An answer is reused until a call that can change a lock (a lock call, a
close, a kill) runs, so an agent that waits through many steps costs one
question.  Path-only calls (replace, stat, mkdir, ...) run in the process
whose step it is (``act_as``).

What stays virtual, so that a run still replays byte for byte: time (``Now``,
mtimes), the network (the kernel's fake server commits a request at one step
and delivers its response at another, which lets a fault lose a committed
response), pids as engines see them (``GetPid``, ``ProcessAlive``),
in-process mutexes, ``nolock_dirs`` (``OsLayer`` models that mount) and
power-loss crashes (``NotModelled``).  Seeding, the kernel's reads of store
files and inode numbers are the host's: steps run one at a time, so after a
worker opens a name, the host's ``stat`` of it names the same file.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace

from refresh_engine import (
    Close,
    CreateExclusive,
    Effect,
    Failed,
    Flock,
    Fsync,
    Lockf,
    LockFileEx,
    LockOp,
    Mkdir,
    MsvcrtLocking,
    MsvcrtMode,
    Open,
    Opened,
    OpenFlags,
    Outcome,
    Read,
    ReadData,
    Replace,
    Rmdir,
    Seek,
    Stat,
    StatResult,
    Touch,
    Truncate,
    Unlink,
    Write,
    Wrote,
)
from simulator import Chooser, Engine, NotModelled, RunResult, WorldSpec, simulate

from ._probe import ProbeError
from ._procpool import PROBER, ProcessPool
from ._realfs import RealFS, _granted

#: the calls that can change whether a lock is granted (and a kill, and a run's end)
_LOCK_CHANGERS = (Close, Flock, Lockf, LockFileEx, MsvcrtLocking)
#: ``msvcrt.locking`` modes as one try: the kernel does LK_LOCK's retries itself
_ONE_TRY = {MsvcrtMode.LOCK: MsvcrtMode.NBLOCK, MsvcrtMode.RLOCK: MsvcrtMode.NBRLOCK}


def _host_error(failed: Failed, errno_name: str | None) -> OSError:
    """The worker's error with its errno renumbered for this host, by name (Windows
    numbers some differently) so the engine, running here, compares it rightly."""
    number = failed.errno
    if errno_name is not None and number is not None:
        number = getattr(errno, errno_name, number)
    return replace(failed, errno=number).to_exception()


class ProcessFS(RealFS):
    """``VirtualFS``'s interface, every call made by the pid's real worker process."""

    def __init__(self, root: str, clock: Callable[[], float], pool: ProcessPool) -> None:
        super().__init__(root, clock)
        self._pool = pool
        self._windows = pool.windows
        self._where_root = pool.path(self._root)
        self._actor: int | None = None
        self._fd_inodes: dict[tuple[int, int], int] = {}  # (pid, fd) -> inode number
        self._names: dict[tuple[int, int], str] = {}  # (pid, fd) -> the name it was opened by
        self._flocks: dict[tuple[int, int], LockOp] = {}  # (pid, fd) -> flock mode held
        self._lockf: set[tuple[int, int]] = set()  # (pid, inode) holding a record lock
        self._ranges: dict[tuple[int, int], list[tuple[int, int, bool]]] = {}  # LockFileEx
        self._msvcrt: set[tuple[int, int]] = set()  # (pid, fd) that took msvcrt locks
        self._asked: dict[tuple[object, ...], bool] = {}  # the OS's answers since the last change

    # ---------------------------------------------------------- translation

    def _where(self, path: str) -> str:
        """A virtual path as the workers name it (``Z:\\...`` under Wine)."""
        self.real(path)  # refuses a relative path
        norm = posixpath.normpath(path)
        return self._where_root + (norm.replace("/", "\\") if self._windows else norm)

    def act_as(self, pid: int) -> None:
        self._actor = pid

    def _acting(self) -> int:
        if self._actor is None:
            raise RuntimeError("a path-only call before any process acted (see OsLayer.act_as)")
        return self._actor

    def _call(self, pid: int, effect: Effect) -> Outcome:
        """Do ``effect`` in ``pid``'s process; its failure raised as this host's OSError."""
        if isinstance(effect, _LOCK_CHANGERS):
            self._asked.clear()
        done = self._pool.get(pid).effect(effect, timeout=self._pool.timeout)
        if isinstance(done.outcome, Failed):
            raise _host_error(done.outcome, done.errno_name)
        return done.outcome

    def _touch_ino(self, ino: int | None) -> None:
        if ino is not None:
            self._mtimes[ino] = self._clock()

    def _touch_parent(self, path: str) -> None:
        """A name came or went: its directory's mtime moves, as in the model."""
        self._touch_ino(self.inode_at(posixpath.dirname(posixpath.normpath(path))))

    def _opened(self, pid: int, path: str, real: int, *, created: bool, truncated: bool) -> int:
        fd = self._new_fd(pid, real)
        ino = os.stat(self.real(path)).st_ino  # steps are serial: the name is the file opened
        self._fd_inodes[(pid, fd)] = ino
        self._names[(pid, fd)] = self._where(path)
        if created or truncated:
            self._touch_ino(ino)
        if created:
            self._touch_parent(path)
        return fd

    def _drop(self, pid: int, fd: int) -> None:
        """Forget a descriptor that is gone (closed, or its process killed)."""
        key = (pid, fd)
        ino = self._fd_inodes.pop(key, None)
        self._names.pop(key, None)
        self._flocks.pop(key, None)
        self._ranges.pop(key, None)
        self._msvcrt.discard(key)
        if ino is not None:  # POSIX: any close drops the process's locks on the file
            self._lockf.discard((pid, ino))

    # ------------------------------------------------------- setup helpers

    def makedirs(self, path: str) -> None:
        missing, walk = [], posixpath.normpath(path)
        while not self.exists(walk):
            missing.append(walk)
            walk = posixpath.dirname(walk)
        super().makedirs(path)
        for created in missing:
            self._touch_ino(self.inode_at(created))
        if missing:
            self._touch_parent(missing[-1])

    def write_file(self, path: str, data: bytes) -> None:
        created = not self.exists(path)
        super().write_file(path, data)
        if created:
            self._touch_parent(path)

    # -------------------------------------------------------- system calls

    def open(self, pid: int, path: str, flags: OpenFlags) -> int:
        created = OpenFlags.CREATE in flags and not self.exists(path)
        outcome = self._call(pid, Open(self._where(path), flags))
        assert isinstance(outcome, Opened)
        truncated = OpenFlags.TRUNCATE in flags
        return self._opened(pid, path, outcome.fd, created=created, truncated=truncated)

    def create_exclusive(self, pid: int, path: str) -> int:
        outcome = self._call(pid, CreateExclusive(self._where(path)))
        assert isinstance(outcome, Opened)
        return self._opened(pid, path, outcome.fd, created=True, truncated=False)

    def read(self, pid: int, fd: int, size: int | None = None) -> bytes:
        outcome = self._call(pid, Read(self._real_fd(pid, fd), size))
        assert isinstance(outcome, ReadData)
        return outcome.data

    def write(self, pid: int, fd: int, data: bytes) -> int:
        outcome = self._call(pid, Write(self._real_fd(pid, fd), data))
        assert isinstance(outcome, Wrote)
        self._touch_ino(self._fd_inodes.get((pid, fd)))
        return outcome.count

    def truncate(self, pid: int, fd: int, size: int = 0) -> None:
        self._call(pid, Truncate(self._real_fd(pid, fd), size))
        self._touch_ino(self._fd_inodes.get((pid, fd)))

    def fsync(self, pid: int, fd: int) -> None:
        self._call(pid, Fsync(self._real_fd(pid, fd)))

    def close(self, pid: int, fd: int) -> None:
        self._call(pid, Close(self._real_fd(pid, fd)))
        del self._fds[pid][fd]
        self._drop(pid, fd)

    def replace(self, src: str, dst: str) -> None:
        self._call(self._acting(), Replace(self._where(src), self._where(dst)))
        self._touch_parent(src)
        self._touch_parent(dst)

    def unlink(self, path: str) -> None:
        self._call(self._acting(), Unlink(self._where(path)))
        self._touch_parent(path)

    def mkdir(self, path: str) -> None:
        self._call(self._acting(), Mkdir(self._where(path)))
        self._touch_ino(self.inode_at(path))
        self._touch_parent(path)

    def rmdir(self, path: str) -> None:
        self._call(self._acting(), Rmdir(self._where(path)))
        self._touch_parent(path)

    def utime(self, path: str) -> None:
        self._call(self._acting(), Touch(self._where(path)))
        self._touch_ino(self.inode_at(path))

    def seek(self, pid: int, fd: int, offset: int) -> int:
        self._call(pid, Seek(self._real_fd(pid, fd), offset))
        return offset

    def offset_of(self, pid: int, fd: int) -> int:
        return int(str(self._pool.exec(pid, f"result = os.lseek({self._real_fd(pid, fd)}, 0, 1)")))

    def stat(self, path: str) -> tuple[int, float]:
        """The worker's ``stat`` (its errors, its size); the mtime is virtual, a
        directory's size 0, as the model has them."""
        outcome = self._call(self._acting(), Stat(self._where(path)))
        assert isinstance(outcome, StatResult)
        info = os.stat(self.real(path))
        size = 0 if stat.S_ISDIR(info.st_mode) else outcome.size
        return size, self._mtimes.get(info.st_ino, self._clock())

    # ---------------------------------------------------------------- locks

    def flock(self, pid: int, fd: int, op: LockOp) -> None:
        key = (pid, fd)
        try:
            self._call(pid, Flock(self._real_fd(pid, fd), op, blocking=False))
        except OSError:
            if self._flocks.get(key) not in (None, op):
                del self._flocks[key]  # Linux converts by dropping the old lock first
            raise
        if op is LockOp.UNLOCK:
            self._flocks.pop(key, None)
        else:
            self._flocks[key] = op

    def can_flock(self, pid: int, fd: int, op: LockOp) -> bool:
        """Asked of a fresh open file description of the same inode, in this process."""
        held = self._flocks.get((pid, fd))
        if self._windows or op is LockOp.UNLOCK or held is op:
            return True
        if held is not None:
            raise NotModelled("a blocking flock conversion: no probe can ask it unchanged")
        real_fd = self._real_fd(pid, fd)

        def granted() -> bool:
            if sys.platform == "linux":  # the same inode, wherever its name went
                name = f"/proc/{self._pool.os_pid(pid)}/fd/{real_fd}"
            else:  # macOS: no /proc; the name the file has now, asked only when not cached
                name = str(self._pool.exec(pid, f"result = _tr_path({real_fd})"))
            probe = os.open(name, os.O_RDONLY)
            try:
                if os.fstat(probe).st_ino != self._fd_inodes.get((pid, fd)):
                    raise NotModelled(f"a flock probe found another file at {name}")
                return _granted(self._world.perform(Flock(probe, op, blocking=False)))
            finally:
                os.close(probe)  # the probe's OFD had only this descriptor: its lock goes

        return self._ask(("flock", pid, fd, op), granted)

    def lockf(self, pid: int, fd: int, op: LockOp) -> None:
        self._call(pid, Lockf(self._real_fd(pid, fd), op, blocking=False))
        held = (pid, self._fd_inodes.get((pid, fd), -1))
        if op is LockOp.UNLOCK:
            self._lockf.discard(held)
        else:
            self._lockf.add(held)

    def can_lockf(self, pid: int, fd: int, op: LockOp) -> bool:
        """``F_GETLK`` in the asker's own process (see the module's docstring)."""
        if self._windows or op is LockOp.UNLOCK:
            return True
        code = f"result = _tr_getlk({self._real_fd(pid, fd)}, {op is LockOp.EXCLUSIVE})"
        return self._ask(("lockf", pid, fd, op), lambda: bool(self._pool.exec(pid, code)))

    def msvcrt_locking(self, pid: int, fd: int, mode: MsvcrtMode, nbytes: int) -> None:
        """One try (LK_LOCK as LK_NBLCK): the kernel retries once a virtual second."""
        self._call(pid, MsvcrtLocking(self._real_fd(pid, fd), _ONE_TRY.get(mode, mode), nbytes))
        if mode is not MsvcrtMode.UNLOCK:
            self._msvcrt.add((pid, fd))

    def lock_file_ex(self, pid: int, fd: int, op: LockOp, offset: int, length: int) -> None:
        self._call(pid, LockFileEx(self._real_fd(pid, fd), op, False, offset, length))
        ranges = self._ranges.setdefault((pid, fd), [])
        if op is LockOp.UNLOCK:
            mine = [r for r in ranges if r[:2] == (offset, offset + length)]
            if mine:
                ranges.remove(mine[0])
        else:
            ranges.append((offset, offset + length, op is LockOp.EXCLUSIVE))

    def can_range_lock(self, pid: int, fd: int, start: int, end: int, exclusive: bool) -> bool:
        """Asked by the prober, a third Windows process, with a handle of its own."""
        if not self._windows:
            return True
        own = self._ranges.get((pid, fd), ())
        if not exclusive and any(ex and s < end and start < e for s, e, ex in own):
            raise NotModelled("a shared LockFileEx over the asker's own exclusive range")
        name = self._names[(pid, fd)]
        code = f"result = _tr_range_free({name!r}, {exclusive}, {start}, {end - start})"
        key = ("LockFileEx", pid, fd, start, end, exclusive)
        return self._ask(key, lambda: bool(self._pool.exec(PROBER, code)))

    def _ask(self, key: tuple[object, ...], question: Callable[[], bool]) -> bool:
        """The real OS's answer, asked again only after a call that can change a lock:
        an agent waiting through many steps costs one question, not one a step."""
        if key not in self._asked:
            self._asked[key] = self._pool.answer(str(key[0]), question())
        return self._asked[key]

    def has_locks(self, inode: int) -> bool:
        """Any lock this run took on ``inode`` and may still hold (for footprints: it may
        over-approximate, never miss)."""
        holders = [*self._flocks, *(k for k, r in self._ranges.items() if r), *self._msvcrt]
        return any(self._fd_inodes.get(key) == inode for key in holders) or any(
            ino == inode for _, ino in self._lockf
        )

    # ------------------------------------------------------------ processes

    def kill_process(self, pid: int) -> None:
        """SIGKILL (TerminateProcess) the real process; a fresh one takes the pid later."""
        self._asked.clear()
        self._pool.kill(pid)
        for fd in self._fds.pop(pid, {}):
            self._drop(pid, fd)
        self._lockf = {held for held in self._lockf if held[0] != pid}

    def close_all(self) -> None:
        """End of a run: each worker closes what it has open, so the next run starts clean."""
        for pid, table in sorted(self._fds.items()):
            if not table:
                continue
            try:
                self._pool.exec(pid, f"_tr_close({sorted(table.values())!r})")
            except (ProbeError, TimeoutError):
                self._pool.discard(pid)  # a worker that cannot close its files is replaced
        self._fds.clear()
        self._asked.clear()
        self._fd_inodes.clear()
        self._names.clear()
        self._flocks.clear()
        self._ranges.clear()
        self._lockf.clear()
        self._msvcrt.clear()

    # ------------------------------------------------------------ queries

    def inode_of(self, pid: int, fd: int) -> int | None:
        return self._fd_inodes.get((pid, fd))

    def flocked(self, inode: int) -> bool:
        return any(self._fd_inodes.get(key) == inode for key in self._flocks)

    def holds_flock(self, pid: int, fd: int) -> bool:
        return (pid, fd) in self._flocks

    def is_open(self, path: str) -> bool:
        ino = self.inode_at(path)
        return ino is not None and ino in self._fd_inodes.values()


def simulate_processes(
    spec: WorldSpec, engine: Engine, chooser: Chooser, pool: ProcessPool
) -> RunResult:
    """``simulate`` with every process of the world a real one from ``pool``, in a
    fresh temporary tree; the workers outlive the run, reset."""
    if spec.os is not pool.os_model:
        raise ValueError(f"a {spec.os.value} world needs a {spec.os.value} pool")
    with tempfile.TemporaryDirectory(prefix="tokenrace-proc-") as root:
        return simulate(spec, engine, chooser, lambda clock: ProcessFS(root, clock, pool))
