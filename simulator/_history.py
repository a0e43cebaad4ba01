"""The history of a run: every step, outcome and harness event, in order.

Events keep the effect and outcome objects for the checker; ``render`` turns
them into text with every token replaced by its fingerprint, so a history
can be printed, diffed and shipped in a report.  Rendering is deterministic:
the same run gives byte-identical text.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import get_args

from fake_oauth_server import AccessCheck, AuditEvent, redact
from refresh_engine import (
    Alive,
    Clock,
    Done,
    Effect,
    Failed,
    HttpResponse,
    LinkTarget,
    Opened,
    Outcome,
    Pid,
    Position,
    ReadData,
    StatResult,
    Wrote,
)

from ._faults import FaultKind
from ._semantics import rule_for


class EventKind(enum.Enum):
    EFFECT = "effect"  # an effect was carried out; its outcome was sent back
    REQUEST = "request"  # an HTTP request reached the server (which committed it)
    RESPONSE = "response"  # the response reached the agent
    BLOCKED = "blocked"  # the agent waits for a lock
    TURN_BEGIN = "turn-begin"  # the workload asked the agent for a token
    TURN_END = "turn-end"  # the engine returned a token or raised
    TOKEN_USE = "token-use"  # the agent used its token on the resource endpoint
    CLOCK = "clock"  # every agent waited; virtual time moved on
    FAULT = "fault"  # the schedule injected a fault here
    STORE = "store"  # a credential store changed; ``generation`` is what it holds now
    DEADLOCK = "deadlock"  # agents wait and nothing can wake them
    STEP_BOUND = "step-bound"  # the run hit its step bound (possible livelock)


class StoreState(enum.Enum):
    """What a credential store holds after a change (a STORE event)."""

    CREDENTIAL = "credential"  # a token the server minted: ``family`` and ``generation`` say which
    MISSING = "missing"  # no file at the path
    UNPARSEABLE = "unparseable"  # a file that is no store document (empty, a prefix...)
    UNKNOWN_TOKEN = "unknown-token"  # a document whose refresh token the server never minted


class Refusal(enum.Enum):
    """Why the resource endpoint refused an access token (a TOKEN_USE event)."""

    EXPIRED = "expired"
    REVOKED = "revoked"
    UNKNOWN = "unknown"

    @classmethod
    def of(cls, check: AccessCheck) -> Refusal | None:
        """The refusal in the server's answer, None when it accepted the token."""
        if check.ok:
            return None
        return next((kind for kind in cls if kind.value == check.reason), cls.UNKNOWN)


@dataclass(frozen=True, slots=True)
class KeptCredential:
    """A complete credential a file other than a store held when a process died: a temp
    file staged but never renamed, a recovery file.  An engine that rolls forward finds
    it; one that does not loses the token avoidably (see ``conformance``'s losses)."""

    path: str
    family: str
    generation: int


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One line of the history.  ``step`` is the schedule step it belongs to.

    Everything a checker decides on is a typed field; ``note`` is prose for
    people (already free of raw tokens) and no code should parse it.
    """

    step: int
    time: float
    agent: str
    kind: EventKind
    effect: Effect | None = None
    outcome: Outcome | None = None
    request_id: str = ""
    error_type: str = ""  # TURN_END: the exception class, "" on success
    stranded: bool = False  # TURN_END: the engine raised ReloginRequired
    ok: bool = True  # TOKEN_USE: the resource endpoint accepted the token
    note: str = ""  # prose for people, already free of raw tokens; never parsed
    path: str = ""  # EFFECT on a descriptor: the file it names; STORE: the store
    #: STORE: the generation the store now holds (None: no credential the server minted)
    generation: int | None = None
    family: str = ""  # STORE: the grant the stored credential belongs to; TOKEN_USE: the token's
    store: StoreState | None = None  # STORE: what the store holds now
    #: STORE: the profile read, in a store of several ("": the store's only profile)
    profile: str = ""
    refusal: Refusal | None = None  # TOKEN_USE: why the token was refused (None: accepted)
    fault: FaultKind | None = None  # FAULT: the fault that struck this agent
    #: FAULT: the agent the fault was aimed at; another agent's name when this one
    #: died with it (its process was killed, or the machine crashed).  EFFECT of a lock
    #: call that gave up at its timeout: the agents a stall or slow answer held up then
    #: (comma-separated; "" when none was: the lock was simply never released)
    struck: str = ""
    #: FAULT that killed: credentials files beside the stores held (after a crash: what
    #: survived it)
    kept: tuple[KeptCredential, ...] = ()

    @property
    def killed(self) -> bool:
        """A FAULT that ended this agent's process."""
        return self.fault is not None and self.fault.kills


