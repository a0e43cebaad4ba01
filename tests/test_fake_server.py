"""Tests of the fake OAuth server: the pure core, its audit log, and the respx surface."""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import httpx
import pytest
import respx
from hypothesis import given, settings
from hypothesis import strategies as st

from fake_oauth_server import (
    PRESETS,
    AuditEvent,
    AuditKind,
    AuthServer,
    ErrorDialect,
    FakeServerError,
    InvalidPolicy,
    Policy,
    Request,
    Response,
    TokenKind,
    TokenPair,
    UnknownPreset,
    fingerprint,
    mount_respx,
    redact,
)
from fake_oauth_server._ledger import Ledger

FORM = (("content-type", "application/x-www-form-urlencoded"),)
JSON_CT = (("content-type", "application/json"),)
REUSED_BODY = {
    "error": {
        "message": (
            "Your refresh token has already been used to generate a new access token. "
            "Please try signing in again."
        ),
        "type": "invalid_request_error",
        "param": None,
        "code": "refresh_token_reused",
    }
}
RAW_TOKEN = re.compile(r"tr[ar]_[0-9a-f]{32}")


def refresh_request(token: str, *, request_id: str = "q", as_json: bool = False) -> Request:
    if as_json:
        body = json.dumps({"grant_type": "refresh_token", "refresh_token": token}).encode()
        return Request("POST", "/oauth/token", body, JSON_CT, request_id)
    body = f"grant_type=refresh_token&refresh_token={token}".encode()
    return Request("POST", "/oauth/token", body, FORM, request_id)


def refresh(server: AuthServer, token: str, now: float = 1.0, request_id: str = "q") -> Response:
    return server.handle(refresh_request(token, request_id=request_id), now)


def me(server: AuthServer, access_token: str, now: float) -> Response:
    headers = (("authorization", f"Bearer {access_token}"),)
    return server.handle(Request("GET", "/v1/me", headers=headers, request_id="me"), now)


def summary(events: tuple[AuditEvent, ...]) -> list[tuple[str, str, str, str, int, str]]:
    return [
        (e.request_id, e.kind.value, e.token_kind.value, e.token_fp, e.generation, e.reason)
        for e in events
    ]


# ------------------------------------------------------------------ rotation


def test_rotation_chain_over_generations() -> None:
    server = AuthServer(seed="chain")
    pair = server.seed_grant(0.0)
    assert server.family_of(pair.refresh_token) == ("fam-1", 0)
    seen = {pair.access_token, pair.refresh_token}
    token = pair.refresh_token
    for generation in range(1, 6):
        response = refresh(server, token, now=float(generation))
        assert response.status == 200
        body = response.json()
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 3600
        assert body["refresh_token"] != token
        assert server.family_of(body["refresh_token"]) == ("fam-1", generation)
        assert server.family_of(body["access_token"]) == ("fam-1", generation)
        seen |= {body["access_token"], body["refresh_token"]}
        assert refresh(server, token, now=float(generation)).status == 401  # spent
        token = body["refresh_token"]
    assert len(seen) == 12  # every minted token is distinct
    assert server.check_access(pair.access_token, 10.0).ok  # old access tokens live on


def test_reuse_gives_exact_openai_body_and_keeps_family_by_default() -> None:
    server = AuthServer()  # the defaults refuse the reuse but keep the family
    pair = server.seed_grant(0.0)
    fresh = refresh(server, pair.refresh_token).json()
    reused = refresh(server, pair.refresh_token, now=2.0)
    assert reused.status == 401
    assert reused.json() == REUSED_BODY
    assert ("content-type", "application/json") in reused.headers
    assert refresh(server, fresh["refresh_token"], now=3.0).status == 200
    assert server.check_access(fresh["access_token"], 3.0).ok


def test_openai_preset_reuse_then_later_refreshes_are_invalidated() -> None:
    # OpenAI: 401 refresh_token_reused; later refreshes refresh_token_invalidated.
    server = AuthServer(Policy.preset("openai"))
    pair = server.seed_grant(0.0)
    fresh = refresh(server, pair.refresh_token).json()
    reused = refresh(server, pair.refresh_token, now=2.0)
    assert (reused.status, reused.json()) == (401, REUSED_BODY)
    later = refresh(server, fresh["refresh_token"], now=3.0)
    assert later.status == 401
    assert later.json()["error"]["code"] == "refresh_token_invalidated"
    assert server.check_access(fresh["access_token"], 3.0).reason == "revoked"


