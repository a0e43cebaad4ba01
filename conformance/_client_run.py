"""One run of a real client, once per agent, against the fake server.

What ``check --command`` does (``_command``), for programs nobody wrote for
tokenrace: each agent gets its own token endpoint (``/a/<agent>/oauth/token``),
so the held requests, the release order, the kill and the anomalies name
agents whatever ``client_id`` the program sends; the login is seeded in the
client's own store format; the program's arguments and environment are
templates; every agent has a private HOME; the run happens where only
loopback is reachable (``_isolation``).

The release rule is what makes a run repeatable: before each release the
harness waits until every agent still due to refresh has a request held,
then lets through the first of them in the order.  An agent that does not
arrive within ``arrival`` seconds fails the run loudly (``ClientRunError``)
rather than letting a slow start change the result.  The history names
agents and fingerprints only (no request ids, times, ports or paths), so one
order run twice gives the same history.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fake_oauth_server import (
    ControlClient,
    Policy,
    RunningServer,
    account_id,
    agent_path,
    fingerprint,
    redact,
    serve_in_thread,
)

from ._checker import Anomaly, AnomalyKind, Severity
from ._client_scenarios import ClientScenario, fill, template_values
from ._client_stores import (
    Login,
    fresher,
    held_refresh_token,
    seed,
    seed_config,
    store_files,
)
from ._clients import lookup, program, stage_dir
from ._command import CommandRun, _judge, _killed_request_committed, _unavoidable
from ._errors import ConformanceError
from ._isolation import loopback_only

USER = "user"
#: Where anything that ignores NO_PROXY would go instead of the network: a closed loopback port.
NOWHERE = "http://127.0.0.1:9"
#: What of the caller's environment a client gets (nothing that could carry a credential).
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "SYSTEMROOT")


class ClientRunError(ConformanceError):
    """A run could not be carried out as the scenario says (an agent never arrived...)."""


@dataclass(frozen=True, slots=True)
class ClientRun:
    """A ``CommandRun`` plus whether it was isolated."""

    run: CommandRun
    isolation: str
    released: tuple[str, ...]  # whose refresh went through when: the order, unless a lock chose


def resolve_program(scenario: ClientScenario) -> str:
    """The program to start: the installed pinned client, or the scenario's own path."""
    if scenario.pinned:
        return str(program(lookup(scenario.program)))
    return scenario.program


def policy_of(scenario: ClientScenario) -> Policy:
    return Policy.preset(scenario.policy).replace(**dict(scenario.policy_overrides))


def run_client(
    scenario: ClientScenario, order: tuple[str, ...], *, kill: str = "", executable: str = ""
) -> ClientRun:
    """Start the client once per agent and let their refreshes through in ``order``.

    A scenario with a ``[client.gateway]`` starts one server for every agent instead
    (``_client_gateway``); ``order`` is then the order its agents are prompted.
    """
    executable = executable or resolve_program(scenario)
    if scenario.gateway is not None:
        from ._client_gateway import run_gateway  # it builds on _Run below

        if kill:
            raise ClientRunError("--kill: a gateway is one process for every agent")
        return run_gateway(scenario, order, executable)
    with (
        loopback_only() as isolation,
        serve_in_thread(policy_of(scenario), hold_timeout=scenario.timeout + 30) as running,
        tempfile.TemporaryDirectory(prefix="tokenrace-client-") as temp,
    ):
        root = Path(temp).resolve()
        run = _Run(scenario, running, root, executable)
        try:
            run.seed_stores()
            run.control.hold(True)
            for agent in order:
                run.start(agent)
            run.release_in(order, kill)
            run.control.hold(False)
            result = run.finish(order, kill)
        finally:
            run.stop()
    return ClientRun(result, isolation.describe(), tuple(run.released))


