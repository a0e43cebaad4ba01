"""Faults as data, the in-process (respx) surface, and logging in with PKCE."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from fake_oauth_server import (
    AuditKind,
    AuthServer,
    Fault,
    FaultKind,
    FaultPlan,
    InvalidFault,
    Policy,
    Request,
    TokenKind,
    respx_server,
    s256,
)

FORM = (("content-type", "application/x-www-form-urlencoded"),)
VERIFIER = "v" * 43 + "-._~0123456789"


def token_request(token: str, request_id: str = "q") -> Request:
    body = f"grant_type=refresh_token&refresh_token={token}".encode()
    return Request("POST", "/oauth/token", body, FORM, request_id)


def kinds(server: AuthServer, request_id: str) -> list[tuple[str, str]]:
    return [(e.kind.value, e.reason) for e in server.audit if e.request_id == request_id]


# ------------------------------------------------------------------ faults as values


@pytest.mark.parametrize(
    ("fault", "match"),
    [
        (lambda: Fault(FaultKind.SERVER_ERROR, status=404), "500-599"),
        (lambda: Fault(FaultKind.RATE_LIMIT, status=503), "429"),
        (lambda: Fault(FaultKind.DROP, status=503), "no status"),
        (lambda: Fault.delay(0), "latency > 0"),
        (lambda: Fault.delay(61), "latency"),
        (lambda: Fault(latency=float("nan")), "latency"),
        (lambda: Fault.server_error(retry_after=-1), "retry_after"),
        (lambda: Fault.from_json({"kind": "boom"}), "one of"),
        (lambda: Fault.from_json({"kind": "drop", "extra": 1}), "unknown fault field"),
        (lambda: Fault.from_json(["drop"]), "JSON object"),
        (lambda: FaultPlan(["drop"]), "Fault values"),  # type: ignore[list-item]
    ],
)
def test_invalid_faults_are_refused(fault: object, match: str) -> None:
    with pytest.raises(InvalidFault, match=match):
        fault()  # type: ignore[operator]


def test_fault_json_round_trip_and_defaults() -> None:
    faults = [
        Fault(),
        Fault.delay(0.25),
        Fault.server_error(),
        Fault.server_error(502, retry_after=5),
        Fault.rate_limit(),
        Fault.reset(),
        Fault.drop(),
        Fault(FaultKind.DROP, latency=1.0),
    ]
    assert [Fault.from_json(f.to_json()) for f in faults] == faults
    assert Fault.server_error().status == 503
    assert Fault.rate_limit().to_json() == {"kind": "429", "status": 429, "retry_after": 1}
    assert [f.commits for f in faults] == [True, True, False, False, False, False, True, True]


# ------------------------------------------------------------------ faults in the core


def test_scripted_faults_play_in_order_then_pass() -> None:
    server = AuthServer(Policy.preset("rfc9700"))
    pair = server.seed_grant(0.0)
    server.set_faults([Fault.server_error(), Fault.rate_limit(7), Fault.reset()])
    assert len(server.pending_faults) == 3
    for request_id in ("f1", "f2", "f3"):
        delivery = server.deliver(token_request(pair.refresh_token, request_id), 1.0)
        assert delivery.committed is None
    assert server.pending_faults == ()
    first = server.deliver(token_request(pair.refresh_token, "f1"), 1.0)
    assert first.response is not None  # the plan is spent: the token was never touched
    assert first.response.status == 200
    audit = [kinds(server, r) for r in ("f2", "f3")]
    assert audit == [[("fault", "429")], [("fault", "reset")]]


def test_5xx_and_429_answer_in_the_dialect_before_any_commit() -> None:
    server = AuthServer(Policy.preset("hydra"))
    pair = server.seed_grant(0.0)
    unavailable = server.deliver(token_request(pair.refresh_token), 1.0, Fault.server_error(502))
    limited = server.deliver(token_request(pair.refresh_token), 1.0, Fault.rate_limit(3))
    assert unavailable.response is not None
    assert limited.response is not None
    assert unavailable.response.status == 502
    assert unavailable.response.json()["error"] == "temporarily_unavailable"
    assert limited.response.status == 429
    assert ("retry-after", "3") in limited.response.headers
    assert server.family_of(pair.refresh_token) == ("fam-1", 0)
    assert [e.kind for e in server.audit if e.request_id == "q"] == [AuditKind.FAULT] * 2
    openai = AuthServer().deliver(token_request("x"), 0.0, Fault.rate_limit()).response
    assert openai is not None
    assert openai.json()["error"]["code"] == "rate_limit_exceeded"


def test_drop_commits_the_rotation_and_loses_the_response() -> None:
    """Corpus class 5 (docs/scenarios.md): the server spent the token; the retry replays it."""
    server = AuthServer(Policy.preset("openai"))
    pair = server.seed_grant(0.0)
    dropped = server.deliver(token_request(pair.refresh_token, "d1"), 1.0, Fault.drop())
    assert dropped.response is None
    assert dropped.committed is not None
    assert dropped.committed.status == 200
    assert kinds(server, "d1")[-1] == ("fault", "drop")
    fault_event = server.audit[-1]
    assert (fault_event.token_kind, fault_event.family) == (TokenKind.REFRESH, "fam-1")
    retry = server.deliver(token_request(pair.refresh_token, "d2"), 2.0)
    assert retry.response is not None
    assert retry.response.json()["error"]["code"] == "refresh_token_reused"
    # Under Okta's 30 s grace period the same retry succeeds: why servers added windows.
    okta = AuthServer(Policy.preset("okta"))
    pair = okta.seed_grant(0.0)
    okta.deliver(token_request(pair.refresh_token), 1.0, Fault.drop())
    saved = okta.deliver(token_request(pair.refresh_token, "d2"), 2.0).response
    assert saved is not None
    assert saved.status == 200
    assert ("accepted", "grace") in kinds(okta, "d2")


def test_fault_plan_paths_and_callables() -> None:
    server = AuthServer()
    pair = server.seed_grant(0.0)
    me = Request("GET", "/v1/me", headers=(("authorization", f"Bearer {pair.access_token}"),))
    server.set_faults([Fault.server_error()])
    assert server.next_fault(me) == Fault()  # token endpoint only, by default
    server.set_faults(FaultPlan([Fault.reset()], paths=["/v1/me"]))
    assert server.deliver(me, 1.0).response is None
    assert server.audit[-1].token_kind is TokenKind.ACCESS
    seen: list[str] = []

    def every_other(request: Request) -> Fault | None:
        seen.append(request.request_id)
        return Fault.server_error() if len(seen) % 2 else None

    server.set_faults(every_other)
    statuses = []
    for index in range(4):
        delivery = server.deliver(token_request("trr_" + "0" * 32, f"c{index}"), 1.0)
        assert delivery.response is not None
        statuses.append(delivery.response.status)
    assert statuses == [503, 401, 503, 401]
    assert server.pending_faults == ()
    server.set_faults(lambda request: "drop")  # type: ignore[arg-type,return-value]
    with pytest.raises(InvalidFault):
        server.deliver(token_request("x"), 1.0)
    server.set_faults(None)
    assert server.next_fault(token_request("x")) == Fault()


# ------------------------------------------------------------------ the respx surface


def test_respx_surface_applies_faults_like_a_real_server() -> None:
    with respx_server("openai") as fake, httpx.Client(base_url=fake.base_url) as http:
        pair = fake.seed_grant()
        form = {"grant_type": "refresh_token", "refresh_token": pair.refresh_token}
        fake.server.set_faults([Fault.reset(), Fault.drop(), Fault.delay(0.05)])
        with pytest.raises(httpx.ReadError):
            http.post("/oauth/token", data=form)
        with pytest.raises(httpx.RemoteProtocolError):
            http.post("/oauth/token", data=form)  # committed, then lost
        started = time.monotonic()
        retry = http.post("/oauth/token", data=form)
        assert time.monotonic() - started >= 0.05
        assert retry.status_code == 401
        assert retry.json()["error"]["code"] == "refresh_token_reused"
        assert retry.headers["x-request-id"] == "r3"


def test_respx_server_clock_expires_access_tokens() -> None:
    with respx_server(Policy(access_token_lifetime=60.0)) as fake, httpx.Client() as http:
        pair = fake.seed_grant(user="ada")
        headers = {"authorization": f"Bearer {pair.access_token}"}
        assert http.get(fake.base_url + "/v1/me", headers=headers).json()["user"] == "ada"
        fake.clock.advance(60)
        late = http.get(fake.base_url + "/v1/me", headers=headers)
        assert late.status_code == 401
        assert late.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert fake.token_url == "http://127.0.0.1:8900/oauth/token"


# ------------------------------------------------------------------ authorization code + PKCE


def authorize(http: httpx.Client, **params: str) -> httpx.Response:
    query = {
        "response_type": "code",
        "client_id": "cli",
        "redirect_uri": "http://127.0.0.1:1455/callback",
        "code_challenge": s256(VERIFIER),
        "code_challenge_method": "S256",
        "state": "xyz",
        **params,
    }
    return http.get("/authorize", params={k: v for k, v in query.items() if v})


def redeem(http: httpx.Client, code: str, **params: str) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": "http://127.0.0.1:1455/callback",
        "code_verifier": VERIFIER,
        "client_id": "cli",
        **params,
    }
    return http.post("/oauth/token", data={k: v for k, v in form.items() if v})


def code_of(response: httpx.Response) -> str:
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["state"] == ["xyz"]
    assert query["iss"] == ["http://127.0.0.1:8900"]
    return query["code"][0]


def test_login_with_pkce_then_refresh() -> None:
    with respx_server("rfc9700") as fake, httpx.Client(base_url=fake.base_url) as http:
        response = authorize(http, login_hint="ada")
        location = response.headers["location"]
        assert location.startswith("http://127.0.0.1:1455/callback?code=trc_")
        tokens = redeem(http, code_of(response))
        assert tokens.status_code == 200
        assert tokens.headers["cache-control"] == "no-store"
        body = tokens.json()
        me = http.get("/v1/me", headers={"authorization": f"Bearer {body['access_token']}"})
        assert me.json() == {"user": "ada", "family": "fam-1"}
        form = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
        assert http.post("/oauth/token", data=form).status_code == 200
        audit = [(e.kind.value, e.token_kind.value) for e in fake.server.audit][:3]
        assert audit == [("issued", "code"), ("presented", "code"), ("accepted", "code")]


def test_code_replay_is_refused_and_revokes_its_grant() -> None:
    with respx_server("rfc9700") as fake, httpx.Client(base_url=fake.base_url) as http:
        code = code_of(authorize(http))
        first = redeem(http, code).json()
        replay = redeem(http, code)
        assert replay.status_code == 400
        assert replay.json()["error"] == "invalid_grant"
        assert fake.server.check_access(first["access_token"], fake.clock.now).reason == "revoked"
        assert [e.reason for e in fake.server.audit if e.kind is AuditKind.REVOKED] == [
            "code_reused",
            "code_reused",
        ]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_verifier": "w" * 43}, "invalid_grant"),
        ({"code_verifier": "short"}, "invalid_grant"),
        ({"redirect_uri": "http://127.0.0.1:1455/other"}, "invalid_grant"),
        ({"client_id": "someone-else"}, "invalid_grant"),
        ({"code_verifier": ""}, "invalid_request"),
        ({"grant_type": "password"}, "unsupported_grant_type"),
    ],
)
def test_code_redemption_errors(change: dict[str, str], error: str) -> None:
    with respx_server("okta") as fake, httpx.Client(base_url=fake.base_url) as http:
        code = code_of(authorize(http))
        refused = redeem(http, code, **change)
        assert refused.status_code == 400
        assert refused.json()["error"] == error
        assert redeem(http, code).status_code == 200  # a failed attempt does not spend it


def test_expired_code_and_authorize_errors() -> None:
    with respx_server("keycloak") as fake, httpx.Client(base_url=fake.base_url) as http:
        code = code_of(authorize(http))
        fake.clock.advance(60)
        assert redeem(http, code).json() == {
            "error": "invalid_grant",
            "error_description": "Code not valid",
        }
        for params, error in (
            ({"response_type": "token"}, "unsupported_response_type"),
            ({"code_challenge": ""}, "invalid_request"),
            ({"code_challenge_method": "plain"}, "invalid_request"),
            ({"code_challenge": "tiny"}, "invalid_request"),
        ):
            redirected = authorize(http, **params)
            assert redirected.status_code == 302
            assert parse_qs(urlsplit(redirected.headers["location"]).query)["error"] == [error]
        for params in ({"redirect_uri": ""}, {"redirect_uri": "not a uri"}, {"client_id": ""}):
            refused = authorize(http, **params)
            assert refused.status_code == 400
            assert refused.json()["error"] == "invalid_request"
        assert http.post("/authorize").status_code == 405
