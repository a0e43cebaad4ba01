"""Shared fixtures: worlds small enough for unit tests, engines by name."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import respx

from conformance import headline
from fake_oauth_server import DEFAULT_BASE_URL, AuthServer, Policy, mount_respx
from refresh_engine import AgentContext, Credential, RealWorld, render_store, with_credential
from simulator import AgentSpec, StoreLayout, WorldSpec


@pytest.fixture
def two_agents() -> WorldSpec:
    """Two agents in their own processes, both asking at boot and at the first expiry."""
    lifetime = Policy.preset("openai").access_token_lifetime
    return WorldSpec(
        agents=(AgentSpec("atlas", (0.0, lifetime)), AgentSpec("nova", (0.0, lifetime))),
        policy=Policy.preset("openai"),
        layout=StoreLayout.MIRRORED,
    )


@pytest.fixture
def headline_world() -> WorldSpec:
    return headline()


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def seeded_store(tmp_path: Path, server: AuthServer, now: float) -> AgentContext:
    """Atlas's context, its store under ``tmp_path/main`` holding a grant seeded at ``now``."""
    ctx = AgentContext(
        agent="atlas",
        provider="openai-codex",
        profile_id="default",
        main_store=str(tmp_path / "main" / "auth-profiles.json"),
        agent_dir=str(tmp_path / "atlas"),
        state_dir=str(tmp_path),
        token_url=DEFAULT_BASE_URL + "/oauth/token",
    )
    (tmp_path / "main").mkdir()
    pair = server.seed_grant(now)
    credential = Credential(pair.access_token, pair.refresh_token, pair.expires_at)
    Path(ctx.main_store).write_bytes(
        render_store(with_credential({}, ctx.key, ctx.provider, credential))
    )
    return ctx


@pytest.fixture
def real_world(tmp_path: Path):  # type: ignore[no-untyped-def]
    """The reference's real interpreter on files under ``tmp_path``, the fake server
    behind respx: (server, ctx, clock, RealWorld); the store holds a fresh grant."""
    clock = FakeClock(1_767_225_600.0)
    server = AuthServer(Policy.preset("openai"), seed="real")
    ctx = seeded_store(tmp_path, server, clock.now)
    with respx.mock(assert_all_called=False) as router, httpx.Client() as http:
        mount_respx(router, server, clock=clock)
        yield server, ctx, clock, RealWorld(http, clock=clock)
