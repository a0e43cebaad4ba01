"""Faults as schedule steps: a lost response, a killed process, a failed request, a stall."""

from __future__ import annotations

import dataclasses
import errno
from collections.abc import Callable

import pytest

from conformance import AnomalyKind, Severity, check, fatal
from conformance._corpus import InPlaceRewrite
from fake_oauth_server import AuditKind, Policy
from refresh_engine import (
    Failed,
    Flock,
    LockOp,
    OpenFlags,
    Read,
    ReferenceEngine,
    Replace,
    Write,
    lock_path,
)
from simulator import (
    AgentSpec,
    Chooser,
    DefaultChooser,
    EventKind,
    FaultKind,
    ReplayChooser,
    RunResult,
    Schedule,
    ScheduleError,
    Simulation,
    StepView,
    StoreLayout,
    SwitchPointChooser,
    WorldSpec,
    default_choice,
    simulate,
)


class StrikeFirst:
    """Default order, but strike ``fault`` at the first agent it is offered to."""

    def __init__(self, fault: FaultKind) -> None:
        self.fault = fault
        self.struck = ""

    def choose(self, view: StepView) -> str:
        for agent in view.runnable:
            if not self.struck and self.fault in view.faults(agent):
                self.struck = agent
                return f"{agent}!{self.fault.value}"
        return default_choice(view.runnable, view.last)


def with_faults(spec: WorldSpec, *kinds: FaultKind, budget: int = 1) -> WorldSpec:
    return dataclasses.replace(spec, faults=frozenset(kinds), max_faults=budget)


def test_no_fault_is_offered_without_a_budget(two_agents: WorldSpec) -> None:
    chooser = StrikeFirst(FaultKind.KILL)
    simulate(two_agents, ReferenceEngine(), chooser)
    assert not chooser.struck


def test_lost_response_after_commit_strands_the_login(two_agents: WorldSpec) -> None:
    spec = with_faults(two_agents, FaultKind.DROP)
    chooser = StrikeFirst(FaultKind.DROP)
    result = simulate(spec, ReferenceEngine(), chooser)
    faults = [e for e in result.events if e.kind is EventKind.FAULT]
    assert [(e.agent, e.fault) for e in faults] == [(chooser.struck, FaultKind.DROP)]
    accepted = [e for e in result.audit if e.kind is AuditKind.ACCEPTED]
    assert accepted, "the server committed the rotation before the response was lost"
    ends = [e for e in result.events if e.kind is EventKind.TURN_END and e.agent == chooser.struck]
    # the engine retried at once with the token the server had already rotated
    assert ends[-1].error_type == "ReloginRequired"
    anomalies = check(result)
    kinds = {anomaly.kind for anomaly in anomalies}
    assert AnomalyKind.REFRESH_TOKEN_REUSE in kinds
    assert AnomalyKind.AGENT_STRANDED in kinds
    # under strict rotation with no reuse window nobody could have recovered: not the
    # engine's fault, so nothing fatal
    assert all(anomaly.severity is Severity.WARNING for anomaly in anomalies), anomalies
    assert all("unavoidable" in anomaly.message for anomaly in anomalies)


def test_server_error_before_commit_spends_nothing(two_agents: WorldSpec) -> None:
    spec = with_faults(two_agents, FaultKind.SERVER_ERROR)
    chooser = StrikeFirst(FaultKind.SERVER_ERROR)
    result = simulate(spec, ReferenceEngine(), chooser)
    ends = [e for e in result.events if e.kind is EventKind.TURN_END and e.agent == chooser.struck]
    assert ends[-1].error_type == "RefreshFailed"
    assert "503" in ends[-1].note
    assert not [e for e in result.audit if e.reason == "reused"]
    # the server's failure, reported honestly: a warning that names the fault, not the engine's bug
    (anomaly,) = check(result)
    assert anomaly.kind is AnomalyKind.SERVER_FAULT
    assert anomaly.severity is Severity.WARNING
    assert "5xx injected at step" in anomaly.message


