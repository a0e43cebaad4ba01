"""The real lock calls of each OS, for ``RealWorld``.

A call the running OS does not have fails the way a user's engine would see
it fail: ``OSError(ENOSYS)`` for ``flock``/``lockf`` where ``fcntl`` does not
import (Windows), and for ``msvcrt.locking``/``LockFileEx`` where there is no
Win32 API (Linux, macOS).  Windows-only modules are imported by name so this
module type-checks on every platform.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from ._effects import LockOp

LOCKFILE_FAIL_IMMEDIATELY = 0x1
LOCKFILE_EXCLUSIVE_LOCK = 0x2
PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
STILL_ACTIVE = 259
#: What a non-blocking attempt fails with while another holds the lock: EWOULDBLOCK
#: (flock), EACCES or EAGAIN (lockf), ERROR_LOCK_VIOLATION, which Python maps to EACCES
LOCK_BUSY = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES})
#: How often a lock with a timeout is tried again
LOCK_POLL_SECONDS = 0.02


def _module(name: str, call: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise OSError(errno.ENOSYS, f"{call} is not available on {sys.platform}") from None


def _fcntl_bits(fcntl: Any, op: LockOp, blocking: bool) -> int:
    bits: int = {LockOp.SHARED: fcntl.LOCK_SH, LockOp.EXCLUSIVE: fcntl.LOCK_EX}.get(
        op, fcntl.LOCK_UN
    )
    if not blocking and op is not LockOp.UNLOCK:
        bits |= fcntl.LOCK_NB
    return bits


def flock(fd: int, op: LockOp, blocking: bool) -> None:
    fcntl: Any = _module("fcntl", "flock")
    fcntl.flock(fd, _fcntl_bits(fcntl, op, blocking))


def lockf(fd: int, op: LockOp, blocking: bool) -> None:
    fcntl: Any = _module("fcntl", "lockf")
    fcntl.lockf(fd, _fcntl_bits(fcntl, op, blocking))


def msvcrt_locking(fd: int, mode: int, nbytes: int) -> None:
    msvcrt: Any = _module("msvcrt", "msvcrt.locking")
    msvcrt.locking(fd, mode, nbytes)


def _kernel32() -> tuple[Any, Any]:
    import ctypes

    if sys.platform != "win32":
        raise OSError(errno.ENOSYS, f"the Win32 API is not available on {sys.platform}")
    return ctypes, getattr(ctypes, "WinDLL")("kernel32", use_last_error=True)  # noqa: B009


def lock_file_ex(fd: int, op: LockOp, blocking: bool, offset: int, length: int) -> None:
    """``LockFileEx``/``UnlockFileEx`` on the handle behind ``fd``."""
    ctypes, kernel32 = _kernel32()
    msvcrt: Any = _module("msvcrt", "LockFileEx")
    from ctypes import wintypes

    class Overlapped(ctypes.Structure):  # type: ignore[misc,name-defined]
        _fields_ = [
            ("Internal", ctypes.c_void_p),
            ("InternalHigh", ctypes.c_void_p),
            ("Offset", wintypes.DWORD),
            ("OffsetHigh", wintypes.DWORD),
            ("hEvent", wintypes.HANDLE),
        ]

    handle = msvcrt.get_osfhandle(fd)
    overlapped = Overlapped(0, 0, offset & 0xFFFFFFFF, offset >> 32, None)
    low, high = length & 0xFFFFFFFF, length >> 32
    if op is LockOp.UNLOCK:
        ok = kernel32.UnlockFileEx(handle, 0, low, high, ctypes.byref(overlapped))
    else:
        flags = LOCKFILE_EXCLUSIVE_LOCK if op is LockOp.EXCLUSIVE else 0
        if not blocking:
            flags |= LOCKFILE_FAIL_IMMEDIATELY
        ok = kernel32.LockFileEx(handle, flags, 0, low, high, ctypes.byref(overlapped))
    if not ok:
        raise getattr(ctypes, "WinError")(ctypes.get_last_error())  # noqa: B009


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs.  Never ``os.kill(pid, 0)`` on Windows: that terminates it."""
    if sys.platform != "win32":
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    ctypes, kernel32 = _kernel32()
    handle = kernel32.OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    if not handle:
        return bool(ctypes.get_last_error() == 5)  # access denied: it exists
    try:
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        return bool(code.value == STILL_ACTIVE)
    finally:
        kernel32.CloseHandle(handle)


def lock_within(
    attempt: Callable[[bool], None],
    timeout: float,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> None:
    """Take a lock by non-blocking attempts (``attempt(False)``) for ``timeout`` seconds,
    then raise ``TimeoutError(ETIMEDOUT)``: a blocking lock call cannot be bounded portably,
    and a holder that is stuck must not stop every other process for good."""
    deadline = clock() + timeout
    while True:
        try:
            attempt(False)
            return
        except OSError as exc:
            if exc.errno not in LOCK_BUSY:
                raise
        left = deadline - clock()
        if left <= 0:
            raise TimeoutError(errno.ETIMEDOUT, f"lock not taken within {timeout:g} s")
        sleep(min(LOCK_POLL_SECONDS, left))
