"""Faults a schedule can inject, and where each may strike.

A fault is part of the schedule, written after the agent it strikes:
``atlas!drop`` delivers no response to Atlas's request (the server already
committed it), ``nova!kill`` kills Nova's process before its next effect.
The kernel offers each fault only where it means something, and only while
the world's fault budget lasts.
"""

from __future__ import annotations

import enum


class FaultKind(enum.Enum):
    KILL = "kill"  # kill the agent's process (all its agents); it restarts later
    DROP = "drop"  # the server committed the request; the response never arrives
    SERVER_ERROR = "5xx"  # the server answers 503 without looking at the request
    RATE_LIMIT = "429"  # the server answers 429 without looking at the request
    RESET = "reset"  # the connection resets before the server sees the request
    STALL = "stall"  # the agent stops for a while (GC pause, swapped out, slow disk)
    CRASH = "crash"  # the machine loses power: every process dies, unsynced data is lost

    @classmethod
    def parse(cls, text: str) -> FaultKind:
        for kind in cls:
            if kind.value == text:
                return kind
        known = ", ".join(kind.value for kind in cls)
        raise ValueError(f"unknown fault {text!r}: known faults are {known}")

    @property
    def kills(self) -> bool:
        """Whether the fault ends processes: what they held in memory is gone."""
        return self in (FaultKind.KILL, FaultKind.CRASH)


#: Faults that strike a request before the server sees it.
REQUEST_FAULTS = (FaultKind.SERVER_ERROR, FaultKind.RATE_LIMIT, FaultKind.RESET)
