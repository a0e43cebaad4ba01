"""The checker: read a run's history and the server's audit log, name what went wrong.

Every anomaly names the steps that show it, so a user can find them in the
replayed history.  Severity says whether the run fails: a fatal anomaly is a
bug the engine must not have; a warning is worth knowing.  Where a loss was
unavoidable (the server rotated, a fault lost the new token, and the policy
has no reuse window), the anomalies that follow are warnings that say so,
rather than blame the engine.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from fake_oauth_server import AuditEvent, AuditKind, TokenKind, redact
from refresh_engine import HttpResponse, ReadData
from simulator import EventKind, HistoryEvent, RunResult


class AnomalyKind(enum.Enum):
    REFRESH_TOKEN_REUSE = "refresh-token-reuse"  # a spent refresh token was presented again
    FAMILY_REVOKED = "family-revoked"  # the server revoked the whole grant over a reuse
    AGENT_STRANDED = "agent-stranded"  # an agent ended needing a new login
    ENGINE_ERROR = "engine-error"  # the engine raised something other than ReloginRequired
    LOST_UPDATE = "lost-update"  # a store went back to an older generation (or was wiped)
    TORN_READ = "torn-read"  # a reader saw a store that does not parse (a prefix, or empty)
    TOKEN_LOST = "token-lost"  # the server issued a refresh token no store ever held
    EXPIRED_TOKEN_USED = "expired-token-used"  # the engine handed out an expired access token
    TOKEN_REJECTED = "token-rejected"  # the resource endpoint refused a token (revoked...)
    REDUNDANT_REFRESH = "redundant-refresh"  # more than one refresh for one expiry
    MUTUAL_EXCLUSION = "mutual-exclusion"  # two refreshes of one grant in flight at once
    DEADLOCK = "deadlock"  # agents wait and nothing can wake them
    LIVELOCK = "livelock"  # the run hit its step bound without finishing


class Severity(enum.Enum):
    FATAL = "fatal"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Anomaly:
    kind: AnomalyKind
    severity: Severity
    agent: str
    steps: tuple[int, ...]
    message: str  # tokens appear as fingerprints only

    def __str__(self) -> str:
        steps = ", ".join(str(step) for step in self.steps)
        where = f" at step {steps}" if steps else ""
        return f"{self.kind.value} ({self.severity.value}){where}: {self.message}"


#: Anomalies that follow from a lost token; unavoidable when the policy has no reuse window.
_CONSEQUENCES = {
    AnomalyKind.REFRESH_TOKEN_REUSE,
    AnomalyKind.FAMILY_REVOKED,
    AnomalyKind.AGENT_STRANDED,
    AnomalyKind.TOKEN_LOST,
    AnomalyKind.TOKEN_REJECTED,
}


def check(result: RunResult) -> tuple[Anomaly, ...]:
    """Every anomaly of a finished run, in step order."""
    events, audit = result.events, result.audit
    anomalies = [
        *reuse_anomalies(events, audit),
        *_history_anomalies(events),
        *_store_anomalies(events),
        *_torn_reads(events, result.stores),
        *_redundant_refreshes(events, audit, result.policy.access_token_lifetime),
        *_overlapping_refreshes(events),
    ]
    losses = _fault_losses(events, audit)
    anomalies += _lost_tokens(events, audit, losses)
    if losses and not result.policy.grace:
        anomalies = [_unavoidable(anomaly, losses) for anomaly in anomalies]
    anomalies.sort(key=lambda anomaly: (anomaly.steps, anomaly.kind.value, anomaly.agent))
    return tuple(anomalies)


def fatal(anomalies: Iterable[Anomaly]) -> list[Anomaly]:
    return [anomaly for anomaly in anomalies if anomaly.severity is Severity.FATAL]


def _unavoidable(anomaly: Anomaly, losses: list[int]) -> Anomaly:
    """Demote what follows a fault that lost a rotated token (or is that token's loss)."""
    if anomaly.kind not in _CONSEQUENCES:
        return anomaly
    last = max(anomaly.steps, default=0)
    if anomaly.kind is AnomalyKind.TOKEN_LOST:  # steps: the request that minted it
        caused = [loss for loss in losses if loss >= last]
    else:
        caused = [loss for loss in losses if loss <= last]
    if not caused:
        return anomaly
    loss = caused[0]
    return replace(
        anomaly,
        severity=Severity.WARNING,
        message=anomaly.message + f" (unavoidable: a fault lost a rotated token at step {loss}"
        " and the policy has no reuse window)",
    )


def _requests(events: Iterable[HistoryEvent]) -> dict[str, HistoryEvent]:
    return {event.request_id: event for event in events if event.kind is EventKind.REQUEST}


def reuse_anomalies(events: Sequence[HistoryEvent], audit: Iterable[AuditEvent]) -> list[Anomaly]:
    """A refresh token the server had already rotated, presented again; families revoked."""
    requests = _requests(events)
    spent_by: dict[str, str] = {}  # refresh-token fingerprint -> request that spent it
    found = []
    revoked: set[str] = set()
    for record in audit:
        replay = requests.get(record.request_id)
        agent = replay.agent if replay is not None else "?"
        step = (replay.step,) if replay is not None else ()
        if record.kind is AuditKind.REVOKED and record.reason == "reused":
            if record.family not in revoked:
                revoked.add(record.family)
                found.append(
                    Anomaly(
                        AnomalyKind.FAMILY_REVOKED,
                        Severity.FATAL,
                        agent,
                        step,
                        f"the server revoked grant {record.family} (every token of it) "
                        f"after {agent}'s reuse",
                    )
                )
            continue
        if record.token_kind is not TokenKind.REFRESH:
            continue
        if record.kind is AuditKind.ACCEPTED:
            spent_by.setdefault(record.token_fp, record.request_id)
        elif record.kind is AuditKind.REJECTED and record.reason == "reused":
            first = requests.get(spent_by.get(record.token_fp, ""))
            steps = tuple(event.step for event in (first, replay) if event is not None)
            by = f", spent by {first.agent} at step {first.step}" if first is not None else ""
            found.append(
                Anomaly(
                    AnomalyKind.REFRESH_TOKEN_REUSE,
                    Severity.FATAL,
                    agent,
                    steps,
                    f"{agent} presented {record.token_fp} ({record.family}/g{record.generation}) "
                    f"already rotated{by}",
                )
            )
    return found


def _history_anomalies(events: Iterable[HistoryEvent]) -> list[Anomaly]:
    found = []
    for event in events:
        step = (event.step,)
        if event.kind is EventKind.TURN_END and event.error_type:
            kind = AnomalyKind.AGENT_STRANDED if event.stranded else AnomalyKind.ENGINE_ERROR
            message = f"{event.agent} ended its turn with {event.error_type}: {redact(event.note)}"
            found.append(Anomaly(kind, Severity.FATAL, event.agent, step, message))
        elif event.kind is EventKind.TOKEN_USE and not event.ok:
            expired = "(expired)" in event.note
            kind = AnomalyKind.EXPIRED_TOKEN_USED if expired else AnomalyKind.TOKEN_REJECTED
            message = f"the resource endpoint refused {event.agent}'s token {event.note}"
            found.append(Anomaly(kind, Severity.FATAL, event.agent, step, message))
        elif event.kind is EventKind.DEADLOCK:
            found.append(Anomaly(AnomalyKind.DEADLOCK, Severity.FATAL, "", step, event.note))
        elif event.kind is EventKind.STEP_BOUND:
            message = f"{event.note}: a livelock, or a step bound too small for this world"
            found.append(Anomaly(AnomalyKind.LIVELOCK, Severity.FATAL, "", step, message))
    return found


def _store_anomalies(events: Iterable[HistoryEvent]) -> list[Anomaly]:
    """A store that goes back to an older generation, or ends wiped after holding one."""
    best: dict[str, tuple[int, int]] = {}  # path -> (highest generation, step it was written)
    last: dict[str, HistoryEvent] = {}
    found = []
    for event in events:
        if event.kind is not EventKind.STORE:
            continue
        last[event.path] = event
        generation = event.generation
        if generation is None:
            continue
        top = best.get(event.path)
        if top is not None and generation < top[0]:
            found.append(
                Anomaly(
                    AnomalyKind.LOST_UPDATE,
                    Severity.FATAL,
                    event.agent,
                    (top[1], event.step),
                    f"{event.agent} wrote generation {generation} over generation {top[0]} "
                    f"in {event.path}",
                )
            )
        if top is None or generation > top[0]:
            best[event.path] = (generation, event.step)
    for path, event in last.items():
        if event.generation is None and path in best:
            found.append(
                Anomaly(
                    AnomalyKind.LOST_UPDATE,
                    Severity.FATAL,
                    event.agent,
                    (best[path][1], event.step),
                    f"{path} ended {event.note} after holding generation {best[path][0]}",
                )
            )
    return found


def _torn_reads(events: Iterable[HistoryEvent], stores: Sequence[str]) -> list[Anomaly]:
    found = []
    watched = set(stores)
    for event in events:
        if event.kind is not EventKind.EFFECT or event.path not in watched:
            continue
        if not isinstance(event.outcome, ReadData):
            continue
        try:
            json.loads(event.outcome.data)
        except ValueError:
            found.append(
                Anomaly(
                    AnomalyKind.TORN_READ,
                    Severity.FATAL,
                    event.agent,
                    (event.step,),
                    f"{event.agent} read {len(event.outcome.data)} bytes of {event.path} "
                    "that do not parse (a write in progress)",
                )
            )
    return found


def _redundant_refreshes(
    events: Sequence[HistoryEvent], audit: Iterable[AuditEvent], lifetime: float
) -> list[Anomaly]:
    """Two accepted refreshes of one grant within half an access-token lifetime."""
    requests = _requests(events)
    previous: dict[str, AuditEvent] = {}
    found = []
    for record in audit:
        if record.kind is not AuditKind.ACCEPTED or record.token_kind is not TokenKind.REFRESH:
            continue
        before = previous.get(record.family)
        previous[record.family] = record
        if before is None or record.time - before.time >= lifetime / 2:
            continue
        first, second = requests.get(before.request_id), requests.get(record.request_id)
        steps = tuple(event.step for event in (first, second) if event is not None)
        agent = second.agent if second is not None else "?"
        found.append(
            Anomaly(
                AnomalyKind.REDUNDANT_REFRESH,
                Severity.WARNING,
                agent,
                steps,
                f"{agent} refreshed grant {record.family} {record.time - before.time:g}s after "
                "the last refresh: more than one refresh for one expiry",
            )
        )
    return found


def _overlapping_refreshes(events: Iterable[HistoryEvent]) -> list[Anomaly]:
    """Refresh requests of different agents in flight at the same time."""
    in_flight: dict[str, HistoryEvent] = {}
    found = []
    for event in events:
        if event.kind is EventKind.REQUEST:
            for other in in_flight.values():
                if other.agent != event.agent:
                    found.append(
                        Anomaly(
                            AnomalyKind.MUTUAL_EXCLUSION,
                            Severity.WARNING,
                            event.agent,
                            (other.step, event.step),
                            f"{event.agent} sent a refresh while {other.agent}'s was in flight",
                        )
                    )
            in_flight[event.agent] = event
        elif event.kind in (EventKind.RESPONSE, EventKind.FAULT):
            in_flight.pop(event.agent, None)
    return found


def _fault_losses(events: Sequence[HistoryEvent], audit: Iterable[AuditEvent]) -> list[int]:
    """Steps where a fault lost a token the server had already rotated."""
    accepted = {
        record.request_id
        for record in audit
        if record.kind is AuditKind.ACCEPTED and record.token_kind is TokenKind.REFRESH
    }
    last_request: dict[str, HistoryEvent] = {}
    awaiting: dict[str, str] = {}  # agent -> request in flight (sent, no response yet)
    holding: dict[str, int] = {}  # agent -> step it received a new token not yet stored
    losses = []
    for event in events:
        if event.kind is EventKind.REQUEST:
            last_request[event.agent] = event
            awaiting[event.agent] = event.request_id
        elif event.kind is EventKind.RESPONSE:
            awaiting.pop(event.agent, None)
            outcome = event.outcome
            if isinstance(outcome, HttpResponse) and outcome.status == 200:
                holding[event.agent] = event.step
        elif event.kind is EventKind.STORE and event.generation is not None:
            holding.pop(event.agent, None)
        elif event.kind is EventKind.FAULT:
            request = last_request.get(event.agent)
            killed = event.note.startswith("kill")
            in_flight = awaiting.pop(event.agent, None) if killed else None
            if event.note == "drop" and request is not None and request.request_id in accepted:
                losses.append(event.step)
            elif killed and (event.agent in holding or in_flight in accepted):
                # killed holding a new token, or while the committed answer was on its way
                losses.append(event.step)
                holding.pop(event.agent, None)
    return losses


def _lost_tokens(
    events: Sequence[HistoryEvent], audit: Iterable[AuditEvent], losses: list[int]
) -> list[Anomaly]:
    """A refresh token the server issued that no store ever held."""
    stored: dict[str, int] = {}
    for event in events:
        if event.kind is EventKind.STORE and event.generation is not None:
            family = event.note.partition("/")[0]
            stored[family] = max(stored.get(family, -1), event.generation)
    requests = _requests(events)
    found = []
    issued = [
        record
        for record in audit
        if record.kind is AuditKind.ISSUED
        and record.token_kind is TokenKind.REFRESH
        and record.request_id in requests
    ]
    for record in issued:
        if stored.get(record.family, -1) >= record.generation:
            continue
        request = requests[record.request_id]
        cause = "a fault lost it" if losses else "the engine never saved it"
        found.append(
            Anomaly(
                AnomalyKind.TOKEN_LOST,
                Severity.FATAL,
                request.agent,
                (request.step,),
                f"the server issued {record.token_fp} ({record.family}/g{record.generation}) "
                f"to {request.agent} and no store ever held it: {cause}",
            )
        )
    return found
