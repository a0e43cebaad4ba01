"""The virtual filesystem's records: inodes, open file descriptions, and Linux's errors.

Kept apart from ``_vfs`` (the system calls) so each stays readable.
"""

from __future__ import annotations

import enum
import os
import posixpath

from refresh_engine import LockOp

__all__ = ["Inode", "InodeKind", "OpenFileDescription", "error", "normalize"]


class InodeKind(enum.Enum):
    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"  # its ``target`` is a path, followed by calls that follow links
    FIFO = "fifo"  # a named pipe: what a non-regular file in place of a store looks like


def error(code: int, path: str | None = None, path2: str | None = None) -> OSError:
    """Build the error CPython raises; ``OSError(errno, ...)`` picks the subclass itself."""
    if path is None:
        return OSError(code, os.strerror(code))
    if path2 is None:
        return OSError(code, os.strerror(code), path)
    return OSError(code, os.strerror(code), path, None, path2)


def normalize(path: str) -> str:
    """Normalize lexically (directory symlinks are not modelled, so this is the resolution)."""
    if not path.startswith("/"):
        raise ValueError(f"path must be absolute: {path!r}")
    norm = posixpath.normpath(path)
    return "/" + norm.lstrip("/") if norm.startswith("//") else norm


class Inode:
    """A file, directory, symlink or FIFO; it lives while it has a name or an open description."""

    __slots__ = (
        "children",
        "data",
        "durable_data",
        "flocks",
        "ino",
        "is_dir",
        "kind",
        "mtime",
        "nlink",
        "open_count",
        "target",
    )

    def __init__(self, ino: int, kind: InodeKind, mtime: float) -> None:
        self.ino = ino
        self.kind = kind
        self.is_dir = kind is InodeKind.DIRECTORY  # asked on every call: kept as a field
        self.target = ""  # a symlink's target, as written (relative to the link's directory)
        self.data = bytearray()  # mutated in place: writes cost the bytes written
        self.durable_data = b""  # what survives a crash: the data at the last fsync
        self.nlink = 0  # directory entries naming it (a directory's "." and ".." not counted)
        self.mtime = mtime
        self.children: set[str] = set()  # names inside a directory
        self.flocks: dict[OpenFileDescription, LockOp] = {}  # flock(2) locks are per OFD
        self.open_count = 0  # OFDs referring to it; keeps an unlinked inode alive


class OpenFileDescription:
    """What ``open`` creates: offset, access mode and flock, shared by every fd dup'ing it."""

    __slots__ = ("append", "fds", "inode", "offset", "readable", "writable")

    def __init__(self, inode: Inode, readable: bool, writable: bool, append: bool) -> None:
        self.inode = inode
        self.offset = 0
        self.readable = readable
        self.writable = writable
        self.append = append
        self.fds: set[tuple[int, int]] = set()  # (pid, fd) referring to it
