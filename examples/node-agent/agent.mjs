#!/usr/bin/env node
// A MAOS agent in Node.js: the whole agent protocol (protos/maos/v1/agent_gateway.proto)
// with @grpc/grpc-js and @grpc/proto-loader, no generated code.
//
// Its "work" is deliberately trivial (it upper-cases the instructions) so the
// example is about the protocol: register, heartbeat, credit, progress with a
// checkpoint, output chunks, exactly one result or failure per assignment,
// cancel, drain, pause/resume, votes, acks and resuming after a reconnect.
// Replace `work()` below with your own logic.
//
// Usage:
//   node examples/node-agent/agent.mjs --server 127.0.0.1:7100 --type node-upper \
//        --capabilities text,upper --max-concurrency 4 [--token ...]
//
// Options (all optional):
//   --server HOST:PORT      control plane (env MAOS_SERVER_ADDRESS, default 127.0.0.1:7100)
//   --type NAME             agent type (default node-upper)
//   --capabilities a,b      capabilities (default text,upper)
//   --max-concurrency N     assignments at once, 1-1024 (default 4)
//   --labels k=v,k=v        free-form labels
//   --token TOKEN           API key or agent credential, sent as `authorization: Bearer`
//                           (env MAOS_TOKEN)
//   --join-token ID.SECRET  a join token, exchanged at the first Register for a credential of
//                           this agent, which it then uses to reconnect (env MAOS_JOIN_TOKEN)
//   --grace SECONDS         time running work gets to finish on SIGTERM/SIGINT (default 30)
//   --protos DIR            include dir holding maos/v1/*.proto (default: the repo's protos/)
//   --max-backoff SECONDS   longest reconnect delay (default 10)
//   --log-level LEVEL       debug, info, warn or error (default info)
//   --tls-ca FILE           connect over TLS, verifying the server with these CA certificates (PEM)
//                           (env MAOS_TLS_CA; without it: plaintext)
//   --tls-cert FILE         client certificate (PEM) for mutual TLS (env MAOS_TLS_CERT)
//   --tls-key FILE          its unencrypted private key (PEM) (env MAOS_TLS_KEY)
//   --tls-server-name NAME  name the server certificate must carry, if not the --server host
//                           (env MAOS_TLS_SERVER_NAME)
//
// Logs go to stderr. When registered it prints one line `registered agents/<id>` on
// stdout (again after every re-registration). Exit codes: 0 after a drain (Drain from
// the control plane, SIGTERM or SIGINT), 1 when the control plane refuses the agent
// (UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT), 2 on bad usage.
//
// Metadata this example understands (on the task; every assignment of the task sees it):
//   node_fail=permanent      fail with a permanent SubtaskFailure
//   node_fail=retryable      fail with a retryable SubtaskFailure while attempt < node_fail_attempts
//                            (default 1, i.e. only the first attempt fails)
//   node_delay_ms=N          take N ms (half before the checkpoint, half after)

import { randomUUID } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

export const SDK_VERSION = "0.1.0";

// The keepalive settings every MAOS agent uses (see the AgentGateway comment in the proto;
// the server accepts pings every 10 s or slower).
export const KEEPALIVE_OPTIONS = {
  "grpc.keepalive_time_ms": 30000,
  "grpc.keepalive_timeout_ms": 10000,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.http2.max_pings_without_data": 0,
};

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO_PROTOS = path.resolve(HERE, "..", "..", "protos");

// The npm packages resolve like any require() from this directory: node_modules here
// (after `npm install` in a standalone copy), then every parent's node_modules (the
// repository root's when run inside the repository). NODE_PATH works too.
const require = createRequire(import.meta.url);

function requirePackage(name) {
  try {
    return require(name);
  } catch (error) {
    if (error && error.code === "MODULE_NOT_FOUND") {
      process.stderr.write(
        `node-agent: cannot find ${name}: run \`npm install\` in ${HERE} (or \`npm ci\` at the repository root)\n`,
      );
      process.exit(2);
    }
    throw error;
  }
}

