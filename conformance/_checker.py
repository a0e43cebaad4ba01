"""The checker: read a run's history and the server's audit log, name what went wrong.

Every anomaly names the steps that show it, so a user can find them in the
replayed history.  Severity says whether the run fails: a fatal anomaly is a
bug the engine must not have; a warning is worth knowing.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from fake_oauth_server import AuditEvent, AuditKind, TokenKind, redact
from simulator import EventKind, HistoryEvent, RunResult


class AnomalyKind(enum.Enum):
    REFRESH_TOKEN_REUSE = "refresh-token-reuse"  # a spent refresh token was presented again
    AGENT_STRANDED = "agent-stranded"  # an agent ended needing a new login
    ENGINE_ERROR = "engine-error"  # the engine raised something other than ReloginRequired
    DEADLOCK = "deadlock"  # agents wait and nothing can wake them
    STEP_BOUND = "step-bound"  # the run did not finish within its step bound
    TOKEN_REJECTED = "token-rejected"  # the resource endpoint refused a token the engine returned


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
        return f"{self.kind.value} ({self.severity.value}) at step {steps}: {self.message}"


def check(result: RunResult) -> tuple[Anomaly, ...]:
    """Every anomaly of a finished run, in step order."""
    anomalies = [*reuse_anomalies(result.events, result.audit), *_history_anomalies(result.events)]
    anomalies.sort(key=lambda anomaly: (anomaly.steps, anomaly.kind.value, anomaly.agent))
    return tuple(anomalies)


def fatal(anomalies: Iterable[Anomaly]) -> list[Anomaly]:
    return [anomaly for anomaly in anomalies if anomaly.severity is Severity.FATAL]


def reuse_anomalies(events: Iterable[HistoryEvent], audit: Iterable[AuditEvent]) -> list[Anomaly]:
    """A refresh token the server had already rotated, presented again."""
    requests = {event.request_id: event for event in events if event.kind is EventKind.REQUEST}
    spent_by: dict[str, str] = {}  # refresh-token fingerprint -> request that spent it
    found = []
    for record in audit:
        if record.token_kind is not TokenKind.REFRESH:
            continue
        if record.kind is AuditKind.ACCEPTED:
            spent_by.setdefault(record.token_fp, record.request_id)
        elif record.kind is AuditKind.REJECTED and record.reason == "reused":
            replay = requests.get(record.request_id)
            first = requests.get(spent_by.get(record.token_fp, ""))
            steps = tuple(event.step for event in (first, replay) if event is not None)
            agent = replay.agent if replay is not None else "?"
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
        if event.kind is EventKind.TURN_END and event.error_type:
            kind = AnomalyKind.AGENT_STRANDED if event.stranded else AnomalyKind.ENGINE_ERROR
            found.append(
                Anomaly(
                    kind,
                    Severity.FATAL,
                    event.agent,
                    (event.step,),
                    f"{event.agent} ended its turn with {event.error_type}: {redact(event.note)}",
                )
            )
        elif event.kind is EventKind.TOKEN_USE and not event.ok:
            found.append(
                Anomaly(
                    AnomalyKind.TOKEN_REJECTED,
                    Severity.FATAL,
                    event.agent,
                    (event.step,),
                    f"the resource endpoint refused {event.agent}'s token {event.note}",
                )
            )
        elif event.kind is EventKind.DEADLOCK:
            found.append(
                Anomaly(AnomalyKind.DEADLOCK, Severity.FATAL, "", (event.step,), event.note)
            )
        elif event.kind is EventKind.STEP_BOUND:
            found.append(
                Anomaly(AnomalyKind.STEP_BOUND, Severity.WARNING, "", (event.step,), event.note)
            )
    return found
