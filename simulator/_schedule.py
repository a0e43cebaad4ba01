"""Schedules: which agent runs at each step, as a string a user can paste.

A schedule is run-length encoded agent names, ``"atlas*12 nova*3 atlas"``:
step 0 to 11 run atlas, 12 to 14 nova, 15 atlas; ``"default"`` is the empty
schedule.  After the string ends the
*default order* takes over: keep running the agent that ran last while it
can, else the first runnable agent in declaration order.  Hypothesis draws
choices as indices into ``[default, *others]``, so a choice of 0 is "no
context switch" and shrinking toward 0 shrinks toward fewer switches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ._errors import ScheduleError
from ._faults import FaultKind
from ._footprint import Footprint

#: The schedule string of a run that never departs from the default order.
DEFAULT_ORDER = "default"

_SEGMENT = re.compile(r"^([A-Za-z][A-Za-z0-9_.-]*)(?:\*([0-9]+)|!([a-z0-9]+))?$")


@dataclass(frozen=True, slots=True)
class Schedule:
    """An explicit prefix of per-step agent choices; the default order follows."""

    steps: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """Parse ``"atlas*12 nova*3"``; commas also separate segments."""
        steps: list[str] = []
        if text.strip().lower() == DEFAULT_ORDER:
            return cls()
        for raw in text.replace(",", " ").split():
            match = _SEGMENT.match(raw)
            if match is None:
                raise ScheduleError(
                    f"bad schedule segment {raw!r}: expected NAME, NAME*COUNT or NAME!FAULT, "
                    "e.g. 'atlas*12' or 'atlas!drop'"
                )
            name, count_text, fault = match.groups()
            if fault is not None:
                try:
                    FaultKind.parse(fault)
                except ValueError as exc:
                    raise ScheduleError(f"bad schedule segment {raw!r}: {exc}") from None
                steps.append(f"{name.lower()}!{fault}")
                continue
            count = int(count_text or 1)
            if count < 1:
                raise ScheduleError(f"bad schedule segment {raw!r}: the count must be at least 1")
            steps.extend([name.lower()] * count)
        return cls(tuple(steps))

    def segments(self) -> list[tuple[str, int]]:
        """The run-length encoding: ``[(agent, steps), ...]``; a faulted step stands alone."""
        runs: list[tuple[str, int]] = []
        for name in self.steps:
            if runs and runs[-1][0] == name and "!" not in name:
                runs[-1] = (name, runs[-1][1] + 1)
            else:
                runs.append((name, 1))
        return runs

    def __str__(self) -> str:
        if not self.steps:
            return DEFAULT_ORDER
        return " ".join(name if n == 1 else f"{name}*{n}" for name, n in self.segments())

    @property
    def context_switches(self) -> int:
        return max(0, len(self.segments()) - 1)

    @property
    def faults(self) -> int:
        return sum("!" in step for step in self.steps)


def default_choice(runnable: Sequence[str], last: str | None) -> str:
    """The default order: stay with ``last`` if it can run, else the first runnable."""
    if last is not None and last in runnable:
        return last
    return runnable[0]


def candidates(runnable: Sequence[str], last: str | None) -> list[str]:
    """``runnable`` reordered so index 0 is the default choice."""
    first = default_choice(runnable, last)
    return [first, *(name for name in runnable if name != first)]


class StepView(Protocol):
    """What a chooser may see at a step: who can run, and what each could do."""

    @property
    def step(self) -> int: ...

    @property
    def runnable(self) -> Sequence[str]: ...

    @property
    def last(self) -> str | None: ...

    def faults(self, agent: str) -> Sequence[FaultKind]:
        """The faults that may strike ``agent`` at this step (empty when the budget is spent)."""
        ...

    def footprint(self, option: str) -> Footprint:
        """What running ``option`` (``"atlas"`` or ``"atlas!kill"``) now would touch."""
        ...

    @property
    def waiting(self) -> Sequence[str]:
        """Agents with an effect to do that cannot run now (they wait for a lock)."""
        ...


class Chooser(Protocol):
    """Picks the agent to run (``"atlas"``), or a fault to strike it with (``"atlas!drop"``)."""

    def choose(self, view: StepView) -> str: ...


class DefaultChooser:
    """Always the default order: no context switch that is not forced, no fault."""

    def choose(self, view: StepView) -> str:
        return default_choice(view.runnable, view.last)


class ReplayChooser:
    """Follow a schedule exactly, then the default order."""

    def __init__(self, schedule: Schedule) -> None:
        self._steps = schedule.steps

    def choose(self, view: StepView) -> str:
        step = view.step
        if step >= len(self._steps):
            return default_choice(view.runnable, view.last)
        wanted = self._steps[step]
        name, _, fault = wanted.partition("!")
        if name not in view.runnable:
            raise ScheduleError(
                f"step {step}: the schedule runs {name!r}, but only "
                f"{', '.join(view.runnable)} can run there"
            )
        if fault and FaultKind.parse(fault) not in view.faults(name):
            allowed = ", ".join(kind.value for kind in view.faults(name)) or "none"
            raise ScheduleError(
                f"step {step}: fault {fault!r} cannot strike {name} there (possible: {allowed})"
            )
        return wanted


def minimal_schedule(chosen: Iterable[str], defaults: Iterable[bool]) -> Schedule:
    """The chosen steps up to the last one that was not the default order."""
    steps = list(chosen)
    was_default = list(defaults)
    end = 0
    for index, default in enumerate(was_default):
        if not default:
            end = index + 1
    return Schedule(tuple(steps[:end]))
