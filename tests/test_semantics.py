"""The semantics table covers every effect and every fault, and says "dependent" when unsure."""

from __future__ import annotations

import dataclasses
import errno
import typing

import pytest

import simulator._semantics as semantics
from fake_oauth_server import AuthServer, Policy, fingerprint
from refresh_engine import (
    Close,
    CreateExclusive,
    Effect,
    Flock,
    Fsync,
    HttpPost,
    Lockf,
    LockFileEx,
    LockOp,
    Mkdir,
    MsvcrtMode,
    Now,
    Open,
    OpenFlags,
    Read,
    Replace,
    Truncate,
    Write,
)
from simulator import FaultKind, VirtualFS
from simulator._footprint import EVERYTHING, dependent
from simulator._history import describe_effect

SAMPLE_FIELDS: dict[str, object] = {
    "path": "/d/f",
    "src": "/d/f",
    "dst": "/d/g",
    "flags": OpenFlags.READ,
    "fd": 3,
    "size": 0,
    "data": b"x",
    "op": LockOp.EXCLUSIVE,
    "mode": MsvcrtMode.LOCK,
    "name": "m",
    "pid": 1,
    "url": "http://127.0.0.1:8900/oauth/token",
    "body": b"",
    "seconds": 1.0,
    "message": "hi",
}


def sample(effect_type: type) -> Effect:
    """An instance of ``effect_type`` with plausible required fields."""
    required = {
        field.name: SAMPLE_FIELDS[field.name]
        for field in dataclasses.fields(effect_type)
        if field.default is dataclasses.MISSING
    }
    return typing.cast(Effect, effect_type(**required))


def scene() -> semantics.Scene:
    fs = VirtualFS()
    fs.makedirs("/d")
    fs.write_file("/d/f", b"data")
    fs.open(7, "/d/f", OpenFlags.READ)
    return semantics.Scene(fs, 7, "atlas")


@pytest.mark.parametrize("effect_type", typing.get_args(Effect), ids=lambda t: t.__name__)
def test_every_effect_has_one_row(effect_type: type) -> None:
    effect = sample(effect_type)
    rule = semantics.rule_for(effect)
    assert rule.effect is effect_type
    assert [row.effect for row in semantics.TABLE].count(effect_type) == 1
    touched = semantics.footprint(scene(), effect)
    assert touched  # a step always touches something, if only its agent
    performs = rule.performer is semantics.Performer.OS
    assert (rule.perform is not None) == performs


@pytest.mark.parametrize("effect_type", typing.get_args(Effect), ids=lambda t: t.__name__)
def test_every_row_says_how_a_history_describes_its_effect(effect_type: type) -> None:
    """One line per effect, from its own row: never the type's bare name, never a raw token."""
    effect = sample(effect_type)
    line = describe_effect(effect)
    assert line == semantics.rule_for(effect).describe(effect)
    assert line
    assert "\n" not in line
    assert line != effect_type.__name__  # the row's own describer, not the fallback


def test_a_history_line_shows_a_posted_token_as_a_fingerprint() -> None:
    token = AuthServer(Policy.preset("openai")).seed_grant(0.0).refresh_token
    body = f"grant_type=refresh_token&refresh_token={token}".encode()
    line = describe_effect(HttpPost("http://127.0.0.1:8900/oauth/token", body))
    assert token not in line
    assert fingerprint(token) in line


def test_describing_a_non_effect_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="not an effect"):
        describe_effect(typing.cast(Effect, object()))


def test_the_table_is_the_union() -> None:
    assert [row.effect for row in semantics.TABLE] == list(typing.get_args(Effect))


def test_an_effect_outside_the_table_touches_everything() -> None:
    @dataclasses.dataclass(frozen=True)
    class Teleport:
        path: str

    unknown = typing.cast(Effect, Teleport("/d/f"))
    touched = semantics.footprint(scene(), unknown)
    assert touched == EVERYTHING
    assert dependent(touched, semantics.footprint(scene(), sample(typing.get_args(Effect)[-1])))


@pytest.mark.parametrize("fault", list(FaultKind), ids=lambda kind: kind.value)
def test_every_fault_has_a_footprint_that_spends_the_budget(fault: FaultKind) -> None:
    touched = semantics.fault_footprint(fault, "atlas")
    other = semantics.fault_footprint(FaultKind.DROP, "nova")
    assert dependent(touched, other)  # one budget: a fault can use up another's


@pytest.mark.parametrize("fault", [FaultKind.KILL, FaultKind.CRASH])
def test_kill_and_crash_depend_on_every_write(fault: FaultKind) -> None:
    touched = semantics.fault_footprint(fault, "atlas")
    for effect_type in typing.get_args(Effect):
        assert dependent(touched, semantics.footprint(scene(), sample(effect_type)))


def test_descriptor_calls_read_the_slot_the_next_open_takes() -> None:
    """The VFS reuses the lowest free fd: an open by one agent of a process and a read of
    that number by another agent of the same process do not commute."""
    here = scene()
    opening = semantics.footprint(here, sample(typing.get_args(Effect)[0]))  # Open -> fd 4
    reading = semantics.footprint(here, semantics.READ.effect(4))
    assert dependent(opening, reading)


def test_path_calls_depend_on_their_parent_directory() -> None:
    here = scene()
    making = semantics.footprint(here, semantics.MKDIR.effect("/e"))
    creating = semantics.footprint(
        here, semantics.OPEN.effect("/e/x", OpenFlags.CREATE | OpenFlags.WRITE)
    )
    assert dependent(making, creating)


def test_the_table_names_which_calls_an_ioerror_strikes_and_with_which_errno() -> None:
    """The writes of a save and the taking of a lock can fail; a read-only open, a read,
    a close and an unlock are never struck (their failures are not what breaks a save)."""
    expected: dict[object, int | None] = {
        Open("/s", OpenFlags.READ): None,
        Open("/s", OpenFlags.WRITE | OpenFlags.CREATE): errno.ENOSPC,
        CreateExclusive("/l"): errno.ENOSPC,
        Write(3, b"x"): errno.ENOSPC,
        Truncate(3): errno.EIO,
        Fsync(3): errno.EIO,
        Replace("/t", "/s"): errno.EROFS,
        Mkdir("/d"): errno.ENOSPC,
        Flock(3, LockOp.EXCLUSIVE): errno.ENOLCK,
        Lockf(3, LockOp.SHARED): errno.ENOLCK,
        LockFileEx(3, LockOp.EXCLUSIVE): errno.ENOLCK,
        Flock(3, LockOp.UNLOCK): None,
        Read(3): None,
        Close(3): None,
        Now(): None,
    }
    for effect, code in expected.items():
        failed = semantics.io_failure(effect)  # type: ignore[arg-type]
        assert (failed.errno if failed is not None else None) == code, effect
