"""Carrying out one OS-level effect against the OS model, by its row of ``_semantics``,
and one HTTP request against the fake server.

The one place an effect meets the OS model: each call either returns its
outcome or raises the ``OSError`` the real call would, which comes back as
``Failed``.  Behaviour the model does not cover raises ``NotModelled``: the
simulator refuses rather than guess.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable

from fake_oauth_server import AuthServer, Request
from refresh_engine import Effect, Failed, HttpPost, HttpResponse, Outcome

from ._os import OsLayer
from ._semantics import Machine, rule_for


def os_call(
    os: OsLayer,
    pid: int,
    effect: Effect,
    *,
    now: float,
    alive: Callable[[int], bool],
    path_of: Callable[[int, int], str],
) -> Outcome:
    """Do ``effect`` for process ``pid``; an ``OSError`` becomes ``Failed``."""
    perform = rule_for(effect).perform
    if perform is None:
        raise AssertionError(f"the kernel carries out {type(effect).__name__} itself")
    os.act_as(pid)  # real processes do path-only calls (replace, stat, ...) in pid's process
    try:
        return perform(Machine(os, pid, now, alive, path_of), effect)
    except OSError as exc:
        return Failed.from_exception(exc)


def http_call(
    server: AuthServer,
    base: urllib.parse.SplitResult,
    effect: HttpPost,
    request_id: str,
    now: float,
) -> Outcome:
    """Deliver ``effect`` to the fake server at ``base`` (it commits now); a request for
    any other host finds no server, as with no network."""
    url = urllib.parse.urlsplit(effect.url)
    if (url.scheme, url.netloc) != (base.scheme, base.netloc):
        return Failed("ConnectionRefusedError", 111, f"no server at {url.netloc}")
    request = Request(
        method="POST",
        path=url.path,
        body=effect.body,
        headers=(("content-type", effect.content_type),),
        request_id=request_id,
    )
    response = server.handle(request, now)
    return HttpResponse.keeping(response.status, response.body, response.headers)
