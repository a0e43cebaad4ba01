"""Flows, the driver both interpreters share, and typed wrappers over effects.

A flow is a generator that yields effects and receives outcomes, in the
style of httpx's ``Auth.auth_flow``.  ``FlowRunner`` is the one place that
knows how to feed it: an outcome is sent, a ``Failed`` outcome is thrown in
as the ``OSError`` the real call would raise.  The simulator steps a runner
one effect at a time; the real interpreter loops it to the end.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

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
    MsvcrtMode,
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
from ._errors import InterpreterMismatch

T = TypeVar("T")
OutcomeT = TypeVar("OutcomeT")

#: A generator flow: yields effects, is sent outcomes, returns ``T``.
Flow = Generator[Effect, Outcome, T]


class RunnerState(enum.Enum):
    NEW = "new"
    WAITING = "waiting"  # an effect is pending; resume with its outcome
    FINISHED = "finished"


def _innermost(flow: Generator[Any, Any, Any]) -> Generator[Any, Any, Any] | None:
    """The deepest unfinished generator ``flow`` delegates to; None once ``flow`` is done."""
    if inspect.getgeneratorstate(flow) == inspect.GEN_CLOSED:
        return None
    current = flow
    while True:
        inner = getattr(current, "gi_yieldfrom", None)  # only a native generator has one
        if not isinstance(inner, Generator):
            return current
        if inspect.getgeneratorstate(inner) == inspect.GEN_CLOSED:
            return current
        current = inner


@dataclass(frozen=True, slots=True)
class Returned(Generic[T]):
    """The flow returned ``value``."""

    value: T


@dataclass(frozen=True, slots=True)
class Raised:
    """The flow raised ``error``."""

    error: BaseException


class FlowRunner(Generic[T]):
    """Step a flow one effect at a time.

    ``start()`` gives the first effect; ``resume(outcome)`` gives the next one,
    or a ``Returned``/``Raised`` when the flow is over.
    """

    __slots__ = ("_flow", "state", "pending")

    def __init__(self, flow: Flow[T]) -> None:
        self._flow = flow
        self.state = RunnerState.NEW
        self.pending: Effect | None = None

    def start(self) -> Effect | Returned[T] | Raised:
        if self.state is not RunnerState.NEW:
            raise RuntimeError("flow already started")
        return self._advance(None)

    def resume(self, outcome: Outcome) -> Effect | Returned[T] | Raised:
        if self.state is not RunnerState.WAITING:
            raise RuntimeError(f"cannot resume a flow in state {self.state.value}")
        return self._advance(outcome)

    def close(self) -> None:
        """Abandon the flow (its process was killed): no ``finally`` runs effects.

        A flow whose ``finally`` tries to yield an effect while closing makes
        Python raise ``RuntimeError`` and leaves it suspended there; a killed
        process runs no cleanup, so close again until it is really gone.  A
        flow that delegates (``yield from``) to another with such a
        ``finally`` (an engine wrapping the reference's ``access_token``, say)
        would leave the inner one suspended, to complain when it is collected:
        so the innermost unfinished generator of the chain is closed each time,
        until the outermost is done.
        """
        for _ in range(10_000):
            innermost = _innermost(self._flow)
            if innermost is None:
                break
            try:
                innermost.close()
            except RuntimeError:
                continue
        self.state = RunnerState.FINISHED
        self.pending = None

    def _advance(self, outcome: Outcome | None) -> Effect | Returned[T] | Raised:
        try:
            if isinstance(outcome, Failed):
                effect = self._flow.throw(outcome.to_exception())
            else:
                effect = self._flow.send(outcome)  # type: ignore[arg-type]
        except StopIteration as stop:
            self.state = RunnerState.FINISHED
            self.pending = None
            return Returned(stop.value)
        except Exception as exc:  # the flow's own failure, reported not raised
            self.state = RunnerState.FINISHED
            self.pending = None
            return Raised(exc)
        self.state = RunnerState.WAITING
        self.pending = effect
        return effect


# ----------------------------------------------------------- typed operations
#
# Each wrapper yields one effect and narrows its outcome, so engines stay
# typed under mypy strict: ``fd = yield from open_file(path, OpenFlags.READ)``.


def _expect(outcome: Any, kind: type[OutcomeT], effect: Effect) -> OutcomeT:
    if not isinstance(outcome, kind):
        raise InterpreterMismatch(
            f"{type(effect).__name__} expects {kind.__name__}, got {type(outcome).__name__}"
        )
    return outcome


def open_file(path: str, flags: OpenFlags) -> Flow[int]:
    effect = Open(path, flags)
    return _expect((yield effect), Opened, effect).fd


def create_exclusive(path: str) -> Flow[int]:
    effect = CreateExclusive(path)
    return _expect((yield effect), Opened, effect).fd


def read(fd: int, size: int | None = None) -> Flow[bytes]:
    effect = Read(fd, size)
    return _expect((yield effect), ReadData, effect).data


def write(fd: int, data: bytes) -> Flow[int]:
    effect = Write(fd, data)
    return _expect((yield effect), Wrote, effect).count


def _done(effect: Effect) -> Flow[None]:
    _expect((yield effect), Done, effect)


def truncate(fd: int, size: int = 0) -> Flow[None]:
    return _done(Truncate(fd, size))


def fsync(fd: int) -> Flow[None]:
    return _done(Fsync(fd))


def close(fd: int) -> Flow[None]:
    return _done(Close(fd))


def replace(src: str, dst: str) -> Flow[None]:
    return _done(Replace(src, dst))


def unlink(path: str) -> Flow[None]:
    return _done(Unlink(path))


def mkdir(path: str) -> Flow[None]:
    return _done(Mkdir(path))


def flock(
    fd: int, op: LockOp, blocking: bool = True, *, timeout: float | None = None
) -> Flow[None]:
    return _done(Flock(fd, op, blocking, timeout))


def sleep(seconds: float) -> Flow[None]:
    return _done(Sleep(seconds))


def log(message: str) -> Flow[None]:
    return _done(Log(message))


def stat(path: str) -> Flow[StatResult]:
    effect = Stat(path)
    return _expect((yield effect), StatResult, effect)


def readlink(path: str) -> Flow[str]:
    effect = ReadLink(path)
    return _expect((yield effect), LinkTarget, effect).target


def now() -> Flow[float]:
    effect = Now()
    return _expect((yield effect), Clock, effect).now


def http_post(url: str, body: bytes, content_type: str) -> Flow[HttpResponse]:
    effect = HttpPost(url, body, content_type)
    return _expect((yield effect), HttpResponse, effect)


def seek(fd: int, offset: int = 0) -> Flow[int]:
    effect = Seek(fd, offset)
    return _expect((yield effect), Position, effect).offset


def rmdir(path: str) -> Flow[None]:
    return _done(Rmdir(path))


def touch(path: str) -> Flow[None]:
    return _done(Touch(path))


def lockf(
    fd: int, op: LockOp, blocking: bool = True, *, timeout: float | None = None
) -> Flow[None]:
    return _done(Lockf(fd, op, blocking, timeout))


def msvcrt_locking(fd: int, mode: MsvcrtMode, nbytes: int = 1) -> Flow[None]:
    return _done(MsvcrtLocking(fd, mode, nbytes))


def lock_file_ex(
    fd: int,
    op: LockOp,
    blocking: bool = True,
    offset: int = 0,
    length: int = 1,
    *,
    timeout: float | None = None,
) -> Flow[None]:
    return _done(LockFileEx(fd, op, blocking, offset, length, timeout))


def getpid() -> Flow[int]:
    effect = GetPid()
    return _expect((yield effect), Pid, effect).pid


def process_alive(pid: int) -> Flow[bool]:
    effect = ProcessAlive(pid)
    return _expect((yield effect), Alive, effect).alive


def mutex(name: str, op: LockOp) -> Flow[None]:
    return _done(Mutex(name, op))
