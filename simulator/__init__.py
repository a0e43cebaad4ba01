"""Deterministic worlds for refresh engines: virtual clock, filesystem, network, schedules.

A ``Simulation`` runs one engine for several agents in a ``WorldSpec``,
stepping one effect at a time as a ``Chooser`` decides; its ``RunResult``
carries the history, the fake server's audit log and a ``Schedule`` string
that replays the run exactly.
"""

# simulator imports refresh_engine and fake_oauth_server (and hypothesis);
# it never imports conformance.  This core is deterministic and does no real
# I/O: it never imports its subpackage simulator.real (real files, real
# processes, Wine), which is built on the core's public names.

from ._agent import AgentStatus
from ._errors import NotModelled, ScheduleError, SimulatorError, WorldError
from ._explore import search_exhaustive
from ._faults import FaultKind
from ._filesystem import Clock, FileSystem, FileSystemFactory, link_chain
from ._history import EventKind, HistoryEvent, Refusal, StoreState, describe, render
from ._kernel import Simulation, simulate
from ._result import Engine, RunResult
from ._schedule import (
    Chooser,
    DefaultChooser,
    ReplayChooser,
    Schedule,
    StepView,
    candidates,
    default_choice,
)
from ._shard import DEFAULT_SPLIT_DEPTH, Shard, parse_shard
from ._strategies import (
    PctChooser,
    PctPriorities,
    RandomChooser,
    SearchResult,
    Strategy,
    SwitchPointChooser,
    search_hypothesis,
    search_pct,
    search_random,
    switch_points,
)
from ._vfs import VirtualFS
from ._world import DEFAULT_START, AgentSpec, OsModel, StoreLayout, WorldSpec, seed_world

__all__ = [
    "AgentSpec",
    "AgentStatus",
    "Chooser",
    "Clock",
    "DEFAULT_SPLIT_DEPTH",
    "DEFAULT_START",
    "DefaultChooser",
    "Engine",
    "EventKind",
    "FaultKind",
    "FileSystem",
    "FileSystemFactory",
    "HistoryEvent",
    "NotModelled",
    "OsModel",
    "PctChooser",
    "PctPriorities",
    "RandomChooser",
    "Refusal",
    "ReplayChooser",
    "RunResult",
    "Schedule",
    "ScheduleError",
    "SearchResult",
    "Shard",
    "Simulation",
    "SimulatorError",
    "StepView",
    "StoreLayout",
    "StoreState",
    "Strategy",
    "SwitchPointChooser",
    "VirtualFS",
    "WorldError",
    "WorldSpec",
    "candidates",
    "default_choice",
    "describe",
    "link_chain",
    "parse_shard",
    "render",
    "search_exhaustive",
    "search_hypothesis",
    "search_pct",
    "search_random",
    "seed_world",
    "simulate",
    "switch_points",
]
