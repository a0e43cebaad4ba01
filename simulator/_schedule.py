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

#: The schedule string of a run that never departs from the default order.
DEFAULT_ORDER = "default"

_SEGMENT = re.compile(r"^([A-Za-z][A-Za-z0-9_.-]*)(?:\*([0-9]+))?$")


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
                    f"bad schedule segment {raw!r}: expected NAME or NAME*COUNT, e.g. 'atlas*12'"
                )
            count = int(match.group(2) or 1)
            if count < 1:
                raise ScheduleError(f"bad schedule segment {raw!r}: the count must be at least 1")
            steps.extend([match.group(1).lower()] * count)
        return cls(tuple(steps))

    def segments(self) -> list[tuple[str, int]]:
        """The run-length encoding: ``[(agent, steps), ...]``."""
        runs: list[tuple[str, int]] = []
        for name in self.steps:
            if runs and runs[-1][0] == name:
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


def default_choice(runnable: Sequence[str], last: str | None) -> str:
    """The default order: stay with ``last`` if it can run, else the first runnable."""
    if last is not None and last in runnable:
        return last
    return runnable[0]


def candidates(runnable: Sequence[str], last: str | None) -> list[str]:
    """``runnable`` reordered so index 0 is the default choice."""
    first = default_choice(runnable, last)
    return [first, *(name for name in runnable if name != first)]


class Chooser(Protocol):
    """Picks the agent to run when more than one can."""

    def choose(self, step: int, runnable: Sequence[str], last: str | None) -> str: ...


class DefaultChooser:
    """Always the default order: no context switch that is not forced."""

    def choose(self, step: int, runnable: Sequence[str], last: str | None) -> str:
        return default_choice(runnable, last)


class ReplayChooser:
    """Follow a schedule exactly, then the default order."""

    def __init__(self, schedule: Schedule) -> None:
        self._steps = schedule.steps

    def choose(self, step: int, runnable: Sequence[str], last: str | None) -> str:
        if step >= len(self._steps):
            return default_choice(runnable, last)
        wanted = self._steps[step]
        if wanted not in runnable:
            raise ScheduleError(
                f"step {step}: the schedule runs {wanted!r}, but only "
                f"{', '.join(runnable)} can run there"
            )
        return wanted


class IndexChooser:
    """Choices as indices into ``candidates()``; drawn by Hypothesis, random or PCT."""

    def __init__(self, draw: DrawIndex) -> None:
        self._draw = draw

    def choose(self, step: int, runnable: Sequence[str], last: str | None) -> str:
        options = candidates(runnable, last)
        return options[self._draw(len(options))]


class DrawIndex(Protocol):
    def __call__(self, n: int) -> int: ...


def minimal_schedule(chosen: Iterable[str], defaults: Iterable[bool]) -> Schedule:
    """The chosen steps up to the last one that was not the default order."""
    steps = list(chosen)
    was_default = list(defaults)
    end = 0
    for index, default in enumerate(was_default):
        if not default:
            end = index + 1
    return Schedule(tuple(steps[:end]))
