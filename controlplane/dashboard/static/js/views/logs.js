// Logs: follow (TailLogs, live) or a page of history (ListLogs), filtered by level, component,
// text, task and agent. The server shows each caller only the lines it may see.

import { follow, get } from "../api.js";
import { enumName, errorBox, fill, h, heading, liveBadge, shortName } from "../ui.js";

const LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];
const MAX_LINES = 2000;
const filters = { level: "INFO", component: "", contains: "", task: "", agent: "", follow: true };

function line(record) {
  const level = enumName(record.level, "LOG_LEVEL_");
  const when = record.time ? new Date(record.time) : null;
  return h("li", { class: `log l-${level.toLowerCase()}` },
    h("time", { datetime: when?.toISOString() }, when ? when.toLocaleTimeString() : ""), " ",
    h("span", { class: "level" }, level), " ",
    h("span", { class: "component" }, record.component || ""), " ",
    record.task ? h("a", { href: `#/tasks/${shortName(record.task)}`, class: "mono" }, shortName(record.task)) : null,
    record.agent ? h("span", { class: "mono muted" }, ` ${shortName(record.agent)}`) : null, " ",
    h("span", { class: "message" }, record.message || ""));
}

export async function render(root, { signal }) {
  const live = liveBadge();
  const lines = h("ol", { class: "logs", id: "log-lines", "aria-label": "Log lines", tabindex: 0 });
  const status = h("div");
  let streamAbort = null;

  const params = () => ({
    minLevel: `LOG_LEVEL_${filters.level}`, component: filters.component, contains: filters.contains,
    task: filters.task ? `tasks/${shortName(filters.task)}` : "", agent: filters.agent ? `agents/${shortName(filters.agent)}` : "",
  });

  function add(record) {
    const atBottom = lines.scrollTop + lines.clientHeight >= lines.scrollHeight - 20;
    lines.append(line(record));
    while (lines.children.length > MAX_LINES) lines.firstChild.remove();
    if (atBottom) lines.scrollTop = lines.scrollHeight;
  }

  async function load() {
    if (streamAbort) streamAbort.abort();
    fill(lines);
    fill(status);
    if (filters.follow) {
      streamAbort = new AbortController();
      signal.addEventListener("abort", () => streamAbort.abort(), { once: true });
      const query = new URLSearchParams(Object.entries({ ...params(), tail: 200 }).filter(([, v]) => v !== "")).toString();
      follow(`/v1/logs:tail?${query}`, (message) => message.record && add(message.record), {
        signal: streamAbort.signal, onState: (state, err) => { live.set(state, err); if (err && state === "error") fill(status, errorBox(err)); },
      });
    } else {
      live.set("error", "not following");
      try {
        const answer = await get("/v1/logs", { ...params(), pageSize: 500 });
        const records = answer.records || [];
        records.sort((a, b) => new Date(a.time) - new Date(b.time)).forEach(add);
        if (!records.length) fill(status, h("p", { class: "empty" }, "No log lines match."));
      } catch (err) {
        fill(status, errorBox(err));
      }
    }
  }

  const input = (label, name, placeholder) => h("label", {}, `${label} `, h("input", {
    name, value: filters[name], placeholder, size: 14, onchange: (e) => { filters[name] = e.target.value.trim(); load(); },
  }));
  fill(root, heading("Logs", live),
    h("form", { class: "filters", onsubmit: (e) => e.preventDefault() },
      h("label", {}, "Level ", h("select", { name: "level", onchange: (e) => { filters.level = e.target.value; load(); } },
        LEVELS.map((l) => h("option", { value: l, selected: filters.level === l }, `${l} and above`)))),
      input("Component", "component", "scheduler"),
      input("Contains", "contains", "text"),
      input("Task", "task", "t1a2b…"),
      input("Agent", "agent", "echo-…"),
      h("label", {}, h("input", { type: "checkbox", name: "follow", checked: filters.follow, onchange: (e) => { filters.follow = e.target.checked; load(); } }), " follow")),
    status, lines);
  await load();
}
