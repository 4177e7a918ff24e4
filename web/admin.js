// The admin console: tabs for users (invite with role and expiry, change role, disable, end
// sessions), the audit log (admin-audit.js), security alerts, and encryption key status.

import { api, describe, seg } from "./api.js";
import { h, icon, replace } from "./dom.js";
import { ago, fullTime } from "./format.js";
import { userText } from "./text.js";
import { avatarNode, nameNode, remember } from "./users.js";
import { confirmDialog } from "./dialogs.js";
import { detailsNodes, mountAudit } from "./admin-audit.js";

const TABS = [
  ["users", "Users", "user"],
  ["audit", "Audit log", "list"],
  ["alerts", "Security alerts", "bell"],
  ["keys", "Encryption keys", "key"],
];
const ROLES = ["guest", "member", "admin", "owner"];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ALERT_LABELS = {
  brute_force: "Brute-force guessing",
  credential_stuffing: "Credential stuffing",
  distributed_guessing: "Distributed password guessing",
  privilege_escalation: "Privilege raised",
  mass_export: "Mass export",
  admin_new_ip: "Administrator from a new IP",
};

export function mountAdmin(main, ctx, route) {
  const body = h("div", { class: "page-body", id: "admin-body" });
  const tabs = h("div", { class: "tabs", role: "tablist", "aria-label": "Admin console sections" });
  main.append(
    h(
      "section",
      { class: "page admin", "aria-labelledby": "admin-title" },
      h(
        "header",
        { class: "view-header" },
        h("button", { type: "button", class: "icon-btn nav-toggle", "aria-label": "Open navigation", on: { click: ctx.openNav } }, icon("menu")),
        h("h1", { id: "admin-title" }, icon("shield"), "Admin console"),
      ),
      tabs,
      body,
    ),
  );
  let view = null;
  let shown = null;

  function show(tab) {
    const known = TABS.some(([id]) => id === tab) ? tab : "users";
    if (known === shown) return;
    shown = known;
    replace(
      tabs,
      TABS.map(([id, label, iconName]) =>
        h("a", { href: `#/admin/${id}`, role: "tab", id: `tab-${id}`, class: "tab", "aria-selected": String(id === known), "aria-controls": "admin-body" }, icon(iconName), label),
      ),
    );
    body.setAttribute("aria-labelledby", `tab-${known}`);
    body.setAttribute("role", "tabpanel");
    if (view) view.unmount();
    body.replaceChildren();
    document.title = `${TABS.find(([id]) => id === known)[1]} · Admin · Rampart`;
    view =
      known === "users" ? mountUsers(body, ctx) : known === "audit" ? mountAudit(body, ctx) : known === "alerts" ? mountAlerts(body) : mountKeys(body);
  }
  tabs.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowRight" && event.key !== "ArrowLeft") return;
    const links = [...tabs.querySelectorAll("a")];
    const index = links.indexOf(document.activeElement);
    const next = links[(index + (event.key === "ArrowRight" ? 1 : links.length - 1)) % links.length];
    next.focus();
  });
  show(route.tab);
  return {
    update(next) {
      show(next.tab);
    },
    unmount() {
      if (view) view.unmount();
    },
  };
}

function status(el, text, isError) {
  el.textContent = text;
  el.className = `form-status ${isError ? "error" : "ok"}`;
  el.setAttribute("role", isError ? "alert" : "status");
}

