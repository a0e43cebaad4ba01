"""The real fake server under hostile clients (issue 15, S1-S3).

S1: a request is acted on only once its body is complete; a body cut short
spends nothing and, where the socket still allows it, is answered with an
RFC 6749 ``invalid_request``.  S2: read deadlines, a connection cap and
quiet accept errors.  S3: the control API is gated (a token, no web pages,
JSON only, off on request), tokens are random from the command line unless
``--seed``, binding beyond loopback takes ``--allow-remote``, and the
access log hides anything token-shaped.

Every socket here is on loopback; timeouts are a fraction of a second and
sockets a handful, so the file runs in seconds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fake_oauth_server import (
    CONTROL_TOKEN_HEADER,
    AuditKind,
    AuthServer,
    ControlAccess,
    FakeOAuthApp,
    Limits,
    Policy,
    RunningServer,
    redact_log,
    serve_in_thread,
)

ROOT = Path(__file__).resolve().parent.parent
FAST = Limits(header_timeout=0.5, body_timeout=0.5, max_connections=64)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[RunningServer, list[str]]]:
    lines: list[str] = []
    with serve_in_thread("openai", access_log=lines.append, limits=FAST, log=lines.append) as run:
        yield run, lines


@pytest.fixture
def live(served: tuple[RunningServer, list[str]]) -> RunningServer:
    served[0].control.reset(policy="openai")
    served[1].clear()
    return served[0]


@pytest.fixture
def log(served: tuple[RunningServer, list[str]]) -> list[str]:
    return served[1]


def connect(running: RunningServer) -> socket.socket:
    host, port = running.base_url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


def refresh_request(running: RunningServer, token: str, *, missing: int = 0) -> tuple[bytes, bytes]:
    """(head, body) of a form refresh whose Content-Length claims ``missing`` more bytes."""
    body = f"grant_type=refresh_token&refresh_token={token}&client_id=c".encode()
    host = running.base_url.removeprefix("http://")
    head = (
        f"POST /oauth/token HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body) + missing}\r\n\r\n"
    ).encode()
    return head, body


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def answer(raw: bytes) -> tuple[int, dict[str, object]]:
    """Status and JSON body of one raw HTTP response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), head
    return status, json.loads(body)


def refreshes_accepted(running: RunningServer) -> int:
    return sum(
        1
        for event in running.control.audit()
        if event.kind is AuditKind.ACCEPTED and event.token_kind.value == "refresh"
    )


