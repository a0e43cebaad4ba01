"""Shared fixtures: worlds small enough for unit tests, engines by name."""

from __future__ import annotations

import pytest

from conformance import headline
from fake_oauth_server import Policy
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
