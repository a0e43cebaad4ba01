"""Exceptions of the conformance suite.

Tree::

    ConformanceError
    ├── EngineLoadError     --engine names nothing loadable, or not an engine
    └── UnknownScenario     --scenario names no known scenario

Each message names what was asked for and what would have worked; the CLI
turns them into exit status 2 with no traceback.
"""

from __future__ import annotations

#: the CLI's exit statuses: clean, an expectation not met, a usage or setup error
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: stopped by Ctrl-C (128 + SIGINT, as a shell reports it)
EXIT_INTERRUPTED = 130


class ConformanceError(Exception):
    """Root of every error the conformance suite raises."""


class EngineLoadError(ConformanceError):
    """The engine could not be loaded."""


class UnknownScenario(ConformanceError):
    """No scenario has that name."""
