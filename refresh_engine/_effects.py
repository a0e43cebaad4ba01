"""The effect and outcome vocabulary: what an engine may ask of the world.

Effects sit at the level of OS calls because the races live there: a
refresh-token race is a question of which ``open``, ``read``, ``replace``
and ``flock`` happened in which order.  An engine yields an effect and is
sent back its outcome; a failed call is thrown into the engine as the
``OSError`` the real call would raise (``FileNotFoundError``,
``BlockingIOError`` ...), so engine code reads like ordinary Python.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field


class OpenFlags(enum.Flag):
    """What an ``Open`` asks for, mirroring ``os.O_*``."""

    READ = enum.auto()
    WRITE = enum.auto()
    CREATE = enum.auto()
    EXCLUSIVE = enum.auto()
    TRUNCATE = enum.auto()
    APPEND = enum.auto()


class LockOp(enum.Enum):
    """Lock operations of ``flock(2)``, ``lockf(3)`` and ``LockFileEx``.

    ``blocking=False`` on the effect adds ``LOCK_NB`` (or ``LOCKFILE_FAIL_IMMEDIATELY``).
    """

    SHARED = "shared"
    EXCLUSIVE = "exclusive"
    UNLOCK = "unlock"


class MsvcrtMode(enum.Enum):
    """The modes of ``msvcrt.locking``; values are the ``msvcrt.LK_*`` constants."""

    UNLOCK = 0  # LK_UNLCK
    LOCK = 1  # LK_LOCK: retries once a second, fails after 10 tries
    NBLOCK = 2  # LK_NBLCK: fails at once
    RLOCK = 3  # LK_RLCK: as LOCK (Windows has no read locks here)
    NBRLOCK = 4  # LK_NBRLCK: as NBLOCK


# --------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True)
class Open:
    """``os.open(path, flags, 0o600)``; outcome ``Opened``."""

    path: str
    flags: OpenFlags


@dataclass(frozen=True, slots=True)
class CreateExclusive:
    """``os.open(path, O_CREAT | O_EXCL | O_WRONLY, 0o600)``: the lock-file idiom.

    Fails with ``FileExistsError`` when the path exists; outcome ``Opened``.
    """

    path: str


@dataclass(frozen=True, slots=True)
class Read:
    """Read up to ``size`` bytes (all remaining bytes when ``None``); outcome ``ReadData``."""

    fd: int
    size: int | None = None


@dataclass(frozen=True, slots=True)
class Write:
    """Write ``data`` at the descriptor's offset; outcome ``Wrote``."""

    fd: int
    data: bytes = field(repr=False)  # may hold tokens: never in a repr


@dataclass(frozen=True, slots=True)
class Truncate:
    """``os.ftruncate(fd, size)``; outcome ``Done``."""

    fd: int
    size: int = 0


@dataclass(frozen=True, slots=True)
class Fsync:
    """``os.fsync(fd)``: what was written survives a crash; outcome ``Done``."""

    fd: int


@dataclass(frozen=True, slots=True)
class Close:
    """``os.close(fd)``; outcome ``Done``."""

    fd: int


@dataclass(frozen=True, slots=True)
class Replace:
    """``os.replace(src, dst)``: atomically point ``dst`` at ``src``'s file."""

    src: str
    dst: str


@dataclass(frozen=True, slots=True)
class Unlink:
    """``os.unlink(path)``; outcome ``Done``."""

    path: str


@dataclass(frozen=True, slots=True)
class Mkdir:
    """``os.mkdir(path, 0o700)``; ``FileExistsError`` when it exists."""

    path: str


@dataclass(frozen=True, slots=True)
class Stat:
    """``os.stat(path)``; outcome ``StatResult``."""

    path: str


@dataclass(frozen=True, slots=True)
class ReadLink:
    """``os.readlink(path)``; outcome ``LinkTarget``.  ``OSError`` EINVAL when ``path`` is
    not a symlink: how an engine finds that a store is a link to be written through."""

    path: str


@dataclass(frozen=True, slots=True)
class Flock:
    """``fcntl.flock(fd, op)``: a lock on the open file description.

    A blocking request that cannot be granted leaves the caller waiting (with a
    ``timeout``, that many seconds at most, then ``TimeoutError``); a non-blocking
    one fails with ``BlockingIOError``.
    """

    fd: int
    op: LockOp
    blocking: bool = True
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Seek:
    """``os.lseek(fd, offset, SEEK_SET)``; outcome ``Position``."""

    fd: int
    offset: int = 0


@dataclass(frozen=True, slots=True)
class Rmdir:
    """``os.rmdir(path)``: how a mkdir lock is released."""

    path: str


@dataclass(frozen=True, slots=True)
class Touch:
    """``os.utime(path)``: set the mtime to now, as a lease is renewed."""

    path: str


@dataclass(frozen=True, slots=True)
class Lockf:
    """``fcntl.lockf(fd, op)``: a POSIX record lock on the whole file.

    It belongs to the *process*: two agents of one process both get it, and
    closing any descriptor of the file drops it.  ``timeout`` bounds a blocking
    wait as for ``Flock``.
    """

    fd: int
    op: LockOp
    blocking: bool = True
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class MsvcrtLocking:
    """``msvcrt.locking(fd, mode, nbytes)``: a mandatory byte-range lock from the file position.

    ``LOCK`` retries once a second and fails with ``OSError(EDEADLOCK)`` after 10 tries.
    """

    fd: int
    mode: MsvcrtMode
    nbytes: int = 1


