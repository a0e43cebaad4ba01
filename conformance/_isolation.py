"""Running real clients where only loopback is reachable: a fresh network namespace.

``loopback_only()`` moves the calling thread into a new network namespace
(``unshare(CLONE_NEWNET)``, what ``unshare -n`` does) and brings its ``lo``
up.  A network namespace belongs to a thread, and threads and processes
inherit their creator's: the fake server started inside the block listens in
the new namespace, and the clients started from this thread can reach it and
nothing else.  On leaving, the thread goes back to the namespace it came
from.  Where the host refuses (not root, no user namespaces, not Linux) the
block runs where it is and says so: the run is then not isolated.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import socket
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


@dataclass(frozen=True, slots=True)
class Isolation:
    """Whether the block runs with only loopback reachable, and if not, why."""

    isolated: bool
    why_not: str = ""

    def describe(self) -> str:
        if self.isolated:
            return "isolated: only loopback reachable (a network namespace of its own)"
        return f"NOT isolated: {self.why_not}; the clients could reach the network"


@contextlib.contextmanager
def loopback_only() -> Iterator[Isolation]:
    """Run the block in a new network namespace with ``lo`` up, where the host allows."""
    if not sys.platform.startswith("linux"):
        yield Isolation(False, f"network namespaces are Linux only, this is {sys.platform}")
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    except OSError as error:
        yield Isolation(False, f"cannot open this thread's network namespace: {error.strerror}")
        return
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            reason = os.strerror(ctypes.get_errno())
            yield Isolation(False, f"unshare(CLONE_NEWNET) refused: {reason}")
            return
        try:
            _loopback_up()
            yield Isolation(True)
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:  # pragma: no cover - root can always go back
                raise OSError(ctypes.get_errno(), "cannot return to the network namespace")
    finally:
        os.close(home)


def _loopback_up() -> None:
    if not sys.platform.startswith("linux"):  # never reached: loopback_only checks first
        return
    import fcntl  # here, not at the top: a Windows host imports this module too

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | _IFF_UP))
