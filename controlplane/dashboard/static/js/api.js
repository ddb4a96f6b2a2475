// The HTTP API as the dashboard calls it: with the user's key, from the same origin.
//
// The key lives in sessionStorage (gone when the tab closes) and travels only in the
// Authorization header: never in a URL, so it stays out of history, logs and referrers.
// Streams (WatchTask, WatchEvents, TailLogs) are Server-Sent Events read with fetch,
// because EventSource cannot send an Authorization header.

const KEY = "maos.key";

export const session = {
  get key() { return sessionStorage.getItem(KEY) || ""; },
  set key(value) {
    if (value) sessionStorage.setItem(KEY, value);
    else sessionStorage.removeItem(KEY);
  },
};

/** A refused call: the google.rpc.Status the server answered, with its HTTP status. */
export class ApiError extends Error {
  constructor(httpStatus, status) {
    super(status?.message || `HTTP ${httpStatus}`);
    this.httpStatus = httpStatus;
    this.code = status?.code ?? 0;
    this.details = status?.details || [];
    const info = this.details.find((d) => (d["@type"] || "").endsWith("google.rpc.ErrorInfo"));
    this.reason = info ? info.reason : "";
  }

  /** A sentence for people: what went wrong and, for refusals, that it was the server's decision. */
  get explanation() {
    if (this.httpStatus === 401) return `Not signed in: ${this.message}`;
    if (this.httpStatus === 403) return `Permission denied: ${this.message}`;
    if (this.httpStatus === 404) return `Not found: ${this.message}`;
    if (this.httpStatus === 429) return `Too many requests: ${this.message}`;
    if (this.httpStatus === 0) return this.message;
    return this.message;
  }
}

function headers(extra = {}) {
  const out = { ...extra };
  if (session.key) out.Authorization = `Bearer ${session.key}`;
  return out;
}

async function failure(response) {
  let status = null;
  try { status = await response.json(); } catch { /* not JSON: a proxy's page */ }
  const error = new ApiError(response.status, status);
  if (response.status === 401) window.dispatchEvent(new CustomEvent("maos:unauthenticated", { detail: error }));
  return error;
}

/** `?a=1&b=x&b=y` from an object (arrays repeat, empty values are left out). */
export function query(params = {}) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item !== undefined && item !== null && item !== "") search.append(name, String(item));
    }
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** One unary call; the parsed JSON answer, or an ApiError. */
export async function call(method, path, body) {
  const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }), cache: "no-store" };
  if (body !== undefined) init.body = JSON.stringify(body);
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, { message: `The control plane cannot be reached (${err.message}).` });
  }
  if (!response.ok) throw await failure(response);
  const text = await response.text();
  return text ? JSON.parse(text) : {};
}

export const get = (path, params) => call("GET", path + query(params));
export const post = (path, body = {}) => call("POST", path, body);

/**
 * Read one Server-Sent Events stream until it ends; `onMessage(data, id)` for each message.
 * Resolves with the last event id seen; rejects with an ApiError (a refusal, or an `event: error`).
 */
export async function stream(path, onMessage, { signal, lastEventId = "", onOpen } = {}) {
  const extra = { Accept: "text/event-stream" };
  if (lastEventId) extra["Last-Event-ID"] = lastEventId;
  const response = await fetch(path, { headers: headers(extra), signal, cache: "no-store" });
  if (!response.ok) throw await failure(response);
  if (onOpen) onOpen();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let last = lastEventId;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return last;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message", id = "", data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue; // keepalive comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const content = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event = content;
        else if (field === "id") id = content;
        else if (field === "data") data.push(content);
      }
      if (!data.length) continue;
      const message = JSON.parse(data.join("\n"));
      if (event === "error") throw new ApiError(500, message);
      if (id) last = id;
      onMessage(message, id);
    }
  }
}

/**
 * Follow a stream for as long as `signal` is not aborted: reconnect after a cut, resuming
 * after the last event seen (Last-Event-ID). `onState("live" | "reconnecting" | "error", error)`.
 * A refusal (401, 403, 404, 400) is not retried; a stream that ends while `done()` is true
 * (a finished task's watch) is not reopened: onState("ended").
 */
export async function follow(path, onMessage, { signal, onState = () => {}, done = () => false } = {}) {
  let lastEventId = "";
  let delay = 500;
  while (!signal?.aborted) {
    try {
      lastEventId = await stream(path, onMessage, {
        signal, lastEventId, onOpen: () => { delay = 500; onState("live"); },
      });
      if (signal?.aborted) return;
      if (done()) { onState("ended"); return; }
      onState("reconnecting");
    } catch (err) {
      if (signal?.aborted) return;
      if (err instanceof ApiError && [400, 401, 403, 404].includes(err.httpStatus)) {
        onState("error", err);
        return;
      }
      onState("reconnecting", err);
    }
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, delay);
      signal?.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
    });
    delay = Math.min(delay * 2, 10000);
  }
}
