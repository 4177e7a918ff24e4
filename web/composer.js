// The message composer: a growing text field (Enter sends, Shift+Enter starts a new line, Up
// edits your last message), a send button, typing notices, the length limit, and — given a
// channel — an attach button whose files upload at once and go with the next message.

import { h, icon } from "./dom.js";
import { makeAttachmentTray } from "./files.js";

const MESSAGE_CHARS_MAX = 16_000;

/**
 * `onSend(text, files)` may throw (the text and files are kept); `files` are the uploaded files
 * to attach. `onTyping()`; `onEditLast()` → true if it did. `channelId`: where files are uploaded
 * (none: no attach button).
 */
export function makeComposer({ id, label, placeholder, onSend, onTyping, onEditLast, channelId = null }) {
  const field = h("textarea", { id, class: "composer-field", rows: 1, placeholder, "aria-label": label, maxlength: MESSAGE_CHARS_MAX, enterkeyhint: "send" });
  const send = h("button", { type: "submit", class: "send-btn", "aria-label": "Send message", title: "Send (Enter)" }, icon("send"));
  const error = h("p", { class: "composer-error error", role: "alert" });
  const tray = channelId ? makeAttachmentTray(channelId, { onChange: () => (error.textContent = "") }) : null;
  // The picker is hidden; the labelled button opens it, so one tab stop does the job.
  const picker = tray ? h("input", { type: "file", multiple: true, hidden: true, tabindex: "-1", "aria-label": "Choose files", class: "file-picker" }) : null;
  const attach = tray
    ? h("button", { type: "button", class: "icon-btn attach-btn", id: `${id}-attach`, "aria-label": "Attach files", title: "Attach files", on: { click: () => picker.click() } }, icon("attach"))
    : null;
  picker?.addEventListener("change", () => {
    addFiles(picker.files);
    picker.value = "";
  });
  const form = h("form", { class: "composer", novalidate: true }, tray?.el, h("div", { class: "composer-box" }, attach, picker, field, send), error);

  function addFiles(files) {
    if (!tray || field.disabled || !files || !files.length) return;
    error.textContent = tray.add([...files]) || "";
  }

  async function submit() {
    const text = field.value;
    const withFiles = tray ? tray.readyCount() : 0;
    if (!text.trim() && !withFiles) return;
    if (tray?.uploading()) {
      error.textContent = "Wait for the uploads to finish, or remove them.";
      return;
    }
    if ([...text].length > MESSAGE_CHARS_MAX) {
      error.textContent = `A message can have at most ${MESSAGE_CHARS_MAX.toLocaleString()} characters.`;
      return;
    }
    error.textContent = "";
    field.value = "";
    const taken = tray ? tray.take() : [];
    // A message needs text; files sent alone get a short one.
    const body = text.trim() ? text : withFiles === 1 ? "Shared a file" : `Shared ${withFiles} files`;
    try {
      await onSend(body, taken.map((item) => item.stored));
    } catch (failure) {
      if (!field.value) field.value = text;
      tray?.restore(taken);
      error.textContent = failure.message;
    }
    field.focus();
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  field.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    } else if (event.key === "ArrowUp" && !field.value && onEditLast && onEditLast()) {
      event.preventDefault();
    }
  });
  field.addEventListener("input", () => {
    error.textContent = "";
    if (field.value.trim()) onTyping();
  });
  // Pasted files (a screenshot on the clipboard) are attached too.
  field.addEventListener("paste", (event) => {
    const files = event.clipboardData?.files;
    if (tray && files && files.length) {
      event.preventDefault();
      addFiles(files);
    }
  });

  return {
    el: form,
    field,
    focus: () => field.focus(),
    /** Stops uploads still running; call when the view goes away. */
    dispose: () => tray?.abortAll(),
    /** Attaches dropped or pasted files (ignored while sending is disabled). */
    addFiles,
    /** Disables sending with a reason shown in place of the field (or re-enables with null). */
    setDisabled(reason) {
      field.disabled = Boolean(reason);
      send.disabled = Boolean(reason);
      if (attach) attach.disabled = Boolean(reason);
      field.placeholder = reason || placeholder;
    },
  };
}