def test_rfc9700_reuse_revokes_whole_family() -> None:
    server = AuthServer(Policy.preset("rfc9700"))
    pair = server.seed_grant(0.0)
    fresh = refresh(server, pair.refresh_token, request_id="q1").json()
    reused = refresh(server, pair.refresh_token, now=2.0, request_id="q2")
    assert reused.status == 400
    assert reused.json()["error"] == "invalid_grant"
    revoked = [e for e in server.audit if e.kind is AuditKind.REVOKED]
    assert [(e.token_kind, e.generation, e.reason, e.request_id) for e in revoked] == [
        (TokenKind.ACCESS, 0, "reused", "q2"),
        (TokenKind.ACCESS, 1, "reused", "q2"),
        (TokenKind.REFRESH, 1, "reused", "q2"),
    ]
    for access in (pair.access_token, fresh["access_token"]):
        assert server.check_access(access, 2.0).reason == "revoked"
    later = refresh(server, fresh["refresh_token"], now=3.0, request_id="q3")
    assert later.status == 400
    assert later.json()["error"] == "invalid_grant"
    assert server.audit[-1].reason == "revoked"
    assert server.audit[-1].kind is AuditKind.REJECTED
    denied = me(server, fresh["access_token"], 3.0)
    assert denied.status == 401
    assert denied.json()["error"] == "invalid_token"


def test_family_revocation_in_openai_dialect_says_invalidated() -> None:
    server = AuthServer(Policy(revoke_family_on_reuse=True))
    pair = server.seed_grant(0.0)
    fresh = refresh(server, pair.refresh_token).json()
    assert refresh(server, pair.refresh_token).json()["error"]["code"] == "refresh_token_reused"
    later = refresh(server, fresh["refresh_token"])
    assert later.status == 401
    assert later.json()["error"]["code"] == "refresh_token_invalidated"
    assert me(server, fresh["access_token"], 1.0).json()["error"]["code"] == "token_invalidated"


def test_rotation_off_returns_same_refresh_token() -> None:
    server = AuthServer(Policy(rotation=False))
    pair = server.seed_grant(0.0)
    accesses = set()
    for step in range(3):
        body = refresh(server, pair.refresh_token, now=float(step)).json()
        assert body["refresh_token"] == pair.refresh_token
        accesses.add(body["access_token"])
    assert len(accesses) == 3
    assert server.family_of(pair.refresh_token) == ("fam-1", 0)


def test_refresh_token_lifetime_expires() -> None:
    server = AuthServer(Policy(refresh_token_lifetime=100.0))
    pair = server.seed_grant(0.0)
    expired = refresh(server, pair.refresh_token, now=100.0)
    assert expired.status == 401
    assert expired.json()["error"]["code"] == "refresh_token_expired"
    assert server.audit[-1].reason == "expired"


def test_unknown_and_wrong_kind_tokens_are_invalidated() -> None:
    server = AuthServer()
    pair = server.seed_grant(0.0)
    families = []
    for token in ("trr_" + "0" * 32, pair.access_token):
        response = refresh(server, token)
        assert response.status == 401
        assert response.json()["error"]["code"] == "refresh_token_invalidated"
        presented, rejected = server.audit[-2:]
        assert (presented.kind, rejected.kind) == (AuditKind.PRESENTED, AuditKind.REJECTED)
        assert rejected.reason == "unknown"
        families.append((presented.family, presented.generation, presented.token_kind))
    # A never-minted token has no family; an access token keeps its own.
    assert families == [("", -1, TokenKind.REFRESH), ("fam-1", 0, TokenKind.ACCESS)]


# ------------------------------------------------------------------ access tokens


