"""Exceptions of the fake OAuth server.

Tree::

    FakeServerError
    ├── UnknownPreset      ``Policy.preset(name)`` got a name it does not know
    └── InvalidPolicy      a ``Policy`` field is out of range (e.g. a lifetime <= 0)

The HTTP surface never raises: ``AuthServer.handle`` answers every request,
however malformed, with an OAuth-style JSON error.  These exceptions are only
for programming mistakes made while *configuring* a server.  No message ever
carries a raw token.
"""

from __future__ import annotations


class FakeServerError(Exception):
    """Root of every error the fake OAuth server raises."""


class UnknownPreset(FakeServerError):
    """``Policy.preset`` was asked for a preset that does not exist."""


class InvalidPolicy(FakeServerError):
    """A policy knob is out of range, so the server could not behave like any real one."""
