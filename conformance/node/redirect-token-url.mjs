// tokenrace: send a Node program's requests for a hard-coded token URL to the fake server.
//
//   node --import /path/to/redirect-token-url.mjs program.mjs
//
// TOKENRACE_TOKEN_URL is where they go (a client scenario sets it to the agent's
// own endpoint, "{token_url}"); TOKENRACE_REDIRECT_FROM lists the URLs to
// redirect, comma-separated (default: OpenAI's, which OpenClaw's
// @mariozechner/pi-ai hard-codes as TOKEN_URL).  Only global fetch is wrapped:
// a program that sends its token request some other way (http.request, an
// undici Client of its own) needs another hook.  Nothing else changes.
const target = process.env.TOKENRACE_TOKEN_URL;
const from = new Set(
  (process.env.TOKENRACE_REDIRECT_FROM || "https://auth.openai.com/oauth/token")
    .split(",")
    .map((url) => url.trim())
    .filter(Boolean),
);

function urlOf(input) {
  if (typeof input === "string") return input;
  if (input instanceof URL) return input.href;
  return input && typeof input.url === "string" ? input.url : "";
}

if (target && typeof globalThis.fetch === "function") {
  const original = globalThis.fetch;
  globalThis.fetch = function fetch(input, init) {
    if (from.has(urlOf(input))) {
      input = input instanceof Request ? new Request(target, input) : target;
    }
    return original.call(this, input, init);
  };
}
