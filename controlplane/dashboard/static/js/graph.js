// The plan of a task as an SVG graph: one column per dependency level, an arrow per dependency,
// each step coloured (and labelled) by its status.

import { enumName, svg } from "./ui.js";

const W = 190, H = 54, GX = 70, GY = 18, PAD = 12;

/**
 * steps: [{key, title, kind, status, dependsOn: [key]}] -> an <svg> (role img, with a text
 * description), or null when there is nothing to draw.
 */
export function planGraph(steps, { label = "Plan" } = {}) {
  if (!steps.length) return null;
  const byKey = new Map(steps.map((s) => [s.key, s]));
  const level = new Map();
  const depth = (key, seen = new Set()) => {
    if (level.has(key)) return level.get(key);
    if (seen.has(key)) return 0; // a cycle would be refused by the server; never loop here
    seen.add(key);
    const deps = (byKey.get(key)?.dependsOn || []).filter((d) => byKey.has(d));
    const value = deps.length ? 1 + Math.max(...deps.map((d) => depth(d, seen))) : 0;
    level.set(key, value);
    return value;
  };
  const columns = [];
  for (const step of steps) {
    const l = depth(step.key);
    (columns[l] ||= []).push(step);
  }
  const rows = Math.max(...columns.map((c) => c.length));
  const width = PAD * 2 + columns.length * W + (columns.length - 1) * GX;
  const height = PAD * 2 + rows * H + (rows - 1) * GY;
  const at = new Map();
  columns.forEach((column, c) => {
    const offset = ((rows - column.length) * (H + GY)) / 2;
    column.forEach((step, r) => at.set(step.key, { x: PAD + c * (W + GX), y: PAD + offset + r * (H + GY) }));
  });

  const description = steps.map((s) => `${s.title || s.key}: ${enumName(s.status, "SUBTASK_STATUS_") || "planned"}` +
    (s.dependsOn?.length ? `, after ${s.dependsOn.map((d) => byKey.get(d)?.title || d).join(", ")}` : "")).join("; ");
  const graph = svg("svg", {
    class: "plan", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": `${label}: ${description}`,
  },
  svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" },
    svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }))));

  for (const step of steps) {
    const to = at.get(step.key);
    for (const dep of step.dependsOn || []) {
      const from = at.get(dep);
      if (!from) continue;
      const x1 = from.x + W, y1 = from.y + H / 2, x2 = to.x - 2, y2 = to.y + H / 2, mx = (x1 + x2) / 2;
      graph.append(svg("path", { class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, "marker-end": "url(#arrow)" }));
    }
  }
  for (const step of steps) {
    const { x, y } = at.get(step.key);
    const status = enumName(step.status, "SUBTASK_STATUS_") || "PLANNED";
    const kind = enumName(step.kind, "SUBTASK_KIND_");
    const title = step.title || step.key;
    graph.append(svg("g", { class: `node s-${status.toLowerCase()}`, transform: `translate(${x},${y})`, "data-step": step.key },
      svg("title", {}, `${title} (${step.key}): ${status}${step.agent ? ` on ${step.agent}` : ""}`),
      svg("rect", { width: W, height: H, rx: 8 }),
      svg("text", { x: 10, y: 21, class: "title" }, title.length > 26 ? `${title.slice(0, 25)}…` : title),
      svg("text", { x: 10, y: 41, class: "sub" }, `${status}${kind && kind !== "WORK" ? ` · ${kind.toLowerCase()}` : ""}`)));
  }
  return graph;
}
