"""The command line of real clients: ``tokenrace clients`` and ``reproduce`` of a client file."""

from __future__ import annotations

import argparse
import shlex
import time
from typing import Any

from rich.console import Console
from rich.markup import escape

from ._campaign import CampaignResult, EngineResult, Verdict, invoked_as
from ._checker import Severity
from ._client_oracle import orders
from ._client_run import ClientRun, resolve_program, run_client
from ._client_scenarios import ClientScenario, is_client_scenario, load_client_scenario
from ._clients import CLIENTS, cache_dir, find_program, install
from ._engines import Expectation
from ._errors import EXIT_FAILED, EXIT_OK, ConformanceError
from ._report import write_report

__all__ = ["add_clients_parser", "client_subcommand", "reproduce_client", "run_clients"]


def add_clients_parser(commands: Any, reproduce: argparse.ArgumentParser) -> None:
    """``tokenrace clients``, and the options ``reproduce`` takes for a client scenario."""
    reproduce.add_argument("--order", help="a client scenario: exactly this release order")
    reproduce.add_argument("--kill", metavar="AGENT", help="a client scenario: SIGKILL this agent")
    clients = commands.add_parser(
        "clients", help="install the pinned real clients client scenarios run (npm registry)"
    )
    actions = clients.add_subparsers(dest="clients_action", metavar="ACTION", required=True)
    setup = actions.add_parser("install", help="fetch the pinned clients into the cache")
    setup.add_argument(
        "--client",
        action="append",
        dest="clients",
        choices=sorted(CLIENTS),
        help="only this client (repeatable; default: all)",
    )
    actions.add_parser("list", help="the pinned clients and whether each is installed")


def client_subcommand(args: argparse.Namespace, console: Console) -> int | None:
    """Run what concerns real clients; ``None`` when the command is another's."""
    if args.subcommand == "clients":
        return run_clients(args, console)
    if args.subcommand != "reproduce":
        return None
    if is_client_scenario(args.file):
        if args.engine or args.examples:
            raise ConformanceError("--engine and --examples apply to model scenarios, not clients")
        return reproduce_client(args, console)
    if args.order or args.kill:
        raise ConformanceError("--order and --kill apply to client scenarios ([client] table)")
    return None


def run_clients(args: argparse.Namespace, console: Console) -> int:
    if args.clients_action == "install":
        console.print(f"client cache: {cache_dir()}")
        install(args.clients, say=lambda line: console.print(line, markup=False, soft_wrap=True))
        return EXIT_OK
    for key in sorted(CLIENTS):
        found = find_program(CLIENTS[key])
        console.print(f"{key}: {found or 'not installed'}", markup=False, soft_wrap=True)
    return EXIT_OK


def reproduce_client(args: argparse.Namespace, console: Console) -> int:
    """``tokenrace reproduce`` of a client scenario: real processes, a verdict per order."""
    scenario = load_client_scenario(args.file)
    picked = [_order(args.order, scenario)] if args.order else _orders(scenario)
    if args.kill and args.kill not in scenario.agents:
        raise ConformanceError(f"--kill {args.kill}: not an agent of this scenario")
    executable = resolve_program(scenario)  # a missing client: one line, exit 2
    source = f"  ({scenario.source})" if scenario.source else ""
    console.print(f"[bold]{escape(scenario.title or scenario.name)}[/]{escape(source)}")
    started = time.perf_counter()
    runs: list[ClientRun] = []
    for order in picked:
        run = run_client(scenario, order, kill=args.kill or "", executable=executable)
        runs.append(run)
        if len(runs) == 1:
            console.print(f"  {run.isolation}", markup=False)
        verdict = "[red]REPRODUCED[/]" if run.run.failed else "[green]clean[/]"
        console.print(f"  {verdict} {run.run.describe()}", soft_wrap=True)
        if not run.run.killed and run.released != order[: len(run.released)]:  # a lock chose
            came = ", ".join(run.released)
            console.print(f"    (let through as they reached the endpoint: {came})", markup=False)
        for anomaly in run.run.anomalies:
            console.print(f"      {anomaly}", markup=False, soft_wrap=True)
    elapsed = time.perf_counter() - started
    failing_client = next((run for run in runs if run.run.failed), None)
    failing = failing_client.run if failing_client is not None else None
    shown = failing or runs[-1].run
    diagram = (failing_client or runs[-1]).diagram
    again = (
        f"{invoked_as()} reproduce {shlex.quote(str(args.file))} --order {','.join(shown.order)}"
    )
    if shown.killed:
        again += f" --kill {shown.killed}"
    console.print("  to run this order again:")
    console.print(f"      {again}", markup=False, soft_wrap=True)
    met = _met(scenario, failing is not None, shown)
    expected = "reproduced" if scenario.reproduces else "clean"
    if scenario.anomaly is not None and scenario.reproduces:
        expected += f" with {scenario.anomaly.value}"
    console.print(
        f"  expected {expected}: {'[green]met[/]' if met else '[bold red]NOT met[/]'} "
        f"({len(runs)} run{'s' if len(runs) != 1 else ''}, {elapsed:.1f}s)"
    )
    result = EngineResult(
        engine=scenario.program,
        summary=f"{scenario.program} {' '.join(scenario.args)}, {_how(scenario)}",
        expectation=Expectation.BUGGY if scenario.reproduces else Expectation.CLEAN,
        verdict=Verdict.REPRODUCED if failing else Verdict.NOT_FOUND,
        anomalies=shown.anomalies if failing else (),
        schedule=None,
        preemptions=0,
        examples=len(runs),
        first_failure_at=None,
        time_to_first_failure=None,
        elapsed=elapsed,
        history=shown.log,
        bound=f"{len(runs)} release orders of {', '.join(scenario.agents)} on real processes",
        scenario=str(args.file),
        title=scenario.title,
        diagram=diagram,
    )
    write_report(CampaignResult((result,), elapsed), args.report_dir)
    return EXIT_OK if met else EXIT_FAILED


def _how(scenario: ClientScenario) -> str:
    if scenario.gateway is None:
        return "once per agent"
    return f"once for every agent, each prompted with POST {scenario.gateway.trigger}"


def _met(scenario: ClientScenario, reproduced: bool, shown: Any) -> bool:
    if not scenario.reproduces:
        return not reproduced
    if not reproduced:
        return False
    if scenario.anomaly is None:
        return True
    return any(
        anomaly.kind is scenario.anomaly and anomaly.severity is Severity.FATAL
        for anomaly in shown.anomalies
    )


def _order(text: str, scenario: ClientScenario) -> tuple[str, ...]:
    order = tuple(name.strip() for name in text.split(",") if name.strip())
    if sorted(order) != sorted(scenario.agents):
        raise ConformanceError(
            f"--order {text}: must name each agent once ({', '.join(scenario.agents)})"
        )
    return order


def _orders(scenario: ClientScenario) -> list[tuple[str, ...]]:
    if scenario.orders == 1:
        return [scenario.agents]  # the file's own order first: what the report describes
    return orders(list(scenario.agents), scenario.orders, scenario.seed)