def wait_for(predicate: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not callable(predicate) or not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# ------------------------------------------------------------------ S1: complete bodies only


@pytest.mark.parametrize("ending", ["half-close", "close", "reset"])
def test_a_short_body_leaves_the_token_unspent(
    live: RunningServer, log: list[str], ending: str
) -> None:
    pair = live.control.seed_grant()
    head, body = refresh_request(live, pair.refresh_token, missing=40)
    with connect(live) as sock:
        sock.sendall(head + body)
        time.sleep(0.05)  # the application is waiting for the rest of the body
        if ending == "half-close":
            sock.shutdown(socket.SHUT_WR)
            status, payload = answer(read_all(sock))
            assert (status, payload["error"]) == (400, "invalid_request")
        elif ending == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
    wait_for(lambda: any('"POST /oauth/token"' in line for line in log))
    assert [line for line in log if "/oauth/token" in line][0].endswith("incomplete body"), log
    assert refreshes_accepted(live) == 0
    with httpx.Client(trust_env=False, timeout=5) as http:  # the token still works
        form = {"grant_type": "refresh_token", "refresh_token": pair.refresh_token}
        assert http.post(live.token_url, data=form).status_code == 200


def test_a_complete_body_sent_in_pieces_is_acted_on_and_answered(live: RunningServer) -> None:
    pair = live.control.seed_grant()
    head, body = refresh_request(live, pair.refresh_token)
    with connect(live) as sock:
        sock.sendall(head + body[:10])
        time.sleep(0.1)
        sock.sendall(body[10:])
        sock.shutdown(socket.SHUT_WR)
        assert b" 200 " in read_all(sock).split(b"\r\n", 1)[0]
    assert refreshes_accepted(live) == 1


def test_garbage_is_answered_as_json_not_text(live: RunningServer) -> None:
    with connect(live) as sock:
        sock.sendall(b"NOT HTTP AT ALL\x00\r\n\r\n")
        status, payload = answer(read_all(sock))
    assert (status, payload["error"]) == (400, "invalid_request")


# ------------------------------------------------------------------ S2: deadlines and the cap


def test_silent_partial_and_dripping_clients_are_cut_off(
    live: RunningServer, log: list[str]
) -> None:
    pair = live.control.seed_grant()
    head, body = refresh_request(live, pair.refresh_token)
    started = time.monotonic()
    with connect(live) as silent, connect(live) as partial, connect(live) as dripping:
        partial.sendall(head[:20])
        dripping.sendall(head)
        for byte in body[:4]:  # a byte every 0.1 s: never idle, never done in time
            dripping.sendall(bytes([byte]))
            time.sleep(0.1)
        assert read_all(silent) == b""  # closed without an answer: nothing was asked
        assert answer(read_all(partial))[0] == 408
        status, payload = answer(read_all(dripping))
        assert (status, payload["error"]) == (408, "invalid_request")
    assert time.monotonic() - started < 3
    assert refreshes_accepted(live) == 0
    wait_for(lambda: any("incomplete body" in line for line in log))


def test_the_connection_cap_evicts_idle_connections_then_refuses() -> None:
    lines: list[str] = []
    limits = Limits(header_timeout=30, body_timeout=30, max_connections=4)
    with serve_in_thread("openai", limits=limits, log=lines.append) as running:
        idle = [connect(running) for _ in range(4)]
        time.sleep(0.1)
        with httpx.Client(trust_env=False, timeout=5) as http:  # evicts the oldest idle one
            assert http.get(running.base_url + "/.well-known/oauth-authorization-server").is_success
        assert read_all(idle[0]) == b""
        pair = running.control.seed_grant()
        head, body = refresh_request(running, pair.refresh_token, missing=10)
        busy = [connect(running) for _ in range(4)]  # each mid-body: not idle
        for sock in busy:
            sock.sendall(head + body)
        time.sleep(0.2)
        with connect(running) as refused:
            status, payload = answer(read_all(refused))
        assert (status, payload["error"]) == (503, "temporarily_unavailable")
        for sock in idle + busy:
            sock.close()
        assert refreshes_accepted(running) == 0
    assert sum("connection cap" in line or "refusing" in line for line in lines) <= 2, lines


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_NOFILE is POSIX")
def test_running_out_of_file_descriptors_is_one_quiet_line() -> None:
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48)); "
        "from fake_oauth_server import main; sys.exit(main(sys.argv[1:]))"
    )
    argv = ["--port", "0", "--max-connections", "500", "--header-timeout", "1"]
    with Served([sys.executable, "-c", code, *argv], 6) as served:
        host, port = served.url.removeprefix("http://").rsplit(":", 1)
        crowd = [socket.create_connection((host, int(port)), timeout=5) for _ in range(60)]
        time.sleep(1.6)  # the server runs out, retries, and the header deadline frees it
        for sock in crowd:
            sock.close()
        wait_for(lambda: probe(served.url), seconds=10)
    errors = served.errors
    assert "Traceback" not in errors, errors
    assert 1 <= errors.count("cannot accept connections") <= 2, errors


def probe(url: str) -> bool:
    try:
        return httpx.get(url + "/.well-known/oauth-authorization-server", timeout=1).is_success
    except httpx.HTTPError:
        return False


# ------------------------------------------------------------------ S3: the control API's gate


