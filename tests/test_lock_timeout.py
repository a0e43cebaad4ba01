"""E8: a lock whose holder is stuck ends in ``LockTimeout``, never in a wait for ever.

The simulated side: a blocked lock call with a timeout gives up when the virtual clock
reaches its deadline, which it does only when no agent can run; the checker excuses the
give-up when a stall or a slow answer held an agent up, and calls it a lock never released
otherwise.  The real side: ``RealWorld`` polls a lock with a timeout and gives up on time,
against a lock held by another open file description.
"""

from __future__ import annotations

import dataclasses
import errno
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance import AnomalyKind, Severity, check, fatal
from fake_oauth_server import AuditKind, Policy
from refresh_engine import (
    AgentContext,
    Failed,
    Flock,
    Flow,
    Held,
    LockKind,
    LockTimeout,
    LockTiming,
    RealWorld,
    ReferenceEngine,
    acquire_lock,
)
from refresh_engine._oslocks import lock_within
from simulator import (
    AgentSpec,
    DefaultChooser,
    EventKind,
    FaultKind,
    HistoryEvent,
    RunResult,
    StepView,
    StoreLayout,
    WorldSpec,
    default_choice,
    simulate,
)

#: the real side holds the lock with flock from the test: a POSIX call
POSIX = pytest.mark.skipif(sys.platform == "win32", reason="the test's holder uses flock")
STUCK = 600.0  # a stall far past the reference's timeout: a stuck holder
TIMEOUT = LockTiming().timeout


class _SlowFirstAnswer:
    """The default order, with the first response in flight made slow (``stall_seconds``)."""

    def __init__(self) -> None:
        self.struck = ""

    def choose(self, view: StepView) -> str:
        for agent in view.runnable:
            if not self.struck and FaultKind.SLOW in view.faults(agent):
                self.struck = agent
                return f"{agent}!slow"
        return default_choice(view.runnable, view.last)


def _slow_world(two_agents: WorldSpec, stall: float) -> WorldSpec:
    return dataclasses.replace(
        two_agents, faults=frozenset({FaultKind.SLOW}), max_faults=1, stall_seconds=stall
    )


def _give_ups(result: RunResult) -> list[HistoryEvent]:
    return [
        e
        for e in result.events
        if e.kind is EventKind.EFFECT
        and isinstance(e.outcome, Failed)
        and e.outcome.errno == errno.ETIMEDOUT
    ]


def test_a_waiter_gives_up_at_its_timeout_when_the_holder_is_stuck(two_agents: WorldSpec) -> None:
    chooser = _SlowFirstAnswer()
    result = simulate(_slow_world(two_agents, STUCK), ReferenceEngine(), chooser)
    (give_up,) = _give_ups(result)
    waiter = ({"atlas", "nova"} - {chooser.struck}).pop()
    assert (give_up.agent, give_up.struck) == (waiter, chooser.struck)
    assert isinstance(give_up.effect, Flock)
    asked = max(
        e.time for e in result.events if e.agent == waiter and e.step < give_up.step
    )  # the lock call was issued at the waiter's last step before the give-up
    assert give_up.time - asked == TIMEOUT
    later = result.events[result.events.index(give_up) :]
    end = next(e for e in later if e.kind is EventKind.TURN_END and e.agent == waiter)
    assert end.error_type == "LockTimeout"
    assert "the refresh token is unspent" in end.note
    refreshes = [e for e in result.audit if e.kind is AuditKind.ACCEPTED]
    assert len(refreshes) == 1  # the waiter presented nothing
    anomalies = check(result)
    assert fatal(anomalies) == [], [str(a) for a in anomalies]
    (warning,) = [a for a in anomalies if a.kind is AnomalyKind.LOCK_TIMEOUT]
    assert warning.severity is Severity.WARNING
    assert warning.agent == waiter


def test_a_stall_shorter_than_the_timeout_is_waited_out(two_agents: WorldSpec) -> None:
    result = simulate(_slow_world(two_agents, 30.0), ReferenceEngine(), _SlowFirstAnswer())
    assert _give_ups(result) == []
    assert fatal(check(result)) == []
    ends = [e for e in result.events if e.kind is EventKind.TURN_END]
    assert ends
    assert all(not e.error_type for e in ends)


def test_without_a_timeout_the_waiter_waits_the_stall_out(two_agents: WorldSpec) -> None:
    engine = ReferenceEngine(timing=LockTiming(timeout=None))
    result = simulate(_slow_world(two_agents, STUCK), engine, _SlowFirstAnswer())
    assert _give_ups(result) == []
    assert all(not e.error_type for e in result.events if e.kind is EventKind.TURN_END)


class _NeverReleases(ReferenceEngine):
    """Keeps the refresh lock after its turn: a leaked lock."""

    name = "never-releases"

    def release_lock(self, ctx: AgentContext, held: Held) -> Flow[None]:
        return
        yield  # a flow that does nothing


def test_a_lock_nobody_releases_is_still_fatal(two_agents: WorldSpec) -> None:
    """Before timeouts, a leaked lock was a deadlock; the give-up must not excuse it."""
    lifetime = two_agents.policy.access_token_lifetime
    turns = (0.0, lifetime, 2 * lifetime)  # a refresh after the leaked one needs the lock
    agents = tuple(dataclasses.replace(agent, turns=turns) for agent in two_agents.agents)
    spec = dataclasses.replace(two_agents, agents=agents)
    result = simulate(spec, _NeverReleases(), DefaultChooser())
    give_ups = _give_ups(result)
    assert give_ups
    assert all(e.struck == "" for e in give_ups)
    kinds = {a.kind for a in fatal(check(result))}
    assert AnomalyKind.DEADLOCK in kinds


