// The overview: counts by state, health of each component, and the latest tasks, live.

import { follow, get } from "../api.js";
import { debounce, errorBox, fill, h, heading, liveBadge, shortName, table, badge, time } from "../ui.js";
import { taskColumns } from "./tasks.js";

function counts(title, list) {
  return h("section", { class: "card wide", "aria-label": title }, h("h2", {}, title),
    h("dl", { class: "counts" }, (list || []).map((c) => [h("dt", {}, c.state), h("dd", {}, c.count || 0)])));
}

export async function render(root, { can, signal }) {
  const live = liveBadge();
  const body = h("div");
  const recent = h("div");

  async function load() {
    try {
      const [status, health] = await Promise.all([get("/v1/system/status"), get("/v1/system/health").catch(() => null)]);
      fill(body,
        h("div", { class: "cards" },
          h("div", { class: "card" }, h("div", { class: "big" }, status.connectedAgents || 0), "connected agents"),
          h("div", { class: "card" }, h("div", { class: "big" }, status.freeSlots || 0), "free slots"),
          h("div", { class: "card" }, h("div", { class: "big" }, status.version || ""), `version · ${status.storageBackend || ""}`),
          h("div", { class: "card" }, h("div", { class: "big" }, (status.uptime || "").replace(/\.\d+s$/, "s")), "uptime")),
        h("div", { class: "cards" }, counts("Tasks", status.tasks), counts("Subtasks", status.subtasks), counts("Agents", status.agents)),
        health ? h("section", {}, h("h2", {}, "Health ", badge(health.state, "COMPONENT_STATE_")), table([
          ["Component", (c) => c.component],
          ["State", (c) => badge(c.state, "COMPONENT_STATE_")],
          ["Message", (c) => c.message || ""],
        ], health.components || [])) : null,
        (status.replicaStatus || []).length ? h("section", { "aria-label": "Replicas" }, h("h2", {}, "Replicas"), table([
          ["Replica", (r) => `${r.id}${r.current ? " (this one)" : ""}`],
          ["Address", (r) => r.address || ""],
          ["Version", (r) => r.version || ""],
          ["Started", (r) => time(r.startTime)],
          ["Last heartbeat", (r) => r.lost ? h("span", {}, badge("LOST"), " ", time(r.heartbeatTime)) : time(r.heartbeatTime)],
          ["Agents", (r) => r.connectedAgents || 0],
          ["Leases", (r) => r.leasesHeld || 0],
          ["Jobs", (r) => (r.jobs || []).join(", ")],
        ], status.replicaStatus)) : null);
      if (can("task:view")) {
        const answer = await get("/v1/tasks", { pageSize: 8 });
        fill(recent, h("h2", {}, "Latest tasks ", h("a", { href: "#/tasks", class: "small" }, "all tasks")),
          table(taskColumns(), answer.tasks || [], { empty: "No tasks yet. Submit one with `maos task submit`.",
            rowAttrs: (t) => ({ "data-task": shortName(t.name) }) }));
      }
    } catch (err) {
      fill(body, errorBox(err));
    }
  }

  fill(root, heading("Overview", live), body, recent);
  await load();
  const refresh = debounce(load, 500);
  follow("/v1/events:watch", () => refresh(), {
    signal, onState: (state, err) => { live.set(state, err); if (state === "live") refresh(); },
  });
}