def test_killed_holder_releases_its_flock_and_restarts(two_agents: WorldSpec) -> None:
    spec = with_faults(two_agents, FaultKind.KILL)
    lock = lock_path(spec.context("atlas"))

    class KillHolder:
        sim: Simulation

        def __init__(self) -> None:
            self.struck = False

        def choose(self, view: StepView) -> str:
            holders = self.sim.fs.lock_holders(lock) if self.sim.fs.exists(lock) else []
            if not self.struck and holders and "atlas" in view.runnable:
                self.struck = True
                return "atlas!kill"
            return default_choice(view.runnable, view.last)

    chooser = KillHolder()
    sim = Simulation(spec, ReferenceEngine(), chooser)
    chooser.sim = sim
    result = sim.run()
    assert chooser.struck
    kill = next(e for e in result.events if e.kind is EventKind.FAULT)
    restarted = [
        e
        for e in result.events
        if e.kind is EventKind.TURN_BEGIN and e.agent == "atlas" and e.step >= kill.step
    ]
    assert restarted, "the killed agent asks for its token again after the restart"
    assert restarted[0].time == kill.time + spec.restart_delay
    uses = [e for e in result.events if e.kind is EventKind.TOKEN_USE]
    assert all(e.ok for e in uses)
    assert check(result) == ()
    # and the run replays exactly from its schedule string, fault included
    replayed = simulate(
        spec, ReferenceEngine(), ReplayChooser(Schedule.parse(str(result.schedule)))
    )
    assert replayed.render() == result.render()
    assert "atlas!kill" in str(result.schedule)


def test_stall_delays_the_agent_without_losing_its_effect(two_agents: WorldSpec) -> None:
    spec = with_faults(two_agents, FaultKind.STALL)
    chooser = StrikeFirst(FaultKind.STALL)
    result = simulate(spec, ReferenceEngine(), chooser)
    stall = next(e for e in result.events if e.kind is EventKind.FAULT)
    later = [e for e in result.events if e.agent == chooser.struck and e.step > stall.step]
    assert later[0].time == stall.time + spec.stall_seconds
    assert check(result) == ()


def test_clock_skew_moves_what_now_returns(two_agents: WorldSpec) -> None:
    spec = dataclasses.replace(two_agents, clock_skew=(("nova", 120.0),))
    result = simulate(spec, ReferenceEngine(), DefaultChooser())
    nows = {
        e.agent: e.outcome
        for e in result.events
        if e.kind is EventKind.EFFECT and type(e.effect).__name__ == "Now"
    }
    assert nows["nova"].now - nows["atlas"].now == 120.0  # type: ignore[union-attr]


class CrashAfterSave:
    """Default order; crash the machine once an agent is about to unlock after saving."""

    sim: Simulation

    def __init__(self) -> None:
        self.struck = False

    def choose(self, view: StepView) -> str:
        for agent in self.sim.agents:
            pending = agent.runner.pending if agent.runner is not None else None
            unlocking = isinstance(pending, Flock) and pending.op is LockOp.UNLOCK
            ready = not self.struck and unlocking and agent.name in view.runnable
            if ready and FaultKind.CRASH in view.faults(agent.name):
                self.struck = True
                return f"{agent.name}!crash"
        return default_choice(view.runnable, view.last)


def _crash_run(spec: WorldSpec, engine: ReferenceEngine) -> RunResult:
    chooser = CrashAfterSave()
    sim = Simulation(with_faults(spec, FaultKind.CRASH), engine, chooser)
    chooser.sim = sim
    result = sim.run()
    assert chooser.struck
    return result


def test_power_loss_keeps_what_fsync_made_durable(two_agents: WorldSpec) -> None:
    spec = dataclasses.replace(two_agents, layout=StoreLayout.SHARED)
    result = _crash_run(spec, ReferenceEngine())
    stores = [e for e in result.events if e.kind is EventKind.STORE and e.path == spec.main_store]
    assert [e.generation for e in stores] == [1, 1]  # saved, and still there after the crash
    assert not fatal(check(result))


def test_power_loss_undoes_an_unsynced_in_place_write(two_agents: WorldSpec) -> None:
    spec = dataclasses.replace(two_agents, layout=StoreLayout.SHARED)
    result = _crash_run(spec, InPlaceRewrite())
    stores = [e for e in result.events if e.kind is EventKind.STORE and e.path == spec.main_store]
    assert stores[-1].generation == 0  # the crash took the never-fsynced write away
    kinds = {anomaly.kind for anomaly in check(result)}
    assert AnomalyKind.LOST_UPDATE in kinds


