"""JSON Web Tokens for clients that parse what the server hands them, and the keys behind them.

OpenAI's token endpoint answers a refresh with an ``id_token`` whose claims
the Codex CLI reads (the e-mail, and under ``https://api.openai.com/auth``
the plan, account and user ids); it refuses a login without one.  PyJWT
encodes and decodes them; ``Policy.jwt_signing`` picks the signature:

- ``hs256`` (the default): HMAC-SHA256 with a key derived from the server's
  seed.  Nothing can verify it but the server; Codex does not try, and it
  refuses an empty signature segment, so ``alg: none`` would not do.
- ``rs256``: RSA-SHA256 with a 2048-bit key pair derived from the seed
  (``rsa_key``), its public half published at ``/.well-known/jwks.json``
  and named by ``kid`` (its RFC 7638 thumbprint) in every token's header,
  so a client can verify what it gets as it would with a real issuer.

Both are deterministic: equal seeds give equal keys, and (PKCS#1 v1.5 and
HMAC being deterministic) equal tokens.  The key pair is a test fixture
derivable by anyone who knows the seed: never a secret.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt

from ._policy import JwtSigning

if TYPE_CHECKING:  # cryptography is imported where RS256 is used: a Windows CPython under
    # Wine cannot load its Rust extension, and HS256 needs none of it (docs/windows.md)
    from cryptography.hazmat.primitives.asymmetric import rsa

#: The claim under which OpenAI puts the ChatGPT account of an id_token.
OPENAI_AUTH_CLAIM = "https://api.openai.com/auth"
#: How long an id_token says it is good for.
ID_TOKEN_LIFETIME = 3600
#: The audience of an id_token (the client the fake server pretends to have issued it to).
ID_TOKEN_AUDIENCE = "tokenrace"
#: The audience of a JWT access token.
ACCESS_TOKEN_AUDIENCE = "https://api.openai.com/v1"
RSA_BITS = 2048
_RSA_EXPONENT = 65537
#: odd primes below 2000: trial division before Miller-Rabin, and its bases
_SMALL_PRIMES = tuple(
    p for p in range(3, 2000, 2) if all(p % d for d in range(3, p, 2) if d * d <= p)
)
_MILLER_RABIN_BASES = _SMALL_PRIMES[:24]


@dataclass(frozen=True, slots=True)
class SigningKey:
    """What signs a server's JWTs: the algorithm, the key, and its ``kid`` ("" for HS256)."""

    algorithm: str
    key: bytes | rsa.RSAPrivateKey  # bytes: an HS256 secret
    kid: str = ""

    def __repr__(self) -> str:  # the key stays out of reprs and logs
        return f"SigningKey({self.algorithm}, kid={self.kid!r})"


def jwt_key(seed: str) -> bytes:
    """The HS256 key of a server with ``seed``."""
    return hashlib.sha256(b"tokenrace-jwt\x00" + seed.encode("utf-8", "surrogatepass")).digest()


