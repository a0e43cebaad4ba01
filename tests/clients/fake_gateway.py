"""A stand-in for OpenClaw's gateway, for harness tests without the real client.

``python fake_gateway.py PORT MODE`` serves ``GET /v1/models`` (200) and
``POST /v1/chat/completions`` with ``model: "openclaw/<agent>"``: the turn
refreshes the agent's expired ``openai-codex:default`` login at
``$TOKENRACE_TOKEN_URL``, one turn at a time (a lock, as OpenClaw's queue).
MODE ``copy``: each agent refreshes its own copy in ``agents/<agent>/agent``
(the shape of openclaw/openclaw#74055: every copy spends the same token).
MODE ``read-through``: under the lock it adopts main's login when main's is
fresher, and mirrors its own refresh into main (clean).
"""

import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PORT, MODE = int(sys.argv[1]), sys.argv[2]
STATE = Path(os.environ["OPENCLAW_STATE_DIR"])
PROFILE = "openai-codex:default"
LOCK = threading.Lock()


def store(agent: str) -> Path:
    return STATE / "agents" / agent / "agent" / "auth-profiles.json"


def read(agent: str) -> dict:
    return json.loads(store(agent).read_text())["profiles"][PROFILE]


def write(agent: str, profile: dict) -> None:
    document = json.loads(store(agent).read_text())
    document["profiles"][PROFILE] = profile
    store(agent).write_text(json.dumps(document))


def turn(agent: str) -> int:
    with LOCK:
        mine = read(agent)
        if MODE == "read-through" and read("main")["expires"] > mine["expires"]:
            write(agent, read("main"))
            return 200
        body = {"grant_type": "refresh_token", "refresh_token": mine["refresh"]}
        request = urllib.request.Request(
            os.environ["TOKENRACE_TOKEN_URL"],
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                fresh = json.load(response)
        except urllib.error.HTTPError as error:
            return error.code
        mine.update(
            access=fresh["access_token"],
            refresh=fresh["refresh_token"],
            expires=int(time.time() * 1000) + 3_600_000,
        )
        write(agent, mine)
        if MODE == "read-through":
            write("main", mine)
        return 200


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.end_headers()

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        agent = json.loads(self.rfile.read(length))["model"].split("/", 1)[1]
        self.send_response(turn(agent))
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
