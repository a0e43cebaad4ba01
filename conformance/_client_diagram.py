"""A real client's run as a sequence diagram, drawn by the same ``_svg`` as a simulated one.

A client run has no OS calls to show, only what the harness saw (and,
on a scheduled filesystem, each file step let through: an arrow to the
store's lane, or to "other files" for locks and temp files): each
agent's refresh held at its token endpoint, the release order, kills and
restarts, what the server did with each request (``AuditIndex``, shared with
``_sequence``: the spend tinted amber, the reuse red), the exits, and what
each credential store ends holding.  ``ClientEvent`` records the harness's
side as it happens; ``build`` turns those, the audit log and the stores into
a ``Diagram``.  Rows carry no wall-clock times, so one order run twice draws
the same diagram.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fake_oauth_server import AuditEvent, AuditKind, TokenKind

from ._checker import Anomaly, AnomalyKind, Severity
from ._diagram import (
    MAX_ROWS,
    SERVER,
    AuditIndex,
    Diagram,
    Lane,
    LaneKind,
    Row,
    RowKind,
    Tone,
    distinct,
    fold,
)

#: where a client's files live in the history: what ``distinct`` shortens paths against
STATE_DIR = "{state_dir}"
#: the lane of the files a scheduled filesystem's steps touch that are no store
FILES = "files"


class ClientEventKind(enum.Enum):
    HELD = "held"  # the agent's refresh reached its endpoint and is held there
    RELEASED = "released"  # the harness let it through; the server answered ``status``
    KILLED = "killed"  # SIGKILL while its request was held
    RESTARTED = "restarted"
    EXITED = "exited"  # the process ended (``status`` is its exit code)
    FILE = "file"  # a file step let through on the scheduled filesystem (``check --fs``)


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """One thing the harness saw or did, fingerprints only."""

    kind: ClientEventKind
    agent: str
    request_id: str = ""
    token_fp: str = ""
    status: int = 0  # the HTTP status (0: no answer), or the exit code
    note: str = ""  # a FILE step: what it did ("open O_RDONLY"); a KILLED: where it stood
    path: str = ""  # a FILE step: the path under the state directory
    result: str = ""  # a FILE step: ``ok``, ``8 bytes``, an errno name


@dataclass(frozen=True, slots=True)
class StoreEnd:
    """What a credential store holds when the run is over."""

    path: str  # under ``{state_dir}``
    token_fp: str  # "" when it holds no refresh token
    state: str  # live, spent, revoked, unknown, missing


def build(
    agents: Sequence[str],
    events: Iterable[ClientEvent],
    audit: Sequence[AuditEvent],
    stores: Sequence[StoreEnd] = (),
    anomalies: Sequence[Anomaly] = (),
) -> Diagram:
    """The diagram of a client run: a lane per agent, per store, and the server."""
    index = AuditIndex(audit)
    rows: list[Row] = []

    def add(
        kind: RowKind,
        source: str,
        target: str,
        label: str,
        *,
        detail: str = "",
        tone: Tone = Tone.NORMAL,
        dashed: bool = False,
    ) -> None:
        row = Row(len(rows) + 1, 0.0, kind, source, target, label, detail, tone, dashed)
        rows.append(row)

    for record in index.by_request.get("seed", ()):
        if record.kind is AuditKind.ISSUED and record.token_kind is TokenKind.REFRESH:
            label = f"login: issues {index.token(record.token_fp)}"
            add(RowKind.NOTE, SERVER, SERVER, label, tone=Tone.MUTED)
    drawn = {"seed"}
    released = 0
    store_lanes = {"store:" + store.path for store in stores}
    others = False  # a lane for the files that are not stores (locks, temp files)
    steps = False  # file steps drawn: fold the polling loops

    def file_row(event: ClientEvent) -> None:
        nonlocal others, steps
        steps = True
        lane = "store:" + STATE_DIR + "/" + event.path
        what = event.note
        if lane not in store_lanes:
            lane, others = FILES, True
        else:  # the lane names the file
            what = what.replace(" " + event.path, "", 1)
        failed = event.result.isupper()  # an errno name
        tone = Tone.MUTED if failed or event.result == "EINTR" else Tone.NORMAL
        add(RowKind.ARROW, event.agent, lane, what, detail=event.result, tone=tone)

    for event in events:
        agent = event.agent
        if event.kind is ClientEventKind.HELD:
            label = f"refresh {index.token(event.token_fp)}"
            add(RowKind.ARROW, agent, SERVER, label, detail="held", tone=Tone.MUTED, dashed=True)
        elif event.kind is ClientEventKind.RELEASED:
            drawn.add(event.request_id)
            label = f"refresh {index.token(event.token_fp)}"
            label, detail, tone = index.verdict(event.request_id, label)
            if event.note:
                let = event.note
            else:
                released += 1
                let = f"released #{released}"
            add(RowKind.ARROW, agent, SERVER, label, detail=f"{let}: {detail}", tone=tone)
            answer = str(event.status) if event.status else "no answer"
            answer_tone = _status_tone(event.status)
            if event.note:  # the agent was killed: nobody reads the answer
                answer, answer_tone = f"{event.status}, unread", Tone.FAULT
            add(RowKind.ARROW, SERVER, agent, answer, tone=answer_tone, dashed=True)
        elif event.kind is ClientEventKind.FILE:
            file_row(event)
        elif event.kind is ClientEventKind.KILLED:
            label = event.note or f"SIGKILL while {event.token_fp} is held"
            add(RowKind.NOTE, agent, agent, label, tone=Tone.FAULT)
        elif event.kind is ClientEventKind.RESTARTED:
            add(RowKind.NOTE, agent, agent, "restarted", tone=Tone.MUTED)
        elif event.kind is ClientEventKind.EXITED:
            for request_id in _unheld(index, drawn, agent):  # sent after the hold was lifted
                drawn.add(request_id)
                label, detail, tone = _unheld_row(index, request_id)
                add(RowKind.ARROW, agent, SERVER, label, detail=detail, tone=tone)
            label = f"exits {event.status}" + (f" {event.note}" if event.note else "")
            tone = Tone.MUTED if event.status == 0 else Tone.BAD  # killed when stuck: -9
            add(RowKind.NOTE, agent, agent, label, tone=tone)
    for request_id in index.by_request:  # anyone else's, in the order the server saw them
        if request_id not in drawn:
            record = index.by_request[request_id][0]
            label, detail, tone = _unheld_row(index, request_id)
            source = record.client_id if record.client_id in agents else SERVER
            add(
                RowKind.ARROW if source != SERVER else RowKind.NOTE,
                source,
                SERVER,
                label,
                detail=detail,
                tone=tone,
            )
    names = distinct([store.path for store in stores], STATE_DIR)
    for store in stores:
        held = index.token(store.token_fp) if store.token_fp else "no refresh token"
        tone = Tone.NORMAL if store.state == "live" else Tone.BAD
        add(
            RowKind.NOTE,
            "store:" + store.path,
            "store:" + store.path,
            f"ends holding {held} ({store.state})",
            tone=tone,
        )
    if steps:
        rows = fold(rows)  # a lock polled through lookups: one row, repeated
    rows = _mark(rows, anomalies)
    lanes = [Lane(agent, LaneKind.AGENT, agent, agent, "agent") for agent in agents]
    lanes += [
        Lane("store:" + store.path, LaneKind.STORE, name, store.path, "store")
        for store, name in zip(stores, names, strict=True)
    ]
    if others:
        lanes.append(Lane(FILES, LaneKind.STORE, "other files", "locks, temp files", "files"))
    lanes.append(Lane(SERVER, LaneKind.SERVER, "token endpoint", "the fake OAuth server", "server"))
    hidden = max(0, len(rows) - MAX_ROWS)
    return Diagram(tuple(lanes), tuple(rows[:MAX_ROWS]), hidden)


def _status_tone(status: int) -> Tone:
    return Tone.NORMAL if 200 <= status < 300 else Tone.BAD


def _unheld(index: AuditIndex, drawn: set[str], agent: str) -> list[str]:
    return [
        request_id
        for request_id, records in index.by_request.items()
        if request_id not in drawn and records[0].client_id == agent
    ]


def _unheld_row(index: AuditIndex, request_id: str) -> tuple[str, str, Tone]:
    """A request the harness did not hold: a refresh, or an access token put to use."""
    first = index.by_request[request_id][0]
    if first.token_kind is TokenKind.REFRESH:
        return index.verdict(request_id, f"refresh {index.token(first.token_fp)}")
    label, detail, tone = index.verdict(request_id, f"uses {first.token_fp}")
    accepted = any(r.kind is AuditKind.ACCEPTED for r in index.by_request[request_id])
    return label, detail or ("accepted" if accepted else ""), tone


def _mark(rows: list[Row], anomalies: Sequence[Anomaly]) -> list[Row]:
    """Name each fatal anomaly at the rows that show it: a reuse at the agent's refused
    refresh, a stranded store at each store that ends badly, else at the agent's last row."""
    marked = list(rows)
    for anomaly in anomalies:
        if anomaly.severity is not Severity.FATAL:
            continue
        if anomaly.agent == "store":  # the harness's verdict on the stores, not an agent's
            at = [
                i
                for i, row in enumerate(marked)
                if row.source.startswith("store:") and row.tone is Tone.BAD
            ]
        else:
            own = [i for i, row in enumerate(marked) if anomaly.agent in (row.source, row.target)]
            reuse = [i for i in own if marked[i].tone is Tone.REUSE]
            if anomaly.kind is AnomalyKind.REFRESH_TOKEN_REUSE and reuse:
                at = reuse[:1]
            else:
                at = own[-1:]
        for i in at:
            if anomaly.kind.value not in marked[i].marks:
                marks = (*marked[i].marks, anomaly.kind.value)
                marked[i] = dataclasses.replace(marked[i], marks=marks)
    return marked