def test_torn_writes_let_a_reader_see_a_prefix() -> None:
    spec = WorldSpec(
        agents=(AgentSpec("atlas", (3600.0,)), AgentSpec("nova", (3600.0,))),
        layout=StoreLayout.SHARED,
        torn_writes=True,
    )
    result = simulate(spec, InPlaceRewrite(), SwitchPointChooser({}))
    parts = [e for e in result.events if e.note == "first part of a torn write"]
    assert parts, "the in-place write went in two parts"
    # a schedule that runs nova's read between the two parts shows the torn read
    from conformance import BUILTIN_ENGINES, search_engine

    found = search_engine("torn", spec, BUILTIN_ENGINES["in-place-write"], max_examples=300, seed=0)
    assert AnomalyKind.TORN_READ in {anomaly.kind for anomaly in found.anomalies}


def _strike_at(step: int, fault: FaultKind) -> Chooser:
    class StrikeAt:
        def choose(self, view: StepView) -> str:
            pick = default_choice(view.runnable, view.last)
            return f"{pick}!{fault.value}" if view.step == step else pick

    return StrikeAt()


def _one_agent_with_ioerror() -> WorldSpec:
    preset = Policy.preset("openai")
    return WorldSpec(
        agents=(AgentSpec("atlas", (preset.access_token_lifetime,)),),
        policy=preset,
        faults=frozenset({FaultKind.IO_ERROR}),
        max_faults=1,
    )


def _step_of(result: RunResult, kind: type) -> int:
    return next(e.step for e in result.events if isinstance(e.effect, kind))


def test_ioerror_fails_the_call_and_touches_nothing() -> None:
    """Struck at its first write (the staging check before the refresh), the agent sees
    ENOSPC, nothing reaches the file, and the refresh token is never presented."""
    spec = _one_agent_with_ioerror()
    plain = simulate(spec, ReferenceEngine(), DefaultChooser())
    chooser = _strike_at(_step_of(plain, Write), FaultKind.IO_ERROR)
    result = simulate(spec, ReferenceEngine(), chooser)
    (fault,) = [e for e in result.events if e.kind is EventKind.FAULT]
    (struck,) = [e for e in result.events if e.step == fault.step and e.kind is EventKind.EFFECT]
    assert isinstance(struck.effect, Write)
    assert struck.outcome == Failed("OSError", errno.ENOSPC, "No space left on device (injected)")
    assert not any(isinstance(e.effect, Replace) for e in result.events)  # the engine stopped
    assert not any(e.kind is EventKind.REQUEST for e in result.events)  # the token is unspent
    (end,) = [e for e in result.events if e.kind is EventKind.TURN_END]
    assert end.error_type == "StoreUnwritable"
    assert "No space left on device" in end.note
    assert ".auth-profiles.json." in end.note  # the file it could not write
    assert [a.kind for a in check(result)] == [AnomalyKind.IO_FAULT]  # a warning, no loss


def test_a_save_whose_write_fails_once_is_written_again() -> None:
    """ENOSPC at the save's write, after the server rotated: the engine writes the temp
    file again (space may have been freed), and the store holds the new token."""
    spec = _one_agent_with_ioerror()
    plain = simulate(spec, ReferenceEngine(), DefaultChooser())
    last_write = max(e.step for e in plain.events if isinstance(e.effect, Write))
    result = simulate(spec, ReferenceEngine(), _strike_at(last_write, FaultKind.IO_ERROR))
    assert any(e.kind is EventKind.FAULT for e in result.events)
    writes = [e for e in result.events if isinstance(e.effect, Write)]
    assert len(writes) == len([e for e in plain.events if isinstance(e.effect, Write)]) + 1
    (end,) = [e for e in result.events if e.kind is EventKind.TURN_END]
    assert end.error_type == ""
    stores = [e for e in result.events if e.kind is EventKind.STORE]
    assert stores[-1].generation == 1
    assert not check(result)


