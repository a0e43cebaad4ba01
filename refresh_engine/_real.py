"""The real-world interpreter: every effect done for real with ``os``, ``fcntl`` and httpx.

This is the only module of ``refresh_engine`` that does I/O, and the only
one that imports beyond the standard library (httpx, lazily, when the first
request is made).  It is what a user ships: the same flow the simulator
proved, run against the real machine.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, TypeVar, assert_never

from ._effects import (
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
    HttpResponse,
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
from ._flow import Flow, FlowRunner, Raised, Returned
from ._oslocks import flock, lock_file_ex, lock_within, lockf, msvcrt_locking, process_alive

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")

_OS_FLAGS = {
    OpenFlags.CREATE: os.O_CREAT,
    OpenFlags.EXCLUSIVE: os.O_EXCL,
    OpenFlags.TRUNCATE: os.O_TRUNC,
    OpenFlags.APPEND: os.O_APPEND,
}


def os_open_flags(flags: OpenFlags) -> int:
    """``OpenFlags`` as the ``os.O_*`` bits of this platform."""
    if OpenFlags.READ in flags and OpenFlags.WRITE in flags:
        bits = os.O_RDWR
    elif OpenFlags.WRITE in flags:
        bits = os.O_WRONLY
    else:
        bits = os.O_RDONLY
    for flag, os_bit in _OS_FLAGS.items():
        if flag in flags:
            bits |= os_bit
    return bits | getattr(os, "O_BINARY", 0)


class RealWorld:
    """Run flows against this machine.

    ``clock`` and ``sleep`` are injectable so a test can move time without
    waiting; ``http`` is the httpx client to post with (respx can mock it).
    """

    def __init__(
        self,
        http: httpx.Client | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        log: Callable[[str], None] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._http = http
        self._clock = clock
        self._sleep = sleep
        self._log = log
        self._timeout = timeout

    def run(self, flow: Flow[T]) -> T:
        """Drive ``flow`` to its end; its return value, or its exception."""
        runner: FlowRunner[T] = FlowRunner(flow)
        step = runner.start()
        while True:
            if isinstance(step, Returned):
                return step.value
            if isinstance(step, Raised):
                raise step.error
            step = runner.resume(self.perform(step))

    def perform(self, effect: Effect) -> Outcome:
        """Do one effect; an ``OSError`` becomes ``Failed``."""
        try:
            return self._perform(effect)
        except OSError as exc:
            return Failed.from_exception(exc)

    def _perform(self, effect: Effect) -> Outcome:
        match effect:
            case Open(path, flags):
                return Opened(_open_file(path, flags))
            case CreateExclusive(path):
                flags = OpenFlags.WRITE | OpenFlags.CREATE | OpenFlags.EXCLUSIVE
                return Opened(os.open(path, os_open_flags(flags), 0o600))
            case Read(fd, size):
                return ReadData(_read(fd, size))
            case Write(fd, data):
                return Wrote(_write_all(fd, data))
            case Truncate(fd, size):
                os.ftruncate(fd, size)
            case Fsync(fd):
                os.fsync(fd)
            case Close(fd):
                os.close(fd)
            case Replace(src, dst):
                os.replace(src, dst)
            case Unlink(path):
                os.unlink(path)
            case Mkdir(path):
                os.mkdir(path, 0o700)
            case Stat(path):
                result = os.stat(path)
                return StatResult(size=result.st_size, mtime=result.st_mtime)
            case ReadLink(path):
                return LinkTarget(os.readlink(path))
            case Flock(fd, op, blocking, timeout):
                self._lock(partial(flock, fd, op), blocking, timeout)
            case Seek(fd, offset):
                return Position(os.lseek(fd, offset, os.SEEK_SET))
            case Rmdir(path):
                os.rmdir(path)
            case Touch(path):
                os.utime(path)
            case Lockf(fd, op, blocking, timeout):
                self._lock(partial(lockf, fd, op), blocking, timeout)
            case MsvcrtLocking(fd, mode, nbytes):
                msvcrt_locking(fd, mode.value, nbytes)
            case LockFileEx(fd, op, blocking, offset, length, timeout):
                attempt = partial(_lock_file_ex_at, fd, op, offset, length)
                self._lock(attempt, blocking, timeout)
            case Mutex(name, op):
                _mutex(name, op)
            case GetPid():
                return Pid(os.getpid())
            case ProcessAlive(pid):
                return Alive(process_alive(pid))
            case HttpPost(url, body, content_type):
                return self._post(url, body, content_type)
            case Now():
                return Clock(self._clock())
            case Sleep(seconds):
                self._sleep(seconds)
            case Log(message):
                if self._log is not None:
                    self._log(message)
            case _:
                assert_never(effect)
        return Done()

    def _lock(self, attempt: Callable[[bool], None], blocking: bool, timeout: float | None) -> None:
        """A lock call; a blocking one with a timeout polls until it gives up."""
        if blocking and timeout is not None:
            lock_within(attempt, timeout, clock=self._clock, sleep=self._sleep)
        else:
            attempt(blocking)

    def _post(self, url: str, body: bytes, content_type: str) -> HttpResponse:
        """POST with the client given (anything with httpx's ``post``), or a new httpx one.

        httpx is imported only when this module makes the client itself, so a
        caller that passes its own client needs no httpx at all.
        """
        if self._http is None:
            import httpx

            self._http = httpx.Client(timeout=self._timeout)
        try:
            response = self._http.post(url, content=body, headers={"content-type": content_type})
        except Exception as exc:
            kind = _transport_failure(exc)
            if kind is None:
                raise
            raise kind(f"POST {url}: {type(exc).__name__}") from None
        return HttpResponse.keeping(
            response.status_code, response.content, response.headers.items()
        )


def _transport_failure(exc: Exception) -> type[OSError] | None:
    """The OSError a network failure becomes: httpx's timeouts and transport errors."""
    names = {cls.__name__ for cls in type(exc).__mro__ if cls.__module__.startswith("httpx")}
    if "TimeoutException" in names:
        return TimeoutError
    if "TransportError" in names:
        return ConnectionError
    return None


_MUTEXES: dict[str, threading.Lock] = {}
_MUTEXES_GUARD = threading.Lock()


def _mutex(name: str, op: LockOp) -> None:
    """A process-wide named mutex: what an engine's in-process lock really is."""
    with _MUTEXES_GUARD:
        lock = _MUTEXES.setdefault(name, threading.Lock())
    if op is LockOp.UNLOCK:
        lock.release()
    else:
        lock.acquire()


def _open_file(path: str, flags: OpenFlags) -> int:
    """``os.open``, for regular files (and directories, which fail on read) only: a FIFO,
    device or socket is refused (``OSError`` ENXIO) instead of hanging the open or being
    read without end.  Opened non-blocking to look, then made blocking again."""
    if sys.platform == "win32":  # no FIFOs to hang on; a device name fails on read
        return os.open(path, os_open_flags(flags), 0o600)
    fd = os.open(path, os_open_flags(flags) | os.O_NONBLOCK, 0o600)
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        os.close(fd)
        raise OSError(errno.ENXIO, "not a regular file (a FIFO, device or socket)", path)
    os.set_blocking(fd, True)
    return fd


def _read(fd: int, size: int | None) -> bytes:
    if size is not None:
        return os.read(fd, size)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> int:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    return len(data)


def _lock_file_ex_at(fd: int, op: LockOp, offset: int, length: int, blocking: bool) -> None:
    lock_file_ex(fd, op, blocking, offset, length)
