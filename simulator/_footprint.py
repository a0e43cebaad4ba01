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

import functools
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from refresh_engine import (
    Close,
    CreateExclusive,
    Fsync,
    Lockf,
    Mkdir,
    Mutex,
    Open,
    OpenFlags,
    Replace,
    Rmdir,
    Seek,
    Unlink,
)

if TYPE_CHECKING:
    from ._filesystem import FileSystem

Touched = set[tuple[str, bool]]

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


@dataclass(frozen=True, slots=True)
class Scene:
    """What a footprint is computed against: the filesystem now, and whose step it is.

    ``fold`` maps a path to the name the filesystem keys on (case-folding
    where names are case-insensitive); with ``windows``, open handles decide
    whether a replace or a delete succeeds, and byte-range locks are mandatory.
    """

    fs: FileSystem
    pid: int
    agent: str
    fold: Callable[[str], str] = str
    windows: bool = False
    #: whether a descriptor holds a lock of its own (a flock, a byte range); True if unsure
    holds_lock: Callable[[int, int], bool] = lambda pid, fd: True


# ------------------------------------------------- what each effect touches


@functools.lru_cache(maxsize=4096)  # a run names a few paths thousands of times
def normalize(path: str) -> str:
    norm = posixpath.normpath(path)
    return "/" + norm.lstrip("/") if norm.startswith("//") else norm


@functools.lru_cache(maxsize=4096)
def _walk(name: str) -> frozenset[tuple[str, bool]]:
    """Every ancestor directory of ``name``, read by the path walk."""
    found = set()
    parent = name
    while parent not in ("/", ""):
        parent = posixpath.dirname(parent)
        found.add((f"path:{parent}", False))
    return frozenset(found)


def _entry(scene: Scene, path: str, writes: bool) -> Touched:
    """A directory entry, and every ancestor: the path walk reads each one."""
    name = scene.fold(normalize(path))
    touched = {(f"path:{name}", writes)}
    touched |= _walk(name)
    return touched


def _parent_mtime(scene: Scene, path: str) -> Touched:
    """Adding or removing a name sets its directory's mtime to now.

    Two such steps commute (both set the same now), so they *read*
    ``dirtime``; a ``Stat`` that returns the mtime *writes* it, which makes
    it dependent on every setter.  See docs/semantics.md.
    """
    ino = scene.fs.inode_at(posixpath.dirname(scene.fold(normalize(path))))
    return set() if ino is None else {(f"dirtime:{ino}", False)}


def _ino(scene: Scene, path: str) -> int | None:
    return scene.fs.inode_at(scene.fold(normalize(path)))


def _followed(scene: Scene, path: str) -> tuple[Touched, str]:
    """A call that follows symlinks reads each link on the way (their entries) and acts on
    the name it reaches, returned."""
    *links, reached = scene.fs.link_chain(scene.fold(normalize(path)))
    touched: Touched = set()
    for link in links:
        touched |= _entry(scene, link, False)
    return touched, reached


def readlink_touches(scene: Scene, effect: Any) -> Footprint:
    """ReadLink reads the name only: a link's target never changes in place."""
    return frozenset(_entry(scene, effect.path, False))


def _is_dir(scene: Scene, path: str) -> bool:
    try:
        scene.fs.listdir(scene.fold(normalize(path)))
    except OSError:
        return False
    return True


def _handles(scene: Scene, *paths: str) -> Touched:
    """On Windows, whether a file is open decides a replace or a delete: read that."""
    if not scene.windows:
        return set()
    found = (_ino(scene, path) for path in paths)
    return {(f"open:{ino}", False) for ino in found if ino is not None}


def _new_slot(scene: Scene) -> Touched:
    """An open takes the lowest free descriptor: it reads every slot below and writes its own."""
    used = set(scene.fs.open_fds(scene.pid))
    fd = 3
    touched = set()
    while fd in used:
        touched.add((f"fd:{scene.pid}:{fd}", False))
        fd += 1
    touched.add((f"fd:{scene.pid}:{fd}", True))
    return touched


def _slot(scene: Scene, fd: int) -> tuple[Touched, int | None]:
    """A descriptor call reads its slot (which open file it names) and returns that inode."""
    return {(f"fd:{scene.pid}:{fd}", False)}, scene.fs.inode_of(scene.pid, fd)


def data_touches(writes: bool, moves_offset: bool) -> Callable[[Scene, Any], Footprint]:
    """Read, Write, Truncate: the slot, the offset, the data; Windows' mandatory locks."""

    def touches(scene: Scene, effect: Any) -> Footprint:
        touched, ino = _slot(scene, effect.fd)
        if ino is None:
            return frozenset(touched)  # EBADF: changes nothing
        touched.add((f"ino:{ino}", writes))
        if moves_offset:
            touched.add((f"off:{scene.pid}:{effect.fd}", True))
        if scene.windows:
            touched.add((f"lock:{ino}", False))
        return frozenset(touched)

    return touches


