"""A client run's report draws its sequence diagram, with the simulator's diagram code.

The client here is ``tests/clients/fake_codex.py``, a small Python program that
refreshes as ``codex debug models`` does; the real Codex CLI's diagram is
checked under ``-m clients`` (``test_clients.py``).
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

from conformance._cli import main
from conformance._client_diagram import ClientEvent, ClientEventKind, StoreEnd, build
from conformance._client_run import run_client
from conformance._client_scenarios import load_client_scenario
from conformance._diagram import SERVER, LaneKind, RowKind, Tone
from conformance._svg import render_svg
from fake_oauth_server import AuthServer, Policy, Request, fingerprint

FAKE = Path(__file__).resolve().parent / "clients" / "fake_codex.py"
AGENTS = ("atlas", "nova", "lumi")


def scenario_file(tmp_path: Path, *, policy: str = "openai") -> Path:
    path = tmp_path / "fake.toml"
    env = (
        'CODEX_HOME = "{state_dir}/codex", CODEX_REFRESH_TOKEN_URL_OVERRIDE = "{token_url}", '
        f'FAKE_CODEX_SEEN = "{tmp_path}/seen-{{agent}}.json"'
    )
    path.write_text(
        textwrap.dedent(
            f"""\
            [scenario]
            name = "fake-codex"
            [client]
            program = "{{python}}"
            args = ["{FAKE}"]
            env = {{ {env} }}
            [world]
            agents = {json.dumps(list(AGENTS))}
            policy = "{policy}"
            [expect]
            reproduces = true
            anomaly = "refresh-token-reuse"
            """
        ),
        encoding="utf-8",
    )
    return path


def test_a_client_run_draws_lanes_per_agent_and_the_refused_reuse(tmp_path: Path) -> None:
    scenario = load_client_scenario(scenario_file(tmp_path))
    done = run_client(scenario, ("nova", "atlas", "lumi"))
    diagram = done.diagram
    assert diagram is not None
    assert [lane.label for lane in diagram.lanes if lane.kind is LaneKind.AGENT] == list(AGENTS)
    assert [lane.kind for lane in diagram.lanes][-2:] == [LaneKind.STORE, LaneKind.SERVER]
    rows = diagram.rows
    held = [row for row in rows if row.detail == "held"]
    assert [row.source for row in held] == ["nova", "atlas", "lumi"]  # the release order
    spend = next(row for row in rows if row.tone is Tone.SPEND)
    assert (spend.source, spend.target) == ("nova", SERVER)
    assert spend.detail.startswith("released #1: spends rt#")
    (reuse,) = [row for row in rows if row.tone is Tone.REUSE]
    assert (reuse.source, reuse.label.split()[0]) == ("atlas", "REUSE")
    assert reuse.detail.startswith("released #2: rejects rt#")
    assert "(reused)" in reuse.detail
    assert "refresh-token-reuse" in reuse.marks
    answer = rows[rows.index(reuse) + 1]
    assert (answer.source, answer.target, answer.label, answer.dashed) == (
        SERVER,
        "atlas",
        "401",
        True,
    )
    (store,) = [row for row in rows if row.source.startswith("store:")]
    assert store.label.endswith("(revoked)")
    assert store.marks == ("agent-stranded",)
    assert sum(row.label == "exits 0" for row in rows) == 3
    svg = render_svg(diagram, title="fake")
    for agent in AGENTS:
        assert f">{agent}</text>" in svg
    assert "REUSE rt#" in svg
    assert "trr_" not in svg
    assert "eyJ" not in svg
    again = run_client(scenario, ("nova", "atlas", "lumi")).diagram
    assert again == diagram  # one order, one diagram


def test_a_clean_client_run_draws_no_reuse(tmp_path: Path) -> None:
    """Under a reuse window every refresh is accepted: nothing red, nothing marked."""
    scenario = load_client_scenario(scenario_file(tmp_path, policy="okta"))
    done = run_client(scenario, AGENTS)
    assert done.diagram is not None
    assert not done.run.failed
    assert not [row for row in done.diagram.rows if row.tone in (Tone.REUSE, Tone.SPEND)]
    assert not [row for row in done.diagram.rows if row.marks]
    assert sum(row.detail.startswith("released #") for row in done.diagram.rows) == 3


def test_reproduce_puts_the_diagram_in_index_html(tmp_path: Path) -> None:
    path = scenario_file(tmp_path)
    report = tmp_path / "report"
    argv = ["reproduce", str(path), "--order", "lumi,nova,atlas", "--kill", "nova"]
    assert main([*argv, "--report-dir", str(report)]) == 0
    html = (report / "index.html").read_text(encoding="utf-8")
    assert "<h4>The run</h4>" in html
    (svg,) = re.findall(r"<svg .*?</svg>", html, re.S)
    for agent in AGENTS:
        assert f">{agent}</text>" in svg
    assert "SIGKILL while rt#" in svg
    assert "released after the kill" in svg
    assert ">restarted</text>" in svg
    assert "REUSE rt#" in svg
    assert "refresh-token-reuse" in svg


def test_the_diagram_reads_the_audit_as_the_simulators_does() -> None:
    """Built from events and an audit alone: who presented what, and what it got."""
    server = AuthServer(Policy.preset("openai"))
    pair = server.seed_grant(0.0, client_id="fake")
    body = f"grant_type=refresh_token&refresh_token={pair.refresh_token}".encode()
    form = (("content-type", "application/x-www-form-urlencoded"),)
    for agent, request_id in (("a", "r1"), ("b", "r2")):
        request = Request("POST", f"/a/{agent}/oauth/token", body, form, request_id)
        server.handle(request, 1.0)
    fp = fingerprint(pair.refresh_token)
    events = [
        ClientEvent(ClientEventKind.HELD, "a", "r1", fp),
        ClientEvent(ClientEventKind.HELD, "b", "r2", fp),
        ClientEvent(ClientEventKind.RELEASED, "a", "r1", fp, 200),
        ClientEvent(ClientEventKind.RELEASED, "b", "r2", fp, 401),
        ClientEvent(ClientEventKind.EXITED, "a"),
        ClientEvent(ClientEventKind.EXITED, "b", status=1),
    ]
    stores = [
        StoreEnd("{state_dir}/a/auth.json", fp, "spent"),
        StoreEnd("{state_dir}/b", "", "missing"),
    ]
    diagram = build(("a", "b"), events, server.audit, stores)
    assert [lane.label for lane in diagram.lanes] == [
        "a",
        "b",
        "a/auth.json",
        "b",
        "token endpoint",
    ]
    labels = [(row.kind, row.source, row.label, row.tone) for row in diagram.rows]
    assert (RowKind.ARROW, "b", f"REUSE {fp} (g0)", Tone.REUSE) in labels
    assert (RowKind.ARROW, "a", f"refresh {fp} (g0)", Tone.SPEND) in labels
    assert (RowKind.NOTE, "b", "exits 1", Tone.BAD) in labels
    assert labels[-1] == (
        RowKind.NOTE,
        "store:{state_dir}/b",
        "ends holding no refresh token (missing)",
        Tone.BAD,
    )
