"""Mutual exclusion: two agents that each believe they hold one lock at the same time.

An engine declares its critical section by the locks it takes: from the
effect that acquires a lock until the effect that releases it.  This module
follows, per agent, what the engine *believes* it holds, from the history's
effects and outcomes alone — not what the OS model granted — so a lock that
the world lets two agents "hold" at once is seen the moment the second one
gets it, even when no token was lost (yet):

- an ``flock`` and a ``lockf`` lock of one file never exclude each other
  (class 10 of the corpus, incompatible locks);
- ``flock`` on NFS mounted ``nolock`` succeeds and locks nothing (class 11);
- a POSIX record lock (``lockf``) belongs to the process: two agents of one
  gateway both get it, and any close of the file drops it (class 12);
- a lock file or lock directory broken as stale while its holder still works
  (class 6: a short stale timeout, a stall longer than a lease).

What counts as holding, per effect (keyed by the agent, and by the lock
file's path from the history's ``path`` field or the effect's own path):

- ``Flock(fd, SHARED or EXCLUSIVE)``: from its ``Done`` until the next ``Flock``
  on that fd (a conversion drops the old lock even when it fails) or ``Close(fd)``;
- ``Lockf(fd, ...)``: from its ``Done`` until ``Lockf(UNLOCK)`` of that file or
  ``Close(fd)``;
- ``LockFileEx(fd, ..., offset, length)``: from its ``Done`` until
  ``LockFileEx(UNLOCK)`` of that range or ``Close(fd)``;
- ``MsvcrtLocking(fd, LOCK...)``: from its ``Done`` until ``UNLOCK`` or ``Close(fd)``;
- ``CreateExclusive(path)`` or ``Open(path, CREATE|EXCLUSIVE)``: from its
  ``Opened`` until the holder's ``Unlink(path)`` or ``Replace(path, ...)``;
- ``Mkdir(path)``: from its ``Done`` until the holder's ``Rmdir(path)``;

and every holding of an agent ends with its turn (``TURN_END``) and with its
process (a ``FAULT`` that ``killed`` it).  Another agent's ``Unlink`` or
``Rmdir`` of a lock (a stale-lock break) ends nothing: the holder still
believes it holds the lock, and the breaker that takes it is the second
holder.  Two holdings conflict when they are of one file (overlapping byte
ranges, for ``LockFileEx``), of two agents, and at least one is exclusive.

An in-process ``Mutex`` is a lock of one process only; the model never grants
it twice in a process, and two processes' mutexes of one name are two locks,
so it is not followed here.  An engine that takes no lock declares no
critical section and is never reported by this rule.
"""

from __future__ import annotations

import enum
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

from refresh_engine import (
    Close,
    CreateExclusive,
    Done,
    Flock,
    Lockf,
    LockFileEx,
    LockOp,
    Mkdir,
    MsvcrtLocking,
    MsvcrtMode,
    Open,
    Opened,
    OpenFlags,
    Replace,
    Rmdir,
    Unlink,
)
from simulator import EventKind, HistoryEvent

from ._anomalies import Anomaly, AnomalyKind, Severity

__all__ = ["Holding", "LockHow", "exclusion_anomalies"]


class LockHow(enum.Enum):
    """The mechanism a holding was taken with, as the anomaly's message names it."""

    FLOCK = "flock"
    LOCKF = "lockf"
    LOCKFILEEX = "LockFileEx"
    MSVCRT = "msvcrt.locking"
    EXCL_FILE = "O_EXCL lock file"
    MKDIR = "mkdir lock"


@dataclass(frozen=True, slots=True)
class Holding:
    """An agent's belief that it holds a lock, from ``step`` on."""

    agent: str
    lock: str  # the lock file's (or directory's) normalized path
    how: LockHow
    exclusive: bool
    step: int
    fd: int | None = None  # the descriptor it was taken through (None: a path lock)
    offset: int = 0  # LockFileEx: the byte range; other kinds lock the whole file
    length: int | None = None

    def conflicts(self, other: Holding) -> bool:
        if self.agent == other.agent or self.lock != other.lock:
            return False
        if not (self.exclusive or other.exclusive):
            return False
        return _overlap(self.offset, self.length, other.offset, other.length)


def _overlap(a: int, a_len: int | None, b: int, b_len: int | None) -> bool:
    a_end = None if a_len is None else a + a_len
    b_end = None if b_len is None else b + b_len
    return (a_end is None or b < a_end) and (b_end is None or a < b_end)


_FD_KINDS = (LockHow.FLOCK, LockHow.LOCKF, LockHow.LOCKFILEEX, LockHow.MSVCRT)
_LOCKING = (MsvcrtMode.LOCK, MsvcrtMode.NBLOCK, MsvcrtMode.RLOCK, MsvcrtMode.NBRLOCK)


