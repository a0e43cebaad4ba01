"""One engine object per simulated process, fresh after a kill: an engine's memory is a
process's memory.

A ``RemembersAgents`` engine records, in the engine object, each agent it served;
whatever it remembers must come from agents of its own process, and nothing may
survive a kill or a crash of that process.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance import EngineEntry, Expectation, fatal, search_engine
from fake_oauth_server import Policy
from refresh_engine import (
    AgentContext,
    Flow,
    LockKind,
    LockTiming,
    Log,
    Pid,
    ReferenceEngine,
    Write,
    ops,
)
from simulator import (
    AgentSpec,
    EventKind,
    FaultKind,
    RandomChooser,
    ReplayChooser,
    RunResult,
    Schedule,
    StoreLayout,
    Strategy,
    WorldError,
    WorldSpec,
    simulate,
)

HOUR = Policy.preset("openai").access_token_lifetime


class RemembersAgents(ReferenceEngine):
    """The reference, and a log line naming every agent this engine object served before."""

    def __init__(self) -> None:
        super().__init__()
        self.served: list[str] = []

    def access_token(self, ctx: AgentContext) -> Flow[str]:
        yield from ops.log(f"{ctx.agent} finds {','.join(self.served) or 'nobody'}")
        self.served.append(ctx.agent)
        return (yield from super().access_token(ctx))


def _seen(result: RunResult) -> list[tuple[str, set[str]]]:
    """Each turn's agent, and the agents its engine object had served before."""
    found = []
    for event in result.events:
        effect = event.effect
        if isinstance(effect, Log) and " finds " in effect.message:
            agent, _, others = effect.message.partition(" finds ")
            found.append((agent, set() if others == "nobody" else set(others.split(","))))
    return found


@settings(max_examples=40, deadline=None)
@given(
    processes=st.lists(st.sampled_from((None, 1, 2)), min_size=2, max_size=3),
    faults=st.sampled_from(
        (frozenset(), frozenset({FaultKind.KILL}), frozenset({FaultKind.CRASH}))
    ),
    seed=st.integers(0, 2**16),
)
def test_an_engine_remembers_only_agents_of_its_own_process_since_it_started(
    processes: list[int | None], faults: frozenset[FaultKind], seed: int
) -> None:
    names = ("atlas", "nova", "lumi")[: len(processes)]
    spec = WorldSpec(
        agents=tuple(
            AgentSpec(name, (HOUR, 2 * HOUR), process)
            for name, process in zip(names, processes, strict=True)
        ),
        layout=StoreLayout.SHARED,
        faults=faults,
        max_faults=1 if faults else 0,
    )
    template = RemembersAgents()
    result = simulate(spec, template, RandomChooser(random.Random(seed), fault=0.05))
    assert template.served == []  # the template itself never runs
    pid = {name: spec.pid(index) for index, name in enumerate(names)}
    killed_at = [e.step for e in result.events if e.kind is EventKind.FAULT and e.killed]
    for agent, others in _seen(result):
        assert {pid[other] for other in others} <= {pid[agent]}
    if not killed_at:  # no kill: every agent of a process meets the others' earlier turns
        turns = [agent for agent, _ in _seen(result)]
        assert len(turns) == 2 * len(names)


def test_a_killed_process_starts_with_a_fresh_engine() -> None:
    spec = WorldSpec(
        agents=(AgentSpec("atlas", (HOUR, 2 * HOUR)),),
        layout=StoreLayout.SHARED,
        faults=frozenset({FaultKind.KILL}),
        max_faults=1,
    )
    first_turn = simulate(spec, RemembersAgents(), ReplayChooser(Schedule.parse("default")))
    assert [others for _, others in _seen(first_turn)] == [set(), {"atlas"}]  # one process
    # kill atlas at its second turn's first step: its restart finds nobody
    steps = next(
        e.step for e in first_turn.events if e.kind is EventKind.TURN_BEGIN and e.note == "turn 2"
    )
    killed = simulate(
        spec, RemembersAgents(), ReplayChooser(Schedule.parse(f"atlas*{steps + 1} atlas!kill"))
    )
    assert [others for _, others in _seen(killed)][-1] == set()


