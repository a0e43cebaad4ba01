"""The fake server's JWTs through PyJWT, and the JWKS a client verifies them with.

Under ``jwt_signing = "rs256"`` the id_token and JWT access tokens carry a
``kid`` and verify against ``/.well-known/jwks.json`` as a client would check
a real issuer's (PyJWT's ``PyJWKClient`` over loopback); a tampered token does
not; a malformed discovery path is a 404 in the server's dialect, never a 500.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from conformance._client_scenarios import load_client_scenario
from conformance._scenario_files import ScenarioError, load_scenario_file
from fake_oauth_server import (
    JWKS_PATH,
    OPENAI_AUTH_CLAIM,
    OPENID_PATH,
    AuthServer,
    InvalidPolicy,
    JwtSigning,
    Policy,
    Request,
    RunningServer,
    decode_jwt,
    fingerprint,
    jwt_key,
    redact,
    serve_in_thread,
)

ROOT = Path(__file__).resolve().parent.parent
RS256 = Policy.preset("openai").replace(jwt_signing=JwtSigning.RS256, jwt_access_tokens=True)


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """``PyJWKClient`` fetches with urllib, which honours proxy variables: loopback only."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("ALL_PROXY", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def rs256_server() -> Iterator[RunningServer]:
    with serve_in_thread(RS256, seed="jwks") as running:
        yield running


def _refresh(running: RunningServer) -> dict[str, Any]:
    pair = running.control.seed_grant(user="ada")
    with httpx.Client(trust_env=False, timeout=10) as http:
        answer = http.post(
            running.token_url,
            data={"grant_type": "refresh_token", "refresh_token": pair.refresh_token},
        )
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    return body


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _unb64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@pytest.mark.usefixtures("no_proxy")
def test_a_client_verifies_both_jwts_against_the_published_jwks(
    rs256_server: RunningServer,
) -> None:
    answer = _refresh(rs256_server)
    issuer = rs256_server.server.issuer
    keys = jwt.PyJWKClient(rs256_server.base_url + JWKS_PATH, cache_jwk_set=False, timeout=10)
    id_key = keys.get_signing_key_from_jwt(answer["id_token"])
    claims = jwt.decode(
        answer["id_token"], id_key, algorithms=["RS256"], audience="tokenrace", issuer=issuer
    )
    assert claims["email"] == "ada@example.invalid"
    assert claims[OPENAI_AUTH_CLAIM]["chatgpt_user_id"] == "user-ada"
    access = answer["access_token"]
    access_key = keys.get_signing_key_from_jwt(access)
    access_claims = jwt.decode(
        access, access_key, algorithms=["RS256"], audience="https://api.openai.com/v1"
    )
    assert access_claims["jti"].startswith("tra_")
    header = jwt.get_unverified_header(access)
    assert header["alg"] == "RS256"
    assert header["kid"] == id_key.key_id
    # the JWT is still the access token the ledger knows: the resource endpoint takes it
    with httpx.Client(trust_env=False, timeout=10) as http:
        me = http.get(
            rs256_server.base_url + "/v1/me", headers={"authorization": f"Bearer {access}"}
        )
    assert me.status_code == 200


@pytest.mark.usefixtures("no_proxy")
def test_discovery_names_the_jwks_uri_and_the_token_endpoint(
    rs256_server: RunningServer,
) -> None:
    with httpx.Client(trust_env=False, timeout=10) as http:
        config = http.get(rs256_server.base_url + OPENID_PATH).json()
        metadata = http.get(rs256_server.base_url + "/.well-known/oauth-authorization-server")
    issuer = rs256_server.server.issuer
    assert config["issuer"] == issuer
    assert config["jwks_uri"] == issuer + JWKS_PATH
    assert config["token_endpoint"] == rs256_server.token_url
    assert config["id_token_signing_alg_values_supported"] == ["RS256"]
    assert metadata.json()["jwks_uri"] == config["jwks_uri"]
    # what a client does with only the issuer: discovery, then the keys it names
    token = _refresh(rs256_server)["id_token"]
    key = jwt.PyJWKClient(config["jwks_uri"], timeout=10).get_signing_key_from_jwt(token)
    assert jwt.decode(token, key, algorithms=["RS256"], audience="tokenrace")["sub"] == "ada"