def test_access_token_expiry_via_check_access_and_me() -> None:
    server = AuthServer(Policy(access_token_lifetime=10.0))
    pair = server.seed_grant(5.0)
    assert pair.expires_at == 15.0
    assert server.check_access(pair.access_token, 14.999).ok
    check = server.check_access(pair.access_token, 15.0)
    assert (check.ok, check.reason, check.family, check.generation) == (
        False,
        "expired",
        "fam-1",
        0,
    )
    ok = me(server, pair.access_token, 14.0)
    assert ok.status == 200
    assert ok.json() == {"user": "user", "family": "fam-1"}
    late = me(server, pair.access_token, 15.0)
    assert late.status == 401
    assert late.json()["error"]["code"] == "token_expired"
    assert server.check_access("tra_" + "f" * 32, 0.0).reason == "unknown"
    missing = server.handle(Request("GET", "/v1/me"), 0.0)
    assert missing.status == 401
    assert missing.json()["error"]["code"] == "missing_authorization"


def test_rfc6749_dialect_access_error_shape() -> None:
    server = AuthServer(Policy(dialect=ErrorDialect.RFC6749, access_token_lifetime=1.0))
    pair = server.seed_grant(0.0)
    late = me(server, pair.access_token, 1.0)
    assert late.status == 401
    assert set(late.json()) == {"error", "error_description"}
    assert late.json()["error"] == "invalid_token"


# ------------------------------------------------------------------ audit


def test_audit_for_refresh_and_reuse() -> None:
    server = AuthServer(seed="audit")
    pair = server.seed_grant(0.0, client_id="cli")
    body = refresh(server, pair.refresh_token, now=1.0, request_id="q1").json()
    refresh(server, pair.refresh_token, now=2.0, request_id="q2")
    rt0, at0 = fingerprint(pair.refresh_token), fingerprint(pair.access_token)
    at1, rt1 = fingerprint(body["access_token"]), fingerprint(body["refresh_token"])
    assert summary(server.audit) == [
        ("seed", "issued", "access", at0, 0, ""),
        ("seed", "issued", "refresh", rt0, 0, ""),
        ("q1", "presented", "refresh", rt0, 0, ""),
        ("q1", "accepted", "refresh", rt0, 0, ""),
        ("q1", "issued", "access", at1, 1, ""),
        ("q1", "issued", "refresh", rt1, 1, ""),
        ("q2", "presented", "refresh", rt0, 0, ""),
        ("q2", "rejected", "refresh", rt0, 0, "reused"),
    ]
    assert [e.time for e in server.audit] == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0]
    assert {e.client_id for e in server.audit} == {"cli"}
    assert {e.family for e in server.audit} == {"fam-1"}
    assert rt0.startswith("rt#")
    assert at0.startswith("at#")
    assert not RAW_TOKEN.search(repr(server.audit))


def test_reprs_never_show_raw_tokens() -> None:
    server = AuthServer()
    pair = server.seed_grant(0.0)
    request = refresh_request(pair.refresh_token)
    response = server.handle(request, 1.0)
    for text in (repr(pair), repr(request), repr(response), repr(server)):
        assert not RAW_TOKEN.search(text), text
    assert fingerprint(pair.refresh_token) in repr(request)
    assert isinstance(pair, TokenPair)


# ------------------------------------------------------------------ determinism


def run_script(seed: str) -> tuple[list[bytes], tuple[AuditEvent, ...]]:
    server = AuthServer(seed=seed)
    pair = server.seed_grant(0.0)
    bodies = []
    token = pair.refresh_token
    for step in range(4):
        response = refresh(server, token, now=float(step), request_id=f"q{step}")
        bodies.append(response.body)
        bodies.append(refresh(server, token, now=float(step)).body)  # a reuse
        token = response.json()["refresh_token"]
    bodies.append(me(server, pair.access_token, 5.0).body)
    return bodies, server.audit


def test_same_seed_same_requests_are_byte_identical() -> None:
    first, second, other = run_script("s1"), run_script("s1"), run_script("s2")
    assert first == second
    assert first[0][0] != other[0][0]  # the seed changes the tokens
    assert len(first[1]) == 2 + 4 * 6 + 2


