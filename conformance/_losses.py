"""Tokens a fault lost, and which anomalies no engine could have avoided after one.

Under a policy with no reuse window, a rotation is final the moment the
server commits it.  If a fault then keeps the new refresh token from ever
reaching a store (the response is dropped; the process is killed, or the
machine crashes, while the response is in flight or while the agent holds the
new token unsaved; an I/O error fails the save and the engine ends its turn
saying so), every agent of that grant is left with a spent token.
What follows in *that grant* is the fault's doing, not the engine's: those
anomalies become warnings that say so.  An anomaly of another grant, or one
where an agent presented a token older than the one the lost request spent
(a stale copy: a bug of its own), stays fatal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fake_oauth_server import AuditEvent, AuditKind, TokenKind
from refresh_engine import HttpResponse
from simulator import EventKind, FaultKind, HistoryEvent, StoreState

from ._anomalies import PROGRAMMING_ERRORS, Anomaly, AnomalyKind, Severity

#: Anomalies that follow from a lost token; unavoidable when the policy has no reuse window.
CONSEQUENCES = frozenset(
    {
        AnomalyKind.REFRESH_TOKEN_REUSE,
        AnomalyKind.FAMILY_REVOKED,
        AnomalyKind.AGENT_STRANDED,
        AnomalyKind.TOKEN_LOST,
        AnomalyKind.TOKEN_REJECTED,
        AnomalyKind.ENGINE_ERROR,  # the error the lost answer ended the turn with
    }
)


@dataclass(frozen=True, slots=True)
class Loss:
    """A fault kept a committed rotation's new refresh token from every store."""

    step: int  # the fault's step
    agent: str  # the agent that sent the request (or held its answer)
    fault: FaultKind
    family: str  # the grant
    spent: int  # the generation the lost request presented; ``spent + 1`` was lost
    #: a file beside the stores that held the lost token (or a later one) when the process
    #: died: the loss was avoidable, by rolling forward from it ("": nothing was kept)
    kept: str = ""
    #: the step of a ``denied`` fault that struck before the turn that presented the lost
    #: token began: the directory was already unwritable, and a check at any point of the
    #: turn before presenting would have kept the token unspent (None: no such fault).
    #: A denial within the turn is not counted: it may fall between a check and the post.
    unwritable_since: int | None = None

    @property
    def avoidable(self) -> bool:
        return bool(self.kept) or self.unwritable_since is not None


def refresh_records(audit: Iterable[AuditEvent], kind: AuditKind) -> dict[str, AuditEvent]:
    """The first ``kind`` record of a refresh token, per request."""
    found: dict[str, AuditEvent] = {}
    for record in audit:
        if record.kind is kind and record.token_kind is TokenKind.REFRESH:
            found.setdefault(record.request_id, record)
    return found


def fault_losses(events: Sequence[HistoryEvent], audit: Iterable[AuditEvent]) -> list[Loss]:
    """Every fault that lost a token the server had already rotated, in step order."""
    accepted = refresh_records(audit, AuditKind.ACCEPTED)
    awaiting: dict[str, str] = {}  # agent -> its request in flight (sent, no response yet)
    holding: dict[str, str] = {}  # agent -> request whose new token it holds unsaved
    struck: dict[str, HistoryEvent] = {}  # agent -> an I/O error of its turn, while holding
    began: dict[str, int] = {}  # agent -> the step its current turn began
    requested: dict[str, int] = {}  # request id -> the step its turn began
    denied: int | None = None  # the step the stores' directories became unwritable
    losses: list[Loss] = []

    def lose(event: HistoryEvent, fault: FaultKind, request_id: str | None) -> None:
        record = accepted.get(request_id or "")
        if record is None:
            return
        late = denied is not None and requested.get(request_id or "", -1) > denied
        kept = next(
            (
                k.path
                for k in event.kept
                if k.family == record.family and k.generation > record.generation
            ),
            "",
        )
        since = denied if late else None
        loss = Loss(event.step, event.agent, fault, record.family, record.generation, kept, since)
        losses.append(loss)

    for event in events:
        agent = event.agent
        if event.kind is EventKind.REQUEST:
            awaiting[agent] = event.request_id
            requested[event.request_id] = began.get(agent, -1)
        elif event.kind is EventKind.TURN_BEGIN:
            began[agent] = event.step
        elif event.kind is EventKind.RESPONSE:
            awaiting.pop(agent, None)
            outcome = event.outcome
            if isinstance(outcome, HttpResponse) and outcome.status == 200:
                holding[agent] = event.request_id
        elif event.kind is EventKind.STORE and event.store is StoreState.CREDENTIAL:
            held = accepted.get(holding.get(agent, ""))
            if held is not None and _saves(event, held):
                del holding[agent]
        elif event.kind is EventKind.TURN_END:
            # an I/O error kept the new token from the store, and the engine said so: lost
            fault = struck.pop(agent, None)
            honest = event.error_type and event.error_type not in PROGRAMMING_ERRORS
            if fault is not None and honest and agent in holding:
                lose(fault, FaultKind.IO_ERROR, holding.pop(agent))
            elif denied is not None and honest and agent in holding:
                lose(event, FaultKind.DENIED, holding.pop(agent))  # it could not save it
        elif event.kind is EventKind.FAULT and event.fault is not None:
            if event.fault is FaultKind.DENIED and denied is None:
                denied = event.step
            elif event.fault is FaultKind.IO_ERROR and agent in holding:
                struck[agent] = event
            elif event.fault is FaultKind.DROP:
                lose(event, event.fault, awaiting.pop(agent, None))
            elif event.killed:
                lose(event, event.fault, awaiting.pop(agent, None))
                lose(event, event.fault, holding.pop(agent, None))
    return [_judged_kept(loss, events, audit) for loss in losses]


