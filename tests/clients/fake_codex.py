"""A stand-in for the Codex CLI's refresh path, for harness tests without the real client.

Like ``codex debug models``: reads ``$CODEX_HOME/auth.json``, refreshes once
when ``last_refresh`` is more than eight days old (JSON body, one fixed
client_id for every process), writes the new tokens back, and exits 0 even
when refused.  It records the network interfaces it can see in the file
``FAKE_CODEX_SEEN`` names, so a test can tell an isolated run.
``FAKE_CODEX_SLEEP`` delays the start (seconds).
"""

import datetime
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

time.sleep(float(os.environ.get("FAKE_CODEX_SLEEP", "0")))
seen = sorted(name for _, name in socket.if_nameindex())
Path(os.environ["FAKE_CODEX_SEEN"]).write_text(json.dumps(seen))
home = Path(os.environ["CODEX_HOME"])
auth = json.loads((home / "auth.json").read_text())
stamp = auth["last_refresh"].replace("Z", "+00:00")
age = datetime.datetime.now(datetime.UTC) - datetime.datetime.fromisoformat(stamp)
if age < datetime.timedelta(days=8):
    sys.exit(0)
body = {
    "client_id": "app_same_for_everyone",
    "grant_type": "refresh_token",
    "refresh_token": auth["tokens"]["refresh_token"],
}
request = urllib.request.Request(
    os.environ["CODEX_REFRESH_TOKEN_URL_OVERRIDE"],
    data=json.dumps(body).encode(),
    headers={"content-type": "application/json"},
)
try:
    with urllib.request.urlopen(request, timeout=30) as response:
        fresh = json.load(response)
except urllib.error.HTTPError:
    sys.exit(0)  # refused: Codex says nothing and exits 0
auth["tokens"].update(
    {k: fresh[k] for k in ("id_token", "access_token", "refresh_token") if k in fresh}
)
auth["last_refresh"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
(home / "auth.json").write_text(json.dumps(auth))
