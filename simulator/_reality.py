"""Model against reality: one schedule in the simulated OS and on this machine's kernel.

The same engine, world and schedule run twice, over ``VirtualFS`` and over
``RealFS`` (every file effect done for real by ``RealWorld`` in a temporary
directory); the histories must be byte-identical.  A difference is a
*finding*: the model says one thing, the real OS another, and both histories
are kept so a person can see where they part.
"""

from __future__ import annotations

import difflib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from ._errors import ScheduleError
from ._kernel import simulate
from ._result import Engine
from ._schedule import ReplayChooser, Schedule
from ._world import OsModel, WorldSpec


@dataclass(frozen=True, slots=True)
class RealityMismatch:
    """The model and the real OS ended differently on one schedule."""

    schedule: Schedule
    model_history: str
    real_history: str

    @property
    def diff(self) -> str:
        lines = difflib.unified_diff(
            self.model_history.splitlines(True),
            self.real_history.splitlines(True),
            "model",
            "real",
            n=2,
        )
        return "".join(lines)


def compare_with_reality(
    spec: WorldSpec, engine: Callable[[], Engine], schedule: Schedule
) -> RealityMismatch | None:
    """Run ``schedule`` in the model and for real; ``None`` when they agree exactly."""
    if spec.os is not OsModel.LINUX:
        raise ValueError(f"this machine checks the linux model, not {spec.os.value}")
    histories = []
    for real in (False, True):
        with tempfile.TemporaryDirectory(prefix="tokenrace-real-") as root:
            try:
                run = simulate(spec, engine(), ReplayChooser(schedule), root if real else None)
            except ScheduleError as exc:  # the run took another path than the schedule
                histories.append(f"the schedule does not fit this run: {exc}\n")
            else:
                histories.append(run.render())
    model_history, real_history = histories
    if model_history == real_history:
        return None
    return RealityMismatch(schedule, model_history, real_history)
