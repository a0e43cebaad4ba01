# fake_oauth_server imports only the standard library (and httpx/respx in _respx.py); nothing else of tokenrace.  # noqa: E501
"""A deterministic fake OAuth token authority for refresh-token rotation races.

The core, ``AuthServer``, is pure: ``handle(request, now) -> response`` with
no I/O, no wall clock and no randomness, so the simulator can drive it one
step at a time and replay a run byte for byte.  ``mount_respx`` puts the same
core behind httpx through respx, for tests of real HTTP clients.  Tokens
never appear raw in audit events or reprs; ``fingerprint`` and ``redact``
give the safe form.
"""

from ._core import (
    DEFAULT_ISSUER,
    ME_PATH,
    METADATA_PATH,
    TOKEN_PATH,
    AccessCheck,
    AuditEvent,
    AuditKind,
    AuthServer,
    Request,
    Response,
    TokenKind,
    TokenPair,
)
from ._errors import FakeServerError, InvalidPolicy, UnknownPreset
from ._policy import PRESETS, ErrorDialect, Policy
from ._respx import DEFAULT_BASE_URL, mount_respx
from ._tokens import fingerprint, redact

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_ISSUER",
    "METADATA_PATH",
    "ME_PATH",
    "PRESETS",
    "TOKEN_PATH",
    "AccessCheck",
    "AuditEvent",
    "AuditKind",
    "AuthServer",
    "ErrorDialect",
    "FakeServerError",
    "InvalidPolicy",
    "Policy",
    "Request",
    "Response",
    "TokenKind",
    "TokenPair",
    "UnknownPreset",
    "fingerprint",
    "mount_respx",
    "redact",
]