const grpc = requirePackage("@grpc/grpc-js");
const protoLoader = requirePackage("@grpc/proto-loader");

// Status codes after which reconnecting cannot help.
const FATAL_CODES = new Set([grpc.status.UNAUTHENTICATED, grpc.status.PERMISSION_DENIED, grpc.status.INVALID_ARGUMENT]);
const CODE_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([name, code]) => [code, name]));

// --- command line and logging -----------------------------------------------------------

/** Channel credentials and options from --tls-*: plaintext without --tls-ca, mutual TLS with --tls-cert/--tls-key. */
function tlsFromCommandLine(values) {
  const [ca, cert, key, name] = ["tls-ca", "tls-cert", "tls-key", "tls-server-name"].map((o) => values[o]);
  if (!ca) {
    if (cert || key || name) throw new Error("--tls-cert, --tls-key and --tls-server-name need --tls-ca");
    return { credentials: grpc.credentials.createInsecure(), channelOptions: {} };
  }
  if (Boolean(cert) !== Boolean(key)) throw new Error("mutual TLS needs both --tls-cert and --tls-key");
  const read = (option, file) => {
    try {
      return readFileSync(file);
    } catch (error) {
      throw new Error(`--${option} ${file}: ${error.code === "ENOENT" ? "no such file" : error.message}`);
    }
  };
  return {
    credentials: grpc.credentials.createSsl(read("tls-ca", ca), key ? read("tls-key", key) : null,
                                            cert ? read("tls-cert", cert) : null),
    channelOptions: name ? { "grpc.ssl_target_name_override": name } : {},
  };
}

function parseCommandLine(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      server: { type: "string", default: process.env.MAOS_SERVER_ADDRESS || process.env.MAOS_ADDR || "127.0.0.1:7100" },
      type: { type: "string", default: "node-upper" },
      capabilities: { type: "string", default: "text,upper" },
      "max-concurrency": { type: "string", default: "4" },
      labels: { type: "string", default: "" },
      token: { type: "string", default: process.env.MAOS_TOKEN || "" },
      "join-token": { type: "string", default: process.env.MAOS_JOIN_TOKEN || "" },
      grace: { type: "string", default: "30" },
      protos: { type: "string", default: REPO_PROTOS },
      "max-backoff": { type: "string", default: "10" },
      "log-level": { type: "string", default: "info" },
      "tls-ca": { type: "string", default: process.env.MAOS_TLS_CA || "" },
      "tls-cert": { type: "string", default: process.env.MAOS_TLS_CERT || "" },
      "tls-key": { type: "string", default: process.env.MAOS_TLS_KEY || "" },
      "tls-server-name": { type: "string", default: process.env.MAOS_TLS_SERVER_NAME || "" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  const list = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);
  const labels = {};
  for (const pair of list(values.labels)) {
    const at = pair.indexOf("=");
    if (at <= 0) throw new Error(`--labels: expected key=value, got ${JSON.stringify(pair)}`);
    labels[pair.slice(0, at)] = pair.slice(at + 1);
  }
  const maxConcurrency = Number(values["max-concurrency"]);
  if (!Number.isInteger(maxConcurrency) || maxConcurrency < 1 || maxConcurrency > 1024) {
    throw new Error("--max-concurrency must be an integer from 1 to 1024");
  }
  const grace = Number(values.grace);
  const maxBackoff = Number(values["max-backoff"]);
  if (!(grace >= 0) || !(maxBackoff > 0)) throw new Error("--grace must be >= 0 and --max-backoff > 0");
  if (!["debug", "info", "warn", "error"].includes(values["log-level"])) {
    throw new Error("--log-level must be debug, info, warn or error");
  }
  return {
    help: values.help,
    server: values.server,
    tls: tlsFromCommandLine(values),
    agentType: values.type,
    capabilities: list(values.capabilities),
    maxConcurrency,
    labels,
    token: values.token,
    joinToken: values["join-token"],
    graceMs: grace * 1000,
    protos: path.resolve(values.protos),
    maxBackoffMs: maxBackoff * 1000,
    logLevel: values["log-level"],
  };
}

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 };
let logThreshold = LEVELS.info;