def test_ioerror_is_not_offered_for_a_read() -> None:
    """A replayed ``atlas!ioerror`` at a read is refused, naming what could strike there."""
    spec = _one_agent_with_ioerror()
    plain = simulate(spec, ReferenceEngine(), DefaultChooser())
    steps = ("atlas",) * _step_of(plain, Read) + ("atlas!ioerror",)
    with pytest.raises(ScheduleError, match="'ioerror' cannot strike atlas there"):
        simulate(spec, ReferenceEngine(), ReplayChooser(Schedule(steps)))


def test_a_save_that_fails_after_the_refresh_is_a_warning_only_if_reported() -> None:
    """The reference reports a failed replace (an ``io-fault`` warning, the token lost
    unavoidably); an engine that swallows the error and hands out the token is blamed."""
    from disk_error_engines import SwallowsSaveErrors

    spec = _one_agent_with_ioerror()
    at = _step_of(simulate(spec, ReferenceEngine(), DefaultChooser()), Replace)
    honest = check(simulate(spec, ReferenceEngine(), _strike_at(at, FaultKind.IO_ERROR)))
    assert {a.kind for a in honest} >= {AnomalyKind.IO_FAULT, AnomalyKind.TOKEN_LOST}
    assert fatal(honest) == [], [str(a) for a in honest]
    swallowed = check(simulate(spec, SwallowsSaveErrors(), _strike_at(at, FaultKind.IO_ERROR)))
    assert [a.kind for a in fatal(swallowed)] == [AnomalyKind.TOKEN_LOST]


def test_a_slow_answer_arrives_after_the_stall_and_others_run_meanwhile(
    two_agents: WorldSpec,
) -> None:
    """``slow`` at the first response: the server committed at the request, the answer
    comes ``stall_seconds`` later, and the other agent runs up to the lock in between."""
    spec = with_faults(two_agents, FaultKind.SLOW)
    plain = simulate(spec, ReferenceEngine(), DefaultChooser())
    request = next(e for e in plain.events if e.kind is EventKind.REQUEST)
    result = simulate(spec, ReferenceEngine(), _strike_at(request.step + 1, FaultKind.SLOW))
    (fault,) = [e for e in result.events if e.kind is EventKind.FAULT]
    assert fault.agent == request.agent
    response = next(e for e in result.events if e.kind is EventKind.RESPONSE)
    assert response.time - fault.time == spec.stall_seconds
    accepted = next(e for e in result.audit if e.kind is AuditKind.ACCEPTED)
    assert accepted.time == request.time  # committed at once; only the answer was slow
    between = [e for e in result.events if fault.step < e.step < response.step]
    other = {"atlas", "nova"} - {fault.agent}
    assert {e.agent for e in between} == other  # the struck one waits; the other runs to the lock
    assert fatal(check(result)) == []


class _StrikeTwice:
    """The default order, with ``first`` struck at one step and ``second`` at another."""

    def __init__(self, *strikes: tuple[int, FaultKind]) -> None:
        self.strikes = dict(strikes)

    def choose(self, view: StepView) -> str:
        pick = default_choice(view.runnable, view.last)
        fault = self.strikes.get(view.step)
        return f"{pick}!{fault.value}" if fault is not None else pick


def test_a_staged_token_whose_recovery_a_second_fault_fails_is_not_called_avoidable() -> None:
    """A crash after the staged file is durable, then an I/O error on the recovery's
    replace (the engine says so): the token is still on disk and nobody presented the
    spent one, so the loss is judged as an ordinary one, not as neglect.  Without the
    second fault the reference rolls forward and nothing at all is reported."""
    spec = dataclasses.replace(
        _one_agent_with_ioerror(),
        faults=frozenset({FaultKind.IO_ERROR, FaultKind.CRASH}),
        max_faults=2,
    )
    plain = simulate(spec, ReferenceEngine(), DefaultChooser())
    staged = _step_of(plain, Replace)  # crash instead of the replace: the temp is durable
    crashed = simulate(spec, ReferenceEngine(), _strike_at(staged, FaultKind.CRASH))
    assert not check(crashed)  # rolled forward
    recovery = next(
        e.step for e in crashed.events if isinstance(e.effect, Replace) and e.step > staged
    )
    both = _StrikeTwice((staged, FaultKind.CRASH), (recovery, FaultKind.IO_ERROR))
    result = simulate(spec, ReferenceEngine(), both)
    assert [e.fault for e in result.events if e.kind is EventKind.FAULT] == [
        FaultKind.CRASH,
        FaultKind.IO_ERROR,
    ]
    (crash,) = [e for e in result.events if e.fault is FaultKind.CRASH]
    assert crash.kept  # the staged credential survived the crash
    anomalies = check(result)
    assert fatal(anomalies) == [], [str(a) for a in anomalies]
    assert AnomalyKind.AVOIDABLE_LOSS not in {a.kind for a in anomalies}


