// System checkpoints: their metadata, and taking one for those with checkpoint:create.

import { get, post } from "../api.js";
import { bytes, errorBox, fill, h, heading, number, shortName, table, time, toast } from "../ui.js";

export async function render(root, { can }) {
  const list = h("div", { id: "checkpoint-list" });

  async function load() {
    try {
      const answer = await get("/v1/checkpoints", { pageSize: 200 });
      fill(list, table([
        ["Checkpoint", (c) => h("span", { class: "mono" }, shortName(c.name))],
        ["Name", (c) => c.displayName || ""],
        ["Taken", (c) => time(c.createTime)],
        ["How", (c) => (c.automatic ? "automatic" : "on demand")],
        ["Tasks", (c) => number(c.taskCount)],
        ["Size", (c) => `${bytes(c.sizeBytes)} (${bytes(c.compressedSizeBytes)} compressed)`],
        ["Components", (c) => (c.components || []).join(", ")],
        ["Description", (c) => c.description || ""],
      ], answer.checkpoints || [], { empty: "No checkpoints yet." }));
    } catch (err) {
      fill(list, errorBox(err));
    }
  }

  const take = async () => {
    try {
      await post("/v1/checkpoints", { displayName: "dashboard", description: "taken from the dashboard" });
      toast("checkpoint taken");
      await load();
    } catch (err) {
      toast(err.explanation || String(err), "error");
    }
  };
  fill(root, heading("Checkpoints",
    can("checkpoint:create") ? h("button", { type: "button", onclick: take }, "Take a checkpoint") : null),
  h("p", { class: "muted" }, "Restore one with ", h("code", {}, "maos recover"), " (admins)."), list);
  await load();
}