function mountUsers(body, ctx) {
  const { me } = ctx;
  const grantable = me.role === "owner" ? ROLES : ["guest", "member"];
  const role = h("select", { id: "invite-role" }, grantable.map((r) => h("option", { value: r, text: r, selected: r === "member" })));
  const hours = h("input", { id: "invite-hours", type: "number", min: 1, max: 720, value: 72, inputmode: "numeric" });
  const inviteStatus = h("p", { class: "form-status", role: "status" });
  const inviteResult = h("div", { class: "invite-result", id: "invite-result", hidden: true });
  const inviteForm = h(
    "form",
    { id: "invite-form", class: "inline-form", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "invite-role", text: "Role" }), role),
    h("div", { class: "field" }, h("label", { for: "invite-hours", text: "Expires after (hours)" }), hours),
    h("button", { type: "submit", class: "btn primary", text: "Create invitation" }),
  );
  inviteForm.addEventListener("submit", invite);
  const tbody = h("tbody", { id: "users-body" });
  const tableStatus = h("p", { class: "form-status", role: "status" });
  body.append(
    h(
      "div",
      { class: "card" },
      h("h2", { text: "Invite someone" }),
      h("p", { class: "muted", text: "An invitation is a one-time link. Send it over a channel you trust; it works once, until it expires." }),
      inviteForm,
      inviteStatus,
      inviteResult,
    ),
    h(
      "div",
      { class: "card" },
      h("div", { class: "card-head" }, h("h2", { text: "Users" }), h("button", { type: "button", class: "btn ghost small", text: "Refresh", on: { click: load } })),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "table", id: "users-table" },
          h("caption", { class: "sr-only", text: "Users of this server" }),
          h("thead", {}, h("tr", {}, ["User", "Role", "Status", "Last sign-in", "Actions"].map((t) => h("th", { scope: "col", text: t })))),
          tbody,
        ),
      ),
      tableStatus,
    ),
  );

  async function invite(event) {
    event.preventDefault();
    const expires = Number.parseInt(hours.value, 10);
    if (!Number.isFinite(expires) || expires < 1 || expires > 720) return status(inviteStatus, "Choose between 1 and 720 hours (30 days).", true);
    try {
      const issued = await api.post("/api/v1/admin/invitations", { role: role.value, expires_in_hours: expires });
      const link = h("input", { id: "invite-link", class: "mono", readonly: true, value: issued.url, "aria-label": "Invitation link" });
      const copy = h("button", {
        type: "button",
        class: "btn small",
        text: "Copy link",
        on: {
          click: async () => {
            link.select();
            try {
              await navigator.clipboard.writeText(issued.url);
              copy.textContent = "Copied";
            } catch {
              copy.textContent = "Select and copy";
            }
          },
        },
      });
      replace(inviteResult, h("p", {}, `Invitation for a ${issued.role}, valid until ${fullTime(issued.expires_at)}:`), h("div", { class: "copy-row" }, link, copy), h("p", { class: "help", text: "This link is shown once. Anyone holding it can create an account." }));
      inviteResult.hidden = false;
      inviteStatus.textContent = "";
    } catch (error) {
      status(inviteStatus, describe(error), true);
    }
  }

  async function load() {
    try {
      const users = await api.get("/api/v1/admin/users");
      users.forEach(remember);
      replace(tbody, users.length ? users.map(row) : h("tr", {}, h("td", { colspan: 5, class: "muted", text: "No users yet." })));
    } catch (error) {
      status(tableStatus, describe(error), true);
    }
  }

  function row(user) {
    const self = user.id === me.id;
    const roleSelect = h(
      "select",
      { "aria-label": `Role of ${user.username}`, class: "small", disabled: self || (!grantable.includes(user.role) && me.role !== "owner") },
      ROLES.map((r) => h("option", { value: r, text: r, selected: r === user.role, disabled: !grantable.includes(r) })),
    );
    roleSelect.addEventListener("change", () => change(user, { role: roleSelect.value }, `${user.username} is now ${roleSelect.value}.`));
    return h(
      "tr",
      { dataset: { userId: user.id, username: user.username }, class: user.disabled ? "disabled" : null },
      h("td", {}, h("div", { class: "user-cell" }, avatarNode(user.id, "small"), h("div", {}, nameNode(user.id, "strong"), h("div", { class: "muted small" }, userText(`@${user.username}`), self ? " · you" : "")))),
      h("td", {}, roleSelect),
      h("td", {}, user.disabled ? h("span", { class: "pill danger", text: "Disabled" }) : h("span", { class: "pill ok", text: "Active" }), user.mfa_enabled ? h("span", { class: "pill", text: "2FA" }) : null),
      h("td", { title: user.last_login_at ? fullTime(user.last_login_at) : "", text: user.last_login_at ? ago(user.last_login_at) : "Never" }),
      h(
        "td",
        { class: "actions" },
        self
          ? null
          : [
              h("button", {
                type: "button",
                class: `btn small ${user.disabled ? "ghost" : "danger-ghost"}`,
                text: user.disabled ? "Enable" : "Disable",
                "aria-label": `${user.disabled ? "Enable" : "Disable"} ${user.username}`,
                on: { click: () => toggle(user) },
              }),
              h("button", { type: "button", class: "btn small ghost", text: "End sessions", "aria-label": `End all sessions of ${user.username}`, on: { click: () => endSessions(user) } }),
            ],
      ),
    );
  }

  async function change(user, patch, done) {
    try {
      await api.patch(`/api/v1/admin/users/${seg(user.id)}`, patch);
      status(tableStatus, done, false);
    } catch (error) {
      status(tableStatus, describe(error), true);
    }
    load();
  }

  async function toggle(user) {
    if (!user.disabled) {
      const ok = await confirmDialog({
        title: `Disable ${user.username}?`,
        text: "They are signed out everywhere at once and cannot sign in until enabled again. Their messages stay.",
        confirm: "Disable",
        danger: true,
      });
      if (!ok) return;
    }
    change(user, { disabled: !user.disabled }, `${user.username} is ${user.disabled ? "enabled" : "disabled and signed out everywhere"}.`);
  }

  async function endSessions(user) {
    try {
      await api.del(`/api/v1/admin/users/${seg(user.id)}/sessions`);
      status(tableStatus, `Every session of ${user.username} has ended.`, false);
    } catch (error) {
      status(tableStatus, describe(error), true);
    }
  }

  load();
  return { unmount() {} };
}

