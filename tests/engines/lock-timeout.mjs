// A refresh engine for `tokenrace check --command` with a lock-wait timeout, in JavaScript.
// The contract is refresh.mjs's (see conformance/_command.py), with two habits:
//   --lock-wait SECONDS   how long to wait for the mkdir lock (default 5)
//   --proceed             when the wait runs out, refresh anyway, without the lock: the bug
//                         (without it: give up, exit 1, "lock busy", honestly)
//   --retry-unlocked      after a 5xx or 429, let go of the lock, wait half a second and
//                         retry with the refresh token read before: the bug of a retry
//                         outside the lock (another agent may have rotated it meanwhile)
// and honest server errors: a 5xx, a 429 or a network failure exits 1 with what the
// server said (try again later); only a refused grant (4xx) exits 3 (new login needed).
import fs from "node:fs";
import path from "node:path";

const env = process.env;
const store = env.TOKENRACE_STORE;
const key = `${env.TOKENRACE_PROVIDER}:${env.TOKENRACE_PROFILE}`;
const argv = process.argv.slice(2);
const option = (name, fallback) => {
  const at = argv.indexOf(name);
  return at >= 0 ? Number(argv[at + 1]) : fallback;
};
const lockWait = option("--lock-wait", 5);
const proceed = argv.includes("--proceed");
const retryUnlocked = argv.includes("--retry-unlocked");
const lockDir = path.join(env.TOKENRACE_STATE_DIR, "locks", key.replace(/[^A-Za-z0-9_.-]/g, "_") + ".lockdir");
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function lock() {
  fs.mkdirSync(path.dirname(lockDir), { recursive: true });
  const deadline = Date.now() + lockWait * 1000;
  while (Date.now() < deadline) {
    try {
      fs.mkdirSync(lockDir);
      return true;
    } catch (error) {
      if (error.code !== "EEXIST") throw error;
      await sleep(25);
    }
  }
  return false;
}

const read = () => JSON.parse(fs.readFileSync(store, "utf8"));
const fresh = (credential) => credential.expires - Date.now() / 1000 > 300;

function save(document) {
  const temp = `${store}.${env.TOKENRACE_AGENT}.tmp`;
  fs.writeFileSync(temp, JSON.stringify(document), { mode: 0o600 });
  fs.renameSync(temp, store);
}

async function refresh(credential) {
  let response;
  try {
    response = await fetch(env.TOKENRACE_TOKEN_URL, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "refresh_token",
        refresh_token: credential.refresh,
        client_id: env.TOKENRACE_CLIENT_ID,
      }),
    });
  } catch (error) {
    console.error(`refresh failed: ${error.cause?.code ?? error}; try again later`);
    return 1;
  }
  if (response.status >= 500 || response.status === 429) {
    const after = response.headers.get("retry-after");
    console.error(`refresh failed: HTTP ${response.status}${after ? `, retry after ${after}s` : ""}; try again later`);
    return 1;
  }
  if (response.status !== 200) {
    console.error(`refresh refused: HTTP ${response.status}`);
    return 3;
  }
  const tokens = await response.json();
  credential.access = tokens.access_token;
  credential.refresh = tokens.refresh_token;
  credential.expires = Date.now() / 1000 + tokens.expires_in;
  return 0;
}

async function main() {
  if (fresh(read().profiles[key])) {
    console.log(read().profiles[key].access);
    return 0;
  }
  let locked = await lock();
  if (!locked && !proceed) {
    console.error(`lock busy for ${lockWait}s; try again later`);
    return 1;
  }
  try {
    const document = read();
    const credential = document.profiles[key];
    if (fresh(credential)) {
      console.log(credential.access);
      return 0;
    }
    let code = await refresh(credential);
    if (code === 1 && retryUnlocked) {
      if (locked) fs.rmdirSync(lockDir);
      locked = false;
      await sleep(500);
      code = await refresh(credential);
    }
    if (code !== 0) return code;
    save(document);
    console.log(credential.access);
    return 0;
  } finally {
    if (locked) fs.rmdirSync(lockDir);
  }
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(String(error));
    process.exit(1);
  },
);
