"""Coarse mtimes (FAT 2 s, HFS+ and SMB 1 s): ``stat`` rounds down, so a lease looks older.

A lock that judges staleness by age (``LockKind.MKDIR``, an mtime lease) must
leave room for the filesystem's resolution: a lease renewed just now may read
as up to one resolution old.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance._scenario_files import ScenarioError, load_scenario_file
from refresh_engine import AgentContext, Flow, Log, ops
from simulator import AgentSpec, DefaultChooser, WorldError, WorldSpec, simulate


class StatsTheStore:
    """Touches the store at its turn, then logs what ``stat`` says of it."""

    def access_token(self, ctx: AgentContext) -> Flow[str]:
        yield from ops.touch(ctx.main_store)
        found = yield from ops.stat(ctx.main_store)
        yield from ops.log(f"{found.mtime!r}")
        return ""


@given(
    turn=st.floats(0, 10_000, allow_nan=False),
    resolution=st.sampled_from((0.0, 1.0, 2.0)),
)
def test_stat_rounds_the_mtime_down_to_the_resolution(turn: float, resolution: float) -> None:
    spec = WorldSpec(agents=(AgentSpec("atlas", (turn,)),), mtime_resolution=resolution)
    result = simulate(spec, StatsTheStore(), DefaultChooser())
    logged = [e.effect for e in result.events if isinstance(e.effect, Log)]
    assert len(logged) == 1
    mtime = float(logged[0].message)
    written = spec.start_time + turn
    if resolution == 0:
        assert mtime == written
    else:
        assert mtime <= written < mtime + resolution
        assert (mtime / resolution).is_integer()


def test_a_world_refuses_a_resolution_out_of_range() -> None:
    with pytest.raises(WorldError, match="mtime_resolution"):
        WorldSpec(agents=(AgentSpec("atlas", (0.0,)),), mtime_resolution=-1)


def test_scenario_files_take_the_resolution(tmp_path: Path) -> None:
    path = tmp_path / "fat.toml"
    body = """\
        [scenario]
        name = "fat"
        [world]
        agents = ["atlas"]
        mtime_resolution = 2
        """
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    assert load_scenario_file(path).world.mtime_resolution == 2.0
    path.write_text(textwrap.dedent(body).replace("= 2", '= "2"'), encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"\[world\] mtime_resolution: must be"):
        load_scenario_file(path)
