// A refresh engine in JavaScript, for `tokenrace check --command`.
// It follows the harness's contract (see conformance/_command.py): read the
// store, refresh if the access token is about to expire, save atomically,
// print the access token; exit 3 when a new login is needed.
// `--no-lock` drops the lock (a mkdir lock, as Node's proper-lockfile takes):
// the bug the harness must find.
import fs from "node:fs";
import path from "node:path";

const env = process.env;
const store = env.TOKENRACE_STORE;
const key = `${env.TOKENRACE_PROVIDER}:${env.TOKENRACE_PROFILE}`;
const useLock = !process.argv.includes("--no-lock");
const lockDir = path.join(env.TOKENRACE_STATE_DIR, "locks", key.replace(/[^A-Za-z0-9_.-]/g, "_") + ".lockdir");
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function lock() {
  for (let attempt = 0; attempt < 1200; attempt++) {
    try {
      fs.mkdirSync(lockDir);
      return;
    } catch (error) {
      if (error.code !== "EEXIST") throw error;
      await sleep(25);
    }
  }
  throw new Error("gave up waiting for the lock");
}

const read = () => JSON.parse(fs.readFileSync(store, "utf8"));
const fresh = (credential) => credential.expires - Date.now() / 1000 > 300;

function save(document) {
  const temp = `${store}.${env.TOKENRACE_AGENT}.tmp`;
  fs.writeFileSync(temp, JSON.stringify(document), { mode: 0o600 });
  fs.renameSync(temp, store);
}

async function main() {
  if (fresh(read().profiles[key])) {
    console.log(read().profiles[key].access);
    return 0;
  }
  if (useLock) await lock();
  try {
    const document = read();
    const credential = document.profiles[key];
    if (fresh(credential)) {
      console.log(credential.access);
      return 0;
    }
    const response = await fetch(env.TOKENRACE_TOKEN_URL, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "refresh_token",
        refresh_token: credential.refresh,
        client_id: env.TOKENRACE_CLIENT_ID,
      }),
    });
    if (response.status !== 200) {
      console.error(`refresh refused: HTTP ${response.status}`);
      return 3;
    }
    const tokens = await response.json();
    credential.access = tokens.access_token;
    credential.refresh = tokens.refresh_token;
    credential.expires = Date.now() / 1000 + tokens.expires_in;
    save(document);
    console.log(credential.access);
    return 0;
  } finally {
    if (useLock) fs.rmdirSync(lockDir);
  }
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(String(error));
    process.exit(1);
  },
);