class _Run:
    def __init__(
        self, scenario: ClientScenario, running: RunningServer, root: Path, executable: str
    ) -> None:
        self.scenario = scenario
        self.running = running
        self.control: ControlClient = running.control
        self.root = root
        self.executable = executable
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.log: list[str] = []
        self.killed = ""
        self.released: list[str] = []
        self.seeded = ""  # the refresh token every store starts with
        used = [lookup(key) for key in scenario.uses]
        self.used = {client.name: str(program(client)) for client in used}
        if scenario.pinned:
            used.append(lookup(scenario.program))
        #: plugin stage dirs installed ahead (OpenClaw), by the variable that names them
        self.stages = {c.stage_env: str(stage_dir(c)) for c in used if c.stage_env}

    def values(self, agent: str) -> dict[str, str]:
        url = self.running.base_url + agent_path(agent, "/oauth/token")
        values = template_values(self.scenario, state_dir=self.root, agent=agent, token_url=url)
        return values | self.used

    def environment(self, agent: str) -> dict[str, str]:
        values = self.values(agent)
        env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
        env |= {
            "HOME": values["home"],
            "HTTP_PROXY": NOWHERE,
            "HTTPS_PROXY": NOWHERE,
            "ALL_PROXY": NOWHERE,
            "NO_PROXY": "127.0.0.1,localhost",
        }
        env |= self.stages
        for name, template in self.scenario.env:
            env[name] = fill(template, values, f"[client] env {name}")
        return env

    def seed_stores(self) -> None:
        server = self.running.server
        now = self.control.now()
        pair = server.seed_grant(now, user=USER, client_id=self.scenario.name)
        access = server.access_jwt(pair, USER) if server.policy.jwt_access_tokens else ""
        login = Login(
            pair, access or pair.access_token, server.id_token(USER, now), account_id(USER), now
        )
        for path in self.store_files():
            seed(self.scenario.store, path, login, self.running.base_url)
        envs = {a: self.environment(a) for a in self.scenario.agents}
        seed_config(self.scenario.store, envs, self.config_extra())
        self.seeded = pair.refresh_token

    def config_extra(self) -> dict[str, Any] | None:
        """Settings merged into the client's config file (a gateway's own)."""
        return None

    def store_files(self) -> list[Path]:
        envs = {agent: self.environment(agent) for agent in self.scenario.agents}
        return store_files(self.scenario.store, envs, mirrored=self.scenario.mirrored)

    def start(self, agent: str) -> None:
        values = self.values(agent)
        for name in ("home", "agent_dir"):
            Path(values[name]).mkdir(parents=True, exist_ok=True)
        argv = [fill(self.executable, values, "[client] program")]
        argv += [fill(arg, values, "[client] args") for arg in self.scenario.args]
        try:
            self.processes[agent] = subprocess.Popen(
                argv,
                env=self.environment(agent),
                cwd=values["agent_dir"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # the oracle is the audit and the store
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group: a kill takes its children too
            )
        except OSError as error:
            raise ClientRunError(f"cannot start {argv[0]}: {error.strerror or error}") from None

    def release_in(self, order: tuple[str, ...], kill: str) -> None:
        due = list(order)  # agents whose refresh is still to be let through, in release order
        released = 0
        while due:
            held = self.gather(due)
            if not held:
                break
            agent = next(name for name in due if name in held)
            request = held[agent]
            due.remove(agent)
            if agent == kill and not self.killed:
                self.killed = agent
                _kill(self.processes[agent])
                self.processes[agent].communicate()
                self.log.append(f"SIGKILL {agent} while {request['token_fp']} was held")
                status = self.control.release(request["id"], wait=True)
                self.log.append(f"release {agent} {request['token_fp']} -> {status}, unread")
                self.log.append(f"restart {agent}")
                self.start(agent)
                due.append(agent)
                continue
            released += 1
            self.released.append(agent)
            status = self.control.release(request["id"], wait=True)
            self.log.append(f"release #{released}: {agent} {request['token_fp']} -> {status}")

    def gather(self, due: list[str]) -> dict[str, dict[str, Any]]:
        """The first held request of each agent, once every live due agent has one held."""
        deadline = time.monotonic() + self.scenario.arrival
        while True:
            for agent in [a for a in due if self.processes[a].poll() is not None]:
                due.remove(agent)
                code = self.processes[agent].returncode
                self.log.append(f"{agent} exited {code} before its refresh was let through")
            held: dict[str, dict[str, Any]] = {}
            for request in self.control.held(at_least=0, timeout=0):
                held.setdefault(request["client_id"], request)
            missing = [agent for agent in due if agent not in held]
            expected = min(self.scenario.overlap or len(due), len(due))
            if len(due) - len(missing) >= expected:
                return held
            if time.monotonic() > deadline:
                raise ClientRunError(
                    f"{', '.join(missing)} did not reach the token endpoint within "
                    f"{self.scenario.arrival:g}s (held: {', '.join(sorted(held)) or 'none'}); "
                    "a client that refreshes later needs a larger [client] arrival"
                )
            self.control.held(at_least=len(held) + 1, timeout=0.1)

    def finish(self, order: tuple[str, ...], kill: str) -> CommandRun:
        deadline = time.monotonic() + self.scenario.timeout
        stuck = []
        outputs: dict[str, tuple[int, str, str]] = {}
        for agent, process in self.processes.items():
            try:
                raw = process.communicate(timeout=max(0.1, deadline - time.monotonic()))[1]
            except subprocess.TimeoutExpired:
                _kill(process)
                raw = process.communicate()[1]
                stuck.append(agent)
            text = redact(raw.decode("utf-8", "replace")).replace(str(self.root), "{state_dir}")
            outputs[agent] = (process.returncode, "", text)  # stdout is not a token here
        server = self.running.server
        anomalies = list(_judge(server, outputs, self.control.now(), stuck))
        anomalies += self.check_stores()
        if self.killed and not server.policy.grace and _killed_request_committed(server, kill):
            anomalies = [_unavoidable(anomaly, self.killed) for anomaly in anomalies]
        for record in server.audit:
            reason = f" ({record.reason})" if record.reason else ""
            self.log.append(
                f"audit {record.client_id} {record.kind.value} {record.token_kind.value} "
                f"{record.token_fp} {record.family}/g{record.generation}{reason}"
            )
        for agent, (code, _, err) in outputs.items():
            said = f"; stderr: {err.strip()[-200:]}" if code != 0 and err.strip() else ""
            self.log.append(f"{agent} exited {code}{said}")
        for path in self.store_files():
            token = held_refresh_token(self.scenario.store, path)
            state = server.token_state(token) if token else "missing"
            shown = fingerprint(token) if token else "-"
            where = str(path).replace(str(self.root), "{state_dir}")
            self.log.append(f"store {where} ends holding {shown} ({state})")
        return CommandRun(
            order=order,
            killed=self.killed,
            exit_codes=tuple((agent, code) for agent, (code, _, _) in outputs.items()),
            anomalies=tuple(anomalies),
            log="\n".join(self.log) + "\n",
        )

    def check_stores(self) -> list[Anomaly]:
        """The store the client left: a refresh token the server no longer takes strands it."""
        found = []
        files = self.store_files()
        for path in files:
            token = held_refresh_token(self.scenario.store, path)
            state = self.running.server.token_state(token) if token else "missing"
            if self.scenario.read_through and path != files[0] and fresher(files[0], path):
                continue  # the agent reads main's login, not this older copy
            if state != "live":
                name = str(path.relative_to(self.root))
                shown = fingerprint(token) if token else "no refresh token"
                found.append(
                    Anomaly(
                        AnomalyKind.AGENT_STRANDED,
                        Severity.FATAL,
                        "store",
                        (),
                        f"{name} ends holding {shown} ({state}): whoever reads it next "
                        "needs a new login",
                    )
                )
        return found

    def stop(self) -> None:
        for process in self.processes.values():
            _kill(process)  # and whatever it started (npm, helpers), even once it has exited
            process.wait()
            if process.stderr is not None:
                process.stderr.close()


def _kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process and every process of its group (a client's own children)."""
    if sys.platform == "win32":  # no process groups to signal: the process alone
        if process.poll() is None:
            process.kill()
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        if process.poll() is None:
            process.kill()
