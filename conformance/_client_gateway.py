"""One run of a client that is a server for every agent: OpenClaw's gateway.

The headline report (openclaw/openclaw#74055) is five agents inside one
gateway process.  A ``[client.gateway]`` scenario starts the program once
(``openclaw gateway run``), waits until it answers ``GET ready`` with 200,
then sends each agent's turn as an HTTP request (``POST trigger`` with the
``body`` template, ``{agent}`` filled): OpenClaw's OpenAI-compatible
``/v1/chat/completions`` runs a normal gateway agent turn for
``model: "openclaw/<agent>"``, and the turn resolves the agent's login first.

One process, one token endpoint: the refresh is a ``fetch`` deep inside
``@mariozechner/pi-ai`` that does not know the agent, so the preload sends
every refresh to ``/a/gateway/oauth/token`` and the audit names ``gateway``.
``--order`` is the order the agents are prompted in (all at once, one
thread each, started in that order); the harness lets the held refreshes
through one at a time as they come.  The run ends when every agent's store
no longer holds the seeded token and nothing has been held for ``QUIET``
seconds, or when every turn has been answered, or at ``timeout``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from fake_oauth_server import RunningServer, fingerprint, redact, serve_in_thread

from ._client_diagram import STATE_DIR, ClientEventKind, StoreEnd, build
from ._client_oracle import CommandRun, judge
from ._client_run import ClientRun, ClientRunError, _kill, _Run, policy_of
from ._client_scenarios import GATEWAY, ClientScenario, GatewaySpec, fill, fill_json, fill_value
from ._client_stores import fresher, held_refresh_token, store_files
from ._isolation import loopback_only

#: Seconds with nothing held, after every agent's store changed, that end a run.
QUIET = 1.5
#: Seconds a stopped gateway gets to exit after SIGTERM.
STOP_GRACE = 5.0


def run_gateway(scenario: ClientScenario, order: tuple[str, ...], executable: str) -> ClientRun:
    """Start the gateway once, prompt every agent in ``order``, release refreshes as they come."""
    with (
        loopback_only() as isolation,
        serve_in_thread(policy_of(scenario), hold_timeout=scenario.timeout + 30) as running,
        tempfile.TemporaryDirectory(prefix="tokenrace-gateway-") as temp,
    ):
        run = _GatewayRun(scenario, running, Path(temp).resolve(), executable)
        try:
            run.seed_stores()
            run.control.hold(True)
            run.start_gateway()
            run.prompt(order)
            run.release_as_they_come()
            run.control.hold(False)
            result = run.finish_gateway(order)
        finally:
            run.stop_gateway()
    return ClientRun(result, isolation.describe(), tuple(run.released), run.diagram)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _GatewayRun(_Run):
    def __init__(
        self, scenario: ClientScenario, running: RunningServer, root: Path, executable: str
    ) -> None:
        super().__init__(scenario, running, root, executable)
        assert scenario.gateway is not None
        self.spec: GatewaySpec = scenario.gateway
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.gateway: subprocess.Popen[bytes] | None = None
        self.output = root / "gateway.out"
        self.stopped = False  # by the harness, at the end (its exit status then says nothing)
        self.answers: dict[str, str] = {}
        self.threads: list[threading.Thread] = []

    def values(self, agent: str) -> dict[str, str]:
        return super().values(agent) | {"gateway_port": str(self.port)}

    def config_extra(self) -> dict[str, Any]:
        values = self.values(GATEWAY)
        config = fill_value(json.loads(self.spec.config), values, "[client.gateway] config")
        return config if isinstance(config, dict) else {}

    def start_gateway(self) -> None:
        values = self.values(GATEWAY)
        for name in ("home", "agent_dir"):
            Path(values[name]).mkdir(parents=True, exist_ok=True)
        argv = [fill(self.executable, values, "[client] program")]
        argv += [fill(arg, values, "[client] args") for arg in self.scenario.args]
        with self.output.open("wb") as sink:  # a file, not a pipe: a chatty server never blocks
            try:
                self.gateway = subprocess.Popen(
                    argv,
                    env=self.environment(GATEWAY),
                    cwd=values["agent_dir"],
                    stdin=subprocess.DEVNULL,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as error:
                raise ClientRunError(f"cannot start {argv[0]}: {error.strerror or error}") from None
        started = time.monotonic()
        deadline = started + self.scenario.arrival
        while time.monotonic() < deadline:
            if self.gateway.poll() is not None:
                raise ClientRunError(
                    f"the gateway exited {self.gateway.returncode} before it was ready: "
                    f"{self.last_words()}"
                )
            if self.answers_ready():
                self.log.append(f"gateway ready: GET {self.spec.ready} -> 200")
                return
            time.sleep(0.3)
        raise ClientRunError(
            f"the gateway did not answer GET {self.spec.ready} within "
            f"{self.scenario.arrival:g}s; a slower one needs a larger [client] arrival"
        )

    def answers_ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.base + self.spec.ready, timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, ValueError):
            return False

    def last_words(self) -> str:
        try:
            text = self.output.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no output)"
        lines = [line for line in redact(text).splitlines() if line.strip()] or ["(no output)"]
        return lines[-1].replace(str(self.root), "{state_dir}")[-200:]

    def prompt(self, order: tuple[str, ...]) -> None:
        """One agent turn per agent, all at once, started in ``order``."""
        for agent in order:
            body = fill_json(self.spec.body, self.values(agent)).encode("utf-8")
            thread = threading.Thread(target=self.turn, args=(agent, body), daemon=True)
            thread.start()
            self.threads.append(thread)

    def turn(self, agent: str, body: bytes) -> None:
        request = urllib.request.Request(
            self.base + self.spec.trigger,
            data=body,
            headers={"content-type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.scenario.timeout + 30) as response:
                self.answers[agent] = str(response.status)
        except urllib.error.HTTPError as error:
            self.answers[agent] = str(error.code)
        except (OSError, ValueError) as error:
            self.answers[agent] = type(error).__name__

    def release_as_they_come(self) -> None:
        deadline = time.monotonic() + self.scenario.timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            held = self.control.held(at_least=1, timeout=0.2)
            if held:
                request = held[0]
                self.released.append(GATEWAY)
                self.event(ClientEventKind.HELD, GATEWAY, request)
                status = self.control.release(request["id"], wait=True)
                self.event(ClientEventKind.RELEASED, GATEWAY, request, status)
                number = len(self.released)
                self.log.append(f"release #{number}: {GATEWAY} {request['token_fp']} -> {status}")
                quiet_since = time.monotonic()
                continue
            if self.gateway is not None and self.gateway.poll() is not None:
                self.log.append(f"the gateway exited {self.gateway.returncode} during the run")
                return
            if all(not thread.is_alive() for thread in self.threads):
                self.log.append("every agent's turn was answered")
                return
            if self.stores_moved() and time.monotonic() - quiet_since >= QUIET:
                self.log.append("every agent's store moved on from the seeded login")
                return
        self.log.append(f"stopped after {self.scenario.timeout:g}s with turns still running")

    def unmoved(self) -> list[str]:
        """The agents whose own store still holds the seeded refresh token."""
        found = []
        for agent in self.scenario.agents:
            env = {agent: self.environment(agent)}
            own = store_files(self.scenario.store, env, mirrored=self.scenario.mirrored)[-1]
            if held_refresh_token(self.scenario.store, own) == self.seeded:
                found.append(agent)
        return found

    def stores_moved(self) -> bool:
        """Does every agent's own store hold a refresh token other than the seeded one?"""
        return not self.unmoved()

    def check_reached(self, answered: set[str]) -> None:
        """A turn that never got to its login says nothing: fail the run loudly instead."""
        refused = any(record.kind.value == "rejected" for record in self.running.server.audit)
        late = [agent for agent in self.unmoved() if agent not in answered]
        if late and not refused:
            raise ClientRunError(
                f"{', '.join(late)}: the turn reached neither its login nor an answer within "
                f"{self.scenario.timeout:g}s; a slower machine needs a larger [client] timeout"
            )

    def finish_gateway(self, order: tuple[str, ...]) -> CommandRun:
        answered = set(self.answers)  # before the stop, which ends the turns still running
        code = self.stop_gateway()
        self.check_reached(answered)
        for agent in order:
            said = self.answers.get(agent, "") if agent in answered else "unanswered"
            self.log.append(f"turn {agent} -> {said}")
        server = self.running.server
        said = "" if self.stopped else self.last_words()
        outputs = {GATEWAY: (0 if self.stopped else code, "", said)}
        anomalies = list(judge(server, outputs, self.control.now(), []))
        anomalies += self.check_stores()
        for record in server.audit:
            reason = f" ({record.reason})" if record.reason else ""
            self.log.append(
                f"audit {record.client_id} {record.kind.value} {record.token_kind.value} "
                f"{record.token_fp} {record.family}/g{record.generation}{reason}"
            )
        ended = "gateway stopped by the harness" if self.stopped else f"gateway exited {code}"
        self.log.append(ended)
        files = self.store_files()
        ends = []
        for path in files:
            token = held_refresh_token(self.scenario.store, path)
            state = server.token_state(token) if token else "missing"
            shown = fingerprint(token) if token else "-"
            where = str(path).replace(str(self.root), STATE_DIR)
            read = self.scenario.read_through and path != files[0] and fresher(files[0], path)
            note = "; main's is read instead" if read and state != "live" else ""
            self.log.append(f"store {where} ends holding {shown} ({state}{note})")
            ends.append(StoreEnd(where, shown if token else "", state))
        self.event(ClientEventKind.EXITED, GATEWAY, status=outputs[GATEWAY][0], note=ended)
        # one lane: every agent's refresh comes from the gateway, through one endpoint
        self.diagram = build((GATEWAY,), self.events, server.audit, ends, anomalies)
        return CommandRun(
            order=order,
            killed="",
            exit_codes=((GATEWAY, outputs[GATEWAY][0]),),
            anomalies=tuple(anomalies),
            log="\n".join(self.log) + "\n",
        )

    def stop_gateway(self) -> int:
        """SIGTERM the gateway's process group, SIGKILL it after ``STOP_GRACE``; its status."""
        gateway = self.gateway
        if gateway is None:
            return 0
        if gateway.poll() is None:
            self.stopped = True
            _terminate(gateway)
            with contextlib.suppress(subprocess.TimeoutExpired):
                gateway.wait(timeout=STOP_GRACE)
        _kill(gateway)  # and whatever it started (npm, helpers), even once it has exited
        gateway.wait()
        for thread in self.threads:
            thread.join(timeout=STOP_GRACE)  # their connections closed with the gateway
        return gateway.returncode


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process's group (the gateway and its children); on Windows, the process."""
    if sys.platform == "win32":
        process.terminate()
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        process.terminate()
