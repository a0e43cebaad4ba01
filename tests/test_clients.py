"""Real clients, unmodified, as client scenarios (``pytest -m clients``).

The fixtures install them from the npm registry (``tokenrace clients
install``: Codex about 20 s cold, OpenClaw and Node 22 about 30 s, nothing
when present).  Measured on the 2-core machine: each Codex run of five
processes about 4 s (7 s with a kill); the clean OpenClaw run about 45 s; the
reproducing OpenClaw run about 4.7 min (its losers sleep in its lock's
backoff); about 6 min in all.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conformance._checker import AnomalyKind, Severity
from conformance._cli import main
from conformance._client_run import run_client
from conformance._client_scenarios import load_client_scenario
from conformance._clients import install

pytestmark = pytest.mark.clients

CODEX = Path(__file__).resolve().parent.parent / "conformance/scenarios/clients"
SCENARIO = CODEX / "codex-cli-0.169.0.toml"


@pytest.fixture(scope="module")
def codex() -> str:
    return str(install(["codex@0.169.0"], say=lambda _: None)[0].program)


def test_reproduce_exits_0_with_the_reuse_and_a_per_agent_order(
    codex: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["reproduce", str(SCENARIO), "--report-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "refresh-token-reuse (fatal): axon presented" in out
    assert "--order atlas,axon,nova,nexis,lumi" in out
    assert "expected reproduced with refresh-token-reuse: met" in out
    cell = json.loads((tmp_path / "results.json").read_text())["cells"][0]
    history = (tmp_path / cell["history_file"]).read_text()
    assert "release #1: atlas" in history
    assert "audit axon rejected refresh" in history
    assert "auth.json ends holding" in history
    assert "(revoked)" in history
    html = (tmp_path / "index.html").read_text(encoding="utf-8")
    (svg,) = re.findall(r"<svg .*?</svg>", html, re.S)  # the run, drawn as a simulated one is
    for agent in ("atlas", "axon", "nova", "nexis", "lumi"):
        assert f">{agent}</text>" in svg
    assert "REUSE rt#" in svg
    assert "refresh-token-reuse" in svg
    assert "ends holding rt#" in svg


def test_the_same_order_twice_gives_the_same_verdict_and_history(codex: str) -> None:
    scenario = load_client_scenario(SCENARIO)
    order = ("nexis", "atlas", "lumi", "axon", "nova")
    first = run_client(scenario, order, executable=codex)
    second = run_client(scenario, order, executable=codex)
    assert first.run.log == second.run.log
    assert first.run.anomalies == second.run.anomalies
    assert first.run.log.splitlines()[0].startswith("release #1: nexis ")
    reused = [a for a in first.run.anomalies if a.kind is AnomalyKind.REFRESH_TOKEN_REUSE]
    assert [(a.agent, a.severity) for a in reused] == [("atlas", Severity.FATAL)]
    assert first.diagram is not None
    assert first.diagram == second.diagram
    reuse = [row for row in first.diagram.rows if row.label.startswith("REUSE ")]
    assert [row.source for row in reuse] == ["atlas"]
    assert "refresh-token-reuse" in reuse[0].marks


def test_kill_acts_on_the_named_agent(
    codex: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["reproduce", str(SCENARIO), "--order", "nova,atlas,axon,nexis,lumi", "--kill", "axon"]
    assert main([*argv, "--report-dir", str(tmp_path)]) == 0
    assert "killing axon while its request was held" in capsys.readouterr().out
    cell = json.loads((tmp_path / "results.json").read_text())["cells"][0]
    history = (tmp_path / cell["history_file"]).read_text().splitlines()
    assert history[0].startswith("release #1: nova ")
    kill = history.index(next(line for line in history if line.startswith("SIGKILL ")))
    assert history[kill].startswith("SIGKILL axon while rt#")
    assert history[kill + 2] == "restart axon"


OPENCLAW_CLI = CODEX / "openclaw-2026.4.26-cli.toml"
OPENCLAW_AGENT_DIR = CODEX / "openclaw-2026.4.26-agent-dir.toml"


@pytest.fixture(scope="module")
def openclaw() -> str:
    return str(install(["openclaw@2026.4.26"], say=lambda _: None)[-1].program)


def test_openclaw_cli_processes_on_mirrored_copies_stay_clean(
    openclaw: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One refresh; the other four adopt it from the main store under OpenClaw's refresh lock."""
    assert main(["reproduce", str(OPENCLAW_CLI), "--report-dir", str(tmp_path)]) == 0
    assert "expected clean: met" in capsys.readouterr().out
    cell = json.loads((tmp_path / "results.json").read_text())["cells"][0]
    history = (tmp_path / cell["history_file"]).read_text().splitlines()
    assert len([line for line in history if line.startswith("release #")]) == 1
    stores = [line for line in history if line.startswith("store ")]
    assert len(stores) == 6  # main and five copies
    assert all(line.endswith("(live)") for line in stores)


@pytest.mark.slow  # about 5 minutes: the losers sleep in OpenClaw's lock backoff
def test_openclaw_processes_each_on_its_own_copy_reuse_the_token(
    openclaw: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """OPENCLAW_AGENT_DIR makes each copy its own main store: nothing is read through."""
    assert main(["reproduce", str(OPENCLAW_AGENT_DIR), "--report-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "expected reproduced with refresh-token-reuse: met" in out
    assert "refresh-token-reuse (fatal)" in out