def control_call(
    running: RunningServer, path: str, *, token: str | None = "given", **headers: str
) -> httpx.Response:
    sent = dict(running.control_headers) if token == "given" else {}
    if token not in (None, "given"):
        sent[CONTROL_TOKEN_HEADER] = str(token)
    sent.update({key.replace("_", "-"): value for key, value in headers.items()})
    with httpx.Client(trust_env=False, timeout=5) as http:
        return http.post(running.base_url + path, content="{}", headers=sent)


def test_a_foreign_origin_cannot_reset_the_server(live: RunningServer) -> None:
    live.control.seed_grant()
    before = live.control.audit()
    port = live.base_url.rsplit(":", 1)[1]
    refused = [
        control_call(live, "/_control/reset", origin="https://evil.example"),
        control_call(live, "/_control/reset", origin="null"),
        control_call(
            live, "/_control/reset", origin="http://evil.example", content_type="text/plain"
        ),
        control_call(live, "/_control/reset", host="evil.example"),  # DNS rebinding
        control_call(live, "/_control/reset", host=f"rebind.example:{port}"),
        control_call(live, "/_control/reset", sec_fetch_site="cross-site"),
    ]
    assert [response.status_code for response in refused] == [403] * len(refused)
    assert all(response.json()["error"] == "access_denied" for response in refused)
    assert live.control.audit() == before  # nothing was reset
    same = control_call(live, "/_control/reset", origin=live.base_url, content_type="text/plain")
    assert same.status_code == 200
    assert live.control.audit() == ()  # a same-origin reset does reset


def test_the_control_api_asks_for_its_token(live: RunningServer) -> None:
    assert control_call(live, "/_control/grants", token=None).status_code == 401
    assert control_call(live, "/_control/grants", token="x" * 32).status_code == 401
    assert control_call(live, "/_control/grants").status_code == 201
    assert live.control_token is not None
    assert len(live.control_token) >= 32
    assert live.control_token not in repr(live.app.control)


def test_an_app_with_the_control_api_off_answers_404() -> None:
    import asyncio

    app = FakeOAuthApp(AuthServer(Policy.preset("openai")), control=ControlAccess(enabled=False))
    sent: list[dict[str, object]] = []
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/_control/policy",
        "headers": [(b"host", b"127.0.0.1")],
    }

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    app.close()
    assert sent[0]["status"] == 404


# ------------------------------------------------------------------ S3: the command line


class Served:
    """A server process run by ``argv`` until SIGINT: its URL, first lines and stderr."""

    def __init__(self, argv: list[str], lines: int) -> None:
        self.argv, self.count = argv, lines
        self.url, self.lines, self.errors = "", list[str](), ""

    def __enter__(self) -> Served:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env, text=True
        )
        assert self.process.stdout is not None
        self.lines = [self.process.stdout.readline() for _ in range(self.count)]
        assert self.lines[0].startswith("fake_oauth_server listening on http://127.0.0"), self.lines
        self.url = self.lines[0].split()[3]
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.process.send_signal(signal.SIGINT)
            self.errors = self.process.communicate(timeout=10)[1]
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.communicate()


@pytest.mark.skipif(sys.platform == "win32", reason="stopped with SIGINT")
def test_served_tokens_are_random_and_the_control_token_is_printed() -> None:
    command = [sys.executable, "-m", "fake_oauth_server", "--port", "0"]
    with Served(command, 6) as served:
        token_line = next(line for line in served.lines if line.startswith("  control token"))
        token = token_line.split()[2]
        predicted = AuthServer(Policy.preset("openai"), seed="0").seed_grant(0).refresh_token
        with httpx.Client(base_url=served.url, trust_env=False, timeout=5) as http:
            assert http.post("/_control/grants", json={}).status_code == 401
            grant = http.post("/_control/grants", json={}, headers={CONTROL_TOKEN_HEADER: token})
            assert grant.status_code == 201
            assert grant.json()["refresh_token"] != predicted
            form = {"grant_type": "refresh_token", "refresh_token": predicted}
            assert http.post("/oauth/token", data=form).status_code in (400, 401)
            foreign = {CONTROL_TOKEN_HEADER: token, "origin": "https://evil.example"}
            assert http.post("/_control/reset", json={}, headers=foreign).status_code == 403