def _killed_while_holding_an_excl_lock(pid_reuse: bool) -> tuple[list[int], float]:
    """The pids atlas ran as, and when its interrupted turn finally ended (s after start)."""
    spec = WorldSpec(
        agents=(AgentSpec("atlas", (HOUR,)),),
        layout=StoreLayout.SHARED,
        faults=frozenset({FaultKind.KILL}),
        max_faults=1,
        pid_reuse=pid_reuse,
    )
    engine = ReferenceEngine(lock=LockKind.EXCL_FILE, timing=LockTiming(poll=1.0, stale=30.0))
    plain = simulate(spec, engine, ReplayChooser(Schedule.parse("default")))
    wrote_pid = next(
        e.step for e in plain.events if isinstance(e.effect, Write) and e.path.endswith(".lock")
    )
    schedule = Schedule.parse(f"atlas*{wrote_pid + 1} atlas!kill")
    result = simulate(spec, engine, ReplayChooser(schedule))
    pids = [e.outcome.pid for e in result.events if isinstance(e.outcome, Pid)]
    ended = [e.time - spec.start_time for e in result.events if e.kind is EventKind.TURN_END]
    return sorted(set(pids)), ended[-1]


def test_a_restarted_process_has_a_new_pid_so_its_dead_lock_is_broken_at_once() -> None:
    """An O_EXCL lock file names its holder's pid; the holder is killed holding it.

    Restarted with a new pid, the process sees the named pid dead and breaks the
    lock at once.  Where the OS gives it the dead pid back (``pid_reuse``), the
    lock names a live process, and only its stale age (30 s here) breaks it.
    """
    fresh_pids, fresh_end = _killed_while_holding_an_excl_lock(pid_reuse=False)
    reused_pids, reused_end = _killed_while_holding_an_excl_lock(pid_reuse=True)
    assert len(fresh_pids) == 2  # the first process's pid, and the restart's
    assert len(reused_pids) == 1
    assert fresh_end < HOUR + 10
    assert reused_end >= HOUR + 30


def _excl_lock_across_hosts(nova_host: str) -> list[str]:
    """Fatal anomaly kinds when atlas and nova share one store, each searched exhaustively,
    with an O_EXCL lock file broken when the pid in it is not alive."""
    spec = WorldSpec(
        agents=(AgentSpec("atlas", (HOUR,)), AgentSpec("nova", (HOUR,), host=nova_host)),
        layout=StoreLayout.SHARED,
    )

    def engine() -> ReferenceEngine:
        return ReferenceEngine(lock=LockKind.EXCL_FILE, timing=LockTiming(poll=1.0, stale=600.0))

    entry = EngineEntry("excl-file", engine, Expectation.CLEAN, "O_EXCL lock file, pid checked")
    exhaustive = Strategy.EXHAUSTIVE
    result = search_engine("hosts", spec, entry, max_examples=3000, seed=0, strategy=exhaustive)
    assert result.examples > 1
    return sorted({anomaly.kind.value for anomaly in fatal(result.anomalies)})


def test_a_pid_of_another_host_is_no_live_process_so_its_lock_is_broken() -> None:
    """Two hosts share the store (NFS, a bind mount): a lock file naming nova's pid looks
    dead to atlas, which breaks it while nova holds it.  On one host the pid is alive."""
    assert _excl_lock_across_hosts("") == []
    assert "mutual-exclusion" in _excl_lock_across_hosts("laptop")


def test_agents_of_one_process_run_on_one_host() -> None:
    with pytest.raises(WorldError, match="one host: nova"):
        WorldSpec(agents=(AgentSpec("atlas", (HOUR,), 1), AgentSpec("nova", (HOUR,), 1, host="b")))


def test_a_scenario_file_puts_agents_on_hosts(tmp_path: Path) -> None:
    from conformance import ConformanceError
    from conformance._scenario_files import load_scenario_file

    head = '[scenario]\nname = "two-hosts"\n[world]\nagents = ["atlas", "nova"]\n'
    path = tmp_path / "hosts.toml"
    path.write_text(head + 'hosts = { nova = "laptop" }\n')
    agents = load_scenario_file(path).world.agents
    assert [agent.host for agent in agents] == ["", "laptop"]
    path.write_text(head + 'hosts = { nvoa = "laptop" }\n')
    with pytest.raises(ConformanceError, match="'nvoa' is not an agent"):
        load_scenario_file(path)


def test_a_scenario_file_names_its_outside_logins(tmp_path: Path) -> None:
    from conformance import ConformanceError
    from conformance._scenario_files import load_scenario_file

    head = '[scenario]\nname = "login"\n[world]\nagents = ["atlas", "cli"]\n'
    path = tmp_path / "login.toml"
    path.write_text(head + 'logins = ["cli"]\nprofiles = { cli = "anthropic:default" }\n')
    agents = load_scenario_file(path).world.agents
    assert [agent.logs_in for agent in agents] == [False, True]
    path.write_text(head + 'logins = ["clu"]\n')
    with pytest.raises(ConformanceError, match="'clu' is not an agent"):
        load_scenario_file(path)
