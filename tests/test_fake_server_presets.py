"""Each preset against docs/fake-oauth-server.md: its window, reuse, revocation, error body.

One test per preset shows, on the pure core: a reuse inside the window (or
that there is none), a reuse outside it, what happens to the rest of the
grant, and the exact error body the server sends.  Then the knobs one by
one: scope of the window, what it returns, the reuse count, lifetimes, one
grant per user.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from fake_oauth_server import (
    PRESETS,
    AuditKind,
    AuthServer,
    ErrorDialect,
    InvalidPolicy,
    Policy,
    Request,
    Response,
    ReuseResponse,
    ReuseScope,
    TokenKind,
    fingerprint,
    preset_name,
)

FORM = (("content-type", "application/x-www-form-urlencoded"),)
T0 = 1_000_000.0

HYDRA_GRANT = (
    "The provided authorization grant (e.g., authorization code, resource owner credentials) "
    "or refresh token is invalid, expired, revoked, does not match the redirection URI used in "
    "the authorization request, or was issued to another client."
)
HYDRA_INACTIVE = (
    " Token is inactive because it is malformed, expired or otherwise invalid."
    " Token validation failed."
)


class Grant:
    """A login on ``server`` and the refreshes done with it, for short tests."""

    def __init__(self, server: AuthServer, now: float = T0) -> None:
        self.server = server
        pair = server.seed_grant(now)
        self.tokens = [pair.refresh_token]
        self.access = [pair.access_token]
        self.count = 0

    def refresh(self, token: str, now: float) -> Response:
        self.count += 1
        body = f"grant_type=refresh_token&refresh_token={token}".encode()
        request = Request("POST", "/oauth/token", body, FORM, f"q{self.count}")
        response = self.server.handle(request, now)
        if response.status == 200:
            self.tokens.append(response.json()["refresh_token"])
            self.access.append(response.json()["access_token"])
        return response

    def rotate(self, now: float) -> str:
        """Refresh with the newest token; the token it spent."""
        spent = self.tokens[-1]
        assert self.refresh(spent, now).status == 200
        return spent

    def last_events(self, kind: AuditKind) -> list[str]:
        tag = f"q{self.count}"
        return [e.reason for e in self.server.audit if e.request_id == tag and e.kind is kind]

    def revoked(self) -> bool:
        """Whether the newest refresh and access tokens were revoked by the last request."""
        reasons = self.last_events(AuditKind.REVOKED)
        access = self.server.check_access(self.access[-1], T0 + 1).reason
        return bool(reasons) and access == "revoked"


def server_for(name: str, **changes: Any) -> AuthServer:
    return AuthServer(Policy.preset(name).replace(**changes), seed=name)


# ------------------------------------------------------------------ one test per preset


def test_openai_no_window_reuse_401_then_family_invalidated() -> None:
    grant = Grant(server_for("openai"))
    spent = grant.rotate(T0 + 10)
    reused = grant.refresh(spent, T0 + 10.001)  # no window: even at once
    assert reused.status == 401
    assert reused.json() == {
        "error": {
            "message": "Your refresh token has already been used to generate a new access "
            "token. Please try signing in again.",
            "type": "invalid_request_error",
            "param": None,
            "code": "refresh_token_reused",
        }
    }
    assert grant.last_events(AuditKind.REJECTED) == ["reused"]
    assert grant.revoked()
    later = grant.refresh(grant.tokens[-1], T0 + 11)
    assert (later.status, later.json()["error"]["code"]) == (401, "refresh_token_invalidated")


def test_rfc9700_no_window_reuse_revokes_token_and_grant() -> None:
    grant = Grant(server_for("rfc9700"))
    spent = grant.rotate(T0 + 10)
    reused = grant.refresh(spent, T0 + 10.001)
    assert reused.status == 400
    assert reused.json() == {
        "error": "invalid_grant",
        "error_description": "The refresh token has already been used.",
    }
    assert grant.revoked()
    later = grant.refresh(grant.tokens[-1], T0 + 11)
    assert later.json() == {
        "error": "invalid_grant",
        "error_description": "The refresh token has been revoked.",
    }


AUTH0_BODY = {"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."}


def test_auth0_leeway_previous_token_only_mints_new_pair_else_403_and_family_revoked() -> None:
    # The preset has Auth0's default reuse interval, 0 s: a reuse is refused at once.
    strict = Grant(server_for("auth0"))
    spent = strict.rotate(T0 + 10)
    reused = strict.refresh(spent, T0 + 10.001)
    assert (reused.status, reused.json()) == (403, AUTH0_BODY)
    assert strict.revoked()
    # With a 10 s leeway, the previous token may be used again and mints a new pair.
    grant = Grant(server_for("auth0", reuse_window=10.0))
    previous = grant.rotate(T0 + 10)
    successor = grant.tokens[-1]
    inside = grant.refresh(previous, T0 + 15)
    assert inside.status == 200
    assert inside.json()["refresh_token"] not in (previous, successor)
    assert grant.last_events(AuditKind.ACCEPTED) == ["grace"]
    assert grant.server.check_access(grant.access[-2], T0 + 15).ok  # earlier pairs live on
    # An older token is refused even inside the leeway, and the family dies.
    older = grant.rotate(T0 + 16)
    assert grant.refresh(previous, T0 + 17).status == 403
    assert older != previous
    assert grant.revoked()
    # Outside the leeway the previous token is refused too.
    late = Grant(server_for("auth0", reuse_window=10.0))
    previous = late.rotate(T0 + 10)
    outside = late.refresh(previous, T0 + 20)
    assert (outside.status, outside.json()) == (403, AUTH0_BODY)
    assert late.last_events(AuditKind.REJECTED) == ["reused"]
    assert late.revoked()


def test_okta_grace_30s_by_default_then_400_and_revoke() -> None:
    assert Policy.preset("okta").reuse_window == 30.0
    grant = Grant(server_for("okta"))
    previous = grant.rotate(T0 + 10)
    inside = grant.refresh(previous, T0 + 39)
    assert inside.status == 200
    assert grant.last_events(AuditKind.ACCEPTED) == ["grace"]
    outside = grant.refresh(previous, T0 + 40)
    assert outside.status == 400
    assert outside.json() == {
        "error": "invalid_grant",
        "error_description": "The refresh token is invalid or expired.",
    }
    assert grant.last_events(AuditKind.REJECTED) == ["reused"]
    # "invalidates the most recently issued refresh token and all access tokens"
    assert grant.revoked()
    assert all(grant.server.check_access(a, T0 + 41).reason == "revoked" for a in grant.access)


def keycloak_body(text: str) -> dict[str, str]:
    return {"error": "invalid_grant", "error_description": text}


def test_keycloak_max_reuse_counts_then_stale_or_exceeded_detaches_session() -> None:
    # Default refreshTokenMaxReuse 0: the first reuse is over the cap.
    grant = Grant(server_for("keycloak"))
    previous = grant.rotate(T0 + 10)
    reused = grant.refresh(previous, T0 + 11)
    assert reused.status == 400
    assert reused.json() == keycloak_body("Maximum allowed refresh token reuse exceeded")
    assert grant.revoked()
    later = grant.refresh(grant.tokens[-1], T0 + 12)
    assert later.json() == keycloak_body("Session doesn't have required client")
    # refreshTokenMaxReuse 1: one reuse allowed, whenever (a count, not a time), minting.
    counted = Grant(server_for("keycloak", max_reuse=1))
    previous = counted.rotate(T0 + 10)
    assert counted.refresh(previous, T0 + 1000).status == 200
    assert counted.last_events(AuditKind.ACCEPTED) == ["grace"]
    exceeded = counted.refresh(previous, T0 + 1001)
    assert exceeded.json() == keycloak_body("Maximum allowed refresh token reuse exceeded")
    assert counted.revoked()
    # A token older than the current one is stale.
    stale = Grant(server_for("keycloak", max_reuse=1))
    first = stale.rotate(T0 + 10)
    stale.rotate(T0 + 20)
    assert stale.refresh(first, T0 + 21).json() == keycloak_body("Stale token")
    assert stale.last_events(AuditKind.REJECTED) == ["reused"]
    assert stale.revoked()


def test_hydra_grace_any_token_with_count_mints_new_pair_then_revokes_chain() -> None:
    strict = Grant(server_for("hydra"))  # grace period off by default
    spent = strict.rotate(T0 + 10)
    reused = strict.refresh(spent, T0 + 10.5)
    assert reused.status == 400
    assert ("content-type", "application/json;charset=UTF-8") in reused.headers
    assert reused.json() == {
        "error": "invalid_grant",
        "error_description": HYDRA_GRANT + HYDRA_INACTIVE,
    }
    assert strict.revoked()
    # Grace period 5 min: any spent token, each reuse minting a new pair.
    grant = Grant(server_for("hydra", reuse_window=300.0))
    first = grant.rotate(T0 + 10)
    grant.rotate(T0 + 20)
    inside = grant.refresh(first, T0 + 100)  # not the previous one: scope is any
    assert inside.status == 200
    assert grant.last_events(AuditKind.ACCEPTED) == ["grace"]
    outside = grant.refresh(first, T0 + 310)
    assert outside.json()["error_description"] == HYDRA_GRANT + HYDRA_INACTIVE
    assert grant.revoked()
    # With a count, the grace period ends early.
    counted = Grant(server_for("hydra", reuse_window=300.0, max_reuse=1))
    first = counted.rotate(T0 + 10)
    assert counted.refresh(first, T0 + 11).status == 200
    assert counted.refresh(first, T0 + 12).status == 400


def test_hydra_refresh_revokes_the_access_token_issued_with_the_refresh_token() -> None:
    grant = Grant(server_for("hydra"))
    grant.rotate(T0 + 10)
    assert grant.server.check_access(grant.access[0], T0 + 11).reason == "revoked"
    assert grant.last_events(AuditKind.REVOKED) == ["rotated"]
    assert grant.server.check_access(grant.access[1], T0 + 11).ok
    assert not grant.revoked()


def test_entra_rotates_but_old_tokens_stay_valid_until_inactivity() -> None:
    grant = Grant(server_for("entra"))
    old = grant.rotate(T0 + 10)
    newer = grant.tokens[-1]
    day = 86400.0
    again = grant.refresh(old, T0 + 30 * day)
    assert again.status == 200
    assert again.json()["refresh_token"] not in (old, newer)
    assert grant.last_events(AuditKind.REJECTED) == []
    assert grant.refresh(newer, T0 + 31 * day).status == 200
    idle = grant.refresh(newer, T0 + 122 * day)
    assert idle.status == 400
    body = idle.json()
    assert body["error"] == "invalid_grant"
    assert body["error_codes"] == [700082]
    assert body["error_description"].startswith(
        "AADSTS700082: The refresh token has expired due to inactivity. Trace ID: "
    )
    assert set(body) == {
        "error",
        "error_description",
        "error_codes",
        "timestamp",
        "trace_id",
        "correlation_id",
        "error_uri",
    }
    assert body["error_uri"] == "https://login.microsoftonline.com/error?code=700082"
    assert body["timestamp"] in body["error_description"]
    assert grant.last_events(AuditKind.REJECTED) == ["expired"]


def test_google_no_rotation_and_100_grants_per_user() -> None:
    server = server_for("google")
    grant = Grant(server)
    first = grant.refresh(grant.tokens[0], T0 + 1).json()
    assert first["refresh_token"] == grant.tokens[0]
    assert first["expires_in"] == 3599
    assert grant.refresh(grant.tokens[0], T0 + 2).status == 200  # never "reused"
    unknown = grant.refresh("trr_" + "0" * 32, T0 + 3)
    assert unknown.json() == {"error": "invalid_grant", "error_description": "Bad Request"}
    for _ in range(100):
        server.seed_grant(T0 + 4)
    revoked = grant.refresh(grant.tokens[0], T0 + 5)
    assert revoked.json() == {
        "error": "invalid_grant",
        "error_description": "Token has been expired or revoked.",
    }
    superseded = [e for e in server.audit if e.reason == "superseded"]
    assert {(e.family, e.token_kind) for e in superseded} >= {("fam-1", TokenKind.REFRESH)}


def test_every_preset_is_tested_and_named() -> None:
    assert set(PRESETS) == {
        "openai",
        "rfc9700",
        "auth0",
        "okta",
        "keycloak",
        "hydra",
        "entra",
        "google",
    }
    for name in PRESETS:
        assert preset_name(Policy.preset(name)) == name
        assert Policy.from_json(Policy.preset(name).to_json()) == Policy.preset(name)
    assert preset_name(Policy.preset("okta").replace(reuse_window=5.0)) is None


# ------------------------------------------------------------------ the knobs


def test_same_successor_inside_the_window_is_byte_identical_and_mints_nothing() -> None:
    policy = Policy(reuse_window=10.0, reuse_response=ReuseResponse.SAME)
    grant = Grant(AuthServer(policy))
    first = grant.refresh(grant.tokens[0], T0 + 1)
    issued = sum(e.kind is AuditKind.ISSUED for e in grant.server.audit)
    again = grant.refresh(grant.tokens[0], T0 + 3)
    assert again.json()["refresh_token"] == first.json()["refresh_token"]
    assert again.json()["access_token"] == first.json()["access_token"]
    assert again.json()["expires_in"] == 3598
    assert sum(e.kind is AuditKind.ISSUED for e in grant.server.audit) == issued
    assert grant.server.family_of(first.json()["refresh_token"]) == ("fam-1", 1)


def test_previous_scope_window_moves_with_each_rotation() -> None:
    grant = Grant(AuthServer(Policy(reuse_window=60.0, reuse_scope=ReuseScope.PREVIOUS)))
    first = grant.rotate(T0 + 1)
    second = grant.rotate(T0 + 2)
    assert grant.refresh(second, T0 + 3).status == 200
    assert grant.refresh(first, T0 + 4).status == 401  # no longer the previous one
    assert grant.last_events(AuditKind.REJECTED) == ["reused"]


def test_one_active_grant_per_user_revokes_the_older_login() -> None:
    server = AuthServer(Policy.preset("keycloak").replace(max_grants_per_user=1))
    grant = Grant(server)
    server.seed_grant(T0 + 5, user="other")  # another user keeps both
    server.seed_grant(T0 + 10)  # the same user logs in again
    refused = grant.refresh(grant.tokens[0], T0 + 11)
    assert refused.json() == keycloak_body("Session not active")
    assert grant.last_events(AuditKind.REJECTED) == ["revoked"]
    superseded = [e for e in server.audit if e.reason == "superseded"]
    assert [(e.family, e.request_id) for e in superseded] == [("fam-1", "seed")] * 2


@pytest.mark.parametrize(
    ("changes", "at", "keycloak_text"),
    [
        ({"refresh_token_lifetime": 100.0}, 100.0, "Token is not active"),
        ({"refresh_idle_lifetime": 100.0}, 100.0, "Token is not active"),
        ({"refresh_absolute_lifetime": 100.0}, 100.0, "Session not active"),
    ],
)
def test_refresh_lifetimes(changes: dict[str, float], at: float, keycloak_text: str) -> None:
    base = Policy.preset("keycloak").replace(
        refresh_idle_lifetime=None, refresh_absolute_lifetime=None
    )
    grant = Grant(AuthServer(base.replace(**changes)))
    assert grant.refresh(grant.tokens[-1], T0 + at - 1).status == 200
    # The token's and the idle clock restart at that refresh; the absolute one does not.
    late = grant.refresh(grant.tokens[-1], T0 + 2 * at - 1)
    assert late.json() == keycloak_body(keycloak_text)
    assert grant.last_events(AuditKind.REJECTED) == ["expired"]


def test_idle_lifetime_is_reset_by_each_refresh() -> None:
    grant = Grant(AuthServer(Policy(refresh_idle_lifetime=100.0)))
    now = T0
    for _ in range(5):
        now += 90
        assert grant.refresh(grant.tokens[-1], now).status == 200
    expired = grant.refresh(grant.tokens[-1], now + 100)
    assert expired.json()["error"]["code"] == "refresh_token_expired"


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"reuse_window": -1.0}, "reuse_window"),
        ({"reuse_window": float("inf")}, "reuse_window"),
        ({"max_reuse": -1}, "max_reuse"),
        ({"max_reuse": 1.5}, "max_reuse"),
        ({"max_grants_per_user": 0}, "max_grants_per_user"),
        ({"refresh_idle_lifetime": 0.0}, "refresh_idle_lifetime"),
        ({"rotation": "yes"}, "rotation"),
        ({"dialect": "hydra"}, "dialect"),
        ({"no_such_knob": 1}, "no_such_knob"),
    ],
)
def test_policy_validation(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidPolicy, match=match):
        Policy().replace(**changes)


def test_policy_from_json_accepts_preset_and_overrides() -> None:
    policy = Policy.from_json({"preset": "hydra", "reuse_window": 60, "dialect": "rfc6749"})
    assert policy == Policy.preset("hydra").replace(reuse_window=60.0, dialect=ErrorDialect.RFC6749)
    assert json.loads(json.dumps(policy.to_json()))["reuse_scope"] == "any"
    with pytest.raises(InvalidPolicy, match="one of"):
        Policy.from_json({"reuse_scope": "some"})
    with pytest.raises(InvalidPolicy, match="unknown policy field"):
        Policy.from_json({"colour": "red"})
    assert not Policy().grace
    assert Policy(reuse_window=None).grace
    assert not Policy(reuse_window=None, max_reuse=0).grace


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_is_deterministic_and_never_leaks_tokens(name: str) -> None:
    def run() -> tuple[list[bytes], str]:
        grant = Grant(AuthServer(Policy.preset(name), seed="det"))
        bodies = []
        for step in range(3):
            bodies.append(grant.refresh(grant.tokens[0], T0 + step * 40).body)
            bodies.append(grant.refresh(grant.tokens[-1], T0 + step * 40 + 1).body)
        return bodies, repr(grant.server.audit)

    first, second = run(), run()
    assert first == second
    assert "trr_" not in first[1]
    assert "tra_" not in first[1]
    assert fingerprint("trr_" + "a" * 32).startswith("rt#")