def test_a_tampered_token_fails_verification(rs256_server: RunningServer) -> None:
    answer = _refresh(rs256_server)
    jwks = rs256_server.server.jwks()
    (jwk,) = jwks["keys"]  # type: ignore[misc]
    key = jwt.PyJWK(jwk)
    header, payload, signature = answer["id_token"].split(".")
    assert jwt.decode(answer["id_token"], key, algorithms=["RS256"], audience="tokenrace")
    claims = json.loads(_b64(payload))
    claims["email"] = "mallory@example.invalid"
    forged_payload = _unb64(json.dumps(claims).encode())
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            f"{header}.{forged_payload}.{signature}",
            key,
            algorithms=["RS256"],
            audience="tokenrace",
        )
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(f"{header}.{payload}.{flipped}", key, algorithms=["RS256"], audience="tokenrace")
    # the same claims signed by another seed's key, under this server's kid
    other = AuthServer(RS256, seed="someone else").id_token("ada", 0)
    other_header, other_payload, other_signature = other.split(".")
    assert jwt.get_unverified_header(other)["kid"] != jwk["kid"]
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            f"{header}.{other_payload}.{other_signature}",
            key,
            algorithms=["RS256"],
            options={"verify_exp": False},
            audience="tokenrace",
        )


def test_an_hs256_token_is_no_rs256_token() -> None:
    """Algorithm confusion: an HS256 token does not pass where RS256 is expected."""
    rs = AuthServer(RS256, seed="x")
    (jwk,) = rs.jwks()["keys"]  # type: ignore[misc]
    hs_token = AuthServer(Policy.preset("openai"), seed="x").id_token("ada", 0)
    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(hs_token, jwt.PyJWK(jwk), algorithms=["RS256"], audience="tokenrace")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/.well-known/jwks.json/", 404),
        ("GET", "/.well-known/jwks.json/extra", 404),
        ("GET", "/.well-known//jwks.json", 404),
        ("GET", "/.well-known/JWKS.json", 404),
        ("GET", "/.well-known/jwks.json%00", 404),
        ("GET", "/.well-known/jwks.json;kid=1", 404),
        ("GET", "/.well-known/%2e%2e/jwks.json", 404),
        ("GET", "/.well-known/jwks", 404),
        ("GET", "/.well-known/openid-configuration/x", 404),
        ("POST", "/.well-known/jwks.json", 405),
        ("DELETE", "/.well-known/openid-configuration", 405),
        ("GET", "/.well-known/jwks.json?kid=%ZZ&&=", 200),
        ("GET", "/a/ada/.well-known/jwks.json", 200),
    ],
)
def test_a_malformed_jwks_request_gets_an_oauth_error_never_a_500(
    rs256_server: RunningServer, method: str, path: str, status: int
) -> None:
    with httpx.Client(trust_env=False, timeout=10) as http:
        response = http.send(http.build_request(method, rs256_server.base_url + path))
    assert response.status_code == status, response.text
    body = response.json()
    if status == 200:
        assert body["keys"][0]["kty"] == "RSA"
    else:
        assert "error" in body  # the openai dialect: {"error": {"message", "type", ...}}
    # and the core on its own, without uvicorn's parsing in front
    direct = rs256_server.server.handle(Request(method, path), 0.0)
    assert direct.status in (status, 404)


def test_hs256_stays_the_default_and_publishes_no_key() -> None:
    server = AuthServer(Policy.preset("openai"), seed="7")
    assert Policy().jwt_signing is JwtSigning.HS256
    assert server.jwks() == {"keys": []}
    assert jwt.get_unverified_header(server.id_token("ada", 0)) == {"alg": "HS256", "typ": "JWT"}
    response = server.handle(Request("GET", JWKS_PATH), 0.0)
    assert (response.status, json.loads(response.body)) == (200, {"keys": []})
    config = json.loads(server.handle(Request("GET", OPENID_PATH), 0.0).body)
    assert config["id_token_signing_alg_values_supported"] == ["HS256"]


