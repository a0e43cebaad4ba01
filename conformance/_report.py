"""Reports written by every run: ``results.json`` (schema ``tokenrace.results/1``).

Schema, version 1::

    {
      "schema": "tokenrace.results/1",
      "tool_version": str,
      "passed": bool,            # every cell met its expectation
      "elapsed_s": float,
      "cells": [{                # one engine searched in one scenario
        "scenario": str, "title": str,
        "engine": str, "summary": str,
        "expected": "clean" | "buggy",
        "verdict": "reproduced" | "ruled out" | "not found",
        "strategy": "hypothesis" | "random" | "pct" | "exhaustive",
        "bound": str,            # what the search covered, in words
        "passed": bool,
        "schedules_tried": int,  # shrinking included
        "first_failure_at": int | null, "time_to_first_failure_s": float | null,
        "elapsed_s": float,
        "anomalies": [{"kind", "severity", "agent", "steps": [int], "message"}],
        "schedule": str | null, "preemptions": int,
        "replay": str | null     # the command that replays the minimal failing run
      }]
    }

Tokens appear only as fingerprints (``rt#1a2b3c4d``): the report is built from
already-redacted text, and ``write_report`` checks nothing token-shaped leaks.
"""

from __future__ import annotations

import json
import os
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from fake_oauth_server import redact

from ._campaign import CampaignResult, EngineResult, replay_command

SCHEMA = "tokenrace.results/1"


def _tool_version() -> str:
    try:
        return metadata.version("tokenrace")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def engine_json(result: EngineResult) -> dict[str, Any]:
    return {
        "scenario": result.scenario,
        "title": result.title,
        "engine": result.engine,
        "summary": result.summary,
        "expected": result.expectation.value,
        "verdict": result.verdict.value,
        "strategy": result.strategy.value,
        "bound": result.bound,
        "passed": result.passed,
        "schedules_tried": result.examples,
        "first_failure_at": result.first_failure_at,
        "time_to_first_failure_s": _round(result.time_to_first_failure),
        "elapsed_s": _round(result.elapsed),
        "anomalies": [
            {
                "kind": anomaly.kind.value,
                "severity": anomaly.severity.value,
                "agent": anomaly.agent,
                "steps": list(anomaly.steps),
                "message": anomaly.message,
            }
            for anomaly in result.anomalies
        ],
        "schedule": None if result.schedule is None else str(result.schedule),
        "preemptions": result.preemptions,
        "replay": None
        if result.schedule is None
        else replay_command(result.scenario, result.engine, result.schedule),
    }


def results_json(campaign: CampaignResult) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "tool_version": _tool_version(),
        "passed": campaign.passed,
        "elapsed_s": _round(campaign.elapsed),
        "cells": [engine_json(result) for result in campaign.cells],
    }


def write_report(campaign: CampaignResult, directory: Path) -> list[Path]:
    """Write ``results.json`` and each failing history; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    text = json.dumps(results_json(campaign), indent=2) + "\n"
    written.append(_write(directory / "results.json", text))
    for result in campaign.cells:
        if result.history:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{Path(result.scenario).stem}-{result.engine}")
            written.append(_write(directory / f"history-{name}.txt", result.history))
    return written


def _write(path: Path, text: str) -> Path:
    if redact(text) != text:  # a raw token slipped through: refuse to write it
        raise ValueError(f"refusing to write {path}: it would contain a raw token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
