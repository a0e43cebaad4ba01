"""OpenClaw's gateway, unmodified: the headline report's layout (``pytest -m clients``).

One ``openclaw gateway run`` for five agents, each with a copy of main's
auth-profiles.json, every agent prompted at once through the gateway's
``/v1/chat/completions``.  The fixtures install the clients from the npm
registry (``tokenrace clients install``; about 30 s cold for each OpenClaw).
Measured on the shared 2-core machine: both tests 5 min 9 s, 7 min 48 s cold (2026.4.26
about 5 min, 2026.4.29 about 2 min plus a 30 s install).  The gateway spends
tens of seconds of CPU on each turn before the turn resolves its login
(docs/clients.md); there is no smaller unit that still is the gateway.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance._cli import main
from conformance._clients import install

pytestmark = [pytest.mark.clients, pytest.mark.slow]  # minutes: -m slow too

SCENARIOS = Path(__file__).resolve().parent.parent / "conformance/scenarios/clients"


def history_of(report: Path) -> list[str]:
    cell = json.loads((report / "results.json").read_text())["cells"][0]
    return (report / cell["history_file"]).read_text().splitlines()


def refreshes(history: list[str]) -> list[str]:
    return [line for line in history if line.startswith("audit gateway ") and " refresh " in line]


@pytest.fixture(scope="module")
def openclaw_2026_4_26() -> None:
    install(["openclaw@2026.4.26"], say=lambda _: None)


@pytest.fixture(scope="module")
def openclaw_2026_4_29() -> None:
    install(["openclaw@2026.4.29"], say=lambda _: None)


def test_the_2026_4_26_gateway_refreshes_once_and_every_agent_adopts_it(
    openclaw_2026_4_26: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One refresh; under the refresh lock each agent adopts main's login into its copy."""
    path = SCENARIOS / "openclaw-2026.4.26.toml"
    assert main(["reproduce", str(path), "--report-dir", str(tmp_path)]) == 0
    assert "expected clean: met" in capsys.readouterr().out
    history = history_of(tmp_path)
    assert [line.split()[2:4] for line in refreshes(history)] == [
        ["presented", "refresh"],
        ["accepted", "refresh"],
        ["issued", "refresh"],
    ]
    stores = [line for line in history if line.startswith("store ")]
    assert len(stores) == 6
    assert all(line.endswith("(live)") for line in stores)  # every copy was rewritten


def test_the_2026_4_29_gateway_refreshes_main_once_and_reads_through(
    openclaw_2026_4_29: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The #74055 fix: main owns the refresh; the agents' stale copies are never written."""
    path = SCENARIOS / "openclaw-2026.4.29.toml"
    assert main(["reproduce", str(path), "--report-dir", str(tmp_path)]) == 0
    assert "expected clean: met" in capsys.readouterr().out
    history = history_of(tmp_path)
    assert len([line for line in history if line.startswith("release #")]) == 1
    assert not [line for line in history if "rejected" in line]
    stores = [line for line in history if line.startswith("store ")]
    assert stores[0].endswith("(live)")  # main
    assert all(line.endswith("(spent; main's is read instead)") for line in stores[1:])
