"""The control API of the real server, for tests and controllers.

=========================== ==================================================================
endpoint                    what it does
=========================== ==================================================================
``POST /_control/grants``   log in: ``{"user"?, "client_id"?}`` -> 201 with the new tokens
``GET|PUT /_control/policy`` read or set the policy: ``{"preset"?, <field>: <value>...}``
``GET /_control/audit``     the audit log as JSON lines (``?since=N`` skips the first N)
``GET|POST|DELETE /_control/faults`` read, script (``{"faults": [...], "paths"?}``) or clear
``POST /_control/hold``     ``{"enabled": true}`` holds token requests; ``false`` lets all go
``GET /_control/held``      the held requests (``?min=N&timeout=S`` waits for N to arrive)
``POST /_control/release``  ``{"id": "h3"}`` or ``{"all": true}``; answers once handled
``GET|POST /_control/clock`` read or move the server's clock (``{"advance": seconds}``)
``POST /_control/reset``    forget everything (``{"seed"?, "policy"?}``)
=========================== ==================================================================

Errors are ``{"error", "error_description"}`` with 400, 404 or 405.  The
control API returns raw tokens (that is what it is for); it never logs them.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._errors import FakeServerError
from ._faults import Fault, FaultPlan
from ._hold import Held, wait_finished
from ._policy import Policy
from ._presets import preset_name
from ._wire import BadRequest, Headers, encode_json, parse_form, parse_json_object

if TYPE_CHECKING:
    from ._asgi import FakeOAuthApp

Answer = tuple[int, bytes, Headers]
Handler = Callable[["FakeOAuthApp", dict[str, str], dict[str, Any]], Awaitable[Answer]]


class _Bad(Exception):
    """A control request with a missing or mistyped field."""


def _json(status: int, payload: Any, extra: Headers = ()) -> Answer:
    headers: Headers = (("content-type", "application/json"), ("cache-control", "no-store"))
    return status, encode_json(payload), headers + extra


def _error(status: int, error: str, description: str, extra: Headers = ()) -> Answer:
    return _json(status, {"error": error, "error_description": description[:300]}, extra)


async def control(app: FakeOAuthApp, method: str, path: str, query: str, body: bytes) -> Answer:
    routes = _ROUTES.get(path.rstrip("/"))
    if routes is None:
        return _error(404, "not_found", "No such control endpoint.")
    handler = routes.get(method.upper())
    if handler is None:
        allow = (("allow", ", ".join(sorted(routes))),)
        return _error(405, "method_not_allowed", "Method not allowed on this endpoint.", allow)
    params = parse_form(query)
    data = parse_json_object(body) if method.upper() != "GET" else {}
    if isinstance(params, BadRequest):
        return _error(400, "invalid_request", params.message)
    if isinstance(data, BadRequest):
        return _error(400, "invalid_request", data.message)
    try:
        return await handler(app, params, data)
    except (FakeServerError, _Bad) as error:
        return _error(400, "invalid_request", str(error))


# ------------------------------------------------------------------ fields


def _text(data: Mapping[str, Any], key: str, default: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str) or not value or len(value) > 200:
        raise _Bad(f"{key} must be a non-empty string of at most 200 characters")
    return value


def _flag(data: Mapping[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise _Bad(f"{key} must be true or false")
    return value


def _number(data: Mapping[str, Any], key: str, default: float, limit: float = 1e9) -> float:
    value: Any = data.get(key, default)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise _Bad(f"{key} must be a number") from None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _Bad(f"{key} must be a number")
    if not math.isfinite(value) or abs(value) > limit:
        raise _Bad(f"{key} must be a finite number within ±{limit:g}")
    return float(value)


# ------------------------------------------------------------------ handlers


async def _grants(app: FakeOAuthApp, params: dict[str, str], data: dict[str, Any]) -> Answer:
    now = app.now()
    user, client_id = _text(data, "user", "user"), _text(data, "client_id", "tokenrace")
    pair = app.server.seed_grant(now, user=user, client_id=client_id)
    extra = {"expires_at": pair.expires_at, "family": pair.family, "generation": pair.generation}
    return _json(201, {**pair.to_json(now), **extra})


def _policy_answer(policy: Policy) -> Answer:
    return _json(200, {"preset": preset_name(policy), "policy": policy.to_json()})


async def _get_policy(app: FakeOAuthApp, params: dict[str, str], data: dict[str, Any]) -> Answer:
    return _policy_answer(app.server.policy)


async def _put_policy(app: FakeOAuthApp, params: dict[str, str], data: dict[str, Any]) -> Answer:
    policy = Policy.from_json(data, base=app.server.policy)
    app.server.set_policy(policy)
    return _policy_answer(policy)


async def _audit(app: FakeOAuthApp, params: dict[str, str], data: dict[str, Any]) -> Answer:
    since = int(_number(params, "since", 0))
    events = app.server.audit_since(since)
    lines = b"".join(encode_json(event.to_json()) + b"\n" for event in events)
    headers: Headers = (
        ("content-type", "application/x-ndjson"),
        ("cache-control", "no-store"),
        ("x-audit-next", str(max(0, since) + len(events))),
    )
    return 200, lines, headers


def _faults_answer(app: FakeOAuthApp) -> Answer:
    pending = [fault.to_json() for fault in app.server.pending_faults]
    return _json(200, {"pending": pending, "paths": sorted(app.server.fault_paths)})


async def _get_faults(app: FakeOAuthApp, params: dict[str, str], data: dict[str, Any]) -> Answer:
    return _faults_answer(app)


async def _post_faults(app: FakeOAuthApp, params: dict[str, str], data: dict[str, Any]) -> Answer:
    raw = data.get("faults", [])
    if not isinstance(raw, list) or len(raw) > 10_000:
        raise _Bad("faults must be a list of at most 10000 faults")
    faults = [Fault.from_json(item) for item in raw]
    paths = data.get("paths", ["/oauth/token"])
    if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
        raise _Bad("paths must be a list of paths")
    app.server.set_faults(FaultPlan(faults, paths=paths))
    return _faults_answer(app)


async def _delete_faults(app: FakeOAuthApp, params: dict[str, str], data: dict[str, Any]) -> Answer:
    app.server.set_faults(None)
    return _faults_answer(app)


async def _hold(app: FakeOAuthApp, params: dict[str, str], data: dict[str, Any]) -> Answer:
    released = app.hold.set_holding(_flag(data, "enabled", True))
    payload = {"holding": app.hold.holding, "held": len(app.hold), "released": _ids(released)}
    return _json(200, payload)


async def _held(app: FakeOAuthApp, params: dict[str, str], data: dict[str, Any]) -> Answer:
    await app.hold.wait_for_count(int(_number(params, "min", 0)), _number(params, "timeout", 0))
    return _json(200, {"holding": app.hold.holding, "held": app.hold.listing()})


async def _release(app: FakeOAuthApp, params: dict[str, str], data: dict[str, Any]) -> Answer:
    wait = _flag(data, "wait", True)
    timeout = _number(data, "timeout", 10.0)
    if _flag(data, "all", False):
        released = app.hold.release_all()
    else:
        held = app.hold.release(_text(data, "id", ""))
        if held is None:
            return _error(404, "not_found", "No held request has that id.")
        released = [held]
    statuses: list[int | None] = [None] * len(released)
    if wait:
        statuses = list(await asyncio.gather(*(wait_finished(h, timeout) for h in released)))
    answers = [
        {"id": held.id, "request_id": held.request.request_id, "status": status}
        for held, status in zip(released, statuses, strict=True)
    ]
    return _json(200, {"released": answers})


async def _get_clock(app: FakeOAuthApp, params: dict[str, str], data: dict[str, Any]) -> Answer:
    return _json(200, {"now": app.now(), "offset": app.clock_offset})


async def _post_clock(app: FakeOAuthApp, params: dict[str, str], data: dict[str, Any]) -> Answer:
    if "offset" in data:
        app.clock_offset = _number(data, "offset", 0.0)
    else:
        app.clock_offset += _number(data, "advance", 0.0)
    return await _get_clock(app, params, data)


async def _reset(app: FakeOAuthApp, params: dict[str, str], data: dict[str, Any]) -> Answer:
    raw_policy = data.get("policy")
    if raw_policy is not None and not isinstance(raw_policy, dict):
        raise _Bad("policy must be an object")
    policy = Policy.from_json(raw_policy) if raw_policy is not None else None
    seed = _text(data, "seed", "") if "seed" in data else None
    app.hold.set_holding(False)
    app.server.reset(seed=seed, policy=policy)
    app.restart()
    return _policy_answer(app.server.policy)


def _ids(held: list[Held]) -> list[str]:
    return [item.id for item in held]


_ROUTES: dict[str, dict[str, Handler]] = {
    "/_control/grants": {"POST": _grants},
    "/_control/policy": {"GET": _get_policy, "PUT": _put_policy},
    "/_control/audit": {"GET": _audit},
    "/_control/faults": {"GET": _get_faults, "POST": _post_faults, "DELETE": _delete_faults},
    "/_control/hold": {"POST": _hold},
    "/_control/held": {"GET": _held},
    "/_control/release": {"POST": _release},
    "/_control/clock": {"GET": _get_clock, "POST": _post_clock},
    "/_control/reset": {"POST": _reset},
}
