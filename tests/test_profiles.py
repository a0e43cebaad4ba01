"""Stores of several profiles: each is judged on its own, and every writer must carry the
others over.

The checker's per-profile lost-update rule is proven against a battery: in
random small worlds (agents on one or two profiles, a bystander profile or
not, shared or mirrored layout, each agent's own turns) an exhaustive search
finds nothing fatal for the reference and every correct-but-unusual engine,
and finds the lost update for each engine that breaks the store for another
profile (no store lock; a save that keeps only its own profile).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unusual_engines import UNUSUAL_ENGINES

from conformance import (
    AnomalyKind,
    EngineEntry,
    EngineResult,
    Expectation,
    Verdict,
    fatal,
    search_engine,
)
from conformance._corpus import ProfileLockOnly
from conformance._scenario_files import ScenarioError, load_scenario_file
from fake_oauth_server import Policy
from refresh_engine import (
    AgentContext,
    Credential,
    Flow,
    ReferenceEngine,
    atomic_write,
    render_store,
    with_credential,
)
from simulator import (
    AgentSpec,
    DefaultChooser,
    EventKind,
    StoreLayout,
    Strategy,
    WorldSpec,
    simulate,
)

HOUR = Policy.preset("openai").access_token_lifetime


class KeepsOnlyItsOwnProfile(ReferenceEngine):
    """Saves a document holding its own profile alone: every other login is wiped."""

    name = "keeps-only-its-own"

    def write_store(self, ctx: AgentContext, path: str, credential: Credential) -> Flow[None]:
        data = render_store(with_credential({}, ctx.key, ctx.provider, credential))
        yield from atomic_write(path, data, writer=ctx.agent)


CORRECT: dict[str, Callable[[], ReferenceEngine]] = {"reference": ReferenceEngine}
CORRECT |= UNUSUAL_ENGINES
BROKEN: dict[str, Callable[[], ReferenceEngine]] = {
    "profile-lock-only": ProfileLockOnly,
    "keeps-only-its-own": KeepsOnlyItsOwnProfile,
}


@st.composite
def worlds(draw: st.DrawFn) -> WorldSpec:
    """Two agents: atlas and nova (one or two profiles between them), or atlas and an
    outside login to another profile; maybe a bystander; their own turns (small enough
    for an exhaustive search to finish: every verdict is "ruled out")."""
    second = draw(st.sampled_from(("", "anthropic:default", "openai-codex:work")))
    bystanders = draw(st.sampled_from(((), ("google:default",))))
    logs_in = draw(st.booleans())
    # small enough for an exhaustive search to finish
    nova = (HOUR,) if logs_in else draw(st.sampled_from(((HOUR,), (HOUR, 2 * HOUR))))
    agents = [AgentSpec("atlas", (HOUR,)), AgentSpec("nova", nova, profile=second)]
    # an outside writer: a login to a profile no agent refreshes, while atlas refreshes (in
    # place of nova: three agents are past an exhaustive search of the engines that read
    # in many steps)
    others = [key for key in ("mistral:default", *bystanders) if key]
    if logs_in:
        login = draw(st.sampled_from(others))
        agents[1] = AgentSpec("login", (HOUR,), profile=login, logs_in=True)
    return WorldSpec(
        agents=tuple(agents),
        layout=draw(st.sampled_from((StoreLayout.SHARED, StoreLayout.MIRRORED))),
        bystanders=bystanders,
    )


def _search(spec: WorldSpec, name: str, factory: Callable[[], ReferenceEngine]) -> EngineResult:
    entry = EngineEntry(name, factory, Expectation.CLEAN, name)
    return search_engine(
        "profiles", spec, entry, max_examples=5000, seed=0, strategy=Strategy.EXHAUSTIVE
    )


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=worlds(), engine=st.sampled_from(sorted(CORRECT)))
def test_correct_engines_keep_every_profile_in_every_schedule(spec: WorldSpec, engine: str) -> None:
    result = _search(spec, engine, CORRECT[engine])
    assert fatal(result.anomalies) == [], [str(a) for a in result.anomalies]
    assert result.verdict is Verdict.RULED_OUT


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=worlds(), engine=st.sampled_from(sorted(BROKEN)))
def test_engines_that_break_another_profile_are_caught(spec: WorldSpec, engine: str) -> None:
    several = len(spec.profiles) > 1
    result = _search(spec, engine, BROKEN[engine])
    kinds = {anomaly.kind for anomaly in fatal(result.anomalies)}
    if engine == "keeps-only-its-own" and several:  # any save wipes the other profile
        assert AnomalyKind.LOST_UPDATE in kinds
    logins = [agent.name for agent in spec.agents if agent.logs_in]
    profiles = set(map(spec.profile_of, ("atlas", "nova", *logins)))
    if engine == "profile-lock-only" and len(profiles) > 1:
        assert AnomalyKind.LOST_UPDATE in kinds  # two saves under two locks interleave
    if not several:  # one profile: the same engine is correct
        assert kinds == set()


def test_each_profile_is_read_on_its_own_from_the_start() -> None:
    spec = WorldSpec(
        agents=(AgentSpec("atlas", (HOUR,)),),
        layout=StoreLayout.SHARED,
        bystanders=("google:default",),
    )
    result = simulate(spec, ReferenceEngine(), DefaultChooser())
    stores = [e for e in result.events if e.kind is EventKind.STORE]
    first = [(e.step, e.profile, e.generation) for e in stores[:2]]
    assert first == [(0, "openai-codex:default", 0), (0, "google:default", 0)]
    last = {e.profile: e.generation for e in stores}
    assert last == {"openai-codex:default": 1, "google:default": 0}  # the bystander kept


def test_a_one_profile_world_records_stores_as_before() -> None:
    spec = WorldSpec(agents=(AgentSpec("atlas", (HOUR,)),), layout=StoreLayout.SHARED)
    result = simulate(spec, ReferenceEngine(), DefaultChooser())
    stores = [e for e in result.events if e.kind is EventKind.STORE]
    assert [(e.profile, e.generation) for e in stores] == [("", 1)]


def test_world_refuses_a_malformed_or_used_bystander() -> None:
    agents = (AgentSpec("atlas", (HOUR,)),)
    with pytest.raises(Exception, match="provider:profile_id"):
        WorldSpec(agents=agents, bystanders=("nocolon",))
    with pytest.raises(Exception, match="no agent refreshes"):
        WorldSpec(agents=agents, bystanders=("openai-codex:default",))


def _scenario(tmp_path: Path, world: str) -> Path:
    path = tmp_path / "world.toml"
    path.write_text(
        textwrap.dedent(
            """\
            [scenario]
            name = "w"
            [world]
            agents = ["atlas", "nova"]
            """
        )
        + textwrap.dedent(world),
        encoding="utf-8",
    )
    return path


def test_toml_takes_profiles_bystanders_turns_skew_and_torn_writes(tmp_path: Path) -> None:
    path = _scenario(
        tmp_path,
        """\
        turns = { atlas = [3600], nova = [3600, 7200] }
        profiles = { nova = "anthropic:default" }
        bystanders = ["google:default"]
        clock_skew = { nova = 30 }
        torn_writes = true
        """,
    )
    world = load_scenario_file(path).world
    assert [agent.turns for agent in world.agents] == [(3600.0,), (3600.0, 7200.0)]
    assert world.profiles == ("openai-codex:default", "anthropic:default", "google:default")
    assert world.skew("nova") == 30.0
    assert world.torn_writes


@pytest.mark.parametrize(
    ("world", "message"),
    [
        ("turns = { atlas = [1], nvoa = [2] }\n", "'nvoa' is not an agent; did you mean 'nova'"),
        ("turns = { atlas = [1] }\n", r"\[world\] turns nova: must be a non-empty list"),
        ("profiles = { atlas = 3 }\n", r"\[world\] profiles atlas: must be a str"),
        ('clock_skew = { nova = "x" }\n', r"\[world\] clock_skew nova: must be a"),
        ('bystanders = ["nocolon"]\n', "provider:profile_id"),
    ],
)
def test_toml_world_mistakes_name_the_field(tmp_path: Path, world: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        load_scenario_file(_scenario(tmp_path, world))


@pytest.mark.parametrize("engine", sorted(BROKEN))
def test_each_broken_engine_is_caught_in_a_two_profile_world(engine: str) -> None:
    """The property above may draw no two-profile world for an engine: this one always is."""
    spec = WorldSpec(
        agents=(AgentSpec("atlas", (HOUR,)), AgentSpec("nova", (HOUR,), profile="anthropic:x")),
        layout=StoreLayout.SHARED,
    )
    kinds = {anomaly.kind for anomaly in fatal(_search(spec, engine, BROKEN[engine]).anomalies)}
    assert AnomalyKind.LOST_UPDATE in kinds
