"""Reports written by every run, check and reproduce, into one directory.

``write_report`` writes, and returns in this order:

- ``results.json``: every verdict, for scripts (schema below);
- ``history-<scenario>-<engine>.txt``: the history of each minimal failing run;
- ``index.html``: the matrix, colour-coded, and a sequence diagram (inline SVG)
  of each reproduced cell with its replay command; self-contained (``_html``);
- ``summary.md``: the same matrix for GitHub, e.g. a job summary (``_summary``);
- ``junit.xml``: one test case per cell (``_junit``).

History files of earlier runs that this run did not write are removed, so
the directory describes one run.  Every file is created 0600 and refused if
it would contain a raw token.  Each file is written beside its name and
renamed over it, so a reader never sees half a file, and the whole report is
written holding a lock on the directory (``.tokenrace.lock``), so two runs
that end together leave one run's report, the later one's, never a mix.

Schema, version 1 (fields are only ever added within a version)::

    {
      "schema": "tokenrace.results/1",
      "tool_version": str,
      "passed": bool,            # every cell met its expectation
      "elapsed_s": float,
      "reports": {"html": "index.html", "markdown": "summary.md", "junit": "junit.xml"},
      "cells": [{                # one engine searched in one scenario
        "scenario": str, "title": str,
        "engine": str, "summary": str,
        "expected": "clean" | "buggy",
        "verdict": "reproduced" | "ruled out" | "not found" | "other anomaly" | "hang",
        "expected_anomaly": str | null,  # the anomaly kind a known bug must show, if named
        "strategy": "hypothesis" | "random" | "pct" | "exhaustive",
        "bound": str,            # what the search covered, in words (a hang: where it hung)
        "passed": bool,
        "schedules_tried": int,  # shrinking included
        "first_failure_at": int | null, "time_to_first_failure_s": float | null,
        "elapsed_s": float,
        "anomalies": [{"kind", "severity", "agent", "steps": [int], "message"}],
        "schedule": str | null, "preemptions": int,
        "replay": str | null,    # the command that replays the minimal failing run
        "history_file": str | null  # beside results.json: the minimal failing run's history
      }]
    }

Tokens appear only as fingerprints (``rt#1a2b3c4d``): the report is built from
already-redacted text, and ``write_report`` checks nothing token-shaped leaks.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from fake_oauth_server import redact

from ._campaign import CampaignResult, EngineResult, replay_command
from ._errors import ConformanceError
from ._html import render_html
from ._junit import render_junit
from ._summary import render_summary

SCHEMA = "tokenrace.results/1"


#: the file a run locks while it writes the report (empty; left in place)
LOCK_NAME = ".tokenrace.lock"


def _tool_version() -> str:
    try:
        return metadata.version("tokenrace")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def history_name(result: EngineResult) -> str | None:
    """The file name of a cell's history, or None when it has none."""
    if not result.history:
        return None
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{Path(result.scenario).stem}-{result.engine}")
    return f"history-{name}.txt"


def engine_json(result: EngineResult) -> dict[str, Any]:
    return {
        "scenario": result.scenario,
        "title": result.title,
        "engine": result.engine,
        "summary": result.summary,
        "expected": result.expectation.value,
        "verdict": result.verdict.value,
        "expected_anomaly": None
        if result.expected_anomaly is None
        else result.expected_anomaly.value,
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
        "history_file": history_name(result),
    }


def results_json(campaign: CampaignResult) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "tool_version": _tool_version(),
        "passed": campaign.passed,
        "elapsed_s": _round(campaign.elapsed),
        "reports": {"html": "index.html", "markdown": "summary.md", "junit": "junit.xml"},
        "cells": [engine_json(result) for result in campaign.cells],
    }


def write_report(campaign: CampaignResult, directory: Path) -> list[Path]:
    """Write every report of ``campaign`` into ``directory``; returns the paths written."""
    try:
        return _write_all(campaign, directory)
    except OSError as exc:  # the directory was checked before the search; it changed since
        raise ConformanceError(f"cannot write the report to {directory}: {exc}") from None


def _write_all(campaign: CampaignResult, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory):
        return _write_files(campaign, directory)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold the report directory's lock: one run writes its report at a time."""
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # retries for 10 s, then OSError
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # drops the lock


def _write_files(campaign: CampaignResult, directory: Path) -> list[Path]:
    written = []
    text = json.dumps(results_json(campaign), indent=2) + "\n"
    written.append(_write(directory / "results.json", text))
    for result in campaign.cells:
        name = history_name(result)
        if name is not None:
            written.append(_write(directory / name, result.history))
    written.append(_write(directory / "index.html", render_html(campaign, version=_tool_version())))
    written.append(_write(directory / "summary.md", render_summary(campaign)))
    written.append(_write(directory / "junit.xml", render_junit(campaign)))
    for stale in set(directory.glob("history-*.txt")) - set(written):
        stale.unlink()  # an earlier run's: it would be mistaken for this one's
    return written


def _write(path: Path, text: str) -> Path:
    """Write ``path`` whole or not at all: a 0600 temporary file renamed over it."""
    if redact(text) != text:  # a raw token slipped through: refuse to write it
        raise ValueError(f"refusing to write {path}: it would contain a raw token")
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
