// The account page: who you are, change your password, your sessions (where you are signed in)
// with revoke one, sign out of all other sessions, and sign out everywhere.

import { api, describe, rotatingSession, seg } from "./api.js";
import { h, icon, replace } from "./dom.js";
import { ago, device, fullTime } from "./format.js";
import { userText } from "./text.js";
import { avatarNode } from "./users.js";
import { confirmDialog } from "./dialogs.js";

export function mountAccount(main, ctx) {
  const { me } = ctx;
  document.title = "Your account · Rampart";
  const sessionsBody = h("tbody", { id: "sessions-body" });
  const sessionsStatus = h("p", { class: "form-status", role: "status" });

  const current = h("input", { id: "current-password", type: "password", autocomplete: "current-password", required: true, maxlength: 256 });
  const fresh = h("input", { id: "new-password", type: "password", autocomplete: "new-password", required: true, minlength: 12, maxlength: 256, "aria-describedby": "new-password-help" });
  const repeat = h("input", { id: "repeat-password", type: "password", autocomplete: "new-password", required: true, maxlength: 256 });
  const passwordStatus = h("p", { class: "form-status", role: "status", id: "password-status" });
  const passwordForm = h(
    "form",
    { id: "password-form", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "current-password", text: "Current password" }), current),
    h("div", { class: "field" }, h("label", { for: "new-password", text: "New password" }), fresh, h("p", { id: "new-password-help", class: "help", text: "At least 12 characters, not a common password, not containing your username. Other sessions are signed out." })),
    h("div", { class: "field" }, h("label", { for: "repeat-password", text: "Repeat new password" }), repeat),
    h("button", { type: "submit", class: "btn primary", text: "Change password" }),
    passwordStatus,
  );
  passwordForm.addEventListener("submit", changePassword);

  main.append(
    h(
      "section",
      { class: "page", "aria-labelledby": "account-title" },
      h(
        "header",
        { class: "view-header" },
        h("button", { type: "button", class: "icon-btn nav-toggle", "aria-label": "Open navigation", on: { click: ctx.openNav } }, icon("menu")),
        h("h1", { id: "account-title", text: "Your account" }),
      ),
      h(
        "div",
        { class: "page-body" },
        h(
          "div",
          { class: "card profile" },
          avatarNode(me.id, "large"),
          h("div", {}, h("h2", {}, userText(me.display_name)), h("p", { class: "muted" }, userText(`@${me.username}`), ` · ${me.role}`, me.mfa_enabled ? " · two-factor on" : "")),
        ),
        h("div", { class: "card" }, h("h2", { text: "Password" }), passwordForm),
        h(
          "div",
          { class: "card" },
          h("div", { class: "card-head" }, h("h2", { text: "Where you're signed in" }), h("div", { class: "card-actions" },
            h("button", { type: "button", class: "btn ghost", id: "revoke-others", text: "Sign out other sessions", on: { click: revokeOthers } }),
            h("button", { type: "button", class: "btn danger", id: "sign-out-everywhere", text: "Sign out everywhere", on: { click: signOutEverywhere } }),
          )),
          h(
            "div",
            { class: "table-wrap" },
            h(
              "table",
              { class: "table", id: "sessions-table" },
              h("caption", { class: "sr-only", text: "Your sessions" }),
              h("thead", {}, h("tr", {}, ["Device", "IP address", "Signed in", "Last active", ""].map((t) => h("th", { scope: "col", text: t })))),
              sessionsBody,
            ),
          ),
          sessionsStatus,
        ),
      ),
    ),
  );

  async function loadSessions() {
    try {
      const sessions = await api.get("/api/v1/auth/sessions");
      sessions.sort((a, b) => Number(b.current) - Number(a.current) || b.last_seen_at.localeCompare(a.last_seen_at));
      replace(sessionsBody, sessions.map(sessionRow));
    } catch (error) {
      sessionsStatus.textContent = describe(error);
      sessionsStatus.className = "form-status error";
    }
  }

  function sessionRow(session) {
    return h(
      "tr",
      { dataset: { sessionId: session.id }, class: session.current ? "current" : null },
      h("td", {}, userText(device(session.user_agent)), session.current ? h("span", { class: "pill ok", text: "This device" }) : null),
      h("td", {}, userText(session.ip)),
      h("td", { title: fullTime(session.created_at), text: fullTime(session.created_at) }),
      h("td", { title: fullTime(session.last_seen_at), text: ago(session.last_seen_at) }),
      h(
        "td",
        { class: "actions" },
        session.current
          ? h("button", { type: "button", class: "btn small ghost", text: "Sign out", on: { click: signOutHere } })
          : h("button", { type: "button", class: "btn small ghost", text: "Revoke", "aria-label": `Revoke session on ${device(session.user_agent)} from ${session.ip}`, on: { click: () => revoke(session) } }),
      ),
    );
  }

  async function revoke(session) {
    try {
      await api.del(`/api/v1/auth/sessions/${seg(session.id)}`);
      say(sessionsStatus, "Session revoked. That device is signed out.", false);
      loadSessions();
    } catch (error) {
      say(sessionsStatus, describe(error), true);
    }
  }

  async function revokeOthers() {
    try {
      await api.del("/api/v1/auth/sessions");
      say(sessionsStatus, "Every other session is signed out.", false);
      loadSessions();
    } catch (error) {
      say(sessionsStatus, describe(error), true);
    }
  }

  async function signOutHere() {
    await api.post("/api/v1/auth/logout").catch(() => {});
    ctx.signOut();
  }

  async function signOutEverywhere() {
    const ok = await confirmDialog({
      title: "Sign out everywhere?",
      text: "Every session of your account ends, this one included. You will need your password to sign in again.",
      confirm: "Sign out everywhere",
      danger: true,
    });
    if (!ok) return;
    try {
      await api.del("/api/v1/auth/sessions");
      await api.post("/api/v1/auth/logout");
      ctx.signOut();
    } catch (error) {
      say(sessionsStatus, describe(error), true);
    }
  }

  async function changePassword(event) {
    event.preventDefault();
    if (!current.value || !fresh.value) return say(passwordStatus, "Fill in your current and new password.", true);
    if (fresh.value !== repeat.value) return say(passwordStatus, "The new passwords do not match.", true);
    try {
      const body = { current_password: current.value, new_password: fresh.value };
      await rotatingSession(() => api.post("/api/v1/auth/password", body));
      for (const field of [current, fresh, repeat]) field.value = "";
      say(passwordStatus, "Password changed. Your other sessions were signed out.", false);
      loadSessions();
    } catch (error) {
      say(passwordStatus, error.code === "forbidden" ? "The current password is incorrect." : describe(error), true);
    }
  }

  loadSessions();
  return { unmount() {} };
}

function say(el, text, isError) {
  el.textContent = text;
  el.className = `form-status ${isError ? "error" : "ok"}`;
  el.setAttribute("role", isError ? "alert" : "status");
}
