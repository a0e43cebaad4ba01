"""One engine object per simulated process, fresh after a kill: an engine's memory is a
process's memory.

A ``RemembersAgents`` engine records, in the engine object, each agent it served;
whatever it remembers must come from agents of its own process, and nothing may
survive a kill or a crash of that process.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from fake_oauth_server import Policy
from refresh_engine import AgentContext, Flow, Log, ReferenceEngine, ops
from simulator import (
    AgentSpec,
    EventKind,
    FaultKind,
    RandomChooser,
    ReplayChooser,
    RunResult,
    Schedule,
    StoreLayout,
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
