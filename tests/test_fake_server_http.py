"""The real HTTP server on 127.0.0.1: endpoints, control API, real faults, hold and release."""

from __future__ import annotations

import asyncio
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator, MutableMapping
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from fake_oauth_server import (
    AuditEvent,
    AuditKind,
    AuthServer,
    ControlError,
    FakeOAuthApp,
    Fault,
    Policy,
    RunningServer,
    fingerprint,
    s256,
    serve_in_thread,
)

RAW_TOKEN = re.compile(r"tr[arc]_[0-9a-f]{32}")
REUSED = {
    "error": {
        "message": "Your refresh token has already been used to generate a new access token. "
        "Please try signing in again.",
        "type": "invalid_request_error",
        "param": None,
        "code": "refresh_token_reused",
    }
}


@pytest.fixture(scope="module")
def live_server() -> Iterator[RunningServer]:
    with serve_in_thread("openai", hold_timeout=5.0) as running:
        yield running


@pytest.fixture
def live(live_server: RunningServer) -> RunningServer:
    live_server.control.reset(seed="0", policy="openai")
    return live_server


@pytest.fixture
def http(live: RunningServer) -> Iterator[httpx.Client]:
    headers = live.control_headers  # for its /_control/ calls
    with httpx.Client(
        base_url=live.base_url, trust_env=False, timeout=10, headers=headers
    ) as client:
        yield client


def form(token: str) -> dict[str, str]:
    return {"grant_type": "refresh_token", "refresh_token": token}


def test_refresh_twice_gives_the_reuse_error(live: RunningServer, http: httpx.Client) -> None:
    assert live.base_url.startswith("http://127.0.0.1:")
    pair = live.control.seed_grant(user="ada", client_id="codex")
    first = http.post("/oauth/token", data=form(pair.refresh_token))
    assert first.status_code == 200
    fields = {"access_token", "refresh_token", "token_type", "expires_in", "id_token"}
    assert set(first.json()) == fields  # the openai preset sends an id_token, as OpenAI does
    again = http.post("/oauth/token", json=form(pair.refresh_token))  # Codex sends JSON
    assert (again.status_code, again.json()) == (401, REUSED)
    audit = live.control.audit()
    assert [(e.request_id, e.kind, e.reason) for e in audit if e.request_id == "r2"] == [
        ("r2", AuditKind.PRESENTED, ""),
        ("r2", AuditKind.REJECTED, "reused"),
        ("r2", AuditKind.REVOKED, "reused"),
        ("r2", AuditKind.REVOKED, "reused"),
        ("r2", AuditKind.REVOKED, "reused"),
    ]
    assert {e.client_id for e in audit} == {"codex"}
    assert again.headers["x-request-id"] == "r2"
    assert live.control.audit(since=len(audit) - 1) == audit[-1:]


def test_metadata_resource_and_clock(live: RunningServer, http: httpx.Client) -> None:
    meta = http.get("/.well-known/oauth-authorization-server").json()
    assert meta["issuer"] == live.base_url
    assert meta["token_endpoint"] == live.token_url
    assert meta["code_challenge_methods_supported"] == ["S256"]
    pair = live.control.seed_grant()
    headers = {"authorization": f"Bearer {pair.access_token}"}
    assert http.get("/v1/me", headers=headers).json() == {"user": "user", "family": "fam-1"}
    live.control.advance_clock(3600)
    expired = http.get("/v1/me", headers=headers)
    assert (expired.status_code, expired.json()["error"]["code"]) == (401, "token_expired")
    assert http.head("/v1/me").content == b""


def test_control_policy_errors_and_routes(live: RunningServer, http: httpx.Client) -> None:
    policy = live.control.set_policy("hydra", reuse_window=60)
    assert policy == Policy.preset("hydra").replace(reuse_window=60.0)
    assert live.control.policy() == policy
    assert http.get("/_control/policy").json()["preset"] is None
    assert live.control.set_policy(reuse_window=0) == Policy.preset("hydra")
    with pytest.raises(ControlError, match="unknown policy preset") as caught:
        live.control.set_policy("nope")
    assert caught.value.status == 400
    with pytest.raises(ControlError, match="max_reuse"):
        live.control.set_policy(max_reuse=-1)
    assert http.get("/_control/nothing").status_code == 404
    wrong = http.delete("/_control/policy")
    assert (wrong.status_code, wrong.headers["allow"]) == (405, "GET, PUT")
    assert http.post("/_control/grants", content=b"{oops").status_code == 400
    assert http.post("/_control/grants", json={"user": 5}).status_code == 400
    assert http.post("/_control/release", json={"id": "h99"}).status_code == 404
    assert http.post("/_control/clock", json={"advance": "inf"}).status_code == 400


