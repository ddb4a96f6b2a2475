// The queue: what waits, for how long, and why (the server's status_reason, in its words).

import { follow, get } from "../api.js";
import { badge, debounce, duration, enumName, errorBox, fill, h, heading, linkTasks, liveBadge, shortName, table } from "../ui.js";

export async function render(root, { signal }) {
  const live = liveBadge();
  const counts = h("div", { class: "cards" });
  const list = h("div", { id: "queue-list" });

  async function load() {
    try {
      const [status, waiting] = await Promise.all([
        get("/v1/system/status"),
        get("/v1/tasks", { pageSize: 200, statuses: ["TASK_STATUS_PENDING", "TASK_STATUS_QUEUED"] }),
      ]);
      const queue = status.queue || [];
      fill(counts,
        h("div", { class: "card" }, h("div", { class: "big" }, status.freeSlots || 0), "free agent slots"),
        h("div", { class: "card" }, h("div", { class: "big" }, status.connectedAgents || 0), "connected agents"),
        queue.length ? queue.map((q) => h("div", { class: "card" }, h("div", { class: "big" }, q.count || 0), `queued for ${q.state}`))
          : h("div", { class: "card" }, h("div", { class: "big" }, 0), "subtasks queued"));
      const tasks = (waiting.tasks || []).sort((a, b) => new Date(a.createTime) - new Date(b.createTime));
      fill(list, table([
        ["Task", (t) => h("a", { href: `#/tasks/${shortName(t.name)}`, class: "mono" }, shortName(t.name))],
        ["Status", (t) => badge(t.status, "TASK_STATUS_")],
        ["Priority", (t) => enumName(t.priority, "PRIORITY_")],
        ["Waiting", (t) => duration(t.createTime)],
        ["Why it waits", (t) => (t.statusReason ? linkTasks(t.statusReason) : null) || (t.status === "TASK_STATUS_QUEUED" ? "waiting for a free agent slot" : "not planned yet")],
        ["Description", (t) => h("span", { class: "clip", title: t.description }, t.description)],
      ], tasks, { empty: "Nothing waits: every task has started or finished." }));
    } catch (err) {
      fill(list, errorBox(err));
    }
  }

  fill(root, heading("Queue", live), counts,
    h("h2", {}, "Waiting tasks, oldest first"), list);
  await load();
  const refresh = debounce(load, 300);
  follow("/v1/events:watch?eventTypes=EVENT_TYPE_TASK_SUBMITTED&eventTypes=EVENT_TYPE_TASK_STATUS_CHANGED&eventTypes=EVENT_TYPE_SUBTASK_STATUS_CHANGED",
    () => refresh(), { signal, onState: (state, err) => { live.set(state, err); if (state === "live") refresh(); } });
  const timer = setInterval(load, 5000); // waiting times grow without events
  signal.addEventListener("abort", () => clearInterval(timer));
}
