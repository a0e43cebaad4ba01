# fake_oauth_server imports the standard library, httpx, respx, uvicorn, PyJWT and cryptography (and pytest in its plugin), nothing else of tokenrace.  # noqa: E501
"""A deterministic fake OAuth token authority for refresh-token rotation races.

The core, ``AuthServer``, is pure: ``handle(request, now) -> response`` with
no I/O, no wall clock and no randomness, so the simulator can drive it one
step at a time and replay a run byte for byte.  ``Policy.preset(name)``
gives the refresh behaviour of a real server (``openai``, ``rfc9700``,
``auth0``, ``okta``, ``keycloak``, ``hydra``, ``entra``, ``google``);
``FaultPlan`` scripts latency, 5xx, 429, resets and lost responses.

Surfaces over the same core: ``mount_respx`` / ``respx_server`` put it
behind httpx in-process; ``serve_in_thread`` and ``python -m
fake_oauth_server`` run it as a real HTTP server on loopback with a control
API (``ControlClient``), gated by a ``ControlAccess`` (a token, no web
pages) and guarded by ``Limits`` (read deadlines, a connection cap).
Tokens never appear raw in audit events, logs or reprs; ``fingerprint``,
``redact`` and ``redact_log`` give the safe form.  JWTs (id_tokens, JWT
access tokens) go through PyJWT, signed HS256 or, under
``Policy.jwt_signing = JwtSigning.RS256``, with a seed-derived RSA key whose
public half ``JWKS_PATH`` publishes.
"""

from ._access import CONTROL_TOKEN_HEADER, ControlAccess
from ._asgi import FakeOAuthApp
from ._authcode import s256
from ._client import ControlClient
from ._core import (
    AUTHORIZE_PATH,
    DEFAULT_ISSUER,
    JWKS_PATH,
    ME_PATH,
    METADATA_PATH,
    OPENID_PATH,
    TOKEN_PATH,
    AuthServer,
)
from ._dialects import Failure
from ._errors import (
    ControlError,
    FakeServerError,
    InvalidFault,
    InvalidPolicy,
    ServeError,
    UnknownPreset,
)
from ._faults import Delivery, Fault, FaultKind, FaultPlan
from ._guard import Limits
from ._jwt import OPENAI_AUTH_CLAIM, account_id, decode_jwt, encode_jwt, jwt_key
from ._messages import (
    AccessCheck,
    AuditEvent,
    AuditKind,
    Request,
    Response,
    TokenKind,
    TokenPair,
)
from ._policy import ErrorDialect, JwtSigning, Policy, ReuseResponse, ReuseScope
from ._presets import PRESETS, preset_name
from ._respx import DEFAULT_BASE_URL, InProcessServer, ManualClock, mount_respx, respx_server
from ._serve import RunningServer, main, serve_in_thread
from ._tokens import TOKEN_RE, fingerprint, redact, redact_log
from ._wire import agent_path, split_agent

__all__ = [
    "AUTHORIZE_PATH",
    "CONTROL_TOKEN_HEADER",
    "DEFAULT_BASE_URL",
    "DEFAULT_ISSUER",
    "JWKS_PATH",
    "METADATA_PATH",
    "OPENID_PATH",
    "OPENAI_AUTH_CLAIM",
    "ME_PATH",
    "PRESETS",
    "TOKEN_RE",
    "TOKEN_PATH",
    "AccessCheck",
    "AuditEvent",
    "AuditKind",
    "AuthServer",
    "ControlAccess",
    "ControlClient",
    "ControlError",
    "Delivery",
    "ErrorDialect",
    "Failure",
    "FakeOAuthApp",
    "FakeServerError",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "InProcessServer",
    "InvalidFault",
    "InvalidPolicy",
    "JwtSigning",
    "Limits",
    "ManualClock",
    "Policy",
    "Request",
    "Response",
    "ReuseResponse",
    "ReuseScope",
    "RunningServer",
    "ServeError",
    "TokenKind",
    "TokenPair",
    "UnknownPreset",
    "account_id",
    "agent_path",
    "decode_jwt",
    "encode_jwt",
    "fingerprint",
    "jwt_key",
    "main",
    "mount_respx",
    "preset_name",
    "redact",
    "redact_log",
    "respx_server",
    "s256",
    "serve_in_thread",
    "split_agent",
]