def describe_effect(effect: Effect) -> str:
    """An effect as a short line, tokens fingerprinted (its row of ``_semantics`` says how)."""
    if not isinstance(effect, get_args(Effect)):
        raise TypeError(f"not an effect: {effect!r}")
    return rule_for(effect).describe(effect)


def describe_outcome(outcome: Outcome) -> str:
    match outcome:
        case Done():
            return "ok"
        case Opened(fd):
            return f"fd={fd}"
        case ReadData(data):
            return f"{len(data)} bytes"
        case Wrote(count):
            return f"wrote {count}"
        case StatResult(size, mtime):
            return f"size={size} mtime={mtime:.3f}"
        case LinkTarget(target):
            return f"-> {target}"
        case HttpResponse(status, body):
            return f"{status} {describe_token_response(body)}"
        case Clock(now):
            return f"{now:.3f}"
        case Position(offset):
            return f"offset={offset}"
        case Pid(pid):
            return f"pid={pid}"
        case Alive(alive):
            return "alive" if alive else "gone"
        case Failed(exception_type, errno, message, winerror):
            extra = f" winerror={winerror}" if winerror is not None else ""
            return f"{exception_type}(errno={errno}{extra}) {message}"
    raise TypeError(f"not an outcome: {outcome!r}")


def describe_token_response(body: bytes) -> str:
    """The gist of a token response: new tokens' fingerprints, or the error code."""
    try:
        payload = json.loads(body)
    except ValueError:
        return redact(body[:80].decode("utf-8", "replace"))
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            return str(error.get("code"))
        if isinstance(error, str):
            return error
        tokens = [payload.get("access_token"), payload.get("refresh_token")]
        return redact(" ".join(str(token) for token in tokens if token))
    return redact(str(payload)[:80])


def describe(event: HistoryEvent) -> str:
    """One event as text; no raw token survives."""
    match event.kind:
        case EventKind.EFFECT | EventKind.BLOCKED:
            assert event.effect is not None
            line = describe_effect(event.effect)
            if event.kind is EventKind.BLOCKED:
                return f"{line} -> busy, {event.note}" if event.note else f"{line} -> waits"
            if event.outcome is not None:
                line += f" -> {describe_outcome(event.outcome)}"
            return line
        case EventKind.REQUEST:
            assert event.effect is not None
            return f"{describe_effect(event.effect)} [{event.request_id}]"
        case EventKind.RESPONSE:
            assert event.outcome is not None
            return f"response [{event.request_id}] -> {describe_outcome(event.outcome)}"
        case EventKind.TURN_END:
            if event.error_type:
                tag = "STRANDED " if event.stranded else ""
                return f"turn ends: {tag}{event.error_type}: {redact(event.note)}"
            return f"turn ends with {redact(event.note)}"
        case EventKind.STORE:
            return f"{event.path} now holds {event.note}"
        case EventKind.TOKEN_USE:
            verdict = "accepted" if event.ok else "REJECTED"
            return f"uses {redact(event.note)} -> {verdict}"
    return redact(event.note) or event.kind.value


def render(
    events: Iterable[HistoryEvent],
    audit: Iterable[AuditEvent] = (),
    t0: float = 0.0,
    home: str = "",
) -> str:
    """The history as text, server audit events under the request that caused them.

    Times are offsets from ``t0``; paths under ``home`` are shown as ``~/...``.
    """
    by_request: dict[str, list[AuditEvent]] = {}
    for record in audit:
        by_request.setdefault(record.request_id, []).append(record)
    lines = []
    for event in events:
        lines.append(
            f"{event.step:>5} t+{event.time - t0:>9.3f} {event.agent or '-':<8} "
            f"{event.kind.value:<10} {describe(event)}"
        )
        if event.kind is EventKind.REQUEST:
            for record in by_request.get(event.request_id, ()):
                reason = f" ({record.reason})" if record.reason else ""
                lines.append(
                    f"{'':>5} {'':>11} {'server':<8} {'audit':<10} {record.kind.value} "
                    f"{record.token_kind.value} {record.token_fp} "
                    f"{record.family}/g{record.generation}{reason}"
                )
    text = "\n".join(lines) + "\n"
    return text.replace(home + "/", "~/") if home else text