# ------------------------------------------------------------------ bodies


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"grant_type=refresh_token&refresh_token={t}", FORM),
        (b'{"grant_type": "refresh_token", "refresh_token": "{t}"}', JSON_CT),
        (
            b'{"grant_type":"refresh_token","refresh_token":"{t}","client_id":"x"}',
            (("Content-Type", "application/json; charset=utf-8"),),
        ),
        (b'  {"grant_type":"refresh_token","refresh_token":"{t}"}', ()),  # sniffed as JSON
        (b"grant_type=refresh_token&refresh_token={t}", ()),  # sniffed as a form
    ],
)
def test_json_and_form_bodies(body: bytes, headers: tuple[tuple[str, str], ...]) -> None:
    server = AuthServer()
    pair = server.seed_grant(0.0)
    filled = body.replace(b"{t}", pair.refresh_token.encode())
    response = server.handle(Request("POST", "/oauth/token", filled, headers), 1.0)
    assert response.status == 200, response
    assert server.family_of(response.json()["refresh_token"]) == ("fam-1", 1)


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "code"),
    [
        ("POST", "/oauth/token", b"{not json", JSON_CT, 400, "invalid_request"),
        ("POST", "/oauth/token", b"[1, 2]", JSON_CT, 400, "invalid_request"),
        ("POST", "/oauth/token", b'{"grant_type": 5}', JSON_CT, 400, "invalid_request"),
        ("POST", "/oauth/token", b"refresh_token=x", FORM, 400, "invalid_request"),
        ("POST", "/oauth/token", b"grant_type=refresh_token", FORM, 400, "invalid_request"),
        ("POST", "/oauth/token", b"grant_type=password", FORM, 400, "unsupported_grant_type"),
        ("POST", "/oauth/token", b"grant_type=a&grant_type=b", FORM, 400, "invalid_request"),
        ("POST", "/oauth/token", b"\xff\xfe", FORM, 400, "invalid_request"),
        ("GET", "/oauth/token", b"", (), 405, "method_not_allowed"),
        ("POST", "/nope", b"", (), 404, "not_found"),
    ],
)
@pytest.mark.parametrize("dialect", list(ErrorDialect))
def test_malformed_requests_get_oauth_errors(
    method: str,
    path: str,
    body: bytes,
    headers: tuple[tuple[str, str], ...],
    status: int,
    code: str,
    dialect: ErrorDialect,
) -> None:
    server = AuthServer(Policy(dialect=dialect))
    response = server.handle(Request(method, path, body, headers), 0.0)
    assert response.status == status
    payload = response.json()
    if dialect is ErrorDialect.OPENAI:
        assert payload["error"]["code"] == code
        assert set(payload["error"]) == {"message", "type", "param", "code"}
    else:
        assert payload["error"] == code
        assert isinstance(payload["error_description"], str)
    assert server.audit == ()


@settings(max_examples=150, deadline=None)
@given(
    method=st.sampled_from(["POST", "GET", "PUT", "post", ""]),
    path=st.sampled_from(["/oauth/token", "/v1/me", "/oauth/token?x=1", "/", "/%00"]),
    body=st.one_of(
        st.binary(max_size=200),
        st.text(max_size=100).map(str.encode),
        st.dictionaries(st.text(max_size=20), st.none() | st.text(max_size=20) | st.integers())
        .map(json.dumps)
        .map(str.encode),
        st.just(b"[" * 5000),
    ),
    content_type=st.one_of(
        st.none(),
        st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/x"]),
        st.text(max_size=30),
    ),
    dialect=st.sampled_from(list(ErrorDialect)),
)
def test_fuzz_malformed_input_never_raises(
    method: str, path: str, body: bytes, content_type: str | None, dialect: ErrorDialect
) -> None:
    server = AuthServer(Policy(dialect=dialect))
    headers = () if content_type is None else (("content-type", content_type),)
    auth = (("authorization", body.decode("latin-1")),)
    response = server.handle(Request(method, path, body, headers + auth), 0.0)
    assert 400 <= response.status < 500
    assert isinstance(response.json()["error"], dict | str)


# ------------------------------------------------------------------ respx surface


