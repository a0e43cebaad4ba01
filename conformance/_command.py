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
orders beyond), optionally SIGKILLs the agent whose request is let through
first and starts it again, and judges each run by the server's audit log,
the exit statuses, the tokens printed and the token the store ends holding.

It is the harness of real clients (``_client_run``) with a client scenario
built from the options: ``StoreFormat.TOKENRACE`` seeds the store and sets
the variables above, the caller's environment and working directory are
kept, and ``settle`` is the release rule (below ``_client_run``'s doc).
"""

from __future__ import annotations

import argparse
import os
import shlex
import time

from rich.console import Console

from ._campaign import CampaignResult, EngineResult, Verdict, invoked_as
from ._client_oracle import EXIT_RELOGIN, CommandRun, orders
from ._client_run import KILL_FIRST, ClientRun, run_client
from ._client_scenarios import ClientScenario, StoreFormat
from ._engines import Expectation
from ._errors import EXIT_FAILED, EXIT_OK
from ._release_faults import ReleaseFault
from ._report import write_report
from ._validate import agent_names, command_argv, hold_seconds, release_fault

__all__ = ["EXIT_RELOGIN", "add_fault_options", "check_command", "command_scenario", "run_command"]


def command_scenario(
    command: str,
    agents: tuple[str, ...],
    *,
    policy: str = "openai",
    timeout: float = 30.0,
    settle: float = 2.0,
    mirrored: bool = False,
    faults: tuple[ReleaseFault, ...] = (),
    hold: float = 0.0,
) -> ClientScenario:
    """The client scenario ``check --command`` runs: the protocol above, the caller's world."""
    words = command_argv(command)  # an empty command, an unclosed quote, no such program
    if isinstance(words, str):  # Windows: the words, quotes dropped, re-joined by Popen
        words = [word.strip('"') for word in shlex.split(words, posix=False)]
    literal = [word.replace("{", "{{").replace("}", "}}") for word in words]  # no templates
    return ClientScenario(
        name="command",
        title=f"check --command {command}",
        source="",
        program=literal[0],
        args=tuple(literal[1:]),
        env=(),
        store=StoreFormat.TOKENRACE,
        agents=agents,
        policy=policy,
        reproduces=False,
        anomaly=None,
        orders=1,
        seed=0,
        timeout=timeout,
        arrival=timeout,
        mirrored=mirrored,
        settle=settle,
        stdout_token=True,
        inherit_env=True,
        cwd=os.getcwd().replace("{", "{{").replace("}", "}}"),
        faults=faults,
        hold=hold,
    )


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
    """Start the program once per agent and let their refreshes through in ``order``."""
    scenario = command_scenario(
        command, order, policy=policy, timeout=timeout, settle=settle, mirrored=mirrored
    )
    return run_client(scenario, order, kill=KILL_FIRST if kill_first else "").run


def add_fault_options(chk: argparse.ArgumentParser) -> None:
    """``check --command --fault``, ``--hold``: see ``_release_faults``."""
    chk.add_argument(
        "--fault",
        type=release_fault,
        action="append",
        default=[],
        metavar="KIND@N",
        help="--command: a server fault on the Nth released refresh: 5xx@1, 429:30@2, "
        "reset@1, drop@1 (repeatable; docs/clients.md)",
    )
    chk.add_argument(
        "--hold",
        type=hold_seconds,
        default=0.0,
        metavar="SECONDS",
        help="--command: hold each refresh this long at the door before releasing it "
        "(0-120; default 0), so another agent's lock-wait timeout can run out",
    )


def check_command(args: argparse.Namespace, console: Console) -> int:
    """``tokenrace check --command``: run the program in each release order, judge each run."""
    command_argv(args.command)  # an empty command, an unclosed quote, no such program
    agents = agent_names(args.agents, "--agents")
    if args.order:
        picked = [agent_names(args.order, "--order")]
        agents = picked[0]  # the order names the agents
    else:
        picked = orders(list(agents), args.orders, seed=args.seed or 0)
    variants = [
        (order, kill) for order in picked for kill in ((False, True) if args.kill else (False,))
    ]
    console.print(f"tokenrace check --command {args.command!r}: {len(variants)} runs")
    started = time.perf_counter()
    failing: CommandRun | None = None
    faulted: CommandRun | None = None  # with --fault/--hold, nothing failing: the first run
    drawn: ClientRun | None = None  # the run the report draws: the first failing, else the last
    for number, (order, kill) in enumerate(variants):
        scenario = command_scenario(
            args.command,
            order,
            policy=args.policy,
            timeout=args.timeout,
            settle=args.settle,
            mirrored=args.layout == "mirrored",
            faults=tuple(args.fault),
            hold=args.hold,
        )
        done = run_client(scenario, order, kill=KILL_FIRST if kill else "")
        run = done.run
        if failing is None:
            drawn = done
        if number == 0:
            console.print(f"  {done.isolation}", markup=False)
        verdict = "[red]FAILED[/]" if run.failed else "[green]ok[/]"
        console.print(f"  {verdict} {run.describe()}", soft_wrap=True)
        if run.failed:
            failing = failing or run
        elif args.fault or args.hold:
            faulted = faulted or run
        unused = [str(fault) for fault in args.fault if fault.release > len(done.released)]
        if unused:
            count = len(done.released)
            console.print(
                f"      fault {', '.join(unused)} never struck: {count} refreshes released"
            )
        if run.failed or args.fault or args.hold:  # what faults and holds did: warnings too
            for anomaly in run.anomalies:
                console.print(f"      {anomaly}", markup=False, soft_wrap=True)
    if failing is not None:
        replay = (
            f"{invoked_as()} check --command {shlex.quote(args.command)} "
            f"--order {','.join(failing.order)}" + (" --kill" if failing.killed else "")
        )
        for option, value, default in (
            ("--layout", args.layout, "shared"),
            ("--policy", args.policy, "openai"),
            ("--timeout", args.timeout, 30.0),
            ("--settle", args.settle, 2.0),
            ("--hold", args.hold, 0.0),
        ):
            if value != default:  # the run's own settings, so the line runs the same thing
                replay += f" {option} {shlex.quote(str(value))}"
        replay += "".join(f" --fault {fault}" for fault in args.fault)
        console.print("  to run the failing order again:")
        console.print(f"      {replay}", markup=False, soft_wrap=True)
    shown = failing or faulted
    result = EngineResult(
        engine=args.command,
        summary="a program started once per agent",
        expectation=Expectation.CLEAN,
        verdict=Verdict.REPRODUCED if failing else Verdict.NOT_FOUND,
        anomalies=shown.anomalies if shown else (),
        schedule=None,
        preemptions=0,
        examples=len(variants),
        first_failure_at=None,
        time_to_first_failure=None,
        elapsed=time.perf_counter() - started,
        history=shown.log if shown else "",
        bound=f"{len(variants)} runs: release orders of {', '.join(agents)}"
        + (", with and without a kill" if args.kill else ""),
        scenario="command",
        diagram=drawn.diagram if drawn is not None else None,
    )
    write_report(CampaignResult((result,), result.elapsed), args.report_dir)
    return EXIT_FAILED if failing else EXIT_OK
