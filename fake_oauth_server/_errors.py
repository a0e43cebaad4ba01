"""Exceptions of the fake OAuth server.

Tree::

    FakeServerError
    ├── UnknownPreset      ``Policy.preset(name)`` got a name it does not know
    ├── InvalidPolicy      a ``Policy`` field is out of range (e.g. a lifetime <= 0)
    ├── InvalidFault       a ``Fault`` or ``FaultPlan`` cannot be applied (e.g. status 200)
    ├── ServeError         the real HTTP server could not start (port taken, not loopback, ...)
    └── ControlError       the control API refused a request (``ControlClient``)

The HTTP surfaces never raise: ``AuthServer.handle`` answers every request,
however malformed, with an OAuth-style JSON error.  These exceptions are only
for programming mistakes made while *configuring* a server, and for a test
that drives the control API wrongly.  No message ever carries a raw token.
"""

from __future__ import annotations


class FakeServerError(Exception):
    """Root of every error the fake OAuth server raises."""


class UnknownPreset(FakeServerError):
    """``Policy.preset`` was asked for a preset that does not exist."""


class InvalidPolicy(FakeServerError):
    """A policy knob is out of range, so the server could not behave like any real one."""


class InvalidFault(FakeServerError):
    """A fault is out of range (a 5xx that is not 5xx, a negative latency, ...)."""


class ServeError(FakeServerError):
    """The real HTTP server could not start, or did not start in time."""


class ControlError(FakeServerError):
    """The control API answered a ``ControlClient`` call with an error.

    ``status`` is the HTTP status; the message is the server's (redacted) text.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"control API answered {status}: {message}")
        self.status = status
