"""The reference engine through the real-world interpreter: real files, fake server via respx."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx
import pytest
import respx
from _platform import PRIVATE_MODE

from fake_oauth_server import DEFAULT_BASE_URL, AuditKind, AuthServer, Policy, mount_respx
from refresh_engine import (
    AgentContext,
    Credential,
    RealWorld,
    ReferenceEngine,
    ReloginRequired,
    StoreCorrupt,
    profile_key,
    render_store,
    with_credential,
)
from refresh_engine._store import split_path


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(tmp_path: Path):  # type: ignore[no-untyped-def]
    clock = FakeClock(1_767_225_600.0)
    server = AuthServer(Policy.preset("openai"), seed="real")
    pair = server.seed_grant(clock.now)
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
    credential = Credential(pair.access_token, pair.refresh_token, pair.expires_at)
    data = render_store(with_credential({}, ctx.key, ctx.provider, credential))
    Path(ctx.main_store).write_bytes(data)
    with respx.mock(assert_all_called=False) as router, httpx.Client() as http:
        mount_respx(router, server, clock=clock)
        yield server, ctx, clock, RealWorld(http, clock=clock)


def _accepted_refreshes(server: AuthServer) -> int:
    return sum(
        1
        for event in server.audit
        if event.kind is AuditKind.ACCEPTED and event.token_kind.value == "refresh"
    )


def test_reference_engine_across_an_expiry(world) -> None:  # type: ignore[no-untyped-def]
    server, ctx, clock, real = world
    engine = ReferenceEngine()
    first = real.run(engine.access_token(ctx))
    assert server.check_access(first, clock.now).ok
    assert _accepted_refreshes(server) == 0  # fresh at boot: no refresh

    clock.now += server.policy.access_token_lifetime + 1  # past the expiry
    assert not server.check_access(first, clock.now).ok
    second = real.run(engine.access_token(ctx))
    assert second != first
    assert server.check_access(second, clock.now).ok
    assert _accepted_refreshes(server) == 1

    third = real.run(engine.access_token(ctx))  # the stored credential is fresh again
    assert third == second
    assert _accepted_refreshes(server) == 1

    mode = stat.S_IMODE(os.stat(ctx.main_store).st_mode)
    assert mode == PRIVATE_MODE, oct(mode)
    lock = Path(ctx.state_dir, "locks", "openai-codex_default.lock")
    assert lock.exists()
    assert not list(Path(ctx.main_store).parent.glob(".*.tmp"))  # temp file replaced


def test_reused_token_with_nothing_newer_needs_relogin(world) -> None:  # type: ignore[no-untyped-def]
    server, ctx, clock, real = world
    stale = Path(ctx.main_store).read_bytes()
    clock.now += server.policy.access_token_lifetime + 1
    real.run(ReferenceEngine().access_token(ctx))  # rotates the token
    Path(ctx.main_store).write_bytes(stale)  # someone restores the old copy
    with pytest.raises(ReloginRequired, match="new login is required") as caught:
        real.run(ReferenceEngine().access_token(ctx))
    assert "trr_" not in str(caught.value)
    assert "tra_" not in str(caught.value)


def test_corrupt_store_is_reported_not_overwritten(world) -> None:  # type: ignore[no-untyped-def]
    _, ctx, _, real = world
    Path(ctx.main_store).write_bytes(b'{"profiles": {"openai-codex:def')
    with pytest.raises(StoreCorrupt, match="not valid JSON"):
        real.run(ReferenceEngine().access_token(ctx))
    assert Path(ctx.main_store).read_bytes() == b'{"profiles": {"openai-codex:def'


def test_profile_key_shape() -> None:
    assert profile_key("openai-codex", "default") == "openai-codex:default"


@pytest.mark.parametrize(
    ("path", "split"),
    [
        ("/home/u/auth.json", ("/home/u", "auth.json")),
        ("/auth.json", ("/", "auth.json")),
        ("C:\\Users\\u\\auth.json", ("C:\\Users\\u", "auth.json")),
        ("C:\\Users\\u\\state/locks/k.lock", ("C:\\Users\\u\\state/locks", "k.lock")),
        ("auth.json", ("", "auth.json")),
    ],
)
def test_paths_split_at_either_separator(path: str, split: tuple[str, str]) -> None:
    """A Windows user's store path has backslashes: the temp file and the lock dir must
    land beside it, not in the working directory (a Windows host found this)."""
    assert split_path(path) == split
