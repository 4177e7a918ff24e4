// Modal dialogs on <dialog> (focus trapped, Escape closes): confirm, create a channel, browse
// public channels, start a direct message (directory search), edit a channel's topic.

import { api, describe, seg } from "./api.js";
import { h, icon, replace } from "./dom.js";
import { userText } from "./text.js";
import { avatarNode, remember } from "./users.js";

const SEARCH_DELAY_MS = 200;

/** Opens a modal; `build(close)` returns its body. Resolves with what `close(value)` got. */
export function openDialog({ title, build, className = "" }) {
  return new Promise((resolve) => {
    const titleId = `dialog-title-${Math.random().toString(36).slice(2)}`;
    const dialog = h("dialog", { class: `dialog ${className}`.trim(), "aria-labelledby": titleId });
    let result = null;
    const close = (value = null) => {
      result = value;
      dialog.close();
    };
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(result);
    });
    dialog.addEventListener("click", (event) => {
      if (event.target === dialog) close(null);
    });
    dialog.append(h("div", { class: "dialog-inner" }, h("h2", { id: titleId, text: title }), build(close)));
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** Asks a yes/no question; resolves true for yes. `cancel: null` shows only the confirm button. */
export function confirmDialog({ title, text, confirm = "OK", cancel = "Cancel", danger = false }) {
  return openDialog({
    title,
    build: (close) =>
      h(
        "div",
        {},
        h("p", { text }),
        h(
          "div",
          { class: "dialog-actions" },
          cancel ? h("button", { type: "button", class: "btn ghost", text: cancel, on: { click: () => close(false) } }) : null,
          h("button", { type: "button", class: `btn ${danger ? "danger" : "primary"}`, text: confirm, autofocus: true, on: { click: () => close(true) } }),
        ),
      ),
  }).then(Boolean);
}

function formActions(close, submitLabel) {
  return h(
    "div",
    { class: "dialog-actions" },
    h("button", { type: "button", class: "btn ghost", text: "Cancel", on: { click: () => close(null) } }),
    h("button", { type: "submit", class: "btn primary", text: submitLabel }),
  );
}

export function newChannel(ctx) {
  return openDialog({
    title: "Create a channel",
    build: (close) => {
      const name = h("input", { id: "channel-name", required: true, maxlength: 80, pattern: "[a-z0-9][a-z0-9_\\-]*", autocapitalize: "none", spellcheck: "false", "aria-describedby": "channel-name-help" });
      const topic = h("input", { id: "channel-topic", maxlength: 250 });
      const kind = h("select", { id: "channel-kind" }, h("option", { value: "public", text: "Public — anyone can find and join" }), h("option", { value: "private", text: "Private — by invitation only" }));
      const error = h("p", { class: "form-status error", role: "alert" });
      const form = h(
        "form",
        { novalidate: true },
        h("div", { class: "field" }, h("label", { for: "channel-name", text: "Name" }), name, h("p", { id: "channel-name-help", class: "help", text: "Lower-case letters, digits, - and _, e.g. design-team." })),
        h("div", { class: "field" }, h("label", { for: "channel-kind", text: "Visibility" }), kind),
        h("div", { class: "field" }, h("label", { for: "channel-topic", text: "Topic (optional)" }), topic),
        error,
        formActions(close, "Create channel"),
      );
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        try {
          const body = { name: name.value.trim().toLowerCase(), kind: kind.value };
          if (topic.value.trim()) body.topic = topic.value.trim();
          const channel = await api.post("/api/v1/channels", body);
          ctx.model.putChannel({ ...channel, member: true, role: "owner", unread: 0 });
          ctx.model.emit({ type: "channels" });
          close(channel);
          ctx.navigate(`/c/${channel.id}`);
        } catch (failure) {
          error.textContent = describe(failure);
        }
      });
      return form;
    },
  });
}

