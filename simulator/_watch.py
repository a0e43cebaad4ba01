"""Watching the credential stores: which file each descriptor names, and what each store holds.

The checker judges stores by *generation* (how many rotations the token in
them has seen), so after every step that could change a store file the
kernel asks ``StoreWatch`` for the store's new generation, and every read of
a store is tagged with its path so a torn read can be named.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from refresh_engine import Close, CreateExclusive, Effect, Open

from ._filesystem import FileSystem
from ._history import EventKind, HistoryEvent, KeptCredential, StoreState
from ._semantics import changed_paths

#: (family, generation) of a token the server minted, else None.
Lineage = Callable[[str], tuple[str, int] | None]


@dataclass(frozen=True, slots=True)
class StoreReading:
    """What a store holds: the history's STORE fields, read once."""

    state: StoreState
    family: str = ""
    generation: int | None = None
    size: int = 0  # bytes in the file

    @property
    def note(self) -> str:
        """The reading as prose for the rendered history."""
        match self.state:
            case StoreState.CREDENTIAL:
                return f"{self.family}/g{self.generation}"
            case StoreState.UNPARSEABLE:
                return f"unparseable ({self.size} bytes)"
            case StoreState.UNKNOWN_TOKEN:
                return "unknown token"
        return "missing"


class StoreWatch:
    """Descriptor paths per process, and store generations as they change.

    ``keys`` are the profiles the store holds; each is read on its own, so a
    writer that carries another profile back to an older token shows.
    """

    __slots__ = ("_paths", "_stores", "keys")

    def __init__(self, stores: Iterable[str], keys: tuple[str, ...]) -> None:
        self._paths: dict[tuple[int, int], str] = {}
        self._stores = frozenset(posixpath.normpath(path) for path in stores)
        self.keys = keys

    @property
    def stores(self) -> tuple[str, ...]:
        return tuple(sorted(self._stores))

    def path_of(self, pid: int, fd: int) -> str:
        return self._paths.get((pid, fd), "")

    def is_store(self, path: str) -> bool:
        return path in self._stores

    def track(self, pid: int, effect: Effect, fd: int | None) -> None:
        """Follow an ``Open``/``CreateExclusive`` that gave ``fd``, and every ``Close``."""
        if isinstance(effect, Open | CreateExclusive) and fd is not None:
            self._paths[(pid, fd)] = posixpath.normpath(effect.path)
        elif isinstance(effect, Close):
            self._paths.pop((pid, effect.fd), None)

    def forget_process(self, pid: int) -> None:
        for key in [key for key in self._paths if key[0] == pid]:
            del self._paths[key]

    def changed_stores(self, pid: int, effect: Effect) -> tuple[str, ...]:
        """The store paths a successful ``effect`` may have changed (see ``_semantics``)."""
        paths = changed_paths(effect, lambda fd: self.path_of(pid, fd))
        return tuple(path for path in paths if path in self._stores)

    def reading(self, fs: FileSystem, path: str, key: str, lineage: Lineage) -> StoreReading:
        """What the store at ``path`` holds now for profile ``key``: which credential, of
        which grant."""
        if not fs.exists(path):
            return StoreReading(StoreState.MISSING)
        try:
            data = fs.read_file(path)
        except OSError:  # a directory, FIFO, dangling or looping link: no document
            return StoreReading(StoreState.UNPARSEABLE)
        try:
            document = json.loads(data)
            token = document["profiles"][key]["refresh"]
        except (ValueError, KeyError, TypeError):
            return StoreReading(StoreState.UNPARSEABLE, size=len(data))
        found = lineage(str(token))
        if found is None:
            return StoreReading(StoreState.UNKNOWN_TOKEN, size=len(data))
        family, generation = found
        return StoreReading(StoreState.CREDENTIAL, family, generation, len(data))


def kept_credentials(
    fs: FileSystem, watch: StoreWatch, lineage: Lineage
) -> tuple[KeptCredential, ...]:
    """Every credential a file beside the stores (not a store) holds now: what a dead
    writer staged and never renamed into place."""
    found = []
    for directory in sorted({posixpath.dirname(store) for store in watch.stores}):
        if not fs.exists(directory):
            continue
        for name in sorted(fs.listdir(directory)):
            path = posixpath.join(directory, name)
            if watch.is_store(path):
                continue
            for key in watch.keys:
                held = watch.reading(fs, path, key, lineage)
                if held.state is StoreState.CREDENTIAL and held.generation is not None:
                    found.append(KeptCredential(path, held.family, held.generation))
    return tuple(found)


def note_kept(
    events: list[HistoryEvent], first: int, fs: FileSystem, watch: StoreWatch, lineage: Lineage
) -> None:
    """Mark the FAULT events from ``first`` on (a kill, and those who died with it) with
    the credentials ``kept_credentials`` finds now."""
    kept = kept_credentials(fs, watch, lineage)
    for index in range(first, len(events) if kept else first):
        if events[index].kind is EventKind.FAULT:
            events[index] = dataclasses.replace(events[index], kept=kept)


def read_files(fs: FileSystem, paths: Iterable[str]) -> tuple[tuple[str, bytes], ...]:
    """Each of ``paths`` that is a file, with its bytes (a run's stores at its end)."""
    files = []
    for path in paths:
        if fs.exists(path):
            try:
                files.append((path, fs.read_file(path)))
            except OSError:
                continue  # a directory (an engine made one), a FIFO, a dangling link
    return tuple(files)
