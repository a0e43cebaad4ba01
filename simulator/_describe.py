"""How a history says each effect: one short line, tokens fingerprinted.

A column of the semantics table (``_semantics.Rule.describe``), kept apart
so the table stays readable; ``_history.describe_effect`` reads it.
"""

from __future__ import annotations

from fake_oauth_server import redact
from refresh_engine import (
    Close,
    CreateExclusive,
    Flock,
    Fsync,
    GetPid,
    HttpPost,
    Lockf,
    LockFileEx,
    Log,
    Mkdir,
    MsvcrtLocking,
    Mutex,
    Now,
    Open,
    ProcessAlive,
    Read,
    ReadLink,
    Replace,
    Rmdir,
    Seek,
    Sleep,
    Stat,
    Touch,
    Truncate,
    Unlink,
    Write,
)


def describe_open(effect: Open) -> str:
    path = effect.path
    flags = effect.flags
    names = "|".join(flag.name or "" for flag in flags)
    return f"open {path} [{names}]"


def describe_create_exclusive(effect: CreateExclusive) -> str:
    path = effect.path
    return f"create-exclusive {path}"


def describe_read(effect: Read) -> str:
    fd = effect.fd
    size = effect.size
    return f"read fd={fd}" + ("" if size is None else f" size={size}")


def describe_write(effect: Write) -> str:
    fd = effect.fd
    data = effect.data
    return f"write fd={fd} {len(data)} bytes"


def describe_truncate(effect: Truncate) -> str:
    fd = effect.fd
    size = effect.size
    return f"truncate fd={fd} size={size}"


def describe_fsync(effect: Fsync) -> str:
    fd = effect.fd
    return f"fsync fd={fd}"


def describe_close(effect: Close) -> str:
    fd = effect.fd
    return f"close fd={fd}"


def describe_replace(effect: Replace) -> str:
    src = effect.src
    dst = effect.dst
    return f"replace {src} -> {dst}"


def describe_unlink(effect: Unlink) -> str:
    path = effect.path
    return f"unlink {path}"


def describe_mkdir(effect: Mkdir) -> str:
    path = effect.path
    return f"mkdir {path}"


def describe_stat(effect: Stat) -> str:
    path = effect.path
    return f"stat {path}"


def describe_readlink(effect: ReadLink) -> str:
    return f"readlink {effect.path}"


def describe_flock(effect: Flock) -> str:
    fd = effect.fd
    op = effect.op
    blocking = effect.blocking
    return f"flock fd={fd} {op.value}" + ("" if blocking else " nonblocking")


def describe_seek(effect: Seek) -> str:
    fd = effect.fd
    offset = effect.offset
    return f"seek fd={fd} {offset}"


def describe_rmdir(effect: Rmdir) -> str:
    path = effect.path
    return f"rmdir {path}"


def describe_touch(effect: Touch) -> str:
    path = effect.path
    return f"touch {path}"


def describe_lockf(effect: Lockf) -> str:
    fd = effect.fd
    op = effect.op
    blocking = effect.blocking
    return f"lockf fd={fd} {op.value}" + ("" if blocking else " nonblocking")


def describe_msvcrt_locking(effect: MsvcrtLocking) -> str:
    fd = effect.fd
    mode = effect.mode
    nbytes = effect.nbytes
    return f"msvcrt.locking fd={fd} {mode.name} {nbytes}"


def describe_lock_file_ex(effect: LockFileEx) -> str:
    fd = effect.fd
    op = effect.op
    blocking = effect.blocking
    offset = effect.offset
    length = effect.length
    call = "UnlockFileEx" if op.value == "unlock" else f"LockFileEx {op.value}"
    return f"{call} fd={fd} [{offset}, +{length})" + ("" if blocking else " immediate")


def describe_mutex(effect: Mutex) -> str:
    name = effect.name
    op = effect.op
    return f"mutex {op.value} {name}"


def describe_get_pid(effect: GetPid) -> str:
    return "getpid"


def describe_process_alive(effect: ProcessAlive) -> str:
    pid = effect.pid
    return f"process-alive {pid}"


def describe_http_post(effect: HttpPost) -> str:
    url = effect.url
    body = effect.body
    return f"POST {url} {redact(body.decode('utf-8', 'replace'))}"


def describe_now(effect: Now) -> str:
    return "now"


def describe_sleep(effect: Sleep) -> str:
    seconds = effect.seconds
    return f"sleep {seconds:g}s"


def describe_log(effect: Log) -> str:
    message = effect.message
    return f"log {redact(message)}"
