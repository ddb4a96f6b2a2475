// A model-backed agent in Node.js takes part in model pacing through its stream alone:
// Register, then ModelPermitRequest / ModelPermit and ModelCallOutcome (protos/maos/v1/agent_gateway.proto),
// with @grpc/grpc-js and @grpc/proto-loader on protos/ (no generated code).
//
// Steps: a permit at once; a 529 outcome with retry-after 2 s and rate-limit headers; a permit asked
// with max_wait 50 ms (not granted: the breaker is open); a bad model name (refused with the reason).
// Prints what it received as JSON on stdout; any error exits non-zero.
//
// Usage: node tests/contract/model_permits.mjs HOST:PORT

import path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

import { KEEPALIVE_OPTIONS, loadGateway } from "../../examples/node-agent/agent.mjs";

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const require = createRequire(path.join(REPO_ROOT, "package.json"));
const grpc = require("@grpc/grpc-js");

const Gateway = loadGateway(path.join(REPO_ROOT, "protos"));
const client = new Gateway(process.argv[2], grpc.credentials.createInsecure(), KEEPALIVE_OPTIONS);
const stream = client.Connect();
const waiting = new Map(); // message kind -> resolve of the next one
const queued = new Map();

stream.on("data", (response) => {
  const kind = response.message;
  const resolve = waiting.get(kind);
  if (resolve) {
    waiting.delete(kind);
    resolve(response[kind]);
  } else {
    queued.set(kind, [...(queued.get(kind) || []), response[kind]]);
  }
});
stream.on("error", (error) => {
  if (error.code !== grpc.status.CANCELLED) {
    process.stderr.write(`stream failed: ${error.message}\n`);
    process.exit(1);
  }
});

function next(kind) {
  const early = queued.get(kind);
  if (early && early.length) return Promise.resolve(early.shift());
  return new Promise((resolve, reject) => {
    waiting.set(kind, resolve);
    setTimeout(() => reject(new Error(`no ${kind} within 15 s`)), 15000).unref();
  });
}

const seconds = (s) => ({ seconds: Math.floor(s), nanos: Math.round((s % 1) * 1e9) });

async function permit(requestId, model, maxWait) {
  stream.write({ permit_request: { request_id: requestId, model, input_tokens: 900, output_tokens: 4096,
                                   max_wait: seconds(maxWait) } });
  return next("permit");
}

async function main() {
  stream.write({ register: { agent_type: "node-model", capabilities: ["node-model-only"], max_concurrency: 1,
                             language: "node", sdk_version: "0.1.0", backing: "AGENT_BACKING_MODEL" } });
  const registered = await next("registered");
  const first = await permit(1, "claude-node-test", 1);
  stream.write({ model_outcome: { permit_id: first.permit_id, status_code: 529, retry_after: seconds(2),
                                  headers: { "anthropic-ratelimit-requests-limit": "60" },
                                  input_tokens: 0, output_tokens: 0 } });
  const held = await permit(2, "claude-node-test", 0.05);
  const refused = await permit(3, "not a model", 1);
  stream.end();
  client.close();
  process.stdout.write(JSON.stringify({ registered, first, held, refused }) + "\n");
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
