"""Footprints: which shared objects a step reads or writes, for partial-order reduction.

Two steps are *dependent* when they touch one object and at least one of
them writes it; independent steps commute, so an exhaustive search need
only try one of their orders.  Objects are named strings: a directory entry
(``path:/x``), an inode's data (``ino:7``) and what an fsync made durable
(``sync:7``), an inode's locks (``lock:7``), its open handles on Windows
(``open:7``), a directory's mtime (``dirtime:7``), one slot of a process's
descriptor table (``fd:1001:3``) and its file offset (``off:1001:3``), the
server (``server``), the fault budget (``faults``), an agent's own state
(``agent:atlas``).  A footprint may over-approximate (that costs reduction)
but must never miss an access (that would cost soundness).  What each
effect touches is in ``_semantics``; ``docs/semantics.md`` argues why.
"""

from __future__ import annotations

#: ``(object, writes)`` pairs.
Footprint = frozenset[tuple[str, bool]]

#: The wildcard object: a step holding it touches everything.
ANY = "*"

#: A step that touches everything: a kill, a crash, an effect the table does not describe.
EVERYTHING: Footprint = frozenset({(ANY, True)})
SERVER_READ: Footprint = frozenset({("server", False)})


def local(agent: str) -> Footprint:
    """A step that touches nothing shared (``now``, ``log``, a response arriving)."""
    return frozenset({(f"agent:{agent}", True)})


def touches_everything(footprint: Footprint) -> bool:
    return (ANY, True) in footprint or (ANY, False) in footprint


def dependent(first: Footprint, second: Footprint) -> bool:
    """Whether the two steps may not commute: one object, at least one writer."""
    if touches_everything(first) or touches_everything(second):
        return True
    if len(first) > len(second):
        first, second = second, first
    return any(
        (obj, True) in second or (writes and (obj, False) in second) for obj, writes in first
    )