function log(level, message) {
  if (LEVELS[level] >= logThreshold) {
    process.stderr.write(`${new Date().toISOString()} ${level.toUpperCase()} node-agent[${process.pid}]: ${message}\n`);
  }
}

// --- protocol helpers -----------------------------------------------------------------

export function loadGateway(protosDir) {
  const file = path.join(protosDir, "maos", "v1", "agent_gateway.proto");
  if (!existsSync(file)) throw new Error(`${file} not found (pass --protos <dir holding maos/v1/*.proto>)`);
  const definition = protoLoader.loadSync("maos/v1/agent_gateway.proto", {
    keepCase: true, // field names exactly as in the .proto (lease_epoch, not leaseEpoch)
    longs: String, // uint64 lease_epoch arrives as a string; echo it back unchanged
    enums: String,
    defaults: true,
    oneofs: true, // ConnectResponse.message names the member that is set
    includeDirs: [protosDir],
  });
  return grpc.loadPackageDefinition(definition).maos.v1.AgentGateway;
}

/** google.protobuf.Duration (seconds arrive as a string with longs: String) to milliseconds. */
function durationMs(d) {
  return d ? Number(d.seconds || 0) * 1000 + Number(d.nanos || 0) / 1e6 : 0;
}

function msDuration(ms) {
  const nanos = Math.max(0, Math.round(ms * 1e6));
  return { seconds: String(Math.floor(nanos / 1e9)), nanos: nanos % 1e9 };
}

/** The fencing token every report echoes: subtask name, attempt and lease epoch, unchanged. */
function copyRef(ref) {
  return { subtask: ref.subtask, attempt: ref.attempt, lease_epoch: String(ref.lease_epoch) };
}

/** One key per attempt's lease (a re-lease of the same subtask gets a new epoch). */
function refKey(ref) {
  return `${ref.subtask}#${ref.lease_epoch}`;
}

const ZERO_USAGE = {
  input_tokens: 0,
  output_tokens: 0,
  cache_read_input_tokens: 0,
  cache_creation_input_tokens: 0,
  cost_micros: 0,
  model_calls: 0,
};