def lock_touches(offset: bool) -> Callable[[Scene, Any], Footprint]:
    """Flock, Lockf, MsvcrtLocking, LockFileEx: the slot and the inode's locks."""

    def touches(scene: Scene, effect: Any) -> Footprint:
        touched, ino = _slot(scene, effect.fd)
        if ino is not None:
            touched.add((f"lock:{ino}", True))
            if isinstance(effect, Lockf):
                touched.add((f"lockf:{scene.pid}:{ino}", True))
            if offset:
                touched.add((f"off:{scene.pid}:{effect.fd}", False))
        return frozenset(touched)

    return touches


def open_touches(scene: Scene, effect: Open | CreateExclusive) -> Footprint:
    flags = effect.flags if isinstance(effect, Open) else OpenFlags.CREATE | OpenFlags.EXCLUSIVE
    if (OpenFlags.CREATE | OpenFlags.EXCLUSIVE) in flags:
        links: Touched = set()  # O_EXCL never follows a link
        path = effect.path
    else:
        links, path = _followed(scene, effect.path)
    ino = _ino(scene, path)
    if ino is None:
        creates = OpenFlags.CREATE in flags
        touched = links | _entry(scene, path, creates) | _new_slot(scene)
        if creates:
            touched |= _parent_mtime(scene, path)
        return frozenset(touched)
    touched = links | _entry(scene, path, False) | _new_slot(scene)
    if OpenFlags.TRUNCATE in flags:
        touched.add((f"ino:{ino}", True))
    if scene.windows:
        touched.add((f"open:{ino}", True))
    return frozenset(touched)


def fsync_touches(scene: Scene, effect: Fsync) -> Footprint:
    touched, ino = _slot(scene, effect.fd)
    if ino is not None:
        touched |= {(f"ino:{ino}", False), (f"sync:{ino}", True)}
    return frozenset(touched)


def seek_touches(scene: Scene, effect: Seek) -> Footprint:
    touched, ino = _slot(scene, effect.fd)
    if ino is not None:
        touched.add((f"off:{scene.pid}:{effect.fd}", True))
    return frozenset(touched)


def close_touches(scene: Scene, effect: Close) -> Footprint:
    """A close frees its slot, drops the locks the slot holds, and the process's lockf.

    Whether the slot holds a flock or a range changes only by calls on the
    slot itself, which depend on this close through the slot; the process's
    lockf can be taken through another descriptor, so it has its own object.
    """
    slot = f"fd:{scene.pid}:{effect.fd}"
    ino = scene.fs.inode_of(scene.pid, effect.fd)
    if ino is None:
        return frozenset({(slot, False)})
    touched = {(slot, True), (f"lockf:{scene.pid}:{ino}", True)}
    if scene.holds_lock(scene.pid, effect.fd):
        touched.add((f"lock:{ino}", True))
    if scene.windows:
        touched.add((f"open:{ino}", True))
    return frozenset(touched)


def replace_touches(scene: Scene, effect: Replace) -> Footprint:
    touched = _entry(scene, effect.src, True) | _entry(scene, effect.dst, True)
    touched |= _parent_mtime(scene, effect.src) | _parent_mtime(scene, effect.dst)
    return frozenset(touched | _handles(scene, effect.src, effect.dst))


def remove_touches(scene: Scene, effect: Unlink | Rmdir) -> Footprint:
    touched = _entry(scene, effect.path, True) | _parent_mtime(scene, effect.path)
    return frozenset(touched | _handles(scene, effect.path))


def mkdir_touches(scene: Scene, effect: Mkdir) -> Footprint:
    if _ino(scene, effect.path) is not None:
        return frozenset(_entry(scene, effect.path, False))  # EEXIST: changes nothing
    return frozenset(_entry(scene, effect.path, True) | _parent_mtime(scene, effect.path))


def inode_touches(writes: bool) -> Callable[[Scene, Any], Footprint]:
    """Stat (reads size and mtime; a directory's mtime is ``dirtime``) and Touch (sets it)."""

    def touches(scene: Scene, effect: Any) -> Footprint:
        touched, path = _followed(scene, effect.path)
        touched |= _entry(scene, path, False)
        ino = _ino(scene, path)
        if ino is not None:
            touched.add((f"ino:{ino}", writes))
            if not writes and _is_dir(scene, path):
                touched.add((f"dirtime:{ino}", True))
        return frozenset(touched)

    return touches


def private(scene: Scene, effect: Any) -> Footprint:
    return local(scene.agent)


def server(scene: Scene, effect: Any) -> Footprint:
    return frozenset({("server", True)})


def procs(scene: Scene, effect: Any) -> Footprint:
    return frozenset({("procs", False)})


def mutex_touches(scene: Scene, effect: Mutex) -> Footprint:
    return frozenset({(f"mutex:{scene.pid}:{effect.name}", True)})
