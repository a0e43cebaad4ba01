"""Bytes in, bytes out: parsing request bodies and query strings, encoding JSON.

Kept apart from the ledger so the state machine reads as a state machine.
Nothing here raises on bad input: parsing returns either the parameters or
a ``BadRequest`` that the core turns into an OAuth error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from ._tokens import redact

Headers = tuple[tuple[str, str], ...]

JSON_CT = "application/json"
FORM_CT = "application/x-www-form-urlencoded"
_JSON_HEADERS: Headers = (("content-type", JSON_CT),)
# RFC 6749 §5.1: token responses must not be cached.
NO_STORE: Headers = (("cache-control", "no-store"), ("pragma", "no-cache"))


def encode_json(payload: Any) -> bytes:
    """Compact, key-order-preserving JSON: equal payloads give equal bytes."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def ok_json(
    payload: Any, *, no_store: bool = False, status: int = 200
) -> tuple[int, bytes, Headers]:
    headers = _JSON_HEADERS + NO_STORE if no_store else _JSON_HEADERS
    return status, encode_json(payload), headers


@dataclass(frozen=True, slots=True)
class BadRequest:
    """A body that could not be read as request parameters."""

    message: str
    param: str | None = None


def header(headers: Headers, name: str) -> str | None:
    """The first value of header ``name`` (case-insensitive), or ``None``."""
    wanted = name.lower()
    for key, value in headers:
        if key.lower() == wanted:
            return value
    return None


def split_target(target: str) -> tuple[str, str]:
    """(path, query) of a request target; a fragment is dropped."""
    target = target.split("#", 1)[0]
    path, _, query = target.partition("?")
    return path, query


#: ``/a/<agent>/oauth/token`` is ``/oauth/token`` for the agent named ``<agent>``.
AGENT_PREFIX = "/a/"
_AGENT_RE = re.compile(r"/a/([A-Za-z0-9][A-Za-z0-9_.-]{0,63})(/.*)")


def split_agent(path: str) -> tuple[str, str]:
    """(agent, path) of a path: one endpoint per agent, so a harness tells agents apart.

    Programs that all send the same ``client_id`` (every Codex CLI does) are
    told apart by the token URL each was given; without the prefix the agent
    is ``""`` and the request's own ``client_id`` names it.
    """
    match = _AGENT_RE.fullmatch(path)
    return (match.group(1), match.group(2)) if match else ("", path)


def agent_path(agent: str, path: str) -> str:
    """The per-agent form of ``path`` (the inverse of ``split_agent``)."""
    if split_agent(AGENT_PREFIX + agent + path) != (agent, path):
        raise ValueError(f"not a usable agent name: {agent!r}")
    return AGENT_PREFIX + agent + path


def parse_params(body: bytes, content_type: str | None) -> dict[str, str] | BadRequest:
    """Token-request parameters from a form or JSON body.

    The content type decides; without a usable one, a body whose first
    non-blank byte is ``{`` is taken as JSON (Codex sends JSON), anything
    else as a form.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == JSON_CT or media.endswith("+json"):
        return _parse_json(body)
    if media == FORM_CT:
        return parse_form(body)
    if body.lstrip()[:1] == b"{":
        return _parse_json(body)
    return parse_form(body)


def parse_json_object(body: bytes) -> dict[str, Any] | BadRequest:
    """A JSON object of any values (the control API), or why not."""
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return BadRequest("The request body is not valid JSON.")
    if not isinstance(data, dict):
        return BadRequest("The request body must be a JSON object.")
    return data


def _parse_json(body: bytes) -> dict[str, str] | BadRequest:
    data = parse_json_object(body)
    if isinstance(data, BadRequest):
        return data
    params: dict[str, str] = {}
    for key, value in data.items():
        if value is None:
            continue
        if not isinstance(value, str):
            return BadRequest(f"Parameter {safe_name(key)} must be a string.", safe_name(key))
        params[key] = value
    return params


def parse_form(body: bytes | str) -> dict[str, str] | BadRequest:
    """Parameters of a url-encoded form (or query string), each at most once."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict")
    except ValueError:  # UnicodeDecodeError is a ValueError
        return BadRequest("The form body is not valid UTF-8 url-encoding.")
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            # RFC 6749 §3.2: parameters must not be included more than once.
            return BadRequest(f"Parameter {safe_name(key)} is repeated.", safe_name(key))
        params[key] = value
    return params


def safe_name(name: str) -> str:
    """A parameter name fit to echo back: short, printable, never a token."""
    return "".join(ch if ch.isprintable() else "?" for ch in redact(name)[:40])
