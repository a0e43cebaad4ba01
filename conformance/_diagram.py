"""The sequence diagram as data: lanes, rows and what each row means to a reader.

``_sequence`` fills it from a simulated run's history, ``_client_diagram``
from a real client's run, ``_svg`` draws both.  Kept apart so the drawing
never needs to know about effects, and the reading of a history never about
pixels.  ``AuditIndex`` is what both readings share: what the server did
with each request (accepted, spent, refused as a reuse, revoked), in the
same words and colours.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fake_oauth_server import AuditEvent, AuditKind, TokenKind

from ._checker import Anomaly, Severity

MAX_ROWS = 160  # beyond this the diagram says how many rows it left out
SERVER = "server"  # the token endpoint's lane key


class LaneKind(enum.Enum):
    AGENT = "agent"
    LOCK = "lock"
    STORE = "store"
    SERVER = "server"


class Tone(enum.Enum):
    """What a row means to the reader; ``_svg`` maps each to a colour."""

    NORMAL = "normal"
    MUTED = "muted"  # background detail (a failed try, a turn that ended well)
    SPEND = "spend"  # the request that spent a token someone later reused
    REUSE = "reuse"  # the request that presented an already spent token
    BAD = "bad"  # anything else that went wrong
    FAULT = "fault"  # an injected fault and what it did


class RowKind(enum.Enum):
    ARROW = "arrow"  # from one lane to another
    NOTE = "note"  # on one lane
    DIVIDER = "divider"  # across every lane: the clock moved, or the run ended badly


@dataclass(frozen=True, slots=True)
class Lane:
    key: str
    kind: LaneKind
    label: str  # short, distinguishing
    title: str  # the full name (a path), for tooltips
    caption: str = ""  # what the lane is, above its label ("agent", "store", "mutex"...)


@dataclass(frozen=True, slots=True)
class Row:
    step: int
    time: float  # seconds since the run started
    kind: RowKind
    source: str  # lane key
    target: str  # lane key (== source for a note)
    label: str
    detail: str = ""  # a second, smaller line (what the server did)
    tone: Tone = Tone.NORMAL
    dashed: bool = False  # replies and waits
    repeat: int = 1  # identical rows folded into this one
    until: float | None = None  # time of the last folded row
    marks: tuple[str, ...] = ()  # anomalies that show at this row
    tooltip: str = ""  # the history lines behind the row


@dataclass(frozen=True, slots=True)
class Diagram:
    lanes: tuple[Lane, ...]
    rows: tuple[Row, ...]
    hidden: int  # rows left out after MAX_ROWS


def distinct(paths: Sequence[str], home: str) -> list[str]:
    """Short names that still tell the paths apart: what differs between them, else the name."""
    if len(paths) <= 1:
        return [short(path.rsplit("/", 1)[-1]) for path in paths]
    parts = [path.replace(home + "/", "~/").split("/") for path in paths]
    prefix = 0
    while all(len(p) > prefix + 1 for p in parts) and len({p[prefix] for p in parts}) == 1:
        prefix += 1
    suffix = 0
    while (
        all(len(p) > prefix + suffix + 1 for p in parts)
        and len({p[-1 - suffix] for p in parts}) == 1
    ):
        suffix += 1
    names = ["/".join(p[prefix : len(p) - suffix]) for p in parts]
    return [short(name) for name in names] if len(set(names)) == len(names) else list(paths)


def short(name: str, limit: int = 22) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def fold(rows: Iterable[Row]) -> list[Row]:
    """Fold a retry loop: a row equal to the last drawn one, with only clock ticks between."""
    out: list[Row] = []
    for row in rows:
        if row.kind is not RowKind.DIVIDER:
            last = len(out) - 1
            while last >= 0 and out[last].kind is RowKind.DIVIDER and out[last].tone is Tone.NORMAL:
                last -= 1
            if last >= 0 and _same(out[last], row):
                kept, ticks = out[last], out[last + 1 :]
                out[last] = dataclasses.replace(kept, repeat=kept.repeat + 1, until=row.time)
                out[last + 1 :] = ticks[-1:]  # the loop's last tick: later rows happen after it
                continue
        elif out and out[-1].kind is RowKind.DIVIDER and out[-1].tone is row.tone is Tone.NORMAL:
            out[-1] = row  # two ticks in a row: keep the later time
            continue
        out.append(row)
    return out


def _same(a: Row, b: Row) -> bool:
    return (a.kind, a.source, a.target, a.label, a.detail, a.tone) == (
        b.kind,
        b.source,
        b.target,
        b.label,
        b.detail,
        b.tone,
    )


def mark(rows: list[Row], anomalies: Sequence[Anomaly]) -> list[Row]:
    """Name each fatal anomaly at the row of its last step (the agent's own row if it has one)."""
    for anomaly in anomalies:
        if anomaly.severity is not Severity.FATAL or not anomaly.steps:
            continue
        step = max(anomaly.steps)
        candidates = [
            i for i, row in enumerate(rows) if row.step >= step and row.kind is not RowKind.DIVIDER
        ]
        if not candidates:
            continue
        exact = [i for i in candidates if rows[i].step == step]
        own = [i for i in exact if anomaly.agent in (rows[i].source, rows[i].target)]
        index = (own or exact or candidates)[0]
        if anomaly.kind.value not in rows[index].marks:
            rows[index] = dataclasses.replace(
                rows[index], marks=(*rows[index].marks, anomaly.kind.value)
            )
    return rows


class AuditIndex:
    """The server's audit log read for a diagram: each request's records, each token's
    generation, and which refresh tokens were reused, so the request that spent one is
    tinted as the spend and the one that presented it again as the reuse."""

    def __init__(self, audit: Iterable[AuditEvent]) -> None:
        self.by_request: dict[str, list[AuditEvent]] = {}
        self.generations: dict[str, int] = {}  # token fingerprint -> generation
        self.reused: set[str] = set()
        self.spent: set[str] = set()  # reused tokens whose spending request is drawn already
        for record in audit:
            self.by_request.setdefault(record.request_id, []).append(record)
            if record.token_kind is TokenKind.REFRESH:
                self.generations.setdefault(record.token_fp, record.generation)
            if record.kind is AuditKind.REJECTED and record.reason == "reused":
                self.reused.add(record.token_fp)

    def token(self, fp: str) -> str:
        """``fp`` with its generation, as rows name a refresh token: ``rt#1a2b (g0)``."""
        generation = self.generations.get(fp)
        return fp if generation is None or generation < 0 else f"{fp} (g{generation})"

    def verdict(self, request_id: str, label: str) -> tuple[str, str, Tone]:
        """(label, detail, tone) of the request ``request_id``, first drawn as ``label``:
        what the server accepted, issued, refused and revoked for it."""
        notes: list[str] = []
        tone = Tone.NORMAL
        for record in self.by_request.get(request_id, ()):
            fp = record.token_fp
            if record.kind is AuditKind.ACCEPTED and record.token_kind is TokenKind.REFRESH:
                spends = fp in self.reused and fp not in self.spent
                if spends:
                    self.spent.add(fp)
                    tone = Tone.SPEND
                notes.append(f"{'spends' if spends else 'accepts'} {fp}" + _reason(record))
            elif record.kind is AuditKind.ISSUED and record.token_kind is TokenKind.REFRESH:
                notes.append(f"issues {self.token(fp)}")
            elif record.kind is AuditKind.REJECTED:
                if record.reason == "reused":
                    tone = Tone.REUSE
                    label = f"REUSE {self.token(fp)}"
                elif tone is Tone.NORMAL:
                    tone = Tone.BAD
                notes.append(f"rejects {fp}" + _reason(record))
            elif record.kind is AuditKind.REVOKED:
                note = f"revokes grant {record.family}" + _reason(record)
                if note not in notes:
                    notes.append(note)
            elif record.kind is AuditKind.FAULT:
                notes.append(f"fault: {record.reason}")
        return label, "; ".join(notes), tone


def _reason(record: AuditEvent) -> str:
    return f" ({record.reason})" if record.reason else ""
