"""Refresh engines built on real peer libraries, for the side-by-side benchmark.

Each does its own I/O with its library (they are not tokenrace flows), with
the shape ``access_token(ctx, http, clock) -> str``.  ``PEERS`` maps the name
the benchmarks use to a factory; importing a peer needs its library
(``pip install msal-extensions filelock``).
"""

from __future__ import annotations

from collections.abc import Callable

from ._common import PeerEngine


def _msal() -> PeerEngine:
    from .msal_extensions_engine import MsalLockAcrossRefresh

    return MsalLockAcrossRefresh()


def _msal_ptc() -> PeerEngine:
    from .msal_extensions_engine import MsalPersistedTokenCachePattern

    return MsalPersistedTokenCachePattern()


def _filelock() -> PeerEngine:
    from .filelock_engine import FilelockPerAgentCopy

    return FilelockPerAgentCopy()


PEERS: dict[str, Callable[[], PeerEngine]] = {
    "msal-extensions": _msal,
    "msal-extensions-ptc": _msal_ptc,
    "filelock-copy": _filelock,
}

__all__ = ["PEERS", "PeerEngine"]
