"""The reference engine through the real-world interpreter: real files, fake server via respx."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from _platform import PRIVATE_MODE

from fake_oauth_server import AuditKind, AuthServer
from refresh_engine import (
    ReferenceEngine,
    ReloginRequired,
    StoreCorrupt,
    profile_key,
)
from refresh_engine._store import split_path


def _accepted_refreshes(server: AuthServer) -> int:
    return sum(
        1
        for event in server.audit
        if event.kind is AuditKind.ACCEPTED and event.token_kind.value == "refresh"
    )


def test_reference_engine_across_an_expiry(real_world) -> None:  # type: ignore[no-untyped-def]
    server, ctx, clock, real = real_world
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


def test_reused_token_with_nothing_newer_needs_relogin(real_world) -> None:  # type: ignore[no-untyped-def]
    server, ctx, clock, real = real_world
    stale = Path(ctx.main_store).read_bytes()
    clock.now += server.policy.access_token_lifetime + 1
    real.run(ReferenceEngine().access_token(ctx))  # rotates the token
    Path(ctx.main_store).write_bytes(stale)  # someone restores the old copy
    with pytest.raises(ReloginRequired, match="new login is required") as caught:
        real.run(ReferenceEngine().access_token(ctx))
    assert "trr_" not in str(caught.value)
    assert "tra_" not in str(caught.value)


def test_corrupt_store_is_reported_not_overwritten(real_world) -> None:  # type: ignore[no-untyped-def]
    _, ctx, _, real = real_world
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
