// The message composer: a growing text field (Enter sends, Shift+Enter starts a new line, Up
// edits your last message), a send button, typing notices, and the length limit.

import { h, icon } from "./dom.js";

const MESSAGE_CHARS_MAX = 16_000;

/** `onSend(text)` may throw (the text is kept); `onTyping()`; `onEditLast()` → true if it did. */
export function makeComposer({ id, label, placeholder, onSend, onTyping, onEditLast }) {
  const field = h("textarea", { id, class: "composer-field", rows: 1, placeholder, "aria-label": label, maxlength: MESSAGE_CHARS_MAX, enterkeyhint: "send" });
  const send = h("button", { type: "submit", class: "send-btn", "aria-label": "Send message", title: "Send (Enter)" }, icon("send"));
  const error = h("p", { class: "composer-error error", role: "alert" });
  const form = h("form", { class: "composer", novalidate: true }, h("div", { class: "composer-box" }, field, send), error);

  async function submit() {
    const text = field.value;
    if (!text.trim()) return;
    if ([...text].length > MESSAGE_CHARS_MAX) {
      error.textContent = `A message can have at most ${MESSAGE_CHARS_MAX.toLocaleString()} characters.`;
      return;
    }
    error.textContent = "";
    field.value = "";
    try {
      await onSend(text);
    } catch (failure) {
      if (!field.value) field.value = text;
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

  return {
    el: form,
    field,
    focus: () => field.focus(),
    /** Disables sending with a reason shown in place of the field (or re-enables with null). */
    setDisabled(reason) {
      field.disabled = Boolean(reason);
      send.disabled = Boolean(reason);
      field.placeholder = reason || placeholder;
    },
  };
}
