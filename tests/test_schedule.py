"""Schedule strings: parse, print, replay strictly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator import FaultKind, ReplayChooser, Schedule, ScheduleError, candidates, default_choice

names = st.sampled_from(["atlas", "axon", "nova", "nexis", "lumi"])


@given(st.lists(names, max_size=40))
def test_string_round_trips(steps: list[str]) -> None:
    schedule = Schedule(tuple(steps))
    assert Schedule.parse(str(schedule)) == schedule


def test_run_length_form() -> None:
    schedule = Schedule.parse("atlas*3 nova, atlas*2")
    assert schedule.steps == ("atlas",) * 3 + ("nova",) + ("atlas",) * 2
    assert str(schedule) == "atlas*3 nova atlas*2"
    assert schedule.context_switches == 2


def test_empty_schedule_is_default() -> None:
    assert str(Schedule()) == "default"
    assert Schedule.parse("default") == Schedule()


@pytest.mark.parametrize("bad", ["atlas*", "9lives", "atlas*0", "at las*x"])
def test_malformed_segments_are_named(bad: str) -> None:
    with pytest.raises(ScheduleError, match="bad schedule segment"):
        Schedule.parse(bad)


def test_default_order_stays_with_the_last_agent() -> None:
    assert default_choice(["atlas", "nova"], "nova") == "nova"
    assert default_choice(["atlas", "nova"], "lumi") == "atlas"
    assert candidates(["atlas", "nova", "lumi"], "nova") == ["nova", "atlas", "lumi"]


class View:
    def __init__(self, step: int, runnable: list[str], last: str | None) -> None:
        self.step, self.runnable, self.last = step, runnable, last

    def faults(self, agent: str) -> tuple[FaultKind, ...]:
        return (FaultKind.KILL,)


def test_replay_refuses_an_agent_that_cannot_run() -> None:
    chooser = ReplayChooser(Schedule.parse("nova"))
    with pytest.raises(ScheduleError, match="step 0: the schedule runs 'nova'"):
        chooser.choose(View(0, ["atlas"], None))
    assert chooser.choose(View(1, ["atlas", "nova"], "nova")) == "nova"  # past the end


def test_replay_refuses_a_fault_that_cannot_strike_there() -> None:
    chooser = ReplayChooser(Schedule.parse("nova!drop atlas!kill"))
    with pytest.raises(ScheduleError, match="fault 'drop' cannot strike nova there"):
        chooser.choose(View(0, ["nova"], None))
    assert chooser.choose(View(1, ["atlas"], None)) == "atlas!kill"


def test_faulted_steps_stand_alone_in_the_string() -> None:
    schedule = Schedule.parse("atlas*2 atlas!drop atlas nova!kill")
    assert str(schedule) == "atlas*2 atlas!drop atlas nova!kill"
    assert schedule.faults == 2
    with pytest.raises(ScheduleError, match="unknown fault 'boom'"):
        Schedule.parse("atlas!boom")