# ------------------------------------------------------- denied: EACCES from then on


def test_a_denied_directory_refuses_new_and_removed_names_but_not_existing_files() -> None:
    """``chmod a-w`` on the stores' directory: adding, renaming or removing a name fails
    with EACCES; an existing file opens for writing; a name that exists is EEXIST and a
    missing one ENOENT first, as Linux looks the name up before the permission check."""
    spec = _one_agent_with_ioerror()
    sim = Simulation(spec, ReferenceEngine(), DefaultChooser())
    store = spec.main_store
    directory = store.rsplit("/", 1)[0]
    sim.os.deny_writes([directory])
    fresh = OpenFlags.WRITE | OpenFlags.CREATE | OpenFlags.EXCLUSIVE

    def refused(call: Callable[[], object]) -> int | None:
        try:
            call()
        except OSError as exc:
            return exc.errno
        return None

    assert refused(lambda: sim.os.open(1, directory + "/new.tmp", fresh)) == errno.EACCES
    assert refused(lambda: sim.os.open(1, store, fresh)) == errno.EEXIST
    assert refused(lambda: sim.os.open(1, store, OpenFlags.WRITE | OpenFlags.CREATE)) is None
    assert refused(lambda: sim.os.unlink(directory + "/missing")) == errno.ENOENT
    assert refused(lambda: sim.os.unlink(store)) == errno.EACCES
    assert refused(lambda: sim.os.replace(store, directory + "/moved")) == errno.EACCES
    assert refused(lambda: sim.os.mkdir(directory + "/sub")) == errno.EACCES
    assert refused(lambda: sim.os.mkdir(spec.home + "/elsewhere")) is None  # other dirs: fine


def _denied_world() -> WorldSpec:
    return with_faults(
        WorldSpec(
            agents=(AgentSpec("atlas", (3600.0,)), AgentSpec("nova", (3600.0,))),
            layout=StoreLayout.SHARED,
        ),
        FaultKind.DENIED,
    )


def test_a_denial_between_the_staging_check_and_the_post_is_unavoidable() -> None:
    """The reference checked, then the directory was denied, then it posted: no engine
    can close that window, so the lost token is a warning, not the engine's fault."""
    spec = _denied_world()
    schedule = Schedule.parse("atlas*19 nova*5 nova!denied")
    result = simulate(spec, ReferenceEngine(), ReplayChooser(schedule))
    (request,) = [e for e in result.events if e.kind is EventKind.REQUEST]
    (fault,) = [e for e in result.events if e.kind is EventKind.FAULT]
    assert fault.step < request.step  # posted after the denial, within the same turn
    found = check(result)
    assert AnomalyKind.TOKEN_LOST in {a.kind for a in found}
    assert fatal(found) == [], [str(a) for a in found]


def test_a_denial_before_the_turn_makes_an_unchecked_post_an_avoidable_loss() -> None:
    """Denied before Nova's turn began: the reference fails its staging check with the
    token unspent; an engine without the check posts it and cannot save the answer."""
    from conformance._corpus import NoStagingCheck

    spec = dataclasses.replace(
        _denied_world(), agents=(AgentSpec("atlas", (0.0,)), AgentSpec("nova", (3600.0,)))
    )
    schedule = Schedule.parse("atlas*3 atlas!denied")
    reference = simulate(spec, ReferenceEngine(), ReplayChooser(schedule))
    assert not any(e.kind is EventKind.REQUEST for e in reference.events)
    assert fatal(check(reference)) == []
    unchecked = check(simulate(spec, NoStagingCheck(), ReplayChooser(schedule)))
    kinds = [a.kind for a in fatal(unchecked)]
    assert AnomalyKind.AVOIDABLE_LOSS in kinds
    assert "before nova's turn" in next(
        a.message for a in unchecked if a.kind is AnomalyKind.AVOIDABLE_LOSS
    )
