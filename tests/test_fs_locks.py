"""flock(2) through a scheduled filesystem: a step decided on the backing file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulator.real import AGENT_ENV, ScheduledMount, StallWatch, fuse_unavailable

pytestmark = [
    pytest.mark.fuse,
    pytest.mark.skipif(bool(fuse_unavailable()), reason=fuse_unavailable() or "FUSE"),
]

#: read a counter and write it back plus one, under flock (or not, with "nolock")
INCREMENT = """
import fcntl, sys
root, locked = sys.argv[1], sys.argv[2] == "lock"
with open(root + "/lock", "a") as lock:
    if locked:
        fcntl.flock(lock, fcntl.LOCK_EX)
    with open(root + "/counter") as counter:
        value = int(counter.read())
    with open(root + "/counter", "w") as counter:
        counter.write(str(value + 1))
    if locked:
        fcntl.flock(lock, fcntl.LOCK_UN)
"""


def _interleave(tmp_path: Path, mode: str) -> tuple[int, list[str]]:
    """Two agents increment, the other agent's step always first when both wait."""
    backing, mountpoint = tmp_path / "store", tmp_path / "mnt"
    backing.mkdir()
    mountpoint.mkdir()
    (backing / "counter").write_text("0", encoding="utf-8")
    seen: list[str] = []
    with ScheduledMount(backing, mountpoint) as mount:
        agents = {
            name: subprocess.Popen(
                [sys.executable, "-c", INCREMENT, str(mountpoint), mode],
                env=dict(os.environ, **{AGENT_ENV: name}),
            )
            for name in ("a", "b")
        }
        last, blocked, stalls = "", set[str](), StallWatch()
        deadline = time.monotonic() + 30
        while any(p.poll() is None for p in agents.values()) and time.monotonic() < deadline:
            live = {name for name, p in agents.items() if p.poll() is None}
            waiting = {step.agent: step for step in reversed(mount.waiting())}
            now = time.monotonic()
            stalled = {n for n in live - set(waiting) if stalls.stalled(n, agents[n].pid, now)}
            if not live <= set(waiting) | blocked | stalled:
                mount.wait_change(0.01)
                continue
            choices = [n for n in sorted(waiting) if n != last and n not in blocked]
            choices = choices or sorted(waiting)
            if not choices:
                mount.wait_change(0.01)
                continue
            step = waiting[choices[0]]
            result = mount.go(step)
            seen.append(f"{step.agent} {step.describe()} -> {result}")
            if result == "EAGAIN":
                blocked.add(step.agent)
            elif step.op == "flock" or step.op == "close":
                blocked.clear()  # a lock released or a file closed: try again
            last = step.agent
        assert all(p.poll() is not None for p in agents.values()), "\n".join(seen)  # in time
        assert all(p.wait() == 0 for p in agents.values())
    return int((backing / "counter").read_text(encoding="utf-8")), seen


def test_flock_is_a_step_and_excludes_the_other_agent(tmp_path: Path) -> None:
    value, seen = _interleave(tmp_path, "lock")
    assert value == 2, seen
    first = next(s for s in seen if s.endswith(" flock lock LOCK_EX -> ok"))[0]
    other = "b" if first == "a" else "a"
    assert f"{other} flock lock LOCK_EX -> EAGAIN" in seen  # it tried while first held it
    assert seen.index(f"{first} flock lock LOCK_UN -> ok") < seen.index(
        f"{other} flock lock LOCK_EX -> ok"
    )


def test_without_the_lock_the_same_interleaving_loses_an_update(tmp_path: Path) -> None:
    value, seen = _interleave(tmp_path, "nolock")
    assert value == 1, seen
