// One task: its state, plan graph, subtasks, streamed output, usage and cost, and votes,
// kept current by WatchTask (with progress and output chunks).

import { follow, get, post } from "../api.js";
import { planGraph } from "../graph.js";
import {
  badge, cost, debounce, duration, enumName, errorBox, fill, h, heading, linkTasks, liveBadge, number, progress,
  shortName, table, time, toast,
} from "../ui.js";

const TERMINAL = ["TASK_STATUS_COMPLETED", "TASK_STATUS_FAILED", "TASK_STATUS_CANCELLED"];

function usageTable(usage = {}) {
  return h("dl", { class: "facts" },
    h("dt", {}, "Cost"), h("dd", { id: "task-cost" }, cost(usage.costMicros)),
    h("dt", {}, "Input tokens"), h("dd", {}, number(usage.inputTokens)),
    h("dt", {}, "Output tokens"), h("dd", {}, number(usage.outputTokens)),
    h("dt", {}, "Cache reads"), h("dd", {}, number(usage.cacheReadInputTokens)),
    h("dt", {}, "Cache writes"), h("dd", {}, number(usage.cacheCreationInputTokens)),
    h("dt", {}, "Model calls"), h("dd", {}, number(usage.modelCalls)));
}

function votesSection(consensus) {
  if (!consensus || !(consensus.candidates || consensus.votes || consensus.outcome)) return null;
  const candidates = consensus.candidates || [];
  const votes = consensus.votes || [];
  return h("section", { "aria-labelledby": "votes-h" },
    h("h2", { id: "votes-h" }, "Consensus and votes"),
    h("p", {}, badge(consensus.outcome, "CONSENSUS_OUTCOME_"), " ",
      enumName(consensus.strategy, "VOTING_STRATEGY_").toLowerCase(), ` vote, threshold ${consensus.threshold ?? ""}`,
      `, agreement ${Math.round((consensus.agreement || 0) * 100)}%, ${consensus.rounds || 0} round(s)`,
      consensus.winningCandidateId ? `, winner ${consensus.winningCandidateId}` : ""),
    table([
      ["Candidate", (c) => h("span", { class: "mono" }, c.id)],
      ["Agent", (c) => shortName(c.agent)],
      ["Content", (c) => h("span", { class: "clip", title: c.content }, c.content)],
    ], candidates, { empty: "No candidates yet.", caption: "Candidates" }),
    table([
      ["Voter", (v) => shortName(v.voter)],
      ["For", (v) => (v.abstained ? "abstained" : v.candidateId)],
      ["Confidence", (v) => (v.confidence ?? 0).toFixed(2)],
      ["Weight", (v) => (v.weight ?? 0).toFixed(2)],
      ["Round", (v) => v.round || 0],
      ["Rationale", (v) => h("span", { class: "clip", title: v.rationale }, v.rationale)],
    ], votes, { empty: "No votes yet.", caption: "Votes" }));
}

