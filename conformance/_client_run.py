"""One run of a real client, once per agent, against the fake server.

What ``check --command`` does (``_command``), for programs nobody wrote for
tokenrace: each agent gets its own token endpoint (``/a/<agent>/oauth/token``),
so the held requests, the release order, the kill and the anomalies name
agents whatever ``client_id`` the program sends; the login is seeded in the
client's own store format; the program's arguments and environment are
templates; every agent has a private HOME; the run happens where only
loopback is reachable (``_isolation``).

The release rule is what makes a run repeatable: before each release the
harness waits until every agent still due to refresh has a request held
(or ``overlap`` of them, for a client whose own lock admits fewer), then
lets through the first of them in the order.  An agent that does not
arrive within ``arrival`` seconds fails the run loudly (``ClientRunError``)
rather than letting a slow start change the result.  ``check --command``
knows nothing of the program's lock, so it runs with ``settle``: once a
request is held, the others get ``settle`` seconds to join it, and then
what is held is released (a program kept out by a lock never comes).  The history names
agents and fingerprints only (no request ids, times, ports or paths), so one
order run twice gives the same history.

A scenario's ``faults`` strike chosen releases with the fake server's faults,
and its ``hold`` keeps each request at the door that long before its release
(``_release_faults``); both stretch the run's deadlines by ``hold`` per agent.
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
    FaultKind,
    Policy,
    RunningServer,
    account_id,
    agent_path,
    fingerprint,
    redact,
    serve_in_thread,
)

from ._checker import Anomaly, AnomalyKind, Severity
from ._client_diagram import STATE_DIR, ClientEvent, ClientEventKind, StoreEnd, build
from ._client_oracle import CommandRun, judge, killed_request_committed, unavoidable
from ._client_scenarios import ClientScenario, fill, template_values
from ._client_stores import (
    Login,
    fresher,
    held_refresh_token,
    judged,
    protocol_env,
    seed,
    seed_config,
    store_files,
)
from ._clients import lookup, program, stage_dir
from ._diagram import Diagram
from ._errors import ConformanceError
from ._isolation import loopback_only
from ._release_faults import ReleaseFault

USER = "user"
#: Where anything that ignores NO_PROXY would go instead of the network: a closed loopback port.
NOWHERE = "http://127.0.0.1:9"
#: What of the caller's environment a client gets (nothing that could carry a credential).
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "SYSTEMROOT")
#: ``kill=KILL_FIRST``: SIGKILL whichever agent is let through first (who holds the lock, say).
KILL_FIRST = "*"


class ClientRunError(ConformanceError):
    """A run could not be carried out as the scenario says (an agent never arrived...)."""


@dataclass(frozen=True, slots=True)
class ClientRun:
    """A ``CommandRun`` plus whether it was isolated, and its sequence diagram."""

    run: CommandRun
    isolation: str
    released: tuple[str, ...]  # whose refresh went through when: the order, unless a lock chose
    diagram: Diagram | None = None


def resolve_program(scenario: ClientScenario) -> str:
    """The program to start: the installed pinned client, or the scenario's own path."""
    if scenario.pinned:
        return str(program(lookup(scenario.program)))
    return scenario.program