/** Thrown by work() to end an assignment with a SubtaskFailure. */
export class AgentFailure extends Error {
  constructor(message, { retryable = false, errorType = "AgentFailure", retryAfterMs = 0 } = {}) {
    super(message);
    this.retryable = retryable;
    this.errorType = errorType;
    this.retryAfterMs = retryAfterMs;
  }
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

// --- the work ---------------------------------------------------------------------------

/**
 * The agent's logic: upper-case the instructions (a synthesis step upper-cases its inputs), then name
 * the results of the tasks its task depends on.
 *
 * `ctx.progress(fraction, message, checkpoint?)` and `ctx.output(text)` report as it goes;
 * `ctx.signal` aborts on Cancel. Return the output; throw AgentFailure to fail.
 */
async function work(assignment, ctx) {
  const metadata = assignment.metadata || {};
  const attempt = assignment.ref.attempt;
  if (metadata.node_fail === "permanent") {
    throw new AgentFailure("node agent was asked to fail (metadata node_fail=permanent)", {
      retryable: false,
      errorType: "PermanentError",
    });
  }
  const failingAttempts = Number(metadata.node_fail_attempts || 1);
  if (metadata.node_fail === "retryable" && attempt < failingAttempts) {
    throw new AgentFailure(`node agent was asked to fail attempt ${attempt} (metadata node_fail=retryable)`, {
      retryable: true,
      errorType: "RetryableError",
    });
  }
  const inputs = assignment.inputs || {};
  const source =
    assignment.kind === "SUBTASK_KIND_SYNTHESIS" && Object.keys(inputs).length
      ? Object.keys(inputs).sort().map((k) => inputs[k]).join("\n")
      : assignment.instructions;
  const delayMs = Math.max(0, Number(metadata.node_delay_ms || 0));
  const middle = Math.ceil(source.length / 2);

  // The first half, unless an earlier attempt checkpointed it.
  let firstHalf;
  if (assignment.resume_checkpoint !== undefined && assignment.resume_checkpoint !== null) {
    firstHalf = JSON.parse(Buffer.from(assignment.resume_checkpoint).toString("utf8")).first_half;
    log("info", `${assignment.ref.subtask}: attempt ${attempt} resumes from the checkpoint of an earlier attempt`);
  } else {
    await sleep(delayMs / 2, ctx.signal);
    firstHalf = source.slice(0, middle).toUpperCase();
  }
  ctx.progress(0.5, "half way", Buffer.from(JSON.stringify({ first_half: firstHalf }), "utf8"));
  ctx.output(firstHalf);
  await sleep(delayMs / 2, ctx.signal);
  const secondHalf = source.slice(middle).toUpperCase();
  ctx.output(secondHalf);
  // The final results of the tasks this task depends on (`depends_on`), bounded by the server.
  const builtOn = (assignment.dependency_results || []).map((d) => `\nbuilds on ${d.task}: ${d.output}`).join("");
  if (builtOn) ctx.output(builtOn);
  return firstHalf + secondHalf + builtOn;
}

/** How this agent votes: for the longest candidate. */
function chooseVote(request) {
  let best = null;
  for (const candidate of request.candidates || []) {
    if (best === null || (candidate.content || "").length > (best.content || "").length) best = candidate;
  }
  return best;
}

// --- the agent ----------------------------------------------------------------------------

export class NodeAgent {
  constructor(options) {
    this.options = options;
    this.Gateway = loadGateway(options.protos);
    this.agentName = ""; // agents/{id}, from Registered
    this.sessionId = "";
    this.credential = ""; // from Registered (after a join token): used when reconnecting
    this.heartbeatIntervalMs = 5000;
    this.running = new Map(); // refKey -> { ref, controller }
    this.unacked = new Map(); // refKey -> ConnectRequest (a result or failure not yet Committed)
    this.call = null;
    this.client = null;
    this.registered = false; // on the current stream
    this.heartbeatTimer = null;
    this.draining = false;
    this.drainStarted = false;
    this.paused = false;
    this.stopped = false;
    this.wakeUp = null;
    this.completed = 0;
  }

  // --- the connection loop ---

  /** Connect, work, reconnect on errors; resolves with the process exit code. */
  async run() {
    let failures = 0;
    while (!this.stopped) {
      const status = await this.session();
      if (this.stopped) break;
      const name = CODE_NAMES[status.code] || String(status.code);
      if (FATAL_CODES.has(status.code)) {
        log("error", `the control plane refused the agent: ${name}: ${status.details}`);
        return 1;
      }
      failures = status.registered ? 1 : failures + 1;
      const delay = Math.min(this.options.maxBackoffMs, 100 * 2 ** Math.min(failures, 10)) * (0.5 + Math.random() / 2);
      log("info", `stream to ${this.options.server} ended (${name}: ${status.details}); reconnecting in ${Math.round(delay)} ms`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, delay);
        this.wakeUp = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeUp = null;
    }
    return 0;
  }

  /** One stream: Register, then handle messages until the stream ends; resolves with its status. */
  session() {
    return new Promise((resolve) => {
      const metadata = new grpc.Metadata();
      const bearer = this.credential || this.options.token;
      if (bearer) metadata.set("authorization", `Bearer ${bearer}`);
      const { credentials, channelOptions } = this.options.tls;
      const client = new this.Gateway(this.options.server, credentials, { ...KEEPALIVE_OPTIONS, ...channelOptions });
      const call = client.Connect(metadata);
      this.client = client;
      this.call = call;
      this.registered = false;
      let wasRegistered = false;
      let done = false;
      const finish = (status) => {
        if (done) return;
        done = true;
        this.stopHeartbeats();
        if (this.call === call) {
          this.call = null;
          this.registered = false;
        }
        client.close();
        resolve({ code: status.code, details: status.details || "", registered: wasRegistered });
      };
      call.on("data", (response) => {
        try {
          if (response.message === "registered") wasRegistered = true;
          this.onMessage(response);
        } catch (error) {
          log("error", `handling ${response.message}: ${error.stack || error}`);
        }
      });
      call.on("status", finish);
      call.on("error", (error) => finish({ code: error.code ?? grpc.status.UNKNOWN, details: error.details || error.message }));
      call.write({ register: this.registerMessage() });
    });
  }

