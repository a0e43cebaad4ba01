"""The effect-stream rewriter that mutation operators are built on.

A ``StreamMutant`` is the reference engine whose every ``access_token`` flow
runs through ``rewrite``: a generator that sits between the engine and the
world, sees each effect the engine yields and each outcome (or error) the
world sends back, and may change the effect, answer it without the world
(``Fake``), put other effects before or after it, or turn an error into a
success.  Each ``StreamRule`` subclass is one operator; its fields are the
site or variant.  Rules see the engine's own view of the stream: which
descriptor is the lock file, which the store, which the temp file, and
whether the lock is held.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from refresh_engine import (
    AgentContext,
    Done,
    Effect,
    Flock,
    Flow,
    Lockf,
    LockFileEx,
    LockOp,
    MsvcrtLocking,
    MsvcrtMode,
    Open,
    Opened,
    OpenFlags,
    Outcome,
    ReferenceEngine,
)

T = TypeVar("T")
LockEffect = Flock | Lockf | LockFileEx | MsvcrtLocking
#: a descriptor no world hands out: what a faked ``Open`` answers
FAKE_FD = -7


@dataclass(frozen=True, slots=True)
class Emit:
    """Perform ``effect`` (the engine's own, or a rewritten one)."""

    effect: Effect


@dataclass(frozen=True, slots=True)
class Fake:
    """Do not perform the effect: answer the engine with ``outcome``."""

    outcome: Outcome


Action = Emit | Fake


class StreamRule:
    """One flow's rewriting: a fresh rule per ``access_token`` call.

    ``before`` decides what to do with an effect the engine yields; ``after``
    sees what the world answered (``error`` set when the call raised) and
    may change it.  Both are flows, so a rule can perform effects of its own.
    """

    def __init__(self, engine: StreamMutant, ctx: AgentContext) -> None:
        self.engine = engine
        self.ctx = ctx
        self.lock = engine.lock_path(ctx)
        self.store = engine.store_path(ctx)
        self.paths: dict[int, str] = {}  # descriptor -> path, as the engine opened it
        self.held = False  # the engine believes it holds the refresh lock
        self.acquired: LockEffect | None = None  # the lock effect that took it

    # -------------------------------------------------------------- the stream's facts

    def on_lock_file(self, effect: Effect) -> bool:
        fd = getattr(effect, "fd", None)
        return fd is not None and self.paths.get(fd) == self.lock

    def is_acquire(self, effect: Effect) -> bool:
        if not (isinstance(effect, LockEffect) and self.on_lock_file(effect)):
            return False
        if isinstance(effect, MsvcrtLocking):
            return effect.mode is not MsvcrtMode.UNLOCK
        return effect.op is not LockOp.UNLOCK

    def is_release(self, effect: Effect) -> bool:
        return (
            isinstance(effect, LockEffect)
            and self.on_lock_file(effect)
            and not self.is_acquire(effect)
        )

    def is_store_read(self, effect: Effect) -> bool:
        return (
            isinstance(effect, Open)
            and effect.path == self.store
            and effect.flags == OpenFlags.READ
        )

    def on_store(self, effect: Effect) -> bool:
        fd = getattr(effect, "fd", None)
        return fd is not None and self.paths.get(fd) == self.store

    def is_temp(self, path: str) -> bool:
        return path != self.store and path.endswith(".tmp")

    def on_temp(self, effect: Effect) -> bool:
        fd = getattr(effect, "fd", None)
        return fd is not None and self.is_temp(self.paths.get(fd, ""))

    def track(self, effect: Effect, outcome: Outcome | None) -> None:
        """Keep the facts above up to date with what the engine asked and was answered."""
        if isinstance(effect, Open) and isinstance(outcome, Opened):
            self.paths[outcome.fd] = effect.path
        if outcome is not None and isinstance(effect, LockEffect) and self.on_lock_file(effect):
            if self.is_acquire(effect):
                self.held, self.acquired = True, effect
            else:
                self.held = False

    def release_effect(self) -> Effect | None:
        """The effect that undoes the acquire: unlock of the same kind on the same descriptor."""
        match self.acquired:
            case Flock(fd=fd):
                return Flock(fd, LockOp.UNLOCK)
            case Lockf(fd=fd):
                return Lockf(fd, LockOp.UNLOCK)
            case LockFileEx(fd=fd, offset=offset, length=length):
                return LockFileEx(fd, LockOp.UNLOCK, True, offset, length)
            case MsvcrtLocking(fd=fd, nbytes=nbytes):
                return MsvcrtLocking(fd, MsvcrtMode.UNLOCK, nbytes)
        return None

    # ---------------------------------------------------------------- the rule itself

    def before(self, effect: Effect) -> Flow[Action]:
        return Emit(effect)
        yield

    def after(
        self, effect: Effect, outcome: Outcome, error: Exception | None
    ) -> Flow[tuple[Outcome, Exception | None]]:
        return outcome, error
        yield


def rewrite(flow: Flow[T], rule: StreamRule) -> Flow[T]:
    """Run ``flow`` with ``rule`` between it and the world; closing this closes ``flow``."""
    try:
        effect = next(flow)
        while True:
            action = yield from rule.before(effect)
            error: Exception | None = None
            outcome: Outcome = Done()
            if isinstance(action, Fake):
                outcome = action.outcome
            else:
                try:
                    outcome = yield action.effect
                except Exception as exc:  # an OSError thrown in by the world
                    error = exc
            rule.track(effect, None if error is not None else outcome)
            outcome, error = yield from rule.after(effect, outcome, error)
            effect = flow.throw(error) if error is not None else flow.send(outcome)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    finally:
        _close(flow)


def _close(flow: Flow[T]) -> None:
    """Close the engine's flow for good, as ``FlowRunner.close`` does: a ``finally`` in it
    that yields an effect (a release) makes ``close`` raise, and leaves it suspended."""
    for _ in range(10_000):
        try:
            flow.close()
        except RuntimeError:
            continue
        break


class StreamMutant(ReferenceEngine):
    """The reference engine, every flow rewritten by a fresh ``make_rule(engine, ctx)``."""

    name = "mutant"

    def __init__(
        self, make_rule: Callable[[StreamMutant, AgentContext], StreamRule], **options: Any
    ) -> None:
        super().__init__(**options)
        self.make_rule = make_rule
        #: state shared by every flow of this engine object (the simulator runs one engine
        #: for all processes, so per-process state is keyed by pid)
        self.shared: dict[Any, int] = {}

    def access_token(self, ctx: AgentContext) -> Flow[str]:
        return (
            yield from rewrite(ReferenceEngine.access_token(self, ctx), self.make_rule(self, ctx))
        )


def quietly(effect: Effect) -> Flow[None]:
    """Perform an effect of the rule's own, best effort (``except OSError: pass``)."""
    with contextlib.suppress(OSError):
        yield effect


def rule(base: type[StreamRule], **fields: Any) -> type[StreamRule]:
    """``base`` with its site fields set: the rule class of one mutant."""
    return type(base.__name__, (base,), dict(fields))
