// The server's settings as GetConfig answers them: credentials already redacted by the server.

import { get } from "../api.js";
import { errorBox, fill, h, heading, table } from "../ui.js";

export async function render(root) {
  const list = h("div", { id: "config-list" });
  let values = [];
  let search = "";
  const draw = () => {
    const needle = search.toLowerCase();
    fill(list, table([
      ["Setting", (v) => h("code", {}, v.key)],
      ["Value", (v) => h("code", { class: "value" }, v.value ?? "")],
      ["From", (v) => v.source || ""],
      ["Meaning", (v) => v.description || ""],
    ], values.filter((v) => !needle || `${v.key} ${v.description}`.toLowerCase().includes(needle)), { empty: "No setting matches." }));
  };
  fill(root, heading("Configuration",
    h("label", {}, "Search ", h("input", { type: "search", name: "search", oninput: (e) => { search = e.target.value; draw(); } }))),
  h("p", { class: "muted" }, "Secrets are redacted by the server. Change settings with ", h("code", {}, "maos config set"), " (admins)."), list);
  try {
    values = (await get("/v1/config")).values || [];
    draw();
  } catch (err) {
    fill(list, errorBox(err));
  }
}
