// The admin console's audit log: the newest records first, paging back and forward by seq, and
// the "Verify chain" check (GET /api/v1/admin/audit/verify) with its verdict.

import { api, describe } from "./api.js";
import { h, icon, replace } from "./dom.js";
import { fullTime } from "./format.js";
import { userText } from "./text.js";
import { nameNode } from "./users.js";

const PAGE = 50;
const NEWEST = Number.MAX_SAFE_INTEGER;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DETAILS_SHOWN_MAX = 160;

export function mountAudit(body) {
  const verdict = h("div", { class: "verdict", id: "verify-result", role: "status", "aria-live": "polite" });
  const verifyButton = h("button", { type: "button", class: "btn primary", id: "verify-chain", on: { click: verify } }, icon("shield"), "Verify chain");
  const tbody = h("tbody", { id: "audit-body" });
  const range = h("span", { class: "muted small", id: "audit-range" });
  const error = h("p", { class: "form-status error", role: "alert" });
  const newest = h("button", { type: "button", class: "btn small ghost", text: "Newest", on: { click: () => load({ before: NEWEST }) } });
  const older = h("button", { type: "button", class: "btn small ghost", id: "audit-older", text: "← Older", on: { click: () => load({ before: page.first }) } });
  const newer = h("button", { type: "button", class: "btn small ghost", id: "audit-newer", text: "Newer →", on: { click: () => load({ after: page.last }) } });
  let page = { first: 0, last: 0 };

  body.append(
    h(
      "div",
      { class: "card" },
      h("div", { class: "card-head" }, h("h2", { text: "Integrity" }), verifyButton),
      h("p", { class: "muted", text: "Every record is linked to the one before by a SHA-256 hash chain, with Ed25519-signed checkpoints. Verifying recomputes the chain and names the first record that was changed, inserted, moved or deleted." }),
      verdict,
    ),
    h(
      "div",
      { class: "card" },
      h("div", { class: "card-head" }, h("h2", { text: "Audit log" }), h("div", { class: "pager" }, range, newest, older, newer)),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "table audit", id: "audit-table" },
          h("caption", { class: "sr-only", text: "Audit records, newest first" }),
          h("thead", {}, h("tr", {}, ["#", "Time", "Actor", "Action", "Target", "IP", "Outcome", "Details"].map((t) => h("th", { scope: "col", text: t })))),
          tbody,
        ),
      ),
      error,
    ),
  );

  async function load(cursor) {
    const query = cursor.after !== undefined ? `after=${cursor.after}` : `before=${cursor.before}`;
    try {
      const rows = await api.get(`/api/v1/admin/audit?${query}&limit=${PAGE}`);
      error.textContent = "";
      if (!rows.length && cursor.after !== undefined) {
        newer.disabled = true;
        return;
      }
      page = rows.length ? { first: rows[0].seq, last: rows[rows.length - 1].seq } : { first: 0, last: 0 };
      range.textContent = rows.length ? `Records ${page.first}–${page.last}` : "";
      older.disabled = page.first <= 1;
      newer.disabled = cursor.before === NEWEST || rows.length < PAGE;
      replace(tbody, rows.length ? rows.reverse().map(row) : h("tr", {}, h("td", { colspan: 8, class: "muted", text: "The audit log is empty." })));
    } catch (failure) {
      error.textContent = describe(failure);
    }
  }

  async function verify() {
    verifyButton.disabled = true;
    replace(verdict, h("p", { class: "muted", text: "Verifying the whole chain…" }));
    try {
      const result = await api.get("/api/v1/admin/audit/verify");
      const checkpoints = result.checkpoints !== undefined ? `, ${result.checkpoints} signed checkpoint${result.checkpoints === 1 ? "" : "s"}` : "";
      replace(
        verdict,
        result.ok
          ? h("div", { class: "verdict-ok", id: "verify-ok" }, icon("check"), h("div", {}, h("strong", { text: "Chain intact." }), ` ${result.checked} records checked${checkpoints}.`, result.message ? h("p", { class: "small muted", text: result.message }) : null))
          : h(
              "div",
              { class: "verdict-bad", id: "verify-bad" },
              icon("alert"),
              h("div", {}, h("strong", { text: `Tampering detected${result.first_bad_seq ? ` at record #${result.first_bad_seq}` : ""}.` }), ` ${result.checked} records checked. `, h("p", { class: "small", text: result.message || result.problem || "" })),
            ),
      );
      // Verifying is itself audited: show the record it added.
      load({ before: NEWEST });
    } catch (failure) {
      replace(verdict, h("p", { class: "error", role: "alert", text: describe(failure) }));
    } finally {
      verifyButton.disabled = false;
    }
  }

  load({ before: NEWEST });
  return { unmount() {} };
}

/** Details as nodes: "key: value" pairs, user ids shown by name (the id in the tooltip). */
export function detailsNodes(details) {
  if (!details || typeof details !== "object") return [];
  return Object.entries(details).map(([key, value], i) =>
    h(
      "span",
      { class: "detail" },
      i ? " · " : "",
      `${key}: `,
      typeof value === "string" && UUID.test(value) ? nameNode(value, "detail-name") : typeof value === "string" ? userText(value) : JSON.stringify(value),
    ),
  );
}

/** Details as "key: value · key: value" (values that are not strings as JSON). */
function detailsText(details) {
  if (!details || typeof details !== "object") return "";
  return Object.entries(details)
    .map(([key, value]) => `${key}: ${typeof value === "string" ? value : JSON.stringify(value)}`)
    .join(" · ");
}

/** A target: ids shortened (the full id in the tooltip), anything else as text. */
function targetCell(target) {
  if (!target) return "—";
  if (UUID.test(target)) return h("span", { class: "mono small", title: target, text: `${target.slice(0, 8)}…` });
  return userText(target, "mono small");
}

function row(record) {
  const details = detailsText(record.details);
  return h(
    "tr",
    { dataset: { seq: record.seq } },
    h("td", { class: "num", text: record.seq }),
    h("td", { class: "nowrap" }, h("time", { datetime: record.at, text: fullTime(record.at) })),
    h("td", {}, UUID.test(record.actor) ? nameNode(record.actor) : userText(record.actor)),
    h("td", {}, h("code", { text: record.action })),
    h("td", {}, targetCell(record.target)),
    h("td", { class: "mono small" }, record.ip ? userText(record.ip) : "—"),
    h("td", {}, h("span", { class: `pill ${record.outcome === "success" ? "ok" : "danger"}`, text: record.outcome })),
    h("td", { class: "details-cell", title: details }, details.length > DETAILS_SHOWN_MAX ? `${details.slice(0, DETAILS_SHOWN_MAX)}…` : detailsNodes(record.details)),
  );
}
