"""The mutation operators: each ``StreamRule`` here is one way to get a refresh wrong.

Their class fields are the site or variant (``rule(NarrowLock, per=LockName.PID)``);
``_mutants`` names each combination it uses as one mutant.
"""

from __future__ import annotations

import contextlib
import enum
import posixpath

from refresh_engine import (
    AgentContext,
    Close,
    Done,
    Effect,
    Flock,
    Flow,
    Fsync,
    HttpPost,
    Lockf,
    LockFileEx,
    MsvcrtLocking,
    MsvcrtMode,
    Open,
    Opened,
    OpenFlags,
    Outcome,
    Read,
    ReadData,
    Replace,
    Truncate,
    Unlink,
    Write,
    Wrote,
    ops,
)

from ._mutant_stream import (
    FAKE_FD,
    Action,
    Emit,
    Fake,
    LockEffect,
    StreamMutant,
    StreamRule,
    quietly,
)


class DropLock(StreamRule):
    """Take no lock: every lock and unlock of the lock file is answered ``Done``.

    ``platforms``: only there (as an engine whose lock module is missing on one OS).
    """

    platforms: frozenset[str] = frozenset()

    def before(self, effect: Effect) -> Flow[Action]:
        applies = not self.platforms or self.ctx.platform in self.platforms
        if applies and isinstance(effect, LockEffect) and self.on_lock_file(effect):
            return Fake(Done())
        return Emit(effect)
        yield


class LockName(enum.Enum):
    AGENT = "agent"  # <key>.<agent>.lock: one lock per agent
    PID = "pid"  # <key>.<pid>.lock: one lock per process


class NarrowLock(StreamRule):
    """Open a narrower lock file than the engine named: per agent or per process."""

    per: LockName = LockName.AGENT

    def before(self, effect: Effect) -> Flow[Action]:
        if isinstance(effect, Open) and effect.path == self.lock:
            tag = self.ctx.agent if self.per is LockName.AGENT else str((yield from ops.getpid()))
            return Emit(Open(f"{self.lock.removesuffix('.lock')}.{tag}.lock", effect.flags))
        return Emit(effect)


class Phase(enum.Enum):
    """Points in a refresh under the lock where an operator moves the lock or the unlock."""

    AFTER_REREAD = "after-reread"  # the store re-read under the lock is closed
    BEFORE_EXCHANGE = "before-exchange"  # the refresh POST is about to go out
    AFTER_EXCHANGE = "after-exchange"  # the refresh response has come back
    BEFORE_REPLACE = "before-replace"  # the temp file is about to replace the store


class PhaseRule(StreamRule):
    """A rule that acts once when the refresh reaches ``phase``: ``at_phase``."""

    phase: Phase = Phase.AFTER_EXCHANGE

    def before(self, effect: Effect) -> Flow[Action]:
        if (self.phase is Phase.BEFORE_EXCHANGE and isinstance(effect, HttpPost)) or (
            self.phase is Phase.BEFORE_REPLACE
            and isinstance(effect, Replace)
            and effect.dst == self.store
        ):
            yield from self.at_phase()
        return (yield from self.rewrite_effect(effect))

    def after(
        self, effect: Effect, outcome: Outcome, error: Exception | None
    ) -> Flow[tuple[Outcome, Exception | None]]:
        if (self.phase is Phase.AFTER_EXCHANGE and isinstance(effect, HttpPost)) or (
            self.phase is Phase.AFTER_REREAD and isinstance(effect, Close) and self.on_store(effect)
        ):
            yield from self.at_phase()
        return outcome, error

    def at_phase(self) -> Flow[None]:
        return
        yield

    def rewrite_effect(self, effect: Effect) -> Flow[Action]:
        return Emit(effect)
        yield


