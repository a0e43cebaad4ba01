"""Engines in any language: ``tokenrace check --command "…"``.

The harness serves the real fake server on loopback, holds every refresh
request at its door, and starts the program once per agent with these
environment variables:

=======================  ==============================================
``TOKENRACE_TOKEN_URL``  the agent's own token endpoint (POST, form or JSON body)
``TOKENRACE_STORE``      the shared credential store (``auth-profiles.json``)
``TOKENRACE_STATE_DIR``  a shared directory for locks
``TOKENRACE_AGENT_DIR``  this agent's own directory
``TOKENRACE_AGENT``      this agent's name; send it as ``client_id``
``TOKENRACE_CLIENT_ID``  the same name, for convenience
``TOKENRACE_PROVIDER``   the provider (``openai-codex``)
``TOKENRACE_PROFILE``    the profile id (``default``); the store key is
                         ``PROVIDER:PROFILE``
=======================  ==============================================

The store holds ``{"profiles": {"openai-codex:default": {"access", "refresh",
"expires"}}}`` with ``expires`` in epoch seconds, expired at the start so every
agent wants a refresh.  The program prints the access token it obtained on
stdout and exits 0, or exits 3 when it needs a new login; anything else is an
engine error.  The harness lets held requests through in an order the
strategy picks (every order of the agents, for a few agents; seeded random
orders beyond), optionally SIGKILLs the agent whose request is held first
and starts it again, and judges each run by the server's audit log, the exit
statuses and the tokens printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import random
import shlex
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from fake_oauth_server import (
    TOKEN_PATH,
    AuditKind,
    AuthServer,
    ControlClient,
    RunningServer,
    TokenKind,
    agent_path,
    fingerprint,
    redact,
    serve_in_thread,
)

from ._campaign import CampaignResult, EngineResult, Verdict
from ._checker import Anomaly, AnomalyKind, Severity
from ._engines import Expectation
from ._errors import EXIT_FAILED, EXIT_OK, ConformanceError
from ._report import write_report
from ._validate import command_argv

EXIT_RELOGIN = 3
#: how long the harness waits for more requests once every program has been seen at the door
QUIET = 0.3
PROVIDER, PROFILE = "openai-codex", "default"


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


def run_command(
    command: str,
    order: tuple[str, ...],
    *,
    policy: str = "openai",
    kill_first: bool = False,
    timeout: float = 30.0,
    settle: float = 2.0,
    mirrored: bool = False,
) -> CommandRun:
    """Start the program once per agent and let their refreshes through in ``order``.

    Before each release the harness gathers what can arrive (``_gather``):
    ``settle`` bounds the wait for an agent that has not reached the door yet.
    """
    argv = command_argv(command)  # POSIX: words as a shell splits them; Windows: the line
    log: list[str] = []
    with serve_in_thread(policy) as running, tempfile.TemporaryDirectory() as root:
        control = running.control
        pair = control.seed_grant(user="user", client_id="tokenrace")
        store = _seed_store(Path(root), pair.access_token, pair.refresh_token)
        if mirrored:  # every agent dir holds a copy of main, as OpenClaw's docs said
            for agent in order:
                copy = Path(root) / "agents" / agent / "agent" / store.name
                copy.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as handle:  # credential files are born 0600
                    handle.write(store.read_bytes())
        control.hold(True)
        processes = {
            agent: _start(argv, agent, Path(root), store, _token_url(running, agent))
            for agent in order
        }
        killed = ""
        released = 0
        arrived: set[str] = set()  # ids of every request seen at the door
        stuck: list[str] = []
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in processes.values()):
            if time.monotonic() > deadline:
                stuck = [agent for agent, p in processes.items() if p.poll() is None]
                for agent in stuck:
                    processes[agent].kill()  # reaped by _finish below
                log.append(f"{', '.join(stuck)} still running after {timeout:g}s: killed")
                break
            held = control.held(at_least=1, timeout=QUIET)
            if not held:
                continue
            arrived.update(h["id"] for h in held)
            live = sum(1 for p in processes.values() if p.poll() is None)
            # a program that has not reached the door yet may be starting slowly
            window = settle if len(arrived) < len(processes) else QUIET
            held = _gather(control, held, live, window, arrived)
            ranked = sorted(held, key=lambda h: _rank(order, h.get("client_id", "")))
            first = ranked[0]
            agent = first.get("client_id", "")
            if kill_first and not killed and agent in processes:
                killed = agent
                processes[agent].kill()
                processes[agent].communicate()  # reap it and close its pipes
                log.append(f"SIGKILL {agent} while {first['token_fp']} was held; restarting it")
                processes[agent] = _start(
                    argv, agent, Path(root), store, _token_url(running, agent)
                )
            released += 1
            status = control.release(first["id"], wait=True)
            log.append(f"release #{released}: {agent} {first['token_fp']} -> {status}")
        control.hold(False)
        outputs = {agent: _finish(process) for agent, process in processes.items()}
        now = control.now()
        anomalies = _judge(running.server, outputs, now, stuck)
        if (
            killed
            and not running.server.policy.grace
            and _killed_request_committed(running.server, killed)
        ):
            anomalies = tuple(_unavoidable(anomaly, killed) for anomaly in anomalies)
        for record in running.server.audit:
            reason = f" ({record.reason})" if record.reason else ""
            log.append(
                f"audit {record.request_id} {record.kind.value} {record.token_kind.value} "
                f"{record.token_fp} {record.family}/g{record.generation}{reason}"
            )
    for agent, (code, out, err) in outputs.items():
        token = fingerprint(out.strip()) if out.strip() else "-"
        log.append(f"{agent} exited {code}, printed {token}; stderr: {redact(err.strip())[:200]}")
    return CommandRun(
        order=order,
        killed=killed,
        exit_codes=tuple((agent, code) for agent, (code, _, _) in outputs.items()),
        anomalies=anomalies,
        log="\n".join(log) + "\n",
    )


def _gather(
    control: ControlClient,
    held: list[dict[str, Any]],
    live: int,
    window: float,
    arrived: set[str],
) -> list[dict[str, Any]]:
    """The held requests once every live program waits at the door, or none came for ``window`` s.

    This is what forces the overlap a race needs: programs without mutual
    exclusion all arrive with the same token and are held together, however
    slowly they start.  A program kept out by a lock never arrives, and costs
    one ``window`` of waiting; nothing tells the two apart from outside.
    """
    while len(held) < live:
        more = control.held(at_least=len(held) + 1, timeout=window)
        arrived.update(h["id"] for h in more)
        if len(more) <= len(held):
            break
        held = more
    return held


def _killed_request_committed(server: AuthServer, agent: str) -> bool:
    """Did the server accept a refresh from the agent that was killed (nobody got the answer)?"""
    return any(
        record.kind is AuditKind.ACCEPTED and record.client_id == agent
        for record in server.audit
        if record.token_kind is TokenKind.REFRESH
    )


def _unavoidable(anomaly: Anomaly, killed: str) -> Anomaly:
    if anomaly.kind is AnomalyKind.DEADLOCK:
        return anomaly
    return dataclasses.replace(
        anomaly,
        severity=Severity.WARNING,
        message=anomaly.message + f" (unavoidable: {killed} was killed after sending a refresh "
        "the server committed, and the policy has no reuse window)",
    )


def _token_url(running: RunningServer, agent: str) -> str:
    """The agent's own token endpoint: held requests and the audit name it, whatever it sends.

    A name that cannot be a path segment shares the plain endpoint (its client_id names it).
    """
    try:
        return running.base_url + agent_path(agent, TOKEN_PATH)
    except ValueError:
        return running.token_url


def _rank(order: tuple[str, ...], agent: str) -> int:
    return order.index(agent) if agent in order else len(order)


def _seed_store(root: Path, access: str, refresh: str) -> Path:
    main = root / "agents" / "main" / "agent"
    main.mkdir(parents=True)
    (root / "locks").mkdir()
    store = main / "auth-profiles.json"
    document = {
        "version": 1,
        "profiles": {
            f"{PROVIDER}:{PROFILE}": {
                "type": "oauth",
                "provider": PROVIDER,
                "access": access,
                "refresh": refresh,
                "expires": time.time() - 1,  # expired: every agent wants a refresh
            }
        },
    }
    fd = os.open(store, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle)
    return store


def _start(
    argv: str | list[str], agent: str, root: Path, store: Path, token_url: str
) -> subprocess.Popen[str]:
    agent_dir = root / "agents" / agent / "agent"
    agent_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "TOKENRACE_TOKEN_URL": token_url,
        "TOKENRACE_STORE": str(store),
        "TOKENRACE_STATE_DIR": str(root),
        "TOKENRACE_AGENT_DIR": str(agent_dir),
        "TOKENRACE_AGENT": agent,
        "TOKENRACE_CLIENT_ID": agent,
        "TOKENRACE_PROVIDER": PROVIDER,
        "TOKENRACE_PROFILE": PROFILE,
    }
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=10)
    return process.returncode, out, err


def _judge(
    server: AuthServer, outputs: dict[str, tuple[int, str, str]], now: float, stuck: list[str]
) -> tuple[Anomaly, ...]:
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


def check_command(args: argparse.Namespace, console: Console) -> int:
    """``tokenrace check --command``: run the program in each release order, judge each run."""
    command_argv(args.command)  # an empty command, an unclosed quote, no such program
    agents = [name.strip() for name in args.agents.split(",") if name.strip()]
    if len(set(agents)) != len(agents) or not agents:
        raise ConformanceError(f"--agents {args.agents!r}: give distinct names, comma-separated")
    if args.order:
        picked = [tuple(name.strip() for name in args.order.split(",") if name.strip())]
        if not picked[0] or len(set(picked[0])) != len(picked[0]):
            raise ConformanceError(f"--order {args.order!r}: give distinct agent names")
        if sorted(picked[0]) != sorted(agents):
            agents = list(picked[0])
    else:
        picked = orders(agents, args.orders, seed=args.seed or 0)
    variants = [
        (order, kill) for order in picked for kill in ((False, True) if args.kill else (False,))
    ]
    console.print(f"tokenrace check --command {args.command!r}: {len(variants)} runs")
    started = time.perf_counter()
    failing: CommandRun | None = None
    for order, kill in variants:
        run = run_command(
            args.command,
            order,
            policy=args.policy,
            kill_first=kill,
            timeout=args.timeout,
            settle=args.settle,
            mirrored=args.layout == "mirrored",
        )
        verdict = "[red]FAILED[/]" if run.failed else "[green]ok[/]"
        console.print(f"  {verdict} {run.describe()}", soft_wrap=True)
        if run.failed:
            failing = failing or run
            for anomaly in run.anomalies:
                console.print(f"      {anomaly}", markup=False, soft_wrap=True)
    if failing is not None:
        replay = (
            f"tokenrace check --command {shlex.quote(args.command)} "
            f"--order {','.join(failing.order)}" + (" --kill" if failing.killed else "")
        )
        for option, value, default in (
            ("--layout", args.layout, "shared"),
            ("--policy", args.policy, "openai"),
            ("--timeout", args.timeout, 30.0),
            ("--settle", args.settle, 2.0),
        ):
            if value != default:  # the run's own settings, so the line runs the same thing
                replay += f" {option} {shlex.quote(str(value))}"
        console.print("  to run the failing order again:")
        console.print(f"      {replay}", markup=False, soft_wrap=True)
    result = EngineResult(
        engine=args.command,
        summary="a program started once per agent",
        expectation=Expectation.CLEAN,
        verdict=Verdict.REPRODUCED if failing else Verdict.NOT_FOUND,
        anomalies=failing.anomalies if failing else (),
        schedule=None,
        preemptions=0,
        examples=len(variants),
        first_failure_at=None,
        time_to_first_failure=None,
        elapsed=time.perf_counter() - started,
        history=failing.log if failing else "",
        bound=f"{len(variants)} runs: release orders of {', '.join(agents)}"
        + (", with and without a kill" if args.kill else ""),
        scenario="command",
    )
    write_report(CampaignResult((result,), result.elapsed), args.report_dir)
    return EXIT_FAILED if failing else EXIT_OK
