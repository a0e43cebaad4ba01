"""Named scenarios: bug reports as worlds the simulator can run.

``headline`` is the OpenClaw 2026.4.26 report (openclaw/openclaw#74055): a
gateway with five agents on one ChatGPT login, each agent dir holding a copy
of main's ``auth-profiles.json``, strict one-time rotation and OpenAI's error
dialect, every agent asking for a token at boot and again as the access token
expires, twice.
"""

from __future__ import annotations

from pathlib import Path

from fake_oauth_server import Policy
from simulator import AgentSpec, StoreLayout, WorldSpec

from ._errors import UnknownScenario
from ._scenario_files import builtin_scenarios, load_scenario_file
from ._worlds import GeneratedWorld

HEADLINE_AGENTS = ("atlas", "axon", "nova", "nexis", "lumi")


def headline() -> WorldSpec:
    lifetime = Policy.preset("openai").access_token_lifetime
    turns = (0.0, lifetime, 2 * lifetime)
    return WorldSpec(
        agents=tuple(AgentSpec(name, turns) for name in HEADLINE_AGENTS),
        policy=Policy.preset("openai"),
        layout=StoreLayout.MIRRORED,
    )


def small() -> WorldSpec:
    """The headline's shape at a size exhaustive search can cover: 3 agents, 1 expiry."""
    lifetime = Policy.preset("openai").access_token_lifetime
    return WorldSpec(
        agents=tuple(AgentSpec(name, (lifetime,)) for name in HEADLINE_AGENTS[:3]),
        policy=Policy.preset("openai"),
        layout=StoreLayout.MIRRORED,
    )


SCENARIOS = {"headline": headline, "small": small}


def load_scenario(name: str) -> WorldSpec:
    """A world by name (``headline``, ``small``, a shipped scenario file's name, a matrix
    cell's label such as ``shared/linux/2xproc/openai/crash``) or file path."""
    if name in SCENARIOS:
        return SCENARIOS[name]()
    generated = GeneratedWorld.parse(name)
    if generated is not None and not Path(name).is_file():
        return generated.world()
    if name.endswith(".toml") or Path(name).is_file():
        return load_scenario_file(Path(name)).world
    shipped = [load_scenario_file(path) for path in builtin_scenarios()]
    for scenario in shipped:
        if scenario.name == name:
            return scenario.world
    known = ", ".join([*SCENARIOS, *(scenario.name for scenario in shipped)])
    raise UnknownScenario(
        f"unknown scenario {name!r}: use a .toml file, a matrix label "
        f"(layout/os/NxPROC/policy/fault), or one of {known}"
    )