class _Tracker:
    """Holdings as the history unfolds, and each acquisition's conflicts."""

    def __init__(self) -> None:
        self.held: list[Holding] = []
        self.found: list[Anomaly] = []

    def drop(self, agent: str, **match: object) -> None:
        def matches(holding: Holding) -> bool:
            return holding.agent == agent and all(
                getattr(holding, name) == value for name, value in match.items()
            )

        self.held = [holding for holding in self.held if not matches(holding)]

    def take(self, event: HistoryEvent, holding: Holding) -> None:
        for other in self.held:
            if holding.conflicts(other):
                self.found.append(_anomaly(event, holding, other))
        self.held.append(holding)

    def see(self, event: HistoryEvent) -> None:
        agent = event.agent
        if event.kind is EventKind.TURN_END or (event.kind is EventKind.FAULT and event.killed):
            self.drop(agent)
            return
        if event.kind is not EventKind.EFFECT or event.effect is None:
            return
        ok = isinstance(event.outcome, Done)
        lock = posixpath.normpath(event.path) if event.path else ""
        match event.effect:
            case Flock(fd, op):
                self.drop(agent, fd=fd, how=LockHow.FLOCK)
                if ok and op is not LockOp.UNLOCK and lock:
                    exclusive = op is LockOp.EXCLUSIVE
                    self.take(event, Holding(agent, lock, LockHow.FLOCK, exclusive, event.step, fd))
            case Lockf(fd, op):
                if op is LockOp.UNLOCK or (ok and lock):
                    self.drop(agent, lock=lock, how=LockHow.LOCKF)
                if ok and op is not LockOp.UNLOCK and lock:
                    exclusive = op is LockOp.EXCLUSIVE
                    self.take(event, Holding(agent, lock, LockHow.LOCKF, exclusive, event.step, fd))
            case LockFileEx(fd, op, _, offset, length):
                if op is LockOp.UNLOCK:
                    self.drop(agent, fd=fd, how=LockHow.LOCKFILEEX, offset=offset, length=length)
                elif ok and lock:
                    exclusive = op is LockOp.EXCLUSIVE
                    held = Holding(
                        agent, lock, LockHow.LOCKFILEEX, exclusive, event.step, fd, offset, length
                    )
                    self.take(event, held)
            case MsvcrtLocking(fd, mode):
                if mode is MsvcrtMode.UNLOCK:
                    self.drop(agent, fd=fd, how=LockHow.MSVCRT)
                elif ok and lock and mode in _LOCKING:
                    self.take(event, Holding(agent, lock, LockHow.MSVCRT, True, event.step, fd))
            case Close(fd):
                for how in _FD_KINDS:
                    self.drop(agent, fd=fd, how=how)
            case CreateExclusive(path) if isinstance(event.outcome, Opened):
                self._take_path(event, path, LockHow.EXCL_FILE)
            case Open(path, flags) if isinstance(event.outcome, Opened) and _exclusive(flags):
                self._take_path(event, path, LockHow.EXCL_FILE)
            case Mkdir(path) if ok:
                self._take_path(event, path, LockHow.MKDIR)
            case Unlink(path):
                self.drop(agent, lock=posixpath.normpath(path), how=LockHow.EXCL_FILE)
            case Rmdir(path):
                self.drop(agent, lock=posixpath.normpath(path), how=LockHow.MKDIR)
            case Replace(src, _) if ok:
                self.drop(agent, lock=posixpath.normpath(src), how=LockHow.EXCL_FILE)

    def _take_path(self, event: HistoryEvent, path: str, how: LockHow) -> None:
        lock = posixpath.normpath(path)
        self.take(event, Holding(event.agent, lock, how, True, event.step))


def _exclusive(flags: OpenFlags) -> bool:
    return OpenFlags.CREATE in flags and OpenFlags.EXCLUSIVE in flags


def _anomaly(event: HistoryEvent, holding: Holding, other: Holding) -> Anomaly:
    mode = "exclusive" if holding.exclusive else "shared"
    message = (
        f"{holding.agent} took a {mode} {holding.how.value} on {holding.lock} while "
        f"{other.agent} held its {other.how.value} on it (since step {other.step}): "
        "two holders of one lock"
    )
    return Anomaly(
        AnomalyKind.MUTUAL_EXCLUSION,
        Severity.FATAL,
        holding.agent,
        (other.step, event.step),
        message,
    )


def exclusion_anomalies(events: Iterable[HistoryEvent]) -> list[Anomaly]:
    """Every acquisition that made a second holder of a lock another agent held."""
    tracker = _Tracker()
    for event in events:
        tracker.see(event)
    return tracker.found
