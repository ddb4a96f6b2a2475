// A small SVG line chart for one metric series over time.

import { h, svg } from "./ui.js";

const W = 320, H = 120, L = 46, B = 20, T = 8, R = 8;

function compact(v) {
  const a = Math.abs(v);
  if (a >= 1e9) return `${(v / 1e9).toFixed(1)}G`;
  if (a >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (a >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  return Number.isInteger(v) ? String(v) : v.toFixed(2);
}

/** A <figure> with the series' name, help, last value and a line over its points. */
export function lineChart(series) {
  const points = (series.points || []).map((p) => ({ t: new Date(p.time).getTime(), v: Number(p.value || 0) }));
  const last = points.length ? points[points.length - 1].v : 0;
  const figure = h("figure", { class: "chart", "data-series": series.name },
    h("figcaption", {}, h("strong", {}, series.name), " ", h("span", { class: "value" }, compact(last)),
      h("div", { class: "muted" }, series.help || "")));
  if (points.length < 1) { figure.append(h("p", { class: "empty" }, "No samples yet.")); return figure; }
  const t0 = points[0].t, t1 = Math.max(points[points.length - 1].t, t0 + 1);
  let lo = Math.min(0, ...points.map((p) => p.v)), hi = Math.max(...points.map((p) => p.v));
  if (hi === lo) hi = lo + 1;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  const path = points.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
  figure.append(svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `${series.name}: ${points.length} samples from ${compact(Math.min(...points.map((p) => p.v)))} to ${compact(hi)}, last ${compact(last)}` },
  svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }),
  svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }),
  svg("text", { class: "tick", x: L - 4, y: T + 8, "text-anchor": "end" }, compact(hi)),
  svg("text", { class: "tick", x: L - 4, y: H - B, "text-anchor": "end" }, compact(lo)),
  svg("text", { class: "tick", x: L, y: H - 4 }, new Date(t0).toLocaleTimeString()),
  svg("text", { class: "tick", x: W - R, y: H - 4, "text-anchor": "end" }, new Date(t1).toLocaleTimeString()),
  points.length > 1 ? svg("path", { class: "line", d: path }) : svg("circle", { class: "dot", cx: x(points[0].t), cy: y(points[0].v), r: 3 })));
  return figure;
}
