"""An agent's state in the kernel: its status, its flow and what it waits for."""

from __future__ import annotations

import enum
import errno
import math
from collections.abc import Callable, Iterable, Sequence

from refresh_engine import (
    AgentContext,
    Done,
    Effect,
    Failed,
    Flock,
    FlowRunner,
    HttpPost,
    HttpResponse,
    Lockf,
    LockFileEx,
    LockOp,
    Mutex,
    Outcome,
)

from ._faults import REQUEST_FAULTS, FaultKind
from ._semantics import io_failure
from ._world import AgentSpec


class AgentStatus(enum.Enum):
    IDLE = "idle"  # between turns, waiting for the workload's next one
    READY = "ready"  # has a pending effect
    SLEEPING = "sleeping"  # the engine asked to sleep
    STALLED = "stalled"  # a stall fault stopped it; its pending effect waits
    AWAITING = "awaiting"  # its request reached the server; the response is in flight
    DELAYED = "delayed"  # a slow answer: the response arrives when it wakes
    USING = "using"  # the engine returned a token; the agent will use it next step
    DONE = "done"  # no turns left, or stranded


_WAITING = (AgentStatus.IDLE, AgentStatus.SLEEPING, AgentStatus.STALLED, AgentStatus.DELAYED)
#: Held up by a fault: a stall, or a slow answer
_HELD_UP = (AgentStatus.STALLED, AgentStatus.DELAYED)

_REQUEST_FAULT_OUTCOMES: dict[FaultKind, Outcome] = {
    FaultKind.SERVER_ERROR: HttpResponse(503, b'{"error": "temporarily_unavailable"}'),
    FaultKind.RATE_LIMIT: HttpResponse(429, b'{"error": "rate_limited"}', (("retry-after", "30"),)),
    FaultKind.RESET: Failed("ConnectionResetError", errno.ECONNRESET, "connection reset by peer"),
}


class _Agent:
    __slots__ = (
        "name",
        "pid",
        "ctx",
        "turns",
        "next_turn",
        "status",
        "wake_at",
        "runner",
        "response",
        "request_id",
        "token",
        "skew",
        "host",
        "logs_in",
        "tries",
        "torn",
        "gives_up",
    )

    def __init__(
        self,
        name: str,
        pid: int,
        ctx: AgentContext,
        turns: tuple[float, ...],
        skew: float,
        spec: AgentSpec | None = None,
    ) -> None:
        self.name = name
        self.pid = pid
        self.ctx = ctx
        self.turns = turns
        self.next_turn = 0
        self.status = AgentStatus.IDLE
        self.wake_at = 0.0
        self.runner: FlowRunner[str] | None = None
        self.response: Outcome | None = None
        self.request_id = ""
        self.token = ""
        self.skew = skew
        self.host = spec.host if spec else ""  # its machine or pid namespace ("": the first)
        self.logs_in = spec.logs_in if spec else False  # an outside login, not a refresher
        self.tries = 0  # msvcrt.locking LK_LOCK attempts so far
        self.torn = False  # the first part of a torn write is written
        self.gives_up = math.inf  # when a blocked lock call with a timeout gives up

    @property
    def waits_until(self) -> float:
        """When the clock wakes this agent: its wake-up, or when its blocked lock call gives
        up (``inf``: only another agent can wake it)."""
        if self.status in _WAITING:
            return self.wake_at
        return self.gives_up if self.status is AgentStatus.READY else math.inf

    def issue(self, effect: Effect | None, now: float) -> None:
        """The agent's flow asks for ``effect`` at ``now``: ready to do it, and, for a lock
        call with a timeout, the time it gives up if the lock is never granted."""
        self.status = AgentStatus.READY
        self.gives_up = now + lock_timeout(effect)


def lock_timeout(effect: Effect | None) -> float:
    """How long a blocking lock call waits before it gives up (``inf``: for ever)."""
    if not isinstance(effect, Flock | Lockf | LockFileEx) or not effect.blocking:
        return math.inf
    return math.inf if effect.timeout is None else max(0.0, effect.timeout)


def gave_up(agent: _Agent, agents: Iterable[_Agent]) -> tuple[Effect, Failed, dict[str, str]]:
    """``agent``'s blocked lock call whose timeout ran out, what it fails with (as the real
    call does), and its history fields.  The clock got there only because no agent could
    run: the agents a stall or a slow answer held up are named (``struck``), which is
    what the checker excuses the give-up by."""
    effect = agent.runner.pending if agent.runner is not None else None
    assert effect is not None
    failed = Failed(
        "TimeoutError", errno.ETIMEDOUT, f"lock not taken within {lock_timeout(effect):g} s"
    )
    stuck = [other.name for other in agents if other.status in _HELD_UP]
    note = f"gave up; held up: {', '.join(stuck)}" if stuck else "gave up; nobody held up"
    return effect, failed, {"note": note, "struck": ",".join(stuck)}


def alive_from(agents: Sequence[_Agent], caller: int) -> Callable[[int], bool]:
    """Is a pid a live process, asked on ``caller``'s host?  Pids of other hosts (or pid
    namespaces) are not visible there: they name no process.  (Looked up only when a
    ``ProcessAlive`` asks, not at every step.)"""

    def alive(pid: int) -> bool:
        host = next((agent.host for agent in agents if agent.pid == caller), "")
        return any(a.pid == pid and a.host == host for a in agents)

    return alive


def fault_options(agent: _Agent, allowed: frozenset[FaultKind]) -> tuple[FaultKind, ...]:
    """The faults of ``allowed`` that mean something for ``agent`` now.

    A lost or slow response needs a response in flight; a server fault, a request
    about to be sent; a stall or a denied directory, an effect to do; an I/O error,
    a file call its row says can fail.  A kill or a crash can strike any time.
    """
    if not allowed:
        return ()
    options: list[FaultKind] = []
    pending = agent.runner.pending if agent.runner is not None else None
    if agent.status is AgentStatus.AWAITING:
        options.extend((FaultKind.DROP, FaultKind.SLOW))
    elif isinstance(pending, HttpPost):
        options.extend(REQUEST_FAULTS)
    if agent.status is AgentStatus.READY:
        options.extend((FaultKind.STALL, FaultKind.DENIED))
        if io_failure(pending) is not None:
            options.append(FaultKind.IO_ERROR)
    options.extend((FaultKind.KILL, FaultKind.CRASH))
    return tuple(kind for kind in options if kind in allowed)


def mutex_call(mutexes: dict[tuple[int, str], str], agent: _Agent, effect: Mutex) -> Outcome:
    """An in-process mutex: per process, so agents of other processes never wait."""
    key = (agent.pid, effect.name)
    if effect.op is LockOp.UNLOCK:
        if mutexes.get(key) != agent.name:
            return Failed("PermissionError", errno.EPERM, "release of an unheld mutex")
        del mutexes[key]
    else:
        mutexes[key] = agent.name
    return Done()
