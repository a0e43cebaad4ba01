"""The scheduled filesystem's cost, and the time to find file races black-box with it.

    python benchmarks/bench_fs.py [--quick] [--ops 400] [--budget 120]

1. **File steps per second**: one agent process (this Python) opens, reads,
   writes and closes a small file ``--ops`` times under the mount while the
   harness lets every step through as soon as it arrives (``ScheduledMount.go``),
   against the same loop through the mount with scheduling off (the FUSE
   passthrough alone) and on the backing directory itself.
2. **Time to find** classes 8 (torn read: rewritten in place) and 7 (stale
   snapshot) in ``tests/engines/fs-store.mjs``, black-box: ``check --fs``'s
   search (runs and seconds to the first failing schedule) against a
   free-running stress loop of the same two programs (same mount, same
   server, nothing held), repeated until a run fails or ``--budget`` seconds
   pass.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conformance import command_scenario, format_schedule, run_fs, search_schedules
from simulator.real import AGENT_ENV, ScheduledMount, fuse_unavailable

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "tests" / "engines" / "fs-store.mjs"
AGENTS = ("atlas", "nova")
#: one agent's loop: per turn an open+write+close and an open+read+close of one small file
LOOP = """
import os, sys, time
path, turns = sys.argv[1], int(sys.argv[2])
start = time.perf_counter()
for turn in range(turns):
    with open(path, "w") as out:
        out.write('{"turn": %d}' % turn)
    with open(path) as back:
        back.read()
print(time.perf_counter() - start)
"""


def _loop(path: Path, turns: int, env: dict[str, str]) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", LOOP, str(path), str(turns)]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)


def steps_per_second(turns: int) -> list[tuple[str, float, int]]:
    """(setting, seconds, steps) for the loop on the mount (scheduled, free) and on disk."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="tokenrace-bench-fs-") as temp:
        backing, mountpoint = Path(temp, "store"), Path(temp, "mnt")
        backing.mkdir()
        mountpoint.mkdir()
        direct = _loop(backing / "f.json", turns, dict(os.environ))
        rows.append(("backing directory, no FUSE", float(direct.communicate()[0]), 0))
        with ScheduledMount(backing, mountpoint) as mount:
            agent = _loop(mountpoint / "f.json", turns, dict(os.environ, **{AGENT_ENV: "a"}))
            steps = 0
            while agent.poll() is None:
                waiting = mount.waiting()
                if not waiting:
                    mount.wait_change(0.001)
                    continue
                mount.go(waiting[0])
                steps += 1
            rows.append(("scheduled: every step released", float(agent.communicate()[0]), steps))
            mount.free()
            free = _loop(mountpoint / "f.json", turns, dict(os.environ, **{AGENT_ENV: "a"}))
            rows.append(("mounted, scheduling off", float(free.communicate()[0]), 0))
    return rows


def time_to_find(flag: str, budget: float) -> tuple[str, str]:
    """(search, stress): runs and seconds to the first failure, or what was spent."""
    scenario = command_scenario(f"node {ENGINE} {flag}", AGENTS)
    started = time.perf_counter()
    search = f"not found in {budget:g}s"
    runs = search_schedules(lambda schedule: run_fs(scenario, schedule), 2, 1000)
    for count, run in enumerate(runs, 1):
        if run.client.run.failed:
            schedule = format_schedule(run.schedule)
            elapsed = time.perf_counter() - started
            search = f"{count} runs, {elapsed:.1f}s (schedule {schedule})"
            break
        if time.perf_counter() - started > budget:
            break
    started, tries = time.perf_counter(), 0
    stress = f"not found: {{tries}} runs in {budget:g}s"
    while time.perf_counter() - started < budget:
        tries += 1
        if run_fs(scenario, free=True).client.run.failed:
            stress = f"{tries} runs, {time.perf_counter() - started:.1f}s"
            break
    return search, stress.format(tries=tries)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer turns, a 30 s budget")
    parser.add_argument("--ops", type=int, default=400, help="turns of the step loop")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds per search")
    args = parser.parse_args()
    reason = fuse_unavailable()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    turns = 50 if args.quick else args.ops
    budget = 30.0 if args.quick else args.budget
    print(f"File steps through the scheduled filesystem ({turns} turns of write+read):")
    for setting, seconds, steps in steps_per_second(turns):
        rate = f", {steps} steps, {steps / seconds:.0f} steps/s" if steps else ""
        print(f"  {setting:<34} {seconds:7.3f}s{rate}")
    print(f"Time to find, black-box (budget {budget:g}s each):")
    for name, flag in (("class 8, torn read", "--in-place"), ("class 7, stale snapshot",
                                                              "--stale-snapshot")):  # fmt: skip
        search, stress = time_to_find(flag, budget)
        print(f"  {name:<24} check --fs search: {search}; free-running stress: {stress}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
