"""The credential store: an ``auth-profiles.json`` document, and flows that read and write it.

The layout follows OpenClaw's: one JSON document holding profiles keyed by
``provider:profileId``.  Writes are atomic (temp file, fsync, replace), so a
concurrent reader sees the old document or the new one, never a prefix.
"""

from __future__ import annotations

import errno
import json
import math
import ntpath
import posixpath
from dataclasses import dataclass, field
from typing import Any

from . import _flow as ops
from ._effects import OpenFlags
from ._errors import CredentialMissing, StoreCorrupt, StoreUnreadable
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


#: The largest store read (bytes): a credential store is a few kilobytes; a bigger file is
#: something else (a symlink to a device, a log), refused rather than read without end.
MAX_STORE_BYTES = 1 << 20

#: ``expires`` above this (seconds since the epoch, year 5138) is milliseconds, not seconds.
LATEST_EXPIRY = 1e11


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
    except RecursionError:
        raise StoreCorrupt(f"{path}: not a store (JSON nested too deeply)") from None
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        raise StoreCorrupt(f"{path}: not a store ({exc.__class__.__name__})") from None
    if not isinstance(document, dict) or not isinstance(document.get("profiles"), dict):
        raise StoreCorrupt(f"{path}: expected an object with a 'profiles' object")
    return document


def credential_from(document: dict[str, Any], key: str, path: str) -> Credential:
    """The profile's credential; ``StoreCorrupt`` naming the path and the field when a
    field is missing or of the wrong type (nothing is coerced: ``null`` is no token)."""
    entry = document["profiles"].get(key)
    if entry is None:
        raise CredentialMissing(f"{path}: no credential for profile {key!r}")
    where = f"{path}: profile {key!r}"
    if not isinstance(entry, dict):
        raise StoreCorrupt(f"{where} is a {type(entry).__name__}, not an object")
    for name in ("access", "refresh"):
        value = entry.get(name)
        if not isinstance(value, str) or not value:
            raise StoreCorrupt(f"{where}: field {name!r} must be a non-empty string")
    expires = entry.get("expires")
    if isinstance(expires, bool) or not isinstance(expires, int | float):
        raise StoreCorrupt(f"{where}: field 'expires' must be a number (seconds since the epoch)")
    if not math.isfinite(expires) or expires < 0:
        raise StoreCorrupt(f"{where}: field 'expires' must be finite and not negative")
    if expires > LATEST_EXPIRY:
        raise StoreCorrupt(f"{where}: field 'expires' looks like milliseconds; seconds expected")
    return Credential(access=entry["access"], refresh=entry["refresh"], expires_at=float(expires))