  registerMessage() {
    const register = {
      agent_type: this.options.agentType,
      capabilities: this.options.capabilities,
      max_concurrency: this.options.maxConcurrency,
      labels: this.options.labels,
      language: "node",
      sdk_version: SDK_VERSION,
      hostname: os.hostname(),
      pid: process.pid,
    };
    if (this.options.joinToken && !this.credential) register.join_token = this.options.joinToken;
    if (this.agentName) {
      // Reconnecting: resume the session with the work still held.
      register.resume = {
        agent: this.agentName,
        session_id: this.sessionId,
        assignments: [...this.running.values()].map((entry) => entry.ref),
      };
    }
    return register;
  }

  /** Write to the current stream (after Registered); false when there is none. */
  send(message) {
    if (this.call === null || !this.registered) return false;
    this.call.write(message);
    return true;
  }

  onMessage(response) {
    const kind = response.message;
    const body = response[kind];
    log("debug", `received ${kind}`);
    switch (kind) {
      case "registered":
        return this.onRegistered(body);
      case "assignment":
        return this.onAssignment(body);
      case "cancel":
        return this.abortWork(body.ref, `cancelled by the control plane: ${body.reason || "no reason given"}`);
      case "committed":
        for (const ref of body.refs) this.unacked.delete(refKey(ref));
        return undefined;
      case "ack":
        this.unacked.delete(refKey(body.ref));
        if (!body.accepted) {
          log("warn", `report on ${body.ref.subtask || body.proposal} rejected: ${body.reason}: ${body.message}`);
        } else {
          log("debug", `report on ${body.ref.subtask || body.proposal} acknowledged: ${body.message}`);
        }
        return undefined;
      case "vote_request":
        return this.onVoteRequest(body);
      case "drain":
        log("info", `drain requested (${body.reason || "no reason"}, grace ${durationMs(body.grace)} ms, exit ${body.exit})`);
        return void this.drain(body.grace ? durationMs(body.grace) : this.options.graceMs);
      case "pause":
        this.paused = true; // the control plane stops sending work; running work continues
        log("info", "paused by the control plane");
        return undefined;
      case "resume":
        this.paused = false;
        log("info", "resumed by the control plane");
        return undefined;
      case "state":
        log("debug", `shared-state response ${body.request_id} ignored (this example does not use shared state)`);
        return undefined;
      default:
        log("warn", `unknown message ${kind} ignored`);
        return undefined;
    }
  }

  onRegistered(registered) {
    const first = !this.agentName;
    this.agentName = registered.agent;
    this.sessionId = registered.session_id;
    if (registered.credential) this.credential = registered.credential;
    this.heartbeatIntervalMs = durationMs(registered.heartbeat_interval) || 5000;
    this.registered = true;
    for (const ref of registered.revoked) {
      this.abortWork(ref, "re-leased elsewhere while disconnected");
    }
    if (!first) {
      log("info", `resumed ${registered.resumed.length} assignment(s), ${registered.revoked.length} revoked`);
    }
    // Reports the control plane may not have seen before the stream broke: send them again
    // (a repeated result is acknowledged, not applied twice).
    for (const message of this.unacked.values()) this.send(message);
    log("info", `registered as ${this.agentName} (heartbeat every ${this.heartbeatIntervalMs} ms, lease ttl ${durationMs(registered.lease_ttl)} ms, server ${registered.server_version})`);
    process.stdout.write(`registered ${this.agentName}\n`);
    this.startHeartbeats();
  }

  // --- heartbeats ---

  heartbeatMessage() {
    const running = [...this.running.values()].map((entry) => entry.ref);
    return {
      heartbeat: {
        running,
        free_slots: this.draining ? 0 : Math.max(0, this.options.maxConcurrency - running.length),
        draining: this.draining,
      },
    };
  }