def policy_of(scenario: ClientScenario) -> Policy:
    return Policy.from_json(dict(scenario.policy_overrides), base=Policy.preset(scenario.policy))


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
        serve_in_thread(
            policy_of(scenario), hold_timeout=scenario.timeout + 30 + _slack(scenario)
        ) as running,
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
    return ClientRun(result, isolation.describe(), tuple(run.released), run.diagram)


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
        # with settle: the whole run's; holds stretch it
        self.deadline = time.monotonic() + scenario.timeout + _slack(scenario)
        self.faults = {fault.release: fault for fault in scenario.faults}
        self.faulted: dict[str, ReleaseFault] = {}  # agent -> the fault its refresh got
        self.events: list[ClientEvent] = []  # what the diagram shows, as it happened
        self.held: set[str] = set()  # ids of the held requests drawn already
        self.early: set[str] = set()  # agents that exited before their refresh went through
        self.diagram: Diagram | None = None
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
        if self.scenario.inherit_env:
            env = dict(os.environ)
        else:
            env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
            env["HOME"] = values["home"]
        env |= {
            "HTTP_PROXY": NOWHERE,
            "HTTPS_PROXY": NOWHERE,
            "ALL_PROXY": NOWHERE,
            "NO_PROXY": "127.0.0.1,localhost",
        }
        env |= self.stages
        templates = protocol_env(self.scenario.store) | dict(self.scenario.env)
        for name, template in templates.items():
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
                cwd=fill(self.scenario.cwd, values, "[client] cwd"),
                stdin=subprocess.DEVNULL,
                # the oracle is the audit and the store, and the token printed where one is
                stdout=subprocess.PIPE if self.scenario.stdout_token else subprocess.DEVNULL,
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
            for name in due:  # in the release order, not the arrival's: one diagram per order
                if name in held and held[name]["id"] not in self.held:
                    self.held.add(held[name]["id"])
                    self.event(ClientEventKind.HELD, name, held[name])
            agent = next(name for name in due if name in held)
            request = held[agent]
            due.remove(agent)
            if kill in (agent, KILL_FIRST) and not self.killed:
                self.killed = agent
                _kill(self.processes[agent])
                self.processes[agent].communicate()
                self.log.append(f"SIGKILL {agent} while {request['token_fp']} was held")
                self.event(ClientEventKind.KILLED, agent, request)
                status = self.control.release(request["id"], wait=True)
                self.log.append(f"release {agent} {request['token_fp']} -> {status}, unread")
                self.event(
                    ClientEventKind.RELEASED, agent, request, status, "released after the kill"
                )
                self.log.append(f"restart {agent}")
                self.event(ClientEventKind.RESTARTED, agent)
                self.start(agent)
                due.append(agent)
                continue
            released += 1
            self.released.append(agent)
            self.wait_hold(request)
            fault = self.faults.get(released)
            if fault is not None:  # the next request the server handles is this one
                self.faulted[agent] = fault
                self.control.set_faults([fault.fault])
                self.log.append(f"fault {fault} on release #{released}: {fault.describe()}")
            status = self.control.release(request["id"], wait=True)
            if fault is not None:
                self.control.clear_faults()
            self.log.append(f"release #{released}: {agent} {request['token_fp']} -> {status}")
            self.event(ClientEventKind.RELEASED, agent, request, status)

    def event(
        self,
        kind: ClientEventKind,
        agent: str,
        request: dict[str, Any] | None = None,
        status: int | None = 0,
        note: str = "",
    ) -> None:
        request = request or {}
        request_id, token_fp = str(request.get("request_id", "")), str(request.get("token_fp", ""))
        self.events.append(ClientEvent(kind, agent, request_id, token_fp, status or 0, note))

    def wait_hold(self, request: dict[str, Any]) -> None:
        """Keep ``request`` at the door until it has waited ``hold`` seconds."""
        time.sleep(max(0.0, self.scenario.hold - float(request["waited"])))

    def gather(self, due: list[str]) -> dict[str, dict[str, Any]]:
        """The first held request of each agent, once every live due agent has one held.

        With ``settle``: once something is held, what is held after ``settle``
        more seconds; nothing held by the run's deadline gives ``{}`` (the
        processes still running are then judged stuck).
        """
        deadline = time.monotonic() + self.scenario.arrival
        settled = 0.0  # when the settle window ends, once something is held
        while True:
            for agent in [a for a in due if self.processes[a].poll() is not None]:
                due.remove(agent)
                self.early.add(agent)
                code = self.processes[agent].returncode
                self.log.append(f"{agent} exited {code} before its refresh was let through")
            if not due:
                return {}
            held: dict[str, dict[str, Any]] = {}
            for request in self.control.held(at_least=0, timeout=0):
                held.setdefault(request["client_id"], request)
            missing = [agent for agent in due if agent not in held]
            expected = min(self.scenario.overlap or len(due), len(due))
            if len(due) - len(missing) >= expected:
                return held
            now = time.monotonic()
            if self.scenario.settle:
                if any(agent in held for agent in due):
                    settled = settled or now + self.scenario.settle
                    if now >= settled:
                        return held
                if now > self.deadline:
                    return {}
            elif now > deadline:
                raise ClientRunError(
                    f"{', '.join(missing)} did not reach the token endpoint within "
                    f"{self.scenario.arrival:g}s (held: {', '.join(sorted(held)) or 'none'}); "
                    "a client that refreshes later needs a larger [client] arrival"
                )
            self.control.held(at_least=len(held) + 1, timeout=0.1)

    def finish(self, order: tuple[str, ...], kill: str) -> CommandRun:
        # settle: one deadline for the whole run; otherwise ``timeout`` after the last release
        deadline = time.monotonic() + self.scenario.timeout + _slack(self.scenario)
        if self.scenario.settle:
            deadline = self.deadline
        stuck = []
        outputs: dict[str, tuple[int, str, str]] = {}
        for agent, process in self.processes.items():
            try:
                raw_out, raw_err = process.communicate(
                    timeout=max(0.1, deadline - time.monotonic())
                )
            except subprocess.TimeoutExpired:
                _kill(process)
                raw_out, raw_err = process.communicate()
                stuck.append(agent)
            text = redact(raw_err.decode("utf-8", "replace")).replace(str(self.root), "{state_dir}")
            printed = (raw_out or b"").decode("utf-8", "replace")  # a token, where printed
            outputs[agent] = (process.returncode, printed, text)
        if stuck:
            self.log.append(f"{', '.join(stuck)} still running at the deadline: killed")
        server = self.running.server
        faulted = {  # a drop committed the rotation: judged as a loss below, not excused
            agent: f"after a {fault.describe()} injected into its refresh"
            for agent, fault in self.faulted.items()
            if fault.fault.kind is not FaultKind.DROP
        }
        if self.scenario.hold:  # a slow server: who never got a refresh through gave up on it
            slow = f"while refreshes were held {self.scenario.hold:g}s at a slow server"
            for agent in self.processes:
                if agent not in self.released and agent != self.killed:
                    faulted.setdefault(agent, slow)
        anomalies = list(judge(server, outputs, self.control.now(), stuck, faulted))
        anomalies += self.check_stores()
        committed = self.killed and killed_request_committed(server, self.killed)
        if committed and not server.policy.grace:
            anomalies = [unavoidable(anomaly, self.killed) for anomaly in anomalies]
        dropped = [a for a, f in self.faulted.items() if f.fault.kind is FaultKind.DROP]
        if dropped and not server.policy.grace:  # the rotated token never reached anyone
            cause = f"a drop fault lost {dropped[0]}'s committed refresh"
            anomalies = [unavoidable(anomaly, dropped[0], cause) for anomaly in anomalies]
        for record in server.audit:
            reason = f" ({record.reason})" if record.reason else ""
            self.log.append(
                f"audit {record.client_id} {record.kind.value} {record.token_kind.value} "
                f"{record.token_fp} {record.family}/g{record.generation}{reason}"
            )
        for agent, (code, out, err) in outputs.items():
            last = out.strip().splitlines()[-1] if out.strip() else ""
            printed = f", printed {fingerprint(last)}" if last else ""
            said = f"; stderr: {err.strip()[-200:]}" if code != 0 and err.strip() else ""
            self.log.append(f"{agent} exited {code}{printed}{said}")
            note = "before its refresh went through" if agent in self.early else ""
            note = "when the harness killed it: it never finished" if agent in stuck else note
            self.event(ClientEventKind.EXITED, agent, status=code, note=note)
        ends = []
        for path in self.store_files():
            token = held_refresh_token(self.scenario.store, path)
            state = server.token_state(token) if token else "missing"
            shown = fingerprint(token) if token else "-"
            where = str(path).replace(str(self.root), STATE_DIR)
            self.log.append(f"store {where} ends holding {shown} ({state})")
            ends.append(StoreEnd(where, fingerprint(token) if token else "", state))
        self.diagram = build(self.scenario.agents, self.events, server.audit, ends, anomalies)
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
        for path in judged(self.scenario.store, files):
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


def _slack(scenario: ClientScenario) -> float:
    """How much a hold can stretch a run: each agent's refresh held that long, in turn."""
    return scenario.hold * len(scenario.agents)


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
