"""The ``tokenrace`` command's entry point: ``--help`` and ``--version`` at once.

The top level's help and ``--version`` need none of the simulator, so they are
answered here, from a table of the commands, before anything heavy is
imported; every other command line goes to ``_cli``.  A test holds this
help to the full parser's, word for word.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "DESCRIPTION", "Version", "main", "top_parser"]

DESCRIPTION = "Reproduce or rule out OAuth refresh-token reuse races, deterministically."

#: each command and its one-line help, in the order ``--help`` lists them
COMMANDS = (
    ("serve", "run the fake OAuth server on loopback (tokenrace serve --help)"),
    ("wine", "set up Wine for Windows processes (tokenrace wine --help)"),
    ("run", "the default campaign: every shipped scenario, its engine and the reference"),
    ("matrix", "engine x layout x lock x OS x agents/processes x policy x faults, a verdict each"),
    ("reproduce", "run a scenario file (a bug report) and print its verdict"),
    ("clients", "install the pinned real clients client scenarios run (npm registry)"),
    ("check", "check an engine against the battery and the shipped scenarios"),
    ("mutate", "run the default check battery on every mutant of the reference engine"),
    ("list", "the scenarios, engines, server presets, faults and locks a command takes"),
    ("replay", "replay one schedule and print its history"),
    ("merge-shards", "combine the shard files of a sharded exhaustive search into one verdict"),
)


class Version(argparse.Action):
    """``--version``: the installed package's version, read only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help=str(kwargs.get("help", "")))

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("tokenrace")
        except PackageNotFoundError:  # run from a checkout that was never installed
            number = "unknown (not installed)"
        print(f"tokenrace {number}")  # on stdout, as --help is
        parser.exit(0)


def top_parser() -> argparse.ArgumentParser:
    """The top level alone: what ``tokenrace --help`` shows."""
    parser = argparse.ArgumentParser(prog="tokenrace", description=DESCRIPTION)
    parser.add_argument("--version", action=Version, help="print the version and exit")
    commands = parser.add_subparsers(dest="subcommand", metavar="COMMAND")
    for name, meaning in COMMANDS:
        commands.add_parser(name, help=meaning, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"], ["--version"]):
        top_parser().parse_args(args[:1])  # prints, then exits 0
    from ._cli import main as full_main

    return full_main(args)