  startHeartbeats() {
    this.stopHeartbeats();
    this.send(this.heartbeatMessage()); // renews resumed leases at once
    this.heartbeatTimer = setInterval(() => this.send(this.heartbeatMessage()), this.heartbeatIntervalMs);
  }

  stopHeartbeats() {
    if (this.heartbeatTimer !== null) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
  }

  // --- assignments ---

  onAssignment(assignment) {
    const ref = copyRef(assignment.ref);
    const key = refKey(ref);
    if (this.running.has(key)) {
      log("warn", `duplicate assignment ${key} ignored`);
      return;
    }
    if (this.draining || this.running.size >= this.options.maxConcurrency) {
      const why = this.draining ? "the agent is draining" : "the agent has no free slot";
      log("warn", `refusing ${ref.subtask}: ${why}`);
      this.report(key, {
        failure: { ref, message: why, retryable: true, error_type: this.draining ? "Draining" : "NoFreeSlot", usage: ZERO_USAGE },
      });
      return;
    }
    const controller = new AbortController();
    this.running.set(key, { ref, controller });
    log("info", `assignment ${ref.subtask} attempt ${ref.attempt} epoch ${ref.lease_epoch}: ${assignment.title}`);
    this.execute(key, ref, assignment, controller.signal);
  }

  async execute(key, ref, assignment, signal) {
    let sequence = 0;
    const ctx = {
      signal,
      progress: (fraction, message, checkpoint) => {
        if (signal.aborted) return;
        const progress = { ref, fraction, message: message || "" };
        if (checkpoint !== undefined) progress.checkpoint = Buffer.from(checkpoint);
        this.send({ progress });
      },
      output: (text) => {
        if (!signal.aborted) this.send({ output: { ref, text, sequence: sequence++ } });
      },
    };
    let report;
    try {
      const output = await work(assignment, ctx);
      report = { result: { ref, output: String(output), usage: ZERO_USAGE, request_id: randomUUID() } };
    } catch (error) {
      if (signal.aborted) {
        log("info", `work on ${ref.subtask} stopped`);
        return; // cancelled (or revoked): report nothing
      }
      if (error instanceof AgentFailure) {
        report = {
          failure: {
            ref,
            message: error.message,
            retryable: error.retryable,
            error_type: error.errorType,
            retry_after: msDuration(error.retryAfterMs),
            usage: ZERO_USAGE,
          },
        };
      } else {
        // An unexpected bug in the work: permanent.
        log("error", `assignment ${ref.subtask} failed: ${error.stack || error}`);
        report = {
          failure: { ref, message: `${error.name}: ${error.message}`, retryable: false, error_type: error.name, usage: ZERO_USAGE },
        };
      }
    }
    if (signal.aborted) return; // cancelled while finishing: the result is not wanted
    this.running.delete(key);
    if (report.result) {
      this.completed += 1;
      log("info", `${ref.subtask} attempt ${ref.attempt} completed`);
    } else {
      const f = report.failure;
      log("info", `${ref.subtask} attempt ${ref.attempt} failed (${f.retryable ? "retryable" : "permanent"}, ${f.error_type}): ${f.message}`);
    }
    this.report(key, report);
  }

  /** Send a final report (result or failure) and keep it until Committed or a ReportAck. */
  report(key, message) {
    this.unacked.set(key, message);
    this.send(message); // when disconnected: sent again after the next Registered
    this.onIdleChange();
  }

  abortWork(ref, reason) {
    const key = refKey(ref);
    const entry = this.running.get(key);
    if (entry === undefined) {
      log("debug", `cancel for ${key}, which is not running here`);
      return;
    }
    this.running.delete(key);
    log("info", `cancelling ${ref.subtask} (attempt ${ref.attempt}): ${reason}`);
    entry.controller.abort(new Error(reason));
    this.onIdleChange();
  }

  // --- votes ---