def test_drop_commits_then_closes_without_a_response(
    live: RunningServer, http: httpx.Client
) -> None:
    pair = live.control.seed_grant()
    live.control.set_faults([Fault.drop()])
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        http.post("/oauth/token", data=form(pair.refresh_token))
    events = [(e.kind, e.reason) for e in live.control.audit() if e.request_id == "r1"]
    assert events[1] == (AuditKind.ACCEPTED, "")
    assert events[-1] == (AuditKind.FAULT, "drop")
    retry = http.post("/oauth/token", data=form(pair.refresh_token))
    assert retry.json() == REUSED


def test_reset_5xx_429_and_latency_are_real(live: RunningServer, http: httpx.Client) -> None:
    pair = live.control.seed_grant()
    live.control.set_faults(
        [Fault.reset(), Fault.server_error(502), Fault.rate_limit(2), Fault.delay(0.1)]
    )
    assert live.control.pending_faults()[0] == Fault.reset()
    # Linux reports the RST as ECONNRESET; a Windows client under Wine reads an end of stream
    ended: tuple[type[Exception], ...] = (httpx.ReadError,)
    if sys.platform == "win32":
        ended += (httpx.RemoteProtocolError,)
    with pytest.raises(ended):
        http.post("/oauth/token", data=form(pair.refresh_token))
    assert http.post("/oauth/token", data=form(pair.refresh_token)).status_code == 502
    limited = http.post("/oauth/token", data=form(pair.refresh_token))
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "2")
    slow = http.post("/oauth/token", data=form(pair.refresh_token))
    assert slow.status_code == 200  # nothing before it committed
    assert slow.elapsed.total_seconds() >= 0.1
    live.control.set_faults([Fault.drop()])
    live.control.clear_faults()
    assert live.control.pending_faults() == ()


def refresh_in_thread(url: str, token: str, out: dict[str, int], key: str) -> threading.Thread:
    def run() -> None:
        with httpx.Client(trust_env=False, timeout=10) as client:
            out[key] = client.post(url, data=form(token)).status_code

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_hold_and_release_choose_who_wins(live: RunningServer) -> None:
    pair = live.control.seed_grant()
    live.control.hold()
    statuses: dict[str, int] = {}
    atlas = refresh_in_thread(live.token_url, pair.refresh_token, statuses, "atlas")
    first = live.control.held(at_least=1)
    nova = refresh_in_thread(live.token_url, pair.refresh_token, statuses, "nova")
    held = live.control.held(at_least=2)
    assert [h["id"] for h in held] == [first[0]["id"], held[1]["id"]]
    assert held[0]["token_fp"] == fingerprint(pair.refresh_token)
    assert not RAW_TOKEN.search(repr(held))
    assert live.control.release(held[1]["id"]) == 200  # Nova, who came second, wins
    assert live.control.release(held[0]["id"]) == 401
    atlas.join(5)
    nova.join(5)
    assert statuses == {"nova": 200, "atlas": 401}
    assert live.control.hold(False) == []


def test_held_requests_time_out_and_hold_off_releases_all() -> None:
    with serve_in_thread("rfc9700", hold_timeout=0.2) as running:
        pair = running.control.seed_grant()
        running.control.hold()
        statuses: dict[str, int] = {}
        refresh_in_thread(running.token_url, pair.refresh_token, statuses, "late").join(5)
        assert statuses == {"late": 503}
        waiting = refresh_in_thread(running.token_url, pair.refresh_token, statuses, "go")
        running.control.held(at_least=1)
        assert len(running.control.hold(False)) == 1
        waiting.join(5)
        assert statuses["go"] == 200


def test_pkce_login_on_the_wire(live: RunningServer, http: httpx.Client) -> None:
    verifier = "x" * 64
    params = {
        "response_type": "code",
        "client_id": "cli",
        "redirect_uri": "http://127.0.0.1:1455/cb",
        "code_challenge": s256(verifier),
        "code_challenge_method": "S256",
    }
    redirect = http.get("/authorize", params=params)
    assert redirect.status_code == 302
    code = parse_qs(urlsplit(redirect.headers["location"]).query)["code"][0]
    tokens = http.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "http://127.0.0.1:1455/cb",
            "code_verifier": verifier,
        },
    )
    assert tokens.status_code == 200
    assert tokens.json()["refresh_token"].startswith("trr_")