@dataclass(frozen=True, slots=True)
class LockFileEx:
    """``LockFileEx``/``UnlockFileEx`` on the file's handle: a mandatory byte-range lock
    (``timeout`` bounds a blocking wait as for ``Flock``)."""

    fd: int
    op: LockOp
    blocking: bool = True
    offset: int = 0
    length: int = 1
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Mutex:
    """An in-process mutex named ``name``: ``EXCLUSIVE`` waits for it, ``UNLOCK`` frees it.

    It serializes the agents of one process and nothing else, which is the
    whole of classes 3 and 4 of the corpus (docs/scenarios.md).
    """

    name: str
    op: LockOp


@dataclass(frozen=True, slots=True)
class GetPid:
    """``os.getpid()``; outcome ``Pid``."""


@dataclass(frozen=True, slots=True)
class ProcessAlive:
    """Is process ``pid`` alive (``kill(pid, 0)``)?  Outcome ``Alive``."""

    pid: int


@dataclass(frozen=True, slots=True)
class HttpPost:
    """POST ``body`` to ``url``; outcome ``HttpResponse``.

    Network failures are thrown in as ``ConnectionError`` or ``TimeoutError``.
    """

    url: str
    body: bytes = field(repr=False)  # holds the refresh token: never in a repr
    content_type: str = "application/x-www-form-urlencoded"


@dataclass(frozen=True, slots=True)
class Now:
    """Read the wall clock (seconds since the epoch); outcome ``Clock``."""


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds``; outcome ``Done``."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Log:
    """A diagnostic line for the history; never put a raw token in it."""

    message: str


Effect = (
    Open
    | CreateExclusive
    | Read
    | Write
    | Truncate
    | Fsync
    | Close
    | Replace
    | Unlink
    | Mkdir
    | Stat
    | ReadLink
    | Flock
    | Seek
    | Rmdir
    | Touch
    | Lockf
    | MsvcrtLocking
    | LockFileEx
    | Mutex
    | GetPid
    | ProcessAlive
    | HttpPost
    | Now
    | Sleep
    | Log
)

# -------------------------------------------------------------------- outcomes


@dataclass(frozen=True, slots=True)
class Done:
    """The call succeeded and has nothing to return."""


@dataclass(frozen=True, slots=True)
class Opened:
    fd: int


@dataclass(frozen=True, slots=True)
class ReadData:
    data: bytes = field(repr=False)  # may hold tokens: never in a repr


@dataclass(frozen=True, slots=True)
class Wrote:
    count: int


@dataclass(frozen=True, slots=True)
class StatResult:
    size: int
    mtime: float


@dataclass(frozen=True, slots=True)
class LinkTarget:
    """A symlink's target as stored: relative to the link's directory unless absolute."""

    target: str


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes = field(repr=False)  # holds tokens: never in a repr
    #: the headers an engine may act on, names in lower case (``retry-after``)
    headers: tuple[tuple[str, str], ...] = ()

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (any case), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key == wanted), None)

    @classmethod
    def keeping(cls, status: int, body: bytes, headers: Iterable[tuple[str, str]]) -> HttpResponse:
        """A response as received, keeping only the headers an engine may act on."""
        kept = tuple((key.lower(), value) for key, value in headers if key.lower() in KEPT_HEADERS)
        return cls(status, body, kept)


#: Response headers an engine may act on (``HttpResponse.keeping``); the rest are dropped.
KEPT_HEADERS = frozenset({"retry-after"})


@dataclass(frozen=True, slots=True)
class Clock:
    now: float


@dataclass(frozen=True, slots=True)
class Position:
    offset: int


@dataclass(frozen=True, slots=True)
class Pid:
    pid: int


@dataclass(frozen=True, slots=True)
class Alive:
    alive: bool


@dataclass(frozen=True, slots=True)
class Failed:
    """The call raised: ``exception_type`` names the ``OSError`` subclass thrown in.

    ``errno`` follows the host's numbering; ``winerror`` is set when a Windows
    call failed with one (5 for access denied, 32 for a sharing violation).
    """

    exception_type: str
    errno: int | None
    message: str
    winerror: int | None = None

    def to_exception(self) -> OSError:
        """The exception a real call would have raised."""
        exc_type = _EXCEPTION_TYPES.get(self.exception_type, OSError)
        exc = exc_type(self.message) if self.errno is None else exc_type(self.errno, self.message)
        if self.winerror is not None:
            exc.winerror = self.winerror  # type: ignore[attr-defined, unused-ignore]
        return exc

    @classmethod
    def from_exception(cls, exc: OSError) -> Failed:
        return cls(
            exception_type=type(exc).__name__,
            errno=exc.errno,
            message=exc.strerror or str(exc),
            winerror=getattr(exc, "winerror", None),
        )


Outcome = (
    Done
    | Opened
    | ReadData
    | Wrote
    | StatResult
    | LinkTarget
    | HttpResponse
    | Clock
    | Position
    | Pid
    | Alive
    | Failed
)

_EXCEPTION_TYPES: dict[str, type[OSError]] = {
    cls.__name__: cls
    for cls in (
        OSError,
        BlockingIOError,
        ChildProcessError,
        ConnectionError,
        BrokenPipeError,
        ConnectionAbortedError,
        ConnectionRefusedError,
        ConnectionResetError,
        FileExistsError,
        FileNotFoundError,
        InterruptedError,
        IsADirectoryError,
        NotADirectoryError,
        PermissionError,
        ProcessLookupError,
        TimeoutError,
    )
}
