"""A failing run as a sequence diagram: lanes (agents, locks, stores, server) and rows.

The history has an event per OS call; a reader wants the few that decide a
race: who read which token from which store, who held which lock, what the
server accepted and what it refused.  This module picks those out, labels
them with fingerprints only, marks the spend and the reuse of each reused
refresh token, folds retry loops into one row, and leaves drawing to
``_svg``.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Sequence

from fake_oauth_server import redact
from refresh_engine import (
    Close,
    CreateExclusive,
    Failed,
    Flock,
    HttpPost,
    Lockf,
    LockFileEx,
    LockOp,
    Mkdir,
    MsvcrtLocking,
    Mutex,
    Open,
    Opened,
    Read,
    ReadData,
    Replace,
    Rmdir,
    Unlink,
)
from simulator import EventKind, HistoryEvent, RunResult, describe

from ._checker import Anomaly
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
    mark,
)

#: lock calls whose lock goes away when the agent closes the descriptor
_DROPPED_ON_CLOSE = {"flock", "lockf", "LockFileEx", "msvcrt.locking"}
_REFRESH_FP = re.compile(r"rt#[0-9a-f]+")


def build(run: RunResult, anomalies: Sequence[Anomaly] = ()) -> Diagram:
    """The diagram of ``run``, with ``anomalies`` marked at the rows that show them."""
    builder = _Builder(run)
    for event in run.events:
        builder.add(event)
    rows = mark(fold(builder.rows), anomalies)
    used = {row.source for row in rows} | {row.target for row in rows}
    lanes = [lane for lane in builder.lanes() if lane.key in used or lane.kind is LaneKind.AGENT]
    hidden = max(0, len(rows) - MAX_ROWS)
    return Diagram(tuple(lanes), tuple(rows[:MAX_ROWS]), hidden)


def _lock_key(event: HistoryEvent) -> str | None:
    """The lock lane an effect touches, if it is a lock operation."""
    match event.effect:
        case Flock() | Lockf() | LockFileEx() | MsvcrtLocking() if event.path:
            return "lock:" + event.path
        case Mutex(name, _):
            return "mutex:" + name
        case CreateExclusive(path):
            return "lock:" + path
    return None


class _Builder:
    """Walks the events once, keeping who holds which lock and what each fd names."""

    def __init__(self, run: RunResult) -> None:
        self.run = run
        self.rows: list[Row] = []
        self.stores = set(run.stores)
        self.agents: list[str] = []
        self.lock_keys: list[str] = []
        self.store_keys: list[str] = []
        self.holders: dict[str, dict[str, str]] = {}  # lock lane -> agent -> how it holds it
        self.fds: dict[tuple[str, int], str] = {}  # (agent, fd) -> path, to see a close drop a lock
        self.best: dict[str, int] = {}  # store path -> highest generation written
        self.audit = AuditIndex(run.audit)
        self.fault = ""  # the last fault struck, to say what a store event of no agent follows
        self.fault_step = -1
        rmdirs = {e.effect.path for e in run.events if isinstance(e.effect, Rmdir)}
        self.lock_dirs = {e.effect.path for e in run.events if isinstance(e.effect, Mkdir)} & rmdirs

    # lanes ------------------------------------------------------------------

    def lanes(self) -> list[Lane]:
        lanes = [Lane(agent, LaneKind.AGENT, agent, agent, "agent") for agent in self.agents]
        lock_names = distinct([key.split(":", 1)[1] for key in self.lock_keys], self.run.home)
        for key, name in zip(self.lock_keys, lock_names, strict=True):
            kind, full = key.split(":", 1)
            full = full.replace(self.run.home + "/", "~/")
            caption = "mutex (in-process)" if kind == "mutex" else "lock"
            lanes.append(Lane(key, LaneKind.LOCK, name, f"{caption} {full}", caption))
        store_names = distinct(self.store_keys, self.run.home)
        for key, name in zip(self.store_keys, store_names, strict=True):
            full = key.replace(self.run.home + "/", "~/")
            lanes.append(Lane(key, LaneKind.STORE, name, full, "store"))
        lanes.append(
            Lane(SERVER, LaneKind.SERVER, "token endpoint", "the fake OAuth server", "server")
        )
        return lanes

    def _lane(self, keys: list[str], key: str) -> str:
        if key not in keys:
            keys.append(key)
        return key

    # rows -------------------------------------------------------------------

    def _row(
        self,
        event: HistoryEvent,
        kind: RowKind,
        source: str,
        target: str,
        label: str,
        *,
        detail: str = "",
        tone: Tone = Tone.NORMAL,
        dashed: bool = False,
    ) -> None:
        tooltip = f"step {event.step}: {event.agent or '-'} {describe(event)}"
        self.rows.append(
            Row(
                step=event.step,
                time=event.time - self.run.start_time,
                kind=kind,
                source=source,
                target=target,
                label=label,
                detail=detail,
                tone=tone,
                dashed=dashed,
                tooltip=tooltip.replace(self.run.home + "/", "~/"),
            )
        )

    def add(self, event: HistoryEvent) -> None:
        agent = event.agent
        if agent and agent not in self.agents:
            self.agents.append(agent)
        match event.kind:
            case EventKind.CLOCK:
                self._row(
                    event, RowKind.DIVIDER, "", "", f"t+{event.time - self.run.start_time:g}s"
                )
            case EventKind.DEADLOCK | EventKind.STEP_BOUND:
                text = redact(event.note) or event.kind.value
                self._row(event, RowKind.DIVIDER, "", "", text, tone=Tone.BAD)
            case EventKind.FAULT:
                if event.step != self.fault_step:  # the fault struck, not the kills it caused
                    self.fault, self.fault_step = event.note, event.step
                self._row(
                    event, RowKind.NOTE, agent, agent, f"fault: {event.note}", tone=Tone.FAULT
                )
            case EventKind.TURN_END:
                self._turn_end(event)
            case EventKind.TOKEN_USE if not event.ok:
                label = f"token refused: {redact(event.note)}"
                self._row(event, RowKind.NOTE, agent, agent, label, tone=Tone.BAD)
            case EventKind.REQUEST:
                self._request(event)
            case EventKind.RESPONSE:
                self._response(event)
            case EventKind.STORE:
                self._store(event)
            case EventKind.BLOCKED:
                key = _lock_key(event)
                if key is not None:
                    lane = self._lane(self.lock_keys, key)
                    label = f"{_lock_call(event)}: waits"
                    self._row(
                        event, RowKind.ARROW, agent, lane, label, dashed=True, tone=Tone.MUTED
                    )
            case EventKind.EFFECT:
                self._effect(event)

    def _turn_end(self, event: HistoryEvent) -> None:
        if event.error_type:
            label = ("STRANDED: " if event.stranded else "") + event.error_type
            self._row(event, RowKind.NOTE, event.agent, event.agent, label, tone=Tone.BAD)
        else:
            label = f"has {redact(event.note)}"
            self._row(event, RowKind.NOTE, event.agent, event.agent, label, tone=Tone.MUTED)

    def _token(self, fp: str) -> str:
        return self.audit.token(fp)

    def _request(self, event: HistoryEvent) -> None:
        assert isinstance(event.effect, HttpPost)
        form = _form(redact(event.effect.body.decode("utf-8", "replace")))
        grant = form.get("grant_type", "")
        presented = form.get("refresh_token", "")
        label = f"refresh {self._token(presented)}" if presented else (grant or "POST")
        label, detail, tone = self.audit.verdict(event.request_id, label)
        self._row(event, RowKind.ARROW, event.agent, SERVER, label, detail=detail, tone=tone)

    def _response(self, event: HistoryEvent) -> None:
        text = describe(event).split(" -> ", 1)[-1]
        tone = Tone.NORMAL
        if isinstance(event.outcome, Failed):
            tone, text = Tone.FAULT, f"lost: {event.outcome.exception_type}"
        elif text[:1] != "2":
            tone = Tone.BAD
        self._row(event, RowKind.ARROW, SERVER, event.agent, text, tone=tone, dashed=True)

    def _store(self, event: HistoryEvent) -> None:
        lane = self._lane(self.store_keys, event.path)
        generation = event.generation
        label, tone = f"writes: now {event.note}", Tone.NORMAL
        best = self.best.get(event.path)
        if generation is None:
            tone = Tone.BAD
        elif best is not None and generation < best:
            label, tone = f"{label}, over g{best}", Tone.BAD
        if generation is not None:
            self.best[event.path] = max(generation, best if best is not None else generation)
        if event.agent:
            self._row(event, RowKind.ARROW, event.agent, lane, label, tone=tone)
            return
        # no agent wrote it: the machine crashed and the store is what survived on disk
        label = f"{self.fault or 'fault'}: " + label.removeprefix("writes: ")
        tone = Tone.BAD if tone is Tone.BAD else Tone.FAULT
        self._row(event, RowKind.NOTE, lane, lane, label, tone=tone)

    def _effect(self, event: HistoryEvent) -> None:
        effect, outcome, agent = event.effect, event.outcome, event.agent
        failed = outcome.exception_type if isinstance(outcome, Failed) else ""
        if isinstance(effect, Open | CreateExclusive) and isinstance(outcome, Opened):
            self.fds[(agent, outcome.fd)] = effect.path
        elif isinstance(effect, Close):
            held = self.holders.get("lock:" + self.fds.pop((agent, effect.fd), ""), {})
            if held.get(agent, "").split(" ")[0] in _DROPPED_ON_CLOSE:
                del held[agent]  # closing the descriptor drops flock, lockf and Windows locks
        key = _lock_key(event)
        if key is None and isinstance(effect, Mkdir | Rmdir | Unlink):
            path = effect.path
            if path in self.lock_dirs or "lock:" + path in self.lock_keys:
                key = "lock:" + path
        if key is not None:
            self._lock(event, key, failed)
        elif isinstance(effect, Read) and event.path in self.stores:
            lane = self._lane(self.store_keys, event.path)
            if isinstance(outcome, ReadData):
                tokens = sorted(
                    set(_REFRESH_FP.findall(redact(outcome.data.decode("utf-8", "replace"))))
                )
                if tokens:
                    label, tone = (
                        "reads " + ", ".join(self._token(fp) for fp in tokens[:2]),
                        Tone.NORMAL,
                    )
                else:
                    label, tone = f"reads {len(outcome.data)} bytes, no token", Tone.BAD
                self._row(event, RowKind.ARROW, lane, agent, label, tone=tone, dashed=True)
        elif isinstance(effect, Replace) and effect.dst in self.stores and failed:
            lane = self._lane(self.store_keys, effect.dst)
            self._row(event, RowKind.ARROW, agent, lane, f"replace fails: {failed}", tone=Tone.BAD)

    def _lock(self, event: HistoryEvent, key: str, failed: str) -> None:
        lane = self._lane(self.lock_keys, key)
        agent, effect = event.agent, event.effect
        holders = self.holders.setdefault(key, {})
        call = _lock_call(event)
        others = sorted(set(holders) - {agent})
        if failed:
            self._row(event, RowKind.ARROW, agent, lane, f"{call}: {failed}", tone=Tone.MUTED)
            return
        if isinstance(effect, Unlink | Rmdir) and others:
            holders.clear()
            label = f"{call}: breaks {', '.join(others)}'s lock"
            self._row(event, RowKind.ARROW, agent, lane, label, tone=Tone.BAD)
            return
        if isinstance(effect, Unlink | Rmdir) or _lock_op(event) is LockOp.UNLOCK:
            holders.pop(agent, None)
            self._row(event, RowKind.ARROW, agent, lane, call, tone=Tone.MUTED)
            return
        shared = _lock_op(event) is LockOp.SHARED
        holders[agent] = call
        if others and not shared:
            label = f"{call}: granted while {', '.join(others)} holds it"
            self._row(event, RowKind.ARROW, agent, lane, label, tone=Tone.BAD)
        else:
            self._row(event, RowKind.ARROW, agent, lane, f"{call}: acquired")


def _lock_op(event: HistoryEvent) -> LockOp | None:
    match event.effect:
        case Flock(_, op) | Lockf(_, op) | Mutex(_, op) | LockFileEx(_, op):
            return op
        case MsvcrtLocking(_, mode):
            return LockOp.UNLOCK if "UNLCK" in (mode.name or "") else LockOp.EXCLUSIVE
    return None


def _lock_call(event: HistoryEvent) -> str:
    """The lock call as a reader knows it: ``flock exclusive``, ``unlink``..."""
    effect = event.effect
    op = _lock_op(event)
    names = {Flock: "flock", Lockf: "lockf", LockFileEx: "LockFileEx", Mutex: "mutex"}
    for cls, name in names.items():
        if isinstance(effect, cls):
            return f"{name} {op.value}" if op is not None else name
    if isinstance(effect, MsvcrtLocking):
        return f"msvcrt.locking {effect.mode.name}"
    if isinstance(effect, CreateExclusive):
        return "create-exclusive"
    return type(effect).__name__.lower()


def _form(body: str) -> dict[str, str]:
    """A token request's fields, form-encoded or JSON."""
    try:
        payload = json.loads(body)
    except ValueError:
        return {key: values[0] for key, values in urllib.parse.parse_qs(body).items()}
    return {str(k): str(v) for k, v in payload.items()} if isinstance(payload, dict) else {}
