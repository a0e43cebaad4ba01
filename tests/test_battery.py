"""The battery ``check --engine`` runs: worlds on the dimensions of the world.

The reference must be clean in every one (the full budgets with ``-m slow``;
a capped budget by default), every label must replay as the world it names,
and a bug outside the corpus must meet the world that exposes it.
"""

from __future__ import annotations

import dataclasses

import pytest

from conformance import ConformanceError, fatal
from conformance._battery import BATTERY
from conformance._check_engine import check_cells
from conformance._matrix import run_cell
from conformance._worlds import GeneratedWorld
from simulator import FaultKind

DIMENSIONS = {
    "topology",
    "server fault",
    "process fault",
    "disk fault",
    "population",
    "os",
    "layout",
}


def test_the_battery_covers_every_dimension_with_distinct_replayable_labels() -> None:
    labels = [entry.label for entry in BATTERY]
    assert len(set(labels)) == len(labels)
    assert {entry.dimension.split(":")[0] for entry in BATTERY} == DIMENSIONS
    for entry in BATTERY:
        again = GeneratedWorld.parse(entry.label)
        assert again == entry.world
        assert again.world() == entry.world.world()  # the label builds the very same world


def test_generated_worlds_build_each_new_axis() -> None:
    mixed = GeneratedWorld.parse("shared/linux/3xmix/openai/none")
    assert mixed is not None
    spec = mixed.world()
    assert len({spec.pid(index) for index in range(3)}) == 2  # a gateway of two, and one
    two = GeneratedWorld.parse("shared/linux/3xproc/openai/none/2prof")
    assert two is not None
    assert [two.world().profile_of(a.name) for a in two.world().agents] == [
        "openai-codex:default",
        "anthropic:default",
        "openai-codex:default",
    ]
    bystander = GeneratedWorld.parse("shared/linux/2xproc/openai/none/bystander")
    assert bystander is not None
    assert bystander.world().bystanders == ("openai-codex:work",)
    stall = GeneratedWorld.parse("shared/linux/2xproc/openai/stall600")
    assert stall is not None
    assert stall.world().faults == frozenset({FaultKind.STALL})
    assert stall.world().stall_seconds == 600.0
    disk = GeneratedWorld.parse("shared/linux/1xproc/openai/ioerror+crash")
    assert disk is not None
    assert disk.world().faults == frozenset({FaultKind.IO_ERROR, FaultKind.CRASH})
    assert disk.world().max_faults == 2  # one of each
    skewed = GeneratedWorld.parse("shared/linux/2xproc/openai/none/2prof/skew30/torn")
    assert skewed is not None
    assert skewed.label == "shared/linux/2xproc/openai/none/2prof/skew30/torn"
    assert skewed.world().clock_skew == (("nova", 30.0),)
    assert skewed.world().torn_writes


def _clean(engine: str, cap: int | None) -> None:
    for cell in check_cells(engine):
        if cap is not None:
            cell = dataclasses.replace(cell, examples=min(cell.examples, cap))
        result = run_cell(cell)
        assert fatal(result.anomalies) == [], (cell.scenario, [str(a) for a in result.anomalies])


def test_the_reference_is_clean_in_every_battery_world_quickly() -> None:
    _clean("reference", cap=40)


@pytest.mark.slow
def test_the_reference_is_clean_in_every_battery_world() -> None:
    _clean("reference", cap=None)


@pytest.mark.parametrize(
    ("engine", "label"),
    [
        ("profile-lock-only", "shared/linux/2xproc/openai/none/2prof"),  # not its own scenario's
        ("short-stale-timeout", "shared/linux/2xproc/openai/stall600"),  # a stall, not a sleep
        ("short-stale-timeout", "shared/linux/2xproc/openai/slow"),  # the holder waits 30 s
        ("lockf-in-gateway", "shared/linux/3xgw/openai/none"),
        ("profile-lock-only", "shared/linux/2xproc/openai/none/login"),
        ("disk_error_engines:SwallowsSaveErrors", "shared/linux/2xproc/openai/ioerror"),
        ("disk_error_engines:LockBestEffort", "shared/linux/2xproc/openai/ioerror"),
        ("disk_error_engines:UncheckedFsync", "shared/linux/1xproc/openai/ioerror+crash"),
    ],
)
def test_a_known_bug_meets_a_battery_world_that_exposes_it(engine: str, label: str) -> None:
    cell = next(cell for cell in check_cells(engine) if cell.scenario == label)
    assert fatal(run_cell(cell).anomalies)


def test_a_negative_skew_is_refused_in_one_line() -> None:
    """A label only says how far ahead a clock runs: ``/skew-5`` would not replay."""
    with pytest.raises(ConformanceError, match="skew must be 0 or more"):
        GeneratedWorld(skew=-5).world()
