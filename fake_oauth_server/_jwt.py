"""JSON Web Tokens for clients that parse what the server hands them.

OpenAI's token endpoint answers a refresh with an ``id_token`` whose claims
the Codex CLI reads (the e-mail, and under ``https://api.openai.com/auth``
the plan, account and user ids); it refuses a login without one.  The JWTs
here are signed HS256 with a key derived from the server's seed, so equal
seeds give equal tokens; nothing verifies the signature (Codex does not, and
it refuses an empty signature segment, so ``alg: none`` would not do).
The standard library suffices: ``hmac`` and ``base64``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

#: The claim under which OpenAI puts the ChatGPT account of an id_token.
OPENAI_AUTH_CLAIM = "https://api.openai.com/auth"
#: How long an id_token says it is good for.
ID_TOKEN_LIFETIME = 3600


def jwt_key(seed: str) -> bytes:
    """The HS256 key of a server with ``seed``."""
    return hashlib.sha256(b"tokenrace-jwt\x00" + seed.encode("utf-8", "surrogatepass")).digest()


def encode_jwt(claims: dict[str, Any], key: bytes) -> str:
    """``claims`` as a compact JWS (RFC 7515) signed HS256 with ``key``."""
    header = _b64(_json({"alg": "HS256", "typ": "JWT"}))
    payload = _b64(_json(claims))
    signature = hmac.new(key, f"{header}.{payload}".encode("ascii"), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def decode_jwt(token: str) -> dict[str, Any]:
    """The claims of a compact JWT, unverified (for tests and for reading a client's store)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as error:
        raise ValueError("not a JWT") from error
    if not isinstance(claims, dict):
        raise ValueError("not a JWT: the payload is not an object")
    return claims


def account_id(user: str) -> str:
    """A stable ChatGPT account id for ``user``."""
    return "acct-" + hashlib.sha256(user.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def openai_claims(user: str, now: float, issuer: str) -> dict[str, Any]:
    """The id_token claims of ``user`` as OpenAI's issuer shapes them."""
    issued = int(now)
    return {
        "iss": issuer,
        "aud": "tokenrace",
        "sub": user,
        "email": f"{user}@example.invalid",
        "email_verified": True,
        "iat": issued,
        "exp": issued + ID_TOKEN_LIFETIME,
        OPENAI_AUTH_CLAIM: {
            "chatgpt_plan_type": "plus",
            "chatgpt_account_id": account_id(user),
            "chatgpt_user_id": f"user-{user}",
        },
    }


def openai_access_token(
    token: str, user: str, expires_at: float, *, issuer: str, key: bytes
) -> str:
    """The opaque access ``token`` as a JWT: ``exp``, the account claim, ``jti`` = ``token``.

    OpenClaw reads the account id out of the access token it gets (``getAccountId``).
    """
    claims = openai_claims(user, expires_at - ID_TOKEN_LIFETIME, issuer)
    claims.update({"aud": "https://api.openai.com/v1", "exp": int(expires_at), "jti": token})
    del claims["email_verified"]
    return encode_jwt(claims, key)


def openai_id_token(user: str, now: float, *, issuer: str, key: bytes) -> str:
    return encode_jwt(openai_claims(user, now, issuer), key)


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
