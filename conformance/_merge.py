"""``tokenrace merge-shards FILE...``: the shards of an exhaustive search, one verdict.

Every shard file (``_shards``) of one search must be there once: the same
command, cells, budget, ``N`` and split depth, and each index 1..N exactly
once; otherwise one line on stderr and exit 2.  Per cell: a fatal anomaly
any shard found is the verdict (the first shard's that found one, with its
replay line); else ``ruled out`` when every shard covered all its subtrees,
and ``not found`` when one stopped at its budget.  ``merged.json``::

    {
      "schema": "tokenrace.merged/1", "passed": bool,
      "shards": int, "split_depth": int, "command": str,
      "cells": [{
        "scenario": str, "engine": str, "expected": "clean" | "buggy",
        "verdict": "reproduced" | "ruled out" | "not found" | "other anomaly" | "hang",
        "passed": bool, "schedules": int, "pruned": int, "subtrees": int,
        "complete_shards": int, "found_in": "I/N" | null,
        "anomalies": [str], "schedule": str | null, "replay": str | null,
        "elapsed_s": float      # the shards' times summed (the slowest: max_shard_s)
        "max_shard_s": float
      }]
    }
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ._errors import EXIT_FAILED, EXIT_OK, ConformanceError
from ._shards import SHARD_SCHEMA

__all__ = ["MERGED_SCHEMA", "add_merge_parser", "merge_command", "merge_shards"]

MERGED_SCHEMA = "tokenrace.merged/1"
_SAME = ("count", "split_depth", "command")  # what every shard of one search agrees on
_CELL_KEYS = ("scenario", "engine", "expected", "expected_anomaly", "budget")


def add_merge_parser(commands: Any) -> None:
    merge = commands.add_parser(
        "merge-shards",
        help="combine the shard files of a sharded exhaustive search into one verdict",
    )
    merge.add_argument("files", nargs="+", type=Path, metavar="FILE", help="every shard's file")
    merge.add_argument(
        "--output",
        type=Path,
        default=Path("merged.json"),
        metavar="FILE",
        help="the merged report (default: merged.json)",
    )


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConformanceError(f"cannot read the shard file {path}: {exc.strerror}") from None
    except ValueError:
        raise ConformanceError(f"{path} is not a shard file: not JSON") from None
    if not isinstance(data, dict) or data.get("schema") != SHARD_SCHEMA:
        raise ConformanceError(f"{path} is not a shard file ({SHARD_SCHEMA})")
    try:
        for key in ("index", "count", "split_depth"):
            int(data[key])
        list(data["cells"])
    except (KeyError, TypeError, ValueError):
        raise ConformanceError(f"{path} is not a shard file: fields missing") from None
    return data


def _cells_key(data: dict[str, Any]) -> list[tuple[object, ...]]:
    return [tuple(cell.get(key) for key in _CELL_KEYS) for cell in data["cells"]]


def _checked(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """The shard files in index order, or ``ConformanceError`` naming what is wrong."""
    shards = [(path, _load(path)) for path in paths]
    first_path, first = shards[0]
    by_index: dict[int, Path] = {}
    for path, data in shards:
        for key in _SAME:
            if data[key] != first[key]:
                raise ConformanceError(
                    f"{path} and {first_path} are shards of different searches "
                    f"({key} {data[key]!r} vs {first[key]!r})"
                )
        if _cells_key(data) != _cells_key(first):
            raise ConformanceError(
                f"{path} and {first_path} are shards of different searches "
                "(other scenarios, engines or budgets)"
            )
        index = int(data["index"])
        if index in by_index:
            raise ConformanceError(
                f"shard {index}/{first['count']} given twice: {by_index[index]} and {path}"
            )
        by_index[index] = path
    count = int(first["count"])
    missing = [f"{index}/{count}" for index in range(1, count + 1) if index not in by_index]
    if missing:
        raise ConformanceError(f"shard {', '.join(missing)} missing: give all {count} shard files")
    return [data for data in sorted((data for _, data in shards), key=lambda d: d["index"])]


def _merged_cell(parts: Sequence[dict[str, Any]], count: int) -> dict[str, Any]:
    head = parts[0]
    found = [(index, part) for index, part in enumerate(parts, 1) if part["found"]]
    wanted = [pair for pair in found if pair[1]["found"] == "reproduced"]
    complete = sum(bool(part["complete"]) for part in parts)
    shown = (wanted or found or [(0, {})])[0]
    searched = "ruled out" if complete == count else "not found"
    verdict = shown[1]["found"] if shown[0] else searched
    if head["expected"] == "buggy":
        passed = verdict == "reproduced"
    else:
        passed = verdict in ("ruled out", "not found")
    times = [float(part["elapsed_s"]) for part in parts]
    return {
        "scenario": head["scenario"],
        "engine": head["engine"],
        "expected": head["expected"],
        "verdict": verdict,
        "passed": passed,
        "schedules": sum(int(part["schedules"]) for part in parts),
        "pruned": sum(int(part["pruned"]) for part in parts),
        "subtrees": max((int(part["subtrees"][1]) for part in parts), default=0),
        "complete_shards": complete,
        "found_in": f"{shown[0]}/{count}" if shown[0] else None,
        "anomalies": shown[1].get("anomalies", []),
        "schedule": shown[1].get("schedule"),
        "replay": shown[1].get("replay"),
        "elapsed_s": round(sum(times), 3),
        "max_shard_s": round(max(times, default=0.0), 3),
    }


def merge_shards(paths: Sequence[Path]) -> dict[str, Any]:
    """The merged report of the shard files ``paths``; ``ConformanceError`` when they are
    not every shard of one search, once each."""
    shards = _checked(paths)
    count = int(shards[0]["count"])
    cells = [
        _merged_cell([shard["cells"][position] for shard in shards], count)
        for position in range(len(shards[0]["cells"]))
    ]
    return {
        "schema": MERGED_SCHEMA,
        "passed": all(cell["passed"] for cell in cells),
        "shards": count,
        "split_depth": int(shards[0]["split_depth"]),
        "command": shards[0]["command"],
        "cells": cells,
    }


def merge_command(args: argparse.Namespace, console: Console) -> int:
    merged = merge_shards(args.files)
    try:
        args.output.write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConformanceError(f"cannot write {args.output}: {exc.strerror}") from None
    count = merged["shards"]
    table = Table(
        title=f"tokenrace merge-shards: {count} shards, split at depth {merged['split_depth']}"
    )
    for column in ("scenario", "engine", "expected", "verdict", "schedules", "ok"):
        table.add_column(column, overflow="fold")
    for cell in merged["cells"]:
        table.add_row(
            escape(cell["scenario"]),
            escape(cell["engine"]),
            cell["expected"],
            cell["verdict"],
            str(cell["schedules"]),
            "[green]yes[/]" if cell["passed"] else "[bold red]NO[/]",
        )
    console.print(table)
    for cell in merged["cells"]:
        where = f"{escape(cell['scenario'])} / {escape(cell['engine'])}"
        if cell["verdict"] == "ruled out":
            console.print(
                f"{where}: [green]ruled out[/]: all {cell['schedules']} schedules "
                f"in {cell['subtrees']} subtrees over {count} shards"
            )
        elif cell["replay"]:
            kinds = ", ".join(cell["anomalies"])
            console.print(
                f"{where}: {cell['verdict']} ({kinds}) in shard {cell['found_in']}; replay it:"
            )
            console.print(f"  {escape(cell['replay'])}", soft_wrap=True)
        elif cell["verdict"] == "not found":
            console.print(
                f"{where}: not found in {cell['schedules']} schedules "
                f"({count - cell['complete_shards']} of {count} shards stopped at their budget)"
            )
    status = "passed" if merged["passed"] else "FAILED"
    console.print(f"tokenrace merge-shards: {status}; merged report in {escape(str(args.output))}")
    return EXIT_OK if merged["passed"] else EXIT_FAILED
