"""Smoke test of benchmarks/bench_fs.py: the step-rate loop runs and counts real steps."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from simulator.real import fuse_unavailable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_fs  # noqa: E402

pytestmark = [
    pytest.mark.fuse,
    pytest.mark.skipif(bool(fuse_unavailable()), reason=fuse_unavailable() or "FUSE"),
]


def test_every_turn_of_the_loop_is_scheduled_steps() -> None:
    rows = {setting: (seconds, steps) for setting, seconds, steps in bench_fs.steps_per_second(5)}
    seconds, steps = rows["scheduled: every step released"]
    # per turn: lookup, open, write, close and lookup, open, read (twice: data, then EOF), close
    assert steps >= 5 * 8
    assert seconds > 0
    assert rows["backing directory, no FUSE"][1] == 0