export function browseChannels(ctx) {
  return openDialog({
    title: "Browse channels",
    className: "wide",
    build: (close) => {
      const list = h("ul", { class: "pick-list", id: "browse-list" }, h("li", { class: "muted", text: "Loading…" }));
      api
        .get("/api/v1/channels")
        .then((channels) => {
          const open = channels.filter((c) => c.kind === "public");
          replace(
            list,
            open.length
              ? open.map((c) =>
                  h(
                    "li",
                    {},
                    h(
                      "button",
                      {
                        type: "button",
                        class: "pick",
                        on: {
                          click: () => {
                            close(c);
                            ctx.navigate(`/c/${c.id}`);
                          },
                        },
                      },
                      icon("hash"),
                      h("span", { class: "pick-main" }, userText(c.name, "pick-name"), c.topic ? userText(c.topic, "pick-sub") : null),
                      h("span", { class: "pill", text: c.member ? "Joined" : "Join" }),
                    ),
                  ),
                )
              : h("li", { class: "muted", text: "There are no public channels yet. Create the first one." }),
          );
        })
        .catch((failure) => replace(list, h("li", { class: "error", text: describe(failure) })));
      return h("div", {}, list, h("div", { class: "dialog-actions" }, h("button", { type: "button", class: "btn ghost", text: "Close", on: { click: () => close(null) } })));
    },
  });
}

export function newDirectMessage(ctx) {
  return openDialog({
    title: "New direct message",
    className: "wide",
    build: (close) => {
      const query = h("input", { id: "dm-search", type: "search", placeholder: "Search by name or username", autocomplete: "off", "aria-controls": "dm-results", maxlength: 64 });
      const results = h("ul", { class: "pick-list", id: "dm-results", "aria-live": "polite" });
      const error = h("p", { class: "form-status error", role: "alert" });
      let timer = null;
      let generation = 0;
      const search = async () => {
        const mine = ++generation;
        try {
          const users = await api.get(`/api/v1/users?q=${encodeURIComponent(query.value.trim())}`);
          if (mine !== generation) return;
          const others = users.filter((u) => u.id !== ctx.me.id);
          others.forEach(remember);
          replace(
            results,
            others.length
              ? others.map((u) =>
                  h(
                    "li",
                    {},
                    h(
                      "button",
                      { type: "button", class: "pick", on: { click: () => start(u) } },
                      avatarNode(u.id, "small"),
                      h("span", { class: "pick-main" }, userText(u.display_name, "pick-name"), userText(`@${u.username}`, "pick-sub")),
                    ),
                  ),
                )
              : h("li", { class: "muted", text: "Nobody matches." }),
          );
        } catch (failure) {
          error.textContent = describe(failure);
        }
      };
      const start = async (user) => {
        try {
          const channel = await api.post("/api/v1/dms", { user_id: user.id });
          ctx.model.putChannel({ ...channel, member: true, dm_user_id: user.id, unread: 0 });
          ctx.model.emit({ type: "channels" });
          close(channel);
          ctx.navigate(`/c/${channel.id}`);
        } catch (failure) {
          error.textContent = describe(failure);
        }
      };
      query.addEventListener("input", () => {
        clearTimeout(timer);
        timer = setTimeout(search, SEARCH_DELAY_MS);
      });
      search();
      return h(
        "div",
        {},
        h("label", { for: "dm-search", class: "field-label", text: "Find a colleague" }),
        query,
        results,
        error,
        h("div", { class: "dialog-actions" }, h("button", { type: "button", class: "btn ghost", text: "Close", on: { click: () => close(null) } })),
      );
    },
  });
}

export function editTopic(ctx, channel) {
  return openDialog({
    title: `Topic of #${channel.name}`,
    build: (close) => {
      const topic = h("textarea", { id: "topic-field", maxlength: 250, rows: 3 });
      topic.value = channel.topic || "";
      const error = h("p", { class: "form-status error", role: "alert" });
      const form = h("form", { novalidate: true }, h("div", { class: "field" }, h("label", { for: "topic-field", text: "Topic" }), topic), error, formActions(close, "Save topic"));
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        try {
          const updated = await api.patch(`/api/v1/channels/${seg(channel.id)}`, { topic: topic.value.trim() });
          ctx.model.putChannel({ ...updated, member: true });
          ctx.model.emit({ type: "channels" });
          close(updated);
        } catch (failure) {
          error.textContent = describe(failure);
        }
      });
      return form;
    },
  });
}
