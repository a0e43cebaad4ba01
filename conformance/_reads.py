"""Torn reads, judged on what an agent parsed rather than on each read call.

A reader that takes a file in 64-byte chunks (as a buffered reader does)
parses the bytes of all its reads together, so one chunk that is not JSON
on its own is no torn read.  The unit is a *read sequence*: the reads of one
open file description from offset 0 (an open, or a seek to 0) to the end of
the file, ended by a close, a seek, a write, the process's death, or the end
of the run.  A sequence that reached the end of the file and does not parse
is a torn read; one that stopped short is not judged, since the agent saw
only part of the file and what it made of that is its own business.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from refresh_engine import (
    Close,
    CreateExclusive,
    Open,
    Opened,
    Position,
    Read,
    ReadData,
    Seek,
    Truncate,
    Write,
)
from simulator import EventKind, HistoryEvent

from ._anomalies import Anomaly, AnomalyKind, Severity


@dataclass(slots=True)
class _ReadSequence:
    from_start: bool  # the first read was at offset 0
    steps: list[int] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    path: str = ""
    at_end: bool = False  # the last read reached the end of the file


def torn_reads(events: Iterable[HistoryEvent], stores: Sequence[str]) -> list[Anomaly]:
    """Each read sequence of a store that reached its end and does not parse."""
    watched = set(stores)
    open_reads: dict[tuple[str, int], _ReadSequence] = {}  # (agent, fd) -> its sequence
    found: list[Anomaly] = []

    def finish(agent: str, fd: int, then: _ReadSequence | None = None) -> None:
        sequence = open_reads.pop((agent, fd), None)
        if then is not None:
            open_reads[(agent, fd)] = then
        if sequence is not None and sequence.path in watched:
            found.extend(_judge(agent, sequence))

    for event in events:
        agent = event.agent
        if event.kind is EventKind.FAULT and event.killed:
            for owner, fd in [key for key in open_reads if key[0] == agent]:
                finish(owner, fd)
            continue
        if event.kind is not EventKind.EFFECT:
            continue
        match event.effect, event.outcome:
            case Open() | CreateExclusive(), Opened(fd):
                finish(agent, fd, _ReadSequence(from_start=True))
            case Read(fd, size), ReadData(data):
                sequence = open_reads.setdefault((agent, fd), _ReadSequence(from_start=False))
                sequence.steps.append(event.step)
                sequence.data += data
                sequence.path = sequence.path or event.path
                sequence.at_end = size is None or len(data) < size
            case Seek(fd), Position(offset):
                finish(agent, fd, _ReadSequence(from_start=offset == 0))
            case Write(fd) | Truncate(fd), _:
                finish(agent, fd, _ReadSequence(from_start=False))
            case Close(fd), _:
                finish(agent, fd)
    for agent, fd in list(open_reads):
        finish(agent, fd)
    return found


def _judge(agent: str, sequence: _ReadSequence) -> list[Anomaly]:
    if not (sequence.from_start and sequence.at_end and sequence.steps):
        return []
    try:
        json.loads(sequence.data)
    except ValueError:
        pass
    else:
        return []
    reads = len(sequence.steps)
    how = "in one read" if reads == 1 else f"in {reads} reads"
    steps = tuple(dict.fromkeys((sequence.steps[0], sequence.steps[-1])))
    return [
        Anomaly(
            AnomalyKind.TORN_READ,
            Severity.FATAL,
            agent,
            steps,
            f"{agent} read {len(sequence.data)} bytes of {sequence.path} {how} "
            "that do not parse (a write in progress)",
        )
    ]
