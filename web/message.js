// One message as the reader sees it (sender, time, text, its files, edited and deleted states,
// replies, actions), and MessageList: keyed, ordered-by-seq rendering that updates one element at a time.

import { h, icon, replace } from "./dom.js";
import { clock, dayKey, dayLabel, fullTime } from "./format.js";
import { richText } from "./text.js";
import { fileList } from "./files.js";
import { avatarNode, nameNode } from "./users.js";

const GROUP_WINDOW_MS = 5 * 60 * 1000;

function keyOf(message) {
  return message.id ? `m-${message.id}` : `p-${message.client_id}`;
}

/** Builds the element for `message`. `actions`: {reply, edit, remove, retry, discard, canEdit, canDelete}. */
export function messageElement(message, actions, { inThread = false } = {}) {
  const pending = !message.id;
  const el = h("article", {
    class: `msg${pending ? " pending" : ""}${message.failed ? " failed" : ""}${message.deleted ? " deleted" : ""}`,
    id: keyOf(message),
    tabindex: "-1",
    dataset: { key: keyOf(message), seq: message.seq ?? "", sender: message.sender_id, at: message.created_at, day: dayKey(message.created_at) },
  });
  const body = h("div", { class: "msg-body", dir: "auto" });
  if (message.deleted) body.append(h("em", { class: "muted", text: "This message was deleted." }));
  else if (message.error) body.append(h("em", { class: "error", text: message.error.message }));
  else body.append(richText(message.body || ""));

  const head = h(
    "div",
    { class: "msg-head" },
    nameNode(message.sender_id, "uname"),
    h("time", { datetime: message.created_at, title: fullTime(message.created_at), text: clock(message.created_at) }),
    message.edited_at && !message.deleted ? h("span", { class: "edited", title: `Edited ${fullTime(message.edited_at)}`, text: "(edited)" }) : null,
  );
  // A deleted message's files are deleted with it.
  const main = h("div", { class: "msg-main" }, head, body, message.deleted ? null : fileList(message.files));
  if (pending) {
    main.append(
      message.failed
        ? h(
            "div",
            { class: "send-state error", role: "alert" },
            h("span", { text: `Not sent: ${message.failed}` }),
            h("button", { type: "button", class: "link-btn", text: "Retry", on: { click: () => actions.retry(message) } }),
            h("button", { type: "button", class: "link-btn", text: "Discard", on: { click: () => actions.discard(message) } }),
          )
        : h("div", { class: "send-state muted", text: "Sending…" }),
    );
  }
  if (!inThread && !message.thread_id && message.reply_count > 0) {
    main.append(
      h(
        "button",
        { type: "button", class: "replies", tabindex: "-1", on: { click: () => actions.reply(message) } },
        icon("thread"),
        `${message.reply_count} ${message.reply_count === 1 ? "reply" : "replies"}`,
      ),
    );
  }
  const toolbar = h("div", { class: "msg-actions", role: "toolbar", "aria-label": "Message actions" });
  if (!pending && !message.deleted) {
    if (!inThread && !message.thread_id) toolbar.append(actionButton("thread", "Reply in thread", () => actions.reply(message)));
    if (actions.canEdit(message)) toolbar.append(actionButton("edit", "Edit message", () => startEdit(el, message, actions)));
    if (actions.canDelete(message)) toolbar.append(actionButton("trash", "Delete message", () => actions.remove(message)));
  }
  el.append(h("div", { class: "day-divider", role: "separator" }, h("span", { text: dayLabel(message.created_at) })), h("div", { class: "msg-row" }, avatarNode(message.sender_id), main, toolbar.childElementCount ? toolbar : null));
  return el;
}

function actionButton(name, label, onClick) {
  // Out of the tab order until its message has focus (see enableKeyboard).
  return h("button", { type: "button", class: "icon-btn small", tabindex: "-1", "aria-label": label, title: label, on: { click: onClick } }, icon(name));
}

/**
 * Keyboard use of a message log: the log is one tab stop; Up and Down move between messages;
 * a focused message's action buttons join the tab order; Enter opens its thread, E edits it.
 */
export function enableKeyboard(scroller, listEl) {
  const messages = () => [...listEl.querySelectorAll(".msg")];
  scroller.addEventListener("keydown", (event) => {
    if (event.target.closest("textarea, input, button")) return;
    const all = messages();
    if (!all.length) return;
    const current = event.target.closest(".msg");
    let next = null;
    if (event.key === "ArrowDown") next = current ? all[all.indexOf(current) + 1] : all[0];
    else if (event.key === "ArrowUp") next = current ? all[all.indexOf(current) - 1] : all[all.length - 1];
    else if (event.key === "End") next = all[all.length - 1];
    else if (event.key === "Home") next = all[0];
    else if (current && event.key === "Enter") current.querySelector(".replies, [aria-label='Reply in thread']")?.click();
    else if (current && (event.key === "e" || event.key === "E")) current.querySelector("[aria-label='Edit message']")?.click();
    else return;
    event.preventDefault();
    if (next) {
      next.focus();
      next.scrollIntoView({ block: "nearest" });
    }
  });
  listEl.addEventListener("focusin", (event) => {
    const message = event.target.closest(".msg");
    for (const button of listEl.querySelectorAll(".msg-actions button[tabindex='0'], .replies[tabindex='0']")) {
      if (!message || !message.contains(button)) button.setAttribute("tabindex", "-1");
    }
    if (message) for (const button of message.querySelectorAll(".msg-actions button, .replies")) button.setAttribute("tabindex", "0");
  });
}