def _judged_kept(loss: Loss, events: Sequence[HistoryEvent], audit: Iterable[AuditEvent]) -> Loss:
    """A kept token makes the loss avoidable only if the engine then presented the spent
    one (or older) instead of it; a run that ends with it still on disk (say, a second
    fault failed the recovery, and the engine said so) lost nothing yet by neglect."""
    if not loss.kept:
        return loss
    steps = {event.request_id: event.step for event in events if event.kind is EventKind.REQUEST}
    ignored = any(
        record.family == loss.family
        and record.generation <= loss.spent
        and steps.get(request_id, -1) > loss.step
        for request_id, record in refresh_records(audit, AuditKind.PRESENTED).items()
    )
    return loss if ignored else dataclasses.replace(loss, kept="")


def _saves(event: HistoryEvent, spent: AuditEvent) -> bool:
    """Does the store now hold the token (or a later one) that spending ``spent`` minted?"""
    generation = event.generation
    return event.family == spent.family and generation is not None and generation > spent.generation


def excused_by(anomaly: Anomaly, losses: Iterable[Loss]) -> Loss | None:
    """The loss ``anomaly`` follows from, if any: same grant, and
    - a lost token: exactly the token the loss lost;
    - anything else: after the loss, and (where the anomaly names a token) presenting
      no older token than the lost request spent, as anyone left with the store would."""
    if anomaly.kind not in CONSEQUENCES or not anomaly.family:
        return None
    last = max(anomaly.steps, default=0)
    for loss in losses:
        if loss.family != anomaly.family or loss.avoidable:
            continue
        if anomaly.kind is AnomalyKind.TOKEN_LOST:
            if anomaly.generation == loss.spent + 1:
                return loss
        elif loss.step <= last and (anomaly.generation is None or anomaly.generation >= loss.spent):
            return loss
    return None


def unavoidable(anomaly: Anomaly, losses: Sequence[Loss]) -> Anomaly:
    """``anomaly`` as a warning if a fault's loss explains it, else unchanged."""
    loss = excused_by(anomaly, losses)
    if loss is None:
        return anomaly
    return dataclasses.replace(
        anomaly,
        severity=Severity.WARNING,
        message=anomaly.message + f" (unavoidable: a {loss.fault.value} at step {loss.step} lost "
        f"{loss.agent}'s rotated token of {loss.family} and the policy has no reuse window)",
    )


def lost_tokens(
    events: Sequence[HistoryEvent], audit: Iterable[AuditEvent], losses: Sequence[Loss]
) -> list[Anomaly]:
    """A refresh token the server issued in answer to an agent that no store ever held."""
    stored: dict[str, int] = {}  # family -> the highest generation a store held
    requests = {event.request_id: event for event in events if event.kind is EventKind.REQUEST}
    for event in events:
        if event.kind is EventKind.STORE and event.generation is not None:
            stored[event.family] = max(stored.get(event.family, -1), event.generation)
    found = []
    issued = refresh_records(audit, AuditKind.ISSUED)
    for request_id, record in issued.items():
        request = requests.get(request_id)
        if request is None or stored.get(record.family, -1) >= record.generation:
            continue
        anomaly = Anomaly(
            AnomalyKind.TOKEN_LOST,
            Severity.FATAL,
            request.agent,
            (request.step,),
            "",
            record.family,
            record.generation,
        )
        cause = "a fault lost it" if excused_by(anomaly, losses) else "the engine never saved it"
        message = (
            f"the server issued {record.token_fp} ({record.family}/g{record.generation}) "
            f"to {request.agent} and no store ever held it: {cause}"
        )
        found.append(dataclasses.replace(anomaly, message=message))
    return found


def avoidable_losses(events: Sequence[HistoryEvent], losses: Sequence[Loss]) -> list[Anomaly]:
    """A loss whose token was on disk when its process died (a staged temp file never
    renamed into place) and that no store held afterwards: the engine did not roll
    forward.  Fatal, and nothing that follows in the grant is excused by it."""
    found = []
    for loss in losses:
        if loss.unwritable_since is not None:
            found.append(_presented_unsaveable(loss))
            continue
        if not loss.kept:
            continue
        recovered = any(
            event.kind is EventKind.STORE
            and event.step >= loss.step
            and event.family == loss.family
            and event.generation is not None
            and event.generation > loss.spent
            for event in events
        )
        if recovered:
            continue
        message = (
            f"a {loss.fault.value} at step {loss.step} stopped {loss.agent} before it saved "
            f"{loss.family}/g{loss.spent + 1}, but {loss.kept} held it complete and no store "
            "ever took it: the next refresher presented the spent token instead of "
            "rolling forward"
        )
        found.append(
            Anomaly(
                AnomalyKind.AVOIDABLE_LOSS,
                Severity.FATAL,
                loss.agent,
                (loss.step,),
                message,
                loss.family,
                loss.spent + 1,
            )
        )
    return found


def _presented_unsaveable(loss: Loss) -> Anomaly:
    """A token presented after the stores' directory became unwritable, whose answer then
    could not be saved: creating a file there first would have shown it unspent."""
    message = (
        f"the stores' directory became unwritable (a denied fault at step "
        f"{loss.unwritable_since}) before {loss.agent}'s turn, which then presented "
        f"{loss.family}/g{loss.spent} and could not save {loss.family}/g{loss.spent + 1}: "
        "checking that a file can be created there before presenting would have kept the "
        "token unspent"
    )
    return Anomaly(
        AnomalyKind.AVOIDABLE_LOSS,
        Severity.FATAL,
        loss.agent,
        (loss.step,),
        message,
        loss.family,
        loss.spent + 1,
    )
