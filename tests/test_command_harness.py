"""``check --command`` is the client harness with the protocol's scenario: one code path.

The Node engine of ``engines/refresh.mjs`` speaks the ``check --command``
protocol; run through ``check --command`` and through a client scenario file
with ``store = "tokenrace"``, it must be judged the same way, and one order
must give one history.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from conformance._checker import Anomaly, AnomalyKind, Severity
from conformance._cli import main
from conformance._client_run import run_client
from conformance._client_scenarios import ClientScenarioError, load_client_scenario
from conformance._command import command_scenario, run_command
from conformance._errors import ConformanceError
from conformance._validate import agent_names

ENGINE = Path(__file__).resolve().parent / "engines" / "refresh.mjs"
ORDER = ("nova", "atlas")


@pytest.fixture(autouse=True)
def _node() -> None:
    assert shutil.which("node"), "these tests need Node.js (node) on PATH"


def protocol_file(tmp_path: Path, *flags: str) -> Path:
    """A client scenario file running the Node engine under the ``check --command`` protocol."""
    args = ", ".join(f'"{arg}"' for arg in (str(ENGINE), *flags))
    path = tmp_path / "protocol.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            [scenario]
            name = "node-protocol"
            [client]
            program = "node"
            args = [{args}]
            store = "tokenrace"
            settle = 3
            stdout_token = true
            inherit_env = true
            timeout = 20
            [world]
            agents = ["nova", "atlas"]
            """
        ),
        encoding="utf-8",
    )
    return path


def fatal(anomalies: tuple[Anomaly, ...]) -> set[AnomalyKind]:
    return {a.kind for a in anomalies if a.severity is Severity.FATAL}


def test_one_order_of_a_command_run_twice_gives_the_same_history() -> None:
    first = run_command(f"node {ENGINE} --no-lock", ORDER, settle=10)
    second = run_command(f"node {ENGINE} --no-lock", ORDER, settle=10)
    assert first.failed
    assert first.log == second.log
    assert "audit atlas rejected refresh" in first.log  # named by its endpoint
    assert "store {state_dir}/agents/main/agent/auth-profiles.json ends holding" in first.log


@pytest.mark.parametrize(("flags", "buggy"), [((), False), (("--no-lock",), True)])
def test_a_scenario_file_and_check_command_judge_a_program_alike(
    tmp_path: Path, flags: tuple[str, ...], buggy: bool
) -> None:
    by_command = run_command(" ".join(["node", str(ENGINE), *flags]), ORDER, settle=3, timeout=20)
    by_file = run_client(load_client_scenario(protocol_file(tmp_path, *flags)), ORDER).run
    assert by_command.failed is buggy
    assert by_file.failed is buggy
    assert fatal(by_command.anomalies) == fatal(by_file.anomalies)
    if buggy:
        assert AnomalyKind.REFRESH_TOKEN_REUSE in fatal(by_file.anomalies)


def test_the_command_is_taken_literally_not_as_a_template() -> None:
    scenario = command_scenario("node -e 'console.log({a: 1})'", ("atlas",))
    assert scenario.args == ("-e", "console.log({{a: 1}})")  # braces escaped for the template


def test_a_store_judged_by_the_oracle_is_the_protocols_main_store(tmp_path: Path) -> None:
    """A program that prints a good token but leaves a spent one in the store is caught."""
    script = tmp_path / "forgets.mjs"
    script.write_text(
        textwrap.dedent(
            """\
            import fs from "node:fs";
            const store = JSON.parse(fs.readFileSync(process.env.TOKENRACE_STORE, "utf8"));
            const profile = store.profiles["openai-codex:default"];
            const body = new URLSearchParams({grant_type: "refresh_token",
              refresh_token: profile.refresh, client_id: process.env.TOKENRACE_AGENT});
            const answer = await (await fetch(process.env.TOKENRACE_TOKEN_URL,
              {method: "POST", body})).json();
            console.log(answer.access_token);  // printed, never saved
            """
        ),
        encoding="utf-8",
    )
    run = run_command(f"node {script}", ("atlas",), settle=3, timeout=20)
    assert AnomalyKind.AGENT_STRANDED in fatal(run.anomalies)
    assert "auth-profiles.json ends holding" in run.log


def test_an_unknown_key_in_a_client_file_names_the_nearest(tmp_path: Path) -> None:
    path = protocol_file(tmp_path)
    path.write_text(path.read_text().replace("settle = 3", "setle = 3"), encoding="utf-8")
    with pytest.raises(ClientScenarioError, match=r"\[client\] setle: unknown key; did you mean"):
        load_client_scenario(path)


@pytest.mark.parametrize("agents", ["a/b,c", "atlas,atlas", " , "])
def test_bad_agent_names_are_one_line_exit_2(
    agents: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--command", f"node {ENGINE}", "--agents", agents]) == 2
    err = capsys.readouterr().err.strip()
    assert "--agents" in err
    assert len(err.splitlines()) == 1


def test_agent_names_refuse_a_path_separator() -> None:
    with pytest.raises(ConformanceError, match="'a/b' is not a name"):
        agent_names("a/b,c", "--order")
    assert agent_names(" nova, atlas ", "--order") == ("nova", "atlas")


def test_check_command_draws_the_failing_run_in_its_report(tmp_path: Path) -> None:
    argv = ["check", "--command", f"node {ENGINE} --no-lock", "--order", "nova,atlas"]
    assert main([*argv, "--settle", "10", "--report-dir", str(tmp_path)]) == 1
    html = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert html.count("<svg") == 1
    assert "refresh-token-reuse" in html
    assert "nova" in html
    assert "atlas" in html
