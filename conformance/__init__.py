"""The conformance suite: the checker, the known-bug corpus, scenarios, campaigns, the CLI.

``check(result)`` names the anomalies of a simulated run; ``run_campaign``
searches each engine's schedules and gives it a verdict; the ``tokenrace``
command is ``conformance._cli:main``.
"""

# conformance may import refresh_engine, fake_oauth_server and simulator;
# nothing imports conformance.

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._battery import BATTERY, BatteryWorld
    from ._campaign import (
        CampaignResult,
        EngineResult,
        Verdict,
        has_fatal,
        replay,
        replay_command,
        run_campaign,
        search_engine,
    )
    from ._check_engine import check_battery
    from ._checker import Anomaly, AnomalyKind, Severity, check, fatal
    from ._command import command_scenario
    from ._corpus import MirroredChildStores, NoCrossProcessLock
    from ._engines import BUILTIN_ENGINES, EngineEntry, Expectation, load_engine
    from ._errors import ConformanceError, EngineLoadError, UnknownScenario
    from ._fs_check import search_schedules
    from ._fs_run import Deviation, FsRun, Kill, format_schedule, parse_schedule, run_fs
    from ._fs_search import PctPicker, RandomPicker, shrink
    from ._mutants import MUTANTS, Gap, Mutant, Operator
    from ._mutate import Fate, MutantResult, MutationReport, run_mutants, witness_check
    from ._report import SCHEMA, results_json, write_report
    from ._scenario_files import Scenario, builtin_scenarios, load_scenario_file
    from ._scenarios import HEADLINE_AGENTS, SCENARIOS, headline, load_scenario

#: where each public name lives: imported on first use, so ``tokenrace --help`` stays fast
_WHERE = {
    "BATTERY": "._battery",
    "BatteryWorld": "._battery",
    "CampaignResult": "._campaign",
    "EngineResult": "._campaign",
    "Verdict": "._campaign",
    "has_fatal": "._campaign",
    "replay": "._campaign",
    "replay_command": "._campaign",
    "run_campaign": "._campaign",
    "search_engine": "._campaign",
    "check_battery": "._check_engine",
    "command_scenario": "._command",
    "search_schedules": "._fs_check",
    "Deviation": "._fs_run",
    "FsRun": "._fs_run",
    "Kill": "._fs_run",
    "PctPicker": "._fs_search",
    "RandomPicker": "._fs_search",
    "shrink": "._fs_search",
    "format_schedule": "._fs_run",
    "parse_schedule": "._fs_run",
    "run_fs": "._fs_run",
    "Anomaly": "._checker",
    "AnomalyKind": "._checker",
    "Severity": "._checker",
    "check": "._checker",
    "fatal": "._checker",
    "MirroredChildStores": "._corpus",
    "NoCrossProcessLock": "._corpus",
    "BUILTIN_ENGINES": "._engines",
    "EngineEntry": "._engines",
    "Expectation": "._engines",
    "load_engine": "._engines",
    "ConformanceError": "._errors",
    "EngineLoadError": "._errors",
    "UnknownScenario": "._errors",
    "MUTANTS": "._mutants",
    "Gap": "._mutants",
    "Mutant": "._mutants",
    "Operator": "._mutants",
    "Fate": "._mutate",
    "MutantResult": "._mutate",
    "MutationReport": "._mutate",
    "run_mutants": "._mutate",
    "witness_check": "._mutate",
    "SCHEMA": "._report",
    "results_json": "._report",
    "write_report": "._report",
    "Scenario": "._scenario_files",
    "builtin_scenarios": "._scenario_files",
    "load_scenario_file": "._scenario_files",
    "HEADLINE_AGENTS": "._scenarios",
    "SCENARIOS": "._scenarios",
    "headline": "._scenarios",
    "load_scenario": "._scenarios",
}

__all__ = [
    "BATTERY",
    "BUILTIN_ENGINES",
    "BatteryWorld",
    "check_battery",
    "command_scenario",
    "Deviation",
    "FsRun",
    "Kill",
    "PctPicker",
    "RandomPicker",
    "shrink",
    "format_schedule",
    "parse_schedule",
    "run_fs",
    "search_schedules",
    "HEADLINE_AGENTS",
    "MUTANTS",
    "SCENARIOS",
    "SCHEMA",
    "Scenario",
    "Anomaly",
    "AnomalyKind",
    "CampaignResult",
    "ConformanceError",
    "EngineEntry",
    "EngineLoadError",
    "EngineResult",
    "Expectation",
    "Fate",
    "Gap",
    "MirroredChildStores",
    "Mutant",
    "MutantResult",
    "MutationReport",
    "NoCrossProcessLock",
    "Operator",
    "Severity",
    "UnknownScenario",
    "Verdict",
    "builtin_scenarios",
    "check",
    "fatal",
    "has_fatal",
    "headline",
    "load_engine",
    "load_scenario",
    "load_scenario_file",
    "replay",
    "replay_command",
    "results_json",
    "run_campaign",
    "run_mutants",
    "witness_check",
    "search_engine",
    "write_report",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value
