"""Live worker processes for the process backend, keyed by the kernel's virtual pids.

Every virtual process of a world is one real worker (``_wine_probe``), in
this machine's own Python when the world's OS model is the host's
(``linux`` on Linux, ``macos`` on macOS, ``windows`` on Windows), and in the
Windows CPython under Wine for ``windows`` on a Linux host.  A
worker starts on first use and stays alive across runs (a Wine start costs
up to a second); a kill fault really kills it (SIGKILL, which Wine turns into
TerminateProcess) and the next use of that pid starts a fresh one.  Windows
worlds get one more worker, the *prober*, that answers "would this
LockFileEx be granted now?" with a handle of its own (see ``_procfs``).

Everything is bounded: at most ``max_processes`` live workers, and every
request times out.
"""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from dataclasses import dataclass

from simulator import NotModelled, OsModel, SimulatorError

from ._probe import Probe, ProbeError
from ._wine import WinePython, windows_path, wine_python

#: what every worker gets once, beside ``_wine_probe``'s namespace: the lock probes
WORKER_HELPERS = '''
import os, struct
from refresh_engine import Failed, LockFileEx, LockOp, RealWorld

def _tr_getlk(fd, exclusive):
    """F_GETLK in this process: would lockf be granted?  Changes no lock; own locks never
    conflict, as for the lockf call itself."""
    import fcntl, sys
    if sys.platform == "darwin":  # struct flock: start, len, pid, type, whence
        layout, kind_at = "qqihh", 3
    else:  # 64-bit Linux: type, whence, start, len, pid
        layout, kind_at = "hhqqi4x", 0
    kind = fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK
    asked = [0, 0, 0, 0, 0]  # whence SEEK_SET, start 0, len 0 (to the end), pid 0
    asked[kind_at] = kind
    got = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack(layout, *asked))
    return struct.unpack(layout, got)[kind_at] == fcntl.F_UNLCK

def _tr_path(fd):
    """The name an open descriptor's file has now (macOS F_GETPATH; no /proc there)."""
    import fcntl
    got = fcntl.fcntl(fd, getattr(fcntl, "F_GETPATH", 50), bytes(1024))
    return os.fsdecode(got.split(b"\\0", 1)[0])

def _tr_range_free(path, exclusive, offset, length):
    """LockFileEx on a fresh handle of this (third) process, undone at once if granted."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        op = LockOp.EXCLUSIVE if exclusive else LockOp.SHARED
        if isinstance(RealWorld().perform(LockFileEx(fd, op, False, offset, length)), Failed):
            return False
        undone = RealWorld().perform(LockFileEx(fd, LockOp.UNLOCK, False, offset, length))
        if isinstance(undone, Failed):
            raise undone.to_exception()
        return True
    finally:
        os.close(fd)

_tr_watched = {}

def _tr_kernel32():
    import ctypes
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.OpenProcess.restype = ctypes.c_void_p
    kernel32.WaitForSingleObject.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    kernel32.CloseHandle.argtypes = [ctypes.c_void_p]
    return ctypes, kernel32

def _tr_watch(pid):
    """A handle on a process about to be killed: waiting on it cannot mistake a new
    process that reuses the pid for the old one."""
    ctypes, kernel32 = _tr_kernel32()
    handle = kernel32.OpenProcess(0x00100000, False, pid)  # SYNCHRONIZE
    if not handle:
        raise ctypes.WinError(ctypes.get_last_error())
    _tr_watched[pid] = handle
    return True

def _tr_wait(pid, milliseconds):
    """Whether the watched process ended: wineserver has closed its handles and locks."""
    ctypes, kernel32 = _tr_kernel32()
    handle = _tr_watched.pop(pid)
    try:
        return kernel32.WaitForSingleObject(handle, milliseconds) == 0
    finally:
        kernel32.CloseHandle(handle)

def _tr_close(fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
'''
PROBER = 0  # the prober's key: no world uses pid 0


#: the OS model of this machine's own processes, by ``sys.platform``
HOST_MODELS = {"linux": OsModel.LINUX, "darwin": OsModel.MACOS, "win32": OsModel.WINDOWS}


def host_model() -> OsModel | None:
    """The OS model this machine's own processes are (None on an unmodelled OS)."""
    return HOST_MODELS.get(sys.platform)


