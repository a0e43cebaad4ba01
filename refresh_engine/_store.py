"""The credential store: an ``auth-profiles.json`` document, and flows that read and write it.

The layout follows OpenClaw's: one JSON document holding profiles keyed by
``provider:profileId``.  Writes are atomic (temp file, fsync, replace), so a
concurrent reader sees the old document or the new one, never a prefix.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from typing import Any

from . import _flow as ops
from ._effects import OpenFlags
from ._errors import CredentialMissing, StoreCorrupt
from ._flow import Flow

STORE_VERSION = 1


@dataclass(frozen=True, slots=True)
class Credential:
    """One OAuth credential; tokens stay out of ``repr``."""

    access: str = field(repr=False)
    refresh: str = field(repr=False)
    expires_at: float

    def is_fresh(self, now: float, margin: float) -> bool:
        """Usable without a refresh: more than ``margin`` seconds left."""
        return self.expires_at - now > margin


def profile_key(provider: str, profile_id: str) -> str:
    return f"{provider}:{profile_id}"


def parse_store(data: bytes, path: str) -> dict[str, Any]:
    """The document, or ``StoreCorrupt`` naming the path and the problem."""
    if not data.strip():
        return {"version": STORE_VERSION, "profiles": {}}
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreCorrupt(
            f"{path}: not valid JSON ({exc.__class__.__name__} at byte "
            f"{getattr(exc, 'pos', getattr(exc, 'start', '?'))})"
        ) from None
    if not isinstance(document, dict) or not isinstance(document.get("profiles"), dict):
        raise StoreCorrupt(f"{path}: expected an object with a 'profiles' object")
    return document


def credential_from(document: dict[str, Any], key: str, path: str) -> Credential:
    entry = document["profiles"].get(key)
    if entry is None:
        raise CredentialMissing(f"{path}: no credential for profile {key!r}")
    try:
        return Credential(
            access=str(entry["access"]),
            refresh=str(entry["refresh"]),
            expires_at=float(entry["expires"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreCorrupt(f"{path}: profile {key!r} lacks a valid {exc}") from None


def with_credential(
    document: dict[str, Any], key: str, provider: str, credential: Credential
) -> dict[str, Any]:
    """A copy of ``document`` with ``key`` set to ``credential``."""
    profiles = dict(document.get("profiles", {}))
    profiles[key] = {
        "type": "oauth",
        "provider": provider,
        "access": credential.access,
        "refresh": credential.refresh,
        "expires": credential.expires_at,
    }
    return {**document, "version": STORE_VERSION, "profiles": profiles}


def render_store(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


# ---------------------------------------------------------------------- flows


def read_file(path: str) -> Flow[bytes]:
    """The whole file: open, read, close."""
    fd = yield from ops.open_file(path, OpenFlags.READ)
    try:
        return (yield from ops.read(fd))
    finally:
        yield from ops.close(fd)


def read_store(path: str) -> Flow[dict[str, Any]]:
    """The parsed document; a missing file is an empty store."""
    try:
        data = yield from read_file(path)
    except FileNotFoundError:
        data = b""
    return parse_store(data, path)


def read_credential(path: str, key: str) -> Flow[Credential]:
    document = yield from read_store(path)
    return credential_from(document, key, path)


#: How often a replace that Windows refuses (a reader holds the file open) is retried.
REPLACE_TRIES = 20
REPLACE_PAUSE = 0.05


def split_path(path: str) -> tuple[str, str]:
    """``(directory, name)`` of ``path``, where ``\\`` separates as well as ``/``: a
    Windows user's paths have backslashes; the simulator's never do."""
    cut = max(path.rfind("/"), path.rfind("\\"))
    if cut < 0:
        return "", path
    return path[: cut or 1], path[cut + 1 :]


def atomic_write(path: str, data: bytes, *, writer: str) -> Flow[None]:
    """Write ``data`` to ``path`` so no reader ever sees a prefix.

    Temp file beside the target (same filesystem), fsync, then replace.
    ``writer`` keeps concurrent writers' temp files apart.  On Windows a
    replace fails while any other handle has the file open
    (``PermissionError``, winerror 5); readers hold it for moments, so the
    replace is retried, and if it still fails the error is raised, never
    dropped: the new token must not silently go unsaved.
    """
    directory, name = split_path(path)
    temp = posixpath.join(directory, f".{name}.{writer}.tmp")
    fd = yield from ops.open_file(temp, OpenFlags.WRITE | OpenFlags.CREATE | OpenFlags.TRUNCATE)
    try:
        yield from ops.write(fd, data)
        yield from ops.fsync(fd)
    finally:
        yield from ops.close(fd)
    for attempt in range(REPLACE_TRIES):
        try:
            yield from ops.replace(temp, path)
            return
        except PermissionError:
            if attempt == REPLACE_TRIES - 1:
                raise
            yield from ops.sleep(REPLACE_PAUSE)
