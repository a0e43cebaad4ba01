"""The mutants: the reference engine with one deliberate bug each, by operator and site.

Each ``Mutant`` builds an engine that differs from the reference in one
decision a real engine makes about locks, reads, writes or errors: most by
rewriting the reference's effect stream (``_mutant_ops``), the rest through
the parameters and hooks the reference exposes (lock kind, scope, timing,
``acquire_lock``).  ``tokenrace mutate`` runs the default ``check`` battery
on each; a mutant the battery does not catch is a survivor, and its
``gap`` says which dimension of the world a battery needs to catch it.
An equivalent mutant (no world can tell it from the reference) carries the
argument in ``equivalent``; it is left out of the score only because of it.
"""

from __future__ import annotations

import contextlib
import enum
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from refresh_engine import (
    AgentContext,
    Effect,
    Flock,
    Flow,
    Fsync,
    Held,
    LockFileEx,
    LockKind,
    LockScope,
    LockTiming,
    Mkdir,
    ReferenceEngine,
    Replace,
    Write,
    acquire_lock,
    ops,
    read_file,
)
from simulator import Engine

from ._mutant_ops import (
    ChurnLockFile,
    DropLock,
    FsyncSite,
    GiveUp,
    IgnoreError,
    InPlace,
    LockFileChurn,
    LockLate,
    LockName,
    NarrowLock,
    Phase,
    ReentrantPerProcess,
    Reread,
    SharedTemp,
    SkipFsync,
    SkipReread,
    TempName,
    UnlockEarly,
    WriteInPlace,
)
from ._mutant_stream import StreamMutant, StreamRule, rule


class Operator(enum.Enum):
    DROP_LOCK = "drop-lock"
    NARROW_LOCK = "narrow-lock"
    LOCK_AFTER_READ = "lock-after-read"
    SKIP_REREAD = "skip-reread"
    LOCK_FILE_CHURN = "lock-file-churn"
    LOCK_OWNER = "lock-owner"
    LOCK_GIVE_UP = "lock-give-up"
    SHARED_TEMP = "shared-temp"
    SKIP_FSYNC = "skip-fsync"
    WRITE_IN_PLACE = "write-in-place"
    UNLOCK_EARLY = "unlock-early"
    IGNORE_ERROR = "ignore-error"
    STALE_BREAK = "stale-break"


class Gap(enum.Enum):
    """A dimension of the world a battery needs to catch a mutant (issue 18's list)."""

    NONE = ""
    SERVER_FAULTS = "server faults during refresh (5xx, 429, reset, lost response)"
    LONG_STALLS = "stalls longer than typical lock timeouts (1 s to 10 min)"
    PROCESS_FAULTS = "process faults: kill, machine crash (unsynced data lost)"
    STORE_POPULATION = "several profiles, or an outside writer of the store"
    OUTSIDE_WRITER = (
        "an outside writer of the store (another tool, a CLI login) that takes none of the "
        "engine's locks"
    )
    OS_MODELS = "OS models: macOS worlds"
    TOPOLOGY = "topology: gateway threads, mixed process layouts"
    MUTUAL_EXCLUSION = (
        "the checker's mutual-exclusion anomaly: two holders of one lock, reported even "
        "when it cost nothing yet"
    )


@dataclass(frozen=True, slots=True)
class Probe:
    """A one-agent world where the mutant's effect trace must differ from the reference's.

    ``platform``: the OS the agent sees; ``fail``: the effect kind whose calls fail
    (with ``error``); ``busy``: non-blocking lock attempts fail; ``turns``: how
    many refreshes the agent makes one after the other.
    """

    platform: str = "linux"
    fail: type[Effect] | None = None
    error: type[OSError] = PermissionError
    busy: bool = False
    turns: int = 1


@dataclass(frozen=True, slots=True)
class Mutant:
    name: str
    operator: Operator
    build: Callable[[], Engine]
    description: str
    gap: Gap = Gap.NONE  # the dimension it needs, when the default battery misses it
    equivalent: str = ""  # why no world can tell it from the reference, if so
    why: str = ""  # how the gap hides it, where that is not obvious from the gap
    probe: Probe = Probe()


def _stream(base: type[StreamRule], **fields: Any) -> Callable[[], Engine]:
    made = rule(base, **fields)
    return lambda: StreamMutant(made)


