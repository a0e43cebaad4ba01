"""Faults a schedule can inject, and where each may strike.

A fault is part of the schedule, written after the agent it strikes:
``atlas!drop`` delivers no response to Atlas's request (the server already
committed it), ``nova!kill`` kills Nova's process before its next effect.
The kernel offers each fault only where it means something, and only while
the world's fault budget lasts: ``atlas!ioerror`` only when Atlas's next
effect is a file call that can fail (its row in ``_semantics`` names the
error: a write fails with ENOSPC, an fsync with EIO, a lock with ENOLCK).
"""

from __future__ import annotations

import enum
import errno
from collections.abc import Callable
from typing import Any

from refresh_engine import Failed, Flock, Lockf, LockFileEx, LockOp, Open, OpenFlags


class FaultKind(enum.Enum):
    KILL = "kill"  # kill the agent's process (all its agents); it restarts later
    DROP = "drop"  # the server committed the request; the response never arrives
    SERVER_ERROR = "5xx"  # the server answers 503 without looking at the request
    RATE_LIMIT = "429"  # the server answers 429 without looking at the request
    RESET = "reset"  # the connection resets before the server sees the request
    STALL = "stall"  # the agent stops for a while (GC pause, swapped out, slow disk)
    CRASH = "crash"  # the machine loses power: every process dies, unsynced data is lost
    SLOW = "slow"  # the server committed; its answer arrives only after the stall length
    IO_ERROR = "ioerror"  # the agent's next file call fails (disk full, I/O error, no locks)
    #: the stores' directories stop being writable (chmod a-w, another user's umask): from
    #: then on, every call that adds, renames or removes a name in them fails with EACCES
    DENIED = "denied"

    @classmethod
    def parse(cls, text: str) -> FaultKind:
        for kind in cls:
            if kind.value == text:
                return kind
        known = ", ".join(kind.value for kind in cls)
        raise ValueError(f"unknown fault {text!r}: known faults are {known}")

    @property
    def kills(self) -> bool:
        """Whether the fault ends processes: what they held in memory is gone."""
        return self in (FaultKind.KILL, FaultKind.CRASH)


#: Faults that strike a request before the server sees it.
REQUEST_FAULTS = (FaultKind.SERVER_ERROR, FaultKind.RATE_LIMIT, FaultKind.RESET)


# ------------------------------------------------- how an ``ioerror`` strikes a call


#: The errors an ``ioerror`` injects, with Linux's messages (the same on every host).
INJECTED_ERRORS = {
    errno.ENOSPC: "No space left on device",
    errno.EIO: "Input/output error",
    errno.EROFS: "Read-only file system",
    errno.ENOLCK: "No locks available",
}


def injected(code: int) -> Failed:
    """The ``OSError`` an I/O fault makes a call raise, with errno ``code``."""
    return Failed("OSError", code, f"{INJECTED_ERRORS[code]} (injected)")


def failure(code: int) -> Callable[[Any], Failed | None]:
    """A row's ``fails_with`` for a call that always fails with ``code``."""
    failed = injected(code)
    return lambda effect: failed


def open_fails(effect: Open) -> Failed | None:
    """Opening to create or write needs space; a plain read-only open is not struck."""
    if effect.flags & (OpenFlags.CREATE | OpenFlags.TRUNCATE | OpenFlags.WRITE):
        return injected(errno.ENOSPC)
    return None


def lock_fails(effect: Flock | Lockf | LockFileEx) -> Failed | None:
    """Taking a lock can fail (no lock table entry left, NFS lockd gone); an unlock is not."""
    return None if effect.op is LockOp.UNLOCK else injected(errno.ENOLCK)
