"""Exceptions of the refresh engine.

Tree::

    RefreshEngineError
    ├── ReloginRequired        the grant is gone; a person must log in again
    ├── RefreshFailed          the server refused for another reason, or was unreachable
    │   ├── StoreUnwritable    the store's directory takes no new file: nothing was presented
    │   └── LockTimeout        the lock stayed held past the timeout: nothing was presented
    ├── StoreCorrupt           the store does not parse (it is kept, never overwritten)
    ├── StoreUnreadable        the store cannot be read (permissions, not a regular file)
    ├── CredentialMissing      the store has no credential for this provider + profile
    └── InterpreterMismatch    an interpreter answered an effect with the wrong outcome

No message ever carries a raw token.
"""

from __future__ import annotations


class RefreshEngineError(Exception):
    """Root of every error the refresh engine raises."""


class ReloginRequired(RefreshEngineError):
    """The refresh token was spent, revoked or expired and no newer one exists.

    This is the contract every engine shares: raise it (or a subclass) when
    the agent cannot go on without a new login.  The checker counts an agent
    that ends this way as *stranded*.
    """


class RefreshFailed(RefreshEngineError):
    """The refresh failed for a reason a later retry may fix."""


class StoreUnwritable(RefreshFailed):
    """No file can be made beside the store (read-only, full, no permission).

    Raised before the refresh token is presented, so the token stays unspent.
    """


class LockTimeout(RefreshFailed):
    """The refresh lock stayed held for the whole timeout: its holder is stuck (a hung or
    stopped process).  Raised before anything is presented, so the token stays unspent."""

    def __init__(self, path: str, timeout: float | None) -> None:
        waited = "" if timeout is None else f" for {timeout:g} s"
        super().__init__(
            f"gave up waiting{waited} for the lock {path}: the process holding it is stuck "
            "(nothing was sent to the server; the refresh token is unspent)"
        )
        self.path = path
        self.timeout = timeout


class StoreCorrupt(RefreshEngineError):
    """The credential store exists but does not parse, or breaks the schema (path and
    field named)."""


class StoreUnreadable(RefreshEngineError):
    """The credential store exists but cannot be read: no permission, or not a regular
    file (a FIFO, a device, a directory)."""


class CredentialMissing(RefreshEngineError):
    """The store has no credential for the requested provider + profile."""


class InterpreterMismatch(RefreshEngineError):
    """An interpreter sent an outcome of the wrong kind for an effect (a bug there)."""