@settings(max_examples=30, deadline=None)
@given(
    stall=st.sampled_from((30.0, 100.0, 299.0, 301.0, 1000.0)),
    timeout=st.sampled_from((None, 60.0, 300.0)),
)
def test_a_give_up_happens_exactly_when_the_stall_outlasts_the_timeout(
    stall: float, timeout: float | None
) -> None:
    """Against the arithmetic: with a holder held up ``stall`` seconds, the waiter gives up
    iff its timeout is shorter; the checker never finds a fatal anomaly either way."""
    lifetime = Policy.preset("openai").access_token_lifetime
    agents = (AgentSpec("atlas", (0.0, lifetime)), AgentSpec("nova", (0.0, lifetime)))
    world = WorldSpec(agents=agents, policy=Policy.preset("openai"), layout=StoreLayout.MIRRORED)
    spec = _slow_world(world, stall)
    engine = ReferenceEngine(timing=LockTiming(timeout=timeout))
    result = simulate(spec, engine, _SlowFirstAnswer())
    expected = timeout is not None and timeout < stall
    assert bool(_give_ups(result)) == expected
    assert fatal(check(result)) == []


# ------------------------------------------------------------------ the real side


def test_lock_within_gives_up_after_the_timeout_and_passes_other_errors() -> None:
    now = [0.0]
    tries: list[bool] = []

    def busy(blocking: bool) -> None:
        tries.append(blocking)
        raise BlockingIOError(errno.EWOULDBLOCK, "held")

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(TimeoutError) as caught:
        lock_within(busy, 1.0, clock=lambda: now[0], sleep=sleep)
    assert caught.value.errno == errno.ETIMEDOUT
    assert now[0] == pytest.approx(1.0)
    assert set(tries) == {False}  # never a blocking call

    def gone(blocking: bool) -> None:
        raise OSError(errno.EBADF, "bad fd")

    with pytest.raises(OSError, match="bad fd"):
        lock_within(gone, 1.0, clock=lambda: now[0], sleep=sleep)

    free_after = iter([True, True, False])

    def eventually(blocking: bool) -> None:
        if next(free_after):
            raise PermissionError(errno.EACCES, "held")  # lockf's and LockFileEx's busy

    lock_within(eventually, 10.0, clock=lambda: now[0], sleep=sleep)


def _flock_ex(holder: object) -> None:
    import fcntl

    fcntl.flock(holder, fcntl.LOCK_EX)


@pytest.fixture
def held_lock(tmp_path: Path) -> Iterator[Path]:
    """A lock file another open file description holds exclusively, as a stuck process."""
    path = tmp_path / "state" / "refresh.lock"
    path.parent.mkdir()
    with path.open("w") as holder:
        _flock_ex(holder)
        yield path


def _acquire_in_thread(kind: LockKind, path: Path, timeout: float) -> tuple[object, float]:
    """Acquire with a real interpreter in a thread; what it ended with, and how long it took.
    The thread is bounded: code without a timeout would wait for ever, and fail here."""
    timing = LockTiming(timeout=timeout, poll=0.02)
    box: list[object] = []

    def run() -> None:
        try:
            box.append(RealWorld().run(acquire_lock(kind, str(path), timing=timing)))
        except Exception as exc:
            box.append(exc)

    start = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout + 10.0)
    assert box, f"{kind.value}: still waiting {timeout + 10.0} s after a {timeout} s timeout"
    return box[0], time.monotonic() - start


@POSIX
@pytest.mark.parametrize("kind", [LockKind.FLOCK, LockKind.FILELOCK])
def test_a_real_lock_held_by_a_stuck_holder_times_out(held_lock: Path, kind: LockKind) -> None:
    ended, took = _acquire_in_thread(kind, held_lock, 0.5)
    assert isinstance(ended, LockTimeout), ended
    assert str(held_lock) in str(ended)
    assert "unspent" in str(ended)
    assert 0.4 <= took < 5.0


@POSIX
def test_the_reference_refreshes_nothing_when_its_lock_is_stuck(real_world) -> None:  # type: ignore[no-untyped-def]
    """The whole engine, on real files against the fake server, its token expired: the
    stuck lock ends the refresh in LockTimeout, one line naming the lock, and the server
    sees no request.  (Sleeps move the test's clock: the timeout is the engine's 300 s.)"""
    server, ctx, clock, _ = real_world
    clock.now += server.policy.access_token_lifetime + 1

    def sleep(seconds: float) -> None:
        clock.now += seconds

    world = RealWorld(clock=clock, sleep=sleep)  # no HTTP client: none may be needed
    engine = ReferenceEngine()
    lock = Path(engine.lock_path(ctx))
    lock.parent.mkdir(parents=True, exist_ok=True)
    before = clock.now
    ended: list[BaseException] = []

    def refresh() -> None:  # in a thread: code without a timeout would wait for ever
        try:
            world.run(engine.access_token(ctx))
        except BaseException as exc:
            ended.append(exc)

    with lock.open("w") as holder:
        _flock_ex(holder)
        thread = threading.Thread(target=refresh, daemon=True)
        thread.start()
        thread.join(30.0)
        assert ended, "still waiting for the lock 30 s on"
    (error,) = ended
    assert isinstance(error, LockTimeout), error
    assert clock.now - before == pytest.approx(TIMEOUT)
    assert str(lock) in str(error)
    assert "\n" not in str(error)
    assert [e for e in server.audit if e.kind is AuditKind.PRESENTED] == []