function mountAlerts(body) {
  const list = h("div", { id: "alerts-list" }, h("p", { class: "muted", text: "Loading…" }));
  body.append(
    h(
      "div",
      { class: "card" },
      h("h2", { text: "Security alerts" }),
      h("p", { class: "muted", text: "Raised by the server's detectors and kept in the audit log. Also sent to the configured webhook and counted in /metrics." }),
      list,
    ),
  );
  (async () => {
    try {
      const events = [];
      let after = 0;
      for (let page = 0; page < 10; page += 1) {
        const batch = await api.get(`/api/v1/admin/security/events?after=${after}&limit=1000`);
        events.push(...batch);
        if (batch.length < 1000) break;
        after = batch[batch.length - 1].seq;
      }
      events.reverse();
      replace(
        list,
        events.length
          ? h("ul", { class: "alert-list" }, events.map(alertItem))
          : h("div", { class: "empty-state small" }, icon("check", "empty-icon ok"), h("p", { text: "No security alerts. The detectors watch for password guessing, credential stuffing, raised privileges, mass export and administrators signing in from new places." })),
      );
    } catch (error) {
      replace(list, h("p", { class: "error", role: "alert", text: describe(error) }));
    }
  })();
  return { unmount() {} };
}

function alertItem(event) {
  const details = { ...(event.details || {}) };
  delete details.kind;
  return h(
    "li",
    { class: "alert-item" },
    icon("alert", "icon warn"),
    h(
      "div",
      {},
      h(
        "div",
        { class: "alert-title" },
        h("strong", { text: ALERT_LABELS[event.kind] || event.kind }),
        event.subject ? [" · ", UUID.test(event.subject) ? nameNode(event.subject) : userText(event.subject, "mono")] : null,
      ),
      h("div", { class: "muted small" }, h("time", { datetime: event.at, text: fullTime(event.at) }), ` · audit record #${event.seq}`),
      Object.keys(details).length ? h("div", { class: "details" }, detailsNodes(details)) : null,
    ),
  );
}

function mountKeys(body) {
  const holder = h("div", { id: "keys-status" }, h("p", { class: "muted", text: "Loading…" }));
  body.append(h("div", { class: "card" }, h("h2", { text: "Encryption at rest" }), holder));
  (async () => {
    try {
      const status = await api.get("/api/v1/admin/keys");
      const missing = status.keks.filter((k) => k.state !== "retired" && !k.in_key_dir);
      replace(
        holder,
        h(
          "div",
          { class: "stats" },
          stat("Active key-encryption key", status.active_kek ? `version ${status.active_kek}` : "none"),
          stat("Data keys", status.data_keys),
          stat("Channels with keys", status.channels_with_keys),
          stat("Messages on older epochs", status.messages_on_old_epochs),
        ),
        missing.length ? h("p", { class: "form-status error", role: "alert", text: `Key file missing on this node for version ${missing.map((k) => k.version).join(", ")}.` }) : null,
        h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { class: "table", id: "keys-table" },
            h("caption", { class: "sr-only", text: "Key-encryption key versions" }),
            h("thead", {}, h("tr", {}, ["KEK version", "State", "Data keys wrapped", "Key file on this node"].map((t) => h("th", { scope: "col", text: t })))),
            h(
              "tbody",
              {},
              status.keks.map((k) =>
                h(
                  "tr",
                  {},
                  h("td", { text: k.version }),
                  h("td", {}, h("span", { class: `pill ${k.state === "active" ? "ok" : ""}`, text: k.state })),
                  h("td", { text: k.data_keys }),
                  h("td", { text: k.state === "retired" ? "deleted (retired)" : k.in_key_dir ? "present" : "MISSING" }),
                ),
              ),
            ),
          ),
        ),
        h(
          "p",
          { class: "help" },
          "Rotate on the server with ",
          h("code", { text: "rampart keys rotate-kek" }),
          " (re-wraps data keys, no downtime) or ",
          h("code", { text: "rampart keys rotate-dek" }),
          "; ",
          h("code", { text: "rampart keys reencrypt" }),
          " re-seals messages of older epochs. Back up key_dir apart from data_dir.",
        ),
      );
    } catch (error) {
      replace(holder, h("p", { class: "error", role: "alert", text: describe(error) }));
    }
  })();
  return { unmount() {} };
}

function stat(label, value) {
  return h("div", { class: "stat" }, h("div", { class: "stat-value", text: value }), h("div", { class: "stat-label", text: label }));
}
