"""``tokenrace list``: what ``--scenario``, ``--engine`` and the matrix's axes accept.

Every name printed is one a command takes as is, so a newcomer can pick from
the list rather than from the source.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fake_oauth_server import PRESETS, Policy
from refresh_engine import LockKind, LockScope
from simulator import FaultKind, OsModel, Strategy

from ._engines import BUILTIN_ENGINES
from ._errors import EXIT_OK
from ._scenario_files import builtin_scenarios, load_scenario_file
from ._scenarios import SCENARIOS

__all__ = ["KINDS", "list_command"]

KINDS = ("scenarios", "engines", "presets", "faults", "options")


def list_command(args: argparse.Namespace, console: Console) -> int:
    """Print one table per kind asked for (default: all)."""
    for kind in args.kinds or KINDS:
        table = Table(title=kind, title_justify="left", show_edge=False)
        table.add_column("name", no_wrap=True)
        table.add_column("what it is", overflow="fold")
        for name, meaning in _rows(kind):
            table.add_row(escape(name), escape(meaning))
        console.print(table)
    return EXIT_OK


def _rows(kind: str) -> list[tuple[str, str]]:
    if kind == "scenarios":
        shipped = [load_scenario_file(path) for path in builtin_scenarios()]
        rows = [(scenario.name, scenario.title) for scenario in shipped]
        named = {scenario.name for scenario in shipped}
        rows += [(name, _first_line(make)) for name, make in SCENARIOS.items() if name not in named]
        example = "a matrix cell, e.g. shared/linux/2xproc/openai/kill"
        rows.append(("LAYOUT/OS/NxPROC/POLICY/FAULT", example))
        return rows
    if kind == "engines":
        rows = [(name, entry.summary) for name, entry in BUILTIN_ENGINES.items()]
        rows.append(("module:attribute", "your own engine (the current directory is importable)"))
        rows.append(("reference[lock=K][scope=S]", "the reference with another lock kind or scope"))
        return rows
    if kind == "presets":
        return [(name, _preset(name)) for name in PRESETS]
    if kind == "faults":
        return [(kind_.value, _doc(kind_)) for kind_ in FaultKind] + [
            ("stall<seconds>", "the matrix's stall of that many seconds")
        ]
    return (
        [(f"lock={lock.value}", "lock kind") for lock in LockKind]
        + [(f"scope={scope.value}", "lock scope") for scope in LockScope]
        + [(f"os={os_model.value}", "OS model") for os_model in OsModel]
        + [(f"strategy={strategy.value}", "search strategy") for strategy in Strategy]
    )


def _first_line(thing: object) -> str:
    return (getattr(thing, "__doc__", None) or "").strip().split("\n")[0]


def _preset(name: str) -> str:
    policy = Policy.preset(name)
    reuse = "none" if policy.reuse_window is None else f"{policy.reuse_window:g} s"
    return f"access token lives {policy.access_token_lifetime:g} s, reuse window {reuse}"


def _doc(kind: FaultKind) -> str:
    return {
        FaultKind.KILL: "kill the agent's process; it restarts later",
        FaultKind.DROP: "the server commits the request; the response never arrives",
        FaultKind.SERVER_ERROR: "the server answers 503 without looking at the request",
        FaultKind.RATE_LIMIT: "the server answers 429 without looking at the request",
        FaultKind.RESET: "the connection resets before the server sees the request",
        FaultKind.STALL: "the agent stops for a while (GC pause, swapped out)",
        FaultKind.CRASH: "power loss: every process dies, unsynced data is lost",
        FaultKind.SLOW: "the server commits; its answer arrives only after the stall length",
        FaultKind.IO_ERROR: "the agent's next file call fails (ENOSPC, EIO, EROFS, ENOLCK)",
        FaultKind.DENIED: "the stores' directory stops being writable: EACCES from then on",
    }[kind]


def _kind(text: str) -> str:
    if text not in KINDS:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(KINDS)}")
    return text


def add_list_parser(commands: Any) -> None:
    lst = commands.add_parser(
        "list", help="the scenarios, engines, server presets, faults and locks a command takes"
    )
    lst.add_argument(
        "kinds",
        nargs="*",
        type=_kind,
        metavar="KIND",
        help=f"only these ({', '.join(KINDS)}; default: all)",
    )
