"""The deterministic kernel: steps, clock, split network, replay, deadlock."""

from __future__ import annotations

from conformance import MirroredChildStores, NoCrossProcessLock
from refresh_engine import (
    AgentContext,
    Flock,
    Flow,
    LockOp,
    Open,
    OpenFlags,
    ReferenceEngine,
    ops,
)
from simulator import (
    AgentSpec,
    DefaultChooser,
    EventKind,
    ReplayChooser,
    RunResult,
    Schedule,
    StepView,
    SwitchPointChooser,
    WorldSpec,
    simulate,
)


def test_same_schedule_gives_byte_identical_histories(headline_world: WorldSpec) -> None:
    schedule = Schedule.parse("atlas*2 axon*3 atlas*2 axon nova*4 nexis lumi*2 nexis*3")
    first = simulate(headline_world, NoCrossProcessLock(), ReplayChooser(schedule))
    second = simulate(headline_world, NoCrossProcessLock(), ReplayChooser(schedule))
    assert first.render().encode() == second.render().encode()
    assert first.audit == second.audit
    assert len(first.events) > 100


def test_a_searched_run_replays_from_its_schedule_string(headline_world: WorldSpec) -> None:
    chooser = SwitchPointChooser({3: (1, 0), 17: (2, 0), 40: (1, 0), 41: (3, 0), 90: (1, 0)})
    searched = simulate(headline_world, NoCrossProcessLock(), chooser)
    assert searched.preemptions > 0
    replayed = simulate(
        headline_world,
        NoCrossProcessLock(),
        ReplayChooser(Schedule.parse(str(searched.schedule))),
    )
    assert replayed.render() == searched.render()


def test_request_and_response_are_separate_steps(two_agents: WorldSpec) -> None:
    result = simulate(two_agents, ReferenceEngine(), DefaultChooser())
    requests = [e for e in result.events if e.kind is EventKind.REQUEST]
    responses = [e for e in result.events if e.kind is EventKind.RESPONSE]
    assert len(requests) == len(responses) == 1  # one refresh for one expiry
    assert responses[0].step > requests[0].step
    assert responses[0].request_id == requests[0].request_id


def test_clock_moves_only_when_every_agent_waits(two_agents: WorldSpec) -> None:
    result = simulate(two_agents, ReferenceEngine(), DefaultChooser())
    clock_events = [e for e in result.events if e.kind is EventKind.CLOCK]
    assert [e.time - two_agents.start_time for e in clock_events] == [0.0, 3600.0]
    # between two clock events time never changes
    times = [e.time for e in result.events]
    assert times == sorted(times)


class RoundRobin:
    """Switch at every step to the next runnable agent: maximal interleaving."""

    def choose(self, view: StepView) -> str:
        later = [name for name in view.runnable if view.last is not None and name > view.last]
        return later[0] if later else view.runnable[0]


def test_lock_waiter_runs_only_after_the_holder_unlocks(two_agents: WorldSpec) -> None:
    result = simulate(two_agents, ReferenceEngine(), RoundRobin())
    # the refresh lock (per profile, in the state dir), not the store's short write lock
    flocks = [e for e in result.events if isinstance(e.effect, Flock) and "/locks/" in e.path]
    order = [(e.agent, e.effect.op) for e in flocks if isinstance(e.effect, Flock)]
    holder = order[0][0]
    waiter = "nova" if holder == "atlas" else "atlas"
    assert order[:2] == [(holder, LockOp.EXCLUSIVE), (holder, LockOp.UNLOCK)]
    assert order[2] == (waiter, LockOp.EXCLUSIVE)
    # the waiter asked for the lock before the holder let go: it was made to wait
    waiter_open = next(
        e.step
        for e in result.events
        if e.agent == waiter and isinstance(e.effect, Open) and e.effect.path.endswith(".lock")
    )
    assert waiter_open < flocks[1].step
    assert check_reuse_free(result)


def check_reuse_free(result: RunResult) -> bool:
    return all(e.reason != "reused" for e in result.audit)


class SelfDeadlock(ReferenceEngine):
    """Takes the flock through two open file descriptions: the second waits forever."""

    def access_token(self, ctx: AgentContext) -> Flow[str]:
        path = ctx.state_dir + "/self.lock"
        first = yield from ops.open_file(path, OpenFlags.WRITE | OpenFlags.CREATE)
        second = yield from ops.open_file(path, OpenFlags.WRITE | OpenFlags.CREATE)
        yield from ops.flock(first, LockOp.EXCLUSIVE)
        yield from ops.flock(second, LockOp.EXCLUSIVE)
        return "unreachable"


def test_deadlock_is_detected_and_the_run_ends(two_agents: WorldSpec) -> None:
    result = simulate(two_agents, SelfDeadlock(), DefaultChooser())
    deadlocks = [e for e in result.events if e.kind is EventKind.DEADLOCK]
    assert len(deadlocks) == 1
    assert "atlas" in deadlocks[0].note
    assert "nova" in deadlocks[0].note


class Spinner(ReferenceEngine):
    def access_token(self, ctx: AgentContext) -> Flow[str]:
        while True:
            yield from ops.now()


def test_step_bound_stops_a_livelock() -> None:
    spec = WorldSpec(agents=(AgentSpec("atlas", (0.0,)),), max_steps=50)
    result = simulate(spec, Spinner(), DefaultChooser())
    assert result.steps == 50
    assert result.events[-1].kind is EventKind.STEP_BOUND


def test_mirrored_engine_reads_its_own_copy(two_agents: WorldSpec) -> None:
    result = simulate(two_agents, MirroredChildStores(), DefaultChooser())
    opened = {str(e.effect) for e in result.events if e.kind is EventKind.EFFECT}
    assert any("/agents/nova/agent/auth-profiles.json" in text for text in opened)
    assert not any("/agents/main/agent/auth-profiles.json" in text for text in opened)


def test_history_never_shows_a_raw_token(headline_world: WorldSpec) -> None:
    result = simulate(headline_world, MirroredChildStores(), DefaultChooser())
    text = result.render()
    assert "rt#" in text
    assert "at#" in text
    assert "trr_" not in text
    assert "tra_" not in text