  onVoteRequest(request) {
    const choice = chooseVote(request);
    if (choice === null) {
      log("warn", `vote request ${request.proposal} round ${request.round} has no candidates`);
      return;
    }
    log("info", `voting ${choice.id} in ${request.proposal} round ${request.round}`);
    this.send({
      vote: {
        proposal: request.proposal,
        candidate_id: choice.id,
        confidence: 0.9,
        rationale: `the longest candidate (${(choice.content || "").length} characters) covers the most`,
        round: request.round,
        request_id: randomUUID(),
      },
    });
  }

  // --- drain and exit ---

  onIdleChange() {
    if (this.idleWaiter && this.running.size === 0) this.idleWaiter();
  }

  /** Take no more work, give running work `graceMs`, then close the stream and stop. */
  async drain(graceMs) {
    this.draining = true;
    if (this.drainStarted) return;
    this.drainStarted = true;
    this.send(this.heartbeatMessage()); // draining: no new assignments
    if (this.running.size > 0) {
      log("info", `draining: waiting up to ${graceMs} ms for ${this.running.size} assignment(s)`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.idleWaiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.idleWaiter = null;
    }
    for (const [key, entry] of [...this.running]) {
      // Out of time: stop it and hand it back at once (its last checkpoint stays with the
      // control plane for the next attempt) instead of letting the lease run out.
      this.running.delete(key);
      entry.controller.abort(new Error("drained"));
      log("info", `drain grace over: handing ${entry.ref.subtask} back`);
      this.report(key, {
        failure: { ref: entry.ref, message: "the agent drained before finishing", retryable: true, error_type: "Drained", usage: ZERO_USAGE },
      });
    }
    // Give the control plane a moment to make the last reports durable (Committed).
    for (let i = 0; i < 100 && this.unacked.size > 0 && this.call !== null; i++) await sleep(20);
    if (this.unacked.size > 0) log("warn", `${this.unacked.size} report(s) not acknowledged before closing`);
    this.stop();
  }

  /** End the stream (half-close, so the control plane sees a clean goodbye) and stop reconnecting. */
  stop() {
    this.stopped = true;
    this.stopHeartbeats();
    if (this.wakeUp) this.wakeUp();
    const call = this.call;
    if (call !== null) {
      call.end();
      // The server ends its side when it sees ours; don't wait for ever.
      setTimeout(() => call.cancel(), 5000).unref();
    }
  }

  /** SIGTERM/SIGINT. */
  shutdown() {
    if (this.drainStarted) {
      log("warn", "second signal: exiting now");
      process.exit(1);
    }
    log("info", "signal received: draining");
    if (this.call === null || !this.registered) {
      this.drainStarted = true;
      this.draining = true;
      this.stop(); // not connected: nothing to hand over
      return;
    }
    void this.drain(this.options.graceMs);
  }
}

// --- main ---------------------------------------------------------------------------------

async function main() {
  let options;
  try {
    options = parseCommandLine(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`node-agent: ${error.message}\n`);
    return 2;
  }
  if (options.help) {
    process.stdout.write(
      "usage: node agent.mjs --server HOST:PORT [--type node-upper] [--capabilities text,upper]\n" +
        "       [--max-concurrency 4] [--labels k=v,...] [--token T] [--join-token ID.SECRET]\n" +
        "       [--grace 30] [--protos DIR] [--max-backoff 10] [--log-level info]\n" +
        "       [--tls-ca FILE [--tls-cert FILE --tls-key FILE] [--tls-server-name NAME]]\n",
    );
    return 0;
  }
  logThreshold = LEVELS[options.logLevel];
  const agent = new NodeAgent(options);
  for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => agent.shutdown());
  log("info", `connecting to ${options.server} as ${options.agentType} (${options.capabilities.join(",")}, max ${options.maxConcurrency})`);
  const code = await agent.run();
  log("info", `exiting with ${code} after ${agent.completed} completed assignment(s)`);
  return code;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then(
    (code) => process.exit(code),
    (error) => {
      process.stderr.write(`node-agent: ${error.stack || error}\n`);
      process.exit(1);
    },
  );
}
