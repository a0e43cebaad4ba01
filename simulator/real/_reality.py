"""Model against reality: one schedule in the simulated OS and on this machine's kernel.

The same engine, world and schedule run twice, over ``VirtualFS`` and over
``RealFS`` (every file effect done for real by ``RealWorld`` in a temporary
directory); the histories must be byte-identical.  A difference is a
*finding*: the model says one thing, the real OS another, and both histories
are kept so a person can see where they part.

With ``processes`` (a ``ProcessPool``) the real run gives every virtual
process a real one (``_procfs``), so record locks and, under Wine, Windows
handles are checked too.  Windows words its error messages its own way, so
``windows`` histories are compared without them: exception type, errno (by
name, renumbered for this host) and winerror must still agree.
"""

from __future__ import annotations

import difflib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace

from refresh_engine import Failed, ReadLink
from simulator import (
    Engine,
    EventKind,
    HistoryEvent,
    OsModel,
    ReplayChooser,
    RunResult,
    Schedule,
    ScheduleError,
    VirtualFS,
    WorldSpec,
    render,
    simulate,
)

from ._procfs import simulate_processes
from ._procpool import ProcessPool
from ._realfs import real_backend


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
    spec: WorldSpec,
    engine: Callable[[], Engine],
    schedule: Schedule,
    processes: ProcessPool | None = None,
) -> RealityMismatch | None:
    """Run ``schedule`` in the model and for real (in ``processes``' real processes
    when given); ``None`` when they agree exactly."""
    if processes is None and spec.os is not OsModel.LINUX:
        raise ValueError(f"this machine checks the linux model, not {spec.os.value}")
    histories = []
    for real in (False, True):
        with tempfile.TemporaryDirectory(prefix="tokenrace-real-") as root:
            chooser = ReplayChooser(schedule)
            try:
                if real and processes is not None:
                    run = simulate_processes(spec, engine(), chooser, processes)
                else:
                    run = simulate(
                        spec, engine(), chooser, real_backend(root) if real else VirtualFS
                    )
            except ScheduleError as exc:  # the run took another path than the schedule
                histories.append(f"the schedule does not fit this run: {exc}\n")
            else:
                histories.append(comparable_history(run, spec.os))
    return _mismatch(schedule, *histories)


def reality_check(
    schedule: Schedule, model: RunResult, real: RunResult, os_model: OsModel
) -> RealityMismatch | None:
    """Two runs of ``schedule`` already made, compared as ``compare_with_reality`` does."""
    return _mismatch(
        schedule, comparable_history(model, os_model), comparable_history(real, os_model)
    )


def _mismatch(schedule: Schedule, model_history: str, real_history: str) -> RealityMismatch | None:
    if model_history == real_history:
        return None
    return RealityMismatch(schedule, model_history, real_history)


def comparable_history(run: RunResult, os_model: OsModel) -> str:
    """The history as the check compares it: whole, or on ``windows`` without error
    messages (Windows words them its own way; type, errno and winerror stay), and a
    failed ``readlink`` without its winerror: on a file that is no link Windows gives
    4390 (the model too), Wine 8 none; both EINVAL (docs/windows.md)."""
    if os_model is not OsModel.WINDOWS:
        return run.render()

    def plain(event: HistoryEvent) -> HistoryEvent:
        if isinstance(event.outcome, Failed):
            winerror = None if isinstance(event.effect, ReadLink) else event.outcome.winerror
            return replace(event, outcome=replace(event.outcome, message="", winerror=winerror))
        if event.kind is EventKind.TURN_END and event.error_type:
            return replace(event, note="")
        return event

    return render(map(plain, run.events), run.audit, run.start_time, run.home)