@functools.lru_cache(maxsize=16)
def rsa_key(seed: str) -> rsa.RSAPrivateKey:
    """The RS256 key pair of a server with ``seed``: the same pair for the same seed, anywhere.

    Its primes come from SHA-256 in counter mode over the seed (no PRNG whose
    algorithm could change between Python versions), tested by trial division
    and Miller-Rabin with the first 24 odd primes as bases.  Cached: deriving
    one takes a few tenths of a second.
    """
    from cryptography.hazmat.primitives.asymmetric import rsa

    stream = _Stream(b"tokenrace-rsa\x00" + seed.encode("utf-8", "surrogatepass"))
    p = _prime(stream, RSA_BITS // 2)
    q = _prime(stream, RSA_BITS // 2)
    while q == p:  # pragma: no cover - needs a SHA-256 collision of sorts
        q = _prime(stream, RSA_BITS // 2)
    d = pow(_RSA_EXPONENT, -1, (p - 1) * (q - 1))
    public = rsa.RSAPublicNumbers(_RSA_EXPONENT, p * q)
    return rsa.RSAPrivateNumbers(
        p,
        q,
        d,
        rsa.rsa_crt_dmp1(d, p),
        rsa.rsa_crt_dmq1(d, q),
        rsa.rsa_crt_iqmp(p, q),
        public,
    ).private_key()


def signing_key(seed: str, signing: JwtSigning) -> SigningKey:
    """The key a server with ``seed`` signs its JWTs with under ``signing``."""
    if signing is JwtSigning.RS256:
        key = rsa_key(seed)
        return SigningKey("RS256", key, thumbprint(public_jwk(key)))
    return SigningKey("HS256", jwt_key(seed))


def public_jwk(key: rsa.RSAPrivateKey) -> dict[str, str]:
    """The public half of ``key`` as a JWK (``kty``, ``n``, ``e``)."""
    from jwt.algorithms import RSAAlgorithm  # defined only where cryptography is installed

    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {name: str(jwk[name]) for name in ("kty", "n", "e")}


def thumbprint(jwk: dict[str, str]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public RSA JWK, base64url: its ``kid`` here."""
    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def jwks(seed: str, signing: JwtSigning) -> dict[str, Any]:
    """The JWK Set a server publishes: its RS256 public key, or no key under HS256."""
    signer = signing_key(seed, signing)
    if isinstance(signer.key, bytes):
        return {"keys": []}  # a shared secret is never published
    jwk: dict[str, str] = {**public_jwk(signer.key), "kid": signer.kid}
    return {"keys": [{**jwk, "use": "sig", "alg": signer.algorithm}]}


def encode_jwt(claims: dict[str, Any], key: bytes | SigningKey) -> str:
    """``claims`` as a compact JWS (RFC 7515): HS256 with raw ``key`` bytes, else as it says."""
    signer = key if isinstance(key, SigningKey) else SigningKey("HS256", key)
    headers = {"kid": signer.kid} if signer.kid else None
    return jwt.encode(
        claims, signer.key, algorithm=signer.algorithm, headers=headers, json_encoder=_SortedJSON
    )


def decode_jwt(token: str) -> dict[str, Any]:
    """The claims of a compact JWT, unverified (for tests and for reading a client's store)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise ValueError("not a JWT") from None  # the error could quote the token
    if not isinstance(claims, dict):  # pragma: no cover - PyJWT checks this
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
        "aud": ID_TOKEN_AUDIENCE,
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
    token: str, user: str, expires_at: float, *, issuer: str, key: bytes | SigningKey
) -> str:
    """The opaque access ``token`` as a JWT: ``exp``, the account claim, ``jti`` = ``token``.

    OpenClaw reads the account id out of the access token it gets (``getAccountId``).
    """
    claims = openai_claims(user, expires_at - ID_TOKEN_LIFETIME, issuer)
    claims.update({"aud": ACCESS_TOKEN_AUDIENCE, "exp": int(expires_at), "jti": token})
    del claims["email_verified"]
    return encode_jwt(claims, key)


def openai_id_token(user: str, now: float, *, issuer: str, key: bytes | SigningKey) -> str:
    return encode_jwt(openai_claims(user, now, issuer), key)


class _SortedJSON(json.JSONEncoder):
    """Claims with sorted keys, at every depth: the bytes depend on the claims alone (and
    are what the hand-rolled encoder before PyJWT made, so HS256 tokens did not change)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**{**options, "sort_keys": True})


class _Stream:
    """Deterministic bits: SHA-256 of (material, counter), block after block."""

    __slots__ = ("_counter", "_material")

    def __init__(self, material: bytes) -> None:
        self._material = material
        self._counter = 0

    def bits(self, count: int) -> int:
        out = b""
        while len(out) * 8 < count:
            self._counter += 1
            out += hashlib.sha256(self._material + self._counter.to_bytes(8, "big")).digest()
        return int.from_bytes(out, "big") >> (len(out) * 8 - count)


def _prime(stream: _Stream, bits: int) -> int:
    """The first probable prime of ``bits`` bits the stream yields, with p - 1 prime to e."""
    for _ in range(100_000):  # a few hundred candidates are expected
        candidate = stream.bits(bits) | (3 << (bits - 2)) | 1  # top two bits: n has 2*bits
        if candidate % _RSA_EXPONENT != 1 and _probably_prime(candidate):
            return candidate
    raise RuntimeError("no prime found")  # pragma: no cover - odds below 2**-100


def _probably_prime(n: int) -> bool:
    if any(n % p == 0 for p in _SMALL_PRIMES):
        return n in _SMALL_PRIMES
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for base in _MILLER_RABIN_BASES:
        x = pow(base, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True
