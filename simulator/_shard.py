"""Sharding an exhaustive search: a deterministic partition of its tree by schedule prefix.

Above ``split_depth`` the search enumerates *every* option at every state
(with sleep sets, which only drop orders proven equivalent to ones explored
before them at the same state, and which every shard computes alike).  Each
prefix of ``split_depth`` choices roots a subtree, which dynamic partial-order
reduction explores as if the prefix's last state were the initial one; a run
that ends (or is cut by a sleep set) above the split depth is a subtree of its
own.  Subtrees are numbered in the order the depth-first search meets them,
which depends only on the prefix levels, so every shard numbers them alike,
and shard ``I`` of ``N`` explores the subtrees whose number is ``I - 1`` mod
``N``.  A shard still replays every prefix to number the subtrees, but runs
only its own subtrees' schedules.

Why the union is sound (docs/sharding.md): DPOR stays sound when a state's
backtrack set holds *more* options than the races call for, and a prefix
state holds all of them; a race between a step in a subtree and one in the
prefix asks for an option the prefix state already has.  So the shards'
union explores what DPOR does with the prefix levels unreduced: every final
state, and ``Shard(1, 1, depth)`` (one shard, the split search unsharded)
explores exactly the shards' schedules summed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DEFAULT_SPLIT_DEPTH", "Shard", "Splitter", "SubtreeSkipped", "parse_shard"]

DEFAULT_SPLIT_DEPTH = 8


class SubtreeSkipped(Exception):
    """The run reached a subtree another shard explores: stop it there."""


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``, the tree split at ``split_depth`` choices."""

    index: int
    count: int
    split_depth: int = DEFAULT_SPLIT_DEPTH

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.count:
            raise ValueError(f"shard {self.index}/{self.count}: I must be between 1 and N")
        if self.split_depth < 0:
            raise ValueError(f"split depth {self.split_depth}: must be 0 or more")

    def owns(self, subtree: int) -> bool:
        """Whether the subtree numbered ``subtree`` (0-based) is this shard's."""
        return subtree % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str, split_depth: int = DEFAULT_SPLIT_DEPTH) -> Shard:
    """``I/N`` as a ``Shard``; ``ValueError`` with a one-line reason otherwise."""
    found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if found is None:
        raise ValueError(f"{text!r} is not I/N (e.g. 1/4)")
    index, count = int(found.group(1)), int(found.group(2))
    if count < 1 or not 1 <= index <= count:
        raise ValueError(f"{text!r}: I must be between 1 and N, N at least 1")
    return Shard(index, count, split_depth)


class Splitter:
    """Numbers the subtrees as the search meets them; says which runs are this shard's."""

    __slots__ = ("shard", "subtrees", "owned")

    def __init__(self, shard: Shard) -> None:
        self.shard = shard
        self.subtrees = 0  # met so far, every shard's
        self.owned = 0  # of them, this shard's

    @property
    def depth(self) -> int:
        return self.shard.split_depth

    def unreduced(self, depth: int) -> bool:
        """A state at ``depth`` is a prefix state: every option is tried there."""
        return depth < self.shard.split_depth

    def _next(self) -> bool:
        number = self.subtrees
        self.subtrees += 1
        owned = self.shard.owns(number)
        self.owned += owned
        return owned

    def enter(self, depth: int) -> None:
        """A new state at ``depth``: at the split depth it roots a subtree; not this
        shard's, ``SubtreeSkipped``."""
        if depth == self.shard.split_depth and not self._next():
            raise SubtreeSkipped()

    def ended_above(self, depth: int) -> bool:
        """A run ended after ``depth`` choices; ``True`` when it counts for this shard:
        in one of its subtrees, or above the split depth (a subtree of its own) and its."""
        if depth > self.shard.split_depth:
            return True  # it went through ``enter`` at the split depth: an owned subtree
        return self._next()

    def cut_above(self, depth: int) -> bool:
        """A run cut by a sleep set at the new state at ``depth``; ``True`` when it counts."""
        if depth >= self.shard.split_depth:
            return True
        return self._next()
