"""Who may use the control API: a token, and requests that did not come from a web page.

The control API mints logins, resets the server and reads raw tokens, so a
web page the developer happens to visit must not be able to drive it: a
browser sends a cross-site ``POST`` with a ``text/plain`` body and no
preflight, and a DNS-rebinding page reaches loopback under its own host
name.  ``ControlAccess.refusal`` therefore asks, before any control handler
runs, for

* the control token in the ``X-Control-Token`` header (a custom header, which
  no page can add to a cross-site request without a preflight we never grant);
* a ``Host`` that is ``localhost`` or an IP address (a rebinding page's host
  is a name), a loopback one unless the server was bound beyond loopback;
* no ``Origin`` (or ``Sec-Fetch-Site``) saying the request came from another site
  (browsers send ``Origin`` with every cross-site ``POST``, ``text/plain`` or not).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from ._wire import Headers, header

CONTROL_TOKEN_HEADER = "x-control-token"


def new_control_token() -> str:
    """A fresh random control token (32 hex digits, 128 bits)."""
    return secrets.token_hex(16)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (``[::1]`` with or without brackets)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _hostname(authority: str) -> str:
    """The host part of a ``Host`` header value or of an origin's netloc."""
    try:
        return (urlsplit("//" + authority).hostname or "").lower()
    except ValueError:
        return ""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a control request is refused: its status, RFC 6749-style error and text."""

    status: int
    error: str
    description: str


@dataclass(frozen=True, slots=True)
class ControlAccess:
    """Whether the control API answers at all, to which token, from which hosts.

    ``token=None`` asks for no token (an application driven in-process, which
    no browser can reach).  ``loopback_only`` refuses non-loopback ``Host``
    headers; a server bound beyond loopback clears it.
    """

    enabled: bool = True
    token: str | None = None
    loopback_only: bool = True

    def __repr__(self) -> str:  # the token is a credential
        token = "None" if self.token is None else "'…'"
        return f"ControlAccess(enabled={self.enabled}, token={token})"

    def refusal(self, headers: Headers) -> Refusal | None:
        """Why this request may not use the control API, or ``None`` if it may."""
        if not self.enabled:
            return Refusal(404, "not_found", "The control API is off on this server.")
        host = _hostname(header(headers, "host") or "")
        if not (host == "localhost" or _is_ip(host)) or (
            self.loopback_only and not is_loopback(host)
        ):
            return Refusal(403, "access_denied", "The control API answers loopback hosts only.")
        origin = header(headers, "origin")
        if origin is not None and not _same_machine(origin, self.loopback_only):
            return Refusal(403, "access_denied", "The control API refuses cross-origin requests.")
        if (header(headers, "sec-fetch-site") or "").lower() == "cross-site":
            return Refusal(403, "access_denied", "The control API refuses cross-site requests.")
        if self.token is not None:
            given = header(headers, CONTROL_TOKEN_HEADER) or ""
            if not hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode()):
                needs = f"The control API needs the {CONTROL_TOKEN_HEADER} header."
                return Refusal(401, "invalid_token", needs)
        return None


def _same_machine(origin: str, loopback_only: bool) -> bool:
    """An ``Origin`` of a page served from this machine by IP or ``localhost``."""
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not (host == "localhost" or _is_ip(host)):
        return False  # "null" (a sandboxed or file: page) and every named site
    return is_loopback(host) or not loopback_only