def _hook(**options: Any) -> Callable[[], Engine]:
    return lambda: ReferenceEngine(**options)


class PosixLock(ReferenceEngine):
    """A lock kind of the zoo where ``fcntl`` exists; the native lock on Windows.

    The stale-break and ownership mutants change the lock only on POSIX: the
    zoo's O_EXCL release unlinks the lock file while a waiter may have it open
    to read the owner, a sharing violation on Windows (``engine-error``), and
    ``lockf`` does not exist there.  Either would get the mutant killed on
    Windows for a reason other than its own change.
    """

    def __init__(self, lock: LockKind, timing: LockTiming) -> None:
        super().__init__(lock=lock, timing=timing)

    def acquire_lock(self, ctx: AgentContext) -> Flow[Held]:
        kind = LockKind.NATIVE if ctx.platform == "win32" else self.lock
        path = self.lock_path(ctx)
        return (yield from acquire_lock(kind, path, platform=ctx.platform, timing=self.timing))


def _posix(lock: LockKind, **timing: float) -> Callable[[], Engine]:
    return lambda: PosixLock(lock, LockTiming(**timing))


class PidIsOurs(ReferenceEngine):
    """An O_EXCL lock file naming our own pid is taken as ours: a gateway's agents share it."""

    def __init__(self) -> None:
        super().__init__(lock=LockKind.EXCL_FILE, timing=LockTiming(poll=1.0))

    def acquire_lock(self, ctx: AgentContext) -> Flow[Held]:
        path = self.lock_path(ctx)
        if ctx.platform == "win32":  # as PosixLock: O_EXCL release is unsafe on Windows
            return (yield from acquire_lock(LockKind.NATIVE, path, platform=ctx.platform))
        with contextlib.suppress(FileExistsError):
            yield from ops.mkdir(posixpath.dirname(path))
        pid = yield from ops.getpid()
        while True:
            try:
                fd = yield from ops.create_exclusive(path)
            except FileExistsError:
                owner = b""
                with contextlib.suppress(FileNotFoundError):
                    owner = yield from read_file(path)
                if owner.strip() == str(pid).encode():
                    return Held(LockKind.NONE, path)  # "our process holds it already"
                yield from ops.sleep(self.timing.poll)
                continue
            yield from ops.write(fd, f"{pid}\n".encode())
            return Held(LockKind.EXCL_FILE, path, fd)


_LOCKS = (Flock, LockFileEx)
_SAVES_SERIALIZED = (
    "every save, of any profile, runs under the store's write lock (the reference's "
    "guarantee 3), so no two saves overlap, in the two-profile and outside-login worlds too; "
    "a kill or a crash leaves a temp file the next save truncates; only a writer that takes "
    "no lock shares it, and against such a writer the reference itself loses updates"
)