/** Swaps the text for an editor: Enter saves, Escape cancels. */
export function startEdit(el, message, actions) {
  const body = el.querySelector(".msg-body");
  if (!body || el.classList.contains("editing")) return;
  el.classList.add("editing");
  const original = Array.from(body.childNodes);
  const field = h("textarea", { class: "edit-field", "aria-label": "Message text", rows: 2, maxlength: 16000 });
  field.value = message.body || "";
  const error = h("p", { class: "form-status error", role: "alert" });
  const finish = () => {
    el.classList.remove("editing");
    replace(body, original);
    el.focus();
  };
  const save = async () => {
    const text = field.value;
    if (!text.trim()) return (error.textContent = "A message cannot be empty; delete it instead.");
    if (text === message.body) return finish();
    error.textContent = "";
    // While saving, the server's copy may replace this element (MessageList.upsert).
    el.dataset.saving = "1";
    try {
      await actions.edit(message, text);
    } catch (failure) {
      delete el.dataset.saving;
      error.textContent = failure.message;
    }
  };
  field.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      save();
    } else if (event.key === "Escape") {
      event.preventDefault();
      finish();
    }
  });
  replace(
    body,
    field,
    h(
      "div",
      { class: "edit-actions" },
      h("button", { type: "button", class: "btn small primary", text: "Save", on: { click: save } }),
      h("button", { type: "button", class: "btn small ghost", text: "Cancel", on: { click: finish } }),
      h("span", { class: "help", text: "Enter to save · Esc to cancel" }),
    ),
    error,
  );
  field.focus();
  field.setSelectionRange(field.value.length, field.value.length);
}

/** Messages in `seq` order (pending sends last), one element per message, updated in place. */
export class MessageList {
  constructor(listEl, actions, options = {}) {
    this.el = listEl;
    this.actions = actions;
    this.options = options;
  }

  /** Renders `messages` from scratch. */
  reset(messages) {
    this.el.replaceChildren();
    for (const message of sortMessages(messages)) this.el.append(this.build(message));
    for (const el of this.el.children) this.relink(el);
  }

  /**
   * Highlights the message with this id (one opened from a search result), or none for null;
   * the highlight survives re-rendering. Returns its element if it is in the list.
   */
  mark(id) {
    this.markedKey = id ? `m-${id}` : null;
    for (const el of this.el.querySelectorAll(".msg.target")) el.classList.remove("target");
    const el = this.markedKey ? this.el.querySelector(`#${CSS.escape(this.markedKey)}`) : null;
    el?.classList.add("target");
    return el;
  }

  build(message) {
    const el = messageElement(message, this.actions, this.options);
    if (this.markedKey && el.id === this.markedKey) el.classList.add("target");
    return el;
  }

  /** Inserts or replaces one message; `replaces` is the pending copy it confirms, if any. */
  upsert(message, replaces = null) {
    const key = keyOf(message);
    const existing = this.el.querySelector(`#${CSS.escape(key)}`);
    const stale = replaces ? this.el.querySelector(`#${CSS.escape(keyOf(replaces))}`) : null;
    if (existing && existing.classList.contains("editing") && !existing.dataset.saving && !message.deleted) return;
    const fresh = this.build(message);
    if (existing) {
      existing.replaceWith(fresh);
      if (stale && stale !== existing) stale.remove();
    } else if (stale && stale.dataset.seq === "" && this.isLastSorted(message)) {
      stale.replaceWith(fresh);
    } else {
      if (stale) stale.remove();
      this.el.insertBefore(fresh, this.nextAfter(message));
    }
    this.relink(fresh);
    if (fresh.nextElementSibling) this.relink(fresh.nextElementSibling);
    return fresh;
  }

  remove(message) {
    const el = this.el.querySelector(`#${CSS.escape(keyOf(message))}`);
    if (!el) return;
    const next = el.nextElementSibling;
    el.remove();
    if (next) this.relink(next);
  }

  /** The element a message with this seq goes before (null: at the end). */
  nextAfter(message) {
    if (message.seq === undefined || message.seq === null) return null;
    let candidate = null;
    for (let el = this.el.lastElementChild; el; el = el.previousElementSibling) {
      const seq = el.dataset.seq === "" ? Infinity : Number(el.dataset.seq);
      if (seq > message.seq) candidate = el;
      else break;
    }
    return candidate;
  }

  isLastSorted(message) {
    const confirmed = [...this.el.children].filter((el) => el.dataset.seq !== "");
    const last = confirmed[confirmed.length - 1];
    return !last || Number(last.dataset.seq) < message.seq;
  }

  /** Groups a message under the one before it (same sender, within minutes, same day). */
  relink(el) {
    const prev = el.previousElementSibling;
    const newDay = !prev || prev.dataset.day !== el.dataset.day;
    const continued =
      !newDay &&
      prev.dataset.sender === el.dataset.sender &&
      !prev.classList.contains("deleted") &&
      Date.parse(el.dataset.at) - Date.parse(prev.dataset.at) < GROUP_WINDOW_MS;
    el.classList.toggle("new-day", newDay && !this.options.inThread);
    el.classList.toggle("continued", continued);
  }
}

export function sortMessages(messages) {
  return [...messages].sort((a, b) => (a.seq ?? Infinity) - (b.seq ?? Infinity));
}