def with_credential(
    document: dict[str, Any], key: str, provider: str, credential: Credential
) -> dict[str, Any]:
    """A copy of ``document`` with ``key`` set to ``credential``; the profile's other
    fields (``email``, ``accountId`` ...) are kept."""
    profiles = dict(document.get("profiles", {}))
    old = profiles.get(key)
    profiles[key] = {
        **(old if isinstance(old, dict) else {}),
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


def read_file(path: str, limit: int | None = None) -> Flow[bytes]:
    """The whole file: open, read, close; with ``limit``, at most ``limit + 1`` bytes (so
    the caller can tell a file over the limit)."""
    fd = yield from ops.open_file(path, OpenFlags.READ)
    try:
        return (yield from ops.read(fd, None if limit is None else limit + 1))
    finally:
        yield from ops.close(fd)


def read_store(path: str) -> Flow[dict[str, Any]]:
    """The parsed document; a missing file is an empty store.  A file that cannot be read
    is ``StoreUnreadable`` and one over ``MAX_STORE_BYTES`` is ``StoreCorrupt``, each
    naming the path."""
    try:
        data = yield from read_file(path, MAX_STORE_BYTES)
    except FileNotFoundError:
        data = b""
    except OSError as exc:
        raise StoreUnreadable(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_STORE_BYTES:
        raise StoreCorrupt(f"{path}: over {MAX_STORE_BYTES} bytes; not a credential store")
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


#: Symlinks followed before a store is refused, as Linux's limit.
MAX_LINKS = 40


def _beside(link: str, target: str) -> str:
    """Where a link's ``target`` points: absolute as it is, else relative to the link's
    directory, in the link's own path style."""
    if target.startswith(("/", "\\")) or target[1:2] == ":":
        return target
    directory, _ = split_path(link)
    if "\\" in link:
        return ntpath.normpath(ntpath.join(directory, target))
    return posixpath.normpath(posixpath.join(directory, target))


def resolve_links(path: str) -> Flow[str]:
    """The file ``path`` names, each symlink in its last component followed as ``open``
    follows it: what a save must replace so that a linked store stays a link (replacing
    the link itself would make it a plain file, and leave the target, which other
    programs may name, with the spent token).  A name that is no link, or is missing,
    is itself."""
    for _ in range(MAX_LINKS):
        try:
            target = yield from ops.readlink(path)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):
                return path
            raise StoreUnreadable(f"{path}: cannot be resolved ({exc.strerror or exc})") from None
        path = _beside(path, target)
    raise StoreUnreadable(f"{path}: more than {MAX_LINKS} symbolic links to follow")


def temp_path(path: str, writer: str) -> str:
    """Where ``writer`` stages a new version of the store at ``path``: beside it, hidden."""
    directory, name = split_path(path)
    return posixpath.join(directory, f".{name}.{writer}.tmp")


def create_fresh(path: str) -> Flow[int]:
    """A new file at ``path``, open for writing, mode 0600: never an existing file and
    never through a symlink (``O_CREAT | O_EXCL``).  Whatever is already at ``path`` (a
    killed writer's temp file, or a planted symlink) is unlinked first, not followed."""
    flags = OpenFlags.WRITE | OpenFlags.CREATE | OpenFlags.EXCLUSIVE
    try:
        return (yield from ops.open_file(path, flags))
    except FileExistsError:
        yield from ops.unlink(path)
    return (yield from ops.open_file(path, flags))


def write_durably(path: str, data: bytes) -> Flow[None]:
    """``data`` in a fresh file at ``path``, fsynced; on failure the partial file is removed."""
    fd = yield from create_fresh(path)
    try:
        yield from ops.write(fd, data)
        yield from ops.fsync(fd)
    except OSError:
        yield from ops.close(fd)
        yield from discard(path)
        raise
    yield from ops.close(fd)


def discard(path: str) -> Flow[None]:
    """Unlink ``path`` if it is there; a failure to do so is not the caller's problem."""
    try:
        yield from ops.unlink(path)
    except OSError:
        return


def atomic_write(path: str, data: bytes, *, writer: str) -> Flow[None]:
    """Write ``data`` to ``path`` so no reader ever sees a prefix.

    A fresh temp file beside the target (same filesystem; ``create_fresh``),
    fsync, then replace.  ``writer`` names the temp file: concurrent writers
    need different ones.  A failed write is tried once more (a full disk may
    have been freed).  On Windows a replace fails while any other handle has
    the file open (``PermissionError``, winerror 5); readers hold it for
    moments, so the replace is retried.  If it still fails, the complete temp
    file is kept and the error says where: the new token must never silently
    go unsaved, and a roll-forward can still recover it.
    """
    temp = temp_path(path, writer)
    try:
        yield from write_durably(temp, data)
    except OSError:
        yield from write_durably(temp, data)
    for attempt in range(REPLACE_TRIES):
        try:
            yield from ops.replace(temp, path)
            return
        except OSError as exc:
            if attempt == REPLACE_TRIES - 1 or not isinstance(exc, PermissionError):
                raise type(exc)(
                    exc.errno,
                    f"{exc.strerror or exc}; could not replace {path}: the new credential is "
                    f"kept in {temp}",
                ) from None
            yield from ops.sleep(REPLACE_PAUSE)