def test_respx_surface_with_real_httpx_client() -> None:
    server = AuthServer(seed="respx")
    pair = server.seed_grant(0.0)
    now = [100.0]
    with respx.mock(assert_all_called=False) as router:
        mount_respx(router, server, clock=lambda: now[0])
        with httpx.Client(base_url="http://127.0.0.1:8900") as client:
            meta = client.get("/.well-known/oauth-authorization-server").json()
            assert meta["token_endpoint"] == "http://127.0.0.1:8900/oauth/token"
            assert "refresh_token" in meta["grant_types_supported"]
            form = {"grant_type": "refresh_token", "refresh_token": pair.refresh_token}
            first = client.post("/oauth/token", data=form)
            assert first.status_code == 200
            now[0] = 200.0
            again = client.post("/oauth/token", json=form)  # Codex sends JSON
            assert again.status_code == 401
            assert again.json() == REUSED_BODY
            access = first.json()["access_token"]
            who = client.get("/v1/me", headers={"Authorization": f"Bearer {access}"})
            assert who.json() == {"user": "user", "family": "fam-1"}
    presented = [e for e in server.audit if e.kind is AuditKind.PRESENTED]
    assert [(e.request_id, e.time) for e in presented] == [
        ("r2", 100.0),
        ("r3", 200.0),
        ("r4", 200.0),
    ]


def test_respx_base_url_with_path_prefix() -> None:
    server = AuthServer(issuer="https://auth.test/tenant")
    pair = server.seed_grant(0.0)
    with respx.mock(assert_all_called=False) as router:
        mount_respx(router, server, base_url="https://auth.test/tenant", clock=lambda: 1.0)
        form = {"grant_type": "refresh_token", "refresh_token": pair.refresh_token}
        response = httpx.post("https://auth.test/tenant/oauth/token", data=form)
        assert response.status_code == 200
        meta = httpx.get("https://auth.test/tenant/.well-known/oauth-authorization-server")
        assert meta.json()["issuer"] == "https://auth.test/tenant"


# ------------------------------------------------------------------ concurrency


def test_concurrent_refreshes_of_one_token_only_one_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    # Widen the window between reading the token's state and spending it, so
    # that without the server's lock every thread would pass the check.
    check = Ledger.grant_failure

    def slow_check(self: Ledger, family: Any, record: Any, now: float) -> Any:
        failure = check(self, family, record, now)
        time.sleep(0.002)
        return failure

    monkeypatch.setattr(Ledger, "grant_failure", slow_check)
    server = AuthServer()
    pair = server.seed_grant(0.0)
    barrier = threading.Barrier(8)
    statuses: list[int] = []
    guard = threading.Lock()

    def worker(index: int) -> None:
        barrier.wait()
        response = refresh(server, pair.refresh_token, request_id=f"t{index}")
        with guard:
            statuses.append(response.status)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert sorted(statuses) == [200] + [401] * 7
    accepted = [e for e in server.audit if e.kind is AuditKind.ACCEPTED]
    assert len(accepted) == 1


# ------------------------------------------------------------------ tokens and policy


def test_redact_removes_every_token_from_a_body() -> None:
    server = AuthServer()
    pair = server.seed_grant(0.0)
    body = refresh(server, pair.refresh_token).body.decode()
    tokens: dict[str, Any] = json.loads(body)
    assert RAW_TOKEN.search(body)
    cleaned = redact(body)
    assert not RAW_TOKEN.search(cleaned)
    assert fingerprint(tokens["access_token"]) in cleaned
    assert fingerprint(tokens["refresh_token"]) in cleaned
    assert (
        redact("Bearer xtra_" + "a" * 32 + "!") == "Bearer x" + fingerprint("tra_" + "a" * 32) + "!"
    )
    assert redact("nothing here, tra_ABC") == "nothing here, tra_ABC"
    assert fingerprint("hello").startswith("tok#")
    assert len(fingerprint("hello")) == len("tok#") + 8


def test_policy_presets_and_validation() -> None:
    assert Policy.preset("openai") == Policy(revoke_family_on_reuse=True, id_tokens=True)
    strict = Policy.preset("rfc9700")
    assert (strict.rotation, strict.revoke_family_on_reuse, strict.dialect) == (
        True,
        True,
        ErrorDialect.RFC6749,
    )
    with pytest.raises(UnknownPreset, match="'openai', 'rfc9700'") as caught:
        Policy.preset("nope")
    assert isinstance(caught.value, FakeServerError)
    assert "openai" in PRESETS
    with pytest.raises(InvalidPolicy, match="access_token_lifetime"):
        Policy(access_token_lifetime=0)