def can_run(os_model: OsModel) -> str:
    """Why real ``os_model`` processes cannot run on this host ("" when they can);
    Wine being absent is found later, when the pool starts."""
    if os_model is host_model():
        return ""
    if os_model is OsModel.WINDOWS and sys.platform == "linux":
        return ""  # under Wine
    where = "Windows, or Linux with Wine" if os_model is OsModel.WINDOWS else os_model.value
    return f"real {os_model.value} processes need a {where} host; this is {sys.platform}"


class PoolError(SimulatorError):
    """A worker could not be had: too many, or it would not start."""


@dataclass(frozen=True, slots=True)
class PoolStats:
    """What the pool did: workers started (restarts included) and killed, and how the
    real OS answered "would this lock be granted now?" (``(kind, granted)`` -> count)."""

    started: int
    killed: int
    alive: int
    answers: tuple[tuple[tuple[str, bool], int], ...] = ()

    def answered(self, kind: str, granted: bool) -> int:
        return dict(self.answers).get((kind, granted), 0)


class ProcessPool:
    """Workers by virtual pid for one OS model; close it (or use ``with``) when done."""

    def __init__(
        self,
        os_model: OsModel = OsModel.LINUX,
        *,
        max_processes: int = 32,
        timeout: float = 30.0,
        wine: WinePython | None = None,
    ) -> None:
        if why := can_run(os_model):
            raise NotModelled(why)
        self.os_model = os_model
        self.timeout = timeout
        self._max = max_processes
        self._wine: WinePython | None = None
        if os_model is not host_model():  # windows on a Linux host
            self._wine = wine if wine is not None else wine_python()
        self._workers: dict[int, Probe] = {}
        self._started = 0
        self._killed = 0
        self._answers: Counter[tuple[str, bool]] = Counter()

    @property
    def windows(self) -> bool:
        return self.os_model is OsModel.WINDOWS

    @property
    def stats(self) -> PoolStats:
        answers = tuple(sorted(self._answers.items()))
        return PoolStats(self._started, self._killed, len(self._workers), answers)

    def answer(self, kind: str, granted: bool) -> bool:
        """Count one answer of the real OS to a lock question, and pass it on."""
        self._answers[(kind, granted)] += 1
        return granted

    def path(self, host_path: str) -> str:
        """A host path as the workers name it (``Z:\\...`` under Wine)."""
        return windows_path(host_path) if self._wine is not None else host_path

    def get(self, pid: int) -> Probe:
        """The live worker of ``pid``, started now if it has none."""
        worker = self._workers.get(pid)
        if worker is None:
            if len(self._workers) >= self._max:
                raise PoolError(f"more than {self._max} live worker processes")
            worker = self._start()
            self._workers[pid] = worker
        return worker

    def prober(self) -> Probe:
        """The third process (``pid`` ``PROBER``) that asks Windows about byte-range locks."""
        return self.get(PROBER)

    def os_pid(self, pid: int) -> int:
        """The real process id (the Windows one under Wine) of ``pid``'s worker."""
        return self.get(pid).pid

    def exec(self, pid: int, code: str) -> object:
        return self.get(pid).exec(code, timeout=self.timeout)

    def _start(self) -> Probe:
        worker = Probe.native() if self._wine is None else Probe.wine(self._wine)
        try:
            worker.exec(WORKER_HELPERS, timeout=self.timeout)
        except BaseException:
            worker.kill()
            raise
        self._started += 1
        return worker

    def kill(self, pid: int) -> None:
        """SIGKILL ``pid``'s worker (TerminateProcess under Wine) and wait until the OS
        has let go of its descriptors and locks; the next ``get`` starts a fresh one."""
        worker = self._workers.pop(pid, None)
        if worker is None:
            return
        gone = worker.pid
        if self.windows:  # wineserver ends a killed process on its own time: watch it
            self.exec(PROBER, f"result = _tr_watch({gone})")
        worker.kill()  # native: reaped, so the kernel has closed its files and locks
        self._killed += 1
        if self.windows:
            wait = f"result = _tr_wait({gone}, {int(self.timeout * 1000)})"
            if not self.get(PROBER).exec(wait, timeout=self.timeout + 5.0):
                raise PoolError(f"Windows process {gone} still alive after TerminateProcess")

    def discard(self, pid: int) -> None:
        """Drop a worker that misbehaved (it is killed)."""
        worker = self._workers.pop(pid, None)
        if worker is not None:
            worker.kill()

    def close(self) -> None:
        for worker in self._workers.values():
            with contextlib.suppress(ProbeError, OSError):
                worker.close()
        self._workers.clear()

    def __enter__(self) -> ProcessPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
