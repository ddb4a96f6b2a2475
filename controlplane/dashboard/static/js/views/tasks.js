// Tasks: filtered on the server (status, priority, type), searched in the page, refreshed live
// from WatchEvents.

import { follow, get } from "../api.js";
import { badge, cost, debounce, enumName, errorBox, fill, h, heading, liveBadge, progress, shortName, table, time } from "../ui.js";

export const STATUSES = ["PENDING", "QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"];
const PRIORITIES = ["LOW", "NORMAL", "HIGH", "CRITICAL"];
const TASK_EVENTS = ["EVENT_TYPE_TASK_SUBMITTED", "EVENT_TYPE_TASK_STATUS_CHANGED", "EVENT_TYPE_TASK_UPDATED"];

// Filters survive leaving the page and coming back (not a reload: nothing is stored).
const filters = { status: "", priority: "", type: "", search: "" };


export function taskColumns() {
  return [
    ["Task", (t) => h("a", { href: `#/tasks/${shortName(t.name)}`, class: "mono" }, shortName(t.name))],
    ["Description", (t) => h("span", { class: "clip", title: t.description }, t.description)],
    ["Status", (t) => badge(t.status, "TASK_STATUS_")],
    ["Priority", (t) => enumName(t.priority, "PRIORITY_")],
    ["Type", (t) => t.taskType],
    ["Progress", (t) => [progress(t.progress, `${shortName(t.name)} progress`),
      t.subtasksTotal ? h("span", { class: "muted" }, ` ${t.subtasksCompleted || 0}/${t.subtasksTotal}`) : null]],
    ["Owner", (t) => (t.owner || "").replace(/^users\//, "")],
    ["Created", (t) => time(t.createTime)],
    ["Cost", (t) => cost(t.usage?.costMicros)],
  ];
}

function matches(task, text) {
  if (!text) return true;
  const needle = text.toLowerCase();
  return [task.name, task.description, task.taskType, task.owner, task.statusReason]
    .some((field) => (field || "").toLowerCase().includes(needle));
}

export async function render(root, { signal }) {
  const live = liveBadge();
  const list = h("div", { id: "task-list", "aria-live": "polite", "aria-busy": "true" });
  let tasks = [];
  let nextPageToken = "";

  const select = (label, name, values) => h("label", {}, label, " ",
    h("select", { name, onchange: (e) => { filters[name] = e.target.value; load(); } },
      h("option", { value: "" }, "any"),
      values.map((v) => h("option", { value: v, selected: filters[name] === v }, v))));

  const draw = () => {
    const shown = tasks.filter((t) => matches(t, filters.search));
    fill(list, table(taskColumns(), shown, {
      empty: tasks.length ? "No task matches the search." : "No tasks match these filters.",
      rowAttrs: (t) => ({ "data-task": shortName(t.name) }),
    }), nextPageToken ? h("button", { type: "button", onclick: more }, "Load more") : null);
    list.setAttribute("aria-busy", "false");
  };

  const params = (pageToken) => ({
    pageSize: 50, pageToken,
    statuses: filters.status ? `TASK_STATUS_${filters.status}` : "",
    priorities: filters.priority ? `PRIORITY_${filters.priority}` : "",
    taskTypes: filters.type,
  });

  async function load() {
    try {
      const answer = await get("/v1/tasks", params(""));
      tasks = answer.tasks || [];
      nextPageToken = answer.nextPageToken || "";
      draw();
    } catch (err) {
      fill(list, errorBox(err));
    }
  }

  async function more() {
    try {
      const answer = await get("/v1/tasks", params(nextPageToken));
      tasks = tasks.concat(answer.tasks || []);
      nextPageToken = answer.nextPageToken || "";
      draw();
    } catch (err) {
      list.append(errorBox(err));
    }
  }

  fill(root,
    heading("Tasks", live),
    h("form", { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
      select("Status", "status", STATUSES),
      select("Priority", "priority", PRIORITIES),
      h("label", {}, "Type ", h("input", {
        name: "type", value: filters.type, size: 10, placeholder: "analysis",
        onchange: (e) => { filters.type = e.target.value.trim(); load(); },
      })),
      h("label", {}, "Search ", h("input", {
        type: "search", name: "search", value: filters.search, placeholder: "description, id, owner…",
        oninput: (e) => { filters.search = e.target.value; draw(); },
      }))),
    list);
  await load();

  const refresh = debounce(load, 300);
  follow(`/v1/events:watch?${TASK_EVENTS.map((t) => `eventTypes=${t}`).join("&")}`, () => refresh(), {
    signal, onState: (state, err) => { live.set(state, err); if (state === "live") refresh(); },
  });
}
