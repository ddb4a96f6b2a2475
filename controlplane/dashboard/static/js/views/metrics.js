// Metrics over the history the control plane samples (GetMetricsHistory), one chart per series.

import { get } from "../api.js";
import { lineChart } from "../chart.js";
import { errorBox, fill, h, heading } from "../ui.js";

const TIMEFRAMES = [["15 minutes", 900], ["1 hour", 3600], ["6 hours", 21600], ["24 hours", 86400]];
const state = { timeframe: 3600, category: "" };

export async function render(root, { signal }) {
  const charts = h("div", { id: "charts" });
  const note = h("p", { class: "muted" });

  async function load() {
    try {
      const answer = await get("/v1/metrics:history", { timeframe: `${state.timeframe}s`, maxPoints: 120, category: state.category });
      const series = answer.series || [];
      const byCategory = new Map();
      for (const s of series) (byCategory.get(s.category) || byCategory.set(s.category, []).get(s.category)).push(s);
      fill(note, `Sampled every ${answer.interval || "?"}, kept ${answer.retention || "?"}; ${answer.samples || 0} samples.`);
      fill(charts, series.length ? [...byCategory].map(([category, list]) => h("section", { "aria-label": category },
        h("h2", {}, category), h("div", { class: "charts" }, list.map(lineChart))))
        : h("p", { class: "empty" }, "No history yet: the first sample is taken when the server starts."));
    } catch (err) {
      fill(charts, errorBox(err));
    }
  }

  fill(root, heading("Metrics",
    h("label", {}, "Over ", h("select", { name: "timeframe", onchange: (e) => { state.timeframe = Number(e.target.value); load(); } },
      TIMEFRAMES.map(([label, s]) => h("option", { value: s, selected: state.timeframe === s }, label)))),
    h("button", { type: "button", onclick: load }, "Refresh")), note, charts);
  await load();
  const timer = setInterval(load, 15000);
  signal.addEventListener("abort", () => clearInterval(timer));
}
