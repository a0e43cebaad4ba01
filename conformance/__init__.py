"""The conformance suite: the checker, the known-bug corpus, scenarios, campaigns, the CLI.

``check(result)`` names the anomalies of a simulated run; ``run_campaign``
searches each engine's schedules and gives it a verdict; the ``tokenrace``
command is ``conformance._cli:main``.
"""

# conformance may import refresh_engine, fake_oauth_server and simulator;
# nothing imports conformance.

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
from ._corpus import MirroredChildStores, NoCrossProcessLock
from ._engines import BUILTIN_ENGINES, EngineEntry, Expectation, load_engine
from ._errors import ConformanceError, EngineLoadError, UnknownScenario
from ._mutants import MUTANTS, Gap, Mutant, Operator
from ._mutate import Fate, MutantResult, MutationReport, run_mutants, witness_check
from ._report import SCHEMA, results_json, write_report
from ._scenario_files import Scenario, builtin_scenarios, load_scenario_file
from ._scenarios import HEADLINE_AGENTS, SCENARIOS, headline, load_scenario

__all__ = [
    "BATTERY",
    "BUILTIN_ENGINES",
    "BatteryWorld",
    "check_battery",
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
