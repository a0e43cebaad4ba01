"""A deterministic in-memory filesystem with Linux semantics: the simulated world's disk.

Refresh-token races are decided by the order of ``open``, ``read``, ``replace`` and
``flock``, so the model keeps exactly what decides those outcomes: inodes that outlive
their names while open, open file descriptions (OFDs) that own the offset and the flock,
and per-process descriptor tables.  Every failure is the ``OSError`` Linux would raise.
"""

from __future__ import annotations

import errno
import posixpath
from collections.abc import Callable

from refresh_engine import LockOp, OpenFlags

from ._filesystem import MAX_SYMLINKS, link_chain
from ._inode import Inode, InodeKind, OpenFileDescription, error, normalize

__all__ = ["Inode", "OpenFileDescription", "VirtualFS"]

_FIRST_FD = 3  # 0-2 are stdio in every real process
_WRITE_ACCESS = OpenFlags.CREATE | OpenFlags.WRITE | OpenFlags.TRUNCATE


class VirtualFS:
    """Linux filesystem semantics in memory, driven one call at a time by the simulator.

    Nothing here waits: ``flock`` grants or fails, and the kernel decides who waits.
    """

    __slots__ = ("_clock", "_entries", "_inodes", "_next_ino", "_procs")

    def __init__(self, clock: Callable[[], float] = lambda: 0.0) -> None:
        self._clock = clock
        self._entries: dict[str, int] = {}  # normalized absolute path -> inode number
        self._inodes: dict[int, Inode] = {}  # live inodes: named or still open
        self._procs: dict[int, dict[int, OpenFileDescription]] = {}  # pid -> fd table
        self._next_ino = 1
        root = self._new_inode(is_dir=True)
        root.nlink = 1
        self._entries["/"] = root.ino

    # ------------------------------------------------------------------ internals

    def _new_inode(self, is_dir: bool, kind: InodeKind | None = None) -> Inode:
        kind = kind or (InodeKind.DIRECTORY if is_dir else InodeKind.FILE)
        inode = Inode(self._next_ino, kind, self._clock())
        self._inodes[inode.ino] = inode
        self._next_ino += 1
        return inode

    def _get(self, path: str) -> Inode | None:
        ino = self._entries.get(path)
        return None if ino is None else self._inodes[ino]

    def _target_of(self, path: str) -> str | None:
        inode = self._get(path)
        return inode.target if inode is not None and inode.kind is InodeKind.SYMLINK else None

    def link_chain(self, path: str) -> list[str]:
        """The names a call that follows links reads (``_filesystem.link_chain``)."""
        return link_chain(normalize(path), self._target_of)

    def _follow(self, path: str) -> str:
        """The name a call that follows symlinks acts on; ELOOP past ``MAX_SYMLINKS``."""
        chain = link_chain(path, self._target_of)
        if len(chain) > MAX_SYMLINKS:
            raise error(errno.ELOOP, path)
        return chain[-1]

    def _parent(self, path: str) -> Inode:
        """The directory holding ``path``; ENOENT or ENOTDIR as the path walk would fail."""
        parent = self._get(posixpath.dirname(path))
        if parent is not None and parent.is_dir:
            return parent
        prefix = ""
        for part in posixpath.dirname(path).split("/")[1:]:
            prefix += "/" + part
            inode = self._get(prefix)
            if inode is None:
                raise error(errno.ENOENT, path)
            if not inode.is_dir:
                raise error(errno.ENOTDIR, path)
        raise AssertionError("unreachable: parent exists and is a directory")  # pragma: no cover

    def _link(self, path: str, inode: Inode, parent: Inode) -> None:
        self._entries[path] = inode.ino
        parent.children.add(posixpath.basename(path))
        parent.mtime = self._clock()
        inode.nlink += 1

    def _unlink(self, path: str, parent: Inode) -> Inode:
        inode = self._inodes[self._entries.pop(path)]
        parent.children.discard(posixpath.basename(path))
        parent.mtime = self._clock()
        inode.nlink -= 1
        self._maybe_free(inode)
        return inode

    def _maybe_free(self, inode: Inode) -> None:
        if inode.nlink == 0 and inode.open_count == 0:
            del self._inodes[inode.ino]

    def _resize(self, inode: Inode, size: int) -> None:
        data = inode.data
        if size < len(data):
            del data[size:]
        else:
            data.extend(bytes(size - len(data)))
        inode.mtime = self._clock()

    def _ofd(self, pid: int, fd: int) -> OpenFileDescription:
        table = self._procs.get(pid)
        ofd = None if table is None else table.get(fd)
        if ofd is None:
            raise error(errno.EBADF)
        return ofd

    def _release(self, ofd: OpenFileDescription, pid: int, fd: int) -> None:
        """Drop one fd's reference; the last one takes the OFD's flock with it."""
        ofd.fds.discard((pid, fd))
        if not ofd.fds:
            inode = ofd.inode
            inode.flocks.pop(ofd, None)
            inode.open_count -= 1
            self._maybe_free(inode)

    @staticmethod
    def _conflicts(ofd: OpenFileDescription, op: LockOp) -> bool:
        for other, held in ofd.inode.flocks.items():
            if other is not ofd and (op is LockOp.EXCLUSIVE or held is LockOp.EXCLUSIVE):
                return True
        return False

    # -------------------------------------------------------------- setup helpers

    def makedirs(self, path: str) -> None:
        """``os.makedirs(path, exist_ok=True)``, for seeding a world."""
        prefix = ""
        for part in normalize(path).split("/")[1:]:
            if not part:
                continue
            prefix += "/" + part
            inode = self._get(prefix)
            if inode is None:
                self.mkdir(prefix)
            elif not inode.is_dir:
                raise error(errno.ENOTDIR, prefix)

    def write_file(self, path: str, data: bytes) -> None:
        """Create or overwrite in place (same inode, through a symlink), durable at once: the
        seeded state."""
        p = self._follow(normalize(path))
        inode = self._get(p)
        if inode is None:
            parent = self._parent(p)
            inode = self._new_inode(is_dir=False)
            self._link(p, inode, parent)
        elif inode.is_dir:
            raise error(errno.EISDIR, p)
        inode.data[:] = data
        inode.durable_data = bytes(data)
        inode.mtime = self._clock()

    def read_file(self, path: str) -> bytes:
        p = self._follow(normalize(path))
        inode = self._get(p)
        if inode is None:
            self._parent(p)
            raise error(errno.ENOENT, p)
        if inode.is_dir:
            raise error(errno.EISDIR, p)
        if inode.kind is InodeKind.FIFO:
            raise error(errno.ENXIO, p)
        return bytes(inode.data)

    def symlink(self, target: str, path: str) -> None:
        """``os.symlink(target, path)``, for seeding a world: a store that is a link."""
        p = normalize(path)
        if p in self._entries:
            raise error(errno.EEXIST, p)
        inode = self._new_inode(is_dir=False, kind=InodeKind.SYMLINK)
        inode.target = target
        self._link(p, inode, self._parent(p))

    def mkfifo(self, path: str) -> None:
        """``os.mkfifo(path)``, for seeding a world: something not a file where a store is."""
        p = normalize(path)
        if p in self._entries:
            raise error(errno.EEXIST, p)
        self._link(p, self._new_inode(is_dir=False, kind=InodeKind.FIFO), self._parent(p))

    def is_symlink(self, path: str) -> bool:
        inode = self._get(normalize(path))
        return inode is not None and inode.kind is InodeKind.SYMLINK

    def exists(self, path: str) -> bool:
        return normalize(path) in self._entries

    def listdir(self, path: str) -> list[str]:
        """The names in a directory; a symlink is followed, as ``opendir(3)`` follows it."""
        p = self._follow(normalize(path))
        inode = self._get(p)
        if inode is None:
            self._parent(p)
            raise error(errno.ENOENT, p)
        if not inode.is_dir:
            raise error(errno.ENOTDIR, p)
        return sorted(inode.children)

    # ---------------------------------------------------------------- system calls

    def open(self, pid: int, path: str, flags: OpenFlags) -> int:
        """``open(2)``; without READ or WRITE the access mode is O_RDONLY (it is 0).

        A symlink is followed, except by ``O_CREAT|O_EXCL``, which fails on any name
        (so it never writes through a planted link).  A FIFO is refused with ENXIO, as
        the real interpreter refuses anything but a file or directory.
        """
        p = normalize(path)
        exclusive = (OpenFlags.CREATE | OpenFlags.EXCLUSIVE) in flags
        if exclusive and p in self._entries:
            raise error(errno.EEXIST, p)
        p = self._follow(p)
        inode = self._get(p)
        if inode is None:
            parent = self._parent(p)
            if not flags & OpenFlags.CREATE:
                raise error(errno.ENOENT, p)
            inode = self._new_inode(is_dir=False)
            self._link(p, inode, parent)
        elif exclusive:
            raise error(errno.EEXIST, p)
        elif inode.kind is InodeKind.FIFO:
            raise error(errno.ENXIO, p)
        elif inode.is_dir:
            if flags & _WRITE_ACCESS:
                raise error(errno.EISDIR, p)
        elif flags & OpenFlags.TRUNCATE:
            self._resize(inode, 0)  # Linux truncates even on O_RDONLY
        writable = bool(flags & OpenFlags.WRITE)
        readable = bool(flags & OpenFlags.READ) or not writable
        ofd = OpenFileDescription(inode, readable, writable, bool(flags & OpenFlags.APPEND))
        inode.open_count += 1
        table = self._procs.setdefault(pid, {})
        fd = _FIRST_FD
        while fd in table:
            fd += 1
        table[fd] = ofd
        ofd.fds.add((pid, fd))
        return fd

    def create_exclusive(self, pid: int, path: str) -> int:
        """The O_EXCL lock-file idiom: exactly one creator succeeds."""
        return self.open(pid, path, OpenFlags.CREATE | OpenFlags.EXCLUSIVE | OpenFlags.WRITE)

    def read(self, pid: int, fd: int, size: int | None = None) -> bytes:
        """Read from the OFD's offset (shared by its fds); ``None`` reads to the end."""
        ofd = self._ofd(pid, fd)
        if not ofd.readable:
            raise error(errno.EBADF)
        inode = ofd.inode
        if inode.is_dir:
            raise error(errno.EISDIR)
        if size is not None and size < 0:
            raise ValueError(f"negative read size: {size}")
        start = ofd.offset
        end = len(inode.data) if size is None else min(len(inode.data), start + size)
        if start >= end:
            return b""
        ofd.offset = end
        return bytes(inode.data[start:end])

    def write(self, pid: int, fd: int, data: bytes) -> int:
        """Write at the offset (at the end with APPEND); a gap past the end reads as zeros."""
        ofd = self._ofd(pid, fd)
        if not ofd.writable:
            raise error(errno.EBADF)
        if not data:
            return 0
        buf = ofd.inode.data
        if ofd.append:
            ofd.offset = len(buf)
        start = ofd.offset
        if start > len(buf):
            buf.extend(bytes(start - len(buf)))
        buf[start : start + len(data)] = data
        ofd.offset = start + len(data)
        ofd.inode.mtime = self._clock()
        return len(data)

    def truncate(self, pid: int, fd: int, size: int = 0) -> None:
        """``ftruncate(2)``: EINVAL (not EBADF) on a descriptor not open for writing."""
        if size < 0:
            raise error(errno.EINVAL)
        ofd = self._ofd(pid, fd)
        if not ofd.writable or ofd.inode.is_dir:
            raise error(errno.EINVAL)
        self._resize(ofd.inode, size)

    def fsync(self, pid: int, fd: int) -> None:
        """Make the inode's current data what a crash would leave behind."""
        inode = self._ofd(pid, fd).inode
        if not inode.is_dir:
            inode.durable_data = bytes(inode.data)

    def close(self, pid: int, fd: int) -> None:
        ofd = self._ofd(pid, fd)
        del self._procs[pid][fd]
        self._release(ofd, pid, fd)

    def replace(self, src: str, dst: str) -> None:
        """``rename(2)``: atomic; ``dst``'s old inode survives while it is open."""
        s, d = normalize(src), normalize(dst)
        if s == "/" or d == "/":
            raise error(errno.EBUSY, s, d)
        try:
            src_parent, dst_parent = self._parent(s), self._parent(d)
        except OSError as exc:
            raise error(exc.errno or errno.ENOENT, s, d) from None
        inode = self._get(s)
        if inode is None:
            raise error(errno.ENOENT, s, d)
        if inode.is_dir and d.startswith(s + "/"):
            raise error(errno.EINVAL, s, d)  # a directory into itself
        target = self._get(d)
        if target is not None:
            if s.startswith(d + "/"):
                raise error(errno.ENOTEMPTY, s, d)  # over one of its own ancestors
            if target is inode:
                return  # the same file: POSIX says do nothing
            if inode.is_dir and not target.is_dir:
                raise error(errno.ENOTDIR, s, d)
            if target.is_dir and not inode.is_dir:
                raise error(errno.EISDIR, s, d)
            if target.children:
                raise error(errno.ENOTEMPTY, s, d)
            self._unlink(d, dst_parent)
        del self._entries[s]
        src_parent.children.discard(posixpath.basename(s))
        src_parent.mtime = self._clock()
        self._link(d, inode, dst_parent)
        inode.nlink -= 1  # _link counted a new name; this one was moved
        if inode.is_dir:  # names are full paths, so the subtree moves with it
            moved = [name for name in self._entries if name.startswith(s + "/")]
            for name in moved:
                self._entries[d + name[len(s) :]] = self._entries.pop(name)

    def unlink(self, path: str) -> None:
        """Remove a name; the inode stays readable through descriptors still open on it."""
        p = normalize(path)
        inode = self._get(p)
        if inode is None:
            self._parent(p)
            raise error(errno.ENOENT, p)
        if inode.is_dir:
            raise error(errno.EISDIR, p)  # Linux, where POSIX says EPERM
        self._unlink(p, self._parent(p))

    def mkdir(self, path: str) -> None:
        p = normalize(path)
        if p in self._entries:
            raise error(errno.EEXIST, p)
        parent = self._parent(p)
        self._link(p, self._new_inode(is_dir=True), parent)

    def rmdir(self, path: str) -> None:
        """``rmdir(2)``: ENOENT, ENOTDIR, ENOTEMPTY as Linux says."""
        p = normalize(path)
        inode = self._get(p)
        if inode is None:
            self._parent(p)
            raise error(errno.ENOENT, p)
        if not inode.is_dir:
            raise error(errno.ENOTDIR, p)
        if inode.children:
            raise error(errno.ENOTEMPTY, p)
        if p == "/":
            raise error(errno.EBUSY, p)
        self._unlink(p, self._parent(p))

    def utime(self, path: str) -> None:
        """``os.utime(path)``: the mtime becomes now (a lease renewed)."""
        p = self._follow(normalize(path))
        inode = self._get(p)
        if inode is None:
            self._parent(p)
            raise error(errno.ENOENT, p)
        inode.mtime = self._clock()

    def seek(self, pid: int, fd: int, offset: int) -> int:
        """``lseek(fd, offset, SEEK_SET)``: moves the offset every fd of the OFD shares."""
        if offset < 0:
            raise error(errno.EINVAL)
        ofd = self._ofd(pid, fd)
        ofd.offset = offset
        return offset

    def offset_of(self, pid: int, fd: int) -> int:
        return self._ofd(pid, fd).offset

    def is_open(self, path: str) -> bool:
        """Whether any open file description refers to the file ``path`` names."""
        inode = self._get(self._follow(normalize(path)))
        return inode is not None and inode.open_count > 0

    def stat(self, path: str) -> tuple[int, float]:
        """``(size, mtime)`` of what ``path`` names, through links; a directory's and a
        FIFO's size is reported as 0."""
        p = self._follow(normalize(path))
        inode = self._get(p)
        if inode is None:
            self._parent(p)
            raise error(errno.ENOENT, p)
        return (len(inode.data) if inode.kind is InodeKind.FILE else 0, inode.mtime)

    def readlink(self, path: str) -> str:
        """``os.readlink(path)``: the link's target; EINVAL when ``path`` is not a link."""
        p = normalize(path)
        inode = self._get(p)
        if inode is None:
            self._parent(p)
            raise error(errno.ENOENT, p)
        if inode.kind is not InodeKind.SYMLINK:
            raise error(errno.EINVAL, p)
        return inode.target

    def flock(self, pid: int, fd: int, op: LockOp) -> None:
        """``flock(fd, op | LOCK_NB)`` with Linux's non-atomic conversion.

        Converting first drops the lock held, so a conversion that fails leaves the OFD
        with no lock at all, as in the kernel.  A kernel modelling a blocking wait
        should call this and wait on ``BlockingIOError``: a waiting converter has
        likewise already let go of its old lock.
        """
        ofd = self._ofd(pid, fd)
        locks = ofd.inode.flocks
        held = locks.get(ofd)
        if held is op:
            return
        if held is not None:
            del locks[ofd]
        if op is LockOp.UNLOCK:
            return
        if self._conflicts(ofd, op):
            raise error(errno.EWOULDBLOCK)
        locks[ofd] = op

    def can_flock(self, pid: int, fd: int, op: LockOp) -> bool:
        """Would ``flock`` be granted now?  A pure query: it never drops a lock."""
        ofd = self._ofd(pid, fd)
        if op is LockOp.UNLOCK or ofd.inode.flocks.get(ofd) is op:
            return True
        return not self._conflicts(ofd, op)

    def kill_process(self, pid: int) -> None:
        """Exit: the kernel closes every fd, and last references drop their flocks."""
        for fd, ofd in sorted(self._procs.pop(pid, {}).items()):
            self._release(ofd, pid, fd)

    def close_all(self) -> None:
        """The run is over: nothing here is real, so nothing needs releasing."""

    def crash(self) -> None:
        """Power loss: every file keeps only what its last fsync made durable.

        Directory entries survive (the metadata journal replays them), so a
        file created or renamed but never fsynced is there, and empty.
        """
        for inode in self._inodes.values():
            if not inode.is_dir:
                inode.data[:] = inode.durable_data

    def inode_at(self, path: str) -> int | None:
        """The inode number ``path`` names now, or None (for dependency tracking)."""
        return self._entries.get(normalize(path))

    def inode_of(self, pid: int, fd: int) -> int | None:
        """The inode number behind ``fd`` of ``pid``, or None for a bad descriptor."""
        ofd = self._procs.get(pid, {}).get(fd)
        return None if ofd is None else ofd.inode.ino

    def flocked(self, inode: int) -> bool:
        """Whether any open file description holds a flock on ``inode``."""
        found = self._inodes.get(inode)
        return found is not None and bool(found.flocks)

    def holds_flock(self, pid: int, fd: int) -> bool:
        """Whether closing ``fd`` could release a lock (its OFD holds a flock)."""
        ofd = self._procs.get(pid, {}).get(fd)
        return ofd is not None and ofd in ofd.inode.flocks

    def open_fds(self, pid: int) -> list[int]:
        return sorted(self._procs.get(pid, ()))

    def lock_holders(self, path: str) -> list[tuple[int, int, LockOp]]:
        """``(pid, fd, mode)`` for each fd whose OFD holds a flock on the file at ``path``."""
        inode = self._get(self._follow(normalize(path)))
        if inode is None:
            return []
        holders = [(pid, fd, op) for ofd, op in inode.flocks.items() for pid, fd in ofd.fds]
        return sorted(holders, key=lambda holder: (holder[0], holder[1]))