def test_rs256_keys_and_tokens_follow_the_seed() -> None:
    one, same, other = (AuthServer(RS256, seed=s) for s in ("a", "a", "b"))
    assert one.id_token("ada", 100) == same.id_token("ada", 100)  # byte for byte
    assert one.jwks() == same.jwks()
    assert one.jwks() != other.jwks()
    kid = one.jwks()["keys"][0]["kid"]  # type: ignore[index]
    assert jwt.get_unverified_header(one.id_token("ada", 100))["kid"] == kid
    one.reset(seed="b")  # a new seed, a new key
    assert one.jwks() == other.jwks()
    one.set_policy(Policy.preset("openai"))  # and back to HS256: nothing published
    assert one.jwks() == {"keys": []}


def test_rs256_tokens_show_only_as_fingerprints() -> None:
    server = AuthServer(RS256, seed="fp")
    token = server.id_token("ada", 0)
    assert fingerprint(token).startswith("jwt#")
    assert redact(f"id_token={token}&x") == f"id_token={fingerprint(token)}&x"
    assert decode_jwt(token)["sub"] == "ada"
    with pytest.raises(ValueError, match="^not a JWT$"):
        decode_jwt(token.split(".", 1)[1])


def test_jwt_signing_is_set_by_name_and_checked() -> None:
    assert Policy.from_json({"preset": "openai", "jwt_signing": "rs256"}).jwt_signing is (
        JwtSigning.RS256
    )
    with pytest.raises(InvalidPolicy, match="jwt_signing must be one of hs256, rs256"):
        Policy.from_json({"jwt_signing": "none"})
    with pytest.raises(InvalidPolicy, match="jwt_signing must be a JwtSigning"):
        Policy(jwt_signing="rs256")  # type: ignore[arg-type]


def test_scenario_files_set_jwt_signing_in_policy_overrides(tmp_path: Path) -> None:
    source = (ROOT / "conformance/scenarios/clients/codex-cli-0.169.0.toml").read_text()
    assert "policy_overrides" not in source
    changed = source.replace("[world]\n", '[world]\npolicy_overrides = { jwt_signing = "rs256" }\n')
    assert changed != source
    path = tmp_path / "codex-rs256.toml"
    path.write_text(changed)
    scenario = load_client_scenario(path)
    assert dict(scenario.policy_overrides) == {"jwt_signing": "rs256"}
    from conformance._client_run import policy_of

    assert policy_of(scenario).jwt_signing is JwtSigning.RS256
    model = (ROOT / "conformance/scenarios/14-separate-logins.toml").read_text()
    model = model.replace("{ max_grants_per_user = 1 }", '{ jwt_signing = "rs256" }')
    (tmp_path / "m.toml").write_text(model)
    assert load_scenario_file(tmp_path / "m.toml").world.policy.jwt_signing is JwtSigning.RS256
    (tmp_path / "bad.toml").write_text(model.replace('"rs256"', '"rs384"'))
    with pytest.raises(ScenarioError, match="jwt_signing must be one of"):
        load_scenario_file(tmp_path / "bad.toml")


def test_tokenrace_serve_sets_jwt_signing() -> None:
    command = [sys.executable, "-m", "fake_oauth_server", "--port", "0"]
    command += ["--set", "jwt_signing=rs256"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
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
            url = process.stdout.readline().split()[3]
            with httpx.Client(base_url=url, trust_env=False, timeout=10) as http:
                (key,) = http.get(JWKS_PATH).json()["keys"]
        finally:
            try:
                process.send_signal(stop)
                assert process.wait(timeout=10) == 0
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig")


def test_hs256_tokens_are_byte_for_byte_what_the_server_made_before_pyjwt() -> None:
    """Sorted compact JSON, HMAC-SHA256 over ``header.payload``: equal seeds, equal tokens."""
    token = AuthServer(Policy.preset("openai"), seed="7").id_token("ada", 1234.5)

    def part(value: dict[str, Any]) -> str:
        return _unb64(json.dumps(value, separators=(",", ":"), sort_keys=True).encode())

    header, payload = part({"alg": "HS256", "typ": "JWT"}), part(decode_jwt(token))
    signature = hmac.new(jwt_key("7"), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert token == f"{header}.{payload}.{_unb64(signature)}"
