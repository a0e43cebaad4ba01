"""The real server under load and abuse: single use under concurrency, fuzzing, the CLI, the plugin.

The long variants carry ``@pytest.mark.slow`` (64 clients x 100 rounds;
10,000 fuzz examples); the default run keeps smaller ones of each.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fake_oauth_server import AuditKind, RunningServer, main, serve_in_thread

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def live() -> Iterator[RunningServer]:
    with serve_in_thread("openai", hold_timeout=20.0) as running:
        yield running


# ------------------------------------------------------------------ single use under concurrency


async def race(live: RunningServer, clients: int, rounds: int) -> list[list[int]]:
    """``clients`` concurrent refreshes of one token, all held then released at once, per round.

    Each client has its own connection (its own ``AsyncClient``), as separate
    processes would; one more client drives the control API.
    """
    results = []
    async with contextlib.AsyncExitStack() as stack:
        context = ssl.create_default_context()  # plain HTTP; one context spares 65 CA loads

        async def client() -> httpx.AsyncClient:
            http = httpx.AsyncClient(
                base_url=live.base_url, timeout=20, trust_env=False, verify=context
            )
            return await stack.enter_async_context(http)

        control = await client()
        control.headers.update(live.control_headers)
        pool = [await client() for _ in range(clients)]
        for _ in range(rounds):
            pair = live.server.seed_grant(time.time())
            body = {"grant_type": "refresh_token", "refresh_token": pair.refresh_token}
            assert (await control.post("/_control/hold", json={"enabled": True})).is_success
            posts = [asyncio.create_task(http.post("/oauth/token", data=body)) for http in pool]
            held = await control.get("/_control/held", params={"min": clients, "timeout": 10})
            assert len(held.json()["held"]) == clients
            await control.post("/_control/hold", json={"enabled": False})  # all go at once
            responses = await asyncio.gather(*posts)
            results.append(sorted(response.status_code for response in responses))
    return results


def check_single_use(live: RunningServer, clients: int, rounds: int) -> None:
    live.control.reset(policy="openai")
    started = time.monotonic()
    results = asyncio.run(race(live, clients, rounds))
    assert time.monotonic() - started < 120
    assert results == [[200] + [401] * (clients - 1)] * rounds
    accepted: dict[str, int] = {}
    for event in live.server.audit:
        if event.kind is AuditKind.ACCEPTED and event.token_kind.value == "refresh":
            accepted[event.token_fp] = accepted.get(event.token_fp, 0) + 1
    assert len(accepted) == rounds
    assert set(accepted.values()) == {1}


def test_single_use_under_real_concurrency_16_clients(live: RunningServer) -> None:
    check_single_use(live, clients=16, rounds=10)


@pytest.mark.slow
def test_single_use_under_real_concurrency_64_clients_100_rounds(live: RunningServer) -> None:
    check_single_use(live, clients=64, rounds=100)


# ------------------------------------------------------------------ bad input never 5xx

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "post", "BREW", "TRACE"]
PATHS = [
    "/oauth/token",
    "/oauth/token?grant_type=refresh_token",
    "/v1/me",
    "/authorize",
    "/authorize?response_type=code&redirect_uri=x",
    "/.well-known/oauth-authorization-server",
    "/",
    "/%00",
    "/oauth/token/../v1/me",
    "/_control/grants",
    "/_control/policy",
    "/_control/audit",
    "/_control/release",
    "/_control/nope",
]
CONTENT_TYPES = [
    None,
    "application/json",
    "application/x-www-form-urlencoded",
    "application/json; charset=latin-1",
    "application/vnd.api+json",
    "text/plain",
    "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded; charset=utf-16",
]
GRANTS = ["refresh_token", "authorization_code", "password", "", "REFRESH_TOKEN", "\u0000"]


def token_values() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=40),
        st.from_regex(r"tr[arc]_[0-9a-f]{32}", fullmatch=True),
        st.sampled_from(["", " ", "null", "trr_", "Bearer x", "%00", "\ud800"]),
    )


def bodies() -> st.SearchStrategy[bytes]:
    fields = st.dictionaries(
        st.sampled_from(
            [
                "grant_type",
                "refresh_token",
                "code",
                "code_verifier",
                "client_id",
                "redirect_uri",
                "user",
                "preset",
                "dialect",
                "id",
                "all",
            ]
        ),
        st.one_of(
            st.sampled_from(GRANTS),
            token_values(),
            st.integers(),
            st.none(),
            st.booleans(),
            st.lists(st.integers(), max_size=3),
        ),
        max_size=5,
    )
    return st.one_of(
        st.binary(max_size=300),
        fields.map(lambda d: json.dumps(d).encode()),
        fields.map(lambda d: "&".join(f"{k}={v}" for k, v in d.items()).encode("utf-8", "replace")),
        st.sampled_from([b"", b"{", b"[" * 3000 + b"]" * 3000, b"\xff\xfe\x00", b"a=1&a=2"]),
    )


def check_answer(response: httpx.Response, method: str) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:200])
    if method.upper() == "HEAD" or response.status_code in (204, 302):
        return
    kind = response.headers.get("content-type", "")
    assert kind.startswith(("application/json", "application/x-ndjson")), kind
    if kind.startswith("application/json"):
        payload = response.json()
        if response.status_code >= 400:
            assert "error" in payload
    assert "Traceback" not in response.text


def fuzz_once(
    http: httpx.Client, method: str, path: str, body: bytes, ctype: str | None, auth: str | None
) -> None:
    headers = {}
    if ctype is not None:
        headers["content-type"] = ctype
    if auth is not None:
        # Keep it a header value h11 will send: printable ASCII, no edge whitespace.
        value = "".join(ch if " " <= ch <= "~" else "?" for ch in auth).strip()
        if value:
            headers["authorization"] = value
    response = http.request(method, path, content=body, headers=headers)
    check_answer(response, method)


FUZZ = {
    "method": st.sampled_from(METHODS),
    "path": st.sampled_from(PATHS),
    "body": bodies(),
    "ctype": st.sampled_from(CONTENT_TYPES),
    "auth": st.one_of(
        st.none(),
        token_values().map(lambda t: "Bearer " + t.encode("latin-1", "replace").decode("latin-1")),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
    ),
}


@pytest.fixture(scope="module")
def fuzz_http(live: RunningServer) -> Iterator[httpx.Client]:
    live.control.reset(policy="openai")
    live.control.seed_grant()
    with httpx.Client(base_url=live.base_url, timeout=10, trust_env=False) as client:
        yield client


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(**FUZZ)
def test_bad_input_never_gives_5xx(
    fuzz_http: httpx.Client,
    method: str,
    path: str,
    body: bytes,
    ctype: str | None,
    auth: str | None,
) -> None:
    fuzz_once(fuzz_http, method, path, body, ctype, auth)


@pytest.mark.slow
@settings(
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(**FUZZ)
def test_bad_input_never_gives_5xx_long(
    fuzz_http: httpx.Client,
    method: str,
    path: str,
    body: bytes,
    ctype: str | None,
    auth: str | None,
) -> None:
    fuzz_once(fuzz_http, method, path, body, ctype, auth)


# ------------------------------------------------------------------ the command line


def test_cli_prints_its_url_serves_and_stops_on_interrupt() -> None:
    command = [
        sys.executable,
        "-m",
        "fake_oauth_server",
        "--port",
        "0",
        "--policy",
        "hydra",
        "--set",
        "reuse_window=30",
        "--control-token",
        "cli-test-control-token",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Windows has no SIGINT to send: Ctrl+Break to a process group of its own (uvicorn
    # stops on SIGBREAK as on SIGINT)
    windows = sys.platform == "win32"
    group = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) if windows else 0
    stop = getattr(signal, "CTRL_BREAK_EVENT", signal.SIGINT) if windows else signal.SIGINT
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
        text=True,
        creationflags=group,
    ) as process:
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            assert first.startswith("fake_oauth_server listening on http://127.0.0.1:")
            assert "(policy hydra with reuse_window=30)" in first
            url = first.split()[3]
            assert not url.endswith(":0")
            headers = {"x-control-token": "cli-test-control-token"}
            with httpx.Client(base_url=url, trust_env=False, headers=headers) as http:
                policy = http.get("/_control/policy").json()["policy"]
                assert (policy["dialect"], policy["reuse_window"]) == ("hydra", 30.0)
        finally:
            try:
                process.send_signal(stop)
                assert process.wait(timeout=10) == 0
            finally:
                if process.poll() is None:  # never leave it serving
                    process.kill()
                    process.wait()


def test_cli_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--port", "0", "--set", "reuse_window"]) == 2
    assert main(["--port", "0", "--set", "max_reuse=-1"]) == 2
    assert "max_reuse" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(["--policy", "nope"])
    assert caught.value.code == 2
    with serve_in_thread() as running:  # the port is taken
        port = running.base_url.rsplit(":", 1)[1]
        assert main(["--port", port]) == 1
    assert "cannot listen" in capsys.readouterr().err


# ------------------------------------------------------------------ the pytest plugin

PLUGIN_TEST = """
import httpx
import pytest

