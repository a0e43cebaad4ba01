"""The checker: read a run's history and the server's audit log, name what went wrong.

Every anomaly names the steps that show it, so a user can find them in the
replayed history.  Severity says whether the run fails: a fatal anomaly is a
bug the engine must not have; a warning is worth knowing.  Where a loss was
unavoidable (the server rotated, a fault lost the new token, and the policy
has no reuse window), the anomalies that follow are warnings that say so,
rather than blame the engine.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Sequence

from fake_oauth_server import AuditEvent, AuditKind, TokenKind, redact
from refresh_engine import Failed, Flock, Lockf, LockFileEx
from simulator import EventKind, FaultKind, HistoryEvent, Refusal, RunResult, StoreState

from ._anomalies import PROGRAMMING_ERRORS, Anomaly, AnomalyKind, Severity, fatal
from ._exclusion import exclusion_anomalies
from ._losses import avoidable_losses, fault_losses, lost_tokens, refresh_records, unavoidable
from ._reads import torn_reads

__all__ = [
    "Anomaly",
    "AnomalyKind",
    "Severity",
    "check",
    "fatal",
    "reuse_anomalies",
]


def check(result: RunResult) -> tuple[Anomaly, ...]:
    """Every anomaly of a finished run, in step order."""
    events, audit = result.events, result.audit
    anomalies = [
        *reuse_anomalies(events, audit),
        *_history_anomalies(events, audit),
        *_store_anomalies(events, audit),
        *torn_reads(events, result.stores),
        *_redundant_refreshes(events, audit, result.policy.access_token_lifetime),
        *_overlapping_refreshes(events),
        *exclusion_anomalies(events),
    ]
    losses = fault_losses(events, audit)
    anomalies += lost_tokens(events, audit, losses)
    anomalies += avoidable_losses(events, losses)
    if losses and not result.policy.grace:
        anomalies = [unavoidable(anomaly, losses) for anomaly in anomalies]
    anomalies.sort(key=lambda anomaly: (anomaly.steps, anomaly.kind.value, anomaly.agent))
    return tuple(anomalies)


def _requests(events: Iterable[HistoryEvent]) -> dict[str, HistoryEvent]:
    return {event.request_id: event for event in events if event.kind is EventKind.REQUEST}


def reuse_anomalies(events: Sequence[HistoryEvent], audit: Iterable[AuditEvent]) -> list[Anomaly]:
    """A refresh token the server had already rotated, presented again; families revoked."""
    requests = _requests(events)
    spent_by: dict[str, str] = {}  # refresh-token fingerprint -> request that spent it
    found = []
    revoked: set[str] = set()
    rejected = refresh_records(audit, AuditKind.REJECTED)  # a revocation's cause, per request
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
                        record.family,
                        _presented(rejected.get(record.request_id)),
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
                    record.family,
                    record.generation,
                )
            )
    return found


def _presented(record: AuditEvent | None) -> int | None:
    return None if record is None else record.generation


#: Faults of the server or the network that strike a refresh before the server commits
#: anything: a turn they end is not the engine's failure.  Not ``drop``: the server
#: committed the rotation, and an engine that gives up instead of retrying inside a
#: reuse window loses the new token (``_losses`` decides when that was unavoidable).
SERVER_FAULTS = frozenset((FaultKind.SERVER_ERROR, FaultKind.RATE_LIMIT, FaultKind.RESET))

#: Faults that fail a call before anything is committed: a turn they end, with the engine
#: saying so, is the server's or the disk's failure, not the engine's.
EXCUSING_FAULTS = SERVER_FAULTS | {FaultKind.IO_ERROR, FaultKind.DENIED}


def _excused_failure(event: HistoryEvent, faults: Sequence[HistoryEvent]) -> Anomaly | None:
    """The warning for a turn that a server or I/O fault ended, where the engine said so.

    ``event`` is a ``TURN_END`` with an error; ``faults`` the excusing faults that
    struck its agent during that turn.  An agent stranded (``ReloginRequired``)
    by a transient failure, or one that raised a programming error, is not excused.
    (A new token the failure kept from the store is ``_losses``' to excuse.)
    """
    if not faults or event.stranded or event.error_type in PROGRAMMING_ERRORS:
        return None
    fault = faults[-1]
    assert fault.fault is not None
    disk = fault.fault in (FaultKind.IO_ERROR, FaultKind.DENIED)
    whose = "the disk's failure" if disk else "the server's failure"
    message = (
        f"{event.agent} ended its turn with {event.error_type}: {redact(event.note)} "
        f"after a {fault.fault.value} injected at step {fault.step}: {whose}, reported"
    )
    kind = AnomalyKind.IO_FAULT if disk else AnomalyKind.SERVER_FAULT
    return Anomaly(kind, Severity.WARNING, event.agent, (fault.step, event.step), message)


def _gave_up(event: HistoryEvent) -> bool:
    """A lock call that waited its whole timeout (the kernel's give-up, or a real one)."""
    outcome = event.outcome
    return (
        event.kind is EventKind.EFFECT
        and isinstance(event.effect, Flock | Lockf | LockFileEx)
        and isinstance(outcome, Failed)
        and outcome.errno == errno.ETIMEDOUT
    )


def _lock_given_up(event: HistoryEvent, gave_up: HistoryEvent | None) -> Anomaly | None:
    """The warning for a turn that ended after its lock call gave up while a stall or a
    slow answer held the lock's holder up, where the engine said so.  (A give-up with
    nobody held up is a lock never released: ``_history_anomalies`` makes it fatal.)"""
    if gave_up is None or event.stranded or event.error_type in PROGRAMMING_ERRORS:
        return None
    message = (
        f"{event.agent} ended its turn with {event.error_type}: {redact(event.note)} "
        f"after its lock call gave up at step {gave_up.step} while {gave_up.struck} "
        "was held up: the stuck holder's failure, reported"
    )
    steps = (gave_up.step, event.step)
    return Anomaly(AnomalyKind.LOCK_TIMEOUT, Severity.WARNING, event.agent, steps, message)


def _history_anomalies(
    events: Iterable[HistoryEvent], audit: Iterable[AuditEvent]
) -> list[Anomaly]:
    rejected = refresh_records(audit, AuditKind.REJECTED)
    accepted = refresh_records(audit, AuditKind.ACCEPTED)
    last_request: dict[str, str] = {}  # agent -> its latest refresh request
    faults: dict[str, list[HistoryEvent]] = {}  # agent -> excusing faults of its current turn
    denied: list[HistoryEvent] = []  # a directory made unwritable stays so for every agent
    gave_up: dict[str, HistoryEvent] = {}  # agent -> its turn's lock call that timed out
    found = []
    for event in events:
        step = (event.step,)
        if event.kind is EventKind.REQUEST:
            last_request[event.agent] = event.request_id
        elif event.kind is EventKind.TURN_BEGIN:
            faults[event.agent] = []
            gave_up.pop(event.agent, None)
        elif _gave_up(event) and event.struck:
            gave_up[event.agent] = event
        elif _gave_up(event):
            message = (
                f"{event.agent} gave up on a lock nobody released: no agent was held up "
                f"while it waited ({event.note})"
            )
            found.append(Anomaly(AnomalyKind.DEADLOCK, Severity.FATAL, event.agent, step, message))
        elif event.kind is EventKind.FAULT and event.fault is FaultKind.DENIED:
            denied[:] = [event]
        elif event.kind is EventKind.FAULT and event.fault in EXCUSING_FAULTS:
            faults.setdefault(event.agent, []).append(event)
        elif event.kind is EventKind.TURN_END and event.error_type:
            excused = _excused_failure(event, [*denied, *faults.get(event.agent, ())])
            excused = excused or _lock_given_up(event, gave_up.get(event.agent))
            if excused is not None:
                found.append(excused)
                continue
            kind = AnomalyKind.AGENT_STRANDED if event.stranded else AnomalyKind.ENGINE_ERROR
            message = f"{event.agent} ended its turn with {event.error_type}: {redact(event.note)}"
            # stranded by the refusal of the token it presented last: that token's grant;
            # an error after a request the server accepted (its answer lost): that grant,
            # so a loss can excuse it, unless the error is a bug in the engine's own code
            request = last_request.get(event.agent, "")
            refused = rejected.get(request)
            if refused is None and event.error_type not in PROGRAMMING_ERRORS:
                refused = accepted.get(request)
            family = refused.family if refused is not None else ""
            anomaly = Anomaly(
                kind, Severity.FATAL, event.agent, step, message, family, _presented(refused)
            )
            found.append(anomaly)
        elif event.kind is EventKind.TOKEN_USE and not event.ok:
            expired = event.refusal is Refusal.EXPIRED
            kind = AnomalyKind.EXPIRED_TOKEN_USED if expired else AnomalyKind.TOKEN_REJECTED
            message = f"the resource endpoint refused {event.agent}'s token {event.note}"
            found.append(Anomaly(kind, Severity.FATAL, event.agent, step, message, event.family))
        elif event.kind is EventKind.DEADLOCK:
            found.append(Anomaly(AnomalyKind.DEADLOCK, Severity.FATAL, "", step, event.note))
        elif event.kind is EventKind.STEP_BOUND:
            message = f"{event.note}: a livelock, or a step bound too small for this world"
            found.append(Anomaly(AnomalyKind.LIVELOCK, Severity.FATAL, "", step, message))
    return found


def _store_anomalies(events: Iterable[HistoryEvent], audit: Iterable[AuditEvent]) -> list[Anomaly]:
    """A store's profile that goes back to an older credential, or ends wiped after
    holding one (each profile of a store of several on its own).

    Credentials are ordered by login, then generation: a login (a new grant) supersedes
    every token of the grants issued before it, so a store that moves on to a newer
    login moves forward, and one carried back to an older grant has lost that login.
    """
    logins: dict[str, int] = {}  # grant -> its place in the order the server issued them
    for record in audit:
        if record.kind is AuditKind.ISSUED and record.token_kind is TokenKind.REFRESH:
            logins.setdefault(record.family, len(logins))
    best: dict[tuple[str, str], HistoryEvent] = {}  # (path, profile) -> newest it held
    last: dict[tuple[str, str], HistoryEvent] = {}
    found = []

    def age(event: HistoryEvent) -> tuple[int, int]:
        return (logins.get(event.family, -1), event.generation or 0)

    for event in events:
        if event.kind is not EventKind.STORE:
            continue
        where = (event.path, event.profile)
        last[where] = event
        if event.generation is None:
            continue
        top = best.get(where)
        if top is not None and age(event) < age(top):
            older, newer = _credential(event, top), _credential(top, event)
            message = f"{event.agent} wrote {older} over {newer} in {_named(where)}"
            steps = (top.step, event.step)
            found.append(
                Anomaly(
                    AnomalyKind.LOST_UPDATE,
                    Severity.FATAL,
                    event.agent,
                    steps,
                    message,
                    event.family,
                    event.generation,
                )
            )
        if top is None or age(event) > age(top):
            best[where] = event
    for where, event in last.items():
        if event.store is not StoreState.CREDENTIAL and where in best:
            top = best[where]
            message = f"{_named(where)} ended {event.note} after holding {_credential(top, top)}"
            steps = (top.step, event.step)
            found.append(
                Anomaly(AnomalyKind.LOST_UPDATE, Severity.FATAL, event.agent, steps, message)
            )
    return found


def _credential(event: HistoryEvent, other: HistoryEvent) -> str:
    """``generation N``, or with its grant where the two differ (a login in between)."""
    if event.family == other.family:
        return f"generation {event.generation}"
    return f"{event.family}/g{event.generation}"


def _named(where: tuple[str, str]) -> str:
    path, profile = where
    return f"{path} ({profile})" if profile else path


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
                            AnomalyKind.OVERLAPPING_REFRESH,
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