def test_oversized_body_and_raw_garbage_never_5xx(live: RunningServer, http: httpx.Client) -> None:
    big = http.post("/oauth/token", content=b"a" * (70 * 1024))
    assert big.status_code == 413
    assert big.json()["error"]["code"] == "invalid_request"
    host, port = urlsplit(live.base_url).hostname, urlsplit(live.base_url).port
    assert host is not None
    assert port is not None
    for raw in (
        b"GARBAGE\r\n\r\n",
        b"POST /oauth/token%ff%fe HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n\xff\xfe\x00",
        b"GET /v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xff\r\n\r\n",
        b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\nshort",
    ):
        with socket.create_connection((host, port), timeout=5) as conn:
            conn.sendall(raw)
            conn.shutdown(socket.SHUT_WR)
            status_line = conn.recv(4096).split(b"\r\n", 1)[0]
        assert not status_line.startswith(b"HTTP/1.1 5"), (raw, status_line)


def test_control_client_round_trips(live: RunningServer) -> None:
    first = live.control.seed_grant()
    live.control.reset(seed="0")
    again = live.control.seed_grant()  # same seed, same tokens
    assert (again.access_token, again.refresh_token) == (first.access_token, first.refresh_token)
    live.control.reset(seed="other", policy=Policy.preset("okta"))
    assert live.control.seed_grant().refresh_token != first.refresh_token
    assert live.control.policy() == Policy.preset("okta")
    assert abs(live.control.now() - time.time()) < 5
    live.control.hold()
    assert live.control.release_all() == []
    live.control.hold(False)
    events = live.control.audit()
    assert [AuditEvent.from_json(e.to_json()) for e in events] == list(events)
    assert repr(live.control) == f"ControlClient({live.base_url!r})"


def test_access_log_shows_fingerprints_only() -> None:
    lines: list[str] = []
    with serve_in_thread("openai", access_log=lines.append) as running:
        pair = running.control.seed_grant()
        with httpx.Client(base_url=running.base_url, trust_env=False) as http:
            http.post(f"/oauth/token?refresh_token={pair.refresh_token}", data=form("x"))
            http.get("/v1/me", headers={"authorization": f"Bearer {pair.access_token}"})
    assert any(fingerprint(pair.refresh_token) in line for line in lines), lines
    assert not any(RAW_TOKEN.search(line) for line in lines)
    assert any('"POST /_control/grants" 201 control' in line for line in lines)


# ------------------------------------------------------------------ the ASGI app on its own


def run_asgi(app: FakeOAuthApp, method: str, path: str, body: bytes = b"") -> list[dict[str, Any]]:
    """Drive the ASGI app directly, as a server other than ours would."""
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
        "server": ("127.0.0.1", 1),
        "client": ("127.0.0.1", 2),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    asyncio.run(app(scope, receive, send))
    return sent


def test_asgi_app_elsewhere_answers_502_for_drops_and_500_for_bugs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = AuthServer(Policy.preset("rfc9700"))
    app = FakeOAuthApp(server)
    try:
        pair = server.seed_grant(time.time())
        server.set_faults([Fault.drop()])
        sent = run_asgi(app, "POST", "/oauth/token", urlencode(form(pair.refresh_token)).encode())
        assert sent[0]["status"] == 502
        assert server.family_of(pair.refresh_token) == ("fam-1", 0)
        assert any(e.kind is AuditKind.ACCEPTED for e in server.audit)  # it did commit

        def broken(*args: object) -> None:
            raise RuntimeError("trr_" + "1" * 32)

        monkeypatch.setattr(server, "deliver", broken)
        sent = run_asgi(app, "POST", "/oauth/token")
        assert sent[0]["status"] == 500
        assert b"Traceback" not in sent[1]["body"]
        assert b"trr_" not in sent[1]["body"]
    finally:
        app.close()


def test_asgi_lifespan() -> None:
    app = FakeOAuthApp(AuthServer())
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message["type"])

    asyncio.run(app({"type": "lifespan"}, receive, send))
    app.close()
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