@pytest.mark.fake_oauth(policy="keycloak")
def test_in_process(fake_oauth):
    pair = fake_oauth.seed_grant()
    form = {"grant_type": "refresh_token", "refresh_token": pair.refresh_token}
    assert httpx.post(fake_oauth.token_url, data=form).status_code == 200
    again = httpx.post(fake_oauth.token_url, data=form).json()
    assert again["error_description"] == "Maximum allowed refresh token reuse exceeded"

@pytest.mark.fake_oauth("auth0", seed="s")
def test_real_server(fake_oauth_http):
    pair = fake_oauth_http.control.seed_grant()
    form = {"grant_type": "refresh_token", "refresh_token": pair.refresh_token}
    with httpx.Client(trust_env=False) as http:
        assert http.post(fake_oauth_http.token_url, data=form).status_code == 200
        assert http.post(fake_oauth_http.token_url, data=form).status_code == 403

def test_default_policy(fake_oauth_http):
    assert fake_oauth_http.control.policy().dialect.value == "openai"
"""


def test_pytest_plugin_fixtures(tmp_path: Path) -> None:
    (tmp_path / "test_client.py").write_text(PLUGIN_TEST, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n", encoding="utf-8")
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "fake_oauth_server._pytest_plugin",
        "-p",
        "no:cacheprovider",
        "-q",
        "--strict-markers",
        str(tmp_path),
    ]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
