// Small DOM helpers and the formats every view shares (statuses by their CLI names, times, cost).

/** An element: h("a", {href: "#/tasks", class: "x"}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An SVG element (same calling convention as h). */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

/** Replace the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** `TASK_STATUS_RUNNING` -> `RUNNING`: the names the CLI prints. */
export function enumName(value, prefix) {
  if (!value) return "";
  return String(value).startsWith(prefix) ? String(value).slice(prefix.length) : String(value);
}

/** A status badge (its colour is in the CSS, by name; the text says it too). */
export function badge(value, prefix) {
  const name = enumName(value, prefix) || "UNKNOWN";
  return h("span", { class: `badge s-${name.toLowerCase()}` }, name);
}

/** `tasks/t1a2` -> `t1a2`. */
export const shortName = (name) => String(name || "").split("/").pop();

export function time(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  return h("time", { datetime: d.toISOString(), title: d.toLocaleString() }, ago(d));
}

export function ago(date) {
  const s = Math.round((Date.now() - date.getTime()) / 1000);
  if (s < 5) return "just now";
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return date.toLocaleDateString();
}

/** Seconds between two timestamps (or until now), as `1m 05s`. */
export function duration(start, end) {
  if (!start) return "";
  const s = Math.max(0, ((end ? new Date(end) : new Date()) - new Date(start)) / 1000);
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

export const number = (n) => Number(n || 0).toLocaleString();

/** Micro-dollars (int64 as a string in JSON) -> `$0.0123`. */
export function cost(micros) {
  const dollars = Number(micros || 0) / 1e6;
  return `$${dollars.toFixed(dollars && dollars < 0.01 ? 4 : 2)}`;
}

export function bytes(n) {
  let v = Number(n || 0);
  for (const unit of ["B", "KiB", "MiB", "GiB"]) {
    if (v < 1024 || unit === "GiB") return `${v.toFixed(unit === "B" ? 0 : 1)} ${unit}`;
    v /= 1024;
  }
  return "";
}

export function progress(fraction, label) {
  const pct = Math.round(Math.max(0, Math.min(1, Number(fraction || 0))) * 100);
  return h("span", { class: "progress" },
    h("progress", { max: 100, value: pct, "aria-label": label || `${pct}% done` }), ` ${pct}%`);
}

/** A table: columns are [heading, row => cell] pairs; an `empty` sentence when there are no rows. */
export function table(columns, rows, { empty = "Nothing to show.", caption, rowAttrs } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h("div", { class: "table-wrap" },
    h("table", {},
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, columns.map(([title]) => h("th", { scope: "col" }, title)))),
      h("tbody", {}, rows.map((row) => h("tr", rowAttrs ? rowAttrs(row) : {},
        columns.map(([, cell]) => h("td", {}, cell(row))))))));
}

/** The server's refusal (or a network failure) as a visible, announced message. */
export function errorBox(err) {
  const text = err && err.explanation ? err.explanation : String(err && err.message ? err.message : err);
  return h("div", { class: "error", role: "alert" }, text,
    err && err.reason ? h("span", { class: "reason" }, ` (${err.reason})`) : null);
}

export function toast(text, kind = "info") {
  const el = document.getElementById("toast");
  el.className = `toast show ${kind}`;
  el.textContent = text;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.className = "toast"; }, 5000);
}

/** A live indicator a view updates as its stream connects, drops and resumes. */
export function liveBadge() {
  const el = h("span", { class: "live off", role: "status" }, "connecting…");
  el.set = (state, err) => {
    el.className = `live ${state === "live" ? "on" : "off"}`;
    el.textContent = state === "live" ? "live" : state === "ended" ? "finished"
      : state === "error" ? `stopped: ${err?.explanation || err}` : "reconnecting…";
  };
  return el;
}

/** Call `fn` at most once per `ms`, at the end (many events, one refresh). */
export function debounce(fn, ms = 250) {
  let timer = 0;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

/** A page heading with optional tools on the right. */
export function heading(title, ...tools) {
  return h("div", { class: "page-head" }, h("h1", {}, title), h("div", { class: "tools" }, tools));
}

/** A sentence of the server's with every `tasks/ID` in it as a link to that task. */
export function linkTasks(text) {
  return String(text || "").split(/(tasks\/[A-Za-z0-9_-]+)/).map((part, i) => (i % 2
    ? h("a", { href: `#/tasks/${part.slice(6)}`, class: "mono" }, part) : part));
}
