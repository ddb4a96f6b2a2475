// Agents: the pool, their slots and leases, and pause / resume / drain / terminate for those
// whose key holds agent:manage (the server decides: another's agent needs agent:manage-all).

import { follow, get, post } from "../api.js";
import { badge, debounce, errorBox, fill, h, heading, liveBadge, number, shortName, table, time, toast } from "../ui.js";

const AGENT_EVENTS = ["EVENT_TYPE_AGENT_CONNECTED", "EVENT_TYPE_AGENT_DISCONNECTED", "EVENT_TYPE_AGENT_STATUS_CHANGED",
  "EVENT_TYPE_SUBTASK_STATUS_CHANGED"];

export async function render(root, { can, signal }) {
  const live = liveBadge();
  const list = h("div", { id: "agent-list" });
  const summary = h("p", { class: "muted" });
  let showTerminated = false;

  const act = async (agent, verb, body = {}) => {
    if (verb === "terminate" && !window.confirm(`Terminate ${shortName(agent.name)}? Its running work goes back to the queue.`)) return;
    try {
      await post(`/v1/${agent.name}:${verb}`, body);
      toast(`${shortName(agent.name)}: ${verb} requested`);
      await load();
    } catch (err) {
      toast(err.explanation || String(err), "error");
    }
  };

  const actions = (a) => {
    if (!can("agent:manage") || ["AGENT_STATUS_TERMINATED", "AGENT_STATUS_DISCONNECTED"].includes(a.status)) return "";
    const id = shortName(a.name);
    const paused = a.status === "AGENT_STATUS_PAUSED";
    return h("div", { class: "row-actions" },
      h("button", { type: "button", "aria-label": `${paused ? "Resume" : "Pause"} ${id}`, onclick: () => act(a, paused ? "resume" : "pause") },
        paused ? "Resume" : "Pause"),
      a.status !== "AGENT_STATUS_DRAINING"
        ? h("button", { type: "button", "aria-label": `Drain ${id}`, onclick: () => act(a, "drain") }, "Drain") : null,
      h("button", { type: "button", class: "danger", "aria-label": `Terminate ${id}`, onclick: () => act(a, "terminate") }, "Terminate"));
  };

  async function load() {
    try {
      const answer = await get("/v1/agents", { pageSize: 500, includeTerminated: showTerminated });
      const agents = answer.agents || [];
      const slots = agents.reduce((n, a) => n + (a.maxConcurrency || 0), 0);
      const free = agents.reduce((n, a) => n + (a.freeSlots || 0), 0);
      fill(summary, `${agents.length} agent(s), ${slots - free} of ${slots} slots in use.`);
      fill(list, table([
        ["Agent", (a) => h("span", { class: "mono" }, shortName(a.name))],
        ["Type", (a) => a.agentType],
        ["Status", (a) => badge(a.status, "AGENT_STATUS_")],
        ["Slots", (a) => `${(a.maxConcurrency || 0) - (a.freeSlots || 0)}/${a.maxConcurrency || 0}`],
        ["Leases", (a) => (a.assignments || []).map((s) => {
          const [, task, , step] = s.split("/"); // tasks/{task}/subtasks/{step}
          return h("a", { href: `#/tasks/${task}`, class: "mono lease", title: s }, `${task.slice(0, 10)}…/${step}`);
        })],
        ["Heartbeat", (a) => time(a.lastHeartbeatTime)],
        ["Done / failed", (a) => `${number(a.completedSubtasks)} / ${number(a.failedSubtasks)}`],
        ["Reliability", (a) => `${Math.round((a.reliability || 0) * 100)}%`],
        ["Where", (a) => h("span", { class: "nowrap" }, `${a.hostname || ""}${a.pid ? `:${a.pid}` : ""}`)],
        ["Owner", (a) => (a.owner || "").replace(/^users\//, "")],
        ["", actions],
      ], agents, { empty: "No agents are connected. Start some with `maos agent spawn`.", rowAttrs: (a) => ({ "data-agent": shortName(a.name) }) }));
    } catch (err) {
      fill(list, errorBox(err));
    }
  }

  fill(root, heading("Agents", live,
    h("label", {}, h("input", { type: "checkbox", onchange: (e) => { showTerminated = e.target.checked; load(); } }), " show terminated")),
  summary, list);
  await load();
  const refresh = debounce(load, 300);
  follow(`/v1/events:watch?${AGENT_EVENTS.map((t) => `eventTypes=${t}`).join("&")}`, () => refresh(), {
    signal, onState: (state, err) => { live.set(state, err); if (state === "live") refresh(); },
  });
  // Heartbeat times move without events: refresh them now and then.
  const timer = setInterval(load, 10000);
  signal.addEventListener("abort", () => clearInterval(timer));
}
