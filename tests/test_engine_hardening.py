"""The reference engine on hostile real files: each test is a defect it once had.

E1 a store it cannot write is found before the token is spent; E2 temp files are
made fresh (never through a planted symlink, never an old file's mode); E4 a
strict schema; E5 only regular files are read, with a size cap; E6 a profile's
other fields survive a save; E7 what a killed writer staged is rolled forward;
E3 a symlinked store stays a link and its target gets the new credential.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from _platform import PRIVATE_MODE

from fake_oauth_server import AuditKind, AuthServer
from refresh_engine import (
    AgentContext,
    Credential,
    ReferenceEngine,
    StoreCorrupt,
    StoreUnreadable,
    render_store,
    temp_path,
    with_credential,
)

POSIX = pytest.mark.skipif(os.name != "posix", reason="FIFOs, devices and symlinks are POSIX's")


def _presented(server: AuthServer) -> int:
    return sum(1 for event in server.audit if event.kind is AuditKind.PRESENTED)


def _expire(server: AuthServer, clock) -> None:  # type: ignore[no-untyped-def]
    clock.now += server.policy.access_token_lifetime + 1


def _profile(ctx: AgentContext) -> dict[str, object]:
    profile: dict[str, object] = json.loads(Path(ctx.main_store).read_bytes())["profiles"][ctx.key]
    return profile


def _staged(ctx: AgentContext) -> Path:
    return Path(temp_path(ctx.main_store, ctx.staging))


def _edit_profile(ctx: AgentContext, **fields: object) -> None:
    document = json.loads(Path(ctx.main_store).read_bytes())
    document["profiles"][ctx.key].update(fields)
    Path(ctx.main_store).write_text(json.dumps(document))


# ------------------------------------------------------------------ E1: unwritable


@pytest.mark.skipif(sys.platform != "linux", reason="mount namespaces are Linux's")
@pytest.mark.parametrize(
    ("mode", "reason"), [("readonly", "Read-only file system"), ("full", "No space left")]
)
def test_an_unwritable_store_directory_fails_before_the_server_sees_a_request(
    tmp_path: Path, mode: str, reason: str
) -> None:
    """Read-only (a bind mount) or full (a 16 KiB tmpfs): the engine raises
    ``StoreUnwritable`` naming the directory, and the server saw nothing presented."""
    unshare = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
    probe = Path(__file__).with_name("store_dir_probe.py")
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    done = subprocess.run(
        [*unshare, sys.executable, str(probe), mode, str(store_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["presented"] == 0, result
    assert result["error"].startswith(f"StoreUnwritable: atlas: cannot create files in {store_dir}")
    assert reason in result["error"]
    assert "the refresh token was not presented" in result["error"]
    assert "\n" not in result["error"]


# -------------------------------------------------------------- E2: fresh temp files


@POSIX
@pytest.mark.parametrize("staging", ["", ".rf"])
def test_a_planted_symlink_at_a_temp_path_is_never_written_through(
    real_world, tmp_path: Path, staging: str
) -> None:  # type: ignore[no-untyped-def]
    server, ctx, clock, real = real_world
    target = tmp_path / "elsewhere"
    target.write_bytes(b"untouched")
    Path(temp_path(ctx.main_store, ctx.staging + staging)).symlink_to(target)
    _expire(server, clock)
    token = real.run(ReferenceEngine().access_token(ctx))
    assert server.check_access(token, clock.now).ok
    assert target.read_bytes() == b"untouched"
    store = Path(ctx.main_store)
    assert not store.is_symlink()
    assert stat.S_IMODE(store.stat().st_mode) == PRIVATE_MODE
    assert _profile(ctx)["access"] == token
    assert not list(store.parent.glob(".*.tmp"))


def test_a_leftover_world_readable_temp_file_does_not_make_the_store_readable(
    real_world,
) -> None:  # type: ignore[no-untyped-def]
    server, ctx, clock, real = real_world
    leftover = _staged(ctx)
    leftover.write_bytes(b'{"profiles": {"partial')
    leftover.chmod(0o644)
    _expire(server, clock)
    real.run(ReferenceEngine().access_token(ctx))
    assert stat.S_IMODE(Path(ctx.main_store).stat().st_mode) == PRIVATE_MODE
    assert not leftover.exists()  # a partial staged file is removed
    assert _presented(server) == 1


# ------------------------------------------------------------ E4: a strict schema


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"refresh": None}, "'refresh'"),
        ({"refresh": ""}, "'refresh'"),
        ({"access": 12}, "'access'"),
        ({"expires": "soon"}, "'expires'"),
        ({"expires": True}, "'expires'"),
        ({"expires": 1_767_225_600_000}, "milliseconds"),
        ({"expires": float("inf")}, "finite"),
        ({"expires": -1}, "not negative"),
    ],
)
def test_a_field_of_the_wrong_type_is_store_corrupt_naming_it(
    real_world, fields: dict[str, object], named: str
) -> None:  # type: ignore[no-untyped-def]
    """Nothing is coerced: ``null`` is no token (it was sent as the string "None")."""
    server, ctx, clock, real = real_world
    _edit_profile(ctx, **fields)
    before = Path(ctx.main_store).read_bytes()
    _expire(server, clock)
    with pytest.raises(StoreCorrupt, match=named) as caught:
        real.run(ReferenceEngine().access_token(ctx))
    assert ctx.main_store in str(caught.value)
    assert _presented(server) == 0
    assert Path(ctx.main_store).read_bytes() == before  # kept as it was


# ------------------------------------------------- E5: only regular files, capped


@POSIX
def test_a_fifo_in_place_of_the_store_is_refused_not_waited_on(real_world) -> None:  # type: ignore[no-untyped-def]
    _, ctx, _, real = real_world
    os.unlink(ctx.main_store)
    os.mkfifo(ctx.main_store)
    with pytest.raises(StoreUnreadable, match="not a regular file") as caught:
        real.run(ReferenceEngine().access_token(ctx))
    assert ctx.main_store in str(caught.value)


@POSIX
def test_a_store_linked_to_a_device_is_refused_not_read_without_end(real_world) -> None:  # type: ignore[no-untyped-def]
    _, ctx, _, real = real_world
    os.unlink(ctx.main_store)
    os.symlink("/dev/zero", ctx.main_store)
    with pytest.raises(StoreUnreadable, match="not a regular file"):
        real.run(ReferenceEngine().access_token(ctx))


def test_a_store_over_the_size_cap_is_corrupt(real_world) -> None:  # type: ignore[no-untyped-def]
    _, ctx, _, real = real_world
    Path(ctx.main_store).write_bytes(b" " * (1 << 20) + b"{}")
    with pytest.raises(StoreCorrupt, match="over 1048576 bytes"):
        real.run(ReferenceEngine().access_token(ctx))


def test_deeply_nested_json_is_corrupt_not_a_recursion_error(real_world) -> None:  # type: ignore[no-untyped-def]
    _, ctx, _, real = real_world
    Path(ctx.main_store).write_bytes(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(StoreCorrupt, match="nested too deeply"):
        real.run(ReferenceEngine().access_token(ctx))


def test_an_unreadable_store_names_its_path(real_world, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """EACCES (made here, since root reads a 0000 file) is ``StoreUnreadable`` with the path."""
    _, ctx, _, real = real_world
    real_open = os.open

    def refuse(path: str, flags: int, mode: int = 0o777) -> int:
        if os.fspath(path) == ctx.main_store:
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(StoreUnreadable, match="Permission denied") as caught:
        real.run(ReferenceEngine().access_token(ctx))
    assert ctx.main_store in str(caught.value)


# ------------------------------------------------------- E6: unknown fields kept


def test_a_save_keeps_the_profiles_other_fields(real_world) -> None:  # type: ignore[no-untyped-def]
    server, ctx, clock, real = real_world
    _edit_profile(ctx, email="user@example.com", accountId="acct-7")
    _expire(server, clock)
    token = real.run(ReferenceEngine().access_token(ctx))
    profile = _profile(ctx)
    assert profile["access"] == token
    assert (profile["email"], profile["accountId"]) == ("user@example.com", "acct-7")


# ------------------------------------------------------------ E3: a linked store


def _link_store(ctx: AgentContext, tmp_path: Path, hops: int, relative: bool) -> Path:
    """Move the store into ``tmp_path/dotfiles`` and leave a chain of ``hops`` links to it
    at the store's name; the real file's path."""
    target = tmp_path / "dotfiles" / "auth-profiles.json"
    target.parent.mkdir()
    os.replace(ctx.main_store, target)
    names = [Path(ctx.main_store), *(tmp_path / "main" / f"hop{i}" for i in range(hops - 1))]
    for name, points_to in zip(names, [*names[1:], target], strict=True):
        os.symlink(os.path.relpath(points_to, name.parent) if relative else points_to, name)
    return target


@POSIX
@pytest.mark.parametrize(("hops", "relative"), [(1, False), (1, True), (3, True)])
def test_a_symlinked_store_stays_a_link_and_its_target_gets_the_new_credential(
    real_world, tmp_path: Path, hops: int, relative: bool
) -> None:  # type: ignore[no-untyped-def]
    server, ctx, clock, real = real_world
    target = _link_store(ctx, tmp_path, hops, relative)
    link = os.readlink(ctx.main_store)
    _expire(server, clock)
    token = real.run(ReferenceEngine().access_token(ctx))
    assert os.readlink(ctx.main_store) == link  # still the same link
    stored = json.loads(target.read_bytes())["profiles"][ctx.key]
    assert stored["access"] == token
    assert stat.S_IMODE(target.stat().st_mode) == PRIVATE_MODE
    assert not list(target.parent.glob(".*.tmp"))
    assert not list(Path(ctx.main_store).parent.glob(".*.tmp"))
    _expire(server, clock)  # and the next refresh, through the link, presents the new token
    assert server.check_access(real.run(ReferenceEngine().access_token(ctx)), clock.now).ok
    assert _presented(server) == 2


@POSIX
def test_a_symlink_loop_at_the_store_is_unreadable_naming_it(real_world) -> None:  # type: ignore[no-untyped-def]
    server, ctx, clock, real = real_world
    os.unlink(ctx.main_store)
    os.symlink(os.path.basename(ctx.main_store), ctx.main_store)  # a link to itself
    with pytest.raises(StoreUnreadable, match="auth-profiles.json"):
        real.run(ReferenceEngine().access_token(ctx))
    assert _presented(server) == 0


# ------------------------------------------------------------- E7: roll forward


def _stage_a_refresh(server: AuthServer, ctx: AgentContext, clock) -> Credential:  # type: ignore[no-untyped-def]
    """What a writer killed before its replace leaves: the server rotated, and the new
    credential is complete in the staged temp file only."""
    document = json.loads(Path(ctx.main_store).read_bytes())
    spent = document["profiles"][ctx.key]["refresh"]
    form = {"grant_type": "refresh_token", "refresh_token": spent, "client_id": ctx.client_id}
    answer = httpx.post(ctx.token_url, data=form).json()  # respx routes it to ``server``
    fresh = Credential(
        answer["access_token"], answer["refresh_token"], clock.now + answer["expires_in"]
    )
    _staged(ctx).write_bytes(render_store(with_credential(document, ctx.key, ctx.provider, fresh)))
    return fresh


def test_a_staged_credential_newer_than_the_store_is_rolled_forward(real_world) -> None:  # type: ignore[no-untyped-def]
    server, ctx, clock, real = real_world
    _expire(server, clock)
    fresh = _stage_a_refresh(server, ctx, clock)
    presented = _presented(server)
    token = real.run(ReferenceEngine().access_token(ctx))
    assert token == fresh.access  # recovered, not refreshed again
    assert _presented(server) == presented  # the spent token was never presented
    assert _profile(ctx)["refresh"] == fresh.refresh
    assert not list(Path(ctx.main_store).parent.glob(".*.tmp"))


def test_a_staged_credential_older_than_the_store_is_removed_not_used(real_world) -> None:  # type: ignore[no-untyped-def]
    server, ctx, clock, real = real_world
    old = Path(ctx.main_store).read_bytes()
    _expire(server, clock)
    real.run(ReferenceEngine().access_token(ctx))  # the store moves on
    _staged(ctx).write_bytes(old)
    _expire(server, clock)
    token = real.run(ReferenceEngine().access_token(ctx))
    assert server.check_access(token, clock.now).ok
    assert not _staged(ctx).exists()


def test_a_replace_that_fails_keeps_the_new_credential_and_says_where(
    real_world, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    server, ctx, clock, real = real_world
    _expire(server, clock)

    def refuse(src: str, dst: str) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="the new credential is kept in") as caught:
        real.run(ReferenceEngine().access_token(ctx))
    assert "trr_" not in str(caught.value)
    monkeypatch.undo()
    assert _staged(ctx).exists()
    token = real.run(ReferenceEngine().access_token(ctx))  # the next run recovers it
    assert server.check_access(token, clock.now).ok
    assert _presented(server) == 1


def test_the_staging_name_differs_per_profile_and_is_safe_in_a_file_name() -> None:
    names = {
        AgentContext("a", provider, profile, "/s", "/a", "/", "u").staging
        for provider, profile in [("openai", "x"), ("openai", "x/.."), ("openai:x", ""), ("o", "x")]
    }
    assert len(names) == 4
    assert all(set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-_") for name in names)