@pytest.mark.skipif(sys.platform == "win32", reason="stopped with SIGINT")
def test_no_control_turns_the_control_api_off() -> None:
    command = [sys.executable, "-m", "fake_oauth_server", "--port", "0", "--no-control"]
    with Served(command, 5) as served:
        assert "  control API     off\n" in served.lines
        with httpx.Client(base_url=served.url, trust_env=False, timeout=5) as http:
            assert http.get("/_control/policy").status_code == 404


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--host", "192.0.2.1"], "pass --allow-remote"),  # TEST-NET: never really bound
        (["--control-token", "short"], "--control-token must be at least 16"),
        (["--header-timeout", "0"], "header-timeout must be within"),
        (["--max-connections", "0"], "max-connections must be at least 1"),
        (["--seed", ""], "--seed must not be empty"),
    ],
)
def test_cli_errors_are_one_line_exit_2(argv: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fake_oauth_server", "--port", "0", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert done.returncode == 2, done
    assert done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr


# ------------------------------------------------------------------ S3: redaction


def foreign_tokens() -> st.SearchStrategy[str]:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    opaque = st.text(alphabet, min_size=32, max_size=120).filter(
        lambda t: any(c.isdigit() for c in t)
    )
    hexes = st.binary(min_size=16, max_size=64).map(bytes.hex)
    segment = st.text(alphabet, min_size=1, max_size=60)
    jwts = st.tuples(segment, segment, segment).map(lambda p: "eyJ" + ".".join(p))
    return st.one_of(opaque, hexes, jwts)


@given(token=foreign_tokens(), where=st.sampled_from(["?q=", "?access_token=", "/a/b/", " "]))
def test_no_token_shaped_string_reaches_the_access_log(token: str, where: str) -> None:
    line = f'127.0.0.1:5 "GET /v1/me{where}{token}&x=1" 401 r3'
    assert token not in redact_log(line)


@given(
    secret=st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12),
    name=st.sampled_from(["refresh_token", "code", "client_secret", "password", "id_token"]),
)
def test_short_secrets_in_named_parameters_are_hidden(secret: str, name: str) -> None:
    line = f'127.0.0.1:5 "POST /oauth/token?{name}={secret}" 400 r1'
    assert f'={secret}"' not in redact_log(line)  # the whole value, up to its end


@pytest.mark.parametrize(
    "line",
    [
        '127.0.0.1:50412 "POST /a/codex-agent-1/oauth/token" 200 r12',
        '[::1]:8 "GET /.well-known/oauth-authorization-server" 200 r1 fault=latency',
        '127.0.0.1:9 "POST /_control/grants" 201 control',
    ],
)
def test_ordinary_access_log_lines_are_left_alone(line: str) -> None:
    assert redact_log(line) == line


def test_the_access_log_hides_another_servers_token(live: RunningServer, log: list[str]) -> None:
    google_like = "1//0gDvBq3xYzAbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
    with httpx.Client(trust_env=False, timeout=5) as http:
        http.get(live.base_url + "/v1/me", params={"token": "abc", "q": google_like})
    wait_for(lambda: any("/v1/me" in line for line in log))
    text = "\n".join(log)
    assert google_like[3:] not in text, text
    assert "token=abc" not in text, text


def test_binding_beyond_loopback_needs_allow_remote() -> None:
    from fake_oauth_server import FakeServerError

    with pytest.raises(FakeServerError, match="--allow-remote"), serve_in_thread(host="0.0.0.0"):
        pass  # never reached: refused before anything is bound
