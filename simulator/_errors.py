"""Exceptions of the simulator.

Tree::

    SimulatorError
    ├── ScheduleError      a schedule string is malformed or does not fit the run
    ├── WorldError         a world specification is inconsistent
    └── NotModelled        the engine asked for behaviour the OS model does not cover

Engines never see these: what an engine's effect does wrong comes back to it
as the ``OSError`` a real call would raise.
"""

from __future__ import annotations


class SimulatorError(Exception):
    """Root of every error the simulator raises."""


class ScheduleError(SimulatorError):
    """The schedule cannot be parsed, or names an agent that cannot run at that step."""


class WorldError(SimulatorError):
    """The world specification is inconsistent (unknown agent, duplicate name...)."""


class NotModelled(SimulatorError):
    """The OS model does not cover this call; it refuses rather than guess."""
