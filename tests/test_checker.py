"""The checker names reuse and stranded agents with their steps; search finds what needs it."""

from __future__ import annotations

import pytest

from conformance import (
    BUILTIN_ENGINES,
    AnomalyKind,
    MirroredChildStores,
    NoCrossProcessLock,
    Verdict,
    check,
    fatal,
    search_engine,
)
from refresh_engine import ReferenceEngine
from simulator import DefaultChooser, EventKind, ReplayChooser, WorldSpec, simulate


def test_mirrored_engine_spends_a_rotated_token(two_agents: WorldSpec) -> None:
    result = simulate(two_agents, MirroredChildStores(), DefaultChooser())
    anomalies = check(result)
    kinds = [anomaly.kind for anomaly in anomalies]
    # the openai preset revokes the grant on reuse, as OpenAI's later refreshes show
    assert kinds == [
        AnomalyKind.REFRESH_TOKEN_REUSE,
        AnomalyKind.FAMILY_REVOKED,
        AnomalyKind.AGENT_STRANDED,
    ]
    reuse, _, stranded = anomalies
    first, replay = reuse.steps
    requests = {e.step: e for e in result.events if e.kind is EventKind.REQUEST}
    assert requests[first].agent != requests[replay].agent == reuse.agent
    assert stranded.agent == reuse.agent
    assert "rt#" in reuse.message
    assert "trr_" not in reuse.message


def test_reference_engine_is_clean_in_default_order(headline_world: WorldSpec) -> None:
    assert check(simulate(headline_world, ReferenceEngine(), DefaultChooser())) == ()


def test_no_lock_engine_needs_a_context_switch(headline_world: WorldSpec) -> None:
    # In the default order each agent finishes its refresh before the next starts.
    assert fatal(check(simulate(headline_world, NoCrossProcessLock(), DefaultChooser()))) == []
    result = search_engine(
        "headline", headline_world, BUILTIN_ENGINES["no-lock"], max_examples=300, seed=1
    )
    assert result.verdict is Verdict.REPRODUCED
    assert result.preemptions >= 1
    assert result.anomalies[0].kind is AnomalyKind.REFRESH_TOKEN_REUSE
    assert result.schedule is not None
    replayed = simulate(headline_world, NoCrossProcessLock(), ReplayChooser(result.schedule))
    assert check(replayed) == result.anomalies


@pytest.mark.parametrize(
    "budget", [pytest.param(300, id="ci"), pytest.param(1000, marks=pytest.mark.slow, id="full")]
)
def test_reference_engine_survives_the_schedule_budget(
    headline_world: WorldSpec, budget: int
) -> None:
    result = search_engine(
        "headline", headline_world, BUILTIN_ENGINES["reference"], max_examples=budget, seed=0
    )
    assert result.verdict is Verdict.NOT_FOUND
    assert result.examples == budget
    assert result.passed


def test_mirrored_reproduced_with_shrunk_schedule(headline_world: WorldSpec) -> None:
    result = search_engine(
        "headline", headline_world, BUILTIN_ENGINES["mirrored"], max_examples=100, seed=0
    )
    assert result.verdict is Verdict.REPRODUCED
    assert result.passed
    assert result.preemptions == 0  # the stale copy needs no unlucky timing at all
    assert str(result.schedule) == "default"
