"""Gateway client scenarios without a real client: one server for every agent.

A stand-in for OpenClaw's gateway (``clients/fake_gateway.py``) keeps the
agents' logins in OpenClaw's own layout (main plus a copy per agent); the
real gateways' tests are in ``test_clients_gateway.py`` (``-m clients``).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from conformance._checker import AnomalyKind
from conformance._cli import main
from conformance._client_run import ClientRunError, run_client
from conformance._client_scenarios import (
    ClientScenarioError,
    StoreFormat,
    fill_json,
    load_client_scenario,
)
from conformance._client_stores import seed_config
from conformance._diagram import LaneKind, Tone
from conformance._svg import render_svg

FAKE = Path(__file__).resolve().parent / "clients" / "fake_gateway.py"
SHIPPED = Path(__file__).resolve().parent.parent / "conformance/scenarios/clients"
AGENTS = ("atlas", "nova", "lumi")
URL = 'TOKENRACE_TOKEN_URL = "{token_url}"'
LOG = "{state_dir}/log"


def gateway_file(tmp_path: Path, mode: str, *, reproduces: bool, extra: str = "") -> Path:
    path = tmp_path / f"gateway-{mode}.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            [scenario]
            name = "fake-gateway-{mode}"

            [client]
            program = "{{python}}"
            args = ["{FAKE}", "{{gateway_port}}", "{mode}"]
            store = "openclaw"
            mirrored = true
            env = {{ OPENCLAW_STATE_DIR = "{{state_dir}}/openclaw", {URL} }}
            timeout = 20
            arrival = 10

            [client.gateway]
            ready = "/v1/models"
            trigger = "/v1/chat/completions"
            body = '{{"model": "openclaw/{{agent}}", "messages": []}}'
            config = {{ gateway = {{ bind = "loopback" }}, logging = {{ file = "{LOG}" }} }}
            {extra}
            [world]
            agents = {json.dumps(list(AGENTS))}
            policy = "openai"

            [expect]
            reproduces = {"true" if reproduces else "false"}
            """
        )
    )
    return path


def test_a_gateway_on_agent_copies_reuses_the_token(tmp_path: Path) -> None:
    scenario = load_client_scenario(gateway_file(tmp_path, "copy", reproduces=True))
    run = run_client(scenario, AGENTS)
    kinds = [anomaly.kind for anomaly in run.run.anomalies]
    assert AnomalyKind.REFRESH_TOKEN_REUSE in kinds
    assert {a.agent for a in run.run.anomalies if a.kind is AnomalyKind.REFRESH_TOKEN_REUSE} == {
        "gateway"
    }  # one process, one endpoint: the audit names the gateway
    log = run.run.log.splitlines()
    assert log[0] == "gateway ready: GET /v1/models -> 200"
    assert log[1].startswith("release #1: gateway rt#")
    turns = sorted(line.rsplit(" ", 1)[1] for line in log if line.startswith("turn "))
    assert turns == ["200", "401", "401"]  # whose turn wins is the gateway's arrival, not --order
    assert "gateway stopped by the harness" in log
    assert run.released == ("gateway",) * 3
    # the sequence diagram: one lane for the gateway, its three refreshes and the reuse
    diagram = run.diagram
    assert diagram is not None
    assert [lane.label for lane in diagram.lanes if lane.kind is LaneKind.AGENT] == ["gateway"]
    held = [row for row in diagram.rows if row.detail == "held"]
    assert [row.source for row in held] == ["gateway"] * 3
    assert any(row.tone is Tone.REUSE for row in diagram.rows)
    assert "REUSE rt#" in render_svg(diagram, title="gateway")


def test_a_gateway_reading_through_to_main_is_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = gateway_file(tmp_path, "read-through", reproduces=False)
    assert main(["reproduce", str(path), "--report-dir", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    assert "expected clean: met" in out
    cell = json.loads((tmp_path / "report/results.json").read_text())["cells"][0]
    history = (tmp_path / "report" / cell["history_file"]).read_text().splitlines()
    assert len([line for line in history if line.startswith("release #")]) == 1
    stores = [line for line in history if line.startswith("store ")]
    assert len(stores) == 4
    assert all(line.endswith("(live)") for line in stores)


def test_a_gateway_that_never_answers_ready_fails_loudly(tmp_path: Path) -> None:
    path = gateway_file(tmp_path, "copy", reproduces=True)
    path.write_text(path.read_text().replace('ready = "/v1/models"', 'ready = "/nowhere"'))
    text = path.read_text().replace("arrival = 10", "arrival = 1")
    path.write_text(text)
    with pytest.raises(ClientRunError, match=r"did not answer GET /nowhere within 1s"):
        run_client(load_client_scenario(path), AGENTS)


def test_kill_is_refused_for_a_gateway(tmp_path: Path) -> None:
    scenario = load_client_scenario(gateway_file(tmp_path, "copy", reproduces=True))
    with pytest.raises(ClientRunError, match="one process for every agent"):
        run_client(scenario, AGENTS, kill="nova")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('port = "1"', "unknown key 'port'"),
        ('body = "not json {agent}"', "must be JSON once its placeholders are filled"),
        ('trigger = "v1/chat"', "must be a path"),
        ('config = { x = "{nope}" }', r"unknown placeholder \{nope\}"),
    ],
)
def test_bad_gateway_tables_are_one_line_errors(tmp_path: Path, extra: str, message: str) -> None:
    path = gateway_file(tmp_path, "copy", reproduces=True)
    key = extra.split(" ", 1)[0]
    lines = [line for line in path.read_text().splitlines() if not line.startswith(f"{key} =")]
    at = lines.index("[client.gateway]") + 1
    path.write_text("\n".join([*lines[:at], extra, *lines[at:]]) + "\n")
    with pytest.raises(ClientScenarioError, match=message):
        load_client_scenario(path)


def test_json_templates_fill_placeholders_and_keep_other_braces() -> None:
    body = fill_json('{"model": "openclaw/{agent}", "x": {"y": 1}}', {"agent": "nova"})
    assert json.loads(body) == {"model": "openclaw/nova", "x": {"y": 1}}


def test_the_gateways_config_is_merged_into_openclaws(tmp_path: Path) -> None:
    envs = {a: {"HOME": str(tmp_path), "OPENCLAW_STATE_DIR": str(tmp_path / "oc")} for a in AGENTS}
    extra = {"agents": {"defaults": {"model": "m"}}, "gateway": {"port": 1}}
    seed_config(StoreFormat.OPENCLAW, envs, extra)
    config = json.loads((tmp_path / "oc" / "openclaw.json").read_text())
    assert [entry["id"] for entry in config["agents"]["list"]] == ["main", *AGENTS]
    assert config["agents"]["defaults"] == {"model": "m"}
    assert config["gateway"] == {"port": 1}


@pytest.mark.parametrize("name", ["openclaw-2026.4.26.toml", "openclaw-2026.4.29.toml"])
def test_the_shipped_gateway_scenarios_load(name: str) -> None:
    scenario = load_client_scenario(SHIPPED / name)
    assert scenario.gateway is not None
    assert scenario.agents == ("atlas", "axon", "nova", "nexis", "lumi")
    assert scenario.mirrored
    assert "openai" not in json.loads(scenario.gateway.config)["plugins"]["deny"]