class LockLate(PhaseRule):
    """Take the lock later than the engine asked: only once the refresh reaches ``phase``.

    Until then the engine believes it holds the lock; if the refresh never
    gets there (the store was fresh), the lock is never taken.
    """

    def __init__(self, engine: StreamMutant, ctx: AgentContext) -> None:
        super().__init__(engine, ctx)
        self.deferred: LockEffect | None = None
        self.taken = False

    def rewrite_effect(self, effect: Effect) -> Flow[Action]:
        if self.is_acquire(effect) and isinstance(effect, LockEffect):
            self.deferred = effect
            return Fake(Done())
        if self.is_release(effect) and not self.taken:
            return Fake(Done())
        return Emit(effect)
        yield

    def at_phase(self) -> Flow[None]:
        if self.deferred is not None and not self.taken:
            self.taken = True
            yield self.deferred


class UnlockEarly(PhaseRule):
    """Release the lock early, once the refresh reaches ``phase``; the real unlock is dropped."""

    def __init__(self, engine: StreamMutant, ctx: AgentContext) -> None:
        super().__init__(engine, ctx)
        self.released = False

    def rewrite_effect(self, effect: Effect) -> Flow[Action]:
        if self.released and self.is_release(effect):
            return Fake(Done())
        return Emit(effect)
        yield

    def at_phase(self) -> Flow[None]:
        unlock = self.release_effect()
        if self.held and unlock is not None and not self.released:
            self.released = True
            if isinstance(unlock, MsvcrtLocking):
                yield from ops.seek(unlock.fd, 0)
            yield unlock


class Reread(enum.Enum):
    DECISION = "decision"  # the read under the lock that decides whether to refresh
    SAVE = "save"  # the read that save() merges the new credential into


class SkipReread(StreamRule):
    """Answer one store read under the lock from the engine's previous read, unseen."""

    which: Reread = Reread.DECISION

    def __init__(self, engine: StreamMutant, ctx: AgentContext) -> None:
        super().__init__(engine, ctx)
        self.last: bytes | None = None  # the store's bytes, as last read
        self.faking = False
        self.done = False
        self.refreshed = False  # the refresh POST went out: the next read is save()'s

    def _due(self) -> bool:
        if self.done or self.last is None or not self.held:
            return False
        return self.which is Reread.DECISION or self.refreshed

    def before(self, effect: Effect) -> Flow[Action]:
        if isinstance(effect, HttpPost):
            self.refreshed = True
        if self.is_store_read(effect) and self._due():
            self.faking = True
            self.paths[FAKE_FD] = self.store
            return Fake(Opened(FAKE_FD))
        if self.faking and isinstance(effect, Read) and effect.fd == FAKE_FD:
            assert self.last is not None
            return Fake(ReadData(self.last))
        if self.faking and isinstance(effect, Close) and effect.fd == FAKE_FD:
            self.faking, self.done = False, True
            return Fake(Done())
        return Emit(effect)
        yield

    def after(
        self, effect: Effect, outcome: Outcome, error: Exception | None
    ) -> Flow[tuple[Outcome, Exception | None]]:
        if isinstance(effect, Read) and self.on_store(effect) and isinstance(outcome, ReadData):
            self.last = outcome.data
        return outcome, error
        yield


class LockFileChurn(enum.Enum):
    UNLINK_AFTER_UNLOCK = "unlink-after-unlock"
    UNLINK_BEFORE_UNLOCK = "unlink-before-unlock"
    RECREATE_AT_RELEASE = "recreate-at-release"  # unlink, then create a fresh empty one
    REPLACE_AT_ACQUIRE = "replace-at-acquire"  # write our pid to a temp, replace the lock file


class ChurnLockFile(StreamRule):
    """Remove or recreate the lock file around the lock: a waiter may lock a dead inode."""

    churn: LockFileChurn = LockFileChurn.UNLINK_AFTER_UNLOCK

    def before(self, effect: Effect) -> Flow[Action]:
        if self.churn is LockFileChurn.UNLINK_BEFORE_UNLOCK and self.is_release(effect):
            yield from quietly(Unlink(self.lock))
        return Emit(effect)

    def after(
        self, effect: Effect, outcome: Outcome, error: Exception | None
    ) -> Flow[tuple[Outcome, Exception | None]]:
        if error is None and self.is_release(effect):
            if self.churn is LockFileChurn.UNLINK_AFTER_UNLOCK:
                yield from quietly(Unlink(self.lock))
            elif self.churn is LockFileChurn.RECREATE_AT_RELEASE:
                yield from quietly(Unlink(self.lock))
                yield from _create_empty(self.lock)
        churn_at_acquire = self.churn is LockFileChurn.REPLACE_AT_ACQUIRE
        if churn_at_acquire and error is None and self.is_acquire(effect):
            yield from _write_replace(self.lock, str((yield from ops.getpid())).encode())
        return outcome, error


