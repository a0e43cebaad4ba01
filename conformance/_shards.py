"""``--shard I/N``: one part of an exhaustive search, written to a shard file.

``run`` and ``check --engine`` take ``--shard I/N`` (with ``--strategy
exhaustive``), ``--split-depth D`` and ``--shard-output FILE``: every cell
searches only shard ``I``'s subtrees (``simulator.Shard``), and the cells'
results go to a JSON file that ``tokenrace merge-shards`` combines with the
other shards' into one verdict.  A shard alone never says ``ruled out``.

Shard file, version 1::

    {
      "schema": "tokenrace.shard/1",
      "shard": "I/N", "index": int, "count": int, "split_depth": int,
      "command": str,           # the subcommand that wrote it: run, check
      "cells": [{
        "scenario": str, "engine": str, "expected": "clean" | "buggy",
        "expected_anomaly": str | null, "budget": int,  # --examples: schedules at most
        "found": "reproduced" | "other anomaly" | "hang" | null,
        "complete": bool,       # every schedule of the shard's subtrees covered
        "schedules": int, "pruned": int, "subtrees": [own, all],
        "elapsed_s": float, "bound": str,
        "anomalies": [str],     # the fatal anomaly kinds of the failing run
        "schedule": str | null, "replay": str | null
      }]
    }
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from simulator import DEFAULT_SPLIT_DEPTH, Shard, Strategy, parse_shard

from ._campaign import CampaignResult, EngineResult, Verdict, invoked_as, replay_command
from ._checker import fatal
from ._engines import Expectation
from ._errors import EXIT_FAILED, EXIT_OK, ConformanceError
from ._matrix import Cell

__all__ = [
    "SHARD_SCHEMA",
    "add_shard_options",
    "shard_cells",
    "shard_of",
    "shard_mark",
    "shard_passed",
    "write_shard",
]

SHARD_SCHEMA = "tokenrace.shard/1"


def add_shard_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shard",
        metavar="I/N",
        help="with --strategy exhaustive: search only shard I of N (a deterministic part "
        "of every schedule), then combine the N shard files with tokenrace merge-shards",
    )
    parser.add_argument(
        "--split-depth",
        type=int,
        metavar="D",
        help="--shard: split the search into subtrees at D choices "
        f"(default {DEFAULT_SPLIT_DEPTH})",
    )
    parser.add_argument(
        "--shard-output",
        type=Path,
        metavar="FILE",
        help="--shard: the shard file to write (default tokenrace-shard-I-of-N.json)",
    )


def shard_of(args: argparse.Namespace) -> Shard | None:
    """The ``--shard`` asked for, checked against the other options; ``None`` without it."""
    if args.shard is None:
        if args.split_depth is not None:
            raise ConformanceError("--split-depth applies to --shard I/N")
        if args.shard_output is not None:
            raise ConformanceError("--shard-output applies to --shard I/N")
        return None
    if args.strategy is not Strategy.EXHAUSTIVE:
        raise ConformanceError("--shard splits an exhaustive search: add --strategy exhaustive")
    depth = DEFAULT_SPLIT_DEPTH if args.split_depth is None else args.split_depth
    if depth < 0:
        raise ConformanceError(f"--split-depth must be 0 or more, got {depth}")
    try:
        return parse_shard(args.shard, depth)
    except ValueError as exc:
        raise ConformanceError(f"--shard {exc}") from None


def shard_cells(cells: Sequence[Cell], shard: Shard | None) -> list[Cell]:
    """``cells`` each searching ``shard``'s part (unchanged without one)."""
    if shard is None:
        return list(cells)
    return [dataclasses.replace(cell, shard=shard) for cell in cells]


def shard_passed(campaign: CampaignResult) -> bool:
    """A shard holds when no clean engine was caught and nothing hung; a known bug that
    this shard's subtrees do not show (or show only by other anomalies) is for
    ``merge-shards`` to judge."""
    return all(_shard_ok(result) is not False for result in campaign.cells)


def _shard_ok(result: EngineResult) -> bool | None:
    """True: as expected; False: a failure already; None: for the merge to judge."""
    if result.passed:
        return True
    if result.expectation is Expectation.BUGGY and result.verdict is not Verdict.HANG:
        return None
    return False


def shard_mark(result: EngineResult, *, sharded: bool) -> str:
    """The ``ok`` column of a cell; a shard's known bug its subtrees do not show is not a
    failure yet, but for ``merge-shards`` to judge."""
    if result.passed:
        return "[green]yes[/]"
    return "merge" if sharded and _shard_ok(result) is None else "[bold red]NO[/]"


def _found(result: EngineResult) -> str | None:
    return result.verdict.value if result.caught else None


def _cell(result: EngineResult, budget: int) -> dict[str, Any]:
    schedule = str(result.schedule) if result.schedule is not None else None
    replay = None
    if result.schedule is not None and result.verdict is not Verdict.HANG:
        replay = replay_command(result.scenario, result.engine, result.schedule)
    return {
        "scenario": result.scenario,
        "engine": result.engine,
        "expected": result.expectation.value,
        "expected_anomaly": result.expected_anomaly.value if result.expected_anomaly else None,
        "budget": budget,
        "found": _found(result),
        "complete": result.complete,
        "schedules": result.examples,
        "pruned": result.pruned,
        "subtrees": list(result.subtrees),
        "elapsed_s": round(result.elapsed, 3),
        "bound": result.bound,
        "anomalies": sorted({anomaly.kind.value for anomaly in fatal(result.anomalies)}),
        "schedule": schedule,
        "replay": replay,
    }


def write_shard(
    campaign: CampaignResult,
    cells: Sequence[Cell],
    shard: Shard,
    command: str,
    output: Path | None,
    console: Console | None,
) -> int:
    """Write the shard file, say where and how to merge (on ``console``); the shard's exit
    status."""
    path = output or Path(f"tokenrace-shard-{shard.index}-of-{shard.count}.json")
    data = {
        "schema": SHARD_SCHEMA,
        "shard": str(shard),
        "index": shard.index,
        "count": shard.count,
        "split_depth": shard.split_depth,
        "command": command,
        "cells": [
            _cell(result, cell.examples) for result, cell in zip(campaign.cells, cells, strict=True)
        ],
    }
    try:
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConformanceError(f"cannot write the shard file {path}: {exc.strerror}") from None
    others = " ".join(
        f"tokenrace-shard-{index}-of-{shard.count}.json"
        for index in range(1, shard.count + 1)
        if index != shard.index
    )
    status = EXIT_OK if shard_passed(campaign) else EXIT_FAILED
    if console is None:
        return status
    console.print(f"shard {shard} written to {escape(str(path))}")
    if output is None:  # the default names: the merge line works as printed once all are here
        console.print(
            f"when every shard is done: {invoked_as()} merge-shards {path} {others}",
            soft_wrap=True,  # one line, to paste
        )
    else:
        console.print(
            f"when all {shard.count} shard files are here, combine them with "
            f"{invoked_as()} merge-shards (see: {invoked_as()} merge-shards --help)",
            soft_wrap=True,
        )
    return status
