"""Which engines the suite knows, what it expects of each, and loading any other.

An engine is any object with ``access_token(ctx) -> Flow[str]``.  Built-in
engines are named (``reference``, ``mirrored``); any other Python engine is
loaded by ``module:attribute`` (a class is instantiated with no arguments).
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Callable
from dataclasses import dataclass

from refresh_engine import BrokeredEngine, ReferenceEngine
from simulator import Engine

from ._corpus import CORPUS
from ._errors import EngineLoadError


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
    doc = (engine.__doc__ or "").strip().splitlines()[0]
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


def load_engine(spec: str) -> EngineEntry:
    """A built-in engine by name, or any engine by ``module:attribute``."""
    if spec in BUILTIN_ENGINES:
        return BUILTIN_ENGINES[spec]
    if ":" not in spec:
        known = ", ".join(sorted(BUILTIN_ENGINES))
        raise EngineLoadError(
            f"unknown engine {spec!r}: use one of {known}, or module:attribute for your own"
        )
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EngineLoadError(f"cannot import {module_name!r} for engine {spec!r}: {exc}") from None
    target = getattr(module, attribute, None)
    if target is None:
        raise EngineLoadError(f"module {module_name!r} has no attribute {attribute!r}")
    factory: Callable[[], Engine] = target if isinstance(target, type) else (lambda: target)
    probe = factory()
    if not callable(getattr(probe, "access_token", None)):
        raise EngineLoadError(
            f"{spec} is not an engine: it needs an access_token(ctx) method returning a flow"
        )
    return EngineEntry(spec, factory, Expectation.CLEAN, f"user engine {spec}")