def _create_empty(path: str) -> Flow[None]:
    with contextlib.suppress(OSError):
        fd = yield from ops.open_file(path, OpenFlags.WRITE | OpenFlags.CREATE)
        yield from ops.close(fd)


def _write_replace(path: str, data: bytes) -> Flow[None]:
    temp = path + ".pid.tmp"
    with contextlib.suppress(OSError):
        fd = yield from ops.open_file(temp, OpenFlags.WRITE | OpenFlags.CREATE | OpenFlags.TRUNCATE)
        try:
            yield from ops.write(fd, data)
        finally:
            yield from ops.close(fd)
        yield from ops.replace(temp, path)


class ReentrantPerProcess(StreamRule):
    """The lock is owned by the process: an agent whose process already holds it goes on.

    Per-process state lives on the engine, keyed by pid (the simulator runs
    one engine object for every process).
    """

    def __init__(self, engine: StreamMutant, ctx: AgentContext) -> None:
        super().__init__(engine, ctx)
        self.pid: int | None = None
        self.skipped = False

    def before(self, effect: Effect) -> Flow[Action]:
        if self.is_acquire(effect):
            self.pid = yield from ops.getpid()
            depth = self.engine.shared.get(self.pid, 0)
            self.engine.shared[self.pid] = depth + 1
            if depth > 0:
                self.skipped = True
                return Fake(Done())
        if self.is_release(effect) and self.pid is not None:
            self.engine.shared[self.pid] -= 1
            if self.skipped:
                return Fake(Done())
        return Emit(effect)


class GiveUp(StreamRule):
    """Wait for the lock at most ``timeout`` seconds (``None``: one try), then go on without it."""

    timeout: float | None = None
    poll: float = 1.0

    def __init__(self, engine: StreamMutant, ctx: AgentContext) -> None:
        super().__init__(engine, ctx)
        self.got = False

    def before(self, effect: Effect) -> Flow[Action]:
        if self.is_acquire(effect) and isinstance(effect, LockEffect):
            waited = 0.0
            while True:
                try:
                    yield _non_blocking(effect)
                except OSError:
                    if self.timeout is None or waited >= self.timeout:
                        yield from ops.log(f"{self.ctx.agent}: lock busy; going on without it")
                        return Fake(Done())
                    yield from ops.sleep(self.poll)
                    waited += self.poll
                    continue
                self.got = True
                return Fake(Done())
        if self.is_release(effect) and not self.got:
            return Fake(Done())
        return Emit(effect)


def _non_blocking(effect: LockEffect) -> Effect:
    match effect:
        case Flock(fd=fd, op=op):
            return Flock(fd, op, blocking=False)
        case Lockf(fd=fd, op=op):
            return Lockf(fd, op, blocking=False)
        case LockFileEx(fd=fd, op=op, offset=offset, length=length):
            return LockFileEx(fd, op, False, offset, length)
        case MsvcrtLocking(fd=fd, nbytes=nbytes):
            return MsvcrtLocking(fd, MsvcrtMode.NBLOCK, nbytes)


class TempName(enum.Enum):
    FIXED = "fixed"  # .auth-profiles.json.tmp for every writer
    PID = "pid"  # one per process: shared by a gateway's agents


