"""Token format, deterministic minting, fingerprints and redaction.

Tokens are opaque to clients but have a fixed shape here (``tra_``,
``trr_`` or, for authorization codes, ``trc_`` + 32 lowercase hex) so that
``redact`` can find every one of them in any text by a regex, and so that
nothing raw ever reaches a report or a log.  Minting is a pure function of
(seed, counter): the same seed and the same request sequence mint
byte-identical tokens, which is what makes a recorded schedule replay
exactly.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re

ACCESS_PREFIX = "tra_"
REFRESH_PREFIX = "trr_"
CODE_PREFIX = "trc_"

_HEX_LEN = 32
_FP_LEN = 8

#: Every token this server could mint, wherever it sits in a text (JWTs: its id_tokens).
TOKEN_RE = re.compile(r"tr[arc]_[0-9a-f]{32}|eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_ACCESS_RE = re.compile(r"tra_[0-9a-f]{32}")
_REFRESH_RE = re.compile(r"trr_[0-9a-f]{32}")
_CODE_RE = re.compile(r"trc_[0-9a-f]{32}")


def fingerprint(token: str) -> str:
    """A short, stable stand-in for ``token`` that is safe to show anywhere.

    ``rt#`` + 8 hex for refresh tokens, ``at#`` for access tokens, ``code#``
    for authorization codes, ``jwt#`` for a JWT, ``tok#`` for anything else;
    the hex is the start of the token's sha256.
    """
    inner = inner_token(token)
    if inner != token:  # a JWT access token wrapping one of ours: the same fingerprint
        return fingerprint(inner)
    digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:_FP_LEN]
    if _REFRESH_RE.fullmatch(token):
        return f"rt#{digest}"
    if _ACCESS_RE.fullmatch(token):
        return f"at#{digest}"
    if _CODE_RE.fullmatch(token):
        return f"code#{digest}"
    if _JWT_RE.fullmatch(token):
        return f"jwt#{digest}"
    return f"tok#{digest}"


def inner_token(token: str) -> str:
    """The token a JWT carries as its ``jti`` when that is one of ours, else ``token`` itself.

    JWT access tokens (``Policy.jwt_access_tokens``) wrap the opaque token the
    ledger knows, so the ledger, the audit and fingerprints all see that one.
    """
    if not _JWT_RE.fullmatch(token):
        return token
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return token
    jti = claims.get("jti") if isinstance(claims, dict) else None
    return jti if isinstance(jti, str) and TOKEN_RE.fullmatch(jti) and jti[:3] == "tra" else token


def redact(text: str) -> str:
    """Replace every token this server could mint, anywhere in ``text``, by its fingerprint."""
    return TOKEN_RE.sub(lambda m: fingerprint(m.group(0)), text)


#: A secret-looking parameter (``refresh_token=``, ``code=``, ``client_secret=``...) and its value.
_SECRET_PARAM_RE = re.compile(
    r"(?i)((?:^|[?&;\s])[\w.-]*(?:token|code|secret|password|assertion|key)=)([^&\s\"]+)"
)
#: Anything token-shaped: any JWT, a run of 32+ hex digits, or a run of 32+ base64url or
#: standard-base64 characters with a digit in it (opaque tokens, API keys, digests).
_FOREIGN_TOKEN_RE = re.compile(
    r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
    r"|(?<![A-Za-z0-9_+/-])(?:[0-9A-Fa-f]{32,}|(?=[A-Za-z0-9_+/-]*[0-9])[A-Za-z0-9_+/-]{32,})"
    r"={0,2}"
)


def redact_log(text: str) -> str:
    """``redact``, and also every token-shaped string and secret parameter, from anyone.

    For lines that show what clients sent (the access log): a client may
    present another server's token, and that must not reach a log either.
    The shape rule misses short secrets, so values of parameters named like
    secrets (``...token=``, ``code=``, ``...secret=``, ``password=``) go too.
    """
    text = redact(text)
    text = _SECRET_PARAM_RE.sub(lambda m: m.group(1) + _stand_in(m.group(2)), text)
    return _FOREIGN_TOKEN_RE.sub(lambda m: _stand_in(m.group(0)), text)


def _stand_in(value: str) -> str:
    if re.fullmatch(r"(?:rt|at|code|jwt|tok)#[0-9a-f]{8}", value):
        return value  # already a fingerprint
    return fingerprint(value)


class Minter:
    """Mints tokens from (seed, counter) with sha256; one counter for both kinds."""

    __slots__ = ("_counter", "_seed")

    def __init__(self, seed: str) -> None:
        self._seed = seed
        self._counter = 0

    def __repr__(self) -> str:
        return f"Minter(counter={self._counter})"

    def mint(self, prefix: str) -> str:
        """The next token with ``prefix`` (``ACCESS_PREFIX``, ``REFRESH_PREFIX``, ...)."""
        self._counter += 1
        material = f"tokenrace\x00{self._seed}\x00{self._counter}\x00{prefix}"
        digest = hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()
        return prefix + digest[:_HEX_LEN]
