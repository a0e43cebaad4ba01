"""pytest fixtures for testing OAuth clients against the fake server.

Registered through the ``pytest11`` entry point, so installing tokenrace is
enough.  Fixtures:

``fake_oauth``
    an ``InProcessServer``: the server behind respx, no socket; any httpx
    request to ``fake_oauth.base_url`` reaches it, time is a ``ManualClock``.
``fake_oauth_http``
    a ``RunningServer``: the real HTTP server on 127.0.0.1 (one per session,
    reset before each test), with its ``control`` client; for clients that
    are not httpx, or other processes.

Both take their policy from the ``fake_oauth`` marker::

    @pytest.mark.fake_oauth(policy="keycloak", seed="s1")
    def test_my_client(fake_oauth): ...
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._policy import Policy
from ._respx import InProcessServer, respx_server
from ._serve import RunningServer, serve_in_thread

MARKER = "fake_oauth"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(policy='openai', seed='0'): the policy (a preset name or a Policy) and "
        "minting seed of the fake_oauth and fake_oauth_http fixtures",
    )


def _settings(request: pytest.FixtureRequest) -> tuple[Policy | str, str]:
    marker = request.node.get_closest_marker(MARKER)
    if marker is None:
        return "openai", "0"
    policy = marker.kwargs.get("policy", marker.args[0] if marker.args else "openai")
    return policy, str(marker.kwargs.get("seed", "0"))


@pytest.fixture
def fake_oauth(request: pytest.FixtureRequest) -> Iterator[InProcessServer]:
    """The fake server behind respx for this test (see the module docstring)."""
    policy, seed = _settings(request)
    with respx_server(policy, seed=seed) as server:
        yield server


@pytest.fixture(scope="session")
def _fake_oauth_http_session() -> Iterator[RunningServer]:
    with serve_in_thread() as server:
        yield server


@pytest.fixture
def fake_oauth_http(
    request: pytest.FixtureRequest, _fake_oauth_http_session: RunningServer
) -> RunningServer:
    """The real fake server on loopback, reset to this test's policy and seed."""
    policy, seed = _settings(request)
    chosen = Policy.preset(policy) if isinstance(policy, str) else policy
    _fake_oauth_http_session.control.reset(seed=seed, policy=chosen)
    return _fake_oauth_http_session
