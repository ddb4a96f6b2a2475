// The dashboard's shell: sign-in, navigation and a hash router (#/tasks/t1a2b...).
// Each view is a module exporting `render(root, ctx)`; ctx.signal aborts its streams and
// timers when the user leaves the page.

import { ApiError, get, session } from "./api.js";
import { errorBox, fill, h } from "./ui.js";

import * as agents from "./views/agents.js";
import * as audit from "./views/audit.js";
import * as checkpoints from "./views/checkpoints.js";
import * as config from "./views/config.js";
import * as logs from "./views/logs.js";
import * as metrics from "./views/metrics.js";
import * as overview from "./views/overview.js";
import * as queue from "./views/queue.js";
import * as task from "./views/task.js";
import * as tasks from "./views/tasks.js";

// [hash, label, view, permission that shows the link]
const PAGES = [
  ["#/", "Overview", overview, "system:view"],
  ["#/tasks", "Tasks", tasks, "task:view"],
  ["#/agents", "Agents", agents, "agent:view"],
  ["#/queue", "Queue", queue, "task:view"],
  ["#/logs", "Logs", logs, "system:view"],
  ["#/metrics", "Metrics", metrics, "system:view"],
  ["#/checkpoints", "Checkpoints", checkpoints, "checkpoint:view"],
  ["#/config", "Configuration", config, "system:view"],
  ["#/audit", "Audit", audit, "audit:view"],
];

const main = document.getElementById("main");
let caller = null; // GetCaller's answer: principal, roles, permissions
let current = null; // the AbortController of the page on screen

function can(permission) {
  if (!caller) return false;
  const held = caller.permissions || [];
  return held.includes("*") || held.includes(permission);
}

function route() {
  const hash = location.hash || "#/";
  const [path] = hash.slice(1).split("?");
  const parts = path.split("/").filter(Boolean);
  if (parts[0] === "tasks" && parts[1]) return { view: task, params: { id: decodeURIComponent(parts[1]) }, nav: "#/tasks" };
  const page = PAGES.find(([href]) => href === `#/${parts[0] || ""}`);
  return page ? { view: page[2], params: {}, nav: page[0], title: page[1] } : null;
}

async function show() {
  if (current) current.abort();
  if (!caller) return;
  current = new AbortController();
  const target = route();
  for (const link of document.querySelectorAll("#nav a")) {
    if (target && link.getAttribute("href") === target.nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const root = fill(main);
  if (!target) {
    fill(root, h("h1", {}, "Not found"), h("p", {}, "No such page. ", h("a", { href: "#/" }, "Back to the overview.")));
    return;
  }
  document.title = `${target.title || "Task"} · MAOS`;
  try {
    await target.view.render(root, { params: target.params, caller, can, signal: current.signal });
  } catch (err) {
    if (!current.signal.aborted) root.append(errorBox(err));
  }
}

function shell() {
  document.getElementById("top").hidden = false;
  fill(document.getElementById("nav"),
    PAGES.filter(([, , , permission]) => can(permission)).map(([href, label]) => h("a", { href }, label)));
  const who = caller.principal ? caller.principal.replace(/^users\//, "") : "anonymous";
  const roles = (caller.roles || []).map((r) => r.replace(/^roles\//, "")).join(", ");
  fill(document.getElementById("who"), who, roles ? h("span", { class: "roles" }, ` (${roles})`) : "");
  document.getElementById("signout").hidden = !session.key;
}

function signIn(message) {
  if (current) current.abort();
  caller = null;
  document.getElementById("top").hidden = true;
  document.title = "Sign in · MAOS";
  const input = h("input", {
    id: "key", name: "key", type: "password", autocomplete: "off", spellcheck: "false", required: true,
    placeholder: "maos_key_…", "aria-describedby": "key-help",
  });
  const status = h("div", { id: "signin-status", "aria-live": "assertive" }, message ? errorBox(message) : null);
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h("form", {
    class: "signin", method: "post", action: "#",
    onsubmit: async (event) => {
      event.preventDefault();
      button.disabled = true;
      fill(status);
      session.key = input.value.trim();
      try {
        caller = await get("/v1/caller");
        input.value = "";
        start();
      } catch (err) {
        session.key = "";
        fill(status, errorBox(err.httpStatus === 401
          ? new ApiError(401, { message: "that API key was not accepted (unknown, revoked or expired). Check it with `maos api-key list`." })
          : err));
        input.focus();
      } finally {
        button.disabled = false;
      }
    },
  },
  h("h1", {}, "MAOS dashboard"),
  h("label", { for: "key" }, "API key"),
  input,
  h("p", { id: "key-help", class: "help" },
    "Your key (", h("code", {}, "maos api-key create"), ") is kept in this tab only, until you sign out or close it, and is sent only in the Authorization header."),
  button, status);
  fill(main, form);
  input.focus();
}

async function start() {
  try {
    caller = await get("/v1/caller");
  } catch (err) {
    signIn(session.key && err.httpStatus === 401 ? err : null);
    return;
  }
  shell();
  await show();
}

window.addEventListener("hashchange", show);
window.addEventListener("maos:unauthenticated", (event) => {
  if (caller) { session.key = ""; signIn(event.detail); }
});
document.getElementById("signout").addEventListener("click", () => {
  session.key = "";
  signIn();
});
document.getElementById("skip").addEventListener("click", (event) => { event.preventDefault(); main.focus(); });

// Without a key, the server may not require one (security.auth: off): GetCaller then answers.
start();
