"""Smoke tests of the benchmark harness (benchmarks/): worlds, judging, the pool, the peers.

Fast on purpose: a few processes and expiries each; the benchmarks themselves
are not tests (``python benchmarks/run_all.py``).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _platform import PRIVATE_MODE

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_engines  # noqa: E402
import harness  # noqa: E402

from fake_oauth_server import RunningServer, serve_in_thread  # noqa: E402
from simulator import StoreLayout  # noqa: E402


@pytest.fixture
def running() -> Iterator[RunningServer]:
    with serve_in_thread("openai") as server:
        yield server


@pytest.fixture
def world() -> Iterator[harness.DiskWorld]:
    with tempfile.TemporaryDirectory() as tmp:
        yield harness.DiskWorld(Path(tmp))


def test_login_lays_out_each_layout(running: RunningServer, world: harness.DiskWorld) -> None:
    world.login(running, ["atlas", "nova"], StoreLayout.MIRRORED)
    main = world.main_store.read_bytes()
    for agent in ("atlas", "nova"):
        assert (world.agent_dir(agent) / harness.STORE_NAME).read_bytes() == main
    assert world.main_store.stat().st_mode & 0o777 == PRIVATE_MODE


def test_age_moves_every_expiry_back(running: RunningServer, world: harness.DiskWorld) -> None:
    world.login(running, ["atlas"], StoreLayout.MIRRORED)

    def expires(path: Path) -> float:
        return float(json.loads(path.read_bytes())["profiles"][harness.KEY]["expires"])

    copy = world.agent_dir("atlas") / harness.STORE_NAME
    before = expires(world.main_store), expires(copy)
    world.age(3600)
    assert (expires(world.main_store), expires(copy)) == (before[0] - 3600, before[1] - 3600)


def test_judge_names_a_reuse(running: RunningServer) -> None:
    token = running.server.seed_grant(running.app.now()).refresh_token
    with httpx.Client() as http:
        for _ in range(2):
            http.post(
                running.token_url, data={"grant_type": "refresh_token", "refresh_token": token}
            )
    tally = harness.judge(running, running.server.audit, [harness.Outcome("atlas", True, 0.1)])
    assert (tally.accepted, tally.reused) == (1, 1)
    assert {"refresh-token-reuse", "token-rejected"} <= tally.kinds


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert harness.percentile(values, 0.99) == 99.0
    assert harness.percentile(values, 0.5) == 50.0
    assert harness.percentile([3.0], 0.99) == 3.0


@pytest.mark.parametrize("peer", ["msal-extensions", "msal-extensions-ptc", "filelock-copy"])
def test_peer_engine_gets_a_token_and_reuses_it(
    peer: str, running: RunningServer, world: harness.DiskWorld
) -> None:
    importlib.import_module("msal_extensions")  # dev dependencies: missing ones fail
    importlib.import_module("filelock")
    from peers import PEERS

    world.login(running, ["atlas"], StoreLayout.MIRRORED)
    world.age(3600)
    engine = PEERS[peer]()
    ctx = world.context("atlas", running.token_url)
    with httpx.Client() as http:
        first = engine.access_token(ctx, http, harness_clock)
        again = engine.access_token(ctx, http, harness_clock)
    assert first == again  # the second call found the fresh token: no second refresh
    assert running.server.check_access(first, running.app.now()).ok


def harness_clock() -> float:
    import time

    return time.time()


def test_pool_reference_refreshes_once_per_expiry() -> None:
    setup = bench_engines.EngineSetup(
        "reference", bench_engines.Policy.preset("openai"), StoreLayout.SHARED
    )
    with bench_engines.Pool(3) as pool:
        result = bench_engines.run_engine(pool, setup, agents=3, expiries=2)
        mirrored = dataclasses.replace(setup, engine="mirrored", layout=StoreLayout.MIRRORED)
        buggy = bench_engines.run_engine(pool, mirrored, agents=3, expiries=2)
    assert result["refreshes_per_expiry"] == 1.0
    assert (result["reuse_errors"], result["tokens"]) == (0, 6)
    assert buggy["reuse_errors"] >= 2  # every expiry: a second agent refreshes from its copy
    assert buggy["relogins"] == 2


def test_engine_setups_cover_reference_peers_and_corpus() -> None:
    names = {setup.engine for setup in bench_engines.engine_setups()}
    assert {"reference", "msal-extensions", "filelock-copy", "mirrored", "no-lock"} <= names
    incompatible = next(
        s for s in bench_engines.engine_setups() if s.engine == "incompatible-locks"
    )
    assert incompatible.agents(4) == ["cli00", "ide01", "cli02", "ide03"]
