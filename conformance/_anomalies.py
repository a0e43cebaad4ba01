"""What the checker reports: an anomaly's kind, its severity, and the steps that show it."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class AnomalyKind(enum.Enum):
    REFRESH_TOKEN_REUSE = "refresh-token-reuse"  # a spent refresh token was presented again
    FAMILY_REVOKED = "family-revoked"  # the server revoked the whole grant over a reuse
    AGENT_STRANDED = "agent-stranded"  # an agent ended needing a new login
    ENGINE_ERROR = "engine-error"  # the engine raised something other than ReloginRequired
    LOST_UPDATE = "lost-update"  # a store went back to an older generation (or was wiped)
    TORN_READ = "torn-read"  # a reader parsed a store that does not parse (a prefix, or empty)
    TOKEN_LOST = "token-lost"  # the server issued a refresh token no store ever held
    AVOIDABLE_LOSS = "avoidable-loss"  # a lost token was on disk (a staged file) and not used
    EXPIRED_TOKEN_USED = "expired-token-used"  # the engine handed out an expired access token
    TOKEN_REJECTED = "token-rejected"  # the resource endpoint refused a token (revoked...)
    REDUNDANT_REFRESH = "redundant-refresh"  # more than one refresh for one expiry
    MUTUAL_EXCLUSION = "mutual-exclusion"  # two agents held one lock at once (see _exclusion)
    SERVER_FAULT = "server-fault"  # a server fault ended a turn, and the engine said so
    IO_FAULT = "io-fault"  # an injected I/O error ended a turn, and the engine said so
    LOCK_TIMEOUT = "lock-timeout"  # a lock a held-up agent kept timed out, and the engine said so
    OVERLAPPING_REFRESH = "overlapping-refresh"  # refreshes of two agents in flight at once
    DEADLOCK = "deadlock"  # agents wait and nothing can wake them
    LIVELOCK = "livelock"  # the run hit its step bound without finishing


#: Exceptions that are a bug in the engine's own code, whatever the server or disk did:
#: a turn they end is never excused by a fault.
PROGRAMMING_ERRORS = frozenset(
    {
        "AssertionError",
        "AttributeError",
        "IndexError",
        "KeyError",
        "NameError",
        "NotImplementedError",
        "RecursionError",
        "TypeError",
        "UnboundLocalError",
        "ZeroDivisionError",
    }
)


class Severity(enum.Enum):
    FATAL = "fatal"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One thing that went wrong.  ``family`` and ``generation`` say which grant and
    which token of it the anomaly is about, where there is one: a fault's loss
    excuses only what follows from it in the same grant (see ``_losses``)."""

    kind: AnomalyKind
    severity: Severity
    agent: str
    steps: tuple[int, ...]
    message: str  # tokens appear as fingerprints only
    family: str = ""
    generation: int | None = None

    def __str__(self) -> str:
        steps = ", ".join(str(step) for step in self.steps)
        where = f" at step {steps}" if steps else ""
        return f"{self.kind.value} ({self.severity.value}){where}: {self.message}"


def fatal(anomalies: Iterable[Anomaly]) -> list[Anomaly]:
    return [anomaly for anomaly in anomalies if anomaly.severity is Severity.FATAL]
