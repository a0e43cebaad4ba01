"""No scheduled filesystem outlives its run: a normal end, Ctrl-C, or the harness killed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulator.real import AGENT_ENV, ScheduledMount, fuse_unavailable, mounted

ENGINE = Path(__file__).resolve().parent / "engines" / "fs-store.mjs"

pytestmark = [
    pytest.mark.fuse,
    pytest.mark.skipif(bool(fuse_unavailable()), reason=fuse_unavailable() or "FUSE"),
]


def _mounts_under(root: Path) -> list[str]:
    with open("/proc/mounts", encoding="utf-8") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(str(root))]


def _agents_under(root: Path) -> list[int]:
    """Processes started for an agent by a harness whose TMPDIR is ``root``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"{AGENT_ENV}=".encode() in env and f"TMPDIR={root}".encode() in env:
            found.append(int(entry.name))
    return found


def _until(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.02)
    return False


def _harness(tmp_path: Path) -> subprocess.Popen[bytes]:
    """``check --command … --fs`` in a process of its own, its temporary files in tmp_path."""
    shutil.which("node") or pytest.fail("these tests need Node.js (node) on PATH")
    code = "import sys; from conformance._cli import main; sys.exit(main(sys.argv[1:]))"
    argv = [sys.executable, "-c", code, "check", "--command", f"node {ENGINE} --in-place"]
    argv += ["--fs", "--agents", "atlas,nova", "--report-dir", str(tmp_path / "report")]
    env = dict(os.environ, TMPDIR=str(tmp_path))
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert _until(lambda: _mounts_under(tmp_path), 30), "the harness never mounted"
    return process


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
def test_a_killed_or_interrupted_harness_leaves_no_mount_and_no_agent(
    tmp_path: Path, how: signal.Signals
) -> None:
    process = _harness(tmp_path)
    _until(lambda: _agents_under(tmp_path), 5)  # agents started: some wait at their doors
    process.send_signal(how)
    _, said = process.communicate(timeout=30)
    assert _until(lambda: not _mounts_under(tmp_path), 15), _mounts_under(tmp_path)
    assert _until(lambda: not _agents_under(tmp_path), 15), _agents_under(tmp_path)
    if how is signal.SIGINT:
        assert process.returncode != 0
        assert "Traceback" not in said.decode()


def test_a_mount_ends_with_its_block_and_strangers_pass_unscheduled(tmp_path: Path) -> None:
    backing, mountpoint = tmp_path / "store", tmp_path / "mnt"
    backing.mkdir()
    mountpoint.mkdir()
    (backing / "auth.json").write_text("{}", encoding="utf-8")
    with ScheduledMount(backing, mountpoint) as mount:
        assert mounted(mountpoint)
        # this process is no agent: its operations never wait
        (mountpoint / "auth.json").write_text('{"a": 1}', encoding="utf-8")
        assert (backing / "auth.json").read_text(encoding="utf-8") == '{"a": 1}'
        agent = subprocess.Popen(
            [sys.executable, "-c", f"open({str(mountpoint / 'auth.json')!r}).read()"],
            env=dict(os.environ, **{AGENT_ENV: "atlas"}),
        )
        seen = []
        while agent.poll() is None:
            waiting = mount.waiting()
            if not waiting:
                mount.wait_change(0.01)
                continue
            step = waiting[0]
            seen.append(f"{step.agent} {step.describe()} -> {mount.go(step)}")
        assert agent.returncode == 0
        assert seen[0] == "atlas lookup auth.json -> exists"
        assert "atlas open auth.json O_RDONLY -> ok" in seen
        reads = [s for s in seen if s.startswith("atlas read auth.json ")]
        assert reads[0].endswith(" -> 8 bytes")
        assert seen[-1] == "atlas close auth.json -> ok"
    assert not mounted(mountpoint)
