// The audit log (audit:view; admins by default): who called what, and the decision.

import { get } from "../api.js";
import { badge, errorBox, fill, h, heading, table, time } from "../ui.js";

export async function render(root) {
  const list = h("div", { id: "audit-list" });
  const filters = { principal: "", action: "" };

  async function load() {
    try {
      const answer = await get("/v1/auditRecords", { pageSize: 200, ...filters });
      fill(list, table([
        ["When", (r) => time(r.time)],
        ["Who", (r) => r.principal],
        ["Method", (r) => h("code", {}, (r.method || "").split("/").pop())],
        ["Resource", (r) => r.resource || ""],
        ["Decision", (r) => badge(r.decision, "AUDIT_DECISION_")],
        ["Status", (r) => r.statusCode || ""],
        ["Peer", (r) => r.peer || ""],
        ["Reason", (r) => r.reason || ""],
      ], answer.records || answer.auditRecords || [], { empty: "No audit records match." }));
    } catch (err) {
      fill(list, errorBox(err));
    }
  }

  const input = (label, name, placeholder) => h("label", {}, `${label} `, h("input", {
    name, placeholder, onchange: (e) => { filters[name] = e.target.value.trim(); load(); },
  }));
  fill(root, heading("Audit"),
    h("form", { class: "filters", onsubmit: (e) => e.preventDefault() },
      input("Principal", "principal", "users/alice"), input("Method", "action", "Cancel")),
    list);
  await load();
}