class SharedTemp(StreamRule):
    """Stage the save in a temp file other writers share."""

    name: TempName = TempName.FIXED

    def __init__(self, engine: StreamMutant, ctx: AgentContext) -> None:
        super().__init__(engine, ctx)
        self.renamed: dict[str, str] = {}

    def before(self, effect: Effect) -> Flow[Action]:
        if isinstance(effect, Open) and self.is_temp(effect.path):
            directory, base = posixpath.split(self.store)
            tag = "" if self.name is TempName.FIXED else f".{(yield from ops.getpid())}"
            self.renamed[effect.path] = posixpath.join(directory, f".{base}{tag}.tmp")
            return Emit(Open(self.renamed[effect.path], truncating(effect.flags)))
        if isinstance(effect, Replace) and effect.src in self.renamed:
            return Emit(Replace(self.renamed[effect.src], effect.dst))
        if isinstance(effect, Unlink) and effect.path in self.renamed:
            return Emit(Unlink(self.renamed[effect.path]))
        return Emit(effect)


def truncating(flags: OpenFlags) -> OpenFlags:
    """A create-exclusive open as the naive writer does it: create or truncate, following
    whatever is there."""
    if flags & OpenFlags.EXCLUSIVE:
        return (flags & ~OpenFlags.EXCLUSIVE) | OpenFlags.TRUNCATE
    return flags


class FsyncSite(enum.Enum):
    DROPPED = "dropped"  # no fsync at all
    BEFORE_WRITE = "before-write"  # fsync of the empty temp file, then the write


class SkipFsync(StreamRule):
    """The temp file's data is not made durable before it replaces the store."""

    site: FsyncSite = FsyncSite.DROPPED

    def before(self, effect: Effect) -> Flow[Action]:
        if isinstance(effect, Fsync):
            return Fake(Done())
        if (
            self.site is FsyncSite.BEFORE_WRITE
            and isinstance(effect, Write)
            and self.on_temp(effect)
        ):
            yield Fsync(effect.fd)
        return Emit(effect)


class InPlace(enum.Enum):
    TRUNCATING_OPEN = "o-trunc"  # open(store, O_TRUNC), write
    TRUNCATE_CALL = "ftruncate-0"  # open(store), ftruncate(0), write
    TRUNCATE_AFTER = "write-then-ftruncate"  # open(store), write over, ftruncate(len)


class WriteInPlace(StreamRule):
    """Write the store itself instead of a temp file; the replace is dropped."""

    how: InPlace = InPlace.TRUNCATING_OPEN

    def before(self, effect: Effect) -> Flow[Action]:
        if isinstance(effect, Open) and self.is_temp(effect.path):
            if not effect.flags & OpenFlags.WRITE:
                return Emit(effect)  # a look for a staged file: there never is one
            flags = truncating(effect.flags)
            if self.how is not InPlace.TRUNCATING_OPEN:
                flags &= ~OpenFlags.TRUNCATE
            return Emit(Open(self.store, flags))
        if isinstance(effect, Unlink) and self.is_temp(effect.path):
            return Fake(Done())
        if isinstance(effect, Write) and self.on_temp(effect) and self.how is InPlace.TRUNCATE_CALL:
            yield Truncate(effect.fd, 0)
        if isinstance(effect, Replace) and self.is_temp(effect.src):
            return Fake(Done())
        return Emit(effect)

    def after(
        self, effect: Effect, outcome: Outcome, error: Exception | None
    ) -> Flow[tuple[Outcome, Exception | None]]:
        if (
            self.how is InPlace.TRUNCATE_AFTER
            and isinstance(effect, Write)
            and self.on_temp(effect)
            and error is None
        ):
            yield Truncate(effect.fd, len(effect.data))
        return outcome, error


class IgnoreError(StreamRule):
    """Any error of one effect kind is dropped: the engine is told the call succeeded."""

    kind: type[Effect] | tuple[type[Effect], ...] = Replace

    def after(
        self, effect: Effect, outcome: Outcome, error: Exception | None
    ) -> Flow[tuple[Outcome, Exception | None]]:
        if error is not None and isinstance(effect, self.kind):
            if isinstance(effect, Write):
                return Wrote(len(effect.data)), None
            return Done(), None
        return outcome, error
        yield
