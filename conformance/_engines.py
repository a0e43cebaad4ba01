"""Which engines the suite knows, what it expects of each, and loading any other.

An engine is any object with ``access_token(ctx) -> Flow[str]``.  Built-in
engines are named (``reference``, ``mirrored``); any other Python engine is
loaded by ``module:attribute`` (a class is instantiated with no arguments).
An engine built on the reference engine's hooks can take another lock kind
or scope, as the matrix names it: ``reference[lock=flock]``,
``reference[lock=lockf][scope=agent-dir]``.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from refresh_engine import BrokeredEngine, LockKind, LockScope, ReferenceEngine
from simulator import Engine

from ._corpus import CORPUS
from ._errors import ConformanceError, EngineLoadError
from ._hang import DEFAULT_HANG_AFTER
from ._validate import check_engine, describe
from ._worlds import choice

_OPTIONS = re.compile(r"(?P<name>[^\[\]]+)(?P<options>(?:\[(?:lock|scope)=[a-z0-9-]+\])+)")


class Expectation(enum.Enum):
    CLEAN = "clean"  # must show no fatal anomaly
    BUGGY = "buggy"  # a known bug: the suite must reproduce it


@dataclass(frozen=True, slots=True)
class EngineEntry:
    name: str
    factory: Callable[[], Engine]
    expectation: Expectation
    summary: str
    source: str = ""


def _corpus_entry(engine: type[ReferenceEngine]) -> EngineEntry:
    doc = " ".join((engine.__doc__ or "").strip().split("\n\n")[0].split())  # first paragraph
    title = doc.split(":", 1)[-1].strip().rstrip(".") if ":" in doc else doc
    summary = f"class {getattr(engine, 'race_class', '?')}: {title}"
    return EngineEntry(
        engine.name, engine, Expectation.BUGGY, summary, getattr(engine, "source", "")
    )


BUILTIN_ENGINES: dict[str, EngineEntry] = {
    "reference": EngineEntry(
        "reference",
        ReferenceEngine,
        Expectation.CLEAN,
        "read-through main store, provider+profile lock, re-read under lock, atomic write",
    ),
    "broker": EngineEntry(
        "broker",
        BrokeredEngine,
        Expectation.CLEAN,
        "broker layout: one agent refreshes, the others wait for it and only read",
    ),
    **{engine.name: _corpus_entry(engine) for engine in CORPUS},
}


def load_engine(spec: str, *, hang_after: float = DEFAULT_HANG_AFTER) -> EngineEntry:
    """A built-in engine by name, or any engine by ``module:attribute``; ``[lock=...]`` too.

    A ``module:attribute`` engine is checked in a one-agent run first, which
    may take ``hang_after`` seconds of real time before it counts as a hang.
    """
    options = _OPTIONS.fullmatch(spec)
    if options is not None:
        chosen = dict(re.findall(r"\[(lock|scope)=([a-z0-9-]+)\]", options["options"]))
        entry = with_lock(
            load_engine(options["name"], hang_after=hang_after),
            chosen.get("lock", ""),
            chosen.get("scope", ""),
        )
        if entry.name != spec:  # options repeated or out of order: one spelling replays
            raise EngineLoadError(f"engine {spec!r}: write it {entry.name!r}")
        return entry
    if spec in BUILTIN_ENGINES:
        return BUILTIN_ENGINES[spec]
    if ":" not in spec:
        known = ", ".join(sorted(BUILTIN_ENGINES))
        raise EngineLoadError(
            f"unknown engine {spec!r}: use one of {known}, or module:attribute for your own"
        )
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise EngineLoadError(f"engine {spec!r}: write it module:attribute, e.g. my_engine:Engine")
    _import_from_here()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):  # the module itself
            raise EngineLoadError(
                f"cannot import {module_name!r} for engine {spec!r}: no such module "
                f"in {os.getcwd()} or on sys.path (run from the directory that holds it, "
                "or set PYTHONPATH)"
            ) from None
        raise EngineLoadError(f"engine {spec}: importing it raised {describe(exc)}") from None
    except Exception as exc:  # a mistake in the user's module: say where
        raise EngineLoadError(f"engine {spec}: importing it raised {describe(exc)}") from None
    target = getattr(module, attribute, None)
    if target is None:
        raise EngineLoadError(f"module {module_name!r} has no attribute {attribute!r}")
    factory: Callable[[], Engine] = target if isinstance(target, type) else (lambda: target)
    check_engine(
        spec, factory, hang_after=hang_after
    )  # before any search: constructible, a flow, works alone
    return EngineEntry(spec, factory, Expectation.CLEAN, f"user engine {spec}")


def _import_from_here() -> None:
    """Make the current directory importable, as ``python -m`` and pytest do.

    The ``tokenrace`` script's own directory heads ``sys.path``, not the one
    it runs in; without this a replay line printed for ``my_engine:Engine``
    would not work as pasted in the directory that holds ``my_engine.py``.
    """
    here = os.getcwd()
    if not any(os.path.abspath(entry or os.curdir) == here for entry in sys.path):
        sys.path.insert(0, here)


def with_lock(entry: EngineEntry, lock: str, scope: str) -> EngineEntry:
    """The engine built with another lock kind or scope; refused if it takes none."""
    factory = entry.factory
    if not (isinstance(factory, type) and issubclass(factory, ReferenceEngine)):
        raise ConformanceError(f"engine {entry.name!r} does not take a lock or scope")
    params = inspect.signature(factory).parameters
    options: dict[str, Any] = {}
    if lock:
        if "lock" not in params:
            raise ConformanceError(f"engine {entry.name!r} has a fixed lock")
        options["lock"] = choice(LockKind, lock, "lock")
    if scope:
        if "scope" not in params:
            raise ConformanceError(f"engine {entry.name!r} has a fixed scope")
        options["scope"] = choice(LockScope, scope, "scope")
    name = entry.name + "".join(f"[{key}={getattr(v, 'value', v)}]" for key, v in options.items())
    return dataclasses.replace(entry, name=name, factory=functools.partial(factory, **options))
