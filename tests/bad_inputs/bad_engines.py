"""Engines with the mistakes a new user makes; each must be refused with one line and exit 2.

Loaded by ``tests/test_user_errors.py`` as ``bad_engines:<Name>`` (this directory on
``PYTHONPATH``).  Not engines to copy.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from refresh_engine import AgentContext, ReferenceEngine


class ConstructorRaises:
    """Its ``__init__`` fails."""

    def __init__(self) -> None:
        raise RuntimeError("no config file")


class NeedsArguments:
    """A class the suite cannot construct with no arguments."""

    def __init__(self, path: str) -> None:
        self.path = path


class ReturnsString:
    """``access_token`` is a plain function that returns the token, not a flow."""

    def access_token(self, ctx: AgentContext) -> str:
        return "tok"


class WrongSignature:
    """``access_token`` takes no context."""

    def access_token(self) -> Iterator[Any]:
        yield None


class TooManyArguments:
    """``access_token`` wants a second required argument."""

    def access_token(self, ctx: AgentContext, scope: str) -> Iterator[Any]:
        yield None


class YieldsNonEffect:
    """The flow yields something that is not an effect."""

    def access_token(self, ctx: AgentContext) -> Iterator[Any]:
        yield "read the store"
        return "tok"


class RaisesInFlow:
    """The flow raises a programming error at once."""

    def access_token(self, ctx: AgentContext) -> Iterator[Any]:
        raise KeyError("profiles")
        yield  # a generator all the same


class AccessTokenNotCallable:
    """``access_token`` is an attribute, not a method."""

    access_token = "tok"


class NoAccessToken:
    """Not an engine at all."""

    def refresh(self, ctx: AgentContext) -> None:
        return None


class AsyncEngine:
    """An ``async def`` access_token: a coroutine, not a flow of effects."""

    async def access_token(self, ctx: AgentContext) -> str:
        return "tok"


class SubclassRaises(ReferenceEngine):
    """The reference engine with a constructor that fails after super()."""

    def __init__(self) -> None:
        super().__init__()
        raise ValueError("bad lock path")


def plain_function(ctx: AgentContext) -> str:
    """A function, not an object with access_token."""
    return "tok"


not_an_engine = 42
sleeps = time  # a module: has no access_token