MUTANTS: tuple[Mutant, ...] = (
    # ------------------------------------------------------------------ drop the lock
    Mutant("drop-lock/all", Operator.DROP_LOCK, _stream(DropLock), "no lock is taken"),
    Mutant(
        "drop-lock/windows",
        Operator.DROP_LOCK,
        _stream(DropLock, platforms=frozenset({"win32"})),
        "no lock on Windows (the lock module is missing there)",
        probe=Probe(platform="win32"),
    ),
    Mutant(
        "drop-lock/macos",
        Operator.DROP_LOCK,
        _stream(DropLock, platforms=frozenset({"darwin"})),
        "no lock on macOS",
        probe=Probe(platform="darwin"),
    ),
    Mutant("drop-lock/kind-none", Operator.DROP_LOCK, _hook(lock=LockKind.NONE), "lock=none"),
    # ---------------------------------------------------------------- narrow the lock
    Mutant(
        "narrow-lock/agent-dir",
        Operator.NARROW_LOCK,
        _hook(scope=LockScope.AGENT_DIR),
        "the lock lives in the agent's own dir",
    ),
    Mutant(
        "narrow-lock/per-agent-name",
        Operator.NARROW_LOCK,
        _stream(NarrowLock, per=LockName.AGENT),
        "the lock file's name carries the agent's name",
    ),
    Mutant(
        "narrow-lock/per-process-name",
        Operator.NARROW_LOCK,
        _stream(NarrowLock, per=LockName.PID),
        "the lock file's name carries the pid",
    ),
    Mutant(
        "narrow-lock/store-file",
        Operator.NARROW_LOCK,
        _hook(scope=LockScope.STORE_FILE),
        "the lock sits beside the store file instead of the state dir",
        equivalent="the reference reads and writes only the main store, so every agent's "
        "store-file lock is one file, <main store>.lock: a coarser lock than per profile "
        "(it also serializes other profiles of that store), never a narrower one",
    ),
    # ------------------------------------------------------------- lock after the read
    Mutant(
        "lock-after-read/after-reread",
        Operator.LOCK_AFTER_READ,
        _stream(LockLate, phase=Phase.AFTER_REREAD),
        "the lock is taken after the store is re-read",
    ),
    Mutant(
        "lock-after-read/after-exchange",
        Operator.LOCK_AFTER_READ,
        _stream(LockLate, phase=Phase.AFTER_EXCHANGE),
        "the lock is taken after the refresh, around the save only",
    ),
    Mutant(
        "lock-after-read/before-replace",
        Operator.LOCK_AFTER_READ,
        _stream(LockLate, phase=Phase.BEFORE_REPLACE),
        "the lock is taken just before the replace",
    ),
    # ------------------------------------------------------------- skip the re-read
    Mutant(
        "skip-reread/decision",
        Operator.SKIP_REREAD,
        _stream(SkipReread, which=Reread.DECISION),
        "under the lock the credential read before the lock is used",
    ),
    Mutant(
        "skip-reread/save",
        Operator.SKIP_REREAD,
        _stream(SkipReread, which=Reread.SAVE),
        "save() merges into the document read for the decision, not a fresh one",
    ),
    # ------------------------------------------------------ unlink or recreate the lock file
    *(
        Mutant(
            f"lock-file-churn/{churn.value}",
            Operator.LOCK_FILE_CHURN,
            _stream(ChurnLockFile, churn=churn),
            f"the lock file is churned: {churn.value}",
        )
        for churn in LockFileChurn
    ),
    # ------------------------------------------------------------------ lock ownership
    Mutant(
        "lock-owner/per-process-lockf",
        Operator.LOCK_OWNER,
        _posix(LockKind.LOCKF),
        "an fcntl record lock, owned by the process (native lock on Windows)",
    ),
    Mutant(
        "lock-owner/per-thread-mutex",
        Operator.LOCK_OWNER,
        _hook(lock=LockKind.MUTEX),
        "an in-process mutex: it excludes the threads of one process only",
    ),
    Mutant(
        "lock-owner/reentrant-per-process",
        Operator.LOCK_OWNER,
        _stream(ReentrantPerProcess),
        "a re-entrant lock counted per process: a second thread of the holder goes on",
        probe=Probe(turns=1),
    ),
    # ---------------------------------------------- proceed after a timeout or a failed lock
    Mutant(
        "lock-give-up/try-once",
        Operator.LOCK_GIVE_UP,
        _stream(GiveUp, timeout=None),
        "one non-blocking try, then on without the lock",
        probe=Probe(busy=True),
    ),
    *(
        Mutant(
            f"lock-give-up/after-{label}",
            Operator.LOCK_GIVE_UP,
            _stream(GiveUp, timeout=timeout, poll=poll),
            f"polls the lock for {label}, then goes on without it",
            probe=Probe(busy=True),
        )
        for label, timeout, poll in (
            ("1s", 1.0, 0.5),
            ("10s", 10.0, 1.0),
            ("60s", 60.0, 5.0),
            ("600s", 600.0, 30.0),
        )
    ),
    # ----------------------------------------------------------- fixed or shared temp names
    Mutant(
        "shared-temp/fixed",
        Operator.SHARED_TEMP,
        _stream(SharedTemp, name=TempName.FIXED),
        "every writer stages its save in .auth-profiles.json.tmp",
        why=_SAVES_SERIALIZED,
        gap=Gap.OUTSIDE_WRITER,
    ),
    Mutant(
        "shared-temp/per-process",
        Operator.SHARED_TEMP,
        _stream(SharedTemp, name=TempName.PID),
        "the temp file is named per process, shared by a gateway's agents",
        why=_SAVES_SERIALIZED,
        gap=Gap.OUTSIDE_WRITER,
    ),
    # -------------------------------------------------------------------- skip fsync
    Mutant(
        "skip-fsync/dropped",
        Operator.SKIP_FSYNC,
        _stream(SkipFsync, site=FsyncSite.DROPPED),
        "the temp file is never fsynced",
    ),
    Mutant(
        "skip-fsync/before-write",
        Operator.SKIP_FSYNC,
        _stream(SkipFsync, site=FsyncSite.BEFORE_WRITE),
        "the temp file is fsynced before it is written",
    ),
    # ------------------------------------------------------------------ write in place
    *(
        Mutant(
            f"write-in-place/{how.value}",
            Operator.WRITE_IN_PLACE,
            _stream(WriteInPlace, how=how),
            f"the store is rewritten in place ({how.value})",
        )
        for how in InPlace
    ),
    # ------------------------------------------------------ unlock before the write lands
    *(
        Mutant(
            f"unlock-early/{phase.value}",
            Operator.UNLOCK_EARLY,
            _stream(UnlockEarly, phase=phase),
            f"the lock is released {phase.value.replace('-', ' ')}",
        )
        for phase in (Phase.BEFORE_EXCHANGE, Phase.AFTER_EXCHANGE, Phase.BEFORE_REPLACE)
    ),
    # -------------------------------------------------- ignore the error of one effect kind
    Mutant(
        "ignore-error/replace",
        Operator.IGNORE_ERROR,
        _stream(IgnoreError, kind=Replace),
        "a failed replace is taken as done (the new token is never saved)",
        probe=Probe(fail=Replace),
    ),
    Mutant(
        "ignore-error/write",
        Operator.IGNORE_ERROR,
        _stream(IgnoreError, kind=Write),
        "a failed write is taken as complete",
        probe=Probe(fail=Write, error=OSError),
    ),
    Mutant(
        "ignore-error/fsync",
        Operator.IGNORE_ERROR,
        _stream(IgnoreError, kind=Fsync),
        "a failed fsync is taken as done",
        probe=Probe(fail=Fsync, error=OSError),
    ),
    Mutant(
        "ignore-error/lock",
        Operator.IGNORE_ERROR,
        _stream(IgnoreError, kind=_LOCKS),
        "a failed flock or LockFileEx is taken as granted",
        probe=Probe(fail=Flock, error=OSError),
    ),
    Mutant(
        "ignore-error/mkdir",
        Operator.IGNORE_ERROR,
        _stream(IgnoreError, kind=Mkdir),
        "any failure to create the locks dir is ignored, not only 'exists'",
        equivalent="a mkdir that failed for any reason but 'exists' leaves no locks dir, and "
        "the next effect, opening the lock file in it, fails with the same cause "
        "(FileNotFoundError, PermissionError): the error reaches the caller one call later, "
        "before any credential is read or sent",
        probe=Probe(fail=Mkdir),
    ),
    # ---------------------------------------------------------------- stale-lock breaking
    *(
        Mutant(
            f"stale-break/age-{stale:g}s",
            Operator.STALE_BREAK,
            _posix(LockKind.EXCL_FILE, stale=stale, poll=1.0),
            f"an O_EXCL lock file older than {stale:g} s is broken",
        )
        for stale in (20.0, 60.0, 180.0)
    ),
    *(
        Mutant(
            f"stale-break/lease-{lease:g}s",
            Operator.STALE_BREAK,
            _posix(LockKind.MKDIR, lease=lease, poll=1.0),
            f"a mkdir lock whose mtime is {lease:g} s old is broken (never renewed)",
        )
        for lease in (10.0, 60.0)
    ),
    Mutant(
        "stale-break/pid-only",
        Operator.STALE_BREAK,
        _posix(LockKind.EXCL_FILE, stale=1e9, poll=1.0),
        "an O_EXCL lock file is broken only when the pid in it is dead",
    ),
    Mutant(
        "stale-break/own-pid",
        Operator.STALE_BREAK,
        PidIsOurs,
        "an O_EXCL lock file that names our own pid is taken as ours",
    ),
)


def mutant_named(name: str) -> Mutant:
    for mutant in MUTANTS:
        if mutant.name == name:
            return mutant
    raise KeyError(name)
