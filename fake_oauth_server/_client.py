"""A typed client for the control API of a running fake server.

Thin over httpx: one method per endpoint, answers as the package's own
values (``TokenPair``, ``Policy``, ``AuditEvent``, ``Fault``), errors as
``ControlError``.  Works against any running server: one in a thread
(``serve_in_thread``), ``python -m fake_oauth_server`` or ``tokenrace serve``.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any

import httpx

from ._access import CONTROL_TOKEN_HEADER
from ._errors import ControlError
from ._faults import TOKEN_PATH, Fault
from ._messages import AuditEvent, TokenPair
from ._policy import Policy
from ._tokens import redact


def control_headers(token: str | None) -> dict[str, str]:
    """The headers that carry a control token (none without one)."""
    return {} if token is None else {CONTROL_TOKEN_HEADER: token}


class ControlClient:
    """``ControlClient("http://127.0.0.1:8900")``: drive a fake server from a test."""

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 30.0) -> None:
        """``token``: the server's control token (printed by ``tokenrace serve`` at start)."""
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, trust_env=False, headers=control_headers(token)
        )

    def __repr__(self) -> str:
        return f"ControlClient({self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, body: Any = None, **params: Any) -> httpx.Response:
        query = {key: value for key, value in params.items() if value is not None}
        response = self._http.request(method, "/_control/" + path, json=body, params=query or None)
        if response.status_code >= 400:
            try:
                message = str(response.json().get("error_description", ""))
            except ValueError:
                message = response.text[:200]
            raise ControlError(response.status_code, redact(message))
        return response

    # ---------------------------------------------------------------- grants and policy

    def seed_grant(self, *, user: str = "user", client_id: str = "tokenrace") -> TokenPair:
        """Log in: a new grant at generation 0."""
        data = self._call("POST", "grants", {"user": user, "client_id": client_id}).json()
        return TokenPair(
            data["access_token"],
            data["refresh_token"],
            float(data["expires_at"]),
            str(data["family"]),
            int(data["generation"]),
        )

    def policy(self) -> Policy:
        return Policy.from_json(self._call("GET", "policy").json()["policy"])

    def set_policy(self, preset: str | None = None, **fields: Any) -> Policy:
        """Set the policy: a preset and/or fields (enums by value, e.g. ``dialect="hydra"``)."""
        body = dict(fields)
        if preset is not None:
            body["preset"] = preset
        return Policy.from_json(self._call("PUT", "policy", body).json()["policy"])

    def reset(self, *, seed: str | None = None, policy: str | Policy | None = None) -> None:
        """Forget every grant, event, fault and held request (and the clock offset)."""
        body: dict[str, Any] = {}
        if seed is not None:
            body["seed"] = seed
        if isinstance(policy, str):
            body["policy"] = {"preset": policy}
        elif policy is not None:
            body["policy"] = policy.to_json()
        self._call("POST", "reset", body)

    # ---------------------------------------------------------------- audit

    def audit(self, since: int = 0) -> tuple[AuditEvent, ...]:
        """The audit log from event ``since`` on."""
        import json

        text = self._call("GET", "audit", since=since).text
        return tuple(AuditEvent.from_json(json.loads(line)) for line in text.splitlines() if line)

    # ---------------------------------------------------------------- faults

    def set_faults(self, faults: Iterable[Fault], *, paths: Iterable[str] = (TOKEN_PATH,)) -> None:
        """Script faults for the next requests to ``paths``, in order (replacing any plan)."""
        body = {"faults": [fault.to_json() for fault in faults], "paths": list(paths)}
        self._call("POST", "faults", body)

    def pending_faults(self) -> tuple[Fault, ...]:
        return tuple(Fault.from_json(f) for f in self._call("GET", "faults").json()["pending"])

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    # ---------------------------------------------------------------- hold and release

    def hold(self, enabled: bool = True) -> list[str]:
        """Hold token requests (or stop, letting every held one through: their ids)."""
        return list(self._call("POST", "hold", {"enabled": enabled}).json()["released"])

    def held(self, *, at_least: int = 0, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The held requests, after waiting (up to ``timeout``) for ``at_least`` of them."""
        answer = self._call("GET", "held", min=at_least, timeout=timeout)
        return list(answer.json()["held"])

    def release(self, held_id: str, *, wait: bool = True, timeout: float = 10.0) -> int | None:
        """Let one held request through; with ``wait``, the status it was answered (0: none)."""
        body = {"id": held_id, "wait": wait, "timeout": timeout}
        released = self._call("POST", "release", body).json()["released"]
        status = released[0]["status"]
        return None if status is None else int(status)

    def release_all(self, *, wait: bool = True, timeout: float = 10.0) -> list[dict[str, Any]]:
        body = {"all": True, "wait": wait, "timeout": timeout}
        return list(self._call("POST", "release", body).json()["released"])

    # ---------------------------------------------------------------- clock

    def now(self) -> float:
        return float(self._call("GET", "clock").json()["now"])

    def advance_clock(self, seconds: float) -> float:
        """Move the server's clock forward (to expire tokens); returns its new ``now``."""
        return float(self._call("POST", "clock", {"advance": seconds}).json()["now"])
