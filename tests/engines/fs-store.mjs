// A refresh engine in JavaScript whose bugs are file races, for `check --command --fs`.
// It follows the harness's contract (conformance/_command.py): read the store,
// refresh if the access token is about to expire, save, print the access token;
// exit 3 when a new login is needed (an unreadable store means no login).
// The lock is a lock file created exclusively ("wx"), retried every 10 ms.
//   (no flag)          correct: re-read under the lock, write a temp file, rename it over
//   --in-place         class 8: rewrite the store in place (truncate, then write) under
//                      the lock, while first reads take no lock: a torn read
//   --stale-snapshot   class 7: refresh with the token of the snapshot read before the lock
import fs from "node:fs";
import path from "node:path";

const env = process.env;
const store = env.TOKENRACE_STORE;
const key = `${env.TOKENRACE_PROVIDER}:${env.TOKENRACE_PROFILE}`;
const lockFile = path.join(env.TOKENRACE_STATE_DIR, "store.lock");
const inPlace = process.argv.includes("--in-place");
const staleSnapshot = process.argv.includes("--stale-snapshot");
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const fresh = (credential) => credential.expires - Date.now() / 1000 > 300;

function read() {
  try {
    return JSON.parse(fs.readFileSync(store, "utf8"));
  } catch (error) {
    if (error instanceof SyntaxError) return null; // empty or half written: no login
    throw error;
  }
}

async function lock() {
  for (;;) {
    try {
      fs.closeSync(fs.openSync(lockFile, "wx"));
      return;
    } catch (error) {
      if (error.code !== "EEXIST") throw error;
      await sleep(10);
    }
  }
}

function save(document) {
  const text = JSON.stringify(document);
  if (inPlace) {
    fs.writeFileSync(store, text);
    return;
  }
  const temp = `${store}.${env.TOKENRACE_AGENT}.tmp`;
  fs.writeFileSync(temp, text);
  fs.renameSync(temp, store);
}

function relogin() {
  console.error("the store holds no readable login: a new login is needed");
  return 3;
}

async function main() {
  const first = read(); // no lock: most runs find a fresh token and stop here
  if (first === null) return relogin();
  if (fresh(first.profiles[key])) {
    console.log(first.profiles[key].access);
    return 0;
  }
  await lock();
  try {
    const document = staleSnapshot ? first : read();
    if (document === null) return relogin();
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
    credential.expires = Math.floor(Date.now() / 1000) + tokens.expires_in;
    save(document);
    console.log(credential.access);
    return 0;
  } finally {
    fs.unlinkSync(lockFile);
  }
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(String(error));
    process.exit(1);
  },
);