export async function render(root, { params, can, signal }) {
  const name = `tasks/${params.id}`;
  const live = liveBadge();
  const head = h("div");
  const plan = h("div", { class: "plan-wrap" });
  const subtasks = h("div");
  const output = h("pre", { class: "output", id: "task-output", tabindex: 0, "aria-label": "Output" });
  const usage = h("div");
  const votes = h("div");
  const events = h("ol", { class: "events", "aria-label": "Events" });
  const streamed = new Map(); // subtask key -> text received while it runs
  let detail = null;
  let finalOutput = "";
  let watching = null; // starts the live stream again (after a retry: a finished task's watch has ended)

  fill(root,
    heading(`Task ${params.id}`, live),
    head,
    h("section", { "aria-labelledby": "plan-h" }, h("h2", { id: "plan-h" }, "Plan"), plan),
    h("section", { "aria-labelledby": "sub-h" }, h("h2", { id: "sub-h" }, "Subtasks"), subtasks),
    h("section", { "aria-labelledby": "out-h" }, h("h2", { id: "out-h" }, "Output"), output),
    h("div", { class: "two" },
      h("section", { "aria-labelledby": "use-h" }, h("h2", { id: "use-h" }, "Usage and cost"), usage),
      h("section", { "aria-labelledby": "ev-h" }, h("h2", { id: "ev-h" }, "Events"), events)),
    votes);

  const act = async (verb, body = {}) => {
    try {
      await post(`/v1/${name}:${verb}`, body);
      toast(`${verb} requested`);
      finalOutput = "";
      await load();
      if (verb === "retry" && watching) watching();
    } catch (err) {
      toast(err.explanation || String(err), "error");
    }
  };

  function drawHead(t) {
    const done = TERMINAL.includes(t.status);
    fill(head, h("div", { class: "summary" },
      h("p", { class: "lead" }, badge(t.status, "TASK_STATUS_"), " ", h("span", { id: "task-status-reason" }, linkTasks(t.statusReason)),
        t.failure?.message ? h("span", { class: "error-text" }, ` ${t.failure.message}`) : null),
      h("p", { class: "description" }, t.description),
      h("dl", { class: "facts" },
        h("dt", {}, "Priority"), h("dd", {}, enumName(t.priority, "PRIORITY_")),
        h("dt", {}, "Type"), h("dd", {}, t.taskType || ""),
        h("dt", {}, "Owner"), h("dd", {}, (t.owner || "").replace(/^users\//, "")),
        h("dt", {}, "Created"), h("dd", {}, time(t.createTime)),
        h("dt", {}, "Ran"), h("dd", {}, t.startTime ? duration(t.startTime, t.endTime) : "not yet"),
        h("dt", {}, "Progress"), h("dd", {}, progress(t.progress, "task progress"),
          t.subtasksTotal ? ` ${t.subtasksCompleted || 0}/${t.subtasksTotal} subtasks` : ""),
        h("dt", {}, "Max agents"), h("dd", {}, t.maxAgents || ""),
        t.dependsOn?.length ? [h("dt", {}, "Depends on"), h("dd", {}, t.dependsOn.map((d) => h("a", { href: `#/tasks/${shortName(d)}` }, shortName(d), " ")))] : null,
        t.retries ? [h("dt", {}, "Retries"), h("dd", {}, t.retries)] : null),
      h("div", { class: "actions" },
        !done && can("task:cancel") ? h("button", { type: "button", class: "danger", onclick: () => act("cancel", { reason: "cancelled from the dashboard" }) }, "Cancel task") : null,
        done && t.status !== "TASK_STATUS_COMPLETED" && can("task:update") ? h("button", { type: "button", onclick: () => act("retry") }, "Retry") : null)));
    fill(usage, usageTable(t.usage));
  }

  function steps() {
    const subs = detail.subtasks || [];
    if (subs.length) {
      return subs.map((s) => ({ key: shortName(s.name), title: s.title, kind: s.kind, status: s.status, dependsOn: s.dependsOn || [], agent: shortName(s.agent) }));
    }
    return (detail.plan?.subtasks || []).map((s) => ({ key: s.key, title: s.title, kind: s.kind, status: "", dependsOn: s.dependsOn || [] }));
  }

  function drawOutput() {
    const t = detail.task;
    if (finalOutput) { output.textContent = finalOutput; return; }
    const parts = [];
    for (const s of detail.subtasks || []) {
      const key = shortName(s.name);
      const text = s.output || streamed.get(key) || "";
      if (text) parts.push(`── ${s.title || key} (${enumName(s.status, "SUBTASK_STATUS_")})\n${text}`);
    }
    output.textContent = parts.join("\n\n") || (TERMINAL.includes(t.status) ? "(no output)" : "Waiting for output…");
  }

  function draw() {
    const t = detail.task;
    drawHead(t);
    fill(plan, planGraph(steps(), { label: `Plan of ${params.id}` }) || h("p", { class: "empty" }, "Not planned yet."),
      detail.plan?.planner ? h("p", { class: "muted" }, `planner ${detail.plan.planner}`,
        detail.plan.complexity ? `, complexity ${detail.plan.complexity}` : "",
        detail.plan.criticalPathLength ? `, critical path ${detail.plan.criticalPathLength}` : "") : null);
    fill(subtasks, table([
      ["Step", (s) => h("span", { class: "mono" }, shortName(s.name))],
      ["Title", (s) => s.title],
      ["Kind", (s) => enumName(s.kind, "SUBTASK_KIND_")],
      ["Status", (s) => [badge(s.status, "SUBTASK_STATUS_"), s.statusReason ? h("div", { class: "muted" }, s.statusReason) : null]],
      ["Agent", (s) => shortName(s.agent)],
      ["Attempt", (s) => s.attempt || 0],
      ["Progress", (s) => [progress(s.progress, `${s.title} progress`), s.progressMessage ? h("div", { class: "muted" }, s.progressMessage) : null]],
      ["Ran", (s) => (s.startTime ? duration(s.startTime, s.endTime) : "")],
      ["Output", (s) => h("span", { class: "clip", title: s.output || "" }, s.output || streamed.get(shortName(s.name)) || "")],
      ["Cost", (s) => cost(s.usage?.costMicros)],
    ], detail.subtasks || [], { empty: "No subtasks yet.", rowAttrs: (s) => ({ "data-subtask": shortName(s.name) }) }));
    drawOutput();
    fill(votes, votesSection(detail.consensus));
  }

  async function load() {
    detail = await get(`/v1/${name}`, { view: "TASK_VIEW_FULL" });
    if (TERMINAL.includes(detail.task.status)) {
      try {
        const results = await get(`/v1/${name}/results`, { maxOutputBytes: 262144 });
        finalOutput = results.result?.output || "";
        if (results.truncated) finalOutput += "\n… (truncated: `maos task results` shows it all)";
        if (results.result?.consensus) detail.consensus = results.result.consensus;
      } catch (err) {
        finalOutput = "";
      }
    }
    draw();
  }

  try {
    await load();
  } catch (err) {
    fill(root, heading(`Task ${params.id}`), errorBox(err), h("p", {}, h("a", { href: "#/tasks" }, "All tasks")));
    return;
  }

  const reload = debounce(() => load().catch((err) => toast(err.explanation || String(err), "error")), 200);
  const watch = () => follow(`/v1/${name}:watch?includeProgress=true`, (message) => {
    if (message.task && detail) { detail.task = message.task; drawHead(message.task); }
    const event = message.event;
    if (!event) return;
    const type = enumName(event.type, "EVENT_TYPE_");
    const key = shortName(event.subtask);
    if (type === "SUBTASK_OUTPUT") {
      streamed.set(key, (streamed.get(key) || "") + (event.message || ""));
      drawOutput();
      return;
    }
    if (type === "SUBTASK_PROGRESS") return; // the task in the message carries the progress
    events.prepend(h("li", {}, time(event.time), " ", type.toLowerCase().replaceAll("_", " "),
      event.subtask ? ` ${key}` : "", event.toStatus ? ` → ${event.toStatus}` : "", event.message ? `: ${event.message}` : ""));
    while (events.children.length > 50) events.lastChild.remove();
    reload();
  }, { signal, onState: (state, err) => live.set(state, err), done: () => TERMINAL.includes(detail?.task?.status) });
  watching = watch;
  watch();
}
