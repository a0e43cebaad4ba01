"""What a black-box run means: the verdict of the server's audit, the exit statuses and the stores.

Shared by ``check --command`` and client scenarios, which are one harness
(``_client_run``): a run is a ``CommandRun``, judged here.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Mapping
from dataclasses import dataclass

from fake_oauth_server import AuditKind, AuthServer, TokenKind, redact

from ._checker import Anomaly, AnomalyKind, Severity

#: The exit status of a program that needs a new login (the ``check --command`` protocol).
EXIT_RELOGIN = 3


@dataclass(frozen=True, slots=True)
class CommandRun:
    """One run of the program: the release order, what happened, what it means."""

    order: tuple[str, ...]
    killed: str  # the agent killed while its request was held, "" for none
    exit_codes: tuple[tuple[str, int], ...]
    anomalies: tuple[Anomaly, ...]
    log: str  # what the harness saw, tokens fingerprinted

    @property
    def failed(self) -> bool:
        return any(anomaly.severity is Severity.FATAL for anomaly in self.anomalies)

    def describe(self) -> str:
        kill = f", killing {self.killed} while its request was held" if self.killed else ""
        return f"releasing refreshes in the order {', '.join(self.order)}{kill}"


def orders(agents: list[str], count: int, seed: int) -> list[tuple[str, ...]]:
    """Every order of the agents when there are few, else ``count`` seeded random ones."""
    every = list(itertools.permutations(agents))
    if len(every) <= count:
        return every
    if len(agents) <= 6:
        random.Random(seed).shuffle(every)
        return every[:count]
    rng = random.Random(seed)  # too many to list: sample (repeats are possible, and harmless)
    return [tuple(rng.sample(agents, len(agents))) for _ in range(count)]


def killed_request_committed(server: AuthServer, agent: str) -> bool:
    """Did the server accept a refresh from the agent that was killed (nobody got the answer)?"""
    return any(
        record.kind is AuditKind.ACCEPTED and record.client_id == agent
        for record in server.audit
        if record.token_kind is TokenKind.REFRESH
    )


def unavoidable(anomaly: Anomaly, killed: str, cause: str = "") -> Anomaly:
    """A consequence of a kill the server committed (or of ``cause``: a dropped response),
    under a policy without a reuse window."""
    if anomaly.kind is AnomalyKind.DEADLOCK or anomaly.severity is Severity.WARNING:
        return anomaly
    cause = cause or f"{killed} was killed after sending a refresh the server committed"
    return dataclasses.replace(
        anomaly,
        severity=Severity.WARNING,
        message=anomaly.message + f" (unavoidable: {cause}, and the policy has no reuse window)",
    )


def judge(
    server: AuthServer,
    outputs: dict[str, tuple[int, str, str]],
    now: float,
    stuck: list[str],
    faulted: Mapping[str, str] | None = None,
) -> tuple[Anomaly, ...]:
    """Anomalies of a run from the audit and each agent's (exit status, stdout, stderr).

    A stdout is judged only when the program prints its token there (the
    ``check --command`` protocol); a client's outputs come with stdout "".
    ``faulted`` says, per agent, how the server failed it ("after a 5xx fault ...
    injected into its refresh"): such an agent's error exit is the server's failure,
    reported (a ``server-fault`` warning); an exit asking for a new login after a
    transient failure is still fatal.
    """
    faulted = faulted or {}
    found: list[Anomaly] = []
    if stuck:
        found.append(
            Anomaly(
                AnomalyKind.DEADLOCK,
                Severity.FATAL,
                stuck[0],
                (),
                f"{', '.join(stuck)} never finished: waiting for a lock nobody holds?",
            )
        )
    for record in server.audit:
        refresh = record.token_kind is TokenKind.REFRESH
        if record.kind is AuditKind.REJECTED and refresh and record.reason == "reused":
            found.append(
                Anomaly(
                    AnomalyKind.REFRESH_TOKEN_REUSE,
                    Severity.FATAL,
                    record.client_id,
                    (),
                    f"{record.client_id} presented {record.token_fp} "
                    f"({record.family}/g{record.generation}) already rotated",
                )
            )
    for agent, (code, out, err) in outputs.items():
        if agent in stuck:
            continue
        if code == EXIT_RELOGIN:
            found.append(
                Anomaly(
                    AnomalyKind.AGENT_STRANDED,
                    Severity.FATAL,
                    agent,
                    (),
                    f"{agent} exited {EXIT_RELOGIN}: it needs a new login",
                )
            )
        elif code != 0 and agent in faulted:
            found.append(
                Anomaly(
                    AnomalyKind.SERVER_FAULT,
                    Severity.WARNING,
                    agent,
                    (),
                    f"{agent} exited {code} {faulted[agent]}: the server's failure, reported: "
                    f"{redact(err.strip())[:200]}",
                )
            )
        elif code != 0:
            found.append(
                Anomaly(
                    AnomalyKind.ENGINE_ERROR,
                    Severity.FATAL,
                    agent,
                    (),
                    f"{agent} exited {code}: {redact(err.strip())[:200]}",
                )
            )
        elif out.strip():
            check = server.check_access(out.strip().splitlines()[-1], now)
            if not check.ok:
                found.append(
                    Anomaly(
                        AnomalyKind.TOKEN_REJECTED,
                        Severity.FATAL,
                        agent,
                        (),
                        f"{agent} printed a token the server refuses ({check.reason})",
                    )
                )
    return tuple(found)
